"""Type propagation by the op rules: every value's static type from the graph inputs, one pass
over the nodes. The importer types a fresh graph with it, the infer_shapes pass re-derives types
after rewrites, and canonicalize sees through not-yet-folded constants with `known_values`.

It evaluates small constant subgraphs on the fly (Shape -> Gather -> Concat chains) so that ops
whose output shape depends on an input value (Reshape, Expand, Slice, ...) get static shapes;
rewriting those subgraphs into constants is fold_constants' job, not this one's.
"""

from __future__ import annotations

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import TensorType, check_addressable
from . import registry
from .registry import GROWTH_LIMIT_BYTES, SHAPE_ONLY

# values evaluated during inference are shape-sized; larger constant work waits for folding
_EVAL_LIMIT = 1 << 16


def propagate_types(graph: Graph) -> dict[str, TensorType]:
    return _propagate(graph, _EVAL_LIMIT)[0]


def known_values(graph: Graph) -> dict[str, np.ndarray]:
    """Every value computable at compile time (constants and what folding would produce),
    without rewriting the graph: lets canonicalize see through not-yet-folded constants."""
    return _propagate(graph, None)[1]


def _propagate(graph: Graph, limit: int | None) -> tuple[dict[str, TensorType], dict[str, np.ndarray]]:
    types = {name: graph.types[name] for name in graph.inputs}
    types.update({name: TensorType.of(array) for name, array in graph.constants.items()})
    known: dict[str, np.ndarray] = dict(graph.constants)
    for node in graph.nodes:
        opdef = registry.get(node.op)
        in_types = [types.get(name) if name else None for name in node.inputs]
        in_values = [known.get(name) if name else None for name in node.inputs]
        out_types = infer_node(opdef, node, in_types, in_values)
        types.update({name: ttype for name, ttype in zip(node.outputs, out_types) if name})
        results = evaluate_node(opdef, node, in_types, in_values, out_types, limit)
        known.update({name: value for name, value in zip(node.outputs, results or []) if name})
    return types, known


def infer_node(opdef: registry.OpDef, node: Node, in_types: list[TensorType | None],
               in_values: list[np.ndarray | None]) -> list[TensorType]:
    """The node's output types by its op's rule; PYC-E009 where the rule meets a case it does not
    handle, and every output must be addressable."""
    try:
        out_types = opdef.infer(node, in_types, in_values)
    except PycError:
        raise
    except Exception as exc:  # an op rule met a case it does not handle
        raise PycError("E009", f"cannot infer the type of {node.op}: {exc}",
                       where=f"node {node.name!r}") from exc
    for name, ttype in zip(node.outputs, out_types):
        if name:
            check_addressable(f"value {name!r} ({ttype})", ttype.nbytes, f"node {node.name!r}")
    return out_types


def evaluate_node(opdef: registry.OpDef, node: Node, in_types: list[TensorType | None],
                  in_values: list[np.ndarray | None], out_types: list[TensorType],
                  limit: int | None) -> list[np.ndarray] | None:
    """The node's outputs computed at compile time by its numpy reference, or None where they
    are not known (an input is not) or too large: `limit` elements per output, or, with None,
    folding's rule (a constant never grows past GROWTH_LIMIT_BYTES beyond its inputs). This is
    the one constant evaluator: type propagation, constant folding and `pyc check` use it."""
    if hasattr(opdef, "shape_value") and in_types[0] is not None:  # Shape, Size: from the type
        return [opdef.shape_value(node, in_types[0])]
    present = [v for name, v in zip(node.inputs, in_values) if name]
    if limit is None:
        in_bytes = sum(v.nbytes for v in present if v is not None)
        small = sum(t.nbytes for t in out_types) <= max(GROWTH_LIMIT_BYTES, in_bytes)
    else:
        small = all(t.numel <= limit for t in out_types)
    if not small or (opdef.category != SHAPE_ONLY and any(v is None for v in present)):
        return None
    try:
        with np.errstate(all="ignore"):  # NaN / inf constants evaluate silently, as at run time
            results = opdef.evaluate(node, in_values)
    except NotImplementedError:
        return None
    except PycError:
        raise
    except Exception as exc:  # the numpy reference met values its shape rule let through
        raise PycError("E009", f"cannot evaluate {node.op} at compile time: "
                       f"{type(exc).__name__}: {exc}", where=f"node {node.name!r}",
                       hint="check the node's constant inputs") from exc
    return [np.asarray(value) for value in results]
