"""Issue #14's side-by-side table on one GPU, in one run: PyC's CUDA target against PyTorch
eager, torch.compile(mode="reduce-overhead") and torch.compile(mode="max-autotune"), same GPU,
same precision, same weights; and PyC's layernorm / softmax kernels against the measured
device-to-device copy bandwidth. Run on the GPU machine (after cuda_smoke.sh's NVRTC set-up, or
through it: CUDA_HOME is found the same way):

    python benchmarks/cuda_table.py --out $OUT/cuda_table.json [--budget-s 500]

Models: the MiniLM-L6-shaped encoder (tests/models/make_encoder.py, sequence 128) at batch 1
and 8 in fp32 and fp16; the MLP 512-2048-2048-512 at batch 1 in fp32 and fp16; the onnx light
zoo's ResNet-50 (random weights, bench_models.materialize_light; residual branches scaled to
keep float16 finite, logits out) at batch 1 and 32 in fp16;
single-op LayerNormalization and Softmax over [rows, 1024] float32. Torch runs the same ONNX
graph through benchmarks/onnx_torch.py (same initializers, nodes in order; fp16 = the module in
float16, fp32 = TF32 off for matmul and cuDNN), so no torchvision is needed.

Every output (PyC's and each torch engine's) is checked against onnxruntime on the CPU before
it is timed: PyC with cuda_smoke.agrees() (fp32 rtol 1e-3 atol 1e-4; fp16 5e-3 of the largest
|output|), torch at fp32 likewise, torch at fp16 (float16 activations throughout, unlike PyC
whose activations stay float32) within 1e-2 of the largest |output|. A wrong result is
recorded and not timed.

Timing, per engine: after warm-up, up to --repeat calls or --seconds of them, p50 and p95 of
  - `device_ms`: CUDA events around the call's GPU work (PyC: the kernels' CUDA graph,
    Model.time_kernels; torch: the call, inputs already on the GPU),
  - `wall_ms`: the host's perf_counter around one synchronised call (PyC: through its Python
    API, host inputs in and host outputs out; torch: GPU tensors in and out).
Order (what is measured before --budget-s runs out): PyC on every case first; then, case by
case in the order of the table (the issue's targets first: encoder b1 fp16, the row kernels,
ResNet-50 fp16, encoder b8 fp16; then the MLP and the fp32 encoder), torch eager and
reduce-overhead in one subprocess (max-autotune too for --early-autotune cases, by default
encoder_b1_fp16); then max-autotune for the others. Each torch subprocess is killed at the sum
of its modes' limits (--eager-s, --compile-s, --autotune-s) or when the budget ends, and what it
printed before is kept; a job that would start with less than --min-job-s left is skipped.
Either is recorded. The JSON is rewritten after each step, so a run killed from outside still
leaves what it measured ("complete": false).

Writes --out (JSON: device, driver, torch version, the command, every measurement) and prints
the markdown tables. Exit status 1 when a PyC output or a torch fp32 output is wrong.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "models"))

from bench_models import resnet50_logits as resnet50  # noqa: E402
from cuda_smoke import REDUCED_RTOL, agrees  # noqa: E402

MODES = ("eager", "reduce-overhead", "max-autotune")
# torch fp16: float16 activations throughout, of the largest |output| (on the CPU, torch's
# float16 encoder is 2.2e-3 off onnxruntime's float32, ResNet-50 9e-4: tests/test_cuda_table.py)
TORCH_HALF_RTOL = 1e-2
ENCODER_SEQ, VOCAB = 128, 30522
KERNEL_COLS = 1024


# ---------------------------------------------------------------- the cases and their models

@dataclass(frozen=True)
class Case:
    """One row of the table: a model at a batch and precision."""

    model: str  # mlp | encoder | resnet50 | layernorm | softmax
    batch: int  # rows for layernorm / softmax
    precision: str

    @property
    def name(self) -> str:
        return f"{self.model}_b{self.batch}_{self.precision}"

    @property
    def is_kernel(self) -> bool:
        return self.model in ("layernorm", "softmax")


def default_cases(kernel_rows: tuple[int, ...] = (8192, 32768)) -> list[Case]:
    """The issue's table, most important first (what is timed before a budget runs out)."""
    cases = [Case("encoder", 1, "fp16")]
    # the row kernels next: a target of their own, and cheap (torch eager and a copy)
    cases += [Case(op, rows, "fp32") for op in ("layernorm", "softmax") for rows in kernel_rows]
    return cases + [Case("resnet50", 1, "fp16"), Case("resnet50", 32, "fp16"), Case("encoder", 8, "fp16"),
                    Case("mlp", 1, "fp16"), Case("mlp", 1, "fp32"), Case("encoder", 1, "fp32"),
                    Case("encoder", 8, "fp32")]


def make_model(case: Case, work: Path, seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    """The case's ONNX file (written into `work`) and random feeds (never zeros)."""
    rng = np.random.default_rng(seed)
    path = work / f"{case.model}_b{case.batch}.onnx"
    if case.model == "mlp":
        import real_models

        written, shapes = real_models._mlp(work, rng, batch=case.batch)
        return written, {"x": rng.standard_normal(shapes["x"]).astype(np.float32)}
    if case.model == "encoder":
        import onnx
        from make_encoder import encoder_feeds, make_encoder

        onnx.save(make_encoder(batch=case.batch, seq=ENCODER_SEQ), path)
        return path, encoder_feeds(rng, case.batch, ENCODER_SEQ, VOCAB)
    if case.model == "resnet50":
        resnet50(work / "resnet50_light.onnx", path, case.batch)
        return path, {"gpu_0/data_0": rng.standard_normal((case.batch, 3, 224, 224)).astype(np.float32)}
    if case.is_kernel:
        single_op(case.model, case.batch, KERNEL_COLS, path, rng)
        return path, {"x": rng.standard_normal((case.batch, KERNEL_COLS)).astype(np.float32)}
    raise ValueError(f"unknown model {case.model}")


def single_op(op: str, rows: int, cols: int, path: Path, rng: np.random.Generator) -> None:
    """LayerNormalization (random scale and bias) or Softmax over the last axis of [rows, cols]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = []
    if op == "layernorm":
        inits = [numpy_helper.from_array((1 + 0.1 * rng.standard_normal(cols)).astype(np.float32), "g"),
                 numpy_helper.from_array((0.1 * rng.standard_normal(cols)).astype(np.float32), "b")]
        node = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5)
    else:
        node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    graph = helper.make_graph([node], op,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, cols])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, cols])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


# ---------------------------------------------------------------- checks and statistics

def check(ours: np.ndarray, expected: np.ndarray, precision: str, engine: str) -> dict[str, Any]:
    """Whether `ours` matches onnxruntime's `expected` at `precision` (torch fp16: its own,
    looser bound: float16 activations), with the errors that decided it."""
    ours = np.asarray(ours, dtype=np.float32)
    scale = float(np.max(np.abs(expected)))
    error = float(np.max(np.abs(ours - expected))) if ours.shape == expected.shape else math.inf
    if ours.shape != expected.shape or not np.all(np.isfinite(ours)):
        ok = False
    elif engine != "pyc" and precision in ("fp16", "bf16"):
        ok = error <= TORCH_HALF_RTOL * scale
    else:
        ok = agrees(ours, expected, precision)
    return {"ok": bool(ok), "max_abs_error": error, "max_abs_expected": scale,
            "tolerance": tolerance(precision, engine)}


def tolerance(precision: str, engine: str) -> dict[str, float]:
    if precision == "fp32":
        return {"rtol": 1e-3, "atol": 1e-4}
    if engine != "pyc" and precision in ("fp16", "bf16"):
        return {"of_max_abs_output": TORCH_HALF_RTOL}
    return {"of_max_abs_output": REDUCED_RTOL[precision]}


def percentiles(times_ms: list[float]) -> dict[str, float | int]:
    samples = np.asarray(times_ms, dtype=np.float64)
    return {"p50": float(np.percentile(samples, 50)), "p95": float(np.percentile(samples, 95)),
            "min": float(samples.min()), "runs": len(times_ms)}


def run_count(one_call_ms: float, repeat: int, seconds: float) -> int:
    """Calls to time: `repeat`, fewer where they would take longer than `seconds` (10 at least)."""
    return max(10, min(repeat, int(seconds * 1e3 / max(one_call_ms, 1e-3))))


def timed_calls(call: Callable[[], None], count: int) -> list[float]:
    """Milliseconds of each of `count` calls, each of which synchronises."""
    times = []
    for _ in range(count):
        begin = time.perf_counter()
        call()
        times.append((time.perf_counter() - begin) * 1e3)
    return times


def bandwidth(case: Case, device_ms: float, copy_ms: float) -> dict[str, float]:
    """A row kernel's bytes (its input read, its output written) per second, beside a
    device-to-device copy of the same input (read + written: the same bytes)."""
    moved = 2 * case.batch * KERNEL_COLS * 4
    return {"bytes_moved": moved, "gb_per_s": moved / device_ms / 1e6,
            "copy_gb_per_s": moved / copy_ms / 1e6, "fraction_of_copy": copy_ms / device_ms}


# ---------------------------------------------------------------- PyC

def run_pyc(case: Case, path: Path, feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray],
            work: Path, repeat: int, seconds: float) -> dict[str, Any]:
    import pyc_cli
    from pyc_cli.runtime.timing import RunPlan

    started = time.perf_counter()
    built = pyc_cli.build(path, work / f"{case.name}.pyc", target="cuda", arch="sm_90",
                          precision=case.precision, force=True)
    record: dict[str, Any] = {"build_s": round(time.perf_counter() - started, 2),
                              "kernels": sorted({n.ann.kernel.candidate for n in built.graph.nodes
                                                 if n.ann.kernel is not None})}
    with pyc_cli.load(built.artifact) as model:
        model.poison()
        outputs = model.run(feeds)
        record["check"] = {k: check(outputs[k], v, case.precision, "pyc") for k, v in expected.items()}
        record["ok"] = all(c["ok"] for c in record["check"].values())
        if not record["ok"]:
            return record
        probe = min(model.time_runs(feeds, RunPlan(warmup=3, repeat=3)))
        count = run_count(probe, repeat, seconds)
        record["wall_ms"] = percentiles(model.time_runs(feeds, RunPlan(warmup=10, repeat=count)))
        record["device_ms"] = percentiles(model.time_kernels(feeds, count, warmup=10))
        record["execution"] = model.stats.execution
    return record


# ---------------------------------------------------------------- torch, in a subprocess

def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Arrays handed between this process and its torch worker (a pickle of plain arrays: the
    GPU machine's numpy 2.5 / Python 3.12 refused the .npz headers its own savez wrote)."""
    with open(path, "wb") as f:
        pickle.dump({k: np.ascontiguousarray(v) for k, v in arrays.items()}, f, protocol=5)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        return dict(pickle.load(f))  # noqa: S301 (our own worker's file, in our own temp dir)


def torch_worker(spec: dict[str, Any]) -> None:
    """The subprocess's work: each of spec["modes"] on one model (load, check-output, time),
    one JSON line on stdout per mode as it finishes (a later mode that hangs loses nothing
    measured before it); the copy bandwidth first where spec["copy_nbytes"] asks for it."""
    import onnx
    import torch
    from onnx_torch import OnnxTorch

    precision = spec["precision"]
    fp32 = precision == "fp32"
    torch.backends.cuda.matmul.allow_tf32 = not fp32  # fp32 as PyC and onnxruntime compute it
    torch.backends.cudnn.allow_tf32 = not fp32
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    if spec.get("copy_nbytes"):  # first: the row kernels' yardstick, whatever fails after it
        print(json.dumps(copy_bandwidth(int(spec["copy_nbytes"]), spec["repeat"])), flush=True)
    feeds = load_arrays(spec["feeds"])
    device = spec.get("device", "cuda")  # "cpu": tests/test_cuda_table.py, no GPU
    module = OnnxTorch(onnx.load(spec["onnx"])).to(device=device, dtype=dtype).eval()
    inputs = [torch.from_numpy(feeds[name]).to(device) for name in module.inputs]
    inputs = [x.to(dtype) if x.is_floating_point() else x for x in inputs]
    for mode in spec["modes"]:
        try:
            record = time_torch(module, inputs, mode, spec, f"{spec['outputs']}_{mode}.pickle")
        except Exception:  # noqa: BLE001 (a compile mode may fail: recorded, the next runs)
            record = {"mode": mode, "error": traceback.format_exc()[-3000:]}
        record["dtype"] = str(dtype)
        print(json.dumps(record), flush=True)


def time_torch(module: Any, inputs: list[Any], mode: str, spec: dict[str, Any],
               outputs_path: str) -> dict[str, Any]:
    """One engine: its first call (the compile), outputs saved for the check, then timed."""
    import torch

    graphs = mode != "eager"  # both compile modes replay CUDA graphs
    cuda = spec.get("device", "cuda") == "cuda"
    engine = module if mode == "eager" else torch.compile(module, mode=mode)

    def call() -> tuple[Any, ...]:
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return engine(*inputs)

    def synced() -> None:
        call()
        if cuda:
            torch.cuda.synchronize()

    record: dict[str, Any] = {"mode": mode}
    with torch.inference_mode():
        started = time.perf_counter()
        synced()
        record["first_call_s"] = round(time.perf_counter() - started, 2)
        for _ in range(5):  # CUDA graphs are recorded over the first calls
            synced()
        save_arrays(outputs_path, {f"arr_{i}": t.float().cpu().numpy()
                                   for i, t in enumerate(call())})
        record["outputs"] = outputs_path
        for _ in range(15):
            synced()
        count = run_count(min(timed_calls(synced, 3)), spec["repeat"], spec["seconds"])
        record["wall_ms"] = percentiles(timed_calls(synced, count))
        if not cuda:
            return record
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(count):
            start.record()
            call()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
        record["device_ms"] = percentiles(times)
    return record


def copy_bandwidth(nbytes: int, repeat: int) -> dict[str, Any]:
    """dst.copy_(src) of `nbytes` on the GPU, timed by CUDA events."""
    import torch

    src = torch.randn(nbytes // 4, device="cuda")
    dst = torch.empty_like(src)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(10):
        dst.copy_(src)
    times = []
    for _ in range(repeat):
        start.record()
        dst.copy_(src)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return {"mode": "copy", "nbytes": nbytes, "device_ms": percentiles(times),
            "gb_per_s": 2 * nbytes / float(np.percentile(times, 50)) / 1e6}


def run_torch(spec: dict[str, Any], limit_s: float,
              command: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """torch_worker(spec) in a subprocess (and process group: inductor's autotuning workers
    too) of its own, killed after `limit_s`: a record per mode, and "copy". (`command`
    replaces the worker: tests.)"""
    spec_path = Path(f"{spec['outputs']}.spec.json")
    spec_path.write_text(json.dumps(spec))
    command = command or [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=max(1.0, limit_s))
        why = f"exit status {process.returncode}: {stderr[-3000:]}"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        why = f"over its limit of {limit_s:.0f} s (killed)"
    records = {}
    for line in stdout.splitlines():
        try:
            record = json.loads(line) if line.startswith("{") else None
        except json.JSONDecodeError:
            record = None  # something else's output
        if isinstance(record, dict) and "mode" in record:
            records[record["mode"]] = record
    wanted = [*spec["modes"], *(["copy"] if spec.get("copy_nbytes") else [])]
    for mode in wanted:
        records.setdefault(mode, {"mode": mode, "error": why})
    seconds = round(time.perf_counter() - started, 1)
    for record in records.values():
        record["worker_seconds"] = seconds
    return records


# ---------------------------------------------------------------- the run

@dataclass
class Budget:
    """What is left of --budget-s; a job gets its own limit or what is left, whichever is less."""

    total_s: float
    started: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.total_s - (time.perf_counter() - self.started)

    def limit(self, wanted: float) -> float:
        return min(wanted, self.left())


def reference(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def check_torch(record: dict[str, Any], case: Case, expected: dict[str, np.ndarray]) -> None:
    outputs = Path(record.get("outputs", ""))
    if "error" in record or not outputs.is_file():
        return
    saved = load_arrays(outputs)
    got = [saved[f"arr_{i}"] for i in range(len(saved))]
    record["check"] = {k: check(g, v, case.precision, "torch") for (k, v), g in zip(expected.items(), got)}
    record["ok"] = all(c["ok"] for c in record["check"].values())


def prepare_case(case: Case, work: Path) -> dict[str, Any]:
    path, feeds = make_model(case, work)
    feeds_path = work / f"{case.name}.feeds.pickle"
    save_arrays(feeds_path, feeds)
    return {"path": path, "feeds": feeds, "feeds_path": feeds_path,
            "expected": reference(path, feeds)}


def case_modes(case: Case, args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The torch modes run with the case, and those left for the end (max-autotune, unless the
    case is in --early-autotune); a row kernel gets eager only (its table compares with copy)."""
    if case.is_kernel:
        return tuple(m for m in args.modes if m == "eager"), ()
    early = case.name in args.early_autotune
    now = tuple(m for m in args.modes if m != "max-autotune" or early)
    return now, tuple(m for m in args.modes if m not in now)


def measure_pyc(case: Case, data: dict[str, Any], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The case's row with PyC's measurement (an error recorded: torch still runs)."""
    row: dict[str, Any] = {"case": asdict(case), "name": case.name, "torch": {}}
    try:
        row["pyc"] = run_pyc(case, data["path"], data["feeds"], data["expected"], work,
                             args.repeat, args.seconds)
    except Exception:  # noqa: BLE001 (recorded; torch is still measured)
        row["pyc"] = {"ok": False, "error": traceback.format_exc()[-3000:]}
    print(case.name, "pyc", json.dumps(row["pyc"].get("device_ms") or row["pyc"])[:300], flush=True)
    return row


def mode_limit(mode: str, args: argparse.Namespace) -> float:
    return {"eager": args.eager_s, "reduce-overhead": args.compile_s}.get(mode, args.autotune_s)


def run_modes(row: dict[str, Any], case: Case, modes: tuple[str, ...], data: dict[str, Any],
              args: argparse.Namespace, work: Path, budget: Budget) -> None:
    """`modes` in one torch subprocess, limited by the sum of their limits and the budget left;
    for a row kernel, the copy bandwidth too, and PyC's share of it."""
    if not modes:
        return
    wanted = sum(mode_limit(m, args) for m in modes)
    if budget.left() < min(wanted, args.min_job_s):
        for mode in modes:
            row["torch"][mode] = {"mode": mode, "skipped": f"--budget-s {args.budget_s:.0f} spent"}
        return
    spec = {"onnx": str(data["path"]), "feeds": str(data["feeds_path"]), "precision": case.precision,
            "modes": list(modes), "repeat": args.repeat, "seconds": args.seconds,
            "outputs": str(work / f"{case.name}_{'_'.join(modes)}"),
            "copy_nbytes": case.batch * KERNEL_COLS * 4 if case.is_kernel else 0,
            "device": args.torch_device}
    for mode, record in run_torch(spec, budget.limit(wanted)).items():
        check_torch(record, case, data["expected"])
        row["torch"][mode] = record
        summary = record.get("device_ms") or record.get("error", "")[-300:]
        print(case.name, mode, json.dumps(summary)[:300], flush=True)
    copy = row["torch"].pop("copy", None)
    if copy is not None:
        row["copy"] = copy
        pyc = row.get("pyc", {})
        if "device_ms" in copy and "device_ms" in pyc and pyc.get("ok"):
            row["bandwidth"] = bandwidth(case, pyc["device_ms"]["p50"], copy["device_ms"]["p50"])


def run_table(cases: list[Case], args: argparse.Namespace, work: Path,
              save: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """PyC on every case first (its numbers do not wait on torch.compile); then, in case
    order, torch eager and reduce-overhead (and max-autotune for --early-autotune); then the
    other max-autotune runs while --budget-s lasts. `save` gets the rows after each step (a
    run killed from outside keeps what it measured)."""
    budget = Budget(args.budget_s)
    rows, prepared = [], {}
    for case in cases:
        try:
            prepared[case.name] = prepare_case(case, work)
        except Exception:  # noqa: BLE001 (recorded: the other cases still run)
            rows.append({"case": asdict(case), "name": case.name, "error": traceback.format_exc()[-3000:]})
            continue
        rows.append(measure_pyc(case, prepared[case.name], args, work))
        save(rows)
    measured = [(row, Case(**row["case"])) for row in rows if row["name"] in prepared]
    for phase in (0, 1):
        for row, case in measured:
            modes = case_modes(case, args)[phase]
            run_modes(row, case, modes, prepared[case.name], args, work, budget)
            save(rows)
    return rows


# ---------------------------------------------------------------- the tables

def _cell(record: dict[str, Any] | None, key: str) -> str:
    if not record:
        return "-"
    if record.get("skipped"):
        return "skipped"
    if record.get("error"):
        return "failed"
    if record.get("ok") is False:
        return "wrong"
    stats = record.get(key)
    return f"{stats['p50']:.3f} ({stats['p95']:.3f})" if stats else "-"


def best_compiled(row: dict[str, Any], key: str = "device_ms") -> tuple[str, float] | None:
    """The fastest correct torch.compile mode's p50 (None: none ran correctly)."""
    times = [(mode, r[key]["p50"]) for mode, r in row.get("torch", {}).items()
             if mode != "eager" and r.get("ok") and key in r]
    return min(times, key=lambda t: t[1]) if times else None


def model_table(rows: list[dict[str, Any]], key: str) -> str:
    """Markdown: one line per model case, p50 (p95) ms of `key` per engine, PyC / best compile."""
    lines = ["| model | batch | precision | PyC | torch eager | reduce-overhead | max-autotune "
             "| PyC / best compile |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        case = row["case"]
        if case["model"] in ("layernorm", "softmax"):
            continue
        torch_rows = row.get("torch", {})
        best, pyc = best_compiled(row, key), row.get("pyc", {})
        ratio = (f"{pyc[key]['p50'] / best[1]:.2f} (vs {best[0]})"
                 if best and pyc.get("ok") and key in pyc else "-")
        if "error" in row:
            ratio = "model failed"
        lines.append(f"| {case['model']} | {case['batch']} | {case['precision']} | {_cell(pyc, key)} "
                     f"| {_cell(torch_rows.get('eager'), key)} "
                     f"| {_cell(torch_rows.get('reduce-overhead'), key)} "
                     f"| {_cell(torch_rows.get('max-autotune'), key)} | {ratio} |")
    return "\n".join(lines)


def kernel_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: the row kernels' device p50, GB/s and share of the copy bandwidth."""
    lines = ["| op | shape | PyC p50 ms | PyC GB/s | copy GB/s | of copy | torch eager p50 ms "
             "| reduce-overhead p50 ms |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        case = row["case"]
        if case["model"] not in ("layernorm", "softmax"):
            continue
        band = row.get("bandwidth")
        figures = (f"{band['gb_per_s']:.0f} | {band['copy_gb_per_s']:.0f} | {band['fraction_of_copy']:.0%}"
                   if band else "- | - | -")
        pyc = row.get("pyc", {})
        torch_rows = row.get("torch", {})
        pyc_ms = (f"{pyc['device_ms']['p50']:.4f}" if "device_ms" in pyc and pyc.get("ok")
                  else _cell(pyc, "device_ms"))
        lines.append(f"| {case['model']} | [{case['batch']}, {KERNEL_COLS}] | {pyc_ms} | {figures} "
                     f"| {_cell(torch_rows.get('eager'), 'device_ms')} "
                     f"| {_cell(torch_rows.get('reduce-overhead'), 'device_ms')} |")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    return "\n\n".join([
        f"Device: {result['machine'].get('device')}; torch {result['machine'].get('torch')}; "
        "ms, p50 (p95); `wrong`: output did not match onnxruntime (not timed)",
        "GPU time (CUDA events around a call):", model_table(rows, "device_ms"),
        "Host wall time per synchronised call (PyC: host inputs in and outputs out; torch: "
        "tensors already on the GPU):", model_table(rows, "wall_ms"),
        "Row kernels (float32; bytes = input read + output written; copy = torch copy_ of the "
        "input):", kernel_table(rows)])


def passed(rows: list[dict[str, Any]]) -> bool:
    """Every PyC output right, and every torch fp32 output that ran right (construction check)."""
    for row in rows:
        if "error" in row or not row.get("pyc", {}).get("ok"):
            return False
        for record in row.get("torch", {}).values():
            if row["case"]["precision"] == "fp32" and record.get("ok") is False:
                return False
    return True


def machine() -> dict[str, Any]:
    """cuda_smoke.machine() (GPU, driver, NVRTC, package versions) and torch's own view."""
    import cuda_smoke

    record = cuda_smoke.machine()
    try:
        import torch

        record["torch"] = torch.__version__
        record["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            record["torch_device"] = torch.cuda.get_device_name()
            record.setdefault("device", record["torch_device"])
    except ImportError as error:
        record["torch_error"] = str(error)
    return record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cuda_table.json")
    parser.add_argument("--repeat", type=int, default=200, help="timed calls at most, per engine and kind")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="timed seconds at most, per engine and kind (10 calls at least)")
    parser.add_argument("--budget-s", type=float, default=500.0,
                        help="the whole run's seconds: torch jobs that would start past it are skipped")
    parser.add_argument("--compile-s", type=float, default=120.0,
                        help="limit of torch.compile reduce-overhead (compile, check, time)")
    parser.add_argument("--autotune-s", type=float, default=150.0,
                        help="limit of torch.compile max-autotune (compile, check, time)")
    parser.add_argument("--eager-s", type=float, default=60.0,
                        help="limit of torch eager (load, check, time)")
    parser.add_argument("--min-job-s", type=float, default=20.0,
                        help="a torch job is not started with less than this left of --budget-s")
    parser.add_argument("--models", default="",
                        help="comma-separated subset: encoder,mlp,resnet50,layernorm,softmax")
    parser.add_argument("--modes", default=",".join(MODES), help="torch engines, comma-separated")
    parser.add_argument("--early-autotune", default="encoder_b1_fp16",
                        help="cases whose max-autotune runs with them instead of at the end")
    parser.add_argument("--kernel-rows", default="8192,32768", help="rows of the [rows, 1024] row kernels")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--torch-device", default="cuda", help=argparse.SUPPRESS)  # tests: cpu
    args = parser.parse_args(argv)
    args.modes = tuple(m for m in args.modes.split(",") if m)
    args.early_autotune = tuple(c for c in args.early_autotune.split(",") if c)
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown --modes {sorted(unknown)}; choose from {MODES}")
    return args


def select_cases(args: argparse.Namespace) -> list[Case]:
    cases = default_cases(tuple(int(r) for r in args.kernel_rows.split(",") if r))
    wanted = {m for m in args.models.split(",") if m}
    return [c for c in cases if not wanted or c.model in wanted]


def write_result(result: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> None:
    result["rows"] = rows
    result["passed"] = passed(rows)
    result["markdown"] = markdown(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:  # a torch subprocess: one JSON line per mode on stdout
        torch_worker(json.loads(args.worker.read_text()))
        return 0
    command = "python benchmarks/cuda_table.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    result: dict[str, Any] = {"command": command, "machine": machine(), "complete": False,
                              "settings": {k: (str(v) if isinstance(v, Path) else v)
                                           for k, v in vars(args).items() if k != "worker"}}
    print(json.dumps(result["machine"]), flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        rows = run_table(select_cases(args), args, Path(work),
                         lambda rows: write_result(result, rows, args.out))
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["complete"] = True
    write_result(result, rows, args.out)
    print(result["markdown"])
    print(f"wrote {args.out} in {result['seconds']} s; passed: {result['passed']}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
