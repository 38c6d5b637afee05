"""16-bit activations at --precision fp16 / bf16 (the CUDA target's pass between kernel
selection and memory planning): every intermediate float32 tensor whose producer and consumers
all read and write it in 16 bits is retyped to float16 / bfloat16 (its TensorType, so the memory
planner sizes it at 2 bytes and the IR dump shows it); the graph records the storage type
(`Graph.activation_storage`) so that the verifier reads such a value as float32 in the op rules.

A view shares its input's bytes, so a view chain (and a Concat with its inputs, which the
planner may place in its slices) is one storage group, retyped whole or not at all. The model's
inputs and outputs stay float32 (the ABI): the first kernel reading an input converts as it
loads, the last kernel writing an output stores float32. A tensor a kernel cannot read or write
in 16 bits stays float32, logged with the reason (`keep_float32`). Kernels compute in float32
whatever they read (docs/cuda.md, Precision)."""

from __future__ import annotations

from ...ir.graph import Graph, Node
from ...ir.groups import connected_groups
from ...ir.types import DType, TensorType
from ...passes.context import PassContext
from .kernels import half_reads, half_writes

NAME = "store_16bit"
STORAGE = {"fp16": DType.F16, "bf16": DType.BF16}


def _groups(graph: Graph) -> list[list[str]]:
    """The values sharing one storage (a value, the views of it, a Concat's operands and
    result), in the order of graph.types (deterministic)."""
    links = []
    for node in graph.nodes:
        if _is_view(node):
            links.append((node.inputs[0], node.outputs[0]))
        elif node.op == "Concat":  # the planner may write the inputs into the output's slices
            links += [(value, node.outputs[0]) for value in node.present_inputs()]
    return connected_groups(list(graph.types), links)


def _is_view(node: Node) -> bool:
    return node.ann.kernel is not None and node.ann.kernel.candidate == "view"


def _kernel_name(node: Node, ctx: PassContext) -> str:
    """The kernel candidate select_kernels chose for `node`."""
    chosen = ctx.kernels.chosen(node)
    return chosen.name if chosen is not None else node.ann.kernel_name


def _why_float32(graph: Graph, values: list[str], producers: dict[str, Node],
                 consumers: dict[str, list[Node]], ctx: PassContext) -> str:
    """Why the group must stay float32 ("" when it may be stored in 16 bits)."""
    edges = set(graph.inputs) | set(graph.outputs)
    for value in values:
        if value in edges:
            return f"{value!r} is a model input or output (float32 at the ABI)"
        if value in graph.constants:
            return f"{value!r} is a constant"
        if graph.types[value].dtype is not DType.F32:
            return f"{value!r} is {graph.types[value].dtype.value}, not float32"
    for value in values:
        producer = producers.get(value)
        if producer is not None and not _is_view(producer):
            name = _kernel_name(producer, ctx)
            if producer.outputs.index(value) not in half_writes(name):
                return f"{producer.name!r} ({name}) writes {value!r} in float32 only"
        for user in consumers.get(value, []):
            if _is_view(user):
                continue
            name = _kernel_name(user, ctx)
            positions = [k for k, v in enumerate(user.inputs) if v == value]
            if not all(half_reads(name, user, k) for k in positions):
                return f"{user.name!r} ({name}) reads {value!r} in float32 only"
    return ""


def store_16bit(graph: Graph, ctx: PassContext) -> Graph:
    """Retype the activations that may live in 16 bits (a no-op but at fp16 / bf16)."""
    storage = STORAGE.get(getattr(ctx.target, "precision", "fp32"))
    if storage is None:
        return graph
    producers = graph.producers()
    consumers = graph.consumers()
    produced = set(producers)
    stored: list[str] = []
    for values in _groups(graph):
        if not any(v in produced for v in values):
            continue  # inputs and constants alone: nothing a kernel writes
        if all(graph.types[v].dtype is not DType.F32 for v in values):
            continue  # integer / boolean values: not activations of float32
        why = _why_float32(graph, values, producers, consumers, ctx)
        nodes = sorted({producers[v].name for v in values if v in producers})
        if why:
            ctx.log(NAME, nodes, "keep_float32", why, after=values)
            continue
        for value in values:
            graph.types[value] = TensorType(storage, graph.types[value].shape)
        stored += values
    graph.activation_storage = storage
    saved = sum(graph.types[v].numel * 2 for v in stored)
    ctx.log(NAME, [], "summary", f"{len(stored)} activations stored as {storage.value} "
            "(read and written in 16 bits, computed in float32)", after=saved,
            storage=storage.value, values=len(stored))
    return graph
