"""A project with an active tiny PatchCore, for tests that score parts through the services.

Imported as ``from active_model import fit_small_patchcore, project_with_active_model``.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part

from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from db import Project
from services.model_management import save_and_register

SMALL = PatchCoreConfig(image_size=64, coreset_ratio=0.1, calibration_fraction=0.25, batch_size=8)
"""64 px, a tenth of the patches kept: fits in about a second on a CPU."""


def fit_small_patchcore() -> tuple[PatchCore, object]:
    """A :data:`SMALL` PatchCore fitted on 12 synthetic good parts, and its fit result."""
    detector = PatchCore(SMALL, device="cpu")
    return detector, detector.fit([make_part(i) for i in range(12)])


def project_with_active_model(
    factory: sessionmaker[Session], name: str, fitted: tuple[PatchCore, object], models_root: Path
) -> int:
    """Create project ``name`` with ``fitted`` saved as its active version 1; return its id."""
    with factory() as session, session.begin():
        project = Project(name=name)
        session.add(project)
        session.flush()
        project_id = project.id
    detector, fit = fitted
    save_and_register(
        factory,
        project_id=project_id,
        detector=detector,
        fit=fit,
        models_root=models_root,
        user=None,
        system=True,
    )
    return project_id
