"""The case-study figures (mir_core.plots.cases) and the computations behind them
(mir_core.cases, mir_core.attention) on small synthetic inputs, each checked against an
independently computed expectation; the attention / attribution part on the offline MiniLM
and a model built through the method registry and loaded from a run folder's best.pt."""
from __future__ import annotations

import json
from dataclasses import asdict
from itertools import permutations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy.stats import kendalltau
from sklearn.metrics import confusion_matrix

from mir_core import cases, plots
from mir_core.plots import cases as pc
from mir_core.records import to_jsonable

LABELS = ["Zeta", "Alpha", "Mid"]            # deliberately not sorted: the given order counts
ASPECT_NAMES = ["Speakers' Actions", "Facial Expressions", "Interaction with Others"]


# --------------------------------------------------------------------------- confusion
def test_confusion_heatmap_is_row_normalised_in_label_order_with_recall():
    y_true = ["Zeta", "Zeta", "Zeta", "Alpha", "Alpha", "Mid"]
    y_pred = ["Zeta", "Alpha", "Zeta", "Alpha", "Mid", "Mid"]
    fig = plots.confusion_heatmap(y_true, y_pred, LABELS, title="t")
    ids = {lab: i for i, lab in enumerate(LABELS)}
    expect = confusion_matrix([ids[v] for v in y_true], [ids[v] for v in y_pred],
                              labels=[0, 1, 2], normalize="true")
    heat, bar = fig.data
    assert heat.type == "heatmap" and bar.type == "bar" and bar.orientation == "h"
    assert list(heat.x) == LABELS and list(heat.y) == LABELS and list(bar.y) == LABELS
    np.testing.assert_allclose(np.asarray(heat.z, dtype=float), expect)
    np.testing.assert_allclose(bar.x, np.diag(expect))               # recall = diagonal
    np.testing.assert_allclose(np.asarray(heat.customdata, dtype=float),
                               confusion_matrix([ids[v] for v in y_true],
                                                [ids[v] for v in y_pred], labels=[0, 1, 2]))
    assert fig.layout.xaxis.title.text == "predicted" and fig.layout.yaxis.title.text == "gold"
    assert fig.layout.xaxis2.title.text == "recall"
    assert fig.layout.yaxis.autorange == "reversed" and fig.layout.title.text == "t"


def test_confusion_heatmap_ids_matrix_form_and_absent_class():
    y_true, y_pred = [0, 0, 2, 2], [0, 2, 2, 2]          # class 1 has no sample
    fig = plots.confusion_heatmap(y_true, y_pred, LABELS)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.isnan(z[1]).all() and np.isnan(fig.data[1].x[1])     # empty row, NaN recall
    np.testing.assert_allclose(z[[0, 2]], [[0.5, 0, 0.5], [0, 0, 1]])
    # the older call of notebook 04: (cm, labels, title=...), cm from metrics.confusion
    from mir_core.metrics import confusion
    cm = confusion(y_true, y_pred, 3)
    old = plots.confusion_heatmap(cm, LABELS, title="old")
    np.testing.assert_allclose(np.asarray(old.data[0].z, dtype=float)[[0, 2]], z[[0, 2]])
    counts = plots.confusion_heatmap(np.array([[3, 1, 0], [0, 0, 0], [0, 2, 2]]), LABELS)
    np.testing.assert_allclose(np.asarray(counts.data[0].z, dtype=float)[[0, 2]],
                               [[0.75, 0.25, 0], [0, 0.5, 0.5]])
    from mir_core.plots.core import confusion_heatmap as core_version
    assert [t.type for t in core_version(cm, LABELS).data] == ["heatmap", "bar"]
    with pytest.raises(ValueError, match="not in the label list"):
        plots.confusion_heatmap(["Nope"], ["Zeta"], LABELS)
    with pytest.raises(ValueError, match="does not match"):
        plots.confusion_heatmap(np.eye(2), LABELS)


# --------------------------------------------------------------------------- rank statistics
def _synthetic_orders(n=60, seed=0):
    rng = np.random.default_rng(seed)
    perms = np.array(list(permutations(range(3))))
    llm = perms[rng.integers(0, 6, n)]
    learned = perms[rng.integers(0, 6, n)]
    learned[: n // 3] = llm[: n // 3]                          # a third agrees exactly
    labels = rng.integers(0, 3, n)
    return llm, learned, labels


def _alpha_frame(orders, seed=1):
    """alpha_T..I whose aspect part sorts into ``orders`` (distinct values)."""
    rng = np.random.default_rng(seed)
    rows = []
    for o in orders:
        vals = np.sort(rng.uniform(0.01, 0.3, 3))[::-1]         # rank 1 gets the largest
        a = np.empty(3)
        a[list(o)] = vals
        t = rng.uniform(0.1, 0.5)
        rows.append({"alpha_T": t, "alpha_A": a[0], "alpha_E": a[1], "alpha_I": a[2]})
    return pd.DataFrame(rows)


def test_rank_statistics_tables_and_agreement():
    llm, learned, y = _synthetic_orders()
    test_orders = _synthetic_orders(40, seed=5)[1]
    stats = cases.rank_statistics(llm, _alpha_frame(learned), _alpha_frame(test_orders, 2),
                                  y, LABELS)
    # Table 7 by explicit counting: aspect a at rank r
    for name, orders in (("llm", llm), ("learned_train", learned),
                         ("learned_test", test_orders)):
        tab = getattr(stats, name)
        assert list(tab.index) == ["Speakers' Actions", "Facial Expressions",
                                   "Interactions with Others"]
        assert list(tab.columns) == ["Rank@1", "Rank@2", "Rank@3"]
        expect = [[sum(1 for o in orders if o[r] == a) for r in range(3)] for a in range(3)]
        assert tab.to_numpy().tolist() == expect
    # agreement: top-1 by hand, tau with scipy on the rank positions
    def tau(a, b):
        pa, pb = np.argsort(a), np.argsort(b)               # position of each aspect
        return kendalltau(pa, pb).statistic
    row = stats.overall.loc["learned α"]
    assert row["n"] == len(llm)
    assert row["top1"] == pytest.approx(np.mean(learned[:, 0] == llm[:, 0]))
    assert row["exact"] == pytest.approx(np.mean((learned == llm).all(1)))
    assert row["mean_tau"] == pytest.approx(np.mean([tau(a, b) for a, b in zip(learned, llm)]))
    trivial = stats.overall.loc["trivial I > A > E"]
    assert trivial["top1"] == pytest.approx(np.mean(llm[:, 0] == 2))
    # per class, in the given label order
    assert list(stats.per_class.index) == [LABELS[i] for i in range(3) if (y == i).any()]
    for i, lab in enumerate(LABELS):
        sel = y == i
        pcr = stats.per_class.loc[lab]
        assert pcr["n"] == sel.sum()
        assert pcr["top1"] == pytest.approx(np.mean(learned[sel, 0] == llm[sel, 0]))
        assert pcr["mean_tau"] == pytest.approx(
            np.mean([tau(a, b) for a, b in zip(learned[sel], llm[sel])]))
        f_llm = np.bincount(llm[sel, 0], minlength=3) / sel.sum()
        f_tr = np.bincount(learned[sel, 0], minlength=3) / sel.sum()
        assert pcr["first_choice_tv"] == pytest.approx(0.5 * np.abs(f_llm - f_tr).sum())
        assert pcr["llm_first"] == "AEI"[int(np.argmax(f_llm))]
    worst = stats.most_disagreeing(2)
    assert len(worst) == 2 and worst["mean_tau"].is_monotonic_increasing
    assert worst["mean_tau"].iloc[0] == stats.per_class["mean_tau"].min()
    side = stats.table7()
    assert side[("LLM ranks (train)", "Rank@1")].tolist() == stats.llm["Rank@1"].tolist()
    json.dumps(to_jsonable(stats.as_dict()))                  # what the notebook glues
    with pytest.raises(ValueError, match="same train rows"):
        cases.rank_statistics(llm, learned[:-1])


def test_rank_statistics_figure():
    llm, learned, y = _synthetic_orders()
    test_orders = _synthetic_orders(40, seed=5)[1]
    stats = cases.rank_statistics(llm, learned, test_orders, y, LABELS)
    fig = plots.rank_statistics(stats, title="T7")
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 3 * 3 + 2                      # 3 rankers x 3 ranks + 2 per-class
    llm_r1 = next(t for t in bars if t.name == "LLM ranks (train)" and t.xaxis == "x")
    assert list(llm_r1.x) == ASPECT_NAMES
    np.testing.assert_allclose(llm_r1.y, stats.llm["Rank@1"] / len(llm))   # shares
    assert list(llm_r1.text) == [str(v) for v in stats.llm["Rank@1"]]      # counts
    test_r3 = next(t for t in bars if t.name == "learned α (test)" and t.xaxis == "x3")
    np.testing.assert_allclose(test_r3.y, stats.learned_test["Rank@3"] / len(test_orders))
    top1 = next(t for t in bars if t.name == "top-1 agreement")
    assert list(top1.x) == list(stats.per_class.index)
    np.testing.assert_allclose(top1.y, stats.per_class["top1"])
    tau = next(t for t in bars if t.name == "mean Kendall τ")
    np.testing.assert_allclose(tau.y, stats.per_class["mean_tau"])
    assert [a.text for a in fig.layout.annotations if a.text.startswith("Rank@")] == \
        ["Rank@1", "Rank@2", "Rank@3"]
    counts = plots.rank_statistics({"LLM ranks (train)": stats.llm}, share=False)
    assert list(counts.data[0].y) == stats.llm["Rank@1"].tolist()
    assert fig.layout.title.text == "T7"


# --------------------------------------------------------------------------- importance
def test_importance_by_class_and_heatmap():
    rng = np.random.default_rng(3)
    a = rng.dirichlet(np.ones(4), size=12)
    df = pd.DataFrame(a, columns=[f"alpha_{s}" for s in "TAEI"])
    df["label_id"] = [0, 2, 2, 0, 2, 0, 2, 2, 0, 0, 2, 2]       # class 1 absent
    imp = cases.importance_by_class(df, LABELS)
    assert list(imp.index) == ["Zeta", "Mid"]
    expect = df.groupby("label_id")[[f"alpha_{s}" for s in "TAEI"]].mean()
    np.testing.assert_allclose(imp[list("TAEI")].to_numpy(), expect.loc[[0, 2]].to_numpy())
    assert imp["n"].tolist() == [5, 7]
    fig = plots.importance_heatmap(imp, title="imp")
    h = fig.data[0]
    assert h.type == "heatmap" and list(h.y) == ["Zeta", "Mid"]
    assert list(h.x) == [pc.SOURCE_NAMES[s] for s in "TAEI"]
    np.testing.assert_allclose(np.asarray(h.z, dtype=float), imp[list("TAEI")].to_numpy())
    rel = plots.importance_heatmap(imp, relative=True).data[0]
    z = np.asarray(rel.z, dtype=float)
    assert np.isnan(z[:, 0]).all()
    np.testing.assert_allclose(np.nansum(z, 1), 1.0)             # aspect shares sum to 1
    by_name = df.assign(label=[LABELS[i] for i in df["label_id"]])
    np.testing.assert_allclose(cases.importance_by_class(by_name, LABELS, "label")
                               [list("TAEI")].to_numpy(), imp[list("TAEI")].to_numpy())


# --------------------------------------------------------------------------- token plots
def test_attention_map_keeps_repeated_tokens_in_order():
    q = ["[CLS]", "the", "cat", "the", "[SEP]"]
    k = ["[CLS]", "the", "dog", "[SEP]"]
    m = np.arange(20, dtype=float).reshape(5, 4) / 20
    fig = plots.attention_map(m, q, k, title="cross")
    h = fig.data[0]
    assert h.type == "heatmap" and fig.layout.title.text == "cross"
    np.testing.assert_allclose(np.asarray(h.z, dtype=float), m)
    assert list(h.x) == [0, 1, 2, 3] and list(h.y) == [0, 1, 2, 3, 4]
    assert list(fig.layout.xaxis.ticktext) == k and list(fig.layout.yaxis.ticktext) == q
    assert list(fig.layout.yaxis.tickvals) == [0, 1, 2, 3, 4]
    assert h.text[3][2] == "the → dog"
    with pytest.raises(ValueError, match="does not match"):
        plots.attention_map(m.T, q, k)


def test_token_attribution_panels():
    tokens = {"T": ["[CLS]", "hi", "hi", "[SEP]"], "A": ["[CLS]", "waves", "[SEP]"]}
    scores = {"T": [0.0, 0.5, -0.25, 0.0], "A": [0.0, 0.1, 0.0]}
    fig = plots.token_attribution(tokens, scores, title="attr")
    assert [t.type for t in fig.data] == ["bar", "bar"]
    np.testing.assert_allclose(fig.data[0].y, scores["T"])
    assert list(fig.layout.xaxis.ticktext) == tokens["T"]
    assert list(fig.layout.xaxis2.ticktext) == tokens["A"]
    assert list(fig.data[0].marker.color) == ["#d62728", "#d62728", "#1f77b4", "#d62728"]
    assert fig.layout.annotations[0].text == "T: utterance (sum +0.250)"
    with pytest.raises(ValueError, match="tokens but"):
        plots.token_attribution({"T": ["a"]}, {"T": [1.0, 2.0]})


# --------------------------------------------------------------------------- one case
def _case(**kw):
    base = {"key": "7_2", "split": "train", "text": "you could join us if you want.",
            "desc_A": "The man sits at the table.", "desc_E": "He looks relaxed.",
            "desc_I": "He addresses the others.", "label": "Invite", "pred": "Inform",
            "alpha_T": 0.7, "alpha_A": 0.05, "alpha_E": 0.15, "alpha_I": 0.1,
            "llm_order": (2, 0, 1)}
    base.update(kw)
    return pd.Series(base)


def test_case_card_and_weights_bar():
    case = _case()
    fig = plots.case_card(case)
    table, bar = fig.data
    assert table.type == "table" and bar.type == "bar"
    fields, values = table.cells.values
    got = dict(zip(fields, values))
    assert got["Utterance"] == case["text"]
    assert got["A · Speakers' Actions"] == case["desc_A"]
    assert got["I · Interaction with Others"] == case["desc_I"]
    assert got["LLM rank"] == "I > A > E"
    assert got["Learned order (α)"].startswith("E > I > A")      # 0.15 > 0.10 > 0.05
    assert got["Prediction"].startswith("Inform") and "wrong" in got["Prediction"]
    assert got["Gold"] == "Invite"
    assert list(bar.x) == [pc.SOURCE_NAMES[s] for s in "TAEI"]
    assert list(bar.y) == [0.7, 0.05, 0.15, 0.1]
    # shading by LLM rank: I first (darkest), A second, E third; the text green
    assert list(bar.marker.color) == ["#2ca02c", pc.RANK_SHADES[1], pc.RANK_SHADES[2],
                                      pc.RANK_SHADES[0]]
    assert "gold Invite" in fig.layout.title.text and "✗" in fig.layout.title.text
    # a test case: no LLM rank
    t = plots.case_card(_case(split="test", llm_order=None, pred="Invite"))
    got = dict(zip(*t.data[0].cells.values))
    assert got["LLM rank"].startswith("—") and "correct" in got["Prediction"]
    assert list(t.data[1].marker.color)[1:] == [pc.UNRANKED] * 3
    w = plots.weights_bar(case, log=True)
    assert w.data[0].type == "bar" and list(w.data[0].y) == [0.7, 0.05, 0.15, 0.1]
    assert w.layout.yaxis.type == "log"


def test_inspector_figure_composes_the_panels():
    m = np.full((3, 3), 1 / 3)
    fig = plots.inspector_figure(_case(), (m, ["a", "b", "a"], ["a", "b", "a"], "att"))
    assert [t.type for t in fig.data] == ["table", "bar", "heatmap"]
    np.testing.assert_allclose(np.asarray(fig.data[2].z, dtype=float), m)
    assert list(fig.layout.xaxis2.ticktext) == ["a", "b", "a"]
    assert [t.type for t in plots.inspector_figure(_case()).data] == ["table", "bar"]


def test_save_figures(tmp_path):
    saved = cases.save_figures({"one": go.Figure(go.Bar(y=[1, 2]))}, tmp_path / "f")
    import plotly.io as pio
    back = pio.read_json(saved["one"]["json"])
    assert list(back.data[0].y) == [1, 2]
    assert (tmp_path / "f" / "plotly.min.js").exists()
    assert "plotly.min.js" in (tmp_path / "f" / "one.html").read_text()


# --------------------------------------------------------------------------- run folders
def _write_run(folder, method="lgsrr", options=None, header="key,alpha_T,alpha_A,alpha_E,alpha_I",
               **overrides):
    from mir_core.training import preset
    folder.mkdir(parents=True)
    opts = {"fusion": "official", "use_importance": True, "aspects": "AEI", **(options or {})}
    (folder / "summary.json").write_text(json.dumps(
        {"dataset": "MIntRec2.0", "method": method, "seeds": [0], "options": opts,
         "run": folder.name}))
    (folder / "config.json").write_text(json.dumps(
        {"spec": {"max_train": None, "max_eval": None},
         "train_config": asdict(preset("MIntRec2.0", "cpu", **overrides)), "options": opts}))
    (folder / "seed_0").mkdir()
    (folder / "seed_0" / "best.pt").write_bytes(b"")
    (folder / "seed_0" / "predictions.csv").write_text(header + "\n")


def test_latest_run_finds_the_newest_full_lgsrr_run(tmp_path):
    import time
    runs = tmp_path / "04_training" / "runs" / "MIntRec2.0"
    _write_run(runs / "old")
    time.sleep(0.05)
    _write_run(runs / "new")
    time.sleep(0.05)
    _write_run(tmp_path / "05_ablations" / "runs" / "MIntRec2.0" / "ablation",
               options={"use_importance": False})
    _write_run(runs / "sum", options={"fusion": "sum"})
    _write_run(runs / "text", method="text", header="key,label")
    _write_run(runs / "AE", options={"aspects": "AE"})
    _write_run(runs / "no_rank", rank_weight=0.0)                       # w/o L_rank
    _write_run(runs / "no_comp", options={"use_complementarity": False})
    found = cases.find_runs("MIntRec2.0", tmp_path)
    assert [p.name for p in found] == ["new", "old"]
    time.sleep(0.05)
    _write_run(tmp_path / "runs" / "MIntRec2.0" / "shared")    # the shared root (notebook 04)
    assert cases.latest_run("MIntRec2.0", tmp_path).name == "shared"
    _write_run(tmp_path / "runs" / "MIntRec2.0" / "ablated", options={"fusion": "and"})
    assert cases.latest_run("mintrec2", [tmp_path / "nowhere", tmp_path]).name == "shared"
    assert cases.latest_run("IEMOCAP-DA", tmp_path) is None
    assert cases.latest_run("MIntRec2.0", tmp_path, method="text").name == "text"
    with pytest.raises(cases.CaseError, match="not a finished run folder"):
        cases.load_run(tmp_path)


# --------------------------------------------------------------------------- attention
@pytest.fixture(scope="module")
def minilm():
    from mir_core.modelpack import load_text_encoder
    return load_text_encoder("minilm-l6")


def test_self_attention_equals_softmax_of_queries_and_keys(minilm):
    """The returned matrix equals softmax(Q K^T / sqrt(d)) computed from the layer's own
    query / key projections of its input hidden states."""
    import torch

    from mir_core.attention import sample_attention, self_attention
    tok, model = minilm
    text = "oh. i'm sorry, the the dog."
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        hs = model(**enc, output_hidden_states=True).hidden_states
    n_heads = model.config.num_attention_heads
    for layer, head in ((-1, None), (2, 3)):
        att = self_attention(text, tok, model, layer=layer, head=head)
        blk = model.encoder.layer[layer].attention.self
        h = hs[layer % len(model.encoder.layer)][0]                # the layer's input
        with torch.no_grad():
            q, k = blk.query(h), blk.key(h)
        t, d = q.shape
        dh = d // n_heads
        q = q.view(t, n_heads, dh).transpose(0, 1)
        k = k.view(t, n_heads, dh).transpose(0, 1)
        probs = torch.softmax(q @ k.transpose(1, 2) / dh ** 0.5, dim=-1)    # (H, T, T)
        expect = probs.mean(0) if head is None else probs[head]
        np.testing.assert_allclose(att.matrix, expect.numpy(), atol=1e-5)
        assert att.tokens == tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())
        np.testing.assert_allclose(att.matrix.sum(1), 1.0, atol=1e-5)
        assert att.layer == layer % 6 and att.num_layers == 6 and att.head == head
    assert model.config._attn_implementation != "eager"          # switched back afterwards
    both = sample_attention({"T": "hello there", "A": "he waves"}, tok, model, max_len=3)
    assert both["T"].tokens == ["[CLS]", "hello", "[SEP]"] and both["A"].source == "A"
    with pytest.raises(ValueError, match="head must be"):
        self_attention(text, tok, model, head=99)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_root):
    """A run folder whose best.pt is an (untrained, seeded) LGSRR built through the method
    registry, with its test predictions written as training writes them."""
    import torch

    from mir_core.models import get_method
    from mir_core.models.encoders import PooledFeatures
    from mir_core.models.registry import BuildContext
    from mir_core.training import predictions_frame, preset
    folder = tmp_path_factory.mktemp("case_run") / "runs" / "MIntRec2.0" / "tiny"
    folder.mkdir(parents=True)
    # fp32: this test checks the pipeline against the store to 2e-3; under bf16 (what
    # precision auto picks on CPUs where it is faster) the two differ in the last bf16 bits
    cfg = preset("MIntRec2.0", "cpu", epochs=1, precision="fp32")
    method = get_method("lgsrr")
    opts = method.make_options({})
    torch.manual_seed(0)
    model = method.build(BuildContext(30, cfg, PooledFeatures(384, cfg.layers, cfg.proj_dim),
                                      opts))
    (folder / "seed_0").mkdir()
    torch.save(model.state_dict(), folder / "seed_0" / "best.pt")
    spec = {"dataset": "MIntRec2.0", "method": "lgsrr", "max_train": 12, "max_eval": 12}
    (folder / "config.json").write_text(json.dumps(
        {"spec": spec, "train_config": asdict(cfg), "options": asdict(opts)}))
    (folder / "summary.json").write_text(json.dumps(
        {"dataset": "MIntRec2.0", "method": "lgsrr", "seeds": [0], "options": asdict(opts),
         "run": "tiny", "folder": str(folder)}))
    run = cases.load_run(folder)
    test = run.splits(data_root)["test"]
    out = cases.predict_split(run, test)
    predictions_frame(test, out, method.scores).to_csv(folder / "seed_0" / "predictions.csv",
                                                       index=False)
    return run


def test_pipeline_rebuilds_the_cached_features(tiny_run, data_root):
    """The token pipeline's pooled features equal the feature store's (the frozen regime's
    inputs) for the same texts, and its alpha equals the run's stored alpha."""
    import torch

    from mir_core.attention import attribute_case, run_pipeline
    pipe = run_pipeline(tiny_run)
    test = tiny_run.splits(data_root)["test"]
    inputs = cases.split_inputs(tiny_run, test)[0]
    texts = [test.texts[3]] + [test.descriptions(s)[3] for s in "AEI"]
    ids, mask, tokens = pipe.tokenize(texts)
    with torch.no_grad():
        feats = pipe.features(ids, mask)["feats"][0]
    np.testing.assert_allclose(feats.numpy(), inputs.tensors["feats"][3].numpy(), atol=2e-3)
    assert tokens["T"][0] == "[CLS]" and len(tokens) == 4
    base = pipe.baseline(ids, mask)
    real = mask[0]
    assert (base[0][~real] == ids[0][~real]).all()                 # padding untouched
    assert set(base[0][real].tolist()) <= {0, 101, 102}            # [PAD], [CLS], [SEP]
    # inside its evaluation batch the pipeline reproduces the stored prediction and alpha
    pred = tiny_run.predictions()
    for pos in (3, 10):
        key = test.keys[pos]
        res = attribute_case(tiny_run, key, "test", root=data_root, n_steps=24, pipeline=pipe)
        row = pred.iloc[pos]
        assert res.batch_mates == (7 if pos < 8 else 3)              # batches of 8
        assert res.pred == res.stored_pred == int(row["pred_id"])
        for s in "TAEI":
            assert res.alpha[s] == pytest.approx(float(row[f"alpha_{s}"]), abs=1e-4)
        # completeness: the attributions add up to logit(input) - logit(baseline)
        total = sum(res.totals().values())
        gap = res.logit - res.baseline_logit
        assert abs(total + res.delta - gap) < 1e-5
        assert abs(res.delta) <= 0.05 * abs(gap) + 5e-3
        assert [len(res.scores[s]) for s in "TAEI"] == [len(res.tokens[s]) for s in "TAEI"]
        assert res.target == res.pred and 0 < res.prob < 1
        fig = plots.token_attribution(res.tokens, res.scores)
        np.testing.assert_allclose(fig.data[0].y, res.scores["T"])
    # a train case: the run folder has no train predictions; the run's one is recomputed
    train = tiny_run.splits(data_root)["train"]
    res = attribute_case(tiny_run, train.keys[2], "train", root=data_root, n_steps=8,
                         pipeline=pipe)
    assert res.stored_pred == int(cases.predict_split(tiny_run, train)["pred"][2]) == res.pred
    assert res.stored_alpha is None and res.split == "train"
    with pytest.raises(KeyError, match="not in the test samples"):
        attribute_case(tiny_run, "no_such_key", "test", root=data_root, pipeline=pipe)
