"""The Python API the CLI is a thin layer over: `build(model, out_dir, ...)` and `load(artifact)`."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, build_cache, telemetry
from .abi import io_infos, run_dims
from .artifact.manifest import FORMAT, FORMAT_VERSION, MANIFEST, dumps, fallback_dir, file_sha256, hash_tree
from .artifact.previous import replacement_note
from .artifact.reader import (
    fallback_targets,
    graph_shell,
    read_manifest,
    runtime_files,
    verify_files,
)
from .artifact.slim import strip_files
from .artifact.source import describe_source
from .artifact.source import keep_source as keep_source_copy
from .artifact.writer import (
    output_lock,
    restore_if_interrupted,
    staging_directory,
    write_bytes,
    write_text,
)
from .buckets import (
    AUTO_BUCKETS,
    Box,
    Bucket,
    check_sample,
    choose_buckets,
    dim_bounds,
    dispatch_order,
    parse_bucket_count,
    predicted_speedup,
    read_sample,
    speedup_note,
)
from .errors import PycError, PycWarning
from .feedback import Feedback, feedback_tuning, histogram_note, kernel_note, read_feedback, thread_choice
from .frontend.branch_traps import unreachable_branches
from .frontend.onnx_import import import_model
from .input_ranges import INPUT_RANGES_FILE, input_ranges, ranges_json
from .ir.graph import Graph
from .ir.run_dims import model_dims, shape_argument
from .ir.symbolic import parse_input_shapes
from .ir.text import print_graph
from .ir.types import check_addressable
from .passes import latency_model
from .passes.context import BuildOptions, PassContext
from .passes.pipeline import PASS_NAMES, run_pipeline
from .passes.tuning import EmptyTuningDatabase, TuningDatabase
from .passes.tuning_db import FileTuningDatabase, default_path
from .planning.contract import Clause, Contract, broken, parse_contract
from .planning.plan import MemoryPlan
from .planning.policy import get_policy
from .planning.timeline import timeline_svg
from .planning.weights import layout_weights, weights_bytes, weights_checksum
from .progress import BuildSteps
from .runtime.buckets import BucketDispatch
from .runtime.native import (
    ENTRY_POINTS,
    IO_ENTRY_POINTS,
    RUNTIME_OFFSET_ENTRY_POINTS,
    SHAPED_ENTRY_POINTS,
    TRIM_ENTRY_POINT,
    CompiledModel,
    ModelFunctions,
    ShapedFunctions,
    TensorSpec,
    check_io_specs,
    library_addresses,
)
from .targets import DEFAULT_LAYOUT, TARGETS, get_target
from .targets.abi_name import check_name, default_name, soname
from .targets.base import BucketInfo, ModelInfo, Target, runtime_plan
from .targets.cpu.features import check_cpu, parse_features
from .targets.cpu.team import REFERENCE_TEAM, planning_for, team_for_build
from .tune import (
    TUNABLE_TARGETS,
    Progress,
    TuneOptions,
    cuda_tuning_record,
    tune_graph,
    tune_summary,
    tuning_database,
)


@dataclass
class BuildResult:
    artifact: Path
    graph: Graph
    plan: MemoryPlan
    context: PassContext
    # every target built into the artifact, in the order loading tries them (the first's
    # graph, plan and context are the fields above)
    targets: list[str] = field(default_factory=list)
    # what the build decided that the user did not spell out (the mode a budget chose, the
    # artifact it replaced): the CLI prints these lines
    notes: list[str] = field(default_factory=list)
    # True when the artifact was copied from the build cache (build_cache.py): graph and plan
    # were then read back from the cached entry, and the context holds no decisions
    cached: bool = False


def symbolic_shapes(input_shapes: Mapping[str, Sequence[object]] | None
                    ) -> dict[str, tuple[int, ...]] | None:
    """Input shapes whose dims may be written as `--input-shape` writes them: `{"x":
    ("batch:1..64", 512)}` (a named dim bounded once, reused bare elsewhere) gives the same
    bounded symbolic dims as `pyc build --input-shape x=batch:1..64,512`; shapes of numbers
    (and Dims, from ir.symbolic.parse_input_shapes) are returned as they are."""
    if not input_shapes or not any(isinstance(d, str) for dims in input_shapes.values()
                                   for d in dims):
        return None if input_shapes is None else dict(input_shapes)  # type: ignore[arg-type]
    texts = [f"{name}={','.join(str(d) for d in dims)}" for name, dims in input_shapes.items()]
    return parse_input_shapes(texts)[0]  # type: ignore[return-value]


def check_input_values(values: Mapping[str, Sequence[float]] | None
                       ) -> dict[str, tuple[float, float]] | None:
    """Declared input values as {name: (lo, hi)}, lo <= hi finite numbers; PYC-E006 otherwise."""
    if not values:
        return None
    checked = {}
    for name, bounds in sorted(values.items()):
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError):
            lo, hi = float("nan"), float("nan")
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise PycError("E006", f"the values of input {name!r} are declared as {bounds!r}, not "
                           "two finite numbers LO <= HI", where="--input-values",
                           hint="write NAME=LO..HI, e.g. size=0..64")
        checked[str(name)] = (int(lo) if lo.is_integer() else lo, int(hi) if hi.is_integer() else hi)
    return checked


def compile_graph(model_path: str | Path, mode: str = "balanced",
                  input_shapes: dict[str, tuple[int, ...]] | None = None,
                  target: str | Target = "cpu", stop_after: str | None = None,
                  steps: BuildSteps | None = None, tuning: TuningDatabase | None = None,
                  precision: str | None = None,
                  input_values: Mapping[str, tuple[float, float]] | None = None,
                  check_determinism: bool = False, memory_budget: int | None = None,
                  kernel_selection: str = "coselect") -> tuple[Graph, PassContext]:
    """Import and run the pass pipeline (no files written); used by build, tests and tools.
    `memory_budget` (bytes) is the arena a co-selecting policy (memory_first) fits its kernels
    and rewrites into; `kernel_selection` "sequential" chooses kernels before planning memory
    (the baseline co-selection is compared with; passes/coselect.py).
    `check_determinism` replays the policy's decisions (always done for a plugin policy; a
    contract's `deterministic` clause asks it of the built-in ones: PYC-E061 when they differ).
    `input_values` declares the values graph inputs may hold (`--input-values`): the bounds of
    sizes computed at run time from them (issue #15, point 2).
    `target` is a target name (its default configuration: the CPU target for this machine, the
    CUDA target at `precision`, fp32 when None) or the configured target the build emits for;
    `steps` times the import and every pass (pyc build's progress and --verbose); `tuning`
    holds measured kernel choices that select_kernels prefers to its cost model."""
    steps = steps or BuildSteps()
    input_shapes = symbolic_shapes(input_shapes)
    policy = get_policy(mode)  # a mode is a built-in policy; PYC-E060 lists the known ones
    if stop_after is not None and stop_after not in PASS_NAMES:
        raise PycError("E050", f"unknown pass {stop_after!r}", hint=f"passes: {', '.join(PASS_NAMES)}")
    # the passes ask the target for its kernel candidates: those of the ISA the code is built
    # for (--cpu, --cpu-features), which the emitter renders
    backend = target if isinstance(target, Target) else get_target(target, precision=precision)
    if kernel_selection not in KERNEL_SELECTIONS:
        raise PycError("E050", f"unknown kernel selection {kernel_selection!r}",
                       hint=f"one of {', '.join(KERNEL_SELECTIONS)}")
    ctx = PassContext(BuildOptions(mode=mode, target=backend.name,
                                   check_determinism=check_determinism,
                                   memory_budget=memory_budget,
                                   kernel_selection=kernel_selection), target=backend,
                      tuning=tuning or EmptyTuningDatabase())
    ctx.log("plan_memory", [], "policy", f"planner policy {policy.label}: {policy.summary}"
            if policy.summary else f"planner policy {policy.label}", after=policy.label,
            **({"rules": dict(sorted(policy.rules.items()))} if policy.rules else {}))
    note = backend.precision_note()
    if note:  # what a reduced precision changes, before the kernels that follow from it
        ctx.log("select_kernels", [], "precision", note, after=getattr(backend, "precision", None))
    # compile-time folding computes IEEE results (inf, nan) as the kernels would: no warnings
    with np.errstate(all="ignore"):
        try:
            with steps.step("import"):
                graph = import_model(model_path, input_shapes, ctx, input_values)
        except PycError as exc:
            raise _with_every_problem(exc, model_path, input_shapes) from exc
        ctx.artifacts["source_ops"] = dict(sorted(Counter(n.op for n in graph.nodes).items()))
        ctx.artifacts["input_ranges"] = input_ranges(graph)  # from the graph as written
        return run_pipeline(graph, ctx, stop_after, steps), ctx


def _with_every_problem(exc: PycError, model_path: str | Path,
                        input_shapes: dict[str, tuple[int, ...]] | None) -> PycError:
    """A build stopped by an unsupported node reports every problem of the model, as
    `pyc check` does, not only the first."""
    if exc.code not in ("E007", "E008", "E009", "E010"):
        return exc
    from .check import check_model

    try:
        report = check_model(model_path, input_shapes)
    except PycError:
        return exc
    if report.failing_nodes <= 1:
        return exc
    return PycError(exc.code, f"{exc.what}; all {report.failing_nodes} node(s) that cannot be "
                    f"compiled: {report.summary()}", where=Path(model_path).name,
                    hint="`pyc check MODEL` prints this report; see docs/op_coverage.md")


# with a memory budget, modes are tried fastest first and the first that fits is kept
MODES_BY_SPEED = ("latency_first", "balanced", "memory_first")
# how memory_first chooses kernels: with the memory plan, or first (the baseline)
KERNEL_SELECTIONS = ("coselect", "sequential")


def compile_within_budget(model_path: str | Path, budget: int,
                          input_shapes: dict[str, tuple[int, ...]] | None = None,
                          target: str | Target = "cpu", steps: BuildSteps | None = None,
                          tuning: TuningDatabase | None = None, precision: str | None = None,
                          input_values: Mapping[str, tuple[float, float]] | None = None,
                          check_determinism: bool = False,
                          kernel_selection: str = "coselect") -> tuple[Graph, PassContext]:
    """The fastest mode whose arena fits `budget` bytes, or PYC-E011 naming the smallest arena.
    memory_first co-selects its kernels and rewrites under the budget unless
    `kernel_selection` is "sequential"."""
    arenas = {}
    for mode in MODES_BY_SPEED:
        graph, ctx = compile_graph(model_path, mode, input_shapes, target, steps=steps,
                                   tuning=tuning, precision=precision, input_values=input_values,
                                   check_determinism=check_determinism, memory_budget=budget,
                                   kernel_selection=kernel_selection)
        plan: MemoryPlan = ctx.artifacts["memory_plan"]
        arenas[mode] = plan.arena_bytes
        if plan.arena_bytes <= budget:
            ctx.log("plan_memory", [], "memory_budget",
                    f"mode {mode} chosen by the memory budget: the fastest mode whose arena "
                    f"({plan.arena_bytes} bytes) fits the budget of {budget} bytes",
                    before=budget, after=plan.arena_bytes, arenas=dict(arenas))
            return graph, ctx
    smallest = min(arenas.values())
    raise PycError("E011", f"no plan fits the memory budget of {budget} bytes; the smallest "
                   f"achievable arena is {smallest} bytes ({min(arenas, key=arenas.get)})",
                   where=f"arenas by mode: {arenas}",
                   hint=f"raise --memory-budget to at least {smallest} bytes")


def build(model_path: str | Path, out_dir: str | Path | None = None, mode: str | None = None,
          input_shapes: dict[str, tuple[int, ...]] | None = None,
          target: str = "cpu", memory_budget: int | None = None,
          keep_source: bool = False, force: bool = False, cpu: str = "native",
          cpu_features: str | list[str] | tuple[str, ...] = (), slim: bool = False,
          name: str | None = None, steps: BuildSteps | None = None,
          tuning: TuningDatabase | None = None, tune: bool = False,
          tuning_db: str | Path | None = None, tune_budget: float | None = None,
          tune_options: TuneOptions | None = None,
          tune_progress: Progress | None = None, threads: int = 0,
          arch: str | None = None, precision: str | None = None,
          cache: bool = False, winograd: bool = True,
          compile_budget: float | None = None, layout: str = DEFAULT_LAYOUT,
          shape_buckets: int | str | None = None,
          shape_sample: str | Path | None = None,
          input_values: Mapping[str, tuple[float, float]] | None = None,
          contract: str | None = None, feedback: str | Path | None = None,
          kernel_selection: str = "coselect") -> BuildResult:
    """Compile an ONNX model into an artifact directory (default: MODEL.pyc beside the model).

    `mode` defaults to balanced; with `memory_budget` (bytes) and no `mode`, the fastest mode
    whose arena fits is chosen, and a `mode` given with a budget must fit it (PYC-E011).
    memory_first chooses its kernels and rewrites together with the memory plan, within the
    budget (passes/coselect.py); `kernel_selection="sequential"` chooses kernels first instead
    (the baseline co-selection is measured against: benchmarks/memory_pressure.py).
    `name` prefixes every C symbol the library exports (`NAME_create`, `NAME_run`, ...) and
    its SONAME (`libNAME.so`); default: the model file name made a C identifier.
    `keep_source` copies the model (and its external data) into `source/`, which `pyc run
    --compare` runs the reference on; without it, the model is looked up beside the artifact
    (by the recorded sha256) or given with `--model PATH`. An artifact of another source model
    at `out_dir` is replaced only with `force` (PYC-E025).
    `cpu` is a -march value (`native`: this machine's CPU; `portable`: the architecture's
    baseline, see targets/cpu/features.py) and `cpu_features` adds or removes extensions
    ('+avx2,-avx512f'); the manifest records the extensions the code may use, and loading on a
    CPU without them is refused (PYC-E033). `arch` is the GPU architecture of the CUDA target
    (sm_80 ... sm_90, default sm_90; see docs/cuda.md) and `precision` its compute precision
    (fp32, tf32, fp16, bf16; default fp32; docs/cuda.md says what each changes). `slim`
    leaves out what only explaining needs.
    Another build into the same `out_dir` is refused while this one runs (PYC-E034). `steps`
    times every step (shown by `pyc build`; never written into the artifact). `tuning` holds
    measured kernel choices that select_kernels prefers to its cost model; `tuning_db` names a
    tuning database file (passes/tuning_db.py: its entries for this target and CPU are used;
    the CLI always passes one, the default in the user cache dir). `tune` first times the
    kernel variants of every distinct kernel signature on this machine (pyc_cli/tune.py,
    within `tune_budget` seconds or `tune_options`; `tune_progress` hears each signature) and
    records the winners in `tuning_db` (default: the user cache dir's), which the build then
    uses: the same database gives the same artifact. `threads` is a run's default team size
    (0: every core where it runs; PYC_NUM_THREADS overrides it). `cache` copies the artifact
    from the build cache when an identical build is there, and keeps this one's otherwise
    (build_cache.py: the key covers the model, options, toolchain, tuning database and PyC;
    `pyc build` caches unless --no-cache; `tune` and a `tuning` object bypass it). `winograd`
    lets the CPU target run 3x3 stride-1 convs as Winograd F(4x4, 3x3) where that is faster (a
    few bits less accurate: docs/architecture.md). `compile_budget` (seconds) bounds the whole
    build: `tune` gets what is left of it after the passes and an estimate of code generation
    and compilation, or is skipped (a decision in the log); a build that still takes longer
    warns PYC-W003; the artifact does not depend on it. `layout` is the CPU target's channel
    layout: "auto" (blocked NCHWc regions where the cost model prices them faster,
    passes/assign_layouts.py), "nchw" (never) or "blocked" (wherever a kernel has it).
    `shape_buckets` ("auto", or a maximum count) with `shape_sample` (a JSON histogram or an
    .npz of example inputs, pyc_cli/buckets.py) adds a plan for each of a few boxes of the dims
    clustered from the sample (symbolic within the box, static for a box of one shape) beside
    the generic symbolic one, in buckets/ID/; `load` runs each request on the smallest box that
    holds its dims (docs/dynamic_shapes.md, "Shape buckets").
    `input_values` ({input: (lo, hi)}) declares the values inputs may hold, which bound the
    sizes computed at run time from them (a Range whose limit is an input; docs/
    dynamic_shapes.md, "Shapes that depend on input values").
    `contract` ('arena<=16MiB,deterministic,max_rel_err<=1e-4,latency_p95<=8ms', planning/
    contract.py) is checked where the build knows the value (the arena; `deterministic` replays
    the policy's decisions), broken clauses refused (PYC-E063); the manifest keeps it for
    `pyc run --check-contract`, which measures the rest.
    `feedback` (a telemetry file recorded with PYC_TELEMETRY=PATH, pyc_cli/telemetry.py)
    replans from what the runs observed (pyc_cli/feedback.py): shape buckets from the observed
    shapes, kernels timed faster, the thread count measured fastest (PYC-E068 for telemetry of
    another model or a malformed file)."""
    started = time.monotonic()
    promised = parse_contract(contract) if contract is not None else None
    input_values = check_input_values(input_values)
    input_shapes = symbolic_shapes(input_shapes)
    if compile_budget is not None and not compile_budget > 0:
        raise PycError("E050", f"compile budget {compile_budget} s is not a positive duration",
                       where="--compile-budget", hint="e.g. 30s, 2m or 90")
    steps = steps or BuildSteps()
    model_path = Path(model_path)
    out = Path(out_dir) if out_dir is not None else model_path.with_suffix(".pyc")
    prefix = check_name(name) if name is not None else default_name(model_path)
    if slim and keep_source:
        raise PycError("E050", "--slim leaves out the source copy --keep-source asks for",
                       hint="drop one of them (a slim artifact is compared with --model PATH)")
    if not 0 <= threads <= 1024:
        raise PycError("E050", f"threads={threads} is out of range",
                       hint="give 0 (every core) or a thread count from 1 to 1024")
    features = parse_features(cpu_features if isinstance(cpu_features, str)
                              else ",".join(cpu_features))
    targets = parse_targets(target)
    fed = read_feedback(feedback, model_path, input_shapes) if feedback is not None else None
    buckets, left_out = _plan_buckets(shape_buckets, shape_sample, input_shapes, targets, slim, fed)
    thread_note = thread_choice(fed) if fed is not None and threads == 0 else None
    if thread_note is not None:
        threads = thread_note[0]
    if arch is not None and "cuda" not in targets:
        raise PycError("E050", f"--arch {arch} applies to --target cuda only", where="--arch",
                       hint="drop --arch, or build with --target cuda")
    # the precision is the CUDA target's (a CPU fallback beside it computes in fp32; a CPU-only
    # build given another refuses it)
    backends = [get_target(name, cpu, tuple(features), arch,
                           None if name == "cpu" and "cuda" in targets else precision, winograd,
                           layout)
                for name in targets]
    # a -march the compiler rejects fails before compiling
    cpu_records = [backend.cpu_record() for backend in backends]
    tunings = [_target_tuning(name, backend, record, tuning, tune, tuning_db)
               for name, backend, record in zip(targets, backends, cpu_records)]
    team = team_for_build(threads, cpu)  # the CPU kernels' parallel tasks (targets/cpu/team.py)
    with output_lock(out) as lock, planning_for(team):
        if tune:
            if not isinstance(tunings[0], FileTuningDatabase):
                raise ValueError("tune=True records into a tuning database file: pass "
                                 "tuning_db=PATH (or nothing: the default file), not tuning=")
            options = tune_options or TuneOptions()
            if tune_budget is not None:
                options = replace(options, budget_s=tune_budget)
            options = replace(options, threads=threads)  # variants run as the model will
            deadline = None if compile_budget is None else started + compile_budget
            budget_notes, notes_tune = _tune(model_path, mode, input_shapes, backends[0],
                                             tunings[0], options, steps, tune_progress, deadline)
        else:
            budget_notes, notes_tune = [], []
        if fed is not None and fed.telemetry.kernels and targets[0] == "cpu":
            tunings[0] = feedback_tuning(fed, tunings[0])  # timed kernels choose where 2+ were
        notes = [note for note in [replacement_note(out, model_path, force)] if note]
        notes += budget_notes + notes_tune
        key = None
        if cache and not tune and tuning is None and not (buckets and compile_budget):
            key = build_cache.build_key(model_path, {
                "mode": mode, "policy": get_policy(mode).label if mode else None,
                "input_shapes": {k: shape_argument(v) for k, v in (input_shapes or {}).items()},
                "targets": targets, "memory_budget": memory_budget, "keep_source": keep_source,
                "cpu": cpu, "features": features, "arch": arch, "precision": precision,
                "threads": threads, "slim": slim, "name": prefix, "winograd": winograd,
                "layout": layout, "contract": contract, "planned_team": team,
                # a latency clause is predicted from this machine's calibration store: a cached
                # build stands for this one only while the store says the same
                **({"calibration": latency_model.calibration_digest(cpu_records[0])}
                   if promised is not None and promised.latency is not None else {}),
                **({"kernel_selection": kernel_selection}
                   if kernel_selection != "coselect" else {}),
                **({"input_values": input_values} if input_values else {}),
                **({"feedback": fed.sha256} if fed is not None else {}),
                **({"shape_buckets": [b.to_json() for b in buckets], "left_out": left_out}
                   if buckets else {})},
                backends, cpu_records, Path(tuning_db) if tuning_db is not None else None)
        hit = build_cache.lookup(key) if key else None
        if key is not None and hit is not None:
            with steps.step("copy from the build cache"), \
                    staging_directory(out, lock) as staging:
                shutil.copytree(hit.artifact, staging, symlinks=True, dirs_exist_ok=True)
            plan = MemoryPlan.from_json(hit.memory_plan)
            context = PassContext(BuildOptions(mode=plan.mode, target=targets[0]),
                                  artifacts={"memory_plan": plan})
            return BuildResult(out, graph_shell(hit.model_ir), plan, context, hit.targets,
                               notes + hit.notes + [f"copied from the build cache ({key[:12]}: "
                                                    "same model, options, toolchain and PyC)"],
                               cached=True)
        built_notes = len(notes)
        passes_started = time.monotonic()
        compiled = [_compile_for_budget(model_path, mode, memory_budget, input_shapes, backend,
                                        steps, target_tuning, input_values,
                                        check_determinism=promised is not None
                                        and promised.get("deterministic") is not None,
                                        kernel_selection=kernel_selection)
                    for backend, target_tuning in zip(backends, tunings)]
        graph, ctx = compiled[0]
        passes_s = time.monotonic() - passes_started
        if team != REFERENCE_TEAM and "cpu" in targets:
            ctx.log("build", [], "planned_team",
                    f"the CPU kernels split their work for a team of {team} threads "
                    f"({'--threads' if threads else 'the cores of the machine building for itself'}"
                    f"; {REFERENCE_TEAM} is the reference the splits were measured on)",
                    after=team)
        if buckets and any(d.computed for d in model_dims(graph)):
            # a bucket is a box of the input dims; sizes computed during the run (from input
            # values, NonZero, ...) are not bound when dispatch picks a box
            raise PycError("E050", "shape buckets are not built for a model with sizes computed "
                           "at run time", where="--shape-buckets",
                           hint="build without --shape-sample: the generic plan runs every shape")
        if memory_budget is not None:
            notes.insert(0, ctx.decisions[-1].reason)
        if promised is not None:
            notes += check_contract_at_build(promised, ctx, graph, cpu_records[0], threads)
        for note in budget_notes:
            ctx.log("build", [], "compile_budget", note)
        if fed is not None:
            notes += _log_feedback(ctx, fed, thread_note, bool(buckets))
        notes += [f"fallback target {name} built into {fallback_dir(name)}/ (tried when "
                  f"{targets[0]} cannot run where the artifact is loaded)" for name in targets[1:]]
        flags = {"memory_budget": memory_budget, "keep_source": keep_source, "name": prefix,
                 "cpu": cpu, "cpu_features": features, "threads": threads,
                 "winograd": winograd, "layout": layout,
                 # the reference team's artifacts are those it always gave
                 **({"planned_team": team} if team != REFERENCE_TEAM else {}),
                 **({"kernel_selection": kernel_selection}
                    if kernel_selection != "coselect" else {}),
                 **({"contract": promised.text} if promised is not None else {}),
                 **({"feedback": fed.record()} if fed is not None else {}),
                 "input_shapes": {k: shape_argument(v)
                                  for k, v in sorted((input_shapes or {}).items())},
                 **({"input_values": {k: list(v) for k, v in sorted(input_values.items())}}
                    if input_values else {})}
        # the buckets are built before the generic plan's code, which holds their libraries'
        # sha256 (its C dispatch checks them before loading one)
        writer = functools.partial(_write_buckets, model_path=model_path, buckets=buckets,
                                   left_out=left_out, ctx=ctx, generic_graph=graph,
                                   backend=backends[0],
                                   cpu_record=cpu_records[0], flags=flags, tuning=tunings[0],
                                   steps=steps, room=_BucketRoom(compile_budget, started, passes_s),
                                   serves="feedback:shape_histogram" if fed is not None else None
                                   ) if buckets else None
        with staging_directory(out, lock) as staging:
            written = _write_targets(staging, model_path,
                                     list(zip(targets, backends, cpu_records, compiled)),
                                     flags, slim, steps, writer)
            notes += written.notes if written else []
            if key is not None:  # the finished artifact, before it replaces `out`
                with steps.step("keep in the build cache"):
                    kept = build_cache.store(key, staging, print_graph(graph),
                                             ctx.artifacts["memory_plan"].to_json(),
                                             notes[built_notes:], targets)
                if kept:
                    notes.append(f"not in the build cache: built, and kept there ({key[:12]})")
    _warn_if_over(compile_budget, started)
    return BuildResult(out, graph, ctx.artifacts["memory_plan"], ctx, targets, notes)


def _log_feedback(ctx: PassContext, fed: Feedback, threads: tuple[int, str] | None,
                  buckets: bool) -> list[str]:
    """The feedback-driven decisions in the log (serves feedback:...), and the build's notes."""
    notes = []
    ctx.log("build", [], "feedback", f"replanned from the telemetry of {fed.telemetry.runs} runs "
            f"(sha256 {fed.sha256[:12]})", serves="feedback:telemetry", runs=fed.telemetry.runs)
    if fed.telemetry.shapes and fed.telemetry.model["dims"]:  # a static model has no buckets
        note = histogram_note(fed) if buckets else (
            "the telemetry's shapes chose no bucket: the generic plan serves every shape")
        ctx.log("build", [], "feedback_shape_buckets", note, serves="feedback:shape_histogram")
        notes.append(note)
    if threads is not None:
        ctx.log("build", [], "feedback_threads", threads[1], after=threads[0],
                serves="feedback:thread_split")
        notes.append(f"threads {threads[0]}: {threads[1]}")
    kernels = kernel_note(fed)
    if kernels is not None:
        ctx.log("build", [], "feedback_kernel_times", kernels, serves="feedback:kernel_time")
    return notes


def _plan_buckets(count: int | str | None, sample: str | Path | None,
                  input_shapes: dict[str, tuple[int, ...]] | None, targets: list[str],
                  slim: bool, fed: Feedback | None = None) -> tuple[list[Bucket], list[str]]:
    """The buckets a build asks for (none without a sample or telemetry), and the shapes left
    out. The telemetry's observed shapes add to the sample's (feedback.py)."""
    limit = parse_bucket_count(count)
    if fed is not None and fed.telemetry.shapes and fed.telemetry.model["dims"] and \
            targets == ["cpu"] and not slim:
        return _feedback_buckets(fed, sample, input_shapes or {}, limit)
    if sample is None:
        if limit:
            raise PycError("E050", "--shape-buckets needs --shape-sample FILE (the shapes to "
                           "choose buckets from)", where="--shape-buckets",
                           hint="give --shape-sample with a JSON histogram or an .npz of inputs")
        return [], []
    if targets != ["cpu"] or slim:
        raise PycError("E050", "shape buckets are built for --target cpu only, and not --slim",
                       where="--shape-buckets", hint="build without --shape-sample, or for cpu")
    points = check_sample(sample, read_sample(sample), input_shapes or {})
    return choose_buckets(points, dim_bounds(input_shapes or {}), input_shapes or {},
                          AUTO_BUCKETS if limit is None else limit)


def _feedback_buckets(fed: Feedback, sample: str | Path | None,
                      input_shapes: dict[str, tuple[int, ...]], limit: int | None
                      ) -> tuple[list[Bucket], list[str]]:
    """Buckets clustered from the telemetry's shapes (plus a sample's, when given); a shape
    outside the bounds is E068 (the telemetry is of another build)."""
    counts = fed.sample() + (read_sample(sample) if sample is not None else Counter())
    try:
        points = check_sample(fed.path, counts, input_shapes)
    except PycError as error:
        raise PycError("E068", f"the telemetry does not fit this build: {error.what}",
                       where=str(fed.path), hint="rebuild with the --input-shape bounds the "
                       "telemetry's artifact was built with") from None
    return choose_buckets(points, dim_bounds(input_shapes), input_shapes,
                          AUTO_BUCKETS if limit is None else limit)


@dataclass(frozen=True)
class _BucketRoom:
    """What the compile budget has to say about the buckets: the budget (None: none), when the
    build started (time.monotonic) and how long the generic plan's passes took."""

    budget: float | None
    started: float
    passes_s: float


@dataclass(frozen=True)
class _BucketsWritten:
    """The buckets built (in the order chosen), their manifest entries, the build's notes about
    them, and each one's library sha256 (what the generic plan's C dispatch checks)."""

    kept: list[Bucket]
    entries: list[dict[str, Any]]
    notes: list[str]
    sha256: dict[str, str]


# writes the buckets into the staging directory, given the generic plan's weights as the top
# manifest will describe them ({"arena_bytes", "weights": {file, bytes}, "files": {file: sha256}})
BucketWriter = Callable[[Path, dict[str, Any]], _BucketsWritten]


def _bucket_room(buckets: list[Bucket], ctx: PassContext, room: _BucketRoom) -> list[Bucket]:
    """The buckets the compile budget leaves room for (in the order chosen), built before the
    generic plan's code: a bucket's build costs about what the generic one will (its passes and
    BUILD_AFTER_PASSES times them for code and compiling), and the generic plan's code and
    compiling are kept room for; each dropped one is logged."""
    if room.budget is None:
        return buckets
    took = time.monotonic() - room.started
    reserve = BUILD_AFTER_PASSES * room.passes_s
    each = max((1.0 + BUILD_AFTER_PASSES) * room.passes_s, 1e-3)
    fits = max(0, int((room.budget - took - reserve) // each))
    for bucket in buckets[fits:]:
        ctx.log("build", [], "shape_bucket_dropped",
                f"compile budget: bucket {bucket.id} ({bucket.count} requests, "
                f"{bucket.share:.1%}) dropped: {max(0.0, room.budget - took):.1f} s of the "
                f"{room.budget:g} s budget left, about {reserve:.1f} s of it kept for the "
                f"generic plan's code, about {each:.1f} s per bucket build",
                bucket=bucket.id)
    return buckets[:fits]


def _write_buckets(staging: Path, manifest: dict[str, Any], *, model_path: Path,
                   buckets: list[Bucket], left_out: list[str], ctx: PassContext,
                   generic_graph: Graph,
                   backend: Target, cpu_record: dict[str, Any], flags: dict[str, Any],
                   tuning: TuningDatabase | None, steps: BuildSteps,
                   room: _BucketRoom, serves: str | None = None) -> _BucketsWritten:
    """Each bucket's build in staging/buckets/ID/ (a BucketWriter), written after the generic
    plan's weights and before its code; the decisions (why each bucket exists, what was left
    out or dropped by the compile budget) are logged in the generic plan's context, whose
    decision log and manifest (listing the buckets, hashing their files) are written after."""
    for line in left_out:
        ctx.log("build", [], "shape_bucket_left_out", line)
    kept = _bucket_room(buckets, ctx, room)
    generic_arena = manifest["arena_bytes"]
    entries, notes, sha256 = [], [], {}
    for bucket in kept:
        shapes = symbolic_shapes({**flags["input_shapes"], **bucket.shapes})
        with steps.step(f"bucket {bucket.id}"):
            graph, bucket_ctx = compile_graph(model_path, ctx.options.mode, shapes, backend,
                                              steps=steps, tuning=tuning)
            own = {**flags, "mode": ctx.options.mode, "target": "cpu", "keep_source": False,
                   "name": f"{flags['name']}_{bucket.id}",
                   "input_shapes": {k: shape_argument(v) for k, v in sorted((shapes or {}).items())}}
            _write_artifact(staging / bucket.directory(), model_path, graph, bucket_ctx,
                            backend, own, cpu_record, False, steps, borrows_weights=True)
            shared = _share_weights(staging, bucket.directory(), manifest)
        sha256[bucket.id] = file_sha256(staging / bucket.directory() / backend.library_name)
        arena = bucket_ctx.artifacts["memory_plan"].arena_bytes
        speedup, changed = predicted_speedup(generic_graph, graph, backend.kernels)
        reason = f"{bucket.reason}; {speedup_note(speedup, changed)}"
        ctx.log("build", [], "shape_bucket", reason, bucket=bucket.id, arena_bytes=arena,
                generic_arena_bytes=generic_arena, shared_weights=shared,
                predicted_speedup=round(speedup, 3), **({"serves": serves} if serves else {}))
        entries.append({**bucket.to_json(), "reason": reason, "arena_bytes": arena,
                        "predicted_speedup": round(speedup, 3), "kernels_changed": len(changed),
                        "compiled_nodes": len(graph.nodes), "shared_weights": shared})
        notes.append(f"shape bucket {bucket.id}: {bucket.reason.split(':')[0]}; "
                     f"{'a static' if bucket.exact else 'a symbolic'} plan, arena {arena} B "
                     f"(generic plan {generic_arena} B)"
                     + ("; the generic plan's weights" if shared else "; weights of its own"))
    return _BucketsWritten(kept, entries, notes, sha256)


def _bucket_infos(written: _BucketsWritten | None, name: str, dims: list[Any],
                  backend: Target) -> dict[str, Any]:
    """The generic plan's dispatch table (c/buckets.c.j2): each bucket built, its box over the
    plan's dims and its library's sha256, in dispatch order (pyc_cli/buckets.dispatch_order)."""
    if written is None:
        return {}
    buckets = written.kept
    by_id = {bucket.id: bucket for bucket in buckets}
    infos = []
    for bucket_id, box in dispatch_order([(b.id, b.box) for b in buckets]):
        bounds = {dim: (lo, hi) for dim, lo, hi in box}
        infos.append(BucketInfo(bucket_id, f"{name}_{bucket_id}", by_id[bucket_id].exact,
                                [bounds[d.name][0] for d in dims],
                                [bounds[d.name][1] for d in dims], written.sha256[bucket_id]))
    return {"buckets": infos, "bucket_library": backend.library_name}


def _share_weights(staging: Path, directory: str, top: dict[str, Any]) -> bool:
    """A bucket whose weights file is byte for byte the generic plan's keeps none of its own:
    its manifest's `weights.shared` holds that file's sha256, which loading checks against the
    artifact's before the bucket reads the generic plan's file. Returns whether it shares."""
    where = staging / directory
    own = json.loads((where / MANIFEST).read_text(encoding="utf-8"))
    name, parent = own["weights"]["file"], top["weights"]["file"]
    digest = own["files"].get(name)
    if digest is None or digest != top["files"].get(parent) or \
            own["weights"]["bytes"] != top["weights"]["bytes"]:
        return False
    (where / name).unlink()
    own["weights"] = {**own["weights"], "file": parent, "shared": digest}
    own["files"] = hash_tree(where)
    write_text(where, MANIFEST, dumps(own))
    return True


def _warn_if_over(compile_budget: float | None, started: float) -> None:
    """PYC-W003 for a build that took longer than its budget."""
    took = time.monotonic() - started
    if compile_budget is not None and took > compile_budget:
        warnings.warn(PycWarning(PycError(
            "W003", f"the build took {took:.1f} s, over its compile budget of {compile_budget:g} s "
            "(the artifact is complete)", hint="give a larger --compile-budget, or build without "
            "--tune (what the budget can drop) to take less")), stacklevel=3)


def _write_targets(staging: Path, model_path: Path,
                   built: list[tuple[str, Target, dict[str, Any], tuple[Graph, PassContext]]],
                   flags: dict[str, Any], slim: bool, steps: BuildSteps,
                   buckets: BucketWriter | None = None) -> _BucketsWritten | None:
    """Each target's artifact: the first in `staging`, each next one in targets/NAME/ (written
    first: the first target's manifest hashes their files and lists every target). The first
    one's code dispatches to the buckets `buckets` writes (in buckets/ID/), which it returns."""
    targets = [target for target, *_ in built]
    written = None
    for index in reversed(range(len(built))):
        target, backend, cpu_record, (graph, ctx) = built[index]
        own = {**flags, "mode": ctx.options.mode, "target": target,
               "keep_source": flags["keep_source"] and index == 0,  # one source copy
               **({"arch": backend.arch, "precision": backend.precision}  # type: ignore[attr-defined]
                  if target == "cuda" else {})}
        written = _write_artifact(staging / fallback_dir(target) if index else staging,
                                  model_path, graph, ctx, backend, own, cpu_record, slim, steps,
                                  targets if index == 0 and len(targets) > 1 else None,
                                  buckets=buckets if index == 0 else None)
    return written


def parse_targets(text: str) -> list[str]:
    """`cuda,cpu` -> ['cuda', 'cpu']: the targets an artifact holds, in the order loading tries
    them (PYC-E050 for an unknown or repeated name)."""
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in TARGETS]
    if unknown or len(set(names)) != len(names):
        raise PycError("E050", f"--target {text!r} is not a list of distinct targets",
                       where="--target", hint=f"give one or more of {', '.join(TARGETS)}, "
                       "comma-separated, in the order to try them (e.g. cuda,cpu)")
    return names


def _target_tuning(name: str, backend: Target, cpu_record: dict[str, Any],
                   tuning: TuningDatabase | None, tune: bool,
                   tuning_db: str | Path | None) -> TuningDatabase | None:
    """The measured kernel choices one target's build reads: those given, or its section of
    the tuning database file (only a tunable target has one, and others' toolchains need not
    be probed)."""
    if tuning is not None or name not in TUNABLE_TARGETS or not (tune or tuning_db is not None):
        return tuning
    path = default_path() if tuning_db is None else tuning_db
    if name == "cuda":
        # CUDA kernels are timed on, and their measurements kept for, the GPU of this machine
        # (its model and driver); a build without one uses the cost model
        from .runtime.cuda import gpu_identity

        try:
            identity = gpu_identity("--tune" if tune else "the tuning database")
        except PycError as error:
            if tune:
                raise PycError("E037", "--tune with --target cuda times the kernels on this "
                               f"machine's GPU: {error.what}", where="--tune",
                               hint="tune on the GPU machine (the database then serves builds "
                               "there), or leave out --tune") from None
            return None
        cpu_record = cuda_tuning_record(identity, backend)
    return tuning_database(backend, path, cpu_record)


# code generation, C compilation and writing the artifact take about this many times the passes
# (MiniLM-L6 on one Zen 4 core: 0.8 s of passes, 3 s after them), plus a second
BUILD_AFTER_PASSES = 4.0


def _tune(model_path: Path, mode: str | None, input_shapes: dict[str, tuple[int, ...]] | None,
          backend: Target, db: FileTuningDatabase, options: TuneOptions, steps: BuildSteps,
          progress: Progress | None, deadline: float | None = None
          ) -> tuple[list[str], list[str]]:
    """Time the model's kernel variants, save the winners: (what a `deadline`, time.monotonic,
    decided about the tuning's budget: what the rest of the build leaves of it, or nothing;
    the lines `pyc build` prints of the tuning)."""
    passes_started = time.monotonic()
    graph, ctx = compile_graph(model_path, mode or "balanced", input_shapes, backend, steps=steps)
    budget_notes: list[str] = []
    if deadline is not None:
        now = time.monotonic()
        reserve = BUILD_AFTER_PASSES * (now - passes_started) + 1.0
        left = deadline - now - reserve
        if left < 1.0:
            return [f"compile budget: no tuning ({max(0.0, deadline - now):.1f} s left, about "
                    f"{reserve:.1f} s of it for generating and compiling the code)"], []
        if left < options.budget_s:
            budget_notes.append(f"compile budget: tuning given {left:.1f} s of its "
                                f"{options.budget_s:g} s (about {reserve:.1f} s kept for "
                                "generating and compiling the code)")
            options = replace(options, budget_s=left)
    with steps.step("tune kernels"):
        report = tune_graph(graph, ctx, backend, db, options, progress)
    if report.tuned:
        db.save()
    return budget_notes, tune_summary(report, db.path)


def _write_artifact(staging: Path, model_path: Path, graph: Graph, ctx: PassContext,
                    backend: Target, flags: dict[str, Any], cpu_record: dict[str, Any],
                    slim: bool, steps: BuildSteps, targets: list[str] | None = None,
                    buckets: BucketWriter | None = None,
                    borrows_weights: bool = False) -> _BucketsWritten | None:
    """One target's artifact in `staging`; `targets` (the first target's of several) lists
    every target, the others' artifacts already written under targets/NAME/. The generic plan
    of an artifact with buckets has `buckets` write them once its weights are written, before
    its code, which dispatches to them in C (returns what was written); a bucket's plan
    `borrows_weights` (exports NAME_create_borrowed)."""
    plan: MemoryPlan = ctx.artifacts["memory_plan"]
    policy = ctx.policy
    # weights the kernels read as packed panels, or in a 16-bit type, are stored so
    layout = layout_weights(graph, backend.constant_panels(graph),
                            backend.constant_conversions(graph), backend.constant_transforms(graph))
    check_addressable("the weights file", layout.total_bytes, model_path.name)
    blob = weights_bytes(graph, layout)
    write_bytes(staging, "weights.bin", blob)
    written = None if buckets is None else buckets(staging, {
        "arena_bytes": plan.arena_bytes,
        "weights": {"file": "weights.bin", "bytes": layout.total_bytes},
        "files": {"weights.bin": file_sha256(staging / "weights.bin")}})
    dims = run_dims(graph)
    info = ModelInfo(__version__, io_infos(graph, graph.inputs),
                     io_infos(graph, graph.outputs, graph.public_outputs()),
                     plan.arena_bytes, layout.total_bytes, weights_checksum(blob), flags["name"],
                     flags["threads"], **dims, **runtime_plan(plan),
                     **_bucket_infos(written, flags["name"], dims.get("dims", []), backend),
                     borrows_weights=borrows_weights, unreachable=unreachable_branches(graph))
    with steps.step("generate C"):
        sources = backend.emit(graph, plan, layout, info)
    for name, text in sorted(sources.items()):
        write_text(staging, f"src/{name}", text)
    write_text(staging, "model.ir", print_graph(graph))
    write_text(staging, "memory_plan.json", dumps(plan.to_json()))
    write_text(staging, "memory_timeline.svg",
               timeline_svg(plan, display_name(model_path), len(graph.nodes)))
    write_text(staging, INPUT_RANGES_FILE, dumps(ranges_json(ctx.artifacts["input_ranges"])))
    write_text(staging, "decisions.jsonl", "".join(
        dumps_line(d.to_json()) for d in ctx.decisions))
    source = (keep_source_copy(model_path, staging) if flags["keep_source"]
              else describe_source(model_path))
    with steps.step("compile C"):
        toolchain = backend.compile(staging / "src", staging, flags["name"])
    if cpu_record:  # a CPU target's code: the CPU it was built for (checked before loading)
        toolchain["march"] = getattr(backend, "march", "")
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "pyc_version": __version__,
        "model": {**source, "file": display_name(model_path), "graph_name": graph.name,
                  "opset": graph.opset,
                  "source_ops": ctx.artifacts["source_ops"],
                  "compiled_nodes": len(graph.nodes)},
        "target": flags["target"], "mode": flags["mode"],
        "policy": {"name": policy.name, "version": policy.version}, "flags": flags,
        "toolchain": toolchain, **({"cpu": cpu_record} if cpu_record else {}),
        **({"cuda": backend.device_record()} if hasattr(backend, "device_record") else {}),
        "inputs": [_io_entry(i) for i in info.inputs],
        "outputs": [_io_entry(o) for o in info.outputs],
        **({"dims": [{"name": d.name, "lo": d.lo, "hi": d.hi,
                       **({"computed": d.computed} if d.computed else {})} for d in info.dims]}
           if info.dims else {}),
        "arena_bytes": plan.arena_bytes,
        "weights": {"file": "weights.bin", "bytes": layout.total_bytes,
                    "checksum": info.weights_checksum, "layout": layout.to_json()["offsets"],
                    "packed": layout.to_json()["packed"],
                    **({"converted": layout.to_json()["converted"]} if layout.converted else {}),
                    **({"transformed": layout.to_json()["transformed"]}
                       if layout.transformed else {})},
        "library": backend.library_name, "slim": False,
        **({"header": "src/model.h"} if cpu_record else {}),
        "symbol_prefix": flags["name"], "soname": soname(flags["name"]),
        **({"targets": targets} if targets else {}),
        **({"buckets": written.entries} if written is not None else {}),
        # run-time If branches compiled as pyc.Unreachable: a run taking one is PYC-E053
        **({"unreachable_branches": info.unreachable} if info.unreachable else {}),
        "files": hash_tree(staging),
    }
    if slim:
        manifest = strip_files(staging, manifest)
    write_text(staging, MANIFEST, dumps(manifest))
    return written


def check_contract_at_build(promised: Contract, ctx: PassContext, graph: Graph,
                            cpu: dict[str, Any] | None, threads: int) -> list[str]:
    """Check the clauses the build decides or predicts (the arena from the plan, latency from
    the latency model; `deterministic` was replayed by the planner), log one decision per
    clause (serves contract:NAME) and return the build's notes; PYC-E063 for a broken one,
    naming the decisions that drove the value."""
    plan: MemoryPlan = ctx.artifacts["memory_plan"]
    notes = []
    for clause in promised.clauses:
        if clause.percentile is not None and ctx.target is not None:
            notes.append(_check_latency_at_build(clause, ctx, graph, cpu, threads))
            continue
        if clause.name == "arena":
            if not clause.holds(plan.arena_bytes):
                raise broken(clause, plan.arena_bytes, "the plan's arena is", _arena_drivers(ctx))
            status, why = "holds", f"the plan's arena is {clause.show(plan.arena_bytes)}"
            value: float | None = plan.arena_bytes
        elif clause.name == "deterministic":
            status, value = "holds", None
            why = (f"policy {ctx.policy.label} planned twice with the same decisions; the run "
                   "is checked by pyc run --check-contract")
        else:
            status, value = "run_time", None
            why = ("no build-time prediction of latency exists yet: measured by pyc run "
                   "--check-contract" if clause.percentile is not None else
                   "measured against onnxruntime by pyc run --check-contract")
        ctx.log("contract", [], "contract_clause", f"{clause.text}: {why}", before=clause.limit,
                after=value, clause=clause.name, status=status, serves=f"contract:{clause.name}")
        notes.append(f"contract {clause.text}: {why}")
    return notes


def _check_latency_at_build(clause: Clause, ctx: PassContext, graph: Graph,
                            cpu: dict[str, Any] | None, threads: int) -> str:
    """A latency clause against the predicted run time (a median run: a pNN clause it already
    breaks is broken). A prediction resting mostly on the uncalibrated default cost model is
    logged, never fatal: it cannot tell 1 ms from 3."""
    predicted = latency_model.predict_build(graph, ctx.kernels, threads, cpu, ctx.tuning)
    seconds = float(f"{predicted.ms:.3g}") / 1000.0
    default = predicted.uncalibrated_share()
    slowest = sorted(predicted.nodes, key=lambda n: -n.ms)[:3]
    drove = [f"{n.node} ({n.op}, {n.kernel}): {n.ms:.3g} ms predicted ({n.basis})"
             for n in slowest]
    calibrated = default < 0.5
    if calibrated and not clause.holds(seconds):
        raise broken(clause, seconds, "the predicted median run is", drove)
    why = (f"the predicted median run is {clause.show(seconds)} "
           f"({100 * (1 - default):.0f}% of it from measurements on this machine); measured "
           "again by pyc run --check-contract")
    if not calibrated:
        why += ("; the prediction rests on the uncalibrated cost model, so it decides nothing "
                "(`pyc explain ARTIFACT --what-if threads=N --measure` calibrates this machine)")
    ctx.log("contract", [], "contract_clause", f"{clause.text}: {why}", before=clause.limit,
            after=seconds, clause=clause.name,
            status="predicted" if calibrated else "uncalibrated", serves=f"contract:{clause.name}")
    return f"contract {clause.text}: {why}"


def _arena_drivers(ctx: PassContext) -> list[str]:
    """The decisions behind an arena: the policy and its placement, the lower bound, the
    largest storages live at the peak step, and what the other modes would give."""
    plan: MemoryPlan = ctx.artifacts["memory_plan"]
    roots = [t for t in plan.tensors if t.alias_of is None]
    steps = range(max((t.end for t in roots), default=-1) + 1)
    live = {s: sum(t.bytes for t in roots if t.start <= s <= t.end) for s in steps}
    peak = max(live, key=lambda s: (live[s], -s), default=0)
    largest = sorted((t for t in roots if t.start <= peak <= t.end), key=lambda t: -t.bytes)[:3]
    drove = [f"policy {ctx.policy.label} ({plan.schedule} schedule, {plan.algorithm} placement)",
             f"liveness lower bound {plan.lower_bound_bytes} bytes at step {peak}"]
    drove += [f"{t.name} ({t.bytes} bytes, {t.reason}) live at the peak" for t in largest]
    drove += [f"{mode} would need {figures['arena_bytes']} bytes"
              for mode, figures in plan.what_if.items() if mode != plan.mode]
    return drove


def _compile_for_budget(model_path: Path, mode: str | None, memory_budget: int | None,
                        input_shapes: dict[str, tuple[int, ...]] | None, target: Target,
                        steps: BuildSteps, tuning: TuningDatabase | None = None,
                        input_values: Mapping[str, tuple[float, float]] | None = None,
                        check_determinism: bool = False,
                        kernel_selection: str = "coselect") -> tuple[Graph, PassContext]:
    """The build's mode: the one asked for (checked against the budget), else with a budget the
    fastest that fits, else balanced. The last decision logged says which and why."""
    if memory_budget is None:
        return compile_graph(model_path, mode or "balanced", input_shapes, target, steps=steps,
                             tuning=tuning, input_values=input_values,
                             check_determinism=check_determinism,
                             kernel_selection=kernel_selection)
    if mode is None:
        return compile_within_budget(model_path, memory_budget, input_shapes, target, steps,
                                     tuning, input_values=input_values,
                                     check_determinism=check_determinism,
                                     kernel_selection=kernel_selection)
    graph, ctx = compile_graph(model_path, mode, input_shapes, target, steps=steps, tuning=tuning,
                               input_values=input_values, check_determinism=check_determinism,
                               memory_budget=memory_budget, kernel_selection=kernel_selection)
    arena = ctx.artifacts["memory_plan"].arena_bytes
    if arena > memory_budget:
        raise PycError("E011", f"mode {mode} needs an arena of {arena} bytes, over the memory "
                       f"budget of {memory_budget} bytes", where=f"--mode {mode}",
                       hint=f"raise --memory-budget to at least {arena} bytes, or leave out "
                       "--mode so that the fastest mode that fits is chosen")
    ctx.log("plan_memory", [], "memory_budget",
            f"mode {mode} as asked (--mode); its arena of {arena} bytes fits the memory budget "
            f"of {memory_budget} bytes", before=memory_budget, after=arena)
    return graph, ctx


def display_name(path: Path) -> str:
    """A file name as UTF-8 text (bytes that do not decode, kept by Python as lone surrogates,
    are written as escapes): what the manifest and reports may hold."""
    return os.fsencode(path.name).decode("utf-8", "backslashreplace")


def dumps_line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str) + "\n"


def _io_entry(info: Any) -> dict[str, Any]:
    return {"name": info.name, "dtype": info.dtype, "shape": info.shape,
            **({"dims": info.dims} if info.dims is not None else {})}


def load(artifact: str | Path) -> CompiledModel:
    """Verify an artifact's hashes, then load its library. The model is reusable across runs
    and thread-safe: any number of threads may call its `run` at once (each run works in an
    execution context of its own; see CompiledModel). Close it (or use `with`) to free it.
    An artifact of several targets (`build(target="cuda,cpu")`) loads the first whose guards
    pass here, warning PYC-W001 for each skipped; `model.stats` counts them."""
    root = Path(artifact)
    restore_if_interrupted(root)
    manifest = read_manifest(root)
    model = _load_verified(root, manifest)
    telemetry.attach(model, root, manifest)  # PYC_TELEMETRY=PATH: record runs (telemetry.py)
    return model


def _load_verified(root: Path, manifest: dict[str, Any]) -> CompiledModel:
    fallbacks = fallback_targets(manifest)
    if manifest.get("buckets"):
        return _load_with_buckets(root, manifest)
    if not fallbacks:
        return _load_target(root, manifest)
    verify_files(root, manifest)  # every target's files, before any target's code loads
    return _load_with_fallback(root, manifest, [manifest["target"], *fallbacks])


def _load_with_buckets(root: Path, manifest: dict[str, Any]) -> CompiledModel:
    """The generic plan (every file of the artifact verified first, the buckets' included),
    dispatching runs whose dims lie in a bucket's box to the smallest such bucket, loaded on
    first use."""
    model = _load_target(root, manifest)
    # the library's own dispatch (C callers) would map the buckets' code unverified: this
    # runtime dispatches itself, verifying each bucket's files before it loads
    off = getattr(model._keepalive, f"{manifest['symbol_prefix']}_set_bucket_dispatch", None)
    if off is not None:
        off.restype, off.argtypes = None, [ctypes.c_void_p, ctypes.c_int]
        off(model._handle, 0)
    boxes = [(_bucket_entry(root, entry), _bucket_box(root, entry)) for entry in manifest["buckets"]]
    inputs = [(e["name"], list(e["dims"])) for e in manifest["inputs"] if "dims" in e]
    model.buckets = BucketDispatch(boxes, inputs,
                                   functools.partial(_load_bucket, root, manifest, model))
    model.stats.plan_runs = {}
    return model


def _bucket_box(root: Path, entry: dict[str, Any]) -> Box:
    """A bucket's box of the dims, checked (E031 otherwise)."""
    dims = entry.get("dims")
    if not (isinstance(dims, dict) and all(
            isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v) and v[0] <= v[1]
            for v in dims.values())):
        raise PycError("E031", f"the manifest's bucket entry {entry['id']} has no valid box of "
                       "dims", where=str(root), hint="rebuild the artifact")
    return tuple((name, lo, hi) for name, (lo, hi) in sorted(dims.items()))


def _bucket_entry(root: Path, entry: Any) -> str:
    """A bucket's id, checked to name a directory under buckets/ (E031 otherwise)."""
    try:
        ok = (isinstance(entry["id"], str) and entry["id"][:1] == "b" and entry["id"][1:].isdigit()
              and entry["dir"] == f"buckets/{entry['id']}" and isinstance(entry["shapes"], dict))
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise PycError("E031", f"the manifest's bucket entry {entry!r} is malformed", where=str(root),
                       hint="the manifest was edited: rebuild the artifact")
    return str(entry["id"])


def _load_bucket(root: Path, manifest: dict[str, Any], generic: CompiledModel,
                 bucket: str) -> CompiledModel:
    """Bucket `bucket`'s plan: its manifest must be the one the artifact's manifest hashes, of
    the same inputs and outputs (within the bucket's box), and its files are verified again
    before its library is mapped; a bucket sharing the artifact's weights names their sha256,
    which must be the artifact's file's, hashed again now, and reads the generic plan's copy
    in memory (NAME_ID_create_borrowed checks their size and checksum against its own)."""
    where = root / "buckets" / bucket
    own_manifest = where / MANIFEST
    recorded = manifest["files"].get(f"buckets/{bucket}/{MANIFEST}")
    if not own_manifest.is_file() or file_sha256(own_manifest) != recorded:
        raise PycError("E031", f"buckets/{bucket}/{MANIFEST} does not match its sha256 in the "
                       f"artifact's {MANIFEST}", where=str(where),
                       hint="the artifact was modified; rebuild it")
    own = read_manifest(where)
    if [(e["name"], e["dtype"]) for e in own["inputs"]] != \
            [(e["name"], e["dtype"]) for e in manifest["inputs"]] or \
            [(e["name"], e["dtype"]) for e in own["outputs"]] != \
            [(e["name"], e["dtype"]) for e in manifest["outputs"]]:
        raise PycError("E030", f"buckets/{bucket}/ is not a build of this model's inputs and "
                       "outputs", where=str(where), hint="rebuild the artifact")
    shared = own["weights"].get("shared")
    if shared is None:
        return _load_target(where, own)
    weights = root / manifest["weights"]["file"]
    if own["weights"]["file"] != manifest["weights"]["file"] or \
            shared != manifest["files"].get(manifest["weights"]["file"]) or \
            file_sha256(weights) != shared:
        raise PycError("E031", f"buckets/{bucket}/ shares weights whose sha256 is not the "
                       f"artifact's {manifest['weights']['file']}'s", where=str(where),
                       hint="the artifact was modified; rebuild it")
    return _load_target(where, own, weights_path=weights, borrow=_generic_weights(generic, manifest))


def _generic_weights(generic: CompiledModel, manifest: dict[str, Any]) -> tuple[int, int, int] | None:
    """(address, bytes, checksum) of the generic plan's weights in memory, where its library
    exports them (NAME_weights_data) and the manifest records their checksum."""
    data = getattr(generic._keepalive, f"{manifest['symbol_prefix']}_weights_data", None)
    checksum = manifest["weights"].get("checksum")
    if data is None or checksum is None or generic._handle is None:
        return None
    data.restype, data.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    address = data(generic._handle)
    return (address, manifest["weights"]["bytes"], checksum) if address else None


# the load-time guards a fallback target may answer: the CUDA packages missing (E027), a CPU
# without the code's features (E033), no driver, no GPU, a GPU the CUBIN is not for and a PTX
# the driver cannot JIT, too little device memory (E037), a driver call failing (E038)
GUARD_CODES = ("E027", "E033", "E037", "E038")


def _load_with_fallback(root: Path, manifest: dict[str, Any], targets: list[str]) -> CompiledModel:
    """The first target whose guards pass; each one skipped is a guard miss and a fallback,
    warned as PYC-W001 with its reason and counted in the model's run statistics. The last
    target's failure is raised as it is. A run that later fails on the loaded target's device
    goes to the next target (CompiledModel.set_run_fallback)."""
    misses: list[str] = []
    model = _first_that_loads(root, manifest, targets, 0, misses)
    model.stats.targets = list(targets)
    model.stats.guard_miss_count = model.stats.fallback_count = len(misses)
    model.stats.last_fallback_reason = misses[-1] if misses else None
    return model


def _first_that_loads(root: Path, manifest: dict[str, Any], targets: list[str], start: int,
                      misses: list[str]) -> CompiledModel:
    """Targets from `start` on until one's guards pass (each miss appended to `misses`)."""
    for index in range(start, len(targets)):
        name = targets[index]
        where, target_manifest = _target_artifact(root, manifest, name, index)
        try:
            model = _load_target(where, target_manifest, verified=True)
        except PycError as error:
            if error.code not in GUARD_CODES or index + 1 == len(targets):
                raise
            misses.append(f"PYC-{error.code}: {error.what}")
            warnings.warn(PycWarning(PycError(
                "W001", f"the artifact's {name} target cannot run here ({misses[-1]}); "
                f"falling back to its {targets[index + 1]} target", where=str(root),
                hint=f"nothing, if {targets[index + 1]} is meant to run here; to run on "
                f"{name}: {error.hint}")),
                stacklevel=4)
            continue
        if index + 1 < len(targets):
            model.set_run_fallback(functools.partial(_load_after, root, manifest, targets, index))
        return model
    raise AssertionError("the last target's failure is raised above")


def _load_after(root: Path, manifest: dict[str, Any], targets: list[str], failed: int
                ) -> CompiledModel:
    """The first target after `failed` that loads (a run failed on target `failed`'s device)."""
    return _first_that_loads(root, manifest, targets, failed + 1, [])


def _target_artifact(root: Path, manifest: dict[str, Any], name: str,
                     index: int) -> tuple[Path, dict[str, Any]]:
    """Target `index` of the artifact: its directory and manifest (a fallback's, hashed in the
    artifact's manifest, must be that target's build of the same inputs and outputs)."""
    if index == 0:
        return root, manifest
    where = root / fallback_dir(name)
    own = read_manifest(where)
    if own["target"] != name or fallback_targets(own) or \
            (own["inputs"], own["outputs"]) != (manifest["inputs"], manifest["outputs"]):
        raise PycError("E030", f"{fallback_dir(name)}/ is not the {name} build of this model "
                       "with its inputs and outputs", where=str(where), hint="rebuild the artifact")
    if _unverified_files(manifest, name, own, where):
        raise PycError("E031", f"the hashes in {fallback_dir(name)}/{MANIFEST} differ from the "
                       f"artifact's {MANIFEST}", where=str(where),
                       hint="the artifact was modified; rebuild it")
    return where, own


def _unverified_files(manifest: dict[str, Any], name: str, own: dict[str, Any],
                      where: Path) -> list[str]:
    """The fallback's files that load() did not verify with the artifact's own: listed with
    another hash there, or missing there (stripped) yet present or needed to run."""
    needed = runtime_files(own)
    found = []
    for file, digest in own["files"].items():
        verified = manifest["files"].get(f"{fallback_dir(name)}/{file}")
        if verified != digest and (verified is not None or file in needed or (where / file).exists()):
            found.append(file)
    return found


def _load_target(root: Path, manifest: dict[str, Any], verified: bool = False,
                 weights_path: Path | None = None,
                 borrow: tuple[int, int, int] | None = None) -> CompiledModel:
    """One target's artifact: its guards, its hashes (unless `verified` already), its code;
    its weights file, or `weights_path` (a bucket sharing its artifact's, checked there), read
    in place at `borrow` (address, bytes, checksum: the generic plan's copy) where they match."""
    if manifest["target"] == "cuda":
        from .runtime.cuda import load_cuda

        return load_cuda(root, manifest, verified)
    check_cpu(manifest["cpu"], str(root))  # before any of its code is mapped
    if weights_path is None and "shared" in manifest["weights"]:
        raise PycError("E030", f"{root.name}/ is a shape bucket reading its artifact's weights, "
                       "not an artifact of its own", where=str(root),
                       hint="load the artifact it belongs to (two directories up); it dispatches "
                       "runs to this bucket")
    if not verified:
        verify_files(root, manifest)
    library_path = _content_addressed_copy(root / manifest["library"],
                                           manifest["files"][manifest["library"]])
    try:
        library = ctypes.CDLL(str(library_path))
    except OSError as exc:
        raise PycError("E030", f"cannot load {manifest['library']}: {exc}", where=str(root),
                       hint="rebuild the artifact on this machine") from exc
    try:
        addresses = library_addresses(library, manifest["symbol_prefix"],
                                      ENTRY_POINTS + IO_ENTRY_POINTS
                                      + (SHAPED_ENTRY_POINTS if "dims" in manifest else ()))
    except AttributeError as exc:  # the manifest's prefix, cross-checked like its I/O below
        raise PycError("E031", f"the symbols {manifest['symbol_prefix']}_* the manifest names do "
                       f"not match the compiled library: {exc}", where=str(root),
                       hint="the manifest was edited: rebuild the artifact") from exc
    inputs = [TensorSpec.from_manifest(e) for e in manifest["inputs"]]
    outputs = [TensorSpec.from_manifest(e) for e in manifest["outputs"]]
    check_io_specs(addresses, inputs, outputs)
    weights = weights_path or root / manifest["weights"]["file"]
    model = CompiledModel(ModelFunctions(addresses), weights, inputs, outputs, library,
                          manifest["arena_bytes"],
                          _borrowing(library, manifest["symbol_prefix"], weights, borrow))
    if "dims" in manifest:  # symbolic dims: runs take the inputs' actual shapes
        if _has_symbols(library, manifest["symbol_prefix"], RUNTIME_OFFSET_ENTRY_POINTS):
            addresses.update(library_addresses(library, manifest["symbol_prefix"],
                                               RUNTIME_OFFSET_ENTRY_POINTS))
        if _has_symbols(library, manifest["symbol_prefix"], (TRIM_ENTRY_POINT,)):
            addresses.update(library_addresses(library, manifest["symbol_prefix"],
                                               (TRIM_ENTRY_POINT,)))
        model.shaped = ShapedFunctions(addresses, manifest["dims"])
    model.read_run_facts(root, manifest)
    return model


def _has_symbols(library: ctypes.CDLL, prefix: str, suffixes: tuple[str, ...]) -> bool:
    return all(hasattr(library, f"{prefix}_{suffix}") for suffix in suffixes)


def _borrowing(library: ctypes.CDLL, prefix: str, weights: Path,
               borrow: tuple[int, int, int] | None) -> Any:
    """A bucket's model creation on the generic plan's weights in memory (`borrow`), falling
    back to loading its weights file where they do not match; None: the usual creation."""
    borrowed = getattr(library, f"{prefix}_create_borrowed", None) if borrow else None
    create = getattr(library, f"{prefix}_create", None)
    if borrowed is None or create is None or borrow is None:
        return None
    borrowed.restype = create.restype = ctypes.c_int
    borrowed.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64, ctypes.c_void_p]
    create.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    address, size, checksum = borrow

    def make(out: Any) -> int:
        status = borrowed(address, size, checksum, out)
        return status if status == 0 else create(str(weights).encode(), out)
    return make


def _content_addressed_copy(library: Path, expected_sha256: str) -> Path:
    """Load native code from a private copy named by its hash: the bytes loaded are the bytes
    verified (no swap between check and dlopen), and a rebuilt library at the same path is not
    shadowed by the old one (dlopen reuses an already-loaded path)."""
    try:
        data = library.read_bytes()
    except OSError as exc:
        raise PycError("E030", f"cannot read {library.name}: {exc.strerror or exc}",
                       where=str(library), hint="rebuild the artifact") from exc
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise PycError("E031", f"{library.name} does not match its sha256 in {MANIFEST}",
                       where=str(library), hint="the artifact was modified; rebuild it")
    cache = Path(tempfile.gettempdir()) / f"pyc-libs-{os.getuid()}"
    cache.mkdir(mode=0o700, exist_ok=True)
    target = cache / f"{expected_sha256}.so"
    if not target.exists() or hashlib.sha256(target.read_bytes()).hexdigest() != expected_sha256:
        handle, name = tempfile.mkstemp(dir=cache, suffix=".tmp")
        os.close(handle)
        staging = Path(name)
        staging.write_bytes(data)
        staging.replace(target)
    return target
