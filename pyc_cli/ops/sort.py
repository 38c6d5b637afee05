"""TopK: the K largest (or smallest) elements along an axis, sorted, with their int64 indices;
equal values keep the lower index first."""

from __future__ import annotations

import math

import numpy as np

from ..errors import PycError, RunTimeCheckedError
from ..ir.graph import Graph, Node
from ..ir.symbolic import DimLike, computed_dim, has_dims, surely_less
from ..ir.types import MODEL_DTYPES, DType, TensorType
from .registry import (
    KERNEL,
    InRanges,
    InTypes,
    InValues,
    OpDef,
    as_dim,
    normalize_axis,
    register,
    require,
    shape_operand,
)

# the kernel sorts one row of indices on the stack
MAX_ROW = 1 << 16


@register
class TopK(OpDef):
    name = "TopK"
    since = 10  # K is an input from version 10
    category = KERNEL
    dtypes = (DType.F32, DType.F64, DType.I8, DType.I16, DType.I32, DType.I64, DType.U8, DType.U16,
              DType.U32, DType.U64)
    static_inputs = (1,)

    def geometry(self, node: Node, shape: tuple[int, ...], values: InValues) -> tuple[int, int]:
        axis = normalize_axis(node.int_attr("axis", -1), len(shape), node)
        k = as_dim(shape_operand(node, values, 1, "k", "K")[0])
        if surely_less(k, 0) or surely_less(shape[axis], k):  # symbolic: where sure
            # concrete sizes: a row shorter than a constant K (an instance of a symbolic axis
            # whose bounds include it, where the kernel refuses such a run)
            error = RunTimeCheckedError if not has_dims((k, shape[axis])) else PycError
            raise error("E009", f"TopK K={k} exceeds the axis size {shape[axis]}", where=node.name)
        if shape[axis] > MAX_ROW:
            raise PycError("E008", f"TopK over an axis longer than {MAX_ROW} is not supported",
                           where=node.name)
        return axis, k

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        axis, k = self.geometry(node, x.shape, values)
        return self._types(node, x, axis, k)

    def runtime_infer(self, node: Node, types: InTypes, values: InValues,
                      refusal: PycError, ranges: InRanges) -> list[TensorType]:
        """K computed at run time (issue #15, point 2): a computed dim in 0..d (d: the axis'
        upper bound), shared by both outputs."""
        x = require(types, 0, node)
        if "k" in node.attrs or values[1] is not None or x.rank == 0:
            raise refusal  # the refusal is about something else (an axis too long)
        axis = normalize_axis(node.int_attr("axis", -1), x.rank, node)
        if int(x.shape[axis]) > MAX_ROW:
            raise refusal
        return self._types(node, x, axis, computed_dim(node.name, axis, int(x.shape[axis])))

    def _types(self, node: Node, x: TensorType, axis: int, k: DimLike) -> list[TensorType]:
        shape = x.shape[:axis] + (k,) + x.shape[axis + 1:]
        return [TensorType(x.dtype, shape), TensorType(DType.I64, shape)][: len(node.outputs)]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        axis, k = self.geometry(node, x.shape, inputs)
        largest = node.int_attr("largest", 1)
        key = -x.astype(np.float64) if largest else x
        order = np.argsort(key, axis=axis, kind="stable")  # NaN last
        if largest:  # NaN ranks above every number (onnxruntime): NaN first, in index order
            nan_last = np.take_along_axis(~np.isnan(x), order, axis=axis)
            order = np.take_along_axis(order, np.argsort(nan_last, axis=axis, kind="stable"), axis=axis)
        indices = np.take(order, np.arange(k), axis=axis)
        return [np.take_along_axis(x, indices, axis=axis), indices.astype(np.int64)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        shape = graph.types[node.inputs[0]].shape
        k_input = node.inputs[1] if len(node.inputs) > 1 else ""  # absent: the `k` attribute
        if k_input and k_input not in graph.constants and "k" not in node.attrs:
            # K read at run time (issue #15): its output axis is the dim the kernel computes
            axis = normalize_axis(node.int_attr("axis", -1), len(shape), node)
            k: DimLike = graph.types[node.outputs[0]].shape[axis]
        else:
            axis, k = self.geometry(node, shape, [None, graph.constants.get(k_input)])
        largest = node.int_attr("largest", 1)
        return {"outer": math.prod(shape[:axis]), "row": shape[axis],
                "inner": math.prod(shape[axis + 1:]), "k": k, "before": ">" if largest else "<",
                "has_indices": len(node.outputs) > 1 and bool(node.outputs[1])}

    def flops(self, node: Node, graph: Graph) -> int:
        return graph.types[node.inputs[0]].numel * 8


@register
class NonZero(OpDef):
    """The coordinates of the non-zero elements, [rank, count] int64 in row-major order. The
    count depends on the values: a computed dim in 0..numel (issue #15, point 2), unless the
    input is a constant (then folded)."""

    name = "NonZero"
    since = 9
    category = KERNEL
    dtypes = tuple(d for d in MODEL_DTYPES if d not in (DType.F16, DType.BF16))

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if x.rank == 0:
            raise PycError("E008", "NonZero of a scalar (rank 0) is not supported",
                           where=node.name, hint="give it a 1-element 1-D tensor")
        known = values[0] if values else None
        if known is not None and known.dtype != object:  # a constant: its count is known
            return [TensorType(DType.I64, (x.rank, int(np.count_nonzero(known))))]
        return [TensorType(DType.I64, (x.rank, computed_dim(node.name, 1, int(x.numel))))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        return [np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        return {"rank": graph.types[node.inputs[0]].rank}

    def flops(self, node: Node, graph: Graph) -> int:
        return 2 * int(graph.types[node.inputs[0]].numel)
