"""Bitwise integer ops (scalar snippets): BitwiseAnd/Or/Xor/Not and BitShift."""

from __future__ import annotations

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from .binary import Binary
from .elementwise import INTS, ElementwiseOp
from .registry import register


class Bitwise(Binary):
    since = 18
    dtypes = INTS


@register
class BitwiseAnd(Bitwise):
    name = "BitwiseAnd"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.bitwise_and(a, b)


@register
class BitwiseOr(Bitwise):
    name = "BitwiseOr"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.bitwise_or(a, b)


@register
class BitwiseXor(Bitwise):
    name = "BitwiseXor"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.bitwise_xor(a, b)


@register
class BitwiseNot(ElementwiseOp):
    name = "BitwiseNot"
    since = 18
    dtypes = INTS

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return np.invert(args[0])


@register
class BitShift(Binary):
    """Shifts by amounts outside [0, bits) give 0 (or -1 for a negative value shifted right);
    right shifts of signed values are arithmetic, left shifts wrap as unsigned ones."""

    name = "BitShift"
    since = 11
    dtypes = INTS

    def left(self, node: Node) -> bool:
        direction = str(node.attrs.get("direction", ""))
        if direction not in ("LEFT", "RIGHT"):
            raise PycError("E008", f"BitShift direction {direction!r} is not supported",
                           where=node.name)
        return direction == "LEFT"

    def scalar_attrs(self, node: Node, graph: Graph) -> dict[str, float | int | str]:
        bits = graph.types[node.inputs[0]].dtype.itemsize * 8
        return {"left": int(self.left(node)), "bits": bits, "utype": f"uint{bits}_t"}

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        a, b = np.broadcast_arrays(args[0], args[1].astype(args[0].dtype))
        outside = (b < 0) | (b >= a.dtype.itemsize * 8)
        safe = np.where(outside, 0, b)
        if self.left(node):
            unsigned = np.dtype(f"u{a.dtype.itemsize}")
            shifted = np.left_shift(a.view(unsigned), safe.astype(unsigned)).view(a.dtype)
            return np.where(outside, 0, shifted)
        return np.where(outside, np.where(a < 0, -1, 0), np.right_shift(a, safe)).astype(a.dtype)
