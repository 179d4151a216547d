"""Verdicts out, against real receivers: a local HTTP server and a Mosquitto broker.

Parts are scored by a tiny PatchCore through :func:`services.inspection.inspect_uploads` and
labelled through :func:`db.review_queue.record_review`, exactly as the workbench does; the
delivery worker sends the outbox to a webhook receiver on a loopback port and to the broker
of the ``mqtt_broker`` fixture.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from active_model import fit_small_patchcore, project_with_active_model
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png
from webhook_receiver import Receiver, receiving

from adcore.detectors.registry import load_detector
from db import Role
from db.models import OutboundMessage, Project, User
from db.outbound_messages import MqttConfig, OutboundConfig, WebhookConfig, outbox_counts
from db.permissions import PermissionDenied
from db.review_queue import record_review
from services.inspection import InspectionRequest, inspect_uploads, rescore_images
from services.line_settings import replay_dead_letters, set_outbound
from services.scoring.predictor import Predictor
from workers.outbound_delivery import OutboundDelivery

SECRET = "line-2-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free loopback port."""
    with receiving() as state:
        yield state


@pytest.fixture(scope="module")
def fitted() -> tuple:
    return fit_small_patchcore()


@dataclass
class Line:
    """A project with an active tiny model, a manager and an inspector: a line to announce."""

    factory: sessionmaker[Session]
    project_id: int
    version_id: int
    manager: int
    inspector: int
    detector: Any

    def configure(self, **channels: Any) -> None:
        """Set the project's channels as its manager."""
        with self.factory() as session, session.begin():
            set_outbound(
                session,
                self.project_id,
                OutboundConfig(**channels),
                user=session.get(User, self.manager),
            )

    def inspect(self, *seeds: int, defect: bool = False) -> list[int]:
        """Score synthetic parts as uploads; their image ids."""
        predictor = Predictor.load(
            self.factory,
            project_id=self.project_id,
            model_version_id=self.version_id,
            detector=self.detector,
        )
        uploads = [(f"part-{s}.png", png(make_part(s, defect=defect))) for s in seeds]
        results = inspect_uploads(self.factory, InspectionRequest(predictor), uploads)
        assert all(result.ok for result in results)
        return [result.image_id for result in results]

    def label(self, image_id: int, label: str) -> None:
        """Label a part as the inspector, through the workbench's writer."""
        with self.factory() as session, session.begin():
            inspector = session.get(User, self.inspector)
            record_review(session, image_id=image_id, user=inspector, label=label)

    def statuses(self) -> list[tuple[str, str, str]]:
        """``(channel, event, status)`` of every outbox row, in order."""
        with self.factory() as session:
            rows = session.scalars(select(OutboundMessage).order_by(OutboundMessage.id))
            return [(row.channel, row.event, row.status) for row in rows]


@pytest.fixture
def line(
    factory: sessionmaker[Session],
    tmp_path: Path,
    fitted: tuple,
    make_user: Callable[..., int],
) -> Line:
    project_id = project_with_active_model(factory, "widgets", fitted, tmp_path / "models")
    with factory() as session:
        version_id = session.get(Project, project_id).active_model_version_id
        artifact = session.get(Project, project_id).active_model_version.artifact_path
    return Line(
        factory,
        project_id,
        version_id,
        make_user("mia", Role.MANAGER),
        make_user("ian", Role.INSPECTOR),
        load_detector(artifact, device="cpu"),
    )


def test_verdicts_and_labels_reach_the_webhook_signed_and_in_order(
    line: Line, receiver: Receiver
) -> None:
    line.configure(webhook=WebhookConfig(True, receiver.url, SECRET))
    good, cracked = line.inspect(1), line.inspect(2, defect=True)
    line.label(cracked[0], "good")  # the inspector overturns a flag
    outcomes = OutboundDelivery(line.factory).deliver_due()
    assert [o.status for o in outcomes] == ["delivered"] * 3
    assert line.statuses() == [
        ("webhook", "verdict", "delivered"),
        ("webhook", "verdict", "delivered"),
        ("webhook", "review", "delivered"),
    ]
    first, second, review = receiver.bodies()
    assert (first["event"], first["image_id"], first["filename"]) == (
        "verdict",
        good[0],
        "part-1.png",
    )
    assert second["image_id"] == cracked[0] and second["verdict"] in ("good", "defect")
    assert {"score", "threshold", "model_version", "explanation", "inspected_at"} <= set(second)
    assert (review["event"], review["label"], review["reviewer"]) == ("review", "good", "ian")
    assert review["model_verdict"] == second["verdict"]
    for headers, body in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Loupe-Signature"] == expected
        assert headers["X-Loupe-Delivery"] == str(json.loads(body)["message_id"])
    assert OutboundDelivery(line.factory).deliver_due() == []  # nothing is sent twice


def test_a_failing_receiver_is_retried_then_dead_lettered_and_replayed_by_a_manager(
    line: Line, receiver: Receiver
) -> None:
    line.configure(webhook=WebhookConfig(True, receiver.url), max_attempts=3)
    line.inspect(3)
    receiver.answers = [503, 500, 502]
    worker = OutboundDelivery(line.factory, retry_base_seconds=0.0)
    assert [o.status for o in worker.deliver_due()] == ["retry", "retry", "dead"]
    assert len(receiver.posts) == 3
    with line.factory() as session:
        (dead,) = session.scalars(select(OutboundMessage)).all()
        assert dead.status == "dead" and dead.attempts == 3
        assert dead.last_error.startswith(f"HTTP 502 from {receiver.url}")
    assert worker.deliver_due() == []  # a dead letter waits for a manager
    with line.factory() as session, session.begin(), pytest.raises(PermissionDenied):
        replay_dead_letters(session, line.project_id, user=session.get(User, line.inspector))
    with line.factory() as session, session.begin():
        manager = session.get(User, line.manager)
        assert replay_dead_letters(session, line.project_id, user=manager) == 1
    assert [o.status for o in worker.deliver_due()] == ["delivered"]
    assert len(receiver.posts) == 4
    assert receiver.bodies()[0] == receiver.bodies()[3]  # the same message, the same body


def test_a_retry_waits_for_its_time_and_goes_to_the_corrected_url(
    line: Line, receiver: Receiver
) -> None:
    line.configure(webhook=WebhookConfig(True, "http://127.0.0.1:9/nobody-listens"))
    line.inspect(4)
    worker = OutboundDelivery(line.factory, retry_base_seconds=0.3)
    (outcome,) = worker.deliver_due()
    assert outcome.status == "retry" and "could not reach http://127.0.0.1:9" in outcome.error
    assert worker.deliver_due() == []  # not yet due
    line.configure(webhook=WebhookConfig(True, receiver.url))  # the manager fixes the URL
    time.sleep(0.35)
    assert [o.status for o in worker.deliver_due()] == ["delivered"]
    with line.factory() as session:
        row = session.scalars(select(OutboundMessage)).one()
        assert (row.target, row.attempts) == (receiver.url, 2)


def test_a_channel_switched_off_dead_letters_what_was_waiting(
    line: Line, receiver: Receiver
) -> None:
    line.configure(webhook=WebhookConfig(True, receiver.url))
    line.inspect(5)
    line.configure(webhook=WebhookConfig(False, receiver.url))
    line.inspect(6)  # written for no channel
    (outcome,) = OutboundDelivery(line.factory).deliver_due()
    assert outcome.status == "dead" and "switched off" in outcome.error
    assert receiver.posts == []


def test_one_message_that_breaks_the_sender_does_not_stop_the_others(
    line: Line, receiver: Receiver
) -> None:
    line.configure(webhook=WebhookConfig(True, receiver.url))
    line.inspect(7, 8)
    calls: list[int] = []

    def flaky(config: WebhookConfig, *, message_id: int, **rest: Any) -> None:
        calls.append(message_id)
        if len(calls) == 1:
            raise KeyError("a bug")

    outcomes = OutboundDelivery(line.factory, webhook=flaky).deliver_due()
    assert [o.status for o in outcomes] == ["retry", "delivered"]
    assert "KeyError" in outcomes[0].error


def test_rescoring_a_part_is_not_announced_again(line: Line, receiver: Receiver) -> None:
    line.configure(webhook=WebhookConfig(True, receiver.url))
    image_ids = line.inspect(9)
    rescore_images(
        line.factory,
        project_id=line.project_id,
        detector=line.detector,
        model_version_id=line.version_id,
        image_ids=image_ids,
    )
    assert line.statuses() == [("webhook", "verdict", "pending")]


def test_verdicts_and_labels_are_published_to_a_real_mqtt_broker(line: Line, mqtt_broker) -> None:
    topic = "plant/line-2/widgets"
    received: list[tuple[str, dict]] = []
    subscribed = threading.Event()
    listener = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    listener.on_connect = lambda client, *_: client.subscribe(f"{topic}/#", qos=1)
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.on_message = lambda _c, _u, m: received.append((m.topic, json.loads(m.payload)))
    listener.connect(mqtt_broker.host, mqtt_broker.port)
    listener.loop_start()
    try:
        assert subscribed.wait(10), "the test's subscriber did not subscribe within 10 s"
        line.configure(mqtt=MqttConfig(True, mqtt_broker.host, mqtt_broker.port, topic))
        (image_id,) = line.inspect(10, defect=True)
        line.label(image_id, "defect")
        worker = OutboundDelivery(line.factory)
        try:
            assert [o.status for o in worker.deliver_due()] == ["delivered", "delivered"]
        finally:
            worker.mqtt.close()
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        listener.loop_stop()
        listener.disconnect()
    assert [t for t, _ in received] == [f"{topic}/verdict", f"{topic}/review"]
    verdict, review = (body for _, body in received)
    assert verdict["image_id"] == review["image_id"] == image_id
    assert (review["label"], review["reviewer"]) == ("defect", "ian")


def test_an_unreachable_broker_is_retried_with_a_clear_reason(line: Line) -> None:
    line.configure(mqtt=MqttConfig(True, "127.0.0.1", 9, "plant/widgets"))
    line.inspect(11)
    worker = OutboundDelivery(line.factory, timeout=2.0)
    (outcome,) = worker.deliver_due()
    assert outcome.status == "retry"
    assert "could not reach the MQTT broker at 127.0.0.1:9" in outcome.error
    with line.factory() as session:
        assert outbox_counts(session, line.project_id).pending == 1


def test_the_worker_prunes_at_most_once_an_hour_and_reads_the_keep_days(
    line: Line, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.outbound_delivery import KEEP_DAYS_ENV, configured_keep

    monkeypatch.setenv(KEEP_DAYS_ENV, "7")
    assert configured_keep().days == 7
    monkeypatch.setenv(KEEP_DAYS_ENV, "-1")
    with pytest.raises(ValueError, match=KEEP_DAYS_ENV):
        configured_keep()
    monkeypatch.delenv(KEEP_DAYS_ENV)
    worker = OutboundDelivery(line.factory)
    calls: list[object] = []
    monkeypatch.setattr(
        "workers.outbound_delivery.prune_delivered",
        lambda session, keep: calls.append(keep) or 0,
    )
    worker.prune_if_due()
    worker.prune_if_due()  # within the hour: nothing
    assert calls == [worker.keep] and worker.keep.days == 30
