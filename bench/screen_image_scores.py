"""Screening of image-score rules and test-time flips on cached patch-score grids.

How Loupe's default image score was chosen (issue 13). For each backbone and dataset, a PatchCore
is fitted with the product's code (:class:`adcore.detectors.patchcore.PatchCore`, 256 px,
coreset ratio 0.01, all train images in the bank) and every test image is embedded and searched
against the bank with the product's :meth:`PatchCoreModel.embed` and :meth:`nearest`, once as it
is and once flipped left-right (the flipped grid is flipped back). The grids are cached in
``bench/out/screen/*.npz``; the rules are then evaluated on them:

* ``reweighted_max``: PatchCore eq. 7 (the product's previous default);
* ``max``: the largest patch score;
* ``topK``: the mean of the K largest patch scores;
* ``smoothed_max s``: the largest value of the grid blurred by ``s`` patches (the product's
  ``smoothed_max``, with ``score_sigma = s``);
* ``+flip``: the same rule on the mean of the plain and flipped grids (the re-weighted max: the
  mean of the two images' scores).

Only ``reweighted_max`` and ``smoothed_max`` exist in the product; the others were screened and
left out. The chosen default is then measured end to end by ``bench/run_detectors.py``.

Usage:
    python bench/screen_image_scores.py grids --backbone efficientnet_lite0
    python bench/screen_image_scores.py grids --backbone efficientnet_lite2
    python bench/screen_image_scores.py render --write-results
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GRIDS = HERE / "out" / "screen"
sys.path.insert(0, str(ROOT))

from run_detectors import SUITES  # noqa: E402  (the same splits as the end-to-end benchmark)

from adcore.datasets import resolve_dataset  # noqa: E402
from adcore.detectors.base import load_many  # noqa: E402
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig  # noqa: E402
from adcore.detectors.patchcore.torch_model import smoothed_max  # noqa: E402
from adcore.metrics import image_metrics  # noqa: E402

IMAGE_SIZE = 256
TOP_K = (3, 5, 10, 25, 50)
SIGMAS = (0.5, 1.0)


def compute_grids(backbone: str, names: list[str]) -> None:
    """Fit, then cache each test image's re-weighted score and patch-score grids (two ways)."""
    GRIDS.mkdir(parents=True, exist_ok=True)
    for name in names:
        spec, max_train = SUITES[name]
        dataset = resolve_dataset(spec, max_train=max_train)
        config = PatchCoreConfig(
            backbone=backbone,
            image_size=IMAGE_SIZE,
            calibration_fraction=0.0,
            image_score="reweighted_max",
        )
        detector = PatchCore(config)
        start = time.perf_counter()
        detector.fit([s.path for s in dataset.train])
        fit_seconds = time.perf_counter() - start
        loaded, failures = load_many([s.path for s in dataset.test])
        if failures:
            raise SystemExit(f"{name}: {len(failures)} test images unreadable")
        model = detector.model
        out: dict[str, list[np.ndarray]] = {"rw": [], "rwf": [], "grid": [], "gridf": []}
        with torch.inference_mode():
            for x, _done in detector._input_batches([im.pixels for im in loaded]):
                for flipped, key in ((False, ""), (True, "f")):
                    images = x.flip(-1) if flipped else x
                    emb = model.embed(images)
                    b, d, h, w = emb.shape
                    flat = emb.permute(0, 2, 3, 1).reshape(b, h * w, d)
                    dist, index = model.nearest(flat.reshape(-1, d))
                    dist, index = dist.view(b, h * w), index.view(b, h * w)
                    grid = dist.view(b, h, w)
                    out["rw" + key].append(model.reweighted_max(flat, dist, index).numpy())
                    out["grid" + key].append((grid.flip(-1) if flipped else grid).numpy())
        labels = np.array([s.label for s in dataset.test])
        np.savez(
            GRIDS / f"{name}_{backbone}_{IMAGE_SIZE}.npz",
            labels=labels,
            fit_seconds=fit_seconds,
            **{k: np.concatenate(v) for k, v in out.items()},
        )
        print(f"{name} {backbone}: grids cached ({len(labels)} test images)", flush=True)


def rule_scores(data: np.lib.npyio.NpzFile) -> dict[str, np.ndarray]:
    """Every screened rule's image scores from one cached file."""
    grid, flipped = data["grid"], data["gridf"]
    n = grid.shape[0]
    plain, mean = grid.reshape(n, -1), ((grid + flipped) / 2).reshape(n, -1)
    rules = {
        "reweighted_max": data["rw"],
        "reweighted_max+flip": (data["rw"] + data["rwf"]) / 2,
        "max": plain.max(1),
        "max+flip": mean.max(1),
    }
    for k in TOP_K:
        rules[f"top{k}"] = np.sort(plain, 1)[:, -k:].mean(1)
        rules[f"top{k}+flip"] = np.sort(mean, 1)[:, -k:].mean(1)
    for sigma in SIGMAS:
        for suffix, g in (("", grid), ("+flip", (grid + flipped) / 2)):
            blurred = smoothed_max(torch.from_numpy(np.ascontiguousarray(g))[:, None], sigma)
            rules[f"smoothed_max {sigma:g}{suffix}"] = blurred.numpy()
    return rules


def render() -> str:
    """The Markdown report from every cached file."""
    files = sorted(GRIDS.glob("*.npz"))
    if not files:
        raise SystemExit(f"No cached grids in {GRIDS}: run the grids step first")
    table: dict[tuple[str, str], dict[str, float]] = {}
    for file in files:
        name, rest = file.stem.split("_", 1)
        backbone = rest.rsplit("_", 1)[0]
        with np.load(file) as data:
            labels = data["labels"]
            table[(backbone, name)] = {
                rule: image_metrics(labels, scores).auroc
                for rule, scores in rule_scores(data).items()
            }
    columns = sorted(table)
    backbones = sorted({b for b, _ in columns})
    rules = list(next(iter(table.values())))
    header = [f"{b.replace('efficientnet_', '')} {n}" for b, n in columns]
    header += [f"mean {b.replace('efficientnet_', '')}" for b in backbones]
    lines = [
        "# Image-score screening",
        "",
        "Generated by `bench/screen_image_scores.py` (do not edit by hand). Commands:",
        "",
        "    python bench/screen_image_scores.py grids --backbone efficientnet_lite0",
        "    python bench/screen_image_scores.py grids --backbone efficientnet_lite2",
        "    python bench/screen_image_scores.py render --write-results",
        "",
        "Image AUROC of each rule (rows) on each backbone and dataset (columns), 256 px, coreset "
        "ratio 0.01, PatchCore fitted and searched by the product's code; the means are over the "
        "three datasets (the default is chosen on the mean, never per dataset). Only "
        "`reweighted_max` and `smoothed_max` are offered by the product; the default is "
        "`smoothed_max 1` on Lite2, measured end to end in `bench/RESULTS.md`.",
        "",
        "| rule | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
    ]
    for rule in rules:
        cells = [f"{table[c][rule]:.4f}" for c in columns]
        for backbone in backbones:
            values = [table[c][rule] for c in columns if c[0] == backbone]
            complete = len(values) == len(SUITES)
            cells.append(f"{np.mean(values):.4f}" if complete else "n/a")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    lines.append("")
    for backbone in backbones:
        means = {
            rule: np.mean([table[c][rule] for c in columns if c[0] == backbone]) for rule in rules
        }
        best = max(means, key=means.get)
        lines.append(
            f"Best mean on {backbone}: `{best}` ({means[best]:.4f}); `reweighted_max` "
            f"{means['reweighted_max']:.4f}."
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """``grids`` caches the patch-score grids; ``render`` prints (and writes) the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="step", required=True)
    grids = sub.add_parser("grids")
    grids.add_argument("--backbone", default="efficientnet_lite0")
    grids.add_argument("--only", choices=sorted(SUITES), action="append")
    rendered = sub.add_parser("render")
    rendered.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    if args.step == "grids":
        compute_grids(args.backbone, args.only or list(SUITES))
        return 0
    text = render()
    print(text)
    if args.write_results:
        (HERE / "RESULTS_screening.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
