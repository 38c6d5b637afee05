"""What a target's kernel candidate declares (target-neutral; each target lists its own).

A candidate is one way to compute an op on a target: a template, the nodes it applies to, its
tunable parameters with their legal values, the scratch it needs and a cost estimate.
`passes/select_kernels.py` chooses among the applicable ones through the target
(`Target.candidates`), without knowing templates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..ir.graph import Graph, Node
from ..ops import registry


@dataclass(frozen=True)
class Tunable:
    """A parameter a tuner may set, with its legal values (the first is today's default)."""

    name: str
    values: tuple[int, ...]
    doc: str = ""


@dataclass(frozen=True)
class KernelCandidate:
    """One way to implement an op on a target: a template plus when it applies and what it costs."""

    name: str
    template: str
    applies: Callable[[Node, Graph], bool] | None = None
    cost_factor: float = 1.0  # the estimate is cost_factor * the op's flops
    workspace: Callable[[Node, Graph], int] | None = None  # scratch bytes the planner provides
    # each output element is stored once, after its epilogue operands are read at that same
    # index: an epilogue operand that dies here may share the output's bytes
    stores_once: bool = False
    # False drops `restrict` from the kernel's pointers: GCC 12's SLP vectorizer miscompiled a
    # variant of the recurrent kernel with them (onnx test_lstm_reverse at -O3, right at -O2)
    restrict_pointers: bool = True
    tunables: tuple[Tunable, ...] = ()
    # numbers and names this candidate's template needs beyond the op's kernel_params (a tile,
    # loop coordinates), given the node and the op's params
    params: Callable[[Node, Graph, dict[str, object]], dict[str, object]] | None = None
    # the input the kernel may overwrite with its output when that input dies here (it reads
    # every element it needs from a row before writing that row); `inplace_slower`: that path
    # runs slower, so only a policy with `slow_inplace` (memory_first) takes it
    inplace_input: int | None = None
    inplace_slower: bool = False
    # the kernel applies a fused elementwise epilogue to each element as it stores it
    takes_epilogue: bool = False
    # whether the kernel computes an elementwise prologue on input 0 as it reads it (fuse)
    takes_prologue: Callable[[Node, Graph], bool] | None = None
    # the panel width in which this kernel reads constant input `index` (planning/weights.py
    # stores it so, once, at build time), or None where it reads the constant as it is
    constant_panels: Callable[[Node, Graph, int], int | None] | None = None
    # a shape-dependent factor on the cost estimate (a measured crossover between candidates)
    cost_scale: Callable[[Node, Graph], float] | None = None
    # the build-time transform (planning/weights.TRANSFORMS name) through which this kernel
    # reads constant input `index` (the weights file stores it transformed), or None
    constant_transform: Callable[[Node, Graph, int], str | None] | None = None
    # why this kernel suits the node, for the decision log when it is chosen (None: nothing
    # beyond its cost)
    why: Callable[[Node, Graph], str] | None = None
    # the workspace is a whole copy (not tiles that shrink to the memory mode's cap): where it
    # exceeds the cap, memory_first takes another applicable candidate
    workspace_fixed: bool = False
    # the kernel reads symbolic dims (issue #15) at run time instead of baking in their upper
    # bounds: only such a kernel may run a node whose shapes hold a Dim
    symbolic_dims: bool = False
    # the kernel computes a dim at run time (issue #15, point 2: a Range of a run-time count,
    # NonZero) and writes it into the `dims` array, which it then takes writable
    writes_dims: bool = False
    # parameters under which the kernel takes less scratch for the same work (Winograd: fewer
    # scratch holders), most scratch first: co-selection tries them where the default's scratch
    # does not fit the arena (passes/coselect.py); the cost model prices them alike
    smaller_scratch: Callable[[Node, Graph], list[dict[str, object]]] | None = None

    def is_applicable(self, node: Node, graph: Graph) -> bool:
        return self.applies is None or self.applies(node, graph)

    @property
    def has_workspace(self) -> bool:
        return self.workspace is not None

    def workspace_bytes(self, node: Node, graph: Graph) -> int:
        return 0 if self.workspace is None else self.workspace(node, graph)

    def scratch_options(self, node: Node, graph: Graph) -> list[dict[str, object]]:
        """Parameters with less scratch than the default's (see `smaller_scratch`)."""
        return [] if self.smaller_scratch is None else self.smaller_scratch(node, graph)

    def fits_cap(self, node: Node, graph: Graph, cap: int) -> bool:
        """Whether the scratch stays within `cap` bytes (tiled scratch always does)."""
        return not self.workspace_fixed or self.workspace_bytes(node, graph) <= cap

    def cost(self, node: Node, graph: Graph) -> float:
        scale = 1.0 if self.cost_scale is None else self.cost_scale(node, graph)
        return scale * self.cost_factor * registry.get(node.op).flops(node, graph)

    def accepts_prologue(self, node: Node, graph: Graph) -> bool:
        return self.takes_prologue is not None and self.takes_prologue(node, graph) \
            and self.is_applicable(node, graph)

    def template_params(self, node: Node, graph: Graph, op_params: dict[str, object]
                        ) -> dict[str, object]:
        return {} if self.params is None else self.params(node, graph, op_params)

    def panels_of(self, node: Node, graph: Graph, index: int) -> int | None:
        """The panel width in which this kernel reads constant input `index` (None: as is)."""
        if self.constant_panels is None or node.inputs[index] not in graph.constants:
            return None
        return self.constant_panels(node, graph, index)

    def transform_of(self, node: Node, graph: Graph, index: int) -> str | None:
        """The transform through which this kernel reads constant input `index` (None: none)."""
        if self.constant_transform is None or node.inputs[index] not in graph.constants:
            return None
        return self.constant_transform(node, graph, index)

    def reason(self, node: Node, graph: Graph) -> str:
        """What the decision log adds when this kernel is chosen ("" for nothing)."""
        return "" if self.why is None else self.why(node, graph)


class _NamedCall(Protocol):
    fn: str
    index: int


def shared_definitions(calls: Sequence[_NamedCall], render: Callable[[_NamedCall], str]
                       ) -> list[tuple[_NamedCall, str, list[int]]]:
    """Each distinct kernel definition once, as (first call, text, steps): a call whose rendered
    definition (its name aside) equals an earlier one's is pointed at that function (its `fn`
    is changed) and added to its steps. First-occurrence order, so deterministic."""
    by_text: dict[str, tuple[_NamedCall, str, list[int]]] = {}
    for call in calls:
        text = render(call)
        anonymous = text.replace(f" {call.fn}(", " @(", 1)
        found = by_text.get(anonymous)
        if found is None:
            by_text[anonymous] = (call, text, [call.index])
            continue
        found[2].append(call.index)
        call.fn = found[0].fn
    return list(by_text.values())
