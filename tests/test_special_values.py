"""NaN, ±Inf, -0.0, denormals and huge values propagate as onnxruntime propagates them.

Every case is a one-node model (or a short fused chain) fed random normal inputs with NaN, +Inf,
-Inf, -0.0, 1e-40 and 3e38 sprinkled in. All cases of a variant are put side by side (each with
its own inputs and outputs) into one model, so each mode costs one build; a second variant
holds the data in initializers, so the numpy references of constant folding are checked too.
NaN positions must match onnxruntime exactly, values within rtol 1e-5 / atol 1e-6.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REFERENCE_MODELS, onnxruntime_outputs
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli.ops import registry
from pyc_cli.ops.elementwise import ElementwiseOp
from pyc_cli.ops.unary import Unary

RTOL, ATOL = 1e-5, 1e-6
MODES = ("latency_first", "balanced", "memory_first")
SPECIALS = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-40, 3e38], np.float32)
F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def sprinkled(rng: np.random.Generator, shape: tuple[int, ...], density: float = 0.15
              ) -> np.ndarray:
    """Standard normal float32 values with every special value at least once (where it fits)
    and about `density` of all elements special."""
    x = rng.standard_normal(shape).astype(np.float32)
    count = min(x.size, max(len(SPECIALS), int(round(x.size * density))))
    where = rng.choice(x.size, count, replace=False)
    x.flat[where] = SPECIALS[np.arange(count) % len(SPECIALS)]
    return x


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class Data:
    """A float input holding special values (a graph input, or an initializer when folded)."""

    shape: tuple[int, ...]


@dataclass(frozen=True)
class Weight:
    """A plain random normal float initializer (conv weights, scales)."""

    shape: tuple[int, ...]


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


def one(name: str, op: str, *args: Arg, out_types: tuple[int, ...] = (F,),
        foldable: bool = True, **attrs: object) -> Case:
    return Case(name, (Step(op, args, attrs, len(out_types)),), out_types, foldable)


def _i64(*values: int) -> Const:
    return Const(np.array(values, np.int64))


def _f32(*values: float) -> Const:
    return Const(np.array(values, np.float32))


X = Data((4, 12))
X4 = Data((2, 3, 6, 6))
_BINARY_ATTRS: dict[str, dict[str, object]] = {"Mod": {"fmod": 1}}  # float Mod needs fmod=1
_SKIP_UNARY = {"Cast", "CastLike", "Expand", "Not", "BitwiseNot", "Identity"}


def _float_unary_ops() -> list[str]:
    """Every registered float unary elementwise op (from the op registry)."""
    return [name for name, op in registry.all_ops().items()
            if isinstance(op, Unary) and name not in _SKIP_UNARY
            and registry.DType.F32 in op.dtypes]


def _float_binary_ops() -> list[str]:
    """Registered float elementwise ops of two operands (arithmetic, comparisons, Max/Min...)."""
    unary = set(_float_unary_ops()) | _SKIP_UNARY
    return [name for name, op in registry.all_ops().items()
            if isinstance(op, ElementwiseOp) and name not in unary
            and name not in ("Where", "Clip", "BitShift")
            and registry.DType.F32 in op.dtypes]


def _out_type(op: str) -> tuple[int, ...]:
    opdef = registry.get(op)
    node_dtypes = [registry.DType.F32, registry.DType.F32]
    try:
        is_bool = opdef.out_dtype(None, node_dtypes) == registry.DType.BOOL  # type: ignore[arg-type]
    except (AttributeError, TypeError, KeyError):
        is_bool = False
    return (BOOL,) if is_bool else (F,)


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


def chain_cases() -> list[Case]:
    return [
        Case("Relu(X+1)*2", (Step("Add", (X, _f32(1.0))), Step("Relu", ("@0",)),
                             Step("Mul", ("@1", _f32(2.0))))),
        Case("Max(X,1)", (Step("Max", (X, _f32(1.0))),)),
        Case("Clip(X*3)+1", (Step("Mul", (X, _f32(3.0))), Step("Clip", ("@0", _f32(0.0), _f32(6.0))),
                             Step("Add", ("@1", _f32(1.0))))),
        Case("MatMul+bias+Relu", (Step("MatMul", (Data((5, 12)), Weight((12, 7)))),
                                  Step("Add", ("@0", Weight((7,)))), Step("Relu", ("@1",)))),
        Case("MatMul+bias+Clip", (Step("MatMul", (Data((5, 12)), Weight((12, 7)))),
                                  Step("Add", ("@0", Weight((7,)))),
                                  Step("Clip", ("@1", _f32(0.0), _f32(6.0))))),
        Case("MatMul+LeakyRelu", (Step("MatMul", (Data((5, 12)), Weight((12, 7)))),
                                  Step("LeakyRelu", ("@0",), {"alpha": 0.2}))),
        Case("Gemm+Relu", (Step("Gemm", (Data((5, 12)), Weight((7, 12)), Weight((7,))),
                                {"transB": 1}), Step("Relu", ("@0",)))),
        Case("Conv+Relu", (Step("Conv", (X4, Weight((4, 3, 3, 3)), Weight((4,))),
                                {"pads": [1, 1, 1, 1]}), Step("Relu", ("@0",)))),
        Case("Conv1x1+Relu", (Step("Conv", (X4, Weight((4, 3, 1, 1)), Weight((4,)))),
                              Step("Relu", ("@0",)))),
        Case("Conv+Clip", (Step("Conv", (X4, Weight((4, 3, 3, 3)))), Step("Clip", ("@0", _f32(0.0), _f32(6.0))))),
        Case("Conv+Max", (Step("Conv", (X4, Weight((4, 3, 3, 3)))), Step("Max", ("@0", _f32(0.0))))),
        Case("Conv+Relu+MaxPool", (Step("Conv", (X4, Weight((4, 3, 3, 3))), {"pads": [1, 1, 1, 1]}),
                                   Step("Relu", ("@0",)),
                                   Step("MaxPool", ("@1",), {"kernel_shape": [2, 2], "strides": [2, 2]}))),
        Case("Sigmoid*X", (Step("Sigmoid", (X,)), Step("Mul", ("@0", X)))),
    ]


def kernel_cases() -> list[Case]:
    r3 = Data((3, 5, 7))
    return [
        one("MaxPool", "MaxPool", X4, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        one("MaxPool_indices", "MaxPool", X4, kernel_shape=[2, 2], out_types=(F, I64)),
        one("MaxPool_1d", "MaxPool", Data((2, 3, 9)), kernel_shape=[3], pads=[1, 1]),
        one("AveragePool", "AveragePool", X4, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        one("GlobalMaxPool", "GlobalMaxPool", X4),
        one("GlobalAveragePool", "GlobalAveragePool", X4),
        *[one(f"{op}_axis1", op, r3, _i64(1), keepdims=1) for op in _reduce_ops()],
        *[one(f"{op}_all", op, r3, keepdims=0) for op in _reduce_ops()],
        one("ArgMax", "ArgMax", r3, axis=1, out_types=(I64,)),
        one("ArgMin", "ArgMin", r3, axis=2, out_types=(I64,)),
        one("ArgMax_last", "ArgMax", r3, axis=1, select_last_index=1, out_types=(I64,)),
        one("ArgMin_last", "ArgMin", r3, axis=1, select_last_index=1, out_types=(I64,)),
        one("Softmax", "Softmax", r3, axis=-1),
        one("Softmax_axis1", "Softmax", r3, axis=1),
        one("LogSoftmax", "LogSoftmax", r3, axis=-1),
        one("Hardmax", "Hardmax", r3, axis=-1),
        one("TopK", "TopK", r3, _i64(3), axis=-1, out_types=(F, I64)),
        one("TopK_smallest", "TopK", r3, _i64(2), axis=1, largest=0, out_types=(F, I64)),
        one("LayerNormalization", "LayerNormalization", r3, Weight((7,)), Weight((7,)), axis=-1),
        one("InstanceNormalization", "InstanceNormalization", X4, Weight((3,)), Weight((3,))),
        one("BatchNormalization", "BatchNormalization", X4, Weight((3,)), Weight((3,)),
            Weight((3,)), Const(np.array([0.5, 1.0, 2.0], np.float32))),
        one("LRN", "LRN", X4, size=3),
        one("MatMul", "MatMul", Data((5, 12)), Data((12, 7))),
        one("Gemm", "Gemm", Data((5, 12)), Data((12, 7)), Data((7,))),
        one("Conv", "Conv", X4, Weight((4, 3, 3, 3)), Weight((4,)), pads=[1, 1, 1, 1]),
        one("Conv_depthwise", "Conv", X4, Weight((3, 1, 3, 3)), group=3),
        one("ConvTranspose", "ConvTranspose", X4, Weight((3, 2, 3, 3)), strides=[2, 2]),
        one("CumSum", "CumSum", r3, Const(np.array(1, np.int64))),
        one("Einsum", "Einsum", Data((3, 4)), Data((4, 5)), equation="ij,jk->ik"),
        one("Resize_linear", "Resize", X4, None, _f32(1, 1, 2, 2), mode="linear"),
        one("Resize_cubic", "Resize", X4, None, _f32(1, 1, 2, 2), mode="cubic"),
        one("Resize_nearest", "Resize", X4, None, _f32(1, 1, 2, 2), mode="nearest"),
        one("Pad_reflect", "Pad", X4, _i64(0, 0, 1, 2, 0, 0, 1, 2), mode="reflect"),
        one("Pad_constant_nan", "Pad", X4, _i64(0, 0, 1, 1, 0, 0, 1, 1), _f32(np.nan)),
        one("Transpose", "Transpose", r3, perm=[2, 0, 1]),
        one("Concat", "Concat", X, Data((2, 12)), axis=0),
        one("Gather", "Gather", r3, _i64(2, 0, 2), axis=1),
        one("Tile", "Tile", r3, _i64(1, 2, 1)),
        one("Trilu", "Trilu", r3),
        one("DepthToSpace", "DepthToSpace", Data((1, 4, 3, 3)), blocksize=2),
        one("Slice", "Slice", r3, _i64(1), _i64(5), _i64(1), _i64(2)),
    ]


def _reduce_ops() -> list[str]:
    return [name for name in registry.all_ops() if name.startswith("Reduce")]


def recurrent_cases() -> list[Case]:
    hidden = 4
    return [
        one("LSTM", "LSTM", Data((3, 2, 5)), Weight((1, 4 * hidden, 5)), Weight((1, 4 * hidden, hidden)),
            hidden_size=hidden, out_types=(F,), foldable=False),
        one("GRU", "GRU", Data((3, 2, 5)), Weight((1, 3 * hidden, 5)), Weight((1, 3 * hidden, hidden)),
            hidden_size=hidden, out_types=(F,), foldable=False),
        one("RNN_relu", "RNN", Data((3, 2, 5)), Weight((1, hidden, 5)), Weight((1, hidden, hidden)),
            hidden_size=hidden, activations=["Relu"], out_types=(F,), foldable=False),
    ]


ALL_CASES = elementwise_cases() + chain_cases() + kernel_cases() + recurrent_cases()
OPSET = 24


# ---------------------------------------------------------------- building the side-by-side models


@dataclass
class Assembled:
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    outputs: dict[str, list[str]]  # case name -> its output names


def _prefix(case: Case) -> str:
    return "c" + "".join(ch if ch.isalnum() else "_" for ch in case.name) + "_"


def _arg_input(arg: Arg, name: str, rng: np.random.Generator, folded: bool,
               inputs: list, inits: list, feeds: dict) -> str:
    if arg is None:
        return ""
    if isinstance(arg, Const):
        inits.append(numpy_helper.from_array(arg.value, name))
    elif isinstance(arg, Weight):
        inits.append(numpy_helper.from_array(rng.standard_normal(arg.shape).astype(np.float32), name))
    elif folded:
        inits.append(numpy_helper.from_array(sprinkled(rng, arg.shape), name))
    else:
        feeds[name] = sprinkled(rng, arg.shape)
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
                    names.append(_arg_input(arg, f"{pre}s{k}_a{j}", rng, folded, inputs, inits, feeds))
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
