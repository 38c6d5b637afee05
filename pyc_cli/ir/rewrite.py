"""Small graph-editing helpers shared by passes (they keep types and topological order valid)."""

from __future__ import annotations

from .graph import Graph, Node


def insert_before(graph: Graph, anchor: Node, *new_nodes: Node) -> None:
    index = graph.nodes.index(anchor)
    graph.nodes[index:index] = list(new_nodes)


def rename_value(graph: Graph, old: str, new: str) -> None:
    """Rename a value everywhere (definition, uses, outputs); `new` must be unused."""
    for node in graph.nodes:
        node.inputs = [new if n == old else n for n in node.inputs]
        node.outputs = [new if n == old else n for n in node.outputs]
    graph.outputs = [new if n == old else n for n in graph.outputs]
    graph.types[new] = graph.types.pop(old)
