"""Tests for mir_core.losses (NeuralNDCG). These use independent oracles:
sklearn.metrics.ndcg_score, and an exact NDCG in plain Python built with sorted()."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

from mir_core.losses import aspect_relevance, neural_ndcg, neural_sort, sinkhorn

SMALL_T = 1e-3


def _separated_scores(gen, B, n):
    """Random continuous scores with no ties. Adjacent scores differ by at least 0.5,
    so NeuralSort at tau=1e-3 is hard to machine precision."""
    perm = torch.stack([torch.randperm(n, generator=gen) for _ in range(B)]).double()
    return perm + 0.5 * torch.rand(B, n, generator=gen, dtype=torch.float64)


def _exact_ndcg(scores, rel, k=None, powered=True):
    """Plain-python NDCG@k for one slate (lists). Returns 0 when IDCG == 0."""
    gain = (lambda r: 2.0 ** r - 1.0) if powered else (lambda r: float(r))
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    ideal = sorted(rel, reverse=True)
    kk = len(scores) if k is None else min(k, len(scores))
    dcg = sum(gain(rel[i]) / math.log2(p + 2) for p, i in enumerate(order[:kk]))
    idcg = sum(gain(r) / math.log2(p + 2) for p, r in enumerate(ideal[:kk]))
    return 0.0 if idcg == 0 else dcg / idcg


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [4, 7])
def test_small_temperature_matches_exact_ndcg(seed, n):
    gen = torch.Generator().manual_seed(seed)
    B = 16
    s = _separated_scores(gen, B, n)
    r = torch.randint(0, 6, (B, n), generator=gen).double()
    r[0] = 0.0  # one all-irrelevant slate: both oracles give NDCG 0 for it

    y_true = (2.0 ** r.numpy()) - 1.0
    for k in (None, 2):
        got = 1.0 - neural_ndcg(s, r, temperature=SMALL_T, k=k).item()
        want_sk = ndcg_score(y_true, s.numpy(), k=k)
        want_py = np.mean([_exact_ndcg(s[b].tolist(), r[b].tolist(), k=k) for b in range(B)])
        assert got == pytest.approx(want_sk, abs=1e-4)
        assert got == pytest.approx(want_py, abs=1e-4)

    # Linear gains against sklearn with y_true = r.
    got_lin = 1.0 - neural_ndcg(s, r, temperature=SMALL_T, powered_relevancies=False).item()
    assert got_lin == pytest.approx(ndcg_score(r.numpy(), s.numpy()), abs=1e-4)


def test_neural_sort_small_temperature_is_hard_permutation():
    gen = torch.Generator().manual_seed(3)
    s = _separated_scores(gen, 5, 6)
    P = neural_sort(s, temperature=SMALL_T)
    order = torch.argsort(s, dim=1, descending=True)  # (B, n): item at each rank
    hard = torch.zeros_like(P)
    hard.scatter_(2, order.unsqueeze(2), 1.0)  # hard[b, u, order[b, u]] = 1
    assert torch.allclose(P, hard, atol=1e-6)


def test_neural_sort_rows_are_distributions():
    s = torch.randn(4, 5, dtype=torch.float64)
    P = neural_sort(s, temperature=1.0)
    assert torch.allclose(P.sum(-1), torch.ones(4, 5, dtype=torch.float64))
    assert (P >= 0).all()


def test_sinkhorn_doubly_stochastic():
    torch.manual_seed(0)
    s = torch.randn(8, 6)
    P = sinkhorn(neural_sort(s, temperature=1.0))
    assert torch.allclose(P.sum(-1), torch.ones(8, 6), atol=1e-4)
    assert torch.allclose(P.sum(-2), torch.ones(8, 6), atol=1e-4)
    # A random positive matrix too.
    Q = sinkhorn(torch.rand(3, 5, 5) + 0.1)
    assert torch.allclose(Q.sum(-1), torch.ones(3, 5), atol=1e-4)
    assert torch.allclose(Q.sum(-2), torch.ones(3, 5), atol=1e-4)


def test_sinkhorn_masked_block():
    torch.manual_seed(1)
    mask = torch.tensor([[True, False, True, True, False]])
    P = sinkhorn(neural_sort(torch.randn(1, 5), mask=mask), mask=mask)
    m = 3
    assert torch.allclose(P[0, :m].sum(-1), torch.ones(m), atol=1e-4)  # real rows
    assert torch.allclose(P[0][:, mask[0]].sum(0), torch.ones(m), atol=1e-4)  # real cols
    assert P[0, m:].abs().sum() == 0  # padded rank positions
    assert P[0][:, ~mask[0]].abs().sum() == 0  # padded items get no mass


@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_finite_gradients(temperature):
    s = torch.tensor(
        [[0.3, 0.3, 0.3, -1.0], [1.0, 2.0, 2.0, 0.5], [0.1, -0.2, 0.7, 0.0]],
        requires_grad=True,
    )
    r = torch.tensor([[2.0, 1.0, 0.0, 3.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    for k in (None, 2):
        s.grad = None
        loss = neural_ndcg(s, r, temperature=temperature, k=k)
        assert torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(s.grad).all()
        assert s.grad.abs().sum() > 0


def test_batch_of_one_and_1d_input():
    s = torch.tensor([0.2, 1.5, -0.3, 0.9])
    r = torch.tensor([1.0, 3.0, 0.0, 2.0])
    l1 = neural_ndcg(s, r)
    l2 = neural_ndcg(s.unsqueeze(0), r.unsqueeze(0))
    assert l1.dim() == 0 and torch.isfinite(l1)
    assert torch.allclose(l1, l2)
    assert neural_sort(s).shape == (4, 4)
    # This is the perfect order, so the hard limit is NDCG 1.
    assert neural_ndcg(s, r, temperature=SMALL_T).item() == pytest.approx(0.0, abs=1e-5)


def test_masking_matches_unpadded():
    gen = torch.Generator().manual_seed(7)
    s0 = torch.randn(1, 4, generator=gen, dtype=torch.float64)
    r0 = torch.tensor([[3.0, 0.0, 1.0, 2.0]], dtype=torch.float64)
    s1 = torch.randn(1, 6, generator=gen, dtype=torch.float64)
    r1 = torch.tensor([[1.0, 0.0, 4.0, 2.0, 2.0, 5.0]], dtype=torch.float64)

    # Pad slate 0 to n=6 with garbage in scattered positions (1 and 4).
    s0p = torch.tensor([[s0[0, 0], 1e6, s0[0, 1], s0[0, 2], float("nan"), s0[0, 3]]],
                       dtype=torch.float64)
    r0p = torch.tensor([[r0[0, 0], 99.0, r0[0, 1], r0[0, 2], float("inf"), r0[0, 3]]],
                       dtype=torch.float64)
    m0 = torch.tensor([[True, False, True, True, False, True]])
    s_pad = torch.cat([s0p, s1]).requires_grad_(True)
    r_pad = torch.cat([r0p, r1])
    mask = torch.cat([m0, torch.ones(1, 6, dtype=torch.bool)])

    for temperature in (1.0, 0.1):
        for k in (None, 2):
            alone0 = neural_ndcg(s0, r0, temperature=temperature, k=k)
            alone1 = neural_ndcg(s1, r1, temperature=temperature, k=k)
            padded = neural_ndcg(s_pad, r_pad, temperature=temperature, k=k, mask=mask)
            assert padded.item() == pytest.approx(((alone0 + alone1) / 2).item(), abs=1e-10)
            # Padding alone does not change a single slate's loss either.
            only0 = neural_ndcg(s0p, r0p, temperature=temperature, k=k, mask=m0)
            assert only0.item() == pytest.approx(alone0.item(), abs=1e-10)

    s_pad.grad = None
    neural_ndcg(s_pad, r_pad, mask=mask).backward()
    assert torch.isfinite(s_pad.grad).all()
    assert (s_pad.grad[0, ~m0[0]] == 0).all()


def test_loss_prefers_correct_order_and_sgd_reduces_it():
    r = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    perfect = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    reversed_ = perfect.flip(1)
    for temperature in (1.0, 0.1):
        assert neural_ndcg(perfect, r, temperature) < neural_ndcg(reversed_, r, temperature)

    torch.manual_seed(0)
    rel = torch.randint(0, 4, (8, 6)).float()
    scores = torch.randn(8, 6, requires_grad=True)
    opt = torch.optim.SGD([scores], lr=1.0)
    start = neural_ndcg(scores, rel).item()
    for _ in range(20):
        opt.zero_grad()
        loss = neural_ndcg(scores, rel)
        loss.backward()
        opt.step()
    assert neural_ndcg(scores, rel).item() < start - 1e-3


def test_aspect_relevance():
    out = aspect_relevance(torch.tensor([[2, 0, 1]]))
    assert out.tolist() == [[5.0, 2.0, 1.0, 3.0]]
    out = aspect_relevance(torch.tensor([[0, 1, 2], [1, 2, 0]]))
    assert out.tolist() == [[5.0, 3.0, 2.0, 1.0], [5.0, 1.0, 3.0, 2.0]]
    assert aspect_relevance(torch.tensor([3, 1, 0, 2]), n_aspects=4).tolist() == [
        [5.0, 2.0, 3.0, 1.0, 4.0]
    ]


def test_aspect_relevance_rejects_non_permutation():
    with pytest.raises(ValueError, match="row 1"):
        aspect_relevance(torch.tensor([[0, 1, 2], [0, 0, 2]]))
    with pytest.raises(ValueError, match="row 0"):
        aspect_relevance(torch.tensor([[0, 1, 3]]))
    with pytest.raises(ValueError):
        aspect_relevance(torch.tensor([[0, 1]]))
