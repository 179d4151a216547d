"""Time the grounded explainer (``adcore.explain.explain``) per part: bench/RESULTS_explain.md.

Usage: ``.venv/bin/python bench/explain_timing.py [--repeats 50]``

Parts are synthetic textured images with a dark scratch at three image sizes, with a 64 px
(tiny PatchCore) and a 224 px anomaly map; every timing is the median and maximum over
``repeats`` calls after one warm-up call, single-threaded.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adcore.explain import explain  # noqa: E402

OUT = Path(__file__).resolve().parent / "RESULTS_explain.md"


def part(size: int, seed: int = 0) -> np.ndarray:
    """(size, size, 3) uint8 textured part with a dark horizontal scratch."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = 128 + 40 * np.sin(xx / (size / 20)) + rng.normal(0, 4, (size, size))
    base[size // 3 : size // 3 + max(2, size // 64), size // 4 : 3 * size // 4] = 10
    return np.repeat(np.clip(base, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def anomaly_map(side: int) -> np.ndarray:
    """(side, side) float32 map, hot along the scratch."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    hot = np.exp(-(((yy - 0.35) / 0.03) ** 2)) * ((xx > 0.25) & (xx < 0.75))
    return (5 + 40 * hot).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rows = []
    for size in (64, 512, 1024):
        image = part(size)
        for side in (64, 224):
            heat = anomaly_map(side)
            explain(image, heat, 45.0, 29.4)  # warm-up
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                explanation = explain(image, heat, 45.0, 29.4)
                seconds.append(time.perf_counter() - start)
            rows.append(
                (size, side, 1000 * statistics.median(seconds), 1000 * max(seconds), explanation)
            )
            print(f"{size} px image, {side} px map: median {rows[-1][2]:.2f} ms")
    lines = [
        "# Grounded explainer timing",
        "",
        f"Command: `.venv/bin/python bench/explain_timing.py --repeats {args.repeats}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, 2 CPU cores, no GPU; "
        f"Python {platform.python_version()}. Budget: <= 20 ms per part.",
        "",
        "| image | map | median (ms) | max (ms) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s}x{s} | {m}x{m} | {med:.2f} | {mx:.2f} |" for s, m, med, mx, _ in rows]
    lines += ["", "Text for the 1024 px part, 224 px map:", "", f"> {rows[-1][4]['text']}", ""]
    lines += [
        "Images larger than 256 px are downscaled to a 256 px analysis grid "
        "(`adcore.explain.facts.ANALYSIS_SIDE`), so the cost stays flat with image size; "
        "the cost measured here excludes decoding (already done for scoring). The machine is "
        "shared with other jobs: maxima include their interference.",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
