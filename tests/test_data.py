"""Data layer: real release files load with the published sizes; bad input raises DataError
naming the file, line and field."""
from __future__ import annotations

import urllib.error

import numpy as np
import pytest

from mir_core import data
from mir_core.data import DataError, load_split
from conftest import edit_line


def test_real_sizes_labels_and_table7(data_root):
    for name in ("MIntRec2.0", "IEMOCAP-DA"):
        spec = data.get_spec(name)
        d = data.load_dataset(name, data_root)
        assert {s: len(v) for s, v in d.items()} == spec.sizes
        assert set(d["train"].frame["label"]) == set(spec.labels)
        assert d["train"].has_descriptions and d["train"].has_ranks
        assert not d["test"].has_ranks
        assert d["dev"].label_ids.max() < spec.num_labels
    ro = data.load_split("MIntRec2.0", "train", data_root).rank_order
    # Table 7 of the paper: Interaction with Others ranked first 4,166 times
    assert int((ro[:, 0] == 2).sum()) == 4166
    assert len(spec.labels) == 12 and "EMOTION" in data.load_split(
        "IEMOCAP-DA", "dev", data_root).frame.columns


def test_dataset_names_and_aspects():
    assert data.get_spec("mintrec2").name == "MIntRec2.0"
    assert data.get_spec("iemocap_da").num_labels == 12
    assert data.get_spec("MIntRec").num_labels == 20
    assert data.aspect_index("Speakers Actions") == 0
    assert data.aspect_index("Facial Expressions") == 1
    with pytest.raises(KeyError, match="unknown dataset"):
        data.get_spec("nope")


def test_download_uses_mirror_when_network_fails(tmp_path, monkeypatch):
    calls = []

    def no_network(url, target, timeout):
        calls.append(url)
        raise urllib.error.URLError("unreachable")

    monkeypatch.setattr(data, "_fetch_url", no_network)
    msgs = []
    root = data.download("IEMOCAP-DA", tmp_path / "dl", offline=False, log=msgs.append)
    assert len(calls) == 1                     # one failed try, then the mirror for all files
    assert all((root / rel).exists() for rel in data.get_spec("IEMOCAP-DA").files())
    assert any("mirror" in m for m in msgs)
    # second call: everything verified in place, nothing fetched or copied
    msgs.clear()
    data.download("IEMOCAP-DA", tmp_path / "dl", offline=False, log=msgs.append)
    assert msgs == []


def test_download_checksum_mismatch_and_missing_mirror(tmp_path, small_root):
    with pytest.raises(DataError, match="sha256"):
        data.download("MIntRec2.0", tmp_path / "x", mirror=small_root, offline=True,
                      log=lambda *_: None)
    with pytest.raises(FileNotFoundError, match="MIR_DATA_MIRROR"):
        data.download("MIntRec2.0", tmp_path / "y", mirror=tmp_path / "none", offline=True,
                      log=lambda *_: None)
    with pytest.raises(FileNotFoundError, match="distributed by its authors"):
        data.download("MIntRec", tmp_path / "z", mirror=tmp_path / "none", offline=True,
                      log=lambda *_: None)


def test_small_copy_loads(small_root):
    sp = load_split("MIntRec2.0", "train", small_root)
    assert len(sp) == 40 and sp.rank_order.shape == (40, 3)
    assert sp.subset(10, seed=1).frame["key"].is_unique


def test_missing_column(small_root):
    p = small_root / "data_text/MIntRec2.0/train.tsv"
    edit_line(p, 1, lambda f: [("Lbl" if x == "Label" else x) for x in f])
    with pytest.raises(DataError, match=r"train.tsv: missing column\(s\) \['Label'\]"):
        load_split("MIntRec2.0", "train", small_root)


def test_unknown_label(small_root):
    p = small_root / "data_text/MIntRec2.0/dev.tsv"
    edit_line(p, 5, lambda f: f[:3] + ["Dance"] + f[4:])
    with pytest.raises(DataError, match=r"dev.tsv line 5: field 'Label' has unknown label 'Dance'"):
        load_split("MIntRec2.0", "dev", small_root)
    p = small_root / "data_text/IEMOCAP-DA/test.tsv"
    edit_line(p, 3, lambda f: [f[0], f[1], "zz", f[3]])
    with pytest.raises(DataError, match=r"test.tsv line 3: field 'DA' has unknown label 'zz'"):
        load_split("IEMOCAP-DA", "test", small_root)


def test_desc_misaligned(small_root):
    p = small_root / "data_desc/mintrec2.0/test.tsv"
    lines = p.read_text().splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]        # swap two rows: wrong order
    p.write_text("".join(lines))
    with pytest.raises(DataError, match=r"mintrec2.0/test.tsv line 4: key .* does not match"):
        load_split("MIntRec2.0", "test", small_root)


def test_desc_row_count(small_root):
    p = small_root / "data_desc/iemocap_da/dev.tsv"
    lines = p.read_text().splitlines(keepends=True)
    p.write_text("".join(lines[:-1]))
    with pytest.raises(DataError, match="39 rows but"):
        load_split("IEMOCAP-DA", "dev", small_root)


def test_duplicate_key(small_root):
    p = small_root / "data_text/IEMOCAP-DA/dev.tsv"
    lines = p.read_text().splitlines(keepends=True)
    first_key = lines[1].split("\t")[0]
    edit_line(p, 7, lambda f: [first_key] + f[1:])
    with pytest.raises(DataError, match=r"dev.tsv lines 2 and 7: duplicate key"):
        load_split("IEMOCAP-DA", "dev", small_root)


def test_empty_text(small_root):
    p = small_root / "data_text/MIntRec2.0/dev.tsv"
    edit_line(p, 9, lambda f: f[:2] + [" "] + f[3:])
    with pytest.raises(DataError, match=r"dev.tsv line 9: field 'Text' is empty"):
        load_split("MIntRec2.0", "dev", small_root)


def test_train_sample_without_rank(small_root):
    p = small_root / "data_rank/rank_mintrec2_train.tsv"
    lines = p.read_text().splitlines(keepends=True)
    p.write_text("".join(lines[:-3]))
    with pytest.raises(DataError, match=r"no rank for train sample .*every train sample"):
        load_split("MIntRec2.0", "train", small_root)


def test_bad_rank_value(small_root):
    p = small_root / "data_rank/rank_iemocap_da_train.tsv"
    edit_line(p, 4, lambda f: [f[0], f[1], f[1], f[3]])
    with pytest.raises(DataError, match=r"rank_iemocap_da_train.tsv line 4: ranks .* not a permutation"):
        load_split("IEMOCAP-DA", "train", small_root)
    edit_line(p, 4, lambda f: [f[0], "Tone of Voice", f[2], f[3]])
    with pytest.raises(DataError, match=r"line 4: unknown aspect name 'Tone of Voice'"):
        load_split("IEMOCAP-DA", "train", small_root)


def test_mintrec_v1_format(tmp_path):
    rows = ["season\tepisode\tclip\ttext\tlabel"]
    rows += [f"S01\tE0{i % 3}\t{i}\tutterance {i}\t{data.MINTREC_LABELS[i % 20]}" for i in range(25)]
    for s in data.SPLITS:
        p = tmp_path / f"data_text/MIntRec/{s}.tsv"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("\n".join(rows) + "\n")
    sp = load_split("MIntRec", "train", tmp_path)
    assert len(sp) == 25 and not sp.has_descriptions and not sp.has_ranks
    assert np.array_equal(sp.label_ids[:3], [0, 1, 2]) and sp.keys[0] == "S01_E00_0"
