"""The Review page's desk: presses write review rows once each; Undo appends a superseding row.

The browser side of the desk is tested in real Chromium (tests/e2e/test_review_desk.py); here
the page's Python is driven through the component's state, as the browser drives it.
"""

from __future__ import annotations

import functools

import pytest
from apptest_support import INSPECTOR, Workbench, signed_in_app
from desk_presses import accept_press, desk_payload, label_press, send, undo_press
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import db
from db.projects import get_project
from db.review_queue import queue_size, review_queue
from pages import review_desk
from services import review_options


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


def test_the_desk_gets_the_queue_with_images_once_per_browser(workbench: Workbench) -> None:
    at, first, size = open_review(workbench)
    data = desk_payload(at)
    assert data["remaining"] == size and [p["id"] for p in data["parts"]][0] == first
    part = data["parts"][0]
    assert part["image"].startswith("data:image/jpeg;base64,")
    assert part["heat"].startswith("data:image/jpeg;base64,")  # the map's colour layer
    assert part["scale_bar"].startswith("data:image/png;base64,") and part["scale_caption"]
    assert part["facts"].startswith("Score ") and "threshold" in part["facts"]
    assert data["defect_types"] == ["scratch"]

    send(at, [])  # the browser announces its instance: it gets the images
    assert all("image" in p for p in desk_payload(at)["parts"])
    send(at, [])  # ... once
    assert not any("image" in p for p in desk_payload(at)["parts"])
    send(at, [], instance="another tab")
    assert all("image" in p for p in desk_payload(at)["parts"])


def test_a_re_scored_part_comes_with_its_new_map(workbench: Workbench) -> None:
    from adcore.detectors.registry import load_detector
    from services.inspection import rescore_images

    at, first, _ = open_review(workbench)
    send(at, [])  # the browser announces its instance: it gets the images ...
    send(at, [])  # ... and has them
    assert not any("image" in p for p in desk_payload(at)["parts"])
    rescore_images(
        workbench.factory,
        project_id=workbench.project_id,
        detector=load_detector(workbench.model_dir, device="cpu"),
        model_version_id=workbench.version_id,
        image_ids=[first],
    )
    send(at, [])
    again = [p for p in desk_payload(at)["parts"] if "image" in p]
    assert [p["id"] for p in again] == [first]  # the new prediction's map, colour bar, captions
    assert again[0]["heat"].startswith("data:image/jpeg;base64,") and again[0]["scale_caption"]


def test_a_good_press_writes_one_row_even_when_the_browser_sends_it_again(
    workbench: Workbench,
) -> None:
    at, first, size = open_review(workbench)
    press = label_press(1, first, "good", note="clean edge", seconds=2.5)
    send(at, [press])
    send(at, [press])  # not yet acknowledged by the browser: sent again

    assert not at.exception, at.exception
    [row] = reviews(workbench)
    assert (row.image_id, row.label, row.note, row.seconds_spent) == (
        first,
        "good",
        "clean edge",
        2.5,
    )
    assert row.reviewer_id == workbench.users[INSPECTOR] and not row.is_undo
    data = desk_payload(at)
    assert data["acked"] == [press["press"]] and data["refused"] == []
    assert data["remaining"] == size - 1 and first not in [p["id"] for p in data["parts"]]


def test_presses_are_recorded_in_order_each_on_its_own_part(workbench: Workbench) -> None:
    at, _, size = open_review(workbench)
    ids = [p["id"] for p in desk_payload(at)["parts"]][:3]
    labels = ["good", "defect", "good"]
    outbox = [
        label_press(i, image, label)
        for i, (image, label) in enumerate(zip(ids, labels, strict=True))
    ]
    send(at, outbox)
    assert [(r.image_id, r.label) for r in reviews(workbench)] == list(
        zip(ids, labels, strict=True)
    )
    assert desk_payload(at)["remaining"] == size - 3


def test_a_defect_press_with_a_new_defect_type(workbench: Workbench) -> None:
    at, first, _ = open_review(workbench)
    send(at, [label_press(1, first, "defect", defect_type="dent")])

    assert not at.exception
    [row] = reviews(workbench)
    assert (row.image_id, row.label, row.defect_type) == (first, "defect", "dent")
    with workbench.factory() as session:
        assert get_project(session, workbench.project_id).defect_types == ["scratch", "dent"]
    assert desk_payload(at)["defect_types"] == ["scratch", "dent"]


def test_undo_appends_a_row_that_supersedes_the_last_review(workbench: Workbench) -> None:
    at, first, size = open_review(workbench)
    send(at, [label_press(1, first, "good"), undo_press(2)])

    assert not at.exception
    labelled, undo = reviews(workbench)
    assert (labelled.image_id, labelled.label, labelled.is_undo) == (first, "good", False)
    assert (undo.image_id, undo.is_undo, undo.supersedes_id) == (first, True, labelled.id)
    with workbench.factory() as session:
        assert db.current_label(session, first) is None
    data = desk_payload(at)
    assert data["remaining"] == size and first in [p["id"] for p in data["parts"]]  # back


def test_a_press_that_cannot_be_recorded_comes_back_refused(workbench: Workbench) -> None:
    at, _, _ = open_review(workbench)
    send(at, [label_press(1, 999_999, "good"), label_press(2, 1, "maybe"), undo_press(3)])
    assert not at.exception
    refused = {r["press"]: r["message"] for r in desk_payload(at)["refused"]}
    assert set(refused) == {"apptest-1", "apptest-2", "apptest-3"}
    assert "999999" in refused["apptest-1"] and "maybe" in refused["apptest-2"]
    assert refused["apptest-3"] == "nothing to undo"
    assert reviews(workbench) == []


def test_an_empty_queue_sends_no_part(workbench: Workbench) -> None:
    at, _, size = open_review(workbench)
    ids = [p["id"] for p in desk_payload(at)["parts"]]
    assert len(ids) == size  # the whole (small) queue fits in the desk
    send(at, [label_press(i, image, "good") for i, image in enumerate(ids)])
    data = desk_payload(at)
    assert data["parts"] == [] and data["remaining"] == 0
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
    facts = desk_payload(at)["parts"][0]["facts"]
    assert "p(defect) 0.36 (flag at 0.35, feedback scorer)" in facts
    assert facts.startswith(f"Score {first.score:.4g}")


def test_a_defect_box_is_stored_with_the_review(workbench: Workbench) -> None:
    at, first, _ = open_review(workbench)
    box = {"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.25}
    send(at, [label_press(1, first, "defect", region=box)])
    [row] = reviews(workbench)
    assert (row.image_id, row.label, row.region) == (first, "defect", box)
    send(at, [label_press(1, first, "defect", region=box), label_press(2, 999, "defect")])
    assert len(reviews(workbench)) == 1


def test_a_manager_allows_accepting_a_page_of_passed_parts(
    workbench: Workbench, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Since the decision cascade, near-threshold passed parts reach the desk only when drawn
    # for audit (never accepted in bulk); with a near band asked for, they come back.
    near_band = functools.partial(review_queue, near_margin=0.1)
    monkeypatch.setattr(review_desk, "review_queue", near_band)
    monkeypatch.setattr(review_options, "review_queue", near_band)
    at, _, _ = open_review(workbench)
    passed = [p["id"] for p in desk_payload(at)["parts"] if p["verdict"] == "good"]
    assert passed and desk_payload(at)["accept_page"] is False
    send(at, [accept_press(1, passed)])
    [refused] = desk_payload(at)["refused"]
    assert "off for this project" in refused["message"] and reviews(workbench) == []

    manager = signed_in_app("manager")
    manager.switch_page("pages/review.py").run()
    manager.toggle(key="review_accept_page_toggle").set_value(True).run()
    assert not manager.exception, manager.exception

    send(at, [accept_press(2, passed)])
    data = desk_payload(at)
    assert data["accept_page"] is True and data["acked"] == ["apptest-2"]
    assert data["notices"][0]["message"].startswith(f"Accepted {len(passed)} passed part(s)")
    assert sorted((r.image_id, r.label) for r in reviews(workbench)) == [
        (image, "good") for image in sorted(passed)
    ]


def test_a_part_whose_file_is_gone_is_still_sent_and_can_be_labelled(
    workbench: Workbench,
) -> None:
    with workbench.factory() as session:
        first = review_queue(session, workbench.project_id, limit=1)[0]
    db.absolute_image_path(first.stored_path).unlink()
    at, _, _ = open_review(workbench)
    part = desk_payload(at)["parts"][0]
    assert part["id"] == first.image_id and part["unreadable"] and "image" not in part
    send(at, [label_press(1, first.image_id, "defect")])
    assert [(r.image_id, r.label) for r in reviews(workbench)] == [(first.image_id, "defect")]
