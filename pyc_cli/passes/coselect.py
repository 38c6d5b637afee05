"""Kernel + allocator co-selection (issue #16, point 2): choose kernels and the memory plan
together instead of one after the other.

Sequential planning (`kernel_selection="sequential"`) picks every kernel by the policy's rule
first (memory_first: no candidate whose whole-copy scratch exceeds its 32 KiB cap) and then
plans memory around those kernels with every peak-lowering rewrite the policy has. Co-selection
(a policy with `coselect`, the default selection) searches both at once:

1. the policy's latency-costing rewrites (channel tiling, rematerialization) form a few
   variants, from none to all; the schedule order costs no latency and is always tried;
2. each variant is planned with the lean kernels; the target arena is the memory budget, or,
   without one, the smallest lean arena of any variant (memory_first keeps its arena);
3. in a variant whose lean arena fits the target, each node whose fastest kernel (the
   latency_first pick) differs from its lean one is upgraded, best predicted saving per byte of
   extra scratch first, wherever the bytes live at its step stay within the target (a
   workspace lives only while its node runs, so each upgrade changes one step's peak);
4. the variant with the lowest predicted cost (the cost model's flop-equivalents summed over
   the nodes) wins; ties go to the variant with fewer rewrites.

Every step is logged: the search (`coselect`), each upgrade (`coselect_kernel`) and each faster
kernel left out because its scratch would break the target at its step (`coselect_keep`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..ir.annotations import KernelParam
from ..ir.graph import Graph, Node
from ..ir.run_dims import model_dims
from ..ops import registry
from ..planning.arena import align, live_bytes, lower_bound
from ..planning.plan import plan_blocks
from ..planning.policy import LATENCY_FIRST, Policy
from .select_kernels import cheapest, set_kernel
from .tuning import kernel_signature

if TYPE_CHECKING:
    from collections.abc import Callable

    from .context import PassContext
    from .target import KernelOption

NAME = "plan_memory"
# a rewrite's decision as the planner would log it: (nodes, action, reason, extra fields)
Record = tuple[list[str], str, str, dict[str, object]]
# a rewrite the policy has, and the action logged where it is not applied
SKIPPED = {"tile_channels": "keep_whole", "rematerialize": "keep_live"}


@dataclass(frozen=True)
class Variant:
    """The policy with some of its latency-costing rewrites turned off."""

    label: str
    policy: Policy


@dataclass
class Upgrade:
    node: str
    lean: str
    fast: str
    gain: float  # predicted cost saved (flop-equivalents)
    extra: int  # bytes of scratch added at the node's step (aligned)
    step: int
    live: int = 0  # bytes live at the step with the faster kernel
    # the faster kernel's parameters tried, default first, then those with less scratch
    # (KernelOption.scratch_options), each with its scratch bytes; `params`: the one kept
    configs: list[tuple[dict[str, KernelParam], int]] = field(default_factory=list)
    params: dict[str, KernelParam] = field(default_factory=dict)


@dataclass
class Outcome:
    """One variant planned: its lean arena, the upgrades kept and refused, its predicted cost."""

    variant: Variant
    graph: Graph
    schedule: str
    lean_arena: int
    lean_cost: float = 0.0
    cost: float = 0.0
    arena: int = 0
    kept: list[Upgrade] = field(default_factory=list)
    refused: list[Upgrade] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)  # what its rewrites decided

    def summary(self) -> dict[str, object]:
        return {"lean_arena": self.lean_arena, "arena": self.arena,
                "lean_cost": round(self.lean_cost), "cost": round(self.cost),
                "upgrades": len(self.kept)}


def applies(graph: Graph, policy: Policy, ctx: PassContext) -> bool:
    """Co-selection runs for a policy that asks for it, unless the build asked for the
    sequential baseline; a model with symbolic dims keeps sequential planning (its arena is
    computed at run time: one step's peak is not one number)."""
    return policy.coselect and ctx.options.kernel_selection == "coselect" \
        and not model_dims(graph)


def variants(policy: Policy) -> list[Variant]:
    """The rewrites that cost latency, fewest first (none, each alone, all), each with every
    schedule order of the policy (the order with the lowest lean peak need not leave the most
    room for faster kernels)."""
    options = [(flag, getattr(policy, flag)) for flag in ("tile_channels", "rematerialize")]
    enabled = [flag for flag, on in options if on]
    subsets: list[tuple[str, ...]] = [()] + [(f,) for f in enabled]
    if len(enabled) > 1:
        subsets.append(tuple(enabled))
    orders: list[tuple[str, ...]] = [(o,) for o in policy.schedule_orders] or [()]
    found: list[Variant] = []
    for subset in subsets:
        for order in orders:
            changes: dict[str, object] = {flag: flag in subset for flag in enabled}
            label = "+".join(subset) if subset else "no rewrites"
            if order:
                label += f", {order[0]} order"
            found.append(Variant(label, replace(policy, schedule_orders=order,
                                                **changes)))  # type: ignore[arg-type]
    return found


def light_clone(graph: Graph) -> Graph:
    """A copy of `graph` sharing its constant arrays (a rewrite adds constants, never changes
    one): each variant's trial costs no copy of the weights."""
    constants = graph.constants
    graph.constants = {}
    try:
        trial = graph.clone()
    finally:
        graph.constants = constants
    trial.constants = dict(constants)
    return trial


def search(graph: Graph, policy: Policy, ctx: PassContext,
           prepare: Callable[[Graph, Policy], tuple[str, list[Record]]]
           ) -> tuple[Outcome, list[Outcome], int]:
    """Plan every variant on a copy of `graph`; returns (the best, all of them, the target).
    The last outcome is the sequential plan (every rewrite, lean kernels): not a candidate, the
    figure the log compares with."""
    alignment = ctx.options.alignment
    outcomes = []
    for variant in variants(policy):
        trial = light_clone(graph)
        schedule, _ = prepare(trial, variant.policy)
        lean = _arena(trial, variant.policy, alignment)
        outcomes.append(Outcome(variant, trial, schedule, lean, lean_cost=total_cost(trial, ctx)))
    trial = light_clone(graph)
    schedule, records = prepare(trial, policy)
    sequential = Outcome(Variant("sequential", policy), trial, schedule,
                         _arena(trial, policy, alignment), lean_cost=total_cost(trial, ctx),
                         records=records)
    sequential.arena, sequential.cost = sequential.lean_arena, sequential.lean_cost
    budget = ctx.options.memory_budget
    target = budget if budget is not None else min(o.lean_arena for o in outcomes)
    for outcome in outcomes:
        outcome.arena, outcome.cost = outcome.lean_arena, outcome.lean_cost
        if outcome.lean_arena <= target:
            _upgrade(outcome, ctx, target)
    fitting = [o for o in outcomes if o.arena <= target] or outcomes
    best = min(fitting, key=lambda o: (o.cost if o.arena <= target else float("inf"),
                                       o.arena, outcomes.index(o)))
    return best, [*outcomes, sequential], target


def total_cost(graph: Graph, ctx: PassContext) -> float:
    """The cost model's estimate of the whole graph: its chosen kernels' flop-equivalents."""
    total = 0.0
    for node in graph.nodes:
        chosen = ctx.kernels.chosen(node)
        if chosen is not None:
            total += chosen.cost(node, graph)
    return total


def _arena(graph: Graph, policy: Policy, alignment: int) -> int:
    return policy.place(plan_blocks(graph, policy, alignment))[1]


def _live_peak(graph: Graph, policy: Policy, alignment: int, step: int) -> tuple[int, int]:
    """(bytes live at `step`, the graph's lower bound) under `policy`'s aliasing."""
    blocks = plan_blocks(graph, policy, alignment)
    at_step = live_bytes(blocks, step)
    return at_step, lower_bound(blocks)


def fast_policy(policy: Policy) -> Policy:
    """`policy`'s kernel rule without its scratch cap: the latency_first pick."""
    return replace(policy, workspace_cap=LATENCY_FIRST.workspace_cap, fit_workspace_cap=False)


def _options(graph: Graph, ctx: PassContext, policy: Policy) -> list[tuple[Node, KernelOption]]:
    """Nodes whose fastest kernel is not their lean one (a measured choice is left alone)."""
    fast_rule = fast_policy(policy)
    found = []
    for node in graph.nodes:
        current = ctx.kernels.chosen(node)
        if current is None or registry.get(node.op).category == registry.VIEW:
            continue
        fast, _ = cheapest(node, graph, ctx.kernels, fast_rule)
        if fast is None or fast.name == current.name:
            continue
        if fast.cost(node, graph) >= current.cost(node, graph):
            continue
        if ctx.tuning.lookup(kernel_signature(node, graph, ctx.kernels.name)) is not None:
            continue  # a measurement chose this kernel, not the policy's cap
        found.append((node, fast))
    return found


def _scratch(node: Node, alignment: int) -> int:
    scratch = node.ann.kernel.workspace_bytes if node.ann.kernel is not None else 0
    return align(scratch, alignment) if scratch else 0


def _upgrade(outcome: Outcome, ctx: PassContext, target: int) -> None:
    """Take the faster kernels whose scratch fits under `target`, best saving per byte first."""
    graph, policy, alignment = outcome.graph, outcome.variant.policy, ctx.options.alignment
    steps = {node.name: step for step, node in enumerate(graph.nodes)}
    fast_cap = fast_policy(policy).workspace_cap
    ranked = []
    for node, fast in _options(graph, ctx, policy):
        lean = ctx.kernels.chosen(node)
        assert lean is not None
        saved = (node.ann.kernel, node.ann.stores_once)
        before = _scratch(node, alignment)
        set_kernel(node, graph, fast, policy, fast_cap)  # sized, then put back
        configs: list[tuple[dict[str, KernelParam], int]] = []
        options: list[dict[str, KernelParam]] = [{}] + [
            {k: v for k, v in option.items() if isinstance(v, (int, str))}
            for option in fast.scratch_options(node, graph)]
        for option in options:
            set_kernel(node, graph, fast, policy, fast_cap, option)
            configs.append((option, _scratch(node, alignment)))
        node.ann.kernel, node.ann.stores_once = saved
        gain = lean.cost(node, graph) - fast.cost(node, graph)
        ranked.append(Upgrade(node.name, lean.name, fast.name, gain, configs[0][1] - before,
                              steps[node.name], configs=configs))
    # free upgrades first, then the largest saving per byte; ties by node name
    ranked.sort(key=lambda u: (u.extra > 0, -u.gain / max(u.extra, 1), u.node))
    for upgrade in ranked:
        node = graph.nodes[upgrade.step]
        saved = (node.ann.kernel, node.ann.stores_once)
        before = _scratch(node, alignment)
        fast = next(c for c in ctx.kernels.candidates(node, graph) if c.name == upgrade.fast)
        for index, (params, scratch) in enumerate(upgrade.configs):
            set_kernel(node, graph, fast, policy, fast_cap, params)
            live, bound = _live_peak(graph, policy, alignment, upgrade.step)
            if index == 0:
                upgrade.live = live  # what the default parameters would need, for the log
            if bound <= target:
                upgrade.params, upgrade.live, upgrade.extra = params, live, scratch - before
                outcome.kept.append(upgrade)
                break
        else:
            node.ann.kernel, node.ann.stores_once = saved
            outcome.refused.append(upgrade)
    # the placement may need more than the lower bound: give back the least worth upgrades
    outcome.arena = _arena(graph, policy, alignment)
    while outcome.arena > target and outcome.kept:
        upgrade = outcome.kept.pop()
        node = graph.nodes[upgrade.step]
        lean = next(c for c in ctx.kernels.candidates(node, graph) if c.name == upgrade.lean)
        set_kernel(node, graph, lean, policy, policy.workspace_cap)
        outcome.refused.append(upgrade)
        outcome.arena = _arena(graph, policy, alignment)
    outcome.cost = total_cost(graph, ctx)


def apply(graph: Graph, best: Outcome, ctx: PassContext) -> None:
    """Give `graph` (prepared as `best`'s variant) the upgrades `best` kept."""
    policy = best.variant.policy
    by_name = {node.name: node for node in graph.nodes}
    for upgrade in best.kept:
        node = by_name[upgrade.node]
        fast = next(c for c in ctx.kernels.candidates(node, graph) if c.name == upgrade.fast)
        set_kernel(node, graph, fast, policy, fast_policy(policy).workspace_cap, upgrade.params)


def log(best: Outcome, outcomes: list[Outcome], target: int, ctx: PassContext) -> None:
    """The search, each upgrade kept and each faster kernel left out, with their reasons."""
    policy = best.variant.policy
    how = (f"the memory budget of {target} bytes" if ctx.options.memory_budget is not None
           else f"the smallest lean arena of {target} bytes")
    sequential = outcomes[-1]  # every rewrite, lean kernels: what sequential planning gives
    ctx.log(NAME, [], "coselect",
            f"kernels and memory plan chosen together under {how}: variant {best.variant.label!r} "
            f"({best.schedule} schedule) with {len(best.kept)} faster kernels, predicted cost "
            f"{best.cost:.4g} flop-equivalents against {sequential.lean_cost:.4g} for the lean "
            f"kernels with every {policy.name} rewrite (sequential selection)",
            before=round(sequential.lean_cost), after=round(best.cost), target=target,
            variants={o.variant.label: o.summary() for o in outcomes[:-1]},
            sequential=sequential.summary())
    _log_skipped_rewrites(best, sequential, target, ctx)
    for upgrade in best.kept:
        ctx.log(NAME, [upgrade.node], "coselect_kernel",
                f"{upgrade.fast}{_params_text(upgrade.params)} instead of {upgrade.lean}: "
                f"predicted {upgrade.gain:.4g} flop-equivalents faster; its "
                f"{max(upgrade.extra, 0)} extra bytes of scratch keep the {upgrade.live} bytes "
                f"live at step {upgrade.step} within {target}",
                before=upgrade.lean, after=upgrade.fast, gain=round(upgrade.gain),
                extra_bytes=upgrade.extra, **({"params": upgrade.params} if upgrade.params
                                              else {}))
    for upgrade in best.refused:
        ctx.log(NAME, [upgrade.node], "coselect_keep",
                f"keeps {upgrade.lean}: the faster {upgrade.fast} ({upgrade.gain:.4g} "
                f"flop-equivalents less) needs {upgrade.extra} more bytes of scratch, which "
                f"would raise the bytes live at step {upgrade.step} to {upgrade.live}, over "
                f"{target}" + (f" (with its least scratch, {_params_text(upgrade.configs[-1][0])},"
                               f" still over)" if len(upgrade.configs) > 1 else ""),
                before=upgrade.fast, after=upgrade.lean, gain=round(upgrade.gain),
                extra_bytes=upgrade.extra)


def _log_skipped_rewrites(best: Outcome, sequential: Outcome, target: int,
                          ctx: PassContext) -> None:
    """A rewrite of the policy that the chosen variant leaves out is still explained: its
    decisions in the sequential plan, a rewrite applied there logged as left out and why."""
    for flag, keep in SKIPPED.items():
        if not getattr(sequential.variant.policy, flag) or getattr(best.variant.policy, flag):
            continue
        for nodes, action, reason, extra in sequential.records:
            if action == keep:
                ctx.log(NAME, nodes, action, reason, **extra)
            elif action == flag:
                ctx.log(NAME, nodes, keep, f"left out by co-selection: the plan without it "
                        f"({best.variant.label}) fits {target} bytes at a lower predicted cost "
                        f"(sequential planning applies it: {reason})", **extra)


def _params_text(params: dict[str, KernelParam]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")" if params else ""
