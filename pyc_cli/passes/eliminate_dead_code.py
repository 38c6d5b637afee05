"""Dead-code elimination: drop nodes whose results reach no graph output, and unused constants."""

from __future__ import annotations

from ..ir.graph import Graph
from .context import PassContext

NAME = "eliminate_dead_code"


def eliminate_dead_code(graph: Graph, ctx: PassContext) -> Graph:
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(o in live for o in node.outputs if o):
            kept.append(node)
            live.update(node.present_inputs())
        else:
            ctx.log(NAME, [node.name], "remove_node", "no result reaches a graph output")
    graph.nodes = list(reversed(kept))
    dead_constants = sorted(c for c in graph.constants if c not in live)
    for name in dead_constants:
        del graph.constants[name]
    if dead_constants:
        ctx.log(NAME, [], "remove_constants", "no longer used after folding and fusion",
                after=len(dead_constants))
    graph.remove_unused_types()
    return graph
