"""Sampled per-kernel timings for run telemetry (pyc_cli/telemetry.py): a sampled run is run
once more through the `pyc run --profile` build of the plan that served it (runtime/profile.py:
the artifact's kernels behind a run function reading the clock after every call, reached through
the artifact's own entry points, so a symbolic plan is timed at the run's shapes), in a
background thread, so the run that was sampled does not wait. The profiling library is compiled in that
thread on the plan's first sample (into a temporary directory, removed at close); a sample
arriving while the thread is busy is dropped. A plan that cannot be profiled (no sources, a
PyC that does not regenerate its model.c; the generic plan of an artifact with shape buckets,
whose dispatch table the profiling build does not regenerate) is skipped from then on, with one
warning."""

from __future__ import annotations

import contextlib
import ctypes
import queue
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact.reader import read_manifest
from ..errors import PycError, PycWarning

# (plan, dims, [(call, node, op, kernel, signature, ms)]) -> recorder
Sink = Callable[[str, dict[str, int], list[tuple[Any, ...]]], None]


class _PlanProfiler:
    """One plan's profiling model (the artifact's kernels behind timed steps, profile_run.c.j2),
    run through the artifact's own entry points at the run's shapes, and what names its calls."""

    def __init__(self, root: Path, manifest: dict[str, Any], plan: str, work: Path) -> None:
        from ..passes.select_kernels import symbolic_dims_of
        from ..passes.tuning import kernel_signature, signature_key
        from ..runtime.native import (
            RUNTIME_OFFSET_ENTRY_POINTS,
            SHAPED_ENTRY_POINTS,
            CompiledModel,
            ModelFunctions,
            ShapedFunctions,
            TensorSpec,
            library_addresses,
        )
        from .debug_build import called_nodes, compile_variant, read_plan
        from .profile import profile_sources

        where = root if plan == "generic" else root / "buckets" / plan
        own = manifest if plan == "generic" else read_manifest(where)
        weights = where / own["weights"]["file"]
        if "shared" in own["weights"]:  # a bucket reading its artifact's weights
            weights = root / manifest["weights"]["file"]
        source = read_plan(where, own)
        normal, timed, count = profile_sources(source, own, borrows_weights=plan != "generic")
        library_path = compile_variant(where, own, normal, timed, work)
        library = ctypes.CDLL(str(library_path))
        prefix = own["symbol_prefix"]
        self.model = CompiledModel(ModelFunctions.from_library(library, prefix), weights,
                                   [TensorSpec.from_manifest(e) for e in own["inputs"]],
                                   [TensorSpec.from_manifest(e) for e in own["outputs"]], library)
        if "dims" in own:  # a symbolic plan: timed at the run's own shapes
            suffixes = SHAPED_ENTRY_POINTS + tuple(
                s for s in RUNTIME_OFFSET_ENTRY_POINTS if hasattr(library, f"{prefix}_{s}"))
            self.model.shaped = ShapedFunctions(library_addresses(library, prefix, suffixes),
                                                own["dims"])
        self._sink = getattr(library, f"{prefix}_profile_sink")
        self._sink.restype, self._sink.argtypes = None, [ctypes.c_void_p]
        self.count = count
        graph = source.graph
        self.calls = [(index, node.name, node.op, node.ann.kernel_name or "",
                       None if symbolic_dims_of(node, graph)
                       else signature_key(kernel_signature(node, graph, "cpu")))
                      for index, node in enumerate(called_nodes(graph))]

    def time(self, feeds: Mapping[str, np.ndarray]) -> list[tuple[Any, ...]]:
        """One run of `feeds`, each kernel call's milliseconds (one run at a time: the sink is
        the library's)."""
        row = np.zeros(max(1, self.count), np.int64)
        self._sink(row.ctypes.data)
        try:
            self.model.run(dict(feeds))
        finally:
            self._sink(None)
        return [(*call, float(row[call[0]]) / 1e6) for call in self.calls]


class KernelSampler:
    """The background thread timing sampled runs kernel by kernel."""

    def __init__(self, root: Path, manifest: dict[str, Any], sink: Sink) -> None:
        self.root, self.manifest, self.sink = root, manifest, sink
        self._queue: queue.Queue[tuple[str, dict[str, int], dict[str, np.ndarray]] | None] = \
            queue.Queue(maxsize=1)
        self._profilers: dict[str, _PlanProfiler | None] = {}
        self._work = Path(tempfile.mkdtemp(prefix="pyc-telemetry-"))
        self._thread = threading.Thread(target=self._loop, name="pyc-telemetry", daemon=True)
        self._thread.start()

    def submit(self, plan: str, dims: dict[str, int], feeds: Mapping[str, Any]) -> None:
        """Queue a copy of the run's inputs (dropped when a sample is still waiting)."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait((plan, dict(dims), {k: np.array(v) for k, v in feeds.items()}))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                plan, dims, feeds = item
                profiler = self._profiler(plan)
                if profiler is not None:
                    self.sink(plan, dims, profiler.time(feeds))
            except Exception as error:  # a sample never breaks the model's runs
                self._warn(f"a kernel timing sample failed: {error}")
            finally:
                self._queue.task_done()

    def _profiler(self, plan: str) -> _PlanProfiler | None:
        if plan not in self._profilers:
            try:
                self._profilers[plan] = _PlanProfiler(self.root, self.manifest, plan,
                                                      self._work / plan)
            except (PycError, OSError, KeyError) as error:
                self._profilers[plan] = None
                self._warn(f"plan {plan}'s kernels are not timed: {error}")
        return self._profilers[plan]

    def _warn(self, what: str) -> None:
        warnings.warn(PycWarning(PycError("E068", f"telemetry: {what}", where=str(self.root),
                                          hint="the runs' shapes and latencies are still "
                                          "recorded")), stacklevel=2)

    def drain(self) -> None:
        """Wait until every queued sample is timed (tests, close)."""
        self._queue.join()

    def close(self) -> None:
        self.drain()
        self._queue.put(None)
        self._thread.join(timeout=10)
        for profiler in self._profilers.values():
            if profiler is not None:
                profiler.model.close()
        shutil.rmtree(self._work, ignore_errors=True)
