"""Tests for adcore.metrics: agreement with scikit-learn, hand cases and a brute-force AUPRO."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from adcore.metrics import (
    ImageMetrics,
    Rates,
    aupro,
    image_metrics,
    pixel_auroc,
    rates_at_threshold,
)


def _brute_f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    best = 0.0
    for t in np.unique(scores):
        flagged = scores >= t
        tp = int(np.sum(flagged & (labels == 1)))
        fp = int(np.sum(flagged & (labels == 0)))
        fn = int(np.sum(~flagged & (labels == 1)))
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    return best


def _brute_aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float, n: int) -> float:
    """Slow reference: loop over thresholds, per-region overlap, trapezoid, normalise."""
    structure = np.ones((3, 3), dtype=bool)
    regions = []
    for mask, amap in zip(masks, maps, strict=True):
        lab, k = ndimage.label(mask, structure=structure)
        regions += [amap[lab == r] for r in range(1, k + 1)]
    normal = maps[~masks.astype(bool)]
    thresholds = np.linspace(maps.max() + 1e-9, maps.min() - 1e-9, n)
    fprs, pros = [], []
    for t in thresholds:
        fprs.append(np.mean(normal >= t))
        pros.append(np.mean([np.mean(r >= t) for r in regions]))
    fprs, pros = np.array(fprs), np.array(pros)
    pro_at_limit = np.interp(fpr_limit, fprs, pros)
    keep = fprs <= fpr_limit
    x = np.append(fprs[keep], fpr_limit)
    y = np.append(pros[keep], pro_at_limit)
    return float(np.trapezoid(y, x) / fpr_limit)


# --- image_metrics ------------------------------------------------------------------------


def test_image_metrics_hand_case() -> None:
    m = image_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert isinstance(m, ImageMetrics)
    assert m.auroc == pytest.approx(0.75)
    # Flag >= 0.35: tp=2, fp=1, fn=0 -> F1 = 4/5; flag >= 0.8: F1 = 2/3.
    assert m.f1_max == pytest.approx(0.8)
    assert m.f1_threshold == pytest.approx(0.35)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_image_metrics_match_sklearn_and_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=200)
    scores = rng.normal(size=200) + labels * 0.8
    scores[:20] = np.round(scores[:20], 1)  # some ties
    m = image_metrics(labels, scores)
    assert m.auroc == pytest.approx(roc_auc_score(labels, scores))
    assert m.ap == pytest.approx(average_precision_score(labels, scores))
    assert m.f1_max == pytest.approx(_brute_f1_max(labels, scores))
    # The reported threshold really reaches f1_max (several thresholds may tie).
    r = rates_at_threshold(labels, scores, m.f1_threshold)
    assert 2 * r.tp / (2 * r.tp + r.fp + r.fn) == pytest.approx(m.f1_max)


@pytest.mark.parametrize("label", [0, 1])
def test_image_metrics_single_class_is_nan(label: int) -> None:
    m = image_metrics(np.full(5, label), np.arange(5.0))
    assert all(math.isnan(v) for v in (m.auroc, m.ap, m.f1_max, m.f1_threshold))


def test_image_metrics_perfect() -> None:
    m = image_metrics(np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.9, 1.0]))
    assert (m.auroc, m.ap, m.f1_max) == (1.0, 1.0, 1.0)
    assert m.f1_threshold == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("labels", "scores"),
    [
        ([0, 1], [0.1]),
        ([], []),
        ([0, 2], [0.1, 0.2]),
        ([0, 1], [0.1, float("nan")]),
        ([[0, 1]], [[0.1, 0.2]]),
    ],
)
def test_image_metrics_rejects_bad_input(labels: list, scores: list) -> None:
    with pytest.raises(ValueError):
        image_metrics(np.array(labels), np.array(scores))


# --- rates_at_threshold -------------------------------------------------------------------


def test_rates_hand_case() -> None:
    r = rates_at_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]), 0.35)
    assert r == Rates(
        threshold=0.35, tp=2, fp=1, tn=1, fn=0, fnr=0.0, fpr=0.5, precision=2 / 3, recall=1.0
    )
    assert all(isinstance(v, int) for v in (r.tp, r.fp, r.tn, r.fn))


def test_rates_nan_when_undefined() -> None:
    r = rates_at_threshold(np.array([0, 0]), np.array([0.1, 0.2]), 0.5)
    assert (r.tp, r.fp, r.tn, r.fn) == (0, 0, 2, 0)
    assert math.isnan(r.fnr) and math.isnan(r.recall) and math.isnan(r.precision)
    assert r.fpr == 0.0
    r = rates_at_threshold(np.array([1, 1]), np.array([0.1, 0.2]), 0.15)
    assert math.isnan(r.fpr)
    assert r.fnr == 0.5 and r.precision == 1.0


def test_rates_threshold_is_inclusive() -> None:
    r = rates_at_threshold(np.array([1]), np.array([0.5]), 0.5)
    assert r.tp == 1 and r.fn == 0


# --- pixel_auroc --------------------------------------------------------------------------


def _toy_masks(seed: int = 0, n: int = 4, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n - 1):  # the last image is defect-free
        for _ in range(2):
            y, x = rng.integers(0, size - 8, size=2)
            h, w = rng.integers(1, 8, size=2)
            masks[i, y : y + h, x : x + w] = True
    return masks


def test_pixel_auroc_perfect_and_inverted() -> None:
    masks = _toy_masks()
    maps = masks.astype(np.float32)
    assert pixel_auroc(masks, maps) == 1.0
    assert pixel_auroc(masks, -maps) == 0.0
    assert pixel_auroc(masks.astype(np.uint8), maps) == 1.0


def test_pixel_auroc_matches_sklearn() -> None:
    masks = _toy_masks(1)
    maps = np.random.default_rng(1).normal(size=masks.shape) + masks
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))


def test_pixel_auroc_single_class_is_nan() -> None:
    assert math.isnan(pixel_auroc(np.zeros((2, 4, 4), bool), np.ones((2, 4, 4))))


def test_pixel_metrics_reject_bad_shapes() -> None:
    with pytest.raises(ValueError):
        pixel_auroc(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError):
        aupro(np.zeros((4, 4), bool), np.zeros((4, 4)))
    with pytest.raises(ValueError):
        aupro(np.full((1, 4, 4), 2), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError):
        aupro(np.zeros((1, 4, 4), bool), np.full((1, 4, 4), np.nan))


# --- aupro --------------------------------------------------------------------------------


def test_aupro_perfect_map() -> None:
    masks = _toy_masks()
    rng = np.random.default_rng(0)
    maps = np.where(masks, 2.0 + rng.random(masks.shape), rng.random(masks.shape))
    assert aupro(masks, maps) == pytest.approx(1.0)


def test_aupro_map_equal_to_mask() -> None:
    masks = _toy_masks()
    assert aupro(masks, masks.astype(np.float32)) == pytest.approx(1.0)


def test_aupro_constant_map() -> None:
    masks = _toy_masks()
    # One step from (0, 0) to (1, 1): area fpr_limit**2 / 2, normalised fpr_limit / 2.
    assert aupro(masks, np.zeros(masks.shape)) == pytest.approx(0.15)
    assert aupro(masks, np.zeros(masks.shape), fpr_limit=1.0) == pytest.approx(0.5)


def test_aupro_two_regions_one_found() -> None:
    masks = np.zeros((1, 20, 20), dtype=bool)
    masks[0, 2:5, 2:5] = True  # small region, fully found
    masks[0, 10:18, 10:18] = True  # large region, never found before all normal pixels
    maps = np.full(masks.shape, 0.5)
    maps[0, 2:5, 2:5] = 1.0
    maps[0, 10:18, 10:18] = 0.0
    # PRO is a region average (0.5), not a pixel average (9 / 73).
    assert aupro(masks, maps) == pytest.approx(0.5)


def test_aupro_regions_are_per_image() -> None:
    masks = np.zeros((2, 10, 10), dtype=bool)
    masks[0, 2, 2] = True  # 1-pixel region, found
    masks[1, 2, 2:5] = True  # 3-pixel region at the same place in the next image, missed
    maps = np.zeros(masks.shape)
    maps[0, 2, 2] = 1.0
    maps[1, 2, 2:5] = -1.0
    # Per-image regions: mean(1, 0) = 0.5; merged across images it would be 1 / 4.
    assert aupro(masks, maps) == pytest.approx(0.5)


def test_aupro_regions_are_8_connected() -> None:
    masks = np.zeros((1, 10, 10), dtype=bool)
    masks[0, 2, 2:4] = True
    masks[0, 3, 4] = True  # touches (2, 3) diagonally only
    maps = np.zeros(masks.shape)
    maps[0, 2, 2:4] = -1.0
    maps[0, 3, 4] = 1.0
    # One 8-connected region, 1 of 3 pixels found; 4-connectivity would give mean(0, 1).
    assert aupro(masks, maps) == pytest.approx(1 / 3)


@pytest.mark.parametrize(("seed", "fpr_limit"), [(0, 0.3), (1, 0.3), (2, 0.05), (3, 1.0)])
def test_aupro_matches_brute_force(seed: int, fpr_limit: float) -> None:
    masks = _toy_masks(seed, n=5, size=24)
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=masks.shape) + 1.5 * masks
    expected = _brute_aupro(masks, maps, fpr_limit, n=4000)
    assert aupro(masks, maps, fpr_limit=fpr_limit) == pytest.approx(expected, abs=1e-2)


def test_aupro_exact_on_distinct_thresholds() -> None:
    # Brute force over exactly the distinct map values is exact, not just close.
    masks = _toy_masks(5, n=3, size=16)
    maps = np.round(np.random.default_rng(5).normal(size=masks.shape) + masks, 1)
    structure = np.ones((3, 3), dtype=bool)
    regions = []
    for mask, amap in zip(masks, maps, strict=True):
        lab, k = ndimage.label(mask, structure=structure)
        regions += [amap[lab == r] for r in range(1, k + 1)]
    normal = maps[~masks]
    ts = np.r_[np.inf, np.unique(maps)[::-1]]
    fprs = np.array([np.mean(normal >= t) for t in ts])
    pros = np.array([np.mean([np.mean(r >= t) for r in regions]) for t in ts])
    keep = fprs <= 0.3
    x = np.append(fprs[keep], 0.3)
    y = np.append(pros[keep], np.interp(0.3, fprs, pros))
    assert aupro(masks, maps) == pytest.approx(np.trapezoid(y, x) / 0.3, abs=1e-12)


def test_aupro_nan_without_regions_or_normal_pixels() -> None:
    assert math.isnan(aupro(np.zeros((2, 4, 4), bool), np.random.rand(2, 4, 4)))
    assert math.isnan(aupro(np.ones((2, 4, 4), bool), np.random.rand(2, 4, 4)))


@pytest.mark.parametrize("fpr_limit", [0.0, -0.1, 1.5])
def test_aupro_rejects_bad_limit(fpr_limit: float) -> None:
    masks = _toy_masks()
    with pytest.raises(ValueError):
        aupro(masks, masks.astype(float), fpr_limit=fpr_limit)


def test_aupro_fast_on_typical_size() -> None:
    import time

    rng = np.random.default_rng(0)
    masks = np.zeros((100, 256, 256), dtype=bool)
    masks[::2, 50:90, 60:120] = True
    maps = (rng.random(masks.shape) + masks).astype(np.float32)
    start = time.perf_counter()
    value = aupro(masks, maps)
    assert time.perf_counter() - start < 10.0
    assert 0.0 <= value <= 1.0
