"""A project's line integration: where verdicts go out (webhook, MQTT) and its hot folder.

Both are options in ``projects.settings`` that managers (and admins) change, checked here and
not only in the UI:

* ``outbound``: the webhook and MQTT channels and the attempts before a dead letter
  (:class:`db.outbound_messages.OutboundConfig`);
* ``hot_folder``: ``{"enabled": bool, "folder": <absolute path on the server>}``, the folder
  ``loupe watch`` takes parts from for this project (see :mod:`services.hot_folder`), under
  the server folder roots (:mod:`services.server_folders`).

Replaying dead letters is here too: it is a manager's action on the project's outbox.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from db.models import Project, User
from db.outbound_messages import OUTBOUND_KEY, MqttConfig, OutboundConfig, WebhookConfig, replay
from db.permissions import CAN_MANAGE_MODELS, require_session_role
from services.project_settings import store_option
from services.server_folders import allowed_folder

HOT_FOLDER_KEY = "hot_folder"
MAX_ATTEMPTS_LIMIT = 50
MAX_TEXT = 512
MQTT_WILDCARDS = ("+", "#")


def _require_manager(session: Session, user: User, what: str) -> None:
    require_session_role(session, user, *CAN_MANAGE_MODELS, message=f"Only managers can {what}.")


# --------------------------------------------------------------------------- verdicts out


def check_outbound(config: OutboundConfig) -> OutboundConfig:
    """Check a channel configuration and return it cleaned (spaces trimmed).

    Raises:
        ValueError: A URL that is not http(s), an enabled broker without host or topic, a topic
            with MQTT wildcards, a port, QoS or attempt count out of range, or text too long.
    """
    url = config.webhook.url.strip()
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"A webhook URL starts with http:// or https:// and names a host: {url!r}."
            )
    if config.webhook.enabled and not url:
        raise ValueError("Give the webhook's URL, or switch the webhook off.")
    mqtt = config.mqtt
    host, topic = mqtt.host.strip(), mqtt.topic.strip().strip("/")
    if mqtt.enabled and not (host and topic):
        raise ValueError("Give the MQTT broker's host and a topic, or switch MQTT off.")
    if any(sign in topic for sign in MQTT_WILDCARDS):
        raise ValueError("An MQTT topic to publish to cannot hold the wildcards + or #.")
    if not 1 <= int(mqtt.port) <= 65535:
        raise ValueError(f"An MQTT port is between 1 and 65535, got {mqtt.port}.")
    if int(mqtt.qos) not in (0, 1, 2):
        raise ValueError(f"MQTT QoS is 0, 1 or 2, got {mqtt.qos}.")
    if not 1 <= int(config.max_attempts) <= MAX_ATTEMPTS_LIMIT:
        raise ValueError(f"Attempts before a dead letter: 1 to {MAX_ATTEMPTS_LIMIT}.")
    texts = (url, config.webhook.secret, host, topic, mqtt.username, mqtt.password)
    if any(len(text) > MAX_TEXT for text in texts):
        raise ValueError(f"A URL, host, topic, user, secret or password is over {MAX_TEXT} chars.")
    return OutboundConfig(
        webhook=WebhookConfig(
            enabled=config.webhook.enabled, url=url, secret=config.webhook.secret
        ),
        mqtt=MqttConfig(
            enabled=mqtt.enabled,
            host=host,
            port=int(mqtt.port),
            topic=topic,
            username=mqtt.username.strip(),
            password=mqtt.password,
            qos=int(mqtt.qos),
        ),
        max_attempts=int(config.max_attempts),
    )


def outbound_setting(project: Project) -> OutboundConfig:
    """The project's channels (both off by default)."""
    return OutboundConfig.of(project)


def set_outbound(
    session: Session, project_id: int, config: OutboundConfig, *, user: User
) -> OutboundConfig:
    """Change where a project's verdicts and labels go (managers and admins; caller commits).

    Messages already written keep their channel; their retries and replays use the new
    settings (a corrected URL fixes them).

    Raises:
        PermissionDenied: If the user may not manage the project.
        LookupError: If the project does not exist.
        ValueError: See :func:`check_outbound` (nothing changes).
    """
    _require_manager(session, user, "change where verdicts are sent")
    checked = check_outbound(config)
    store_option(session, project_id, OUTBOUND_KEY, checked.to_json())
    return checked


def replay_dead_letters(
    session: Session, project_id: int, message_ids: Iterable[int] | None = None, *, user: User
) -> int:
    """Queue dead letters again from their first attempt (all of the project's when no ids).

    Returns:
        How many were queued (the caller commits).

    Raises:
        PermissionDenied: If the user may not manage the project.
    """
    _require_manager(session, user, "replay undelivered messages")
    return replay(session, project_id, message_ids)


# --------------------------------------------------------------------------- hot folder


@dataclass(frozen=True)
class HotFolderSetting:
    """A project's hot folder: ``loupe watch`` takes parts from ``folder`` when enabled."""

    enabled: bool = False
    folder: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON stored under ``settings["hot_folder"]``."""
        return {"enabled": self.enabled, "folder": self.folder}


def hot_folder_setting(project: Project) -> HotFolderSetting:
    """The project's hot folder (off, no folder, by default)."""
    stored = (project.settings or {}).get(HOT_FOLDER_KEY) or {}
    return HotFolderSetting(bool(stored.get("enabled")), str(stored.get("folder") or ""))


def set_hot_folder(
    session: Session, project_id: int, setting: HotFolderSetting, *, user: User
) -> HotFolderSetting:
    """Change a project's hot folder (managers and admins; the caller commits).

    The folder must be an absolute path; an enabled one must lie under the server folder roots
    (:mod:`services.server_folders`; switching a folder off is always possible). It is created
    by the watcher if it does not exist yet. ``loupe watch`` picks the change up when it is
    next started (and checks the roots again).

    Raises:
        PermissionDenied: If the user may not manage the project.
        ValueError: A relative path, or an enabled folder without a path (nothing changes).
        ServerFolderError: An enabled folder outside the roots, with the message a missing
            folder gets (nothing changes).
    """
    _require_manager(session, user, "change the hot folder")
    folder = setting.folder.strip()
    if folder and not Path(folder).expanduser().is_absolute():
        raise ValueError(f"Give the hot folder as an absolute path on the server, got {folder!r}.")
    if setting.enabled and not folder:
        raise ValueError("Give the hot folder's path, or switch it off.")
    if len(folder) > MAX_TEXT * 2:
        raise ValueError("The hot folder's path is too long.")
    if setting.enabled:  # switching off always works, even for a folder set before the roots
        allowed_folder(folder, must_exist=False)
    stored = HotFolderSetting(setting.enabled, str(Path(folder).expanduser()) if folder else "")
    store_option(session, project_id, HOT_FOLDER_KEY, stored.to_json())
    return stored
