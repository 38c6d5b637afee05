"""The simulator's latency model: each kernel call's time, from the best evidence there is.

For every compiled node of a plan (views cost nothing), in this order:
1. `profile`: the artifact's own per-call timing (`pyc run --profile`, or `--measure`) of the
   same node running the same kernel on the same work (kernel signature: shapes, attributes,
   fused programs);
2. `profile (same work)`: another node of the profile with that kernel and signature;
3. `tuning database`: the time `pyc build --tune` measured for that signature and candidate;
4. `profile x cost ratio`: the node itself (or the node a channel slice was cut from) was
   timed running another kernel: that time times the ratio of the two candidates' cost
   estimates (the ratio kernel selection ranks them by);
5. `cost model`: the candidate's cost estimate (targets/kernel.KernelCandidate.cost: flops
   times its factor and shape-dependent scale) times a calibration ratio in ms per cost unit:
   the kernel's own ratio where the profile or the machine's calibration store has it, else the
   op's, else the machine's overall one, else a default.
Times are normalised to one thread with an Amdahl model per call (a call's parallel share
grows with its size: a few-microsecond call gains nothing from a team), then scaled to the
alternative's threads. The sum is multiplied by the profile's run-to-calls ratio (a plain
run's p50 over the profiled calls' sum: the clock reads of the profile, the run's own overhead).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import replace_text
from ..ir.graph import Graph, Node
from ..templating import templates_dir
from .tuning import kernel_signature, signature_key

# ms per cost unit when nothing was measured on this machine (about 20 GFLOP/s of the cost
# model's flop-equivalents: a mid-size AVX2 kernel on one core)
DEFAULT_MS_PER_COST = 5e-8
CALL_OVERHEAD_MS = 0.0003  # a kernel call's fixed cost (call, loop set-up), one thread
# the parallel share of a call of `w` ms on one thread: PARALLEL_MAX * w / (w + PARALLEL_HALF_MS);
# a team's fork and join cost TEAM_MS per call where more than one thread runs
PARALLEL_MAX = 0.95
PARALLEL_HALF_MS = 0.02
TEAM_MS = 0.0005
# on a loaded machine (more threads than free cores) a parallel call waits at its barrier for a
# partner the OS descheduled: a dynamically scheduled loop (guided) hands the partner's share to
# the thread that runs, and waits little; a statically scheduled one (the streaming GEMMs)
# waits until the partner runs its share, about a scheduler time slice (measured here: 3 to 16
# ms per call with the 1-minute load at 4-5x the cores)
CONTENDED_MS = 0.002
STATIC_WAIT_MS = 5.0
STORE_FORMAT = "pyc-whatif-calibration"
STORE_ENV = "PYC_WHATIF_CALIBRATION"


@dataclass(frozen=True)
class CallTiming:
    """One measured kernel call: node, kernel, its kernel signature key, median ms."""

    node: str
    op: str
    kernel: str
    signature: str
    median_ms: float
    cost: float  # the cost model's estimate for it (what calibration divides by)
    intensity: float = 0.0  # flops per byte of its operands and results (work_intensity)


@dataclass(frozen=True)
class Timings:
    """Per-kernel timings of one artifact at `threads` effective threads, and the ratio of a
    plain run's p50 to the profiled calls' sum."""

    calls: tuple[CallTiming, ...]
    threads: int
    run_ratio: float = 1.0
    latency_ms: float | None = None  # a plain run's p50, when measured
    source: str = "profile"

    def to_json(self) -> dict[str, Any]:
        return {"threads": self.threads, "run_ratio": self.run_ratio,
                "latency_ms": self.latency_ms, "source": self.source,
                "calls": [vars(c) for c in self.calls]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Timings:
        return cls(tuple(CallTiming(**c) for c in data["calls"]), int(data["threads"]),
                   float(data.get("run_ratio", 1.0)), data.get("latency_ms"),
                   str(data.get("source", "profile")))


# a measured ratio calibrates another call only where the two are alike: their distance is
# sqrt(ln(cost ratio)^2 + ln(intensity ratio)^2) (a kernel's efficiency depends on its size and
# on its flops per byte: a 3-channel first conv says little about a 64-channel body conv).
# Within REACH a kernel's or op's samples calibrate a call; within CLOSE (work very like the
# call's) the kernel's own samples are preferred to the node's time on another kernel
REACH = math.log(16.0)
CLOSE = math.log(4.0)
NEAREST = 3  # the ratio is the median of the nearest samples


Sample = tuple[float, float, float]  # (cost, intensity, ms per cost unit at one thread)


@dataclass(frozen=True)
class Calibration:
    """Measured ms per cost unit at one thread, as (cost, intensity, ratio) samples by kernel
    and by op, and overall (summed time over summed cost); `basis` says where they come from."""

    kernels: dict[str, list[Sample]] = field(default_factory=dict)
    ops: dict[str, list[Sample]] = field(default_factory=dict)
    overall: float | None = None
    basis: str = "default"

    def ratio(self, kernel: str, op: str, size: float = 0.0, intensity: float = 0.0
              ) -> tuple[float, str]:
        """The ratio for a call of `kernel` (an `op`) costing `size` at `intensity`: the
        kernel's samples of like work, else the op's, else the kernel's or op's nearest, else
        overall, else the default."""
        for table, name, reach in ((self.kernels, kernel, REACH), (self.ops, op, REACH),
                                   (self.kernels, kernel, math.inf), (self.ops, op, math.inf)):
            found = _nearest(table.get(name, []), size, intensity, reach)
            if found is not None:
                near = "" if reach != math.inf else ", nearest work"
                return found, f"{name}'s calibration ({self.basis}{near})"
        if self.overall is not None:
            return self.overall, f"overall calibration ({self.basis})"
        return DEFAULT_MS_PER_COST, "uncalibrated default"

    def close(self, kernel: str, size: float, intensity: float) -> float | None:
        """The kernel's own ratio from samples of work very like this call's (None: none)."""
        return _nearest(self.kernels.get(kernel, []), size, intensity, CLOSE)

    def merged(self, fallback: Calibration) -> Calibration:
        """This calibration, with `fallback`'s samples where this one has none for a name."""
        return Calibration({**fallback.kernels, **self.kernels}, {**fallback.ops, **self.ops},
                           self.overall if self.overall is not None else fallback.overall,
                           self.basis if self.kernels or self.overall is not None
                           else fallback.basis)


def _distance(a: float, b: float) -> float:
    return abs(math.log(max(a, 1e-12) / max(b, 1e-12))) if a > 0 and b > 0 else 0.0


def _nearest(samples: list[Sample], size: float, intensity: float, reach: float
             ) -> float | None:
    """The median ratio of the NEAREST samples within `reach` of (size, intensity)."""
    if not samples:
        return None
    if size <= 0:
        return statistics.median(r for _, _, r in samples)
    distance = [(math.hypot(_distance(c, size), _distance(i, intensity)), r)
                for c, i, r in samples]
    near = sorted(d for d in distance if d[0] <= reach)
    if not near:
        return None
    return statistics.median(r for _, r in near[:NEAREST])


@dataclass(frozen=True)
class NodeTime:
    node: str
    op: str
    kernel: str
    ms: float
    basis: str

    def to_json(self) -> dict[str, Any]:
        return vars(self).copy()


@dataclass(frozen=True)
class LatencyPrediction:
    ms: float
    nodes: tuple[NodeTime, ...]
    threads: int
    run_ratio: float

    def bases(self) -> dict[str, float]:
        """The share of the predicted time resting on each kind of evidence."""
        total = sum(n.ms for n in self.nodes) or 1.0
        shares: dict[str, float] = {}
        for node in self.nodes:
            kind = node.basis.split(":")[0]
            shares[kind] = shares.get(kind, 0.0) + node.ms / total
        return dict(sorted(shares.items(), key=lambda kv: -kv[1]))

    def uncalibrated_share(self) -> float:
        """The share of the predicted time resting on the default ms-per-cost ratio (nothing
        measured on this machine)."""
        total = sum(n.ms for n in self.nodes) or 1.0
        return sum(n.ms for n in self.nodes if "uncalibrated default" in n.basis) / total

    def to_json(self) -> dict[str, Any]:
        return {"latency_ms": self.ms if math.isfinite(self.ms) else None,
                "threads": self.threads, "run_ratio": self.run_ratio,
                "bases": self.bases(), "nodes": [n.to_json() for n in self.nodes]}


def effective_threads(threads: int) -> int:
    """The team a run gets: `threads` (0: every core), at most the cores this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    return cores if threads <= 0 else min(threads, cores)


def available_cores() -> int:
    """The cores a team would find free now: those this process may use, less the load other
    work puts on them (the 1-minute load average, less one for the caller itself), at least 1."""
    cores = effective_threads(0)
    try:
        others = max(0.0, os.getloadavg()[0] - 1.0)
    except (OSError, AttributeError):
        return cores
    return max(1, min(cores, round(cores - others)))


def speedup(one_thread_ms: float, threads: int) -> float:
    """Amdahl's speed-up of a call taking `one_thread_ms` on one thread, on `threads` threads."""
    if threads <= 1:
        return 1.0
    share = PARALLEL_MAX * one_thread_ms / (one_thread_ms + PARALLEL_HALF_MS)
    return 1.0 / ((1.0 - share) + share / threads)


def at_threads(one_thread_ms: float, threads: int) -> float:
    """A call's time on `threads` threads, given its time on one."""
    if threads <= 1:
        return one_thread_ms
    return one_thread_ms / speedup(one_thread_ms, threads) + TEAM_MS


def to_one_thread(ms: float, threads: int) -> float:
    """Invert at_threads: the one-thread time of a call measured at `ms` on `threads` threads
    (bisection: at_threads grows with its argument)."""
    if threads <= 1:
        return ms
    lo, hi = 0.0, ms * threads + 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if at_threads(mid, threads) < ms:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def node_cost(node: Node, graph: Graph, kernels: dict[str, Any]) -> float:
    """The chosen candidate's cost estimate (0 for views and nodes without a candidate)."""
    if node.ann.kernel is None or node.ann.kernel.is_alias:
        return 0.0
    table = {c.name: c for c in kernels.get(node.op, ())}
    candidate = table.get(node.ann.kernel_name)
    return 0.0 if candidate is None else float(candidate.cost(node, graph))


def work_intensity(node: Node, graph: Graph) -> float:
    """Flops (the op's estimate) per byte of the node's operands and results: the roofline's
    arithmetic intensity, which with the size decides how near its peak a kernel runs."""
    from ..ops import registry

    try:
        flops = float(int(registry.get(node.op).flops(node, graph)))
        moved = sum(int(graph.types[name].nbytes) for name in (*node.inputs, *node.outputs)
                    if name and name in graph.types)
    except (KeyError, TypeError, ValueError):
        return 0.0
    return flops / moved if moved else 0.0


def calibrate(timings: Timings, basis: str) -> Calibration:
    """ms per cost unit at one thread from measured calls: per kernel and per op the median of
    the calls' ratios, overall the summed time over the summed cost."""
    by_kernel: dict[str, list[Sample]] = {}
    by_op: dict[str, list[Sample]] = {}
    total_ms = total_cost = 0.0
    for call in timings.calls:
        if call.cost <= 0:
            continue
        one = max(to_one_thread(call.median_ms, timings.threads) - CALL_OVERHEAD_MS, 0.0)
        sample = (call.cost, call.intensity, one / call.cost)
        by_kernel.setdefault(call.kernel, []).append(sample)
        by_op.setdefault(call.op, []).append(sample)
        total_ms += one
        total_cost += call.cost
    return Calibration(dict(sorted(by_kernel.items())), dict(sorted(by_op.items())),
                       total_ms / total_cost if total_cost else None, basis)


def predict(graph: Graph, target_name: str, kernels: dict[str, Any], threads: int,
            timings: Timings | None, tuning: Any, calibration: Calibration,
            static_kernels: frozenset[str] = frozenset(), loaded: bool = True
            ) -> LatencyPrediction:
    """The predicted latency of `graph` (a compiled plan) at `threads` (0: every core);
    `static_kernels` names the kernels whose parallel loops are statically scheduled; `loaded`
    counts the machine's present load (False: as if the cores were free, so that a build's
    prediction does not change with the load of the moment)."""
    team = effective_threads(threads)
    # on a loaded machine the team's extra threads wait for cores: no speed-up, and each
    # parallel call waits at its barrier for a partner the OS has descheduled
    usable = min(team, available_cores()) if loaded else team
    contended = team > usable
    measured_at = timings.threads if timings is not None else team
    if measured_at == team and timings is not None:  # timed at this team: the load is in it
        usable, contended = team, False
    by_node = {c.node: c for c in timings.calls} if timings is not None else {}
    by_work: dict[tuple[str, str], list[float]] = {}
    for call in timings.calls if timings is not None else ():
        by_work.setdefault((call.signature, call.kernel), []).append(call.median_ms)
    nodes = []
    for node in graph.nodes:
        if node.ann.kernel is None or node.ann.kernel.is_alias:
            continue
        kernel = node.ann.kernel_name or ""
        key = signature_key(kernel_signature(node, graph, target_name))
        one, basis = _one_thread_ms(node, graph, kernel, key, by_node, by_work, measured_at,
                                    tuning, kernels, calibration)
        wait = 0.0
        if contended and one > 0.001:
            wait = STATIC_WAIT_MS if kernel in static_kernels else CONTENDED_MS
            basis += "; a descheduled partner thread waited for"
        nodes.append(NodeTime(node.name, node.op, kernel, at_threads(one, usable) + wait, basis))
    ratio = timings.run_ratio if timings is not None else 1.0
    return LatencyPrediction(sum(n.ms for n in nodes) * ratio, tuple(nodes), team, ratio)


def _one_thread_ms(node: Node, graph: Graph, kernel: str, key: str,
                   by_node: dict[str, CallTiming], by_work: dict[tuple[str, str], list[float]],
                   measured_at: int, tuning: Any, kernels: dict[str, Any],
                   calibration: Calibration) -> tuple[float, str]:
    own = by_node.get(node.name)
    if own is not None and own.kernel == kernel and own.signature == key:
        return to_one_thread(own.median_ms, measured_at), "profile"
    same = by_work.get((key, kernel))
    if same:
        return to_one_thread(statistics.median(same), measured_at), "profile: same work"
    tuned = _tuned_ms(node, kernel, key, tuning)
    if tuned is not None:  # timed at the build's threads, as the profile
        return to_one_thread(tuned, measured_at), "tuning database"
    cost = node_cost(node, graph, kernels)
    intensity = work_intensity(node, graph)
    close = calibration.close(kernel, cost, intensity)
    if close is not None:  # this kernel was timed on work very like this call's
        return close * cost + CALL_OVERHEAD_MS, \
            f"cost model: {kernel}'s calibration ({calibration.basis}, like work)"
    # the node itself (or the node a channel slice was cut from) was timed with another kernel
    # or on other work: its time, scaled by the cost model's ratio of the two (what kernel
    # selection ranks candidates by), keeps what the profile saw of this node's shapes
    anchor = by_node.get(node.ann.tiled_from or node.name)
    if anchor is not None and anchor.cost > 0 and cost > 0:
        measured = max(to_one_thread(anchor.median_ms, measured_at) - CALL_OVERHEAD_MS, 0.0)
        return (measured * cost / anchor.cost + CALL_OVERHEAD_MS,
                f"profile x cost ratio: {anchor.node} ran {anchor.kernel}")
    ratio, where = calibration.ratio(kernel, node.op, cost, intensity)
    return ratio * cost + CALL_OVERHEAD_MS, f"cost model: {where}"


def _tuned_ms(node: Node, kernel: str, key: str, tuning: Any) -> float | None:
    entries = getattr(tuning, "entries", None)
    entry = entries.get(key) if isinstance(entries, dict) else None
    if entry is None:
        return None
    params = dict(node.ann.kernel.params) if node.ann.kernel is not None else {}
    for measurement in entry.measured:
        if measurement.candidate == kernel and dict(measurement.params) == params and \
                measurement.status == "ok" and measurement.median_ms is not None:
            return float(measurement.median_ms)
    return None


def timings_from_profile(profile: dict[str, Any], graph: Graph, target_name: str,
                         kernels: dict[str, Any], threads: int,
                         latency_ms: float | None, source: str) -> Timings:
    """Timings from a `pyc run --profile --json` profile (its `calls`) of the artifact whose
    compiled graph is `graph`, measured at `threads` effective threads."""
    nodes = {n.name: n for n in graph.nodes}
    calls = []
    for call in profile["calls"]:
        node = nodes.get(call["node"])
        if node is None:
            continue
        key = signature_key(kernel_signature(node, graph, target_name))
        calls.append(CallTiming(node.name, node.op, call["kernel"], key,
                                float(call["median_ms"]), node_cost(node, graph, kernels),
                                work_intensity(node, graph)))
    # the prediction sums per-call medians: the run ratio is the plain run's p50 over that sum
    # (not over the profile's median run, a slightly different number)
    total = sum(c.median_ms for c in calls)
    ratio = latency_ms / total if latency_ms and total else 1.0
    return Timings(tuple(calls), threads, ratio, latency_ms, source)


# -- the machine's calibration store: ratios from every profile taken on this machine, and the
# last timings of each artifact measured (keyed by the artifact's file hashes)


def store_path() -> Path:
    explicit = os.environ.get(STORE_ENV, "")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(cache) if cache else Path.home() / ".cache") / "pyc" / "whatif.json"


def artifact_key(manifest: dict[str, Any]) -> str:
    """An artifact's identity: a hash of its files' hashes."""
    text = json.dumps(manifest.get("files", {}), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def machine_key(cpu: dict[str, Any] | None) -> str:
    cpu = cpu or {}
    return f"{cpu.get('arch', '?')}:{cpu.get('resolved_march', cpu.get('march', '?'))}"


def read_store(path: Path | None = None) -> dict[str, Any]:
    path = path or store_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"format": STORE_FORMAT, "machines": {}, "artifacts": {}}
    if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
        return {"format": STORE_FORMAT, "machines": {}, "artifacts": {}}
    data.setdefault("machines", {})
    data.setdefault("artifacts", {})
    return data


def machine_calibration(machine: str, path: Path | None = None) -> Calibration:
    entry = read_store(path)["machines"].get(machine)
    if not isinstance(entry, dict):
        return Calibration()
    try:
        kernels = {k: [(float(c), float(i), float(r)) for c, i, r in v]
                   for k, v in entry["kernels"].items()}
        ops = {k: [(float(c), float(i), float(r)) for c, i, r in v]
               for k, v in entry["ops"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return Calibration()  # an older or damaged store: as if empty
    return Calibration(kernels, ops, entry.get("overall"), "this machine's earlier profiles")


def calibration_digest(cpu: dict[str, Any] | None, path: Path | None = None) -> str:
    """A digest of this machine's calibration in the store (what a build's latency prediction
    reads): the build cache keys a build with a latency clause on it."""
    entry = read_store(path)["machines"].get(machine_key(cpu), {})
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:24]


def stored_timings(key: str, path: Path | None = None) -> Timings | None:
    entry = read_store(path)["artifacts"].get(key)
    try:
        return Timings.from_json(entry) if isinstance(entry, dict) else None
    except (KeyError, TypeError, ValueError):
        return None


def remember(machine: str, key: str, timings: Timings, path: Path | None = None) -> None:
    """Keep `timings` for the artifact `key` and fold their ratios into the machine's (a new
    kernel's ratio replaces the old one: the latest profile is the machine as it is now)."""
    path = path or store_path()
    data = read_store(path)
    fresh = calibrate(timings, "this machine's earlier profiles")
    old = data["machines"].get(machine, {})
    data["machines"][machine] = {
        "kernels": _fold(old.get("kernels", {}), fresh.kernels),
        "ops": _fold(old.get("ops", {}), fresh.ops),
        "overall": fresh.overall if fresh.overall is not None else old.get("overall")}
    data["artifacts"][key] = timings.to_json()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_text(path, json.dumps(data, sort_keys=True, indent=1))
    except OSError:
        pass  # a cache: a prediction never fails for want of it


STORE_SAMPLES = 64  # the latest samples kept per kernel and op


def _fold(old: dict[str, Any], fresh: dict[str, list[Sample]]) -> dict[str, list[Sample]]:
    """The store's samples with the fresh ones after them (the latest STORE_SAMPLES kept): a
    sample of the same size as a fresh one is replaced (the machine as it is now)."""
    merged: dict[str, list[Sample]] = {}
    for name in sorted(set(old) | set(fresh)):
        new = list(fresh.get(name, []))
        sizes = {(round(c, 3), round(i, 3)) for c, i, _ in new}
        try:
            kept = [(float(c), float(i), float(r)) for c, i, r in old.get(name, [])
                    if (round(float(c), 3), round(float(i), 3)) not in sizes]
        except (TypeError, ValueError):
            kept = []  # an older store's samples: dropped
        merged[name] = (kept + new)[-STORE_SAMPLES:]
    return merged


_STATIC: dict[str, frozenset[str]] = {}


def static_kernels(target: Any) -> frozenset[str]:
    """The target's candidates whose template may schedule a parallel loop statically (a
    partner thread's share waits for it: STATIC_WAIT_MS on a loaded machine)."""
    if target.name not in _STATIC:
        found = set()
        for candidates in target.kernels.values():
            for candidate in candidates:
                path = templates_dir() / target.template_subdir / "kernels" / candidate.template
                text = path.read_text(encoding="utf-8") if path.is_file() else ""
                if "PARALLEL_FOR_STATIC" in text or "PARALLEL_FOR{{ '_STATIC'" in text:
                    found.add(candidate.name)
        _STATIC[target.name] = frozenset(found)
    return _STATIC[target.name]


def predict_build(graph: Graph, target: Any, threads: int, cpu: dict[str, Any] | None,
                  tuning: Any) -> LatencyPrediction:
    """A plan's latency as the build can predict it: no timings of its own yet, so the tuning
    database's and this machine's calibration store's (earlier profiles: `pyc explain
    --what-if ... --measure`) beneath the cost model; the load of the moment left out."""
    calibration = machine_calibration(machine_key(cpu))
    return predict(graph, target.name, dict(target.kernels), threads, None, tuning,
                   calibration, static_kernels(target), loaded=False)
