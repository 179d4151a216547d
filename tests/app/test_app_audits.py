"""Audit samples in the workbench: the Review badge, the Dashboard estimate and the odds."""

from __future__ import annotations

import pytest
from apptest_support import INSPECTOR, MANAGER, Workbench, signed_in_app
from desk_presses import desk_payload, label_press, send
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import db
from adcore.audit import AuditOdds
from db.review_queue import record_review, review_queue
from pages import audit_panel
from pages.audit_panel import odds_input_key
from services.project_settings import audit_odds


def passed_image_ids(workbench: Workbench) -> list[int]:
    return [image_id for name, image_id in workbench.image_ids.items() if name.startswith("good")]


def mark_audited(workbench: Workbench, image_ids: list[int]) -> None:
    """Make these parts audit samples, as if they had been drawn when they passed."""
    with workbench.factory() as session, session.begin():
        for prediction in session.scalars(
            select(db.Prediction).where(db.Prediction.image_id.in_(image_ids))
        ):
            assert prediction.verdict == "good"
            prediction.audit = True


def label(workbench: Workbench, image_id: int, user: str, value: str) -> None:
    with workbench.factory() as session, session.begin():
        reviewer = session.get(db.User, workbench.users[user])
        record_review(session, image_id=image_id, user=reviewer, label=value)


def stored_odds(workbench: Workbench) -> AuditOdds:
    with workbench.factory() as session:
        return audit_odds(session.get(db.Project, workbench.project_id))


def odds_input(at: AppTest, workbench: Workbench, name: str):  # noqa: ANN201 (a test element)
    return at.number_input(key=odds_input_key(workbench.project_id, name))


def open_dashboard() -> AppTest:
    at = signed_in_app("manager")
    at.switch_page("pages/dashboard.py").run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label_text: str) -> str:
    return next(m.value for m in at.metric if m.label == label_text)


def test_the_review_page_marks_an_audit_sample(workbench: Workbench) -> None:
    audited = passed_image_ids(workbench)[0]
    mark_audited(workbench, [audited])
    with workbench.factory() as session:
        queue = review_queue(session, workbench.project_id)
    for item in queue:  # label the flagged parts: the audit sample comes next
        if item.audit:
            break
        label(workbench, item.image_id, INSPECTOR, "defect")

    at = signed_in_app("inspector")
    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception
    part = desk_payload(at)["parts"][0]  # the desk shows the audit badge
    assert (part["id"], part["audit"], part["verdict"]) == (audited, True, "good")

    send(at, [label_press(1, audited, "good")])
    assert not at.exception, at.exception
    assert audited not in [p["id"] for p in desk_payload(at)["parts"]]


def test_the_dashboard_says_when_nothing_is_audited_yet(workbench: Workbench) -> None:
    at = open_dashboard()
    assert any(
        "No part drawn for audit yet: passed parts are drawn with known odds (deep pass "
        "2.0%, near pass 20%, auto-accepted 10%" in info.value
        for info in at.info
    )
    values = {name: odds_input(at, workbench, name).value for name in AuditOdds().to_json()}
    assert values == {"deep_pass": 2.0, "near_pass": 20.0, "auto_accepted": 10.0, "near_band": 10.0}
    assert odds_input(at, workbench, "deep_pass").min == 0.1
    assert any("known, nonzero probability" in c.value for c in at.caption)
    assert not any("turns sampling off" in (n.help or "") for n in at.number_input)


def test_the_dashboard_counts_the_audits_and_weighs_them_into_the_lines_estimate(
    workbench: Workbench,
) -> None:
    first, second, third = passed_image_ids(workbench)
    flagged = [i for name, i in workbench.image_ids.items() if not name.startswith("good")]
    for image_id in flagged:
        label(workbench, image_id, INSPECTOR, "defect")
    at = open_dashboard()
    # The flagged parts are labelled, but nobody looked at a passed part: no miss estimate.
    assert metric(at, "Estimated miss rate (FNR), all parts") == "not enough parts"

    mark_audited(workbench, [first, second, third])
    label(workbench, first, INSPECTOR, "good")
    label(workbench, first, MANAGER, "defect")  # two reviewers: the part counts once
    label(workbench, second, INSPECTOR, "good")
    at = open_dashboard()
    assert any(
        "3 passed or auto-accepted part(s) drawn for audit, 2 labelled, 1 waiting" in c.value
        for c in at.caption
    )

    label(workbench, third, INSPECTOR, "good")
    at = open_dashboard()
    # One audited defect among three audited passed parts, each weighted by its odds: the
    # line misses a share of its defects, with an interval.
    after = metric(at, "Estimated miss rate (FNR), all parts")
    assert after.endswith("%") and float(after.rstrip("%")) > 0
    assert not any("No part drawn for audit yet" in info.value for info in at.info)
    table = next(df.value for df in at.dataframe if "Miss rate (95% interval)" in df.value.columns)
    assert table["Model"].tolist() == ["v1"]
    assert table["Miss rate (95% interval)"].iloc[0].endswith("%)")


def test_a_manager_changes_the_audit_odds(workbench: Workbench) -> None:
    at = open_dashboard()
    odds_input(at, workbench, "deep_pass").set_value(5.0)
    odds_input(at, workbench, "near_pass").set_value(30.0)
    odds_input(at, workbench, "auto_accepted").set_value(0.5)
    odds_input(at, workbench, "near_band").set_value(20.0)
    at.button(key="save_audit_odds").click().run()

    assert not at.exception, at.exception
    assert stored_odds(workbench) == AuditOdds(0.05, 0.3, 0.005, 0.2)
    assert any(
        "Audit odds saved: deep pass 5.0%, near pass 30%, auto-accepted 0.5%; near band 20%"
        in s.value
        for s in at.success
    )
    assert any("deep pass 5.0%, near pass 30%" in info.value for info in at.info)


def test_a_zero_audit_odds_is_refused_and_nothing_changes(
    workbench: Workbench, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_dashboard()
    # The browser refuses a value below the input's minimum (0.1%) with its own message.
    assert odds_input(at, workbench, "auto_accepted").min == 0.1
    # Let a zero past the input, as if the browser did not check it: the service refuses it.
    monkeypatch.setattr(audit_panel, "MIN_AUDIT_ODDS", 0.0)
    at.run()
    assert odds_input(at, workbench, "auto_accepted").min == 0.0
    odds_input(at, workbench, "near_pass").set_value(30.0)
    odds_input(at, workbench, "auto_accepted").set_value(0.0)
    at.button(key="save_audit_odds").click().run()

    assert not at.exception, at.exception
    assert stored_odds(workbench) == AuditOdds()  # not even the valid near-pass change
    assert any(
        "Could not change the audit odds: The audit odds of auto accepted must be between "
        "0.1% and 100% (never zero" in e.value
        for e in at.error
    )
    assert odds_input(at, workbench, "auto_accepted").value == 10.0  # the stored odds again
    assert odds_input(at, workbench, "near_pass").value == 20.0


def test_an_inspector_cannot_change_the_audit_odds(workbench: Workbench) -> None:
    inspector = signed_in_app("inspector")
    try:
        inspector.switch_page("pages/dashboard.py")
    except ValueError:
        pass  # the Dashboard is not among an inspector's pages
    else:
        raise AssertionError("an inspector reached the Dashboard")

    # A manager demoted while the page is open: the service refuses the change itself.
    at = open_dashboard()
    with workbench.factory() as session, session.begin():
        session.get(db.User, workbench.users[MANAGER]).role = "inspector"
    odds_input(at, workbench, "deep_pass").set_value(20.0)
    at.button(key="save_audit_odds").click().run()

    assert not at.exception, at.exception
    assert stored_odds(workbench) == AuditOdds()
    assert any(
        "Could not change the audit odds: Only managers can change the audit odds" in e.value
        for e in at.error
    )


def test_the_dashboard_heads_with_the_lines_estimated_rates_and_says_reviews_cannot_see_misses(
    workbench: Workbench,
) -> None:
    at = open_dashboard()
    labels = {m.label for m in at.metric}
    assert {
        "Estimated miss rate (FNR), all parts",
        "Estimated false alarms (FPR), all parts",
        "Estimated miss rate (FNR), active model v1",
    } <= labels
    assert any("cannot see missed defects" in c.value for c in at.caption)
    assert any(s.value == "The line's estimated miss rate and false alarms" for s in at.subheader)
