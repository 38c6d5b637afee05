"""The pass pipeline: one fixed, ordered list. These tuples are the compiler's architecture.

Every target runs the same front (from canonicalize to liveness); the back half is the target's
(`Target.pipeline_tail`): kernel selection and memory planning by default, to which a target adds
what only it needs (a GPU target: streams, device memory)."""

from __future__ import annotations

from collections.abc import Callable

from ..ir.graph import Graph
from ..ir.verify import verify
from ..ops import registry
from ..progress import BuildSteps
from .analyze_liveness import analyze_liveness
from .assign_layouts import assign_layouts
from .canonicalize import canonicalize
from .context import PassContext
from .eliminate_dead_code import eliminate_dead_code
from .fold_constants import fold_constants
from .fuse import fuse
from .fuse_attention import fuse_attention
from .infer_shapes import infer_shapes
from .plan_memory import plan_memory
from .select_kernels import select_kernels

Pass = Callable[[Graph, PassContext], Graph]

FRONT: tuple[tuple[str, Pass], ...] = (
    ("canonicalize", canonicalize),
    ("fold_constants", fold_constants),
    ("infer_shapes", infer_shapes),
    ("assign_layouts", assign_layouts),
    ("fuse", fuse),
    ("fuse_attention", fuse_attention),
    ("eliminate_dead_code", eliminate_dead_code),
    ("analyze_liveness", analyze_liveness),
)
DEFAULT_TAIL: tuple[tuple[str, Pass], ...] = (
    ("select_kernels", select_kernels),
    ("plan_memory", plan_memory),
)
PIPELINE = FRONT + DEFAULT_TAIL  # the CPU target's whole pipeline
PASS_NAMES = tuple(name for name, _ in PIPELINE)


def passes_for(ctx: PassContext) -> tuple[tuple[str, Pass], ...]:
    """The front, then the build target's tail."""
    return FRONT + (tuple(ctx.target.pipeline_tail()) if ctx.target is not None else DEFAULT_TAIL)


def run_pipeline(graph: Graph, ctx: PassContext, stop_after: str | None = None,
                 steps: BuildSteps | None = None) -> Graph:
    """Run the passes in order, verifying the IR after each; optionally stop after one.
    `steps` times each pass (with its verification) as step "pass NAME"."""
    steps = steps or BuildSteps()
    kernels = ctx.target.candidate_names if ctx.target is not None else None
    verify(graph, registry.lookup, after="import", kernels=kernels)
    for name, run in passes_for(ctx):
        before = len(graph.nodes)
        with steps.step(f"pass {name}"):
            graph = run(graph, ctx)
            verify(graph, registry.lookup, after=name, kernels=kernels)
        ctx.log(name, [], "node_count", "graph size after the pass", before=before,
                after=len(graph.nodes))
        if name == stop_after:
            break
    return graph
