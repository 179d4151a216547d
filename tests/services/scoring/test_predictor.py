"""The scoring service: one predictor per version, read once, deciding every verdict.

A tiny stand-in detector scores (:mod:`stand_in_detector`: grey level / 100 against 1.0).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from active_model import station_key
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
from stand_in_detector import GreyLevelDetector, grey_part, project_with_stand_in, stand_in_for

from adcore.verdicts import DEFECT, GOOD
from services.scoring.predictor import Decision, Predictor, Refusal
from services.station_inspection import Station, inspect_station_part


@contextmanager
def transactions(factory: sessionmaker[Session]) -> Iterator[list[int]]:
    """Count the transactions (sessions that touched the database) begun meanwhile.

    A savepoint inside a transaction is not counted.
    """
    begun: list[int] = []

    def count(_session: Session, transaction: SessionTransaction, _connection: object) -> None:
        if not transaction.nested:
            begun.append(1)

    event.listen(factory, "after_begin", count)
    try:
        yield begun
    finally:
        event.remove(factory, "after_begin", count)


class FailsOnBright(GreyLevelDetector):
    """The stand-in, but a batch holding a bright part fails to score (e.g. out of memory)."""

    def predict(self, images: Sequence) -> list:
        """As the stand-in, unless a part of the batch is brighter than 200."""
        if any(image.mean() > 200 for image in images):
            raise RuntimeError("out of memory")
        return super().predict(images)


def test_the_version_scorer_and_audit_share_are_read_in_one_transaction(
    factory: sessionmaker[Session],
) -> None:
    project_id, version_id = project_with_stand_in(factory, "widgets")
    with transactions(factory) as begun:
        predictor = Predictor.active(factory, project_id, stand_in_for)
        decided = list(predictor.decide([("a.png", lambda: grey_part(50))]))
    assert len(begun) == 1
    assert (predictor.version_id, predictor.threshold, predictor.scorer) == (version_id, 1.0, None)
    assert [d.verdict for d in decided] == [GOOD]


def test_a_station_post_reads_the_active_version_once_and_stores_in_one_transaction(
    factory: sessionmaker[Session],
) -> None:
    project_id, _ = project_with_stand_in(factory, "widgets")
    station = Station(station_key(factory, project_id).id, project_id, "line-1")
    with transactions(factory) as begun:
        posted = inspect_station_part(
            factory,
            station,
            grey_part(150),
            filename="part.png",
            part_id="P-1",
            captured_at=None,
            detector_for=stand_in_for,
        )
    assert posted.record is not None and posted.record.verdict == DEFECT
    assert len(begun) == 3  # the earlier-post check, the predictor, the storing transaction


def test_a_score_at_the_threshold_is_flagged_and_bad_files_or_batches_are_refused_alone(
    factory: sessionmaker[Session],
) -> None:
    project_id, version_id = project_with_stand_in(factory, "widgets")
    predictor = Predictor.load(
        factory, project_id=project_id, model_version_id=version_id, detector=FailsOnBright()
    )

    def unreadable() -> bytes:
        raise OSError("the file is gone")

    items = [
        ("at.png", lambda: grey_part(100)),  # scored 1.0: at the threshold
        ("junk.png", lambda: b"not an image"),
        ("gone.png", unreadable),
        ("under.png", lambda: grey_part(99)),
        ("bright.png", lambda: grey_part(250)),  # its batch fails to score
        ("next.png", lambda: grey_part(10)),
    ]
    answers = list(predictor.decide(items, batch_size=4))
    assert [a.name for a in answers] == [name for name, _ in items]  # one each, in order
    at, junk, gone, under, bright, after = answers
    assert isinstance(at, Decision) and (at.score, at.verdict) == (1.0, DEFECT)
    assert isinstance(under, Decision) and under.verdict == GOOD
    assert isinstance(junk, Refusal) and "junk.png" in junk.reason
    assert gone == Refusal("gone.png", "the file is gone")
    assert bright == Refusal("bright.png", "Scoring failed: out of memory")
    assert after == Refusal("next.png", "Scoring failed: out of memory")  # the same batch
    assert at.explanation is not None and at.explanation["facts"]["verdict"] == DEFECT


def test_a_project_without_an_active_version_has_no_predictor(
    factory: sessionmaker[Session], project_id: int
) -> None:
    assert Predictor.active(factory, project_id, stand_in_for) is None
    with pytest.raises(LookupError, match="No project"):
        Predictor.active(factory, project_id + 1, stand_in_for)
