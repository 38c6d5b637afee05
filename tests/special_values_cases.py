"""The cases of tests/ops/test_special_values.py and how they are assembled into side-by-side
models (shared with tests/targets/cpu/test_toolchain.py, which compiles the same model strictly).

NaN, ±Inf, -0.0, denormals and huge values propagate as onnxruntime propagates them.

Every case is a one-node model (or a short fused chain) fed random normal inputs with NaN, +Inf,
-Inf, -0.0, 1e-40 and 3e38 sprinkled in (and -3e38 for elementwise ops: in a sum, 3e38 beside
-3e38 overflows or cancels depending on the summation order, which no two libraries share).
All cases of a variant are put side by side (each with its own inputs and outputs) into one
model, so each mode costs one build; a second variant holds the data in initializers, so the
numpy references of constant folding are checked too. NaN positions must match onnxruntime
exactly, values within rtol 1e-5 / atol 1e-6.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pyc_cli.ir.types import DType
from pyc_cli.ops import registry
from pyc_cli.ops.binary import Comparison
from pyc_cli.ops.elementwise import ElementwiseOp
from pyc_cli.ops.unary import Unary

RTOL, ATOL = 1e-5, 1e-6
MODES = ("latency_first", "balanced", "memory_first")
SPECIALS = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-40, 3e38], np.float32)
F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def sprinkled(rng: np.random.Generator, shape: tuple[int, ...], density: float = 0.15,
              specials: np.ndarray = SPECIALS) -> np.ndarray:
    """Standard normal float32 values with every special value at least once (where it fits)
    and about `density` of all elements special (a scalar is special or not at random)."""
    x = rng.standard_normal(shape).astype(np.float32)
    if x.size == 1:
        return np.full(shape, rng.choice(np.append(specials, x.flat[0])), np.float32)
    count = min(x.size, max(len(specials), int(round(x.size * density))))
    where = rng.choice(x.size, count, replace=False)
    x.flat[where] = specials[np.arange(count) % len(specials)]
    return x


def dot_operand(rng: np.random.Generator, shape: tuple[int, ...], specials: np.ndarray
                ) -> np.ndarray:
    """Values in [-1, 1] with each special value once (see `Data.dot`)."""
    x = np.clip(rng.standard_normal(shape) * 0.5, -1, 1).astype(np.float32)
    x.flat[rng.choice(x.size, len(specials), replace=False)] = specials
    return x


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class Data:
    """A float input holding special values (a graph input, or an initializer when folded).
    `dot`: an input of a dot product (MatMul, Conv): each special value once, finite values in
    [-1, 1], so no product of 3e38 overflows and no two huge terms meet in one sum, where
    whether inf - inf (NaN) happens would depend on the summation order."""

    shape: tuple[int, ...]
    dot: bool = False
    density: float = 0.15  # the share of special elements
    include: tuple[float, ...] = ()  # more special values (-3e38 for elementwise ops)
    huge: bool = True  # 3e38 among the specials (see test_layernorm_overflowing_rows_are_exact)


@dataclass(frozen=True)
class Weight:
    """A random float initializer (conv weights, scales): normal, or in [-1, 1] for `dot`."""

    shape: tuple[int, ...]
    dot: bool = False


@dataclass(frozen=True)
class Const:
    """A fixed initializer (axes, shapes, indices, bounds)."""

    value: np.ndarray


Arg = Data | Weight | Const | None


@dataclass(frozen=True)
class Step:
    """One node: inputs are Args or the name of an earlier step's output (`@k` is step k's
    first output)."""

    op: str
    args: tuple[Arg | str, ...]
    attrs: dict = field(default_factory=dict)
    outputs: int = 1


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[Step, ...]
    out_types: tuple[int, ...] = (F,)  # the last step's outputs
    foldable: bool = True  # the folded variant holds its Data in initializers
    # onnxruntime's answer for a NaN input depends on where the NaN falls in Eigen's SIMD
    # lanes (ReduceMax/Min, Hardmax). These cases get no NaN here;
    # test_nan_propagates_through_max_reductions checks PyC's rule instead.
    nan_free: bool = False


def one(name: str, op: str, *args: Arg, out_types: tuple[int, ...] = (F,),
        foldable: bool = True, nan_free: bool = False, **attrs: object) -> Case:
    return Case(name, (Step(op, args, attrs, len(out_types)),), out_types, foldable, nan_free)


def _i64(*values: int) -> Const:
    return Const(np.array(values, np.int64))


def _f32(*values: float) -> Const:
    return Const(np.array(values, np.float32))


X = Data((4, 12), include=(-3e38,))
X4 = Data((2, 3, 6, 6))
_BINARY_ATTRS: dict[str, dict[str, object]] = {"Mod": {"fmod": 1}}  # float Mod needs fmod=1
_SKIP_UNARY = {"Cast", "CastLike", "Expand", "Not", "BitwiseNot", "Identity"}


def _float_unary_ops() -> list[str]:
    """Every registered float unary elementwise op (from the op registry)."""
    return [name for name, op in registry.all_ops().items()
            if isinstance(op, Unary) and name not in _SKIP_UNARY
            and DType.F32 in op.dtypes]


def _float_binary_ops() -> list[str]:
    """Registered float elementwise ops of two operands (arithmetic, comparisons, Max/Min...)."""
    unary = set(_float_unary_ops()) | _SKIP_UNARY
    return [name for name, op in registry.all_ops().items()
            if isinstance(op, ElementwiseOp) and name not in unary
            and name not in ("Where", "Clip", "BitShift")
            and DType.F32 in op.dtypes]


def _out_type(op: str) -> tuple[int, ...]:
    """Comparisons and IsNaN / IsInf give bool, the others the input's float."""
    return (BOOL,) if isinstance(registry.get(op), Comparison) or op in ("IsNaN", "IsInf") else (F,)


def elementwise_cases() -> list[Case]:
    cases = [one(op, op, X, out_types=_out_type(op)) for op in _float_unary_ops()]
    cases += [one(op, op, X, Data((12,)), out_types=_out_type(op), **_BINARY_ATTRS.get(op, {}))
              for op in _float_binary_ops()]
    cases += [
        one("Max_const", "Max", X, _f32(1.0)),
        one("Min_const", "Min", X, _f32(-1.0)),
        one("Max_3", "Max", X, Data((12,)), Data((4, 1))),
        one("Min_3", "Min", X, Data((12,)), Data((4, 1))),
        one("Clip_const", "Clip", X, _f32(-1.0), _f32(1.0)),
        one("Clip_min", "Clip", X, _f32(0.0)),
        one("Clip_max", "Clip", X, None, _f32(6.0)),
        one("Clip_none", "Clip", X),
        one("Clip_data_bounds", "Clip", X, Data(()), Data(())),
        one("LeakyRelu_0.1", "LeakyRelu", X, alpha=0.1),
        one("Elu_0.5", "Elu", X, alpha=0.5),
        one("HardSigmoid_0.3", "HardSigmoid", X, alpha=0.3, beta=0.4),
        one("ThresholdedRelu_0.5", "ThresholdedRelu", X, alpha=0.5),
        one("Shrink_0.5", "Shrink", X, lambd=0.5, bias=0.2),
        one("PRelu_channel", "PRelu", X4, Weight((3, 1, 1))),
        one("Where", "Where", Const(np.array([True, False] * 6)), X, Data((4, 1))),
        one("Cast_f64", "Cast", X, to=TensorProto.DOUBLE, out_types=(TensorProto.DOUBLE,)),
        one("Cast_f16", "Cast", X, to=TensorProto.FLOAT16, out_types=(TensorProto.FLOAT16,)),
        one("Expand", "Expand", Data((4, 1)), _i64(4, 12)),
    ]
    return cases


def _w(*shape: int) -> Weight:
    return Weight(shape, dot=True)


A = Data((5, 12), dot=True)  # rows of a MatMul
XD = Data((2, 3, 6, 6), dot=True)  # a Conv input


def _typed(op: str, to: int, *args: Arg | str, **attrs: object) -> Case:
    """`op` on X cast to float64 or float16 (its snippet in that C type)."""
    name = {TensorProto.DOUBLE: "f64", TensorProto.FLOAT16: "f16"}[to]
    return Case(f"{op}_{name}", (Step("Cast", (X,), {"to": to}), Step(op, ("@0", *args), attrs)),
                (to,))


def typed_cases() -> list[Case]:
    d, h = TensorProto.DOUBLE, TensorProto.FLOAT16
    bound = {d: np.float64, h: np.float16}
    return [*[_typed("Relu", t) for t in (d, h)],
            *[_typed(op, t, Const(np.array(0.5, bound[t]))) for op in ("Max", "Min") for t in (d, h)],
            *[_typed("Clip", t, Const(np.array(0, bound[t]))) for t in (d, h)],
            _typed("Sign", d), _typed("Abs", d), _typed("Neg", d)]


def chain_cases() -> list[Case]:
    relu, clip6 = Step("Relu", ("@1",)), Step("Clip", ("@1", _f32(0.0), _f32(6.0)))
    return [
        Case("Relu(X+1)*2", (Step("Add", (X, _f32(1.0))), Step("Relu", ("@0",)),
                             Step("Mul", ("@1", _f32(2.0))))),
        Case("Max(X,1)", (Step("Max", (X, _f32(1.0))),)),
        Case("Clip(X*3)+1", (Step("Mul", (X, _f32(3.0))), Step("Clip", ("@0", _f32(0.0), _f32(6.0))),
                             Step("Add", ("@1", _f32(1.0))))),
        Case("Sigmoid*X", (Step("Sigmoid", (X,)), Step("Mul", ("@0", X)))),
        # memory_first writes the LRN over the dying Relu output (its in-place kernel)
        Case("Relu+LRN", (Step("Relu", (X4,)), Step("LRN", ("@0",), {"size": 3}))),
        Case("MatMul+bias+Relu", (Step("MatMul", (A, _w(12, 7))), Step("Add", ("@0", _w(7))), relu)),
        Case("MatMul+bias+Clip", (Step("MatMul", (A, _w(12, 7))), Step("Add", ("@0", _w(7))), clip6)),
        Case("MatMul+LeakyRelu", (Step("MatMul", (A, _w(12, 7))),
                                  Step("LeakyRelu", ("@0",), {"alpha": 0.2}))),
        Case("Gemm+Relu", (Step("Gemm", (A, _w(7, 12), _w(7)), {"transB": 1}),
                           Step("Relu", ("@0",)))),
        Case("Conv+Relu", (Step("Conv", (XD, _w(4, 3, 3, 3), _w(4)), {"pads": [1, 1, 1, 1]}),
                           Step("Relu", ("@0",)))),
        Case("Conv1x1+Relu", (Step("Conv", (XD, _w(4, 3, 1, 1), _w(4))), Step("Relu", ("@0",)))),
        Case("Conv+Clip", (Step("Conv", (XD, _w(4, 3, 3, 3))),
                           Step("Clip", ("@0", _f32(0.0), _f32(6.0))))),
        Case("Conv+Max", (Step("Conv", (XD, _w(4, 3, 3, 3))), Step("Max", ("@0", _f32(0.0))))),
        # memory_first tiles this chain by channels
        Case("Conv+Relu+MaxPool", (Step("Conv", (XD, _w(4, 3, 3, 3)), {"pads": [1, 1, 1, 1]}),
                                   Step("Relu", ("@0",)),
                                   Step("MaxPool", ("@1",), {"kernel_shape": [2, 2], "strides": [2, 2]}))),
        Case("MaxPool_f64", (Step("Cast", (X4,), {"to": TensorProto.DOUBLE}),
                             Step("MaxPool", ("@0",), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})),
             (TensorProto.DOUBLE,)),
    ]


def kernel_cases() -> list[Case]:
    r3 = Data((3, 5, 7))
    reduce_nan_free = {"ReduceMax", "ReduceMin"}
    return [
        # MaxPool: each of onnxruntime's implementations (MLAS vectorized, generic, global;
        # Indices; float64 / dilated) puts NaN somewhere else
        one("MaxPool", "MaxPool", X4, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        one("MaxPool_2x2", "MaxPool", Data((1, 2, 9, 11), density=0.3), kernel_shape=[2, 2],
            strides=[2, 2]),
        one("MaxPool_stride1", "MaxPool", Data((1, 2, 9, 11), density=0.3), kernel_shape=[3, 3],
            pads=[1, 1, 1, 1]),
        one("MaxPool_stride3", "MaxPool", Data((1, 2, 9, 11), density=0.3), kernel_shape=[3, 2],
            strides=[3, 3]),
        one("MaxPool_ceil", "MaxPool", Data((1, 2, 7, 7), density=0.3), kernel_shape=[3, 3],
            strides=[2, 2], ceil_mode=1),
        one("MaxPool_dilated", "MaxPool", Data((1, 2, 9, 9), density=0.3), kernel_shape=[2, 2],
            dilations=[2, 2]),
        one("MaxPool_whole", "MaxPool", Data((1, 3, 5, 6), density=0.2), kernel_shape=[5, 6]),
        one("MaxPool_3d", "MaxPool", Data((1, 2, 4, 5, 6), density=0.3), kernel_shape=[2, 2, 3],
            strides=[1, 2, 2], pads=[0, 1, 1, 0, 1, 1]),
        one("MaxPool_indices", "MaxPool", X4, kernel_shape=[2, 2], out_types=(F, I64)),
        one("MaxPool_indices_pads", "MaxPool", X4, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
            out_types=(F, I64)),
        one("MaxPool_1d", "MaxPool", Data((2, 3, 9)), kernel_shape=[3], pads=[1, 1]),
        one("AveragePool", "AveragePool", X4, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        one("GlobalMaxPool", "GlobalMaxPool", X4),
        one("GlobalMaxPool_odd", "GlobalMaxPool", Data((1, 3, 3, 5), density=0.2)),
        # onnxruntime's GlobalAveragePool sums in MLAS's vector lanes: whether -inf meets two
        # 3e38 that overflowed together (NaN) or each alone (-inf) depends on the order (NaN
        # positions differed from numpy's and a sequential sum on 5% of random inputs)
        one("GlobalAveragePool", "GlobalAveragePool", Data((2, 3, 6, 6), huge=False)),
        *[one(f"{op}_axis1", op, r3, _i64(1), keepdims=1, nan_free=op in reduce_nan_free)
          for op in _reduce_ops()],
        # reduced whole, onnxruntime's ReduceLogSumExp takes Eigen's maxCoeff, NaN-dependent too
        *[one(f"{op}_all", op, r3, keepdims=0,
              nan_free=op in reduce_nan_free | {"ReduceLogSumExp"}) for op in _reduce_ops()],
        one("ArgMax", "ArgMax", r3, axis=1, out_types=(I64,)),
        one("ArgMin", "ArgMin", r3, axis=2, out_types=(I64,)),
        one("ArgMax_last", "ArgMax", r3, axis=1, select_last_index=1, out_types=(I64,)),
        one("ArgMin_last", "ArgMin", r3, axis=1, select_last_index=1, out_types=(I64,)),
        one("Softmax", "Softmax", r3, axis=-1),
        one("Softmax_axis1", "Softmax", r3, axis=1),
        one("LogSoftmax", "LogSoftmax", r3, axis=-1),
        # rows with two 3e38: (x - max) - log(sum), not x - (max + log(sum))
        one("LogSoftmax_dense", "LogSoftmax", Data((8, 5), density=0.4), axis=-1),
        one("Softmax_dense", "Softmax", Data((8, 5), density=0.4), axis=-1),
        one("Hardmax", "Hardmax", r3, axis=-1, nan_free=True),
        one("TopK", "TopK", r3, _i64(3), axis=-1, out_types=(F, I64)),
        one("TopK_smallest", "TopK", r3, _i64(2), axis=1, largest=0, out_types=(F, I64)),
        # rows whose float statistics overflow: test_layernorm_overflowing_rows_are_exact
        one("LayerNormalization", "LayerNormalization", Data((3, 5, 7), huge=False),
            Weight((7,)), Weight((7,)), axis=-1),
        one("LayerNormalization_dense", "LayerNormalization", Data((8, 6), density=0.4, huge=False),
            Weight((6,)), Weight((6,)), axis=-1),
        one("LayerNormalization_2d", "LayerNormalization", Data((2, 3, 6, 6), huge=False),
            Weight((6, 6)), axis=2),
        one("InstanceNormalization", "InstanceNormalization", X4, Weight((3,)), Weight((3,))),
        one("BatchNormalization", "BatchNormalization", X4, Weight((3,)), Weight((3,)),
            Weight((3,)), Const(np.array([0.5, 1.0, 2.0], np.float32))),
        one("LRN", "LRN", X4, size=3),
        one("LRN_size5", "LRN", X4, size=5, alpha=0.3, bias=1.5),
        one("MatMul", "MatMul", A, _w(12, 7)),
        one("Gemm", "Gemm", A, _w(12, 7), Data((7,))),
        one("Conv", "Conv", XD, _w(4, 3, 3, 3), _w(4), pads=[1, 1, 1, 1]),
        one("Conv_depthwise", "Conv", XD, _w(3, 1, 3, 3), group=3),
        one("ConvTranspose", "ConvTranspose", XD, _w(3, 2, 3, 3), strides=[2, 2]),
        one("CumSum", "CumSum", r3, Const(np.array(1, np.int64))),
        one("Einsum", "Einsum", Data((3, 4), dot=True), _w(4, 5), equation="ij,jk->ik"),
        one("Resize_linear", "Resize", X4, None, _f32(1, 1, 2, 2), mode="linear"),
        one("Resize_cubic", "Resize", X4, None, _f32(1, 1, 2, 2), mode="cubic"),
        one("Resize_nearest", "Resize", X4, None, _f32(1, 1, 2, 2), mode="nearest"),
        one("Resize_linear_align", "Resize", X4, None, _f32(1, 1, 1.5, 2), mode="linear",
            coordinate_transformation_mode="align_corners"),
        one("Resize_cubic_asym", "Resize", X4, None, _f32(1, 1, 2, 1.5), mode="cubic",
            coordinate_transformation_mode="asymmetric"),
        one("Resize_cubic_exclude", "Resize", X4, None, _f32(1, 1, 2, 2), mode="cubic",
            exclude_outside=1),
        one("Pad_reflect", "Pad", X4, _i64(0, 0, 1, 2, 0, 0, 1, 2), mode="reflect"),
        one("Pad_constant_nan", "Pad", X4, _i64(0, 0, 1, 1, 0, 0, 1, 1), _f32(np.nan)),
        one("Transpose", "Transpose", r3, perm=[2, 0, 1]),
        one("Concat", "Concat", X, Data((2, 12)), axis=0),
        one("Gather", "Gather", r3, _i64(2, 0, 2), axis=1),
        one("Tile", "Tile", r3, _i64(1, 2, 1)),
        one("Trilu", "Trilu", r3),
        one("DepthToSpace", "DepthToSpace", Data((1, 4, 3, 3)), blocksize=2),
        one("Slice", "Slice", r3, _i64(1), _i64(5), _i64(1), _i64(2)),
        one("SpaceToDepth", "SpaceToDepth", X4, blocksize=2),
        one("Split", "Split", r3, _i64(2, 5), axis=2, out_types=(F, F)),
        one("Pad_edge", "Pad", X4, _i64(0, 0, 2, 1, 0, 0, 1, 2), mode="edge"),
        one("CumSum_reverse_exclusive", "CumSum", r3, Const(np.array(2, np.int64)), reverse=1,
            exclusive=1),
        one("GatherElements", "GatherElements", r3, Const(np.tile([[[0], [4], [2]]], (3, 1, 7))),
            axis=1),
        one("GatherND", "GatherND", r3, Const(np.array([[0, 1], [2, 4]], np.int64))),
        one("ScatterElements", "ScatterElements", r3, Const(np.zeros((3, 1, 7), np.int64)),
            Data((3, 1, 7)), axis=1),
        one("ScatterND", "ScatterND", r3, Const(np.array([[1], [0]], np.int64)), Data((2, 5, 7))),
        one("OneHot", "OneHot", Const(np.array([0, 3, 2], np.int64)), Const(np.array(4, np.int64)),
            Data((2,))),
        one("Sum_3", "Sum", X, Data((12,)), Data((4, 1))),
        one("Mean_3", "Mean", X, Data((12,)), Data((4, 1))),
    ]


def _reduce_ops() -> list[str]:
    return [name for name in registry.all_ops() if name.startswith("Reduce")]


def recurrent_cases() -> list[Case]:
    """Inputs and weights as for a dot product (one huge value, weights in [-1, 1])."""
    h, x = 4, Data((3, 2, 5), dot=True)
    return [
        one("LSTM", "LSTM", x, _w(1, 4 * h, 5), _w(1, 4 * h, h), hidden_size=h, foldable=False),
        one("LSTM_clip", "LSTM", x, _w(1, 4 * h, 5), _w(1, 4 * h, h), hidden_size=h, clip=0.5,
            foldable=False),
        one("GRU", "GRU", x, _w(1, 3 * h, 5), _w(1, 3 * h, h), hidden_size=h, foldable=False),
        one("GRU_hardsigmoid", "GRU", x, _w(1, 3 * h, 5), _w(1, 3 * h, h), hidden_size=h,
            activations=["HardSigmoid", "Tanh"], foldable=False),
        one("RNN_relu", "RNN", x, _w(1, h, 5), _w(1, h, h), hidden_size=h, activations=["Relu"],
            foldable=False),
    ]


ALL_CASES = (elementwise_cases() + typed_cases() + chain_cases() + kernel_cases()
             + recurrent_cases())
OPSET = 24


# ---------------------------------------------------------------- building the side-by-side models


@dataclass
class Assembled:
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    outputs: dict[str, list[str]]  # case name -> its output names


def _prefix(case: Case) -> str:
    return "c" + "".join(ch if ch.isalnum() else "_" for ch in case.name) + "_"


def _arg_input(arg: Arg, name: str, rng: np.random.Generator, folded: bool, nan_free: bool,
               inputs: list, inits: list, feeds: dict) -> str:
    if arg is None:
        return ""
    if isinstance(arg, Const):
        inits.append(numpy_helper.from_array(arg.value, name))
        return name
    if isinstance(arg, Weight):
        w = rng.standard_normal(arg.shape).astype(np.float32)
        w = np.clip(w * 0.5, -1, 1) if arg.dot else w
        inits.append(numpy_helper.from_array(w, name))
        return name
    specials = SPECIALS[1:] if nan_free else SPECIALS
    specials = np.append(specials, np.array(arg.include, np.float32))
    if not arg.huge:
        specials = specials[np.abs(specials) < 1e38]
    if nan_free and arg.dot:  # one +inf and no -inf: no inf - inf makes a NaN in the sums
        specials = specials[specials != -np.inf]
    value = (dot_operand(rng, arg.shape, specials) if arg.dot
             else sprinkled(rng, arg.shape, arg.density, specials))
    if folded:
        inits.append(numpy_helper.from_array(value, name))
    else:
        feeds[name] = value
        inputs.append(helper.make_tensor_value_info(name, F, list(arg.shape)))
    return name


def assemble(cases: list[Case], rng: np.random.Generator, folded: bool) -> Assembled:
    """All `cases` side by side in one model, each with its own inputs and outputs."""
    nodes, inputs, inits, feeds, outputs = [], [], [], {}, {}
    out_infos = []
    for case in cases:
        pre = _prefix(case)
        step_outputs: list[list[str]] = []
        for k, step in enumerate(case.steps):
            names = []
            for j, arg in enumerate(step.args):
                if isinstance(arg, str):
                    names.append(step_outputs[int(arg[1:])][0])
                else:
                    names.append(_arg_input(arg, f"{pre}s{k}_a{j}", rng, folded, case.nan_free,
                                            inputs, inits, feeds))
            outs = [f"{pre}s{k}_y{j}" for j in range(step.outputs)]
            nodes.append(helper.make_node(step.op, names, outs, name=f"{pre}n{k}", **step.attrs))
            step_outputs.append(outs)
        outputs[case.name] = step_outputs[-1]
        out_infos += [helper.make_tensor_value_info(o, t, None)
                      for o, t in zip(step_outputs[-1], case.out_types)]
    graph = helper.make_graph(nodes, "special_values", inputs, out_infos, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="pyc-tests")
    model.ir_version = 10
    return Assembled(model, feeds, outputs)


def with_output_shapes(model: onnx.ModelProto, outputs: dict[str, np.ndarray]) -> None:
    """Declare each output's shape as onnxruntime computed it (the checker wants shapes)."""
    for info in model.graph.output:
        elem = info.type.tensor_type.elem_type
        info.CopyFrom(helper.make_tensor_value_info(info.name, elem, list(outputs[info.name].shape)))
