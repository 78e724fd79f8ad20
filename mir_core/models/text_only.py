"""Text-only baseline: the utterance alone through the same encoder and a linear classifier
(the "text" rows of the MIR papers' tables; LGSRR without descriptions)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .lgsrr import CachedConfig, FeatureAdapter


def _outputs(logits: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
    out = {"logits": logits}
    if labels is not None:
        out["loss"] = out["loss_cls"] = F.cross_entropy(logits, labels)
    return out


class CachedTextOnly(nn.Module):
    """On cached features feats (B, S, L, D_in): uses source 0 (the utterance) only."""

    def __init__(self, num_labels: int, cached: CachedConfig, dropout: float = 0.4):
        super().__init__()
        self.adapter = FeatureAdapter(cached)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.adapter.out_dim, num_labels)

    def forward(self, feats, labels=None, rank_order=None):
        f_t = self.adapter(feats[:, :1])[:, 0]                       # (B, D)
        return _outputs(self.classifier(self.dropout(f_t)), labels)


class TextOnly(nn.Module):
    """Fine-tuned encoder on the utterance: pooled (B, D) -> logits (B, K)."""

    def __init__(self, num_labels: int, encoder: nn.Module, pooling: str = "cls",
                 dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, text_ids, text_mask, desc_ids=None, desc_mask=None, labels=None,
                rank_order=None):
        hs = self.encoder(input_ids=text_ids, attention_mask=text_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hs[:, 0]                                        # (B, D)
        else:
            m = text_mask.unsqueeze(-1).to(hs.dtype)
            pooled = (hs * m).sum(1) / m.sum(1).clamp(min=1.0)
        return _outputs(self.classifier(self.dropout(pooled)), labels)
