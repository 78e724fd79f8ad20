"""Label descriptions for A-MESS (mir_core.label_descriptions): the three file formats (the
paper's nested file, a flat one, the annotation chain's label step, as written by
``annotate --out`` and as its reply cache), spelling variants against the real label
lists, the one-line errors, the environment variable, the same-M rule and the cached
sentence embeddings."""
from __future__ import annotations

import json
import numpy as np
from pathlib import Path

import pytest
import torch

from mir_core import label_descriptions as ld
from mir_core.annotation import AnnotationChain, Backend, ChainConfig, Reply
from mir_core.annotation.batch import BatchResult, write_outputs
from mir_core.data import DataError, get_spec, load_split
from mir_core.label_descriptions import (ENV_VAR, LabelDescriptionsError,
                                         embed_label_descriptions, load_label_descriptions,
                                         normalise_label)

PAPER_FILE = (Path(__file__).resolve().parents[2] / "shared" / "data" / "amess"
              / "label_descriptions.json")   # the shared data beside the checkout, as in CI
MINTREC2 = get_spec("MIntRec2.0").labels
# the paper's spellings of the data files' labels (SOURCES.md of the paper's file)
PAPER_SPELLING = {"Apologise": "Apologize", "Ask for help": "Ask for Help",
                  "Asking for opinions": "Ask for Opinions"}


def _descs(labels, m=3, tag=""):
    return {lab: [f"{lab} {tag}description {i}." for i in range(m)] for lab in labels}


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_paper_format_matches_the_spelling_variants_of_the_real_labels(data_root, tmp_path,
                                                                       no_env):
    """A nested {dataset: {label: [...]}} file in the paper's spellings serves the data
    files' labels, in label-id order, with the data files' spellings."""
    real = load_split("MIntRec2.0", "train", data_root).labels
    assert tuple(real) == MINTREC2
    paper = {PAPER_SPELLING.get(lab, lab): d for lab, d in _descs(MINTREC2).items()}
    assert set(PAPER_SPELLING.values()) <= set(paper)
    f = _write(tmp_path / "paper.json", {"MIntRec": {"Greet": ["x"]}, "MIntRec2.0": paper})
    out = load_label_descriptions(real, "MIntRec2.0", f)
    assert list(out) == list(real)                                  # label-id order
    for data_name, paper_name in PAPER_SPELLING.items():
        assert out[data_name] == paper[paper_name]
    assert out["Greet"] == paper["Greet"] and all(len(v) == 3 for v in out.values())
    out2 = load_label_descriptions(real, "mintrec2", f)              # dataset aliases too
    assert out2 == out


def test_normalisation_rules():
    assert normalise_label("Apologize") == normalise_label("Apologise")
    assert normalise_label("Ask for Help") == normalise_label("ask  for help ")
    assert normalise_label("Ask for Opinions") == normalise_label("Asking for opinions")
    assert normalise_label("Criticise") == normalise_label("Criticize")
    assert normalise_label("Statement-opinion") == "statement opinion"
    assert normalise_label("Advise") != normalise_label("Advice")


@pytest.mark.skipif(not PAPER_FILE.exists(), reason="the A-MESS paper's file is not here")
def test_the_paper_file_covers_mintrec_and_mintrec2_not_iemocap(no_env):
    for name in ("MIntRec2.0", "MIntRec"):
        labels = get_spec(name).labels
        out = load_label_descriptions(labels, name, PAPER_FILE)
        assert list(out) == list(labels) and all(len(v) == 3 for v in out.values())
    iemocap = get_spec("IEMOCAP-DA").labels
    with pytest.raises(LabelDescriptionsError) as e:
        load_label_descriptions(iemocap, "IEMOCAP-DA", PAPER_FILE)
    msg = str(e.value)
    assert "\n" not in msg and str(PAPER_FILE) in msg and "IEMOCAP-DA" in msg
    assert all(repr(lab) in msg for lab in iemocap)                  # every label named
    assert "--steps labels" in msg


def test_flat_format_and_the_environment_variable(tmp_path, monkeypatch, no_env):
    labels = get_spec("IEMOCAP-DA").labels
    f = _write(tmp_path / "flat.json", {lab.upper(): d for lab, d in _descs(labels).items()})
    with pytest.raises(LabelDescriptionsError, match=ENV_VAR):
        load_label_descriptions(labels, "IEMOCAP-DA")                # no path, no variable
    monkeypatch.setenv(ENV_VAR, str(f))
    out = load_label_descriptions(labels, "IEMOCAP-DA")
    assert list(out) == list(labels) and out["Greeting"][0] == "Greeting description 0."
    assert load_label_descriptions(labels, "IEMOCAP-DA", "") == out  # "" = the variable
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "gone.json"))
    with pytest.raises(LabelDescriptionsError, match=rf"gone.json \(from {ENV_VAR}\) does not "
                                                     "exist"):
        load_label_descriptions(labels, "IEMOCAP-DA")


def test_missing_labels_are_one_line_naming_the_file_and_every_label(tmp_path, no_env):
    d = _descs(MINTREC2)
    del d["Taunt"], d["Asking for opinions"]
    f = _write(tmp_path / "some.json", d)
    with pytest.raises(LabelDescriptionsError) as e:
        load_label_descriptions(MINTREC2, "MIntRec2.0", f)
    msg = str(e.value)
    assert isinstance(e.value, DataError) and "\n" not in msg
    assert str(f) in msg and "2 of the 30" in msg
    assert "'Asking for opinions'" in msg and "'Taunt'" in msg and "'Care'" not in msg
    assert "{label: [d1, d2, ...]}" in msg and "annotate --dataset" in msg


def test_malformed_files_are_named(tmp_path, no_env):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LabelDescriptionsError, match="bad.json: not valid JSON"):
        load_label_descriptions(MINTREC2, "MIntRec2.0", bad)
    f = _write(tmp_path / "empty_list.json", {**_descs(MINTREC2), "Care": []})
    with pytest.raises(LabelDescriptionsError, match="'Care' must be a non-empty list"):
        load_label_descriptions(MINTREC2, "MIntRec2.0", f)


def test_any_m_but_the_same_m_for_every_label(tmp_path, no_env):
    labels = get_spec("IEMOCAP-DA").labels
    two = load_label_descriptions(labels, "IEMOCAP-DA",
                                  _write(tmp_path / "m2.json", _descs(labels, m=2)))
    assert all(len(v) == 2 for v in two.values())
    mixed = {**_descs(labels, m=3), "Question": ["only one"], "Answer": ["a", "b"]}
    with pytest.raises(LabelDescriptionsError) as e:
        load_label_descriptions(labels, "IEMOCAP-DA", _write(tmp_path / "mixed.json", mixed))
    msg = str(e.value)
    assert "differing numbers" in msg and "1 for ['Question']" in msg
    assert "2 for ['Answer']" in msg and "3 for 10 labels" in msg


# --------------------------------------------------------------------------- annotation chain
class LabelBackend(Backend):
    """A scripted LLM for the chain's label step: label-specific descriptions; a reply
    without a numbered list (unparsable) for the labels in ``fail``."""

    kind = "scripted"

    def __init__(self, model: str = "scripted-1", fail=()):
        self.model, self.fail = model, set(fail)

    def generate(self, messages, images=None, max_new_tokens=128):
        label = messages[-1]["content"].rsplit("\n", 1)[-1].rstrip(":")
        if label in self.fail:
            return Reply("I cannot do that.", 10, 5, 0.01)
        return Reply(f"1. {label} one ({self.model}). 2. {label} two. 3. {label} three.",
                     10, 5, 0.01)


def _chain_labels(cache: Path, model="scripted-1", fail=(), labels=None):
    cfg = ChainConfig(dataset="IEMOCAP-DA", cache_path=cache, max_retries=0,
                      retry_failures=True)
    return AnnotationChain(LabelBackend(model, fail), cfg, log=lambda *a: None
                           ).label_descriptions(datasets=["IEMOCAP-DA"], labels=labels)


def test_the_annotation_chains_label_step_output_is_accepted(tmp_path, no_env):
    """What ``annotate --steps labels --out DIR`` writes (DIR/label_descriptions.json) and
    the chain's reply cache (replies.jsonl) are both inputs; a label whose reply did not
    parse is named with the reason."""
    labels = get_spec("IEMOCAP-DA").labels
    cache = tmp_path / "replies.jsonl"
    res = _chain_labels(cache, fail=("Backchannel",))
    assert set(res.failures) == {"Backchannel"}
    out_file = tmp_path / "out" / "label_descriptions.json"
    assert out_file in write_outputs(BatchResult({}, tmp_path / "s.jsonl", {"labels": res}),
                                     tmp_path / "out")
    for f in (out_file, cache):
        with pytest.raises(LabelDescriptionsError) as e:
            load_label_descriptions(labels, "IEMOCAP-DA", f)
        msg = str(e.value)
        assert "\n" not in msg and str(f) in msg and "1 of the 12" in msg
        assert "['Backchannel']" in msg and "did not parse for 'Backchannel'" in msg
    # the failed label asked again: the cache's newest record of each label counts
    res2 = _chain_labels(cache, labels=["Backchannel"])
    assert not res2.failures
    out = load_label_descriptions(labels, "IEMOCAP-DA", cache)
    assert list(out) == list(labels) and all(len(v) == 3 for v in out.values())
    assert out["Backchannel"] == ["Backchannel one (scripted-1).", "Backchannel two.",
                                  "Backchannel three."]
    done = _chain_labels(tmp_path / "again.jsonl")
    write_outputs(BatchResult({}, tmp_path / "s.jsonl", {"labels": done}), tmp_path / "out2")
    assert load_label_descriptions(labels, "IEMOCAP-DA",
                                   tmp_path / "out2" / "label_descriptions.json") == out
    # a cache whose newest replies come from two models is not mixed silently
    _chain_labels(cache, model="scripted-2", labels=["Greeting"])
    with pytest.raises(LabelDescriptionsError, match=r"several models .*scripted/scripted-1"):
        load_label_descriptions(labels, "IEMOCAP-DA", cache)


# --------------------------------------------------------------------------- embeddings
def test_embeddings_are_cached_by_text(tmp_path, monkeypatch, no_env):
    from mir_core.features.store import FeatureStore
    labels = get_spec("IEMOCAP-DA").labels
    descs = _descs(labels, m=2, tag="cached ")
    store = FeatureStore(tmp_path / "store")
    loads = []
    real = ld._load_sentence_encoder
    monkeypatch.setattr(ld, "_load_sentence_encoder",
                        lambda *a, **k: loads.append(a) or real(*a, **k))
    emb = embed_label_descriptions(descs, labels, "minilm-l6", store=store)
    assert emb.shape == (12, 2, 384) and emb.dtype == torch.float32 and len(loads) == 1
    assert torch.isfinite(emb).all() and not torch.allclose(emb[0, 0], emb[0, 1])

    def fail(*a, **k):
        raise AssertionError("the encoder was loaded although the embeddings are cached")
    monkeypatch.setattr(ld, "_load_sentence_encoder", fail)
    again = embed_label_descriptions(descs, labels, "all-MiniLM-L6-v2", store=store)
    assert torch.equal(again, emb)                  # same texts, same (canonical) encoder
    swapped = embed_label_descriptions({lab: d[::-1] for lab, d in descs.items()}, labels,
                                       store=store)
    assert torch.equal(swapped, emb.flip(1))        # rows follow the texts
    with pytest.raises(AssertionError, match="was loaded"):
        embed_label_descriptions({**descs, "Question": ["new text", "another"]}, labels,
                                 store=store)       # a changed text is encoded


def test_description_retrieval_ranks_each_label_against_the_references(tmp_path, no_env):
    from mir_core.features.store import FeatureStore
    from mir_core.label_descriptions import description_retrieval
    labels = ["Greet", "Apologize", "Complain", "Thank"]
    ref = {"Greet": ["Saying hello to someone.", "Welcoming a person who arrives."],
           "Apologize": ["Saying sorry for a mistake.", "Asking to be forgiven."],
           "Complain": ["Expressing annoyance about a problem.", "Grumbling about a flaw."],
           "Thank": ["Expressing gratitude for help.", "Saying thanks to someone."]}
    store = FeatureStore(tmp_path / "store")
    same = description_retrieval(ref, ref, labels, store=store)
    assert same["rank"].tolist() == [1, 1, 1, 1] and (same["nearest"] == same["label"]).all()
    assert np.allclose(same["own_cos"], 1.0, atol=1e-5)
    # Greet given Thank's descriptions and the other way round: each finds the other
    swapped = description_retrieval({**ref, "Greet": ref["Thank"], "Thank": ref["Greet"]},
                                    ref, labels, store=store)
    row = swapped.set_index("label")
    assert row.loc["Greet", "nearest"] == "Thank" and row.loc["Thank", "nearest"] == "Greet"
    assert row.loc["Greet", "rank"] > 1 and row.loc["Apologize", "rank"] == 1
    # cosine against an independent computation
    g = embed_label_descriptions(ref, labels, store=store).mean(1)
    want = torch.nn.functional.cosine_similarity(g[0], g[3], dim=0).item()
    assert abs(row.loc["Greet", "own_cos"] - want) < 1e-5
    assert abs(row.loc["Greet", "nearest_cos"] - 1.0) < 1e-5
