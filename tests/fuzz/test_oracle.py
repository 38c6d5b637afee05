"""The tolerance table of the fuzz oracle."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from pyc_cli.testing.fuzz.oracle import Tolerance, compare, compare_all


def test_float32_within_and_beyond_tolerance() -> None:
    expected = np.array([1.0, -2.0, 1e3], np.float32)
    assert compare("y", expected, expected * np.float32(1 + 5e-5)) == ""
    assert "beyond tolerance" in compare("y", expected, expected + np.float32(0.5))


def test_nan_positions_and_infinities_must_match() -> None:
    expected = np.array([np.nan, np.inf, 1.0], np.float32)
    assert compare("y", expected, expected.copy()) == ""
    assert "NaN" in compare("y", expected, np.array([0.0, np.inf, 1.0], np.float32))
    assert "infinities" in compare("y", expected, np.array([np.nan, -np.inf, 1.0], np.float32))


def test_float16_two_ulps_and_ints_exact() -> None:
    expected = np.array([1000.0], np.float16)
    two_ulps = np.float16(1000.0 + 2 * float(np.spacing(np.float16(1000.0))))
    assert compare("y", expected, np.array([two_ulps])) == ""
    assert "exact" in compare("y", np.array([3], np.int64), np.array([4], np.int64))


def test_names_order_dtype_and_shape_are_checked() -> None:
    a = np.zeros((2,), np.float32)
    assert compare_all([("a", a)], [("b", a)], Tolerance())[0].startswith("output names/order")
    assert "dtype" in compare("a", a, a.astype(np.float64))
    assert "shape" in compare("a", a, a.reshape(1, 2))


def test_precision_comes_from_the_cone_not_the_output_type() -> None:
    """A float32 result cast to float64 is graded as float32; a pure float64 chain as float64."""
    graph = helper.make_graph(
        [helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Cast", ["e"], ["y"], to=TensorProto.DOUBLE),
         helper.make_node("Exp", ["d"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("d", TensorProto.DOUBLE, [2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2]),
         helper.make_tensor_value_info("z", TensorProto.DOUBLE, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    tolerance = Tolerance.of(model)
    expected = np.array([1.0, 2.0])
    off_by_float32_rounding = expected * (1 + 3e-7)
    assert compare("y", expected, off_by_float32_rounding, tolerance) == ""
    assert "beyond tolerance" in compare("z", expected, off_by_float32_rounding, tolerance)
