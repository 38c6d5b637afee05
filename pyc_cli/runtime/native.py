"""Running a compiled artifact in-process through its C ABI (ctypes)."""

from __future__ import annotations

import contextlib
import ctypes
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..abi import dtype_code
from ..errors import PycError, PycWarning
from ..input_ranges import InputRange, out_of_range_error, read_input_ranges
from ..ir.symbolic import DimBounds, DimLike, check_within, parse_dim
from ..ir.types import DType
from .buckets import GENERIC, BucketDispatch
from .stats import RunStats
from .timing import RunPlan, time_calls


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # with symbolic dims: their upper bounds
    # a model with symbolic dims (issue #15): the dims as built, numbers and texts (`batch`)
    dims: tuple[int | str, ...] | None = None

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> TensorSpec:
        """From a manifest entry that artifact.reader.check_manifest has type-checked."""
        dims = entry.get("dims")
        return cls(entry["name"], DType(entry["dtype"]).numpy, tuple(entry["shape"]),
                   None if dims is None else tuple(dims))


class RunDims:
    """A model's dims (the manifest's `dims`): their bounds by name, those computed at run time,
    and each input's dims as built (what check_feeds binds an input's shape to)."""

    def __init__(self, dims: list[dict[str, Any]]) -> None:
        self.bounds = {d["name"]: DimBounds(d["name"], d["lo"], d["hi"], d.get("computed", ""))
                       for d in dims}
        # sizes computed at run time (issue #15, point 2): a run may exceed their bounds
        self.computed = sorted(d.name for d in self.bounds.values() if d.computed)

    def input_dims(self, spec: TensorSpec) -> tuple[DimLike, ...]:
        """An input's dims as built: numbers, and its named dims with their bounds."""
        assert spec.dims is not None
        return tuple(parse_dim(d, self.bounds) if isinstance(d, str) else d for d in spec.dims)


class ShapedFunctions(RunDims):
    """The entry points of a model with symbolic dims (model.h: NAME_context_run_shaped,
    NAME_output_shape), and its dims' bounds by name (the manifest's `dims`)."""

    def __init__(self, addresses: dict[str, int], dims: list[dict[str, Any]]) -> None:
        super().__init__(dims)
        int64_p = ctypes.POINTER(ctypes.c_int64)
        pointer_array = ctypes.POINTER(ctypes.c_void_p)
        self.run_shaped = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p,
                                           ctypes.POINTER(int64_p), pointer_array,
                                           pointer_array)(addresses["context_run_shaped"])
        self.output_shape = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                             int64_p)(addresses["output_shape"])
        # NAME_context_arena_used: only a plan with run-time offsets exports it
        used = addresses.get("context_arena_used")
        self.arena_used = None if used is None else ctypes.CFUNCTYPE(
            ctypes.c_int64, ctypes.c_void_p)(used)
        # NAME_context_trim: only a plan whose arena the runs grow (memory_first) exports it
        trim = addresses.get(TRIM_ENTRY_POINT)
        self.trim = None if trim is None else ctypes.CFUNCTYPE(
            ctypes.c_int64, ctypes.c_void_p)(trim)


# the entry points only a model with symbolic dims exports
SHAPED_ENTRY_POINTS = ("context_run_shaped", "output_shape")
# ... and a plan whose offsets are computed at run time (memory_plan.json's runtime_offsets)
RUNTIME_OFFSET_ENTRY_POINTS = ("context_arena_used", "arena_offsets")
# ... and a plan whose arena grows on demand (memory_first): frees it
TRIM_ENTRY_POINT = "context_trim"


class ModelFunctions:
    """The ABI entry points, bound from a ctypes library or from JIT-resolved addresses."""

    def __init__(self, addresses: dict[str, int]) -> None:
        pointer_array = ctypes.POINTER(ctypes.c_void_p)
        handle_out = ctypes.POINTER(ctypes.c_void_p)
        # CFUNCTYPE (not PYFUNCTYPE) calls release the GIL: runs on other threads proceed
        self.create = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, handle_out)(
            addresses["create"])
        self.destroy = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(addresses["destroy"])
        self.context_create = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, handle_out)(
            addresses["context_create"])
        self.context_run = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, pointer_array,
                                            pointer_array)(addresses["context_run"])
        self.context_destroy = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(
            addresses["context_destroy"])
        self.status_string = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_int)(
            addresses["status_string"])

    @classmethod
    def from_library(cls, library: ctypes.CDLL, prefix: str) -> ModelFunctions:
        return cls(library_addresses(library, prefix, ENTRY_POINTS))


# the exported functions, each named PREFIX_SUFFIX (PREFIX is the manifest's symbol_prefix)
ENTRY_POINTS = ("create", "destroy", "context_create", "context_run", "context_destroy",
                "status_string")
IO_ENTRY_POINTS = ("io_name", "io_dtype", "io_rank", "io_shape")


def library_addresses(library: ctypes.CDLL, prefix: str, suffixes: tuple[str, ...]
                      ) -> dict[str, int]:
    """suffix -> address of PREFIX_SUFFIX in `library` (AttributeError if one is missing)."""
    return {suffix: ctypes.cast(getattr(library, f"{prefix}_{suffix}"), ctypes.c_void_p).value
            for suffix in suffixes}


def library_io(addresses: dict[str, int]) -> dict[str, list[tuple[bytes, int, tuple[int, ...]]]]:
    """(name, dtype code, shape) of every input and output, as the compiled library reports them."""
    name = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_int, ctypes.c_int)(addresses["io_name"])
    dtype = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int)(addresses["io_dtype"])
    rank = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int)(addresses["io_rank"])
    shape = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_int64), ctypes.c_int,
                             ctypes.c_int)(addresses["io_shape"])
    found: dict[str, list[tuple[bytes, int, tuple[int, ...]]]] = {"inputs": [], "outputs": []}
    for is_output, side in enumerate(found):
        index = 0
        while (label := name(is_output, index)) is not None:
            dims = shape(is_output, index)
            found[side].append((label, dtype(is_output, index),
                                tuple(dims[d] for d in range(rank(is_output, index)))))
            index += 1
    return found


def check_io_specs(addresses: dict[str, int], inputs: list[TensorSpec],
                   outputs: list[TensorSpec]) -> None:
    """The manifest's inputs/outputs (not hashed) must be what the verified library was compiled
    for: buffers are sized from them, so an edited shape would let native code overrun them."""
    compiled = library_io(addresses)
    for side, specs in (("inputs", inputs), ("outputs", outputs)):
        claimed = [(s.name.encode(),
                    dtype_code(DType.from_numpy(s.dtype)), s.shape) for s in specs]
        if claimed != compiled[side]:
            raise PycError("E031", f"the {side} in manifest.json do not match the compiled library "
                           f"({_describe(claimed)} vs {_describe(compiled[side])})",
                           hint="the artifact was modified; rebuild it")


def _describe(entries: list[tuple[bytes, int, tuple[int, ...]]]) -> str:
    return ", ".join(f"{n.decode('utf-8', 'replace')!r}:{code}{list(shape)}" for n, code, shape in entries)


def _address(array: np.ndarray) -> int:
    """The address of a C-contiguous array's data: through a ctypes view of its buffer (~0.3
    us), or numpy's ctypes attribute (~1.5 us) where ctypes cannot view it (read-only, empty)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    except (TypeError, ValueError, BufferError):
        return array.ctypes.data


# PYC_STATUS_INDEX_OUT_OF_RANGE of runtime_c/pyc_runtime.h
STATUS_INDEX_OUT_OF_RANGE = 5
# PYC_STATUS_SHAPE_OUT_OF_BOUNDS of a model with symbolic dims (model.h)
STATUS_SHAPE_OUT_OF_BOUNDS = 6
# PYC_STATUS_BRANCH_NOT_COMPILED of a model with an unreachable If branch (model.h)
STATUS_BRANCH_NOT_COMPILED = 8

Feeds = Mapping[str, Any]  # input name -> array (anything np.asarray accepts)


# a run failing with these fails on its device, not on its inputs: a driver call failing
# (a kernel that cannot launch, an illegal address, the device lost or out of memory)
DEVICE_FAILURE_CODES = ("E038",)


class CompiledModel:
    """A loaded model: create once, run many times, from any number of threads at once (what a
    server or a benchmark needs).

    Threading contract: the weights are loaded once and only read. Each `run` borrows an
    execution context (the activation arena, `arena_bytes` bytes at most: a memory_first plan
    with symbolic dims grows it to its largest run's need) from a pool, works only in
    it and in its own output arrays, and gives it back; the native call releases the GIL. So
    N threads may call `run` on one model at the same time, each gets the result it would get
    alone (bitwise), and the pool grows to the number of runs in flight at once (N arenas at
    most; idle ones are reused, freed by `close`). `close` may be called while runs are in
    flight: they finish, later calls raise PYC-E047. Do not modify an input array while a run
    that reads it is in flight.
    """

    # the values each integer input may hold (input_ranges.json; None: not recorded), which
    # random inputs draw from and index errors are explained with
    input_ranges: dict[str, InputRange] | None = None
    # run-time If branches that could not be compiled for the input shapes (the manifest's
    # unreachable_branches: {if, branch, reason}), which PYC-E053 names
    unreachable_branches: tuple[dict[str, str], ...] = ()
    # the target that runs, the guards and fallbacks that led to it (runtime/stats.py)
    stats: RunStats
    # the next target of a multi-target artifact, loaded when a run fails on this one's device
    # (set_run_fallback), and the model it loaded, which runs from then on
    _standby: Callable[[], CompiledModel] | None = None
    _replacement: CompiledModel | None = None
    # a model with symbolic dims: its shaped entry points (None: static shapes)
    shaped: ShapedFunctions | None = None
    # ... or, on a target without them (CUDA: runtime/cuda.py), its dims alone
    run_dims: RunDims | None = None
    # an artifact with shape buckets: which plan each run goes to (runtime/buckets.py)
    buckets: BucketDispatch | None = None
    # PYC_TELEMETRY: records each run's shapes, plan and time (pyc_cli/telemetry.py)
    telemetry: Any = None

    def __init__(self, functions: ModelFunctions, weights_path: Path,
                 inputs: list[TensorSpec], outputs: list[TensorSpec], keepalive: Any = None,
                 arena_bytes: int = 0, create: Callable[[Any], int] | None = None) -> None:
        self.inputs, self.outputs = inputs, outputs
        self.arena_bytes = arena_bytes
        self.stats = RunStats("cpu")
        self._fn = functions
        self._keepalive = keepalive  # the library or JIT that owns the code
        self._lock = threading.Lock()  # guards the fields below, never held during a run
        self._idle: list[ctypes.c_void_p] = []  # contexts no run is using
        self._busy = 0  # runs in flight
        self._closed = False
        self._handle: ctypes.c_void_p | None = None
        handle = ctypes.c_void_p()
        # `create`: another way to make the model (a shape bucket on its artifact's weights)
        status = (create(ctypes.byref(handle)) if create is not None
                  else functions.create(str(weights_path).encode(), ctypes.byref(handle)))
        if status != 0:
            raise PycError("E042", f"model creation failed: {self._status(status)}",
                           where=str(weights_path), hint="rebuild the artifact")
        self._handle = handle

    def set_run_fallback(self, load_next: Callable[[], CompiledModel]) -> None:
        """Where a run goes when this target's device fails during it (DEVICE_FAILURE_CODES):
        `load_next` loads the artifact's next target; that run and every later one go there
        (PYC-W002)."""
        self._switch = threading.Lock()
        self._standby = load_next

    def _run_feeds(self, feeds: Feeds) -> list[np.ndarray]:
        recorder = self.telemetry
        if recorder is None:
            return self._run_once(feeds)
        started = time.perf_counter()
        results = self._run_once(feeds)
        self._record(recorder, feeds, [(time.perf_counter() - started) * 1e3])
        return results

    def _record(self, recorder: Any, feeds: Feeds, times_ms: list[float]) -> None:
        """Telemetry of a successful run: the plan that served it (dispatched again: 2 us)."""
        plan = GENERIC if self.buckets is None else self.buckets.pick(feeds)[0]
        assert isinstance(feeds, Mapping)
        recorder.record(feeds, plan, times_ms)

    def _run_once(self, feeds: Feeds) -> list[np.ndarray]:
        replacement = self._replacement
        if replacement is not None:
            return replacement._run_feeds(feeds)
        self._check_open()
        bucket = self._bucket_for(feeds)
        if bucket is not None:
            return bucket._run_feeds(feeds)
        arrays = self.check_feeds(feeds)
        # one buffer per output position: ONNX lets a graph return one name twice
        buffers = self._output_buffers()
        try:
            shapes = self._run_arrays(arrays, buffers)
        except PycError as error:
            if error.code not in DEVICE_FAILURE_CODES or self._standby is None:
                raise
            return self._fall_back(error)._run_feeds(feeds)
        if shapes is not None:  # symbolic dims: each output is dense at its actual shape
            return [b.reshape(-1)[:math.prod(shape)].reshape(shape)
                    for b, shape in zip(buffers, shapes)]
        return buffers

    def _bucket_for(self, feeds: Feeds) -> CompiledModel | None:
        """The bucket's model for a run of `feeds` (None: this, the generic plan), counted and
        its dispatch time kept in the statistics."""
        if self.buckets is None or not isinstance(feeds, Mapping):
            return None
        plan, micros = self.buckets.pick(feeds)
        with self._lock:
            assert self.stats.plan_runs is not None
            self.stats.plan_runs[plan] = self.stats.plan_runs.get(plan, 0) + 1
            self.stats.last_plan, self.stats.last_dispatch_us = plan, micros
        return None if plan == GENERIC else self.buckets.model(plan)

    def _fall_back(self, error: PycError) -> CompiledModel:
        """The next target, loaded once (by the first run that failed; runs failing at the same
        time wait for it), counted in the statistics and warned as PYC-W002."""
        with self._switch:
            if self._replacement is None:
                assert self._standby is not None
                reason = f"PYC-{error.code}: {error.what}"
                failed = self.stats.target
                replacement = self._standby()
                self.stats.fallback_count += 1
                self.stats.last_fallback_reason = reason
                self.stats.target, self.stats.execution = \
                    replacement.stats.target, replacement.stats.execution
                replacement.stats = self.stats
                self._replacement = replacement
                warnings.warn(PycWarning(PycError(
                    "W002", f"a run on the artifact's {failed} target failed ({reason}); it and "
                    f"every later run go to its {replacement.stats.target} target",
                    hint=f"check the {failed} device (driver, memory, errors in its log); "
                    "reload the artifact to try it again")), stacklevel=4)
            return self._replacement

    def _status(self, status: int) -> str:
        return (self._fn.status_string(status) or b"?").decode()

    def check_feeds(self, feeds: Feeds) -> list[np.ndarray]:
        """The feeds as C-contiguous arrays in the model's input order, after checking that
        they name exactly the model's inputs (`self.inputs`) with its dtypes and shapes
        (PYC-E041 names the first mismatch). `run` calls it; call it directly to validate
        inputs without running."""
        if not isinstance(feeds, Mapping):
            raise PycError("E041", f"the feeds are a {type(feeds).__name__}, not a dict of "
                           "input name -> array", where="run(feeds)",
                           hint="pass {name: array} for every model input")
        if len(feeds) != len(self.inputs) or not all(spec.name in feeds for spec in self.inputs):
            self._name_mismatch(feeds)
        arrays = []
        env: dict[str, int] = {}
        for spec in self.inputs:
            array = feeds[spec.name]
            if type(array) is not np.ndarray or not array.flags.c_contiguous:
                array = np.asarray(array, order="C")
            dims = self.shaped or self.run_dims
            if dims is not None and spec.dims is not None and array.dtype == spec.dtype:
                try:  # any shape within the dims' bounds, agreeing with the other inputs
                    check_within(spec.name, dims.input_dims(spec), array.shape, env)
                except PycError as error:
                    self.stats.guard_miss_count += 1
                    raise PycError(error.code, error.what, where=f"input {spec.name!r}",
                                   hint=error.hint) from None
                arrays.append(array)
                continue
            if array.dtype != spec.dtype or array.shape != spec.shape:
                self.stats.guard_miss_count += 1  # the input guard: shapes and dtypes as built
                raise PycError("E041", f"input {spec.name!r} is {array.dtype}{list(array.shape)}, "
                               f"the model needs {spec.dtype}"
                               f"{list(spec.shape if spec.dims is None else spec.dims)}",
                               where=f"input {spec.name!r}",
                               hint="rebuild with --input-shape for other shapes, or convert it")
            arrays.append(array)
        return arrays

    def _name_mismatch(self, feeds: Feeds) -> None:
        """PYC-E041 naming the missing and unexpected inputs."""
        expected = {spec.name for spec in self.inputs}
        missing = sorted(expected - set(feeds))
        extra = sorted(set(feeds) - expected, key=str)
        raise PycError("E041", f"inputs do not match the model: missing {missing}, "
                       f"unexpected {extra}", where=f"model inputs are {sorted(expected)}",
                       hint="name the inputs as the manifest lists them")

    def run(self, output_names: Feeds | Sequence[str] | None,
            feeds: Feeds | None = None) -> dict[str, np.ndarray] | list[np.ndarray]:
        """Run the model once; thread-safe (see the class docstring). Two calling conventions:

        - `run(feeds)` -> {output name: array}, every output in the model's order;
        - `run(output_names, feeds)`, onnxruntime's `InferenceSession.run`: a list of arrays
          in the order of `output_names` (`None`: every output, in the model's order), so
          `sess.run(None, feeds)` works unchanged on a PyC model.

        `feeds` maps every input name to an array of exactly the dtype and shape in
        `self.inputs` (`check_feeds`; PYC-E041 otherwise). Outputs are new arrays. Errors:
        PYC-E046 for an unknown output name (the valid ones are listed), PYC-E047 after
        `close`, PYC-E042 when the compiled code reports a failure (e.g. an index input out
        of range)."""
        if feeds is None and isinstance(output_names, Mapping):
            return dict(zip(self._output_names(), self._run_feeds(output_names)))
        if feeds is None:
            raise PycError("E046", "run() got output names but no feeds", where="run(output_names, "
                           "feeds)", hint="call run(feeds) or run(None, feeds)")
        positions = self._output_positions(output_names)
        results = self._run_feeds(feeds)
        return [results[position] for position in positions]

    def _output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    def _output_positions(self, output_names: Sequence[str] | None) -> list[int]:
        """Where each requested output sits in the model's outputs (all of them for None)."""
        names = self._output_names()
        if output_names is None:
            return list(range(len(names)))
        if isinstance(output_names, (str, bytes)) or not isinstance(output_names, Sequence):
            raise PycError("E046", f"output_names is a {type(output_names).__name__}, not a list "
                           "of output names or None", where="run(output_names, feeds)",
                           hint=f"pass None or a list drawn from {names}")
        unknown = [name for name in output_names if name not in names]
        if unknown:
            raise PycError("E046", f"the model has no output named {', '.join(map(repr, unknown))}",
                           where=f"model outputs are {names}",
                           hint="request outputs by these names, or None for all of them")
        return [names.index(name) for name in output_names]

    def _output_buffers(self) -> list[np.ndarray]:
        try:
            return [np.empty(spec.shape, spec.dtype) for spec in self.outputs]
        except MemoryError:
            total = sum(int(np.prod(spec.shape, dtype=object)) * spec.dtype.itemsize
                        for spec in self.outputs)
            raise PycError("E042", f"cannot allocate the model's outputs ({total} bytes)",
                           hint="run it on a machine with more memory") from None

    @staticmethod
    def _pointers(arrays: list[np.ndarray]) -> ctypes.Array:
        return (ctypes.c_void_p * max(1, len(arrays)))(*[_address(a) for a in arrays])

    def _run_arrays(self, inputs: list[np.ndarray], outputs: list[np.ndarray]
                    ) -> list[tuple[int, ...]] | None:
        """Run on the arrays; with symbolic dims, the outputs' actual shapes (None: static)."""
        in_ptrs, out_ptrs = self._pointers(inputs), self._pointers(outputs)
        shapes = self._shape_pointers(inputs)
        context = self._borrow()
        try:
            self._run_pointers(context, in_ptrs, out_ptrs, inputs, shapes)
            return None if shapes is None else self._output_shapes(context)
        finally:
            self._give_back(context)

    def _shape_pointers(self, inputs: list[np.ndarray]) -> Any:
        """The inputs' actual shapes as the shaped entry point takes them (None: static)."""
        if self.shaped is None:
            return None
        rows = [(ctypes.c_int64 * max(1, a.ndim))(*a.shape) for a in inputs]
        table = (ctypes.POINTER(ctypes.c_int64) * max(1, len(rows)))(
            *[ctypes.cast(r, ctypes.POINTER(ctypes.c_int64)) for r in rows])
        return table, rows  # the rows stay alive while the table points at them

    def _output_shapes(self, context: ctypes.c_void_p) -> list[tuple[int, ...]]:
        assert self.shaped is not None
        shapes = []
        for index, spec in enumerate(self.outputs):
            shape = (ctypes.c_int64 * max(1, len(spec.shape)))()
            status = self.shaped.output_shape(context, index, shape)
            if status != 0:
                raise PycError("E042", f"cannot read output {spec.name!r}'s shape: "
                               f"{self._status(status)}", hint="rebuild the artifact")
            shapes.append(tuple(shape[d] for d in range(len(spec.shape))))
        return shapes

    def _run_pointers(self, context: ctypes.c_void_p, in_ptrs: ctypes.Array,
                      out_ptrs: ctypes.Array, inputs: list[np.ndarray], shapes: Any = None
                      ) -> None:
        if shapes is not None:
            assert self.shaped is not None
            status = self.shaped.run_shaped(context, shapes[0], in_ptrs, out_ptrs)
            if status == 0 and self.shaped.arena_used is not None:
                used = int(self.shaped.arena_used(context))
                with self._lock:
                    self.stats.last_arena_bytes = used
        else:
            status = self._fn.context_run(context, in_ptrs, out_ptrs)
        if status != 0:
            raise self._run_error(status, inputs)

    def read_run_facts(self, root: Path, manifest: dict[str, Any]) -> None:
        """What a failed run is explained with, read at load by every loader: the values each
        integer input may hold (input_ranges.json) and the run-time If branches that could
        not be compiled (the manifest)."""
        self.input_ranges = read_input_ranges(root, manifest)
        self.unreachable_branches = tuple(manifest.get("unreachable_branches", ()))

    def _run_error(self, status: int, inputs: list[np.ndarray]) -> PycError:
        """E042 with the kernel's status; an index out of range is traced back to the input,
        node, value and valid range when an input holds it (E048)."""
        dims = self.shaped or self.run_dims
        if status == STATUS_SHAPE_OUT_OF_BOUNDS and dims is not None and dims.computed:
            return PycError("E041", f"model run refused: {self._status(status)}",
                            hint="a size computed at run time from input values exceeds the bound "
                            "the model was built for (pyc explain lists the dims; rebuild with "
                            "wider --input-values), or breaks a shape the model requires (a "
                            "Reshape's element count, a broadcast: each side 1 or the "
                            "other's; the checks at the top of run_with_dims in the artifact's "
                            "src/model.c, or in run_steps for a run-time If's branch)")
        if status == STATUS_BRANCH_NOT_COMPILED and self.unreachable_branches:
            listing = "; ".join(f"If {b['if']!r}, its {b['branch']} branch ({b['reason']})"
                                for b in self.unreachable_branches)
            return PycError("E053", "the run took a branch of a run-time If that could not be "
                            f"compiled for the model's input shapes: {listing}",
                            hint="send the input values that select the other branch, or rebuild "
                            "with the input shapes that branch needs (--input-shape); "
                            "onnxruntime fails on these inputs too")
        if status == STATUS_SHAPE_OUT_OF_BOUNDS:  # check_feeds lets no such shape through
            return PycError("E041", f"model run refused the input shapes: {self._status(status)}",
                            hint="send shapes within the dims' bounds (pyc explain lists them) "
                            "that the model's broadcasts accept (each side of a broadcast 1 or "
                            "the other's: the checks at the top of run_with_dims in the "
                            "artifact's src/model.c)")
        if status == STATUS_INDEX_OUT_OF_RANGE:
            feeds = {spec.name: array for spec, array in zip(self.inputs, inputs)}
            found = out_of_range_error(self.input_ranges, feeds)
            if found is not None:
                return found
            if self.input_ranges is not None:
                return PycError("E042", f"model run failed: {self._status(status)}; every input "
                                "is within the index ranges its uses accept, so the index is "
                                "computed inside the model", hint="compare with onnxruntime: "
                                "pyc run --compare ort --per-node")
        return PycError("E042", f"model run failed: {self._status(status)}",
                        hint="check the input values (e.g. index inputs in range)")

    def time_runs(self, feeds: Feeds, plan: RunPlan | int) -> list[float]:
        """Milliseconds per timed run under `plan` (an int: that many runs after one warm-up),
        buffers allocated, pointers bound and one execution context held throughout, as a
        server with preallocated buffers would."""
        times = self._time_runs(feeds, plan)
        if self.telemetry is not None:
            self._record(self.telemetry, feeds, times)
        return times

    def _time_runs(self, feeds: Feeds, plan: RunPlan | int) -> list[float]:
        if self._replacement is not None:
            return self._replacement.time_runs(feeds, plan)
        self._check_open()
        bucket = self._bucket_for(feeds)
        if bucket is not None:
            return bucket.time_runs(feeds, plan)
        if isinstance(plan, int):
            plan = RunPlan(warmup=1, repeat=plan)
        arrays = self.check_feeds(feeds)
        outputs = self._output_buffers()
        in_ptrs, out_ptrs = self._pointers(arrays), self._pointers(outputs)
        shapes = self._shape_pointers(arrays)
        with self._context() as context:
            return time_calls(lambda: self._run_pointers(context, in_ptrs, out_ptrs, arrays,
                                                         shapes), plan)

    def trim(self) -> int:
        """Free the arenas a memory_first plan with symbolic dims grew (it keeps its largest
        run's so far): every idle execution context's, those of the shape buckets loaded and of
        a target a run fell back to; a context a run is using keeps its own. The next run grows
        one again to what it needs. Returns the bytes released (always 0 for a plan whose arena
        is fixed: static, balanced, latency_first). Thread-safe; runs starting meanwhile wait
        for it (it only frees)."""
        released = 0
        if self._replacement is not None:
            released += self._replacement.trim()
        if self.buckets is not None:
            released += self.buckets.trim()
        trim = None if self.shaped is None else self.shaped.trim
        if trim is None:
            return released
        with self._lock:
            self._check_open()
            for context in self._idle:
                released += int(trim(context))
        return released

    # ------------------------------------------------------------ execution contexts

    def _check_open(self) -> None:
        if self._handle is None or self._closed:
            raise PycError("E047", "the model is closed", where="run() after close() or after "
                           "its `with` block", hint="load the artifact again (pyc_cli.load) "
                           "and keep it open while you run it")

    @contextlib.contextmanager
    def _context(self) -> Iterator[ctypes.c_void_p]:
        """An execution context of this model for one thread's use (from the pool, or new)."""
        context = self._borrow()
        try:
            yield context
        finally:
            self._give_back(context)

    def _borrow(self) -> ctypes.c_void_p:
        """An idle execution context, or a new one; every borrow is given back (`_give_back`).
        (Plain calls, not a context manager, on the run path: a generator costs ~1 us.)"""
        with self._lock:
            self._check_open()
            context = self._idle.pop() if self._idle else None
            self._busy += 1
        if context is not None:
            return context
        try:  # allocated outside the lock: an arena can be large
            return self._new_context()
        except BaseException:
            self._give_back(None)
            raise

    def _give_back(self, context: ctypes.c_void_p | None) -> None:
        with self._lock:
            self._busy -= 1
            if context is not None:
                self._idle.append(context)
            self._free_if_closed()

    def _new_context(self) -> ctypes.c_void_p:
        context = ctypes.c_void_p()
        status = self._fn.context_create(self._handle, ctypes.byref(context))
        if status != 0:
            raise PycError("E042", f"cannot create an execution context: {self._status(status)} "
                           f"(its arena is {self.arena_bytes} bytes)",
                           hint="run fewer threads at once, or on a machine with more memory")
        return context

    def _free_if_closed(self) -> None:
        """After close: free idle contexts now, and the model once no run is in flight.
        Called with the lock held."""
        if not self._closed:
            return
        while self._idle:
            self._fn.context_destroy(self._idle.pop())
        if self._busy == 0 and self._handle is not None:
            self._fn.destroy(self._handle)
            self._handle = None
            release = getattr(self._keepalive, "release", None)
            if release is not None:
                release()  # the code may go now (runtime/jit.py's PinnedJit)

    def close(self) -> None:
        """Free the model and its contexts (after the runs in flight finish), and the target
        a run fell back to; idempotent."""
        lock = getattr(self, "_lock", None)
        if lock is None:  # __init__ failed before the pool existed
            return
        replacement = getattr(self, "_replacement", None)
        if replacement is not None:
            replacement.close()
        if self.buckets is not None:
            self.buckets.close()
        telemetry, self.telemetry = self.telemetry, None
        if telemetry is not None:
            telemetry.close()
        with lock:
            self._closed = True
            self._free_if_closed()

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> CompiledModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
