"""Scoring with an exported ONNX file through onnxruntime, with the torch detector's contract.

:class:`OnnxPatchCore` loads a file written by :func:`adcore.export.onnx_export.export_patchcore`
(``python -m adcore export``), reads the threshold, map calibration and input contract from its
metadata, and offers the scoring half of a detector: :meth:`~OnnxPatchCore.predict` (decoded
images -> :class:`~adcore.detectors.base.Prediction`), :meth:`~OnnxPatchCore.predict_files` and
:meth:`~OnnxPatchCore.with_threshold`. It cannot fit or learn (``update``): those stay with the
torch detector, and a model that learned since its export must be exported again. Its
predictions carry no embedding (the export holds scores and maps only).

Choose it with ``load_detector(path, runtime="onnx")`` or by passing the ``.onnx`` file itself
(:func:`adcore.detectors.registry.load_detector`), or ``python -m adcore score --runtime onnx``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adcore.detectors.base import (
    Prediction,
    Progress,
    Scoring,
    _check_array,
    report,
)
from adcore.errors import ModelFileError
from adcore.export.onnx_export import INPUT_NAME, MAP_NAME, SCORE_NAME, read_metadata
from adcore.map_scale import MapCalibration


class OnnxPatchCore(Scoring):
    """A PatchCore export scored by onnxruntime on the CPU.

    Args:
        path: The ``.onnx`` file.
        threads: onnxruntime intra-op threads (None: onnxruntime's default).
    """

    kind = "patchcore"
    runtime = "onnx"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"No ONNX file at {self.path}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ModelFileError(f"{self.path} is not a loadable ONNX model: {err}") from err
        self.metadata: dict[str, Any] = read_metadata(
            self.session.get_modelmeta().custom_metadata_map
        )
        self.threshold: float | None = self.metadata.get("threshold")
        self.calibrated_threshold: float | None = self.metadata.get("calibrated_threshold")
        self.map_calibration: MapCalibration | None = MapCalibration.from_json(
            self.metadata.get("map_calibration")
        )
        self.training_hash: str | None = self.metadata.get("training_hash")
        self.image_size = int(self.metadata["image_size"])
        self.batch_size = max(1, int(self.metadata.get("batch_size") or 1))

    def predict(
        self, images: Sequence[np.ndarray], progress: Progress | None = None
    ) -> list[Prediction]:
        """Score decoded images.

        Consecutive images of the same size go through the graph together, up to the model's
        batch size.

        Args:
            images: (H, W, 3) uint8 RGB arrays (an (H, W) grey array is taken as RGB).
            progress: Optional callback ``progress(fraction, message)``.

        Returns:
            One :class:`Prediction` per image: (S, S) float32 map, no embedding.

        Raises:
            ImageLoadError: An array is not (H, W, 3) uint8.
        """
        tell = report(progress)
        arrays = [_check_array(np.asarray(im), f"image-{i}") for i, im in enumerate(images)]
        out: list[Prediction] = []
        for batch in self._batches(arrays):
            scores, maps = self.session.run([SCORE_NAME, MAP_NAME], {INPUT_NAME: np.stack(batch)})
            for score, anomaly_map in zip(scores, maps, strict=True):
                out.append(Prediction(float(score), anomaly_map.astype(np.float32), self.threshold))
            tell(len(out) / len(arrays), f"Scored {len(out)}/{len(arrays)} images")
        return out

    def _batches(self, arrays: list[np.ndarray]) -> list[list[np.ndarray]]:
        batches: list[list[np.ndarray]] = []
        for array in arrays:
            last = batches[-1] if batches else None
            if last and len(last) < self.batch_size and last[0].shape == array.shape:
                last.append(array)
            else:
                batches.append([array])
        return batches

    def fit(self, *_args: Any, **_kwargs: Any) -> None:
        """Not possible: an export only scores. Fit the torch detector and export it again."""
        raise ModelFileError("An ONNX export cannot be fitted: fit the torch model, then export")

    def update(self, *_args: Any, **_kwargs: Any) -> None:
        """Not possible: an export only scores. Update the torch detector and export it again."""
        raise ModelFileError(
            "An ONNX export cannot learn new images: update the torch model, then export again"
        )
