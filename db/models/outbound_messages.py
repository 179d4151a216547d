"""Verdicts out: the outbox of webhook posts and MQTT publishes, one row per message and channel.

A message is written in the same transaction as what it announces (a stored verdict, a human
label), so nothing is announced that was not stored and nothing stored goes unannounced. A
delivery worker (:mod:`workers.outbound_delivery`) sends it later:

* ``pending``: waiting for its ``next_attempt_at``;
* ``sending``: claimed by a worker until ``claimed_until`` (a worker that died mid-send lets the
  claim lapse and another takes the message again: delivery is at least once);
* ``delivered``: the receiver accepted it;
* ``dead``: every attempt failed (or the receiver refused it outright): the dead letter a
  manager sees on the Line page and may replay.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import ENUM_LENGTH, Base, sql_in, utcnow

TARGET_LENGTH = 1024


class OutboundChannel(StrEnum):
    """Where a message goes."""

    WEBHOOK = "webhook"
    MQTT = "mqtt"


class OutboundEvent(StrEnum):
    """What a message announces."""

    VERDICT = "verdict"
    REVIEW = "review"


class OutboundStatus(StrEnum):
    """Where a message is in its delivery (see the module's header)."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    DEAD = "dead"


class OutboundMessage(Base):
    """One message to one channel (a webhook post or an MQTT publish) and its delivery state."""

    __tablename__ = "outbound_messages"
    __table_args__ = (
        CheckConstraint(sql_in("channel", OutboundChannel), name="channel"),
        CheckConstraint(sql_in("event", OutboundEvent), name="event"),
        CheckConstraint(sql_in("status", OutboundStatus), name="status"),
        Index("ix_outbound_messages_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbound_messages_project_id_status", "project_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    channel: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    event: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    # Where it goes, as configured when it was written: the webhook URL or the MQTT topic.
    target: Mapped[str] = mapped_column(String(TARGET_LENGTH))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(ENUM_LENGTH), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    replayed_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"OutboundMessage(id={self.id!r}, {self.channel}/{self.event}, {self.status})"
