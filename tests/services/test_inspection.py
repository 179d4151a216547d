"""Inspecting uploads and folders: bad files in a batch, deduplication, stored maps, overlays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from adcore.anomaly_maps import overlay_image
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.explain import ExplanationFacts
from adcore.explain.fact_check import check_text
from db import Image, Prediction, User, init_db, make_session_factory, register_model_version
from db.review_log import add_review
from services.inspection import (
    InspectionRequest,
    InspectionResult,
    inspect_folder,
    inspect_uploads,
    rescore_images,
)
from services.map_store import load_anomaly_map
from services.scoring.predictor import Predictor
from services.server_folders import ROOTS_ENV, ServerFolderError

TINY = PatchCoreConfig(image_size=64, coreset_ratio=0.1)


@pytest.fixture(scope="module")
def detector() -> PatchCore:
    """Fitted on 8 good parts; threshold halfway between good and scratched test parts."""
    fitted = PatchCore(TINY, device="cpu")
    fitted.fit([make_part(i) for i in range(8)])
    good = max(p.score for p in fitted.predict([make_part(100 + i) for i in range(3)]))
    bad = min(p.score for p in fitted.predict([make_part(200 + i, defect=True) for i in range(3)]))
    assert bad > good
    return fitted.with_threshold((good + bad) / 2)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "data"
    monkeypatch.setenv("LOUPE_DATA_DIR", str(directory))
    monkeypatch.delenv("LOUPE_DATABASE_URL", raising=False)
    return directory


@pytest.fixture
def session_factory(data_dir: Path) -> Iterator[sessionmaker[Session]]:
    engine = init_db()
    yield make_session_factory(engine)
    engine.dispose()


def request(
    factory: sessionmaker[Session], project_id: int, version_id: int, detector: object, **how
) -> InspectionRequest:
    """The request to store parts decided by ``detector`` of version ``version_id``."""
    predictor = Predictor.load(
        factory, project_id=project_id, model_version_id=version_id, detector=detector
    )
    return InspectionRequest(predictor, **how)


def count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_bad_upload_mid_batch_gets_an_error_and_the_rest_is_stored(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    detector: PatchCore,
    data_dir: Path,
) -> None:
    project_id, version_id = project_and_version
    progress: list[float] = []
    results = inspect_uploads(
        session_factory,
        request(
            session_factory,
            project_id,
            version_id,
            detector,
            progress=lambda fraction, _message: progress.append(fraction),
            batch_size=2,
        ),
        [
            ("good.png", png(make_part(300))),
            ("junk.png", b"not an image at all"),
            ("scratch.png", png(make_part(301, defect=True))),
        ],
    )
    assert [r.name for r in results] == ["good.png", "junk.png", "scratch.png"]
    good, junk, scratch = results
    assert junk == InspectionResult.failed("junk.png", junk.error)
    assert "junk.png" in junk.error and not junk.ok
    assert (good.verdict, scratch.verdict) == ("good", "defect")
    assert good.threshold == scratch.threshold == pytest.approx(detector.threshold)
    assert count(session_factory, Image) == 2 and count(session_factory, Prediction) == 2
    assert progress == [pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0]  # one step a part
    stored = load_anomaly_map(scratch.anomaly_map_path)
    assert stored.shape == (64, 64) and stored.dtype == np.float32
    assert scratch.anomaly_map_path.startswith("maps/")
    assert (data_dir / scratch.anomaly_map_path).is_file()
    with session_factory() as session:
        row = session.get(Prediction, scratch.prediction_id)
        assert (row.image_id, row.score, row.anomaly_map_path) == (
            scratch.image_id,
            scratch.score,
            scratch.anomaly_map_path,
        )
        assert session.get(Image, good.image_id).source == "upload"


def test_an_upload_over_the_file_cap_is_refused_alone(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    detector: PatchCore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small, large = png(make_part(310)), png(make_part(311, defect=True))
    monkeypatch.setattr("services.inspection.MAX_FILE_BYTES", max(len(small), len(large)) - 1)
    shortest, longest = sorted([("a.png", small), ("b.png", large)], key=lambda u: len(u[1]))
    project_id, version_id = project_and_version
    kept, refused = inspect_uploads(
        session_factory,
        request(session_factory, project_id, version_id, detector),
        [shortest, longest],
    )
    assert kept.ok and not refused.ok and "larger than" in refused.error
    assert count(session_factory, Image) == 1


def test_the_same_bytes_twice_make_one_image_and_two_predictions(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    detector: PatchCore,
) -> None:
    project_id, version_id = project_and_version
    data = png(make_part(400))
    first, second = inspect_uploads(
        session_factory,
        request(session_factory, project_id, version_id, detector),
        [("a.png", data), ("copy-of-a.png", data)],
    )
    assert first.image_id == second.image_id
    assert first.prediction_id != second.prediction_id
    assert first.anomaly_map_path != second.anomaly_map_path
    assert count(session_factory, Image) == 1 and count(session_factory, Prediction) == 2


def test_the_version_threshold_wins_and_one_is_required(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    detector: PatchCore,
) -> None:
    project_id, version_id = project_and_version
    with session_factory() as session, session.begin():
        strict = register_model_version(
            session,
            project_id=project_id,
            kind="patchcore",
            artifact_path="m",
            metrics={},
            threshold=0.0,
            training_snapshot={},
        ).id
    (result,) = inspect_uploads(
        session_factory,
        request(session_factory, project_id, strict, detector),
        [("a.png", png(make_part(500)))],
    )
    assert (result.threshold, result.verdict) == (0.0, "defect")
    unset = SimpleNamespace(threshold=None)  # never asked to predict
    with pytest.raises(ValueError, match="no decision threshold"):
        request(session_factory, project_id, version_id, unset)
    with pytest.raises(LookupError, match="does not belong"):
        request(session_factory, project_id + 1, version_id, detector)


def test_inspect_folder_reads_image_files_only(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    detector: PatchCore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project_id, version_id = project_and_version
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))  # server folders are read under a root only
    with session_factory() as session, session.begin():
        manager = User(name="mia", role="manager", password_hash="x")
        session.add(manager)
    folder = tmp_path / "incoming"
    folder.mkdir()
    PILImage.fromarray(make_part(600)).save(folder / "b.png")
    PILImage.fromarray(make_part(601)).save(folder / "a.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    (folder / "notes.txt").write_text("not an image")
    results = inspect_folder(
        session_factory,
        request(session_factory, project_id, version_id, detector),
        folder,
        user=manager,
    )
    assert [(r.name, r.ok) for r in results] == [
        ("a.png", True),
        ("b.png", True),
        ("broken.png", False),
    ]
    with session_factory() as session:
        assert {image.source for image in session.scalars(select(Image))} == {"folder"}
    with pytest.raises(ServerFolderError, match="No folder .*missing under the server folders"):
        inspect_folder(
            session_factory,
            request(session_factory, project_id, version_id, detector),
            tmp_path / "missing",
            user=manager,
        )


def test_overlay_blends_a_resized_colour_map() -> None:
    pixels = np.full((30, 40, 3), 100, np.uint8)
    anomaly = np.zeros((8, 8), np.float32)
    anomaly[:4] = 2.0
    assert np.array_equal(overlay_image(pixels, anomaly, 0.0), pixels)
    full = overlay_image(pixels, anomaly, 1.0, colormap="jet")
    assert full.shape == (30, 40, 3) and full.dtype == np.uint8
    assert full[0, 0, 0] > 100 and full[-1, -1, 2] > 100  # hot red top, cold blue bottom
    half = overlay_image(pixels[..., 0], anomaly, 0.5, vmin=0.0, vmax=4.0, colormap="inferno")
    assert half.shape == (30, 40, 3)
    cool = overlay_image(pixels, anomaly, 1.0, threshold=20.0)  # below threshold: stays cold
    assert cool[0, 0, 2] > cool[0, 0, 0]


def test_anomaly_map_paths_cannot_leave_the_data_dir(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="escapes"):
        load_anomaly_map("../secrets.npy")


def test_a_flagged_part_resembles_the_confirmed_defects_like_it(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    detector: PatchCore,
) -> None:
    project_id, version_id = project_and_version
    spot = make_part(703).copy()
    spot[40:46, 16:22] = 250
    first = inspect_uploads(
        session_factory,
        request(session_factory, project_id, version_id, detector),
        [
            ("crack-a.png", png(make_part(700, defect=True))),
            ("crack-b.png", png(make_part(701, defect=True))),
            ("spot.png", png(spot)),
        ],
    )
    assert all(result.ok and result.verdict == "defect" for result in first)
    with session_factory() as session, session.begin():
        assert all(
            len(session.get(Prediction, r.prediction_id).embedding)
            == 2 * detector.model.embedding_dim  # float16 bytes
            for r in first
        )
        user = User(name="ines", role="inspector", password_hash="not-a-real-hash")
        session.add(user)
        session.flush()
        for result, defect_type in zip(first, ("crack", "crack", "dent"), strict=True):
            add_review(
                session,
                image_id=result.image_id,
                reviewer_id=user.id,
                label="defect",
                defect_type=defect_type,
            )

    new, good = inspect_uploads(
        session_factory,
        request(session_factory, project_id, version_id, detector),
        [
            ("crack-c.png", png(make_part(702, defect=True))),
            ("good.png", png(make_part(704))),
        ],
    )
    (again,) = rescore_images(
        session_factory,
        project_id=project_id,
        detector=detector,
        model_version_id=version_id,
        image_ids=[first[0].image_id],
    )

    with session_factory() as session:
        stored = {r.name: session.get(Prediction, r.prediction_id) for r in (new, good, again)}
    facts = ExplanationFacts.from_json(stored["crack-c.png"].explanation["facts"])
    assert (facts.similar_defect_type, facts.similar_count) == ("crack", 2)
    assert "It resembles 2 confirmed 'crack' parts." in stored["crack-c.png"].explanation["text"]
    assert check_text(stored["crack-c.png"].explanation["text"], facts).passed
    assert good.verdict == "good"
    assert "resembles" not in stored["good.png"].explanation["text"]
    assert stored["good.png"].embedding is not None
    # A confirmed part scored again is compared with the others, never with itself.
    assert "It resembles 1 confirmed 'crack' part." in stored["crack-a.png"].explanation["text"]
