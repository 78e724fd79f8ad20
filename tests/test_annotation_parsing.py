"""Rank parsing, cue normalisation / extraction and A-MESS description parsing."""
from itertools import permutations

import pytest

from mir_core.annotation.parsing import (extract_cues, normalise_cue, order_to_text,
                                         parse_label_descriptions, parse_rank)
from mir_core.annotation.prompts import (ALL_ORDERS, CANONICAL_CUES, TEMPLATE1, TEMPLATE3,
                                         cue_discovery_prompt, BackgroundSample, rank_answer,
                                         rank_prompt)

FULL = ("Speakers' Actions", "Facial Expressions", "Interaction with Others")
VARIANTS = (
    ("Speaker's actions", "Emotions and Facial Expressions", "Interactions with others"),
    ("Speakers’ Actions", "facial expressions", "Interaction"),
    ("Actions", "Expressions", "Interactions with Others"),
)
LETTERS = ("A", "E", "I")


def _formats(names):
    """Reply texts in many styles for one order given as three names."""
    a, b, c = names
    return {
        "dot": f"1. {a}\n2. {b}\n3. {c}",
        "paren": f"1) {a}\n2) {b}\n3) {c}",
        "bracketed": f"(1) {a} (2) {b} (3) {c}",
        "colon": f"1: {a}\n2: {b}\n3: {c}",
        "ordinal-suffix": f"1st: {a}\n2nd: {b}\n3rd: {c}",
        "rank-n": f"Rank 1: {a}\nRank 2: {b}\nRank 3: {c}",
        "hash": f"#1 {a}\n#2 {b}\n#3 {c}",
        "ordinal-words": f"First, {a}, since it matters.\nSecond, {b}.\nThird, {c}.",
        "firstly": f"Firstly: {a}. Secondly: {b}. Thirdly: {c}.",
        "bullets": f"- {a}\n- {b}\n- {c}",
        "star-bullets": f"* **{a}**: shows the intent\n* **{b}**: supports it\n* **{c}**: weak",
        "bold-numbered": f"**1. {a}:** main cue\n**2. {b}:** next\n**3. {c}:** least",
        "inline-gt": f"{a} > {b} > {c}",
        "inline-arrow": f"Ranking: {a} -> {b} -> {c}.",
        "inline-unicode": f"{a} → {b} → {c}",
        "preamble": f"Based on the descriptions, the ranking is:\n\n1. {a} - key\n2. {b} - "
                    f"helps\n3. {c} - least",
        "sentence": f"{a} is the most important, followed by {b}, and then {c}.",
    }


@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_parse_all_orders_all_formats(order):
    for names in (FULL, *VARIANTS):
        trio = tuple(names[i] for i in order)
        for fmt, text in _formats(trio).items():
            res = parse_rank(text)
            assert res.ok, (fmt, text, res.error)
            assert res.order == order, (fmt, text, res.order)
            assert not res.implied
    # lone letters, inline and as list items
    trio = tuple(LETTERS[i] for i in order)
    for text in (" > ".join(trio), "\n".join(f"{k}. {x}" for k, x in enumerate(trio, 1)),
                 "Order: " + " -> ".join(trio),
                 "\n".join(f"Rank {k}: {x}" for k, x in enumerate(trio, 1)),
                 " ".join(f"#{k}: {x}" for k, x in enumerate(trio, 1)),
                 ", ".join(f"No. {k} {x}" for k, x in enumerate(trio, 1))):
        assert parse_rank(text).order == order, text


def test_parse_positional_words_and_implied_third():
    res = parse_rank("Facial Expressions contribute the least. Interaction with Others is the "
                     "most important cue here.")
    assert res.order == (2, 0, 1) and res.implied
    res = parse_rank("1. Interaction with Others\n2. Facial Expressions")
    assert res.order == (2, 1, 0) and res.implied


@pytest.mark.parametrize("text,why", [
    ("", "empty"),
    (None, "empty"),
    ("I think the speaker wants to praise her colleague.", "no ranking"),
    ("The three aspects are Speakers' Actions, Facial Expressions and Interaction with Others.",
     "no ranking"),
    ("1. The woman points at a shelf.\n2. The man holds a cup.", "no ranking"),
    ("1. Interaction with Others\n2. Interaction with Others\n3. Facial Expressions", "two ranks"),
    ("1. Speakers' Actions", "only 1"),
])
def test_parse_failures_are_reported_not_defaulted(text, why):
    res = parse_rank(text)
    assert not res.ok and res.order is None
    assert res.error and why.split()[0].lower() in res.error.lower()


def test_rank_answer_roundtrip_and_text():
    for order in ALL_ORDERS:
        assert parse_rank(rank_answer(order)).order == order
    assert order_to_text((2, 0, 1)) == "I > A > E"
    assert order_to_text((2, 0, 1), short=False).startswith("Interaction with Others > ")


def test_templates_quote_the_paper():
    assert TEMPLATE1.startswith("Multimodal intent recognition aims to analyze the intent")
    assert TEMPLATE1.endswith("Please list them.")
    assert "The three aspects are Speakers' Actions, Facial Expressions and Interaction with " \
           "Others." in TEMPLATE3
    p = rank_prompt("Praise", "waves", "smiles", "talks to her friend")
    assert "The intent of the video is Praise." in p and '"waves"' in p and '"smiles"' in p
    q = cue_discovery_prompt([BackgroundSample("0_1", "hi there", "a man waves")])
    assert 'Sample 1: Text: "hi there" Video: a man waves' in q and q.endswith(TEMPLATE1)


@pytest.mark.parametrize("raw,expected", [
    ("Facial Expressions", "E"),
    ("Emotions and Facial Expressions", "E"),
    ("**Facial expressions and emotions**", "E"),
    ("Tone of voice", "TMS"),
    ("Tone and Manner of Speaking", "TMS"),
    ("Vocal cues / prosody", "TMS"),
    ("Speakers' Actions", "A"),
    ("Body Language and Gestures", "A"),
    ("3. Interactions with Others", "I"),
    ("Interpersonal relationships", "I"),
    ("Speaker's Identity and Status", "IS"),
    ("Social status", "IS"),
    ("Scene Description", "SD"),
    ("Setting and environment", "SD"),
])
def test_normalise_cue_canonical(raw, expected):
    assert normalise_cue(raw) == CANONICAL_CUES[expected]


def test_normalise_cue_unknown_kept_as_text():
    assert normalise_cue("  **Contextual Understanding:** ") == "contextual understanding"
    assert normalise_cue("2) Textual content") == "textual content"
    with pytest.raises(ValueError):
        normalise_cue(" ** ")


def test_extract_cues_from_list_reply():
    reply = ("Here are the key perspectives:\n"
             "1. **Facial Expressions**: smiles, frowns\n"
             "   - sub point that is not a cue\n"
             "2. Tone of voice: pitch and pace\n"
             "3. Body language - gestures and posture\n"
             "4. **Facial Expressions**: repeated\n"
             "5. A very long sentence that goes on and on and is certainly not a cue name at all\n")
    assert extract_cues(reply) == ["Facial Expressions", "Tone of voice", "Body language"]
    assert extract_cues("No list here.") == []


def test_label_descriptions_parse():
    inline = ("Complain: 1. Expressing dissatisfaction. 2. Seeking redress by voicing "
              "grievances. 3. Highlighting flaws.")
    res = parse_label_descriptions(inline, "Complain")
    assert res.descriptions == ("Expressing dissatisfaction.",
                                "Seeking redress by voicing grievances.", "Highlighting flaws.")
    lines = "1. One.\n2. Two.\n3. Three.\n4. Four."
    assert parse_label_descriptions(lines, "X").descriptions == ("One.", "Two.", "Three.")
    bullets = "- One\n- Two\n- Three"
    assert parse_label_descriptions(bullets, "X").descriptions == ("One", "Two", "Three")
    from mir_core.annotation.prompts import AMESS_EXAMPLE
    parrot = "Thank: " + " ".join(f"{i}. {d}" for i, d in enumerate(AMESS_EXAMPLE, 1))
    copied = parse_label_descriptions(parrot, "Thank", forbidden=AMESS_EXAMPLE)
    assert not copied.ok and "copy the prompt's example" in copied.error
    same = parse_label_descriptions("1. Casual talk. 2. A casual talk! 3. casual  talk", "Backchannel")
    assert not same.ok and "repeat: only 2 different" in same.error   # 'a' differs
    twice = parse_label_descriptions("1. Casual talk. 2. Casual talk. 3. Casual talk.", "X")
    assert not twice.ok and "only 1 different" in twice.error
    bad = parse_label_descriptions("1. only one", "X")
    assert not bad.ok and "need 3" in bad.error
    assert not parse_label_descriptions("", "X").ok


@pytest.mark.fault(area="LLM client", case="a label-description reply that goes on after its "
                   "third description (Gemma-3-270M: a blank line, invented text, a new list)",
                   before="the third description ran to the end of the reply and was kept "
                          "(silently, as valid)",
                   after="a description ends at a blank line, the third also at a new "
                         "numbered list; the invented text is not part of it")
def test_label_descriptions_end_where_the_reply_goes_on():
    # Gemma-3-270M's reply for Others (IEMOCAP-DA, few-shot): three inline descriptions, then
    # invented content and a new numbered list; the third description used to run to the end
    others = ("1. To express gratitude or appreciation for someone's kindness or help. 2. To "
              "express appreciation for a job well done. 3. To praise or praise someone for "
              "their efforts.\n\nI am a language assistant. I provide services to the students "
              "in the classroom. I am responsible for the following:\n\n1. To provide the "
              "students with the necessary information about the subject.\n2. To provide")
    assert parse_label_descriptions(others, "Others").descriptions == (
        "To express gratitude or appreciation for someone's kindness or help.",
        "To express appreciation for a job well done.",
        "To praise or praise someone for their efforts.")
    # a new list on the next line: the numbering restarts, the third description ends
    again = "1. To greet someone.\n2. To open a conversation.\n3. To welcome.\n1. To thank."
    assert parse_label_descriptions(again, "Greeting").descriptions[2] == "To welcome."
    # blank-line separated items are still one description each; a fourth is left out
    spaced = "1. One.\n\n2. Two,\n   wrapped.\n\n3. Three.\n\n4. Four."
    assert parse_label_descriptions(spaced, "X").descriptions == ("One.", "Two, wrapped.",
                                                                  "Three.")
