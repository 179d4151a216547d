"""Benchmark: training the feedback scorer on 1,000 labelled parts (target: under 10 s).

Real data by default: PatchCore (EfficientNet-Lite0, 256 px, coreset 0.01) is fitted on the
first 200 magnetic-tile ``train/good`` images, then scores every other magnetic-tile image (the
552 other good training images and the 592 test images, 392 of them defective). Each gets its
score and anomaly-focused vector, stored as float16 exactly as the app stores them; they are
cached in ``bench/out/`` so a re-run only times the training. 1,000 of those parts (every
defect, the first good ones by name) are the labelled parts. ``--synthetic`` uses random vectors
of the same dimension instead (no dataset needed); the output says which was used.

Also reported, on a stable 25% hash split like the job's: held-out AUROC of the detector score
alone vs the scorer, and FNR/FPR at each one's FNR-first threshold chosen on the training part.

    python bench/scorer_training.py --write-results
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adcore.explain.neighbours import embedding_from_bytes, embedding_to_bytes  # noqa: E402
from adcore.feedback_scorer import DetectorIdentity, train_feedback_scorer  # noqa: E402
from adcore.metrics import rates_at_threshold  # noqa: E402
from adcore.thresholds import select_threshold  # noqa: E402

DATASET = ROOT.parent / "shared" / "datasets" / "magnetic_tile"
CACHE = ROOT / "bench" / "out" / "scorer_magnetic_tile.npz"
RESULTS = ROOT / "bench" / "RESULTS_scorer.md"
N_PARTS = 1000
HOLDOUT = 0.25
TARGET_FNR = 0.05
COMMAND = "python bench/scorer_training.py --write-results"


def real_parts() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], str]:
    """Scores (N,), float16-rounded vectors (N, D), labels (N,), names, and a description."""
    if not CACHE.is_file():
        _score_magnetic_tile()
    data = np.load(CACHE)
    order = np.argsort(-data["labels"], kind="stable")[:N_PARTS]  # every defect, then good
    names = [str(n) for n in data["names"][order]]
    source = (
        f"real: PatchCore (EfficientNet-Lite0, 256 px, coreset 0.01, fitted on 200 good) "
        f"scores and {data['vectors'].shape[1]}-d anomaly-focused vectors of {len(order)} "
        f"magnetic-tile images ({int(data['labels'][order].sum())} defective) not trained on"
    )
    return data["scores"][order], data["vectors"][order], data["labels"][order], names, source


def _score_magnetic_tile() -> None:
    from adcore.datasets import load_mvtec
    from adcore.detectors.base import load_many
    from adcore.detectors.registry import build_detector

    dataset = load_mvtec(DATASET)
    good = sorted((ROOT.parent / "shared/datasets/magnetic_tile/train/good").iterdir())
    train, extra_good = good[:200], good[200:]
    detector = build_detector("patchcore", device="cpu", image_size=256, coreset_ratio=0.01)
    started = time.perf_counter()
    detector.fit([str(p) for p in train])
    print(f"fitted PatchCore in {time.perf_counter() - started:.1f} s", flush=True)
    samples = [(p, 0) for p in extra_good] + [(s.path, s.label) for s in dataset.test]
    scores, vectors, labels, names = [], [], [], []
    for start in range(0, len(samples), 64):
        batch = samples[start : start + 64]
        loaded, failures = load_many([str(p) for p, _ in batch])
        assert not failures, failures
        for (path, label), prediction in zip(
            batch, detector.predict([im.pixels for im in loaded]), strict=True
        ):
            scores.append(prediction.score)
            stored = embedding_to_bytes(prediction.embedding)  # float16, as the app stores it
            vectors.append(embedding_from_bytes(stored))
            labels.append(label)
            names.append(f"{path.parent.name}/{path.name}")
        print(f"scored {min(start + 64, len(samples))}/{len(samples)}", flush=True)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        CACHE,
        scores=np.array(scores),
        vectors=np.stack(vectors),
        labels=np.array(labels),
        names=np.array(names),
    )


def synthetic_parts(dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], str]:
    """Random parts of the real vector dimension: 39% defective, separable along 8 directions."""
    rng = np.random.default_rng(0)
    labels = (rng.random(N_PARTS) < 0.39).astype(np.int64)
    vectors = rng.normal(size=(N_PARTS, dim))
    vectors[:, :8] += 0.8 * labels[:, None]
    scores = 1.0 + 0.5 * labels + rng.normal(size=N_PARTS)
    names = [f"synthetic-{i}" for i in range(N_PARTS)]
    return scores, vectors, labels, names, f"synthetic: {N_PARTS} random {dim}-d vectors"


def in_holdout(name: str) -> bool:
    """The job's stable split (``adcore.holdout.in_evaluation_share``) on the name."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0x1_0000_0000 < HOLDOUT


def main() -> None:
    """Time the training and measure the held-out gain; optionally write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", action="store_true", help="random vectors, no dataset")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    if args.synthetic or not DATASET.is_dir():
        scores, vectors, labels, names, source = synthetic_parts(dim=152)
    else:
        scores, vectors, labels, names, source = real_parts()
    identity = DetectorIdentity(None, None, "patchcore", int(vectors.shape[1]))
    seconds = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        train_feedback_scorer(scores, vectors, labels, detector=identity)
        seconds.append(time.perf_counter() - started)
    held = np.array([in_holdout(n) for n in names])
    fit = ~held
    scorer, report = train_feedback_scorer(
        scores[fit],
        vectors[fit],
        labels[fit],
        detector=identity,
        config=_config(),
    )
    p = scorer.predict_proba(scores[held], vectors[held])
    score_threshold = select_threshold(scores[fit], labels[fit], target_fnr=TARGET_FNR).value
    alone = rates_at_threshold(labels[held], scores[held], score_threshold)
    learned = rates_at_threshold(labels[held], p, scorer.threshold)
    from sklearn.metrics import roc_auc_score

    rows = [
        ("detector score alone", roc_auc_score(labels[held], scores[held]), alone),
        ("feedback scorer", roc_auc_score(labels[held], p), learned),
    ]
    lines = [
        "# Feedback scorer training",
        "",
        f"Command: `{COMMAND}` (from the repository root; `--synthetic` for random vectors).",
        "",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.python_version()}, "
        f"{os.cpu_count()} CPU cores, no GPU (the machine was shared with other work).",
        "",
        f"Data: **{source}**.",
        "",
        "Vectors are rounded to float16, as `predictions.embedding` stores them. The first run "
        "also fits PatchCore and scores the 1,144 images (about two minutes here); they are "
        "cached in `bench/out/`, so later runs time only the training.",
        "",
        f"Training on all {len(labels)} labelled parts "
        f"({report.vector_dim + 2} features, 3 strengths x {report.folds}-fold CV, Platt, "
        f"threshold, final fit), {args.repeats} runs: median **{statistics.median(seconds):.2f} "
        f"s** (min {min(seconds):.2f} s, max {max(seconds):.2f} s); target under 10 s.",
        "",
        f"Held-out quality (stable {HOLDOUT:.0%} hash split: {int(held.sum())} parts, "
        f"{int(labels[held].sum())} defective; trained and thresholds chosen on the other "
        f"{int(fit.sum())}; FNR-first thresholds with target FNR {TARGET_FNR:.0%}):",
        "",
        "| model | held-out AUROC | FNR | FPR |",
        "|---|---|---|---|",
        *(f"| {name} | {auc:.3f} | {r.fnr:.1%} | {r.fpr:.1%} |" for name, auc, r in rows),
        "",
        f"Out-of-fold on the training part: AUROC {report.cv_auroc:.3f} (score alone "
        f"{report.score_auroc:.3f}), chosen C = {report.chosen_c}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_results:
        RESULTS.write_text(text)
        print(f"wrote {RESULTS.relative_to(ROOT)}")


def _config():
    from adcore.feedback_scorer import ScorerConfig

    return ScorerConfig(target_fnr=TARGET_FNR)


if __name__ == "__main__":
    main()
