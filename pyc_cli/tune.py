"""Autotuning (`pyc build --tune`): time each kernel variant on this machine, keep the fastest.

For every distinct kernel signature of the compiled graph (many nodes share one) whose target
offers more than one variant (its applicable candidates x their tunables' legal values), a
one-node model is built per variant with the target's own passes, emitter and toolchain (the
tuning database forces the variant through `select_kernels`, so the code is exactly what a build
choosing it emits), run on random inputs, checked against the default variant (the cost model's
choice) and timed: warm-up, then the median of repeated runs. The search is coordinate descent
from each candidate's defaults (one tunable changed at a time, keeping what helps), capped per
signature and bounded by a time budget over the whole model. Variants whose generated C is
identical are built and timed once. A non-default winner must beat the default by a margin in
a final interleaved re-measurement, so noise alone does not flip a choice. Winners and every
timing go into the tuning database (passes/tuning_db.py).

Nothing here knows a particular kernel: a target's new candidates and tunables are searched as
they are declared (targets/kernel.py `KernelCandidate.tunables`).
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .abi import io_infos
from .errors import PycError
from .ir.annotations import KernelChoice
from .ir.graph import Graph, Node
from .ir.types import DType, is_float_numpy
from .ops import registry
from .passes.analyze_liveness import analyze_liveness
from .passes.context import BuildOptions, PassContext
from .passes.tuning import InMemoryTuningDatabase, KernelSignature, Measurement, kernel_signature
from .passes.tuning_db import FileTuningDatabase, TuningEntry, machine_key
from .planning.plan import MemoryPlan
from .planning.weights import layout_weights, weights_bytes, weights_checksum
from .runtime.cuda import CudaModel, load_cuda
from .runtime.native import CompiledModel, ModelFunctions, TensorSpec
from .runtime.timing import RunPlan, fixed_team
from .targets.base import ModelInfo, Target
from .targets.kernel import KernelCandidate
from .templating import templates_dir

PREFIX = "pyc_tune"  # the symbol prefix of every benchmark library
# the targets whose kernels run here and can be timed (a build for another reads no database):
# the CPU, and the CUDA target where a GPU is present (device 0)
TUNABLE_TARGETS = ("cpu", "cuda")


@dataclass(frozen=True)
class TuneOptions:
    """How hard to measure. The defaults suit a real build on a noisy machine; tests shrink them."""

    budget_s: float = 120.0  # wall time for the whole model (a variant started is finished)
    max_variants: int = 12  # variants timed per signature, the default included
    warmup: int = 3
    repeat: int = 21  # timed runs per variant (the median is kept)
    min_time_s: float = 0.05  # ... and at least this long, for short kernels
    margin: float = 0.03  # a non-default winner must be this much faster on re-measurement
    confirm_rounds: int = 3  # interleaved re-measurements of default and winner
    rtol: float = 1e-3  # output check against the default: relative to the output's scale
    retune: bool = False  # re-measure signatures the database already holds
    seed: int = 0
    threads: int = 0  # the team size variants run with: the build's --threads (0: every core)


@dataclass(frozen=True)
class Variant:
    candidate: str
    params: tuple[tuple[str, int], ...] = ()

    def label(self) -> str:
        return Measurement(self.candidate, self.params, None).label()


@dataclass
class SignatureTask:
    """One distinct kernel signature: a node that has it, how many nodes share it."""

    signature: KernelSignature
    node: Node
    count: int
    candidates: list[KernelCandidate]
    default: KernelCandidate
    flops: int

    @property
    def space(self) -> int:
        return sum(math.prod(len(t.values) for t in c.tunables) for c in self.candidates)


@dataclass
class TuneReport:
    """What a tuning run did (the CLI prints it; tests read it)."""

    tuned: list[tuple[str, TuningEntry]] = field(default_factory=list)  # (node name, entry)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (node name, why)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (node name, variant label)
    cached: int = 0
    variants_timed: int = 0
    budget_spent: bool = False
    seconds: float = 0.0


Progress = Callable[[int, int, str], None]  # (signatures done, signatures in all, what now)


def kernels_digest(target: Target) -> str:
    """A hash of the target's kernel table, every template of the target (kernels include
    shared macros) and its compiler's version: measurements of other kernel code (another PyC,
    a changed template, new candidates or tunable values, another compiler) do not apply, and
    `pyc build --tune` measures afresh."""
    digest = hashlib.sha256()
    for op in sorted(target.kernels):
        for candidate in target.kernels[op]:
            digest.update(repr((op, candidate.name, candidate.template, candidate.cost_factor,
                                candidate.tunables)).encode())
    root = templates_dir() / target.template_subdir
    for template in sorted(root.rglob("*")):
        if template.is_file():
            digest.update(template.relative_to(root).as_posix().encode() + b"\0")
            digest.update(template.read_bytes())
    digest.update(str(target.toolchain().get("compiler_version", "")).encode())
    return digest.hexdigest()[:12]


def tuning_database(target: Target, path: str | Path, cpu_record: dict[str, Any] | None = None
                    ) -> FileTuningDatabase:
    """The section of the tuning database file at `path` for this target, CPU and kernel code."""
    record = target.cpu_record() if cpu_record is None else cpu_record
    info = {"target": target.name, "kernels": kernels_digest(target),
            **{k: record[k] for k in ("arch", "march", "resolved_march", "features") if k in record}}
    return FileTuningDatabase.open(path, machine_key(target.name, record, info["kernels"]), info)


def tuning_tasks(graph: Graph, target: Target) -> list[SignatureTask]:
    """The signatures worth tuning (more than one variant), most work first."""
    tasks: dict[KernelSignature, SignatureTask] = {}
    for fused in graph.nodes:
        chosen = target.chosen(fused)
        if chosen is None:
            continue
        node = before_norm(fused)
        signature = kernel_signature(node, graph, target.name)
        if signature in tasks:
            tasks[signature].count += 1
            continue
        candidates = target.candidates(node, graph)
        default = min(candidates, key=lambda c: (c.cost(node, graph), c.name))
        task = SignatureTask(signature, node, 1, candidates, default,
                             registry.get(node.op).flops(node, graph))
        if task.space > 1:
            tasks[signature] = task
    return sorted(tasks.values(), key=lambda t: (-t.flops * t.count, t.node.name))


def tune_graph(graph: Graph, ctx: PassContext, target: Target, db: FileTuningDatabase,
               options: TuneOptions = TuneOptions(), progress: Progress | None = None
               ) -> TuneReport:
    """Measure the variants of every tunable signature of `graph` (compiled by the passes, so
    it carries kernel choices and fused programs) and record the winners in `db` (not saved)."""
    started = time.perf_counter()
    deadline = started + options.budget_s
    report = TuneReport()
    tasks = tuning_tasks(graph, target)
    todo = [t for t in tasks if options.retune or db.lookup(t.signature) is None]
    report.cached = len(tasks) - len(todo)
    rng = np.random.default_rng(options.seed)
    with tempfile.TemporaryDirectory(prefix="pyc-tune-") as work:
        bench = Bench(graph, ctx.options.mode, target, Path(work), options)
        for done, task in enumerate(todo):
            if progress:
                progress(done, len(todo), f"{task.node.op} {task.node.name}")
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                report.budget_spent = True
                report.skipped.extend((t.node.name, "the tuning budget was spent")
                                      for t in todo[done:])
                break
            share = time.perf_counter() + remaining / (len(todo) - done)
            entry = bench.tune(task, rng, share, deadline, report)
            if entry is not None:
                db.record(task.signature, entry)
                report.tuned.append((task.node.name, entry))
        if progress:
            progress(len(todo), len(todo), "done")
    report.seconds = time.perf_counter() - started
    return report


def search_order(candidate: KernelCandidate) -> Iterator[tuple[str, tuple[int, ...]]]:
    """The tunables of a candidate with more than one legal value, in declaration order."""
    for tunable in candidate.tunables:
        if len(tunable.values) > 1:
            yield tunable.name, tunable.values


def descent(candidate: KernelCandidate, best_point: Callable[[], tuple[tuple[str, int], ...]]
            ) -> Iterator[Variant]:
    """Coordinate descent: the defaults, then each other legal value of one tunable at a time,
    the others held at the best point found so far (read when each variant is drawn)."""
    yield Variant(candidate.name, start_point(candidate))
    for name, values in search_order(candidate):
        for value in values:
            yield Variant(candidate.name, tuple(sorted({**dict(best_point()), name: value}.items())))


def start_point(candidate: KernelCandidate) -> tuple[tuple[str, int], ...]:
    """Every tunable at its default (its first legal value)."""
    return tuple(sorted((t.name, t.values[0]) for t in candidate.tunables))


@dataclass
class Rendered:
    """A variant's one-node graph and the files the target generated for it."""

    graph: Graph
    arena_bytes: int
    weights: bytes
    sources: dict[str, str]


@dataclass
class Timed:
    variant: Variant
    model: CompiledModel | None
    median_ms: float | None
    status: str


class Bench:
    """Builds, checks and times the variants of one graph's signatures in a work directory."""

    def __init__(self, graph: Graph, mode: str, target: Target, work: Path,
                 options: TuneOptions) -> None:
        self.graph, self.mode, self.target, self.work, self.options = \
            graph, mode, target, work, options
        self.count = 0

    def tune(self, task: SignatureTask, rng: np.random.Generator, share: float,
             deadline: float, report: TuneReport) -> TuningEntry | None:
        """Coordinate descent over each candidate's tunables from its defaults, until `share`
        (this signature's part of the budget) or the variant cap; the entry for the database,
        or None when the default variant cannot run here or the whole budget (`deadline`)
        ran out first."""
        with ExitStack() as stack:
            self.stack = stack
            self.by_source: dict[str, Timed] = {}
            self.timed: dict[Variant, Timed] = {}
            feeds = random_feeds(single_node_graph(self.graph, task.node), rng)
            default = self.measure(task, Variant(task.default.name), feeds, None)
            if default.status != "ok" or default.model is None:
                report.skipped.append((task.node.name, f"its default kernel failed ({default.status})"))
                return None
            expected = default.model.run(feeds)
            left = self.options.max_variants - 1
            for candidate in sorted(task.candidates, key=lambda c: (c is not task.default, c.name)):
                point = start_point(candidate)
                best: Timed | None = None
                # the lambda reads `point` as the descent goes: the best point so far
                for variant in descent(candidate, lambda: point):  # noqa: B023
                    now = time.perf_counter()
                    if now >= deadline:  # the model's budget: this signature stays untuned
                        report.variants_timed += len(self.timed)
                        report.budget_spent = True
                        report.skipped.append((task.node.name, "the tuning budget was spent"))
                        return None
                    if left <= 0 or now >= share:  # its share: keep the best found so far
                        break
                    if variant in self.timed:
                        continue
                    tried = self.try_variant(task, variant, feeds, expected, report)
                    left -= 1
                    if best is None or faster(tried, best):
                        best, point = tried, variant.params
            winner = self.confirm(default, feeds)
            report.variants_timed += len(self.timed)
            return TuningEntry(task.node.op, _measurement(winner), _measurement(default),
                               tuple(sorted((_measurement(t) for t in self.timed.values()),
                                            key=_rank)))

    def try_variant(self, task: SignatureTask, variant: Variant, feeds: dict[str, np.ndarray],
                    expected: dict[str, np.ndarray], report: TuneReport) -> Timed:
        timed = self.measure(task, variant, feeds, expected)
        if timed.status == "wrong":
            report.rejected.append((task.node.name, variant.label()))
        return timed

    def measure(self, task: SignatureTask, variant: Variant, feeds: dict[str, np.ndarray],
                expected: dict[str, np.ndarray] | None) -> Timed:
        """Build, check (against `expected`) and time one variant; a variant whose generated
        code equals one already timed takes over that one's result, uncompiled."""
        if variant in self.timed:
            return self.timed[variant]
        try:
            built = self.render(task, variant)
            key = "\0".join(f"{name}\0{text}" for name, text in sorted(built.sources.items()))
            if key in self.by_source:
                same = self.by_source[key]
                timed = Timed(variant, same.model, same.median_ms, same.status)
            else:
                timed = self.check_and_time(variant, self.load(built), feeds, expected)
                self.by_source[key] = timed
        except PycError as exc:
            timed = Timed(variant, None, None, "failed" if exc.code != "E008" else "inapplicable")
        except Exception:  # noqa: BLE001  (a variant that cannot even be rendered is not a
            # reason to fail the build: it is recorded as failed and never chosen)
            timed = Timed(variant, None, None, "failed")
        self.timed[variant] = timed
        return timed

    def check_and_time(self, variant: Variant, model: CompiledModel,
                       feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray] | None
                       ) -> Timed:
        try:
            got = model.run(feeds)
        except PycError:
            return Timed(variant, None, None, "failed")
        if expected is not None and not outputs_match(got, expected, self.options.rtol):
            return Timed(variant, None, None, "wrong")
        return Timed(variant, model, time_model(model, feeds, self.options), "ok")

    def render(self, task: SignatureTask, variant: Variant) -> Rendered:
        """The variant's one-node graph through the target's tail of the pipeline (the variant
        forced by an in-memory tuning database) and its generated sources."""
        sub = single_node_graph(self.graph, task.node)
        forced = InMemoryTuningDatabase({task.signature: KernelChoice(
            variant.candidate, dict(variant.params))})
        ctx = PassContext(BuildOptions(mode=self.mode, target=self.target.name),
                          target=self.target, tuning=forced)
        sub = analyze_liveness(sub, ctx)
        for _, run in self.target.pipeline_tail():
            sub = run(sub, ctx)
        kernels = [n.ann.kernel for n in sub.nodes if n.op == task.node.op]
        if not kernels or kernels[0] is None or kernels[0].candidate != variant.candidate:
            raise PycError("E008", f"{variant.label()} does not apply to {task.node.name}")
        plan: MemoryPlan = ctx.artifacts["memory_plan"]
        layout = layout_weights(sub, self.target.constant_panels(sub),  # as the build lays them
                                self.target.constant_conversions(sub),
                                self.target.constant_transforms(sub))
        blob = weights_bytes(sub, layout)
        info = ModelInfo(__version__, io_infos(sub, sub.inputs),
                         io_infos(sub, sub.outputs, sub.public_outputs()), plan.arena_bytes,
                         layout.total_bytes, weights_checksum(blob), PREFIX, self.options.threads)
        return Rendered(sub, plan.arena_bytes, blob, self.target.emit(sub, plan, layout, info))

    def load(self, built: Rendered) -> CompiledModel:
        """Compile the sources with the target's toolchain and load the library (closed when
        the signature is done)."""
        self.count += 1
        out = self.work / f"v{self.count}"
        (out / "src").mkdir(parents=True)
        for name, text in built.sources.items():
            (out / "src" / name).write_text(text, encoding="utf-8")
        (out / "weights.bin").write_bytes(built.weights)
        self.target.compile(out / "src", out, PREFIX)
        graph = built.graph
        inputs = [_spec(graph, v) for v in graph.inputs]
        outputs = [_spec(graph, v) for v in graph.outputs]
        model: CompiledModel
        if self.target.name == "cuda":
            model = load_cuda(out, cuda_manifest(self.target, inputs, outputs, built),
                              verified=True)
        else:
            library = ctypes.CDLL(str(out / self.target.library_name))
            with fixed_team():  # variants are compared at the build's team size
                model = CompiledModel(ModelFunctions.from_library(library, PREFIX),
                                      out / "weights.bin", inputs, outputs, library,
                                      built.arena_bytes)
        self.stack.callback(model.close)
        return model

    def confirm(self, default: Timed, feeds: dict[str, np.ndarray]) -> Timed:
        """The fastest correct variant if, re-timed interleaved with the default, it still beats
        the default by the margin; else the default. The re-timed medians replace both
        variants' search-time medians (and those of variants with the same code)."""
        ok = [t for t in self.timed.values() if t.status == "ok" and t.median_ms is not None]
        best = min(ok, key=lambda t: (t.median_ms, t.variant.label()))
        if best.model is default.model or best.model is None or default.model is None:
            return default
        rounds = max(1, self.options.confirm_rounds)
        best_times, default_times = [], []
        for _ in range(rounds):
            default_times.append(time_model(default.model, feeds, self.options))
            best_times.append(time_model(best.model, feeds, self.options))
        best_ms, default_ms = float(np.median(best_times)), float(np.median(default_times))
        for timed in self.timed.values():
            if timed.model is best.model:
                timed.median_ms = round(best_ms, 6)
            elif timed.model is default.model:
                timed.median_ms = round(default_ms, 6)
        return best if best_ms < (1 - self.options.margin) * default_ms else default


def faster(tried: Timed, best: Timed) -> bool:
    if tried.status != "ok" or tried.median_ms is None:
        return False
    return best.median_ms is None or tried.median_ms < best.median_ms


def time_model(model: CompiledModel, feeds: dict[str, np.ndarray], options: TuneOptions) -> float:
    """Median milliseconds per run: `warmup` untimed runs, then `repeat` timed ones, more for a
    short kernel until `min_time_s` has passed (a median of many is stable under noise). A
    CUDA model times its kernels alone (CUDA events around them), not the copies in and out."""
    def timed(warmup: int, repeat: int) -> list[float]:
        if isinstance(model, CudaModel):
            return model.time_kernels(feeds, repeat, warmup)
        return model.time_runs(feeds, RunPlan(warmup=warmup, repeat=repeat))

    times = timed(options.warmup, options.repeat)
    spent = sum(times) / 1e3
    if spent < options.min_time_s:
        more = int(options.repeat * (options.min_time_s / max(spent, 1e-9) - 1))
        times += timed(0, max(1, min(more, 20000)))
    return round(float(np.median(times)), 6)


def cuda_manifest(target: Target, inputs: list[TensorSpec], outputs: list[TensorSpec],
                  built: Rendered) -> dict[str, Any]:
    """The part of a manifest the CUDA loader reads, for a variant compiled into a work
    directory (its own files: not hash-checked)."""
    def entry(spec: TensorSpec) -> dict[str, Any]:
        return {"name": spec.name, "dtype": DType.from_numpy(spec.dtype).value,
                "shape": list(spec.shape)}
    return {"inputs": [entry(s) for s in inputs], "outputs": [entry(s) for s in outputs],
            "arena_bytes": built.arena_bytes, "cuda": target.device_record(),  # type: ignore[attr-defined]
            "weights": {"file": "weights.bin", "bytes": len(built.weights)}}


def cuda_tuning_record(identity: dict[str, Any], target: Target) -> dict[str, Any]:
    """The tuning database's key parts for a CUDA build timed on the GPU `identity`
    (runtime.cuda.gpu_identity): the GPU model in place of a -march, the driver version and
    the precision as its features, the built architecture as its arch."""
    return {"arch": target.arch, "march": identity["gpu"],  # type: ignore[attr-defined]
            "features": [f"driver={identity['driver']}", f"sm={identity['sm']}",
                         f"precision={target.precision}"]}  # type: ignore[attr-defined]


def outputs_match(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], rtol: float) -> bool:
    """Every output equal to the default variant's: integers exactly, floats within `rtol` of
    the output's largest magnitude (variants sum in other orders), NaN where it has NaN."""
    for name, want in expected.items():
        have = got[name]
        if have.shape != want.shape or have.dtype != want.dtype:
            return False
        if not is_float_numpy(want.dtype):
            if not np.array_equal(have, want):
                return False
            continue
        want64, have64 = want.astype(np.float64), have.astype(np.float64)
        if not np.array_equal(np.isnan(want64), np.isnan(have64)):
            return False
        finite = np.isfinite(want64)
        if not np.array_equal(have64[~finite & ~np.isnan(want64)], want64[~finite & ~np.isnan(want64)]):
            return False
        scale = max(1.0, float(np.max(np.abs(want64[finite]), initial=0.0)))
        if np.any(np.abs(have64[finite] - want64[finite]) > rtol * scale):
            return False
    return True


def before_norm(node: Node) -> Node:
    """A GEMM that a LayerNormalization was fused into after kernel selection (the CUDA
    target's fuse_layernorm) as selection saw it, without the normalization's operands: its
    signature is the one the build looks up, its variants the GEMM's; `node` itself otherwise."""
    if not node.ann.norm_from:
        return node
    kept = [v for i, v in enumerate(node.inputs) if i not in node.ann.norm_inputs]
    clone = Node(node.op, node.name, kept, list(node.outputs), dict(node.attrs))
    clone.ann = copy.copy(node.ann)
    clone.ann.norm_from, clone.ann.norm_inputs, clone.ann.norm_epsilon = "", [], None
    return clone


def single_node_graph(graph: Graph, node: Node) -> Graph:
    """A graph of `node` alone: its constant operands stay constants (kernel parameters may
    depend on them), the others become inputs, its outputs the outputs. The node keeps its
    fused programs and loses every decision the tail of the pipeline makes."""
    values = list(dict.fromkeys(v for v in node.inputs if v))
    inputs = [v for v in values if not graph.is_constant(v)]
    constants = {v: graph.constants[v] for v in values if graph.is_constant(v)}
    outputs = [v for v in node.outputs if v]
    clone = Node(node.op, node.name, list(node.inputs), list(node.outputs), dict(node.attrs))
    ann = node.ann
    for key in ("program", "fused_from", "epilogue", "epilogue_from", "epilogue_first_input",
                "prologue", "prologue_from", "prologue_inputs"):
        setattr(clone.ann, key, getattr(ann, key))
    types = {v: graph.types[v] for v in values + outputs}
    sub = Graph(f"tune_{node.op.split('.')[-1]}", inputs, outputs, [clone], types, constants,
                graph.opset)
    # values stored in 16 bits are still computed in float32 (the CUDA kernels' applicability
    # reads it): without it, no 16-bit-activation GEMM applied to its own one-node graph
    sub.activation_storage = graph.activation_storage
    return sub


def random_feeds(graph: Graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Normal floats; integers and booleans in {0, 1} (valid indices of any non-empty axis)."""
    feeds = {}
    for name in graph.inputs:
        spec = _spec(graph, name)
        if is_float_numpy(spec.dtype):
            feeds[name] = rng.standard_normal(spec.shape).astype(spec.dtype)
        else:
            feeds[name] = rng.integers(0, 2, spec.shape).astype(spec.dtype)
    return feeds


def _spec(graph: Graph, value: str) -> TensorSpec:
    ttype = graph.types[value]
    return TensorSpec(value, ttype.dtype.numpy, tuple(ttype.shape))


def _measurement(timed: Timed) -> Measurement:
    return Measurement(timed.variant.candidate, timed.variant.params, timed.median_ms, timed.status)


def _rank(m: Measurement) -> tuple[object, ...]:
    return (m.status != "ok", m.median_ms if m.median_ms is not None else math.inf,
            m.candidate, m.params)


def tune_summary(report: TuneReport, db_path: Path) -> list[str]:
    """What a tuning run found, for `pyc build` to print: one line per tuned signature whose
    winner is not the default, and a total."""
    lines = []
    for node, entry in report.tuned:
        if entry.winner != entry.default and entry.winner.median_ms and entry.default.median_ms:
            lines.append(f"tuned {entry.op} ({node}): {entry.winner.label()} "
                         f"{entry.default.median_ms / entry.winner.median_ms:.2f}x faster than "
                         f"{entry.default.label()}")
    for node, variant in report.rejected:
        lines.append(f"tuning rejected {variant} for {node}: its output differs from the default "
                     "kernel's")
    for node, why in report.skipped:
        if why != "the tuning budget was spent":  # counted in the total line below
            lines.append(f"tuning skipped {node}: {why}")
    spent = "; the budget ran out before " + str(len(report.skipped)) + " signature(s)" \
        if report.budget_spent else ""
    lines.append(f"tuned {len(report.tuned)} kernel signature(s) in {report.seconds:.1f} s "
                 f"({report.variants_timed} variants; {report.cached} already in the database"
                 f"{spent}): {db_path}")
    return lines
