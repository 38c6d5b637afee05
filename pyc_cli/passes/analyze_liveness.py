"""Liveness analysis over the final schedule (the node order)."""

from __future__ import annotations

from ..ir.graph import Graph
from ..planning.liveness import compute_liveness
from .context import PassContext

NAME = "analyze_liveness"


def analyze_liveness(graph: Graph, ctx: PassContext) -> Graph:
    intervals = compute_liveness(graph)
    ctx.artifacts["liveness"] = intervals
    longest = max(intervals.items(), key=lambda kv: (kv[1].end - kv[1].start, kv[0]), default=None)
    ctx.log(NAME, [], "summary", "live ranges over the node schedule", after=len(intervals),
            longest=None if longest is None else longest[0])
    return graph
