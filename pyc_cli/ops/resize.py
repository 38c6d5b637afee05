"""Resize (opset 10+) and Upsample (7-9): nearest and (multi)linear, the common coordinate modes.

Every output coordinate maps to source indices and weights that depend only on static shapes,
so they are computed here once and emitted as constant tables; the kernel just gathers.
Rejected at build time (PYC-E008): cubic, antialias, tf_crop_and_resize, keep_aspect_ratio
policies other than stretch, linear interpolation along more than two axes.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from .movement import contiguous_strides
from .registry import (
    KERNEL,
    InTypes,
    InValues,
    KernelCandidate,
    OpDef,
    ints_attr,
    normalize_axis,
    register,
    require,
)

_COORDINATE_MODES = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                     "tf_half_pixel_for_nn", "half_pixel_symmetric")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


class ResizeBase(OpDef):
    category = KERNEL
    dtypes = (DType.F32, DType.F64)
    kernels = (KernelCandidate("resize_tables", "resize.c.j2"),)

    # ------------------------------------------------------------ attributes and sizes

    def mode(self, node: Node) -> str:
        mode = str(node.attrs.get("mode", "nearest"))
        if mode == "bilinear":  # Upsample-7 spelling
            mode = "linear"
        if mode not in ("nearest", "linear"):
            raise PycError("E008", f"{node.op} mode {mode!r} is not supported (nearest, linear are)",
                           where=node.name)
        return mode

    def coordinate_mode(self, node: Node) -> str:
        if node.op == "Upsample" or self.since_opset(node) < 11:
            return "asymmetric"
        mode = str(node.attrs.get("coordinate_transformation_mode", "half_pixel"))
        if mode not in _COORDINATE_MODES:
            raise PycError("E008", f"coordinate_transformation_mode {mode!r} is not supported",
                           where=node.name)
        return mode

    def since_opset(self, node: Node) -> int:
        return int(node.attrs.get("_opset", 11))  # type: ignore[call-overload]

    def check_supported(self, node: Node) -> None:
        if int(node.attrs.get("antialias", 0)):  # type: ignore[call-overload]
            raise PycError("E008", "Resize antialias is not supported", where=node.name)
        policy = str(node.attrs.get("keep_aspect_ratio_policy", "stretch"))
        if policy != "stretch":
            raise PycError("E008", f"keep_aspect_ratio_policy {policy!r} is not supported",
                           where=node.name)
        nearest = str(node.attrs.get("nearest_mode", "round_prefer_floor"))
        if nearest not in _NEAREST_MODES:
            raise PycError("E008", f"nearest_mode {nearest!r} is not supported", where=node.name)

    def scales_and_sizes(self, node: Node, shape: tuple[int, ...],
                         values: InValues) -> tuple[list[float], list[int]]:
        raise NotImplementedError

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        self.mode(node)
        self.coordinate_mode(node)
        self.check_supported(node)
        _, sizes = self.scales_and_sizes(node, x.shape, values)
        return [TensorType(x.dtype, tuple(sizes))]

    # ------------------------------------------------------------ index tables

    def tables(self, node: Node, shape: tuple[int, ...], values: InValues) -> list[dict[str, list]]:
        """Per axis: source indices lo/hi and the weight of hi (nearest: lo == hi, weight 0)."""
        scales, sizes = self.scales_and_sizes(node, shape, values)
        mode, coords = self.mode(node), self.coordinate_mode(node)
        nearest = str(node.attrs.get("nearest_mode", "round_prefer_floor"))
        if node.op == "Upsample" or self.since_opset(node) < 11:
            nearest = "floor"
        axes = []
        for size_in, size_out, scale in zip(shape, sizes, scales):
            lo, hi, weight = [], [], []
            for out in range(size_out):
                x = _source_coordinate(out, scale, size_in, size_out, coords)
                if mode == "nearest" or size_in == size_out and scale == 1.0:
                    index = min(max(_round(x, nearest), 0), size_in - 1)
                    lo.append(index)
                    hi.append(index)
                    weight.append(0.0)
                else:
                    x = min(max(x, 0.0), size_in - 1)
                    base = int(math.floor(x))
                    lo.append(base)
                    hi.append(min(base + 1, size_in - 1))
                    weight.append(x - base)
            axes.append({"lo": lo, "hi": hi, "w": weight,
                         "interp": any(w != 0.0 for w in weight)})
        if sum(a["interp"] for a in axes) > 2:
            raise PycError("E008", "linear Resize along more than two axes is not supported",
                           where=node.name)
        return axes

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        shape = graph.types[node.inputs[0]].shape
        values: InValues = [graph.constants.get(v) if v else None for v in node.inputs]
        axes = self.tables(node, shape, values)
        return {"axes": axes, "out_shape": [len(a["lo"]) for a in axes],
                "in_strides": contiguous_strides(shape)}

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        raise NotImplementedError("Resize is not constant-folded")


def _source_coordinate(out: int, scale: float, size_in: int, size_out: int, mode: str) -> float:
    """The ONNX coordinate transforms; the resized length is size_in * scale (not rounded)."""
    resized = size_in * scale
    if mode == "asymmetric":
        return out / scale
    if mode == "align_corners":
        return 0.0 if resized <= 1 else out * (size_in - 1) / (resized - 1)
    if mode == "pytorch_half_pixel":
        return (out + 0.5) / scale - 0.5 if resized > 1 else 0.0
    if mode == "tf_half_pixel_for_nn":
        return (out + 0.5) / scale
    if mode == "half_pixel_symmetric":
        adjustment = size_out / resized
        offset = size_in / 2 * (1 - adjustment)
        return offset + (out + 0.5) / scale - 0.5
    return (out + 0.5) / scale - 0.5  # half_pixel


def _round(x: float, mode: str) -> int:
    if mode == "floor":
        return int(math.floor(x))
    if mode == "ceil":
        return int(math.ceil(x))
    if x == math.floor(x) + 0.5:  # exactly halfway
        return int(math.floor(x)) if mode == "round_prefer_floor" else int(math.ceil(x))
    return int(math.floor(x + 0.5))


@register
class Resize(ResizeBase):
    name = "Resize"
    since = 10
    static_inputs = (1, 2, 3)

    def since_opset(self, node: Node) -> int:
        # Resize-10 has (X, scales) and asymmetric coordinates; 11+ has (X, roi, scales, sizes)
        return 10 if len(node.inputs) == 2 else 11

    def scales_and_sizes(self, node: Node, shape: tuple[int, ...],
                         values: InValues) -> tuple[list[float], list[int]]:
        rank = len(shape)
        if str(node.attrs.get("coordinate_transformation_mode", "")) == "tf_crop_and_resize":
            raise PycError("E008", "tf_crop_and_resize is not supported", where=node.name)
        axes = [normalize_axis(a, rank, node) for a in ints_attr(node, "axes")] or list(range(rank))
        scale_index, size_index = (1, None) if len(node.inputs) == 2 else (2, 3)
        sizes_value = values[size_index] if size_index is not None and \
            len(node.inputs) > size_index and node.inputs[size_index] else None
        scales_value = values[scale_index] if len(node.inputs) > scale_index and \
            node.inputs[scale_index] else None
        scales, sizes = [1.0] * rank, list(shape)
        if sizes_value is not None and np.asarray(sizes_value).size:
            for axis, size in zip(axes, np.asarray(sizes_value).reshape(-1)):
                sizes[axis], scales[axis] = int(size), int(size) / shape[axis]
        elif scales_value is not None and np.asarray(scales_value).size:
            for axis, scale in zip(axes, np.asarray(scales_value).reshape(-1)):
                scales[axis] = float(scale)
                sizes[axis] = int(math.floor(shape[axis] * float(scale)))
        else:
            raise PycError("E008", "Resize needs constant scales or sizes", where=node.name,
                           hint="fix the input shapes so the scale computation folds")
        return scales, sizes


@register
class Upsample(ResizeBase):
    name = "Upsample"
    since = 7
    until = 9

    def scales_and_sizes(self, node: Node, shape: tuple[int, ...],
                         values: InValues) -> tuple[list[float], list[int]]:
        if "scales" in node.attrs:
            scales = [float(s) for s in node.attrs["scales"]]  # type: ignore[union-attr]
        elif len(values) > 1 and values[1] is not None:
            scales = [float(s) for s in np.asarray(values[1]).reshape(-1)]
        else:
            raise PycError("E008", "Upsample needs constant scales", where=node.name)
        return scales, [int(math.floor(d * s)) for d, s in zip(shape, scales)]

