"""Plain sentences from :class:`~adcore.explain.facts.ExplanationFacts` (deterministic, no model).

Every number in the text is one of the facts' fields, rounded for display by
:func:`format_value` / :func:`format_percent`: the score, the threshold, the relative margin
(as a percentage), the regions' count and area percentages, and the count of similar confirmed
defects. Nothing is inferred that the facts do not say.

When the facts name a similar confirmed defect type, a flagged part's text ends with "It
resembles 3 confirmed 'crack' parts."; if that would make a fourth sentence, it joins the last
one ("...; it resembles ...") so the text stays within three sentences.
"""

from __future__ import annotations

import math

from adcore.explain.facts import ExplanationFacts

KINDS = {"elongated": "scratch- or crack-like", "compact": "spot-, hole- or contamination-like"}
"""What a region's shape suggests, in an inspector's words."""


def format_value(value: float) -> str:
    """A score or threshold with about three significant digits (``41.2``, ``0.0312``)."""
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_percent(percent: float) -> str:
    """A percentage (already x100) for display: ``40``, ``3.1``, ``0.42``."""
    if percent >= 10:
        return f"{percent:.0f}"
    if percent >= 1:
        return f"{percent:.1f}"
    text = f"{percent:.2f}"
    return text if text != "0.00" else f"{percent:.1g}"


def render(facts: ExplanationFacts) -> str:
    """One to three sentences explaining the verdict, grounded in the facts.

    Args:
        facts: Measured facts of one prediction.

    Returns:
        E.g. ``"Flagged: score 41.2 is 40% above the threshold 29.4. One elongated, darker
        region (scratch- or crack-like) at the upper-left rim covers 3.1% of the part. It
        resembles 3 confirmed 'crack' parts."``
    """
    sentences = [_verdict_sentence(facts)]
    if facts.verdict == "defect":
        sentences.extend(_region_sentences(facts))
        resembles = _similar_clause(facts)
        if resembles and len(sentences) < 3:
            sentences.append(f"It {resembles}.")
        elif resembles:
            sentences[-1] = f"{sentences[-1].removesuffix('.')}; it {resembles}."
    return " ".join(sentences)


def _similar_clause(facts: ExplanationFacts) -> str | None:
    """``"resembles 3 confirmed 'crack' parts"``, or None without similar confirmed defects."""
    if not facts.similar_defect_type or facts.similar_count < 1:
        return None
    noun = "part" if facts.similar_count == 1 else "parts"
    return f"resembles {facts.similar_count} confirmed '{facts.similar_defect_type}' {noun}"


def _verdict_sentence(facts: ExplanationFacts) -> str:
    flagged = facts.verdict == "defect"
    lead = "Flagged" if flagged else "Passed"
    side = "above" if flagged else "below"
    score, threshold = format_value(facts.score), format_value(facts.threshold)
    if score == threshold and facts.score != facts.threshold:  # show the digits that differ
        score, threshold = f"{facts.score:.6g}", f"{facts.threshold:.6g}"
    if facts.relative_margin is None:
        how = "at or above" if flagged else "below"
    else:
        percent = f"{abs(facts.relative_margin) * 100:.0f}"
        how = f"just {side}" if percent == "0" else f"{percent}% {side}"
    return f"{lead}: score {score} is {how} the threshold {threshold}."


def _region_sentences(facts: ExplanationFacts) -> list[str]:
    if facts.n_regions == 0 or facts.shape is None:
        return ["No distinct region stands out in the anomaly map."]
    kind = KINDS[facts.shape]
    place = _place(facts)
    if facts.n_regions == 1:
        place = f"{place}," if "," in place else place
        if facts.intensity == "similar":
            look = f"One {facts.shape} region of similar brightness"
        else:
            look = f"One {facts.shape}, {facts.intensity} region"
        return [
            f"{look} ({kind}) {place} covers {format_percent(facts.area_percent)}% of the part."
        ]
    if facts.intensity == "similar":
        look = f"{facts.shape} with similar brightness"
    else:
        look = f"{facts.shape} and {facts.intensity}"
    return [
        f"{facts.n_regions} separate regions cover {format_percent(facts.area_percent)}% "
        "of the part.",
        f"The largest ({format_percent(facts.largest_area_percent)}%) is {look} ({kind}), {place}.",
    ]


def _place(facts: ExplanationFacts) -> str:
    if facts.location == "centre":
        return "in the centre, reaching the rim" if facts.at_rim else "in the centre"
    if facts.at_rim:
        return f"at the {facts.location} rim"
    return f"in the {facts.location} area"
