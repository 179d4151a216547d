"""Sessions in the workbench: ended elsewhere, resumed from the cookie, the throttle's words.

Browsers are in ``tests/e2e/test_browser_sessions.py``; here two ``AppTest`` sessions stand
for two tabs, and the browser's cookie is handed to the app by replacing
:func:`pages.browser_session.browser_cookie`.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

import pytest
from apptest_support import (
    ADMIN,
    ADMIN_PASSWORD,
    INSPECTOR,
    PASSWORD,
    Workbench,
    open_app,
    sign_in,
    signed_in_app,
)
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import db
from db.auth_sessions import redeem_handoff
from db.models import AuthSession, SignInAttempt
from services.session_cookies import cookie_value

LOGIN_KEYS = ["login_name", "login_password"]


def is_signed_out(at: AppTest) -> bool:
    """Whether the run shows the sign-in form and no user."""
    return "user" not in at.session_state and [t.key for t in at.text_input] == LOGIN_KEYS


def cookie_for(workbench: Workbench, at: AppTest) -> str:
    """The cookie the browser of ``at`` gets: the hand-off code in its script, traded."""
    bodies = [h.proto.body for h in at.get("html")]
    codes = [
        html.unescape(m.group(1))
        for body in bodies
        if (m := re.search(r'data-code="([^"]+)"', body))
    ]
    assert len(codes) == 1, bodies
    with workbench.factory() as session, session.begin():
        _, token = redeem_handoff(session, codes[0])
    return cookie_value(token)


def test_the_first_run_after_sign_in_hands_the_browser_its_cookie(workbench: Workbench) -> None:
    at = signed_in_app("inspector")
    assert "_session_handoff" not in at.session_state  # sent once, with the first run
    scripts = [h.proto.body for h in at.get("html")]
    assert any('src="/auth/cookie.js" data-code=' in body for body in scripts), scripts
    at.run()
    assert not any("data-code=" in h.proto.body for h in at.get("html"))


def test_a_sign_out_in_one_tab_signs_the_other_out_on_its_next_run(
    workbench: Workbench, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_browser = signed_in_app("inspector")
    first_tab = signed_in_app("inspector")
    cookie = cookie_for(workbench, first_tab)
    monkeypatch.setattr("pages.browser_session.browser_cookie", lambda: cookie)
    second_tab = open_app().run()  # a new tab of the same browser: signed in by its cookie
    assert not second_tab.exception
    assert second_tab.session_state["user"] == first_tab.session_state["user"]
    session_id = first_tab.session_state["user"]["session_id"]

    first_tab.button(key="sign_out").click().run()
    assert is_signed_out(first_tab)
    assert is_signed_out(second_tab.run())
    assert is_signed_out(open_app().run())  # the cookie no longer opens the session
    assert other_browser.run().session_state["user"]["name"] == INSPECTOR
    with workbench.factory() as session:
        assert session.get(AuthSession, session_id).end_reason == "signed_out"


def test_an_expired_session_signs_the_tab_out(workbench: Workbench) -> None:
    at = signed_in_app("inspector")
    with workbench.factory() as session, session.begin():
        row = session.get(AuthSession, at.session_state["user"]["session_id"])
        row.expires_at = db.utcnow() - timedelta(seconds=1)
    assert is_signed_out(at.run())


def test_a_forged_cookie_signs_nobody_in(
    workbench: Workbench, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pages.browser_session.browser_cookie", lambda: "forged.cookie.value")
    at = open_app().run()
    assert not at.exception and is_signed_out(at)


def test_a_role_change_by_an_admin_signs_the_user_out(workbench: Workbench) -> None:
    inspector = signed_in_app("inspector")
    admin = signed_in_app("admin")
    admin.switch_page("pages/admin.py").run()
    admin.selectbox(key="role_user").set_value(workbench.users[INSPECTOR])
    admin.selectbox(key="role_new").set_value("manager")
    admin.button[[b.label for b in admin.button].index("Change role")].click().run()

    assert not admin.exception
    assert [s.value for s in admin.success] == [
        f"{INSPECTOR} is now manager; their sessions have ended."
    ]
    assert is_signed_out(inspector.run())
    signed_again = sign_in(inspector, INSPECTOR, PASSWORD)
    assert signed_again.session_state["user"]["role"] == "manager"


def test_an_admin_sets_a_password_and_the_old_one_stops_working(
    workbench: Workbench, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOUPE_SIGN_IN_DELAY_SECONDS", "0")  # a retry at once, after a failure
    inspector = signed_in_app("inspector")
    admin = signed_in_app("admin")
    admin.switch_page("pages/admin.py").run()
    admin.selectbox(key="password_user").set_value(workbench.users[INSPECTOR])
    admin.text_input(key="password_new").input("brand-new-secret")
    admin.button[[b.label for b in admin.button].index("Set password")].click().run()

    assert [s.value for s in admin.success] == [
        f"{INSPECTOR} has a new password; their sessions have ended."
    ]
    assert is_signed_out(inspector.run())
    assert "user" not in sign_in(inspector, INSPECTOR, PASSWORD).session_state
    assert sign_in(inspector, INSPECTOR, "brand-new-secret").session_state["user"]


def test_a_user_changes_their_own_password_and_signs_in_again(workbench: Workbench) -> None:
    at = signed_in_app("inspector")
    at.text_input(key="own_password_current").input(PASSWORD)
    at.text_input(key="own_password_new").input("my-new-secret")
    at.text_input(key="own_password_repeat").input("my-new-sekret")
    at.button[[b.label for b in at.button].index("Save the new password")].click().run()
    assert [e.value for e in at.sidebar.error] == [
        "The new passwords do not match; nothing was changed."
    ]
    assert at.session_state["user"]["name"] == INSPECTOR

    at.text_input(key="own_password_current").input(PASSWORD)
    at.text_input(key="own_password_new").input("my-new-secret")
    at.text_input(key="own_password_repeat").input("my-new-secret")
    at.button[[b.label for b in at.button].index("Save the new password")].click().run()

    assert not at.exception
    assert is_signed_out(at)
    assert [s.value for s in at.success] == ["Your password was changed: sign in with the new one."]
    assert sign_in(at, INSPECTOR, "my-new-secret").session_state["user"]["name"] == INSPECTOR


def test_five_failures_lock_the_name_and_the_sixth_attempt_says_until_when(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOUPE_SIGN_IN_DELAY_SECONDS", "0")
    at = open_app().run()
    for _ in range(4):
        at = sign_in(at, ADMIN, "wrong-password")
        assert [e.value for e in at.error] == ["Wrong user name or password."]
        assert not at.warning
    at = sign_in(at, ADMIN, "wrong-password")
    assert [e.value for e in at.error] == ["Wrong user name or password."]
    assert at.warning[0].value.startswith("Too many failed sign-ins: further attempts are refused")

    at = sign_in(at, ADMIN, ADMIN_PASSWORD)
    assert "user" not in at.session_state
    assert at.error[0].value.startswith(
        "Too many failed sign-ins: this attempt was refused without checking the password. "
        "Try again after "
    )
    assert "(in 4 min 5" in at.error[0].value or "(in 5 min 0 s)" in at.error[0].value

    factory = db.make_session_factory(db.create_engine_for_url())
    with factory() as session:
        outcomes = session.scalars(select(SignInAttempt.outcome).order_by(SignInAttempt.id)).all()
    assert outcomes == ["failure"] * 5 + ["refused"]


def test_admins_see_the_sign_in_attempts(workbench: Workbench) -> None:
    sign_in(open_app().run(), INSPECTOR, "wrong-password")
    at = signed_in_app("admin")
    at.switch_page("pages/admin.py").run()

    assert not at.exception
    assert "Sign-in attempts" in [h.value for h in at.subheader]
    captions = [caption.value for caption in at.caption]
    assert any(
        c.startswith("In the last 24 hours: 1 failed, 0 refused while locked") for c in captions
    )
    (table,) = [d.value for d in at.dataframe if "User name" in d.value.columns]
    assert list(table["User name"])[:2] == [ADMIN, INSPECTOR]
    assert list(table["Outcome"])[:2] == ["success", "failure"]
    assert set(table["Client"]) == {"local"}
