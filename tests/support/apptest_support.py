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
from db.projects import activate_model_version, register_model_version
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
    workbench: Workbench,
    gate: dict,
    *,
    kind: str = "patchcore",
    threshold: float | None,
    same_model_as: int | None = None,
) -> int:
    """Register a candidate version (the tiny model's files) carrying ``gate``; return its id.

    With ``same_model_as``, it is a recalibration of that version (the next revision of its
    model).
    """
    metrics: dict = {"gate": gate}
    if same_model_as is not None:
        metrics["same_model_as"] = [same_model_as]
    with workbench.factory() as session, session.begin():
        return register_model_version(
            session,
            project_id=workbench.project_id,
            kind=kind,
            artifact_path=str(workbench.model_dir),
            metrics=metrics,
            threshold=threshold,
            training_snapshot={},
        ).id


def add_instant_updates(workbench: Workbench, n: int) -> list[int]:
    """``n`` instant updates of the workbench's v1, each once active; the last one active.

    Returns:
        The ids of v1.0 to v1.n.
    """
    ids = [workbench.version_id]
    with workbench.factory() as session, session.begin():
        for number in range(1, n + 1):
            served = {"at": "2026-01-05T08:00:00", "status": "active", "by": "ines"}
            version = register_model_version(
                session,
                project_id=workbench.project_id,
                kind="patchcore",
                artifact_path=str(workbench.model_dir),
                metrics={
                    "instant_updates": [{"parent_version_id": ids[-1]}],
                    "status_history": [served],
                },
                threshold=1.0 + number / 1000,
                training_snapshot={},
                notes=f"update {number}",
            )
            version.status = "retired"
            ids.append(version.id)
        activate_model_version(session, version_id=ids[-1], user=None, system=True)
    return ids


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
