"""The prompt, the answer format and its parser.

Answer (the reference's format): ``The user's emotion is {e}, intent is {i}. The underlying
reason is: {x}.`` -- the reason sentence only where a reference explanation exists.

:func:`parse_answer` reads a generated answer back into (emotion, intent) tolerant to case,
spacing, punctuation, "emotion: x" / "intent: y" forms and label spelling variants
(``statement opinion`` for ``Statement-opinion``); a field that cannot be read, or names no
known label, is ``None`` and the answer is *unparsed*: it counts as wrong, never as a default.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

PLACEHOLDER = "<|{m}_query|>"          # marks where a modality's queries go (never tokenised)

SYSTEM = ("You are an expert in affective computing. Given an utterance and descriptions of "
          "the speaker, answer with the speaker's emotion and intent, then the reason.")


def answer_text(emotion: str | None, intent: str, reason: str | None = None) -> str:
    e = emotion if emotion is not None else "unknown"
    out = f"The user's emotion is {e}, intent is {intent}."
    if reason:
        out += f" The underlying reason is: {reason.strip().rstrip('.')}."
    return out


def user_message(text: str, captions: dict[str, str], emotions, intents,
                 modalities: tuple[str, ...] = ()) -> str:
    parts = []
    for m in modalities:
        parts.append(f"{m.capitalize()} features: {PLACEHOLDER.format(m=m)}")
    for m, cap in captions.items():
        if cap:
            parts.append(f"{m.capitalize()} description: {cap}")
    parts.append(f'Utterance: "{text}"')
    parts.append("Emotions: " + ", ".join(emotions) + ".")
    parts.append("Intents: " + ", ".join(intents) + ".")
    parts.append("What are the user's emotion and intent, and why?")
    return "\n".join(parts)


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", s.lower()).split())


@dataclass(frozen=True)
class Parsed:
    emotion: str | None          # a known label, or None
    intent: str | None
    emotion_text: str | None     # what the answer said, as read
    intent_text: str | None

    @property
    def ok(self) -> bool:
        return self.emotion is not None and self.intent is not None


_FIELD = r"{name}\s*(?:is|was|:|=|-)?\s*[\"'“”]?\s*(?P<v>[a-z][a-z \-_/']*?)\s*[\"'“”]?\s*(?:[,.;\n]|\band\b|$)"
_EMO_RE = re.compile(_FIELD.format(name=r"emotion"), re.I)
_INT_RE = re.compile(_FIELD.format(name=r"intent(?:ion)?"), re.I)


def _match_label(value: str | None, labels) -> str | None:
    if value is None:
        return None
    v = _norm(value)
    table = {_norm(lab): lab for lab in labels}
    if v in table:
        return table[v]
    for n, lab in table.items():                   # "statement opinion" inside a longer phrase
        if n and re.search(rf"\b{re.escape(n)}\b", v):
            return lab
    return None


def parse_answer(answer: str, emotions, intents) -> Parsed:
    """(emotion, intent) from a generated answer; None where unreadable or not a label."""
    text = answer or ""
    em, it = _EMO_RE.search(text), _INT_RE.search(text)
    e_txt = em.group("v").strip() if em else None
    i_txt = it.group("v").strip() if it else None
    return Parsed(_match_label(e_txt, emotions), _match_label(i_txt, intents), e_txt, i_txt)


_REASON_RE = re.compile(r"(?:underlying\s+)?reason\s*(?:is)?\s*:?\s*(?P<r>.+)", re.I | re.S)


def reason_of(answer: str) -> str:
    """The explanation part of an answer (after "The underlying reason is:"), else ''."""
    m = _REASON_RE.search(answer or "")
    return m.group("r").strip() if m else ""
