"""LRN: local response normalization across channels (AlexNet, GoogLeNet)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from .registry import KERNEL, InTypes, InValues, OpDef, register, require

# the in-place kernel's ring of (before + 1) x block inputs and its block of sums live on the
# stack: at most this many positions per block, and about this many bytes
LRN_RING_BLOCK = 128
LRN_STACK_BYTES = 8192


@register
class LRN(OpDef):
    """y = x / (bias + alpha / size * sum of x^2 over `size` neighbouring channels) ^ beta."""

    name = "LRN"
    category = KERNEL
    dtypes = (DType.F32, DType.F64)
    # a position's outputs read only that position's inputs: the kernel can write over its input
    # if it keeps the few overwritten channels a later window still reads (a ring per block of
    # positions); that copy costs a little, so only memory_first asks for it

    def window(self, node: Node) -> tuple[int, int]:
        """Channels before and after the centre that the window covers."""
        size = node.int_attr("size")
        return (size - 1) // 2, int(math.ceil((size - 1) / 2))

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if x.rank < 3:
            raise PycError("E009", "LRN needs an input of rank 3 or more", where=node.name)
        return [x]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        before, after = self.window(node)
        size = node.int_attr("size")
        alpha = node.float_attr("alpha", 1e-4)
        beta = node.float_attr("beta", 0.75)
        bias = node.float_attr("bias", 1.0)
        # the kernel's (and onnxruntime's) running sum in the element type: head added, tail
        # subtracted, so an inf that left the window leaves NaN behind as it does there
        scale = x.dtype.type(alpha / size)
        square = x * x
        total = np.full(x[:, 0].shape, bias, x.dtype)
        for j in range(min(after, x.shape[1] - 1) + 1):
            total = total + scale * square[:, j]
        out = np.empty_like(x)
        for c in range(x.shape[1]):
            if c > 0 and c + after < x.shape[1]:
                total = total + scale * square[:, c + after]
            if c - 1 - before >= 0:
                total = total + -scale * square[:, c - 1 - before]
            out[:, c] = x[:, c] * total ** x.dtype.type(-beta)
        return [out]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        shape = graph.types[node.inputs[0]].shape
        before, after = self.window(node)
        size = node.int_attr("size")
        # the sums of a block of positions are on the stack in both kernels
        return {"N": shape[0], "C": shape[1], "inner": math.prod(shape[2:]),
                "before": before, "after": after,
                "scale": node.float_attr("alpha", 1e-4) / size,
                "beta": node.float_attr("beta", 0.75),
                "bias": node.float_attr("bias", 1.0),
                "block": self.ring_block(before, math.prod(shape[2:]),
                                         graph.types[node.inputs[0]].dtype.itemsize)}

    @staticmethod
    def ring_block(before: int, inner: int, itemsize: int) -> int:
        """Positions per block of the in-place kernel: its ring and sums stay a few KiB."""
        return max(1, min(LRN_RING_BLOCK, inner, LRN_STACK_BYTES // ((before + 2) * itemsize)))
