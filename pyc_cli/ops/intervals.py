"""Bounds of values computed at run time from graph inputs (issue #15, point 2).

A size that depends on an input's *values* (a Range whose limit is an input, Pad's pads computed
from an input) is a computed dim, and the arena is sized for its upper bound. Where the op's
semantics give no bound (Range, Pad), it comes from the values the inputs may hold, which the
user declares (`pyc build --input-values size=0..64`, `Graph.value_bounds`), carried through the
ops that compute the operand as element-wise intervals: a value's `Interval` holds the lowest
and the highest value each element may take (arrays of the value's shape, or broadcastable to
it). Known values are intervals of width 0; a Shape of a tensor with symbolic dims gives each
dim's bounds. Only the ops below are followed; any other gives no interval (the size then has no
bound and the build refuses it, naming the node and asking for declared values).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..ir.graph import Node
from ..ir.symbolic import Dim
from ..ir.types import DType

Array = np.ndarray


@dataclass(frozen=True)
class Interval:
    """Per element: lo <= value <= hi (float64 arrays of one shape)."""

    lo: Array
    hi: Array

    @classmethod
    def exact(cls, value: Array) -> Interval | None:
        """A known value: Dims (object arrays) by their bounds; None for non-numbers."""
        value = np.asarray(value)
        if value.dtype == object:
            lo = np.vectorize(lambda v: v.bounds()[0] if isinstance(v, Dim) else int(v),
                              otypes=[np.float64])(value) if value.size else value.astype(np.float64)
            hi = np.vectorize(lambda v: v.bounds()[1] if isinstance(v, Dim) else int(v),
                              otypes=[np.float64])(value) if value.size else value.astype(np.float64)
            return cls(lo, hi)
        if value.dtype.kind not in "biuf":
            return None
        as_float = value.astype(np.float64)
        return cls(as_float, as_float)

    def max(self) -> float:
        return float(np.max(self.hi)) if self.hi.size else 0.0

    def min(self) -> float:
        return float(np.min(self.lo)) if self.lo.size else 0.0


def _monotone(node: Node, args: list[Interval | None], run: Callable[[Node, list], list]) -> Interval | None:
    """An op that never decreases when any operand grows: its lowest and highest outputs."""
    if any(a is None for a in args):
        return None
    lo = run(node, [a.lo for a in args])  # type: ignore[union-attr]
    hi = run(node, [a.hi for a in args])  # type: ignore[union-attr]
    return Interval(np.asarray(lo[0], np.float64), np.asarray(hi[0], np.float64))


# ops whose every output element grows with every operand element (movement ops included)
_MONOTONE = {"Add", "Max", "Min", "Ceil", "Floor", "Relu", "Identity", "Concat", "Flatten",
             "Transpose", "Round"}
# ops that move elements of operand 0 only; the other operands are known shape parameters
_MOVES_FIRST = {"Gather", "Slice", "Squeeze", "Unsqueeze", "Reshape", "Expand", "Split"}


def propagate(node: Node, args: list[Interval | None], values: list[Array | None],
              evaluate: Callable[[Node, list], list]) -> list[Interval | None]:
    """The intervals of `node`'s outputs from its operands' (`values`: the known ones, which
    the movement ops need for their indices and shapes); None where not followed."""
    none: list[Interval | None] = [None] * len(node.outputs)
    try:
        with np.errstate(all="ignore"):
            return _propagate(node, args, values, evaluate) or none
    except Exception:  # a reference refusing float arrays, odd shapes: simply not followed
        return none


def _propagate(node: Node, args: list[Interval | None], values: list[Array | None],
               evaluate: Callable[[Node, list], list]) -> list[Interval | None] | None:
    op = node.op
    if op == "Cast":
        target = _cast_type(node)
        a = args[0]
        if a is None:
            return None
        if target is not None and target.kind in "iu":
            info = np.iinfo(target)
            if a.min() < info.min or a.max() > info.max:
                return None  # the cast would wrap: no bound
            return [Interval(np.trunc(a.lo), np.trunc(a.hi))]  # truncation is monotone
        return [a]  # to float (exact enough for sizes), or to bool (within 0..1 anyway)
    if op in _MOVES_FIRST:
        a = args[0]
        if a is None or any(v is None for v, name in zip(values[1:], node.inputs[1:]) if name):
            return None
        lo = evaluate(node, [a.lo, *values[1:]])
        hi = evaluate(node, [a.hi, *values[1:]])
        return [Interval(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in zip(lo, hi)]
    if op in _MONOTONE:
        return [_monotone(node, args, evaluate)]
    if op == "Sub" and None not in args:
        a, b = args
        return [Interval(a.lo - b.hi, a.hi - b.lo)]  # type: ignore[union-attr]
    if op == "Neg" and args[0] is not None:
        return [Interval(-args[0].hi, -args[0].lo)]
    if op == "Mul" and None not in args:
        a, b = args
        products = [x * y for x in (a.lo, a.hi) for y in (b.lo, b.hi)]  # type: ignore[union-attr]
        return [Interval(np.minimum.reduce(products), np.maximum.reduce(products))]
    if op == "Div" and None not in args and float(np.min(args[1].lo)) > 0:  # type: ignore[union-attr]
        a, b = args
        # a positive divisor: the quotient grows with a; its extremes at b's ends
        quotients = [x / y for x in (a.lo, a.hi) for y in (b.lo, b.hi)]  # type: ignore[union-attr]
        lo, hi = np.minimum.reduce(quotients), np.maximum.reduce(quotients)
        # whole numbers around them: integer Div truncates (a safe outer bound for floats too)
        return [Interval(np.floor(lo), np.ceil(hi))]
    return None


def _cast_type(node: Node) -> np.dtype | None:
    """A Cast's target element type (None: not one numpy has)."""
    to = node.attrs.get("to")
    try:
        return np.dtype(DType.from_onnx(int(to)).numpy)  # type: ignore[arg-type, union-attr]
    except Exception:  # noqa: BLE001  (an unknown or missing target type)
        return None


def input_intervals(bounds: Mapping[str, tuple[float, float]], shapes: Mapping[str, tuple[int, ...]]
                    ) -> dict[str, Interval]:
    """The declared values of graph inputs, as intervals of each input's shape."""
    found = {}
    for name, (lo, hi) in bounds.items():
        if name in shapes:  # a symbolic shape: one interval for every element (0-d)
            shape = () if any(isinstance(d, Dim) for d in shapes[name]) else shapes[name]
            found[name] = Interval(np.full(shape, float(lo)), np.full(shape, float(hi)))
    return found
