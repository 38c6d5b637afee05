"""Reductions (Sum, Mean, Max, Min, Prod, L1, L2, SumSquare, LogSum, LogSumExp) with axes as an
attribute (old versions) or a constant input (ReduceSum-13+, the others 18+), and ArgMax/ArgMin."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from .elementwise import FLOATS
from .registry import (
    KERNEL,
    InTypes,
    InValues,
    OpDef,
    Scalar,
    ints_attr,
    normalize_axis,
    register,
    require,
    require_value,
)

NUMERIC = FLOATS + (DType.I32, DType.I64, DType.U32, DType.U64)


class Reduce(OpDef):
    category = KERNEL
    dtypes = NUMERIC
    static_inputs = (1,)
    # the accumulator's start value: "zero", "one", "lowest" or "highest" of the element type
    start: ClassVar[str] = "zero"

    def axes(self, node: Node, rank: int, values: InValues) -> list[int] | None:
        """Sorted axes to reduce, or None when the node is a no-op (empty axes, noop flag set)."""
        if "axes" in node.attrs:
            axes = ints_attr(node, "axes")
        elif len(node.inputs) > 1 and node.inputs[1]:
            axes = [int(a) for a in require_value(values, 1, node, "axes").reshape(-1)]
        else:
            axes = []
        if not axes:
            if node.int_attr("noop_with_empty_axes", 0):
                return None
            axes = list(range(rank))
        return sorted({normalize_axis(a, rank, node) for a in axes})

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        axes = self.axes(node, x.rank, values)
        if axes is None:
            return [x]
        keep = node.int_attr("keepdims", 1)
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        return [TensorType(x.dtype, shape)]

    def reduce(self, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        # a no-op reduction (empty axes, noop_with_empty_axes) still reduces each element
        # alone: ReduceL1 gives |x|, ReduceSumSquare x*x, ReduceLogSum log(x), as the kernel
        # (count 1) and onnxruntime do
        axes = self.axes(node, x.ndim, inputs) or []
        keep = bool(node.attrs.get("keepdims", 1))
        with np.errstate(all="ignore"):
            result = self.reduce(x, tuple(axes))
        if not keep:
            result = result.reshape([d for i, d in enumerate(x.shape) if i not in axes])
        return [np.asarray(result).astype(x.dtype)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        x = graph.types[node.inputs[0]]
        values: InValues = [None, graph.constants.get(node.inputs[1]) if len(node.inputs) > 1
                            and node.inputs[1] else None]
        axes = self.axes(node, x.rank, values)
        axes = [] if axes is None else axes
        out_strides, step = [], 1
        for i in reversed(range(x.rank)):
            out_strides.append(0 if i in axes else step)
            step *= 1 if i in axes else x.shape[i]
        start = Scalar(x.dtype, start_value(self.start, x.dtype))
        return {"in_shape": list(x.shape), "out_strides": list(reversed(out_strides)),
                "count": math.prod(x.shape[a] for a in axes), "reducer": node.op, "start_c": start}


def start_value(start: str, dtype: DType) -> float | int:
    """The accumulator's first value ("zero", "one", "lowest", "highest") in `dtype`."""
    if start in ("zero", "one"):
        return int(start == "one")
    if dtype is DType.BOOL:
        return int(start == "highest")
    if dtype.is_float:
        return -math.inf if start == "lowest" else math.inf
    info = np.iinfo(dtype.numpy)
    return int(info.min if start == "lowest" else info.max)


def _reduce(op: str, fn: Callable[[np.ndarray, tuple[int, ...]], np.ndarray], start: str = "zero",
            dtypes: tuple[DType, ...] = NUMERIC) -> None:
    """Register one reduction whose numpy reference is `fn(x, axes)` (with keepdims)."""
    def reduce(self: Reduce, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        return fn(x, axes)

    register(type(op, (Reduce,), {"name": op, "start": start, "dtypes": dtypes, "reduce": reduce,
                                  "__doc__": f"{op} over constant axes."}))


def _sum(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.sum(x, axis=axes, keepdims=True)


def _mean(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    count = math.prod(x.shape[a] for a in axes)
    total = _sum(x, axes)
    # the mean of nothing is left undefined by ONNX; onnxruntime returns the empty sum, 0
    return total / count if count else total


def _extreme(ufunc: np.ufunc, start: str) -> Callable[[np.ndarray, tuple[int, ...]], np.ndarray]:
    def fn(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        initial = start_value(start, DType.from_numpy(x.dtype))
        return ufunc.reduce(x, axis=axes, keepdims=True, initial=initial)
    return fn


_ORDERED = NUMERIC + (DType.I8, DType.U8, DType.BOOL)
_reduce("ReduceSum", _sum)
_reduce("ReduceMean", _mean)
_reduce("ReduceMax", _extreme(np.maximum, "lowest"), "lowest", _ORDERED)
_reduce("ReduceMin", _extreme(np.minimum, "highest"), "highest", _ORDERED)
_reduce("ReduceProd", lambda x, a: np.prod(x, axis=a, keepdims=True), "one")
_reduce("ReduceL1", lambda x, a: _sum(np.abs(x), a))
# squares in the element type, as the kernel and onnxruntime (3e38 squared overflows to inf)
_reduce("ReduceL2", lambda x, a: np.sqrt(_sum(np.square(x), a)))
_reduce("ReduceSumSquare", lambda x, a: _sum(np.square(x), a))
_reduce("ReduceLogSum", lambda x, a: np.log(_sum(x, a)), dtypes=FLOATS)


def _log_sum_exp(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """log(sum(exp(x - m))) + m with m the largest finite element (0 if none), as onnxruntime:
    3e38 gives 3e38, not inf; +inf gives inf; NaN gives NaN."""
    finite = np.where(np.isfinite(x), x, -np.inf)
    shift = np.max(finite, axis=axes, keepdims=True, initial=-np.inf)
    shift = np.where(np.isneginf(shift), 0, shift).astype(x.dtype)
    total = _sum(np.exp((x - shift).astype(np.float64)), axes)
    return (np.log(total) + shift).astype(x.dtype)


_reduce("ReduceLogSumExp", _log_sum_exp, dtypes=FLOATS)


_COMPARE = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


def _scan_extreme(rows: np.ndarray, better: str) -> np.ndarray:
    """The kernel's scan over axis 0, as onnxruntime's: the first element starts, and only one
    that compares `better` replaces it (so a NaN wins only when it comes first)."""
    best, index = rows[0].copy(), np.zeros(rows.shape[1:], np.int64)
    with np.errstate(invalid="ignore"):
        for r in range(1, rows.shape[0]):
            take = _COMPARE[better](rows[r], best)
            best = np.where(take, rows[r], best)
            index = np.where(take, r, index)
    return index


class ArgReduce(OpDef):
    """ArgMax/ArgMin along one axis: int64 indices of the first (or last) extreme element."""

    category = KERNEL
    dtypes = NUMERIC + (DType.I8, DType.U8, DType.I16, DType.U16)

    def geometry(self, node: Node, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        axis = normalize_axis(node.int_attr("axis", 0), len(shape), node)
        return axis, math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        axis = self.geometry(node, x.shape)[0]
        if x.shape[axis] == 0:
            raise PycError("E009", f"{node.op} over axis {axis} of {list(x.shape)}, which is "
                           "empty: there is no index to return", where=node.name)
        keep = node.int_attr("keepdims", 1)
        shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape) if keep or i != axis)
        return [TensorType(DType.I64, shape)]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        axis = self.geometry(node, x.shape)[0]
        index = _scan_extreme(np.moveaxis(x, axis, 0), self.kernel_params_better(node))
        if node.int_attr("keepdims", 1):
            index = np.expand_dims(index, axis)
        return [np.asarray(index, np.int64)]

    def kernel_params_better(self, node: Node) -> str:
        """The comparison that replaces the running extreme: strict for the first extreme,
        or-equal for the last (select_last_index)."""
        last = node.int_attr("select_last_index", 0)
        return (">" if node.op == "ArgMax" else "<") + ("=" if last else "")

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        _, outer, row, inner = self.geometry(node, graph.types[node.inputs[0]].shape)
        return {"outer": outer, "row": row, "inner": inner, "better": self.kernel_params_better(node)}

    def flops(self, node: Node, graph: Graph) -> int:
        return graph.types[node.inputs[0]].numel


@register
class ArgMax(ArgReduce):
    name = "ArgMax"


@register
class ArgMin(ArgReduce):
    name = "ArgMin"
