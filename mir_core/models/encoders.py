"""Source encoders: how the features of the S sources (utterance, descriptions) are made.

Every registered model reads its sources through one of these, chosen by the training
regime, never by the model (``TrainConfig.regime``):

* ``frozen``  - :class:`PooledFeatures`: cached per-layer pooled vectors of a frozen
  encoder, (B, S, L, D_in) -> (B, S, D) by a softmax layer mix and a trainable projection.
* ``partial`` - :class:`TopLayers`: cached token hidden states after layer L-k of a frozen
  encoder, (B, S, T, D) with a mask; the top k layers are fine-tuned, then pooled.
* ``full``    - :class:`FullEncoder`: token ids (B, S, T); the whole encoder fine-tuned.

As in the official LGSRR code, every source (the text and each description) is encoded
separately by the same shared weights: the S axis is folded into the batch.

Pooling (Eq. 5-6 and the official code's two options):
``cls`` the first token; ``mean`` the mean over real tokens (masked); ``mean_unmasked`` the
mean over all ``max_len`` positions, padding included (the official code's
``.mean(dim=1)``; it depends on the padded length, so its inputs are never trimmed).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

POOLINGS = ("mean", "cls", "mean_unmasked")


def pool(hs: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """hs (N, T, D), mask (N, T) -> (N, D)."""
    if pooling == "cls":
        return hs[:, 0]
    if pooling == "mean_unmasked":
        return hs.mean(1)
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hs.dtype)                          # (N, T, 1)
        return (hs * m).sum(1) / m.sum(1).clamp(min=1.0)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


class LayerMix(nn.Module):
    """Softmax-weighted mix of cached per-layer vectors (B, S, L, D) -> (B, S, D)."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.logits.softmax(0)                                   # (L,)
        return torch.einsum("bsld,l->bsd", x, w)


class PooledFeatures(nn.Module):
    """Frozen regime: feats (B, S, L, D_in) -> (B, S, D). A layer mix, input dropout, and a
    trainable projection shared by all sources (the encoder itself is frozen, so this gives
    the head a trainable text representation)."""

    def __init__(self, in_dim: int, num_layers: int = 1, proj_dim: int = 0,
                 input_dropout: float = 0.1):
        super().__init__()
        self.mix = LayerMix(num_layers) if num_layers > 1 else None
        self.drop = nn.Dropout(input_dropout)
        self.proj = (nn.Sequential(nn.Linear(in_dim, proj_dim), nn.GELU(),
                                   nn.LayerNorm(proj_dim)) if proj_dim else None)
        self.out_dim = proj_dim or in_dim

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.mix(feats) if self.mix is not None else feats[:, :, -1]   # (B, S, D_in)
        x = self.drop(x)
        return self.proj(x) if self.proj is not None else x               # (B, S, D)


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, T) bool -> (N, 1, 1, T) additive attention mask (0 keep, dtype-min drop)."""
    m = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    m = m.masked_fill(~mask.bool(), torch.finfo(dtype).min)
    return m[:, None, None, :]


class TopLayers(nn.Module):
    """Partial fine-tuning: hidden (B, S, T, D) after layer L-k, mask (B, S, T) -> (B, S, D).

    ``layers`` are deep copies of the encoder's top k transformer layers (BERT-family
    ``encoder.layer[-k:]``), trained; the lower layers ran once when the cache was made."""

    def __init__(self, layers: nn.ModuleList, pooling: str = "mean"):
        super().__init__()
        self.layers = layers
        self.pooling = pooling
        self.out_dim = None

    @classmethod
    def from_encoder(cls, encoder: nn.Module, k: int, pooling: str) -> "TopLayers":
        blocks = encoder.encoder.layer
        if not 1 <= k <= len(blocks):
            raise ValueError(f"finetune_layers must be in 1..{len(blocks)}, got {k}")
        top = cls(nn.ModuleList(copy.deepcopy(b) for b in blocks[len(blocks) - k:]), pooling)
        top.out_dim = int(encoder.config.hidden_size)
        return top

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One source at a time (shared weights), each trimmed to its longest real
        sequence in the batch unless the pooling needs the padding."""
        feats = []
        for h, m in _per_source(hidden, mask, self.pooling):         # (B, T_s, D), (B, T_s)
            feats.append(pool(self.sequence(h, m), m, self.pooling))  # (B, D)
        return torch.stack(feats, 1)                                 # (B, S, D)

    def sequence(self, h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """The top layers on one sequence: h (B, T, D), m (B, T) bool -> (B, T, D)."""
        h = h.float()
        am = _additive_mask(m, h.dtype)                              # (B, 1, 1, T)
        for layer in self.layers:
            out = layer(h, attention_mask=am)
            h = out[0] if isinstance(out, tuple) else out
        return h


class SequenceLayers(nn.Module):
    """The trained top layers of a :class:`TopLayers` on ONE token sequence, no pooling:
    hidden (B, T, D), mask (B, T) bool -> (B, T, D). For models that change the token
    states before those layers (MAG-BERT's gate, A-MESS's anchors) or read their token
    output (MulT). Shares the TopLayers' parameters."""

    def __init__(self, top: "TopLayers"):
        super().__init__()
        self.top = top

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.top.sequence(hidden, mask)


def split_streams(hidden: torch.Tensor, mask: torch.Tensor):
    """A partial-regime batch (B, S, T, D), (B, S, T) -> text (B, T, D), text_mask (B, T),
    streams S-1 x (B, T, D), stream_masks S-1 x (B, T): source 0 is the utterance, the
    others the sequences a multimodal model fuses with it."""
    h, m = hidden.float(), mask.bool()
    return (h[:, 0], m[:, 0], [h[:, s] for s in range(1, h.shape[1])],
            [m[:, s] for s in range(1, m.shape[1])])


def _per_source(x: torch.Tensor, mask: torch.Tensor, pooling: str):
    """Yield (x[:, s, :t_s], mask[:, s, :t_s]) with t_s the longest real length of source s
    in the batch (all positions for ``mean_unmasked``)."""
    for s in range(x.shape[1]):
        m = mask[:, s].bool()                                        # (B, T)
        t = x.shape[2] if pooling == "mean_unmasked" else int(m.any(0).nonzero().max()) + 1
        yield x[:, s, :t], m[:, :t]


class FullEncoder(nn.Module):
    """Full fine-tuning: ids (B, S, T), mask (B, S, T) -> (B, S, D) with a HF encoder."""

    def __init__(self, encoder: nn.Module, pooling: str = "cls"):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.out_dim = int(encoder.config.hidden_size)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feats = []
        for i, m in _per_source(ids, mask, self.pooling):            # (B, T_s) each
            hs = self.encoder(input_ids=i, attention_mask=m.long()).last_hidden_state
            feats.append(pool(hs, m, self.pooling))                  # (B, D)
        return torch.stack(feats, 1)                                 # (B, S, D)
