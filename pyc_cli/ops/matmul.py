"""MatMul (numpy semantics, broadcast batch dims) and Gemm (rewritten to MatMul by canonicalize)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.symbolic import Dim, DimLike, EntryStep, RunTimeStride, has_dims
from ..ir.types import DType, TensorType
from .elementwise import broadcast_at_entry, broadcast_entry_steps
from .registry import (
    KERNEL,
    InTypes,
    InValues,
    OpDef,
    broadcast_shapes,
    register,
    require,
)


def _as_matrices(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Promote 1-D operands as numpy does: a vector A is [1,K], a vector B is [K,1]."""
    return ((1,) + a if len(a) == 1 else a), (b + (1,) if len(b) == 1 else b)


def matmul_shape(a: tuple[int, ...], b: tuple[int, ...], node: Node) -> tuple[int, ...]:
    a2, b2 = _as_matrices(a, b)
    if a2[-1] != b2[-2]:
        raise PycError("E009", f"MatMul inner dims differ: {list(a)} x {list(b)}", where=node.name)
    batch = _batch(a2, b2, node)
    shape = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(b) == 1:
        shape = shape[:-1]
    return shape


def _batch(a2: tuple[int, ...], b2: tuple[int, ...], node: Node) -> tuple[int, ...]:
    """The output's batch dims: broadcast where shape inference proves it, else decided at
    run time where a symbolic batch dim may be 1 (ops/elementwise.broadcast_at_entry: an entry
    dim, entry checks, the operand read with a run-time stride)."""
    try:
        return broadcast_shapes(a2[:-2], b2[:-2], where=node.name)
    except PycError:
        if not has_dims(a2[:-2] + b2[:-2]):
            raise
        return broadcast_at_entry(node, [a2[:-2], b2[:-2]])


def _batch_strides(shape: tuple[int, ...], batch: tuple[int, ...], matrix: int
                   ) -> list[DimLike | RunTimeStride]:
    """Element strides of each output batch dim in an operand (0 where it broadcasts; a
    run-time stride where a symbolic dim other than the output's may be 1 at run time)."""
    padded = (1,) * (len(batch) - len(shape)) + shape
    strides: list[DimLike | RunTimeStride] = []
    step: DimLike = matrix
    for dim, out in zip(reversed(padded), reversed(batch)):
        strides.append(RunTimeStride(dim, step) if isinstance(dim, Dim) and dim != out
                       else step if dim != 1 else 0)
        step *= dim
    return list(reversed(strides))


@register
class MatMul(OpDef):
    name = "MatMul"
    category = KERNEL
    dtypes = (DType.F32, DType.F64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        a, b = require(types, 0, node), require(types, 1, node)
        return [TensorType(a.dtype, matmul_shape(a.shape, b.shape, node))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.matmul(inputs[0], inputs[1])]

    def entry_steps(self, node: Node, graph: Graph) -> list[EntryStep]:
        if not node.outputs or node.outputs[0] not in graph.types or \
                any(v not in graph.types for v in node.inputs[:2]):
            return []
        a, b = _as_matrices(graph.types[node.inputs[0]].shape, graph.types[node.inputs[1]].shape)
        batch = self._out_batch(node, graph)
        return broadcast_entry_steps(node, batch, [a[:-2], b[:-2]])

    @staticmethod
    def _out_batch(node: Node, graph: Graph) -> tuple[int, ...]:
        """The batch dims of the output's type (a vector operand drops its matrix dim)."""
        out = graph.types[node.outputs[0]].shape
        ranks = [graph.types[v].rank for v in node.inputs[:2]]
        return out[:len(out) - (ranks[0] > 1) - (ranks[1] > 1)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        a_shape, b_shape = graph.types[node.inputs[0]].shape, graph.types[node.inputs[1]].shape
        a, b = _as_matrices(a_shape, b_shape)
        try:
            batch = broadcast_shapes(a[:-2], b[:-2])
        except PycError:  # decided at run time (_batch): the output's type holds the dims
            batch = self._out_batch(node, graph)
        m, k, n = a[-2], a[-1], b[-1]
        return {
            "M": m, "K": k, "N": n, "batch": list(batch),
            "a_batch_strides": _batch_strides(a[:-2], batch, m * k),
            "b_batch_strides": _batch_strides(b[:-2], batch, k * n),
        }

    def flops(self, node: Node, graph: Graph) -> int:
        params = self.kernel_params(node, graph)
        batch = math.prod(params["batch"])  # type: ignore[arg-type]
        return 2 * batch * int(params["M"]) * int(params["N"]) * int(params["K"])  # type: ignore[call-overload]


@register
class Gemm(OpDef):
    """Y = alpha * A' B' + beta * C. Canonicalization rewrites it into MatMul (+ Mul) (+ Add)."""

    name = "Gemm"
    category = KERNEL
    dtypes = (DType.F32, DType.F64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        a, b = require(types, 0, node), require(types, 1, node)
        if a.rank != 2 or b.rank != 2:
            raise PycError("E009", f"Gemm needs 2-D A and B, got {list(a.shape)} and "
                           f"{list(b.shape)}", where=node.name)
        m, k = (a.shape[1], a.shape[0]) if node.attrs.get("transA", 0) else a.shape
        k_b, n = (b.shape[1], b.shape[0]) if node.attrs.get("transB", 0) else b.shape
        c = types[2] if len(types) > 2 else None
        if k != k_b or (c is not None and broadcast_shapes(c.shape, (m, n), where=node.name)
                        != (m, n)):
            raise PycError("E009", f"Gemm shapes do not fit: A {list(a.shape)}, B {list(b.shape)}"
                           f"{'' if c is None else f', C {list(c.shape)}'} (transA="
                           f"{node.attrs.get('transA', 0)}, transB={node.attrs.get('transB', 0)})",
                           where=node.name)
        return [TensorType(a.dtype, (m, n))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
        a = a.T if node.attrs.get("transA", 0) else a
        b = b.T if node.attrs.get("transB", 0) else b
        y = node.float_attr("alpha", 1.0) * (a @ b)
        if len(inputs) > 2 and inputs[2] is not None:
            y = y + node.float_attr("beta", 1.0) * inputs[2]
        return [y.astype(a.dtype)]
