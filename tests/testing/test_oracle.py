"""The tolerance table of the fuzz oracle."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from pyc_cli.testing.fuzz.oracle import Tolerance, compare, compare_all, judge, ort_outputs


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


def _argmin_model() -> onnx.ModelProto:
    node = helper.make_node("ArgMin", ["x"], ["i"], axis=1, keepdims=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("i", TensorProto.INT64, [2, 1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_an_index_between_values_equal_within_tolerance_is_ok() -> None:
    """An ArgMin whose input has a tie within tolerance may pick either index; one whose pick
    is a clearly larger value is still PyC's mismatch."""
    model = _argmin_model()
    x = np.array([[0.5, 0.2, 0.9, 0.2], [1.0, -3.0, 2.0, 0.0]], np.float32)
    feeds = {"x": x}
    ort = [("i", np.array([[1], [1]], np.int64))]
    tie_pick = [("i", np.array([[3], [1]], np.int64))]
    assert judge(model, feeds, ort, tie_pick, Tolerance()).cls == "ok"
    wrong_pick = [("i", np.array([[1], [3]], np.int64))]
    assert judge(model, feeds, ort, wrong_pick, Tolerance()).cls == "mismatch"


def test_nan_against_inf_from_an_overflowing_sum_is_undecided_not_a_pass() -> None:
    """FLT_MAX + FLT_MAX - inf is NaN or -inf by the order of accumulation: undecided. A finite
    value where the reference has NaN stays PyC's mismatch."""
    node = helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    big = np.finfo(np.float32).max
    feeds = {"x": np.array([big, big, -np.inf], np.float32)}
    ort = [("y", np.array(np.nan, np.float32))]
    verdict = judge(model, feeds, ort, [("y", np.array(-np.inf, np.float32))], Tolerance())
    assert verdict.cls == "undecided" and "order of accumulation" in verdict.detail
    assert judge(model, feeds, ort, [("y", np.array(0.0, np.float32))], Tolerance()).cls == "mismatch"


def _scaled_fmod_model() -> onnx.ModelProto:
    """y = fmod(x * s, w), then z = y + 1 (a remainder of a computed dividend, and downstream)."""
    nodes = [helper.make_node("Mul", ["x", "s"], ["p"]),
             helper.make_node("Mod", ["p", "w"], ["y"], fmod=1),
             helper.make_node("Add", ["y", "one"], ["z"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [3])],
        initializer=[onnx.numpy_helper.from_array(np.array(0.87, np.float32), "s"),
                     onnx.numpy_helper.from_array(np.array([-1.43, 0.7, 2.5], np.float32), "w"),
                     onnx.numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_remainder_of_a_dividend_beyond_its_divisor_tolerance_is_ok() -> None:
    """fmod(-2.98e38, -1.43) depends on the dividend's last bit (fuzz seed 1427541355): any valid
    remainder is right, values downstream of one are undecided; an invalid remainder (|r| > |w|, or the
    wrong sign) or a difference at an ordinary dividend stays PyC's mismatch."""
    model = _scaled_fmod_model()
    feeds = {"x": np.array([-3.4e38, 1.5, 2.0], np.float32)}
    ort = ort_outputs(model.SerializeToString(), feeds)
    y, z = ort[0][1], ort[1][1]
    moved = -0.36 if abs(y[0] + 0.36) > 0.1 else -1.0  # another valid remainder of x[0] * s

    def verdict(first: float, second: float | None = None) -> str:
        other = y.copy()
        other[0] = first
        other[1] = y[1] if second is None else second
        return judge(model, feeds, ort, [("y", other), ("z", z)], Tolerance()).cls

    assert verdict(moved) == "ok"
    assert verdict(-1.5) == "mismatch"  # beyond the divisor
    assert verdict(-moved) == "mismatch"  # fmod keeps the dividend's sign
    assert verdict(moved, y[1] / 2) == "mismatch"  # 1.305 mod 0.7 is determined
    shifted = y.copy()
    shifted[0] = moved
    assert judge(model, feeds, ort, [("y", shifted), ("z", shifted + 1)], Tolerance()).cls == "undecided"
    assert judge(model, feeds, ort, [("y", y), ("z", shifted + 6)], Tolerance()).cls == "mismatch"


def test_a_difference_where_onnxruntime_itself_is_ill_conditioned_is_undecided() -> None:
    """sigmoid((a + b) * 1e30) with b = -a is 0.5 only while a and b cancel exactly: an ulp
    either way gives 0 or 1 (as fused multiply-add did in an LSTM, seed 3051119508). A
    difference there is undecided; one at a well-conditioned element stays a mismatch."""
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Mul", ["s", "k"], ["p"]),
             helper.make_node("Sigmoid", ["p"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=[onnx.numpy_helper.from_array(np.array(1e30, np.float32), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"a": np.array([3e38, 1.0], np.float32), "b": np.array([-3e38, 1.0], np.float32)}
    ort = ort_outputs(model.SerializeToString(), feeds)
    assert ort[0][1].tolist() == [0.5, 1.0]
    verdict = judge(model, feeds, ort, [("y", np.array([1.0, 1.0], np.float32))], Tolerance())
    assert verdict.cls == "undecided" and "ill-conditioned" in verdict.detail
    assert judge(model, feeds, ort, [("y", np.array([1.0, 0.5], np.float32))], Tolerance()).cls == "mismatch"
