"""Memory planning: place every intermediate in one aligned arena (see planning/plan.py)."""

from __future__ import annotations

from ..ir.graph import Graph
from ..planning.plan import build_plan
from .context import PassContext

NAME = "plan_memory"


def plan_memory(graph: Graph, ctx: PassContext) -> Graph:
    def log(nodes: list[str], action: str, reason: str, after: object = None) -> None:
        ctx.log(NAME, nodes, action, reason, after=after)

    plan = build_plan(graph, ctx.artifacts["liveness"], ctx.options.mode, ctx.options.alignment,
                      log)
    ctx.artifacts["memory_plan"] = plan
    ctx.log(NAME, [], "summary",
            f"mode {plan.mode}: {plan.algorithm} placement, {plan.inplace_count} in-place writes",
            before=plan.no_reuse_bytes, after=plan.arena_bytes,
            lower_bound_bytes=plan.lower_bound_bytes, reuse_count=plan.reuse_count)
    return graph
