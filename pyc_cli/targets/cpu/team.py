"""The team of threads a CPU build plans its kernels' parallel tasks for.

A kernel splits its work into tasks the OpenMP team shares (guided schedule): a few per thread,
so that threads that start late or run slower even out. The splits were measured on a 2-core
machine (the reference team); on a server of 16 cores the same 4-8 tasks a conv left half of
its threads idle (ResNet-50 at 16 threads ran 27.5 ms against onnxruntime's 9.4 ms on a 16-core
Xeon, 7 Dec 2026). A build plans for `--threads N` where given, else for the cores of the
machine it builds on when it compiles for that machine (`--cpu native`: the artifact runs
there), else for the reference team. A build for the reference team gives the artifacts it
always gave (its constants are those measured)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

REFERENCE_TEAM = 2  # the CI-class machine the task splits were measured on
MAX_PLANNED_TEAM = 256  # beyond this, tasks of ~50 us would not be found in a model's convs
_planned: ContextVar[int] = ContextVar("pyc_planned_team", default=REFERENCE_TEAM)


def planned_team() -> int:
    """The team the kernels being chosen now split their work for."""
    return _planned.get()


def team_for_build(threads: int, cpu: str) -> int:
    """`threads` where given; the build machine's cores for a native build; else the
    reference team."""
    if threads > 0:
        team = threads
    elif cpu == "native":
        team = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    else:
        team = REFERENCE_TEAM
    return max(REFERENCE_TEAM, min(MAX_PLANNED_TEAM, team))


@contextmanager
def planning_for(team: int) -> Iterator[None]:
    token = _planned.set(team)
    try:
        yield
    finally:
        _planned.reset(token)
