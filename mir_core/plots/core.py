"""Pure plotting functions for data and training results: inputs in, plotly Figure out.
Notebooks only call these; tests check the figures' data."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..metrics import METRICS


def label_distribution(counts: Mapping[str, Mapping[str, int]], title: str = "") -> go.Figure:
    """counts: {split: {label: n}} -> grouped bar chart, labels sorted by the first split."""
    splits = list(counts)
    labels = sorted(counts[splits[0]], key=lambda k: -counts[splits[0]][k])
    fig = go.Figure([go.Bar(name=s, x=labels, y=[counts[s].get(lab, 0) for lab in labels])
                     for s in splits])
    fig.update_layout(barmode="group", title=title or "Samples per label",
                      xaxis_title="label", yaxis_title="samples", xaxis_tickangle=-45)
    return fig


def metric_comparison(rows: Mapping[str, Mapping[str, float]],
                      errors: Mapping[str, Mapping[str, float]] | None = None,
                      metrics: Sequence[str] = METRICS, title: str = "") -> go.Figure:
    """rows: {system: {metric: value}}; errors: {system: {metric: std}} -> grouped bars."""
    fig = go.Figure()
    for name, vals in rows.items():
        err = None
        if errors and name in errors:
            err = dict(type="data", array=[errors[name].get(m, 0.0) for m in metrics])
        fig.add_bar(name=name, x=list(metrics), y=[vals[m] for m in metrics], error_y=err)
    fig.update_layout(barmode="group", title=title, yaxis_title="%")
    return fig


def confusion_heatmap(y_true, y_pred=None, labels: Sequence[str] | None = None,
                      title: str = "", recall: bool = True) -> go.Figure:
    """Row-normalised confusion matrix with per-class recall, like Figure 2: now
    :func:`mir_core.plots.cases.confusion_heatmap`, which takes ``(y_true, y_pred, labels)``
    or the older ``(cm, labels)``."""
    from .cases import confusion_heatmap as _confusion_heatmap
    return _confusion_heatmap(y_true, y_pred, labels, title=title, recall=recall)


def training_curves(histories: Mapping[str, Sequence[Mapping]], key: str = "dev_F1",
                    title: str = "") -> go.Figure:
    """histories: {run/seed name: [{'epoch', key, ...}]} -> one line each."""
    fig = go.Figure()
    for name, hist in histories.items():
        fig.add_scatter(x=[h["epoch"] for h in hist], y=[h[key] for h in hist], name=name,
                        mode="lines+markers")
    fig.update_layout(title=title or key, xaxis_title="epoch", yaxis_title=key)
    return fig


def importance_by_rank(pred: pd.DataFrame, rank_order: np.ndarray | None = None,
                       sources: Sequence[str] = ("T", "A", "E", "I"),
                       title: str = "") -> go.Figure:
    """Box plot of the learned importance weights alpha per source (predictions.csv)."""
    fig = go.Figure()
    for s in sources:
        col = f"alpha_{s}"
        if col in pred:
            fig.add_box(y=pred[col], name=s, boxmean=True)
    fig.update_layout(title=title or "Learned importance weights α (test)",
                      yaxis_title="α", xaxis_title="source")
    return fig
