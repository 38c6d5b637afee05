"""Ops whose result depends only on static shapes: always folded to constants."""

from __future__ import annotations

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.symbolic import Dim, DimLike, SymbolicError, ceil_div, computed_dim, has_dims, smax
from ..ir.types import MODEL_DTYPES, DType, TensorType
from .registry import (
    GROWTH_LIMIT_BYTES,
    SHAPE_ONLY,
    VALUES_HINT,
    InRanges,
    InTypes,
    InValues,
    OpDef,
    as_dim,
    register,
    require,
    require_value,
    shape_operand,
)


@register
class Shape(OpDef):
    name = "Shape"
    category = SHAPE_ONLY
    dtypes = MODEL_DTYPES

    def _slice(self, node: Node, shape: tuple[int, ...]) -> np.ndarray:
        rank = len(shape)
        start = node.int_attr("start", 0)
        end = node.int_attr("end", rank)
        dims = shape[start:end]
        # symbolic dims (issue #15) stay objects: int64 would keep their upper bounds only
        return np.array(dims, dtype=object if has_dims(dims) else np.int64)

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
    lowering = "folded at compile time (past 16 MiB: an Expand of the fill value)"
    dtypes = MODEL_DTYPES
    static_inputs = (0,)

    def _fill(self, node: Node) -> np.ndarray:
        value = node.attrs.get("value")
        return np.asarray(value).reshape(-1)[:1] if value is not None else np.zeros(1, np.float32)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        shape = tuple(as_dim(d) for d in require_value(values, 0, node, "shape"))
        return [TensorType(DType.from_numpy(self._fill(node).dtype), shape)]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        shape = tuple(int(d) for d in np.asarray(inputs[0]))
        fill = self._fill(node)
        return [np.full(shape, fill[0], dtype=fill.dtype)]

    def decompose(self, node: Node, graph: Graph, values: InValues) -> list[Node] | None:
        """Too large to fold into the weights: an Expand of the fill value fills it at run time."""
        if graph.types[node.outputs[0]].nbytes <= GROWTH_LIMIT_BYTES:
            return None  # folds to a constant
        fill = graph.add_constant(f"{node.name}_value", self._fill(node).reshape(()))
        return [Node("Expand", graph.fresh_name(f"{node.name}_expand"), [fill, node.inputs[0]],
                     [node.outputs[0]])]


@register
class Size(OpDef):
    name = "Size"
    category = SHAPE_ONLY
    dtypes = MODEL_DTYPES

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        require(types, 0, node)
        return [TensorType(DType.I64, ())]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.array(np.asarray(inputs[0]).size, np.int64)]

    def shape_value(self, node: Node, input_type: TensorType) -> np.ndarray:
        numel = input_type.numel
        # a symbolic count (issue #15) stays an object, as Shape's dims: int64 would keep its
        # upper bound only
        return np.array(numel, dtype=object if has_dims([numel]) else np.int64)


@register
class Range(OpDef):
    """start, limit and delta must be compile-time constants: they decide the output's shape."""

    name = "Range"
    since = 11
    category = SHAPE_ONLY
    dtypes = (DType.F32, DType.F64, DType.F16, DType.I16, DType.I32, DType.I64)
    static_inputs = (0, 1, 2)

    def _values(self, node: Node, values: InValues) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        start, limit, delta = (shape_operand(node, values, i, what, what).reshape(-1)[0]
                               for i, what in enumerate(("start", "limit", "delta")))
        return start, limit, delta

    def _count(self, start: object, limit: object, delta: object) -> DimLike:
        """ceil((limit - start) / delta), at least 0; with a symbolic (integer) start or limit
        (issue #15), an expression where delta is a constant and the bounds decide the sign."""
        if isinstance(delta, Dim):  # numpy would divide by its upper bound
            raise SymbolicError(f"Range steps by {delta}, a value known at run time")
        if isinstance(start, Dim) or isinstance(limit, Dim):
            if int(delta) <= 0:  # type: ignore[call-overload]
                raise SymbolicError(f"Range with a symbolic limit steps by {delta}, not a "
                                    "positive constant")
            # numpy integers first: numpy's operators would turn a Dim into its upper bound
            low, high = (v if isinstance(v, Dim) else int(v) for v in (start, limit))  # type: ignore[call-overload]
            return smax(ceil_div(high - low, int(delta)), 0)  # type: ignore[arg-type, call-overload]
        return max(int(np.ceil((limit - start) / delta)), 0)  # type: ignore[operator]

    def _dtype(self, node: Node, types: InTypes) -> DType:
        """Range's element type is its operands'; one bound into attributes is an integer."""
        return require(types, 0, node).dtype if node.inputs else DType(str(node.attrs["dtype"]))

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        start, limit, delta = self._values(node, values)
        try:
            count = self._count(start, limit, delta)
        except SymbolicError as exc:  # the bounds do not decide it: computed at run time
            if not node.inputs:
                raise
            raise PycError("E008", f"Range's count is decided at run time ({exc})",
                           where=f"node {node.name!r}") from exc
        return [TensorType(self._dtype(node, types), (count,))]

    def runtime_infer(self, node: Node, types: InTypes, values: InValues,
                      refusal: PycError, ranges: InRanges) -> list[TensorType]:
        """A start, limit or delta computed at run time (issue #15, point 2): the count is a
        computed dim bounded by the operands' intervals (ops/intervals.py: the declared values
        of the inputs they come from, or the bounds of their value dims); delta's interval
        must exclude 0 (one sign: a positive delta counts up from the lowest start to the
        highest limit, by its smallest step)."""
        if not node.inputs:
            raise refusal
        start, limit, delta = (ranges[i] if i < len(ranges) else None for i in range(3))
        if start is None or limit is None or delta is None:
            raise PycError(refusal.code, refusal.what, where=refusal.where,
                           hint=VALUES_HINT) from None
        if delta.min() > 0:
            span, step = limit.max() - start.min(), delta.min()
        elif delta.max() < 0:
            span, step = start.max() - limit.min(), -delta.max()
        else:
            raise PycError(refusal.code, refusal.what, where=refusal.where,
                           hint="Range's delta may be 0 within its declared values: declare "
                           "values of one sign (pyc build --input-values NAME=LO..HI)") from None
        bound = max(int(np.ceil(span / step)), 0)
        return [TensorType(self._dtype(node, types), (computed_dim(node.name, 0, bound),))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        if any(name and value is None for name, value in zip(node.inputs, inputs)):
            raise NotImplementedError("an operand is computed at run time")
        start, limit, delta = self._values(node, inputs)
        count = self._count(start, limit, delta)
        if isinstance(count, Dim):
            raise NotImplementedError("the values of a symbolic Range are computed at run time")
        dtype = np.asarray(inputs[0]).dtype if node.inputs else \
            DType(str(node.attrs["dtype"])).numpy
        return [(start + np.arange(count) * delta).astype(dtype)]


@register
class EyeLike(OpDef):
    """A 2-D identity-like constant (ones on diagonal k) shaped like its input."""

    name = "EyeLike"
    since = 9
    category = SHAPE_ONLY
    lowering = "folded at compile time (over symbolic dims: Range, Equal, Cast)"
    dtypes = MODEL_DTYPES

    def _dtype(self, node: Node, input_type: TensorType) -> DType:
        return DType.from_onnx(node.int_attr("dtype")) if "dtype" in node.attrs else input_type.dtype  # type: ignore[arg-type]

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if x.rank != 2:
            raise PycError("E009", f"EyeLike needs a 2-D input, got {list(x.shape)}", where=node.name)
        return [TensorType(self._dtype(node, x), x.shape)]

    def shape_value(self, node: Node, input_type: TensorType) -> np.ndarray:
        rows, cols = input_type.shape
        k = node.int_attr("k", 0)
        return np.eye(rows, cols, k, dtype=self._dtype(node, input_type).numpy)

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [self.shape_value(node, TensorType.of(np.asarray(inputs[0])))]

    def decompose(self, node: Node, graph: Graph, values: InValues) -> list[Node] | None:
        """Over symbolic dims (issue #15), Cast(Range(rows)[:, None] + k == Range(cols)[None, :]):
        the rows and columns from the input's Shape, so the result is computed at its run-time
        size (a folded constant would have the bounds' size). Static shapes fold."""
        x = graph.types[node.inputs[0]]
        if not has_dims(x.shape):
            return None
        rows, cols = x.shape
        i64 = DType.I64
        made: list[Node] = []

        def add(op: str, inputs: list[str], ttype: TensorType, attrs: dict | None = None,  # type: ignore[type-arg]
                output: str = "") -> str:
            out = output or graph.fresh_name(f"{node.name}_{op.lower()}")
            graph.types[out] = ttype
            made.append(Node(op, graph.fresh_name(f"{node.name}_{op.lower()}"), inputs, [out],
                             dict(attrs or {})))
            return out

        def scalar(name: str, value: int) -> str:
            return graph.add_constant(f"{node.name}_{name}", np.array(value, np.int64))

        def axes(value: int) -> str:
            return graph.add_constant(f"{node.name}_axis{value}", np.array([value], np.int64))

        shape = add("Shape", [node.inputs[0]], TensorType(i64, (2,)))
        zero, one = scalar("zero", 0), scalar("one", 1)
        counts = [add("Gather", [shape, index], TensorType(i64, ())) for index in (zero, one)]
        row = add("Range", [zero, counts[0], one], TensorType(i64, (rows,)))
        col = add("Range", [zero, counts[1], one], TensorType(i64, (cols,)))
        shifted = add("Add", [row, scalar("k", node.int_attr("k", 0))], TensorType(i64, (rows,)))
        column = add("Unsqueeze", [shifted, axes(1)], TensorType(i64, (rows, 1)))
        line = add("Unsqueeze", [col, axes(0)], TensorType(i64, (1, cols)))
        hit = add("Equal", [column, line], TensorType(DType.BOOL, (rows, cols)))
        dtype = self._dtype(node, x)
        add("Cast", [hit], TensorType(dtype, (rows, cols)), {"to": dtype.to_onnx()},
            output=node.outputs[0])
        return made
