"""Sign-in page: the only page a signed-out visitor sees."""

from __future__ import annotations

import streamlit as st

import db
from pages.common import ensure_routed, sign_in, transaction

ensure_routed()
st.title("Loupe")
st.caption("Visual inspection workbench. Please sign in.")

with st.form("login"):
    name = st.text_input("User name", key="login_name")
    password = st.text_input("Password", type="password", key="login_password")
    submitted = st.form_submit_button("Sign in", type="primary")

if submitted:
    with transaction() as session:  # commits a password re-hash, if argon2 asks for one
        user = db.verify_password(session, name, password)
        if user is not None:
            sign_in(user)
    if user is None:
        st.error("Wrong user name or password.")
    else:
        st.rerun()
