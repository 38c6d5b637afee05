"""CumSum / CumProd: running sums or products along one (constant) axis, optionally exclusive
and/or reversed."""

from __future__ import annotations

import math

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from .registry import (
    KERNEL,
    InTypes,
    InValues,
    OpDef,
    normalize_axis,
    register,
    require,
    require_value,
)


@register
class CumSum(OpDef):
    name = "CumSum"
    since = 11
    category = KERNEL
    dtypes = (DType.F32, DType.F64, DType.I32, DType.I64, DType.U32, DType.U64)
    static_inputs = (1,)
    numpy_fn = staticmethod(np.cumsum)

    def axis(self, node: Node, rank: int, values: InValues) -> int:
        return normalize_axis(int(require_value(values, 1, node, "axis").reshape(-1)[0]), rank, node)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        self.axis(node, x.rank, values)
        return [x]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        axis = self.axis(node, x.ndim, inputs)
        reverse = node.int_attr("reverse", 0)
        source = np.flip(x, axis) if reverse else x
        total = self.numpy_fn(source, axis=axis, dtype=x.dtype)
        if node.int_attr("exclusive", 0) and source.shape[axis]:
            first = np.take(np.full_like(source, int(node.op == "CumProd")), [0], axis=axis)
            rest = np.take(total, np.arange(source.shape[axis] - 1), axis=axis)
            total = np.concatenate([first, rest], axis=axis)
        return [np.ascontiguousarray(np.flip(total, axis) if reverse else total)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        shape = graph.types[node.inputs[0]].shape
        values: InValues = [None, graph.constants.get(node.inputs[1])]
        axis = self.axis(node, len(shape), values)
        return {"outer": math.prod(shape[:axis]), "row": shape[axis],
                "inner": math.prod(shape[axis + 1:]),
                "product": node.op == "CumProd",
                "exclusive": node.int_attr("exclusive", 0),
                "reverse": node.int_attr("reverse", 0)}


@register
class CumProd(CumSum):
    name = "CumProd"
    since = 26
    numpy_fn = staticmethod(np.cumprod)
