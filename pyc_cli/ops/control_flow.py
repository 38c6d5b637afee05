"""If: compiled by inlining, never lowered.

The importer replaces an If whose condition is a compile-time constant (exporters compute it
from input shapes: Shape -> Gather -> Equal) with the nodes of the branch it selects
(frontend/onnx_import.py). An If left in the graph has a condition known only at run time,
which a static-shape AOT graph cannot express: typing it fails with a reason-coded error naming
the node, so `pyc build` refuses it and `pyc check` lists it with every other problem.
"""

from __future__ import annotations

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from .registry import KERNEL, InTypes, InValues, OpDef, register


@register
class If(OpDef):
    name = "If"
    since = 1
    category = KERNEL  # never lowered: no If reaches the passes
    dtypes = (DType.BOOL,)  # the condition's type; the branches may produce any tensor type
    static_inputs = (0,)  # the condition must be known at compile time
    lowering = "inlined at import (the branch a constant condition selects)"

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        raise not_constant_error(node)

    def flops(self, node: Node, graph: Graph) -> int:
        return 0


def not_constant_error(node: Node) -> PycError:
    cond = node.inputs[0] if node.inputs else ""
    return PycError("E008", f"If {node.name!r}: its condition {cond!r} is not a compile-time "
                    "constant (data-dependent control flow)", where=f"node {node.name!r}",
                    hint="fix the input shapes with --input-shape so the condition folds, or "
                    "export the model with the branch already chosen")
