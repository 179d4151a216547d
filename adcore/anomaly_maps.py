"""Anomaly maps on screen: a colour-mapped map blended over its image, and its colour bar.

Storing maps on disk is :mod:`services.map_store`'s job; which values get which colour is
:mod:`adcore.map_scale`'s; this module only draws.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image as PILImage

from adcore.map_scale import MapScale

DEFAULT_COLORMAP = "jet"


def overlay_image(
    pixels: np.ndarray,
    anomaly_map: np.ndarray,
    opacity: float,
    *,
    scale: MapScale | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    threshold: float | None = None,
    colormap: str = DEFAULT_COLORMAP,
) -> np.ndarray:
    """Blend a colour-mapped anomaly map over an image.

    The map is resized (bilinear) to the image, scaled to [0, 1] (clipped), coloured, and
    alpha-blended: ``(1 - opacity) * image + opacity * colour``.

    Args:
        pixels: (H, W, 3) uint8 RGB image (an (H, W) grey image is accepted).
        anomaly_map: (S, S) anomaly map of any float dtype.
        opacity: Weight of the colour layer, clipped to [0, 1].
        scale: The model version's scale (:func:`adcore.map_scale.map_scale`): the same value
            gets the same colour on every part. When given, ``vmin``, ``vmax`` and
            ``threshold`` are ignored.
        vmin: Without ``scale``: the value shown as the coldest colour; default ``0`` (or the
            map's minimum if it is negative).
        vmax: Without ``scale``: the value shown as the hottest colour; default
            ``max(threshold, map maximum)``.
        threshold: Without ``scale``: used for the default ``vmax``.
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
    if scale is not None:
        scaled = scale.fraction(resized)
    else:
        scaled = _fraction_between(resized, vmin, vmax, threshold)
    colours = colour_table(colormap)[np.rint(scaled * 255).astype(np.uint8)]
    alpha = float(np.clip(opacity, 0.0, 1.0))
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _fraction_between(
    values: np.ndarray, vmin: float | None, vmax: float | None, threshold: float | None
) -> np.ndarray:
    """Values scaled to [0, 1] between ``vmin`` and ``vmax`` (defaults from the values)."""
    finite = values[np.isfinite(values)]
    low = float(vmin) if vmin is not None else min(0.0, float(finite.min()) if finite.size else 0.0)
    if vmax is not None:
        high = float(vmax)
    else:
        high = float(finite.max()) if finite.size else 1.0
        if threshold is not None:
            high = max(high, float(threshold))
    span = high - low if high > low else 1.0
    return np.clip(np.nan_to_num((values - low) / span, nan=0.0), 0.0, 1.0)


def colour_bar(
    scale: MapScale,
    *,
    width: int = 520,
    height: int = 60,
    colormap: str = DEFAULT_COLORMAP,
) -> np.ndarray:
    """A horizontal colour bar of a scale, labelled at both ends with their values and names.

    Drawn with the same colour table as :func:`overlay_image`, so the bar and the overlay
    agree colour for colour.

    Args:
        scale: The scale shown.
        width: Image width in pixels.
        height: Image height in pixels.
        colormap: The overlay's colormap.

    Returns:
        (height, width, 3) uint8 RGB.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize
    from matplotlib.figure import Figure

    dpi = 100
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0.03, 0.52, 0.94, 0.4))
    colours = ListedColormap(colour_table(colormap) / 255.0)
    mappable = ScalarMappable(norm=Normalize(scale.normal, scale.hot), cmap=colours)
    bar = figure.colorbar(mappable, cax=axes, orientation="horizontal", extend="both")
    bar.set_ticks([scale.normal, scale.hot])
    bar.set_ticklabels(
        [f"{scale.normal:.4g} {scale.normal_label}", f"{scale.hot:.4g} {scale.hot_label}"],
        fontsize=10,
    )
    for label, alignment in zip(axes.get_xticklabels(), ("left", "right"), strict=True):
        label.set_horizontalalignment(alignment)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


@lru_cache(maxsize=8)
def colour_table(name: str) -> np.ndarray:
    """(256, 3) float32 RGB lookup table of a matplotlib colormap."""
    from matplotlib import colormaps  # imported on first use: it is slow to import

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.float32)
