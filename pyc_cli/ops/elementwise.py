"""Base of all elementwise ops, plus the ones with extra structure (Where, Cast, Expand, Clip)."""

from __future__ import annotations

import numpy as np
import onnx

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.symbolic import EntryStep, from_values, known_at_entry, sign_bounds
from ..ir.types import DType, TensorType
from .registry import (
    ELEMENTWISE,
    InTypes,
    InValues,
    OpDef,
    as_dim,
    broadcast_shapes,
    ints_attr,
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
        shapes = [t.shape for t in operand_types] + [self.extra_shape(node, values)]
        try:
            shape = broadcast_shapes(*shapes[:-1], where=node.name)
            shape = broadcast_shapes(shape, shapes[-1], where=node.name)
        except PycError:
            if not any(from_values(d) for s in shapes for d in s):
                raise
            shape = _broadcast_at_entry(node, shapes)
        dtype = self.out_dtype(node, [t.dtype for t in operand_types])
        return [TensorType(dtype, shape)]

    def entry_shapes(self, node: Node, graph: Graph) -> list[tuple[tuple[int, ...], str]]:
        """The shapes broadcast together, each with the check a dim of it computed from input
        values that the output does not take (_broadcast_at_entry) gets: an operand's must
        equal the output's ("equal": the kernels broadcast the dims that are 1 when built, so
        a tensor of such a dim cannot be stretched at run time), Expand's target's may be 1."""
        return [(graph.types[v].shape, "equal") for v in self.operands(node) if v in graph.types]

    def entry_steps(self, node: Node, graph: Graph) -> list[EntryStep]:
        if not node.outputs or node.outputs[0] not in graph.types:
            return []
        out = graph.types[node.outputs[0]].shape
        return [EntryStep(kind, node.name, want, got)
                for shape, kind in self.entry_shapes(node, graph)
                for want, got in zip(reversed(shape), reversed(out))
                if from_values(want) and want != got]

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

    def entry_shapes(self, node: Node, graph: Graph) -> list[tuple[tuple[int, ...], str]]:
        # the target, where passes/bind_shapes.py bound it (symbolic)
        target = tuple(ints_attr(node, "shape")) if isinstance(node.attrs.get("shape"), list) \
            else None
        return super().entry_shapes(node, graph) + (
            [(target, "broadcast")] if target is not None else [])

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        data, shape = inputs[0], shape_operand(node, inputs, 1, "shape", "shape")
        out_shape = np.broadcast_shapes(data.shape, tuple(int(d) for d in shape))  # type: ignore[union-attr]
        return [np.broadcast_to(data, out_shape).copy()]  # type: ignore[arg-type]


def _broadcast_at_entry(node: Node, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """Broadcasting where a dim computed from input values (issue #15, point 2: a shape operand
    `s + 1`, `s` declared with --input-values) meets another dim other than 1: the other dim,
    valid where the value dim equals it (an Expand target's: or is 1), which the entry point
    checks before any kernel runs (entry_steps: status 6, PYC-E041 otherwise). Refused (naming the node) where
    the outcome depends on the sizes: two such dims, or one against a dim that may be 1."""
    rank = max(len(s) for s in shapes)
    out: list[int] = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0} - {1}
        fixed = {d for d in dims if not from_values(d)}
        if len(dims) <= 1:
            out.append(as_dim(dims.pop()) if dims else 1)
        elif len(fixed) == 1 and sign_bounds(next(iter(fixed)))[0] > 1 and \
                known_at_entry(dims):
            out.append(as_dim(fixed.pop()))  # the value dims must be 1 or it: checked at entry
        else:
            raise PycError("E051", f"{node.op} broadcasts {[list(s) for s in shapes]}: whether "
                           f"axis {axis} takes {' or '.join(str(d) for d in sorted(dims, key=str))} "
                           "depends on the run-time sizes", where=f"node {node.name!r}",
                           hint="give the other dim a number or a lower bound above 1 "
                           "(--input-shape), or compute the shape from the input's Shape")
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
