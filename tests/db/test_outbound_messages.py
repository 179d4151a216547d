"""The outbox: messages only for enabled channels, exclusive claims, retries, dead letters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_image, add_prediction, add_version

from db import Project, Role
from db.base import utcnow
from db.models import OutboundMessage, User
from db.outbound_messages import (
    OUTBOUND_KEY,
    claim_due,
    dead_letters,
    enqueue,
    mark_delivered,
    mark_failed,
    outbox_counts,
    prune_delivered,
    replay,
)
from db.review_queue import record_review, undo_last
from db.verdict_events import announce_verdict

BOTH_ON = {
    "webhook": {"enabled": True, "url": "http://127.0.0.1:9/hook", "secret": "s"},
    "mqtt": {"enabled": True, "host": "127.0.0.1", "port": 1883, "topic": "plant/cells"},
}


def configure(factory: sessionmaker[Session], project_id: int, outbound: dict) -> None:
    with factory() as session, session.begin():
        project = session.get(Project, project_id)
        project.settings = {**(project.settings or {}), OUTBOUND_KEY: outbound}


def messages(factory: sessionmaker[Session]) -> list[OutboundMessage]:
    with factory() as session:
        return list(session.scalars(select(OutboundMessage).order_by(OutboundMessage.id)))


def test_nothing_is_written_for_a_project_without_channels(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session, session.begin():
        assert enqueue(session, project_id, "verdict", {"verdict": "good"}) == []
    configure(session_factory, project_id, {"webhook": {"enabled": False, "url": "http://x/h"}})
    with session_factory() as session, session.begin():
        assert enqueue(session, project_id, "verdict", {"verdict": "good"}) == []
    assert messages(session_factory) == []


def test_one_message_per_enabled_channel_with_its_target(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    configure(session_factory, project_id, BOTH_ON)
    with session_factory() as session, session.begin():
        ids = enqueue(session, project_id, "review", {"label": "good"})
    rows = messages(session_factory)
    assert [row.id for row in rows] == ids
    assert [(r.channel, r.target, r.status, r.payload) for r in rows] == [
        ("webhook", "http://127.0.0.1:9/hook", "pending", {"label": "good"}),
        ("mqtt", "mqtt://127.0.0.1:1883/plant/cells/review", "pending", {"label": "good"}),
    ]


def test_a_message_is_claimed_by_one_worker_until_its_lease_lapses(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    configure(session_factory, project_id, {"webhook": BOTH_ON["webhook"]})
    with session_factory() as session, session.begin():
        (message_id,) = enqueue(session, project_id, "verdict", {"n": 1})
    with session_factory() as first, session_factory() as second:
        (claimed,) = claim_due(first, lease=timedelta(seconds=30))
        assert claim_due(second) == []  # held by the first worker
        assert claimed.id == message_id and claimed.attempts == 0
        assert claimed.config.webhook.url == "http://127.0.0.1:9/hook"
    with session_factory() as session, session.begin():  # the first worker died mid-send
        session.execute(
            update(OutboundMessage).values(claimed_until=utcnow() - timedelta(seconds=1))
        )
    with session_factory() as session:
        assert [m.id for m in claim_due(session)] == [message_id]


def test_failures_retry_later_then_become_dead_letters_that_can_be_replayed(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    configure(session_factory, project_id, {"webhook": BOTH_ON["webhook"]})
    with session_factory() as session, session.begin():
        (message_id,) = enqueue(session, project_id, "verdict", {"n": 1})
    with session_factory() as session:
        claim_due(session)
    with session_factory() as session, session.begin():
        later = utcnow() + timedelta(minutes=5)
        mark_failed(session, message_id, error="HTTP 500", target="http://x", retry_at=later)
    with session_factory() as session:
        assert claim_due(session) == []  # not due before its retry time
        assert outbox_counts(session, project_id).pending == 1
    with session_factory() as session, session.begin():
        mark_failed(session, message_id, error="refused", target="http://x", retry_at=None)
    with session_factory() as session:
        (dead,) = dead_letters(session, project_id)
        assert (dead.id, dead.attempts, dead.last_error) == (message_id, 2, "refused")
        assert outbox_counts(session, project_id).dead == 1
    with session_factory() as session, session.begin():
        assert replay(session, project_id + 1) == 0  # another project's letters only
        assert replay(session, project_id, [message_id]) == 1
    with session_factory() as session:
        (claimed,) = claim_due(session)
        assert claimed.attempts == 0
    with session_factory() as session, session.begin():
        mark_delivered(session, message_id, target="http://x")
    (row,) = messages(session_factory)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
    assert row.delivered_at is not None and row.replayed_at is not None


def test_a_verdict_and_each_later_label_are_announced_with_the_part(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_user: Callable[..., int],
) -> None:
    configure(session_factory, project_id, {"webhook": BOTH_ON["webhook"]})
    version_id = add_version(session_factory, project_id, threshold=1.0)
    image_id = add_image(session_factory, project_id, 7)
    prediction_id = add_prediction(session_factory, image_id, version_id, 2.5)
    ana = make_user("ana", Role.INSPECTOR)
    with session_factory() as session, session.begin():
        announce_verdict(session, prediction_id, station="line-2", part_id="P-7", inspection_id=3)
    with session_factory() as session, session.begin():
        record_review(session, image_id=image_id, user=session.get(User, ana), label="good")
    with session_factory() as session, session.begin():
        undo_last(session, user=session.get(User, ana))
    verdict, review, undo = (row.payload for row in messages(session_factory))
    assert verdict["event"] == "verdict"
    assert (verdict["verdict"], verdict["score"], verdict["threshold"]) == ("defect", 2.5, 1.0)
    assert (verdict["station"], verdict["part_id"]) == ("line-2", "P-7")
    assert verdict["inspection_id"] == 3
    assert (verdict["image_id"], verdict["model_version"]) == (image_id, 1)
    assert review["event"] == "review" and review["reviewer"] == "ana"
    assert (review["label"], review["model_verdict"], review["corrects_model"]) == (
        "good",
        "defect",
        True,
    )
    assert (undo["undo"], undo["label"], undo["corrects_model"]) == (True, None, False)


def test_a_label_that_confirms_the_model_is_announced_as_no_correction(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_user: Callable[..., int],
) -> None:
    configure(session_factory, project_id, {"mqtt": BOTH_ON["mqtt"]})
    version_id = add_version(session_factory, project_id, threshold=1.0)
    image_id = add_image(session_factory, project_id, 8)
    add_prediction(session_factory, image_id, version_id, 3.0)
    ana = make_user("ana", Role.INSPECTOR)
    with session_factory() as session, session.begin():
        user = session.get(User, ana)
        record_review(session, image_id=image_id, user=user, label="defect", defect_type="crack")
    (row,) = messages(session_factory)
    assert row.channel == "mqtt" and row.target.endswith("/plant/cells/review")
    assert (row.payload["label"], row.payload["defect_type"]) == ("defect", "crack")
    assert row.payload["corrects_model"] is False


def test_old_delivered_messages_are_pruned_dead_letters_and_recent_ones_kept(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    configure(session_factory, project_id, {"webhook": BOTH_ON["webhook"]})
    with session_factory() as session, session.begin():
        old, recent, dead, waiting = (
            enqueue(session, project_id, "verdict", {"n": n})[0] for n in range(4)
        )
        for message_id in (old, recent):
            mark_delivered(session, message_id, target="http://x")
        mark_failed(session, dead, error="refused", target="http://x", retry_at=None)
        session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id.in_([old, dead]))
            .values(
                delivered_at=utcnow() - timedelta(days=40), created_at=utcnow() - timedelta(days=40)
            )
        )
    with session_factory() as session, session.begin():
        assert prune_delivered(session, timedelta(days=30)) == 1
    assert [row.id for row in messages(session_factory)] == [recent, dead, waiting]
