"""Channel tiling (memory_first): run a Conv → per-channel ops → pool chain one slice of output
channels at a time.

A Conv whose result feeds only per-channel work ending in a pool (the Inception stems:
Conv 7x7/2 + BN + ReLU → MaxPool 3x3/2) becomes G convs, each over a slice of the output
channels (a slice of the constant weights, bias and per-channel epilogue constants), each
followed by the same chain, and a Concat along channels joins the pooled slices. With batch 1 a
channel slice is one contiguous range, so the planner can write each pool straight into its
slice of the Concat output (it copies instead where the pooled slices are small and that gives
the lower peak). The full conv result is never stored: the peak at that step drops from conv +
pool output to pool output + one slice of the conv result.

Every slice gathers the conv input again (im2col), so only a policy with `tile_channels`
(memory_first) tiles, and only a chain that holds the peak: it takes the fewest slices that
lower the peak, repeats while the peak is in a chain, then gives back slices that no longer
lower it. Peaks are the planner's exact liveness bound (`live_profile`), as in the schedule and
rematerialization searches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.types import TensorType
from ..ops import registry
from .plan import live_profile
from .policy import Policy

POOLS = ("MaxPool", "AveragePool")  # per channel: a channel slice in, the same slice out
MAX_GROUPS = 16
# slices of a multiple of 8 output channels: whole 4-row GEMM register tiles, and enough rows to
# amortize the input gather each slice repeats (4-channel slices made the 32x32 cnn ~45% slower)
CHANNEL_MULTIPLE = 8


@dataclass(frozen=True)
class Chain:
    nodes: tuple[str, ...]  # the Conv, per-channel elementwise nodes, then the pool
    channels: int

    def options(self) -> list[int]:
        """Slice counts that split the channels evenly into multiples of CHANNEL_MULTIPLE."""
        return [g for g in range(2, MAX_GROUPS + 1) if self.channels % g == 0
                and (self.channels // g) % CHANNEL_MULTIPLE == 0]


@dataclass
class TileDecision:
    nodes: list[str]
    groups: int  # 1: left whole
    reason: str
    before: int = 0  # peak bytes before and after tiling (the whole graph's)
    after: int = 0


@dataclass
class _Trial:
    """One choice of slice counts applied to a copy of the graph, with its live bytes per step."""

    graph: Graph
    profile: list[int]
    spans: dict[Chain, list[str]]  # the nodes each chain became

    @property
    def peak(self) -> int:
        return max(self.profile, default=0)

    @property
    def key(self) -> tuple[int, int]:
        # fewer steps at the same peak is progress too: two chains may hold equal peaks
        return self.peak, self.profile.count(self.peak)

    def hot_chains(self) -> list[Chain]:
        """Chains whose steps include a step at the peak."""
        position = {node.name: step for step, node in enumerate(self.graph.nodes)}
        hot = []
        for chain, names in self.spans.items():
            steps = [position[name] for name in names]
            if self.peak in self.profile[min(steps):max(steps) + 1]:
                hot.append(chain)
        return hot


def tile_channels(graph: Graph, policy: Policy, alignment: int,
                  refresh: Callable[[Graph], None]) -> list[TileDecision]:
    """Tile the chains that hold the peak (in place on `graph`); one decision per chain found.
    `refresh` redoes per-node planning notes (kernel workspaces) on a rewritten graph."""
    chains, decisions = find_chains(graph)
    if not chains:
        return decisions
    groups = {chain: 1 for chain in chains}

    def trial(choice: dict[Chain, int]) -> _Trial:
        tiled = _copy(graph)
        spans = {chain: _tile(tiled, chain, count) if count > 1 else list(chain.nodes)
                 for chain, count in choice.items()}
        refresh(tiled)
        return _Trial(tiled, live_profile(tiled, policy, alignment), spans)

    current = trial(groups)
    start = current.peak
    while (step := _step_up(groups, current, trial)) is not None:
        groups, current = step
    groups, current = _give_back(groups, current, trial)
    graph.nodes, graph.types, graph.constants = (current.graph.nodes, current.graph.types,
                                                 current.graph.constants)
    for chain, count in groups.items():
        width = chain.channels // count
        reason = (f"the peak was in this chain: {count} slices of {width} output channels, "
                  "pooled one after another and joined by a Concat, so the full conv output is "
                  "never stored"
                  if count > 1 else "left whole: slicing it does not lower the peak, and each "
                  "slice would gather the conv input again")
        decisions.append(TileDecision(list(chain.nodes), count, reason))
    for decision in decisions:
        decision.before, decision.after = start, current.peak
    return decisions


def _step_up(groups: dict[Chain, int], current: _Trial, trial: Callable[[dict[Chain, int]], _Trial]
             ) -> tuple[dict[Chain, int], _Trial] | None:
    """The fewest more slices of a chain at the peak that lower the peak (or its step count)."""
    for chain in current.hot_chains():
        for count in chain.options():
            if count <= groups[chain]:
                continue
            candidate = trial({**groups, chain: count})
            if candidate.key < current.key:
                return {**groups, chain: count}, candidate
    return None


def _give_back(groups: dict[Chain, int], current: _Trial,
               trial: Callable[[dict[Chain, int]], _Trial]) -> tuple[dict[Chain, int], _Trial]:
    """Fewer slices (or none) for every chain where that does not raise the final peak."""
    for chain in [c for c, count in groups.items() if count > 1]:
        for count in [1] + [c for c in chain.options() if c < groups[chain]]:
            candidate = trial({**groups, chain: count})
            if candidate.peak <= current.peak:
                groups, current = {**groups, chain: count}, candidate
                break
    return groups, current


# ---------------------------------------------------------------- finding chains


def find_chains(graph: Graph) -> tuple[list[Chain], list[TileDecision]]:
    """Conv → per-channel → pool chains that can be tiled, and those that cannot (with why)."""
    consumers = graph.consumers()
    chains, rejected = [], []
    for node in graph.nodes:
        nodes = _follow(graph, node, consumers) if node.op == "Conv" else None
        if nodes is None:
            continue
        names = [n.name for n in nodes]
        why = _illegal(graph, nodes)
        if why is None:
            chains.append(Chain(tuple(names), graph.types[node.outputs[0]].shape[1]))
        else:
            rejected.append(TileDecision(names, 1, why))
    return chains, rejected


def _follow(graph: Graph, conv: Node, consumers: dict[str, list[Node]]) -> list[Node] | None:
    """The conv and the nodes that alone read its result, up to the first pool; None when the
    result reaches anything else first."""
    nodes, value = [conv], conv.outputs[0]
    while value not in graph.outputs:
        users = consumers.get(value, [])
        if len({u.name for u in users}) != 1:
            return None
        user = users[0]
        if user.op in POOLS:
            return nodes + [user]
        if user.op != "pyc.Elementwise" or graph.types[user.outputs[0]] != graph.types[value]:
            return None
        nodes.append(user)
        value = user.outputs[0]
    return None


def _illegal(graph: Graph, nodes: list[Node]) -> str | None:
    """Why the chain cannot be tiled, or None."""
    conv, pool = nodes[0], nodes[-1]
    out = graph.types[conv.outputs[0]]
    if out.shape[0] != 1:
        return (f"batch {out.shape[0]}: a channel slice is not one contiguous range, so the "
                "pooled slices could not be written in place")
    if conv.int_attr("group", 1) != 1:
        return "a grouped conv: a slice of output channels reads a slice of the input"
    if len([o for o in pool.outputs if o]) != 1:
        return "the pool also returns indices"
    if not Chain((), out.shape[1]).options():
        return f"{out.shape[1]} channels do not split into slices of a multiple of {CHANNEL_MULTIPLE}"
    chain_values = {n.outputs[0] for n in nodes}
    for node in nodes:
        for index in _per_channel_inputs(graph, node, chain_values):
            if node.inputs[index] not in graph.constants:
                return (f"{node.inputs[index]!r} ({node.name}) differs per channel and is not a "
                        "compile-time constant")
    return None


def _per_channel_inputs(graph: Graph, node: Node, chain_values: set[str]) -> dict[int, int]:
    """Inputs read per output channel (position -> the axis to slice): the conv's weights and
    bias, and operands of fused programs that vary along the output's channels. The chain's
    own values, the conv input and prologue operands are read whole by every slice."""
    out = graph.types[node.outputs[0]]
    if node.op == "Conv":
        own, epilogue, _ = registry.fused_inputs(node)
        axes = {k: 0 for k in (1, 2) if k < len(own) and own[k]}
        operands = list(range(len(own), len(own) + len(epilogue)))
    elif node.op == "pyc.Elementwise":
        axes, operands = {}, list(range(len(node.inputs)))
    else:
        return {}
    for index in operands:
        value = node.inputs[index]
        if not value or value in chain_values:
            continue
        axis = graph.types[value].rank - out.rank + 1  # the operand axis under the channels
        if axis >= 0 and graph.types[value].shape[axis] != 1:
            axes[index] = axis
    return axes


# ---------------------------------------------------------------- the rewrite


def _copy(graph: Graph) -> Graph:
    """A copy sharing nodes and arrays: tiling replaces nodes and adds constants, never edits."""
    return Graph(graph.name, list(graph.inputs), list(graph.outputs), list(graph.nodes),
                 dict(graph.types), dict(graph.constants), graph.opset,
                 list(graph.output_names), graph.activation_storage, dict(graph.value_bounds),
                 list(graph.entry_steps))


def _tile(graph: Graph, chain: Chain, count: int) -> list[str]:
    """Replace the chain by `count` channel slices of it and a Concat of the pooled slices;
    returns the new nodes' names in schedule order."""
    index = {node.name: i for i, node in enumerate(graph.nodes)}
    nodes = [graph.nodes[index[name]] for name in chain.nodes]
    width = chain.channels // count
    sliced: dict[tuple[str, int], str] = {}
    tiles: list[Node] = []
    for part in range(count):
        renamed: dict[str, str] = {}
        for node in nodes:
            tiles.append(_slice_node(graph, node, part, width, renamed, sliced))
    pool = nodes[-1]
    tiles.append(Node("Concat", graph.fresh_name(f"{pool.name}_tiles"),
                      [n.outputs[0] for n in tiles if n.op == pool.op], [pool.outputs[0]],
                      {"axis": 1}))
    last = index[pool.name]
    gone = set(chain.nodes)
    graph.nodes = [n for n in graph.nodes[:last] if n.name not in gone] + tiles + \
        graph.nodes[last + 1:]
    _drop_unused_constants(graph, {v for n in nodes for v in n.inputs if v in graph.constants})
    graph.remove_unused_types()
    return [n.name for n in tiles]


def _slice_node(graph: Graph, node: Node, part: int, width: int, renamed: dict[str, str],
                sliced: dict[tuple[str, int], str]) -> Node:
    """A copy of `node` computing output channels [part * width, (part + 1) * width)."""
    clone = copy.deepcopy(node)
    clone.name = graph.fresh_name(f"{node.name}_tile{part}")
    clone.ann.tiled_from = node.name  # reports find the original's decisions
    clone.ann.kernel = None  # a slice has other shapes: the planner chooses its kernel anew
    axes = _per_channel_inputs(graph, node, set(renamed))
    for k, value in enumerate(node.inputs):
        if value in renamed:
            clone.inputs[k] = renamed[value]
        elif k in axes:
            clone.inputs[k] = _constant_slice(graph, value, axes[k], part, width, sliced)
    whole = graph.types[node.outputs[0]]
    if node.op == "pyc.Elementwise":
        clone.attrs["shape"] = [whole.shape[0], width, *whole.shape[2:]]
    out = graph.fresh_name(f"{node.outputs[0]}_tile{part}")
    clone.outputs = [out]
    in_types: list[TensorType | None] = [graph.types[v] if v else None for v in clone.inputs]
    in_values = [graph.constants.get(v) if v else None for v in clone.inputs]
    graph.types[out] = registry.get(node.op).infer(clone, in_types, in_values)[0]
    renamed[node.outputs[0]] = out
    return clone


def _constant_slice(graph: Graph, value: str, axis: int, part: int, width: int,
                    sliced: dict[tuple[str, int], str]) -> str:
    if (value, part) not in sliced:
        first = part * width
        array = np.take(graph.constants[value], np.arange(first, first + width), axis=axis)
        sliced[(value, part)] = graph.add_constant(f"{value}_ch{first}_{first + width}",
                                                   np.ascontiguousarray(array))
    return sliced[(value, part)]


def _drop_unused_constants(graph: Graph, candidates: set[str]) -> None:
    used = {v for node in graph.nodes for v in node.inputs} | set(graph.outputs)
    for name in candidates - used:
        del graph.constants[name]
