"""Model inputs per training regime, and the source encoder each regime trains.

The method registry says which sources a model reads (``Method.sources``: the utterance
``text`` and the descriptions ``A``, ``E``, ``I``); the regime decides what form they take:

| regime    | tensors (first axis = sample)                     | cached in the feature store |
|-----------|---------------------------------------------------|-----------------------------|
| frozen    | feats (N, S, layers, D) float32                   | per-layer pooled vectors    |
| partial   | hidden (N, S, T, D) float16, mask (N, S, T) bool  | hidden states after layer L-k |
| full      | ids (N, S, T) int64, mask (N, S, T) bool          | nothing (tokenised here)    |

plus labels (N,) and, on the train split of a dataset with LLM ranks, rank_order (N, 3).
Every input set carries a digest of exactly these tensors: it enters the run fingerprint,
so a run is reused only on the very features it was trained on.

``cfg.precision`` is resolved once (:func:`resolve_precision`: ``auto`` times the run's
encoder in fp32 and bf16 on the train texts, or reads the cached choice) and the result
serves both the encoding of the cached features and the training autocast
(:attr:`RegimeInputs.precision`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ..data import DataError, MIRSplit
from ..features.text import source_texts
from ..models.encoders import FullEncoder, PooledFeatures, TopLayers
from ..precision import Choice
from .config import TrainConfig

@dataclass
class SplitInputs:
    split: MIRSplit
    tensors: dict[str, torch.Tensor]          # encoder inputs + labels (+ rank_order)
    encoder_keys: tuple[str, ...]             # which tensors the source encoder reads
    digest: str = ""                          # blake2b of the tensors
    lengths: np.ndarray | None = field(default=None, repr=False)   # (N, S) real tokens

    def __len__(self) -> int:
        return len(self.split)

    def batch(self, idx: torch.Tensor, trim: bool = True) -> dict[str, torch.Tensor]:
        """Rows ``idx``; token tensors trimmed to the longest real sequence in the batch."""
        out = {k: v[idx] for k, v in self.tensors.items()}
        if trim and "mask" in out:
            t = int(out["mask"].flatten(0, -2).any(0).nonzero().max()) + 1
            for k in self.encoder_keys:
                out[k] = out[k][:, :, :t]
        return out


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for k in sorted(tensors):
        v = tensors[k].contiguous()
        h.update(f"{k}:{v.dtype}:{tuple(v.shape)}".encode())
        h.update(v.numpy().tobytes() if v.dtype != torch.bfloat16 else v.float().numpy().tobytes())
    return h.hexdigest()


def _check_sources(split: MIRSplit, sources, method: str) -> None:
    if any(s != "text" for s in sources) and not split.has_descriptions:
        raise DataError(f"method {method!r} reads the descriptions {list(sources[1:])}, but "
                        f"{split.dataset}/{split.split} has none: use --method text, or add a "
                        "description file (docs/BRING_YOUR_OWN_DATA.md)")


def _labels_and_ranks(split: MIRSplit, uses_ranks: bool) -> dict[str, torch.Tensor]:
    t = {"labels": torch.from_numpy(split.label_ids)}
    if uses_ranks and split.has_ranks:
        t["rank_order"] = torch.from_numpy(split.rank_order)
    return t


def frozen_inputs(split: MIRSplit, cfg: TrainConfig, sources, uses_ranks: bool, store=None,
                  progress: bool = False) -> SplitInputs:
    """feats (N, S, layers, D) float32 from the store (encoded once, then reused)."""
    from ..features.text import split_text_features

    lt, ld = cfg.max_lens(split.dataset)
    feats = split_text_features(split, cfg.encoder, sources, store=store, text_len=lt - 2,
                                desc_len=ld - 2, progress=progress, precision=cfg.precision)
    stack = []
    for s in sources:
        arr = feats[s][cfg.pooling]                                  # (N, L+1, D)
        if cfg.layers > arr.shape[1] - 1:
            raise DataError(f"layers={cfg.layers} but {cfg.encoder} has {arr.shape[1] - 1} "
                            "layers")
        stack.append(np.asarray(arr[:, -cfg.layers:], dtype=np.float32))   # (N, layers, D)
    t = {"feats": torch.from_numpy(np.stack(stack, axis=1)),              # (N, S, layers, D)
         **_labels_and_ranks(split, uses_ranks)}
    return SplitInputs(split, t, ("feats",), tensor_digest(t))


def _pad_stack(arrays: list[np.ndarray], t_max: int) -> np.ndarray:
    """list of (N, T_s, ...) -> (N, S, t_max, ...) zero-padded on T."""
    n = arrays[0].shape[0]
    out = np.zeros((n, len(arrays), t_max, *arrays[0].shape[2:]), dtype=arrays[0].dtype)
    for j, a in enumerate(arrays):
        out[:, j, :a.shape[1]] = a
    return out


def partial_inputs(split: MIRSplit, cfg: TrainConfig, sources, uses_ranks: bool,
                   n_layers: int, store=None, progress: bool = False) -> SplitInputs:
    """hidden (N, S, T, D) after layer L-k (cached at token level) and mask (N, S, T)."""
    from ..features.tokens import TokenSettings, split_token_features

    if cfg.finetune_layers > n_layers:
        raise DataError(f"finetune_layers={cfg.finetune_layers} but {cfg.encoder} has "
                        f"{n_layers} layers")
    lt, ld = cfg.max_lens(split.dataset)
    settings = TokenSettings(text_len=lt, desc_len=ld, layer=-(cfg.finetune_layers + 1))
    feats = split_token_features(split, cfg.encoder, sources, settings=settings, store=store,
                                 progress=progress, precision=cfg.precision)
    t_max = max(lt, ld) if len(sources) > 1 else lt
    hidden = _pad_stack([np.asarray(feats[s]["tokens"]) for s in sources], t_max)
    mask = _pad_stack([np.asarray(feats[s]["mask"]) for s in sources], t_max)
    t = {"hidden": torch.from_numpy(hidden), "mask": torch.from_numpy(mask),
         **_labels_and_ranks(split, uses_ranks)}
    return SplitInputs(split, t, ("hidden", "mask"), tensor_digest(t), mask.sum(-1))


def full_inputs(split: MIRSplit, cfg: TrainConfig, sources, uses_ranks: bool,
                tokenizer) -> SplitInputs:
    """ids (N, S, T) and mask (N, S, T), padded to max_length as the official code does."""
    lt, ld = cfg.max_lens(split.dataset)
    ids, masks = [], []
    for s in sources:
        enc = tokenizer(source_texts(split, s), padding="max_length", truncation=True,
                        max_length=lt if s == "text" else ld, return_tensors="np")
        ids.append(enc["input_ids"].astype(np.int64))
        masks.append(enc["attention_mask"].astype(bool))
    t_max = max(a.shape[1] for a in ids)
    mask = _pad_stack(masks, t_max)
    t = {"ids": torch.from_numpy(_pad_stack(ids, t_max)), "mask": torch.from_numpy(mask),
         **_labels_and_ranks(split, uses_ranks)}
    return SplitInputs(split, t, ("ids", "mask"), tensor_digest(t), mask.sum(-1))


@dataclass
class RegimeInputs:
    """Inputs of all splits plus a factory of fresh source encoders (one per seed)."""

    splits: dict[str, SplitInputs]
    encoder_factory: Callable[[], nn.Module]
    trim: bool                                 # token tensors may be trimmed per batch
    precision: str = "fp32"                    # resolved: the features' and training's


def resolve_precision(cfg: TrainConfig, split: MIRSplit, device=None,
                      log=print) -> Choice:
    """``cfg.precision`` for this run: fp32 / bf16 as given, ``auto`` measured on a few
    batches of ``split``'s utterances through ``cfg.encoder`` (truncated as the run
    truncates them) or read from the precision cache (:func:`mir_core.precision.resolve`).
    ``device``: where the run computes (None: CUDA when present, else the CPU)."""
    from ..precision import resolve_for_texts

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return resolve_for_texts(cfg.precision, encoder=cfg.encoder, texts=split.texts,
                             device=device, max_len=cfg.max_lens(split.dataset)[0], log=log)


def build_inputs(splits: dict[str, MIRSplit], cfg: TrainConfig, sources, uses_ranks: bool,
                 method: str, store=None, progress: bool = False,
                 log=print) -> RegimeInputs:
    """Every split's inputs in ``cfg.regime`` (``cfg.precision`` 'auto' is resolved first,
    see :func:`resolve_precision`)."""
    for sp in splits.values():
        _check_sources(sp, sources, method)
    if cfg.precision == "auto":
        cfg = cfg.replace(precision=resolve_precision(cfg, splits["train"], log=log).precision)
    amp = cfg.precision
    if cfg.regime == "frozen":
        out = {k: frozen_inputs(sp, cfg, sources, uses_ranks, store, progress)
               for k, sp in splits.items()}
        d = out["train"].tensors["feats"].shape[-1]
        return RegimeInputs(out, lambda: PooledFeatures(d, cfg.layers, cfg.proj_dim), trim=False,
                            precision=amp)

    from ..modelpack import load_text_encoder, load_text_tokenizer

    trim = cfg.pooling != "mean_unmasked"    # the unmasked mean depends on the padded length
    if cfg.regime == "partial":
        _, base = load_text_encoder(cfg.encoder)
        n_layers = len(base.encoder.layer)
        out = {k: partial_inputs(sp, cfg, sources, uses_ranks, n_layers, store, progress)
               for k, sp in splits.items()}
        return RegimeInputs(
            out, lambda: TopLayers.from_encoder(base, cfg.finetune_layers, cfg.pooling).train(),
            trim=trim, precision=amp)
    tok = load_text_tokenizer(cfg.encoder)
    out = {k: full_inputs(sp, cfg, sources, uses_ranks, tok) for k, sp in splits.items()}
    return RegimeInputs(
        out, lambda: FullEncoder(load_text_encoder(cfg.encoder)[1].train(), cfg.pooling),
        trim=trim, precision=amp)
