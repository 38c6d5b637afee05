"""Small ONNX models with a dynamic batch axis for the dynamic-shape tests (issue #15), built
with onnx.helper and random weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from tests.helpers import init, make_model, rand, write_model


def mlp(tmp_path: Path, sizes: tuple[int, ...] = (512, 2048, 2048, 512), seed: int = 0,
        gemm: bool = False) -> Path:
    """x[batch, sizes[0]] -> (MatMul + bias + Relu) ... -> MatMul + bias: y[batch, sizes[-1]];
    `gemm`: the first layer is one Gemm node (canonicalized into MatMul + Add)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    value = "x"
    layers = len(sizes) - 1
    for i, (k, n) in enumerate(zip(sizes, sizes[1:])):
        w, b = f"w{i}", f"b{i}"
        inits += [init(w, rand(rng, k, n, scale=1.0 / np.sqrt(k))), init(b, rand(rng, n))]
        out = "y" if i == layers - 1 else f"h{i}"
        pre = out if i == layers - 1 else f"p{i}"
        if gemm and i == 0:
            nodes.append(helper.make_node("Gemm", [value, w, b], [pre], name=f"gemm{i}"))
        else:
            nodes += [helper.make_node("MatMul", [value, w], [f"m{i}"], name=f"matmul{i}"),
                      helper.make_node("Add", [f"m{i}", b], [pre], name=f"add{i}")]
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [pre], [out], name=f"relu{i}"))
        value = out
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", sizes[-1]])
    return write_model(make_model(nodes, [x], [y], inits), tmp_path, "mlp_dynamic.onnx")


def encoder_block(tmp_path: Path, seq: int = 16, d: int = 64, hidden: int = 128,
                  seed: int = 0) -> Path:
    """x[batch, seq, d] -> + pos[seq, d] -> MatMul + bias -> Softmax(-1) -> MatMul + bias -> +
    residual -> LayerNormalization -> Relu -> * x: matrices, row kernels and elementwise
    broadcasting over the symbolic batch."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Add", ["x", "pos"], ["xp"], name="add_pos"),
        helper.make_node("MatMul", ["xp", "w0"], ["m0"], name="matmul0"),
        helper.make_node("Add", ["m0", "b0"], ["a0"], name="add0"),
        helper.make_node("Softmax", ["a0"], ["s0"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["s0", "w1"], ["m1"], name="matmul1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"], name="add1"),
        helper.make_node("Add", ["a1", "xp"], ["r"], name="residual"),
        helper.make_node("LayerNormalization", ["r", "g", "beta"], ["n"], name="norm", axis=-1),
        helper.make_node("Relu", ["n"], ["nr"], name="relu"),
        helper.make_node("Mul", ["nr", "x"], ["y"], name="gate"),
    ]
    inits = [init("pos", rand(rng, seq, d)), init("w0", rand(rng, d, hidden, scale=0.2)),
             init("b0", rand(rng, hidden)), init("w1", rand(rng, hidden, d)),
             init("b1", rand(rng, d)), init("g", rand(rng, d)), init("beta", rand(rng, d))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", seq, d])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", seq, d])
    return write_model(make_model(nodes, [x], [y], inits), tmp_path, "encoder_block.onnx")


def attention_encoder(tmp_path: Path, vocab: int = 50, d: int = 64, heads: int = 4,
                      seed: int = 0) -> Path:
    """ids[batch, seq] (int64), mask[batch, seq] -> token embedding (Gather) -> one attention
    layer: Q/K/V projections, Reshape to heads (constant targets [0, 0, H, D/H]: no Shape
    subgraph), Transposes, scaled scores + additive mask -> Softmax -> weighted V, Transpose +
    Reshape back, output projection + residual -> LayerNormalization."""
    rng = np.random.default_rng(seed)
    dh = d // heads
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Gather", ["table", "ids"], ["h"], name="embed")]
    for name, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        nodes += [helper.make_node("MatMul", ["h", f"w{name}"], [f"{name}m"], name=f"{name}_proj"),
                  helper.make_node("Add", [f"{name}m", f"b{name}"], [f"{name}a"], name=f"{name}_bias"),
                  helper.make_node("Reshape", [f"{name}a", "heads_shape"], [f"{name}r"],
                                   name=f"{name}_heads"),
                  helper.make_node("Transpose", [f"{name}r"], [f"{name}t"], name=f"{name}_t",
                                   perm=perm)]
    nodes += [
        helper.make_node("Unsqueeze", ["mask", "axes12"], ["mu"], name="mask_unsqueeze"),
        helper.make_node("Cast", ["mu"], ["mf"], name="mask_cast", to=f),
        helper.make_node("Sub", ["one", "mf"], ["mi"], name="mask_invert"),
        helper.make_node("Mul", ["mi", "neg_big"], ["madd"], name="mask_scale"),
        helper.make_node("MatMul", ["qt", "kt"], ["s"], name="scores"),
        helper.make_node("Div", ["s", "scale"], ["ss"], name="scale_scores"),
        helper.make_node("Add", ["ss", "madd"], ["sm"], name="mask_add"),
        helper.make_node("Softmax", ["sm"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "vt"], ["o"], name="weighted"),
        helper.make_node("Transpose", ["o"], ["ot"], name="o_t", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ot", "model_shape"], ["or"], name="o_merge"),
        helper.make_node("MatMul", ["or", "wo"], ["om"], name="o_proj"),
        helper.make_node("Add", ["om", "bo"], ["oa"], name="o_bias"),
        helper.make_node("Add", ["oa", "h"], ["res"], name="residual"),
        helper.make_node("LayerNormalization", ["res", "g", "beta"], ["y"], name="norm", axis=-1),
    ]
    inits = [init("table", rand(rng, vocab, d)),
             init("heads_shape", np.array([0, 0, heads, dh], np.int64)),
             init("model_shape", np.array([0, 0, d], np.int64)),
             init("axes12", np.array([1, 2], np.int64)),
             init("one", np.array(1.0, np.float32)), init("neg_big", np.array(-10000.0, np.float32)),
             init("scale", np.array(np.sqrt(dh), np.float32)),
             init("wo", rand(rng, d, d, scale=0.2)), init("bo", rand(rng, d)),
             init("g", rand(rng, d)), init("beta", rand(rng, d))]
    for name in "qkv":
        inits += [init(f"w{name}", rand(rng, d, d, scale=0.2)), init(f"b{name}", rand(rng, d))]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])
    mask = helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "seq"])
    y = helper.make_tensor_value_info("y", f, ["batch", "seq", d])
    return write_model(make_model(nodes, [ids, mask], [y], inits), tmp_path, "attention.onnx")


def concat_copy(tmp_path: Path, width: int = 8, seed: int = 0) -> Path:
    """x[batch, W] -> Concat(x, Relu(x) * w) on axis 1 -> y[batch, 2W], and x copied to the
    output z (Identity)."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Mul", ["r", "w"], ["rw"], name="scale"),
             helper.make_node("Concat", ["x", "rw"], ["y"], name="concat", axis=1),
             helper.make_node("Identity", ["x"], ["z"], name="copy")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2 * width])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", width])
    return write_model(make_model(nodes, [x], [y, z], [init("w", rand(rng, width))]), tmp_path,
                       "concat_copy.onnx")


def pooling(tmp_path: Path, d: int = 24) -> Path:
    """x[batch, seq, D] -> mean over seq (sentence embedding), max over D, the sum over the
    symbolic batch itself, the index of the largest of D (ArgMax)."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], name="mean_seq", axes=[1],
                              keepdims=0),
             helper.make_node("ReduceMax", ["x"], ["max"], name="max_d", axes=[2], keepdims=1),
             helper.make_node("ReduceSum", ["x", "axes0"], ["sum"], name="sum_batch",
                              keepdims=0),
             helper.make_node("ArgMax", ["x"], ["best"], name="argmax_d", axis=2, keepdims=0)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", d])
    outs = [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch", d]),
            helper.make_tensor_value_info("max", TensorProto.FLOAT, ["batch", "seq", 1]),
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["seq", d]),
            helper.make_tensor_value_info("best", TensorProto.INT64, ["batch", "seq"])]
    return write_model(make_model(nodes, [x], outs, [init("axes0", np.array([0], np.int64))]),
                       tmp_path, "pooling.onnx")


def small_cnn(tmp_path: Path, seed: int = 0) -> Path:
    """x[batch, 3, 16, 16] -> Conv 3x3 + bias -> Relu -> MaxPool 2x2 -> Conv 1x1 + residual ->
    GlobalAveragePool -> Flatten -> Gemm: y[batch, 10]."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("MaxPool", ["r0"], ["p0"], name="pool0", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Conv", ["p0", "w1"], ["c1"], name="conv1"),
             helper.make_node("Add", ["c1", "p0"], ["a1"], name="residual"),
             helper.make_node("GlobalAveragePool", ["a1"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="head")]
    inits = [init("w0", rand(rng, 8, 3, 3, 3, scale=0.3)), init("b0", rand(rng, 8)),
             init("w1", rand(rng, 8, 8, 1, 1, scale=0.3)), init("w2", rand(rng, 8, 10)),
             init("b2", rand(rng, 10))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])
    return write_model(make_model(nodes, [x], [y], inits), tmp_path, "small_cnn.onnx")


def slices(tmp_path: Path, d: int = 16) -> Path:
    """x[batch, seq, D] -> the tokens after the first (y) and the last 3 tokens (tail): Slices
    whose ranges depend on seq (a negative step over a symbolic dim is refused by Slice's rule
    with PYC-E051 today)."""
    big = np.iinfo(np.int64).max
    nodes = [helper.make_node("Slice", ["x", "one", "end", "axis1"], ["y"], name="drop_first"),
             helper.make_node("Slice", ["x", "minus3", "end", "axis1"], ["tail"], name="last3")]
    inits = [init("one", np.array([1], np.int64)), init("end", np.array([big], np.int64)),
             init("axis1", np.array([1], np.int64)), init("minus3", np.array([-3], np.int64))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", d])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", f"{n}_len", d])
            for n in ("y", "tail")]
    return write_model(make_model(nodes, [x], outs, inits), tmp_path, "slices.onnx")
