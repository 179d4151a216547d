"""Station API keys on the Users page (admins): create one (shown once), list, revoke.

Not a page. The keys open the inspection API (:mod:`api`); only their digests are stored
(:mod:`db.api_keys`). A new key is shown in the run right after it was created and never again.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from db.api_keys import create_api_key, list_api_keys, revoke_api_key
from db.models.api_keys import API_KEY_SCOPES
from db.projects import list_projects
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.model_jobs_panel import when
from pages.tab_state import load_user

NEW_KEY = "_api_key_just_created"  # (station, key): shown once, then dropped
SCOPE_TEXT = {"inspect": "inspect (post parts, read results)", "read": "read results only"}


def create_key_clicked() -> None:
    """Form callback: create a key for the chosen project and station; keep it to show once."""
    try:
        with transaction() as session:
            created = create_api_key(
                session,
                project_id=st.session_state.get("api_key_project"),
                station=st.session_state.get("api_key_station") or "",
                scope=st.session_state.get("api_key_scope") or "inspect",
                user=load_user(session),
            )
    except ACTION_ERRORS as err:
        flash(f"Could not create the key: {err}", "error")
        return
    st.session_state[NEW_KEY] = (created.station, created.key)


def revoke_key_clicked(key_id: int, station: str) -> None:
    """Button callback: revoke key ``key_id`` at once."""
    try:
        with transaction() as session:
            revoke_api_key(session, key_id, user=load_user(session))
    except ACTION_ERRORS as err:
        flash(f"Could not revoke the key: {err}", "error")
        return
    flash(f"The key of {station} is revoked: its calls are refused from now on.")


def api_keys_section() -> None:
    """The keys table, the new key (once), revoke buttons and the create form."""
    st.subheader("Station API keys")
    st.caption(
        "Camera stations and MES systems call the inspection API (`loupe api`, port 8502) with "
        "a key. Only a digest of each key is stored: copy a new key when it is shown."
    )
    just_created = st.session_state.pop(NEW_KEY, None)
    if just_created is not None:
        station, key = just_created
        st.success(f"New key for {station}: copy it now, it will not be shown again.")
        st.code(key, language=None)
    with transaction() as session:
        projects = {project.id: project.name for project in list_projects(session)}
        keys = [
            {
                "id": row.id,
                "Project": projects.get(row.project_id, row.project_id),
                "Station": row.station,
                "Scope": row.scope,
                "Key": f"loupe_{row.key_id}_…",
                "State": "active" if row.active else "revoked",
                "Last used": when(row.last_used_at) or "never",
            }
            for row in list_api_keys(session)
        ]
    if keys:
        st.dataframe(pd.DataFrame(keys).drop(columns="id"), hide_index=True, key="api_keys_table")
        for row in keys:
            if row["State"] == "active":
                st.button(
                    f"Revoke the key of {row['Station']} ({row['Project']})",
                    key=f"revoke-key-{row['id']}",
                    on_click=revoke_key_clicked,
                    args=(row["id"], row["Station"]),
                )
    else:
        st.caption("No keys yet.")
    if not projects:
        return
    with st.form("new_api_key", clear_on_submit=True):
        st.selectbox("Project", list(projects), format_func=projects.get, key="api_key_project")
        st.text_input("Station", key="api_key_station", max_chars=64, placeholder="line-2-camera")
        st.selectbox("Scope", API_KEY_SCOPES, format_func=SCOPE_TEXT.get, key="api_key_scope")
        st.form_submit_button("Create key", on_click=create_key_clicked)
