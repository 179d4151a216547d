"""Audit samples in the workbench: the Review badge, the Dashboard estimate and the share."""

from __future__ import annotations

from apptest_support import INSPECTOR, MANAGER, Workbench, signed_in_app
from desk_presses import desk_payload, label_press, send
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import db
from db.review_queue import record_review, review_queue
from pages.audit_panel import share_input_key
from services.project_settings import audit_setting


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


def stored_share(workbench: Workbench) -> float:
    with workbench.factory() as session:
        return audit_setting(session.get(db.Project, workbench.project_id))


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
        "No audited parts yet: 2.0% of passed parts are drawn for audit" in info.value
        for info in at.info
    )
    assert at.number_input(key=share_input_key(workbench.project_id)).value == 2.0


def test_the_dashboard_shows_the_estimate_its_interval_and_the_chart(
    workbench: Workbench,
) -> None:
    first, second, third = passed_image_ids(workbench)
    mark_audited(workbench, [first, second, third])
    label(workbench, first, INSPECTOR, "good")
    label(workbench, first, MANAGER, "defect")  # two reviewers: the part counts once
    label(workbench, second, INSPECTOR, "good")

    at = open_dashboard()
    assert metric(at, "Miss rate among passed parts") == "50%"
    assert metric(at, "Audited parts labelled") == "2"
    low, high = metric(at, "95% interval").split(" – ")
    assert 0 < float(low.rstrip("%")) < 50 < float(high.rstrip("%")) < 100
    assert any("1 audited part(s) are waiting" in caption.value for caption in at.caption)
    charts = [chart.proto.spec for chart in at.get("plotly_chart")]
    assert any("95% interval" in spec and "Miss rate" in spec for spec in charts)
    assert not any("No audited parts yet" in info.value for info in at.info)


def test_a_manager_changes_the_audit_share(workbench: Workbench) -> None:
    at = open_dashboard()
    at.number_input(key=share_input_key(workbench.project_id)).set_value(5.0)
    at.button(key="save_audit_share").click().run()

    assert not at.exception, at.exception
    assert stored_share(workbench) == 0.05
    assert any("5.0% of the passed parts are now drawn" in s.value for s in at.success)
    assert any("5.0% of passed parts are drawn for audit" in info.value for info in at.info)


def test_an_inspector_cannot_change_the_audit_share(workbench: Workbench) -> None:
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
    at.number_input(key=share_input_key(workbench.project_id)).set_value(20.0)
    at.button(key="save_audit_share").click().run()

    assert not at.exception, at.exception
    assert stored_share(workbench) == 0.02
    assert any(
        "Could not change the audit share: Only managers can change the audit share" in e.value
        for e in at.error
    )
