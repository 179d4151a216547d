"""Benchmark the supervised classifier on all 2,624 ELPV cells (mono + poly).

Labels: the ``elpv-dataset`` package gives each cell a defect probability in {0, 1/3, 2/3, 1};
a cell is defective when that probability is >= 0.5. Split: 25% of the cells are held out as
the test set, stratified by (defective, cell type), ``random_state=0``. Training, early stopping
and the threshold use the remaining 75% only (:func:`adcore.classifier.train_classifier` holds
out its own stratified validation share); the test set is scored once, at the end.

Reported on the test set: accuracy at the FNR-first threshold chosen on validation (Loupe's
operating point) and at p(defect) >= 0.5 (the plain classifier decision, comparable with the
88.4% of the CNN of Deitsch et al., Solar Energy 2019), FNR, FPR, AUROC, train time, ms/image.

Usage:
    nice -n 5 .venv/bin/python bench/run_classifier.py [--image-size 160] [--max-epochs 8]
        [--frozen-stages 3] [--budget-seconds 780] [--limit N]

Results go to ``bench/out/classifier-elpv.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adcore.classifier import ClassifierConfig, LabelledImage, train_classifier  # noqa: E402
from adcore.datasets import _elpv_data_dir, _read_elpv_labels  # noqa: E402
from adcore.detectors.base import load_many  # noqa: E402
from adcore.metrics import rates_at_threshold  # noqa: E402

OUT = ROOT / "bench" / "out"
TEST_FRACTION = 0.25
SPLIT_SEED = 0
DEFECT_PROBABILITY = 0.5


def elpv_cells() -> tuple[list[Path], np.ndarray, list[str]]:
    """Every ELPV cell: (paths, (N,) 0/1 labels with defect = probability >= 0.5, cell types)."""
    data_dir = _elpv_data_dir()
    rows = _read_elpv_labels(data_dir / "labels.csv")
    paths = [data_dir / name for name, _, _ in rows]
    labels = np.array([int(prob >= DEFECT_PROBABILITY) for _, prob, _ in rows])
    return paths, labels, [cell for _, _, cell in rows]


def _rates(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    r = rates_at_threshold(labels, scores, threshold)
    return {
        "threshold": float(threshold),
        "accuracy": (r.tp + r.tn) / len(labels),
        "fnr": r.fnr,
        "fpr": r.fpr,
        "tp": r.tp,
        "fp": r.fp,
        "tn": r.tn,
        "fn": r.fn,
    }


def main(argv: list[str] | None = None) -> int:
    """Train the classifier on the ELPV train split and write its test metrics to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--frozen-stages", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--target-fnr", type=float, default=0.05)
    parser.add_argument("--budget-seconds", type=float, default=780.0)
    parser.add_argument("--limit", type=int, default=None, help="use only N cells (smoke runs)")
    parser.add_argument("--out", type=Path, default=OUT / "classifier-elpv.json")
    args = parser.parse_args(argv)

    paths, labels, cells = elpv_cells()
    strata = [f"{y}-{c}" for y, c in zip(labels, cells, strict=True)]
    index = np.arange(len(paths))
    if args.limit:
        index, _ = train_test_split(
            index, train_size=args.limit, random_state=SPLIT_SEED, stratify=strata
        )
    train_idx, test_idx = train_test_split(
        index,
        test_size=TEST_FRACTION,
        random_state=SPLIT_SEED,
        stratify=[strata[i] for i in index],
    )
    samples = [
        LabelledImage(paths[i], "defect" if labels[i] else "good") for i in sorted(train_idx)
    ]
    config = ClassifierConfig(
        backbone=args.backbone,
        image_size=args.image_size,
        max_epochs=args.max_epochs,
        patience=args.patience,
        frozen_stages=args.frozen_stages,
        learning_rate=args.learning_rate,
        target_fnr=args.target_fnr,
        max_train_seconds=args.budget_seconds,
    )
    print(f"{len(train_idx)} training cells, {len(test_idx)} test cells; {config}", flush=True)

    def progress(fraction: float, message: str) -> None:
        if "validation" in message or fraction in (0.0, 1.0):
            print(f"[{fraction:5.1%}] {message}", flush=True)

    load_before = os.getloadavg()
    started = time.perf_counter()
    classifier, report = train_classifier(samples, config, progress=progress, device="cpu")
    train_seconds = time.perf_counter() - started

    test_paths = [paths[i] for i in sorted(test_idx)]
    test_labels = labels[sorted(test_idx)]
    loaded, failures = load_many(test_paths)
    if failures:
        raise RuntimeError(f"{len(failures)} test images failed to load: {failures[:3]}")
    pixels = [im.pixels for im in loaded]
    scoring_start = time.perf_counter()
    scores, _ = classifier.predict_proba(pixels)
    ms_per_image = 1000 * (time.perf_counter() - scoring_start) / len(pixels)

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": ".venv/bin/python bench/run_classifier.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "niceness": os.nice(0),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "n_train_part": len(train_idx),
        "n_test": len(test_idx),
        "test_defects": int(test_labels.sum()),
        "config": report_config(config),
        "train_seconds": train_seconds,
        "ms_per_image": ms_per_image,
        "test_auroc": float(roc_auc_score(test_labels, scores)),
        "test_at_threshold": _rates(test_labels, scores, float(classifier.threshold)),
        "test_at_half": _rates(test_labels, scores, 0.5),
        "report": report.to_dict(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    summary = {k: v for k, v in result.items() if k not in ("report", "config")}
    print(json.dumps(summary, indent=2))
    return 0


def report_config(config: ClassifierConfig) -> dict:
    """``config`` as a plain dict for the JSON result."""
    from dataclasses import asdict

    return asdict(config)


if __name__ == "__main__":
    raise SystemExit(main())
