"""End to end in a real headless Chromium: a manager points verdicts at a receiver, replays.

The story: an admin sets the project's webhook on the Line page to a wrong address with one
attempt, inspects a part and labels it (a verdict and a label go out and both fail), reads the
dead letters on the Line page, corrects the URL and replays them: the local receiver then
gets both. A delivery worker on the same database stands in for ``loupe api`` / ``loupe
deliver``.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from e2e_seed import ADMIN_PASSWORD, Served, textured_part
from live_app import open_browser, sign_in
from PIL import Image
from webhook_receiver import receiving

import db
from workers.outbound_delivery import OutboundDelivery

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_manager_fixes_the_webhook_and_replays_the_dead_letters(
    served: Served, tmp_path: Path
) -> None:
    upload = tmp_path / "line-part.png"
    buffer = io.BytesIO()
    Image.fromarray(textured_part(510, scratch=True)).save(buffer, format="PNG")
    upload.write_bytes(buffer.getvalue())
    engine = db.init_db(served.database_url)
    sender = OutboundDelivery(
        db.make_session_factory(engine), poll_seconds=0.2, retry_base_seconds=0.2
    )
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with receiving() as receiver, open_browser(1400, 1400) as page:
            sign_in(page, served.app.url, "admin", ADMIN_PASSWORD)
            page.get_by_role("link", name="Line").click()
            page.get_by_text("Send to a webhook").click()
            page.get_by_role("textbox", name="Webhook URL").fill("http://127.0.0.1:9/wrong")
            page.get_by_label("Attempts before a dead letter").fill("1")
            page.get_by_role("button", name="Save where verdicts go").click()
            page.get_by_text("now goes to the webhook").wait_for()

            page.get_by_role("link", name="Inspect").click()
            page.locator("input[type=file]").set_input_files(str(upload))
            page.get_by_text("line-part.png").first.wait_for()
            page.get_by_role("button", name="Score").click()
            page.get_by_text("Results: 1 file(s)").wait_for()
            page.locator(".st-key-inspect_defect button").click()
            page.get_by_text("current label: defect").wait_for()

            page.get_by_role("link", name="Line").click()
            page.get_by_text("2 messages could not be delivered").wait_for(timeout=30_000)
            page.get_by_role("textbox", name="Webhook URL").fill(receiver.url)
            page.get_by_role("button", name="Save where verdicts go").click()
            page.get_by_text("now goes to the webhook").wait_for()
            page.get_by_role("button", name="Replay all 2 dead letters").click()
            page.get_by_text("2 messages queued again").wait_for()
            bodies = receiver.wait_for(2, timeout=20)
    finally:
        stop.set()
        thread.join(timeout=10)
        engine.dispose()
    assert sorted(body["event"] for body in bodies) == ["review", "verdict"], served.app.log()
    review = next(body for body in bodies if body["event"] == "review")
    assert (review["filename"], review["label"], review["reviewer"]) == (
        "line-part.png",
        "defect",
        "admin",
    )
