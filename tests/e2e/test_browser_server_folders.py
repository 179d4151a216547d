"""End to end in a real headless Chromium: who may score a server folder, and what a refusal says.

An inspector gets no "Server folder" choice while the project's option is off (the default).
An admin (a manager's rights) who types a folder outside the server folder roots, and then a
missing folder under the root (``<data dir>/incoming`` by default), reads the same message.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_seed import ADMIN_PASSWORD, INSPECTOR, INSPECTOR_PASSWORD, Served
from live_app import open_browser, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_server_folders_are_for_managers_and_say_the_same_for_outside_and_missing(
    served: Served, tmp_path: Path
) -> None:
    outside = tmp_path  # exists, but is not under the root
    missing = served.app.data_dir / "incoming" / "no-such-folder"
    with open_browser() as page:
        sign_in(page, served.app.url, INSPECTOR, INSPECTOR_PASSWORD)
        page.get_by_role("link", name="Inspect").click()
        page.get_by_role("button", name="Score").wait_for()  # drawn after the choice
        assert page.get_by_text("Server folder").count() == 0
        page.get_by_role("button", name="Sign out").click()

        sign_in(page, served.app.url, "admin", ADMIN_PASSWORD)
        page.get_by_role("link", name="Inspect").click()
        page.get_by_text("Server folder", exact=True).click()
        messages = []
        for folder in (outside, missing):
            page.get_by_role("textbox", name="Folder on the server").fill(str(folder))
            page.get_by_role("button", name="Score").click()
            shown = page.get_by_text(f"Scoring failed: No folder {folder} under")
            shown.wait_for()
            messages.append(shown.inner_text().replace(str(folder), "<folder>"))
    assert messages[0] == messages[1], served.app.log()
    assert "under the server folders this server may read" in messages[0]
