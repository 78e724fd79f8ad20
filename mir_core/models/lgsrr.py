"""LGSRR: LLM-Guided Semantic Relational Reasoning (Zhou et al., EMNLP 2025), Sec. 3.2-3.3.

Sources, always in this order: T (utterance text), A (Speakers' Actions), E (Emotions and
Facial Expressions), I (Interaction with Others). F = features of the 4 sources, (B, 4, D),
from the source encoder the training regime chose (see :mod:`mir_core.models.encoders`).

    F_T, F_M   = Pooling(BERT(.))                                         Eq. 4-6
    h          = ReLU(W1 F + b1)                                          Eq. 7
    alpha      = Softmax_over_sources(W2 h + b2)                          Eq. 8
    L_rank     = NeuralNDCG(alpha, relevance from the LLM rank)           Eq. 9, 19-21
    beta_M     = cos(F_T, F_M)                                            Eq. 10
    C_M        = beta_M * F_M                                             Eq. 11
    I_M        = F_T - F_M ;  gamma_M = mean_d (F_T - F_M)^2              Eq. 13-14
    F_Incons   = sum_M gamma_M * I_M                                      Eq. 15
    y_hat      = W (F_Comp - F_Incons) + b                                Eq. 16
    L          = CE + lambda * L_rank                                     Eq. 17-18

Fusion forms (``LGSRROptions.fusion``):

* ``official`` (default): what the official code (thuiar/LGSRR, ``backbones/FusionNets/
  LGSRR.py``) computes: F = alpha_T F_T + sum_M alpha_M beta_M F_M - sum_M gamma_M (F_T - F_M)
  with gamma_M = MSE(F_T, F_M) averaged over the whole batch (one scalar per aspect), so a
  test prediction depends on the other samples of its evaluation batch (official eval
  batch: 8, ``TrainConfig.eval_batch_size``).
* ``eq12``: the paper's equations as read here: F_Comp = sum_M alpha_M Concat(F_T, C_M)
  (Eq. 12), gamma per sample (Eq. 14). Eq. 16 subtracts F_Incons (D) from F_Comp (2D), which
  the paper leaves undefined; we subtract it from the text half. alpha_T enters only through
  the softmax, so when alpha_T -> 1 the aspect terms vanish.
* ``sum``: the "w/o SRR" ablation (Table 2) and the classic "Or" relation (Table 5): plain
  summation F_T + sum_M F_M.
* Table 5's other classic relations (Sec. 4.6), all without alpha, beta, gamma or L_rank:
  ``and``: Hadamard product F_T * F_A * F_E * F_I; ``not``: the pairwise differences
  F_i - F_j (i < j) concatenated, then Linear + ReLU back to D; ``combination``: Or, And and
  the Not representation concatenated, then Linear + ReLU to D. The paper gives no layer
  sizes; one hidden layer of width D is our reading.

Dropout: the official model has dropout only inside the weight network
(``weight_dropout``, 0.4); ``classifier_dropout`` on the fused vector is 0 there.

Ablation switches (Table 8): ``use_importance`` (alpha uniform, no L_rank),
``use_complementarity`` (beta = 1), ``use_inconsistency`` (no F_Incons);
``rank_weight = 0`` is "w/o L_rank" (Table 2). ``relevance``: ``official`` ranks all four
sources with the text on top (relevance 5, 3, 2, 1); ``aspects`` ranks only the three aspects.

``aspects`` (the spirit of Table 6): which descriptions reach the head, e.g. ``"AE"``. The
dropped ones are still encoded (the inputs are the same for every variant) but the head
slices them away before Eq. 7, so alpha is a softmax over the kept sources and the LLM rank
is restricted to them (relative order kept). Dropped sources get alpha 0 and beta/gamma NaN
in the per-sample scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..losses import aspect_relevance, neural_ndcg, wide
from .registry import BuildContext, ModelOutput, register_method

Fusion = Literal["official", "eq12", "sum", "and", "not", "combination"]
FUSIONS = ("official", "eq12", "sum", "and", "not", "combination")
CLASSIC = ("sum", "and", "not", "combination")   # no alpha / beta / gamma, no L_rank


RELEVANCE = ("official", "aspects")
ASPECTS = "AEI"


@dataclass(frozen=True)
class LGSRROptions:
    """Structural choices of one LGSRR variant (the run spec's ``options``)."""

    fusion: Fusion = "official"
    use_importance: bool = True
    use_complementarity: bool = True
    use_inconsistency: bool = True
    relevance: str = "official"
    aspects: str = ASPECTS

    def validate(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {self.fusion!r}")
        if self.relevance not in RELEVANCE:
            raise ValueError(f"relevance must be one of {list(RELEVANCE)}, got "
                             f"{self.relevance!r}")
        if (not isinstance(self.aspects, str) or not self.aspects
                or any(c not in ASPECTS for c in self.aspects)
                or len(set(self.aspects)) != len(self.aspects)):
            raise ValueError(f"aspects must be a non-empty subset of {ASPECTS!r} without "
                             f"repeats (e.g. 'AE'), got {self.aspects!r}")
        for name in ("use_importance", "use_complementarity", "use_inconsistency"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class LGSRRConfig:
    num_labels: int
    feat_dim: int = 1024            # D of the features entering the head (bert-large: 1024)
    weight_hidden: int = 768        # hidden size of the weight network (Eq. 7)
    weight_dropout: float = 0.4     # dropout inside the weight network (official)
    classifier_dropout: float = 0.0  # dropout on the fused vector (official: none)
    rank_weight: float = 1.0        # lambda in Eq. 18 (official config: 'gamma')
    ndcg_temperature: float = 1.0   # tau in Eq. 20
    options: LGSRROptions = LGSRROptions()


class LGSRRHead(nn.Module):
    """Semantic Relational Reasoning over F (B, 4, D) -> logits, plus the relation scores."""

    def __init__(self, cfg: LGSRRConfig):
        super().__init__()
        self.cfg = cfg
        self.opt = cfg.options
        d = cfg.feat_dim
        # Eq. 7-8: one weight network shared by the four sources
        self.weight_net = nn.Sequential(
            nn.Linear(d, cfg.weight_hidden), nn.ReLU(), nn.Dropout(cfg.weight_dropout),
            nn.Linear(cfg.weight_hidden, 1))
        # kept sources: text + the chosen aspects, in T, A, E, I order
        keep = [0] + sorted(1 + ASPECTS.index(c) for c in self.opt.aspects)
        self.register_buffer("keep", torch.tensor(keep), persistent=False)
        n = len(keep)
        if self.opt.fusion in ("not", "combination"):                # Table 5
            pairs = n * (n - 1) // 2
            self.not_net = nn.Sequential(nn.Linear(pairs * d, d), nn.ReLU())
        if self.opt.fusion == "combination":
            self.comb_net = nn.Sequential(nn.Linear(3 * d, d), nn.ReLU())
        fused = 2 * d if self.opt.fusion == "eq12" else d
        self.dropout = nn.Dropout(cfg.classifier_dropout)
        self.classifier = nn.Linear(fused, cfg.num_labels)          # Eq. 16

    def classic(self, feats: torch.Tensor) -> torch.Tensor:
        """Table 5's relations over the kept sources feats (B, n, D) -> (B, D)."""
        fusion = self.opt.fusion
        f_or = feats.sum(1)                                          # (B, D)  Or
        if fusion == "sum":
            return f_or
        f_and = feats.prod(1)                                        # (B, D)  And
        if fusion == "and":
            return f_and
        i, j = torch.triu_indices(feats.shape[1], feats.shape[1], offset=1)
        diffs = (feats[:, i] - feats[:, j]).flatten(1)               # (B, P*D) pairs i < j
        f_not = self.not_net(diffs)                                  # (B, D)  Not
        if fusion == "not":
            return f_not
        return self.comb_net(torch.cat([f_or, f_and, f_not], -1))    # (B, D)  Combination

    def relations(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        # The relation scores are computed in float32 also under bf16 autocast: alpha is the
        # NeuralNDCG target's prediction and is stored per sample (a bf16 softmax sums to 1
        # only to ~6e-4); the fused features keep the autocast dtype.
        f_t, f_m = feats[:, :1], feats[:, 1:]                        # (B, 1, D), (B, m, D)
        if self.opt.use_importance:
            alpha = wide(self.weight_net(feats).squeeze(-1)).softmax(-1)  # (B, n)   Eq. 8
        else:
            alpha = wide(feats).new_full(feats.shape[:2], 1.0 / feats.shape[1])
        if self.opt.use_complementarity:
            beta = F.cosine_similarity(wide(f_t), wide(f_m), dim=-1)   # (B, m)      Eq. 10
        else:
            beta = wide(feats).new_ones(f_m.shape[:2])
        diff = f_t - f_m                                             # (B, m, D)   Eq. 13
        gamma = wide(diff).pow(2).mean(-1)                          # (B, m)      Eq. 14
        if self.opt.fusion == "official":
            gamma = gamma.mean(0, keepdim=True).expand_as(gamma)     # batch-averaged MSE
        if not self.opt.use_inconsistency:
            gamma = torch.zeros_like(gamma)
        return {"alpha": alpha, "beta": beta, "gamma": gamma, "diff": diff}

    def fuse(self, feats: torch.Tensor, rel: dict[str, torch.Tensor]) -> torch.Tensor:
        f_t, f_m = feats[:, 0], feats[:, 1:]                         # (B, D), (B, m, D)
        alpha, beta, gamma, diff = rel["alpha"], rel["beta"], rel["gamma"], rel["diff"]
        f_incons = (gamma.unsqueeze(-1) * diff).sum(1)               # (B, D)      Eq. 15
        if self.opt.fusion == "official":
            comp = alpha[:, :1] * f_t + (alpha[:, 1:, None] * beta[..., None] * f_m).sum(1)
            return comp - f_incons                                   # (B, D)
        # eq12, Eq. 11-12: C_M = beta_M F_M ; F_Comp = sum_M alpha_M Concat(F_T, C_M)
        a_m = alpha[:, 1:, None]                                     # (B, m, 1)
        text_half = (a_m * f_t[:, None]).sum(1)                      # (B, D)
        comp_half = (a_m * beta[..., None] * f_m).sum(1)             # (B, D)
        return torch.cat([text_half - f_incons, comp_half], dim=-1)  # (B, 2D)    Eq. 16

    @property
    def ranks_used(self) -> bool:
        return (self.opt.use_importance and self.cfg.rank_weight > 0
                and self.opt.fusion not in CLASSIC)

    def _scores(self, rel: dict[str, torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
        """alpha (B, 4), beta / gamma (B, 3) in T, A, E, I order; dropped sources: alpha 0,
        beta / gamma NaN."""
        like = rel["alpha"]
        alpha = like.new_zeros(batch, 4).index_copy(1, self.keep, rel["alpha"])
        kept_m = self.keep[1:] - 1
        out = {"alpha": alpha}
        for k in ("beta", "gamma"):
            out[k] = like.new_full((batch, 3), float("nan")).index_copy(1, kept_m, rel[k])
        return out

    def forward(self, feats: torch.Tensor, labels: torch.Tensor | None = None,
                rank_order: torch.Tensor | None = None) -> ModelOutput:
        """feats (B, 4, D); labels (B,); rank_order (B, 3) aspect indices, best first."""
        feats = feats.index_select(1, self.keep)                     # (B, n, D) kept sources
        if self.opt.fusion in CLASSIC:
            rel = None
            fused = self.classic(feats)                              # (B, D)
        else:
            rel = self.relations(feats)
            fused = self.fuse(feats, rel)
        logits = self.classifier(self.dropout(fused))                # (B, K)
        out = ModelOutput(logits=logits,
                          scores={} if rel is None else self._scores(rel, len(feats)))
        if labels is None:
            return out
        loss_cls = F.cross_entropy(logits, labels)                   # Eq. 17
        out.losses["cls"] = loss_cls
        out.loss = loss_cls
        if rank_order is not None and self.ranks_used:
            # official: text on top, relevance T=5, 1st/2nd/3rd aspect = 3/2/1
            target = aspect_relevance(rank_order, mode=self.opt.relevance)
            target = target.index_select(1, self.keep).to(rel["alpha"])   # (B, n)
            loss_rank = neural_ndcg(rel["alpha"], target,
                                    temperature=self.cfg.ndcg_temperature)   # Eq. 9
            out.losses["rank"] = loss_rank
            out.loss = loss_cls + self.cfg.rank_weight * loss_rank   # Eq. 18
        return out


class LGSRR(nn.Module):
    """Source encoder (text + three descriptions, shared weights) -> SRR head."""

    def __init__(self, cfg: LGSRRConfig, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = LGSRRHead(cfg)

    def forward(self, labels=None, rank_order=None, **inputs) -> ModelOutput:
        feats = self.encoder(**inputs)                               # (B, 4, D)
        return self.head(feats, labels=labels, rank_order=rank_order)


@register_method("lgsrr", sources=("text", "A", "E", "I"), options=LGSRROptions,
                 uses_ranks=True,
                 scores={"alpha": ("T", "A", "E", "I"), "beta": ("A", "E", "I"),
                         "gamma": ("A", "E", "I")},
                 summary="LGSRR (EMNLP 2025): importance, complementarity, inconsistency")
def build_lgsrr(ctx: BuildContext) -> LGSRR:
    c = ctx.train_config
    cfg = LGSRRConfig(num_labels=ctx.num_labels, feat_dim=ctx.encoder.out_dim,
                      weight_hidden=c.weight_hidden, weight_dropout=c.weight_dropout,
                      classifier_dropout=c.classifier_dropout, rank_weight=c.rank_weight,
                      ndcg_temperature=c.ndcg_temperature, options=ctx.options)
    return LGSRR(cfg, ctx.encoder)
