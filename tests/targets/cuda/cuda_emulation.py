"""Running generated CUDA kernels on the CPU (emulate_cuda.h), for tests without a GPU:
`compile_kernels` builds a model.cu into a shared library, `launch` runs one kernel over a grid,
and `FakeDriver` stands in for cuda-python's driver module (host memory as "device" memory,
kernels from the emulated library), so runtime/cuda.py's whole path runs as on a GPU.

Stream capture is emulated as CUDA does it: between cuStreamBeginCapture and cuStreamEndCapture
the stream's asynchronous work (memsets, copies, kernel launches) is recorded, not run, with
each kernel's argument values read at capture time; synchronising a capturing stream or a
synchronous copy during a capture is refused (CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED), and a
call that fails during a capture invalidates it. cuGraphLaunch replays the recorded work in
order."""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HEADER = Path(__file__).resolve().parent / "emulate_cuda.h"
CXX = shutil.which("g++") or shutil.which("clang++")


_BUILT: dict[str, ctypes.CDLL] = {}  # by source digest: a model's kernels compile once a session


def compile_kernels(source: str, work: Path) -> ctypes.CDLL:
    digest = hashlib.sha256(source.encode()).hexdigest()
    if digest in _BUILT:
        return _BUILT[digest]
    work = Path(tempfile.mkdtemp(prefix="pyc-emu-", dir=work))
    (work / "model.cu").write_text(source)
    library = work / "emulated.so"
    built = subprocess.run([CXX or "c++", "-std=c++20", "-O1", "-pthread", "-shared", "-fPIC", "-w",
                            "-x", "c++", "-include", str(HEADER), "-o", str(library),
                            str(work / "model.cu")], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    lib = ctypes.CDLL(str(library))
    lib.pyc_emu_launch.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 6 + [ctypes.c_int, ctypes.c_void_p]
    _BUILT[digest] = lib
    return lib


def launch(lib: ctypes.CDLL, kernel: str, grid: list[int], block: list[int], pointers: list[int]) -> None:
    args = (ctypes.c_void_p * max(1, len(pointers)))(*pointers)
    fn = ctypes.cast(getattr(lib, kernel), ctypes.c_void_p)
    lib.pyc_emu_launch(fn, *grid, *block, len(pointers), args)


class FakeDriver:
    """The driver calls runtime/cuda.py makes, answered on the CPU. `arg_counts` gives each
    kernel's number of parameters (cuLaunchKernel's array carries no length); `fail` names a
    call to answer with an error; `capability` and `version` describe the pretend GPU."""

    CUdevice_attribute = SimpleNamespace(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR="major",
                                         CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR="minor")
    CUfunction_attribute = SimpleNamespace(
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES="max_dynamic_shared")
    CUstreamCaptureMode = SimpleNamespace(CU_STREAM_CAPTURE_MODE_GLOBAL=0,
                                          CU_STREAM_CAPTURE_MODE_THREAD_LOCAL=1,
                                          CU_STREAM_CAPTURE_MODE_RELAXED=2)
    # TMA tensor maps (runtime/tensor_maps.py): the enums it names, and maps in the emulator's
    # own format (emulate_cuda.h reads them)
    CUtensorMapDataType = SimpleNamespace(CU_TENSOR_MAP_DATA_TYPE_FLOAT16=6,
                                          CU_TENSOR_MAP_DATA_TYPE_FLOAT32=7,
                                          CU_TENSOR_MAP_DATA_TYPE_BFLOAT16=9)
    CUtensorMapInterleave = SimpleNamespace(CU_TENSOR_MAP_INTERLEAVE_NONE=0)
    CUtensorMapSwizzle = SimpleNamespace(CU_TENSOR_MAP_SWIZZLE_128B=3)
    CUtensorMapL2promotion = SimpleNamespace(CU_TENSOR_MAP_L2_PROMOTION_L2_256B=3)
    CUtensorMapFloatOOBfill = SimpleNamespace(CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE=0)
    cuuint32_t = cuuint64_t = int
    # cuLaunchKernelEx's configuration (programmatic dependents: runtime/cuda.py)
    CUlaunchAttributeID = SimpleNamespace(CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION=6)

    @staticmethod
    def CUlaunchAttribute() -> SimpleNamespace:  # noqa: N802 (cuda-python's name)
        return SimpleNamespace(id=0, value=SimpleNamespace(programmaticStreamSerializationAllowed=0))

    @staticmethod
    def CUlaunchConfig() -> SimpleNamespace:  # noqa: N802 (cuda-python's name)
        return SimpleNamespace(attrs=[], numAttrs=0)

    ERROR = 999  # CUDA_ERROR_UNKNOWN
    CAPTURE_UNSUPPORTED, CAPTURE_INVALIDATED = 900, 901  # CUDA_ERROR_STREAM_CAPTURE_*

    def __init__(self, lib: ctypes.CDLL | None, arg_counts: dict[str, int],
                 capability: tuple[int, int] = (9, 0), version: int = 13000,
                 free: int = 1 << 34, fail: str = "") -> None:
        self.lib, self.arg_counts = lib, arg_counts
        self.capability, self.version, self.free, self.fail = capability, version, free, fail
        self.memory: dict[int, np.ndarray] = {}
        self.loaded: list[bytes] = []
        self.launches = 0  # kernels run (one by one or inside a graph)
        self.dependent_launches = 0  # of them, launched as programmatic dependents
        self.graph_launches = 0
        self.calls: Counter[str] = Counter()  # driver calls made, by name
        self.capturing: dict[object, list[Callable[[], None]]] = {}  # stream -> recorded work
        self.invalidated: set[object] = set()  # streams whose capture saw a failed call
        self.graphs: set[int] = set()  # live graphs and instances (ids), for leak checks
        self.stream_flags: int | None = None
        self.function_attributes: dict[tuple[object, object], int] = {}  # cuFuncSetAttribute
        self.tensor_maps: list[list[int]] = []  # cuTensorMapEncodeTiled's, in order

    def __getattr__(self, name: str):  # noqa: ANN204 (the calls the runtime makes, by name)
        if name.startswith("cu"):
            handler = getattr(self, "_" + name)
            return lambda *args: self._call(name, handler, args)
        raise AttributeError(name)

    def _call(self, name: str, handler: Callable[..., tuple], args: tuple) -> tuple:
        self.calls[name] += 1
        if name == self.fail:
            self.invalidated.update(self.capturing)  # a failed call ends a capture's validity
            if name == "cuStreamEndCapture":  # and a failed end of capture still ends it
                self.capturing.clear()
                self.invalidated.clear()
            return (self.ERROR,)
        return handler(*args)

    def _on_stream(self, stream: object, work: Callable[[], None]) -> tuple:
        """Asynchronous work: recorded while the stream captures, else done now."""
        if stream in self.capturing:
            self.capturing[stream].append(work)
        else:
            work()
        return (0,)

    def _alloc(self, nbytes: int) -> tuple[int, int]:
        block = np.empty(nbytes, np.uint8)
        address = block.ctypes.data
        self.memory[address] = block
        return 0, address

    def _cuInit(self, flags: int) -> tuple:  # noqa: ANN001
        return (0,)

    def _cuDeviceGetCount(self) -> tuple:
        return 0, 1

    def _cuDeviceGet(self, index: int) -> tuple:
        return 0, index

    def _cuDeviceGetName(self, length: int, device: int) -> tuple:
        return 0, b"Emulated GPU".ljust(length, b"\0")

    def _cuDeviceGetAttribute(self, attribute: str, device: int) -> tuple:
        return 0, self.capability[0] if attribute == "major" else self.capability[1]

    def _cuDriverGetVersion(self) -> tuple:
        return 0, self.version

    def _cuDevicePrimaryCtxRetain(self, device: int) -> tuple:
        return 0, "context"

    def _cuDevicePrimaryCtxRelease(self, device: int) -> tuple:
        return (0,)

    def _cuCtxSetCurrent(self, context: object) -> tuple:
        return (0,)

    def _cuModuleLoadData(self, image: int) -> tuple:
        self.loaded.append(ctypes.string_at(image, 4))
        return 0, "module"

    def _cuModuleUnload(self, module: object) -> tuple:
        return (0,)

    def _cuModuleGetFunction(self, module: object, name: bytes) -> tuple:
        return 0, name.decode()

    def _cuFuncSetAttribute(self, function: object, attribute: object, value: int) -> tuple:
        self.function_attributes[(function, attribute)] = value
        return (0,)

    def _cuMemGetInfo(self) -> tuple:
        return 0, self.free, self.free

    def _cuMemAlloc(self, nbytes: int) -> tuple:
        return self._alloc(nbytes)

    def _cuMemAllocHost(self, nbytes: int) -> tuple:
        return self._alloc(nbytes)

    def _cuMemFree(self, address: int) -> tuple:
        self.memory.pop(address)
        return (0,)

    _cuMemFreeHost = _cuMemFree

    def _cuMemcpyHtoD(self, dst: int, src: int, nbytes: int) -> tuple:
        if self.capturing:  # a synchronous copy (legacy stream) while a stream captures
            self.invalidated.update(self.capturing)
            return (self.CAPTURE_UNSUPPORTED,)
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def _cuMemcpyHtoDAsync(self, dst: int, src: int, nbytes: int, stream: object) -> tuple:
        return self._on_stream(stream, lambda: ctypes.memmove(dst, src, nbytes))

    _cuMemcpyDtoHAsync = _cuMemcpyHtoDAsync

    def _cuMemsetD32Async(self, dst: int, value: int, count: int, stream: object) -> tuple:
        def memset() -> None:
            (ctypes.c_uint32 * count).from_address(dst)[:] = [value] * count
        return self._on_stream(stream, memset)

    def _cuStreamCreate(self, flags: int) -> tuple:
        self.stream_flags = flags
        return 0, "stream"

    def _cuCtxSynchronize(self) -> tuple:
        if self.capturing:  # it would wait for the capturing stream
            self.invalidated.update(self.capturing)
            return (self.CAPTURE_UNSUPPORTED,)
        return (0,)

    def _cuStreamSynchronize(self, stream: object) -> tuple:
        if stream in self.capturing:
            self.invalidated.add(stream)
            return (self.CAPTURE_UNSUPPORTED,)
        return (0,)

    def _cuStreamBeginCapture(self, stream: object, mode: int) -> tuple:
        if stream in self.capturing or mode not in (0, 1, 2):
            return (self.ERROR,)
        self.capturing[stream] = []
        return (0,)

    def _cuStreamEndCapture(self, stream: object) -> tuple:
        if stream not in self.capturing:
            return (self.ERROR,)
        work = self.capturing.pop(stream)
        if stream in self.invalidated:
            self.invalidated.discard(stream)
            return self.CAPTURE_INVALIDATED, None
        graph = ("graph", tuple(work))
        self.graphs.add(id(graph))
        return 0, graph

    def _cuGraphInstantiate(self, graph: tuple, flags: int) -> tuple:
        assert id(graph) in self.graphs, "instantiating a destroyed graph"
        instance = ("instance", graph[1])
        self.graphs.add(id(instance))
        return 0, instance

    def _cuGraphLaunch(self, instance: tuple, stream: object) -> tuple:
        assert id(instance) in self.graphs, "launching a destroyed graph"
        def replay() -> None:
            for work in instance[1]:
                work()
        self.graph_launches += 1
        return self._on_stream(stream, replay)

    def _cuGraphExecDestroy(self, instance: tuple) -> tuple:
        self.graphs.remove(id(instance))
        return (0,)

    _cuGraphDestroy = _cuGraphExecDestroy

    def _cuStreamDestroy(self, stream: object) -> tuple:
        return (0,)

    def _cuLaunchKernel(self, fn: str, gx: int, gy: int, gz: int, bx: int, by: int, bz: int,
                        shared: int, stream: object, params: int, extra: int) -> tuple:
        count = self.arg_counts[fn]
        slots = (ctypes.c_uint64 * count).from_address(params)
        pointers = [ctypes.c_uint64.from_address(slot).value for slot in slots]  # read now, as CUDA
        assert self.lib is not None
        lib = self.lib

        def run() -> None:
            launch(lib, fn, [gx, gy, gz], [bx, by, bz], pointers)
            self.launches += 1
        return self._on_stream(stream, run)

    def _cuLaunchKernelEx(self, config: SimpleNamespace, fn: str, params: int, extra: int) -> tuple:
        """A programmatic dependent: run in stream order, as it is on a GPU once the kernel
        waits for the previous grid (which the emulated griddepcontrol needs no code for)."""
        (attribute,) = config.attrs[:config.numAttrs]
        assert attribute.id == 6 and attribute.value.programmaticStreamSerializationAllowed == 1

        def counted() -> None:
            self.dependent_launches += 1
        self._on_stream(config.hStream, counted)
        return self._cuLaunchKernel(fn, config.gridDimX, config.gridDimY, config.gridDimZ,
                                    config.blockDimX, config.blockDimY, config.blockDimZ,
                                    config.sharedMemBytes, config.hStream, params, extra)

    def _cuTensorMapEncodeTiled(self, dtype: int, rank: int, address: int, dims: list[int],
                                strides: list[int], box: list[int], element_strides: list[int],
                                interleave: int, swizzle: int, promotion: int, fill: int) -> tuple:
        """A map in emulate_cuda.h's format: [0] address, [1] rank | element size << 8, [2..6]
        dims, [7..10] byte strides, [11..13] the box, two 32-bit values a word."""
        assert swizzle == 3 and interleave == 0 and fill == 0 and set(element_strides) == {1}
        assert address % 16 == 0 and all(s % 16 == 0 for s in strides)
        size = {6: 2, 7: 4, 9: 2}[dtype]
        words = [0] * 16
        words[0], words[1] = address, rank | size << 8
        words[2:2 + rank] = dims
        words[7:7 + rank - 1] = strides
        for d, extent in enumerate(box):
            words[11 + d // 2] |= extent << (32 * (d % 2))
        self.tensor_maps.append(words)
        return 0, SimpleNamespace(opaque=words)

    def _cuEventCreate(self, flags: int) -> tuple:
        return 0, "event"

    def _cuEventRecord(self, event: object, stream: object) -> tuple:
        return (0,)

    def _cuEventSynchronize(self, event: object) -> tuple:
        return (0,)

    def _cuEventElapsedTime(self, start: object, stop: object) -> tuple:
        return 0, 0.25

    def _cuEventDestroy(self, event: object) -> tuple:
        return (0,)

    def _cuGetErrorName(self, status: int) -> tuple:
        return 0, b"CUDA_ERROR_UNKNOWN"
