"""RankingInspector without a browser: the filters reduce the candidates exactly as the
same conditions computed with pandas do, selecting a case (by call, by key, or through the
widgets) updates the figure's data, and messages of the callbacks land in its Output."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from mir_core.inspector import DISAGREES, RankingInspector

LABELS = ["Thank", "Inform", "Joke"]          # the dataset's order (not sorted)


def _cases(n=24, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    perms = [(2, 0, 1), (0, 1, 2), (1, 2, 0), (2, 1, 0)]
    rows = []
    for i in range(n):
        split = "train" if i < 16 else "test"
        alpha = rng.dirichlet(np.ones(4))
        learned = tuple(int(x) for x in np.argsort(-alpha[1:], kind="stable"))
        llm = perms[i % 4] if split == "train" else None
        label = LABELS[i % 3]
        pred = LABELS[(i // 2) % 3]
        words = "thanks a lot" if i % 5 == 0 else f"sample number {i}"
        rows.append({
            "key": f"{i // 4}_{i % 4}", "split": split, "text": words,
            "desc_A": f"actions {i}", "desc_E": f"face {i}", "desc_I": f"others {i}",
            "label": label, "pred": pred, "correct": pred == label,
            **{f"alpha_{s}": float(a) for s, a in zip("TAEI", alpha)},
            "learned_order": learned, "llm_order": llm,
            "top1_agrees": (learned[0] == llm[0]) if llm else pd.NA,
            "order_agrees": (learned == llm) if llm else pd.NA,
        })
    df = pd.DataFrame(rows)
    for c in ("top1_agrees", "order_agrees"):
        df[c] = df[c].astype("boolean")
    return df


def _attention(row, source):
    """A deterministic map whose size and values depend on the case and the source."""
    text = row["text"] if source == "T" else row[f"desc_{source}"]
    toks = ["[CLS]", *text.split(), "[SEP]"]
    n = len(toks)
    seed = sum(map(ord, str(row["key"]) + source))
    m = np.random.default_rng(seed).random((n, n))
    return m / m.sum(1, keepdims=True), toks, toks, f"attention {row['key']} {source}"


@pytest.fixture
def insp():
    return RankingInspector(_cases(), LABELS, attention_fn=_attention, title="t")


def _expected(df, split="all", label="all", outcome="all", agreement="all", search=""):
    keep = pd.Series(True, index=df.index)
    if split != "all":
        keep &= df["split"] == split
    if label != "all":
        keep &= df["label"] == label
    if outcome == "correct":
        keep &= df["correct"]
    elif outcome == "incorrect":
        keep &= ~df["correct"]
    if agreement == DISAGREES:
        keep &= df["order_agrees"].fillna(True).eq(False)
    elif agreement == "learned top-1 ≠ LLM top-1":
        keep &= df["top1_agrees"].fillna(True).eq(False)
    elif agreement == "learned order = LLM order":
        keep &= df["order_agrees"].fillna(False).eq(True)
    if search:
        keep &= df["text"].str.contains(search, regex=False) | (df["key"] == search)
    return df.index[keep].tolist()


def _shown(insp):
    """What the figure widget shows: card text, weights, attention matrix and tick labels."""
    fields, values = insp.view.data[0].cells.values
    card = dict(zip(fields, values))
    return card, list(insp.view.data[1].y), np.asarray(insp.view.data[2].z, dtype=float), \
        list(insp.view.layout.xaxis2.ticktext)


def test_starts_on_the_first_case_with_every_filter_open(insp):
    df = _cases()
    assert insp.candidates() == list(range(len(df)))
    assert insp.current == 0
    assert insp.label.options == ("all", *LABELS)           # the dataset's order
    assert insp.split.options == ("all", "train", "test")
    assert isinstance(insp.view, go.FigureWidget)
    assert [t.type for t in insp.view.data] == ["table", "bar", "heatmap"]
    assert "24</b> of 24" in insp.count.value


@pytest.mark.parametrize("filters", [
    {"label": "Inform"},
    {"outcome": "incorrect"},
    {"outcome": "correct", "split": "train"},
    {"agreement": DISAGREES},
    {"agreement": "learned top-1 ≠ LLM top-1", "label": "Joke"},
    {"agreement": "learned order = LLM order"},
    {"search": "thanks"},
    {"search": "2_1"},
    {"split": "test", "agreement": DISAGREES},          # no LLM rank on test: nothing
])
def test_filters_reduce_the_candidates_exactly(insp, filters):
    df = _cases()
    got = insp.set_filters(**filters)
    assert got == _expected(df, **filters)
    assert [v for _, v in insp.pick.options] == got
    if got:
        assert insp.current in got                        # the selection follows the filters
        assert _shown(insp)[0]["Utterance"] == df.loc[insp.current, "text"]
    assert f"<b>{len(got)}</b> of {len(df)}" in insp.count.value


def test_disagreement_filter_only_keeps_train_cases_whose_orders_differ(insp):
    df = _cases()
    got = insp.set_filters(agreement=DISAGREES)
    assert got and all(df.loc[i, "split"] == "train" for i in got)
    assert all(df.loc[i, "learned_order"] != df.loc[i, "llm_order"] for i in got)
    others = [i for i in range(len(df)) if i not in got and df.loc[i, "split"] == "train"]
    assert all(df.loc[i, "learned_order"] == df.loc[i, "llm_order"] for i in others)


def test_selection_updates_the_figure_data(insp):
    df = _cases()
    for target in (5, 17, "2_3"):
        row = insp.select(target)
        i = int(df.index[df["key"] == target][0]) if isinstance(target, str) else target
        assert insp.current == i and row["key"] == df.loc[i, "key"]
        card, weights, z, ticks = _shown(insp)
        assert card["Utterance"] == df.loc[i, "text"]
        assert card["A · Speakers' Actions"] == df.loc[i, "desc_A"]
        assert card["Gold"] == df.loc[i, "label"]
        llm = df.loc[i, "llm_order"]
        assert card["LLM rank"] == (" > ".join("AEI"[j] for j in llm) if llm
                                    else "— (the release ranks train only)")
        np.testing.assert_allclose(weights, df.loc[i, [f"alpha_{s}" for s in "TAEI"]].to_numpy(
            dtype=float))
        m, toks, _, title = _attention(df.loc[i], "T")
        np.testing.assert_allclose(z, m)
        assert ticks == toks
        assert df.loc[i, "key"] in insp.view.layout.title.text
        assert insp.index.value == i
    # the static figure is the same view
    static = insp.static_figure()
    assert [t.type for t in static.data] == ["table", "bar", "heatmap"]
    np.testing.assert_allclose(np.asarray(static.data[2].z, dtype=float), _shown(insp)[2])
    figs = insp.figures()
    assert set(figs) == {"card", "attention"}
    assert list(figs["attention"].layout.xaxis.ticktext) == _shown(insp)[3]


def test_widgets_drive_the_selection(insp):
    df = _cases()
    insp.index.value = 9                                   # typing a row number
    assert insp.current == 9 and _shown(insp)[0]["Utterance"] == df.loc[9, "text"]
    insp.pick.value = 12                                   # choosing from the list
    assert insp.current == 12
    insp.source.value = "E"                                # attention of another source
    m, toks, _, _ = _attention(df.loc[12], "E")
    np.testing.assert_allclose(_shown(insp)[2], m)
    assert _shown(insp)[3] == toks
    insp.label.value = "Joke"                              # a filter that drops row 12
    want = _expected(df, label="Joke")
    assert insp.candidates() == want and insp.current == want[0]
    assert _shown(insp)[0]["Utterance"] == df.loc[want[0], "text"]


def test_messages_go_to_the_output_widget(insp):
    insp.search.value = "no such words anywhere"
    assert insp.candidates() == []
    assert insp.messages and "no case matches" in insp.messages[-1]
    assert any("no case matches" in o["text"] for o in insp.out.outputs)
    before = insp.current
    assert insp.current == before                          # the card keeps the last case

    def broken(row, source):
        raise RuntimeError("model not loaded")
    other = RankingInspector(_cases(), LABELS, attention_fn=broken)
    assert [t.type for t in other.view.data] == ["table", "bar"]   # card still shown
    assert any("model not loaded" in m for m in other.messages)
    assert any("model not loaded" in o["text"] for o in other.out.outputs)
    with pytest.raises(KeyError, match="unknown filter"):
        other.set_filters(colour="red")


def test_without_attention_and_bad_input():
    insp = RankingInspector(_cases(), LABELS)
    assert [t.type for t in insp.view.data] == ["table", "bar"]
    assert insp.figures().keys() == {"card"}
    with pytest.raises(KeyError, match="no case with key"):
        insp.select("nope")
    with pytest.raises(IndexError):
        insp.select(1000)
    with pytest.raises(ValueError, match="no cases"):
        RankingInspector(_cases().iloc[:0], LABELS)
    w = insp.widget()
    assert insp.view in w.children and insp.out in w.children


def test_each_drawn_view_is_told_to_redraw_once_on_the_page():
    """plotly draws a FigureWidget view before it is attached to the page (the card's
    wrapped text comes out blank): each view's report after drawing is answered with a
    relayout of datarevision (a full redraw), which itself makes no report (no loop)."""
    insp = RankingInspector(_cases(), LABELS, attention_fn=_attention)
    insp.widget()
    view = insp.view
    sent = []
    view.observe(lambda ch: ch["new"] and sent.append(ch["new"]), names="_py2js_relayout")
    assert view.layout.datarevision is None
    report = {"trace_deltas": [], "trace_edit_id": view._last_trace_edit_id}
    view._js2py_traceDeltas = report                      # the browser drew a view
    first = view.layout.datarevision
    assert first and len(sent) == 1 and "datarevision" in sent[0]["relayout_data"]
    view._js2py_traceDeltas = dict(report)                # another view (or a reload)
    assert view.layout.datarevision not in (None, first) and len(sent) == 2
    assert view._js2py_traceDeltas is None                # plotly's own handler still ran
