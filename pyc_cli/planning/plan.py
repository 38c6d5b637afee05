"""The memory plan: where every intermediate tensor lives in the arena, and why.

Steps: (1) views (Reshape, Flatten, ...) alias their source; (2) the branches of a run-time
If compute their outputs straight into the If's output (below); (3) under a policy with
`inplace` (every mode but latency_first), a fused elementwise loop may write over an operand
that dies at that step (same size, read at the same index); (4) the resulting storages get
offsets from the policy's placement (by default the arena algorithms, the best result kept).

Run-time Ifs (ir/guards.py): each storage carries the condition under which its values are
computed (the disjunction of its members' producers' run conditions); the placement lets the
storages of exclusive conditions (the then- and else-branch of one If, at any nesting) share
bytes, since only one of them is computed in a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..ir import guards
from ..ir.graph import Graph, Node
from ..ir.run_dims import model_dims
from ..ir.symbolic import Dim, DimLike, numel
from ..ops import registry
from .arena import Block, align, live_bytes, lower_bound, peak_step
from .liveness import Interval, compute_liveness
from .policy import Policy
from .runtime_offsets import RuntimeOffsets, choose_runtime_offsets


@dataclass
class TensorPlacement:
    name: str
    bytes: int
    offset: int
    start: int
    end: int
    alias_of: str | None = None
    reason: str = ""
    reuses: list[str] = field(default_factory=list)  # storages whose bytes it takes over

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"name": self.name, "bytes": self.bytes, "offset": self.offset,
                                  "start": self.start, "end": self.end, "reason": self.reason}
        if self.alias_of is not None:
            record["alias_of"] = self.alias_of
        if self.reuses:
            record["reuses"] = self.reuses
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
    inplace: dict[str, str] = field(default_factory=dict)  # node -> operand it overwrites
    concat_slices: dict[str, list[int]] = field(default_factory=dict)  # concat -> inputs in place
    workspaces: dict[str, int] = field(default_factory=dict)  # node -> scratch offset
    # run-time If -> the outputs its branches compute in place (its select copies nothing)
    branch_outputs: dict[str, list[int]] = field(default_factory=dict)
    # branch values of such an If whose output is a graph output: written straight into the
    # caller's output buffer (value -> the graph output), in no arena block
    output_values: dict[str, str] = field(default_factory=dict)
    schedule: str = "given"
    what_if: dict[str, dict[str, int]] = field(default_factory=dict)
    # a model with symbolic dims in a mode that computes offsets at run time (issue #15):
    # `tensors` hold the offsets of a run at the upper bounds, the kernels read these
    runtime: RuntimeOffsets | None = None

    def offset_of(self, name: str) -> int | None:
        for tensor in self.tensors:
            if tensor.name == name:
                return tensor.offset
        return None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemoryPlan:
        """The plan read back from an artifact's memory_plan.json (the debug build of `pyc run
        --per-node` addresses values exactly as the artifact's code does)."""
        tensors = [TensorPlacement(t["name"], t["bytes"], t["offset"], t["start"], t["end"],
                                   t.get("alias_of"), t["reason"], list(t.get("reuses", [])))
                   for t in data["tensors"]]
        return cls(data["mode"], data["alignment"], data["algorithm"], data["arena_bytes"],
                   data["no_reuse_bytes"], data["lower_bound_bytes"], data["reuse_count"],
                   data["inplace_count"], tensors, concat_slices=dict(data["concat_slices"]),
                   workspaces=dict(data["workspaces"]), schedule=data["schedule"],
                   what_if=dict(data["what_if"]),
                   branch_outputs=dict(data.get("branch_outputs", {})),
                   output_values=dict(data.get("output_values", {})),
                   runtime=RuntimeOffsets.from_json(data["runtime_offsets"])
                   if "runtime_offsets" in data else None)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "alignment": self.alignment, "algorithm": self.algorithm,
            "arena_bytes": self.arena_bytes, "no_reuse_bytes": self.no_reuse_bytes,
            "lower_bound_bytes": self.lower_bound_bytes, "reuse_count": self.reuse_count,
            "inplace_count": self.inplace_count, "schedule": self.schedule,
            "concat_slices": self.concat_slices, "workspaces": self.workspaces,
            "what_if": self.what_if,
            "tensors": [t.to_json() for t in self.tensors],
            # only where there are (the artifacts of models without run-time Ifs unchanged)
            **({"branch_outputs": self.branch_outputs} if self.branch_outputs else {}),
            **({"output_values": self.output_values} if self.output_values else {}),
            **({"runtime_offsets": self.runtime.to_json()} if self.runtime is not None else {}),
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


@dataclass
class Storage:
    """Which values share bytes: views and in-place results join their source's storage."""

    roots: dict[str, str]
    members: dict[str, list[str]]  # storage root -> values living in it
    reasons: dict[str, str]
    inplace: dict[str, str]  # node name -> the operand it overwrites
    arena_values: list[str]
    sub_offset: dict[str, int] = field(default_factory=dict)  # bytes from the storage start
    concat_slices: dict[str, list[int]] = field(default_factory=dict)  # concat -> inputs in place
    branch_outputs: dict[str, list[int]] = field(default_factory=dict)  # pyc.If -> outputs
    output_values: dict[str, str] = field(default_factory=dict)  # value -> graph output
    # node -> its run condition (ir/guards.py); empty without run-time Ifs
    conditions: dict[str, guards.Condition] = field(default_factory=dict)


def analyze_storage(graph: Graph, liveness: dict[str, Interval], policy: Policy,
                    concat_in_place: bool = True, keep_copies: frozenset[str] = frozenset(),
                    branch_outputs: bool = True) -> Storage:
    roots = storage_roots(graph)
    arena_values = [v for v in graph.intermediates() if _in_arena(graph, roots, v)]
    members: dict[str, list[str]] = {}
    for value in arena_values:
        members.setdefault(roots[value], []).append(value)
    reasons = {v: "own buffer" if roots[v] == v else f"view of {roots[v]}" for v in arena_values}
    storage = Storage(roots, members, reasons, {}, arena_values)
    if guards.is_guarded(graph):
        storage.conditions = guards.run_conditions(graph)
        if branch_outputs:
            _merge_branch_outputs(graph, liveness, storage)
    if concat_in_place:
        _merge_concat_inputs(graph, storage, keep_copies)
    if policy.inplace:
        _merge_inplace(graph, liveness, storage)
    return storage


def _merge_concat_inputs(graph: Graph, storage: Storage, keep_copies: frozenset[str]) -> None:
    """Let producers write straight into their slice of a Concat output (no copy), where the
    slices are contiguous and each input owns a whole storage of exactly its size."""
    for node in graph.nodes:
        host = node.outputs[0] if node.op == "Concat" and node.name not in keep_copies else ""
        if host not in storage.members or _final_root(storage.roots, host) != host:
            continue
        out = graph.types[host]
        axis = node.int_attr("axis") % out.rank
        if math.prod(out.shape[:axis]) != 1:
            continue  # with leading dims > 1 an input's slice is not one contiguous range
        offset, placed = 0, []
        for index, value in enumerate(node.inputs):
            root = _final_root(storage.roots, value)
            if _can_place_in_slice(graph, storage, node, value, root, host):
                _move_storage(storage, root, host, offset, f"slice of {host} at byte {offset}")
                placed.append(index)
            if isinstance(symbolic_nbytes(graph, value), Dim):
                break  # the next slices would start at a run-time byte offset (issue #15)
            offset += graph.types[value].nbytes
        if placed:
            storage.concat_slices[node.name] = placed


def _merge_branch_outputs(graph: Graph, liveness: dict[str, Interval], storage: Storage) -> None:
    """Let each branch of a run-time If compute an output straight into the If's output (its
    select then copies nothing): output i's storage takes then_i's and else_i's, which are
    computed in exclusive runs. Only where it is simple: the three of one type, the output
    owning a storage of its own, each branch value owning one whose every member is computed
    only in its branch (so under the opposite condition nothing of it is live to be
    overwritten) and dies at the If."""
    producer = {out: node for node in graph.nodes for out in node.outputs if out}
    for step, node in enumerate(graph.nodes):
        if node.op != guards.SELECT_OP:
            continue
        count, cond = len(node.outputs), node.inputs[0]
        for index, out in enumerate(node.outputs):
            pair = (node.inputs[1 + index], node.inputs[1 + count + index])
            graph_output = out in graph.outputs and graph.outputs.count(out) == 1 and \
                storage.roots.get(out) == out and out not in graph.inputs
            if (out not in storage.members and not graph_output) or \
                    storage.roots[out] != out or pair[0] == pair[1] \
                    or any(node.inputs.count(v) > 1 for v in pair):
                continue
            if all(_branch_private(graph, storage, producer, liveness, value, (cond, taken), step)
                   and graph.types[value] == graph.types[out]
                   and (not graph_output or not any(storage.sub_offset.get(m, 0)
                                                    for m in storage.members[value]))
                   for value, taken in zip(pair, (True, False))):
                for value in pair:
                    if graph_output:  # the caller's buffer: out of the arena
                        _write_into_output(storage, value, out)
                    else:
                        _move_storage(storage, value, out, 0, f"branch output, written into {out}")
                storage.branch_outputs.setdefault(node.name, []).append(index)


def _write_into_output(storage: Storage, root: str, output: str) -> None:
    """The values of `root`'s storage (a branch value and its views) live in graph output
    `output`'s buffer (the caller's), at its start: no arena bytes."""
    for member in storage.members.pop(root):
        storage.output_values[member] = output
        storage.reasons[member] = f"branch output, written into graph output {output}"
        storage.arena_values.remove(member)


def _branch_private(graph: Graph, storage: Storage, producer: dict[str, Node],
                    liveness: dict[str, Interval], value: str, literal: guards.Literal,
                    step: int) -> bool:
    """`value` owns a storage whose members are all computed only where `literal` holds and
    are all dead after `step` (the If)."""
    if value not in storage.members or storage.roots[value] != value:
        return False
    return all(v in producer and guards.implies(storage.conditions.get(producer[v].name),
                                                literal) and liveness[v].end <= step
               for v in storage.members[value])


def _can_place_in_slice(graph: Graph, storage: Storage, node: Node, value: str, root: str,
                        host: str) -> bool:
    if root not in storage.members or root == host or node.inputs.count(value) > 1:
        return False
    size = graph.types[value].nbytes
    return graph.types[root].nbytes == size and all(
        storage.sub_offset.get(m, 0) + graph.types[m].nbytes <= size for m in storage.members[root])


def _move_storage(storage: Storage, root: str, host: str, offset: int, reason: str) -> None:
    for member in storage.members[root]:
        storage.sub_offset[member] = storage.sub_offset.get(member, 0) + offset
        if member == root:
            storage.reasons[member] = reason
    storage.members[host] += storage.members.pop(root)
    storage.roots[root] = host


WORKSPACE_SUFFIX = "#workspace"


def workspace_bytes(node: Node) -> int:
    """The scratch the node's chosen kernel takes (select_kernels recorded it)."""
    return node.ann.kernel.workspace_bytes if node.ann.kernel is not None else 0


def storage_blocks(graph: Graph, storage: Storage, liveness: dict[str, Interval],
                   alignment: int) -> list[Block]:
    blocks = [_block(graph, root, values, liveness, alignment, storage.sub_offset)
              for root, values in storage.members.items()]
    for step, node in enumerate(graph.nodes):  # kernel scratch lives only while its node runs
        scratch = workspace_bytes(node)
        if scratch:
            blocks.append(Block(node.name + WORKSPACE_SUFFIX, align(scratch, alignment),
                                Interval(step, step),
                                when=storage.conditions.get(node.name, guards.ALWAYS)))
    if storage.conditions:
        _set_conditions(graph, storage, blocks)
    return blocks


def _set_conditions(graph: Graph, storage: Storage, blocks: list[Block]) -> None:
    """Each storage's condition: where any of its members' producers runs."""
    producer = {out: node.name for node in graph.nodes for out in node.outputs if out}
    for block in blocks:
        if block.name in storage.members:
            block.when = guards.any_of([storage.conditions.get(producer.get(v, ""), guards.ALWAYS)
                                        for v in storage.members[block.name]])


def peak_bytes(graph: Graph, policy: Policy, alignment: int) -> int:
    """The liveness lower bound of the graph's current schedule under `policy`'s aliasing."""
    liveness = compute_liveness(graph)
    return _choose_storage(graph, liveness, policy, alignment)[1]


def live_profile(graph: Graph, policy: Policy, alignment: int) -> list[int]:
    """Bytes live at each schedule step under `policy`'s aliasing rules (its maximum is
    `peak_bytes`): where the peak is, not only how high."""
    blocks = plan_blocks(graph, policy, alignment)
    if any(b.when is not None for b in blocks):  # run-time Ifs: the worst run at each step
        return [live_bytes(blocks, step) for step in range(len(graph.nodes))]
    live = [0] * len(graph.nodes)
    for block in blocks:
        for step in range(block.life.start, block.life.end + 1):
            live[step] += block.nbytes
    return live


def plan_blocks(graph: Graph, policy: Policy, alignment: int) -> list[Block]:
    """The arena blocks of the graph's current schedule and kernels under `policy`'s aliasing
    (not yet placed): what co-selection weighs each kernel choice on."""
    liveness = compute_liveness(graph)
    storage, _ = _choose_storage(graph, liveness, policy, alignment)
    return storage_blocks(graph, storage, liveness, alignment)


def _choose_storage(graph: Graph, liveness: dict[str, Interval], policy: Policy,
                    alignment: int) -> tuple[Storage, int]:
    """Writing concat inputs in place saves copies but holds the whole concat buffer from its
    first producer on. A policy with `concat_copies_for_peak` (balanced, memory_first) turns it
    off, one concat at a time, for concats whose buffer is live at the peak step while that
    lowers the peak; latency_first always takes it."""
    def evaluate(keep: frozenset[str], direct: bool = True) -> tuple[Storage, int, list[Block]]:
        candidate = analyze_storage(graph, liveness, policy, keep_copies=keep,
                                    branch_outputs=direct)
        blocks = storage_blocks(graph, candidate, liveness, alignment)
        return candidate, lower_bound(blocks), blocks

    keep: frozenset[str] = frozenset()
    storage, peak, blocks = evaluate(keep)
    if policy.concat_copies_for_peak and storage.branch_outputs:
        # a branch written into the If's output holds that storage from the branch's first
        # value on, in every run: keep the copy where that raises the peak
        copied = evaluate(keep, direct=False)
        if copied[1] < peak:
            storage, peak, blocks = copied
    direct = bool(storage.branch_outputs)
    while policy.concat_copies_for_peak and storage.concat_slices:
        step = peak_step(blocks)
        live = {b.name for b in blocks if b.life.start <= step <= b.life.end}
        suspects = [n.name for n in graph.nodes if n.name in storage.concat_slices
                    and _final_root(storage.roots, n.outputs[0]) in live]
        for name in suspects:
            trial = evaluate(keep | {name}, direct)
            if trial[1] < peak:
                keep = keep | {name}
                storage, peak, blocks = trial
                break
        else:
            break
    return storage, peak


def build_plan(graph: Graph, liveness: dict[str, Interval], policy: Policy,
               alignment: int) -> MemoryPlan:
    storage, _ = _choose_storage(graph, liveness, policy, alignment)
    blocks = storage_blocks(graph, storage, liveness, alignment)
    algorithm, arena = policy.place(blocks)
    runtime = _runtime_offsets(graph, storage, blocks, policy, alignment, arena)
    if runtime is not None:  # what the plan records and pictures: the run at the upper bounds
        at_upper = dict(zip((b.name for b in runtime.blocks), runtime.upper_offsets()))
        for block in blocks:
            block.offset = at_upper[block.name]
    offsets = {b.name: b.offset for b in blocks}
    tensors = []
    for value in storage.arena_values:
        root = _final_root(storage.roots, value)
        life = liveness[value]
        tensors.append(TensorPlacement(value, graph.types[value].nbytes,
                                       offsets[root] + storage.sub_offset.get(value, 0),
                                       life.start, life.end,
                                       None if root == value else root, storage.reasons[value]))
    workspaces = {}
    for step, node in enumerate(graph.nodes):
        key = node.name + WORKSPACE_SUFFIX
        if key in offsets:
            workspaces[node.name] = offsets[key]
            tensors.append(TensorPlacement(key, workspace_bytes(node),
                                           offsets[key], step, step, None, "kernel workspace"))
    no_reuse = sum(align(graph.types[v].nbytes, alignment) for v in storage.arena_values
                   if storage.roots[v] == v)
    no_reuse += sum(b.nbytes for b in blocks if b.name.endswith(WORKSPACE_SUFFIX))
    reused = _previous_occupants(blocks)
    for tensor in tensors:
        if tensor.alias_of is None:
            tensor.reuses = reused.get(tensor.name, [])
    return MemoryPlan(policy.name, alignment, algorithm,
                      arena if runtime is None else runtime.upper_extent(), no_reuse,
                      lower_bound(blocks), _count_shared(blocks), len(storage.inplace), tensors,
                      dict(storage.inplace), concat_slices=dict(storage.concat_slices),
                      workspaces=workspaces, branch_outputs=dict(storage.branch_outputs),
                      output_values=dict(storage.output_values),
                      runtime=runtime)


def symbolic_nbytes(graph: Graph, value: str) -> DimLike:
    """A value's bytes as an expression of the dims (an int for a static value)."""
    t = graph.types[value]
    return numel(t.shape) * t.dtype.itemsize


def _runtime_offsets(graph: Graph, storage: Storage, blocks: list[Block], policy: Policy,
                     alignment: int, fixed_arena: int) -> RuntimeOffsets | None:
    """The run-time offsets of a model with symbolic dims, under a policy that computes them
    (`runtime_arena`); None otherwise (static models, latency_first: fixed offsets)."""
    dims = model_dims(graph)
    if not dims or policy.runtime_arena is None or not blocks:
        return None
    sizes: dict[str, list[DimLike]] = {}
    members: dict[str, tuple[str, int]] = {}
    for root, values in storage.members.items():
        sizes[root] = []
        for v in values:
            # a slice of a concat sits after static slices only (_merge_concat_inputs)
            sub = storage.sub_offset.get(v, 0)
            sizes[root].append(sub + symbolic_nbytes(graph, v))
            members[v] = (root, sub)
    for node in graph.nodes:
        key = node.name + WORKSPACE_SUFFIX
        if any(b.name == key for b in blocks):
            sizes[key] = [node.ann.kernel.workspace_bytes if node.ann.kernel else 0]
            members[key] = (key, 0)
    return choose_runtime_offsets(blocks, sizes, members, dims, policy.runtime_arena, alignment,
                                  fixed_arena, policy.place)


def _in_arena(graph: Graph, roots: dict[str, str], value: str) -> bool:
    root = _final_root(roots, value)
    return root not in graph.outputs and root not in graph.inputs and root not in graph.constants


def _final_root(roots: dict[str, str], value: str) -> str:
    while value in roots and roots[value] != value:
        value = roots[value]
    return value


def _block(graph: Graph, root: str, values: list[str], liveness: dict[str, Interval],
           alignment: int, sub_offset: dict[str, int]) -> Block:
    start = min(liveness[v].start for v in values)
    end = max(liveness[v].end for v in values)
    nbytes = max(sub_offset.get(v, 0) + graph.types[v].nbytes for v in values)
    return Block(root, align(nbytes, alignment), Interval(start, end))


def _merge_inplace(graph: Graph, liveness: dict[str, Interval], storage: Storage) -> None:
    """Let fused elementwise results overwrite an operand whose storage dies at that step."""
    members, roots = storage.members, storage.roots
    for step, node in enumerate(graph.nodes):
        out = node.outputs[0] if node.outputs else ""
        candidates = _inplace_candidates(node)
        if not candidates or out not in members or len([o for o in node.outputs if o]) > 1:
            continue
        victim = _inplace_victim(graph, node, step, liveness, roots, members, candidates)
        if victim is None:
            continue
        target = _final_root(roots, victim)
        members[target] += members.pop(out)
        roots[out] = target
        storage.reasons[out] = f"in place over {victim}"
        storage.inplace[node.name] = victim


def _inplace_candidates(node: Node) -> list[str]:
    """Inputs the node's kernel may overwrite: any operand of a fused elementwise loop (read at
    the index it writes), or the one input its kernel declares for the build's policy (a row-wise
    kernel that reads a row fully before writing it)."""
    if node.op == "pyc.Elementwise":
        return list(node.inputs)
    if node.ann.epilogue:
        own, epilogue, prologue = registry.fused_inputs(node)
        # an operand the kernel also reads as a main input is read after outputs are stored
        return [v for v in epilogue if v not in own and v not in prologue] \
            if node.ann.stores_once else []
    index = node.ann.kernel.inplace_input if node.ann.kernel is not None else None
    return [node.inputs[index]] if index is not None else []


def _inplace_victim(graph: Graph, node: Node, step: int, liveness: dict[str, Interval],
                    roots: dict[str, str], members: dict[str, list[str]],
                    candidates: list[str]) -> str | None:
    out_type = graph.types[node.outputs[0]]
    for value in candidates:
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


def _previous_occupants(blocks: list[Block]) -> dict[str, list[str]]:
    """For each storage, the storages that held some of its bytes earlier (the latest first)."""
    result: dict[str, list[str]] = {}
    for block in blocks:
        earlier = [o for o in blocks if o.life.end < block.life.start
                   and o.offset < block.end_offset and block.offset < o.end_offset]
        if earlier:
            earlier.sort(key=lambda o: (-o.life.end, o.name))
            result[block.name] = [o.name for o in earlier[:3]]
    return result


def _count_shared(blocks: list[Block]) -> int:
    """Blocks that reuse bytes another block used at a different time."""
    shared = 0
    for index, block in enumerate(blocks):
        if any(other.offset < block.end_offset and block.offset < other.end_offset
               for j, other in enumerate(blocks) if j != index):
            shared += 1
    return shared
