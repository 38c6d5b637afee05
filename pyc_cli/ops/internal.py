"""PyC-internal ops produced by passes: fused elementwise loops and explicit copies."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from .registry import KERNEL, InTypes, InValues, OpDef, ints_attr, register, require

ALL_DTYPES = tuple(DType)


@register
class FusedElementwise(OpDef):
    """One loop over the output computing a scalar program per element (see ir/ewprogram.py)."""

    name = "Elementwise"
    domain = "pyc"
    category = KERNEL
    dtypes = ALL_DTYPES

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        return [TensorType(node.ann.program[-1].dtype, tuple(ints_attr(node, "shape")))]

    def flops(self, node: Node, graph: Graph) -> int:
        count = len(node.ann.program)
        return count * graph.types[node.outputs[0]].numel


@register
class Copy(OpDef):
    """Materialize a value into its own buffer (e.g. a graph output that is a view or an input)."""

    name = "Copy"
    domain = "pyc"
    category = KERNEL
    dtypes = ALL_DTYPES

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        source = require(types, 0, node)
        shape = tuple(ints_attr(node, "shape")) if "shape" in node.attrs else source.shape
        return [TensorType(source.dtype, shape)]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.array(inputs[0])]

    def flops(self, node: Node, graph: Graph) -> int:
        return 0
