"""Binary elementwise arithmetic, comparisons and logic (numpy broadcasting), and the variadic
Max/Min/Sum/Mean (canonicalize splits them into chains of two-operand nodes)."""

from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.types import DType
from .elementwise import EW_FLOATS, NUMBERS, ElementwiseOp
from .registry import register

BOOL = (DType.BOOL,)


class Binary(ElementwiseOp):
    since = 7  # before 7, binary ops broadcast only under a `broadcast` attribute
    dtypes = NUMBERS
    same_dtype_inputs: ClassVar[bool] = True  # ONNX types both operands T (Pow: T, T1)

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return self.fn(args[0], args[1])

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Comparison(Binary):
    def out_dtype(self, node: Node, dtypes: list[DType]) -> DType:
        return DType.BOOL


class Variadic(ElementwiseOp):
    """N inputs folded pairwise; canonicalize rewrites N != 2 into two-operand nodes."""

    variadic: ClassVar[bool] = True
    same_dtype_inputs: ClassVar[bool] = True
    since = 6
    dtypes = NUMBERS

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return functools.reduce(self.fn, args)

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register
class Add(Binary):
    name = "Add"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b


@register
class Sub(Binary):
    name = "Sub"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b


@register
class Mul(Binary):
    name = "Mul"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b


@register
class Div(Binary):
    name = "Div"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if np.issubdtype(a.dtype, np.unsignedinteger):
            return a // b
        if np.issubdtype(a.dtype, np.integer):
            quotient = np.abs(a.astype(np.int64)) // np.abs(b.astype(np.int64))
            return np.where((a < 0) != (b < 0), -quotient, quotient)  # C division truncates
        return a / b


@register
class Pow(Binary):
    """Base and exponent may differ in type (T, T1); the result has the base's type."""

    name = "Pow"
    same_dtype_inputs = False
    dtypes = EW_FLOATS + (DType.I32, DType.I64)

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)


@register
class PRelu(Binary):
    name = "PRelu"
    dtypes = EW_FLOATS + (DType.I32, DType.I64, DType.U32, DType.U64)

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(a < 0, a * b, a)


@register
class Mod(Binary):
    """The result takes the divisor's sign (numpy's mod) unless fmod=1 (C's fmod / %, the
    dividend's sign)."""

    name = "Mod"
    since = 10

    def scalar_attrs(self, node: Node, graph: Graph) -> dict[str, float | int | str]:
        return {"fmod": node.int_attr("fmod", 0)}

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        if node.int_attr("fmod", 0):
            return np.fmod(args[0], args[1])
        return np.mod(args[0], args[1])


@register
class Max(Variadic):
    name = "Max"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum(a, b)


@register
class Min(Variadic):
    name = "Min"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.minimum(a, b)


@register
class Sum(Variadic):
    name = "Sum"
    dtypes = EW_FLOATS

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b


@register
class Mean(Variadic):
    """Canonicalize rewrites Mean into a Sum chain and one division."""

    name = "Mean"
    dtypes = EW_FLOATS

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return functools.reduce(np.add, args) / len(args)


@register
class Equal(Comparison):
    name = "Equal"
    dtypes = NUMBERS + BOOL

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a == b


@register
class Less(Comparison):
    name = "Less"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a < b


@register
class LessOrEqual(Comparison):
    name = "LessOrEqual"
    since = 12

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a <= b


@register
class Greater(Comparison):
    name = "Greater"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a > b


@register
class GreaterOrEqual(Comparison):
    name = "GreaterOrEqual"
    since = 12

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a >= b


@register
class And(Binary):
    name = "And"
    dtypes = BOOL

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.logical_and(a, b)


@register
class Or(Binary):
    name = "Or"
    dtypes = BOOL

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.logical_or(a, b)


@register
class Xor(Binary):
    name = "Xor"
    dtypes = BOOL

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.logical_xor(a, b)


@register
class Not(ElementwiseOp):
    name = "Not"
    dtypes = BOOL

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return np.logical_not(args[0])
