"""Memory-aware scheduling: pick the topological order with the lowest peak of live bytes.

Like PyTorch Inductor's peak-memory reordering (which tries several orders and keeps the best),
we evaluate a few candidate orders with the exact liveness lower bound of the planner and keep
the smallest; the given (exporter) order is always a candidate, so reordering never makes the
peak worse:
- given: the order the model arrived in,
- depth_first: each output's dependencies depth-first (finishes a branch before starting the
  next, as in Serenity's observation about branchy cells),
- greedy_memory: list scheduling that always runs the ready node which grows live memory least
  (bytes it allocates minus bytes it frees), ties broken by the given order.
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir.graph import Graph, Node
from ..ops import registry
from .plan import peak_bytes
from .policy import Policy


def _given(graph: Graph) -> list[Node]:
    return list(graph.nodes)


def _depth_first(graph: Graph) -> list[Node]:
    producers = graph.producers()
    order: list[Node] = []
    done: set[str] = set()

    def visit(node: Node) -> None:
        stack = [(node, False)]
        while stack:
            current, expanded = stack.pop()
            if current.name in done:
                continue
            if expanded:
                done.add(current.name)
                order.append(current)
                continue
            stack.append((current, True))
            for value in reversed(current.present_inputs()):
                producer = producers.get(value)
                if producer is not None and producer.name not in done:
                    stack.append((producer, False))

    for output in graph.outputs:
        if output in producers:
            visit(producers[output])
    for node in graph.nodes:  # nodes that reach no output (kept by DCE rules) keep their turn
        if node.name not in done:
            visit(node)
    return order


def _greedy_memory(graph: Graph) -> list[Node]:
    index = {node.name: i for i, node in enumerate(graph.nodes)}
    producers = graph.producers()
    consumers = graph.consumers()
    waiting = {node.name: len({producers[v].name for v in node.present_inputs() if v in producers})
               for node in graph.nodes}
    remaining_uses = {value: len(users) for value, users in consumers.items()}
    outputs = set(graph.outputs)
    ready = [node for node in graph.nodes if waiting[node.name] == 0]
    order: list[Node] = []

    def growth(node: Node) -> int:
        is_view = registry.get(node.op).category == registry.VIEW
        allocated = 0 if is_view else sum(graph.types[o].nbytes for o in node.outputs if o)
        freed = sum(graph.types[v].nbytes for v in set(node.present_inputs())
                    if v in producers and v not in outputs
                    and remaining_uses[v] == node.present_inputs().count(v))
        return allocated - freed

    while ready:
        ready.sort(key=lambda n: (growth(n), index[n.name]))
        node = ready.pop(0)
        order.append(node)
        for value in node.present_inputs():
            remaining_uses[value] -= 1
        released = {u.name: u for o in node.outputs if o for u in consumers.get(o, [])}
        for user in released.values():
            waiting[user.name] -= 1
            if waiting[user.name] == 0:
                ready.append(user)
    return order


ORDERS: dict[str, Callable[[Graph], list[Node]]] = {
    "given": _given,
    "depth_first": _depth_first,
    "greedy_memory": _greedy_memory,
}


def best_schedule(graph: Graph, policy: Policy, alignment: int
                  ) -> tuple[str, list[Node], dict[str, int]]:
    """Evaluate the policy's candidate orders; return (name, order, peak bytes of each)."""
    original = graph.nodes
    peaks: dict[str, int] = {}
    orders: dict[str, list[Node]] = {}
    try:
        for name in policy.schedule_orders:
            orders[name] = ORDERS[name](graph)
            graph.nodes = orders[name]
            peaks[name] = peak_bytes(graph, policy, alignment)
    finally:
        graph.nodes = original
    best = min(peaks, key=lambda n: (peaks[n], policy.schedule_orders.index(n)))
    return best, orders[best], peaks
