"""The numeric precision of frozen-encoder inference: ``fp32``, ``bf16`` or ``auto``.

bf16 autocast changes text embeddings very little (pooled embeddings of MIntRec2.0
utterances: mean cosine 0.99998 to fp32, lowest 0.9999 for minilm-l6 and 0.9993 for
all-mpnet-base-v2; ``benchmarks/precision.py``) but its speed on a CPU cannot be
predicted: it is 2-3.6x faster than fp32 on one AMD EPYC and 0.6x (slower) on an Intel
Xeon that reports the same ``avx512_bf16`` flag. So ``auto`` never trusts a flag:

* on a CUDA device it takes bf16 where the GPU supports it natively, else fp32;
* on a CPU it times a few batches of the actual encoder in both precisions (a probe the
  caller passes, e.g. :func:`text_probe`) and takes bf16 only when it is faster than fp32
  by more than :data:`MARGIN` (fp32 is the reference: a tie keeps it). The choice is
  cached in a JSON file keyed by CPU (model name and family/model/stepping numbers,
  :func:`mir_core.machine.cpu_facts`), torch version, encoder and thread count, so only
  the first call on a machine pays for the measurement.

    choice = resolve("auto", encoder="minilm-l6", device="cpu",
                     probe=text_probe("minilm-l6", texts))
    with autocast(choice.precision, "cpu"):
        out = model(**batch)
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, ContextManager, Sequence

import numpy as np
import torch

from . import paths
from .machine import cpu_facts

PRECISIONS = ("fp32", "bf16", "auto")
MARGIN = 0.05               # bf16 must be more than 5 % faster than fp32 to be chosen
CACHE_FILE = "precision.json"

Probe = Callable[[str], float]      # precision ('fp32' | 'bf16') -> seconds of a fixed workload


class PrecisionError(ValueError):
    """A precision value that is not allowed, or not possible on the device."""


@dataclass(frozen=True)
class Choice:
    """A resolved precision and why: what was measured, on what, for which encoder."""

    precision: str                  # 'fp32' | 'bf16'
    reason: str
    fp32_seconds: float | None      # the probe's time in each precision (auto on a CPU)
    bf16_seconds: float | None
    cpu: str
    torch: str
    encoder: str
    threads: int
    cached: bool = False            # read from the cache file rather than measured now


def check(precision: str, allowed: Sequence[str] = PRECISIONS) -> str:
    """``precision`` if it is one of ``allowed``; else PrecisionError in one line."""
    if precision not in allowed:
        raise PrecisionError(f"precision must be one of {', '.join(allowed)}; "
                             f"got {precision!r}")
    return precision


def autocast(precision: str, device: str | torch.device | None) -> ContextManager:
    """bf16 autocast on ``device``'s type for ``'bf16'``; a null context for ``'fp32'``.

    ``'auto'`` must be resolved first (:func:`resolve`)."""
    if check(precision, ("fp32", "bf16")) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device or "cpu").type, dtype=torch.bfloat16)


def cache_key(cpu: str, torch_version: str, encoder: str, threads: int) -> str:
    """The cache file's key of one measurement."""
    return f"{cpu} | torch {torch_version} | {encoder} | {threads} threads"


def resolve(precision: str, *, encoder: str, device: str | torch.device | None,
            probe: Probe | None, cache_path: str | Path | None = None,
            log: Callable[[str], None] = print) -> Choice:
    """The precision to run ``encoder`` in on ``device`` (None: the CPU).

    ``fp32`` and ``bf16`` pass through (bf16 on a CUDA device without native bf16 raises
    PrecisionError). ``auto``: see the module docstring. On a CPU, ``probe`` is called
    once per precision unless the cache (default ``<cache_dir>/precision.json``) already
    holds this CPU, torch version, encoder and thread count; one line through ``log``
    reports the choice and both times, measured or cached.
    """
    check(precision)
    dev = torch.device(device or "cpu")
    cpu = cpu_facts().ident
    threads = torch.get_num_threads()
    facts = {"cpu": cpu, "torch": torch.__version__, "encoder": encoder, "threads": threads}
    if precision != "auto":
        if precision == "bf16" and dev.type == "cuda" and not _cuda_bf16(dev):
            raise PrecisionError(f"precision bf16: the GPU {_gpu_name(dev)} has no native "
                                 "bfloat16 support; use fp32 or auto")
        return Choice(precision, "requested", None, None, **facts)
    if dev.type != "cpu":
        native = dev.type == "cuda" and _cuda_bf16(dev)
        reason = (f"GPU {_gpu_name(dev)} {'supports' if native else 'has no native'} bfloat16"
                  if dev.type == "cuda" else f"auto times CPUs only; {dev.type} keeps fp32")
        choice = Choice("bf16" if native else "fp32", reason, None, None, **facts)
        log(f"precision auto: {choice.precision} for {encoder}; {reason}")
        return choice

    path = Path(cache_path) if cache_path is not None else paths.cache_dir() / CACHE_FILE
    key = cache_key(cpu, torch.__version__, encoder, threads)
    entries = _read_cache(path, log)
    cached = _cached_choice(entries.get(key), facts)
    if cached is not None:
        log(_line(cached))
        return cached
    if key in entries:
        log(f"precision cache {path}: the entry for {key!r} is not a valid choice; "
            "measuring again")
    if probe is None:
        raise PrecisionError(f"precision auto for {encoder} on this CPU needs a probe to time "
                             "fp32 against bf16 (none was given and nothing is cached)")
    fp32_s, bf16_s = float(probe("fp32")), float(probe("bf16"))
    ratio = fp32_s / bf16_s if bf16_s > 0 else float("inf")
    chosen = "bf16" if ratio > 1 + MARGIN else "fp32"
    choice = Choice(chosen, f"bf16 {ratio:.2f}x the speed of fp32 (bf16 needs > "
                            f"{1 + MARGIN:.2f}x)", fp32_s, bf16_s, **facts)
    log(_line(choice))
    entries[key] = {k: v for k, v in asdict(choice).items() if k != "cached"}
    _write_cache(path, entries, log)
    return choice


def _cuda_bf16(dev: torch.device) -> bool:
    """Native bf16 on that GPU (emulated bf16 is slower than fp32: it does not count)."""
    with torch.cuda.device(dev):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def _gpu_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev)


def _line(c: Choice) -> str:
    return (f"precision auto: {'cached' if c.cached else 'measured'} {c.precision} for "
            f"{c.encoder} on {c.cpu} ({c.threads} threads, torch {c.torch}): "
            f"fp32 {c.fp32_seconds:.3f} s, bf16 {c.bf16_seconds:.3f} s; {c.reason}")


def _read_cache(path: Path, log: Callable[[str], None]) -> dict:
    """The cache file's entries; {} if there is none, and {} with one log line if it is
    unreadable (it is rewritten after the next measurement)."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entries, dict):
            raise ValueError(f"holds a JSON {type(entries).__name__}, not an object")
        return entries
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:        # json.JSONDecodeError and UnicodeError included
        log(f"precision cache {path} is unreadable ({e}); measuring again")
        return {}


def _cached_choice(entry, facts: dict) -> Choice | None:
    """The Choice a cache entry records, or None if it is missing or not a valid one."""
    names = {f.name for f in fields(Choice)} - {"cached"}
    if not isinstance(entry, dict) or set(entry) != names:
        return None
    if entry["precision"] not in ("fp32", "bf16") or any(
            entry[k] != v for k, v in facts.items()):
        return None
    if not all(isinstance(entry[k], (int, float)) for k in ("fp32_seconds", "bf16_seconds")):
        return None
    return Choice(**{**entry, "cached": True})


def _write_cache(path: Path, entries: dict, log: Callable[[str], None]) -> None:
    """Replace the cache file atomically (a reader never sees half a file); a failure is
    one log line, the choice still stands for this call."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entries, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        log(f"precision cache {path} could not be written ({e}); the choice is not cached")


def text_probe(encoder_name: str, texts: Sequence[str], batch_size: int = 64,
               batches: int = 3, *, max_len: int = 512) -> Probe:
    """A probe timing ``encoder_name`` on ``batches`` batches of real texts on the CPU.

    The texts are spread over ``texts``' length range (every k-th of them by length),
    sorted by length and tokenised with dynamic padding, as the feature code does. Each
    call runs one warm-up batch, then all batches twice under the given precision, and
    returns the better of the two passes in seconds. The encoder is loaded at the first
    call, so a cached choice loads nothing.
    """
    texts = sorted(texts, key=len)
    if not texts:
        raise ValueError(f"text_probe for {encoder_name}: no texts to time")
    n = min(len(texts), batch_size * batches)
    picked = [texts[i] for i in np.linspace(0, len(texts) - 1, n).round().astype(int)]
    chunks = [picked[s:s + batch_size] for s in range(0, n, batch_size)]
    state: dict = {}

    @torch.no_grad()
    def probe(precision: str) -> float:
        if not state:
            from .modelpack import load_text_encoder

            tok, state["model"] = load_text_encoder(encoder_name)
            state["batches"] = [tok(c, padding=True, truncation=True, max_length=max_len,
                                    return_tensors="pt") for c in chunks]
        model, encoded = state["model"], state["batches"]
        with autocast(precision, "cpu"):
            model(**encoded[0], output_hidden_states=True)           # warm-up
            best = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                for enc in encoded:
                    model(**enc, output_hidden_states=True)
                best = min(best, time.perf_counter() - t0)
        return best

    return probe


def resolve_for_texts(precision: str, *, encoder: str, texts: Sequence[str],
                      device: str | torch.device | None, batch_size: int = 64,
                      max_len: int = 512, log: Callable[[str], None] = print) -> Choice:
    """:func:`resolve` with a :func:`text_probe` on ``texts`` (built only for 'auto'): the
    one way features and runs resolve a precision. ``encoder``: a name the model pack
    loads; the cache key uses its canonical name."""
    from .modelpack import canonical_text_encoder

    probe = (text_probe(encoder, texts, batch_size, max_len=max_len)
             if precision == "auto" else None)
    return resolve(precision, encoder=canonical_text_encoder(encoder), device=device,
                   probe=probe, log=log)
