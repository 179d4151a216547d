"""Nearest confirmed defects: cosine neighbours of known vectors (plain numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from adcore.explain.neighbours import (
    SIMILARITY_FLOOR,
    DefectLibrary,
    embedding_from_bytes,
    embedding_to_bytes,
    nearest_defect_types,
)

EAST, NORTH, WEST = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([-1.0, 0, 0])


def near(direction: np.ndarray, tilt: float, scale: float = 1.0) -> np.ndarray:
    """A vector ``tilt`` radians from ``direction`` (towards the z axis), of length ``scale``."""
    return scale * (np.cos(tilt) * direction + np.sin(tilt) * np.array([0.0, 0.0, 1.0]))


def library(*pairs: tuple[np.ndarray, str]) -> DefectLibrary:
    return DefectLibrary.from_pairs(list(pairs))


def test_the_majority_of_the_nearest_confirmed_defects_names_the_type() -> None:
    confirmed = library(
        (near(EAST, 0.1), "crack"),
        (near(EAST, 0.2, scale=50.0), "crack"),  # the length does not matter, the angle does
        (near(EAST, 0.3), "crack"),
        (near(EAST, 0.05), "scratch"),
        (near(NORTH, 0.1), "scratch"),
        (near(NORTH, 0.2), "scratch"),
        (WEST, "dent"),
    )

    found = nearest_defect_types(EAST, confirmed, k=5)

    assert found is not None
    assert (found.defect_type, found.count, found.k) == ("crack", 3, 4)  # NORTH is below 0.5
    assert found.best_similarity == pytest.approx(np.cos(0.1), abs=1e-6)


def test_only_neighbours_above_the_floor_count() -> None:
    confirmed = library((near(EAST, 1.3), "crack"), (NORTH, "scratch"), (WEST, "dent"))

    assert np.cos(1.3) < SIMILARITY_FLOOR
    assert nearest_defect_types(EAST, confirmed) is None
    assert nearest_defect_types(EAST, confirmed, floor=0.2).defect_type == "crack"


def test_only_the_k_nearest_count() -> None:
    confirmed = library(
        (near(EAST, 0.1), "crack"),
        (near(EAST, 0.2), "scratch"),
        (near(EAST, 0.3), "scratch"),
    )

    assert nearest_defect_types(EAST, confirmed, k=1).defect_type == "crack"
    assert nearest_defect_types(EAST, confirmed, k=3).defect_type == "scratch"


def test_a_tie_goes_to_the_more_similar_type() -> None:
    confirmed = library(
        (near(EAST, 0.4), "crack"),
        (near(EAST, 0.1), "scratch"),
        (near(EAST, 0.5), "crack"),
        (near(EAST, 0.2), "scratch"),
    )

    found = nearest_defect_types(EAST, confirmed, k=4)

    assert (found.defect_type, found.count, found.k) == ("scratch", 2, 4)


def test_a_part_never_resembles_itself() -> None:
    confirmed = DefectLibrary.from_pairs(
        [(EAST, "crack"), (near(EAST, 0.3), "scratch")], keys=["self", "other"]
    )

    found = nearest_defect_types(EAST, confirmed, exclude_key="self")

    assert (found.defect_type, found.count) == ("scratch", 1)


@pytest.mark.parametrize("query", [np.zeros(3), np.array([np.nan, 0.0, 0.0])])
def test_a_zero_or_broken_vector_resembles_nothing(query: np.ndarray) -> None:
    assert nearest_defect_types(query, library((EAST, "crack"))) is None


def test_an_empty_library_gives_nothing() -> None:
    assert nearest_defect_types(EAST, DefectLibrary.empty()) is None
    assert len(DefectLibrary.from_pairs([])) == 0


def test_bad_inputs_get_clear_messages() -> None:
    with pytest.raises(ValueError, match="does not match the library"):
        nearest_defect_types(np.ones(4), library((EAST, "crack")))
    with pytest.raises(ValueError, match="one length"):
        DefectLibrary.from_pairs([(EAST, "crack"), (np.ones(4), "dent")])
    with pytest.raises(ValueError, match="k must be"):
        nearest_defect_types(EAST, library((EAST, "crack")), k=0)
    with pytest.raises(ValueError, match="float16"):
        embedding_from_bytes(b"\x00\x01\x02")


def test_embeddings_are_stored_as_float16() -> None:
    vector = np.array([0.5, -1.25, 3.0e6, 1e-3], dtype=np.float32)

    blob = embedding_to_bytes(vector)
    back = embedding_from_bytes(blob)

    assert len(blob) == 2 * vector.size
    assert back.dtype == np.float32
    assert back[:2].tolist() == [0.5, -1.25]
    assert back[2] == np.finfo(np.float16).max  # clipped, not infinite
    assert back[3] == pytest.approx(1e-3, rel=1e-3)
