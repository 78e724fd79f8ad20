"""The benchmarks' distributed nonverbal features, joined to the data layer's sample keys.

    >>> dev = load_split("MIntRec2.0", "dev")
    >>> v = load_nonverbal(dev, "video", feature_root)   # the folder holding video_data/
    >>> v["feats"].shape, v["mask"].shape, v["length"].shape
    ((1106, 180, 256), (1106, 180), (1106,))

Formats (:data:`NONVERBAL_SOURCES`, one :class:`NonverbalSource` each; add your own with
:func:`register_source`; L: the official loaders' padded length, the default)::

    dataset     modality  file (relative to the folder)      per sample      L    pickle key
    MIntRec2.0  video     video_data/swin_roi_binary.pkl     (T, 256)      180    dia{D}_utt{U}
    MIntRec2.0  audio     audio_data/wavlm_feats_binary.pkl  (T, 768)      400    dia{D}_utt{U}
    MIntRec     video     video_data/video_feats.pkl         T x [1, 256]  230    season_ep_clip
    MIntRec     audio     audio_data/audio_feats.pkl         (T, 768)      480    season_ep_clip
    IEMOCAP-DA  video     swin_feats.pkl                     (T, 1024)     230    TURN name
    IEMOCAP-DA  audio     wavlm_feats.pkl                    (T, 768)      380    TURN name

(MIntRec2.0's data-layer key ``"2_0"`` is the pickle's ``dia2_utt0``; MIntRec's and
IEMOCAP-DA's keys, ``season_episode_clip`` and the TURN name, are the pickle's keys as
they are.) A value may be a numpy array, a torch tensor, a list, anything ``np.asarray``
takes; a leading singleton batch axis ``(1, T, D)`` is dropped, MIntRec's lists of
``[1, 256]`` key frames are stacked to ``(T, 256)``.

Output: ``{"feats": (N, L, D) float16, "mask": (N, L) bool, "length": (N,) int32}`` in
split order, ``L = max_len`` (default: the format's). A sample longer than ``L`` keeps its
first ``L`` frames; a shorter one is zero-padded at the END, and ``mask`` is True on its
real frames. The official loaders (MIntRec, MIntRec2.0, MIntOOD) zero-pad at the end the
same way but never return a mask, so their models attend to and pool over the padding;
here the mask is kept, so a model can ignore it (``feats`` itself is their padded tensor,
in float16). The other source of the same ``(N, L, D)`` + mask tensors is
:mod:`mir_core.features.extract` (the project's own pipeline: clips -> EfficientNet frame
features, Whisper audio features).

float16, because it is what :mod:`mir_core.features.extract` and
:func:`~mir_core.features.store.pad_sequences` store, so downstream code sees one dtype
from either source, and it halves disk and memory (MIntRec2.0 train audio is 6165 x 400
x 768: 3.8 GB instead of 7.6 GB); its rounding (relative error <= 2**-11) is far below
what matters for frozen encoder activations. A value outside float16's range (|x| >
65504) raises :class:`NonverbalDataError` instead of becoming inf.

Converted once: the tensors go to the :class:`~mir_core.features.store.FeatureStore`
(modality ``nonverbal-<video|audio>``, encoder: the file's format, e.g.
``swin_roi_binary``; settings: ``max_len`` and the sha256 of the pickle, so an edited or
replaced file is a new entry). The pickle is opened only when the store does not already
hold the entry; later calls (and subsets of a converted split) read ``.npy`` files and
never unpickle. Each call does read the file once for its sha256 (remembered for the
rest of the process while its size and times are unchanged).

Security: unpickling a file runs code the file names. A pickle is read only from the
path the caller passes (a folder, joined with the format's relative path, or the
``.pkl`` itself): there are no default search paths and no environment variables that
point at pickles. Pass only files you trust, e.g. the ones the benchmarks' authors
distribute.

Errors: every problem raises :class:`NonverbalDataError` (a
:class:`~mir_core.data.DataError`) with one line naming the file, the key or field and
what to do: a missing file (:class:`MissingNonverbalFile`, with the expected layout), a
pickle that is not a dict, split samples missing from the file (how many, the first
few), a value of the wrong rank or feature dimension, no frames, NaN/inf or out of float16
range values. No sample is ever skipped.
"""
from __future__ import annotations

import os
import pickle
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data import DataError, MIRSplit, MissingDataFile, sha256_of
from .store import FeatureStore, pad_sequences

MODALITIES = ("video", "audio")
DTYPE = np.float16
FORMAT_VERSION = 1                 # bump when the conversion changes its outputs
_FP16_MAX = float(np.finfo(np.float16).max)
_RACY_NS = 2_000_000_000           # files changed this recently are hashed on every call
_SHA_CACHE: dict[str, tuple] = {}  # path -> (dev, ino, size, mtime_ns, ctime_ns, sha256)


class NonverbalDataError(DataError):
    """A nonverbal feature file that cannot be used; the message names file and key."""


class MissingNonverbalFile(NonverbalDataError, MissingDataFile):
    """The feature file is not where it was looked for; the message gives the layout."""


# ----------------------------------------------------------------------------- formats
def same_key(key: str) -> str:
    """The data layer's key is the pickle's key (MIntRec, IEMOCAP-DA)."""
    return key


def mintrec2_key(key: str) -> str:
    """MIntRec2.0: ``"2_0"`` (Dialogue_id _ Utterance_id) -> ``"dia2_utt0"``."""
    dia, sep, utt = key.partition("_")
    if not (sep and dia and utt) or "_" in utt:
        raise NonverbalDataError(f"MIntRec2.0 sample key {key!r} is not "
                                 "'<Dialogue_id>_<Utterance_id>' (e.g. '2_0'); load the split "
                                 "with mir_core.data.load_split('MIntRec2.0', ...)")
    return f"dia{dia}_utt{utt}"


@dataclass(frozen=True)
class NonverbalSource:
    """One distributed feature file format.

    ``rel_path``: where the file lies in the folder the caller names; ``dim``: D of each
    (T, D) value; ``max_len``: the official loader's padded length (the default L);
    ``key_fn``: data-layer key -> pickle key; ``frame_list``: values are lists of
    ``[1, D]`` key-frame arrays (stacked to (T, D)); ``encoder``: the store's encoder
    name (default: the file's stem)."""

    dataset: str
    modality: str                  # 'video' | 'audio'
    rel_path: str
    dim: int
    max_len: int
    key_fn: Callable[[str], str] = same_key
    key_format: str = "the data layer's key"   # for messages
    frame_list: bool = False
    encoder: str = ""
    description: str = ""

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"NonverbalSource {self.dataset}/{self.rel_path}: modality must "
                             f"be one of {MODALITIES}, got {self.modality!r}")
        if self.dim < 1 or self.max_len < 1:
            raise ValueError(f"NonverbalSource {self.dataset}/{self.rel_path}: dim and "
                             f"max_len must be >= 1, got {self.dim} and {self.max_len}")
        if Path(self.rel_path).is_absolute():
            raise ValueError(f"NonverbalSource {self.dataset}: rel_path must be relative, "
                             f"got {self.rel_path!r}")
        if not self.encoder:
            object.__setattr__(self, "encoder", Path(self.rel_path).stem)


NONVERBAL_SOURCES: dict[tuple[str, str], NonverbalSource] = {}


def register_source(source: NonverbalSource, *, replace: bool = False) -> NonverbalSource:
    """Add a format to :data:`NONVERBAL_SOURCES` (``replace`` to overwrite one)."""
    key = (source.dataset, source.modality)
    if key in NONVERBAL_SOURCES and not replace:
        raise ValueError(f"a {source.modality} format for {source.dataset} is already "
                         f"registered ({NONVERBAL_SOURCES[key].rel_path}); pass replace=True")
    NONVERBAL_SOURCES[key] = source
    return source


for _src in (
    NonverbalSource("MIntRec2.0", "video", "video_data/swin_roi_binary.pkl", 256, 180,
                    mintrec2_key, "dia<Dialogue_id>_utt<Utterance_id>",
                    description="Swin ROI features of the speaker"),
    NonverbalSource("MIntRec2.0", "audio", "audio_data/wavlm_feats_binary.pkl", 768, 400,
                    mintrec2_key, "dia<Dialogue_id>_utt<Utterance_id>",
                    description="WavLM features"),
    NonverbalSource("MIntRec", "video", "video_data/video_feats.pkl", 256, 230,
                    key_format="season_episode_clip", frame_list=True,
                    description="ResNet-50 ROI features of key frames"),
    NonverbalSource("MIntRec", "audio", "audio_data/audio_feats.pkl", 768, 480,
                    key_format="season_episode_clip", description="wav2vec 2.0 features"),
    NonverbalSource("IEMOCAP-DA", "video", "swin_feats.pkl", 1024, 230,
                    key_format="the TURN name", description="Swin features (MIntOOD release)"),
    NonverbalSource("IEMOCAP-DA", "audio", "wavlm_feats.pkl", 768, 380,
                    key_format="the TURN name", description="WavLM features (MIntOOD release)"),
):
    register_source(_src)


def get_source(dataset: str, modality: str) -> NonverbalSource:
    """The registered format of ``dataset``'s ``modality`` features."""
    if modality not in MODALITIES:
        raise NonverbalDataError(f"modality must be one of {MODALITIES}, got {modality!r}")
    try:
        return NONVERBAL_SOURCES[(dataset, modality)]
    except KeyError:
        known = sorted({d for d, _ in NONVERBAL_SOURCES})
        raise NonverbalDataError(
            f"no {modality} feature format is registered for dataset {dataset!r} (known: "
            f"{known}); describe it with register_source(NonverbalSource(...))") from None


def _layout(source: NonverbalSource) -> str:
    files = [s for (d, _), s in sorted(NONVERBAL_SOURCES.items()) if d == source.dataset]
    return "; ".join(f"<folder>/{s.rel_path} ({s.modality}, (T, {s.dim}) per sample, keyed "
                     f"{s.key_format})" for s in files)


def feature_file(path: str | Path, source: NonverbalSource) -> Path:
    """The pickle ``path`` names: ``path`` itself if it is (or looks like) a file, else
    ``path / source.rel_path``. :class:`MissingNonverbalFile` if it does not exist."""
    p = Path(path).expanduser()
    f = p if p.is_file() or (not p.is_dir() and p.suffix == ".pkl") else p / source.rel_path
    if not f.is_file():
        raise MissingNonverbalFile(
            f"{f}: file not found. {source.dataset} nonverbal features are read from "
            f"{_layout(source)}; pass the folder holding them (the benchmark's feature "
            f"release) or the .pkl file itself")
    return f


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered in this process while its stat is unchanged (not for
    a file changed in the last 2 s: coarse timestamps could hide a same-size rewrite)."""
    started = time.time_ns()
    st = os.stat(path)
    sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    key = str(Path(path).resolve())
    hit = _SHA_CACHE.get(key)
    if hit is not None and hit[:-1] == sig:
        return hit[-1]
    sha = sha256_of(Path(path))
    if started - st.st_ctime_ns > _RACY_NS:
        _SHA_CACHE[key] = (*sig, sha)
    return sha


# ----------------------------------------------------------------------------- reading
def _read_pickle(file: Path) -> Mapping:
    """Unpickle ``file`` (runs code: only a file the caller named) and check it is a dict."""
    try:
        with open(file, "rb") as fh:
            data = pickle.load(fh)
    except (MemoryError, NonverbalDataError):
        raise
    except Exception as e:
        first = (str(e).splitlines() or [""])[0]
        raise NonverbalDataError(f"{file}: cannot be unpickled ({type(e).__name__}: {first}); "
                                 "the file is damaged or not a feature pickle, download it "
                                 "again") from None
    if not isinstance(data, Mapping):
        raise NonverbalDataError(f"{file}: holds a {type(data).__name__}, not a dict of sample "
                                 "key -> (T, D) features; pass the benchmark's feature file")
    return data


def _as_array(value) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):        # a torch tensor
        value = value.detach().cpu().float().numpy()
    return np.asarray(value)


def _frames(file: Path, source: NonverbalSource, pkey: str, value) -> np.ndarray:
    """One pickle value as a validated (T, D) numeric array."""
    def bad(what: str) -> NonverbalDataError:
        return NonverbalDataError(f"{file}: key {pkey!r} {what}; this is not {source.dataset}'s "
                                  f"{source.modality} file ({source.rel_path}: (T, "
                                  f"{source.dim}) per sample), or that sample is damaged: "
                                  "re-export it")
    try:
        if source.frame_list and isinstance(value, (list, tuple)):
            parts = [_as_array(f) for f in value]
            arr = (np.stack([f[0] if f.ndim == 2 and f.shape[0] == 1 else f for f in parts])
                   if parts else np.zeros((0, source.dim)))             # (T, D)
        else:
            arr = _as_array(value)
    except (ValueError, TypeError, RuntimeError) as e:
        raise bad(f"is not a numeric array ({type(e).__name__}: "
                  f"{(str(e).splitlines() or [''])[0]})") from None
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]                                                  # (1, T, D) -> (T, D)
    if source.frame_list and arr.ndim == 3 and arr.shape[1] == 1:
        arr = arr[:, 0]                                               # (T, 1, D) -> (T, D)
    if arr.dtype.kind not in "biuf":
        raise bad(f"holds {arr.dtype} values, not numbers")
    if arr.ndim != 2 or arr.shape[1] != source.dim:
        raise bad(f"has shape {tuple(arr.shape)}, expected (T, {source.dim})")
    if len(arr) == 0:
        raise bad("has 0 frames")
    finite = np.isfinite(arr)
    if not finite.all():
        t = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise NonverbalDataError(f"{file}: key {pkey!r} has {int((~finite).sum())} NaN/inf "
                                 f"values (first in frame {t}); repair or re-export the "
                                 "features of that sample")
    big = float(np.abs(arr).max())
    if big > _FP16_MAX:
        raise NonverbalDataError(f"{file}: key {pkey!r} has values up to {big:.4g}, beyond "
                                 f"float16's {_FP16_MAX:.0f}; these are not the benchmark's "
                                 "features (rescale them first)")
    return arr


def _split_frames(file: Path, source: NonverbalSource, split: MIRSplit,
                  pkeys: Sequence[str]) -> dict[str, np.ndarray]:
    """{pickle key: (T, D)} for every sample of ``split``, all validated before any chunk
    is written; the rest of the pickle is dropped."""
    data = _read_pickle(file)
    missing = [k for k in pkeys if k not in data]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        have = ", ".join(str(k) for k in list(data)[:3])
        raise NonverbalDataError(
            f"{file}: {len(missing)} of the {len(pkeys)} {split.dataset}/{split.split} samples "
            f"have no key in the file ({shown}); it holds {len(data)} keys (e.g. {have}), "
            f"expected {source.key_format}: pass the file of this dataset's release")
    return {k: _frames(file, source, k, data[k]) for k in dict.fromkeys(pkeys)}


# ----------------------------------------------------------------------------- loading
def store_settings(source: NonverbalSource, max_len: int, sha256: str) -> dict:
    """The feature-store settings of a conversion: a new file or length is a new entry."""
    return {"max_len": max_len, "file_sha256": sha256, "dim": source.dim,
            "dtype": np.dtype(DTYPE).name, "version": FORMAT_VERSION}


def load_nonverbal(split: MIRSplit, modality: str, path: str | Path, *,
                   max_len: int | None = None, store: FeatureStore | None = None,
                   chunk_size: int = 1024, progress: bool = True) -> dict[str, np.ndarray]:
    """``{"feats": (N, L, D) float16, "mask": (N, L) bool, "length": (N,) int32}`` of
    ``split``'s samples (split order) from the benchmark's distributed ``modality`` file.

    ``path``: the folder holding the file at the format's relative path (e.g.
    ``video_data/swin_roi_binary.pkl``) or the ``.pkl`` itself; a pickle is read only
    from this path (unpickling runs code: pass only files you trust), and only when the
    store does not already hold the conversion. ``max_len``: L (default: the format's
    max). Truncates at L, zero-pads at the end, ``mask`` True on real frames.
    """
    source = get_source(split.dataset, modality)
    length = source.max_len if max_len is None else max_len
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise NonverbalDataError(f"max_len must be an integer >= 1, got {max_len!r}")
    length = int(length)
    file = feature_file(path, source)
    keys = split.keys
    pkey_of = {k: source.key_fn(k) for k in keys}
    loaded: dict[str, np.ndarray] = {}

    def compute(batch: Sequence[str]) -> dict[str, np.ndarray]:
        if not loaded:                                     # the only place that unpickles
            loaded.update(_split_frames(file, source, split, list(pkey_of.values())))
        feats, mask, lengths = pad_sequences([loaded[pkey_of[k]] for k in batch], length,
                                             dim=source.dim, dtype=DTYPE)
        return {"feats": feats, "mask": mask, "length": lengths}    # (B, L, D) (B, L) (B,)

    store = store or FeatureStore()
    return store.get_or_compute(
        dataset=split.dataset, split=split.split, modality=f"nonverbal-{modality}",
        encoder=source.encoder, settings=store_settings(source, length, file_sha256(file)),
        inputs=keys, compute=compute, chunk_size=chunk_size, progress=progress)
