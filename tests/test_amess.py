"""A-MESS (mir_core.models.amess): shapes and gradients for K = 2 and 3, the anchor
selection and Eq. 15 against independent numpy / loop computations, padding invariance,
the ablation switches, the label-description checks and the frozen config."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from mir_core.models.amess import (AMESS, AMESSConfig, anchor_ratio, select_anchors,
                                   triplet_contrastive_loss)
from mir_core.models.encoders import pool

D, T, C, M, DS, KA = 8, 7, 4, 3, 6, 3          # text dim, text len, labels, descs, D_s, k
DIMS = {2: (5, 6), 3: (5, 6, 8)}
LENS = {2: (9, 4), 3: (9, 4, 6)}
NAMES = {2: ("video", "audio"), 3: ("A", "E", "I")}
TEXT_LENS = (7, 5, 2)                           # the last one has fewer than k real tokens
STREAM_LENS = {9: (9, 6, 3), 4: (4, 2, 1), 6: (6, 6, 2)}


class TinyLayers(nn.Module):
    """The text encoder layers: (hidden (B, T, D), mask (B, T) bool) -> (B, T, D)."""

    def __init__(self, d: int):
        super().__init__()
        self.block = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True)

    def forward(self, h, mask):
        return self.block(h, src_key_padding_mask=~mask)


def _cfg(k=2, **kw):
    base = dict(num_labels=C, text_dim=D, text_len=T, num_streams=k, stream_dims=DIMS[k],
                stream_names=NAMES[k], num_anchors=KA, num_heads=2, ffn_mult=2,
                dropout=0.0, attn_dropout=0.0, desc_dim=DS, num_descriptions=M)
    base.update(kw)
    return AMESSConfig(**base)


def _desc(seed=1):
    return torch.randn(C, M, DS, generator=torch.Generator().manual_seed(seed))


def _model(k=2, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    cfg = _cfg(k, **kw)
    return AMESS(cfg, TinyLayers(D), label_desc=_desc() if cfg.use_ss else None).to(dtype).eval()


def _mask(lengths, t):
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]


def _batch(k=2, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(3, T, D, generator=g, dtype=dtype)
    streams = [torch.randn(3, L, dk, generator=g, dtype=dtype)
               for L, dk in zip(LENS[k], DIMS[k])]
    masks = [_mask(STREAM_LENS[L], L) for L in LENS[k]]
    masks[0][1, 2] = False                      # a gap: padding need not be at the end
    return dict(text=text, text_mask=_mask(TEXT_LENS, T), streams=streams, stream_masks=masks,
                labels=torch.tensor([0, 2, 3]))


def _np_ratio(stream, text, mask, eps=1e-6):
    """Eq. 4 / 6 again: first / second nearest-neighbour cosine to the real text tokens."""
    s, x, m = (np.asarray(a, dtype=np.float64) for a in (stream, text, mask))
    out = np.full(m.shape, -np.inf)
    for b in range(m.shape[0]):
        real = np.flatnonzero(m[b])
        for j in real:
            cos = [s[b, j] @ x[b, i] / max(np.linalg.norm(s[b, j]), 1e-12)
                   / max(np.linalg.norm(x[b, i]), 1e-12) for i in real]
            cos = sorted(cos, reverse=True)
            s1 = cos[0]
            s2 = cos[1] if len(cos) > 1 else cos[0]
            out[b, j] = s1 / max(s2, eps)
    return out


def _np_top(ratio_row, k):
    real = np.flatnonzero(np.isfinite(ratio_row))
    order = real[np.argsort(-ratio_row[real], kind="stable")]
    return order[:k]


# ----------------------------------------------------------------------------- shapes, grads

@pytest.mark.parametrize("k", [2, 3])
def test_shapes_finite_loss_and_backward(k):
    model, batch = _model(k).train(), _batch(k)
    out = model(**batch)
    assert out.logits.shape == (3, C) and torch.isfinite(out.logits).all()
    assert set(out.losses) == {"cls", "ss"}
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    torch.testing.assert_close(out.loss, out.losses["cls"] + model.cfg.ss_weight
                               * out.losses["ss"])
    for name in NAMES[k]:
        assert out.scores[f"anchor_pos_{name}"].shape == (3, KA)
        assert out.scores[f"anchor_ratio_{name}"].shape == (3, KA)
    out.loss.backward()
    weights = {n: p for n, p in model.named_parameters()
               if (n.startswith("ame.") or n.startswith("ss_proj.")) and p.dim() >= 2}
    assert any(n.startswith("ame.anchor_attn.%d" % (k - 1)) for n in weights)
    for n, p in weights.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n
    assert model.ame.norm.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- anchors

def test_anchor_ratio_and_selection_match_numpy():
    g = torch.Generator().manual_seed(3)
    text = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    stream = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    mask = _mask((4, 2, 1), 5)
    # padded stream positions made maximally distinctive: a copy of one real text token
    stream[0, 4] = 3 * text[0, 0]
    stream[1, 2:] = text[1, 1]
    r = anchor_ratio(stream, text, mask)
    ref = _np_ratio(stream, text, mask)
    np.testing.assert_allclose(r.numpy(), ref, rtol=1e-10)
    assert torch.isinf(r[~mask]).all() and (r[~mask] < 0).all()
    for k in (2, 3, 8):                                  # 8 > T: more slots than positions
        pos, valid, vals = select_anchors(r, mask, k)
        assert pos.shape == valid.shape == vals.shape == (3, k)
        for b in range(3):
            want = _np_top(ref[b], k)
            n = len(want)
            assert n == min(k, int(mask[b].sum()))
            assert valid[b].tolist() == [True] * n + [False] * (k - n)
            assert pos[b, :n].tolist() == want.tolist()
            np.testing.assert_allclose(vals[b, :n].numpy(), ref[b, want])
            assert mask[b, pos[b, valid[b]]].all()       # never a padded position


def test_model_anchors_match_numpy_and_skip_padding():
    model, batch = _model(2, torch.float64), _batch(2, torch.float64)
    captured = {}
    for k, attn in enumerate(model.ame.dim_attn):       # E''_k, the anchors' source
        attn.register_forward_hook(lambda mod, inp, out, k=k: captured.__setitem__(k, out[0]))
    out = model(**batch)
    mask = batch["text_mask"]
    for k, name in enumerate(NAMES[2]):
        ref = _np_ratio(captured[k].detach(), batch["text"], mask)
        pos, ratio = out.scores[f"anchor_pos_{name}"], out.scores[f"anchor_ratio_{name}"]
        for b, n_real in enumerate(TEXT_LENS):
            want = _np_top(ref[b], KA)
            n = min(KA, n_real)                          # sample 2: 2 real tokens < k = 3
            assert pos[b, :n].tolist() == want.tolist()
            assert (pos[b, n:] == -1).all() and torch.isnan(ratio[b, n:]).all()
            np.testing.assert_allclose(ratio[b, :n].numpy(), ref[b, want], rtol=1e-9)
            assert (pos[b, :n] < n_real).all()
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.loss)


def _manual_ame(ame, text, mask, streams, smasks, k_anchors):
    """Eq. 4-13 one sample at a time, trimmed to its real tokens instead of masked."""
    rows = []
    for b in range(text.shape[0]):
        n = int(mask[b].sum())
        e_t = text[b:b + 1, :n]                                       # (1, n, D)
        anchors = []
        for k, (x, xm) in enumerate(zip(streams, smasks)):
            x = x[b:b + 1] * xm[b:b + 1, :, None]
            p = ame.align[k].position(x)[0].softmax(-1)[..., 1:n + 1]  # MulT's CTC alignment
            aligned = p.transpose(1, 2) @ x                           # E'_k (1, n, D_k)
            e2 = ame.dim_attn[k](e_t, aligned, aligned)[0]            # E''_k (1, n, D)
            r = _np_ratio(e2.detach(), e_t, torch.ones(1, n, dtype=torch.bool))
            anchors.append(e2[:, torch.as_tensor(_np_top(r[0], k_anchors))])   # A_k
        mixed = e_t
        for k, a in enumerate(anchors):
            kv = torch.cat([o for j, o in enumerate(anchors) if j != k], 1)
            enh = ame.anchor_ffn[k](a + ame.anchor_attn[k](a, kv, kv)[0])     # Eq. 8-10
            mixed = mixed + ame.temporal_attn[k](e_t, enh, enh)[0]            # Eq. 11-12
        rows.append(ame.norm(mixed)[0])                                        # Eq. 13
    return rows


@pytest.mark.parametrize("k", [2, 3])
def test_ame_matches_per_sample_equations(k):
    model, batch = _model(k, torch.float64), _batch(k, torch.float64)
    args = (batch["text"], batch["text_mask"], batch["streams"], batch["stream_masks"])
    got = model.ame(*args).embedding
    for b, want in enumerate(_manual_ame(model.ame, *args, KA)):
        torch.testing.assert_close(got[b, :TEXT_LENS[b]], want, atol=1e-10, rtol=1e-10)


# ----------------------------------------------------------------------------- padding

@pytest.mark.parametrize("k", [2, 3])
def test_padding_values_do_not_matter(k):
    model, batch = _model(k, torch.float64), _batch(k, torch.float64)
    ref = model(**batch)
    g = torch.Generator().manual_seed(9)
    text = batch["text"].clone()
    pad = ~batch["text_mask"]
    text[pad] = 50 * torch.randn(int(pad.sum()), D, generator=g, dtype=torch.float64)
    streams = []
    for x, m in zip(batch["streams"], batch["stream_masks"]):
        x = x.clone()
        x[~m] = 50 * torch.randn(int((~m).sum()), x.shape[-1], generator=g, dtype=x.dtype)
        streams.append(x)
    out = model(**{**batch, "text": text, "streams": streams})
    tol = dict(atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(out.logits, ref.logits, **tol)
    torch.testing.assert_close(out.loss, ref.loss, **tol)
    for key in ref.losses:
        torch.testing.assert_close(out.losses[key], ref.losses[key], **tol)
    for key in ref.scores:
        if key.startswith("anchor_pos"):
            assert torch.equal(out.scores[key], ref.scores[key])
    # the real values do matter (A-ME is live)
    real = [x + 0.5 * m[..., None] for x, m in zip(streams, batch["stream_masks"])]
    assert not torch.allclose(model(**{**batch, "streams": real}).logits, ref.logits)


def test_amount_of_padding_and_empty_anchor_slots_do_not_matter():
    """A sample alone, trimmed to its real length, gives what it gives in the padded batch;
    with fewer real tokens than k, the empty anchor slots have no effect (k = 3 vs 2)."""
    model, batch = _model(2, torch.float64), _batch(2, torch.float64)
    full = model(**{**batch, "labels": None}).logits
    for b, n in enumerate(TEXT_LENS):
        lens = [int(m[b].nonzero().max()) + 1 for m in batch["stream_masks"]]
        one = model(batch["text"][b:b + 1, :n], batch["text_mask"][b:b + 1, :n],
                    [x[b:b + 1, :L] for x, L in zip(batch["streams"], lens)],
                    [m[b:b + 1, :L] for m, L in zip(batch["stream_masks"], lens)]).logits
        torch.testing.assert_close(one[0], full[b])
    fewer = _model(2, torch.float64, num_anchors=2)     # same weights: k has no parameters
    fewer.load_state_dict(model.state_dict())
    small = fewer(**{**batch, "labels": None}).logits
    torch.testing.assert_close(small[2], full[2])       # 2 real tokens: the same 2 anchors
    assert not torch.allclose(small[0], full[0])        # 7 real tokens: k matters


# ----------------------------------------------------------------------------- Eq. 15

def _loop_loss(tokens, labels, desc, tau, excluded=()):
    total, n = 0.0, 0
    for t, y in zip(tokens.tolist(), labels.tolist()):
        if y in excluded:
            continue
        t = np.asarray(t)
        def e(d):
            d = np.asarray(d)
            return math.exp(t @ d / np.linalg.norm(t) / np.linalg.norm(d) / tau)
        pos = sum(e(desc[y, m]) for m in range(desc.shape[1]))
        neg = sum(e(desc[c, m]) for c in range(desc.shape[0]) if c != y and c not in excluded
                  for m in range(desc.shape[1]))
        total += -math.log(pos / (pos + neg))
        n += 1
    return total / n


def test_triplet_loss_matches_loop_and_decreases_toward_positives():
    g = torch.Generator().manual_seed(5)
    tokens = torch.randn(6, 16, generator=g, dtype=torch.float64)
    desc = torch.randn(4, 3, 16, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 2, 0])
    got = triplet_contrastive_loss(tokens, labels, desc, 0.7)
    assert got.item() == pytest.approx(_loop_loss(tokens, labels, desc.numpy(), 0.7), rel=1e-10)
    ok = torch.tensor([True, True, False, True])      # label 2 without SS
    got = triplet_contrastive_loss(tokens, labels, desc, 0.7, ok)
    assert got.item() == pytest.approx(_loop_loss(tokens, labels, desc.numpy(), 0.7, (2,)),
                                       rel=1e-10)
    # moving every token toward its label's descriptions lowers the loss
    toward = nn.functional.normalize(desc, dim=-1).mean(1)[labels]          # (6, 16)
    toward = toward / toward.norm(dim=-1, keepdim=True) * tokens.norm(dim=-1, keepdim=True)
    losses = [triplet_contrastive_loss(tokens + a * toward, labels, desc, 0.7).item()
              for a in (0.0, 0.5, 1.0, 2.0, 5.0)]
    assert all(x > y for x, y in zip(losses, losses[1:])), losses


# ----------------------------------------------------------------------------- ablations

def test_use_ame_false_text_straight_to_layers():
    model, batch = _model(2, use_ame=False), _batch(2)
    assert model.ame is None
    out = model(**batch)
    assert not any(key.startswith("anchor") for key in out.scores)
    assert set(out.losses) == {"cls", "ss"}
    h = model.layers(batch["text"], batch["text_mask"])
    t_s = model.ss_proj(pool(h, batch["text_mask"], "mean"))
    want = model.classifier(torch.cat([pool(h, batch["text_mask"], "cls"), t_s], -1))
    torch.testing.assert_close(out.logits, want)
    torch.testing.assert_close(out.losses["ss"], triplet_contrastive_loss(
        t_s, batch["labels"], model.label_desc, 0.7, model.label_ok))
    other = _batch(2, seed=4)
    no_streams = model(batch["text"], batch["text_mask"], labels=batch["labels"])
    moved = model(**{**batch, "streams": other["streams"]})
    for o in (no_streams, moved):
        torch.testing.assert_close(o.logits, out.logits)
        torch.testing.assert_close(o.loss, out.loss)


def test_use_ss_false_no_ss_term_classifier_on_z():
    model, batch = _model(2, use_ss=False), _batch(2)
    assert model.ss_proj is None and model.classifier[1].in_features == D
    assert not hasattr(model, "label_desc")
    out = model(**batch)
    assert set(out.losses) == {"cls"}
    torch.testing.assert_close(out.loss, out.losses["cls"])
    e_m = model.ame(batch["text"], batch["text_mask"], batch["streams"],
                    batch["stream_masks"]).embedding
    h = model.layers(e_m, batch["text_mask"])
    torch.testing.assert_close(out.logits, model.classifier(pool(h, batch["text_mask"], "cls")))
    assert "anchor_pos_video" in out.scores
    # A-ME still reads the streams
    moved = model(**{**batch, "streams": _batch(2, seed=4)["streams"]})
    assert not torch.allclose(moved.logits, out.logits)


def test_both_off_is_text_only():
    model, batch = _model(2, use_ame=False, use_ss=False), _batch(2)
    out = model(**batch)
    assert set(out.losses) == {"cls"} and out.scores == {}
    moved = model(**{**batch, "streams": _batch(2, seed=4)["streams"]})
    torch.testing.assert_close(moved.logits, out.logits)
    h = model.layers(batch["text"], batch["text_mask"])
    torch.testing.assert_close(out.logits, model.classifier(pool(h, batch["text_mask"], "cls")))


# ----------------------------------------------------------------------------- errors, config

def test_label_desc_errors_are_one_line():
    cfg = _cfg(2)
    cases = [torch.randn(C, M + 1, DS), torch.randn(C, M, DS + 1), torch.randn(C - 1, M, DS)]
    empty = _desc(); empty[1] = 0.0
    partly = _desc(); partly[2, 1] = float("nan")
    for bad, match in [(c, "label_desc must be") for c in cases] + [
            (empty, "label 1 has no description"), (partly, r"label 2 .* row\(s\) \[1\]")]:
        with pytest.raises(ValueError, match=match) as err:
            AMESS(cfg, TinyLayers(D), label_desc=bad)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="needs label_desc"):
        AMESS(cfg, TinyLayers(D))


def test_excluded_label_has_no_ss_term():
    desc = _desc(); desc[3] = 0.0                       # e.g. MIntRec2.0's UNKNOWN
    torch.manual_seed(0)
    model = AMESS(_cfg(2, ss_exclude_labels=(3,)), TinyLayers(D), label_desc=desc).eval()
    batch = _batch(2)
    out = model(**{**batch, "labels": torch.tensor([3, 3, 3])})
    assert out.losses["ss"].item() == 0.0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    out = model(**batch)                                # labels 0, 2, 3: sample 2 skipped
    h = model.layers(model.ame(batch["text"], batch["text_mask"], batch["streams"],
                               batch["stream_masks"]).embedding, batch["text_mask"])
    t_s = model.ss_proj(pool(h, batch["text_mask"], "mean"))
    want = _loop_loss(t_s.detach().double(), batch["labels"], desc.double().numpy(), 0.7, (3,))
    assert out.losses["ss"].item() == pytest.approx(want, rel=1e-5)


def test_config_frozen_never_mutated_and_validated():
    cfg = _cfg(3)
    before = dataclasses.asdict(cfg)
    model = AMESS(cfg, TinyLayers(D), label_desc=_desc()).train()
    model(**_batch(3)).loss.backward()
    assert dataclasses.asdict(cfg) == before and model.cfg is cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_anchors = 4
    defaults = AMESSConfig(num_labels=20)
    assert (defaults.num_anchors, defaults.text_len, defaults.text_dim,
            defaults.num_descriptions, defaults.temperature) == (8, 50, 1024, 3, 0.7)
    for bad in (dict(stream_dims=(5,)), dict(stream_names=("a", "a")), dict(num_streams=1,
                stream_dims=(5,), stream_names=("a",)), dict(pooling="max"),
                dict(ss_exclude_labels=(C,))):
        with pytest.raises(ValueError, match="AMESSConfig"):
            _cfg(2, **bad)
