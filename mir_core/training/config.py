"""Training configuration: one typed dataclass, the papers' settings as named presets, and
validation of every value before anything expensive runs.

Presets (``preset(dataset, name)``):

* ``official`` - the official scripts' hyper-parameters (thuiar/LGSRR ``configs/lgsrr_*.py``):
  bert-large-uncased fully fine-tuned; MIntRec2.0 lr 6e-6, [CLS] pooling; IEMOCAP-DA lr 1e-5,
  warmup 0.05, weight decay 0.1, grad clip 0.4, unmasked mean pooling; batch 32, eval batch
  8, 100 epochs, patience 5, max_length 50 (MIntRec2.0) / 44 (IEMOCAP-DA) tokens for the
  text and for each description. GPU users.
* ``cpu`` - the encoder (offline MiniLM) frozen and run once; cached per-layer pooled
  features, only a projection and the head are trained. Seconds per epoch.
* ``cpu-ft`` - partial fine-tuning on a CPU: the lower layers' token hidden states are
  cached once, the top ``finetune_layers`` layers and the head are trained, with
  length-bucketed batches and dynamic padding.

Precision (``precision``, :mod:`mir_core.precision`): ``official`` trains in fp32, as the
official code; ``cpu`` and ``cpu-ft`` take ``auto``: bf16 autocast only where it measured
faster than fp32 for the encoder on the machine at hand (2-3.6x on one AMD EPYC, 0.6x on
an Intel Xeon with the same flags), with results inside the seed spread of fp32
(docs/RESULTS.md, "Precision"). The resolved value is what a run records.

Known difference from the official code: it uses AdamW without bias correction
(``correct_bias=False``); torch's AdamW always corrects, which makes the first steps of a
warmup smaller than the official ones (the two agree after a few hundred steps).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from ..data import get_spec

REGIMES = ("frozen", "partial", "full")
POOLINGS = ("mean", "cls", "mean_unmasked")
PRECISIONS = ("fp32", "bf16", "auto")       # mir_core.precision

# The official scripts' max_length per dataset (data/__init__.py of thuiar/LGSRR), special
# tokens included, for the text and for each description alike.
OFFICIAL_MAX_LEN = {"MIntRec2.0": 50, "IEMOCAP-DA": 44, "MIntRec": 30}


class ConfigError(ValueError):
    """A setting has a wrong type, range or choice (the message names it and the allowed
    values)."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (the presets below fill them per dataset)."""

    encoder: str = "minilm-l6"
    regime: str = "frozen"            # frozen | partial | full (see mir_core.models.encoders)
    finetune_layers: int = 1          # partial: top k encoder layers trained
    pooling: str = "mean"             # mean (masked, Eq. 5-6) | cls | mean_unmasked
    layers: int = 1                   # frozen: cached layers mixed (last k hidden states)
    proj_dim: int = 0                 # frozen: trainable projection of frozen features
    lr: float = 1e-3
    encoder_lr: float = 0.0           # partial/full: lr of the encoder layers (0: lr)
    batch_size: int = 32              # the global batch, over all processes together
    batch_per_process: bool = False   # True: batch_size per process (global: N x batch_size)
    epochs: int = 100
    warmup_ratio: float = 0.1
    weight_decay: float = 0.05
    grad_clip: float = -1.0           # <= 0: no clipping (clip by value, as the official code)
    weight_hidden: int = 768          # weight network hidden size (Eq. 7)
    weight_dropout: float = 0.4       # inside the weight network (official)
    classifier_dropout: float = 0.0   # on the fused vector before the classifier (official: 0)
    patience: int = 5
    rank_weight: float = 1.0          # lambda (Eq. 18)
    ndcg_temperature: float = 1.0     # tau (Eq. 20)
    text_max_len: int = 0             # tokens incl. special ones; 0: the official value
    desc_max_len: int = 0
    eval_batch_size: int = 8          # official 8: the official fusion's gamma is a batch mean
    precision: str = "fp32"           # fp32 | bf16 | auto: encoding and training (autocast)
    num_threads: int = 0              # CPU threads for torch (0: leave torch's default)
    length_bucketing: bool = True     # partial/full: batches of similar lengths, trimmed

    def replace(self, **kw) -> "TrainConfig":
        """A copy with ``kw`` changed, type-coerced and validated (never mutates self)."""
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(kw) - names)
        if "mixed_precision" in bad:
            raise ConfigError("mixed_precision is now precision: fp32, bf16 or auto (auto "
                              "times both on this machine and keeps the faster)")
        if bad:
            raise ConfigError(f"unknown setting(s) {bad}; known: {sorted(names)}")
        hints = typing.get_type_hints(TrainConfig)
        coerced = {k: _coerce(k, v, hints[k]) for k, v in kw.items()}
        out = dataclasses.replace(self, **coerced)
        out.validate()
        return out

    def max_lens(self, dataset: str) -> tuple[int, int]:
        name = get_spec(dataset).name
        default = OFFICIAL_MAX_LEN.get(name, 50)
        return self.text_max_len or default, self.desc_max_len or default

    def validate(self) -> None:
        def need(ok: bool, msg: str):
            if not ok:
                raise ConfigError(msg)
        need(self.regime in REGIMES, f"regime must be one of {list(REGIMES)}, got {self.regime!r}")
        need(self.pooling in POOLINGS,
             f"pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")
        need(not (self.regime == "frozen" and self.pooling == "mean_unmasked"),
             "pooling 'mean_unmasked' needs the padded token sequence: use regime 'partial' "
             "or 'full' (the frozen cache keeps masked mean and cls)")
        need(self.precision in PRECISIONS,
             f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        for name in ("finetune_layers", "layers", "batch_size", "epochs", "patience",
                     "eval_batch_size", "weight_hidden"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("proj_dim", "num_threads", "text_max_len", "desc_max_len"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("text_max_len", "desc_max_len"):
            v = getattr(self, name)
            need(v == 0 or v >= 3, f"{name} must be 0 (official) or >= 3 tokens, got {v}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(self.encoder_lr >= 0, f"encoder_lr must be >= 0 (0: lr), got {self.encoder_lr}")
        need(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("weight_dropout", "classifier_dropout"):
            need(0 <= getattr(self, name) < 1, f"{name} must be in [0, 1), got {getattr(self, name)}")
        need(self.rank_weight >= 0, f"rank_weight must be >= 0, got {self.rank_weight}")
        need(self.ndcg_temperature > 0,
             f"ndcg_temperature must be > 0, got {self.ndcg_temperature}")
        need(bool(str(self.encoder).strip()), "encoder must name a text encoder")


_KINDS = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}


def _coerce(name: str, value, hint):
    """'1e-3' -> 1e-3 for a float field etc.; a wrong type is a ConfigError naming it."""
    if hint not in _KINDS:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif hint is str:
        if isinstance(value, str):
            return value
    elif not isinstance(value, bool):                 # int or float field
        if isinstance(value, str):
            try:
                return hint(value)
            except ValueError:
                pass
        elif hint is float and isinstance(value, (int, float)):
            return float(value)
        elif isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value)
    raise ConfigError(f"{name} must be {_KINDS[hint]}, got {value!r}")


# The official scripts' hyper-parameters: bert-large-uncased fine-tuned, batch 32, eval
# batch 8, 100 epochs, patience 5, weight network 768 with dropout 0.4, no classifier dropout.
_OFFICIAL_BASE = TrainConfig(encoder="bert-large-uncased", regime="full", batch_size=32,
                             epochs=100, patience=5, weight_hidden=768, weight_dropout=0.4,
                             classifier_dropout=0.0, rank_weight=1.0, ndcg_temperature=1.0,
                             eval_batch_size=8, length_bucketing=False)
OFFICIAL = {
    "MIntRec2.0": dataclasses.replace(_OFFICIAL_BASE, pooling="cls", lr=6e-6,
                                      warmup_ratio=0.1, weight_decay=0.05, grad_clip=-1.0),
    "IEMOCAP-DA": dataclasses.replace(_OFFICIAL_BASE, pooling="mean_unmasked", lr=1e-5,
                                      warmup_ratio=0.05, weight_decay=0.1, grad_clip=0.4),
}
# CPU preset: frozen offline encoder, cached features, head-only training. Layer mix,
# projection and lr chosen on the dev split (docs/RESULTS.md, "Tuning the CPU preset");
# masked mean pooling (MiniLM is trained for it: better than [CLS] on dev).
_CPU_BASE = TrainConfig(encoder="minilm-l6", regime="frozen", pooling="mean", layers=4,
                        proj_dim=512, lr=1e-3, batch_size=32, epochs=40, patience=6,
                        weight_hidden=256, weight_dropout=0.4, classifier_dropout=0.0,
                        eval_batch_size=8, num_threads=1, precision="auto")
CPU = {
    "MIntRec2.0": dataclasses.replace(_CPU_BASE, warmup_ratio=0.1, weight_decay=0.05),
    "IEMOCAP-DA": dataclasses.replace(_CPU_BASE, warmup_ratio=0.05, weight_decay=0.1,
                                      grad_clip=0.4),
}
# cpu-ft: MiniLM's lower 5 layers cached at token level, the top layer fine-tuned with the
# head. lr / encoder_lr / epochs chosen on dev F1 of text-only, seed 0 (docs/RESULTS.md,
# "cpu-ft"): encoder_lr 5e-5 reached dev 30.5 after 3 epochs, 2e-4 42.6 after 6, 5e-4
# 42.7 after 6 (41.0 after 2), 1e-3 diverged after epoch 2; masked mean pooling (MiniLM is
# trained for it; the official MIntRec2.0 setting pools [CLS] of bert-large).
_CPU_FT_BASE = TrainConfig(encoder="minilm-l6", regime="partial", finetune_layers=1,
                           pooling="mean", lr=1e-3, encoder_lr=5e-4, batch_size=32, epochs=6,
                           patience=3, weight_hidden=256, weight_dropout=0.4,
                           classifier_dropout=0.0, eval_batch_size=8, num_threads=2,
                           precision="auto")
CPU_FT = {
    "MIntRec2.0": dataclasses.replace(_CPU_FT_BASE, warmup_ratio=0.1, weight_decay=0.05),
    "IEMOCAP-DA": dataclasses.replace(_CPU_FT_BASE, warmup_ratio=0.05, weight_decay=0.1,
                                      grad_clip=0.4),
}
for _table in (OFFICIAL, CPU, CPU_FT):
    _table["MIntRec"] = _table["MIntRec2.0"]
PRESETS = {"official": OFFICIAL, "cpu": CPU, "cpu-ft": CPU_FT}


def preset(dataset: str, name: str = "cpu", **overrides) -> TrainConfig:
    """The preset's config for a dataset, with ``overrides`` applied and validated."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    table = PRESETS[name]
    spec_name = get_spec(dataset).name
    base = table.get(spec_name, table["MIntRec2.0"])   # a user's dataset: MIntRec2.0's values
    return base.replace(**overrides)
