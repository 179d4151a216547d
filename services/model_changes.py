"""When the detector that decides parts changed, and why, for the Dashboard's readers.

A manager who sees the miss rate or the load move wants to know which model change moved it.
:func:`detector_changes` lists every activation of a detector revision (a promotion, a roll
back, a recalibration going live, a refit), newest first, with the revision's label
(``"v1.1"``, :mod:`db.model_lineages`), what made it, its threshold and the reason recorded
with it (the activation's note, else the version's notes). Instant updates (confirmed good
parts learned into the memory bank) go live one after another, up to hundreds: they are
counted per model instead of listed one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from db.base import ModelStatus
from db.model_families import ModelFamily
from db.model_lineages import RevisionOrigin, lineages
from db.model_metrics import read_metrics
from db.models import ModelVersion

__all__ = ["DetectorHistory", "ModelChange", "detector_changes"]


@dataclass(frozen=True)
class ModelChange:
    """One detector revision going live.

    Attributes:
        at: When it went live (aware UTC, as recorded).
        label: The revision (``"v1.1"``).
        origin: What made it (training, recalibration).
        threshold: Its decision threshold.
        why: The recorded reason, ``""`` when none was recorded.
    """

    at: datetime
    label: str
    origin: str
    threshold: float | None
    why: str


@dataclass(frozen=True)
class DetectorHistory:
    """The detector's changes and its instant updates.

    Attributes:
        changes: Activations other than instant updates, newest first.
        instant_updates: ``{model label: instant-update revisions that went live}``, for the
            models that have any.
    """

    changes: list[ModelChange]
    instant_updates: dict[str, int]


def detector_changes(session: Session, project_id: int) -> DetectorHistory:
    """Every activation of a detector revision except instant updates, newest first.

    Args:
        session: The caller's session.
        project_id: The project.

    Returns:
        The history; empty when no detector ever went live.
    """
    changes: list[ModelChange] = []
    updates: dict[str, int] = {}
    for lineage in lineages(session, project_id):
        if lineage.family != ModelFamily.DETECTOR:
            continue
        learned = sum(
            revision.origin == RevisionOrigin.INSTANT_UPDATE and revision.was_active
            for revision in lineage.revisions
        )
        if learned:
            updates[lineage.label] = learned
        for revision in lineage.revisions:
            if revision.origin == RevisionOrigin.INSTANT_UPDATE or not revision.was_active:
                continue
            version = session.get(ModelVersion, revision.version_id)
            if version is None:
                continue
            changes += [
                ModelChange(
                    at=datetime.fromisoformat(change.at),
                    label=revision.label,
                    origin=str(revision.origin),
                    threshold=revision.threshold,
                    why=(change.note or revision.notes or "").strip(),
                )
                for change in read_metrics(version).status_history
                if change.status == ModelStatus.ACTIVE.value
            ]
    changes.sort(key=lambda change: change.at, reverse=True)
    return DetectorHistory(changes, updates)
