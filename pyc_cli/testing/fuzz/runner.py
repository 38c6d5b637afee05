"""Builds and runs a model with PyC in a child process, and classifies the outcome per mode.

The worker (one spawned process, reused across cases, replaced when it dies or hangs) builds the
model once per mode, runs the artifact first on a different random feed (stale arena state must
not leak into the next run), then on each real feed, and checks the inputs are unchanged.
The parent compares with onnxruntime (oracle.py). Classes:
ok, refused (a PYC error code at build time), mismatch, ort_defect, undecided,
crash (traceback, signal, PYC-E090 or PYC-E020, a run-time error on valid inputs), hang (timeout).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ...targets.cpu import compile_cache
from .oracle import NAMES, Outputs, Tolerance, compare_all, judge, ort_outputs
from .per_node import per_node_verdict
from .values import feeds_for

MODES = ("latency_first", "balanced", "memory_first")
CLASSES = ("ok", "refused", "mismatch", "ort_defect", "undecided", "crash", "hang")
FAILING = ("mismatch", "crash", "hang")
MODE_TIMEOUT_S = 90.0
# refusals that are PyC's own failures on a valid graph: an internal error, and generated C
# that the C compiler rejects (the assembler messages the issue reported)
INTERNAL_CODES = ("E090", "E020")


@dataclass
class Outcome:
    """One build (mode) checked on one feed kind ("normal" or "special")."""

    mode: str
    feed: str
    cls: str
    detail: str = ""
    code: str = ""  # PYC error code of a refusal or crash

    def to_json(self) -> dict[str, str]:
        return {"mode": self.mode, "feed": self.feed, "class": self.cls, "code": self.code,
                "detail": self.detail[:1500]}


@dataclass
class CaseResult:
    outcomes: list[Outcome] = field(default_factory=list)

    def worst(self, feed: str | None = None) -> Outcome | None:
        """The most severe outcome (crash > hang > mismatch > undecided > ...)."""
        order = ["crash", "hang", "mismatch", "undecided", "ort_defect", "refused", "ok"]
        found = [o for o in self.outcomes if feed is None or o.feed == feed]
        return min(found, key=lambda o: order.index(o.cls)) if found else None


# ---------------------------------------------------------------- worker side


def _pyc_error_code(exc: BaseException) -> str:
    from ...errors import PycError

    return exc.code if isinstance(exc, PycError) else ""


def run_pyc(model_path: Path, out: Path, mode: str, warm: dict[str, np.ndarray],
            feeds: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Build in `mode`, run warm then each feed; a plain dict (picklable) describing what happened."""
    from ...api import build, load

    try:
        build(model_path, out, mode=mode)
    except Exception as exc:  # noqa: BLE001  (every failure is classified, not raised)
        code = _pyc_error_code(exc)
        if code and code not in INTERNAL_CODES:
            return {"status": "refused", "code": code, "detail": str(exc)}
        return {"status": "crash", "code": code, "detail": _exception_detail(exc)}
    try:
        model = load(out)
        _run(model, warm)
        results = {}
        for kind, feed in feeds.items():
            copies = {k: v.copy() for k, v in feed.items()}
            results[kind] = _run(model, feed)
            changed = [k for k in feed if not np.array_equal(feed[k], copies[k], equal_nan=True)
                       or feed[k].tobytes() != copies[k].tobytes()]
            if changed:
                return {"status": "crash", "code": "", "detail": f"inputs modified by run: {changed}"}
        model.close()
    except Exception as exc:  # noqa: BLE001
        return {"status": "crash", "code": _pyc_error_code(exc),
                "detail": f"run failed on valid inputs: {_exception_detail(exc)}"}
    return {"status": "ran", "outputs": results}


def _exception_detail(exc: BaseException) -> str:
    """The exception first (reports truncate from the end), then the innermost frames."""
    frames = "".join(traceback.format_tb(exc.__traceback__)[-4:])
    return f"{type(exc).__name__}: {exc}\n{frames}"


def _run(model: Any, feed: dict[str, np.ndarray]) -> Outputs:
    """(name, value) by position (a value returned twice keeps both entries)."""
    arrays = model.check_feeds(feed)
    outputs = [np.empty(spec.shape, spec.dtype) for spec in model.outputs]
    model._run_arrays(arrays, outputs)
    return [(spec.name, array) for spec, array in zip(model.outputs, outputs)]


def worker_main(conn: Connection) -> None:
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent went away
            return
        if job is None:
            return
        model_bytes, warm, feeds, modes = job
        work = Path(tempfile.mkdtemp(prefix="pyc-fuzz-"))
        # the modes of a small graph often emit the same C: compile it once per graph
        os.environ[compile_cache.ENV] = str(work / "compile-cache")
        try:
            path = work / "model.onnx"
            path.write_bytes(model_bytes)
            for mode in modes:
                conn.send(("start", mode))
                conn.send(("result", mode, run_pyc(path, work / mode, mode, warm, feeds)))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        conn.send(("end", None))


# ---------------------------------------------------------------- parent side


class Worker:
    """One child process; `run` returns per-mode results or marks the mode that crashed/hung."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.jobs = 0

    def run(self, model_bytes: bytes, warm: dict, feeds: dict, modes: tuple[str, ...],
            timeout: float) -> tuple[dict[str, dict[str, Any]], bool]:
        """Results per mode, and whether the worker is still usable."""
        self.jobs += 1
        self.conn.send((model_bytes, warm, feeds, modes))
        results: dict[str, dict[str, Any]] = {}
        current = None
        while True:
            if not self.conn.poll(timeout):
                results[current or modes[0]] = {"status": "hang", "detail": f"no answer in {timeout:.0f} s"}
                return results, False
            try:
                kind, *rest = self.conn.recv()
            except (EOFError, OSError):
                self.process.join(2)
                code = self.process.exitcode
                results[current or modes[0]] = {"status": "crash", "code": "",
                                                "detail": f"worker died (exit code {code}) in mode {current}"}
                return results, False
            if kind == "start":
                current = rest[0]
            elif kind == "result":
                results[rest[0]] = rest[1]
            else:
                return results, True

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
                self.process.join(2)
            except (OSError, BrokenPipeError):
                pass
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)


class Runner:
    """Checks models against onnxruntime with a reusable worker (recycled every `recycle` jobs)."""

    def __init__(self, modes: tuple[str, ...] = MODES, timeout: float = MODE_TIMEOUT_S,
                 recycle: int = 40) -> None:
        self.modes, self.timeout, self.recycle = modes, timeout, recycle
        self.worker: Worker | None = None

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ready_worker(self) -> Worker:
        """The worker, replaced by a fresh one every `recycle` jobs (or after it died)."""
        if self.worker is None or self.worker.jobs >= self.recycle:
            self.close()
            self.worker = Worker()
        return self.worker

    def run_modes(self, model_bytes: bytes, warm: dict, feeds: dict) -> dict[str, dict[str, Any]]:
        """Every mode's result; after a crash or hang the remaining modes run in a new worker
        (each mode's own outcome is recorded, not the first one's)."""
        results: dict[str, dict[str, Any]] = {}
        while pending := tuple(m for m in self.modes if m not in results):
            found, alive = self._ready_worker().run(model_bytes, warm, feeds, pending,
                                                    self.timeout)
            results.update(found)
            if not alive:
                self.close()
        return results

    def check(self, model: onnx.ModelProto, seed: int, special: bool) -> CaseResult:
        model_bytes = model.SerializeToString()
        feeds = {"normal": feeds_for(model, seed)}
        if special:
            feeds["special"] = feeds_for(model, seed, special=True)
        expected = {}
        for kind, feed in feeds.items():
            try:
                expected[kind] = ort_outputs(model_bytes, feed)
            except Exception as exc:  # noqa: BLE001  (onnxruntime failing is not PyC's finding)
                expected[kind] = exc
        results = self.run_modes(model_bytes, feeds_for(model, seed + 7919), feeds)
        tolerance = Tolerance.of(model)
        outcome = CaseResult()
        for mode in self.modes:
            result = results[mode]
            for kind in feeds:
                outcome.outcomes.append(classify(model, mode, kind, result, feeds[kind],
                                                 expected[kind], tolerance))
        for kind in feeds:
            self._pin_to_nodes(model, kind, feeds[kind], expected[kind], results, outcome, tolerance)
        return outcome

    def pyc_outputs(self, model_bytes: bytes, feed: dict[str, np.ndarray]) -> Outputs | None:
        """One latency_first build of `model_bytes` run on `feed`; None where it did not run."""
        found, alive = self._ready_worker().run(model_bytes, feed, {"feed": feed},
                                                ("latency_first",), self.timeout)
        if not alive:
            self.close()
        result = found.get("latency_first", {})
        return result["outputs"]["feed"] if result.get("status") == "ran" else None

    def _pin_to_nodes(self, model: onnx.ModelProto, kind: str, feed: dict[str, np.ndarray],
                      expected: Outputs | Exception, results: dict[str, dict[str, Any]],
                      outcome: CaseResult, tolerance: Tolerance) -> None:
        """Where every mode mismatches on values alone, judge the nodes that differ given the
        same inputs (per_node.py) and let that verdict stand for the graph's."""
        found = [o for o in outcome.outcomes if o.feed == kind]
        if isinstance(expected, Exception) or not all(o.cls == "mismatch" for o in found):
            return
        pyc = results[self.modes[0]]["outputs"][kind]
        problems = compare_all(expected, pyc, tolerance)
        if any(p.startswith(NAMES) or "dtype" in p or "shape" in p for p in problems):
            return
        verdict = per_node_verdict(model, feed, pyc, tolerance, self.pyc_outputs)
        if verdict is None:
            return
        for o in found:
            o.cls, o.detail = verdict.cls, f"{o.detail} -- per node: {verdict.detail}"


def classify(model: onnx.ModelProto, mode: str, kind: str, result: dict[str, Any],
             feed: dict[str, np.ndarray], expected: Outputs | Exception, tolerance: Tolerance) -> Outcome:
    status = result["status"]
    if status in ("refused", "crash", "hang"):
        return Outcome(mode, kind, status, result.get("detail", ""), result.get("code", ""))
    if isinstance(expected, Exception):
        return Outcome(mode, kind, "undecided", f"onnxruntime failed to run: {expected}")
    verdict = judge(model, feed, expected, result["outputs"][kind], tolerance)
    return Outcome(mode, kind, verdict.cls, verdict.detail)
