"""The anomaly map in Inspect is coloured on its model version's scale, with a colour bar."""

from __future__ import annotations

from apptest_support import Workbench, make_part, png_bytes, signed_in_app

SAME_SCALE = "The same colours on every part of this model version."


def test_inspect_colours_the_map_on_the_version_scale(workbench: Workbench) -> None:
    at = signed_in_app("inspector")
    at.switch_page("pages/inspect.py").run()
    at.file_uploader(key="uploads").set_value(
        [("scale-scratch.png", png_bytes(make_part(310, defect=True)), "image/png")]
    )
    at.run()
    at.button(key="score").click().run()

    assert not at.exception, at.exception
    legend = [c.value for c in at.caption if SAME_SCALE in c.value]
    assert legend and "normal (99% of good pixels)" in legend[0]
    assert "a part at the threshold" in legend[0]
