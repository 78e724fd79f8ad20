"""Real forward passes of the offline encoders on generated clips / real text."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mir_core.features.audio import read_audio
from mir_core.features.clips import make_clip
from mir_core.features.extract import extract_clip_features
from mir_core.features.store import FeatureStore
from mir_core.features.video import VideoSettings, read_frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("enc")
    return [make_clip(d / f"c{i}.mp4", seconds=2.0, fps=10, seed=i, pattern=p)
            for i, p in enumerate(["shapes", "pulse"])]


@pytest.fixture(scope="module")
def effnet():
    from mir_core.modelpack import load_video_encoder
    return load_video_encoder("efficientnet-lite0")


@pytest.fixture(scope="module")
def whisper():
    from mir_core.modelpack import load_audio_encoder
    return load_audio_encoder("whisper-tiny.en")


def test_efficientnet_lite0_forward(clips, effnet):
    a = effnet.encode(read_frames(clips[0], n=4))
    b = effnet.encode(read_frames(clips[1], n=4))
    assert a.shape == (4, 1280) and a.dtype == np.float32
    assert np.isfinite(a).all() and a.min() >= 0 and a.max() <= 6.0 + 1e-4   # ReLU6 pooled
    assert np.abs(a - b).mean() > 1e-3                       # different clips, different features
    assert np.abs(a[0] - a[-1]).mean() > 1e-4                # frames differ over time


def test_efficientnet_recognises_a_photo(effnet):
    """The weights are ImageNet-trained: the classifier head on sklearn's sample photo of a
    Chinese temple must rank a building class first (bell cote / palace / monastery ...)."""
    import os

    import av
    import sklearn
    import torch

    path = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", "china.jpg")
    with av.open(path) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24")[None]      # (1, H, W, 3)
    with torch.inference_mode():
        x = effnet.preprocess(img)
        fmap = effnet.model.extract_features(x)
        logits = effnet.model._fc(fmap.mean(dim=(2, 3)))
    buildings = {442, 483, 497, 538, 663, 668, 698, 832}   # bell cote, castle, church, dome,
    assert int(logits.argmax()) in buildings                # monastery, mosque, palace, stupa


def test_whisper_tiny_forward(clips, whisper):
    wave = read_audio(clips[0])
    feats = whisper.encode(wave)
    assert feats.shape == (math.ceil(len(wave) / 16000 * 50), 384)
    assert np.isfinite(feats).all()
    long = whisper.encode_batch([np.zeros(16000 * 31, np.float32), wave[:8000]])
    assert [f.shape[0] for f in long] == [1550, 25]           # two windows; 0.5 s


def test_real_extraction_shapes(clips, effnet, whisper, tmp_path):
    store = FeatureStore(tmp_path)
    v = extract_clip_features(clips, "video", VideoSettings(n_frames=4), store=store,
                              encoder=effnet, progress=False, log=lambda *_: None)
    assert v.features.shape == (2, 180, 1280) and v.mask.sum() == 8
    a = extract_clip_features(clips, "audio", store=store, encoder=whisper, progress=False,
                              log=lambda *_: None)
    assert a.features.shape == (2, 400, 384) and a.ok.all()
    assert abs(int(a.lengths[0]) - 100) <= 5                  # 2 s at 50 frames/s


def test_token_features(data_root, tmp_path):
    from mir_core.data import load_split
    from mir_core.features.tokens import split_token_features

    sp = load_split("MIntRec2.0", "dev", data_root).subset(6, seed=0)
    store = FeatureStore(tmp_path)
    out = split_token_features(sp, "minilm-l6", ("text", "A"), store=store, progress=False)
    t = out["text"]
    assert t["tokens"].shape == (6, 50, 384) and t["mask"].shape == (6, 50)
    assert t["pooled"].shape == (6, 384) and t["tokens"].dtype == np.float16
    np.testing.assert_array_equal(t["mask"].sum(1), t["length"])
    assert (t["input_ids"][:, 0] == 101).all()                  # [CLS]
    assert (t["tokens"][~t["mask"]] == 0).all()                 # padding is zero
    m = t["mask"][..., None]
    mean = (t["tokens"].astype(np.float32) * m).sum(1) / m.sum(1)
    np.testing.assert_allclose(mean, t["pooled"], atol=2e-2)
    assert out["A"]["length"].mean() > t["length"].mean()       # descriptions are longer
    sub = split_token_features(sp.subset(3, seed=1), "minilm-l6", ("text",), store=store,
                               progress=False)
    assert sub["text"]["tokens"].shape == (3, 50, 384)           # served from the cache
