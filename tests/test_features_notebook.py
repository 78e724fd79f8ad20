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
