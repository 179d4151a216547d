"""Stable hold-out splits of parts by their content hash.

A labelled part's place in a split depends only on its bytes (its sha256), so the same part
falls on the same side from one job to the next and in every process: the jobs that train and
judge models, and the instant update that teaches the active model a confirmed-good part, agree
on which good parts are kept aside to measure false alarms.
"""

from __future__ import annotations

DEFAULT_HOLDOUT_FRACTION = 0.2
"""Share of confirmed-good parts kept out of training to measure false alarms."""


def hash_position(sha256: str, start: int = 0) -> float:
    """A stable position in [0, 1) of an image, from 8 hex digits of its content hash at ``start``.

    Splits that use different digits are independent of each other.
    """
    return int(sha256[start : start + 8], 16) / 0x1_0000_0000


def in_evaluation_share(sha256: str, fraction: float = DEFAULT_HOLDOUT_FRACTION) -> bool:
    """Whether a confirmed-good part belongs to the held-out share (stable per image)."""
    if fraction <= 0:
        return False
    return hash_position(sha256) < fraction
