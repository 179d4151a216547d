"""The grounded text explanation under a part on the Review page."""

from __future__ import annotations

from apptest_support import Workbench, signed_in_app
from sqlalchemy import select

import db
from db.review_queue import review_queue


def first_queued(workbench: Workbench) -> db.Prediction:
    with workbench.factory() as session:
        image_id = review_queue(session, workbench.project_id, limit=1)[0].image_id
        return session.scalars(
            select(db.Prediction).where(db.Prediction.image_id == image_id)
        ).one()


def test_review_shows_the_stored_explanation(workbench: Workbench) -> None:
    prediction = first_queued(workbench)
    assert prediction.explanation is not None
    text = prediction.explanation["text"]
    assert text.startswith(("Flagged: score", "Passed: score"))

    at = signed_in_app("inspector")
    at.switch_page("pages/review.py").run()

    assert not at.exception, at.exception
    assert "Why" in [header.value for header in at.subheader]
    assert text in [markdown.value for markdown in at.markdown]
    assert "Measured facts" in [expander.label for expander in at.expander]


def test_an_older_prediction_is_explained_on_the_fly(workbench: Workbench) -> None:
    prediction = first_queued(workbench)
    stored_text = prediction.explanation["text"]
    with workbench.factory() as session, session.begin():
        session.get(db.Prediction, prediction.id).explanation = None

    at = signed_in_app("inspector")
    at.switch_page("pages/review.py").run()

    assert not at.exception, at.exception
    assert stored_text in [markdown.value for markdown in at.markdown]
