"""The Line page (managers): where verdicts go, the dead letters and their replay, hot folder."""

from __future__ import annotations

from apptest_support import Workbench, signed_in_app
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import db
from db.models import OutboundMessage
from db.outbound_messages import OUTBOUND_KEY, OutboundConfig, enqueue, mark_failed


def open_line() -> AppTest:
    at = signed_in_app("manager")
    at.switch_page("pages/line.py").run()
    assert not at.exception, at.exception
    return at


def key(workbench: Workbench, name: str) -> str:
    return f"line_{name}_{workbench.project_id}"


def click(at: AppTest, label: str) -> AppTest:
    at.button[[b.label for b in at.button].index(label)].click()
    return at.run()


def outbound(workbench: Workbench) -> OutboundConfig:
    with workbench.factory() as session:
        return OutboundConfig.of(session.get(db.Project, workbench.project_id))


def test_a_manager_points_verdicts_at_a_webhook_and_the_secret_is_never_shown_back(
    workbench: Workbench,
) -> None:
    at = open_line()
    at.toggle(key=key(workbench, "webhook_on")).set_value(True)
    at.text_input(key=key(workbench, "webhook_url")).input("http://mes.local:8080/loupe")
    at.text_input(key=key(workbench, "webhook_secret")).input("s3cret-line-2")
    at = click(at, "Save where verdicts go")
    assert not at.exception, at.exception
    assert any("now goes to the webhook" in s.value for s in at.success)
    stored = outbound(workbench)
    assert stored.webhook.enabled and stored.webhook.url == "http://mes.local:8080/loupe"
    assert stored.webhook.secret == "s3cret-line-2"

    fresh = open_line()  # a new visit: the URL is shown, the secret is not
    assert (
        fresh.text_input(key=key(workbench, "webhook_url")).value == "http://mes.local:8080/loupe"
    )
    assert fresh.text_input(key=key(workbench, "webhook_secret")).value == ""
    fresh = click(fresh, "Save where verdicts go")  # saving again keeps the stored secret
    assert outbound(workbench).webhook.secret == "s3cret-line-2"


def test_a_bad_url_or_topic_is_refused_with_a_message_and_nothing_changes(
    workbench: Workbench,
) -> None:
    at = open_line()
    at.toggle(key=key(workbench, "webhook_on")).set_value(True)
    at.text_input(key=key(workbench, "webhook_url")).input("mes.local/loupe")
    at = click(at, "Save where verdicts go")
    assert [e.value for e in at.error] == [
        "The settings were not saved: A webhook URL starts with http:// or https:// and names a "
        "host: "
        "'mes.local/loupe'."
    ]
    at.text_input(key=key(workbench, "webhook_url")).input("")
    at.toggle(key=key(workbench, "webhook_on")).set_value(False)
    at.toggle(key=key(workbench, "mqtt_on")).set_value(True)
    at.text_input(key=key(workbench, "mqtt_host")).input("broker.local")
    at.text_input(key=key(workbench, "mqtt_topic")).input("plant/#")
    at = click(at, "Save where verdicts go")
    assert "wildcards" in at.error[0].value
    assert outbound(workbench).channels == ()


def test_dead_letters_are_listed_and_replayed(workbench: Workbench) -> None:
    with workbench.factory() as session, session.begin():
        project = session.get(db.Project, workbench.project_id)
        project.settings = {
            **(project.settings or {}),
            OUTBOUND_KEY: {"webhook": {"enabled": True, "url": "http://127.0.0.1:9/x"}},
        }
        session.flush()
        ids = [
            enqueue(session, workbench.project_id, "verdict", {"part_id": part})[0]
            for part in ("A-1", "A-2")
        ]
        for message_id in ids:
            error = "could not reach http://127.0.0.1:9/x: connection refused"
            mark_failed(
                session, message_id, error=error, target="http://127.0.0.1:9/x", retry_at=None
            )
    at = open_line()
    assert any("could not be delivered" in w.value for w in at.warning)
    (dead,) = [d.value for d in at.dataframe if "Last error" in d.value.columns]
    assert sorted(dead["Part"]) == ["A-1", "A-2"]

    at.button(key=f"replay_{ids[0]}").click().run()
    assert not at.exception, at.exception
    assert any("1 message queued again" in s.value for s in at.success)
    at = click(at, "Replay it")
    with workbench.factory() as session:
        states = session.scalars(select(OutboundMessage.status).order_by(OutboundMessage.id))
        assert list(states) == ["pending", "pending"]


def test_a_manager_sets_the_hot_folder(workbench: Workbench, tmp_path, monkeypatch) -> None:
    from services.line_settings import hot_folder_setting
    from services.server_folders import ROOTS_ENV

    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))  # a hot folder lies under a root

    at = open_line()
    at.toggle(key=key(workbench, "hot_on")).set_value(True)
    at.text_input(key=key(workbench, "hot_path")).input("relative/folder")
    at = click(at, "Save the hot folder")
    assert "absolute path" in at.error[0].value
    at.text_input(key=key(workbench, "hot_path")).input("/etc/camera")
    at = click(at, "Save the hot folder")
    assert "No folder /etc/camera under the server folders" in at.error[0].value
    at.text_input(key=key(workbench, "hot_path")).input(str(tmp_path / "camera"))
    at = click(at, "Save the hot folder")
    assert not at.exception, at.exception
    with workbench.factory() as session:
        setting = hot_folder_setting(session.get(db.Project, workbench.project_id))
    assert (setting.enabled, setting.folder) == (True, str(tmp_path / "camera"))
