"""The notebooks run headless with papermill on small parameters (the `make demo --quick`
settings) and record meaningful values that we read back."""
from __future__ import annotations

import os

from mir_core.demo import QUICK
from mir_core.notebooks import run_notebook
from mir_core.records import Recorder


def _run(nb, tmp_path, **extra):
    params = {**QUICK[nb], "data_root": os.path.join(os.environ["MIR_DATA_DIR"], "lgsrr"), **extra}
    run_notebook(nb, params, output_dir=tmp_path)
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith(nb) and p.is_dir())
    return Recorder.read(folder)


def test_notebook_01_data(data_root, tmp_path):
    rec = _run("01", tmp_path, datasets=["MIntRec2.0", "IEMOCAP-DA"])
    assert rec["all_verified"] is True
    sizes = {(r["dataset"], r["split"]): r["rows"] for r in rec["sizes"]}
    assert sizes[("MIntRec2.0", "train")] == 6165 and sizes[("IEMOCAP-DA", "test")] == 1884
    assert rec["label_counts"]["MIntRec2.0"]["train"]["Inform"] == 603


def test_notebook_04_training(data_root, tmp_path):
    rec = _run("04", tmp_path)
    systems = {r["system"].split(" [")[0] for r in rec["results_table"]}
    assert {"text", "lgsrr (official)", "paper: LGSRR"} <= systems
    for name, s in rec["summaries"].items():
        assert 0.0 < s["test"]["ACC"]["mean"] <= 100.0, name
    assert abs(sum(rec["mean_alpha"].values()) - 1.0) < 1e-4
    assert rec["best_lgsrr"]["name"] == "lgsrr (official)"
    assert 0.0 <= rec["importance"]["train_vs_llm"]["top1"] <= 1.0


def test_demo_records_each_notebooks_time_and_the_cpu(data_root, tmp_path, capsys):
    import json

    from mir_core.demo import run_demo
    from mir_core.machine import cpu_facts
    run_demo(tmp_path, quick=True, only=["01"],
             extra={"01": {"data_root": os.path.join(os.environ["MIR_DATA_DIR"], "lgsrr")}})
    times = json.loads((tmp_path / "demo_times.json").read_text())
    assert list(times["notebooks"]) == ["01_data_download.ipynb"] and times["quick"] is True
    assert 0 < times["notebooks"]["01_data_download.ipynb"] <= times["total_seconds"]
    assert times["cpu"] == cpu_facts().ident
    out = capsys.readouterr().out
    assert "01_data_download.ipynb:" in out and "1 notebooks in" in out and times["cpu"] in out
