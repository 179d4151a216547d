"""The review desk in a real headless Chromium: every key press counts once, on its part.

40 flagged parts wait in the queue; the inspector presses G and D alternately, 4 presses a
second, reading before each press which part is on screen. The database must then hold exactly
40 reviews, one per part, each with the label pressed while that part was shown.
"""

from __future__ import annotations

import time

import pytest
from e2e_seed import INSPECTOR, INSPECTOR_PASSWORD, Served, queue_flagged_parts
from live_app import open_browser, sign_in
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import db

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

N_PARTS = 40
PRESS_INTERVAL = 0.25  # 4 presses a second
SHOWN = ".desk[data-image-id]"


def shown_part(page, wait_seconds: float = 15.0) -> int | None:
    """The part on screen, waiting (at most ``wait_seconds``) while the desk fetches more.

    An inspector waits for the next picture on a busy server too.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        value = page.locator(".desk").first.get_attribute("data-image-id")
        if value or time.monotonic() > deadline:
            return int(value) if value else None
        time.sleep(0.05)


def test_alternate_g_and_d_at_four_presses_a_second_record_each_part_once(
    served: Served,
) -> None:
    queue_flagged_parts(served, N_PARTS)
    pressed: list[tuple[int, str]] = []
    with open_browser() as page:
        sign_in(page, served.app.url, INSPECTOR, INSPECTOR_PASSWORD)
        page.get_by_role("link", name="Review").click()
        page.wait_for_function(
            "() => { const d = document.querySelector('.desk') ||"
            " [...document.querySelectorAll('*')].map(e => e.shadowRoot)"
            ".filter(Boolean).map(r => r.querySelector('.desk')).find(Boolean);"
            " return d && d.dataset.imageId; }"
        )
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        for i in range(N_PARTS):
            part = shown_part(page)
            key = "g" if i % 2 == 0 else "d"
            assert part is not None, f"no part on screen at press {i}"
            page.keyboard.press(key)
            pressed.append((part, "good" if key == "g" else "defect"))
            time.sleep(PRESS_INTERVAL)
        page.get_by_text("All presses saved.").wait_for(timeout=60_000)
        page.get_by_text("Nothing left to review in this project.").wait_for(timeout=60_000)

    engine = create_engine(served.database_url)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(db.Review.image_id, db.Review.label)
                .join(db.User, db.User.id == db.Review.reviewer_id)
                .where(db.User.name == INSPECTOR, db.Review.is_undo.is_(False))
                .order_by(db.Review.id)
            ).all()
    finally:
        engine.dispose()
    assert len({part for part, _ in pressed}) == N_PARTS  # each press saw a new part
    assert [(row.image_id, row.label) for row in rows] == pressed, served.app.log()[-3000:]
