"""Kernel selection: record for every node the kernel candidate it runs and its parameters.

One decision, made once before memory planning: the planner reads each choice's workspace, and
code generation renders the chosen candidate. The build target (`ctx.target`) says which of its
candidates apply to a node; the choice consults, in order, the tuning database (measured choices,
passes/tuning.py) and the cost model (the applicable candidate with the lowest cost estimate).
Views need no kernel; their choice is "view".
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import PycError
from ..ir.annotations import KernelChoice, KernelParam
from ..ir.graph import Graph, Node
from ..ir.symbolic import NUMBERS_HINT, Dim, computed_dims
from ..ops import registry
from ..planning.policy import BALANCED, BUILTIN, Policy
from .context import PassContext
from .target import KernelOption, KernelTarget
from .tuning import kernel_signature, signature_key

NAME = "select_kernels"

# the largest scratch one kernel may take under each built-in policy (Policy.workspace_cap:
# tiled kernels shrink their tiles to fit)
WORKSPACE_CAPS = {p.name: p.workspace_cap for p in BUILTIN}


def select_kernels(graph: Graph, ctx: PassContext) -> Graph:
    if ctx.checks_determinism:
        _check_repeatable(graph, ctx)
    problems = [f"{node.op} ({node.name!r})" for node in graph.nodes
                if not choose_kernel(node, graph, ctx, ctx.policy, NAME)]
    if problems:
        raise PycError("E008", f"no {ctx.kernels.name} kernel for {len(problems)} node(s): "
                       + ", ".join(problems), hint="see docs/op_coverage.md")
    return graph


def _check_repeatable(graph: Graph, ctx: PassContext) -> None:
    """Ask the policy for each node's kernel twice: a policy whose answers differ (random
    numbers, set order, time) would give another artifact each build (PYC-E061)."""
    for node in graph.nodes:
        if registry.get(node.op).category == registry.VIEW:
            continue
        first, _ = cheapest(node, graph, ctx.kernels, ctx.policy)
        second, _ = cheapest(node, graph, ctx.kernels, ctx.policy)
        if first is not None and second is not None and first.name != second.name:
            raise not_repeatable(ctx.policy.label, f"the kernel of node {node.name!r}",
                                 first.name, second.name)
    ctx.log(NAME, [], "determinism_check", f"policy {ctx.policy.label} asked twice for every "
            "node's kernel: the same answers")


def not_repeatable(policy: str, decision: str, first: object, second: object) -> PycError:
    return PycError("E061", f"policy {policy} is not deterministic: {decision} was {first} "
                    f"and then {second} for the same graph", where=f"--policy {policy}",
                    hint="a policy must decide from the graph alone: no random numbers, set or "
                    "dict-of-set iteration order, hashes of str or time (docs/planner.md)")


def cheapest(node: Node, graph: Graph, target: KernelTarget, policy: Policy = BALANCED
             ) -> tuple[KernelOption | None, Sequence[KernelOption]]:
    """The policy's pick among the applicable candidates (Policy.choose_kernel: the lowest cost
    estimate, ties by name; memory_first passes over a candidate whose untiled scratch exceeds
    its cap where another applies), and all applicable ones."""
    candidates = target.candidates(node, graph)
    if not candidates:
        return None, []
    if symbolic_dims_of(node, graph):
        # only a kernel that reads the dims at run time computes every shape right (none:
        # _check_symbolic refuses the node, naming every candidate)
        candidates = [c for c in candidates if c.symbolic_dims] or candidates
    return policy.choose_kernel(node, graph, candidates), candidates


def choose_kernel(node: Node, graph: Graph, ctx: PassContext, policy: Policy,
                  pass_name: str | None) -> bool:
    """Record `node`'s kernel choice (and log why under `pass_name`, unless None); False when
    no candidate applies on the build target. The planner calls this for nodes it creates."""
    opdef = registry.get(node.op)
    if opdef.category == registry.VIEW:
        node.ann.kernel = KernelChoice("view")
        if pass_name:
            ctx.log(pass_name, [node.name], "alias", "a view: the output is the input's bytes, no code")
        return True
    target = ctx.kernels
    chosen, candidates = cheapest(node, graph, target, policy)
    if chosen is None:
        return False
    _check_symbolic(node, graph, chosen, candidates)
    dims = symbolic_dims_of(node, graph)
    flops = opdef.flops(node, graph)
    reason = f"lowest estimated cost on {target.name} ({flops} flop-equivalents)"
    if dims:
        reason = (f"reads the symbolic dims ({', '.join(dims)}) at run time, as every shape "
                  f"within their bounds needs; of those kernels, the {reason[0].lower()}"
                  f"{reason[1:]}, compared at the upper bounds")
    why = chosen.reason(node, graph)
    if why:
        reason += f": {why}"
    cheaper = [c.name for c in candidates if c.cost(node, graph) < chosen.cost(node, graph)]
    if cheaper:
        reason += (f"; cheaper {', '.join(cheaper)} would copy more scratch than the {policy.name} cap "
                   f"of {policy.workspace_cap} bytes")
    params: dict[str, KernelParam] = {}
    signature = kernel_signature(node, graph, target.name)
    # measured choices are for static shapes: a node with symbolic dims keeps the cost model's
    tuned = None if dims else ctx.tuning.lookup(signature)
    measured: list[dict[str, object]] = []
    serves = None
    if tuned is not None:
        hit = next((c for c in candidates if c.name == tuned.candidate), None)
        if hit is None:
            reason += f"; the tuning database's {tuned.candidate} does not apply here"
        else:
            chosen, params = hit, dict(tuned.params)
            # a measurement, not the policy's cost model, chose: the tuning database's, or
            # run telemetry's (feedback.FeedbackTuning says which)
            rule = getattr(ctx.tuning, "serves", None)
            serves = rule(signature) if rule is not None else "tuning:measured"
            source = "run telemetry" if serves.startswith("feedback:") else "tuning database"
            reason = f"measured fastest on {target.name} ({source})"
            # `measurements` is optional: a database of choices alone (tests) has none
            timings = getattr(ctx.tuning, "measurements", None)
            measured = [m.to_json() for m in timings(signature)] if timings else []
    set_kernel(node, graph, chosen, policy, policy.workspace_cap, params)
    if pass_name:
        others = [c.name for c in candidates if c is not chosen]
        ctx.log(pass_name, [node.name], "select_kernel",
                reason + (f"; also applicable: {', '.join(others)}" if others else ""),
                after=chosen.name, **({"params": params} if params else {}),
                **({"serves": serves} if serves else {}),
                **({"measured": measured, "signature": signature_key(signature)}
                   if measured else {}))
    return True


def _check_symbolic(node: Node, graph: Graph, chosen: KernelOption,
                    candidates: Sequence[KernelOption]) -> None:
    """A node whose shapes hold symbolic dims runs only on a kernel that reads them at run time;
    PYC-E051 otherwise (a kernel baking in the upper bounds would compute wrong results for
    every smaller shape)."""
    dims = symbolic_dims_of(node, graph)
    if dims and not chosen.symbolic_dims:
        computed = computed_dims(graph.types[name].shape for name in (*node.inputs, *node.outputs)
                                 if name in graph.types)
        # a size computed from tensor data (point 2) cannot be given a number by the user
        hint = NUMBERS_HINT if not computed else (
            "sizes computed at run time (" + ", ".join(
                f"{n} by node {b.computed!r}" for n, b in sorted(computed.items()))
            + ") need kernels that read run-time dims; make the operands deciding them "
            "constants to get a static shape")
        raise PycError("E051", f"no kernel of {node.op} reads symbolic dims ({', '.join(dims)}) "
                       f"at run time yet (candidates: {', '.join(c.name for c in candidates)})",
                       where=f"node {node.name!r}", hint=hint)


def symbolic_dims_of(node: Node, graph: Graph) -> list[str]:
    """The symbolic sizes in the shapes of `node`'s inputs and outputs, as sorted texts."""
    return sorted({str(d) for name in (*node.inputs, *node.outputs) if name in graph.types
                   for d in graph.types[name].shape if isinstance(d, Dim)})


def set_kernel(node: Node, graph: Graph, option: KernelOption, policy: Policy,
               cap: int, params: dict[str, KernelParam] | None = None) -> None:
    """Record `option` as `node`'s kernel (with `params`) and its scratch sized under `cap`
    (tiled kernels shrink tiles to fit)."""
    node.ann.kernel = KernelChoice(option.name, dict(params or {}),
                                   inplace_input=policy.inplace_input(option))
    node.ann.stores_once = option.stores_once and bool(node.ann.epilogue)
    if option.has_workspace:
        node.ann.kernel.workspace_cap = cap
        node.ann.kernel.workspace_bytes = option.workspace_bytes(node, graph)


def size_workspace(node: Node, graph: Graph, policy: Policy, target: KernelTarget) -> None:
    """The chosen kernel's scratch under `policy`'s cap (tiled kernels shrink tiles to fit)."""
    chosen = target.chosen(node)
    if chosen is None or not chosen.has_workspace or node.ann.kernel is None:
        return
    node.ann.kernel.workspace_cap = policy.workspace_cap
    node.ann.kernel.workspace_bytes = chosen.workspace_bytes(node, graph)
