"""Constant folding: evaluate every node whose inputs are all known at compile time.

Static shapes make `Shape` known, so the Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains
that exporters emit collapse to constants here; each fold is logged. Symbolic shapes (issue #15)
make them expressions instead, which bind_shapes.py gives their consumers as attributes.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.symbolic import has_dims
from ..ops import registry
from ..ops.propagate import evaluate_node, symbolic_values
from ..ops.registry import typed_node
from .bind_shapes import bind_shape_operands
from .context import PassContext

NAME = "fold_constants"


def fold_constants(graph: Graph, ctx: PassContext) -> Graph:
    folded: list[Node] = []
    # a static value computed from symbolic ones (the first two dims of Shape(x), when only the
    # last is symbolic) folds too: the symbolic values are known, only not constants
    symbolic = symbolic_values(graph) if _symbolic_inputs(graph) else {}
    for node in list(graph.nodes):
        values = _try_fold(graph, node, symbolic)
        if values is None:
            continue
        graph.nodes.remove(node)
        for name, value in zip(node.outputs, values):
            if name:
                graph.constants[name] = np.asarray(value, order="C").astype(
                    graph.types[name].dtype.numpy, copy=False)
        folded.append(node)
        ctx.log(NAME, [node.name], "fold", _reason(node),
                after=[str(graph.types[o]) for o in node.outputs if o])
    _copy_constant_outputs(graph, ctx)
    ops = sorted({n.op for n in folded})
    ctx.log(NAME, [], "summary", "nodes evaluated at compile time", after=len(folded), ops=ops)
    # what is computed from symbolic dims is not a constant: its consumers take it as attributes
    return bind_shape_operands(graph, ctx)


def _reason(node: Node) -> str:
    if hasattr(registry.get(node.op), "shape_value"):
        return "input shape is static"
    return "all inputs are compile-time constants"


def _symbolic_inputs(graph: Graph) -> bool:
    return any(has_dims(graph.types[name].shape) for name in graph.inputs)


def _try_fold(graph: Graph, node: Node, symbolic: dict[str, np.ndarray]
              ) -> list[np.ndarray] | None:
    opdef = registry.get(node.op)
    in_types = [graph.types.get(i) if i else None for i in node.inputs]
    in_values = [graph.constants.get(i, symbolic.get(i)) if i else None for i in node.inputs]
    out_types = [graph.types[o] for o in node.outputs if o]
    values = evaluate_node(opdef, node, in_types, in_values, out_types, limit=None)
    # symbolic shape values (issue #15) are known here but not constants: they stay computed
    if values is None or any(v.dtype == object for v in values):
        return None
    return values


def _copy_constant_outputs(graph: Graph, ctx: PassContext) -> None:
    """A graph output that folded to a constant is copied into the caller's buffer at run time."""
    for position, name in enumerate(list(graph.outputs)):
        if not graph.is_constant(name):
            continue
        array = graph.constants.pop(name)
        source = graph.add_constant(f"{name}_const", array)
        for node in graph.nodes:  # readers keep reading the constant, defined from the start
            node.inputs = [source if value == name else value for value in node.inputs]
        copy = typed_node(graph, "pyc.Copy", [source], f"copy_{name}", output=name)
        graph.nodes.append(copy)
        ctx.log(NAME, [copy.name], "materialize_output", "the output is a compile-time constant")
        graph.outputs[position] = name
