"""Ablation figures: each variant's paired difference to the full model."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def delta_chart(deltas: pd.DataFrame, metric: str = "F1", title: str = "") -> go.Figure:
    """Bars: mean paired difference (variant - full) per variant with ±1 std error bars;
    points: the per-seed differences. ``deltas`` has columns row, seed, delta
    (:func:`mir_core.ablation.seed_deltas`)."""
    fig = go.Figure()
    if deltas.empty:
        fig.update_layout(title=title or "no variants", template="plotly_white")
        return fig
    order = list(dict.fromkeys(deltas["row"]))
    agg = deltas.groupby("row", sort=False)["delta"].agg(["mean", "std", "count"]).reindex(order)
    agg["std"] = agg["std"].fillna(0.0)
    fig.add_bar(y=order, x=agg["mean"], orientation="h", name=f"mean Δ{metric}",
                error_x={"type": "data", "array": agg["std"].tolist(), "visible": True},
                marker_color=["#c0392b" if m < 0 else "#2e86c1" for m in agg["mean"]],
                hovertemplate="%{y}<br>mean Δ %{x:.2f}<extra></extra>")
    fig.add_scatter(y=deltas["row"], x=deltas["delta"], mode="markers", name="per seed",
                    marker={"color": "black", "size": 7, "symbol": "circle-open"},
                    customdata=deltas["seed"],
                    hovertemplate="%{y}<br>seed %{customdata}: Δ %{x:.2f}<extra></extra>")
    fig.add_vline(x=0, line_color="gray")
    fig.update_layout(title=title or f"Δ{metric} to the full model (paired per seed)",
                      xaxis_title=f"Δ {metric} (points)", yaxis={"autorange": "reversed"},
                      template="plotly_white", height=max(300, 40 * len(order) + 120),
                      margin={"l": 330})
    return fig
