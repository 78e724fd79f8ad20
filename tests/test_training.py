"""Training loop on small real subsets: run folders, fingerprinted resume, locking,
validation, determinism, CLI, the fine-tuning regimes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mir_core.__main__ import main
from mir_core.metrics import METRICS
from mir_core.training import ConfigError, RunError, RunSpec, preset, run
from mir_core.training.runs import RunLock, SeedLock

SMALL = dict(max_train=240, max_eval=120, overrides={"epochs": 3})
QUIET = dict(log=lambda *_: None)


def test_presets_have_the_official_hyperparameters():
    p = preset("MIntRec2.0", "official")
    assert (p.lr, p.batch_size, p.warmup_ratio, p.weight_decay, p.weight_dropout,
            p.classifier_dropout, p.weight_hidden, p.patience, p.epochs, p.pooling,
            p.eval_batch_size, p.regime) == (6e-6, 32, 0.1, 0.05, 0.4, 0.0, 768, 5, 100,
                                             "cls", 8, "full")
    assert p.max_lens("MIntRec2.0") == (50, 50)
    q = preset("IEMOCAP-DA", "official")
    assert (q.lr, q.warmup_ratio, q.weight_decay, q.grad_clip, q.pooling) == \
        (1e-5, 0.05, 0.1, 0.4, "mean_unmasked")
    assert q.max_lens("IEMOCAP-DA") == (44, 44)
    assert preset("MIntRec2.0", "cpu").regime == "frozen"
    assert preset("MIntRec2.0", "cpu-ft").regime == "partial"


@pytest.mark.fault(area="training runs", case="settings of a wrong type, range or choice",
                   before="lr=abc failed inside torch after loading; pooling=max a bare "
                          "KeyError; layers=0 ran silently as 1; epochs=0 crashed",
                   after="ConfigError naming the field and the allowed values, before any work")
@pytest.mark.parametrize("override, message", [
    ({"lr": "abc"}, "lr must be a number"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"pooling": "max"}, "pooling must be one of"),
    ({"layers": 0}, "layers must be >= 1"),
    ({"regime": "half"}, "regime must be one of"),
    ({"learning_rate": 1}, "unknown setting"),
    ({"pooling": "mean_unmasked"}, "'mean_unmasked' needs the padded"),
])
def test_bad_settings_are_named_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        preset("MIntRec2.0", "cpu", **override)


def test_replace_coerces_and_never_mutates():
    base = preset("MIntRec2.0", "cpu")
    new = base.replace(lr="5e-4", epochs=2.0)
    assert (new.lr, new.epochs) == (5e-4, 2) and base.lr == 1e-3


@pytest.mark.fault(area="training runs", case="seeds 0 0; max_eval 0; unknown option",
                   before="one seed counted twice (std 0.0); max_eval 0 crashed and left "
                          "empty cache entries",
                   after="ConfigError before any data or features are touched")
@pytest.mark.parametrize("kw, message", [
    ({"seeds": (0, 0)}, "more than once"),
    ({"max_eval": 0}, "max_eval must be"),
    ({"options": {"fusion": "paper"}}, "fusion must be one of"),
    ({"method": "text", "options": {"fusion": "eq12"}}, "no option"),
])
def test_bad_run_specs_fail_before_any_work(kw, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        run(RunSpec(**{"dataset": "MIntRec2.0", **kw}), data_root=tmp_path / "nothing",
            out_dir=tmp_path, **QUIET)
    assert not (tmp_path / "runs").exists()


def test_run_writes_folder_and_resumes(data_root, tmp_path):
    spec = RunSpec(dataset="MIntRec2.0", method="lgsrr", seeds=(0, 1), **SMALL)
    logs = []
    s = run(spec, data_root=data_root, out_dir=tmp_path, log=logs.append)
    folder = Path(s["folder"])
    assert folder.name == "lgsrr-cpu-epochs=3-n240-e120"
    assert set(s["test"]) == set(METRICS) and s["test"]["F1"]["n"] == 2
    for seed in (0, 1):
        m = json.loads((folder / f"seed_{seed}" / "metrics.json").read_text())
        assert 0 <= m["F1"] <= 100 and m["epochs_run"] <= 3
        pred = (folder / f"seed_{seed}" / "predictions.csv").read_text().splitlines()
        assert len(pred) == 121 and "alpha_T" in pred[0] and "gamma_I" in pred[0]
        train = (folder / f"seed_{seed}" / "train_scores.csv").read_text().splitlines()
        assert len(train) == 241 and "alpha_A" in train[0]
        assert (folder / f"seed_{seed}" / "best.pt").exists()
        fp = json.loads((folder / f"seed_{seed}" / "fingerprint.json").read_text())
        assert fp["spec"]["options"]["fusion"] == "official" and fp["seed"] == seed
        assert fp["inputs"]["test"] and fp["data"]
    assert (folder / "summary.md").read_text().count("|") > 20
    logs.clear()
    again = run(spec, data_root=data_root, out_dir=tmp_path, log=logs.append)
    assert sum("done already" in line for line in logs) == 2
    assert again["test"] == s["test"]
    assert not torch.are_deterministic_algorithms_enabled()   # not leaked into the caller


@pytest.mark.fault(area="training runs", case="resume under a fixed name after a change of "
                   "a setting, of max_eval or of the data",
                   before="finished seeds reused silently: new settings reported over old "
                          "metrics",
                   after="RunError naming what differs; nothing overwritten")
def test_resume_refuses_on_fingerprint_mismatch(data_root, tmp_path):
    spec = RunSpec(dataset="MIntRec2.0", method="text", seeds=(0,), name="fixed", **SMALL)
    s = run(spec, data_root=data_root, out_dir=tmp_path, **QUIET)
    metrics = (Path(s["folder"]) / "seed_0" / "metrics.json").read_text()
    changed = RunSpec(dataset="MIntRec2.0", method="text", seeds=(0,), name="fixed",
                      max_train=240, max_eval=100, overrides={"epochs": 3, "lr": 5e-4})
    with pytest.raises(RunError, match=r"max_eval: 120 -> 100.*lr: 0.001 -> 0.0005|"
                                       r"lr: 0.001 -> 0.0005.*max_eval"):
        run(changed, data_root=data_root, out_dir=tmp_path, **QUIET)
    assert (Path(s["folder"]) / "seed_0" / "metrics.json").read_text() == metrics
    # the refused run left the folder's config as the finished seeds' (lr 1e-3)
    saved = json.loads((Path(s["folder"]) / "config.json").read_text())
    assert saved["train_config"]["lr"] == 1e-3 and saved["spec"]["max_eval"] == 120
    # --fresh retrains instead
    fresh = run(changed, data_root=data_root, out_dir=tmp_path, resume=False, **QUIET)
    assert fresh["n_test"] == 100


@pytest.mark.fault(area="training runs", case="two processes on the same exclusively locked "
                   "run folder (XMEI-Qwen runs; the classification runs lock per seed)",
                   before="seeds mixed and a finished one overwritten",
                   after="the second stops at once with RunError naming the holder")
def test_run_folder_lock(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    code = ("import sys, time; from pathlib import Path; from mir_core.training.runs import "
            "RunLock\nwith RunLock(Path(sys.argv[1])):\n    print('locked', flush=True); "
            "time.sleep(30)")
    p = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(RunError, match=f"being written by process {p.pid}"):
            with RunLock(folder):
                pass
    finally:
        p.kill()
        p.wait()
    with RunLock(folder):        # released when its holder died
        pass


@pytest.mark.fault(area="training runs", case="two processes given the seeds of one run",
                   before="the second stopped with RunError (the folder was locked as a whole): "
                          "the seeds of one run could not be trained side by side",
                   after="each seed is locked on its own: a process trains the seeds nobody "
                         "else holds, waits for the others' and reports them (or trains a "
                         "seed whose holder died); no seed is trained twice at once")
def test_a_seed_held_by_another_process_is_left_to_it_then_reused_or_taken(data_root,
                                                                            tmp_path):
    spec = RunSpec(dataset="MIntRec2.0", method="text", seeds=(0, 1), name="shared", **SMALL)
    folder = tmp_path / "runs" / "MIntRec2.0" / "shared"
    code = ("import sys, time; from pathlib import Path; from mir_core.training.runs import "
            "SeedLock\nlock = SeedLock(Path(sys.argv[1]))\nassert lock.acquire(wait=False) "
            "is None\nprint('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder / "seed_0")],
                              stdout=subprocess.PIPE, text=True)
    lines = []

    def log(msg):
        lines.append(msg)
        if "waiting for it" in msg:
            holder.kill()            # the holder dies without finishing seed 0
            holder.wait()
    try:
        assert holder.stdout.readline().strip() == "locked"
        s = run(spec, data_root=data_root, out_dir=tmp_path, log=log)
    finally:
        holder.kill()
        holder.wait()
    text = "\n".join(lines)
    waiting = f"seed 0: being trained by process {holder.pid}"
    assert waiting in text
    # seed 1 was trained while seed 0 was held; seed 0 after its holder was gone
    assert text.index("seed 1: test F1") < text.index(waiting) < text.index("seed 0: test F1")
    assert s["seeds"] == [0, 1]
    assert all((folder / f"seed_{k}" / "metrics.json").exists() for k in (0, 1))
    assert SeedLock(folder / "seed_0").acquire(wait=False) is None   # nothing left held


def test_two_jobs_on_one_run_train_each_seed_once(data_root, tmp_path):
    """The same command started twice shares the seeds: both report seeds 0-2 with the
    same numbers, and each seed was trained by exactly one of them."""
    cmd = [sys.executable, "-m", "mir_core", "train", "--dataset", "MIntRec2.0", "--method",
           "text", "--seeds", "0", "1", "2", "--max-train", "240", "--max-eval", "120",
           "--set", "epochs=3", "--name", "twice", "--data-root", str(data_root),
           "--out", str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    printed = [json.loads(o[o.index("{\n"):]) for o in outs]
    assert printed[0] == printed[1]                       # same folder, same mean ± std
    assert printed[0]["test"]["F1"]["n"] == 3              # all three seeds in each report
    summary = json.loads((Path(printed[0]["folder"]) / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2]                  # whichever process wrote it last
    trained = [f"seed {k}: test F1" in o for k in (0, 1, 2) for o in outs]
    assert sum(trained) == 3, outs            # every seed by one process, none by both
    assert not list((tmp_path / "runs").rglob("*.tmp"))


def test_same_seed_same_result(data_root, tmp_path):
    spec = RunSpec(dataset="IEMOCAP-DA", method="lgsrr", options={"fusion": "eq12"}, seeds=(3,),
                   **SMALL)
    a = run(spec, data_root=data_root, out_dir=tmp_path / "a", **QUIET)
    b = run(spec, data_root=data_root, out_dir=tmp_path / "b", **QUIET)
    assert a["per_seed"][0]["F1"] == b["per_seed"][0]["F1"]


def test_cli_text_baseline(data_root, tmp_path, capsys):
    rc = main(["train", "--dataset", "MIntRec2.0", "--method", "text", "--seeds", "0",
               "--max-train", "240", "--max-eval", "120", "--set", "epochs=2",
               "--data-root", str(data_root), "--out", str(tmp_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    out = json.loads(printed[printed.index("{\n"):])
    assert out["folder"].endswith("text-cpu-epochs=2-n240-e120") and "F1" in out["test"]


@pytest.mark.fault(area="training runs", case="expected user errors on the command line",
                   before="18-25-line tracebacks; an empty run folder left behind",
                   after="one line naming the problem, exit status 2, no folder")
@pytest.mark.parametrize("args, message", [
    (["--set", "lr=abc"], "lr must be a number"),
    (["--seeds", "0", "0"], "more than once"),
    (["--method", "text", "--fusion", "eq12"], "no option"),
    (["--dataset", "NoSuchSet"], "NoSuchSet"),
])
def test_cli_errors_are_one_line(args, message, tmp_path, capsys):
    rc = main(["train", "--data-root", str(tmp_path / "none"), "--out", str(tmp_path), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


def test_cli_missing_data_is_one_line_and_leaves_no_folder(tmp_path, capsys):
    rc = main(["train", "--dataset", "MIntRec2.0", "--data-root", str(tmp_path / "none"),
               "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "data_text" in err
    assert not (tmp_path / "runs").exists()


def test_full_finetune_path_runs_on_cpu(data_root, tmp_path):
    """The official preset's code path (encoder fine-tuned end to end), MiniLM, 48 samples."""
    spec = RunSpec(dataset="MIntRec2.0", method="lgsrr", preset="official", seeds=(0,),
                   max_train=48, max_eval=32,
                   overrides={"encoder": "minilm-l6", "epochs": 1, "batch_size": 16,
                              "text_max_len": 16, "desc_max_len": 16})
    s = run(spec, data_root=data_root, out_dir=tmp_path, **QUIET)
    assert s["test"]["ACC"]["n"] == 1 and s["n_train"] == 48 and s["regime"] == "full"


def test_partial_finetune_trains_the_top_layer(data_root, tmp_path):
    """cpu-ft: cached hidden states after layer L-1, the top layer and head trained."""
    spec = RunSpec(dataset="MIntRec2.0", method="lgsrr", preset="cpu-ft", seeds=(0,),
                   max_train=64, max_eval=32, overrides={"epochs": 1, "text_max_len": 24,
                                                         "desc_max_len": 24})
    s = run(spec, data_root=data_root, out_dir=tmp_path, **QUIET)
    state = torch.load(Path(s["folder"]) / "seed_0" / "best.pt")
    assert any(k.startswith("encoder.layers.0.") for k in state)
    assert s["regime"] == "partial" and s["test"]["F1"]["n"] == 1


def test_fingerprint_holds_a_code_digest(data_root, tmp_path):
    from mir_core.models import get_method
    from mir_core.training.runs import code_digest
    spec = RunSpec(dataset="MIntRec2.0", method="text", seeds=(0,), max_train=60, max_eval=30,
                   overrides={"epochs": 1})
    s = run(spec, data_root=data_root, out_dir=tmp_path, **QUIET)
    fp = json.loads((Path(s["folder"]) / "seed_0" / "fingerprint.json").read_text())
    assert fp["code"] == code_digest(get_method("text")) != code_digest(get_method("lgsrr"))
