"""The line's miss rate and false-alarm rate, from reviews and audits weighted by their odds.

Rates computed from reviews alone cannot see missed defects: inspectors only see the parts the
line sends them, never the ones it passes. This estimate combines the reviews of parts sent to
a human with the reviews of audited passed parts, each weighted by 1 / (the known odds that a
part of its decision region is drawn for audit), stratum by stratum
(:mod:`adcore.loop_estimate` explains the statistics and its interval). The parts come from
:mod:`db.loop_parts`: each part once, as the line decided it at its first prediction, with its
current label. Periods refer to when the line decided the part, not when it was reviewed; the
estimate per period and model, sparse periods merged, is :mod:`services.line_trends`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from adcore.loop_estimate import LoopEstimate, estimate_loop_rates
from adcore.rates import DEFAULT_CONFIDENCE
from db.base import Label
from db.loop_parts import LoopPart, loop_parts
from db.projects import get_project

__all__ = ["estimate_counts", "estimate_parts", "loop_rates"]

_LABEL_CODES = {Label.DEFECT.value: 1, Label.GOOD.value: 0, None: -1}
"""A stored label as :func:`adcore.loop_estimate.estimate_loop_rates` reads it."""


def loop_rates(
    session: Session,
    project_id: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> LoopEstimate:
    """The project's estimated miss rate and false-alarm rate, with their intervals.

    Args:
        session: The caller's session.
        project_id: The project.
        since: Only parts decided at or after this moment (timezone-aware).
        until: Only parts decided before this moment (timezone-aware).
        confidence: Confidence level of the intervals, in (0, 1).

    Returns:
        The estimate over the project's decided parts (every rate ``None`` without parts).

    Raises:
        LookupError: If the project does not exist.
        ValueError: If ``since`` or ``until`` is naive, or on a confidence outside (0, 1).
    """
    _check_project(session, project_id)
    return estimate_parts(loop_parts(session, project_id, since=since, until=until), confidence)


def estimate_parts(
    parts: Sequence[LoopPart], confidence: float = DEFAULT_CONFIDENCE
) -> LoopEstimate:
    """The estimate over stored parts (their labels coded 1 defect, 0 good, -1 none).

    Raises:
        ValueError: On a label the store should not hold, or a confidence outside (0, 1).
    """
    return estimate_counts([(part, 1) for part in parts], confidence)


def estimate_counts(
    counted: Sequence[tuple[LoopPart, int]], confidence: float = DEFAULT_CONFIDENCE
) -> LoopEstimate:
    """:func:`estimate_parts` over ``(part, how many such parts)`` pairs (counted in SQL).

    Raises:
        ValueError: On a label the store should not hold, or a confidence outside (0, 1).
    """
    regions: list[str | None] = []
    probabilities: list[float | None] = []
    audited: list[bool] = []
    labels: list[int] = []
    verdicts: list[str] = []
    counts: list[int] = []
    for part, n in counted:
        try:
            labels.append(_LABEL_CODES[part.label])
        except KeyError:
            raise ValueError(f"Unknown stored label {part.label!r}.") from None
        regions.append(part.region)
        probabilities.append(part.audit_probability)
        audited.append(part.audited)
        verdicts.append(part.verdict)
        counts.append(n)
    return estimate_loop_rates(
        regions, probabilities, audited, labels, verdicts, counts=counts, confidence=confidence
    )


def _check_project(session: Session, project_id: int) -> None:
    """Raise ``LookupError`` unless the project exists."""
    if get_project(session, project_id) is None:
        raise LookupError(f"No project with id {project_id}.")
