"""Base of all elementwise ops, plus the ones with extra structure (Where, Cast, Expand, Clip)."""

from __future__ import annotations

import numpy as np
import onnx

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.symbolic import Dim, EntryStep, has_dims, known_at_entry, sign_bounds
from ..ir.types import DType, TensorType
from .registry import (
    ELEMENTWISE,
    InTypes,
    InValues,
    OpDef,
    as_dim,
    broadcast_shapes,
    register,
    require,
    shape_operand,
    typed_node,
)

FLOATS = (DType.F32, DType.F64)
# elementwise snippets also run on float16 (C _Float16, math in float as numpy does)
EW_FLOATS = FLOATS + (DType.F16,)
SIGNED = (DType.I8, DType.I16, DType.I32, DType.I64)
UNSIGNED = (DType.U8, DType.U16, DType.U32, DType.U64)
INTS = SIGNED + UNSIGNED
SIGNED_NUMBERS = EW_FLOATS + SIGNED
NUMBERS = EW_FLOATS + INTS


class ElementwiseOp(OpDef):
    """An op computed independently per output element with numpy-style broadcasting.

    Its C lowering is the scalar snippet named like the op in `scalar_ops.j2`; fusion splices
    chains of these into one loop.
    """

    category = ELEMENTWISE
    dtypes = EW_FLOATS

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
    dtypes = NUMBERS + (DType.BOOL,)

    def dtype_values(self, node: Node) -> list[str]:
        return [node.inputs[1]]

    def out_dtype(self, node: Node, dtypes: list[DType]) -> DType:
        return dtypes[1]

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return np.where(args[0], args[1], args[2])


@register
class Cast(ElementwiseOp):
    name = "Cast"
    since = 6
    dtypes = NUMBERS + (DType.BOOL,)

    def dtype_values(self, node: Node) -> list[str]:
        return [node.inputs[0], node.outputs[0]]

    def out_dtype(self, node: Node, dtypes: list[DType]) -> DType:
        to = node.int_attr("to")
        try:
            return DType.from_onnx(to)
        except KeyError:
            raise PycError("E008", f"Cast to {onnx.TensorProto.DataType.Name(to)} is not supported",
                           where=f"node {node.name!r}") from None

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        return args[0]


@register
class CastLike(ElementwiseOp):
    """Cast to the element type of the second input; canonicalize rewrites it into Cast."""

    name = "CastLike"
    since = 15
    dtypes = Cast.dtypes

    def dtype_values(self, node: Node) -> list[str]:
        return [node.inputs[0], node.inputs[1]]

    def operands(self, node: Node) -> list[str]:
        return [node.inputs[0]]

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x, like = require(types, 0, node), require(types, 1, node)
        return [TensorType(like.dtype, x.shape)]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.asarray(inputs[0]).astype(np.asarray(inputs[1]).dtype)]

    def decompose(self, node: Node, graph: Graph, values: InValues) -> list[Node] | None:
        to = graph.types[node.inputs[1]].dtype.to_onnx()
        return [typed_node(graph, "Cast", [node.inputs[0]], f"{node.name}_cast", {"to": to},
                           output=node.outputs[0])]


@register
class Expand(ElementwiseOp):
    """Broadcast to a shape: an elementwise copy whose output shape comes from input 1."""

    name = "Expand"
    since = 8
    dtypes = NUMBERS + (DType.BOOL,)
    static_inputs = (1,)

    def operands(self, node: Node) -> list[str]:
        return [node.inputs[0]]

    def extra_shape(self, node: Node, values: InValues) -> tuple[int, ...]:
        return tuple(as_dim(d) for d in shape_operand(node, values, 1, "shape", "shape"))

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        target = self.extra_shape(node, values)
        try:
            return super().infer(node, types, values)
        except PycError:
            if not has_dims(target) or not known_at_entry(target):
                raise
        return [TensorType(x.dtype, _expand_at_entry(node, x.shape, target))]

    def entry_steps(self, node: Node, graph: Graph) -> list[EntryStep]:
        """Each target dim computed from input values that the output does not take (its
        input's dim: _expand_at_entry) must be 1 or that dim."""
        target = node.attrs.get("shape")
        if not isinstance(target, list) or not node.outputs or node.outputs[0] not in graph.types:
            return []
        out = graph.types[node.outputs[0]].shape
        return [EntryStep("broadcast", node.name, want, got)
                for want, got in zip(reversed(target), reversed(out))
                if isinstance(want, Dim) and want != got]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        data, shape = inputs[0], shape_operand(node, inputs, 1, "shape", "shape")
        out_shape = np.broadcast_shapes(data.shape, tuple(int(d) for d in shape))  # type: ignore[union-attr]
        return [np.broadcast_to(data, out_shape).copy()]  # type: ignore[arg-type]


def _expand_at_entry(node: Node, shape: tuple[int, ...], target: tuple[int, ...]
                     ) -> tuple[int, ...]:
    """Expand's output where a target dim computed from input values (issue #15, point 2:
    `Expand(x, s + 1)`, `s` declared with --input-values) meets an input dim other than 1:
    the input's dim, valid where the target's is 1 or equal to it, which the entry point
    checks before any kernel runs (abi.entry_steps: status 6, PYC-E041 otherwise)."""
    rank = max(len(shape), len(target))
    out: list[int] = []
    for axis in range(rank):
        a = shape[axis - rank + len(shape)] if axis - rank + len(shape) >= 0 else 1
        b = target[axis - rank + len(target)] if axis - rank + len(target) >= 0 else 1
        if a == b or b == 1:
            out.append(as_dim(a))
        elif a == 1:
            out.append(as_dim(b))
        elif isinstance(b, Dim) and sign_bounds(a)[0] > 1:
            out.append(as_dim(a))  # b must be 1 or a: checked at entry
        else:
            raise PycError("E051", f"Expand of {list(shape)} to {list(target)}: whether axis "
                           f"{axis} broadcasts ({a} against {b}) depends on the run-time sizes",
                           where=f"node {node.name!r}",
                           hint="give the input's dim a number or a lower bound above 1 "
                           "(--input-shape), or compute the target from the input's Shape")
    return tuple(out)


@register
class Clip(ElementwiseOp):
    """Clip with bounds from attributes (Clip-6) or optional inputs (Clip-11+; constant bounds are
    inlined as literals by fusion, others are read per element like any operand)."""

    name = "Clip"
    since = 6
    dtypes = NUMBERS

    def _present(self, node: Node) -> tuple[bool, bool]:
        return tuple(len(node.inputs) > i and bool(node.inputs[i]) for i in (1, 2))  # type: ignore[return-value]

    def scalar_attrs(self, node: Node, graph: Graph) -> dict[str, float | int | str]:
        has_min, has_max = self._present(node)
        attrs: dict[str, float | int | str] = {
            "min_arg": 1 if has_min else -1, "max_arg": 1 + has_min if has_max else -1}
        for key in ("min", "max"):
            if key in node.attrs:
                attrs[key] = float(node.attrs[key])  # type: ignore[arg-type]
        return attrs

    def compute(self, node: Node, inputs: list, *args: np.ndarray) -> np.ndarray:
        has_min, has_max = self._present(node)
        rest = list(args[1:])
        low = rest.pop(0) if has_min else node.attrs.get("min")
        high = rest.pop(0) if has_max else node.attrs.get("max")
        x = args[0]
        if np.issubdtype(x.dtype, np.floating):  # a missing bound is the lowest / largest finite
            info = np.finfo(x.dtype)                # value (ONNX, onnxruntime): Clip(inf, 0) = max
            low = info.min if low is None else low
            high = info.max if high is None else high
        if low is not None:
            x = np.where(x < low, low, x)
        if high is not None:
            x = np.where(x > high, high, x)
        return x
