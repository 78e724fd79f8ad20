"""Crash-safe cache of LLM replies: one JSON object per line, appended and flushed per item.

Every reply is keyed by ``(step, backend, model, prompt sha256, sample id)``; the prompt
hash covers everything sent to the model (messages, frames, decoding settings), so a
changed prompt is a new item and an unchanged one is never queried twice. Killing a run
anywhere loses at most the item being written: on open, a truncated last line is cut off
(and reported), a malformed line elsewhere raises :class:`CacheError` naming the file and
line.

API keys are never part of a record: the backends do not pass them to the cache, and the
chain runs every error text and raw body through the backend's ``redact`` before ``put``.

``attempts`` counts the backend calls of an item (a reply that did not parse is asked
again), ``http_requests`` the HTTP requests those calls made, the client's own retries
included (0 for backends that are not HTTP); ``raw_body`` keeps the last raw HTTP body
(redacted, truncated) of an item the backend could not answer.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator


class CacheError(ValueError):
    """A reply cache file is malformed; the message names the file and line."""


def prompt_sha256(request: Any) -> str:
    """sha256 of the canonical JSON of a request (messages, image hashes, settings)."""
    blob = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class CacheRecord:
    """One finished item: the reply text(s), what was parsed from it and its cost."""

    step: str
    backend: str
    model: str
    prompt_sha256: str
    sample_id: str
    raw: Any                               # reply text, or list of texts (one per attempt)
    parsed: Any = None                     # JSON-serialisable parse result
    ok: bool = True
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 1                      # backend calls (parse retries included)
    http_requests: int = 0                 # HTTP requests of those calls (transport retries)
    raw_body: str | None = None            # last raw HTTP body of a transport failure
    created: float = field(default_factory=time.time)
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.step, self.backend, self.model, self.prompt_sha256, self.sample_id)


_FIELDS = set(CacheRecord.__dataclass_fields__)


class ReplyCache:
    """Append-only JSONL store of :class:`CacheRecord` (thread-safe writes).

    >>> cache = ReplyCache("data/cache/annotation/replies.jsonl")
    >>> cache.get("rank", "local", "smollm2-135m-instruct", sha, "0_0")   # None if absent
    """

    def __init__(self, path: str | Path, fsync: bool = True, log=print):
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._records: dict[tuple, CacheRecord] = {}
        self.dropped_bytes = 0
        self._load(log)

    # ------------------------------------------------------------------ reading
    def _load(self, log) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            tail = data[cut:]
            try:
                json.loads(tail.decode("utf-8"))
                complete = True
            except (UnicodeDecodeError, json.JSONDecodeError):
                complete = False
            if complete:        # the record was written, only its newline is missing
                with open(self.path, "ab") as f:
                    f.write(b"\n")
                data += b"\n"
            else:               # interrupted mid-write: drop the partial record
                self.dropped_bytes = len(tail)
                with open(self.path, "r+b") as f:
                    f.truncate(cut)
                data = data[:cut]
                log(f"{self.path}: dropped a truncated last line ({len(tail)} bytes) left "
                    "by an interrupted run")
        for lineno, line in enumerate(data.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise CacheError(f"{self.path} line {lineno}: not valid JSON ({e.msg}); "
                                 "remove or repair that line") from None
            if not isinstance(obj, dict):
                raise CacheError(f"{self.path} line {lineno}: expected a JSON object")
            missing = {"step", "backend", "model", "prompt_sha256", "sample_id", "raw"} - set(obj)
            if missing:
                raise CacheError(f"{self.path} line {lineno}: missing field(s) {sorted(missing)}")
            rec = CacheRecord(**{k: v for k, v in obj.items() if k in _FIELDS})
            self._records[rec.key] = rec          # a later line for the same key wins

    def get(self, step: str, backend: str, model: str, prompt_sha: str,
            sample_id: str) -> CacheRecord | None:
        return self._records.get((step, backend, model, prompt_sha, str(sample_id)))

    def __contains__(self, key: tuple) -> bool:
        return tuple(key) in self._records

    def __len__(self) -> int:
        return len(self._records)

    def records(self, step: str | None = None) -> Iterator[CacheRecord]:
        for rec in self._records.values():
            if step is None or rec.step == step:
                yield rec

    # ------------------------------------------------------------------ writing
    def put(self, record: CacheRecord) -> None:
        """Append one record and flush it to disk before returning."""
        record.sample_id = str(record.sample_id)
        line = json.dumps(asdict(record), ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            self._records[record.key] = record
