"""Attention fusion: MatMul(Q, Kt) [score program] -> Softmax(last axis) -> MatMul(., V) becomes
one pyc.Attention node (ops/attention.py), where the build target has a kernel for it.

After `fuse`, the score MatMul already carries the scale and the additive mask as its epilogue;
the attention node takes that program over. The kernel then never writes the [..., S, T] score
matrix nor reads it back twice (softmax, then the second MatMul). Applies when the scores and
the softmax have no other reader, nothing is a graph output, the second MatMul has no fused
program of its own, and Q, Kt and V share their leading dims.

Then the heads' Transposes around it (an encoder's Reshape + Transpose of Q, K, V into
[B, H, S, D] heads and the Transpose of the output back to [B, S, H, E]) fold into the node as
layout permutations (ops/attention.py: `q_perm`, `kt_perm`, `v_perm`, `y_perm`) where the
Transpose has no other reader and the target's attention kernel reads such layouts (the kernel
candidates decide: the CUDA kernels read through strides; the CPU kernel's vector loads run
along contiguous rows of Kt and V, so it keeps them, and the log says so): each is a launch and
a round trip of the tensor through memory that the attention's own loads replace.

Last, where Q, K and V so folded are three projections of one input (MatMul(X, W) + b each,
nothing else reading them, heads of one shape), the three GEMMs become one over the weights
concatenated at build time ([K, 3N], the biases [3N]): its [.., 3N] result is viewed as
[.., 3, H, D] and the attention reads Q, K and V as its three parts (`q_select` ..: one launch
instead of three, and a GEMM three times as wide to fill the GPU with).
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.symbolic import Dim
from ..ir.types import DType, TensorType
from ..ops import registry
from ..ops.attention import PERMS, SELECTS
from .context import PassContext

NAME = "fuse_attention"
OP = "pyc.Attention"


def fuse_attention(graph: Graph, ctx: PassContext) -> Graph:
    if not ctx.kernels.candidate_names(OP):
        return graph
    for softmax in [n for n in graph.nodes if n.op == "Softmax"]:
        match = _match(graph, softmax)
        if match is None:
            continue
        node = _attention_node(graph, *match)
        if not ctx.kernels.candidates(node, graph):
            ctx.log(NAME, node.ann.fused_from, "skip_attention",
                    f"no {ctx.kernels.name} attention kernel applies to these shapes")
            continue
        _replace(graph, node, *match, ctx)
        if _fold_transposes(graph, node, ctx):
            _merge_projections(graph, node, ctx)
    graph.remove_unused_types()
    return graph


def _only_reader(graph: Graph, value: str) -> Node | None:
    readers = graph.consumers().get(value, [])
    if value in graph.outputs or len(readers) != 1:
        return None
    return readers[0]


def _producer(graph: Graph, value: str) -> Node | None:
    return next((n for n in graph.nodes if value in n.outputs), None)


def _match(graph: Graph, softmax: Node) -> tuple[Node, Node, Node] | None:
    scores_mm = _producer(graph, softmax.inputs[0])
    if scores_mm is None or scores_mm.op != "MatMul" or scores_mm.ann.prologue:
        return None
    if _only_reader(graph, softmax.inputs[0]) is not softmax:
        return None
    weights_mm = _only_reader(graph, softmax.outputs[0])
    if weights_mm is None or weights_mm.op != "MatMul" or weights_mm.inputs[0] != softmax.outputs[0] \
            or len(weights_mm.inputs) != 2 or weights_mm.ann.epilogue or weights_mm.ann.prologue:
        return None
    if registry.get("Softmax").kernel_params(softmax, graph)["inner"] != 1:
        return None  # not over the last axis
    q, kt, v = scores_mm.inputs[0], scores_mm.inputs[1], weights_mm.inputs[1]
    types = [graph.types[x] for x in (q, kt, v)]
    if any(t.dtype is not DType.F32 or t.rank < 3 for t in types) or \
            len({t.shape[:-2] for t in types}) != 1:
        return None
    if graph.types[softmax.outputs[0]].dtype is not DType.F32:
        return None
    return scores_mm, softmax, weights_mm


def _attention_node(graph: Graph, scores_mm: Node, softmax: Node, weights_mm: Node) -> Node:
    own, epilogue_operands, _ = registry.fused_inputs(scores_mm)
    node = Node(OP, graph.fresh_name(f"{softmax.name}/attention"),
                [own[0], own[1], weights_mm.inputs[1], *epilogue_operands],
                list(weights_mm.outputs), {})
    node.ann.epilogue = list(scores_mm.ann.epilogue)
    node.ann.epilogue_from = list(scores_mm.ann.epilogue_from)
    node.ann.epilogue_first_input = 3 if scores_mm.ann.epilogue else None
    node.ann.fused_from = [scores_mm.name, softmax.name, weights_mm.name]
    return node


def _replace(graph: Graph, node: Node, scores_mm: Node, softmax: Node, weights_mm: Node,
             ctx: PassContext) -> None:
    graph.nodes[graph.nodes.index(weights_mm)] = node
    graph.nodes.remove(scores_mm)
    graph.nodes.remove(softmax)
    ctx.log(NAME, node.ann.fused_from, "fuse_attention",
            "scores, softmax and the weighted sum of V in one kernel, a row of scores at a time: "
            f"the {list(graph.types[softmax.outputs[0]].shape)} score matrix is never written",
            before=3, after=1)


def _plain_transpose(node: Node | None) -> bool:
    return node is not None and node.op == "Transpose" and len(node.inputs) == 1 and \
        not node.ann.epilogue and not node.ann.prologue


def _foldable(graph: Graph, node: Node) -> dict[int, Node]:
    """Operand k (0-2 the inputs, 3 the output) -> the Transpose that can fold into `node`:
    an input's producer read by the attention alone, the output's only reader."""
    found: dict[int, Node] = {}
    for k in range(3):
        producer = _producer(graph, node.inputs[k])
        if _plain_transpose(producer) and node.inputs.count(node.inputs[k]) == 1 and \
                _only_reader(graph, node.inputs[k]) is node:
            found[k] = producer  # type: ignore[assignment]
    reader = _only_reader(graph, node.outputs[0])
    if _plain_transpose(reader):
        found[3] = reader  # type: ignore[assignment]
    return found


def _fold_transposes(graph: Graph, node: Node, ctx: PassContext) -> bool:
    """Fold the Transposes `_foldable` finds where the target's kernel reads the layouts;
    whether any was."""
    found = _foldable(graph, node)
    if not found:
        return False
    names = [found[k].name for k in sorted(found)]
    # the node as it would be, for the target's kernels to say whether they read it
    folded = Node(node.op, node.name, list(node.inputs), list(node.outputs), dict(node.attrs))
    folded.ann = node.ann
    for k, transpose in found.items():
        perm = registry.get("Transpose").perm(transpose, graph.types[transpose.inputs[0]].rank)  # type: ignore[attr-defined]
        folded.attrs[PERMS[k]] = perm
        if k < 3:
            folded.inputs[k] = transpose.inputs[0]
        else:
            folded.outputs[0] = transpose.outputs[0]
    if not ctx.kernels.candidates(folded, graph):
        ctx.log(NAME, names, "keep_head_transposes",
                f"no {ctx.kernels.name} attention kernel reads its operands through a "
                "permutation: the Transposes stay strided copies")
        return False
    node.inputs, node.outputs, node.attrs = folded.inputs, folded.outputs, folded.attrs
    for transpose in found.values():
        graph.nodes.remove(transpose)
    node.ann.fused_from = [*node.ann.fused_from, *names]
    ctx.log(NAME, names, "fold_head_transposes",
            "the attention reads Q, Kt, V through the strides of the Transposes' inputs and "
            "writes its output in the layout the Transpose after it made: no copy launches",
            before=1 + len(found), after=1)
    return True


def _projection(graph: Graph, value: str, node: Node) -> tuple[Node, Node] | None:
    """The (Reshape, MatMul) making attention input `value` as Reshape(MatMul(X, W) + b), each
    read by the next alone, W [K, N] and b [N] constants."""
    view = _producer(graph, value)
    if view is None or view.op != "Reshape" or _only_reader(graph, value) is not node or \
            node.inputs.count(value) != 1:
        return None
    mm = _producer(graph, view.inputs[0])
    if mm is None or mm.op != "MatMul" or _only_reader(graph, view.inputs[0]) is not view or \
            len(mm.inputs) != 3 or mm.ann.prologue or mm.ann.epilogue_first_input != 2 or \
            not all(graph.is_constant(x) for x in mm.inputs[1:]):
        return None
    w, b = (graph.types[x].shape for x in mm.inputs[1:])
    return (view, mm) if len(w) == 2 and b == (w[1],) else None


def _mergeable(graph: Graph, node: Node, views: list[Node], mms: list[Node]) -> bool:
    """One input, weights and biases of one type, one epilogue program, and views that split
    the last dim into heads the same way for Q, K and V (so D = E and S = T)."""
    heads = graph.types[node.inputs[0]].shape
    out = graph.types[mms[0].outputs[0]]
    return (len({mm.inputs[0] for mm in mms}) == 1
            and len({graph.types[mm.inputs[1]] for mm in mms}) == 1
            and len({graph.types[mm.inputs[2]] for mm in mms}) == 1
            and len({str(mm.ann.epilogue) for mm in mms}) == 1
            and all(graph.types[mm.outputs[0]] == out for mm in mms)
            and all(graph.types[v.outputs[0]].shape == heads for v in views)
            and heads[:len(out.shape) - 1] == out.shape[:-1]
            and math.prod(heads[len(out.shape) - 1:]) == out.shape[-1])


def _merge_projections(graph: Graph, node: Node, ctx: PassContext) -> None:
    found = [_projection(graph, node.inputs[k], node) for k in range(3)]
    if any(f is None for f in found) or not all(key in node.attrs for key in PERMS[:3]):
        return
    views, mms = [f[0] for f in found], [f[1] for f in found]  # type: ignore[index]
    if not _mergeable(graph, node, views, mms):
        return
    heads = graph.types[node.inputs[0]].shape
    out = graph.types[mms[0].outputs[0]]
    lead = out.shape[:-1]
    weights = graph.add_constant(f"{mms[0].inputs[1]}.qkv", np.concatenate(
        [graph.constants[mm.inputs[1]] for mm in mms], axis=1))
    bias = graph.add_constant(f"{mms[0].inputs[2]}.qkv", np.concatenate(
        [graph.constants[mm.inputs[2]] for mm in mms]))
    # a symbolic leading dim as 0, which copies the input's (Reshape without allowzero)
    shape = graph.add_constant(f"{views[0].name}.qkv_shape", np.array(
        [*(0 if isinstance(d, Dim) else d for d in lead), 3, *heads[len(lead):]], np.int64))
    qkv = graph.fresh_name(f"{mms[0].outputs[0]}.qkv")
    graph.types[qkv] = TensorType(out.dtype, (*lead, 3 * out.shape[-1]))
    parts = graph.fresh_name(f"{views[0].outputs[0]}.qkv")
    graph.types[parts] = TensorType(out.dtype, (*lead, 3, *heads[len(lead):]))
    merged = Node("MatMul", graph.fresh_name(f"{mms[0].name}.qkv"),
                  [mms[0].inputs[0], weights, bias], [qkv], {})
    merged.ann = copy.deepcopy(mms[0].ann)
    merged.ann.fused_from = [mm.name for mm in mms]
    view = Node("Reshape", graph.fresh_name(f"{views[0].name}.qkv"), [qkv, shape], [parts], {})
    trial = Node(node.op, node.name, [parts, parts, parts, *node.inputs[3:]], list(node.outputs),
                 {**node.attrs, **{key: [len(lead), k] for k, key in enumerate(SELECTS)}})
    trial.ann = node.ann
    if not ctx.kernels.candidates(trial, graph):
        for name in (weights, bias, shape):
            del graph.constants[name]
        return
    first = min(graph.nodes.index(mm) for mm in mms)
    graph.nodes[first:first] = [merged, view]
    for old in (*mms, *views):
        graph.nodes.remove(old)
    node.inputs, node.attrs = trial.inputs, trial.attrs
    ctx.log(NAME, [mm.name for mm in mms], "merge_qkv_projections",
            f"Q, K and V are projections of one input: one GEMM over the weights concatenated "
            f"({list(graph.types[weights].shape)}), the attention reading its three parts",
            before=6, after=2)
