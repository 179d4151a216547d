"""Grounded explanations of a prediction: measured facts and plain sentences built from them.

* :mod:`adcore.explain.facts` measures :class:`ExplanationFacts` from an image, its anomaly map,
  score and threshold.
* :mod:`adcore.explain.sentences` renders one to three sentences whose numbers all come from
  the facts.
"""

from adcore.explain.facts import ExplanationFacts, measure_facts
from adcore.explain.sentences import render

__all__ = ["ExplanationFacts", "explain", "measure_facts", "render"]


def explain(image, anomaly_map, score: float, threshold: float) -> dict:
    """Facts and text of one prediction, as stored in ``Prediction.explanation``.

    Args:
        image: (H, W, 3) uint8 RGB (or (H, W) grey) image.
        anomaly_map: (h, w) float anomaly map of any resolution.
        score: Image anomaly score.
        threshold: Decision threshold.

    Returns:
        ``{"facts": <ExplanationFacts.to_json()>, "text": <render(facts)>}``.
    """
    facts = measure_facts(image, anomaly_map, score, threshold)
    return {"facts": facts.to_json(), "text": render(facts)}
