"""onnxruntime on one thread, timed call by call: the reference side of the dynamic-shape
benchmarks (dynamic_minilm.py, dynamic_spatial.py), which time PyC on one thread too."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def ort_session(model: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def ort_times(session: ort.InferenceSession, feeds: dict[str, np.ndarray], runs: int) -> list[float]:
    """Milliseconds of each of `runs` calls, after one warm-up call."""
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return times
