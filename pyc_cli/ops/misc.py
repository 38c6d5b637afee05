"""Ops removed before lowering: Dropout (inference identity) and Constant (becomes a constant)."""

from __future__ import annotations

import numpy as np

from ..errors import PycError
from ..ir.graph import Node
from ..ir.types import MODEL_DTYPES, DType, TensorType
from .registry import SHAPE_ONLY, VIEW, InTypes, InValues, OpDef, register, require, require_value

ALL_DTYPES = MODEL_DTYPES


@register
class Dropout(OpDef):
    """Inference-mode Dropout is the identity; canonicalize removes it."""

    name = "Dropout"
    since = 7  # version 6 and older carry the is_test attribute
    category = VIEW
    dtypes = ALL_DTYPES
    static_inputs = (1, 2)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if len(node.inputs) > 2 and node.inputs[2]:
            training = bool(require_value(values, 2, node, "training_mode").reshape(-1)[0])
            ratio = float(require_value(values, 1, node, "ratio").reshape(-1)[0]) \
                if node.inputs[1] else 0.5
            if training and ratio != 0.0:
                raise PycError("E008", "Dropout in training mode (random masks) is not supported",
                               where=f"node {node.name!r}", hint="export the model in inference mode")
        mask = [TensorType(DType.BOOL, x.shape)] if len(node.outputs) > 1 else []
        return [x, *mask]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        return [x, np.ones(x.shape, bool)][: len(node.outputs)]


@register
class Constant(OpDef):
    """The importer turns Constant nodes into graph constants; this unit gives their value."""

    name = "Constant"
    category = SHAPE_ONLY
    dtypes = ALL_DTYPES

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        return [TensorType.of(self.evaluate(node, [])[0])]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
            if key in node.attrs:
                value = node.attrs[key]
                dtype = np.float32 if "float" in key else np.int64
                return [np.asarray(value, dtype=None if key == "value" else dtype)]
        kinds = sorted(node.attrs) or ["none"]
        raise PycError("E008", f"Constant with attribute(s) {kinds} is not supported (value, "
                       "value_float(s), value_int(s) are)", where=f"node {node.name!r}",
                       hint="store the value as a tensor attribute or an initializer")
