"""One colour scale per model version for its anomaly maps, measured on good images at fit time.

A map coloured from 0 to its own maximum (or to the threshold) makes the normal texture of a
good part look warm, and two parts' colours cannot be compared. Instead, each fitted detector
measures what its maps look like on the good images it holds out for calibration
(:class:`MapCalibration`, saved in the model's ``config.json``), and every part that version
scores is coloured on the same :class:`MapScale`:

* **neutral (coolest colour)** at the *normal level*: the 99th percentile of all pixel values of
  the held-out good images' maps. 99 % of a good part's map is at or below it, so a good part
  looks cool.
* **hot (hottest colour)** at the map peak of a part that scores exactly at the threshold. The
  threshold is an *image* score; a map is a smoothed per-pixel score whose peak sits a little
  below the image score (PatchCore re-weights its worst patch, and the map is blurred). The
  pixel analogue is ``threshold x peak_to_score``, where ``peak_to_score`` is the median of
  ``map maximum / image score`` over the held-out good images (about 0.95 on ELPV). A part at
  the threshold therefore reaches the hottest colour at its worst spot, and a defect above it
  is saturated.

The threshold used is the version's threshold in force, so a manager's new threshold moves the
hot end for every part of the version at once. Models saved before the scale was measured, and
fits without held-out images, fall back to a fixed 0-to-threshold scale (with a note); only
when there is neither a calibration nor a threshold does a map get a scale of its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

NORMAL_PERCENTILE = 99.0
"""Percentile of good-image map pixels taken as the normal level (the neutral colour)."""

MAX_PIXELS = 1_000_000
"""Pixels read from the calibration maps at most (maps are smooth: a stride loses nothing)."""

STORED_KEY = "map_calibration"
"""The key of the measured calibration in a saved model's ``config.json``."""


@dataclass(frozen=True)
class MapCalibration:
    """What a detector's anomaly maps look like on good images, measured at fit time.

    Attributes:
        normal_level: The ``percentile``-th percentile of the good maps' pixel values.
        percentile: Which percentile ``normal_level`` is.
        peak_to_score: Median over the good images of ``map maximum / image score`` (1.0 when
            the scores are not positive).
        good_peak: The highest pixel value on any good map.
        n_images: Good images measured.
    """

    normal_level: float
    percentile: float
    peak_to_score: float
    good_peak: float
    n_images: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``config.json``)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> MapCalibration | None:
        """The calibration saved by :meth:`to_json`; None when absent or not well formed."""
        if not isinstance(data, dict):
            return None
        try:
            calibration = cls(
                normal_level=float(data["normal_level"]),
                percentile=float(data["percentile"]),
                peak_to_score=float(data["peak_to_score"]),
                good_peak=float(data["good_peak"]),
                n_images=int(data["n_images"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        numbers = (calibration.normal_level, calibration.peak_to_score, calibration.good_peak)
        if not all(math.isfinite(x) for x in numbers) or calibration.peak_to_score <= 0:
            return None
        return calibration


def measure_map_calibration(
    maps: Sequence[np.ndarray], scores: Sequence[float], percentile: float = NORMAL_PERCENTILE
) -> MapCalibration | None:
    """Measure the normal level of a detector's maps on good images.

    Args:
        maps: One (S, S) anomaly map per good image (not used to fit the model).
        scores: The images' scores, in the same order.
        percentile: Percentile of all pixel values taken as the normal level.

    Returns:
        The calibration, or None when there is no finite map value to measure.
    """
    if len(maps) != len(scores):
        raise ValueError(f"{len(maps)} maps but {len(scores)} scores")
    if not maps:
        return None
    total = sum(np.asarray(m).size for m in maps)
    stride = max(1, math.ceil(math.sqrt(total / MAX_PIXELS)))
    pixels = np.concatenate(
        [np.asarray(m, dtype=np.float32)[::stride, ::stride].ravel() for m in maps]
    )
    pixels = pixels[np.isfinite(pixels)]
    if pixels.size == 0:
        return None
    peaks = np.array([np.nanmax(np.asarray(m, dtype=np.float32)) for m in maps])
    image_scores = np.asarray(scores, dtype=np.float64)
    usable = (image_scores > 0) & np.isfinite(image_scores) & np.isfinite(peaks) & (peaks > 0)
    ratio = float(np.median(peaks[usable] / image_scores[usable])) if usable.any() else 1.0
    return MapCalibration(
        normal_level=float(np.percentile(pixels, percentile)),
        percentile=float(percentile),
        peak_to_score=ratio,
        good_peak=float(pixels.max()),
        n_images=len(maps),
    )


@dataclass(frozen=True)
class MapScale:
    """The map values shown as the coolest and the hottest colour, and what they mean.

    Attributes:
        normal: Map value shown as the coolest colour (and everything below it).
        hot: Map value shown as the hottest colour (and everything above it).
        normal_label: A word or two for ``normal`` on the colour bar.
        hot_label: A word or two for ``hot`` on the colour bar.
        legend: One or two sentences saying what the two ends are, under the colour bar.
        note: Why this is a fallback scale, or None for a measured one.
    """

    normal: float
    hot: float
    normal_label: str
    hot_label: str
    legend: str
    note: str | None = None

    @property
    def caption(self) -> str:
        """The text under the colour bar: the legend, then the note of a fallback scale."""
        return self.legend if self.note is None else f"{self.legend} {self.note}"

    def fraction(self, values: np.ndarray) -> np.ndarray:
        """Map values as a fraction of the scale: 0 at ``normal`` or below, 1 at ``hot`` or above.

        NaN counts as normal.
        """
        span = self.hot - self.normal
        scaled = (np.asarray(values, dtype=np.float32) - self.normal) / span
        return np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0)


SAME_ON_EVERY_PART = "The same colours on every part of this model version."


def map_scale(calibration: MapCalibration | None, threshold: float | None) -> MapScale | None:
    """The colour scale of every map of a model version.

    Args:
        calibration: The version's measured calibration (None for models saved before it was
            measured, or fitted without held-out good images).
        threshold: The version's threshold in force (image-score units), or None.

    Returns:
        The scale, or None when there is neither a calibration nor a threshold (then each map
        can only be coloured on a scale of its own: :func:`own_scale`).
    """
    finite_threshold = threshold is not None and math.isfinite(threshold)
    if calibration is not None:
        normal = calibration.normal_level
        blue = (
            f"Blue: {normal:.4g} or below, the normal level ({calibration.percentile:g}% of the "
            "pixels of good parts are below it)."
        )
        if finite_threshold:
            hot = _above(float(threshold) * calibration.peak_to_score, normal)
            red = f"Red: {hot:.4g} or above, the map peak of a part scoring at the threshold "
            red += f"({float(threshold):.4g})."
            return MapScale(
                normal, hot, "normal", "threshold", f"{blue} {red} {SAME_ON_EVERY_PART}"
            )
        hot = _above(calibration.good_peak, normal)
        red = f"Red: {hot:.4g} or above, hotter than any pixel of its good parts."
        note = "This version has no threshold: red is the hottest pixel of its good parts."
        return MapScale(
            normal, hot, "normal", "hottest good", f"{blue} {red} {SAME_ON_EVERY_PART}", note
        )
    if finite_threshold:
        low = min(0.0, float(threshold))
        hot = _above(float(threshold), low)
        note = (
            "This model version was saved before Loupe measured its maps on good images, so "
            "good parts may look warm. Retrain it for a scale on which they look cool."
        )
        legend = f"Blue: {low:.4g}; red: {hot:.4g} (the threshold) or above. {SAME_ON_EVERY_PART}"
        return MapScale(low, hot, f"{low:.4g}", "threshold", legend, note)
    return None


def own_scale(anomaly_map: np.ndarray) -> MapScale:
    """A scale from one map's own range (when its version has no scale): not comparable."""
    values = np.asarray(anomaly_map, dtype=np.float32)
    finite = values[np.isfinite(values)]
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    high = _above(float(finite.max()) if finite.size else 1.0, low)
    legend = f"Blue: {low:.4g}; red: {high:.4g}, this map's maximum."
    note = (
        "No scale is known for this map's model version: the map is coloured on its own range, "
        "so its colours cannot be compared with another part's."
    )
    return MapScale(low, high, f"{low:.4g}", "maximum", legend, note)


def _above(value: float, floor: float) -> float:
    """``value``, raised just above ``floor`` when it is not above it (a scale needs a span)."""
    return value if value > floor else floor + max(abs(floor) * 0.01, 1e-6)
