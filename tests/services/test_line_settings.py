"""Line settings: channels checked before they are stored, managers only, hot folder paths."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import Project, Role, User
from db.outbound_messages import MqttConfig, OutboundConfig, WebhookConfig
from db.permissions import PermissionDenied
from services.line_settings import (
    HotFolderSetting,
    check_outbound,
    hot_folder_setting,
    outbound_setting,
    set_hot_folder,
    set_outbound,
)
from services.server_folders import ROOTS_ENV


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (OutboundConfig(webhook=WebhookConfig(True, "")), "Give the webhook's URL"),
        (OutboundConfig(webhook=WebhookConfig(True, "ftp://mes/x")), "http:// or https://"),
        (OutboundConfig(mqtt=MqttConfig(True, "broker", 1883, "")), "host and a topic"),
        (OutboundConfig(mqtt=MqttConfig(True, "b", 1883, "a/+/c")), "wildcards"),
        (OutboundConfig(mqtt=MqttConfig(False, "b", 70000, "t")), "between 1 and 65535"),
        (OutboundConfig(mqtt=MqttConfig(True, "b", 1883, "t", qos=3)), "QoS is 0, 1 or 2"),
        (OutboundConfig(max_attempts=0), "Attempts before a dead letter"),
    ],
)
def test_bad_channels_are_refused_with_a_reason(config: OutboundConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_outbound(config)


def test_a_manager_stores_channels_an_inspector_cannot(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> None:
    manager, inspector = make_user("mia", Role.MANAGER), make_user("ian", Role.INSPECTOR)
    wanted = OutboundConfig(
        webhook=WebhookConfig(True, " https://mes.local/hook ", "k"),
        mqtt=MqttConfig(True, "broker.local", 8883, "/plant/cells/", "loupe", "pw", 2),
        max_attempts=5,
    )
    with session_factory() as session, session.begin(), pytest.raises(PermissionDenied):
        set_outbound(session, project_id, wanted, user=session.get(User, inspector))
    with session_factory() as session, session.begin():
        set_outbound(session, project_id, wanted, user=session.get(User, manager))
    with session_factory() as session:
        stored = outbound_setting(session.get(Project, project_id))
    assert stored.webhook.url == "https://mes.local/hook"
    assert (stored.mqtt.topic, stored.mqtt.port, stored.mqtt.qos) == ("plant/cells", 8883, 2)
    assert stored.channels == ("webhook", "mqtt") and stored.max_attempts == 5
    assert stored.target("mqtt", "review") == "mqtt://broker.local:8883/plant/cells/review"


def test_a_hot_folder_is_an_absolute_path(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_user: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ROOTS_ENV, "/srv")  # the folder must also lie under a root
    manager = make_user("mia", Role.MANAGER)
    with session_factory() as session, session.begin():
        user = session.get(User, manager)
        with pytest.raises(ValueError, match="absolute path"):
            set_hot_folder(session, project_id, HotFolderSetting(True, "line-2"), user=user)
        with pytest.raises(ValueError, match="Give the hot folder's path"):
            set_hot_folder(session, project_id, HotFolderSetting(True, " "), user=user)
        set_hot_folder(session, project_id, HotFolderSetting(True, "/srv/line-2"), user=user)
    with session_factory() as session:
        assert hot_folder_setting(session.get(Project, project_id)) == HotFolderSetting(
            True, "/srv/line-2"
        )
