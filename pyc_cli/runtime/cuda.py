"""Running a CUDA artifact through the CUDA driver API (cuda-python's driver bindings).

At load, after the manifest's hashes are checked: the driver is initialised (no driver or no
GPU: PYC-E037), the GPU's architecture is checked against the CUBIN's (a PTX fallback only on a
driver new enough for its ISA), the primary context of the device is retained, the CUBIN is
loaded, one device arena of the memory plan's size, the weights (uploaded once), one buffer per
input and output, pinned host staging and one non-blocking stream are allocated, and every launch's
argument array is built once. A run copies the inputs in, launches the kernels in schedule
order, copies the outputs out and synchronises; every driver call's status is checked
(PYC-E038 naming the call). Runs of one model are serialised (one arena).

CUDA graphs: at load, the device part of a run (the status word reset, the input copies from
pinned staging, every kernel launch in schedule order, the output and status copies back) is
captured once from the model's stream into a CUDA graph and instantiated; every run then
replays it with one cuGraphLaunch instead of a driver call per kernel. The graph holds
addresses, never values: the inputs staged before a replay are the ones it reads, and poison()
between runs is seen by it. PYC_CUDA_GRAPHS=0 runs the same sequence call by call instead (for
debugging); `model.stats.execution` says which ran ("cuda_graph" or "cuda_stream").

Run-time Ifs (launches.json's "conditions" and each guarded launch's "when"; docs/cuda.md): as
onnxruntime's CUDA execution provider does, the host decides. A run is split into segments
(Segment): the launches up to the first whose guard needs a condition not read yet, whose byte
the segment then copies to pinned host memory; the host waits for it, and the next segment
holds the taken branch's launches and what follows, up to the next decision (a nested If) or
the end. With graphs each segment is its own CUDA graph, captured the first time a run takes
it; a model without a run-time If is one segment, one graph, as above. Taking an unreachable
branch launches its trap (status PYC_STATUS_BRANCH_NOT_COMPILED: PYC-E053) and ends the run.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact.reader import verify_files
from ..errors import PycError
from ..ir.symbolic import Dim, DimBounds, DimLike, check_within, parse_dim
from ..targets.cuda import bindings
from ..targets.cuda.kernel_context import SPACES
from . import tensor_maps
from .native import STATUS_INDEX_OUT_OF_RANGE, STATUS_SHAPE_OUT_OF_BOUNDS, CompiledModel, RunDims, TensorSpec
from .stats import RunStats
from .timing import RunPlan, time_calls

LAUNCH_FORMAT = 1
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
NAN_BITS = 0x7FC00000  # a quiet float32 NaN: what poison() fills buffers with
STREAM_NON_BLOCKING = 1  # CU_STREAM_NON_BLOCKING: no implicit synchronisation with stream 0
GRAPHS_ENV = "PYC_CUDA_GRAPHS"  # 0 / false / no / off: launch kernel by kernel (debugging)
# 1 / true / yes / on: launch kernels after the first as programmatic dependents where the
# plan allows it (sm_90 builds). Off by default: measured on an H100 (7 Dec 2026,
# benchmarks/results/cuda-launch-ab-h100-2026-12-07.json) with each kernel letting the next
# start before its own wait, it was 1.2-1.5x slower on the encoder, ResNet-50 and the fp32
# encoder (outputs bitwise the same, GPU tests passed); the kernels now wait first
PROGRAMMATIC_ENV = "PYC_CUDA_PROGRAMMATIC"
GRAPH_EXECUTION, STREAM_EXECUTION = "cuda_graph", "cuda_stream"
# where a run-time If's condition byte may lie (launches.json's conditions)
CONDITION_SPACES = ("input", "output", "weights", "arena")
# dynamic shared memory a kernel gets without asking (cuFuncSetAttribute raises it, up to the
# device's opt-in limit: 163 KiB on sm_80, 227 KiB on sm_90)
STATIC_SHARED_LIMIT = 48 * 1024


def _switched_on(name: str, default: str = "1") -> bool:
    return os.environ.get(name, default).strip().lower() not in ("0", "false", "no", "off")


def graphs_enabled() -> bool:
    """Whether runs replay a CUDA graph (the default) or launch call by call (PYC_CUDA_GRAPHS=0)."""
    return _switched_on(GRAPHS_ENV)


class Driver:
    """The driver bindings with every call's status checked (PYC-E038 names the call)."""

    def __init__(self) -> None:
        self.cu = bindings.driver()

    def __call__(self, name: str, *args: Any) -> Any:
        result = getattr(self.cu, name)(*args)
        status, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(status) != 0:
            raise self.failure(name, status)
        return values[0] if len(values) == 1 else values

    def failure(self, name: str, status: Any) -> PycError:
        hint = "check the GPU with nvidia-smi; rerun with --debug and report this"
        if "Graph" in name or "Capture" in name:
            hint += f"; {GRAPHS_ENV}=0 runs without CUDA graphs"
        return PycError("E038", f"the CUDA driver call {name} failed: {self.error_name(status)}",
                        hint=hint)

    def error_name(self, status: Any) -> str:
        try:
            err, text = self.cu.cuGetErrorName(status)
            return text.decode() if int(err) == 0 else str(status)
        except Exception:  # noqa: BLE001 (describing an error must not raise another)
            return str(status)


def init_driver(where: str) -> Driver:
    """The driver, initialised, with at least one GPU (PYC-E037 otherwise)."""
    driver = Driver()
    hint = ("run it on a machine with an NVIDIA GPU and driver, or rebuild the model for this "
            "machine with `pyc build --target cpu`")
    try:
        status = driver.cu.cuInit(0)
        status = status[0] if isinstance(status, tuple) else status
    except Exception as error:  # noqa: BLE001 (pathfinder raises its own error when libcuda is absent)
        raise PycError("E037", f"this is a CUDA artifact and no NVIDIA driver was found ({error})",
                       where=where, hint=hint) from None
    if int(status) != 0:
        raise PycError("E037", "this is a CUDA artifact and the CUDA driver cannot start: "
                       f"{driver.error_name(status)}", where=where, hint=hint)
    if driver("cuDeviceGetCount") < 1:
        raise PycError("E037", "this is a CUDA artifact and the CUDA driver sees no GPU",
                       where=where, hint=hint)
    return driver


def gpu_identity(where: str) -> dict[str, Any]:
    """The GPU that `pyc build --target cuda --tune` times kernels on (device 0): its name,
    compute capability and the driver's CUDA version, as the tuning database keys its entries
    (PYC-E037 without a driver or GPU)."""
    driver = init_driver(where)
    device = driver("cuDeviceGet", 0)
    attribute = driver.cu.CUdevice_attribute
    major = driver("cuDeviceGetAttribute",
                   attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
    minor = driver("cuDeviceGetAttribute",
                   attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
    version = driver("cuDriverGetVersion")
    name = driver("cuDeviceGetName", 256, device).split(b"\0")[0].decode(errors="replace")
    return {"gpu": name, "sm": f"sm_{major}{minor}",
            "driver": f"{version // 1000}.{version % 1000 // 10}"}


def _version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def choose_image(driver: Driver, device: Any, record: dict[str, Any], where: str) -> str:
    """'cubin' when the GPU runs the CUBIN's architecture (same major, minor at least the
    CUBIN's), 'ptx' when the driver can JIT the PTX for it instead; PYC-E037 otherwise."""
    attribute = driver.cu.CUdevice_attribute
    major = driver("cuDeviceGetAttribute",
                   attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
    minor = driver("cuDeviceGetAttribute",
                   attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
    built = record["arch"].removeprefix("sm_")
    built_major, built_minor = int(built[:-1]), int(built[-1])
    if record.get("cubin_arch"):  # sm_90a (wgmma): that GPU only, and its PTX no other
        if (major, minor) == (built_major, built_minor):
            return "cubin"
        raise PycError("E037", f"the artifact's CUBIN is for {record['cubin_arch']} (Hopper's "
                       f"wgmma), which runs on sm_{built} only; this GPU is sm_{major}{minor}",
                       where=where, hint=f"rebuild with `pyc build --target cuda --arch sm_{major}{minor}`")
    if major == built_major and minor >= built_minor:
        return "cubin"
    version = driver("cuDriverGetVersion")  # e.g. 13000 for CUDA 13.0
    have = (version // 1000, version % 1000 // 10)
    needs = record["ptx_min_driver"]
    if (major, minor) > (built_major, built_minor) and needs and have >= _version_tuple(needs):
        return "ptx"
    why = (f"its driver supports CUDA {have[0]}.{have[1]}, and the PTX needs {needs}"
           if (major, minor) > (built_major, built_minor) else "the PTX cannot run on an older GPU")
    raise PycError("E037", f"the artifact's CUBIN is for {record['arch']}, this GPU is "
                   f"sm_{major}{minor}, and {why}", where=where,
                   hint=f"rebuild with `pyc build --target cuda --arch sm_{major}{minor}`")


@dataclass(frozen=True)
class LaunchPlan:
    """What launches.json tells the runtime: the launches in schedule order, the bytes of the
    status words (the status word, then kernels' counters), the TMA tensor maps to encode
    (runtime/tensor_maps.py), and whether kernels after the first may be launched as
    programmatic dependents (each of them waits for the previous grid: sm_90 builds)."""

    launches: list[dict[str, Any]]
    status_bytes: int = 4
    tensor_maps: list[dict[str, Any]] = field(default_factory=list)
    programmatic: bool = False
    # run-time Ifs: the condition bytes ({value, at: [space, offset or index]}) that launches'
    # guards ("when") test, read on the host where a launch first needs one
    conditions: list[dict[str, Any]] = field(default_factory=list)
    # sizes known at run time only: {at: byte offset in the status allocation, count, values:
    # [[dim, input, element, lo, hi]] read from input data}: the model's dims (int64 each, the
    # manifest's order), set before a run, read back after it
    dims: dict[str, Any] | None = None


def read_launches(root: Path, manifest: dict[str, Any]) -> LaunchPlan:
    """The launch plan, checked: known kernels' names, grid and block sizes CUDA accepts, and
    arguments inside the model's inputs, outputs, weights, arena, status words and TMA tensor
    maps (PYC-E030 otherwise)."""
    path = root / manifest["cuda"]["launches"]
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PycError("E030", f"cannot read the launch plan: {error}", where=str(path),
                       hint="rebuild the artifact") from None
    problem = _plan_problem(plan, manifest)
    if problem:
        raise PycError("E030", f"the launch plan is malformed: {problem}", where=str(path),
                       hint="rebuild the artifact")
    return LaunchPlan(plan["launches"], plan.get("status_bytes", 4), plan.get("tensor_maps", []),
                      plan.get("programmatic", False), plan.get("conditions", []),
                      plan.get("dims"))


def _plan_problem(plan: Any, manifest: dict[str, Any]) -> str:
    if not isinstance(plan, dict) or plan.get("format") != LAUNCH_FORMAT:
        return f"not a launch plan of format {LAUNCH_FORMAT}"
    if plan.get("arena_bytes") != manifest["arena_bytes"] or \
            plan.get("weights_bytes") != manifest["weights"]["bytes"]:
        return "its arena or weights size differs from the manifest's"
    status_bytes = plan.get("status_bytes", 4)
    if type(status_bytes) is not int or not 4 <= status_bytes <= 2**30 or status_bytes % 4:
        return "its status_bytes is not a whole number of words"
    if type(plan.get("programmatic", False)) is not bool:
        return "its programmatic flag is not a boolean"
    problem = _dims_problem(plan.get("dims"), len(manifest.get("dims", [])), status_bytes,
                            len(manifest["inputs"]))
    if problem:
        return problem
    maps = plan.get("tensor_maps", [])
    if not isinstance(maps, list) or len(maps) > tensor_maps.MAX_MAPS:
        return "its tensor_maps is not a list"
    buffers: dict[str, list[int] | int] = {} if not maps else {
        "input": [_nbytes(TensorSpec.from_manifest(e)) for e in manifest["inputs"]],
        "output": [_nbytes(TensorSpec.from_manifest(e)) for e in manifest["outputs"]],
        "weights": manifest["weights"]["bytes"], "arena": manifest["arena_bytes"]}
    for entry in maps:
        problem = tensor_maps.map_problem(entry, buffers)
        if problem:
            return problem
    limits = {"input": len(manifest["inputs"]), "output": len(manifest["outputs"]),
              "weights": max(1, manifest["weights"]["bytes"]),
              "arena": max(1, manifest["arena_bytes"]), "status": status_bytes,
              "tensormap": len(maps)}
    conditions = plan.get("conditions", [])
    if not isinstance(conditions, list):
        return "its conditions is not a list"
    for condition in conditions:
        at = condition.get("at") if isinstance(condition, dict) else None
        if not (isinstance(at, list) and len(at) == 2 and at[0] in CONDITION_SPACES
                and type(at[1]) is int and 0 <= at[1] < limits[at[0]]):
            return f"a condition lies outside the model's buffers: {condition!r}"
    launches = plan.get("launches")
    if not isinstance(launches, list):
        return "launches is not a list"
    for index, launch in enumerate(launches):
        if not isinstance(launch, dict) or not _NAME.fullmatch(str(launch.get("kernel", ""))):
            return f"launch {index} names no valid kernel"
        for key, largest in (("grid", 2**31 - 1), ("block", 1024)):
            dims = launch.get(key)
            if not (isinstance(dims, list) and len(dims) == 3
                    and all(type(d) is int and 1 <= d <= largest for d in dims)):
                return f"launch {index} has an invalid {key}"
        if type(launch.get("shared_bytes")) is not int or not 0 <= launch["shared_bytes"] <= 227 * 1024:
            return f"launch {index} has an invalid shared_bytes"
        if _guard_problem(launch.get("when"), len(conditions)) or \
                type(launch.get("stops", False)) is not bool:
            return f"launch {index} has an invalid guard"
        args = launch.get("args")
        if not isinstance(args, list):
            return f"launch {index} has no argument list"
        for arg in args:
            if not (isinstance(arg, list) and len(arg) == 2 and arg[0] in SPACES
                    and type(arg[1]) is int and 0 <= arg[1] < limits[arg[0]]):
                return f"launch {index} has an argument outside the model's buffers: {arg!r}"
    return ""


# what the entry steps compute or check before the first kernel (symbolic.EntryStep)
ENTRY_KINDS = ("dim", "bcast", "equal", "broadcast")


def _dims_problem(dims: Any, count: int, status_bytes: int, inputs: int) -> str:
    """Whether the plan's dims region is malformed: present exactly where the manifest lists
    dims, one int64 each, 8-byte aligned after the status word, inside the status allocation;
    its value dims each a dim read from an element of an input (checked against the input's
    size when a run reads it)."""
    if dims is None:
        return "the manifest lists dims and the plan has no place for them" if count else ""
    if not (isinstance(dims, dict) and type(dims.get("at")) is int
            and type(dims.get("count")) is int):
        return "its dims is not {at, count}"
    at = dims["at"]
    if dims["count"] != count or at < 4 or at % 8 or at + 8 * count > status_bytes:
        return "its dims region does not hold the manifest's dims inside the status words"
    entry = dims.get("entry", [])
    if not isinstance(entry, list) or not all(
            isinstance(e, list) and len(e) == 5 and e[0] in ENTRY_KINDS
            and isinstance(e[1], str) and isinstance(e[2], str) and type(e[3]) is int
            and -1 <= e[3] < count and type(e[4]) is int for e in entry):
        return "its entry steps are not [kind, left, right, dim, bound] within the model"
    values = dims.get("values", [])
    if not isinstance(values, list) or not all(
            isinstance(v, list) and len(v) == 5 and all(type(n) is int for n in v)
            and 0 <= v[0] < count and 0 <= v[1] < inputs and v[2] >= 0 and v[3] <= v[4]
            for v in values):
        return "its value dims are not [dim, input, element, lo, hi] within the model"
    return ""


HostStep = tuple[str, DimLike, DimLike, int, int]  # kind, left, right, dim, its upper bound


def entry_steps(plan_dims: dict[str, Any], bounds: dict[str, DimBounds]) -> list[HostStep]:
    """The launch plan's entry steps with their sides read back as dims over `bounds`."""
    return [(kind, parse_dim(left, bounds), parse_dim(right, bounds), k, hi)
            for kind, left, right, k, hi in plan_dims.get("entry", [])]


def start_dims(start: np.ndarray, names: list[str], values: list[list[int]],
               entry: list[HostStep], inputs: list[np.ndarray]) -> bool:
    """A run's starting dims in `start` (the upper bounds and the input dims already there), as
    the CPU entry point computes them (shaped_run.c.j2's run_with_dims): each value dim from
    its input's data, within its declared values, then each entry step in order (a Reshape's
    -1 or element count, a broadcast decided at entry). False where the run is refused (status
    PYC_STATUS_SHAPE_OUT_OF_BOUNDS: PYC-E041)."""
    for k, index, element, lo, hi in values:
        flat = inputs[index].reshape(-1)
        value = int(flat[element]) if element < flat.size else lo - 1
        if not lo <= value <= hi:
            return False
        start[k] = value
    env = {name: int(start[k]) for k, name in enumerate(names)}
    for kind, left, right, k, hi in entry:
        a, b = (int(d.evaluate(env)) if isinstance(d, Dim) else int(d) for d in (left, right))
        if (kind == "dim" and (b <= 0 or a % b or a // b > hi)
                or kind == "bcast" and a != b and 1 not in (a, b)
                or kind == "equal" and a != b or kind == "broadcast" and a not in (1, b)):
            return False
        if kind in ("dim", "bcast"):
            start[k] = env[names[k]] = a // b if kind == "dim" else (b if a == 1 else a)
    return True


def _guard_problem(when: Any, conditions: int) -> bool:
    """Whether a launch's guard is malformed: None (always) or terms of [condition, polarity]."""
    if when is None:
        return False
    return not isinstance(when, list) or not all(
        isinstance(term, list) and term and all(
            isinstance(literal, list) and len(literal) == 2 and type(literal[0]) is int
            and 0 <= literal[0] < conditions and type(literal[1]) is bool for literal in term)
        for term in when)


def guard_holds(when: list[list[list[Any]]] | None, known: dict[int, bool]) -> bool | None:
    """A launch's guard under the conditions read so far: True or False where they decide it,
    None where a condition it still needs is unread."""
    if when is None:
        return True
    undecided = False
    for term in when:
        values = [known.get(c) for c, _ in term]
        if any(v is not None and v != polarity for v, (_, polarity) in zip(values, term)):
            continue  # this term fails whatever the rest
        if all(v is not None for v in values):
            return True
        undecided = True
    return None if undecided else False


def unread(when: list[list[list[Any]]], known: dict[int, bool]) -> list[int]:
    """The conditions a guard still needs: those of its terms not already failed."""
    needed: set[int] = set()
    for term in when:
        if all(known.get(c, polarity) == polarity for c, polarity in term):
            needed.update(c for c, _ in term if c not in known)
    return sorted(needed)


@dataclass(frozen=True)
class Segment:
    """A run's stream work between two host decisions: from launch `start`, under the
    conditions `known` so far, the launches whose guards hold, up to the first launch whose
    guard needs an unread condition (`next`; `needs`: those conditions, copied to pinned host
    memory at the segment's end), the end of the plan, or a trap (`last`). The first segment
    also resets the status word and copies the inputs in; the last copies the outputs and the
    status word out. Without run-time Ifs a run is one segment: every launch."""

    start: int
    launches: tuple[int, ...]
    needs: tuple[int, ...] = ()
    next: int = 0
    last: bool = True
    first: bool = True

    @property
    def key(self) -> str:
        """Its graph's name: "run" for the first (a whole run where there is no If)."""
        return "run" if self.first else f"segment {self.start} {self.launches} {self.needs}"


def plan_segment(whens: list[Any], stops: list[bool], start: int, known: dict[int, bool]) -> Segment:
    """The segment from launch `start` under the conditions `known` (none: the run's first)."""
    chosen: list[int] = []
    first = not known  # every later segment follows a decision, which read a condition
    for index in range(start, len(whens)):
        holds = guard_holds(whens[index], known)
        if holds is None:
            return Segment(start, tuple(chosen), tuple(unread(whens[index], known)), index,
                           False, first)
        if holds:
            chosen.append(index)
            if stops[index]:  # an unreachable branch's trap: the run ends here (PYC-E053)
                break
    return Segment(start, tuple(chosen), first=first)


def load_cuda(root: Path, manifest: dict[str, Any], verified: bool = False) -> CudaModel:
    """api.load for a CUDA artifact: hashes first (unless the caller `verified` them), then the
    driver (see the module doc)."""
    if not verified:
        verify_files(root, manifest)  # before the CUBIN goes anywhere near the driver
    plan = read_launches(root, manifest)
    driver = init_driver(str(root))
    model = CudaModel(driver, root, manifest, plan)
    model.read_run_facts(root, manifest)
    return model


class _Buffers:
    """Device allocations of one model, freed together."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.device: list[int] = []
        self.host: list[int] = []

    def device_alloc(self, nbytes: int) -> int:
        pointer = int(self.driver("cuMemAlloc", max(4, nbytes)))  # never 0 bytes
        self.device.append(pointer)
        return pointer

    def pinned(self, nbytes: int) -> tuple[int, np.ndarray]:
        """Page-locked host memory (fast, asynchronous copies) and a byte view of it."""
        pointer = int(self.driver("cuMemAllocHost", max(4, nbytes)))
        self.host.append(pointer)
        view = np.ctypeslib.as_array((ctypes.c_uint8 * max(4, nbytes)).from_address(pointer))
        return pointer, view[:nbytes]

    def free(self) -> None:
        for pointer in self.device:
            self.driver.cu.cuMemFree(pointer)
        for pointer in self.host:
            self.driver.cu.cuMemFreeHost(pointer)
        self.device, self.host = [], []


class _Graph:
    """Stream work captured once into a CUDA graph and instantiated; launch() replays it."""

    def __init__(self, driver: Driver, stream: Any, enqueue: Callable[[], None]) -> None:
        self.driver = driver
        self.graph: Any = None
        self.instance: Any = None
        try:
            self._capture(stream, enqueue)
        except PycError as error:  # a launch failing while captured: say graphs can be off
            if GRAPHS_ENV in error.hint:
                raise
            raise PycError(error.code, error.what, where=error.where, hint=f"{error.hint}; "
                           f"{GRAPHS_ENV}=0 runs without CUDA graphs") from None

    def _capture(self, stream: Any, enqueue: Callable[[], None]) -> None:
        driver = self.driver
        mode = driver.cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        driver("cuStreamBeginCapture", stream, mode)
        try:
            enqueue()  # recorded, not run: the stream is capturing
        except BaseException:
            self._abandon(stream)
            raise
        self.graph = driver("cuStreamEndCapture", stream)
        try:
            self.instance = driver("cuGraphInstantiate", self.graph, 0)
        except BaseException:
            self.destroy()
            raise

    def _abandon(self, stream: Any) -> None:
        """End a capture that failed half-way: the stream leaves capture mode, and the partial
        graph (if the driver made one) is dropped."""
        result = self.driver.cu.cuStreamEndCapture(stream)
        if isinstance(result, tuple) and int(result[0]) == 0 and len(result) > 1 and result[1]:
            self.driver.cu.cuGraphDestroy(result[1])

    def launch(self, stream: Any) -> None:
        self.driver("cuGraphLaunch", self.instance, stream)

    def destroy(self) -> None:
        if self.instance is not None:
            self.driver.cu.cuGraphExecDestroy(self.instance)
            self.instance = None
        if self.graph is not None:
            self.driver.cu.cuGraphDestroy(self.graph)
            self.graph = None


class CudaModel(CompiledModel):
    """A loaded CUDA artifact with CompiledModel's interface (run(feeds), run(names, feeds),
    check_feeds, time_runs, close, with-blocks). Runs are serialised: the model has one arena
    on the device, so concurrent calls wait for each other rather than share it."""

    def __init__(self, driver: Driver, root: Path, manifest: dict[str, Any],
                 plan: LaunchPlan) -> None:
        self._status_bytes = plan.status_bytes
        self._tensor_map_plan = list(plan.tensor_maps)
        self._condition_plan = list(plan.conditions)
        self._whens = [launch.get("when") for launch in plan.launches]
        self._stops = [bool(launch.get("stops", False)) for launch in plan.launches]
        self._segments: dict[tuple[int, tuple[tuple[int, bool], ...]], Segment] = {}
        self._path: tuple[int, ...] = ()  # the launches the last run took
        self._run_segments = 0  # how many segments the last run had (host decisions + 1)
        self.inputs = [TensorSpec.from_manifest(e) for e in manifest["inputs"]]
        self.outputs = [TensorSpec.from_manifest(e) for e in manifest["outputs"]]
        self.arena_bytes = manifest["arena_bytes"]
        # sizes known at run time only: the dims' place in the status allocation, their order,
        # their values when a run starts (input dims from the shapes, the rest at their upper
        # bounds), and each output's shape over them
        self._dims_plan = plan.dims
        if plan.dims is not None:
            self.run_dims = RunDims(manifest["dims"])
            self._dim_names = [d["name"] for d in manifest["dims"]]
            self._dim_start = np.array([d["hi"] for d in manifest["dims"]], np.int64)
            bounds = self.run_dims.bounds
            self._output_dims = [tuple(parse_dim(d, bounds) if isinstance(d, str) else int(d)
                                       for d in (s.dims if s.dims is not None else s.shape))
                                 for s in self.outputs]
            self._entry = entry_steps(plan.dims, bounds)
        self._lock = threading.Lock()
        self._closed = False
        self._handle = None
        self._driver = driver
        self._buffers = _Buffers(driver)
        self._graphs: dict[str, _Graph] = {}  # "run": a whole run; "kernels": time_kernels'
        self.stats = RunStats("cuda", execution=GRAPH_EXECUTION if graphs_enabled()
                              else STREAM_EXECUTION)
        where = str(root)
        self.device = driver("cuDeviceGet", 0)
        self.device_name = driver("cuDeviceGetName", 256, self.device).split(b"\0")[0].decode()
        image_kind = choose_image(driver, self.device, manifest["cuda"], where)
        self._ctx = driver("cuDevicePrimaryCtxRetain", self.device)
        self._retained = True
        try:
            self._setup(root, manifest, plan, image_kind, where)
        except BaseException:
            self._release()
            raise
        self._handle = self._ctx  # open (CompiledModel._check_open)

    # ------------------------------------------------------------ loading

    def _setup(self, root: Path, manifest: dict[str, Any], plan: LaunchPlan,
               image_kind: str, where: str) -> None:
        driver = self._driver
        driver("cuCtxSetCurrent", self._ctx)
        record = manifest["cuda"]
        image = (root / record["cubin"]).read_bytes() if image_kind == "cubin" else \
            (root / record["ptx"]).read_bytes() + b"\0"
        self._image = np.frombuffer(image, np.uint8).copy()
        self._module = driver("cuModuleLoadData", self._image.ctypes.data)
        self._check_memory(manifest, where)
        buffers = self._buffers
        weights = np.fromfile(root / manifest["weights"]["file"], np.uint8)
        self._arena = buffers.device_alloc(self.arena_bytes)
        self._weights = buffers.device_alloc(weights.nbytes)
        if weights.nbytes:
            driver("cuMemcpyHtoD", self._weights, weights.ctypes.data, weights.nbytes)
        self._status_word = buffers.device_alloc(self._status_bytes)  # then kernels' counters
        self._status_host = buffers.pinned(4)
        if self._dims_plan is not None:  # a run's dims: set before it (pinned), read after it
            count = self._dims_plan["count"]
            self._dims_in = buffers.pinned(8 * count)
            self._dims_out = buffers.pinned(8 * count)
            self._dims_in[1].view(np.int64)[:] = self._dim_start
        # a run-time If's condition: its byte's device address, copied to pinned host memory
        self._condition_host = buffers.pinned(len(self._condition_plan)) \
            if self._condition_plan else (0, np.zeros(0, np.uint8))
        self._in = [(buffers.device_alloc(_nbytes(s)), *buffers.pinned(_nbytes(s))) for s in self.inputs]
        self._out = [(buffers.device_alloc(_nbytes(s)), *buffers.pinned(_nbytes(s))) for s in self.outputs]
        self._condition_device = [
            {"input": lambda i: self._in[i][0], "output": lambda i: self._out[i][0],
             "weights": lambda off: self._weights + off,
             "arena": lambda off: self._arena + off}[space](value)
            for space, value in (c["at"] for c in self._condition_plan)]
        self._tensor_maps = self._encode_tensor_maps()
        # a pageable upload may still be in flight when cuMemcpyHtoD returns, and the stream
        # does not wait for the legacy stream (non-blocking: another thread's synchronous copies
        # cannot then break this model's graph capture), so wait for the weights here
        driver("cuCtxSynchronize")
        self._stream = driver("cuStreamCreate", STREAM_NON_BLOCKING)
        # counters start at zero (each kernel resets its own after use); before any run
        driver("cuMemsetD32Async", self._status_word, 0, self._status_bytes // 4, self._stream)
        functions = {}
        self._launches = []
        # kernels after a host decision follow a copy and a synchronisation, not the previous
        # kernel: a model with run-time Ifs launches none as a programmatic dependent
        dependents = plan.programmatic and not self._condition_plan and \
            _switched_on(PROGRAMMATIC_ENV, default="0")
        self.stats.programmatic_launch = dependents
        for index, launch in enumerate(plan.launches):
            name = launch["kernel"]
            if name not in functions:
                functions[name] = driver("cuModuleGetFunction", self._module, name.encode())
            if launch["shared_bytes"] > STATIC_SHARED_LIMIT:  # opt in to more dynamic shared memory
                driver("cuFuncSetAttribute", functions[name],
                       driver.cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                       launch["shared_bytes"])
            # the first kernel follows the input copies; each later one may start early
            config = self._dependent_config(launch) if dependents and index > 0 else None
            self._launches.append((functions[name], launch["grid"], launch["block"],
                                   launch["shared_bytes"], self._arguments(launch["args"]), config))
        if self.stats.execution == GRAPH_EXECUTION:  # the first segment (a whole run without Ifs)
            self._segment_graph(self._segment(0, {}))

    def _dependent_config(self, launch: dict[str, Any]) -> Any:
        """cuLaunchKernelEx's configuration of a programmatic dependent: the kernel may start
        while the previous one runs (it waits for it: griddepcontrol.wait, cuda/prelude.cuh.j2)."""
        cu = self._driver.cu
        attribute = cu.CUlaunchAttribute()
        attribute.id = cu.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
        attribute.value.programmaticStreamSerializationAllowed = 1
        config = cu.CUlaunchConfig()
        config.gridDimX, config.gridDimY, config.gridDimZ = launch["grid"]
        config.blockDimX, config.blockDimY, config.blockDimZ = launch["block"]
        config.sharedMemBytes = launch["shared_bytes"]
        config.hStream = self._stream
        config.attrs = [attribute]
        config.numAttrs = 1
        return config

    def _encode_tensor_maps(self) -> int:
        """The plan's TMA tensor maps, encoded over the buffers' device addresses into one
        device allocation (0 where there are none); the host copy stays with the model."""
        if not self._tensor_map_plan:
            return 0
        where = {"input": lambda i: self._in[i][0], "output": lambda i: self._out[i][0],
                 "weights": lambda off: self._weights + off, "arena": lambda off: self._arena + off}
        self._tensor_map_words = np.concatenate([
            tensor_maps.encode(self._driver, entry, where[entry["address"][0]](entry["address"][1]))
            for entry in self._tensor_map_plan])
        device = self._buffers.device_alloc(self._tensor_map_words.nbytes)
        self._driver("cuMemcpyHtoD", device, self._tensor_map_words.ctypes.data,
                     self._tensor_map_words.nbytes)
        return device

    def _check_memory(self, manifest: dict[str, Any], where: str) -> None:
        free, _total = self._driver("cuMemGetInfo")
        needed = self.arena_bytes + manifest["weights"]["bytes"] + sum(
            _nbytes(s) for s in [*self.inputs, *self.outputs])
        if needed > free:
            raise PycError("E037", f"the model needs {needed} bytes of device memory, the GPU has "
                           f"{free} free", where=where,
                           hint="free GPU memory, or rebuild with --mode memory_first")

    def _arguments(self, args: list[list[Any]]) -> tuple[np.ndarray, np.ndarray]:
        """The kernel's argument values (device addresses) and the array of pointers to them
        that cuLaunchKernel takes; both kept alive with the model."""
        base: dict[str, Callable[[int], int]] = {
            "input": lambda i: self._in[i][0], "output": lambda i: self._out[i][0],
            "weights": lambda off: self._weights + off, "arena": lambda off: self._arena + off,
            "status": lambda off: self._status_word + off,
            "tensormap": lambda i: self._tensor_maps + tensor_maps.MAP_BYTES * i}
        values = np.array([base[space](value) for space, value in args], dtype=np.uint64)
        pointers = np.array([values.ctypes.data + 8 * k for k in range(len(values))], np.uint64)
        return values, pointers

    # ------------------------------------------------------------ running

    def _run_arrays(self, inputs: list[np.ndarray], outputs: list[np.ndarray]
                    ) -> list[tuple[int, ...]] | None:
        """Run on the arrays; with sizes known at run time only, the outputs' actual shapes
        (None: static)."""
        with self._lock:
            self._check_open()
            self._stage(inputs)
            self._submit()
            self._finish(inputs, outputs)
            return self._run_shapes()

    def _stage(self, inputs: list[np.ndarray]) -> None:
        """The inputs into their pinned buffers, which the run's copies (or graph) read (an
        input of symbolic dims dense at its actual shape, at the front of its buffer), and the
        run's starting dims: each input dim from the shapes (check_feeds has checked them),
        the value dims and entry steps (start_dims: PYC-E041 where they refuse the run), every
        dim a kernel computes at its upper bound."""
        for array, (_device, _pinned, view) in zip(inputs, self._in):
            view[:array.nbytes] = array.reshape(-1).view(np.uint8)
        if self._dims_plan is None or self.run_dims is None:
            return
        env: dict[str, int] = {}
        for spec, array in zip(self.inputs, inputs):
            if spec.dims is not None:
                check_within(spec.name, self.run_dims.input_dims(spec), array.shape, env)
        start = self._dims_in[1].view(np.int64)
        start[:] = self._dim_start
        for k, name in enumerate(self._dim_names):
            if name in env:
                start[k] = env[name]
        if not start_dims(start, self._dim_names, self._dims_plan.get("values", []), self._entry,
                          inputs):
            raise self._run_error(STATUS_SHAPE_OUT_OF_BOUNDS, inputs)

    def _run_shapes(self) -> list[tuple[int, ...]] | None:
        """Each output's shape in the last run, from the dims it read back (None: static)."""
        if self._dims_plan is None:
            return None
        dims = self._dims_out[1].view(np.int64)
        env = {name: int(dims[k]) for k, name in enumerate(self._dim_names)}
        return [tuple(d.evaluate(env) if isinstance(d, Dim) else int(d) for d in shape)
                for shape in self._output_dims]

    def _submit(self) -> None:
        """A run's device work on the stream, segment by segment (Segment): each replayed as
        its own captured graph (captured on first use), or call by call. Between segments the
        host decides: it waits for the stream and reads the run-time If conditions the
        segment copied out, which pick the next segment's launches (the taken branch's)."""
        self._driver("cuCtxSetCurrent", self._ctx)
        known: dict[int, bool] = {}
        path: list[int] = []
        segment = self._segment(0, known)
        self._run_segments = 0
        while True:
            path += segment.launches
            self._run_segments += 1
            if self.stats.execution == GRAPH_EXECUTION:
                self._segment_graph(segment).launch(self._stream)
            else:
                self._enqueue_segment(segment)
            if segment.last:
                break
            self._driver("cuStreamSynchronize", self._stream)
            view = self._condition_host[1]
            known.update((c, bool(view[c])) for c in segment.needs)
            segment = self._segment(segment.next, known)
        self._path = tuple(path)

    def _segment(self, start: int, known: dict[int, bool]) -> Segment:
        key = (start, tuple(sorted(known.items())))
        if key not in self._segments:
            self._segments[key] = plan_segment(self._whens, self._stops, start, known)
        return self._segments[key]

    def _segment_graph(self, segment: Segment) -> _Graph:
        """The segment's CUDA graph, captured the first time a run takes it ("run": the first
        segment, a whole run of a model without run-time Ifs)."""
        if segment.key not in self._graphs:
            self._graphs[segment.key] = _Graph(self._driver, self._stream,
                                               lambda: self._enqueue_segment(segment))
        return self._graphs[segment.key]

    def _enqueue_segment(self, segment: Segment) -> None:
        """A segment's stream work, asynchronous only (so that it can be captured as a graph):
        the first resets the status word and copies the inputs in, then its kernels, then the
        conditions the next decision reads, or (the last) the outputs and status out."""
        driver, stream = self._driver, self._stream
        if segment.first:
            driver("cuMemsetD32Async", self._status_word, 0, 1, stream)
            if self._dims_plan is not None:  # the run's starting dims (_stage wrote them)
                driver("cuMemcpyHtoDAsync", self._status_word + self._dims_plan["at"],
                       self._dims_in[0], 8 * self._dims_plan["count"], stream)
            for spec, (device, pinned, _view) in zip(self.inputs, self._in):
                if _nbytes(spec):
                    driver("cuMemcpyHtoDAsync", device, pinned, _nbytes(spec), stream)
        self._launch_all(segment.launches)
        for condition in segment.needs:
            driver("cuMemcpyDtoHAsync", self._condition_host[0] + condition,
                   self._condition_device[condition], 1, stream)
        if segment.last:
            for spec, (device, pinned, _view) in zip(self.outputs, self._out):
                if _nbytes(spec):
                    driver("cuMemcpyDtoHAsync", pinned, device, _nbytes(spec), stream)
            driver("cuMemcpyDtoHAsync", self._status_host[0], self._status_word, 4, stream)
            if self._dims_plan is not None:  # the outputs' shapes are over these
                driver("cuMemcpyDtoHAsync", self._dims_out[0],
                       self._status_word + self._dims_plan["at"], 8 * self._dims_plan["count"],
                       stream)

    def _launch_all(self, indices: tuple[int, ...] | None = None) -> None:
        """The kernels (`indices`, else every one) in schedule order on the model's stream (the
        binding called directly: this loop is a small model's run time; each status is still
        checked)."""
        cu, stream = self._driver.cu, self._stream
        launch, launch_ex = cu.cuLaunchKernel, cu.cuLaunchKernelEx
        chosen = self._launches if indices is None else [self._launches[i] for i in indices]
        for function, grid, block, shared, (_values, pointers), config in chosen:
            if config is None:
                result = launch(function, *grid, *block, shared, stream, pointers.ctypes.data, 0)
            else:
                result = launch_ex(config, function, pointers.ctypes.data, 0)
            status = result[0] if isinstance(result, tuple) else result
            if int(status) != 0:
                raise self._driver.failure("cuLaunchKernelEx" if config else "cuLaunchKernel",
                                           status)

    def _finish(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        self._driver("cuStreamSynchronize", self._stream)
        status = int(self._status_host[1].view(np.int32)[0])
        if status != 0:
            raise self._run_error(status, inputs)
        for array, (_device, _pinned, view) in zip(outputs, self._out):
            array.reshape(-1).view(np.uint8)[:] = view

    def _status(self, status: int) -> str:
        if status == STATUS_SHAPE_OUT_OF_BOUNDS:
            return "a size computed during the run exceeds its bound"
        return "an index is out of range" if status == STATUS_INDEX_OUT_OF_RANGE \
            else f"kernel status {status}"

    def time_runs(self, feeds: Any, plan: RunPlan | int) -> list[float]:
        """Milliseconds per run (inputs in, kernels, outputs out, synchronised), buffers bound
        once, as CompiledModel.time_runs."""
        if self._replacement is not None:
            return self._replacement.time_runs(feeds, plan)
        self._check_open()
        if isinstance(plan, int):
            plan = RunPlan(warmup=1, repeat=plan)
        arrays = self.check_feeds(feeds)
        outputs = self._output_buffers()

        def run() -> None:
            self._run_arrays(arrays, outputs)
        return time_calls(run, plan)

    def time_kernels(self, feeds: Any, repeat: int, warmup: int = 3) -> list[float]:
        """Milliseconds of the kernel launches alone per run, between two CUDA events on the
        stream (the inputs copied in once first): the device's share of time_runs. With CUDA
        graphs the kernels are timed as a graph of their own (captured on first use), as runs
        replay them; `stats.kernels_timed` records which path was timed."""
        arrays = self.check_feeds(feeds)
        driver = self._driver
        with self._lock:
            self._check_open()
            self._stage(arrays)
            self._submit()
            driver("cuStreamSynchronize", self._stream)
            launch = self._kernel_launcher()
            start, stop = driver("cuEventCreate", 0), driver("cuEventCreate", 0)
            try:
                times = []
                for index in range(warmup + repeat):
                    driver("cuEventRecord", start, self._stream)
                    launch()
                    driver("cuEventRecord", stop, self._stream)
                    driver("cuEventSynchronize", stop)
                    if index >= warmup:
                        times.append(float(driver("cuEventElapsedTime", start, stop)))
            finally:
                driver.cu.cuEventDestroy(start)
                driver.cu.cuEventDestroy(stop)
        self.stats.kernels_timed = self.stats.execution
        return times

    def _kernel_launcher(self) -> Callable[[], None]:
        """What time_kernels times: the kernels' own graph (captured once) or the launches."""
        path = self._path  # the launches the run just made took (a run-time If's branch)
        if self.stats.execution != GRAPH_EXECUTION:
            return lambda: self._launch_all(path)
        key = f"kernels {path}"
        if key not in self._graphs:
            self._graphs[key] = _Graph(self._driver, self._stream, lambda: self._launch_all(path))
        graph = self._graphs[key]
        return lambda: graph.launch(self._stream)

    def poison(self) -> None:
        """Fill the device outputs and the arena with NaN (tests: a kernel that skips an
        element shows as NaN instead of a stale right answer)."""
        with self._lock:
            self._check_open()
            driver = self._driver
            driver("cuCtxSetCurrent", self._ctx)
            for device, size in [(self._arena, self.arena_bytes),
                                 *((d, _nbytes(s)) for (d, _p, _v), s in zip(self._out, self.outputs))]:
                if size >= 4:
                    driver("cuMemsetD32Async", device, NAN_BITS, size // 4, self._stream)
            driver("cuStreamSynchronize", self._stream)

    # ------------------------------------------------------------ closing

    def _release(self) -> None:
        driver = self._driver
        try:
            driver.cu.cuCtxSetCurrent(self._ctx)
            for graph in self._graphs.values():
                graph.destroy()
            self._graphs = {}
            if getattr(self, "_stream", None) is not None:
                driver.cu.cuStreamDestroy(self._stream)
                self._stream = None
            self._buffers.free()
            if getattr(self, "_module", None) is not None:
                driver.cu.cuModuleUnload(self._module)
                self._module = None
        finally:
            if self._retained:
                driver.cu.cuDevicePrimaryCtxRelease(self.device)
                self._retained = False

    def close(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            if self._closed:
                return
            self._closed = True
            if self._handle is not None:
                self._handle = None
                self._release()


def _nbytes(spec: TensorSpec) -> int:
    return int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.itemsize
