"""The promotion gate: may a candidate model replace the active one?

Pure logic on numbers measured on the *same* held-out labelled parts for both models:

* the candidate's false-negative rate (missed defects) must be no worse than the active
  model's, and
* its false-positive rate (false alarms) may be worse by at most ``fpr_margin`` (absolute,
  default :data:`DEFAULT_FPR_MARGIN`, or ``$LOUPE_GATE_FPR_MARGIN``),
* unless missed defects come first (``target_fnr`` given): when the active model misses more
  held-out defects than the project's target and the candidate misses fewer, the candidate
  passes whatever its false-alarm rate, which the decision states. The plant's order is
  missed defects before false alarms; a gate that refused every threshold cut that catches
  defects would keep a model that misses them.

A rate that cannot be measured (no held-out defect, or no held-out good part) is not compared;
the decision then says so in ``notes``. With no active model, every candidate passes.

:func:`gate_record` builds the JSON stored on the candidate as ``metrics["gate"]``; the
storage layer (:func:`db.model_versions.promote_model_version`) reads its ``decision`` and
checks that the compared active version is still the active one.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT_FPR_MARGIN = 0.02
FPR_MARGIN_ENV = "LOUPE_GATE_FPR_MARGIN"
_EPSILON = 1e-12


@dataclass(frozen=True)
class Rates:
    """How a model with its threshold does on the held-out parts.

    Attributes:
        threshold: The decision threshold used (flag when ``score >= threshold``).
        fnr: Missed defects / held-out defects; ``None`` without held-out defects.
        fpr: False alarms / held-out good parts; ``None`` without held-out good parts.
        tp: Defects flagged.
        fp: Good parts flagged.
        tn: Good parts passed.
        fn: Defects passed (missed).
    """

    threshold: float | None
    fnr: float | None
    fpr: float | None
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    @property
    def n_defect(self) -> int:
        """Held-out defects."""
        return self.tp + self.fn

    @property
    def n_good(self) -> int:
        """Held-out good parts."""
        return self.fp + self.tn

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (with ``n_good`` and ``n_defect``)."""
        return {**asdict(self), "n_good": self.n_good, "n_defect": self.n_defect}


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict.

    Attributes:
        passed: Whether the candidate may replace the active model without an override.
        reasons: Why it may not (one sentence per failed check); empty when it passed.
        notes: Checks that could not be made, and other facts worth showing.
    """

    passed: bool
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"passed": self.passed, "reasons": list(self.reasons), "notes": list(self.notes)}


def fpr_margin_from_env(default: float = DEFAULT_FPR_MARGIN) -> float:
    """The configured FPR margin: ``$LOUPE_GATE_FPR_MARGIN`` or ``default``."""
    text = os.environ.get(FPR_MARGIN_ENV, "").strip()
    return check_margin(float(text)) if text else default


def check_margin(margin: float) -> float:
    """Return ``margin`` if it is a fraction in [0, 1], else raise ``ValueError``."""
    value = float(margin)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"The FPR margin must be between 0 and 1, got {margin!r}.")
    return value


def decide(
    candidate: Rates,
    active: Rates | None,
    *,
    fpr_margin: float = DEFAULT_FPR_MARGIN,
    target_fnr: float | None = None,
) -> GateDecision:
    """Compare a candidate with the active model on the same held-out parts.

    Args:
        candidate: The candidate's rates.
        active: The active model's rates, or ``None`` when the project has no active model.
        fpr_margin: How much worse (absolute) the candidate's FPR may be.
        target_fnr: The project's miss-rate target; when given and the active model's held-out
            FNR is above it, a candidate with a lower FNR passes whatever its FPR.

    Returns:
        The decision.
    """
    margin = check_margin(fpr_margin)
    if active is None:
        return GateDecision(True, (), ("No active model to compare with.",))
    reasons: list[str] = []
    notes: list[str] = []
    if candidate.fnr is None or active.fnr is None:
        notes.append("No held-out labelled defect: the miss rates (FNR) were not compared.")
    elif candidate.fnr > active.fnr + _EPSILON:
        reasons.append(
            f"It misses more defects: FNR {_pct(candidate.fnr)} vs {_pct(active.fnr)} for the "
            f"active model ({candidate.fn} vs {active.fn} of {candidate.n_defect} held-out "
            "defects)."
        )
    if candidate.fpr is None or active.fpr is None:
        notes.append("No held-out good part: the false-alarm rates (FPR) were not compared.")
    elif _misses_first(candidate, active, target_fnr):
        notes.append(
            f"Missed defects first: the active model misses {_pct(active.fnr)} of the held-out "
            f"defects, above the target of {_pct(target_fnr)}, and the candidate "
            f"{_pct(candidate.fnr)}; its false alarms ({_pct(candidate.fpr)} vs "
            f"{_pct(active.fpr)}) were not held against it."
        )
    elif candidate.fpr > active.fpr + margin + _EPSILON:
        reasons.append(
            f"It raises more false alarms: FPR {_pct(candidate.fpr)} vs {_pct(active.fpr)} for "
            f"the active model, more than the allowed margin of {_pct(margin)}."
        )
    return GateDecision(not reasons, tuple(reasons), tuple(notes))


def _misses_first(candidate: Rates, active: Rates, target_fnr: float | None) -> bool:
    """Whether the active model misses more than the target and the candidate misses fewer."""
    if target_fnr is None or candidate.fnr is None or active.fnr is None:
        return False
    return active.fnr > target_fnr + _EPSILON and candidate.fnr < active.fnr - _EPSILON


def gate_record(
    *,
    candidate: Rates,
    active: Rates | None,
    active_version_id: int | None,
    active_version: int | None,
    heldout: dict[str, Any],
    fpr_margin: float = DEFAULT_FPR_MARGIN,
    notes: list[str] | None = None,
    target_fnr: float | None = None,
) -> dict[str, Any]:
    """The JSON stored as the candidate's ``metrics["gate"]`` (candidate vs active).

    Args:
        candidate: The candidate's rates on the held-out parts.
        active: The active model's rates on the same parts (``None`` without an active model).
        active_version_id: The active version's id at evaluation time.
        active_version: Its version number.
        heldout: Facts about the held-out set (counts, hash of the image digests).
        fpr_margin: The margin used.
        notes: Extra notes for the UI (e.g. the threshold was chosen on the held-out parts).
        target_fnr: The project's miss-rate target, for the missed-defects-first rule of
            :func:`decide` (``None``: not applied).

    Returns:
        ``{"evaluated_at", "fpr_margin", "heldout", "candidate", "active", "decision"}``;
        ``active`` holds ``version_id`` and ``version`` besides the rates.
    """
    decision = decide(candidate, active, fpr_margin=fpr_margin, target_fnr=target_fnr)
    active_json = None
    if active is not None:
        active_json = {
            "version_id": active_version_id,
            "version": active_version,
            **active.to_json(),
        }
    decided = decision.to_json()
    decided["notes"] = [*decided["notes"], *(notes or [])]
    return {
        "evaluated_at": datetime.now(UTC).isoformat(),
        "fpr_margin": float(fpr_margin),
        "target_fnr": target_fnr,
        "heldout": dict(heldout),
        "candidate": candidate.to_json(),
        "active": active_json,
        "decision": decided,
    }


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"
