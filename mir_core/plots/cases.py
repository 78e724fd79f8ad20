"""Pure plotting functions for the case studies (notebook 06): data in, plotly Figure out.

    >>> confusion_heatmap(y_true, y_pred, labels)          # Figure 2 + per-class recall
    >>> rank_statistics(stats)                             # Table 7: LLM vs learned, agreement
    >>> importance_heatmap(importance_by_class(...))       # mean alpha per intent class
    >>> attention_map(matrix, query_tokens, key_tokens)    # any (queries x keys) matrix
    >>> token_attribution({"T": tokens}, {"T": scores})    # attribution per token and source
    >>> weights_bar(case)                                  # alpha over T, A, E, I of one case
    >>> case_card(case)                                    # the paper's Figures 3-5

Axes that show tokens are numeric with the tokens as tick labels: a repeated token ("the",
"[PAD]") would otherwise be merged into one category by plotly.

A *case* (``case_card``, ``weights_bar``) is a mapping with the keys of a row of
:func:`mir_core.cases.case_table`: ``key``, ``split``, ``text``, ``desc_A``, ``desc_E``,
``desc_I``, ``label`` (gold), ``pred``, ``alpha_T`` .. ``alpha_I``, ``llm_order``
(aspect indices best first, or None where the release has no rank: test) and optionally
``learned_order``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

SOURCE_NAMES = {"T": "T: utterance", "A": "A: Speakers' Actions",
                "E": "E: Facial Expressions", "I": "I: Interaction with Others"}
ASPECTS = ("A", "E", "I")
RANKER_COLORS = {"LLM ranks (train)": "#7f7f7f", "learned α (train)": "#1f77b4",
                 "learned α (test)": "#ff7f0e"}
RANK_SHADES = ("#08519c", "#4292c6", "#9ecae1")      # LLM rank 1, 2, 3
UNRANKED = "#b0b0b0"
WEIGHTS_TITLE = "learned importance α<br><sup>aspects shaded by LLM rank: darkest = 1st</sup>"


# --------------------------------------------------------------------------- confusion
def _confusion_counts(y_true, y_pred, labels: Sequence[str]) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}

    def ids(y):
        y = list(y)
        if y and isinstance(y[0], str):
            unknown = sorted({v for v in y if v not in index})
            if unknown:
                raise ValueError(f"labels {unknown} are not in the label list")
            return np.array([index[v] for v in y], dtype=np.int64)
        return np.asarray(y, dtype=np.int64)

    t, p = ids(y_true), ids(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in length")
    k = len(labels)
    if len(t) and (t.min() < 0 or p.min() < 0 or t.max() >= k or p.max() >= k):
        raise ValueError(f"label ids must be in 0..{k - 1}")
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def confusion_heatmap(y_true, y_pred=None, labels: Sequence[str] | None = None,
                      title: str = "", recall: bool = True) -> go.Figure:
    """Row-normalised confusion matrix (rows: gold, columns: predicted, labels in the given
    order, i.e. the dataset's) with the per-class recall as bars beside it (Figure 2).

    ``confusion_heatmap(y_true, y_pred, labels)``: gold and predicted labels (ids into
    ``labels`` or label names). ``confusion_heatmap(cm, labels)`` (the older form): a
    (K, K) matrix, counts or already row-normalised. Rows of a class without samples are
    empty (NaN) and its recall is NaN. Hover shows the counts when they are known."""
    first = np.asarray(y_true)
    if first.ndim == 2:                               # confusion_heatmap(cm, labels, ...)
        if labels is None:
            labels = y_pred
        cm = first.astype(float)
        # counts: whole numbers with some row above 1; otherwise already row-normalised
        is_counts = bool(np.allclose(cm, np.round(cm)) and (cm.sum(1) > 1 + 1e-9).any())
        counts = cm if is_counts else None
    else:
        if labels is None or y_pred is None:
            raise ValueError("give y_true, y_pred and labels (or a matrix and labels)")
        counts = _confusion_counts(y_true, y_pred, labels).astype(float)
        cm = counts
    if labels is None:
        raise ValueError("labels are required")
    labels = [str(x) for x in labels]
    if cm.shape != (len(labels), len(labels)):
        raise ValueError(f"matrix {cm.shape} does not match {len(labels)} labels")
    rows = cm.sum(1, keepdims=True)
    base = cm / np.where(rows > 0, rows, 1.0) if counts is not None else cm
    norm = np.where(rows > 0, base, np.nan)           # a class without samples: empty row
    diag = np.diag(norm)
    text = np.where(np.isnan(norm), "", np.vectorize(lambda v: f"{v:.2f}")(np.nan_to_num(norm)))
    heat = go.Heatmap(z=norm, x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1,
                      text=text, texttemplate="%{text}", colorbar={"title": "share", "x": 1.02},
                      customdata=counts if counts is not None else None,
                      hovertemplate=("gold %{y}<br>predicted %{x}<br>share %{z:.2f}"
                                     + ("<br>samples %{customdata:.0f}" if counts is not None
                                        else "") + "<extra></extra>"))
    side = max(500, 22 * len(labels) + 200)
    if not recall:
        fig = go.Figure(heat)
        fig.update_layout(xaxis_title="predicted", yaxis_title="gold",
                          yaxis_autorange="reversed")
    else:
        fig = make_subplots(rows=1, cols=2, column_widths=[0.82, 0.18], shared_yaxes=True,
                            horizontal_spacing=0.015,
                            subplot_titles=("row-normalised confusion", "recall"))
        fig.add_trace(heat, row=1, col=1)
        support = counts.sum(1) if counts is not None else None
        fig.add_trace(go.Bar(x=diag, y=labels, orientation="h", marker_color="#2171b5",
                             text=[("" if np.isnan(v) else f"{v:.2f}") for v in diag],
                             textposition="outside", name="recall", showlegend=False,
                             customdata=support,
                             hovertemplate="%{y}: recall %{x:.2f}"
                             + ("<br>samples %{customdata:.0f}" if support is not None
                                else "") + "<extra></extra>"), row=1, col=2)
        fig.update_xaxes(title_text="predicted", row=1, col=1)
        fig.update_xaxes(title_text="recall", range=[0, 1.15], row=1, col=2)
        fig.update_yaxes(title_text="gold", autorange="reversed", row=1, col=1)
        side += 160
    fig.update_layout(title=title or "Confusion matrix (row-normalised) and recall",
                      width=side, height=max(450, 22 * len(labels) + 150))
    return fig


# --------------------------------------------------------------------------- rank statistics
def _tables(stats) -> tuple[dict[str, pd.DataFrame], pd.DataFrame | None, pd.DataFrame | None]:
    if isinstance(stats, Mapping):
        tabs = {k: v for k, v in stats.items() if k in RANKER_COLORS and v is not None}
        return tabs, stats.get("per_class"), stats.get("overall")
    tabs = {"LLM ranks (train)": stats.llm, "learned α (train)": stats.learned_train}
    if stats.learned_test is not None:
        tabs["learned α (test)"] = stats.learned_test
    return tabs, stats.per_class, stats.overall


def rank_statistics(stats, title: str = "", share: bool = True) -> go.Figure:
    """Table 7 for each ranker (LLM ranks, learned alpha on train / test) as grouped bars,
    one panel per Rank@k (x: the three aspects in A, E, I order), and below, the agreement of
    the learned order with the LLM order per intent class (top-1 and mean Kendall tau, the
    overall values as dashed lines).

    ``stats``: a :class:`mir_core.cases.RankStats`, or a mapping {ranker name: Table 7 frame}
    with optional "per_class" and "overall" entries. ``share``: bars show the share of the
    ranker's samples (the rankers count different splits), the counts in the bar text."""
    tabs, per_class, overall = _tables(stats)
    rows = 2 if per_class is not None else 1
    specs = [[{}, {}, {}]] + ([[{"colspan": 3}, None, None]] if rows == 2 else [])
    titles = ["Rank@1", "Rank@2", "Rank@3"] + (
        ["learned vs LLM order per intent class (train)"] if rows == 2 else [])
    fig = make_subplots(rows=rows, cols=3, specs=specs, subplot_titles=titles,
                        vertical_spacing=0.22, row_heights=[0.45, 0.55] if rows == 2 else None)
    aspect_names = [SOURCE_NAMES[a].split(": ")[1] for a in ASPECTS]
    for name, tab in tabs.items():
        arr = tab.to_numpy(dtype=float)                   # (3 aspects, 3 ranks)
        total = arr[:, 0].sum()
        for k in range(3):
            y = arr[:, k] / total if share and total else arr[:, k]
            fig.add_trace(go.Bar(name=name, x=aspect_names, y=y, legendgroup=name,
                                 showlegend=k == 0,
                                 marker_color=RANKER_COLORS.get(name),
                                 text=[f"{int(v)}" for v in arr[:, k]], textposition="outside",
                                 hovertemplate=f"{name}<br>%{{x}} at Rank@{k + 1}: "
                                               "%{text} samples<extra></extra>"),
                          row=1, col=k + 1)
    ytitle = "share of samples" if share else "samples"
    fig.update_yaxes(title_text=ytitle, row=1, col=1)
    if share:
        fig.update_yaxes(range=[0, 1.15], row=1)
    if rows == 2:
        pc = per_class
        fig.add_trace(go.Bar(name="top-1 agreement", x=list(pc.index), y=pc["top1"].tolist(),
                             marker_color="#2ca02c", customdata=pc["n"].tolist(),
                             hovertemplate="%{x}: top-1 %{y:.2f} (n %{customdata})"
                                           "<extra></extra>"), row=2, col=1)
        fig.add_trace(go.Bar(name="mean Kendall τ", x=list(pc.index),
                             y=pc["mean_tau"].tolist(), marker_color="#9467bd",
                             customdata=pc["n"].tolist(),
                             hovertemplate="%{x}: mean τ %{y:.2f} (n %{customdata})"
                                           "<extra></extra>"), row=2, col=1)
        if overall is not None and "learned α" in overall.index:
            o = overall.loc["learned α"]
            for v, color, label in ((o["top1"], "#2ca02c", "top-1"),
                                    (o["mean_tau"], "#9467bd", "τ")):
                fig.add_hline(y=float(v), line_dash="dash", line_color=color, row=2, col=1,
                              annotation_text=f"overall {label} {float(v):.2f}",
                              annotation_position="top left")
        fig.update_yaxes(title_text="agreement", range=[-1.05, 1.05], row=2, col=1)
        fig.update_xaxes(tickangle=-45, row=2, col=1)
    fig.update_layout(barmode="group", height=420 if rows == 1 else 820,
                      title=title or "Table 7: aspects at each rank, LLM vs learned importance",
                      legend={"orientation": "h", "y": 1.08, "x": 0})
    return fig


# --------------------------------------------------------------------------- importance
def importance_heatmap(frame: pd.DataFrame, sources: Sequence[str] = ("T", "A", "E", "I"),
                       title: str = "", relative: bool = False) -> go.Figure:
    """Mean alpha of each source per intent class (rows: classes in the frame's order, as
    :func:`mir_core.cases.importance_by_class` gives them; columns: T, A, E, I).
    ``relative``: colour by the aspects' share of the aspect weight (alpha_M / (1 -
    alpha_T)), text alpha itself; useful when alpha_T takes nearly all the weight."""
    z = frame[list(sources)].to_numpy(dtype=float)
    colour = z
    if relative:
        rest = z[:, [i for i, s in enumerate(sources) if s != "T"]].sum(1, keepdims=True)
        colour = np.where(np.array(sources) == "T", np.nan, z / np.where(rest > 0, rest, 1))
    n = frame["n"].tolist() if "n" in frame else None
    fig = go.Figure(go.Heatmap(
        z=colour, x=[SOURCE_NAMES.get(s, s) for s in sources], y=[str(i) for i in frame.index],
        colorscale="Viridis", text=np.vectorize(lambda v: f"{v:.3f}")(z),
        texttemplate="%{text}", customdata=(np.repeat(np.asarray(n)[:, None], len(sources), 1)
                                            if n is not None else None),
        colorbar={"title": "share of aspect α" if relative else "mean α"},
        hovertemplate="%{y} · %{x}<br>mean α %{text}"
                      + ("<br>samples %{customdata}" if n is not None else "")
                      + "<extra></extra>"))
    fig.update_layout(title=title or "Learned importance α per intent class",
                      xaxis_title="source", yaxis_title="intent class",
                      yaxis_autorange="reversed", height=max(420, 20 * len(frame) + 160),
                      width=620)
    return fig


# --------------------------------------------------------------------------- tokens
def _token_axis(labels: Sequence[str]) -> dict:
    return {"tickmode": "array", "tickvals": list(range(len(labels))),
            "ticktext": [str(t) for t in labels]}


def attention_map(matrix, query_labels: Sequence[str], key_labels: Sequence[str],
                  title: str = "Attention", colorscale: str = "Viridis",
                  zmin: float | None = 0.0, zmax: float | None = None) -> go.Figure:
    """Any (queries x keys) matrix as a heatmap, the labels on the axes in the given order
    (rows top to bottom: queries; columns: keys). Works for self-attention over tokens, the
    cross-attention of another model, or a source-by-source matrix alike."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape != (len(query_labels), len(key_labels)):
        raise ValueError(f"matrix {m.shape} does not match {len(query_labels)} query and "
                         f"{len(key_labels)} key labels")
    q = [str(t) for t in query_labels]
    k = [str(t) for t in key_labels]
    hover = [[f"{q[i]} → {k[j]}" for j in range(len(k))] for i in range(len(q))]
    fig = go.Figure(go.Heatmap(z=m, x=list(range(len(k))), y=list(range(len(q))),
                               colorscale=colorscale, zmin=zmin, zmax=zmax, text=hover,
                               hovertemplate="%{text}: %{z:.3f}<extra></extra>",
                               colorbar={"title": "weight"}))
    cell = 18
    fig.update_layout(title=title, xaxis={**_token_axis(k), "title": "key", "tickangle": -60,
                                          "side": "bottom"},
                      yaxis={**_token_axis(q), "title": "query", "autorange": "reversed"},
                      width=max(420, cell * len(k) + 220), height=max(380, cell * len(q) + 200))
    return fig


def token_attribution(tokens: Mapping[str, Sequence[str]], scores: Mapping[str, Sequence[float]],
                      title: str = "Token attribution", totals: bool = True) -> go.Figure:
    """Attribution per token, one panel per source (e.g. T, A, E, I): bars up (red) push
    the target class, bars down (blue) push against it. ``totals``: each panel's title
    gives the source's summed attribution."""
    names = list(tokens)
    for s in names:
        if len(tokens[s]) != len(scores[s]):
            raise ValueError(f"source {s}: {len(tokens[s])} tokens but {len(scores[s])} scores")
    sub = [(f"{SOURCE_NAMES.get(s, s)} (sum {float(np.sum(scores[s])):+.3f})" if totals
            else SOURCE_NAMES.get(s, s)) for s in names]
    fig = make_subplots(rows=len(names), cols=1, subplot_titles=sub, vertical_spacing=0.12)
    for r, s in enumerate(names, start=1):
        v = np.asarray(scores[s], dtype=float)
        fig.add_trace(go.Bar(x=list(range(len(v))), y=v, name=s, showlegend=False,
                             marker_color=["#d62728" if x >= 0 else "#1f77b4" for x in v],
                             customdata=[str(t) for t in tokens[s]],
                             hovertemplate="%{customdata}: %{y:+.4f}<extra></extra>"),
                      row=r, col=1)
        fig.update_xaxes(**_token_axis(tokens[s]), tickangle=-60, row=r, col=1)
        fig.update_yaxes(title_text="attr.", row=r, col=1)
    fig.update_layout(title=title, height=230 * len(names) + 80,
                      width=max(700, 16 * max((len(tokens[s]) for s in names), default=0) + 160))
    return fig


# --------------------------------------------------------------------------- one case
def _alpha(case) -> list[float]:
    return [float(case[f"alpha_{s}"]) for s in ("T", "A", "E", "I")]


def _llm(case):
    v = case.get("llm_order") if hasattr(case, "get") else case["llm_order"]
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return tuple(int(i) for i in v)


def _order_str(order) -> str:
    return " > ".join(ASPECTS[int(i)] for i in order) if order is not None else ""


def _learned(case) -> tuple[int, int, int]:
    a = np.asarray(_alpha(case)[1:])
    return tuple(int(i) for i in np.argsort(-a, kind="stable"))


def weights_trace(case) -> go.Bar:
    """The bar trace of :func:`weights_bar` (for composing panels)."""
    alpha = _alpha(case)
    llm = _llm(case)
    colors, labels = ["#2ca02c"], ["text"]
    for j in range(3):
        if llm is None:
            colors.append(UNRANKED)
            labels.append("no LLM rank")
        else:
            r = llm.index(j)
            colors.append(RANK_SHADES[r])
            labels.append(f"LLM #{r + 1}")
    return go.Bar(x=[SOURCE_NAMES[s] for s in ("T", "A", "E", "I")], y=alpha,
                  marker_color=colors, text=[f"{a:.3f}" for a in alpha], textposition="outside",
                  customdata=labels, name="α", showlegend=False,
                  hovertemplate="%{x}: α %{y:.4f} (%{customdata})<extra></extra>")


def weights_bar(case, title: str = "", log: bool = False) -> go.Figure:
    """Learned alpha over (T, A, E, I) of one case; the aspects shaded by their LLM rank
    (darkest: rank 1; grey: no LLM rank, e.g. test). ``log``: log-scaled y (alpha_T often
    takes nearly all the weight)."""
    fig = go.Figure(weights_trace(case))
    fig.update_layout(title=title or f"Learned importance α · {case['key']}",
                      yaxis_title="α", yaxis_type="log" if log else "linear",
                      yaxis_range=None if log else [0, 1.1], height=360, width=520)
    return fig


def _card_rows(case) -> tuple[list[str], list[str], list[str]]:
    llm = _llm(case)
    learned = _learned(case)
    alpha = _alpha(case)
    pred, gold = str(case.get("pred", "") or ""), str(case["label"])
    ok = pred == gold if pred else None
    verdict = ("" if ok is None else ("✓ correct" if ok else "✗ wrong"))
    aspects_alpha = " / ".join(f"{ASPECTS[i]} {alpha[1 + i]:.3f}" for i in learned)
    fields = ["Utterance", "A · Speakers' Actions", "E · Facial Expressions",
              "I · Interaction with Others", "LLM rank", "Learned order (α)",
              "Prediction", "Gold"]
    values = [str(case["text"]), str(case.get("desc_A", "")), str(case.get("desc_E", "")),
              str(case.get("desc_I", "")),
              _order_str(llm) if llm is not None else "— (the release ranks train only)",
              f"{_order_str(learned)}   ({aspects_alpha}; T {alpha[0]:.3f})",
              f"{pred or '—'}  {verdict}", gold]
    fill = ["#f7f7f7"] * 4 + ["#eef3fb", "#eef3fb",
                              "#e5f5e0" if ok else ("#fde0e0" if ok is False else "#f7f7f7"),
                              "#f7f7f7"]
    return fields, values, fill


def card_table_trace(case) -> go.Table:
    """The table trace of :func:`case_card` (for composing panels)."""
    fields, values, fill = _card_rows(case)
    return go.Table(columnwidth=[0.22, 0.78],
                    header={"values": ["", f"{case['key']} ({case.get('split', '')})"],
                            "align": "left", "fill_color": "#dfe6f2"},
                    cells={"values": [fields, values], "align": "left",
                           "fill_color": [["#eaeaea"] * len(fields), fill], "height": 24})


def _card_title(case, title: str) -> str:
    if title:
        return title
    pred, gold = str(case.get("pred", "") or ""), str(case["label"])
    mark = "" if not pred else (" ✓" if pred == gold else " ✗")
    return f"Case {case['key']}: gold {gold} · predicted {pred or '—'}{mark}"


def case_card(case, title: str = "") -> go.Figure:
    """The paper's Figures 3-5 for one sample: the utterance, the three descriptions, the
    LLM rank of the aspects, the learned order, prediction vs gold (table, left) and the
    learned weights alpha as bars shaded by LLM rank (right)."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.66, 0.34],
                        specs=[[{"type": "table"}, {"type": "xy"}]],
                        horizontal_spacing=0.06, subplot_titles=("", WEIGHTS_TITLE))
    fig.add_trace(card_table_trace(case), row=1, col=1)
    fig.add_trace(weights_trace(case), row=1, col=2)
    fig.update_yaxes(title_text="α", range=[0, 1.1], row=1, col=2)
    fig.update_xaxes(tickangle=-30, row=1, col=2)
    fig.update_layout(title=_card_title(case, title), height=560, width=1150,
                      margin={"l": 20, "r": 20, "t": 70, "b": 40})
    return fig


def inspector_figure(case, attention: tuple | None = None, title: str = "") -> go.Figure:
    """Card, weights and (optionally) an attention map in one static figure: what the
    :class:`mir_core.inspector.RankingInspector` shows for its current case, for saved and
    headless output. ``attention``: (matrix, query_labels, key_labels[, title])."""
    rows = 2 if attention is not None else 1
    specs = [[{"type": "table"}, {"type": "xy"}]] + ([[{"type": "xy", "colspan": 2}, None]]
                                                     if rows == 2 else [])
    sub = ["", WEIGHTS_TITLE] + ([attention[3] if len(attention) > 3 else "attention"]
                                          if rows == 2 else [])
    fig = make_subplots(rows=rows, cols=2, column_widths=[0.66, 0.34], specs=specs,
                        subplot_titles=sub, vertical_spacing=0.1,
                        row_heights=[0.5, 0.5] if rows == 2 else None)
    fig.add_trace(card_table_trace(case), row=1, col=1)
    fig.add_trace(weights_trace(case), row=1, col=2)
    fig.update_yaxes(title_text="α", range=[0, 1.1], row=1, col=2)
    if attention is not None:
        m, q, k = np.asarray(attention[0], dtype=float), attention[1], attention[2]
        fig.add_trace(go.Heatmap(z=m, x=list(range(len(k))), y=list(range(len(q))),
                                 colorscale="Viridis", zmin=0, showscale=False,
                                 text=[[f"{q[i]} → {k[j]}" for j in range(len(k))]
                                       for i in range(len(q))],
                                 hovertemplate="%{text}: %{z:.3f}<extra></extra>"),
                      row=2, col=1)
        fig.update_xaxes(**_token_axis(k), tickangle=-60, row=2, col=1)
        fig.update_yaxes(**_token_axis(q), autorange="reversed", row=2, col=1)
    fig.update_layout(title=_card_title(case, title), height=560 if rows == 1 else 1100,
                      width=1150, margin={"l": 20, "r": 20, "t": 70, "b": 40})
    return fig
