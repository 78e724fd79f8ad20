"""A-MESS: Anchor-based Multimodal Embedding with Semantic Synchronization (Sec. III).

A model on explicit tensors, registered at the end of this file as the method ``amess``
(partial regime; the three VideoLLaMA2 descriptions stand in for the nonverbal streams,
K = 3; the label descriptions come from :mod:`mir_core.label_descriptions`). E_t: the text
token hidden states entering the text encoder layers, (B, T, D); K nonverbal streams E_k,
(B, L_k, D_k) (the paper: video and audio, K = 2); their masks, True = real.

A-ME, Anchor-based Multimodal Embedding (Sec. III-B, Fig. 3), for every stream k:

    E'_k   = Align(E_k)                       (B, T, D_k)   CTC alignment as MAG-BERT [8]
    E''_k  = CrossAttn(q=E_t, k=v=E'_k)       (B, T, D)     dimension alignment
    S_k    = cos(E''_k, E_t)                  (B, T, T)     [stream position, text token]
    r_k    = s_1st / s_2nd  (per row of S_k)  (B, T)        nearest-neighbour ratio  Eq. 4, 6
    A_k    = E''_k[top-k(r_k)]                (B, k, D)     anchors                  Eq. 5, 7
    ACA_k  = CrossAttn(q=A_k, k=v=A_{other})  (B, k, D)                              Eq. 8
    A~_k   = FFN(A_k + ACA_k)                 (B, k, D)                              Eq. 9-10
    M_k    = TCA(q=E_t, k=v=A~_k)             (B, T, D)     temporal cross-attention Eq. 11-12
    E_m    = Dropout(LayerNorm(E_t + sum_k M_k))                                     Eq. 13
    H      = Layers(E_m, mask);  z = Pool(H)  (B, T, D), (B, D)                      Eq. 14

SS, Semantic Synchronization (Sec. III-C):

    T_s    = MLP_2(mean_t H)                  (B, D_s)      the synchronization token
    L_ss   = -1/N sum_i log( sum_P e^{cos(T_s,P)/tau} /
                             (sum_P e^{cos(T_s,P)/tau} + sum_N e^{cos(T_s,N)/tau}) )  Eq. 15
    y_hat  = Linear(LayerNorm([z ; T_s]))     (B, C)                                 Eq. 16
    L      = CE(y_hat, y) + ss_weight * L_ss                                         Eq. 17

P: the M description embeddings of the sample's label, N: those of every other label
(SentenceBERT sentence embeddings, (C, M, D_s), computed outside the model).

Readings of the paper (its equations are not in the text we have; every choice below is
ours where the prose leaves it open):

* Alignment (Eq. 4's E'_k): "the same method as [8]", i.e. the MIntRec / MIntRec2.0
  MAG-BERT setting ``aligned_method='ctc'``: a 2-layer LSTM predicts, for every input
  frame, a softmax over ``text_len`` + 1 output slots (slot 0 = blank), and E'_k is that
  probability matrix times the frames. Padded frames are zeroed before the LSTM, so E'_k
  never depends on padded values. Unlike the official
  code, a stream is aligned even when its length happens to equal T. Aligned slot j is
  aligned to text token j, so E'_k shares the text mask.
* Anchors: the ratio is taken on the cosine similarities themselves (Lowe's ratio test
  with similarities: a large ratio = a distinctive match). Cosines can be <= 0, so the
  denominator is clamped to ``ratio_eps``. Neighbours are the real text tokens only;
  candidates are the real positions of E''_k only (= real text positions, E''_k being
  indexed by the text queries). With one real text token there is no second neighbour and
  the ratio is s_1st / max(s_1st, eps) (1 when s_1st > eps). The anchors are gathered from
  E''_k ("the corresponding tokens in the original embeddings"), so gradients reach them.
  With fewer than k real positions, only that many anchors exist: the other slots are
  marked invalid (zeroed, masked as keys everywhere, position -1 / ratio NaN in scores).
* K streams (Eq. 8-10 generalised): the anchors of stream k attend to the anchors of all
  other streams, concatenated (B, (K-1)k, D). For K = 2 this is exactly ACA_{v->a} and
  ACA_{a->v}. Each stream has its own ACA, FFN and TCA (the paper's per-direction blocks).
* Eq. 9: A~_k = FFN(A_k + ACA_k), FFN = Linear-ReLU-Dropout-Linear (Vaswani [21]),
  width ``ffn_mult * D``. ACA / TCA are ``nn.MultiheadAttention`` (its in-projections are
  the paper's three linear projections Q, K, V; it adds an output projection).
* TCA's query (Eq. 11-12) is E_t: "fuse primary information and restore sequence".
* Eq. 13 adds E_t to the stream embeddings before LayerNorm (the encoder that follows is a
  pretrained text encoder; A-ME "assists the representation of the textual modality").
* SS token: the paper's "projected into a single token by normalizing the dimension of the
  sequence and the two-layer MLP" is read as: masked mean of H over the sequence, then
  Linear(D, D)-GELU-Linear(D, D_s) to the description dimension (its appendix: "the
  initial token by averaging the feature"). The sentence embeddings stay fixed.
* The implementation details set one symbol "to 0.7 as [6]"; the symbol is lost in our
  copy. We read it as the temperature tau of Eq. 15 (the only hyper-parameter the SS text
  names) and give Eq. 17 a weight ``ss_weight`` = 1 (no weight is described).
* The MIntRec2.0 UNKNOWN (out-of-scope) label has no descriptions and no SS term
  (the paper's appendix): list such labels in ``ss_exclude_labels``; their samples get CE
  only and their (ignored, may be zero) description rows are no negatives.
* w/o SS (Table III): no L_ss and no T_s, the classifier sees z alone. w/o A-ME: E_t goes
  straight to the layers, the streams are not read.

Paper settings (Sec. III-D) used as defaults: text length 50 (video 180, audio 400 frames
need no setting here), D = 1024, k = 8 anchors, M = 3 descriptions (Appendix A),
tau = 0.7. Training settings of the paper, not model settings: batch 8, 40 epochs,
early-stopping patience 8, AdamW, lr 2e-5. Not in the paper (ours): heads 8, dropout 0.1,
FFN width 4D, D_s = 768, CLS pooling, stream dims (256, 768) = MIntRec2.0's swin / wavlm
features.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoders import POOLINGS, SequenceLayers, pool, split_streams
from .registry import BuildContext, ModelOutput, register_method

__all__ = ["AMESSConfig", "AMESS", "AnchorEmbedding", "AMEOutput", "CTCAlign",
           "anchor_ratio", "select_anchors", "triplet_contrastive_loss",
           "check_label_desc", "AMESSOptions", "AMESSMethod", "build_amess"]


# -----------------------------------------------------------------------------
# config

@dataclass(frozen=True)
class AMESSConfig:
    num_labels: int
    text_dim: int = 1024                       # D, all modalities unified to it (III-D)
    text_len: int = 50                         # max text length = CTC output slots (III-D)
    num_streams: int = 2                       # K nonverbal streams (paper: video, audio)
    stream_dims: tuple[int, ...] = (256, 768)  # D_k of each stream (MIntRec2.0 swin, wavlm)
    stream_names: tuple[str, ...] = ("video", "audio")   # for the score names
    num_anchors: int = 8                       # k, "anchor selection number" (III-D, IV-F)
    num_heads: int = 8                         # attention heads of every cross-attention
    ffn_mult: int = 4                          # FFN width = ffn_mult * D (Eq. 9-10)
    dropout: float = 0.1                       # Eq. 13 dropout, FFN dropout
    attn_dropout: float = 0.1                  # inside the cross-attentions
    ratio_eps: float = 1e-6                    # clamp of the 2nd-neighbour cosine (Eq. 4, 6)
    pooling: str = "cls"                       # z = Pool(H) for the classifier (Eq. 14, 16)
    desc_dim: int = 768                        # D_s of the SentenceBERT embeddings
    num_descriptions: int = 3                  # M descriptions per label (Appendix A)
    temperature: float = 0.7                   # tau in Eq. 15 (III-D: "0.7 as [6]")
    ss_weight: float = 1.0                     # weight of L_ss in Eq. 17
    ss_exclude_labels: tuple[int, ...] = ()    # labels without SS (MIntRec2.0 UNKNOWN)
    use_ame: bool = True                       # False: "w/o A-ME"
    use_ss: bool = True                        # False: "w/o SS"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        def bad(msg: str):
            raise ValueError(f"AMESSConfig: {msg}")
        if self.num_labels < 2:
            bad(f"num_labels must be >= 2, got {self.num_labels}")
        if self.text_dim < 1 or self.num_heads < 1 or self.text_dim % self.num_heads:
            bad(f"text_dim ({self.text_dim}) must be a positive multiple of num_heads "
                f"({self.num_heads})")
        if self.text_len < 1 or self.num_anchors < 1 or self.ffn_mult < 1:
            bad("text_len, num_anchors and ffn_mult must be >= 1")
        if self.num_streams < 2:
            bad(f"num_streams must be >= 2 (anchor cross-attention needs another stream), "
                f"got {self.num_streams}")
        if len(self.stream_dims) != self.num_streams or min(self.stream_dims) < 1:
            bad(f"stream_dims must give {self.num_streams} positive dims, got "
                f"{self.stream_dims}")
        if (len(self.stream_names) != self.num_streams
                or len(set(self.stream_names)) != self.num_streams):
            bad(f"stream_names must give {self.num_streams} distinct names, got "
                f"{self.stream_names}")
        if self.pooling not in POOLINGS:
            bad(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.attn_dropout < 1.0):
            bad("dropout and attn_dropout must be in [0, 1)")
        if self.temperature <= 0 or self.ss_weight < 0 or self.ratio_eps <= 0:
            bad("temperature and ratio_eps must be > 0, ss_weight >= 0")
        if self.desc_dim < 1 or self.num_descriptions < 1:
            bad("desc_dim and num_descriptions must be >= 1")
        if any(not 0 <= c < self.num_labels for c in self.ss_exclude_labels):
            bad(f"ss_exclude_labels must be label ids in 0..{self.num_labels - 1}, got "
                f"{self.ss_exclude_labels}")
        if len(set(self.ss_exclude_labels)) >= self.num_labels - 1 and self.use_ss:
            bad("ss_exclude_labels leaves fewer than 2 labels for the contrastive loss")


# -----------------------------------------------------------------------------
# anchors (Eq. 4-7) and the contrastive loss (Eq. 15): plain functions, tested directly

NEG_INF = float("-inf")


@torch.no_grad()
def anchor_ratio(stream: torch.Tensor, text: torch.Tensor, mask: torch.Tensor,
                 eps: float = 1e-6) -> torch.Tensor:
    """Eq. 4 / 6 reliability score. stream E''_k (B, T, D), text E_t (B, T, D), mask (B, T)
    -> (B, T): for stream position j, the first over the second highest cosine similarity
    to the real text tokens; -inf at padded positions (never an anchor)."""
    mask = mask.bool()
    sim = F.normalize(stream, dim=-1) @ F.normalize(text, dim=-1).transpose(1, 2)  # (B, T, T)
    sim = sim.masked_fill(~mask[:, None, :], NEG_INF)      # padded text tokens: no neighbour
    if sim.shape[-1] >= 2:
        top2 = sim.topk(2, dim=-1).values                  # (B, T, 2) 1st, 2nd neighbour
        s1, s2 = top2[..., 0], top2[..., 1]
    else:
        s1 = s2 = sim[..., 0]
    s2 = torch.where(torch.isinf(s2), s1, s2)              # one real token: no 2nd neighbour
    ratio = s1 / s2.clamp(min=eps)                         # (B, T)
    return ratio.masked_fill(~mask, NEG_INF)


@torch.no_grad()
def select_anchors(ratio: torch.Tensor, mask: torch.Tensor, k: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k positions by ratio (Eq. 5 / 7). ratio (B, T) with -inf at padding, mask (B, T)
    -> positions (B, k) long, valid (B, k) bool, their ratios (B, k), best first. Slots
    beyond the number of real positions are invalid (position 0 as a placeholder)."""
    b, t = ratio.shape
    vals, pos = ratio.topk(min(k, t), dim=-1)              # (B, k')
    valid = mask.bool().gather(1, pos)                     # padded picks only when k > n_real
    if k > t:
        extra = k - t
        pos = torch.cat([pos, pos.new_zeros(b, extra)], 1)
        valid = torch.cat([valid, valid.new_zeros(b, extra)], 1)
        vals = torch.cat([vals, vals.new_full((b, extra), NEG_INF)], 1)
    pos = pos.masked_fill(~valid, 0)
    return pos, valid, vals


def triplet_contrastive_loss(tokens: torch.Tensor, labels: torch.Tensor,
                             label_desc: torch.Tensor, temperature: float,
                             label_ok: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 15. tokens T_s (N, D_s), labels (N,), label_desc (C, M, D_s), label_ok (C,) bool
    (False: label without SS: its samples are skipped, its descriptions are no negatives).
    Positives: the M descriptions of the sample's label; negatives: all descriptions of the
    other (kept) labels; mean over the kept samples (0 when there is none)."""
    c, m, _ = label_desc.shape
    if label_ok is None:
        label_ok = torch.ones(c, dtype=torch.bool, device=tokens.device)
    keep = label_ok[labels]                                          # (N,)
    if not bool(keep.any()):
        return tokens.sum() * 0.0
    tokens, labels = tokens[keep], labels[keep]                      # (n, D_s), (n,)
    desc = F.normalize(label_desc.to(tokens.dtype), dim=-1)          # (C, M, D_s)
    sim = torch.einsum("nd,cmd->ncm", F.normalize(tokens, dim=-1), desc) / temperature
    pos = F.one_hot(labels, c).bool()[:, :, None].expand(-1, -1, m)  # (n, C, M)
    ok = label_ok[None, :, None].expand_as(pos)
    log_num = sim.masked_fill(~pos, NEG_INF).flatten(1).logsumexp(-1)   # sum_P
    log_den = sim.masked_fill(~ok, NEG_INF).flatten(1).logsumexp(-1)    # sum_P + sum_N
    return (log_den - log_num).mean()


def check_label_desc(label_desc: torch.Tensor, cfg: AMESSConfig) -> None:
    """One-line ValueError for a wrong shape or a label (not excluded) without descriptions
    (a zero or non-finite embedding)."""
    want = (cfg.num_labels, cfg.num_descriptions, cfg.desc_dim)
    if not isinstance(label_desc, torch.Tensor) or tuple(label_desc.shape) != want:
        got = tuple(label_desc.shape) if isinstance(label_desc, torch.Tensor) else type(label_desc)
        raise ValueError(f"label_desc must be (num_labels, num_descriptions, desc_dim) = "
                         f"{want}, got {got}")
    d = label_desc.detach().float()
    empty = ~torch.isfinite(d).all(-1) | (d.abs().sum(-1) == 0)      # (C, M)
    for lab in range(cfg.num_labels):
        if lab not in cfg.ss_exclude_labels and bool(empty[lab].any()):
            rows = empty[lab].nonzero().flatten().tolist()
            raise ValueError(f"label {lab} has no description embedding at row(s) {rows} "
                             f"(zero or non-finite); embed its descriptions or list it in "
                             f"ss_exclude_labels")


# -----------------------------------------------------------------------------
# A-ME (Eq. 4-13)

class CTCAlign(nn.Module):
    """Sequence alignment of MAG-BERT in MIntRec (``aligned_method='ctc'``, from MulT):
    frames (B, L, D_k), mask (B, L) -> (B, T, D_k), T <= text_len. Padded frames are zeroed
    before the LSTM (so they add nothing to the product either): the result never depends on
    their values, wherever the padding is."""

    def __init__(self, in_dim: int, text_len: int):
        super().__init__()
        self.text_len = text_len
        self.position = nn.LSTM(in_dim, text_len + 1, num_layers=2, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, t: int) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)                           # (B, L, 1)
        x = x * m
        h, _ = self.position(x)                                      # (B, L, text_len + 1)
        p = h.softmax(-1)[..., 1:t + 1]                              # (B, L, T) slot 0: blank
        return p.transpose(1, 2) @ x                                 # (B, T, D_k) padding adds 0


class FeedForward(nn.Module):
    """Vaswani FFN [21]: Linear-ReLU-Dropout-Linear."""

    def __init__(self, d: int, mult: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, mult * d), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(mult * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class AMEOutput:
    embedding: torch.Tensor                    # E_m (B, T, D), Eq. 13
    positions: tuple[torch.Tensor, ...]        # per stream (B, k) long, -1 = no anchor
    ratios: tuple[torch.Tensor, ...]           # per stream (B, k) float, NaN = no anchor


class AnchorEmbedding(nn.Module):
    """A-ME: text (B, T, D) + K streams -> the multimodal embedding E_m (B, T, D)."""

    def __init__(self, cfg: AMESSConfig):
        super().__init__()
        self.cfg = cfg
        d, h, p = cfg.text_dim, cfg.num_heads, cfg.attn_dropout

        def mha(kdim: int = d) -> nn.MultiheadAttention:
            return nn.MultiheadAttention(d, h, dropout=p, kdim=kdim, vdim=kdim,
                                         batch_first=True)

        self.align = nn.ModuleList(CTCAlign(dk, cfg.text_len) for dk in cfg.stream_dims)
        self.dim_attn = nn.ModuleList(mha(dk) for dk in cfg.stream_dims)   # E''_k
        self.anchor_attn = nn.ModuleList(mha() for _ in cfg.stream_dims)   # Eq. 8
        self.anchor_ffn = nn.ModuleList(FeedForward(d, cfg.ffn_mult, cfg.dropout)
                                        for _ in cfg.stream_dims)          # Eq. 9-10
        self.temporal_attn = nn.ModuleList(mha() for _ in cfg.stream_dims)  # Eq. 11-12
        self.norm = nn.LayerNorm(d)                                        # Eq. 13
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor,
                streams: Sequence[torch.Tensor], stream_masks: Sequence[torch.Tensor]
                ) -> AMEOutput:
        cfg, t = self.cfg, text.shape[1]
        pad = ~text_mask                                             # (B, T) True = padding
        anchors, valids, positions, ratios = [], [], [], []
        for k, (x, xm) in enumerate(zip(streams, stream_masks)):
            x = x.to(text.dtype)
            aligned = self.align[k](x, xm, t)                        # E'_k  (B, T, D_k)
            e2, _ = self.dim_attn[k](text, aligned, aligned, key_padding_mask=pad,
                                     need_weights=False)             # E''_k (B, T, D)
            r = anchor_ratio(e2, text, text_mask, cfg.ratio_eps)     # (B, T)     Eq. 4/6
            pos, valid, val = select_anchors(r, text_mask, cfg.num_anchors)  # (B, k)
            a = e2.gather(1, pos[..., None].expand(-1, -1, e2.shape[-1]))    # A_k Eq. 5/7
            anchors.append(a * valid[..., None].to(a.dtype))         # (B, k, D)
            valids.append(valid)
            positions.append(pos.masked_fill(~valid, -1))
            ratios.append(val.masked_fill(~valid, float("nan")))
        mixed = text
        for k in range(len(anchors)):
            others = [j for j in range(len(anchors)) if j != k]
            kv = torch.cat([anchors[j] for j in others], 1)          # (B, (K-1)k, D)
            kv_pad = ~torch.cat([valids[j] for j in others], 1)
            aca, _ = self.anchor_attn[k](anchors[k], kv, kv, key_padding_mask=kv_pad,
                                         need_weights=False)         # ACA_k      Eq. 8
            enh = self.anchor_ffn[k](anchors[k] + aca)               # A~_k       Eq. 9-10
            enh = enh * valids[k][..., None].to(enh.dtype)
            m_k, _ = self.temporal_attn[k](text, enh, enh, key_padding_mask=~valids[k],
                                           need_weights=False)       # M_k (B, T, D) Eq. 11-12
            mixed = mixed + m_k
        emb = self.drop(self.norm(mixed))                            # E_m        Eq. 13
        return AMEOutput(embedding=emb, positions=tuple(positions), ratios=tuple(ratios))


# -----------------------------------------------------------------------------
# the model

class AMESS(nn.Module):
    """A-ME -> text encoder layers -> pooling -> SS token + classifier.

    ``layers``: the text encoder layers after the embedding layer, called as
    ``layers(hidden (B, T, D), mask (B, T) bool) -> (B, T, D)`` (Eq. 14).
    ``label_desc``: (num_labels, M, D_s) SentenceBERT embeddings of the label descriptions,
    given at construction (required when ``use_ss``) and kept as a buffer (saved with the
    state dict; the embeddings are never trained)."""

    def __init__(self, cfg: AMESSConfig, layers: nn.Module,
                 label_desc: torch.Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        self.layers = layers
        self.ame = AnchorEmbedding(cfg) if cfg.use_ame else None
        d = cfg.text_dim
        if cfg.use_ss:
            if label_desc is None:
                raise ValueError("use_ss needs label_desc (num_labels, num_descriptions, "
                                 "desc_dim) sentence embeddings")
            check_label_desc(label_desc, cfg)
            ok = torch.ones(cfg.num_labels, dtype=torch.bool)
            ok[list(cfg.ss_exclude_labels)] = False
            desc = label_desc.detach().float().clone()
            desc[~ok] = 0.0                                          # excluded: never read
            self.register_buffer("label_desc", desc)                 # (C, M, D_s)
            self.register_buffer("label_ok", ok, persistent=False)   # (C,)
            self.ss_proj = nn.Sequential(nn.Linear(d, d), nn.GELU(),
                                         nn.Linear(d, cfg.desc_dim))  # T_s
            cls_in = d + cfg.desc_dim
        else:
            self.ss_proj = None
            cls_in = d
        self.classifier = nn.Sequential(nn.LayerNorm(cls_in),
                                        nn.Linear(cls_in, cfg.num_labels))   # Eq. 16

    def _check_inputs(self, text, text_mask, streams, stream_masks) -> None:
        cfg = self.cfg
        if text.dim() != 3 or text.shape[-1] != cfg.text_dim:
            raise ValueError(f"text must be (B, T, {cfg.text_dim}), got {tuple(text.shape)}")
        if tuple(text_mask.shape) != tuple(text.shape[:2]):
            raise ValueError(f"text_mask must be {tuple(text.shape[:2])}, got "
                             f"{tuple(text_mask.shape)}")
        if not bool(text_mask.bool().any(1).all()):
            raise ValueError("every sample needs at least one real text token (text_mask)")
        if not cfg.use_ame:
            return
        if text.shape[1] > cfg.text_len:
            raise ValueError(f"text length {text.shape[1]} exceeds text_len {cfg.text_len}")
        if streams is None or stream_masks is None or len(streams) != cfg.num_streams \
                or len(stream_masks) != cfg.num_streams:
            raise ValueError(f"A-ME needs {cfg.num_streams} streams and stream_masks")
        for name, x, m, dk in zip(cfg.stream_names, streams, stream_masks, cfg.stream_dims):
            if x.dim() != 3 or x.shape[0] != text.shape[0] or x.shape[-1] != dk:
                raise ValueError(f"stream {name!r} must be (B={text.shape[0]}, L, {dk}), got "
                                 f"{tuple(x.shape)}")
            if tuple(m.shape) != tuple(x.shape[:2]):
                raise ValueError(f"stream mask {name!r} must be {tuple(x.shape[:2])}, got "
                                 f"{tuple(m.shape)}")

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor,
                streams: Sequence[torch.Tensor] | None = None,
                stream_masks: Sequence[torch.Tensor] | None = None,
                labels: torch.Tensor | None = None) -> ModelOutput:
        """text (B, T, D), text_mask (B, T) bool, streams K x (B, L_k, D_k), stream_masks
        K x (B, L_k) bool, labels (B,). Streams are not read when ``use_ame`` is False."""
        cfg = self.cfg
        self._check_inputs(text, text_mask, streams, stream_masks)
        mask = text_mask.bool()
        scores: dict[str, torch.Tensor] = {}
        if self.ame is not None:
            ame = self.ame(text, mask, streams, [m.bool() for m in stream_masks])
            hidden = ame.embedding                                   # E_m (B, T, D)
            for name, pos, r in zip(cfg.stream_names, ame.positions, ame.ratios):
                scores[f"anchor_pos_{name}"] = pos                   # (B, k)
                scores[f"anchor_ratio_{name}"] = r                   # (B, k)
        else:
            hidden = text                                            # w/o A-ME
        h = self.layers(hidden, mask)                                # H (B, T, D)  Eq. 14
        z = pool(h, mask, cfg.pooling)                               # (B, D)
        if self.ss_proj is not None:
            t_s = self.ss_proj(pool(h, mask, "mean"))                # T_s (B, D_s)
            feats = torch.cat([z, t_s], -1)                          # (B, D + D_s)
        else:
            t_s, feats = None, z                                     # w/o SS
        logits = self.classifier(feats)                              # (B, C)  Eq. 16
        out = ModelOutput(logits=logits, scores=scores)
        if labels is None:
            return out
        loss_cls = F.cross_entropy(logits, labels)                   # Eq. 16
        out.losses["cls"] = loss_cls
        out.loss = loss_cls
        if t_s is not None:
            loss_ss = triplet_contrastive_loss(t_s, labels, self.label_desc,
                                               cfg.temperature, self.label_ok)  # Eq. 15
            out.losses["ss"] = loss_ss
            out.loss = loss_cls + cfg.ss_weight * loss_ss            # Eq. 17
        return out


# -----------------------------------------------------------------------------
# the registered method

STREAMS = ("A", "E", "I")                      # the descriptions standing in for the streams


@dataclass(frozen=True)
class AMESSOptions:
    """The registered method's structural options (CLI ``--ablate key=value``).

    ``descriptions``: the label-description file (formats: :mod:`mir_core.label_descriptions`);
    empty: ``$MIR_LABEL_DESCRIPTIONS``. Not read when ``use_ss`` is False.
    ``description_encoder``: the sentence-transformers model embedding them (the paper:
    SentenceBERT; default the offline all-MiniLM-L6-v2, D_s = 384)."""

    descriptions: str = ""
    num_anchors: int = 8
    temperature: float = 0.7
    ss_weight: float = 1.0
    use_ame: bool = True
    use_ss: bool = True
    description_encoder: str = "minilm-l6"

    def validate(self) -> None:
        for name in ("use_ame", "use_ss"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"AMESSOptions: {name} must be True or False, got "
                                 f"{getattr(self, name)!r}")
        if (not isinstance(self.num_anchors, int) or isinstance(self.num_anchors, bool)
                or self.num_anchors < 1):
            raise ValueError(f"AMESSOptions: num_anchors must be an integer >= 1, got "
                             f"{self.num_anchors!r}")
        if not isinstance(self.descriptions, str) or not isinstance(self.description_encoder,
                                                                    str):
            raise ValueError("AMESSOptions: descriptions and description_encoder must be "
                             "strings")
        if self.use_ss and not self.description_encoder.strip():
            raise ValueError("AMESSOptions: description_encoder must name a "
                             "sentence-transformers model")
        AMESSConfig(num_labels=2, text_dim=8, num_heads=8, num_streams=3,
                    stream_dims=(8, 8, 8), stream_names=STREAMS,
                    num_anchors=self.num_anchors, temperature=float(self.temperature),
                    ss_weight=float(self.ss_weight), use_ame=self.use_ame, use_ss=self.use_ss)


class AMESSMethod(nn.Module):
    """A-MESS on the partial regime's batch: hidden (B, S, T, D) after layer L-k and mask
    (B, S, T). Source 0, the utterance, is E_t; sources 1..3, the three VideoLLaMA2
    descriptions' token states, stand in for the video and audio streams (K = 3: the
    benchmarks' nonverbal features do not exist here). A-ME sits at the input of the
    fine-tuned top layers (the paper: before the whole text encoder).

    Scores, per sample and stream (columns A, E, I): ``anchor_ratio`` the mean
    nearest-neighbour ratio (Eq. 4 / 6) of the stream's selected anchors,
    ``anchor_ratio_max`` that of its best anchor (fixed widths, whatever k is)."""

    def __init__(self, core: AMESS):
        super().__init__()
        self.core = core

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, labels=None,
                rank_order=None) -> ModelOutput:
        text, text_mask, streams, stream_masks = split_streams(hidden, mask)
        out = self.core(text, text_mask, streams, stream_masks, labels)
        names = self.core.cfg.stream_names
        if all(f"anchor_ratio_{n}" in out.scores for n in names):
            r = torch.stack([out.scores[f"anchor_ratio_{n}"] for n in names], 1)  # (B, K, k)
            out.scores = {"anchor_ratio": r.nanmean(-1).detach(),          # (B, K)
                          "anchor_ratio_max": r[..., 0].detach()}          # best first
        else:
            out.scores = {}
        return out


def _description_inputs(options: AMESSOptions, labels, dataset: str) -> dict[str, list[str]]:
    from ..label_descriptions import load_label_descriptions
    if not labels:
        raise ValueError("amess with use_ss needs the label names (BuildContext.labels) to "
                         "match the label descriptions")
    return load_label_descriptions(labels, dataset, options.descriptions or None)


def check_amess_inputs(options: AMESSOptions, labels: tuple[str, ...], dataset: str
                       ) -> dict | None:
    """Before any feature is encoded: the label descriptions exist for every label (one-line
    LabelDescriptionsError otherwise); their digest for the run fingerprint."""
    if not options.use_ss:
        return None
    from ..label_descriptions import descriptions_digest
    from ..modelpack import canonical_text_encoder
    descs = _description_inputs(options, labels, dataset)
    return {"label_descriptions": descriptions_digest(descs, labels),
            "num_descriptions": len(next(iter(descs.values()))),
            "description_encoder": canonical_text_encoder(options.description_encoder)}


@register_method("amess", sources=("text", "A", "E", "I"), options=AMESSOptions,
                 regimes=("partial",), check_inputs=check_amess_inputs,
                 scores={"anchor_ratio": STREAMS, "anchor_ratio_max": STREAMS},
                 summary="A-MESS (descriptions as the nonverbal streams)")
def build_amess(ctx: BuildContext) -> AMESSMethod:
    tc, o = ctx.train_config, ctx.options
    d, k = ctx.encoder.out_dim, len(STREAMS)
    # A-ME aligns every stream to the batch's token length, which after the partial
    # regime's padding is at most the longer of the text and description lengths
    if ctx.dataset:
        text_len = max(tc.max_lens(ctx.dataset))
    else:
        text_len = max(tc.text_max_len, tc.desc_max_len) or 50
    label_desc = None
    if o.use_ss:
        kept = ctx.state.get("core.label_desc") if ctx.state is not None else None
        if kept is not None:                      # rebuilding a trained model: its buffer
            label_desc = kept.float()
        else:
            from ..label_descriptions import embed_label_descriptions
            descs = _description_inputs(o, ctx.labels, ctx.dataset)
            label_desc = embed_label_descriptions(descs, ctx.labels, o.description_encoder)
    cfg = AMESSConfig(
        num_labels=ctx.num_labels, text_dim=d, text_len=text_len, num_streams=k,
        stream_dims=(d,) * k, stream_names=STREAMS, num_anchors=o.num_anchors,
        pooling=tc.pooling,
        desc_dim=int(label_desc.shape[-1]) if label_desc is not None else 768,
        num_descriptions=int(label_desc.shape[1]) if label_desc is not None else 3,
        temperature=float(o.temperature), ss_weight=float(o.ss_weight),
        use_ame=o.use_ame, use_ss=o.use_ss)
    return AMESSMethod(AMESS(cfg, SequenceLayers(ctx.encoder), label_desc))
