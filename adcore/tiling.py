"""Tiles for high-resolution parts: the tile grid, cutting, and stitching maps back together.

An image much larger than the model input (a 1024 px part, an 800x600 frame) loses small
defects when shrunk to the input side. Tiling scores it instead in overlapping square tiles at
native resolution and stitches the tiles' maps into one map the size of the image:

* The grid: along each axis, ``n = ceil((L - T) / stride) + 1`` tiles of side ``T`` with
  ``stride = T * (1 - overlap)``, spread evenly from the first edge to the last, so every pixel
  is covered and neighbouring tiles share at least ``overlap * T`` pixels. An axis shorter than
  ``T`` gets one tile of the whole axis.
* Stitching: each pixel's value is the **mean** of the tile maps covering it.
* The image score: the **max** of the tile scores. An untiled PatchCore score is the re-weighted
  score of the most anomalous patch; tiled, every patch is scored in some tile, and the tile
  holding the most anomalous one gives the image its score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TileBox:
    """One tile's pixel rectangle in its image (``top:bottom``, ``left:right``, end exclusive)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        """Rows of the tile."""
        return self.bottom - self.top

    @property
    def width(self) -> int:
        """Columns of the tile."""
        return self.right - self.left


def check_tiling(tile_size: int | None, overlap: float) -> None:
    """Refuse a tiling that cannot make a grid.

    Raises:
        ValueError: ``tile_size`` below 16 px, or ``overlap`` outside [0, 0.9].
    """
    if tile_size is not None and tile_size < 16:
        raise ValueError(f"tile size must be at least 16 px, got {tile_size}")
    if not 0.0 <= overlap <= 0.9:
        raise ValueError(f"tile overlap must be a fraction in [0, 0.9], got {overlap}")


def axis_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Tile start offsets along one axis, evenly spread from 0 to ``length - tile``.

    Args:
        length: Pixels along the axis.
        tile: Tile side.
        overlap: Least shared fraction of neighbouring tiles.

    Returns:
        Sorted start offsets (``[0]`` when the axis fits in one tile).
    """
    if length <= tile:
        return [0]
    stride = max(1.0, tile * (1.0 - overlap))
    count = math.ceil((length - tile) / stride) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_grid(height: int, width: int, tile: int, overlap: float) -> list[TileBox]:
    """The tiles covering an image, row by row.

    Args:
        height: Image rows H.
        width: Image columns W.
        tile: Tile side T (tiles are ``min(T, H) x min(T, W)``).
        overlap: Least shared fraction of neighbouring tiles, in [0, 0.9].

    Returns:
        The tile rectangles; together they cover every pixel.
    """
    check_tiling(tile, overlap)
    rows, cols = min(tile, height), min(tile, width)
    return [
        TileBox(top, left, top + rows, left + cols)
        for top in axis_starts(height, tile, overlap)
        for left in axis_starts(width, tile, overlap)
    ]


def cut_tiles(image: np.ndarray, boxes: Sequence[TileBox]) -> list[np.ndarray]:
    """The tiles' pixels.

    Args:
        image: (H, W, C) array.
        boxes: Rectangles from :func:`tile_grid`.

    Returns:
        One contiguous (h, w, C) array per box.
    """
    return [np.ascontiguousarray(image[b.top : b.bottom, b.left : b.right]) for b in boxes]


def resize_map(tile_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """A map resized (bilinear) to a tile's pixel size; (S, S) -> (height, width) float32."""
    if tile_map.shape == (height, width):
        return tile_map.astype(np.float32, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(tile_map, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)[
        0, 0
    ].numpy()


def stitch_maps(
    tile_maps: Sequence[np.ndarray], boxes: Sequence[TileBox], height: int, width: int
) -> np.ndarray:
    """One map for the whole image: the mean of the tile maps over each pixel.

    Args:
        tile_maps: One map per box, each (S, S) at the model input or already (h, w) of its box
            (resized bilinearly to its box first).
        boxes: The tiles' rectangles, covering the image.
        height: Image rows H.
        width: Image columns W.

    Returns:
        (H, W) float32 map.

    Raises:
        ValueError: The counts differ, or some pixel is covered by no tile.
    """
    if len(tile_maps) != len(boxes):
        raise ValueError(f"{len(tile_maps)} tile maps but {len(boxes)} tiles")
    total = np.zeros((height, width), dtype=np.float64)
    count = np.zeros((height, width), dtype=np.int32)
    for tile_map, b in zip(tile_maps, boxes, strict=True):
        total[b.top : b.bottom, b.left : b.right] += resize_map(tile_map, b.height, b.width)
        count[b.top : b.bottom, b.left : b.right] += 1
    if (count == 0).any():
        raise ValueError("the tiles do not cover the image")
    return (total / count).astype(np.float32)
