"""smallest_first: a PyC planner policy that places the arena's smallest blocks first.

PyC's built-in policies run several greedy placements and keep the smallest arena. This one
places blocks in one fixed order, smallest first (ties: the earlier start, then the name), each
at the lowest offset that is free over its whole lifetime. Small, long-lived values then pack
at the bottom of the arena and large short-lived ones share the space above them; the arena is
never below the liveness bound, and rarely far above it for models of many small tensors.

Everything else is balanced's: in-place writes, the model's schedule, run-time offsets for
symbolic dims. The policy is a frozen dataclass: fields set the rules, a method overrides one.
It decides from the graph alone (sorted lists, no sets, no random numbers), as a policy must:
the build replays its decisions and refuses one that changes them (PYC-E061).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyc_cli.planning.arena import Block, conflicts, place
from pyc_cli.planning.policy import BALANCED, Policy

__all__ = ["SMALLEST_FIRST", "SmallestFirst"]


@dataclass(frozen=True)
class SmallestFirst(Policy):
    """balanced's rules, with blocks placed smallest first."""

    def place(self, blocks: list[Block]) -> tuple[str, int]:
        if not blocks:
            return "smallest_first", 0
        order = sorted(range(len(blocks)),
                       key=lambda i: (blocks[i].nbytes, blocks[i].life.start, blocks[i].name))
        return "smallest_first", place(blocks, order, conflicts(blocks))


SMALLEST_FIRST = SmallestFirst(
    "smallest_first", version="1.0.0",
    summary="balanced, with the arena's smallest blocks placed first",
    inplace=BALANCED.inplace, runtime_arena=BALANCED.runtime_arena,
    rules={"placement": "smallest blocks first, each at the lowest free offset"})
