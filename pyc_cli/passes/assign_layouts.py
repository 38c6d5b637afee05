"""Layout assignment: which tensors live in the blocked channel layout (NCHWc, ops/layout.py).

The target says whether it has blocked kernels and in blocks of how many channels
(`blocked_layout`: its mode, from `pyc build --layout`, and its block; none on targets without
blocked kernels). Regions are the connected groups of layout-tolerant nodes around convs:

- a 2-D float32 Conv of one group whose channel counts are multiples of the block and whose
  weight is a constant only it reads (the blocked kernel reads it packed);
- an elementwise op whose operands all have its output's shape, or are single values (the same
  loop in either layout: residual adds, activations);
- a 2-D MaxPool / AveragePool with one output, where the target has a blocked pool.

Within a region the convs whose blocked kernel the target's cost model prices below their best
plain one become `pyc.ConvBlocked` (`--layout blocked`: every eligible conv); the others leave
the region, which may split. Nodes at a region's front that are no conv (every input from
outside) leave it too: the layout change then happens behind them, once. What is left costs
one `pyc.Reorder` to blocked per tensor entering the region and one back per tensor leaving
it (read by any node outside or a graph output): transforms sit at region edges only, never
inside, and each is shared by all the readers on its side. A value produced in one region is
never read by a node of another (they would be one region), so no transform undoes another.
The region is kept where the convs' estimated savings exceed its transforms' cost; each
region's decision and its numbers go into the decision log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph, Node
from ..ir.groups import connected_groups
from ..ir.types import DType, TensorType
from ..ops import registry
from ..ops.layout import BLOCKED_SUFFIX, blocked_shape
from .context import PassContext
from .tuning import kernel_signature

NAME = "assign_layouts"
POOLS = ("MaxPool", "AveragePool")


@dataclass
class Region:
    nodes: list[Node]
    entering: list[str] = field(default_factory=list)
    leaving: list[str] = field(default_factory=list)


def assign_layouts(graph: Graph, ctx: PassContext) -> Graph:
    mode, block = ctx.target.blocked_layout() if ctx.target is not None else ("nchw", 0)
    if mode == "nchw" or block == 0:
        ctx.log(NAME, [], "keep_nchw", "the plain layout everywhere "
                + ("(--layout nchw)" if mode == "nchw" else "(the target has no blocked kernels)"))
        return graph
    tolerant = {n.name for n in graph.nodes if _tolerant(n, graph, block)}
    for region in _regions(graph, tolerant):
        _decide(graph, region, block, mode, ctx)
    return graph


# ---------------------------------------------------------------- which nodes may be blocked


def _blockable(graph: Graph, value: str, block: int) -> bool:
    t = graph.types.get(value)
    return t is not None and t.dtype is DType.F32 and t.rank == 4 and t.shape[1] % block == 0 \
        and t.numel > 0


def _tolerant(node: Node, graph: Graph, block: int) -> bool:
    outputs = [o for o in node.outputs if o]
    if len(outputs) != 1 or not _blockable(graph, outputs[0], block):
        return False
    if node.op == "Conv":
        return _conv_eligible(node, graph, block)
    if node.op in POOLS:
        return _blockable(graph, node.inputs[0], block)  # kept where the target has a kernel
    if registry.get(node.op).category != registry.ELEMENTWISE:
        return False
    shape = graph.types[outputs[0]].shape
    return all(graph.types[v].shape == shape or graph.types[v].numel == 1
               for v in node.present_inputs())


def _conv_eligible(node: Node, graph: Graph, block: int) -> bool:
    from ..planning.weights import CONV_BLOCKS  # the blocks the weights file can pack

    w = node.inputs[1]
    if node.ann.prologue or not _blockable(graph, node.inputs[0], block) \
            or node.int_attr("group", 1) != 1 or graph.types[w].rank != 4 \
            or not graph.is_private_constant(w) or block not in {b for b, _ in CONV_BLOCKS}:
        return False
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    return not bias or bias in graph.constants


# ---------------------------------------------------------------- regions


def _components(graph: Graph, members: set[str]) -> list[list[Node]]:
    """Connected groups of `members` (joined by a value one produces and another reads), in
    graph order."""
    producers = graph.producers()
    links = [(node.name, producers[value].name) for node in graph.nodes if node.name in members
             for value in node.present_inputs() if value in producers]
    by_name = {node.name: node for node in graph.nodes}
    names = [node.name for node in graph.nodes if node.name in members]
    return [[by_name[name] for name in group] for group in connected_groups(names, links)]


def _regions(graph: Graph, tolerant: set[str]) -> list[list[Node]]:
    return [group for group in _components(graph, tolerant) if any(n.op == "Conv" for n in group)]


def _edges(graph: Graph, nodes: list[Node]) -> Region:
    """The tensors entering the region (read inside, made outside; single values excepted)
    and leaving it (made inside, read outside or a graph output), in graph order."""
    inside = {n.name for n in nodes}
    made = {o for n in nodes for o in n.outputs if o}
    region = Region(nodes)
    for node in nodes:
        operands = node.present_inputs()[:1] if node.op in ("Conv", *POOLS) else node.present_inputs()
        for value in operands:
            if value not in made and value not in region.entering and graph.types[value].numel > 1:
                region.entering.append(value)
    consumers = graph.consumers()
    for node in nodes:
        for value in (o for o in node.outputs if o):
            readers = {u.name for u in consumers.get(value, [])}
            if value in graph.outputs or readers - inside:
                region.leaving.append(value)
    return region


def _prune_front(graph: Graph, nodes: list[Node]) -> list[Node]:
    """Drop the region's front: nodes other than convs whose operands all come from outside
    (their outputs then enter it instead, as many tensors or fewer)."""
    while True:
        made = {o for n in nodes for o in n.outputs if o}
        front = [n for n in nodes if n.op != "Conv"
                 and not any(v in made for v in n.present_inputs())]
        if not front:
            return nodes
        nodes = [n for n in nodes if n not in front]


# ---------------------------------------------------------------- costs and the decision


def _trial_graph(graph: Graph, node: Node, types: dict[str, TensorType]) -> Graph:
    """A one-node graph for asking the target about `node` with the types `types`."""
    return Graph(graph.name, [], [o for o in node.outputs if o], [node],
                 {**graph.types, **types}, graph.constants, graph.opset)


def _best_cost(ctx: PassContext, node: Node, graph: Graph) -> float | None:
    costs = [c.cost(node, graph) for c in ctx.kernels.candidates(node, graph)]
    return min(costs) if costs else None


def _blocked_node(node: Node, block: int, inputs: list[str] | None = None,
                  outputs: list[str] | None = None) -> Node:
    op = "pyc.ConvBlocked" if node.op == "Conv" else "pyc.PoolBlocked"
    attrs = {**node.attrs, "block": block}
    if node.op in POOLS:
        attrs["pool"] = node.op
    return Node(op, node.name, list(inputs or node.inputs), list(outputs or node.outputs), attrs)


def _blocked_types(graph: Graph, values: list[str], block: int) -> dict[str, TensorType]:
    return {v: TensorType(graph.types[v].dtype, blocked_shape(graph.types[v].shape, block))
            for v in values}


def _saved(costs: dict[str, tuple[float | None, float | None]], nodes: list[Node]) -> float:
    """The estimated time the region's blocked kernels save (kept nodes have both costs)."""
    total = 0.0
    for node in nodes:
        plain, blocked = costs.get(node.name, (None, None))
        if plain is not None and blocked is not None:
            total += plain - blocked
    return total


def _conv_costs(graph: Graph, node: Node, block: int, ctx: PassContext
                ) -> tuple[float | None, float | None]:
    """(best plain cost, blocked cost) of a conv or pool (None: no kernel)."""
    plain = _best_cost(ctx, node, graph)
    values = [node.inputs[0], node.outputs[0]]
    trial = _blocked_node(node, block)
    blocked = _best_cost(ctx, trial, _trial_graph(graph, trial, _blocked_types(graph, values, block)))
    return plain, blocked


def _reorder_cost(graph: Graph, value: str, block: int, to: str, ctx: PassContext) -> float:
    blocked = _blocked_types(graph, [value], block)[value]
    source, made = (graph.types[value], blocked) if to == "blocked" else (blocked, graph.types[value])
    node = Node("pyc.Reorder", f"{value}.reorder", ["in"], ["out"], {"to": to, "block": block})
    trial = Graph(graph.name, ["in"], ["out"], [node], {"in": source, "out": made}, {}, graph.opset)
    cost = _best_cost(ctx, node, trial)
    return float("inf") if cost is None else cost


def _rounded(cost: float | None) -> int | None:
    return None if cost is None else round(cost)


def _tuned_plain(node: Node, graph: Graph, ctx: PassContext) -> bool:
    """Whether the tuning database names an applicable plain kernel for `node`: a measured
    choice outranks the cost model's estimate, so the node keeps its layout."""
    tuned = ctx.tuning.lookup(kernel_signature(node, graph, ctx.kernels.name))
    return tuned is not None and any(c.name == tuned.candidate
                                     for c in ctx.kernels.candidates(node, graph))


def _decide(graph: Graph, group: list[Node], block: int, mode: str, ctx: PassContext) -> None:
    costs = {n.name: _conv_costs(graph, n, block, ctx) for n in group if n.op in ("Conv", *POOLS)}
    dropped, measured = [], []
    for node in group:
        if node.name not in costs:
            continue
        plain, blocked = costs[node.name]
        if mode != "blocked" and _tuned_plain(node, graph, ctx):
            measured.append(node)
        elif blocked is None or plain is None or (mode != "blocked" and blocked >= plain):
            dropped.append(node)
    if measured:
        ctx.log(NAME, [n.name for n in measured], "keep_nchw",
                "the tuning database holds a measured plain kernel for it")
    dropped += measured
    kept = {n.name for n in group} - {n.name for n in dropped}
    if dropped:
        ctx.log(NAME, [n.name for n in dropped], "keep_nchw",
                "the plain layout's best kernel is estimated no slower (or no blocked kernel)",
                before=[_rounded(costs[n.name][0]) for n in dropped],
                after=[_rounded(costs[n.name][1]) for n in dropped])
    for part in _components(graph, kept):
        nodes = _prune_front(graph, part)
        if not any(n.op == "Conv" for n in nodes):
            continue
        region = _edges(graph, nodes)
        saved = _saved(costs, nodes)
        transforms = sum(_reorder_cost(graph, v, block, "blocked", ctx) for v in region.entering) \
            + sum(_reorder_cost(graph, v, block, "plain", ctx) for v in region.leaving)
        names = [n.name for n in nodes]
        numbers = {"saved": round(saved), "transforms_cost": round(transforms),
                   "entering": region.entering, "leaving": region.leaving, "block": block}
        if mode != "blocked" and saved <= transforms:
            ctx.log(NAME, names, "keep_nchw", "the blocked kernels' estimated savings do not pay "
                    "for the layout transforms at the region's edges", **numbers)
            continue
        _apply(graph, region, block)
        ctx.log(NAME, names, "blocked_region",
                f"{len(nodes)} nodes in blocks of {block} channels: "
                + ("--layout blocked" if mode == "blocked" else
                   "the blocked kernels' estimated savings exceed the transforms' cost"),
                **numbers)


# ---------------------------------------------------------------- the rewrite


def _apply(graph: Graph, region: Region, block: int) -> None:
    """Rename the region's values to blocked ones, make its convs and pools blocked, and put
    the reorders at its edges (to blocked before the first reader inside, to plain right
    after the producer)."""
    inside = {n.name for n in region.nodes}
    made = [o for n in region.nodes for o in n.outputs if o]
    renamed: dict[str, str] = {}
    for value in region.entering + made:
        renamed[value] = graph.fresh_name(value + BLOCKED_SUFFIX)
        graph.types[renamed[value]] = _blocked_types(graph, [value], block)[value]
    for index, node in enumerate(graph.nodes):
        if node.name not in inside:
            continue
        inputs = [renamed.get(v, v) if v else v for v in node.inputs]
        if node.op in ("Conv", *POOLS):  # weights and bias keep their shapes
            inputs = [renamed.get(node.inputs[0], node.inputs[0])] + list(node.inputs[1:])
        outputs = [renamed.get(v, v) if v else v for v in node.outputs]
        if node.op in ("Conv", *POOLS):
            graph.nodes[index] = _blocked_node(node, block, inputs, outputs)
        else:
            node.inputs, node.outputs = inputs, outputs
    for value in made:
        if value not in region.leaving:
            graph.types.pop(value, None)
    for value in region.leaving:
        producer = next(n for n in graph.nodes if renamed[value] in n.outputs)
        at = graph.nodes.index(producer) + 1
        graph.nodes.insert(at, Node("pyc.Reorder", graph.fresh_name(f"{value}.to_plain"),
                                    [renamed[value]], [value], {"to": "plain", "block": block}))
    for value in region.entering:
        first = next(i for i, n in enumerate(graph.nodes) if renamed[value] in n.inputs)
        graph.nodes.insert(first, Node("pyc.Reorder", graph.fresh_name(f"{value}.to_blocked"),
                                       [value], [renamed[value]], {"to": "blocked", "block": block}))
