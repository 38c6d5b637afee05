"""Small graph-editing helpers shared by passes (they keep types and topological order valid)."""

from __future__ import annotations

from ..ops import registry
from .graph import AttrValue, Graph, Node


def typed_node(graph: Graph, op: str, inputs: list[str], base: str,
               attrs: dict[str, AttrValue] | None = None, output: str | None = None) -> Node:
    """Create a node with a fresh name and a typed fresh output (not yet inserted)."""
    name = graph.fresh_name(base)
    out = output or graph.fresh_name(f"{base}_out")
    node = Node(op, name, inputs, [out], dict(attrs or {}))
    in_types = [graph.types.get(i) if i else None for i in inputs]
    in_values = [graph.constants.get(i) if i else None for i in inputs]
    graph.types[out] = registry.get(op).infer(node, in_types, in_values)[0]
    return node


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


def bypass(graph: Graph, node: Node, source: str) -> str:
    """Remove a node whose single output equals `source`, keeping graph output names stable.

    Returns what happened: "removed", "renamed" (the producer of `source` now defines the graph
    output directly) or "copy" (the node became a pyc.Copy, because the output must own a buffer).
    """
    out = node.outputs[0]
    if out not in graph.outputs:
        graph.nodes.remove(node)
        graph.replace_uses(out, source)
        graph.types.pop(out, None)
        return "removed"
    producer = graph.producers().get(source)
    other_uses = [n for n in graph.consumers().get(source, []) if n is not node]
    if producer is not None and source not in graph.outputs and not other_uses and \
            registry.get(producer.op).category != registry.VIEW:
        graph.nodes.remove(node)
        graph.types.pop(out)
        rename_value(graph, source, out)
        return "renamed"
    node.op, node.inputs, node.attrs = "pyc.Copy", [source], {}
    return "copy"
