"""Replay benchmark: the review-and-learn loop on real data, with an oracle inspector.

1. Fit PatchCore on the train split; the first threshold is the fit's own calibration (the
   ``good_quantile`` rule on held-out good training images).
2. Stream the test split in a fixed shuffled order (``--seed``). Each part is scored by the
   model *of that moment* (:meth:`PatchCore.predict`) and flagged when ``score >= threshold``.
3. An oracle inspector (the ground-truth label) reviews every flagged part and every part
   within ``--margin`` below the threshold (``score >= threshold * (1 - margin)``, the review
   queue's own rule, :data:`db.review_queue.DEFAULT_NEAR_MARGIN`).
4. Corrections feed the loop: a flagged part confirmed good joins the bank at once
   (:meth:`PatchCore.update`); after every review the threshold is re-chosen with the FNR-first
   rule (:func:`select_threshold`, ``--target-fnr``) on all reviewed parts, re-scored by the
   current model (until a defect is reviewed the current threshold is kept); every
   ``--retrain-every`` reviews PatchCore is refit on train + every part confirmed good.

Reports per window of ``--window`` streamed parts (FNR, FPR, share sent to a human, reviews so
far), and a snapshot at the start and after ``--checkpoint`` reviews (see RESULTS_replay.md
for exactly what is measured). Writes ``bench/out/replay-<dataset>.json``; ``--render``
rewrites ``bench/RESULTS_replay.md`` and ``bench/replay_<dataset>.png`` from those files.

Usage (from the repository root):
    nice -n 5 .venv/bin/python bench/replay.py --dataset elpv-mono
    nice -n 5 .venv/bin/python bench/replay.py --dataset magnetic-tile
    .venv/bin/python bench/replay.py --render
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
MAGNETIC_TILE = ROOT.parent / "shared" / "datasets" / "magnetic_tile"
sys.path.insert(0, str(ROOT))

from replay_scoring import CachedScorer  # noqa: E402

from adcore.datasets import Dataset, load_elpv, load_mvtec  # noqa: E402
from adcore.detectors.base import load_many  # noqa: E402
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig  # noqa: E402
from adcore.metrics import image_metrics, rates_at_threshold  # noqa: E402
from adcore.thresholds import select_threshold  # noqa: E402

# name -> (loader, image size)
SUITES = {
    "elpv-mono": (lambda: load_elpv("mono"), 224),
    "magnetic-tile": (lambda: load_mvtec(MAGNETIC_TILE, max_train=200), 256),
}


def _clean(value: Any) -> Any:
    """JSON-safe: NaN becomes None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def operating_point(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Rates of a fixed threshold: (N,) labels and scores."""
    r = rates_at_threshold(labels, scores, threshold)
    return {"threshold": threshold, "fnr": r.fnr, "fpr": r.fpr, "fp": r.fp, "fn": r.fn}


def fnr_first_point(labels: np.ndarray, scores: np.ndarray, target_fnr: float) -> dict:
    """The FNR-first threshold chosen on these very labels, and its rates (model quality)."""
    choice = select_threshold(scores, labels, target_fnr=target_fnr)
    return {"threshold": choice.value, "fnr": choice.fnr, "fpr": choice.fpr}


def snapshot(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    keep: np.ndarray,
    target_fnr: float,
) -> dict:
    """Operating point, FNR-first point and AUROC on the parts selected by ``keep`` (N,) bool."""
    lab, sc = labels[keep], scores[keep]
    return {
        "n": int(keep.sum()),
        "n_defect": int(lab.sum()),
        "operating": operating_point(lab, sc, threshold),
        "fnr_first": fnr_first_point(lab, sc, target_fnr),
        "auroc": image_metrics(lab, sc).auroc,
    }


def recalibrate(
    scores: np.ndarray, labels: np.ndarray, current: float, target: float, cap: float | None
) -> float:
    """FNR-first threshold on the reviewed parts (the current one until a defect is reviewed).

    Args:
        scores: (R,) reviewed parts' scores under the current model.
        labels: (R,) their oracle labels.
        current: The threshold in force.
        target: Target FNR.
        cap: Upper bound (the current model's calibrated threshold), or None for no bound.
            Reviewed parts are censored: defects scoring below the review band are never
            seen, so on its own the rule can only over-estimate where the lowest defect is.
    """
    if labels.sum() == 0:
        return current
    value = float(select_threshold(scores, labels, target_fnr=target).value)
    return value if cap is None else min(value, cap)


def replay(dataset: Dataset, args: argparse.Namespace, image_size: int) -> dict:
    """Run the loop on one dataset; returns the JSON-ready result."""
    t_start = time.perf_counter()
    config = PatchCoreConfig(image_size=image_size)
    order = np.random.default_rng(args.seed).permutation(len(dataset.test))
    stream = [dataset.test[i] for i in order]
    loaded, skipped = load_many([s.path for s in stream])
    if skipped:
        raise SystemExit(f"unreadable test images: {skipped[:3]}")
    pixels = [im.pixels for im in loaded]
    labels = np.array([s.label for s in stream], dtype=np.int64)
    train = [s.path for s in dataset.train]

    detector = PatchCore(config, device="cpu")
    fit = detector.fit(train)
    fit_seconds = fit.seconds
    threshold = start_threshold = float(detector.threshold)
    capped = args.threshold_policy == "capped"
    cap = threshold if capped else None
    t0 = time.perf_counter()
    scorer = CachedScorer(detector, pixels)
    scorer.sync(detector)
    embed_seconds = time.perf_counter() - t0
    start_scores = scorer.scores()
    print(f"fit {fit_seconds:.0f} s, embed test {embed_seconds:.0f} s", flush=True)

    reviewed: list[int] = []
    confirmed_good: list[int] = []
    steps: list[dict] = []
    update_seconds: list[float] = []
    retrain_seconds: list[float] = []
    checkpoint: dict | None = None
    max_rel_dev = 0.0
    for pos in range(len(stream)):
        score = detector.predict([pixels[pos]])[0].score
        cached = scorer.scores()[pos]
        max_rel_dev = max(max_rel_dev, abs(score - cached) / max(abs(score), 1e-9))
        flagged = score >= threshold
        review = score >= threshold * (1.0 - args.margin)
        step = {
            "pos": pos,
            "label": int(labels[pos]),
            "score": score,
            "threshold": threshold,
            "flagged": bool(flagged),
            "reviewed": bool(review),
            "baseline_score": float(start_scores[pos]),
            "instant": False,
            "retrained": False,
        }
        if review:
            reviewed.append(pos)
            if labels[pos] == 0:
                confirmed_good.append(pos)
                if flagged:
                    t0 = time.perf_counter()
                    detector.update([pixels[pos]])
                    update_seconds.append(time.perf_counter() - t0)
                    scorer.sync(detector)
                    step["instant"] = True
            if len(reviewed) % args.retrain_every == 0:
                t0 = time.perf_counter()
                detector = PatchCore(config, device="cpu")
                detector.fit(train + [pixels[j] for j in confirmed_good])
                retrain_seconds.append(time.perf_counter() - t0)
                threshold = float(detector.threshold)  # until a defect is reviewed
                cap = threshold if capped else None
                scorer.sync(detector)
                step["retrained"] = True
            now = scorer.scores()
            threshold = recalibrate(
                now[reviewed], labels[reviewed], threshold, args.target_fnr, cap
            )
            if len(reviewed) == args.checkpoint:
                rest = np.arange(len(stream)) > pos
                checkpoint = {
                    "after_position": pos,
                    "threshold": threshold,
                    "remainder": {
                        "start": snapshot(
                            labels, start_scores, start_threshold, rest, args.target_fnr
                        ),
                        "now": snapshot(labels, now, threshold, rest, args.target_fnr),
                    },
                    "whole_now": snapshot(
                        labels, now, threshold, np.ones(len(stream), bool), args.target_fnr
                    ),
                }
        step |= {"reviews": len(reviewed), "bank": int(detector.model.memory_bank.shape[0])}
        steps.append(step)
        if (pos + 1) % args.window == 0:
            print(f"{pos + 1} parts, {len(reviewed)} reviews, thr {threshold:.3f}", flush=True)
    if max_rel_dev > 1e-3:
        raise SystemExit(f"cached scores disagree with predict(): {max_rel_dev:.2e}")
    everything = np.ones(len(stream), bool)
    with tempfile.TemporaryDirectory() as tmp:  # what an instant update adds around update()
        t0 = time.perf_counter()
        detector.save(Path(tmp) / "model")
        save_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        PatchCore.load(Path(tmp) / "model", device="cpu")
        load_seconds = time.perf_counter() - t0
    return _clean(
        {
            "dataset": dataset.summary(),
            "settings": {
                "image_size": image_size,
                "seed": args.seed,
                "margin": args.margin,
                "target_fnr": args.target_fnr,
                "retrain_every": args.retrain_every,
                "threshold_policy": args.threshold_policy,
                "window": args.window,
                "checkpoint": args.checkpoint,
                "patchcore": {k: getattr(config, k) for k in config.__dataclass_fields__},
            },
            "start": {
                "threshold": start_threshold,
                "whole": snapshot(
                    labels, start_scores, start_threshold, everything, args.target_fnr
                ),
            },
            "checkpoint": checkpoint,
            "windows": windows(steps, args.window),
            "steps": steps,
            "totals": {
                "reviews": len(reviewed),
                "instant_updates": len(update_seconds),
                "retrains": len(retrain_seconds),
                "confirmed_good": len(confirmed_good),
            },
            "seconds": {
                "fit": fit_seconds,
                "embed_test": embed_seconds,
                "update_mean": float(np.mean(update_seconds)) if update_seconds else None,
                "update_max": max(update_seconds, default=None),
                "retrain_mean": float(np.mean(retrain_seconds)) if retrain_seconds else None,
                "save_final": save_seconds,
                "load_final": load_seconds,
                "total": time.perf_counter() - t_start,
            },
            "max_rel_dev_cached_vs_predict": max_rel_dev,
        }
    )


def windows(steps: list[dict], size: int) -> list[dict]:
    """Per-window FNR/FPR of the decisions made on the stream, and of the frozen start model."""
    start_thr = steps[0]["threshold"]
    rows = []
    for lo in range(0, len(steps), size):
        part = steps[lo : lo + size]
        lab = np.array([s["label"] for s in part])
        flagged = np.array([s["flagged"] for s in part])
        base = np.array([s["baseline_score"] >= start_thr for s in part])
        n_def, n_good = int(lab.sum()), int((1 - lab).sum())
        rows.append(
            {
                "parts": f"{lo + 1}-{lo + len(part)}",
                "n_good": n_good,
                "n_defect": n_def,
                "fnr": float((~flagged & (lab == 1)).sum() / n_def) if n_def else None,
                "fpr": float((flagged & (lab == 0)).sum() / n_good) if n_good else None,
                "to_human": float(np.mean([s["reviewed"] for s in part])),
                "reviews_so_far": part[-1]["reviews"],
                "threshold_end": part[-1]["threshold"],
                "bank_end": part[-1]["bank"],
                "baseline_fnr": float((~base & (lab == 1)).sum() / n_def) if n_def else None,
                "baseline_fpr": float((base & (lab == 0)).sum() / n_good) if n_good else None,
            }
        )
    return rows


def main() -> int:
    """Replay ``--dataset`` and write its JSON; with ``--render``, rewrite the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=sorted(SUITES))
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margin", type=float, default=0.1)
    parser.add_argument("--target-fnr", type=float, default=0.01)
    parser.add_argument("--retrain-every", type=int, default=100)
    parser.add_argument(
        "--threshold-policy",
        choices=("capped", "uncapped"),
        default="capped",
        help="capped: the FNR-first threshold never exceeds the model's calibrated one",
    )
    parser.add_argument("--tag", default="", help="suffix of the output file name")
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--checkpoint", type=int, default=200)
    parser.add_argument("--render", action="store_true", help="rewrite RESULTS_replay.md + plots")
    args = parser.parse_args()
    if args.dataset:
        loader, size = SUITES[args.dataset]
        size = args.image_size or size
        result = replay(loader(), args, size)
        result["command"] = "nice -n 5 .venv/bin/python bench/replay.py " + " ".join(sys.argv[1:])
        result["finished_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"replay-{args.dataset}{args.tag}.json").write_text(json.dumps(result, indent=1))
        print(json.dumps({k: result[k] for k in ("checkpoint", "totals", "seconds")}, indent=1))
    if args.render:
        from replay_report import render_all

        render_all(OUT, HERE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
