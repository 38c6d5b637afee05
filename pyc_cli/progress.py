"""Build steps, timed: what `pyc build` shows while it works and `--verbose` prints afterwards.

The compiler calls `steps.step(name)` around each step (import, every pass, code generation, the
C compile, writing the artifact); a listener (the CLI's progress display) hears each start. The
times stay out of the artifact, which must be byte-identical across builds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class BuildSteps:
    """Wall time of every step, in the order they ran (a step may run more than once, e.g. the
    passes once per mode tried under --memory-budget)."""

    on_start: Callable[[str], None] | None = None
    times: list[tuple[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.on_start is not None:
            self.on_start(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times.append((name, time.perf_counter() - start))

    @property
    def steps_s(self) -> float:
        """Time spent inside the named steps."""
        return sum(seconds for _, seconds in self.times)

    @property
    def elapsed_s(self) -> float:
        """Wall time since these steps were created (the whole build so far)."""
        return time.perf_counter() - self.started
