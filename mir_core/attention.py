"""Token-level views of one sample: the text encoder's self-attention, and a gradient
attribution of the trained run's prediction over the tokens of the utterance and of each
description (notebook 06).

    >>> tok, enc = load_text_encoder("minilm-l6")
    >>> att = self_attention("oh. i'm sorry.", tok, enc, layer=-1, head=None)  # mean of heads
    >>> att.tokens, att.matrix                        # ['[CLS]', 'oh', ...], (T, T), rows sum to 1
    >>> res = attribute_case(run, key="9_1", split="test")    # the trained model of the run
    >>> res.tokens["T"], res.scores["T"], res.delta   # per-token attribution, completeness gap

Self-attention
--------------
:func:`self_attention` runs the encoder with ``output_attentions`` (eager attention for the
call: SDPA does not return the weights) and returns one layer's attention over the tokens of
one text, for one head or the mean over the heads. In the frozen regime (the ``cpu`` preset)
the encoder is the pretrained one, untouched by training; in the full / partial regimes
:attr:`TokenPipeline.text_encoder` is the fine-tuned encoder of the run.

Attribution
-----------
In the frozen regime the trained model never sees tokens: it reads cached per-layer pooled
vectors ``(N, S, layers, D)`` of a frozen encoder (:mod:`mir_core.features.text`), so no
token-level gradient exists inside it. :class:`TokenPipeline` rebuilds the path the cache
stands for, differentiably: encoder (the run's, e.g. MiniLM) -> the last ``layers`` hidden
states -> pooling as the cache did it (masked mean or [CLS]; rounded to float16 like the
store, so the numbers equal the cached ones up to float noise) -> the run's trained
``PooledFeatures`` + head, loaded from ``best.pt`` through the method registry. For the
partial regime the pipeline feeds the hidden states after layer L-k to the trained top
layers; for the full regime it is the trained model itself.

:func:`attribute_tokens` applies captum's ``LayerIntegratedGradients`` to the encoder's
embedding layer (word + position + token-type embeddings and their LayerNorm), for the
logit of the target class (default: the class the pipeline predicts). All sources (the
utterance and the three descriptions) are attributed jointly: the baseline replaces every
real token that is not a special token ([CLS], [SEP]) by [PAD] in all four sequences, with
the attention masks of the input kept, so the attributions of all tokens of all sources sum
to ``logit(input) - logit(baseline)`` up to ``delta``, the integration error reported by
captum. An attribution is summed over the embedding dimension, one number per token.

The official fusion's gamma is a mean over the evaluation batch, so a test prediction
depends on its batch-mates. :func:`attribute_case` therefore evaluates the sample inside its
own evaluation batch (the other ``eval_batch_size - 1`` samples, as the run evaluated them,
from the feature store, held fixed): the pipeline's prediction then equals the one in
``predictions.csv`` (for a train sample: the run's model recomputed on its cached inputs, the
run folder keeping no train predictions) and the attribution explains that very logit.

Checked on runs of all three regimes (frozen: tests/test_case_plots.py; partial and full by
hand on small untrained models): the pipeline reproduces the stored prediction and alpha
(to 1e-7) and the attributions sum to the logit difference up to ``delta``.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .data import ASPECT_SHORT, get_spec

SOURCE_SHORT = {"text": "T", "A": "A", "E": "E", "I": "I"}


# --------------------------------------------------------------------------- self-attention
@contextlib.contextmanager
def eager_attention(model):
    """Switch a transformers model to eager attention for the block (SDPA and flash
    attention return no attention weights), then back."""
    cfg = getattr(model, "config", None)
    prev = getattr(cfg, "_attn_implementation", None)
    switch = prev not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        if switch:
            model.set_attn_implementation(prev)


@dataclass
class AttentionMap:
    """One layer's self-attention over the tokens of one text: ``matrix[i, j]`` is how much
    query token i attends to key token j (rows sum to 1)."""

    source: str
    text: str
    tokens: list[str]
    matrix: np.ndarray           # (T, T)
    layer: int                   # 0-based layer index
    num_layers: int
    head: int | None             # None: mean over heads
    num_heads: int

    @property
    def title(self) -> str:
        h = "mean over heads" if self.head is None else f"head {self.head}"
        return (f"self-attention of {self.source}: layer {self.layer + 1} of "
                f"{self.num_layers}, {h}")


@torch.no_grad()
def self_attention(text: str, tokenizer, model, layer: int = -1, head: int | None = None,
                   max_len: int | None = None, source: str = "T") -> AttentionMap:
    """Self-attention of ``model`` (a transformers encoder) over the tokens of ``text``:
    layer ``layer`` (negative: from the top), head ``head`` or the mean over heads (None)."""
    enc = tokenizer(text, truncation=max_len is not None, max_length=max_len,
                    return_tensors="pt")
    enc = {k: v.to(next(model.parameters()).device) for k, v in enc.items()}
    was_training = model.training
    model.eval()
    with eager_attention(model):
        out = model(**enc, output_attentions=True)
    model.train(was_training)
    atts = out.attentions
    if not atts:
        raise RuntimeError(f"{type(model).__name__} returned no attention weights")
    n_layers = len(atts)
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer must be in {-n_layers}..{n_layers - 1}, got {layer}")
    att = atts[layer][0].float()                                  # (H, T, T)
    n_heads = att.shape[0]
    if head is not None and not 0 <= head < n_heads:
        raise ValueError(f"head must be None (mean) or in 0..{n_heads - 1}, got {head}")
    m = att.mean(0) if head is None else att[head]
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    return AttentionMap(source, text, tokens, m.cpu().numpy(), layer % n_layers, n_layers,
                        head, n_heads)


def sample_attention(texts: Mapping[str, str], tokenizer, model, layer: int = -1,
                     head: int | None = None,
                     max_len: int | Mapping[str, int] | None = None) -> dict[str, AttentionMap]:
    """:func:`self_attention` of each source text, e.g. {"T": utterance, "A": ..., ...}."""
    out = {}
    for s, t in texts.items():
        ml = max_len.get(s) if isinstance(max_len, Mapping) else max_len
        out[s] = self_attention(t, tokenizer, model, layer, head, ml, source=s)
    return out


# --------------------------------------------------------------------------- the pipeline
def _pad_dim2(x: torch.Tensor, t: int) -> torch.Tensor:
    if x.ndim < 3 or x.shape[2] >= t:
        return x
    pad = torch.zeros((*x.shape[:2], t - x.shape[2], *x.shape[3:]), dtype=x.dtype,
                      device=x.device)
    return torch.cat([x, pad], dim=2)


class _Given(nn.Module):
    """Stands in for a model's source encoder: the features are computed outside."""

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return feats


class TokenPipeline(nn.Module):
    """Token ids (B, S, T) and masks (B, S, T) -> logits (B, K) of a trained run's model.

    ``model``: the trained model (loaded from ``best.pt``); ``cfg``: the run's TrainConfig;
    ``encoder``: the pretrained transformers encoder the features came from (frozen and
    partial regimes; None for full, whose model holds its own). ``context``: model inputs
    of fixed batch-mates, e.g. {"feats": (k, S, layers, D)}, evaluated with every sample
    (the official fusion's batch-mean gamma). ``match_store``: round the rebuilt features to
    float16 as the feature store keeps them."""

    def __init__(self, model: nn.Module, cfg, tokenizer, encoder: nn.Module | None = None,
                 dataset: str = "MIntRec2.0", sources: Sequence[str] = ("text", "A", "E", "I"),
                 context: Mapping[str, torch.Tensor] | None = None, match_store: bool = True):
        super().__init__()
        if cfg.regime in ("frozen", "partial") and encoder is None:
            raise ValueError(f"regime {cfg.regime!r} needs the pretrained encoder")
        self.model = model.eval()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.encoder = encoder.eval() if encoder is not None else None
        self.dataset = dataset
        self.sources = tuple(sources)
        self.match_store = match_store
        self.inputs_cache: dict = {}        # split inputs of batch-mates (attribute_case)
        self._text_encoder = None
        self._head_model = self.model
        if cfg.regime == "full":
            # the model's encoder would run once per source (S calls of the embedding
            # layer); here all sequences go through it in one call, then the model's head
            # reads the pooled features: the same numbers, one embedding call for LIG
            head = copy.copy(self.model)
            head._modules = dict(self.model._modules)
            head.encoder = _Given()
            self._head_model = head
        self.context = context

    @property
    def context(self) -> dict[str, torch.Tensor] | None:
        return self._context

    @context.setter
    def context(self, value: Mapping[str, torch.Tensor] | None) -> None:
        """Batch-mates' inputs in the trained model's form (frozen: feats; partial: hidden,
        mask); for the full regime token ids are encoded here once (no gradient)."""
        value = dict(value) if value else None
        if value is not None and self.cfg.regime == "full" and "ids" in value:
            with torch.no_grad():
                value = {"feats": self._full_features(value["ids"], value["mask"])}
        self._context = value

    # the encoder whose embeddings are attributed and whose attention is shown
    @property
    def text_encoder(self) -> nn.Module:
        if self.cfg.regime == "full":
            return self.model.encoder.encoder
        if self.cfg.regime == "frozen":
            return self.encoder
        if self._text_encoder is None:               # partial: base + the trained top layers
            enc = copy.deepcopy(self.encoder)
            k = len(self.model.encoder.layers)
            for i, layer in enumerate(self.model.encoder.layers):
                enc.encoder.layer[len(enc.encoder.layer) - k + i] = layer
            self._text_encoder = enc.eval()
        return self._text_encoder

    @property
    def embedding_layer(self) -> nn.Module:
        """The encoder's embedding module feeding the token path (attributed by LIG)."""
        return (self.model.encoder.encoder if self.cfg.regime == "full"
                else self.encoder).embeddings

    def max_lens(self) -> dict[str, int]:
        lt, ld = self.cfg.max_lens(self.dataset)
        return {s: lt if s == "text" else ld for s in self.sources}

    def tokenize(self, texts: Sequence[str]):
        """ids (1, S, T) long, mask (1, S, T) bool, and the real tokens of each source."""
        if len(texts) != len(self.sources):
            raise ValueError(f"{len(texts)} texts for the sources {self.sources}")
        lens = self.max_lens()
        seqs = [self.tokenizer(t, truncation=True, max_length=lens[s])["input_ids"]
                for s, t in zip(self.sources, texts)]
        t_max = max(len(x) for x in seqs)
        if self.cfg.pooling == "mean_unmasked":       # the unmasked mean sees the padding
            t_max = max(t_max, *lens.values())
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((1, len(seqs), t_max), pad, dtype=torch.long)
        mask = torch.zeros((1, len(seqs), t_max), dtype=torch.bool)
        for j, x in enumerate(seqs):
            ids[0, j, :len(x)] = torch.tensor(x)
            mask[0, j, :len(x)] = True
        tokens = {SOURCE_SHORT.get(s, s): self.tokenizer.convert_ids_to_tokens(x)
                  for s, x in zip(self.sources, seqs)}
        return ids, mask, tokens

    def baseline(self, ids: torch.Tensor, mask: torch.Tensor, kind: str = "pad") -> torch.Tensor:
        """The input with every real non-special token replaced by [PAD] (or [MASK])."""
        tok = self.tokenizer
        fill = {"pad": tok.pad_token_id, "mask": tok.mask_token_id}.get(kind)
        if fill is None:
            raise ValueError(f"baseline must be 'pad' or 'mask', got {kind!r}")
        special = torch.isin(ids, torch.tensor(sorted(set(tok.all_special_ids))))
        return torch.where(mask & ~special, torch.full_like(ids, fill), ids)

    def _full_features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from .models.encoders import pool
        b, s, t = ids.shape
        hs = self.model.encoder.encoder(input_ids=ids.reshape(b * s, t),
                                        attention_mask=mask.reshape(b * s, t).long()
                                        ).last_hidden_state
        return pool(hs, mask.reshape(b * s, t), self.cfg.pooling).reshape(b, s, -1)

    def features(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The trained model's inputs in the run's regime, from token ids (full regime: the
        pooled source features its head reads)."""
        cfg = self.cfg
        if cfg.regime == "full":
            return {"feats": self._full_features(ids, mask)}
        b, s, t = ids.shape
        out = self.encoder(input_ids=ids.reshape(b * s, t),
                           attention_mask=mask.reshape(b * s, t).long(),
                           output_hidden_states=True)
        if cfg.regime == "partial":
            h = out.hidden_states[-(cfg.finetune_layers + 1)]         # (B*S, T, D)
            h = h.reshape(b, s, t, -1)
            if self.match_store:
                h = h.half().float()
            return {"hidden": h, "mask": mask}
        hs = torch.stack(out.hidden_states[-cfg.layers:], dim=1).float()  # (B*S, L, T, D)
        if cfg.pooling == "cls":
            pooled = hs[:, :, 0]
        else:                                                         # masked mean, Eq. 5-6
            m = mask.reshape(b * s, 1, t, 1).to(hs.dtype)
            pooled = (hs * m).sum(2) / m.sum(2).clamp(min=1.0)
        feats = pooled.reshape(b, s, cfg.layers, -1)                  # (B, S, L, D)
        if self.match_store:
            feats = feats.half().float()
        return {"feats": feats}

    def outputs(self, ids: torch.Tensor, mask: torch.Tensor):
        """The model's outputs (logits, scores) for each row of ids, with the context."""
        inputs = self.features(ids, mask)
        if self.context is None:
            return [self._head_model(**inputs)]
        res = []
        for i in range(ids.shape[0]):
            batch = {}
            for k, v in inputs.items():
                c = self.context[k].to(v.dtype)
                t = max(v.shape[2], c.shape[2]) if v.ndim >= 3 and k != "feats" else None
                row = v[i:i + 1]
                if t is not None:
                    row, c = _pad_dim2(row, t), _pad_dim2(c, t)
                batch[k] = torch.cat([row, c])
            out = self._head_model(**batch)
            out.logits = out.logits[:1]
            out.scores = {k: v[:1] for k, v in out.scores.items()}
            res.append(out)
        return res

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([o.logits for o in self.outputs(ids, mask)])


# --------------------------------------------------------------------------- attribution
@dataclass
class TokenAttribution:
    """Per-token attribution of the target logit over each source's tokens."""

    sources: tuple[str, ...]                 # T, A, E, I
    tokens: dict[str, list[str]]
    scores: dict[str, np.ndarray]            # one number per token (summed over D)
    target: int
    target_label: str
    pred: int
    pred_label: str
    prob: float                              # softmax probability of the target
    logit: float
    baseline_logit: float
    delta: float                             # logit - baseline_logit - sum of attributions
    n_steps: int
    layer: str = "embeddings"
    alpha: dict[str, float] | None = None    # the model's alpha for the sample (LGSRR)
    key: str = ""
    split: str = ""
    stored_pred: int | None = None           # the run's prediction: predictions.csv (test),
    #                                          recomputed from best.pt in its eval batch (train)
    stored_alpha: dict[str, float] | None = None
    batch_mates: int = 0
    notes: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, float]:
        """Summed attribution per source."""
        return {s: float(self.scores[s].sum()) for s in self.sources}

    def normalized(self) -> dict[str, np.ndarray]:
        """Scores divided by their L2 norm over all tokens of all sources."""
        norm = float(np.sqrt(sum(float((v ** 2).sum()) for v in self.scores.values())))
        return {s: v / norm if norm > 0 else v for s, v in self.scores.items()}

    def frame(self) -> pd.DataFrame:
        rows = [{"source": s, "position": i, "token": t, "attribution": float(a)}
                for s in self.sources for i, (t, a) in enumerate(zip(self.tokens[s],
                                                                     self.scores[s]))]
        return pd.DataFrame(rows)

    def top_tokens(self, k: int = 8) -> pd.DataFrame:
        """The k tokens with the largest absolute attribution (special tokens excluded)."""
        f = self.frame()
        f = f[~f["token"].isin(["[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"])]
        return f.reindex(f["attribution"].abs().sort_values(ascending=False).index).head(k)

    def summary(self) -> dict:
        return {"key": self.key, "split": self.split, "target": self.target_label,
                "pred": self.pred_label, "prob": self.prob, "logit": self.logit,
                "baseline_logit": self.baseline_logit, "delta": self.delta,
                "relative_delta": abs(self.delta) / max(abs(self.logit - self.baseline_logit),
                                                        1e-12),
                "totals": self.totals(), "n_steps": self.n_steps, "layer": self.layer,
                "alpha": self.alpha, "stored_pred": self.stored_pred,
                "stored_alpha": self.stored_alpha, "batch_mates": self.batch_mates}


def attribute_tokens(pipeline: TokenPipeline, texts: Sequence[str], target: int | None = None,
                     n_steps: int = 32, baseline: str = "pad",
                     internal_batch_size: int | None = None,
                     labels: Sequence[str] | None = None) -> TokenAttribution:
    """LayerIntegratedGradients of the ``target`` logit (default: the predicted class) over
    the embedding layer of the pipeline's encoder, for the texts of all sources at once
    (see the module docstring for the baseline and what the numbers sum to)."""
    from captum.attr import LayerIntegratedGradients

    ids, mask, tokens = pipeline.tokenize(texts)
    base = pipeline.baseline(ids, mask, baseline)
    with torch.no_grad():
        out = pipeline.outputs(ids, mask)[0]
        logits = out.logits[0].float()
        base_logits = pipeline(base, mask)[0].float()
    pred = int(logits.argmax())
    target = pred if target is None else int(target)
    lig = LayerIntegratedGradients(pipeline, pipeline.embedding_layer)
    # the embedding layer sees the S sequences of one sample as S rows, so the attribution
    # has S rows where the input has 1: captum's own delta check refuses that shape, and the
    # completeness gap is computed here instead
    attr = lig.attribute(ids, baselines=base, additional_forward_args=(mask,), target=target,
                         n_steps=n_steps, internal_batch_size=internal_batch_size)
    delta = float(logits[target] - base_logits[target]) - float(attr.sum())
    per_token = attr.sum(-1).detach().float().reshape(len(pipeline.sources), -1)  # (S, T)
    shorts = tuple(SOURCE_SHORT.get(s, s) for s in pipeline.sources)
    scores = {s: per_token[j, :int(mask[0, j].sum())].numpy().astype(np.float64)
              for j, s in enumerate(shorts)}
    labels = list(labels) if labels is not None else get_spec(pipeline.dataset).labels
    alpha = None
    if "alpha" in out.scores:
        a = out.scores["alpha"][0].float().tolist()
        alpha = {s: float(v) for s, v in zip(("T", *ASPECT_SHORT), a)}
    return TokenAttribution(
        sources=shorts, tokens=tokens, scores=scores, target=target,
        target_label=labels[target], pred=pred, pred_label=labels[pred],
        prob=float(logits.softmax(-1)[target]), logit=float(logits[target]),
        baseline_logit=float(base_logits[target]), delta=delta,
        n_steps=n_steps, alpha=alpha)


def run_pipeline(run, seed: int | None = None, context: Mapping[str, torch.Tensor] | None = None,
                 model=None) -> TokenPipeline:
    """The :class:`TokenPipeline` of a run folder's seed: the trained model from ``best.pt``
    (through the method registry) behind the run's encoder."""
    from .cases import load_model, load_run
    from .modelpack import load_text_encoder, load_text_tokenizer

    run = load_run(run) if isinstance(run, (str, Path)) else run
    if model is None:
        model, cfg, method, _ = load_model(run, seed)
    else:
        cfg = run.train_config()
        from .models import get_method
        method = get_method(run.method)
    if cfg.regime == "full":
        tok, enc = load_text_tokenizer(cfg.encoder), None
    else:
        tok, enc = load_text_encoder(cfg.encoder)
    return TokenPipeline(model, cfg, tok, enc, dataset=run.dataset, sources=method.sources,
                         context=context)


def _eval_batch(run, split, position: int) -> list[int]:
    """Rows of ``position``'s evaluation batch: batches of the run's ``eval_batch_size`` in
    split order, as the run evaluated them."""
    eb = run.train_config().eval_batch_size
    start = (position // eb) * eb
    return list(range(start, min(start + eb, len(split))))


def _split_inputs(run, split, store=None, cache: dict | None = None):
    from .cases import split_inputs

    ck = (str(run.folder), split.split, len(split))
    if cache is not None and ck in cache:
        return cache[ck]
    inputs = split_inputs(run, split, store)[0]
    if cache is not None:
        cache[ck] = inputs
    return inputs


def batch_context(run, split, position: int, store=None,
                  cache: dict | None = None) -> tuple[dict[str, torch.Tensor], int]:
    """Model inputs of the other samples in ``position``'s evaluation batch, and their
    number. ``cache``: a dict keeping the split's inputs between calls."""
    mates = [i for i in _eval_batch(run, split, position) if i != position]
    if not mates:
        return {}, 0
    inputs = _split_inputs(run, split, store, cache)
    rows = inputs.batch(torch.as_tensor(mates), trim=False)
    rows.pop("labels", None)
    rows.pop("rank_order", None)
    return rows, len(mates)


def attribute_case(run, key: str, split: str = "test", seed: int | None = None,
                   root: str | Path | None = None, store=None, n_steps: int = 32,
                   target: int | None = None, baseline: str = "pad",
                   in_eval_batch: bool = True, pipeline: TokenPipeline | None = None
                   ) -> TokenAttribution:
    """Attribution of the run's prediction for sample ``key`` of ``split`` (the run's own
    subset of it) over the tokens of the utterance and the descriptions.

    With the official fusion and ``in_eval_batch``, the sample is evaluated among its
    evaluation batch-mates (see the module docstring), so the prediction attributed is the
    one of ``predictions.csv`` (test) / of the recomputed train predictions."""
    from .cases import load_run

    run = load_run(run) if isinstance(run, (str, Path)) else run
    sp = run.splits(root)[split]
    if key not in sp.keys:
        raise KeyError(f"{key!r} is not in the {split} samples of {run.folder.name} "
                       f"(max_{'train' if split == 'train' else 'eval'} subset)")
    pos = sp.keys.index(key)
    if pipeline is None:
        pipeline = run_pipeline(run, seed)
    fusion = run.options.get("fusion", "official")
    mates = 0
    pipeline.context = None
    if in_eval_batch and fusion == "official":
        ctx, mates = batch_context(run, sp, pos, store, cache=pipeline.inputs_cache)
        pipeline.context = ctx or None
    texts = [sp.texts[pos] if s == "text" else sp.descriptions(s)[pos] for s in pipeline.sources]
    res = attribute_tokens(pipeline, texts, target=target, n_steps=n_steps, baseline=baseline,
                           labels=sp.labels)
    res.key, res.split, res.batch_mates = key, split, mates
    stored = run.predictions(seed) if split == "test" else run.train_scores(seed)
    row = (stored[stored["key"].astype(str) == str(key)] if stored is not None
           else pd.DataFrame())
    if len(row):
        r = row.iloc[0]
        if "pred_id" in r:
            res.stored_pred = int(r["pred_id"])
        if "alpha_T" in r:
            res.stored_alpha = {s: float(r[f"alpha_{s}"]) for s in ("T", *ASPECT_SHORT)}
    if res.stored_pred is None:
        # the run folder keeps no train predictions: the run's model on its cached inputs,
        # in the sample's evaluation batch, as cases.case_table recomputes them
        rows = _eval_batch(run, sp, pos)
        batch = _split_inputs(run, sp, store, pipeline.inputs_cache).batch(
            torch.as_tensor(rows), trim=False)
        batch.pop("labels", None)
        batch.pop("rank_order", None)
        with torch.no_grad():
            res.stored_pred = int(pipeline.model(**batch).logits[rows.index(pos)].argmax())
    if res.stored_pred is not None and res.stored_pred != res.pred:
        res.notes.append(f"the pipeline predicts {res.pred_label}, the run's file "
                         f"{sp.labels[res.stored_pred]} (float noise of the rebuilt features)")
    return res
