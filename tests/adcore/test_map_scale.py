"""One colour scale per model version: measured on good maps, same colour for the same value."""

from __future__ import annotations

import numpy as np
import pytest

from adcore.anomaly_maps import colour_bar, colour_table, overlay_image
from adcore.map_scale import (
    MapCalibration,
    map_scale,
    measure_map_calibration,
    own_scale,
)

CALIBRATION = MapCalibration(
    normal_level=20.0, percentile=99.0, peak_to_score=0.9, good_peak=24.0, n_images=4
)


def grey_part(size: int = 16) -> np.ndarray:
    return np.full((size, size, 3), 128, dtype=np.uint8)


def test_the_same_value_gets_the_same_colour_on_two_parts_of_one_version() -> None:
    scale = map_scale(CALIBRATION, threshold=30.0)
    quiet = np.full((16, 16), 19.0, dtype=np.float32)  # a good part
    loud = np.full((16, 16), 19.0, dtype=np.float32)  # a defect elsewhere on another part
    loud[8:, 8:] = 45.0
    quiet[0, 0] = loud[0, 0] = 24.0
    first = overlay_image(grey_part(), quiet, 1.0, scale=scale)
    second = overlay_image(grey_part(), loud, 1.0, scale=scale)
    assert (first[0, 0] == second[0, 0]).all()
    assert (first[4, 4] == second[4, 4]).all()
    # Coloured on each map's own range, the same value does not keep its colour: the old bug.
    own_first = overlay_image(grey_part(), quiet, 1.0, threshold=30.0)
    own_second = overlay_image(grey_part(), loud, 1.0, threshold=30.0)
    assert not (own_first[0, 0] == own_second[0, 0]).all()


def test_a_good_part_is_cool_and_a_defect_is_hot() -> None:
    scale = map_scale(CALIBRATION, threshold=30.0)
    table = colour_table("jet")
    good = overlay_image(grey_part(), np.full((4, 4), 20.0, np.float32), 1.0, scale=scale)
    hot = overlay_image(grey_part(), np.full((4, 4), 27.0, np.float32), 1.0, scale=scale)
    assert (good == np.rint(table[0])).all()  # at the normal level: the coolest colour
    assert (hot == np.rint(table[255])).all()  # at 0.9 x threshold: the hottest


def test_measured_normal_level_and_peak_ratio() -> None:
    rng = np.random.default_rng(0)
    maps = [rng.uniform(0.0, 10.0, (32, 32)).astype(np.float32) for _ in range(5)]
    scores = [float(m.max()) * 2.0 for m in maps]
    calibration = measure_map_calibration(maps, scores)
    assert calibration is not None and calibration.n_images == 5
    assert calibration.normal_level == pytest.approx(np.percentile(np.stack(maps), 99.0))
    assert calibration.peak_to_score == pytest.approx(0.5)
    assert calibration.good_peak == pytest.approx(max(float(m.max()) for m in maps))
    assert MapCalibration.from_json(calibration.to_json()) == calibration
    assert measure_map_calibration([], []) is None
    with pytest.raises(ValueError, match="2 maps but 1 scores"):
        measure_map_calibration(maps[:2], scores[:1])


def test_scale_follows_the_threshold_in_force() -> None:
    scale = map_scale(CALIBRATION, threshold=30.0)
    assert scale is not None and scale.note is None
    assert (scale.normal, scale.hot) == (20.0, pytest.approx(27.0))
    moved = map_scale(CALIBRATION, threshold=40.0)
    assert moved is not None and moved.hot == pytest.approx(36.0)
    below = map_scale(CALIBRATION, threshold=10.0)  # a threshold under the normal level
    assert below is not None and below.hot > below.normal


def test_fallbacks_say_so() -> None:
    old_model = map_scale(None, threshold=30.0)
    assert old_model is not None and (old_model.normal, old_model.hot) == (0.0, 30.0)
    assert "before Loupe measured" in (old_model.note or "")
    assert old_model.caption.endswith(old_model.note or "") and "threshold" in old_model.caption
    no_threshold = map_scale(CALIBRATION, threshold=None)
    assert no_threshold is not None and no_threshold.hot == 24.0 and no_threshold.note
    assert map_scale(None, None) is None
    alone = own_scale(np.array([[1.0, 5.0]], np.float32))
    assert (alone.normal, alone.hot) == (0.0, 5.0) and "cannot be compared" in (alone.note or "")


@pytest.mark.parametrize(
    "data",
    [None, {}, {"normal_level": "x"}, {**CALIBRATION.to_json(), "peak_to_score": 0.0}],
)
def test_malformed_saved_calibration_is_ignored(data: object) -> None:
    assert MapCalibration.from_json(data) is None


def test_colour_bar_runs_from_cool_to_hot() -> None:
    bar = colour_bar(map_scale(CALIBRATION, threshold=30.0), width=400, height=64)
    assert bar.shape == (64, 400, 3) and bar.dtype == np.uint8
    middle = bar[int(64 * 0.31)]  # a row through the bar
    left, right = middle[40].astype(int), middle[-40].astype(int)
    assert left[2] > left[0] and right[0] > right[2]  # blue on the left, red on the right
