"""A tiny stand-in detector and a project whose active version it plays: no model is fitted.

Imported as ``from stand_in_detector import ...`` (pytest puts this folder on ``sys.path``; a
child process started by a test runs :mod:`post_then_die` from here). The stand-in scores a
flat grey part by its grey level (score = level / 100, threshold 1.0), so which parts pass is
known in advance and tests that only store what is decided stay fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import png

from db import Prediction, Project
from db.model_versions import activate_model_version, register_model_version


class GreyLevelDetector:
    """Scores a part by its mean grey level / 100; threshold 1.0; flat anomaly maps."""

    threshold = 1.0

    def predict(self, images: Sequence[np.ndarray]) -> list[SimpleNamespace]:
        """One prediction per image: its grey level / 100 and a flat map of that score."""
        return [
            SimpleNamespace(
                score=float(image.mean()) / 100.0,
                anomaly_map=np.full(image.shape[:2], float(image.mean()) / 100.0, np.float32),
            )
            for image in images
        ]


def stand_in_for(_artifact: str) -> GreyLevelDetector:
    """A ``detector_for`` that gives the stand-in for any model version."""
    return GreyLevelDetector()


def grey_part(level: int) -> bytes:
    """A flat 16x16 PNG of one grey level (scored ``level / 100``)."""
    return png(np.full((16, 16, 3), level, np.uint8))


def project_with_stand_in(factory: sessionmaker[Session], name: str) -> tuple[int, int]:
    """Create project ``name`` whose active version the stand-in plays; its and the version's id."""
    with factory() as session, session.begin():
        project = Project(name=name)
        session.add(project)
        session.flush()
        version = register_model_version(
            session,
            project_id=project.id,
            kind="patchcore",
            artifact_path="stand-in",
            metrics={},
            threshold=GreyLevelDetector.threshold,
            training_snapshot={},
        )
        activate_model_version(session, version_id=version.id, user=None, system=True)
        return project.id, version.id


def storing(session: Any) -> bool:
    """Whether a session is a part's storing transaction (it holds the new prediction)."""
    return any(
        isinstance(row, Prediction) for row in (*session.new, *session.identity_map.values())
    )
