"""Signing in: signed-out visitors see only the sign-in page; the first admin's password."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from apptest_support import (
    ADMIN,
    ADMIN_PASSWORD,
    ORIGINAL_PAGES_MANAGER_INIT,
    ROOT,
    open_app,
    sign_in,
)
from streamlit.runtime.pages_manager import PagesManager

import db

ALL_PAGES = (
    "pages/inspect.py",
    "pages/review.py",
    "pages/dashboard.py",
    "pages/models.py",
    "pages/admin.py",
)


def test_signed_out_visitor_sees_only_the_login_form(app_env: Path) -> None:
    at = open_app().run()

    assert not at.exception
    assert [t.key for t in at.text_input] == ["login_name", "login_password"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert "user" not in at.session_state
    for page in ALL_PAGES:  # not registered with st.navigation, so unreachable
        with pytest.raises(ValueError, match="not a registered page|registered"):
            at.switch_page(page)


def test_wrong_password_shows_an_error_and_signs_nobody_in(app_env: Path) -> None:
    at = sign_in(open_app().run(), ADMIN, "not-the-password")

    assert not at.exception
    assert [e.value for e in at.error] == ["Wrong user name or password."]
    assert "user" not in at.session_state
    assert [t.key for t in at.text_input] == ["login_name", "login_password"]


def test_unknown_user_gets_the_same_error(app_env: Path) -> None:
    at = sign_in(open_app().run(), "nobody", ADMIN_PASSWORD)

    assert [e.value for e in at.error] == ["Wrong user name or password."]
    assert "user" not in at.session_state


def test_right_password_signs_in_and_opens_the_pages(app_env: Path) -> None:
    at = sign_in(open_app().run(), ADMIN, ADMIN_PASSWORD)

    assert not at.exception
    assert not at.error
    assert at.session_state["user"]["name"] == ADMIN
    assert at.session_state["user"]["role"] == "admin"
    assert "login_name" not in [t.key for t in at.text_input]
    for page in ALL_PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)


def test_sign_out_returns_to_the_login_page(app_env: Path) -> None:
    at = sign_in(open_app().run(), ADMIN, ADMIN_PASSWORD)
    at.button(key="sign_out").click().run()

    assert "user" not in at.session_state
    assert [t.key for t in at.text_input] == ["login_name", "login_password"]


def test_deactivated_user_is_signed_out_on_the_next_run(app_env: Path) -> None:
    at = sign_in(open_app().run(), ADMIN, ADMIN_PASSWORD)
    factory = db.make_session_factory(db.create_engine_for_url())
    with factory() as session, session.begin():
        session.query(db.User).filter_by(name=ADMIN).one().active = False

    at.run()

    assert "user" not in at.session_state
    assert [t.key for t in at.text_input] == ["login_name", "login_password"]


def test_generated_admin_password_goes_to_the_log_only(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LOUPE_ADMIN_PASSWORD")
    at = open_app().run()
    at.run()  # a second run must not print it again
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if "one-time password" in line]

    assert len(lines) == 1
    password = lines[0].split("one-time password: ")[1].split()[0]
    shown = [e.value for e in (*at.markdown, *at.caption, *at.error, *at.info, *at.warning)]
    assert not any(password in str(text) for text in shown)
    at = sign_in(at, ADMIN, password)
    assert at.session_state["user"]["role"] == "admin"


def test_first_run_of_a_page_url_goes_through_the_router(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server's very first run still treats pages/ as legacy pages: a bookmarked /review
    # would run pages/review.py alone. The page sends it back to app.py, which signs in first.
    monkeypatch.setattr(PagesManager, "__init__", ORIGINAL_PAGES_MANAGER_INIT)
    at = open_app()
    at.switch_page("pages/review.py").run()

    assert not at.exception
    assert [t.key for t in at.text_input] == ["login_name", "login_password"]
    assert "user" not in at.session_state


def guarded_helper_modules() -> list[str]:
    """The helper modules under pages/ that send a legacy-page run to app.py.

    A module with ``if __name__ == "__main__":`` at its top level (the legacy pages/ handling
    runs a file as ``__main__``); the pages listed in ``st.navigation`` call
    :func:`pages.routing.ensure_routed` instead.
    """
    guarded = []
    for path in sorted((ROOT / "pages").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (
                isinstance(node, ast.If)
                and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Name)
                and node.test.left.id == "__name__"
            ):
                guarded.append(f"pages/{path.name}")
    return guarded


def test_the_page_helpers_are_guarded() -> None:
    assert {
        "pages/action_feedback.py",
        "pages/detector_cache.py",
        "pages/part_display.py",
        "pages/review_recording.py",
        "pages/routing.py",
        "pages/server_settings.py",
        "pages/tab_state.py",
    } <= set(guarded_helper_modules())


@pytest.mark.parametrize("script", guarded_helper_modules())
def test_first_run_of_a_helper_module_url_goes_through_the_router(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, script: str
) -> None:
    # On the first run a URL such as /routing would run pages/routing.py alone (every file
    # under pages/ is a legacy page then): its __main__ guard switches to app.py instead.
    monkeypatch.setattr(PagesManager, "__init__", ORIGINAL_PAGES_MANAGER_INIT)
    at = open_app()
    at.switch_page(script).run()

    assert not at.exception
    assert [t.key for t in at.text_input] == ["login_name", "login_password"]
    assert "user" not in at.session_state
