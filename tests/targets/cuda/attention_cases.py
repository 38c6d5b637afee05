"""Shapes and numpy models for the CUDA fused attention kernels (pyc.Attention), shared by the
emulated tests (test_cuda_emulated.py), the build / NVRTC tests (test_cuda_attention.py) and the
GPU tests (test_cuda_gpu.py).

float32 (cuda_attention_flash): against numpy float64, rtol 1e-4, atol 2e-5 (float32 sums of D
products and T weighted values, as the CPU kernel's test).
fp16 / bf16 (cuda_attention_mma): Q, Kt, V and the probabilities rounded to 16 bits for
mma.sync, float32 accumulation. Against `rounded_attention`, a numpy model of those roundings,
where the keys fit one 64-key tile (the kernel's probabilities are then relative to the row's
final maximum, as the model's) within ROUNDED_RTOL of max |output| (float32 sums; a probability
whose float32 value sits at a rounding boundary may round one 16-bit step apart); against
float64 within the GEMM's EXACT_RTOL (mma_precision.py), always."""

from __future__ import annotations

import numpy as np
import onnx
from helpers import Forced
from mma_precision import round_to
from onnx import TensorProto, helper, numpy_helper
from ops.test_references import attention_model
from targets.cpu.test_attention_kernel import attention_weights, float64_attention

__all__ = ["float64_attention"]  # the float32 reference, shared with the CPU kernel's test

ROUNDED_RTOL = 2e-3
MMA_TILE_KEYS = 64  # keys per tile of the tensor-core kernel (kernel_context._attention_mma)

SHAPES = [  # batch, S, D, T, E, scale, mask [S, T]: the float32 kernel, emulated
    ((1,), 1, 16, 1, 16, None, False),
    ((2,), 7, 16, 7, 16, 0.25, True),
    ((1, 3), 33, 32, 33, 32, 0.1767767, True),
    ((2,), 1, 64, 128, 64, 0.125, True),          # one query row, two 64-key tiles
    ((1, 2), 128, 32, 128, 32, 0.1767767, True),  # MiniLM-L6's head shape
    ((1,), 33, 64, 7, 17, None, True),            # a value width that is not a multiple of 32
    ((1,), 7, 128, 33, 128, 0.088, True),         # 128-wide heads: 32-key tiles
]
MMA_SHAPES = [  # the tensor-core kernel, emulated
    ((2, 64), 70, 16, 9, 16, 0.5, True),        # 4-warp blocks (128 of them), a partial one
    ((64,), 40, 16, 20, 16, 0.5, True),         # 2-warp blocks (128), a partial one
    ((2, 3), 7, 16, 33, 32, 0.25, True),
    ((1,), 33, 24, 64, 17, None, True),         # D and E padded to 16s, exactly one key tile
    ((1, 2), 33, 64, 128, 64, 0.125, True),     # two key tiles: the online rescaling
    ((1,), 7, 128, 70, 128, 0.088, True),       # 128-wide heads, a partial second tile
]
GPU_SHAPES = [  # on the GPU, at every precision: sizes the emulation cannot afford too
    ((1,), 1, 16, 1, 16, None, False),
    ((2, 3), 33, 32, 33, 32, 0.1767767, True),
    ((1, 12), 128, 32, 128, 32, 0.1767767, True),   # MiniLM-L6 at sequence 128
    ((1,), 33, 24, 64, 17, None, True),
    ((2, 12), 512, 64, 512, 64, 0.125, True),       # BERT-base heads at sequence 512
    ((1, 4), 1000, 128, 1000, 128, 0.088, True),    # 128-wide heads, partial tiles
]


def mma_warps(warps: int) -> Forced:
    """A tuning database: the tensor-core attention in blocks of `warps` warps."""
    return Forced("pyc.Attention", "cuda_attention_mma", {"attn_warps": warps})


def flash_rows(rows: int) -> Forced:
    """A tuning database: the float32 attention in blocks of `rows` query rows."""
    return Forced("pyc.Attention", "cuda_attention_flash", {"attn_rows": rows})


def rounded_attention(feeds: dict[str, np.ndarray], scale: float | None,
                      precision: str) -> np.ndarray:
    """The tensor-core kernel's arithmetic in float64 with its roundings: Q, Kt, V, then the
    probabilities (relative to the row maximum) rounded to `precision` before they weigh V;
    the denominator sums them unrounded."""
    q, kt, v = (round_to(feeds[n], precision) for n in ("q", "kt", "v"))
    weights = attention_weights(q, kt, feeds, scale)
    rounded = round_to(weights.astype(np.float32), precision)
    return (rounded @ v) / weights.sum(axis=-1, keepdims=True)


def minilm_attention(batch: int, heads: int, s: int, d: int) -> onnx.ModelProto:
    """attention_model's pattern with the exported encoders' mask: [B, 1, 1, T]."""
    model = attention_model((batch, heads), s, d, s, d, d ** -0.5, True)
    mask = model.graph.input[3]
    del mask.type.tensor_type.shape.dim[:]
    for extent in (batch, 1, 1, s):
        mask.type.tensor_type.shape.dim.add().dim_value = extent
    return model


# The heads' layout as encoders export it: Q, K, V [B, S, H * D] reshaped to [B, S, H, D] and
# transposed to [B, H, S, D] (K to [B, H, D, T]), the output transposed back and merged; the
# Transposes fold into pyc.Attention (fuse_attention: read and written through strides).
# batch, heads, S, T, D, E, scale: the float32 kernel (emulated) ...
HEAD_SHAPES = [
    (1, 2, 7, 7, 16, 16, 0.25),
    (2, 3, 33, 70, 24, 17, 0.2),      # two key tiles, a partial one, odd D and E
    (1, 2, 128, 128, 32, 32, 0.1767767),  # MiniLM-L6's heads
]
# ... and the tensor-core kernel (emulated): D and E padded, two key tiles
HEAD_MMA_SHAPES = [(1, 2, 33, 70, 24, 17, 0.2), (2, 2, 40, 64, 32, 32, 0.1767767)]
# self-attention (S = T, D = E): Q, K, V projections of one input, merged into one GEMM
SELF_SHAPES = [(2, 3, 33, 33, 24, 24, 0.2), (1, 2, 70, 70, 32, 32, 0.1767767)]
# on the GPU, every precision: odd sizes, MiniLM-L6's 12 heads, BERT-base's at sequence 512
HEAD_GPU_SHAPES = [HEAD_SHAPES[1], (1, 12, 128, 128, 32, 32, 0.1767767), (2, 12, 512, 512, 64, 64, 0.125)]


def head_attention_model(batch: int, heads: int, s: int, t: int, d: int, e: int, scale: float,
                         rng: np.random.Generator, project: bool = False,
                         k_transposed: bool = True, self_attention: bool = False) -> onnx.ModelProto:
    """Multi-head attention over [B, S, H * D] inputs q, k, v (or, `project`, x [B, S, C] and
    kv [B, T, C] through three weight matrices and biases, so that Q, K, V are activations a
    16-bit build stores in 16 bits; `self_attention`: all three from x, S = T and D = E, the
    projections fuse_attention merges into one GEMM), mask [B, 1, 1, T] added to the scaled
    scores, output y [B, S, H * E]. `k_transposed` False: K comes as kt [B, H, D, T] (no
    Transpose of K to fold)."""
    f = TensorProto.FLOAT
    nodes: list[onnx.NodeProto] = []
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (
        ("shape_q", [batch, s, heads, d]), ("shape_k", [batch, t, heads, d]),
        ("shape_v", [batch, t, heads, e]), ("shape_y", [batch, s, heads * e]))]
    inits.append(numpy_helper.from_array(np.array(scale, np.float32), "scale"))
    if project or self_attention:
        c = 3 * heads * 8
        inputs = [helper.make_tensor_value_info("x", f, [batch, s, c])]
        kv = "x" if self_attention else "kv"
        if not self_attention:
            inputs.append(helper.make_tensor_value_info("kv", f, [batch, t, c]))
        for name, src, width in (("q", "x", heads * d), ("k", kv, heads * d), ("v", kv, heads * e)):
            w = (rng.standard_normal((c, width)) / np.sqrt(c)).astype(np.float32)
            bias = rng.standard_normal(width).astype(np.float32)
            inits += [numpy_helper.from_array(w, f"w_{name}"), numpy_helper.from_array(bias, f"b_{name}")]
            nodes += [helper.make_node("MatMul", [src, f"w_{name}"], [f"{name}_mm"]),
                      helper.make_node("Add", [f"{name}_mm", f"b_{name}"], [name])]
    else:
        inputs = [helper.make_tensor_value_info("q", f, [batch, s, heads * d]),
                  helper.make_tensor_value_info("v", f, [batch, t, heads * e])]
        inputs.insert(1, helper.make_tensor_value_info("k", f, [batch, t, heads * d]) if k_transposed
                      else helper.make_tensor_value_info("kt", f, [batch, heads, d, t]))
    inputs.append(helper.make_tensor_value_info("mask", f, [batch, 1, 1, t]))
    nodes += [helper.make_node("Reshape", ["q", "shape_q"], ["q4"]),
              helper.make_node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["v", "shape_v"], ["v4"]),
              helper.make_node("Transpose", ["v4"], ["vh"], perm=[0, 2, 1, 3])]
    if k_transposed or project or self_attention:
        nodes += [helper.make_node("Reshape", ["k", "shape_k"], ["k4"]),
                  helper.make_node("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1])]
    nodes += [helper.make_node("MatMul", ["qh", "kt"], ["s0"]),
              helper.make_node("Mul", ["s0", "scale"], ["s1"]),
              helper.make_node("Add", ["s1", "mask"], ["s2"]),
              helper.make_node("Softmax", ["s2"], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "vh"], ["ctx"]),
              helper.make_node("Transpose", ["ctx"], ["ctxt"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ctxt", "shape_y"], ["y"])]
    graph = helper.make_graph(nodes, "heads", inputs,
                              [helper.make_tensor_value_info("y", f, [batch, s, heads * e])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def head_feeds(model: onnx.ModelProto, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh standard-normal inputs; the mask 0 or the lowest float (a fifth of the keys)."""
    feeds = {}
    for value in model.graph.input:
        shape = [x.dim_value for x in value.type.tensor_type.shape.dim]
        feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    feeds["mask"] = np.where(rng.random(feeds["mask"].shape) < 0.8, 0.0,
                             np.finfo(np.float32).min).astype(np.float32)
    return feeds
