"""Batch extraction: per-item error manifest, feature-store reuse, recompute on change,
resume after a crash mid-way. Fast stand-in encoders; real decoding with decord."""
from __future__ import annotations

import numpy as np
import pytest

from mir_core.features.audio import AudioSettings
from mir_core.features.clips import make_clip, make_clip_set
from mir_core.features.extract import ClipItem, extract_clip_features, file_checksum
from mir_core.features.store import FeatureStore
from mir_core.features.video import VideoSettings
from mir_core.modelpack import MissingWeightsError


class FakeFrameEncoder:
    """(T, H, W, 3) -> (T, 6): per-channel mean and std; counts frames it saw."""

    name, dim = "fake-frames", 6

    def __init__(self, fail_on_call: int | None = None, exc: BaseException | None = None):
        self.calls = 0
        self.frames = 0
        self.fail_on_call, self.exc = fail_on_call, exc

    def encode(self, frames):
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise self.exc
        self.frames += len(frames)
        f = frames.astype(np.float32) / 255.0
        return np.concatenate([f.mean((1, 2)), f.std((1, 2))], axis=1)


class FakeAudioEncoder:
    """(S,) -> (ceil(S / 320), 4) summary frames (50 per second at 16 kHz)."""

    name, dim = "fake-audio", 4

    def __init__(self):
        self.seen = 0

    def encode_batch(self, waves):
        self.seen += len(waves)
        out = []
        for w in waves:
            t = int(np.ceil(len(w) / 320))
            x = np.pad(w, (0, t * 320 - len(w))).reshape(t, 320)
            out.append(np.stack([x.mean(1), x.std(1), x.min(1), x.max(1)], axis=1))
        return out


class Crash(BaseException):
    """Stands for a kill mid-run (not an item's fault, so it is not recorded per item)."""


VSET = VideoSettings(encoder="fake-frames", n_frames=4, max_len=6)
ASET = AudioSettings(encoder="fake-audio", max_len=120)


@pytest.fixture
def clip_set(tmp_path):
    recs = make_clip_set(tmp_path / "clips", 4, ["Greet", "Thank"], seconds=1.0,
                         broken=["corrupt", "no-audio", "zero-frames", "truncated"])
    return list(recs) + [ClipItem("ghost", str(tmp_path / "clips" / "ghost.mp4"))]


def test_video_error_manifest(clip_set, tmp_path):
    res = extract_clip_features(clip_set, "video", VSET, store=FeatureStore(tmp_path / "fs"),
                                encoder=FakeFrameEncoder(), progress=False, log=lambda *_: None)
    m = res.manifest.set_index("item_id")
    assert m.loc[[f"clip_{i:03d}" for i in range(4)], "ok"].all()
    assert m.loc["broken_no-audio", "ok"]                     # video is fine without audio
    expected = {"broken_corrupt": "CorruptFileError", "broken_zero-frames": "ZeroFramesError",
                "broken_truncated": "CorruptFileError", "ghost": "MissingFileError"}
    assert dict(zip(res.errors.item_id, res.errors.error_class)) == expected
    for item, row in m[~m.ok].iterrows():
        assert row.path in row.error_message                  # the message names the file
    bad = ~res.ok
    assert (res.features[bad] == 0).all() and not res.mask[bad].any()   # zero, fully masked
    assert res.features.shape == (9, 6, 6) and res.features.dtype == np.float16
    np.testing.assert_array_equal(res.mask[res.ok].sum(1), 4)
    assert m.loc["clip_000", "checksum"].startswith("sha256:")
    assert m.loc["ghost", "checksum"] == "missing"
    csv = res.write_manifest(tmp_path / "out")
    assert csv.exists() and "ZeroFramesError" in csv.read_text()


def test_audio_error_manifest(clip_set, tmp_path):
    res = extract_clip_features(clip_set, "audio", ASET, store=FeatureStore(tmp_path / "fs"),
                                encoder=FakeAudioEncoder(), progress=False, log=lambda *_: None)
    errors = dict(zip(res.errors.item_id, res.errors.error_class))
    assert errors == {"broken_corrupt": "CorruptFileError", "broken_no-audio": "NoAudioTrackError",
                      "broken_truncated": "CorruptFileError", "ghost": "MissingFileError"}
    lengths = dict(zip(res.manifest.item_id, res.manifest.length))
    assert abs(lengths["clip_000"] - 50) <= 3                     # 1 s -> ~50 frames
    assert lengths["broken_zero-frames"] > 0                      # audio-only file: audio ok


def test_store_reuse_and_recompute_on_change(tmp_path):
    clips = make_clip_set(tmp_path / "clips", 4, ["A", "B"], seconds=1.0)
    store = FeatureStore(tmp_path / "fs")
    kw = dict(store=store, progress=False, log=lambda *_: None, batch_size=2)
    enc = FakeFrameEncoder()
    first = extract_clip_features(clips, "video", VSET, encoder=enc, **kw)
    assert first.computed and enc.frames == 16
    again = extract_clip_features(clips, "video", VSET, encoder=enc, **kw)
    assert not again.computed and enc.frames == 16               # loaded, nothing encoded
    np.testing.assert_array_equal(first.features, again.features)

    make_clip(clips[1].path, seconds=1.0, seed=99)                # one file changes
    changed = extract_clip_features(clips, "video", VSET, encoder=enc, **kw)
    assert changed.computed and enc.frames == 20                  # only that clip re-encoded
    assert changed.entry.manifest["rows_reused"] == 3
    assert not np.array_equal(changed.features[1], first.features[1])
    np.testing.assert_array_equal(changed.features[[0, 2, 3]], first.features[[0, 2, 3]])

    other = VideoSettings(encoder="fake-frames", n_frames=2, max_len=6)   # settings change
    extract_clip_features(clips, "video", other, encoder=enc, **kw)
    assert enc.frames == 28                                       # all 4 clips, 2 frames each

    sub = extract_clip_features(clips[:2], "video", other, encoder=enc, **kw)
    assert not sub.computed and sub.features.shape[0] == 2        # a subset: served, no work


def test_stat_checksum_mode(tmp_path):
    p = make_clip(tmp_path / "c.mp4", seconds=1.0)
    assert file_checksum(p, "stat").startswith("stat:")
    assert file_checksum(p).startswith("sha256:")
    with pytest.raises(ValueError):
        file_checksum(p, "md5")


def test_resume_after_a_crash_mid_way(tmp_path):
    clips = make_clip_set(tmp_path / "clips", 6, ["A", "B"], seconds=1.0)
    store = FeatureStore(tmp_path / "fs")
    kw = dict(store=store, progress=False, log=lambda *_: None, batch_size=2)
    crashing = FakeFrameEncoder(fail_on_call=2, exc=Crash())
    with pytest.raises(Crash):
        extract_clip_features(clips, "video", VSET, encoder=crashing, **kw)
    assert crashing.frames == 8                                   # chunk 1 (2 clips) finished
    enc = FakeFrameEncoder()
    res = extract_clip_features(clips, "video", VSET, encoder=enc, **kw)
    assert enc.frames == 16                                       # chunks 2 and 3 only
    assert res.ok.all() and res.features.shape == (6, 6, 6)
    ref = extract_clip_features(clips, "video", VSET, encoder=FakeFrameEncoder(),
                                store=FeatureStore(tmp_path / "fresh"), progress=False,
                                log=lambda *_: None, batch_size=2)
    np.testing.assert_array_equal(res.features, ref.features)


def test_encoder_failure_is_isolated_per_item(tmp_path):
    clips = make_clip_set(tmp_path / "clips", 3, ["A"], seconds=1.0)

    class Picky(FakeFrameEncoder):
        def encode(self, frames):
            if len(frames) > 4:                       # the batched call, and nothing else
                raise RuntimeError("batch too large")
            if frames.mean() > 200:
                raise RuntimeError("too bright")
            return super().encode(frames)

    res = extract_clip_features(clips, "video", VSET, store=FeatureStore(tmp_path / "fs"),
                                encoder=Picky(), progress=False, log=lambda *_: None)
    assert res.ok.all()                               # the batch failed, each item alone works


def test_missing_weights_stop_the_batch(tmp_path):
    clips = make_clip_set(tmp_path / "clips", 2, ["A"], seconds=1.0)

    class NoWeights(FakeFrameEncoder):
        def encode(self, frames):
            raise MissingWeightsError("no weights here")

    with pytest.raises(MissingWeightsError):
        extract_clip_features(clips, "video", VSET, store=FeatureStore(tmp_path / "fs"),
                              encoder=NoWeights(), progress=False, log=lambda *_: None)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        extract_clip_features([], "text", None)
    with pytest.raises(TypeError):
        extract_clip_features([], "video", ASET)
    with pytest.raises(ValueError):
        extract_clip_features([("a", "x.mp4"), ("a", "y.mp4")], "video", VSET,
                              store=FeatureStore(tmp_path))


# --------------------------------------------------------------------------- store itself
def _counting_compute(calls):
    def compute(batch):
        calls.append(list(batch))
        return {"x": np.array([[len(t), sum(map(ord, t))] for t in batch], dtype=np.float32)}
    return compute


def test_store_subset_and_partial_reuse(tmp_path):
    store, calls = FeatureStore(tmp_path), []
    kw = dict(dataset="D", split="train", modality="m", encoder="e", settings={"k": 1},
              compute=_counting_compute(calls), chunk_size=3, progress=False)
    full = [f"item{i}" for i in range(10)]
    a = store.get_or_compute(inputs=full, **kw)
    assert len(calls) == 4
    sub = store.get_or_compute_entry(inputs=full[2:7], **kw)
    assert len(calls) == 4 and sub.rows is not None and sub.n == 5
    np.testing.assert_array_equal(sub.load()["x"], a["x"][2:7])
    mixed = store.get_or_compute(inputs=full[:4] + ["new"], **kw)
    assert calls[-1] == ["new"]                                   # only the new item computed
    np.testing.assert_array_equal(mixed["x"][:4], a["x"][:4])
    assert store.get_or_compute(inputs=full, **kw)["x"].shape == (10, 2)
    assert len(calls) == 5                                        # the full split: exact hit


def test_store_resume_after_exception(tmp_path):
    store, calls = FeatureStore(tmp_path), []
    inner = _counting_compute(calls)

    def flaky(batch):
        if len(calls) == 2:
            raise Crash()
        return inner(batch)

    kw = dict(dataset="D", split="s", modality="m", encoder="e", settings={},
              chunk_size=2, progress=False, inputs=[f"t{i}" for i in range(7)])
    with pytest.raises(Crash):
        store.get_or_compute(compute=flaky, **kw)
    assert len(calls) == 2
    out = store.get_or_compute(compute=inner, **kw)
    assert len(calls) == 4 and out["x"].shape == (7, 2)          # chunks 3 and 4 only


def test_store_backfills_digests_of_older_entries(tmp_path):
    """An entry written before per-item digests existed becomes a row donor on its next hit."""
    import json

    store, calls = FeatureStore(tmp_path), []
    kw = dict(dataset="D", split="s", modality="m", encoder="e", settings={},
              compute=_counting_compute(calls), progress=False)
    full = [f"t{i}" for i in range(6)]
    entry = store.get_or_compute_entry(inputs=full, **kw)
    (entry.path / "item_digests.npy").unlink()                    # as an older entry
    mf = entry.path / "manifest.json"
    manifest = json.loads(mf.read_text())
    del manifest["item_digests"]
    mf.write_text(json.dumps(manifest))
    assert store.get_or_compute_entry(inputs=full[:3], **kw).rows is None   # not a donor yet
    assert len(calls) == 2
    store.get_or_compute(inputs=full, **kw)                       # exact hit: digests added
    assert len(calls) == 2 and (entry.path / "item_digests.npy").exists()
    sub = store.get_or_compute_entry(inputs=full[1:4], **kw)
    assert len(calls) == 2 and sub.path == entry.path             # served from the full entry
