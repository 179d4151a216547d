"""Latest predictions: each image's newest score, per project or per model version.

"The latest prediction of an image" is a correlated ``ORDER BY created_at DESC, id DESC
LIMIT 1`` subquery, which every backend answers with one short backwards walk of the
``(image_id, model_version_id, created_at)`` or ``(image_id, created_at)`` index; on SQLite this
is three to four times faster than a ``row_number()`` window, which sorts every row. No
dialect-specific function is used.

``LIMIT 1 OFFSET 0`` is written literally: SQLAlchemy's SQLite dialect otherwise binds an
``OFFSET ?`` parameter, which stops SQLite from ending the index walk at the first row (about
1.5 times slower over a whole project).

Performance note (SQLite): reference each correlated scalar subquery *once* in a statement.
SQLite flattens a derived table into the outer query, so a subquery column used in several
outer expressions is evaluated once per use; group by it instead, or join on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Subquery,
    and_,
    case,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from db.base import Label
from db.models import Image, ModelVersion, Prediction, Review
from db.models.images import newest_prediction_id

_ONE = literal_column("1")
_ZERO = literal_column("0")


def get_prediction(session: Session, prediction_id: int) -> Prediction | None:
    """The stored prediction with this id, or ``None``."""
    return session.get(Prediction, prediction_id)


def latest_prediction_value(
    image_id: ColumnElement[int],
    model_version_id: ColumnElement[int] | int | None = None,
    column: str = "id",
    *,
    prefer_version_id: int | None = None,
) -> ScalarSelect[Any]:
    """A correlated scalar: one column of the image's latest prediction.

    Args:
        image_id: The outer query's image id column.
        model_version_id: Only this version's predictions (a value or an outer column);
            ``None`` for any version.
        column: Which column of the prediction, e.g. ``"id"``, ``"score"`` or ``"verdict"``.
        prefer_version_id: Take this version's latest prediction when it has one, else the
            latest of any (allowed) version.

    Returns:
        The scalar subquery (NULL when there is no such prediction).
    """
    candidate = aliased(Prediction, name="candidate_prediction")
    pick = select(getattr(candidate, column)).where(candidate.image_id == image_id)
    if model_version_id is not None:
        pick = pick.where(candidate.model_version_id == model_version_id)
    order = [candidate.created_at.desc(), candidate.id.desc()]
    if prefer_version_id is not None:
        order.insert(0, case((candidate.model_version_id == prefer_version_id, 0), else_=1))
    return (
        pick.order_by(*order)
        .limit(_ONE)
        .offset(_ZERO)
        .correlate_except(candidate)
        .scalar_subquery()
    )


def latest_prediction_ids(
    project_id: int,
    model_version_id: int | None = None,
    *,
    per_version: bool = True,
    dialect: str = "postgresql",
) -> Subquery:
    """Each image's (or each (image, version)'s) latest prediction in a project, set by set.

    The same prediction as :func:`latest_prediction_value` (latest ``created_at``, then
    highest ``id``). Per version (``per_version``, or one version given), it is the
    predictions not ``superseded``: a plain filter, which every backend joins cheaply. The
    latest of *any* version (``per_version=False`` without a version) comes from two grouped
    passes instead of a correlated lookup per image: with tens of thousands of images
    PostgreSQL estimates the correlated form so high that it JIT-compiles it (over half a
    second per query) and joins it badly.

    Args:
        project_id: The project (predictions of its images).
        model_version_id: Only this version's predictions; ``None`` for any version.
        per_version: One row per (image, version) instead of one per image.
        dialect: The session's dialect name. For the latest of any version, SQLite gets the
            correlated lookup per image (:func:`latest_prediction_value`), which it runs
            faster than the grouped passes; both forms are portable SQL and give the same rows.

    Returns:
        A subquery with columns ``image_id, prediction_id`` (and ``model_version_id`` when
        ``per_version``).
    """
    if per_version or model_version_id is not None:
        return _latest_prediction_ids_per_version(project_id, model_version_id, per_version)
    if dialect == "sqlite":
        return _latest_prediction_ids_correlated(project_id)
    # Any version, one row per image: the latest time per image, then the highest id at it.
    in_project = Prediction.image_id.in_(select(Image.id).where(Image.project_id == project_id))
    latest_at = (
        select(Prediction.image_id, func.max(Prediction.created_at).label("latest_at"))
        .where(in_project)
        .group_by(Prediction.image_id)
        .subquery("latest_at")
    )
    at_latest = and_(
        Prediction.image_id == latest_at.c.image_id,
        Prediction.created_at == latest_at.c.latest_at,
    )
    return (
        select(Prediction.image_id, func.max(Prediction.id).label("prediction_id"))
        .join(latest_at, at_latest)  # the image is the project's: it matched one of latest_at
        .group_by(Prediction.image_id)
        .subquery("latest_prediction_ids")
    )


def _latest_prediction_ids_per_version(
    project_id: int, model_version_id: int | None, per_version: bool
) -> Subquery:
    """:func:`latest_prediction_ids` per version: the predictions no later one superseded."""
    columns: list[Any] = [Prediction.image_id]
    if per_version:
        columns.append(Prediction.model_version_id)
    columns.append(Prediction.id.label("prediction_id"))
    conditions = [
        Prediction.superseded.is_(False),
        Prediction.image_id.in_(select(Image.id).where(Image.project_id == project_id)),
    ]
    if model_version_id is not None:
        conditions.append(Prediction.model_version_id == model_version_id)
    return select(*columns).where(*conditions).subquery("latest_prediction_ids")


def rebuild_superseded(session: Session, image_ids: Iterable[int] | None = None) -> int:
    """Recompute ``predictions.superseded`` from ``created_at`` and ``id``.

    Only needed after predictions were written around the ORM (Core or bulk inserts, raw
    SQL); the mapper event in :mod:`db.models.images` keeps the flag otherwise.

    Args:
        session: The caller's session (the caller commits).
        image_ids: Only these images' predictions; ``None`` for every prediction.

    Returns:
        How many prediction rows the UPDATE matched.
    """
    predictions = Prediction.__table__
    newest = newest_prediction_id(predictions.c.image_id, predictions.c.model_version_id)
    statement = update(predictions).values(superseded=predictions.c.id != newest.scalar_subquery())
    if image_ids is not None:
        statement = statement.where(predictions.c.image_id.in_(list(image_ids)))
    result = session.execute(statement.execution_options(synchronize_session=False))
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, Prediction):
            session.expire(loaded, ["superseded"])
    return int(result.rowcount or 0)


def _latest_prediction_ids_correlated(project_id: int) -> Subquery:
    """:func:`latest_prediction_ids` of any version as one correlated lookup per image."""
    return (
        select(
            Image.id.label("image_id"),
            latest_prediction_value(Image.id).label("prediction_id"),
        )
        .where(Image.project_id == project_id)
        .subquery("latest_prediction_ids")
    )


def latest_predictions(
    project_id: int,
    *,
    model_version_id: int | None = None,
    per_version: bool = False,
    unlabelled_only: bool = False,
    prefer_version_id: int | None = None,
) -> Subquery:
    """Each image's latest prediction (by ``created_at`` then ``id``) in a project.

    Args:
        project_id: The project.
        model_version_id: Only predictions of this version; ``None`` for any version.
        per_version: One row per (image, model version of the project) instead of one per
            image (combine with ``model_version_id`` to keep a single version).
        unlabelled_only: Only images without a current label (filtered before the latest
            prediction is looked up).
        prefer_version_id: Per image, this version's latest prediction when there is one,
            else the latest of any version.

    Returns:
        A subquery with columns ``prediction_id, image_id, model_version_id, score, threshold,
        verdict, audit, scorer_version_id, defect_probability, predicted_at``; images without
        a matching prediction have no row.
    """
    statement = select(
        Prediction.id.label("prediction_id"),
        Prediction.image_id,
        Prediction.model_version_id,
        Prediction.score,
        Prediction.threshold,
        Prediction.verdict,
        Prediction.audit,
        Prediction.scorer_version_id,
        Prediction.defect_probability,
        Prediction.created_at.label("predicted_at"),
    ).select_from(Image)
    version: ColumnElement[int] | int | None = model_version_id
    if per_version:
        same_project = ModelVersion.project_id == Image.project_id
        if model_version_id is not None:
            same_project = same_project & (ModelVersion.id == model_version_id)
        statement = statement.join(ModelVersion, same_project)
        version = ModelVersion.id
    latest_id = latest_prediction_value(Image.id, version, prefer_version_id=prefer_version_id)
    # The redundant image_id equality lets planners join this subquery to others by image.
    same_image = Prediction.image_id == Image.id
    statement = statement.join(Prediction, (Prediction.id == latest_id) & same_image).where(
        Image.project_id == project_id
    )
    if unlabelled_only:
        statement = statement.where(Image.current_review_id.is_(None))
    return statement.subquery("latest_predictions")


def pending_images(
    session: Session, project_id: int, model_version_id: int, limit: int
) -> list[tuple[int, bool]]:
    """Unreviewed images of the project that a version scored, newest first.

    Returns:
        ``(image id, flagged by that version)`` pairs, at most ``limit``.
    """
    rows = session.execute(
        select(Image.id, Prediction.verdict)
        .join(Prediction, Prediction.image_id == Image.id)
        .where(
            Image.project_id == project_id,
            Prediction.model_version_id == model_version_id,
            Image.current_review_id.is_(None),
        )
        .order_by(Image.id.desc(), Prediction.id.desc())
    ).all()
    flagged: dict[int, bool] = {}
    for image_id, verdict in rows:  # the latest prediction of each image comes first
        flagged.setdefault(image_id, verdict == Label.DEFECT)
    return list(flagged.items())[:limit]


@dataclass(frozen=True)
class LabelledEmbedding:
    """A labelled part with one detector version's latest prediction of it.

    Attributes:
        image_id: The image.
        sha256: Digest of its bytes.
        stored_path: Its file, relative to the data directory.
        label: Its current human label, ``"good"`` or ``"defect"``.
        defect_type: The current review's defect type, if any.
        model_version_id: The version that made the prediction.
        score: The detector's anomaly score.
        embedding: The stored per-image vector (float16 bytes,
            :func:`adcore.explain.neighbours.embedding_from_bytes`), or ``None``.
    """

    image_id: int
    sha256: str
    stored_path: str
    label: str
    defect_type: str | None
    model_version_id: int
    score: float
    embedding: bytes | None


def labelled_with_vectors(
    session: Session, project_id: int, model_version_ids: Sequence[int]
) -> list[tuple[str, str]]:
    """The labelled parts that one of the versions scored with a vector: (sha256, label) each.

    The light count behind :func:`labelled_embeddings`: which parts a feedback scorer trained
    on these versions could learn from, without reading the vectors.
    """
    if not model_version_ids:
        return []
    scored = (
        select(Prediction.image_id)
        .where(
            Prediction.model_version_id.in_(list(model_version_ids)),
            Prediction.embedding.is_not(None),
        )
        .distinct()
    )
    rows = session.execute(
        select(Image.sha256, Review.label)
        .join(Review, Review.id == Image.current_review_id)
        .where(Image.project_id == project_id, Image.id.in_(scored))
        .order_by(Image.id)
    ).all()
    return [(row.sha256, str(row.label)) for row in rows]


def labelled_embeddings(
    session: Session, project_id: int, model_version_ids: int | Sequence[int]
) -> list[LabelledEmbedding]:
    """The project's labelled parts with their latest prediction by the given version(s).

    With several versions (a detector and its instant-update ancestors), each part's
    prediction comes from the first version in the list that scored it (its latest one).
    Parts none of the versions scored are left out; predictions without a vector are kept
    (``embedding`` is ``None``) so callers can tell "no vector" from "not scored".

    Args:
        session: An open session.
        project_id: The project.
        model_version_ids: A version id, or ids in order of preference.

    Returns:
        One row per scored labelled part, by image id.
    """
    ids = [model_version_ids] if isinstance(model_version_ids, int) else list(model_version_ids)
    if not ids:
        return []
    rows = session.execute(
        select(
            Image.id,
            Image.sha256,
            Image.stored_path,
            Review.label,
            Review.defect_type,
            Prediction.model_version_id,
            Prediction.score,
            Prediction.embedding,
        )
        .select_from(Image)
        .join(Review, Review.id == Image.current_review_id)
        .join(Prediction, Prediction.image_id == Image.id)
        .where(Image.project_id == project_id, Prediction.model_version_id.in_(ids))
        .order_by(Image.id, Prediction.created_at.desc(), Prediction.id.desc())
    ).all()
    rank = {version_id: i for i, version_id in enumerate(ids)}
    chosen: dict[int, Any] = {}
    for row in rows:  # per image, the newest prediction of each version comes first
        kept = chosen.get(row.id)
        if kept is None or rank[row.model_version_id] < rank[kept.model_version_id]:
            chosen[row.id] = row
    return [
        LabelledEmbedding(
            image_id=row.id,
            sha256=row.sha256,
            stored_path=row.stored_path,
            label=row.label,
            defect_type=row.defect_type,
            model_version_id=row.model_version_id,
            score=float(row.score),
            embedding=row.embedding,
        )
        for _, row in sorted(chosen.items())
    ]
