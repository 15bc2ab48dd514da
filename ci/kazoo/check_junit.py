"""Checks a kazoo test run (JUnit XML) against the list of tests allowed to fail.

Every test not listed in expected-failures.txt must pass (or be skipped by kazoo itself, for
example for missing SASL libraries); a listed test that passes is reported so that the list
stays honest, but does not fail the run. Prints a summary; exits non-zero on any unexpected
failure or error, or if too few tests ran.
"""

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


def main(junit, expected_path, min_tests):
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
    if ran < min_tests:
        print(f"only {ran} tests ran (expected at least {min_tests})")
        return 1
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 400))
