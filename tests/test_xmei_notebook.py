"""Notebook 07 (XMEI-Qwen) headless with papermill on a handful of IEMOCAP-DA samples and
SmolLM2-135M: the run folder, the recorded metrics, the answers and the LQ-Former map."""
from __future__ import annotations

import json
import os
from pathlib import Path

from mir_core.demo import QUICK
from mir_core.notebooks import run_notebook
from mir_core.records import Recorder

REPO = Path(__file__).resolve().parent.parent


def test_notebook_07_xmei_qwen(data_root, tmp_path):
    converted = REPO / "data" / "cache" / "models" / "smollm2-135m-instruct"
    params = {**QUICK["07"], "data_root": str(data_root), "threads": 1,
              "runs_dir": str(tmp_path / "runs")}
    if (converted / "config.json").exists():          # skip the GGUF conversion (~40 s)
        params["llm"] = str(converted)
    run_notebook("07", params, output_dir=tmp_path)
    rec = Recorder.read(tmp_path / "07_xmei_qwen")
    assert rec["n_train"] == 8 and rec["n_test"] == 3
    assert rec["inputs"].startswith("text + captions only")
    s = rec["summary"]
    assert set(s["intent"]) == {"ACC", "F1", "P", "R", "WF1", "WP"}
    assert 0.0 <= s["unparsed_share"]["mean"] <= 100.0
    assert sum(rec["unknown_emotions"]["test_full"].values()) == 456
    systems = [r["system"] for r in rec["results_table"]]
    assert any(x.startswith("XMEI-Qwen") for x in systems)
    assert "paper Table 4: Qwen2-VL (SFT)" in systems
    assert len(rec["answers"]) == 3 and {"answer", "parsed"} <= set(rec["answers"][0])
    folder = Path(rec["run_folder"])
    assert (folder / "seed_0" / "predictions.csv").exists()
    m = json.loads((folder / "seed_0" / "metrics.json").read_text())
    assert m["n"] == 3 and m["train"]["steps"] == 2
    assert rec["clip_attention_shape"][1:] == [32, 8] or rec["clip_attention_shape"][1] == 32
    assert rec["clip_attention_padded_max"] == 0.0
    assert rec["clip_summary"]["inputs"] == "text + captions + LQ-Former features"
