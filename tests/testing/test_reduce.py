"""The shrinker and `pyc reduce` on planted conditions."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from pyc_cli.cli.main import main
from pyc_cli.errors import PycError
from pyc_cli.testing.reduce import as_only_output, cone_size, parse_condition, reduce_model, value_types


def planted_model() -> onnx.ModelProto:
    """Det (unsupported by PyC) deep inside a chain, beside an unrelated branch."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Add", ["a", "w"], ["b"]),
        helper.make_node("Sigmoid", ["b"], ["c"]),
        helper.make_node("Det", ["c"], ["d"]),
        helper.make_node("Neg", ["d"], ["e"]),
        helper.make_node("Exp", ["x"], ["f"]),
        helper.make_node("ReduceSum", ["f"], ["g"], keepdims=0),
        helper.make_node("Abs", ["e"], ["h"]),
    ]
    graph = helper.make_graph(
        nodes, "planted", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 5, 5])],
        [helper.make_tensor_value_info("h", onnx.TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("g", onnx.TensorProto.FLOAT, [])],
        initializer=[numpy_helper.from_array(np.ones((5, 5), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def test_unsupported_op_deep_inside_shrinks_to_that_node() -> None:
    small, stats = reduce_model(planted_model(), parse_condition("PYC-E007"))
    assert [n.op_type for n in small.graph.node] == ["Det"]
    assert len(small.graph.input) == 1 and not small.graph.initializer
    assert stats.kept >= 1


def test_cone_size_counts_what_the_cone_candidate_keeps() -> None:
    """The shrinker sorts cones by this count before it copies any (a real model's weights
    copied once per value ran a reduce of MiniLM out of memory)."""
    model = planted_model()
    types = value_types(model)
    for name in "abcdefg":
        assert cone_size(model, name) == len(as_only_output(model, name, types[name]).graph.node)


def test_many_cones_are_bisected() -> None:
    """A chain longer than LINEAR_CONES: the smallest cone holding Det is found by bisection
    (a handful of checks, not one per value), then the nodes before it are cut."""
    relus = [helper.make_node("Relu", [f"v{i}"], [f"v{i + 1}"]) for i in range(40)]
    tail = [helper.make_node("Det", ["v40"], ["d"]), helper.make_node("Neg", ["d"], ["e0"])]
    tail += [helper.make_node("Neg", [f"e{i}"], [f"e{i + 1}"]) for i in range(9)]
    graph = helper.make_graph(
        relus + tail, "chain", [helper.make_tensor_value_info("v0", onnx.TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("e9", onnx.TensorProto.FLOAT, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    small, stats = reduce_model(model, parse_condition("E007"))
    assert [n.op_type for n in small.graph.node] == ["Det"]
    cones = [line for line in stats.log if line.startswith("cone of")]
    assert cones[-1] == "cone of d: 41 nodes" and len(cones) <= 6


def test_condition_must_hold_on_the_original() -> None:
    with pytest.raises(PycError) as info:
        reduce_model(planted_model(), parse_condition("E011"))
    assert info.value.code == "E050"


def test_unknown_condition_is_a_user_error() -> None:
    for text in ("sometimes", "E999"):
        with pytest.raises(PycError) as info:
            parse_condition(text)
        assert info.value.code == "E050"


def test_cli_cmd_condition_shrinks_dims_and_prints_a_repro(tmp_path: Path) -> None:
    model_path = tmp_path / "planted.onnx"
    onnx.save(planted_model(), str(model_path))
    script = tmp_path / "has_exp.py"
    script.write_text("import sys, onnx\n"
                      "m = onnx.load(sys.argv[1])\n"
                      "sys.exit(0 if any(n.op_type == 'Exp' for n in m.graph.node) else 1)\n")
    out = tmp_path / "small.onnx"
    result = CliRunner().invoke(main, ["reduce", str(model_path), "--until",
                                       f"cmd:{sys.executable} {script} $PYC_REDUCE_MODEL", "-o", str(out)])
    assert result.exit_code == 0, result.output
    small = onnx.load(str(out))
    assert [n.op_type for n in small.graph.node] == ["Exp"]
    dims = [d.dim_value for d in small.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 1]
    assert f"PYC_REDUCE_MODEL={out}" in result.output.splitlines()[-1]


def test_cli_reports_a_condition_that_does_not_hold(tmp_path: Path) -> None:
    model_path = tmp_path / "planted.onnx"
    onnx.save(planted_model(), str(model_path))
    result = CliRunner().invoke(main, ["reduce", str(model_path), "--until", "cmd:false"])
    assert result.exit_code == 2
    assert "PYC-E050" in result.output and "Traceback" not in result.output
