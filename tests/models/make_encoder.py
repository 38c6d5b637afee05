"""A BERT/MiniLM-shaped transformer encoder built with onnx.helper (random weights, no torch):
embeddings (Gather + positions + LayerNorm), then per layer Q/K/V projections, heads split by
Reshape + Transpose, scaled scores plus an attention-mask bias, Softmax, the context, an output
projection with a residual LayerNorm, and an Erf-GELU feed-forward with a residual LayerNorm.

`make_encoder()` defaults to MiniLM-L6's shape (6 layers, hidden 384, 12 heads, FFN 1536,
vocab 30522); the CUDA tests use a small one, benchmarks/cuda_smoke.py the full one at
batch 1, sequence 128."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_encoder(batch: int = 1, seq: int = 128, layers: int = 6, hidden: int = 384,
                 heads: int = 12, ffn: int = 1536, vocab: int = 30522, seed: int = 0
                 ) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    head = hidden // heads
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(name: str, *shape: int, scale: float) -> str:
        return const(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def node(op: str, inputs: list[str], output: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(x: str, name: str, k: int, n: int) -> str:
        y = node("MatMul", [x, weight(f"{name}.w", k, n, scale=k ** -0.5)], f"{name}.mm")
        return node("Add", [y, weight(f"{name}.b", n, scale=0.02)], f"{name}.out")

    def layernorm(x: str, name: str) -> str:
        gamma = const(f"{name}.g", (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32))
        beta = weight(f"{name}.beta", hidden, scale=0.1)
        return node("LayerNormalization", [x, gamma, beta], f"{name}.out", axis=-1, epsilon=1e-12)

    split = const("shape.split", np.array([batch, seq, heads, head], np.int64))
    merge = const("shape.merge", np.array([batch, seq, hidden], np.int64))
    words = node("Gather", [weight("emb.words", vocab, hidden, scale=1.0), "input_ids"], "emb.gather")
    x = node("Add", [words, weight("emb.pos", seq, hidden, scale=0.1)], "emb.sum")
    x = layernorm(x, "emb.ln")
    mask = node("Cast", ["attention_mask"], "mask.f", to=TensorProto.FLOAT)
    mask = node("Sub", [const("one", np.array(1, np.float32)), mask], "mask.inv")
    mask = node("Mul", [mask, const("big", np.array(-10000, np.float32))], "mask.bias")
    mask = node("Reshape", [mask, const("shape.mask", np.array([batch, 1, 1, seq], np.int64))],
                "mask.4d")
    scale = const("scale", np.array(np.sqrt(head), np.float32))
    for i in range(layers):
        p = f"l{i}"
        q = node("Reshape", [linear(x, f"{p}.q", hidden, hidden), split], f"{p}.q4")
        k = node("Reshape", [linear(x, f"{p}.k", hidden, hidden), split], f"{p}.k4")
        v = node("Reshape", [linear(x, f"{p}.v", hidden, hidden), split], f"{p}.v4")
        q = node("Transpose", [q], f"{p}.qt", perm=[0, 2, 1, 3])
        k = node("Transpose", [k], f"{p}.kt", perm=[0, 2, 3, 1])
        v = node("Transpose", [v], f"{p}.vt", perm=[0, 2, 1, 3])
        s = node("Div", [node("MatMul", [q, k], f"{p}.qk"), scale], f"{p}.scaled")
        s = node("Softmax", [node("Add", [s, mask], f"{p}.masked")], f"{p}.probs", axis=-1)
        c = node("Transpose", [node("MatMul", [s, v], f"{p}.ctx")], f"{p}.ctxt", perm=[0, 2, 1, 3])
        c = node("Reshape", [c, merge], f"{p}.ctx3")
        x = layernorm(node("Add", [linear(c, f"{p}.o", hidden, hidden), x], f"{p}.res1"), f"{p}.ln1")
        h = linear(x, f"{p}.ff1", hidden, ffn)
        erf = node("Erf", [node("Div", [h, const(f"{p}.sqrt2", np.array(np.sqrt(2), np.float32))],
                                f"{p}.hs")], f"{p}.erf")
        gate = node("Add", [erf, const(f"{p}.one", np.array(1, np.float32))], f"{p}.erf1")
        h = node("Mul", [node("Mul", [h, gate], f"{p}.hg"), const(f"{p}.half", np.array(0.5, np.float32))],
                 f"{p}.gelu")
        x = layernorm(node("Add", [linear(h, f"{p}.ff2", ffn, hidden), x], f"{p}.res2"), f"{p}.ln2")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))
    graph = helper.make_graph(
        nodes, "encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, seq]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [batch, seq])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [batch, seq, hidden])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="pyc-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def encoder_feeds(rng: np.random.Generator, batch: int, seq: int, vocab: int) -> dict[str, np.ndarray]:
    """Token ids in range and a mask with a padded tail per row."""
    mask = np.ones((batch, seq), np.int64)
    for row in range(batch):
        mask[row, seq - int(rng.integers(0, seq // 2 + 1)):] = 0
    return {"input_ids": rng.integers(0, vocab, (batch, seq), dtype=np.int64), "attention_mask": mask}
