"""What the end-to-end tests share: the seeded workbench (users, project, tiny model).

Kept out of ``conftest.py`` so that test modules import it by a unique name (each test folder
has its own ``conftest``; ``from conftest import ...`` would be ambiguous across folders).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from live_app import LiveApp
from PIL import Image

import db
from db.settings import SQLITE_FILE_NAME

ADMIN_PASSWORD = "e2e-admin-secret"
INSPECTOR, INSPECTOR_PASSWORD = "iris", "e2e-inspector-secret"


@dataclass(frozen=True)
class Served:
    """A running workbench and how to reach its database."""

    app: LiveApp
    database_url: str
    project_id: int


def textured_part(seed: int, size: int = 96, scratch: bool = False) -> np.ndarray:
    """A grey striped part, (size, size, 3) uint8; ``scratch`` adds a dark bar."""
    rng = np.random.default_rng(seed)
    columns = np.arange(size)[None, :].repeat(size, axis=0)
    pixels = 120 + 50 * np.cos(columns / 4.0) + rng.normal(0, 5, (size, size))
    if scratch:
        pixels[size // 2 : size // 2 + 5, size // 5 : 4 * size // 5] = 5
    return np.repeat(np.clip(pixels, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def seed_workbench(data_dir: Path, models_dir: Path) -> tuple[str, int]:
    """Users, a project and its active tiny model; returns (database URL, project id)."""
    from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
    from db.projects import activate_model_version, create_project, register_model_version

    url = f"sqlite:///{data_dir / SQLITE_FILE_NAME}"
    detector = PatchCore(
        PatchCoreConfig(image_size=64, coreset_ratio=0.1, calibration_fraction=0.25), device="cpu"
    )
    detector.fit([textured_part(i) for i in range(8)])
    artifact = models_dir / "bench-parts" / "v1"
    detector.save(artifact)
    engine = db.init_db(url)
    with db.make_session_factory(engine)() as session, session.begin():
        db.ensure_admin(session, ADMIN_PASSWORD)
        db.create_user(session, INSPECTOR, INSPECTOR_PASSWORD, "inspector")
        project = create_project(session, name="bench parts", defect_types=["scratch"])
        version = register_model_version(
            session,
            project_id=project.id,
            kind="patchcore",
            artifact_path=str(artifact),
            metrics={},
            threshold=detector.threshold,
            training_snapshot={},
        )
        activate_model_version(session, version_id=version.id, user=None, system=True)
        project_id = project.id
    engine.dispose()
    return url, project_id


def queue_flagged_parts(served: Served, n: int, prefix: str = "desk") -> list[str]:
    """Score ``n`` scratched parts with the project's model: all flagged, all in the queue.

    Returns:
        Their file names, ``<prefix>-00.png`` on.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from adcore.detectors.registry import load_detector
    from services.inspection import InspectionRequest, inspect_uploads
    from services.scoring.predictor import Predictor

    engine = create_engine(served.database_url)
    factory = sessionmaker(engine, expire_on_commit=False)
    try:
        with factory() as session:
            version = session.get(db.Project, served.project_id).active_model_version
            artifact, version_id = version.artifact_path, version.id
        uploads = []
        for i in range(n):
            buffer = io.BytesIO()
            Image.fromarray(textured_part(1000 + i, scratch=True)).save(buffer, format="PNG")
            uploads.append((f"{prefix}-{i:02d}.png", buffer.getvalue()))
        predictor = Predictor.load(
            factory,
            project_id=served.project_id,
            model_version_id=version_id,
            detector=load_detector(artifact, device="cpu"),
        )
        request = InspectionRequest(predictor, data_dir=served.app.data_dir)
        results = inspect_uploads(factory, request, uploads)
        assert all(r.ok and r.verdict == "defect" for r in results), results
    finally:
        engine.dispose()
    return [name for name, _ in uploads]
