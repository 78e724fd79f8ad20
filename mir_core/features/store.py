"""On-disk feature store: features keyed by (dataset, split, modality, encoder, settings).

Each entry is a folder ``<root>/<dataset>/<split>/<modality>/<encoder>-<S>-<I>/`` (S, I:
hashes of the settings and of the inputs) with one ``.npy`` file per array and a
``manifest.json`` (settings, sha256 of the inputs, shapes, timing). An entry is reused when
the inputs' digest and settings match; other inputs or settings get their own entry.
Computation is chunked: each finished chunk is written at once, so a killed run resumes
where it stopped and never recomputes or loses a finished chunk.

Rows are also reused one by one: every entry keeps a digest per input item, so a call
with a subset of another entry's inputs (same encoder and settings, e.g. ``split.subset(n)``
after the full split) is served from that entry without computing anything, and a call
whose inputs changed only in part computes only the new or changed items. Final arrays
are written to a temporary file and renamed into place.

Variable-length features (frames, audio frames, tokens) are stored padded to a fixed
length with a boolean mask: see :func:`pad_sequences`.

    store = FeatureStore()                       # $MIR_CACHE_DIR/features
    feats = store.get_or_compute(
        dataset="MIntRec2.0", split="train", modality="text", encoder="minilm-l6",
        settings={"max_len": 32}, inputs=texts, compute=lambda batch: {"pooled": ...})
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import paths


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


@dataclass
class StoreEntry:
    path: Path
    manifest: dict
    rows: np.ndarray | None = None    # a subset hit: these rows of the stored arrays

    def load(self, mmap: bool = False) -> dict[str, np.ndarray]:
        mode = "r" if mmap or self.rows is not None else None   # a subset reads its rows only
        out = {name: np.load(self.path / f"{name}.npy", mmap_mode=mode)
               for name in self.manifest["arrays"]}
        if self.rows is not None:
            out = {name: np.asarray(arr[self.rows]) for name, arr in out.items()}
        return out

    @property
    def n(self) -> int:
        return len(self.rows) if self.rows is not None else int(self.manifest["n"])


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)


@dataclass
class _Donor:
    """A complete sibling entry (same encoder and settings) whose rows can be reused."""

    path: Path
    manifest: dict
    row_of: dict[bytes, int]          # item digest -> row


def _read_donor(d: Path) -> _Donor | None:
    mf = d / "manifest.json"
    if not mf.exists():
        return None
    try:
        manifest = json.loads(mf.read_text())
        name = manifest.get("item_digests")
        if not name or not (d / name).exists():
            return None
        digs = np.load(d / name)
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    if len(digs) != manifest.get("n") or not all(
            (d / f"{a}.npy").exists() for a in manifest.get("arrays", [])):
        return None
    return _Donor(d, manifest, {row.tobytes(): i for i, row in enumerate(digs)})


class FeatureStore:
    """Chunked, resumable, checksum-keyed feature cache (see module docstring)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else paths.cache_dir() / "features"

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
        d = self.entry_dir(dataset, split, modality, encoder, settings, inputs_sha256)
        mf = d / "manifest.json"
        if not mf.exists():
            return None
        manifest = json.loads(mf.read_text())
        if manifest.get("inputs_sha256") != inputs_sha256:
            return None
        return StoreEntry(d, manifest)

    def get_or_compute(self, *, dataset: str, split: str, modality: str, encoder: str,
                       settings: dict, inputs: Sequence,
                       compute: Callable[[Sequence], dict[str, np.ndarray]],
                       chunk_size: int = 1024, progress: bool = True,
                       mmap: bool = False) -> dict[str, np.ndarray]:
        """Arrays for ``inputs`` (first axis = len(inputs)), computed once per chunk."""
        return self.get_or_compute_entry(
            dataset=dataset, split=split, modality=modality, encoder=encoder,
            settings=settings, inputs=inputs, compute=compute, chunk_size=chunk_size,
            progress=progress).load(mmap=mmap)

    def _donors(self, d: Path) -> list[_Donor]:
        """Complete entries beside ``d`` with the same encoder and settings, largest first."""
        prefix = d.name.rsplit("-", 1)[0] + "-"
        found = [_read_donor(p) for p in sorted(d.parent.glob(prefix + "*"))
                 if p != d and p.is_dir() and p.name.rsplit("-", 1)[0] + "-" == prefix]
        return sorted((x for x in found if x is not None), key=lambda x: -len(x.row_of))

    @staticmethod
    def _backfill_digests(entry: StoreEntry, inputs: list) -> None:
        """Add per-item digests to an entry written before they existed (exact hit only)."""
        if len(inputs) != entry.manifest.get("n"):
            return
        _save_atomic(entry.path / "item_digests.npy", item_digests(inputs))
        entry.manifest["item_digests"] = "item_digests.npy"
        mf = entry.path / "manifest.json"
        tmp = mf.with_name("manifest.json.tmp")
        tmp.write_text(json.dumps(entry.manifest, indent=2))
        tmp.replace(mf)

    def get_or_compute_entry(self, *, dataset, split, modality, encoder, settings, inputs,
                             compute, chunk_size=1024, progress=True,
                             reuse_rows: bool = True) -> StoreEntry:
        """Like :meth:`get_or_compute` but returns the :class:`StoreEntry` (folder, manifest).

        With ``reuse_rows``, inputs all found in one sibling entry (same encoder and
        settings, other inputs: e.g. the full split when asking for a subset) are served
        from it (``StoreEntry.rows``), and otherwise only the items no sibling holds are
        computed."""
        inputs = list(inputs)
        sha = digest(inputs)
        hit = self.lookup(dataset, split, modality, encoder, settings, sha)
        if hit is not None:
            if reuse_rows and "item_digests" not in hit.manifest:
                self._backfill_digests(hit, inputs)    # an older entry becomes a row donor
            return hit
        d = self.entry_dir(dataset, split, modality, encoder, settings, sha)
        idigs = item_digests(inputs)                                   # (N, 16)
        donors = self._donors(d) if reuse_rows and inputs else []
        for donor in donors:                                           # a subset hit
            rows = [donor.row_of.get(r.tobytes()) for r in idigs]
            if all(r is not None for r in rows):
                return StoreEntry(donor.path, donor.manifest, np.asarray(rows, dtype=np.int64))
        source: dict[bytes, tuple[int, int]] = {}                      # digest -> (donor, row)
        for k, donor in reversed(list(enumerate(donors))):
            source.update({dg: (k, r) for dg, r in donor.row_of.items()})
        parts = d / "parts"
        stamp = parts / "inputs_sha256"
        if parts.exists() and (not stamp.exists() or stamp.read_text() != sha):
            shutil.rmtree(parts)          # inputs changed: partial chunks are stale
        if (d / "manifest.json").exists():
            (d / "manifest.json").unlink()
        parts.mkdir(parents=True, exist_ok=True)
        stamp.write_text(sha)
        opened: dict[int, dict[str, np.ndarray]] = {}

        def donor_rows(name: str, where: list[tuple[int, int]]) -> np.ndarray:
            out = []
            for k, r in where:
                if k not in opened:
                    opened[k] = {a: np.load(donors[k].path / f"{a}.npy", mmap_mode="r")
                                 for a in donors[k].manifest["arrays"]}
                if name not in opened[k]:
                    raise ValueError(f"{donors[k].path} has no array {name!r} (it has "
                                     f"{sorted(opened[k])}); delete that entry folder")
                out.append(np.asarray(opened[k][name][r]))
            return np.stack(out)

        n = len(inputs)
        starts = list(range(0, n, chunk_size))
        t0 = time.perf_counter()
        computed = reused = 0
        iterator = starts
        if progress:
            from tqdm.auto import tqdm
            iterator = tqdm(starts, desc=f"{dataset}/{split}/{modality}/{encoder}",
                            unit="chunk", leave=False)
        for s in iterator:
            done = parts / f"{s:09d}.done"
            if done.exists():
                continue
            chunk = inputs[s:s + chunk_size]
            prev = [source.get(r.tobytes()) for r in idigs[s:s + len(chunk)]]
            todo = [j for j, w in enumerate(prev) if w is None]
            have = [j for j, w in enumerate(prev) if w is not None]
            new = {name: np.asarray(a) for name, a in compute([chunk[j] for j in todo]).items()} \
                if todo else {}
            for name, arr in new.items():
                if arr.shape[0] != len(todo):
                    raise ValueError(f"compute() returned {arr.shape[0]} rows of {name!r} for "
                                     f"a chunk of {len(todo)} inputs")
            names = sorted(new) if todo else sorted(donors[prev[0][0]].manifest["arrays"])
            for name in names:
                if not have:
                    arr = new[name]
                else:
                    kept = donor_rows(name, [prev[j] for j in have])
                    if not todo:
                        arr = kept
                    else:
                        fresh = new[name]
                        arr = np.empty((len(chunk), *fresh.shape[1:]),
                                       dtype=np.result_type(fresh.dtype, kept.dtype))
                        arr[np.asarray(todo)] = fresh
                        arr[np.asarray(have)] = kept
                np.save(parts / f"{s:09d}.{name}.npy", arr)
            done.write_text(json.dumps(names))
            computed += bool(todo)
            reused += len(have)
        opened.clear()
        seconds = time.perf_counter() - t0
        names = json.loads((parts / f"{starts[0]:09d}.done").read_text()) if starts else []
        for s in starts:
            other = json.loads((parts / f"{s:09d}.done").read_text())
            if other != names:
                raise ValueError(f"{d}: chunk {s} holds arrays {other} but chunk 0 holds "
                                 f"{names}; compute() returns other arrays than the sibling "
                                 "entries it reuses rows from. Delete those entry folders")
        shapes = {}
        for name in names:
            arr = np.concatenate([np.load(parts / f"{s:09d}.{name}.npy") for s in starts])
            _save_atomic(d / f"{name}.npy", arr)
            shapes[name] = list(arr.shape)
        _save_atomic(d / "item_digests.npy", idigs)
        manifest = {
            "dataset": dataset, "split": split, "modality": modality, "encoder": encoder,
            "settings": settings, "inputs_sha256": sha, "n": n, "arrays": names,
            "shapes": shapes, "chunks_computed": computed, "rows_reused": reused,
            "item_digests": "item_digests.npy", "seconds": round(seconds, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (d / "manifest.json").write_text(json.dumps(manifest, indent=2))
        shutil.rmtree(parts)
        return StoreEntry(d, manifest)
