"""The what-if simulator (issue #16, point 1): an alternative build's arena and latency, predicted
without building it.

The arena is exact: the alternative's flags rerun the Python pipeline (passes and planning, the
code `pyc build` runs before it generates C), so the plan is the one the build would write. The
latency comes from passes/latency_model.py: per-kernel timings of the artifact where the alternative runs
the same kernel on the same work, the tuning database's timings, else the cost model calibrated
by what was measured on this machine.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..api import compile_graph, compile_within_budget, symbolic_shapes
from ..artifact.reader import load_graph, read_manifest, verify_files
from ..artifact.source import source_model
from ..errors import PycError
from ..ir.annotations import KernelChoice
from ..ir.graph import Graph
from ..ir.types import is_float_numpy
from ..passes import latency_model as cost
from ..passes.context import PassContext
from ..passes.tuning import EmptyTuningDatabase, KernelSignature, kernel_signature, signature_key
from ..passes.tuning_db import default_path
from ..targets import get_target
from ..targets.base import Target
from .spec import Alternative, Changes, apply, bad_kernel, from_flags


@dataclass
class Setup:
    """What alternatives are planned from: the source model, its shapes and the CPU the build
    compiles for; `base` is the configuration alternatives change (an artifact's own flags)."""

    model_path: Path
    input_shapes: dict[str, Any] | None
    base: Alternative
    input_values: dict[str, tuple[float, float]] | None = None
    cpu: str = "native"
    cpu_features: tuple[str, ...] = ()
    tuning_db: Path | None = None
    manifest: dict[str, Any] | None = None
    artifact: Path | None = None
    graph: Graph | None = None  # the artifact's compiled graph
    _targets: dict[tuple[Any, ...], Target] = field(default_factory=dict)

    def target(self, alt: Alternative) -> Target:
        key = (alt.target, alt.winograd, alt.layout)
        if key not in self._targets:
            self._targets[key] = get_target(alt.target, self.cpu, self.cpu_features, None, None,
                                            alt.winograd, alt.layout)
        return self._targets[key]


@dataclass(frozen=True)
class Scenario:
    """One alternative, planned: the mode it ends up with, its plan's figures, the predicted
    latency (with each kernel's evidence), the kernels that differ from the base's."""

    alternative: Alternative
    mode: str
    arena_bytes: int
    lower_bound_bytes: int
    no_reuse_bytes: int
    latency: cost.LatencyPrediction
    kernels: dict[str, str]
    error: str = ""  # the PYC error that stops this alternative (a budget no mode fits)
    timings: str = ""  # where the per-kernel timings it rests on come from ("": none)

    def to_json(self) -> dict[str, Any]:
        return {"alternative": self.alternative.describe(), "label": self.alternative.label,
                "timings": self.timings,
                "mode": self.mode, "arena_bytes": self.arena_bytes,
                "lower_bound_bytes": self.lower_bound_bytes,
                "no_reuse_bytes": self.no_reuse_bytes, "error": self.error,
                "arena_basis": "the alternative's plan (the build's passes and planner rerun)",
                **self.latency.to_json()}


class ForcedKernels:
    """A tuning database that forces kernel choices for some signatures (a kernel override)
    and answers the rest from `base`: select_kernels then takes the forced candidate as it
    takes a measured one, so a build given this database is the alternative simulated."""

    def __init__(self, base: Any, forced: dict[str, KernelChoice]) -> None:
        self.base = base
        self.forced = forced
        self.entries = getattr(base, "entries", {})

    def lookup(self, signature: KernelSignature) -> KernelChoice | None:
        key = signature_key(signature)
        return self.forced[key] if key in self.forced else self.base.lookup(signature)

    def measurements(self, signature: KernelSignature) -> tuple[Any, ...]:
        if signature_key(signature) in self.forced:
            return ()
        timings = getattr(self.base, "measurements", None)
        return timings(signature) if timings else ()


def from_artifact(artifact: Path, model: Path | None = None,
                  tuning_db: Path | None = None) -> Setup:
    """The setup of an artifact: its source model (kept, beside it, or `model`), flags, graph."""
    manifest = read_manifest(artifact)
    verify_files(artifact, manifest)
    flags = manifest.get("flags", {}) if isinstance(manifest.get("flags"), dict) else {}
    path = source_model(artifact, manifest, model)
    values = flags.get("input_values")
    return Setup(path, symbolic_shapes(flags.get("input_shapes") or None),
                 from_flags(flags, manifest["mode"], manifest["target"]),
                 {k: (v[0], v[1]) for k, v in values.items()} if values else None,
                 str(flags.get("cpu", "native")), tuple(flags.get("cpu_features", ())),
                 tuning_db, manifest, artifact, load_graph(artifact, manifest))


def from_model(model: Path, input_shapes: dict[str, Any] | None, base: Alternative,
               cpu: str = "native", tuning_db: Path | None = None) -> Setup:
    return Setup(model, symbolic_shapes(input_shapes), base, cpu=cpu, tuning_db=tuning_db)


def tuning_for(setup: Setup, alt: Alternative) -> Any:
    """The tuning database a build of `alt` reads (as `pyc build` does: the default file)."""
    if alt.target != "cpu":
        return EmptyTuningDatabase()
    from ..tune import tuning_database

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuning_database(setup.target(alt), setup.tuning_db or default_path())


def plan(setup: Setup, alt: Alternative, tuning: Any = None) -> tuple[Graph, PassContext]:
    """Rerun the build's pipeline for `alt` (no C): the compiled graph and its context, whose
    `memory_plan` is the plan the build would write. Kernel overrides are applied as forced
    choices by kernel signature (the signature the node has in `alt`'s plan without them)."""
    graph, ctx = _pipeline(setup, alt, build_tuning(setup, alt, tuning))
    for node_name, candidate in alt.kernels:
        node = next((n for n in graph.nodes if n.name == node_name), None)
        if node is None or node.ann.kernel_name != candidate:
            raise bad_kernel(node_name, f"the override to {candidate} did not take effect in "
                             f"mode {ctx.options.mode} (the node became "
                             f"{'absent' if node is None else node.ann.kernel_name})", [])
    return graph, ctx


def build_tuning(setup: Setup, alt: Alternative, tuning: Any = None) -> Any:
    """The tuning database that makes a build of `alt`: `tuning` (default: the file `pyc build`
    reads), with `alt`'s kernel overrides forced (`api.build(tuning=...)` builds exactly the
    alternative the simulator planned)."""
    tuning = tuning_for(setup, alt) if tuning is None else tuning
    if not alt.kernels:
        return tuning
    graph, _ = _pipeline(setup, replace(alt, kernels=()), tuning)
    return ForcedKernels(tuning, forced_choices(graph, setup.target(alt), alt.kernels))


def _pipeline(setup: Setup, alt: Alternative, tuning: Any) -> tuple[Graph, PassContext]:
    backend = setup.target(alt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if alt.memory_budget is not None and not alt.mode_given:
            return compile_within_budget(setup.model_path, alt.memory_budget, setup.input_shapes,
                                         backend, tuning=tuning, input_values=setup.input_values)
        graph, ctx = compile_graph(setup.model_path, alt.mode, setup.input_shapes, backend,
                                   tuning=tuning, input_values=setup.input_values)
    arena = ctx.artifacts["memory_plan"].arena_bytes
    if alt.memory_budget is not None and arena > alt.memory_budget:
        raise PycError("E011", f"mode {alt.mode} needs an arena of {arena} bytes, over the "
                       f"memory budget of {alt.memory_budget} bytes", where=f"mode={alt.mode}",
                       hint="leave mode out so that the fastest mode that fits is chosen")
    return graph, ctx


def forced_choices(graph: Graph, target: Target, overrides: Sequence[tuple[str, str]]
                   ) -> dict[str, KernelChoice]:
    """Kernel overrides as forced choices by signature key (PYC-E066 for a node the plan lacks
    or a candidate that does not apply to it). Nodes doing the same work (one signature) share
    the override, as they share a tuning database entry."""
    nodes = {n.name: n for n in graph.nodes}
    forced = {}
    for name, candidate in overrides:
        node = nodes.get(name)
        if node is None:
            compiled = [n.name for n in graph.nodes if n.ann.kernel is not None
                        and not n.ann.kernel.is_alias]
            raise bad_kernel(name, "the plan has no compiled node of that name",
                             compiled[:12] + (["..."] if len(compiled) > 12 else []))
        names = [c.name for c in target.candidates(node, graph)]
        if candidate not in names:
            raise bad_kernel(name, f"{candidate!r} is not a candidate that applies to this "
                             f"{node.op} node", names)
        forced[signature_key(kernel_signature(node, graph, target.name))] = KernelChoice(candidate)
    return forced


# what stops one alternative, not the comparison (its row's answer): a budget no mode fits,
# a target whose packages, toolchain, CPU flags or GPU are missing here
ALTERNATIVE_STOPS = ("E011", "E026", "E027", "E036", "E037")


def simulate(setup: Setup, alt: Alternative, timings: cost.Timings | None,
             calibration: cost.Calibration,
             at_threads: dict[int, cost.Timings] | None = None) -> Scenario:
    """Plan `alt` and predict its latency (an alternative no plan allows, such as a budget no
    mode fits, gives a Scenario whose `error` says why). `at_threads` holds the artifact's
    timings at other team sizes (the run-time thread count needs no build to be timed): the
    alternative's team size uses its own."""
    team = cost.effective_threads(alt.threads)
    if at_threads and team in at_threads:
        timings = at_threads[team]
    try:
        tuning = tuning_for(setup, alt)
        graph, ctx = plan(setup, alt, tuning)
    except PycError as exc:
        if exc.code not in ALTERNATIVE_STOPS:  # a mistake, or the model's own problem
            raise
        empty = cost.LatencyPrediction(float("nan"), (), cost.effective_threads(alt.threads), 1.0)
        return Scenario(alt, alt.mode, 0, 0, 0, empty, {}, str(exc))
    memory = ctx.artifacts["memory_plan"]
    target = setup.target(alt)
    own_timings = timings if alt.target == (setup.manifest or {}).get("target", "cpu") else None
    latency = cost.predict(graph, target.name, dict(target.kernels), alt.threads, own_timings,
                           tuning, calibration, cost.static_kernels(target))
    kernels = {n.name: n.ann.kernel_name or "" for n in graph.nodes
               if n.ann.kernel is not None and not n.ann.kernel.is_alias}
    return Scenario(alt, ctx.options.mode, memory.arena_bytes, memory.lower_bound_bytes,
                    memory.no_reuse_bytes, latency, kernels,
                    timings=own_timings.source if own_timings is not None else "")


def alternatives(setup: Setup, texts: Sequence[str]) -> list[Alternative]:
    from .spec import parse_what_if

    return [apply(setup.base, parse_what_if(text)) for text in texts]


def mode_alternatives(setup: Setup, extra: Sequence[Changes] = ()) -> list[Alternative]:
    """Each built-in mode on the base configuration (no budget: every mode's own plan), then
    the `extra` alternatives."""
    from ..planning.policy import BUILTIN

    base = replace(setup.base, memory_budget=None, mode_given=True)
    found = [replace(base, mode=p.name, label=f"mode={p.name}") for p in BUILTIN]
    return found + [apply(setup.base, changes) for changes in extra]


# -- timings of the artifact itself


def artifact_timings(setup: Setup, measure: bool = False, profile_file: Path | None = None,
                     runs: int = 20) -> cost.Timings | None:
    """The artifact's per-kernel timings: from `profile_file` (`pyc run --profile --json`), or
    measured now (`measure`: the artifact's kernels recompiled with a clock read after each
    call, plus a plain run's p50), else what an earlier measurement of it left in the
    calibration store; None when there are none."""
    assert setup.artifact is not None and setup.manifest is not None and setup.graph is not None
    key = cost.artifact_key(setup.manifest)
    target = setup.target(setup.base)
    kernels = dict(target.kernels)
    threads = measured_threads(setup.manifest)
    if profile_file is not None:
        import json

        try:
            data = json.loads(profile_file.read_text(encoding="utf-8"))
            profile = data.get("profile", data)
            latency = data.get("latency_ms", {}).get("p50")
            found = cost.timings_from_profile(profile, setup.graph, target.name, kernels,
                                              threads, latency, f"profile file {profile_file}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PycError("E066", f"--timings {profile_file} is not the JSON of `pyc run "
                           f"--profile --json`: {exc}", where=str(profile_file),
                           hint="write it with `pyc run ARTIFACT --random-inputs 0 --profile "
                           "--json > FILE`") from exc
        cost.remember(cost.machine_key(setup.manifest.get("cpu")), key, found)
        return found
    if measure:
        found = measure_timings(setup, runs)
        cost.remember(cost.machine_key(setup.manifest.get("cpu")), key, found)
        return found
    return cost.stored_timings(key)


def measured_threads(manifest: dict[str, Any]) -> int:
    """The team a run of the artifact gets here (PYC_NUM_THREADS, else its --threads)."""
    import os

    env = os.environ.get("PYC_NUM_THREADS", "")
    threads = int(env) if env.isdigit() else int(manifest.get("flags", {}).get("threads", 0) or 0)
    return cost.effective_threads(threads)


def measure_timings(setup: Setup, runs: int = 20, threads: int | None = None) -> cost.Timings:
    """Profile the artifact (its kernels rebuilt with a clock read per call, in a temporary
    directory: the artifact itself is not rebuilt) and time plain runs, on seeded random inputs;
    at `threads` (PYC_NUM_THREADS, the run-time team size) where given."""
    import os

    from ..api import load
    from ..runtime.profile import profile_run
    from ..runtime.timing import RunPlan, fixed_team

    assert setup.artifact is not None and setup.manifest is not None and setup.graph is not None
    saved = os.environ.get("PYC_NUM_THREADS")
    if threads is not None:  # read when a model is created: the loads below take it
        os.environ["PYC_NUM_THREADS"] = str(threads)
    try:
        team = measured_threads(setup.manifest)
        with fixed_team():  # at the team size said, as the profile below runs
            model = load(setup.artifact)
        try:
            feeds = random_feeds(model)
            plain = model.time_runs(feeds, RunPlan(3, runs))
        finally:
            model.close()
        profile = profile_run(setup.artifact, setup.manifest, feeds, 3, runs)
    finally:
        if saved is None:
            os.environ.pop("PYC_NUM_THREADS", None)
        else:
            os.environ["PYC_NUM_THREADS"] = saved
    target = setup.target(setup.base)
    where = "measured now (--measure)" if threads is None else \
        f"measured now at {team} thread(s) (--measure, PYC_NUM_THREADS={threads})"
    return cost.timings_from_profile(profile.to_json(), setup.graph, target.name,
                                     dict(target.kernels), team, float(np.median(plain)), where)


def random_feeds(model: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs as `pyc run --random-inputs` draws them (floats N(0,1), integers
    within their recorded range)."""
    from ..input_ranges import random_integers

    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in model.inputs:
        if is_float_numpy(spec.dtype):
            feeds[spec.name] = rng.standard_normal(spec.shape).astype(spec.dtype)
        elif spec.dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, spec.shape).astype(np.bool_)
        else:
            found = (model.input_ranges or {}).get(spec.name)
            feeds[spec.name] = random_integers(rng, found, spec.shape, spec.dtype)
    return feeds


def calibration_for(setup: Setup, timings: cost.Timings | None) -> cost.Calibration:
    """The artifact's own ratios where measured, the machine's stored ones beneath them."""
    machine = cost.machine_key((setup.manifest or {}).get("cpu") or _cpu_record(setup))
    stored = cost.machine_calibration(machine)
    if timings is None:
        return stored
    return cost.calibrate(timings, "this artifact's profile").merged(stored)


def _cpu_record(setup: Setup) -> dict[str, Any]:
    try:
        return setup.target(setup.base).cpu_record()  # type: ignore[attr-defined, no-any-return]
    except (PycError, AttributeError):
        return {}
