"""Fault cases of the data layer (reliability issue): split sizes, leaks between splits,
missing files, datasets of your own, notebook 01 on such a dataset. One test per case."""
from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest

from mir_core import data
from mir_core.data import (DataError, DatasetSpecError, DataWarning, MissingDataFile,
                           MIRSplit, SplitLeakError, SplitSizeError, load_dataset, load_split)

fault = pytest.mark.fault


@pytest.fixture
def release(data_root, tmp_path) -> Path:
    """A full copy of the real MIntRec2.0 release files (text, descriptions, ranks)."""
    root = tmp_path / "release"
    for rel in data.get_spec("MIntRec2.0").files():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_root / rel, root / rel)
    return root


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _cut_to_half(path: Path) -> int:
    lines = _lines(path)
    keep = (len(lines) - 1) // 2
    path.write_text("".join(lines[:1 + keep]), encoding="utf-8")
    return keep


MINTREC_V1_HEADER = "season\tepisode\tclip\ttext\tlabel"


def _write_v1_split(path: Path, season: str, n: int, labels=("Complain", "Praise", "Thank",
                                                             "Inform")) -> None:
    rows = [MINTREC_V1_HEADER] + [f"{season}\tE0{i % 3}\t{i}\tutterance {season} {i}\t"
                                  f"{labels[i % len(labels)]}" for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _byo_dataset(root: Path, name: str, spec: dict | None = None, n: int = 12) -> Path:
    """A dataset of one's own: MIntRec v1 TSV columns, one season per split (no leaks)."""
    folder = root / name
    for k, s in enumerate(data.SPLITS):
        _write_v1_split(folder / f"{s}.tsv", f"S0{k + 1}", n)
    (folder / "dataset.json").write_text(json.dumps(
        spec if spec is not None else {"key_columns": ["season", "episode", "clip"]}))
    return folder


@fault(area="data", case="test file cut to half its rows (train and dev intact)",
       before="load_split accepted it; only download() noticed (checksum)",
       after="SplitSizeError naming the file, rows found and published, and the fixes")
def test_test_file_cut_to_half_raises_size_error(release):
    path = release / "data_text/MIntRec2.0/test.tsv"
    kept = _cut_to_half(path)
    with pytest.raises(SplitSizeError) as e:
        load_split("MIntRec2.0", "test", release)
    msg = str(e.value)
    assert str(path) in msg and f"{kept} rows" in msg and "2033 published rows" in msg
    assert f"python -m mir_core download --dataset MIntRec2.0 --dest {release}" in msg
    assert "custom_splits=True" in msg and "MIR_CUSTOM_SPLITS=1" in msg
    assert "(train, dev) have their published size" in msg
    with pytest.raises(SplitSizeError, match="test.tsv: 1016 rows"):
        load_dataset("MIntRec2.0", release)
    assert isinstance(e.value, DataError)


@fault(area="data",
       case="a test row copied into train (replacing or appended to a train row)",
       before="accepted: the sample sat in train and test (a leak between splits)",
       after="SplitLeakError listing the shared keys with their lines and both files")
def test_test_row_copied_into_train_raises_leak_error(release):
    test_path = release / "data_text/MIntRec2.0/test.tsv"
    train_path = release / "data_text/MIntRec2.0/train.tsv"
    test_row = _lines(test_path)[5]
    key = "_".join(test_row.split("\t")[:2])
    original = _lines(train_path)
    for variant in ("replace", "append"):
        lines = list(original)
        if variant == "replace":
            lines[10] = test_row                 # train keeps its published size
        else:
            lines.append(test_row)               # the leak is named, not only the size
        train_path.write_text("".join(lines), encoding="utf-8")
        with pytest.raises(SplitLeakError) as e:
            load_split("MIntRec2.0", "train", release)
        msg = str(e.value)
        assert str(train_path) in msg and str(test_path) in msg
        assert f"{key!r}" in msg and "test line 6" in msg and "1 sample key" in msg
        assert "custom_splits=True" in msg
        # loading only the test split finds it too (reads the train file's keys)
        with pytest.raises(SplitLeakError, match=f"'{key}' \\(test line 6, train line"):
            load_split("MIntRec2.0", "test", release)
        with pytest.raises(SplitLeakError):
            load_dataset("MIntRec2.0", release)


@fault(area="data",
       case="deliberate custom split (half of test, a sample in two splits)",
       before="accepted silently, indistinguishable from a damaged file",
       after="accepted with custom_splits=True or MIR_CUSTOM_SPLITS=1, noted in MIRSplit.notes")
def test_custom_split_allowed_with_flag(release, tmp_path, monkeypatch):
    monkeypatch.delenv("MIR_CUSTOM_SPLITS", raising=False)
    for rel in ("data_text/MIntRec2.0/test.tsv", "data_desc/mintrec2.0/test.tsv"):
        kept = _cut_to_half(release / rel)
    with pytest.raises(SplitSizeError):
        load_split("MIntRec2.0", "test", release)
    sp = load_split("MIntRec2.0", "test", release, custom_splits=True)
    assert len(sp) == kept and sp.has_descriptions
    assert any("2033 published rows" in n and "custom splits allowed" in n for n in sp.notes)
    assert sp.subset(10).notes == sp.notes       # subset keeps what the load accepted
    monkeypatch.setenv("MIR_CUSTOM_SPLITS", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # allowed explicitly: no warning either
        assert len(load_dataset("MIntRec2.0", release)["test"]) == kept
    with pytest.raises(SplitSizeError):          # the argument wins over the variable
        load_split("MIntRec2.0", "test", release, custom_splits=False)

    # a sample in two splits of a dataset of one's own, on purpose
    monkeypatch.delenv("MIR_CUSTOM_SPLITS")
    folder = _byo_dataset(tmp_path / "own", "SharedRows")
    shared = _lines(folder / "test.tsv")[3]
    with open(folder / "train.tsv", "a", encoding="utf-8") as f:
        f.write(shared)
    with pytest.raises(SplitLeakError, match="share 1 sample key"):
        load_split("SharedRows", "train", tmp_path / "own")
    d = load_dataset("SharedRows", tmp_path / "own", custom_splits=True)
    assert len(d["train"]) == 13 and any("share 1 sample key" in n for n in d["train"].notes)
    spec = json.loads((folder / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps({**spec, "custom_splits": True}))
    assert len(load_split("SharedRows", "train", tmp_path / "own")) == 13


@fault(area="data",
       case="every split cut to its first 40 rows (a subset for a quick test)",
       before="accepted silently",
       after="accepted with a DataWarning naming the published sizes; MIR_CUSTOM_SPLITS=0 "
             "makes it a SplitSizeError")
def test_consistent_cut_warns_and_strict_mode_raises(small_root, monkeypatch):
    monkeypatch.delenv("MIR_CUSTOM_SPLITS", raising=False)
    with pytest.warns(DataWarning, match="40 rows, but MIntRec2.0 train has 6165"):
        sp = load_split("MIntRec2.0", "train", small_root)
    assert len(sp) == 40 and any("custom cut" in n for n in sp.notes)
    monkeypatch.setenv("MIR_CUSTOM_SPLITS", "0")
    with pytest.raises(SplitSizeError, match="40 rows, but IEMOCAP-DA dev has 942"):
        load_split("IEMOCAP-DA", "dev", small_root)


@fault(area="data", case="MIntRec v1 train file missing (new user, bring-your-own)",
       before="'file not found (run download() first)', and download() cannot fetch MIntRec",
       after="MissingDataFile naming the exact expected path, the layout and the columns, "
             "pointing to docs/BRING_YOUR_OWN_DATA.md, not to download()")
def test_missing_mintrec_v1_file_names_the_path(tmp_path):
    for s in ("dev", "test"):
        _write_v1_split(tmp_path / f"data_text/MIntRec/{s}.tsv", 'S01' if s == 'dev' else 'S02', 5,
                        labels=data.MINTREC_LABELS)
    with pytest.raises(FileNotFoundError) as e:
        load_split("MIntRec", "train", tmp_path)
    assert isinstance(e.value, MissingDataFile)
    msg = str(e.value)
    expected = tmp_path / "data_text" / "MIntRec" / "train.tsv"
    assert str(expected) in msg and "MISSING" in msg and "present" in msg
    assert "['season', 'episode', 'clip', 'text', 'label']" in msg
    assert "docs/BRING_YOUR_OWN_DATA.md" in msg and "thuiar/MIntRec" in msg
    assert "download" not in msg.lower()
    # a downloadable dataset does point to the download command
    with pytest.raises(MissingDataFile, match="python -m mir_core download --dataset IEMOCAP-DA"):
        load_split("IEMOCAP-DA", "dev", tmp_path)


@fault(area="data",
       case="a dataset of one's own from a spec file (MIntRec v1 TSV columns)",
       before="impossible without editing mir_core/data.py",
       after="<root>/<name>/dataset.json, MIR_DATASET_SPEC or register_dataset(); labels "
             "inferred from train with a note; MIRSplit objects ready for training")
def test_user_dataset_from_spec_file(tmp_path, monkeypatch):
    root = tmp_path / "data"
    folder = _byo_dataset(root, "MyIntents")
    d = load_dataset("MyIntents", root)
    spec = data.get_spec("MyIntents")
    assert spec.labels == ("Complain", "Inform", "Praise", "Thank") and spec.labels_inferred
    assert any("inferred from" in n for n in spec.notes) and not spec.upstream
    for s, sp in d.items():
        assert isinstance(sp, MIRSplit) and len(sp) == 12 and sp.labels == spec.labels
        assert sp.label_ids.dtype == np.int64 and sp.label_ids.max() < spec.num_labels
        assert not sp.has_descriptions and not sp.has_ranks
    assert d["train"].keys[0] == "S01_E00_0" and d["train"].texts[0] == "utterance S01 0"
    assert len(d["train"].subset(4, seed=0)) == 4
    assert data.download("myintents", root, log=lambda *_: None) == root
    assert {r["checksum"] for r in data.verify_files("MyIntents", root)} == {data.UNPUBLISHED}

    # the same files through MIR_DATASET_SPEC, with the labels listed and sizes published
    other = tmp_path / "elsewhere"
    shutil.copytree(folder, other)
    (other / "dataset.json").write_text(json.dumps({
        "name": "MyIntentsB", "key_columns": ["season", "episode", "clip"],
        "labels": ["Thank", "Praise", "Complain", "Inform"],
        "sizes": {"train": 12, "dev": 12, "test": 12}}))
    monkeypatch.setenv("MIR_DATASET_SPEC", str(other / "dataset.json"))
    sp = load_split("MyIntentsB", "dev")
    assert sp.labels[0] == "Thank" and sp.frame["label"].iloc[2] == "Thank"
    assert sp.label_ids[2] == 0 and not data.get_spec("MyIntentsB").labels_inferred
    _cut_to_half(other / "test.tsv")
    with pytest.raises(SplitSizeError, match=r"6 rows, but MyIntentsB test has 12"):
        load_split("MyIntentsB", "test")

    # in code
    own = data.register_dataset(data.DatasetSpec(
        name="CodeIntents", labels=("Complain", "Praise", "Thank", "Inform"),
        text_file="MyIntents/{split}.tsv", key_columns=("season", "episode", "clip"),
        text_column="text", label_column="label", sizes={}), replace=True)
    assert not own.upstream and len(load_split("codeintents", "test", root)) == 12


@fault(area="data",
       case="invalid dataset spec file (typo, bad JSON, missing {split}, built-in name)",
       before="no spec files existed",
       after="DatasetSpecError naming the file and the field (with a did-you-mean)")
def test_invalid_spec_file_named_errors(tmp_path):
    folder = _byo_dataset(tmp_path, "Broken")
    cases = [
        ('{"key_colums": ["season"]}',
         r"unknown field\(s\) 'key_colums' \(did you mean 'key_columns'\?\)"),
        ('{"key_columns": ["season",]}', r"dataset.json line 1 column \d+: not valid JSON"),
        ('{"text_file": "train.tsv"}',
         r"field 'text_file' = 'train.tsv' must contain \{split\}"),
        ('{"desc_file": "desc/{split}.tsv"}', r"'desc_file' needs 'desc_columns'"),
        ('{"labels": ["A", "A"]}', r"field 'labels' lists \['A'\] more than once"),
        ('{"sizes": {"train": 0}}', r"field 'sizes' must give positive row counts"),
        ('{"name": "MIntRec2.0"}', r"name of a built-in dataset"),
        ('{"key_columns": ["season", "scene"]}',
         r"missing column\(s\) \['scene'\].*set in .*dataset.json"),
    ]
    for text, pattern in cases:
        (folder / "dataset.json").write_text(text)
        with pytest.raises(DataError, match=pattern) as e:
            load_split("Broken", "train", tmp_path)
        assert str(folder) in str(e.value)
        if "scene" not in text:
            assert isinstance(e.value, DatasetSpecError)
    with pytest.raises(KeyError, match=r"Nope/dataset.json.*BRING_YOUR_OWN_DATA"):
        data.get_spec("Nope", tmp_path)


@fault(area="data",
       case="files with no published checksum (MIntRec v1) in the download report",
       before="notebook 01 showed verified: false, like a corrupt file",
       after="'no published checksum', distinct from 'mismatch'; download() logs it")
def test_unknown_checksum_differs_from_mismatch(release, tmp_path):
    for k, s in enumerate(data.SPLITS):
        _write_v1_split(tmp_path / f"data_text/MIntRec/{s}.tsv", f"S0{k}", 5,
                        labels=data.MINTREC_LABELS)
    logs = []
    data.download("MIntRec", tmp_path, offline=True, log=logs.append)
    assert all(data.UNPUBLISHED in m for m in logs) and len(logs) == 3
    assert {r["checksum"] for r in data.verify_files("MIntRec", tmp_path)} == {data.UNPUBLISHED}
    p = release / "data_rank/rank_mintrec2_train.tsv"
    p.write_text(p.read_text() + "\n")
    status = {r["file"]: r["checksum"] for r in data.verify_files("MIntRec2.0", release)}
    assert status["data_rank/rank_mintrec2_train.tsv"] == data.MISMATCH
    assert status["data_text/MIntRec2.0/train.tsv"] == data.VERIFIED


@fault(area="data",
       case="notebook 01 on a dataset of one's own (no checksums, descriptions, ranks)",
       before="MIntRec v1: verified: false for every file; an own dataset could not be named",
       after="runs; 'no published checksum'; each skipped part says why")
def test_notebook_01_on_own_dataset(tmp_path):
    from mir_core.notebooks import run_notebook
    from mir_core.records import Recorder
    root = tmp_path / "data"
    _byo_dataset(root, "NbIntents")
    t0 = time.perf_counter()
    dst = run_notebook("01", {"datasets": ["NbIntents"], "data_root": str(root)},
                       output_dir=tmp_path / "out")
    assert time.perf_counter() - t0 < 120
    rec = Recorder.read(tmp_path / "out" / "01_data_download")
    assert rec["all_verified"] is None
    assert rec["checksum_counts"] == {data.UNPUBLISHED: 3}
    assert {r["checksum"] for r in rec["files"]} == {data.UNPUBLISHED}
    assert {(r["split"], r["rows"], r["expected"]) for r in rec["sizes"]} == {
        ("train", 12, None), ("dev", 12, None), ("test", 12, None)}
    assert sum(rec["label_counts"]["NbIntents"]["train"].values()) == 12
    assert rec["capabilities"]["NbIntents"]["descriptions"] is False
    nb = nbformat.read(str(dst), as_version=4)
    text = "\n".join(
        str(o.get("text", "")) + json.dumps(o.get("data", {}))
        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "verified: false" not in text.lower() and "no published checksum" in text
    assert "has no description file" in text and "has no rank file" in text
    assert "has no published split sizes" in text and "inferred from" in text
