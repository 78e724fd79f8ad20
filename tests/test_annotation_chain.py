"""The annotation chain with scripted backends: cache resume after an injected crash,
truncated cache lines, step-3 refusal on non-train splits, retries and recorded failures,
the released backend, agreement math and Table 7 on the real release."""
import json

import numpy as np
import pytest
from scipy.stats import kendalltau

from mir_core.annotation import (AnnotationChain, Backend, CacheError, ChainConfig, Reply,
                                 ReplyCache, Scores, StepError, agreement, agreement_table,
                                 kendall_tau, loglik_orders, make_backend, paper_table7, table7,
                                 table7_check, trivial_orders)
from mir_core.annotation.prompts import ALL_ORDERS, RANK_RETRY_LINE, rank_answer


@pytest.fixture(scope="module")
def root(data_root):
    """The real release files (the session's ``data_root`` fixture of conftest.py)."""
    return data_root


class ScriptedBackend(Backend):
    """Answers from a function of the prompt; counts calls; can crash after k calls."""

    kind = "scripted"
    model = "scripted-1"
    supports_loglik = True

    def __init__(self, answer=None, crash_after=None, scores=None):
        self.answer = answer or (lambda msgs: "Interaction with Others > Speakers' Actions > "
                                              "Facial Expressions")
        self.crash_after = crash_after
        self.scores = scores
        self.calls = []

    def generate(self, messages, images=None, max_new_tokens=128):
        if self.crash_after is not None and len(self.calls) >= self.crash_after:
            raise RuntimeError("injected crash")
        self.calls.append([dict(m) for m in messages])
        return Reply(self.answer(messages), prompt_tokens=100, completion_tokens=10,
                     latency_s=0.01)

    def score(self, messages, candidates):
        self.calls.append([dict(m) for m in messages])
        total = self.scores(messages, candidates)
        return Scores(total, [t / 10 for t in total], [10] * len(candidates), 100, 0.01)


def _sample_ids(cache_path):
    lines = [json.loads(x) for x in cache_path.read_text().splitlines() if x.strip()]
    return [x["sample_id"] for x in lines]


def test_resume_after_crash_loses_and_repeats_nothing(root, tmp_path):
    cache_path = tmp_path / "replies.jsonl"
    cfg = ChainConfig(sample_size=8, seed=1, data_root=root, cache_path=cache_path)
    crashing = ScriptedBackend(crash_after=3)
    with pytest.raises(RuntimeError, match="injected crash"):
        AnnotationChain(crashing, cfg, log=lambda *a: None).rank()
    done = _sample_ids(cache_path)
    assert len(done) == 3 and len(set(done)) == 3           # every finished item is on disk

    again = ScriptedBackend()
    ranks = AnnotationChain(again, cfg, log=lambda *a: None).rank()
    asked = {m[0]["content"] for m in again.calls}
    assert len(again.calls) == 8 - 3                         # the rest only
    assert ranks.stats.cache_hits == 3 and ranks.stats.queried == 5
    assert sorted(_sample_ids(cache_path)) == sorted(ranks.keys)   # no duplicate line
    assert (ranks.orders == np.array([2, 0, 1])).all()
    # the finished items were not re-queried: their prompts are not among the new calls
    first_prompts = AnnotationChain(crashing, cfg, log=lambda *a: None)
    sp = first_prompts.samples()
    for key in done:
        i = sp.keys.index(key)
        assert not any(sp.texts[i] in p or sp.descriptions(0)[i] in p for p in asked)

    third = ScriptedBackend()
    replay = AnnotationChain(third, cfg, log=lambda *a: None).rank()
    assert third.calls == [] and replay.stats.cache_hits == 8 and replay.stats.queried == 0
    assert replay.stats.items_per_s > 0


def test_truncated_last_line_is_dropped_and_run_resumes(root, tmp_path):
    cache_path = tmp_path / "replies.jsonl"
    cfg = ChainConfig(sample_size=4, seed=2, data_root=root, cache_path=cache_path)
    with pytest.raises(RuntimeError):
        AnnotationChain(ScriptedBackend(crash_after=2), cfg, log=lambda *a: None).rank()
    with open(cache_path, "a") as f:                       # a kill in the middle of a write
        f.write('{"step": "rank", "backend": "scripted", "mod')
    messages = []
    cache = ReplyCache(cache_path, log=messages.append)
    assert len(cache) == 2 and cache.dropped_bytes > 0 and "truncated" in messages[0]
    b = ScriptedBackend()
    ranks = AnnotationChain(b, cfg, cache=cache, log=lambda *a: None).rank()
    assert len(b.calls) == 2 and ranks.ok.all()
    assert len(_sample_ids(cache_path)) == 4


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"step": "x", "backend": "b", "model": "m", "prompt_sha256": "s", '
                 '"sample_id": "1", "raw": "r"}\nnot json\n{"step": "x"}\n')
    with pytest.raises(CacheError, match=r"c\.jsonl line 2"):
        ReplyCache(p)


def test_unparsable_reply_is_retried_then_recorded_as_failure(root, tmp_path):
    cfg = ChainConfig(sample_size=3, seed=0, data_root=root, cache_path=tmp_path / "c.jsonl",
                      max_retries=2)
    b = ScriptedBackend(answer=lambda msgs: "The speaker is happy.")
    ranks = AnnotationChain(b, cfg, log=lambda *a: None).rank()
    assert len(b.calls) == 3 * 3                            # 1 + 2 retries per item
    assert not ranks.ok.any() and (ranks.orders == -1).all()
    assert ranks.stats.failures == 3
    assert all(r == ["The speaker is happy."] * 3 for r in ranks.raw)
    assert all("no ranking format" in e for e in ranks.errors)
    # the retry shows the model its reply and asks for the format again
    retry = b.calls[1]
    assert retry[1] == {"role": "assistant", "content": "The speaker is happy."}
    assert retry[2]["content"] == RANK_RETRY_LINE
    # failures count as finished: a rerun does not query them again ...
    b2 = ScriptedBackend()
    AnnotationChain(b2, cfg, log=lambda *a: None).rank()
    assert b2.calls == []
    # ... unless asked to
    cfg.retry_failures = True
    again = AnnotationChain(b2, cfg, log=lambda *a: None).rank()
    assert len(b2.calls) == 3 and again.ok.all()


def test_second_attempt_can_succeed(root, tmp_path):
    cfg = ChainConfig(sample_size=2, seed=0, data_root=root, cache_path=tmp_path / "c.jsonl")
    b = ScriptedBackend(answer=lambda msgs: "1. Facial Expressions\n2. Speakers' Actions\n"
                        "3. Interaction with Others" if len(msgs) > 1 else "not sure")
    ranks = AnnotationChain(b, cfg, log=lambda *a: None).rank()
    assert ranks.ok.all() and (ranks.orders == [1, 0, 2]).all()
    assert ranks.stats.attempts == 4 and ranks.stats.failures == 0


def test_step3_refuses_other_splits(root, tmp_path):
    chain = AnnotationChain(ScriptedBackend(), ChainConfig(data_root=root,
                            cache_path=tmp_path / "c.jsonl"), log=lambda *a: None)
    for split in ("dev", "test"):
        with pytest.raises(StepError, match=f"refusing split '{split}'"):
            chain.rank(split=split)


def test_loglik_mode_picks_the_best_scored_order(root, tmp_path):
    target = ALL_ORDERS[4]
    def scores(msgs, cands):
        if "The intent of the video is N/A." in msgs[0]["content"]:    # content-free prompt
            return [-5.0 + 0.1 * k for k in range(len(cands))]         # prior favours the last
        return [-1.0 if c == rank_answer(target) else -3.0 for c in cands]

    b = ScriptedBackend(scores=scores)
    cfg = ChainConfig(sample_size=3, data_root=root, cache_path=tmp_path / "c.jsonl",
                      rank_mode="loglik", loglik_norm="calibrated")
    ranks = AnnotationChain(b, cfg, log=lambda *a: None).rank()
    assert (ranks.orders == target).all() and ranks.mode == "loglik"
    assert len(b.calls) == 3 + 1                            # + one content-free prompt
    assert (loglik_orders(ranks, "total") == target).all()
    assert (loglik_orders(ranks, "calibrated") == target).all()
    # without calibration the prior alone would pick the last order for a flat prompt
    assert ranks.raw[0]["null_total"] == pytest.approx([-5.0 + 0.1 * k for k in range(6)])


def test_cue_discovery_counts_normalised_cues(root, tmp_path):
    replies = iter([
        "1. **Facial Expressions**: x\n2. Tone of voice: y\n3. Body language: z",
        "1. Emotions and Facial Expressions\n2. Interaction with others\n3. Gestures\n"
        "4. Contextual understanding",
        "- Tone and Manner of Speaking\n- Facial cues and emotions\n- Scene setting",
    ])
    b = ScriptedBackend(answer=lambda msgs: next(replies))
    cfg = ChainConfig(data_root=root, cache_path=tmp_path / "c.jsonl", cue_rounds=3,
                      cue_background_n=4, top_k=3)
    res = AnnotationChain(b, cfg, log=lambda *a: None).discover_cues()
    ranked = dict(res.ranked)
    assert ranked["Emotions and Facial Expressions"] == 3
    assert ranked["Tone and Manner of Speaking"] == 2
    assert ranked["Speakers' Actions"] == 2
    assert ranked["Interaction with Others"] == 1 and ranked["contextual understanding"] == 1
    assert res.selected == ["Emotions and Facial Expressions", "Tone and Manner of Speaking",
                            "Speakers' Actions"]
    prompts = [c[0]["content"] for c in b.calls]
    assert len(set(prompts)) == 3                           # three different backgrounds
    assert all(p.count("Sample ") == 4 and "Video: " in p for p in prompts)


def test_describe_text_only_backend_says_so(root, tmp_path):
    b = ScriptedBackend(answer=lambda msgs: "I > E > A" if "rank these semantics" in
                        msgs[0]["content"] else "He waves at her.")
    cfg = ChainConfig(sample_size=2, data_root=root, cache_path=tmp_path / "c.jsonl")
    chain = AnnotationChain(b, cfg, log=lambda *a: None)
    d = chain.describe()
    assert d.text_only and "text-only" in d.note and d.table.shape == (2, 3)
    assert all("No video frames are available" in c[0]["content"] for c in b.calls)
    ranks = chain.rank(d)                                   # step 3 reads step 2's output
    assert ranks.ok.all() and (ranks.orders == [2, 1, 0]).all()
    assert all("He waves at her." in c[0]["content"] for c in b.calls[6:])


def test_released_backend_reproduces_the_release(root, tmp_path):
    cfg = ChainConfig(sample_size=5, data_root=root, cache_path=tmp_path / "c.jsonl")
    chain = AnnotationChain(make_backend("released", dataset="MIntRec2.0", data_root=root), cfg,
                            log=lambda *a: None)
    sp = chain.samples()
    ranks = chain.rank()
    assert (ranks.orders == sp.rank_order).all()
    d = chain.describe()
    assert d.table["Speakers' Actions"].tolist() == sp.descriptions("A")
    assert agreement(ranks.orders, sp.rank_order).top1 == 1.0
    path = ranks.to_tsv(tmp_path / "ranks.tsv")
    assert path.read_text().splitlines()[0] == "key\tRank_First\tRank_Second\tRank_Third"


def test_label_descriptions_three_per_label(root, tmp_path):
    b = ScriptedBackend(answer=lambda msgs: "1. Saying hello. 2. Opening a talk. 3. Being polite.")
    cfg = ChainConfig(data_root=root, cache_path=tmp_path / "c.jsonl")
    res = AnnotationChain(b, cfg, log=lambda *a: None).label_descriptions()
    # every label of every data set the data layer knows, shared labels asked once
    from mir_core.data import DATASETS
    labels = {lab for s in DATASETS.values() for lab in s.labels}
    assert set(res.descriptions) == labels and len(b.calls) == len(labels)
    assert all(len(v) == 3 for v in res.descriptions.values())
    assert "For the nouns I provide" in b.calls[0][0]["content"]
    assert b.calls[0][0]["content"].endswith("\nAcknowledge:")


def test_label_descriptions_few_shot_from_an_examples_file(root, tmp_path):
    """--label-examples: worked examples (other labels' descriptions, in the answer format)
    as earlier chat turns; the asked label is never its own example; a reply that copies
    an example is retried, then recorded as a failure, never kept."""
    examples = tmp_path / "paper.json"
    examples.write_text(json.dumps({
        "MIntRec": {"Greet": ["Saying hello.", "Opening a talk.", "Being polite."],
                    "Thank": ["Showing gratitude.", "Saying thanks.", "Valuing help."]},
        "MIntRec2.0": {"Greet": ["dup", "dup", "dup"],               # kept once (first seen)
                       "Acknowledge": ["Admitting a point.", "Noting receipt.", "Saying ok."],
                       "Doubt": ["Being unsure.", "Questioning.", "Not believing."]}}))

    def answer(msgs):
        if any(m["content"] == "Greeting:" for m in msgs):          # parrots an example
            return "1. Showing gratitude. 2. Saying thanks. 3. Valuing help."
        return "1. One thing. 2. Another thing. 3. A third thing."
    b = ScriptedBackend(answer=answer)
    cfg = ChainConfig(data_root=root, cache_path=tmp_path / "c.jsonl", label_examples=examples,
                      label_shots=2, max_retries=1)
    res = AnnotationChain(b, cfg, log=lambda *a: None).label_descriptions(
        datasets=["IEMOCAP-DA"], labels=["Acknowledge", "Greeting", "Question"])
    first = b.calls[0]                                             # Acknowledge
    assert [m["role"] for m in first] == ["user", "assistant", "user", "assistant", "user"]
    assert "For the nouns I provide" in first[0]["content"] and "Example" not in first[0]["content"]
    assert first[0]["content"].endswith("\nGreet:") and first[2]["content"] == "Thank:"
    assert first[1]["content"] == "1. Saying hello. 2. Opening a talk. 3. Being polite."
    assert first[-1]["content"] == "Acknowledge:"
    # Greeting normalises to neither Greet nor Thank, so both are its examples; it copied
    # Thank's descriptions on both attempts: a failure naming the copy
    assert "Greeting" in res.failures and "copy" in res.failures["Greeting"]
    assert len([c for c in b.calls if "Greeting:" in [m["content"] for m in c]]) == 2
    assert res.descriptions["Acknowledge"] == ["One thing.", "Another thing.", "A third thing."]
    assert set(res.descriptions) == {"Acknowledge", "Question"}
    # the asked label is not among its own examples (normalised: Acknowledge == acknowledge)
    b2 = ScriptedBackend(answer=answer)
    cfg2 = ChainConfig(data_root=root, cache_path=tmp_path / "c2.jsonl", label_examples=examples,
                       label_shots=5)
    AnnotationChain(b2, cfg2, log=lambda *a: None).label_descriptions(
        datasets=["IEMOCAP-DA"], labels=["Acknowledge"])
    asked = [m["content"].split("\n")[-1] for m in b2.calls[0] if m["role"] == "user"]
    assert asked == ["Greet:", "Thank:", "Doubt:", "Acknowledge:"]
    with pytest.raises(ValueError, match="label_shots"):
        ChainConfig(label_shots=0)


# --------------------------------------------------------------------------- agreement
def test_kendall_tau_exact_matches_scipy():
    for a in ALL_ORDERS:
        for b in ALL_ORDERS:
            ra = np.argsort(a)       # rank position of each item
            rb = np.argsort(b)
            assert kendall_tau(a, b) == pytest.approx(kendalltau(ra, rb).statistic)
    assert kendall_tau((0, 1, 2), (0, 1, 2)) == 1.0
    assert kendall_tau((0, 1, 2), (2, 1, 0)) == -1.0
    assert kendall_tau((2, 0, 1), (2, 1, 0)) == pytest.approx(1 / 3)


def test_agreement_hand_made():
    ref = np.array([[2, 0, 1], [2, 0, 1], [0, 2, 1], [1, 0, 2]])
    pred = np.array([[2, 0, 1], [2, 1, 0], [2, 0, 1], [-1, -1, -1]])
    a = agreement(pred, ref)
    assert a.n == 4 and a.n_valid == 3 and a.coverage == 0.75
    assert a.top1 == pytest.approx(2 / 3) and a.top1_all == pytest.approx(2 / 4)
    assert a.exact == pytest.approx(1 / 3)
    assert a.mean_tau == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)
    expected = np.zeros((3, 3), int)
    expected[2, 2] = 2
    expected[0, 2] = 1
    assert (a.confusion == expected).all()
    t = agreement(trivial_orders(4), ref)
    assert t.top1 == 0.5 and t.exact == 0.5 and t.coverage == 1.0
    table = agreement_table({"model": pred, "trivial": trivial_orders(4)}, ref)
    assert list(table.index) == ["model", "trivial"] and table.loc["trivial", "top1"] == 0.5
    with pytest.raises(ValueError, match="not a permutation"):
        agreement(np.array([[0, 0, 1]]), ref[:1])


def test_table7_on_hand_made_orders():
    t = table7([[2, 0, 1], [2, 1, 0], [0, 2, 1], [-1, -1, -1]])
    assert t.loc["Interactions with Others"].tolist() == [2, 1, 0]
    assert t.loc["Speakers' Actions"].tolist() == [1, 1, 1]
    assert t.to_numpy().sum() == 9


@pytest.mark.parametrize("dataset", ["MIntRec2.0", "IEMOCAP-DA"])
def test_table7_recomputed_equals_paper(dataset, root):
    check = table7_check(dataset, root)
    expected = {"MIntRec2.0": [[1476, 3814, 875], [523, 1450, 4192], [4166, 901, 1098]],
                "IEMOCAP-DA": [[1675, 3982, 933], [604, 1542, 4444], [4311, 1066, 1213]]}
    assert check.ours.to_numpy().tolist() == expected[dataset]
    assert paper_table7(dataset).to_numpy().tolist() == expected[dataset]
    assert check.equal and check.n == {"MIntRec2.0": 6165, "IEMOCAP-DA": 6590}[dataset]
    assert check.side_by_side().shape == (3, 6)


class ImageBackend(ScriptedBackend):
    """A scripted backend that takes images (records how many it got)."""

    supports_images = True

    def __init__(self, **kw):
        super().__init__(**kw)
        self.images = []

    def generate(self, messages, images=None, max_new_tokens=128):
        self.images.append(None if images is None else np.asarray(images).shape)
        r = super().generate(messages, images, max_new_tokens)
        r.images_sent = 0 if images is None else len(images)
        return r


def test_describe_sends_16_uniform_frames_of_each_clip(data_root, tmp_path):
    from mir_core.features.clips import make_clip

    cfg = ChainConfig(sample_size=3, data_root=data_root, cache_path=tmp_path / "c.jsonl",
                      video_dir=tmp_path / "clips", cue_video="frames", cue_background_n=2,
                      cue_rounds=1)
    b = ImageBackend(answer=lambda msgs: "1. Speakers' Actions")
    chain = AnnotationChain(b, cfg, log=lambda *a: None)
    keys = chain.samples().keys
    for i, key in enumerate(keys[:2]):                      # the third sample has no clip
        make_clip(tmp_path / "clips" / f"{key}.mp4", seconds=3.0, fps=10, seed=i)
    d = chain.describe()
    assert d.frames_used == {keys[0]: 16, keys[1]: 16, keys[2]: 0}
    assert not d.text_only and "2 of 3 samples had frames" in d.note
    assert b.images[:3] == [(16, 112, 112, 3)] * 3 and b.images[6:] == [None] * 3
    assert "The video is given as 16 frames" in b.calls[0][0]["content"]
    assert "No video frames are available" in b.calls[-1][0]["content"]
    assert d.stats.images_sent == 2 * 3 * 16
    # the sampled frames are those of sample_frame_indices (uniform, 16 of 30)
    from mir_core.features.video import read_frames
    assert np.array_equal(chain.frames(keys[0]), read_frames(tmp_path / "clips" /
                                                               f"{keys[0]}.mp4", n=16))
    # step 1 with frames standing for the videos of the background samples
    cues = chain.discover_cues()
    assert cues.ranked == [("Speakers' Actions", 1)]
