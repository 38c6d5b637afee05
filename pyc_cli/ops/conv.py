"""Conv 1-D to 3-D with groups, strides, dilations, explicit pads and auto_pad. The kernels are
3-D (depth, height, width): 1-D and 2-D convs run with unit leading dims."""

from __future__ import annotations

import math

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType, check_int32_index
from . import references
from .registry import (
    KERNEL,
    InTypes,
    InValues,
    OpDef,
    ints_attr,
    own_inputs,
    register,
    require,
)


def window_geometry(
    node: Node, spatial: tuple[int, ...], kernel: tuple[int, ...]
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """Strides, dilations, begin pads, output sizes and end pads of a sliding window op."""
    rank = len(spatial)
    strides = ints_attr(node, "strides") or [1] * rank
    dilations = ints_attr(node, "dilations") or [1] * rank
    pads = ints_attr(node, "pads") or [0] * (2 * rank)
    auto_pad = str(node.attrs.get("auto_pad", "NOTSET"))
    ceil_mode = node.int_attr("ceil_mode", 0)
    out: list[int] = []
    begins: list[int] = []
    ends: list[int] = []
    for d in range(rank):
        extent = dilations[d] * (kernel[d] - 1) + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            size = -(-spatial[d] // strides[d])
            total = max(0, (size - 1) * strides[d] + extent - spatial[d])
            begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            end = total - begin
        elif auto_pad == "VALID":
            size, begin, end = (spatial[d] - extent) // strides[d] + 1, 0, 0
        else:
            begin, end = pads[d], pads[d + rank]
            span = spatial[d] + begin + end - extent
            size = (-(-span // strides[d]) if ceil_mode else span // strides[d]) + 1
            if ceil_mode and (size - 1) * strides[d] >= spatial[d] + begin:
                size -= 1  # the last window must start inside the input or left pad
        if size <= 0:
            raise PycError("E009", f"window larger than padded input on axis {d}", where=node.name)
        out.append(size)
        begins.append(begin)
        ends.append(end)
    return strides, dilations, begins, out, ends


def _valid_columns(out_w: int, in_w: int, pad: int, stride: int, dil: int, kw: int) -> tuple[int, int]:
    """Output columns [lo, hi) whose input column ow*stride - pad + kw*dil lies in [0, in_w)."""
    lo = max(0, -(-(pad - kw * dil) // stride))
    top = in_w - 1 + pad - kw * dil
    hi = min(out_w, top // stride + 1) if top >= 0 else 0
    return lo, max(lo, hi)


@register
class Conv(OpDef):
    name = "Conv"
    category = KERNEL
    dtypes = (DType.F32, DType.F64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x, w = require(types, 0, node), require(types, 1, node)
        if x.rank not in (3, 4, 5):
            raise PycError("E008", f"Conv of rank {x.rank} is not supported (1-D to 3-D are)",
                           where=node.name)
        group = node.int_attr("group", 1)
        if x.shape[1] != w.shape[1] * group:
            raise PycError("E009", "Conv channels do not match weight shape", where=node.name)
        out = window_geometry(node, x.shape[2:], w.shape[2:])[3]
        return [TensorType(x.dtype, (x.shape[0], w.shape[0], *out))]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        x, w = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
        return conv_params(node, x.shape, w.shape)

    def flops(self, node: Node, graph: Graph) -> int:
        w = graph.types[node.inputs[1]]
        return 2 * graph.types[node.outputs[0]].numel * math.prod(w.shape[1:])

    @references.f16_via_f32
    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, w = np.asarray(inputs[0]), np.asarray(inputs[1])
        bias = inputs[2] if len(inputs) > 2 else None
        strides, dilations, begins, out, _ = window_geometry(node, x.shape[2:], w.shape[2:])
        group = node.int_attr("group", 1)
        return [references.conv(x, w, bias, group, strides, dilations, begins, out)]


def conv_params(node: Node, x: tuple[int, ...], w: tuple[int, ...]) -> dict[str, object]:
    """The numbers a conv kernel needs, from the logical (NCHW) input shape `x` and the weight
    shape `w` (a blocked conv, ops/layout.py, passes its logical shapes)."""
    strides, dilations, begins, out, _ = window_geometry(node, x[2:], w[2:])
    # every conv runs as 3-D (depth, height, width) with unit leading dims where it has none
    rank = len(x)
    lift = 5 - rank
    size, kernel = [1] * lift + list(x[2:]), [1] * lift + list(w[2:])
    strides, dilations = [1] * lift + strides, [1] * lift + dilations
    begins, out = [0] * lift + begins, [1] * lift + out
    group = node.int_attr("group", 1)
    check_int32_index(f"the output width of {node.op}", out[-1], f"node {node.name!r}")
    columns = [_valid_columns(out[-1], x[-1], begins[-1], strides[-1], dilations[-1], kw)
               for kw in range(w[-1])]
    return {
        "ow_lo": [lo for lo, _ in columns], "ow_hi": [hi for _, hi in columns],
        "N": x[0], "C": x[1], "D": size[0], "H": size[1], "W": size[2],
        "OC": w[0], "OD": out[0], "OH": out[1], "OW": out[2],
        "KD": kernel[0], "KH": kernel[1], "KW": kernel[2],
        "SD": strides[0], "SH": strides[1], "SW": strides[2],
        "DD": dilations[0], "DH": dilations[1], "DW": dilations[2],
        "PD": begins[0], "PH": begins[1], "PW": begins[2], "depth": rank == 5,
        "G": group, "CG": x[1] // group, "OCG": w[0] // group,
        "pointwise": not node.ann.prologue and tuple(w[2:]) == (1,) * (rank - 2)
        and set(strides) == {1}
        and not any(begins) and math.prod(out) == math.prod(x[2:]),
        "has_bias": len(own_inputs(node)) > 2 and bool(node.inputs[2]),
    }


@register
class BatchNormalization(OpDef):
    """Inference-mode batch norm; canonicalize folds it into a Conv/Gemm or rewrites it to Mul+Add."""

    name = "BatchNormalization"
    since = 7  # versions 1 and 6 carry the legacy is_test/consumed_inputs attributes
    category = KERNEL
    dtypes = (DType.F32, DType.F64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        if len([o for o in node.outputs if o]) > 1 or node.int_attr("training_mode", 0):
            raise PycError("E008", "BatchNormalization in training mode (batch statistics, running "
                           "mean/var outputs) is not supported", where=node.name,
                           hint="export the model in inference mode")
        x = require(types, 0, node)
        channels = x.shape[1] if x.rank >= 2 else None
        for index, what in enumerate(("scale", "bias", "mean", "var"), start=1):
            stat = require(types, index, node)
            if channels is None or stat.shape != (channels,):
                # the rewrite to per-channel math would broadcast into another shape
                raise PycError("E009", f"BatchNormalization {what} is {list(stat.shape)}; input "
                               f"{list(x.shape)} needs [{channels if channels is not None else 'C'}]"
                               " (an input of rank 2 or more and one value per channel)",
                               where=node.name)
        return [x]

    @staticmethod
    def scale_shift(node: Node, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (scale, shift) with y = x * scale + shift."""
        _, gamma, beta, mean, var = inputs
        eps = node.float_attr("epsilon", 1e-5)
        scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
        shift = beta.astype(np.float64) - mean.astype(np.float64) * scale
        return scale, shift

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        scale, shift = self.scale_shift(node, [np.asarray(i) for i in inputs])
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return [(x * scale.reshape(shape) + shift.reshape(shape)).astype(x.dtype)]
