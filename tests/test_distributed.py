"""Training in several processes: two CPU processes (gloo) through the command line, started
by ``torchrun`` and by ``accelerate launch`` with the shipped config; one run folder, every
test row once, the main process alone writing; a killed rank ends the run, never a hang."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import write_precision_choice
from mir_core.metrics import classification_metrics
from mir_core.training.distributed import ShardedBatches
from mir_core.training.loop import _Rows, bucketed_batches, make_loader

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONFIGS = REPO / "configs" / "accelerate"
TRAIN = ["-m", "mir_core", "train", "--dataset", "IEMOCAP-DA", "--method", "lgsrr",
         "--preset", "cpu", "--seeds", "0", "--max-train", "96", "--max-eval", "50"]


# ---------------------------------------------------------------------------- unit level
@pytest.mark.parametrize("world", [2, 3])
def test_shards_cover_each_global_batch_once(world):
    batches = bucketed_batches(np.arange(103) % 17, batch_size=8, seed=3, pool_batches=4)
    shards = [list(ShardedBatches(batches, r, world)) for r in range(world)]
    assert all(len(s) == len(batches) for s in shards)
    for step, batch in enumerate(batches):
        parts = [s[step] for s in shards]
        assert sorted(sum(parts, [])) == sorted(batch)           # disjoint, complete
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_a_batch_smaller_than_the_world_gives_every_process_a_sample():
    shards = [list(ShardedBatches([[5, 9]], r, 3))[0] for r in range(3)]
    assert shards == [[5], [9], [5]]


def test_one_process_iterates_what_a_shuffled_dataloader_iterates():
    """The single-process path did not change: same order as DataLoader(shuffle=True)."""
    class Inputs:
        lengths = None

        def __len__(self):
            return 50

        def batch(self, idx, trim=True):
            return {"idx": idx}

    got = [b["idx"].tolist() for b in make_loader(Inputs(), 8, True, seed=4, trim=False)]
    g = torch.Generator().manual_seed(4)
    ref = [b.tolist() for b in DataLoader(_Rows(50), batch_size=8, shuffle=True, generator=g)]
    assert got == ref


def test_shipped_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file
    names = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert names == ["cpu_2proc.yaml", "fsdp.yaml", "multi_gpu.yaml", "multi_node.yaml",
                     "one_gpu.yaml"]
    for name in names:
        cfg = load_config_from_file(str(CONFIGS / name))
        assert cfg.num_processes >= 1
        assert f"configs/accelerate/{name}" in (CONFIGS / name).read_text()   # how to launch
    assert load_config_from_file(str(CONFIGS / "fsdp.yaml")).fsdp_config["fsdp_use_orig_params"]


# ------------------------------------------------------------------------- two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, tag: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MIR_TEST_TAG": tag,
           "MIR_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    # the cpu preset's precision auto, read from the cache here (timing it is
    # tests/test_precision.py's business); main resolves it and every process follows
    write_precision_choice(tmp_path / "cache", "fp32")
    return env


def _tagged(tag: str) -> list[psutil.Process]:
    """Processes still alive that were started with this test's tag in their environment."""
    out = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("MIR_TEST_TAG") == tag:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return out


def _launch(kind: str, port: int) -> list[str]:
    if kind == "torchrun":
        return [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(port)]
    return [str(BIN / "accelerate"), "launch", "--config_file", str(CONFIGS / "cpu_2proc.yaml"),
            "--main_process_port", str(port)]


def _kill_all(tag: str) -> None:
    for p in _tagged(tag):
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.mark.parametrize("kind", ["torchrun", "accelerate"])
def test_two_processes_write_one_run_folder(kind, data_root, tmp_path):
    tag = uuid.uuid4().hex
    out = tmp_path / "out"
    cmd = _launch(kind, _free_port()) + TRAIN + ["--set", "epochs=2", "--out", str(out)]
    try:
        proc = subprocess.run(cmd, env=_env(tmp_path, tag), capture_output=True, text=True,
                              timeout=240, cwd=tmp_path)
    finally:
        left = _tagged(tag)
        _kill_all(tag)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not left, f"processes left behind: {left}"

    runs = list((out / "runs" / "IEMOCAP-DA").iterdir())
    assert len(runs) == 1, runs
    run = runs[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["seeds"] == [0]
    fp = json.loads((run / "seed_0" / "fingerprint.json").read_text())
    assert fp["world_size"] == 2
    pred = pd.read_csv(run / "seed_0" / "predictions.csv")
    assert len(pred) == summary["n_test"] == 50 and pred["key"].is_unique
    again = classification_metrics(pred["label_id"].to_numpy(), pred["pred_id"].to_numpy())
    metrics = json.loads((run / "seed_0" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["global_batch"] == 32
    for k in ("ACC", "F1", "P", "R"):
        assert again[k] == pytest.approx(metrics[k])
        assert summary["test"][k]["mean"] == pytest.approx(metrics[k], abs=0.005)   # rounded
    # one process logs: one "seed 0" line and one JSON answer, naming the global batch
    assert proc.stdout.count("seed 0: test F1") == 1, proc.stdout
    assert f"test F1 {metrics['F1']:.2f}" in proc.stdout
    assert "global batch 32 = 2 x 16 per process" in proc.stdout
    assert proc.stdout.count('"folder"') == 1
    # the features were computed once and published once
    manifests = list((tmp_path / "cache").rglob("manifest.json"))
    assert manifests and not list((tmp_path / "cache").rglob("parts"))


def test_a_killed_rank_ends_the_run_with_an_error(data_root, tmp_path):
    tag = uuid.uuid4().hex
    out = tmp_path / "out"
    cmd = _launch("torchrun", _free_port()) + TRAIN + [
        "--set", "epochs=400", "patience=400", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=_env(tmp_path, tag), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        deadline = time.time() + 180
        lock = None
        while time.time() < deadline and lock is None:     # training has started
            found = (list((out / "runs").rglob("seed_*/.lock")) if (out / "runs").exists()
                     else [])                                # a seed's lock, with its holder
            lock = found[0] if found and found[0].read_text() else None
            time.sleep(0.5)
        assert lock is not None, "the run never started"
        time.sleep(3)
        workers = [p for p in _tagged(tag) if p.environ().get("RANK") == "1"
                   and p.pid != proc.pid]
        assert workers, "no rank-1 worker found"
        os.kill(workers[0].pid, signal.SIGKILL)
        log, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        left = _tagged(tag)
        _kill_all(tag)
    assert proc.returncode != 0
    assert "Signal 9" in log or "SIGKILL" in log or "exitcode" in log, log[-2000:]
    assert not left, f"processes left behind: {left}"
    run = lock.parent
    assert not (run / "summary.json").exists()
    assert not list(run.glob("seed_*/metrics.json"))


def test_notebook_04_trains_in_two_processes(data_root, tmp_path):
    """notebook_launcher from the kernel: the same run, two processes, one summary."""
    from mir_core.demo import QUICK
    from mir_core.notebooks import run_notebook
    from mir_core.records import Recorder

    params = {**QUICK["04"], "data_root": str(data_root), "methods": ["lgsrr"],
              "fusions": ["official"], "seeds": [0], "num_processes": 2,
              "runs_dir": str(tmp_path / "runs_out")}
    run_notebook("04", params, output_dir=tmp_path)
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith("04") and p.is_dir())
    rec = Recorder.read(folder)
    (summary,) = rec["summaries"].values()
    assert summary["processes"] == 2 and summary["seeds"] == [0]
    assert (Path(summary["folder"]) / "summary.json").exists()
