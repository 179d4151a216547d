"""Helpers for the workbench page tests: synthetic parts, opening and signing in to the app.

Imported by the tests in ``tests/app`` as ``from apptest_support import ...`` (pytest puts this
folder on ``sys.path``); the fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

import db
from db.projects import register_model_version
from db.review_queue import review_queue

#: Streamlit's own ``PagesManager.__init__``, before ``conftest`` wraps it.
ORIGINAL_PAGES_MANAGER_INIT = PagesManager.__init__

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
ADMIN_PASSWORD = "admin-secret-42"
PASSWORD = "user-secret-42"
INSPECTOR, MANAGER, ADMIN = "ines", "manon", "admin"
ROLE_USERS = {"inspector": INSPECTOR, "manager": MANAGER, "admin": ADMIN}


@dataclass
class Workbench:
    """What the ``workbench`` fixture built."""

    factory: sessionmaker[Session]
    project_id: int
    version_id: int
    model_dir: Path
    users: dict[str, int] = field(default_factory=dict)
    image_ids: dict[str, int] = field(default_factory=dict)


def make_part(seed: int, size: int = 64, defect: bool = False) -> np.ndarray:
    """A textured grey part, (size, size, 3) uint8; a defect is a dark scratch."""
    rng = np.random.default_rng(seed)
    xx = np.mgrid[0:size, 0:size][1]
    base = 128 + 40 * np.sin(xx / 3.0) + rng.normal(0, 4, (size, size))
    if defect:
        base[size // 3 : size // 3 + 4, size // 4 : 3 * size // 4] = 10
    return np.repeat(np.clip(base, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def png_bytes(pixels: np.ndarray) -> bytes:
    """``pixels`` (H, W, 3) uint8 encoded as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def open_app() -> AppTest:
    """A fresh headless session of the workbench."""
    return AppTest.from_file(str(APP), default_timeout=60)


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    """Fill in and submit the sign-in form of an app that has run once."""
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password)
    at.button[0].click()  # the form's submit button: the only button when signed out
    return at.run()


def signed_in_app(role: str) -> AppTest:
    """A session signed in as the fixture user holding ``role``."""
    name = ROLE_USERS[role]
    at = sign_in(open_app().run(), name, ADMIN_PASSWORD if name == ADMIN else PASSWORD)
    assert not at.exception, at.exception
    assert at.session_state["user"]["role"] == role
    return at


def first_queued(workbench: Workbench) -> db.Prediction:
    """The prediction of the part at the head of the workbench project's review queue."""
    with workbench.factory() as session:
        image_id = review_queue(session, workbench.project_id, limit=1)[0].image_id
        return session.scalars(
            select(db.Prediction).where(db.Prediction.image_id == image_id)
        ).one()


def add_gated_version(
    workbench: Workbench, gate: dict, *, kind: str = "patchcore", threshold: float | None
) -> int:
    """Register a candidate version (the tiny model's files) carrying ``gate``; return its id."""
    with workbench.factory() as session, session.begin():
        return register_model_version(
            session,
            project_id=workbench.project_id,
            kind=kind,
            artifact_path=str(workbench.model_dir),
            metrics={"gate": gate},
            threshold=threshold,
            training_snapshot={},
        ).id


def run_until_filled(at: AppTest, timeout: float = 60.0) -> AppTest:
    """Run the page again until no panel says it "fills in when ready" (background work done)."""
    import time

    deadline = time.monotonic() + timeout
    at.run()
    while any("fills in when ready" in c.value for c in at.caption):
        if time.monotonic() > deadline:
            raise TimeoutError("a background panel did not fill in")
        time.sleep(0.2)
        at.run()
    return at
