"""The CPU target: one C translation unit per model plus the C runtime, built with the system
C compiler into a shared library with a stable C ABI."""

from __future__ import annotations

import functools
import math
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jinja2

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType
from ..ops import registry
from ..planning.plan import MemoryPlan, storage_roots
from . import abi_name, compile_cache, toolchain
from .cpu_features import feature_flags, probe_target
from .kernel_context import KernelCall, Operand, kernel_call
from .resources import runtime_dir, templates_dir
from .targets import IoInfo, ModelInfo, Target
from .weights import WeightsLayout

RUNTIME_FILES = ("pyc_runtime.h", "pyc_runtime.c")
DTYPE_CODES = {DType.F32: 1, DType.F64: 2, DType.F16: 3, DType.I8: 4, DType.I16: 5, DType.I32: 6,
               DType.I64: 7, DType.U8: 8, DType.BOOL: 9, DType.U16: 10, DType.U32: 11, DType.U64: 12}
# no -ffast-math: it assumes no NaN / inf (comparisons and fmin/fmax would drop NaN) and its
# startup code flushes denormals to zero; -fno-math-errno / -fno-trapping-math keep IEEE results.
# -ffp-contract=fast fuses a*b+c into FMA (GEMM and convolution need it); it rounds once where
# onnxruntime may round twice, which differs only when a product overflows and a huge addend
# of the other sign would have cancelled it
BASE_FLAGS = ("-std=c11", "-O3", "-fPIC", "-fno-math-errno", "-fno-trapping-math",
              "-fvisibility=hidden", "-ffp-contract=fast")
VECTOR_MATH_FLAGS = ("-fopenmp-simd", "-DPYC_VECTOR_MATH")  # with glibc's libmvec


def c_string(text: str) -> str:
    """A C string literal holding `text` (UTF-8); anything but plain characters is octal-escaped,
    so no model-provided name can end the literal, open a comment or inject a directive."""
    safe = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-/ ")
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03o}" for b in text.encode()) + '"'


@functools.lru_cache(maxsize=1)
def template_env() -> jinja2.Environment:
    """One environment per process: compiled templates are reused across builds (Jinja still
    reloads a template whose file changed)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
    )
    env.filters["c_string"] = c_string
    env.filters["product"] = lambda values: math.prod(values)
    env.tests["mentioned_in"] = mentioned_in
    return env


def mentioned_in(word: str, code: str) -> bool:
    """Whether C `code` uses the identifier `word` (model.c.j2 marks unread operands (void):
    shape-like inputs are compiled in, and -Wextra warns of unused parameters)."""
    return re.search(rf"\b{re.escape(word)}\b", code) is not None


class CpuTarget(Target):
    name = "cpu"
    template_subdir = "c"
    library_name = "libmodel.so"

    def __init__(self, march: str = "native", features: tuple[str, ...] = ()) -> None:
        self.march = march
        self.features = tuple(features)  # ('+avx2', '-avx512f'): cpu_features.parse_features

    # ------------------------------------------------------------ sources

    def emit(self, graph: Graph, plan: MemoryPlan, weights: WeightsLayout,
             info: ModelInfo) -> dict[str, str]:
        calls = self.kernel_calls(graph, plan, weights)
        env = template_env()
        sources = {
            "model.c": self.model_source(info, calls),
            "model.h": env.get_template("c/model.h.j2").render(m=info),
        }
        for name in RUNTIME_FILES:
            sources[name] = (runtime_dir() / name).read_text()
        return sources

    @staticmethod
    def model_source(info: ModelInfo, calls: list[KernelCall], debug_steps: list[Any] | None = None
                     ) -> str:
        """model.c; with `debug_steps` (the `pyc run --per-node` build, never an artifact), its
        run function also copies each step's values out (codegen_templates/c/debug_run.c.j2)."""
        return template_env().get_template("c/model.c.j2").render(
            m=info, calls=calls, debug_steps=debug_steps)

    def kernel_calls(self, graph: Graph, plan: MemoryPlan, weights: WeightsLayout) -> list[KernelCall]:
        pointers = PointerTable(graph, plan, weights)
        calls = []
        for node in graph.nodes:
            opdef = registry.get(node.op)
            if node.attrs["kernel"] in ("view", "in_place"):
                continue
            chosen = next(c for c in opdef.kernels if c.name == node.attrs["kernel"])
            call = kernel_call(graph, node, len(calls), chosen.template)
            call.args = pointers.arguments(node)
            if chosen.workspace is not None:
                # a kernel with a workspace always names WS; a zero-byte one (empty output) is
                # never given arena space, and the kernel's loops never touch it
                ctype = graph.types[node.outputs[0]].dtype.c_type
                call.operands.append(Operand("WS", ctype, is_output=True))
                call.args.append(f"({ctype}*)(arena + {plan.workspaces[node.name]})"
                                 if node.name in plan.workspaces else "NULL")
            if not chosen.restrict_pointers:
                call.restrict = ""
                for operand in call.operands:
                    operand.restrict = False
            calls.append(call)
        return calls

    # ------------------------------------------------------------ building

    def compiler(self) -> str:
        """The C compiler's path (`CC`, else cc / gcc / clang: codegen/toolchain.py)."""
        return toolchain.find_compiler()

    def flags(self) -> list[str]:
        vector_math = list(VECTOR_MATH_FLAGS) if self.vector_math() else []
        return [*BASE_FLAGS, f"-march={self.march}", *feature_flags(self.features), *vector_math]

    def libraries(self) -> list[str]:
        return ["-lm", "-lmvec"] if self.vector_math() else ["-lm"]

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
        self.compile_library(src_dir, out_dir / self.library_name, soname=abi_name.soname(name))
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


def _probe_vector_math(compiler: str, march: str) -> bool:
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "probe.c"
        source.write_text(_VECTOR_MATH_PROBE)
        result = subprocess.run(
            [compiler, "-O3", f"-march={march}", "-fopenmp-simd", "-fno-math-errno", "-shared",
             "-fPIC", "-o", str(Path(work) / "probe.so"), str(source), "-lm", "-lmvec"],
            capture_output=True, check=False)
        return result.returncode == 0


class PointerTable:
    """C expressions for where each value lives: caller buffers, weights, or the arena."""

    def __init__(self, graph: Graph, plan: MemoryPlan, weights: WeightsLayout) -> None:
        self.graph = graph
        self.roots = storage_roots(graph)
        self.offsets = {t.name: t.offset for t in plan.tensors}
        self.weights = weights

    def root(self, value: str) -> str:
        while value in self.roots and self.roots[value] != value:
            value = self.roots[value]
        return value

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
        return f"{cast}(arena + {self.offsets[value]})"

    def arguments(self, node: Node) -> list[str]:
        own, epilogue, prologue = registry.fused_inputs(node)
        values = [v for v in own if v] + epilogue + prologue
        args = [self.expr(v, False) for v in values]
        args += [self.expr(v, True) for v in node.outputs if v]
        return args


def io_infos(graph: Graph, values: list[str], names: list[str] | None = None) -> list[IoInfo]:
    """The ABI description of `values`, published under `names` (default: the value names)."""
    return [IoInfo(name, graph.types[v].dtype.value, DTYPE_CODES[graph.types[v].dtype],
                   list(graph.types[v].shape), graph.types[v].nbytes)
            for v, name in zip(values, names or values)]
