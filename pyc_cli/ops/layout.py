"""PyC-internal ops of the blocked channel layout (NCHWc) that passes/assign_layouts.py makes.

A blocked tensor holds the logical [N, C, *spatial] tensor as [N, C/c, *spatial, c]: element
(n, ch, s) at [n, ch // c, s, ch % c], c (the attribute `block`) the vector lanes of the
target's ISA, C a multiple of c. The IR carries that physical shape, so the verifier, shape
inference and the memory planner need no layout of their own: elementwise ops whose operands
have one shape are the same loop in either layout.

- `pyc.Reorder` (to = "blocked" | "plain") changes the layout;
- `pyc.ConvBlocked` is a 2-D Conv of one group reading and writing blocked tensors, its weight
  and bias in their ONNX shapes ([OC, C, KH, KW], [OC]);
- `pyc.PoolBlocked` is a 2-D MaxPool / AveragePool (attribute `pool`) on blocked tensors.
"""

from __future__ import annotations

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from . import references
from .conv import conv_params, window_geometry
from .registry import KERNEL, InTypes, InValues, OpDef, get, register, require

LAYOUT_DTYPES = (DType.F32, DType.F64)
# the name the layout pass gives the blocked form of a value X: X.blocked (`pyc run --compare
# --per-node` compares it, reordered, with the reference's X)
BLOCKED_SUFFIX = ".blocked"


def blocked_shape(shape: tuple[int, ...], block: int) -> tuple[int, ...]:
    """The physical shape of a logical [N, C, *spatial] tensor in blocks of `block` channels."""
    if len(shape) < 3 or block < 1 or shape[1] % block:
        raise ValueError(f"{list(shape)} has no blocked form of {block} channels")
    return (shape[0], shape[1] // block, *shape[2:], block)


def plain_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The logical shape of a blocked [N, C/c, *spatial, c] tensor."""
    return (shape[0], shape[1] * shape[-1], *shape[2:-1])


def to_blocked(x: np.ndarray, block: int) -> np.ndarray:
    shape = blocked_shape(x.shape, block)
    moved = x.reshape(x.shape[0], shape[1], block, *x.shape[2:])
    return np.ascontiguousarray(np.moveaxis(moved, 2, -1))


def to_plain(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, -1, 2)).reshape(plain_shape(x.shape))


def _block(node: Node) -> int:
    return node.int_attr("block", 0)


def _blocked_input(node: Node, types: InTypes, index: int) -> TensorType:
    """Input `index`, which must be blocked in blocks of the node's `block`."""
    x = require(types, index, node)
    if x.rank < 4 or x.shape[-1] != _block(node):
        raise PycError("E009", f"{node.op} input {index} is {list(x.shape)}, not blocked in "
                       f"{_block(node)} channels", where=node.name)
    return x


@register
class Reorder(OpDef):
    """Between the plain layout and the blocked one (`to`: "blocked" or "plain")."""

    name = "Reorder"
    domain = "pyc"
    category = KERNEL
    dtypes = LAYOUT_DTYPES

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        to = str(node.attrs.get("to", ""))
        if to == "blocked":
            x = require(types, 0, node)
            try:
                return [TensorType(x.dtype, blocked_shape(x.shape, _block(node)))]
            except ValueError as error:
                raise PycError("E009", str(error), where=node.name) from None
        if to == "plain":
            x = _blocked_input(node, types, 0)
            return [TensorType(x.dtype, plain_shape(x.shape))]
        raise PycError("E009", f"pyc.Reorder to {to!r} (blocked or plain)", where=node.name)

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        return [to_blocked(x, _block(node)) if node.attrs["to"] == "blocked" else to_plain(x)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        blocked = graph.types[node.outputs[0] if node.attrs["to"] == "blocked" else node.inputs[0]]
        n, cb, c = blocked.shape[0], blocked.shape[1], blocked.shape[-1]
        return {"N": n, "CB": cb, "BL": c, "HW": blocked.numel // max(1, n * cb * c),
                "to_blocked": node.attrs["to"] == "blocked"}


def _logical_conv_shapes(node: Node, graph: Graph) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return plain_shape(graph.types[node.inputs[0]].shape), graph.types[node.inputs[1]].shape


@register
class ConvBlocked(OpDef):
    """A 2-D Conv of one group (Conv's attributes, plus `block`) on blocked tensors."""

    name = "ConvBlocked"
    domain = "pyc"
    category = KERNEL
    dtypes = LAYOUT_DTYPES

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x, w = _blocked_input(node, types, 0), require(types, 1, node)
        block = _block(node)
        logical = plain_shape(x.shape)
        if x.rank != 5 or w.rank != 4 or node.int_attr("group", 1) != 1 \
                or logical[1] != w.shape[1] or w.shape[0] % block:
            raise PycError("E009", f"{node.op}: input {list(x.shape)} and weight "
                           f"{list(w.shape)} are no blocked 2-D conv of one group in blocks of "
                           f"{block}", where=node.name)
        out = window_geometry(node, logical[2:], w.shape[2:])[3]
        return [TensorType(x.dtype, blocked_shape((logical[0], w.shape[0], *out), block))]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        x, w = _logical_conv_shapes(node, graph)
        return {**conv_params(node, x, w), "BL": _block(node)}

    def flops(self, node: Node, graph: Graph) -> int:
        return get("Conv").flops(node, graph)

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, w = to_plain(np.asarray(inputs[0])), np.asarray(inputs[1])
        bias = inputs[2] if len(inputs) > 2 else None
        strides, dilations, begins, out, _ = window_geometry(node, x.shape[2:], w.shape[2:])
        y = references.conv(x, w, bias, 1, strides, dilations, begins, out)
        return [to_blocked(y, _block(node))]


@register
class PoolBlocked(OpDef):
    """A 2-D MaxPool or AveragePool (`pool`; the ONNX op's attributes, plus `block`) on
    blocked tensors."""

    name = "PoolBlocked"
    domain = "pyc"
    category = KERNEL
    dtypes = LAYOUT_DTYPES

    def _pool(self, node: Node) -> Node:
        """The ONNX pool this one computes, on the logical tensors."""
        attrs = {k: v for k, v in node.attrs.items() if k not in ("pool", "block")}
        return Node(str(node.attrs["pool"]), node.name, node.inputs[:1], node.outputs[:1], attrs)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = _blocked_input(node, types, 0)
        if x.rank != 5 or node.attrs.get("pool") not in ("MaxPool", "AveragePool"):
            raise PycError("E009", f"{node.op} of {list(x.shape)} ({node.attrs.get('pool')})",
                           where=node.name)
        logical = TensorType(x.dtype, plain_shape(x.shape))
        (out,) = get(str(node.attrs["pool"])).infer(self._pool(node), [logical], [None])[:1]
        return [TensorType(x.dtype, blocked_shape(out.shape, _block(node)))]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        x = graph.types[node.inputs[0]]
        shadow = Graph("", [], [], [], {node.inputs[0]: TensorType(x.dtype, plain_shape(x.shape))},
                       {}, 0)
        return {**get(str(node.attrs["pool"])).kernel_params(self._pool(node), shadow),
                "BL": _block(node)}

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = to_plain(np.asarray(inputs[0]))
        (y,) = get(str(node.attrs["pool"])).evaluate(self._pool(node), [x])[:1]
        return [to_blocked(np.asarray(y), _block(node))]
