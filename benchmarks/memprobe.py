"""Peak working memory of ONE engine running ONE model, measured in a fresh process.

Used by bench.py (one subprocess per engine and model, so the engines never share a heap):

    python benchmarks/memprobe.py --engine pyc --target ART.pyc --inputs feeds.npz
    python benchmarks/memprobe.py --engine ort --target model.onnx --inputs feeds.npz --threads 1
    python benchmarks/memprobe.py --engine ort ... --ort-no-arena   # arena + memory pattern off

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
    import pyc_cli

    model = pyc_cli.load(target)
    return lambda: model.run(feeds)


def load_ort(target: str, feeds: dict[str, np.ndarray], threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    for key, value in ORT_OPTIONS.items():
        setattr(options, key, value)
    session = ort.InferenceSession(target, options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


LOADERS: dict[str, Callable[[str, dict[str, np.ndarray], int], Runner]] = {
    "pyc": load_pyc, "ort": load_ort,
}
MODULES = {"pyc": "pyc_cli", "ort": "onnxruntime"}  # imported before the baseline


def probe(engine: str, target: str, inputs: str, threads: int, runs: int) -> dict[str, Any]:
    importlib.import_module(MODULES[engine])
    with np.load(inputs) as data:
        feeds = {name: data[name] for name in data.files}
    gc.collect()
    before = status_kib()["VmRSS"]
    run = LOADERS[engine](target, feeds, threads)
    gc.collect()
    after_load = status_kib()["VmRSS"]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=sorted(LOADERS), required=True)
    parser.add_argument("--target", required=True, help="artifact dir (pyc) or .onnx file (ort)")
    parser.add_argument("--inputs", required=True, help=".npz of the feeds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--ort-no-arena", action="store_true",
                        help="ORT without its CPU memory arena and memory pattern")
    args = parser.parse_args()
    if args.ort_no_arena:
        ORT_OPTIONS.update(enable_cpu_mem_arena=False, enable_mem_pattern=False)
    print(json.dumps(probe(args.engine, args.target, args.inputs, args.threads, args.runs)))


if __name__ == "__main__":
    main()
