"""Base of all elementwise ops, plus the ones with extra structure (Where, Cast, Expand, Clip)."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from .registry import (
    ELEMENTWISE,
    InTypes,
    InValues,
    OpDef,
    broadcast_shapes,
    register,
    require,
    require_value,
)

FLOATS = (DType.F32, DType.F64)
NUMBERS = (DType.F32, DType.F64, DType.I32, DType.I64, DType.I8, DType.U8, DType.I16)


class ElementwiseOp(OpDef):
    """An op computed independently per output element with numpy-style broadcasting.

    Its C lowering is the scalar snippet named like the op in `scalar_ops.j2`; fusion splices
    chains of these into one loop.
    """

    category = ELEMENTWISE
    dtypes = FLOATS

    def operands(self, node: Node) -> list[str]:
        """The inputs read per element (others, like Expand's shape, are compile-time only)."""
        return node.present_inputs()

    def out_dtype(self, node: Node, dtypes: list[DType]) -> DType:
        return dtypes[0]

    def scalar_attrs(self, node: Node, graph: Graph) -> dict[str, float | int | str]:
        """Compile-time parameters the scalar snippet reads (alpha, clip bounds, target dtype)."""
        return {}

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        positions = [node.inputs.index(name) for name in self.operands(node)]
        operand_types = [require(types, i, node) for i in positions]
        shape = broadcast_shapes(*(t.shape for t in operand_types), where=node.name)
        shape = broadcast_shapes(shape, self.extra_shape(node, values), where=node.name)
        dtype = self.out_dtype(node, [t.dtype for t in operand_types])
        return [TensorType(dtype, shape)]

    def extra_shape(self, node: Node, values: InValues) -> tuple[int, ...]:
        return ()

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        positions = [node.inputs.index(name) for name in self.operands(node)]
        args = [inputs[i] for i in positions]
        result = np.asarray(self.compute(node, inputs, *args))
        dtype = self.out_dtype(node, [DType.from_numpy(a.dtype) for a in args])  # type: ignore[union-attr]
        return [result.astype(dtype.numpy, copy=False)]

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register
class Where(ElementwiseOp):
    name = "Where"
    since = 9
    dtypes = NUMBERS

    def out_dtype(self, node: Node, dtypes: list[DType]) -> DType:
        return dtypes[1]

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return np.where(args[0], args[1], args[2])


@register
class Cast(ElementwiseOp):
    name = "Cast"
    since = 6
    dtypes = NUMBERS + (DType.BOOL,)

    def out_dtype(self, node: Node, dtypes: list[DType]) -> DType:
        return DType.from_onnx(int(node.attrs["to"]))  # type: ignore[arg-type]

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return args[0]


@register
class Expand(ElementwiseOp):
    """Broadcast to a shape: an elementwise copy whose output shape comes from input 1."""

    name = "Expand"
    since = 8
    dtypes = NUMBERS + (DType.BOOL,)

    def operands(self, node: Node) -> list[str]:
        return [node.inputs[0]]

    def extra_shape(self, node: Node, values: InValues) -> tuple[int, ...]:
        return tuple(int(d) for d in require_value(values, 1, node, "shape"))

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        data, shape = inputs[0], inputs[1]
        out_shape = np.broadcast_shapes(data.shape, tuple(int(d) for d in shape))  # type: ignore[union-attr]
        return [np.broadcast_to(data, out_shape).copy()]  # type: ignore[arg-type]


@register
class Clip(ElementwiseOp):
    """Clip with bounds from attributes (opset < 11) or constant inputs (opset >= 11)."""

    name = "Clip"
    since = 6

    def operands(self, node: Node) -> list[str]:
        return [node.inputs[0]]

    def bounds(self, node: Node, graph: Graph | None, inputs: list | None = None) -> tuple[float, float]:
        low, high = float(node.attrs.get("min", -np.inf)), float(node.attrs.get("max", np.inf))  # type: ignore[arg-type]
        for index, current in ((1, low), (2, high)):
            name = node.inputs[index] if len(node.inputs) > index else ""
            value = None
            if name and inputs is not None:
                value = inputs[index]
            elif name and graph is not None:
                value = graph.constants.get(name)
            bound = current if value is None else float(np.asarray(value).reshape(-1)[0])
            low, high = (bound, high) if index == 1 else (low, bound)
        return low, high

    def scalar_attrs(self, node: Node, graph: Graph) -> dict[str, float | int | str]:
        low, high = self.bounds(node, graph)
        return {"min": low, "max": high}

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        low, high = self.bounds(node, None, inputs)
        return np.clip(args[0], low, high)
