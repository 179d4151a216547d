"""Safe teaching: a Good on a defect-like flagged part waits for a second inspector's Good.

Stored-row projects (``stored_rows``): an active detector at threshold 1.0 and flagged parts
(score 1.5). The triage model's p(defect) is either stored with the prediction (stage 2
decided the part) or computed by a saved feedback scorer registered for the detector.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_image, add_prediction, add_version

from adcore.explain.neighbours import embedding_to_bytes
from adcore.feedback_scorer import DetectorIdentity, ScorerConfig, train_feedback_scorer
from db import Job, User
from db.model_versions import activate_model_version, register_model_version
from db.review_queue import record_review
from services.reviewing import Notice, label_part
from services.safe_teaching import DEFECT_LIKE_PROBABILITY, teaching_hold
from services.training.job_kinds import JobKind

DIM = 4
DEFECT_LIKE = np.array([6.0, 0.0, 0.0, 0.0])
GOOD_LIKE = np.array([-3.0, 0.0, 0.0, 0.0])


@pytest.fixture
def lab(session_factory: sessionmaker[Session], project_id: int, make_user: Callable) -> dict:
    """An active detector (threshold 1.0) and two inspectors; no triage model yet."""
    return {
        "factory": session_factory,
        "project": project_id,
        "detector": add_version(session_factory, project_id),
        "ines": make_user("ines"),
        "ivan": make_user("ivan"),
    }


def flagged_part(lab: dict, n: int, **prediction: object) -> int:
    """A part the screen flags (score 1.5 at 1.0), with the given prediction fields."""
    image = add_image(lab["factory"], lab["project"], n)
    add_prediction(lab["factory"], image, lab["detector"], 1.5, **prediction)
    return image


def decided_part(lab: dict, n: int, probability: float) -> int:
    """A flagged part stage 2 sent to a human with p(defect) ``probability`` (scorer at 0.2).

    The scorer version is a stored row only (no files): the probability is read, not computed.
    """
    if "scorer" not in lab:
        lab["scorer"] = add_version(
            lab["factory"], lab["project"], threshold=0.2, active=False, kind="feedback_scorer"
        )
    return flagged_part(lab, n, defect_probability=probability, scorer_version_id=lab["scorer"])


def hold(lab: dict, image_id: int) -> str | None:
    with lab["factory"]() as session:
        return teaching_hold(session, image_id)


def record(lab: dict, image_id: int, reviewer: str, label: str) -> None:
    with lab["factory"]() as session, session.begin():
        user = session.get(User, lab[reviewer])
        record_review(session, image_id=image_id, user=user, label=label)


def instant_updates(lab: dict) -> list[list[int]]:
    with lab["factory"]() as session:
        jobs = session.scalars(select(Job).where(Job.kind == JobKind.INSTANT_UPDATE)).all()
        return [list(job.parameters["image_ids"]) for job in jobs]


# --- teaching_hold on stored probabilities ---------------------------------------------------


def test_without_a_probability_or_a_triage_model_nothing_is_held(lab: dict) -> None:
    part = flagged_part(lab, 1, embedding=embedding_to_bytes(DEFECT_LIKE))
    assert hold(lab, part) is None
    assert hold(lab, add_image(lab["factory"], lab["project"], 2)) is None  # never scored


def test_a_stored_defect_like_probability_holds_the_good(lab: dict) -> None:
    part = decided_part(lab, 1, 0.8)
    sentence = hold(lab, part)
    assert sentence is not None
    assert "defect-like" in sentence and "second inspector" in sentence and "0.80" in sentence
    at_limit = decided_part(lab, 2, DEFECT_LIKE_PROBABILITY)
    assert hold(lab, at_limit) is not None  # from 0.5 on


def test_a_stored_probability_below_one_half_holds_nothing(lab: dict) -> None:
    assert hold(lab, decided_part(lab, 1, 0.49)) is None
    assert hold(lab, decided_part(lab, 2, 0.05)) is None


def test_the_newest_prediction_gives_the_probability(lab: dict) -> None:
    part = decided_part(lab, 1, 0.9)
    add_prediction(
        lab["factory"],
        part,
        lab["detector"],
        1.5,
        minutes=5,
        defect_probability=0.1,
        scorer_version_id=lab["scorer"],
    )
    assert hold(lab, part) is None


def test_two_distinct_inspectors_goods_release_the_hold(lab: dict) -> None:
    part = decided_part(lab, 1, 0.8)
    record(lab, part, "ines", "good")
    assert hold(lab, part) is not None
    record(lab, part, "ines", "good")  # the same inspector again: still one opinion
    assert hold(lab, part) is not None
    record(lab, part, "ivan", "defect")
    assert hold(lab, part) is not None
    record(lab, part, "ivan", "good")  # a second inspector's latest label is Good
    assert hold(lab, part) is None


# --- through the review service ---------------------------------------------------------------


def test_a_good_on_a_defect_like_flagged_part_is_held_and_queues_no_learning(lab: dict) -> None:
    part = decided_part(lab, 1, 0.8)
    saved = label_part(lab["factory"], user_id=lab["ines"], image_id=part, label="good")
    assert saved.flagged and saved.label == "good"
    assert saved.learning_job_id is None
    assert saved.learning_held is not None and "defect-like" in saved.learning_held
    assert Notice("info", saved.learning_held) in saved.notices
    assert instant_updates(lab) == []

    second = label_part(lab["factory"], user_id=lab["ivan"], image_id=part, label="good")
    assert second.learning_held is None and second.learning_job_id is not None
    assert instant_updates(lab) == [[part]]


def test_a_good_on_a_flagged_part_below_one_half_teaches_at_once(lab: dict) -> None:
    part = decided_part(lab, 1, 0.3)  # sent to a human (0.3 >= 0.2), not defect-like
    saved = label_part(lab["factory"], user_id=lab["ines"], image_id=part, label="good")
    assert saved.flagged and saved.learning_held is None
    assert saved.learning_job_id is not None and saved.notices == ()
    assert instant_updates(lab) == [[part]]


def test_a_defect_label_is_never_held(lab: dict) -> None:
    part = decided_part(lab, 1, 0.8)
    saved = label_part(lab["factory"], user_id=lab["ines"], image_id=part, label="defect")
    assert saved.learning_held is None and saved.learning_job_id is None
    assert saved.notices == ()


# --- teaching_hold on a probability computed by a saved triage model --------------------------


def save_triage_model(
    lab: dict, directory: Path, *, trained_on: int, active: bool, reverse: bool = False
) -> int:
    """A feedback scorer on the detector's vectors (dimension 0 tells defects), registered.

    ``reverse`` trains it on swapped labels: it then finds good-looking vectors defect-like.
    """
    rng = np.random.default_rng(0)
    labels = np.arange(30) % 2
    vectors = rng.normal(size=(30, DIM))
    vectors[:, 0] += 4.0 * labels
    scorer, _ = train_feedback_scorer(
        np.full(30, 1.5),
        vectors,
        1 - labels if reverse else labels,
        detector=DetectorIdentity(trained_on, 1, "patchcore", DIM),
        config=ScorerConfig(folds=3, c_values=(1.0,)),
    )
    scorer.save(directory)
    with lab["factory"]() as session, session.begin():
        version = register_model_version(
            session,
            project_id=lab["project"],
            kind="feedback_scorer",
            artifact_path=str(directory),
            metrics={"detector": {"version_id": trained_on}},
            threshold=scorer.threshold,
            training_snapshot={},
        )
        if active:
            activate_model_version(session, version_id=version.id, user=None, system=True)
        return version.id


def vector_part(lab: dict, n: int, vector: np.ndarray) -> int:
    """A flagged part with the detector's vector and no stored probability."""
    return flagged_part(lab, n, embedding=embedding_to_bytes(vector))


def test_a_candidate_triage_model_of_the_lineage_computes_the_probability(
    lab: dict, tmp_path: Path
) -> None:
    save_triage_model(lab, tmp_path / "triage", trained_on=lab["detector"], active=False)
    defect_like = vector_part(lab, 1, DEFECT_LIKE)
    good_like = vector_part(lab, 2, GOOD_LIKE)
    sentence = hold(lab, defect_like)
    assert sentence is not None and "defect-like" in sentence
    assert hold(lab, good_like) is None

    saved = label_part(lab["factory"], user_id=lab["ines"], image_id=defect_like, label="good")
    assert saved.flagged and saved.learning_held is not None and saved.learning_job_id is None
    saved = label_part(lab["factory"], user_id=lab["ines"], image_id=good_like, label="good")
    assert saved.learning_held is None and saved.learning_job_id is not None


def test_a_triage_model_of_another_detector_is_not_asked(lab: dict, tmp_path: Path) -> None:
    other = add_version(lab["factory"], lab["project"], active=False)  # not in the lineage
    save_triage_model(lab, tmp_path / "triage", trained_on=other, active=False)
    assert hold(lab, vector_part(lab, 1, DEFECT_LIKE)) is None


def test_the_active_triage_model_is_asked_before_a_newer_candidate(
    lab: dict, tmp_path: Path
) -> None:
    detector = lab["detector"]
    save_triage_model(lab, tmp_path / "reversed", trained_on=detector, active=True, reverse=True)
    save_triage_model(lab, tmp_path / "newer", trained_on=detector, active=False)
    assert hold(lab, vector_part(lab, 1, DEFECT_LIKE)) is None  # the active one: good-like
    assert hold(lab, vector_part(lab, 2, GOOD_LIKE)) is not None


def test_a_triage_model_whose_files_are_gone_holds_nothing(lab: dict, tmp_path: Path) -> None:
    save_triage_model(lab, tmp_path / "triage", trained_on=lab["detector"], active=False)
    for file in (tmp_path / "triage").iterdir():
        file.unlink()
    assert hold(lab, vector_part(lab, 1, DEFECT_LIKE)) is None
