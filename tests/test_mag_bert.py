"""MAG-BERT: Eq. 1-5 against an independent numpy computation, the beta -> 0 limit, the
masked alignment (padded frames cannot move the output; they do in the official mode),
K = 2 and K = 3 streams, loss / backward, frozen config."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mir_core.models.mag_bert import (MAG_BERT_MINTREC2, AvgPoolAlign, CTCAlign, MAGBert,
                                      MAGConfig, MAGate)

D_T = 8
STREAM_DIMS = {2: [5, 7], 3: [5, 7, 4]}


class TinyLayers(nn.Module):
    """The 'text encoder layers after the injection point': one tiny transformer layer."""

    def __init__(self, d: int = D_T):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=16, dropout=0.0,
                                                batch_first=True)

    def forward(self, h, mask):
        return self.layer(h, src_key_padding_mask=~mask)


def _model(K=2, seed=0, **cfg):
    torch.manual_seed(seed)
    cfg = MAGConfig(num_streams=K, text_len=cfg.pop("text_len", 6), **cfg)
    return MAGBert(cfg, num_labels=3, text_dim=D_T, stream_dims=STREAM_DIMS[K],
                   layers=TinyLayers(), pool="cls")


def _batch(K=2, B=3, T=6, lengths=(9, 11, 5), seed=1):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(B, T, D_T, generator=g)
    text_mask = torch.ones(B, T, dtype=torch.bool)
    text_mask[1, 4:] = False
    streams, masks = [], []
    for k, d in enumerate(STREAM_DIMS[K]):
        L = lengths[k]
        x = torch.randn(B, L, d, generator=g)
        m = torch.ones(B, L, dtype=torch.bool)
        m[0, L - 3:] = False                       # sample 0: 3 padded frames
        m[2, L // 2:] = False                      # sample 2: half padded
        x = x * m.unsqueeze(-1)                    # zero padding, as the data loader
        streams.append(x)
        masks.append(m)
    labels = torch.tensor([0, 2, 1])
    return text, text_mask, streams, masks, labels


@pytest.mark.parametrize("align", ["ctc", "avg_pool"])
@pytest.mark.parametrize("K", [2, 3])
def test_shapes_scores_loss_and_backward(K, align):
    model = _model(K, align=align).train()
    text, tm, streams, masks, labels = _batch(K)
    out = model(text, tm, streams, masks, labels=labels)
    assert out.logits.shape == (3, 3) and torch.isfinite(out.logits).all()
    assert out.scores["mag_alpha"].shape == (3, 1)
    assert out.scores["mag_gate"].shape == (3, K)
    assert ((out.scores["mag_alpha"] > 0) & (out.scores["mag_alpha"] <= 1)).all()
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, labels))
    assert out.losses["cls"] is out.loss
    out.loss.backward()
    for k in range(K):                             # every stream's gate and projection learn
        assert model.mag.gate[k].weight.grad.abs().sum() > 0
        assert model.mag.proj[k].weight.grad.abs().sum() > 0
        if align == "ctc":
            assert model.align[k].lstm.weight_ih_l0.grad.abs().sum() > 0
    assert model(text, tm, streams, masks).loss is None


def test_gate_matches_numpy_eq_1_to_5():
    torch.manual_seed(0)
    dims, beta, eps = [3, 4], 0.5, 1e-6
    gate = MAGate(D_T, dims, beta_shift=beta, dropout=0.0, eps=eps).eval()
    z = torch.randn(2, 5, D_T)
    z[0, 0] *= 50.0                                # a large token: alpha clipped at 1
    aligned = [torch.randn(2, 5, d) for d in dims]
    with torch.no_grad():
        out = gate(z, aligned)

    Z = z.double().numpy()
    H = np.zeros_like(Z)
    for s, Wg, W in zip(aligned, gate.gate, gate.proj):
        S = s.double().numpy()
        g = np.maximum(np.concatenate([S, Z], -1) @ Wg.weight.double().detach().numpy().T
                       + Wg.bias.double().detach().numpy(), 0.0)                 # Eq. 1-2
        H += g * (S @ W.weight.double().detach().numpy().T + W.bias.double().detach().numpy())
    hn = np.linalg.norm(H, axis=-1)
    alpha = np.minimum(np.linalg.norm(Z, axis=-1) / (hn + eps) * beta, 1.0)       # Eq. 5
    np.testing.assert_allclose(out.displacement.double().numpy(), H, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.alpha.double().numpy(), alpha, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.shifted.double().numpy(), Z + alpha[..., None] * H,
                               rtol=1e-5, atol=1e-5)                              # Eq. 4
    assert (alpha == 1.0).any() and (alpha < 1.0).any()                # both regimes seen
    ln = torch.nn.functional.layer_norm(out.shifted, (D_T,), gate.norm.weight, gate.norm.bias)
    assert torch.allclose(out.hidden, ln)                              # eval: no dropout


def test_zero_displacement_divides_by_one():
    gate = MAGate(D_T, [3], beta_shift=0.1, dropout=0.0).eval()
    nn.init.zeros_(gate.proj[0].weight)
    nn.init.zeros_(gate.proj[0].bias)                                  # H = 0
    z = torch.randn(1, 4, D_T)
    out = gate(z, [torch.randn(1, 4, 3)])
    expect = (z.norm(dim=-1) * 0.1 / (1.0 + 1e-6)).clamp(max=1.0)
    assert torch.allclose(out.alpha, expect) and torch.equal(out.shifted, z)


def test_beta_zero_leaves_text_unchanged_before_layernorm():
    model = _model(2, beta_shift=0.0).eval()
    text, tm, streams, masks, _ = _batch(2)
    aligned = model.align_streams(streams, masks, text.shape[1])
    g = model.mag(text, aligned)
    assert torch.equal(g.shifted, text)
    assert (g.alpha == 0).all()
    assert torch.allclose(g.hidden, model.mag.norm(text))


@pytest.mark.parametrize("align", ["ctc", "avg_pool"])
def test_padded_frames_cannot_change_the_output(align):
    text, tm, streams, masks, _ = _batch(2)
    noisy = [x + 100.0 * torch.randn_like(x) * (~m).unsqueeze(-1) for x, m in zip(streams, masks)]
    masked = _model(2, align=align, beta_shift=0.5).eval()
    a = masked(text, tm, streams, masks)
    b = masked(text, tm, noisy, masks)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    assert torch.allclose(a.scores["mag_alpha"], b.scores["mag_alpha"], atol=1e-6)
    official = _model(2, align=align, beta_shift=0.5, mask_streams=False).eval()
    c = official(text, tm, streams, masks)
    d = official(text, tm, noisy, masks)
    assert not torch.allclose(c.logits, d.logits, atol=1e-3)     # the official mode does see pads


def test_stream_of_padding_only_is_finite_and_ignored():
    model = _model(3, beta_shift=0.5).eval()
    text, tm, streams, masks, _ = _batch(3)
    masks[1][0] = False                                           # sample 0: stream 2 empty
    out = model(text, tm, streams, masks)
    streams2 = [s.clone() for s in streams]
    streams2[1][0] = 1e3
    assert torch.isfinite(out.logits).all()
    assert torch.allclose(out.logits, model(text, tm, streams2, masks).logits, atol=1e-5)


def test_alignment_rules():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 3)
    m = torch.ones(2, 9, dtype=torch.bool)
    m[1, 5:] = False
    ctc = CTCAlign(3, text_len=6)
    assert ctc(x, m, 4).shape == (2, 4, 3)                        # T <= text_len: first T
    with pytest.raises(ValueError, match="text_len"):
        ctc(x, m, 7)
    # masked average pooling: slot t = mean of real frames t, t + T, ... (official grouping)
    y = AvgPoolAlign()(x, m, 4)
    assert torch.allclose(y[1, 0], (x[1, 0] + x[1, 4]) / 2)
    assert torch.allclose(y[1, 1], x[1, 1])                       # frames 1 (5 is padding)
    assert torch.allclose(y[0, 0], (x[0, 0] + x[0, 4] + x[0, 8]) / 3)
    # a stream already of text length is used as is (official), unless always_align
    model = _model(2)
    s = [torch.randn(1, 6, 5), torch.randn(1, 6, 7)]
    ones = [torch.ones(1, 6, dtype=torch.bool)] * 2
    assert all(torch.equal(a, b) for a, b in zip(model.align_streams(s, ones, 6), s))
    model = _model(2, always_align=True)
    assert not torch.equal(model.align_streams(s, ones, 6)[0], s[0])


def test_config_is_frozen_validated_and_not_mutated():
    cfg = MAGConfig()
    assert (cfg.beta_shift, cfg.dropout, cfg.align, cfg.eps) == (0.005, 0.5, "ctc", 1e-6)
    assert MAG_BERT_MINTREC2["lr"] == 5e-6 and MAG_BERT_MINTREC2["batch_size"] == 16
    assert MAG_BERT_MINTREC2["epochs"] == 40
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.beta_shift = 1.0
    with pytest.raises(ValueError):
        MAGConfig(align="conv")
    with pytest.raises(ValueError):
        MAGBert(MAGConfig(num_streams=3), 3, D_T, [5, 7], TinyLayers())
    cfg = MAGConfig(num_streams=2, text_len=6, beta_shift=0.5)
    before = copy.deepcopy(cfg)
    model = MAGBert(cfg, 3, D_T, STREAM_DIMS[2], TinyLayers(), pool="mean")
    text, tm, streams, masks, labels = _batch(2)
    model(text, tm, streams, masks, labels=labels).loss.backward()
    assert model.cfg is cfg and cfg == before
