"""Synthetic parts and data locations shared by the detection-core tests.

Imported as ``from synthetic_parts import ...`` (a unique name: every test folder has its own
``conftest``, so ``from conftest import ...`` is ambiguous when several folders are collected).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from adcore.explain.facts import ExplanationFacts

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
MAGNETIC_TILE = SHARED / "magnetic_tile"


def make_part(seed: int, size: int = 64, defect: bool = False) -> np.ndarray:
    """A textured grey part: (size, size, 3) uint8; a defect is a dark scratch."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = 128 + 40 * np.sin(xx / 3.0) + rng.normal(0, 4, (size, size))
    if defect:
        base[size // 3 : size // 3 + 4, size // 4 : 3 * size // 4] = 10
    return np.repeat(np.clip(base, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def png(pixels: np.ndarray) -> bytes:
    """PNG file bytes of an (H, W, 3) uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


#: Facts of a flagged part: one elongated, darker region at the upper-left rim (3.1% of it).
FLAGGED_FACTS = ExplanationFacts(
    verdict="defect",
    score=41.2,
    threshold=29.4,
    margin=11.8,
    relative_margin=11.8 / 29.4,
    image_height=256,
    image_width=256,
    part_box=(10, 10, 240, 240),
    part_is_whole_image=False,
    region_level=35.0,
    n_regions=1,
    area_percent=3.1,
    largest_area_percent=3.1,
    location="upper-left",
    at_rim=True,
    shape="elongated",
    axis_ratio=5.0,
    intensity="darker",
    grey_difference=-30.0,
)

#: A rewrite of :data:`FLAGGED_FACTS` in other words that passes the fact-check.
FAITHFUL_REWRITE = (
    "This part is flagged: its score of 41.2 is 40% over the threshold of 29.4, because a dark "
    "scratch-like mark at the upper-left rim covers 3.1% of it."
)
