"""Run statistics of a loaded model (`model.stats`; `pyc run --json` prints them).

`target` is the target that runs, `targets` every target the artifact holds, in the order they
are tried. A target whose load-time guard fails (no driver or GPU, a GPU the CUBIN was not built
for, too little device memory, a CPU without the code's features) is a guard miss; taking the
next target after it is a fallback, with a PYC-W001 warning and the reason kept in
`last_fallback_reason`. A run whose inputs are not the dtypes and shapes the artifact was built
for is a guard miss too (refused with PYC-E041: every target is built for the same shapes).
`execution` says how a run reaches the device: `native` (the CPU library), `cuda_graph` (the
whole run replayed as one CUDA graph) or `cuda_stream` (kernels launched one by one;
PYC_CUDA_GRAPHS=0); `kernels_timed` is the path `time_kernels` last timed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunStats:
    target: str
    targets: list[str] = field(default_factory=list)
    execution: str = "native"
    guard_miss_count: int = 0
    fallback_count: int = 0
    last_fallback_reason: str | None = None
    kernels_timed: str | None = None
    # an artifact with shape buckets (runtime/buckets.py): runs per plan (`generic` or a bucket
    # id), the plan of the last run and what choosing it took (microseconds); None otherwise
    plan_runs: dict[str, int] | None = None
    last_plan: str | None = None
    last_dispatch_us: float | None = None
    # a model with symbolic dims whose offsets are computed at run time (issue #15): the arena
    # bytes the last run used (tight for its shape); None otherwise
    last_arena_bytes: int | None = None
    # a CUDA model: whether kernels after the first start as programmatic dependents (sm_90
    # builds with PYC_CUDA_PROGRAMMATIC=1); None on the CPU
    programmatic_launch: bool | None = None

    def __post_init__(self) -> None:
        self.targets = self.targets or [self.target]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.plan_runs is None:  # no buckets: the statistics as they always were
            for key in ("plan_runs", "last_plan", "last_dispatch_us"):
                del data[key]
        for key in ("last_arena_bytes", "programmatic_launch"):
            if data[key] is None:
                del data[key]
        return data
