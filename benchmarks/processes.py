"""One vs two CPU processes on the same run at the same global batch: wall time and test
metrics per seed, through the command line users run (``python -m mir_core train`` and
``torchrun --nproc_per_node 2 -m mir_core train``).

No speed-up is expected on a 2-core machine (the point is identical bookkeeping and F1
within the seed spread). The features are encoded once beforehand (a warm-up run), so the
timed runs measure training only. Each process gets one thread (the ``cpu`` preset's
``num_threads=1``), so the one-process run uses one core and the two-process run two.

    .venv/bin/python benchmarks/processes.py --dataset IEMOCAP-DA --seeds 0 1 2 \
        --out outputs/benchmarks/processes.json
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, machine_line  # noqa: E402

BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(launcher: list[str], args: list[str], out: Path) -> tuple[float, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run(launcher + ["-m", "mir_core", "train", *args, "--out", str(out)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    (summary,) = [json.loads(p.read_text()) for p in out.rglob("summary.json")]
    return wall, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="IEMOCAP-DA")
    ap.add_argument("--method", default="lgsrr")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    ap.add_argument("--out", default="outputs/benchmarks/processes.json")
    a = ap.parse_args()
    print(machine_line())
    base = ["--dataset", a.dataset, "--method", a.method, "--preset", a.preset]
    work = Path(tempfile.mkdtemp(prefix="mir-processes-"))
    py = [sys.executable]
    _train(py, base + ["--seeds", "0", "--set", "epochs=1"], work / "warm")   # encode once
    seeds = ["--seeds", *map(str, a.seeds)]
    rows = {}
    for name, launcher in (("1 process", py),
                           ("2 processes (torchrun)",
                            [str(BIN / "torchrun"), "--nproc_per_node", "2",
                             "--master_port", str(_port())])):
        if int(name[0]) not in a.processes:
            continue
        wall, s = _train(launcher, base + seeds, work / name.split()[0])
        rows[name] = {"wall_s": round(wall, 1), "train_s": s["train_seconds_total"],
                      "processes": s["processes"], "test": s["test"],
                      "per_seed": s["per_seed"]}
        f1 = s["test"]["F1"]
        print(f"{name}: wall {wall:.0f} s, training {s['train_seconds_total']:.0f} s, "
              f"macro-F1 {f1['mean']:.2f} ± {f1['std']:.2f} "
              f"(per seed {[r['F1'] for r in s['per_seed']]})")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_info(), "dataset": a.dataset,
                               "method": a.method, "preset": a.preset, "seeds": a.seeds,
                               "runs": rows}, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
