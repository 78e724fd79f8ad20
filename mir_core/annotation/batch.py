"""Batch annotation: notebook 02's chain from the command line.

    python -m mir_core annotate --dataset MIntRec2.0 --split train --steps 1 2 3 \\
        --backend openai --base-url http://127.0.0.1:8000/v1 --model NAME --concurrency 4
    python -m mir_core annotate --steps 3 --backend local --limit 40      # SmolLM2, offline

The same :class:`~mir_core.annotation.chain.AnnotationChain`, the same backends and the
same resumable reply cache as the notebook: an item already in the cache is never queried
again, so rerunning a command (or resuming a killed one) sends only what is missing.

* **steps**: ``1`` cue discovery (Template 1), ``2`` descriptions (Template 2), ``3``
  importance ranks (Template 3; train split only, it reads the gold label), ``labels``
  A-MESS label descriptions. Step 3 ranks step 2's descriptions when step 2 runs too,
  else the released ones (a dataset without released descriptions runs step 2 first).
* **API key**: read from the environment variable named by ``api_key_env`` (default
  ``MIR_LLM_API_KEY``), never from the command line; it goes in the ``Authorization``
  header only and is redacted from every line written (cache, statistics, output).
* **progress**: one ``tqdm.auto`` bar per step on stderr: items done of the step's total
  (cache hits are the bar's starting count, so the rate and the remaining time - tqdm's
  ETA - are those of the items actually queried), with ``new``, ``hits``, ``fail`` (replies
  that did not parse after the retries) and ``http_err`` (items the server could not
  answer) as postfix.
* **statistics**: one JSON object per invocation appended to ``<cache>.stats.jsonl`` next
  to the cache (:func:`stats_path`): every step's ``RunStats.as_dict()``, the totals, wall
  time, concurrency, backend, model, the cache size before and after, the outcome. Never
  the key: only the name of its variable and whether it was set.
* **failures**: the server is checked (a TCP connection to it, or to the proxy that urllib
  would use) before the first item that needs a query, so an unreachable server stops the
  run at once with one line (a fully cached rerun needs no server). HTTP 401/403/404 stop
  the run at the first item; other transport failures are recorded per item (they stay
  "to do" in the cache) and stop the run after ``abort_after`` in a row. Items that could
  not be answered are retried by the next run.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import socket
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..label_descriptions import LabelDescriptionsError, example_descriptions
from .backends import Backend, BackendError, OpenAIChatBackend, OpenAIConfig, make_backend
from .backends import redact as redact_text
from .cache import CacheError, CacheRecord
from .chain import (LOGLIK_NORMS, RANK_MODES, STEP_CUES, STEP_DESCRIBE, STEP_LABELS, STEP_RANK,
                    AnnotationChain, ChainConfig, RunStats, StepError, StepProgress)

STEP_NAMES = {"1": STEP_CUES, "2": STEP_DESCRIBE, "3": STEP_RANK, "labels": STEP_LABELS,
              STEP_CUES: STEP_CUES, STEP_DESCRIBE: STEP_DESCRIBE, STEP_RANK: STEP_RANK,
              STEP_LABELS: STEP_LABELS}
STEP_ORDER = (STEP_CUES, STEP_DESCRIBE, STEP_RANK, STEP_LABELS)
BACKENDS = ("openai", "local")
DEFAULT_KEY_ENV = "MIR_LLM_API_KEY"
# HTTP statuses that will answer every item the same way: stop at the first
FATAL_STATUS = frozenset({401, 403, 404})
STATS_SCHEMA = 1


class BatchError(ValueError):
    """Settings of a batch run that cannot work (the message says which)."""


class ServerUnreachable(BackendError):
    """No TCP connection to the server (or its proxy) could be made."""


class ServerStopped(BackendError):
    """The server stopped answering during the run (or refuses every request)."""


# what the command line reports in one line with exit status 2
EXPECTED_ERRORS = (BatchError, BackendError, CacheError, StepError, FileNotFoundError,
                   KeyError, LabelDescriptionsError)


@dataclass
class BatchSpec:
    """Everything one ``annotate`` invocation does (the command line's options)."""

    dataset: str = "MIntRec2.0"
    split: str = "train"
    steps: Sequence[str] = ("1", "2", "3")
    backend: str = "openai"
    model: str | None = None            # openai: MIR_LLM_MODEL; local: smollm2-135m-instruct
    base_url: str | None = None         # openai: MIR_LLM_BASE_URL
    api_key_env: str | None = None      # None: MIR_LLM_API_KEY (may be unset)
    concurrency: int = 4                # requests in flight (the local backend runs 1)
    limit: int | None = None            # samples of steps 2-3 (label-stratified); None: all
    cache: str | Path | None = None     # None: <cache_dir>/annotation/replies.jsonl
    seed: int = 0
    data_root: str | Path | None = None
    rank_mode: str = "generate"
    loglik_norm: str = "total"
    retries: int = 2                    # extra attempts after an unparsable reply
    http_retries: int = 4               # extra HTTP requests after a transient failure
    timeout_s: float = 60.0
    max_new_tokens: dict = field(default_factory=dict)   # step -> tokens (ChainConfig's)
    cue_rounds: int = 3
    cue_background_n: int = 5
    top_k: int = 3
    label_limit: int | None = None      # labels step: the first N labels; None: all
    label_examples: str | Path | None = None   # labels step: few-shot examples file (ChainConfig)
    label_shots: int = 3
    video_dir: str | Path | None = None
    n_frames: int = 16
    num_threads: int | None = None      # local backend: torch CPU threads
    out: str | Path | None = None       # also write cues/descriptions/ranks/labels files
    progress: bool = True
    abort_after: int = 8                # consecutive unanswered items that stop the run
    connect_timeout_s: float = 5.0

    def step_names(self) -> list[str]:
        names = []
        for s in self.steps:
            key = str(s).strip().lower()
            if key not in STEP_NAMES:
                raise BatchError(f"unknown step {s!r}: use 1 (cues), 2 (descriptions), "
                                 "3 (ranks) or labels")
            names.append(STEP_NAMES[key])
        if not names:
            raise BatchError("no steps given: use --steps 1 2 3 and/or labels")
        return [s for s in STEP_ORDER if s in names]


@dataclass
class BatchResult:
    """What a run produced: the statistics record (as written) and the step results."""

    record: dict
    stats_path: Path
    results: dict = field(default_factory=dict)   # step name -> the chain step's result

    @property
    def exit_status(self) -> int:
        return 0 if self.record["status"] == "ok" else 1


def stats_path(cache_path: str | Path) -> Path:
    """``replies.jsonl`` -> ``replies.stats.jsonl`` (same folder)."""
    p = Path(cache_path)
    return p.with_name((p.stem if p.suffix else p.name) + ".stats.jsonl")


def public_url(url: str | None, backend: Backend | None = None) -> str | None:
    """``url`` without user:password and with credentials redacted (for the record)."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return backend.redact(clean) if backend is not None else redact_text(clean)


def connect_target(base_url: str) -> tuple[str, int, str]:
    """``(host, port, via)`` that a request to ``base_url`` first connects to: the server,
    or the proxy urllib would use (``via`` says which); :class:`BatchError` for a URL that
    is not http(s) with a host and a valid port."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BatchError(f"base URL {public_url(base_url)!r} is not an http(s) URL, e.g. "
                         "http://127.0.0.1:8000/v1")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise BatchError(f"base URL {public_url(base_url)!r}: {e}") from None
    host, via = parts.hostname, ""
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        pp = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        if pp.hostname:
            try:
                host, port = pp.hostname, pp.port or 80
            except ValueError:
                host, port = pp.hostname, 80
            via = f" through the proxy {pp.hostname}:{port}"
    return host, port, via


def check_reachable(base_url: str, timeout_s: float = 5.0) -> None:
    """Open (and close) a TCP connection to the server of ``base_url``, or to the proxy
    urllib would send the request through; raise :class:`ServerUnreachable` if none can be
    made. Sends nothing (no request is counted or billed)."""
    host, port, via = connect_target(base_url)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        raise ServerUnreachable(f"cannot reach {public_url(base_url)}{via} ({type(e).__name__}: "
                                f"{e}); is the server running and the URL right?") from None


def _finite(x):
    """JSON-safe: NaN and infinities become None, recursively."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


class BatchProgress(StepProgress):
    """One ``tqdm.auto`` bar per step (stderr); keeps every step's :class:`RunStats` (also
    of a step stopped by an error) and stops the run when the server stops answering."""

    def __init__(self, enabled: bool = True, abort_after: int = 8, file=None,
                 check_server=None):
        self.enabled = enabled
        self.abort_after = int(abort_after)
        self.file = file
        self.check_server = check_server      # called before the first query of the run
        self.stats: dict[str, RunStats] = {}
        self.bar = None
        self._new = self._hits = self._fail = self._http = self._in_a_row = 0

    def _postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix(new=self._new, hits=self._hits, fail=self._fail,
                                 http_err=self._http, refresh=False)

    def start(self, step: str, total: int, cached: Sequence[CacheRecord]) -> None:
        if total > len(cached) and self.check_server is not None:
            check, self.check_server = self.check_server, None
            check()
        from tqdm.auto import tqdm

        self._new, self._hits, self._http, self._in_a_row = 0, len(cached), 0, 0
        self._fail = sum(1 for r in cached if not r.ok)
        self.bar = tqdm(total=total, initial=len(cached), desc=f"annotate {step}",
                        unit="item", file=self.file or sys.stderr, disable=not self.enabled,
                        dynamic_ncols=True, leave=True)
        self._postfix()
        self.bar.refresh()

    def item(self, record: CacheRecord) -> None:
        self._new += 1
        transport = bool(record.extra.get("transport_error"))
        if transport:
            self._http += 1
            self._in_a_row += 1
        else:
            self._in_a_row = 0
            if not record.ok:
                self._fail += 1
        if self.bar is not None:
            self._postfix()
            self.bar.update(1)
        status = record.extra.get("http_status")
        if transport and status in FATAL_STATUS:
            raise ServerStopped(f"the server refused {record.sample_id} with HTTP {status}, as "
                                f"it will every item ({record.error}); check the URL, model "
                                "and key")
        if transport and self.abort_after > 0 and self._in_a_row >= self.abort_after:
            raise ServerStopped(f"{self._in_a_row} items in a row could not be answered (last: "
                                f"{record.error}); stopped - rerun the same command to resume")

    def end(self, stats: RunStats) -> None:
        self.stats[stats.step] = stats
        if self.bar is not None:
            self._postfix()
            self.bar.close()
            self.bar = None

    def write(self, *parts) -> None:
        """A log line that does not break the bars."""
        from tqdm.auto import tqdm

        tqdm.write(" ".join(str(p) for p in parts), file=self.file or sys.stderr)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_NAME_UPPER = re.compile(r"[A-Z_][A-Z0-9_]*")


def _resolve_key(spec: BatchSpec) -> tuple[str, str | None]:
    """The key's variable name and value. A "name" that is no variable name is most likely
    a key typed on the command line (``--api-key sk-...`` abbreviates ``--api-key-env``):
    refused without echoing it."""
    name = spec.api_key_env or DEFAULT_KEY_ENV
    if not _ENV_NAME.fullmatch(name):
        raise BatchError("--api-key-env takes the NAME of an environment variable (e.g. "
                         "MIR_LLM_API_KEY), not the key itself: put the key in that variable")
    key = os.environ.get(name) or None
    if spec.api_key_env and key is None:
        shown = name if _ENV_NAME_UPPER.fullmatch(name) else "the variable it names"
        raise BatchError(f"--api-key-env {shown}: that environment variable is not set")
    return name, key


def make_batch_backend(spec: BatchSpec, log) -> tuple[Backend, str | None]:
    """The backend of a batch run and the base URL it talks to (None: local)."""
    if spec.backend == "openai":
        base = spec.base_url or os.environ.get("MIR_LLM_BASE_URL")
        model = spec.model or os.environ.get("MIR_LLM_MODEL")
        missing = [n for n, v in (("--base-url (or MIR_LLM_BASE_URL)", base),
                                  ("--model (or MIR_LLM_MODEL)", model)) if not v]
        if missing:
            raise BatchError(f"the openai backend needs {' and '.join(missing)}")
        _, key = _resolve_key(spec)
        cfg = OpenAIConfig(base_url=base, model=model, api_key=key, timeout_s=spec.timeout_s,
                           max_retries=spec.http_retries, max_concurrency=spec.concurrency)
        return OpenAIChatBackend(cfg, log=log), base
    if spec.backend == "local":
        return make_backend("local", spec.model or "smollm2-135m-instruct",
                            num_threads=spec.num_threads, log=log), None
    raise BatchError(f"unknown backend {spec.backend!r}: use one of {list(BACKENDS)}")


def _validate(spec: BatchSpec) -> list[str]:
    steps = spec.step_names()
    if spec.backend not in BACKENDS:
        raise BatchError(f"unknown backend {spec.backend!r}: use one of {list(BACKENDS)}")
    if int(spec.concurrency) < 1:
        raise BatchError(f"--concurrency must be at least 1, got {spec.concurrency}")
    if spec.limit is not None and int(spec.limit) < 1:
        raise BatchError(f"--limit must be at least 1, got {spec.limit}")
    if spec.label_limit is not None and int(spec.label_limit) < 1:
        raise BatchError(f"--label-limit must be at least 1, got {spec.label_limit}")
    if int(spec.label_shots) < 1:
        raise BatchError(f"--label-shots must be at least 1, got {spec.label_shots}")
    if spec.label_examples and STEP_LABELS in steps:
        example_descriptions(spec.label_examples)     # a bad file fails before any model loads
    if spec.rank_mode not in RANK_MODES:
        raise BatchError(f"--rank-mode {spec.rank_mode!r}: use one of {list(RANK_MODES)}")
    if spec.loglik_norm not in LOGLIK_NORMS:
        raise BatchError(f"--loglik-norm {spec.loglik_norm!r}: use one of {list(LOGLIK_NORMS)}")
    if STEP_RANK in steps and spec.rank_mode == "loglik" and spec.backend != "local":
        raise BatchError("--rank-mode loglik needs token log-probabilities, which an "
                         "OpenAI-compatible chat API does not give: use --rank-mode generate "
                         "or --backend local")
    if STEP_RANK in steps and spec.split != "train":
        raise StepError(f"step 3 reads the gold label, which LGSRR uses only during training "
                        f"(Sec. 3.1, Eq. 3): rank the train split, not {spec.split!r}")
    if spec.timeout_s <= 0:
        raise BatchError(f"--timeout must be positive, got {spec.timeout_s}")
    for k, v in spec.max_new_tokens.items():
        if STEP_NAMES.get(str(k)) is None:
            raise BatchError(f"--max-new-tokens {k}=...: the steps are cues, describe, rank, "
                             "labels")
        if int(v) < 1:
            raise BatchError(f"--max-new-tokens {k}={v}: must be at least 1")
    return steps


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_batch(spec: BatchSpec, argv: Sequence[str] | None = None, stdout=None,
              stderr=None) -> BatchResult:
    """Run the chosen steps through the cache; append the statistics record (also when the
    run stops on an error, which is then re-raised). ``argv`` (the command line) goes into
    the record, redacted."""
    from ..data import download, get_spec

    stderr = stderr or sys.stderr
    steps = _validate(spec)
    started, t0 = _now(), time.perf_counter()
    progress = BatchProgress(spec.progress, spec.abort_after, file=stderr)
    log = progress.write
    root = download(spec.dataset, spec.data_root, log=lambda *a: None)
    ds = get_spec(spec.dataset, root)
    backend, base_url = make_batch_backend(spec, log)
    if base_url is not None:
        connect_target(base_url)    # a malformed URL is a setting error: say so at once
        # the server itself is checked before the first item that needs a query (a fully
        # cached rerun needs no server)
        progress.check_server = lambda: check_reachable(base_url, spec.connect_timeout_s)
    mnt = {STEP_NAMES[str(k)]: int(v) for k, v in spec.max_new_tokens.items()}
    config = ChainConfig(
        dataset=ds.name, split=spec.split, sample_size=spec.limit, seed=spec.seed,
        data_root=root, cache_path=spec.cache, max_retries=spec.retries,
        cue_rounds=spec.cue_rounds, cue_background_n=spec.cue_background_n, top_k=spec.top_k,
        n_frames=spec.n_frames, video_dir=spec.video_dir, rank_mode=spec.rank_mode,
        loglik_norm=spec.loglik_norm, label_examples=spec.label_examples,
        label_shots=spec.label_shots,
        **{f"max_new_tokens_{s}": n for s, n in mnt.items()})
    cache_file = config.resolved_cache_path()
    chain = AnnotationChain(backend, config, log=log, progress=progress)
    before = len(chain.cache)
    key_name = spec.api_key_env or DEFAULT_KEY_ENV
    effective = backend.max_concurrency
    if spec.backend == "local" and spec.concurrency > 1:
        log(f"note: the local backend answers one item at a time (--concurrency "
            f"{spec.concurrency} ignored)")
    record: dict = {
        "schema": STATS_SCHEMA, "started": started, "finished": None, "status": "running",
        "error": None, "dataset": ds.name, "split": spec.split, "steps": steps,
        "limit": spec.limit, "seed": spec.seed, "backend": backend.kind,
        "model": backend.model, "base_url": public_url(base_url, backend),
        "concurrency": effective, "concurrency_requested": int(spec.concurrency),
        "api_key_env": key_name if spec.backend == "openai" else None,
        "api_key_set": bool(getattr(getattr(backend, "config", None), "api_key", None)),
        "cache": str(cache_file), "cache_records_before": before,
        "settings": {"rank_mode": spec.rank_mode, "loglik_norm": spec.loglik_norm,
                     "retries": spec.retries, "http_retries": spec.http_retries,
                     "timeout_s": spec.timeout_s, "cue_rounds": spec.cue_rounds,
                     "cue_background_n": spec.cue_background_n, "top_k": spec.top_k,
                     "label_limit": spec.label_limit,
                     "label_examples": (str(spec.label_examples) if spec.label_examples
                                        else None),
                     "label_shots": spec.label_shots if spec.label_examples else None,
                     "n_frames": spec.n_frames,
                     "video_dir": str(spec.video_dir) if spec.video_dir else None,
                     "max_new_tokens": {s: getattr(config, f"max_new_tokens_{s}")
                                        for s in STEP_ORDER}},
        "argv": list(argv) if argv is not None else None,
        "host": {"python": platform.python_version(), "platform": platform.platform(),
                 "cpu_count": os.cpu_count(), "pid": os.getpid()},
    }
    results: dict = {}
    path = stats_path(cache_file)
    try:
        results = _run_steps(chain, spec, steps, ds, log)
        record["status"] = "ok"
    except KeyboardInterrupt:
        record["status"] = "interrupted"
        record["error"] = "KeyboardInterrupt"
        raise
    except BaseException as e:
        record["status"] = "aborted" if isinstance(e, (ServerStopped, ServerUnreachable)) \
            else "error"
        record["error"] = f"{type(e).__name__}: {' '.join(str(e).split())}"
        raise
    finally:
        if progress.bar is not None:          # a step stopped before its end (start failed)
            progress.bar.close()
            progress.bar = None
        run_stats = {s: progress.stats[s].as_dict() for s in STEP_ORDER if s in progress.stats}
        counts = {k: sum(int(d[k]) for d in run_stats.values())
                  for k in ("items", "queried", "cache_hits", "failures", "transport_failures",
                            "attempts", "http_requests")}
        # requests sent to the backend by this invocation: HTTP requests for a server
        # (retries included), backend calls for the local model
        counts["requests"] = counts["http_requests"] if spec.backend == "openai" \
            else counts["attempts"]
        if record["status"] == "ok" and counts["transport_failures"]:
            record["status"] = "incomplete"
            record["error"] = (f"{counts['transport_failures']} items could not be answered; "
                               "rerun the same command to retry them")
        record.update(finished=_now(), wall_s=round(time.perf_counter() - t0, 4),
                      counts=counts, run_stats=run_stats,
                      cache_records_after=len(chain.cache), stats_file=str(path))
        line = backend.redact(json.dumps(_finite(record), ensure_ascii=False, sort_keys=False))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    try:
        written = json.loads(line)
    except json.JSONDecodeError:            # pragma: no cover - redaction keeps JSON valid
        written = _finite(record)
    result = BatchResult(written, path, results)
    if spec.out is not None:
        write_outputs(result, Path(spec.out))
    return result


def _run_steps(chain: AnnotationChain, spec: BatchSpec, steps: list[str], ds, log) -> dict:
    out: dict = {}
    if STEP_CUES in steps:
        out[STEP_CUES] = chain.discover_cues()
    descriptions = None
    need_desc = (STEP_RANK in steps and STEP_DESCRIBE not in steps
                 and not chain.samples().has_descriptions)
    if need_desc:
        log(f"note: {ds.name} has no released descriptions; step 3 ranks step 2's, so step 2 "
            "runs first")
    if STEP_DESCRIBE in steps or need_desc:
        descriptions = chain.describe()
        out[STEP_DESCRIBE] = descriptions
    if STEP_RANK in steps:
        out[STEP_RANK] = chain.rank(descriptions)
    if STEP_LABELS in steps:
        labels = list(ds.labels[:spec.label_limit]) if spec.label_limit else None
        out[STEP_LABELS] = chain.label_descriptions(datasets=[ds.name], labels=labels)
    return out


def write_outputs(result: BatchResult, out: Path) -> list[Path]:
    """The step results as the notebook writes them: cues.csv, descriptions.csv,
    ranks.tsv (release format), ranks.csv (raw replies, errors), label_descriptions.json."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    r = result.results
    if STEP_CUES in r:
        r[STEP_CUES].frame().to_csv(out / "cues.csv", index=False)
        written.append(out / "cues.csv")
    if STEP_DESCRIBE in r:
        r[STEP_DESCRIBE].table.to_csv(out / "descriptions.csv")
        written.append(out / "descriptions.csv")
    if STEP_RANK in r:
        r[STEP_RANK].frame().to_csv(out / "ranks.csv", index=False)
        written += [r[STEP_RANK].to_tsv(out / "ranks.tsv"), out / "ranks.csv"]
    if STEP_LABELS in r:
        lab = r[STEP_LABELS]
        (out / "label_descriptions.json").write_text(json.dumps(
            {"descriptions": lab.descriptions, "failures": lab.failures}, indent=2))
        written.append(out / "label_descriptions.json")
    return written


def summary(result: BatchResult) -> dict:
    """The short form printed by the command line."""
    rec = result.record
    per_step = {s: {k: d.get(k) for k in ("items", "queried", "cache_hits", "failures",
                                          "transport_failures", "http_requests", "wall_s",
                                          "items_per_s")}
                for s, d in rec["run_stats"].items()}
    return {"status": rec["status"], "backend": rec["backend"], "model": rec["model"],
            "concurrency": rec["concurrency"], "wall_s": rec["wall_s"], **rec["counts"],
            "steps": per_step, "cache": rec["cache"], "stats": str(result.stats_path)}


__all__ = ["BatchSpec", "BatchResult", "BatchProgress", "BatchError", "ServerUnreachable",
           "ServerStopped", "EXPECTED_ERRORS", "run_batch", "stats_path", "check_reachable",
           "connect_target", "public_url", "write_outputs", "summary", "STEP_NAMES"]
