"""Showing a part: its image, anomaly-map overlay, score against the threshold, and verdict.

Not a page. The Inspect page draws a scored part with :func:`show_part`; the explanation panels
decode stored images with :func:`image_pixels` and name their part with :func:`plain_markdown`.
"""

from __future__ import annotations

import re

import numpy as np
import streamlit as st

import db

_MARKDOWN_ACTIVE = re.compile(r"([\\`*_{}\[\]<>()#+!|~$:])")


def plain_markdown(text: str) -> str:
    """``text`` escaped for Streamlit's Markdown (a part's file name reads as it is written).

    Backslash-escapes the characters Markdown, LaTeX (``$``) and Streamlit's directives
    (``:red[...]``, ``:material/...:``) act on; the text shows unchanged.
    """
    return _MARKDOWN_ACTIVE.sub(r"\\\1", text)


def image_pixels(stored_path: str) -> np.ndarray | None:
    """Decode a stored image, or None (with a warning) when the file is gone or unreadable."""
    from adcore.errors import ImageLoadError
    from adcore.image_io import load_image

    try:
        return load_image(db.absolute_image_path(stored_path))
    except (ImageLoadError, ValueError) as err:
        st.warning(f"Cannot show the image: {err}")
        return None


def verdict_badge(verdict: str | None) -> str:
    """Markdown for a coloured verdict."""
    if verdict == db.Label.DEFECT:
        return ":red-background[**DEFECT**]"
    if verdict == db.Label.GOOD:
        return ":green-background[**GOOD**]"
    return ":gray-background[not scored]"


def show_part(
    *,
    stored_path: str,
    anomaly_map_path: str | None,
    score: float | None,
    threshold: float | None,
    verdict: str | None,
    key: str,
    caption: str = "",
    scorer: tuple[float, float] | None = None,
    prediction_id: int | None = None,
) -> None:
    """The image, its anomaly-map overlay (with an opacity slider), score vs threshold, verdict.

    ``scorer`` is ``(p(defect), probability threshold)`` when the feedback scorer decided the
    verdict; the detector's score is shown beside it. ``prediction_id`` gives the map its
    model version's colour scale (:func:`pages.heatmap_panel.anomaly_map_view`).
    """
    from pages.heatmap_panel import anomaly_map_view

    pixels = image_pixels(stored_path)
    if score is not None:
        line = f"Score **{score:.4g}**"
        if threshold is not None:
            line += f" vs threshold **{threshold:.4g}**"
        if scorer is not None:
            line = (
                f"p(defect) **{scorer[0]:.2f}** vs **{scorer[1]:.2f}** (feedback scorer) "
                f"&nbsp;·&nbsp; detector {line[0].lower()}{line[1:]}"
            )
        st.markdown(f"{verdict_badge(verdict)} &nbsp; {line}")
    if pixels is None:
        return
    left, right = st.columns(2)
    left.image(pixels, caption=caption or "Image", width="stretch")
    with right:
        anomaly_map_view(pixels, anomaly_map_path, prediction_id, key)


if __name__ == "__main__":  # run as a page by the legacy pages/ handling: go to the router
    st.switch_page("app.py")
