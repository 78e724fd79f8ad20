"""LGSRR head: equations checked against an independent numpy computation, fusion forms,
ablation switches, the loss, and the fine-tuning wrapper."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mir_core.losses import aspect_relevance, neural_ndcg
from mir_core.models import (FullEncoder, LGSRRConfig, LGSRRHead, LGSRROptions,
                             PooledFeatures, TextOnly, TopLayers, get_method)


SWITCHES = ("use_importance", "use_complementarity", "use_inconsistency", "relevance",
            "aspects")


def _head(fusion="eq12", **kw):
    torch.manual_seed(0)
    opts = LGSRROptions(fusion=fusion, **{k: kw.pop(k) for k in list(kw) if k in SWITCHES})
    h = LGSRRHead(LGSRRConfig(num_labels=5, feat_dim=8, weight_hidden=6, weight_dropout=0.0,
                              options=opts, **kw))
    return h.eval()


def _numpy_reference(head, feats, fusion):
    """Eq. 7-16 written again in numpy from the paper, for comparison."""
    F = feats.numpy().astype(np.float64)
    W1 = head.weight_net[0].weight.detach().numpy(); b1 = head.weight_net[0].bias.detach().numpy()
    W2 = head.weight_net[3].weight.detach().numpy(); b2 = head.weight_net[3].bias.detach().numpy()
    h = np.maximum(F @ W1.T + b1, 0)                          # Eq. 7
    s = (h @ W2.T + b2)[..., 0]
    alpha = np.exp(s - s.max(1, keepdims=True)); alpha /= alpha.sum(1, keepdims=True)  # Eq. 8
    ft, fm = F[:, 0], F[:, 1:]
    beta = (fm @ ft[:, :, None])[..., 0] / (np.linalg.norm(fm, axis=-1) * np.linalg.norm(ft, axis=-1)[:, None])
    gamma = ((ft[:, None] - fm) ** 2).mean(-1)               # Eq. 14
    if fusion == "official":
        gamma = np.broadcast_to(gamma.mean(0, keepdims=True), gamma.shape)
    f_incons = (gamma[..., None] * (ft[:, None] - fm)).sum(1)  # Eq. 15
    if fusion == "eq12":
        a = alpha[:, 1:, None]
        fused = np.concatenate([(a * ft[:, None]).sum(1) - f_incons,
                                (a * beta[..., None] * fm).sum(1)], -1)
    else:
        fused = alpha[:, :1] * ft + (alpha[:, 1:, None] * beta[..., None] * fm).sum(1) - f_incons
    W = head.classifier.weight.detach().numpy(); b = head.classifier.bias.detach().numpy()
    return fused @ W.T + b, alpha, beta, gamma


@pytest.mark.parametrize("fusion", ["eq12", "official"])
def test_head_matches_numpy_equations(fusion):
    head = _head(fusion)
    feats = torch.randn(6, 4, 8, dtype=torch.float64)
    head = head.double()
    out = head(feats)
    logits, alpha, beta, gamma = _numpy_reference(head, feats, fusion)
    np.testing.assert_allclose(out.logits.detach().numpy(), logits, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(out.scores["alpha"].detach().numpy(), alpha, rtol=1e-6)
    np.testing.assert_allclose(out.scores["beta"].detach().numpy(), beta, rtol=1e-6)
    np.testing.assert_allclose(out.scores["gamma"].detach().numpy(), gamma, rtol=1e-6)


def test_official_gamma_is_batch_averaged_eq12_is_per_sample():
    feats = torch.randn(5, 4, 8)
    g_paper = _head("eq12")(feats).scores["gamma"]
    g_rel = _head("official")(feats).scores["gamma"]
    assert not torch.allclose(g_paper[0], g_paper[1])
    assert torch.allclose(g_rel[0], g_rel[1])
    assert torch.allclose(g_rel[0], g_paper.mean(0))


def test_fusion_output_sizes_and_sum():
    feats = torch.randn(3, 4, 8)
    assert _head("eq12").classifier.in_features == 16
    assert _head("official").classifier.in_features == 8
    h = _head("sum")
    expected = h.classifier(feats[:, 0] + feats[:, 1:].sum(1))
    assert torch.allclose(h(feats).logits, expected, atol=1e-6)


def _relu(x):
    return np.maximum(x, 0)


def _lin(layer, x):
    return x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()


@pytest.mark.parametrize("fusion", ["sum", "and", "not", "combination"])
def test_classic_relations_match_numpy(fusion):
    """Table 5 (Sec. 4.6): Or = sum, And = Hadamard product, Not = pairwise differences
    concatenated + Linear/ReLU, Combination = the three concatenated + Linear/ReLU."""
    head = _head(fusion).double()
    feats = torch.randn(5, 4, 8, dtype=torch.float64)
    F = feats.numpy()
    f_or, f_and = F.sum(1), F[:, 0] * F[:, 1] * F[:, 2] * F[:, 3]
    fused = {"sum": f_or, "and": f_and}.get(fusion)
    if fusion in ("not", "combination"):
        pairs = [F[:, i] - F[:, j] for i in range(4) for j in range(i + 1, 4)]   # 6 pairs
        f_not = _relu(_lin(head.not_net[0], np.concatenate(pairs, -1)))
        fused = f_not if fusion == "not" else _relu(
            _lin(head.comb_net[0], np.concatenate([f_or, f_and, f_not], -1)))
    out = head(feats, labels=torch.tensor([0, 1, 2, 3, 4]), rank_order=torch.tensor([[2, 0, 1]] * 5))
    np.testing.assert_allclose(out.logits.detach().numpy(), _lin(head.classifier, fused), rtol=1e-6)
    assert out.scores == {} and set(out.losses) == {"cls"}     # no alpha, no L_rank


def test_aspect_subsets_drop_exactly_those_sources():
    feats = torch.randn(4, 4, 8)
    ranks = torch.tensor([[2, 0, 1]] * 4)                     # I first, then A, then E
    head = _head("official", aspects="AI")
    changed = feats.clone()
    changed[:, 2] += 5.0                                      # E is not used
    assert torch.allclose(head(feats).logits, head(changed).logits)
    changed = feats.clone()
    changed[:, 3] += 5.0                                      # I is used
    assert not torch.allclose(head(feats).logits, head(changed).logits)
    out = head(feats, labels=torch.tensor([0, 1, 2, 3]), rank_order=ranks)
    alpha = out.scores["alpha"]
    assert torch.all(alpha[:, 2] == 0) and torch.allclose(alpha.sum(1), torch.ones(4))
    assert torch.isnan(out.scores["beta"][:, 1]).all() and not torch.isnan(out.scores["beta"][:, [0, 2]]).any()
    # the rank target keeps the LLM's relative order of the kept aspects: T=5, I=3, A=2
    kept_alpha = alpha[:, [0, 1, 3]]
    expected = neural_ndcg(kept_alpha, torch.tensor([[5.0, 2.0, 3.0]] * 4))
    assert torch.allclose(out.losses["rank"], expected)
    # the full set is the default model exactly
    assert torch.allclose(_head("official", aspects="AEI")(feats).logits, _head("official")(feats).logits)
    with pytest.raises(ValueError, match="aspects"):
        LGSRROptions(aspects="AX").validate()
    with pytest.raises(ValueError, match="aspects"):
        LGSRROptions(aspects="").validate()


def test_ablation_switches():
    feats = torch.randn(4, 4, 8)
    out = _head(use_importance=False)(feats, labels=torch.tensor([0, 1, 2, 3]),
                                      rank_order=torch.tensor([[2, 0, 1]] * 4))
    assert torch.allclose(out.scores["alpha"], torch.full((4, 4), 0.25))
    assert "rank" not in out.losses
    assert torch.all(_head(use_complementarity=False)(feats).scores["beta"] == 1)
    assert torch.all(_head(use_inconsistency=False)(feats).scores["gamma"] == 0)
    assert "rank" not in _head(rank_weight=0.0)(feats, torch.tensor([0, 1, 2, 3]),
                                                torch.tensor([[2, 0, 1]] * 4)).losses


def test_loss_is_ce_plus_lambda_rank_and_trains_alpha():
    head = _head(rank_weight=0.5)
    feats = torch.randn(8, 4, 8)
    labels = torch.randint(0, 5, (8,))
    ranks = torch.tensor([[2, 0, 1]] * 8)
    out = head(feats, labels, ranks)
    expected_rank = neural_ndcg(out.scores["alpha"], aspect_relevance(ranks))
    assert torch.allclose(out.losses["rank"], expected_rank)
    assert torch.allclose(out.loss, out.losses["cls"] + 0.5 * expected_rank)
    # the ranking loss alone lowers itself and puts the text on top (relevance 5)
    head = _head(rank_weight=1.0)
    opt = torch.optim.Adam(head.weight_net.parameters(), lr=0.05)
    first = float(head(feats, labels, ranks).losses["rank"])
    for _ in range(60):
        loss = head(feats, labels, ranks).losses["rank"]
        opt.zero_grad(); loss.backward(); opt.step()
    assert float(head(feats, labels, ranks).losses["rank"]) < first
    alpha = head(feats).scores["alpha"].mean(0)
    assert int(alpha.argmax()) == 0


def _build(method, encoder, **options):
    from mir_core.models import BuildContext
    from mir_core.training import preset
    m = get_method(method)
    cfg = preset("MIntRec2.0", "cpu", weight_hidden=8)
    return m.build(BuildContext(num_labels=3, train_config=cfg, encoder=encoder,
                                options=m.make_options(options)))


def test_cached_model_layer_mix_and_projection():
    m = _build("lgsrr", PooledFeatures(8, num_layers=3, proj_dim=16, input_dropout=0.0))
    out = m(feats=torch.randn(2, 4, 3, 8), labels=torch.tensor([0, 2]),
            rank_order=torch.tensor([[0, 1, 2], [2, 1, 0]]))
    out.loss.backward()
    assert out.logits.shape == (2, 3) and m.encoder.mix.logits.grad is not None
    assert set(out.losses) == {"cls", "rank"}


def _tiny_bert(layers=2):
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers,
                                num_attention_heads=2, intermediate_size=32)).eval()


def test_finetune_wrapper_with_tiny_bert():
    enc = _tiny_bert(1)
    model = _build("lgsrr", FullEncoder(enc, pooling="mean"))
    ids = torch.randint(0, 50, (3, 4, 9)); mask = torch.ones_like(ids, dtype=torch.bool)
    mask[:, 0, 6:] = False
    out = model(ids=ids, mask=mask, labels=torch.tensor([0, 1, 2]),
                rank_order=torch.tensor([[2, 0, 1]] * 3))
    out.loss.backward()
    assert out.logits.shape == (3, 3)
    assert enc.embeddings.word_embeddings.weight.grad is not None


@pytest.mark.parametrize("pooling", ["mean", "cls", "mean_unmasked"])
def test_top_layers_equal_the_full_encoder(pooling):
    """Partial fine-tuning: the cached hidden states after layer L-1 through the copied top
    layer give the same pooled features as the whole encoder (padding trimmed or not)."""
    enc = _tiny_bert(2)
    ids = torch.randint(1, 50, (3, 2, 7)); mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, :, 4:] = False; mask[1, 1, 5:] = False
    full = FullEncoder(enc, pooling)
    with torch.no_grad():
        want = full(ids, mask)                                        # (3, 2, 16)
        hidden = torch.stack([enc(input_ids=ids[:, s], attention_mask=mask[:, s].long(),
                                  output_hidden_states=True).hidden_states[-2]
                              for s in range(2)], 1)                  # (3, 2, 7, 16)
        top = TopLayers.from_encoder(enc, 1, pooling).eval()
        got = top(hidden, mask)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in top.parameters()) < sum(p.numel() for p in enc.parameters())


def test_text_only_reads_source_zero_and_registry_names_errors():
    enc = PooledFeatures(8)
    m = _build("text", enc)
    assert isinstance(m, TextOnly)
    feats = torch.randn(2, 1, 1, 8)
    assert m(feats=feats).logits.shape == (2, 3)
    with pytest.raises(ValueError, match="no option"):
        get_method("text").make_options({"fusion": "eq12"})
    with pytest.raises(ValueError, match="fusion must be one of"):
        get_method("lgsrr").make_options({"fusion": "paper"})
    with pytest.raises(KeyError, match="unknown method"):
        get_method("nope")


def test_build_does_not_mutate_the_callers_config():
    from mir_core.training import preset
    cfg = preset("MIntRec2.0", "cpu")
    before = repr(cfg)
    _build("lgsrr", PooledFeatures(8, proj_dim=16))
    assert repr(cfg) == before


@pytest.mark.parametrize("fusion", ["official", "eq12"])
def test_relation_scores_stay_float32_under_bf16_autocast(fusion):
    """Under bf16 autocast (precision bf16) alpha, beta and gamma are float32: alpha sums to
    1 to float32 precision and is close to the fp32 head's."""
    head = _head(fusion)
    feats = torch.randn(16, 4, 8)
    with torch.no_grad():
        ref = head(feats)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = head(feats)
    for k in ("alpha", "beta", "gamma"):
        assert out.scores[k].dtype == torch.float32, k
    np.testing.assert_allclose(out.scores["alpha"].sum(-1).numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(out.scores["alpha"].numpy(), ref.scores["alpha"].numpy(), atol=2e-2)
    np.testing.assert_allclose(out.scores["beta"].numpy(), ref.scores["beta"].numpy(), atol=1e-6)
