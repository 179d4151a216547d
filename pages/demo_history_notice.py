"""A one-line notice on the Dashboard: which days of the demo are a simulated history.

The demo seeds four weeks of inspections and reviews before its first day
(:mod:`services.demo_history`) and marks them in the project's settings; this shows the
marker to managers so that no one mistakes the simulation for a plant's real record. Projects
without the marker show nothing.
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
    return (
        f"Days before {first_real_day.isoformat()} are a simulated history seeded by the demo "
        f"(ELPV ground truth, simulated inspectors: {inspectors}; each cell scored once by the "
        "demo model and shown on several days; version 2 is the same model with a "
        "recalibrated threshold)."
    )


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
