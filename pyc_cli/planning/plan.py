"""The memory plan: where every intermediate tensor lives in the arena, and why.

Steps: (1) views (Reshape, Flatten, ...) alias their source; (2) in modes other than
latency_first, a fused elementwise loop may write over an operand that dies at that step
(same size, read at the same index); (3) the resulting storages get offsets from the arena
algorithms, and the best result is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..ir.graph import Graph, Node
from ..ops import registry
from .arena import ALGORITHMS, Block, align, lower_bound
from .liveness import Interval

# which algorithms each mode tries (the smallest arena wins)
MODE_ALGORITHMS = {
    "latency_first": ("greedy_by_size",),
    "balanced": ("greedy_by_size",),
    "memory_first": ("greedy_by_size", "greedy_by_conflicts"),
}


@dataclass
class TensorPlacement:
    name: str
    bytes: int
    offset: int
    start: int
    end: int
    alias_of: str | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        record = {"name": self.name, "bytes": self.bytes, "offset": self.offset,
                  "start": self.start, "end": self.end, "reason": self.reason}
        if self.alias_of is not None:
            record["alias_of"] = self.alias_of
        return record


@dataclass
class MemoryPlan:
    mode: str
    alignment: int
    algorithm: str
    arena_bytes: int
    no_reuse_bytes: int
    lower_bound_bytes: int
    reuse_count: int
    inplace_count: int
    tensors: list[TensorPlacement] = field(default_factory=list)

    def offset_of(self, name: str) -> int | None:
        for tensor in self.tensors:
            if tensor.name == name:
                return tensor.offset
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "alignment": self.alignment, "algorithm": self.algorithm,
            "arena_bytes": self.arena_bytes, "no_reuse_bytes": self.no_reuse_bytes,
            "lower_bound_bytes": self.lower_bound_bytes, "reuse_count": self.reuse_count,
            "inplace_count": self.inplace_count,
            "tensors": [t.to_json() for t in self.tensors],
        }


def storage_roots(graph: Graph) -> dict[str, str]:
    """Map each value to the value that owns its bytes (views point at their source's root)."""
    roots: dict[str, str] = {}
    for node in graph.nodes:
        is_view = registry.get(node.op).category == registry.VIEW
        for out in node.outputs:
            if out:
                roots[out] = roots.get(node.inputs[0], node.inputs[0]) if is_view else out
    return roots


def build_plan(graph: Graph, liveness: dict[str, Interval], mode: str, alignment: int,
               log: Any = None) -> MemoryPlan:
    roots = storage_roots(graph)
    arena_values = [v for v in graph.intermediates() if _in_arena(graph, roots, v)]
    members: dict[str, list[str]] = {}
    for value in arena_values:
        members.setdefault(roots[value], []).append(value)
    reasons = {v: "own buffer" if roots[v] == v else f"view of {roots[v]}" for v in arena_values}
    inplace = 0
    if mode != "latency_first":
        inplace = _merge_inplace(graph, liveness, roots, members, reasons, log)
    blocks = [_block(graph, root, values, liveness, alignment)
              for root, values in members.items()]
    algorithm, arena = _best_placement(blocks, MODE_ALGORITHMS[mode])
    offsets = {b.name: b.offset for b in blocks}
    tensors = []
    for value in arena_values:
        root = _final_root(roots, value)
        life = liveness[value]
        tensors.append(TensorPlacement(value, graph.types[value].nbytes, offsets[root],
                                       life.start, life.end,
                                       None if root == value else root, reasons[value]))
    no_reuse = sum(align(graph.types[v].nbytes, alignment) for v in arena_values
                   if roots[v] == v)
    return MemoryPlan(mode, alignment, algorithm, arena, no_reuse, lower_bound(blocks),
                      _count_shared(blocks), inplace, tensors)


def _in_arena(graph: Graph, roots: dict[str, str], value: str) -> bool:
    root = _final_root(roots, value)
    return root not in graph.outputs and root not in graph.inputs and root not in graph.constants


def _final_root(roots: dict[str, str], value: str) -> str:
    while value in roots and roots[value] != value:
        value = roots[value]
    return value


def _block(graph: Graph, root: str, values: list[str], liveness: dict[str, Interval],
           alignment: int) -> Block:
    start = min(liveness[v].start for v in values)
    end = max(liveness[v].end for v in values)
    nbytes = max(graph.types[v].nbytes for v in values)
    return Block(root, align(nbytes, alignment), Interval(start, end))


def _merge_inplace(graph: Graph, liveness: dict[str, Interval], roots: dict[str, str],
                   members: dict[str, list[str]], reasons: dict[str, str], log: Any) -> int:
    """Let fused elementwise results overwrite an operand whose storage dies at that step."""
    count = 0
    for step, node in enumerate(graph.nodes):
        out = node.outputs[0] if node.outputs else ""
        if node.op != "pyc.Elementwise" or out not in members:
            continue
        victim = _inplace_victim(graph, node, step, liveness, roots, members)
        if victim is None:
            continue
        target = _final_root(roots, victim)
        members[target] += members.pop(out)
        roots[out] = target
        reasons[out] = f"in place over {victim}"
        node.attrs["inplace_operand"] = node.inputs.index(victim)
        count += 1
        if log is not None:
            log([node.name], "inplace", f"writes over {victim!r}, which dies here: same size, "
                "read at the same index it is written", after=victim)
    return count


def _inplace_victim(graph: Graph, node: Node, step: int, liveness: dict[str, Interval],
                    roots: dict[str, str], members: dict[str, list[str]]) -> str | None:
    out_type = graph.types[node.outputs[0]]
    for value in node.inputs:
        root = _final_root(roots, value)
        if root not in members:
            continue  # not arena-resident (input, constant, output)
        if graph.types[value].shape != out_type.shape or \
                graph.types[value].dtype.itemsize != out_type.dtype.itemsize:
            continue  # broadcast or resized reads would see bytes already overwritten
        if max(liveness[v].end for v in members[root]) != step:
            continue  # someone reads this storage later
        sharing = [v for v in node.inputs if v != value and _final_root(roots, v) == root]
        if sharing:
            continue  # another operand reads the same bytes through a different view
        return value
    return None


def _best_placement(blocks: list[Block], algorithms: tuple[str, ...]) -> tuple[str, int]:
    best_name, best_size, best_offsets = "", -1, {}
    for name in algorithms:
        size = ALGORITHMS[name](blocks)
        if best_size < 0 or size < best_size:
            best_name, best_size = name, size
            best_offsets = {b.name: b.offset for b in blocks}
    for block in blocks:
        block.offset = best_offsets[block.name]
    return best_name, max(best_size, 0)


def _count_shared(blocks: list[Block]) -> int:
    """Blocks that reuse bytes another block used at a different time."""
    shared = 0
    for index, block in enumerate(blocks):
        if any(other.offset < block.end_offset and block.offset < other.end_offset
               for j, other in enumerate(blocks) if j != index):
            shared += 1
    return shared
