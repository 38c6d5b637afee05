"""Lowering: choose a kernel candidate for every node on the build target and record why."""

from __future__ import annotations

from ..codegen.targets import get_target
from ..errors import PycError
from ..ir.graph import Graph
from ..ops import registry
from .context import PassContext

NAME = "lower"


def lower(graph: Graph, ctx: PassContext) -> Graph:
    target = get_target(ctx.options.target)
    problems = []
    for node in graph.nodes:
        opdef = registry.get(node.op)
        if opdef.category == registry.VIEW:
            node.attrs["kernel"] = "view"
            ctx.log(NAME, [node.name], "alias", "a view: the output is the input's bytes, no code")
            continue
        if len(node.attrs.get("inplace_inputs", [])) == len(node.inputs):  # type: ignore[arg-type]
            node.attrs["kernel"] = "in_place"
            ctx.log(NAME, [node.name], "alias", "every input was written into its slice: no code")
            continue
        chosen, candidates = registry.select_kernel(node, graph, target.has_template)
        if chosen is None:
            problems.append(f"{node.op} ({node.name!r})")
            continue
        flops = opdef.flops(node, graph)
        node.attrs["kernel"] = chosen.name
        others = [c.name for c in candidates if c is not chosen]
        ctx.log(NAME, [node.name], "select_kernel",
                f"lowest estimated cost on {target.name} ({flops} flop-equivalents)"
                + (f"; also applicable: {', '.join(others)}" if others else ""),
                after=chosen.name)
    if problems:
        raise PycError("E008", f"no {target.name} kernel for {len(problems)} node(s): "
                       + ", ".join(problems), hint="see docs/op_coverage.md")
    return graph
