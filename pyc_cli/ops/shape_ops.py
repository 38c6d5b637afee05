"""Ops whose result depends only on static shapes: always folded to constants."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Node
from ..ir.types import DType, TensorType
from .registry import SHAPE_ONLY, InTypes, InValues, OpDef, register, require, require_value


@register
class Shape(OpDef):
    name = "Shape"
    category = SHAPE_ONLY
    dtypes = tuple(DType)

    def _slice(self, node: Node, shape: tuple[int, ...]) -> np.ndarray:
        rank = len(shape)
        start = int(node.attrs.get("start", 0))  # type: ignore[arg-type]
        end = int(node.attrs.get("end", rank))  # type: ignore[arg-type]
        return np.array(shape[start:end], dtype=np.int64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        shape = require(types, 0, node).shape
        return [TensorType(DType.I64, (len(self._slice(node, shape)),))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [self._slice(node, np.asarray(inputs[0]).shape)]

    def shape_value(self, node: Node, input_type: TensorType) -> np.ndarray:
        return self._slice(node, input_type.shape)


@register
class ConstantOfShape(OpDef):
    name = "ConstantOfShape"
    since = 9
    category = SHAPE_ONLY
    dtypes = tuple(DType)
    static_inputs = (0,)

    def _fill(self, node: Node) -> np.ndarray:
        value = node.attrs.get("value")
        return np.asarray(value).reshape(-1)[:1] if value is not None else np.zeros(1, np.float32)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        shape = tuple(int(d) for d in require_value(values, 0, node, "shape"))
        return [TensorType(DType.from_numpy(self._fill(node).dtype), shape)]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        shape = tuple(int(d) for d in np.asarray(inputs[0]))
        fill = self._fill(node)
        return [np.full(shape, fill[0], dtype=fill.dtype)]
