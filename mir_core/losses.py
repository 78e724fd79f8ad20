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
  inf/NaN) changes nothing, and it gets a zero gradient. Rows of P_hat for rank
  positions m_b+1..n are all zeros.
* Padding can also be marked in ``relevance`` itself: ``neural_ndcg`` treats an
  entry equal to ``pad_value`` (default ``PAD_RELEVANCE`` = -1, the allRank
  convention) as padded, in addition to ``mask``. Real relevance must be >= 0.
* Rank positions run in descending order: position 1 is the top.
* Zero ideal DCG: a slate whose real items all have relevance 0 (or that has no
  real item) is left out of the batch mean, which divides by the number of
  slates with ideal DCG > 0. Such a slate adds nothing to the loss and gets no
  gradient. If no slate in the batch has ideal DCG > 0 the loss is 0 (a tensor
  still attached to the graph, so ``backward()`` works and gives zero gradients).
  This is what allRank's ``neuralNDCG`` and the official LGSRR loss do.
  (``sklearn.metrics.ndcg_score`` differs: it averages NDCG 0 for such slates.)

Implementation notes
--------------------
``neural_ndcg`` runs NeuralSort, Sinkhorn and the DCG as one custom autograd node
(``_FusedNeuralNDCG``) with a hand-written backward pass: at LGSRR's slate size
(n = 4, B = 32) the time goes into the number of tensor operations, not into
arithmetic. It gives the numbers of the plain autograd path
(``_neural_ndcg_plain``: ``neural_sort`` -> ``sinkhorn`` -> DCG) up to float
rounding, with the same per-slate stopping rule, and falls back to that path in
the cases it does not cover (see the class docstring). ``_neural_ndcg_reference``
is the plain path run as it was first written, with a host sync every Sinkhorn
round (under the zero-IDCG and padding rules above); the tests and
``benchmarks/ndcg_speed.py`` compare against it.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["neural_sort", "sinkhorn", "neural_ndcg", "aspect_relevance", "PAD_RELEVANCE"]

_EPS = 1e-10
# How often (in Sinkhorn rounds) the batch-wide "all slates stopped?" test runs. It is
# the only host sync of the loop; the result does not depend on it.
_CHECK_EVERY = 4
# Relevance that marks a padded item (allRank's padded_value_indicator).
PAD_RELEVANCE = -1.0


def _prepare(
    x: Tensor, mask: Optional[Tensor]
) -> Tuple[Tensor, Tensor, bool]:
    """Promote (n,) -> (1, n); build/validate the bool mask (B, n).

    Returns (x (B, n), mask (B, n) bool, was_1d).
    """
    x, m, was_1d = _prepare_opt(x, mask)
    if m is None:
        m = torch.ones_like(x, dtype=torch.bool)
    return x, m, was_1d


def _prepare_opt(
    x: Tensor, mask: Optional[Tensor]
) -> Tuple[Tensor, Optional[Tensor], bool]:
    """Like ``_prepare`` but returns mask None when none was given."""
    was_1d = x.dim() == 1
    if was_1d:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"expected a (B, n) or (n,) tensor, got shape {tuple(x.shape)}")
    if mask is not None:
        mask = torch.as_tensor(mask, device=x.device)
        if mask.dim() == 1:
            mask = mask.unsqueeze(0)
        if mask.shape != x.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != input shape {tuple(x.shape)}")
        mask = mask.to(torch.bool)
    return x, mask, was_1d


@lru_cache(maxsize=64)
def _constants(n: int, device: torch.device, dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-(n, device, dtype) constants: u = 1..n, NeuralSort coefficients n + 1 - 2u
    (for a slate with no padding) and the DCG discounts 1 / log2(j + 1)."""
    # Made outside any inference_mode so that they can be saved for backward later.
    with torch.inference_mode(False), torch.no_grad():
        u = torch.arange(1, n + 1, device=device, dtype=dtype)  # (n,)
        coef = (float(n) + 1.0) - 2.0 * u  # (n,)
        disc = 1.0 / torch.log2(u + 1.0)  # (n,)
    return u, coef, disc


def _discounts(n: int, k: Optional[int], device: torch.device, dtype: torch.dtype) -> Tensor:
    u, _, disc = _constants(n, device, dtype)
    if k is not None and k < n:
        disc = disc * (u <= k).to(dtype)
    return disc


# --------------------------------------------------------------------------- NeuralSort


def _neural_sort_masked(s: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """NeuralSort (B, n) -> (B, n, n) with padding (the general path)."""
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
    u = _constants(n, s.device, s.dtype)[0]  # (n,)
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
    return P_hat * valid


def _neural_sort_full(s: Tensor, temperature: float) -> Tensor:
    """NeuralSort (B, n) -> (B, n, n) with no padding: the same numbers as the masked
    path with an all-True mask, in fewer operations."""
    n = s.shape[1]
    coef = _constants(n, s.device, s.dtype)[1].unsqueeze(1)  # (n, 1): n + 1 - 2u
    A_one = (s.unsqueeze(2) - s.unsqueeze(1)).abs().sum(dim=2)  # (B, n): (A_s 1)_v
    logits = coef * s.unsqueeze(1) - A_one.unsqueeze(1)  # (B, n, n)   Eq. 20
    if temperature != 1.0:
        logits = logits / temperature
    return torch.softmax(logits, dim=-1)  # Eq. 21


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
    s, mask, was_1d = _prepare_opt(scores, mask)
    if mask is None:
        P_hat = _neural_sort_full(s, temperature)
    else:
        P_hat = _neural_sort_masked(s, mask, temperature)
    return P_hat.squeeze(0) if was_1d else P_hat


# --------------------------------------------------------------------------- Sinkhorn


def _sinkhorn_plain(
    P: Tensor, mask: Optional[Tensor], n_iter: int, tol: float, check_every: int
) -> Tensor:
    """Plain-autograd Sinkhorn on (B, n, n); mask (B, n) bool or None.

    Each slate is frozen after the first round whose real row sums are all within
    ``tol`` of 1 (tested every round, on the whole batch at once). Whether every slate
    has stopped is asked (a host sync) only every ``check_every`` rounds; frozen
    slates do not change, so the result does not depend on ``check_every``.
    Padded rows/columns are divided by 1 rather than by the clamped sum: the values
    are the same (0 / x = 0) but their gradient stays finite (dividing by the clamp,
    1e-10, every round overflowed it to inf and then NaN in float32).
    """
    B, n, _ = P.shape
    if mask is None:
        mask = torch.ones(B, n, dtype=torch.bool, device=P.device)
    m = mask.sum(dim=1)  # (B,)
    pos = torch.arange(n, device=P.device)
    row_mask = pos.unsqueeze(0) < m.unsqueeze(1)  # (B, n): real rank positions
    valid = (row_mask.unsqueeze(2) & mask.unsqueeze(1)).to(P.dtype)  # (B, n, n)
    one = torch.ones((), dtype=P.dtype, device=P.device)

    P = P * valid
    # Convergence is tracked per slate. A converged slate is frozen, so its result
    # does not depend on the other slates in the batch.
    active = torch.ones(B, dtype=torch.bool, device=P.device)  # (B,)
    for it in range(n_iter):
        rs = torch.where(row_mask, P.sum(dim=2).clamp_min(_EPS), one)
        Q = P / rs.unsqueeze(2)  # rows sum to 1
        cs = torch.where(mask, Q.sum(dim=1).clamp_min(_EPS), one)
        Q = Q / cs.unsqueeze(1)  # columns sum to 1
        P = torch.where(active.view(B, 1, 1), Q, P)
        with torch.no_grad():
            row_err = ((P.sum(dim=2) - 1.0).abs() * row_mask).amax(dim=1)  # (B,)
            active = active & (row_err >= tol)
        if (it + 1) % check_every == 0 and not bool(active.any()):
            break
    return P


def sinkhorn(
    P: Tensor, mask: Optional[Tensor] = None, n_iter: int = 50, tol: float = 1e-6
) -> Tensor:
    """Sinkhorn scaling: alternately normalise the rows and columns of P.

    Args:
        P: (B, n, n) or (n, n), non-negative (e.g. the output of ``neural_sort``).
        mask: optional (B, n) bool, True = real item. Row b works on its leading
            m_b x m_b block of rank positions and the real item columns. Padded
            rows and columns are held at 0 (and get a zero gradient).
        n_iter: maximum number of (row, column) normalisation rounds.
        tol: a slate stops (is frozen) after the first round at which each of its
            real row sums is within ``tol`` of 1. Each round ends with the column
            step, so column sums are 1 then. Slates stop independently, so a
            slate's result does not depend on the other slates in the batch.

    Returns:
        The same shape as P, approximately doubly stochastic on the real block.
    """
    was_2d = P.dim() == 2
    if was_2d:
        P = P.unsqueeze(0)
    if P.dim() != 3 or P.shape[1] != P.shape[2]:
        raise ValueError(f"expected (B, n, n) or (n, n), got shape {tuple(P.shape)}")
    B, n, _ = P.shape
    if mask is not None:
        mask = torch.as_tensor(mask, device=P.device)
        if mask.dim() == 1:
            mask = mask.unsqueeze(0)
        mask = mask.to(torch.bool)
        if mask.shape != (B, n):
            raise ValueError(f"mask shape {tuple(mask.shape)} != {(B, n)}")
    out = _sinkhorn_plain(P, mask, n_iter, tol, _CHECK_EVERY)
    return out.squeeze(0) if was_2d else out


# --------------------------------------------------------------------------- NeuralNDCG


def _gains(relevance: Tensor, powered_relevancies: bool) -> Tensor:
    # Exponential gain 2^r - 1 (the NeuralNDCG paper and allRank), or linear gain r.
    return torch.pow(2.0, relevance) - 1.0 if powered_relevancies else relevance


class _FusedNeuralNDCG(torch.autograd.Function):
    """NeuralSort -> Sinkhorn -> DCG -> loss in one node, with a hand-written backward.

    At LGSRR's size (n = 4) the cost of the loss is the number of tensor operations
    (each takes microseconds whatever its size), not arithmetic, so this node keeps
    that number small:

    * Sinkhorn in scaling form. Every iterate is diag(x_t) K diag(y_t), so a round
      only updates two vectors: x_t = 1 / (K y_{t-1}), y_t = 1 / (K^T x_t), y_0 = 1
      (4 operations). The row sums after round t are x_t * (K y_t), the next round's
      first product. K = exp(Z - max_v Z) is NeuralSort's matrix before the row
      normalisation, which the first row step does anyway (the result does not
      depend on a scaling of K's rows, so neither does the gradient).
    * Padding: the real block is the same as in ``sinkhorn``; the padded rank
      positions are matched one to one with the padded items (an identity block,
      -inf logits elsewhere), so every padded row and column sums to exactly 1 and
      the padded block never changes.
    * Stopping: as in ``sinkhorn`` each slate keeps the iterate of the first round
      whose row sums are all within ``tol`` of 1. The loop ends once every slate has
      stopped, which is asked every ``check_every`` rounds (on the chunk's last
      round); each slate's stopping round is then read off all the rounds, so it
      does not depend on ``check_every``. The backward pass walks each slate back
      from its own stopping round.
    * The numbers are those of the plain path up to float rounding. The plain path's
      clamps (sums below 1e-10) can only act in the first column step (afterwards
      every row and column sum is at least 1/n), so that is checked; if they would
      act (e.g. an underflowed column at a tiny temperature), or the loss is not
      finite, ``info["fallback"]`` is set and the caller uses the plain path.

    Inputs: s (B, n) scores; g3 (B, n, 1) gains (0 on padded items); dw3 (B, n, 1)
    = wts_b * disc_i, with disc the discounts and wts_b = [IDCG_b > 0] /
    (IDCG_b * max(#{IDCG > 0}, 1)); base (scalar) = [#{IDCG > 0} > 0]; coef (n,) or
    (B, n) NeuralSort coefficients m + 1 - 2u; mask (B, n) bool or None; valid / fill
    (B, n, n): the real block, and the logits outside it (0 / -inf), or None.
    Output: the loss base - sum_b wts_b DCG_b.
    """

    @staticmethod
    def forward(ctx, s, g3, dw3, base, coef, mask, valid, fill,  # type: ignore[override]
                temperature, n_iter, tol, check_every, info):
        B, n = s.shape
        dt = s.dtype
        if mask is not None:
            maskf = mask.to(dt)
            s = torch.where(mask, s, torch.zeros((), dtype=dt, device=s.device))
        diff = s.unsqueeze(2) - s.unsqueeze(1)  # (B, n, n): s_v - s_w
        A = diff.abs()
        if mask is not None:
            A = A * maskf.unsqueeze(1)
        A_one = A.sum(dim=2)  # (B, n): (A_s 1)_v over the real items      Eq. 20
        c = coef.unsqueeze(1) if coef.dim() == 1 else coef.unsqueeze(2)  # rows u
        Z = c * s.unsqueeze(1) - A_one.unsqueeze(1)  # (B, n, n)
        if temperature != 1.0:
            Z = Z / temperature
        if mask is not None:
            Z = torch.where(valid, Z, fill)
        K = (Z - Z.amax(dim=2, keepdim=True)).exp()  # NeuralSort (Eq. 21) up to row scale
        KT = K.transpose(1, 2).contiguous()

        u = K.sum(dim=2, keepdim=True)  # (B, n, 1) row sums of K
        xs: List[Tensor] = []
        ys: List[Tensor] = []
        us: List[Tensor] = []
        w1 = None
        t = 0
        while t < n_iter:
            x = u.reciprocal()  # row step
            w = torch.bmm(KT, x)
            y = w.reciprocal()  # column step
            u = torch.bmm(K, y)
            if w1 is None:
                w1 = w  # column sums entering the first column step
            xs.append(x)
            ys.append(y)
            us.append(u)
            t += 1
            if t % check_every == 0 and t < n_iter:
                # Everyone has stopped if all are within tol after this round (NaN
                # compares False, i.e. "stopped", as in the plain path).
                if not bool(((x * u - 1.0).abs() >= tol).any()):
                    break
        T = t
        Xc, Yc = torch.cat(xs, dim=2), torch.cat(ys, dim=2)  # (B, n, T)
        err = (Xc * torch.cat(us, dim=2) - 1.0).abs().amax(dim=1)  # (B, T) row sums - 1
        going = (err >= tol).to(dt)
        f_iter = (torch.cumprod(going, dim=1).sum(dim=1, keepdim=True) + 1.0).clamp_max(float(T))
        # E[b, 0, t-1] = 1 if slate b stops after round t (keeps x_t, y_t)
        E = (f_iter == _rounds(T, s.device, dt)).to(dt).unsqueeze(1)  # (B, 1, T)
        xf = (Xc * E).sum(dim=2, keepdim=True)  # (B, n, 1)
        yf = (Yc * E).sum(dim=2, keepdim=True)
        aw = dw3 * xf
        bg = yf * g3
        Kb = torch.bmm(K, bg)
        loss = base - (aw * Kb).sum()  # base - sum_b wts_b sum_ij disc_i P_ij g_j   Eq. 19
        stats = torch.stack([f_iter.amax(), w1.amin().to(dt), loss.detach()])
        hi_f, low, loss_v = stats.tolist()
        info["fallback"] = not (low >= _EPS) or not math.isfinite(loss_v)

        hi = int(hi_f)
        ctx.hi, ctx.temperature = hi, temperature
        ctx.masked = mask is not None
        extra = (maskf, valid) if mask is not None else ()
        ctx.f_iter = f_iter
        ctx.save_for_backward(s, diff, K, KT, g3, dw3, coef, aw, bg, Kb,
                              Xc[:, :, :hi], Yc[:, :, :hi], *extra)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):  # type: ignore[override]
        # Gradients of phi = sum_b wts_b DCG_b (loss = base - phi), scaled at the end.
        hi = ctx.hi
        s, diff, K, KT, g3, dw3, coef, aw, bg, Kb, Xc, Yc, *extra = ctx.saved_tensors
        B, n = s.shape

        # phi = sum_i aw_i (K bg)_i with aw = dw x_f, bg = y_f g
        seed_x = dw3 * Kb  # d phi / d x_f  (B, n, 1)
        seed_y = g3 * torch.bmm(KT, aw)  # d phi / d y_f
        gK = aw * bg.transpose(1, 2)  # direct d phi / d K  (B, n, n)

        # Round t: u_t = K y_{t-1}, x_t = 1/u_t, w_t = K^T x_t, y_t = 1/w_t. Walk back
        # from each slate's own stopping round f_b: step j works on round f_b - j of
        # slate b (zeros once that is before round 1), so all seeds enter at step 0.
        f = ctx.f_iter.to(torch.long)  # (B, 1)
        j = torch.arange(hi, device=s.device)
        idx = f - 1 - j  # (B, hi): index of round f_b - j (0-based)
        live = (idx >= 0).to(s.dtype).unsqueeze(1)  # (B, 1, hi)
        take = idx.clamp_min(0).unsqueeze(1).expand(B, n, hi)
        Xr = Xc.gather(2, take) * live  # x_{f-j}
        Yr = Yc.gather(2, take) * live  # y_{f-j}
        Y0 = torch.cat([torch.ones_like(Yc[:, :, :1]), Yc], dim=2)  # y_0 .. y_hi
        Yp = Y0.gather(2, take) * live  # y_{f-j-1}
        nx2 = Xr.square().neg().unsqueeze(3).unbind(2)  # -x^2, (B, n, 1) each
        ny2 = Yr.square().neg().unsqueeze(3).unbind(2)  # -y^2
        gy = seed_y
        gws: List[Tensor] = []
        gus: List[Tensor] = []
        for step in range(hi):
            gw = gy * ny2[step]  # d/dw
            gx = torch.bmm(K, gw)  # w = K^T x
            if step == 0:
                gx = gx + seed_x
            gu = gx * nx2[step]  # d/du
            gws.append(gw)
            gus.append(gu)
            if step < hi - 1:
                gy = torch.bmm(KT, gu)  # u = K y_prev
        # dK += sum over rounds of x (d/dw)^T + (d/du) y_prev^T
        left = torch.cat([Xr, *gus], dim=2)  # (B, n, 2 hi)
        right = torch.cat([*gws, Yp], dim=2)
        gK = torch.baddbmm(gK, left, right.transpose(1, 2))

        # K = exp(Z - max_v Z). Rescaling a row of K changes nothing, so the softmax-like
        # projection below only removes rounding noise (x_1 = 1 / row sums of K).
        # Then Z_uv = (c_u s_v - sum_w M_w |s_v - s_w|) / tau.
        dZ = K * (gK - (gK * K).sum(dim=2, keepdim=True) * Xc[:, :, :1])
        if ctx.masked:
            maskf, valid = extra
            dZ = dZ * valid.to(dZ.dtype)
        scale = -grad_loss if ctx.temperature == 1.0 else -grad_loss / ctx.temperature
        D = dZ.sum(dim=1)  # (B, n) sum_u dZ_uv
        if coef.dim() == 1:
            C = torch.matmul(coef, dZ)  # (B, n) sum_u c_u dZ_uv
        else:
            C = torch.bmm(coef.unsqueeze(1), dZ).squeeze(1)
        S = diff.sign()  # (B, n, n) sign(s_x - s_w); abs'(0) = 0 as in autograd
        SD = torch.bmm(S, D.unsqueeze(2)).squeeze(2)
        if ctx.masked:
            SM = torch.bmm(S, maskf.unsqueeze(2)).squeeze(2)
            ds = (C - D * SM - maskf * SD) * (maskf * scale)
        else:
            ds = (C - D * S.sum(dim=2) - SD) * scale
        return (ds,) + (None,) * 12


@lru_cache(maxsize=64)
def _rounds(T: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(T,) round numbers 1..T."""
    with torch.inference_mode(False), torch.no_grad():
        return torch.arange(1, T + 1, device=device, dtype=dtype)


def _pad_layout(mask: Tensor, dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor]:
    """For the fused path: NeuralSort coefficients (B, n), the real block ``valid``
    (B, n, n) bool, and the logits ``fill`` outside it (B, n, n): 0 where the j-th
    padded rank position meets the j-th padded item, -inf elsewhere."""
    B, n = mask.shape
    m = mask.sum(dim=1, keepdim=True)  # (B, 1)
    u = _constants(n, mask.device, dtype)[0]  # (n,) 1..n
    coef = m.to(dtype) + 1.0 - 2.0 * u.unsqueeze(0)  # (B, n)
    pos = torch.arange(n, device=mask.device)
    row_real = pos.unsqueeze(0) < m  # (B, n)
    valid = row_real.unsqueeze(2) & mask.unsqueeze(1)
    pad = ~mask
    row_of_pad = m + torch.cumsum(pad.to(torch.long), dim=1) - 1  # (B, n) for padded items
    match = (pos.view(1, n, 1) == row_of_pad.unsqueeze(1)) & pad.unsqueeze(1)  # (B, n, n)
    fill = torch.full((B, n, n), float("-inf"), dtype=dtype, device=mask.device)
    fill = fill.masked_fill(match, 0.0)
    return coef, valid, fill


def wide(t: Tensor) -> Tensor:
    """t in float32 at least (bf16 / fp16 from autocast widened; float64 kept)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def neural_ndcg(
    scores: Tensor,
    relevance: Tensor,
    temperature: float = 1.0,
    powered_relevancies: bool = True,
    k: Optional[int] = None,
    mask: Optional[Tensor] = None,
    sinkhorn_iters: int = 50,
    pad_value: Optional[float] = PAD_RELEVANCE,
) -> Tensor:
    """NeuralNDCG loss: ``1 - mean_b NeuralNDCG@k``. Returns a scalar tensor.

    Args:
        scores: (B, n) or (n,) predicted scores (higher = ranked earlier).
        relevance: same shape, graded ground-truth relevance, >= 0 on real items.
        temperature: NeuralSort tau. As tau -> 0 the loss becomes 1 - exact NDCG.
        powered_relevancies: gain 2^r - 1 if True, else r.
        k: truncate DCG and ideal DCG at the top k positions (NDCG@k). None = all.
        mask: optional (B, n) bool, True = real item (see module docstring).
        sinkhorn_iters: maximum number of Sinkhorn rounds (tolerance 1e-6).
        pad_value: relevance entries equal to this are padded items too (on top of
            ``mask``); None turns this off.

    The mean runs over the slates with ideal DCG > 0 only (allRank and the official
    LGSRR loss); if there is none the loss is 0. See the module docstring. The
    gradient with respect to ``relevance`` is only computed by the plain path (used
    when ``relevance`` requires grad); no double backward through the fast path.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    # The Sinkhorn rounds in float32 (at least) also under autocast: bf16 matmuls there would
    # cast every one of the ~300 small products per batch and round the doubly stochastic
    # matrix to 3 significant digits.
    with torch.autocast(scores.device.type, enabled=False):
        return _neural_ndcg(wide(scores), relevance, temperature, powered_relevancies, k, mask,
                            sinkhorn_iters, pad_value)


def _neural_ndcg(scores: Tensor, relevance: Tensor, temperature: float,
                 powered_relevancies: bool, k: Optional[int], mask: Optional[Tensor],
                 sinkhorn_iters: int, pad_value: Optional[float]) -> Tensor:
    s, mask, _ = _prepare_opt(scores, mask)
    r = relevance.unsqueeze(0) if relevance.dim() == 1 else relevance
    if r.shape != s.shape:
        raise ValueError(f"relevance shape {tuple(r.shape)} != scores shape {tuple(s.shape)}")
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1 or None, got {k}")
    r = r.to(device=s.device, dtype=s.dtype)
    if pad_value is not None:
        real = r != pad_value
        mask = real if mask is None else mask & real
    if mask is not None and bool(mask.all()):
        mask = None  # nothing padded: the short path (same numbers)
    if r.requires_grad or sinkhorn_iters < 1 or s.shape[0] == 0 or s.shape[1] == 0:
        return _neural_ndcg_plain(s, r, temperature, powered_relevancies, k, mask,
                                  sinkhorn_iters, _CHECK_EVERY)
    B, n = s.shape
    with torch.no_grad():
        if mask is None:
            g = _gains(r, powered_relevancies)
            coef, valid, fill = _constants(n, s.device, s.dtype)[1], None, None
        else:
            r0 = torch.where(mask, r, torch.zeros_like(r))  # drop the padded garbage
            g = torch.where(mask, _gains(r0, powered_relevancies), torch.zeros_like(r0))
            coef, valid, fill = _pad_layout(mask, s.dtype)
        disc = _discounts(n, k, s.device, s.dtype)  # (n,) 1/log2(j+1), 0 beyond k
        # Ideal DCG: padded gains are 0 <= any real gain, so sorting puts them last.
        idcg = torch.sort(g, dim=1, descending=True)[0] @ disc  # (B,)
        has_rel = idcg > 0
        n_valid = has_rel.sum().to(s.dtype)
        # Each slate's weight in the mean: 1 / (IDCG_b * #{IDCG > 0}), or 0.
        wts = has_rel / (torch.where(has_rel, idcg, torch.ones_like(idcg)) * n_valid.clamp_min(1.0))
        dw3 = (wts.unsqueeze(1) * disc).unsqueeze(2)  # (B, n, 1)
        base = (n_valid > 0).to(s.dtype)
    info: dict = {}
    loss = _FusedNeuralNDCG.apply(s, g.unsqueeze(2), dw3, base, coef, mask, valid, fill,
                                  temperature, sinkhorn_iters, 1e-6, _CHECK_EVERY, info)
    if info["fallback"]:
        return _neural_ndcg_plain(s, r, temperature, powered_relevancies, k, mask,
                                  sinkhorn_iters, _CHECK_EVERY)
    return loss


# --------------------------------------------------------------------------- plain path


def _neural_ndcg_plain(
    s: Tensor,
    r: Tensor,
    temperature: float,
    powered_relevancies: bool,
    k: Optional[int],
    mask: Optional[Tensor],
    sinkhorn_iters: int,
    check_every: int,
) -> Tensor:
    """Readable plain-autograd NeuralNDCG on (B, n) inputs; mask None = nothing padded.
    ``neural_ndcg`` uses it when relevance needs a gradient or as its fallback."""
    B, n = s.shape
    if mask is None:
        mask = torch.ones_like(s, dtype=torch.bool)
    r = torch.where(mask, r, torch.zeros_like(r))  # drop the padded garbage
    # Soft permutation: NeuralSort (Eqs. 20-21), then Sinkhorn scaling.
    P_hat = _neural_sort_masked(s, mask, temperature)  # (B, n, n)
    P_hat = _sinkhorn_plain(P_hat, mask, sinkhorn_iters, 1e-6, check_every)
    # Gains g(r) on the real items, 0 on the padded ones.
    g = torch.where(mask, _gains(r, powered_relevancies), torch.zeros_like(r))  # (B, n)
    # Soft-sorted gains: expected gain at each rank position, (P_hat g)_j.
    sorted_g = torch.bmm(P_hat, g.unsqueeze(2)).squeeze(2)  # (B, n)
    # Discount 1 / log2(j + 1) for positions j = 1..n, zero beyond k.
    j = torch.arange(1, n + 1, device=s.device, dtype=s.dtype)
    disc = 1.0 / torch.log2(j + 1.0)
    if k is not None:
        disc = disc * (j <= k).to(s.dtype)
    # Eq. 19: NeuralNDCG = sum_j disc_j (P_hat g)_j / IDCG.
    dcg = (sorted_g * disc.unsqueeze(0)).sum(dim=1)  # (B,)
    # Ideal DCG. The gain is monotone in r and the padded gains are 0 (<= any real
    # gain since r >= 0), so sorting the gains puts the real items first.
    ideal_g, _ = torch.sort(g, dim=1, descending=True)
    idcg = (ideal_g * disc.unsqueeze(0)).sum(dim=1)  # (B,)
    has_rel = idcg > 0
    ndcg = torch.where(
        has_rel, dcg / torch.where(has_rel, idcg, torch.ones_like(idcg)), torch.zeros_like(dcg)
    )  # (B,)  zero-IDCG slates -> 0, no gradient
    n_valid = has_rel.sum().to(s.dtype)
    # 1 - mean over the slates with IDCG > 0; 0 (still on the graph) if there are none.
    return (n_valid - ndcg.sum()) / n_valid.clamp_min(1.0)


def _neural_ndcg_reference(
    scores: Tensor,
    relevance: Tensor,
    temperature: float = 1.0,
    powered_relevancies: bool = True,
    k: Optional[int] = None,
    mask: Optional[Tensor] = None,
    sinkhorn_iters: int = 50,
) -> Tensor:
    """The slow reference that ``neural_ndcg`` is checked against (tests and
    ``benchmarks/ndcg_speed.py``): the original plain-autograd implementation, with a
    host sync every Sinkhorn round, under this module's rules (zero-IDCG slates left
    out of the mean; padded rows/columns divided by 1, see ``_sinkhorn_plain``).
    Padding only through ``mask`` (no ``pad_value``)."""
    s, m, _ = _prepare(scores, mask)
    r = relevance.unsqueeze(0) if relevance.dim() == 1 else relevance
    r = r.to(device=s.device, dtype=s.dtype)
    return _neural_ndcg_plain(s, r, temperature, powered_relevancies, k, m, sinkhorn_iters, 1)


# --------------------------------------------------------------------------- LGSRR


def aspect_relevance(
    rank_order: Tensor,
    n_aspects: int = 3,
    text_relevance: float = 5.0,
    mode: str = "official",
) -> Tensor:
    """Relevance labels for LGSRR's sources [text, aspect_0, ..., aspect_{m-1}].

    Args:
        rank_order: LongTensor (B, m) or (m,) with m = n_aspects. Each row lists
            aspect indices from most to least important, e.g. [2, 0, 1] means
            aspect 2 is ranked 1st.
        n_aspects: m.
        text_relevance: relevance of the text source in mode "official".
        mode: "official" (the released training loop): the text source is in the
            slate with relevance ``text_relevance``, so it is always ranked first.
            "aspects": only the m aspects are ranked; the text column gets
            ``PAD_RELEVANCE`` (-1), which ``neural_ndcg`` treats as padding, so the
            text's score is left out of the slate (and gets no gradient from it).

    Returns:
        Float tensor (B, 1 + m). The aspect ranked i-th (i = 1..m) gets relevance
        m + 1 - i, so m, m-1, ..., 1. Column 0 is ``text_relevance`` ("official")
        or -1 ("aspects").
        Example: [[2, 0, 1]] -> [[5, 2, 1, 3]] ("official"), [[-1, 2, 1, 3]] ("aspects").

    Raises:
        ValueError: the mode is unknown, the shape is wrong, or a row is not a
            permutation of 0..m-1 (the message names that row).
    """
    if mode not in ("official", "aspects"):
        raise ValueError(f"mode must be 'official' or 'aspects', got {mode!r}")
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
    rel[:, 0] = text_relevance if mode == "official" else PAD_RELEVANCE
    # Rank position i (0-based) gets relevance m - i.
    per_pos = (n_aspects - expected).to(torch.float32).expand(B, n_aspects)  # (B, m)
    rel[:, 1:].scatter_(1, ro, per_pos)  # aspect ro[b, i] <- m - i
    return rel
