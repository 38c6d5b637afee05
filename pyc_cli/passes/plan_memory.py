"""Memory planning: choose the schedule (memory_first reorders it), alias views and in-place
results, and place every intermediate in one aligned arena (see planning/)."""

from __future__ import annotations

from ..codegen.targets import get_target
from ..ir.graph import Graph, Node
from ..ops import registry
from ..planning.liveness import compute_liveness
from ..planning.plan import MemoryPlan, build_plan
from ..planning.schedule import best_schedule
from .context import MODES, PassContext

NAME = "plan_memory"


def plan_memory(graph: Graph, ctx: PassContext) -> Graph:
    mode, alignment = ctx.options.mode, ctx.options.alignment
    schedule, given = "given", list(graph.nodes)
    _note_workspaces(graph, ctx)
    if mode == "memory_first":
        schedule, order, peaks = best_schedule(graph, mode, alignment)
        ctx.log(NAME, [], "schedule", "memory_first runs the candidate order with the lowest "
                "peak of live bytes", before=peaks["given"], after=peaks[schedule],
                chosen=schedule, candidates=peaks)
        if order != graph.nodes:
            graph.nodes = order
            ctx.artifacts["liveness"] = compute_liveness(graph)
    plan = build_plan(graph, ctx.artifacts["liveness"], mode, alignment)
    plan.schedule = schedule
    plan.what_if = _what_if(graph, given, ctx, plan)
    _record_inplace(graph, plan, ctx)
    _record_concat_slices(graph, plan, ctx)
    ctx.artifacts["memory_plan"] = plan
    ctx.log(NAME, [], "summary",
            f"mode {mode}: {schedule} schedule, {plan.algorithm} placement, "
            f"{plan.inplace_count} in-place writes",
            before=plan.no_reuse_bytes, after=plan.arena_bytes,
            lower_bound_bytes=plan.lower_bound_bytes, reuse_count=plan.reuse_count)
    return graph


# the largest scratch one kernel may take (tiled kernels shrink their tiles to fit): memory_first
# gives up a little GEMM width to keep scratch far below the activations
WORKSPACE_CAPS = {"latency_first": 512 * 1024, "balanced": 512 * 1024, "memory_first": 32 * 1024}


def _note_workspaces(graph: Graph, ctx: PassContext) -> None:
    """Kernels that need scratch (im2col columns) get it from the arena, live for one step."""
    target = get_target(ctx.options.target)
    for node in graph.nodes:
        chosen, _ = registry.select_kernel(node, graph, target.has_template)
        if chosen is not None and chosen.stores_once and "epilogue" in node.attrs:
            node.attrs["stores_once"] = 1  # lets an epilogue operand be overwritten in place
        if chosen is None or chosen.workspace is None:
            continue
        node.attrs["workspace_cap"] = WORKSPACE_CAPS[ctx.options.mode]
        scratch = chosen.workspace_bytes(node, graph)
        if scratch:
            node.attrs["workspace_bytes"] = scratch
            ctx.log(NAME, [node.name], "workspace", f"{chosen.name} needs scratch; tiles sized "
                    f"to the {ctx.options.mode} cap of {WORKSPACE_CAPS[ctx.options.mode]} bytes",
                    after=scratch)


def _record_inplace(graph: Graph, plan: MemoryPlan, ctx: PassContext) -> None:
    for node in graph.nodes:
        victim = plan.inplace.get(node.name)
        if victim is None:
            continue
        node.attrs["inplace_operand"] = node.inputs.index(victim)
        ctx.log(NAME, [node.name], "inplace", f"writes over {victim!r}, which dies here: same "
                "size, and the kernel reads each element before it overwrites it", after=victim)


def _record_concat_slices(graph: Graph, plan: MemoryPlan, ctx: PassContext) -> None:
    for node in graph.nodes:
        placed = plan.concat_slices.get(node.name)
        if not placed:
            continue
        node.attrs["inplace_inputs"] = list(placed)
        ctx.log(NAME, [node.name], "concat_in_place",
                "producers write straight into their slice of the concat output: no copy, and "
                "the inputs need no buffers of their own", after=[node.inputs[i] for i in placed])


def _what_if(graph: Graph, given: list[Node], ctx: PassContext,
             plan: MemoryPlan) -> dict[str, dict[str, int]]:
    """Arena, no-reuse and lower bound the other modes would give (for `pyc explain`)."""
    results = {plan.mode: _figures(plan)}
    position = {node.name: index for index, node in enumerate(given)}
    for mode in MODES:
        if mode == plan.mode:
            continue
        other = graph.clone()
        other.nodes.sort(key=lambda n: position[n.name])
        if mode == "memory_first":
            other.nodes = best_schedule(other, mode, ctx.options.alignment)[1]
        results[mode] = _figures(build_plan(other, compute_liveness(other), mode,
                                            ctx.options.alignment))
    return results


def _figures(plan: MemoryPlan) -> dict[str, int]:
    return {"arena_bytes": plan.arena_bytes, "no_reuse_bytes": plan.no_reuse_bytes,
            "lower_bound_bytes": plan.lower_bound_bytes}
