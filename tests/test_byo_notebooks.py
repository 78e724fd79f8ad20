"""Notebooks 02 and 03 on a dataset of one's own with text and labels only (no released
descriptions, no LLM ranks, no published checksums, no Table 7 in the paper): they finish,
run what needs only the utterances, and say in a sentence why each other part is skipped
(reliability issue, bring-your-own data; notebook 01 is in test_data_faults.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from mir_core.demo import QUICK
from mir_core.notebooks import run_notebook
from mir_core.records import Recorder
from test_data_faults import _byo_dataset

NAME = "ByoIntents"
fault = pytest.mark.fault


@pytest.fixture(scope="module")
def byo_root(tmp_path_factory) -> Path:
    """A data root holding only a dataset of one's own: <root>/ByoIntents/dataset.json and
    train/dev/test.tsv (MIntRec v1 columns, 12 rows each, 4 labels, no leaks)."""
    root = tmp_path_factory.mktemp("byo") / "data"
    _byo_dataset(root, NAME)
    return root


def _run(nb: str, root: Path, tmp_path: Path, **extra) -> tuple[dict, str, Path]:
    """Run notebook ``nb`` with the QUICK parameters on the BYO dataset; its records and
    the text of every code-cell output."""
    params = {**QUICK[nb], "dataset": NAME, "data_root": str(root), **extra}
    dst = run_notebook(nb, params, output_dir=tmp_path)
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith(nb) and p.is_dir())
    executed = nbformat.read(str(dst), as_version=4)
    text = "\n".join(str(o.get("text", "")) + json.dumps(o.get("data", {}))
                     for c in executed.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
    assert "Traceback" not in text
    return Recorder.read(folder), text, folder


@fault(area="data", case="notebook 02 on a bring-your-own dataset (text + labels only)",
       before="crashed on missing descriptions/ranks", after="runs; skipped parts say why")
def test_notebook_02_on_byo_dataset(byo_root, tmp_path):
    # QUICK (steps 1 and 3, 3 samples), shorter step-2 replies: step 2 runs here in addition
    tokens = {**QUICK["02"]["max_new_tokens"], "describe": 8}
    rec, text, folder = _run("02", byo_root, tmp_path, max_new_tokens=tokens,
                             cache_path=str(tmp_path / "replies.jsonl"))
    assert rec["capabilities"] == {"dataset": NAME, "descriptions": False, "ranks": False,
                                   "paper_table7": False}

    # skipped, each with its sentence (recorded and shown)
    skipped = rec["skipped"]
    assert set(skipped) == {"table7", "agreement"}
    assert skipped["table7"].startswith(f"the paper has no Table 7 for {NAME}")
    assert rec["table7"] == {} and rec["table7_equal"] is None
    assert f"{NAME} has no released LLM ranks" in skipped["agreement"]
    assert "with GPT-3.5" in skipped["agreement"] and "cannot be computed" in skipped["agreement"]
    assert "agreement_model" not in rec and "agreement_trivial" not in rec
    for why in skipped.values():
        assert why in text
    # Table 7 did not fetch the LGSRR release into the user's data root
    assert not (byo_root / "data_text").exists()

    # what runs instead: step 1 on the utterances alone, step 2 before step 3
    fallbacks = rec["fallbacks"]
    assert set(fallbacks) == {"step 1 background", "step 2"}
    assert all(f"{NAME} has no released descriptions" in why for why in fallbacks.values())
    assert "from the utterances alone" in fallbacks["step 2"]
    for why in fallbacks.values():
        assert why in text

    # the parts that ran give meaningful values
    stats = rec["run_stats"]
    assert rec["cues"]["rounds"] == 1 and stats["cues"]["items"] == 1
    assert stats["cues"]["completion_tokens"] > 0
    assert rec["n_items"] == 3
    d = rec["descriptions"]
    assert d["n"] == 3 and d["text_only"] is True and "utterance alone" in d["note"]
    assert stats["describe"]["items"] == 9 and stats["describe"]["queried"] == 9
    assert 0 < d["n_ok"] <= 9
    r = rec["ranks_summary"]
    assert r["n"] == 3 and stats["rank"]["items"] == 3 and 0.0 <= r["coverage"] <= 1.0
    assert sum(r["first_choice"].values()) == r["n_valid"] == sum(map(sum, r["counts"])) // 3
    ranks = (folder / "ranks.tsv").read_text().splitlines()
    assert ranks[0].startswith("key\tRank_First") and len(ranks) == 1 + r["n_valid"]
    assert ranks[1].split("\t")[0].startswith("S01_")      # keys of the user's train file
    assert "label_descriptions" not in rec                   # QUICK: label_limit=0


@fault(area="data", case="notebook 03 on a bring-your-own dataset (text + labels only)",
       before="crashed on missing descriptions/ranks", after="runs; skipped parts say why")
def test_notebook_03_on_byo_dataset(byo_root, tmp_path):
    rec, text, folder = _run("03", byo_root, tmp_path, cache_dir=str(tmp_path / "cache"))

    assert set(rec["skipped"]) == {"description features"}
    why = rec["skipped"]["description features"]
    assert why.startswith(f"{NAME} has no released descriptions: only its utterances (T)")
    assert "A, E and I" in why and why in text

    # text features of the utterances, all three splits, pooled and token-level (QUICK)
    shapes = rec["text_shapes"]
    assert {k.split("/")[1] for k in shapes} == {"text"}
    for split in ("train", "dev", "test"):
        assert shapes[f"{split}/text/mean"][0] == 8 and shapes[f"{split}/text/mean"][2] == 384
        assert shapes[f"{split}/text/tokens"] == [8, 50, 384]
        assert shapes[f"{split}/text/mask"] == [8, 50]
    assert set(rec["token_length_mean"]) == {"text"} and rec["token_length_mean"]["text"] > 2
    features = Path(rec["feature_store"]) / NAME
    assert (features / "train").is_dir() and (features / "test").is_dir()

    # video and audio run on the demo clips (labelled with the dataset's labels) as always
    assert rec["n_clips"] == 4
    assert (rec["video_summary"]["n_ok"], rec["video_summary"]["n_failed"]) == (3, 1)
    assert rec["audio_summary"]["shape"] == [4, 400, 384]
    clips = (folder / "clips" / "manifest.csv").read_text()
    assert "Complain" in clips


@fault(area="data", case="notebook 04 on a bring-your-own dataset (text + labels only)",
       before="crashed at the paper-comparison table; --method lgsrr failed after creating "
              "a run folder, without saying what to do",
       after="text-only trains; LGSRR skipped with a sentence; no paper rows, said so")
def test_notebook_04_on_byo_dataset(byo_root, tmp_path):
    rec, text, folder = _run("04", byo_root, tmp_path)
    assert list(rec["summaries"]) == ["text"]
    assert 0.0 <= rec["summaries"]["text"]["test"]["ACC"]["mean"] <= 100.0
    assert "lgsrr** is skipped: it reads the three descriptions" in text
    assert f"The paper reports no numbers for {NAME}" in text
    assert not any(r["system"].startswith("paper:") for r in rec["results_table"])
    runs = Path(os.environ["MIR_OUTPUT_DIR"]) / "runs" / NAME    # the shared run root
    assert (runs / "text-cpu-epochs=2-n400-e200" / "summary.json").exists()
    assert not (runs / "lgsrr-cpu-epochs=2-n400-e200").exists()
