"""Offset assignment in one aligned arena, and the liveness lower bound.

Algorithms (name -> function, one small function each, as in TVM USMP's algorithm table):
- greedy_by_size: largest buffers first, each at the lowest offset free for its whole lifetime
  (the TFLite "greedy by size" strategy, best-fit over the gaps).
- greedy_by_conflicts: buffers with the most lifetime conflicts first (USMP's "greedy by
  conflicts"), which often packs branchy graphs tighter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .liveness import Interval


@dataclass
class Block:
    """One storage in the arena: a value plus everything aliasing it (views, in-place results)."""

    name: str
    nbytes: int
    life: Interval
    offset: int = -1

    @property
    def end_offset(self) -> int:
        return self.offset + self.nbytes


def align(nbytes: int, alignment: int) -> int:
    return max(alignment, -(-nbytes // alignment) * alignment)


def _place_in_order(blocks: list[Block], order: list[Block]) -> int:
    placed: list[Block] = []
    for block in order:
        busy = sorted((b.offset, b.end_offset) for b in placed if b.life.overlaps(block.life))
        block.offset = _lowest_fit(busy, block.nbytes)
        placed.append(block)
    return max((b.end_offset for b in blocks), default=0)


def _lowest_fit(busy: list[tuple[int, int]], size: int) -> int:
    """Best-fit: the smallest gap that holds `size`, else the end of the used range."""
    best, best_gap, cursor = -1, None, 0
    for start, end in busy:
        gap = start - cursor
        if gap >= size and (best_gap is None or gap < best_gap):
            best, best_gap = cursor, gap
        cursor = max(cursor, end)
    return best if best >= 0 else cursor


def greedy_by_size(blocks: list[Block]) -> int:
    order = sorted(blocks, key=lambda b: (-b.nbytes, b.life.start, b.name))
    return _place_in_order(blocks, order)


def greedy_by_conflicts(blocks: list[Block]) -> int:
    def conflicts(block: Block) -> int:
        return sum(other.nbytes for other in blocks if other.life.overlaps(block.life))

    order = sorted(blocks, key=lambda b: (-conflicts(b), -b.nbytes, b.name))
    return _place_in_order(blocks, order)


ALGORITHMS: dict[str, Callable[[list[Block]], int]] = {
    "greedy_by_size": greedy_by_size,
    "greedy_by_conflicts": greedy_by_conflicts,
}


def lower_bound(blocks: list[Block]) -> int:
    """Largest total size of blocks live at one step: no placement can use less."""
    steps = {b.life.start for b in blocks}
    return max((sum(b.nbytes for b in blocks if b.life.start <= s <= b.life.end) for s in steps),
               default=0)
