"""Pure plotting functions for the LLM annotation chain (notebook 02): data in, plotly
Figure out."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

ASPECT_LABELS = ("A: Speakers' Actions", "E: Facial Expressions", "I: Interaction with Others")


def cue_frequency_bar(ranked: Sequence[tuple[str, int]], selected: Sequence[str] = (),
                      rounds: int | None = None, title: str = "") -> go.Figure:
    """CoT step 1: how many rounds named each (normalised) cue; the top-K highlighted."""
    cues = [c for c, _ in ranked]
    counts = [n for _, n in ranked]
    colors = ["#1f77b4" if c in set(selected) else "#b0b0b0" for c in cues]
    fig = go.Figure(go.Bar(x=cues, y=counts, marker_color=colors,
                           text=["selected" if c in set(selected) else "" for c in cues],
                           textposition="outside"))
    ytitle = f"rounds naming the cue (of {rounds})" if rounds else "rounds naming the cue"
    fig.update_layout(title=title or "Cue discovery (CoT step 1): frequency over rounds",
                      xaxis_title="cue (normalised)", yaxis_title=ytitle, xaxis_tickangle=-30)
    return fig


def first_choice_confusion(confusion: np.ndarray, title: str = "",
                           ref_name: str = "GPT-3.5", pred_name: str = "model") -> go.Figure:
    """3x3 heatmap of first choices: rows the reference's, columns the prediction's."""
    cm = np.asarray(confusion)
    short = ["A", "E", "I"]
    fig = go.Figure(go.Heatmap(z=cm, x=[f"{pred_name}: {s}" for s in short],
                               y=[f"{ref_name}: {s}" for s in short], colorscale="Blues",
                               text=cm, texttemplate="%{text}", showscale=False))
    fig.update_layout(title=title or f"First choice: {ref_name} vs {pred_name}",
                      yaxis_autorange="reversed", width=420, height=380)
    return fig


def agreement_bars(table: pd.DataFrame, metrics: Sequence[str] = ("top1", "exact", "mean_tau"),
                   title: str = "") -> go.Figure:
    """Grouped bars of agreement numbers, one group per metric, one bar per ranker
    (``table``: rows rankers, as :func:`mir_core.annotation.agreement_table`)."""
    fig = go.Figure()
    for ranker, row in table.iterrows():
        fig.add_bar(name=str(ranker), x=list(metrics), y=[row[m] for m in metrics],
                    text=[f"{row[m]:.2f}" for m in metrics], textposition="outside")
    fig.update_layout(barmode="group", title=title or "Agreement with the released GPT-3.5 ranks",
                      yaxis_title="value", yaxis_range=[min(-0.1, float(table[list(metrics)]
                                                                   .min().min()) - 0.1), 1.1])
    return fig


def table7_bars(ours: pd.DataFrame, paper: pd.DataFrame | None = None,
                title: str = "") -> go.Figure:
    """Table 7 as grouped bars (aspect x Rank@k); the paper's numbers as hatched bars
    beside the recomputed ones."""
    fig = go.Figure()
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c")
    for k, col in enumerate(ours.columns):
        fig.add_bar(name=f"{col} (recomputed)", x=list(ours.index), y=ours[col].tolist(),
                    marker_color=palette[k % 3])
        if paper is not None:
            fig.add_bar(name=f"{col} (paper)", x=list(paper.index), y=paper[col].tolist(),
                        marker_color=palette[k % 3], marker_pattern_shape="/", opacity=0.6)
    fig.update_layout(barmode="group", title=title or "Table 7: aspect counts at each rank",
                      yaxis_title="samples")
    return fig


def rank_distribution(orders: Mapping[str, np.ndarray], title: str = "") -> go.Figure:
    """Share of samples putting each aspect first, per ranker (failure rows skipped)."""
    fig = go.Figure()
    for name, arr in orders.items():
        arr = np.asarray(arr)
        arr = arr[arr[:, 0] >= 0]
        share = [float((arr[:, 0] == a).mean()) if len(arr) else 0.0 for a in range(3)]
        fig.add_bar(name=name, x=list(ASPECT_LABELS), y=share)
    fig.update_layout(barmode="group", title=title or "Aspect ranked first",
                      yaxis_title="share of samples", yaxis_range=[0, 1])
    return fig


def frame_strip(frames: np.ndarray, indices: Sequence[int] | None = None, cols: int = 8,
                title: str = "") -> go.Figure:
    """Sampled frames (T, H, W, 3) uint8 in a grid, each titled with its frame index."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) frames, got {frames.shape}")
    t = len(frames)
    cols = max(1, min(cols, t))
    rows = int(np.ceil(t / cols))
    names = [f"frame {int(i)}" for i in (indices if indices is not None else range(t))]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names,
                        horizontal_spacing=0.01, vertical_spacing=0.08)
    for k in range(t):
        fig.add_trace(go.Image(z=frames[k]), row=k // cols + 1, col=k % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title or f"{t} frames sampled uniformly",
                      height=160 * rows + 80, margin=dict(l=10, r=10, t=70, b=10))
    return fig
