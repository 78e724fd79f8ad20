"""MulT: the Multimodal Transformer (Tsai et al., ACL 2019) as MIntRec2.0 runs it.

Modalities m = 0..K: 0 is the text (the text encoder's output token states), 1..K the
nonverbal streams. With d = ``d_model``:

    X_m   = Conv1d_m(X_m) -> (B, T_m, d)                 temporal convolutions
    Z_m   = sqrt(d) X_m + PE(T_m)                        positions (in every transformer)
    Y_j>i = CM_{j->i}(Z_i, Z_j)      for every j != i    crossmodal transformers
    M_i   = TF_i([Y_j>i]_{j != i}) -> (B, T_i, K d)      self-attention "memory"
    h     = [M_0[last] ; ... ; M_K[last]]                (B, (K+1) K d)
    logit = W_out (h + W_2 Dropout(ReLU(W_1 h)))         residual output MLP (official)

(paper Sec. 3.1 crossmodal attention; Sec. 3.2 temporal convolutions, positional
embedding, crossmodal transformers, self-attention transformers and prediction.)

CM_{j->i} (pre-LayerNorm): per layer, the query is LN(target), the key
and value LN(source) with the SAME LayerNorm, then a 4d ReLU feed-forward block; the
source embedding is fixed across layers and a final LayerNorm closes the stack. The memory
TF_i is the same stack with self-attention.

Official code: thuiar/MIntRec2.0 ``backbones/single_turn/FusionNets/MULT.py`` (model),
``backbones/single_turn/SubNets/transformers_encoder/{transformer,multihead_attention,
position_embedding}.py`` (blocks), ``configs/single_turn/mult.py`` (hyper-parameters,
:class:`MulTConfig` defaults). Points kept from it:

* a modality whose dim already equals d is not convolved (official ``x if orig_d == d``);
  the convolutions have no bias and no padding (text kernel 5: T - 4 steps);
* the memory stacks have max(n_levels, 3) layers (official ``layers=3`` with ``max``);
* crossmodal attention dropout is the SOURCE modality's (``attn_dropout`` for text, the
  per-stream value for a stream); every memory stack uses the text ``attn_dropout``;
* positions: the tensor2tensor sinusoid (sin half then cos half, frequencies
  10000^(-i/(d/2-1))), step t reads position t + 1, and position 0 (zero vector) is given
  to every step whose first feature is exactly 0 (fairseq ``make_positions`` with
  padding_idx 0, applied to the inputs' first channel);
* embed dropout is drawn separately for the key and the value copies of the source;
* ``attn_mask=True``: the official "future" mask, query i may see keys j <= i + |T_k - T_q|;
* the readout is the last time step of each memory; text dropout on the text states.

K streams. The official code has two streams (audio, video) -> 3 modalities and 6
directional crossmodal transformers. Here every ordered pair (j -> i), j != i, of the K + 1
modalities gets one: (K + 1) K transformers; target i concatenates its K crossmodal outputs
in increasing source order, so the memory width is K d and the readout (K + 1) K d. For
K = 2 this is the official network: the official order of modalities is (text, audio,
video) (L: [a, v], A: [l, v], V: [l, a]), so ``streams=(audio, video)`` reproduces it index
for index; ``streams=(video, audio)`` permutes the concatenated features only.

Padding (``use_padding_mask``). The official code passes only the future mask: padded
steps (nonverbal streams are zero-padded at the end to 180 / 400 frames, text to 50
tokens) are attended to, and the "last step" read out is a padding step for every sample
shorter than the batch's padded length. With ``use_padding_mask=True`` (default):

* padded steps are zeroed before the convolution, and the convolution is padded with
  k - 1 zeros at the end so that step t (the window starting at input t) exists for every
  real input t; a step is real iff its input t is real (official: no padding, T - k + 1
  steps, the last ones reading padding);
* every attention gets the keys' padding mask; the future mask uses each sample's real
  lengths, |n_k - n_q| (official: the padded lengths);
* a query with no visible key (e.g. a stream that is all padding) gets a zero attention
  output (its row is unmasked for the softmax, then zeroed), so nothing is NaN;
* the readout takes each target's LAST REAL step; a modality with no real step reads 0.

So a sample's logits do not depend on the values (nor, for end padding, the amount) of
its padding. ``use_padding_mask=False`` is the official computation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoders import SequenceLayers, split_streams
from .registry import BuildContext, ModelOutput, register_method

# Training settings of the official MIntRec2.0 MulT run (not read by the module).
# configs/single_turn/mult.py, methods/single_turn/MULT/manager.py,
# data/single_turn/__init__.py, examples/single_turn/run_mult_baselines.sh.
MULT_MINTREC2 = dict(
    text_backbone="bert-large-uncased",    # fine-tuned inside MulT; text dim 1024
    video_feats="swin-roi", audio_feats="wavlm",
    text_max_len=50, video_max_len=180, audio_max_len=400,   # zero-padded at the end
    text_dim=1024, video_dim=256, audio_dim=768,
    lr=5e-6,                               # one Adam group for BERT and MulT
    optimizer="Adam",
    scheduler="ReduceLROnPlateau(mode='max', factor=0.1, patience=wait_patience)",
    batch_size=16, eval_batch_size=8, test_batch_size=8,
    epochs=40,
    wait_patience=8,                       # early stopping on dev accuracy
    eval_monitor="acc",
    grad_clip=0.5,                         # clip_grad_value_
)


@dataclass(frozen=True)
class MulTConfig:
    """Structure of MulT; defaults = ``configs/single_turn/mult.py`` of MIntRec2.0. The
    per-stream tuples have one value per stream (official order of the defaults: video,
    audio; both equal); :meth:`mintrec2` builds them for any K."""

    num_streams: int = 2                          # K
    d_model: int = 80                             # 'dst_feature_dims'
    num_heads: int = 2                            # 'nheads'
    n_levels: int = 2                             # crossmodal layers ('n_levels')
    mem_levels: int = 3                           # memory layers = max(n_levels, mem_levels)
    attn_dropout: float = 0.0                     # text-source crossmodal + all memories
    attn_dropout_streams: tuple[float, ...] = (0.2, 0.2)   # 'attn_dropout_v', '_a'
    relu_dropout: float = 0.3
    res_dropout: float = 0.0
    embed_dropout: float = 0.1
    output_dropout: float = 0.2                   # inside the residual output MLP
    text_dropout: float = 0.4                     # on the text states, before the conv
    attn_mask: bool = True                        # the official future mask
    text_kernel: int = 5                          # 'conv1d_kernel_size_l'
    stream_kernels: tuple[int, ...] = (1, 1)      # 'conv1d_kernel_size_v', '_a'
    use_padding_mask: bool = True                 # False = official (no padding masks)

    @classmethod
    def mintrec2(cls, num_streams: int = 2, **overrides) -> "MulTConfig":
        """The official values with the per-stream ones repeated for K streams."""
        values = dict(num_streams=num_streams, attn_dropout_streams=(0.2,) * num_streams,
                      stream_kernels=(1,) * num_streams)
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        K = self.num_streams
        if K < 1:
            raise ValueError(f"num_streams must be >= 1, got {K}")
        for name in ("attn_dropout_streams", "stream_kernels"):
            if len(getattr(self, name)) != K:
                raise ValueError(f"{name} needs one value per stream ({K}), got "
                                 f"{getattr(self, name)!r}; see MulTConfig.mintrec2")
        if self.d_model % self.num_heads or (K * self.d_model) % self.num_heads:
            raise ValueError("d_model and K * d_model must be divisible by num_heads")
        if min(self.text_kernel, *self.stream_kernels) < 1:
            raise ValueError("kernel sizes must be >= 1")
        if self.n_levels < 1 or self.mem_levels < 1:
            raise ValueError("n_levels and mem_levels must be >= 1")
        drops = [self.attn_dropout, *self.attn_dropout_streams, self.relu_dropout,
                 self.res_dropout, self.embed_dropout, self.output_dropout, self.text_dropout]
        if any(not 0.0 <= p < 1.0 for p in drops):
            raise ValueError("dropouts must be in [0, 1)")


# ----------------------------------------------------------------------------- helpers

def sinusoidal_positions(x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """x (B, T, d), pad (B, T) bool -> (B, T, d): step t gets position t + 1 of the
    tensor2tensor table (sin half, cos half), steps marked ``pad`` get position 0 = 0."""
    T, d = x.shape[1], x.shape[2]
    half = d // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32, device=x.device)
                     * -(math.log(10000.0) / max(half - 1, 1)))      # (d/2,); d < 4 guarded
    pos = torch.arange(1, T + 1, dtype=torch.float32, device=x.device)
    ang = pos[:, None] * freq[None]                                  # (T, d/2)
    table = torch.cat([ang.sin(), ang.cos()], dim=-1)                # (T, 2 * (d // 2))
    if d % 2:
        table = F.pad(table, (0, 1))                                 # (T, d)
    return table.to(x.dtype)[None] * (~pad).unsqueeze(-1).to(x.dtype)


def attention_mask(Tq: int, Tk: int, q_mask: torch.Tensor | None,
                   k_mask: torch.Tensor | None, causal: bool, num_heads: int,
                   device: torch.device):
    """The boolean mask (True = blocked) for ``nn.MultiheadAttention`` and (B, Tq, 1) rows
    with at least one visible key (None when every row has one).

    Official (no masks): only the future mask, j > i + |Tk - Tq|, (Tq, Tk). With masks: the
    future mask on each sample's real lengths, plus the keys' padding, (B * heads, Tq, Tk);
    rows with nothing visible are unblocked (no NaN) and reported for zeroing."""
    i = torch.arange(Tq, device=device)[:, None]
    j = torch.arange(Tk, device=device)[None, :]
    if k_mask is None:
        return ((j > i + abs(Tk - Tq)) if causal else None), None
    B = k_mask.shape[0]
    blocked = ~k_mask[:, None, :].expand(B, Tq, Tk)                  # (B, Tq, Tk)
    if causal:
        n_q = q_mask.sum(1) if q_mask is not None else torch.full((B,), Tq, device=device)
        off = (k_mask.sum(1) - n_q).abs()                            # (B,)
        blocked = blocked | (j[None] > i[None] + off[:, None, None])
    visible = ~blocked.all(-1, keepdim=True)                         # (B, Tq, 1)
    blocked = blocked & visible                                      # no all-blocked row
    return blocked.repeat_interleave(num_heads, dim=0), visible


def last_real_step(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """h (B, T, D) -> (B, D): the last step (official), or the last real one; 0 if none."""
    if mask is None:
        return h[:, -1]
    T = h.shape[1]
    idx = (mask.long() * torch.arange(1, T + 1, device=h.device)).argmax(1)   # (B,)
    out = h[torch.arange(h.shape[0], device=h.device), idx]         # (B, D)
    return out * mask.any(1, keepdim=True).to(h.dtype)


def _xavier_linear(n_in: int, n_out: int) -> nn.Linear:
    m = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(m.weight)
    nn.init.zeros_(m.bias)
    return m


# ----------------------------------------------------------------------------- blocks

class Block(nn.Module):
    """One pre-LN layer: (cross- or self-) attention, then a 4d ReLU feed-forward."""

    def __init__(self, d: int, num_heads: int, attn_dropout: float, relu_dropout: float,
                 res_dropout: float):
        super().__init__()
        self.ln_attn = nn.LayerNorm(d)       # shared by query, key and value (official)
        self.attn = nn.MultiheadAttention(d, num_heads, dropout=attn_dropout, batch_first=True)
        nn.init.xavier_uniform_(self.attn.out_proj.weight)
        self.ln_ff = nn.LayerNorm(d)
        self.fc1 = _xavier_linear(d, 4 * d)
        self.fc2 = _xavier_linear(4 * d, d)
        self.relu_dropout = relu_dropout
        self.res_dropout = res_dropout

    def forward(self, x, k=None, v=None, mask=None, visible=None, need_weights=False):
        """x (B, Tq, d); k, v (B, Tk, d) or None (self-attention)."""
        q = self.ln_attn(x)
        k = q if k is None else self.ln_attn(k)
        v = q if v is None else self.ln_attn(v)
        a, w = self.attn(q, k, v, attn_mask=mask, need_weights=need_weights)   # (B, Tq, d)
        if visible is not None:
            a = a * visible.to(a.dtype)                              # no visible key -> 0
            w = None if w is None else w * visible.to(w.dtype)
        x = x + F.dropout(a, self.res_dropout, self.training)
        y = F.relu(self.fc1(self.ln_ff(x)))
        y = self.fc2(F.dropout(y, self.relu_dropout, self.training))
        return x + F.dropout(y, self.res_dropout, self.training), w


class CrossmodalTransformer(nn.Module):
    """A stack of :class:`Block` over a target, attending to a source (crossmodal) or to
    itself (memory); the official ``TransformerEncoder``."""

    def __init__(self, d: int, num_heads: int, layers: int, attn_dropout: float,
                 relu_dropout: float, res_dropout: float, embed_dropout: float, causal: bool):
        super().__init__()
        self.d = d
        self.num_heads = num_heads
        self.causal = causal
        self.embed_dropout = embed_dropout
        self.layers = nn.ModuleList(Block(d, num_heads, attn_dropout, relu_dropout,
                                          res_dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        pad = x[..., 0] == 0                                         # official position rule
        if mask is not None:
            pad = pad | ~mask
        return math.sqrt(self.d) * x + sinusoidal_positions(x, pad)  # (B, T, d)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor | None,
                src: torch.Tensor | None = None, src_mask: torch.Tensor | None = None,
                need_weights: bool = False):
        """x (B, Tq, d) target; src (B, Tk, d) source or None (self-attention); masks (B, T)
        bool or None. -> (B, Tq, d), per-layer attention weights (B, Tq, Tk) or []."""
        drop = lambda t: F.dropout(t, self.embed_dropout, self.training)   # noqa: E731
        e = self.embed(x, x_mask)
        h = drop(e)
        if src is None:
            k = v = None
            mask, visible = attention_mask(x.shape[1], x.shape[1], x_mask, x_mask,
                                           self.causal, self.num_heads, x.device)
        else:
            e_src = self.embed(src, src_mask)
            k, v = drop(e_src), drop(e_src)                          # two dropout draws
            mask, visible = attention_mask(x.shape[1], src.shape[1], x_mask, src_mask,
                                           self.causal, self.num_heads, x.device)
        weights = []
        for layer in self.layers:
            h, w = layer(h, k, v, mask=mask, visible=visible, need_weights=need_weights)
            if w is not None:
                weights.append(w)
        return self.norm(h), weights


# ----------------------------------------------------------------------------- the model

class MulT(nn.Module):
    """Text + K nonverbal streams -> (K + 1) K directional crossmodal transformers ->
    K + 1 memories -> last (real) steps -> residual MLP -> logits."""

    def __init__(self, cfg: MulTConfig, num_labels: int, text_dim: int,
                 stream_dims: Sequence[int]):
        super().__init__()
        stream_dims = [int(s) for s in stream_dims]
        K = cfg.num_streams
        if len(stream_dims) != K:
            raise ValueError(f"cfg.num_streams is {K} but {len(stream_dims)} stream dims "
                             f"were given")
        self.cfg = cfg
        d = cfg.d_model
        dims = [int(text_dim), *stream_dims]
        kernels = [cfg.text_kernel, *cfg.stream_kernels]
        self.names = ["t"] + [f"s{k + 1}" for k in range(K)]        # modality names
        # temporal convolutions; none where the dim is already d (official)
        self.proj = nn.ModuleList(
            nn.Identity() if n_in == d else nn.Conv1d(n_in, d, kernel_size=k, bias=False)
            for n_in, k in zip(dims, kernels))
        self.kernels = [1 if n_in == d else k for n_in, k in zip(dims, kernels)]
        src_attn_dropout = [cfg.attn_dropout, *cfg.attn_dropout_streams]
        common = dict(num_heads=cfg.num_heads, relu_dropout=cfg.relu_dropout,
                      res_dropout=cfg.res_dropout, embed_dropout=cfg.embed_dropout,
                      causal=cfg.attn_mask)
        # one crossmodal transformer per ordered pair source j -> target i, j != i
        self.crossmodal = nn.ModuleDict({
            self.block_name(j, i): CrossmodalTransformer(
                d, layers=cfg.n_levels, attn_dropout=src_attn_dropout[j], **common)
            for i in range(K + 1) for j in range(K + 1) if j != i})
        self.memory = nn.ModuleList(
            CrossmodalTransformer(K * d, layers=max(cfg.n_levels, cfg.mem_levels),
                                  attn_dropout=cfg.attn_dropout, **common)
            for _ in range(K + 1))
        self.combined_dim = combined = (K + 1) * K * d
        self.proj1 = nn.Linear(combined, combined)
        self.proj2 = nn.Linear(combined, combined)
        self.out_layer = nn.Linear(combined, num_labels)
        self.last_attention: dict[str, list[torch.Tensor]] = {}

    def block_name(self, src: int, tgt: int) -> str:
        return f"{self.names[src]}_to_{self.names[tgt]}"

    def project(self, i: int, x: torch.Tensor, mask: torch.Tensor | None):
        """Modality i (B, T, D_i) -> (B, T', d) and its step mask (B, T') or None."""
        x = x.transpose(1, 2)                                        # (B, D_i, T)
        k = self.kernels[i]
        if mask is not None:
            x = x * mask[:, None, :].to(x.dtype)                     # padded steps -> 0
            if k > 1:
                x = F.pad(x, (0, k - 1))                             # step t exists for all t
        elif x.shape[-1] < k:
            raise ValueError(f"modality {self.names[i]} has {x.shape[-1]} steps, fewer "
                             f"than its kernel {k}")
        return self.proj[i](x).transpose(1, 2), mask                 # (B, T', d)

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor | None,
                streams: Sequence[torch.Tensor],
                stream_masks: Sequence[torch.Tensor | None] | None = None,
                labels: torch.Tensor | None = None,
                return_attention: bool = False) -> ModelOutput:
        """text (B, T, D_t), text_mask (B, T) bool; streams K x (B, L_k, D_k), masks
        K x (B, L_k) bool (True = real; None = all real); labels (B,). With
        ``return_attention`` the crossmodal attention weights (head-averaged, per layer,
        (B, T_i, T_j)) are left in ``self.last_attention`` under ``"s1_to_t"`` etc."""
        cfg, K = self.cfg, self.cfg.num_streams
        if len(streams) != K:
            raise ValueError(f"expected {K} streams, got {len(streams)}")
        stream_masks = list(stream_masks) if stream_masks is not None else [None] * K
        xs = [F.dropout(text.float(), cfg.text_dropout, self.training)]
        xs += [s.float() for s in streams]
        if cfg.use_padding_mask:
            ms = [text_mask, *stream_masks]
            ms = [torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if m is None
                  else m.bool() for x, m in zip(xs, ms)]
        else:
            ms = [None] * (K + 1)

        hs, ms = zip(*(self.project(i, x, m) for i, (x, m) in enumerate(zip(xs, ms))))

        self.last_attention = {}
        lasts = []
        for i in range(K + 1):
            cross = []
            for j in range(K + 1):
                if j == i:
                    continue
                name = self.block_name(j, i)
                y, w = self.crossmodal[name](hs[i], ms[i], hs[j], ms[j],
                                             need_weights=return_attention)
                cross.append(y)                                      # (B, T_i, d)
                if return_attention:
                    self.last_attention[name] = [a.detach() for a in w]
            mem, _ = self.memory[i](torch.cat(cross, dim=-1), ms[i])  # (B, T_i, K d)
            lasts.append(last_real_step(mem, ms[i]))                 # (B, K d)
        h = torch.cat(lasts, dim=-1)                                 # (B, (K+1) K d)

        y = F.dropout(F.relu(self.proj1(h)), cfg.output_dropout, self.training)
        logits = self.out_layer(self.proj2(y) + h)                   # (B, num_labels)
        out = ModelOutput(logits=logits)
        if labels is not None:
            out.loss = out.losses["cls"] = F.cross_entropy(logits, labels)
        return out


__all__ = ["MulT", "MulTConfig", "MULT_MINTREC2", "CrossmodalTransformer", "Block",
           "sinusoidal_positions", "attention_mask", "last_real_step"]


# ----------------------------------------------------------------------------- the method

@dataclass(frozen=True)
class MulTOptions:
    """The registered method's structural options."""

    use_padding_mask: bool = True    # False: the official future mask only


class MulTMethod(nn.Module):
    """MulT on the partial regime's batch: hidden (B, S, T, D) after layer L-k and mask
    (B, S, T). The utterance (source 0) goes through the fine-tuned top layers (official:
    BERT's output states); sources 1..3, the three VideoLLaMA2 descriptions' token states,
    stand in for the video and audio streams, which do not exist here."""

    def __init__(self, layers: nn.Module, core: MulT):
        super().__init__()
        self.layers, self.core = layers, core

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, labels=None,
                rank_order=None) -> ModelOutput:
        text, text_mask, streams, stream_masks = split_streams(hidden, mask)
        text = self.layers(text, text_mask)                          # (B, T, D)
        return self.core(text, text_mask, streams, stream_masks, labels)


@register_method("mult", sources=("text", "A", "E", "I"), options=MulTOptions,
                 regimes=("partial",),
                 summary="MulT (descriptions as the nonverbal streams)")
def build_mult(ctx: BuildContext) -> MulTMethod:
    d, k = ctx.encoder.out_dim, 3
    cfg = MulTConfig.mintrec2(k, use_padding_mask=ctx.options.use_padding_mask)
    return MulTMethod(SequenceLayers(ctx.encoder), MulT(cfg, ctx.num_labels, d, [d] * k))
