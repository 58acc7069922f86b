"""Seconds per test file from a JUnit XML report, slowest first (for docs/install.md).

    python3 -m pytest -q --junitxml=run.xml
    python3 tests/durations_by_file.py run.xml

A test's time is its setup, call and teardown as pytest measured them in its worker; with
the files spread over workers (pytest-xdist) the files' times add up to more than the
run's wall time.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree
from collections import defaultdict


def durations_by_file(report: str) -> list:
    """``[(file, seconds, tests), ...]``, slowest first."""
    seconds, tests = defaultdict(float), defaultdict(int)
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        name = "tests/" + next((part for part in module if part.startswith("test_")),
                               module[0]) + ".py"
        seconds[name] += float(case.get("time", 0.0))
        tests[name] += 1
    return sorted(((f, seconds[f], tests[f]) for f in seconds), key=lambda row: -row[1])


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python3 tests/durations_by_file.py REPORT.xml")
    rows = durations_by_file(argv[0])
    print("| test file | tests | seconds |")
    print("| --- | --- | --- |")
    for name, total, count in rows:
        print(f"| `{name}` | {count} | {total:.0f} |")
    print(f"| all | {sum(r[2] for r in rows)} | {sum(r[1] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
