"""Scoring high-resolution images tile by tile (grid and stitching: :mod:`adcore.tiling`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from adcore.detectors.base import Progress, ScoredImage, report
from adcore.tiling import cut_tiles, stitch_maps, tile_grid


def split_into_tiles(
    images: Sequence[np.ndarray], tile_size: int, overlap: float
) -> list[np.ndarray]:
    """Every tile of every image, image after image (for fitting on tiles).

    Args:
        images: (H, W, 3) uint8 RGB arrays.
        tile_size: Tile side in pixels.
        overlap: Least shared fraction of neighbouring tiles.

    Returns:
        (h, w, 3) uint8 tiles.
    """
    tiles: list[np.ndarray] = []
    for image in images:
        tiles += cut_tiles(image, tile_grid(image.shape[0], image.shape[1], tile_size, overlap))
    return tiles


def predict_in_tiles(
    predict_tiles: Callable[[Sequence[np.ndarray]], list[ScoredImage]],
    images: Sequence[np.ndarray],
    tile_size: int,
    overlap: float,
    progress: Progress | None = None,
) -> list[ScoredImage]:
    """Score each image in overlapping tiles and stitch one native-resolution map.

    The image score is the max of its tiles' scores, the map the mean of the tile maps over
    each pixel (see :mod:`adcore.tiling`), the embedding that of the highest-scoring tile.

    Args:
        predict_tiles: Scores a list of tiles (the detector's untiled ``predict``).
        images: (H, W, 3) uint8 RGB arrays.
        tile_size: Tile side in pixels.
        overlap: Least shared fraction of neighbouring tiles.
        progress: Optional callback.

    Returns:
        One :class:`ScoredImage` per image, with an (H, W) float32 map at the image's own size.
    """
    tell = report(progress)
    out: list[ScoredImage] = []
    for done, image in enumerate(images, start=1):
        height, width = image.shape[:2]
        boxes = tile_grid(height, width, tile_size, overlap)
        tiles = predict_tiles(cut_tiles(image, boxes))
        worst = max(range(len(tiles)), key=lambda i: tiles[i].score)
        stitched = stitch_maps([t.anomaly_map for t in tiles], boxes, height, width)
        top = tiles[worst]
        out.append(ScoredImage(top.score, stitched, top.threshold, top.embedding))
        tell(done / len(images), f"Scored {done}/{len(images)} images ({len(boxes)} tiles each)")
    return out
