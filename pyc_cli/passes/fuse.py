"""Fusion.

1. Elementwise groups: connected elementwise ops of one output shape, whose intermediate values
   are used only inside the group, become one `pyc.Elementwise` node computing a scalar program
   per element (one loop, no intermediate buffers). Scalar constants are inlined as literals.
2. Epilogues: a MatMul/Conv whose only user is a same-shape `pyc.Elementwise` absorbs it
   (bias, activation, residual add, GELU...), applied as each output element is stored. An
   operand that is computed after the anchor would make this illegal, and is reported.
"""

from __future__ import annotations

from ..ir.ewprogram import Instr, literal, renumber
from ..ir.graph import Graph, Node
from ..ir.symbolic import stretched_at_run_time
from ..ops import registry
from ..ops.elementwise import ElementwiseOp
from .context import PassContext

NAME = "fuse"


def fuse(graph: Graph, ctx: PassContext) -> Graph:
    for group in _elementwise_groups(graph):
        _replace_group(graph, group, ctx)
    _fuse_epilogues(graph, ctx)
    _fuse_prologues(graph, ctx)
    graph.remove_unused_types()
    return graph


# ---------------------------------------------------------------- elementwise groups


def _is_elementwise(node: Node) -> bool:
    return registry.get(node.op).category == registry.ELEMENTWISE


def _elementwise_groups(graph: Graph) -> list[list[Node]]:
    consumers = graph.consumers()
    producers = graph.producers()
    outputs = set(graph.outputs)
    members: dict[int, list[Node]] = {}
    group_of: dict[str, int] = {}
    for index, node in enumerate(graph.nodes):
        if not _is_elementwise(node):
            continue
        gid = index
        members[gid] = [node]
        group_of[node.name] = gid
        shape = graph.types[node.outputs[0]].shape
        opdef: ElementwiseOp = registry.get(node.op)  # type: ignore[assignment]
        for value in opdef.operands(node):
            producer = producers.get(value)
            if producer is None or not _is_elementwise(producer) or value in outputs:
                continue
            other = group_of[producer.name]
            users = {user.name for user in consumers.get(value, [])}
            inside = {m.name for m in members[gid]}
            if other != gid and graph.types[value].shape == shape and users <= inside:
                for moved in members.pop(other):
                    group_of[moved.name] = gid
                    members[gid].append(moved)
    order = {node.name: index for index, node in enumerate(graph.nodes)}
    groups = [sorted(group, key=lambda n: order[n.name]) for group in members.values()]
    return sorted(groups, key=lambda g: order[g[-1].name])


def _replace_group(graph: Graph, group: list[Node], ctx: PassContext) -> None:
    operands: list[str] = []
    env: dict[str, str] = {}
    program: list[Instr] = []
    for node in group:
        opdef: ElementwiseOp = registry.get(node.op)  # type: ignore[assignment]
        args = [_operand(graph, value, env, operands) for value in opdef.operands(node)]
        dst = f"t{len(program)}"
        op = "Identity" if node.op == "Expand" else node.op
        dtype = graph.types[node.outputs[0]].dtype
        program.append(Instr(dst, dtype, op, tuple(args), opdef.scalar_attrs(node, graph)))
        env[node.outputs[0]] = dst
    last = group[-1]
    fused = Node("pyc.Elementwise", last.name, operands, [last.outputs[0]],
                 {"shape": list(graph.types[last.outputs[0]].shape)})
    fused.ann.program = program
    fused.ann.fused_from = [n.name for n in group]
    graph.nodes[graph.nodes.index(last)] = fused
    for node in group[:-1]:
        graph.nodes.remove(node)
    if len(group) > 1:
        ctx.log(NAME, fused.ann.fused_from, "fuse_elementwise",
                "same-shape elementwise chain with no outside use of its intermediates: one loop",
                before=len(group), after=1, ops=[n.op for n in group])


def _operand(graph: Graph, value: str, env: dict[str, str], operands: list[str]) -> str:
    if value in env:
        return env[value]
    constant = graph.constants.get(value)
    if constant is not None and constant.size == 1:
        return literal(constant.reshape(-1)[0].item(), graph.types[value].dtype)
    if value not in operands:
        operands.append(value)
    return f"in{operands.index(value)}"


# ---------------------------------------------------------------- epilogues


def _fuse_epilogues(graph: Graph, ctx: PassContext) -> None:
    for anchor in list(graph.nodes):
        if ctx.kernels.takes_epilogue(anchor.op):
            while _absorb_user(graph, anchor, ctx):
                pass


def _absorb_user(graph: Graph, anchor: Node, ctx: PassContext) -> bool:
    out = anchor.outputs[0]
    users = graph.consumers().get(out, [])
    if out in graph.outputs or len({u.name for u in users}) != 1 or users[0].op != "pyc.Elementwise":
        return False
    user = users[0]
    if graph.types[user.outputs[0]].shape != graph.types[out].shape or \
            graph.types[user.outputs[0]].dtype != graph.types[out].dtype:
        return False
    shape = graph.types[out].shape
    stretched = [v for v in user.inputs
                 if v != out and stretched_at_run_time(graph.types[v].shape, shape)]
    if stretched:
        ctx.log(NAME, [anchor.name, user.name], "skip_epilogue",
                f"operand {stretched[0]!r} may be 1 where the output is larger at run time "
                "(a run-time stride): the elementwise loop reads it")
        return False
    available = _defined_before(graph, anchor)
    late = [v for v in user.inputs if v != out and v not in available]
    if late:
        ctx.log(NAME, [anchor.name, user.name], "skip_epilogue",
                f"operand {late[0]!r} is computed after {anchor.name!r}, so it cannot be read "
                "while the anchor stores its output")
        return False
    own, extra, prologue = registry.fused_inputs(anchor)
    first = len(own)
    existing = anchor.ann.epilogue
    arg_map: dict[str, str] = {}
    for index, value in enumerate(user.inputs):
        if value == out:
            arg_map[f"in{index}"] = existing[-1].dst if existing else "acc"
        else:
            if value not in extra:
                extra.append(value)
            arg_map[f"in{index}"] = f"in{extra.index(value)}"
    program = existing + renumber(user.ann.program, arg_map, len(existing))
    anchor.inputs = own + extra + prologue
    anchor.ann.epilogue_first_input = first
    anchor.ann.epilogue = program
    anchor.ann.epilogue_from = anchor.ann.epilogue_from + user.ann.fused_from
    anchor.outputs = list(user.outputs)
    graph.nodes.remove(user)
    ctx.log(NAME, [anchor.name, *user.ann.fused_from], "fuse_epilogue",
            f"{anchor.op} applies {'+'.join(i.op for i in user.ann.program)} "
            "as it stores each element: no intermediate tensor, one pass over memory",
            before=1 + len(user.ann.fused_from), after=1)
    return True


def _defined_before(graph: Graph, anchor: Node) -> set[str]:
    available = set(graph.inputs) | set(graph.constants)
    for node in graph.nodes:
        if node is anchor:
            return available
        available.update(o for o in node.outputs if o)
    return available


# ---------------------------------------------------------------- prologues


def _fuse_prologues(graph: Graph, ctx: PassContext) -> None:
    """A conv whose input is a private elementwise result (e.g. BN+ReLU before a DenseNet conv)
    computes that result while it gathers its input columns: the full-size temporary goes."""
    for node in list(graph.nodes):
        if node.op == "Conv" and not node.ann.prologue and ctx.kernels.takes_prologue(node, graph):
            _absorb_producer(graph, node, ctx)


def _absorb_producer(graph: Graph, conv: Node, ctx: PassContext) -> None:
    value = conv.inputs[0]
    producer = graph.producers().get(value)
    users = graph.consumers().get(value, [])
    if producer is None or producer.op != "pyc.Elementwise" or value in graph.outputs or \
            len(users) != 1 or graph.types[value].dtype != graph.types[conv.outputs[0]].dtype:
        return
    source = next((v for v in producer.inputs if graph.types[v] == graph.types[value]), None)
    if source is None:
        return  # the conv's X0 must keep a tensor of the input's type (shapes, strides)
    if any(stretched_at_run_time(graph.types[v].shape, graph.types[value].shape)
           for v in producer.inputs):
        return  # an operand that may be 1 at run time: the elementwise loop reads it
    conv.inputs = [source] + conv.inputs[1:] + list(producer.inputs)
    conv.ann.prologue_inputs = len(producer.inputs)
    conv.ann.prologue = list(producer.ann.program)
    conv.ann.prologue_from = list(producer.ann.fused_from)
    graph.nodes.remove(producer)
    graph.types.pop(value)
    ctx.log(NAME, [conv.name, *producer.ann.fused_from], "fuse_prologue",
            f"{conv.op} computes {'+'.join(i.op for i in producer.ann.program)} "
            "on its input as it gathers columns: the full-size intermediate is never stored",
            before=1 + len(producer.ann.fused_from), after=1)
