"""The demo's simulated history: four weeks of inspections and reviews before its first day.

So that the Dashboard shows trends, a model version change and throughput at first open,
:func:`seed_history` replays the ELPV mono test cells as the parts of a small plant over
:data:`HISTORY_DAYS` days before today (UTC):

* **Scores are real, once per cell.** ``HISTORY_GOOD_CELLS`` good and
  ``HISTORY_DEFECT_CELLS`` defective test cells (:func:`history_cells`: not the ones the demo
  inspects today) are scored once by the demo's fitted PatchCore (v1); the score, anomaly map
  and vector are reused for every simulated part showing that cell. Scoring is what costs, so
  a cell passes the line on several days: ``PARTS_PER_DAY`` parts a day, ``DEFECT_SHARE`` of
  them defective. Each part is its own image (the cell's PNG with a text chunk naming the
  part, so its content hash differs while its pixels, and hence its score, are the cell's).
  The marker lists the defective cells' maps, so :func:`true_labels` knows every part's truth.
* **Three shifts, three inspectors.** 06-14, 14-22 and 22-06 UTC, each worked by one simulated
  inspector (role inspector, a random password nobody knows: the accounts cannot sign in until
  an admin resets them). A part arrives at a random moment of a random shift.
* **Audits with known odds, as on the live line.** Each part falls in a decision region (sent
  to a human, near pass, deep pass: :func:`adcore.audit.decision_region` with the project's
  near band) and a passed part is drawn for audit with its region's odds, the project's
  :class:`adcore.audit.AuditOdds` (the demo stores
  :data:`services.demo_history_plan.DEMO_AUDIT_ODDS`). The region and its odds are stored
  with every prediction, so the line's estimated miss and false-alarm rates
  (:mod:`services.loop_rates`) weigh each audit by its odds from the first minute.
* **Reviews follow the ground truth.** Flagged parts, and the passed parts drawn for audit,
  are reviewed by the shift's inspector within the hour with the ELPV label. A few first looks
  (:data:`WRONG_FIRST_LOOK_SHARE`) are the other way and the next shift's inspector corrects
  them, and a few parts get a confirming second look (:data:`SECOND_LOOK_SHARE`): the log has
  agreements and disagreements, while every current label is the ELPV label.
* **A promotion two thirds through.** At the start of that day's early shift, v2 is
  activated: the same model with its threshold chosen again, as the recalibration job does
  (FNR first on the parts reviewed so far, not raised above v1's without audit evidence,
  :func:`adcore.thresholds.cap_censored_raise`). Later parts are judged by v2. v2 records
  that it is v1's model (``same_model_as`` v1's lineage, as the recalibration job records it:
  a revision of v1, not a new model) and its notes say why it exists, with the history's
  numbers (:attr:`services.demo_history_plan.HistoryPlan.recalibration_note`).

Every row is written through the db package (images, predictions with their past
``created_at``, reviews through :func:`db.review_log.add_review`, which keeps
``images.current_review_id``) in one transaction, together with the marker
(:data:`HISTORY_KEY` in the project's settings) that the UI reads to say which days are
simulated (:func:`services.demo_history_plan.simulated_before`). The planning is pure and
seeded (:func:`services.demo_history_plan.plan_history`): the same scores give the same history.
"""

from __future__ import annotations

import secrets
import struct
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from adcore.datasets import Sample
from adcore.explain.neighbours import embedding_to_bytes
from adcore.image_io import load_image
from db import (
    Image,
    ImageSource,
    ModelVersion,
    Prediction,
    Project,
    Role,
    User,
    absolute_image_path,
    utcnow,
)
from db.images import get_or_create_image
from db.model_families import detector_lineage
from db.model_metrics import new_version_metrics, redate_status_changes
from db.model_versions import activate_model_version, next_version_number, register_model_version
from db.review_log import add_past_reviews
from db.users import create_user
from services.demo_history_plan import (
    HISTORY_KEY,
    PARTS_PER_DAY,
    SHIFTS,
    HistoryPlan,
    PlannedPart,
    ScoredCell,
    history_cells,
    history_marker,
    plan_history,
    simulated_before,
)
from services.map_store import load_anomaly_map, save_anomaly_map
from services.model_management import free_version_directory, project_slug
from services.project_settings import audit_odds, store_option
from services.scoring.explanations import explain_part

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = 33  # signature (8) + IHDR length, type, 13 bytes of data, CRC


def score_cells(
    detector: Any,
    samples: Sequence[Sample],
    *,
    data_dir: Path | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> list[ScoredCell]:
    """Score each cell once with the real detector and store its anomaly map.

    Args:
        detector: The fitted detector.
        samples: The cells.
        data_dir: The data directory (maps go to ``<data dir>/maps``).
        progress: Optional ``progress(fraction, message)`` callback.

    Returns:
        The scored cells, in the order of ``samples``.
    """
    step = max(1, int(getattr(getattr(detector, "config", None), "batch_size", 16) or 16))
    scored: list[ScoredCell] = []
    for start in range(0, len(samples), step):
        batch = samples[start : start + step]
        pixels = [load_image(sample.path.read_bytes(), name=sample.path.name) for sample in batch]
        for sample, prediction in zip(batch, detector.predict(pixels), strict=True):
            vector = getattr(prediction, "embedding", None)
            scored.append(
                ScoredCell(
                    sample,
                    float(prediction.score),
                    save_anomaly_map(prediction.anomaly_map, data_dir),
                    None if vector is None else embedding_to_bytes(vector),
                )
            )
        if progress is not None:
            progress(len(scored) / len(samples), f"Scored {len(scored)}/{len(samples)} cells")
    return scored


def seed_history(
    Session: sessionmaker[OrmSession],  # noqa: N803 - the app's session factory
    *,
    project_id: int,
    detector: Any,
    version_id: int,
    samples: Sequence[Sample],
    models_root: Path,
    data_dir: Path | None = None,
    today: date | None = None,
    parts_per_day: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> HistoryPlan | None:
    """Score the cells, save v2, and store the simulated history, unless the project has one.

    Audits are drawn with the project's audit odds (:func:`services.project_settings.audit_odds`;
    :func:`services.demo.seed_demo` stores :data:`services.demo_history_plan.DEMO_AUDIT_ODDS`
    first).

    Args:
        Session: The application's session factory.
        project_id: The demo project.
        detector: The fitted v1 detector (its threshold is changed to v2's and it is saved as
            v2, so the caller goes on inspecting with the active version).
        version_id: The id of v1 (the active version).
        samples: The ELPV cells to score once and replay (see :func:`history_cells`).
        models_root: Where v2 is saved (``<root>/<project slug>/v<next number>``).
        data_dir: The data directory; default :func:`db.data_dir`.
        today: The first day that is not simulated; default today (UTC).
        parts_per_day: Parts a simulated day; default :data:`PARTS_PER_DAY`.
        progress: Optional ``progress(fraction, message)`` callback.

    Returns:
        The plan that was stored, or ``None`` when the project already had a history or no
        cells were given.
    """
    with Session() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise LookupError(f"There is no project with id {project_id}.")
        if history_marker(project) is not None or not samples:
            return None
        target_fnr, name, odds = project.target_fnr, project.name, audit_odds(project)
        number = next_version_number(session, project_id)
        v1 = session.get(ModelVersion, version_id)
        threshold_v1, snapshot = v1.threshold, dict(v1.training_snapshot or {})
    tell = progress or (lambda _fraction, _message: None)
    cells = score_cells(
        detector, samples, data_dir=data_dir, progress=lambda f, m: tell(0.9 * f, m)
    )
    plan = plan_history(
        cells,
        threshold_v1=threshold_v1,
        target_fnr=target_fnr,
        today=today or utcnow().date(),
        parts_per_day=parts_per_day or PARTS_PER_DAY,
        odds=odds,
    )
    tell(0.9, f"Storing {len(plan.parts)} simulated inspections")
    directory = free_version_directory(Path(models_root) / project_slug(name), number)
    detector.with_threshold(plan.threshold_v2).save(directory)
    try:
        with Session() as session, session.begin():
            _store_history(
                session, project_id, version_id, (number, directory), plan, snapshot, data_dir
            )
    except BaseException:  # nothing was stored: leave no orphaned maps behind
        for cell in cells:
            absolute_image_path(cell.map_path, data_dir).unlink(missing_ok=True)
        raise
    tell(1.0, "Simulated history stored")
    return plan


def _store_history(
    session: OrmSession,
    project_id: int,
    version_id: int,
    v2_number_and_directory: tuple[int, Path],
    plan: HistoryPlan,
    snapshot: dict[str, Any],
    data_dir: Path | None,
) -> None:
    """Write the plan: inspectors, v2 and its activation, images, predictions, reviews, marker."""
    v2_number, v2_directory = v2_number_and_directory
    inspectors = [_inspector(session, name) for _, name in SHIFTS]
    v1 = session.get(ModelVersion, version_id)
    v1.created_at = plan.start
    audit = {key: getattr(plan.audit_before, key) for key in ("n_audited", "n_missed", "high")}
    v2 = register_model_version(
        session,
        project_id=project_id,
        kind=v1.kind,
        artifact_path=v2_directory.as_posix(),
        metrics=new_version_metrics(
            {
                "base_version_id": v1.id,
                "threshold_rule": "fnr_target",
                "previous_threshold": plan.threshold_v1,
                "audit": audit,
                "note": plan.threshold_note,
                "simulated": True,
            },
            same_model_as=detector_lineage(v1),  # as the recalibration job: the same model
        ),
        threshold=plan.threshold_v2,
        training_snapshot={**snapshot, "base_version_id": v1.id},
        notes=f"{plan.recalibration_note} (Demo: simulated history.)",
        version=v2_number,
    )
    v2.created_at = plan.switch_at - timedelta(hours=1)
    activate_model_version(session, version_id=v2.id, user=None, system=True)
    # In the simulation v1 served from the start and v2 took over at the switch, not now.
    redate_status_changes(v1, {"active": plan.start, "retired": plan.switch_at})
    redate_status_changes(v2, {"active": plan.switch_at})
    writer = _PartWriter(session, project_id, {1: v1.id, 2: v2.id}, inspectors, data_dir)
    for part in plan.parts:
        writer.write(part)
    writer.finish()
    store_option(
        session,
        project_id,
        HISTORY_KEY,
        {
            "simulated_before": plan.simulated_before.isoformat(),
            "start": plan.start.isoformat(),
            "switch_at": plan.switch_at.isoformat(),
            "n_parts": len(plan.parts),
            "inspectors": [name for _, name in SHIFTS],
            "source": "ELPV mono test cells and their labels, each scored once by the demo model",
            "n_cells": len({part.cell.sample.path for part in plan.parts}),
            "recalibration": plan.recalibration_note,
            "defective_maps": sorted({p.cell.map_path for p in plan.parts if p.cell.sample.label}),
        },
    )


def true_labels(session: OrmSession, project_id: int) -> dict[int, int]:
    """The ground truth of the simulated parts: ``{image id: 1 defect, 0 good}``.

    Every simulated part shows one scored cell and its prediction keeps that cell's anomaly map;
    the marker lists the maps of the defective cells (``defective_maps``). Parts first
    predicted from the first real day on are left out (their truth is not recorded).

    Returns:
        The truth of each simulated part; empty for a project without a simulated history.
    """
    project = session.get(Project, project_id)
    first_real_day = None if project is None else simulated_before(project)
    if first_real_day is None:
        return {}
    defective = set((history_marker(project) or {}).get("defective_maps") or [])
    rows = session.execute(
        select(Prediction.image_id, Prediction.anomaly_map_path)
        .join(Image, Image.id == Prediction.image_id)
        .where(
            Image.project_id == project_id,
            Prediction.created_at < datetime.combine(first_real_day, time(), UTC),
        )
    )
    return {image_id: int(path in defective) for image_id, path in rows}


class _PartWriter:
    """Writes planned parts, reading each cell's file and explaining it once per threshold."""

    def __init__(
        self,
        session: OrmSession,
        project_id: int,
        version_ids: dict[int, int],
        inspectors: Sequence[User],
        data_dir: Path | None,
    ) -> None:
        self.session, self.project_id, self.data_dir = session, project_id, data_dir
        self.version_ids, self.inspectors = version_ids, inspectors
        self.cells: dict[str, tuple[bytes, np.ndarray, np.ndarray]] = {}
        self.explanations: dict[tuple[str, float], dict[str, Any] | None] = {}
        self.copies: dict[str, int] = {}
        self.reviews: list[dict[str, Any]] = []
        self.predictions: list[Prediction] = []

    def write(self, part: PlannedPart) -> None:
        sample = part.cell.sample
        name, cell = sample.path.name, str(sample.path)
        if cell not in self.cells:
            data = sample.path.read_bytes()
            anomaly_map = load_anomaly_map(part.cell.map_path, self.data_dir)
            self.cells[cell] = (data, load_image(data, name=name), anomaly_map)
        data, pixels, anomaly_map = self.cells[cell]
        key = (cell, part.threshold)
        if key not in self.explanations:
            self.explanations[key] = explain_part(
                name, pixels, anomaly_map, part.cell.score, part.threshold, None
            )
        copy = self.copies[cell] = self.copies.get(cell, 0) + 1
        image, created = get_or_create_image(
            self.session,
            data=data if copy == 1 else tagged_png(data, f"Loupe demo part {copy} of {name}"),
            original_name=f"{sample.path.stem}-{copy}{sample.path.suffix}",
            project_id=self.project_id,
            source=ImageSource.DEMO.value,
            width=int(pixels.shape[1]),
            height=int(pixels.shape[0]),
            data_dir=self.data_dir,
        )
        if created:
            image.created_at = part.at
        self.predictions.append(
            Prediction(
                image_id=image.id,
                model_version_id=self.version_ids[part.version],
                score=part.cell.score,
                threshold=part.threshold,
                verdict=part.verdict,
                decision_region=part.region,
                audit_probability=part.audit_probability,
                anomaly_map_path=part.cell.map_path,
                explanation=self.explanations[key],
                embedding=part.cell.embedding,
                audit=part.audit,
                created_at=part.at,
            )
        )
        self.reviews += [
            {
                "image_id": image.id,
                "reviewer_id": self.inspectors[review.shift].id,
                "label": review.label,
                "seconds_spent": round(review.seconds, 1),
                "created_at": review.at,
            }
            for review in part.reviews
        ]

    def finish(self) -> None:
        """Insert the predictions and the collected reviews (labels rebuilt from the log).

        Predictions are added only here: each image's savepoint would flush them one by one.
        """
        self.session.add_all(self.predictions)
        self.session.flush()
        self.predictions = []
        add_past_reviews(self.session, self.reviews)
        self.reviews = []


def tagged_png(data: bytes, text: str) -> bytes:
    """The same PNG with a ``tEXt`` comment chunk after its header: same pixels, new bytes.

    Raises:
        ValueError: If ``data`` is not a PNG file.
    """
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("Only PNG cells can be tagged as separate parts.")
    body = b"Comment\x00" + text.encode("latin-1", errors="replace")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return data[:_IHDR_END] + chunk + data[_IHDR_END:]


def _inspector(session: OrmSession, name: str) -> User:
    """The simulated inspector ``name`` (an existing account of that name is reused)."""
    existing = session.scalars(select(User).where(User.name == name)).first()
    if existing is not None:
        return existing
    return create_user(session, name, secrets.token_urlsafe(32), Role.INSPECTOR.value)


__all__ = ["history_cells", "score_cells", "seed_history", "tagged_png", "true_labels"]
