"""The outbox of verdicts out: the per-project channels, writing messages, claiming, outcomes.

A project's channels live in ``projects.settings["outbound"]`` (see :class:`OutboundConfig`;
managers change them through :mod:`services.outbound_settings`). :func:`enqueue` writes one
row per enabled channel in the caller's transaction; a delivery worker claims due rows
(:func:`claim_due`), sends them and records the outcome (:func:`mark_delivered`,
:func:`mark_failed`); managers list the dead letters and replay them (:func:`replay`).

Claims are plain conditional ``UPDATE`` statements, so several workers (several API processes
on one PostgreSQL) never send the same message at once; a claim lapses after its lease, so a
worker that died mid-send only delays its messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from db.base import utcnow
from db.models import OutboundMessage, Project

OUTBOUND_KEY = "outbound"
DEFAULT_MAX_ATTEMPTS = 8
"""Attempts before a message becomes a dead letter (with 2 s doubling: about 4 minutes)."""
MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True)
class WebhookConfig:
    """A project's webhook: ``url`` receives a JSON POST per message.

    Attributes:
        enabled: Whether messages are written for it.
        url: An ``http://`` or ``https://`` URL.
        secret: When set, each post carries ``X-Loupe-Signature: sha256=<HMAC of the body>``.
    """

    enabled: bool = False
    url: str = ""
    secret: str = ""


@dataclass(frozen=True)
class MqttConfig:
    """A project's MQTT broker: each message is published to ``<topic>/<event>``.

    Attributes:
        enabled: Whether messages are written for it.
        host: The broker's host name.
        port: The broker's port (1883 without TLS).
        topic: The topic prefix; verdicts go to ``<topic>/verdict``, labels to ``<topic>/review``
            (:meth:`topic_for`).
        username: Optional user name.
        password: Optional password (kept in the project settings; never shown back).
        qos: MQTT quality of service, 0, 1 or 2 (1: the broker acknowledges each message).
    """

    enabled: bool = False
    host: str = ""
    port: int = 1883
    topic: str = ""
    username: str = ""
    password: str = ""
    qos: int = 1

    def topic_for(self, event: str) -> str:
        """The topic a message of ``event`` is published to."""
        return f"{self.topic}/{event}"


@dataclass(frozen=True)
class OutboundConfig:
    """Where a project's verdicts and labels go, and how long a message is retried."""

    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    @classmethod
    def of(cls, project: Project) -> OutboundConfig:
        """The project's channels (both off when it has none)."""
        stored = (project.settings or {}).get(OUTBOUND_KEY) or {}
        webhook = stored.get("webhook") or {}
        mqtt = stored.get("mqtt") or {}
        return cls(
            webhook=WebhookConfig(
                enabled=bool(webhook.get("enabled")),
                url=str(webhook.get("url") or ""),
                secret=str(webhook.get("secret") or ""),
            ),
            mqtt=MqttConfig(
                enabled=bool(mqtt.get("enabled")),
                host=str(mqtt.get("host") or ""),
                port=int(mqtt.get("port") or 1883),
                topic=str(mqtt.get("topic") or "").strip("/"),
                username=str(mqtt.get("username") or ""),
                password=str(mqtt.get("password") or ""),
                qos=int(mqtt.get("qos", 1)),
            ),
            max_attempts=int(stored.get("max_attempts") or DEFAULT_MAX_ATTEMPTS),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON stored under ``settings["outbound"]``."""
        return {
            "webhook": vars(self.webhook).copy(),
            "mqtt": vars(self.mqtt).copy(),
            "max_attempts": self.max_attempts,
        }

    def target(self, channel: str, event: str) -> str | None:
        """Where a message of ``channel`` and ``event`` goes now, or ``None`` when it is off."""
        if channel == "webhook" and self.webhook.enabled and self.webhook.url:
            return self.webhook.url
        if channel == "mqtt" and self.mqtt.enabled and self.mqtt.host and self.mqtt.topic:
            return f"mqtt://{self.mqtt.host}:{self.mqtt.port}/{self.mqtt.topic_for(event)}"
        return None

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels that are on."""
        return tuple(c for c in ("webhook", "mqtt") if self.target(c, "verdict") is not None)


def enqueue(
    session: Session,
    project_id: int,
    event: str,
    payload: dict[str, Any],
    *,
    config: OutboundConfig | None = None,
) -> list[int]:
    """Write one message per enabled channel of the project (flushed; the caller commits).

    Args:
        session: The caller's session: the message commits with what it announces.
        project_id: The project.
        event: ``"verdict"`` or ``"review"``.
        payload: The JSON body (plain values).
        config: The project's channels, when the caller has read them already.

    Returns:
        The new rows' ids (none when the project has no channel on).
    """
    if config is None:
        project = session.get(Project, project_id)
        if project is None:
            return []
        config = OutboundConfig.of(project)
    rows = [
        OutboundMessage(
            project_id=project_id,
            channel=channel,
            event=event,
            target=config.target(channel, event) or "",
            payload=payload,
        )
        for channel in config.channels
    ]
    if not rows:
        return []
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


@dataclass(frozen=True)
class ClaimedMessage:
    """A message a worker holds, with its project's channels as they are now."""

    id: int
    project_id: int
    channel: str
    event: str
    payload: dict[str, Any]
    attempts: int  # attempts before this one
    config: OutboundConfig


def claim_due(
    session: Session, *, limit: int = 20, lease: timedelta = timedelta(seconds=60)
) -> list[ClaimedMessage]:
    """Claim up to ``limit`` due messages (oldest first) for ``lease``; commits the claim.

    A message is due when it is pending and its next attempt time has come, or when another
    worker's claim on it has lapsed. The claim is one conditional ``UPDATE ... RETURNING``
    (SQLite 3.35+, PostgreSQL): a message another worker claimed first is skipped.
    """
    now = utcnow()
    due = or_(
        and_(OutboundMessage.status == "pending", OutboundMessage.next_attempt_at <= now),
        and_(OutboundMessage.status == "sending", OutboundMessage.claimed_until < now),
    )
    candidates = session.scalars(
        select(OutboundMessage.id).where(due).order_by(OutboundMessage.id).limit(limit)
    ).all()
    if not candidates:
        return []
    # One conditional UPDATE claims them all; RETURNING names the ones this worker won (a
    # message another worker claimed meanwhile no longer matches ``due``).
    won = session.scalars(
        update(OutboundMessage)
        .where(OutboundMessage.id.in_(candidates), due)
        .values(status="sending", claimed_until=now + lease)
        .returning(OutboundMessage.id)
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()
    if not won:
        return []
    rows = session.scalars(
        select(OutboundMessage).where(OutboundMessage.id.in_(won)).order_by(OutboundMessage.id)
    ).all()
    configs: dict[int, OutboundConfig] = {}
    claimed: list[ClaimedMessage] = []
    for row in rows:
        if row.project_id not in configs:
            project = session.get(Project, row.project_id)
            configs[row.project_id] = OutboundConfig.of(project) if project else OutboundConfig()
        claimed.append(
            ClaimedMessage(
                row.id,
                row.project_id,
                row.channel,
                row.event,
                dict(row.payload),
                row.attempts,
                configs[row.project_id],
            )
        )
    return claimed


def mark_delivered(session: Session, message_id: int, *, target: str) -> None:
    """Record a delivery (the caller commits)."""
    session.execute(
        update(OutboundMessage)
        .where(OutboundMessage.id == message_id)
        .values(
            status="delivered",
            attempts=OutboundMessage.attempts + 1,
            delivered_at=utcnow(),
            claimed_until=None,
            last_error=None,
            target=target,
        )
        .execution_options(synchronize_session=False)
    )


def mark_failed(
    session: Session,
    message_id: int,
    *,
    error: str,
    target: str,
    retry_at: datetime | None,
) -> None:
    """Record a failed attempt: retry at ``retry_at``, or a dead letter when it is ``None``."""
    values: dict[str, Any] = {
        "attempts": OutboundMessage.attempts + 1,
        "claimed_until": None,
        "last_error": error[:MAX_ERROR_LENGTH],
        "target": target,
    }
    if retry_at is None:
        values["status"] = "dead"
    else:
        values.update(status="pending", next_attempt_at=retry_at)
    session.execute(
        update(OutboundMessage)
        .where(OutboundMessage.id == message_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class OutboxCounts:
    """How many of a project's messages are in each state."""

    pending: int = 0
    sending: int = 0
    delivered: int = 0
    dead: int = 0


def outbox_counts(session: Session, project_id: int) -> OutboxCounts:
    """Count the project's messages by state."""
    rows = session.execute(
        select(OutboundMessage.status, func.count())
        .where(OutboundMessage.project_id == project_id)
        .group_by(OutboundMessage.status)
    ).all()
    return OutboxCounts(**{status: int(count) for status, count in rows})


def dead_letters(
    session: Session, project_id: int, *, limit: int = 200
) -> Sequence[OutboundMessage]:
    """The project's dead letters, newest first."""
    return session.scalars(
        select(OutboundMessage)
        .where(OutboundMessage.project_id == project_id, OutboundMessage.status == "dead")
        .order_by(OutboundMessage.id.desc())
        .limit(limit)
    ).all()


def recent_messages(
    session: Session, project_id: int, *, limit: int = 20
) -> Sequence[OutboundMessage]:
    """The project's latest messages in any state, newest first."""
    return session.scalars(
        select(OutboundMessage)
        .where(OutboundMessage.project_id == project_id)
        .order_by(OutboundMessage.id.desc())
        .limit(limit)
    ).all()


def replay(session: Session, project_id: int, message_ids: Iterable[int] | None = None) -> int:
    """Send dead letters again from the first attempt (all of the project's when no ids).

    Returns:
        How many dead letters were put back in the queue (the caller commits).
    """
    statement = update(OutboundMessage).where(
        OutboundMessage.project_id == project_id, OutboundMessage.status == "dead"
    )
    if message_ids is not None:
        statement = statement.where(OutboundMessage.id.in_(list(message_ids)))
    now = utcnow()
    return session.execute(
        statement.values(
            status="pending", attempts=0, next_attempt_at=now, replayed_at=now, claimed_until=None
        ).execution_options(synchronize_session=False)
    ).rowcount


def prune_delivered(session: Session, older_than: timedelta) -> int:
    """Delete the delivered messages delivered more than ``older_than`` ago (all projects).

    Dead letters and messages still being tried are kept whatever their age: a manager decides
    about those. The caller commits.

    Returns:
        How many messages were deleted.
    """
    cutoff = utcnow() - older_than
    return session.execute(
        delete(OutboundMessage)
        .where(OutboundMessage.status == "delivered", OutboundMessage.delivered_at < cutoff)
        .execution_options(synchronize_session=False)
    ).rowcount
