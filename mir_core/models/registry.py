"""The method registry: a new model is its own file plus one registration line.

    @register_method("lgsrr", sources=("text", "A", "E", "I"), options=LGSRROptions,
                     uses_ranks=True, scores={"alpha": ("T", "A", "E", "I"), ...})
    def build_lgsrr(ctx: BuildContext) -> nn.Module: ...

The training loop knows only this interface: it asks the registry which feature sources a
method reads (the input builder fetches exactly those), builds the model with a
:class:`BuildContext` (number of labels, the run's training config, the source encoder the
regime chose, the method's typed options, the label names and the dataset) and reads a
:class:`ModelOutput` back. It never branches on a method's name.

A method that reads inputs besides the feature sources (A-MESS: label descriptions)
registers ``check_inputs(options, labels, dataset) -> dict | None``: the run calls it
before any feature is encoded and before the run folder exists, so a missing input fails
at once; what it returns (e.g. a digest of those inputs) enters the run fingerprint.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn


@dataclass
class ModelOutput:
    """What every registered model returns from ``forward``.

    ``scores``: per-sample values worth keeping next to each prediction, each (B, k); the
    method's registration names their columns (e.g. alpha -> T, A, E, I).
    ``losses``: the named terms of ``loss`` (e.g. cls, rank), detached or not."""

    logits: torch.Tensor                                           # (B, K)
    loss: torch.Tensor | None = None                               # scalar, training only
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    scores: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class NoOptions:
    """Methods without structural options."""


@dataclass(frozen=True)
class BuildContext:
    num_labels: int
    train_config: Any                  # mir_core.training.TrainConfig (read only)
    encoder: nn.Module                 # inputs -> (B, S, D) source features
    options: Any                       # the method's options dataclass instance
    labels: tuple[str, ...] = ()       # label names in label-id order (() = not given)
    dataset: str = ""                  # the dataset's name ("" = not given)
    # the trained state dict about to be loaded (cases.load_model), None while training: a
    # method may take fixed, untrained inputs kept in it (A-MESS's description embeddings)
    # instead of recomputing them
    state: Mapping[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class Method:
    name: str
    build: Callable[[BuildContext], nn.Module]
    sources: tuple[str, ...]                         # feature sources read, in this order
    options: type = NoOptions                        # typed structural options
    uses_ranks: bool = False                         # trains on the LLM ranks (train split)
    scores: dict[str, tuple[str, ...]] = field(default_factory=dict)
    summary: str = ""
    regimes: tuple[str, ...] = ("frozen", "partial", "full")    # training regimes it runs in
    # (options, labels, dataset) -> dict for the fingerprint, or None; raises on a missing
    # input. Called before any feature is encoded (None: the method reads nothing else).
    check_inputs: Callable[[Any, tuple[str, ...], str], dict | None] | None = None
    # "classifier": trained by mir_core.training (every method before XMEI-Qwen);
    # "generative": its own SFT path (mir_core.xmei), not run by the classification loop
    kind: str = "classifier"

    def inputs_fingerprint(self, options, labels: tuple[str, ...], dataset: str) -> dict | None:
        """Check the method's other inputs (see ``check_inputs``); their fingerprint."""
        if self.check_inputs is None:
            return None
        return self.check_inputs(options, tuple(labels), dataset)

    def make_options(self, values: dict | None = None):
        """The options dataclass from a dict, with unknown keys and bad values named."""
        values = dict(values or {})
        known = {f.name: f for f in dataclasses.fields(self.options)}
        bad = sorted(set(values) - set(known))
        if bad:
            raise ValueError(f"method {self.name!r} has no option(s) {bad}; "
                             f"its options: {sorted(known) or 'none'}")
        opts = self.options(**values)
        check = getattr(opts, "validate", None)
        if check is not None:
            check()
        return opts


_REGISTRY: dict[str, Method] = {}


def register_method(name: str, *, sources: tuple[str, ...], options: type = NoOptions,
                    uses_ranks: bool = False, scores: dict[str, tuple[str, ...]] | None = None,
                    summary: str = "",
                    regimes: tuple[str, ...] = ("frozen", "partial", "full"),
                    check_inputs: Callable | None = None, kind: str = "classifier"):
    """Decorator: register ``build(ctx) -> nn.Module`` under ``name``. ``regimes``: the
    training regimes whose inputs the model can read (a model that fuses token sequences
    cannot run on the frozen regime's pooled vectors); a run in another is refused before
    any work. ``check_inputs``: see the module docstring."""
    def deco(build: Callable[[BuildContext], nn.Module]):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        _REGISTRY[name] = Method(name=name, build=build, sources=tuple(sources),
                                 options=options, uses_ranks=uses_ranks,
                                 scores=dict(scores or {}), summary=summary,
                                 regimes=tuple(regimes), check_inputs=check_inputs,
                                 kind=kind)
        return build
    return deco


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def methods(kind: str | None = None) -> list[str]:
    """Registered method names; ``kind`` ("classifier" / "generative") keeps only those."""
    return sorted(n for n, m in _REGISTRY.items() if kind is None or m.kind == kind)
