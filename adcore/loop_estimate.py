"""The line's miss rate and false-alarm rate, estimated from censored reviews.

Inspectors see the parts the line sends them and the passed parts drawn for audit, never the
other passed parts, so rates computed from reviews alone cannot see missed defects. Each part
is in one *stratum*: its decision region (:data:`adcore.audit.REGIONS`), or, for parts decided
before regions were stored, ``legacy_flagged`` (verdict defect) or ``legacy_passed`` (verdict
good). Within a stratum the usable labels are:

* ``sent_to_human`` and ``legacy_flagged``: every labelled part, weight 1;
* ``auto_accepted``, ``near_pass`` and ``deep_pass``: labelled parts drawn for audit, weight
  1 / (their known audit probability);
* ``legacy_passed``: labelled audited parts, weight 1 (their odds were constant but unstored;
  a within-stratum ratio does not need them).

The stratum's defect share is the Hájek ratio ``q_r = Σ w·y / Σ w``; with ``N_r`` parts in the
stratum the plug-in estimates are ``defects = Σ_r N_r q_r``, ``missed = Σ_{pass r} N_r q_r``,
``FNR = missed / defects`` and, with goods ``Σ_r N_r (1 - q_r)`` and goods sent to a human
``Σ_{send r} N_r (1 - q_r)``, ``FPR = goods to human / goods``. A stratum with parts but no
usable label leaves the point estimates it enters undefined (``None``, with a note).

Interval: stratified Beta posterior simulation with the Jeffreys prior. For each stratum the
Kish effective size ``n_eff = (Σ w)² / Σ w²`` turns the weighted labels into
``d_eff = n_eff · q_r`` defects and ``g_eff = n_eff - d_eff`` goods, and ``draws`` values
``q_r ~ Beta(d_eff + 1/2, g_eff + 1/2)`` are drawn (``Beta(1/2, 1/2)`` without usable labels)
with a seeded numpy generator. FNR and FPR are computed per draw (draws with a zero
denominator are dropped) and the equal-tailed percentiles at the confidence level give the
interval. As for the binomial Jeffreys interval, an end is moved to the point estimate when the
point lies outside (0 defects found: the lower end is 0). The prior keeps tiny counts honest:
no miss among 3 audits still gives an upper end well above 0.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from adcore.audit import AUDITED_REGIONS, REGIONS, SENT_TO_HUMAN
from adcore.rates import DEFAULT_CONFIDENCE

__all__ = [
    "LEGACY_FLAGGED",
    "LEGACY_PASSED",
    "SEND_STRATA",
    "STRATA",
    "LoopEstimate",
    "RateInterval",
    "Stratum",
    "estimate_loop_rates",
    "label_enters",
    "stratum_of",
]

LEGACY_FLAGGED = "legacy_flagged"
"""Parts decided before regions were stored, with verdict defect (sent to a human)."""
LEGACY_PASSED = "legacy_passed"
"""Parts decided before regions were stored, with verdict good (passed; audited at a share)."""
STRATA = (*REGIONS, LEGACY_FLAGGED, LEGACY_PASSED)
"""Every stratum, in report order."""
SEND_STRATA = (SENT_TO_HUMAN, LEGACY_FLAGGED)
"""Strata whose parts a human sees with certainty; every other stratum passes its parts."""
_JEFFREYS = 0.5


@dataclass(frozen=True)
class RateInterval:
    """A rate's point estimate and its interval (each ``None`` when it cannot be given)."""

    rate: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Stratum:
    """One stratum: its parts, its usable labels and their weighted defect share.

    Attributes:
        region: The stratum (one of :data:`STRATA`).
        n_parts: Parts in the stratum (``N_r``).
        n_labelled: Usable labelled parts (see the module docstring).
        weighted_defect_share: ``q_r``; ``None`` without usable labels.
    """

    region: str
    n_parts: int
    n_labelled: int
    weighted_defect_share: float | None


@dataclass(frozen=True)
class LoopEstimate:
    """The line's estimated miss rate (FNR) and false-alarm rate (FPR) with intervals.

    Attributes:
        n_parts: Parts decided.
        n_labelled_defects: Usable labels (see the module docstring) that say defect.
        fnr: Share of all defects the line passed.
        fpr: Share of all good parts the line sent to a human.
        est_defects: Estimated defects among all parts.
        est_missed: Estimated defects among passed parts.
        est_goods: Estimated good parts among all parts.
        est_goods_to_human: Estimated good parts sent to a human.
        strata: The strata with parts, in :data:`STRATA` order.
        confidence: The intervals' confidence level.
        notes: Why a figure is missing, in plain words.
    """

    n_parts: int
    n_labelled_defects: int
    fnr: RateInterval
    fpr: RateInterval
    est_defects: float | None
    est_missed: float | None
    est_goods: float | None
    est_goods_to_human: float | None
    strata: tuple[Stratum, ...]
    confidence: float
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (nested dicts and lists)."""
        data = asdict(self)
        data["strata"], data["notes"] = [asdict(row) for row in self.strata], list(self.notes)
        return data


def estimate_loop_rates(
    regions: Sequence[str | None],
    probabilities: Sequence[float | None],
    audited: Sequence[bool],
    labels: Sequence[int],
    verdicts: Sequence[str],
    *,
    counts: Sequence[int] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    draws: int = 4000,
    seed: int = 0,
) -> LoopEstimate:
    """Estimate the line's FNR and FPR from its parts (one entry per part in each sequence).

    With ``counts``, each entry stands for that many identical parts (counted in SQL): the
    result equals the estimate over the entries repeated.

    Args:
        regions: Decision region of each part, shape (n,); ``None`` for a legacy part.
        probabilities: Known audit probability of each part, shape (n,); only read for audited
            parts of the pass regions.
        audited: Whether each part was drawn for audit, shape (n,).
        labels: Current human label of each part, shape (n,): 1 defect, 0 good, -1 none.
        verdicts: The line's verdict (``"defect"`` / ``"good"``), shape (n,); only read for
            legacy parts.
        counts: How many parts each entry stands for, shape (n,), each >= 1; default 1.
        confidence: Confidence level of the intervals, in (0, 1).
        draws: Posterior draws per stratum.
        seed: Seed of the numpy generator (the same inputs give the same intervals).

    Returns:
        The estimate; every rate ``None`` without parts.

    Raises:
        ValueError: On sequences of different lengths, an unknown region or verdict, a label
            outside {-1, 0, 1}, an audited pass-region part without a probability in (0, 1],
            a confidence outside (0, 1), fewer than one draw or a count below 1.
    """
    n = len(regions)
    lengths = {len(seq) for seq in (probabilities, audited, labels, verdicts)}
    if lengths != {n}:
        raise ValueError(
            "regions, probabilities, audited, labels and verdicts must have one entry per part; "
            f"got lengths {n}, {len(probabilities)}, {len(audited)}, {len(labels)}, "
            f"{len(verdicts)}."
        )
    if isinstance(confidence, bool) or not 0.0 < confidence < 1.0:
        raise ValueError(f"The confidence must be between 0 and 1, got {confidence!r}.")
    if isinstance(draws, bool) or not isinstance(draws, numbers.Integral) or draws < 1:
        raise ValueError(f"draws must be a positive whole number, got {draws!r}.")
    strata = np.array([stratum_of(r, v) for r, v in zip(regions, verdicts, strict=True)], object)
    y = np.asarray(labels).reshape(n)
    if not np.isin(y, (-1, 0, 1)).all():
        raise ValueError(
            f"Labels must be 1 (defect), 0 (good) or -1 (none), got {set(y.tolist())}."
        )
    y = y.astype(int)
    c = np.ones(n, dtype=np.int64) if counts is None else np.asarray(counts).reshape(n)
    if len(c) != n or (n and (c.dtype.kind not in "iu" or c.min() < 1)):
        raise ValueError("counts must hold one whole number >= 1 per entry.")
    drawn = np.asarray(audited, dtype=bool).reshape(n)
    weights = _weights(strata, probabilities, drawn)
    usable = (y >= 0) & (np.isin(strata, SEND_STRATA) | drawn)  # label_enters, per part

    rows: list[Stratum] = []
    n_effs: list[float] = []  # Kish effective sizes of the rows (0 without usable labels)
    notes: list[str] = []
    for name in STRATA:
        in_stratum = strata == name
        if not in_stratum.any():
            continue
        keep = in_stratum & usable
        w, d, m = weights[keep], y[keep], c[keep]  # weight, label, multiplicity of each entry
        share = float((m * w) @ d / (m @ w)) if w.size else None
        rows.append(Stratum(name, int(c[in_stratum].sum()), int(m.sum()), share))
        n_effs.append(float((m @ w) ** 2 / (m @ (w * w))) if w.size else 0.0)
        if share is None:
            audited_word = "" if name in SEND_STRATA else "audited "
            notes.append(f"no {audited_word}{name} part is labelled yet")
    if not rows:
        empty = RateInterval(None, None, None)
        return LoopEstimate(
            0, 0, empty, empty, None, None, None, None, (), confidence, ("no parts",)
        )
    n_defects = int(c[usable] @ y[usable])
    n_parts = int(c.sum())
    return _estimate(rows, np.array(n_effs), n_parts, n_defects, notes, confidence, draws, seed)


def stratum_of(region: str | None, verdict: str) -> str:
    """The stratum of one part (its region, or a legacy stratum by its verdict).

    Raises:
        ValueError: On an unknown region, or a legacy part's verdict other than defect / good.
    """
    if region is None:
        if verdict not in ("defect", "good"):
            raise ValueError(f"A verdict must be 'defect' or 'good', got {verdict!r}.")
        return LEGACY_FLAGGED if verdict == "defect" else LEGACY_PASSED
    if region not in REGIONS:
        raise ValueError(f"Unknown decision region {region!r}; known: {', '.join(REGIONS)}.")
    return region


def label_enters(stratum: str, audited: bool) -> bool:
    """Whether a labelled part of ``stratum`` enters the estimate (a *usable* label).

    A part sent to a human always; a passed or auto-accepted part only when it was drawn for
    audit (its odds are known). :func:`estimate_loop_rates` applies the same rule to arrays.
    """
    return stratum in SEND_STRATA or audited


def _weights(
    strata: np.ndarray, probabilities: Sequence[float | None], drawn: np.ndarray
) -> np.ndarray:
    """Weight of each part, shape (n,): 1/probability for audited pass-region parts, else 1."""
    weights = np.ones(len(strata))
    for i in np.flatnonzero(drawn & np.isin(strata, AUDITED_REGIONS)):
        p = probabilities[i]
        if p is None or isinstance(p, bool) or not 0.0 < float(p) <= 1.0:
            raise ValueError(
                f"Part {i} ({strata[i]}, audited) needs an audit probability in (0, 1], got {p!r}."
            )
        weights[i] = 1.0 / float(p)
    return weights


def _estimate(
    rows: list[Stratum],
    n_effs: np.ndarray,
    n_parts: int,
    n_defects: int,
    notes: list[str],
    confidence: float,
    draws: int,
    seed: int,
) -> LoopEstimate:
    """Point estimates and posterior intervals over the non-empty strata ``rows``, shape (k,).

    ``n_effs`` holds each row's Kish effective size, shape (k,) (0 without usable labels);
    ``notes`` the notes so far (extended here).
    """
    sizes = np.array([row.n_parts for row in rows], dtype=float)  # (k,)
    shares = np.array(
        [np.nan if row.weighted_defect_share is None else row.weighted_defect_share for row in rows]
    )  # (k,), NaN without usable labels
    sends = np.array([row.region in SEND_STRATA for row in rows])  # (k,)
    defects, goods = sizes * shares, sizes * (1.0 - shares)
    est_defects, est_missed = _total(defects), _total(defects[~sends])
    est_goods, est_goods_to_human = _total(goods), _total(goods[sends])

    known = np.nan_to_num(shares)  # n_eff is 0 where the share is unknown
    alpha = _JEFFREYS + n_effs * known  # (k,)
    beta = _JEFFREYS + n_effs * (1.0 - known)  # (k,)
    rng = np.random.default_rng(seed)
    q = rng.beta(alpha[:, None], beta[:, None], size=(len(rows), draws))  # (k, draws)
    fnr = _interval(
        _ratio(est_missed, est_defects), sizes[~sends] @ q[~sends], sizes @ q, confidence
    )
    fpr = _interval(
        _ratio(est_goods_to_human, est_goods),
        sizes[sends] @ (1.0 - q[sends]),
        sizes @ (1.0 - q),
        confidence,
    )
    if est_defects == 0.0:
        notes.append("no usable label says defect: the miss rate has no point estimate")
    if est_goods == 0.0:
        notes.append("no usable label says good: the false-alarm rate has no point estimate")
    return LoopEstimate(
        n_parts,
        n_defects,
        fnr,
        fpr,
        est_defects,
        est_missed,
        est_goods,
        est_goods_to_human,
        tuple(rows),
        confidence,
        tuple(notes),
    )


def _total(values: np.ndarray) -> float | None:
    """Sum of ``values``, shape (k,); ``None`` when one is NaN (a stratum without labels)."""
    total = float(values.sum())
    return None if np.isnan(total) else total


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``; ``None`` when either is unknown or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0.0:
        return None
    return numerator / denominator


def _interval(
    rate: float | None,
    numerators: np.ndarray,
    denominators: np.ndarray,
    confidence: float,
) -> RateInterval:
    """Equal-tailed interval of ``numerators / denominators`` (each shape (draws,))."""
    keep = denominators > 0
    if not keep.any():
        return RateInterval(rate, None, None)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(numerators[keep] / denominators[keep], [tail, 1.0 - tail])
    low, high = float(low), float(high)
    if rate is not None:  # Jeffreys' boundary rule: the interval holds the point estimate
        low, high = min(low, rate), max(high, rate)
    return RateInterval(rate, low, high)
