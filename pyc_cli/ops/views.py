"""Ops that only reinterpret the shape of contiguous data: lowered to pointer aliases, no code."""

from __future__ import annotations

import math

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.symbolic import (
    Dim,
    EntryStep,
    SymbolicError,
    bare_value_dim,
    entry_dim,
    entry_source,
    exact_div,
    has_dims,
    known_at_entry,
    numel,
    sign_bounds,
)
from ..ir.types import MODEL_DTYPES, TensorType
from .registry import (
    VIEW,
    InTypes,
    InValues,
    OpDef,
    as_dim,
    ints_attr,
    normalize_axis,
    register,
    require,
    require_value,
    shape_operand,
)

ALL_DTYPES = MODEL_DTYPES


class ViewOp(OpDef):
    category = VIEW
    dtypes = ALL_DTYPES

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        source = require(types, 0, node)
        return [TensorType(source.dtype, self.out_shape(node, source.shape, values))]

    def out_shape(self, node: Node, shape: tuple[int, ...], values: InValues) -> tuple[int, ...]:
        raise NotImplementedError

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        data = np.asarray(inputs[0])
        return [data.reshape(self.out_shape(node, data.shape, inputs))]

    def flops(self, node: Node, graph: object) -> int:
        return 0


@register
class Reshape(ViewOp):
    name = "Reshape"
    since = 5
    static_inputs = (1,)

    def out_shape(self, node: Node, shape: tuple[int, ...], values: InValues) -> tuple[int, ...]:
        target = [as_dim(d) for d in shape_operand(node, values, 1, "shape", "shape")]
        allow_zero = node.int_attr("allowzero", 0)
        if not allow_zero and any(d == 0 and i >= len(shape) for i, d in enumerate(target)):
            raise PycError("E009", f"Reshape target {target} copies (0) a dim that the input "
                           f"{list(shape)} does not have", where=node.name)
        if allow_zero and 0 in target and -1 in target:
            raise PycError("E009", f"Reshape target {target} has both 0 and -1 with allowzero=1 "
                           "(the -1 is ambiguous)", where=node.name)
        dims = [shape[i] if d == 0 and not allow_zero else d for i, d in enumerate(target)]
        if dims.count(-1) > 1 or any(d < -1 for d in dims):
            raise PycError("E009", f"Reshape target {target} has more than one -1 or a negative "
                           "dim", where=node.name)
        if -1 in dims:
            index = dims.index(-1)
            known = math.prod(d for d in dims if d != -1)
            dims[index] = _inferred_dim(node, index, math.prod(shape), known)
        if math.prod(dims) != math.prod(shape):
            solved = _solve_value_dim(dims, shape)
            if solved is not None:
                dims = solved
            elif not has_dims([*dims, *shape]):
                raise PycError("E009", f"cannot reshape {list(shape)} to {target}",
                               where=node.name)
            else:
                _check_at_entry(node, shape, dims)
        return tuple(dims)

    def entry_steps(self, node: Node, graph: Graph) -> list[EntryStep]:
        """Its -1 where the entry point computes it (an entry dim: the input's element count
        over the other target dims), and its element counts where they are equal only for
        some values of the dims (see _check_at_entry)."""
        if not node.inputs or node.inputs[0] not in graph.types or \
                not node.outputs or node.outputs[0] not in graph.types:
            return []
        source = numel(graph.types[node.inputs[0]].shape)
        out = graph.types[node.outputs[0]].shape
        steps = []
        for axis, dim in enumerate(out):
            found = [b for b in (dim.dims().values() if isinstance(dim, Dim) else ())
                     if entry_source(b) == node.name]
            if len(found) == 1 and dim == Dim.var(found[0]):
                steps.append(EntryStep("dim", node.name, source, numel(out[:axis] + out[axis + 1:]),
                                       found[0].name))
        if numel(out) != source:
            steps.append(EntryStep("equal", node.name, source, numel(out)))
        return steps


def _inferred_dim(node: Node, index: int, total: int, known: int) -> int:
    """The size a Reshape's -1 stands for: total // known, a polynomial where it divides
    exactly; else (issue #15, point 2: a target computed from input values, `[val_n, -1]`) an
    entry dim, which the entry point computes as that quotient before any kernel runs (abi
    entry_steps, which also refuse a run where it does not divide: status 6, PYC-E041)."""
    if not known:
        return 0
    if not has_dims([total, known]):
        return total // known
    try:
        quotient = total // known
    except SymbolicError:
        quotient = None
    if quotient is not None and quotient * known == total:
        return quotient
    if not known_at_entry([total, known]):
        _refuse_kernel_sizes(node, f"its -1 is {total} // ({known})")
    lo = sign_bounds(known)[0]
    return entry_dim(node.name, index, 0, int(total) // max(lo, 1))


def _check_at_entry(node: Node, shape: tuple[int, ...], dims: list[int]) -> None:
    """A Reshape whose element counts are equal only for some values of the dims (its target
    computed from input values: issue #15, point 2) is checked by the entry point before any
    kernel runs (abi.entry_steps: status 6, PYC-E041 where they differ); it needs every dim
    known there, and counts that can be equal within the bounds."""
    if not known_at_entry([*shape, *dims]):
        _refuse_kernel_sizes(node, f"it reshapes {list(shape)} to {dims}")
    low = 0 if node.int_attr("allowzero", 0) else 1
    for dim in dims:
        inferred = isinstance(dim, Dim) and any(entry_source(b) == node.name
                                                for b in dim.dims().values())
        if isinstance(dim, Dim) and not inferred and sign_bounds(dim)[0] < low:
            raise PycError("E051", f"Reshape target dim {dim} may be {sign_bounds(dim)[0]} at run "
                           f"time, which ONNX reads as {'copy the input dim' if low else 'infer'}"
                           ", not as a size", where=f"node {node.name!r}",
                           hint="declare the input values it is computed from with a range that "
                           "keeps it at least 1 (--input-values NAME=LO..HI)")
    lo, hi = sign_bounds(math.prod(dims) - math.prod(shape))
    if lo > 0 or hi < 0:
        raise PycError("E009", f"cannot reshape {list(shape)} to {dims}: the element counts "
                       "differ for every value of the dims", where=node.name)


def _refuse_kernel_sizes(node: Node, what: str) -> None:
    raise PycError("E051", f"Reshape: {what}; its element counts match only for some run-time "
                   "sizes, and one of those is computed by a kernel during the run (the entry "
                   "point, which checks the counts before any kernel runs, does not know it)",
                   where=f"node {node.name!r}",
                   hint="compute the target from the input dims or from input values declared "
                   "with --input-values, or give it as a constant")


def _solve_value_dim(dims: list[int], shape: tuple[int, ...]) -> list[int] | None:
    """`dims` with the one value dim (an input's element read at run time, issue #15) whose
    value the element count decides replaced by that value: reshaping [2, D*H*W, 3] to
    [size[0], D, H, W, 3] is valid only where size[0] is 2 (AffineGrid's 3-D function). The
    entry point checks the assumption (abi.value_assumptions: status 6 otherwise). None where
    no single value dim within its bounds makes the counts equal."""
    found = []
    for index, dim in enumerate(dims):
        bounds = bare_value_dim(dim)
        if bounds is None:
            continue
        rest = math.prod(d for k, d in enumerate(dims) if k != index)
        value = exact_div(math.prod(shape), rest) if rest else None
        if type(value) is int and bounds.lo <= value <= bounds.hi and \
                value * rest == math.prod(shape):
            found.append((index, value))
    if len(found) != 1:
        return None
    index, value = found[0]
    return [value if k == index else d for k, d in enumerate(dims)]


@register
class Flatten(ViewOp):
    name = "Flatten"

    def out_shape(self, node: Node, shape: tuple[int, ...], values: InValues) -> tuple[int, ...]:
        axis = node.int_attr("axis", 1)
        if not -len(shape) <= axis <= len(shape):
            raise PycError("E009", f"Flatten axis {axis} is out of range for rank {len(shape)} "
                           f"(allowed {-len(shape)}..{len(shape)})", where=node.name)
        axis = axis + len(shape) if axis < 0 else axis
        return (math.prod(shape[:axis]), math.prod(shape[axis:]))


def _axes(node: Node, values: InValues) -> list[int] | None:
    """Axes from the attribute (old opsets) or the optional second input (opset 13+)."""
    if "axes" in node.attrs:
        return ints_attr(node, "axes")
    if len(node.inputs) > 1 and node.inputs[1]:
        # a 0-d axes tensor (onnxruntime takes it: the AffineGrid function) is one axis
        return [int(a) for a in require_value(values, 1, node, "axes").reshape(-1)]
    return None


@register
class Squeeze(ViewOp):
    name = "Squeeze"
    static_inputs = (1,)

    def out_shape(self, node: Node, shape: tuple[int, ...], values: InValues) -> tuple[int, ...]:
        axes = _axes(node, values)
        if axes is None:
            return tuple(d for d in shape if d != 1)
        drop = {normalize_axis(a, len(shape), node) for a in axes}
        return tuple(d for i, d in enumerate(shape) if i not in drop)


@register
class Unsqueeze(ViewOp):
    name = "Unsqueeze"
    static_inputs = (1,)

    def out_shape(self, node: Node, shape: tuple[int, ...], values: InValues) -> tuple[int, ...]:
        axes = _axes(node, values) or []
        rank = len(shape) + len(axes)
        inserted = sorted(normalize_axis(a, rank, node) for a in axes)
        dims = list(shape)
        for axis in inserted:
            dims.insert(axis, 1)
        return tuple(dims)
