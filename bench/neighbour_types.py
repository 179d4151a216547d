"""How well do the nearest confirmed defects name a new defect's type? bench/RESULTS_explain.md.

Writes (only) its section of RESULTS_explain.md.

Usage: ``.venv/bin/python bench/neighbour_types.py [--train 100] [--per-type 30] [--size 256]
[--detector patchcore|autoencoder]``

A detector (default PatchCore, EfficientNet-Lite0) is fitted on good Magnetic-tile images;
every defect test image (up to ``per-type`` per type) is scored once. Leave-one-out: each defect
is the query, every other defect a confirmed one, and
:func:`adcore.explain.neighbours.nearest_defect_types` names a type. Two global vectors are
compared: the detector's anomaly-focused embedding (what inspection stores) and plain average
pooling of the same features. Reported per similarity floor:
coverage (queries with a named type: at least one neighbour above the floor), accuracy of the
named type on those, the majority-class baseline, and how often a type is still named when the
query's own type has no confirmed example (every name is then wrong).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explain_timing import replace_section  # noqa: E402

from adcore.datasets import load_mvtec  # noqa: E402
from adcore.detectors.autoencoder import Autoencoder, AutoencoderConfig  # noqa: E402
from adcore.detectors.base import load_many, to_tensor_batch  # noqa: E402
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig  # noqa: E402
from adcore.explain.neighbours import (  # noqa: E402
    SIMILARITY_FLOOR,
    DefectLibrary,
    nearest_defect_types,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile"
OUT = Path(__file__).resolve().parent / "RESULTS_explain.md"
HEADING = "# Nearest confirmed defect types"


def leave_one_out(
    vectors: np.ndarray, types: list[str], floor: float, *, unseen: bool = False
) -> tuple[int, int]:
    """(queries with a named type, of which correct); ``unseen``: without the query's type."""
    named = correct = 0
    for i in range(len(types)):
        others = [j for j in range(len(types)) if j != i and not (unseen and types[j] == types[i])]
        library = DefectLibrary.from_pairs([(vectors[j], types[j]) for j in others])
        found = nearest_defect_types(vectors[i], library, floor=floor)
        if found is not None:
            named += 1
            correct += found.defect_type == types[i]
    return named, correct


def anomaly_focused(detector: PatchCore | Autoencoder, images: list[np.ndarray]) -> np.ndarray:
    """(B, D) anomaly-focused vectors of ``images``, one per image.

    PatchCore's stored embedding; for the autoencoder, the same pooling of its bottleneck
    (:meth:`AutoencoderModel.embedding`, not stored).
    """
    if isinstance(detector, PatchCore):
        return np.stack([p.embedding for p in detector.predict(images)])
    x = to_tensor_batch(images, detector.config.image_size)
    with torch.inference_mode():
        latent = detector.model.eval().encode(x)
        maps = detector.model.anomaly_maps(x, detector.model.decode(latent))
        return detector.model.embedding(latent, maps).numpy()


def main() -> None:
    """Fit the detector, run the leave-one-out table and rewrite its RESULTS_explain.md section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=100)
    parser.add_argument("--per-type", type=int, default=30)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--detector", choices=("patchcore", "autoencoder"), default="patchcore")
    args = parser.parse_args()
    torch.manual_seed(0)
    dataset = load_mvtec(DATA, max_train=args.train)
    if args.detector == "patchcore":
        detector = PatchCore(PatchCoreConfig(image_size=args.size), device="cpu")
        features, what = detector.model.embed, "PatchCore (EfficientNet-Lite0"
    else:
        detector = Autoencoder(AutoencoderConfig(image_size=args.size), device="cpu")
        features, what = detector.model.encode, "Autoencoder (default config"
    start = time.perf_counter()
    detector.fit([s.path for s in dataset.train])
    fit_seconds = time.perf_counter() - start
    print(f"fit on {len(dataset.train)} good images in {fit_seconds:.0f} s")
    per_type: Counter[str] = Counter()
    samples = []
    for sample in dataset.test:
        if sample.defect_type != "good" and per_type[sample.defect_type] < args.per_type:
            per_type[sample.defect_type] += 1
            samples.append(sample)
    loaded, failures = load_many([s.path for s in samples])
    assert not failures, failures
    types = [s.defect_type for s in samples]
    focused = np.concatenate(
        [
            anomaly_focused(detector, [im.pixels for im in loaded[i : i + 16]])
            for i in range(0, len(loaded), 16)
        ]
    )
    with torch.inference_mode():
        plain = np.concatenate(
            [
                features(to_tensor_batch([im.pixels for im in loaded[i : i + 16]], args.size))
                .mean(dim=(2, 3))
                .numpy()
                for i in range(0, len(loaded), 16)
            ]
        )
    baseline = max(per_type.values()) / len(types)
    counts = ", ".join(f"{name} {n}" for name, n in sorted(per_type.items()))
    heading = HEADING if args.detector == "patchcore" else f"{HEADING} ({args.detector})"
    lines = [
        heading,
        "",
        "Command: `nice .venv/bin/python bench/neighbour_types.py "
        f"--train {args.train} --per-type {args.per_type} --size {args.size} "
        f"--detector {args.detector}`",
        "",
        f"{what}, {args.size} px) fitted on {len(dataset.train)} good "
        f"Magnetic-tile images in {fit_seconds:.0f} s; {len(types)} defect test images "
        f"({counts}). Leave-one-out: each defect is the query and every other defect a "
        "confirmed one; k = 5. *named*: queries for which a type is named (a neighbour at or "
        "above the floor); *correct*: the named type is the query's; *unseen*: a type is still "
        "named when the query's own type has no confirmed example (always wrong). "
        f"Majority-class baseline: {baseline:.0%}. Floor in use: {SIMILARITY_FLOOR}.",
        "",
        "| vector | floor | named | correct of named | named when its type is unseen |",
        "|---|---|---|---|---|",
    ]
    for name, vectors in (("anomaly-focused", focused), ("average-pooled", plain)):
        for floor in sorted({-1.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, SIMILARITY_FLOOR}):
            named, correct = leave_one_out(vectors, types, floor)
            wrongly, _ = leave_one_out(vectors, types, floor, unseen=True)
            lines.append(
                f"| {name} | {floor:.2f} | {named}/{len(types)} | "
                f"{correct}/{named} ({correct / max(1, named):.0%}) | "
                f"{wrongly}/{len(types)} ({wrongly / len(types):.0%}) |"
            )
    lines += [
        "",
        "*anomaly-focused*: the detector's patch features (PatchCore: patch embeddings, the "
        "vector inspection stores; autoencoder: its bottleneck, not stored because of these "
        "results) pooled where the patch scores are high, minus their plain mean "
        "(`adcore.detectors.pooling`); *average-pooled*: the plain mean of the same features, "
        "for comparison. The floor was chosen on the PatchCore run of these same images (no "
        "held-out split), on one dataset.",
    ]
    print("\n".join(lines))
    replace_section(OUT, heading, lines)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
