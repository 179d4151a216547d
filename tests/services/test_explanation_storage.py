"""Explanations stored with predictions by ``inspect_uploads`` (and never failing a scoring)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

import adcore.explain
from adcore.detectors.base import ScoredImage
from adcore.explain import ExplanationFacts, render
from db import Prediction
from services.inspection import InspectionRequest, inspect_uploads
from services.scoring.predictor import Predictor


class ScratchDetector:
    """Scores a part by its darkest 4-row band; the map is hot where the part is dark."""

    threshold = 20.0

    def predict(self, images: Sequence[np.ndarray]) -> list[ScoredImage]:
        """One score per image: the peak of a (H, W) map that is hot where the part is dark."""
        out = []
        for image in images:
            grey = image[..., 0].astype(np.float32)
            heat = np.clip(80.0 - grey, 0.0, None) / 2.0  # (64, 64): the scratch is 35
            out.append(ScoredImage(score=float(heat.max()), anomaly_map=heat, threshold=20.0))
        return out


def inspect(
    factory: sessionmaker[Session], project_and_version: tuple[int, int]
) -> list[Prediction]:
    project_id, version_id = project_and_version
    predictor = Predictor.load(
        factory, project_id=project_id, model_version_id=version_id, detector=ScratchDetector()
    )
    results = inspect_uploads(
        factory,
        InspectionRequest(predictor),
        [("good.png", png(make_part(1))), ("scratch.png", png(make_part(2, defect=True)))],
    )
    assert all(result.ok for result in results), [result.error for result in results]
    with factory() as session:
        return list(session.scalars(select(Prediction).order_by(Prediction.id)))


def test_predictions_carry_facts_and_text(
    factory: sessionmaker[Session], project_and_version: tuple[int, int]
) -> None:
    good, scratch = inspect(factory, project_and_version)

    assert good.verdict == "good" and scratch.verdict == "defect"
    good_facts = ExplanationFacts.from_json(good.explanation["facts"])
    assert good.explanation["text"].startswith("Passed: score")
    assert good_facts.score == pytest.approx(good.score)
    facts = ExplanationFacts.from_json(scratch.explanation["facts"])
    assert scratch.explanation["text"] == render(facts)
    assert (facts.n_regions, facts.shape, facts.intensity) == (1, "elongated", "darker")
    assert facts.threshold == pytest.approx(scratch.threshold)
    assert facts.similar_defect_type is None  # this detector gives no feature vectors
    assert good.embedding is None and scratch.embedding is None


def test_an_explainer_error_stores_none_and_keeps_the_prediction(
    factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_args: object, **_kwargs: object) -> dict:
        raise RuntimeError("explainer exploded")

    monkeypatch.setattr(adcore.explain, "explain", broken)

    predictions = inspect(factory, project_and_version)

    assert len(predictions) == 2
    assert all(prediction.explanation is None for prediction in predictions)
    assert "explainer exploded" in caplog.text
