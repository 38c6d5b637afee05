"""Small ONNX models for the tensor-core GEMM (--precision tf32 / fp16 / bf16) on odd sizes:
K and N not multiples of 4 (the 4-byte copy paths), N not a multiple of 8 (padded 16-bit
rows), the 64 and 128 tiles, batched and broadcast GEMMs, a constant B per batch, fused
epilogues. Each has a numpy forward on the rounding model of mma_precision.py; shared by the
NVRTC compilation, emulated and GPU tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from helpers import init, make_model, rand, vinfo
from mma_precision import matmul
from onnx import helper

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class MmaCase:
    name: str
    make: Callable[[np.random.Generator], onnx.ModelProto]
    inputs: dict[str, tuple[int, ...]]
    # (feeds, initializers, precision) -> the output "y" on the rounding model
    forward: Callable[[Arrays, Arrays, str], np.ndarray]
    tile: int = 64  # the tc_tile the launch geometry picks

    def feeds(self, rng: np.random.Generator) -> Arrays:
        return {name: rand(rng, *shape) for name, shape in self.inputs.items()}


def _matmul_bias_relu_residual(m: int, k: int, n: int, tile: int = 64) -> MmaCase:
    """y = relu(x W + b) + r: bias, activation and residual fused into the GEMM's epilogue."""
    def make(rng: np.random.Generator) -> onnx.ModelProto:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
                 helper.make_node("Add", ["m", "b"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
                 helper.make_node("Add", ["r", "res"], ["y"])]
        return make_model(nodes, [vinfo("x", (m, k)), vinfo("res", (m, n))], [vinfo("y", (m, n))],
                          [init("w", rand(rng, k, n, scale=k ** -0.5)), init("b", rand(rng, n))])

    def forward(f: Arrays, w: Arrays, p: str) -> np.ndarray:
        return np.maximum(matmul(f["x"], w["w"], p) + w["b"], 0) + f["res"]
    return MmaCase(f"mma_epilogue_{m}x{k}x{n}", make, {"x": (m, k), "res": (m, n)}, forward, tile)


def _plain(name: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> MmaCase:
    out = np.broadcast_shapes(x_shape[:-2], w_shape[:-2]) + (x_shape[-2], w_shape[-1])

    def make(rng: np.random.Generator) -> onnx.ModelProto:
        return make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [vinfo("x", x_shape)],
                          [vinfo("y", out)], [init("w", rand(rng, *w_shape))])

    def forward(f: Arrays, w: Arrays, p: str) -> np.ndarray:
        return matmul(f["x"], w["w"], p)
    return MmaCase(name, make, {"x": x_shape}, forward)


def _attention_scores(rng: np.random.Generator) -> onnx.ModelProto:
    """[2, 3, 67, 16] x [2, 3, 16, 67] / 4: both operands activations (B float32 in shared)."""
    nodes = [helper.make_node("MatMul", ["q", "k"], ["s"]), helper.make_node("Div", ["s", "d"], ["y"])]
    return make_model(nodes, [vinfo("q", (2, 3, 67, 16)), vinfo("k", (2, 3, 16, 67))],
                      [vinfo("y", (2, 3, 67, 67))], [init("d", np.array(4.0, np.float32))])


MMA_CASES = [
    _matmul_bias_relu_residual(70, 129, 65),   # K % 4, N % 8 tails; 64 tiles
    _matmul_bias_relu_residual(9, 40, 70),     # one row more than the skinny GEMM takes
    _plain("mma_aligned_64", (64, 64), (64, 64)),             # the 16-byte copy paths
    _plain("mma_broadcast_b", (5, 70, 33), (33, 129)),         # B shared across the batch
    _plain("mma_batched_b", (3, 17, 32), (3, 32, 20)),          # a constant B per batch
    _plain("mma_broadcast_a", (17, 36), (2, 3, 36, 21)),       # A shared across two batch dims
    MmaCase("mma_attention_scores", _attention_scores, {"q": (2, 3, 67, 16), "k": (2, 3, 16, 67)},
            lambda f, w, p: matmul(f["q"], f["k"], p) / 4.0),
    _matmul_bias_relu_residual(2050, 9, 2060, tile=128),       # enough blocks for 128 tiles
    # K split between blocks (too few tiles for the GPU, K deep): a batch-1 encoder's GEMM
    # shape with an N tail, and a batched one with a K tail
    _matmul_bias_relu_residual(128, 384, 200),
    _plain("mma_split_batched", (2, 70, 300), (300, 45)),
]
