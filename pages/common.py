"""Helpers shared by the workbench pages: sessions, the signed-in user, the project, detectors.

This module is imported by ``app.py`` and the pages (``from pages.common import ...``); it is
not a page itself (``app.py`` registers pages explicitly with ``st.navigation``).

Everything cached with ``st.cache_resource`` is shared by all browser sessions of the server
process, so only thread-safe, read-only things live there: the session factory (keyed by the
database URL; defined in :mod:`pages.db_session`, re-exported here with :func:`transaction`) and
loaded detectors (keyed by artifact path; never mutated by the pages).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

import db

# The database sessions live in pages.db_session (helpers imported below use them too, without
# importing this module); re-exported here for the pages and app.py.
from pages.db_session import session_factory as session_factory
from pages.db_session import session_factory_for as session_factory_for
from pages.db_session import transaction as transaction

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger("loupe.app")

#: Session-state keys (one place, so pages and tests agree).
USER_KEY = "user"
PROJECT_KEY = "project_id"
PICKER_KEY = "sidebar_project"  # the sidebar project selectbox

MODELS_DIR_ENV = "LOUPE_MODELS_DIR"
SKIP_DEMO_ENV = "LOUPE_SKIP_DEMO"
ADMIN_PASSWORD_ENV = "LOUPE_ADMIN_PASSWORD"

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


# --------------------------------------------------------------------------- storage


def models_root() -> Path:
    """Where trained models are written: ``$LOUPE_MODELS_DIR`` or ``./models``."""
    return Path(os.environ.get(MODELS_DIR_ENV) or "models")


# --------------------------------------------------------------------------- the user


def sign_in(user: db.User, session_id: int) -> None:
    """Remember the signed-in user and their session (``db.auth_sessions``) in this tab."""
    st.session_state[USER_KEY] = {
        "id": user.id,
        "name": user.name,
        "role": user.role,
        "session_id": session_id,
    }


def sign_out() -> None:
    """End the signed-in session (every tab of this browser) and forget this tab's state."""
    from services.sign_in import sign_out as end_signed_in_session

    info = signed_in()
    if info is not None:
        with transaction() as session:
            end_signed_in_session(session, info["session_id"])
    forget_session_state()


def forget_session_state() -> None:
    """Forget the signed-in user and everything this tab was doing."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def signed_in() -> dict | None:
    """``{"id", "name", "role", "session_id"}`` of the signed-in user, or None."""
    return st.session_state.get(USER_KEY)


def refresh_user() -> dict | None:
    """Check this tab's session on every run; resume one from the browser's cookie.

    Called once per run by ``app.py``: a session that ended (sign-out in another tab, a
    password or role change, a deactivation) or expired signs this tab out; a role changed in
    the database directly takes effect. A tab without a user (a reload, a new tab) is signed
    in from the session cookie when that session is live.
    """
    from db.auth_sessions import live_session
    from pages.browser_session import browser_cookie
    from services.sign_in import resume_session

    info = signed_in()
    with transaction() as session:
        if info is None:
            resumed = resume_session(session, browser_cookie())
        else:
            resumed = live_session(session, info["session_id"])
        if resumed is not None:
            sign_in(resumed.user, resumed.id)
            return signed_in()
    if info is not None:
        forget_session_state()
    return None


def load_user(session: Session) -> db.User:
    """The signed-in user as a row of ``session`` (what the service functions check).

    Raises:
        PermissionError: If nobody is signed in or the account was deactivated.
    """
    info = signed_in()
    user = None if info is None else db.get_user(session, info["id"])
    if user is None or not user.active:
        raise PermissionError("Please sign in again.")
    return user


def require_page_role(*roles: str) -> dict:
    """Stop the page unless the signed-in user has one of ``roles`` (navigation hides it too)."""
    ensure_routed()
    info = signed_in()
    if info is None or info["role"] not in roles:
        st.error("You do not have access to this page.")
        st.stop()
    return info


# --------------------------------------------------------------------------- the project


def current_project_id() -> int | None:
    """The project picked in the sidebar, or None."""
    return st.session_state.get(PROJECT_KEY)


def choose_project(project_id: int) -> None:
    """Make ``project_id`` the picked project (call from a callback, before the sidebar runs)."""
    st.session_state[PROJECT_KEY] = project_id
    st.session_state[PICKER_KEY] = project_id


def require_project() -> int:
    """The picked project's id; stops the page with a hint when there is none."""
    project_id = current_project_id()
    if project_id is None:
        st.info("No project yet. A manager can create one on the Models page.")
        st.stop()
    return project_id


# --------------------------------------------------------------------------- detectors


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_detector_cached(artifact_path: str, runtime: str = "torch"):
    """Load (and verify) a model version's scoring detector once per process and runtime.

    Shared, never mutated by pages. ``runtime="onnx"`` scores through the version's ONNX export,
    written on first use (see :func:`services.scoring_runtime.scoring_detector`).

    Returns:
        A :class:`services.scoring_runtime.ScoringDetector`.
    """
    from services.scoring_runtime import resolve_artifact, scoring_detector

    return scoring_detector(resolve_artifact(artifact_path), runtime)


# --------------------------------------------------------------------------- showing a part


def image_pixels(stored_path: str) -> np.ndarray | None:
    """Decode a stored image, or None (with a warning) when the file is gone or unreadable."""
    from adcore.errors import ImageLoadError
    from adcore.image_io import load_image

    try:
        return load_image(db.absolute_image_path(stored_path))
    except (ImageLoadError, ValueError) as err:
        st.warning(f"Cannot show the image: {err}")
        return None


def verdict_badge(verdict: str | None) -> str:
    """Markdown for a coloured verdict."""
    if verdict == db.Verdict.DEFECT:
        return ":red-background[**DEFECT**]"
    if verdict == db.Verdict.GOOD:
        return ":green-background[**GOOD**]"
    return ":gray-background[not scored]"


def show_part(
    *,
    stored_path: str,
    anomaly_map_path: str | None,
    score: float | None,
    threshold: float | None,
    verdict: str | None,
    key: str,
    caption: str = "",
    scorer: tuple[float, float] | None = None,
    prediction_id: int | None = None,
) -> None:
    """The image, its anomaly-map overlay (with an opacity slider), score vs threshold, verdict.

    ``scorer`` is ``(p(defect), probability threshold)`` when the feedback scorer decided the
    verdict; the detector's score is shown beside it. ``prediction_id`` gives the map its
    model version's colour scale (:func:`pages.heatmap_panel.anomaly_map_view`).
    """
    from pages.heatmap_panel import anomaly_map_view

    pixels = image_pixels(stored_path)
    if score is not None:
        line = f"Score **{score:.4g}**"
        if threshold is not None:
            line += f" vs threshold **{threshold:.4g}**"
        if scorer is not None:
            line = (
                f"p(defect) **{scorer[0]:.2f}** vs **{scorer[1]:.2f}** (feedback scorer) "
                f"&nbsp;·&nbsp; detector {line[0].lower()}{line[1:]}"
            )
        st.markdown(f"{verdict_badge(verdict)} &nbsp; {line}")
    if pixels is None:
        return
    left, right = st.columns(2)
    left.image(pixels, caption=caption or "Image", width="stretch")
    with right:
        anomaly_map_view(pixels, anomaly_map_path, prediction_id, key)


def save_review(
    image_id: int,
    label: str,
    *,
    defect_type: str | None = None,
    note: str | None = None,
    seconds_spent: float | None = None,
) -> bool:
    """Record the signed-in user's label for an image; flash an error and return False on failure.

    For button callbacks (Inspect): :func:`record_label` with its refusal flashed.
    """
    error = record_label(
        image_id, label, defect_type=defect_type, note=note, seconds_spent=seconds_spent
    )
    if error is not None:
        flash(f"Could not save the review: {error}", "error")
    return error is None


def record_label(
    image_id: int,
    label: str,
    *,
    defect_type: str | None = None,
    note: str | None = None,
    seconds_spent: float | None = None,
    region: dict[str, Any] | None = None,
) -> str | None:
    """Record the signed-in user's label for an image; return why not, or None when saved.

    The review is one transaction; then the rules that queue automatic jobs run in another
    (:mod:`services.review_followups`: a recalibration when an audit finds a missed defect,
    the feedback scorer's training). Their failure is flashed and never undoes the review.
    """
    from db.review_queue import record_review
    from services.review_followups import follow_up_review

    try:
        with transaction() as session:
            review = record_review(
                session,
                image_id=image_id,
                user=load_user(session),
                label=label,
                defect_type=defect_type,
                note=note,
                seconds_spent=seconds_spent,
                region=region,
            )
            project_id = review.image.project_id
    except ACTION_ERRORS as err:
        return str(err)
    try:  # its own transaction: the review stays whatever happens here
        with transaction() as session:
            follow_up_review(session, project_id, image_id, load_user(session))
    except ACTION_ERRORS as err:
        flash(f"The review is saved; no automatic job was queued: {err}", "info")
    return None


#: Errors a user action can end with that deserve a message rather than a traceback.
ACTION_ERRORS: tuple[type[BaseException], ...] = (
    PermissionError,
    db.StorageError,
    ValueError,
    LookupError,
)


def flash(message: str, kind: str = "success") -> None:
    """Queue a message for the next run (callbacks run before the page is drawn)."""
    st.session_state.setdefault("_flash", []).append((kind, message))


def show_flashes() -> None:
    """Draw and forget the queued messages."""
    for kind, message in st.session_state.pop("_flash", []):
        getattr(st, kind)(message)


if __name__ == "__main__":  # run as a page by the legacy pages/ handling: go to the router
    st.switch_page(MAIN_SCRIPT)
