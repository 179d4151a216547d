"""Scoring with an exported ONNX file through onnxruntime, with the torch detector's contract.

:class:`OnnxPatchCore` loads a file written by :func:`adcore.export.onnx_export.export_patchcore`
(``python -m adcore export``), reads the threshold, map calibration and input contract from its
metadata, and offers the scoring half of a detector: :meth:`~OnnxPatchCore.predict` (decoded
images -> :class:`~adcore.detectors.base.ScoredImage`), :meth:`~OnnxPatchCore.predict_files` and
:meth:`~OnnxPatchCore.with_threshold`. It cannot fit or learn (``update``): those stay with the
torch detector, and a model that learned since its export must be exported again. Its
predictions carry the same global vector as the torch model's (the export's ``vector`` output;
exports written before it existed give none).

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
    Progress,
    ScoredImage,
    Scoring,
    _check_array,
    report,
)
from adcore.detectors.tiled import predict_in_tiles
from adcore.errors import ModelFileError
from adcore.export.onnx_export import (
    INPUT_NAME,
    MAP_NAME,
    SCORE_NAME,
    VECTOR_NAME,
    read_metadata,
)
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
        # Exports before the vector output give scores and maps only.
        names = {output.name for output in self.session.get_outputs()}
        self._outputs = [SCORE_NAME, MAP_NAME] + ([VECTOR_NAME] if VECTOR_NAME in names else [])
        self.tile_size: int | None = self.metadata.get("tile_size")
        self.tile_overlap: float = float(self.metadata.get("tile_overlap") or 0.0)

    def predict(
        self, images: Sequence[np.ndarray], progress: Progress | None = None
    ) -> list[ScoredImage]:
        """Score decoded images.

        Consecutive images of the same size go through the graph together, up to the model's
        batch size. A model fitted in tiles (``tile_size`` in the metadata) scores each image in
        the same overlapping tiles as torch and stitches the tile maps
        (:func:`adcore.detectors.tiled.predict_in_tiles`).

        Args:
            images: (H, W, 3) uint8 RGB arrays (an (H, W) grey array is taken as RGB).
            progress: Optional callback ``progress(fraction, message)``.

        Returns:
            One :class:`ScoredImage` per image: (S, S) float32 map ((H, W), the image's own size,
            when tiled), and the (D,) global vector when the export holds it.

        Raises:
            ImageLoadError: An array is not (H, W, 3) uint8.
        """
        if self.tile_size is not None:
            arrays = [_check_array(np.asarray(im), f"image-{i}") for i, im in enumerate(images)]
            return predict_in_tiles(
                self._predict_whole, arrays, self.tile_size, self.tile_overlap, progress
            )
        return self._predict_whole(images, progress)

    def _predict_whole(
        self, images: Sequence[np.ndarray], progress: Progress | None = None
    ) -> list[ScoredImage]:
        tell = report(progress)
        arrays = [_check_array(np.asarray(im), f"image-{i}") for i, im in enumerate(images)]
        out: list[ScoredImage] = []
        for batch in self._batches(arrays):
            outputs = self.session.run(self._outputs, {INPUT_NAME: np.stack(batch)})
            scores, maps = outputs[0], outputs[1]
            vectors = outputs[2] if len(outputs) > 2 else [None] * len(scores)
            for score, anomaly_map, vector in zip(scores, maps, vectors, strict=True):
                embedding = None if vector is None else vector.astype(np.float32)
                out.append(
                    ScoredImage(
                        float(score), anomaly_map.astype(np.float32), self.threshold, embedding
                    )
                )
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
