"""Pillow's bilinear resize of uint8 images, rebuilt as ONNX nodes so exports resize the same.

The torch detectors resize every input with ``PIL.Image.resize(..., BILINEAR)``
(:func:`adcore.detectors.base.to_tensor_batch`). Pillow's resize is antialiased (the triangle
filter widens by the reduction factor) and works in fixed point on 8-bit images: the weights are
rounded to integers of ``PRECISION_BITS`` bits, each pass rounds back to uint8, horizontal pass
first. ONNX ``Resize`` with ``antialias=1`` differs from it by up to several grey levels on a
percent of the pixels, enough to move a PatchCore score by more than 1e-4. So the resize is
built here from Pillow's own recipe (``precompute_coeffs`` and ``normalize_coeffs_8bpc`` in
``libImaging/Resample.c``): the weights of every output pixel are computed in the graph from the
input's height and width, as a dense (S, size) matrix, and applied by matrix products in double
precision, where the fixed-point sums are exact integers.
"""

from __future__ import annotations

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

PRECISION_BITS = 32 - 8 - 2
"""Pillow's fixed-point precision of 8-bit resampling weights."""


class _Nodes:
    """Collects nodes and constants under a name prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[NodeProto] = []
        self.constants: list[TensorProto] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _weights(g: _Nodes, in_size: str, out_size: int) -> str:
    """(out_size, in_size) double matrix of Pillow's fixed-point bilinear weights.

    Args:
        g: Node collector.
        in_size: Name of a scalar int64 tensor, the input length along the axis.
        out_size: The output length S.
    """
    n_in = g.op("Cast", [in_size], "n_in", to=TensorProto.DOUBLE)
    scale = g.op("Div", [n_in, g.const("s", np.array(float(out_size)))], "scale")
    filterscale = g.op("Max", [scale, g.const("one", np.array(1.0))], "filterscale")
    support = filterscale  # the bilinear (triangle) filter's support is 1.0 before scaling
    half = g.const("half", np.array(0.5))
    out_index = g.const("out_index", (np.arange(out_size, dtype=np.float64) + 0.5)[:, None])
    center = g.op("Mul", [out_index, scale], "center")  # (S, 1)
    lo = g.op("Floor", [g.op("Add", [g.op("Sub", [center, support]), half])], "xmin")
    lo = g.op("Max", [lo, g.const("zero", np.array(0.0))], "xmin")
    hi = g.op("Floor", [g.op("Add", [g.op("Add", [center, support]), half])], "xmax")
    hi = g.op("Min", [hi, n_in], "xmax")
    j = g.op(
        "Range", [g.const("r0", np.array(0.0)), n_in, g.const("r1", np.array(1.0))], "in_index"
    )  # (n,)
    offset = g.op("Div", [g.op("Add", [g.op("Sub", [j, center]), half]), filterscale])  # (S, n)
    tri = g.op("Sub", [g.const("one", np.array(1.0)), g.op("Abs", [offset])])
    tri = g.op("Max", [tri, g.const("zero", np.array(0.0))], "triangle")
    inside = g.op(
        "And",
        [g.op("GreaterOrEqual", [j, lo]), g.op("Less", [j, hi])],
        "window",
    )
    w = g.op("Where", [inside, tri, g.const("zero", np.array(0.0))], "w")
    total = g.op("ReduceSum", [w, g.const("axis", np.array([1], dtype=np.int64))], "total")
    w = g.op("Div", [w, total], "w_norm")
    fixed = g.const("fixed", np.array(float(1 << PRECISION_BITS)))
    return g.op("Floor", [g.op("Add", [g.op("Mul", [w, fixed]), half])], "w_fixed")


def _round_to_uint8_levels(g: _Nodes, sums: str) -> str:
    """Pillow's ``clip8``: add half, shift right by PRECISION_BITS, clip to [0, 255]."""
    half = g.const("rhalf", np.array(float(1 << (PRECISION_BITS - 1))))
    fixed = g.const("rfixed", np.array(float(1 << PRECISION_BITS)))
    shifted = g.op("Floor", [g.op("Div", [g.op("Add", [sums, half]), fixed])], "shift")
    return g.op("Clip", [shifted, g.const("c0", np.array(0.0)), g.const("c1", np.array(255.0))])


def pil_bilinear_resize_nodes(
    image: str, out_size: int, prefix: str = "pil_resize/"
) -> tuple[str, list[NodeProto], list[TensorProto]]:
    """Nodes resizing (N, H, W, 3) uint8 RGB to (N, 3, S, S) float32 in [0, 1], as Pillow does.

    Args:
        image: Name of the (N, H, W, 3) uint8 graph input (any H and W).
        out_size: The square output side S.
        prefix: Prefix of every node and constant name.

    Returns:
        (name of the (N, 3, S, S) float32 output, the nodes in order, their constants).
    """
    g = _Nodes(prefix)
    shape = g.op("Shape", [image], "shape")
    height = g.op("Gather", [shape, g.const("i1", np.array(1, dtype=np.int64))], "h")
    width = g.op("Gather", [shape, g.const("i2", np.array(2, dtype=np.int64))], "w")
    x = g.op("Cast", [image], "pixels", to=TensorProto.DOUBLE)
    x = g.op("Transpose", [x], "nchw", perm=[0, 3, 1, 2])  # (N, 3, H, W)
    wx = g.op("Transpose", [_weights(g, width, out_size)], "wx_t", perm=[1, 0])  # (W, S)
    x = _round_to_uint8_levels(g, g.op("MatMul", [x, wx], "horizontal"))  # (N, 3, H, S)
    wy = _weights(g, height, out_size)  # (S, H)
    x = _round_to_uint8_levels(g, g.op("MatMul", [wy, x], "vertical"))  # (N, 3, S, S)
    x = g.op("Cast", [x], "as_float", to=TensorProto.FLOAT)
    out = g.op("Div", [x, g.const("c255", np.array(255.0, dtype=np.float32))], "unit")
    return out, g.nodes, g.constants
