"""Synthetic labelled video clips (H.264 video + AAC audio in mp4, written with PyAV).

No raw MIntRec2.0 / IEMOCAP video exists on this machine, so the video and audio feature
pipeline is exercised on clips made here: moving shapes whose colour, speed and direction
depend on a seed, over a tone / chirp whose pitch depends on the same seed.

    >>> make_clip("demo.mp4", seconds=2.0, fps=10, seed=3)            # -> Path
    >>> clips = make_clip_set("clips/", n=6, labels=["Greet", "Thank"])  # + manifest.csv/json

``make_broken_clip`` writes the bad inputs the extraction must survive: a corrupt file, a
clip without an audio track, a clip without video frames.
"""
from __future__ import annotations

import colorsys
import json
import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

PATTERNS = ("shapes", "bars", "pulse")
BROKEN_KINDS = ("corrupt", "no-audio", "zero-frames", "truncated")


@dataclass(frozen=True)
class ClipSpec:
    """Settings of one synthetic clip (recorded in the clip-set manifest)."""

    seconds: float = 2.0
    fps: int = 10
    size: tuple[int, int] = (112, 112)     # (height, width), both even (yuv420p)
    sample_rate: int = 16000
    audio: bool = True
    seed: int = 0
    pattern: str = "shapes"


def _rgb(hue: float, sat: float = 0.8, val: float = 0.95) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, sat, val), dtype=np.float32) * 255.0


def render_frames(n_frames: int, size: tuple[int, int], seed: int = 0,
                  pattern: str = "shapes") -> np.ndarray:
    """(n_frames, H, W, 3) uint8 frames that change over time and with the seed."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")
    h, w = size
    rng = np.random.default_rng(seed)
    hue0 = rng.random()
    speed = 0.5 + rng.random()                     # cycles per clip of the motion
    angle = rng.random() * 2 * math.pi             # direction of motion
    radius = max(3, int(min(h, w) * (0.12 + 0.1 * rng.random())))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)  # (H, W)
    frames = np.empty((n_frames, h, w, 3), dtype=np.uint8)
    for t in range(n_frames):
        phase = t / max(n_frames, 1)
        bg = _rgb(hue0 + 0.3 * phase, 0.35, 0.35 + 0.3 * phase)
        img = np.broadcast_to(bg, (h, w, 3)).copy()                    # (H, W, 3)
        img *= (0.75 + 0.25 * (xx / max(w - 1, 1)))[..., None]         # horizontal shading
        if pattern == "shapes":
            s = math.sin(2 * math.pi * speed * phase)
            cx = w / 2 + 0.35 * w * s * math.cos(angle)
            cy = h / 2 + 0.35 * h * s * math.sin(angle)
            disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius ** 2
            img[disc] = _rgb(hue0 + 0.5 + 0.2 * phase)
            sx = int((w - 2 * radius) * phase)                          # square sweeping right
            sy = int(h * 0.7)
            img[max(0, sy - radius // 2):sy + radius // 2, sx:sx + radius] = _rgb(hue0 + 0.25)
        elif pattern == "bars":
            period = max(4, w // (3 + seed % 4))
            offset = speed * phase * w
            bars = (((xx * math.cos(angle) + yy * math.sin(angle) + offset) // (period / 2))
                    % 2).astype(bool)
            img[bars] = _rgb(hue0 + 0.5 + 0.3 * phase)
        else:  # pulse: a disc in the centre growing and shrinking with a colour sweep
            r = radius * (1.0 + 1.5 * abs(math.sin(2 * math.pi * speed * phase)))
            disc = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 <= r ** 2
            img[disc] = _rgb(hue0 + phase)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def render_audio(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """(S,) float32 in [-1, 1]: a chirp (pitch rising from a seed-dependent base) + a tone."""
    n = int(round(seconds * sample_rate))
    rng = np.random.default_rng(seed + 10_000)
    f0 = 180.0 + 400.0 * rng.random()
    f1 = f0 * (1.5 + rng.random())
    t = np.arange(n, dtype=np.float64) / sample_rate
    dur = max(seconds, 1e-6)
    chirp = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * dur)))
    tone = 0.3 * np.sin(2 * np.pi * 2 * f0 * t)
    env = np.minimum(1.0, np.minimum(t, dur - t) / 0.02 + 1e-3)       # 20 ms fade in/out
    return (0.4 * (chirp + tone) * env).astype(np.float32)


def write_mp4(path: str | Path, frames: np.ndarray | None, fps: int = 10,
              wave: np.ndarray | None = None, sample_rate: int = 16000) -> Path:
    """Write ``frames`` (T, H, W, 3) uint8 as H.264 yuv420p and ``wave`` (S,) float32 as mono
    AAC into one mp4. Either may be None (no stream of that kind)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        vs = ast = None
        if frames is not None:
            h, w = frames.shape[1:3]
            vs = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.options = {"preset": "veryfast", "crf": "23", "g": str(max(1, fps))}
        if wave is not None:
            ast = container.add_stream("aac", rate=sample_rate)
            ast.layout = "mono"
        if vs is not None:
            for img in frames:
                for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in vs.encode():
                container.mux(packet)
        if ast is not None:
            step = 1024
            for s in range(0, len(wave), step):
                chunk = np.ascontiguousarray(wave[s:s + step][None, :], dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")  # (1, n)
                frame.sample_rate = sample_rate
                frame.pts = s
                frame.time_base = Fraction(1, sample_rate)
                for packet in ast.encode(frame):
                    container.mux(packet)
            for packet in ast.encode():
                container.mux(packet)
    return path


def make_clip(path: str | Path, *, seconds: float = 2.0, fps: int = 10,
              size: tuple[int, int] = (112, 112), sample_rate: int = 16000, audio: bool = True,
              seed: int = 0, pattern: str = "shapes") -> Path:
    """Write an mp4 (H.264 yuv420p video, optional mono AAC audio) and return its path.

    ``size`` is (height, width), both even; ``round(seconds * fps)`` frames are written
    (at least one). The audio track (when ``audio``) lasts ``seconds``.
    """
    path = Path(path)
    h, w = size
    if h % 2 or w % 2 or h < 16 or w < 16:
        raise ValueError(f"make_clip({path}): size {size} must be (height, width), even, >= 16")
    if fps <= 0:
        raise ValueError(f"make_clip({path}): fps must be positive, got {fps}")
    n_frames = int(round(seconds * fps))
    if n_frames < 1:
        raise ValueError(f"make_clip({path}): seconds * fps = {seconds * fps} gives no frame "
                         "(use make_broken_clip(path, 'zero-frames') for a frameless file)")
    frames = render_frames(n_frames, size, seed, pattern)                 # (T, H, W, 3)
    wave = render_audio(seconds, sample_rate, seed) if audio else None    # (S,)
    return write_mp4(path, frames, fps, wave, sample_rate)


def make_broken_clip(path: str | Path, kind: str, *, seed: int = 0) -> Path:
    """A bad input for the error path: 'corrupt' (random bytes with an .mp4 name),
    'no-audio' (valid video, no audio track), 'zero-frames' (an mp4 holding audio but no
    video frame),
    'truncated' (a valid clip cut to its first 600 bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "corrupt":
        path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8)
                         .tobytes())
    elif kind == "no-audio":
        make_clip(path, seed=seed, audio=False)
    elif kind == "zero-frames":
        write_mp4(path, None, wave=render_audio(2.0, 16000, seed))     # audio only
    elif kind == "truncated":
        make_clip(path, seed=seed)
        path.write_bytes(path.read_bytes()[:600])
    else:
        raise ValueError(f"kind must be one of {BROKEN_KINDS}, got {kind!r}")
    return path


# --------------------------------------------------------------------------- bad inputs
class ClipError(Exception):
    """A clip that cannot be used; ``path`` names the file. Subclasses name the reason."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


class MissingFileError(ClipError):
    """The clip file does not exist."""


class CorruptFileError(ClipError):
    """The file is not a readable media container (damaged, truncated, not a video)."""


class NoAudioTrackError(ClipError):
    """The container holds no audio stream."""


class ZeroFramesError(ClipError):
    """The container holds no video stream or no decodable video frame."""


class DecodeError(ClipError):
    """The container opened but decoding its frames / samples failed."""


@dataclass(frozen=True)
class ClipInfo:
    """What the container header says about a clip (no decoding)."""

    path: str
    video_streams: int
    audio_streams: int
    duration: float | None          # seconds
    fps: float | None
    width: int | None
    height: int | None


def probe_clip(path: str | Path) -> ClipInfo:
    """Read a clip's header with PyAV; raises MissingFileError / CorruptFileError."""
    import av

    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, "file not found")
    if path.stat().st_size == 0:
        raise CorruptFileError(path, "empty file (0 bytes)")
    try:
        with av.open(str(path)) as c:
            vids, auds = list(c.streams.video), list(c.streams.audio)
            dur = float(c.duration) / 1e6 if c.duration else None
            v = vids[0] if vids else None
            fps = float(v.average_rate) if v is not None and v.average_rate else None
            return ClipInfo(str(path), len(vids), len(auds), dur, fps,
                            v.codec_context.width if v is not None else None,
                            v.codec_context.height if v is not None else None)
    except av.FFmpegError as e:
        raise CorruptFileError(path, f"not a readable media file ({type(e).__name__}: "
                               f"{str(e)[:160]})") from None


@dataclass(frozen=True)
class ClipRecord:
    """One row of a clip-set manifest."""

    item_id: str
    path: str
    label: str
    label_id: int
    seed: int
    pattern: str
    seconds: float
    fps: int
    audio: bool
    broken: str = ""           # '' for a good clip, else a BROKEN_KINDS value


def make_clip_set(folder: str | Path, n: int, labels: Sequence[str], *, seconds: float = 2.0,
                  fps: int = 10, size: tuple[int, int] = (112, 112),
                  sample_rate: int = 16000, seed: int = 0,
                  broken: Sequence[str] = ()) -> list[ClipRecord]:
    """``n`` labelled clips ``clip_000.mp4``... in ``folder`` plus one clip per ``broken`` kind,
    and ``manifest.csv`` / ``manifest.json`` describing them.

    Labels cycle over ``labels``; each label has its own pattern and a seed band, so the
    clips of a label look alike and the features carry label signal. Existing clips with
    the same settings are kept (the manifest records the settings), so repeated calls
    are cheap and the feature store sees unchanged inputs.
    """
    import pandas as pd

    if n < 0:
        raise ValueError(f"make_clip_set: n must be >= 0, got {n}")
    if not labels:
        raise ValueError("make_clip_set: labels must not be empty")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    old: dict[str, dict] = {}
    mj = folder / "manifest.json"
    if mj.exists():
        old = {r["item_id"]: r for r in json.loads(mj.read_text()).get("clips", [])}
    records: list[ClipRecord] = []
    for i in range(n):
        lab_id = i % len(labels)
        rec = ClipRecord(item_id=f"clip_{i:03d}", path=str(folder / f"clip_{i:03d}.mp4"),
                         label=str(labels[lab_id]), label_id=lab_id,
                         seed=seed + 1000 * lab_id + i // len(labels),
                         pattern=PATTERNS[lab_id % len(PATTERNS)], seconds=seconds, fps=fps,
                         audio=True)
        if old.get(rec.item_id) != {**asdict(rec), "size": list(size),
                                    "sample_rate": sample_rate} or not Path(rec.path).exists():
            make_clip(rec.path, seconds=seconds, fps=fps, size=size, sample_rate=sample_rate,
                      audio=True, seed=rec.seed, pattern=rec.pattern)
        records.append(rec)
    for j, kind in enumerate(broken):
        rec = ClipRecord(item_id=f"broken_{kind}", path=str(folder / f"broken_{kind}.mp4"),
                         label=str(labels[j % len(labels)]), label_id=j % len(labels),
                         seed=seed + j, pattern="shapes", seconds=seconds, fps=fps,
                         audio=kind != "no-audio", broken=kind)
        if old.get(rec.item_id) != {**asdict(rec), "size": list(size),
                                    "sample_rate": sample_rate} or not Path(rec.path).exists():
            make_broken_clip(rec.path, kind, seed=rec.seed)
        records.append(rec)
    rows = [{**asdict(r), "size": list(size), "sample_rate": sample_rate} for r in records]
    mj.write_text(json.dumps({"labels": list(map(str, labels)), "clips": rows}, indent=2))
    pd.DataFrame([asdict(r) for r in records]).to_csv(folder / "manifest.csv", index=False)
    return records


def read_clip_set(folder: str | Path) -> list[ClipRecord]:
    """The records of a clip set written by :func:`make_clip_set`."""
    mj = Path(folder) / "manifest.json"
    if not mj.exists():
        raise FileNotFoundError(f"{mj}: no clip-set manifest (run make_clip_set first)")
    fields = set(ClipRecord.__dataclass_fields__)
    return [ClipRecord(**{k: v for k, v in r.items() if k in fields})
            for r in json.loads(mj.read_text())["clips"]]
