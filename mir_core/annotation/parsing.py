"""Reading LLM replies: importance ranks (CoT step 3), cue lists (CoT step 1) and A-MESS
label descriptions.

Parsing never invents an answer: a reply that does not determine an order gives a
:class:`RankParse` with ``order=None`` and the reason in ``error``; the chain then retries
and finally records the raw text as a failure (it is never replaced by a default order).

Accepted rank formats (any of the 6 orders, any name variant of the data layer's aliases
plus singular/plural forms, or the letters A/E/I standing alone):

* inline chains ``Interaction with Others > Speakers' Actions > Facial Expressions``,
  ``I > A > E``, ``I -> A -> E``, ``I → A → E``;
* numbered items ``1.``, ``1)``, ``(1)``, ``1:``, ``1 -``, ``1st:``, ``Rank 1:``, ``#1``,
  on separate lines or inline, with or without markdown bold;
* ordinal words at the start of a line or sentence: ``First, ...``, ``Secondly: ...``;
* bullet lists (``-``, ``*``, ``•``, ``+``) in their order;
* sentences: "X is the most important", "Y is the least important", "X, followed by Y,
  then Z".

An order is also accepted when two aspects are placed explicitly and the third is the only
one left (``RankParse.implied`` is then True).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..data import ASPECT_SHORT, ASPECTS
from .prompts import CANONICAL_CUES

# --------------------------------------------------------------------------- aspect mentions
_APOS = "['’`´]"
_ASPECT_PATTERNS: tuple[tuple[int, str], ...] = (
    (0, rf"speakers?(?:{_APOS}s|s{_APOS}|{_APOS})?\s+(?:body\s+)?actions?\b"),
    (1, r"(?:emotions?\s+(?:and|&)\s+)?facial\s+expressions?\b"),
    (2, r"interactions?\s+with\s+(?:the\s+)?others?\b"),
    (0, r"\bactions?\b"),
    (1, r"\bexpressions?\b"),
    (1, r"\bemotions?\b"),
    (2, r"\binteractions?\b"),
)
_MENTION_RE = re.compile("|".join(f"(?P<g{i}>{p})" for i, (_, p) in enumerate(_ASPECT_PATTERNS)),
                         re.IGNORECASE)
_LETTER_TO_ASPECT = {"A": 0, "E": 1, "I": 2}
_SOLE_LETTER_RE = re.compile(r"^[\s*_`\"'(\[]*([AEI])[\s*_`\"')\].:,;]*$")


def _mentions(text: str) -> list[tuple[int, int]]:
    """(position, aspect index) of every aspect name in ``text``, in order."""
    out = []
    for m in _MENTION_RE.finditer(text):
        group = next(k for k, v in m.groupdict().items() if v is not None)
        out.append((m.start(), _ASPECT_PATTERNS[int(group[1:])][0]))
    return out


def _segment_aspect(segment: str) -> int | None:
    """The aspect a list item or chain element names: its first aspect name, or a lone
    letter A/E/I (upper case, possibly bracketed or bold)."""
    segment = segment.lstrip(" \t:.)]-–—")
    found = _mentions(segment)
    if found:
        return found[0][1]
    m = _SOLE_LETTER_RE.match(segment)
    if m:
        return _LETTER_TO_ASPECT[m.group(1)]
    # "A (Speakers' Actions)" is covered above; "A:" or "A -" followed by an explanation:
    m = re.match(r"^[\s*_`\"'(\[]*([AEI])[\s*_`\"')\]]*[:\-–—]\s", segment)
    if m:
        return _LETTER_TO_ASPECT[m.group(1)]
    return None


@dataclass(frozen=True)
class RankParse:
    """Result of parsing a ranking reply: ``order`` (aspect indices, most -> least
    important) or ``None`` with ``error``; ``method`` names the rule that matched."""

    order: tuple[int, int, int] | None
    method: str = ""
    error: str | None = None
    implied: bool = False

    @property
    def ok(self) -> bool:
        return self.order is not None


def _from_placements(placed: dict[int, int], method: str) -> RankParse:
    """rank (0..2) -> aspect; fills the third when two are placed; checks consistency."""
    aspects = list(placed.values())
    if len(set(aspects)) != len(aspects):
        dup = next(a for a in aspects if aspects.count(a) > 1)
        return RankParse(None, method, f"{method}: {ASPECTS[dup]!r} is given two ranks")
    if len(placed) < 2:
        return RankParse(None, method, f"{method}: only {len(placed)} aspect placed")
    implied = len(placed) == 2
    if implied:
        (missing_rank,) = set(range(3)) - set(placed)
        (missing_aspect,) = set(range(3)) - set(aspects)
        placed = {**placed, missing_rank: missing_aspect}
    order = tuple(placed[r] for r in range(3))
    return RankParse(order, method, None, implied)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- strategies
_CHAIN_SEP = re.compile(r"\s*(?:>>|->|=>|→|⟶|≻|>)\s*")


def _edge_aspect(part: str, last: bool) -> int | None:
    """Aspect at the end (``last``) or start of a chain element embedded in a sentence:
    "Ranking: I" -> I, "Facial Expressions." -> E."""
    found = _mentions(part)
    if found:
        return found[-1][1] if last else found[0][1]
    rx = (r"(?:^|[\s:(\[*])([AEI])[\s)\]*.]*$" if last else r"^[\s*(\[]*([AEI])(?:$|[\s)\].,;:*])")
    m = re.search(rx, part)
    return _LETTER_TO_ASPECT[m.group(1)] if m else None


def _parse_chain(text: str) -> RankParse | None:
    for line in text.splitlines():
        parts = _CHAIN_SEP.split(line.strip())
        for start in range(len(parts) - 2):
            a = _edge_aspect(parts[start], last=True)
            b = _segment_aspect(parts[start + 1])
            c = _edge_aspect(parts[start + 2], last=False)
            if None not in (a, b, c) and len({a, b, c}) == 3:
                return RankParse((a, b, c), "inline chain")  # type: ignore[arg-type]
    return None


_NUM_MARKER = re.compile(
    r"(?:^|(?<=[\s*_#>(\[]))(?:"                           # start or after space/markup
    r"#([1-3])\b"                                           # "#1"
    r"|(?:rank(?:ed)?|no\.|top)\s*([1-3])\b"                # "Rank 1", "No. 1", "Top 1"
    r"|\(?([1-3])"                                          # "1", "(1"
    r"(?:\s*[.):\]]|\s+[-–—]|st\b|nd\b|rd\b))",              # "1." "1)" "1:" "1 -" "1st"
    re.IGNORECASE | re.MULTILINE)
_ORD_WORDS = {"first": 0, "firstly": 0, "second": 1, "secondly": 1, "third": 2, "thirdly": 2,
              "lastly": 2, "finally": 2}
_ORD_MARKER = re.compile(
    r"(?:^|(?<=[.;!?\n]))[\s*_#>-]*\b(firstly|first|secondly|second|thirdly|third|lastly|finally)"
    r"\b\s*[,:.)\-–—]?", re.IGNORECASE | re.MULTILINE)


def _parse_markers(text: str, pattern: re.Pattern, rank_of, method: str) -> RankParse | None:
    marks = [(m.start(), m.end(), rank_of(m.group(m.lastindex))) for m in pattern.finditer(text)]
    if not marks:
        return None
    placed: dict[int, int] = {}
    for i, (_, end, rank) in enumerate(marks):
        nxt = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        if rank in placed:
            continue
        aspect = _segment_aspect(text[end:nxt].strip())
        if aspect is not None:
            placed[rank] = aspect
        if len(placed) == 3:
            break
    if not placed:
        return None
    return _from_placements(placed, method)


_BULLET = re.compile(r"^\s*[-*•+]\s+(.*)$", re.MULTILINE)


def _parse_bullets(text: str) -> RankParse | None:
    items = [m.group(1) for m in _BULLET.finditer(text)]
    aspects = [a for a in (_segment_aspect(it) for it in items) if a is not None]
    if len(aspects) < 2:
        return None
    seen: list[int] = []
    for a in aspects:
        if a not in seen:
            seen.append(a)
    return _from_placements(dict(enumerate(seen[:3])), "bullet list")


_TOP_WORDS = re.compile(r"\b(most|highest|primary|greatest|biggest|largest|strongest|top|"
                        r"main|key|first|crucial|dominant)\b", re.IGNORECASE)
_MID_WORDS = re.compile(r"\b(second|middle|secondary|next)\b", re.IGNORECASE)
_LOW_WORDS = re.compile(r"\b(least|lowest|third|last|smallest|weakest|minor|minimal)\b",
                        re.IGNORECASE)


def _parse_positional(text: str) -> RankParse | None:
    placed: dict[int, int] = {}
    for clause in re.split(r"[.;\n]|,\s*(?:while|whereas|but|and)\b", text):
        found = {a for _, a in _mentions(clause)}
        if len(found) != 1:
            continue
        (aspect,) = found
        if _LOW_WORDS.search(clause):
            rank = 2
        elif _MID_WORDS.search(clause):
            rank = 1
        elif _TOP_WORDS.search(clause):
            rank = 0
        else:
            continue
        if rank in placed and placed[rank] != aspect:
            return RankParse(None, "positional words",
                             f"positional words: rank {rank + 1} given to two aspects")
        placed[rank] = aspect
    if len(placed) < 2:
        return None
    return _from_placements(placed, "positional words")


_SEQUENCE_WORDS = re.compile(r"\b(followed by|then|next|after that|before)\b", re.IGNORECASE)
_ECHO = re.compile(r"three aspects are|the descriptions are", re.IGNORECASE)


def _parse_sequence(text: str) -> RankParse | None:
    """'X is most important, followed by Y, then Z': first-mention order, only when the
    reply has sequence words and does not echo the prompt's list of aspects."""
    if not _SEQUENCE_WORDS.search(text) or _ECHO.search(text):
        return None
    seen: list[int] = []
    for _, a in _mentions(text):
        if a not in seen:
            seen.append(a)
    if len(seen) != 3:
        return None
    return RankParse(tuple(seen), "sequence sentence")  # type: ignore[arg-type]


def parse_rank(text: str | None) -> RankParse:
    """Parse an importance-ranking reply (CoT step 3) into aspect indices (0=A, 1=E, 2=I),
    most important first. See the module docstring for the formats."""
    if text is None or not str(text).strip():
        return RankParse(None, "", "empty reply")
    text = str(text).replace("**", "").replace("__", "")
    strategies = (
        _parse_chain,
        lambda t: _parse_markers(t, _NUM_MARKER, lambda g: int(g) - 1, "numbered list"),
        lambda t: _parse_markers(t, _ORD_MARKER, lambda g: _ORD_WORDS[g.lower()], "ordinal words"),
        _parse_bullets,
        _parse_positional,
        _parse_sequence,
    )
    errors = []
    for strategy in strategies:
        res = strategy(text)
        if res is None:
            continue
        if res.ok:
            return res
        errors.append(res.error)
    found = sorted({a for _, a in _mentions(text)})
    detail = "; ".join(e for e in errors if e) or (
        f"no ranking format found (aspects mentioned: {found or 'none'})")
    return RankParse(None, "", detail)


def order_to_text(order, short: bool = True) -> str:
    """(2, 0, 1) -> 'I > A > E' (or full names)."""
    names = ASPECT_SHORT if short else ASPECTS
    return " > ".join(names[int(a)] for a in order)


# --------------------------------------------------------------------------- cues (step 1)
# Keyword rules mapping a cue name to the canonical vocabulary (prompts.CANONICAL_CUES).
# When several rules match, the keyword that appears first in the name wins
# ("Facial expressions and body language" -> E; "Body language and facial cues" -> A).
_CUE_RULES: tuple[tuple[str, str], ...] = (
    ("E", r"\b(facial|face|expressions?|emotion\w*|affect(ive)?|mood|feelings?)\b"),
    ("TMS", r"\b(tone|voice|vocal|prosod\w*|pitch|intonation|manner of speaking|speaking "
            r"style|speech (patterns?|style|delivery)|acoustic\w*|audio|paralinguistic\w*)\b"),
    ("A", r"\b(actions?|gestures?|gestural|body language|body movements?|movements?|"
          r"postures?|behaviou?rs?|behaviou?ral|kinesics|motions?)\b"),
    ("I", r"\b(interactions?|interpersonal|relationships?|social dynamics?|with others|"
          r"turn[- ]taking|engagement|listener reactions?|responses? of others)\b"),
    ("IS", r"\b(identity|identities|status|roles?|persona|demographics?|social position)\b"),
    ("SD", r"\b(scenes?|setting|environment\w*|surroundings?|locations?|background|"
           r"visual context|situational context)\b"),
)
_CUE_RULES_RE = tuple((short, re.compile(p, re.IGNORECASE)) for short, p in _CUE_RULES)


def clean_cue_text(name: str) -> str:
    """Lower-case, markup and numbering removed, spaces collapsed."""
    s = str(name).replace("’", "'").replace("**", "").replace("__", "")
    s = re.sub(r"^[\s#>*\-•+]*(?:\(?\d+[.):]\s*|[a-z][.)]\s+)?", "", s, flags=re.IGNORECASE)
    s = s.strip(" \t\"'`*_:;.,-–—").lower()
    return " ".join(s.split())


def normalise_cue(name: str) -> str:
    """Canonical cue name (``prompts.CANONICAL_CUES`` values) or, for a cue outside the
    vocabulary, its cleaned lower-case text. "Facial Expressions" and "Emotions and Facial
    Expressions" both give "Emotions and Facial Expressions"; "Tone of voice" and "Tone and
    Manner of Speaking" both give "Tone and Manner of Speaking"."""
    cleaned = clean_cue_text(name)
    if not cleaned:
        raise ValueError(f"empty cue name {name!r}")
    hits = []
    for short, rx in _CUE_RULES_RE:
        m = rx.search(cleaned)
        if m:
            hits.append((m.start(), short))
    if not hits:
        return cleaned
    return CANONICAL_CUES[min(hits)[1]]


_LIST_ITEM = re.compile(r"^(?P<indent>[ \t]*)(?:#{1,6}\s*)?"          # indent, markdown heading
                        r"(?:\d+\s*[.):]|[-*•+]|\(\d+\))\s+(?P<body>.+)$")  # "1." "-" "(1)"


def extract_cues(reply: str, max_words: int = 8) -> list[str]:
    """Cue names of a Template 1 reply: the titles of its top-level list items (the part in
    bold, or before ':' / ' - '), each once, in order of appearance. Raw (not normalised)."""
    items = []
    for line in str(reply).splitlines():
        m = _LIST_ITEM.match(line.replace("\u00a0", " "))
        if m:
            items.append((len(m.group("indent").expandtabs(4)), m.group("body")))
    if not items:
        return []
    top = min(indent for indent, _ in items)
    names: list[str] = []
    for indent, body in items:
        if indent > top:
            continue
        bold = re.match(r"^\s*\*\*(.+?)\*\*", body)
        title = bold.group(1) if bold else re.split(r":|\s[-–—]\s", body, maxsplit=1)[0]
        title = title.strip(" *:.")
        if not title or len(title.split()) > max_words:
            continue
        if title not in names:
            names.append(title)
    return names


# --------------------------------------------------------------------------- A-MESS
@dataclass(frozen=True)
class DescriptionsParse:
    """Three label descriptions, or ``None`` with ``error``."""

    descriptions: tuple[str, str, str] | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.descriptions is not None


_DESC_MARKER = re.compile(r"(?:^|(?<=\s))\(?([1-9])[.)]\s+", re.MULTILINE)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def parse_label_descriptions(reply: str | None, label: str, n: int = 3,
                             forbidden: tuple[str, ...] = ()) -> DescriptionsParse:
    """The first ``n`` numbered descriptions of an A-MESS reply ("1. ... 2. ... 3. ...",
    inline or one per line; a leading "<label>:" echo is dropped; what follows a blank line
    or, after the ``n``-th, a new numbered list is not part of a description). A reply in
    which two or more descriptions repeat ``forbidden`` sentences (the prompt's example, or
    its worked examples when few-shot), or in which two descriptions are the same, is
    rejected."""
    if reply is None or not str(reply).strip():
        return DescriptionsParse(None, "empty reply")
    text = str(reply).replace("**", "").strip()
    text = re.sub(rf"^\s*{re.escape(label)}\s*:\s*", "", text, flags=re.IGNORECASE)
    marks = list(_DESC_MARKER.finditer(text))
    items: list[str] = []
    expected = 1
    for i, m in enumerate(marks):
        if int(m.group(1)) != expected:
            continue
        # an item ends at the next number of the list; the last one at the next number of
        # any list (a small model that goes on with an invented "Label: Answer: 1. ..." turn
        # restarts at 1); every item ends at a blank line (what follows is other content)
        last = expected == n
        end = next((mm.start() for mm in marks[i + 1:]
                    if last or int(mm.group(1)) == expected + 1), len(text))
        body = _BLANK_LINE.split(text[m.end():end], maxsplit=1)[0]
        item = " ".join(body.split()).strip(" -")
        if item:
            items.append(item)
            expected += 1
        if len(items) == n:
            break
    if len(items) < n:
        bullets = [" ".join(b.split()) for b in re.findall(r"^\s*[-*•]\s+(.+)$", text, re.M)]
        if len(bullets) >= n:
            items = bullets
    if len(items) < n:
        return DescriptionsParse(None, f"found {len(items)} numbered descriptions, need {n}")
    items = items[:n]
    distinct = len({_simplify(it) for it in items})
    if distinct < n:
        # the prompt asks for n *different* descriptions; a repeated one would also count
        # twice among the positives and negatives of A-MESS's Eq. 15
        return DescriptionsParse(None, f"the {n} descriptions repeat: only {distinct} "
                                       f"different (the prompt asks for {n} different ones)")
    banned = {_simplify(f) for f in forbidden}
    copied = sum(_simplify(it) in banned for it in items)
    if banned and copied >= 2:
        return DescriptionsParse(None, f"{copied} of {n} descriptions copy the prompt's example(s) "
                                       "instead of describing the label")
    return DescriptionsParse(tuple(items))  # type: ignore[arg-type]


def _simplify(s: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", s.lower()).split())
