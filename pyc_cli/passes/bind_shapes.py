"""Bind symbolic shape operands (issue #15): a shape subgraph's result becomes an attribute of
the node that reads it, so the subgraph dies.

An ONNX export with dynamic axes computes its Reshape targets, Expand shapes, Slice ends and
Range limits at run time, from Shape -> Gather -> Unsqueeze -> Concat (-> Cast, Mul, ...)
chains on int64. With static shapes fold_constants turns those chains into constants. With
symbolic dims, type propagation knows their values as expressions over the named dims (object
arrays of `Dim`s), which are not constants: the artifact cannot hold them. This pass moves such
a value into an attribute of its consumer (ints and Dims; the IR text prints a Dim as its
canonical expression), the consumer stops reading the chain, and dead-code elimination removes
it. A consumer keeps its inputs where one of its shape operands is not known at compile time
(a value computed from tensor data: issue #15, point 2).

    Reshape(x, shape)                   -> Reshape(x) {shape}
    Expand(x, shape)                    -> Expand(x) {shape}
    Slice(x, starts, ends, axes, steps) -> Slice(x) {starts, ends, axes, steps}
    Range(start, limit, delta)          -> Range() {start, limit, delta, dtype}   (integers)
    ConstantOfShape(shape) {value}      -> Expand(value) {shape}
    Pad(x, pads, value, axes)           -> Pad(x, _, value) {pads, axes}
    TopK(x, K)                          -> TopK(x) {k}

A symbolic value that a compute op reads as data (a Mul by the sequence length) comes from one
`pyc.DimValues {values, shape, dtype}` node (the elements computed from the run-time dims), so
no Shape node is left in a graph whose shape arithmetic is known.

Called by fold_constants after it folds what is static (static graphs have no symbolic value:
nothing here runs for them, and their IR and decision log are unchanged).
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.symbolic import Dim, DimLike, computed_dims
from ..ops import registry
from ..ops.propagate import symbolic_values
from .context import PassContext

NAME = "bind_shapes"

# op -> (input position, attribute) of each shape-deciding operand
OPERANDS: dict[str, tuple[tuple[int, str], ...]] = {
    "Reshape": ((1, "shape"),),
    "Expand": ((1, "shape"),),
    "Slice": ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")),
    "Range": ((0, "start"), (1, "limit"), (2, "delta")),
    "ConstantOfShape": ((0, "shape"),),
    "Pad": ((1, "pads"), (3, "axes")),
    "TopK": ((1, "k"),),
}
# Range's and TopK's operands are scalars: their attributes are single numbers, others lists
SCALAR_OPERANDS = frozenset({"Range", "TopK"})


def bind_shape_operands(graph: Graph, ctx: PassContext) -> Graph:
    """Move every symbolic shape operand into its consumer's attributes (see the module doc)."""
    symbolic = symbolic_values(graph)
    if not symbolic:
        return graph
    for node in list(graph.nodes):
        attrs = _bound_operands(graph, node, symbolic)
        if attrs is None:
            continue
        replacement = _rewrite(graph, node, attrs)
        graph.nodes[graph.nodes.index(node)] = replacement
        shown = {key: _text(value) for key, value in attrs.items()}
        ctx.log(NAME, [node.name], "bind_shape_operands",
                "its shape operands are computed from symbolic dims: bound as attributes, "
                "the shape subgraph that computed them is no longer read",
                before=node.op, after=replacement.op, attrs=shown)
    _materialize_data_reads(graph, ctx, symbolic)
    _materialize_outputs(graph, ctx, symbolic)
    return graph


def _materialize_outputs(graph: Graph, ctx: PassContext, symbolic: dict[str, np.ndarray]) -> None:
    """A graph output computed from symbolic dims (the Shape or Size of a symbolic tensor,
    returned) is written by a pyc.DimValues node: its producer's result is renamed and left
    to die, as the shape subgraph behind it (folding it would write its upper bounds)."""
    producers = graph.producers()
    for name in graph.outputs:
        producer = producers.get(name)
        if name not in symbolic or producer is None:
            continue
        renamed = graph.fresh_name(f"{name}_shape_arith")
        producer.outputs[producer.outputs.index(name)] = renamed
        graph.types[renamed] = graph.types[name]
        node = Node("pyc.DimValues", graph.fresh_name(f"{name}_dims"), [], [name],
                    {"values": _elements(symbolic[name]), "shape": list(graph.types[name].shape),
                     "dtype": graph.types[name].dtype.value})
        graph.nodes.insert(graph.nodes.index(producer) + 1, node)
        ctx.log(NAME, [producer.name], "materialize_dims",
                "a graph output computed from symbolic dims: computed from the run-time dims",
                after=[_text(v) for v in _elements(symbolic[name])], value=name)


def _materialize_data_reads(graph: Graph, ctx: PassContext,
                            symbolic: dict[str, np.ndarray]) -> None:
    """A symbolic value that a node reads as data (a Mul of an index by the sequence length)
    comes from one pyc.DimValues node instead of its shape subgraph; shape arithmetic reading
    it (its output symbolic too) is left to die with the subgraph."""
    made: dict[str, str] = {}
    for node in list(graph.nodes):
        if any(out in symbolic for out in node.outputs if out):
            continue  # shape arithmetic: dead once its consumers are bound
        for position, name in enumerate(node.inputs):
            if name not in symbolic:
                continue
            if name not in made:
                made[name] = _dim_values(graph, node, name, symbolic[name])
                ctx.log(NAME, [node.name], "materialize_dims",
                        "reads a value computed from symbolic dims as data: computed from "
                        "the run-time dims, not by its shape subgraph",
                        after=[_text(v) for v in _elements(symbolic[name])], value=name)
            node.inputs[position] = made[name]


def _dim_values(graph: Graph, reader: Node, name: str, value: np.ndarray) -> str:
    """Insert a pyc.DimValues node computing `value` before `reader`; its output's name."""
    ttype = graph.types[name]
    out = graph.fresh_name(f"{name}_dims")
    node = Node("pyc.DimValues", graph.fresh_name(f"{name}_dims"), [], [out],
                {"values": _elements(value), "shape": list(ttype.shape),
                 "dtype": ttype.dtype.value})
    graph.types[out] = ttype
    graph.nodes.insert(graph.nodes.index(reader), node)
    return out


def _elements(value: np.ndarray) -> list[DimLike]:
    return [v if isinstance(v, Dim) else int(v) for v in value.reshape(-1).tolist()]


def _bound_operands(graph: Graph, node: Node, symbolic: dict[str, np.ndarray]
                    ) -> dict[str, DimLike | list[DimLike]] | None:
    """The node's shape operands as attributes, or None: not a consumer, no operand symbolic,
    or one not known at compile time."""
    operands = OPERANDS.get(node.op)
    if operands is None or not any(i < len(node.inputs) and node.inputs[i] in symbolic
                                   for i, _ in operands):
        return None
    if node.op == "Range" and graph.types[node.inputs[0]].dtype.numpy.kind not in "iu":
        return None  # a float Range's values are not shape arithmetic
    if any(b.computed == node.name for out in node.outputs if out
           for b in computed_dims([graph.types[out].shape]).values()):
        return None  # the node computes its size at run time from its operands (point 2)
    attrs: dict[str, DimLike | list[DimLike]] = {}
    for index, key in operands:
        name = node.inputs[index] if index < len(node.inputs) else ""
        if not name:
            continue
        value = symbolic.get(name, graph.constants.get(name))
        if value is None:
            return None  # computed from tensor data at run time (issue #15, point 2)
        elements = _elements(value)
        attrs[key] = elements[0] if node.op in SCALAR_OPERANDS else elements
    return attrs


def _rewrite(graph: Graph, node: Node, attrs: dict[str, DimLike | list[DimLike]]) -> Node:
    """The consumer reading its operands from `attrs`; outputs and names unchanged."""
    kept = {k: v for k, v in node.attrs.items() if k not in attrs}
    if node.op == "ConstantOfShape":
        # a fill of a run-time size is a broadcast of its one value: Expand has kernels
        fill = registry.get("ConstantOfShape")._fill(node)  # type: ignore[attr-defined]
        value = graph.add_constant(f"{node.name}_value", fill.reshape(()))
        return Node("Expand", node.name, [value], node.outputs, {"shape": attrs["shape"]},
                    node.ann)
    if node.op == "Range":
        kept["dtype"] = graph.types[node.inputs[0]].dtype.value
        return Node("Range", node.name, [], node.outputs, {**kept, **attrs}, node.ann)
    # the bound positions become absent (Pad keeps its constant_value, input 2)
    bound = {index for index, key in OPERANDS[node.op] if key in attrs}
    inputs = ["" if i in bound else name for i, name in enumerate(node.inputs)]
    while inputs and not inputs[-1]:
        inputs.pop()
    return Node(node.op, node.name, inputs, node.outputs, {**kept, **attrs}, node.ann)


def _text(value: DimLike | list[DimLike]) -> str | list[str]:
    return [str(v) for v in value] if isinstance(value, list) else str(value)
