"""The review page: Good / Defect clicks write review rows; Undo appends a superseding row."""

from __future__ import annotations

from apptest_support import INSPECTOR, Workbench, signed_in_app
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import db
from db.projects import get_project
from db.review_queue import queue_size, review_queue


def open_review(workbench: Workbench) -> tuple[AppTest, int, int]:
    """The review page for the inspector, the first queued image id and the queue size."""
    with workbench.factory() as session:
        first = review_queue(session, workbench.project_id, limit=1)[0].image_id
        size = queue_size(session, workbench.project_id)
    at = signed_in_app("inspector")
    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception
    return at, first, size


def reviews(workbench: Workbench) -> list[db.Review]:
    with workbench.factory() as session:
        return list(session.scalars(select(db.Review).order_by(db.Review.id)))


def remaining_line(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "remaining" in m.value)


def test_good_click_writes_a_review_row(workbench: Workbench) -> None:
    at, first, size = open_review(workbench)
    assert size >= 2
    assert remaining_line(at).startswith(f"**{size}** remaining")

    at.text_input(key=f"review_note_{first}").input("clean edge")
    at.button(key="good").click().run()

    assert not at.exception
    [row] = reviews(workbench)
    assert (row.image_id, row.label, row.note) == (first, "good", "clean edge")
    assert row.reviewer_id == workbench.users[INSPECTOR]
    assert row.seconds_spent is not None and row.seconds_spent >= 0
    assert not row.is_undo
    assert remaining_line(at).startswith(f"**{size - 1}** remaining")


def test_defect_click_with_a_new_defect_type(workbench: Workbench) -> None:
    at, first, _ = open_review(workbench)

    at.selectbox(key="review_defect_type").set_value("New type…").run()
    at.text_input(key="review_new_defect_type").input("dent")
    at.button(key="defect").click().run()

    assert not at.exception
    [row] = reviews(workbench)
    assert (row.image_id, row.label, row.defect_type) == (first, "defect", "dent")
    with workbench.factory() as session:
        assert get_project(session, workbench.project_id).defect_types == ["scratch", "dent"]
    assert "dent" in at.selectbox(key="review_defect_type").options


def test_undo_appends_a_row_that_supersedes_the_last_review(workbench: Workbench) -> None:
    at, first, size = open_review(workbench)
    at.button(key="good").click().run()

    at.button(key="undo").click().run()

    assert not at.exception
    labelled, undo = reviews(workbench)
    assert (labelled.image_id, labelled.label, labelled.is_undo) == (first, "good", False)
    assert (undo.image_id, undo.is_undo, undo.supersedes_id) == (first, True, labelled.id)
    with workbench.factory() as session:
        assert db.current_label(session, first) is None
    assert remaining_line(at).startswith(f"**{size}** remaining")  # the part is back
    assert [i.value for i in at.info] == ["Undid your last review."]


def test_an_empty_queue_says_so(workbench: Workbench) -> None:
    at, _, size = open_review(workbench)
    for _ in range(size):
        at.button(key="good").click().run()

    assert not at.exception
    assert [s.value for s in at.success][-1] == "Nothing left to review in this project."
    assert len(reviews(workbench)) == size


def test_a_scorer_decided_part_shows_its_probability_beside_the_detector_score(
    workbench: Workbench,
) -> None:
    with workbench.factory() as session, session.begin():
        first = review_queue(session, workbench.project_id, limit=1)[0]
        scorer = db.register_model_version(
            session,
            project_id=workbench.project_id,
            kind="feedback_scorer",
            artifact_path="models/scorer",
            metrics={},
            threshold=0.35,
            training_snapshot={},
        )
        session.add(  # the scorer decided a newer prediction of the first part
            db.Prediction(
                image_id=first.image_id,
                model_version_id=workbench.version_id,
                score=first.score,
                threshold=first.threshold,
                verdict="defect",
                scorer_version_id=scorer.id,
                defect_probability=0.36,
            )
        )
    at, shown, _ = open_review(workbench)
    assert shown == first.image_id  # the most uncertain part comes first
    line = next(m.value for m in at.markdown if "p(defect)" in m.value)
    assert "**0.36** vs **0.35** (feedback scorer)" in line
    assert f"detector score **{first.score:.4g}**" in line
