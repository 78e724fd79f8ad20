"""The alpha collapse, studied: does NeuralNDCG against the LLM ranks (text relevance 5,
aspects 3/2/1) just drive alpha_T to 1? LGSRR (official fusion) under variants of the
ranking loss, over seeds, with F1 and what alpha learns.

    python benchmarks/alpha_collapse.py --preset cpu-ft --dataset MIntRec2.0 --seeds 0 1 2
    python benchmarks/alpha_collapse.py --preset cpu --variants base tau0.1 lambda0

Variants: temperature tau in {1, 0.1} x lambda in {0.5, 1}, lambda 0 (no ranking loss),
and relevance "aspects" (only the three aspects ranked, the text left out of the slate).
Each variant is one CLI call, printed with its row. Writes outputs/benchmarks/<tag>.json/.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info, machine_line  # noqa: E402

from mir_core.__main__ import _parse_sets  # noqa: E402
from mir_core.data import load_split  # noqa: E402
from mir_core.importance import run_importance  # noqa: E402
from mir_core.training import RunSpec, run  # noqa: E402

VARIANTS = {
    "base": ({"ndcg_temperature": 1.0, "rank_weight": 1.0}, {}),
    "lambda0.5": ({"ndcg_temperature": 1.0, "rank_weight": 0.5}, {}),
    "tau0.1": ({"ndcg_temperature": 0.1, "rank_weight": 1.0}, {}),
    "tau0.1-lambda0.5": ({"ndcg_temperature": 0.1, "rank_weight": 0.5}, {}),
    "lambda0": ({"rank_weight": 0.0}, {}),
    "aspects": ({"ndcg_temperature": 1.0, "rank_weight": 1.0}, {"relevance": "aspects"}),
    "aspects-tau0.1": ({"ndcg_temperature": 0.1, "rank_weight": 1.0}, {"relevance": "aspects"}),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--dataset", default="MIntRec2.0")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="outputs/benchmarks")
    a = ap.parse_args()
    tag = f"alpha_collapse_{a.preset}_{a.dataset}"
    base_over = _parse_sets(a.set)
    train = load_split(a.dataset, "train")
    print(machine_line(), flush=True)
    rows = []
    for v in a.variants:
        over, opts = VARIANTS[v]
        t0 = time.perf_counter()
        s = run(RunSpec(dataset=a.dataset, method="lgsrr", preset=a.preset, seeds=tuple(a.seeds),
                        options={"fusion": "official", **opts}, overrides={**base_over, **over}),
                out_dir=Path(a.out) / tag)
        imp = run_importance(s, train)
        cmd = (f"python -m mir_core train --dataset {a.dataset} --method lgsrr --preset "
               f"{a.preset} --seeds {' '.join(map(str, a.seeds))} --set "
               + " ".join(f"{k}={x}" for k, x in {**base_over, **over}.items())
               + (" --ablate " + " ".join(f"{k}={x}" for k, x in opts.items()) if opts else ""))
        rows.append({"variant": v, "F1": s["test"]["F1"], "ACC": s["test"]["ACC"],
                     "per_seed_F1": [r["F1"] for r in s["per_seed"]],
                     "mean_alpha_test": imp["mean_alpha_test"],
                     "mean_alpha_train": imp.get("mean_alpha_train"),
                     "train_vs_llm": imp.get("train_vs_llm"),
                     "wall_seconds": round(time.perf_counter() - t0, 1), "command": cmd})
        print(json.dumps(rows[-1]), flush=True)
    lines = [f"Machine: {machine_line()}", "",
             f"**{a.dataset}, LGSRR (official fusion), preset `{a.preset}`, seeds {a.seeds}**",
             "", "| variant | test F1 | test ACC | mean α test T / A / E / I | train: learned "
             "= LLM order (exact / top-1 / τ) | wall s |", "|---|---|---|---|---|---|"]
    for r in rows:
        al = " / ".join(f"{r['mean_alpha_test'][k]:.3f}" for k in "TAEI")
        ag = r["train_vs_llm"]
        lines.append(f"| {r['variant']} | {r['F1']['mean']:.2f} ± {r['F1']['std']:.2f} | "
                     f"{r['ACC']['mean']:.2f} ± {r['ACC']['std']:.2f} | {al} | "
                     + (f"{ag['exact']:.3f} / {ag['top1']:.3f} / {ag['mean_tau']:+.3f}"
                        if ag else "n/a") + f" | {r['wall_seconds']:.0f} |")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag}.json").write_text(json.dumps({"machine": machine_info(), "rows": rows},
                                                indent=2))
    (out / f"{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
