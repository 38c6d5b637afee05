"""pyc.Attention: scaled-dot-product attention as one op, made by the fuse_attention pass.

    Y = Softmax(score(Q @ Kt), last axis) @ V
    Q [..., S, D], Kt [..., D, T], V [..., T, E] (the same leading dims), Y [..., S, E]

`score` is the node's epilogue program (the scale and additive mask the score MatMul had fused,
its operands broadcast to the scores [..., S, T]); without one, the raw scores. A kernel for it
can compute each query row's scores, their softmax and its row of Y without ever writing the
[..., S, T] score matrix.

Operand layouts (`q_perm`, `kt_perm`, `v_perm`, `y_perm`; absent: as above): where the heads'
Transposes were folded into the node (fuse_attention), an input is stored as the Transpose's
input X and the operand is Transpose(X, perm) (Q [B, H, S, D] read from X [B, S, H, D] with perm
[0, 2, 1, 3]); the output is stored as Transpose(Y, y_perm). A kernel reads them through the
strides `operand_strides` gives; the shapes above are the operands' (logical) ones.
`q_select`, `kt_select`, `v_select` ([dim, index]) read an input as its part at `index` of the
stored tensor's dim `dim`, before the permutation (Q, K and V as the three parts of one
projection GEMM's [B, S, 3, H, D] result): `operand_offsets` gives where each part starts.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from .internal import run_program
from .movement import contiguous_strides
from .registry import KERNEL, InTypes, InValues, OpDef, fused_inputs, register, require

PERMS = ("q_perm", "kt_perm", "v_perm", "y_perm")  # Q, Kt, V, then Y's


def perm_of(node: Node, k: int) -> list[int] | None:
    """The layout permutation of operand k (0-2 the inputs Q, Kt, V; 3 the output), or None."""
    value = node.attrs.get(PERMS[k])
    return [int(x) for x in value] if value is not None else None  # type: ignore[union-attr]


SELECTS = ("q_select", "kt_select", "v_select")


def select_of(node: Node, k: int) -> tuple[int, int] | None:
    """Input k's (dim, index) part of its stored tensor, or None (the whole tensor)."""
    value = node.attrs.get(SELECTS[k]) if k < 3 else None
    return (int(value[0]), int(value[1])) if value is not None else None  # type: ignore[index]


def folded(node: Node) -> bool:
    """Whether any operand is read or written through a layout permutation or a part."""
    return any(key in node.attrs for key in (*PERMS, *SELECTS))


def _selected(shape: tuple, k: int, node: Node) -> tuple:  # type: ignore[type-arg]
    part = select_of(node, k)
    if part is None:
        return shape
    dim, index = part
    if not 0 <= dim < len(shape) or not 0 <= index < shape[dim]:
        raise PycError("E009", f"pyc.Attention {SELECTS[k]} {list(part)} is outside the "
                       f"operand's shape {list(shape)}", where=node.name)
    return shape[:dim] + shape[dim + 1:]


def _permuted(shape: tuple, perm: list[int] | None, node: Node, what: str) -> tuple:  # type: ignore[type-arg]
    if perm is None:
        return shape
    if sorted(perm) != list(range(len(shape))):
        raise PycError("E009", f"pyc.Attention {what} {perm} is not a permutation of "
                       f"{len(shape)} dims", where=node.name)
    return tuple(shape[p] for p in perm)


def _inverse(perm: list[int]) -> list[int]:
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return inverse


def logical_shapes(node: Node, shapes: list[tuple]) -> list[tuple]:  # type: ignore[type-arg]
    """Q, Kt, V's shapes as the attention sees them, from the stored inputs' `shapes`."""
    return [_permuted(_selected(tuple(shapes[k]), k, node), perm_of(node, k), node, PERMS[k])
            for k in range(3)]


def operand_strides(node: Node, graph: Graph) -> list[list[int]]:
    """Element strides, in its stored tensor, of each logical dim of Q, Kt, V and Y."""
    strides = []
    for k, value in enumerate((*node.inputs[:3], node.outputs[0])):
        stored = contiguous_strides(graph.types[value].shape)
        part = select_of(node, k)
        if part is not None:  # the selected dim is gone from the operand
            stored = stored[:part[0]] + stored[part[0] + 1:]
        perm = perm_of(node, k)
        if perm is None:
            strides.append(stored)
        elif k < 3:  # the operand is Transpose(stored, perm): its dim i is stored dim perm[i]
            strides.append([stored[p] for p in perm])
        else:  # stored = Transpose(Y, perm): Y's dim j is stored dim inverse[j]
            strides.append([stored[p] for p in _inverse(perm)])
    return strides


def operand_offsets(node: Node, graph: Graph) -> list[int]:
    """Where, in elements of its stored tensor, each of Q, Kt, V starts (0 but for a part)."""
    offsets = []
    for k in range(3):
        part = select_of(node, k)
        stored = contiguous_strides(graph.types[node.inputs[k]].shape)
        offsets.append(0 if part is None else part[1] * stored[part[0]])
    return offsets


@register
class Attention(OpDef):
    name = "Attention"
    domain = "pyc"
    category = KERNEL
    dtypes = (DType.F32,)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        stored = [require(types, k, node) for k in range(3)]
        q, kt, v = logical_shapes(node, [t.shape for t in stored])
        batch = q[:-2]
        if kt[:-2] != batch or v[:-2] != batch or len(q) < 2 or \
                q[-1] != kt[-2] or kt[-1] != v[-2]:
            raise PycError("E009", f"pyc.Attention operands do not fit: Q {list(q)}, "
                           f"Kt {list(kt)}, V {list(v)}", where=node.name)
        y = (*batch, q[-2], v[-1])
        return [TensorType(stored[0].dtype, _permuted(y, perm_of(node, 3), node, PERMS[3]))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        q, kt, v = (self._operand(node, k, np.asarray(inputs[k])) for k in range(3))
        scores = np.matmul(q, kt)
        if node.ann.epilogue:
            first = len(fused_inputs(node)[0])
            scores = run_program(node.ann.epilogue, list(inputs[first:]), scores)
        shifted = scores - scores.max(axis=-1, keepdims=True)
        weights = np.exp(shifted)
        weights /= weights.sum(axis=-1, keepdims=True)
        y = np.matmul(weights.astype(q.dtype), v)
        perm = perm_of(node, 3)
        return [y if perm is None else np.ascontiguousarray(np.transpose(y, perm))]

    @staticmethod
    def _operand(node: Node, k: int, x: np.ndarray) -> np.ndarray:
        part, perm = select_of(node, k), perm_of(node, k)
        if part is not None:
            x = np.take(x, part[1], axis=part[0])
        return x if perm is None else np.transpose(x, perm)

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        q, kt, v = logical_shapes(node, [graph.types[node.inputs[k]].shape for k in range(3)])
        return {"batch": list(q[:-2]), "S": q[-2], "D": q[-1], "T": kt[-1], "E": v[-1]}

    def flops(self, node: Node, graph: Graph) -> int:
        q, kt, v = logical_shapes(node, [graph.types[node.inputs[k]].shape for k in range(3)])
        rows = math.prod(q[:-1])
        return 2 * rows * kt[-1] * (q[-1] + v[-1])
