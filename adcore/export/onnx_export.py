"""Export a fitted PatchCore to one ONNX file that scores what the torch detector scores.

The file holds the whole path from a decoded image to the verdict's numbers:

1. **Preprocessing**: (N, H, W, 3) uint8 RGB of any size, resized to the model input exactly as
   Pillow resizes it (:mod:`adcore.export.pil_resize`), scaled to [0, 1]; the backbone's
   normalisation follows inside the backbone part.
2. **Backbone, memory-bank search, image score and map** (:mod:`adcore.export.patchcore_graph`).

Outputs: ``score`` (N,) float32 and ``anomaly_map`` (N, S, S) float32. The threshold, the map
colour scale (``map_calibration``, :mod:`adcore.map_scale`), the input contract and the model's
identity are stored as ``metadata_props`` (:data:`METADATA_PREFIX` keys, JSON values), read back
by :class:`adcore.detectors.onnx_runtime.OnnxPatchCore`.

Optionally the file is int8-quantized with onnxruntime's own ``quantize_dynamic`` (weights of
the matrix products and convolutions); scores then move, so a quantized file is marked as such
and its accuracy change is measured in ``bench/export_parity.py``, not promised.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import TensorProto, helper

from adcore.errors import ModelFileError
from adcore.export.patchcore_graph import PatchCoreScoring
from adcore.export.pil_resize import pil_bilinear_resize_nodes

EXPORT_FILE = "model.onnx"
"""The file name of an export inside a model directory (what the registry looks for)."""

METADATA_PREFIX = "loupe."
"""Prefix of Loupe's ``metadata_props`` keys."""

EXPORT_FORMAT = "loupe-onnx-1"
"""Version of the export layout (inputs, outputs, metadata keys)."""

INPUT_NAME = "image"
SCORE_NAME = "score"
MAP_NAME = "anomaly_map"
VECTOR_NAME = "vector"
QUANTIZATIONS = ("int8",)
RESIZE_PREFIX = "pil_resize/"

IR_VERSION = 10
"""ONNX IR version written (onnxruntime 1.30 reads up to 13; 10 keeps older runtimes working)."""


def input_contract(image_size: int) -> dict[str, Any]:
    """The input the exported graph expects and how it prepares it (stored in the metadata)."""
    return {
        "name": INPUT_NAME,
        "dtype": "uint8",
        "shape": ["batch", "height", "width", 3],
        "layout": "NHWC",
        "colour_order": "RGB",
        "resize": f"Pillow bilinear (antialiased, 8-bit fixed point) to {image_size}x{image_size}",
        "scale": "divided by 255, then the backbone's mean/std normalisation",
        "note": "images of one batch share one height and width",
    }


def export_patchcore(
    detector: Any,
    out: str | os.PathLike,
    *,
    quantize: str | None = None,
    source: str | None = None,
) -> Path:
    """Write a fitted PatchCore as one ONNX file.

    Args:
        detector: A fitted :class:`~adcore.detectors.patchcore.PatchCore`.
        out: The ``.onnx`` file to write (its folder is created).
        quantize: None for float32, or ``"int8"`` (onnxruntime dynamic quantization).
        source: Where the model came from (its directory), recorded in the metadata.

    Returns:
        The written file.

    Raises:
        ModelFileError: The detector is not a fitted PatchCore, or ``quantize`` is unknown.
    """
    if getattr(detector, "kind", None) != "patchcore":
        raise ModelFileError(
            f"Only PatchCore models export to ONNX, not {getattr(detector, 'kind', detector)!r}"
        )
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ModelFileError(f"Unknown quantization {quantize!r}; choose one of {QUANTIZATIONS}")
    if detector.model.memory_bank.shape[0] == 0:
        raise ModelFileError("Refusing to export an unfitted model")
    model = detector.model.to("cpu").eval()
    size = int(detector.config.image_size)
    proto = _export_scoring(PatchCoreScoring(model).eval(), size)
    proto = _prepend_preprocessing(proto, size)
    metadata = _metadata(detector, source=source, quantized=quantize)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    if quantize == "int8":
        proto = _quantize_int8(proto)
    _set_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    tmp = target.with_name(f".{target.name}.tmp")
    onnx.save_model(proto, str(tmp))
    os.replace(tmp, target)
    return target


def _export_scoring(scoring: PatchCoreScoring, size: int) -> onnx.ModelProto:
    """The scoring module as an ONNX model with a dynamic batch, input ``pixels``."""
    example = torch.rand(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        scoring,
        (example,),
        input_names=["pixels"],
        output_names=[SCORE_NAME, MAP_NAME, VECTOR_NAME],
        dynamic_shapes={"images": {0: batch}},
        dynamo=True,
        optimize=True,
        verbose=False,
    )
    proto = program.model_proto
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    return proto


def _prepend_preprocessing(proto: onnx.ModelProto, size: int) -> onnx.ModelProto:
    """Replace the float ``pixels`` input by a uint8 image input resized in the graph."""
    graph = proto.graph
    pixels = graph.input[0]
    resized, nodes, constants = pil_bilinear_resize_nodes(INPUT_NAME, size, RESIZE_PREFIX)
    nodes.append(helper.make_node("Identity", [resized], [pixels.name], name="pixels"))
    image = helper.make_tensor_value_info(
        INPUT_NAME, TensorProto.UINT8, ["batch", "height", "width", 3]
    )
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    graph.initializer.extend(constants)
    graph.input.remove(pixels)
    graph.input.insert(0, image)
    return proto


def _metadata(detector: Any, *, source: str | None, quantized: str | None) -> dict[str, Any]:
    calibration = getattr(detector, "map_calibration", None)
    config = detector.config
    return {
        "format": EXPORT_FORMAT,
        "kind": "patchcore",
        "threshold": detector.threshold,
        "calibrated_threshold": getattr(detector, "calibrated_threshold", None),
        "map_calibration": None if calibration is None else calibration.to_json(),
        "input": input_contract(int(config.image_size)),
        "outputs": {
            SCORE_NAME: "(batch,) float32 image score; defect when score >= threshold",
            MAP_NAME: f"(batch, {config.image_size}, {config.image_size}) float32 anomaly map",
            VECTOR_NAME: "(batch, D) float32 global vector (anomaly-focused pooling), used to "
            "find similar confirmed parts",
        },
        "image_size": int(config.image_size),
        "batch_size": int(config.batch_size),
        "backbone": config.backbone,
        "layers": list(config.layers),
        "image_score": getattr(config, "image_score", None),
        "score_sigma": getattr(config, "score_sigma", None),
        "tile_size": getattr(config, "tile_size", None),
        "tile_overlap": getattr(config, "tile_overlap", None),
        "memory_bank_size": int(detector.model.memory_bank.shape[0]),
        "training_hash": detector.training_hash,
        "quantization": quantized,
        "source": source,
    }


def _set_metadata(proto: onnx.ModelProto, metadata: dict[str, Any]) -> None:
    kept = [p for p in proto.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, json.dumps(value)


def read_metadata(props: dict[str, str]) -> dict[str, Any]:
    """Loupe's metadata from an ONNX file's ``metadata_props`` (keys without the prefix).

    Raises:
        ModelFileError: The file is not a Loupe export, or of another format version.
    """
    try:
        metadata = {
            key[len(METADATA_PREFIX) :]: json.loads(value)
            for key, value in props.items()
            if key.startswith(METADATA_PREFIX)
        }
    except json.JSONDecodeError as err:
        raise ModelFileError(f"Loupe metadata of the ONNX file is not JSON: {err}") from err
    if metadata.get("format") != EXPORT_FORMAT:
        raise ModelFileError(
            f"Not a Loupe ONNX export (metadata format {metadata.get('format')!r}, "
            f"expected {EXPORT_FORMAT!r}); export it with `python -m adcore export`"
        )
    return metadata


def _quantize_int8(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Dynamic int8 quantization of the weights (onnxruntime.quantization).

    The exact resize (double precision) is left alone.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(proto, str(source))
        resize = [n.name for n in proto.graph.node if n.name.startswith(RESIZE_PREFIX)]
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, nodes_to_exclude=resize)
        return onnx.load_model(str(target))
