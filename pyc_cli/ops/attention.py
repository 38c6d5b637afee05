"""pyc.Attention: scaled-dot-product attention as one op, made by the fuse_attention pass.

    Y = Softmax(score(Q @ Kt), last axis) @ V
    Q [..., S, D], Kt [..., D, T], V [..., T, E] (the same leading dims), Y [..., S, E]

`score` is the node's epilogue program (the scale and additive mask the score MatMul had fused,
its operands broadcast to the scores [..., S, T]); without one, the raw scores. A kernel for it
can compute each query row's scores, their softmax and its row of Y without ever writing the
[..., S, T] score matrix.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from .internal import run_program
from .registry import KERNEL, InTypes, InValues, OpDef, fused_inputs, register, require


@register
class Attention(OpDef):
    name = "Attention"
    domain = "pyc"
    category = KERNEL
    dtypes = (DType.F32,)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        q, kt, v = (require(types, k, node) for k in range(3))
        batch = q.shape[:-2]
        if kt.shape[:-2] != batch or v.shape[:-2] != batch or q.rank < 2 or \
                q.shape[-1] != kt.shape[-2] or kt.shape[-1] != v.shape[-2]:
            raise PycError("E009", f"pyc.Attention operands do not fit: Q {list(q.shape)}, "
                           f"Kt {list(kt.shape)}, V {list(v.shape)}", where=node.name)
        return [TensorType(q.dtype, (*batch, q.shape[-2], v.shape[-1]))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        q, kt, v = (np.asarray(inputs[k]) for k in range(3))
        scores = np.matmul(q, kt)
        if node.ann.epilogue:
            first = len(fused_inputs(node)[0])
            scores = run_program(node.ann.epilogue, list(inputs[first:]), scores)
        shifted = scores - scores.max(axis=-1, keepdims=True)
        weights = np.exp(shifted)
        weights /= weights.sum(axis=-1, keepdims=True)
        return [np.matmul(weights.astype(q.dtype), v)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        q, kt, v = (graph.types[node.inputs[k]] for k in range(3))
        return {"batch": list(q.shape[:-2]), "S": q.shape[-2], "D": q.shape[-1],
                "T": kt.shape[-1], "E": v.shape[-1]}

    def flops(self, node: Node, graph: Graph) -> int:
        q, kt, v = (graph.types[node.inputs[k]] for k in range(3))
        rows = math.prod(q.shape[:-1])
        return 2 * rows * kt.shape[-1] * (q.shape[-1] + v.shape[-1])
