"""The reliability table of docs/RESULTS.md, generated from the tests themselves.

Every fault case is a test marked ``@pytest.mark.fault(area=..., case=..., before=...,
after=...)``; this runs exactly those tests and prints one row per case (parametrised
cases once, with the number of variants) with the outcome of this run, then the counts.

    .venv/bin/python tools/fault_table.py [--out outputs/fault_table.md] [pytest args...]
"""
from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path

import pytest


class _Collect:
    def __init__(self):
        self.rows: "OrderedDict[tuple, dict]" = OrderedDict()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        mark = item.get_closest_marker("fault")
        if mark is None or (report.when != "call" and not report.failed):
            return
        kw = mark.kwargs
        key = (kw.get("area", "?"), kw.get("case", item.name))
        row = self.rows.setdefault(key, {**kw, "tests": 0, "passed": 0, "nodes": []})
        if report.when == "call" or report.failed:
            row["tests"] += 1
            row["passed"] += int(report.passed)
            row["nodes"].append(item.nodeid)


def table(rows) -> str:
    lines = ["| area | case | before | now | tests | outcome |", "|---|---|---|---|---|---|"]
    for (area, case), r in rows.items():
        ok = "pass" if r["passed"] == r["tests"] else f"FAIL ({r['tests'] - r['passed']})"
        lines.append(f"| {area} | {case} | {r.get('before', '')} | {r.get('after', '')} | "
                     f"{r['tests']} | {ok} |")
    n = len(rows)
    failing = sum(r["passed"] != r["tests"] for r in rows.values())
    lines += ["", f"{n} fault cases: {n - failing} handled as stated (their tests pass), "
                  f"{failing} failing."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    a, rest = ap.parse_known_args(argv)
    col = _Collect()
    root = Path(__file__).resolve().parent.parent
    rc = pytest.main(["-q", "-m", "fault", "-p", "no:cacheprovider", str(root / "tests"), *rest],
                     plugins=[col])
    text = table(col.rows)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    return int(rc)


if __name__ == "__main__":
    sys.exit(main())
