"""Models for the Hopper GEMM (matmul_wgmma.cu.j2, sm_90 builds at fp16 / bf16), shared by the
CI tests (rendering, NVRTC for sm_90a, selection) and the GPU tests: a fused epilogue (bias,
ReLU, residual) over a constant B (stored in 16 bits), a chain of three GEMMs whose middle one
reads and writes 16-bit activations (A by cp.async), and a batched product of two inputs (both
operands float32, rounded as they are staged). Each forward gives the exact float64 result
("fp32") or the rounding model of mma_precision.py at "fp16" / "bf16" (GEMM inputs rounded as the
kernel rounds them, the chain's 16-bit activations too; float64 arithmetic)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from helpers import init, make_model, rand, vinfo
from mma_precision import matmul, round_to
from onnx import helper

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class WgmmaCase:
    name: str
    make: Callable[[np.random.Generator], onnx.ModelProto]
    inputs: dict[str, tuple[int, ...]]
    # (feeds, initializers, "fp32" / "fp16" / "bf16") -> y in float64, exact or rounded
    forward: Callable[[Arrays, Arrays, str], np.ndarray]
    k: int = 0  # the GEMMs' depth (the rounding model's tolerance grows with it)
    gemms: int = 1  # MatMul nodes (each runs the Hopper GEMM where forced)

    def feeds(self, rng: np.random.Generator) -> Arrays:
        return {name: rand(rng, *shape) for name, shape in self.inputs.items()}


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float64)


def epilogue(m: int, k: int, n: int) -> WgmmaCase:
    """y = relu(x W + b) + r: the epilogue fused into the GEMM's store."""
    def make(rng: np.random.Generator) -> onnx.ModelProto:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
                 helper.make_node("Add", ["m", "b"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
                 helper.make_node("Add", ["r", "res"], ["y"])]
        return make_model(nodes, [vinfo("x", (m, k)), vinfo("res", (m, n))], [vinfo("y", (m, n))],
                          [init("w", rand(rng, k, n, scale=k ** -0.5)), init("b", rand(rng, n))])

    def forward(f: Arrays, w: Arrays, p: str) -> np.ndarray:
        return np.maximum(matmul(f["x"], w["w"], p) + _f64(w["b"]), 0) + _f64(f["res"])
    return WgmmaCase(f"wgmma_epilogue_{m}x{k}x{n}", make, {"x": (m, k), "res": (m, n)}, forward, k=k)


def chain(m: int, k: int) -> WgmmaCase:
    """y = ((x W1) W2) W3, k x k weights: the activations between the GEMMs are stored in 16
    bits, so the middle GEMM reads A and writes C in 16 bits."""
    def make(rng: np.random.Generator) -> onnx.ModelProto:
        nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"]),
                 helper.make_node("MatMul", ["h1", "w2"], ["h2"]),
                 helper.make_node("MatMul", ["h2", "w3"], ["y"])]
        weights = [init(f"w{i}", rand(rng, k, k, scale=k ** -0.5)) for i in (1, 2, 3)]
        return make_model(nodes, [vinfo("x", (m, k))], [vinfo("y", (m, k))], weights)

    def forward(f: Arrays, w: Arrays, p: str) -> np.ndarray:
        h = matmul(f["x"], w["w1"], p)  # each product stored (rounded) in 16 bits, read again
        h = matmul(round_to(h, p), w["w2"], p)
        return matmul(round_to(h, p), w["w3"], p)
    return WgmmaCase(f"wgmma_chain_{m}x{k}", make, {"x": (m, k)}, forward, gemms=3, k=k)


def two_inputs(batch: int, m: int, k: int, n: int) -> WgmmaCase:
    """y = x z over a batch, both operands model inputs (float32, rounded as staged)."""
    def make(rng: np.random.Generator) -> onnx.ModelProto:
        return make_model([helper.make_node("MatMul", ["x", "z"], ["y"])],
                          [vinfo("x", (batch, m, k)), vinfo("z", (batch, k, n))],
                          [vinfo("y", (batch, m, n))])

    def forward(f: Arrays, w: Arrays, p: str) -> np.ndarray:
        return matmul(f["x"], f["z"], p)
    return WgmmaCase(f"wgmma_inputs_{batch}x{m}x{k}x{n}", make,
                     {"x": (batch, m, k), "z": (batch, k, n)}, forward, k=k)


def constant_b(name: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> WgmmaCase:
    """y = x W over batch dims (W constant, maybe one per batch index, maybe broadcast)."""
    def make(rng: np.random.Generator) -> onnx.ModelProto:
        k = x_shape[-1]
        out = np.broadcast_shapes(x_shape[:-2], w_shape[:-2]) + (x_shape[-2], w_shape[-1])
        return make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [vinfo("x", x_shape)],
                          [vinfo("y", out)], [init("w", rand(rng, *w_shape, scale=k ** -0.5))])

    def forward(f: Arrays, w: Arrays, p: str) -> np.ndarray:
        return matmul(f["x"], w["w"], p)
    return WgmmaCase(name, make, {"x": x_shape}, forward, k=x_shape[-1])


def activation_b(m: int, k: int, p: int, n: int) -> WgmmaCase:
    """y = x (u W): B of the second GEMM an activation, stored in 16 bits (both GEMMs read a
    float32 model input as A)."""
    def make(rng: np.random.Generator) -> onnx.ModelProto:
        nodes = [helper.make_node("MatMul", ["u", "w"], ["b"]),
                 helper.make_node("MatMul", ["x", "b"], ["y"])]
        return make_model(nodes, [vinfo("x", (m, k)), vinfo("u", (k, p))], [vinfo("y", (m, n))],
                          [init("w", rand(rng, p, n, scale=p ** -0.5))])

    def forward(f: Arrays, w: Arrays, prec: str) -> np.ndarray:
        b = matmul(f["u"], w["w"], prec)
        return matmul(f["x"], round_to(b, prec), prec)
    return WgmmaCase(f"wgmma_activation_b_{m}x{k}x{p}x{n}", make, {"x": (m, k), "u": (k, p)},
                     forward, gemms=2, k=k)


# rendered and compiled in CI (small: tails in M, N and K; K and N off multiples of 8)
COMPILE_CASES = (epilogue(130, 72, 200), epilogue(257, 1031, 523), chain(136, 264),
                 two_inputs(3, 200, 136, 261))
# run on the GPU, the Hopper GEMM forced at every size (by default it takes large ones only)
GPU_CASES = (epilogue(4096, 4096, 4096), epilogue(1000, 1000, 1000), epilogue(128, 384, 384),
             epilogue(9, 40, 70), *COMPILE_CASES, chain(2048, 1024), two_inputs(2, 512, 520, 1000))
# (tc_wgmma_stages, tc_wgmma_n): every variant a tuner may force
VARIANTS = ((4, 128), (3, 128), (4, 256), (3, 256))

# relative error ||out - exact|| / ||exact|| (Frobenius, float64) allowed: inputs rounded to
# 16 bits (fp16 2^-11, bf16 2^-8 relative) and float32 accumulation give ~4e-4 (fp16) and
# ~3e-3 (bf16) on random normal data. The chain rounds two 16-bit activations on the way too.
# A norm hides a few wrong elements (one of 16M off by O(1) moves it by ~2e-4): every element
# is also held to the rounding model (mma_precision.model_rtol(k) of max |y|, the tolerance the
# mma.sync GEMM meets on the H100), where a wrong tile, swizzle or fragment index errs by O(1).
REL_TOL = {"fp16": 2e-3, "bf16": 1e-2}
CHAIN_REL_TOL = {"fp16": 4e-3, "bf16": 2e-2}


def relative_error(actual: np.ndarray, exact: np.ndarray) -> float:
    """||actual - exact|| / ||exact|| in float64; inf where actual holds NaN or infinity."""
    actual = np.asarray(actual, np.float64)
    if not np.all(np.isfinite(actual)):
        return float("inf")
    return float(np.linalg.norm(actual - exact) / max(np.linalg.norm(exact), 1e-300))


def error_map(actual: np.ndarray, expected: np.ndarray, rtol: float, tile: int = 128) -> str:
    """Where `actual` misses `expected` by more than rtol x max |expected|, folded onto one
    tile of C: a (tile / 8) x (tile / 8) grid of 8 x 8 cells (rows of the tile down, columns
    across), '#' where some element of that cell in some tile is off, '.' elsewhere. A swizzle
    or descriptor error shows as a pattern (every other 64-column block, rows 8-15 of each
    16, ...), a pipeline race as scattered cells."""
    actual = np.asarray(actual, np.float64).reshape(-1, actual.shape[-1])
    expected = np.asarray(expected, np.float64).reshape(-1, expected.shape[-1])
    bad = ~(np.abs(actual - expected) <= rtol * max(float(np.max(np.abs(expected))), 1e-30))
    rows, cols = np.nonzero(bad)
    grid = np.zeros((tile // 8, tile // 8), bool)
    grid[(rows % tile) // 8, (cols % tile) // 8] = True
    lines = ["".join("#" if cell else "." for cell in row) for row in grid]
    return f"{bad.sum()} of {bad.size} elements off; by 8 x 8 cell of a {tile}-tile:\n" + "\n".join(lines)


# the TMA Hopper GEMM (matmul_wgmma_tma.cu.j2: K a multiple of 8, B not a model input): a float32
# A (rounded in registers) with tails in M and N, a K tail of the 64-deep slices, 16-bit A and
# C in the chain's middle GEMM, one constant B per batch index (3-D maps) and an A broadcast
# over two batch dims (a 2-D map for A, a 4-D one for B), one row more than the skinny GEMM,
# a 16-bit activation as B
TMA_COMPILE_CASES = (epilogue(130, 72, 200), epilogue(257, 1032, 523), chain(136, 264),
                     constant_b("tma_batched_b", (3, 130, 64), (3, 64, 72)),
                     constant_b("tma_broadcast_a", (24, 40), (2, 3, 40, 72)),
                     epilogue(9, 40, 70), activation_b(200, 136, 72, 264))
TMA_GPU_CASES = (epilogue(4096, 4096, 4096), epilogue(1000, 1000, 1000), epilogue(128, 384, 384),
                 *TMA_COMPILE_CASES, chain(2048, 1024),
                 constant_b("tma_batched_b_large", (2, 1000, 520), (2, 520, 1000)))
# forced parameters of the TMA GEMM: its defaults, 128-column tiles, 2 and 6 stages, and a
# persistent grid of 3 blocks (each takes many tiles: the pipeline's phases carry across them)
TMA_VARIANTS = ({}, {"tc_wgmma_n": 128}, {"tc_tma_stages": 2},
                {"tc_wgmma_n": 128, "tc_tma_stages": 4}, {"tc_tma_ctas": 3})
