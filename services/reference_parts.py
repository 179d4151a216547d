"""A good part to show beside the part under review: what this kind of part looks like normally.

The reference is, in order of preference:

1. the **nearest part inspectors confirmed good**: the confirmed-good image of the project whose
   stored vector (``Prediction.embedding``, by the same detector lineage as the part's
   prediction, so the vectors are comparable) has the largest cosine similarity with the part's;
2. else a **training image** of the part's model version: the first entry of its training
   snapshot whose recorded file is still there (snapshots record paths since
   :func:`services.model_management.save_and_register` was given them).

Neither needs a model: only stored vectors and files are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from adcore.explain.neighbours import embedding_from_bytes
from db.image_store import absolute_image_path
from db.model_families import detector_lineage
from db.model_lineages import label_of
from db.models import Image, ModelVersion, Prediction
from db.predictions import labelled_embeddings

__all__ = ["ReferencePart", "reference_part"]


@dataclass(frozen=True)
class ReferencePart:
    """A good part to compare with.

    Attributes:
        path: Its file.
        caption: What it is, for the screen (e.g. "Nearest confirmed-good part: cell_17.png").
        image_id: Its image row, when it is one of the project's parts.
        similarity: Cosine similarity of its vector with the part's, when measured.
    """

    path: Path
    caption: str
    image_id: int | None = None
    similarity: float | None = None


def reference_part(
    session: Session, prediction_id: int, data_dir: Path | None = None
) -> ReferencePart | None:
    """The reference good part for a prediction's image (see the module doc), or ``None``."""
    prediction = session.get(Prediction, prediction_id)
    if prediction is None:
        return None
    version = session.get(ModelVersion, prediction.model_version_id)
    nearest = _nearest_confirmed_good(session, prediction, version, data_dir)
    if nearest is not None:
        return nearest
    return _training_image(version)


def _nearest_confirmed_good(
    session: Session,
    prediction: Prediction,
    version: ModelVersion | None,
    data_dir: Path | None,
) -> ReferencePart | None:
    if prediction.embedding is None or version is None:
        return None
    image = session.get(Image, prediction.image_id)
    try:
        query = _unit(embedding_from_bytes(prediction.embedding))
    except ValueError:
        return None
    best: tuple[float, int, str, str] | None = None
    for row in labelled_embeddings(session, image.project_id, detector_lineage(version)):
        if row.label != "good" or row.embedding is None or row.image_id == image.id:
            continue
        try:
            vector = _unit(embedding_from_bytes(row.embedding))
        except ValueError:
            continue
        if vector.size != query.size:
            continue
        similarity = float(vector @ query)
        if best is None or similarity > best[0]:
            best = (similarity, row.image_id, row.stored_path, row.sha256)
    if best is None:
        return None
    similarity, image_id, stored_path, _ = best
    path = absolute_image_path(stored_path, data_dir)
    if not path.is_file():
        return None
    name = session.get(Image, image_id).original_name
    return ReferencePart(
        path,
        f"Nearest part confirmed good: {name} (similarity {similarity:.2f})",
        image_id,
        similarity,
    )


def _training_image(version: ModelVersion | None) -> ReferencePart | None:
    if version is None:
        return None
    for entry in (version.training_snapshot or {}).get("images") or []:
        recorded = entry.get("path") if isinstance(entry, dict) else None
        if recorded and Path(recorded).is_file():
            caption = f"A good training part of model {label_of(version)}"
            return ReferencePart(Path(recorded), caption)
    return None


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
