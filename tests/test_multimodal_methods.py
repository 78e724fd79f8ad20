"""MAG-BERT and MulT as registered methods: trained by the one loop on the partial
regime's token states, the descriptions standing in for the nonverbal streams."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mir_core.models import get_method
from mir_core.models.encoders import SequenceLayers, TopLayers, split_streams
from mir_core.training import ConfigError, RunSpec, run

QUIET = dict(log=lambda *_: None)
# one thread: on a busy 2-core machine a 2-thread LSTM step (MAG-BERT's CTC aligner) is
# three orders of magnitude slower than a 1-thread one
TINY = dict(dataset="MIntRec2.0", preset="cpu-ft", seeds=(0,), max_train=48, max_eval=24,
            overrides={"epochs": 1, "text_max_len": 24, "desc_max_len": 24,
                       "precision": "fp32", "num_threads": 1})


@pytest.mark.parametrize("method", ["mag_bert", "mult"])
def test_frozen_regime_is_refused_before_any_work(method, tmp_path):
    with pytest.raises(ConfigError, match=rf"{method}.*regime.*'frozen'.*cpu-ft"):
        run(RunSpec(dataset="MIntRec2.0", method=method, preset="cpu", seeds=(0,)),
            data_root=tmp_path / "nothing", out_dir=tmp_path, **QUIET)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("method, scores", [("mag_bert", {"mag_alpha_alpha", "mag_gate_A"}),
                                            ("mult", set())])
def test_trains_through_the_loop(method, scores, data_root, tmp_path):
    s = run(RunSpec(method=method, **TINY), data_root=data_root, out_dir=tmp_path, **QUIET)
    folder = Path(s["folder"])
    assert s["method"] == method and s["regime"] == "partial" and s["n_test"] == 24
    metrics = json.loads((folder / "seed_0" / "metrics.json").read_text())
    assert 0 <= metrics["F1"] <= 100 and metrics["epochs_run"] == 1
    import pandas as pd
    pred = pd.read_csv(folder / "seed_0" / "predictions.csv")
    assert len(pred) == 24 and scores <= set(pred.columns)
    if "mag_alpha_alpha" in pred:               # the gate's shift is at most beta_shift-scaled
        assert ((pred["mag_alpha_alpha"] >= 0) & (pred["mag_alpha_alpha"] <= 1)).all()
    state = torch.load(folder / "seed_0" / "best.pt")
    assert any(".layers.0." in k for k in state)       # the fine-tuned top layer was saved


def test_sequence_layers_equal_the_pooled_path():
    """TopLayers.forward pools what SequenceLayers computes, so the multimodal models run
    exactly the layers the text-only and LGSRR models fine-tune."""
    from transformers import BertConfig, BertModel
    base = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64)).eval()
    top = TopLayers.from_encoder(base, 1, "mean").eval()
    hidden = torch.randn(3, 2, 7, 32)
    mask = torch.ones(3, 2, 7, dtype=torch.bool)
    mask[0, :, 5:] = False
    pooled = top(hidden, mask)                                       # (B, S, D)
    text, tm, streams, sm = split_streams(hidden, mask)
    seq = SequenceLayers(top)(text, tm)                              # (B, T, D)
    m = tm.unsqueeze(-1).float()
    assert torch.allclose((seq * m).sum(1) / m.sum(1), pooled[:, 0], atol=1e-5)
    assert len(streams) == 1 and torch.equal(sm[0], mask[:, 1])


def test_registered_with_their_sources_and_regimes():
    for name in ("mag_bert", "mult"):
        m = get_method(name)
        assert m.sources == ("text", "A", "E", "I") and m.regimes == ("partial",)
    assert get_method("lgsrr").regimes == ("frozen", "partial", "full")


# --------------------------------------------------------------------------- A-MESS
# the A-MESS paper's descriptions, where the shared data sits beside the checkout (as in CI)
PAPER_DESCRIPTIONS = (Path(__file__).resolve().parents[2] / "shared" / "data" / "amess"
                      / "label_descriptions.json")


@pytest.fixture
def amess_descriptions(tmp_path, monkeypatch) -> Path:
    """The A-MESS paper's descriptions when the shared copy is here, else a written file
    in the paper's format and spellings (never copied into the repository)."""
    monkeypatch.delenv("MIR_LABEL_DESCRIPTIONS", raising=False)
    if PAPER_DESCRIPTIONS.exists():
        return PAPER_DESCRIPTIONS
    from mir_core.data import get_spec
    paper = {"Apologise": "Apologize", "Ask for help": "Ask for Help",
             "Asking for opinions": "Ask for Opinions"}
    f = tmp_path / "label_descriptions.json"
    f.write_text(json.dumps({"MIntRec2.0": {
        paper.get(lab, lab): [f"{lab}: sense {i}." for i in range(3)]
        for lab in get_spec("MIntRec2.0").labels}}))
    return f


def test_amess_registered_and_refused_in_the_frozen_regime(tmp_path):
    m = get_method("amess")
    assert m.sources == ("text", "A", "E", "I") and m.regimes == ("partial",)
    assert m.scores == {"anchor_ratio": ("A", "E", "I"), "anchor_ratio_max": ("A", "E", "I")}
    assert m.check_inputs is not None
    with pytest.raises(ConfigError, match=r"amess.*regime.*'frozen'.*cpu-ft"):
        run(RunSpec(dataset="MIntRec2.0", method="amess", preset="cpu", seeds=(0,)),
            data_root=tmp_path / "nothing", out_dir=tmp_path, **QUIET)
    with pytest.raises(ValueError, match="num_anchors must be an integer >= 1"):
        m.make_options({"num_anchors": 0})
    with pytest.raises(ValueError, match="temperature"):
        m.make_options({"temperature": 0.0})


def test_amess_trains_through_the_loop_and_reloads(amess_descriptions, data_root, tmp_path,
                                                   monkeypatch):
    import pandas as pd

    from mir_core import cases
    s = run(RunSpec(method="amess", options={"descriptions": str(amess_descriptions)},
                    **TINY), data_root=data_root, out_dir=tmp_path, **QUIET)
    folder = Path(s["folder"])
    assert s["method"] == "amess" and s["regime"] == "partial" and s["n_test"] == 24
    assert "/" not in folder.name and f"descriptions={amess_descriptions.stem}" in folder.name
    metrics = json.loads((folder / "seed_0" / "metrics.json").read_text())
    assert 0 <= metrics["F1"] <= 100 and metrics["epochs_run"] == 1
    fp = json.loads((folder / "seed_0" / "fingerprint.json").read_text())
    assert fp["method_inputs"]["num_descriptions"] == 3
    assert fp["method_inputs"]["description_encoder"] == "minilm-l6"
    pred = pd.read_csv(folder / "seed_0" / "predictions.csv")
    cols = [f"anchor_ratio_{s}" for s in "AEI"] + [f"anchor_ratio_max_{s}" for s in "AEI"]
    assert len(pred) == 24 and set(cols) <= set(pred.columns)
    assert pred[cols].notna().all().all()
    assert (pred[[f"anchor_ratio_max_{s}" for s in "AEI"]].to_numpy()
            >= pred[[f"anchor_ratio_{s}" for s in "AEI"]].to_numpy() - 1e-5).all()
    state = torch.load(folder / "seed_0" / "best.pt")
    assert any(".layers.0." in k for k in state)       # the fine-tuned top layer was saved
    assert tuple(state["core.label_desc"].shape) == (30, 3, 384)  # (C, M, D_s) MiniLM

    # the case studies rebuild the model from best.pt alone: no descriptions file, no
    # sentence encoder (the embeddings are the saved buffer), the same test predictions
    import mir_core.label_descriptions as ld

    def fail(*a, **k):
        raise AssertionError("load_model re-read the label descriptions")
    monkeypatch.setattr(ld, "load_label_descriptions", fail)
    monkeypatch.setattr(ld, "embed_label_descriptions", fail)
    info = cases.load_run(folder)
    model, cfg, method, options = cases.load_model(info)
    assert method.name == "amess" and options.descriptions == str(amess_descriptions)
    test = info.splits(data_root)["test"]
    out = cases.predict_split(info, test, model=model)
    assert (out["pred"] == pred["pred_id"].to_numpy()).all()

    monkeypatch.undo()
    # the descriptions are in the fingerprint: the same ones reuse the seed, edited ones
    # (same file name, so the same run folder) are named as the difference
    from mir_core.data import get_spec
    from mir_core.label_descriptions import load_label_descriptions
    from mir_core.training import RunError
    again = run(RunSpec(method="amess", options={"descriptions": str(amess_descriptions)},
                        **TINY), data_root=data_root, out_dir=tmp_path, **QUIET)
    assert again["test"]["F1"] == s["test"]["F1"]
    descs = load_label_descriptions(get_spec("MIntRec2.0").labels, "MIntRec2.0",
                                    amess_descriptions)
    descs["Care"] = ["edited"] * 3
    edited = tmp_path / "edited" / amess_descriptions.name
    edited.parent.mkdir()
    edited.write_text(json.dumps(descs))
    with pytest.raises(RunError, match="method_inputs.label_descriptions"):
        run(RunSpec(method="amess", options={"descriptions": str(edited)}, **TINY),
            data_root=data_root, out_dir=tmp_path, **QUIET)


def test_amess_without_ss_needs_no_descriptions(data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("MIR_LABEL_DESCRIPTIONS", raising=False)
    s = run(RunSpec(method="amess", options={"use_ss": False}, **TINY),
            data_root=data_root, out_dir=tmp_path, **QUIET)
    fp = json.loads((Path(s["folder"]) / "seed_0" / "fingerprint.json").read_text())
    assert "method_inputs" not in fp and fp["spec"]["options"]["use_ss"] is False
    state = torch.load(Path(s["folder"]) / "seed_0" / "best.pt")
    assert "core.label_desc" not in state


def test_amess_missing_descriptions_fail_before_any_work(tmp_path, monkeypatch):
    """No descriptions for some labels: one line naming them, before the data is read or a
    feature encoded, and no run folder."""
    from mir_core.label_descriptions import LabelDescriptionsError
    from mir_core.training import runs
    monkeypatch.delenv("MIR_LABEL_DESCRIPTIONS", raising=False)
    monkeypatch.setattr(runs, "build_inputs", lambda *a, **k: pytest.fail("features built"))
    f = tmp_path / "flat.json"
    f.write_text(json.dumps({"Greet": ["hello"], "Thank": ["thanks"]}))
    for options, env in (({"descriptions": str(f)}, None), ({}, str(f)), ({}, None)):
        if env:
            monkeypatch.setenv("MIR_LABEL_DESCRIPTIONS", env)
        with pytest.raises(LabelDescriptionsError) as e:
            run(RunSpec(method="amess", options=options, **TINY),
                data_root=tmp_path / "nothing", out_dir=tmp_path / "out", **QUIET)
        msg = str(e.value)
        assert "\n" not in msg
        if env or options:
            assert str(f) in msg and "28 of the 30" in msg and "'Asking for opinions'" in msg
        else:
            assert "MIR_LABEL_DESCRIPTIONS" in msg
        monkeypatch.delenv("MIR_LABEL_DESCRIPTIONS", raising=False)
    assert not (tmp_path / "out" / "runs").exists()


def test_amess_losses_and_scores_through_the_registry():
    """The registered build on a tiny BERT layer: losses cls + ss (cls alone without SS),
    scores (B, 3), the label embeddings taken from a state as load_model passes it."""
    from transformers import BertConfig, BertModel

    from mir_core.data import get_spec
    from mir_core.models.registry import BuildContext
    from mir_core.training import preset
    base = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64))
    spec, cfg = get_spec("MIntRec2.0"), preset("MIntRec2.0", "cpu-ft", text_max_len=8,
                                                desc_max_len=8)
    method = get_method("amess")
    desc = torch.randn(30, 2, 16)
    hidden = torch.randn(4, 4, 8, 32)
    mask = torch.ones(4, 4, 8, dtype=torch.bool)
    mask[1, :, 5:] = False
    labels = torch.tensor([0, 3, 7, 29])
    for use_ss, want in ((True, {"cls", "ss"}), (False, {"cls"})):
        torch.manual_seed(0)
        opts = method.make_options({"use_ss": use_ss, "num_anchors": 3})
        model = method.build(BuildContext(
            30, cfg, TopLayers.from_encoder(base, 1, cfg.pooling), opts, labels=spec.labels,
            dataset=spec.name, state={"core.label_desc": desc}))
        out = model(hidden, mask, labels=labels)
        assert set(out.losses) == want and out.logits.shape == (4, 30)
        assert torch.isfinite(out.loss) and out.losses["cls"].requires_grad
        assert {k: tuple(v.shape) for k, v in out.scores.items()} == {
            "anchor_ratio": (4, 3), "anchor_ratio_max": (4, 3)}
        if use_ss:
            assert torch.equal(model.core.label_desc, desc)
            out.loss.backward()
            assert model.core.ss_proj[0].weight.grad is not None


@pytest.mark.parametrize("method", ["mag_bert", "mult", "text"])
def test_encoder_lr_reaches_the_fine_tuned_layers(method):
    """encoder_lr is given to the regime's encoder layers whatever the model calls them
    (MAG-BERT and MulT wrap them), the head keeps lr."""
    from transformers import BertConfig, BertModel

    from mir_core.models import BuildContext
    from mir_core.training import preset
    from mir_core.training.loop import _param_groups
    cfg = preset("MIntRec2.0", "cpu-ft")
    base = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64))
    encoder = TopLayers.from_encoder(base, 1, "mean")
    m = get_method(method)
    model = m.build(BuildContext(num_labels=5, train_config=cfg, encoder=encoder,
                                 options=m.make_options({}), dataset="MIntRec2.0"))
    lr_of = {id(p): g["lr"] for g in _param_groups(model, cfg, encoder) for p in g["params"]}
    layer_ids = {id(p) for p in encoder.parameters()}
    assert {lr_of[i] for i in layer_ids} == {cfg.encoder_lr}
    head = [id(p) for p in model.parameters() if id(p) not in layer_ids]
    assert head and {lr_of[i] for i in head} == {cfg.lr} and cfg.lr != cfg.encoder_lr
