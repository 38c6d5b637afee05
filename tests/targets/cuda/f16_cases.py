"""Models whose own tensors are float16 (inputs, weights, outputs: an ONNX model exported in
fp16) for the CUDA target, shared by the emulated tests (test_cuda_f16.py) and the GPU tests
(test_cuda_gpu.py): one-node Casts both ways (float32, int32, float64, bool; with NaN,
infinities, values past 65504, float16 subnormals and halfway cases that round to even),
the data-movement kernels on float16 (copies, Transpose, Slice, Concat, Gather, Pad, the
generic kernel's GatherElements / ScatterND), elementwise programs in float16, and a small fp16
MLP and conv net (MatMul / Conv computed in float32 between casts by canonicalize; at
--precision fp16 on tensor cores); and the reference MLP, CNN and transformer exported in
float16 (to_float16).

References: onnxruntime on the same fresh random inputs. Tolerances: Casts and data movement
exactly (bit for bit, NaN where onnxruntime has NaN); elementwise programs 1 float16 ulp
(rtol 2e-3: onnxruntime computes in float and rounds as we do, its exp / tanh / erf may differ
by an ulp of float32, which can move the float16 rounding by one); the MLP and conv net rtol
2e-2, atol 2e-2 (onnxruntime's float16 MatMul / Conv accumulate in another order, each layer's
result rounded to float16 on both sides); the reference models exported in float16 within
REFERENCE_RTOL of max |output| (measured on the CPU emulation: MLP 6e-4, CNN 1.1e-3,
transformer 1.4e-3, at fp32 and fp16 alike)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from generic_cases import graph_model, one_node
from onnx import TensorProto, helper, numpy_helper

Feeds = dict[str, np.ndarray]
F16, F32, F64, I32, I64, BOOL = (TensorProto.FLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE,
                                 TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL)


REFERENCE_RTOL = 1e-2


@dataclass(frozen=True)
class F16Case:
    name: str
    op: str  # the node under test
    kernel: str  # the CUDA kernel its node must get
    make: Callable[[np.random.Generator], onnx.ModelProto]
    feeds: Callable[[np.random.Generator], Feeds]
    rtol: float = 0.0  # 0: bit for bit
    atol: float = 0.0


def half(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float16)


def special_floats(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """float32 values that test a cast to float16: random normals over the whole float16 range
    and below it, with NaN, +-inf, values past 65504 (65519.99 rounds down, 65520 to inf),
    float16 subnormals, values below half the smallest subnormal (to zero) and exact halfway
    cases between float16 neighbours (to the even one) in random places."""
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-26, 17, shape))).astype(np.float32)
    flat = x.reshape(-1)
    specials = np.array([np.nan, np.inf, -np.inf, 65504.0, 65519.99, 65520.0, -7e4, 1e-8,
                         -3e-8, 2.0**-24, 2.0**-25, 3 * 2.0**-25, 1 + 2.0**-11, 1 + 3 * 2.0**-11,
                         -(2048 + 1.0), 2048 + 3.0, 6e-5, 0.0, -0.0], np.float32)
    where = rng.choice(flat.size, min(flat.size, specials.size), replace=False)
    flat[where] = specials[:where.size]
    return x


def special_halves(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """float16 values: every exponent (subnormals included), NaN and +-inf in random places."""
    sign = rng.integers(0, 2, shape, dtype=np.uint16) << 15
    bits = rng.integers(0, 0x7C00, shape, dtype=np.uint16) | sign
    x = bits.view(np.float16).copy()
    flat = x.reshape(-1)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float16)
    where = rng.choice(flat.size, min(flat.size, specials.size), replace=False)
    flat[where] = specials[:where.size]
    return x


Maker = Callable[[np.random.Generator], onnx.ModelProto]
Feeder = Callable[[np.random.Generator], Feeds]


def _cast(source: int, to: int, shape: tuple[int, ...],
          feeds: Callable[[np.random.Generator], np.ndarray]) -> tuple[Maker, Feeder]:
    return (lambda rng: one_node("Cast", [("x", shape, source)], ["y"], to=to),
            lambda rng: {"x": feeds(rng)})


def _ints(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(-70000, 70000, (5, 37), dtype=np.int32)


def _small_halves(rng: np.random.Generator) -> np.ndarray:
    """float16 values inside int32's range (a cast of NaN or inf to an integer is undefined)."""
    return (rng.standard_normal((5, 37)) * np.exp2(rng.integers(-3, 12, (5, 37)))).astype(np.float16)


def _bools(rng: np.random.Generator) -> np.ndarray:
    x = half(rng, 5, 37)
    x.reshape(-1)[rng.choice(x.size, 9, replace=False)] = 0
    return x


def _model(nodes: list[onnx.NodeProto], inputs: list[tuple[str, tuple[int, ...], int]],
           outputs: list[str], inits: list[onnx.TensorProto], opset: int = 18) -> onnx.ModelProto:
    return graph_model(nodes, inputs, outputs, inits, opset, name="f16")


def mlp(rng: np.random.Generator, batch: int = 16, sizes: tuple[int, ...] = (48, 64, 40, 10)
        ) -> onnx.ModelProto:
    """An fp16 MLP: MatMul + Add + Relu layers, float16 weights (scaled 1 / sqrt(fan-in)),
    the last layer through Gemm, a Softmax at the end, all in float16."""
    nodes, inits, x = [], [], "x"
    for layer, (k, n) in enumerate(zip(sizes, sizes[1:])):
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float16)
        b = (rng.standard_normal(n) * 0.1).astype(np.float16)
        inits += [numpy_helper.from_array(w, f"w{layer}"), numpy_helper.from_array(b, f"b{layer}")]
        last = layer == len(sizes) - 2
        if last:
            nodes.append(helper.make_node("Gemm", [x, f"w{layer}", f"b{layer}"], [f"z{layer}"]))
            nodes.append(helper.make_node("Softmax", [f"z{layer}"], ["y"], axis=-1))
        else:
            nodes += [helper.make_node("MatMul", [x, f"w{layer}"], [f"m{layer}"]),
                      helper.make_node("Add", [f"m{layer}", f"b{layer}"], [f"a{layer}"]),
                      helper.make_node("Relu", [f"a{layer}"], [f"h{layer}"])]
            x = f"h{layer}"
    return _model(nodes, [("x", (batch, sizes[0]), F16)], ["y"], inits)


def conv_net(rng: np.random.Generator, shape: tuple[int, ...] = (2, 3, 16, 16)) -> onnx.ModelProto:
    """An fp16 conv net: Conv (bias) + Relu, a strided Conv + Sigmoid-gated Mul, MaxPool, a
    depthwise Conv, GlobalAveragePool, Flatten, Gemm; float16 weights and activations."""
    def w(name: str, *dims: int) -> onnx.TensorProto:
        fan_in = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        scale = 1 / np.sqrt(fan_in) if len(dims) > 1 else 0.1
        return numpy_helper.from_array((rng.standard_normal(dims) * scale).astype(np.float16), name)
    inits = [w("w1", 16, 3, 3, 3), w("b1", 16), w("w2", 24, 16, 3, 3), w("b2", 24),
             w("w3", 24, 1, 3, 3), w("fc", 24, 10), w("fcb", 10)]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Sigmoid", ["c2"], ["s2"]),
             helper.make_node("Mul", ["c2", "s2"], ["g2"]),
             helper.make_node("MaxPool", ["g2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p2", "w3"], ["c3"], pads=[1, 1, 1, 1], group=24),
             helper.make_node("GlobalAveragePool", ["c3"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc", "fcb"], ["y"])]
    return _model(nodes, [("x", shape, F16)], ["y"], inits)


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` exported in float16 (as onnxconverter-common's float16 conversion does, without
    its block list): float32 inputs, outputs, initializers and Constant tensors become float16,
    Casts to float32 cast to float16; shapes inferred again."""
    half_model = onnx.ModelProto()
    half_model.CopyFrom(model)
    graph = half_model.graph
    for value in (*graph.input, *graph.output):
        if value.type.tensor_type.elem_type == F32:
            value.type.tensor_type.elem_type = F16
    del graph.value_info[:]
    for k, tensor in enumerate(graph.initializer):
        if tensor.data_type == F32:
            array = numpy_helper.to_array(tensor).astype(np.float16)
            graph.initializer[k].CopyFrom(numpy_helper.from_array(array, tensor.name))
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == F32:
                attr.i = F16
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == F32:
                array = numpy_helper.to_array(attr.t).astype(np.float16)
                attr.t.CopyFrom(numpy_helper.from_array(array, attr.t.name))
    return onnx.shape_inference.infer_shapes(half_model, strict_mode=True)


def _elementwise(rng: np.random.Generator) -> onnx.ModelProto:
    """A fused float16 program: (|x * y| + 1.5) -> Tanh, Clip, Max with x, Where(x > y), Sqrt of
    |.|, times a broadcast float16 constant, Erf; each result float16 in the model (we round
    each; onnxruntime runs such chains in float32 between the casts it inserts, so no step may
    cancel: x * y + 1.5 near 0 differed by whole values)."""
    c = numpy_helper.from_array(half(rng, 37), "c")
    one = numpy_helper.from_array(np.array(1.5, np.float16), "one")
    nodes = [helper.make_node("Mul", ["x", "y"], ["m"]),
             helper.make_node("Abs", ["m"], ["am"]),
             helper.make_node("Add", ["am", "one"], ["a"]),
             helper.make_node("Tanh", ["a"], ["t"]),
             helper.make_node("Clip", ["a"], ["cl"]),
             helper.make_node("Max", ["cl", "x"], ["mx"]),
             helper.make_node("Greater", ["x", "y"], ["gt"]),
             helper.make_node("Where", ["gt", "t", "mx"], ["w"]),
             helper.make_node("Abs", ["w"], ["ab"]),
             helper.make_node("Sqrt", ["ab"], ["sq"]),
             helper.make_node("Mul", ["sq", "c"], ["d"]),
             helper.make_node("Erf", ["d"], ["z"])]
    return _model(nodes, [("x", (5, 37), F16), ("y", (5, 37), F16)], ["z", "gt"], [c, one])


def _cast_chain(rng: np.random.Generator) -> onnx.ModelProto:
    """float32 in, float16 between (Casts around a float16 Relu and Add), float32 and float16 out:
    an exporter's casts around mixed-precision ops."""
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=F16),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Add", ["r", "h"], ["s"]),
             helper.make_node("Cast", ["s"], ["y"], to=F32)]
    return _model(nodes, [("x", (4, 33), F32)], ["y", "s"], [])


def _inner_cast(rng: np.random.Generator) -> onnx.ModelProto:
    """float32 in and out, float16 only inside one fused program (Cast, Relu, Cast back): the
    program rounds to float16 with no 16-bit operand in the kernel."""
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=F16),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Cast", ["r"], ["y"], to=F32)]
    return _model(nodes, [("x", (4, 33), F32)], ["y"], [])


def _gather_elements(rng: np.random.Generator) -> onnx.ModelProto:
    return one_node("GatherElements", [("x", (4, 9), F16), ("i", (4, 5), I64)], ["y"], axis=1)


def _scatter_nd(rng: np.random.Generator) -> onnx.ModelProto:
    return one_node("ScatterND", [("x", (6, 7), F16), ("i", (3, 1), I64), ("u", (3, 7), F16)], ["y"])


CASES: list[F16Case] = [
    F16Case("cast_f32_to_f16", "Cast", "cuda_elementwise",
            *_cast(F32, F16, (6, 41), lambda rng: special_floats(rng, 6, 41))),
    F16Case("cast_f16_to_f32", "Cast", "cuda_elementwise",
            *_cast(F16, F32, (6, 41), lambda rng: special_halves(rng, 6, 41))),
    F16Case("cast_f64_to_f16", "Cast", "cuda_elementwise",
            *_cast(F64, F16, (6, 41), lambda rng: special_floats(rng, 6, 41).astype(np.float64))),
    F16Case("cast_f16_to_f64", "Cast", "cuda_elementwise",
            *_cast(F16, F64, (6, 41), lambda rng: special_halves(rng, 6, 41))),
    F16Case("cast_i32_to_f16", "Cast", "cuda_elementwise", *_cast(I32, F16, (5, 37), _ints)),
    F16Case("cast_f16_to_i32", "Cast", "cuda_elementwise", *_cast(F16, I32, (5, 37), _small_halves)),
    F16Case("cast_f16_to_bool", "Cast", "cuda_elementwise", *_cast(F16, BOOL, (5, 37), _bools)),
    F16Case("cast_chain", "Cast", "cuda_elementwise", _cast_chain,
            lambda rng: {"x": special_floats(rng, 4, 33)}),
    F16Case("inner_cast", "Cast", "cuda_elementwise", _inner_cast,
            lambda rng: {"x": special_floats(rng, 4, 33)}),
    F16Case("transpose", "Transpose", "cuda_strided_copy",
            lambda rng: one_node("Transpose", [("x", (3, 5, 7), F16)], ["y"], perm=[2, 0, 1]),
            lambda rng: {"x": special_halves(rng, 3, 5, 7)}),
    F16Case("slice", "Slice", "cuda_strided_copy",
            lambda rng: one_node("Slice", [("x", (6, 9), F16)], ["y"],
                                 [numpy_helper.from_array(np.array([1, 7], np.int64), "s"),
                                  numpy_helper.from_array(np.array([5, 1], np.int64), "e"),
                                  numpy_helper.from_array(np.array([0, 1], np.int64), "a"),
                                  numpy_helper.from_array(np.array([1, -2], np.int64), "st")]),
            lambda rng: {"x": half(rng, 6, 9)}),
    F16Case("concat", "Concat", "cuda_concat",
            lambda rng: one_node("Concat", [("x", (3, 4), F16), ("z", (3, 5), F16)], ["y"],
                                 [numpy_helper.from_array(half(rng, 3, 2), "k")], axis=1),
            lambda rng: {"x": special_halves(rng, 3, 4), "z": half(rng, 3, 5)}),
    F16Case("gather", "Gather", "cuda_gather",
            lambda rng: one_node("Gather", [("x", (11, 6), F16), ("i", (2, 7), I64)], ["y"], axis=0),
            lambda rng: {"x": half(rng, 11, 6), "i": rng.integers(-11, 11, (2, 7), dtype=np.int64)}),
    F16Case("gather_weights", "Gather", "cuda_gather",
            lambda rng: _model([helper.make_node("Gather", ["table", "i"], ["y"], axis=0)],
                               [("i", (3, 4), I64)], ["y"],
                               [numpy_helper.from_array(half(rng, 20, 8), "table")]),
            lambda rng: {"i": rng.integers(0, 20, (3, 4), dtype=np.int64)}),
    F16Case("pad_constant", "Pad", "cuda_pad",
            lambda rng: one_node("Pad", [("x", (3, 5), F16)], ["y"],
                                 [numpy_helper.from_array(np.array([1, 0, 2, 3], np.int64), "p"),
                                  numpy_helper.from_array(np.array(-2.5, np.float16), "v")]),
            lambda rng: {"x": half(rng, 3, 5)}),
    F16Case("pad_reflect", "Pad", "cuda_pad",
            lambda rng: one_node("Pad", [("x", (3, 5), F16)], ["y"],
                                 [numpy_helper.from_array(np.array([1, 2, 2, 1], np.int64), "p")],
                                 mode="reflect"),
            lambda rng: {"x": half(rng, 3, 5)}),
    F16Case("identity_output", "pyc.Copy", "cuda_copy",
            lambda rng: one_node("Identity", [("x", (4, 7), F16)], ["y"]),
            lambda rng: {"x": special_halves(rng, 4, 7)}),
    F16Case("gather_elements", "GatherElements", "cuda_generic", _gather_elements,
            lambda rng: {"x": half(rng, 4, 9), "i": rng.integers(-9, 9, (4, 5), dtype=np.int64)}),
    F16Case("scatter_nd", "ScatterND", "cuda_generic", _scatter_nd,
            lambda rng: {"x": half(rng, 6, 7), "u": half(rng, 3, 7),
                         "i": rng.permutation(6)[:3].reshape(3, 1).astype(np.int64)}),
    F16Case("elementwise", "pyc.Elementwise", "cuda_elementwise", _elementwise,
            lambda rng: {"x": half(rng, 5, 37), "y": half(rng, 5, 37)}, rtol=4e-3, atol=1e-3),
    F16Case("mlp", "MatMul", "cuda_matmul_tiled", mlp, lambda rng: {"x": half(rng, 16, 48)},
            rtol=2e-2, atol=2e-2),
    F16Case("conv_net", "Conv", "cuda_conv_tiled", conv_net,
            lambda rng: {"x": half(rng, 2, 3, 16, 16)}, rtol=2e-2, atol=2e-2),
]
