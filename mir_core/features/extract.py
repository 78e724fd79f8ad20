"""Batch extraction of video / audio features over clip files, cached and resumable.

    >>> items = [ClipItem("clip_000", "clips/clip_000.mp4"), ...]
    >>> res = extract_clip_features(items, "video", dataset="synthetic", split="demo")
    >>> res.features.shape, res.mask.shape     # (N, 180, 1280) float16, (N, 180) bool
    >>> res.manifest                           # item_id, path, checksum, ok, error_class, ...
    >>> res.errors                             # only the failed items

Features go to the :class:`~mir_core.features.store.FeatureStore` keyed by (dataset, split,
modality, encoder, settings) and by the items' input keys ``item_id / path / checksum``
(the file's sha256, or size + mtime with ``checksum='stat'``): a second run with the same
files and settings loads them; a changed, added or fixed file is recomputed alone; a run
killed mid-way resumes at the first unfinished chunk.

A bad input never stops the batch: a missing file, a corrupt file, a clip without an
audio track or without frames is recorded per item (item id, path, error class,
message); its row is all zeros and fully masked (``ok`` False). Everything already
written is kept.

With ``num_workers=k`` the clips of a chunk are decoded in ``k`` DataLoader worker processes
(in parallel, in input order) and encoded in the calling process: a worker returns an
item's error instead of raising, so the features and the manifest equal those of
``num_workers=0`` (decoding in the calling process).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch.utils.data

from .. import modelpack
from .audio import AudioSettings, load_wave_encoder, read_audio
from .clips import ClipRecord
from .store import FeatureStore, StoreEntry, pad_sequences
from .video import VideoSettings, load_frame_encoder, read_frames

MODALITIES = ("video", "audio")
SETTINGS_VERSION = 1              # bump when the extraction code changes its outputs


@dataclass(frozen=True)
class ClipItem:
    """One input of a batch: an id and the clip file."""

    item_id: str
    path: str


def as_items(clips: Sequence) -> list[ClipItem]:
    """ClipItems from ClipItem / ClipRecord / (id, path) / path inputs."""
    out = []
    for c in clips:
        if isinstance(c, ClipItem):
            out.append(c)
        elif isinstance(c, ClipRecord):
            out.append(ClipItem(c.item_id, c.path))
        elif isinstance(c, (tuple, list)) and len(c) == 2:
            out.append(ClipItem(str(c[0]), str(c[1])))
        elif isinstance(c, (str, Path)):
            out.append(ClipItem(Path(c).stem, str(c)))
        else:
            raise TypeError(f"cannot make a ClipItem from {c!r}")
    ids = [c.item_id for c in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"duplicate item_id {dup!r} in the batch")
    return out


def file_checksum(path: str | Path, mode: str = "sha256") -> str:
    """'sha256:<hex>' of the bytes, 'stat:<size>:<mtime_ns>' (cheap), or 'missing'."""
    p = Path(path)
    if not p.is_file():
        return "missing"
    if mode == "stat":
        st = p.stat()
        return f"stat:{st.st_size}:{st.st_mtime_ns}"
    if mode != "sha256":
        raise ValueError(f"checksum mode must be 'sha256' or 'stat', got {mode!r}")
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _input_key(item: ClipItem, checksum: str) -> str:
    return f"{item.item_id}\t{item.path}\t{checksum}"


@dataclass
class ExtractionResult:
    """Padded features of a batch plus its per-item manifest."""

    modality: str
    encoder: str
    settings: dict
    entry: StoreEntry
    arrays: dict[str, np.ndarray] = field(repr=False)
    seconds: float = 0.0
    computed: bool = False           # False: everything came from the store

    @property
    def features(self) -> np.ndarray:          # (N, L, D)
        return self.arrays["features"]

    @property
    def mask(self) -> np.ndarray:              # (N, L) bool
        return self.arrays["mask"]

    @property
    def lengths(self) -> np.ndarray:           # (N,) steps kept
        return self.arrays["length"]

    @property
    def ok(self) -> np.ndarray:                # (N,) bool
        return self.arrays["ok"]

    @property
    def manifest(self):
        """pandas DataFrame: item_id, path, checksum, ok, length, source_length,
        error_class, error_message (one row per input item, input order)."""
        import pandas as pd

        a = self.arrays
        return pd.DataFrame({
            "item_id": a["item_id"].astype(str), "path": a["path"].astype(str),
            "checksum": a["checksum"].astype(str), "ok": a["ok"].astype(bool),
            "length": a["length"].astype(int), "source_length": a["source_length"].astype(int),
            "error_class": a["error_class"].astype(str),
            "error_message": a["error_message"].astype(str)})

    @property
    def errors(self):
        m = self.manifest
        return m[~m.ok].reset_index(drop=True)

    def summary(self) -> dict:
        return {"modality": self.modality, "encoder": self.encoder, "n": int(len(self.ok)),
                "n_ok": int(self.ok.sum()), "n_failed": int((~self.ok).sum()),
                "shape": list(self.features.shape), "seconds": round(self.seconds, 3),
                "computed": self.computed, "entry": str(self.entry.path)}

    def write_manifest(self, folder: str | Path) -> Path:
        """``<folder>/<modality>_manifest.csv`` + ``.json`` (with the settings); returns the csv."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        csv = folder / f"{self.modality}_manifest.csv"
        self.manifest.to_csv(csv, index=False)
        (folder / f"{self.modality}_manifest.json").write_text(json.dumps(
            {**self.summary(), "settings": self.settings,
             "items": self.manifest.to_dict(orient="records")}, indent=2))
        return csv


def _settings_for(modality: str, settings) -> tuple[str, dict]:
    if modality == "video":
        s = settings if settings is not None else VideoSettings()
        if not isinstance(s, VideoSettings):
            raise TypeError(f"video extraction needs VideoSettings, got {type(s).__name__}")
    elif modality == "audio":
        s = settings if settings is not None else AudioSettings()
        if not isinstance(s, AudioSettings):
            raise TypeError(f"audio extraction needs AudioSettings, got {type(s).__name__}")
    else:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return modelpack.canonical_name(s.encoder), asdict(s)


def _error_row(e: BaseException) -> tuple[str, str]:
    return type(e).__name__, str(e)[:500]


def _decode(modality: str, s: VideoSettings | AudioSettings, path: str) -> np.ndarray:
    """The decoded clip: frames (T, H, W, 3) uint8 or a wave (S,) float32."""
    if modality == "video":
        return read_frames(path, s.n_frames, s.mode, s.decode_size, s.fps)
    return read_audio(path, s.sample_rate, s.max_seconds)


_Decoded = tuple[np.ndarray | None, tuple[str, str] | None]   # (array, None) | (None, error row)


class _DecodedClips(torch.utils.data.Dataset):
    """Clip ``j`` decoded as (array, None), or (None, (error class, message)) when it cannot
    be: a DataLoader worker hands an item's error back instead of raising it."""

    def __init__(self, paths: list[str], decode: Callable[[str], np.ndarray]):
        self.paths, self.decode = paths, decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, j: int) -> _Decoded:
        try:
            return self.decode(self.paths[j]), None
        except Exception as e:                # named ClipError subclasses, or anything else
            return None, _error_row(e)


def _as_is(item: _Decoded) -> _Decoded:
    """The DataLoader's per-item collate: keep numpy arrays (no conversion to tensors)."""
    return item


def _decode_all(paths: list[str], decode: Callable[[str], np.ndarray],
                num_workers: int) -> Iterator[_Decoded]:
    """Every clip decoded, in order: in DataLoader workers, or here with ``num_workers`` 0
    or a single clip (a worker would only add its start-up)."""
    clips = _DecodedClips(paths, decode)
    if num_workers == 0 or len(paths) < 2:
        return (clips[j] for j in range(len(clips)))
    return iter(torch.utils.data.DataLoader(clips, batch_size=None, collate_fn=_as_is,
                                            num_workers=min(num_workers, len(paths))))


def extract_clip_features(clips: Sequence, modality: str, settings=None, *,
                          dataset: str = "synthetic", split: str = "clips",
                          store: FeatureStore | None = None, batch_size: int = 8,
                          checksum: str = "sha256", encoder=None, progress: bool = True,
                          num_workers: int = 0,
                          log: Callable[[str], None] = print) -> ExtractionResult:
    """Features of every clip for one modality, from the store or computed (see module doc).

    ``settings``: :class:`VideoSettings` / :class:`AudioSettings` (encoder name included);
    ``encoder``: an already loaded encoder object to use instead of loading one by name;
    ``batch_size``: clips per chunk (a chunk is the unit of resumption and of batching);
    ``num_workers``: DataLoader worker processes decoding each chunk (0: decode here).
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    items = as_items(clips)
    enc_name, key = _settings_for(modality, settings)
    s = settings if settings is not None else (VideoSettings() if modality == "video"
                                               else AudioSettings())
    key = {**key, "modality": modality, "checksum": checksum, "version": SETTINGS_VERSION}
    t0 = time.perf_counter()
    sums = [file_checksum(it.path, checksum) for it in items]
    by_key = {_input_key(it, c): (it, c) for it, c in zip(items, sums)}
    inputs = list(by_key)
    state: dict = {"encoder": encoder, "computed": False}

    def get_encoder():
        if state["encoder"] is None:
            state["encoder"] = (load_frame_encoder(s.encoder) if modality == "video"
                                else load_wave_encoder(s.encoder))
        return state["encoder"]

    decode = partial(_decode, modality, s)           # picklable: workers may be spawned

    def encode_many(xs: list[np.ndarray]) -> list[np.ndarray]:
        enc = get_encoder()
        if modality == "audio":
            return enc.encode_batch(xs)
        if len({x.shape[1:] for x in xs}) == 1:            # one forward pass for the batch
            feats = enc.encode(np.concatenate(xs))
            return np.split(feats, np.cumsum([len(x) for x in xs])[:-1])
        return [enc.encode(x) for x in xs]

    def compute(batch: Sequence[str]) -> dict[str, np.ndarray]:
        state["computed"] = True
        n = len(batch)
        seqs: list[np.ndarray | None] = [None] * n
        errs = [("", "")] * n
        decoded: dict[int, np.ndarray] = {}
        paths = [by_key[k][0].path for k in batch]
        for j, (x, err) in enumerate(_decode_all(paths, decode, num_workers)):
            if err is None:
                decoded[j] = x
            else:
                errs[j] = err
        if decoded:
            js = list(decoded)
            try:
                outs = encode_many([decoded[j] for j in js])
                for j, f in zip(js, outs):
                    seqs[j] = f
            except modelpack.MissingWeightsError:
                raise                          # no encoder at all: not an item's fault
            except Exception:                  # isolate the item that breaks the encoder
                for j in js:
                    try:
                        seqs[j] = encode_many([decoded[j]])[0]
                    except modelpack.MissingWeightsError:
                        raise
                    except Exception as e:
                        errs[j] = _error_row(e)
        for j in range(n):
            if seqs[j] is not None and len(seqs[j]) == 0:
                seqs[j], errs[j] = None, ("ZeroFramesError", f"{by_key[batch[j]][0].path}: "
                                          "the encoder produced 0 frames")
        dim = (state["encoder"].dim if state["encoder"] is not None
               else _known_dim(s.encoder))       # every item failed: no need to load a model
        feats, mask, lengths = pad_sequences(seqs, s.max_len, dim=dim, fit=s.fit)
        return {
            "features": feats, "mask": mask, "length": lengths,                 # (B,L,D) (B,L) (B,)
            "source_length": np.array([0 if q is None else len(q) for q in seqs], np.int32),
            "ok": np.array([q is not None for q in seqs]),
            "item_id": np.array([by_key[k][0].item_id for k in batch], dtype=str),
            "path": np.array([by_key[k][0].path for k in batch], dtype=str),
            "checksum": np.array([by_key[k][1] for k in batch], dtype=str),
            "error_class": np.array([e[0] for e in errs], dtype=str),
            "error_message": np.array([e[1] for e in errs], dtype=str),
        }

    store = store or FeatureStore()
    entry = store.get_or_compute_entry(
        dataset=dataset, split=split, modality=modality, encoder=enc_name, settings=key,
        inputs=inputs, compute=compute, chunk_size=max(1, batch_size), progress=progress)
    arrays = entry.load()
    res = ExtractionResult(modality, enc_name, key, entry, arrays,
                           time.perf_counter() - t0, state["computed"])
    n_bad = int((~res.ok).sum())
    log(f"{modality}/{enc_name}: {len(items)} clips, {len(items) - n_bad} ok, {n_bad} failed, "
        f"{'computed' if res.computed else 'from the store'} in {res.seconds:.1f} s")
    return res


def _known_dim(encoder: str) -> int:
    """Feature dim without loading the model (a chunk where every item failed)."""
    canon = modelpack.canonical_name(encoder)
    if canon in modelpack.OFFLINE:
        return modelpack.OFFLINE[canon].dim
    if canon in modelpack.HUB:
        return modelpack.HUB[canon].dim
    raise ValueError(f"the feature dim of {encoder!r} is unknown until it encodes one clip; "
                     "put at least one readable clip in each chunk or use a known encoder")
