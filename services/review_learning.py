"""Instant learning's rule: which review teaches the active model at once.

A Good label on a part the model flagged is a false alarm, and the model learns from it at
once (:func:`learns_instantly`), unless ``LOUPE_INSTANT_LEARNING=0`` or the part belongs to the
stable share of good parts kept aside to measure false alarms
(:func:`adcore.holdout.in_evaluation_share`, one good part in five, checked by the update
itself): a model that had learned every flagged good part would score none of the held-out
ones as false alarms, and every later candidate would be judged against that flattering,
biased figure.

The review service (:mod:`services.reviewing`) applies the rule to every saved review, with
"flagged" read from the part's stored prediction, and queues the learning as a durable job
run by the job worker (:mod:`services.training.instant_learning`: the update, then the
waiting parts re-scored, one update at a time per project).
"""

from __future__ import annotations

import os

from db import Label

INSTANT_LEARNING_ENV = "LOUPE_INSTANT_LEARNING"
"""Set to ``0`` to turn instant learning off."""


def learns_instantly(label: str, flagged: bool) -> bool:
    """Whether a review teaches the active model at once: a Good on a part it flagged.

    Args:
        label: The label just recorded (``good`` / ``defect``).
        flagged: Whether the model had flagged the part (verdict ``defect``).

    Returns:
        False when ``$LOUPE_INSTANT_LEARNING`` is ``0``.
    """
    if os.environ.get(INSTANT_LEARNING_ENV, "1") == "0":
        return False
    return flagged and label == Label.GOOD
