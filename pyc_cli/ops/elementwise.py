"""Base of all elementwise ops, plus the ones with extra structure (Where, Cast, Expand, Clip)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.symbolic import (
    Dim,
    DimBounds,
    DimLike,
    EntryStep,
    entry_dim,
    entry_source,
    known_at_entry,
    may_be_one,
    sign_bounds,
)
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
# bfloat16 model values: ops that only select, convert or copy take them (Where, Cast, Expand);
# every other op computes them in float32 between casts (OpDef.computes_bf16_in_f32)
MOVING = NUMBERS + (DType.BOOL, DType.BF16)


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
            if not any(isinstance(d, Dim) for s in shapes for d in s):
                raise
            shape = broadcast_at_entry(node, shapes, len(operand_types))
        dtype = self.out_dtype(node, [t.dtype for t in operand_types])
        return [TensorType(dtype, shape)]

    def entry_shapes(self, node: Node, graph: Graph) -> list[tuple[tuple[int, ...], str]]:
        """The shapes broadcast together, each with the check a symbolic dim of it that the
        output does not take (broadcast_at_entry) gets: "broadcast", 1 or the output's (the
        kernel reads such an operand with a run-time stride, 0 where its dim is 1); an Expand's
        target too (its elements are the output's or 1)."""
        return [(graph.types[v].shape, "broadcast") for v in self.operands(node)
                if v in graph.types]

    def entry_steps(self, node: Node, graph: Graph) -> list[EntryStep]:
        if not node.outputs or node.outputs[0] not in graph.types:
            return []
        out = graph.types[node.outputs[0]].shape
        return broadcast_entry_steps(node, out, [s for s, _ in self.entry_shapes(node, graph)])

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
    dtypes = MOVING

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
    dtypes = MOVING

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
        # bfloat16 converts through float32 both ways, as onnxruntime's Cast does (a float64 or
        # an integer is rounded to float32 first, then to bfloat16: not ml_dtypes' direct cast)
        x = np.asarray(args[0])
        to_bf16 = node.int_attr("to") == onnx.TensorProto.BFLOAT16
        if (x.dtype == ml_dtypes.bfloat16) != to_bf16:
            return x.astype(np.float32)
        return x


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
    dtypes = MOVING
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


def broadcast_entry_steps(node: Node, out: tuple[int, ...], shapes: list[tuple[int, ...]]
                          ) -> list[EntryStep]:
    """What the entry point computes and checks for `shapes` broadcast to `out` (see
    `broadcast_at_entry`): each entry dim of the node's own as the broadcast of its sides
    ("bcast"), then each symbolic side dim the output does not take, 1 or the output's
    ("broadcast")."""
    steps: list[EntryStep] = []
    for axis, dim in enumerate(out):
        bounds = _own_entry_dim(node, dim)
        if bounds is None:
            continue
        sides = [s[axis - len(out) + len(s)] for s in shapes if axis - len(out) + len(s) >= 0]
        sides = [d for d in sides if isinstance(d, Dim) or d != 1]
        if len(sides) < 2:
            continue  # no rule computes it: abi.entry_steps refuses the build (E051)
        steps.append(EntryStep("bcast", node.name, sides[0], sides[1], bounds.name))
        steps += [EntryStep("bcast", node.name, dim, d, bounds.name) for d in sides[2:]]
    # a side a kernel computes during the run: the elementwise kernel checks it
    return steps + [EntryStep("broadcast", node.name, want, got) for shape in shapes
                    for want, got in zip(reversed(shape), reversed(out))
                    if isinstance(want, Dim) and want != got and known_at_entry([want])]


def broadcast_at_entry(node: Node, shapes: list[tuple[int, ...]], checked: int = 0
                       ) -> tuple[int, ...]:
    """Broadcasting that shape inference cannot prove (issue #15): a symbolic dim (an input's
    `n`, or one computed from input values such as a shape operand `s + 1` declared with
    --input-values) meets another dim other than 1, and they are not the same expression.
    ONNX broadcasting decides at run time: each side is 1 or the output's size. The output
    dim is a dim that is never 1 where one side has one (a number above 1, or a dim whose lower
    bound is above 1): each other side must be 1 or it. Else (every side may be 1: `n` against
    `m`, both `1..32`) it is an *entry dim* (`rt_NODE_AXIS`) that the entry point computes
    before any kernel runs as the broadcast of the sides (EntryStep "bcast"). A side that the
    output does not take is checked to be 1 or the output's at entry (EntryStep "broadcast",
    entry_steps: status 6, PYC-E041 otherwise), and read by the kernel with a run-time stride
    (0 where it is 1: targets/cpu/kernel_context.broadcast_strides). Refused at build: sides
    that never broadcast (two different numbers: E009; a dim whose bounds hold neither 1 nor
    the other side's size: E009). A dim a kernel computes during the run (NonZero's count: the
    entry point does not know it yet) may be a side of one of the first `checked` shapes (the
    operands the elementwise kernel reads) where another side is known at entry and never 1:
    the kernel checks it when it runs (kernel_context.elementwise_params: status 6, PYC-E041);
    otherwise E051 naming the node."""
    rank = max(len(s) for s in shapes)
    out: list[int] = []
    for axis in range(rank):
        sides = [s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0]
        dims = list(dict.fromkeys(d for d in sides if isinstance(d, Dim) or d != 1))
        if len(dims) <= 1:
            out.append(as_dim(dims[0]) if dims else 1)
            continue
        shown = " or ".join(str(d) for d in sorted(dims, key=str))
        in_kernel = {s[axis - rank + len(s)] for s in shapes[:checked]
                     if axis - rank + len(s) >= 0}
        late = [d for d in dims if not known_at_entry([d])]
        if late and (any(d not in in_kernel for d in late) or not any(
                known_at_entry([d]) and not may_be_one(d) for d in dims)):
            raise PycError("E051", f"{node.op} broadcasts {[list(s) for s in shapes]}: whether "
                           f"axis {axis} takes {shown} depends on sizes computed during the run",
                           where=f"node {node.name!r}",
                           hint="give the other dim a number (--input-shape), or compute the "
                           "shape from the input's Shape")
        never_one = [d for d in dims if not may_be_one(d)]
        numbers = {int(d) for d in never_one if not isinstance(d, Dim)}
        if len(numbers) > 1:
            raise PycError("E009", f"shapes {[list(s) for s in shapes]} do not broadcast",
                           where=node.name)
        known = [d for d in never_one if known_at_entry([d])]
        winner: DimLike = next((d for d in never_one if not isinstance(d, Dim)),
                               known[0] if known else never_one[0] if never_one else 0)
        for d in dims:
            if d is not winner and not _may_match(d, winner):
                raise PycError("E009", f"shapes {[list(s) for s in shapes]} do not broadcast "
                               f"(axis {axis}: {d} is never 1 nor {winner})", where=node.name)
        if never_one:
            out.append(as_dim(winner))
            continue
        bounds = [sign_bounds(d) for d in dims]
        lows = [lo for lo, _ in bounds]  # 0 where a side may be 0 (0 against 1 is 0)
        out.append(entry_dim(node.name, axis, 0 if min(lows) <= 0 else max(lows),
                             max(hi for _, hi in bounds)))
    return tuple(out)


def _may_match(side: DimLike, winner: DimLike) -> bool:
    """Whether `side` may be 1 or `winner` at run time (as far as their bounds tell)."""
    if may_be_one(side):
        return True
    lo, hi = sign_bounds(side)
    wlo, whi = sign_bounds(winner)
    return lo <= whi and wlo <= hi


def _own_entry_dim(node: Node, dim: DimLike) -> DimBounds | None:
    """The bounds of `dim` where it is the entry dim `broadcast_at_entry` gave `node`."""
    if not isinstance(dim, Dim) or len(dim.dims()) != 1:
        return None
    (bounds,) = dim.dims().values()
    return bounds if entry_source(bounds) == node.name and dim == Dim.var(bounds) else None


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
