"""The notebooks run headless with papermill on small parameters (the `make demo --quick`
settings) and record meaningful values that we read back."""
from __future__ import annotations

import os

import pytest

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


def test_demo_with_two_jobs_keeps_each_notebooks_needs_and_stops_on_a_failure(tmp_path,
                                                                              monkeypatch):
    """jobs=2: no notebook starts before the ones it needs (NEEDS) have finished, two run at
    once, every kernel gets one thread; a failure starts nothing new and is raised by name."""
    import json
    import threading
    import time

    from mir_core import demo

    events, lock = [], threading.Lock()

    def fake(path, params, output_dir):
        key = os.path.basename(path)[:2]
        with lock:
            events.append(("start", key, os.environ.get("OMP_NUM_THREADS"), dict(params)))
        time.sleep(0.05 if key != "02" else 0.3)
        if key == fail_key:
            raise ValueError("boom")
        with lock:
            events.append(("end", key))
        return tmp_path / f"{key}.ipynb"

    monkeypatch.setattr(demo, "run_notebook", fake)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    fail_key = None
    done = demo.run_demo(tmp_path, jobs=2)
    keys = [p.name[:2] for p in demo.notebooks()]
    assert [p.stem for p in done] == keys
    order = [(e[0], e[1]) for e in events]
    for key, needs in demo.NEEDS.items():
        for need in needs:
            assert order.index(("end", need)) < order.index(("start", key)), (key, need)
    starts = {e[1]: e for e in events if e[0] == "start"}
    assert all(e[2] == "1" for e in starts.values())
    assert starts["02"][3]["num_threads"] == 1 and starts["07"][3]["threads"] == 1
    assert starts["04"][3]["fusions"] == demo.DEMO["04"]["fusions"]
    # 03 starts while 02 (slow here) still runs: two kernels at once
    assert order.index(("start", "03")) < order.index(("end", "02"))
    assert "OMP_NUM_THREADS" not in os.environ          # restored after the demo
    times = json.loads((tmp_path / "demo_times.json").read_text())
    assert times["jobs"] == 2 and times["profile"] == "demo"
    assert sorted(times["notebooks"]) == [p.name for p in demo.notebooks()]

    events.clear()
    fail_key = "03"
    with pytest.raises(RuntimeError, match="03_feature_extraction.ipynb failed"):
        demo.run_demo(tmp_path, jobs=2)
    started = {e[1] for e in events if e[0] == "start"}
    assert not started & {"04", "05", "06"}               # nothing that needs 03 ran
    assert json.loads((tmp_path / "demo_times.json").read_text())["failed"] == ["03"]
