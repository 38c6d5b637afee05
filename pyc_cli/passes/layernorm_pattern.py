"""Recognize LayerNorm written out by hand (as exporters emit for custom modules) and rewrite it
into one LayerNormalization node, used by canonicalize:

    mean = ReduceMean(x, last axis)      d = Sub(x, mean)
    var  = ReduceMean(d*d or Pow(d, 2))  y = Div(d, Sqrt(Add(var, eps)))
    [y = Mul(y, gamma)] [y = Add(y, beta)]        (gamma, beta constant over the last axis)

One kernel then does two passes over each row instead of nine full-tensor ops.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..ir.graph import Graph, Node
from .context import PassContext

Lookup = Callable[[str], "np.ndarray | None"]


def rewrite_manual_layernorms(graph: Graph, ctx: PassContext, known: Lookup) -> None:
    for node in list(graph.nodes):
        if node in graph.nodes and node.op == "Div":
            _try_rewrite(graph, node, ctx, known)


def _single_user(graph: Graph, value: str, users: dict[str, list[Node]]) -> Node | None:
    found = users.get(value, [])
    if value in graph.outputs or len({n.name for n in found}) != 1:
        return None
    return found[0]


def _is_last_axis_mean(graph: Graph, node: Node | None, known: Lookup) -> bool:
    if node is None or node.op != "ReduceMean" or not node.int_attr("keepdims", 1):
        return False
    rank = graph.types[node.inputs[0]].rank
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        value = known(node.inputs[1])
        axes = None if value is None else [int(a) for a in value.reshape(-1)]
    return axes is not None and [a % rank for a in axes] == [rank - 1]  # type: ignore[union-attr]


def _scalar(known: Lookup, value: str) -> float | None:
    array = known(value)
    return None if array is None or array.size != 1 else float(array.reshape(-1)[0])


def _try_rewrite(graph: Graph, div: Node, ctx: PassContext, known: Lookup) -> None:
    producers, users = graph.producers(), graph.consumers()
    d, s = div.inputs
    sub, sqrt = producers.get(d), producers.get(s)
    if sub is None or sub.op != "Sub" or sqrt is None or sqrt.op != "Sqrt":
        return
    x, mean = sub.inputs
    add_eps = producers.get(sqrt.inputs[0])
    if add_eps is None or add_eps.op != "Add" or not _is_last_axis_mean(graph, producers.get(mean), known):
        return
    var_name = next((v for v in add_eps.inputs if _scalar(known, v) is None), "")
    eps = next((_scalar(known, v) for v in add_eps.inputs if _scalar(known, v) is not None), None)
    var = producers.get(var_name)
    if eps is None or not _is_last_axis_mean(graph, var, known):
        return
    square = producers.get(var.inputs[0])  # type: ignore[union-attr]
    is_square = square is not None and (
        (square.op == "Mul" and square.inputs == [d, d])
        or (square.op == "Pow" and square.inputs[0] == d and _scalar(known, square.inputs[1]) == 2.0))
    if not is_square or producers[mean].inputs[0] != x or graph.types[div.outputs[0]] != graph.types[x]:
        return  # (an eps that broadcasts to a higher rank changes the output's shape)
    chain = [producers[mean], sub, square, var, add_eps, sqrt, div]
    if any(_single_user(graph, n.outputs[0], users) is None for n in chain[:-1] if n not in (sub,)):
        return
    if {u.name for u in users.get(d, [])} != {square.name, div.name}:  # type: ignore[union-attr]
        return
    _replace(graph, chain, x, eps, ctx, known, users)


def _affine(graph: Graph, value: str, op: str, users: dict[str, list[Node]], known: Lookup,
            width: int) -> tuple[Node, str] | None:
    """A following Mul/Add by a constant vector over the normalized axis."""
    user = _single_user(graph, value, users)
    if user is None or user.op != op or value not in user.inputs:
        return None
    other = user.inputs[1] if user.inputs[0] == value else user.inputs[0]
    array = known(other)
    if array is None or array.size != width or array.shape[-1:] != (width,) or \
            graph.types[user.outputs[0]] != graph.types[value]:
        return None  # a gamma or beta of higher rank broadcasts the output to another shape
    return user, other


def _replace(graph: Graph, chain: list[Node], x: str, eps: float, ctx: PassContext,
             known: Lookup, users: dict[str, list[Node]]) -> None:
    x_type = graph.types[x]
    width, dtype = x_type.shape[-1], x_type.dtype.numpy
    scale = _affine(graph, chain[-1].outputs[0], "Mul", users, known, width)
    bias = _affine(graph, scale[0].outputs[0], "Add", users, known, width) if scale else None
    gamma = np.ones(width, dtype) if scale is None else known(scale[1]).reshape(width)  # type: ignore[union-attr]
    inputs = [x, graph.add_constant(f"{chain[-1].name}_ln_scale", gamma.astype(dtype))]
    if bias is not None:
        beta = known(bias[1]).reshape(width).astype(dtype)  # type: ignore[union-attr]
        inputs.append(graph.add_constant(f"{chain[-1].name}_ln_bias", beta))
    chain += [step[0] for step in (scale, bias) if step is not None]
    final = chain[-1]
    layernorm = Node("LayerNormalization", graph.fresh_name(f"{chain[0].name}_layernorm"), inputs,
                     [final.outputs[0]], {"axis": -1, "epsilon": eps})
    graph.nodes[graph.nodes.index(final)] = layernorm
    for node in chain[:-1]:
        graph.nodes.remove(node)
        for out in node.outputs:
            graph.types.pop(out, None)
    ctx.log("canonicalize", [n.name for n in chain], "fuse_manual_layernorm",
            "a hand-written LayerNorm becomes one LayerNormalization kernel (two passes per row "
            "instead of one per op)", before=len(chain), after=1, epsilon=eps)
