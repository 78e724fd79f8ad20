"""Plotly views of extracted features (pure functions: arrays / frames in, figure out).

    >>> frame_feature_heatmap(feats, mask)         # one clip's (T, D) features over time
    >>> pca_trajectory(feats, mask)                # the same clip as a path in PCA space
    >>> clip_scatter(pooled, labels)               # clip-level means coloured by label
    >>> manifest_table(result.manifest)            # per-item status, errors in red
    >>> throughput_bar({"efficientnet-lite0": 35.2, ...}, unit="frames/s")
    >>> length_histogram(lengths, max_len=50)      # token / frame counts vs the padding length
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go


def _valid(features: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(T, D) rows kept by the mask, as float32."""
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be (T, D), got shape {x.shape}")
    if mask is not None:
        x = x[np.asarray(mask, dtype=bool)]
    return x


def pca(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Projections (N, k) on the top-k principal axes and their explained-variance ratios."""
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(0, keepdims=True)
    if len(x) < 2:
        return np.zeros((len(x), k)), np.zeros(k)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k_eff = min(k, vt.shape[0])
    proj = np.zeros((len(x), k))
    proj[:, :k_eff] = xc @ vt[:k_eff].T
    var = s ** 2
    ratio = np.zeros(k)
    ratio[:k_eff] = var[:k_eff] / max(var.sum(), 1e-12)
    return proj, ratio


def frame_feature_heatmap(features: np.ndarray, mask: np.ndarray | None = None,
                          top_dims: int = 64, title: str = "Frame features over time",
                          step_name: str = "frame") -> go.Figure:
    """Heatmap of the ``top_dims`` most variable feature dimensions (rows) over time (columns)."""
    x = _valid(features, mask)                                   # (T, D)
    if len(x) == 0:
        raise ValueError("no valid time step to plot (all masked)")
    order = np.argsort(-x.std(0))[:top_dims]                     # most variable dims first
    z = x[:, order].T                                            # (k, T)
    fig = go.Figure(go.Heatmap(z=z, x=list(range(len(x))), y=[f"d{int(i)}" for i in order],
                               colorscale="Viridis", colorbar={"title": "activation"}))
    fig.update_layout(title=title, xaxis_title=step_name,
                      yaxis_title=f"top {len(order)} dims by variance", height=420)
    return fig


def pca_trajectory(features: np.ndarray, mask: np.ndarray | None = None,
                   title: str = "PCA trajectory of one clip", step_name: str = "frame",
                   seconds_per_step: float | None = None) -> go.Figure:
    """The clip's (T, D) features projected on their first two principal axes, in time order."""
    x = _valid(features, mask)
    proj, ratio = pca(x, 2)
    t = np.arange(len(x)) * (seconds_per_step or 1.0)
    fig = go.Figure(go.Scatter(
        x=proj[:, 0], y=proj[:, 1], mode="lines+markers",
        marker={"color": t, "colorscale": "Plasma", "size": 9, "showscale": True,
                "colorbar": {"title": "s" if seconds_per_step else step_name}},
        line={"color": "rgba(120,120,120,0.5)"},
        text=[f"{step_name} {i}" for i in range(len(x))], hoverinfo="text"))
    fig.update_layout(title=title, height=420,
                      xaxis_title=f"PC1 ({ratio[0]:.0%})", yaxis_title=f"PC2 ({ratio[1]:.0%})")
    return fig


def clip_scatter(pooled: np.ndarray, labels: Sequence[str], ids: Sequence[str] | None = None,
                 title: str = "Clip-level features (PCA)") -> go.Figure:
    """(N, D) clip vectors in 2-D PCA, one colour per label."""
    proj, ratio = pca(np.asarray(pooled), 2)
    labels = [str(x) for x in labels]
    ids = list(ids) if ids is not None else [str(i) for i in range(len(labels))]
    fig = go.Figure()
    for lab in sorted(set(labels)):
        sel = [i for i, x in enumerate(labels) if x == lab]
        fig.add_trace(go.Scatter(x=proj[sel, 0], y=proj[sel, 1], mode="markers", name=lab,
                                 text=[ids[i] for i in sel], marker={"size": 10}))
    fig.update_layout(title=title, height=420, xaxis_title=f"PC1 ({ratio[0]:.0%})",
                      yaxis_title=f"PC2 ({ratio[1]:.0%})")
    return fig


def manifest_table(manifest, columns: Sequence[str] = ("item_id", "ok", "length",
                                                        "error_class", "error_message"),
                   title: str = "Extraction manifest") -> go.Figure:
    """Per-item status table; failed rows in red."""
    cols = [c for c in columns if c in manifest.columns]
    ok = (manifest["ok"].astype(bool).tolist() if "ok" in manifest.columns
          else [True] * len(manifest))
    fill = ["#ffffff" if v else "#fde0e0" for v in ok]
    fig = go.Figure(go.Table(
        header={"values": cols, "fill_color": "#e8e8f0", "align": "left"},
        cells={"values": [manifest[c].astype(str).str.slice(0, 90).tolist() for c in cols],
               "fill_color": [fill] * len(cols), "align": "left"}))
    fig.update_layout(title=title, height=min(120 + 28 * len(manifest), 700))
    return fig


def throughput_bar(values: Mapping[str, float], unit: str = "items/s",
                   title: str = "Throughput") -> go.Figure:
    """One bar per named measurement."""
    names = list(values)
    fig = go.Figure(go.Bar(x=names, y=[values[n] for n in names],
                           text=[f"{values[n]:.1f}" for n in names], textposition="outside"))
    fig.update_layout(title=title, yaxis_title=unit, height=380)
    return fig


def length_histogram(lengths: np.ndarray, max_len: int | None = None,
                     title: str = "Sequence lengths") -> go.Figure:
    """Histogram of true lengths, with the padding length as a vertical line."""
    fig = go.Figure(go.Histogram(x=np.asarray(lengths), nbinsx=40))
    if max_len is not None:
        fig.add_vline(x=max_len, line_dash="dash", line_color="red",
                      annotation_text=f"max_len {max_len}")
    fig.update_layout(title=title, xaxis_title="steps", yaxis_title="items", height=360)
    return fig


def frame_strip(frames: np.ndarray, title: str = "Sampled frames") -> go.Figure:
    """(T, H, W, 3) uint8 frames side by side as one image."""
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"frames must be (T, H, W, 3) with T >= 1, got {frames.shape}")
    strip = np.concatenate(list(frames), axis=1)                 # (H, T*W, 3)
    fig = go.Figure(go.Image(z=strip))
    fig.update_layout(title=title, height=220, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig
