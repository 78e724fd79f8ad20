"""Table 7 from the released ranks beside the learned importance of a trained LGSRR run, over
all its seeds (issue #10's measurement; notebook 06 shows the same for one seed).

    .venv/bin/python benchmarks/case_stats.py --dataset MIntRec2.0 [--run outputs/runs/...]

Prints markdown (for docs/RESULTS.md) and writes outputs/benchmarks/case_stats_<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_line  # noqa: E402

from mir_core import cases, paths  # noqa: E402
from mir_core.data import get_spec  # noqa: E402
from mir_core.annotation.agreement import table7_check  # noqa: E402


def md(df: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a markdown table (index first)."""
    idx = df.index.name or ""
    cols = [" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in df.columns]
    lines = ["| " + " | ".join([idx, *cols]) + " |", "|" + "---|" * (len(cols) + 1)]
    for i, row in df.iterrows():
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([str(i), *cells]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="MIntRec2.0")
    ap.add_argument("--run", default=None, help="run folder (default: the newest full LGSRR run)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--top", type=int, default=5)
    a = ap.parse_args(argv)

    info = cases.load_run(a.run) if a.run else cases.latest_run(a.dataset)
    splits = info.splits(a.data_root)
    train, test = splits["train"], splits["test"]
    t7 = table7_check(info.dataset, a.data_root)
    per_seed, classes = [], []
    for seed in info.seeds:
        tr = info.train_scores(seed)
        te = info.predictions(seed)
        st = cases.rank_statistics(train.rank_order, tr, te, train_labels=train.label_ids,
                                   labels=get_spec(info.dataset).labels)
        per_seed.append({"seed": seed, "table7": st.table7(),
                         **{f"{k}": float(st.overall.loc["learned α", k])
                            for k in ("top1", "exact", "mean_tau")}})
        pc = st.per_class.copy()
        pc["seed"] = seed
        classes.append(pc.reset_index())
    counts = sum(p["table7"] for p in per_seed) / len(per_seed)
    trivial = cases.rank_statistics(train.rank_order, train.rank_order).overall  # sanity: 1.0
    agree = pd.DataFrame([{k: p[k] for k in ("seed", "top1", "exact", "mean_tau")}
                          for p in per_seed]).set_index("seed")
    pcs = pd.concat(classes)
    by_class = pcs.groupby("label").agg(n=("n", "first"), top1=("top1", "mean"),
                                        exact=("exact", "mean"), mean_tau=("mean_tau", "mean"),
                                        llm_first=("llm_first", "first"),
                                        learned_first=("learned_first",
                                                       lambda s: s.mode().iloc[0]))
    worst = by_class.sort_values(["mean_tau", "top1"]).head(a.top)
    best = by_class.sort_values(["mean_tau", "top1"], ascending=False).head(3)
    triv = cases.rank_statistics(train.rank_order, cases.trivial_orders(len(train))).overall

    print(f"Run `{info.folder}` ({info.dataset}, {info.method}, preset "
          f"`{info.spec.get('preset')}`, seeds {info.seeds}); {machine_line()}\n")
    print(f"Table 7 from the released ranks ({t7.n} train samples): "
          f"{'equal to the paper' if t7.equal else 'DIFFERENT from the paper'}\n")
    print(md(counts, 1))
    print("\nAgreement of the learned aspect order (α_A, α_E, α_I sorted) with the LLM order "
          "on train, per seed:\n")
    print(md(agree.round(3)))
    print(f"\nmean over seeds: top-1 {agree['top1'].mean():.3f} ± {agree['top1'].std(ddof=1):.3f}, "
          f"exact {agree['exact'].mean():.3f} ± {agree['exact'].std(ddof=1):.3f}, Kendall τ "
          f"{agree['mean_tau'].mean():.3f} ± {agree['mean_tau'].std(ddof=1):.3f}; the "
          f"trivial ranker I > A > E: top-1 {triv.loc['learned α', 'top1']:.3f}, exact "
          f"{triv.loc['learned α', 'exact']:.3f}, τ {triv.loc['learned α', 'mean_tau']:.3f}"
          f" (identity check: {trivial.loc['learned α', 'exact']:.1f})\n")
    print(f"Classes where learned and LLM importance disagree most (lowest mean τ, averaged "
          f"over seeds):\n")
    print(md(worst.round(3)))
    print("\n... and agree most:\n")
    print(md(best.round(3)))
    out = paths.output_dir() / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"case_stats_{info.dataset}.json").write_text(json.dumps({
        "run": str(info.folder), "seeds": info.seeds, "table7_equal_paper": t7.equal,
        "learned_counts_mean": {" ".join(map(str, k)): v for k, v in counts.round(2).to_dict().items()},
        "agreement": agree.reset_index().to_dict("records"),
        "worst_classes": worst.reset_index().to_dict("records"),
        "machine": machine_line()}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
