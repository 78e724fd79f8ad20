"""Seconds per training epoch (train pass only, no evaluation) of text-only vs LGSRR on the
real train split, for a preset: the cost of LGSRR's relational head and NeuralNDCG.

    python benchmarks/epoch_speed.py --preset cpu --dataset MIntRec2.0 [--epochs 3] [--threads 1]
    python benchmarks/epoch_speed.py --preset cpu-ft --set precision=bf16

Prints the machine (CPU model, flags, torch, threads), each method's per-epoch seconds
(median over --epochs) and the LGSRR / text ratio. Writes
outputs/benchmarks/epoch_speed_<preset>_<dataset>_t<threads>_<precision>.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from machine import machine_info, machine_line  # noqa: E402

from mir_core.__main__ import _parse_sets  # noqa: E402
from mir_core.data import load_split  # noqa: E402
from mir_core.models import BuildContext, get_method  # noqa: E402
from mir_core.precision import autocast  # noqa: E402
from mir_core.training import preset  # noqa: E402
from mir_core.training.inputs import build_inputs  # noqa: E402
from mir_core.training.loop import make_loader  # noqa: E402


def epoch_seconds(method: str, cfg, splits, epochs: int) -> tuple[list[float], str]:
    m = get_method(method)
    data = build_inputs(splits, cfg, m.sources, m.uses_ranks, method)
    torch.manual_seed(0)
    model = m.build(BuildContext(30, cfg, data.encoder_factory(), m.make_options({}))).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    loader = make_loader(data.splits["train"], cfg.batch_size, True, 0, data.trim,
                         cfg.length_bucketing)
    out = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for batch in loader:
            with autocast(data.precision, "cpu"):
                loss = model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
        out.append(time.perf_counter() - t0)
    return out, data.precision


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--dataset", default="MIntRec2.0")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="outputs/benchmarks")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = preset(a.dataset, a.preset, **_parse_sets(a.set))
    splits = {s: load_split(a.dataset, s) for s in ("train", "dev", "test")}
    splits["train"] = splits["train"].subset(a.max_train, seed=0)
    print(machine_line(), flush=True)
    res = {}
    for method in ("text", "lgsrr"):
        secs, precision = epoch_seconds(method, cfg, splits, a.epochs)
        res[method] = {"epochs": [round(s, 3) for s in secs], "median": statistics.median(secs),
                       "precision": precision}
        print(f"{method}: {res[method]['median']:.2f} s/epoch ({res[method]['epochs']}, "
              f"{precision})", flush=True)
    ratio = res["lgsrr"]["median"] / res["text"]["median"]
    print(f"LGSRR / text: {ratio:.2f}x  ({a.dataset}, preset {a.preset}, n_train "
          f"{len(splits['train'])}, {a.threads} thread(s))")
    # one file per setting: threads and the resolved precision in the name
    out = Path(a.out) / (f"epoch_speed_{a.preset}_{a.dataset}_t{a.threads}_"
                         f"{res['lgsrr']['precision']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_info(), "preset": a.preset,
                               "config": cfg.__dict__, "seconds": res, "ratio": ratio},
                              indent=2, default=str))


if __name__ == "__main__":
    main()
