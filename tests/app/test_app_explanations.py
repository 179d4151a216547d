"""The grounded text explanation under a part on the Review page."""

from __future__ import annotations

from apptest_support import Workbench, first_queued, signed_in_app

import db


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
