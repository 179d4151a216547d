"""The Dashboard's shift report section (``pages.shift_report_panel``), run on its own.

The Dashboard page calls :func:`pages.shift_report_panel.show_shift_report`; here a one-line
script calls it on the ``workbench`` project, whose six parts were scored today.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from apptest_support import INSPECTOR, Workbench
from streamlit.testing.v1 import AppTest

import db
from db.review_queue import record_review
from pages.shift_report_panel import PreparedReport, widget_key


def panel_script(project_id: int) -> None:
    from pages.shift_report_panel import show_shift_report

    show_shift_report(project_id)


def open_panel(workbench: Workbench) -> AppTest:
    at = AppTest.from_function(panel_script, args=(workbench.project_id,), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def downloads(at: AppTest) -> list[str]:
    return [element.proto.label for element in at.get("download_button")]


def test_the_report_is_prepared_on_demand_and_offered_as_pdf_and_csv(
    workbench: Workbench,
) -> None:
    with workbench.factory() as session, session.begin():
        inspector = session.get(db.User, workbench.users[INSPECTOR])
        for name, label in (("scratch-0.png", "defect"), ("good-0.png", "good")):
            image_id = workbench.image_ids[name]
            record_review(session, image_id=image_id, user=inspector, label=label)
    at = open_panel(workbench)
    assert downloads(at) == []  # nothing is built before the button is pressed
    assert "Prepare report" in at.info[0].value

    at.button(key=widget_key(workbench.project_id, "prepare")).click().run()
    assert not at.exception, at.exception
    assert downloads(at) == ["Download PDF", "Download CSV"]
    prepared: PreparedReport = at.session_state[widget_key(workbench.project_id, "prepared")]
    today = datetime.now(UTC).date()
    assert prepared.stem == f"widgets-{today:%Y-%m-%d}"
    assert prepared.pdf.startswith(b"%PDF")
    parts_table = prepared.csv.decode("utf-8").split("\n\n", 1)[1]
    assert len(parts_table.splitlines()) == 3  # header and two parts
    summary = next(text.value for text in at.markdown if "6 parts scored" in text.value)
    # The line's estimates lead; with two of six parts labelled they cannot be given yet.
    assert summary.startswith(
        "Line's estimated FNR not enough parts, FPR not enough parts (95% intervals)."
    )
    assert "6 parts scored, 2 reviewed" in summary

    # Another shift is another report: the old files are no longer offered.
    at.selectbox(key=widget_key(workbench.project_id, "shift")).set_value("night").run()
    assert downloads(at) == []


def test_an_empty_day_gives_a_report_that_says_so(workbench: Workbench) -> None:
    at = open_panel(workbench)
    at.date_input(key=widget_key(workbench.project_id, "day")).set_value(date(2020, 1, 1)).run()
    at.button(key=widget_key(workbench.project_id, "prepare")).click().run()
    assert not at.exception, at.exception
    assert any("Nothing was scored, reviewed or audited" in text.value for text in at.markdown)
    prepared: PreparedReport = at.session_state[widget_key(workbench.project_id, "prepared")]
    assert prepared.stem == "widgets-2020-01-01"
    assert downloads(at) == ["Download PDF", "Download CSV"]
