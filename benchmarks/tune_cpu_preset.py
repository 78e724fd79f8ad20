"""Choose the CPU preset on the dev split: a small grid over how the frozen features enter
the head (pooling, cached layers mixed, projection size, learning rate, dropout).

    python benchmarks/tune_cpu_preset.py --dataset MIntRec2.0 --method text lgsrr --seeds 0 1

Selection uses dev macro-F1 only (mean over the seeds); test numbers are printed for the
record but never used to choose. Writes outputs/benchmarks/tune_<dataset>.json and prints a
table sorted by dev macro-F1.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mir_core.training import RunSpec, run

GRID = [
    {"pooling": "mean", "layers": 1, "proj_dim": 0},
    {"pooling": "cls", "layers": 1, "proj_dim": 0},
    {"pooling": "mean", "layers": 1, "proj_dim": 512},
    {"pooling": "mean", "layers": 4, "proj_dim": 512},
    {"pooling": "mean", "layers": 7, "proj_dim": 512},
    {"pooling": "mean", "layers": 4, "proj_dim": 512, "lr": 3e-3},
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="MIntRec2.0")
    ap.add_argument("--method", nargs="+", default=["text", "lgsrr"])
    ap.add_argument("--fusion", default="official")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--grid", default=None, help="JSON list of TrainConfig overrides")
    ap.add_argument("--out", default="outputs/benchmarks")
    a = ap.parse_args()
    grid = json.loads(a.grid) if a.grid else GRID
    rows = []
    for method in a.method:
        for ov in grid:
            options = {"fusion": a.fusion} if method == "lgsrr" else {}
            s = run(RunSpec(dataset=a.dataset, method=method, preset=a.preset, options=options,
                            seeds=tuple(a.seeds), overrides=ov),
                    out_dir=Path(a.out) / f"tune-{a.preset}")
            rows.append({"method": method, **ov, "dev_F1": s["dev"]["F1"]["mean"],
                         "dev_ACC": s["dev"]["ACC"]["mean"], "test_F1": s["test"]["F1"]["mean"],
                         "test_ACC": s["test"]["ACC"]["mean"],
                         "train_s": s["train_seconds_total"]})
    rows.sort(key=lambda r: (r["method"], -r["dev_F1"]))
    out = Path(a.out) / f"tune_{a.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
