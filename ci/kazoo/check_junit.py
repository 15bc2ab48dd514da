"""Checks a kazoo test run (JUnit XML) against the list of tests allowed to fail.

Every test not listed in expected-failures.txt must pass (or be skipped by kazoo itself, for
example for missing SASL libraries); a listed test that passes is reported so that the list
stays honest, but does not fail the run. Prints a summary, and for each unexpected failure the
end of its traceback and what each corral server logged while it ran (from the logs in the
optional fourth argument, marked per test by corral_kazoo.py); exits non-zero on any unexpected
failure or error, or if too few tests ran.
"""

import os
import sys
import xml.etree.ElementTree as ET


def load_expected(path):
    expected = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition(" ")
        expected[name] = reason.strip()
    return expected


def show_failure(root, name, log_dir, limit=60):
    """Prints the end of a failed test's traceback and, from each corral log in log_dir, what
    that server logged while the test ran (between its marker and the next test's)."""
    for tc in root.iter("testcase"):
        if f"{tc.attrib['classname']}::{tc.attrib['name']}" != name:
            continue
        bad = tc.find("failure") if tc.find("failure") is not None else tc.find("error")
        text = (bad.text or "").splitlines() if bad is not None else []
        print(f"---- {name}: the end of its traceback")
        for line in text[-25:]:
            print(f"     {line}")
    if not log_dir or not os.path.isdir(log_dir):
        return
    marker = "==== test: " + name.split("::")[0].rsplit(".", 1)[-1] + "::" + name.split("::")[1]
    for entry in sorted(os.listdir(log_dir)):
        if not (entry.startswith("corral") and entry.endswith(".log")):
            continue
        lines, inside = [], False
        with open(os.path.join(log_dir, entry), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("==== test: "):
                    inside = line.strip() == marker
                    continue
                if inside:
                    lines.append(line.rstrip("\n"))
        print(f"---- {entry} during {name}: {len(lines)} lines" + (f", the last {limit}" if len(lines) > limit else ""))
        for line in lines[-limit:]:
            print(f"     {line}")


def main(junit, expected_path, min_tests, log_dir=None):
    expected = load_expected(expected_path)
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    ran = passed = 0
    unexpected, allowed, now_passing, skipped = [], [], [], []
    for suite in suites:
        for tc in suite.iter("testcase"):
            name = f"{tc.attrib['classname']}::{tc.attrib['name']}"
            ran += 1
            bad = tc.find("failure") if tc.find("failure") is not None else tc.find("error")
            if tc.find("skipped") is not None:
                skipped.append(name)
            elif bad is not None:
                msg = (bad.attrib.get("message") or "").splitlines()[0][:160] if bad.attrib.get("message") else ""
                (allowed if name in expected else unexpected).append((name, msg))
            else:
                passed += 1
                if name in expected:
                    now_passing.append(name)
    print(f"kazoo: {ran} tests, {passed} passed, {len(skipped)} skipped, "
          f"{len(allowed)} failed as listed, {len(unexpected)} failed unexpectedly")
    for name, msg in allowed:
        print(f"  listed   {name}: {expected[name]}")
    for name in now_passing:
        print(f"  note: listed test now passes: {name}")
    for name, msg in unexpected:
        print(f"  FAILED   {name}: {msg}")
    for name, _ in unexpected:
        show_failure(root, name, log_dir)
    if ran < min_tests:
        print(f"only {ran} tests ran (expected at least {min_tests})")
        return 1
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 400,
                  sys.argv[4] if len(sys.argv) > 4 else None))
