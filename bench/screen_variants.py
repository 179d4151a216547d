"""Screening of PatchCore variants: backbone, stages, input size, and two networks combined.

How Loupe's default detector was chosen (issue 13), after the image-score screening
(``bench/screen_image_scores.py``). For each variant and dataset, a PatchCore is fitted with the
product's code (:class:`adcore.detectors.patchcore.PatchCore`, coreset ratio 0.01, all train
images in the bank, image score ``smoothed_max`` with a blur of 1 patch) and every test image's
patch-score grid (each patch's distance to the bank, :meth:`PatchCoreModel.nearest`) is cached in
``bench/out/variants/*.npz`` with the fit time and the scoring time.

Pairs of variants are then combined on the cached grids by the rule of a PatchCore that reads
two networks (``backbone="a+b"``, :mod:`adcore.combined_features`): each network keeps its own
coreset (the same as its own fit) and a patch's distance is the root of the sum of the two
networks' squared distances. For two variants at the same input size that is exactly what the
product computes; a pair at two input sizes (multi-scale) is screened the same way, but the
product does not offer it (one input size per model), so it is marked, as are pairs of
different stages (the product's ``layers`` apply to every network).

Usage:
    python bench/screen_variants.py grids       (about 25 minutes on 2 cores)
    python bench/screen_variants.py render --write-results
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GRIDS = HERE / "out" / "variants"
sys.path.insert(0, str(ROOT))

from run_detectors import SUITES  # noqa: E402  (the same splits as the end-to-end benchmark)

from adcore.datasets import resolve_dataset  # noqa: E402
from adcore.detectors.base import load_many  # noqa: E402
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig  # noqa: E402
from adcore.detectors.patchcore.torch_model import smoothed_max  # noqa: E402
from adcore.metrics import image_metrics  # noqa: E402

# name -> (backbone, stages, input size)
VARIANTS: dict[str, tuple[str, tuple[int, ...], int]] = {
    "lite0": ("efficientnet_lite0", (2, 3), 256),
    "lite2": ("efficientnet_lite2", (2, 3), 256),
    "lite0 stages 2-4": ("efficientnet_lite0", (2, 3, 4), 256),
    "lite2 stages 2-4": ("efficientnet_lite2", (2, 3, 4), 256),
    "lite2 320 px": ("efficientnet_lite2", (2, 3), 320),
}
GRID_SIDE = 32  # grids of other input sizes are resized to 32 x 32 before combining


def _file(name: str, variant: str) -> Path:
    return GRIDS / f"{name}__{variant.replace(' ', '_')}.npz"


def compute_grids(names: list[str], variants: list[str]) -> None:
    """Fit each variant on each dataset and cache its test grids, labels and timings."""
    GRIDS.mkdir(parents=True, exist_ok=True)
    for variant in variants:
        backbone, layers, size = VARIANTS[variant]
        for name in names:
            if _file(name, variant).exists():
                continue
            spec, max_train = SUITES[name]
            dataset = resolve_dataset(spec, max_train=max_train)
            config = PatchCoreConfig(
                backbone=backbone, layers=layers, image_size=size, calibration_fraction=0.0
            )
            detector = PatchCore(config)
            start = time.perf_counter()
            detector.fit([s.path for s in dataset.train])
            fit_seconds = time.perf_counter() - start
            loaded, failures = load_many([s.path for s in dataset.test])
            if failures:
                raise SystemExit(f"{name}: {len(failures)} test images unreadable")
            grids = []
            start = time.perf_counter()
            with torch.inference_mode():
                for x, _done in detector._input_batches([im.pixels for im in loaded]):
                    emb = detector.model.embed(x)
                    b, d, h, w = emb.shape
                    dist, _ = detector.model.nearest(emb.permute(0, 2, 3, 1).reshape(-1, d))
                    grids.append(dist.view(b, h, w).numpy())
            grid_ms = 1000.0 * (time.perf_counter() - start) / len(loaded)
            np.savez(
                _file(name, variant),
                labels=np.array([s.label for s in dataset.test]),
                grid=np.concatenate(grids),
                fit_seconds=fit_seconds,
                grid_ms=grid_ms,
            )
            print(f"{name} {variant}: fit {fit_seconds:.1f} s, {grid_ms:.1f} ms/image", flush=True)


def _as_tensor(grid: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(grid))[:, None]
    if t.shape[-1] != GRID_SIDE:
        t = F.interpolate(t, size=(GRID_SIDE, GRID_SIDE), mode="bilinear", align_corners=False)
    return t


def _auroc(labels: np.ndarray, grid: torch.Tensor) -> float:
    return image_metrics(labels, smoothed_max(grid, 1.0).numpy()).auroc


def render() -> str:
    """The Markdown report from every cached file."""
    cached: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for name in SUITES:
        for variant in VARIANTS:
            if _file(name, variant).exists():
                with np.load(_file(name, variant)) as data:
                    cached[(name, variant)] = {k: data[k] for k in data.files}
    complete = [v for v in VARIANTS if all((n, v) in cached for n in SUITES)]
    if not complete:
        raise SystemExit(f"No variant cached on every dataset in {GRIDS}: run the grids step")
    rows: dict[str, dict[str, float]] = {}
    cost: dict[str, tuple[float, float]] = {}
    for variant in complete:
        rows[variant] = {
            n: _auroc(cached[(n, variant)]["labels"], _as_tensor(cached[(n, variant)]["grid"]))
            for n in SUITES
        }
        cost[variant] = _mean_cost([cached[(n, variant)] for n in SUITES])
    for a, b in itertools.combinations(complete, 2):
        label = f"{a} + {b}"
        if VARIANTS[a][2] != VARIANTS[b][2]:
            label += " (two input sizes: not offered)"
        elif VARIANTS[a][1] != VARIANTS[b][1]:
            label += " (different stages: not offered)"
        rows[label] = {}
        for n in SUITES:
            ga, gb = _as_tensor(cached[(n, a)]["grid"]), _as_tensor(cached[(n, b)]["grid"])
            rows[label][n] = _auroc(cached[(n, a)]["labels"], torch.sqrt(ga**2 + gb**2))
        cost[label] = tuple(x + y for x, y in zip(cost[a], cost[b], strict=True))
    names = list(SUITES)
    lines = [
        "# Detector variants screening",
        "",
        "Generated by `bench/screen_variants.py` (do not edit by hand). Commands:",
        "",
        "    python bench/screen_variants.py grids",
        "    python bench/screen_variants.py render --write-results",
        "",
        f"Machine: 2-core CPU, Python {platform.python_version()}. PatchCore fitted and searched "
        "by the product's code, coreset ratio 0.01, image score `smoothed_max` (blur 1 patch), "
        "image AUROC on each dataset's test split; the mean is over the three datasets (the "
        "default is chosen on the mean, never per dataset). A pair `a + b` is two networks "
        "combined by the product's rule (each its own coreset, distance = root of the sum of "
        "squares). Fit s and grid ms/image are sums over the pair and means over the datasets; "
        "grid ms/image times embedding and search only (no map, no resize), as an indication of "
        "cost: the grids step may share the CPU with other work, so compare times within this "
        "file only. The product combines networks at one input size and the same stages "
        '(`backbone="a+b"`, `layers` for both); other pairs are marked. The chosen default is '
        "measured end to end in `bench/RESULTS.md`.",
        "",
        "| variant | " + " | ".join(names) + " | mean | fit s | grid ms/image |",
        "|---|" + "---|" * (len(names) + 3),
    ]
    ranked = sorted(rows, key=lambda r: -np.mean(list(rows[r].values())))
    for row in ranked:
        values = [rows[row][n] for n in names]
        cells = " | ".join(f"{v:.4f}" for v in values)
        fit_s, grid_ms = cost[row]
        lines.append(f"| {row} | {cells} | {np.mean(values):.4f} | {fit_s:.1f} | {grid_ms:.1f} |")
    return "\n".join(lines) + "\n"


def _mean_cost(files: list[dict[str, np.ndarray]]) -> tuple[float, float]:
    return (
        float(np.mean([f["fit_seconds"] for f in files])),
        float(np.mean([f["grid_ms"] for f in files])),
    )


def main() -> int:
    """``grids`` caches the patch-score grids; ``render`` prints (and writes) the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="step", required=True)
    grids = sub.add_parser("grids")
    grids.add_argument("--only", choices=sorted(SUITES), action="append")
    grids.add_argument("--variant", choices=sorted(VARIANTS), action="append")
    rendered = sub.add_parser("render")
    rendered.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    if args.step == "grids":
        compute_grids(args.only or list(SUITES), args.variant or list(VARIANTS))
        return 0
    text = render()
    print(text)
    if args.write_results:
        (HERE / "RESULTS_variants.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
