"""Small ONNX models that put each CUDA kernel template to work on odd sizes (1, primes, tails
of the GEMM tiles), shared by the NVRTC compilation tests (no GPU) and the GPU tests, which
compare each against onnxruntime on fresh random inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from helpers import init, make_model, rand, vinfo
from onnx import TensorProto, helper

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Case:
    name: str
    templates: tuple[str, ...]  # the CUDA kernel templates the build must use
    make: Callable[[np.random.Generator], onnx.ModelProto]
    feeds: Callable[[np.random.Generator], Feeds]
    rtol: float = 1e-4  # float32 tolerances against onnxruntime
    atol: float = 1e-5


def _normal(**shapes: tuple[int, ...]) -> Callable[[np.random.Generator], Feeds]:
    return lambda rng: {name: rand(rng, *shape) for name, shape in shapes.items()}


def _node(op: str, inputs: list[str], outputs: list[str], **attrs: object) -> onnx.NodeProto:
    return helper.make_node(op, inputs, outputs, **attrs)


def matmul_epilogue(m: int, k: int, n: int) -> Callable[[np.random.Generator], onnx.ModelProto]:
    """Y = relu(x W + b) + r: the fuse pass gives the GEMM a bias, activation, residual epilogue."""
    def make(rng: np.random.Generator) -> onnx.ModelProto:
        nodes = [_node("MatMul", ["x", "w"], ["m"]), _node("Add", ["m", "b"], ["a"]),
                 _node("Relu", ["a"], ["r"]), _node("Add", ["r", "res"], ["y"])]
        return make_model(nodes, [vinfo("x", (m, k)), vinfo("res", (m, n))], [vinfo("y", (m, n))],
                          [init("w", rand(rng, k, n, scale=k ** -0.5)), init("b", rand(rng, n))])
    return make


def batched_matmul(rng: np.random.Generator) -> onnx.ModelProto:
    """Attention-like [2, 3, 67, 16] x [2, 3, 16, 67], scaled by a Div epilogue."""
    nodes = [_node("MatMul", ["q", "k"], ["s"]), _node("Div", ["s", "d"], ["y"])]
    return make_model(nodes, [vinfo("q", (2, 3, 67, 16)), vinfo("k", (2, 3, 16, 67))],
                      [vinfo("y", (2, 3, 67, 67))], [init("d", np.array(4.0, np.float32))])


def broadcast_matmul(rng: np.random.Generator) -> onnx.ModelProto:
    """[5, 70, 33] x [33, 129]: the weight is shared across the batch (batch stride 0)."""
    return make_model([_node("MatMul", ["x", "w"], ["y"])], [vinfo("x", (5, 70, 33))],
                      [vinfo("y", (5, 70, 129))], [init("w", rand(rng, 33, 129))])


def gelu_chain(rng: np.random.Generator) -> onnx.ModelProto:
    """The exported Gelu: x * 0.5 * (1 + erf(x / sqrt(2))), with a broadcast bias first."""
    nodes = [_node("Add", ["x", "b"], ["h"]), _node("Div", ["h", "s2"], ["d"]),
             _node("Erf", ["d"], ["e"]), _node("Add", ["e", "one"], ["p"]),
             _node("Mul", ["h", "p"], ["q"]), _node("Mul", ["q", "half"], ["y"])]
    return make_model(nodes, [vinfo("x", (3, 7, 37))], [vinfo("y", (3, 7, 37))],
                      [init("b", rand(rng, 37)), init("s2", np.array(np.sqrt(2), np.float32)),
                       init("one", np.array(1, np.float32)), init("half", np.array(0.5, np.float32))])


def mask_bias(rng: np.random.Generator) -> onnx.ModelProto:
    """An int64 attention mask turned into a float bias (Cast, Sub, Mul) and added to scores."""
    nodes = [_node("Cast", ["mask"], ["mf"], to=TensorProto.FLOAT), _node("Sub", ["one", "mf"], ["inv"]),
             _node("Mul", ["inv", "big"], ["bias"]), _node("Add", ["x", "bias"], ["y"])]
    return make_model(nodes, [vinfo("x", (2, 13)), vinfo("mask", (2, 13), TensorProto.INT64)],
                      [vinfo("y", (2, 13))], [init("one", np.array(1, np.float32)),
                                              init("big", np.array(-10000, np.float32))])


def mask_feeds(rng: np.random.Generator) -> Feeds:
    return {"x": rand(rng, 2, 13), "mask": rng.integers(0, 2, (2, 13), dtype=np.int64)}


def transpose(rng: np.random.Generator) -> onnx.ModelProto:
    return make_model([_node("Transpose", ["x"], ["y"], perm=[0, 2, 1, 3])],
                      [vinfo("x", (2, 11, 3, 5))], [vinfo("y", (2, 3, 11, 5))])


def slice_(rng: np.random.Generator) -> onnx.ModelProto:
    """A negative step and a start offset."""
    nodes = [_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])]
    consts = [init("starts", np.array([1, -1], np.int64)), init("ends", np.array([7, -100], np.int64)),
              init("axes", np.array([0, 1], np.int64)), init("steps", np.array([2, -3], np.int64))]
    return make_model(nodes, [vinfo("x", (9, 17))], [vinfo("y", (3, 6))], consts)


def softmax(axis: int, op: str = "Softmax", shape: tuple[int, ...] = (3, 5, 300)
            ) -> Callable[[np.random.Generator], onnx.ModelProto]:
    def make(rng: np.random.Generator) -> onnx.ModelProto:
        return make_model([_node(op, ["x"], ["y"], axis=axis)], [vinfo("x", shape)],
                          [vinfo("y", shape)])
    return make


def layernorm(row: int = 389) -> Callable[[np.random.Generator], onnx.ModelProto]:
    def make(rng: np.random.Generator) -> onnx.ModelProto:
        nodes = [_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5)]
        return make_model(nodes, [vinfo("x", (2, 7, row))], [vinfo("y", (2, 7, row))],
                          [init("g", rand(rng, row)), init("b", rand(rng, row))])
    return make


def reduce(op: str) -> Callable[[np.random.Generator], onnx.ModelProto]:
    """Axes 1 and 3 of [3, 41, 2, 7] (not contiguous), keepdims."""
    def make(rng: np.random.Generator) -> onnx.ModelProto:
        nodes = [_node(op, ["x", "axes"], ["y"], keepdims=1)]
        return make_model(nodes, [vinfo("x", (3, 41, 2, 7))], [vinfo("y", (3, 1, 2, 1))],
                          [init("axes", np.array([1, 3], np.int64))], opset=18)
    return make


def positive_feeds(rng: np.random.Generator) -> Feeds:
    """Inputs near 1 (ReduceProd over 287 elements stays finite; ReduceLogSum's sum > 0)."""
    return {"x": (1 + 0.05 * rng.standard_normal((3, 41, 2, 7))).astype(np.float32)}


def gather(rng: np.random.Generator) -> onnx.ModelProto:
    """An embedding lookup: a [50, 24] table at int64 ids (negative ones count from the end)."""
    return make_model([_node("Gather", ["table", "ids"], ["y"], axis=0)],
                      [vinfo("ids", (2, 9), TensorProto.INT64)], [vinfo("y", (2, 9, 24))],
                      [init("table", rand(rng, 50, 24))])


def gather_feeds(rng: np.random.Generator) -> Feeds:
    return {"ids": rng.integers(-50, 50, (2, 9), dtype=np.int64)}


def concat(rng: np.random.Generator) -> onnx.ModelProto:
    """Concat of two inputs (each copied by the kernel) along the middle axis."""
    nodes = [_node("Concat", ["a", "b"], ["y"], axis=1)]
    return make_model(nodes, [vinfo("a", (3, 5, 7)), vinfo("b", (3, 2, 7))], [vinfo("y", (3, 7, 7))])


def copy(rng: np.random.Generator) -> onnx.ModelProto:
    """An output that is an input reshaped: the planner copies it into the output buffer."""
    nodes = [_node("Reshape", ["x", "shape"], ["y"])]
    return make_model(nodes, [vinfo("x", (4, 6))], [vinfo("y", (3, 8))],
                      [init("shape", np.array([3, 8], np.int64))])


def conv(rank: int, group: int = 1) -> Callable[[np.random.Generator], onnx.ModelProto]:
    """relu(conv(x) + bias) + r on odd sizes: stride 2, dilation 2 along the last axis, asymmetric
    pads, `group` groups; the fuse pass gives the bias, Relu and residual to the kernel."""
    spatial = {1: (13,), 2: (11, 13), 3: (5, 7, 9)}[rank]
    kernel = {1: (3,), 2: (3, 2), 3: (2, 3, 3)}[rank]
    strides, dilations = [1] * (rank - 1) + [2], [1] * (rank - 1) + [2]
    pads = [1] * rank + [0] * (rank - 1) + [2]
    c_in, c_out = 4, 6

    def out_size(size: int, k: int, s: int, d: int, lo: int, hi: int) -> int:
        return (size + lo + hi - d * (k - 1) - 1) // s + 1

    out = tuple(out_size(n, k, s, d, pads[i], pads[rank + i])
                for i, (n, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations)))

    def make(rng: np.random.Generator) -> onnx.ModelProto:
        nodes = [_node("Conv", ["x", "w", "b"], ["c"], strides=strides, dilations=dilations, pads=pads,
                       group=group), _node("Relu", ["c"], ["r"]), _node("Add", ["r", "res"], ["y"])]
        return make_model(nodes, [vinfo("x", (2, c_in, *spatial)), vinfo("res", (2, c_out, *out))],
                          [vinfo("y", (2, c_out, *out))],
                          [init("w", rand(rng, c_out, c_in // group, *kernel)), init("b", rand(rng, c_out))])
    make.shapes = {"x": (2, c_in, *spatial), "res": (2, c_out, *out)}  # type: ignore[attr-defined]
    return make


def pool(op: str, rank: int, **attrs: object) -> Callable[[np.random.Generator], onnx.ModelProto]:
    spatial = {1: (13,), 2: (11, 12), 3: (5, 6, 7)}[rank]
    kernel = [3] * rank
    node = _node(op, ["x"], ["y"], kernel_shape=kernel, strides=[2] * rank,
                 pads=[1] * rank + [0] * rank, **attrs)
    out = tuple((n + 1 - 3) // 2 + 1 for n in spatial)

    def make(rng: np.random.Generator) -> onnx.ModelProto:
        return make_model([node], [vinfo("x", (2, 3, *spatial))], [vinfo("y", (2, 3, *out))])
    return make


def _conv_feeds(make: Callable[..., onnx.ModelProto]) -> Callable[[np.random.Generator], Feeds]:
    return _normal(**make.shapes)  # type: ignore[attr-defined]


def attention(batch: int, heads: int, s: int, d: int, t: int, e: int
              ) -> Callable[[np.random.Generator], onnx.ModelProto]:
    """The MiniLM/BERT attention: MatMul(Q, Kt) / sqrt(d) + mask [B, 1, 1, T], Softmax, MatMul(.,
    V); fuse_attention makes it one pyc.Attention (attention.cu.j2)."""
    shapes = {"q": (batch, heads, s, d), "kt": (batch, heads, d, t), "v": (batch, heads, t, e),
              "mask": (batch, 1, 1, t)}

    def make(rng: np.random.Generator) -> onnx.ModelProto:
        nodes = [_node("MatMul", ["q", "kt"], ["qk"]), _node("Div", ["qk", "scale"], ["sc"]),
                 _node("Add", ["sc", "mask"], ["masked"]), _node("Softmax", ["masked"], ["p"], axis=-1),
                 _node("MatMul", ["p", "v"], ["y"])]
        return make_model(nodes, [vinfo(n, shape) for n, shape in shapes.items()],
                          [vinfo("y", (batch, heads, s, e))],
                          [init("scale", np.array(np.sqrt(d), np.float32))])
    make.shapes = shapes  # type: ignore[attr-defined]
    return make


def attention_feeds(make: Callable[..., onnx.ModelProto]) -> Callable[[np.random.Generator], Feeds]:
    """Normal Q, Kt, V; a mask of 0 (kept) or -10000 (padding, a quarter of the keys)."""
    def feeds(rng: np.random.Generator) -> Feeds:
        shapes = make.shapes  # type: ignore[attr-defined]
        out = {n: rand(rng, *shape) for n, shape in shapes.items() if n != "mask"}
        out["mask"] = np.where(rng.random(shapes["mask"]) < 0.75, 0, -10000).astype(np.float32)
        return out
    return feeds


CONVS = {f"conv{rank}d{'_grouped' if group > 1 else ''}": conv(rank, group)
         for rank, group in ((1, 1), (2, 1), (2, 2), (3, 1))}

CASES = [
    Case("matmul_skinny_epilogue", ("matmul_skinny.cu.j2",), matmul_epilogue(3, 67, 131),
         _normal(x=(3, 67), res=(3, 131))),
    Case("matmul_one_row", ("matmul_skinny.cu.j2",), matmul_epilogue(1, 5, 33),
         _normal(x=(1, 5), res=(1, 33))),
    Case("matmul_nine_rows", ("matmul_tiled.cu.j2",), matmul_epilogue(9, 40, 70),
         _normal(x=(9, 40), res=(9, 70))),
    Case("matmul_tiles_epilogue", ("matmul_tiled.cu.j2",), matmul_epilogue(70, 129, 65),
         _normal(x=(70, 129), res=(70, 65))),
    Case("matmul_big_tiles", ("matmul_tiled.cu.j2",), matmul_epilogue(1030, 9, 1100),
         _normal(x=(1030, 9), res=(1030, 1100))),
    Case("matmul_batched", ("matmul_tiled.cu.j2",), batched_matmul,
         _normal(q=(2, 3, 67, 16), k=(2, 3, 16, 67))),
    Case("matmul_broadcast", ("matmul_tiled.cu.j2",), broadcast_matmul, _normal(x=(5, 70, 33))),
    Case("elementwise_gelu", ("elementwise.cu.j2",), gelu_chain, _normal(x=(3, 7, 37))),
    Case("elementwise_mask", ("elementwise.cu.j2",), mask_bias, mask_feeds),
    Case("transpose", ("strided_copy.cu.j2",), transpose, _normal(x=(2, 11, 3, 5))),
    Case("slice", ("strided_copy.cu.j2",), slice_, _normal(x=(9, 17))),
    Case("softmax_last", ("softmax.cu.j2",), softmax(-1), _normal(x=(3, 5, 300))),
    # rows of 5 strided by 37 (not a multiple of a warp); 300 columns took 2 minutes emulated
    Case("softmax_middle", ("softmax.cu.j2",), softmax(1, shape=(3, 5, 37)), _normal(x=(3, 5, 37))),
    Case("logsoftmax", ("softmax.cu.j2",), softmax(-1, "LogSoftmax"), _normal(x=(3, 5, 300))),
    Case("layernorm", ("layernorm.cu.j2",), layernorm(), _normal(x=(2, 7, 389)), atol=1e-4),
    # rows kept in registers in 16-byte chunks (1024), and too long for them (9000: read thrice)
    Case("layernorm_wide", ("layernorm.cu.j2",), layernorm(1024), _normal(x=(2, 7, 1024)),
         atol=1e-4),
    Case("layernorm_long", ("layernorm.cu.j2",), layernorm(9000), _normal(x=(2, 7, 9000)),
         atol=1e-4),
    Case("softmax_wide", ("softmax.cu.j2",), softmax(-1, shape=(2, 3, 1024)), _normal(x=(2, 3, 1024))),
    Case("logsoftmax_wide", ("softmax.cu.j2",), softmax(-1, "LogSoftmax", (2, 3, 1024)),
         _normal(x=(2, 3, 1024))),
    Case("softmax_long", ("softmax.cu.j2",), softmax(-1, shape=(2, 1, 9000)), _normal(x=(2, 1, 9000))),
    *[Case(f"reduce_{op[6:].lower()}", ("reduce.cu.j2",), reduce(op), positive_feeds)
      for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                 "ReduceL2", "ReduceSumSquare", "ReduceLogSum")],
    Case("gather", ("gather.cu.j2",), gather, gather_feeds),
    Case("concat", ("concat.cu.j2",), concat, _normal(a=(3, 5, 7), b=(3, 2, 7))),
    Case("copy", ("copy.cu.j2",), copy, _normal(x=(4, 6))),
    # one group: the float32 implicit GEMM; groups of several channels: the direct conv
    *[Case(name, ("conv_direct.cu.j2" if "grouped" in name else "conv_tiled.cu.j2",), make,
           _conv_feeds(make), atol=1e-4) for name, make in CONVS.items()],
    *[Case(f"attention_{name}", ("attention.cu.j2",), make, attention_feeds(make))
      for name, make in (("minilm_tail", attention(2, 3, 33, 32, 33, 32)),
                         ("wide_heads", attention(1, 2, 7, 128, 70, 96)))],
    Case("maxpool2d", ("pool.cu.j2",), pool("MaxPool", 2), _normal(x=(2, 3, 11, 12))),
    Case("maxpool1d", ("pool.cu.j2",), pool("MaxPool", 1), _normal(x=(2, 3, 13))),
    Case("avgpool2d", ("pool.cu.j2",), pool("AveragePool", 2), _normal(x=(2, 3, 11, 12))),
    Case("avgpool3d_pads_counted", ("pool.cu.j2",), pool("AveragePool", 3, count_include_pad=1),
         _normal(x=(2, 3, 5, 6, 7))),
]
