"""Branches of a run-time If that cannot be compiled for the model's input shapes.

Exporters that script a model keep both arms of a choice on an input's value (Silero VAD picks
its 16 kHz or 8 kHz network by the `sr` input); at the chunk size of one arm, the other's ops
may not type (the 8 kHz branch's LSTM gets a rank-5 input for a 512-sample chunk, and
onnxruntime fails there at run time). Typing such a graph stops at a node inside that branch.
Such a branch is compiled as `pyc.Unreachable` instead (ops/control_flow.py): its nodes are
removed, the If reads the trap's outputs in their place, and taking the branch at run time
stops the run with PYC-E053 naming the If, the branch and the error that typing it gave. The
decision is logged. An error outside every run-time branch, or in both branches of one If,
stays the build's error.
"""

from __future__ import annotations

import re
from typing import Protocol

from ..errors import PycError
from ..ir.graph import Graph, Node, unique_name
from ..ir.types import TensorType
from ..ops.propagate import propagate_types

UNREACHABLE = "pyc.Unreachable"
_NODE = re.compile(r"node '(.*)'$")


class DecisionLog(Protocol):
    def log(self, pass_name: str, nodes: list[str], action: str, reason: str, **data: object) -> None: ...


def types_with_unreachable_branches(graph: Graph, ctx: DecisionLog | None = None
                                    ) -> dict[str, TensorType]:
    """The graph's types; each run-time If branch that cannot be typed is replaced by a
    pyc.Unreachable first (module doc), innermost branch first, until the graph types."""
    while True:
        try:
            return propagate_types(graph)
        except PycError as error:
            branch = failing_branch(graph, error)
            if branch is None:
                raise
            make_unreachable(graph, *branch, error, ctx)


def failing_branch(graph: Graph, error: PycError) -> tuple[Node, str] | None:
    """The innermost run-time If branch holding the node `error` names, or None."""
    match = _NODE.match(error.where)  # "node 'NAME'", or the bare name some rules give
    failed = match.group(1) if match is not None else error.where
    best: tuple[Node, str] | None = None
    for node in graph.nodes:
        if node.op != "pyc.If":
            continue
        for tag in ("then", "else"):
            prefix = branch_prefix(node, tag)
            if failed.startswith(prefix) and (best is None or len(prefix) > len(branch_prefix(*best))):
                best = (node, tag)
    return best


def branch_prefix(node: Node, tag: str) -> str:
    """The names of the nodes a run-time If's branch holds start so (frontend/onnx_import.py)."""
    return f"{node.name}/{tag}/"


def make_unreachable(graph: Graph, if_node: Node, tag: str, error: PycError,
                     ctx: DecisionLog | None) -> None:
    """Replace `if_node`'s branch `tag` by a pyc.Unreachable typed like the other branch."""
    count = len(if_node.outputs)
    slot, other = (1, 1 + count) if tag == "then" else (1 + count, 1)
    producers = graph.producers()

    def trapped(first: int) -> bool:
        return any(producers.get(v) is not None and producers[v].op == UNREACHABLE
                   for v in if_node.inputs[first:first + count])
    if trapped(other) or trapped(slot):
        raise error  # neither branch compiles (or the trap itself cannot type): the If cannot
    prefix = branch_prefix(if_node, tag)
    removed = [n for n in graph.nodes if n.name.startswith(prefix)]
    graph.nodes = [n for n in graph.nodes if not n.name.startswith(prefix)]
    taken = {v for n in graph.nodes for v in (*n.inputs, *n.outputs, n.name)} | set(graph.constants)
    outputs = [unique_name(f"{prefix}unreachable_{i}", taken) for i in range(count)]
    trap = Node(UNREACHABLE, f"{prefix}unreachable", list(if_node.inputs[other:other + count]),
                outputs, {"reason": error.what, "branch": tag, "if": if_node.name})
    graph.nodes.insert(graph.nodes.index(if_node), trap)
    if_node.inputs[slot:slot + count] = outputs
    if ctx is not None:
        ctx.log("import", [if_node.name], "unreachable_branch",
                f"If {if_node.name!r}: its {tag} branch cannot be compiled for these input "
                f"shapes ({error.what}); taking it at run time stops the run (PYC-E053)",
                branch=tag, removed=len(removed))


def unreachable_branches(graph: Graph) -> list[dict[str, str]]:
    """The branches compiled as pyc.Unreachable (the manifest lists them for PYC-E053)."""
    return [{"if": str(n.attrs["if"]), "branch": str(n.attrs["branch"]), "reason": str(n.attrs["reason"])}
            for n in graph.nodes if n.op == UNREACHABLE]
