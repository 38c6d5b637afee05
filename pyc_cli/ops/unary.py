"""Unary elementwise math and activations; each lowers to the snippet of the same name."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.types import MODEL_DTYPES, DType
from .elementwise import NUMBERS, SIGNED_NUMBERS, ElementwiseOp
from .registry import register

_erf = np.vectorize(math.erf, otypes=[np.float64])


class Unary(ElementwiseOp):
    since = 6  # version 1 of most unary ops carries the legacy `consumed_inputs` attribute

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return self.fn(node, args[0])

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class AlphaUnary(Unary):
    """A unary op with float attributes that the snippet reads (alpha, beta, ...)."""

    defaults: ClassVar[dict[str, float]] = {}

    def params(self, node: Node) -> dict[str, float]:
        """ONNX float attributes are float32, defaults included (LeakyRelu's 0.01 is 0.01f):
        a float64 model computes with the float32 value, as onnxruntime does."""
        return {k: float(np.float32(node.attrs.get(k, v))) for k, v in self.defaults.items()}  # type: ignore[arg-type]

    def scalar_attrs(self, node: Node, graph: Graph) -> dict[str, float | int | str]:
        return dict(self.params(node))


class MathUnary(Unary):
    """A float-only op computed by one numpy function (the snippet calls the C math function)."""

    numpy_fn: ClassVar[np.ufunc]

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return type(self).numpy_fn(x)


@register
class Identity(Unary):
    name = "Identity"
    since = 1
    dtypes = MODEL_DTYPES

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x.copy()


@register
class Relu(Unary):
    name = "Relu"
    dtypes = SIGNED_NUMBERS

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0)


@register
class Neg(Unary):
    name = "Neg"
    dtypes = SIGNED_NUMBERS

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return -x


@register
class Abs(Unary):
    name = "Abs"
    dtypes = NUMBERS

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.abs(x)


@register
class Sign(Unary):
    name = "Sign"
    since = 9
    dtypes = NUMBERS

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.sign(x)


@register
class Reciprocal(Unary):
    name = "Reciprocal"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return 1 / x


@register
class Sigmoid(Unary):
    name = "Sigmoid"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-x))


@register
class Erf(Unary):
    name = "Erf"
    since = 9

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return _erf(x)


def _math_unary(op: str, ufunc: np.ufunc, first: int = 6) -> type[MathUnary]:
    """Register one float op whose snippet is a single C math call (Exp, Sin, Floor, ...)."""
    cls = type(op, (MathUnary,), {"name": op, "since": first, "numpy_fn": ufunc,
                                  "__doc__": f"{op}: numpy.{ufunc.__name__} per element."})
    return register(cls)  # type: ignore[return-value]


for _op, _fn, _since in (
    ("Sqrt", np.sqrt, 6), ("Exp", np.exp, 6), ("Log", np.log, 6), ("Tanh", np.tanh, 6),
    ("Floor", np.floor, 6), ("Ceil", np.ceil, 6), ("Round", np.round, 11),
    ("Sin", np.sin, 7), ("Cos", np.cos, 7), ("Tan", np.tan, 7), ("Asin", np.arcsin, 7),
    ("Acos", np.arccos, 7), ("Atan", np.arctan, 7), ("Sinh", np.sinh, 9), ("Cosh", np.cosh, 9),
    ("Asinh", np.arcsinh, 9), ("Acosh", np.arccosh, 9), ("Atanh", np.arctanh, 9),
):
    _math_unary(_op, _fn, _since)


@register
class Softsign(Unary):
    name = "Softsign"
    since = 1

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x / (1 + np.abs(x))


@register
class Softplus(Unary):
    name = "Softplus"
    since = 1

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        # onnxruntime's form: no overflow for large x (Softplus(3e38) = 3e38, not inf)
        with np.errstate(over="ignore"):
            return np.where(x > 0, x + np.log1p(np.exp(-np.abs(x))), np.log1p(np.exp(np.minimum(x, 0))))


@register
class Mish(Unary):
    name = "Mish"
    since = 18

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x * np.tanh(np.log1p(np.exp(x)))


@register
class IsNaN(Unary):
    name = "IsNaN"
    since = 9

    def out_dtype(self, node: Node, dtypes: list[DType]) -> DType:
        return DType.BOOL

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.isnan(x)


@register
class IsInf(Unary):
    name = "IsInf"
    since = 10

    def out_dtype(self, node: Node, dtypes: list[DType]) -> DType:
        return DType.BOOL

    def scalar_attrs(self, node: Node, graph: Graph) -> dict[str, float | int | str]:
        return {"negative": node.int_attr("detect_negative", 1),
                "positive": node.int_attr("detect_positive", 1)}

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        attrs = self.scalar_attrs(node, None)  # type: ignore[arg-type]
        return (np.isposinf(x) & bool(attrs["positive"])) | (np.isneginf(x) & bool(attrs["negative"]))


@register
class LeakyRelu(AlphaUnary):
    name = "LeakyRelu"
    defaults = {"alpha": 0.01}

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x, x * self.params(node)["alpha"])


@register
class Elu(AlphaUnary):
    name = "Elu"
    defaults = {"alpha": 1.0}

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.where(x < 0, self.params(node)["alpha"] * (np.exp(x) - 1), x)


@register
class Celu(AlphaUnary):
    name = "Celu"
    since = 12
    defaults = {"alpha": 1.0}

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        alpha = self.params(node)["alpha"]
        return np.maximum(x, 0) + np.minimum(0, alpha * (np.exp(x / alpha) - 1))


@register
class Selu(AlphaUnary):
    name = "Selu"
    defaults = {"alpha": 1.67326319217681884765625, "gamma": 1.05070102519989013671875}

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        p = self.params(node)
        return np.where(x <= 0, p["gamma"] * p["alpha"] * (np.exp(x) - 1), p["gamma"] * x)


@register
class ThresholdedRelu(AlphaUnary):
    name = "ThresholdedRelu"
    since = 10
    defaults = {"alpha": 1.0}

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.where(x > self.params(node)["alpha"], x, 0)


@register
class Swish(AlphaUnary):
    name = "Swish"
    since = 24
    defaults = {"alpha": 1.0}

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x / (1 + np.exp(-self.params(node)["alpha"] * x))


@register
class HardSigmoid(AlphaUnary):
    name = "HardSigmoid"
    defaults = {"alpha": 0.2, "beta": 0.5}

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        p = self.params(node)
        return np.clip(p["alpha"] * x + p["beta"], 0, 1)


@register
class HardSwish(Unary):
    name = "HardSwish"
    since = 14

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        # ONNX defines it as x * HardSigmoid(x, alpha=1/6, beta=0.5): float64 scales by the
        # float32 attribute 1/6, as onnxruntime does (fuzz seed 2147129985)
        scaled = x * float(np.float32(1 / 6)) if x.dtype == np.float64 else x / 6
        return x * np.clip(scaled + 0.5, 0, 1)


@register
class Shrink(AlphaUnary):
    name = "Shrink"
    since = 9
    defaults = {"lambd": 0.5, "bias": 0.0}

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        p = self.params(node)
        return np.where(x < -p["lambd"], x + p["bias"], np.where(x > p["lambd"], x - p["bias"], 0))


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
