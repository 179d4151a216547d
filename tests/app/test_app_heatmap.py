"""The anomaly map in Inspect is coloured on its model version's scale, with a colour bar."""

from __future__ import annotations

from apptest_support import Workbench, make_part, png_bytes, signed_in_app

from adcore.map_scale import SAME_ON_EVERY_PART


def test_inspect_colours_the_map_on_the_version_scale(workbench: Workbench) -> None:
    at = signed_in_app("inspector")
    at.switch_page("pages/inspect.py").run()
    at.file_uploader(key="uploads").set_value(
        [("scale-scratch.png", png_bytes(make_part(310, defect=True)), "image/png")]
    )
    at.run()
    at.button(key="score").click().run()

    assert not at.exception, at.exception
    legend = [c.value for c in at.caption if SAME_ON_EVERY_PART in c.value]
    assert legend and "the normal level (99% of the pixels of good parts" in legend[0]
    assert "a part scoring at the threshold" in legend[0]
