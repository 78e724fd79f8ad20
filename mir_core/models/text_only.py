"""Text-only baseline: the utterance alone through the same source encoder and a linear
classifier (the "text" rows of the MIR papers' tables; LGSRR without descriptions)."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from .registry import BuildContext, ModelOutput, register_method


class TextOnly(nn.Module):
    """Encoder on source 0 (the utterance) -> dropout -> linear classifier."""

    def __init__(self, num_labels: int, encoder: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.out_dim, num_labels)

    def forward(self, labels=None, rank_order=None, **inputs) -> ModelOutput:
        f_t = self.encoder(**inputs)[:, 0]                           # (B, D)
        out = ModelOutput(logits=self.classifier(self.dropout(f_t)))  # (B, K)
        if labels is not None:
            out.loss = out.losses["cls"] = F.cross_entropy(out.logits, labels)
        return out


@register_method("text", sources=("text",), summary="text-only baseline")
def build_text(ctx: BuildContext) -> TextOnly:
    return TextOnly(ctx.num_labels, ctx.encoder, dropout=ctx.train_config.classifier_dropout)
