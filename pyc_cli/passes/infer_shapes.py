"""Shape inference: derive every value's static type from the graph inputs and the op rules
(ops/propagate.py), and record in the decision log the types that changed."""

from __future__ import annotations

from dataclasses import replace

from ..ir import guards
from ..ir.graph import Graph
from ..ops import registry
from ..ops.propagate import propagate_types
from .context import PassContext


def infer_shapes(graph: Graph, ctx: PassContext) -> Graph:
    """Re-derive all types after the rewrites of earlier passes and record any that changed."""
    fresh = propagate_types(graph)
    for name, ttype in fresh.items():
        before = graph.types.get(name)
        if before != ttype:
            ctx.log("infer_shapes", [name], "retype", "type re-derived from op rules",
                    before=str(before), after=str(ttype))
            graph.types[name] = ttype
    # a node inside a run-time If branch: its checks hold only where the run takes the branch
    needed = guards.run_conditions(graph, demote=False) if guards.is_guarded(graph) else {}
    graph.entry_steps = [replace(step, guard=needed.get(node.name)) if needed.get(node.name)
                         else step for node in graph.nodes
                         for step in registry.get(node.op).entry_steps(node, graph)]
    for node_name in dict.fromkeys(step.node for step in graph.entry_steps
                                   if step.kind in ("bcast", "broadcast")):
        sides = [f"{step.left} vs {step.right}" for step in graph.entry_steps
                 if step.node == node_name and step.kind in ("bcast", "broadcast")]
        ctx.log("infer_shapes", [node_name], "run_time_broadcast",
                "a symbolic dim may be 1 where the other side is larger: the entry point "
                "decides the broadcast (each side 1 or the output's, else PYC-E041) and the "
                "kernel reads such an operand with a run-time stride", after=sides)
    ctx.log("infer_shapes", [], "summary", "all value types derived from static input shapes",
            after=len(fresh))
    return graph
