"""Older op versions that the ONNX node tests (written at the newest opset) do not reach: attribute
forms that later became inputs, and Softmax's 2-D coercion before version 13. Each model is
built with PyC and compared with onnxruntime (onnx's reference evaluator ignores the pre-13
Softmax coercion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import onnxruntime_outputs
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.errors import PycError

X = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)

# name -> (opset, node, output shape)
CASES = {
    "softmax_v11_coerces_to_2d": (11, helper.make_node("Softmax", ["x"], ["y"], axis=1), (2, 3, 4)),
    "logsoftmax_v11_default_axis": (11, helper.make_node("LogSoftmax", ["x"], ["y"]), (2, 3, 4)),
    "hardmax_v11_axis_2": (11, helper.make_node("Hardmax", ["x"], ["y"], axis=2), (2, 3, 4)),
    "clip_v6_attributes": (7, helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.25), (2, 3, 4)),
    "squeeze_v11_axes_attribute": (
        11, helper.make_node("Squeeze", ["u"], ["y"], axes=[1]), (2, 3, 4)),
    "reduce_sum_v11_axes_attribute": (
        11, helper.make_node("ReduceSum", ["x"], ["y"], axes=[0, 2], keepdims=0), (3,)),
    "reduce_max_v13_axes_attribute": (
        13, helper.make_node("ReduceMax", ["x"], ["y"], axes=[-1], keepdims=1), (2, 3, 1)),
    "slice_v9_attributes": (
        9, helper.make_node("Slice", ["x"], ["y"], starts=[1, 0], ends=[3, -1], axes=[1, 2]), (2, 2, 3)),
    "split_v11_attribute": (
        11, helper.make_node("Split", ["x"], ["y", "z"], axis=2, split=[1, 3]), (2, 3, 1)),
    "pad_v2_attributes": (
        7, helper.make_node("Pad", ["x"], ["y"], pads=[0, 1, 0, 0, 0, 2], value=1.5), (2, 4, 6)),
    "unsqueeze_v11_axes_attribute": (
        11, helper.make_node("Unsqueeze", ["x"], ["y"], axes=[0, 3]), (1, 2, 3, 1, 4)),
}


def _model(opset: int, node: onnx.NodeProto, out_shape: tuple[int, ...]) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                            [2, 1, 3, 4] if name == "u" else list(X.shape))
              for name in node.input]
    shapes = [out_shape, (2, 3, 3)]  # Split's second output is the only second output here
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))
               for name, shape in zip(node.output, shapes)]
    graph = helper.make_graph([node], "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


@pytest.mark.parametrize("name", sorted(CASES))
def test_old_op_version_matches_reference(name: str, tmp_path: Path) -> None:
    opset, node, out_shape = CASES[name]
    model = _model(opset, node, out_shape)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    feeds = {n: (X.reshape(2, 1, 3, 4) if n == "u" else X) for n in node.input}
    expected = list(onnxruntime_outputs(path, feeds).values())
    pyc_cli.build(path, tmp_path / "a")
    got = pyc_cli.load(tmp_path / "a").run(feeds)
    assert got[node.output[0]].shape == out_shape
    for output, want in zip(node.output, expected):
        np.testing.assert_allclose(got[output], want, rtol=1e-5, atol=1e-6)


def test_op_version_outside_the_unit_range_is_rejected_with_e010(tmp_path: Path) -> None:
    """The importer checks the schema version an op has at the model's opset against the unit's
    since..until range: Mish-18 compiles, and is refused once the unit claims versions 19+."""
    node = helper.make_node("Mish", ["x"], ["y"])
    model = _model(18, node, tuple(X.shape))
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    pyc_cli.build(path, tmp_path / "ok")
    from pyc_cli.ops import registry

    mish = registry.get("Mish")
    old_since = mish.since
    try:
        type(mish).since = 19  # pretend the unit implements Mish from version 19 only
        with pytest.raises(PycError) as error:
            pyc_cli.build(path, tmp_path / "refused")
    finally:
        type(mish).since = old_since
    assert error.value.code == "E010"
    assert "Mish-18" in error.value.what
