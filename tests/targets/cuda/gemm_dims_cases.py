"""MatMuls over sizes known at run time only on the CUDA target (symbolic input dims,
`--input-shape x=batch:1..8,40`): a Linear with bias, GELU and residual fused over a symbolic
row count, one of odd K and N whose upper bound spans two row tiles, a 3-D Linear
[batch, seq, K] x [K, N] with both leading dims symbolic (bias and residual fused), and
batched attention-shaped MatMuls [b, h, s, d] x [b, h, d, s] (N a dim) and
[b, h, s, s] x [b, h, s, d] (K a dim) with b and s symbolic, and a batch dim whose broadcast
is decided at run time (either operand's may be 1), and rows that NonZero counts during the
run (0 among them). At fp32 they run
cuda_matmul_tiled_dims, at tf32 / fp16 / bf16 the tensor-core cuda_matmul_mma_dims (never the
one-thread cuda_generic_matmul_naive_dims). Each case: the model (fresh random weights from the
test's generator), its input shapes, the sizes of its runs (1 and the upper bounds among
them), and a numpy forward on mma_precision.py's rounding model (precision "fp32": the exact
float64 result). Shared by the emulated tests (test_cuda_gemm_dims.py) and the GPU tests
(test_cuda_gpu.py -k run_time_sizes)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from helpers import init, make_model, rand, vinfo
from mma_precision import matmul
from onnx import helper

Arrays = dict[str, np.ndarray]
Sizes = dict[str, int]


@dataclass(frozen=True)
class GemmDimsCase:
    name: str
    make: Callable[[np.random.Generator], onnx.ModelProto]
    input_shapes: dict[str, tuple[object, ...]]  # pyc_cli.build's input_shapes
    shapes: Callable[[Sizes], dict[str, tuple[int, ...]]]  # each input's shape at a run's sizes
    runs: tuple[Sizes, ...]  # each run's sizes
    # (feeds, initializers, precision) -> the output "y" on the rounding model
    forward: Callable[[Arrays, Arrays, str], np.ndarray]
    depth: int  # K's upper bound (mma_precision.model_rtol)
    # the feeds of a run where not random normal inputs of `shapes`
    make_feeds: Callable[[np.random.Generator, Sizes], Arrays] | None = None

    def feeds(self, rng: np.random.Generator, sizes: Sizes) -> Arrays:
        if self.make_feeds is not None:
            return self.make_feeds(rng, sizes)
        return {name: rand(rng, *shape) for name, shape in self.shapes(sizes).items()}


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _linear_gelu_residual(rng: np.random.Generator) -> onnx.ModelProto:
    """y = gelu(x w + b) + res over x [batch:1..8, 40]: bias, GELU and residual fused."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Gelu", ["a"], ["g"]),
             helper.make_node("Add", ["g", "res"], ["y"])]
    return make_model(nodes, [vinfo("x", ["batch", 40]), vinfo("res", ["batch", 70])],
                      [vinfo("y", ["batch", 70])],
                      [init("w", rand(rng, 40, 70, scale=40 ** -0.5)), init("b", rand(rng, 70))],
                      opset=20)


def _linear_relu_rows(rng: np.random.Generator) -> onnx.ModelProto:
    """y = relu(x w + b) over x [rows:1..70, 37], w [37, 65]: K and N odd (the 4-byte copy
    paths, 16-bit rows padded to 72), two 64-row tiles at the upper bound."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    return make_model(nodes, [vinfo("x", ["rows", 37])], [vinfo("y", ["rows", 65])],
                      [init("w", rand(rng, 37, 65, scale=37 ** -0.5)), init("b", rand(rng, 65))])


def _linear_3d(rng: np.random.Generator) -> onnx.ModelProto:
    """y = x w + b + res over x, res [batch:1..3, seq:1..20, 40 / 24]: a batch dim (B
    broadcast) and M symbolic, the residual indexed over both in the fused epilogue."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Add", ["a", "res"], ["y"])]
    return make_model(nodes, [vinfo("x", ["batch", "seq", 40]), vinfo("res", ["batch", "seq", 24])],
                      [vinfo("y", ["batch", "seq", 24])],
                      [init("w", rand(rng, 40, 24, scale=40 ** -0.5)), init("b", rand(rng, 24))])


def _scores(rng: np.random.Generator) -> onnx.ModelProto:
    """y = (q kt) / 4, q [b:1..3, 2, s:1..20, 16], kt [b, 2, 16, s]: batch, M and N symbolic,
    both operands activations."""
    nodes = [helper.make_node("MatMul", ["q", "kt"], ["s"]),
             helper.make_node("Div", ["s", "d"], ["y"])]
    return make_model(nodes, [vinfo("q", ["b", 2, "s", 16]), vinfo("kt", ["b", 2, 16, "s"])],
                      [vinfo("y", ["b", 2, "s", "s"])], [init("d", np.array(4.0, np.float32))])


def _values(rng: np.random.Generator) -> onnx.ModelProto:
    """y = p v, p [b:1..3, 2, s:1..20, s], v [b, 2, s, 16]: K symbolic too."""
    return make_model([helper.make_node("MatMul", ["p", "v"], ["y"])],
                      [vinfo("p", ["b", 2, "s", "s"]), vinfo("v", ["b", 2, "s", 16])],
                      [vinfo("y", ["b", 2, "s", 16])])


def _broadcast(rng: np.random.Generator) -> onnx.ModelProto:
    """y = a b, a [m:1..3, s:1..9, 12], b [n:1..3, 12, 10]: whether a batch dim broadcasts (m
    or n is 1) is decided at run time (a run-time stride of 0 or the matrix's)."""
    return make_model([helper.make_node("MatMul", ["a", "b"], ["y"])],
                      [vinfo("a", ["m", "s", 12]), vinfo("b", ["n", 12, 10])],
                      [vinfo("y", ["o", "s", 10])])


def _nonzero_rows(rng: np.random.Generator) -> onnx.ModelProto:
    """y = relu((float(NonZero(x)^T) * scale) w + b), x [4, 5]: M is the count NonZero
    computes (0..20) and writes into the dims before the GEMM reads it."""
    nodes = [helper.make_node("NonZero", ["x"], ["idx"]),
             helper.make_node("Transpose", ["idx"], ["t"], perm=[1, 0]),
             helper.make_node("Cast", ["t"], ["tf"], to=onnx.TensorProto.FLOAT),
             helper.make_node("Mul", ["tf", "scale"], ["a"]),
             helper.make_node("MatMul", ["a", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["r"]),
             helper.make_node("Relu", ["r"], ["y"])]
    return make_model(nodes, [vinfo("x", [4, 5])], [vinfo("y", ["n", 24])],
                      [init("scale", rng.uniform(0.2, 1.0, 2).astype(np.float32)),
                       init("w", rand(rng, 2, 24)), init("b", rand(rng, 24))])


def _nonzero_feeds(rng: np.random.Generator, sizes: Sizes) -> Arrays:
    """x [4, 5] with exactly sizes["n"] non-zero elements, at random places."""
    x = rand(rng, 4, 5) + np.float32(3.0)  # no element zero by chance
    x.reshape(-1)[rng.permutation(20)[sizes["n"]:]] = 0.0
    return {"x": x}


def _nonzero_forward(f: Arrays, w: Arrays, p: str) -> np.ndarray:
    a = np.transpose(np.nonzero(f["x"])).astype(np.float32) * w["scale"]
    return np.maximum(matmul(a, w["w"], p) + w["b"], 0)


CASES = (
    GemmDimsCase("linear_gelu_residual", _linear_gelu_residual, {"x": ("batch:1..8", 40),
                                                                 "res": ("batch:1..8", 70)},
                 lambda d: {"x": (d["batch"], 40), "res": (d["batch"], 70)},
                 ({"batch": 1}, {"batch": 8}, {"batch": 5}),
                 lambda f, w, p: _gelu(matmul(f["x"], w["w"], p) + w["b"]) + f["res"], 40),
    GemmDimsCase("linear_relu_rows", _linear_relu_rows, {"x": ("rows:1..70", 37)},
                 lambda d: {"x": (d["rows"], 37)},
                 ({"rows": 1}, {"rows": 70}, {"rows": 33}),
                 lambda f, w, p: np.maximum(matmul(f["x"], w["w"], p) + w["b"], 0), 37),
    GemmDimsCase("linear_3d", _linear_3d, {"x": ("batch:1..3", "seq:1..20", 40),
                                           "res": ("batch:1..3", "seq:1..20", 24)},
                 lambda d: {"x": (d["batch"], d["seq"], 40), "res": (d["batch"], d["seq"], 24)},
                 ({"batch": 1, "seq": 1}, {"batch": 3, "seq": 20}, {"batch": 2, "seq": 9}),
                 lambda f, w, p: matmul(f["x"], w["w"], p) + w["b"] + f["res"], 40),
    GemmDimsCase("batched_scores", _scores, {"q": ("b:1..3", 2, "s:1..20", 16),
                                             "kt": ("b:1..3", 2, 16, "s:1..20")},
                 lambda d: {"q": (d["b"], 2, d["s"], 16), "kt": (d["b"], 2, 16, d["s"])},
                 ({"b": 1, "s": 1}, {"b": 3, "s": 20}, {"b": 2, "s": 13}),
                 lambda f, w, p: matmul(f["q"], f["kt"], p) / 4.0, 16),
    GemmDimsCase("batched_values", _values, {"p": ("b:1..3", 2, "s:1..20", "s:1..20"),
                                             "v": ("b:1..3", 2, "s:1..20", 16)},
                 lambda d: {"p": (d["b"], 2, d["s"], d["s"]), "v": (d["b"], 2, d["s"], 16)},
                 ({"b": 1, "s": 1}, {"b": 3, "s": 20}, {"b": 2, "s": 7}),
                 lambda f, w, p: matmul(f["p"], f["v"], p), 20),
    GemmDimsCase("broadcast_at_run_time", _broadcast, {"a": ("m:1..3", "s:1..9", 12),
                                                       "b": ("n:1..3", 12, 10)},
                 lambda d: {"a": (d["m"], d["s"], 12), "b": (d["n"], 12, 10)},
                 ({"m": 1, "n": 1, "s": 1}, {"m": 3, "n": 3, "s": 9}, {"m": 3, "n": 1, "s": 4},
                  {"m": 1, "n": 3, "s": 9}),
                 lambda f, w, p: matmul(f["a"], f["b"], p), 12),
    GemmDimsCase("nonzero_rows", _nonzero_rows, {}, lambda d: {"x": (4, 5)},
                 ({"n": 0}, {"n": 20}, {"n": 1}, {"n": 13}), _nonzero_forward, 2,
                 _nonzero_feeds),
)
# the kernel each precision runs the MatMul on
KERNELS = {"fp32": "cuda_matmul_tiled_dims", "tf32": "cuda_matmul_mma_dims",
           "fp16": "cuda_matmul_mma_dims", "bf16": "cuda_matmul_mma_dims"}
