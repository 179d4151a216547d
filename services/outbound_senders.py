"""Sending one outbox message: a webhook POST (httpx) or an MQTT publish (paho-mqtt).

Both raise :class:`DeliveryError` with a sentence a manager can act on ("connection refused
by 127.0.0.1:9", "HTTP 500 from the receiver"); the delivery worker records it and retries.
Secrets (the webhook's signing secret, the broker's password) never appear in an error.

The webhook body is the message's JSON payload plus ``message_id``; its headers name the event
(``X-Loupe-Event``) and the message (``X-Loupe-Delivery``, the same on every retry, so a
receiver can drop repeats), and, when the project has a secret,
``X-Loupe-Signature: sha256=<hex HMAC-SHA256 of the body>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from itertools import count
from typing import Any

from db.outbound_messages import MqttConfig, WebhookConfig

SIGNATURE_HEADER = "X-Loupe-Signature"
DEFAULT_TIMEOUT = 5.0


class DeliveryError(RuntimeError):
    """A message could not be delivered this time (the reason is safe to show)."""


def message_body(message_id: int, payload: dict[str, Any]) -> bytes:
    """The JSON bytes sent for a message: its payload plus ``message_id``."""
    return json.dumps({**payload, "message_id": message_id}, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    """The ``X-Loupe-Signature`` value of ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookPoster:
    """POSTs messages to webhooks, reusing one HTTP client (and its connections) for all.

    Each call sends one message (see the module's header for the body and headers);
    :meth:`close` ends the client.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(
        self,
        config: WebhookConfig,
        *,
        message_id: int,
        event: str,
        payload: dict[str, Any],
        timeout: float | None = None,
    ) -> None:
        """POST one message to the project's webhook; return when it answered 2xx.

        Raises:
            DeliveryError: No answer within the timeout, no connection, or a non-2xx status.
        """
        import httpx

        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=timeout or self.timeout)
            client = self._client
        body = message_body(message_id, payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Loupe",
            "X-Loupe-Event": event,
            "X-Loupe-Delivery": str(message_id),
        }
        if config.secret:
            headers[SIGNATURE_HEADER] = signature(config.secret, body)
        wait = timeout or self.timeout
        try:
            response = client.post(config.url, content=body, headers=headers, timeout=wait)
        except httpx.TimeoutException as err:
            raise DeliveryError(f"no answer from {config.url} within {wait:g} s") from err
        except httpx.HTTPError as err:
            raise DeliveryError(f"could not reach {config.url}: {err}") from err
        if not 200 <= response.status_code < 300:
            detail = response.text.strip().replace("\n", " ")[:200]
            raise DeliveryError(
                f"HTTP {response.status_code} from {config.url}" + (f": {detail}" if detail else "")
            )

    def close(self) -> None:
        """Close the HTTP client (a later call opens a new one)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class MqttPublisher:
    """Publishes messages to MQTT brokers, keeping one connection per broker and account.

    A connection that fails or drops is closed and made again on the next message. With QoS 1
    or 2 a publish returns only once the broker acknowledged it.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._clients: dict[tuple[str, int, str, str], Any] = {}
        self._lock = threading.Lock()
        self._numbers = count(1)

    def publish(self, config: MqttConfig, topic: str, body: bytes) -> None:
        """Publish ``body`` to ``topic`` on the configured broker.

        Raises:
            DeliveryError: The broker cannot be reached, refuses the account, or does not
                acknowledge within the timeout.
        """
        import paho.mqtt.client as mqtt

        with self._lock:
            key = (config.host, config.port, config.username, config.password)
            client = self._clients.get(key)
            if client is None or not client.is_connected():
                self._close(key)
                client = self._connect(config)
                self._clients[key] = client
            where = f"{config.host}:{config.port}"
            try:
                info = client.publish(topic, body, qos=config.qos)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    raise DeliveryError(
                        f"the broker at {where} took no message: {mqtt.error_string(info.rc)}"
                    )
                info.wait_for_publish(timeout=self.timeout)
                if not info.is_published():
                    raise DeliveryError(
                        f"the broker at {where} did not acknowledge within {self.timeout:g} s"
                    )
            except (DeliveryError, RuntimeError, ValueError, OSError) as err:
                self._close(key)
                if isinstance(err, DeliveryError):
                    raise
                raise DeliveryError(f"publishing to {where} failed: {err}") from err

    def _connect(self, config: MqttConfig) -> Any:
        import paho.mqtt.client as mqtt

        where = f"{config.host}:{config.port}"
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"loupe-{os.getpid()}-{next(self._numbers)}",
        )
        if config.username:
            client.username_pw_set(config.username, config.password or None)
        answered = threading.Event()
        refused: list[str] = []

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any):
            if reason.is_failure:
                refused.append(str(reason))
            answered.set()

        client.on_connect = on_connect
        client.connect_timeout = self.timeout
        try:
            client.connect(config.host, config.port, keepalive=30)
        except (OSError, ValueError) as err:
            raise DeliveryError(f"could not reach the MQTT broker at {where}: {err}") from err
        client.loop_start()
        if not answered.wait(self.timeout) or refused:
            client.loop_stop()
            client.disconnect()
            reason = refused[0] if refused else f"no answer within {self.timeout:g} s"
            raise DeliveryError(f"the MQTT broker at {where} refused the connection: {reason}")
        return client

    def _close(self, key: tuple[str, int, str, str]) -> None:
        client = self._clients.pop(key, None)
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def close(self) -> None:
        """Disconnect from every broker."""
        with self._lock:
            for key in list(self._clients):
                self._close(key)
