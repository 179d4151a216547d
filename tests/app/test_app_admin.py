"""The users page (admins only): create and deactivate users."""

from __future__ import annotations

import pytest
from apptest_support import INSPECTOR, PASSWORD, Workbench, signed_in_app
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import db


def open_users() -> AppTest:
    at = signed_in_app("admin")
    at.switch_page("pages/admin.py").run()
    assert not at.exception, at.exception
    return at


def submit_new_user(at: AppTest, name: str, password: str, role: str) -> AppTest:
    at.text_input(key="new_user_name").input(name)
    at.text_input(key="new_user_password").input(password)
    at.selectbox(key="new_user_role").set_value(role)
    at.button[[b.label for b in at.button].index("Create user")].click()
    return at.run()


def test_admin_creates_a_user(workbench: Workbench) -> None:
    at = submit_new_user(open_users(), "olga", "olga-password", "manager")

    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Created user 'olga'."]
    with workbench.factory() as session, session.begin():
        user = session.scalars(select(db.User).where(db.User.name == "olga")).one()
        assert user.role == "manager" and user.password_hash != "olga-password"
        assert db.verify_password(session, "olga", "olga-password") is not None
    assert "olga" in list(at.dataframe[0].value["Name"])


def test_a_duplicate_or_weak_user_is_refused_with_a_message(workbench: Workbench) -> None:
    at = submit_new_user(open_users(), INSPECTOR, "another-password", "inspector")
    assert [e.value for e in at.error] == ["Could not create the user: that name is taken"]

    at = submit_new_user(at, "short", "abc", "inspector")
    assert at.error and "at least 8 characters" in at.error[0].value
    assert not at.exception


def test_admin_deactivates_a_user_who_then_cannot_sign_in(workbench: Workbench) -> None:
    at = open_users()
    inspector_id = workbench.users[INSPECTOR]
    assert at.button(key=f"active-{inspector_id}").label == f"Deactivate {INSPECTOR}"

    at.button(key=f"active-{inspector_id}").click().run()

    assert not at.exception
    with workbench.factory() as session, session.begin():
        assert session.get(db.User, inspector_id).active is False
        assert db.verify_password(session, INSPECTOR, PASSWORD) is None
    assert at.button(key=f"active-{inspector_id}").label == f"Reactivate {INSPECTOR}"
    assert f"active-{workbench.users['admin']}" not in [b.key for b in at.button]


def keys_table(at: AppTest):
    """The station keys table (a pandas DataFrame)."""
    (table,) = [d.value for d in at.dataframe if "Station" in d.value.columns]
    return table


def test_admin_creates_a_station_key_sees_it_once_and_revokes_it(workbench: Workbench) -> None:
    from db.api_keys import authenticate

    at = open_users()
    at.text_input(key="api_key_station").input("line-2-camera")
    at.selectbox(key="api_key_scope").set_value("inspect")
    at.button[[b.label for b in at.button].index("Create key")].click()
    at.run()
    assert not at.exception, at.exception
    (shown,) = [code.value for code in at.code]
    assert shown.startswith("loupe_")
    assert any("will not be shown again" in s.value for s in at.success)
    with workbench.factory() as session, session.begin():
        key_row = authenticate(session, shown, scope="inspect")
        assert (key_row.station, key_row.project_id) == ("line-2-camera", workbench.project_id)
        key_id = key_row.id
    table = keys_table(at)
    assert list(table["Station"]) == ["line-2-camera"] and shown not in table.to_string()

    at.run()  # the next run no longer shows the key
    assert not [code.value for code in at.code]

    at.button(key=f"revoke-key-{key_id}").click().run()
    assert not at.exception, at.exception
    assert list(keys_table(at)["State"]) == ["revoked"]
    with workbench.factory() as session, pytest.raises(PermissionError, match="revoked"):
        authenticate(session, shown, scope="read")


def test_a_station_key_without_a_name_is_refused_with_a_message(workbench: Workbench) -> None:
    at = open_users()
    at.button[[b.label for b in at.button].index("Create key")].click()
    at.run()
    assert [e.value for e in at.error] == [
        "Could not create the key: Give the station a name of 1 to 64 characters."
    ]
    assert not at.code
