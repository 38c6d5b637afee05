"""Every registered op's numpy reference (`OpDef.evaluate`, used by constant folding and as an
oracle) against onnxruntime on single-node models with fresh random inputs: odd sizes (1,
primes, tails) and several attribute combinations per op.

Tolerances: rtol 1e-5 / atol 1e-6 for float32 results computed without a sum; ops that
accumulate (Conv, ConvTranspose, AveragePool, InstanceNormalization, Softmax, Resize blends)
allow atol 1e-5, the float32 rounding of sums of up to ~100 products of N(0, 1) values that
onnxruntime accumulates in float32 while the references accumulate in float64. Max pooling,
Hardmax and nearest Resize select values and must match exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import import_onnx, passes_before, run_passes
from onnx import helper, numpy_helper

from pyc_cli.ops import registry
from pyc_cli.ops.norm import RowwiseSoftmax

F32 = np.float32
EXACT = (0.0, 0.0)
SELECT = (1e-5, 1e-6)
SUMS = (1e-5, 1e-5)


@dataclass(frozen=True)
class Case:
    """One single-node model: `inputs` are shapes of random graph inputs (float32 normal
    values unless `dtype` says otherwise) or constant arrays (initializers); "" is an
    absent optional input."""

    op: str
    attrs: dict
    inputs: tuple
    opset: int = 17
    outputs: int = 1
    tol: tuple[float, float] = SUMS
    dtype: type = F32
    id: str = field(default="", compare=False)

    def label(self) -> str:
        return f"{self.op}-{self.id}" if self.id else self.op


def c(op: str, attrs: dict, *inputs: object, **options: object) -> Case:
    return Case(op, attrs, tuple(inputs), **options)  # type: ignore[arg-type]


def ints(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def floats(*values: float) -> np.ndarray:
    return np.array(values, np.float32)


def weights(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(F32)


CONV = [
    c("Conv", {"pads": [1, 2], "strides": [2]}, (1, 3, 11), "w:5,3,3", "b:5", id="1d"),
    c("Conv", {"group": 2, "strides": [2, 1], "dilations": [1, 2], "pads": [1, 0, 2, 1]},
      (2, 4, 7, 9), "w:6,2,3,2", id="group_dilations"),
    c("Conv", {"auto_pad": "SAME_UPPER", "strides": [3, 2]}, (1, 3, 13, 5), "w:4,3,4,3",
      id="same_upper"),
    c("Conv", {"auto_pad": "SAME_LOWER", "strides": [2, 2]}, (1, 3, 8, 7), "w:2,3,4,3", "b:2",
      id="same_lower"),
    c("Conv", {"auto_pad": "VALID", "strides": [2, 3], "kernel_shape": [3, 3]}, (1, 2, 11, 13),
      "w:3,2,3,3", id="valid"),
    c("Conv", {"strides": [1, 2, 3], "pads": [0, 1, 1, 1, 0, 2]}, (1, 2, 5, 6, 7),
      "w:3,2,2,3,2", "b:3", id="3d"),
    c("Conv", {"group": 5, "pads": [1, 1, 1, 1]}, (1, 5, 8, 8), "w:5,1,3,3", "b:5",
      id="depthwise"),
    c("Conv", {}, (3, 7, 5, 5), "w:11,7,1,1", id="pointwise"),
    c("Conv", {"strides": [4, 4]}, (1, 1, 10, 9), "w:1,1,3,3", id="unused_tail"),
]

CONV_TRANSPOSE = [
    c("ConvTranspose", {"strides": [2], "pads": [1, 0], "output_padding": [1]}, (1, 3, 7),
      "w:3,2,3", "b:2", id="1d"),
    c("ConvTranspose", {"group": 2, "strides": [2, 3], "dilations": [2, 1], "pads": [1, 1, 0, 2]},
      (2, 4, 5, 6), "w:4,3,3,2", id="group_dilations"),
    c("ConvTranspose", {"strides": [2, 2], "output_shape": [9, 10]}, (1, 2, 4, 4), "w:2,3,3,3",
      id="output_shape"),
    c("ConvTranspose", {"strides": [2, 2], "output_shape": [8, 9]}, (1, 2, 4, 4), "w:2,3,3,3",
      id="output_shape_cut"),
    c("ConvTranspose", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (1, 3, 5, 4), "w:3,2,4,3",
      id="same_upper"),
    c("ConvTranspose", {"auto_pad": "SAME_LOWER", "strides": [3, 2]}, (1, 3, 5, 4), "w:3,2,4,3",
      "b:2", id="same_lower"),
    c("ConvTranspose", {"auto_pad": "VALID", "strides": [1, 2]}, (2, 1, 3, 5), "w:1,4,2,2",
      id="valid"),
    c("ConvTranspose", {"strides": [2, 1, 2], "output_padding": [1, 0, 0]}, (1, 2, 3, 4, 5),
      "w:2,2,2,3,2", "b:2", id="3d"),
]

MAX_POOL = [
    c("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
      (2, 3, 9, 8), tol=EXACT, id="pads"),
    c("MaxPool", {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}, (1, 3, 10, 7),
      tol=EXACT, id="ceil"),
    c("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [0, 1, 1, 0]},
      (1, 2, 7, 7), tol=EXACT, id="dilations"),
    c("MaxPool", {"kernel_shape": [4], "strides": [3], "pads": [2, 1]}, (2, 2, 13), tol=EXACT,
      id="1d"),
    c("MaxPool", {"kernel_shape": [2, 3, 2], "strides": [1, 2, 2]}, (1, 2, 4, 7, 5), tol=EXACT,
      id="3d"),
    c("MaxPool", {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
      (1, 2, 7, 6), tol=EXACT, id="same_upper"),
    c("MaxPool", {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER", "strides": [2, 2]},
      (1, 2, 7, 6), tol=EXACT, id="same_lower"),
    c("MaxPool", {"kernel_shape": [2, 2], "auto_pad": "VALID", "strides": [3, 3]}, (1, 1, 11, 7),
      tol=EXACT, id="valid"),
    c("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
      (2, 3, 7, 6), outputs=2, tol=EXACT, id="indices"),
    c("MaxPool", {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1],
                  "storage_order": 1, "ceil_mode": 1}, (2, 2, 6, 5), outputs=2, tol=EXACT,
      id="indices_column_major"),
    c("MaxPool", {"kernel_shape": [3], "strides": [2], "dilations": [2]}, (1, 2, 11), outputs=2,
      tol=EXACT, id="indices_1d_dilations"),
    c("MaxPool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, (1, 3, 5, 7), tol=EXACT,
      dtype=np.int8, id="int8"),
    c("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, (1, 3, 5, 7),
      tol=EXACT, dtype=np.uint8, id="uint8"),
    c("MaxPool", {"kernel_shape": [2, 3], "strides": [1, 2]}, (1, 3, 5, 7), tol=EXACT,
      dtype=np.float64, id="float64"),
]

AVERAGE_POOL = [
    c("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
      (2, 3, 9, 8), id="pads_excluded"),
    c("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 2, 1, 0],
                      "count_include_pad": 1}, (2, 3, 9, 8), id="pads_included"),
    c("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 0, 1],
                      "ceil_mode": 1, "count_include_pad": 1}, (1, 3, 10, 7), id="ceil_included"),
    c("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}, (1, 3, 10, 7),
      id="ceil_excluded"),
    c("AveragePool", {"kernel_shape": [2, 2], "dilations": [2, 1], "pads": [1, 1, 1, 1]},
      (1, 2, 7, 6), opset=19, id="dilations"),
    c("AveragePool", {"kernel_shape": [5], "strides": [3], "pads": [2, 2]}, (2, 2, 13), id="1d"),
    c("AveragePool", {"kernel_shape": [2, 3, 2], "strides": [2, 1, 2], "pads": [1, 1, 0, 0, 1, 1]},
      (1, 2, 5, 6, 5), id="3d"),
    c("AveragePool", {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
      (1, 2, 7, 6), id="same_upper"),
    c("AveragePool", {"kernel_shape": [4, 3], "auto_pad": "SAME_LOWER", "count_include_pad": 1},
      (1, 2, 7, 6), id="same_lower_included"),
    c("AveragePool", {"kernel_shape": [2, 2], "auto_pad": "VALID", "strides": [3, 3]},
      (1, 1, 11, 7), id="valid"),
]

ROWWISE = [
    c(op, attrs, shape, opset=opset, tol=EXACT if op == "Hardmax" else SUMS,
      id=f"opset{opset}_{'_'.join(f'{k}{v}' for k, v in attrs.items()) or 'default'}_{len(shape)}d")
    for op in ("Softmax", "LogSoftmax", "Hardmax")
    for opset, attrs, shape in (
        (13, {}, (3, 5, 7)), (13, {"axis": 0}, (3, 5, 7)), (13, {"axis": 1}, (2, 11, 3)),
        (13, {}, (1,)), (13, {"axis": -2}, (2, 3, 4, 5)),
        (11, {}, (3, 5, 7)), (11, {"axis": 0}, (2, 3, 4)), (11, {"axis": 2}, (2, 3, 13)),
        (11, {"axis": -1}, (17,)))
]

INSTANCE_NORM = [
    c("InstanceNormalization", {}, (2, 3, 5), "w:3", "b:3", id="1d"),
    c("InstanceNormalization", {"epsilon": 1e-3}, (1, 4, 3, 7), "w:4", "b:4", id="2d"),
    c("InstanceNormalization", {}, (2, 2, 3, 4, 5), "w:2", "b:2", id="3d"),
    # (not one pixel per channel: a zero variance divides onnxruntime's float32 rounding of
    # x - mean by sqrt(epsilon), an error of 1e-5 where the reference gives exactly `bias`)
    c("InstanceNormalization", {}, (3, 1, 1, 3), "w:1", "b:1", id="one_channel"),
]


def _resize(attrs: dict, shape: tuple, scales: np.ndarray | None = None,
            sizes: np.ndarray | None = None, roi: np.ndarray | None = None, opset: int = 19,
            tol: tuple[float, float] = SUMS, id: str = "") -> Case:  # noqa: A002
    return c("Resize", attrs, shape, "" if roi is None else roi,
             "" if scales is None else scales, *(() if sizes is None else (sizes,)),
             opset=opset, tol=tol, id=id)


# scales are dyadic so that every source coordinate is exact in float32 (onnxruntime's
# arithmetic) and float64 (ONNX's and the reference's): otherwise a coordinate a rounding away
# from a tie picks different nearest pixels, and align_corners with a fractional size*scale
# divides by a different length (ONNX: size*scale; onnxruntime: the output length)
RESIZE = [
    *(_resize({"mode": "nearest", "nearest_mode": nearest, "coordinate_transformation_mode": coords},
              (1, 2, 4, 8), floats(1, 1, 1.75, 0.625), tol=EXACT, id=f"nearest_{nearest}_{coords}")
      for nearest in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
      for coords in ("half_pixel", "asymmetric", "align_corners", "tf_half_pixel_for_nn")),
    *(_resize({"mode": "linear", "coordinate_transformation_mode": coords}, (2, 3, 6, 4),
              floats(1, 1, 1.5, 0.75), id=f"linear_{coords}")
      for coords in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                     "half_pixel_symmetric")),
    *(_resize({"mode": "cubic", "coordinate_transformation_mode": coords, **extra}, (1, 2, 6, 8),
              floats(1, 1, 1.5, 0.625), id=f"cubic_{coords}_{'_'.join(map(str, extra.values()))}")
      for coords in ("half_pixel", "asymmetric", "align_corners")
      for extra in ({}, {"cubic_coeff_a": -0.5}, {"exclude_outside": 1})),
    _resize({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
             "extrapolation_value": 2.5}, (1, 1, 6, 7), sizes=ints(1, 1, 5, 9),
            roi=floats(0, 0, -0.2, 0.1, 1, 1, 0.9, 1.3), id="tf_crop_and_resize_linear"),
    _resize({"mode": "nearest", "coordinate_transformation_mode": "tf_crop_and_resize"},
            (1, 1, 6, 7), sizes=ints(1, 1, 4, 5), roi=floats(0, 0, -0.25, 0.125, 1, 1, 1.25, 0.875),
            tol=EXACT, id="tf_crop_and_resize_nearest"),
    *(_resize({"mode": mode, "antialias": 1}, (1, 2, 13, 11), sizes=ints(1, 2, 5, 4),
              id=f"antialias_{mode}") for mode in ("linear", "cubic")),
    _resize({"mode": "cubic", "antialias": 1, "exclude_outside": 1, "cubic_coeff_a": -0.5},
            (1, 1, 9, 10), floats(1, 1, 0.5, 0.7), id="antialias_cubic_exclude"),
    *(_resize({"mode": "linear", "keep_aspect_ratio_policy": policy, "axes": [2, 3]},
              (1, 2, 5, 7), sizes=ints(8, 9), id=f"aspect_{policy}")
      for policy in ("not_larger", "not_smaller")),
    _resize({"mode": "nearest", "axes": [3, 1]}, (1, 2, 3, 5), floats(1.6, 2.0), tol=EXACT,
            id="axes_scales"),
    _resize({"mode": "linear"}, (2, 3, 7), floats(1, 1, 1), id="identity"),
    _resize({"mode": "linear"}, (3, 1, 4, 2), sizes=ints(3, 1, 1, 5), id="to_one"),
    c("Resize", {"mode": "nearest"}, (1, 2, 3, 4), floats(1, 1, 2.5, 1.5), opset=10, tol=EXACT,
      id="opset10_nearest"),
    c("Resize", {"mode": "linear"}, (1, 2, 3, 4), floats(1, 1, 2.5, 0.5), opset=10,
      id="opset10_linear"),
]

UPSAMPLE = [
    c("Upsample", {"mode": "nearest"}, (1, 2, 3, 4), floats(1, 1, 2, 3), opset=9, tol=EXACT,
      id="opset9_nearest"),
    c("Upsample", {"mode": "linear"}, (1, 2, 3, 4), floats(1, 1, 2.5, 1.5), opset=9,
      id="opset9_linear"),
    c("Upsample", {"mode": "nearest", "scales": [1.0, 1.0, 2.0, 2.0]}, (2, 1, 3, 5), opset=7,
      tol=EXACT, id="opset7_attribute"),
]

CASES = CONV + CONV_TRANSPOSE + MAX_POOL + AVERAGE_POOL + ROWWISE + INSTANCE_NORM + RESIZE + UPSAMPLE

# ops whose reference is checked elsewhere in this module or that cannot have one
NOT_IN_TABLE = {
    # If's branches are inlined at import: the chosen one (a constant condition), or both and
    # a pyc.If selecting (a run-time condition); the IR keeps no branch graphs to evaluate
    "If": "no branches in the IR; never reaches evaluation",
    "pyc.If": "internal; checked by test_run_time_if_reference below (and against "
              "onnxruntime in tests/dynamic/test_run_time_if.py)",
    # a PyC-internal op, not ONNX: checked by test_fused_elementwise_reference below
    "pyc.Elementwise": "internal; checked against onnxruntime through its unfused graph",
    "pyc.Copy": "internal; checked by test_copy_reference below",
    "pyc.Unreachable": "internal; computes nothing (a branch that could not be compiled: taking "
                       "it stops the run): tests/dynamic/test_unreachable_branch.py",
    "pyc.Attention": "internal; checked by test_attention_reference below",
    "pyc.Reorder": "internal; checked by test_blocked_layout_references below",
    "pyc.ConvBlocked": "internal; checked by test_blocked_layout_references below",
    "pyc.PoolBlocked": "internal; checked by test_blocked_layout_references below",
    "pyc.DimValues": "internal; checked by test_dim_values_reference below",
    # its output size depends on the values (issue #15, point 2): the fuzz generator has no
    # spec for it; checked on inputs with many zeros by test_nonzero_reference below
    "NonZero": "checked by test_nonzero_reference below",
}


# ---------------------------------------------------------------- building and running


def _materialize(case: Case, rng: np.random.Generator):  # noqa: ANN202
    """(model, feeds): random graph inputs, weight ('w:shape') and bias ('b:shape')
    initializers, constant arrays as initializers."""
    inputs, inits, feeds, names = [], [], {}, []
    for index, spec in enumerate(case.inputs):
        name = f"i{index}"
        if isinstance(spec, str) and spec == "":
            names.append("")
            continue
        names.append(name)
        if isinstance(spec, tuple):
            feeds[name] = _random(rng, spec, case.dtype)
            inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(np.dtype(case.dtype)), list(spec)))
        elif isinstance(spec, str):  # "w:5,3,3": a random constant of the data's type
            shape = tuple(int(d) for d in spec[2:].split(","))
            inits.append(numpy_helper.from_array(_random(rng, shape, case.dtype), name))
        else:
            inits.append(numpy_helper.from_array(np.asarray(spec), name))
    outputs = [f"y{k}" for k in range(case.outputs)]
    node = helper.make_node(case.op, names, outputs, name="n", **case.attrs)
    graph = helper.make_graph([node], "ref", inputs,
                              [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                               for o in outputs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    onnx.checker.check_model(model, full_check=True)
    return model, feeds


def _random(rng: np.random.Generator, shape: tuple, dtype: type) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _onnxruntime(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _reference(case: Case, model: onnx.ModelProto, feeds: dict, tmp_path) -> list[np.ndarray]:  # noqa: ANN001
    """The op's evaluate on the node as the importer builds it (its attributes and constants)."""
    graph = import_onnx(model, tmp_path)
    [node] = graph.nodes
    values = {**graph.constants, **feeds}
    inputs = [values[name] if name else None for name in node.inputs]
    opdef = registry.get(node.op)
    if isinstance(opdef, RowwiseSoftmax):
        return opdef.evaluate_at(node, inputs, case.opset)
    return opdef.evaluate(node, inputs)


@pytest.mark.parametrize("case", CASES, ids=[case.label() for case in CASES])
def test_reference_matches_onnxruntime(case: Case, rng: np.random.Generator, tmp_path) -> None:  # noqa: ANN001
    model, feeds = _materialize(case, rng)
    expected = _onnxruntime(model, feeds)
    got = _reference(case, model, feeds, tmp_path)
    assert len(got) == len(expected)
    rtol, atol = case.tol
    for index, (value, want) in enumerate(zip(got, expected)):
        assert value.dtype == want.dtype and value.shape == want.shape, index
        np.testing.assert_allclose(value, want, rtol=rtol, atol=atol, err_msg=f"output {index}")


# the only registered op without a numpy reference (see NOT_IN_TABLE)
NO_REFERENCE = {"If", "pyc.Unreachable"}


def test_every_registered_op_has_a_reference_case() -> None:
    """The registry is the source of truth: an op added without a reference, or without a
    check here (the table, the generated nodes, or a test of its own named in NOT_IN_TABLE),
    fails. (A reference that raises NotImplementedError fails its checks below.)"""
    from pyc_cli.ops.registry import OpDef

    covered = {case.op for case in CASES} | set(NOT_IN_TABLE) | set(GENERIC_OPS)
    missing = sorted(set(registry.all_ops()) - covered)
    assert not missing, f"ops with no reference case: {missing}"
    assert not set(NOT_IN_TABLE) & {case.op for case in CASES}
    without = {op for op, opdef in registry.all_ops().items() if type(opdef).evaluate is OpDef.evaluate}
    assert without == NO_REFERENCE, f"ops without a numpy reference: {sorted(without)}"


@pytest.mark.parametrize("opset", [11, 12])
def test_softmax_evaluate_refuses_only_where_the_opset_decides(opset: int, rng) -> None:  # noqa: ANN001
    """A node does not carry the model's opset: evaluate answers where both semantics agree
    (the last axis) and declines (no folding) where they differ."""
    from pyc_cli.ir.graph import Node

    x = rng.standard_normal((2, 3, 4)).astype(F32)
    opdef = registry.get("Softmax")
    agree = Node("Softmax", "n", ["x"], ["y"], {"axis": 2})
    np.testing.assert_allclose(opdef.evaluate(agree, [x])[0], opdef.evaluate_at(agree, [x], opset)[0])
    with pytest.raises(NotImplementedError):
        opdef.evaluate(Node("Softmax", "n", ["x"], ["y"], {"axis": 1}), [x])


ZERO_SIZE = [
    ("Conv", {}, [(0, 3, 5, 5), (4, 3, 3, 3)]),
    ("Conv", {"group": 1}, [(2, 0, 5, 5), (4, 0, 3, 3)]),
    ("ConvTranspose", {"strides": [2, 2]}, [(0, 3, 5, 5), (3, 4, 3, 3)]),
    ("MaxPool", {"kernel_shape": [2, 2]}, [(0, 3, 5, 5)]),
    ("AveragePool", {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
     [(2, 0, 5, 5)]),
    ("InstanceNormalization", {}, [(0, 3, 5, 5), (3,), (3,)]),
    ("Softmax", {"axis": -1}, [(0, 3)]),
    ("Hardmax", {"axis": 0}, [(0,)]),
]


@pytest.mark.parametrize(("op", "attrs", "shapes"), ZERO_SIZE, ids=[z[0] for z in ZERO_SIZE])
def test_zero_size_inputs_evaluate_to_the_inferred_shape(op: str, attrs: dict, shapes: list) -> None:
    """Type propagation evaluates nodes whose inputs are constants, empty ones included: the
    reference must not fail there, and must give the shape rule's shape."""
    from pyc_cli.ir.graph import Node
    from pyc_cli.ir.types import TensorType

    node = Node(op, "n", [f"i{k}" for k in range(len(shapes))], ["y"], attrs)
    inputs = [np.ones(shape, F32) for shape in shapes]
    opdef = registry.get(op)
    [got] = opdef.evaluate(node, inputs)
    [want] = opdef.infer(node, [TensorType.of(v) for v in inputs], inputs)
    assert got.shape == want.shape and got.dtype == np.float32


# ---------------------------------------------------------------- pyc.Elementwise


def test_fused_elementwise_reference(rng: np.random.Generator, tmp_path) -> None:  # noqa: ANN001
    """A fused chain's program, run by pyc.Elementwise's reference, equals onnxruntime on the
    unfused model (Clip with bounds as operands, Cast, IsInf, LeakyRelu, Where, broadcasting)."""
    shape = (3, 1, 7)
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["a"]),
        helper.make_node("LeakyRelu", ["a"], ["b"], alpha=0.3),
        helper.make_node("Clip", ["b", "", "hi"], ["c"]),
        helper.make_node("Add", ["c", "x"], ["d"]),
        helper.make_node("Cast", ["d"], ["e"], to=onnx.TensorProto.DOUBLE),
        helper.make_node("Sqrt", ["e"], ["f"]),
        helper.make_node("IsNaN", ["f"], ["g"]),
        helper.make_node("Div", ["e", "x0"], ["q"]),
        helper.make_node("IsInf", ["q"], ["h"], detect_negative=0),
        helper.make_node("Or", ["g", "h"], ["k"]),
        helper.make_node("Where", ["k", "e", "f"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "ew",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(shape)),
         helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, [5, 1]),
         helper.make_tensor_value_info("hi", onnx.TensorProto.FLOAT, []),
         helper.make_tensor_value_info("x0", onnx.TensorProto.DOUBLE, [7])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, [3, 5, 7])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    feeds = {"x": rng.standard_normal(shape).astype(F32),
             "s": rng.standard_normal((5, 1)).astype(F32), "hi": np.array(0.7, F32),
             "x0": np.where(rng.random(7) < 0.5, 0.0, 1.0)}  # +-inf where dividing by 0
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN and inf are values here
        fused, _ = run_passes(import_onnx(model, tmp_path), passes_before("fuse") + ["fuse"])
    ew = [n for n in fused.nodes if n.op == "pyc.Elementwise"]
    assert ew and len(ew[0].ann.program) > 3  # the chain did fuse
    env = {**fused.constants, **feeds}
    for node in fused.nodes:
        with np.errstate(invalid="ignore", divide="ignore"):
            results = registry.get(node.op).evaluate(node, [env[v] if v else None for v in node.inputs])
        env.update(zip(node.outputs, results))
    [want] = _onnxruntime(model, feeds)
    got = env[fused.outputs[0]]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def attention_model(batch: tuple[int, ...], s: int, d: int, t: int, e: int,
                    scale: float | None, mask: bool) -> onnx.ModelProto:
    """MatMul(Q, Kt) [* scale] [+ mask] -> Softmax(last axis) -> MatMul(., V), Q/Kt/V inputs."""
    nodes, scores = [helper.make_node("MatMul", ["q", "kt"], ["s0"])], "s0"
    inputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(batch) + dims)
              for n, dims in (("q", [s, d]), ("kt", [d, t]), ("v", [t, e]))]
    inits = []
    if scale is not None:
        inits.append(onnx.numpy_helper.from_array(np.array(scale, F32), "scale"))
        nodes.append(helper.make_node("Mul", [scores, "scale"], ["s1"]))
        scores = "s1"
    if mask:
        inputs.append(helper.make_tensor_value_info("mask", onnx.TensorProto.FLOAT, [s, t]))
        nodes.append(helper.make_node("Add", [scores, "mask"], ["s2"]))
        scores = "s2"
    nodes += [helper.make_node("Softmax", [scores], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "v"], ["y"])]
    graph = helper.make_graph(nodes, "attention", inputs, [helper.make_tensor_value_info(
        "y", onnx.TensorProto.FLOAT, list(batch) + [s, e])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def attention_feeds(model: onnx.ModelProto, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for value in model.graph.input:
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = rng.standard_normal(shape).astype(F32)
    if "mask" in feeds:  # an additive mask as exporters make it: 0 or the lowest float
        feeds["mask"] = np.where(rng.random(feeds["mask"].shape) < 0.8, 0.0,
                                 np.finfo(F32).min).astype(F32)
    return feeds


def test_attention_reference(rng: np.random.Generator, tmp_path) -> None:  # noqa: ANN001
    """pyc.Attention's reference, with the score program the fusion gave it (scale, mask),
    equals onnxruntime on the unfused pattern."""
    model = attention_model((2, 3), 5, 4, 7, 6, 0.35, True)
    feeds = attention_feeds(model, rng)
    fused, _ = run_passes(import_onnx(model, tmp_path),
                          passes_before("fuse_attention") + ["fuse_attention"])
    [node] = fused.nodes
    assert node.op == "pyc.Attention" and len(node.ann.epilogue) == 2
    env = {**fused.constants, **feeds}
    [got] = registry.get(node.op).evaluate(node, [env[v] for v in node.inputs])
    [want] = _onnxruntime(model, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_copy_reference(rng: np.random.Generator) -> None:
    """pyc.Copy materializes its input, in the shape a `shape` attribute gives (a view's)."""
    from pyc_cli.ir.graph import Node

    x = rng.standard_normal((3, 1, 10)).astype(F32)
    opdef = registry.get("pyc.Copy")
    [same] = opdef.evaluate(Node("pyc.Copy", "n", ["x"], ["y"], {}), [x])
    [shaped] = opdef.evaluate(Node("pyc.Copy", "n", ["x"], ["y"], {"shape": [5, 6]}), [x])
    assert np.array_equal(same, x) and not np.shares_memory(same, x)
    assert np.array_equal(shaped, x.reshape(5, 6)) and not np.shares_memory(shaped, x)


def test_blocked_layout_references(rng: np.random.Generator) -> None:
    """The blocked layout's ops (the CPU target's assign_layouts pass): Reorder puts channel
    c * b + l of NCHW at [n, b, h, w, l] and back; ConvBlocked and PoolBlocked are their ONNX
    op on the plain tensor, in blocks (against onnxruntime's Conv and MaxPool)."""
    from helpers import init, make_model, vinfo

    from pyc_cli.ir.graph import Node

    x = rng.standard_normal((2, 32, 5, 7)).astype(F32)
    w = rng.standard_normal((48, 32, 3, 3)).astype(F32)
    b = rng.standard_normal(48).astype(F32)
    [blocked] = registry.get("pyc.Reorder").evaluate(
        Node("pyc.Reorder", "r", ["x"], ["y"], {"to": "blocked", "block": 16}), [x])
    assert blocked.shape == (2, 2, 5, 7, 16) and blocked[1, 1, 3, 4, 5] == x[1, 21, 3, 4]
    [plain] = registry.get("pyc.Reorder").evaluate(
        Node("pyc.Reorder", "r", ["x"], ["y"], {"to": "plain"}), [blocked])
    assert np.array_equal(plain, x)
    conv = {"kernel_shape": [3, 3], "strides": [2, 1], "pads": [1, 0, 1, 2]}
    [got] = registry.get("pyc.ConvBlocked").evaluate(
        Node("pyc.ConvBlocked", "c", ["x", "w", "b"], ["y"], {**conv, "block": 16}), [blocked, w, b])
    [want] = _onnxruntime(make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], **conv)],
                                     [vinfo("x", x.shape)], [vinfo("y", (2, 48, 3, 7))],
                                     [init("w", w), init("b", b)]), {"x": x})
    np.testing.assert_allclose(got, registry.get("pyc.Reorder").evaluate(
        Node("pyc.Reorder", "r", ["x"], ["y"], {"to": "blocked", "block": 16}), [want])[0],
        rtol=1e-4, atol=1e-4)
    pool = {"kernel_shape": [2, 3], "strides": [2, 2], "pads": [0, 1, 1, 1]}
    [pooled] = registry.get("pyc.PoolBlocked").evaluate(
        Node("pyc.PoolBlocked", "p", ["x"], ["y"], {**pool, "pool": "MaxPool", "block": 16}),
        [blocked])
    [want] = _onnxruntime(make_model([helper.make_node("MaxPool", ["x"], ["y"], **pool)],
                                     [vinfo("x", x.shape)], [vinfo("y", (2, 32, 3, 4))]), {"x": x})
    assert np.array_equal(registry.get("pyc.Reorder").evaluate(
        Node("pyc.Reorder", "r", ["x"], ["y"], {"to": "plain"}), [pooled])[0], want)


# ---------------------------------------------------------------- every other op: generated nodes

TABLE_OPS = {case.op for case in CASES}
# the other registered ONNX ops: their references are checked on nodes the fuzz generator's
# per-op specs produce (random attributes, shapes with 1s and primes, every dtype the op accepts)
GENERIC_OPS = sorted(op for op, opdef in registry.all_ops().items()
                     if not opdef.domain and op not in TABLE_OPS and op not in NOT_IN_TABLE)
# the table's ops on generated nodes too (random attributes the table may not list)
GENERATED_OPS = sorted(set(GENERIC_OPS) | (TABLE_OPS - {"ConvTranspose"}))  # (no spec: slow)
GENERATED_GRAPHS = 2  # per op and run, each of 1 to 5 nodes


@pytest.mark.parametrize("op", GENERATED_OPS)
def test_generated_nodes_match_onnxruntime(op: str, rng: np.random.Generator, tmp_path) -> None:  # noqa: ANN001
    """Each node of a generated graph of `op`, fed onnxruntime's values of its inputs, gives
    onnxruntime's outputs through the op's reference, within the fuzz oracle's tolerance table
    (float32 rtol 1e-4, atol 1e-5 times the largest magnitude and the reduction scale; float64
    rtol 1e-9; exact for integers and booleans). Where onnxruntime differs, ONNX's reference
    evaluator decides, as in the fuzz oracle (onnxruntime's Shrink on float64 rounds its result
    to float32, for one)."""
    from pyc_cli.testing.fuzz.generate import GenerationFailed, generate
    from pyc_cli.testing.fuzz.oracle import Tolerance, compare, reference_outputs
    from pyc_cli.testing.fuzz.values import feeds_for

    checked = 0
    for _ in range(3 * GENERATED_GRAPHS):
        if checked == GENERATED_GRAPHS:
            break
        seed = int(rng.integers(2**31))
        try:
            model = generate(seed, only=[op]).model
        except GenerationFailed:  # a rare op (OneHot) may find no valid graph for a seed
            continue
        checked += 1
        values = _all_values(model, feeds_for(model, seed))
        for index, node in enumerate(model.graph.node):
            single = _single(model, node, values)
            got = _evaluate_imported(single, tmp_path / f"{seed}_{index}")
            tolerance = Tolerance.of(single)
            for name in (o for o in node.output if o):
                expected, actual = values[name], got[name]
                undefined = _overflowing_integer_pow(node, values)
                if undefined is not None:  # C leaves these undefined: not compared
                    expected, actual = (np.where(undefined, 0, v).astype(v.dtype)
                                        for v in (expected, actual))
                problem = compare(name, expected, actual, tolerance)
                if problem:  # onnxruntime may be the one off: ONNX's own reference decides
                    onnx_value = dict(reference_outputs(single, {}))[name]
                    if not compare(name, onnx_value.astype(values[name].dtype), got[name], tolerance):
                        continue
                assert not problem, f"seed {seed}, node {index} ({node.op_type}): {problem}"
    assert checked == GENERATED_GRAPHS, f"only {checked} graphs of {op} could be generated"


def _overflowing_integer_pow(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> np.ndarray | None:
    """For an integer Pow, where base ** exponent lies outside int64 (or is 0 to a negative
    power): the result is undefined behaviour in C (onnxruntime's own vary by code path,
    ONNX's reference refuses negative integer powers); None for other nodes."""
    if node.op_type != "Pow" or values[node.input[0]].dtype.kind not in "iu":
        return None
    base, exponent = np.broadcast_arrays(*(values[x].astype(np.float64) for x in node.input[:2]))
    with np.errstate(all="ignore"):
        exact = np.power(base, exponent)
    return ~np.isfinite(exact) | (np.abs(exact) >= 2.0**63)


def _all_values(model: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    """Feeds, initializers and every node output, as onnxruntime computes them."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    known = {o.name for o in exposed.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in known:
                exposed.graph.output.append(onnx.ValueInfoProto(name=name, type=types[name]))
                known.add(name)
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    values.update(feeds)
    values.update(zip(names, session.run(names, feeds)))
    return values


def _single(model: onnx.ModelProto, node: onnx.NodeProto, values: dict) -> onnx.ModelProto:
    """The node alone, its inputs constants (as folding would see them)."""
    inits = [numpy_helper.from_array(np.asarray(values[i]), i) for i in dict.fromkeys(node.input) if i]
    outputs = [helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(values[o].dtype),
                                             list(values[o].shape)) for o in node.output if o]
    graph = helper.make_graph([node], "single", [], outputs, inits)
    single = helper.make_model(graph, opset_imports=list(model.opset_import))
    single.ir_version = model.ir_version
    return single


def _evaluate_imported(single: onnx.ModelProto, where) -> dict[str, np.ndarray]:  # noqa: ANN001
    """The node imported as PyC does (a Constant, or an If on a constant condition, becomes
    constants or its branch's nodes), each resulting node run by its op's reference."""
    where.mkdir(parents=True)
    graph = import_onnx(single, where)
    values = dict(graph.constants)
    for node in graph.nodes:
        opdef, inputs = registry.get(node.op), [values[i] if i else None for i in node.inputs]
        with np.errstate(all="ignore"):  # NaN and inf are values like any other here
            results = opdef.evaluate_at(node, inputs, graph.opset) \
                if isinstance(opdef, RowwiseSoftmax) else opdef.evaluate(node, inputs)
        values.update((name, np.asarray(v)) for name, v in zip(node.outputs, results) if name)
    return values


def test_dim_values_reference() -> None:
    """pyc.DimValues (issue #15): symbolic elements stay an object array of Dims (never folded
    into numbers); at an instance of the dims, the typed numbers in the node's shape."""
    from pyc_cli.ir.graph import Node
    from pyc_cli.ir.symbolic import Dim, DimBounds

    seq = Dim.var(DimBounds("seq", 1, 64))
    op = registry.get("pyc.DimValues")
    attrs = {"values": [2 * seq, 3], "shape": [2, 1], "dtype": "i64"}
    [symbolic] = op.evaluate(Node("pyc.DimValues", "d", [], ["y"], attrs), [])
    assert symbolic.dtype == object and symbolic.shape == (2, 1)
    assert symbolic[0, 0] == 2 * seq and not isinstance(symbolic[1, 0], Dim)
    at = {**attrs, "values": [2 * 5, 3], "dtype": "i32"}
    [numbers] = op.evaluate(Node("pyc.DimValues", "d", [], ["y"], at), [])
    assert numbers.dtype == np.int32 and numbers.tolist() == [[10], [3]]


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_, np.uint8])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 1, 4), (1, 1)])
def test_nonzero_reference(dtype: type, shape: tuple, rng: np.random.Generator) -> None:
    """NonZero's reference against onnxruntime on random inputs about half zeros (and an all
    zero one), every element type class it takes."""
    opdef = registry.get("NonZero")
    node_proto = helper.make_node("NonZero", ["x"], ["y"])
    x_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model = helper.make_model(helper.make_graph(
        [node_proto], "nz", [helper.make_tensor_value_info("x", x_type, list(shape))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.INT64, [len(shape), "n"])]),
        opset_imports=[helper.make_opsetid("", 17)])
    from pyc_cli.ir.graph import Node

    node = Node("NonZero", "nz", ["x"], ["y"])
    for x in (rng.integers(-3, 3, shape) * (rng.random(shape) < 0.5), np.zeros(shape)):
        x = x.astype(dtype)
        [want] = _onnxruntime(model, {"x": x})
        [got] = opdef.evaluate(node, [x])
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_run_time_if_reference(rng) -> None:  # noqa: ANN001
    """pyc.If(cond, then..., else...) gives the then operands where cond holds, else the else
    operands (output by output)."""
    from pyc_cli.ir.graph import Node

    then = [rng.standard_normal((2, 3)).astype(F32), rng.standard_normal(4).astype(F32)]
    other = [rng.standard_normal((2, 3)).astype(F32), rng.standard_normal(4).astype(F32)]
    node = Node("pyc.If", "pick", ["c", "t0", "t1", "e0", "e1"], ["y0", "y1"])
    for cond, want in ((True, then), (False, other)):
        got = registry.get("pyc.If").evaluate(node, [np.array(cond), *then, *other])
        assert len(got) == 2
        for value, expected in zip(got, want):
            np.testing.assert_array_equal(value, expected)
