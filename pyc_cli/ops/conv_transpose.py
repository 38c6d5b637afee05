"""ConvTranspose (1-D to 3-D; the kernel is 3-D and runs lower ranks with unit leading dims) with
groups, strides, dilations, explicit pads, output_padding, output_shape and auto_pad, lowered to
a direct scatter kernel: every input pixel times every kernel tap is accumulated into the
zero-initialized output."""

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

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def transpose_geometry(
    node: Node, spatial: tuple[int, ...], kernel: tuple[int, ...]
) -> tuple[list[int], list[int], list[int], list[int]]:
    """Strides, dilations, begin pads and output sizes of a ConvTranspose (ONNX's rules: an
    output pixel o receives input pixel i through tap k when o = i*stride - pad + k*dilation)."""
    rank = len(spatial)
    where = node.name
    strides = ints_attr(node, "strides") or [1] * rank
    dilations = ints_attr(node, "dilations") or [1] * rank
    pads = ints_attr(node, "pads") or [0] * (2 * rank)
    output_padding = ints_attr(node, "output_padding") or [0] * rank
    output_shape = ints_attr(node, "output_shape")
    auto_pad = str(node.attrs.get("auto_pad", "NOTSET"))
    if auto_pad not in AUTO_PADS:
        raise PycError("E008", f"ConvTranspose auto_pad {auto_pad!r} is not supported "
                       f"(supported: {', '.join(AUTO_PADS)})", where=where)
    if len(output_shape) == rank + 2:  # older exporters give the full N, C, spatial shape
        output_shape = output_shape[2:]
    for key, value, length in (("strides", strides, rank), ("dilations", dilations, rank),
                               ("pads", pads, 2 * rank), ("output_padding", output_padding, rank),
                               ("output_shape", output_shape, rank if output_shape else 0)):
        if len(value) != length:
            raise PycError("E009", f"ConvTranspose {key} {value} does not fit {rank} spatial axes",
                           where=where)
    if min(strides) < 1 or min(dilations) < 1:
        raise PycError("E009", f"ConvTranspose strides {strides} and dilations {dilations} must "
                       "be positive", where=where)
    if min(pads) < 0 or min(output_padding) < 0:
        raise PycError("E008", f"ConvTranspose negative pads {pads} or output_padding "
                       f"{output_padding} are not supported", where=where)
    begins: list[int] = []
    out: list[int] = []
    for d in range(rank):
        extent = dilations[d] * (kernel[d] - 1) + 1
        full = strides[d] * (spatial[d] - 1) + output_padding[d] + extent
        if output_shape or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            size = output_shape[d] if output_shape else spatial[d] * strides[d]
            total = full - size
            if total < 0:
                begin = 0  # a larger requested output: the extra pixels at the end stay zero
            elif auto_pad == "SAME_UPPER":
                begin = total // 2
            else:
                begin = total - total // 2
        elif auto_pad == "VALID":
            size, begin = full, 0
        else:
            begin = pads[d]
            size = full - pads[d] - pads[d + rank]
        if size <= 0:
            raise PycError("E009", f"ConvTranspose output size {size} on spatial axis {d} is not "
                           "positive", where=where)
        begins.append(begin)
        out.append(size)
    return strides, dilations, begins, out


def _valid_inputs(in_w: int, out_w: int, pad: int, stride: int, dil: int, k: int) -> tuple[int, int]:
    """Input columns [lo, hi) whose output column iw*stride - pad + k*dil lies in [0, out_w)."""
    offset = k * dil - pad
    lo = max(0, -(offset // stride))  # ceil(-offset / stride)
    top = out_w - 1 - offset
    hi = min(in_w, top // stride + 1) if top >= 0 else 0
    return lo, max(lo, hi)


@register
class ConvTranspose(OpDef):
    name = "ConvTranspose"
    category = KERNEL
    dtypes = (DType.F32, DType.F64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x, w = require(types, 0, node), require(types, 1, node)
        if x.rank not in (3, 4, 5):
            raise PycError("E008", f"ConvTranspose of rank {x.rank} is not supported (1-D to "
                           "3-D are)", where=node.name)
        if w.rank != x.rank:
            raise PycError("E009", f"ConvTranspose weight rank {w.rank} differs from input rank "
                           f"{x.rank}", where=node.name)
        group = node.int_attr("group", 1)
        if group < 1 or x.shape[1] % group or w.shape[0] != x.shape[1]:
            raise PycError("E009", f"ConvTranspose input channels {x.shape[1]} do not match "
                           f"weight shape {list(w.shape)} with group {group}", where=node.name)
        kernel_shape = ints_attr(node, "kernel_shape")
        if kernel_shape and tuple(kernel_shape) != w.shape[2:]:
            raise PycError("E009", f"ConvTranspose kernel_shape {kernel_shape} differs from the "
                           f"weight's {list(w.shape[2:])}", where=node.name)
        channels = w.shape[1] * group
        inputs = own_inputs(node)
        if len(inputs) > 2 and inputs[2]:
            b = require(types, 2, node)
            if b.shape != (channels,):
                raise PycError("E009", f"ConvTranspose bias shape {list(b.shape)} is not "
                               f"[{channels}]", where=node.name)
        out = transpose_geometry(node, x.shape[2:], w.shape[2:])[3]
        return [TensorType(x.dtype, (x.shape[0], channels, *out))]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        x, w = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
        strides, dilations, begins, out = transpose_geometry(node, x.shape[2:], w.shape[2:])
        # the kernel is 3-D (depth, height, width): 1-D and 2-D ones run with unit leading dims
        lift = 5 - x.rank
        size, kernel = [1] * lift + list(x.shape[2:]), [1] * lift + list(w.shape[2:])
        strides, dilations = [1] * lift + strides, [1] * lift + dilations
        begins, out = [0] * lift + begins, [1] * lift + out
        group = node.int_attr("group", 1)
        check_int32_index(f"the input width of {node.op}", x.shape[-1], f"node {node.name!r}")
        columns = [_valid_inputs(x.shape[-1], out[-1], begins[-1], strides[-1], dilations[-1], kw)
                   for kw in range(w.shape[-1])]
        return {
            "iw_lo": [lo for lo, _ in columns], "iw_hi": [hi for _, hi in columns],
            "N": x.shape[0], "C": x.shape[1], "D": size[0], "H": size[1], "W": size[2],
            "OC": w.shape[1] * group, "OD": out[0], "OH": out[1], "OW": out[2],
            "KD": kernel[0], "KH": kernel[1], "KW": kernel[2],
            "SD": strides[0], "SH": strides[1], "SW": strides[2],
            "DD": dilations[0], "DH": dilations[1], "DW": dilations[2],
            "PD": begins[0], "PH": begins[1], "PW": begins[2], "depth": x.rank == 5,
            "G": group, "CG": x.shape[1] // group, "OCG": w.shape[1],
            "has_bias": len(own_inputs(node)) > 2 and bool(node.inputs[2]),
        }

    def flops(self, node: Node, graph: Graph) -> int:
        x, w = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
        return 2 * x.numel * math.prod(w.shape[1:])

    @references.f16_via_f32
    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, w = np.asarray(inputs[0]), np.asarray(inputs[1])
        bias = inputs[2] if len(inputs) > 2 else None
        strides, dilations, begins, out = transpose_geometry(node, x.shape[2:], w.shape[2:])
        group = node.int_attr("group", 1)
        output_padding = ints_attr(node, "output_padding") or [0] * (x.ndim - 2)
        return [references.conv_transpose(x, w, bias, group, strides, dilations, begins, out,
                                          output_padding)]
