"""Check an explanation text against the measured facts (for texts a language model wrote).

A text passes when

* it states the prediction's verdict: a word of the verdict ("flagged", "defect", ... for a
  flagged part; "passed", "good", ... for a passed one) and no unnegated word of the other
  verdict, and
* every number in it is one of the facts' numbers (score, threshold, relative margin in percent,
  region count, area percentages, the count of similar confirmed defects and of neighbours
  considered), equal up to the rounding the text shows, and
* no unnegated descriptive word contradicts the largest region's measured look: its
  brightness (a darker region called "bright", a brighter one "dark", one of similar
  brightness either), its shape (an elongated region called a "spot", a compact one a
  "scratch") and its place (a word for the other side of the part than the measured thirds:
  "lower" for an upper-left region, "left" for a centred one). When no region was measured,
  any such description is an invention.

The name of the similar confirmed defect type is an inspector's free text: its occurrences are
left out before checking, so a type such as ``"crack 2"`` or ``"not good"`` neither adds a
number nor a verdict word.

The grounded renderer (:func:`adcore.explain.sentences.render`) always passes; a rewritten text
that fails is replaced by the grounded one and the event is logged by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from adcore.explain.facts import ExplanationFacts

NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e[-+]?\d+)?")
_WORD = re.compile(r"[a-z]+")
VERDICT_WORDS = {
    "defect": ("flagged", "defect", "defective", "faulty", "reject", "rejected", "anomalous"),
    "good": ("passed", "good", "ok", "acceptable", "accepted", "normal"),
}
NEGATIONS = ("no", "not", "without", "never", "isn't", "nothing")
BRIGHTNESS_WORDS = {
    "darker": ("darker", "dark", "darkened", "shadow", "shadowed"),
    "brighter": ("brighter", "bright", "lighter", "light", "pale", "white"),
}
SHAPE_WORDS = {
    "elongated": (
        "elongated",
        "scratch",
        "scratches",
        "crack",
        "cracks",
        "line",
        "linear",
        "streak",
        "thin",
    ),
    "compact": (
        "compact",
        "spot",
        "spots",
        "hole",
        "holes",
        "pit",
        "pits",
        "round",
        "blob",
        "dot",
        "contamination",
        "speck",
    ),
}
SIDE_WORDS = {
    "vertical": {"upper": ("upper", "top"), "lower": ("lower", "bottom")},
    "horizontal": {"left": ("left",), "right": ("right",)},
}
"""Words that place a region; a fact's location is ``<vertical>-<horizontal>``, one part, or
``centre`` (the middle third on both axes)."""


@dataclass(frozen=True)
class FactCheck:
    """The outcome of :func:`check_text`.

    Attributes:
        passed: Whether the text is consistent with the facts.
        problems: What is wrong, one sentence each (empty when passed).
    """

    passed: bool
    problems: tuple[str, ...] = field(default_factory=tuple)


def fact_numbers(facts: ExplanationFacts) -> list[float]:
    """The numbers an explanation may state."""
    values = [facts.score, facts.threshold, facts.area_percent, facts.largest_area_percent]
    values.append(float(facts.n_regions))
    if facts.relative_margin is not None:
        values.append(abs(facts.relative_margin) * 100)
    if facts.similar_defect_type:
        values.extend([float(facts.similar_count), float(facts.similar_k)])
    return values


def _matches(token: str, values: list[float]) -> bool:
    if "e" in token:
        tolerance = abs(float(token)) * 0.05
    else:
        decimals = len(token.split(".")[1]) if "." in token else 0
        tolerance = 0.5 * 10**-decimals + 1e-9
    return any(abs(float(token) - value) <= tolerance for value in values)


def _mentions(words: list[str], vocabulary: tuple[str, ...], *, unnegated: bool) -> bool:
    for index, word in enumerate(words):
        if word not in vocabulary:
            continue
        negated = any(w in NEGATIONS for w in words[max(0, index - 3) : index])
        if not unnegated or not negated:
            return True
    return False


def check_text(text: str, facts: ExplanationFacts) -> FactCheck:
    """Check that a text states the facts' verdict and only the facts' numbers.

    Args:
        text: The explanation to check.
        facts: The measured facts of the same prediction.

    Returns:
        A :class:`FactCheck`.
    """
    problems: list[str] = []
    if facts.similar_defect_type:
        name = rf"(?<!\w){re.escape(facts.similar_defect_type)}(?!\w)"
        text = re.sub(name, " ", text, flags=re.IGNORECASE)
    words = _WORD.findall(text.lower().replace("n't", " not"))
    other = "good" if facts.verdict == "defect" else "defect"
    if not _mentions(words, VERDICT_WORDS[facts.verdict], unnegated=True):
        problems.append(f"The text does not say the part was {facts.verdict!r}.")
    if _mentions(words, VERDICT_WORDS[other], unnegated=True):
        problems.append(f"The text calls the part {other!r}, but the verdict is {facts.verdict!r}.")
    values = fact_numbers(facts)
    for token in NUMBER.findall(text):
        if not _matches(token, values):
            problems.append(f"The number {token} is not one of the measured facts.")
    problems.extend(_description_problems(words, facts))
    return FactCheck(not problems, tuple(problems))


def _description_problems(words: list[str], facts: ExplanationFacts) -> list[str]:
    """Descriptive words that contradict the largest region's brightness, shape or place."""
    if facts.shape is None:  # no region was measured: any description is invented
        described = [
            word
            for vocabulary in (*BRIGHTNESS_WORDS.values(), *SHAPE_WORDS.values())
            for word in vocabulary
            if _mentions(words, (word,), unnegated=True)
        ]
        if not described:
            return []
        return [f"The text describes a region ({described[0]!r}), but none was measured."]
    problems = []
    for look, vocabulary in BRIGHTNESS_WORDS.items():
        if look != facts.intensity and _mentions(words, vocabulary, unnegated=True):
            problems.append(f"The text calls the region {look}, but it measured {facts.intensity}.")
    for shape, vocabulary in SHAPE_WORDS.items():
        if shape != facts.shape and _mentions(words, vocabulary, unnegated=True):
            problems.append(f"The text calls the region {shape}, but it measured {facts.shape}.")
    location = set((facts.location or "").split("-"))
    for sides in SIDE_WORDS.values():
        for side, vocabulary in sides.items():
            if side not in location and _mentions(words, vocabulary, unnegated=True):
                problems.append(f"The text places the region {side}, but it lies {facts.location}.")
    return problems
