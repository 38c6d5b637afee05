"""Shape buckets (issue #15 points 3 and 5): boxes of the input dims a deployment sees, each built
as a plan of its own beside the generic symbolic one (docs/dynamic_shapes.md, "Shape buckets").

A bucket is a BOX of the model's named dims (`batch 1..2, seq 1..64`): a request whose dims lie
in the box runs the bucket's plan, symbolic within the smaller box (a smaller arena, the cost
model's choices for its sizes); a box of one point (every dim fixed) is a static plan of that
exact shape. Nothing is padded: padding a request up to a bucket's shape changes the results of
most models (a softmax over padded keys). Dispatch takes the smallest box containing the
request (ties: the exact one, then the lower id); a request in no box runs the generic plan.
The sample of real shapes is read from `--shape-sample FILE`:

- a JSON histogram: `[{"shapes": {"x": [8, 128]}, "count": 120}, ...]`;
- an .npz of example inputs: keys `INPUT` (one request) or `REQUEST/INPUT` (several requests,
  e.g. `0/x`, `1/x`); only the arrays' shapes are read.

Boxes are chosen deterministically by a greedy clustering of the sample (`choose_buckets`):
each request costs the volume of the box it is dispatched to (the product of the box's upper
bounds: the sizes its plan is made for; a proxy, not a measured time), and each step adds the
candidate box that lowers the sample's total cost the most, while it lowers it by at least
MIN_GAIN of the generic plan's cost, up to the count asked for. Candidates: every exact shape
of at least MIN_SHARE of the sample, and every box from the dims' lower bounds up to a corner of
the sample's per-dim quantiles.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PycError
from .ir.graph import Graph
from .ir.symbolic import Dim, check_within
from .runtime.buckets import Box, box_volume, dispatch_order

AUTO_BUCKETS = 4  # `--shape-buckets auto`: at most this many
MIN_SHARE = 0.05  # an exact shape seen less often than this is not worth a static plan
MIN_GAIN = 0.05  # a box must lower the sample's cost by this much of the generic plan's
QUANTILES = 12  # per dim, the corners of candidate boxes: this many quantiles of the sample
BUCKETS_DIR = "buckets"

ShapeKey = tuple[tuple[str, tuple[int, ...]], ...]  # (input, shape) sorted by input name
Point = tuple[int, ...]  # a request's dims, in the sorted order of the dims' names


@dataclass(frozen=True)
class Bucket:
    """One plan of the artifact beside the generic one: its id (`b0` chosen first), its box of
    the dims, the requests of the sample dispatched to it, and why it exists. `shapes` gives
    each symbolic input's shape within the box: numbers where a dim is fixed (every one: an
    exact, static plan), else `dim:lo..hi` texts, as --input-shape writes them."""

    id: str
    box: Box
    shapes: dict[str, tuple[int | str, ...]]
    count: int
    share: float
    reason: str

    @property
    def exact(self) -> bool:
        return all(lo == hi for _, lo, hi in self.box)

    def directory(self) -> str:
        return f"{BUCKETS_DIR}/{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "dir": self.directory(), "count": self.count,
                "share": self.share, "reason": self.reason,
                "kind": "static" if self.exact else "symbolic",
                "dims": {name: [lo, hi] for name, lo, hi in self.box},
                "shapes": {name: list(shape) for name, shape in sorted(self.shapes.items())}}


def contains(box: Box, point: Point) -> bool:
    return all(lo <= value <= hi for (_, lo, hi), value in zip(box, point))


def parse_bucket_count(text: str | int | None) -> int | None:
    """`auto` -> AUTO_BUCKETS, `N` -> N (0 or more), None -> None (no buckets); else E050."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        count = text
    elif isinstance(text, str) and text.strip().lower() == "auto":
        return AUTO_BUCKETS
    elif isinstance(text, str) and text.strip().isdigit():
        count = int(text.strip())
    else:
        count = -1
    if not 0 <= count <= 64:
        raise PycError("E050", f"--shape-buckets {text!r} is not `auto` or a count from 0 to 64",
                       where="--shape-buckets", hint="e.g. --shape-buckets auto or 3")
    return count


def _malformed(path: Path, what: str) -> PycError:
    return PycError("E052", f"the shape sample {path.name} is malformed: {what}", where=str(path),
                    hint='give a JSON list [{"shapes": {"x": [8, 128]}, "count": 120}, ...] or '
                    "an .npz of example inputs (keys INPUT or REQUEST/INPUT); "
                    "docs/dynamic_shapes.md")


def read_sample(path: str | Path) -> Counter[ShapeKey]:
    """The sample's requests counted by their exact shapes (E052 for a malformed file)."""
    path = Path(path)
    if not path.is_file():
        raise PycError("E052", f"the shape sample {path} does not exist or is not a file",
                       where=str(path), hint="give --shape-sample an existing .json or .npz file")
    if path.suffix.lower() == ".npz":
        return _read_npz(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _malformed(path, f"not JSON ({exc})") from None
    return _read_histogram(path, data)


def _read_histogram(path: Path, data: Any) -> Counter[ShapeKey]:
    if not isinstance(data, list) or not data:
        raise _malformed(path, "the top level is not a non-empty list of entries")
    counts: Counter[ShapeKey] = Counter()
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or set(entry) != {"shapes", "count"}:
            raise _malformed(path, f"entry {index} is not an object with exactly `shapes` and "
                             "`count`")
        count, shapes = entry["count"], entry["shapes"]
        if type(count) is not int or count < 1:
            raise _malformed(path, f"entry {index}: count {count!r} is not a positive integer")
        if not isinstance(shapes, dict) or not shapes:
            raise _malformed(path, f"entry {index}: shapes is not a non-empty object")
        key = []
        for name, shape in sorted(shapes.items()):
            if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
                raise _malformed(path, f"entry {index}: the shape of {name!r} is not a list of "
                                 "non-negative integers")
            key.append((name, tuple(shape)))
        counts[tuple(key)] += count
    return counts


def _read_npz(path: Path) -> Counter[ShapeKey]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            shapes = {key: archive[key].shape for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise _malformed(path, f"not a readable .npz ({exc})") from None
    if not shapes:
        raise _malformed(path, "it holds no arrays")
    requests: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        request, _, name = key.rpartition("/")
        if not name or "/" in request:
            raise _malformed(path, f"the key {key!r} is not INPUT or REQUEST/INPUT")
        requests.setdefault(request, {})[name] = tuple(int(d) for d in shape)
    counts: Counter[ShapeKey] = Counter()
    for _, inputs in sorted(requests.items()):
        counts[tuple(sorted(inputs.items()))] += 1
    return counts


def symbolic_inputs(input_shapes: Mapping[str, Sequence[object]]
                    ) -> dict[str, tuple[object, ...]]:
    """The inputs given symbolic dims by --input-shape, with their dims."""
    return {name: tuple(dims) for name, dims in input_shapes.items()
            if any(isinstance(d, Dim) for d in dims)}


def dim_bounds(input_shapes: Mapping[str, Sequence[object]]) -> dict[str, tuple[int, int]]:
    """Each named dim of the inputs and its bounds, by name."""
    bounds = {}
    for dims in input_shapes.values():
        for dim in dims:
            if isinstance(dim, Dim):
                for name, b in dim.dims().items():
                    bounds[name] = (b.lo, b.hi)
    return dict(sorted(bounds.items()))


def check_sample(path: str | Path, counts: Counter[ShapeKey],
                 input_shapes: Mapping[str, Sequence[object]]) -> Counter[Point]:
    """Every request names exactly the inputs given symbolic dims and fits their bounds (E052
    naming the request's shapes and what is wrong); returns the requests counted by their dims
    (in the sorted order of the dims' names)."""
    symbolic = symbolic_inputs(input_shapes)
    if not symbolic:
        raise PycError("E052", "--shape-sample needs inputs with bounded symbolic dims",
                       where="--input-shape",
                       hint="give --input-shape NAME=dim:LO..HI,... for the inputs that vary")
    names = list(dim_bounds(symbolic))
    points: Counter[Point] = Counter()
    for key in sorted(counts):
        shapes = dict(key)
        if set(shapes) != set(symbolic):
            raise _malformed(Path(path), f"a request names the inputs {sorted(shapes)}; the "
                             f"inputs with symbolic dims are {sorted(symbolic)}")
        env: dict[str, int] = {}
        for name in sorted(symbolic):
            try:
                check_within(name, symbolic[name], shapes[name], env)  # type: ignore[arg-type]
            except PycError as error:
                raise _malformed(Path(path), f"the request {_describe(key)} is outside the "
                                 f"--input-shape bounds: {error.what}") from None
        points[tuple(env[name] for name in names)] += counts[key]
    return points


def _quantiles(values: Counter[int], levels: int) -> list[int]:
    """The smallest value reaching each of `levels` evenly spaced shares of the weighted sample."""
    ordered = sorted(values.items())
    total = sum(values.values())
    out, seen, index = [], 0, 0
    for level in range(1, levels + 1):
        while index < len(ordered) and seen * levels < level * total:
            seen += ordered[index][1]
            index += 1
        out.append(ordered[index - 1][0])
    return sorted(set(out))


def _candidates(points: Counter[Point], names: list[str],
                bounds: Mapping[str, tuple[int, int]]) -> list[Box]:
    """Exact shapes of at least MIN_SHARE of the sample, and boxes from the dims' lower bounds
    up to every corner of per-dim quantiles (the generic box itself left out)."""
    total = sum(points.values())
    boxes = {tuple((name, v, v) for name, v in zip(names, point))
             for point, count in points.items() if count >= MIN_SHARE * total}
    levels = max(2, min(QUANTILES, int(4096 ** (1 / max(1, len(names))))))
    corners: list[tuple[int, ...]] = [()]
    for axis in range(len(names)):
        values = Counter[int]()
        for point, count in points.items():
            values[point[axis]] += count
        corners = [corner + (v,) for corner in corners for v in _quantiles(values, levels)]
    generic = tuple(bounds[name][1] for name in names)
    boxes |= {tuple((name, bounds[name][0], hi) for name, hi in zip(names, corner))
              for corner in corners if corner != generic}
    return [box for _, box in dispatch_order([("", box) for box in boxes])]


def choose_buckets(points: Counter[Point], bounds: Mapping[str, tuple[int, int]],
                   input_shapes: Mapping[str, Sequence[object]], limit: int
                   ) -> tuple[list[Bucket], list[str]]:
    """Up to `limit` boxes chosen greedily (module docstring), each with the sample's requests
    dispatched to it, and a line per shape of the sample left to the generic plan."""
    names = list(bounds)
    generic_volume = box_volume(tuple((name, lo, hi) for name, (lo, hi) in bounds.items()))
    order = sorted(points.items())
    weights = np.array([count for _, count in order], dtype=np.int64)
    cost = np.full(len(order), generic_volume, dtype=np.int64)
    floor = MIN_GAIN * int(weights @ cost)
    candidates = _candidates(points, names, bounds)
    volumes = np.array([box_volume(box) for box in candidates], dtype=np.int64)
    inside = np.array([[contains(box, p) for p, _ in order] for box in candidates], dtype=bool)
    chosen: list[Box] = []
    free = np.ones(len(candidates), dtype=bool)
    while free.any() and len(chosen) < limit:
        saved = np.maximum(0, cost[None, :] - volumes[:, None]) * inside
        gains = np.where(free, saved @ weights, -1)
        best = int(np.argmax(gains))  # the first of equal gains: the smallest box
        if gains[best] <= 0 or gains[best] < floor:
            break
        free[best] = False
        chosen.append(candidates[best])
        cost = np.where(inside[best], np.minimum(cost, volumes[best]), cost)
    return _assign(chosen, order, bounds, input_shapes)


def _assign(chosen: list[Box], order: list[tuple[Point, int]],
            bounds: Mapping[str, tuple[int, int]], input_shapes: Mapping[str, Sequence[object]]
            ) -> tuple[list[Bucket], list[str]]:
    """The buckets, numbered in the order chosen (those left without a request dropped), with
    their share of the sample under dispatch, and the lines for the generic plan's shapes."""
    total = sum(count for _, count in order)
    ranked = dispatch_order([(str(i), box) for i, box in enumerate(chosen)])
    served: dict[int, int] = {}
    generic: list[tuple[Point, int]] = []
    for point, count in order:
        hit = next((int(i) for i, box in ranked if contains(box, point)), None)
        if hit is None:
            generic.append((point, count))
        else:
            served[hit] = served.get(hit, 0) + count
    names = list(bounds)
    corner = "x".join(str(hi) for _, hi in bounds.values())
    buckets: list[Bucket] = []
    for index, box in enumerate(chosen):
        if index not in served:
            continue
        count, share = served[index], served[index] / total
        text = _describe_box(box)
        reason = (f"{count} of {total} requests of the sample ({share:.1%}) have exactly {text}: "
                  "a static plan of that shape" if all(lo == hi for _, lo, hi in box) else
                  f"{count} of {total} requests of the sample ({share:.1%}) lie in {text} and in "
                  f"no smaller bucket: a plan for that box (sized for "
                  f"{'x'.join(str(hi) for _, _, hi in box)}, the generic plan for {corner})")
        buckets.append(Bucket(f"b{len(buckets)}", box, _box_shapes(box, input_shapes), count,
                              round(share, 6), reason))
    lines = [f"{', '.join(f'{n}={v}' for n, v in zip(names, point))}: {count} of {total} "
             f"requests ({count / total:.1%}), in no bucket; runs the generic plan"
             for point, count in sorted(generic, key=lambda item: (-item[1], item[0]))]
    if len(lines) > 12:
        rest = sum(count for _, count in sorted(generic, key=lambda i: (-i[1], i[0]))[12:])
        lines = lines[:12] + [f"{len(lines) - 12} more shapes ({rest} of {total} requests), in "
                              "no bucket; run the generic plan"]
    return buckets, lines


def predicted_speedup(generic: Graph, plan: Graph,
                      kernels: Mapping[str, Sequence[Any]]) -> tuple[float, list[str]]:
    """The cost model's estimate of how much faster a bucket's plan runs its box's largest
    request than the generic plan would: each of the plan's nodes costed with its own kernel
    and with the kernel the generic plan chose for the node of that name (both at the plan's
    shapes; a node the generic plan has not, or whose kernel the generic plan also chose,
    costs the same); and the nodes whose kernels differ (`node: plan's <- generic's`)."""
    theirs = {n.name: n.ann.kernel_name for n in generic.nodes if n.ann.kernel is not None}
    ours = total = 0.0
    changed: list[str] = []
    for node in plan.nodes:
        if node.ann.kernel is None or node.ann.kernel.is_alias:
            continue
        table = {c.name: c for c in kernels.get(node.op, ())}
        own = table[node.ann.kernel_name].cost(node, plan)
        other = table.get(theirs.get(node.name, ""))
        ours += own
        total += own if other is None or other.name == node.ann.kernel_name \
            else other.cost(node, plan)
        if other is not None and other.name != node.ann.kernel_name:
            changed.append(f"{node.name}: {node.ann.kernel_name} <- {other.name}")
    return (total / ours if ours else 1.0), changed


def speedup_note(speedup: float, changed: list[str]) -> str:
    """The decision log's words for predicted_speedup's result."""
    if not changed:
        return ("the same kernels as the generic plan (the cost model predicts 1.00x): the "
                "box buys its arena, not speed")
    shown = "; ".join(changed[:4]) + (f"; {len(changed) - 4} more" if len(changed) > 4 else "")
    return (f"{len(changed)} nodes choose other kernels than the generic plan ({shown}): the "
            f"cost model predicts {speedup:.2f}x the generic plan's speed at the box's largest "
            "request")


def _describe_box(box: Box) -> str:
    return ", ".join(f"{name}={lo}" if lo == hi else f"{name}={lo}..{hi}" for name, lo, hi in box)


def _box_shapes(box: Box, input_shapes: Mapping[str, Sequence[object]]
                ) -> dict[str, tuple[int | str, ...]]:
    """Each symbolic input's shape within the box (module docstring of Bucket.shapes)."""
    within = {name: (lo, hi) for name, lo, hi in box}
    shapes: dict[str, tuple[int | str, ...]] = {}
    for name, dims in symbolic_inputs(input_shapes).items():
        shape: list[int | str] = []
        for dim in dims:
            if isinstance(dim, Dim):
                ((dim_name, _),) = dim.dims().items()
                lo, hi = within[dim_name]
                shape.append(lo if lo == hi else f"{dim_name}:{lo}..{hi}")
            else:
                shape.append(int(dim))  # type: ignore[call-overload]
        shapes[name] = tuple(shape)
    return dict(sorted(shapes.items()))


def _describe(key: ShapeKey) -> str:
    return ", ".join(f"{name}[{','.join(map(str, shape))}]" for name, shape in key)


def shape_key(shapes: Mapping[str, Sequence[int]]) -> ShapeKey:
    return tuple(sorted((name, tuple(int(d) for d in shape)) for name, shape in shapes.items()))
