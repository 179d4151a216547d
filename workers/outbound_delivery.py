"""The delivery worker: sends the outbox (webhook posts, MQTT publishes), retries, dead-letters.

Every API process runs one (:func:`api.app.create_app`), and ``loupe deliver`` runs one alone.
Each pass claims the due messages (:func:`db.outbound_messages.claim_due`, safe with several
workers on one database), sends each with its project's channel settings as they are *now*
(a fixed URL applies to the retries and replays of older messages), and records the outcome:
delivered, or failed with a retry after ``retry_base_seconds * 2**(attempts - 1)`` (at most
``max_retry_seconds``), or dead once the project's ``max_attempts`` are spent. Once an hour it
deletes the messages delivered more than ``$LOUPE_OUTBOX_KEEP_DAYS`` (30) days ago; dead
letters stay until a manager replays them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db.base import utcnow
from db.outbound_messages import (
    ClaimedMessage,
    claim_due,
    mark_delivered,
    mark_failed,
    prune_delivered,
)
from services.outbound_senders import (
    DEFAULT_TIMEOUT,
    DeliveryError,
    MqttPublisher,
    WebhookPoster,
    message_body,
)

log = logging.getLogger("loupe.outbound")

DEFAULT_POLL_SECONDS = 1.0
DEFAULT_RETRY_BASE_SECONDS = 2.0
DEFAULT_MAX_RETRY_SECONDS = 300.0
KEEP_DAYS_ENV = "LOUPE_OUTBOX_KEEP_DAYS"
DEFAULT_KEEP_DAYS = 30.0
"""Delivered messages are deleted this many days after delivery (dead letters are kept)."""
PRUNE_EVERY_SECONDS = 3600.0


def configured_keep() -> timedelta:
    """How long delivered messages are kept: ``$LOUPE_OUTBOX_KEEP_DAYS`` or 30 days.

    Raises:
        ValueError: The variable is not a positive number.
    """
    raw = os.environ.get(KEEP_DAYS_ENV, "").strip()
    days = float(raw) if raw else DEFAULT_KEEP_DAYS
    if not days > 0:
        raise ValueError(f"{KEEP_DAYS_ENV} must be a positive number of days, got {raw!r}")
    return timedelta(days=days)


@dataclass(frozen=True)
class DeliveryOutcome:
    """One attempt: ``delivered``, ``retry`` or ``dead``, and why it failed."""

    message_id: int
    channel: str
    status: str
    error: str | None = None


class OutboundDelivery:
    """Sends due outbox messages, in a thread (:meth:`start`) or one pass at a time."""

    def __init__(
        self,
        Session: sessionmaker[Session],  # noqa: N803 - the app's session factory
        *,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        retry_base_seconds: float = DEFAULT_RETRY_BASE_SECONDS,
        max_retry_seconds: float = DEFAULT_MAX_RETRY_SECONDS,
        timeout: float = DEFAULT_TIMEOUT,
        batch: int = 20,
        webhook: Callable[..., None] | None = None,
        mqtt: MqttPublisher | None = None,
        keep: timedelta | None = None,
    ) -> None:
        self.Session = Session
        self.poll_seconds = poll_seconds
        self.retry_base_seconds = retry_base_seconds
        self.max_retry_seconds = max_retry_seconds
        self.timeout = timeout
        self.batch = batch
        self.webhook = webhook or WebhookPoster(timeout=timeout)
        self.mqtt = mqtt or MqttPublisher(timeout=timeout)
        self.lease = timedelta(seconds=4 * timeout + 10)
        self.keep = keep or configured_keep()
        self._next_prune = 0.0  # monotonic time of the next clean-up (the first pass does one)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ one pass

    def deliver_due(self) -> list[DeliveryOutcome]:
        """Claim and send every message due now (in batches); the attempts' outcomes."""
        outcomes: list[DeliveryOutcome] = []
        while not self._stop.is_set():
            with self.Session() as session:
                claimed = claim_due(session, limit=self.batch, lease=self.lease)
            if not claimed:
                return outcomes
            outcomes.extend(self._send(message) for message in claimed)
        return outcomes

    def prune_if_due(self) -> int:
        """Delete old delivered messages, at most once an hour; how many were deleted."""
        if time.monotonic() < self._next_prune:
            return 0
        self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        with self.Session() as session, session.begin():
            return prune_delivered(session, self.keep)

    def _send(self, message: ClaimedMessage) -> DeliveryOutcome:
        config = message.config
        target = config.target(message.channel, message.event)
        error: str | None = None
        if target is None:
            error = f"the {message.channel} channel is switched off for this project"
        else:
            try:
                self._deliver(message)
            except DeliveryError as err:
                error = str(err)
            except Exception as err:  # noqa: BLE001 - one bad message must not stop the worker
                log.exception("Outbound message %s failed unexpectedly", message.id)
                error = f"unexpected error: {type(err).__name__}: {err}"
        attempts = message.attempts + 1
        with self.Session() as session, session.begin():
            if error is None:
                mark_delivered(session, message.id, target=target or "")
                return DeliveryOutcome(message.id, message.channel, "delivered")
            final = target is None or attempts >= config.max_attempts
            delay = min(self.max_retry_seconds, self.retry_base_seconds * 2 ** (attempts - 1))
            mark_failed(
                session,
                message.id,
                error=error,
                target=target or "",
                retry_at=None if final else utcnow() + timedelta(seconds=delay),
            )
        log.warning(
            "Outbound message %s (%s) attempt %d failed: %s",
            message.id,
            message.channel,
            attempts,
            error,
        )
        return DeliveryOutcome(message.id, message.channel, "dead" if final else "retry", error)

    def _deliver(self, message: ClaimedMessage) -> None:
        if message.channel == "webhook":
            self.webhook(
                message.config.webhook,
                message_id=message.id,
                event=message.event,
                payload=message.payload,
                timeout=self.timeout,
            )
        else:
            mqtt = message.config.mqtt
            body = message_body(message.id, message.payload)
            self.mqtt.publish(mqtt, mqtt.topic_for(message.event), body)

    # ------------------------------------------------------------------ the thread

    def wake(self) -> None:
        """Run a pass now instead of at the next poll (e.g. right after a verdict)."""
        self._wake.set()

    def run(self, stop: threading.Event | None = None) -> None:
        """Pass after pass until stopped; a failing pass is logged and the next one runs."""
        stop = stop or self._stop
        while not stop.is_set() and not self._stop.is_set():
            try:
                self.deliver_due()
                self.prune_if_due()
            except Exception:  # noqa: BLE001 - e.g. the database is briefly away
                log.exception("Outbound delivery pass failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def start(self) -> threading.Thread:
        """Run in a daemon thread; :meth:`stop` ends it."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="loupe-outbound", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread (after the message it is sending) and close the broker connections."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    def close(self) -> None:
        """Close the HTTP client and the broker connections."""
        self.mqtt.close()
        if isinstance(self.webhook, WebhookPoster):
            self.webhook.close()


def run_delivery(Session: sessionmaker[Session], stop: threading.Event, **options: Any) -> None:  # noqa: N803
    """Run a delivery worker in this thread until ``stop`` is set (``loupe deliver``)."""
    worker = OutboundDelivery(Session, **options)
    try:
        worker.run(stop)
    finally:
        worker.close()
