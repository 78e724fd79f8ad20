"""The shallow-to-deep chain of thought of LGSRR (Sec. 3.1, Appendix C), resumable, plus
A-MESS label descriptions (Sec. III-C).

    >>> backend = make_backend("local", "smollm2-135m-instruct")
    >>> chain = AnnotationChain(backend, ChainConfig(dataset="MIntRec2.0", sample_size=12))
    >>> cues = chain.discover_cues()          # step 1: Template 1 over random backgrounds
    >>> desc = chain.describe()               # step 2: Template 2 per cue, 16 uniform frames
    >>> ranks = chain.rank()                  # step 3: Template 3 with the gold label (train)
    >>> labels = chain.label_descriptions()   # A-MESS: 3 descriptions per label

Every query goes through :class:`~mir_core.annotation.cache.ReplyCache`: an item already
in the cache is never queried again, and each finished item is on disk before the next
starts, so a run killed anywhere resumes where it stopped. Each step returns its result
and a :class:`RunStats`; ``progress=`` (a :class:`StepProgress`) is told about every item as
it finishes (the progress bars of ``python -m mir_core annotate``, :mod:`.batch`).
"""
from __future__ import annotations

import hashlib
import http.client
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .. import paths
from ..data import ASPECTS, DATASETS, MIRSplit, get_spec, load_split
from ..label_descriptions import example_descriptions, normalise_label
from .backends import Backend, BackendError, ReleasedBackend, Reply, UnsupportedError
from .backends import redact as redact_text
from .cache import CacheRecord, ReplyCache, prompt_sha256
from .parsing import (extract_cues, normalise_cue, order_to_text, parse_label_descriptions,
                      parse_rank)
from .prompts import (ALL_ORDERS, AMESS_EXAMPLE, AMESS_RETRY_LINE, CUE_SHORT, BackgroundSample,
                      cue_discovery_prompt, description_prompt, label_description_messages,
                      rank_answer, rank_prompt, RANK_RETRY_LINE)

STEP_CUES, STEP_DESCRIBE, STEP_RANK, STEP_LABELS = "cues", "describe", "rank", "labels"
RANK_MODES = ("generate", "loglik")
# total: sum of token log-probs; mean: per token; calibrated: total minus the total under a
# content-free prompt (intent and descriptions "N/A"), which removes the model's prior
# preference for an order (contextual calibration, Zhao et al. 2021).
LOGLIK_NORMS = ("total", "mean", "calibrated")
# what a backend raises when it could not answer (recorded, the step goes on); anything
# else is a bug and stops the step
_TRANSPORT_ERRORS = (BackendError, TimeoutError, ConnectionError, http.client.HTTPException)
CUE_RETRY_LINE = "Please list the perspectives as a numbered list, one short name per line."


class StepError(ValueError):
    """A chain step was asked for something the paper's method does not allow."""


@dataclass
class ChainConfig:
    """Settings of the annotation chain (defaults: the paper's, scaled for a CPU)."""

    dataset: str = "MIntRec2.0"
    split: str = "train"
    sample_size: int | None = 12        # samples annotated in steps 2-3 (None: the split)
    seed: int = 0
    data_root: str | Path | None = None
    cache_path: str | Path | None = None   # default: cache_dir()/annotation/replies.jsonl
    max_retries: int = 2                # extra attempts after an unparsable reply
    retry_failures: bool = False        # re-query items recorded as parse failures
    # CoT step 1 (Eq. 1)
    cue_rounds: int = 3                 # independent background samples B
    cue_background_n: int = 5           # n samples in each B
    cue_video: str = "descriptions"     # what stands for V_i: descriptions | frames | none
    cue_frames_per_sample: int = 4
    top_k: int = 3                      # K (Appendix B: K = 3)
    # CoT step 2 (Eq. 2)
    describe_cues: tuple[str, ...] = ASPECTS   # S; the paper's S = {A, E, I}
    n_frames: int = 16                  # VideoLLaMA2-7B-16F
    video_dir: str | Path | None = None
    video_pattern: str = "{key}.mp4"    # file of a sample under video_dir
    # CoT step 3 (Eq. 3)
    rank_mode: str = "generate"         # generate | loglik
    loglik_norm: str = "total"          # total | mean | calibrated (see LOGLIK_NORMS)
    rank_descriptions: str = "auto"     # auto (step 2's if run, else released) | released
    # generation budgets per step
    max_new_tokens_cues: int = 160
    max_new_tokens_describe: int = 96
    max_new_tokens_rank: int = 40
    max_new_tokens_labels: int = 96
    # A-MESS label step: None asks with the paper's prompt (its one inline example); a
    # label-description file (formats: mir_core.label_descriptions, e.g. the paper's
    # GPT-4 file) makes the query few-shot: the first `label_shots` of its labels other
    # than the one asked become worked examples, and a reply copying them is rejected
    label_examples: str | Path | None = None
    label_shots: int = 3

    def __post_init__(self) -> None:
        if self.rank_mode not in RANK_MODES:
            raise ValueError(f"rank_mode {self.rank_mode!r}: use one of {RANK_MODES}")
        if self.loglik_norm not in LOGLIK_NORMS:
            raise ValueError(f"loglik_norm {self.loglik_norm!r}: use one of {LOGLIK_NORMS}")
        if self.cue_video not in ("descriptions", "frames", "none"):
            raise ValueError(f"cue_video {self.cue_video!r}: use descriptions, frames or none")
        if int(self.label_shots) < 1:
            raise ValueError(f"label_shots must be at least 1, got {self.label_shots}")
        if self.rank_descriptions not in ("auto", "released"):
            raise ValueError(f"rank_descriptions {self.rank_descriptions!r}: auto or released")
        self.describe_cues = tuple(self.describe_cues)

    def resolved_cache_path(self) -> Path:
        if self.cache_path is not None:
            return Path(self.cache_path)
        return paths.cache_dir() / "annotation" / "replies.jsonl"


@dataclass
class RunStats:
    """Throughput and outcome counts of one step."""

    step: str
    backend: str
    model: str
    items: int = 0
    queried: int = 0                 # items sent to the backend in this run
    cache_hits: int = 0
    failures: int = 0                # items whose reply could not be parsed (after retries)
    transport_failures: int = 0      # items the backend could not answer (not cached as done)
    attempts: int = 0                # backend calls (parse retries included)
    http_requests: int = 0           # HTTP requests of those calls (transport retries included)
    wall_s: float = 0.0
    llm_s: float = 0.0               # time inside backend calls
    prompt_tokens: int = 0           # of queried items
    completion_tokens: int = 0       # generated (or, for log-likelihood, scored) tokens
    images_sent: int = 0

    @property
    def items_per_s(self) -> float:
        return self.items / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def queried_per_s(self) -> float:
        return self.queried / self.wall_s if self.wall_s > 0 and self.queried else float("nan")

    @property
    def tokens_per_s(self) -> float:
        """Generated (scored) tokens per second of backend time."""
        return self.completion_tokens / self.llm_s if self.llm_s > 0 else float("nan")

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.llm_s if self.llm_s > 0 else float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(items_per_s=self.items_per_s, queried_per_s=self.queried_per_s,
                 tokens_per_s=self.tokens_per_s, prompt_tokens_per_s=self.prompt_tokens_per_s)
        return d


class StepProgress:
    """What :class:`AnnotationChain` reports while a step runs (``progress=``); this base
    does nothing. Called from the thread that runs the step, never from the worker threads:
    ``start`` once the cache lookups are done (``cached``: the records served from the
    cache), ``item`` after each queried item is on disk, ``end`` with the step's
    :class:`RunStats` also when the step stops on an exception (an exception raised by
    ``item`` stops the step: the items finished so far stay in the cache)."""

    def start(self, step: str, total: int, cached: Sequence[CacheRecord]) -> None:
        pass

    def item(self, record: CacheRecord) -> None:
        pass

    def end(self, stats: RunStats) -> None:
        pass


@dataclass
class _Outcome:
    raw: object
    parsed: object
    ok: bool
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 1
    images_sent: int = 0
    http_requests: int = 0
    raw_body: str | None = None
    extra: dict = field(default_factory=dict)


def _transport_outcome(backend: Backend, e: BaseException, out: _Outcome | None = None) -> _Outcome:
    """A recorded transport failure: the (redacted) error, the raw body the backend kept,
    the HTTP requests it made; ``out`` holds what earlier calls of the item produced."""
    redact = getattr(backend, "redact", None) or redact_text
    out = out or _Outcome(raw=None, parsed=None, ok=False)
    out.ok, out.parsed = False, None
    if isinstance(out.raw, list) and not out.raw:
        out.raw = None
    out.error = redact(f"backend: {e}")
    out.http_requests += int(getattr(e, "http_requests", 0) or 0)
    out.raw_body = redact(getattr(e, "raw", None))
    out.extra = {**out.extra, "transport_error": True,
                 "failure": getattr(e, "kind", None) or type(e).__name__}
    if getattr(e, "status", None) is not None:
        out.extra["http_status"] = e.status
    return out


@dataclass
class _Item:
    sample_id: str
    request: dict                      # everything that determines the reply (hashed)
    run: Callable[[], _Outcome]


# --------------------------------------------------------------------------- results
@dataclass
class CueDiscovery:
    """CoT step 1 result: cues ranked by how many rounds named them."""

    ranked: list[tuple[str, int]]     # (canonical cue, rounds naming it), most frequent first
    selected: list[str]               # top-K
    rounds: int
    raw_names: list[list[str]]        # per round, the names as the model wrote them
    replies: list[str]
    stats: RunStats
    note: str = ""

    def frame(self) -> pd.DataFrame:
        short = [CUE_SHORT.get(c, "") for c, _ in self.ranked]
        return pd.DataFrame({"cue": [c for c, _ in self.ranked], "short": short,
                             "count": [n for _, n in self.ranked],
                             "selected": [c in self.selected for c, _ in self.ranked]})


@dataclass
class Descriptions:
    """CoT step 2 result: one description per cue per sample."""

    keys: list[str]
    cues: tuple[str, ...]
    table: pd.DataFrame               # index key, one column per cue (None where failed)
    frames_used: dict[str, int]       # key -> frames sent (0: text only)
    text_only: bool                   # no frames seen (False for the release: VideoLLaMA2 had 16)
    stats: RunStats
    note: str = ""

    def for_aspects(self) -> tuple[list[str], list[str], list[str]] | None:
        """A, E, I description lists when the cues are the data layer's three aspects."""
        if not all(a in self.table.columns for a in ASPECTS):
            return None
        return tuple(self.table[a].tolist() for a in ASPECTS)  # type: ignore[return-value]


@dataclass
class Ranks:
    """CoT step 3 result: importance orders (aspect indices, most important first)."""

    keys: list[str]
    labels: list[str]
    orders: np.ndarray                # (N, 3) int64, rows of -1 where parsing failed
    raw: list[object]                 # reply text(s) per sample (or scores for loglik)
    errors: list[str | None]
    mode: str
    stats: RunStats

    @property
    def ok(self) -> np.ndarray:
        return self.orders[:, 0] >= 0

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({
            "key": self.keys, "label": self.labels,
            "order": [order_to_text(o) if o[0] >= 0 else "" for o in self.orders],
            "ok": self.ok, "error": self.errors,
            "raw": [r if isinstance(r, str) else str(r) for r in self.raw]})

    def to_tsv(self, path: str | Path) -> Path:
        """Write the ranks in the release's format (key, Rank_First, Rank_Second,
        Rank_Third with the aspect names); failed samples are left out."""
        rows = [{"key": k, "Rank_First": ASPECTS[o[0]], "Rank_Second": ASPECTS[o[1]],
                 "Rank_Third": ASPECTS[o[2]]} for k, o in zip(self.keys, self.orders) if o[0] >= 0]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=["key", "Rank_First", "Rank_Second", "Rank_Third"]).to_csv(
            path, sep="\t", index=False)
        return path


@dataclass
class LabelDescriptions:
    """A-MESS result: three descriptions per label."""

    descriptions: dict[str, list[str]]      # label -> 3 strings (failed labels absent)
    failures: dict[str, str]                # label -> error (raw reply kept in the cache)
    datasets: list[str]
    stats: RunStats


# --------------------------------------------------------------------------- the chain
def _frames_sha(frames: np.ndarray | None) -> str | None:
    if frames is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()


class AnnotationChain:
    """Runs the CoT steps against one backend, through the reply cache."""

    def __init__(self, backend: Backend, config: ChainConfig | None = None,
                 cache: ReplyCache | None = None, log=print,
                 progress: "StepProgress | None" = None):
        self.backend = backend
        self.config = config or ChainConfig()
        self.cache = cache or ReplyCache(self.config.resolved_cache_path(), log=log)
        self.log = log
        self.progress = progress
        self._splits: dict[str, MIRSplit] = {}
        self._null: list[float] | None = None

    # ------------------------------------------------------------------ data
    def split(self, split: str | None = None) -> MIRSplit:
        split = split or self.config.split
        if split not in self._splits:
            self._splits[split] = load_split(self.config.dataset, split, self.config.data_root)
        return self._splits[split]

    def samples(self, split: str | None = None) -> MIRSplit:
        """The annotated sample: ``sample_size`` rows drawn with ``seed`` (label-stratified)."""
        return self.split(split).subset(self.config.sample_size, seed=self.config.seed)

    def video_path(self, key: str) -> Path | None:
        if self.config.video_dir is None:
            return None
        dia, _, utt = key.partition("_")
        return Path(self.config.video_dir) / self.config.video_pattern.format(
            key=key, dialogue=dia, utterance=utt)

    def frames(self, key: str, n: int | None = None) -> np.ndarray | None:
        """``n`` (default ``n_frames``) frames sampled uniformly with decord from the
        sample's clip, or None when it has no clip under ``video_dir``."""
        path = self.video_path(key)
        if path is None or not path.exists():
            return None
        from ..features.video import read_frames

        return read_frames(path, n=n or self.config.n_frames)

    # ------------------------------------------------------------------ engine
    def _execute(self, step: str, items: Sequence[_Item]) -> tuple[list[CacheRecord], RunStats]:
        """Look every item up in the cache, query the rest (bounded concurrency), append
        each finished item to the cache at once."""
        b = self.backend
        stats = RunStats(step, b.kind, b.model, items=len(items))
        t0 = time.perf_counter()                 # lookups count: replay speed is measured too
        results: list[CacheRecord | None] = [None] * len(items)
        todo: list[tuple[int, _Item, str]] = []
        for i, it in enumerate(items):
            sha = prompt_sha256(it.request)
            rec = self.cache.get(step, b.kind, b.model, sha, it.sample_id)
            done = rec is not None and not rec.extra.get("transport_error") and (
                rec.ok or not self.config.retry_failures)
            if done:
                results[i] = rec
                stats.cache_hits += 1
            else:
                todo.append((i, it, sha))
        bar = self.progress
        if bar is not None:
            bar.start(step, len(items), [r for r in results if r is not None])

        def work(it: _Item, sha: str) -> CacheRecord:
            try:
                out = it.run()
            except _TRANSPORT_ERRORS as e:
                if isinstance(e, UnsupportedError):
                    raise
                out = _transport_outcome(b, e)
            rec = CacheRecord(step=step, backend=b.kind, model=b.model, prompt_sha256=sha,
                              sample_id=it.sample_id, raw=out.raw, parsed=out.parsed, ok=out.ok,
                              error=out.error, prompt_tokens=out.prompt_tokens,
                              completion_tokens=out.completion_tokens, latency_s=out.latency_s,
                              attempts=out.attempts, http_requests=out.http_requests,
                              raw_body=out.raw_body,
                              extra={**out.extra, "images_sent": out.images_sent})
            self.cache.put(rec)
            return rec

        try:
            if b.max_concurrency <= 1 or len(todo) <= 1:
                for i, it, sha in todo:
                    results[i] = work(it, sha)
                    stats.queried += 1
                    if bar is not None:
                        bar.item(results[i])
            else:
                with ThreadPoolExecutor(max_workers=b.max_concurrency) as pool:
                    futures = {pool.submit(work, it, sha): i for i, it, sha in todo}
                    try:
                        for fut in as_completed(futures):
                            results[futures[fut]] = fut.result()
                            stats.queried += 1
                            if bar is not None:
                                bar.item(results[futures[fut]])
                    except BaseException:
                        pool.shutdown(wait=True, cancel_futures=True)
                        raise
        finally:
            stats.wall_s = time.perf_counter() - t0
            queried_idx = {i for i, _, _ in todo}
            for i, rec in enumerate(results):
                if rec is None:
                    continue
                if not rec.ok:
                    if rec.extra.get("transport_error"):
                        stats.transport_failures += 1
                    else:
                        stats.failures += 1
                if i in queried_idx:
                    stats.attempts += rec.attempts
                    stats.http_requests += rec.http_requests
                    stats.llm_s += rec.latency_s
                    stats.prompt_tokens += rec.prompt_tokens
                    stats.completion_tokens += rec.completion_tokens
                    stats.images_sent += int(rec.extra.get("images_sent", 0))
            if bar is not None:
                bar.end(stats)
        return results, stats  # type: ignore[return-value]

    def _generate_with_retries(self, messages: list[dict], images, max_new_tokens: int,
                               parse: Callable[[str], tuple[bool, object, str | None]],
                               retry_line: str) -> _Outcome:
        """Generate, parse; on an unparsable reply ask again (bounded), showing the model
        its previous reply. The outcome keeps every raw reply, counts the backend calls
        (``attempts``) and the HTTP requests they made (``http_requests``); a call the
        backend cannot answer ends the item as a recorded transport failure that keeps
        what the earlier calls produced."""
        raws: list[str] = []
        out = _Outcome(raw=raws, parsed=None, ok=False, attempts=0)
        msgs = list(messages)
        for attempt in range(self.config.max_retries + 1):
            out.attempts += 1
            try:
                reply: Reply = self.backend.generate(msgs, images=images,
                                                     max_new_tokens=max_new_tokens)
            except _TRANSPORT_ERRORS as e:
                if isinstance(e, UnsupportedError):
                    raise
                return _transport_outcome(self.backend, e, out)
            raws.append(reply.text)
            out.http_requests += int(getattr(reply, "http_requests", 0) or 0)
            out.prompt_tokens += reply.prompt_tokens
            out.completion_tokens += reply.completion_tokens
            out.latency_s += reply.latency_s
            out.images_sent += reply.images_sent
            ok, parsed, error = parse(reply.text)
            if ok:
                out.ok, out.parsed, out.error = True, parsed, None
                return out
            out.error = error
            msgs = msgs + [{"role": "assistant", "content": reply.text},
                           {"role": "user", "content": retry_line}]
        return out

    # ------------------------------------------------------------------ step 1
    def discover_cues(self, rounds: int | None = None, n: int | None = None,
                      top_k: int | None = None) -> CueDiscovery:
        """CoT step 1 (Eq. 1): Template 1 over ``rounds`` random background samples B of
        ``n`` (text, video) pairs from the split; cue names normalised to the canonical
        vocabulary and counted once per round; the top-K form S. V_i is the released
        description text (``cue_video='descriptions'``), ``cue_frames_per_sample`` frames of
        the sample's clip (``'frames'``, image backends with ``video_dir``; samples without
        a clip get none) or nothing (``'none'``)."""
        cfg = self.config
        rounds = cfg.cue_rounds if rounds is None else rounds
        n = cfg.cue_background_n if n is None else n
        top_k = cfg.top_k if top_k is None else top_k
        if isinstance(self.backend, ReleasedBackend):
            stats = RunStats(STEP_CUES, self.backend.kind, self.backend.model)
            return CueDiscovery([(c, 0) for c in ASPECTS], list(ASPECTS), 0, [], [], stats,
                                note="the release holds no step-1 replies; S = {A, E, I} is "
                                     "the set the paper selected (Sec. 3.1)")
        sp = self.split()
        items = []
        for r in range(rounds):
            rng = np.random.default_rng([cfg.seed, r])
            idx = np.sort(rng.choice(len(sp), size=min(n, len(sp)), replace=False))
            bg, frames = [], []
            for i in idx:
                key, text = sp.keys[i], sp.texts[i]
                video = ""
                if cfg.cue_video == "descriptions" and sp.has_descriptions:
                    video = " ".join(sp.descriptions(a)[i] for a in range(3))
                elif cfg.cue_video == "frames" and self.backend.supports_images:
                    f = self.frames(key, cfg.cue_frames_per_sample)
                    if f is not None:
                        first = sum(len(x) for x in frames) + 1
                        frames.append(f)
                        video = f"(attached images {first}-{first + len(f) - 1})"
                bg.append(BackgroundSample(key, text, video))
            images = np.concatenate(frames) if frames else None
            messages = [{"role": "user", "content": cue_discovery_prompt(bg)}]
            request = {"messages": messages, "frames": _frames_sha(images),
                       "max_new_tokens": cfg.max_new_tokens_cues,
                       "retries": cfg.max_retries, **self.backend.settings()}
            items.append(_Item(f"{cfg.dataset}/{cfg.split}/round{r}", request,
                               lambda m=messages, im=images: self._generate_with_retries(
                                   m, im, cfg.max_new_tokens_cues, _parse_cue_reply,
                                   CUE_RETRY_LINE)))
        records, stats = self._execute(STEP_CUES, items)
        counts: Counter = Counter()
        first_seen: dict[str, int] = {}
        raw_names, replies = [], []
        for rec in records:
            replies.append(rec.raw[-1] if isinstance(rec.raw, list) and rec.raw else rec.raw)
            if not rec.ok:
                raw_names.append([])
                continue
            raw_names.append(rec.parsed["names"])
            for cue in dict.fromkeys(rec.parsed["cues"]):     # once per round, in order
                counts[cue] += 1
                first_seen.setdefault(cue, len(first_seen))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], first_seen[kv[0]]))
        return CueDiscovery(ranked, [c for c, _ in ranked[:top_k]], rounds, raw_names, replies,
                            stats)

    # ------------------------------------------------------------------ step 2
    def describe(self, cues: Sequence[str] | None = None, split: str | None = None) -> Descriptions:
        """CoT step 2 (Eq. 2): one Template 2 description per cue per sample, from the
        utterance and ``n_frames`` uniformly sampled frames (backends that take images);
        text-only backends get the utterance only and the prompt says so."""
        cfg = self.config
        cues = tuple(cues or cfg.describe_cues)
        sp = self.samples(split)
        released = isinstance(self.backend, ReleasedBackend)
        items, frames_used = [], {}
        for key, text in zip(sp.keys, sp.texts):
            frames = None
            if self.backend.supports_images:
                frames = self.frames(key)
            frames_used[key] = 0 if frames is None else len(frames)
            for cue in cues:
                sid = f"{key}/{CUE_SHORT.get(cue, cue)}"
                if released:
                    request = {"released": cfg.dataset, "key": key, "cue": cue}
                    run = (lambda k=key, c=cue: _Outcome(
                        raw=self.backend.description(k, c), parsed=None, ok=True, attempts=0))
                else:
                    n_img = 0 if frames is None else len(frames)
                    messages = [{"role": "user", "content": description_prompt(cue, text, n_img)}]
                    request = {"messages": messages, "frames": _frames_sha(frames),
                               "max_new_tokens": cfg.max_new_tokens_describe,
                               **self.backend.settings()}
                    run = (lambda m=messages, f=frames: self._describe_one(m, f))
                items.append(_Item(sid, request, run))
        records, stats = self._execute(STEP_DESCRIBE, items)
        table = pd.DataFrame(index=pd.Index(sp.keys, name="key"), columns=list(cues), dtype=object)
        j = 0
        for key in sp.keys:
            for cue in cues:
                rec = records[j]
                j += 1
                text_out = rec.raw[-1] if isinstance(rec.raw, list) else rec.raw
                table.loc[key, cue] = text_out if rec.ok else None
        text_only = not released and not any(frames_used.values())
        note = ("released VideoLLaMA2-7B-16F descriptions" if released else
                f"{self.backend.kind} backend is text-only: descriptions come from the "
                "utterance alone" if not self.backend.supports_images else
                "no clip found under video_dir: descriptions come from the utterance alone"
                if text_only else f"{sum(1 for v in frames_used.values() if v)} of "
                f"{len(frames_used)} samples had frames")
        return Descriptions(list(sp.keys), cues, table, frames_used, text_only, stats, note)

    def _describe_one(self, messages, frames) -> _Outcome:
        def parse(text: str):
            return (bool(text.strip()), None, None if text.strip() else "empty description")

        return self._generate_with_retries(messages, frames, self.config.max_new_tokens_describe,
                                           parse, "Please write the description now.")

    # ------------------------------------------------------------------ step 3
    def rank(self, descriptions: Descriptions | None = None, split: str | None = None,
             mode: str | None = None) -> Ranks:
        """CoT step 3 (Eq. 3): rank A/E/I with Template 3 given the gold label and the
        three descriptions. Train split only: the paper uses the label "only during
        training". ``mode`` 'generate' parses the reply (retries, then a recorded failure);
        'loglik' scores the 6 candidate orders and keeps the most likely."""
        cfg = self.config
        split = split or cfg.split
        if split != "train":
            raise StepError(f"CoT step 3 reads the gold label, which LGSRR uses only during "
                            f"training (Sec. 3.1, Eq. 3); refusing split {split!r} of "
                            f"{cfg.dataset} - rank the train split")
        mode = mode or cfg.rank_mode
        if mode not in RANK_MODES:
            raise ValueError(f"rank mode {mode!r}: use one of {RANK_MODES}")
        released = isinstance(self.backend, ReleasedBackend)
        if mode == "loglik" and not released and not self.backend.supports_loglik:
            raise UnsupportedError(f"backend {self.backend.kind!r} ({self.backend.model}) gives "
                                   "no log-likelihoods; use rank_mode='generate'")
        sp = self.samples(split)
        descs = self._rank_inputs(sp, descriptions)
        cands = [rank_answer(o) for o in ALL_ORDERS]
        items = []
        for i, (key, label) in enumerate(zip(sp.keys, sp.frame["label"].tolist())):
            a, e, it = descs[0][i], descs[1][i], descs[2][i]
            if released:
                request = {"released": cfg.dataset, "key": key}
                run = (lambda k=key: self._released_rank(k))
            elif a is None or e is None or it is None:
                request = {"missing_description": key}
                run = (lambda k=key: _Outcome(raw=None, parsed=None, ok=False, attempts=0,
                                              error=f"{k}: a step-2 description is missing"))
            else:
                messages = [{"role": "user", "content": rank_prompt(label, a, e, it)}]
                if mode == "loglik":
                    request = {"messages": messages, "candidates": cands,
                               "norm": cfg.loglik_norm, "mode": "loglik",
                               **self.backend.settings()}
                    run = (lambda m=messages: self._loglik_rank(m, cands))
                else:
                    request = {"messages": messages, "max_new_tokens": cfg.max_new_tokens_rank,
                               "retries": cfg.max_retries, "mode": "generate",
                               **self.backend.settings()}
                    run = (lambda m=messages: self._generate_with_retries(
                        m, None, cfg.max_new_tokens_rank, _parse_rank_reply, RANK_RETRY_LINE))
            items.append(_Item(key, request, run))
        records, stats = self._execute(STEP_RANK, items)
        orders = np.full((len(records), 3), -1, dtype=np.int64)
        for i, rec in enumerate(records):
            if rec.ok:
                orders[i] = rec.parsed["order"]
        return Ranks(list(sp.keys), sp.frame["label"].tolist(), orders,
                     [r.raw for r in records], [r.error for r in records],
                     "released" if released else mode, stats)

    def _rank_inputs(self, sp: MIRSplit, descriptions: Descriptions | None):
        if descriptions is not None and self.config.rank_descriptions == "auto":
            aei = descriptions.for_aspects()
            if aei is None:
                raise StepError(f"step 3 ranks {list(ASPECTS)}; the step-2 descriptions are of "
                                f"{list(descriptions.cues)}")
            by_key = {k: i for i, k in enumerate(descriptions.keys)}
            missing = [k for k in sp.keys if k not in by_key]
            if missing:
                raise StepError(f"step-2 descriptions lack samples {missing[:5]}")
            return tuple([aei[j][by_key[k]] for k in sp.keys] for j in range(3))
        if not sp.has_descriptions:
            raise StepError(f"{sp.dataset} has no released descriptions; run step 2 first")
        return tuple(sp.descriptions(j) for j in range(3))

    def _released_rank(self, key: str) -> _Outcome:
        order = self.backend.rank(key)
        return _Outcome(raw=order_to_text(order), parsed={"order": list(order),
                                                          "method": "released"}, ok=True,
                        attempts=0)

    def _null_scores(self, cands) -> list[float]:
        """Candidate totals under the content-free Template 3 (for 'calibrated')."""
        if self._null is None:
            null = [{"role": "user", "content": rank_prompt("N/A", "N/A", "N/A", "N/A")}]
            self._null = self.backend.score(null, cands).total
        return self._null

    def _loglik_rank(self, messages, cands) -> _Outcome:
        s = self.backend.score(messages, cands)
        norm = self.config.loglik_norm
        raw = {"total": s.total, "mean": s.mean, "n_tokens": s.n_tokens}
        if norm == "calibrated":
            raw["null_total"] = self._null_scores(cands)
            values = [t - z for t, z in zip(s.total, raw["null_total"])]
        else:
            values = s.total if norm == "total" else s.mean
        best = int(np.argmax(values))
        return _Outcome(raw=raw, parsed={"order": list(ALL_ORDERS[best]), "method": "loglik"},
                        ok=True, prompt_tokens=s.prompt_tokens,
                        completion_tokens=int(sum(s.n_tokens)), latency_s=s.latency_s)

    # ------------------------------------------------------------------ A-MESS
    def label_descriptions(self, datasets: Sequence[str] | None = None,
                           labels: Sequence[str] | None = None) -> LabelDescriptions:
        """Three concise descriptions per intent label (A-MESS Sec. III-C, its GPT-4
        prompt) for every label set the data layer knows (or ``datasets``); labels shared
        by several data sets are queried once. ``labels`` restricts the run to those."""
        if isinstance(self.backend, ReleasedBackend):
            raise UnsupportedError("the LGSRR release holds no label descriptions; use the "
                                   "local or openai backend")
        names = [get_spec(d).name for d in (datasets or list(DATASETS))]
        known = list(dict.fromkeys(lab for d in names for lab in get_spec(d).labels))
        if labels is not None:
            unknown = [lab for lab in labels if lab not in known]
            if unknown:
                raise KeyError(f"labels {unknown} are not in the label sets of {names}")
            known = list(labels)
        labels = known
        cfg = self.config
        pool = [] if cfg.label_examples in (None, "") else example_descriptions(cfg.label_examples)
        items = []
        for label in labels:
            shots = [(lab, d) for lab, d in pool
                     if normalise_label(lab) != normalise_label(label)][:int(cfg.label_shots)]
            messages = label_description_messages(label, shots)
            # a reply repeating the examples' descriptions describes them, not the label
            if shots:
                forbidden = tuple(x for _, d in shots for x in d)
            else:
                forbidden = () if label == "Complain" else AMESS_EXAMPLE
            request = {"messages": messages, "max_new_tokens": cfg.max_new_tokens_labels,
                       "retries": cfg.max_retries, **self.backend.settings()}

            def parse(text: str, lab=label, forbidden=forbidden):
                res = parse_label_descriptions(text, lab, forbidden=forbidden)
                return res.ok, (list(res.descriptions) if res.ok else None), res.error

            items.append(_Item(label, request, lambda m=messages, p=parse, lab=label:
                               self._generate_with_retries(
                                   m, None, cfg.max_new_tokens_labels, p,
                                   AMESS_RETRY_LINE.format(label=lab))))
        records, stats = self._execute(STEP_LABELS, items)
        out = {lab: rec.parsed for lab, rec in zip(labels, records) if rec.ok}
        fails = {lab: rec.error or "" for lab, rec in zip(labels, records) if not rec.ok}
        return LabelDescriptions(out, fails, names, stats)


def loglik_orders(ranks: Ranks, norm: str) -> np.ndarray:
    """Re-select the orders of a log-likelihood :class:`Ranks` under another norm from the
    scores it recorded ('calibrated' needs a run made with loglik_norm='calibrated')."""
    if ranks.mode != "loglik":
        raise ValueError(f"these ranks come from mode {ranks.mode!r}, not 'loglik'")
    if norm not in LOGLIK_NORMS:
        raise ValueError(f"norm {norm!r}: use one of {LOGLIK_NORMS}")
    out = np.full((len(ranks.raw), 3), -1, dtype=np.int64)
    for i, raw in enumerate(ranks.raw):
        if not isinstance(raw, dict):
            continue
        if norm == "calibrated":
            if "null_total" not in raw:
                raise ValueError("no content-free scores recorded: run with "
                                 "loglik_norm='calibrated'")
            values = [t - z for t, z in zip(raw["total"], raw["null_total"])]
        else:
            values = raw[norm]
        out[i] = ALL_ORDERS[int(np.argmax(values))]
    return out


def _parse_cue_reply(text: str):
    names = extract_cues(text)
    if not names:
        return False, None, "no list of perspectives found in the reply"
    return True, {"names": names, "cues": [normalise_cue(x) for x in names]}, None


def _parse_rank_reply(text: str):
    res = parse_rank(text)
    if res.ok:
        return True, {"order": list(res.order), "method": res.method, "implied": res.implied}, None
    return False, None, res.error


def short_cue(cue: str) -> str:
    """'Speakers' Actions' -> 'A'; cues outside the vocabulary keep their name."""
    return CUE_SHORT.get(cue, cue)


__all__ = ["AnnotationChain", "ChainConfig", "CueDiscovery", "Descriptions", "Ranks",
           "LabelDescriptions", "RunStats", "StepError", "StepProgress", "RANK_MODES",
           "LOGLIK_NORMS", "loglik_orders", "short_cue"]
