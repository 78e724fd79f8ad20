"""XMEI data and answers: answer parsing, the XMEI JSON loader (good file, bad rows named),
IEMOCAP-DA's unknown emotions, explanation metrics, and a tiny run with resume + the CLI's
one-line errors."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch

from mir_core.data import DataError
from mir_core.xmei import (count_unknown, from_iemocap, load_xmei_json, parse_answer, preset,
                           reason_of, run_xmei)
from mir_core.xmei.text import answer_text
from xmei_tiny import tiny_pair

torch.set_num_threads(1)
EMO = ("angry", "happy", "neutral")
INT = ("Greeting", "Statement-opinion", "Question")


@pytest.mark.parametrize("answer,emotion,intent", [
    ("The user's emotion is angry, intent is Statement-opinion. The underlying reason is: x.",
     "angry", "Statement-opinion"),
    ("the USER'S EMOTION IS  Happy ,intent is   greeting.", "happy", "Greeting"),
    ("Emotion: neutral; Intent: statement opinion", "neutral", "Statement-opinion"),
    ("emotion is \"angry\" and intent is \"Question\"", "angry", "Question"),
])
def test_parse_well_formed_and_variants(answer, emotion, intent):
    p = parse_answer(answer, EMO, INT)
    assert p.ok and (p.emotion, p.intent) == (emotion, intent)


@pytest.mark.parametrize("answer", ["I think he is upset.", "",
                                    "The user's emotion is joyful, intent is Question.",
                                    "The user's emotion is angry, intent is to argue."])
def test_unparsable_answers_stay_unparsed(answer):
    p = parse_answer(answer, EMO, INT)
    assert not p.ok


def test_answer_format_round_trips():
    a = answer_text("happy", "Greeting", "she smiles and says hello")
    assert a == ("The user's emotion is happy, intent is Greeting. The underlying reason is: "
                 "she smiles and says hello.")
    assert parse_answer(a, EMO, INT).ok and reason_of(a) == "she smiles and says hello."
    assert answer_text("happy", "Greeting") == "The user's emotion is happy, intent is Greeting."


def _xmei_rows(n=6):
    rows = []
    for i in range(n):
        rows.append({"video_id": f"v{i}", "video_path": f"videos/v{i}.mp4",
                     "audio_path": f"audio/v{i}.wav",
                     "subtitle": "hello how are you" if i % 2 else "he shouts loud",
                     "emotion": ("happy" if i % 2 else "angry") if i != 5 else "xxx",
                     "intent": "Greeting" if i % 2 else "Question",
                     "video_description": "she smiles" if i % 2 else "he shouts",
                     "audio_description": "a soft voice" if i % 2 else "a loud voice",
                     "emotion_reason": "smiling", "intent_reason": "says hello",
                     "explanation": "she smiles and says hello" if i % 2 else
                     "he shouts because he is angry"})
    return rows


def write_xmei(path, rows):
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def _toy(tmp_path, n_test):
    """The toy train (6 rows, one unknown emotion) / test files, and the tiny LM's words."""
    tr = load_xmei_json(write_xmei(tmp_path / "train.json", _xmei_rows()), "train", name="toy")
    te = load_xmei_json(write_xmei(tmp_path / "test.json", _xmei_rows(n_test)), "test",
                        intents=tr.intents, emotions=tr.emotions, name="toy")
    return tr, te, [s.text for s in tr.samples] + [s.explanation for s in tr.samples]


def test_xmei_json_loader_reads_a_good_file(tmp_path):
    d = load_xmei_json(write_xmei(tmp_path / "train.json", _xmei_rows()), "train")
    assert len(d) == 6 and d.intents == ("Question", "Greeting")
    assert set(d.emotions) == {"angry", "happy"}
    assert d.n_unknown_emotion == 1 and d.unknown_emotions == {"xxx": 1}
    s = d.samples[1]
    assert s.captions == {"video": "she smiles", "audio": "a soft voice"}
    assert s.explanation == "she smiles and says hello" and s.video_path == "videos/v1.mp4"
    # JSON lines work too
    jl = tmp_path / "t.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in _xmei_rows()))
    assert len(load_xmei_json(jl)) == 6


@pytest.mark.parametrize("row,field,message", [
    (3, "subtitle", "missing or empty"),
    (2, "intent", "must be a string"),
    (4, "emotion", "is missing"),
])
def test_xmei_json_loader_names_the_bad_row_and_field(tmp_path, row, field, message):
    rows = _xmei_rows()
    if message == "must be a string":
        rows[row][field] = 3
    elif message == "is missing":
        del rows[row][field]
    else:
        rows[row][field] = "  "
    f = write_xmei(tmp_path / "bad.json", rows)
    with pytest.raises(DataError) as e:
        load_xmei_json(f)
    msg = str(e.value)
    assert f"row {row}" in msg and repr(field) in msg and str(f) in msg and message in msg


def test_xmei_json_loader_refuses_an_unknown_test_label(tmp_path):
    rows = _xmei_rows()
    rows[2]["intent"] = "Dance"
    with pytest.raises(DataError, match=r"row 2: field 'intent' has unknown label 'Dance'"):
        load_xmei_json(write_xmei(tmp_path / "t.json", rows), intents=("Question", "Greeting"))


def test_unknown_emotions_are_counted():
    # "xxx" and "-" are IEMOCAP's own codes for "no agreed emotion" (the EMOTION column)
    assert count_unknown(["xxx", "-", "", None, "ang", " XXX ", float("nan")]) == \
        {"xxx": 2, "-": 1, "": 3}


def test_iemocap_da_unknown_emotions_counted_on_the_real_test_split(data_root):
    d = from_iemocap("test", data_root)
    assert len(d) == 1884
    assert d.unknown_emotions == {"xxx": 447, "-": 9}
    assert d.n_unknown_emotion == 456
    assert "456 of 1884" in d.unknown_note() and "excluded from the emotion metrics" in d.unknown_note()
    assert {s.emotion for s in d.samples} - {None} <= set(d.emotions)
    assert d.samples[0].captions["video"]          # the released VideoLLaMA2 descriptions
    sub = d.subset(100, seed=0)
    assert sum(sub.unknown_emotions.values()) == sub.n_unknown_emotion


@pytest.mark.filterwarnings("ignore::mir_core.data.DataWarning")   # a 40-row cut
def test_iemocap_da_bad_emotion_code_names_file_line_and_field(small_root):
    p = small_root / "data_text/IEMOCAP-DA/test.tsv"
    lines = p.read_text().splitlines()
    cells = lines[5].split("\t")
    cells[-1] = "bored"
    lines[5] = "\t".join(cells)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"test.tsv line 6: field 'EMOTION' has unknown code 'bored'"):
        from_iemocap("test", small_root)


def test_explanation_metrics_from_libraries():
    from mir_core.xmei.explain import explanation_metrics
    refs = ["he shouts because he is angry", "she smiles and says hello"]
    same = explanation_metrics(refs, refs)
    other = explanation_metrics(["the weather is nice today", "a cat"], refs)
    for k in ("BLEU-4", "ROUGE-L", "CIDEr", "BERTScore"):
        assert same[k] is not None and other[k] is not None, (k, same["unavailable"])
        assert same[k] > other[k], k
    assert same["ROUGE-L"] == pytest.approx(1.0) and same["BLEU-4"] == pytest.approx(1.0)
    assert (same["METEOR"] is None) == ("METEOR" in same["unavailable"])
    if shutil.which("java"):                     # METEOR 1.5, the COCO caption evaluation's
        assert same["METEOR_impl"].startswith("METEOR 1.5")
        assert same["METEOR"] > 0.9 > other["METEOR"] >= 0.0


def test_meteor_without_java_falls_back_or_says_why(monkeypatch):
    from mir_core.xmei import explain
    monkeypatch.setattr(explain.shutil, "which", lambda name: None)
    refs = ["he shouts because he is angry"]
    got = explain.explanation_metrics(["he is shouting angrily"], refs)
    if got["METEOR"] is None:                    # no nltk WordNet either: both reasons, no number
        why = got["unavailable"]["METEOR"]
        assert "needs Java" in why and "WordNet" in why, why
    else:
        assert got["METEOR_impl"].startswith("nltk")


def test_tiny_run_writes_the_folder_and_resumes(tmp_path):
    tr, te, texts = _toy(tmp_path, 4)
    cfg = preset("cpu", lora_r=2, lora_alpha=4, max_steps=2, precision="fp32",
                 max_new_tokens=6, batch_size=2)
    calls = []

    def loader():
        calls.append(1)
        return tiny_pair(texts)
    logs = []
    run = run_xmei(tr, te, cfg, seeds=(0, 1), name="tiny", out_root=tmp_path / "runs",
                   lm_loader=loader, progress=False, log=logs.append)
    f = tmp_path / "runs" / "toy" / "tiny"
    assert run.folder == f and len(calls) == 2
    assert any("1 of 6 samples have an unknown emotion" in line for line in logs)
    for s in (0, 1):
        m = json.loads((f / f"seed_{s}" / "metrics.json").read_text())
        assert set(m["intent"]) == {"ACC", "F1", "P", "R", "WF1", "WP"}
        assert 0.0 <= m["unparsed_share"] <= 1.0 and m["explanation"]["n"] == 4
        pred = pd.read_csv(f / f"seed_{s}" / "predictions.csv", keep_default_na=False)
        assert {"answer", "pred_emotion", "pred_intent", "parsed"} <= set(pred.columns)
        assert len(pred) == 4
    summ = json.loads((f / "summary.json").read_text())
    assert summ["intent"]["ACC"]["n"] == 2 and (f / "summary.md").exists()
    md = (f / "summary.md").read_text()
    assert "Explanations: BLEU-4" in md
    if shutil.which("java"):
        assert "METEOR: METEOR 1.5" in md and "METEOR" in summ["explanation"]
    again = run_xmei(tr, te, cfg, seeds=(0, 1), name="tiny", out_root=tmp_path / "runs",
                     lm_loader=loader, progress=False, log=logs.append)
    assert len(calls) == 2 and all(r.reused for r in again.seeds)
    from mir_core.xmei import XMEIRunError
    with pytest.raises(XMEIRunError, match="another configuration"):
        run_xmei(tr, te, cfg.with_(lr=1e-3), seeds=(0,), name="tiny",
                 out_root=tmp_path / "runs", lm_loader=loader, progress=False, log=logs.append)


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    from mir_core.__main__ import main
    rows = _xmei_rows()
    rows[2]["subtitle"] = ""
    bad = write_xmei(tmp_path / "bad.json", rows)
    assert main(["xmei", "--train-json", str(bad), "--test-json", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "row 2" in err and "'subtitle'" in err
    assert main(["xmei", "--set", "nope=1"]) == 2
    assert "nope" in capsys.readouterr().err


def test_xmei_json_clips_become_lq_former_features(tmp_path):
    from mir_core.features.clips import make_clip
    from mir_core.xmei.features import path_features
    rows = _xmei_rows(3)
    (tmp_path / "videos").mkdir()
    for i in (0, 1):
        make_clip(tmp_path / "videos" / f"v{i}.mp4", seconds=1.0, fps=4, size=(32, 32), seed=i)
    d = load_xmei_json(write_xmei(tmp_path / "train.json", rows), name="toy")
    f = path_features(d, ("video",), tmp_path, store_root=tmp_path / "store",
                      log=lambda *a: None)
    feats, mask = f["video"]
    assert feats.shape[0] == 3 and mask.shape == feats.shape[:2]
    assert mask[0].any() and mask[1].any() and not mask[2].any()   # v2.mp4 does not exist


def test_cli_trains_and_resumes_on_xmei_json_with_a_local_checkpoint(tmp_path, capsys):
    from mir_core.__main__ import main
    tr = write_xmei(tmp_path / "train.json", _xmei_rows())
    te = write_xmei(tmp_path / "test.json", _xmei_rows(3))
    tok, lm = tiny_pair([r["subtitle"] for r in _xmei_rows()] +
                        [r["explanation"] for r in _xmei_rows()])
    ckpt = tmp_path / "tiny-lm"
    lm.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    args = ["xmei", "--dataset", "toy", "--train-json", str(tr), "--test-json", str(te),
            "--llm", str(ckpt), "--threads", "1", "--name", "cli", "--out", str(tmp_path / "o"),
            "--set", "max_steps=2", "precision='fp32'", "max_new_tokens=4", "lora_r=2"]
    assert main(args) == 0
    text = capsys.readouterr().out                # log lines, then the JSON summary
    out = json.loads(text[text.index('{\n  "folder"'):])
    folder = tmp_path / "o" / "toy" / "cli"
    assert out["folder"] == str(folder) and set(out["intent"]) >= {"ACC", "F1"}
    assert (folder / "seed_0" / "predictions.csv").exists() and (folder / "summary.md").exists()
    assert main(args) == 0
    assert "seed 0: reused" in capsys.readouterr().out


def test_mark_mode_trains_unknown_emotions_as_the_word_unknown(tmp_path):
    from mir_core.xmei.sft import encode
    tr, te, texts = _toy(tmp_path, 6)
    marked = tr.with_unknown_marked()
    assert len(marked) == len(tr) == 6 and marked.samples[5].emotion == "unknown"
    assert [s.emotion for s in marked.samples[:5]] == [s.emotion for s in tr.samples[:5]]
    assert "unknown" not in marked.emotions            # never a label to predict
    texts = texts + ["unknown"]
    cfg = preset("cpu", lora_r=2, lora_alpha=4, max_steps=1, precision="fp32",
                 max_new_tokens=4, batch_size=2)
    tok, _ = tiny_pair(texts)
    enc = encode(tok, marked.samples[5], marked, cfg, with_answer=True)
    answer = tok.decode([t for t in enc.labels if t != -100], skip_special_tokens=True)
    prompt = tok.decode(enc.input_ids[:enc.n_prompt], skip_special_tokens=True)
    assert "emotion is unknown" in answer
    assert "emotions : angry, happy" in prompt.replace(" ,", ",")      # the test's labels

    runs = {}
    for mode in ("drop", "mark"):
        logs = []
        runs[mode] = run_xmei(tr, te, cfg, seeds=(0,), name=mode, out_root=tmp_path / "runs",
                              unknown_emotion=mode, lm_loader=lambda: tiny_pair(texts),
                              progress=False, log=logs.append)
        assert any("1 of 6 samples have an unknown emotion" in line for line in logs)
    assert runs["drop"].config["n_train_fit"] == 5 and runs["mark"].config["n_train_fit"] == 6
    assert runs["mark"].config["unknown_emotion"] == "mark"
    assert runs["drop"].config["fingerprint"] != runs["mark"].config["fingerprint"]
    for mode, r in runs.items():            # the unknown test sample leaves the emotion metrics
        m = json.loads((r.folder / "seed_0" / "metrics.json").read_text())
        assert m["n"] == 6 and m["n_emotion_scored"] == 5 and m["n_emotion_unknown"] == 1
        pred = pd.read_csv(r.folder / "seed_0" / "predictions.csv", keep_default_na=False)
        assert list(pred["emotion_known"]) == [True] * 5 + [False], mode
    from mir_core.xmei import XMEIRunError
    with pytest.raises(XMEIRunError, match="'drop' or 'mark'"):
        run_xmei(tr, te, cfg, unknown_emotion="keep", out_root=tmp_path / "runs")


def test_a_seed_killed_mid_training_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    from mir_core.xmei import sft
    tr, te, texts = _toy(tmp_path, 4)
    cfg = preset("cpu", lora_r=2, lora_alpha=4, max_steps=3, precision="fp32",
                 max_new_tokens=4, batch_size=2)
    real, calls = sft.collate, []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) == 2:                    # the second training batch
            raise KeyboardInterrupt("killed")
        return real(*a, **k)
    kw = dict(seeds=(0,), name="ck", out_root=tmp_path / "runs", progress=False,
              lm_loader=lambda: tiny_pair(texts), checkpoint_every=1)
    monkeypatch.setattr(sft, "collate", dying)
    with pytest.raises(KeyboardInterrupt):
        run_xmei(tr, te, cfg, log=lambda _: None, **kw)
    sdir = tmp_path / "runs" / "toy" / "ck" / "seed_0"
    assert (sdir / "train_checkpoint.pt").exists() and not (sdir / "metrics.json").exists()
    monkeypatch.setattr(sft, "collate", real)
    logs = []
    run = run_xmei(tr, te, cfg, log=logs.append, **kw)
    m = json.loads((sdir / "metrics.json").read_text())
    assert m["train"]["resumed_at_step"] == 1 and m["train"]["steps"] == 3
    assert any("resuming from" in line for line in logs)
    assert not (sdir / "train_checkpoint.pt").exists()      # removed once the seed is done
    assert not run.seeds[0].reused


@pytest.mark.fault(area="training runs", case="an XMEI-Qwen seed killed while generating its "
                   "answers (1,884 on the real test split, half an hour on a CPU)",
                   before="every answer was lost, and the last steps after the final "
                          "checkpoint trained again (the old code, run against this test)",
                   after="a checkpoint after the last step and the answers appended batch "
                         "by batch; the rerun trains no step and generates from the first "
                         "missing batch, a cut-off last line generated again")
def test_a_seed_killed_mid_generation_resumes_at_its_first_missing_batch(tmp_path, monkeypatch):
    """Killed in the second generation batch, with the last line cut off: the rerun trains
    no step again (the checkpoint after the last step), generates from the first missing
    batch and ends with the answers of an uninterrupted run."""
    from mir_core.models.xmei_qwen import XMEIQwen
    tr, te, texts = _toy(tmp_path, 5)
    cfg = preset("cpu", lora_r=2, lora_alpha=4, max_steps=3, precision="fp32",
                 max_new_tokens=4, batch_size=2, eval_batch_size=2)
    kw = dict(seeds=(0,), out_root=tmp_path / "runs", progress=False,
              lm_loader=lambda: tiny_pair(texts), checkpoint_every=2)
    ref = run_xmei(tr, te, cfg, name="ref", log=lambda _: None, **kw)
    real, calls = XMEIQwen.generate, []

    def dying(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(self, *a, **k)
    monkeypatch.setattr(XMEIQwen, "generate", dying)
    with pytest.raises(KeyboardInterrupt):
        run_xmei(tr, te, cfg, name="ck", log=lambda _: None, **kw)
    sdir = tmp_path / "runs" / "toy" / "ck" / "seed_0"
    part = sdir / "answers_partial.jsonl"
    lines = part.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["start"] == 0     # header + batch 1
    assert (sdir / "train_checkpoint.pt").exists() and not (sdir / "metrics.json").exists()
    with part.open("a") as f:
        f.write('{"start": 2, "answ')                                   # cut off by the kill
    monkeypatch.setattr(XMEIQwen, "generate", real)
    calls.clear()

    def counting(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)
    monkeypatch.setattr(XMEIQwen, "generate", counting)
    logs = []
    run = run_xmei(tr, te, cfg, name="ck", log=logs.append, **kw)
    m = json.loads((sdir / "metrics.json").read_text())
    assert m["train"]["resumed_at_step"] == 3 == m["train"]["steps"]   # no step trained again
    assert len(calls) == 2                                              # batches 2 and 3 only
    assert any("line 3: cut off" in line for line in logs)
    assert any("at sample 2 of 5" in line for line in logs)
    assert list(run.seeds[0].predictions["answer"]) == list(ref.seeds[0].predictions["answer"])
    assert m["intent"] == ref.seeds[0].metrics["intent"]
    assert not part.exists() and not (sdir / "train_checkpoint.pt").exists()


def test_answers_of_another_run_are_named_and_not_resumed(tmp_path):
    from mir_core.xmei.sft import _Answers
    f = tmp_path / "answers_partial.jsonl"
    a = _Answers(f, "fp:seed0:bf16", 2, 3, log=lambda _: None)
    assert a.load() == ([], 0.0)
    a.append(0, ["x", "y"], 1.5)
    assert _Answers(f, "fp:seed0:bf16", 2, 3, log=lambda _: None).load() == (["x", "y"], 1.5)
    logs = []
    other = _Answers(f, "fp:seed0:fp32", 2, 3, log=logs.append)
    assert other.load() == ([], 0.0) and "another run" in logs[0]
    assert f.read_text().splitlines() == [json.dumps(other.head)]      # started anew
    # a batch of the wrong size (another eval batch size written by hand) ends what is kept
    other.append(0, ["x"], 0.1)
    logs.clear()
    assert _Answers(f, "fp:seed0:fp32", 2, 3, log=logs.append).load() == ([], 0.0)
    assert "line 2" in logs[0]
