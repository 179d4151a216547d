"""Users (admins only): list, create and deactivate accounts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import db
from db.users import add_user, list_users, set_user_active
from pages.common import (
    ACTION_ERRORS,
    ADMINS,
    ALL_ROLES,
    flash,
    load_user,
    require_page_role,
    show_flashes,
    signed_in,
    transaction,
)


def create_clicked() -> None:
    """Button callback: create the user from the form fields and flash the outcome."""
    name = (st.session_state.get("new_user_name") or "").strip()
    try:
        with transaction() as session:
            add_user(
                session,
                load_user(session),
                name,
                st.session_state.get("new_user_password") or "",
                st.session_state.get("new_user_role") or db.Role.INSPECTOR.value,
            )
    except ACTION_ERRORS as err:
        flash(f"Could not create the user: {err}", "error")
        return
    flash(f"Created user {name!r}.")


def set_active_clicked(user_id: int, active: bool) -> None:
    """Button callback: activate or deactivate ``user_id`` and flash the outcome."""
    try:
        with transaction() as session:
            name = set_user_active(session, load_user(session), user_id, active).name
    except ACTION_ERRORS as err:
        flash(f"Could not change the user: {err}", "error")
        return
    flash(f"{name} is now {'active' if active else 'deactivated'}.")


require_page_role(*ADMINS)
st.title("Users")
show_flashes()

with transaction() as session:
    users = [
        {"id": u.id, "Name": u.name, "Role": u.role, "Active": u.active, "Created": u.created_at}
        for u in list_users(session)
    ]

st.dataframe(pd.DataFrame(users).drop(columns="id"), hide_index=True, key="users_table")

st.subheader("Deactivate or reactivate")
for user in users:
    if user["id"] == signed_in()["id"]:
        continue  # an admin cannot lock themselves out
    label = f"Deactivate {user['Name']}" if user["Active"] else f"Reactivate {user['Name']}"
    st.button(
        label,
        key=f"active-{user['id']}",
        on_click=set_active_clicked,
        args=(user["id"], not user["Active"]),
    )

st.subheader("Create a user")
with st.form("new_user", clear_on_submit=True):
    st.text_input("User name", key="new_user_name", max_chars=64)
    st.text_input("Password (at least 8 characters)", type="password", key="new_user_password")
    st.selectbox("Role", ALL_ROLES, key="new_user_role")
    st.form_submit_button("Create user", type="primary", on_click=create_clicked)
