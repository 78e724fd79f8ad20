"""Datasets of the workspace: MIntRec2.0, IEMOCAP-DA (both with the LGSRR release's
VideoLLaMA2 descriptions and GPT-3.5 ranks), MIntRec (v1, text and labels only) and any
dataset of your own described by a small spec file (docs/BRING_YOUR_OWN_DATA.md).

A sample joins: key, text, label, the three released descriptions (Speakers' Actions;
Emotions and Facial Expressions; Interaction with Others) and, for train, the LLM
ranking of the three aspects.

    >>> root = download("MIntRec2.0")            # data/lgsrr, checksums verified
    >>> train = load_split("MIntRec2.0", "train", root)
    >>> train.texts[:2], train.label_ids[:2], train.rank_order[:2]

Every malformed input raises :class:`DataError` naming the file, the line and the field.
Across the splits of a dataset, :func:`load_split` / :func:`load_dataset` also check

* sizes: where the dataset has published split sizes, a file with another row count
  raises :class:`SplitSizeError` (a file cut short, a damaged copy);
* leaks: a sample key found in two splits raises :class:`SplitLeakError`;

both allowed for a deliberate custom split with ``custom_splits=True`` or the environment
variable ``MIR_CUSTOM_SPLITS=1`` (``MIR_CUSTOM_SPLITS=0`` makes every deviation an error,
see :func:`load_split` for the default). A missing file raises :class:`MissingDataFile`
(a ``FileNotFoundError``) naming the expected layout.

Your own dataset: ``register_dataset(DatasetSpec(...))`` in code, or a spec file
``<root>/<name>/dataset.json`` (or ``.yaml``), or any spec file named by
``MIR_DATASET_SPEC``; see :func:`load_spec_file` for the fields.
"""
from __future__ import annotations

import csv
import dataclasses
import difflib
import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths

BYO_DOC = "docs/BRING_YOUR_OWN_DATA.md"

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


RANK_COLUMNS: tuple[str, str, str] = ("Rank_First", "Rank_Second", "Rank_Third")

# Checksum status of one file (verify_files, notebook 01).
VERIFIED = "verified"
MISMATCH = "mismatch"
UNPUBLISHED = "no published checksum"
MISSING = "missing"


class DataError(ValueError):
    """Malformed dataset input; the message names the file, line and field."""


def one_line(e: BaseException, limit: int | None = None) -> str:
    """An error's message as one line (a KeyError's own text, whitespace folded), cut at a
    word with ' …' past ``limit`` characters."""
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    text = " ".join(msg.split())
    if limit is None or len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " …"


class MissingDataFile(DataError, FileNotFoundError):
    """A dataset file is not where the loader looks; the message gives the layout."""


class SplitSizeError(DataError):
    """A split file's row count differs from the dataset's published size."""


class SplitLeakError(DataError):
    """The same sample key is in two splits (evaluation data leaking into training)."""


class DatasetSpecError(DataError):
    """A dataset spec (spec file or ``register_dataset`` argument) is invalid."""


class DataWarning(UserWarning):
    """A deviation the loader accepts but reports (e.g. a cut that looks deliberate)."""


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the loader needs to know about one dataset's files.

    File paths are relative to the data root passed to :func:`load_split` or, when
    ``base_dir`` is set (specs read from a spec file: its folder), to ``base_dir``."""

    name: str
    labels: tuple[str, ...]
    text_file: str                    # relative path with {split}
    key_columns: tuple[str, ...]      # key of a sample in the text file (() = row numbers)
    text_column: str
    label_column: str
    sizes: dict[str, int]             # published rows per split ({} = none published)
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
    rank_columns: tuple[str, str, str] = RANK_COLUMNS   # first, second, third aspect
    base_dir: str | None = None       # folder the paths are relative to (None: the root)
    source: str | None = None         # spec file it was read from (None: built in / code)
    labels_inferred: bool = False     # labels read from the train file (sorted)
    custom_splits: bool = False       # splits deliberately custom: sizes/leaks only noted
    notes: tuple[str, ...] = ()       # what the loader decided for you (shown by notebook 01)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def has_descriptions(self) -> bool:
        return bool(self.desc_file)

    @property
    def has_ranks(self) -> bool:
        return bool(self.rank_file)

    def base(self, root: str | Path | None = None) -> Path:
        """The folder this dataset's relative paths start from."""
        if self.base_dir:
            return Path(self.base_dir)
        return Path(root) if root is not None else paths.data_dir() / "lgsrr"

    def path(self, root: str | Path | None, rel: str) -> Path:
        return self.base(root) / rel

    def file_roles(self, split: str | None = None) -> list[tuple[str, str, str]]:
        """(split, role, relative path) of every file; role: text, descriptions, ranks."""
        out = []
        for s in SPLITS if split is None else (split,):
            out.append((s, "text", self.text_file.format(split=s)))
            if self.desc_file:
                out.append((s, "descriptions", self.desc_file.format(split=s)))
            if self.rank_file and s == "train":
                out.append((s, "ranks", self.rank_file.format(split=s)))
        return out

    def files(self, split: str | None = None) -> list[str]:
        return [rel for _, _, rel in self.file_roles(split)]


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
BUILTIN_DATASETS = frozenset(DATASETS)


def _norm(name: str) -> str:
    return (str(name).lower().replace("-", "").replace("_", "").replace(".", "")
            .replace(" ", ""))


_ALIASES = {_norm(k): k for k in DATASETS}
_ALIASES.update({"mintrec2": "MIntRec2.0", "iemocap": "IEMOCAP-DA", "mintrec1": "MIntRec"})
_BUILTIN_KEYS = frozenset(_ALIASES)


# --------------------------------------------------------------------------- your own data
SPEC_FILE_NAMES = ("dataset.json", "dataset.yaml", "dataset.yml")
_SPEC_SUFFIXES = (".json", ".yaml", ".yml")
# field -> (kind, default); kinds: str, opt_str, columns, columns3, labels, sizes, codes, int,
# bool, text. Fields starting with "_" are comments and ignored.
_SPEC_FIELDS: dict[str, tuple[str, object]] = {
    "name": ("str", None),                     # default: the spec file's folder name
    "text_file": ("str", "{split}.tsv"),
    "text_column": ("str", "text"),
    "label_column": ("str", "label"),
    "key_columns": ("columns", ()),
    "labels": ("labels", None),                # default: label_codes' names, else inferred
    "label_codes": ("codes", None),
    "sizes": ("sizes", {}),
    "desc_file": ("opt_str", None),
    "desc_key_columns": ("columns", None),     # default: key_columns
    "desc_columns": ("columns3", None),
    "rank_file": ("opt_str", None),
    "rank_key_columns": ("columns", None),     # default: key_columns
    "rank_columns": ("columns3", RANK_COLUMNS),
    "extra_columns": ("columns", ()),
    "text_len": ("int", 50),
    "desc_len": ("int", 50),
    "custom_splits": ("bool", False),
    "description": ("text", None),             # free text, ignored by the loader
}


def _field_value(kind: str, key: str, value, where: str):
    def bad(expected: str):
        return DatasetSpecError(f"{where}: field {key!r} must be {expected}, got {value!r}")

    if kind in ("str", "opt_str", "text"):
        if value is None and kind != "str":
            return None
        if not isinstance(value, str) or (kind != "text" and not value.strip()):
            raise bad("a non-empty string")
        return value if kind == "text" else value.strip()
    if kind in ("columns", "columns3", "labels"):
        if isinstance(value, str) and kind == "columns":
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, str) and v.strip() for v in value):
            raise bad("a list of non-empty strings")
        if kind == "columns3" and len(value) != 3:
            raise bad("a list of three column names (first, second, third / A, E, I)")
        return tuple(v.strip() for v in value)
    if kind == "sizes":
        if not isinstance(value, dict):
            raise bad(f"an object with row counts for {list(SPLITS)}")
        return dict(value)
    if kind == "codes":
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise bad("an object mapping the label codes in the file to label names")
        return {k.strip(): v.strip() for k, v in value.items()}
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    raise AssertionError(kind)


def _check_template(where: str, key: str, value: str | None, needs_split: bool) -> None:
    if value is None:
        return
    try:
        value.format(split="train")
    except (KeyError, IndexError, ValueError) as e:
        raise DatasetSpecError(f"{where}: field {key!r} = {value!r} may only contain the "
                               f"placeholder {{split}} ({type(e).__name__}: {e})") from None
    if needs_split and "{split}" not in value:
        raise DatasetSpecError(f"{where}: field {key!r} = {value!r} must contain {{split}} "
                               "(e.g. \"{split}.tsv\" for train.tsv, dev.tsv, test.tsv)")


def validate_spec(spec: DatasetSpec) -> DatasetSpec:
    """Check a spec's fields; raises :class:`DatasetSpecError` naming the field."""
    where = spec.source or f"dataset spec {spec.name!r}"
    if not isinstance(spec.name, str) or not _norm(spec.name) or "/" in spec.name:
        raise DatasetSpecError(f"{where}: field 'name' must be a non-empty name without "
                               f"'/', got {spec.name!r}")
    labels = spec.labels
    if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        raise DatasetSpecError(f"{where}: field 'labels' must be a non-empty list of "
                               f"label names, got {labels!r}")
    dups = sorted({x for x in labels if list(labels).count(x) > 1})
    if dups:
        raise DatasetSpecError(f"{where}: field 'labels' lists {dups} more than once")
    for key in ("text_column", "label_column"):
        if not isinstance(getattr(spec, key), str) or not getattr(spec, key).strip():
            raise DatasetSpecError(f"{where}: field {key!r} must be a column name")
    _check_template(where, "text_file", spec.text_file, needs_split=True)
    _check_template(where, "desc_file", spec.desc_file, needs_split=True)
    _check_template(where, "rank_file", spec.rank_file, needs_split=False)
    bad_sizes = {k: v for k, v in (spec.sizes or {}).items()
                 if k not in SPLITS or isinstance(v, bool) or not isinstance(v, int) or v <= 0}
    if bad_sizes:
        raise DatasetSpecError(f"{where}: field 'sizes' must give positive row counts for "
                               f"{list(SPLITS)}; bad: {bad_sizes}")
    if spec.desc_file and (not spec.desc_columns or len(spec.desc_columns) != 3):
        raise DatasetSpecError(f"{where}: 'desc_file' needs 'desc_columns', the three "
                               "description columns in the order Speakers' Actions, Emotions "
                               "and Facial Expressions, Interaction with Others")
    if spec.desc_columns and not spec.desc_file:
        raise DatasetSpecError(f"{where}: 'desc_columns' given without 'desc_file'")
    if spec.rank_file and len(spec.rank_columns) != 3:
        raise DatasetSpecError(f"{where}: 'rank_columns' must name three columns")
    if spec.label_codes:
        unknown = sorted(set(spec.label_codes.values()) - set(labels))
        if unknown:
            raise DatasetSpecError(f"{where}: 'label_codes' maps to {unknown}, which are "
                                   f"not in 'labels' {list(labels)}")
    for key in ("text_len", "desc_len"):
        v = getattr(spec, key)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise DatasetSpecError(f"{where}: field {key!r} must be a positive whole number")
    return spec


def register_dataset(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Make a dataset known to :func:`get_spec` (and so to every notebook and the CLI) for
    this process. The name must not be a built-in one; registering another spec under a
    name already registered needs ``replace=True``. ``upstream`` is only honoured for
    files of the LGSRR release (others cannot be downloaded). Returns the stored spec."""
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"register_dataset expects a DatasetSpec, got {type(spec).__name__}")
    if spec.upstream and not all(rel in SHA256 for rel in spec.files()):
        spec = dataclasses.replace(spec, upstream=False)
    validate_spec(spec)
    key = _norm(spec.name)
    if key in _BUILTIN_KEYS:
        raise DatasetSpecError(f"{spec.source or 'register_dataset'}: {spec.name!r} is the "
                               f"name of a built-in dataset ({_ALIASES[key]}); choose another "
                               "name for your dataset")
    current = DATASETS.get(_ALIASES.get(key, ""))
    if current is not None and current != spec:
        if not replace:
            raise DatasetSpecError(
                f"a dataset named {current.name!r} is already registered (from "
                f"{current.source or 'code'}); pass replace=True to replace it")
        del DATASETS[current.name]
    DATASETS[spec.name] = spec
    _ALIASES[key] = spec.name
    return spec


def _parse_spec_text(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise DatasetSpecError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); "
                                   "or write the spec as dataset.json") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise DatasetSpecError(f"{path}{at}: not valid YAML ({e})") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetSpecError(f"{path} line {e.lineno} column {e.colno}: not valid "
                                   f"JSON ({e.msg})") from None
    if not isinstance(raw, dict):
        raise DatasetSpecError(f"{path}: a dataset spec must be an object with fields "
                               f"{sorted(_SPEC_FIELDS)}, got {type(raw).__name__}")
    return raw


def _spec_file_in(folder: Path) -> Path | None:
    for n in SPEC_FILE_NAMES:
        if (folder / n).is_file():
            return folder / n
    return None


def load_spec_file(path: str | Path) -> DatasetSpec:
    """Read (and validate) a dataset spec file, JSON or YAML, or a folder holding
    ``dataset.json``; not registered (:func:`get_spec` does that). Paths in it are relative
    to its folder. Fields (all optional but the files must exist):

    ``name`` (default: the folder name), ``text_file`` (``"{split}.tsv"``), ``text_column``
    (``"text"``), ``label_column`` (``"label"``), ``key_columns`` (columns that identify a
    sample, e.g. ``["season", "episode", "clip"]``; default none: row numbers, and no leak
    check), ``labels`` (default: the names of ``label_codes``, else the train file's labels,
    sorted), ``label_codes``, ``sizes`` (published rows per split, checked), ``desc_file`` +
    ``desc_columns`` (three description columns A, E, I) + ``desc_key_columns``,
    ``rank_file`` (train) + ``rank_columns`` + ``rank_key_columns``, ``extra_columns``,
    ``text_len``, ``desc_len``, ``custom_splits``, ``description`` (free text)."""
    p = Path(path).expanduser()
    if p.is_dir():
        found = _spec_file_in(p)
        if found is None:
            raise DatasetSpecError(f"{p}: no {' / '.join(SPEC_FILE_NAMES)} in this folder "
                                   f"(see {BYO_DOC})")
        p = found
    if not p.is_file():
        raise DatasetSpecError(f"{p}: dataset spec file not found (see {BYO_DOC})")
    p = p.resolve()
    raw = _parse_spec_text(p)
    unknown = [k for k in raw if k not in _SPEC_FIELDS and not str(k).startswith("_")]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), list(_SPEC_FIELDS), n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise DatasetSpecError(f"{p}: unknown field(s) {', '.join(hints)}; known fields: "
                               f"{sorted(_SPEC_FIELDS)}")
    where = str(p)
    v = {}
    for key, (kind, default) in _SPEC_FIELDS.items():
        v[key] = default if key not in raw else _field_value(kind, key, raw[key], where)
    name = v["name"] or (p.parent.name if p.name in SPEC_FILE_NAMES else p.stem)
    key_cols = v["key_columns"]
    notes = []
    if not key_cols:
        notes.append("no key_columns: samples are keyed by row number, so samples shared "
                     "between splits cannot be detected")
    common = dict(
        name=name, text_file=v["text_file"], key_columns=key_cols,
        text_column=v["text_column"], label_column=v["label_column"], sizes=v["sizes"],
        desc_file=v["desc_file"],
        desc_key_columns=key_cols if v["desc_key_columns"] is None else v["desc_key_columns"],
        desc_columns=v["desc_columns"], rank_file=v["rank_file"],
        rank_key_columns=key_cols if v["rank_key_columns"] is None else v["rank_key_columns"],
        rank_columns=v["rank_columns"], label_codes=v["label_codes"],
        extra_columns=v["extra_columns"], text_len=v["text_len"], desc_len=v["desc_len"],
        upstream=False, base_dir=str(p.parent), source=where, custom_splits=v["custom_splits"])
    labels, inferred = v["labels"], False
    if labels is None and v["label_codes"]:
        labels = tuple(dict.fromkeys(v["label_codes"].values()))
        notes.append(f"labels: the {len(labels)} names of label_codes, in their order")
    elif labels is None:
        _check_template(where, "text_file", v["text_file"], needs_split=True)
        probe = DatasetSpec(labels=("?",), notes=(), **common)
        train = probe.path(None, probe.text_file.format(split="train"))
        df = _read_tsv(train, probe)
        _require_columns(df, (probe.label_column,), train, probe)
        labels = tuple(sorted({x for x in df[probe.label_column].str.strip() if x}))
        inferred = True
        notes.append(f"labels: {len(labels)} inferred from {train} (sorted alphabetically; "
                     f"label ids follow this order). List them under \"labels\" in {p.name} "
                     "to fix the order and to catch misspelt labels in dev/test")
    spec = DatasetSpec(labels=tuple(labels), labels_inferred=inferred, notes=tuple(notes),
                       **common)
    return validate_spec(spec)


_SPEC_CACHE: dict[str, tuple[tuple, DatasetSpec]] = {}


def _stat_sig(path: Path) -> tuple:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)


def _use_spec_file(path: Path) -> DatasetSpec:
    """Load (cached by modification time) and register the spec in ``path``."""
    path = path.resolve()
    cached = _SPEC_CACHE.get(str(path))
    spec = None
    if cached is not None:
        deps, spec = cached
        try:
            if any(_stat_sig(Path(f)) != sig for f, sig in deps):
                spec = None
        except OSError:
            spec = None
    if spec is None:
        spec = load_spec_file(path)
        deps = [(str(path), _stat_sig(path))]
        if spec.labels_inferred:
            train = spec.path(None, spec.text_file.format(split="train"))
            deps.append((str(train), _stat_sig(train)))
        _SPEC_CACHE[str(path)] = (tuple(deps), spec)
    return register_dataset(spec, replace=True)


def _find_spec_file(name: str, root: Path) -> Path | None:
    """``<root>/<name>/dataset.json`` (folder name compared loosely) or ``<root>/dataset.json``
    when ``root`` is the dataset's own folder."""
    if not root.is_dir():
        return None
    key = _norm(name)
    exact = _spec_file_in(root / str(name))
    if exact is not None:
        return exact
    try:
        for d in sorted(root.iterdir()):
            if d.is_dir() and _norm(d.name) == key:
                found = _spec_file_in(d)
                if found is not None:
                    return found
    except OSError:
        return None
    own = _spec_file_in(root)
    if own is not None and _norm(root.name) == key:
        return own
    return None


def _env_spec_files() -> list[Path]:
    value = os.environ.get("MIR_DATASET_SPEC", "")
    out = []
    for part in value.split(os.pathsep):
        if part.strip():
            p = Path(part.strip()).expanduser()
            out.append((_spec_file_in(p) or p) if p.is_dir() else p)
    return out


def get_spec(name: str | DatasetSpec, root: str | Path | None = None) -> DatasetSpec:
    """Dataset spec by name; tolerant to case and punctuation ('mintrec2', 'iemocap_da').

    Besides the built-in datasets and those given to :func:`register_dataset`, finds (and
    registers) your own from a spec file: ``name`` itself when it is a path to a spec file
    or folder, ``<root>/<name>/dataset.json`` (``root`` as given, else
    ``$MIR_DATA_DIR/lgsrr`` and ``$MIR_DATA_DIR``), or a file named by ``MIR_DATASET_SPEC``
    (several separated by ``os.pathsep``)."""
    if isinstance(name, DatasetSpec):
        return name
    key = _norm(name)
    if key in _BUILTIN_KEYS:
        return DATASETS[_ALIASES[key]]
    as_path = Path(str(name)).expanduser()
    if (as_path.suffix.lower() in _SPEC_SUFFIXES and as_path.is_file()) or (
            as_path.is_dir() and _spec_file_in(as_path) is not None):
        return _use_spec_file(as_path)
    if root is not None:
        found = _find_spec_file(str(name), Path(root))
        if found is not None:
            return _use_spec_file(found)
    if key in _ALIASES:
        return DATASETS[_ALIASES[key]]
    for f in _env_spec_files():
        if not f.is_file():
            raise DatasetSpecError(f"MIR_DATASET_SPEC names {f}, which is not a spec file")
        spec = _use_spec_file(f)
        if _norm(spec.name) == key:
            return spec
    for base in (paths.data_dir() / "lgsrr", paths.data_dir()):
        found = _find_spec_file(str(name), base)
        if found is not None:
            return _use_spec_file(found)
    where = Path(root) if root is not None else paths.data_dir() / "lgsrr"
    raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}. For a dataset of "
                   f"your own, write {where / str(name) / 'dataset.json'} next to its TSV "
                   f"files, or name a spec file in MIR_DATASET_SPEC (see {BYO_DOC})")


def _layout(spec: DatasetSpec, root: str | Path | None) -> str:
    lines = []
    for split, role, rel in spec.file_roles():
        p = spec.path(root, rel)
        lines.append(f"  {p}  ({split} {role}; {'present' if p.exists() else 'MISSING'})")
    cols = [*spec.key_columns, spec.text_column, spec.label_column]
    return ("\n".join(lines) + f"\n  (tab-separated with a header row; the text files need "
            f"the columns {cols})")


def _where_to_get(spec: DatasetSpec) -> str:
    if spec.upstream:
        return (f"Get them with `python -m mir_core download --dataset {spec.name}` "
                "(checksums verified); offline, set MIR_DATA_MIRROR to a folder holding the "
                "upstream files.")
    if spec.name in BUILTIN_DATASETS:
        return (f"The workspace cannot fetch {spec.name}: it is distributed by its authors "
                f"(the thuiar/{spec.name} repository). Put their train/dev/test TSV files at "
                f"the paths above; see {BYO_DOC}.")
    fix = f" (or correct the paths in {spec.source})" if spec.source else ""
    return (f"{spec.name} is a dataset of your own: put its files at the paths above{fix}; "
            f"see {BYO_DOC}.")


def _missing_message(path: Path, spec: DatasetSpec, root: str | Path | None) -> str:
    return (f"{path}: file not found. {spec.name} reads these files:\n{_layout(spec, root)}\n"
            f"{_where_to_get(spec)}")


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


def published_sha256(spec: DatasetSpec, rel: str) -> str | None:
    """The release's sha256 of one file of a dataset, None where none is published."""
    return SHA256.get(rel) if spec.upstream and spec.name in BUILTIN_DATASETS else None


def download(name: str, dest: str | Path | None = None, *, mirror: str | Path | None = None,
             offline: bool | None = None, timeout: float = 20.0, verify: bool = True,
             log=print) -> Path:
    """Fetch a dataset's released files into ``dest`` (default ``$MIR_DATA_DIR/lgsrr``).

    Files already present with the right checksum are kept. Others come from the LGSRR
    repository at its pinned commit; when the network is unreachable (or ``offline``),
    from the local mirror folder ``mirror`` / ``$MIR_DATA_MIRROR`` with the upstream layout.
    Every file with a published sha256 is checked against it; files without one (MIntRec
    v1, your own datasets) are only checked to be present and logged as "no published
    checksum". Returns the dataset root to pass to :func:`load_split`.
    """
    root = Path(dest) if dest is not None else paths.data_dir() / "lgsrr"
    spec = get_spec(name, root)
    if spec.name not in BUILTIN_DATASETS:
        missing = [spec.path(root, rel) for rel in spec.files()
                   if not spec.path(root, rel).exists()]
        if missing:
            raise MissingDataFile(_missing_message(missing[0], spec, root))
        log(f"{spec.name}: {len(spec.files())} files of your own in {spec.base(root)} "
            f"({UNPUBLISHED}; nothing to download)")
        return root
    mirror_root = paths.mirror_dir(mirror)
    offline = paths.offline() if offline is None else offline
    network_failed: str | None = None
    for rel in spec.files():
        target = root / rel
        expected = published_sha256(spec, rel) if verify else None
        if target.exists() and expected is None:
            if verify:
                log(f"{rel}: present; {UNPUBLISHED}, so not verified")
            continue
        if target.exists() and sha256_of(target) == expected:
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
                       f"named by MIR_DATA_MIRROR (see {BYO_DOC})")
                reason = ("offline" if offline else network_failed or "no upstream URL")
                raise MissingDataFile(
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


def verify_files(name: str, root: str | Path | None = None) -> list[dict]:
    """One row per file of a dataset: split, role, path, bytes, sha256 and ``checksum``:
    ``"verified"`` (matches the release), ``"mismatch"``, ``"no published checksum"``
    (MIntRec v1, your own data: nothing to compare with) or ``"missing"``."""
    root = Path(root) if root is not None else paths.data_dir() / "lgsrr"
    spec = get_spec(name, root)
    rows = []
    for split, role, rel in spec.file_roles():
        path = spec.path(root, rel)
        expected = published_sha256(spec, rel)
        row = {"dataset": spec.name, "split": split, "role": role, "file": rel,
               "path": str(path), "bytes": None, "sha256": None,
               "published_sha256": expected, "checksum": MISSING}
        if path.exists():
            actual = sha256_of(path)
            row.update(bytes=path.stat().st_size, sha256=actual,
                       checksum=(UNPUBLISHED if expected is None else
                                 VERIFIED if actual == expected else MISMATCH))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- loading
def _read_tsv(path: Path, spec: DatasetSpec | None = None,
              root: str | Path | None = None) -> pd.DataFrame:
    if not path.exists():
        if spec is None:
            raise MissingDataFile(f"{path}: file not found")
        raise MissingDataFile(_missing_message(path, spec, root))
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False,
                           quoting=csv.QUOTE_NONE, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable TSV file ({e})") from e


def _require_columns(df: pd.DataFrame, cols, path: Path,
                     spec: DatasetSpec | None = None) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        where = f"; the column names are set in {spec.source}" if spec and spec.source else ""
        raise DataError(f"{path}: missing column(s) {missing} (found: {list(df.columns)})"
                        f"{where}")


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


# Row count and keys (key -> line) of split files, cached by (path, mtime, size, columns):
# what the size and leak checks read of the splits not being loaded.
_INDEX_CACHE: dict[tuple, tuple[int, dict[str, int] | None]] = {}
_INDEX_CACHE_MAX = 64


def _index_key(path: Path, key_columns) -> tuple | None:
    try:
        return (str(path.resolve()), *_stat_sig(path), tuple(key_columns))
    except OSError:
        return None


def _remember_index(path: Path, key_columns, rows: int, keys: list[str] | None) -> None:
    k = _index_key(path, key_columns)
    if k is None:
        return
    if len(_INDEX_CACHE) >= _INDEX_CACHE_MAX:
        _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))
    lines = None
    if keys is not None:
        lines = {}
        for i, key in enumerate(keys):
            lines.setdefault(key, i + 2)
    _INDEX_CACHE[k] = (rows, lines)


def _split_index(path: Path, key_columns) -> tuple[int, dict[str, int] | None] | None:
    """(rows, {key: line}) of a split file; None when absent or unreadable (its own load
    reports that); keys None when the file lacks the key columns."""
    k = _index_key(path, key_columns)
    if k is None:
        return None
    if k not in _INDEX_CACHE:
        try:
            df = _read_tsv(path)
        except DataError:
            return None
        keys = (_keys(df, key_columns) if key_columns and
                all(c in df.columns for c in key_columns) else None)
        _remember_index(path, key_columns, len(df), keys)
    return _INDEX_CACHE.get(k)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _split_policy(custom_splits: bool | None, spec: DatasetSpec) -> str:
    """'allow' (custom split: note only), 'strict' (every deviation raises) or 'auto'."""
    if custom_splits is not None:
        return "allow" if custom_splits else "strict"
    env = os.environ.get("MIR_CUSTOM_SPLITS", "").strip().lower()
    if env in _TRUE:
        return "allow"
    if env in _FALSE:
        return "strict"
    return "allow" if spec.custom_splits else "auto"


def _allow_hint(spec: DatasetSpec) -> str:
    in_spec = f", or set \"custom_splits\": true in {spec.source}" if spec.source else ""
    return ("For a deliberate custom split, pass custom_splits=True to load_split() / "
            f"load_dataset() or set MIR_CUSTOM_SPLITS=1{in_spec}.")


def _sizes_text(spec: DatasetSpec) -> str:
    return " / ".join(f"{s} {spec.sizes[s]}" for s in SPLITS if s in spec.sizes)


def _cross_check(spec: DatasetSpec, split: str, root: Path, path: Path, keys: list[str],
                 rows: int, policy: str) -> list[str]:
    """Size and leak checks of one loaded split against the other split files present.

    Returns notes on what was accepted; raises SplitLeakError / SplitSizeError."""
    notes: list[str] = []
    counts = {split: rows}
    others: dict[str, tuple[Path, dict[str, int] | None]] = {}
    for other in SPLITS:
        if other == split:
            continue
        op = spec.path(root, spec.text_file.format(split=other))
        idx = _split_index(op, spec.key_columns)
        if idx is None:
            continue
        counts[other] = idx[0]
        others[other] = (op, idx[1])
    sizes = spec.sizes or {}
    mismatched = [s for s, n in counts.items() if s in sizes and n != sizes[s]]
    matched = [s for s, n in counts.items() if s in sizes and n == sizes[s]]
    # auto: files that match none of the published sizes are a cut of their own (a subset
    # made on purpose); then deviations are reported as DataWarning, not raised.
    custom_cut = policy == "auto" and bool(mismatched) and not matched

    accepted: list[str] = []

    def accept(msg: str) -> None:
        if policy == "allow":
            notes.append(f"{msg} (accepted: custom splits allowed)")
        else:
            notes.append(f"{msg} (accepted as a custom cut: none of the split files here "
                         "has its published size)")
            accepted.append(msg)

    if spec.key_columns:
        for other, (op, lines) in others.items():
            if lines is None:
                continue
            shared = [(i + 2, k) for i, k in enumerate(keys) if k in lines]
            if not shared:
                continue
            shown = ", ".join(f"{k!r} ({split} line {i}, {other} line {lines[k]})"
                              for i, k in shared[:5])
            more = f" and {len(shared) - 5} more" if len(shared) > 5 else ""
            msg = (f"{path} and {op} share {len(shared)} sample key(s) "
                   f"({' + '.join(spec.key_columns)}): {shown}{more}")
            if policy == "allow" or custom_cut:
                accept(msg)
                continue
            raise SplitLeakError(
                f"{msg}. The same sample in two splits leaks evaluation data into training "
                "or model selection; remove the duplicates or restore the original files. "
                f"{_allow_hint(spec)}")
    if split in mismatched:
        expected = sizes[split]
        msg = (f"{path}: {rows} rows, but {spec.name} {split} has {expected} published rows "
               f"({_sizes_text(spec)})")
        if policy == "allow" or custom_cut:
            accept(msg)
        else:
            others_ok = [s for s in matched if s != split]
            why = (f"; the other split(s) here ({', '.join(others_ok)}) have their published "
                   "size, so this file looks cut short or damaged" if others_ok else "")
            dest = ("" if Path(root) == paths.data_dir() / "lgsrr" else f" --dest {root}")
            fix = (f"Re-download it with `python -m mir_core download --dataset {spec.name}"
                   f"{dest}` (checksums verified; a damaged file is fetched again)"
                   if spec.upstream else
                   f"Replace it with the complete file, or correct \"sizes\" in {spec.source}"
                   if spec.source else
                   "Replace it with the complete file from the dataset's authors")
            raise SplitSizeError(f"{msg}{why}. {fix}. {_allow_hint(spec)}")
    if accepted:
        warnings.warn("; ".join(accepted) + ". Accepted as a custom cut, since none of the "
                      "split files here has its published size; MIR_CUSTOM_SPLITS=0 (or "
                      "custom_splits=False) makes this an error, MIR_CUSTOM_SPLITS=1 accepts "
                      "it silently", DataWarning, stacklevel=3)
    return notes


@dataclass
class MIRSplit:
    """One split of a dataset, row-aligned arrays ready for feature extraction."""

    dataset: str
    split: str
    labels: tuple[str, ...]
    frame: pd.DataFrame = field(repr=False)   # key, text, label, label_id, desc_*, extras
    notes: list[str] = field(default_factory=list, repr=False)   # accepted deviations

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
        """A reproducible sample of n rows (all rows when n is None or >= len). The size
        and leak checks ran on the full files when the split was loaded."""
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
                        self.frame.iloc[idx].reset_index(drop=True), list(self.notes))


def load_split(name: str, split: str, root: str | Path | None = None, *,
               custom_splits: bool | None = None) -> MIRSplit:
    """Load and validate one split; raises DataError naming file/line/field on bad input.

    Also checks the split against the other split files present (read once, cached by
    modification time): a key found in another split raises :class:`SplitLeakError`; where
    the dataset has published sizes, another row count raises :class:`SplitSizeError`.
    ``custom_splits``: True accepts both (noted in ``MIRSplit.notes``), False raises on
    every deviation; None (default) follows ``MIR_CUSTOM_SPLITS`` (1 / 0), else the spec's
    ``custom_splits``, else raises -- except when none of the split files present has its
    published size (a cut of your own, e.g. the first rows for a quick test), which is
    reported as a :class:`DataWarning`. ``name`` may also be a dataset of your own
    (:func:`get_spec`)."""
    root = Path(root) if root is not None else paths.data_dir() / "lgsrr"
    spec = get_spec(name, root)
    if split not in SPLITS:
        raise KeyError(f"unknown split {split!r}; expected one of {SPLITS}")
    policy = _split_policy(custom_splits, spec)
    text_path = spec.path(root, spec.text_file.format(split=split))
    df = _read_tsv(text_path, spec, root)
    _require_columns(df, (*spec.key_columns, spec.text_column, spec.label_column), text_path,
                     spec)
    if spec.key_columns:
        keys = _keys(df, spec.key_columns)
        _check_duplicates(keys, text_path)
        _remember_index(text_path, spec.key_columns, len(df), keys)
    else:
        keys = [f"{split}_{i:06d}" for i in range(len(df))]
        _remember_index(text_path, spec.key_columns, len(df), None)
    notes = _cross_check(spec, split, root, text_path, keys, len(df), policy)

    label_to_id = {lab: i for i, lab in enumerate(spec.labels)}
    codes = spec.label_codes or {}
    label_names, label_ids = [], []
    for i, raw in enumerate(df[spec.label_column].str.strip()):
        lab = codes.get(raw, raw) if codes else raw
        if lab not in label_to_id:
            known = list(codes) if codes else list(spec.labels)
            hint = (f"; the labels were inferred from the train file: list them all under "
                    f"\"labels\" in {spec.source}" if spec.labels_inferred else "")
            raise DataError(f"{text_path} line {i + 2}: field {spec.label_column!r} has unknown "
                            f"label {raw!r} (known: {known}){hint}")
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
        desc_path = spec.path(root, spec.desc_file.format(split=split))
        ddf = _read_tsv(desc_path, spec, root)
        _require_columns(ddf, (*spec.desc_key_columns, *spec.desc_columns), desc_path, spec)
        dkeys = (_keys(ddf, spec.desc_key_columns) if spec.desc_key_columns
                 else [f"{split}_{i:06d}" for i in range(len(ddf))])
        _check_aligned(keys, dkeys, desc_path, text_path)
        for short, col in zip(ASPECT_SHORT, spec.desc_columns):
            values = ddf[col].str.strip()
            for i, v in enumerate(values):
                if not v:
                    raise DataError(f"{desc_path} line {i + 2}: field {col!r} is empty")
            frame[f"desc_{short}"] = values.tolist()

    if spec.rank_file and split == "train":
        rank_path = spec.path(root, spec.rank_file.format(split=split))
        rdf = _read_tsv(rank_path, spec, root)
        rank_cols = tuple(spec.rank_columns)
        _require_columns(rdf, (*spec.rank_key_columns, *rank_cols), rank_path, spec)
        rkeys = (_keys(rdf, spec.rank_key_columns) if spec.rank_key_columns
                 else [f"{split}_{i:06d}" for i in range(len(rdf))])
        _check_duplicates(rkeys, rank_path)
        if len(rkeys) < len(keys):
            have = set(rkeys)
            missing = next(k for k in keys if k not in have)
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
    return MIRSplit(spec.name, split, spec.labels, frame, notes)


def load_dataset(name: str, root: str | Path | None = None, *,
                 custom_splits: bool | None = None) -> dict[str, MIRSplit]:
    """All three splits of a dataset, checked against each other (sizes, shared keys) as in
    :func:`load_split`."""
    return {s: load_split(name, s, root, custom_splits=custom_splits) for s in SPLITS}
