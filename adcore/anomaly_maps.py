"""Anomaly maps on screen: a colour-mapped map blended over its image.

Storing maps on disk is :mod:`services.map_store`'s job; this module only draws.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image as PILImage

DEFAULT_COLORMAP = "jet"


def overlay_image(
    pixels: np.ndarray,
    anomaly_map: np.ndarray,
    opacity: float,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    threshold: float | None = None,
    colormap: str = DEFAULT_COLORMAP,
) -> np.ndarray:
    """Blend a colour-mapped anomaly map over an image.

    The map is resized (bilinear) to the image, scaled to [0, 1] between ``vmin`` and
    ``vmax`` (clipped), coloured, and alpha-blended: ``(1 - opacity) * image + opacity *
    colour``.

    Args:
        pixels: (H, W, 3) uint8 RGB image (an (H, W) grey image is accepted).
        anomaly_map: (S, S) anomaly map of any float dtype.
        opacity: Weight of the colour layer, clipped to [0, 1].
        vmin: Value shown as the coldest colour; default ``0`` (or the map's minimum if it is
            negative).
        vmax: Value shown as the hottest colour; default ``max(threshold, map maximum)``, so a
            good part stays cool instead of being stretched to full range.
        threshold: The decision threshold, used for the default ``vmax``.
        colormap: A matplotlib colormap name (``"jet"``, ``"inferno"``...).

    Returns:
        (H, W, 3) uint8 RGB.
    """
    image = np.asarray(pixels)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    height, width = image.shape[:2]
    resized = np.asarray(
        PILImage.fromarray(np.asarray(anomaly_map, dtype=np.float32)).resize(
            (width, height), PILImage.Resampling.BILINEAR
        )
    )
    finite = resized[np.isfinite(resized)]
    low = float(vmin) if vmin is not None else min(0.0, float(finite.min()) if finite.size else 0.0)
    if vmax is not None:
        high = float(vmax)
    else:
        high = float(finite.max()) if finite.size else 1.0
        if threshold is not None:
            high = max(high, float(threshold))
    span = high - low if high > low else 1.0
    scaled = np.clip(np.nan_to_num((resized - low) / span, nan=0.0), 0.0, 1.0)
    colours = _colour_table(colormap)[np.rint(scaled * 255).astype(np.uint8)]
    alpha = float(np.clip(opacity, 0.0, 1.0))
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _colour_table(name: str) -> np.ndarray:
    """(256, 3) float32 RGB lookup table of a matplotlib colormap."""
    from matplotlib import colormaps  # imported on first use: it is slow to import

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.float32)
