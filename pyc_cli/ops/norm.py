"""Softmax (both opset semantics) and LayerNormalization: row-wise kernels over [outer, row, inner]."""

from __future__ import annotations

import math

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from . import references
from .registry import (
    KERNEL,
    InTypes,
    InValues,
    OpDef,
    normalize_axis,
    register,
    require,
)


class RowwiseSoftmax(OpDef):
    """Softmax-like ops over one axis (Softmax-13+) or over the input coerced to 2-D at `axis`
    (versions before 13); the template's `kind` picks the row computation."""

    category = KERNEL
    dtypes = (DType.F32, DType.F64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if x.rank == 0:
            raise PycError("E009", f"{node.op} needs an input of rank 1 or more, got a scalar",
                           where=node.name)
        return [x]

    def geometry(self, shape: tuple[int, ...], node: Node, opset: int) -> tuple[int, int, int]:
        """(outer, row, inner): before opset 13 the input is coerced to 2-D at `axis`."""
        default = 1 if opset < 13 else -1
        axis = normalize_axis(node.int_attr("axis", default), len(shape), node)
        if opset < 13:
            return math.prod(shape[:axis]), math.prod(shape[axis:]), 1
        return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """The node does not carry the model's opset: evaluate only where both semantics (the
        input coerced to 2-D before opset 13, one axis from 13) give the same rows."""
        x = np.asarray(inputs[0])
        legacy, current = self.geometry(x.shape, node, 12), self.geometry(x.shape, node, 13)
        if legacy != current:
            raise NotImplementedError(f"{node.op} here depends on the opset")
        return self.evaluate_at(node, inputs, 13)

    @references.f16_via_f32
    def evaluate_at(self, node: Node, inputs: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
        """The reference under the semantics of `opset`."""
        x = np.asarray(inputs[0])
        return [references.rowwise(x, self.geometry(x.shape, node, opset), node.op)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        outer, row, inner = self.geometry(graph.types[node.inputs[0]].shape, node, graph.opset)
        return {"outer": outer, "row": row, "inner": inner, "kind": node.op}


@register
class Softmax(RowwiseSoftmax):
    name = "Softmax"


@register
class LogSoftmax(RowwiseSoftmax):
    name = "LogSoftmax"


@register
class Hardmax(RowwiseSoftmax):
    name = "Hardmax"


@register
class LayerNormalization(OpDef):
    name = "LayerNormalization"
    since = 17
    category = KERNEL
    dtypes = (DType.F32, DType.F64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if node.int_attr("stash_type", 1) != 1:
            raise PycError("E008", "LayerNormalization with stash_type other than 1 (float) is "
                           "not supported", where=node.name)
        axis = normalize_axis(node.int_attr("axis", -1), x.rank, node)
        stats = TensorType(DType.F32, x.shape[:axis] + (1,) * (x.rank - axis))
        return [x] + [stats for _ in node.outputs[1:3]]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        shape = graph.types[node.inputs[0]].shape
        axis = normalize_axis(node.int_attr("axis", -1), len(shape), node)
        row = math.prod(shape[axis:])
        scale = graph.types[node.inputs[1]].numel
        has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
        bias = graph.types[node.inputs[2]].numel if has_bias else 0
        if scale not in (1, row) or bias not in (0, 1, row):
            raise PycError("E008", "LayerNormalization scale/bias must cover the whole row",
                           where=node.name)
        outputs = list(node.outputs) + ["", ""]
        return {"outer": math.prod(shape[:axis]), "row": row, "has_bias": has_bias,
                "scale_stride": int(scale == row), "bias_stride": int(bias == row),
                "has_mean": bool(outputs[1]), "has_inv_std": bool(outputs[2]),
                "epsilon": node.float_attr("epsilon", 1e-5)}

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """numpy reference (float64 statistics, exact where float ones overflow, as the kernel's
        fallback): folds constant inputs, checks rewrites."""
        x = np.asarray(inputs[0])
        axis = normalize_axis(node.int_attr("axis", -1), x.ndim, node)
        axes = tuple(range(axis, x.ndim))
        wide = x.astype(np.float64)
        mean = wide.mean(axis=axes, keepdims=True)
        var = ((wide - mean) ** 2).mean(axis=axes, keepdims=True)
        y = (wide - mean) / np.sqrt(var + node.float_attr("epsilon", 1e-5))
        y = y * np.asarray(inputs[1])
        if len(inputs) > 2 and inputs[2] is not None:
            y = y + np.asarray(inputs[2])
        return [y.astype(x.dtype)]


@register
class InstanceNormalization(OpDef):
    """Per (n, c) normalization over the spatial dims with per-channel scale and bias."""

    name = "InstanceNormalization"
    since = 6
    category = KERNEL
    dtypes = (DType.F32, DType.F64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if x.rank < 3:
            raise PycError("E009", "InstanceNormalization needs a rank >= 3 input", where=node.name)
        return [x]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        shape = graph.types[node.inputs[0]].shape
        return {"rows": shape[0] * shape[1], "channels": shape[1], "row": math.prod(shape[2:]),
                "epsilon": node.float_attr("epsilon", 1e-5)}

    @references.f16_via_f32
    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, scale, bias = (np.asarray(v) for v in inputs[:3])
        epsilon = node.float_attr("epsilon", 1e-5)
        return [references.instance_norm(x, scale, bias, epsilon)]
