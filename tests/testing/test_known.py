"""Known-defect labels: every problem of an outcome must be explained, or it is new.

The shipped list is empty (every defect found so far is fixed); these tests plant entries."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from pyc_cli.testing.fuzz import known
from pyc_cli.testing.fuzz.known import KnownDefect, known_defect
from pyc_cli.testing.fuzz.runner import Outcome

MODEL = helper.make_model(helper.make_graph(
    [helper.make_node("Relu", ["x"], ["y"])], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]))


def _has_leaky_relu(node: onnx.NodeProto, model: onnx.ModelProto) -> bool:
    return node.op_type == "LeakyRelu"


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(known, "KNOWN_DEFECTS", (
        KnownDefect("misnamed", ("mismatch",), r"^output names/order .*'copy_\w+_out'"),
        KnownDefect("nan", ("mismatch",), r": NaN at"),
        KnownDefect("leaky", ("mismatch",), r"beyond tolerance", nodes=("leaky",)),
    ))
    monkeypatch.setitem(known.NODE_PREDICATES, "leaky", _has_leaky_relu)


def test_every_problem_explained_gives_the_joined_labels(planted: None) -> None:
    detail = ("output names/order ['y', 'copy_x_out'] != ['y', 'x']; "
              "y: NaN at 1 positions where the other is not [reference agrees with onnxruntime]")
    assert known_defect(Outcome("balanced", "special", "mismatch", detail), MODEL) == "misnamed+nan"


def test_one_unexplained_problem_makes_it_new(planted: None) -> None:
    detail = ("output names/order ['y', 'copy_x_out'] != ['y', 'x']; "
              "y: 1/2 elements beyond tolerance, worst at [0]: got 1.0, expected 2.0")
    assert known_defect(Outcome("balanced", "normal", "mismatch", detail), MODEL) == ""
    assert known_defect(Outcome("balanced", "normal", "crash", "Traceback ..."), MODEL) == ""


def test_node_predicates_narrow_a_signature(planted: None) -> None:
    detail = "y: 1/2 elements beyond tolerance, worst at [0]: got 1.0, expected 2.0"
    assert known_defect(Outcome("balanced", "normal", "mismatch", detail), MODEL) == ""
    leaky = helper.make_model(helper.make_graph(
        [helper.make_node("LeakyRelu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2])]))
    assert known_defect(Outcome("balanced", "normal", "mismatch", detail), leaky) == "leaky"


def test_the_shipped_list_is_empty() -> None:
    """Every defect the fuzzer found is fixed; a new entry must come with its fix in flight."""
    assert known.KNOWN_DEFECTS == ()
