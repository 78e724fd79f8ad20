"""Distributed nonverbal feature pickles -> (N, L, D) + mask in the feature store.

Small pickles written in each benchmark's format, keyed by real sample keys of
``load_split(...).subset(5, seed=0)`` (MIntRec2.0, IEMOCAP-DA dev) and of a small MIntRec
dev file (keys built by the data layer from season / episode / clip). Expected tensors
are built with numpy alone; a second load must not unpickle; every bad file raises one
line naming the file and the key.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mir_core.data import DataError, MIRSplit, load_split, sha256_of
from mir_core.features import nonverbal as nv
from mir_core.features.nonverbal import (NONVERBAL_SOURCES, MissingNonverbalFile,
                                         NonverbalDataError, NonverbalSource, get_source,
                                         load_nonverbal, mintrec2_key, register_source)
from mir_core.features.store import FeatureStore

FORMATS = sorted(NONVERBAL_SOURCES)          # (dataset, modality), the six formats
MINTREC_ROWS = [("S04", "E01", "123", "Great job!", "Praise"),
                ("S05", "E12", "7", "I am so sorry.", "Apologise"),
                ("S06", "E03", "282", "Let us go.", "Leave"),
                ("S04", "E20", "55", "Thanks a lot.", "Thank")]


@pytest.fixture(scope="module")
def splits(data_root, tmp_path_factory) -> dict[str, MIRSplit]:
    """Five real dev samples of MIntRec2.0 and IEMOCAP-DA, four of a MIntRec dev file."""
    out = {name: load_split(name, "dev", data_root).subset(5, seed=0)
           for name in ("MIntRec2.0", "IEMOCAP-DA")}
    root = tmp_path_factory.mktemp("mintrec1")
    tsv = root / "data_text" / "MIntRec" / "dev.tsv"
    tsv.parent.mkdir(parents=True)
    tsv.write_text("season\tepisode\tclip\ttext\tlabel\n"
                   + "".join("\t".join(r) + "\n" for r in MINTREC_ROWS), encoding="utf-8")
    out["MIntRec"] = load_split("MIntRec", "dev", root, custom_splits=True)
    return out


@pytest.fixture
def store(tmp_path) -> FeatureStore:
    return FeatureStore(tmp_path / "store", log=lambda m: None)


def encode(source: NonverbalSource, x: np.ndarray, how: int):
    """The (T, D) array ``x`` in one of the forms the files hold."""
    if source.frame_list:                    # MIntRec video: a list of [1, D] key frames
        frames = [f[None] for f in x]
        return [torch.from_numpy(f) for f in frames] if how % 2 else frames
    return [x, x[None], torch.from_numpy(x), x.astype(np.float64).tolist()][how % 4]


def write_pickle(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(data, fh)
    return path


def make_file(root: Path, split: MIRSplit, modality: str, lengths, seed: int = 0,
              extra: int = 2) -> tuple[Path, list[np.ndarray]]:
    """A pickle of ``split``'s samples (T_i = lengths[i]) plus ``extra`` other keys, at the
    format's relative path under ``root``; returns it and the (T_i, D) float32 arrays."""
    src = get_source(split.dataset, modality)
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((t, src.dim)).astype(np.float32) for t in lengths]
    data = {src.key_fn(k): encode(src, x, i) for i, (k, x) in enumerate(zip(split.keys, xs))}
    for j in range(extra):                   # samples of other splits: ignored
        data[f"other_{j}"] = rng.standard_normal((3, src.dim)).astype(np.float32)
    return write_pickle(root / src.rel_path, data), xs


def expected(xs: list[np.ndarray], max_len: int) -> dict[str, np.ndarray]:
    """What the loader must return, built with numpy alone: first max_len frames, zeros at
    the end, mask True on real frames."""
    n, d = len(xs), xs[0].shape[1]
    feats = np.zeros((n, max_len, d), np.float16)
    mask = np.zeros((n, max_len), bool)
    for i, x in enumerate(xs):
        t = min(len(x), max_len)
        feats[i, :t] = x[:t].astype(np.float16)
        mask[i, :t] = True
    return {"feats": feats, "mask": mask, "length": mask.sum(1).astype(np.int32)}


def assert_exact(got: dict, want: dict) -> None:
    assert sorted(got) == ["feats", "length", "mask"]
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def load(split, modality, path, store, **kw):
    return load_nonverbal(split, modality, path, store=store, progress=False, **kw)


def count_unpickling(monkeypatch) -> list:
    calls: list = []
    real = pickle.load

    def counted(fh, *a, **kw):
        if hasattr(fh, "name"):          # a file (torch tensors inside unpickle from BytesIO)
            calls.append(fh.name)
        return real(fh, *a, **kw)
    monkeypatch.setattr(pickle, "load", counted)
    return calls


def forbid_unpickling(monkeypatch) -> None:
    def refuse(fh, *a, **kw):
        pytest.fail(f"pickle.load({getattr(fh, 'name', fh)}) called: the store should serve it")
    monkeypatch.setattr(pickle, "load", refuse)


# --------------------------------------------------------------------------- formats
def test_registry_holds_the_six_formats():
    got = {k: (s.rel_path, s.dim, s.max_len, s.encoder) for k, s in NONVERBAL_SOURCES.items()}
    assert got == {
        ("MIntRec2.0", "video"): ("video_data/swin_roi_binary.pkl", 256, 180, "swin_roi_binary"),
        ("MIntRec2.0", "audio"): ("audio_data/wavlm_feats_binary.pkl", 768, 400,
                                  "wavlm_feats_binary"),
        ("MIntRec", "video"): ("video_data/video_feats.pkl", 256, 230, "video_feats"),
        ("MIntRec", "audio"): ("audio_data/audio_feats.pkl", 768, 480, "audio_feats"),
        ("IEMOCAP-DA", "video"): ("swin_feats.pkl", 1024, 230, "swin_feats"),
        ("IEMOCAP-DA", "audio"): ("wavlm_feats.pkl", 768, 380, "wavlm_feats"),
    }
    assert mintrec2_key("2_0") == "dia2_utt0" and mintrec2_key("1023_15") == "dia1023_utt15"
    assert NONVERBAL_SOURCES[("IEMOCAP-DA", "audio")].key_fn("Ses03F_script01_3_M044") \
        == "Ses03F_script01_3_M044"


def test_keys_of_the_data_layer(splits):
    """The pickle keys the loader looks up are built from the data layer's keys."""
    assert splits["MIntRec"].keys == ["S04_E01_123", "S05_E12_7", "S06_E03_282", "S04_E20_55"]
    m2 = splits["MIntRec2.0"].keys
    assert all(k.count("_") == 1 for k in m2)
    assert [get_source("MIntRec2.0", "video").key_fn(k) for k in m2] == \
        ["dia{}_utt{}".format(*k.split("_")) for k in m2]
    assert all(k.startswith("Ses") for k in splits["IEMOCAP-DA"].keys)


@pytest.mark.parametrize("dataset,modality", FORMATS)
def test_each_format_default_length(dataset, modality, splits, store, tmp_path):
    """Every format: values as arrays, (1, T, D), tensors, lists (or key-frame lists),
    samples longer than, equal to and shorter than the format's max, in split order."""
    split = splits[dataset]
    L = get_source(dataset, modality).max_len
    lengths = [L + 7, L, 1, L - 1, 3][:len(split)]
    file, xs = make_file(tmp_path / "release", split, modality, lengths)
    got = load(split, modality, tmp_path / "release", store)
    assert_exact(got, expected(xs, L))
    assert got["length"].tolist() == [min(t, L) for t in lengths]


@pytest.mark.parametrize("max_len", [1, 4, 9, 40])
def test_max_len_truncates_and_pads(max_len, splits, store, tmp_path):
    split = splits["IEMOCAP-DA"]
    lengths = [12, 4, 9, 1, 30]
    file, xs = make_file(tmp_path, split, "audio", lengths)
    got = load(split, "audio", file, store, max_len=max_len, chunk_size=2)   # 3 chunks
    want = expected(xs, max_len)
    assert_exact(got, want)
    assert (got["feats"][~got["mask"]] == 0).all()               # padding: zeros at the end
    np.testing.assert_array_equal(got["mask"], np.arange(max_len) < got["length"][:, None])


def test_bad_max_len(splits, store, tmp_path):
    file, _ = make_file(tmp_path, splits["IEMOCAP-DA"], "audio", [3] * 5)
    for bad in (0, -3, 2.5):
        with pytest.raises(NonverbalDataError, match="max_len must be an integer >= 1"):
            load(splits["IEMOCAP-DA"], "audio", file, store, max_len=bad)


# --------------------------------------------------------------------------- the store
def test_second_load_is_served_by_the_store(splits, store, tmp_path, monkeypatch):
    split = splits["MIntRec2.0"]
    file, xs = make_file(tmp_path / "rel", split, "video", [200, 5, 180, 3, 60])
    calls = count_unpickling(monkeypatch)
    first = load(split, "video", tmp_path / "rel", store, chunk_size=2)
    assert calls == [str(file)]                                  # once, for all 3 chunks
    forbid_unpickling(monkeypatch)
    again = load(split, "video", tmp_path / "rel", store)
    assert_exact(again, expected(xs, 180))
    assert_exact(again, first)
    # the file named directly is the same entry; a subset is served from the full entry
    assert_exact(load(split, "video", file, store), first)
    sub = split.subset(2, seed=1)
    rows = [split.keys.index(k) for k in sub.keys]
    assert_exact(load(sub, "video", file, store), expected([xs[r] for r in rows], 180))
    entries = [p for p in (store.root / "MIntRec2.0" / "dev" / "nonverbal-video").iterdir()
               if p.is_dir()]
    assert len(entries) == 1 and entries[0].name.startswith("swin_roi_binary-")
    manifest = json.loads((entries[0] / "manifest.json").read_text())
    assert manifest["settings"]["max_len"] == 180
    assert manifest["settings"]["file_sha256"] == sha256_of(file)


def test_changed_file_is_a_new_entry(splits, store, tmp_path, monkeypatch):
    split = splits["IEMOCAP-DA"]
    file, xs = make_file(tmp_path, split, "video", [5, 6, 7, 8, 9], seed=1)
    old = load(split, "video", file, store)
    old_sha, old_size = sha256_of(file), file.stat().st_size
    file2, xs2 = make_file(tmp_path, split, "video", [5, 6, 7, 8, 9], seed=2)
    assert file2 == file and file.stat().st_size == old_size     # rewritten in place, same size
    calls = count_unpickling(monkeypatch)
    new = load(split, "video", file, store)
    assert len(calls) == 1                                       # the new file is read
    assert_exact(new, expected(xs2, 230))
    assert not np.array_equal(new["feats"], old["feats"])
    shas = {json.loads((p / "manifest.json").read_text())["settings"]["file_sha256"]
            for p in (store.root / "IEMOCAP-DA" / "dev" / "nonverbal-video").iterdir()
            if p.is_dir()}
    assert shas == {old_sha, sha256_of(file)} and len(shas) == 2    # one entry per file
    # another max_len is another entry too, from the same file
    assert_exact(load(split, "video", file, store, max_len=6), expected(xs2, 6))


# --------------------------------------------------------------------------- errors
def one_line(excinfo, *parts: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    assert isinstance(excinfo.value, DataError)
    for p in parts:
        assert p in msg, (p, msg)
    return msg


def no_entry(store: FeatureStore) -> bool:
    return not list(store.root.rglob("manifest.json"))


def test_missing_file_names_the_layout(splits, store, tmp_path, monkeypatch):
    forbid_unpickling(monkeypatch)
    with pytest.raises(MissingNonverbalFile) as e:
        load(splits["MIntRec2.0"], "audio", tmp_path / "nowhere", store)
    assert isinstance(e.value, FileNotFoundError)
    one_line(e, str(tmp_path / "nowhere" / "audio_data" / "wavlm_feats_binary.pkl"),
             "file not found", "<folder>/video_data/swin_roi_binary.pkl",
             "<folder>/audio_data/wavlm_feats_binary.pkl", "dia<Dialogue_id>_utt<Utterance_id>")
    with pytest.raises(MissingNonverbalFile) as e:           # a .pkl named directly
        load(splits["IEMOCAP-DA"], "video", tmp_path / "swin.pkl", store)
    one_line(e, str(tmp_path / "swin.pkl"), "<folder>/swin_feats.pkl")
    assert no_entry(store)


def test_not_a_dict(splits, store, tmp_path):
    file = write_pickle(tmp_path / "swin_feats.pkl", [np.zeros((3, 1024), np.float32)])
    with pytest.raises(NonverbalDataError) as e:
        load(splits["IEMOCAP-DA"], "video", tmp_path, store)
    one_line(e, str(file), "holds a list, not a dict")
    assert no_entry(store)


def test_damaged_pickle(splits, store, tmp_path):
    file, _ = make_file(tmp_path, splits["IEMOCAP-DA"], "audio", [3] * 5)
    file.write_bytes(file.read_bytes()[:100])                    # cut short
    with pytest.raises(NonverbalDataError) as e:
        load(splits["IEMOCAP-DA"], "audio", file, store)
    one_line(e, str(file), "cannot be unpickled", "download it again")


def test_missing_keys_named(splits, store, tmp_path):
    split = splits["MIntRec2.0"]
    file, _ = make_file(tmp_path, split, "audio", [3] * 5)
    data = pickle.loads(file.read_bytes())
    gone = [mintrec2_key(k) for k in split.keys[1:3]]
    for k in gone:
        del data[k]
    write_pickle(file, data)
    with pytest.raises(NonverbalDataError) as e:
        load(split, "audio", file, store)
    one_line(e, str(file), "2 of the 5 MIntRec2.0/dev samples", f"({gone[0]}, {gone[1]})",
             "dia<Dialogue_id>_utt<Utterance_id>")
    assert no_entry(store)


def test_data_layer_keys_given_to_a_mintrec2_file(splits, store, tmp_path):
    """A pickle keyed like the data layer ('2_0') instead of the release ('dia2_utt0')."""
    split = splits["MIntRec2.0"]
    data = {k: np.zeros((3, 256), np.float32) for k in split.keys}
    file = write_pickle(tmp_path / "v.pkl", data)
    with pytest.raises(NonverbalDataError) as e:
        load(split, "video", file, store)
    one_line(e, "5 of the 5", mintrec2_key(split.keys[0]), f"e.g. {split.keys[0]}")


BAD_VALUES = {
    "wrong dim": (lambda x: x[:, :100], "has shape (6, 100), expected (T, 768)"),
    "rank 1": (lambda x: x[0], "has shape (768,), expected (T, 768)"),
    "rank 3": (lambda x: np.stack([x, x]), "has shape (2, 6, 768), expected (T, 768)"),
    "no frames": (lambda x: x[:0], "has 0 frames"),
    "nan": (lambda x: np.where(np.arange(6)[:, None] == 4, np.nan, x),
            "has 768 NaN/inf values (first in frame 4)"),
    "inf": (lambda x: np.where((np.arange(6)[:, None] == 2) & (np.arange(768) < 3), -np.inf, x),
            "has 3 NaN/inf values (first in frame 2)"),
    "strings": (lambda x: np.array([["a"] * 768] * 6), "holds <U1 values, not numbers"),
    "ragged": (lambda x: [[1.0, 2.0], [3.0]], "is not a numeric array"),
    "fp16 range": (lambda x: x * 1e5, "beyond float16's 65504"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_value_names_the_key(case, splits, store, tmp_path):
    split = splits["MIntRec2.0"]
    file, xs = make_file(tmp_path, split, "audio", [6] * 5)
    data = pickle.loads(file.read_bytes())
    bad_key = mintrec2_key(split.keys[3])
    make_bad, expect = BAD_VALUES[case]
    data[bad_key] = make_bad(xs[3].copy())
    write_pickle(file, data)
    with pytest.raises(NonverbalDataError) as e:
        load(split, "audio", file, store, chunk_size=2)
    one_line(e, str(file), f"key {bad_key!r}", expect)
    assert no_entry(store) and not list(store.root.rglob("*.done"))   # nothing half-written


def test_wrong_modality_file(splits, store, tmp_path):
    """The audio file passed for video: the first key is named with its shape."""
    split = splits["IEMOCAP-DA"]
    file, _ = make_file(tmp_path, split, "audio", [4] * 5)
    with pytest.raises(NonverbalDataError) as e:
        load(split, "video", file, store)
    one_line(e, f"key {split.keys[0]!r}", "has shape (4, 768), expected (T, 1024)",
             "IEMOCAP-DA's video file (swin_feats.pkl")


def test_unknown_dataset_or_modality(splits, store, tmp_path):
    with pytest.raises(NonverbalDataError) as e:
        load(splits["IEMOCAP-DA"], "text", tmp_path, store)
    one_line(e, "modality must be one of ('video', 'audio')")
    other = MIRSplit("MyData", "dev", ("a",), splits["IEMOCAP-DA"].frame)
    with pytest.raises(NonverbalDataError) as e:
        load(other, "video", tmp_path, store)
    one_line(e, "no video feature format is registered for dataset 'MyData'", "register_source")
    with pytest.raises(NonverbalDataError) as e:
        mintrec2_key("Ses01F_impro01_F000")
    one_line(e, "'Ses01F_impro01_F000'", "'<Dialogue_id>_<Utterance_id>'")


def test_register_a_format_of_your_own(splits, store, tmp_path, monkeypatch):
    monkeypatch.setattr(nv, "NONVERBAL_SOURCES", dict(NONVERBAL_SOURCES))
    base = splits["IEMOCAP-DA"]
    mine = MIRSplit("MyData", "dev", base.labels, base.frame)
    src = register_source(NonverbalSource("MyData", "video", "feats/openface.pkl", 35, 8,
                                          key_fn=str.lower, key_format="lower-case keys"))
    assert src.encoder == "openface" and nv.get_source("MyData", "video") is src
    with pytest.raises(ValueError, match="already registered"):
        register_source(src)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((t, 35)).astype(np.float32) for t in (3, 8, 12, 1, 5)]
    write_pickle(tmp_path / "feats" / "openface.pkl",
                 {k.lower(): x for k, x in zip(mine.keys, xs)})
    assert_exact(load(mine, "video", tmp_path, store), expected(xs, 8))
