"""XMEI-Qwen: an LQ-Former per modality feeding a LoRA-tuned causal LM that answers with the
emotion, the intent and an explanation (JX4MEI task; issue #13).

    captions c_m (tokens) -> E_llm(c_m)[:16]                     (B, 16, D_llm) frozen table
    queries  Q_m = [W_c E_llm(c_m) ; learnable q_m]              (B, 32, H)
    LQ-Former (2 post-LN BERT-style layers, each: self-attention over the queries,
               cross-attention from the queries to the modality features F_m with their
               mask, feed-forward)                               (B, 32, H)
    Z_m = W_o LQ(Q_m, F_m)                                       (B, 32, D_llm)
    prompt embeddings: the placeholder positions of modality m are replaced by Z_m
    LLM (LoRA on the attention and MLP projections) -> "The user's emotion is {e}, intent
    is {i}. The underlying reason is: {x}." ; loss on the answer tokens only.

Without modality features (``modalities=()``: IEMOCAP-DA here, no clips) the model is the
LoRA-tuned LLM reading the utterance and the captions as text. Presets: ``xmei`` (the
paper's setting: LoRA r 64, alpha 32, dropout 0.05; BERT-base-sized LQ-Former) and ``cpu``
(LoRA r 8, a narrow LQ-Former, few steps). The SFT train / generate / evaluate logic lives
in :mod:`mir_core.xmei.sft`; this file is the model only.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_method

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class XMEIConfig:
    """Model and SFT settings (frozen: ``with_(...)`` returns a changed copy)."""

    llm: str = "smollm2-135m-instruct"    # local name, HF id (Qwen/Qwen2.5-7B-Instruct) or folder
    # LoRA (peft)
    lora_r: int = 64
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LORA_TARGETS
    # LQ-Former, one per modality
    modalities: tuple[str, ...] = ()      # e.g. ("video", "audio"); () = text + captions only
    lq_layers: int = 2
    lq_hidden: int = 768
    lq_heads: int = 12
    lq_dropout: float = 0.1
    caption_queries: int = 16             # caption tokens used as queries
    learnable_queries: int = 16
    # prompt
    caption_aspects: tuple[str, ...] = ("A", "E", "I")   # released descriptions in the prompt
    caption_max_tokens: int = 96          # per caption, in the prompt
    text_max_tokens: int = 96             # the utterance
    with_reason: bool = True              # target has "The underlying reason is: ..." when known
    # SFT
    lr: float = 2e-4
    epochs: int = 1
    max_steps: int | None = None          # None: epochs over the train set
    batch_size: int = 4
    grad_accum: int = 1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    gradient_checkpointing: bool = False
    # generation
    max_new_tokens: int = 64
    eval_batch_size: int = 8

    def with_(self, **changes) -> "XMEIConfig":
        bad = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if bad:
            raise ValueError(f"XMEIConfig has no field(s) {bad}")
        for k in ("lora_targets", "modalities", "caption_aspects"):
            if k in changes and changes[k] is not None:
                changes[k] = tuple(changes[k])
        return dataclasses.replace(self, **changes)

    @property
    def num_queries(self) -> int:
        return self.caption_queries + self.learnable_queries


PRESETS: dict[str, XMEIConfig] = {
    # the paper's setting (Qwen2.5-7B-Instruct by name on a GPU)
    "xmei": XMEIConfig(llm="Qwen/Qwen2.5-7B-Instruct", modalities=("video", "audio"),
                       epochs=3, batch_size=4, grad_accum=4, precision="bf16",
                       max_new_tokens=128),
    # the offline CPU setting: SmolLM2-135M, small LoRA, a few hundred steps
    "cpu": XMEIConfig(lora_r=8, lora_alpha=16, lq_hidden=128, lq_heads=4,
                      caption_aspects=("E",), caption_max_tokens=48, text_max_tokens=64,
                      lr=5e-4, batch_size=4, max_new_tokens=24, eval_batch_size=16),
}


def preset(name: str, **overrides) -> XMEIConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown XMEI preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name].with_(**overrides)


# =========================================================================== LQ-Former
@dataclass
class LQOutput:
    queries: torch.Tensor                     # (B, Q, D_llm) projected into the LLM space
    cross_attention: list[torch.Tensor]       # per layer (B, Q, S), mean over heads


class LQLayer(nn.Module):
    """Post-LN BERT-style block: self-attention, cross-attention to the features, FFN."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(),
                                 nn.Linear(4 * hidden, hidden))
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(hidden) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, q_pad: torch.Tensor, feats: torch.Tensor,
                f_pad: torch.Tensor, empty: torch.Tensor):
        # q (B, Q, H); q_pad (B, Q) True = padding; feats (B, S, H); f_pad (B, S); empty (B,)
        s, _ = self.self_attn(q, q, q, key_padding_mask=q_pad, need_weights=False)
        q = self.ln1(q + self.drop(s))
        c, w = self.cross_attn(q, feats, feats, key_padding_mask=f_pad, need_weights=True,
                               average_attn_weights=True)         # (B, Q, H), (B, Q, S)
        keep = (~empty).to(c.dtype)[:, None, None]                 # a clip without features
        c, w = c * keep, w * keep.to(w.dtype)                      # adds nothing
        q = self.ln2(q + self.drop(c))
        q = self.ln3(q + self.drop(self.ffn(q)))
        return q, w


class LQFormer(nn.Module):
    """Caption-token queries + learnable queries cross-attending to one modality's features."""

    def __init__(self, feat_dim: int, llm_dim: int, cfg: XMEIConfig):
        super().__init__()
        h = cfg.lq_hidden
        self.n_caption = cfg.caption_queries
        self.feat_in = nn.Sequential(nn.Linear(feat_dim, h), nn.LayerNorm(h))
        self.caption_in = nn.Linear(llm_dim, h)
        self.learnable = nn.Parameter(torch.randn(cfg.learnable_queries, h) * 0.02)
        self.pos = nn.Parameter(torch.zeros(cfg.num_queries, h))
        self.layers = nn.ModuleList(LQLayer(h, cfg.lq_heads, cfg.lq_dropout)
                                    for _ in range(cfg.lq_layers))
        self.out = nn.Linear(h, llm_dim)

    def forward(self, caption_emb: torch.Tensor, caption_mask: torch.Tensor,
                feats: torch.Tensor, feat_mask: torch.Tensor) -> LQOutput:
        # caption_emb (B, Qc, D_llm) caption token embeddings; caption_mask (B, Qc) True = token
        # feats (B, S, Df); feat_mask (B, S) True = a real position
        B = feats.shape[0]
        cap = self.caption_in(caption_emb.to(self.caption_in.weight.dtype))   # (B, Qc, H)
        q = torch.cat([cap, self.learnable.expand(B, -1, -1)], dim=1) + self.pos  # (B, Q, H)
        q_pad = torch.cat([~caption_mask.bool(),
                           torch.zeros(B, self.learnable.shape[0], dtype=torch.bool,
                                       device=q.device)], dim=1)               # (B, Q)
        f = self.feat_in(feats.to(self.caption_in.weight.dtype))               # (B, S, H)
        f_pad = ~feat_mask.bool()
        empty = f_pad.all(dim=1)                                               # (B,)
        f_pad = f_pad & ~empty[:, None]       # all-masked rows: attend anywhere, zeroed after
        weights = []
        for layer in self.layers:
            q, w = layer(q, q_pad, f, f_pad, empty)
            weights.append(w)
        return LQOutput(self.out(q), weights)                                  # (B, Q, D_llm)


# =========================================================================== the model
@dataclass
class XMEIOutput:
    loss: torch.Tensor | None                     # mean CE over answer tokens
    logits: torch.Tensor | None                   # (B, L, V) when asked for
    cross_attention: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    n_target_tokens: int = 0


def lora_config(cfg: XMEIConfig, lm: nn.Module):
    """peft LoraConfig on the attention and MLP projections the LM actually has."""
    from peft import LoraConfig
    names = {n.rsplit(".", 1)[-1] for n, m in lm.named_modules() if isinstance(m, nn.Linear)}
    targets = [t for t in cfg.lora_targets if t in names]
    if not targets:
        raise ValueError(f"none of the LoRA targets {list(cfg.lora_targets)} is a Linear layer "
                         f"of {type(lm).__name__} (its Linear names: {sorted(names)[:12]})")
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")


class XMEIQwen(nn.Module):
    """LoRA-wrapped causal LM + one LQ-Former per modality (``feature_dims``)."""

    def __init__(self, cfg: XMEIConfig, lm: nn.Module, feature_dims: dict[str, int] | None = None):
        super().__init__()
        from peft import get_peft_model
        self.cfg = cfg
        if cfg.gradient_checkpointing:
            lm.gradient_checkpointing_enable()
            lm.enable_input_require_grads()
        with warnings.catch_warnings():           # peft asks a deprecated transformers flag
            warnings.simplefilter("ignore", FutureWarning)
            self.lm = get_peft_model(lm, lora_config(cfg, lm))
        dim = lm.get_input_embeddings().embedding_dim
        dims = dict(feature_dims or {})
        missing = [m for m in cfg.modalities if m not in dims]
        if missing:
            raise ValueError(f"modalities {missing} have no feature dimension (given: {dims})")
        self.modalities = tuple(cfg.modalities)
        self.lq = nn.ModuleDict({m: LQFormer(dims[m], dim, cfg) for m in self.modalities})

    @property
    def embed(self) -> nn.Module:
        return self.lm.get_input_embeddings()

    def input_embeddings(self, batch: dict) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """Token embeddings with each modality's placeholder positions replaced by its
        LQ-Former output. ``batch['slots']`` (B, L): -1 for text, k at the k-th modality's
        placeholders (exactly ``num_queries`` per sample, in order)."""
        emb = self.embed(batch["input_ids"])                                   # (B, L, D)
        attn: dict[str, list[torch.Tensor]] = {}
        if not self.modalities:
            return emb, attn
        slots = batch["slots"]
        emb = emb.clone()
        for k, m in enumerate(self.modalities):
            cap_ids = batch[f"{m}_caption_ids"]                                # (B, Qc)
            with torch.no_grad():
                cap = self.embed(cap_ids)                                      # (B, Qc, D)
            out = self.lq[m](cap, batch[f"{m}_caption_mask"], batch[f"{m}_feats"],
                             batch[f"{m}_mask"])
            where = slots == k                                                 # (B, L)
            need = where.sum(dim=1)
            if not bool((need == self.cfg.num_queries).all()):
                raise ValueError(f"each sample needs {self.cfg.num_queries} {m} placeholders; "
                                 f"found {need.tolist()}")
            emb[where] = out.queries.reshape(-1, out.queries.shape[-1]).to(emb.dtype)
            attn[m] = out.cross_attention
        return emb, attn

    def forward(self, batch: dict, return_logits: bool = False) -> XMEIOutput:
        emb, attn = self.input_embeddings(batch)
        labels = batch.get("labels")
        L = emb.shape[1]
        keep = 0 if return_logits else 1                  # 0 = logits at every position
        if labels is not None and not return_logits:
            # logits only from the first answer position on (the prompt has no loss)
            has = (labels != -100).any(dim=0).nonzero()
            keep = L - max(int(has[0]) - 1, 0) if len(has) else 1
        out = self.lm(inputs_embeds=emb, attention_mask=batch["attention_mask"],
                      logits_to_keep=keep)
        loss, n = None, 0
        if labels is not None:
            K = out.logits.shape[1]
            logits = out.logits[:, :-1].float()                                # (B, K-1, V)
            target = labels[:, L - K + 1:]                                     # (B, K-1)
            n = int((target != -100).sum())
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                   ignore_index=-100)
        return XMEIOutput(loss, out.logits if return_logits else None, attn, n)

    @torch.no_grad()
    def generate(self, batch: dict, max_new_tokens: int, pad_token_id: int,
                 eos_token_id: int | list[int] | None) -> torch.Tensor:
        """Greedy answers (new tokens only), inputs left-padded."""
        emb, _ = self.input_embeddings(batch)
        return self.lm.generate(inputs_embeds=emb, attention_mask=batch["attention_mask"],
                                max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=pad_token_id, eos_token_id=eos_token_id)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _not_a_classifier(ctx):
    raise TypeError("xmei_qwen is a generative method: train it with `python -m mir_core xmei` "
                    "or mir_core.xmei.run_xmei, not with the classification loop")


register_method("xmei_qwen", sources=("text", "A", "E", "I"), kind="generative", regimes=(),
                summary="LQ-Former + LoRA-tuned LLM answering emotion, intent and a reason "
                        "(mir_core.xmei)")(_not_a_classifier)
