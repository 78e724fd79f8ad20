"""Training loop on small real subsets: run folders, resume, determinism, CLI, fine-tune path."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mir_core.__main__ import main
from mir_core.metrics import METRICS
from mir_core.training import RunSpec, preset, run

SMALL = dict(max_train=240, max_eval=120, overrides={"epochs": 3})


def test_presets_have_paper_hyperparameters():
    p = preset("MIntRec2.0", "paper")
    assert (p.lr, p.batch_size, p.warmup_ratio, p.weight_decay, p.dropout, p.weight_hidden,
            p.patience, p.epochs, p.pooling) == (6e-6, 32, 0.1, 0.05, 0.4, 768, 5, 100, "cls")
    q = preset("IEMOCAP-DA", "paper")
    assert (q.lr, q.warmup_ratio, q.weight_decay, q.grad_clip, q.pooling) == (1e-5, 0.05, 0.1, 0.4, "mean")
    assert preset("MIntRec2.0", "cpu").frozen and not p.frozen
    with pytest.raises(KeyError, match="unknown TrainConfig field"):
        preset("MIntRec2.0", "cpu", learning_rate=1)


def test_run_writes_folder_and_resumes(data_root, tmp_path):
    spec = RunSpec(dataset="MIntRec2.0", method="lgsrr", fusion="released", seeds=(0, 1), **SMALL)
    logs = []
    s = run(spec, data_root=data_root, out_dir=tmp_path, log=logs.append)
    folder = Path(s["folder"])
    assert set(s["test"]) == set(METRICS) and s["test"]["F1"]["n"] == 2
    for seed in (0, 1):
        m = json.loads((folder / f"seed_{seed}" / "metrics.json").read_text())
        assert 0 <= m["F1"] <= 100 and m["epochs_run"] <= 3
        pred = (folder / f"seed_{seed}" / "predictions.csv").read_text().splitlines()
        assert len(pred) == 121 and "alpha_T" in pred[0]
        assert (folder / f"seed_{seed}" / "best.pt").exists()
    assert (folder / "summary.md").read_text().count("|") > 20
    logs.clear()
    again = run(spec, data_root=data_root, out_dir=tmp_path, log=logs.append)
    assert sum("done already" in line for line in logs) == 2
    assert again["test"] == s["test"]


def test_same_seed_same_result(data_root, tmp_path):
    spec = RunSpec(dataset="IEMOCAP-DA", method="lgsrr", fusion="paper", seeds=(3,), **SMALL)
    a = run(spec, data_root=data_root, out_dir=tmp_path / "a", log=lambda *_: None)
    b = run(spec, data_root=data_root, out_dir=tmp_path / "b", log=lambda *_: None)
    assert a["per_seed"][0]["F1"] == b["per_seed"][0]["F1"]


def test_cli_text_baseline(data_root, tmp_path, capsys):
    rc = main(["train", "--dataset", "MIntRec2.0", "--method", "text", "--seeds", "0",
               "--max-train", "240", "--max-eval", "120", "--set", "epochs=2",
               "--data-root", str(data_root), "--out", str(tmp_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    out = json.loads(printed[printed.index("{\n"):])
    assert out["folder"].endswith("text-cpu-epochs=2-n240") and "F1" in out["test"]


def test_finetune_path_runs_on_cpu(data_root, tmp_path):
    """The paper preset's code path (encoder fine-tuned end to end), on MiniLM and 48 samples."""
    spec = RunSpec(dataset="MIntRec2.0", method="lgsrr", preset="paper", seeds=(0,),
                   max_train=48, max_eval=32,
                   overrides={"encoder": "minilm-l6", "epochs": 1, "batch_size": 16,
                              "text_len": 16, "desc_len": 16})
    s = run(spec, data_root=data_root, out_dir=tmp_path, log=lambda *_: None)
    assert s["test"]["ACC"]["n"] == 1 and s["n_train"] == 48
