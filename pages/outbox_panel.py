"""The Line page's outbox: messages waiting, delivered and dead, and the replay buttons.

Not a page. Refreshes itself every few seconds (a fragment), so a manager watching a receiver
come back sees the queue drain. Replays are checked by
:func:`services.line_settings.replay_dead_letters` (managers and admins).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from db.outbound_messages import dead_letters, outbox_counts, recent_messages
from pages.action_feedback import ACTION_ERRORS, flash, show_flashes
from pages.db_session import transaction
from pages.model_jobs_panel import when
from pages.tab_state import load_user
from services.line_settings import replay_dead_letters

REFRESH_SECONDS = 5
SHOWN_DEAD_LETTERS = 20


def replay_clicked(project_id: int, message_ids: list[int] | None) -> None:
    """Button callback: queue these dead letters again (all of the project's when ``None``)."""
    try:
        with transaction() as session:
            queued = replay_dead_letters(session, project_id, message_ids, user=load_user(session))
    except ACTION_ERRORS as err:
        flash(f"Could not replay: {err}", "error")
        return
    flash(f"{queued} message{'s' if queued != 1 else ''} queued again: sent within seconds.")


def _part(payload: dict) -> str:
    station = payload.get("station")
    part = payload.get("part_id") or payload.get("filename") or f"image {payload.get('image_id')}"
    return f"{station}: {part}" if station else str(part)


def _what(event: str, payload: dict) -> str:
    if event == "verdict":
        return f"verdict {payload.get('verdict')}"
    if payload.get("undo"):
        return f"label undone (now {payload.get('label') or 'unlabelled'})"
    return f"label {payload.get('label')}"


@st.fragment(run_every=REFRESH_SECONDS)
def outbox_section(project_id: int) -> None:
    """Counts, the dead letters with their replay buttons, and the latest messages.

    A replay reruns this fragment only, so its message is shown here, not at the page's top.
    """
    show_flashes()
    with transaction() as session:
        counts = outbox_counts(session, project_id)
        dead = [
            {
                "id": row.id,
                "Message": row.id,
                "Channel": row.channel,
                "What": _what(row.event, row.payload),
                "Part": _part(row.payload),
                "Attempts": row.attempts,
                "Last error": row.last_error,
                "Written": when(row.created_at),
            }
            for row in dead_letters(session, project_id, limit=SHOWN_DEAD_LETTERS)
        ]
        recent = [
            {
                "Message": row.id,
                "Channel": row.channel,
                "What": _what(row.event, row.payload),
                "Part": _part(row.payload),
                "State": row.status,
                "Attempts": row.attempts,
                "To": row.target,
                "Delivered": when(row.delivered_at),
            }
            for row in recent_messages(session, project_id)
        ]
    st.subheader("Verdicts out")
    cols = st.columns(3)
    cols[0].metric("Waiting to be sent", counts.pending + counts.sending)
    cols[1].metric("Delivered", counts.delivered)
    cols[2].metric("Dead letters", counts.dead)
    if dead:
        st.warning(
            f"{counts.dead} message{'s' if counts.dead != 1 else ''} could not be delivered after "
            "every retry. Fix the receiver or the settings below, then replay."
        )
        table = pd.DataFrame(dead).drop(columns="id")
        st.dataframe(table, hide_index=True, key="dead_letters_table")
        st.button(
            f"Replay all {counts.dead} dead letters" if counts.dead > 1 else "Replay it",
            key=f"replay_all_{project_id}",
            on_click=replay_clicked,
            args=(project_id, None),
            type="primary",
        )
        for row in dead[:5] if counts.dead > 1 else []:
            st.button(
                f"Replay message {row['id']} ({row['What']}, {row['Part']})",
                key=f"replay_{row['id']}",
                on_click=replay_clicked,
                args=(project_id, [row["id"]]),
            )
    elif recent:
        st.success("No dead letters: every message was delivered or is still being tried.")
    if recent:
        st.caption("Latest messages")
        st.dataframe(pd.DataFrame(recent), hide_index=True, key="outbox_recent_table")
    else:
        st.info("No message yet: switch a webhook or an MQTT broker on below.")
