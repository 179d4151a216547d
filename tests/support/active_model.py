"""A project with an active tiny PatchCore, for tests that score parts through the services.

Imported as ``from active_model import fit_small_patchcore, project_with_active_model``; a
station's API key (:func:`station_key`) and a webhook (:func:`send_verdicts_to`) for the API
tests.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part

from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from db import Project
from db.api_keys import NewApiKey, create_api_key
from db.outbound_messages import OUTBOUND_KEY, OutboundConfig, WebhookConfig
from services.model_management import save_and_register
from services.project_settings import store_option

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


def station_key(
    factory: sessionmaker[Session],
    project_id: int,
    *,
    station: str = "line-1",
    scope: str = "inspect",
) -> NewApiKey:
    """A system-made API key of ``station`` for the project (its secret in ``.key``)."""
    with factory() as session, session.begin():
        return create_api_key(
            session, project_id=project_id, station=station, scope=scope, user=None, system=True
        )


def send_verdicts_to(factory: sessionmaker[Session], project_id: int, url: str) -> None:
    """Point the project's webhook at ``url`` (its verdicts are then written to the outbox)."""
    with factory() as session, session.begin():
        config = OutboundConfig(webhook=WebhookConfig(True, url))
        store_option(session, project_id, OUTBOUND_KEY, config.to_json())
