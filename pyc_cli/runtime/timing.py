"""Latency statistics of timed runs, as `pyc run --repeat/--duration` reports them.

Percentiles use numpy's default ('linear') method: the value at rank p/100 * (n - 1) of the
sorted samples, interpolated linearly between the two nearest samples. With one sample every
statistic is that sample. Throughput is runs / the summed time of the timed runs (runs are
sequential, one at a time, so this is 1000 / mean latency in ms)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

PERCENTILES = (50, 90, 95, 99)
ADAPTIVE_ENV = "PYC_ADAPTIVE_THREADS"


@contextmanager
def fixed_team() -> Iterator[None]:
    """CPU models created inside keep their full team (PYC_ADAPTIVE_THREADS=0, read when the
    library creates the model): a measurement at a thread count (tuning, --measure) must not let
    the adaptive team (runtime_c/pyc_runtime.h) switch to one thread midway."""
    saved = os.environ.get(ADAPTIVE_ENV)
    os.environ[ADAPTIVE_ENV] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(ADAPTIVE_ENV, None)
        else:
            os.environ[ADAPTIVE_ENV] = saved
PERCENTILE_METHOD = "linear"


@dataclass(frozen=True)
class RunPlan:
    """How many runs to time: `warmup` untimed runs, then runs until `repeat` runs are timed or
    `duration_s` seconds have passed, whichever comes first (always at least one timed run)."""

    warmup: int = 3
    repeat: int | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.warmup < 0 or (self.repeat is not None and self.repeat < 1) or (
                self.duration_s is not None and not self.duration_s > 0):
            raise ValueError(f"invalid run plan {self}")

    @property
    def run_limit(self) -> int | None:
        """The most timed runs: `repeat`, or unbounded when only a duration limits them."""
        if self.repeat is None and self.duration_s is None:
            return 1
        return self.repeat


def time_calls(call: Callable[[], None], plan: RunPlan) -> list[float]:
    """Milliseconds of each timed call of `call` under `plan` (warm-up calls are not timed)."""
    for _ in range(plan.warmup):
        call()
    limit = plan.run_limit
    times: list[float] = []
    started = time.perf_counter()
    while True:
        start = time.perf_counter()
        call()
        end = time.perf_counter()
        times.append((end - start) * 1e3)
        if limit is not None and len(times) >= limit:
            break
        if plan.duration_s is not None and end - started >= plan.duration_s:
            break
    return times


def latency_stats(times_ms: list[float]) -> dict[str, float | int | str | None]:
    """min/mean/percentiles/max in ms, the run count and the throughput of the timed runs."""
    if not times_ms:
        raise ValueError("no timed runs")
    samples = np.asarray(times_ms, dtype=np.float64)
    stats: dict[str, float | int | str | None] = {"runs": len(times_ms), "min": float(samples.min()),
                                           "mean": float(samples.mean())}
    for p in PERCENTILES:
        stats[f"p{p}"] = float(np.percentile(samples, p, method=PERCENTILE_METHOD))
    stats["max"] = float(samples.max())
    total_s = float(samples.sum()) / 1e3
    stats["throughput_per_s"] = len(times_ms) / total_s if total_s > 0 else None  # type: ignore[assignment]
    stats["percentile_method"] = PERCENTILE_METHOD
    return stats


def format_stats(stats: dict[str, float | int | str | None]) -> str:
    """One line: run counts, the statistics in ms, the throughput."""
    figures = ", ".join(f"{key} {stats[key]:.4f}" for key in
                        ("min", "mean", *(f"p{p}" for p in PERCENTILES), "max"))
    throughput = stats["throughput_per_s"]
    rate = "unmeasurable" if throughput is None else f"{throughput:.2f} inferences/s"
    return (f"latency over {stats['runs']} run(s) after {stats.get('warmup_runs', 0)} warm-up: "
            f"{figures} ms; throughput {rate}")
