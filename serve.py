"""Loupe's web server: the Streamlit workbench (``app.py``) and its session-cookie routes.

Run with ``streamlit run serve.py`` (what ``make demo`` does; the usual ``--server.*`` flags
apply). Streamlit finds ``app`` below and serves ``app.py`` through ``st.App``, adding the
routes of :mod:`loupe.web` on the same host and port: the sign-in page trades a one-time code
there for the HttpOnly session cookie, so a reload or a new tab stays signed in. Every HTTP
response carries ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and the
workbench's content security policy (:mod:`api.security_headers`).
``streamlit run app.py`` still serves the workbench, without those routes and headers: a
sign-in then lasts only as long as the browser tab.
"""

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from api.security_headers import WORKBENCH_POLICY, SecurityHeaders
from loupe.web import cookie_routes

app = st.App(
    Path(__file__).with_name("app.py"),
    routes=cookie_routes(),
    middleware=[Middleware(SecurityHeaders, policy=WORKBENCH_POLICY)],
)
