"""Liveness: for every value, the schedule steps during which its bytes must hold its value."""

from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Graph


@dataclass(frozen=True)
class Interval:
    """Inclusive range of schedule steps [start, end]; step i is the i-th node."""

    start: int
    end: int

    def overlaps(self, other: Interval) -> bool:
        return self.start <= other.end and other.start <= self.end


def compute_liveness(graph: Graph) -> dict[str, Interval]:
    """Intervals of values defined by nodes. A value never used still occupies its defining step."""
    defined: dict[str, int] = {}
    last_use: dict[str, int] = {}
    for step, node in enumerate(graph.nodes):
        for name in node.present_inputs():
            last_use[name] = step
        for name in node.outputs:
            if name:
                defined[name] = step
    final = len(graph.nodes) - 1
    intervals = {}
    for name, start in defined.items():
        end = final if name in graph.outputs else max(start, last_use.get(name, start))
        intervals[name] = Interval(start, end)
    return intervals
