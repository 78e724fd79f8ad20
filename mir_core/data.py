"""Datasets of the workspace: MIntRec2.0, IEMOCAP-DA (both with the LGSRR release's
VideoLLaMA2 descriptions and GPT-3.5 ranks) and MIntRec (v1, text and labels only).

A sample joins: key, text, label, the three released descriptions (Speakers' Actions;
Emotions and Facial Expressions; Interaction with Others) and, for train, the LLM
ranking of the three aspects.

    >>> root = download("MIntRec2.0")            # data/lgsrr, checksums verified
    >>> train = load_split("MIntRec2.0", "train", root)
    >>> train.texts[:2], train.label_ids[:2], train.rank_order[:2]

Every malformed input raises :class:`DataError` naming the file, the line and the field.
"""
from __future__ import annotations

import csv
import hashlib
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths

# The three fine-grained semantic aspects selected by LGSRR's CoT step 1 (paper Sec. 3.1),
# in the fixed order used everywhere in the workspace: A, E, I.
ASPECTS: tuple[str, str, str] = (
    "Speakers' Actions",
    "Emotions and Facial Expressions",
    "Interaction with Others",
)
ASPECT_SHORT: tuple[str, str, str] = ("A", "E", "I")
# Spellings of the aspect names met in the released files and in LLM replies.
_ASPECT_ALIASES = {
    "speakers' actions": 0, "speakers actions": 0, "speaker's actions": 0, "speaker actions": 0,
    "speakers’ actions": 0, "actions": 0,
    "emotions and facial expressions": 1, "facial expressions": 1, "emotions": 1,
    "expressions": 1,
    "interaction with others": 2, "interactions with others": 2, "interaction": 2,
    "interactions": 2,
}


def aspect_index(name: str) -> int:
    """Index (0=A, 1=E, 2=I) of an aspect name, tolerant to the spelling variants."""
    key = " ".join(str(name).strip().strip(".:*").lower().split())
    if key not in _ASPECT_ALIASES:
        raise KeyError(f"unknown aspect name {name!r}; expected one of {list(ASPECTS)}")
    return _ASPECT_ALIASES[key]


UPSTREAM_COMMIT = "8766b6b47b254a7ae32a41d0b8a5715ad5c84e55"
UPSTREAM_URL = "https://raw.githubusercontent.com/thuiar/LGSRR/{commit}/data/{path}"

# sha256 of the upstream files at UPSTREAM_COMMIT (relative to its data/ folder).
SHA256 = {
    "data_desc/iemocap_da/dev.tsv": "f24767b090a6b310a37eaf313c80360ea8466551088c1a35af0afea9dfa5fe5c",
    "data_desc/iemocap_da/test.tsv": "4982b17a976dd508b48ebebbca038284781b9ee270132e1cee5c87c0fc0a3970",
    "data_desc/iemocap_da/train.tsv": "3398e2495375d5e74090f7f812bb97e736a8c175ef4f7b28510da4115815e1b8",
    "data_desc/mintrec2.0/dev.tsv": "49e6e2288d63cd716373790661df771a9b1393243746794113875299e8ed21eb",
    "data_desc/mintrec2.0/test.tsv": "73b8a868d167e6b775bd700a3eb4715436f941c36eea2a02ae0c7350cd9d1a35",
    "data_desc/mintrec2.0/train.tsv": "88e4bf2116f7dac2f110ab3a285fa204bc9ee90a135e6fcae8b8e31fc8e1c423",
    "data_rank/rank_iemocap_da_train.tsv": "e94c0305e3a5b4f89504d328b604992395e22564c707e04ec11ff9b905269f13",
    "data_rank/rank_mintrec2_train.tsv": "4dff8a683eb32efbd6a57f8c7aedd685a57e87ca0feabd2c51bc879a1b6882db",
    "data_text/IEMOCAP-DA/dev.tsv": "6f174d86b63ed0701d2d93147fe935a01c9ee89499a929c9f3ad174034742d90",
    "data_text/IEMOCAP-DA/test.tsv": "dedf02af662c20ff6623c6d1588a034b8a75a6468f5f36744984ca1f026acc22",
    "data_text/IEMOCAP-DA/train.tsv": "bfb84cb2acdbfa7f64570013aaf5098d0016f5e13941f40ca5ebfd700d269b38",
    "data_text/MIntRec2.0/dev.tsv": "d8e8c06293dd5957bea1ccfe42964ec0997646ee6fa48965525d8fb7db102ce2",
    "data_text/MIntRec2.0/test.tsv": "2c3ac0886dc7732e8e2370dff32b7fd329b5da643391a2850c63ffc9cb79fb74",
    "data_text/MIntRec2.0/train.tsv": "da1587ef5047e7897d0d590e91e22bcd090f02236134d2f75f6e625f7d15917b",
}

SPLITS = ("train", "dev", "test")

MINTREC2_LABELS = (
    "Acknowledge", "Advise", "Agree", "Apologise", "Arrange", "Ask for help",
    "Asking for opinions", "Care", "Comfort", "Complain", "Confirm", "Criticize", "Doubt",
    "Emphasize", "Explain", "Flaunt", "Greet", "Inform", "Introduce", "Invite", "Joke",
    "Leave", "Oppose", "Plan", "Praise", "Prevent", "Refuse", "Taunt", "Thank", "Warn",
)
# IEMOCAP-DA dialogue-act codes (Saha et al. 2020) and their names.
IEMOCAP_DA_CODES = {
    "g": "Greeting", "q": "Question", "ans": "Answer", "o": "Statement-opinion",
    "s": "Statement-non-opinion", "ap": "Apology", "c": "Command", "ag": "Agreement",
    "dag": "Disagreement", "a": "Acknowledge", "b": "Backchannel", "oth": "Others",
}
MINTREC_LABELS = (  # MIntRec (v1): 11 "express emotions or attitudes" + 9 "achieve goals"
    "Complain", "Praise", "Apologise", "Thank", "Criticize", "Agree", "Taunt", "Flaunt",
    "Joke", "Oppose", "Comfort", "Care", "Inform", "Advise", "Arrange", "Introduce",
    "Leave", "Prevent", "Greet", "Ask for help",
)


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the loader needs to know about one dataset's released files."""

    name: str
    labels: tuple[str, ...]
    text_file: str                    # relative to the root, with {split}
    key_columns: tuple[str, ...]      # key of a sample in the text file
    text_column: str
    label_column: str
    sizes: dict[str, int]             # expected rows per split (documentation + sanity)
    desc_file: str | None = None      # relative path with {split}
    desc_key_columns: tuple[str, ...] = ()
    desc_columns: tuple[str, str, str] | None = None   # A, E, I column names
    rank_file: str | None = None      # train only
    rank_key_columns: tuple[str, ...] = ()
    label_codes: dict[str, str] | None = None           # file code -> label name
    extra_columns: tuple[str, ...] = ()
    text_len: int = 50                # paper's l_T (Sec. 4.1)
    desc_len: int = 50                # paper's l_D
    upstream: bool = True             # files downloadable from the LGSRR release

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def files(self, split: str | None = None) -> list[str]:
        out = []
        for s in SPLITS if split is None else (split,):
            out.append(self.text_file.format(split=s))
            if self.desc_file:
                out.append(self.desc_file.format(split=s))
            if self.rank_file and s == "train":
                out.append(self.rank_file)
        return out


DATASETS: dict[str, DatasetSpec] = {
    "MIntRec2.0": DatasetSpec(
        name="MIntRec2.0", labels=MINTREC2_LABELS,
        text_file="data_text/MIntRec2.0/{split}.tsv", key_columns=("Dialogue_id", "Utterance_id"),
        text_column="Text", label_column="Label",
        sizes={"train": 6165, "dev": 1106, "test": 2033},
        desc_file="data_desc/mintrec2.0/{split}.tsv",
        desc_key_columns=("Dialogue_id", "Utterance_id"),
        desc_columns=("Speakers Actions", "Emotions and Facial Expressions", "Interaction with Others"),
        rank_file="data_rank/rank_mintrec2_train.tsv", rank_key_columns=("Dia", "Utt"),
        extra_columns=("Start_timestamp", "End_timestamp", "Source", "speaker_name"),
        text_len=30, desc_len=50,
    ),
    "IEMOCAP-DA": DatasetSpec(
        name="IEMOCAP-DA", labels=tuple(IEMOCAP_DA_CODES.values()),
        text_file="data_text/IEMOCAP-DA/{split}.tsv", key_columns=("TURN",),
        text_column="UTTERANCE", label_column="DA",
        sizes={"train": 6590, "dev": 942, "test": 1884},
        desc_file="data_desc/iemocap_da/{split}.tsv", desc_key_columns=("TURN",),
        desc_columns=("Speakers' Actions", "Emotions and Facial Expressions", "Interaction with Others"),
        rank_file="data_rank/rank_iemocap_da_train.tsv", rank_key_columns=("Turn",),
        label_codes=IEMOCAP_DA_CODES, extra_columns=("EMOTION",),
        text_len=70, desc_len=50,
    ),
    "MIntRec": DatasetSpec(
        name="MIntRec", labels=MINTREC_LABELS,
        text_file="data_text/MIntRec/{split}.tsv", key_columns=("season", "episode", "clip"),
        text_column="text", label_column="label",
        sizes={"train": 1334, "dev": 445, "test": 445}, text_len=30, upstream=False,
    ),
}
_ALIASES = {k.lower().replace("-", "").replace("_", "").replace(".", ""): k for k in DATASETS}
_ALIASES.update({"mintrec2": "MIntRec2.0", "iemocap": "IEMOCAP-DA", "mintrec1": "MIntRec"})


def get_spec(name: str) -> DatasetSpec:
    """Dataset spec by name; tolerant to case and punctuation ('mintrec2', 'iemocap_da')."""
    if isinstance(name, DatasetSpec):
        return name
    key = str(name).lower().replace("-", "").replace("_", "").replace(".", "").replace(" ", "")
    if key not in _ALIASES:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[_ALIASES[key]]


class DataError(ValueError):
    """Malformed dataset input; the message names the file, line and field."""


# --------------------------------------------------------------------------- download
def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch_url(url: str, target: Path, timeout: float) -> None:
    tmp = target.with_suffix(target.suffix + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
        shutil.copyfileobj(r, f)
    tmp.replace(target)


def download(name: str, dest: str | Path | None = None, *, mirror: str | Path | None = None,
             offline: bool | None = None, timeout: float = 20.0, verify: bool = True,
             log=print) -> Path:
    """Fetch a dataset's released files into ``dest`` (default ``$MIR_DATA_DIR/lgsrr``).

    Files already present with the right checksum are kept. Others come from the LGSRR
    repository at its pinned commit; when the network is unreachable (or ``offline``),
    from the local mirror folder ``mirror`` / ``$MIR_DATA_MIRROR`` with the upstream layout.
    Every file is checked against its sha256. Returns the dataset root to pass to
    :func:`load_split`.
    """
    spec = get_spec(name)
    root = Path(dest) if dest is not None else paths.data_dir() / "lgsrr"
    mirror_root = paths.mirror_dir(mirror)
    offline = paths.offline() if offline is None else offline
    network_failed: str | None = None
    for rel in spec.files():
        target = root / rel
        expected = SHA256.get(rel) if verify else None
        if target.exists() and (expected is None or sha256_of(target) == expected):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        got = False
        if spec.upstream and not offline and network_failed is None:
            url = UPSTREAM_URL.format(commit=UPSTREAM_COMMIT, path=rel)
            try:
                _fetch_url(url, target, timeout)
                got = True
                log(f"downloaded {rel}")
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                network_failed = f"{type(e).__name__}: {e}"
                log(f"network unreachable ({network_failed}); using the local mirror")
        if not got:
            src = mirror_root / rel if mirror_root else None
            if src is None or not src.exists():
                how = ("set MIR_DATA_MIRROR to a folder holding the upstream files"
                       if spec.upstream else
                       f"{spec.name} is distributed by its authors (see the thuiar/{spec.name} "
                       f"repository); put its TSV files at {root / rel} or in a mirror folder "
                       "named by MIR_DATA_MIRROR")
                reason = ("offline" if offline else network_failed or "no upstream URL")
                raise FileNotFoundError(
                    f"cannot get {rel} for {spec.name}: {reason}; mirror "
                    f"{'not set' if mirror_root is None else str(src) + ' missing'}. {how}.")
            shutil.copyfile(src, target)
            log(f"copied {rel} from mirror {mirror_root}")
        if expected is not None:
            actual = sha256_of(target)
            if actual != expected:
                target.unlink()
                raise DataError(f"{rel}: sha256 {actual} does not match the release's "
                                f"{expected}; the file was removed")
    return root


# --------------------------------------------------------------------------- loading
def _read_tsv(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found (run download() first)")
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False,
                           quoting=csv.QUOTE_NONE, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable TSV file ({e})") from e


def _require_columns(df: pd.DataFrame, cols, path: Path) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} (found: {list(df.columns)})")


def _keys(df: pd.DataFrame, cols) -> list[str]:
    parts = [df[c].str.strip() for c in cols]
    out = parts[0]
    for p in parts[1:]:
        out = out + "_" + p
    return out.tolist()


def _check_duplicates(keys: list[str], path: Path) -> None:
    seen: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k in seen:
            raise DataError(f"{path} lines {seen[k] + 2} and {i + 2}: duplicate key {k!r}")
        seen[k] = i


def _check_aligned(keys: list[str], other: list[str], path: Path, ref: Path) -> None:
    if len(other) != len(keys):
        raise DataError(f"{path}: {len(other)} rows but {ref} has {len(keys)}; the rows "
                        "must align one to one, in the same order")
    for i, (a, b) in enumerate(zip(keys, other)):
        if a != b:
            raise DataError(f"{path} line {i + 2}: key {b!r} does not match {ref} line "
                            f"{i + 2} key {a!r} (wrong key or order)")


@dataclass
class MIRSplit:
    """One split of a dataset, row-aligned arrays ready for feature extraction."""

    dataset: str
    split: str
    labels: tuple[str, ...]
    frame: pd.DataFrame = field(repr=False)   # key, text, label, label_id, desc_*, extras

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def keys(self) -> list[str]:
        return self.frame["key"].tolist()

    @property
    def texts(self) -> list[str]:
        return self.frame["text"].tolist()

    @property
    def label_ids(self) -> np.ndarray:
        return np.array(self.frame["label_id"], dtype=np.int64)

    @property
    def has_descriptions(self) -> bool:
        return "desc_A" in self.frame.columns

    def descriptions(self, aspect: int | str) -> list[str]:
        """Descriptions of one aspect (index 0/1/2, short name A/E/I or full name)."""
        if not self.has_descriptions:
            raise DataError(f"{self.dataset} has no released descriptions")
        idx = ASPECT_SHORT.index(aspect) if aspect in ASPECT_SHORT else (
            aspect if isinstance(aspect, int) else aspect_index(aspect))
        return self.frame[f"desc_{ASPECT_SHORT[idx]}"].tolist()

    @property
    def has_ranks(self) -> bool:
        return "rank" in self.frame.columns

    @property
    def rank_order(self) -> np.ndarray:
        """(N, 3) aspect indices from most to least important (LLM rank, train only)."""
        if not self.has_ranks:
            raise DataError(f"{self.dataset}/{self.split} has no LLM ranks (train only)")
        return np.asarray(self.frame["rank"].tolist(), dtype=np.int64).reshape(len(self), 3)

    def subset(self, n: int | None, seed: int = 0, stratify: bool = True) -> "MIRSplit":
        """A reproducible sample of n rows (all rows when n is None or >= len)."""
        if n is None or n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        if stratify:
            # round-robin over labels so every label appears when n >= num_labels
            by_label = {lab: rng.permutation(np.flatnonzero(self.label_ids == lab)).tolist()
                        for lab in np.unique(self.label_ids)}
            order: list[int] = []
            while len(order) < n:
                for lab in list(by_label):
                    if by_label[lab] and len(order) < n:
                        order.append(by_label[lab].pop())
            idx = np.sort(np.asarray(order))
        else:
            idx = np.sort(rng.choice(len(self), size=n, replace=False))
        return MIRSplit(self.dataset, self.split, self.labels,
                        self.frame.iloc[idx].reset_index(drop=True))


def load_split(name: str, split: str, root: str | Path | None = None) -> MIRSplit:
    """Load and validate one split; raises DataError naming file/line/field on bad input."""
    spec = get_spec(name)
    if split not in SPLITS:
        raise KeyError(f"unknown split {split!r}; expected one of {SPLITS}")
    root = Path(root) if root is not None else paths.data_dir() / "lgsrr"
    text_path = root / spec.text_file.format(split=split)
    df = _read_tsv(text_path)
    _require_columns(df, (*spec.key_columns, spec.text_column, spec.label_column), text_path)
    keys = _keys(df, spec.key_columns)
    _check_duplicates(keys, text_path)

    label_to_id = {lab: i for i, lab in enumerate(spec.labels)}
    codes = spec.label_codes or {}
    label_names, label_ids = [], []
    for i, raw in enumerate(df[spec.label_column].str.strip()):
        lab = codes.get(raw, raw) if codes else raw
        if lab not in label_to_id:
            known = list(codes) if codes else list(spec.labels)
            raise DataError(f"{text_path} line {i + 2}: field {spec.label_column!r} has unknown "
                            f"label {raw!r} (known: {known})")
        label_names.append(lab)
        label_ids.append(label_to_id[lab])
    texts = df[spec.text_column].str.strip()
    for i, t in enumerate(texts):
        if not t:
            raise DataError(f"{text_path} line {i + 2}: field {spec.text_column!r} is empty")

    frame = pd.DataFrame({"key": keys, "text": texts.tolist(), "label": label_names,
                          "label_id": label_ids})
    for c in spec.extra_columns:
        if c in df.columns:
            frame[c] = df[c].tolist()

    if spec.desc_file:
        desc_path = root / spec.desc_file.format(split=split)
        ddf = _read_tsv(desc_path)
        _require_columns(ddf, (*spec.desc_key_columns, *spec.desc_columns), desc_path)
        _check_aligned(keys, _keys(ddf, spec.desc_key_columns), desc_path, text_path)
        for short, col in zip(ASPECT_SHORT, spec.desc_columns):
            values = ddf[col].str.strip()
            for i, v in enumerate(values):
                if not v:
                    raise DataError(f"{desc_path} line {i + 2}: field {col!r} is empty")
            frame[f"desc_{short}"] = values.tolist()

    if spec.rank_file and split == "train":
        rank_path = root / spec.rank_file
        rdf = _read_tsv(rank_path)
        rank_cols = ("Rank_First", "Rank_Second", "Rank_Third")
        _require_columns(rdf, (*spec.rank_key_columns, *rank_cols), rank_path)
        rkeys = _keys(rdf, spec.rank_key_columns)
        _check_duplicates(rkeys, rank_path)
        if len(rkeys) < len(keys):
            missing = next(k for k in keys if k not in set(rkeys))
            line = keys.index(missing) + 2
            raise DataError(f"{rank_path}: no rank for train sample {missing!r} ({text_path} "
                            f"line {line}); every train sample needs an LLM rank")
        _check_aligned(keys, rkeys, rank_path, text_path)
        ranks = []
        for i, row in enumerate(rdf[list(rank_cols)].itertuples(index=False)):
            try:
                order = [aspect_index(v) for v in row]
            except KeyError as e:
                raise DataError(f"{rank_path} line {i + 2}: {e.args[0]}") from None
            if sorted(order) != [0, 1, 2]:
                raise DataError(f"{rank_path} line {i + 2}: ranks {list(row)} are not a "
                                "permutation of the three aspects")
            ranks.append(tuple(order))
        frame["rank"] = ranks
    return MIRSplit(spec.name, split, spec.labels, frame)


def load_dataset(name: str, root: str | Path | None = None) -> dict[str, MIRSplit]:
    """All three splits of a dataset."""
    return {s: load_split(name, s, root) for s in SPLITS}
