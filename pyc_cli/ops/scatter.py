"""Index-driven movement: ScatterElements and ScatterND (reduction none/add/mul/max/min, applied
in index order) and GatherND (with batch_dims). Out-of-range indices are runtime errors."""

from __future__ import annotations

import math

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import MODEL_DTYPES, TensorType
from .movement import contiguous_strides
from .registry import (
    KERNEL,
    InTypes,
    InValues,
    OpDef,
    normalize_axis,
    register,
    require,
)

ALL_DTYPES = MODEL_DTYPES
REDUCTIONS = ("none", "add", "mul", "max", "min")
_NUMPY_REDUCE = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _reduction(node: Node) -> str:
    reduction = str(node.attrs.get("reduction", "none"))
    if reduction not in REDUCTIONS:
        raise PycError("E008", f"{node.op} reduction {reduction!r} is not supported", where=node.name)
    return reduction


def _apply(target: np.ndarray, index: tuple, value: np.ndarray, reduction: str) -> None:
    target[index] = value if reduction == "none" else _NUMPY_REDUCE[reduction](target[index], value)


@register
class ScatterElements(OpDef):
    name = "ScatterElements"
    since = 11
    category = KERNEL
    dtypes = ALL_DTYPES

    def takes_bf16(self, node: Node | None = None) -> bool:
        """bfloat16 data is moved as it is; a reduction into it computes in float32 between casts."""
        return node is None or _reduction(node) == "none"

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        data, indices, updates = (require(types, i, node) for i in range(3))
        _reduction(node)
        if indices.shape != updates.shape or indices.rank != data.rank:
            raise PycError("E009", "ScatterElements indices/updates shapes disagree", where=node.name)
        return [data]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        data, indices, updates = (np.asarray(i) for i in inputs[:3])
        axis = normalize_axis(node.int_attr("axis", 0), data.ndim, node)
        out, reduction = data.copy(), _reduction(node)
        for position in np.ndindex(indices.shape):
            target = list(position)
            target[axis] = int(indices[position]) % data.shape[axis]
            _apply(out, tuple(target), updates[position], reduction)
        return [out]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        data, indices = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
        axis = normalize_axis(node.int_attr("axis", 0), data.rank, node)
        return {"dims": list(indices.shape), "axis": axis, "axis_dim": data.shape[axis],
                "out_strides": contiguous_strides(data.shape), "reduction": _reduction(node)}

    def flops(self, node: Node, graph: Graph) -> int:
        return 0


@register
class ScatterND(OpDef):
    name = "ScatterND"
    since = 11
    category = KERNEL
    dtypes = ALL_DTYPES

    def takes_bf16(self, node: Node | None = None) -> bool:
        """bfloat16 data is moved as it is; a reduction into it computes in float32 between casts."""
        return node is None or _reduction(node) == "none"

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        data, indices, updates = (require(types, i, node) for i in range(3))
        _reduction(node)
        depth = indices.shape[-1]
        if updates.shape != indices.shape[:-1] + data.shape[depth:]:
            raise PycError("E009", "ScatterND updates shape disagrees", where=node.name)
        return [data]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        data, indices, updates = (np.asarray(i) for i in inputs[:3])
        out, reduction = data.copy(), _reduction(node)
        for position in np.ndindex(indices.shape[:-1]):
            target = tuple(int(i) % d for i, d in zip(indices[position], data.shape))
            _apply(out, target, updates[position], reduction)
        return [out]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        data, indices = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
        depth = indices.shape[-1]
        strides = contiguous_strides(data.shape)
        return {"count": math.prod(indices.shape[:-1]), "depth": depth,
                "data_dims": list(data.shape[:depth]), "data_strides": strides[:depth],
                "slice": math.prod(data.shape[depth:]), "reduction": _reduction(node)}

    def flops(self, node: Node, graph: Graph) -> int:
        return 0


@register
class GatherND(OpDef):
    name = "GatherND"
    since = 11
    category = KERNEL
    dtypes = ALL_DTYPES

    def geometry(self, node: Node, data: tuple[int, ...], indices: tuple[int, ...]
                 ) -> tuple[int, int, list[int]]:
        """(batch dims b, index depth k, output shape)."""
        b = node.int_attr("batch_dims", 0)
        k = indices[-1]
        if data[:b] != indices[:b] or b + k > len(data):
            raise PycError("E009", "GatherND indices do not fit the data", where=node.name)
        return b, k, list(indices[:-1]) + list(data[b + k:])

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        data, indices = require(types, 0, node), require(types, 1, node)
        return [TensorType(data.dtype, tuple(self.geometry(node, data.shape, indices.shape)[2]))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        data, indices = np.asarray(inputs[0]), np.asarray(inputs[1])
        b, k, out_shape = self.geometry(node, data.shape, indices.shape)
        batch = math.prod(data.shape[:b])
        flat_data = data.reshape((batch,) + data.shape[b:])
        flat_indices = indices.reshape((batch, -1, k))
        parts = [flat_data[n][tuple(int(i) % d for i, d in zip(row, data.shape[b:]))]
                 for n in range(batch) for row in flat_indices[n]]
        return [np.asarray(parts, dtype=data.dtype).reshape(out_shape)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        data, indices = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
        b, k, _ = self.geometry(node, data.shape, indices.shape)
        strides = contiguous_strides(data.shape)
        batch = math.prod(data.shape[:b])
        return {"batch": batch, "per_batch": math.prod(indices.shape[b:-1]), "depth": k,
                "batch_stride": math.prod(data.shape[b:]), "data_dims": list(data.shape[b:b + k]),
                "data_strides": strides[b:b + k], "slice": math.prod(data.shape[b + k:])}

    def flops(self, node: Node, graph: Graph) -> int:
        return 0
