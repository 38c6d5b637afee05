"""Latency of calls separated by idle gaps: what a VAD called every audio chunk, or a server
between requests, pays for waking the thread team, PyC against onnxruntime in one process.

    python benchmarks/call_gaps.py [--models mlp,silero] [--threads 2] [--gaps 0,2,20] [--runs 150]

Back-to-back runs (gap 0) keep OpenMP's workers spinning; after a gap they may be asleep or,
on a busy machine, behind other processes in the scheduler's queue (libgomp's default wait
spins ~ms before sleeping, which the scheduler charges to the worker). Each engine times
`--runs` calls of its full Python API (PyC `run(feeds)`, onnxruntime `session.run`) after 20
warm-up calls, sleeping `gap` ms before each; prints the p50 and p95 per gap (ms). Models as
real_models.py builds them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_models import MODELS, model_feeds  # noqa: E402

import pyc_cli  # noqa: E402


def _latencies(call: Callable[[], object], gap_s: float, runs: int) -> list[float]:
    for _ in range(20):
        call()
    times = []
    for _ in range(runs):
        if gap_s:
            time.sleep(gap_s)
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def measure(name: str, work: Path, threads: int, gaps: list[float], runs: int) -> None:
    path, shapes = MODELS[name](work, np.random.default_rng(0))
    feeds = model_feeds(path, shapes, np.random.default_rng(1))
    pyc_cli.build(path, work / f"{name}.pyc", input_shapes=shapes, force=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    os.environ["PYC_NUM_THREADS"] = str(threads)  # read when the library creates the model
    with pyc_cli.load(work / f"{name}.pyc") as compiled:
        engines = {"pyc": lambda: compiled.run(feeds), "onnxruntime": lambda: session.run(None, feeds)}
        for gap in gaps:
            figures = []
            for engine, call in engines.items():
                times = _latencies(call, gap / 1e3, runs)
                figures.append(f"{engine} p50 {np.median(times):.3f} p95 "
                               f"{np.percentile(times, 95):.3f}")
            print(f"{name} threads={threads} gap {gap:g} ms: " + ", ".join(figures), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,silero")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gaps", default="0,2,20", help="idle ms before each call")
    parser.add_argument("--runs", type=int, default=150)
    args = parser.parse_args(argv)
    gaps = [float(g) for g in args.gaps.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            measure(name, Path(tmp), args.threads, gaps, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
