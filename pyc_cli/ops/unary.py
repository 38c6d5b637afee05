"""Unary elementwise math and activations; each lowers to the snippet of the same name."""

from __future__ import annotations

import math

import numpy as np

from ..ir.graph import Graph, Node
from .elementwise import NUMBERS, ElementwiseOp
from .registry import register

_erf = np.vectorize(math.erf, otypes=[np.float64])


class Unary(ElementwiseOp):
    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return self.fn(node, args[0])

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class AlphaUnary(Unary):
    """A unary op with float attributes that the snippet reads (alpha, beta, ...)."""

    defaults: dict[str, float] = {}

    def params(self, node: Node) -> dict[str, float]:
        return {k: float(node.attrs.get(k, v)) for k, v in self.defaults.items()}  # type: ignore[arg-type]

    def scalar_attrs(self, node: Node, graph: Graph) -> dict[str, float | int | str]:
        return dict(self.params(node))


@register
class Identity(Unary):
    name = "Identity"
    dtypes = NUMBERS

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x.copy()


@register
class Relu(Unary):
    name = "Relu"
    dtypes = NUMBERS

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0)


@register
class Neg(Unary):
    name = "Neg"
    dtypes = NUMBERS

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return -x


@register
class Abs(Unary):
    name = "Abs"
    dtypes = NUMBERS

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.abs(x)


@register
class Sqrt(Unary):
    name = "Sqrt"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.sqrt(x)


@register
class Reciprocal(Unary):
    name = "Reciprocal"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return 1 / x


@register
class Exp(Unary):
    name = "Exp"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.exp(x)


@register
class Log(Unary):
    name = "Log"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.log(x)


@register
class Tanh(Unary):
    name = "Tanh"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)


@register
class Erf(Unary):
    name = "Erf"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return _erf(x)


@register
class Sigmoid(Unary):
    name = "Sigmoid"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-x))


@register
class LeakyRelu(AlphaUnary):
    name = "LeakyRelu"
    defaults = {"alpha": 0.01}

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x, x * self.params(node)["alpha"])


@register
class Gelu(Unary):
    name = "Gelu"
    since = 20

    def scalar_attrs(self, node: Node, graph: Graph) -> dict[str, float | int | str]:
        return {"approximate": str(node.attrs.get("approximate", "none"))}

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        if node.attrs.get("approximate", "none") == "tanh":
            return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
