"""Tests for mir_core.losses (NeuralNDCG). These use independent oracles:
sklearn.metrics.ndcg_score, and an exact NDCG in plain Python built with sorted().
The fast fused ``neural_ndcg`` is also checked against the slow plain-autograd
reference ``losses._neural_ndcg_reference`` (loss and gradients to 1e-5)."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

from mir_core import losses
from mir_core.losses import (PAD_RELEVANCE, aspect_relevance, neural_ndcg, neural_sort,
                             sinkhorn)

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
    r[r.sum(1) == 0, 0] = 1.0  # every slate has IDCG > 0 here (zero-IDCG: see below)

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


@pytest.mark.parametrize("seed", [0, 1])
def test_zero_idcg_slates_are_left_out_of_the_mean(seed):
    """allRank / official LGSRR: the mean runs over the slates with IDCG > 0 only."""
    gen = torch.Generator().manual_seed(seed)
    B, n = 12, 5
    s = _separated_scores(gen, B, n)
    r = torch.randint(0, 4, (B, n), generator=gen).double()
    r[r.sum(1) == 0, 1] = 2.0
    zero = [0, 3, 4, 9]
    r[zero] = 0.0
    keep = [b for b in range(B) if b not in zero]

    y_true = (2.0 ** r.numpy()) - 1.0
    for k in (None, 3):
        got = 1.0 - neural_ndcg(s, r, temperature=SMALL_T, k=k).item()
        want_sk = ndcg_score(y_true[keep], s.numpy()[keep], k=k)  # oracle on the kept rows
        want_py = np.mean([_exact_ndcg(s[b].tolist(), r[b].tolist(), k=k) for b in keep])
        assert got == pytest.approx(want_sk, abs=1e-4)
        assert got == pytest.approx(want_py, abs=1e-4)
        # ... which is not the sklearn mean over all rows (zero rows counted as 0)
        assert abs(got - ndcg_score(y_true, s.numpy(), k=k)) > 1e-2

    # At tau = 1 too: the loss equals the loss of the kept slates alone, and the
    # zero-IDCG slates get no gradient.
    s1 = s.clone().requires_grad_(True)
    loss = neural_ndcg(s1, r)
    loss.backward()
    assert loss.item() == pytest.approx(neural_ndcg(s[keep], r[keep]).item(), abs=1e-12)
    assert (s1.grad[zero] == 0).all() and s1.grad[keep].abs().sum() > 0
    # A slate with no real item at all (everything padded) is a zero-IDCG slate too.
    mask = torch.ones(B, n, dtype=torch.bool)
    mask[zero] = False
    assert neural_ndcg(s, r, mask=mask).item() == pytest.approx(loss.item(), abs=1e-12)


@pytest.mark.parametrize("fn", [neural_ndcg, losses._neural_ndcg_reference])
def test_all_zero_idcg_gives_zero_loss_with_a_gradient(fn):
    s = torch.randn(6, 4, requires_grad=True)
    loss = fn(s.softmax(-1), torch.zeros(6, 4))
    assert loss.dim() == 0 and loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()  # works, and gives zeros
    assert s.grad is not None and torch.equal(s.grad, torch.zeros_like(s))
    # all items padded through the relevance (-1): also 0
    assert neural_ndcg(torch.randn(3, 4), torch.full((3, 4), PAD_RELEVANCE)).item() == 0.0


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


# --------------------------------------------------------------- fast path vs reference


def _loss_and_grad(fn, logits, r, **kw):
    """Loss and d loss / d logits, with alpha = softmax(logits) as in LGSRR."""
    x = logits.detach().clone().requires_grad_(True)
    loss = fn(x.softmax(-1), r, **kw)
    loss.backward()
    return loss.detach(), x.grad


def _random_case(gen, B, n, dtype, scale, masked):
    logits = torch.randn(B, n, generator=gen, dtype=dtype) * scale
    r = torch.randint(0, 4, (B, n), generator=gen).to(dtype)
    mask = None
    if masked:
        mask = torch.rand(B, n, generator=gen) > 0.3
        mask[0] = False  # an empty slate
        mask[1] = False
        mask[1, 2] = True  # a slate of one
        r = r.masked_fill(~mask, float("inf"))  # garbage in padded entries
    return logits, r, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.1, 0.01])
def test_fast_path_matches_reference(dtype, masked, temperature):
    """Loss and gradients of the fused path agree with the slow plain-autograd
    reference to 1e-5 (absolute), including saturated softmax inputs (scale 30:
    alpha nearly one-hot), masks, NDCG@k and linear gains."""
    gen = torch.Generator().manual_seed(11)
    for n in (4, 7):
        for scale in (0.3, 2.0, 30.0):
            for k, powered in ((None, True), (2, True), (None, False)):
                logits, r, mask = _random_case(gen, 32, n, dtype, scale, masked)
                kw = dict(temperature=temperature, k=k, powered_relevancies=powered, mask=mask)
                l_ref, g_ref = _loss_and_grad(losses._neural_ndcg_reference, logits, r, **kw)
                l_new, g_new = _loss_and_grad(neural_ndcg, logits, r, **kw)
                assert torch.isfinite(l_new) and torch.isfinite(g_new).all()
                assert abs(l_new.item() - l_ref.item()) <= 1e-5
                assert (g_new - g_ref).abs().max().item() <= 1e-5
                if mask is not None:  # padded scores get exactly zero gradient
                    x = logits.softmax(-1).requires_grad_(True)
                    neural_ndcg(x, r, **kw).backward()
                    assert (x.grad[~mask] == 0).all()


def test_fast_path_official_setting_matches_reference():
    """The official LGSRR setting (text 5, aspects 3/2/1, tau 1), B = 32, n = 4,
    from near-uniform to one-hot alpha."""
    gen = torch.Generator().manual_seed(5)
    order = torch.stack([torch.randperm(3, generator=gen) for _ in range(32)])
    for mode in ("official", "aspects"):
        rel = aspect_relevance(order, mode=mode)
        mask = rel != PAD_RELEVANCE
        for scale in (0.05, 1.0, 3.0, 10.0, 50.0):
            logits = torch.randn(32, 4, generator=gen) * scale
            l_ref, g_ref = _loss_and_grad(losses._neural_ndcg_reference, logits, rel, mask=mask)
            l_new, g_new = _loss_and_grad(neural_ndcg, logits, rel)
            assert abs(l_new.item() - l_ref.item()) <= 1e-5
            assert (g_new - g_ref).abs().max().item() <= 1e-5


def test_fast_path_is_used_and_falls_back_when_a_clamp_would_act(monkeypatch):
    calls = []
    plain = losses._neural_ndcg_plain

    def spy(*args, **kw):
        calls.append(1)
        return plain(*args, **kw)

    monkeypatch.setattr(losses, "_neural_ndcg_plain", spy)
    gen = torch.Generator().manual_seed(2)
    logits, r, mask = _random_case(gen, 8, 5, torch.float64, 2.0, True)
    neural_ndcg(logits.softmax(-1), r, mask=mask)
    assert calls == []  # the fused path handled it
    # Column sums below _EPS in the first column step: the plain path's clamp acts,
    # which the fused path does not model, so it hands over to the plain path.
    monkeypatch.setattr(losses, "_EPS", 10.0)
    got = _loss_and_grad(neural_ndcg, logits, r, mask=mask)
    assert calls == [1]
    want = _loss_and_grad(losses._neural_ndcg_reference, logits, r, mask=mask)
    assert torch.allclose(got[0], want[0], atol=1e-12)
    assert torch.allclose(got[1], want[1], atol=1e-12)
    # Relevance that needs a gradient goes through the plain path too.
    monkeypatch.setattr(losses, "_EPS", 1e-10)
    calls.clear()
    rr = r.masked_fill(~mask, 0.0).requires_grad_(True)
    neural_ndcg(logits.softmax(-1), rr, mask=mask).backward()
    assert calls == [1] and torch.isfinite(rr.grad).all()


def test_result_does_not_depend_on_the_check_interval(monkeypatch):
    """The batch-wide early exit is only asked every _CHECK_EVERY rounds; each slate
    still stops at its own first converged round, so nothing changes (bit for bit)."""
    gen = torch.Generator().manual_seed(4)
    logits, r, mask = _random_case(gen, 32, 5, torch.float32, 3.0, True)
    r_full = r.masked_fill(~mask, 1.0)
    P = neural_sort(logits.softmax(-1), temperature=0.1, mask=mask)
    results = []
    for every in (1, 3, 4, 50):
        monkeypatch.setattr(losses, "_CHECK_EVERY", every)
        for m, rr in ((None, r_full), (mask, r)):
            for tau in (1.0, 0.1):
                res = _loss_and_grad(neural_ndcg, logits, rr, temperature=tau, mask=m)
                assert torch.isfinite(res[0])
                results.append((every, m is None, tau, res))
        results.append((every, "sinkhorn", 0, (sinkhorn(P, mask=mask), P)))
    for every, key, tau, (a, b) in results:
        ref = next(res for res in results if res[1:3] == (key, tau))[3]
        assert torch.equal(a, ref[0]) and torch.equal(b, ref[1]), (every, key, tau)
    # the plain Sinkhorn with per-round checks is the same too
    assert torch.equal(sinkhorn(P, mask=mask), losses._sinkhorn_plain(P, mask, 50, 1e-6, 1))


@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_masked_gradients_are_finite_in_float32(temperature):
    """Padded rows/columns used to be divided by the 1e-10 clamp every Sinkhorn round,
    which overflowed their gradient to inf and gave NaN gradients in float32."""
    torch.manual_seed(0)
    order = torch.stack([torch.randperm(3) for _ in range(16)])
    rel = aspect_relevance(order, mode="aspects")
    for fn, kw in ((neural_ndcg, {}), (losses._neural_ndcg_reference, {"mask": rel >= 0})):
        loss, grad = _loss_and_grad(fn, torch.randn(16, 4) * 3, rel, temperature=temperature, **kw)
        assert torch.isfinite(loss) and torch.isfinite(grad).all() and grad.abs().sum() > 0
    P = neural_sort(torch.rand(16, 4, requires_grad=True), mask=rel >= 0)
    sinkhorn(P, mask=rel >= 0, n_iter=50).sum().backward()  # runs through finite grads


# --------------------------------------------------------------- the "aspects" relevance


def test_aspect_relevance_aspects_mode():
    ro = torch.tensor([[2, 0, 1], [0, 1, 2]])
    out = aspect_relevance(ro, mode="aspects")
    assert out.tolist() == [[-1.0, 2.0, 1.0, 3.0], [-1.0, 3.0, 2.0, 1.0]]
    assert aspect_relevance(ro, mode="official").tolist() == aspect_relevance(ro).tolist()
    assert aspect_relevance(ro, mode="official")[:, 1:].tolist() == out[:, 1:].tolist()
    with pytest.raises(ValueError, match="mode"):
        aspect_relevance(ro, mode="text")


def test_aspects_mode_ranks_only_the_aspects():
    """With mode="aspects" the text column is padding: the loss is NeuralNDCG over the
    three aspects alone, and the text score gets no gradient from it."""
    gen = torch.Generator().manual_seed(8)
    B = 16
    order = torch.stack([torch.randperm(3, generator=gen) for _ in range(B)])
    rel = aspect_relevance(order, mode="aspects")
    logits = torch.randn(B, 4, generator=gen, dtype=torch.float64) * 2
    alpha = logits.softmax(-1)

    for tau in (1.0, 0.1):
        a = alpha.clone().requires_grad_(True)
        loss = neural_ndcg(a, rel, temperature=tau)  # -1 read as padding
        loss.backward()
        a3 = alpha[:, 1:].clone().requires_grad_(True)
        loss3 = neural_ndcg(a3, rel[:, 1:], temperature=tau)  # the aspects alone
        loss3.backward()
        assert loss.item() == pytest.approx(loss3.item(), abs=1e-12)
        assert torch.allclose(a.grad[:, 1:], a3.grad, atol=1e-12)
        assert (a.grad[:, 0] == 0).all()
        # same as an explicit mask, and as the reference with that mask
        mask = torch.ones(B, 4, dtype=torch.bool)
        mask[:, 0] = False
        explicit = neural_ndcg(alpha, rel.clamp_min(0), temperature=tau, mask=mask,
                               pad_value=None)
        assert explicit.item() == pytest.approx(loss.item(), abs=1e-12)
        ref = losses._neural_ndcg_reference(alpha, rel, temperature=tau, mask=mask)
        assert ref.item() == pytest.approx(loss.item(), abs=1e-10)

    # Independent oracle in the hard limit: exact NDCG over the aspects only.
    s = _separated_scores(gen, B, 4)
    got = 1.0 - neural_ndcg(s, rel, temperature=SMALL_T).item()
    want = np.mean([_exact_ndcg(s[b, 1:].tolist(), rel[b, 1:].tolist()) for b in range(B)])
    assert got == pytest.approx(want, abs=1e-4)
    # The text score does not matter at all: scaling it changes nothing.
    s2 = s.clone()
    s2[:, 0] = s2[:, 0] * 100.0 - 7.0
    assert neural_ndcg(s2, rel, temperature=SMALL_T).item() == pytest.approx(1.0 - got, abs=1e-12)


def test_neural_ndcg_runs_in_float32_under_bf16_autocast():
    """Under bf16 autocast the loss (and its Sinkhorn products) stays float32: the same value
    and gradient as outside autocast, from bf16 or float32 scores."""
    torch.manual_seed(0)
    s = torch.randn(8, 4, requires_grad=True)
    r = torch.randint(0, 4, (8, 4)).float()
    ref = neural_ndcg(s, r)
    (g_ref,) = torch.autograd.grad(ref, s)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = neural_ndcg(s, r)
        low = neural_ndcg(s.bfloat16(), r)
    assert loss.dtype == torch.float32 and low.dtype == torch.float32
    (g,) = torch.autograd.grad(loss, s)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(g, g_ref)
    assert abs(float(low) - float(ref)) < 1e-2          # only the scores' bf16 rounding
