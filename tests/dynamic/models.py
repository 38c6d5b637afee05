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
