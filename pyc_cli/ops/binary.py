"""Binary elementwise arithmetic and comparisons (numpy broadcasting)."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Node
from ..ir.types import DType
from .elementwise import NUMBERS, ElementwiseOp
from .registry import register


class Binary(ElementwiseOp):
    dtypes = NUMBERS

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return self.fn(args[0], args[1])

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Comparison(Binary):
    def out_dtype(self, node: Node, dtypes: list[DType]) -> DType:
        return DType.BOOL


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
        if np.issubdtype(a.dtype, np.integer):
            return np.trunc(a / b).astype(a.dtype)  # ONNX integer division truncates
        return a / b


@register
class Pow(Binary):
    name = "Pow"
    dtypes = (DType.F32, DType.F64)

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.power(a, b.astype(a.dtype))


@register
class Max(Binary):
    name = "Max"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum(a, b)


@register
class Min(Binary):
    name = "Min"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.minimum(a, b)


@register
class Equal(Comparison):
    name = "Equal"
    dtypes = NUMBERS + (DType.BOOL,)

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a == b


@register
class Less(Comparison):
    name = "Less"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a < b


@register
class Greater(Comparison):
    name = "Greater"

    def fn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a > b


@register
class Not(ElementwiseOp):
    name = "Not"
    dtypes = (DType.BOOL,)

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return np.logical_not(args[0])
