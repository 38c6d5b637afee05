"""Rematerialization (a policy with `rematerialize`: memory_first): recompute a cheap value
next to each later user instead of keeping it live in between, when that lowers the peak.

Cheap means a fused elementwise loop (or a broadcast) whose inputs are graph inputs or
constants: recomputing it keeps nothing else alive. Each candidate is tried on the schedule
and kept only if the liveness lower bound drops, as in checkpointing planners that trade a
little compute for peak memory.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ..ir.graph import Graph, Node
from .plan import peak_bytes
from .policy import Policy


@dataclass
class RematDecision:
    value: str
    users: list[str]
    kept: bool
    before: int
    after: int


def _cheap_and_independent(graph: Graph, node: Node) -> bool:
    sources = set(graph.inputs) | set(graph.constants)
    return node.op == "pyc.Elementwise" and all(v in sources for v in node.inputs) \
        and len(node.outputs) == 1 and node.outputs[0] not in graph.outputs


def _later_users(graph: Graph, node: Node) -> list[Node]:
    """Users after the first one that run at least two steps after the value is made."""
    position = {n.name: i for i, n in enumerate(graph.nodes)}
    users = sorted({u.name: u for u in graph.consumers().get(node.outputs[0], [])}.values(),
                   key=lambda u: position[u.name])
    start = position[node.name]
    return [u for u in users[1:] if position[u.name] - start >= 2]


def _clone_before(graph: Graph, node: Node, user: Node, index: int) -> Node:
    clone = copy.deepcopy(node)
    clone.name = graph.fresh_name(f"{node.name}_remat{index}")
    value = graph.fresh_name(f"{node.outputs[0]}_remat{index}")
    clone.outputs = [value]
    graph.types[value] = graph.types[node.outputs[0]]
    user.inputs = [value if v == node.outputs[0] else v for v in user.inputs]
    graph.nodes.insert(graph.nodes.index(user), clone)
    return clone


def rematerialize(graph: Graph, policy: Policy, alignment: int) -> list[RematDecision]:
    decisions = []
    for node in [n for n in graph.nodes if _cheap_and_independent(graph, n)]:
        later = _later_users(graph, node)
        if not later:
            continue
        before = peak_bytes(graph, policy, alignment)
        trial = graph.clone()
        trial_node = next(n for n in trial.nodes if n.name == node.name)
        for index, user in enumerate(later, start=1):
            _clone_before(trial, trial_node, next(n for n in trial.nodes if n.name == user.name),
                          index)
        after = peak_bytes(trial, policy, alignment)
        kept = after < before
        if kept:
            graph.nodes, graph.types = trial.nodes, trial.types
        decisions.append(RematDecision(node.outputs[0], [u.name for u in later], kept, before,
                                       after if kept else before))
    return decisions
