"""What every target is: a target owns its kernel candidates (which op runs on which template,
chosen by passes/select_kernels.py through `candidates`), turns a lowered graph into sources and
builds them into a loadable library. Adding CUDA adds a `Target` subclass, its candidates and
a template directory, not a fork of the pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..abi import IoInfo
from ..ir.graph import Graph, Node
from ..ir.symbolic import DimBounds, entry_source, value_source
from ..passes.pipeline import DEFAULT_TAIL, Pass
from ..planning.plan import MemoryPlan
from ..planning.weights import Conversion, WeightsLayout
from ..templating import templates_dir
from .kernel import KernelCandidate


@dataclass(frozen=True)
class BucketInfo:
    """A shape bucket as the generic plan's dispatch sees it (c/buckets.c.j2): its id, its
    library's symbol prefix, whether every dim is fixed (a static plan, run without shapes),
    its box: the bounds of each of the generic plan's dims, in their order, and its library's
    sha256 (hex), which the dispatch checks before loading it."""

    id: str
    prefix: str
    static: bool
    lo: list[int]
    hi: list[int]
    sha256: str


@dataclass(frozen=True)
class ModelInfo:
    """Everything the model-level templates need besides the kernel calls."""

    pyc_version: str
    inputs: list[IoInfo]
    outputs: list[IoInfo]
    arena_bytes: int
    weights_bytes: int
    weights_checksum: int
    name: str  # the prefix of every exported symbol (targets/abi_name.py)
    threads: int = 0  # a run's default team size (0: every core; PYC_NUM_THREADS overrides)
    # symbolic dims (issue #15; abi.run_dims): none for a static model
    dims: list[DimBounds] = field(default_factory=list)
    input_axes: list[list[int]] = field(default_factory=list)
    # each input axis's step (NAME:LO..HI/STEP: the axis is STEP*NAME); empty where every
    # step is 1
    input_steps: list[list[int]] = field(default_factory=list)
    output_dims_c: list[list[str]] = field(default_factory=list)
    # run-time offsets (issue #15; planning/runtime_offsets.py): each block's aligned size as C
    # over `dims` and the blocks below it; how the arena is obtained (reserve | grow). Empty:
    # fixed offsets
    offset_blocks: list[dict[str, Any]] = field(default_factory=list)
    arena_policy: str = ""

    # shape buckets (issue #15): the generic plan's dispatch table, in dispatch order, and the
    # buckets' library file name; a bucket's own plan exports NAME_create_borrowed
    buckets: list[BucketInfo] = field(default_factory=list)
    bucket_library: str = ""
    borrows_weights: bool = False

    # value dims (issue #15, point 2): {index, input, element, ctype, lo, hi}, each dims[index]
    # read by the entry point from element `element` of input `input` (symbolic.value_dim)
    value_dims: list[dict[str, Any]] = field(default_factory=list)
    # then what it computes and checks before the first kernel (abi.entry_steps)
    entry_steps: list[dict[str, Any]] = field(default_factory=list)
    # run-time If branches compiled as pyc.Unreachable (frontend/branch_traps.py): {if, branch,
    # reason}; a run taking one returns PYC_STATUS_BRANCH_NOT_COMPILED
    unreachable: list[dict[str, str]] = field(default_factory=list)

    @property
    def dims_const(self) -> str:
        """How run functions take the dims array: read-only, unless a kernel computes a dim at
        run time (issue #15, point 2) and writes it there."""
        return "" if any(d.computed for d in self.dims) else "const "

    @property
    def kernel_dims(self) -> list[int]:
        """The dims a kernel writes during a run (not value dims, which the entry point reads
        from the inputs first): a run starts them at their upper bounds, so run-time arena
        offsets, computed before the first kernel, size them for the bound."""
        return [k for k, d in enumerate(self.dims)
                if d.computed and value_source(d) is None and entry_source(d) is None]


def runtime_plan(plan: MemoryPlan) -> dict[str, Any]:
    """ModelInfo's run-time offset fields for `plan` (none for a plan of fixed offsets)."""
    if plan.runtime is None:
        return {}
    return {"offset_blocks": plan.runtime.c_blocks(), "arena_policy": plan.runtime.arena}


class Target:
    name = ""
    template_subdir = ""
    library_name = ""
    # op -> the target's kernel candidates for it (targets/<name>/kernels.py)
    kernels: Mapping[str, tuple[KernelCandidate, ...]] = {}

    def has_template(self, template: str) -> bool:
        return (templates_dir() / self.template_subdir / "kernels" / template).is_file()

    def candidates(self, node: Node, graph: Graph) -> list[KernelCandidate]:
        """The candidates that apply to `node` and whose template this target has."""
        return [c for c in self.kernels.get(node.op, ())
                if c.is_applicable(node, graph) and self.has_template(c.template)]

    def candidate_names(self, op: str) -> set[str]:
        return {c.name for c in self.kernels.get(op, ())}

    def chosen(self, node: Node) -> KernelCandidate | None:
        """The candidate select_kernels recorded for the node (None for a view, an in-place
        result or a node not yet given a kernel)."""
        if node.ann.kernel is None or node.ann.kernel.is_alias:
            return None
        name = node.ann.kernel.candidate
        return next(c for c in self.kernels[node.op] if c.name == name)

    def takes_epilogue(self, op: str) -> bool:
        """Whether every kernel of this target for `op` applies a fused epilogue (fusion
        happens before the kernel is chosen, so whichever is chosen must take it)."""
        kernels = self.kernels.get(op, ())
        return bool(kernels) and all(c.takes_epilogue for c in kernels)

    def blocked_layout(self) -> tuple[str, int]:
        """No blocked channel layout unless a target has kernels for it (the CPU target)."""
        return "nchw", 0

    def takes_prologue(self, node: Node, graph: Graph) -> bool:
        """Whether a kernel of this target computes an elementwise prologue of input 0."""
        return any(c.accepts_prologue(node, graph) and self.has_template(c.template)
                   for c in self.kernels.get(node.op, ()))

    def constant_panels(self, graph: Graph) -> dict[str, int]:
        """Constants the chosen kernels read as packed panels, name -> panel width, for the
        weights file. Every reader of such a constant must read the same panels (a candidate
        applies only where that holds); anything else is a bug here."""
        packed: dict[str, int] = {}
        as_is: set[str] = set()
        for node in graph.nodes:
            chosen = self.chosen(node)
            for index, value in enumerate(node.inputs):
                if value not in graph.constants or \
                        (chosen is not None and chosen.transform_of(node, graph, index)):
                    continue
                width = None if chosen is None else chosen.panels_of(node, graph, index)
                if width is None:
                    as_is.add(value)
                elif packed.setdefault(value, width) != width:
                    raise RuntimeError(f"readers of {value!r} want different panel widths")
        both = sorted(as_is & set(packed))
        if both:
            raise RuntimeError(f"{both} read both packed and as stored")
        return packed

    def constant_transforms(self, graph: Graph) -> dict[str, str]:
        """Constants the chosen kernels read through a build-time transform, name -> transform
        (planning/weights.TRANSFORMS), for the weights file. A candidate with a transform applies
        only to a constant no other node reads; another reader is a bug here."""
        transformed: dict[str, str] = {}
        readers: dict[str, int] = {}
        for node in graph.nodes:
            chosen = self.chosen(node)
            for index, value in enumerate(node.inputs):
                if value not in graph.constants:
                    continue
                readers[value] = readers.get(value, 0) + 1
                transform = None if chosen is None else chosen.transform_of(node, graph, index)
                if transform is not None:
                    transformed[value] = transform
        shared = sorted(name for name in transformed if readers[name] > 1)
        if shared:
            raise RuntimeError(f"{shared} read through a transform and by another reader")
        return transformed

    def constant_conversions(self, graph: Graph) -> dict[str, Conversion]:
        """Float32 constants the chosen kernels read in a 16-bit type, for the weights file
        (the CUDA target's tensor-core GEMM at --precision fp16/bf16); none by default."""
        return {}

    def precision_note(self) -> str | None:
        """What the build's compute precision changes, for the decision log (None: the
        model's own types throughout)."""
        return None

    def pipeline_tail(self) -> tuple[tuple[str, Pass], ...]:
        """The passes this target runs after the shared front: kernel selection and memory
        planning by default; a target adds its own (streams, device memory) here."""
        return DEFAULT_TAIL

    def emit(self, graph: Graph, plan: MemoryPlan, weights: WeightsLayout,
             info: ModelInfo) -> dict[str, str]:
        """Generated source files, name -> text."""
        raise NotImplementedError

    def compile(self, src_dir: Path, out_dir: Path, name: str) -> dict[str, Any]:
        """Build the library of the model called `name` from `src_dir` into `out_dir`; return
        the toolchain description."""
        raise NotImplementedError

    def toolchain(self) -> dict[str, Any]:
        raise NotImplementedError

    def cpu_record(self) -> dict[str, Any]:
        """The manifest's `cpu` record: what the code needs of the CPU that runs it."""
        raise NotImplementedError
