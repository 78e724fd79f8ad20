"""Text features of utterances and descriptions with a BERT-family encoder (paper Eq. 4-6).

For the CPU preset the encoder is frozen and run once: for every layer's hidden states we
keep the mean-pooled (Eq. 5-6) and the [CLS] vector, ``(N, L+1, D)`` each, in the feature
store, so the LGSRR head can pick pooling and layers without re-encoding.

``precision`` (:mod:`mir_core.precision`) runs the encoder in fp32 (the default and the
reference) or under bf16 autocast; ``auto`` is resolved to one of them before the store is
looked at. bf16 features are stored under their own settings (``precision: bf16``), so
they never mix with fp32 ones; fp32 keeps the settings key it always had, so features
cached before precision existed are still found.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..data import ASPECT_SHORT, MIRSplit, get_spec
from ..modelpack import canonical_text_encoder, load_text_encoder
from ..precision import autocast, resolve_for_texts
from .store import FeatureStore

SOURCES = ("text", *ASPECT_SHORT)   # T, A, E, I


@torch.no_grad()
def encode_texts(texts: Sequence[str], tokenizer, model, max_len: int, batch_size: int = 64,
                 device: str | None = None, precision: str = "fp32") -> dict[str, np.ndarray]:
    """Per-layer mean-pooled and CLS vectors: {'mean': (N, L+1, D), 'cls': (N, L+1, D)} fp16.

    ``precision``: 'fp32' or 'bf16' (autocast of the encoder; pooling runs in fp32)."""
    device = device or next(model.parameters()).device
    texts = list(texts)
    # length-sorted batches: far less padding on short utterances
    order = np.argsort([len(t) for t in texts], kind="stable")
    means: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
    clss: list[np.ndarray] = [None] * len(texts)   # type: ignore[list-item]
    for s in range(0, len(texts), batch_size):
        idx = order[s:s + batch_size]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                        max_length=max_len, return_tensors="pt").to(device)
        with autocast(precision, device):
            out = model(**enc, output_hidden_states=True)
        hs = torch.stack([h.float() for h in out.hidden_states], dim=1)   # (B, L+1, T, D)
        m = enc["attention_mask"][:, None, :, None].float()         # (B, 1, T, 1)
        mean = (hs * m).sum(2) / m.sum(2).clamp(min=1.0)             # (B, L+1, D)  Eq. 5-6
        cls = hs[:, :, 0, :]                                         # (B, L+1, D)
        for j, i in enumerate(idx):
            means[i] = mean[j].cpu().numpy().astype(np.float16)
            clss[i] = cls[j].cpu().numpy().astype(np.float16)
    return {"mean": np.stack(means), "cls": np.stack(clss)}


def source_texts(split: MIRSplit, source: str) -> list[str]:
    return split.texts if source == "text" else split.descriptions(source)


def resolve_split_precision(split: MIRSplit, encoder: str, sources: Sequence[str],
                            precision: str, *, device: str | None, batch_size: int,
                            max_len: Callable[[str], int]) -> str:
    """'fp32' or 'bf16' for encoding ``split`` with ``encoder``: ``precision`` itself, or
    for 'auto' the measured (or cached) choice, timed on texts of the first source
    truncated to ``max_len(source)`` tokens, as they will be encoded."""
    first = sources[0] if sources else "text"
    return resolve_for_texts(precision, encoder=encoder, texts=source_texts(split, first),
                             device=device, batch_size=batch_size,
                             max_len=max_len(first)).precision


def precision_key(precision: str) -> dict[str, str]:
    """The feature-store settings of a resolved precision: {'precision': 'bf16'} for bf16,
    nothing for fp32, so fp32 entries written before precision existed stay valid."""
    return {} if precision == "fp32" else {"precision": precision}


def split_text_features(split: MIRSplit, encoder: str = "minilm-l6",
                        sources: Sequence[str] = SOURCES, *, store: FeatureStore | None = None,
                        text_len: int | None = None, desc_len: int | None = None,
                        batch_size: int = 64, device: str | None = None,
                        progress: bool = True, precision: str = "fp32"
                        ) -> dict[str, dict[str, np.ndarray]]:
    """{source: {'mean': (N, L+1, D), 'cls': ...}} for a split, cached in the store.

    ``text_len``/``desc_len`` default to the paper's l_T and l_D for the dataset (Sec. 4.1),
    plus the two special tokens. ``precision``: 'fp32', 'bf16' or 'auto' (timed on a few
    of the first source's texts, or read from the precision cache; see the module
    docstring).
    """
    spec = get_spec(split.dataset)
    store = store or FeatureStore()
    enc_name = canonical_text_encoder(encoder)
    lens = {"text": (text_len or spec.text_len) + 2, "desc": (desc_len or spec.desc_len) + 2}
    chosen = resolve_split_precision(
        split, encoder, sources, precision, device=device, batch_size=batch_size,
        max_len=lambda source: lens["text" if source == "text" else "desc"])
    loaded = None
    out = {}
    for source in sources:
        max_len = lens["text" if source == "text" else "desc"]
        settings = {"max_len": max_len, "pooling": "mean+cls", "layers": "all",
                    **precision_key(chosen)}

        def compute(batch, _max_len=max_len):
            nonlocal loaded
            if loaded is None:
                loaded = load_text_encoder(encoder, device)
            return encode_texts(batch, *loaded, max_len=_max_len, batch_size=batch_size,
                                device=device, precision=chosen)

        out[source] = store.get_or_compute(
            dataset=split.dataset, split=split.split, modality=f"text-{source}",
            encoder=enc_name, settings=settings, inputs=source_texts(split, source),
            compute=compute, chunk_size=2048, progress=progress)
    return out
