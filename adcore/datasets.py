"""Datasets: MVTec-AD-style folders, flat folders of good images, and the ELPV solar cells.

Every loader returns a :class:`Dataset` of :class:`Sample` records (paths and labels only;
no pixels are read here) and raises :class:`~adcore.errors.DatasetError` with a message that
says what is wrong and what to do.

Supported sources:

* **MVTec AD layout** (:func:`load_mvtec`)::

      ROOT/train/good/*.png
      ROOT/test/good/*.png            label 0
      ROOT/test/<defect_type>/*.png   label 1
      ROOT/ground_truth/<defect_type>/<stem>_mask.png   (optional)

* **A flat folder of good images** (:func:`load_folder`): everything is training data.
* **ELPV** (:func:`load_elpv`), shipped by the PyPI package ``elpv-dataset``: 2,624
  300x300 electroluminescence images of mono- and polycrystalline solar cells, each with a
  defect probability of 0, 1/3, 2/3 or 1. Loupe uses only the certain cells (0 and 1).

  The ELPV data are licensed under CC BY-NC-SA 4.0 (non-commercial use, share alike).
  Cite: S. Deitsch, V. Christlein, S. Berger, C. Buerhop-Lutz, A. Maier, F. Gallwitz and
  C. Riess, "Automatic classification of defective photovoltaic module cells in
  electroluminescence images", Solar Energy 185 (2019), 455-468.

:func:`resolve_dataset` turns a user-facing spec string (``"elpv:mono"``, a folder path)
into a dataset.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from adcore.errors import DatasetError
from adcore.image_io import SUPPORTED_EXTENSIONS

__all__ = [
    "Dataset",
    "Sample",
    "load_elpv",
    "load_folder",
    "load_mvtec",
    "resolve_dataset",
]

_IMAGE_EXTENSIONS = SUPPORTED_EXTENSIONS

GOOD = "good"
"""The ``defect_type`` of every defect-free sample."""

_ELPV_PACKAGE = "elpv_dataset"
_ELPV_CELL_TYPES = ("mono", "poly")
_ELPV_SEED = 0
_ELPV_DEFECT_TYPE = "defect"
_PROB_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    Attributes:
        path: Absolute path of the image file.
        label: 0 for a good part, 1 for a defective one.
        defect_type: ``"good"`` for good parts, otherwise the defect class name.
        mask_path: Path of the ground-truth defect mask, if the dataset has one.
    """

    path: Path
    label: int
    defect_type: str
    mask_path: Path | None = None


@dataclass(frozen=True)
class Dataset:
    """A named train/test split.

    Attributes:
        name: Short display name (folder name, or ``"elpv-mono"`` / ``"elpv-poly"``).
        train: Training samples (all good).
        test: Test samples, good and defective.
        has_masks: True if at least one defective test sample has a ground-truth mask.
    """

    name: str
    train: tuple[Sample, ...]
    test: tuple[Sample, ...]
    has_masks: bool

    @property
    def defect_types(self) -> tuple[str, ...]:
        """Sorted unique defect types present in the test split (``"good"`` excluded)."""
        return tuple(sorted({s.defect_type for s in self.test if s.label == 1}))

    def summary(self) -> str:
        """One-line human-readable description with the sample counts.

        Returns:
            For example ``"bottle: 209 train, 83 test (20 good, 63 defect; 3 defect types:
            broken_large, broken_small, contamination), masks"``.
        """
        n_good = sum(1 for s in self.test if s.label == 0)
        n_defect = len(self.test) - n_good
        types = self.defect_types
        kinds = f"{len(types)} defect type{'' if len(types) == 1 else 's'}"
        if types:
            kinds += ": " + ", ".join(types)
        masks = "masks" if self.has_masks else "no masks"
        return (
            f"{self.name}: {len(self.train)} train, {len(self.test)} test "
            f"({n_good} good, {n_defect} defect; {kinds}), {masks}"
        )


def _make_dataset(name: str, train: Iterable[Sample], test: Iterable[Sample]) -> Dataset:
    test_samples = tuple(test)
    has_masks = any(s.label == 1 and s.mask_path is not None for s in test_samples)
    return Dataset(name=name, train=tuple(train), test=test_samples, has_masks=has_masks)


def _is_image_file(path: Path) -> bool:
    """True for a visible regular file with a supported image extension (any case)."""
    return (
        not path.name.startswith(".")
        and path.suffix.lower() in _IMAGE_EXTENSIONS
        and path.is_file()
    )


def _list_dir(folder: Path) -> list[Path]:
    """Entries of ``folder`` sorted by name, with OS errors turned into DatasetError."""
    try:
        return sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise DatasetError(f"Cannot read the folder {folder}: {exc}") from exc


def _list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by file name."""
    return [p for p in _list_dir(folder) if _is_image_file(p)]


def _check_max(value: int | None, what: str) -> None:
    if value is not None and (isinstance(value, bool) or value < 1):
        raise DatasetError(f"{what} must be a positive number of images, got {value!r}.")


def _as_dir(root: str | Path) -> Path:
    """Absolute path of an existing directory, or DatasetError."""
    path = Path(root).expanduser().absolute()
    if not path.exists():
        raise DatasetError(f"Dataset folder not found: {path}")
    if not path.is_dir():
        raise DatasetError(f"Dataset path is not a folder: {path}")
    return path


def _mask_index(gt_dir: Path) -> dict[str, Path]:
    """Map each image stem in ``gt_dir`` to its file, preferring extensions in list order."""
    if not gt_dir.is_dir():
        return {}
    index: dict[str, Path] = {}
    for path in _list_images(gt_dir):
        rank = _IMAGE_EXTENSIONS.index(path.suffix.lower())
        best = index.get(path.stem)
        if best is None or rank < _IMAGE_EXTENSIONS.index(best.suffix.lower()):
            index[path.stem] = path
    return index


def _find_mask(index: dict[str, Path], stem: str) -> Path | None:
    """Mask of image ``stem``: ``<stem>_mask.<ext>``, else ``<stem>.<ext>``, else None."""
    return index.get(f"{stem}_mask") or index.get(stem)


def load_mvtec(root: str | Path, *, max_train: int | None = None) -> Dataset:
    """Load a dataset in the MVTec AD folder layout.

    Images are listed by name (``sorted()``) within each folder and test defect types are
    visited in sorted order, so the result is deterministic. Any supported image extension
    is accepted, in any case; hidden files are ignored.

    Args:
        root: Folder containing ``train/good`` and optionally ``test/<type>`` and
            ``ground_truth/<type>``.
        max_train: Keep only the first ``max_train`` training images (sorted by name).

    Returns:
        The dataset, named after the root folder. ``test`` is empty if there is no
        ``test`` folder.

    Raises:
        DatasetError: If the root is missing, has no ``train/good`` folder, ``train/good``
            holds no images, or ``max_train`` is not a positive integer.
    """
    _check_max(max_train, "max_train")
    root = _as_dir(root)
    train_dir = root / "train" / GOOD
    if not train_dir.is_dir():
        raise DatasetError(
            f"{root} is not an MVTec-style dataset: there is no train/good folder "
            f"(expected {train_dir})."
        )
    train_paths = _list_images(train_dir)
    if not train_paths:
        raise DatasetError(
            f"No training images in {train_dir} (supported: {', '.join(_IMAGE_EXTENSIONS)})."
        )
    if max_train is not None:
        train_paths = train_paths[:max_train]
    train = [Sample(path=p, label=0, defect_type=GOOD) for p in train_paths]

    test: list[Sample] = []
    test_dir = root / "test"
    gt_root = root / "ground_truth"
    if test_dir.is_dir():
        type_dirs = [d for d in _list_dir(test_dir) if d.is_dir() and not d.name.startswith(".")]
        for type_dir in type_dirs:
            defect_type = type_dir.name
            is_good = defect_type == GOOD
            masks = {} if is_good else _mask_index(gt_root / defect_type)
            for path in _list_images(type_dir):
                mask = _find_mask(masks, path.stem)
                test.append(
                    Sample(
                        path=path,
                        label=0 if is_good else 1,
                        defect_type=defect_type,
                        mask_path=mask,
                    )
                )
    return _make_dataset(root.resolve().name, train, test)


def load_folder(root: str | Path, *, max_train: int | None = None) -> Dataset:
    """Load a flat folder of good images as training data (the test split is empty).

    Args:
        root: Folder whose image files (not sub-folders) are all good parts.
        max_train: Keep only the first ``max_train`` images (sorted by name).

    Returns:
        The dataset, named after the folder.

    Raises:
        DatasetError: If the folder is missing or contains no images.
    """
    _check_max(max_train, "max_train")
    root = _as_dir(root)
    paths = _list_images(root)
    if not paths:
        raise DatasetError(
            f"No images found in {root} (supported: {', '.join(_IMAGE_EXTENSIONS)}; "
            "sub-folders are not searched)."
        )
    if max_train is not None:
        paths = paths[:max_train]
    return _make_dataset(
        root.resolve().name, (Sample(path=p, label=0, defect_type=GOOD) for p in paths), ()
    )


def _elpv_data_dir() -> Path:
    """The ``data`` folder of the installed ``elpv-dataset`` package (not imported)."""
    try:
        spec = importlib.util.find_spec(_ELPV_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise DatasetError(
            "The ELPV dataset is not installed. Install it with `pip install elpv-dataset`."
        )
    data_dir = Path(locations[0]) / "data"
    if not (data_dir / "labels.csv").is_file():
        raise DatasetError(
            f"The elpv-dataset package is incomplete: {data_dir / 'labels.csv'} is missing. "
            "Reinstall it with `pip install --force-reinstall elpv-dataset`."
        )
    return data_dir


def _read_elpv_labels(labels_csv: Path) -> list[tuple[str, float, str]]:
    """Parse ``labels.csv``: whitespace-separated ``path probability cell_type`` rows."""
    try:
        lines = labels_csv.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"Cannot read ELPV labels {labels_csv}: {exc}") from exc
    rows: list[tuple[str, float, str]] = []
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 3:
                raise ValueError(f"expected 3 fields, got {len(fields)}")
            rows.append((fields[0], float(fields[1]), fields[2]))
        except ValueError as exc:
            raise DatasetError(
                f"Malformed ELPV labels file {labels_csv}, line {lineno}: {line.strip()!r} ({exc})."
            ) from exc
    return rows


def _split_elpv(data_dir: Path, cell_type: str, n_train: int) -> Dataset:
    rows = [r for r in _read_elpv_labels(data_dir / "labels.csv") if r[2] == cell_type]
    good = sorted(name for name, prob, _ in rows if prob <= _PROB_TOLERANCE)
    defect = sorted(name for name, prob, _ in rows if prob >= 1.0 - _PROB_TOLERANCE)
    if n_train > len(good):
        raise DatasetError(
            f"n_train={n_train} is larger than the {len(good)} defect-free ELPV {cell_type} cells."
        )
    random.Random(_ELPV_SEED).shuffle(good)

    def sample(name: str, label: int, defect_type: str) -> Sample:
        path = data_dir / name
        if not path.is_file():
            raise DatasetError(
                f"ELPV image {path} listed in labels.csv is missing. "
                "Reinstall it with `pip install --force-reinstall elpv-dataset`."
            )
        return Sample(path=path, label=label, defect_type=defect_type)

    train = [sample(n, 0, GOOD) for n in good[:n_train]]
    test = [sample(n, 0, GOOD) for n in good[n_train:]]
    test += [sample(n, 1, _ELPV_DEFECT_TYPE) for n in defect]
    return _make_dataset(f"elpv-{cell_type}", train, test)


def load_elpv(cell_type: str, *, n_train: int = 200) -> Dataset:
    """Load the ELPV solar-cell dataset (mono- or polycrystalline cells) from ``elpv-dataset``.

    The split is fixed: the defect-free cells (probability 0) of the cell type, as their
    ``labels.csv`` names sorted, are shuffled with ``random.Random(0)``; the first ``n_train``
    are training data and the rest are good test samples. Cells with probability 1 are
    defective test samples (``defect_type="defect"``, sorted by name, after the good ones).
    Uncertain cells (probability 1/3 or 2/3) are left out. ELPV has no masks.

    Args:
        cell_type: ``"mono"`` or ``"poly"``.
        n_train: Number of defect-free cells used for training.

    Returns:
        The dataset, named ``"elpv-mono"`` or ``"elpv-poly"``.

    Raises:
        DatasetError: If the cell type is unknown, ``n_train`` is out of range, or the
            ``elpv-dataset`` package is missing or damaged.
    """
    if cell_type not in _ELPV_CELL_TYPES:
        raise DatasetError(
            f"Unknown ELPV cell type {cell_type!r}; use one of: {', '.join(_ELPV_CELL_TYPES)}."
        )
    _check_max(n_train, "n_train")
    return _split_elpv(_elpv_data_dir(), cell_type, n_train)


def _truncate_train(dataset: Dataset, max_train: int | None) -> Dataset:
    if max_train is None:
        return dataset
    return _make_dataset(dataset.name, dataset.train[:max_train], dataset.test)


_SPEC_FORMS = (
    "'elpv:mono', 'elpv:poly', a folder with train/good (MVTec AD layout), "
    "or a folder of good images"
)


def resolve_dataset(spec: str, *, max_train: int | None = None) -> Dataset:
    """Turn a dataset spec string into a dataset.

    Accepted forms:

    * ``"elpv:mono"`` / ``"elpv:poly"``: :func:`load_elpv` (default split). ``max_train``
      keeps the first ``max_train`` training cells without changing the test split.
    * a folder containing ``train/good``: :func:`load_mvtec`.
    * a folder of images: :func:`load_folder`.

    Args:
        spec: The spec string.
        max_train: Optional cap on the number of training images.

    Returns:
        The dataset.

    Raises:
        DatasetError: If the spec matches none of the accepted forms, or loading fails.
    """
    _check_max(max_train, "max_train")
    text = str(spec).strip()
    if text.lower().startswith("elpv:"):
        cell_type = text.split(":", 1)[1].strip().lower()
        if cell_type not in _ELPV_CELL_TYPES:
            raise DatasetError(f"Unknown dataset spec {spec!r}; expected {_SPEC_FORMS}.")
        return _truncate_train(load_elpv(cell_type), max_train)
    if not text:
        raise DatasetError(f"Empty dataset spec; expected {_SPEC_FORMS}.")
    path = Path(text).expanduser()
    if (path / "train" / GOOD).is_dir():
        return load_mvtec(path, max_train=max_train)
    if path.is_dir():
        if not _list_images(path):
            raise DatasetError(
                f"Dataset spec {spec!r} is a folder with neither train/good nor images; "
                f"expected {_SPEC_FORMS}."
            )
        return load_folder(path, max_train=max_train)
    raise DatasetError(
        f"Unknown dataset spec {spec!r}: not an ELPV spec and not an existing folder; "
        f"expected {_SPEC_FORMS}."
    )
