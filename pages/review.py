"""Review: the project's review queue, one part at a time; Good / Defect / Undo (G / D / U).

The part, its map and the keys are the review desk (:mod:`pages.review_desk`): the next part
appears the moment a key is pressed, and each press is recorded once against the part that
was on screen. Under it, the explanation panels of the part on screen fill in when ready: they
are drawn for the part the desk says it shows, in a container keyed by that part, and the desk
shows no other part's panels ("Explaining <name>…" until its own are there).
"""

from __future__ import annotations

import streamlit as st

from pages.action_feedback import show_flashes
from pages.explanation_panels import show_explanations
from pages.page_tasks import show_instant_learning
from pages.review_desk import panels_key, review_desk
from pages.review_options_panel import review_options_panel
from pages.routing import ALL_ROLES
from pages.tab_state import require_page_role, require_project

require_page_role(*ALL_ROLES)
project_id = require_project()
st.title("Review")
show_flashes()
show_instant_learning()
shown = review_desk(project_id)
if shown is not None:
    with st.container(key=panels_key(shown.image_id)):
        show_explanations(shown.prediction_id)
review_options_panel(project_id)
