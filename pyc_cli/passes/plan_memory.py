"""Memory planning: give kernels their scratch, choose the schedule (memory_first tiles conv →
pool chains by output channels, reorders the schedule and rematerializes cheap values), alias
views and in-place results, and place every intermediate in one aligned arena (see planning/).
The figures the other modes would give are recorded too."""

from __future__ import annotations

from dataclasses import replace

from ..errors import PycError
from ..ir.annotations import KernelChoice
from ..ir.graph import Graph
from ..ir.run_dims import model_dims
from ..ir.types import check_addressable
from ..planning.liveness import compute_liveness
from ..planning.plan import MemoryPlan, build_plan
from ..planning.policy import BUILTIN, Policy
from ..planning.remat import rematerialize
from ..planning.schedule import best_schedule
from ..planning.tiling import tile_channels
from . import coselect as co
from .context import PassContext
from .select_kernels import choose_kernel, not_repeatable, size_workspace

NAME = "plan_memory"


def plan_memory(graph: Graph, ctx: PassContext, policy: Policy | None = None) -> Graph:
    """`policy`: the build's policy as the target plans with it (the CUDA target: fixed
    offsets, plan_memory_fixed_offsets); the mode's by default."""
    policy = policy or ctx.policy
    alignment = ctx.options.alignment
    mode = policy.name
    original = graph.clone()  # the what-if figures start from the same graph
    schedule = _prepare(graph, policy, ctx, log=True)
    ctx.artifacts["liveness"] = compute_liveness(graph)
    plan = build_plan(graph, ctx.artifacts["liveness"], policy, alignment)
    if ctx.checks_determinism:
        _check_repeatable(original, ctx, graph, plan, policy)
    check_addressable(f"the activation arena ({mode})", plan.arena_bytes, "plan_memory")
    plan.schedule = schedule
    plan.what_if = _what_if(original, ctx, plan)
    _record_inplace(graph, plan, ctx)
    _record_concat_slices(graph, plan, ctx)
    _record_branch_outputs(graph, plan, ctx)
    ctx.artifacts["memory_plan"] = plan
    _log_symbolic_sizes(graph, plan, ctx)
    ctx.log(NAME, [], "summary",
            f"mode {mode}: {schedule} schedule, {plan.algorithm} placement, "
            f"{plan.inplace_count} in-place writes",
            before=plan.no_reuse_bytes, after=plan.arena_bytes,
            lower_bound_bytes=plan.lower_bound_bytes, reuse_count=plan.reuse_count)
    return graph


def plan_memory_fixed_offsets(graph: Graph, ctx: PassContext) -> Graph:
    """plan_memory with fixed offsets whatever the mode (a target whose launches hold every
    address, the CUDA target: its kernels' arguments are bound once, at load). The same plan
    for a static model; a model with symbolic or computed sizes gets every value a slot sized
    for its upper bound, as latency_first plans it."""
    return plan_memory(graph, ctx, replace(ctx.policy, runtime_arena=None))


def _log_symbolic_sizes(graph: Graph, plan: MemoryPlan, ctx: PassContext) -> None:
    """With symbolic dims (issue #15) the plan holds every shape within the bounds: latency_first
    keeps fixed offsets sized for the upper bounds; balanced and memory_first compute offsets at
    run time from the dims (planning/runtime_offsets.py), tight for each run's shape."""
    dims = model_dims(graph)
    if not dims:
        return
    bounds = ", ".join(f"{d.name} {d.lo}..{d.hi}" for d in dims)
    runtime = plan.runtime
    if runtime is None:
        ctx.log(NAME, [], "symbolic_sizes",
                f"fixed offsets: every value sized for the upper bounds of its dims ({bounds}), "
                "valid for every shape within them; no run computes an offset",
                after=plan.arena_bytes)
        return
    low = runtime.extent_at({d.name: d.lo for d in dims})
    placed = ", ".join(f"{k}={v}" for k, v in runtime.placed_at.items())
    how = ("the arena is grown on demand to the largest run's need (memory held: the "
           "high-water mark of the shapes actually run)" if runtime.arena == "grow" else
           "the arena is allocated once for the upper bounds and a run touches only its prefix "
           "(no run allocates)")
    ctx.log(NAME, [], "symbolic_sizes",
            f"offsets computed at run time from the dims ({bounds}): {len(runtime.blocks)} "
            f"blocks kept in the order of their placement at {placed}, each at the longest path "
            f"of sizes below it, so the arena is tight for each run's shape; {how}",
            before=runtime.fixed_arena_bytes, after=plan.arena_bytes, at_lower_bounds=low,
            blocks=len(runtime.blocks),
            edges=sum(len(b.below) for b in runtime.blocks), arena=runtime.arena)


def _prepare(graph: Graph, policy: Policy, ctx: PassContext, log: bool,
             coselect: bool = True) -> str:
    """The policy's changes before placement (channel tiling, schedule order,
    rematerialization); returns the schedule's name. A policy with `coselect` (unless the
    build asked for sequential selection, or `coselect` is off: the what-if figures) chooses
    those changes and faster kernels together (passes/coselect.py)."""
    if coselect and co.applies(graph, policy, ctx):
        def trial_rewrite(trial: Graph, variant: Policy) -> tuple[str, list[co.Record]]:
            records: list[co.Record] = []
            return _rewrite(trial, variant, ctx, False, records), records

        best, outcomes, target = co.search(graph, policy, ctx, trial_rewrite)
        schedule = _rewrite(graph, best.variant.policy, ctx, log)
        co.apply(graph, best, ctx)
        if log:
            co.log(best, outcomes, target, ctx)
        return schedule
    return _rewrite(graph, policy, ctx, log)


def _rewrite(graph: Graph, policy: Policy, ctx: PassContext, log: bool,
             records: list[co.Record] | None = None) -> str:
    """Channel tiling, schedule order and rematerialization as `policy` has them; what they
    decided is logged (`log`) and/or kept in `records` (co-selection logs a rewrite it left
    out from these)."""
    def note(nodes: list[str], action: str, reason: str, **extra: object) -> None:
        if log:
            ctx.log(NAME, nodes, action, reason, **extra)
        if records is not None:
            records.append((list(nodes), action, reason, dict(extra)))

    alignment = ctx.options.alignment
    tiles = []
    if policy.tile_channels:
        # each trial graph's kernels note their scratch first: workspaces count toward its peak
        tiles = tile_channels(graph, policy, alignment,
                              lambda trial: _note_kernel_needs(trial, policy, ctx, log=False))
    _note_kernel_needs(graph, policy, ctx, log)
    for tile in tiles:
        note(tile.nodes, "tile_channels" if tile.groups > 1 else "keep_whole", tile.reason,
             before=tile.before, after=tile.after, groups=tile.groups)
    schedule = "given"
    if policy.schedule_orders:
        schedule, order, peaks = best_schedule(graph, policy, alignment)
        graph.nodes = order
        if log:
            ctx.log(NAME, [], "schedule", f"{policy.name} runs the candidate order with the "
                    "lowest peak of live bytes", before=peaks.get("given"),
                    after=peaks[schedule], chosen=schedule, candidates=peaks)
    remats = rematerialize(graph, policy, alignment) if policy.rematerialize else []
    for remat in remats:
        note([remat.value, *remat.users], "rematerialize" if remat.kept else "keep_live",
             "recomputed next to its later users: the peak drops" if remat.kept else
             "cheap to recompute, but recomputing would not lower the peak",
             before=remat.before, after=remat.after)
    return schedule


def _note_kernel_needs(graph: Graph, policy: Policy, ctx: PassContext, log: bool) -> None:
    """Kernels that need scratch (im2col columns) get it from the arena, live for one step, as
    select_kernels recorded it. Nodes made here (channel slices, the Concat of their results)
    get their kernel chosen now; the what-if figures of other modes size scratch to their caps."""
    for node in graph.nodes:
        if node.ann.kernel is None:
            if not choose_kernel(node, graph, ctx, policy, NAME if log else None):
                raise PycError("E008", f"no {ctx.options.target} kernel for {node.op} "
                               f"({node.name!r})", hint="see docs/op_coverage.md")
        elif policy.name != ctx.options.mode:
            size_workspace(node, graph, policy, ctx.kernels)
        chosen = ctx.kernels.chosen(node)
        if chosen is None or not chosen.has_workspace or node.ann.kernel is None:
            continue
        scratch = node.ann.kernel.workspace_bytes
        if scratch and log:
            ctx.log(NAME, [node.name], "workspace", f"{chosen.name} needs scratch; tiles "
                    f"sized to the {policy.name} cap of {policy.workspace_cap} bytes",
                    after=scratch)


def _record_inplace(graph: Graph, plan: MemoryPlan, ctx: PassContext) -> None:
    for node in graph.nodes:
        victim = plan.inplace.get(node.name)
        if victim is None:
            continue
        node.ann.inplace_operand = node.inputs.index(victim)
        ctx.log(NAME, [node.name], "inplace", f"writes over {victim!r}, which dies here: same "
                "size, and the kernel reads each element before it overwrites it", after=victim)


def _record_concat_slices(graph: Graph, plan: MemoryPlan, ctx: PassContext) -> None:
    for node in graph.nodes:
        placed = plan.concat_slices.get(node.name)
        if not placed:
            continue
        node.ann.inplace_inputs = list(placed)
        ctx.log(NAME, [node.name], "concat_in_place",
                "producers write straight into their slice of the concat output: no copy, and "
                "the inputs need no buffers of their own", after=[node.inputs[i] for i in placed])
        if len(placed) == len(node.inputs):
            node.ann.kernel = KernelChoice("in_place")
            ctx.log(NAME, [node.name], "alias", "every input was written into its slice: no code")


def _record_branch_outputs(graph: Graph, plan: MemoryPlan, ctx: PassContext) -> None:
    """A run-time If whose branches compute its outputs in place (planning/plan.py)."""
    for node in graph.nodes:
        written = plan.branch_outputs.get(node.name)
        if written:
            ctx.log(NAME, [node.name], "branch_outputs",
                    "the taken branch computes these outputs straight into their bytes (the "
                    "then- and else-values share them: only one branch runs), so the If "
                    "copies nothing for them", after=[node.outputs[i] for i in written])


def _check_repeatable(original: Graph, ctx: PassContext, planned: Graph,
                      plan: MemoryPlan, policy: Policy) -> None:
    """Plan a copy of the graph again: a policy whose schedule, kernels or offsets differ the
    second time would give another artifact each build (PYC-E061)."""
    replay = original.clone()
    _prepare(replay, policy, ctx, log=False)
    again = build_plan(replay, compute_liveness(replay), policy, ctx.options.alignment)
    first, second = _decided(planned, plan), _decided(replay, again)
    for key in first:
        if first[key] != second[key]:
            raise not_repeatable(ctx.policy.label, f"the {key}",
                                 *_first_difference(first[key], second[key]))
    ctx.log(NAME, [], "determinism_check", f"policy {ctx.policy.label} planned a copy of the "
            "graph again: the same schedule, kernels and offsets")


def _decided(graph: Graph, plan: MemoryPlan) -> dict[str, object]:
    placed = plan.to_json()
    return {"schedule": [n.name for n in graph.nodes],
            "kernels": [(n.name, n.ann.kernel.candidate if n.ann.kernel else None)
                        for n in graph.nodes],
            "offsets": [(t["name"], t["offset"]) for t in placed["tensors"]],
            "arena": placed["arena_bytes"]}


def _first_difference(first: object, second: object) -> tuple[object, object]:
    """The first place where two decisions differ: (what the first had, what the second had)."""
    if isinstance(first, list) and isinstance(second, list):
        return next(((a, b) for a, b in zip(first, second) if a != b),
                    (len(first), len(second)))
    return first, second


def _what_if(original: Graph, ctx: PassContext, plan: MemoryPlan) -> dict[str, dict[str, int]]:
    """Arena, no-reuse and lower bound the other modes would give (for `pyc explain`)."""
    results = {plan.mode: _figures(plan)}
    for policy in BUILTIN:
        if policy.name == plan.mode:
            continue
        other = original.clone()
        _prepare(other, policy, ctx, log=False, coselect=False)
        results[policy.name] = _figures(build_plan(other, compute_liveness(other), policy,
                                                   ctx.options.alignment))
    return results


def _figures(plan: MemoryPlan) -> dict[str, int]:
    return {"arena_bytes": plan.arena_bytes, "no_reuse_bytes": plan.no_reuse_bytes,
            "lower_bound_bytes": plan.lower_bound_bytes}
