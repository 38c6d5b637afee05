"""MaxPool / AveragePool (2-D, ceil_mode, count_include_pad); the global pools are rewritten
to reductions by canonicalize."""

from __future__ import annotations

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from .conv import window_geometry
from .registry import KERNEL, InTypes, InValues, KernelCandidate, OpDef, ints_attr, register, require


class Pool2d(OpDef):
    category = KERNEL
    dtypes = (DType.F32, DType.F64)
    kernels = (KernelCandidate("pool2d_direct", "pool2d.c.j2"),)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if x.rank != 4:
            raise PycError("E008", f"{node.op} of rank {x.rank} is not supported (2-D is)",
                           where=node.name)
        if len([o for o in node.outputs if o]) > 1:
            raise PycError("E008", "MaxPool Indices output is not supported", where=node.name)
        kernel = tuple(ints_attr(node, "kernel_shape"))
        out = window_geometry(node, x.shape[2:], kernel)[3]
        return [TensorType(x.dtype, (x.shape[0], x.shape[1], *out))]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        x = graph.types[node.inputs[0]]
        kernel = ints_attr(node, "kernel_shape")
        strides, dilations, begins, out, ends = window_geometry(node, x.shape[2:], tuple(kernel))
        return {
            "N": x.shape[0], "C": x.shape[1], "H": x.shape[2], "W": x.shape[3],
            "OH": out[0], "OW": out[1], "KH": kernel[0], "KW": kernel[1],
            "SH": strides[0], "SW": strides[1], "DH": dilations[0], "DW": dilations[1],
            "PH": begins[0], "PW": begins[1], "PH_end": ends[0], "PW_end": ends[1],
            "is_max": node.op == "MaxPool",
            "count_include_pad": int(node.attrs.get("count_include_pad", 0)),  # type: ignore[arg-type]
            "out_coords": ["n", "c", "oh", "ow"],
        }

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        raise NotImplementedError("pools are not constant-folded")


@register
class MaxPool(Pool2d):
    name = "MaxPool"


@register
class AveragePool(Pool2d):
    name = "AveragePool"


class GlobalPool(OpDef):
    category = KERNEL
    dtypes = (DType.F32, DType.F64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        return [TensorType(x.dtype, x.shape[:2] + (1,) * (x.rank - 2))]


@register
class GlobalAveragePool(GlobalPool):
    name = "GlobalAveragePool"

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        return [x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)]


@register
class GlobalMaxPool(GlobalPool):
    name = "GlobalMaxPool"

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        return [x.max(axis=tuple(range(2, x.ndim)), keepdims=True)]
