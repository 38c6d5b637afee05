"""The ONNX importer: what it reads into PyC IR, and what it refuses (with which code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pyc_cli.errors import PycError
from pyc_cli.frontend.onnx_import import import_model
from pyc_cli.ir.types import DType, TensorType


def _save(tmp_path: Path, nodes: list, inputs: list, outputs: list, inits: list | None = None,
          opset: int = 17) -> Path:
    graph = helper.make_graph(nodes, "imported", inputs, outputs, initializer=inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


def _vi(name: str, shape: list, dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def test_reads_opset_inputs_outputs_initializers_and_constants(tmp_path: Path) -> None:
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(
                 np.array(2.5, np.float32)), name="const_k"),
             helper.make_node("Add", ["x", "w"], ["a"], name="add"),
             helper.make_node("Mul", ["a", "k"], ["y"], name="mul")]
    path = _save(tmp_path, nodes, [_vi("x", [2, 3])], [_vi("y", [2, 3])],
                 [numpy_helper.from_array(weight, "w")], opset=13)
    graph = import_model(path)
    assert graph.opset == 13 and graph.name == "imported"
    assert graph.inputs == ["x"] and graph.outputs == ["y"]
    np.testing.assert_array_equal(graph.constants["w"], weight)
    assert graph.constants["k"].shape == () and float(graph.constants["k"]) == 2.5
    assert [n.op for n in graph.nodes] == ["Add", "Mul"]  # the Constant node became a constant
    assert graph.types["y"] == TensorType(DType.F32, (2, 3))


def test_initializer_listed_as_input_is_a_constant(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["w"], ["y"], name="r")]
    path = _save(tmp_path, nodes, [_vi("w", [2])], [_vi("y", [2])],
                 [numpy_helper.from_array(np.array([-1.0, 1.0], np.float32), "w")])
    graph = import_model(path)
    assert graph.inputs == [] and "w" in graph.constants


def test_missing_node_names_become_unique_duplicates_are_refused(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"], name="Relu_0"),
             helper.make_node("Relu", ["b"], ["y"], name="n")]
    graph = import_model(_save(tmp_path, nodes, [_vi("x", [2])], [_vi("y", [2])]))
    names = [n.name for n in graph.nodes]
    assert len(set(names)) == 3 and names[1:] == ["Relu_0", "n"]
    nodes[1].name = "n"  # two nodes named "n": onnxruntime refuses the model, so does PyC
    with pytest.raises(PycError) as info:
        import_model(_save(tmp_path, nodes, [_vi("x", [2])], [_vi("y", [2])]))
    assert info.value.code == "E003" and "'n'" in info.value.what


def test_symbolic_dims_are_fixed_by_input_shapes(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    path = _save(tmp_path, nodes, [_vi("x", ["batch", 3])], [_vi("y", ["batch", 3])])
    graph = import_model(path, {"x": (7, 3)})
    assert graph.types["y"].shape == (7, 3)
    with pytest.raises(PycError) as info:
        import_model(path)
    assert info.value.code == "E005" and "batch" in info.value.what
    with pytest.raises(PycError) as info:
        import_model(path, {"x": (7, 4)})  # contradicts the static dim 3
    assert info.value.code == "E006"


def test_opset_outside_the_supported_range(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    path = _save(tmp_path, nodes, [_vi("x", [2])], [_vi("y", [2])], opset=6)
    with pytest.raises(PycError) as info:
        import_model(path)
    assert info.value.code == "E010" and "opset 6" in info.value.what


def test_unsupported_input_element_type(tmp_path: Path) -> None:
    nodes = [helper.make_node("Identity", ["x"], ["y"], name="i")]
    path = _save(tmp_path, nodes, [_vi("x", [2], TensorProto.STRING)],
                 [_vi("y", [2], TensorProto.STRING)])
    with pytest.raises(PycError) as info:
        import_model(path)
    assert info.value.code == "E008" and "STRING" in info.value.what


def test_checker_failure_is_reported(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    graph = helper.make_graph(nodes, "g", [_vi("x", [2])], [_vi("y", [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 1  # far too old for opset 17
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(PycError) as info:
        import_model(path)
    assert info.value.code == "E003"


def test_inputs_of_types_the_schema_refuses_are_e009(tmp_path: Path) -> None:
    """As onnxruntime refuses them before running: indices that are floats (ScatterElements'
    inputs in the wrong order), and operands of one type parameter with two types."""
    indices = numpy_helper.from_array(np.zeros((5, 2), np.int64), "i")
    swapped = [helper.make_node("ScatterElements", ["d", "u", "i"], ["y"], axis=1, name="scatter")]
    path = _save(tmp_path, swapped, [_vi("d", [5, 7]), _vi("u", [5, 2])], [_vi("y", [5, 7])],
                 [indices])
    with pytest.raises(PycError) as info:
        import_model(path)
    assert info.value.code == "E009" and "input 1 ('u')" in info.value.what
    assert "tensor(int64)" in info.value.what and "scatter" in info.value.where
    mixed = [helper.make_node("Add", ["x", "n"], ["y"], name="add")]
    path = _save(tmp_path, mixed, [_vi("x", [3]), _vi("n", [3], TensorProto.INT64)], [_vi("y", [3])])
    with pytest.raises(PycError) as info:
        import_model(path)
    assert info.value.code == "E009" and "'x' and 'n' of one type" in info.value.what
