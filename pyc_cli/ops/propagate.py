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
from ..ir.graph import Graph
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
                types[name] = ttype
        _maybe_evaluate(node, opdef, in_types, in_values, out_types, known, limit)
    return types, known


def _maybe_evaluate(node, opdef, in_types, in_values, out_types, known, limit) -> None:  # noqa: ANN001
    if hasattr(opdef, "shape_value") and in_types[0] is not None:
        known[node.outputs[0]] = opdef.shape_value(node, in_types[0])
        return
    present = [v for name, v in zip(node.inputs, in_values) if name]
    if limit is None:  # what folding would compute: it never grows a constant past the cap
        in_bytes = sum(v.nbytes for v in present if v is not None)
        small = sum(t.nbytes for t in out_types) <= max(GROWTH_LIMIT_BYTES, in_bytes)
    else:
        small = all(t.numel <= limit for t in out_types)
    if (opdef.category == SHAPE_ONLY or all(v is not None for v in present)) and small:
        try:
            with np.errstate(all="ignore"):  # NaN / inf constants evaluate silently, as they fold
                results = opdef.evaluate(node, in_values)
        except NotImplementedError:
            return
        except PycError:
            raise
        except Exception as exc:  # the numpy reference met values its shape rule let through
            raise PycError("E009", f"cannot evaluate {node.op} at compile time: "
                           f"{type(exc).__name__}: {exc}", where=f"node {node.name!r}",
                           hint="check the node's constant inputs") from exc
        for name, value in zip(node.outputs, results):
            if name:
                known[name] = np.asarray(value)
