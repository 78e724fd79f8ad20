"""MulT: (K + 1) K directional crossmodal blocks, K = 2 and K = 3, loss / backward, padding
invariance with masks (and its absence in the official mode), the last real step, samples
with an empty stream, frozen config."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mir_core.models.mult import (MULT_MINTREC2, MulT, MulTConfig, attention_mask,
                                  last_real_step, sinusoidal_positions)

D_T, D = 12, 8
STREAM_DIMS = {2: [6, 10], 3: [6, 10, 5]}
LENGTHS = {0: 9, 1: 11, 2: 7, 3: 8}             # padded length per modality (0 = text)
REAL = {0: [9, 6, 7], 1: [11, 4, 8], 2: [7, 7, 3], 3: [5, 8, 2]}   # real lengths per sample


def _cfg(K=2, **kw):
    kw = {"d_model": D, "num_heads": 2, "n_levels": 1, "mem_levels": 1, **kw}
    return MulTConfig.mintrec2(K, **kw)


def _model(K=2, seed=0, **kw):
    torch.manual_seed(seed)
    return MulT(_cfg(K, **kw), num_labels=4, text_dim=D_T, stream_dims=STREAM_DIMS[K])


def _mask(m):
    mask = torch.zeros(3, LENGTHS[m], dtype=torch.bool)
    for b, n in enumerate(REAL[m]):
        mask[b, :n] = True
    return mask


def _batch(K=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    text_mask = _mask(0)
    text = torch.randn(3, LENGTHS[0], D_T, generator=g) * text_mask.unsqueeze(-1)
    streams, masks = [], []
    for k, d in enumerate(STREAM_DIMS[K]):
        m = _mask(k + 1)
        streams.append(torch.randn(3, LENGTHS[k + 1], d, generator=g) * m.unsqueeze(-1))
        masks.append(m)
    return text, text_mask, streams, masks, torch.tensor([0, 3, 1])


def _noise_pads(text, text_mask, streams, masks):
    noisy = lambda x, m: x + 50.0 * torch.randn_like(x) * (~m).unsqueeze(-1)   # noqa: E731
    return noisy(text, text_mask), [noisy(x, m) for x, m in zip(streams, masks)]


@pytest.mark.parametrize("padding_mask", [True, False])
@pytest.mark.parametrize("K", [2, 3])
def test_blocks_shapes_loss_and_backward(K, padding_mask):
    model = _model(K, use_padding_mask=padding_mask).train()
    assert len(model.crossmodal) == (K + 1) * K                 # 6 for text + video + audio
    names = ["t"] + [f"s{k + 1}" for k in range(K)]
    assert set(model.crossmodal) == {f"{a}_to_{b}" for a in names for b in names if a != b}
    assert len(model.memory) == K + 1
    assert model.proj1.in_features == (K + 1) * K * D
    text, tm, streams, masks, labels = _batch(K)
    out = model(text, tm, streams, masks, labels=labels)
    assert out.logits.shape == (3, 4) and torch.isfinite(out.logits).all()
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, labels))
    assert out.losses["cls"] is out.loss
    out.loss.backward()
    for name, block in model.crossmodal.items():                # every direction learns
        grad = block.layers[0].attn.in_proj_weight.grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.proj[0].weight.grad.abs().sum() > 0            # text conv (kernel 5)


@pytest.mark.parametrize("K", [2, 3])
def test_padding_values_do_not_matter_with_masks_and_do_in_official_mode(K):
    text, tm, streams, masks, _ = _batch(K)
    text2, streams2 = _noise_pads(text, tm, streams, masks)
    model = _model(K).eval()
    with torch.no_grad():
        a = model(text, tm, streams, masks).logits
        b = model(text2, tm, streams2, masks).logits
    assert torch.allclose(a, b, atol=1e-5)
    official = _model(K, use_padding_mask=False).eval()
    with torch.no_grad():
        c = official(text, tm, streams, masks).logits
        d = official(text2, tm, streams2, masks).logits
    assert not torch.allclose(c, d, atol=1e-3)
    # in the official mode exactly the samples that have padding somewhere move
    padded = ~torch.stack([m.all(1) for m in [tm, *masks]]).all(0)          # (B,)
    assert torch.equal((c - d).abs().amax(1) > 1e-4, padded)


def test_a_sample_alone_unpadded_matches_its_row_in_the_batch():
    """Last REAL step, per-sample future mask: the padding's amount does not matter."""
    K = 2
    model = _model(K).eval()
    text, tm, streams, masks, _ = _batch(K)
    with torch.no_grad():
        full = model(text, tm, streams, masks).logits
        for b in range(3):
            n_t = REAL[0][b]
            cut = [x[b:b + 1, :REAL[k + 1][b]] for k, x in enumerate(streams)]
            cut_m = [torch.ones(1, REAL[k + 1][b], dtype=torch.bool) for k in range(K)]
            alone = model(text[b:b + 1, :n_t], torch.ones(1, n_t, dtype=torch.bool),
                          cut, cut_m).logits
            assert torch.allclose(alone, full[b:b + 1], atol=1e-5), b


def test_with_nothing_padded_the_masked_mode_is_the_official_computation():
    model = _model(2, text_kernel=1).eval()
    g = torch.Generator().manual_seed(3)
    text = torch.randn(2, 9, D_T, generator=g)
    streams = [torch.randn(2, 11, 6, generator=g), torch.randn(2, 7, 10, generator=g)]
    official = copy.deepcopy(model)
    official.cfg = dataclasses.replace(model.cfg, use_padding_mask=False)
    with torch.no_grad():
        a = model(text, None, streams, None).logits
        b = official(text, None, streams, None).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_last_real_step():
    h = torch.arange(2 * 5 * 1, dtype=torch.float32).view(2, 5, 1)
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    assert last_real_step(h, mask).flatten().tolist() == [3.0, 0.0]   # step 3; empty -> 0
    assert last_real_step(h, None).flatten().tolist() == [4.0, 9.0]   # official: step T-1


def test_empty_stream_gives_finite_logits_and_gradients():
    K = 3
    model = _model(K).train()
    text, tm, streams, masks, labels = _batch(K)
    masks[0][1] = False                                          # sample 1: stream 1 empty
    out = model(text, tm, streams, masks, labels=labels)
    assert torch.isfinite(out.logits).all()
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    streams2 = [s.clone() for s in streams]
    streams2[0][1] = 1e3
    with torch.no_grad():
        assert torch.allclose(model(text, tm, streams, masks).logits,
                              model(text, tm, streams2, masks).logits, atol=1e-5)


def test_attention_masks_and_weights():
    # official future mask: query i sees keys j <= i + |Tk - Tq|
    blocked, visible = attention_mask(3, 5, None, None, True, 2, torch.device("cpu"))
    assert visible is None
    assert blocked.tolist() == [[False] * 3 + [True] * 2, [False] * 4 + [True],
                                [False] * 5]
    # masked: a sample whose keys are all padding has no visible row
    k_mask = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    q_mask = torch.ones(2, 2, dtype=torch.bool)
    blocked, visible = attention_mask(2, 3, q_mask, k_mask, True, 2, torch.device("cpu"))
    assert blocked.shape == (4, 2, 3) and visible[:, :, 0].tolist() == [[True, True],
                                                                        [False, False]]
    model = _model(2).eval()
    text, tm, streams, masks, _ = _batch(2)
    with torch.no_grad():
        model(text, tm, streams, masks, return_attention=True)
    w = model.last_attention["s1_to_t"][0]                       # (B, T_text, T_s1)
    assert w.shape == (3, LENGTHS[0], LENGTHS[1])
    assert torch.allclose(w.sum(-1), torch.ones(3, LENGTHS[0]), atol=1e-5)
    assert (w[1, :, REAL[1][1]:] == 0).all()                     # no weight on padding


def test_positions_follow_the_official_rule():
    x = torch.randn(1, 4, 6)
    pad = torch.tensor([[False, True, False, False]])
    pe = sinusoidal_positions(x, pad)
    assert (pe[0, 1] == 0).all()                                 # a pad step: position 0
    half = torch.exp(torch.arange(3) * -(torch.log(torch.tensor(10000.0)) / 2))
    assert torch.allclose(pe[0, 0], torch.cat([half.sin(), half.cos()]))   # step 0: pos 1
    assert torch.allclose(pe[0, 3], torch.cat([(4 * half).sin(), (4 * half).cos()]))


def test_config_is_frozen_validated_and_not_mutated():
    cfg = MulTConfig()
    assert (cfg.d_model, cfg.num_heads, cfg.n_levels, cfg.text_kernel) == (80, 2, 2, 5)
    assert cfg.attn_dropout_streams == (0.2, 0.2) and cfg.stream_kernels == (1, 1)
    assert (cfg.relu_dropout, cfg.embed_dropout, cfg.res_dropout, cfg.output_dropout,
            cfg.text_dropout, cfg.attn_mask) == (0.3, 0.1, 0.0, 0.2, 0.4, True)
    assert MULT_MINTREC2["lr"] == 5e-6 and MULT_MINTREC2["grad_clip"] == 0.5
    assert MulTConfig.mintrec2(3).stream_kernels == (1, 1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 16
    with pytest.raises(ValueError, match="one value per stream"):
        MulTConfig(num_streams=3)
    cfg = _cfg(2)
    before = copy.deepcopy(cfg)
    model = MulT(cfg, 4, D_T, STREAM_DIMS[2])
    text, tm, streams, masks, labels = _batch(2)
    model(text, tm, streams, masks, labels=labels).loss.backward()
    assert model.cfg is cfg and cfg == before
    with pytest.raises(ValueError):
        MulT(cfg, 4, D_T, STREAM_DIMS[3])
