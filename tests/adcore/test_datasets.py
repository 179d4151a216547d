"""Tests for adcore.datasets: MVTec layout, flat folders, ELPV split, spec resolution."""

from __future__ import annotations

import dataclasses
import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adcore import datasets
from adcore.datasets import (
    Dataset,
    Sample,
    load_elpv,
    load_folder,
    load_mvtec,
    resolve_dataset,
)
from adcore.errors import DatasetError, LoupeError

MAGNETIC_TILE = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "magnetic_tile"


def _png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), color=value).save(path)
    return path


@pytest.fixture
def mvtec(tmp_path: Path) -> Path:
    """A tiny MVTec-style tree with mixed extensions, a missing mask and a stray file."""
    root = tmp_path / "widget"
    for name in ("b.png", "a.PNG", "c.jpg", "d.bmp"):
        _png(root / "train" / "good" / name)
    (root / "train" / "good" / "notes.txt").write_text("not an image")
    (root / "train" / "good" / ".hidden.png").write_bytes(b"")
    _png(root / "test" / "good" / "g1.png")
    _png(root / "test" / "good" / "g0.png")
    _png(root / "test" / "scratch" / "s1.png")
    _png(root / "test" / "scratch" / "s0.png")
    _png(root / "test" / "dent" / "d0.tif")
    _png(root / "test" / "dent" / "d1.png")
    _png(root / "ground_truth" / "scratch" / "s0_mask.png", 255)
    _png(root / "ground_truth" / "scratch" / "s1_mask.png", 255)
    _png(root / "ground_truth" / "dent" / "d0_mask.PNG", 255)  # d1 has no mask
    return root


# --------------------------------------------------------------------------- MVTec layout


def test_mvtec_train_sorted_images_only(mvtec: Path) -> None:
    ds = load_mvtec(mvtec)
    assert ds.name == "widget"
    assert [s.path.name for s in ds.train] == ["a.PNG", "b.png", "c.jpg", "d.bmp"]
    assert all(s.label == 0 and s.defect_type == "good" for s in ds.train)
    assert all(s.mask_path is None for s in ds.train)
    assert all(s.path.is_absolute() for s in ds.train + ds.test)


def test_mvtec_test_labels_and_order(mvtec: Path) -> None:
    ds = load_mvtec(mvtec)
    got = [(s.defect_type, s.path.name, s.label) for s in ds.test]
    assert got == [
        ("dent", "d0.tif", 1),
        ("dent", "d1.png", 1),
        ("good", "g0.png", 0),
        ("good", "g1.png", 0),
        ("scratch", "s0.png", 1),
        ("scratch", "s1.png", 1),
    ]
    assert ds.defect_types == ("dent", "scratch")


def test_mvtec_mask_pairing(mvtec: Path) -> None:
    ds = load_mvtec(mvtec)
    masks = {s.path.name: s.mask_path for s in ds.test}
    assert masks["s0.png"] == mvtec / "ground_truth" / "scratch" / "s0_mask.png"
    assert masks["s1.png"] == mvtec / "ground_truth" / "scratch" / "s1_mask.png"
    assert masks["d0.tif"] == mvtec / "ground_truth" / "dent" / "d0_mask.PNG"
    assert masks["d1.png"] is None
    assert masks["g0.png"] is None and masks["g1.png"] is None
    assert ds.has_masks


def test_mvtec_mask_same_stem_without_suffix(tmp_path: Path) -> None:
    root = tmp_path / "x"
    _png(root / "train" / "good" / "t.png")
    _png(root / "test" / "hole" / "h.png")
    _png(root / "ground_truth" / "hole" / "h.bmp", 255)
    ds = load_mvtec(root)
    assert ds.test[0].mask_path == root / "ground_truth" / "hole" / "h.bmp"


def test_mvtec_without_ground_truth_has_no_masks(tmp_path: Path) -> None:
    root = tmp_path / "x"
    _png(root / "train" / "good" / "t.png")
    _png(root / "test" / "hole" / "h.png")
    ds = load_mvtec(root)
    assert ds.test[0].mask_path is None
    assert not ds.has_masks


def test_mvtec_without_test_folder(tmp_path: Path) -> None:
    root = tmp_path / "x"
    _png(root / "train" / "good" / "t.png")
    ds = load_mvtec(root)
    assert ds.test == ()
    assert ds.defect_types == ()
    assert not ds.has_masks


def test_mvtec_max_train_keeps_first_sorted(mvtec: Path) -> None:
    ds = load_mvtec(mvtec, max_train=2)
    assert [s.path.name for s in ds.train] == ["a.PNG", "b.png"]
    assert len(ds.test) == 6
    assert len(load_mvtec(mvtec, max_train=100).train) == 4


@pytest.mark.parametrize("bad", [0, -1])
def test_mvtec_max_train_must_be_positive(mvtec: Path, bad: int) -> None:
    with pytest.raises(DatasetError, match="max_train"):
        load_mvtec(mvtec, max_train=bad)


def test_mvtec_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_mvtec(tmp_path / "nope")


def test_mvtec_root_is_a_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        load_mvtec(_png(tmp_path / "a.png"))


def test_mvtec_no_train_good(tmp_path: Path) -> None:
    _png(tmp_path / "x" / "test" / "good" / "g.png")
    with pytest.raises(DatasetError, match="train/good"):
        load_mvtec(tmp_path / "x")


def test_mvtec_empty_train_good(tmp_path: Path) -> None:
    (tmp_path / "x" / "train" / "good").mkdir(parents=True)
    (tmp_path / "x" / "train" / "good" / "readme.txt").write_text("hi")
    with pytest.raises(DatasetError, match="No training images"):
        load_mvtec(tmp_path / "x")


def test_dataset_error_is_a_loupe_error() -> None:
    assert issubclass(DatasetError, LoupeError)


def test_dataclasses_are_frozen(mvtec: Path) -> None:
    ds = load_mvtec(mvtec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.train[0].label = 1  # type: ignore[misc]
    assert isinstance(ds.train, tuple) and isinstance(ds.test, tuple)


def test_summary_mentions_counts(mvtec: Path) -> None:
    text = load_mvtec(mvtec).summary()
    assert "\n" not in text
    assert text.startswith("widget: 4 train, 6 test (2 good, 4 defect")
    assert "dent, scratch" in text
    assert "masks" in text


def test_sample_default_mask_is_none() -> None:
    assert Sample(path=Path("a.png"), label=0, defect_type="good").mask_path is None


# --------------------------------------------------------------------------- flat folder


def test_load_folder(tmp_path: Path) -> None:
    for name in ("z.jpeg", "a.png", "m.TIFF"):
        _png(tmp_path / "parts" / name)
    _png(tmp_path / "parts" / "sub" / "ignored.png")
    (tmp_path / "parts" / "x.csv").write_text("1,2")
    ds = load_folder(tmp_path / "parts")
    assert ds.name == "parts"
    assert [s.path.name for s in ds.train] == ["a.png", "m.TIFF", "z.jpeg"]
    assert all(s.label == 0 and s.defect_type == "good" for s in ds.train)
    assert ds.test == () and not ds.has_masks
    assert [s.path.name for s in load_folder(tmp_path / "parts", max_train=1).train] == ["a.png"]


def test_load_folder_empty(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match="No images"):
        load_folder(tmp_path / "empty")


def test_load_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_folder(tmp_path / "nope")


# --------------------------------------------------------------------------- resolve_dataset


def test_resolve_mvtec(mvtec: Path) -> None:
    ds = resolve_dataset(str(mvtec), max_train=3)
    assert ds == load_mvtec(mvtec, max_train=3)


def test_resolve_folder(tmp_path: Path) -> None:
    _png(tmp_path / "parts" / "a.png")
    assert resolve_dataset(str(tmp_path / "parts")) == load_folder(tmp_path / "parts")


def test_resolve_elpv_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fake_train = tuple(Sample(Path(f"{i}.png"), 0, "good") for i in range(5))
    fake_test = (Sample(Path("d.png"), 1, "defect"),)

    def fake_load_elpv(cell_type: str, *, n_train: int = 200) -> Dataset:
        calls.append(cell_type)
        return Dataset(f"elpv-{cell_type}", fake_train, fake_test, False)

    monkeypatch.setattr(datasets, "load_elpv", fake_load_elpv)
    assert resolve_dataset("elpv:mono").name == "elpv-mono"
    ds = resolve_dataset(" ELPV:Poly ", max_train=2)
    assert calls == ["mono", "poly"]
    assert ds.train == fake_train[:2]
    assert ds.test == fake_test  # max_train never moves images between splits


@pytest.mark.parametrize("spec", ["elpv:amorphous", "elpv:", "", "no/such/place", "mvtec:bottle"])
def test_resolve_bad_spec(spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match="elpv:mono") as info:
        resolve_dataset(spec)
    if spec:
        assert repr(spec) in str(info.value)


def test_resolve_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="neither train/good nor images"):
        resolve_dataset(str(tmp_path / "empty"))


def test_resolve_file_is_not_a_dataset(tmp_path: Path) -> None:
    path = _png(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="accepted|expected"):
        resolve_dataset(str(path))


# --------------------------------------------------------------------------- ELPV


def _elpv_data_dir() -> Path:
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("elpv-dataset is not installed (pip install elpv-dataset)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _elpv_labels() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read labels.csv the way elpv_dataset.utils.load_dataset does (without the pixels)."""
    data = np.genfromtxt(
        _elpv_data_dir() / "labels.csv",
        dtype=["|S19", "<f8", "|S4"],
        names=["path", "probability", "type"],
    )
    return np.char.decode(data["path"]), data["probability"], np.char.decode(data["type"])


def _expected_elpv_split(cell_type: str, n_train: int = 200) -> tuple[list, list, list]:
    names, probs, types = _elpv_labels()
    of_type = types == cell_type
    good = sorted(names[of_type & np.isclose(probs, 0.0)].tolist())
    defect = sorted(names[of_type & np.isclose(probs, 1.0)].tolist())
    random.Random(0).shuffle(good)
    return good[:n_train], good[n_train:], defect


def _rel(sample: Sample, data_dir: Path) -> str:
    return sample.path.relative_to(data_dir).as_posix()


@pytest.mark.parametrize("cell_type", ["mono", "poly"])
def test_elpv_split_counts(cell_type: str) -> None:
    train, test_good, test_defect = _expected_elpv_split(cell_type)
    ds = load_elpv(cell_type)
    n_good = sum(s.label == 0 for s in ds.test)
    n_defect = sum(s.label == 1 for s in ds.test)
    print(
        f"\nELPV {cell_type}: train={len(ds.train)} test_good={n_good} test_defect={n_defect} "
        f"(expected {len(train)}/{len(test_good)}/{len(test_defect)})"
    )
    assert ds.name == f"elpv-{cell_type}"
    assert len(ds.train) == len(train) == 200
    assert n_good == len(test_good)
    assert n_defect == len(test_defect)
    assert ds.defect_types == ("defect",)
    assert not ds.has_masks


@pytest.mark.parametrize("cell_type", ["mono", "poly"])
def test_elpv_split_reproduces_recipe(cell_type: str) -> None:
    data_dir = _elpv_data_dir()
    train, test_good, test_defect = _expected_elpv_split(cell_type)
    ds = load_elpv(cell_type)
    assert [_rel(s, data_dir) for s in ds.train] == train
    assert [_rel(s, data_dir) for s in ds.test] == test_good + test_defect
    assert [s.label for s in ds.test] == [0] * len(test_good) + [1] * len(test_defect)
    assert all(s.path.is_file() for s in ds.train + ds.test)


@pytest.mark.parametrize("cell_type", ["mono", "poly"])
def test_elpv_train_is_good_and_disjoint(cell_type: str) -> None:
    ds = load_elpv(cell_type)
    assert all(s.label == 0 and s.defect_type == "good" for s in ds.train)
    assert all(s.defect_type == "defect" for s in ds.test if s.label == 1)
    assert not {s.path for s in ds.train} & {s.path for s in ds.test}
    assert len({s.path for s in ds.test}) == len(ds.test)


def test_elpv_excludes_uncertain_and_other_type() -> None:
    data_dir = _elpv_data_dir()
    names, probs, types = _elpv_labels()
    uncertain = set(names[(probs > 0.01) & (probs < 0.99)].tolist())
    poly = set(names[types == "poly"].tolist())
    ds = load_elpv("mono")
    used = {_rel(s, data_dir) for s in ds.train + ds.test}
    assert uncertain and not used & uncertain
    assert not used & poly


def test_elpv_deterministic() -> None:
    assert load_elpv("mono") == load_elpv("mono")
    assert load_elpv("poly", n_train=50) == load_elpv("poly", n_train=50)


def test_elpv_n_train() -> None:
    ds = load_elpv("mono", n_train=50)
    full = load_elpv("mono")
    assert len(ds.train) == 50
    assert len(ds.test) == len(full.test) + 150
    assert ds.train == full.train[:50]


def test_elpv_bad_cell_type() -> None:
    with pytest.raises(DatasetError, match="mono, poly"):
        load_elpv("amorphous")


@pytest.mark.parametrize("bad", [0, 100_000])
def test_elpv_bad_n_train(bad: int) -> None:
    _elpv_data_dir()
    with pytest.raises(DatasetError, match="n_train"):
        load_elpv("mono", n_train=bad)


def test_elpv_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "_ELPV_PACKAGE", "elpv_dataset_definitely_not_installed")
    with pytest.raises(DatasetError, match="pip install elpv-dataset"):
        load_elpv("mono")


def test_elpv_malformed_labels(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("images/cell0001.png  1.0  mono\nimages/cell0002.png  oops  mono\n")
    with pytest.raises(DatasetError, match="line 2"):
        datasets._read_elpv_labels(labels)


# --------------------------------------------------------------------------- real data

needs_magnetic_tile = pytest.mark.skipif(
    not (MAGNETIC_TILE / "train" / "good").is_dir(),
    reason=f"magnetic tile dataset not found at {MAGNETIC_TILE}",
)


@needs_magnetic_tile
def test_magnetic_tile_counts_and_masks() -> None:
    ds = load_mvtec(MAGNETIC_TILE)
    print("\n" + ds.summary())
    assert ds.name == "magnetic_tile"
    assert len(ds.train) == 752
    assert sum(s.label == 0 for s in ds.test) == 200
    assert ds.defect_types == ("blowhole", "break", "crack", "fray", "uneven")
    counts = {t: sum(s.defect_type == t for s in ds.test) for t in ds.defect_types}
    assert counts == {"blowhole": 115, "break": 85, "crack": 57, "fray": 32, "uneven": 103}
    defects = [s for s in ds.test if s.label == 1]
    assert all(s.mask_path is not None and s.mask_path.is_file() for s in defects)
    assert all(s.mask_path.parent.name == s.defect_type for s in defects)  # type: ignore[union-attr]
    assert ds.has_masks


@needs_magnetic_tile
def test_magnetic_tile_max_train() -> None:
    ds = load_mvtec(MAGNETIC_TILE, max_train=200)
    all_names = sorted(p.name for p in (MAGNETIC_TILE / "train" / "good").iterdir())
    assert [s.path.name for s in ds.train] == all_names[:200]
    assert len(ds.test) == 592
    assert resolve_dataset(str(MAGNETIC_TILE), max_train=200) == ds
