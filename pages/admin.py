"""Users (admins only): accounts, roles and passwords; station API keys; sign-in attempts.

A deactivation, a role change or a new password ends the account's sessions: its browsers are
signed out on their next action. The sign-in audit trail closes the page.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import db
from db.auth_sessions import live_session_counts
from db.users import add_user, list_users, reset_password, set_user_active, set_user_role
from pages.action_feedback import ACTION_ERRORS, flash, show_flashes
from pages.api_keys_panel import api_keys_section
from pages.db_session import transaction
from pages.routing import ADMINS, ALL_ROLES
from pages.sign_in_audit_panel import sign_in_audit_section
from pages.tab_state import load_user, require_page_role, signed_in


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


def role_clicked() -> None:
    """Form callback: give the chosen user the chosen role and flash the outcome."""
    user_id = st.session_state.get("role_user")
    role = st.session_state.get("role_new")
    try:
        with transaction() as session:
            name = set_user_role(session, load_user(session), user_id, role).name
    except ACTION_ERRORS as err:
        flash(f"Could not change the role: {err}", "error")
        return
    flash(f"{name} is now {role}; their sessions have ended.")


def password_clicked() -> None:
    """Form callback: set the chosen user's password and flash the outcome."""
    user_id = st.session_state.get("password_user")
    try:
        with transaction() as session:
            name = reset_password(
                session, load_user(session), user_id, st.session_state.get("password_new") or ""
            ).name
    except ACTION_ERRORS as err:
        flash(f"Could not set the password: {err}", "error")
        return
    flash(f"{name} has a new password; their sessions have ended.")


require_page_role(*ADMINS)
st.title("Users")
show_flashes()

with transaction() as session:
    sessions = live_session_counts(session)
    users = [
        {
            "id": u.id,
            "Name": u.name,
            "Role": u.role,
            "Active": u.active,
            "Signed in (browsers)": sessions.get(u.id, 0),
            "Created": u.created_at,
        }
        for u in list_users(session)
    ]
others = {user["id"]: user["Name"] for user in users if user["id"] != signed_in()["id"]}

st.dataframe(pd.DataFrame(users).drop(columns="id"), hide_index=True, key="users_table")

st.subheader("Deactivate or reactivate")
for user in users:
    if user["id"] not in others:
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

if others:
    st.subheader("Change a role or set a password")
    role_column, password_column = st.columns(2)
    with role_column.form("change_role"):
        st.selectbox("User", list(others), format_func=others.get, key="role_user")
        st.selectbox("New role", ALL_ROLES, key="role_new")
        st.form_submit_button("Change role", on_click=role_clicked)
    with password_column.form("set_password", clear_on_submit=True):
        st.selectbox("User", list(others), format_func=others.get, key="password_user")
        st.text_input("New password (at least 8 characters)", type="password", key="password_new")
        st.form_submit_button("Set password", on_click=password_clicked)

api_keys_section()
sign_in_audit_section()
