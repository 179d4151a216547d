"""Evaluation metrics for anomaly detection: image-level, pixel-level and per-region overlap.

Conventions used throughout Loupe:

* label ``1`` is a defect (anomalous, the *positive* class), label ``0`` is a good part;
* a higher score means more anomalous;
* a part (or pixel) is flagged as defect when ``score >= threshold``.

ROC and precision-recall maths come from scikit-learn. Metrics that are undefined because a
class is missing (for example AUROC on a set containing only good parts) are returned as
``float("nan")`` rather than raising, so that callers can display "n/a" instead of crashing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

__all__ = [
    "ImageMetrics",
    "Rates",
    "aupro",
    "image_metrics",
    "pixel_auroc",
    "rates_at_threshold",
]

_NAN = float("nan")

# 8-connectivity inside one image and no connection between images of an (N, H, W) stack, as
# in the MVTec AD reference evaluation code.
_REGION_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_REGION_STRUCTURE[1] = True


@dataclass(frozen=True)
class ImageMetrics:
    """Image-level detection quality.

    Attributes:
        auroc: Area under the ROC curve; nan when only one class is present.
        ap: Average precision (area under the precision-recall curve); nan when only one
            class is present.
        f1_max: Best F1 score over all thresholds; nan when only one class is present.
        f1_threshold: The threshold reaching ``f1_max`` (flag when ``score >= f1_threshold``);
            nan when only one class is present.
    """

    auroc: float
    ap: float
    f1_max: float
    f1_threshold: float


@dataclass(frozen=True)
class Rates:
    """Confusion counts and rates at one threshold (flag when ``score >= threshold``).

    Attributes:
        threshold: The threshold the rates were computed at.
        tp: Defects flagged.
        fp: Good parts flagged.
        tn: Good parts passed.
        fn: Defects passed (missed).
        fnr: Miss rate ``fn / (fn + tp)``; nan when there are no defects.
        fpr: False-alarm rate ``fp / (fp + tn)``; nan when there are no good parts.
        precision: ``tp / (tp + fp)``; nan when nothing is flagged.
        recall: ``tp / (tp + fn)`` (equals ``1 - fnr``); nan when there are no defects.
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    fnr: float
    fpr: float
    precision: float
    recall: float


def _ratio(num: int, den: int) -> float:
    return num / den if den > 0 else _NAN


def _check_labels_scores(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validates and converts image-level labels (N,) and scores (N,)."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError(
            f"labels and scores must be 1-D arrays, got shapes {labels.shape} and {scores.shape}"
        )
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores must have the same length, got {labels.size} and {scores.size}"
        )
    if labels.size == 0:
        raise ValueError("labels and scores are empty: at least one scored part is needed")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must contain only 0 (good) and 1 (defect)")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return labels.astype(np.int64), scores


def _check_masks_maps(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validates and converts ground-truth masks (N, H, W) and anomaly maps (N, H, W)."""
    masks = np.asarray(masks)
    maps = np.asarray(maps)
    if masks.ndim != 3 or masks.shape != maps.shape:
        raise ValueError(
            f"masks and maps must both have shape (N, H, W), got {masks.shape} and {maps.shape}"
        )
    if masks.size == 0:
        raise ValueError("masks and maps are empty")
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise ValueError("masks must be boolean or contain only 0 and 1")
        masks = masks.astype(bool)
    if not np.isfinite(maps).all():
        raise ValueError("maps contain NaN or infinite values")
    return masks, maps


def image_metrics(labels: np.ndarray, scores: np.ndarray) -> ImageMetrics:
    """Computes image-level AUROC, average precision and the best F1 score.

    Args:
        labels: (N,) int array, 1 = defect, 0 = good.
        scores: (N,) float array, higher = more anomalous.

    Returns:
        The metrics. When ``labels`` holds a single class every field is nan: AUROC and AP
        are undefined, and F1-max would be trivially 0 or 1.

    Raises:
        ValueError: If the shapes differ, the arrays are empty, labels are not 0/1 or a
            score is NaN.
    """
    labels, scores = _check_labels_scores(labels, scores)
    n_defect = int(labels.sum())
    if n_defect == 0 or n_defect == labels.size:
        return ImageMetrics(auroc=_NAN, ap=_NAN, f1_max=_NAN, f1_threshold=_NAN)

    auroc = float(roc_auc_score(labels, scores))
    ap = float(average_precision_score(labels, scores))
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    # The last (precision=1, recall=0) point has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2.0 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return ImageMetrics(
        auroc=auroc, ap=ap, f1_max=float(f1[best]), f1_threshold=float(thresholds[best])
    )


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """Computes the pixel-level AUROC over all pixels of all images.

    Args:
        masks: (N, H, W) bool or 0/1 ground truth, True = defect pixel.
        maps: (N, H, W) float anomaly maps, higher = more anomalous.

    Returns:
        The AUROC, or nan when all pixels belong to one class.

    Raises:
        ValueError: If the shapes differ or are not 3-D, masks are not 0/1, or maps are not
            finite.
    """
    masks, maps = _check_masks_maps(masks, maps)
    y = masks.ravel()
    n_defect = int(np.count_nonzero(y))
    if n_defect == 0 or n_defect == y.size:
        return _NAN
    return float(roc_auc_score(y, maps.ravel()))


def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Computes the normalised area under the per-region-overlap curve (MVTec AD AUPRO).

    Regions are the 8-connected components of each ground-truth mask (Bergmann et al., as in
    the MVTec AD evaluation code and anomalib). At a threshold ``t`` a pixel is predicted
    defective when ``map >= t``; the per-region overlap (PRO) is the mean over all regions of
    the fraction of the region's pixels predicted defective, and the false-positive rate is
    measured over every normal pixel (``mask == 0``) of every image. PRO is integrated over
    FPR in ``[0, fpr_limit]`` with the trapezoid rule and divided by ``fpr_limit``, so a
    perfect detector scores 1.0 and a constant map scores ``fpr_limit / 2``.

    Method (exact, no threshold sampling): PRO is a weighted true-positive rate in which each
    defect pixel weighs ``1 / size(region)``, so the whole curve over *every* distinct map
    value is a weighted ROC curve computed by ``sklearn.metrics.roc_curve`` with
    ``sample_weight``. To keep it cheap, only pixels scoring at least ``t_cut`` are sorted,
    where ``t_cut`` is a normal-pixel score whose FPR already exceeds ``fpr_limit``; the
    pixels below it are folded into one normal and one defect sample of matching total
    weight, which leaves the curve up to ``fpr_limit`` unchanged. The curve is linearly
    interpolated at exactly ``fpr_limit``.

    Args:
        masks: (N, H, W) bool or 0/1 ground truth, True = defect pixel.
        maps: (N, H, W) float anomaly maps, higher = more anomalous.
        fpr_limit: Upper end of the FPR integration range, in (0, 1].

    Returns:
        The normalised AUPRO in [0, 1], or nan when there is no defect region or no normal
        pixel.

    Raises:
        ValueError: If the shapes differ or are not 3-D, masks are not 0/1, maps are not
            finite, or ``fpr_limit`` is outside (0, 1].
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    masks, maps = _check_masks_maps(masks, maps)

    regions, n_regions = ndimage.label(masks, structure=_REGION_STRUCTURE)
    normal = ~masks
    n_normal = int(np.count_nonzero(normal))
    if n_regions == 0 or n_normal == 0:
        return _NAN

    region_ids = regions.ravel()
    scores = maps.ravel().astype(np.float64, copy=False)
    region_sizes = np.bincount(region_ids, minlength=n_regions + 1).astype(np.float64)
    region_sizes[0] = 1.0  # weight 1 for every normal pixel
    is_defect = region_ids != 0

    # t_cut: a normal-pixel score with FPR(t_cut) > fpr_limit (one extra pixel guards against
    # rounding in the product below).
    normal_scores = scores[~is_defect]
    n_top = min(n_normal, math.ceil(fpr_limit * n_normal) + 1)
    t_cut = np.partition(normal_scores, n_normal - n_top)[n_normal - n_top]

    keep = scores >= t_cut
    y_true = is_defect[keep]
    y_score = scores[keep]
    weight = 1.0 / region_sizes[region_ids[keep]]
    # Fold the pixels below t_cut into one normal and one defect sample just below t_cut.
    dropped_ids = region_ids[~keep]
    w_normal = float(np.count_nonzero(dropped_ids == 0))
    w_defect = float((1.0 / region_sizes[dropped_ids[dropped_ids != 0]]).sum())
    below = np.nextafter(t_cut, -np.inf)
    y_true = np.concatenate([y_true, [False, True]])
    y_score = np.concatenate([y_score, [below, below]])
    weight = np.concatenate([weight, [w_normal, w_defect]])

    fpr, pro, _ = roc_curve(y_true, y_score, sample_weight=weight)

    # Keep the points with fpr <= fpr_limit and interpolate one at exactly fpr_limit.
    end = int(np.searchsorted(fpr, fpr_limit, side="right"))
    fpr_part, pro_part = fpr[:end], pro[:end]
    if fpr_part[-1] < fpr_limit and end < fpr.size:
        x0, x1, y0, y1 = fpr[end - 1], fpr[end], pro[end - 1], pro[end]
        y_lim = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        fpr_part = np.append(fpr_part, fpr_limit)
        pro_part = np.append(pro_part, y_lim)
    area = float(np.trapezoid(pro_part, fpr_part))
    return float(np.clip(area / fpr_limit, 0.0, 1.0))


def rates_at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Rates:
    """Computes confusion counts and rates when parts with ``score >= threshold`` are flagged.

    Args:
        labels: (N,) int array, 1 = defect, 0 = good.
        scores: (N,) float array, higher = more anomalous.
        threshold: Decision threshold.

    Returns:
        The counts and rates; a rate whose denominator is zero is nan.

    Raises:
        ValueError: If the shapes differ, the arrays are empty, labels are not 0/1, or a
            score or the threshold is NaN.
    """
    labels, scores = _check_labels_scores(labels, scores)
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    predicted = (scores >= threshold).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, predicted, labels=[0, 1]).ravel())
    return Rates(
        threshold=float(threshold),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        fnr=_ratio(fn, fn + tp),
        fpr=_ratio(fp, fp + tn),
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
    )
