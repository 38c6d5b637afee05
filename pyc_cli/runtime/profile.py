"""`pyc run --profile`: the time of every kernel call of a CPU artifact.

The artifact's kernels are compiled again (in a temporary directory, with the flags the
artifact recorded) behind a run function that reads the monotonic clock after every call
(codegen_templates/c/profile_run.c.j2), and run with the artifact's thread settings. The
report gives each call's median over the timed runs, its share of the run, and its
throughput where the op counts floating-point work (the ops' `flops`, as kernel selection
uses them). A clock read costs some tens of nanoseconds per call, so the calls' sum
slightly exceeds a plain run's time.
"""

from __future__ import annotations

import ctypes
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact.reader import EXPLAIN_FILES, require_files
from ..errors import PycError
from ..ops import registry
from ..runtime.native import CompiledModel, ModelFunctions, TensorSpec
from ..targets.cpu.target import CpuTarget
from .debug_build import (
    ArtifactPlan,
    artifact_calls,
    called_nodes,
    compile_variant,
    model_info,
    read_plan,
)

# ops whose `flops` counts multiply-adds worth a GFLOP/s column (the default counts outputs)
FLOP_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "pyc.Attention", "Einsum",
                      "pyc.ConvBlocked"})


@dataclass(frozen=True)
class CallTime:
    """One kernel call: its node, kernel and median time over the timed runs."""

    call: int
    node: str
    op: str
    kernel: str
    median_ms: float
    flops: int  # 0 where the op's work is not floating-point multiply-adds

    @property
    def gflops(self) -> float | None:
        return self.flops / self.median_ms / 1e6 if self.flops and self.median_ms > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {"call": self.call, "node": self.node, "op": self.op, "kernel": self.kernel,
                "median_ms": self.median_ms, "gflops": self.gflops}


@dataclass(frozen=True)
class Profile:
    calls: list[CallTime]
    runs: int
    total_ms: float  # median over runs of the calls' summed time

    def to_json(self) -> dict[str, Any]:
        return {"runs": self.runs, "total_ms": self.total_ms,
                "calls": [call.to_json() for call in self.calls]}


class ProfiledModel(CompiledModel):
    """The artifact's model with the timing entry point NAME_run_profile."""

    def __init__(self, library_path: Path, prefix: str, weights_path: Path,
                 inputs: list[TensorSpec], outputs: list[TensorSpec], calls: int) -> None:
        library = ctypes.CDLL(str(library_path))
        super().__init__(ModelFunctions.from_library(library, prefix), weights_path, inputs,
                         outputs, library)
        pointer_array = ctypes.POINTER(ctypes.c_void_p)
        self._run_profile = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.c_void_p, pointer_array, pointer_array,
            ctypes.POINTER(ctypes.c_int64))(
            ctypes.cast(getattr(library, f"{prefix}_run_profile"), ctypes.c_void_p).value or 0)
        self.call_count = calls

    def step_times(self, feeds: dict[str, np.ndarray], warmup: int, runs: int) -> np.ndarray:
        """Nanoseconds per (timed run, kernel call)."""
        self._check_open()
        arrays = self.check_feeds(feeds)
        outputs = self._output_buffers()
        in_ptrs, out_ptrs = self._pointers(arrays), self._pointers(outputs)
        times = np.zeros((warmup + runs, max(1, self.call_count)), np.int64)
        for row in times:
            status = self._run_profile(self._handle, in_ptrs, out_ptrs,
                                       row.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)))
            if status != 0:
                raise PycError("E042", f"profiling run failed: {self._status(status)}",
                               hint="check the input values (e.g. index inputs in range)")
        return times[warmup:, :self.call_count]


def profile_sources(source: ArtifactPlan, manifest: dict[str, Any],
                    borrows_weights: bool = False) -> tuple[str, str, int]:
    """(model.c as the artifact has it, model.c with the timed run function, kernel calls);
    `borrows_weights`: the artifact is a shape bucket's plan (model_info)."""
    calls = artifact_calls(source, manifest)
    info = model_info(source, manifest, borrows_weights)
    return (CpuTarget.model_source(info, calls), CpuTarget.model_source(info, calls, profile=True),
            len(calls))


def profile_run(artifact: Path, manifest: dict[str, Any], feeds: dict[str, np.ndarray],
                warmup: int, runs: int) -> Profile:
    """Time every kernel call of a CPU artifact over `runs` runs after `warmup` untimed ones."""
    if manifest["target"] != "cpu":
        raise PycError("E050", f"--profile times a CPU build's kernels; this artifact's target "
                       f"is {manifest['target']}", where=str(artifact),
                       hint="profile a CPU artifact (pyc build --target cpu)")
    require_files(artifact, manifest, [*EXPLAIN_FILES[:3], "src/model.c", "src/model.h",
                                       "src/pyc_runtime.c", "src/pyc_runtime.h"], "--profile")
    source = read_plan(artifact, manifest)
    normal, timed, count = profile_sources(source, manifest)
    with tempfile.TemporaryDirectory(prefix="pyc-profile-") as work:
        library = compile_variant(artifact, manifest, normal, timed, Path(work))
        model = ProfiledModel(library, manifest["symbol_prefix"], artifact / "weights.bin",
                              [TensorSpec.from_manifest(e) for e in manifest["inputs"]],
                              [TensorSpec.from_manifest(e) for e in manifest["outputs"]], count)
        try:
            times = model.step_times(feeds, warmup, runs)
        finally:
            model.close()
    return summarize(source, times)


def summarize(source: ArtifactPlan, times: np.ndarray) -> Profile:
    graph = source.graph
    calls = []
    for index, node in enumerate(called_nodes(graph)):
        op = registry.get(node.op)
        # a symbolic build's debug copy runs at the upper bounds: its flops there (int of a Dim)
        flops = int(op.flops(node, graph)) if node.op in FLOP_OPS else 0
        calls.append(CallTime(index, node.name, node.op, node.ann.kernel_name or "",
                              float(np.median(times[:, index])) / 1e6, flops))
    total = statistics.median(float(row.sum()) / 1e6 for row in times)
    return Profile(calls, len(times), total)
