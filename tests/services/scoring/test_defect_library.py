"""The library of confirmed defects read from the store (one project and model version)."""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from adcore.explain.neighbours import embedding_to_bytes, nearest_defect_types
from db import Prediction, User, register_model_version
from db.images import get_or_create_image
from db.review_log import add_review
from services.scoring.defect_library import load_defect_library

EAST, NORTH, WEST = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([-1.0, 0, 0])


def test_the_library_holds_current_confirmed_defects_of_one_version(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int]
) -> None:
    project_id, version_id = project_and_version
    with session_factory() as session, session.begin():
        other_version = register_model_version(
            session,
            project_id=project_id,
            kind="patchcore",
            artifact_path="models/widgets/v2",
            metrics={},
            threshold=None,
            training_snapshot={},
        ).id
        user = User(name="ines", role="inspector", password_hash="not-a-real-hash")
        session.add(user)
        session.flush()

        def image(seed: int, *vectors: tuple[int, np.ndarray | None]) -> int:
            stored, _ = get_or_create_image(
                session,
                data=png(make_part(seed)),
                original_name=f"{seed}.png",
                project_id=project_id,
                source="upload",
                width=64,
                height=64,
            )
            for version, vector in vectors:
                session.add(
                    Prediction(
                        image_id=stored.id,
                        model_version_id=version,
                        score=1.0,
                        threshold=0.5,
                        verdict="defect",
                        embedding=None if vector is None else embedding_to_bytes(vector),
                    )
                )
                session.flush()
            return stored.id

        crack = image(1, (version_id, NORTH), (version_id, EAST))  # the latest (EAST) counts
        relabelled = image(2, (version_id, WEST))
        untyped = image(3, (version_id, WEST))
        unlabelled = image(4, (version_id, WEST))
        other = image(5, (other_version, WEST))
        no_vector = image(6, (version_id, None))
        for image_id in (crack, relabelled, other, no_vector):
            add_review(
                session, image_id=image_id, reviewer_id=user.id, label="defect", defect_type="crack"
            )
        add_review(session, image_id=untyped, reviewer_id=user.id, label="defect")
        add_review(session, image_id=relabelled, reviewer_id=user.id, label="good")
        assert unlabelled

    with session_factory() as session:
        confirmed = load_defect_library(session, project_id, version_id)

    assert confirmed.defect_types == ("crack",)
    np.testing.assert_allclose(confirmed.vectors, [EAST])
    assert nearest_defect_types(EAST, confirmed).defect_type == "crack"
    with session_factory() as session:
        assert len(load_defect_library(session, project_id, other_version)) == 1
        assert len(load_defect_library(session, project_id + 1, version_id)) == 0
