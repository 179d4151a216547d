"""The Inspect page's options for managers (not a page): inspectors scoring server folders."""

from __future__ import annotations

import streamlit as st

from db.projects import get_project
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.routing import MANAGERS
from pages.tab_state import load_user, signed_in
from services.inspect_options import InspectOptions, inspect_options, set_inspect_options
from services.server_folders import ServerFolderError, describe_roots

SERVER_FOLDER_TOGGLE_KEY = "inspect_server_folder_toggle"


def toggle_server_folders(project_id: int) -> None:
    """Toggle callback: store the option (the service checks the role)."""
    wanted = bool(st.session_state.get(SERVER_FOLDER_TOGGLE_KEY))
    try:
        with transaction() as session:
            set_inspect_options(
                session,
                project_id,
                InspectOptions(inspectors_score_server_folders=wanted),
                user=load_user(session),
            )
    except ACTION_ERRORS as err:
        st.session_state.pop(SERVER_FOLDER_TOGGLE_KEY, None)
        flash(f"Could not change the Inspect options: {err}", "error")
        return
    flash(
        "Inspectors can now score a server folder."
        if wanted
        else "Only managers and admins score server folders now.",
        "info",
    )


def inspect_options_panel(project_id: int) -> None:
    """Managers: the project's Inspect options; others see nothing."""
    user = signed_in()
    if user is None or user["role"] not in MANAGERS:
        return
    with transaction() as session:
        project = get_project(session, project_id)
        current = (
            inspect_options(project).inspectors_score_server_folders
            if project is not None
            else False
        )
    try:
        roots = describe_roots()
    except ServerFolderError as err:  # a relative root in the environment: say so
        roots = str(err)
    with st.expander("Inspect options (managers)"):
        st.toggle(
            "Let inspectors score a server folder",
            value=current,
            key=SERVER_FOLDER_TOGGLE_KEY,
            on_change=toggle_server_folders,
            args=(project_id,),
            help="Server folders are read with the server's rights, only under the folders an "
            "admin allows (LOUPE_SERVER_FOLDER_ROOTS).",
        )
        st.caption(f"Server folders this server may read: {roots}")
