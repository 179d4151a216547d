"""A stored flagged prediction with its grounded explanation, and a project's language model.

Imported as ``from stored_predictions import ...`` by the explanation tests in ``tests/adcore``
(pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import FLAGGED_FACTS

from adcore.explain.sentences import render
from db import Image, Prediction, Project
from services.project_settings import LANGUAGE_MODEL_KEY, LanguageModelSetting


def add_flagged_prediction(
    factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    *,
    facts: bool = True,
    width: int = 256,
    height: int = 256,
    anomaly_map_path: str | None = None,
) -> int:
    """Store a new image ``images/part.png`` and a flagged prediction (41.2 over 29.4) of it.

    Args:
        factory: A session factory on the test database.
        project_and_version: The project's and the model version's ids.
        facts: Whether the prediction's explanation holds ``FLAGGED_FACTS`` and their rendered
            text; without, it has no explanation at all.
        width: The stored image's width in pixels.
        height: The stored image's height in pixels.
        anomaly_map_path: The prediction's stored anomaly map, if any.

    Returns:
        The prediction's id.
    """
    project_id, version_id = project_and_version
    with factory() as session, session.begin():
        n_images = session.query(Image).count()
        image = Image(
            project_id=project_id,
            sha256=f"{n_images:064x}",
            stored_path="images/part.png",
            original_name="part.png",
            width=width,
            height=height,
            size_bytes=1,
            source="upload",
        )
        session.add(image)
        session.flush()
        explanation = (
            {"facts": FLAGGED_FACTS.to_json(), "text": render(FLAGGED_FACTS)} if facts else None
        )
        prediction = Prediction(
            image_id=image.id,
            model_version_id=version_id,
            score=41.2,
            threshold=29.4,
            verdict="defect",
            anomaly_map_path=anomaly_map_path,
            explanation=explanation,
        )
        session.add(prediction)
        session.flush()
        return prediction.id


def use_language_model(
    factory: sessionmaker[Session], project_id: int, source: str, *, enabled: bool = True
) -> None:
    """Set the project's language-model option straight in its settings (no permission check)."""
    with factory() as session, session.begin():
        project = session.get(Project, project_id)
        setting = LanguageModelSetting(enabled=enabled, source=source).to_json()
        project.settings = {**(project.settings or {}), LANGUAGE_MODEL_KEY: setting}
