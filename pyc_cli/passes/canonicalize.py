"""Canonicalization: rewrite the graph into the small set of forms later passes expect.

- Kernels without a float16 path compute float16 values in float32, between casts; every op but
  Cast and the element-moving ones computes bfloat16 values so.
- Identity / Dropout are removed.
- Gemm becomes MatMul (+ Mul by alpha) (+ Add of beta*C); a constant B with transB is stored
  pre-transposed, other transposes become Transpose nodes.
- BatchNormalization is folded into a preceding Conv's weights and bias when that Conv has no
  other user, else rewritten to Mul + Add with per-channel constants.
- GlobalAverage/MaxPool become ReduceMean/ReduceMax over the spatial axes (a float32
  GlobalMaxPool becomes a whole-window MaxPool: onnxruntime's NaN rule for it is MLAS's).
- Pow with a constant exponent of 2 becomes Mul(x, x); 1 becomes nothing; 0.5 becomes Sqrt.
- Variadic Max/Min/Sum become chains of two-operand nodes (one input: removed); Mean becomes a
  Sum chain and one Div.
- BatchNormalization with statistics known only at run time becomes per-channel elementwise math.
- Ops whose unit defines `decompose` (Tile, Split, DepthToSpace, ...) become the simpler ops it
  returns.
- Recurrent nodes (LSTM/GRU/RNN) read their weights transposed, and always have a Y output.
- Graph outputs that would alias another buffer (a view, a graph input, a repeated output) get an
  explicit pyc.Copy so every output owns the caller's buffer.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.rewrite import insert_before, rename_value
from ..ir.symbolic import NUMBERS_HINT, has_dims
from ..ir.types import DType, TensorType
from ..ops import registry
from ..ops.propagate import known_values
from ..ops.registry import typed_node
from .context import PassContext
from .layernorm_pattern import rewrite_manual_layernorms

NAME = "canonicalize"


def canonicalize(graph: Graph, ctx: PassContext) -> Graph:
    _compute_f16_in_f32(graph, ctx)
    known = _Known(graph)
    for node in list(graph.nodes):
        if node not in graph.nodes:
            continue
        rule = _RULES.get(node.op)
        if rule is None and getattr(registry.get(node.op), "variadic", False):
            rule = _split_variadic
        if rule is not None:
            rule(graph, node, ctx, known)
        elif (replacement := _decompose(graph, node, known)) is not None:
            insert_before(graph, node, *replacement)
            graph.nodes.remove(node)
            ctx.log(NAME, [node.name], "decompose", f"{node.op} is computed by simpler ops",
                    after=[n.op for n in replacement])
    rewrite_manual_layernorms(graph, ctx, known.get)
    _give_outputs_own_buffers(graph, ctx)
    graph.remove_unused_types()
    return graph


def _decompose(graph: Graph, node: Node, known: _Known) -> list[Node] | None:
    """The op unit's decomposition of `node`, or None. A decomposition written for static
    shapes that meets symbolic dims (issue #15) fails on the upper bounds it baked into its
    constants: PYC-E051 naming the node, not the E009 of a node it made."""
    before = {out: graph.types[out] for out in node.outputs if out in graph.types}
    try:
        replacement = registry.get(node.op).decompose(node, graph,
                                                      [known.get(n) for n in node.inputs])
        changed = [f"{before[out]} -> {graph.types[out]}" for out in before
                   if has_dims(before[out].shape) and graph.types.get(out) != before[out]]
        if replacement is not None and changed:
            # a constant sized by an upper bound that the nodes it made broadcast against the
            # symbolic dims (a run-time broadcast, ops/elementwise.broadcast_at_entry, would
            # accept it where onnxruntime's op gives another shape)
            raise PycError("E009", f"the decomposition's output is typed {changed[0]}")
        return replacement
    except PycError as exc:
        names = [*node.inputs, *node.outputs]
        if exc.code == "E051" or not any(has_dims(graph.types[n].shape)
                                         for n in names if n in graph.types):
            raise
        raise PycError("E051", f"{node.op}'s decomposition cannot take symbolic dims yet "
                       f"({exc.what})", where=f"node {node.name!r}", hint=NUMBERS_HINT) from exc


class _Known:
    """Compile-time values: graph constants plus what constant folding will compute later
    (e.g. weights built by ConstantOfShape), evaluated once, without rewriting the graph."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._values: dict[str, np.ndarray] | None = None

    def get(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        if name in self.graph.constants:
            return self.graph.constants[name]
        if self._values is None:
            self._values = known_values(self.graph)
        return self._values.get(name)

    def has(self, name: str) -> bool:
        return self.get(name) is not None


def _remove_identity(graph: Graph, node: Node, ctx: PassContext, known: _Known) -> None:
    mask = node.outputs[1] if node.op == "Dropout" and len(node.outputs) > 1 else ""
    if mask:
        # inference Dropout keeps every element: its mask is a constant of ones
        graph.constants[mask] = np.ones(graph.types[mask].shape, dtype=bool)
    node.outputs = node.outputs[:1]
    how = bypass(graph, node, node.inputs[0])
    ctx.log(NAME, [node.name], f"remove_{node.op.lower()}", "an inference no-op", after=how)


def _gemm_to_matmul(graph: Graph, node: Node, ctx: PassContext, known: _Known) -> None:
    a, b = node.inputs[0], node.inputs[1]
    new_nodes: list[Node] = []
    if node.attrs.get("transA", 0):
        new_nodes.append(typed_node(graph, "Transpose", [a], f"{node.name}_transA"))
        a = new_nodes[-1].outputs[0]
    if node.attrs.get("transB", 0):
        b_value = known.get(b)
        if b_value is not None:
            b = graph.add_constant(f"{b}_T", np.asarray(b_value.T, order="C"))
        else:
            new_nodes.append(typed_node(graph, "Transpose", [b], f"{node.name}_transB"))
            b = new_nodes[-1].outputs[0]
    has_c = len(node.inputs) > 2 and bool(node.inputs[2])
    alpha = node.float_attr("alpha", 1.0)
    beta = node.float_attr("beta", 1.0)
    final_out = node.outputs[0]
    dtype = graph.types[final_out].dtype.numpy
    steps: list[tuple[str, str]] = []
    if alpha != 1.0:
        steps.append(("Mul", graph.add_constant(f"{node.name}_alpha", np.array(alpha, dtype))))
    if has_c and beta != 0.0:
        c = node.inputs[2]
        c_value = known.get(c)
        if beta != 1.0 and c_value is not None:
            c = graph.add_constant(f"{c}_beta", (c_value * beta).astype(dtype))
        elif beta != 1.0:
            scale = graph.add_constant(f"{node.name}_beta", np.array(beta, dtype))
            new_nodes.append(typed_node(graph, "Mul", [c, scale], f"{node.name}_scaleC"))
            c = new_nodes[-1].outputs[0]
        steps.append(("Add", c))
    matmul = typed_node(graph, "MatMul", [a, b], f"{node.name}_matmul",
                        output=None if steps else final_out)
    new_nodes.append(matmul)
    current = matmul.outputs[0]
    for index, (op, operand) in enumerate(steps):
        last = index == len(steps) - 1
        step = Node(op, graph.fresh_name(f"{node.name}_{op.lower()}"), [current, operand],
                    [final_out if last else graph.fresh_name(f"{node.name}_{op.lower()}_out")])
        if not last:
            graph.types[step.outputs[0]] = graph.types[current]
        new_nodes.append(step)
        current = step.outputs[0]
    insert_before(graph, node, *new_nodes)
    graph.nodes.remove(node)
    matmul.name = node.name  # the matmul carries the Gemm's name for reports
    ctx.log(NAME, [node.name], "gemm_to_matmul", "one matmul kernel family serves Gemm and MatMul",
            after=[n.op for n in new_nodes])


def _fold_batchnorm(graph: Graph, node: Node, ctx: PassContext, known: _Known) -> None:
    params = [known.get(name) for name in node.inputs[1:5]]
    if any(p is None for p in params):
        _batchnorm_to_elementwise(graph, node, ctx)
        return
    x = node.inputs[0]
    scale, shift = registry.get("BatchNormalization").scale_shift(  # type: ignore[attr-defined]
        node, [np.empty(0)] + params)  # type: ignore[list-item]
    dtype = graph.types[x].dtype.numpy
    producer = graph.producers().get(x)
    users = graph.consumers().get(x, [])
    if producer is not None and producer.op == "Conv" and len(users) == 1 and \
            x not in graph.outputs and known.has(producer.inputs[1]) and \
            (len(producer.inputs) < 3 or not producer.inputs[2] or known.has(producer.inputs[2])):
        _fold_into_conv(graph, producer, node, scale, shift, dtype, known)
        ctx.log(NAME, [node.name, producer.name], "fold_batchnorm_into_conv",
                "constant BN statistics fold into the conv weights and bias: one kernel, no pass")
        return
    folded_into = _fold_into_matmul(graph, node, scale, shift, dtype, known)
    if folded_into is not None:
        ctx.log(NAME, [node.name, folded_into], "fold_batchnorm_into_gemm",
                "constant BN statistics fold into the matmul weight columns and bias")
        return
    rank = graph.types[x].rank
    shape = (-1,) + (1,) * (rank - 2)
    mul_c = graph.add_constant(f"{node.name}_scale", scale.astype(dtype).reshape(shape))
    add_c = graph.add_constant(f"{node.name}_shift", shift.astype(dtype).reshape(shape))
    mul = typed_node(graph, "Mul", [x, mul_c], f"{node.name}_mul")
    add = Node("Add", graph.fresh_name(f"{node.name}_add"), [mul.outputs[0], add_c], node.outputs)
    insert_before(graph, node, mul, add)
    graph.nodes.remove(node)
    ctx.log(NAME, [node.name], "batchnorm_to_mul_add",
            "no foldable Conv before it: per-channel scale and shift (fusable elementwise ops)")


def _batchnorm_to_elementwise(graph: Graph, node: Node, ctx: PassContext) -> None:
    """y = (x - mean) / sqrt(var + eps) * scale + bias, the [C] statistics viewed as [C,1,..]."""
    x, out = node.inputs[0], node.outputs[0]
    x_type = graph.types[x]
    view_shape = graph.add_constant(f"{node.name}_stat_shape",
                                    np.array([-1] + [1] * (x_type.rank - 2), np.int64))
    new_nodes: list[Node] = []
    stats = []
    for name in node.inputs[1:5]:
        new_nodes.append(typed_node(graph, "Reshape", [name, view_shape], f"{node.name}_{name}_view"))
        stats.append(new_nodes[-1].outputs[0])
    scale, bias, mean, var = stats
    eps = graph.add_constant(f"{node.name}_epsilon", np.array(
        node.float_attr("epsilon", 1e-5), x_type.dtype.numpy))
    steps = [("Sub", [x, mean]), ("Add", [var, eps]), ("Sqrt", [1]), ("Div", [0, 2]),
             ("Mul", [3, scale]), ("Add", [4, bias])]
    results: list[str] = []
    for index, (op, args) in enumerate(steps):
        inputs = [results[a] if isinstance(a, int) else a for a in args]
        last = index == len(steps) - 1
        new_nodes.append(typed_node(graph, op, inputs, f"{node.name}_{index}_{op.lower()}",
                                    output=out if last else None))
        results.append(new_nodes[-1].outputs[0])
    insert_before(graph, node, *new_nodes)
    graph.nodes.remove(node)
    ctx.log(NAME, [node.name], "batchnorm_to_elementwise",
            "statistics are known only at run time: per-channel elementwise math (one fused loop)")


def _split_variadic(graph: Graph, node: Node, ctx: PassContext, known: _Known) -> None:
    """Max/Min/Sum(a, b, c) -> op(op(a, b), c); Mean -> Sum chain / N; one input -> removed."""
    operands = node.present_inputs()
    if len(operands) == 2 and node.op != "Mean":
        return
    out = node.outputs[0]
    if len(operands) == 1:
        node.op, node.inputs, node.attrs = "Identity", operands, {}
        _remove_identity(graph, node, ctx, known)
        return
    combine = "Sum" if node.op == "Mean" else node.op
    new_nodes: list[Node] = []
    current = operands[0]
    for index, operand in enumerate(operands[1:]):
        last = index == len(operands) - 2 and node.op != "Mean"
        new_nodes.append(typed_node(graph, combine, [current, operand], f"{node.name}_{index}",
                                    output=out if last else None))
        current = new_nodes[-1].outputs[0]
    if node.op == "Mean":
        count = graph.add_constant(f"{node.name}_count",
                                   np.array(len(operands), graph.types[out].dtype.numpy))
        new_nodes.append(typed_node(graph, "Div", [current, count], f"{node.name}_mean", output=out))
    insert_before(graph, node, *new_nodes)
    graph.nodes.remove(node)
    ctx.log(NAME, [node.name], "split_variadic", f"{node.op} of {len(operands)} inputs as a chain "
            "of two-operand elementwise nodes (fused into one loop)", after=[n.op for n in new_nodes])


def _single_use(graph: Graph, value: str) -> bool:
    return value not in graph.outputs and len(graph.consumers().get(value, [])) == 1


def _fold_into_matmul(graph: Graph, bn: Node, scale: np.ndarray, shift: np.ndarray,
                      dtype: np.dtype, known: _Known) -> str | None:
    """Fold BN over [N, C] into a preceding MatMul (+ per-column bias Add), as from a Gemm.

    Returns the matmul's name, or None when the pattern does not match."""
    x = bn.inputs[0]
    if graph.types[x].rank != 2 or not _single_use(graph, x):
        return None
    producers = graph.producers()
    producer = producers.get(x)
    bias_node, bias = None, None
    if producer is not None and producer.op == "Add":
        constant = [v for v in producer.inputs if known.has(v)]
        other = [v for v in producer.inputs if not known.has(v)]
        if len(constant) != 1 or len(other) != 1 or known.get(constant[0]).size != scale.size:  # type: ignore[union-attr]
            return None
        bias_node, bias, producer = producer, constant[0], producers.get(other[0])
        if producer is None or not _single_use(graph, producer.outputs[0]):
            return None
    weight = None if producer is None or producer.op != "MatMul" else known.get(producer.inputs[1])
    if producer is None or weight is None:
        return None
    if weight.ndim != 2 or weight.shape[1] != scale.size:
        return None
    folded_w = (weight.astype(np.float64) * scale[None, :]).astype(dtype)
    producer.inputs[1] = graph.add_constant(f"{producer.inputs[1]}_bnfolded", folded_w)
    old_bias = 0.0 if bias is None else known.get(bias).astype(np.float64).reshape(-1)  # type: ignore[union-attr]
    new_bias = graph.add_constant(f"{bn.name}_bias_bnfolded", (old_bias * scale + shift).astype(dtype))
    if bias_node is not None:
        bias_node.inputs = [bias_node.inputs[0] if bias_node.inputs[0] != bias else
                            bias_node.inputs[1], new_bias]
        bias_node.outputs = list(bn.outputs)
        graph.types.pop(x)
        graph.nodes.remove(bn)
    else:
        bn.op, bn.inputs, bn.attrs = "Add", [x, new_bias], {}
    return producer.name


def _fold_into_conv(graph: Graph, conv: Node, bn: Node, scale: np.ndarray, shift: np.ndarray,
                    dtype: np.dtype, known: _Known) -> None:
    weight = known.get(conv.inputs[1]).astype(np.float64)  # type: ignore[union-attr]
    bias = (known.get(conv.inputs[2]).astype(np.float64)  # type: ignore[union-attr]
            if len(conv.inputs) > 2 and conv.inputs[2] else np.zeros(weight.shape[0]))
    folded_w = (weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))).astype(dtype)
    folded_b = (bias * scale + shift).astype(dtype)
    w_name = graph.add_constant(f"{conv.inputs[1]}_bnfolded", folded_w)
    b_name = graph.add_constant(f"{conv.name}_bias_bnfolded", folded_b)
    conv.inputs = [conv.inputs[0], w_name, b_name]
    old_out = conv.outputs[0]
    conv.outputs = list(bn.outputs)
    graph.types.pop(old_out)
    graph.nodes.remove(bn)


def _global_pool_to_reduce(graph: Graph, node: Node, ctx: PassContext, known: _Known) -> None:
    x = graph.types[node.inputs[0]]
    rank = x.rank
    before = node.op
    if node.op == "GlobalMaxPool" and x.dtype is DType.F32:
        # onnxruntime runs it as MLAS's whole-window MaxPool, whose NaN rule the MaxPool
        # kernel follows (a ReduceMax would pass every NaN on)
        node.op, node.attrs = "MaxPool", {"kernel_shape": list(x.shape[2:])}
        ctx.log(NAME, [node.name], "global_pool_to_reduce", f"{before} is a MaxPool over the "
                "whole input (onnxruntime's NaN rule)")
        return
    op = "ReduceMean" if node.op == "GlobalAveragePool" else "ReduceMax"
    node.op, node.attrs = op, {"axes": list(range(2, rank)), "keepdims": 1}
    ctx.log(NAME, [node.name], "global_pool_to_reduce", f"{before} is a {op} over spatial axes")


def _simplify_pow(graph: Graph, node: Node, ctx: PassContext, known: _Known) -> None:
    exponent = known.get(node.inputs[1])
    if exponent is None or exponent.size != 1 or \
            graph.types[node.outputs[0]].shape != graph.types[node.inputs[0]].shape:
        return  # a broadcasting exponent shapes the output: x*x would not
    value = float(exponent.reshape(-1)[0])
    if value == 2.0:
        node.op, node.inputs = "Mul", [node.inputs[0], node.inputs[0]]
    elif value == 0.5 and graph.types[node.inputs[0]].dtype.is_float:
        node.op, node.inputs = "Sqrt", [node.inputs[0]]
    elif value == 1.0:
        node.op, node.inputs = "Identity", [node.inputs[0]]
        _remove_identity(graph, node, ctx, known)
    else:
        return
    ctx.log(NAME, [node.name], "strength_reduce_pow", f"x^{value:g} needs no pow() call",
            after=node.op)


def _give_outputs_own_buffers(graph: Graph, ctx: PassContext) -> None:
    """Every output gets a buffer of its own; an output whose value must be copied under an
    internal name (an input, a repeat) keeps its ONNX name in `graph.output_names`."""
    graph.output_names = graph.public_outputs()
    producers = graph.producers()
    seen: set[str] = set()
    for position, name in enumerate(list(graph.outputs)):
        producer = producers.get(name)
        is_view = producer is not None and registry.get(producer.op).category == registry.VIEW
        if name in seen or name in graph.inputs:
            # the public name is defined elsewhere already: the copy gets a fresh name
            copy = typed_node(graph, "pyc.Copy", [name], f"copy_{name}")
        elif is_view:
            # keep the public name on the copy; the view's value is renamed internally
            internal = graph.fresh_name(f"{name}_view")
            rename_value(graph, name, internal)
            copy = typed_node(graph, "pyc.Copy", [internal], f"copy_{name}", output=name)
        else:
            seen.add(name)
            continue
        graph.nodes.append(copy)
        graph.outputs[position] = copy.outputs[0]
        seen.add(copy.outputs[0])
        ctx.log(NAME, [copy.name], "materialize_output",
                "a graph output must own the caller's buffer (it was a view, an input or a "
                "repeated output)")


def _compute_f16_in_f32(graph: Graph, ctx: PassContext) -> None:
    """Kernels without a float16 path read float32 casts of their float16 inputs and write
    float32 results that are cast back, so values keep the model's float16 rounding between
    ops (constant weights are converted once, at compile time). bfloat16 values the same way
    for every op but Cast and those that move elements (OpDef.computes_bf16_in_f32), the
    elementwise ones included: each result is rounded to bfloat16 as the model's op stores it."""
    for node in list(graph.nodes):
        opdef = registry.get(node.op)
        narrow_types = {DType.F16} if opdef.computes_f16_in_f32 else set()
        if opdef.computes_bf16_in_f32(node):
            narrow_types.add(DType.BF16)
        if not narrow_types:
            continue
        halves_in = [i for i, v in enumerate(node.inputs) if v and graph.types[v].dtype in narrow_types]
        halves_out = [i for i, v in enumerate(node.outputs) if v and graph.types[v].dtype in narrow_types]
        if not halves_in and not halves_out:
            continue
        kinds = sorted({graph.types[v].dtype.value for v in
                        [node.inputs[i] for i in halves_in] + [node.outputs[i] for i in halves_out]})
        widen = [typed_node(graph, "Cast", [node.inputs[i]], f"{node.name}_in{i}_f32",
                            {"to": int(TensorProto.FLOAT)}) for i in halves_in]
        for i, cast in zip(halves_in, widen):
            node.inputs[i] = cast.outputs[0]
        narrow = []
        for i in halves_out:
            half = node.outputs[i]
            dtype = graph.types[half].dtype
            node.outputs[i] = graph.fresh_name(f"{half}_f32")
            graph.types[node.outputs[i]] = TensorType(DType.F32, graph.types[half].shape)
            narrow.append(Node("Cast", graph.fresh_name(f"{node.name}_out{i}_{dtype.value}"),
                               [node.outputs[i]], [half], {"to": dtype.to_onnx()}))
        insert_before(graph, node, *widen)
        position = graph.nodes.index(node) + 1
        graph.nodes[position:position] = narrow
        for kind in kinds:
            name = {"f16": "float16", "bf16": "bfloat16"}[kind]
            ctx.log(NAME, [node.name], f"compute_{kind}_in_f32",
                    f"{node.op} has no {name} kernel: {name} operands are cast to float32 and "
                    f"results back to {name}", after=len(widen) + len(narrow))


def _prepare_recurrent(graph: Graph, node: Node, ctx: PassContext, known: _Known) -> None:
    """LSTM/GRU/RNN kernels read W and R transposed ([D, I, G*H], [D, H, G*H]) so each step's
    gate sums are contiguous, vectorizable row updates; constant weights fold to that layout.
    A node whose model skips Y still computes it: kernels write their first output."""
    if node.attrs.get("weights_transposed"):
        return
    transposes = [typed_node(graph, "Transpose", [node.inputs[i]], f"{node.name}_{which}_T",
                             {"perm": [0, 2, 1]}) for i, which in ((1, "W"), (2, "R"))]
    insert_before(graph, node, *transposes)
    node.inputs[1], node.inputs[2] = (t.outputs[0] for t in transposes)
    node.attrs["weights_transposed"] = 1
    ctx.log(NAME, [node.name], "transpose_recurrent_weights",
            "gate sums become contiguous row updates (constant weights are transposed once, at "
            "compile time)")
    if node.outputs[0]:
        return
    out = graph.fresh_name(f"{node.name}_Y")
    in_types = [graph.types.get(i) if i else None for i in node.inputs]
    graph.types[out] = registry.get(node.op).infer(node, in_types, [None] * len(node.inputs))[0]
    node.outputs[0] = out
    ctx.log(NAME, [node.name], "name_sequence_output",
            "the recurrent kernel writes every step's hidden state; the model did not ask for it",
            after=out)


_RULES = {
    "Identity": _remove_identity,
    "Dropout": _remove_identity,
    "Gemm": _gemm_to_matmul,
    "BatchNormalization": _fold_batchnorm,
    "GlobalAveragePool": _global_pool_to_reduce,
    "GlobalMaxPool": _global_pool_to_reduce,
    "Pow": _simplify_pow,
    "LSTM": _prepare_recurrent,
    "GRU": _prepare_recurrent,
    "RNN": _prepare_recurrent,
}


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
