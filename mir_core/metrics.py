"""Classification metrics as the MIR papers report them (scikit-learn, x100) and their
mean +- std over seeds."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

METRICS = ("ACC", "F1", "P", "R", "WF1", "WP")
METRIC_NAMES = {"ACC": "accuracy", "F1": "macro F1", "P": "macro precision",
                "R": "macro recall", "WF1": "weighted F1", "WP": "weighted precision"}


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int],
                           num_labels: int | None = None) -> dict[str, float]:
    """ACC, macro F1/P/R, weighted F1/P, in percent. Macro averages run over the labels
    present in y_true or y_pred (scikit-learn's default, as the papers' code does)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal, "
                         "non-empty 1-D arrays")
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="macro",
                                                 zero_division=0)
    wp, _, wf, _ = precision_recall_fscore_support(y_true, y_pred, average="weighted",
                                                   zero_division=0)
    out = {"ACC": accuracy_score(y_true, y_pred), "F1": f, "P": p, "R": r, "WF1": wf, "WP": wp}
    return {k: round(100.0 * float(v), 4) for k, v in out.items()}


def confusion(y_true, y_pred, num_labels: int, normalize: str | None = "true") -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=list(range(num_labels)), normalize=normalize)


def summarize(rows: Iterable[dict[str, float]], keys: Sequence[str] = METRICS) -> dict:
    """{metric: {'mean', 'std', 'n'}} over seeds (std with ddof=1; 0 for one seed)."""
    rows = list(rows)
    out = {}
    for k in keys:
        v = np.asarray([r[k] for r in rows], dtype=float)
        out[k] = {"mean": round(float(v.mean()), 2) if len(v) else float("nan"),
                  "std": round(float(v.std(ddof=1)), 2) if len(v) > 1 else 0.0,
                  "n": int(len(v))}
    return out


def format_summary(summary: dict, keys: Sequence[str] = METRICS) -> str:
    return " | ".join(f"{k} {summary[k]['mean']:.2f} ± {summary[k]['std']:.2f}" for k in keys)
