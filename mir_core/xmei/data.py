"""Samples for XMEI-Qwen: IEMOCAP-DA (dialogue act + emotion, VideoLLaMA2 descriptions as
captions) and the XMEI-dataset JSON format.

IEMOCAP-DA's ``EMOTION`` column holds IEMOCAP's emotion codes; ``xxx`` (annotators did not
agree), ``-`` and blanks are *unknown*: they are counted (:attr:`XData.unknown_emotions`),
kept for the dialogue-act metrics, left out of the emotion metrics, and (by default) their
training targets carry no emotion claim: ``unknown_emotion="drop"`` removes them from the
training set, ``"mark"`` trains them with the word ``unknown``.

XMEI JSON (a list of objects, or JSON lines) with the fields of :data:`XMEI_FIELDS`; a bad
row raises :class:`~mir_core.data.DataError` naming the file, the row and the field.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import ASPECT_SHORT, DataError, load_split

IEMOCAP_EMOTIONS = {"ang": "angry", "fru": "frustrated", "neu": "neutral", "sad": "sad",
                    "exc": "excited", "hap": "happy", "sur": "surprised", "fea": "fearful",
                    "dis": "disgusted", "oth": "other"}
UNKNOWN_EMOTION = {"xxx", "-", ""}
XMEI_FIELDS = ("video_id", "video_path", "audio_path", "subtitle", "emotion", "intent",
               "video_description", "audio_description", "emotion_reason", "intent_reason",
               "explanation")
XMEI_REQUIRED = ("video_id", "subtitle", "emotion", "intent")


@dataclass(frozen=True)
class XSample:
    key: str
    text: str                              # the utterance / subtitle
    intent: str
    emotion: str | None                    # None: unknown (not scored)
    captions: dict = field(default_factory=dict)     # modality -> caption text
    explanation: str | None = None         # the reference reason, where one exists
    video_path: str | None = None
    audio_path: str | None = None
    emotion_raw: str = ""                  # the value as found in the file


@dataclass
class XData:
    """One split: samples, label sets, and what was found about unknown emotions."""

    name: str
    split: str
    samples: list[XSample]
    intents: tuple[str, ...]
    emotions: tuple[str, ...]
    unknown_emotions: dict[str, int] = field(default_factory=dict)   # raw value -> count
    source: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def n_unknown_emotion(self) -> int:
        return sum(1 for s in self.samples if s.emotion is None)

    @property
    def has_explanations(self) -> bool:
        return any(s.explanation for s in self.samples)

    def subset(self, n: int | None, seed: int = 0) -> "XData":
        """n samples drawn reproducibly (all when n is None or >= len), in file order."""
        if n is None or n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        chosen = [self.samples[i] for i in idx]
        return XData(self.name, self.split, chosen, self.intents, self.emotions,
                     count_unknown([s.emotion_raw for s in chosen if s.emotion is None]),
                     self.source)

    def without_unknown_emotion(self) -> "XData":
        return XData(self.name, self.split, [s for s in self.samples if s.emotion is not None],
                     self.intents, self.emotions, {}, self.source)

    def with_unknown_marked(self) -> "XData":
        """Unknown emotions trained as the word 'unknown'."""
        marked = [s if s.emotion is not None else XSample(
            s.key, s.text, s.intent, "unknown", s.captions, s.explanation, s.video_path,
            s.audio_path, s.emotion_raw) for s in self.samples]
        # the label list (and so the prompt) stays the test's: "unknown" is never a label
        # to predict, and an answer "unknown" on a known-emotion test sample is unparsed
        return XData(self.name, self.split, marked, self.intents, self.emotions,
                     dict(self.unknown_emotions), self.source)

    def unknown_note(self) -> str:
        n = self.n_unknown_emotion
        detail = ", ".join(f"{k or 'blank'!r}: {v}" for k, v in sorted(self.unknown_emotions.items()))
        return (f"{self.name}/{self.split}: {n} of {len(self)} samples have an unknown emotion"
                + (f" ({detail})" if detail else "") + "; they are excluded from the emotion "
                "metrics and kept for the intent metrics")


def count_unknown(values) -> dict[str, int]:
    """Counts of the unknown-emotion spellings (``xxx``, ``-``, blank) among raw values."""
    out: Counter = Counter()
    for v in values:
        key = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
        if key.lower() in UNKNOWN_EMOTION:
            out[key.lower()] += 1
    return dict(out)


def from_iemocap(split: str, root: str | Path | None = None,
                 aspects: tuple[str, ...] = ASPECT_SHORT) -> XData:
    """IEMOCAP-DA through the data layer (checks included); caption = the chosen aspects of
    the released VideoLLaMA2 description, joined."""
    s = load_split("IEMOCAP-DA", split, root)
    if "EMOTION" not in s.frame.columns:
        raise DataError(f"IEMOCAP-DA/{split}: the text file has no EMOTION column")
    raw = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
           for v in s.frame["EMOTION"].tolist()]
    samples = []
    for i, (row, emo) in enumerate(zip(s.frame.itertuples(index=False), raw)):
        low = emo.lower()
        if low in UNKNOWN_EMOTION:
            emotion = None
        elif low in IEMOCAP_EMOTIONS:
            emotion = IEMOCAP_EMOTIONS[low]
        else:
            raise DataError(f"IEMOCAP-DA/{split}.tsv line {i + 2}: field 'EMOTION' has unknown "
                            f"code {emo!r} (known: {sorted(IEMOCAP_EMOTIONS)} or "
                            f"{sorted(UNKNOWN_EMOTION)} for unknown)")
        cap = " ".join(getattr(row, f"desc_{a}") for a in aspects) if s.has_descriptions else ""
        samples.append(XSample(row.key, row.text, row.label, emotion, {"video": cap},
                               emotion_raw=emo))
    return XData("IEMOCAP-DA", split, samples, tuple(s.labels),
                 tuple(IEMOCAP_EMOTIONS.values()), count_unknown(raw), "IEMOCAP-DA")


def _rows(path: Path) -> list:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        rows = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e2:
                raise DataError(f"{path}: not JSON ({e.msg} at line {e.lineno}) nor JSON "
                                f"lines (line {i + 1}: {e2.msg})") from None
        return rows
    if isinstance(data, dict):
        data = data.get("data", data.get("samples"))
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of samples (or JSON lines)")
    return data


def load_xmei_json(path: str | Path, split: str = "",
                   intents: tuple[str, ...] | None = None,
                   emotions: tuple[str, ...] | None = None, name: str | None = None) -> XData:
    """An XMEI-format file (``train.json`` of the XMEI-dataset). Label sets default to the
    labels found in the file, in first-seen order. Unknown emotions as in IEMOCAP-DA.
    ``name``: the dataset's name in run folders (default: the file's folder name)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such XMEI JSON file")
    rows = _rows(path)
    samples, raw_emos = [], []
    for i, r in enumerate(rows):
        where = f"{path} row {i}"
        if not isinstance(r, dict):
            raise DataError(f"{where}: expected an object with fields {list(XMEI_FIELDS)}")
        for f in XMEI_FIELDS:
            if f in r and r[f] is not None and not isinstance(r[f], str):
                raise DataError(f"{where}: field {f!r} must be a string, got "
                                f"{type(r[f]).__name__}")
        for f in XMEI_REQUIRED:
            if f == "emotion":
                if f not in r:
                    raise DataError(f"{where}: field 'emotion' is missing")
                continue
            if not str(r.get(f) or "").strip():
                raise DataError(f"{where}: field {f!r} is missing or empty")
        emo = str(r.get("emotion") or "").strip()
        raw_emos.append(emo)
        if intents is not None and r["intent"].strip() not in intents:
            raise DataError(f"{where}: field 'intent' has unknown label {r['intent']!r} "
                            f"(known: {list(intents)})")
        known = emo.lower() not in UNKNOWN_EMOTION
        if known and emotions is not None and emo not in emotions:
            raise DataError(f"{where}: field 'emotion' has unknown label {emo!r} "
                            f"(known: {list(emotions)})")
        reason = " ".join(x for x in (str(r.get("explanation") or "").strip(),) if x) or None
        caps = {m: str(r.get(f"{m}_description") or "").strip() for m in ("video", "audio")}
        samples.append(XSample(str(r["video_id"]).strip(), r["subtitle"].strip(),
                               r["intent"].strip(), emo if known else None, caps, reason,
                               r.get("video_path") or None, r.get("audio_path") or None, emo))
    if not samples:
        raise DataError(f"{path}: no samples")
    keys = Counter(s.key for s in samples)
    dup = [k for k, c in keys.items() if c > 1]
    if dup:
        i = [s.key for s in samples].index(dup[0])
        raise DataError(f"{path} row {i}: field 'video_id' {dup[0]!r} appears {keys[dup[0]]} times")
    intents = intents or tuple(dict.fromkeys(s.intent for s in samples))
    emotions = emotions or tuple(dict.fromkeys(s.emotion for s in samples if s.emotion))
    return XData(name or path.resolve().parent.name, split or path.stem, samples, tuple(intents), tuple(emotions),
                 count_unknown(raw_emos), str(path))
