"""MAG-BERT: the Multimodal Adaptation Gate (Rahman et al., ACL 2020) as MIntRec2.0 runs it.

The gate shifts every text token state z (B, T, D) by a displacement computed from the K
nonverbal streams, each first aligned to the text length T, then hands the shifted states
to the text encoder layers that follow the injection point (in the official MIntRec2.0
code: BERT's embedding output -> MAG -> all 24 layers of bert-large).

    s_k   = Align_k(stream_k) -> (B, T, D_k)                       alignment, see below
    g_k   = ReLU(W_gk [s_k ; z] + b_gk)                            Eq. 1-2, one gate per stream
    H     = sum_k g_k * (W_k s_k + b_k)                            Eq. 3
    alpha = min(||z||_2 / (||H||_2 + eps) * beta_shift, 1)         Eq. 5, per token
    z_bar = z + alpha * H                                          Eq. 4
    out   = Dropout(LayerNorm(z_bar))                              Sec. 3.1 / official code

Equation numbers are those of the ACL 2020 paper ("Integrating Multimodal Information in
Large Pretrained Transformers"). What the official code (thuiar/MIntRec2.0,
``backbones/single_turn/FusionNets/MAG_BERT.py``) adds and this file follows:

* no separate b_H of Eq. 3: each W_k is an ``nn.Linear`` with its own bias, so the bias sits
  inside the gated product, g_k * (W_k s_k + b_k);
* a zero displacement norm is replaced by 1 before the division (then + eps = 1e-6);
* the gate input is the concatenation [s_k ; z] (stream first).

K streams. The paper and the official code have two (video, audio). Here K is
``MAGConfig.num_streams``: one gate W_gk and one projection W_k per stream and H the sum of
the K gated displacements (Eq. 3 with the sum running over K terms). The sum is symmetric
in the streams, so for K = 2 this is exactly the official two-stream computation.

Alignment (``backbones/single_turn/SubNets/AlignNets.py``, ``AlignSubNet``; the MIntRec2.0
MAG-BERT config ``configs/single_turn/mag_bert.py`` sets ``need_aligned: True`` and
``aligned_method: ['ctc']``, so **CTC is the official default**):

* ``ctc`` (default) - :class:`CTCAlign`: a 2-layer LSTM reads the stream; its hidden state,
  of size text_len + 1, is used directly as logits over {blank, text position 1..text_len};
  the softmax per frame, blank dropped, says how much of frame l goes to text position t,
  and s_t = sum_l p_l(t) x_l (a soft, unnormalised assignment, as the official module).
* ``avg_pool`` - :class:`AvgPoolAlign`: the AlignSubNet's pooling mode, with the official
  frame grouping (frame i goes to text slot i mod T, padded up to a multiple of T).

A stream whose length already equals T is not aligned (the official per-modality rule);
``always_align=True`` aligns it anyway (useful when a description token sequence happens to
be padded to the text length: the official rule would then pair token t with token t).

Masks: the official code never masks padding (videos/audio are zero-padded at the end to 180
/ 400 frames and the pads go through the LSTM and into the weighted sum). Here, with
``mask_streams=True`` (default), padded frames are zeroed before the aligner reads them and
given no share of any text position (CTC) or left out of the mean (avg_pool; no
last-frame repetition), so a stream's padded frames cannot change the output.
``mask_streams=False`` is the official computation. The text mask is used only by the
encoder ``layers``, pooling and the scores: as in the official code every text position,
padding included, is shifted by the gate (padded positions are masked out afterwards).

Classifier: the official model takes BERT's pretrained pooler (dense + tanh on [CLS]), then
dropout (BERT's ``hidden_dropout_prob``, 0.1) and a linear layer. Here ``pool`` ("cls" or
"mean" over real tokens) picks the vector and an optional ``pooler`` module (pass BERT's
own pooler dense + tanh to reproduce the official head) is applied before the dropout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoders import SequenceLayers, split_streams
from .encoders import pool as pool_tokens
from .registry import BuildContext, ModelOutput, register_method

ALIGNMENTS = ("ctc", "avg_pool")
POOLS = ("cls", "mean")

# Training settings of the official MIntRec2.0 MAG-BERT run (not read by the module).
# configs/single_turn/mag_bert.py, methods/single_turn/MAG_BERT/manager.py,
# data/single_turn/__init__.py, examples/single_turn/run_mag_bert_baselines.sh.
MAG_BERT_MINTREC2 = dict(
    text_backbone="bert-large-uncased",    # run_mag_bert_baselines.sh; text dim 1024
    video_feats="swin-roi", audio_feats="wavlm",
    text_max_len=50, video_max_len=180, audio_max_len=400,   # zero-padded at the end
    text_dim=1024, video_dim=256, audio_dim=768,
    lr=5e-6,
    batch_size=16, eval_batch_size=8, test_batch_size=8,
    epochs=40,
    wait_patience=8,                       # early stopping on dev accuracy
    eval_monitor="acc",
    warmup_proportion=0.1,                 # linear warmup then linear decay
    weight_decay=0.03,                     # AdamW(correct_bias=False); no decay on bias/LayerNorm
    optimizer="AdamW",
)


@dataclass(frozen=True)
class MAGConfig:
    """Structure of the gate; defaults = the MIntRec2.0 MAG-BERT config."""

    num_streams: int = 2             # K nonverbal streams (2: video, audio)
    beta_shift: float = 0.005        # beta of Eq. 5 ('beta_shift')
    dropout: float = 0.5             # dropout after the gate's LayerNorm ('dropout_prob')
    classifier_dropout: float = 0.1  # before the classifier (BERT hidden_dropout_prob)
    eps: float = 1e-6                # in the denominator of Eq. 5 (official)
    align: str = "ctc"               # 'aligned_method' (official: ctc)
    text_len: int = 50               # max text length T_max; the CTC LSTM predicts T_max + 1
    ctc_layers: int = 2              # LSTM layers of the CTC aligner (official: 2)
    mask_streams: bool = True        # False = official: padded frames are aligned as frames
    always_align: bool = False       # False = official: a stream of length T is not aligned

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.align not in ALIGNMENTS:
            raise ValueError(f"align must be one of {list(ALIGNMENTS)}, got {self.align!r}")
        if self.num_streams < 1:
            raise ValueError(f"num_streams must be >= 1, got {self.num_streams}")
        if self.text_len < 1 or self.ctc_layers < 1:
            raise ValueError("text_len and ctc_layers must be >= 1")
        if self.beta_shift < 0 or self.eps <= 0:
            raise ValueError("beta_shift must be >= 0 and eps > 0")
        for name in ("dropout", "classifier_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


# ----------------------------------------------------------------------------- alignment

class CTCAlign(nn.Module):
    """Stream (B, L, D_k) -> (B, T, D_k) by a CTC-style soft assignment of frames to text
    positions (the official ``CTCModule``: LSTM logits over blank + T_max positions)."""

    def __init__(self, in_dim: int, text_len: int, num_layers: int = 2):
        super().__init__()
        self.text_len = text_len
        # the hidden state itself is the logit vector: class 0 = blank, 1..T_max = position
        self.lstm = nn.LSTM(in_dim, text_len + 1, num_layers=num_layers, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, T: int) -> torch.Tensor:
        if T > self.text_len:
            raise ValueError(f"text length {T} exceeds the CTC aligner's text_len "
                             f"{self.text_len}")
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)                   # padded frames -> 0
        logits, _ = self.lstm(x)                                     # (B, L, T_max + 1)
        p = logits.softmax(-1)[..., 1:T + 1]                         # (B, L, T) blank dropped
        if mask is not None:
            p = p * mask.unsqueeze(-1).to(p.dtype)                   # pads get no share
        return p.transpose(1, 2) @ x                                 # (B, T, D_k)


class AvgPoolAlign(nn.Module):
    """Stream (B, L, D_k) -> (B, T, D_k) by the official average pooling: the frames, padded
    up to P*T (P = ceil(L / T)), are read as (P, T) and averaged over P, i.e. text slot t is
    the mean of frames t, t + T, t + 2T, ... (the official ``view(B, P, T, D).mean(1)``).
    Official padding repeats the last frame; with a mask, pads and padded frames are simply
    left out of each mean (an empty slot is 0)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, T: int) -> torch.Tensor:
        B, L, D = x.shape
        P = -(-L // T)                                               # ceil(L / T)
        extra = P * T - L
        if mask is None:
            x = torch.cat([x, x[:, -1:].expand(B, extra, D)], 1)    # (B, P*T, D)
            return x.view(B, P, T, D).mean(1)                        # (B, T, D)
        m = mask.to(x.dtype)
        x = F.pad(x * m.unsqueeze(-1), (0, 0, 0, extra))             # (B, P*T, D)
        m = F.pad(m, (0, extra))                                     # (B, P*T)
        num = x.view(B, P, T, D).sum(1)                              # (B, T, D)
        den = m.view(B, P, T).sum(1).clamp(min=1.0)                  # (B, T)
        return num / den.unsqueeze(-1)


# ----------------------------------------------------------------------------- the gate

@dataclass
class GateOutput:
    hidden: torch.Tensor      # (B, T, D) Dropout(LayerNorm(z_bar)), what the layers read
    shifted: torch.Tensor     # (B, T, D) z_bar = z + alpha H, before LayerNorm (Eq. 4)
    displacement: torch.Tensor  # (B, T, D) H (Eq. 3)
    alpha: torch.Tensor       # (B, T) Eq. 5
    gates: torch.Tensor       # (B, T, K) mean over D of each gate g_k (Eq. 1-2)


class MAGate(nn.Module):
    """The Multimodal Adaptation Gate over text z (B, T, D) and K aligned streams
    (B, T, D_k) each."""

    def __init__(self, text_dim: int, stream_dims: Sequence[int], beta_shift: float,
                 dropout: float, eps: float = 1e-6):
        super().__init__()
        self.beta_shift = float(beta_shift)
        self.eps = float(eps)
        self.gate = nn.ModuleList(nn.Linear(d + text_dim, text_dim) for d in stream_dims)
        self.proj = nn.ModuleList(nn.Linear(d, text_dim) for d in stream_dims)
        self.norm = nn.LayerNorm(text_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, z: torch.Tensor, aligned: Sequence[torch.Tensor]) -> GateOutput:
        gates, H = [], torch.zeros_like(z)
        for s, W_g, W in zip(aligned, self.gate, self.proj):
            g = F.relu(W_g(torch.cat([s, z], dim=-1)))               # (B, T, D)  Eq. 1-2
            H = H + g * W(s)                                         # (B, T, D)  Eq. 3
            gates.append(g.mean(-1))
        z_norm = z.norm(p=2, dim=-1)                                 # (B, T)
        h_norm = H.norm(p=2, dim=-1)                                 # (B, T)
        h_norm = torch.where(h_norm == 0, torch.ones_like(h_norm), h_norm)
        alpha = (z_norm / (h_norm + self.eps) * self.beta_shift).clamp(max=1.0)  # Eq. 5
        shifted = z + alpha.unsqueeze(-1) * H                        # (B, T, D)  Eq. 4
        return GateOutput(hidden=self.dropout(self.norm(shifted)), shifted=shifted,
                          displacement=H, alpha=alpha, gates=torch.stack(gates, -1))


# ----------------------------------------------------------------------------- the model

class MAGBert(nn.Module):
    """Aligners -> MAG -> text encoder ``layers`` -> pool -> (pooler) -> dropout -> linear.

    ``layers``: a module ``(hidden (B, T, D), mask (B, T) bool) -> (B, T, D)``, the text
    encoder layers after the injection point (BERT: the whole encoder after the embeddings).
    ``pooler``: optional ``(B, D) -> (B, D)`` module after pooling (BERT's dense + tanh).
    """

    def __init__(self, cfg: MAGConfig, num_labels: int, text_dim: int,
                 stream_dims: Sequence[int], layers: nn.Module, pool: str = "cls",
                 pooler: nn.Module | None = None):
        super().__init__()
        stream_dims = [int(d) for d in stream_dims]
        if len(stream_dims) != cfg.num_streams:
            raise ValueError(f"cfg.num_streams is {cfg.num_streams} but {len(stream_dims)} "
                             f"stream dims were given")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {list(POOLS)}, got {pool!r}")
        self.cfg = cfg
        self.pool = pool
        if cfg.align == "ctc":
            self.align = nn.ModuleList(CTCAlign(d, cfg.text_len, cfg.ctc_layers)
                                       for d in stream_dims)
        else:
            self.align = nn.ModuleList(AvgPoolAlign() for _ in stream_dims)
        self.mag = MAGate(text_dim, stream_dims, cfg.beta_shift, cfg.dropout, cfg.eps)
        self.layers = layers
        self.pooler = pooler if pooler is not None else nn.Identity()
        self.dropout = nn.Dropout(cfg.classifier_dropout)
        self.classifier = nn.Linear(text_dim, num_labels)

    def align_streams(self, streams: Sequence[torch.Tensor],
                      stream_masks: Sequence[torch.Tensor | None], T: int
                      ) -> list[torch.Tensor]:
        """Each stream (B, L_k, D_k) -> (B, T, D_k)."""
        out = []
        for x, m, align in zip(streams, stream_masks, self.align):
            x = x.float()
            m = m.bool() if (m is not None and self.cfg.mask_streams) else None
            if x.shape[1] == T and not self.cfg.always_align:        # official: no alignment
                out.append(x if m is None else x * m.unsqueeze(-1).to(x.dtype))
            else:
                out.append(align(x, m, T))                           # (B, T, D_k)
        return out

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor,
                streams: Sequence[torch.Tensor],
                stream_masks: Sequence[torch.Tensor | None] | None = None,
                labels: torch.Tensor | None = None) -> ModelOutput:
        """text (B, T, D_t), text_mask (B, T) bool; streams K x (B, L_k, D_k) with masks
        K x (B, L_k) bool (True = real; None = all real); labels (B,)."""
        K = self.cfg.num_streams
        if len(streams) != K:
            raise ValueError(f"expected {K} streams, got {len(streams)}")
        stream_masks = list(stream_masks) if stream_masks is not None else [None] * K
        if len(stream_masks) != K:
            raise ValueError(f"expected {K} stream masks, got {len(stream_masks)}")
        text_mask = text_mask.bool()
        B, T, _ = text.shape

        aligned = self.align_streams(streams, stream_masks, T)      # K x (B, T, D_k)
        g = self.mag(text, aligned)                                  # (B, T, D)
        hs = self.layers(g.hidden, text_mask)                        # (B, T, D)
        f = self.pooler(pool_tokens(hs, text_mask, self.pool))      # (B, D)
        logits = self.classifier(self.dropout(f))                    # (B, num_labels)

        m = text_mask.to(g.alpha.dtype)                              # (B, T)
        n = m.sum(1, keepdim=True).clamp(min=1.0)                    # (B, 1)
        scores = {
            # mean over real tokens: how far the nonverbal shift moved each sample
            "mag_alpha": ((g.alpha * m).sum(1, keepdim=True) / n).detach(),           # (B, 1)
            "mag_gate": ((g.gates * m.unsqueeze(-1)).sum(1) / n).detach(),             # (B, K)
        }
        out = ModelOutput(logits=logits, scores=scores)
        if labels is not None:
            out.loss = out.losses["cls"] = F.cross_entropy(logits, labels)
        return out


# ----------------------------------------------------------------------------- the method

@dataclass(frozen=True)
class MAGOptions:
    """The registered method's structural options (``--set``-free: ``options=`` / CLI
    ``--ablate``-style key=value), the MIntRec2.0 values by default."""

    beta_shift: float = 0.005
    dropout: float = 0.5
    align: str = "ctc"
    mask_streams: bool = True        # False: the official unmasked alignment

    def validate(self) -> None:
        MAGConfig(beta_shift=self.beta_shift, dropout=self.dropout, align=self.align)


class MAGBertMethod(nn.Module):
    """MAG-BERT on the partial regime's batch: hidden (B, S, T, D) after layer L-k and
    mask (B, S, T). Source 0, the utterance, is the text; sources 1..3, the three
    VideoLLaMA2 descriptions' token states, stand in for the video and audio streams (the
    benchmarks' nonverbal features do not exist here): every table names the substitution.
    The gate sits at the input of the fine-tuned top layers (official: after BERT's
    embeddings, before all of its layers)."""

    def __init__(self, core: MAGBert):
        super().__init__()
        self.core = core

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, labels=None,
                rank_order=None) -> ModelOutput:
        text, text_mask, streams, stream_masks = split_streams(hidden, mask)
        return self.core(text, text_mask, streams, stream_masks, labels)


@register_method("mag_bert", sources=("text", "A", "E", "I"), options=MAGOptions,
                 regimes=("partial",), scores={"mag_alpha": ("alpha",),
                                               "mag_gate": ("A", "E", "I")},
                 summary="MAG-BERT (descriptions as the nonverbal streams)")
def build_mag_bert(ctx: BuildContext) -> MAGBertMethod:
    tc, o = ctx.train_config, ctx.options
    if tc.pooling not in POOLS:
        raise ValueError(f"mag_bert pools 'cls' or 'mean', not {tc.pooling!r}")
    d = ctx.encoder.out_dim
    k = 3
    cfg = MAGConfig(num_streams=k, beta_shift=o.beta_shift, dropout=o.dropout, align=o.align,
                    mask_streams=o.mask_streams, always_align=True,
                    text_len=(max(tc.max_lens(ctx.dataset)) if ctx.dataset
                              else max(tc.text_max_len, tc.desc_max_len) or 50),
                    classifier_dropout=tc.classifier_dropout)
    return MAGBertMethod(MAGBert(cfg, ctx.num_labels, d, [d] * k,
                                 SequenceLayers(ctx.encoder), pool=tc.pooling))
