"""ONNX backend node-test conformance of every op PyC declares supported.

Takes every case of `onnx.backend.test.case.node.collect_testcases()` whose ops are all in the
op registry (an op declared supported runs every one of its cases), builds it through the full
`pyc_cli.build` path and runs every data set, comparing outputs with the stored expected ones
(dtype and shape exactly, values with the case's rtol/atol or, for float16, within 2 float16 ulps;
NaN positions must match).

Outcomes per case: `pass`; `rejected` (a reason-coded PycError E007/E008/E010/E051 at build time whose
message contains the reason listed for the case in tests/conformance_rejections.json); `fail`
(wrong numbers, a crash, an internal error, an unlisted rejection, or a listed rejection that no
longer happens).

    python tests/conformance.py [--ops Relu,Add] [--jobs N] [--report docs/conformance.json]

Shape-like operands (the inputs an op unit lists in `static_inputs`: Reshape's shape, Slice's
starts, reduction axes, ...) must be compile-time constants for a static-shape AOT compiler; where
a case feeds them as graph inputs, they are bound to the data set's values as initializers before
the build (the model is otherwise unchanged, and every output is still compared).

Integer inputs that stay inputs may decide sizes computed at run time (a window function's
Range to its size input, CenterCropPad's pads from its shape input: issue #15, point 2); the
build declares their values as a deployment would (`input_values`, `pyc build --input-values`):
from min(0, the smallest value) to max(64, twice the largest) over the case's data sets, so the
arena is sized for a bound the data never reaches and the run computes the actual sizes.

Cases run in worker processes (one per job, reused across cases; a worker that crashes or times
out is replaced and its case fails).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

REPO = Path(__file__).resolve().parent.parent
REJECTIONS_FILE = Path(__file__).resolve().parent / "conformance_rejections.json"
# E051: a symbolic-dims refusal, which the declared input values (value dims) can lead to
REJECT_CODES = ("E007", "E008", "E010", "E051")
CASE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Case:
    """What a worker needs to run one node test (picklable)."""

    name: str
    ops: tuple[str, ...]
    model: bytes
    data_sets: list[tuple[list[np.ndarray], list[np.ndarray]]]
    rtol: float
    atol: float


@dataclass
class CaseResult:
    name: str
    ops: list[str]
    outcome: str  # "pass" | "rejected" | "fail"
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    per_op: dict[str, dict[str, int]] = field(default_factory=dict)
    cases: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0

    def failures(self, op: str | None = None) -> list[CaseResult]:
        return [c for c in self.cases if c.outcome == "fail" and (op is None or op in c.ops)]

    def to_json(self) -> dict[str, Any]:
        totals = {k: sum(1 for c in self.cases if c.outcome == k) for k in ("pass", "rejected", "fail")}
        return {
            "source": "onnx.backend.test.case.node.collect_testcases()",
            "declared_ops": len(self.per_op),
            "cases_run": len(self.cases),
            "passed": totals["pass"], "rejected": totals["rejected"], "failed": totals["fail"],
            "seconds": round(self.seconds, 1),
            "ops": self.per_op,
            "rejections": {c.name: c.detail for c in self.cases if c.outcome == "rejected"},
            "failures": {c.name: c.detail for c in self.cases if c.outcome == "fail"},
        }


# ---------------------------------------------------------------- selecting cases


def declared_ops() -> list[str]:
    """Ops of the default ONNX domain the registry declares supported (pyc.* are internal)."""
    from pyc_cli.ops import all_ops

    return [name for name in all_ops() if "." not in name]


def case_ops(model: Any) -> tuple[str, ...]:
    from pyc_cli.ops.registry import qualified

    return tuple(sorted({qualified(n.domain, n.op_type) for n in model.graph.node}))


@contextlib.contextmanager
def _frozen_image_data() -> Iterator[None]:
    """onnx generates its ImageDecoder cases with Pillow when it can import it, else takes the
    frozen data it ships. In some test processes Pillow's PPM round trip failed there (the case
    module's import raised half-way, and every later collection in that process then failed on
    names the half-import had registered), so collection never imports Pillow: the same cases,
    from onnx's frozen data, whatever ran in the process before."""
    saved = sys.modules.get("PIL.Image", _ABSENT)
    sys.modules["PIL.Image"] = None  # type: ignore[assignment]  (import PIL.Image raises)
    try:
        yield
    finally:
        if saved is _ABSENT:
            del sys.modules["PIL.Image"]
        else:
            sys.modules["PIL.Image"] = saved  # type: ignore[assignment]


_ABSENT = object()


def collect_cases(ops: Iterable[str] | None = None) -> list[Case]:
    """Node test cases whose ops are all declared, restricted to those touching `ops` if given."""
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    declared = set(declared_ops())
    wanted = set(ops) if ops is not None else declared
    with warnings.catch_warnings(), _frozen_image_data():
        warnings.simplefilter("ignore")
        testcases = collect_testcases()
    cases = []
    for tc in testcases:
        used = case_ops(tc.model)
        if used and set(used) <= declared and wanted & set(used):
            cases.append(Case(tc.name, used, tc.model.SerializeToString(),
                              [(list(i), list(o)) for i, o in tc.data_sets],
                              float(tc.rtol), float(tc.atol)))
    return sorted(cases, key=lambda c: c.name)


def load_rejections() -> dict[str, str]:
    return json.loads(REJECTIONS_FILE.read_text()) if REJECTIONS_FILE.exists() else {}


# ---------------------------------------------------------------- running one case


def compare(name: str, expected: np.ndarray, actual: np.ndarray, rtol: float, atol: float) -> str:
    """'' when `actual` matches `expected`, else what differs."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.dtype != actual.dtype:
        return f"output {name!r}: dtype {actual.dtype}, expected {expected.dtype}"
    if expected.shape != actual.shape:
        return f"output {name!r}: shape {list(actual.shape)}, expected {list(expected.shape)}"
    if expected.dtype == ml_dtypes.bfloat16:
        # compared in float32 within 2 bfloat16 ulps of the expected value (ops compute in
        # float32 and round once per op, as the float16 ones)
        expected, actual = expected.astype(np.float32), actual.astype(np.float32)
        loose = np.abs(actual.astype(np.float64) - expected) <= 2 * 65536 * np.spacing(np.abs(expected))
        actual = np.where(loose, expected, actual)
    if expected.dtype.kind in "fc":
        if expected.dtype == np.float16:
            # kernels without a float16 path compute in float32 and round once, where the
            # reference rounds every numpy float16 step: allow 2 float16 ulps of the expected value
            loose = np.abs(actual.astype(np.float64) - expected) <= 2 * np.spacing(np.abs(expected))
            actual = np.where(loose, expected, actual)
        try:
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
        except AssertionError as exc:
            return f"output {name!r}: " + " ".join(str(exc).split())[:400]
        return ""
    if not np.array_equal(actual, expected):
        bad = int(np.sum(actual != expected))
        return f"output {name!r}: {bad}/{expected.size} elements differ (exact comparison)"
    return ""


def as_array(value: Any) -> np.ndarray:
    """Data sets hold numpy arrays, or TensorProtos for types numpy lacks (float16 kept here)."""
    from onnx import TensorProto, numpy_helper

    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else np.asarray(value)


def static_input_names(model: Any) -> set[str]:
    """Graph inputs that some node reads at a position its op unit requires to be constant."""
    from pyc_cli.ops import registry

    inputs = {v.name for v in model.graph.input}
    names = set()
    for node in model.graph.node:
        opdef = registry.lookup(registry.qualified(node.domain, node.op_type))
        for position in opdef.static_inputs if opdef is not None else ():
            if position < len(node.input) and node.input[position] in inputs:
                names.add(node.input[position])
    return names


def bind_inputs(model: Any, values: dict[str, np.ndarray]) -> bytes:
    """The model with the given graph inputs turned into initializers holding `values`."""
    from onnx import numpy_helper

    bound = type(model)()
    bound.CopyFrom(model)
    for name, value in sorted(values.items()):
        bound.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return bound.SerializeToString()


def declared_values(names: list[str], static: set[str], case: Case) -> dict[str, tuple[int, int]]:
    """The values each integer input that stays an input is declared to hold (docstring)."""
    found: dict[str, tuple[int, int]] = {}
    for inputs, _ in case.data_sets:
        for name, value in zip(names, inputs):
            array = as_array(value)
            if name in static or array.dtype.kind not in "iu" or array.size == 0:
                continue
            lo, hi = found.get(name, (0, 64))
            found[name] = (min(lo, int(array.min())), max(hi, 2 * int(array.max())))
    return found


def graph_input_names(model: Any) -> list[str]:
    """The model's inputs that are not initializers, in order (a data set's inputs)."""
    initializers = {t.name for t in model.graph.initializer}
    return [v.name for v in model.graph.input if v.name not in initializers]


def run_data_sets(case: Case, compile_model: Callable[[Path, dict[str, tuple[int, ...]]], Any],
                  prefix: str) -> str:
    """Every data set of `case` run on the models `compile_model(path, input shapes)` builds
    (one per distinct input shapes and values of the inputs bound as constants) and compared
    with its expected outputs: "" when all match, else the first mismatch. The compiled models
    are closed (where they can be) at the end."""
    import onnx

    model = onnx.load_from_string(case.model)
    names = graph_input_names(model)
    outputs = [v.name for v in model.graph.output]
    static = static_input_names(model)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        built: dict[tuple, Any] = {}  # type: ignore[type-arg]
        try:
            for index, (inputs, expected) in enumerate(case.data_sets):
                arrays = {n: as_array(a) for n, a in zip(names, inputs)}
                bound = {n: a for n, a in arrays.items() if n in static}
                feeds = {n: a for n, a in arrays.items() if n not in static}
                shapes = {n: tuple(a.shape) for n, a in feeds.items()}
                key = (tuple(sorted(shapes.items())),
                       tuple((n, a.dtype.str, a.shape, a.tobytes()) for n, a in sorted(bound.items())))
                if key not in built:
                    path = Path(tmp) / f"model{len(built)}.onnx"
                    path.write_bytes(bind_inputs(model, bound) if bound else case.model)
                    built[key] = compile_model(path, shapes)
                got = built[key].run(feeds)
                for out_name, want in zip(outputs, expected):
                    problem = compare(out_name, as_array(want), got[out_name], case.rtol, case.atol)
                    if problem:
                        return f"data set {index}: {problem}"
            return ""
        finally:
            for compiled in built.values():
                if hasattr(compiled, "close"):
                    compiled.close()


def run_case(case: Case, rejections: dict[str, str]) -> CaseResult:
    """Build and run one case in this process; never raises."""
    import onnx

    import pyc_cli
    from pyc_cli.errors import PycError

    start = time.perf_counter()
    result = CaseResult(case.name, list(case.ops), "pass")
    listed = rejections.get(case.name)
    try:
        model = onnx.load_from_string(case.model)
        values = declared_values(graph_input_names(model), static_input_names(model), case)

        def compile_model(path: Path, shapes: dict[str, tuple[int, ...]]) -> Any:
            out_dir = path.with_name(f"artifact-{path.stem}")
            pyc_cli.build(path, out_dir, input_shapes=shapes, input_values=values or None)
            return pyc_cli.load(out_dir)

        problem = run_data_sets(case, compile_model, "pyc-conf-")
        if problem:
            result.outcome, result.detail = "fail", problem
    except PycError as exc:
        message = str(exc)
        if exc.code in REJECT_CODES and listed is not None and listed in message:
            result.outcome, result.detail = "rejected", message
        elif exc.code in REJECT_CODES:
            result.outcome = "fail"
            result.detail = f"unlisted rejection: {message}" if listed is None else \
                f"rejection does not match the listed reason {listed!r}: {message}"
        else:
            result.outcome, result.detail = "fail", message
    except Exception as exc:  # noqa: BLE001  (any crash is a failure of the case)
        tb = traceback.format_exc().strip().splitlines()
        result.outcome, result.detail = "fail", f"{type(exc).__name__}: {exc} [{tb[-3].strip()}]"
    if result.outcome == "pass" and listed is not None:
        result.outcome, result.detail = "fail", f"listed as rejected ({listed!r}) but passes"
    result.seconds = round(time.perf_counter() - start, 3)
    return result


# ---------------------------------------------------------------- the worker pool


def _worker(conn: Connection, rejections: dict[str, str]) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    while True:
        case = conn.recv()
        if case is None:
            return
        conn.send(run_case(case, rejections))


class _Slot:
    """One worker process and the case it is running."""

    def __init__(self, ctx: Any, rejections: dict[str, str]) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, rejections), daemon=True)
        self.process.start()
        child.close()
        self.case: Case | None = None
        self.deadline = 0.0

    def give(self, case: Case, timeout: float) -> None:
        self.case, self.deadline = case, time.monotonic() + timeout
        self.conn.send(case)

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def run_cases(cases: list[Case], jobs: int, timeout: float = CASE_TIMEOUT_S,
              progress: bool = False) -> list[CaseResult]:
    rejections = load_rejections()
    if jobs <= 1:
        return [run_case(c, rejections) for c in cases]
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    queue = list(reversed(cases))  # pop() from the end: first case first
    results: list[CaseResult] = []
    slots = [_Slot(ctx, rejections) for _ in range(min(jobs, len(cases)))]
    try:
        for slot in slots:
            if queue:
                slot.give(queue.pop(), timeout)
        while any(s.case is not None for s in slots):
            busy = [s for s in slots if s.case is not None]
            ready = wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout=1.0)
            for index, slot in enumerate(slots):
                if slot.case is None:
                    continue
                result = None
                if slot.conn in ready:
                    try:
                        result = slot.conn.recv()
                    except (EOFError, OSError):
                        result = None
                if result is None and (slot.process.sentinel in ready or not slot.process.is_alive()
                                       or time.monotonic() > slot.deadline):
                    why = "timed out" if slot.process.is_alive() else \
                        f"worker died (exit code {slot.process.exitcode})"
                    slot.stop()
                    result = CaseResult(slot.case.name, list(slot.case.ops), "fail", why)
                    slots[index] = slot = _Slot(ctx, rejections)
                if result is None:
                    continue
                results.append(result)
                if progress:
                    print(f"[{len(results)}/{len(cases)}] {result.outcome:8} {result.name}"
                          + (f": {result.detail[:160]}" if result.outcome == "fail" else ""),
                          flush=True)
                slot.case = None
                if queue:
                    slot.give(queue.pop(), timeout)
    finally:
        for slot in slots:
            slot.stop()
    return sorted(results, key=lambda r: r.name)


def summarize(results: list[CaseResult], ops: Iterable[str]) -> dict[str, dict[str, int]]:
    per_op = {}
    for op in sorted(ops):
        mine = [r for r in results if op in r.ops]
        per_op[op] = {"cases": len(mine),
                      "passed": sum(r.outcome == "pass" for r in mine),
                      "rejected": sum(r.outcome == "rejected" for r in mine),
                      "failed": sum(r.outcome == "fail" for r in mine)}
    return per_op


def run_suite(ops: Iterable[str] | None = None, jobs: int | None = None,
              progress: bool = False) -> Report:
    """Collect, run and summarize the cases of `ops` (default: every declared op)."""
    start = time.perf_counter()
    selected = list(ops) if ops is not None else declared_ops()
    cases = collect_cases(selected)
    results = run_cases(cases, jobs or os.cpu_count() or 1, progress=progress)
    return Report(summarize(results, selected), results, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", help="comma-separated ops (default: every declared op)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--report", type=Path, help="write the JSON summary here")
    parser.add_argument("--quiet", action="store_true", help="no per-case progress lines")
    args = parser.parse_args(argv)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
    unknown = sorted(set(ops or []) - set(declared_ops()))
    if unknown:
        parser.error(f"not declared supported: {', '.join(unknown)}")
    report = run_suite(ops, args.jobs, progress=not args.quiet)
    summary = report.to_json()
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    width = max((len(op) for op in report.per_op), default=2)
    print(f"{'op':{width}}  cases  pass  rejected  fail")
    for op, row in report.per_op.items():
        print(f"{op:{width}}  {row['cases']:5}  {row['passed']:4}  {row['rejected']:8}  {row['failed']:4}")
    print(f"{summary['cases_run']} cases: {summary['passed']} passed, {summary['rejected']} rejected, "
          f"{summary['failed']} failed in {summary['seconds']} s")
    for result in report.failures():
        print(f"FAIL {result.name}: {result.detail}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
