"""Notebook 03 runs headless on a handful of items and glues the expected numbers."""
from __future__ import annotations

import json

from mir_core.notebooks import run_notebook
from mir_core.records import Recorder


def test_notebook_03_runs(data_root, tmp_path):
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    executed = run_notebook("03", {"n_items": 8, "n_clips": 3, "n_frames": 4, "token_level": True,
                                   "data_root": str(data_root), "cache_dir": str(cache)},
                            output_dir=out)
    assert executed.exists()
    rec = Recorder.read(out / "03_feature_extraction")

    shapes = rec["text_shapes"]
    assert shapes["train/text/mean"][0] == 8 and shapes["train/text/mean"][2] == 384
    assert shapes["dev/A/tokens"] == [8, 50, 384] and shapes["test/I/mask"] == [8, 50]
    assert rec["n_clips"] == 4                                       # 3 + one broken

    video = rec["video_summary"]
    assert video["shape"] == [4, 180, 1280]
    assert (video["n_ok"], video["n_failed"]) == (3, 1) and video["computed"]
    assert rec["video_reload"]["computed"] is False                  # second call: the store
    assert rec["video_errors"][0]["item_id"] == "broken_corrupt"
    assert rec["video_errors"][0]["error_class"] == "CorruptFileError"

    audio = rec["audio_summary"]
    assert audio["shape"] == [4, 400, 384] and audio["n_failed"] == 1
    assert {e["modality"] for e in rec["errors"]} == {"video", "audio"}
    assert str(cache) in rec["feature_store"]

    manifest = json.loads((out / "03_feature_extraction" / "video_manifest.json").read_text())
    assert [i["ok"] for i in manifest["items"]] == [True, True, True, False]
    assert (out / "03_feature_extraction" / "clips" / "manifest.csv").exists()


def test_notebook_03_fills_the_store_with_what_training_reads(data_root, tmp_path, monkeypatch):
    """The text features 03 encodes are the ones the `cpu` preset trains on (same lengths,
    precision and items): building 04's inputs afterwards loads them and encodes nothing."""
    cache = tmp_path / "cache"
    run_notebook("03", {"n_items": 8, "modalities": ["text"], "data_root": str(data_root),
                        "cache_dir": str(cache)}, output_dir=tmp_path / "out")
    monkeypatch.setenv("MIR_CACHE_DIR", str(cache))
    from mir_core.data import load_split
    from mir_core.features import text as text_features
    from mir_core.features.store import FeatureStore
    from mir_core.models import get_method
    from mir_core.training import preset
    from mir_core.training.inputs import build_inputs

    def no_encoding(*a, **k):
        raise AssertionError("training encoded again: 03's store entries were not used")

    monkeypatch.setattr(text_features, "load_text_encoder", no_encoding)
    splits = {s: load_split("MIntRec2.0", s, data_root).subset(8, seed=0)
              for s in ("train", "dev", "test")}
    cfg = preset("MIntRec2.0", "cpu")
    m = get_method("lgsrr")
    data = build_inputs(splits, cfg, m.sources, m.uses_ranks, "lgsrr",
                        store=FeatureStore(cache / "features"))
    assert data.splits["train"].tensors["feats"].shape[:2] == (8, 4)
