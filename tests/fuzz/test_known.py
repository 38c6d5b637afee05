"""Known-defect labels: every problem of an outcome must be explained, or it is new."""

from __future__ import annotations

from onnx import TensorProto, helper

from pyc_cli.testing.fuzz.known import known_defect
from pyc_cli.testing.fuzz.runner import Outcome

MODEL = helper.make_model(helper.make_graph(
    [helper.make_node("Relu", ["x"], ["y"])], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]))


def test_every_problem_explained_gives_the_joined_labels() -> None:
    detail = ("output names/order ['y', 'copy_x_out'] != ['y', 'x']; "
              "y: NaN at 1 positions where the other is not [reference agrees with onnxruntime]")
    assert known_defect(Outcome("balanced", "special", "mismatch", detail), MODEL) == \
        "nan-inf-propagation+output-misnamed-copy"


def test_one_unexplained_problem_makes_it_new() -> None:
    detail = ("output names/order ['y', 'copy_x_out'] != ['y', 'x']; "
              "y: 1/2 elements beyond tolerance, worst at [0]: got 1.0, expected 2.0")
    assert known_defect(Outcome("balanced", "normal", "mismatch", detail), MODEL) == ""
    assert known_defect(Outcome("balanced", "normal", "crash", "Traceback ..."), MODEL) == ""


def test_node_predicates_narrow_a_signature() -> None:
    detail = "y: 1/2 elements beyond tolerance, worst at [0]: got 1.0, expected 2.0"
    assert known_defect(Outcome("balanced", "normal", "mismatch", detail), MODEL) == ""
    float64_leaky = helper.make_model(helper.make_graph(
        [helper.make_node("LeakyRelu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2])]))
    assert known_defect(Outcome("balanced", "normal", "mismatch", detail), float64_leaky) == \
        "float64-alpha-default"
