"""Ops that canonicalize rewrites into views, Expand, Transpose, Slice and Where (their `decompose`):
Tile, DepthToSpace, SpaceToDepth, Split and Trilu. No kernels of their own."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import PycError
from ..ir.graph import AttrValue, Graph, Node
from ..ir.symbolic import NUMBERS_HINT, Dim, DimLike, computed_dim, has_dims, less
from ..ir.types import MODEL_DTYPES, DType, TensorType
from .registry import (
    KERNEL,
    VALUES_HINT,
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
    typed_node,
)

ALL_DTYPES = MODEL_DTYPES


def _shape_constant(graph: Graph, base: str, dims: list[int] | tuple[int, ...]) -> str:
    if has_dims(dims):  # np.int64 would keep each Dim's upper bound only
        raise PycError("E051", f"this decomposition cannot take symbolic dims yet ({list(dims)})",
                       where=f"node {base.rsplit('_', 1)[0]!r}", hint=NUMBERS_HINT)
    return graph.add_constant(base, np.array(list(dims), np.int64))


def _reshaping(graph: Graph, op: str, base: str, dims: list[DimLike],
               attrs: Mapping[str, AttrValue]) -> tuple[str, list[str], dict[str, AttrValue]]:
    """A Reshape or Expand step to `dims`: its target a constant, or, where it holds symbolic
    dims (issue #15), the `shape` attribute that passes/bind_shapes.py also writes."""
    if has_dims(dims):
        return (op, [], {**attrs, "shape": list(dims)})
    return (op, [_shape_constant(graph, base, dims)], dict(attrs))


# decompositions reshape to exact shapes: a 0 is a zero-size dim, not "copy the input dim"
EXACT = {"allowzero": 1}


def _chain(graph: Graph, node: Node, steps: list[tuple[str, list[str], dict]]) -> list[Node]:
    """Typed nodes applying `steps` (op, extra inputs, attrs) to the node's first input; the last
    one defines the node's output."""
    nodes: list[Node] = []
    current = node.inputs[0]
    for index, (op, extra, attrs) in enumerate(steps):
        last = index == len(steps) - 1
        nodes.append(typed_node(graph, op, [current, *extra], f"{node.name}_{index}_{op.lower()}",
                                attrs, output=node.outputs[0] if last else None))
        current = nodes[-1].outputs[0]
    return nodes


class Rearrange(OpDef):
    category = KERNEL  # never lowered: canonicalize always decomposes it
    dtypes = ALL_DTYPES

    def flops(self, node: Node, graph: Graph) -> int:
        return 0


@register
class Tile(Rearrange):
    """x viewed as [1,d0,1,d1,..], expanded to [r0,d0,r1,d1,..], viewed as [r0*d0, r1*d1, ..]."""

    name = "Tile"
    since = 6
    static_inputs = (1,)
    lowering = "decomposes into Reshape / Expand (repeats read at run time: kernel tile_runtime)"

    def repeats(self, node: Node, rank: int, values: InValues) -> list[int]:
        repeats = [as_dim(r) for r in require_value(values, 1, node, "repeats").reshape(-1)]
        if len(repeats) != rank or any(less(r, 0) for r in repeats):
            raise PycError("E009", f"Tile repeats {repeats} do not fit rank {rank}", where=node.name)
        return repeats

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        repeats = self.repeats(node, x.rank, values)
        return [TensorType(x.dtype, tuple(d * r for d, r in zip(x.shape, repeats)))]

    def runtime_infer(self, node: Node, types: InTypes, values: InValues,
                      refusal: PycError, ranges: InRanges) -> list[TensorType]:
        """Repeats computed at run time from input values without value dims (a Cast of a
        float input: issue #15, point 2): each axis whose repeat is not one known value gets
        a computed dim bounded by the axis times the repeat's highest declared value (ops/
        intervals.py); static data only (tile_runtime checks the other axes' repeats)."""
        x = require(types, 0, node)
        interval = ranges[1] if len(ranges) > 1 else None
        if has_dims(x.shape) or x.rank == 0:
            raise refusal
        if interval is None:
            raise PycError(refusal.code, refusal.what, where=refusal.where,
                           hint=VALUES_HINT) from None
        lows, highs = (np.broadcast_to(v, (x.rank,)) if v.ndim == 0 else v.reshape(-1)
                       for v in (interval.lo, interval.hi))
        if highs.size != x.rank:
            raise PycError("E009", f"Tile has {highs.size} repeats for rank {x.rank}",
                           where=node.name)
        shape: list[DimLike] = []
        for axis, (d, lo, hi) in enumerate(zip(x.shape, lows, highs)):
            if hi < 0:
                raise PycError("E009", f"Tile repeats of axis {axis} are at most {hi} (the "
                               "declared values)", where=node.name)
            shape.append(int(d) * int(hi) if lo == hi else
                         computed_dim(node.name, axis, int(d) * int(np.floor(hi))))
        return [TensorType(x.dtype, tuple(shape))]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        """tile_runtime's axes (every axis reads its repeat)."""
        return {"axes": list(range(graph.types[node.inputs[0]].rank))}

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        return [np.tile(x, self.repeats(node, x.ndim, inputs))]

    def decompose(self, node: Node, graph: Graph, values: InValues) -> list[Node] | None:
        if len(values) > 1 and values[1] is None:
            return None  # repeats read at run time: tile_runtime
        x = graph.types[node.inputs[0]]
        repeats = self.repeats(node, x.rank, values)
        spread = [v for d in x.shape for v in (1, d)]
        expanded = [v for d, r in zip(x.shape, repeats) for v in (r, d)]
        out = [d * r for d, r in zip(x.shape, repeats)]
        return _chain(graph, node, [
            _reshaping(graph, "Reshape", f"{node.name}_spread", spread, EXACT),
            _reshaping(graph, "Expand", f"{node.name}_expanded", expanded, {}),
            _reshaping(graph, "Reshape", f"{node.name}_shape", out, EXACT),
        ])


class BlockRearrange(Rearrange):
    """DepthToSpace / SpaceToDepth: reshape, transpose, reshape (as their ONNX function bodies)."""

    def block(self, node: Node) -> int:
        return node.int_attr("blocksize")

    def plan(self, node: Node, shape: tuple[int, ...]) -> tuple[list[int], list[int], list[int]]:
        """(intermediate shape, transpose perm, output shape)."""
        raise NotImplementedError

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if x.rank != 4:
            raise PycError("E009", f"{node.op} needs a 4-D input", where=node.name)
        return [TensorType(x.dtype, tuple(self.plan(node, x.shape)[2]))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        middle, perm, out = self.plan(node, x.shape)
        return [np.ascontiguousarray(np.transpose(x.reshape(middle), perm)).reshape(out)]

    def decompose(self, node: Node, graph: Graph, values: InValues) -> list[Node] | None:
        middle, perm, out = self.plan(node, graph.types[node.inputs[0]].shape)
        return _chain(graph, node, [
            _reshaping(graph, "Reshape", f"{node.name}_blocks", middle, EXACT),
            ("Transpose", [], {"perm": perm}),
            _reshaping(graph, "Reshape", f"{node.name}_shape", out, EXACT),
        ])


@register
class DepthToSpace(BlockRearrange):
    name = "DepthToSpace"
    since = 11  # mode (DCR/CRD) exists from version 11

    def plan(self, node: Node, shape: tuple[int, ...]) -> tuple[list[int], list[int], list[int]]:
        n, c, h, w = shape
        b = self.block(node)
        if c % (b * b):
            raise PycError("E009", f"DepthToSpace channels {c} not divisible by {b * b}",
                           where=node.name)
        out = [n, c // (b * b), h * b, w * b]
        if str(node.attrs.get("mode", "DCR")) == "CRD":
            return [n, c // (b * b), b, b, h, w], [0, 1, 4, 2, 5, 3], out
        return [n, b, b, c // (b * b), h, w], [0, 3, 4, 1, 5, 2], out


@register
class SpaceToDepth(BlockRearrange):
    name = "SpaceToDepth"

    def plan(self, node: Node, shape: tuple[int, ...]) -> tuple[list[int], list[int], list[int]]:
        n, c, h, w = shape
        b = self.block(node)
        if h % b or w % b:
            raise PycError("E009", f"SpaceToDepth spatial dims {h}x{w} not divisible by {b}",
                           where=node.name)
        out = [n, c * b * b, h // b, w // b]
        if str(node.attrs.get("mode", "DCR")) == "CRD":
            return [n, c, h // b, b, w // b, b], [0, 1, 3, 5, 2, 4], out
        return [n, c, h // b, b, w // b, b], [0, 3, 5, 1, 2, 4], out


@register
class Split(Rearrange):
    """One Slice per output, along `axis`; sizes from the `split` input (13+), the attribute
    (older), `num_outputs` (18+) or an equal split."""

    name = "Split"
    since = 2
    static_inputs = (1,)
    lowering = "decomposes into Slices (sizes read at run time: kernel split_runtime)"

    def sizes(self, node: Node, shape: tuple[int, ...], values: InValues) -> tuple[int, list[int]]:
        axis = normalize_axis(node.int_attr("axis", 0), len(shape), node)
        dim, count = shape[axis], len(node.outputs)
        if len(node.inputs) > 1 and node.inputs[1]:
            sizes = [int(s) for s in require_value(values, 1, node, "split").reshape(-1)]
        elif "split" in node.attrs:
            sizes = ints_attr(node, "split")
        elif "num_outputs" in node.attrs:
            chunk = -(-dim // count)
            sizes = [min(chunk, max(0, dim - chunk * k)) for k in range(count)]
        else:
            sizes = [dim // count] * count
        if sum(sizes) != dim or len(sizes) != count:
            raise PycError("E009", f"Split sizes {sizes} do not cover dim {dim} in {count} parts",
                           where=node.name)
        return axis, sizes

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if declared_sizes(node, values):
            # sizes from an input with declared values (`--input-values`): value dims, which
            # the cover check cannot decide; read at run time like computed sizes
            parts = self._run_time_parts(node, x, types[1], values[1])
            if parts is not None:
                return parts
        axis, sizes = self.sizes(node, x.shape, values)
        return [TensorType(x.dtype, x.shape[:axis] + (s,) + x.shape[axis + 1:]) for s in sizes]

    def runtime_infer(self, node: Node, types: InTypes, values: InValues,
                      refusal: PycError, ranges: InRanges) -> list[TensorType]:
        """Sizes from a tensor computed at run time (issue #15, point 2): output i's size along
        the axis is a dim the Split computes (`rt_NODE_i`, 0..the axis size; their sum is
        checked at run time), over static data; otherwise the refusal stands."""
        x = require(types, 0, node)
        if values[1] is not None:
            raise refusal
        parts = self._run_time_parts(node, x, types[1] if len(node.inputs) > 1 else None, None)
        if parts is None:
            raise refusal
        return parts

    def _run_time_parts(self, node: Node, x: TensorType, sizes: TensorType | None,
                        declared: np.ndarray | None) -> list[TensorType] | None:
        """Output i's size along the axis a dim the Split computes at run time, in 0..the axis
        size, or 0..the upper bound of element i's declared values where smaller (the kernel
        refuses a size past its dim's bound); None where the data is symbolic or the sizes
        are not one per output."""
        if sizes is None or not node.inputs[1] or has_dims(x.shape) or x.rank == 0 \
                or sizes.numel != len(node.outputs):
            return None
        axis = normalize_axis(node.int_attr("axis", 0), x.rank, node)
        highs = [int(x.shape[axis])] * len(node.outputs)
        if declared is not None:
            highs = [min(h, int(v.bounds()[1]) if isinstance(v, Dim) else int(v))
                     for h, v in zip(highs, declared.reshape(-1))]
        return [TensorType(x.dtype, x.shape[:axis] + (computed_dim(node.name, index, high),)
                           + x.shape[axis + 1:]) for index, high in enumerate(highs)]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        axis, sizes = self.sizes(node, x.shape, inputs)
        return [np.ascontiguousarray(part) for part in
                np.split(x, np.cumsum(sizes)[:-1].tolist(), axis=axis)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        """split_runtime's geometry: [outer, axis, inner] of the (static) data."""
        shape = graph.types[node.inputs[0]].shape
        axis = normalize_axis(node.int_attr("axis", 0), len(shape), node)
        return {"outer": int(np.prod(shape[:axis], dtype=np.int64)), "axis_dim": int(shape[axis]),
                "inner": int(np.prod(shape[axis + 1:], dtype=np.int64))}

    def decompose(self, node: Node, graph: Graph, values: InValues) -> list[Node] | None:
        if len(node.inputs) > 1 and node.inputs[1] and (values[1] is None
                                                        or declared_sizes(node, values)):
            return None  # sizes read at run time: split_runtime
        axis, sizes = self.sizes(node, graph.types[node.inputs[0]].shape, values)
        axes = _shape_constant(graph, f"{node.name}_axis", [axis])
        nodes = []
        for index, (out, begin) in enumerate(zip(node.outputs, [0, *np.cumsum(sizes).tolist()])):
            if not out:
                continue
            starts = _shape_constant(graph, f"{node.name}_start{index}", [begin])
            ends = _shape_constant(graph, f"{node.name}_end{index}", [begin + sizes[index]])
            nodes.append(typed_node(graph, "Slice", [node.inputs[0], starts, ends, axes],
                                    f"{node.name}_{index}_slice", output=out))
        return nodes


def declared_sizes(node: Node, values: InValues) -> bool:
    """Whether a Split's sizes are value dims (an input with declared values)."""
    known = values[1] if len(node.inputs) > 1 and node.inputs[1] and len(values) > 1 else None
    return known is not None and known.dtype == object and has_dims(known.reshape(-1).tolist())


@register
class Trilu(Rearrange):
    """Where(constant triangle mask over the last two dims, x, 0)."""

    name = "Trilu"
    since = 14
    static_inputs = (1,)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if x.rank < 2:
            raise PycError("E009", "Trilu needs a rank >= 2 input", where=node.name)
        return [x]

    def mask(self, node: Node, shape: tuple[int, ...], values: InValues) -> np.ndarray:
        has_k = len(node.inputs) > 1 and bool(node.inputs[1])
        k = int(require_value(values, 1, node, "k").reshape(-1)[0]) if has_k else 0
        ones = np.ones(shape[-2:], bool)
        upper = node.int_attr("upper", 1)
        return np.triu(ones, k) if upper else np.tril(ones, k)

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        return [np.where(self.mask(node, x.shape, inputs), x, np.zeros((), x.dtype))]

    def decompose(self, node: Node, graph: Graph, values: InValues) -> list[Node] | None:
        x = graph.types[node.inputs[0]]
        mask = graph.add_constant(f"{node.name}_mask", self.mask(node, x.shape, values))
        zero = graph.add_constant(f"{node.name}_zero", np.zeros((), x.dtype.numpy))
        return [typed_node(graph, "Where", [mask, node.inputs[0], zero], f"{node.name}_where",
                           output=node.outputs[0])]


@register
class OneHot(Rearrange):
    """Where(Unsqueeze(indices) == arange(depth) or == arange(depth) - depth, on, off)."""

    name = "OneHot"
    since = 11  # negative indices count from the end from version 11
    static_inputs = (1,)
    dtypes = tuple(d for d in MODEL_DTYPES if d is not DType.BOOL)

    def geometry(self, node: Node, rank: int, values: InValues) -> tuple[int, int]:
        depth = int(require_value(values, 1, node, "depth").reshape(-1)[0])
        axis = normalize_axis(node.int_attr("axis", -1), rank + 1, node)
        return depth, axis

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        indices, on_off = require(types, 0, node), require(types, 2, node)
        depth, axis = self.geometry(node, indices.rank, values)
        if on_off.shape != (2,) or depth < 0:
            raise PycError("E009", f"OneHot needs values of shape [2] (off, on) and a depth of 0 "
                           f"or more, got values {list(on_off.shape)} and depth {depth}",
                           where=node.name)
        return [TensorType(on_off.dtype, indices.shape[:axis] + (depth,) + indices.shape[axis:])]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        indices, on_off = np.asarray(inputs[0]).astype(np.int64), np.asarray(inputs[2]).reshape(-1)
        depth, axis = self.geometry(node, indices.ndim, inputs)
        indices = np.where(indices < 0, indices + depth, indices)
        hot = np.expand_dims(indices, axis) == np.arange(depth).reshape([depth] + [1] * (indices.ndim - axis))
        return [np.where(hot, on_off[1], on_off[0])]

    def decompose(self, node: Node, graph: Graph, values: InValues) -> list[Node] | None:
        indices = graph.types[node.inputs[0]]
        depth, axis = self.geometry(node, indices.rank, values)
        shape = [depth] + [1] * (indices.rank - axis)
        positions = [graph.add_constant(f"{node.name}_{which}", (np.arange(depth) - offset).astype(
            indices.dtype.numpy).reshape(shape)) for which, offset in (("arange", 0), ("from_end", depth))]
        nodes = [typed_node(graph, "Unsqueeze", [node.inputs[0]], f"{node.name}_unsqueeze",
                            {"axes": [axis]})]
        for index, position in enumerate(positions):
            nodes.append(typed_node(graph, "Equal", [nodes[0].outputs[0], position],
                                    f"{node.name}_{index}_equal"))
        nodes.append(typed_node(graph, "Or", [nodes[1].outputs[0], nodes[2].outputs[0]],
                                f"{node.name}_hot"))
        on_off = values[2]
        if on_off is not None:
            flat = np.asarray(on_off).reshape(-1)
            off, on = (graph.add_constant(f"{node.name}_{which}", np.array(flat[k]))
                       for k, which in ((0, "off"), (1, "on")))
        else:
            axes = _shape_constant(graph, f"{node.name}_axis", [0])
            bounds = [_shape_constant(graph, f"{node.name}_b{k}", [k]) for k in range(3)]
            parts = [typed_node(graph, "Slice", [node.inputs[2], bounds[k], bounds[k + 1], axes],
                                f"{node.name}_{k}_value") for k in range(2)]
            nodes += parts
            off, on = parts[0].outputs[0], parts[1].outputs[0]
        nodes.append(typed_node(graph, "Where", [nodes[3].outputs[0], on, off], f"{node.name}_where",
                                output=node.outputs[0]))
        return nodes
