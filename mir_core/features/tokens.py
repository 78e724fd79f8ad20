"""Token-level text features of utterances and descriptions, cached in the feature store.

The pooled per-layer vectors used by the CPU training preset live in
:mod:`mir_core.features.text`; this module keeps what sequence models (MulT, MAG-BERT,
A-MESS, a cross-modal LGSRR) consume: one hidden state per token, padded to the
baselines' fixed lengths with a mask.

    >>> feats = split_token_features(split, "minilm-l6")       # sources T, A, E, I
    >>> feats["text"]["tokens"].shape, feats["text"]["mask"].shape   # (N, 50, 384), (N, 50)

Lengths follow the MIntRec2.0 baselines' feature files: 50 tokens for the utterance and
50 for each description, both counting the special tokens ([CLS] ... [SEP]).

``precision`` ('fp32', 'bf16' or 'auto') works as in :mod:`mir_core.features.text`: bf16
features get their own store entries (settings ``precision: bf16``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from ..data import MIRSplit
from ..modelpack import canonical_text_encoder, load_text_encoder
from ..precision import autocast
from .store import FeatureStore
from .text import SOURCES, precision_key, resolve_split_precision, source_texts


_LOADED: dict[tuple[str, str | None], tuple] = {}


def _encoder(name: str, device: str | None):
    """(tokenizer, model), kept for the next split / source (one model at a time)."""
    key = (canonical_text_encoder(name), device)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_text_encoder(name, device)
    return _LOADED[key]


@dataclass(frozen=True)
class TokenSettings:
    """Token-level feature settings (part of the feature-store key)."""

    text_len: int = 50               # tokens per utterance, special tokens included
    desc_len: int = 50               # tokens per description, special tokens included
    layer: int = -1                  # hidden-state layer kept (-1: last)
    dtype: str = "float16"


@torch.no_grad()
def encode_tokens(texts: Sequence[str], tokenizer, model, max_len: int, layer: int = -1,
                  batch_size: int = 64, device: str | None = None,
                  dtype: str = "float16", precision: str = "fp32") -> dict[str, np.ndarray]:
    """Token hidden states padded to ``max_len``.

    Returns tokens (N, L, D), mask (N, L) bool, input_ids (N, L) int32,
    length (N,) int32, pooled (N, D) float32 (masked mean of the tokens) and
    cls (N, D) float32 (first token). ``precision``: 'fp32' or 'bf16' (autocast of the
    encoder; the hidden states are cast back to float32 before pooling).
    """
    device = device or next(model.parameters()).device
    texts = list(texts)
    n = len(texts)
    dim = int(model.config.hidden_size)
    tokens = np.zeros((n, max_len, dim), dtype=dtype)                    # (N, L, D)
    mask = np.zeros((n, max_len), dtype=bool)                            # (N, L)
    ids = np.zeros((n, max_len), dtype=np.int32)                         # (N, L)
    pooled = np.zeros((n, dim), dtype=np.float32)                        # (N, D)
    cls = np.zeros((n, dim), dtype=np.float32)                           # (N, D)
    order = np.argsort([len(t) for t in texts], kind="stable")           # less padding
    for s in range(0, n, batch_size):
        idx = order[s:s + batch_size]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                        max_length=max_len, return_tensors="pt").to(device)
        with autocast(precision, device):
            out = model(**enc, output_hidden_states=True)
        hs = out.hidden_states[layer].float()                             # (B, t, D)
        m = enc["attention_mask"].bool()                                  # (B, t)
        t = hs.shape[1]
        mf = m[..., None].float()
        mean = (hs * mf).sum(1) / mf.sum(1).clamp(min=1.0)                # (B, D)
        tokens[idx, :t] = (hs * mf).cpu().numpy().astype(dtype)          # padding stays 0
        mask[idx, :t] = m.cpu().numpy()
        ids[idx, :t] = enc["input_ids"].cpu().numpy()
        pooled[idx] = mean.cpu().numpy()
        cls[idx] = hs[:, 0].cpu().numpy()
    return {"tokens": tokens, "mask": mask, "input_ids": ids,
            "length": mask.sum(1).astype(np.int32), "pooled": pooled, "cls": cls}


def split_token_features(split: MIRSplit, encoder: str = "minilm-l6",
                         sources: Sequence[str] = SOURCES, *,
                         settings: TokenSettings = TokenSettings(),
                         store: FeatureStore | None = None, batch_size: int = 64,
                         device: str | None = None, chunk_size: int = 1024,
                         progress: bool = True, precision: str = "fp32"
                         ) -> dict[str, dict[str, np.ndarray]]:
    """{source: {'tokens', 'mask', 'input_ids', 'length', 'pooled', 'cls'}} for a split,
    computed once and cached (modality ``tokens-<source>``; a subset of a cached split is
    served from it). ``precision``: 'fp32', 'bf16' or 'auto' (resolved before the store is
    looked at)."""
    store = store or FeatureStore()
    enc_name = canonical_text_encoder(encoder)

    def length(source: str) -> int:
        return settings.text_len if source == "text" else settings.desc_len

    chosen = resolve_split_precision(split, encoder, sources, precision, device=device,
                                     batch_size=batch_size, max_len=length)
    out = {}
    for source in sources:
        max_len = length(source)
        key = {**asdict(settings), "max_len": max_len, "kind": "tokens",
               **precision_key(chosen)}

        def compute(batch, _max_len=max_len):
            return encode_tokens(batch, *_encoder(encoder, device), max_len=_max_len,
                                 layer=settings.layer, batch_size=batch_size, device=device,
                                 dtype=settings.dtype, precision=chosen)

        out[source] = store.get_or_compute(
            dataset=split.dataset, split=split.split, modality=f"tokens-{source}",
            encoder=enc_name, settings=key, inputs=source_texts(split, source),
            compute=compute, chunk_size=chunk_size, progress=progress)
    return out
