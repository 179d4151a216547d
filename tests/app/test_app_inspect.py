"""The inspect page: score uploads or a server folder; results table, per-file errors, detail."""

from __future__ import annotations

from pathlib import Path

from apptest_support import Workbench, make_part, png_bytes, signed_in_app
from PIL import Image
from sqlalchemy import func, select

import db
from services.inspect_options import INSPECT_KEY
from services.project_settings import store_option
from services.server_folders import ROOTS_ENV


def predictions(workbench: Workbench) -> int:
    with workbench.factory() as session:
        return session.scalar(select(func.count(db.Prediction.id)))


def test_uploads_are_scored_with_per_file_errors_and_a_detail_view(workbench: Workbench) -> None:
    before = predictions(workbench)
    at = signed_in_app("inspector")
    at.switch_page("pages/inspect.py").run()
    assert not at.exception, at.exception
    assert at.button(key="score").disabled

    at.file_uploader(key="uploads").set_value(
        [
            ("fresh-good.png", png_bytes(make_part(300)), "image/png"),
            ("fresh-scratch.png", png_bytes(make_part(301, defect=True)), "image/png"),
            ("broken.png", b"not an image at all", "image/png"),
        ]
    )
    at.run()
    at.button(key="score").click().run()

    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert sorted(table["File"]) == ["broken.png", "fresh-good.png", "fresh-scratch.png"]
    errors = dict(zip(table["File"], table["Error"], strict=True))
    assert errors["broken.png"] and not errors["fresh-good.png"]
    assert list(table["Score"].dropna()) == sorted(table["Score"].dropna(), reverse=True)
    assert predictions(workbench) == before + 2
    # Detail of the highest score: overlay opacity slider and a coloured verdict.
    detail = at.selectbox(key="detail")
    assert detail.value == 0 and "fresh-scratch.png" in detail.format_func(0)
    assert any(s.key.endswith("-opacity") for s in at.slider)
    assert any("Score" in m.value and "threshold" in m.value for m in at.markdown)


def test_a_server_folder_is_scored(workbench: Workbench, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))  # server folders are read under a root only
    folder = tmp_path / "incoming"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(make_part(400 + i)).save(folder / f"part-{i}.png")
    at = signed_in_app("manager")
    at.switch_page("pages/inspect.py").run()

    at.radio(key="source").set_value("Server folder").run()
    at.text_input(key="folder").input(str(folder))
    at.button(key="score").click().run()

    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert sorted(table["File"]) == ["part-0.png", "part-1.png"]


def test_a_missing_folder_is_reported_not_raised(workbench: Workbench, tmp_path: Path) -> None:
    with workbench.factory() as session, session.begin():  # inspectors only when allowed
        store_option(
            session, workbench.project_id, INSPECT_KEY, {"inspectors_score_server_folders": True}
        )
    at = signed_in_app("inspector")
    at.switch_page("pages/inspect.py").run()

    at.radio(key="source").set_value("Server folder").run()
    at.text_input(key="folder").input(str(tmp_path / "nowhere"))
    at.button(key="score").click().run()

    assert not at.exception, at.exception
    assert at.error and at.error[0].value.startswith("Scoring failed")


def test_a_scored_part_can_be_labelled_from_the_detail_view(workbench: Workbench) -> None:
    at = signed_in_app("inspector")
    at.switch_page("pages/inspect.py").run()
    at.file_uploader(key="uploads").set_value(
        [("labelled-scratch.png", png_bytes(make_part(302, defect=True)), "image/png")]
    )
    at.run()
    at.button(key="score").click().run()
    assert any("current label: not reviewed" in m.value for m in at.markdown)

    at.button(key="inspect_defect").click().run()

    assert not at.exception, at.exception
    with workbench.factory() as session:
        image = session.scalar(
            select(db.Image).where(db.Image.original_name == "labelled-scratch.png")
        )
        reviews = session.scalars(select(db.Review).where(db.Review.image_id == image.id)).all()
        assert [r.label for r in reviews] == ["defect"]
        assert reviews[0].reviewer.role == "inspector"
    assert any("current label: defect" in m.value for m in at.markdown)


def test_with_the_onnx_runtime_parts_are_scored_by_the_models_export(
    workbench: Workbench, monkeypatch, tmp_path: Path
) -> None:
    import shutil

    from adcore.export.onnx_export import EXPORT_FILE

    copy = tmp_path / "onnx-model"
    shutil.copytree(workbench.model_dir, copy)
    with workbench.factory() as session, session.begin():
        session.get(db.ModelVersion, workbench.version_id).artifact_path = str(copy)
    monkeypatch.setenv("LOUPE_RUNTIME", "onnx")
    before = predictions(workbench)
    at = signed_in_app("inspector")
    at.switch_page("pages/inspect.py").run()
    assert any("on onnxruntime" in c.value for c in at.caption)

    at.file_uploader(key="uploads").set_value(
        [("fresh-scratch.png", png_bytes(make_part(301, defect=True)), "image/png")]
    )
    at.run()
    at.button(key="score").click().run()

    assert not at.exception, at.exception
    assert (copy / EXPORT_FILE).is_file()
    assert any("Exported" in c.value for c in at.caption)
    assert predictions(workbench) == before + 1
    with workbench.factory() as session:
        stored = session.scalars(select(db.Prediction).order_by(db.Prediction.id.desc())).first()
        assert stored.embedding is not None  # the export gives the global vector too


def test_an_unknown_runtime_is_named_on_the_page(workbench: Workbench, monkeypatch) -> None:
    monkeypatch.setenv("LOUPE_RUNTIME", "tensorrt")
    at = signed_in_app("inspector")
    at.switch_page("pages/inspect.py").run()
    assert at.error and "LOUPE_RUNTIME='tensorrt'" in at.error[0].value
