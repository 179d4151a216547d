"""A one-line notice on the Dashboard: which days of the demo are a simulated history.

The demo seeds four weeks of inspections and reviews before its first day
(:mod:`services.demo_history`) and marks them in the project's settings; this shows the
marker to managers so that no one mistakes the simulation for a plant's real record, and says
why the history's model changes two thirds through (the recalibration note stored in the
marker, with the history's numbers). Projects without the marker show nothing.
"""

from __future__ import annotations

import streamlit as st

import db
from pages.db_session import session_factory
from services.demo_history_plan import history_marker, simulated_before


def simulated_history_notice(project: db.Project) -> str | None:
    """The notice for a project with a simulated history, or ``None``."""
    first_real_day = simulated_before(project)
    if first_real_day is None:
        return None
    marker = history_marker(project) or {}
    inspectors = ", ".join(marker.get("inspectors") or []) or "simulated inspectors"
    notice = (
        f"Days before {first_real_day.isoformat()} are a simulated history seeded by the demo "
        f"(ELPV ground truth, simulated inspectors: {inspectors}; each cell scored once by the "
        "demo model and shown on several days; passed parts audited with the project's known "
        "odds per decision region)."
    )
    why = marker.get("recalibration")
    if isinstance(why, str) and why:
        notice += f" Its model change is a revision of the same model. {why}"
    return notice


def show_simulated_history_notice(project_id: int) -> None:
    """Show the notice under the page title when the project's early days are simulated.

    Args:
        project_id: The project shown on the page.
    """
    with session_factory()() as session:
        project = session.get(db.Project, project_id)
        notice = None if project is None else simulated_history_notice(project)
    if notice:
        st.info(notice)
