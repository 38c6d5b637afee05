"""Pad (constant, edge, reflect, wrap; negative pads crop) with pads from the attribute (Pad-2)
or constant inputs (Pad-11+, optional axes from 18)."""

from __future__ import annotations

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.symbolic import computed_dim, from_values, less
from ..ir.types import MODEL_DTYPES, TensorType
from .movement import contiguous_strides
from .registry import (
    KERNEL,
    VALUES_HINT,
    InRanges,
    InTypes,
    InValues,
    OpDef,
    Scalar,
    as_dim,
    ints_attr,
    normalize_axis,
    register,
    require,
    require_value,
)

MODES = ("constant", "edge", "reflect", "wrap")


@register
class Pad(OpDef):
    name = "Pad"
    since = 2
    category = KERNEL
    dtypes = MODEL_DTYPES
    static_inputs = (1, 2, 3)

    def mode(self, node: Node) -> str:
        mode = str(node.attrs.get("mode", "constant"))
        if mode not in MODES:
            raise PycError("E008", f"Pad mode {mode!r} is not supported", where=node.name)
        return mode

    def pads(self, node: Node, rank: int, values: InValues) -> tuple[list[int], list[int]]:
        """(begin, end) pads per axis; negative values crop. Pad-2 takes them as an attribute,
        Pad-11+ as inputs; a Pad whose symbolic pads passes/bind_shapes.py moved into
        attributes has the attribute form, with `axes` too (issue #15: pads may be Dims)."""
        if "pads" in node.attrs:
            pads = ints_attr(node, "pads")
            axes = [normalize_axis(a, rank, node) for a in ints_attr(node, "axes")] \
                if "axes" in node.attrs else list(range(rank))
        else:
            pads = [as_dim(p) for p in require_value(values, 1, node, "pads").reshape(-1)]
            has_axes = len(node.inputs) > 3 and bool(node.inputs[3])
            axes = [normalize_axis(int(a), rank, node) for a in
                    require_value(values, 3, node, "axes").reshape(-1)] if has_axes else list(range(rank))
        if len(pads) != 2 * len(axes):
            raise PycError("E009", f"Pad has {len(pads)} pads for {len(axes)} axes", where=node.name)
        begin, end = [0] * rank, [0] * rank
        for k, axis in enumerate(axes):
            begin[axis], end[axis] = pads[k], pads[k + len(axes)]
        return begin, end

    def value(self, node: Node, values: InValues) -> float:
        if len(node.inputs) > 2 and node.inputs[2]:
            return require_value(values, 2, node, "constant_value").reshape(-1)[0].item()
        return node.float_attr("value", 0.0)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if x.rank == 0:
            raise PycError("E009", "Pad of a scalar (rank 0): there is no axis to pad",
                           where=node.name)
        self.mode(node)
        begin, end = self.pads(node, x.rank, values)
        if "pads" not in node.attrs and any(from_values(p) for p in (*begin, *end)):
            # pads computed from input values (`s + 1`): the kernel reads them at run time and
            # computes the padded sizes, as for pads that are an input (runtime_infer)
            raise PycError("E008", "Pad's pads are computed from input values at run time",
                           where=node.name, hint=VALUES_HINT)
        shape = tuple(d + b + e for d, b, e in zip(x.shape, begin, end))
        if any(less(d, 0) for d in shape):  # decided by the bounds where dims are symbolic
            raise PycError("E009", f"Pad crops below zero size: {list(shape)}", where=node.name)
        return [TensorType(x.dtype, shape)]

    def runtime_infer(self, node: Node, types: InTypes, values: InValues,
                      refusal: PycError, ranges: InRanges) -> list[TensorType]:
        """Pads computed at run time (issue #15, point 2): each padded axis gets a computed
        dim, bounded by the axis' upper bound plus the largest pads the pads' interval allows
        (ops/intervals.py: from the declared values of the inputs they come from); the axes
        and the constant value must be known."""
        x = require(types, 0, node)
        has_axes = len(node.inputs) > 3 and bool(node.inputs[3])
        has_value = len(node.inputs) > 2 and bool(node.inputs[2])
        if "pads" in node.attrs or (has_axes and values[3] is None) or (
                has_value and values[2] is None) or x.rank == 0:
            raise refusal
        self.mode(node)
        pads = ranges[1] if len(ranges) > 1 else None
        if pads is None:
            raise PycError(refusal.code, refusal.what, where=refusal.where,
                           hint=VALUES_HINT) from None
        axes_value = values[3] if has_axes else None
        axes = [normalize_axis(int(a), x.rank, node) for a in axes_value.reshape(-1)] \
            if axes_value is not None else list(range(x.rank))
        count = len(axes)
        highest = np.broadcast_to(pads.hi, (2 * count,)) if pads.hi.ndim == 0 else pads.hi.reshape(-1)
        if highest.size != 2 * count:
            raise PycError("E009", f"Pad has {highest.size} pads for {count} axes", where=node.name)
        shape = list(x.shape)
        for k, axis in enumerate(axes):
            bound = int(x.shape[axis]) + int(highest[k]) + int(highest[k + count])
            shape[axis] = computed_dim(node.name, axis, max(bound, 0))
        return [TensorType(x.dtype, tuple(shape))]

    def runtime_axes(self, node: Node, graph: Graph) -> list[int]:
        """The axes a Pad with run-time pads pads, in the pads' order."""
        x = graph.types[node.inputs[0]]
        if len(node.inputs) > 3 and node.inputs[3]:
            return [normalize_axis(int(a), x.rank, node) for a in graph.constants[node.inputs[3]].reshape(-1)]
        return list(range(x.rank))

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        begin, end = self.pads(node, x.ndim, inputs)
        crop = tuple(slice(max(0, -b), d - max(0, -e)) for d, b, e in zip(x.shape, begin, end))
        widths = [(max(0, b), max(0, e)) for b, e in zip(begin, end)]
        mode = {"edge": "edge", "reflect": "reflect", "wrap": "wrap"}.get(self.mode(node), "constant")
        if mode == "constant":
            return [np.pad(x[crop], widths, constant_values=self.value(node, inputs))]
        return [np.pad(x[crop], widths, mode=mode)]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        x, out = graph.types[node.inputs[0]], graph.types[node.outputs[0]]
        values: InValues = [graph.constants.get(n) if n else None for n in node.inputs]
        if "pads" not in node.attrs and values[1] is None:  # pads read at run time (point 2)
            return {"out_dims": list(out.shape), "in_dims": list(x.shape), "begin": None,
                    "axes": self.runtime_axes(node, graph), "mode": self.mode(node),
                    "value": Scalar(x.dtype, self.value(node, values))}
        begin, _ = self.pads(node, x.rank, values)
        return {"out_dims": list(out.shape), "in_dims": list(x.shape), "begin": begin,
                "in_strides": contiguous_strides(x.shape), "mode": self.mode(node),
                "value": Scalar(x.dtype, self.value(node, values))}

    def flops(self, node: Node, graph: Graph) -> int:
        return 0
