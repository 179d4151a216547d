"""The grounded text explanation under a part on the Review page, for the part on the desk."""

from __future__ import annotations

from apptest_support import Workbench, first_queued, signed_in_app
from desk_presses import desk_payload, send
from streamlit.testing.v1.element_tree import Block

import db
from pages.review_desk import PANELS_KEY


def test_review_shows_the_stored_explanation(workbench: Workbench) -> None:
    prediction = first_queued(workbench)
    assert prediction.explanation is not None
    text = prediction.explanation["text"]
    assert text.startswith(("Flagged: score", "Passed: score"))

    at = signed_in_app("inspector")
    at.switch_page("pages/review.py").run()

    assert not at.exception, at.exception
    [name] = [n for n, i in workbench.image_ids.items() if i == prediction.image_id]
    assert f"Why · {name}" in [header.value for header in at.subheader]
    assert text in [markdown.value for markdown in at.markdown]
    assert f"Measured facts · {name}" in [expander.label for expander in at.expander]


def test_an_older_prediction_is_explained_on_the_fly(workbench: Workbench) -> None:
    prediction = first_queued(workbench)
    stored_text = prediction.explanation["text"]
    with workbench.factory() as session, session.begin():
        session.get(db.Prediction, prediction.id).explanation = None

    at = signed_in_app("inspector")
    at.switch_page("pages/review.py").run()

    assert not at.exception, at.exception
    assert stored_text in [markdown.value for markdown in at.markdown]


def panel_containers(node: Block) -> list[Block]:
    """The containers of part panels under the desk (keyed ``desk_panels_<image id>``)."""
    found = []
    for child in getattr(node, "children", {}).values():
        if isinstance(child, Block) and f"-{PANELS_KEY}" in getattr(child.proto, "id", ""):
            found.append(child)
        found += panel_containers(child)
    return found


def test_the_panels_follow_the_part_the_desk_shows_and_name_it(workbench: Workbench) -> None:
    at = signed_in_app("inspector")
    at.switch_page("pages/review.py").run()
    first, second = desk_payload(at)["parts"][:2]
    [panels] = panel_containers(at.main)  # before the browser says: the queue's first part
    assert panels.proto.id.endswith(f"-{PANELS_KEY}{first['id']}")

    send(at, [], current=second["id"])  # the desk moved on to the second part

    assert not at.exception, at.exception
    [panels] = panel_containers(at.main)
    assert panels.proto.id.endswith(f"-{PANELS_KEY}{second['id']}")
    with workbench.factory() as session:
        text = session.get(db.Prediction, second["prediction_id"]).explanation["text"]
    assert text in [markdown.value for markdown in panels.markdown]
    headings = [header.value for header in panels.subheader]
    assert headings[0] == f"Why · {second['name']}"
    assert all(heading.endswith(f" · {second['name']}") for heading in headings), headings
    assert [e.label for e in panels.expander] == [f"Measured facts · {second['name']}"]
    shown = [e.value for e in (*at.markdown, *at.subheader, *at.caption)] + [
        e.label for e in at.expander
    ]
    assert not [value for value in shown if first["name"] in value], shown

    send(at, [], current=999_999)  # a part the queue does not hold (any more): no panels
    assert not at.exception, at.exception
    assert panel_containers(at.main) == []
