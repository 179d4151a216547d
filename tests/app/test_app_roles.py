"""Role gating: each role gets only its pages, the services refuse what the UI hides."""

from __future__ import annotations

import pytest
from apptest_support import INSPECTOR, MANAGER, Workbench, signed_in_app
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import db
from db.permissions import PermissionDenied
from db.projects import set_threshold
from db.review_queue import record_review

PAGES = {
    "pages/inspect.py": "Inspect",
    "pages/review.py": "Review",
    "pages/dashboard.py": "Dashboard",
    "pages/models.py": "Models",
    "pages/line.py": "Line",
    "pages/admin.py": "Users",
}
ROLE_PAGES = {
    "inspector": {"pages/inspect.py", "pages/review.py"},
    "manager": {
        "pages/inspect.py",
        "pages/review.py",
        "pages/dashboard.py",
        "pages/models.py",
        "pages/line.py",
    },
    "admin": set(PAGES),
}


def reachable_pages(at: AppTest) -> set[str]:
    """The pages st.navigation registered for this session (switch_page refuses the rest)."""
    found = set()
    for page in PAGES:
        try:
            at.switch_page(page)
        except ValueError:
            continue
        found.add(page)
    return found


@pytest.mark.parametrize("role", ["inspector", "manager", "admin"])
def test_navigation_offers_only_the_pages_of_the_role(workbench: Workbench, role: str) -> None:
    at = signed_in_app(role)

    assert reachable_pages(at) == ROLE_PAGES[role]


def test_a_role_change_takes_effect_on_the_next_run(workbench: Workbench) -> None:
    at = signed_in_app("manager")
    with workbench.factory() as session, session.begin():
        session.get(db.User, workbench.users[MANAGER]).role = "inspector"

    at.run()

    assert at.session_state["user"]["role"] == "inspector"
    assert reachable_pages(at) == ROLE_PAGES["inspector"]


def test_inspector_threshold_change_is_refused_by_the_service(workbench: Workbench) -> None:
    with workbench.factory() as session:
        before = session.get(db.ModelVersion, workbench.version_id)
        threshold, metrics = before.threshold, dict(before.metrics)

    with pytest.raises(PermissionDenied), workbench.factory() as session, session.begin():
        inspector = session.get(db.User, workbench.users[INSPECTOR])
        set_threshold(session, version_id=workbench.version_id, threshold=0.0, user=inspector)

    with workbench.factory() as session:
        after = session.get(db.ModelVersion, workbench.version_id)
        assert after.threshold == threshold
        assert after.metrics == metrics
    at = signed_in_app("inspector")
    with pytest.raises(ValueError):
        at.switch_page("pages/models.py")


def first_passed_prediction_id(workbench: Workbench) -> int:
    """A prediction that passed (verdict good) in the workbench project."""
    with workbench.factory() as session:
        return session.scalars(
            select(db.Prediction.id)
            .where(db.Prediction.image_id.in_(workbench.image_ids.values()))
            .where(db.Prediction.verdict == "good")
            .order_by(db.Prediction.id)
        ).first()


@pytest.mark.parametrize("role", ["manager", "admin"])
def test_every_page_renders_for_managers_and_admins(workbench: Workbench, role: str) -> None:
    # Some reviews first (one of an audit sample), so the dashboard draws every chart.
    with workbench.factory() as session, session.begin():
        manager = session.get(db.User, workbench.users[MANAGER])
        audited = session.get(db.Prediction, first_passed_prediction_id(workbench))
        audited.audit = True
        for name, image_id in workbench.image_ids.items():
            label = "defect" if name.startswith("scratch") else "good"
            record_review(session, image_id=image_id, user=manager, label=label, seconds_spent=3)
    at = signed_in_app(role)

    for page in sorted(ROLE_PAGES[role]):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
        assert [t.value for t in at.title] == [PAGES[page]]
    at.switch_page("pages/dashboard.py").run()
    # Every chart had data to draw; what needs a longer history says so (six reviewed parts
    # hold no second opinion and too few good parts for a drift test), and the shift report
    # waits for its button.
    waiting = [i.value for i in at.info]
    assert len(waiting) == 3, waiting
    assert waiting[0].startswith("No drift test yet:") and "needs 100" in waiting[0]
    assert "labelled by two reviewers" in waiting[1]
    assert "Prepare report" in waiting[2]
    counts = {m.label: m.value for m in at.metric}
    assert counts["Reviewed"] == "6" and counts["Unreviewed"] == "0"
