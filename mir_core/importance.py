"""What the learned importance weights alpha say, next to the LLM's ranking.

LGSRR's weight network gives every sample alpha over (T, A, E, I) (Eq. 8), trained with
NeuralNDCG against the LLM's rank of the three aspects (train split only: the release has
no test ranks). The learned aspect order of a sample is its three aspect weights sorted
descending; this module compares it with the LLM order (top-1, exact order, Kendall tau,
via :func:`mir_core.annotation.agreement.agreement`) and summarises alpha per source.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .annotation.agreement import agreement
from .data import ASPECT_SHORT, MIRSplit

SOURCES = ("T", *ASPECT_SHORT)


def learned_orders(scores: pd.DataFrame) -> np.ndarray:
    """(N, 3) aspect indices by descending alpha_A/E/I (ties: A before E before I)."""
    a = scores[[f"alpha_{s}" for s in ASPECT_SHORT]].to_numpy()
    return np.argsort(-a, axis=1, kind="stable")


def mean_alpha(scores: pd.DataFrame) -> dict[str, float]:
    return {s: float(scores[f"alpha_{s}"].mean()) for s in SOURCES if f"alpha_{s}" in scores}


def seed_importance(seed_dir: str | Path, train: MIRSplit) -> dict:
    """Mean alpha on test and train, and the learned-vs-LLM agreement on train."""
    seed_dir = Path(seed_dir)
    test = pd.read_csv(seed_dir / "predictions.csv")
    out = {"mean_alpha_test": mean_alpha(test)}
    tf = seed_dir / "train_scores.csv"
    if tf.exists():
        tr = pd.read_csv(tf)
        if tr["key"].tolist() != train.keys:
            raise ValueError(f"{tf}: keys differ from the train split given; pass the split "
                             "the run was trained on (same max_train)")
        out["mean_alpha_train"] = mean_alpha(tr)
        if train.has_ranks:
            ag = agreement(learned_orders(tr), train.rank_order)
            out["train_vs_llm"] = {"top1": ag.top1, "exact": ag.exact, "mean_tau": ag.mean_tau,
                                   "n": ag.n}
    return out


def run_importance(summary: dict, train: MIRSplit) -> dict:
    """Per-seed :func:`seed_importance` and their means, for a run summary."""
    per_seed = {s: seed_importance(Path(summary["folder"]) / f"seed_{s}", train)
                for s in summary["seeds"]}
    first = next(iter(per_seed.values()))
    out: dict = {"per_seed": per_seed}
    for key in ("mean_alpha_test", "mean_alpha_train"):
        if key in first:
            out[key] = {s: float(np.mean([p[key][s] for p in per_seed.values()]))
                        for s in first[key]}
    if "train_vs_llm" in first:
        out["train_vs_llm"] = {k: float(np.mean([p["train_vs_llm"][k] for p in per_seed.values()]))
                               for k in ("top1", "exact", "mean_tau")}
    return out
