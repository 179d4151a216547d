"""End to end in a real headless Chromium: sign in, upload, see the score, click Defect."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from e2e_seed import INSPECTOR, INSPECTOR_PASSWORD, Served, textured_part
from live_app import open_browser, sign_in
from PIL import Image
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import db

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_an_inspector_uploads_a_part_sees_its_score_and_labels_it_defect(
    served: Served, tmp_path: Path
) -> None:
    upload = tmp_path / "incoming-scratch.png"
    buffer = io.BytesIO()
    Image.fromarray(textured_part(500, scratch=True)).save(buffer, format="PNG")
    upload.write_bytes(buffer.getvalue())

    with open_browser() as page:
        sign_in(page, served.app.url, INSPECTOR, INSPECTOR_PASSWORD)
        page.get_by_role("link", name="Inspect").click()
        page.locator("input[type=file]").set_input_files(str(upload))
        page.get_by_text("incoming-scratch.png").first.wait_for()
        page.get_by_role("button", name="Score").click()
        page.get_by_text("Results: 1 file(s)").wait_for()
        verdict_line = page.get_by_text("vs threshold").first
        verdict_line.wait_for()
        assert "Score" in verdict_line.inner_text()
        page.locator(".st-key-inspect_defect button").click()
        page.get_by_text("current label: defect").wait_for()

    engine = create_engine(served.database_url)
    try:
        with Session(engine) as session:
            image = session.scalar(
                select(db.Image).where(db.Image.original_name == "incoming-scratch.png")
            )
            assert image is not None, served.app.log()
            prediction = session.scalar(
                select(db.Prediction).where(db.Prediction.image_id == image.id)
            )
            assert prediction is not None and prediction.score is not None
            reviews = session.scalars(select(db.Review).where(db.Review.image_id == image.id)).all()
            assert [(r.label, r.reviewer.name) for r in reviews] == [("defect", INSPECTOR)]
    finally:
        engine.dispose()
