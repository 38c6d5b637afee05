"""Models whose own tensors are bfloat16 (issue #14), shared by the CPU tests
(tests/targets/cpu/test_bf16_models.py), the emulated CUDA tests
(tests/targets/cuda/test_cuda_bf16.py) and the GPU test (test_cuda_gpu.py).

numpy has no bfloat16: arrays are `ml_dtypes.bfloat16`, and onnxruntime's Python API returns
none, so `onnxruntime_bf16` runs a model through IO binding and reads a bfloat16 output's bits.

References and tolerances:
- onnxruntime, where its CPU provider has a bfloat16 kernel (1.32: Cast, the element-moving ops
  Transpose / Slice / Concat / Split / Reshape / Gather / GatherElements / ScatterND / Pad,
  IsNaN / IsInf / Sign, LayerNormalization; not Add, Mul, Relu, MatMul, Softmax, Where, Expand,
  Trilu, ...): Casts and data movement bit for bit (NaN bits too on the CPU; on CUDA NaN
  where onnxruntime has NaN: the GPU's cvt.rn.bf16 makes its own quiet NaN);
  LayerNormalization within 1 bfloat16 ulp
  (rtol 2^-7) and atol 2^-8 (onnxruntime rounds its float result once, as we do);
- numpy float64 otherwise, each op's result rounded to bfloat16 as the model stores it
  (`rounded`): elementwise programs within 1 bfloat16 ulp (rtol 2^-7: float32 exp / tanh may
  move the rounding by one), the MLP within 2^-6 of max |output| (float32 sums in another
  order may move a rounding, which later layers carry);
- the reference models converted to bfloat16 (`to_bfloat16`, fresh weights) against the float32
  model within BF16_MODEL_RTOL of max |output| (bfloat16 keeps 8 bits: each stored value is
  off by up to 2^-9 relative, and every layer rounds again).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

BF = ml_dtypes.bfloat16
Feeds = dict[str, np.ndarray]
Maker = Callable[[np.random.Generator], onnx.ModelProto]
BF16, F32, F64, F16, I32, I64, BOOL = (TensorProto.BFLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE,
                                       TensorProto.FLOAT16, TensorProto.INT32, TensorProto.INT64,
                                       TensorProto.BOOL)
ULP_RTOL = 2.0**-7  # one bfloat16 ulp, relative (8 significant bits)
BF16_MODEL_RTOL = 5e-2


def bf(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(BF)


def rounded(x: np.ndarray) -> np.ndarray:
    """float64 values rounded to bfloat16 (through float32, as a Cast stores them), as float64."""
    return np.asarray(x, np.float64).astype(np.float32).astype(BF).astype(np.float64)


def special_floats(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """float32 values that test a cast to bfloat16: random normals over float32's whole range
    (subnormals too), with NaNs of other payloads and signs, +-inf, the largest finite values
    (3.3961e38 rounds to inf, 3.3895e38 is bfloat16's largest), float32 subnormals, ties between
    bfloat16 neighbours (to the even one) and values just past them, in random places."""
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-140, 127, shape))).astype(np.float32)
    flat = x.reshape(-1)
    bits = np.array([0x7F800001, 0xFF800001, 0x7FC12345, 0xFFFFFFFF, 0x7F7FFFFF, 0x7F7F7FFF,
                     0x7F7F8000, 0x00000001, 0x80008000, 0x00018000, 0x00028000, 0x3F808000,
                     0x3F818000, 0x3F808001, 0xBF80FFFF, 0x007FFFFF], np.uint32).view(np.float32)
    specials = np.concatenate([bits, np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0], np.float32)])
    where = rng.choice(flat.size, min(flat.size, specials.size), replace=False)
    flat[where] = specials[:where.size]
    return x


def special_bf16(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """bfloat16 values of random bits: every exponent, subnormals, NaNs with payloads, +-inf."""
    return rng.integers(0, 1 << 16, shape, dtype=np.uint32).astype(np.uint16).view(BF)


def graph(nodes: list[onnx.NodeProto], inputs: list[tuple[str, tuple[int, ...], int]],
          outputs: list[str], inits: list[onnx.TensorProto] | None = None,
          opset: int = 21) -> onnx.ModelProto:
    """A checked model (opset 21: onnxruntime's bfloat16 Pad kernel is Pad-21's); the outputs'
    types come from ONNX shape inference."""
    g = helper.make_graph(nodes, "bf16", [helper.make_tensor_value_info(n, t, list(s)) for n, s, t in inputs],
                          [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
                          initializer=inits or [])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="pyc-tests")
    model.ir_version = 10
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    onnx.checker.check_model(model)
    return model


def onnxruntime_bf16(model: Path | onnx.ModelProto, feeds: Feeds) -> Feeds:
    """onnxruntime's CPU provider on bfloat16 inputs and outputs (IO binding: its Python API
    neither takes nor returns bfloat16 numpy arrays)."""
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    binding = session.io_binding()
    for spec in session.get_inputs():
        value = np.ascontiguousarray(feeds[spec.name])
        if value.dtype == BF:
            binding.bind_ortvalue_input(spec.name, ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                value.view(np.uint16), BF16))
        else:
            binding.bind_cpu_input(spec.name, value)
    for spec in session.get_outputs():
        binding.bind_output(spec.name, "cpu")
    session.run_with_iobinding(binding)
    results: Feeds = {}
    for spec, value in zip(session.get_outputs(), binding.get_outputs()):
        if spec.type == "tensor(bfloat16)":
            shape = tuple(value.shape())
            count = int(np.prod(shape, dtype=np.int64))
            raw = (ctypes.c_uint16 * max(1, count)).from_address(value.data_ptr())
            results[spec.name] = np.frombuffer(raw, np.uint16, count).copy().reshape(shape).view(BF)
        else:
            results[spec.name] = value.numpy()
    return results


@dataclass(frozen=True)
class Bf16Case:
    name: str
    op: str  # the node under test (its kernel on CUDA: `kernel`)
    kernel: str
    make: Callable[[np.random.Generator], onnx.ModelProto]
    feeds: Callable[[np.random.Generator], Feeds]
    # None: onnxruntime is the reference; else numpy float64, each op rounded (`rounded`)
    reference: Callable[[Feeds], Feeds] | None = None
    rtol: float = 0.0  # 0: bit for bit
    atol: float = 0.0


def one_node(op: str, inputs: list[tuple[str, tuple[int, ...], int]], out: str = "y",
             inits: list[onnx.TensorProto] | None = None, **attrs: object) -> Maker:
    names = [n for n, _, _ in inputs] + [t.name for t in inits or []]
    return lambda rng: graph([helper.make_node(op, names, [out], **attrs)], inputs, [out], inits)


def _cast(src: int, dst: int, shape: tuple[int, ...] = (5, 67)) -> Maker:
    return one_node("Cast", [("x", shape, src)], to=dst)


def _doubles(rng: np.random.Generator) -> Feeds:
    """float64 values whose rounding to float32 first decides the bfloat16 (onnxruntime casts
    through float32: 1 + 2^-8 + 2^-40 becomes the tie 1 + 2^-8, then 1), and past float32."""
    x = (rng.standard_normal((5, 67)) * np.exp2(rng.integers(-30, 30, (5, 67)))).astype(np.float64)
    specials = np.array([1 + 2.0**-8 + 2.0**-40, 1 + 2.0**-8 - 2.0**-40, -(1 + 3 * 2.0**-8 + 2.0**-33),
                         3.5e38, -1e300, 1e-300, np.nan, np.inf], np.float64)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, specials.size, replace=False)] = specials
    return {"x": x}


def _ints(rng: np.random.Generator) -> Feeds:
    """int32 values whose float32 rounding decides the bfloat16 (2^24 + 2^16 + 1: float32 makes
    the tie 2^24 + 2^16, bfloat16 then 2^24), over the whole int32 range."""
    x = (rng.integers(-(2**31), 2**31 - 1, (5, 67)) >> rng.integers(0, 31, (5, 67))).astype(np.int32)
    x.reshape(-1)[:4] = [2**24 + 2**16 + 1, -(2**24 + 3 * 2**16 + 1), 2**31 - 1, -(2**31)]
    return {"x": x}


def _in_int_range(rng: np.random.Generator) -> Feeds:
    """bfloat16 values an int32 holds (the GPU saturates where x86 gives INT_MIN past them)."""
    return {"x": (rng.standard_normal((5, 67)) * np.exp2(rng.integers(0, 30, (5, 67)))).astype(
        np.float32).astype(BF)}


def _movement(rng: np.random.Generator) -> onnx.ModelProto:
    """Transpose, Slice (a step of 2), Concat with a second input, Reshape and Split: bfloat16
    copied as it is."""
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("starts", [1, 0]), ("ends", [7, 9]), ("axes", [0, 2]), ("steps", [2, 3]), ("shape", [-1, 6]))]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[2, 0, 1]),
             helper.make_node("Slice", ["t", "starts", "ends", "axes", "steps"], ["s"]),
             helper.make_node("Concat", ["s", "z"], ["c"], axis=1),
             helper.make_node("Reshape", ["c", "shape"], ["r"]),
             helper.make_node("Split", ["r"], ["p", "q"], axis=1, num_outputs=2)]
    return graph(nodes, [("x", (6, 5, 8), BF16), ("z", (3, 2, 2), BF16)], ["t", "p", "q"], inits)


def _gather_pad(rng: np.random.Generator) -> onnx.ModelProto:
    """Gather from an input and from a bfloat16 table (a constant), GatherElements, ScatterND,
    Pad with a bfloat16 constant (1.5) and reflect."""
    table = numpy_helper.from_array(bf(rng, 11, 7), "table")
    value = numpy_helper.from_array(np.array(1.5, np.float32).astype(BF), "value")
    pads = numpy_helper.from_array(np.array([1, 0, 2, 3], np.int64), "pads")
    where = numpy_helper.from_array(np.array([[2], [0]], np.int64), "where")
    nodes = [helper.make_node("Gather", ["table", "ids"], ["g"], axis=0),
             helper.make_node("Gather", ["x", "ids"], ["gx"], axis=1),
             helper.make_node("GatherElements", ["x", "pos"], ["ge"], axis=0),
             helper.make_node("ScatterND", ["x", "where", "upd"], ["sc"]),
             helper.make_node("Pad", ["x", "pads", "value"], ["pc"], mode="constant"),
             helper.make_node("Pad", ["x", "pads"], ["pr"], mode="reflect")]
    return graph(nodes, [("x", (4, 7), BF16), ("ids", (3, 2), I64), ("pos", (4, 7), I64),
                         ("upd", (2, 7), BF16)],
                 ["g", "gx", "ge", "sc", "pc", "pr"], [table, value, pads, where])


def _gather_feeds(rng: np.random.Generator) -> Feeds:
    return {"x": special_bf16(rng, 4, 7), "ids": rng.integers(0, 4, (3, 2)).astype(np.int64),
            "pos": rng.integers(0, 4, (4, 7)).astype(np.int64), "upd": bf(rng, 2, 7)}


def _trilu_expand(rng: np.random.Generator) -> onnx.ModelProto:
    """Trilu (Where with a bfloat16 zero), Expand and Tile: no onnxruntime bfloat16 kernel."""
    shape = numpy_helper.from_array(np.array([3, 5, 6], np.int64), "shape")
    reps = numpy_helper.from_array(np.array([2, 3], np.int64), "reps")
    nodes = [helper.make_node("Trilu", ["x"], ["lower"], upper=0),
             helper.make_node("Expand", ["row", "shape"], ["e"]),
             helper.make_node("Tile", ["x", "reps"], ["tl"])]
    return graph(nodes, [("x", (5, 6), BF16), ("row", (1, 6), BF16)], ["lower", "e", "tl"], [shape, reps])


def _trilu_reference(feeds: Feeds) -> Feeds:
    x = feeds["x"]
    return {"lower": np.tril(x.astype(np.float32)).astype(BF),
            "e": np.broadcast_to(feeds["row"], (3, 5, 6)).copy(),
            "tl": np.tile(x, (2, 3))}


def _elementwise(rng: np.random.Generator) -> onnx.ModelProto:
    """A fused chain: Mul, Add of a bfloat16 constant, Relu, Tanh, Sigmoid, Div, Sqrt of |.|,
    Max, Where(x > y), Exp; each result bfloat16 in the model (rounded by each op)."""
    c = numpy_helper.from_array(bf(rng, 37), "c")
    nodes = [helper.make_node("Mul", ["x", "y"], ["m"]),
             helper.make_node("Add", ["m", "c"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Tanh", ["a"], ["t"]),
             helper.make_node("Sigmoid", ["x"], ["s"]),
             helper.make_node("Div", ["t", "s"], ["d"]),
             helper.make_node("Abs", ["d"], ["ab"]),
             helper.make_node("Sqrt", ["ab"], ["q"]),
             helper.make_node("Max", ["q", "r"], ["mx"]),
             helper.make_node("Greater", ["x", "y"], ["gt"]),
             helper.make_node("Where", ["gt", "mx", "y"], ["w"]),
             helper.make_node("Exp", ["w"], ["out"])]
    return graph(nodes, [("x", (6, 37), BF16), ("y", (6, 37), BF16)], ["out"], [c])


def _elementwise_reference(model: onnx.ModelProto) -> Callable[[Feeds], Feeds]:
    c = numpy_helper.to_array(model.graph.initializer[0]).astype(np.float64)

    def run(feeds: Feeds) -> Feeds:
        x, y = feeds["x"].astype(np.float64), feeds["y"].astype(np.float64)
        a = rounded(rounded(x * y) + c)
        r, t, s = np.maximum(a, 0), rounded(np.tanh(a)), rounded(1 / (1 + np.exp(-x)))
        q = rounded(np.sqrt(np.abs(rounded(t / s))))
        w = np.where(x > y, np.maximum(q, r), y)
        return {"out": rounded(np.exp(w)).astype(BF)}
    return run


def _predicates(rng: np.random.Generator) -> onnx.ModelProto:
    """IsNaN, IsInf (positive only) and Sign: onnxruntime has their bfloat16 kernels (float32
    between casts here: exact). Sign reads no NaN: of NaN it is NaN here, as onnxruntime's
    float32 kernel and ONNX's reference say, where its float16 / bfloat16 kernels give 0; of -0
    onnxruntime's gives +0, so Sign is compared by value."""
    nodes = [helper.make_node("IsNaN", ["x"], ["nan"]),
             helper.make_node("IsInf", ["x"], ["inf"], detect_negative=0),
             helper.make_node("Sign", ["s"], ["sign"])]
    return graph(nodes, [("x", (5, 67), BF16), ("s", (5, 67), BF16)], ["nan", "inf", "sign"])


def _predicate_feeds(rng: np.random.Generator) -> Feeds:
    s = special_bf16(rng, 5, 67)
    s[np.isnan(s.astype(np.float32))] = 0
    return {"x": special_bf16(rng, 5, 67), "s": s}


def _layernorm(rng: np.random.Generator) -> onnx.ModelProto:
    scale = numpy_helper.from_array(bf(rng, 48), "scale")
    bias = numpy_helper.from_array(bf(rng, 48), "bias")
    return graph([helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=-1)],
                 [("x", (5, 48), BF16)], ["y"], [scale, bias])


def mlp(rng: np.random.Generator) -> onnx.ModelProto:
    """A bfloat16 MLP: MatMul + Add + Relu, Gemm, Softmax (the MatMuls, Gemm and Softmax run in
    float32 between the casts canonicalize inserts)."""
    w1 = numpy_helper.from_array(bf(rng, 48, 32, scale=0.2), "w1")
    w2 = numpy_helper.from_array(bf(rng, 10, 32, scale=0.2), "w2")
    b1, b2 = numpy_helper.from_array(bf(rng, 32), "b1"), numpy_helper.from_array(bf(rng, 10), "b2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["y"], axis=-1)]
    return graph(nodes, [("x", (16, 48), BF16)], ["y", "logits"], [w1, b1, w2, b2])


def mlp_reference(model: onnx.ModelProto) -> Callable[[Feeds], Feeds]:
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}

    def run(feeds: Feeds) -> Feeds:
        x = feeds["x"].astype(np.float64)
        r = np.maximum(rounded(rounded(x @ w["w1"]) + w["b1"]), 0)
        logits = rounded(r @ w["w2"].T + w["b2"])
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return {"y": rounded(e / e.sum(-1, keepdims=True)).astype(BF), "logits": logits.astype(BF)}
    return run


def _with_reference(make: Callable[[np.random.Generator], onnx.ModelProto],
                    reference: Callable[[onnx.ModelProto], Callable[[Feeds], Feeds]]
                    ) -> tuple[Callable[[np.random.Generator], onnx.ModelProto], Callable[[Feeds], Feeds]]:
    """A maker whose model the reference reads (its weights): one model per case, made once."""
    made: dict[str, onnx.ModelProto] = {}

    def maker(rng: np.random.Generator) -> onnx.ModelProto:
        made["model"] = make(rng)
        return made["model"]
    return maker, lambda feeds: reference(made["model"])(feeds)


_ew_make, _ew_ref = _with_reference(_elementwise, _elementwise_reference)
_mlp_make, _mlp_ref = _with_reference(mlp, mlp_reference)

CASES = [
    Bf16Case("cast_f32_to_bf16", "Cast", "cuda_elementwise", _cast(F32, BF16),
             lambda rng: {"x": special_floats(rng, 5, 67)}),
    Bf16Case("cast_bf16_to_f32", "Cast", "cuda_elementwise", _cast(BF16, F32),
             lambda rng: {"x": special_bf16(rng, 5, 67)}),
    Bf16Case("cast_f64_to_bf16", "Cast", "cuda_elementwise", _cast(F64, BF16), _doubles),
    Bf16Case("cast_i32_to_bf16", "Cast", "cuda_elementwise", _cast(I32, BF16), _ints),
    Bf16Case("cast_bf16_to_i32", "Cast", "cuda_elementwise", _cast(BF16, I32), _in_int_range),
    Bf16Case("cast_f16_to_bf16", "Cast", "cuda_elementwise", _cast(F16, BF16),
             lambda rng: {"x": rng.integers(0, 1 << 16, (5, 67)).astype(np.uint16).view(np.float16)}),
    Bf16Case("cast_bf16_to_f16", "Cast", "cuda_elementwise", _cast(BF16, F16),
             lambda rng: {"x": special_bf16(rng, 5, 67)}),
    Bf16Case("cast_bf16_to_bool", "Cast", "cuda_elementwise", _cast(BF16, BOOL),
             lambda rng: {"x": np.where(rng.random((5, 67)) < 0.3, 0, special_bf16(rng, 5, 67)).astype(BF)}),
    Bf16Case("movement", "Transpose", "cuda_strided_copy", _movement,
             lambda rng: {"x": special_bf16(rng, 6, 5, 8), "z": special_bf16(rng, 3, 2, 2)}),
    Bf16Case("gather_pad_scatter", "Pad", "cuda_pad", _gather_pad, _gather_feeds),
    Bf16Case("trilu_expand_tile", "Trilu", "cuda_elementwise", _trilu_expand,
             lambda rng: {"x": bf(rng, 5, 6), "row": bf(rng, 1, 6)}, _trilu_reference),
    Bf16Case("elementwise", "Exp", "cuda_elementwise", _ew_make,
             lambda rng: {"x": bf(rng, 6, 37), "y": bf(rng, 6, 37)}, _ew_ref, ULP_RTOL, 1e-30),
    Bf16Case("predicates", "Sign", "cuda_elementwise", _predicates, _predicate_feeds, None, 1e-30),
    Bf16Case("layernorm", "LayerNormalization", "cuda_layernorm_block", _layernorm,
             lambda rng: {"x": bf(rng, 5, 48, scale=3.0)}, None, ULP_RTOL, 2.0**-8),
    Bf16Case("mlp", "MatMul", "cuda_matmul_tiled", _mlp_make, lambda rng: {"x": bf(rng, 16, 48)}, _mlp_ref,
             0.0, 2.0**-6),
]


def expected_outputs(case: Bf16Case, path: Path, feeds: Feeds) -> Feeds:
    return case.reference(feeds) if case.reference is not None else onnxruntime_bf16(path, feeds)


def compare(ours: Feeds, expected: Feeds, rtol: float, atol: float, nan_bits: bool = True,
            of_max: bool = False) -> None:
    """Bit for bit where rtol = atol = 0 (NaN bits too where `nan_bits`, else NaN where NaN);
    else within rtol of each value plus atol (times max |expected| where `of_max`)."""
    for name, value in expected.items():
        got = ours[name]
        assert got.dtype == value.dtype and got.shape == value.shape, (name, got.dtype, value.dtype)
        if value.dtype.kind in "iub":
            np.testing.assert_array_equal(got, value, err_msg=name)
            continue
        with np.errstate(invalid="ignore"):
            g, e = got.astype(np.float64), value.astype(np.float64)
        if rtol == 0 and atol == 0:
            # NaN bits of float16 results are the float16 path's (F16C keeps a payload where
            # onnxruntime makes 0x7e00): NaN where NaN there
            if nan_bits and value.dtype != np.float16:
                np.testing.assert_array_equal(got.view(f"u{value.dtype.itemsize}"),
                                              value.view(f"u{value.dtype.itemsize}"), err_msg=name)
            else:
                np.testing.assert_array_equal(g, e, err_msg=name)  # NaN where it is NaN
            continue
        bound = atol * (np.nanmax(np.abs(e)) if of_max else 1.0)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=bound, err_msg=name)


def _converted(model: onnx.ModelProto, src: int, dst: int, dtype: object) -> onnx.ModelProto:
    """`model` with every `src` input, output, initializer and Constant tensor made `dst`
    (numpy `dtype`) and Casts to `src` casting to `dst`; shapes inferred again."""
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    g = converted.graph
    for value in (*g.input, *g.output):
        if value.type.tensor_type.elem_type == src:
            value.type.tensor_type.elem_type = dst
    del g.value_info[:]

    def convert(tensor: onnx.TensorProto) -> onnx.TensorProto:
        return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(dtype), tensor.name)
    for k, tensor in enumerate(g.initializer):
        if tensor.data_type == src:
            g.initializer[k].CopyFrom(convert(tensor))
    for node in g.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == src:
                attr.i = dst
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == src:
                attr.t.CopyFrom(convert(attr.t))
    return onnx.shape_inference.infer_shapes(converted, strict_mode=True)


def to_bfloat16(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` converted to bfloat16: float32 inputs, outputs, initializers and Constant tensors
    become bfloat16, Casts to float32 cast to bfloat16."""
    return _converted(model, F32, BF16, BF)


def float32_twin(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float32 model of a bfloat16 one's own weights (each bfloat16 weight exactly): what its
    outputs are compared with."""
    return _converted(model, BF16, F32, np.float32)
