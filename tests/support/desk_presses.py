"""Drive the Review page's desk in ``AppTest``: read what it sends, press keys as the browser.

The desk is a custom component: ``AppTest`` cannot click inside it, but it can read the data
Python sends it (the component's JSON) and set the state the browser would set (its ``sync``
value: instance, outbox of presses, part on screen). Imported as ``from desk_presses import
...`` (``tests/support`` is on pytest's pythonpath).
"""

from __future__ import annotations

import json
from typing import Any

from streamlit.testing.v1 import AppTest

INSTANCE = "apptest"


def desk_payload(at: AppTest) -> dict[str, Any]:
    """The data the desk received in the last run."""
    [desk] = at.get("bidi_component")
    return json.loads(desk.proto.json)


def label_press(press: int, image_id: int, label: str, **fields: Any) -> dict[str, Any]:
    """A G / D press on ``image_id`` with the browser's fields (``note``, ``defect_type``...)."""
    return {
        "press": f"{INSTANCE}-{press}",
        "kind": "label",
        "image_id": image_id,
        "label": label,
        **fields,
    }


def accept_press(press: int, image_ids: list[int]) -> dict[str, Any]:
    """An A press: accept these passed parts as good."""
    return {"press": f"{INSTANCE}-{press}", "kind": "accept_page", "image_ids": image_ids}


def undo_press(press: int) -> dict[str, Any]:
    """A U press."""
    return {"press": f"{INSTANCE}-{press}", "kind": "undo"}


def send(
    at: AppTest,
    outbox: list[dict[str, Any]],
    *,
    instance: str = INSTANCE,
    current: int | None = None,
) -> AppTest:
    """Run the page with the browser's outbox (as the desk's state change would)."""
    at.session_state["review_desk"] = {
        "sync": {"instance": instance, "outbox": outbox, "current": current}
    }
    return at.run()
