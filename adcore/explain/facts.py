"""Facts measured from one prediction: verdict, margin, and where and what the anomaly is.

Everything is measured on an *analysis grid*: the grey image downscaled (area averaging) so its
longer side is at most :data:`ANALYSIS_SIDE` pixels (never upscaled), and the anomaly map
resized (bilinear) to that grid. Percentages, locations and shapes do not depend on the grid;
the part's bounding box is reported in original image pixels.

Rules (all fixed, so the same prediction always gives the same facts):

* **Verdict**: :func:`adcore.verdicts.verdict_for` (``"defect"`` when the score reaches the
  threshold, else ``"good"``); ``margin = score - threshold`` and ``relative_margin = margin /
  |threshold|`` (``None`` when the threshold is 0).
* **Part**: Otsu's threshold splits the grey image into two classes; the class that covers most
  of the image border is the background, the other the part. The part is the whole image when
  the two classes differ by less than :data:`MIN_PART_CONTRAST` grey levels, when the part
  covers less than :data:`MIN_PART_FRACTION` of the image, or when the filled part mask covers
  less than half its bounding box (a texture, not an object): then its box is the image.
* **Anomalous region** (defect verdicts only): map pixels ``>= region_level`` where
  ``region_level = max(threshold, median + 0.5 * (peak - median))`` of the resized map: the
  pixels that alone would be judged defective *and* stand out by at least half of the peak's
  prominence above the map's median. When the peak of the resized map is below the threshold
  (bilinear resizing lowers peaks), the level is the half-prominence level alone. Only pixels
  of the part count. Regions are 8-connected components (``scipy.ndimage.label``).
* **Location** of the largest region: its centroid in thirds of the part's bounding box
  (``upper-left`` ... ``lower-right``, middle third ``centre``); ``at_rim`` when any of its
  pixels lies within :data:`RIM_BAND` of the box's size from the box's border.
* **Size**: all regions' pixels as a percentage of the part's area (the filled part mask, or
  the box when the part is the whole image); also the largest region's own percentage.
* **Shape** of the largest region: ``axis_ratio = sqrt(l1 / l2)`` of the eigenvalues of its
  pixel coordinates' covariance (plus 1/12 per axis for the pixel extent); ``"elongated"``
  when ``>= ELONGATED_RATIO`` (scratch- or crack-like), else ``"compact"``.
* **Intensity**: mean grey of the largest region minus mean grey of the part outside all
  regions; ``"darker"`` / ``"brighter"`` beyond :data:`INTENSITY_DEAD_BAND` grey levels, else
  ``"similar"``.
* **Similar confirmed defects** (defect verdicts only, when the caller passes them): the
  majority defect type among the part's nearest inspector-confirmed defects by feature
  similarity, its count and the number of neighbours considered
  (:func:`adcore.explain.neighbours.nearest_defect_types` has the rules).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from PIL import Image as PILImage
from scipy import ndimage

from adcore.verdicts import verdict_for

if TYPE_CHECKING:
    from adcore.explain.neighbours import SimilarDefects

ANALYSIS_SIDE = 256
"""Longer side of the analysis grid (pixels); larger images are downscaled to it."""
MIN_PART_CONTRAST = 20.0
"""Grey levels between Otsu's two classes below which the part is the whole image."""
MIN_PART_FRACTION = 0.15
"""Smallest part (fraction of the image) accepted: a smaller class is a defect, not a part."""
RIM_BAND = 0.08
"""Width of the rim band, as a fraction of the part's bounding box (height or width)."""
ELONGATED_RATIO = 3.0
"""Major/minor axis ratio from which a region is called elongated."""
INTENSITY_DEAD_BAND = 8.0
"""Grey-level difference under which a region is "similar" to the rest of the part."""
PROMINENCE = 0.5
"""Fraction of the map's peak prominence (above its median) a region pixel must reach."""

LOCATIONS = (
    ("upper-left", "upper", "upper-right"),
    ("left", "centre", "right"),
    ("lower-left", "lower", "lower-right"),
)
_CONNECTIVITY = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class ExplanationFacts:
    """What was measured for one prediction (the only source of an explanation's numbers).

    Attributes:
        verdict: ``"defect"`` or ``"good"``.
        score: Image anomaly score.
        threshold: Decision threshold.
        margin: ``score - threshold``.
        relative_margin: ``margin / |threshold|``, or None when the threshold is 0.
        image_height: Original image height (pixels).
        image_width: Original image width (pixels).
        part_box: The part's bounding box ``(top, left, bottom, right)`` in original pixels,
            bottom/right exclusive.
        part_is_whole_image: Whether the part fell back to the whole image.
        region_level: Map level a region pixel reaches (None for good verdicts).
        n_regions: Separate anomalous regions (0 for good verdicts).
        area_percent: All regions' area as a percentage of the part's area.
        largest_area_percent: The largest region's area as a percentage of the part's area.
        location: Where the largest region's centroid is in the part's box, or None.
        at_rim: Whether the largest region reaches the part's rim band.
        shape: ``"elongated"`` or ``"compact"`` (largest region), or None.
        axis_ratio: Major/minor axis ratio of the largest region, or None.
        intensity: ``"darker"``, ``"brighter"`` or ``"similar"`` (largest region), or None.
        grey_difference: Mean grey of the largest region minus that of the rest of the part.
        similar_defect_type: The defect type most frequent among the nearest confirmed
            defects (defect verdicts only), or None.
        similar_count: How many of those neighbours have that type (0 without one).
        similar_k: Neighbours considered (0 without any).
    """

    verdict: str
    score: float
    threshold: float
    margin: float
    relative_margin: float | None
    image_height: int
    image_width: int
    part_box: tuple[int, int, int, int]
    part_is_whole_image: bool
    region_level: float | None = None
    n_regions: int = 0
    area_percent: float = 0.0
    largest_area_percent: float = 0.0
    location: str | None = None
    at_rim: bool = False
    shape: str | None = None
    axis_ratio: float | None = None
    intensity: str | None = None
    grey_difference: float | None = None
    similar_defect_type: str | None = None
    similar_count: int = 0
    similar_k: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        data = asdict(self)
        data["part_box"] = list(self.part_box)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> Self:
        """Rebuild facts from :meth:`to_json` output (a dict or its JSON text).

        Unknown keys are ignored, so facts stored by a newer version still load; missing
        optional keys take their defaults, so facts stored by an older version load too.
        """
        if isinstance(data, str):
            data = json.loads(data)
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["part_box"] = tuple(int(v) for v in values["part_box"])
        return cls(**values)

    def with_similar(self, similar: SimilarDefects | None) -> Self:
        """These facts plus the nearest confirmed defects' majority type (defect verdicts only).

        Args:
            similar: The neighbours' majority type, or None.

        Returns:
            New facts; unchanged for a good verdict or without ``similar``.
        """
        if similar is None or self.verdict != "defect":
            return self
        return replace(
            self,
            similar_defect_type=str(similar.defect_type),
            similar_count=int(similar.count),
            similar_k=int(similar.k),
        )


def measure_facts(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    score: float,
    threshold: float,
    *,
    similar: SimilarDefects | None = None,
) -> ExplanationFacts:
    """Measure the facts of one prediction (see the module docstring for every rule).

    Args:
        image: (H, W, 3) uint8 RGB image (an (H, W) grey image is accepted).
        anomaly_map: (h, w) float anomaly map at any resolution (e.g. the model's input size).
        score: Image anomaly score.
        threshold: Decision threshold the verdict was made with.
        similar: The nearest confirmed defects' majority type
            (:func:`adcore.explain.neighbours.nearest_defect_types`); kept for defect verdicts.

    Returns:
        The measured facts; region and similarity fields are empty for a good verdict.

    Raises:
        ValueError: If the image or map has the wrong number of dimensions.
    """
    return _measure(image, anomaly_map, float(score), float(threshold)).with_similar(similar)


def _measure(
    image: np.ndarray, anomaly_map: np.ndarray, score: float, threshold: float
) -> ExplanationFacts:
    """:func:`measure_facts` without the similar confirmed defects."""
    pixels = np.asarray(image)
    if pixels.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W, 3) or (H, W) image, got shape {pixels.shape}")
    heat = np.asarray(anomaly_map, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"expected an (h, w) anomaly map, got shape {heat.shape}")
    score, threshold = float(score), float(threshold)
    height, width = pixels.shape[:2]
    grey = _grey_grid(pixels)
    grid_h, grid_w = grey.shape
    heat = np.nan_to_num(_resize(heat, grid_h, grid_w, PILImage.Resampling.BILINEAR), nan=0.0)

    part_mask, box = _part(grey)
    top, left, bottom, right = box
    scale_y, scale_x = height / grid_h, width / grid_w
    verdict = verdict_for(score, threshold)
    margin = score - threshold
    base = {
        "verdict": verdict,
        "score": score,
        "threshold": threshold,
        "margin": margin,
        "relative_margin": margin / abs(threshold) if threshold != 0 else None,
        "image_height": int(height),
        "image_width": int(width),
        "part_box": (
            int(round(top * scale_y)),
            int(round(left * scale_x)),
            int(round(bottom * scale_y)),
            int(round(right * scale_x)),
        ),
        "part_is_whole_image": part_mask is None,
    }
    if verdict == "good":
        return ExplanationFacts(**base)

    if part_mask is None:
        part_mask = np.ones_like(grey, dtype=bool)
    inside = heat[part_mask]
    peak, median = float(inside.max()), float(np.median(inside))
    level = median + PROMINENCE * (peak - median)
    if peak >= threshold:
        level = max(level, threshold)
    region = (heat >= level) & part_mask
    labels, n_regions = ndimage.label(region, structure=_CONNECTIVITY)
    if n_regions == 0:
        return ExplanationFacts(**base, region_level=level)
    sizes = np.bincount(labels.ravel())[1:]
    largest = labels == (int(np.argmax(sizes)) + 1)
    part_area = float(part_mask.sum())
    ys, xs = np.nonzero(largest)

    box_h, box_w = bottom - top, right - left
    rows = min(2, int(3 * (ys.mean() + 0.5 - top) / box_h))
    cols = min(2, int(3 * (xs.mean() + 0.5 - left) / box_w))
    band_y, band_x = RIM_BAND * box_h, RIM_BAND * box_w
    at_rim = bool(
        ys.min() - top < band_y
        or bottom - 1 - ys.max() < band_y
        or xs.min() - left < band_x
        or right - 1 - xs.max() < band_x
    )

    ratio = _axis_ratio(ys, xs)
    rest = part_mask & ~region
    difference = float(grey[largest].mean() - grey[rest].mean()) if rest.any() else 0.0
    if difference <= -INTENSITY_DEAD_BAND:
        intensity = "darker"
    elif difference >= INTENSITY_DEAD_BAND:
        intensity = "brighter"
    else:
        intensity = "similar"
    return ExplanationFacts(
        **base,
        region_level=level,
        n_regions=int(n_regions),
        area_percent=min(100.0, 100.0 * float(region.sum()) / part_area),
        largest_area_percent=min(100.0, 100.0 * float(largest.sum()) / part_area),
        location=LOCATIONS[max(0, rows)][max(0, cols)],
        at_rim=at_rim,
        shape="elongated" if ratio >= ELONGATED_RATIO else "compact",
        axis_ratio=ratio,
        intensity=intensity,
        grey_difference=difference,
    )


def _grey_grid(pixels: np.ndarray) -> np.ndarray:
    """(h, w) float32 grey (ITU-R 601 luma) on the analysis grid (area-averaged downscale)."""
    height, width = pixels.shape[:2]
    factor = min(1.0, ANALYSIS_SIDE / max(height, width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if pixels.dtype == np.uint8:  # fast path: PIL converts and reduces in 8-bit C code
        picture = PILImage.fromarray(
            np.ascontiguousarray(pixels[..., :3] if pixels.ndim == 3 else pixels)
        )
        grey = picture.convert("L") if pixels.ndim == 3 else picture
        if factor < 1.0:
            grey = grey.resize(size, PILImage.Resampling.BOX)
        return np.asarray(grey, dtype=np.float32)
    grey = pixels.astype(np.float32)
    if grey.ndim == 3:
        grey = grey[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return _resize(grey, size[1], size[0], PILImage.Resampling.BOX)


def _resize(
    values: np.ndarray, height: int, width: int, resample: PILImage.Resampling
) -> np.ndarray:
    """(height, width) float32 resize of an (h, w) array."""
    if values.shape == (height, width):
        return values.astype(np.float32, copy=False)
    resized = PILImage.fromarray(np.ascontiguousarray(values, dtype=np.float32)).resize(
        (width, height), resample
    )
    return np.asarray(resized, dtype=np.float32)


def _otsu(grey: np.ndarray) -> float:
    """Otsu's threshold of an (H, W) grey image in [0, 255] (256-bin histogram)."""
    counts, edges = np.histogram(grey, bins=256, range=(0.0, 256.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def _part(grey: np.ndarray) -> tuple[np.ndarray | None, tuple[int, int, int, int]]:
    """The part's (H, W) bool mask (None: the whole image) and box (top, left, bottom, right)."""
    height, width = grey.shape
    whole = (None, (0, 0, height, width))
    level = _otsu(grey)
    high = grey >= level
    if high.all() or not high.any():
        return whole
    if abs(float(grey[high].mean()) - float(grey[~high].mean())) < MIN_PART_CONTRAST:
        return whole
    border = np.concatenate([high[0], high[-1], high[:, 0], high[:, -1]])
    part = ~high if border.mean() > 0.5 else high
    part = _fill_holes(ndimage.binary_opening(part, iterations=1))
    if part.mean() < MIN_PART_FRACTION:
        return whole
    rows, cols = np.nonzero(part.any(axis=1))[0], np.nonzero(part.any(axis=0))[0]
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if part.sum() < 0.5 * (bottom - top) * (right - left):
        return whole
    if (top, left, bottom, right) == (0, 0, height, width) and part.all():
        return whole
    return part, (int(top), int(left), int(bottom), int(right))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` of an (H, W) bool mask, in one labelling pass.

    Holes are the 4-connected background components that do not touch the border (the same
    rule as scipy's, which dilates iteratively and is several times slower).
    """
    labels, _ = ndimage.label(~mask)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return mask | ((labels > 0) & ~np.isin(labels, border[border > 0]))


def _axis_ratio(ys: np.ndarray, xs: np.ndarray) -> float:
    """Major/minor axis ratio of a pixel set from its second moments."""
    coords = np.stack([ys, xs]).astype(np.float64)
    covariance = np.cov(coords) if ys.size > 1 else np.zeros((2, 2))
    covariance = covariance + np.eye(2) / 12.0
    low, high = np.linalg.eigvalsh(covariance)
    return float(np.sqrt(high / max(low, 1e-12)))
