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
TINY = dict(dataset="MIntRec2.0", preset="cpu-ft", seeds=(0,), max_train=48, max_eval=24,
            overrides={"epochs": 1, "text_max_len": 24, "desc_max_len": 24,
                       "precision": "fp32"})


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
