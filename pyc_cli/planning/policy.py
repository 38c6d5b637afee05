"""Planner policies (issue #16, point 4): what a memory mode decides, as one frozen object.

A `Policy` holds every choice the planner makes by rule rather than by measurement: which
schedule orders it tries, whether it tiles channels and rematerializes, which aliasing it
allows, how it places blocks in the arena, which kernel it prefers and how much scratch a
kernel may take, and whether a model with symbolic dims gets run-time offsets. The three memory
modes are policies (LATENCY_FIRST, BALANCED, MEMORY_FIRST below); others come from Python
packages through the `pyc.policies` entry point group (docs/planner.md, "Writing a policy").

A policy must be deterministic: the same graph gives the same decisions in every process.
The planner runs the decisions of a policy that is not built in twice and refuses the build
(PYC-E061) if they differ; CI builds every reference model twice with each registered policy
in fresh processes and compares the artifacts' bytes (testing/policy_determinism.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from typing import TYPE_CHECKING, Protocol, TypeVar

from ..errors import PycError
from .arena import Block, assign_offsets

if TYPE_CHECKING:
    from ..ir.graph import Graph, Node

ENTRY_POINT_GROUP = "pyc.policies"
# the arena algorithms a policy may name in `placement` (planning/arena.py)
OFFSET_ALGORITHMS = ("greedy_by_size", "greedy_by_conflicts", "greedy_by_start", "hill_climb")
# how a policy obtains the arena memory when offsets are computed at run time (symbolic dims):
# `reserve` allocates the upper bounds' arena once and a run touches only its tight prefix;
# `grow` allocates what the largest run so far used (planning/runtime_offsets.py)
ARENA_STRATEGIES = ("reserve", "grow")
SCHEDULE_ORDERS = ("given", "depth_first", "greedy_memory")  # planning/schedule.py ORDERS


class KernelCandidateLike(Protocol):
    """What a policy sees of a kernel candidate (targets/kernel.KernelCandidate)."""

    @property
    def name(self) -> str: ...

    @property
    def inplace_input(self) -> int | None: ...

    @property
    def inplace_slower(self) -> bool: ...

    def cost(self, node: Node, graph: Graph) -> float: ...

    def fits_cap(self, node: Node, graph: Graph, cap: int) -> bool: ...


K = TypeVar("K", bound=KernelCandidateLike)


@dataclass(frozen=True)
class Policy:
    """The planner's rules. Subclass it (a frozen dataclass too) to change a method; set fields
    to change a rule. `name` is what `pyc build --policy` takes; `version` goes into the
    manifest and the decision log, so an artifact says which rules planned it."""

    name: str
    version: str = "1"
    summary: str = ""
    # schedule: the orders tried (the lowest peak of live bytes wins; ties: this order); one
    # order, or none, keeps the model's order
    schedule_orders: tuple[str, ...] = ()
    # memory_first rewrites: conv -> pool chains computed one channel slice at a time, and cheap
    # values recomputed next to later users, each kept only where the peak drops
    tile_channels: bool = False
    rematerialize: bool = False
    # aliasing: a result may overwrite an operand that dies at its step (fused elementwise
    # loops, kernels that declare an in-place input); `slow_inplace` also takes the in-place
    # paths that run slower (LRN's ring of saved channels)
    inplace: bool = True
    slow_inplace: bool = False
    # a concat's inputs are written into its output in place (no copies); with
    # `concat_copies_for_peak` a concat live at the peak step gets copies where that lowers it
    # (and a run-time If keeps its select's copy where its branches written into its output
    # would raise the peak)
    concat_copies_for_peak: bool = True
    # placement: arena algorithms run on the blocks, the smallest arena kept (see `place`)
    placement: tuple[str, ...] = OFFSET_ALGORITHMS
    # kernel choice: the largest scratch one kernel may take (tiled kernels shrink to it), and
    # whether a candidate whose whole-copy scratch exceeds it is passed over
    workspace_cap: int = 512 * 1024
    fit_workspace_cap: bool = False
    # symbolic dims: None keeps fixed offsets sized for the upper bounds; else the run-time
    # offsets' arena strategy (ARENA_STRATEGIES)
    runtime_arena: str | None = "reserve"
    # kernels and memory plan chosen together (passes/coselect.py): the fastest kernel wherever
    # its scratch fits the budget (or the smallest lean arena), and only the latency-costing
    # rewrites (tiling, rematerialization) that the best fitting plan needs
    coselect: bool = False
    # why each rule is set so ({rule: why}), logged with the policy's first decision
    rules: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        """name@version, as the manifest and the decision log record it."""
        return f"{self.name}@{self.version}"

    def place(self, blocks: list[Block]) -> tuple[str, int]:
        """Give every block an offset (block.offset); returns (algorithm name, arena bytes).
        Override to place differently; blocks whose lifetimes overlap must not overlap."""
        return assign_offsets(blocks, self.placement)

    def choose_kernel(self, node: Node, graph: Graph, candidates: Sequence[K]) -> K:
        """The candidate the cost model picks among applicable `candidates` (never empty): the
        lowest estimate (ties: by name), over those whose scratch fits the cap when asked.
        A measured choice from the tuning database still takes precedence."""
        fitting = [c for c in candidates if not self.fit_workspace_cap
                   or c.fits_cap(node, graph, self.workspace_cap)] or list(candidates)
        return min(fitting, key=lambda c: (c.cost(node, graph), c.name))

    def inplace_input(self, candidate: KernelCandidateLike) -> int | None:
        """The input `candidate` may overwrite under this policy (None: never)."""
        if not self.inplace or candidate.inplace_input is None:
            return None
        return candidate.inplace_input if self.slow_inplace or not candidate.inplace_slower \
            else None

    def check(self) -> None:
        """Refuse a policy whose fields name no known algorithm (PYC-E060)."""
        problems = [f"placement {a!r}" for a in self.placement if a not in OFFSET_ALGORITHMS]
        problems += [f"schedule order {o!r}" for o in self.schedule_orders
                     if o not in SCHEDULE_ORDERS]
        if self.runtime_arena not in (None, *ARENA_STRATEGIES):
            problems.append(f"runtime_arena {self.runtime_arena!r}")
        if self.workspace_cap < 0:
            problems.append(f"workspace_cap {self.workspace_cap}")
        if problems:
            raise PycError("E060", f"policy {self.name!r} names unknown rules: "
                           + ", ".join(problems),
                           hint=f"placement: {', '.join(OFFSET_ALGORITHMS)}; schedule orders: "
                           f"{', '.join(SCHEDULE_ORDERS)}; runtime_arena: None or "
                           f"{', '.join(ARENA_STRATEGIES)}")


LATENCY_FIRST = Policy(
    "latency_first", summary="the fastest code: no in-place writes, fixed offsets",
    inplace=False, concat_copies_for_peak=False, runtime_arena=None,
    rules={"inplace": "no result overwrites an operand (no read-after-write hazards to order)",
           "runtime_arena": "fixed offsets: no run computes an offset"})
BALANCED = Policy(
    "balanced", summary="the smallest arena that costs no speed",
    rules={"inplace": "results overwrite dying operands where the kernel is as fast",
           "runtime_arena": "offsets computed at run time, arena reserved for the bounds"})
MEMORY_FIRST = Policy(
    "memory_first", version="2", summary="the smallest arena: reordering, tiling, recomputation",
    schedule_orders=SCHEDULE_ORDERS, tile_channels=True, rematerialize=True,
    slow_inplace=True, workspace_cap=32 * 1024, fit_workspace_cap=True, runtime_arena="grow",
    coselect=True,
    rules={"schedule_orders": "the candidate order with the lowest peak of live bytes",
           "coselect": "faster kernels and fewer rewrites wherever the arena stays as small "
                       "(or within --memory-budget)",
           "inplace": "results overwrite dying operands, slower in-place paths too",
           "workspace_cap": "scratch far below the activations (a little GEMM width given up)",
           "runtime_arena": "offsets computed at run time, arena grown on demand"})
BUILTIN: tuple[Policy, ...] = (LATENCY_FIRST, BALANCED, MEMORY_FIRST)
MODES = tuple(p.name for p in BUILTIN)  # the memory modes: the built-in policies' names


# the decision-log actions a policy rule decides (PassContext.log names the rule in `serves`);
# every other action follows a rule that is the same under every policy, named by its pass
RULE_OF_ACTION = {
    "policy": "policy", "select_kernel": "choose_kernel", "workspace": "workspace_cap",
    "inplace": "inplace", "concat_in_place": "concat_copies_for_peak",
    "branch_outputs": "concat_copies_for_peak",
    "schedule": "schedule_orders", "tile_channels": "tile_channels", "keep_whole": "tile_channels",
    "rematerialize": "rematerialize", "keep_live": "rematerialize", "summary": "placement",
    "symbolic_sizes": "runtime_arena", "determinism_check": "determinism",
    "coselect": "coselect", "coselect_kernel": "coselect", "coselect_keep": "coselect",
}


def serves(policy_name: str, pass_name: str, action: str) -> str:
    """The machine-readable rule a decision serves: `policy:NAME/RULE` for a policy's rule,
    `pass:PASS/ACTION` for a rule every policy shares (contract clauses name themselves)."""
    rule = RULE_OF_ACTION.get(action)
    if rule is not None and pass_name in ("plan_memory", "select_kernels"):
        return f"policy:{policy_name}/{rule}"
    return f"pass:{pass_name}/{action}"


@lru_cache(maxsize=1)
def registry() -> dict[str, Policy]:
    """Every known policy by name: the built-in ones first, then the `pyc.policies` entry
    points sorted by name (deterministic whatever order the installed packages come in).
    `registry.cache_clear()` reads the entry points again."""
    policies = {p.name: p for p in BUILTIN}
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        register(_load(entry), policies, entry.name)
    return policies


def register(policy: Policy, policies: dict[str, Policy] | None = None,
             entry_name: str | None = None) -> Policy:
    """Add `policy` to the registry (what an entry point does; tests call it directly)."""
    policies = registry() if policies is None else policies
    if not isinstance(policy, Policy):
        raise PycError("E060", f"policy entry point {entry_name!r} gives a "
                       f"{type(policy).__name__}, not a pyc_cli.planning.policy.Policy",
                       hint="the entry point must name a Policy object (module:ATTRIBUTE)")
    if entry_name is not None and entry_name != policy.name:
        raise PycError("E060", f"policy entry point {entry_name!r} gives policy {policy.name!r}",
                       hint="name the entry point as the policy it gives")
    known = policies.get(policy.name)
    if known is not None and known != policy:
        raise PycError("E060", f"two different policies are named {policy.name!r}",
                       hint="a built-in policy cannot be replaced; give yours another name")
    policy.check()
    policies[policy.name] = policy
    return policy


def _load(entry: metadata.EntryPoint) -> Policy:
    try:
        loaded: Policy = entry.load()
    except Exception as exc:  # noqa: BLE001 (a broken plugin is the user's error, named)
        raise PycError("E060", f"policy plugin {entry.name!r} ({entry.value}) fails to load: "
                       f"{type(exc).__name__}: {exc}",
                       hint="fix or uninstall the package that declares it") from exc
    return loaded


def get_policy(name: str | Policy) -> Policy:
    """The policy named `name` (a Policy is returned as it is); PYC-E060 lists the known ones."""
    if isinstance(name, Policy):
        return name
    builtin = next((p for p in BUILTIN if p.name == name), None)
    if builtin is not None:  # a mode: no plugin is loaded (a broken one cannot stop the build)
        return builtin
    policies = registry()
    if name not in policies:
        raise PycError("E060", f"unknown policy {name!r}", where="--policy",
                       hint=f"known policies: {', '.join(policies)} (plugins register in the "
                       f"{ENTRY_POINT_GROUP!r} entry point group; docs/planner.md)")
    return policies[name]


def is_builtin(policy: Policy) -> bool:
    return any(policy is p for p in BUILTIN)
