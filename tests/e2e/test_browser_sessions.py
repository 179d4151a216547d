"""Sessions in real headless Chromium: reloads, new tabs, sign-out, the sign-in lock.

Reloads and new tabs stay signed in, a sign-out reaches every tab, and failed sign-ins lock
the name (recorded for admins).

The server's sign-in lock is 15 s here (``LOUPE_SIGN_IN_LOCK_SECONDS``) so the test can wait
for its end, and the growing delay between failures is off so five wrong passwords can be
typed in a row; the rule itself (1, 2, 4, 8 s, 5 minutes) is tested in
``tests/services/test_sign_in.py``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
from e2e_seed import ADMIN_PASSWORD, INSPECTOR, INSPECTOR_PASSWORD, Served
from live_app import open_browser, sign_in
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

import db
from db.models import AuthSession, SignInAttempt

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOCK_SECONDS = 15
SERVER_ENV = {"LOUPE_SIGN_IN_LOCK_SECONDS": str(LOCK_SECONDS), "LOUPE_SIGN_IN_DELAY_SECONDS": "0"}
COOKIE = "loupe_session"
LOCKED_NAME, LOCKED_PASSWORD = "lena", "lena-right-password"


@pytest.fixture
def engine(served: Served) -> Iterator[Engine]:
    """An engine on the served workbench's database."""
    engine = create_engine(served.database_url)
    yield engine
    engine.dispose()


def session_cookie(page: object, timeout: float = 30.0) -> dict:
    """The browser's session cookie, once the page has fetched it after signing in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c for c in page.context.cookies() if c["name"] == COOKIE]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError("the browser never got its session cookie")


def shows_sign_in_form(page: object) -> None:
    """Wait until the page shows the sign-in form (and no sign-out button)."""
    page.get_by_role("button", name="Sign in").wait_for()
    # The run that drew the form may still be replacing the signed-in page: wait until the
    # sign-out button is gone (it must go, within 10 s) rather than counting at once.
    page.get_by_role("button", name="Sign out").wait_for(state="detached", timeout=10_000)


def submit_sign_in(page: object, name: str, password: str) -> None:
    """Fill in and submit the sign-in form that is on screen."""
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def recorded_attempts(engine: Engine, name: str, count: int, timeout: float = 30.0) -> list:
    """The recorded sign-in attempts for ``name``, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        with Session(engine) as session:
            attempts = session.scalars(
                select(SignInAttempt)
                .where(SignInAttempt.user_name == name)
                .order_by(SignInAttempt.id)
            ).all()
        if len(attempts) >= count or time.monotonic() > deadline:
            return list(attempts)
        time.sleep(0.1)


def test_reloads_and_new_tabs_stay_signed_in_and_sign_out_reaches_the_other_tab(
    served: Served, engine: Engine
) -> None:
    with open_browser() as page:
        sign_in(page, served.app.url, INSPECTOR, INSPECTOR_PASSWORD)
        cookie = session_cookie(page)
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert cookie["expires"] > time.time() + 11 * 3600  # 12 h by default

        page.reload()
        page.get_by_role("button", name="Sign out").wait_for()
        assert page.get_by_role("textbox", name="Password").count() == 0

        other_tab = page.context.new_page()
        other_tab.goto(f"{served.app.url}/review")  # a link to a page, in a new tab
        other_tab.get_by_role("button", name="Sign out").wait_for()
        other_tab.get_by_role("heading", name="Review").first.wait_for()

        page.get_by_role("button", name="Sign out").click()
        shows_sign_in_form(page)

        # Its next action shows the sign-in form; the page may also rerun by itself first (a
        # polling fragment), which ends the same way, so the link may be gone already.
        with contextlib.suppress(PlaywrightTimeoutError):
            other_tab.get_by_role("link", name="Inspect").click(timeout=5_000)
        shows_sign_in_form(other_tab)
        other_tab.reload()  # and the cookie no longer signs anyone in
        shows_sign_in_form(other_tab)

    with Session(engine) as session:
        user = session.scalars(select(db.User).where(db.User.name == INSPECTOR)).one()
        ended = session.scalars(select(AuthSession).where(AuthSession.user_id == user.id)).all()
        assert [s.end_reason for s in ended] == ["signed_out"], served.app.log()


def test_after_five_wrong_passwords_the_right_one_is_refused_until_the_lock_ends(
    served: Served, engine: Engine
) -> None:
    with Session(engine) as session, session.begin():
        db.create_user(session, LOCKED_NAME, LOCKED_PASSWORD, "inspector")

    with open_browser() as page:
        page.goto(served.app.url)
        for attempt in range(5):  # each one answered before the next, as a person types
            submit_sign_in(page, LOCKED_NAME, f"wrong-password-{attempt}")
            assert len(recorded_attempts(engine, LOCKED_NAME, attempt + 1)) == attempt + 1
            page.get_by_text("Wrong user name or password.").wait_for()
        page.get_by_text("Too many failed sign-ins: further attempts are refused").wait_for()

        submit_sign_in(page, LOCKED_NAME, LOCKED_PASSWORD)
        assert len(recorded_attempts(engine, LOCKED_NAME, 6)) == 6
        page.get_by_text("this attempt was refused without checking the password").wait_for()
        assert page.get_by_role("button", name="Sign out").count() == 0

        time.sleep(LOCK_SECONDS + 1)
        submit_sign_in(page, LOCKED_NAME, LOCKED_PASSWORD)
        page.get_by_role("button", name="Sign out").wait_for()
        page.get_by_role("button", name="Sign out").click()
        shows_sign_in_form(page)

        submit_sign_in(page, "admin", ADMIN_PASSWORD)
        page.get_by_role("link", name="Users").click()
        page.get_by_role("heading", name="Sign-in attempts").wait_for()
        page.get_by_text("In the last 24 hours: 5 failed, 1 refused while locked").wait_for()

    attempts = recorded_attempts(engine, LOCKED_NAME, 7)
    assert [a.outcome for a in attempts] == ["failure"] * 5 + ["refused", "success"]
    assert {a.client for a in attempts} == {"local"}
    refused_at, success_at = attempts[5].attempted_at, attempts[6].attempted_at
    assert (success_at - attempts[4].attempted_at).total_seconds() >= LOCK_SECONDS
    assert (refused_at - attempts[4].attempted_at).total_seconds() < LOCK_SECONDS
