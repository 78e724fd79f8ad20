"""On-disk feature store: features keyed by (dataset, split, modality, encoder, settings).

Layout
------
Each entry is a folder ``<root>/<dataset>/<split>/<modality>/<encoder>-<S>-<I>/`` (S, I:
hashes of the settings and of the inputs) with one ``.npy`` file per array,
``item_digests.npy`` and a ``manifest.json`` (settings, sha256 of the inputs, shape, dtype
and checksum of every file, timing). Beside the folder, ``<encoder>-<S>-<I>.lock`` is the
entry's lock file. An entry is reused when the inputs' digest and settings match; other
inputs or settings get their own entry. Computation is chunked: each finished chunk is
written at once (``parts/``), so a killed run resumes where it stopped and never
recomputes or loses a finished chunk.

Rows are also reused one by one: every entry keeps a digest per input item, so a call
with a subset of another entry's inputs (same encoder and settings, e.g. ``split.subset(n)``
after the full split) is served from that entry without computing anything, and a call
whose inputs changed only in part computes only the new or changed items.

Integrity
---------
The manifest holds the shape, dtype and CRC-32 (zlib) of the data bytes of every file the
store writes (``shapes``, ``dtypes``, ``checksums``); finished chunks carry the same in
their ``parts/<start>.done`` marker. Every read goes through one verification path,
:func:`_read_npy`: exact hits, subsets served from a sibling entry, sibling rows reused
during a partial recompute, finished chunks reused on resume, and :meth:`StoreEntry.load`.
It checks that the manifest is valid JSON and consistent, that each file exists, that its
``.npy`` header parses, that shape and dtype equal the manifest, that the file size is
exactly header + data (truncated or over-long files), and that the CRC-32 of the data
matches (bytes damaged in place, e.g. random bytes or zeros in a right-sized file).

CRC-32 is the fastest checksum in the standard library on the workspace's CPU machine
(3-4 GB/s, against 1.4 GB/s for sha256 and 0.7 GB/s for blake2b); it catches accidental
damage, not deliberate tampering. It is computed while the bytes are read, in the same
pass: a first load in a process costs about 2x a plain ``np.load`` from the page cache. A
verified file is remembered for the rest of the process by (device, inode, size, mtime,
ctime), so repeated loads in one process only ``stat`` it. A file whose ctime is less
than 2 s older than its verification is not remembered (filesystem timestamps are coarse,
so a same-size rewrite in the same tick would look unchanged: git's "racy clean" rule).
Damage that leaves every stat field alone (decay of the medium) is found by the next
process. The cost is measured by ``benchmarks/store_integrity.py``.

Recovery
--------
Damage is reported as one line through the store's ``log`` callback (default: a
``logging`` warning), naming the entry folder, the file and the fault, e.g.
``feature store: entry <folder>: array 'mean.npy' checksum mismatch (...): damaged on
disk; recomputing the entry``. Then:

* a damaged exact hit is recomputed (rows are reused from verified sibling entries only);
* a damaged or missing ``item_digests.npy`` of an exact hit is recomputed from the inputs;
* a damaged sibling entry is never used as a source of rows (it is recomputed when it is
  itself requested; its inputs are not known here);
* a damaged finished chunk is recomputed (a chunk marker of an older version, without
  checksums, counts as unfinished).

Where no compute function is at hand (:meth:`StoreEntry.load`, :meth:`FeatureStore.lookup`)
a :class:`StoreError` names the entry, the file and what to do.

Entries written before checksums existed
----------------------------------------
They still load. Shapes, dtypes and file sizes are verified, and the checksums of their
bytes as they are at that first load are recorded in the manifest (one log line says so).
That is a backfill, not a verification: it makes later damage detectable, but damage done
before it cannot be told from good data. Truncated, header-damaged and wrongly shaped
files are still caught. Recomputing every older entry instead would cost the full
encoding time of every cached split; delete an entry's folder to have it recomputed.

Concurrency
-----------
One writer per entry: an exclusive ``fcntl.flock`` (POSIX) on the entry's lock file. A
process that finds no valid entry takes the lock, looks again (another process may have
just finished it) and computes only if still needed; a second process waits for the lock
(one log line says so), then loads the finished entry, so features are computed once.
Readers of a finished entry take no lock. The OS releases a lock when its process dies,
so a killed writer never blocks the next run, and its finished chunks are reused (each
verified against its marker). Files are written under per-writer temporary names
(``parts/*.tmp-<pid>-<hex>``, and a ``.staging-<pid>-<hex>/`` folder for the final files)
and renamed into place; ``manifest.json`` is renamed last, so a reader never sees a
half-written entry. Lock files stay (deleting them would race).

``store.sharded(state)`` (``state``: accelerate's ``PartialState`` of a ``torchrun`` /
``accelerate launch`` job) shares the computation of one entry between the job's
processes; every process makes the same call with the same inputs, and the root is on a
filesystem they all see. (0) The main process takes the entry lock and keeps it until the
entry is published; it looks for an exact or subset hit, or prepares ``parts/`` as a
single writer does and writes this build's token to ``parts/run`` (it first removes a
killed job's ``parts/run``, so after the barrier the file's presence is its decision). (1)
The chunk starts are divided with ``state.split_between_processes``; each process
computes the chunks of its share that are not finished (rows reused from verified
siblings as above) and writes them to ``parts/``: disjoint files, no lock. (2) After a
barrier the main process merges the chunks (now all finished, each verified) and
publishes the entry, manifest last. (3) After a barrier every process loads it as an
exact hit. A process that dies ends the job through its launcher (torchrun stops the
others) and its lock, if it is the main one, goes with it; every finished chunk stays and
is reused by the rerun, with any number of processes. With one process ``sharded`` is
the plain store.

Variable-length features (frames, audio frames, tokens) are stored padded to a fixed
length with a boolean mask: see :func:`pad_sequences`.

    store = FeatureStore()                       # $MIR_CACHE_DIR/features
    feats = store.get_or_compute(
        dataset="MIntRec2.0", split="train", modality="text", encoder="minilm-l6",
        settings={"max_len": 32}, inputs=texts, compute=lambda batch: {"pooled": ...})
"""
from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import time
import zlib
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from .. import paths

_logger = logging.getLogger(__name__)

DIGESTS = "item_digests.npy"
_RUN = "run"                      # parts/run: the token of the build under way (sharding)
_BLOCK = 1 << 22                  # bytes read (and checksummed) at a time
_RACY_NS = 2_000_000_000          # files changed this recently are re-verified on every load
_VERIFIED: dict[str, tuple] = {}  # path -> (dev, ino, size, mtime_ns, ctime_ns, checksum)
_crc32 = zlib.crc32


class StoreError(ValueError):
    """A damaged store entry where nothing can recompute it; the message names the entry."""


class _NeedsLock(Exception):
    """An exact hit that has to write (a backfill): retried with the entry's lock."""


class _Damage(Exception):
    """What is wrong with one file of one entry (internal: logged or turned into StoreError)."""

    def __init__(self, entry: Path, what: str, problem: str):
        self.entry, self.what, self.problem = entry, what, problem
        super().__init__(f"entry {entry}: {what} {problem}")


def reset_verification_cache() -> None:
    """Forget which files this process has verified (the next load checksums them again)."""
    _VERIFIED.clear()


def digest(items: Sequence) -> str:
    """sha256 over a sequence of strings / bytes / paths (order-sensitive)."""
    h = hashlib.sha256()
    for it in items:
        b = it if isinstance(it, bytes) else str(it).encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def item_digests(items: Sequence) -> np.ndarray:
    """(N, 16) uint8: the first 16 bytes of each item's sha256 (same encoding as digest)."""
    out = np.empty((len(items), 16), dtype=np.uint8)
    for i, it in enumerate(items):
        b = it if isinstance(it, bytes) else str(it).encode("utf-8")
        out[i] = np.frombuffer(hashlib.sha256(b).digest()[:16], dtype=np.uint8)
    return out


def pad_sequences(seqs: Sequence[np.ndarray | None], max_len: int, dim: int | None = None,
                  dtype=np.float16, fit: str = "truncate"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack variable-length sequences into fixed-length arrays with a mask.

    ``seqs``: each (T_i, D) or None (a failed item: all zeros, fully masked).
    ``fit``: what to do when T_i > max_len: 'truncate' keeps the first max_len steps,
    'resample' averages neighbouring steps down to max_len (keeps the whole time span).
    Returns features (N, max_len, D), mask (N, max_len) bool (True = real step) and
    lengths (N,) int32 (steps kept).
    """
    if fit not in ("truncate", "resample"):
        raise ValueError(f"fit must be 'truncate' or 'resample', got {fit!r}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if dim is None:
        dims = {np.shape(s)[1] for s in seqs if s is not None}
        if len(dims) != 1:
            raise ValueError(f"pad_sequences: cannot infer one feature dim from {sorted(dims)}; "
                             "pass dim=")
        dim = dims.pop()
    feats = np.zeros((len(seqs), max_len, dim), dtype=dtype)       # (N, L, D)
    mask = np.zeros((len(seqs), max_len), dtype=bool)              # (N, L)
    lengths = np.zeros(len(seqs), dtype=np.int32)                  # (N,)
    for i, s in enumerate(seqs):
        if s is None or len(s) == 0:
            continue
        s = np.asarray(s)
        if s.ndim != 2 or s.shape[1] != dim:
            raise ValueError(f"pad_sequences: item {i} has shape {s.shape}, expected (T, {dim})")
        if len(s) > max_len:
            if fit == "truncate":
                s = s[:max_len]
            else:                                                    # mean over equal spans
                edges = np.linspace(0, len(s), max_len + 1).astype(int)
                s = np.stack([s[a:max(b, a + 1)].mean(0) for a, b in zip(edges[:-1], edges[1:])])
        feats[i, :len(s)] = s
        mask[i, :len(s)] = True
        lengths[i] = len(s)
    return feats, mask, lengths


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in s)


# ----------------------------------------------------------------------------- files
def _writer_tag() -> str:
    """Unique per writer: temporary names of two processes never collide."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def _checksum(arr: np.ndarray) -> str:
    """CRC-32 of an array's data bytes in C order (what np.save writes after the header)."""
    return f"crc32:{_crc32(np.ascontiguousarray(arr).reshape(-1).view(np.uint8)):08x}"


def _write_npy(path: Path, arr: np.ndarray) -> dict:
    """Write ``arr`` to ``path`` (C order, no pickle); its spec: shape, dtype, checksum."""
    arr = np.asarray(arr)
    if arr.dtype.hasobject:
        raise ValueError(f"{path.name}: compute() returned an object array; the store keeps "
                         "numeric, bool and fixed-width string arrays only")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, arr, allow_pickle=False)
    return {"shape": list(arr.shape), "dtype": arr.dtype.str, "checksum": _checksum(arr)}


def _write_npy_atomic(path: Path, arr: np.ndarray) -> dict:
    tmp = path.with_name(f"{path.name}.tmp-{_writer_tag()}")
    spec = _write_npy(tmp, arr)
    os.replace(tmp, path)
    return spec


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{_writer_tag()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json_atomic(path: Path, obj) -> None:
    _write_text_atomic(path, json.dumps(obj, indent=2))


def _read_header(fh) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    raise ValueError(f"unsupported .npy format version {version}")


def _read_npy(path: Path, spec: dict, mode: str | None, entry: Path, what: str
              ) -> tuple[np.ndarray | None, str, str]:
    """The one verified read of a stored file.

    ``spec``: the manifest's ``shape``, ``dtype`` (None: not recorded) and ``checksum``
    (None: an entry written before checksums; it is computed for the backfill).
    ``mode``: 'load' (an array in memory), 'mmap' (a read-only memory map) or None (verify
    only). Returns (array or None, the data's checksum, dtype string); raises
    :class:`_Damage` naming ``entry`` and ``what`` on any mismatch.
    """
    started = time.time_ns()
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise _Damage(entry, what, "is missing") from None
    except OSError as e:
        raise _Damage(entry, what, f"cannot be opened ({e})") from None
    with fh:
        st = os.fstat(fh.fileno())
        try:
            shape, fortran, dtype = _read_header(fh)
        except (ValueError, SyntaxError, TypeError, EOFError) as e:
            raise _Damage(entry, what, f"has a damaged .npy header ({e})") from None
        want_shape, want_dtype = tuple(spec["shape"]), spec.get("dtype")
        if shape != want_shape or (want_dtype is not None and dtype.str != want_dtype):
            raise _Damage(entry, what, f"holds {dtype.str} {shape} but the manifest says "
                                       f"{want_dtype or 'shape'} {want_shape}")
        if dtype.hasobject:
            raise _Damage(entry, what, "holds Python objects (a pickle), not array data")
        offset, nbytes = fh.tell(), dtype.itemsize * math.prod(shape)
        if st.st_size != offset + nbytes:
            have = st.st_size - offset
            raise _Damage(entry, what, f"is truncated ({have} of {nbytes} data bytes)"
                          if have < nbytes else f"has {have - nbytes} bytes after its data")
        expected = spec.get("checksum")
        stat_key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        trusted = expected is not None and _VERIFIED.get(str(path)) == (*stat_key, expected)
        order = "F" if fortran else "C"
        crc, arr = 0, None
        if mode == "load":
            buf = np.empty(nbytes, dtype=np.uint8)
            view, pos = memoryview(buf), 0
            while pos < nbytes:
                got = fh.readinto(view[pos:pos + _BLOCK])
                if not got:
                    raise _Damage(entry, what, f"is truncated ({pos} of {nbytes} data bytes)")
                if not trusted:
                    crc = _crc32(view[pos:pos + got], crc)
                pos += got
            arr = buf.view(dtype).reshape(shape, order=order)
        elif nbytes:                                         # 'mmap' or verify only
            raw = np.memmap(fh, dtype=np.uint8, mode="r", offset=offset, shape=(nbytes,))
            if not trusted:
                crc = _crc32(raw)
            if mode == "mmap":
                arr = raw.view(dtype).reshape(shape, order=order)
        elif mode == "mmap":
            arr = np.empty(shape, dtype=dtype)
    got_sum = expected if trusted else f"crc32:{crc:08x}"
    if expected is not None and got_sum != expected:
        raise _Damage(entry, what, f"checksum mismatch (manifest {expected}, file {got_sum}): "
                                   "damaged on disk")
    if expected is not None and not trusted and started - st.st_ctime_ns > _RACY_NS:
        _VERIFIED[str(path)] = (*stat_key, expected)
    return arr, got_sum, dtype.str


# ----------------------------------------------------------------------------- manifests
def _read_manifest(d: Path) -> dict | None:
    """The entry's manifest; None if it has none (not finished); _Damage if unusable."""
    try:
        text = (d / "manifest.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise _Damage(d, "manifest.json", f"cannot be read ({e})") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise _Damage(d, "manifest.json", f"is not valid JSON ({e})") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise _Damage(d, "manifest.json", problem)
    return manifest


def _manifest_problem(m) -> str | None:
    if not isinstance(m, dict):
        return "is not a JSON object"
    for key, kind in (("inputs_sha256", str), ("n", int), ("arrays", list), ("shapes", dict)):
        if not isinstance(m.get(key), kind):
            return f"has no valid {key!r}"
    for name in m["arrays"]:
        shape = m["shapes"].get(name)
        if not isinstance(name, str) or "/" in name or not (
                isinstance(shape, list) and shape and shape[0] == m["n"]):
            return f"has no valid shape for array {name!r}"
    if m.get("item_digests") not in (None, DIGESTS):
        return f"names an unexpected digest file {m['item_digests']!r}"
    if "checksums" in m:
        sums = m["checksums"]
        if not isinstance(sums, dict) or not isinstance(m.get("dtypes"), dict):
            return "has invalid 'checksums' or 'dtypes'"
        needed = [f"{a}.npy" for a in m["arrays"]] + ([DIGESTS] if m.get("item_digests") else [])
        for fname in needed:
            if not str(sums.get(fname, "")).startswith("crc32:"):
                return f"has no crc32 checksum for {fname!r}"
    return None


def _array_spec(m: dict, name: str) -> dict:
    return {"shape": m["shapes"][name], "dtype": m.get("dtypes", {}).get(name),
            "checksum": m.get("checksums", {}).get(f"{name}.npy")}


def _digest_spec(m: dict) -> dict:
    return {"shape": [m["n"], 16], "dtype": "|u1",
            "checksum": m.get("checksums", {}).get(DIGESTS)}


def _verify_arrays(d: Path, m: dict, mode: str | None
                   ) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """Every array of entry ``d`` through :func:`_read_npy`: (arrays, checksums, dtypes)."""
    arrays, sums, dtypes = {}, {}, {}
    for name in m["arrays"]:
        arr, sums[f"{name}.npy"], dtypes[name] = _read_npy(
            d / f"{name}.npy", _array_spec(m, name), mode, d, f"array '{name}.npy'")
        if arr is not None:
            arrays[name] = arr
    return arrays, sums, dtypes


def _backfill_note(d: Path) -> str:
    return (f"feature store: entry {d}: written without checksums (older version); shapes "
            "and sizes verified, checksums of its current bytes recorded (damage from before "
            "cannot be detected: delete the folder to recompute it)")


@dataclass
class StoreEntry:
    path: Path
    manifest: dict
    rows: np.ndarray | None = None    # a subset hit: these rows of the stored arrays

    def load(self, mmap: bool = False) -> dict[str, np.ndarray]:
        """The entry's arrays, verified (see module docstring); :class:`StoreError` if damaged."""
        mode = "mmap" if mmap or self.rows is not None else "load"   # a subset reads its rows
        try:
            out, _, _ = _verify_arrays(self.path, self.manifest, mode)
        except _Damage as e:
            raise StoreError(f"feature store: {e}. Delete the folder {self.path} or rerun "
                             "get_or_compute() to recompute it") from None
        if self.rows is not None:
            out = {name: np.asarray(arr[self.rows]) for name, arr in out.items()}
        return out

    @property
    def n(self) -> int:
        return len(self.rows) if self.rows is not None else int(self.manifest["n"])


@dataclass
class _Donor:
    """A complete sibling entry (same encoder and settings) whose rows can be reused."""

    path: Path
    manifest: dict
    row_of: dict[bytes, int]          # item digest -> row
    arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)  # verified mmaps
    damaged: bool = False


@dataclass(frozen=True)
class _Job:
    """One request: entry folder, its metadata and inputs, how to compute a chunk."""

    d: Path
    meta: dict
    sha: str
    inputs: list
    compute: Callable[[Sequence], dict[str, np.ndarray]]
    chunk_size: int
    reuse_rows: bool


@dataclass
class _Plan:
    """One build of ``job.d``: the items' digests, where verified donors hold rows, and the
    run token its chunk markers carry, so that the manifest counts the chunks this build
    made, in whichever process, and not those a killed run left."""

    job: _Job
    idigs: np.ndarray                                  # (N, 16) item digests
    donors: list[_Donor]
    source: dict[bytes, tuple[int, int]]               # item digest -> (donor, row)
    run: str
    started: float = 0.0                               # perf_counter when parts/ was prepared

    @property
    def starts(self) -> list[int]:
        return list(range(0, len(self.job.inputs), self.job.chunk_size))


class Processes(Protocol):
    """The processes of a distributed job as accelerate's ``PartialState`` describes them.

    ``split_between_processes(items)`` is a context manager yielding this process's
    contiguous share of ``items``, as in accelerate."""

    @property
    def num_processes(self) -> int: ...

    @property
    def process_index(self) -> int: ...

    @property
    def is_main_process(self) -> bool: ...

    def wait_for_everyone(self) -> None: ...

    def split_between_processes(self, inputs: list) -> AbstractContextManager[list]: ...


class FeatureStore:
    """Chunked, resumable, verified feature cache (see module docstring).

    ``log``: receives the one-line reports (damage found, backfills, waiting for another
    writer); default: a warning of the ``mir_core.features.store`` logger.
    """

    def __init__(self, root: str | Path | None = None,
                 log: Callable[[str], None] | None = None):
        self.root = Path(root) if root is not None else paths.cache_dir() / "features"
        self.log = log if log is not None else _logger.warning
        self._state: Processes | None = None

    def sharded(self, state: Processes) -> FeatureStore:
        """This store (same root and log) computing each entry it builds over the processes
        of ``state`` (an accelerate ``PartialState``): see the module docstring,
        Concurrency. Every process of the job must make the same calls with the same
        inputs; with one process it is this store."""
        store = copy.copy(self)
        store._state = state
        return store

    def entry_dir(self, dataset: str, split: str, modality: str, encoder: str,
                  settings: dict, inputs_sha256: str) -> Path:
        """One folder per (dataset, split, modality, encoder, settings, inputs): a subset or
        an edited input file gets its own entry and never clobbers another one."""
        key = json.dumps(settings, sort_keys=True, default=str)
        h = hashlib.sha256(key.encode()).hexdigest()[:12]
        return (self.root / _slug(dataset) / _slug(split) / _slug(modality)
                / f"{_slug(encoder)}-{h}-{inputs_sha256[:12]}")

    def lookup(self, dataset: str, split: str, modality: str, encoder: str, settings: dict,
               inputs_sha256: str) -> StoreEntry | None:
        """The finished entry for these inputs, None if there is none; its arrays are
        verified by :meth:`StoreEntry.load`. :class:`StoreError` if its manifest is unusable."""
        d = self.entry_dir(dataset, split, modality, encoder, settings, inputs_sha256)
        try:
            manifest = _read_manifest(d)
            if manifest is not None and manifest["inputs_sha256"] != inputs_sha256:
                raise _Damage(d, "manifest.json", "describes other inputs than its folder name")
        except _Damage as e:
            raise StoreError(f"feature store: {e}. Delete the folder {d} or rerun "
                             "get_or_compute() to recompute it") from None
        return None if manifest is None else StoreEntry(d, manifest)

    def get_or_compute(self, *, dataset: str, split: str, modality: str, encoder: str,
                       settings: dict, inputs: Sequence,
                       compute: Callable[[Sequence], dict[str, np.ndarray]],
                       chunk_size: int = 1024, progress: bool = True,
                       mmap: bool = False) -> dict[str, np.ndarray]:
        """Arrays for ``inputs`` (first axis = len(inputs)), computed once per chunk."""
        return self._resolve(
            dataset=dataset, split=split, modality=modality, encoder=encoder,
            settings=settings, inputs=inputs, compute=compute, chunk_size=chunk_size,
            progress=progress, reuse_rows=True, mode="mmap" if mmap else "load")[1]

    def get_or_compute_entry(self, *, dataset, split, modality, encoder, settings, inputs,
                             compute, chunk_size=1024, progress=True,
                             reuse_rows: bool = True) -> StoreEntry:
        """Like :meth:`get_or_compute` but returns the verified :class:`StoreEntry`.

        With ``reuse_rows``, inputs all found in one sibling entry (same encoder and
        settings, other inputs: e.g. the full split when asking for a subset) are served
        from it (``StoreEntry.rows``), and otherwise only the items no sibling holds are
        computed."""
        return self._resolve(
            dataset=dataset, split=split, modality=modality, encoder=encoder,
            settings=settings, inputs=inputs, compute=compute, chunk_size=chunk_size,
            progress=progress, reuse_rows=reuse_rows, mode=None)[0]

    # ------------------------------------------------------------------------- internals
    @contextmanager
    def _entry_lock(self, d: Path, wait: bool = True) -> Iterator[bool]:
        """Exclusive lock of entry ``d`` (yields False when ``wait`` is off and it is busy)."""
        d.parent.mkdir(parents=True, exist_ok=True)
        with open(d.parent / f"{d.name}.lock", "ab") as fh:       # 'a': create, never truncate
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                self.log(f"feature store: entry {d} is being written by another process; "
                         "waiting for it")
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _resolve(self, *, dataset, split, modality, encoder, settings, inputs, compute,
                 chunk_size, progress, reuse_rows, mode):
        """(entry, arrays or None): an exact hit, a subset hit, or a (partial) computation,
        sharded over the processes of :meth:`sharded` when there are several."""
        inputs = list(inputs)
        sha = digest(inputs)
        job = _Job(self.entry_dir(dataset, split, modality, encoder, settings, sha),
                   {"dataset": dataset, "split": split, "modality": modality,
                    "encoder": encoder, "settings": settings},
                   sha, inputs, compute, chunk_size, reuse_rows)
        if self._state is not None and self._state.num_processes > 1:
            return self._resolve_sharded(self._state, job, progress, mode)
        found, idigs, donors = self._look(job, mode)     # the common cases take no lock
        if found is not None:
            return found
        with self._entry_lock(job.d):
            found, plan = self._hit_or_plan(job, mode, idigs, donors)
            if plan is None:
                return found
            return self._publish(plan, self._chunks(plan, plan.starts, progress), mode)

    def _resolve_sharded(self, state: Processes, job: _Job, progress: bool, mode: str | None):
        """The collective :meth:`_resolve` of a distributed job (module docstring,
        Concurrency): the main process decides under the entry lock, every process computes
        its share of the chunks, the main process publishes, every process loads."""
        main = state.is_main_process
        found = plan = None
        with self._entry_lock(job.d) if main else nullcontext():
            if main:                           # the decision is parts/run, present or not
                (job.d / "parts" / _RUN).unlink(missing_ok=True)     # a killed job's
                found, idigs, donors = self._look(job, mode)
                if found is None:
                    found, plan = self._hit_or_plan(job, mode, idigs, donors)
            state.wait_for_everyone()          # (0) decided
            if not main:
                plan = self._joined_plan(job)
            if plan is not None:
                with state.split_between_processes(plan.starts) as mine:
                    for _ in self._chunks(plan, mine, progress and main):
                        pass                   # (1) each chunk is written to parts/
                state.wait_for_everyone()      # (2) every chunk is finished
                if main:
                    found = self._publish(plan, self._chunks(plan, plan.starts, False), mode)
        if plan is not None:
            state.wait_for_everyone()          # (3) published
        if main:
            return found
        found, _, _ = self._look(job, mode)
        if found is None:
            raise RuntimeError(f"feature store: entry {job.d}: the main process published "
                               "no entry this process can load (every process must make the "
                               "same call, and the store's root be on a filesystem they all "
                               "share)")
        return found

    def _look(self, job: _Job, mode: str | None
              ) -> tuple[tuple | None, np.ndarray | None, list[_Donor] | None]:
        """(an exact or subset hit or None, item digests, donors): a first look without
        writing. A damaged or older exact hit is left for :meth:`_hit_or_plan` (lock held)."""
        idigs = donors = None
        try:
            found = self._exact_hit(job.d, job.sha, job.inputs, mode, locked=False)
            if found is not None:
                return found, None, None
            idigs = item_digests(job.inputs)                           # (N, 16)
            donors = self._donors(job.d) if job.reuse_rows and job.inputs else []
            return self._subset_hit(donors, idigs, mode), idigs, donors
        except (_Damage, _NeedsLock):
            return None, idigs, donors        # looked at again under the lock, reported there

    def _hit_or_plan(self, job: _Job, mode: str | None, idigs: np.ndarray | None,
                     donors: list[_Donor] | None) -> tuple[tuple | None, _Plan | None]:
        """(the exact hit finished meanwhile or backfilled, None) or (None, the prepared build
        of the entry). Lock held."""
        try:
            found = self._exact_hit(job.d, job.sha, job.inputs, mode, locked=True)
            if found is not None:
                return found, None
        except _Damage as e:
            self.log(f"feature store: {e}; recomputing the entry")
        plan = self._plan(job, idigs, donors)
        self._prepare(plan)
        return None, plan

    def _plan(self, job: _Job, idigs: np.ndarray | None = None,
              donors: list[_Donor] | None = None, run: str | None = None) -> _Plan:
        """The build of ``job``: which items verified donors (largest first) already hold."""
        if idigs is None:
            idigs = item_digests(job.inputs)
        if donors is None:
            donors = self._donors(job.d) if job.reuse_rows and job.inputs else []
        source: dict[bytes, tuple[int, int]] = {}                      # digest -> (donor, row)
        wanted = {r.tobytes() for r in idigs}
        for k, donor in enumerate(donors):
            mine = [dg for dg in wanted if dg in donor.row_of]
            if mine and self._open_donor(donor):
                source.update({dg: (k, donor.row_of[dg]) for dg in mine})
                wanted.difference_update(mine)
        return _Plan(job, idigs, donors, source, run if run is not None else _writer_tag())

    def _joined_plan(self, job: _Job) -> _Plan | None:
        """In a process other than the main one: the build the main process prepared (its
        ``parts/run`` token), or None when it found a hit."""
        try:
            run = (job.d / "parts" / _RUN).read_text()
        except FileNotFoundError:
            return None
        return self._plan(job, run=run)

    def _subset_hit(self, donors: list[_Donor], idigs: np.ndarray, mode: str | None):
        """(entry, arrays) served from the first verified donor holding every input item."""
        for donor in donors:
            rows = [donor.row_of.get(r.tobytes()) for r in idigs]
            if all(r is not None for r in rows) and self._open_donor(donor):
                rows = np.asarray(rows, dtype=np.int64)
                arrays = None if mode is None else {
                    name: np.asarray(a[rows]) for name, a in donor.arrays.items()}
                return StoreEntry(donor.path, donor.manifest, rows), arrays
        return None

    def _exact_hit(self, d: Path, sha: str, inputs: list, mode: str | None, locked: bool):
        """(entry, arrays) when ``d`` is finished and verifies; None when it is not finished;
        _Damage when it is damaged. Only with the lock held are damaged digests recomputed
        and checksums backfilled (_NeedsLock without it)."""
        m = _read_manifest(d)
        if m is None:
            return None
        if m["inputs_sha256"] != sha:
            raise _Damage(d, "manifest.json", "describes other inputs than its folder name")
        older = "checksums" not in m
        if (older or not m.get("item_digests")) and not locked:
            raise _NeedsLock
        arrays, sums, dtypes = _verify_arrays(d, m, mode)
        redo_digests = not m.get("item_digests")       # an entry from before per-item digests
        if not redo_digests:
            try:
                _, sums[DIGESTS], _ = _read_npy(d / DIGESTS, _digest_spec(m), None, d,
                                                f"array '{DIGESTS}'")
            except _Damage as e:
                if not locked:
                    raise
                self.log(f"feature store: {e}; recomputing it from the inputs")
                redo_digests = True
        if older or redo_digests:
            if older:
                self.log(_backfill_note(d))
            if redo_digests:
                sums[DIGESTS] = _write_npy_atomic(d / DIGESTS, item_digests(inputs))["checksum"]
                m["item_digests"] = DIGESTS
            m["checksums"], m["dtypes"] = sums, dtypes
            _write_json_atomic(d / "manifest.json", m)
        return StoreEntry(d, m), (arrays if mode is not None else None)

    def _donors(self, d: Path) -> list[_Donor]:
        """Finished entries beside ``d`` with the same encoder and settings and per-item
        digests (verified), largest first. Their arrays are verified when first used."""
        prefix = d.name.rsplit("-", 1)[0] + "-"
        found = []
        for p in sorted(d.parent.glob(prefix + "*")):
            if p == d or not p.is_dir() or p.name.rsplit("-", 1)[0] + "-" != prefix:
                continue
            try:
                m = _read_manifest(p)
                if m is None or not m.get("item_digests"):
                    continue                  # not finished, or older: not a row source yet
                digs, _, _ = _read_npy(p / DIGESTS, _digest_spec(m), "load", p,
                                       f"array '{DIGESTS}'")
            except _Damage as e:
                self.log(f"feature store: {e}; not reusing its rows (it is recomputed when "
                         "it is requested itself, or delete the folder)")
                continue
            found.append(_Donor(p, m, {row.tobytes(): i for i, row in enumerate(digs)}))
        return sorted(found, key=lambda x: -len(x.row_of))

    def _open_donor(self, donor: _Donor) -> bool:
        """Verify a donor's arrays once (memory maps kept); False, logged, if damaged."""
        if donor.arrays is None and not donor.damaged:
            try:
                donor.arrays, sums, dtypes = _verify_arrays(donor.path, donor.manifest, "mmap")
            except _Damage as e:
                self.log(f"feature store: {e}; not reusing its rows (it is recomputed when "
                         "it is requested itself, or delete the folder)")
                donor.damaged = True
                return False
            if "checksums" not in donor.manifest:
                self._backfill_donor(donor, sums, dtypes)
        return not donor.damaged

    def _backfill_donor(self, donor: _Donor, sums: dict, dtypes: dict) -> None:
        """Record the checksums of an older donor, unless its writer is busy or it changed."""
        with self._entry_lock(donor.path, wait=False) as locked:
            if not locked:
                return
            try:
                if _read_manifest(donor.path) != donor.manifest:
                    return
                _, sums[DIGESTS], _ = _read_npy(donor.path / DIGESTS, _digest_spec(
                    donor.manifest), None, donor.path, f"array '{DIGESTS}'")
            except _Damage:
                return
            self.log(_backfill_note(donor.path))
            donor.manifest = {**donor.manifest, "checksums": sums, "dtypes": dtypes}
            _write_json_atomic(donor.path / "manifest.json", donor.manifest)

    def _prepare(self, plan: _Plan) -> None:
        """Make entry ``plan.job.d`` ready for its chunks (lock held): unpublish a damaged
        entry, remove a dead writer's staging folders and the chunks of other inputs, stamp
        ``parts/`` with the inputs and this build's run token."""
        d = plan.job.d
        (d / "manifest.json").unlink(missing_ok=True)       # unpublish a damaged entry
        for stale in d.glob(".staging-*"):                  # a dead writer's (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        parts = d / "parts"
        stamp = parts / "inputs_sha256"
        if parts.exists() and (not stamp.exists() or stamp.read_text() != plan.job.sha):
            shutil.rmtree(parts)          # inputs changed: partial chunks are stale
        parts.mkdir(parents=True, exist_ok=True)
        if not stamp.exists():
            _write_text_atomic(stamp, plan.job.sha)
        _write_text_atomic(parts / _RUN, plan.run)
        plan.started = time.perf_counter()

    def _chunks(self, plan: _Plan, starts: Sequence[int], progress: bool
                ) -> Iterator[tuple[int, dict[str, np.ndarray], tuple[int, int]]]:
        """(start, arrays, (computed, rows reused) by this build) of each chunk in ``starts``:
        a verified finished chunk, or one computed now and written to ``parts/``."""
        job, n = plan.job, len(plan.job.inputs)
        if progress:
            from tqdm.auto import tqdm
            m = job.meta
            starts = tqdm(starts, desc=f"{m['dataset']}/{m['split']}/{m['modality']}/"
                          f"{m['encoder']}", unit="chunk", leave=False)
        for s in starts:
            e = min(s + job.chunk_size, n)
            found = self._finished_chunk(plan, s, e - s)
            got, made = found if found is not None else self._make_chunk(plan, s, e)
            yield s, got, made

    def _make_chunk(self, plan: _Plan, s: int, e: int
                    ) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
        """Compute items ``s:e`` that no donor holds, take the rest from the donors, write the
        chunk's files and then its ``.done`` marker: (arrays, (1 if computed, rows reused))."""
        job, parts = plan.job, plan.job.d / "parts"
        chunk = job.inputs[s:e]
        prev = [plan.source.get(r.tobytes()) for r in plan.idigs[s:e]]
        todo = [j for j, w in enumerate(prev) if w is None]
        have = [j for j, w in enumerate(prev) if w is not None]
        new = {name: np.asarray(a) for name, a in job.compute([chunk[j] for j in todo]).items()} \
            if todo else {}
        for name, arr in new.items():
            if arr.shape[0] != len(todo):
                raise ValueError(f"compute() returned {arr.shape[0]} rows of {name!r} for "
                                 f"a chunk of {len(todo)} inputs")
        names = sorted(new) if todo else sorted(plan.donors[prev[0][0]].manifest["arrays"])
        got, specs = {}, {}
        for name in names:
            if not have:
                arr = new[name]
            else:
                kept = self._donor_rows(plan, name, [prev[j] for j in have])
                if not todo:
                    arr = kept
                else:
                    fresh = new[name]
                    arr = np.empty((len(chunk), *fresh.shape[1:]),
                                   dtype=np.result_type(fresh.dtype, kept.dtype))
                    arr[np.asarray(todo)] = fresh
                    arr[np.asarray(have)] = kept
            got[name] = arr
            specs[name] = _write_npy_atomic(parts / f"{s:09d}.{name}.npy", arr)
        made = (int(bool(todo)), len(have))
        _write_json_atomic(parts / f"{s:09d}.done", {"arrays": specs, "run": plan.run,
                                                     "made": list(made)})
        return got, made

    @staticmethod
    def _donor_rows(plan: _Plan, name: str, where: list[tuple[int, int]]) -> np.ndarray:
        """Array ``name`` at the (donor, row) pairs ``where``, stacked."""
        out = []
        for k, r in where:
            arrays = plan.donors[k].arrays
            if name not in arrays:
                raise ValueError(f"{plan.donors[k].path} has no array {name!r} (it has "
                                 f"{sorted(arrays)}); delete that entry folder")
            out.append(np.asarray(arrays[name][r]))
        return np.stack(out)

    def _finished_chunk(self, plan: _Plan, s: int, rows: int
                        ) -> tuple[dict[str, np.ndarray], tuple[int, int]] | None:
        """The verified arrays of a chunk of ``rows`` items at ``s`` that is already finished
        and what this build did for it ((0, 0) when an earlier run wrote it); None if there
        is none (a marker of an older version, without checksums, or one written with
        another chunk size counts as none)."""
        d, parts = plan.job.d, plan.job.d / "parts"
        done = parts / f"{s:09d}.done"
        if not done.exists():
            return None
        try:
            marker = json.loads(done.read_text())
            specs = marker.get("arrays")
            if any(spec["shape"][0] != rows for spec in specs.values()):
                return None
            arrays = {name: _read_npy(parts / f"{s:09d}.{name}.npy", spec, "load", d,
                                      f"chunk file 'parts/{s:09d}.{name}.npy'")[0]
                      for name, spec in specs.items()}
            made = tuple(marker["made"]) if marker.get("run") == plan.run else (0, 0)
            return arrays, made
        except (OSError, ValueError, AttributeError, KeyError, IndexError, TypeError):
            return None
        except _Damage as e:
            self.log(f"feature store: {e}; recomputing that chunk")
            return None

    def _publish(self, plan: _Plan, chunks: Iterator[tuple[int, dict, tuple[int, int]]],
                 mode: str | None):
        """Merge ``chunks`` (every chunk of the entry, in order; lock held) and publish the
        entry: files first, manifest last, then ``parts/`` removed."""
        d, meta, n = plan.job.d, plan.job.meta, len(plan.job.inputs)
        computed = reused = 0
        out: dict[str, np.ndarray] = {}
        names: list[str] | None = None
        for s, got, (c, r) in chunks:
            computed, reused = computed + c, reused + r
            if names is None:
                names = sorted(got)
            elif sorted(got) != names:
                raise ValueError(f"{d}: chunk {s} holds arrays {sorted(got)} but chunk 0 holds "
                                 f"{names}; compute() returns other arrays than the sibling "
                                 "entries it reuses rows from. Delete those entry folders")
            for name, arr in got.items():
                if name not in out:
                    out[name] = np.empty((n, *arr.shape[1:]), dtype=arr.dtype)
                elif arr.shape[1:] != out[name].shape[1:]:
                    raise ValueError(f"{d}: chunk {s} has {name!r} of shape {arr.shape[1:]} per "
                                     f"item, earlier chunks {out[name].shape[1:]}")
                wider = np.result_type(out[name].dtype, arr.dtype)
                if wider != out[name].dtype:             # e.g. longer strings in this chunk
                    out[name] = out[name].astype(wider)
                out[name][s:s + len(arr)] = arr
        seconds = time.perf_counter() - plan.started
        names = names or []
        staging = d / f".staging-{_writer_tag()}"
        staging.mkdir()
        specs = {f"{name}.npy": _write_npy(staging / f"{name}.npy", out[name]) for name in names}
        specs[DIGESTS] = _write_npy(staging / DIGESTS, plan.idigs)
        for fname in specs:
            os.replace(staging / fname, d / fname)
        manifest = {
            **meta, "inputs_sha256": plan.job.sha, "n": n, "arrays": names,
            "shapes": {name: list(out[name].shape) for name in names},
            "dtypes": {name: out[name].dtype.str for name in names},
            "checksums": {fname: spec["checksum"] for fname, spec in specs.items()},
            "chunks_computed": computed, "rows_reused": reused,
            "item_digests": DIGESTS, "seconds": round(seconds, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        _write_json_atomic(d / "manifest.json", manifest)     # the commit point
        shutil.rmtree(d / "parts")
        staging.rmdir()
        entry = StoreEntry(d, manifest)
        if mode is None:
            return entry, None
        if mode == "mmap":
            return entry, {name: np.load(d / f"{name}.npy", mmap_mode="r") for name in names}
        return entry, out
