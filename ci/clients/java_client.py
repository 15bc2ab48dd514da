"""The official Java client (ZooKeeper 3.8's jar) against ZooKeeper and against corral.

Usage: java_client.py [--run-dir DIR] [--corral PATH]

Compiles java/CorralClientCheck.java with javac against /usr/share/java/zookeeper.jar, runs it
against a fresh Apache ZooKeeper (which proves the program's expectations) and against a fresh
corral, and requires both runs to pass and to print the same transcript (the program prints no
times or session ids, and zxids relative to its first node, so the transcripts must be equal).
A check named "known:<name>" shows the difference <name> of known-differences.txt: while that
entry is listed, the check must fail against corral (and pass against ZooKeeper); when it
passes against corral, the run fails until the entry is removed.
"""

import argparse
import difflib
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import servers  # noqa: E402
from differential import read_allowlist  # noqa: E402

JAR = "/usr/share/java/zookeeper.jar"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", default=os.path.join(here, "..", "..", "target", "clients-run", "java"))
    ap.add_argument("--corral", default=None)
    args = ap.parse_args()
    run_dir = os.path.abspath(args.run_dir)
    classes = os.path.join(run_dir, "classes")
    os.makedirs(classes, exist_ok=True)
    corral = args.corral or servers.corral_binary()
    src = os.path.join(here, "java", "CorralClientCheck.java")
    t0 = time.monotonic()
    c = subprocess.run(["javac", "-Xlint:all,-path", "-Werror", "-cp", JAR, "-d", classes, src],
                       capture_output=True, text=True, timeout=120)
    if c.returncode != 0:
        print("java-client: javac failed:\n" + c.stdout + c.stderr)
        sys.exit(1)
    print(f"java-client: compiled in {time.monotonic() - t0:.1f}s")
    allow = read_allowlist(os.path.join(here, "known-differences.txt"))

    def known(line):
        """The allowlist entry a transcript line belongs to, if any."""
        name = line.split(" ", 1)[1] if " " in line else ""
        if name.startswith("known:"):
            entry = name[len("known:"):].split(" ", 1)[0]
            if entry in allow:
                return entry
        return None

    transcripts, ok = {}, True
    for kind in ("zookeeper", "corral"):
        with servers.Server(kind, run_dir, corral_bin=corral) as srv:
            t1 = time.monotonic()
            p = subprocess.run(["java", "-XX:TieredStopAtLevel=1", "-cp", classes + ":" + JAR,
                                "CorralClientCheck", f"127.0.0.1:{srv.port}"],
                               capture_output=True, text=True, timeout=120)
        with open(os.path.join(run_dir, f"{kind}.out"), "w") as f:
            f.write(p.stdout)
        with open(os.path.join(run_dir, f"{kind}.err"), "w") as f:
            f.write(p.stderr)
        lines = p.stdout.splitlines()
        transcripts[kind] = lines
        fails = [line for line in lines if line.startswith("FAIL")]
        unexpected = [line for line in fails if kind == "zookeeper" or not known(line)]
        print(f"java-client: against {kind}: exit {p.returncode}, {lines[-1] if lines else 'no output'}"
              f" ({time.monotonic() - t1:.1f}s)")
        for line in fails:
            tag = f"  [known difference {known(line)}, allowlisted]" if line not in unexpected else ""
            print(f"    {line}{tag}")
        if p.returncode not in (0, 1) or unexpected:
            ok = False
            if kind == "zookeeper":
                print("java-client: the program fails against ZooKeeper itself: its expectations "
                      "are wrong, not corral")
        if kind == "corral":
            for line in lines:
                if line.startswith("ok ") and known(line):
                    ok = False
                    print(f"java-client: known difference {known(line)!r} no longer shows "
                          f"({line}); remove it from known-differences.txt")
    # Lines of allowlisted checks, and the summary line that counts failures, are left out.
    def compared(line):
        return not known(line) and not (line.startswith("== ") and " checks, " in line)

    for kind in transcripts:
        transcripts[kind] = [line for line in transcripts[kind] if compared(line)]
    if transcripts["zookeeper"] != transcripts["corral"]:
        ok = False
        print("java-client: transcripts differ (--- zookeeper, +++ corral):")
        for line in difflib.unified_diff(transcripts["zookeeper"], transcripts["corral"],
                                         "zookeeper", "corral", lineterm="", n=2):
            print("    " + line)
    print(f"java-client: {'OK' if ok else 'FAILED'}; outputs in {run_dir}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
