"""ReduceSum/Mean/Max/Min with axes as attribute (old opsets) or input (opset 13/18+)."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
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


class Reduce(OpDef):
    category = KERNEL
    dtypes = (DType.F32, DType.F64, DType.I64, DType.I32)
    kernels = (KernelCandidate("reduce_strided", "reduce.c.j2"),)
    numpy_fn = staticmethod(np.sum)
    init = "0"

    def axes(self, node: Node, rank: int, values: InValues) -> list[int]:
        if "axes" in node.attrs:
            axes = ints_attr(node, "axes")
        elif len(node.inputs) > 1 and node.inputs[1] and values[1] is not None:
            axes = [int(a) for a in np.asarray(values[1]).reshape(-1)]
        else:
            axes = []
        if not axes and not int(node.attrs.get("noop_with_empty_axes", 0)):  # type: ignore[arg-type]
            axes = list(range(rank))
        return sorted(normalize_axis(a, rank, node) for a in axes)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        axes = self.axes(node, x.rank, values)
        keep = int(node.attrs.get("keepdims", 1))  # type: ignore[arg-type]
        shape = tuple(
            1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes
        )
        return [TensorType(x.dtype, shape)]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        axes = tuple(self.axes(node, x.ndim, inputs))
        keep = bool(node.attrs.get("keepdims", 1))
        return [np.asarray(self.numpy_fn(x, axis=axes, keepdims=keep)).astype(x.dtype)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        x = graph.types[node.inputs[0]]
        values: InValues = [None, graph.constants.get(node.inputs[1]) if len(node.inputs) > 1
                            and node.inputs[1] else None]
        axes = self.axes(node, x.rank, values)
        out_strides, step = [], 1
        for i in reversed(range(x.rank)):
            out_strides.append(0 if i in axes else step)
            step *= 1 if i in axes else x.shape[i]
        count = int(np.prod([x.shape[a] for a in axes])) if axes else 1
        return {"in_shape": list(x.shape), "out_strides": list(reversed(out_strides)),
                "count": count, "reducer": node.op}


@register
class ReduceSum(Reduce):
    name = "ReduceSum"


@register
class ReduceMean(Reduce):
    name = "ReduceMean"
    numpy_fn = staticmethod(np.mean)


@register
class ReduceMax(Reduce):
    name = "ReduceMax"
    numpy_fn = staticmethod(np.max)


@register
class ReduceMin(Reduce):
    name = "ReduceMin"
    numpy_fn = staticmethod(np.min)
