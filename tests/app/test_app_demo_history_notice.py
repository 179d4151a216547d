"""The Dashboard's simulated-history notice (``pages.demo_history_notice``), run on its own."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

import db
from db.projects import create_project
from services.demo_history_plan import HISTORY_KEY
from services.project_settings import store_option

WHY = (
    "Recalibrated on day 19 (2026-03-05): audits of passed parts found 5 missed defects of 79 "
    "audited; the threshold was lowered from 39.75 to 35.79 to put missed defects first (FNR "
    "first); expect more good parts sent to a human."
)


def notice_script(project_id: int) -> None:
    from pages.demo_history_notice import show_simulated_history_notice

    show_simulated_history_notice(project_id)


def run_notice(project_id: int) -> AppTest:
    at = AppTest.from_function(notice_script, args=(project_id,), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_notice_names_the_first_real_day_only_on_a_project_with_a_history(
    app_env: Path,
) -> None:
    factory = db.make_session_factory(db.init_db())
    with factory() as session, session.begin():
        plain = create_project(session, name="plain").id
        demo = create_project(session, name="demo").id
        store_option(
            session,
            demo,
            HISTORY_KEY,
            {"simulated_before": "2026-03-16", "inspectors": ["demo.inspector.early"]},
        )
        explained = create_project(session, name="explained").id
        store_option(
            session,
            explained,
            HISTORY_KEY,
            {"simulated_before": "2026-03-16", "recalibration": WHY},
        )
    notice = run_notice(demo).info
    assert len(notice) == 1
    assert "Days before 2026-03-16 are a simulated history seeded by the demo" in notice[0].value
    assert "ELPV ground truth" in notice[0].value and "demo.inspector.early" in notice[0].value
    assert "revision" not in notice[0].value  # a marker without the note says nothing of it
    assert not run_notice(plain).info
    (why,) = run_notice(explained).info
    assert why.value.endswith(f"Its model change is a revision of the same model. {WHY}")
