"""Per-node verdicts of the fuzz oracle: a graph-level difference pinned to the node that computes
differently given the same inputs (PyC's side is played by onnxruntime with planted changes)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from pyc_cli.testing.fuzz.oracle import Outputs, Tolerance, ort_outputs
from pyc_cli.testing.fuzz.per_node import per_node_verdict

F = TensorProto.FLOAT


def _chain() -> onnx.ModelProto:
    """y = Atan(Relu(MatMul(x, w)))."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
             helper.make_node("Relu", ["m"], ["r"], name="relu"),
             helper.make_node("Atan", ["r"], ["y"], name="atan")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [2, 3])],
                              [helper.make_tensor_value_info("y", F, [2, 2])],
                              [onnx.numpy_helper.from_array(
                                  np.array([[1.0, 2.0], [-3e38, 0.5], [0.25, 1.0]], np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _pyc(changes: dict[str, Callable[[np.ndarray], np.ndarray]]) -> Callable[..., Outputs]:
    """A stand-in for PyC: onnxruntime's values, node by node, with `changes` applied to the
    named values (and everything downstream recomputed from the changed value)."""
    def run(model_bytes: bytes, feed: dict[str, np.ndarray]) -> Outputs:
        model = onnx.load_from_string(model_bytes)
        values = dict(feed)
        for node in model.graph.node:
            single = helper.make_model(
                helper.make_graph([node], "n", [helper.make_tensor_value_info(i, F, None)
                                                for i in node.input if i in values],
                                  [helper.make_tensor_value_info(o, F, None) for o in node.output],
                                  [t for t in model.graph.initializer if t.name in node.input]),
                opset_imports=list(model.opset_import))
            single.ir_version = 8
            for name, value in ort_outputs(single.SerializeToString(),
                                           {i: values[i] for i in node.input if i in values}):
                values[name] = changes.get(name, lambda v: v)(value)
        return [(o.name, values[o.name]) for o in model.graph.output]
    return run


def _verdict(feed: dict[str, np.ndarray], changes: dict) -> tuple[str, str] | None:
    model = _chain()
    pyc_run = _pyc(changes)
    pyc = pyc_run(model.SerializeToString(), feed)
    verdict = per_node_verdict(model, feed, pyc, Tolerance.of(model), pyc_run)
    return None if verdict is None else (verdict.cls, verdict.detail)


def test_a_node_that_computes_wrong_is_named_as_the_mismatch() -> None:
    feed = {"x": np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32) * 1e-38}
    cls, detail = _verdict(feed, {"r": lambda v: v + np.float32(0.5)})
    assert cls == "mismatch" and "relu (Relu)" in detail and "atan" not in detail


def test_an_overflowing_sum_in_another_order_is_undecided() -> None:
    """Row 0, column 0: inf * 1 + 1.2 * -3e38 is inf exactly (float64, or a fused multiply-add)
    and NaN where the product overflows before the add: whichever one onnxruntime gives, the
    other one from PyC is not a defect."""
    feed = {"x": np.array([[np.inf, 1.2, 0.5], [1.0, 1e-38, 2.0]], np.float32)}
    model = _chain()
    model.graph.output.append(helper.make_tensor_value_info("m", F, [2, 2]))
    theirs = dict(ort_outputs(model.SerializeToString(), feed))["m"][0, 0]
    other = np.float32(np.nan) if np.isinf(theirs) else np.float32(np.inf)
    cls, detail = _verdict(feed, {"m": lambda v: np.where(np.arange(4).reshape(2, 2) == 0, other, v)})
    assert cls == "undecided" and "mm (MatMul)" in detail and "sum|terms|" in detail
    # the same value where no term is huge is PyC's mismatch
    calm = {"x": np.array([[np.inf, 1.2, 0.5], [1.0, 1e-38, 2.0]], np.float32)}
    calm_model = _chain()
    calm_model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(
        np.array([[1.0, 2.0], [-3.0, 0.5], [0.25, 1.0]], np.float32), "w"))
    pyc_run = _pyc({"m": lambda v: np.where(np.arange(4).reshape(2, 2) == 0, np.float32(np.nan), v)})
    verdict = per_node_verdict(calm_model, calm, pyc_run(calm_model.SerializeToString(), calm),
                               Tolerance.of(calm_model), pyc_run)
    assert verdict is not None and verdict.cls == "mismatch", verdict


def test_rounding_amplified_downstream_is_undecided_when_every_node_agrees() -> None:
    """Every node matches onnxruntime on PyC's own inputs: the graph only amplifies rounding."""
    feed = {"x": np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32) * 1e-38}
    cls, detail = _verdict(feed, {"m": lambda v: v * np.float32(1 + 2e-6)})
    assert cls == "undecided" and "every node agrees" in detail


def test_no_verdict_when_the_exposing_build_computes_otherwise() -> None:
    model = _chain()
    feed = {"x": np.ones((2, 3), np.float32)}
    pyc = [("y", np.zeros((2, 2), np.float32))]  # what the original build gave
    assert per_node_verdict(model, feed, pyc, Tolerance.of(model), _pyc({})) is None
