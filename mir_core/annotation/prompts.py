"""Prompt texts of the shallow-to-deep chain of thought (LGSRR, Sec. 3.1 and Appendix C)
and of A-MESS's label descriptions (A-MESS, Sec. III-C / IV).

The template sentences are quoted from the papers. What the papers leave out is marked
as the workspace's own addition where it is defined:

* Template 1 (CoT step 1) is preceded by the background samples B = {(T_i, V_i)} of
  Eq. (1); the paper says the prompt holds "an introduction to the task background along
  with raw data descriptions" but does not print that block.
* Template 2 (CoT step 2) names ``<Action Instruction>`` etc. without giving their text;
  :data:`CUE_INSTRUCTIONS` holds ours. The paper asks for all three perspectives in one
  prompt; the workspace asks for one cue per prompt (one description per cue per sample)
  with the same wording, and :func:`template2_combined` keeps the paper's joint form.
* Template 3 (CoT step 3) is followed by one answer-format line so that the reply of any
  model can be parsed (:data:`RANK_FORMAT_LINE`).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import Sequence

from ..data import ASPECTS

# --------------------------------------------------------------------------- cue vocabulary
# Canonical names of the cues of Sec. 3.1 (Table 6 abbreviations). The first three are the
# data layer's ASPECTS, spelled as in the released description files.
CANONICAL_CUES: dict[str, str] = {
    "A": ASPECTS[0],                      # Speakers' Actions
    "E": ASPECTS[1],                      # Emotions and Facial Expressions
    "I": ASPECTS[2],                      # Interaction with Others
    "TMS": "Tone and Manner of Speaking",
    "IS": "Identity and Status",
    "SD": "Scene Description",
}
CUE_SHORT: dict[str, str] = {name: short for short, name in CANONICAL_CUES.items()}

# The names Template 3 uses for the three aspects ("Speakers' Actions, Facial Expressions
# and Interaction with Others"), index-aligned with ASPECTS.
TEMPLATE3_NAMES: tuple[str, str, str] = (
    "Speakers' Actions", "Facial Expressions", "Interaction with Others")

# Our text for Template 2's <... Instruction> slots (the paper does not print them).
CUE_INSTRUCTIONS: dict[str, str] = {
    "A": ("describe the speakers' body movements, gestures, posture and actions, and what "
          "they suggest about what the speaker wants"),
    "E": "describe the speakers' facial expressions and the emotions they convey",
    "I": ("describe how the speaker interacts with the other people present: whom they "
          "address, how the others react, and the relationship between them"),
    "TMS": "describe the speaker's tone of voice, pace and manner of speaking",
    "IS": "describe the apparent identity, role and social status of the speaker",
    "SD": "describe the setting: the place, the objects and the situation shown",
}

# --------------------------------------------------------------------------- templates
TEMPLATE1 = (
    "Multimodal intent recognition aims to analyze the intent of the speaker in a video by "
    "utilizing both the video content and corresponding text captions. What are the key "
    "analytical perspectives for multimodal intent recognition? Please list them.")

TEMPLATE2_HEAD = (
    "Generate detailed descriptions that help identify the speaker's intent. Please combine "
    "video and text to describe from the following perspectives:")
TEMPLATE2_TAIL = (
    "Focus on these aspects to create a comprehensive description that would aid in "
    "recognizing the intentions behind the speakers' actions and words.")

TEMPLATE3 = (
    "I will provide you with the intent of the video and descriptions of the video from three "
    "different semantics. You need to rank these semantics according to their contribution to "
    "the intent and the content of the descriptions. The three aspects are Speakers' Actions, "
    "Facial Expressions and Interaction with Others. The intent of the video is {intent}. The "
    "descriptions are {action}, {expression} and {interaction}.")
# Workspace addition: a fixed answer format, the same one the log-likelihood ranker scores.
RANK_FORMAT_LINE = (
    "Answer with the ranking only, most important first, as a numbered list of the three "
    "aspect names:\n1. <aspect>\n2. <aspect>\n3. <aspect>")
RANK_RETRY_LINE = (
    "Your previous answer could not be read as a ranking. Reply with exactly three lines, "
    "most important first, using only the names Speakers' Actions, Facial Expressions and "
    "Interaction with Others:\n1. <aspect>\n2. <aspect>\n3. <aspect>")

# A-MESS (Sec. IV, implementation details): the "free lunch" prompt sent to GPT-4.
# The instruction of the paper's prompt; AMESS_PROMPT adds its one worked example.
AMESS_INSTRUCTION = (
    "You are language assistant. For the nouns I provide, please give three different "
    "descriptions. These definitions will be used for intent detection tasks. Ensure the "
    "accuracy and conciseness of the explanations, and do not output any other content.")
AMESS_PROMPT = (
    AMESS_INSTRUCTION + " "
    "Example: Complain: 1. Expressing dissatisfaction or annoyance about something. 2. Seeking "
    "redress or resolution by voicing grievances. 3. Highlighting perceived flaws or problems "
    "in a situation.")
# The example descriptions inside AMESS_PROMPT: a reply repeating them is rejected.
AMESS_EXAMPLE = (
    "Expressing dissatisfaction or annoyance about something.",
    "Seeking redress or resolution by voicing grievances.",
    "Highlighting perceived flaws or problems in a situation.")
AMESS_RETRY_LINE = (
    "Give exactly three numbered descriptions (1., 2., 3.) of {label}, one per line, and "
    "nothing else.")


@dataclass(frozen=True)
class BackgroundSample:
    """One background sample (T_i, V_i) of CoT step 1: the utterance and what stands for
    the video (a text description, or nothing when frames are sent as images)."""

    key: str
    text: str
    video: str = ""


def cue_discovery_prompt(samples: Sequence[BackgroundSample]) -> str:
    """CoT step 1 (Eq. 1): background samples B followed by Template 1."""
    lines = [f"Here are {len(samples)} samples of a multimodal intent recognition data set, "
             "each with the speaker's words and a description of the video clip:"]
    for i, s in enumerate(samples, 1):
        video = f" Video: {s.video}" if s.video else ""
        lines.append(f"Sample {i}: Text: \"{s.text}\"{video}")
    lines.append("")
    lines.append(TEMPLATE1)
    return "\n".join(lines)


def cue_instruction(cue: str) -> str:
    """Template 2's instruction for a canonical cue name or short name; a generic one for
    cues outside the canonical vocabulary."""
    short = cue if cue in CANONICAL_CUES else CUE_SHORT.get(cue)
    if short is not None:
        return CUE_INSTRUCTIONS[short]
    return f"describe what the video and the words show about the {cue.lower()}"


def cue_display_name(cue: str) -> str:
    return CANONICAL_CUES.get(cue, cue)


def description_prompt(cue: str, text: str, n_frames: int = 0) -> str:
    """CoT step 2 (Eq. 2) for one cue: Template 2 restricted to that perspective, with the
    utterance. ``n_frames`` > 0 says frames are attached; 0 says the model sees text only."""
    name = cue_display_name(cue)
    if n_frames > 0:
        seen = f"The video is given as {n_frames} frames sampled uniformly from the clip."
    else:
        seen = ("No video frames are available to you; describe what the words imply, and say "
                "so when the video would be needed.")
    return (f"{TEMPLATE2_HEAD} (1) {name}: {cue_instruction(cue)}. {TEMPLATE2_TAIL}\n"
            f"{seen}\nThe speaker says: \"{text}\"")


def template2_combined(cues: Sequence[str], text: str) -> str:
    """The paper's joint Template 2 over all selected cues, with the utterance."""
    parts = [f"({i}) {cue_display_name(c)}: {cue_instruction(c)}" for i, c in enumerate(cues, 1)]
    return f"{TEMPLATE2_HEAD} {'; '.join(parts)}. {TEMPLATE2_TAIL}\nThe speaker says: \"{text}\""


def rank_prompt(intent: str, action: str, expression: str, interaction: str,
                with_format: bool = True) -> str:
    """CoT step 3 (Eq. 3): Template 3 with the gold intent and the three descriptions."""
    body = TEMPLATE3.format(intent=intent, action=_quote(action), expression=_quote(expression),
                            interaction=_quote(interaction))
    return f"{body}\n{RANK_FORMAT_LINE}" if with_format else body


def _quote(s: str) -> str:
    return f"\"{s.strip()}\""


def rank_answer(order: Sequence[int]) -> str:
    """The answer string of an order (aspect indices most -> least important), in the
    format of :data:`RANK_FORMAT_LINE`; what the log-likelihood ranker scores."""
    return "\n".join(f"{i}. {TEMPLATE3_NAMES[a]}" for i, a in enumerate(order, 1))


# The 6 possible orders, in itertools order: A>E>I, A>I>E, E>A>I, E>I>A, I>A>E, I>E>A.
ALL_ORDERS: tuple[tuple[int, int, int], ...] = tuple(permutations(range(3)))  # type: ignore


def label_description_prompt(label: str) -> str:
    """A-MESS label descriptions: the paper's prompt followed by the noun."""
    return f"{AMESS_PROMPT}\n{label}:"


def numbered(descriptions: Sequence[str]) -> str:
    """'1. d1 2. d2 3. d3': the answer format of the A-MESS prompt's example."""
    return " ".join(f"{i}. {d}" for i, d in enumerate(descriptions, 1))


def label_description_messages(label: str,
                               examples: Sequence[tuple[str, Sequence[str]]] = ()
                               ) -> list[dict]:
    """The chat of one label-description query. No ``examples``: the paper's prompt (its one
    inline example, Complain) and the noun, as one user turn. With ``examples`` ((label,
    descriptions) pairs, e.g. the paper's GPT-4 descriptions of other labels): the
    instruction, then each example as a user turn (the noun) answered by an assistant turn
    (its numbered descriptions), then the noun asked for. Small local models given the
    inline example mostly repeat it for every label; worked examples of several labels in
    the answer format give them a pattern rather than a sentence to copy."""
    if not examples:
        return [{"role": "user", "content": label_description_prompt(label)}]
    (first, first_desc), rest = examples[0], examples[1:]
    msgs = [{"role": "user", "content": f"{AMESS_INSTRUCTION}\n{first}:"},
            {"role": "assistant", "content": numbered(first_desc)}]
    for lab, desc in rest:
        msgs += [{"role": "user", "content": f"{lab}:"},
                 {"role": "assistant", "content": numbered(desc)}]
    return msgs + [{"role": "user", "content": f"{label}:"}]
