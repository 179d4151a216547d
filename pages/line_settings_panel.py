"""The Line page's settings: where verdicts go (webhook, MQTT) and the project's hot folder.

Not a page. Stored secrets (the webhook's signing secret, the broker's password) are never
shown back: a blank field keeps them, the "forget" box removes them. Every change is checked
by :mod:`services.line_settings` (managers and admins).
"""

from __future__ import annotations

import streamlit as st

from db.hot_folder_files import hot_folder_counts, recent_refusals
from db.outbound_messages import MqttConfig, OutboundConfig, WebhookConfig
from db.projects import get_project
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.tab_state import load_user
from services.line_settings import (
    MAX_ATTEMPTS_LIMIT,
    HotFolderSetting,
    hot_folder_setting,
    outbound_setting,
    set_hot_folder,
    set_outbound,
)


def _key(project_id: int, name: str) -> str:
    return f"line_{name}_{project_id}"


def _value(project_id: int, name: str, default: object = None) -> object:
    return st.session_state.get(_key(project_id, name), default)


def outbound_saved(project_id: int) -> None:
    """Form callback: store the channels as entered (blank secrets keep the stored ones)."""
    text = lambda name: str(_value(project_id, name) or "").strip()  # noqa: E731
    try:
        with transaction() as session:
            stored = outbound_setting(get_project(session, project_id))
            secret = text("webhook_secret") or stored.webhook.secret
            password = text("mqtt_password") or stored.mqtt.password
            if _value(project_id, "forget_secrets"):
                secret = password = ""
            wanted = OutboundConfig(
                webhook=WebhookConfig(
                    bool(_value(project_id, "webhook_on")), text("webhook_url"), secret
                ),
                mqtt=MqttConfig(
                    enabled=bool(_value(project_id, "mqtt_on")),
                    host=text("mqtt_host"),
                    port=int(_value(project_id, "mqtt_port", 1883) or 1883),
                    topic=text("mqtt_topic"),
                    username=text("mqtt_username"),
                    password=password,
                    qos=int(_value(project_id, "mqtt_qos", 1)),
                ),
                max_attempts=int(_value(project_id, "max_attempts", 8) or 8),
            )
            checked = set_outbound(session, project_id, wanted, user=load_user(session))
    except ACTION_ERRORS as err:
        flash(f"The settings were not saved: {err}", "error")
        return
    on = [name for name in ("webhook", "MQTT") if getattr(checked, name.lower()).enabled]
    flash(
        f"Saved: each verdict and label now goes to the {' and the '.join(on)}."
        if on
        else "Saved: no verdict goes out (both channels are off)."
    )


def outbound_form(project_id: int) -> None:
    """The webhook and MQTT settings of the project."""
    with transaction() as session:
        config = outbound_setting(get_project(session, project_id))
    st.subheader("Where verdicts go")
    st.caption(
        "Each new part's verdict, and each label an inspector gives later, is sent as JSON. "
        "Failed sends are retried with a doubling wait (2 s, 4 s, …); after the last attempt "
        "the message becomes a dead letter above."
    )
    with st.form(f"line_outbound_{project_id}"):
        st.markdown("**Webhook** (an HTTP POST per message)")
        st.toggle(
            "Send to a webhook", value=config.webhook.enabled, key=_key(project_id, "webhook_on")
        )
        st.text_input(
            "Webhook URL",
            value=config.webhook.url,
            placeholder="https://mes.example/loupe",
            key=_key(project_id, "webhook_url"),
        )
        st.text_input(
            "Signing secret (blank keeps the stored one)",
            type="password",
            placeholder="stored" if config.webhook.secret else "none",
            key=_key(project_id, "webhook_secret"),
            help="Each post then carries X-Loupe-Signature: sha256=<HMAC-SHA256 of the body>.",
        )
        st.markdown("**MQTT** (a publish per message to `<topic>/verdict` or `<topic>/review`)")
        st.toggle(
            "Publish to an MQTT broker", value=config.mqtt.enabled, key=_key(project_id, "mqtt_on")
        )
        cols = st.columns([3, 1])
        cols[0].text_input("Broker host", value=config.mqtt.host, key=_key(project_id, "mqtt_host"))
        cols[1].number_input(
            "Port", 1, 65535, value=config.mqtt.port, key=_key(project_id, "mqtt_port")
        )
        st.text_input(
            "Topic",
            value=config.mqtt.topic,
            placeholder="plant/line-2/cells",
            key=_key(project_id, "mqtt_topic"),
        )
        cols = st.columns(3)
        cols[0].text_input(
            "User", value=config.mqtt.username, key=_key(project_id, "mqtt_username")
        )
        cols[1].text_input(
            "Password (blank keeps)",
            type="password",
            placeholder="stored" if config.mqtt.password else "none",
            key=_key(project_id, "mqtt_password"),
        )
        cols[2].selectbox("QoS", (0, 1, 2), index=config.mqtt.qos, key=_key(project_id, "mqtt_qos"))
        st.number_input(
            "Attempts before a dead letter",
            1,
            MAX_ATTEMPTS_LIMIT,
            value=config.max_attempts,
            key=_key(project_id, "max_attempts"),
        )
        st.checkbox("Forget the stored secret and password", key=_key(project_id, "forget_secrets"))
        st.form_submit_button("Save where verdicts go", on_click=outbound_saved, args=(project_id,))


def hot_folder_saved(project_id: int) -> None:
    """Form callback: store the hot folder as entered."""
    wanted = HotFolderSetting(
        bool(_value(project_id, "hot_on")), str(_value(project_id, "hot_path") or "").strip()
    )
    try:
        with transaction() as session:
            stored = set_hot_folder(session, project_id, wanted, user=load_user(session))
    except ACTION_ERRORS as err:
        flash(f"The hot folder was not saved: {err}", "error")
        return
    if stored.enabled:
        flash(f"Hot folder saved: `loupe watch` takes parts from {stored.folder} (restart it).")
    else:
        flash("Hot folder switched off: `loupe watch` leaves this project alone.", "info")


def hot_folder_form(project_id: int) -> None:
    """The project's hot folder, and what its watcher took in."""
    with transaction() as session:
        setting = hot_folder_setting(get_project(session, project_id))
        counts = hot_folder_counts(session, project_id)
        refusals = [
            (row.name, row.reason, row.finished_at)
            for row in recent_refusals(session, project_id, limit=5)
        ]
    st.subheader("Hot folder")
    st.caption(
        "A camera that writes files: each image dropped in the folder is scored once, then moved "
        "to processed/ or refused/ (with a .reason.txt). Run `loupe watch` on the server."
    )
    with st.form(f"line_hot_folder_{project_id}"):
        st.toggle(
            "Take parts from a hot folder", value=setting.enabled, key=_key(project_id, "hot_on")
        )
        st.text_input(
            "Folder on the server (absolute path)",
            value=setting.folder,
            placeholder="/srv/line-2/camera",
            key=_key(project_id, "hot_path"),
        )
        st.form_submit_button("Save the hot folder", on_click=hot_folder_saved, args=(project_id,))
    if counts:
        cols = st.columns(3)
        cols[0].metric("Processed", counts.get("processed", 0))
        cols[1].metric("Refused", counts.get("refused", 0))
        cols[2].metric("Being scored", counts.get("scoring", 0))
    for name, reason, when in refusals:
        st.caption(
            f"Refused {name} ({when:%Y-%m-%d %H:%M} UTC): {reason}"
            if when
            else f"Refused {name}: {reason}"
        )
