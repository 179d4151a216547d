"""Line (managers, admins): how the line and Loupe talk: verdicts out, dead letters, hot folder.

Stations post parts to the inspection API (``loupe api``; their keys are on the Users page) or
drop files into the hot folder (``loupe watch``). The outbox (:mod:`pages.outbox_panel`) and the
settings (:mod:`pages.line_settings_panel`) are drawn by their panels.
"""

from __future__ import annotations

import streamlit as st

from pages.action_feedback import show_flashes
from pages.line_settings_panel import hot_folder_form, outbound_form
from pages.outbox_panel import outbox_section
from pages.routing import MANAGERS
from pages.tab_state import require_page_role, require_project

signed_in_user = require_page_role(*MANAGERS)
project_id = require_project()
st.title("Line")
show_flashes()
st.caption(
    "Camera stations post parts to the inspection API (`loupe api`, port 8502, docs at /docs; "
    "admins create station keys on the Users page) or drop files in the hot folder. The line "
    "hears each verdict, and each later human label, through a webhook or MQTT."
)
outbox_section(project_id)
outbound_form(project_id)
hot_folder_form(project_id)
