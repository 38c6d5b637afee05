"""Offset assignment in one aligned arena, and the liveness lower bound.

For a fixed schedule every block has a lifetime; blocks whose lifetimes overlap must not share
bytes. Finding the smallest arena is NP-hard (dynamic storage allocation), so, as TVM's USMP
does, we keep a table of small algorithms (name -> function) and take the best result:

- greedy_by_size: largest blocks first, each at the best-fitting free gap (TFLite's strategy).
- greedy_by_conflicts: blocks with the most bytes alive beside them first (USMP).
- greedy_by_start: blocks in order of birth, longest first among equals.
- hill_climb: start from the best greedy order and try swapping blocks in the placement order
  (USMP's hill climbing), keeping any order that is no worse, until the arena reaches the
  liveness lower bound or the evaluation budget runs out. Its random choices come from a fixed
  seed, so plans are deterministic.

Blocks of a model with run-time Ifs carry the condition under which they are used (`when`,
ir/guards.py); two blocks whose conditions are exclusive (the then- and the else-branch of one
If) never hold values in the same run, so they do not conflict even where their lifetimes
overlap, and the bytes live at a step are those of the worst consistent choice of branches.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

from ..ir import guards
from .liveness import Interval

# evaluations of one placement order cost O(blocks * conflicts); the budget bounds total work
_HILL_CLIMB_WORK = 4_000_000
_HILL_CLIMB_MAX_STEPS = 3_000


@dataclass
class Block:
    """One storage in the arena: a value plus everything aliasing it (views, in-place results)."""

    name: str
    nbytes: int
    life: Interval
    offset: int = -1
    # the run condition of its values (ir/guards.py: None, always; a run-time If's branch)
    when: guards.Condition = None

    @property
    def end_offset(self) -> int:
        return self.offset + self.nbytes


def align(nbytes: int, alignment: int) -> int:
    return max(alignment, -(-nbytes // alignment) * alignment)


def conflicts(blocks: list[Block]) -> list[list[int]]:
    """For each block, the indices of blocks whose lifetimes overlap it."""
    by_start = sorted(range(len(blocks)), key=lambda i: blocks[i].life.start)
    result: list[list[int]] = [[] for _ in blocks]
    for position, i in enumerate(by_start):
        for j in by_start[position + 1:]:
            if blocks[j].life.start > blocks[i].life.end:
                break
            if guards.exclusive(blocks[i].when, blocks[j].when):
                continue  # opposite branches of a run-time If: never both in one run
            result[i].append(j)
            result[j].append(i)
    return result


def place(blocks: list[Block], order: list[int], neighbours: list[list[int]]) -> int:
    """Place blocks in `order` (best fit among gaps free over each lifetime); return arena size."""
    offsets = [-1] * len(blocks)
    arena = 0
    for i in order:
        busy = sorted((offsets[j], offsets[j] + blocks[j].nbytes)
                      for j in neighbours[i] if offsets[j] >= 0)
        offsets[i] = _best_fit(busy, blocks[i].nbytes)
        arena = max(arena, offsets[i] + blocks[i].nbytes)
    for block, offset in zip(blocks, offsets):
        block.offset = offset
    return arena


def _best_fit(busy: list[tuple[int, int]], size: int) -> int:
    """The smallest gap that holds `size`, else the end of the used range."""
    best, best_gap, cursor = -1, None, 0
    for start, end in busy:
        gap = start - cursor
        if gap >= size and (best_gap is None or gap < best_gap):
            best, best_gap = cursor, gap
        cursor = max(cursor, end)
    return best if best >= 0 else cursor


def _by_size(blocks: list[Block], neighbours: list[list[int]]) -> list[int]:
    return sorted(range(len(blocks)), key=lambda i: (-blocks[i].nbytes, blocks[i].life.start, i))


def _by_conflicts(blocks: list[Block], neighbours: list[list[int]]) -> list[int]:
    pressure = [blocks[i].nbytes + sum(blocks[j].nbytes for j in neighbours[i])
                for i in range(len(blocks))]
    return sorted(range(len(blocks)), key=lambda i: (-pressure[i], -blocks[i].nbytes, i))


def _by_start(blocks: list[Block], neighbours: list[list[int]]) -> list[int]:
    return sorted(range(len(blocks)),
                  key=lambda i: (blocks[i].life.start, -(blocks[i].life.end - blocks[i].life.start), i))


GREEDY_ORDERS: dict[str, Callable[[list[Block], list[list[int]]], list[int]]] = {
    "greedy_by_size": _by_size,
    "greedy_by_conflicts": _by_conflicts,
    "greedy_by_start": _by_start,
}


def hill_climb(blocks: list[Block], neighbours: list[list[int]], start: list[int],
               bound: int, seed: int = 0) -> tuple[list[int], int]:
    """Improve a placement order by swaps; stop at the lower bound or when the budget is spent."""
    rng = random.Random(seed)
    order, best = list(start), place(blocks, start, neighbours)
    kept = [b.offset for b in blocks]
    edges = sum(len(n) for n in neighbours) + len(blocks)
    steps = min(_HILL_CLIMB_MAX_STEPS, _HILL_CLIMB_WORK // max(edges, 1))
    for _ in range(steps):
        if best <= bound or len(order) < 2:
            break
        # move a block that touches the peak earlier: it is the one making the arena tall
        peak = [k for k, i in enumerate(order) if blocks[i].end_offset == best]
        a = rng.choice(peak) if peak else rng.randrange(len(order))
        b = rng.randrange(len(order))
        candidate = list(order)
        candidate[a], candidate[b] = candidate[b], candidate[a]
        size = place(blocks, candidate, neighbours)
        if size <= best:
            order, best = candidate, size
            kept = [b.offset for b in blocks]
        else:
            for block, offset in zip(blocks, kept):  # restore the kept order's placement
                block.offset = offset
    return order, best


# more condition scalars than this among the blocks live at one step: only the all-true and
# all-false choices are summed (still a valid lower bound, maybe not the tightest)
_MAX_ENUMERATED_CONDITIONS = 10


def live_bytes(blocks: list[Block], step: int) -> int:
    """The bytes live at `step` in the worst run: the blocks alive there, summed over those
    whose conditions hold, for the choice of run-time If conditions that makes the most."""
    live = [b for b in blocks if b.life.start <= step <= b.life.end]
    conditional = [b for b in live if b.when is not None]
    if not conditional:
        return sum(b.nbytes for b in live)
    names = sorted(set().union(*(guards.variables(b.when) for b in conditional)))
    if len(names) <= _MAX_ENUMERATED_CONDITIONS:
        choices = [dict(zip(names, bits)) for bits in itertools.product((False, True),
                                                                       repeat=len(names))]
    else:
        choices = [dict.fromkeys(names, False), dict.fromkeys(names, True)]
    return max(sum(b.nbytes for b in live if guards.holds(b.when, choice)) for choice in choices)


def peak_step(blocks: list[Block]) -> int:
    """The (first) schedule step at which the most bytes are live."""
    steps = sorted({b.life.start for b in blocks})
    return max(steps, key=lambda s: (live_bytes(blocks, s), -s), default=0)


def lower_bound(blocks: list[Block]) -> int:
    """Largest total size of blocks live at one step in one run: no placement can use less
    (blocks live at once whose conditions all hold in one run pairwise conflict)."""
    steps = {b.life.start for b in blocks}
    return max((live_bytes(blocks, s) for s in steps), default=0)


def assign_offsets(blocks: list[Block], algorithms: tuple[str, ...]) -> tuple[str, int]:
    """Run the named algorithms, keep the smallest arena; returns (algorithm, arena bytes)."""
    if not blocks:
        return algorithms[0], 0
    neighbours = conflicts(blocks)
    bound = lower_bound(blocks)
    results: list[tuple[int, int, str, list[int]]] = []
    for rank, name in enumerate(a for a in algorithms if a in GREEDY_ORDERS):
        order = GREEDY_ORDERS[name](blocks, neighbours)
        results.append((place(blocks, order, neighbours), rank, name, order))
    size, _, name, order = min(results)
    if "hill_climb" in algorithms and size > bound:
        order, size = hill_climb(blocks, neighbours, order, bound)
        name = f"hill_climb(from {name})"
    place(blocks, order, neighbours)
    return name, size
