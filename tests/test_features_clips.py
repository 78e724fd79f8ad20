"""Clip maker round trip, frame sampling, decoding and padding."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mir_core.features.audio import read_audio
from mir_core.features.clips import (BROKEN_KINDS, make_broken_clip, make_clip, make_clip_set,
                                     probe_clip, read_clip_set, render_frames)
from mir_core.features.store import pad_sequences
from mir_core.features.video import read_frames, sample_frame_indices, video_info


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clips") / "a.mp4", seconds=2.0, fps=10, seed=1)


def test_make_clip_round_trip(clip):
    import decord

    vr = decord.VideoReader(str(clip))
    assert len(vr) == 20
    assert vr.get_avg_fps() == pytest.approx(10.0)
    assert vr[0].shape == (112, 112, 3)
    info = video_info(clip)
    assert info["frames"] == 20 and info["seconds"] == pytest.approx(2.0)
    wave = read_audio(clip)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 32000) <= 0.05 * 32000                    # 2 s at 16 kHz, +-5%
    assert 0.05 < np.abs(wave).max() <= 1.0
    probe = probe_clip(clip)
    assert probe.video_streams == 1 and probe.audio_streams == 1


def test_make_clip_other_settings(tmp_path):
    p = make_clip(tmp_path / "b.mp4", seconds=1.5, fps=8, size=(64, 96), sample_rate=8000,
                  audio=False, seed=2, pattern="bars")
    frames = read_frames(p, n=None, mode="fps", fps=8)
    assert frames.shape == (12, 64, 96, 3)
    assert probe_clip(p).audio_streams == 0


def test_frames_change_over_time_and_seed():
    a = render_frames(10, (64, 64), seed=0).astype(int)
    b = render_frames(10, (64, 64), seed=1).astype(int)
    assert np.abs(a[0] - a[-1]).mean() > 5          # moving shapes / colour drift
    assert np.abs(a - b).mean() > 5                 # the seed changes the clip
    np.testing.assert_array_equal(a, render_frames(10, (64, 64), seed=0))   # deterministic


@pytest.mark.parametrize("kw", [{"size": (63, 64)}, {"fps": 0}, {"seconds": 0.0},
                                {"pattern": "nope"}])
def test_make_clip_rejects_bad_settings(tmp_path, kw):
    with pytest.raises(ValueError):
        make_clip(tmp_path / "x.mp4", **kw)


def test_make_clip_set_and_manifest(tmp_path):
    recs = make_clip_set(tmp_path, 5, ["Greet", "Thank"], seconds=1.0, broken=["corrupt"])
    assert [r.item_id for r in recs] == [f"clip_{i:03d}" for i in range(5)] + ["broken_corrupt"]
    assert [r.label for r in recs[:5]] == ["Greet", "Thank", "Greet", "Thank", "Greet"]
    assert len({r.pattern for r in recs[:2]}) == 2                   # one pattern per label
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["labels"] == ["Greet", "Thank"] and len(manifest["clips"]) == 6
    assert (tmp_path / "manifest.csv").read_text().startswith("item_id,path,label")
    assert read_clip_set(tmp_path) == recs
    mtimes = [(tmp_path / f"clip_{i:03d}.mp4").stat().st_mtime_ns for i in range(5)]
    make_clip_set(tmp_path, 5, ["Greet", "Thank"], seconds=1.0, broken=["corrupt"])
    assert mtimes == [(tmp_path / f"clip_{i:03d}.mp4").stat().st_mtime_ns for i in range(5)]


def test_broken_kinds_are_written(tmp_path):
    for kind in BROKEN_KINDS:
        assert make_broken_clip(tmp_path / f"{kind}.mp4", kind).exists()
    with pytest.raises(ValueError):
        make_broken_clip(tmp_path / "x.mp4", "unknown")


# --------------------------------------------------------------------------- sampling
def test_uniform_indices():
    np.testing.assert_array_equal(sample_frame_indices(20, 4), [2, 7, 12, 17])
    np.testing.assert_array_equal(sample_frame_indices(20, 1), [10])
    idx = sample_frame_indices(300, 180)
    assert len(idx) == 180 and (np.diff(idx) > 0).all() and idx[-1] < 300


def test_uniform_more_frames_requested_than_exist():
    np.testing.assert_array_equal(sample_frame_indices(5, 8), np.arange(5))
    rep = sample_frame_indices(5, 8, allow_repeat=True)
    assert len(rep) == 8 and (np.diff(rep) >= 0).all() and set(rep) == set(range(5))


def test_fps_indices():
    idx = sample_frame_indices(300, None, "fps", fps=5, native_fps=30)     # 10 s at 30 fps
    np.testing.assert_array_equal(idx[:4], [0, 6, 12, 18])
    assert len(idx) == 50
    capped = sample_frame_indices(300, 16, "fps", fps=5, native_fps=30)
    assert len(capped) == 16 and set(capped) <= set(idx)
    np.testing.assert_array_equal(sample_frame_indices(7, None, "fps", fps=60, native_fps=30),
                                  np.arange(7))                           # above the native rate


def test_sampling_edge_cases():
    assert len(sample_frame_indices(0, 16)) == 0
    with pytest.raises(ValueError):
        sample_frame_indices(10, 4, mode="random")
    with pytest.raises(ValueError):
        sample_frame_indices(10, 4, mode="fps", fps=5)                    # native fps unknown
    with pytest.raises(ValueError):
        sample_frame_indices(10, 0)


def test_read_frames_counts_and_resize(clip):
    assert read_frames(clip, n=8).shape == (8, 112, 112, 3)
    assert read_frames(clip, n=50).shape == (20, 112, 112, 3)             # n > frames
    assert read_frames(clip, n=None, mode="fps", fps=5).shape[0] == 10
    assert read_frames(clip, n=4, size=(64, 48)).shape == (4, 64, 48, 3)


# --------------------------------------------------------------------------- padding
def test_pad_sequences_and_masks():
    seqs = [np.ones((3, 4)), None, np.arange(20, dtype=float).reshape(5, 4), np.zeros((0, 4))]
    x, m, n = pad_sequences(seqs, max_len=4, dtype=np.float32)
    assert x.shape == (4, 4, 4) and m.shape == (4, 4) and m.dtype == bool
    np.testing.assert_array_equal(n, [3, 0, 4, 0])
    np.testing.assert_array_equal(m.sum(1), n)
    assert (x[1] == 0).all() and not m[1].any()                       # failed item
    assert (x[0, 3:] == 0).all()                                      # padding is zero
    np.testing.assert_array_equal(x[2], seqs[2][:4])                  # truncate keeps the head
    xr, mr, nr = pad_sequences(seqs, max_len=4, dtype=np.float32, fit="resample")
    assert nr[2] == 4
    assert xr[2].mean() == pytest.approx(seqs[2].mean(), rel=0.2)     # whole span kept


def test_pad_sequences_errors():
    with pytest.raises(ValueError):
        pad_sequences([np.ones((2, 3)), np.ones((2, 4))], 4)
    with pytest.raises(ValueError):
        pad_sequences([np.ones((2, 3))], 4, fit="crop")
    x, m, _ = pad_sequences([None, None], 3, dim=5)
    assert x.shape == (2, 3, 5) and not m.any()
