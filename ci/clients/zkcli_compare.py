"""zkCli.sh (ZooKeeper 3.8's own command-line client) runs one scripted session against Apache
ZooKeeper and against corral; the two transcripts must be equal after masking.

Usage: zkcli_compare.py [--run-dir DIR] [--corral PATH] [--script FILE]

The script (zkcli-script.txt) is fed on stdin; zkCli then reads commands line by line without
JLine. zkCli writes command results on stdout and many messages ("Created /x", "Node does not
exist", ...) on stderr; both streams are compared, stderr without SLF4J's start-up lines.

Masked, and why:
  * "Connecting to 127.0.0.1:<port>": the servers listen on different ports.
  * ctime/mtime lines (wall-clock dates of two processes).
  * non-zero ephemeralOwner values (session ids, which each server draws from its clock).
  * WATCHER:: blocks are printed by zkCli's event thread while the main thread goes on with the
    next command, so where they land among the command output is a race inside the client (a
    line of command output may even land inside a block); their lines are taken out of the
    stream and compared as their own list, in order. (Their position on
    the wire, relative to replies, is what differential.py compares.)
  * the list printed by getEphemerals, which ZooKeeper builds from a hash set: sorted.
The script leaves one ephemeral node to be removed by the session's close, so that the events
of that close come in a defined order (several would be deleted in hash-set order).
zxids are not masked: both servers start empty and see the same requests, so they must agree.
"""

import argparse
import difflib
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import servers  # noqa: E402

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"


def run_zkcli(port, script, out_dir, kind):
    env = dict(os.environ)
    env["ZOO_LOG_DIR"] = out_dir
    t0 = time.monotonic()
    p = subprocess.run([ZKCLI, "-server", f"127.0.0.1:{port}"], input=script.encode(),
                       capture_output=True, timeout=90, env=env)
    with open(os.path.join(out_dir, f"{kind}.stdout"), "wb") as f:
        f.write(p.stdout)
    with open(os.path.join(out_dir, f"{kind}.stderr"), "wb") as f:
        f.write(p.stderr)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"), time.monotonic() - t0


def normalize(stdout, stderr):
    """Returns (stdout lines, watcher events, stderr lines), masked as the module doc says."""
    out, events = [], []
    lines = stdout.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        # A WATCHER block is "WATCHER::", a blank line, then "WatchedEvent state:... path:...",
        # but the main thread's output may land inside it (each println is whole): only the
        # block's own lines are taken out, whatever lies between them stays command output.
        if line == "WATCHER::":
            i += 1
            continue
        if line.startswith("WatchedEvent "):
            events.append(line)
            i += 1
            continue
        line = re.sub(r"^Connecting to 127\.0\.0\.1:\d+$", "Connecting to 127.0.0.1:<port>", line)
        line = re.sub(r"^(ctime|mtime) = .*$", r"\1 = <time>", line)
        line = re.sub(r"^ephemeralOwner = 0x[0-9a-f]*[1-9a-f][0-9a-f]*$",
                      "ephemeralOwner = <session id>", line)
        if line.startswith("[/") and line.endswith("]") and "," in line:
            # getEphemerals' list (ls prints names without a leading '/')
            items = sorted(x.strip() for x in line[1:-1].split(","))
            line = "[" + ", ".join(items) + "]"
        out.append(line)
        i += 1
    # A blank line separates WATCHER blocks from what follows; where a block was cut out, a
    # stray blank line may remain: blank lines are not significant.
    out = [line for line in out if line.strip()]
    err = [line for line in stderr.splitlines() if line.strip() and not line.startswith("SLF4J:")]
    return out, events, err


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--run-dir", default=os.path.join(here, "..", "..", "target", "clients-run", "zkcli"))
    ap.add_argument("--corral", default=None)
    ap.add_argument("--script", default=os.path.join(here, "zkcli-script.txt"))
    args = ap.parse_args()
    run_dir = os.path.abspath(args.run_dir)
    os.makedirs(run_dir, exist_ok=True)
    corral = args.corral or servers.corral_binary()
    script = open(args.script).read()
    results = {}
    for kind in ("zookeeper", "corral"):
        with servers.Server(kind, run_dir, corral_bin=corral) as srv:
            rc, out, err, dt = run_zkcli(srv.port, script, run_dir, kind)
        results[kind] = (rc, normalize(out, err), dt)
        print(f"zkcli: {kind}: exit {rc}, {len(out.splitlines())} stdout lines, {dt:.1f}s")
    ok = True
    (zrc, (zo, ze, zerr), _), (crc, (co, ce, cerr), _) = results["zookeeper"], results["corral"]
    if zrc != crc:
        print(f"zkcli: exit codes differ: zookeeper {zrc}, corral {crc}")
        ok = False
    for what, a, b in (("stdout", zo, co), ("watch events", ze, ce), ("stderr", zerr, cerr)):
        with open(os.path.join(run_dir, f"zookeeper.{what.replace(' ', '-')}.normalized"), "w") as f:
            f.write("\n".join(a) + "\n")
        with open(os.path.join(run_dir, f"corral.{what.replace(' ', '-')}.normalized"), "w") as f:
            f.write("\n".join(b) + "\n")
        if a != b:
            ok = False
            print(f"zkcli: {what} differ (--- zookeeper, +++ corral, after masking):")
            for line in difflib.unified_diff(a, b, "zookeeper", "corral", lineterm="", n=3):
                print("    " + line)
    if len(zo) < 40 or len(ze) < 3:
        print(f"zkcli: the ZooKeeper transcript looks too short ({len(zo)} lines, {len(ze)} "
              f"events): did zkCli run the script?")
        ok = False
    print(f"zkcli: {'OK — transcripts equal' if ok else 'FAILED'} "
          f"({len(zo)} stdout lines, {len(ze)} watch events, {len(zerr)} stderr lines); "
          f"raw and normalized outputs in {run_dir}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
