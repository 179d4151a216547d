"""Shared fixtures: tiny synthetic parts, a tiny MVTec-layout tree, the real data location."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


@pytest.fixture
def mvtec_tree(tmp_path: Path) -> Path:
    """A small MVTec AD tree: 12 good train parts, 4 good + 4 scratched test parts, masks."""
    root = tmp_path / "widget"
    (root / "train" / "good").mkdir(parents=True)
    (root / "test" / "good").mkdir(parents=True)
    (root / "test" / "scratch").mkdir(parents=True)
    (root / "ground_truth" / "scratch").mkdir(parents=True)
    for i in range(12):
        Image.fromarray(make_part(i)).save(root / "train" / "good" / f"{i:03d}.png")
    for i in range(4):
        Image.fromarray(make_part(100 + i)).save(root / "test" / "good" / f"{i:03d}.png")
        Image.fromarray(make_part(200 + i, defect=True)).save(
            root / "test" / "scratch" / f"{i:03d}.png"
        )
        mask = np.zeros((64, 64), np.uint8)
        mask[64 // 3 : 64 // 3 + 4, 16:48] = 255
        Image.fromarray(mask).save(root / "ground_truth" / "scratch" / f"{i:03d}_mask.png")
    return root
