"""Peak working memory of ONE engine running ONE model, measured in a fresh process; with
`--serve`, also that engine's timings, asked for round by round.

Used by bench.py and memory_bench.py (one subprocess per engine and model, so the engines never
share a heap or a thread pool):

    python benchmarks/memprobe.py --engine pyc --target ART.pyc --inputs feeds.npz
    python benchmarks/memprobe.py --engine ort --target model.onnx --inputs feeds.npz --threads 1
    python benchmarks/memprobe.py --engine ort ... --ort-no-arena   # arena + memory pattern off
    python benchmarks/memprobe.py --engine openvino --target model.onnx ... --serve

`--serve` loads the model once, then answers commands on stdin, one JSON line each on stdout:
`time N` (one warm-up run, then N runs timed one by one: their milliseconds), `outputs PATH`
(one run's outputs saved as .npz, in the engine's output order), `memory N` (the probe below,
over N runs, against the RSS measured right after loading), `quit`.

It records the resident set size (RSS) after the inputs are loaded (the baseline), after the
model is loaded (session creation / artifact load: weights, code), then resets the kernel's high-water mark
(`echo 5 > /proc/self/clear_refs`) and runs the model a few times. The working memory is
peak RSS while running minus the RSS after the model was loaded. One JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Runner = Callable[[], object]
# SessionOptions attributes set before the ORT session is created (--ort-no-arena fills it)
ORT_OPTIONS: dict[str, Any] = {}


def status_kib() -> dict[str, int]:
    """VmRSS and VmHWM (KiB) from /proc/self/status."""
    values: dict[str, int] = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def load_pyc(target: str, feeds: dict[str, np.ndarray], threads: int) -> Runner:
    import os

    import pyc_cli

    os.environ["PYC_NUM_THREADS"] = str(threads)  # read when the library creates the model
    model = pyc_cli.load(target)
    return lambda: list(model.run(feeds).values())


def load_ort(target: str, feeds: dict[str, np.ndarray], threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no warnings about unused initializers
    for key, value in ORT_OPTIONS.items():
        setattr(options, key, value)
    session = ort.InferenceSession(target, options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


def load_openvino(target: str, feeds: dict[str, np.ndarray], threads: int) -> Runner:
    """OpenVINO's CPU plugin pinned to float32 (its default on CPUs with bf16/AMX units is
    bf16, which would not compute the same model) and to `threads` inference threads."""
    import openvino as ov

    core = ov.Core()
    core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    request = core.compile_model(target, "CPU").create_infer_request()
    return lambda: [request.infer(feeds)[k] for k in range(len(request.model_outputs))]


LOADERS: dict[str, Callable[[str, dict[str, np.ndarray], int], Runner]] = {
    "pyc": load_pyc, "ort": load_ort, "openvino": load_openvino,
}
MODULES = {"pyc": "pyc_cli", "ort": "onnxruntime", "openvino": "openvino"}  # before the baseline


def load(engine: str, target: str, inputs: str, threads: int) -> tuple[Runner, int, int]:
    """The engine's runner, and the RSS (KiB) before and after loading the model."""
    importlib.import_module(MODULES[engine])
    with np.load(inputs) as data:
        feeds = {name: data[name] for name in data.files}
    gc.collect()
    before = status_kib()["VmRSS"]
    run = LOADERS[engine](target, feeds, threads)
    gc.collect()
    return run, before, status_kib()["VmRSS"]


def probe(engine: str, target: str, inputs: str, threads: int, runs: int) -> dict[str, Any]:
    run, before, after_load = load(engine, target, inputs, threads)
    return measure(engine, run, before, after_load, runs)


def measure(engine: str, run: Runner, before: int, after_load: int, runs: int) -> dict[str, Any]:
    exact = reset_peak()
    for _ in range(runs):
        run()
    peak = status_kib()["VmHWM"] if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "engine": engine, "runs": runs,
        "method": "VmHWM after clear_refs reset" if exact else "ru_maxrss (no reset: upper bound)",
        "rss_before_load_kib": before, "rss_after_load_kib": after_load,
        "load_kib": after_load - before, "peak_kib": peak,
        "working_kib": max(0, peak - after_load),
        **({"ort_options": dict(ORT_OPTIONS)} if engine == "ort" else {}),
    }


def timed(run: Runner, repeat: int) -> list[float]:
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def serve(engine: str, target: str, inputs: str, threads: int) -> None:
    """Answer `time N`, `outputs PATH`, `memory N` and `quit` on stdin (module docstring)."""
    run, before, after_load = load(engine, target, inputs, threads)
    print(json.dumps({"ready": engine}), flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "time":
            reply: Any = timed(run, int(argument))
        elif command == "outputs":
            np.savez(argument, *[np.asarray(v) for v in run()])
            reply = {"saved": argument}
        elif command == "memory":
            reply = measure(engine, run, before, after_load, int(argument))
        else:
            break
        print(json.dumps(reply), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=sorted(LOADERS), required=True)
    parser.add_argument("--target", required=True, help="artifact dir (pyc) or .onnx file (ort)")
    parser.add_argument("--inputs", required=True, help=".npz of the feeds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--ort-no-arena", action="store_true",
                        help="ORT without its CPU memory arena and memory pattern")
    parser.add_argument("--serve", action="store_true",
                        help="load once, then answer commands on stdin (module docstring)")
    args = parser.parse_args()
    if args.ort_no_arena:
        ORT_OPTIONS.update(enable_cpu_mem_arena=False, enable_mem_pattern=False)
    if args.serve:
        serve(args.engine, args.target, args.inputs, args.threads)
        return
    print(json.dumps(probe(args.engine, args.target, args.inputs, args.threads, args.runs)))


if __name__ == "__main__":
    main()
