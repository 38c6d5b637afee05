"""What the passes ask of the build target, as protocols: the pipeline's caller (api.py) puts
the target into the PassContext, so passes call it without importing the targets above them.
pyc_cli/targets/base.py's `Target` and targets/kernel.py's `KernelCandidate` implement these."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..ir.graph import Graph, Node


class KernelOption(Protocol):
    """One kernel candidate of the target, as selection and memory planning see it."""

    @property
    def name(self) -> str: ...

    @property
    def stores_once(self) -> bool: ...

    @property
    def has_workspace(self) -> bool: ...

    @property
    def symbolic_dims(self) -> bool:
        """Whether the kernel reads symbolic dims at run time (issue #15)."""
        ...

    def workspace_bytes(self, node: Node, graph: Graph) -> int: ...

    def cost(self, node: Node, graph: Graph) -> float: ...

    def reason(self, node: Node, graph: Graph) -> str:
        """Why this kernel suits the node, for the decision log ("" for nothing)."""
        ...

    def scratch_options(self, node: Node, graph: Graph) -> list[dict[str, object]]:
        """Parameters under which the kernel takes less scratch for the same work (co-selection
        tries them where the default's does not fit), most scratch first."""
        ...

    def fits_cap(self, node: Node, graph: Graph, cap: int) -> bool:
        """Whether the kernel's scratch stays within `cap` bytes (tiled scratch shrinks to it)."""
        ...

    @property
    def inplace_input(self) -> int | None:
        """The input the kernel may overwrite with its output (Policy.inplace_input decides)."""
        ...

    @property
    def inplace_slower(self) -> bool:
        """Whether that in-place path runs slower (only some policies take it)."""
        ...


class KernelTarget(Protocol):
    """The target's side of kernel selection."""

    @property
    def name(self) -> str: ...

    def candidates(self, node: Node, graph: Graph) -> Sequence[KernelOption]:
        """The candidates that apply to `node` on this target."""
        ...

    def chosen(self, node: Node) -> KernelOption | None:
        """The candidate recorded in `node.ann.kernel` (None for an alias or no choice yet)."""
        ...

    def candidate_names(self, op: str) -> set[str]: ...

    def takes_epilogue(self, op: str) -> bool:
        """Whether the target's kernels for `op` apply a fused elementwise epilogue."""
        ...

    def takes_prologue(self, node: Node, graph: Graph) -> bool:
        """Whether a kernel of the target computes an elementwise prologue of input 0."""
        ...

    def blocked_layout(self) -> tuple[str, int]:
        """(mode, block): how passes/assign_layouts.py may use the blocked channel layout
        ("nchw": never, "auto": where the cost model says, "blocked": wherever it can) and in
        blocks of how many channels (0: the target has no blocked kernels)."""
        ...

    def pipeline_tail(self) -> Sequence[tuple[str, Callable[..., Graph]]]:
        """The passes this target runs after the shared front (passes/pipeline.py)."""
        ...
