"""Ranking losses: NeuralNDCG with NeuralSort + Sinkhorn, plus an LGSRR helper.

NeuralNDCG (Pobrotyn & Białobrzeski, 2021, "NeuralNDCG: Direct Optimisation of a
Ranking Metric via Differentiable Relaxation of Sorting") replaces the hard sort
inside NDCG with NeuralSort (Grover et al., 2019, "Stochastic Optimization of
Sorting Networks via Continuous Relaxations"), a relaxed permutation matrix.
Sinkhorn scaling then makes that matrix (approximately) doubly stochastic.
LGSRR (Appendix E, Eqs. 19-21) trains its importance-weight network with this loss.

Written from the papers; this is not allRank's code.

Conventions
-----------
* ``scores`` and ``relevance`` are float tensors of shape (B, n). A 1-D (n,)
  input is treated as a batch of 1.
* ``mask`` is a bool tensor (B, n); True marks a real item and False a padded
  one. Real items do not have to come first in a row. If row b has m_b real
  items, its first m_b rank positions are the real ones. A padded item gets no
  probability mass in any rank position, and its score or relevance (even
  inf/NaN) changes nothing. Rows of P_hat for rank positions m_b+1..n are all
  zeros.
* Rank positions run in descending order: position 1 is the top.
* Zero ideal DCG: a slate whose real items all have relevance 0 gets NDCG 0
  and still counts in the batch mean. That slate adds a constant 1/B to the
  loss and no gradient. ``sklearn.metrics.ndcg_score`` and allRank do the same.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["neural_sort", "sinkhorn", "neural_ndcg", "aspect_relevance"]

_EPS = 1e-10


def _prepare(
    x: Tensor, mask: Optional[Tensor]
) -> Tuple[Tensor, Tensor, bool]:
    """Promote (n,) -> (1, n); build/validate the bool mask (B, n).

    Returns (x (B, n), mask (B, n) bool, was_1d).
    """
    was_1d = x.dim() == 1
    if was_1d:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"expected a (B, n) or (n,) tensor, got shape {tuple(x.shape)}")
    if mask is None:
        mask = torch.ones_like(x, dtype=torch.bool)
    else:
        mask = torch.as_tensor(mask, device=x.device)
        if mask.dim() == 1:
            mask = mask.unsqueeze(0)
        if mask.shape != x.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != input shape {tuple(x.shape)}")
        mask = mask.to(torch.bool)
    return x, mask, was_1d


def neural_sort(
    scores: Tensor, temperature: float = 1.0, mask: Optional[Tensor] = None
) -> Tensor:
    """NeuralSort relaxed permutation matrix P_hat (descending order).

    Args:
        scores: (B, n) or (n,) real-valued scores s.
        temperature: tau > 0; as tau -> 0 the result becomes the hard
            permutation matrix of ``argsort(scores, descending=True)``.
        mask: optional (B, n) bool, True = real item.

    Returns:
        P_hat: (B, n, n) (or (n, n) for 1-D input). Row u is a distribution over
        items for rank position u. Each real row is softmax-normalised over the
        real items only. Rows for positions u > m_b, and columns of padded
        items, are 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s, mask, was_1d = _prepare(scores, mask)
    B, n = s.shape
    # Zero out the padded scores so that inf/NaN garbage cannot leak in.
    # torch.where passes no gradient to the branch it does not select.
    s = torch.where(mask, s, torch.zeros_like(s))  # (B, n)
    maskf = mask.to(s.dtype)  # (B, n)
    m = maskf.sum(dim=1)  # (B,)  number of real items m_b

    # Eq. 20: A_s[u, v] = |s_u - s_v|, summed over the real items only:
    # (A_s 1)_v = sum_w |s_v - s_w| * mask_w.
    A = (s.unsqueeze(2) - s.unsqueeze(1)).abs()  # (B, n, n)
    A_one = (A * maskf.unsqueeze(1)).sum(dim=2)  # (B, n)

    # Eq. 20: P_max[u, :] = ((m + 1 - 2u) s - A_s 1), u = 1..m (m per row).
    u = torch.arange(1, n + 1, device=s.device, dtype=s.dtype)  # (n,)
    coef = m.unsqueeze(1) + 1.0 - 2.0 * u.unsqueeze(0)  # (B, n): rows u
    logits = (coef.unsqueeze(2) * s.unsqueeze(1) - A_one.unsqueeze(1)) / temperature  # (B, n, n)

    # Padded items (columns) get no probability mass.
    col_mask = mask.unsqueeze(1)  # (B, 1, n)
    logits = logits.masked_fill(~col_mask, float("-inf"))
    # A slate with no real item at all would give all -inf rows, so set those to 0.
    empty = ~mask.any(dim=1)  # (B,)
    logits = logits.masked_fill(empty.view(B, 1, 1), 0.0)

    # Eq. 21: P_hat[u, :] = softmax(P_max[u, :]) (row-wise).
    P_hat = torch.softmax(logits, dim=-1)  # (B, n, n)

    # Rank position u is real iff u <= m_b. Zero the padded rows and columns.
    row_mask = u.unsqueeze(0) <= m.unsqueeze(1)  # (B, n)
    valid = (row_mask.unsqueeze(2) & col_mask).to(P_hat.dtype)  # (B, n, n)
    P_hat = P_hat * valid
    return P_hat.squeeze(0) if was_1d else P_hat


def sinkhorn(
    P: Tensor, mask: Optional[Tensor] = None, n_iter: int = 50, tol: float = 1e-6
) -> Tensor:
    """Sinkhorn scaling: alternately normalise the rows and columns of P.

    Args:
        P: (B, n, n) or (n, n), non-negative (e.g. the output of ``neural_sort``).
        mask: optional (B, n) bool, True = real item. Row b works on its leading
            m_b x m_b block of rank positions and the real item columns. Padded
            rows and columns are held at 0.
        n_iter: maximum number of (row, column) normalisation rounds.
        tol: a slate stops (is frozen) once each of its real row sums is within
            ``tol`` of 1. Each round ends with the column step, so column sums
            are 1 then.

    Returns:
        The same shape as P, approximately doubly stochastic on the real block.
    """
    was_2d = P.dim() == 2
    if was_2d:
        P = P.unsqueeze(0)
    if P.dim() != 3 or P.shape[1] != P.shape[2]:
        raise ValueError(f"expected (B, n, n) or (n, n), got shape {tuple(P.shape)}")
    B, n, _ = P.shape
    if mask is None:
        mask = torch.ones(B, n, dtype=torch.bool, device=P.device)
    else:
        mask = torch.as_tensor(mask, device=P.device)
        if mask.dim() == 1:
            mask = mask.unsqueeze(0)
        mask = mask.to(torch.bool)
        if mask.shape != (B, n):
            raise ValueError(f"mask shape {tuple(mask.shape)} != {(B, n)}")
    m = mask.sum(dim=1)  # (B,)
    pos = torch.arange(n, device=P.device)
    row_mask = pos.unsqueeze(0) < m.unsqueeze(1)  # (B, n): real rank positions
    valid = (row_mask.unsqueeze(2) & mask.unsqueeze(1)).to(P.dtype)  # (B, n, n)

    P = P * valid
    # Convergence is tracked per slate. A converged slate is frozen, so its result
    # does not depend on the other slates in the batch.
    active = torch.ones(B, dtype=torch.bool, device=P.device)  # (B,)
    for _ in range(n_iter):
        Q = P / P.sum(dim=2, keepdim=True).clamp_min(_EPS)  # rows sum to 1
        Q = Q / Q.sum(dim=1, keepdim=True).clamp_min(_EPS)  # columns sum to 1
        P = torch.where(active.view(B, 1, 1), Q, P)
        with torch.no_grad():
            row_err = ((P.sum(dim=2) - 1.0).abs() * row_mask).amax(dim=1)  # (B,)
            active = active & (row_err >= tol)
        if not bool(active.any()):
            break
    return P.squeeze(0) if was_2d else P


def _gains(relevance: Tensor, powered_relevancies: bool) -> Tensor:
    # Exponential gain 2^r - 1 (the NeuralNDCG paper and allRank), or linear gain r.
    return torch.pow(2.0, relevance) - 1.0 if powered_relevancies else relevance


def neural_ndcg(
    scores: Tensor,
    relevance: Tensor,
    temperature: float = 1.0,
    powered_relevancies: bool = True,
    k: Optional[int] = None,
    mask: Optional[Tensor] = None,
    sinkhorn_iters: int = 50,
) -> Tensor:
    """NeuralNDCG loss: ``1 - mean_b NeuralNDCG@k``. Returns a scalar tensor.

    Args:
        scores: (B, n) or (n,) predicted scores (higher = ranked earlier).
        relevance: same shape, graded ground-truth relevance, >= 0 on real items.
        temperature: NeuralSort tau. As tau -> 0 the loss becomes 1 - exact NDCG.
        powered_relevancies: gain 2^r - 1 if True, else r.
        k: truncate DCG and ideal DCG at the top k positions (NDCG@k). None = all.
        mask: optional (B, n) bool, True = real item (see module docstring).
        sinkhorn_iters: maximum number of Sinkhorn rounds.

    A slate with ideal DCG 0 (all real relevance 0) gets NDCG 0 and stays in the mean.
    """
    s, mask, _ = _prepare(scores, mask)
    r = relevance.unsqueeze(0) if relevance.dim() == 1 else relevance
    if r.shape != s.shape:
        raise ValueError(f"relevance shape {tuple(r.shape)} != scores shape {tuple(s.shape)}")
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1 or None, got {k}")
    r = r.to(device=s.device, dtype=s.dtype)
    r = torch.where(mask, r, torch.zeros_like(r))  # drop the padded garbage
    B, n = s.shape

    # Soft permutation: NeuralSort (Eqs. 20-21), then Sinkhorn scaling.
    P_hat = neural_sort(s, temperature=temperature, mask=mask)  # (B, n, n)
    P_hat = sinkhorn(P_hat, mask=mask, n_iter=sinkhorn_iters)  # (B, n, n)

    # Gains g(r) on the real items, 0 on the padded ones.
    g = torch.where(mask, _gains(r, powered_relevancies), torch.zeros_like(r))  # (B, n)

    # Soft-sorted gains: expected gain at each rank position, (P_hat g)_j.
    sorted_g = torch.bmm(P_hat, g.unsqueeze(2)).squeeze(2)  # (B, n)

    # Discount 1 / log2(j + 1) for positions j = 1..n, zero beyond k.
    j = torch.arange(1, n + 1, device=s.device, dtype=s.dtype)  # (n,)
    disc = 1.0 / torch.log2(j + 1.0)  # (n,)
    if k is not None:
        disc = disc * (j <= k).to(s.dtype)

    # Eq. 19: NeuralNDCG = sum_j disc_j (P_hat g)_j / IDCG.
    dcg = (sorted_g * disc.unsqueeze(0)).sum(dim=1)  # (B,)
    # Ideal DCG. The gain is monotone in r and the padded gains are 0 (<= any real
    # gain since r >= 0), so sorting the gains puts the real items first in
    # relevance order.
    ideal_g, _ = torch.sort(g, dim=1, descending=True)  # (B, n)
    idcg = (ideal_g * disc.unsqueeze(0)).sum(dim=1)  # (B,)

    has_rel = idcg > 0  # (B,)
    ndcg = torch.where(
        has_rel, dcg / torch.where(has_rel, idcg, torch.ones_like(idcg)), torch.zeros_like(dcg)
    )  # (B,)  zero-IDCG slates -> NDCG 0
    return 1.0 - ndcg.mean()


def aspect_relevance(
    rank_order: Tensor, n_aspects: int = 3, text_relevance: float = 5.0
) -> Tensor:
    """Relevance labels for LGSRR's sources [text, aspect_0, ..., aspect_{m-1}].

    Args:
        rank_order: LongTensor (B, m) or (m,) with m = n_aspects. Each row lists
            aspect indices from most to least important, e.g. [2, 0, 1] means
            aspect 2 is ranked 1st.
        n_aspects: m.
        text_relevance: relevance of the text source (always ranked first).

    Returns:
        Float tensor (B, 1 + m): column 0 is ``text_relevance``. The aspect
        ranked i-th (i = 1..m) gets relevance m + 1 - i, so m, m-1, ..., 1.
        Example: [[2, 0, 1]] -> [[5, 2, 1, 3]].

    Raises:
        ValueError: the shape is wrong, or a row is not a permutation of 0..m-1
            (the message names that row).
    """
    ro = torch.as_tensor(rank_order)
    if ro.dim() == 1:
        ro = ro.unsqueeze(0)
    if ro.dim() != 2 or ro.shape[1] != n_aspects:
        raise ValueError(
            f"rank_order must have shape (B, {n_aspects}) or ({n_aspects},), got {tuple(ro.shape)}"
        )
    if ro.is_floating_point() or ro.is_complex() or ro.dtype == torch.bool:
        raise ValueError(f"rank_order must be an integer tensor, got dtype {ro.dtype}")
    ro = ro.long()
    expected = torch.arange(n_aspects, device=ro.device)
    ok = (torch.sort(ro, dim=1).values == expected.unsqueeze(0)).all(dim=1)  # (B,)
    if not bool(ok.all()):
        bad = int((~ok).nonzero()[0, 0])
        raise ValueError(
            f"rank_order row {bad} is {ro[bad].tolist()}, which is not a permutation "
            f"of 0..{n_aspects - 1}"
        )
    B = ro.shape[0]
    rel = torch.empty(B, 1 + n_aspects, dtype=torch.float32, device=ro.device)
    rel[:, 0] = text_relevance
    # Rank position i (0-based) gets relevance m - i.
    per_pos = (n_aspects - expected).to(torch.float32).expand(B, n_aspects)  # (B, m)
    rel[:, 1:].scatter_(1, ro, per_pos)  # aspect ro[b, i] <- m - i
    return rel
