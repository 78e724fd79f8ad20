"""LGSRR head: equations checked against an independent numpy computation, fusion forms,
ablation switches, the loss, and the fine-tuning wrapper."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mir_core.losses import aspect_relevance, neural_ndcg
from mir_core.models import CachedConfig, CachedLGSRR, LGSRR, LGSRRConfig, LGSRRHead


def _head(fusion="paper", **kw):
    torch.manual_seed(0)
    h = LGSRRHead(LGSRRConfig(num_labels=5, feat_dim=8, weight_hidden=6, dropout=0.0,
                              fusion=fusion, **kw))
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
    if fusion == "released":
        gamma = np.broadcast_to(gamma.mean(0, keepdims=True), gamma.shape)
    f_incons = (gamma[..., None] * (ft[:, None] - fm)).sum(1)  # Eq. 15
    if fusion == "paper":
        a = alpha[:, 1:, None]
        fused = np.concatenate([(a * ft[:, None]).sum(1) - f_incons,
                                (a * beta[..., None] * fm).sum(1)], -1)
    else:
        fused = alpha[:, :1] * ft + (alpha[:, 1:, None] * beta[..., None] * fm).sum(1) - f_incons
    W = head.classifier.weight.detach().numpy(); b = head.classifier.bias.detach().numpy()
    return fused @ W.T + b, alpha, beta, gamma


@pytest.mark.parametrize("fusion", ["paper", "released"])
def test_head_matches_numpy_equations(fusion):
    head = _head(fusion)
    feats = torch.randn(6, 4, 8, dtype=torch.float64)
    head = head.double()
    out = head(feats)
    logits, alpha, beta, gamma = _numpy_reference(head, feats, fusion)
    np.testing.assert_allclose(out["logits"].detach().numpy(), logits, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(out["alpha"].detach().numpy(), alpha, rtol=1e-6)
    np.testing.assert_allclose(out["beta"].detach().numpy(), beta, rtol=1e-6)
    np.testing.assert_allclose(out["gamma"].detach().numpy(), gamma, rtol=1e-6)


def test_released_gamma_is_batch_averaged_paper_is_per_sample():
    feats = torch.randn(5, 4, 8)
    g_paper = _head("paper")(feats)["gamma"]
    g_rel = _head("released")(feats)["gamma"]
    assert not torch.allclose(g_paper[0], g_paper[1])
    assert torch.allclose(g_rel[0], g_rel[1])
    assert torch.allclose(g_rel[0], g_paper.mean(0))


def test_fusion_output_sizes_and_sum():
    feats = torch.randn(3, 4, 8)
    assert _head("paper").classifier.in_features == 16
    assert _head("released").classifier.in_features == 8
    h = _head("sum")
    expected = h.classifier(feats[:, 0] + feats[:, 1:].sum(1))
    assert torch.allclose(h(feats)["logits"], expected, atol=1e-6)


def test_ablation_switches():
    feats = torch.randn(4, 4, 8)
    out = _head(use_importance=False)(feats, labels=torch.tensor([0, 1, 2, 3]),
                                      rank_order=torch.tensor([[2, 0, 1]] * 4))
    assert torch.allclose(out["alpha"], torch.full((4, 4), 0.25)) and "loss_rank" not in out
    assert torch.all(_head(use_complementarity=False)(feats)["beta"] == 1)
    assert torch.all(_head(use_inconsistency=False)(feats)["gamma"] == 0)
    assert "loss_rank" not in _head(rank_weight=0.0)(feats, torch.tensor([0, 1, 2, 3]),
                                                     torch.tensor([[2, 0, 1]] * 4))


def test_loss_is_ce_plus_lambda_rank_and_trains_alpha():
    head = _head(rank_weight=0.5)
    feats = torch.randn(8, 4, 8)
    labels = torch.randint(0, 5, (8,))
    ranks = torch.tensor([[2, 0, 1]] * 8)
    out = head(feats, labels, ranks)
    expected_rank = neural_ndcg(out["alpha"], aspect_relevance(ranks))
    assert torch.allclose(out["loss_rank"], expected_rank)
    assert torch.allclose(out["loss"], out["loss_cls"] + 0.5 * expected_rank)
    # the ranking loss alone lowers itself and puts the text on top (relevance 5)
    head = _head(rank_weight=1.0)
    opt = torch.optim.Adam(head.weight_net.parameters(), lr=0.05)
    first = float(head(feats, labels, ranks)["loss_rank"])
    for _ in range(60):
        loss = head(feats, labels, ranks)["loss_rank"]
        opt.zero_grad(); loss.backward(); opt.step()
    assert float(head(feats, labels, ranks)["loss_rank"]) < first
    alpha = head(feats)["alpha"].mean(0)
    assert int(alpha.argmax()) == 0


def test_cached_model_layer_mix_and_projection():
    m = CachedLGSRR(LGSRRConfig(num_labels=3, dropout=0.0),
                    CachedConfig(in_dim=8, num_layers=3, proj_dim=16, input_dropout=0.0))
    out = m(torch.randn(2, 4, 3, 8), labels=torch.tensor([0, 2]),
            rank_order=torch.tensor([[0, 1, 2], [2, 1, 0]]))
    out["loss"].backward()
    assert out["logits"].shape == (2, 3) and m.adapter.mix.logits.grad is not None


def test_finetune_wrapper_with_tiny_bert():
    from transformers import BertConfig, BertModel
    enc = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=32))
    model = LGSRR(LGSRRConfig(num_labels=4), enc, pooling="mean")
    ids = torch.randint(0, 50, (3, 7)); mask = torch.ones_like(ids)
    dids = torch.randint(0, 50, (3, 3, 9)); dmask = torch.ones_like(dids)
    out = model(ids, mask, dids, dmask, labels=torch.tensor([0, 1, 3]),
                rank_order=torch.tensor([[2, 0, 1]] * 3))
    out["loss"].backward()
    assert out["logits"].shape == (3, 4)
    assert enc.embeddings.word_embeddings.weight.grad is not None
