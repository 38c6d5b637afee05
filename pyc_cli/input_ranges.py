"""Which values an integer graph input may hold, derived from how the graph uses it.

An input that reaches the indices of a Gather (an embedding lookup: `token_type_ids` into a
table of 2 rows), GatherElements, GatherND, ScatterElements or ScatterND, directly or through
ops that keep every element (Cast, Unsqueeze, Reshape, Expand, ...), may only hold indices
valid there; an input used as a mask (a Where condition, cast to bool, `*mask*`) holds 0 or 1.
At build the facts go to `input_ranges.json` in the artifact; `pyc run --random-inputs` draws
from them, and a run the kernels stop with "index out of range" is explained from them: the
input, the node, the value and the valid range (PYC-E048).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PycError
from .ir.graph import Graph, Node
from .ir.types import DType

INPUT_RANGES_FILE = "input_ranges.json"
DEFAULT_RANGE = (0, 100)  # integers nothing constrains: small non-negative values

# ops whose output holds every element of their first input, unchanged (a value that is out of
# range after them was out of range before); Concat keeps the elements of every input
_ELEMENT_PRESERVING = {"Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten",
                       "Expand", "Tile", "Transpose"}
# op -> (position of the indices input, position of the data input)
_INDEX_OPS = {"Gather": (1, 0), "GatherElements": (1, 0), "GatherND": (1, 0),
              "ScatterElements": (1, 0), "ScatterND": (1, 0)}
_MASK_OPS = {"Not", "And", "Or", "Xor"}
_INTEGER = {DType.I8, DType.I16, DType.I32, DType.I64, DType.U8, DType.U16, DType.U32, DType.U64}


@dataclass(frozen=True)
class IndexUse:
    """A node that reads the input's values as indices: valid values are low <= v < high."""

    node: str
    op: str
    low: int
    high: int
    table: str  # what the bound comes from, for messages ("axis 0 of 'emb.weight' (2 rows)")


@dataclass
class InputRange:
    """The values random inputs draw from ([low, high)), why, and every index use."""

    low: int
    high: int
    why: str
    uses: list[IndexUse] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: Any) -> InputRange:
        uses = [IndexUse(str(use["node"]), str(use["op"]), int(use["low"]), int(use["high"]),
                         str(use["table"])) for use in record["uses"]]
        found = cls(int(record["low"]), int(record["high"]), str(record["why"]), uses)
        bounds = [found.low, found.high, *(b for u in uses for b in (u.low, u.high))]
        if found.low >= found.high or any(u.low >= u.high for u in uses):
            raise ValueError("an empty range")
        if any(abs(bound) > 2**63 for bound in bounds):
            raise ValueError("a bound beyond 64 bits")
        return found


def input_ranges(graph: Graph) -> dict[str, InputRange]:
    """The range of every integer graph input of the imported (not yet optimized) graph."""
    users = graph.consumers()
    ranges = {}
    for name in graph.inputs:
        if graph.type_of(name).dtype in _INTEGER:
            ranges[name] = _range_of(graph, name, users)
    return ranges


def _range_of(graph: Graph, name: str, users: dict[str, list[Node]]) -> InputRange:
    uses: list[IndexUse] = []
    mask_by: str | None = None
    carriers, seen = [name], {name}
    while carriers:  # every value that holds the input's elements unchanged
        value = carriers.pop()
        for node in users.get(value, []):
            use = _index_use(graph, node, value)
            if use is not None:
                uses.append(use)
            elif _is_mask_use(graph, node, value):
                mask_by = mask_by or f"used as one by {node.op} {node.name!r}"  # the first
            elif (node.op in _ELEMENT_PRESERVING and node.inputs[0] == value) or node.op == "Concat":
                cast_to = graph.types.get(node.outputs[0])
                if node.op == "Cast" and (cast_to is None or cast_to.dtype not in _INTEGER):
                    continue  # cast to float: arithmetic, not indexing
                for out in node.outputs[:1]:
                    if out not in seen:
                        seen.add(out)
                        carriers.append(out)
    uses.sort(key=lambda u: (u.node, u.op))
    if mask_by is None and "mask" in name.lower():
        mask_by = "so named"
    if uses:
        tightest = min(uses, key=lambda u: u.high)
        high = min(tightest.high, 2) if mask_by else tightest.high
        return InputRange(0, max(high, 1), f"indices of {tightest.op} {tightest.node!r} "
                          f"({tightest.table})", uses)
    if mask_by:
        return InputRange(0, 2, f"a mask (0 or 1): {mask_by}")
    declared = graph.value_bounds.get(name)
    if declared is not None:  # sizes computed from it are bounded by these (issue #15)
        low, high = math.ceil(declared[0]), math.floor(declared[1]) + 1
        if low < high:
            return InputRange(low, high, "declared with --input-values")
    return InputRange(*DEFAULT_RANGE, "no index or mask use found: the default range")


def _index_use(graph: Graph, node: Node, value: str) -> IndexUse | None:
    positions = _INDEX_OPS.get(node.op)
    if positions is None or len(node.inputs) <= positions[0] or node.inputs[positions[0]] != value:
        return None
    data = node.inputs[positions[1]]
    data_type, index_type = graph.types.get(data), graph.types.get(value)
    if data_type is None or index_type is None:
        return None
    shape = data_type.shape
    if node.op in ("GatherND", "ScatterND"):
        batch = int(node.attr("batch_dims", 0) or 0)
        depth = index_type.shape[-1] if index_type.shape else 0
        dims = shape[batch:batch + depth]
        if not dims:
            return None
        bound = min(dims)
        table = f"dims {list(dims)} of {data!r}"
    else:
        axis = int(node.attr("axis", 0) or 0)
        if not shape:
            return None
        axis %= len(shape)
        bound = shape[axis]
        table = f"axis {axis} of {data!r}: {bound} entries"
    if bound <= 0:
        return None
    return IndexUse(node.name, node.op, -bound, bound, table)


def _is_mask_use(graph: Graph, node: Node, value: str) -> bool:
    if node.op == "Where":
        return node.inputs[0] == value
    if node.op == "Cast":
        cast_to = graph.types.get(node.outputs[0])
        return cast_to is not None and cast_to.dtype == DType.BOOL
    return node.op in _MASK_OPS


# ---------------------------------------------------------------- artifact file


def ranges_json(ranges: dict[str, InputRange]) -> dict[str, Any]:
    return {name: found.to_json() for name, found in sorted(ranges.items())}


def read_input_ranges(artifact: Path, manifest: dict[str, Any]) -> dict[str, InputRange] | None:
    """The recorded ranges; None for an artifact without them (built before they were recorded,
    or slimmed). Only a file the manifest lists (so verified by its hash) is read."""
    if INPUT_RANGES_FILE not in manifest.get("files", {}):
        return None
    path = artifact / INPUT_RANGES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(name): InputRange.from_json(record) for name, record in data.items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError, OverflowError,
            RecursionError) as exc:
        raise PycError("E030", f"{INPUT_RANGES_FILE} is malformed ({type(exc).__name__})",
                       where=str(path), hint="rebuild the artifact") from exc


# ---------------------------------------------------------------- run time


def out_of_range_error(ranges: dict[str, InputRange] | None,
                       feeds: dict[str, np.ndarray]) -> PycError | None:
    """PYC-E048 naming the input, node, value and valid range of the first index a feed holds
    outside a range its consumer accepts; None when every feed is within them."""
    for name, found in sorted((ranges or {}).items()):
        values = feeds.get(name)
        if values is None or values.size == 0:
            continue
        for use in found.uses:
            bad = np.flatnonzero((values < use.low) | (values >= use.high))
            if bad.size:
                at = tuple(int(i) for i in np.unravel_index(bad[0], values.shape))
                value = int(values[at])
                return PycError("E048", f"input {name!r} holds {value} at position {at} "
                                f"({bad.size} value(s) out of range); node {use.node!r} "
                                f"({use.op}) accepts "
                                f"indices in [{use.low}, {use.high}) ({use.table})",
                                where=f"input {name!r} -> node {use.node!r}",
                                hint=f"keep {name!r} within [{max(use.low, 0)}, {use.high})")
    return None


def random_integers(rng: np.random.Generator, found: InputRange | None, shape: tuple[int, ...],
                    dtype: np.dtype) -> np.ndarray:
    """Random values of an integer input within its recorded range (the default without one),
    clipped to what the dtype holds."""
    low, high = (found.low, found.high) if found is not None else DEFAULT_RANGE
    info = np.iinfo(dtype)
    low, high = max(low, int(info.min)), min(high, int(info.max) + 1)
    return rng.integers(low, high, shape).astype(dtype)
