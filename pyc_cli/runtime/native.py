"""Running a compiled artifact in-process through its C ABI (ctypes)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PycError
from ..input_ranges import InputRange, out_of_range_error
from ..ir.types import DType
from .timing import RunPlan, time_calls


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> TensorSpec:
        """From a manifest entry that artifact.reader.check_manifest has type-checked."""
        return cls(entry["name"], DType(entry["dtype"]).numpy, tuple(entry["shape"]))


class ModelFunctions:
    """The three ABI entry points, bound from a ctypes library or from JIT-resolved addresses."""

    def __init__(self, create: Any, run: Any, destroy: Any, status_string: Any) -> None:
        self.create, self.run, self.destroy, self.status_string = create, run, destroy, status_string

    @classmethod
    def from_library(cls, library: ctypes.CDLL) -> ModelFunctions:
        return cls.from_addresses({name: ctypes.cast(getattr(library, name), ctypes.c_void_p).value
                                   for name in ENTRY_POINTS})

    @classmethod
    def from_addresses(cls, addresses: dict[str, int]) -> ModelFunctions:
        create = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p,
                                  ctypes.POINTER(ctypes.c_void_p))(addresses["pyc_model_create"])
        run = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                               ctypes.POINTER(ctypes.c_void_p))(addresses["pyc_model_run"])
        destroy = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(addresses["pyc_model_destroy"])
        status = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_int)(addresses["pyc_model_status_string"])
        return cls(create, run, destroy, status)


ENTRY_POINTS = ("pyc_model_create", "pyc_model_run", "pyc_model_destroy", "pyc_model_status_string")
IO_ENTRY_POINTS = ("pyc_model_io_name", "pyc_model_io_dtype", "pyc_model_io_rank", "pyc_model_io_shape")
# DType -> the code model.c reports (codegen/cpu.py DTYPE_CODES; kept here so loading needs no codegen)
_DTYPE_CODES = {"f32": 1, "f64": 2, "f16": 3, "i8": 4, "i16": 5, "i32": 6, "i64": 7, "u8": 8,
                "bool": 9, "u16": 10, "u32": 11, "u64": 12}


def library_io(addresses: dict[str, int]) -> dict[str, list[tuple[bytes, int, tuple[int, ...]]]]:
    """(name, dtype code, shape) of every input and output, as the compiled library reports them."""
    name = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_int, ctypes.c_int)(addresses["pyc_model_io_name"])
    dtype = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int)(addresses["pyc_model_io_dtype"])
    rank = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int)(addresses["pyc_model_io_rank"])
    shape = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_int64), ctypes.c_int,
                             ctypes.c_int)(addresses["pyc_model_io_shape"])
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
                    _DTYPE_CODES.get(DType.from_numpy(s.dtype).value, 0), s.shape) for s in specs]
        if claimed != compiled[side]:
            raise PycError("E031", f"the {side} in manifest.json do not match the compiled library "
                           f"({_describe(claimed)} vs {_describe(compiled[side])})",
                           hint="the artifact was modified; rebuild it")


def _describe(entries: list[tuple[bytes, int, tuple[int, ...]]]) -> str:
    return ", ".join(f"{n.decode('utf-8', 'replace')!r}:{code}{list(shape)}" for n, code, shape in entries)


# PYC_STATUS_INDEX_OUT_OF_RANGE of runtime_c/pyc_runtime.h
STATUS_INDEX_OUT_OF_RANGE = 5


class CompiledModel:
    """A loaded model: create once, run many times (what a server or a benchmark needs)."""

    # the values each integer input may hold (input_ranges.json; None: not recorded), which
    # random inputs draw from and index errors are explained with
    input_ranges: dict[str, InputRange] | None = None

    def __init__(self, functions: ModelFunctions, weights_path: Path,
                 inputs: list[TensorSpec], outputs: list[TensorSpec], keepalive: Any = None,
                 arena_bytes: int = 0) -> None:
        self.inputs, self.outputs = inputs, outputs
        self.arena_bytes = arena_bytes
        self._fn = functions
        self._keepalive = keepalive  # the library or JIT that owns the code
        handle = ctypes.c_void_p()
        status = functions.create(str(weights_path).encode(), ctypes.byref(handle))
        if status != 0:
            raise PycError("E042", f"model creation failed: {self._status(status)}",
                           where=str(weights_path), hint="rebuild the artifact")
        self._handle = handle

    def _status(self, status: int) -> str:
        return (self._fn.status_string(status) or b"?").decode()

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        expected = {spec.name for spec in self.inputs}
        missing = sorted(expected - set(feeds))
        extra = sorted(set(feeds) - expected)
        if missing or extra:
            raise PycError("E041", f"inputs do not match the model: missing {missing}, "
                           f"unexpected {extra}", where=f"model inputs are {sorted(expected)}",
                           hint="name the inputs as the manifest lists them")
        arrays = []
        for spec in self.inputs:
            array = np.asarray(feeds[spec.name])
            if array.dtype != spec.dtype or tuple(array.shape) != spec.shape:
                raise PycError("E041", f"input {spec.name!r} is {array.dtype}{list(array.shape)}, "
                               f"the model needs {spec.dtype}{list(spec.shape)}",
                               where=f"input {spec.name!r}",
                               hint="rebuild with --input-shape for other shapes, or convert it")
            arrays.append(np.asarray(array, order="C"))
        return arrays

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = self.check_feeds(feeds)
        # one buffer per output position: ONNX lets a graph return one name twice
        buffers = self._output_buffers()
        self._run_arrays(arrays, buffers)
        return {spec.name: buffer for spec, buffer in zip(self.outputs, buffers)}

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
        return (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])

    def _run_arrays(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        self._run_pointers(self._pointers(inputs), self._pointers(outputs), inputs)

    def _run_pointers(self, in_ptrs: ctypes.Array, out_ptrs: ctypes.Array,
                      inputs: list[np.ndarray]) -> None:
        status = self._fn.run(self._handle, in_ptrs, out_ptrs)
        if status != 0:
            raise self._run_error(status, inputs)

    def _run_error(self, status: int, inputs: list[np.ndarray]) -> PycError:
        """E042 with the kernel's status; an index out of range is traced back to the input,
        node, value and valid range when an input holds it (E048)."""
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

    def time_runs(self, feeds: dict[str, np.ndarray], plan: RunPlan | int) -> list[float]:
        """Milliseconds per timed run under `plan` (an int: that many runs after one warm-up),
        buffers allocated and pointers bound once, as a server with preallocated buffers would."""
        if isinstance(plan, int):
            plan = RunPlan(warmup=1, repeat=plan)
        arrays = self.check_feeds(feeds)
        outputs = self._output_buffers()
        in_ptrs, out_ptrs = self._pointers(arrays), self._pointers(outputs)
        return time_calls(lambda: self._run_pointers(in_ptrs, out_ptrs, arrays), plan)

    def close(self) -> None:
        if getattr(self, "_handle", None):
            self._fn.destroy(self._handle)
            self._handle = None

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> CompiledModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
