"""What every pass receives: frozen build options and the decision log it appends to."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..planning.policy import MODES, Policy, get_policy, is_builtin, serves
from .target import KernelTarget
from .tuning import EmptyTuningDatabase, TuningDatabase

__all__ = ["MODES", "BuildOptions", "Decision", "PassContext"]  # MODES: the built-in policies


@dataclass(frozen=True)
class BuildOptions:
    mode: str = "balanced"  # the planner policy's name (a memory mode is a built-in policy)
    target: str = "cpu"
    alignment: int = 64
    # replay the policy's decisions and refuse the build if they differ (PYC-E061): always for
    # a policy that is not built in, and for a build whose contract asks `deterministic`
    check_determinism: bool = False
    # the activation arena the build must fit (--memory-budget; None: none given), and how a
    # policy with `coselect` chooses kernels: "coselect" (with the memory plan, issue #16
    # point 2, passes/coselect.py) or "sequential" (kernels first, then the plan: the baseline)
    memory_budget: int | None = None
    kernel_selection: str = "coselect"


@dataclass
class Decision:
    """One optimization decision: which pass, on which nodes/values, what it did and why."""

    pass_name: str
    nodes: list[str]
    action: str
    reason: str
    before: Any = None
    after: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["pass"] = record.pop("pass_name")
        extra = record.pop("extra")
        record.update(extra)
        return {k: v for k, v in record.items() if v is not None}


@dataclass
class PassContext:
    options: BuildOptions
    decisions: list[Decision] = field(default_factory=list)
    # results that later stages need besides the graph (liveness, memory plan, kernel choices)
    artifacts: dict[str, Any] = field(default_factory=dict)
    # measured kernel choices that select_kernels prefers to the cost model
    tuning: TuningDatabase = field(default_factory=EmptyTuningDatabase)
    # the build target (options.target's object), put here by the pipeline's caller: passes
    # ask it for kernel candidates without importing the targets layer
    target: KernelTarget | None = None

    @property
    def policy(self) -> Policy:
        """The planner policy the build's mode names (planning/policy.py)."""
        return get_policy(self.options.mode)

    @property
    def checks_determinism(self) -> bool:
        """Whether the planner replays the policy's decisions (BuildOptions.check_determinism)."""
        return self.options.check_determinism or not is_builtin(self.policy)

    @property
    def kernels(self) -> KernelTarget:
        """The build target, for the passes that choose or size kernels."""
        if self.target is None:
            raise ValueError("PassContext.target is not set: kernel selection needs the target")
        return self.target

    def log(self, pass_name: str, nodes: list[str], action: str, reason: str,
            before: Any = None, after: Any = None, **extra: Any) -> None:
        """Append a decision; `serves` (default: planning/policy.serves) names the policy rule,
        shared pass rule or contract clause it follows, for tools to read."""
        extra.setdefault("serves", serves(self.options.mode, pass_name, action))
        self.decisions.append(Decision(pass_name, list(nodes), action, reason, before, after, extra))
