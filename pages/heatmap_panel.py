"""A part's anomaly map on its model version's one colour scale, with the colour bar.

Not a page: :func:`pages.part_display.show_part` draws the map column with
:func:`anomaly_map_view`. The scale is the version's (:mod:`services.map_scales`): blue at
the normal level of its good images, red at a part on the threshold, the same on every part
the version scored, so a good part looks cool and a defect stands out.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from adcore.map_scale import MapScale, own_scale
from pages.db_session import transaction

OPACITY_HELP = "0 shows the image only"


def part_map_scale(prediction_id: int) -> MapScale | None:
    """The colour scale of a prediction's map (its version's, threshold in force); None without.

    Not cached here: the version's threshold may change (the saved calibration is cached by
    :mod:`services.map_scales`).
    """
    from services.map_scales import prediction_map_scale

    with transaction() as session:
        return prediction_map_scale(session, prediction_id)


@st.cache_data(show_spinner=False, max_entries=16)
def colour_bar_image(scale: MapScale) -> np.ndarray:
    """The colour bar of a scale (drawn once per scale)."""
    from adcore.anomaly_maps import colour_bar

    return colour_bar(scale)


def anomaly_map_view(
    pixels: np.ndarray, anomaly_map_path: str | None, prediction_id: int | None, key: str
) -> None:
    """The overlay of a part's anomaly map, an opacity slider, and the scale's colour bar.

    Args:
        pixels: The part, (H, W, 3) uint8 RGB.
        anomaly_map_path: Its stored map (relative to the data directory), or None.
        prediction_id: The prediction the map belongs to (gives the version's scale); without
            it the map is coloured on its own range, with a note.
        key: Widget key prefix.
    """
    from adcore.anomaly_maps import overlay_image
    from services.map_store import load_anomaly_map

    if not anomaly_map_path:
        st.caption("No anomaly map for this part.")
        return
    try:
        anomaly_map = load_anomaly_map(anomaly_map_path)
    except (OSError, ValueError) as err:
        st.warning(f"Cannot read the anomaly map: {err}")
        return
    scale = part_map_scale(prediction_id) if prediction_id is not None else None
    if scale is None:
        scale = own_scale(anomaly_map)
    opacity = st.slider(
        "Overlay opacity", 0.0, 1.0, 0.5, 0.05, key=f"{key}-opacity", help=OPACITY_HELP
    )
    overlay = overlay_image(pixels, anomaly_map, opacity, scale=scale)
    st.image(overlay, caption="Anomaly map", width="stretch")
    st.image(colour_bar_image(scale), width="stretch")
    st.caption(scale.caption)
