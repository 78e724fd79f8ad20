"""LGSRR: LLM-Guided Semantic Relational Reasoning (Zhou et al., EMNLP 2025), Sec. 3.2-3.3.

Sources, always in this order: T (utterance text), A (Speakers' Actions), E (Emotions and
Facial Expressions), I (Interaction with Others). F = features of the 4 sources, (B, 4, D).

    F_T, F_M   = Mean-Pooling(BERT(.))                                    Eq. 4-6
    h          = ReLU(W1 F + b1)                                          Eq. 7
    alpha      = Softmax_over_sources(W2 h + b2)                          Eq. 8
    L_rank     = NeuralNDCG(alpha, relevance from the LLM rank)           Eq. 9, 19-21
    beta_M     = cos(F_T, F_M)                                            Eq. 10
    C_M        = beta_M * F_M                                             Eq. 11
    I_M        = F_T - F_M ;  gamma_M = mean_d (F_T - F_M)^2              Eq. 13-14
    F_Incons   = sum_M gamma_M * I_M                                      Eq. 15
    y_hat      = W (F_Comp - F_Incons) + b                                Eq. 16
    L          = CE + lambda * L_rank                                     Eq. 17-18

Two fusion forms (``LGSRRConfig.fusion``):

* ``paper``: F_Comp = sum_M alpha_M * Concat(F_T, C_M) (Eq. 12), gamma per sample (Eq. 14).
  Eq. 16 subtracts F_Incons (D) from F_Comp (2D), which the paper leaves dimensionally
  undefined; we subtract it from the text half: Concat(sum_M alpha_M F_T - F_Incons,
  sum_M alpha_M C_M).
* ``released``: what the official code does:
  F = alpha_T F_T + sum_M alpha_M beta_M F_M - sum_M gamma_M (F_T - F_M), with gamma_M the
  MSE averaged over the whole batch (one scalar per aspect).
* ``sum``: the "w/o SRR" ablation (Table 2): plain summation F_T + sum_M F_M.

Ablation switches (Table 8): ``use_importance`` (alpha uniform, no L_rank),
``use_complementarity`` (beta = 1), ``use_inconsistency`` (no F_Incons);
``rank_weight = 0`` is "w/o L_rank" (Table 2).

The head works on any features: pooled outputs of a fine-tuned encoder (``LGSRR``, the
paper's GPU setting) or cached frozen features (``CachedLGSRR``, the CPU preset).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..losses import aspect_relevance, neural_ndcg

Fusion = Literal["paper", "released", "sum"]


@dataclass
class LGSRRConfig:
    num_labels: int
    feat_dim: int = 1024            # d_T of the features entering the head (bert-large: 1024)
    weight_hidden: int = 768        # hidden size of the weight network (Eq. 7)
    dropout: float = 0.4
    fusion: Fusion = "paper"
    rank_weight: float = 1.0        # lambda in Eq. 18
    ndcg_temperature: float = 1.0   # tau in Eq. 20
    use_importance: bool = True
    use_complementarity: bool = True
    use_inconsistency: bool = True


class LGSRRHead(nn.Module):
    """Semantic Relational Reasoning over F (B, 4, D) -> logits, plus the relation scores."""

    def __init__(self, cfg: LGSRRConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.feat_dim
        # Eq. 7-8: one weight network shared by the four sources
        self.weight_net = nn.Sequential(
            nn.Linear(d, cfg.weight_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.weight_hidden, 1))
        fused = 2 * d if cfg.fusion == "paper" else d
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(fused, cfg.num_labels)          # Eq. 16

    def relations(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        f_t, f_m = feats[:, :1], feats[:, 1:]                        # (B, 1, D), (B, 3, D)
        if self.cfg.use_importance:
            alpha = self.weight_net(feats).squeeze(-1).softmax(-1)   # (B, 4)      Eq. 8
        else:
            alpha = feats.new_full(feats.shape[:2], 1.0 / feats.shape[1])
        if self.cfg.use_complementarity:
            beta = F.cosine_similarity(f_t, f_m, dim=-1)             # (B, 3)      Eq. 10
        else:
            beta = feats.new_ones(f_m.shape[:2])
        diff = f_t - f_m                                             # (B, 3, D)   Eq. 13
        gamma = diff.pow(2).mean(-1)                                 # (B, 3)      Eq. 14
        if self.cfg.fusion == "released":
            gamma = gamma.mean(0, keepdim=True).expand_as(gamma)     # batch-averaged MSE
        if not self.cfg.use_inconsistency:
            gamma = torch.zeros_like(gamma)
        return {"alpha": alpha, "beta": beta, "gamma": gamma, "diff": diff}

    def fuse(self, feats: torch.Tensor, rel: dict[str, torch.Tensor]) -> torch.Tensor:
        f_t, f_m = feats[:, 0], feats[:, 1:]                         # (B, D), (B, 3, D)
        alpha, beta, gamma, diff = rel["alpha"], rel["beta"], rel["gamma"], rel["diff"]
        f_incons = (gamma.unsqueeze(-1) * diff).sum(1)               # (B, D)      Eq. 15
        if self.cfg.fusion == "sum":
            return f_t + f_m.sum(1)                                  # (B, D)
        if self.cfg.fusion == "released":
            comp = alpha[:, :1] * f_t + (alpha[:, 1:, None] * beta[..., None] * f_m).sum(1)
            return comp - f_incons                                   # (B, D)
        # paper, Eq. 11-12: C_M = beta_M F_M ; F_Comp = sum_M alpha_M Concat(F_T, C_M)
        a_m = alpha[:, 1:, None]                                     # (B, 3, 1)
        text_half = (a_m * f_t[:, None]).sum(1)                      # (B, D)
        comp_half = (a_m * beta[..., None] * f_m).sum(1)             # (B, D)
        return torch.cat([text_half - f_incons, comp_half], dim=-1)  # (B, 2D)    Eq. 16

    def forward(self, feats: torch.Tensor, labels: torch.Tensor | None = None,
                rank_order: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """feats (B, 4, D); labels (B,); rank_order (B, 3) aspect indices, best first."""
        rel = self.relations(feats)
        fused = self.fuse(feats, rel)
        logits = self.classifier(self.dropout(fused))                # (B, K)
        out = {"logits": logits, "alpha": rel["alpha"], "beta": rel["beta"],
               "gamma": rel["gamma"]}
        if labels is not None:
            loss_cls = F.cross_entropy(logits, labels)               # Eq. 17
            loss = loss_cls
            use_rank = (rank_order is not None and self.cfg.use_importance
                        and self.cfg.rank_weight > 0 and self.cfg.fusion != "sum")
            if use_rank:
                # text always on top: relevance T=5, 1st/2nd/3rd aspect = 3/2/1 (official code)
                rel_target = aspect_relevance(rank_order).to(rel["alpha"])   # (B, 4)
                loss_rank = neural_ndcg(rel["alpha"], rel_target,
                                        temperature=self.cfg.ndcg_temperature)  # Eq. 9
                loss = loss_cls + self.cfg.rank_weight * loss_rank   # Eq. 18
                out["loss_rank"] = loss_rank
            out["loss_cls"] = loss_cls
            out["loss"] = loss
        return out


class LayerMix(nn.Module):
    """Softmax-weighted mix of cached per-layer vectors (B, S, L, D) -> (B, S, D)."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.logits.softmax(0)                                   # (L,)
        return torch.einsum("bsld,l->bsd", x, w)


@dataclass
class CachedConfig:
    """How cached frozen-encoder features enter the head (CPU preset)."""

    in_dim: int = 384               # encoder hidden size
    num_layers: int = 1             # cached layers mixed by LayerMix (1 = use as is)
    proj_dim: int = 0               # trainable projection to this size (0 = none)
    input_dropout: float = 0.1


class FeatureAdapter(nn.Module):
    """Cached features (B, S, L, D_in) -> (B, S, D): layer mix, then a trainable projection
    shared by all sources (the frozen encoder is not fine-tuned, so this gives the head a
    trainable text representation)."""

    def __init__(self, c: CachedConfig):
        super().__init__()
        self.mix = LayerMix(c.num_layers) if c.num_layers > 1 else None
        self.drop = nn.Dropout(c.input_dropout)
        self.proj = (nn.Sequential(nn.Linear(c.in_dim, c.proj_dim), nn.GELU(),
                                   nn.LayerNorm(c.proj_dim)) if c.proj_dim else None)
        self.out_dim = c.proj_dim or c.in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix(x) if self.mix is not None else x[:, :, -1]     # (B, S, D_in)
        x = self.drop(x)
        return self.proj(x) if self.proj is not None else x          # (B, S, D)


class CachedLGSRR(nn.Module):
    """LGSRR head on cached features: feats (B, 4, L, D_in) -> head outputs."""

    def __init__(self, cfg: LGSRRConfig, cached: CachedConfig):
        super().__init__()
        self.adapter = FeatureAdapter(cached)
        cfg.feat_dim = self.adapter.out_dim
        self.head = LGSRRHead(cfg)

    def forward(self, feats, labels=None, rank_order=None):
        return self.head(self.adapter(feats), labels=labels, rank_order=rank_order)


class LGSRR(nn.Module):
    """The paper's setting: a shared BERT-family encoder fine-tuned end to end (Eq. 4-6).

    Text and the three descriptions are encoded separately by the same encoder (the
    released descriptions are encoded one aspect at a time), pooled by mean (Eq. 5-6) or
    [CLS], then fed to the SRR head.
    """

    def __init__(self, cfg: LGSRRConfig, encoder: nn.Module, pooling: str = "mean"):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        cfg.feat_dim = encoder.config.hidden_size
        self.head = LGSRRHead(cfg)

    def pool(self, input_ids, attention_mask):
        hs = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hs[:, 0]                                          # (N, D)
        m = attention_mask.unsqueeze(-1).to(hs.dtype)
        return (hs * m).sum(1) / m.sum(1).clamp(min=1.0)             # (N, D)  Eq. 5-6

    def forward(self, text_ids, text_mask, desc_ids, desc_mask, labels=None, rank_order=None):
        """text_ids (B, l_T); desc_ids (B, 3, l_D) for aspects A, E, I."""
        b = text_ids.shape[0]
        f_t = self.pool(text_ids, text_mask)                          # (B, D)
        f_m = self.pool(desc_ids.flatten(0, 1), desc_mask.flatten(0, 1)).view(b, 3, -1)
        feats = torch.cat([f_t[:, None], f_m], dim=1)                 # (B, 4, D)
        return self.head(feats, labels=labels, rank_order=rank_order)
