"""The CPU target: one C translation unit per model plus the C runtime, built with the system
C compiler into a shared library with a stable C ABI."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...abi import branch_checks
from ...errors import PycError
from ...ir import guards
from ...ir.graph import Graph, Node
from ...ir.run_dims import DIMS_PARAM, dims_fixed, model_dims
from ...ops import registry
from ...planning.plan import WORKSPACE_SUFFIX, MemoryPlan, storage_roots
from ...planning.weights import WeightsLayout
from ...templating import runtime_dir, template_env
from ..abi_name import soname
from ..base import ModelInfo, Target
from ..kernel import KernelCandidate
from . import blocked, compile_cache, toolchain
from .features import feature_flags, probe_target
from .gemm import isa_for
from .kernel_context import KernelCall, Operand, kernel_call, name_constant_bounds
from .kernels import cpu_kernels

RUNTIME_FILES = ("pyc_runtime.h", "pyc_runtime.c")
# the sha256 a generic plan with shape buckets checks their libraries with (c/buckets.c.j2)
BUCKETS_RUNTIME_FILE = "pyc_sha256.h"
RUNTIME_OFFSETS = "offsets"  # run_steps' array of block offsets (a plan with run-time offsets)
# no -ffast-math: it assumes no NaN / inf (comparisons and fmin/fmax would drop NaN) and its
# startup code flushes denormals to zero; -fno-math-errno / -fno-trapping-math keep IEEE results.
# -ffp-contract=fast fuses a*b+c into FMA (GEMM and convolution need it); it rounds once where
# onnxruntime may round twice, which differs only when a product overflows and a huge addend
# of the other sign would have cancelled it
BASE_FLAGS = ("-std=c11", "-O3", "-fPIC", "-fno-math-errno", "-fno-trapping-math",
              "-fvisibility=hidden", "-ffp-contract=fast")
VECTOR_MATH_FLAGS = ("-fopenmp-simd", "-DPYC_VECTOR_MATH")  # with glibc's libmvec
# threads inside a run (runtime_c: PYC_PARALLEL_FOR); a compiler without an OpenMP runtime
# (clang without libomp) builds a serial library
OPENMP_FLAG = "-fopenmp"
OPENMP_RUNTIMES = {"gcc": "-lgomp", "clang": "-lomp"}
# the options a build adds when its toolchain has them (the artifact reader accepts these)
OPTIONAL_FLAGS = (*VECTOR_MATH_FLAGS, OPENMP_FLAG)


@dataclass
class KernelDefinition:
    """One kernel function of model.c and the steps that call it."""

    fn: str
    op: str
    kernel: str
    text: str
    steps: list[int]


def kernel_definitions(calls: list[KernelCall]) -> list[KernelDefinition]:
    """Each distinct kernel function once: a call whose rendered definition (its name aside)
    equals an earlier one's calls that function instead (the transformer's 33 steps need 16).
    Sets each call's `fn` to the function it calls; first-occurrence order, so deterministic."""
    template = template_env().get_template("c/kernel.c.j2")
    by_text: dict[str, KernelDefinition] = {}
    for call in calls:
        text = template.render(k=call)
        anonymous = text.replace(f" {call.fn}(", " @(", 1)
        found = by_text.get(anonymous)
        if found is None:
            by_text[anonymous] = KernelDefinition(call.fn, call.op, call.kernel, text, [call.index])
            continue
        found.steps.append(call.index)
        call.fn = found.fn
    return list(by_text.values())


class CpuTarget(Target):
    name = "cpu"
    template_subdir = "c"
    library_name = "libmodel.so"

    def __init__(self, march: str = "native", features: tuple[str, ...] = (),
                 winograd: bool = True, layout: str = "nchw") -> None:
        self.march = march
        self.features = tuple(features)  # ('+avx2', '-avx512f'): cpu_features.parse_features
        self.winograd = winograd  # whether 3x3 convs may take the Winograd kernel (--winograd)
        self.layout = layout  # --layout: nchw, auto (the cost model's choice) or blocked
        self._kernels: dict[str, tuple[KernelCandidate, ...]] | None = None

    @property  # type: ignore[override]
    def kernels(self) -> dict[str, tuple[KernelCandidate, ...]]:
        """The candidate table for the vector ISA the target's features allow (the compiler's
        predefined macros for this -march: the GEMM micro-kernels are chosen from them)."""
        if self._kernels is None:
            self._kernels = cpu_kernels(self.isa(), self.winograd)
        return self._kernels

    def blocked_layout(self) -> tuple[str, int]:
        """Blocks of one vector of float32 lanes. `auto` only on AVX2 / AVX-512 (whose costs
        were measured); `blocked` wherever the kernels compile (tests, A/B)."""
        isa = self.isa()
        if self.layout == "auto" and isa not in ("avx512", "avx2"):
            return "nchw", 0
        return self.layout, blocked.block_lanes(isa)

    def isa(self) -> str:
        """avx512, avx2 or vector (gemm.ISAS), from the features the code may use."""
        return isa_for(self.cpu_record()["features"])

    # ------------------------------------------------------------ sources

    def emit(self, graph: Graph, plan: MemoryPlan, weights: WeightsLayout,
             info: ModelInfo) -> dict[str, str]:
        calls = self.kernel_calls(graph, plan, weights)
        env = template_env()
        sources = {
            "model.c": self.model_source(info, calls),
            "model.h": env.get_template("c/model.h.j2").render(m=info),
        }
        for name in RUNTIME_FILES + ((BUCKETS_RUNTIME_FILE,) if info.buckets else ()):
            sources[name] = (runtime_dir() / name).read_text()
        return sources

    @staticmethod
    def model_source(info: ModelInfo, calls: list[KernelCall], debug_steps: list[Any] | None = None,
                     profile: bool = False) -> str:
        """model.c; with `debug_steps` (the `pyc run --per-node` build, never an artifact), its
        run function also copies each step's values out (codegen_templates/c/debug_run.c.j2);
        with `profile` (`pyc run --profile`), it times every kernel call (c/profile_run.c.j2)."""
        kernels = kernel_definitions(calls)
        return template_env().get_template("c/model.c.j2").render(
            m=info, calls=calls, kernels=kernels, debug_steps=debug_steps, profile=profile)

    def kernel_calls(self, graph: Graph, plan: MemoryPlan, weights: WeightsLayout) -> list[KernelCall]:
        # every symbolic kernel's parameters read the model's dims: walked once (dims_fixed)
        with dims_fixed(graph):
            return self._kernel_calls(graph, plan, weights)

    def _kernel_calls(self, graph: Graph, plan: MemoryPlan, weights: WeightsLayout) -> list[KernelCall]:
        pointers = PointerTable(graph, plan, weights)
        conditions = guards.run_conditions(graph) if guards.is_guarded(graph) else {}
        checks = branch_checks(graph, model_dims(graph),
                               lambda cond: guard_expr(cond, graph, pointers)) \
            if graph.entry_steps else {}
        pending: list[dict[str, str]] = []
        calls: list[KernelCall] = []
        for position, node in enumerate(graph.nodes):
            pending += checks.get(position, [])
            chosen = self.chosen(node)
            if chosen is None:  # a view or an in-place result: no code
                continue
            call = kernel_call(graph, node, len(calls), chosen)
            call.checks, pending = pending, []
            # NEVER ("0") keeps the call, so every non-view node has one (the debug builds pair
            # them in order)
            call.guard = guard_expr(conditions.get(node.name), graph, pointers)
            name_constant_bounds(call)
            call.args = pointers.arguments(node)
            if chosen.workspace is not None:
                # a kernel with a workspace always names WS; a zero-byte one (empty output) is
                # never given arena space, and the kernel's loops never touch it
                ctype = graph.types[node.outputs[0]].dtype.c_type
                call.operands.append(Operand("WS", ctype, is_output=True))
                call.args.append(f"({ctype}*){pointers.arena(node.name + WORKSPACE_SUFFIX)}"
                                 if node.name in plan.workspaces else "NULL")
            if call.dims:  # the kernel reads the run-time dims (model.c.j2's `dims`)
                call.args.append(DIMS_PARAM)
            if not chosen.restrict_pointers:
                call.restrict = ""
                for operand in call.operands:
                    operand.restrict = False
            calls.append(call)
        if pending and calls:  # no kernel after the branch's condition: after the last one
            calls[-1].checks_after = pending
        return calls

    # ------------------------------------------------------------ building

    def compiler(self) -> str:
        """The C compiler's path (`CC`, else cc / gcc / clang: toolchain.py)."""
        return toolchain.find_compiler()

    def flags(self) -> list[str]:
        vector_math = list(VECTOR_MATH_FLAGS) if self.vector_math() else []
        openmp = [OPENMP_FLAG] if self.openmp() else []
        return [*BASE_FLAGS, f"-march={self.march}", *feature_flags(self.features), *vector_math,
                *openmp]

    def libraries(self) -> list[str]:
        """System libraries the code needs (-fopenmp links its runtime by itself; naming it
        lets the JIT loader, which links no driver, make its symbols resolvable too)."""
        vector_math = ["-lmvec"] if self.vector_math() else []
        openmp = [OPENMP_RUNTIMES.get(toolchain.describe(self.compiler()).family, "-lgomp")] \
            if self.openmp() else []
        return ["-lm", *vector_math, *openmp]

    def openmp(self) -> bool:
        """Whether this compiler builds and links OpenMP (probed once per compiler)."""
        compiler = self.compiler()
        if compiler not in _OPENMP:
            _OPENMP[compiler] = _probe(compiler, _OPENMP_PROBE, [OPENMP_FLAG])
        return _OPENMP[compiler]

    def vector_math(self) -> bool:
        """Whether this toolchain links glibc's SIMD math library (probed once per compiler)."""
        compiler = self.compiler()
        if compiler not in _VECTOR_MATH:
            _VECTOR_MATH[compiler] = _probe_vector_math(compiler, self.march)
        return _VECTOR_MATH[compiler]

    def toolchain(self) -> dict[str, Any]:
        return {**toolchain.describe(self.compiler()).record(), "flags": self.flags(),
                "libraries": self.libraries()}

    def compile(self, src_dir: Path, out_dir: Path, name: str) -> dict[str, Any]:
        self.compile_library(src_dir, out_dir / self.library_name, soname=soname(name))
        return self.toolchain()

    def cpu_record(self) -> dict[str, Any]:
        """What the manifest records of the target CPU (checked before the library loads)."""
        return probe_target(self.compiler(), self.march, list(self.features))

    def compile_library(self, src_dir: Path, library: Path, main_source: str = "model.c",
                        flags: list[str] | None = None, libraries: list[str] | None = None,
                        soname: str | None = None) -> None:
        """Link `main_source` and the runtime in `src_dir` into `library`, with `soname` as its
        SONAME (the debug build of `pyc run --per-node` passes its own main source and the
        artifact's recorded flags, and no SONAME: it is loaded by path only)."""
        output = str(library.resolve())
        command = [self.compiler(), *(self.flags() if flags is None else flags), "-shared",
                   *([f"-Wl,-soname,{soname}"] if soname else []), "-o",
                   output, main_source, "pyc_runtime.c",
                   *(self.libraries() if libraries is None else libraries)]
        entry = ""
        if compile_cache.cache_dir() is not None:
            identity = compile_cache.compiler_identity(self.compiler(), self.march)
            entry = compile_cache.key(command, output, src_dir, identity)
            if compile_cache.fetch(entry, library):
                return
        self._run(command, src_dir)
        if entry:
            compile_cache.store(entry, library)

    def compile_objects(self, src_dir: Path) -> list[Path]:
        """Relocatable objects of the model and runtime (what the llvmlite JIT path links)."""
        objects = []
        for source in ("model.c", "pyc_runtime.c"):
            target = src_dir / source.replace(".c", ".o")
            self._run([self.compiler(), *self.flags(), "-c", "-o", target.name, source], src_dir)
            objects.append(target)
        return objects

    @staticmethod
    def _run(command: list[str], cwd: Path) -> None:
        # relative source names + a fixed prefix map keep the binary free of build paths
        command = command[:1] + [f"-ffile-prefix-map={cwd.resolve()}=."] + command[1:]
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PycError("E020", "the C compiler failed on the generated code: "
                           + _first_error(result.stderr),
                           where=str(cwd), hint="rerun with --debug and report this")


def _first_error(stderr: str) -> str:
    """The compiler's first `error:` line (its first line is often only "In function ...")."""
    lines = stderr.strip().splitlines() or ["no output"]
    return next((line for line in lines if "error" in line), lines[0])


_VECTOR_MATH: dict[str, bool] = {}
_VECTOR_MATH_PROBE = """
#pragma omp declare simd notinbranch
float expf(float);
void pyc_probe(const float* x, float* y, int n) { for (int i = 0; i < n; ++i) y[i] = expf(x[i]); }
"""


_OPENMP: dict[str, bool] = {}
_OPENMP_PROBE = """
#include <omp.h>
int pyc_probe(void) { return omp_get_num_procs(); }
"""


def _probe_vector_math(compiler: str, march: str) -> bool:
    return _probe(compiler, _VECTOR_MATH_PROBE,
                  ["-O3", f"-march={march}", "-fopenmp-simd", "-fno-math-errno"], ("-lm", "-lmvec"))


def _probe(compiler: str, source_text: str, flags: list[str], libraries: tuple[str, ...] = ()) -> bool:
    """Whether `compiler` builds `source_text` into a shared library with these options."""
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "probe.c"
        source.write_text(source_text)
        result = subprocess.run(
            [compiler, *flags, "-shared", "-fPIC", "-o", str(Path(work) / "probe.so"),
             str(source), *libraries], capture_output=True, check=False)
        return result.returncode == 0


NEVER = "0"


def guard_expr(cond: guards.Condition, graph: Graph, pointers: PointerTable) -> str:
    """A run condition (ir/guards.py) as C over the bool scalars it tests: "" for always, NEVER
    for never; a condition value that is a constant is decided here."""
    if cond is None:  # guards.ALWAYS
        return ""
    terms = []
    for term in guards.sorted_terms(cond):
        literals = []
        for value, polarity in term:
            if value in graph.constants:
                if bool(graph.constants[value].reshape(-1)[0]) != polarity:
                    break  # the term never holds
                continue
            literals.append(f"(*{pointers.expr(value, False)} {'!=' if polarity else '=='} 0)")
        else:
            if not literals:
                return ""  # a term that always holds
            terms.append(" && ".join(literals))
    if not terms:
        return NEVER
    return " || ".join(f"({t})" for t in terms) if len(terms) > 1 else terms[0]


class PointerTable:
    """C expressions for where each value lives: caller buffers, weights, or the arena."""

    def __init__(self, graph: Graph, plan: MemoryPlan, weights: WeightsLayout) -> None:
        self.graph = graph
        self.roots = storage_roots(graph)
        self.offsets = {t.name: t.offset for t in plan.tensors}
        self.runtime = plan.runtime
        self.weights = weights
        self.output_values = plan.output_values  # branch values in a graph output's buffer

    def arena(self, value: str) -> str:
        """Where a value (or a NODE#workspace) lies in the arena: a fixed offset, or with
        run-time offsets its block's offset for this run (`offsets`, runtime_plan.c.j2)."""
        if self.runtime is None:
            return f"(arena + {self.offsets[value]})"
        block, sub = self.runtime.values[value]
        return f"(arena + {RUNTIME_OFFSETS}[{block}]{f' + {sub}' if sub else ''})"

    def root(self, value: str) -> str:
        while value in self.roots and self.roots[value] != value:
            value = self.roots[value]
        return self.output_values.get(value, value)

    def expr(self, value: str, writable: bool) -> str:
        ctype = self.graph.types[value].dtype.c_type
        cast = f"({ctype}*)" if writable else f"(const {ctype}*)"
        root = self.root(value)
        if root in self.graph.outputs:
            return f"{cast}outputs[{self.graph.outputs.index(root)}]"
        if root in self.graph.inputs:
            return f"{cast}inputs[{self.graph.inputs.index(root)}]"
        if root in self.weights.offsets:
            return f"{cast}(weights + {self.weights.offsets[root]})"
        return f"{cast}{self.arena(value)}"

    def arguments(self, node: Node) -> list[str]:
        own, epilogue, prologue = registry.fused_inputs(node)
        values = [v for v in own if v] + epilogue + prologue
        args = [self.expr(v, False) for v in values]
        args += [self.expr(v, True) for v in node.outputs if v]
        return args
