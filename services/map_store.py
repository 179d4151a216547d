"""Anomaly maps on disk: float16 ``.npy`` files in the data directory.

Maps are stored as ``<data dir>/maps/<uuid>.npy`` in float16 (half the size of float32,
ample precision for display), written atomically (temporary file, then ``os.replace``). The
stored path is relative to the data directory and resolved with
:func:`db.absolute_image_path`, which refuses paths that leave it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path, PurePosixPath

import numpy as np

from db import absolute_image_path
from db import data_dir as default_data_dir

MAPS_DIR = "maps"


def save_anomaly_map(anomaly_map: np.ndarray, data_dir: Path | None = None) -> str:
    """Write a map atomically as ``maps/<uuid>.npy`` (float16); return the relative path."""
    relative = str(PurePosixPath(MAPS_DIR, f"{uuid.uuid4().hex}.npy"))
    target = absolute_image_path(relative, data_dir or default_data_dir())
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            np.save(handle, np.asarray(anomaly_map, dtype=np.float16), allow_pickle=False)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return relative


def load_anomaly_map(relative_path: str, data_dir: Path | None = None) -> np.ndarray:
    """Read a stored anomaly map (path relative to the data directory) as float32.

    Raises:
        ValueError: If the path leaves the data directory.
        OSError: If the file is missing or unreadable.
    """
    path = absolute_image_path(relative_path, data_dir)
    return np.load(path, allow_pickle=False).astype(np.float32)
