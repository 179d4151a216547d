"""The scoring service: one object per model version turns images into decided verdicts.

A :class:`Predictor` holds everything a verdict depends on, read in one session when it is
made: the version's threshold (the detector's own when the version has none yet) after checking
that the version belongs to the project, the feedback scorer that decides for the version
(:func:`services.scoring.feedback.deciding_scorer`), and the project's audit share (the draw
itself is made when the part is stored, :class:`services.audit_sampling.AuditSampler`). The
detector comes in the runtime its caller loaded it with (torch or ONNX,
:mod:`services.scoring.runtime`). Make one per call, upload batch, folder or post:
:meth:`Predictor.load` for a given version, :meth:`Predictor.active` for the project's active
one.

:meth:`Predictor.decide` is the only place in Loupe where a part's verdict is decided: the
*decision cascade*. Stage 1, the screen, is the detector at its threshold (the one rule,
:func:`adcore.verdicts.is_flagged`); parts it passes are good. Stage 2, the triage model (the
project's active feedback scorer, when one fits the detector and its gate passed), looks only
at the parts the screen flagged: below its auto-accept threshold a part is auto-accepted as
good, otherwise it is sent to a human (verdict defect). Each decision names its region
(:func:`adcore.audit.decision_region`: sent to a human, auto-accepted, near pass, deep pass),
whose known audit odds the storing transaction draws with.

Images are read, decoded (:func:`adcore.image_io.load_image`) and scored a batch at a time;
each decision carries the verdict and its grounded explanation
(:mod:`services.scoring.explanations`: the confirmed defects' vectors are read at most once per
batch). An unreadable file or a batch that failed to score becomes a :class:`Refusal`, and the
rest goes on. Storing what was decided is :mod:`services.inspection`'s job.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from adcore.audit import SENT_TO_HUMAN, decision_region
from adcore.errors import ImageLoadError
from adcore.explain.neighbours import DefectLibrary
from adcore.image_io import ImageLimits, load_image
from adcore.verdicts import DEFECT, GOOD, is_flagged
from db.models import ModelVersion, Project
from services.audit_sampling import AuditSampler, audit_sampler
from services.scoring.explanations import (
    confirmed_defects,
    explain_part,
    similar_defects,
    with_scorer_decision,
)
from services.scoring.feedback import (
    ActiveScorer,
    ScorerDecision,
    deciding_scorer,
    scorer_decisions,
)

__all__ = ["DEFAULT_BATCH_SIZE", "Decision", "Incoming", "Predictor", "ReadBytes", "Refusal"]

DEFAULT_BATCH_SIZE = 16
"""Images scored per ``predict`` call when neither the caller nor the detector says."""

ReadBytes = Callable[[], bytes]
"""Reads one image file's bytes (an ``OSError`` or ``ImageLoadError`` refuses that file)."""
Incoming = tuple[str, ReadBytes]
"""One image to decide: its name (display only) and how to read its bytes."""


@dataclass(frozen=True)
class Decision:
    """One scored image and the verdict decided on it.

    Attributes:
        name: The upload's or file's name.
        data: The file's bytes (stored as the image).
        width: Decoded width in pixels.
        height: Decoded height in pixels.
        score: The detector's anomaly score.
        threshold: The version's threshold the score was judged against.
        verdict: ``"defect"`` (sent to a human) when the screen flagged the part and the
            triage model did not auto-accept it, else ``"good"``.
        anomaly_map: The detector's anomaly map.
        embedding: The detector's global vector, or ``None`` for detectors without one.
        explanation: ``{"facts", "text"}`` (and ``"scorer"`` when it decided), or ``None``
            when the explainer failed.
        scorer: The triage model's decision, or ``None`` when the screen alone decided.
        region: Where the cascade put the part (:data:`adcore.audit.REGIONS`).
    """

    name: str
    data: bytes
    width: int
    height: int
    score: float
    threshold: float
    verdict: str
    anomaly_map: np.ndarray
    embedding: np.ndarray | None
    explanation: dict[str, Any] | None
    scorer: ScorerDecision | None = None
    region: str = SENT_TO_HUMAN

    @property
    def defect_probability(self) -> float | None:
        """The feedback scorer's p(defect) when it decided, else ``None``."""
        return None if self.scorer is None else self.scorer.probability


@dataclass(frozen=True)
class Refusal:
    """An image that could not be decided (unreadable, too large, scoring failed) and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class Predictor:
    """One model version, ready to decide verdicts (see the module docstring).

    Attributes:
        sessions: The application's session factory (the confirmed defects are read with it).
        project_id: The project.
        version_id: The model version the detector was loaded from.
        threshold: The threshold in force (the version's, else the detector's).
        detector: The fitted detector (``predict(list of arrays) -> list of predictions``).
        scorer: The feedback scorer deciding for this version, or ``None``.
        audit: The project's audit sampler (its share, and the random generator for draws).
    """

    sessions: sessionmaker[OrmSession]
    project_id: int
    version_id: int
    threshold: float
    detector: Any
    scorer: ActiveScorer | None
    audit: AuditSampler

    @classmethod
    def load(
        cls,
        Session: sessionmaker[OrmSession],  # noqa: N803 - the app's session factory
        *,
        project_id: int,
        model_version_id: int,
        detector: Any,
        audit_rng: random.Random | None = None,
    ) -> Predictor:
        """The predictor of a given version of the project, with ``detector`` loaded from it.

        Args:
            Session: The application's session factory.
            project_id: The project.
            model_version_id: The model version ``detector`` was loaded from.
            detector: The fitted detector, in the runtime the caller chose.
            audit_rng: Random generator for the audit draws (seeded in tests); default the
                system's.

        Raises:
            LookupError: If the version does not exist or belongs to another project, or the
                project does not exist.
            ValueError: When neither the version nor the detector has a threshold.
        """
        with Session() as session:
            version = session.get(ModelVersion, model_version_id)
            if version is None or version.project_id != project_id:
                raise LookupError(
                    f"Model version {model_version_id} does not belong to project {project_id}."
                )
            threshold, scorer, audit = _in_force(session, version, audit_rng)
        return cls(
            Session,
            project_id,
            model_version_id,
            _threshold(threshold, detector, model_version_id),
            detector,
            scorer,
            audit,
        )

    @classmethod
    def active(
        cls,
        Session: sessionmaker[OrmSession],  # noqa: N803
        project_id: int,
        detector_for: Callable[[str], Any],
        *,
        audit_rng: random.Random | None = None,
    ) -> Predictor | None:
        """The predictor of the project's active version, or ``None`` when it has none.

        Args:
            Session: The application's session factory.
            project_id: The project.
            detector_for: Loads the detector of a version's artifact path (cached by the
                caller, e.g. :func:`services.scoring.runtime.detector_loader`).
            audit_rng: Random generator for the audit draws; default the system's.

        Raises:
            LookupError: If the project does not exist.
            ValueError: When neither the version nor its detector has a threshold.
        """
        with Session() as session:
            project = session.get(Project, project_id)
            if project is None:
                raise LookupError(f"No project with id {project_id}.")
            version = project.active_model_version
            if version is None:
                return None
            version_id, artifact = version.id, version.artifact_path
            threshold, scorer, audit = _in_force(session, version, audit_rng)
        detector = detector_for(artifact)
        return cls(
            Session,
            project_id,
            version_id,
            _threshold(threshold, detector, version_id),
            detector,
            scorer,
            audit,
        )

    def decide(
        self,
        items: Sequence[Incoming],
        *,
        limits: ImageLimits | None = None,
        batch_size: int | None = None,
    ) -> Iterator[Decision | Refusal]:
        """Read, score and decide images, a batch at a time: one answer per item, in order.

        Args:
            items: ``(name, read)`` pairs; each file is read when its batch comes.
            limits: Image size limits for decoding.
            batch_size: Images scored per ``predict`` call; default the detector's batch size.

        Yields:
            A :class:`Decision`, or a :class:`Refusal` for a file that could not be read or
            decoded, or whose batch failed to score (e.g. out of memory: that batch only).
        """
        step = batch_size or getattr(getattr(self.detector, "config", None), "batch_size", None)
        step = max(1, int(step or DEFAULT_BATCH_SIZE))
        for start in range(0, len(items), step):
            yield from self._decide_batch(items[start : start + step], limits)

    def _decide_batch(
        self, batch: Sequence[Incoming], limits: ImageLimits | None
    ) -> list[Decision | Refusal]:
        answers: list[Decision | Refusal | None] = [None] * len(batch)
        decoded: list[tuple[int, str, bytes, np.ndarray]] = []
        for index, (name, read) in enumerate(batch):
            try:
                data = read()
                decoded.append((index, name, data, load_image(data, limits=limits, name=name)))
            except (ImageLoadError, OSError) as err:
                answers[index] = Refusal(name, str(err) or type(err).__name__)
        if decoded:
            try:
                predictions = self.detector.predict([pixels for *_, pixels in decoded])
            except (RuntimeError, ValueError) as err:  # e.g. out of memory: this batch only
                for index, name, _, _ in decoded:
                    answers[index] = Refusal(name, f"Scoring failed: {err}")
            else:
                for (index, *_), decision in zip(
                    decoded, self._judge(decoded, predictions), strict=True
                ):
                    answers[index] = decision
        return [answer for answer in answers if answer is not None]

    def _judge(
        self, decoded: Sequence[tuple[int, str, bytes, np.ndarray]], predictions: Sequence[Any]
    ) -> list[Decision]:
        """The verdicts and explanations of one scored batch."""
        scores = [float(p.score) for p in predictions]
        vectors = [getattr(p, "embedding", None) for p in predictions]
        flagged = [is_flagged(score, self.threshold) for score in scores]
        by_scorer = scorer_decisions(self.scorer, scores, vectors, flagged)
        auto_accepted = [decided is not None and decided.verdict == GOOD for decided in by_scorer]
        verdicts = [
            DEFECT if screened and not accepted else GOOD
            for screened, accepted in zip(flagged, auto_accepted, strict=True)
        ]
        near_band = self.audit.odds.near_band
        regions = [
            decision_region(score, self.threshold, auto_accepted=accepted, near_band=near_band)
            for score, accepted in zip(scores, auto_accepted, strict=True)
        ]
        library = DefectLibrary.empty()
        if any(v == DEFECT and e is not None for v, e in zip(verdicts, vectors, strict=True)):
            library = confirmed_defects(self.sessions, self.project_id, self.version_id)
        decisions = []
        for (_, name, data, pixels), prediction, score, vector, verdict, decided, region in zip(
            decoded, predictions, scores, vectors, verdicts, by_scorer, regions, strict=True
        ):
            similar = None
            if verdict == DEFECT and vector is not None:
                similar = similar_defects(name, data, vector, library)
            explanation = explain_part(
                name, pixels, prediction.anomaly_map, score, self.threshold, similar
            )
            decisions.append(
                Decision(
                    name=name,
                    data=data,
                    width=int(pixels.shape[1]),
                    height=int(pixels.shape[0]),
                    score=score,
                    threshold=self.threshold,
                    verdict=verdict,
                    anomaly_map=prediction.anomaly_map,
                    embedding=vector,
                    explanation=with_scorer_decision(explanation, decided),
                    scorer=decided,
                    region=region,
                )
            )
        return decisions


def _in_force(
    session: OrmSession, version: ModelVersion, audit_rng: random.Random | None
) -> tuple[float | None, ActiveScorer | None, AuditSampler]:
    """The version's threshold, its deciding scorer and the project's audit sampler."""
    return (
        version.threshold,
        deciding_scorer(session, version.project_id, version),
        audit_sampler(session, version.project_id, audit_rng),
    )


def _threshold(threshold: float | None, detector: Any, version_id: int) -> float:
    """The version's threshold, else the detector's own; one of them is required."""
    if threshold is None:
        threshold = getattr(detector, "threshold", None)
    if threshold is None:
        raise ValueError(
            f"Model version {version_id} has no decision threshold yet: a manager must "
            "set one before parts can be judged."
        )
    return float(threshold)
