"""The CUDA target: one CUDA C++ source of kernels per model (model.cu), compiled by NVRTC into a
CUBIN (+ PTX) for one GPU architecture, and a launch plan (launches.json) that the runtime
(runtime/cuda.py) follows: one launch per step in schedule order, every argument a fixed place
in the model's inputs, outputs, weights or the one device arena the memory plan sizes."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...abi import run_dims as abi_run_dims
from ...errors import PycError
from ...frontend.branch_traps import UNREACHABLE
from ...ir import guards
from ...ir.graph import Graph
from ...ir.run_dims import model_dims
from ...ir.symbolic import DimBounds
from ...ir.types import DType
from ...passes.pipeline import DEFAULT_TAIL, Pass
from ...passes.plan_memory import NAME as PLAN_MEMORY
from ...passes.plan_memory import plan_memory_fixed_offsets
from ...planning.plan import MemoryPlan
from ...planning.weights import Conversion, WeightsLayout
from ...templating import template_env
from ..base import ModelInfo, Target
from ..cpu.target import PointerTable
from ..kernel import shared_definitions
from . import toolchain
from .fuse_norm import NAME as FUSE_NORM
from .fuse_norm import fuse_layernorm
from .kernel_context import SPACES, TMA_ALIGN, Argument, CudaCall, Launch, TensorMap, cuda_call
from .kernels import CUDA_KERNELS, PRECISIONS, WGMMA_ARCHS, cuda_kernels
from .storage import NAME, store_16bit

SOURCE = "model.cu"
LAUNCHES = "launches.json"  # under src/: a runtime file (the loader reads and checks it)
CUBIN = "model.cubin"
PTX = "model.ptx"
LAUNCH_FORMAT = 1
# the run's status word; kernels that count (the K-split conv's tiles) get words past it, all
# zeroed at load (launches.json's status_bytes, where there are any)
STATUS_WORD_BYTES = 4
MMA_KERNEL = "cuda_matmul_mma"
MMA_DIMS_KERNEL = "cuda_matmul_mma_dims"  # over run-time sizes: B a static constant too
WGMMA_KERNEL = "cuda_matmul_wgmma"
WGMMA_TMA_KERNEL = "cuda_matmul_wgmma_tma"
CONV_MMA_KERNEL = "cuda_conv_mma"
# how a kernel reads a constant input 1 stored in 16 bits: both GEMMs as rows padded to 8
# columns (one layout: a B both read is stored once), the conv as a flat [OC, C*KH*KW]
B_READS = {MMA_KERNEL: MMA_KERNEL, WGMMA_KERNEL: MMA_KERNEL, WGMMA_TMA_KERNEL: MMA_KERNEL,
           MMA_DIMS_KERNEL: MMA_KERNEL, CONV_MMA_KERNEL: CONV_MMA_KERNEL}
# what each reduced precision changes (the decision log's "precision" entry; docs/cuda.md)
PRECISION_NOTES = {
    "tf32": "MatMuls of more than 8 rows and convolutions of one group run on tensor cores "
            "(mma.sync m16n8k8) with inputs rounded to TF32 (10-bit mantissa) and float32 "
            "accumulation; everything else in float32",
    "fp16": "MatMuls of more than 8 rows run on tensor cores (mma.sync m16n8k16) with inputs "
            "rounded to float16 and float32 accumulation; constant B matrices only they read are "
            "stored as float16; fused attention runs on tensor cores too (Q, K, V and the "
            "probabilities rounded to float16); convolutions of one group run as implicit GEMMs "
            "on tensor cores (weights stored as float16); intermediate activations are stored "
            "as float16 where every kernel reading and writing them takes 16 bits (kernels "
            "compute in float32: statistics, softmax and accumulators), the model's inputs "
            "and outputs stay float32",
    "bf16": "MatMuls of more than 8 rows run on tensor cores (mma.sync m16n8k16) with inputs "
            "rounded to bfloat16 and float32 accumulation; constant B matrices only they read are "
            "stored as bfloat16; fused attention runs on tensor cores too (Q, K, V and the "
            "probabilities rounded to bfloat16); convolutions of one group run as implicit GEMMs "
            "on tensor cores (weights stored as bfloat16); intermediate activations are stored "
            "as bfloat16 where every kernel reading and writing them takes 16 bits (kernels "
            "compute in float32: statistics, softmax and accumulators), the model's inputs "
            "and outputs stay float32",
}
HALF_STORAGE = {"fp16": "float16", "bf16": "bfloat16"}
# ... and on sm_90, what the Hopper GEMM changes
WGMMA_NOTE = ("; on sm_90 the large MatMuls (128 or more tiles of 128 x 128, K of 256 or "
              "more) run on Hopper's wgmma instead (same rounding, float32 accumulation), and "
              "the CUBIN is then compiled for sm_90a (it runs on sm_90 only)")


@dataclass
class KernelDefinition:
    """One __global__ function of model.cu and the steps that launch it."""

    fn: str
    op: str
    kernel: str
    template: str
    text: str
    steps: list[int]


def kernel_definitions(calls: list[CudaCall], await_grid: bool = False) -> list[KernelDefinition]:
    """Each distinct kernel once (calls whose definitions come out alike launch one kernel);
    `await_grid`: each first waits for the previous grid (programmatic dependent launch)."""
    template = template_env().get_template("cuda/kernel.cu.j2")
    return [KernelDefinition(first.fn, first.op, first.kernel, first.template, text, steps)  # type: ignore[attr-defined]
            for first, text, steps in shared_definitions(
                calls, lambda call: template.render(k=call, await_grid=await_grid))]


class DevicePointers(PointerTable):
    """Where each value lives, as launch arguments (the CPU target's table, other output)."""

    def expr(self, value: str, writable: bool) -> Argument:  # type: ignore[override]
        root = self.root(value)
        if root in self.graph.outputs:
            return Argument("output", self.graph.outputs.index(root))
        if root in self.graph.inputs:
            return Argument("input", self.graph.inputs.index(root))
        if root in self.weights.offsets:
            return Argument("weights", self.weights.offsets[root])
        return Argument("arena", self.offsets[value])


class RunConditions:
    """The launch guards of a model with run-time Ifs (ir/guards.py): each guarded launch's
    condition over the plan's condition bytes (`places`: value, where its one byte lives), which
    the runtime copies to the host where a launch first needs one; a condition value that is a
    constant is decided here (as the CPU target's guard_expr does)."""

    def __init__(self, graph: Graph, pointers: DevicePointers) -> None:
        self.graph = graph
        self.pointers = pointers
        self.conditions = guards.run_conditions(graph) if guards.is_guarded(graph) else {}
        self.places: list[tuple[str, Argument]] = []
        self._index: dict[str, int] = {}

    def when(self, node: str) -> list[list[tuple[int, bool]]] | None:
        cond = self.conditions.get(node)
        if cond is None:  # guards.ALWAYS
            return None
        terms = []
        for term in guards.sorted_terms(cond):
            literals = []
            for value, polarity in term:
                if value in self.graph.constants:
                    if bool(self.graph.constants[value].reshape(-1)[0]) != polarity:
                        break  # the term never holds
                    continue
                literals.append((self.index(value), polarity))
            else:
                if not literals:
                    return None  # a term that always holds
                terms.append(literals)
        return terms  # [] never

    def index(self, value: str) -> int:
        if value not in self._index:
            self._index[value] = len(self.places)
            self.places.append((value, self.pointers.expr(value, False)))
        return self._index[value]


class CudaTarget(Target):
    name = "cuda"
    template_subdir = "cuda"
    library_name = CUBIN
    kernels = CUDA_KERNELS

    def __init__(self, arch: str = toolchain.DEFAULT_ARCH, precision: str = "fp32") -> None:
        self.arch = toolchain.check_arch(arch)
        if precision not in PRECISIONS:
            raise PycError("E050", f"--precision {precision!r} is not a precision the CUDA target "
                           "computes in", where="--precision", hint=f"use one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.kernels = cuda_kernels(precision, self.arch)
        self._record: dict[str, Any] = {}

    def pipeline_tail(self) -> tuple[tuple[str, Pass], ...]:
        """Kernel selection, LayerNormalizations fused into the tensor-core GEMM before them,
        then (at fp16 / bf16) the 16-bit activations, then planning."""
        # fixed offsets whatever the mode: every launch's addresses are bound once, at load
        # (a model with sizes known at run time only: slots sized for the upper bounds)
        return DEFAULT_TAIL[:1] + ((FUSE_NORM, fuse_layernorm), (NAME, store_16bit),
                                   (PLAN_MEMORY, plan_memory_fixed_offsets))

    def precision_note(self) -> str | None:
        note = PRECISION_NOTES.get(self.precision)
        if note and self.precision in HALF_STORAGE and self.arch in WGMMA_ARCHS:
            note += WGMMA_NOTE
        return f"--precision {self.precision}: {note}" if note else None

    def constant_conversions(self, graph: Graph) -> dict[str, Conversion]:
        """At fp16 / bf16, a float32 constant that only tensor-core GEMMs read, as their B, is
        stored in the 16-bit type with rows padded to 8 columns (16-byte cp.async rows); one
        that only tensor-core convs read, as their weight, likewise as an [OC, C * KH * KW]
        matrix (`flat`)."""
        storage = HALF_STORAGE.get(self.precision)
        if storage is None:
            return {}
        readers: dict[str, set[str]] = {}  # constant -> how each reader reads it
        for node in graph.nodes:
            chosen = self.chosen(node)
            for index, value in enumerate(node.inputs):
                if value and value in graph.constants:
                    name = chosen.name if chosen is not None and index == 1 else ""
                    readers.setdefault(value, set()).add(B_READS.get(name, "float32"))
        conversions = {}
        for name, kinds in sorted(readers.items()):
            ttype = graph.types[name]
            if len(kinds) != 1 or "float32" in kinds or ttype.dtype is not DType.F32 or ttype.rank < 2:
                continue
            flat = kinds == {CONV_MMA_KERNEL}
            columns = math.prod(ttype.shape[1:]) if flat else ttype.shape[-1]
            conversions[name] = Conversion(storage, -(-columns // 8) * 8, flat)
        return conversions

    # ------------------------------------------------------------ sources

    def calls(self, graph: Graph, converted: dict[str, Conversion] | None = None) -> list[CudaCall]:
        """The kernel calls; `converted` names constants the weights file holds in a 16-bit
        type (the kernels reading them read that type)."""
        calls = []
        for node in graph.nodes:
            chosen = self.chosen(node)
            if chosen is None:  # a view or an in-place result: no code
                continue
            calls.append(cuda_call(graph, node, len(calls), chosen, converted or {}))
        return calls

    def emit(self, graph: Graph, plan: MemoryPlan, weights: WeightsLayout,
             info: ModelInfo) -> dict[str, str]:
        calls = self.calls(graph, weights.converted)
        programmatic = toolchain.programmatic_launch(self.arch)
        kernels = kernel_definitions(calls, programmatic)
        # 16-bit operands, or a fused program that rounds a model's own 16-bit results
        # (program.j2's pyc_round_f16: float32 in and out, a float16 Cast between)
        half = any(c.half(o.param) for c in calls for o in c.operands) or any(
            i.dtype in ("f16", "bf16") for c in calls for i in (*c.epilogue, *c.prologue))
        source = template_env().get_template("cuda/model.cu.j2").render(m=info, kernels=kernels,
                                                                        half=half)
        pointers = DevicePointers(graph, plan, weights)
        nodes = [n for n in graph.nodes if self.chosen(n) is not None]
        conditions = RunConditions(graph, pointers)
        launches = []
        status_bytes = STATUS_WORD_BYTES  # the status word, then each kernel's counters
        tensor_maps: list[dict[str, object]] = []
        run_dims = check_run_dims(graph)
        dims = run_dims.dims
        # the run-time dims (a model with symbolic or computed sizes), after the counters
        dims_at = -(-(STATUS_WORD_BYTES + 4 * sum(c.counters for c in calls)) // 8) * 8
        for call, node in zip(calls, nodes):
            status = []
            if call.counters:  # the kernel's own words past the status word
                status = [Argument("status", status_bytes)]
                status_bytes += 4 * call.counters
            elif call.uses_status:
                status = [Argument("status")]
            if call.dims:  # the dims array, which it reads (and writes: writes_dims)
                status.append(Argument("status", dims_at))
            operands = pointers.arguments(node)
            args = status + operands  # type: ignore[operator]
            if call.workspace:
                args.append(Argument("arena", plan.workspaces[node.name]))
            for spec in call.tensor_maps:  # encoded at load over the operand's address
                args.append(Argument("tensormap", len(tensor_maps)))
                tensor_maps.append(tensor_map_json(spec, operands[spec.operand], node.name))  # type: ignore[arg-type]
            launches.append(Launch(call.fn, call.grid, call.block, call.shared_bytes, args,
                                   call.index, node.op, conditions.when(node.name),
                                   node.op == UNREACHABLE))
        plan_json: dict[str, Any] = {"format": LAUNCH_FORMAT, "arena_bytes": plan.arena_bytes,
                                     "weights_bytes": weights.total_bytes,
                                     "launches": [launch.to_json() for launch in launches]}
        if dims:  # the runtime sets them before each run and reads them after it
            status_bytes = dims_at + 8 * len(dims)
            plan_json["dims"] = {"at": dims_at, "count": len(dims)}
            if run_dims.values:  # [dim, input, element, lo, hi]: read from the input's data
                plan_json["dims"]["values"] = [[v["index"], v["input"], v["element"], v["lo"],
                                                v["hi"]] for v in run_dims.values]
            if run_dims.entry_json:  # then computed and checked, before the first kernel
                plan_json["dims"]["entry"] = run_dims.entry_json
        if status_bytes > STATUS_WORD_BYTES:  # zeroed at load; the kernels reset their counters
            plan_json["status_bytes"] = status_bytes
        if tensor_maps:  # TMA descriptors the runtime encodes at load (runtime/cuda.py)
            plan_json["tensor_maps"] = tensor_maps
        if programmatic:  # every kernel waits for the previous grid: launch them as dependents
            plan_json["programmatic"] = True
        if conditions.places:  # run-time Ifs: the condition bytes the runtime reads on the host
            plan_json["conditions"] = [{"value": value, "at": place.to_json()}
                                       for value, place in conditions.places]
        return {SOURCE: source, LAUNCHES: json.dumps(plan_json, sort_keys=True, indent=1) + "\n",
                **c_entry_point(info, [d.fn for d in kernels], launches, status_bytes, tensor_maps,
                                programmatic, conditions.places,
                                (dims_at, run_dims) if dims else None)}

    # ------------------------------------------------------------ building

    def compile(self, src_dir: Path, out_dir: Path, name: str) -> dict[str, Any]:
        source = (src_dir / SOURCE).read_text()
        built = toolchain.compile_arch(self.arch, source)  # sm_90a where a wgmma GEMM runs
        compiled = toolchain.compile_source(source, built, kernel_templates(source))
        (out_dir / CUBIN).write_bytes(compiled.cubin)
        (out_dir / PTX).write_text(compiled.ptx)
        self._record = toolchain.record(self.arch, compiled.ptx, built)
        return self.toolchain()

    def toolchain(self) -> dict[str, Any]:
        return dict(self._record) or {"compiler": "nvrtc", "nvrtc_version": toolchain.version(),
                                      "flags": toolchain.options(self.arch), "arch": self.arch}

    def cpu_record(self) -> dict[str, Any]:
        """No host code is compiled: the runtime is Python over the driver API."""
        return {}

    def device_record(self) -> dict[str, Any]:
        """The manifest's `cuda` record: what the loader checks before it loads the CUBIN."""
        specific = self._record.get("cubin_arch")  # sm_90a: runs on compute capability 9.0 only
        return {"arch": self.arch, **({"cubin_arch": specific} if specific else {}),
                "cubin": CUBIN, "ptx": PTX, "launches": f"src/{LAUNCHES}",
                "ptx_isa": self._record.get("ptx_isa", ""),
                "ptx_min_driver": self._record.get("ptx_min_driver", "")}


@dataclass(frozen=True)
class RunDimsPlan:
    """The model's run-time dims (ir/run_dims.py) as the CUDA target sets them up: the input
    dims (from the input shapes), the value dims (elements of an input with declared values,
    read from its data on the host before the run: abi.run_dims's value_dims) and the dims
    kernels compute during the run (in device memory); each output's sizes as C over them."""

    dims: list[DimBounds]
    values: list[dict[str, Any]]
    output_dims_c: list[list[str]]
    # what the entry point computes and checks after the value dims, before the first kernel
    # (abi.entry_steps: the C, over `context->dims`) and the same for the Python runtime
    # (entry_steps_json: the expressions as texts)
    entry_c: list[dict[str, Any]]
    entry_json: list[list[object]]


def entry_steps_json(graph: Graph, dims: list[DimBounds]) -> list[list[object]]:
    """graph.entry_steps as the launch plan's `entry` (runtime/cuda.py evaluates them on the
    host before each run, in order, as the CPU entry point does): [kind, left, right, dim,
    upper bound], left and right as dim expressions (symbolic.parse_dim reads them), dim the
    index a "dim" or "bcast" step sets (-1 for a check)."""
    index = {d.name: k for k, d in enumerate(dims)}
    return [[step.kind, str(step.left), str(step.right), index.get(step.dim, -1),
             dims[index[step.dim]].hi if step.dim in index else 0] for step in graph.entry_steps]


def check_run_dims(graph: Graph) -> RunDimsPlan:
    """The model's RunDimsPlan (no dims for static shapes). Not yet: an entry step of a node
    inside a run-time If branch (the CPU checks it where the run takes the branch): PYC-E051
    naming the node."""
    dims = model_dims(graph)
    if not dims:
        return RunDimsPlan([], [], [], [], [])
    extra = abi_run_dims(graph)
    branched = [step.node for step in graph.entry_steps if step.guard is not None]
    if branched:
        raise PycError("E051", "the CUDA target does not yet check sizes inside a run-time If "
                       f"branch where the run takes it: node {branched[0]!r}",
                       where="--target cuda", hint="build for --target cpu, or give that "
                       "node constant sizes (docs/cuda.md, Sizes known at run time)")
    return RunDimsPlan(dims, extra.get("value_dims", []), extra["output_dims_c"],
                       extra.get("entry_steps", []), entry_steps_json(graph, dims))


def tensor_map_json(spec: TensorMap, address: Argument, where: str) -> dict[str, object]:
    """A TMA tensor map's launch-plan entry; its operand must start 16-byte aligned (TMA's
    rule: a view at an odd offset cannot be read so)."""
    if address.space in ("weights", "arena") and address.value % TMA_ALIGN:
        raise PycError("E090", f"the TMA GEMM's operand lies at {address.space} offset "
                       f"{address.value}, not {TMA_ALIGN}-byte aligned", where=where,
                       hint="choose cuda_matmul_wgmma for this MatMul")
    return spec.to_json(address)


def c_entry_point(info: ModelInfo, kernels: list[str], launches: list[Launch],
                  status_bytes: int = 4,
                  tensor_maps: list[dict[str, Any]] | None = None,
                  programmatic: bool = False,
                  conditions: list[tuple[str, Argument]] | None = None,
                  run_dims: tuple[int, RunDimsPlan] | None = None) -> dict[str, str]:
    """NAME_cuda.h / NAME_cuda.c: the model's C entry point over the driver API, with the launch
    plan compiled in as tables (each launch's arguments a slice of one argument table; TMA
    tensor maps encoded at create time, cuTensorMapEncodeTiled); `programmatic`: kernels after
    the first are launched as programmatic dependents (cuLaunchKernelEx)."""
    places = {space: index for index, space in enumerate(SPACES)}
    args: list[dict[str, int]] = []
    table = []
    terms: list[dict[str, int]] = []  # each guard term: its first literal and how many
    literals: list[dict[str, int]] = []  # (condition, polarity)
    for launch in launches:
        guard = launch.when or []
        table.append({"kernel": launch.kernel, "grid": list(launch.grid),
                      "block": list(launch.block), "shared_bytes": launch.shared_bytes,
                      "first_arg": len(args), "args": len(launch.args), "step": launch.step,
                      # guard: -1 always, else its first term and how many (0: never)
                      "first_term": -1 if launch.when is None else len(terms),
                      "terms": len(guard), "stops": int(launch.stops)})
        for term in guard:
            terms.append({"first": len(literals), "count": len(term)})
            literals += [{"condition": c, "polarity": int(p)} for c, p in term]
        args += [{"place": places[a.space], "at": a.value} for a in launch.args]
    conds = [{"value": value, "place": places[at.space], "at": at.value}
             for value, at in conditions or []]
    env = template_env()
    maps = [{**t, "place": places[t["address"][0]], "at": t["address"][1]}
            for t in tensor_maps or []]
    context = {"m": info, "kernels": kernels, "launches": table, "args": args, "spaces": SPACES,
               "status_bytes": status_bytes, "tensor_maps": maps, "programmatic": programmatic,
               "conditions": conds, "terms": terms, "literals": literals,
               # the run-time dims: where in the status allocation, each one's value before a
               # run (the upper bound: the C entry point runs at the upper bounds), and each
               # output's shape over them (NAME_cuda_output_shape)
               "dims_at": run_dims[0] if run_dims else None,
               "dims": [{"name": d.name, "hi": d.hi} for d in run_dims[1].dims] if run_dims else [],
               "value_dims": run_dims[1].values if run_dims else [],
               "entry_steps": [{k: v.replace("context->dims", "m->dims") if isinstance(v, str)
                                and k != "node" else v for k, v in step.items()}
                               for step in run_dims[1].entry_c] if run_dims else [],
               "output_dims_c": run_dims[1].output_dims_c if run_dims else []}
    return {f"{info.name}_cuda.h": env.get_template("cuda/c_api.h.j2").render(**context) + "\n",
            f"{info.name}_cuda.c": env.get_template("cuda/c_api.c.j2").render(**context) + "\n"}


def kernel_templates(source: str) -> dict[int, str]:
    """Line number of each kernel's heading comment -> the template that rendered it."""
    found = {}
    for number, line in enumerate(source.splitlines(), start=1):
        match = re.match(r"// steps? [\d, ]+: \S+ \(\S+, (\S+)\)$", line)
        if match:
            found[number] = match.group(1)
    return found
