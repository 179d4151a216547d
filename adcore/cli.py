"""Command line of the detection core: ``python -m adcore {fit,score,export,benchmark,demo}``.

Examples:
    python -m adcore fit elpv:mono --out models/solar/v1
    python -m adcore score models/solar/v1 part1.png part2.png --json
    python -m adcore export models/solar/v1 --format onnx   # writes models/solar/v1/model.onnx
    python -m adcore score models/solar/v1 part1.png --runtime onnx
    python -m adcore benchmark ../shared/datasets/magnetic_tile --max-train 200 --json
    python -m adcore benchmark mvtec/bottle --detector clip --clip-model ViT-B-16-plus-240 \
        --clip-pretrained ~/clip/vit_b_16_plus_240-laion400m_e32-699c4b84.pt --shots 1

Commands that need the store (the job worker, seeding the workbench demo) are ``loupe``'s
(:mod:`loupe.cli`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from tqdm import tqdm

from adcore.datasets import resolve_dataset
from adcore.detectors.registry import DETECTOR_KINDS, RUNTIMES, build_detector, load_detector
from adcore.errors import LoupeError


class _Bar:
    """A tqdm bar fed by a ``progress(fraction, message)`` callback (writes to stderr)."""

    def __init__(self, desc: str, enabled: bool = True) -> None:
        self.bar = tqdm(
            total=1000,
            desc=desc,
            disable=not enabled,
            file=sys.stderr,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}",
        )

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.n = int(1000 * min(max(fraction, 0.0), 1.0))
        self.bar.set_postfix_str(message, refresh=True)

    def close(self) -> None:
        self.bar.close()


_SETTINGS = {
    "image_size": "image_size",
    "coreset_ratio": "coreset_ratio",
    "backbone": "backbone",
    "image_score": "image_score",
    "clip_model": "model_name",
    "clip_pretrained": "pretrained",
    "shots": "shots",
    "object_name": "object_name",
    "window_stride": "window_stride",
    "tile_size": "tile_size",
    "tile_overlap": "tile_overlap",
}
"""CLI option (argparse dest) -> detector config field."""


def _detector_settings(args: argparse.Namespace, dataset_name: str | None = None) -> dict:
    settings = {}
    for option, field in _SETTINGS.items():
        value = getattr(args, option, None)
        if value is not None:
            settings[field] = value
    if getattr(args, "detector", None) == "clip" and "object_name" not in settings:
        from adcore.detectors.clip.prompts import clean_object_name

        try:  # WinCLIP prompts with the category name (MVTec folder names are object names)
            settings["object_name"] = clean_object_name(dataset_name)
        except ValueError:
            settings["object_name"] = "object"
    return settings


def cmd_fit(args: argparse.Namespace) -> int:
    """``fit``: train a detector on a dataset's good images and save it to ``--out``."""
    dataset = resolve_dataset(args.data, max_train=args.max_train)
    detector = build_detector(args.detector, **_detector_settings(args, dataset.name))
    bar = _Bar(f"fit {args.detector}", not args.quiet)
    report = detector.fit([s.path for s in dataset.train], progress=bar)
    bar.close()
    detector.save(args.out, extra={"dataset": dataset.name}, overwrite=args.overwrite)
    for name, why in report.skipped:
        print(f"skipped {name}: {why}", file=sys.stderr)
    print(
        f"Fitted {args.detector} on {report.n_images} images of {dataset.name} in "
        f"{report.seconds:.1f} s; threshold {detector.threshold}; saved to {args.out}"
    )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """``score``: score image files with a saved model and print one row per image.

    Returns:
        The exit code: 1 when every image failed to load, else 0.
    """
    detector = load_detector(args.model, runtime=args.runtime)
    if args.threshold is not None:
        detector.with_threshold(args.threshold)
    results, failures = detector.predict_files(args.images)
    rows = [
        {
            "image": im.name,
            "score": pred.score,
            "threshold": pred.threshold,
            "verdict": None if pred.is_defect is None else ("defect" if pred.is_defect else "good"),
        }
        for im, pred in results
    ]
    errors = [{"image": name, "error": why} for name, why in failures]
    if args.json:
        print(json.dumps({"results": rows, "errors": errors}, indent=2))
    else:
        for row in rows:
            print(f"{row['image']}\t{row['score']:.4f}\t{row['verdict'] or '-'}")
        for err in errors:
            print(f"{err['image']}\tERROR\t{err['error']}", file=sys.stderr)
    return 0 if rows or not errors else 1


def cmd_export(args: argparse.Namespace) -> int:
    """``export``: write a saved PatchCore as one ONNX file (see :mod:`adcore.export`)."""
    from pathlib import Path

    from adcore.export.onnx_export import EXPORT_FILE, export_patchcore

    detector = load_detector(args.model, device="cpu")
    out = Path(args.out) if args.out else Path(args.model) / EXPORT_FILE
    export_patchcore(detector, out, quantize=args.quantize, source=str(args.model))
    threshold = detector.threshold
    print(
        f"Exported {args.model} to {out} ({out.stat().st_size / 1e6:.1f} MB"
        f"{', int8' if args.quantize else ''}); threshold {threshold}"
    )
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    """``benchmark``: fit and evaluate a detector on a dataset; print the metrics."""
    from adcore.benchmark import run_benchmark

    dataset = resolve_dataset(args.data, max_train=args.max_train)
    result = run_benchmark(
        dataset, args.detector, onnx=args.onnx, **_detector_settings(args, dataset.name)
    )
    if args.json:
        print(json.dumps(result.to_json_dict()))
    else:
        for key, value in result.to_json_dict().items():
            print(f"{key:>20}: {value}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Fit on the ELPV mono train split and score a sample of its test split."""
    from adcore.detectors.base import load_many
    from adcore.metrics import image_metrics, rates_at_threshold

    dataset = resolve_dataset("elpv:mono")
    detector = build_detector("patchcore")
    bar = _Bar("fit", not args.quiet)
    detector.fit([s.path for s in dataset.train], progress=bar)
    bar.close()
    detector.save(args.out, extra={"dataset": dataset.name}, overwrite=True)
    loaded, _ = load_many([s.path for s in dataset.test])
    bar = _Bar("score", not args.quiet)
    preds = detector.predict([im.pixels for im in loaded], progress=bar)
    bar.close()
    labels = [s.label for s in dataset.test]
    scores = [p.score for p in preds]
    m = image_metrics(labels, scores)
    r = rates_at_threshold(labels, scores, detector.threshold)
    print(
        f"ELPV mono demo: {len(dataset.train)} good cells fitted, {len(preds)} scored. "
        f"Image AUROC {m.auroc:.3f}; at the calibrated threshold {detector.threshold:.2f}: "
        f"FNR {r.fnr:.1%}, FPR {r.fpr:.1%}. Model saved to {args.out}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m adcore`` argument parser, each sub-command bound to its ``cmd_*``."""
    parser = argparse.ArgumentParser(
        prog="python -m adcore",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    data_help = "MVTec-layout folder, folder of good images, or elpv:mono / elpv:poly"

    def detector_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--detector", choices=DETECTOR_KINDS, default="patchcore")
        p.add_argument("--image-size", type=int, help="model input side in pixels")
        p.add_argument("--coreset-ratio", type=float, help="PatchCore memory-bank fraction")
        p.add_argument("--backbone", help="backbone name (PatchCore)")
        p.add_argument(
            "--image-score",
            choices=("smoothed_max", "reweighted_max"),
            help="PatchCore image score: smoothed_max (default) or reweighted_max (eq. 7)",
        )
        p.add_argument("--max-train", type=int, help="use the first N train images")
        p.add_argument(
            "--tile-size",
            type=int,
            help="PatchCore: fit and score large images in tiles of this side (native resolution)",
        )
        p.add_argument(
            "--tile-overlap", type=float, help="least shared fraction of neighbouring tiles (0.25)"
        )
        p.add_argument("--clip-model", help="open_clip architecture (CLIP), e.g. ViT-B-16-plus-240")
        p.add_argument(
            "--clip-pretrained",
            help="open_clip pretrained tag in the local cache, or a checkpoint file (CLIP)",
        )
        p.add_argument(
            "--shots", type=int, help="good reference images (CLIP; 0 = zero-shot, default all)"
        )
        p.add_argument(
            "--object-name", help="object name in the CLIP prompts (default: the dataset name)"
        )
        p.add_argument(
            "--window-stride", type=int, help="step between CLIP windows (default 1, as WinCLIP)"
        )

    fit = sub.add_parser("fit", help="fit a detector on good images and save it")
    fit.add_argument("data", help=data_help)
    fit.add_argument("--out", required=True, help="model directory to write")
    fit.add_argument("--overwrite", action="store_true")
    fit.add_argument("--quiet", action="store_true")
    detector_options(fit)
    fit.set_defaults(func=cmd_fit)

    score = sub.add_parser("score", help="score images with a saved model")
    score.add_argument("model", help="model directory")
    score.add_argument("images", nargs="+")
    score.add_argument("--threshold", type=float, help="override the saved threshold")
    score.add_argument("--json", action="store_true")
    score.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="torch model, or the directory's ONNX export (model.onnx) via onnxruntime",
    )
    score.set_defaults(func=cmd_score)

    export = sub.add_parser("export", help="export a saved PatchCore as one ONNX file")
    export.add_argument("model", help="model directory")
    export.add_argument("--format", choices=("onnx",), default="onnx")
    export.add_argument("--out", help="file to write (default MODEL/model.onnx)")
    export.add_argument(
        "--quantize", choices=("int8",), help="onnxruntime dynamic int8 quantization (optional)"
    )
    export.set_defaults(func=cmd_export)

    bench = sub.add_parser("benchmark", help="fit on train, evaluate on test")
    bench.add_argument("data", help=data_help)
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument(
        "--onnx",
        action="store_true",
        help="PatchCore: also export to ONNX and score the test split with onnxruntime "
        "(speed, largest relative score difference, verdict changes)",
    )
    detector_options(bench)
    bench.set_defaults(func=cmd_benchmark)

    demo = sub.add_parser("demo", help="fit and score the ELPV mono demo")
    demo.add_argument("--out", default="models/demo/elpv-mono")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=cmd_demo)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors are printed to stderr.

    Returns:
        The exit code: the command's own, or 2 on a :class:`LoupeError` or bad value.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except LoupeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
