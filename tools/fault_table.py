"""The reliability table of docs/RESULTS.md, generated from the tests themselves.

Every fault case is a test marked ``@pytest.mark.fault(area=..., case=..., before=...,
after=...)``. With ``MIR_FAULT_TABLE=<file.json>`` set, any pytest run (``make test`` too)
records each case's outcome there (tests/conftest.py); this renders that file as a table,
one row per case (parametrised variants counted), with the counts.

    MIR_FAULT_TABLE=outputs/faults.json make test          # or: pytest -m fault
    .venv/bin/python tools/fault_table.py outputs/faults.json [--out outputs/fault_table.md]
    .venv/bin/python tools/fault_table.py --run             # runs pytest -m fault itself
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def table(rows: list[dict]) -> str:
    lines = ["| area | case | before | now | tests | outcome |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r.get("area", "")):
        ok = "pass" if r["passed"] == r["tests"] else f"FAIL ({r['tests'] - r['passed']})"
        lines.append(f"| {r.get('area', '')} | {r.get('case', '')} | {r.get('before', '')} | "
                     f"{r.get('after', '')} | {r['tests']} | {ok} |")
    failing = sum(r["passed"] != r["tests"] for r in rows)
    lines += ["", f"{len(rows)} fault cases: {len(rows) - failing} handled as stated (their "
                  f"tests pass), {failing} failing."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="?", help="a file written under MIR_FAULT_TABLE")
    ap.add_argument("--run", action="store_true", help="run pytest -m fault first")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    path = a.json
    if a.run or not path:
        path = path or os.path.join(tempfile.mkdtemp(), "faults.json")
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "fault", str(ROOT / "tests")],
                       env={**os.environ, "MIR_FAULT_TABLE": path}, check=False)
    text = table(json.loads(Path(path).read_text()))
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
