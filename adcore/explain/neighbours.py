"""Which confirmed defect types a flagged part resembles, by feature similarity.

Every prediction stores the detector's global feature vector of the part
(``Prediction.embedding``, float16 bytes: :func:`embedding_to_bytes`). The *library* of a
project and model version holds the vectors of its confirmed defects: images whose current
label (``images.current_review_id``) is ``defect`` with a defect type, each with the vector of
its latest prediction by that version (read by :mod:`services.scoring.defect_library`). Vectors of
different model versions are never compared.

Rules of :func:`nearest_defect_types` (fixed, so the same inputs give the same fact):

* similarity is the cosine of the two vectors (a zero vector resembles nothing);
* the ``k`` most similar library entries (default :data:`DEFAULT_K`) are kept, but only those
  whose similarity is at least :data:`SIMILARITY_FLOOR`;
* the fact names the defect type most frequent among them and its count; a tie goes to the type
  with the larger summed similarity, then to the alphabetically first.

The maths is plain numpy; reading the library from the store is
:mod:`services.scoring.defect_library`'s job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_K = 5
"""Neighbours the majority is taken over."""
SIMILARITY_FLOOR = 0.8
"""Least cosine similarity of a neighbour. The detectors' vectors are centred (anomaly-focused
pooling minus plain pooling, :mod:`adcore.detectors.pooling`), so similarities spread widely.
On Magnetic-tile defects with PatchCore (bench/neighbour_types.py, bench/RESULTS_explain.md)
0.8 named a type for most defects, nearly always the right one, and rarely named any when the
defect's own type had no confirmed example; lower floors named wrong types far more often."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DefectLibrary:
    """The confirmed defects a part is compared with (one project and model version).

    Attributes:
        vectors: (M, D) float32 unit-length rows (zero rows for zero vectors).
        defect_types: (M,) defect type of each row.
        keys: (M,) identity of each row's image (its sha256, or "" when unknown), so a part is
            never compared with itself.
    """

    vectors: np.ndarray
    defect_types: tuple[str, ...]
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.defect_types)

    @classmethod
    def empty(cls) -> DefectLibrary:
        """A library without any confirmed defect."""
        return cls(np.zeros((0, 0), dtype=np.float32), (), ())

    @classmethod
    def from_pairs(
        cls, pairs: Sequence[tuple[np.ndarray, str]], keys: Sequence[str] | None = None
    ) -> DefectLibrary:
        """Build a library from ``(vector, defect type)`` pairs.

        Args:
            pairs: (D,) vectors (any float dtype) with their defect types.
            keys: Image identity of each pair (default: all unknown).

        Raises:
            ValueError: If the vectors are not all 1-D of the same length, or the keys do not
                match the pairs.
        """
        if not pairs:
            return cls.empty()
        vectors = [np.asarray(vector, dtype=np.float32) for vector, _ in pairs]
        dims = {v.shape for v in vectors}
        if len(dims) != 1 or len(next(iter(dims))) != 1:
            raise ValueError(
                f"expected 1-D vectors of one length, got shapes {sorted(map(str, dims))}"
            )
        keys = tuple(keys) if keys is not None else ("",) * len(pairs)
        if len(keys) != len(pairs):
            raise ValueError(f"{len(keys)} keys for {len(pairs)} vectors")
        return cls(_unit_rows(np.stack(vectors)), tuple(str(t) for _, t in pairs), keys)


@dataclass(frozen=True)
class SimilarDefects:
    """The nearest confirmed defects' majority type.

    Attributes:
        defect_type: The most frequent defect type among the neighbours.
        count: How many neighbours have that type (>= 1).
        k: Neighbours considered (those above the floor, at most ``k`` asked for).
        best_similarity: Highest cosine similarity among the neighbours of that type.
    """

    defect_type: str
    count: int
    k: int
    best_similarity: float


def nearest_defect_types(
    query: np.ndarray,
    library: DefectLibrary,
    *,
    k: int = DEFAULT_K,
    floor: float = SIMILARITY_FLOOR,
    exclude_key: str | None = None,
) -> SimilarDefects | None:
    """The defect type most frequent among a part's nearest confirmed defects.

    Args:
        query: (D,) global feature vector of the part.
        library: The confirmed defects of the same project and model version.
        k: Neighbours the majority is taken over.
        floor: Least cosine similarity of a neighbour.
        exclude_key: The part's own key (sha256): its own library entry is skipped.

    Returns:
        The majority type and its count, or None when no confirmed defect is at least ``floor``
        similar (or the query is a zero vector, or the library is empty).

    Raises:
        ValueError: If the query is not 1-D of the library's length, or ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(library) == 0:
        return None
    vector = np.asarray(query, dtype=np.float32)
    if vector.shape != library.vectors.shape[1:]:
        raise ValueError(
            f"query of shape {vector.shape} does not match the library's vectors "
            f"{library.vectors.shape[1:]} (different model?)"
        )
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        return None
    similarity = library.vectors @ (vector / norm)  # (M,)
    if exclude_key:
        similarity = np.where(np.asarray(library.keys) == exclude_key, -np.inf, similarity)
    order = np.argsort(-similarity, kind="stable")[:k]
    order = order[similarity[order] >= floor]
    if order.size == 0:
        return None
    counts: dict[str, int] = {}
    sums: dict[str, float] = {}
    best: dict[str, float] = {}
    for index in order:
        name, value = library.defect_types[index], float(similarity[index])
        counts[name] = counts.get(name, 0) + 1
        sums[name] = sums.get(name, 0.0) + value
        best[name] = max(best.get(name, -1.0), value)
    winner = min(counts, key=lambda name: (-counts[name], -sums[name], name))
    return SimilarDefects(winner, counts[winner], int(order.size), best[winner])


def embedding_to_bytes(vector: np.ndarray) -> bytes:
    """A (D,) vector as float16 little-endian bytes for ``Prediction.embedding``.

    Values beyond float16's range are clipped to it (the direction is what counts).
    """
    values = np.asarray(vector, dtype=np.float32).ravel()
    limit = float(np.finfo(np.float16).max)
    return np.clip(np.nan_to_num(values), -limit, limit).astype("<f2").tobytes()


def embedding_from_bytes(blob: bytes) -> np.ndarray:
    """(D,) float32 vector from :func:`embedding_to_bytes` bytes.

    Raises:
        ValueError: If the byte count is not that of float16 values.
    """
    if len(blob) % 2:
        raise ValueError(f"an embedding of {len(blob)} bytes is not float16 values")
    return np.frombuffer(blob, dtype="<f2").astype(np.float32)


def usual_length(vectors: Sequence[np.ndarray]) -> int:
    """The most common length among stored vectors (0 for none).

    A stored vector of another length is a corrupt row or one from another detector: readers
    of ``Prediction.embedding`` keep only vectors of this length.
    """
    lengths = [int(np.asarray(vector).size) for vector in vectors]
    return max(set(lengths), key=lengths.count) if lengths else 0


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """(M, D) rows scaled to unit length; zero (or non-finite) rows become zero."""
    vectors = np.nan_to_num(vectors.astype(np.float32, copy=False))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
