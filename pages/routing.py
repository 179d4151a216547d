"""The workbench's pages, who may open them, and the check that a page runs through ``app.py``.

Not a page: ``app.py`` builds ``st.navigation`` from :data:`PAGES` (:func:`pages_for_role`) and
runs the chosen page inside :func:`routed`; every page calls :func:`ensure_routed` first
(through :func:`pages.tab_state.require_page_role`, or directly on the sign-in page).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st

import db

ALL_ROLES = (db.Role.INSPECTOR.value, db.Role.MANAGER.value, db.Role.ADMIN.value)
MANAGERS = (db.Role.MANAGER.value, db.Role.ADMIN.value)
ADMINS = (db.Role.ADMIN.value,)


@dataclass(frozen=True)
class PageSpec:
    """One workbench page and the roles that may open it."""

    path: str
    title: str
    icon: str
    roles: tuple[str, ...]


#: Role -> pages mapping: a page appears in the navigation only for these roles.
PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/inspect.py", "Inspect", ":material/search:", ALL_ROLES),
    PageSpec("pages/review.py", "Review", ":material/fact_check:", ALL_ROLES),
    PageSpec("pages/dashboard.py", "Dashboard", ":material/monitoring:", MANAGERS),
    PageSpec("pages/models.py", "Models", ":material/model_training:", MANAGERS),
    PageSpec("pages/line.py", "Line", ":material/conveyor_belt:", MANAGERS),
    PageSpec("pages/admin.py", "Users", ":material/manage_accounts:", ADMINS),
)
LOGIN_PAGE = PageSpec("pages/login.py", "Sign in", ":material/login:", ())


MAIN_SCRIPT = "app.py"

_router = threading.local()


@contextmanager
def routed() -> Iterator[None]:
    """Mark the page run that ``app.py`` starts (``st.navigation(...).run()``) as routed."""
    _router.active = True
    try:
        yield
    finally:
        _router.active = False


def ensure_routed() -> None:
    """Send a page that runs without ``app.py`` back through the router.

    Streamlit still honours the legacy ``pages/`` folder until ``st.navigation`` has run once
    in the server process: on the process's very first run a URL such as ``/review`` would run
    ``pages/review.py`` on its own, skipping start-up, the sign-in check and the sidebar. Every
    page calls this first; outside a routed run it switches to the main script.
    """
    if not getattr(_router, "active", False):
        st.switch_page(MAIN_SCRIPT)


def pages_for_role(role: str | None) -> list[PageSpec]:
    """The pages a role may use (none when signed out)."""
    if role is None:
        return []
    return [page for page in PAGES if role in page.roles]


if __name__ == "__main__":  # run as a page by the legacy pages/ handling: go to the router
    st.switch_page(MAIN_SCRIPT)
