"""RankingInspector: browse a run's cases (notebook 06) — pick a sample by row or by text
search, filter by split, gold label, correct / incorrect and "learned order disagrees with
the LLM order"; the case card (utterance, descriptions, LLM rank, learned order, prediction
vs gold), its weights bar and an attention map update together (one figure: panels of a
single ``FigureWidget``, so a saved notebook carries plotly's bundle once).

    >>> insp = RankingInspector(cases, labels, attention_fn=my_attention)
    >>> insp                                  # the widget (JupyterLab)
    >>> insp.static_figure().show()           # the same view as a plain figure (saved output)

The view is :func:`mir_core.plots.cases.inspector_figure` (the card table, the weights
bar and the attention heatmap of :func:`~mir_core.plots.cases.case_card` and
:func:`~mir_core.plots.cases.attention_map`), shown through ``plotly.graph_objects.
FigureWidget`` (plotly 7 draws it with ``anywidget``). Widget state is not saved with a
notebook: :meth:`RankingInspector.static_figure` gives the current view as a plain figure for
saved and headless output; :meth:`RankingInspector.figures` the card and the attention map as
separate plain figures. Messages of the callbacks go to an ``ipywidgets.Output``
(:attr:`RankingInspector.out`), never to the cell's stdout.

``cases``: the frame of :func:`mir_core.cases.case_table` (columns key, split, text,
desc_A/E/I, label, pred, correct, alpha_T..alpha_I, llm_order, top1_agrees, order_agrees).
``attention_fn(row, source) -> (matrix, query_labels, key_labels, title)`` (or an object with
``matrix``, ``tokens`` and ``title``, e.g. :class:`mir_core.attention.AttentionMap`) computes
the attention map of the selected case for a source (T, A, E, I); results are cached per
case and source.
"""
from __future__ import annotations

import functools
import itertools
import traceback
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .plots.cases import attention_map, case_card, inspector_figure

ALL = "all"
OUTCOMES = (ALL, "correct", "incorrect")
AGREEMENT = {ALL: None, "learned order ≠ LLM order": ("order_agrees", False),
             "learned top-1 ≠ LLM top-1": ("top1_agrees", False),
             "learned order = LLM order": ("order_agrees", True)}
DISAGREES = "learned order ≠ LLM order"


def _sync(widget: go.FigureWidget, fig: go.Figure) -> None:
    """Make ``widget`` show ``fig``: traces updated in place when their number and types
    match (one message to the browser), replaced otherwise; the layout replaced."""
    same = (len(widget.data) == len(fig.data)
            and all(a.type == b.type for a, b in zip(widget.data, fig.data)))
    if not same:
        widget.data = ()
        widget.add_traces(list(fig.data))
    with widget.batch_update():
        if same:
            for w, f in zip(widget.data, fig.data):
                props = f.to_plotly_json()
                props.pop("type", None)
                props.pop("uid", None)
                # properties absent from the new trace are reset, not kept from the old one
                for k in list(w.to_plotly_json()):
                    if k not in props and k not in ("type", "uid"):
                        props[k] = None
                w.update(props, overwrite=True)
        widget.layout = fig.layout


def _redraw_once_drawn(widget: go.FigureWidget) -> None:
    """Have every browser view of ``widget`` redraw itself once it is on the page.

    plotly's FigureWidget (plotly 7, anywidget) draws a view in ``render``, before the view's
    element is attached to the page. Text measured there has no size: the card table's cells
    that plotly.js wraps (any text with a space) come out blank, and only the one-word labels
    ("Utterance", "Gold") show, until a later update redraws the figure on the attached
    element. Each view reports its trace state to Python right after drawing
    (``_js2py_traceDeltas``, also after a restyle or update); the answer, a relayout of
    ``layout.datarevision`` (a full redraw of that figure), reaches the browser after a
    round trip through the kernel, when the view is attached. A relayout makes no trace
    report, so this never loops; after a restyle it is one redundant (cheap) redraw."""
    revision = itertools.count(1)

    def redraw(change):
        if change["new"]:                   # plotly's handler sets the trait back to None
            widget.layout.datarevision = f"mir-redraw-{next(revision)}"

    widget.observe(redraw, names="_js2py_traceDeltas")


class RankingInspector:
    """Interactive browser of one run's cases; the logic works without a browser (tests)."""

    def __init__(self, cases: pd.DataFrame, labels: Sequence[str] | None = None,
                 attention_fn: Callable | None = None,
                 attention_sources: Sequence[str] = ("T", "A", "E", "I"),
                 start: int | str | None = None, title: str = ""):
        import ipywidgets as W

        if len(cases) == 0:
            raise ValueError("no cases to inspect")
        self.cases = cases.reset_index(drop=True)
        present = set(self.cases["label"])
        order = list(labels) if labels is not None else sorted(present)
        self.labels = [lab for lab in order if lab in present]
        self.attention_fn = attention_fn
        self.title = title
        self.messages: list[str] = []
        self._attention_cache: dict = {}
        self._busy = False
        self.current = 0

        splits = [s for s in ("train", "dev", "test") if s in set(self.cases["split"])]
        self.search = W.Text(value="", placeholder="words of the utterance, or a key",
                             description="search", continuous_update=False)
        self.split = W.Dropdown(options=[ALL, *splits], value=ALL, description="split")
        self.label = W.Dropdown(options=[ALL, *self.labels], value=ALL, description="gold")
        self.outcome = W.Dropdown(options=list(OUTCOMES), value=ALL, description="prediction")
        self.agreement = W.Dropdown(options=list(AGREEMENT), value=ALL,
                                    description="learned vs LLM",
                                    style={"description_width": "initial"})
        self.index = W.BoundedIntText(value=0, min=0, max=len(self.cases) - 1, description="row")
        self.pick = W.Dropdown(options=[], description="sample",
                               layout=W.Layout(width="60%"))
        self.count = W.HTML()
        self.source = W.ToggleButtons(options=list(attention_sources),
                                      value=attention_sources[0],
                                      description="attention of",
                                      style={"description_width": "initial"})
        self.out = W.Output(layout=W.Layout(max_height="160px", overflow="auto"))

        self.view = go.FigureWidget()

        for w in (self.search, self.split, self.label, self.outcome, self.agreement):
            w.observe(self._on_filter, names="value")
        self.index.observe(self._on_index, names="value")
        self.pick.observe(self._on_pick, names="value")
        self.source.observe(self._on_source, names="value")

        self._refresh_candidates(select=False)
        first = start if start is not None else (self.candidates()[0] if self.candidates()
                                                 else 0)
        self.select(first)

    # ------------------------------------------------------------------ logic
    def row(self, i: int | None = None) -> pd.Series:
        return self.cases.iloc[self.current if i is None else int(i)]

    def candidates(self) -> list[int]:
        """Row positions that pass every filter, in table order."""
        c = self.cases
        keep = np.ones(len(c), dtype=bool)
        if self.split.value != ALL:
            keep &= (c["split"] == self.split.value).to_numpy()
        if self.label.value != ALL:
            keep &= (c["label"] == self.label.value).to_numpy()
        if self.outcome.value != ALL:
            correct = c["correct"].astype("boolean")
            want = self.outcome.value == "correct"
            keep &= (correct == want).fillna(False).to_numpy(dtype=bool)
        rule = AGREEMENT[self.agreement.value]
        if rule is not None:
            col, want = rule
            vals = c[col].astype("boolean")           # NA (no LLM rank): never matches
            keep &= (vals == want).fillna(False).to_numpy(dtype=bool)
        q = self.search.value.strip().lower()
        if q:
            words = q.split()
            text = c["text"].astype(str).str.lower()
            hit = np.array([all(w in t for w in words) for t in text])
            keep &= hit | (c["key"].astype(str).str.lower() == q).to_numpy()
        return np.flatnonzero(keep).tolist()

    def set_filters(self, **values) -> list[int]:
        """Set several filters at once (split, label, outcome, agreement, search); returns
        the candidates. Unknown names raise."""
        widgets = {"split": self.split, "label": self.label, "outcome": self.outcome,
                   "agreement": self.agreement, "search": self.search}
        bad = sorted(set(values) - set(widgets))
        if bad:
            raise KeyError(f"unknown filter(s) {bad}; known: {sorted(widgets)}")
        self._busy = True
        try:
            for k, v in values.items():
                widgets[k].value = v
        finally:
            self._busy = False
        self._refresh_candidates()
        return self.candidates()

    def select(self, which: int | str) -> pd.Series:
        """Show row ``which`` (a row position, or a sample key); updates every figure."""
        if isinstance(which, str):
            hits = np.flatnonzero(self.cases["key"].astype(str).to_numpy() == which)
            if not len(hits):
                raise KeyError(f"no case with key {which!r}")
            cand = set(self.candidates())
            which = next((int(h) for h in hits if int(h) in cand), int(hits[0]))
        i = int(which)
        if not 0 <= i < len(self.cases):
            raise IndexError(f"row {i} is outside 0..{len(self.cases) - 1}")
        self.current = i
        self._busy = True
        try:
            self.index.value = i
            if any(v == i for _, v in self.pick.options):
                self.pick.value = i
        finally:
            self._busy = False
        self._update_figures()
        return self.row()

    def attention(self, row: pd.Series | None = None, source: str | None = None):
        """(matrix, query_labels, key_labels, title) of the current case, or None."""
        if self.attention_fn is None:
            return None
        row = self.row() if row is None else row
        source = source or self.source.value
        ck = (str(row["key"]), str(row["split"]), source)
        if ck not in self._attention_cache:
            res = self.attention_fn(row, source)
            if hasattr(res, "matrix"):
                res = (res.matrix, res.tokens, res.tokens, getattr(res, "title", "attention"))
            res = tuple(res)
            if len(res) == 3:
                res = (*res, f"attention · {source}")
            self._attention_cache[ck] = res
        return self._attention_cache[ck]

    def figures(self) -> dict[str, go.Figure]:
        """The current view as plain figures: the card, and the attention map if any."""
        figs = {"card": case_card(self.row(), title=self._title())}
        att = self._safe_attention()
        if att is not None:
            figs["attention"] = attention_map(att[0], att[1], att[2], title=att[3])
        return figs

    def static_figure(self) -> go.Figure:
        """Card, weights and attention of the current case in one plain figure."""
        return inspector_figure(self.row(), self._safe_attention(), title=self._title())

    def widget(self):
        import ipywidgets as W

        filters = W.HBox([self.split, self.label, self.outcome, self.agreement])
        pickers = W.HBox([self.search, self.index, self.pick])
        parts = [filters, pickers, self.count]
        if self.attention_fn is not None:
            parts.append(self.source)
        # A new FigureWidget built from the current view each time the inspector is shown:
        # in-place updates made before the browser first drew the widget left plotly.js with
        # an inconsistent figure (height 0, "Cannot use 'in' operator ... 'line'"), seen in
        # the JupyterLab browser test. Later updates go to this one.
        self.view = go.FigureWidget(self.static_figure())
        # ... and plotly draws it before it is on the page: redraw once it is (card text)
        _redraw_once_drawn(self.view)
        parts += [self.view, self.out]
        box = W.VBox(parts)
        box.add_class("mir-inspector")
        self.pick.add_class("mir-sample")
        self.label.add_class("mir-filter-gold")
        return box

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget())

    # ------------------------------------------------------------------ internals
    def say(self, msg: str) -> None:
        """A message of the inspector: into its Output widget (and ``messages``)."""
        self.messages.append(msg)
        self.out.append_stdout(msg.rstrip("\n") + "\n")

    def _title(self) -> str:
        r = self.row()
        pred = str(r.get("pred", "") or "")
        mark = "" if not pred else (" ✓" if pred == r["label"] else " ✗")
        head = f"{self.title} · " if self.title else ""
        return (f"{head}{r['key']} ({r['split']}): gold {r['label']} · predicted "
                f"{pred or '—'}{mark}")

    def _safe_attention(self):
        try:
            return self.attention()
        except Exception as e:          # a failing attention must not kill the card
            self.say(f"attention for {self.row()['key']} failed: {type(e).__name__}: {e}")
            return None

    def _option(self, i: int) -> tuple[str, int]:
        r = self.cases.iloc[i]
        text = str(r["text"])
        text = text if len(text) <= 60 else text[:57] + "..."
        return (f"{i}: {r['key']} · {r['label']} · {text}", i)

    def _refresh_candidates(self, select: bool = True) -> None:
        cand = self.candidates()
        self._busy = True
        try:
            self.pick.options = [self._option(i) for i in cand[:500]]
            if self.current in cand[:500]:
                self.pick.value = self.current
        finally:
            self._busy = False
        more = f" (first 500 listed)" if len(cand) > 500 else ""
        self.count.value = f"<b>{len(cand)}</b> of {len(self.cases)} cases match{more}"
        if not select:
            return
        if not cand:
            self.say("no case matches these filters; the card keeps the last one")
        elif self.current not in cand:
            self.select(cand[0])

    def _update_figures(self) -> None:
        _sync(self.view, self.static_figure())

    def _guard(fn):                                        # noqa: N805  (decorator)
        @functools.wraps(fn)
        def run(self, change):
            if self._busy:
                return
            with self.out:
                try:
                    fn(self, change)
                except Exception as e:
                    self.say(f"{type(e).__name__}: {e}")
                    self.messages.append(traceback.format_exc())
        return run

    @_guard
    def _on_filter(self, change):
        self._refresh_candidates()

    @_guard
    def _on_index(self, change):
        self.select(int(change["new"]))

    @_guard
    def _on_pick(self, change):
        if change["new"] is not None:
            self.select(int(change["new"]))

    @_guard
    def _on_source(self, change):
        self._update_figures()
