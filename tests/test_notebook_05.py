"""Notebook 05 runs headless on a tiny grid and records the tables it shows."""
from __future__ import annotations

import os

from mir_core.demo import QUICK
from mir_core.notebooks import run_notebook
from mir_core.records import Recorder


def test_notebook_05_ablations(data_root, tmp_path):
    params = {**QUICK["05"], "data_root": os.path.join(os.environ["MIR_DATA_DIR"], "lgsrr"),
              "runs_dir": str(tmp_path / "shared")}
    run_notebook("05", params, output_dir=tmp_path)
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith("05") and p.is_dir())
    rec = Recorder.read(folder)
    rows = {r["variant"]: r for r in rec["table_MIntRec2.0"]}
    assert set(rows) == {"full", "text", "no_rank", "no_srr", "not"}
    assert {r["table"] for r in rows.values()} == {"2", "5"}
    for key, r in rows.items():
        assert 0 < r["ACC"] <= 100 and r["seeds"] == 2, key
        if key != "full":
            assert isinstance(r["reading"], str) and r["reading"]
    assert rows["no_rank"]["paper_F1"] == 53.30
    grid = rec["grid_MIntRec2.0"]
    assert grid["trained"] == 5 * 2 and grid["wall_seconds"] > 0
    assert any("Table 2, w/o L_rank" in line for line in rec["reading"])
    assert (folder / "deltas_MIntRec2.0.html").exists()
    assert (folder / "ablations" / "MIntRec2.0" / "cpu" / "table.md").exists()
