"""Tiling for high-resolution parts: the grid, stitching, and a tiled PatchCore end to end."""

from __future__ import annotations

import json
from dataclasses import asdict
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from synthetic_parts import make_part

from adcore.cli import main
from adcore.detectors.base import save_fitted
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.errors import ModelFileError
from adcore.tiling import cut_tiles, stitch_maps, tile_grid


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [(512, 512, 128, 0.25), (600, 800, 256, 0.25), (600, 800, 256, 0.5), (100, 300, 128, 0.1)],
)
def test_grid_covers_the_image_with_the_requested_overlap(
    height: int, width: int, tile: int, overlap: float
) -> None:
    boxes = tile_grid(height, width, tile, overlap)
    covered = np.zeros((height, width), dtype=int)
    for b in boxes:
        assert 0 <= b.top < b.bottom <= height and 0 <= b.left < b.right <= width
        assert (b.height, b.width) == (min(tile, height), min(tile, width))
        covered[b.top : b.bottom, b.left : b.right] += 1
    assert covered.min() >= 1
    for starts, length in (
        (sorted({b.top for b in boxes}), height),
        (sorted({b.left for b in boxes}), width),
    ):
        side = min(tile, length)
        shared = [side - (after - before) for before, after in pairwise(starts)]
        assert all(s >= overlap * tile - 1 for s in shared)  # -1: starts are rounded to pixels
        assert starts[0] == 0 and starts[-1] + side == length


def test_stitching_a_constant_map_gives_the_constant_and_overlaps_are_averaged() -> None:
    boxes = tile_grid(300, 400, 128, 0.25)
    constant = stitch_maps([np.full((64, 64), 2.5, np.float32)] * len(boxes), boxes, 300, 400)
    assert constant.shape == (300, 400) and constant.dtype == np.float32
    np.testing.assert_allclose(constant, 2.5, rtol=1e-6)
    two = tile_grid(100, 175, 100, 0.25)  # two tiles sharing columns 75..99
    assert [(b.left, b.right) for b in two] == [(0, 100), (75, 175)]
    stitched = stitch_maps([np.zeros((100, 100)), np.ones((100, 100))], two, 100, 175)
    assert stitched[:, :75].max() == 0 and stitched[:, 100:].min() == 1
    np.testing.assert_allclose(stitched[:, 75:100], 0.5)


def test_tiles_are_the_image_pixels_and_bad_settings_are_refused() -> None:
    image = np.arange(200 * 260 * 3, dtype=np.int64).reshape(200, 260, 3)
    boxes = tile_grid(200, 260, 128, 0.25)
    for b, t in zip(boxes, cut_tiles(image, boxes), strict=True):
        assert np.array_equal(t, image[b.top : b.bottom, b.left : b.right])
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(200, 260, 128, 1.0)
    with pytest.raises(ValueError, match="tiles"):
        stitch_maps([np.zeros((4, 4))], boxes, 200, 260)
    with pytest.raises(ValueError, match="tile size"):
        PatchCoreConfig(tile_size=4)


TILED = PatchCoreConfig(
    image_size=128,
    tile_size=128,
    tile_overlap=0.25,
    coreset_ratio=0.05,
    calibration_fraction=0.25,
    batch_size=16,
)


def big_part(seed: int, defect: bool = False) -> np.ndarray:
    """A 512 px textured part; a defect is a small dark 4x24 px scratch at rows 300-303."""
    part = make_part(seed, size=512)
    if defect:
        part[300:304, 200:224] = 10
    return part


@pytest.fixture(scope="module")
def tiled() -> PatchCore:
    detector = PatchCore(TILED, device="cpu")
    detector.fit([big_part(i) for i in range(4)])
    return detector


def test_a_small_defect_in_a_512_px_part_is_found_at_native_resolution(tiled: PatchCore) -> None:
    good = tiled.predict([big_part(100 + i) for i in range(2)])
    bad = tiled.predict([big_part(200, defect=True)])[0]
    assert bad.anomaly_map.shape == (512, 512) and bad.anomaly_map.dtype == np.float32
    assert bad.score > max(p.score for p in good)
    assert bad.is_defect
    row, col = np.unravel_index(np.argmax(bad.anomaly_map), bad.anomaly_map.shape)
    assert 290 <= row <= 314 and 190 <= col <= 234
    assert bad.embedding is not None
    assert tiled.map_calibration is not None  # measured on tiled, stitched maps


def test_tiling_settings_round_trip_through_the_model_files(
    tiled: PatchCore, tmp_path: Path
) -> None:
    tiled.save(tmp_path / "m")
    stored = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert stored["tile_size"] == 128 and stored["tile_overlap"] == 0.25
    loaded = PatchCore.load(tmp_path / "m", device="cpu")
    assert loaded.config == tiled.config
    part = [big_part(300, defect=True)]
    a, b = tiled.predict(part)[0], loaded.predict(part)[0]
    assert a.score == pytest.approx(b.score, rel=1e-5) and b.anomaly_map.shape == (512, 512)


def test_a_model_saved_before_tiling_loads_untiled(tmp_path: Path) -> None:
    detector = PatchCore(PatchCoreConfig(image_size=64, coreset_ratio=0.1), device="cpu")
    detector.fit([make_part(i) for i in range(6)])
    old_config = {k: v for k, v in asdict(detector.config).items() if not k.startswith("tile")}
    old_config["layers"] = list(detector.config.layers)
    save_fitted(
        detector,
        tmp_path / "old",
        config=old_config,
        tensors={"memory_bank": detector.model.memory_bank},
        facts={"backbone": detector.config.backbone},
    )
    loaded = PatchCore.load(tmp_path / "old", device="cpu")
    assert loaded.config.tile_size is None
    assert loaded.predict([make_part(50, size=96)])[0].anomaly_map.shape == (64, 64)


def test_a_config_with_a_bad_tiling_is_refused(tiled: PatchCore, tmp_path: Path) -> None:
    config = asdict(tiled.config) | {"layers": list(tiled.config.layers), "tile_overlap": 2.0}
    save_fitted(
        tiled,
        tmp_path / "bad",
        config=config,
        tensors={"memory_bank": tiled.model.memory_bank},
        facts={"backbone": tiled.config.backbone},
    )
    with pytest.raises(ModelFileError, match="overlap"):
        PatchCore.load(tmp_path / "bad", device="cpu")


def test_fit_command_stores_the_tiling_and_refuses_a_bad_one(
    mvtec_tree: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "model"
    common = ["fit", str(mvtec_tree), "--image-size", "32", "--tile-size", "32", "--quiet"]
    assert main([*common, "--out", str(out), "--tile-overlap", "0.5"]) == 0
    stored = json.loads((out / "config.json").read_text())["config"]
    assert (stored["tile_size"], stored["tile_overlap"]) == (32, 0.5)
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "bad"), "--tile-overlap", "2"]) == 2
    assert "tile overlap must be a fraction" in capsys.readouterr().err


def test_benchmark_of_a_tiled_model_measures_pixels_on_the_model_grid(
    mvtec_tree: Path, capsys
) -> None:
    args = ["benchmark", str(mvtec_tree), "--image-size", "32", "--tile-size", "32", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["image_auroc"] > 0.9 and result["pixel_auroc"] > 0.8
