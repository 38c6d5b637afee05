"""Run-time arena offsets for a model with symbolic dims (issue #15): the plan stays valid for
every shape within the bounds, and the arena a run uses is tight for its actual shape.

Build time places every block once, at the dims' upper bounds (plan.py, the usual algorithms).
That placement is kept as an *order*: for every two blocks whose lifetimes overlap, the one
placed lower stays below the other at every shape. Each block's size is an expression of the
dims. At run time (once per run, before the first kernel) every block's offset is the
longest path below it:

    offset[i] = max(0, max over j below i of offset[j] + size[j])

computed in the build-time offset order (an edge always goes from a lower to a higher
offset, so that order is topological). This is the smallest arena that keeps the build-time
order; two blocks alive at once never overlap at any shape, since the one below ends before
the one above begins (sizes are positive). Blocks of exclusive run-time If branches
(arena.conflicts) are not ordered: they may overlap, as only one of them holds values in a
run. The edges kept are the transitive reduction of
"below and alive together" (a longer path already implies a shorter edge), so a run does one
add and one max per kept edge: a few hundred integer operations for a BERT.

At the upper bounds every size is at most its build-time size and the longest path is at most
the build-time offset (the build-time offsets satisfy every edge), so the run-time arena never
exceeds the fixed plan's: an arena allocated for the upper bounds holds every run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..ir import guards
from ..ir.run_dims import c_names, c_size
from ..ir.symbolic import Dim, DimBounds, DimLike, parse_dim
from .arena import Block, conflicts, lower_bound
from .liveness import Interval

# how a policy obtains the arena memory when its offsets are computed at run time
# (Policy.runtime_arena; latency_first keeps fixed offsets): `reserve` allocates the upper
# bounds' arena once, when the context is created, and a run touches only its tight prefix
# (pages never touched are not resident); `grow` allocates only what the largest run so far
# used, growing it when a larger shape comes (the memory held is the high-water mark of the
# shapes actually run).


@dataclass
class RuntimeBlock:
    """One block of the arena: its size (the largest of its members' sizes, each an expression
    of the dims, before alignment) and the blocks that lie below it."""

    name: str
    sizes: list[DimLike]
    start: int  # its lifetime: schedule steps start..end
    end: int
    below: list[int] = field(default_factory=list)
    when: guards.Condition = None  # its run condition (a run-time If's branch; arena.Block)

    def size(self, env: Mapping[str, int], alignment: int) -> int:
        return _align(max(_value(s, env) for s in self.sizes), alignment)


@dataclass
class RuntimeOffsets:
    """The run-time half of a memory plan (see the module's docstring)."""

    arena: str  # the policy's runtime_arena: reserve | grow
    alignment: int
    dims: list[DimBounds]
    blocks: list[RuntimeBlock]  # in evaluation order
    values: dict[str, tuple[int, int]]  # value (or NODE#workspace) -> (block, bytes into it)
    fixed_arena_bytes: int  # the fixed upper-bound plan's arena, for comparison
    placed_at: dict[str, int] = field(default_factory=dict)  # the dims the order was placed at

    def evaluate(self, env: Mapping[str, int]) -> tuple[list[int], int]:
        """Every block's offset and the arena's extent for these dims (what the generated C
        computes; `pyc explain` and the tests use this one)."""
        return _longest_paths(self.blocks, self.sizes_at(env))

    def upper_extent(self) -> int:
        """The arena no shape within the bounds exceeds: every size at its upper bound over
        the dims' box (a Dim's int value), through the same longest paths."""
        return self._at_upper()[1]

    def upper_offsets(self) -> list[int]:
        """Every block's offset with every size at its upper bound (the plan's `tensors`)."""
        return self._at_upper()[0]

    def _at_upper(self) -> tuple[list[int], int]:
        return _longest_paths(self.blocks, [_align(max(int(s) for s in b.sizes), self.alignment)
                                            for b in self.blocks])

    def critical_path(self, env: Mapping[str, int]) -> list[int]:
        """The blocks (bottom first) whose sizes add up to the arena at these dims."""
        sizes = self.sizes_at(env)
        offsets, extent = self.evaluate(env)
        top = next((k for k in range(len(self.blocks)) if offsets[k] + sizes[k] == extent), None)
        path: list[int] = []
        while top is not None:
            path.append(top)
            top = next((j for j in self.blocks[top].below
                        if offsets[j] + sizes[j] == offsets[top]), None)
        return path[::-1]

    def path_expression(self, path: list[int]) -> str:
        """The arena along `path` as an expression of the dims (sizes before alignment)."""
        total: DimLike = 0
        extra = []
        for k in path:
            sizes = self.blocks[k].sizes
            if len(sizes) == 1:
                total = total + sizes[0]
            else:
                extra.append("max(" + ", ".join(str(s) for s in sizes) + ")")
        return " + ".join([str(total), *extra]) if extra else str(total)

    def lower_bound_at(self, env: Mapping[str, int]) -> int:
        """The most bytes alive at one step in one run at these dims: no placement can use
        less (arena.lower_bound over the blocks at these sizes)."""
        return lower_bound([Block(b.name, size, Interval(b.start, b.end), when=b.when)
                            for b, size in zip(self.blocks, self.sizes_at(env))])

    def sizes_at(self, env: Mapping[str, int]) -> list[int]:
        return [b.size(env, self.alignment) for b in self.blocks]

    def extent_at(self, env: Mapping[str, int]) -> int:
        return self.evaluate(env)[1]

    def corners(self) -> list[dict[str, int]]:
        """Every corner of the dims' box (each dim at its lowest or highest)."""
        return [{d.name: v for d, v in zip(self.dims, choice)} for choice in itertools.product(
            *[(d.lo, d.hi) if d.lo != d.hi else (d.lo,) for d in self.dims])]

    def c_blocks(self) -> list[dict[str, Any]]:
        """What the template renders: each block's aligned size as a C expression over `dims`,
        and its offset as one over the blocks below it."""
        names = c_names(self.dims)
        out = []
        for block in self.blocks:
            exprs = [c_size(s, names) for s in block.sizes]
            static = all(not isinstance(s, Dim) for s in block.sizes)
            size = str(_align(max(int(s) for s in block.sizes), self.alignment)) if static \
                else f"pyc_arena_align({_c_max(exprs)}, {self.alignment})"
            ends = [f"offsets[{j}] + size[{j}]" for j in block.below]
            out.append({"name": block.name, "size": size,
                        "offset": _c_max(ends) if ends else "0"})
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "arena": self.arena, "alignment": self.alignment,
            "dims": [{"name": d.name, "lo": d.lo, "hi": d.hi} for d in self.dims],
            "blocks": [{"name": b.name, "sizes": [str(s) for s in b.sizes], "start": b.start,
                        "end": b.end, "below": b.below,
                        **({"when": _condition_json(b.when)} if b.when is not None else {})}
                       for b in self.blocks],
            "values": {k: list(v) for k, v in sorted(self.values.items())},
            "fixed_arena_bytes": self.fixed_arena_bytes, "placed_at": self.placed_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuntimeOffsets:
        dims = [DimBounds(d["name"], d["lo"], d["hi"]) for d in data["dims"]]
        bounds = {d.name: d for d in dims}
        blocks = [RuntimeBlock(b["name"], [parse_dim(s, bounds) for s in b["sizes"]],
                               b["start"], b["end"], list(b["below"]),
                               _condition_of(b["when"]) if "when" in b else None)
                  for b in data["blocks"]]
        values = {k: (v[0], v[1]) for k, v in data["values"].items()}
        return cls(data["arena"], data["alignment"], dims, blocks, values,
                   data["fixed_arena_bytes"], dict(data["placed_at"]))


def runtime_offsets(placed: Sequence[Block], sizes: Mapping[str, list[DimLike]],
                    members: Mapping[str, tuple[str, int]], dims: list[DimBounds], arena: str,
                    alignment: int, fixed_arena: int) -> RuntimeOffsets:
    """The run-time plan of blocks `placed` at the upper bounds. `sizes`: each block's member
    sizes (expressions); `members`: each value -> (its block, bytes into the block, a number)."""
    order = sorted(range(len(placed)), key=lambda i: (placed[i].offset, placed[i].name))
    position = {placed[i].name: k for k, i in enumerate(order)}
    blocks = [RuntimeBlock(placed[i].name, _distinct(sizes[placed[i].name]),
                           placed[i].life.start, placed[i].life.end, when=placed[i].when)
              for i in order]
    neighbours = conflicts(list(placed))  # the blocks alive at some step with each
    for k, i in enumerate(order):
        mine = placed[i]
        blocks[k].below = sorted(position[placed[j].name] for j in neighbours[i]
                                 if placed[j].end_offset <= mine.offset)
    _reduce(blocks)
    values = {v: (position[block], sub) for v, (block, sub) in members.items()}
    return RuntimeOffsets(arena, alignment, dims, blocks, values, fixed_arena)


def choose_runtime_offsets(placed: Sequence[Block], sizes: Mapping[str, list[DimLike]],
                           members: Mapping[str, tuple[str, int]], dims: list[DimBounds],
                           arena: str, alignment: int, fixed_arena: int,
                           place: Callable[[list[Block]], object]) -> RuntimeOffsets:
    """The order that keeps the arena closest to the liveness lower bound over the dims' box.
    Any placement's order is valid at every shape (the proof does not use the sizes it was
    placed with), so besides the upper bounds' placement (`placed`) the blocks are placed again
    (by `place`, the planner's algorithms) at their sizes at the lower bounds, a quarter of the
    way up and at the box's center. An order is kept only if its arena at the upper bounds is
    no larger than the fixed plan's; among those, the smallest sum of arena / lower bound over
    the sample points (corners, center, a quarter of the way up) wins, the upper bounds' order
    on a tie."""
    upper = {d.name: d.hi for d in dims}
    best = runtime_offsets(placed, sizes, members, dims, arena, alignment, fixed_arena)
    best.placed_at = upper
    points = _sample_points(dims)
    best_score = _score(best, points)
    for env in (_point(dims, 0, 1), _point(dims, 1, 4), _point(dims, 1, 2)):
        if env == upper:
            continue
        trial = [Block(b.name, _align(max(_value(x, env) for x in sizes[b.name]), alignment),
                       b.life, when=b.when) for b in placed]
        place(trial)
        candidate = runtime_offsets(trial, sizes, members, dims, arena, alignment, fixed_arena)
        candidate.placed_at = env
        if candidate.upper_extent() > fixed_arena:
            continue
        score = _score(candidate, points)
        if score < best_score:
            best, best_score = candidate, score
    return best


def _point(dims: list[DimBounds], num: int, den: int) -> dict[str, int]:
    """Each dim num/den of the way from its lower to its upper bound."""
    return {d.name: d.lo + (d.hi - d.lo) * num // den for d in dims}


def _sample_points(dims: list[DimBounds]) -> list[dict[str, int]]:
    corners = [{d.name: v for d, v in zip(dims, choice)} for choice in itertools.product(
        *[(d.lo, d.hi) for d in dims])] if len(dims) <= 4 else \
        [_point(dims, 0, 1), _point(dims, 1, 1)]
    out: list[dict[str, int]] = []
    for env in [*corners, _point(dims, 1, 2), _point(dims, 1, 4)]:
        if env not in out:
            out.append(env)
    return out


def _score(plan: RuntimeOffsets, points: list[dict[str, int]]) -> float:
    return sum(plan.extent_at(env) / max(plan.lower_bound_at(env), 1) for env in points)


def _longest_paths(blocks: list[RuntimeBlock], sizes: list[int]) -> tuple[list[int], int]:
    """Each block's offset (the longest path of sizes below it) and the arena's extent."""
    offsets: list[int] = []
    for block in blocks:
        offsets.append(max((offsets[j] + sizes[j] for j in block.below), default=0))
    return offsets, max((o + s for o, s in zip(offsets, sizes)), default=0)


def _reduce(blocks: list[RuntimeBlock]) -> None:
    """Drop the edges a longer path implies (sizes are positive, so offset[k] >= offset[j] +
    size[j] whenever j reaches k): the transitive reduction, with reachability as bitsets."""
    reach: list[int] = []  # bit j of reach[k]: j lies (transitively) below k
    for block in blocks:
        implied = 0
        for j in block.below:
            implied |= reach[j]
        block.below = [j for j in block.below if not (implied >> j) & 1]
        below = 0
        for j in block.below:
            below |= reach[j] | (1 << j)
        reach.append(below)


def _distinct(sizes: list[DimLike]) -> list[DimLike]:
    out: list[DimLike] = []
    for s in sizes:
        if not any(_same(s, t) for t in out):
            out.append(s)
    return sorted(out, key=str)


def _same(a: DimLike, b: DimLike) -> bool:
    return isinstance(a, Dim) == isinstance(b, Dim) and (a == b if isinstance(a, Dim)
                                                       else int(a) == int(b))


def _value(size: DimLike, env: Mapping[str, int]) -> int:
    return size.evaluate(env) if isinstance(size, Dim) else int(size)


def _align(nbytes: int, alignment: int) -> int:
    return max(alignment, -(-nbytes // alignment) * alignment)


def _condition_json(cond: guards.Condition) -> list[list[list[object]]]:
    """A run condition as JSON: its terms, each a sorted list of [value, polarity]."""
    return [[[value, polarity] for value, polarity in term]
            for term in guards.sorted_terms(cond)] if cond is not None else []


def _condition_of(data: list[list[list[object]]]) -> guards.Condition:
    return frozenset(frozenset((str(value), bool(polarity)) for value, polarity in term)
                     for term in data)


def _c_max(exprs: list[str]) -> str:
    out = exprs[0]
    for e in exprs[1:]:
        out = f"pyc_max64({out}, {e})"
    return out
