"""XMEI-Qwen figures (pure: arrays in, plotly Figure out)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from .cases import attention_map


def lq_attention_map(weights, caption_tokens: Sequence[str], n_learnable: int,
                     feature_mask=None, title: str = "LQ-Former cross-attention",
                     feature_label: str = "frame") -> go.Figure:
    """One LQ-Former layer's cross-attention (Q, S) of a sample: rows are the caption-token
    queries (named by their tokens; padding shown as ``[pad]``) then the learnable queries
    ``q1..``; columns the feature positions, padded ones marked ``(pad)`` (weight 0)."""
    w = np.asarray(weights, dtype=float)
    n_cap = w.shape[0] - n_learnable
    caps = list(caption_tokens)[:n_cap]
    caps += ["[pad]"] * (n_cap - len(caps))
    rows = [f"c{i}:{t}" for i, t in enumerate(caps)] + [f"q{i + 1}" for i in range(n_learnable)]
    mask = np.ones(w.shape[1], bool) if feature_mask is None else np.asarray(feature_mask, bool)
    cols = [f"{feature_label} {j}" + ("" if mask[j] else " (pad)") for j in range(w.shape[1])]
    return attention_map(w, rows, cols, title=title)
