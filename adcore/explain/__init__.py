"""Grounded explanations of a prediction: measured facts and plain sentences built from them.

* :mod:`adcore.explain.facts` measures :class:`ExplanationFacts` from an image, its anomaly map,
  score and threshold.
* :mod:`adcore.explain.sentences` renders one to three sentences whose numbers all come from
  the facts.
* :mod:`adcore.explain.neighbours` finds the confirmed defect type a flagged part resembles
  (by the detector's global feature vectors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adcore.explain.facts import ExplanationFacts, measure_facts
from adcore.explain.sentences import render

if TYPE_CHECKING:
    from adcore.explain.neighbours import SimilarDefects

__all__ = ["ExplanationFacts", "explain", "measure_facts", "render"]


def explain(
    image, anomaly_map, score: float, threshold: float, *, similar: SimilarDefects | None = None
) -> dict:
    """Facts and text of one prediction, as stored in ``Prediction.explanation``.

    Args:
        image: (H, W, 3) uint8 RGB (or (H, W) grey) image.
        anomaly_map: (h, w) float anomaly map of any resolution.
        score: Image anomaly score.
        threshold: Decision threshold.
        similar: The nearest confirmed defects' majority type
            (:func:`adcore.explain.neighbours.nearest_defect_types`), used for defect verdicts.

    Returns:
        ``{"facts": <ExplanationFacts.to_json()>, "text": <render(facts)>}``.
    """
    facts = measure_facts(image, anomaly_map, score, threshold, similar=similar)
    return {"facts": facts.to_json(), "text": render(facts)}
