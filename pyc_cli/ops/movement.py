"""Data movement: Transpose, Slice, Concat, Gather. Transpose and Slice lower to one strided copy."""

from __future__ import annotations

import math

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.symbolic import DimLike, SymbolicError, computed_dim, from_values, less, smax, smin
from ..ir.types import MODEL_DTYPES, TensorType
from .registry import (
    KERNEL,
    InRanges,
    InTypes,
    InValues,
    OpDef,
    as_dim,
    ints_attr,
    normalize_axis,
    register,
    require,
    require_value,
)

ALL_DTYPES = MODEL_DTYPES


def contiguous_strides(shape: tuple[int, ...] | list[int]) -> list[int]:
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return list(reversed(strides))


@register
class Transpose(OpDef):
    name = "Transpose"
    category = KERNEL
    dtypes = ALL_DTYPES

    def perm(self, node: Node, rank: int) -> list[int]:
        return ints_attr(node, "perm") or list(reversed(range(rank)))

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        perm = self.perm(node, x.rank)
        if sorted(perm) != list(range(x.rank)):
            raise PycError("E009", f"bad Transpose perm {perm}", where=node.name)
        return [TensorType(x.dtype, tuple(x.shape[p] for p in perm))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        return [np.asarray(np.transpose(x, self.perm(node, x.ndim)), order="C")]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        x = graph.types[node.inputs[0]]
        strides = contiguous_strides(x.shape)
        perm = self.perm(node, x.rank)
        return {"base": 0, "in_strides": [strides[p] for p in perm]}

    def flops(self, node: Node, graph: Graph) -> int:
        return 0


# an end of INT32_MAX or INT64_MAX means "to the end in the step's direction" (numpy's None), as
# onnxruntime reads it; other ends clamp as the ONNX spec says
_END_SENTINELS = (2**31 - 1, 2**63 - 1)


def slice_range(start: DimLike, end: DimLike, step: int, dim: DimLike
                ) -> tuple[DimLike, int, DimLike]:
    """(first index, step, count) of one sliced axis, with onnxruntime's clamping. A zero-size
    axis gives nothing (onnxruntime may report one element there, which it cannot read).
    Symbolic starts, ends and dims (issue #15) clamp where their bounds decide the comparison
    (`less`); where the dims' values would decide it, SymbolicError (the node is refused)."""
    if dim == 0:
        return (0, step, 0)
    start = start + dim if less(start, 0) else start
    start = smin(smax(start, 0), dim - 1 if step < 0 else dim)
    if end in _END_SENTINELS:
        end = -1 if step < 0 else dim
    else:
        end = end + dim if less(end, 0) else end
        end = smin(smax(end, -1 if step < 0 else 0), dim)
    count = -(-(end - start) // step)  # ceil division
    # an empty slice starts at 0; a start of 0 needs no decision (a count of seq % 3 may be 0)
    first = start if start == 0 or less(0, count) else 0
    return (first, step, smax(count, 0))


@register
class Slice(OpDef):
    name = "Slice"
    category = KERNEL
    dtypes = ALL_DTYPES
    static_inputs = (1, 2, 3, 4)

    def ranges(self, node: Node, shape: tuple[int, ...], values: InValues) -> list[tuple[int, int, int]]:
        """(start, step, count) per axis, with ONNX clamping of starts/ends. Slice-1 takes
        starts/ends/axes as attributes, Slice-10+ as (constant) inputs; a Slice whose symbolic
        operands passes/bind_shapes.py moved into attributes has the attribute form, with
        `steps` too."""
        if "starts" in node.attrs:
            starts, ends = ints_attr(node, "starts"), ints_attr(node, "ends")
            axes = ints_attr(node, "axes") or list(range(len(starts)))
            steps = ints_attr(node, "steps") or [1] * len(starts)
        else:
            starts = require_value(values, 1, node, "starts").reshape(-1)
            ends = require_value(values, 2, node, "ends").reshape(-1)
            has = [len(node.inputs) > i and bool(node.inputs[i]) for i in (3, 4)]
            axes = require_value(values, 3, node, "axes").reshape(-1) if has[0] else range(len(starts))
            steps = require_value(values, 4, node, "steps").reshape(-1) if has[1] else [1] * len(starts)
        result = [(0, 1, d) for d in shape]
        for start, end, axis, step in zip(starts, ends, axes, steps):
            axis = normalize_axis(int(axis), len(shape), node)
            if int(step) == 0:
                raise PycError("E009", f"Slice step is 0 on axis {axis}", where=node.name,
                               hint="steps must be non-zero")
            result[axis] = slice_range(as_dim(start), as_dim(end), int(step), shape[axis])
        return result

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        try:
            ranges = self.ranges(node, x.shape, values)
        except SymbolicError as exc:
            # starts and ends both from input values (value dims): whether the slice is empty
            # or clamps depends on their values, so its size is computed at run time
            operands = [v for i in (1, 2) if "starts" not in node.attrs and len(values) > i
                        for value in [values[i]] if value is not None
                        for v in value.reshape(-1)]
            if not any(from_values(v) for v in operands):
                raise
            raise PycError("E008", f"Slice's size is decided at run time ({exc})",
                           where=f"node {node.name!r}") from exc
        return [TensorType(x.dtype, tuple(c for _, _, c in ranges))]

    def runtime_infer(self, node: Node, types: InTypes, values: InValues,
                      refusal: PycError, ranges: InRanges) -> list[TensorType]:
        """Starts or ends computed at run time (issue #15, point 2): each sliced axis gets a
        computed dim in 0..ceil(d / |step|) (d: the axis' upper bound); axes and steps must be
        known, or the refusal stands."""
        x = require(types, 0, node)
        if "starts" in node.attrs or any(
                len(node.inputs) > i and node.inputs[i] and values[i] is None for i in (3, 4)):
            raise refusal
        count = require(types, 1, node).numel
        has = [len(node.inputs) > i and bool(node.inputs[i]) for i in (3, 4)]
        axes = [int(a) for a in values[3].reshape(-1)] if has[0] else list(range(count))  # type: ignore[union-attr]
        steps = [int(s) for s in values[4].reshape(-1)] if has[1] else [1] * count  # type: ignore[union-attr]
        shape = list(x.shape)
        for axis, step in zip(axes, steps):
            axis = normalize_axis(axis, x.rank, node)
            if step == 0:
                raise PycError("E009", f"Slice step is 0 on axis {axis}", where=node.name,
                               hint="steps must be non-zero")
            shape[axis] = computed_dim(node.name, axis, -(-int(x.shape[axis]) // abs(step)))
        return [TensorType(x.dtype, tuple(shape))]

    def runtime_params(self, node: Node, graph: Graph) -> dict[str, object]:
        """A Slice whose starts or ends are read at run time (point 2): its axes and steps
        (constants), the starts and ends come from the kernel's operands."""
        x = graph.types[node.inputs[0]]
        count = graph.types[node.inputs[1]].numel
        has = [len(node.inputs) > i and bool(node.inputs[i]) for i in (3, 4)]
        axes = [normalize_axis(int(a), x.rank, node) for a in graph.constants[node.inputs[3]].reshape(-1)] \
            if has[0] else list(range(count))
        steps = [int(s) for s in graph.constants[node.inputs[4]].reshape(-1)] if has[1] else [1] * count
        return {"axes": axes, "steps": steps}

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        index = tuple(slice(b, b + s * c if b + s * c >= 0 else None, s) if c else slice(0, 0)
                      for b, s, c in self.ranges(node, x.shape, inputs))
        return [np.asarray(x[index], order="C")]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        x = graph.types[node.inputs[0]]
        values: InValues = [graph.constants.get(n) if n else None for n in node.inputs]
        if "starts" not in node.attrs and (values[1] is None or values[2] is None):
            return self.runtime_params(node, graph)  # starts or ends read at run time
        strides = contiguous_strides(x.shape)
        ranges = self.ranges(node, x.shape, values)
        return {"base": sum(b * st for (b, _, _), st in zip(ranges, strides)),
                "in_strides": [s * st for (_, s, _), st in zip(ranges, strides)]}

    def flops(self, node: Node, graph: Graph) -> int:
        return 0


@register
class Concat(OpDef):
    name = "Concat"
    since = 4
    category = KERNEL
    dtypes = ALL_DTYPES

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        parts = [require(types, i, node) for i in range(len(node.inputs))]
        if not parts:
            raise PycError("E009", "Concat has no inputs", where=node.name)
        axis = normalize_axis(node.int_attr("axis"), parts[0].rank, node)
        # an input empty along the axis adds nothing: like onnxruntime, its other dims are free
        shaping = [p for p in parts if p.rank == parts[0].rank and p.shape[axis] != 0] or parts[:1]

        def rest(part: TensorType) -> tuple[int, ...]:
            return part.shape[:axis] + part.shape[axis + 1:]

        for part in parts:
            if part.rank != parts[0].rank or (part.shape[axis] != 0 and rest(part) != rest(shaping[0])):
                raise PycError("E009", "Concat inputs differ outside the axis "
                               f"({[list(p.shape) for p in parts]}, axis {axis})", where=node.name)
        shape = list(shaping[0].shape)
        shape[axis] = sum(p.shape[axis] for p in parts)
        return [TensorType(parts[0].dtype, tuple(shape))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        arrays = [np.asarray(i) for i in inputs]
        axis = normalize_axis(node.int_attr("axis"), arrays[0].ndim, node)
        kept = [a for a in arrays if a.shape[axis] != 0] or arrays[:1]
        return [np.concatenate(kept, axis=axis)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        out = graph.types[node.outputs[0]]
        axis = normalize_axis(node.int_attr("axis"), out.rank, node)
        inner = math.prod(out.shape[axis + 1:])
        chunks = [graph.types[i].shape[axis] * inner for i in node.inputs]
        return {"outer": math.prod(out.shape[:axis]), "chunks": chunks,
                "offsets": [sum(chunks[:k]) for k in range(len(chunks))], "row": sum(chunks)}

    def flops(self, node: Node, graph: Graph) -> int:
        return 0


@register
class Gather(OpDef):
    name = "Gather"
    category = KERNEL
    dtypes = ALL_DTYPES

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        data, indices = require(types, 0, node), require(types, 1, node)
        axis = normalize_axis(node.int_attr("axis", 0), data.rank, node)
        shape = data.shape[:axis] + indices.shape + data.shape[axis + 1:]
        return [TensorType(data.dtype, shape)]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        data, indices = np.asarray(inputs[0]), np.asarray(inputs[1])
        return [np.take(data, indices.astype(np.int64), axis=node.int_attr("axis", 0))]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        data, indices = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
        axis = normalize_axis(node.int_attr("axis", 0), data.rank, node)
        return {"outer": math.prod(data.shape[:axis]), "axis_dim": data.shape[axis],
                "inner": math.prod(data.shape[axis + 1:]), "count": indices.numel}

    def flops(self, node: Node, graph: Graph) -> int:
        return 0


@register
class GatherElements(OpDef):
    """out[i..] = data[i.. with the axis coordinate replaced by indices[i..]] (negatives wrap)."""

    name = "GatherElements"
    since = 11
    category = KERNEL
    dtypes = ALL_DTYPES

    def axis(self, node: Node, rank: int) -> int:
        return normalize_axis(node.int_attr("axis", 0), rank, node)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        data, indices = require(types, 0, node), require(types, 1, node)
        if data.rank != indices.rank:
            raise PycError("E009", "GatherElements data and indices differ in rank", where=node.name)
        return [TensorType(data.dtype, indices.shape)]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        data, indices = np.asarray(inputs[0]), np.asarray(inputs[1]).astype(np.int64)
        axis = self.axis(node, data.ndim)
        indices = np.where(indices < 0, indices + data.shape[axis], indices)
        # the output has the indices' shape: other axes of data may be longer (not broadcast)
        data = data[tuple(slice(None) if d == axis else slice(0, n) for d, n in enumerate(indices.shape))]
        return [np.take_along_axis(data, indices, axis=axis)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        data, indices = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
        axis = self.axis(node, data.rank)
        return {"dims": list(indices.shape), "axis": axis, "axis_dim": data.shape[axis],
                "in_strides": contiguous_strides(data.shape)}

    def flops(self, node: Node, graph: Graph) -> int:
        return 0
