"""Symbolic dims through the front end (issue #15, point 1, first steps): shape inference keeps
named dims as expressions, every symbolic type is checked against concrete instances, and a
node that cannot take symbolic dims yet is refused with PYC-E051 naming it, never compiled
with its dims' upper bounds baked in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from pyc_cli import api
from pyc_cli.errors import PycError
from pyc_cli.frontend.onnx_import import import_model
from pyc_cli.ir.symbolic import Dim, parse_input_shapes
from pyc_cli.ir.types import TensorType
from pyc_cli.ops import registry
from tests.helpers import init, make_model, rand, write_model

MODELS = Path(__file__).resolve().parents[1] / "models"


def _chain(tmp_path: Path) -> Path:
    """x[N, 6] -> Relu -> Add(bias[6]) -> MatMul(w[6, 3]) -> Softmax."""
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "b"], ["a"], name="add"),
             helper.make_node("MatMul", ["a", "w"], ["m"], name="matmul"),
             helper.make_node("Softmax", ["m"], ["y"], name="softmax", axis=-1)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    model = make_model(nodes, [x], [y],
                       [init("b", rand(rng, 6)), init("w", rand(rng, 6, 3))])
    return write_model(model, tmp_path)


def test_shape_inference_keeps_named_dims(tmp_path: Path) -> None:
    shapes, _ = parse_input_shapes(["x=batch:1..16,6"])
    graph = import_model(_chain(tmp_path), shapes)
    batch = shapes["x"][0]
    assert isinstance(batch, Dim)
    assert graph.types["r"].shape == (batch, 6) and graph.types["m"].shape == (batch, 3)
    assert str(graph.types["y"]) == "f32[batch,3]"
    # sizes computed by code that knows nothing of symbolic dims are the upper bounds
    assert int(graph.types["m"].nbytes) == 16 * 3 * 4


def test_a_rule_that_loses_the_dims_is_caught(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A shape rule computing with a dim's upper bound (int(d)) gives the right shape at the
    top of the box only: the instance check finds the difference elsewhere and names the node."""
    relu = registry.get("Relu")
    infer = relu.infer

    def lossy(node, types, values):  # type: ignore[no-untyped-def]
        out = infer(node, types, values)[0]
        return [TensorType(out.dtype, tuple(int(d) for d in out.shape))]

    monkeypatch.setattr(relu, "infer", lossy)
    shapes, _ = parse_input_shapes(["x=batch:1..16,6"])
    with pytest.raises(PycError) as info:
        import_model(_chain(tmp_path), shapes)
    assert info.value.code == "E051" and "'relu'" in info.value.where
    assert "f32[16,6] symbolically, which at batch=1 is [16, 6], but the op's rule gives [1, 6]" \
        in info.value.what


def test_a_node_without_a_symbolic_kernel_is_refused(tmp_path: Path) -> None:
    """No kernel reads run-time dims yet: the build stops at the first node that would bake the
    upper bound in, naming it (never an artifact that is wrong for smaller shapes)."""
    shapes, _ = parse_input_shapes(["x=batch:1..16,6"])
    with pytest.raises(PycError) as info:
        api.compile_graph(_chain(tmp_path), "balanced", shapes, "cpu")
    assert info.value.code == "E051" and "reads symbolic dims (batch)" in info.value.what
    assert info.value.where == "node 'add'"  # the Relu is fused into the Add's loop


def test_shape_values_derived_from_symbolic_dims_are_refused_by_name() -> None:
    """The toy encoder reshapes by Shape-derived values; those are not symbolic yet (point 2),
    so its first Reshape is refused by name rather than reshaped to the upper bound."""
    shapes, _ = parse_input_shapes(["input_ids=batch:1..4,64", "attention_mask=batch,64"])
    with pytest.raises(PycError) as info:
        api.compile_graph(MODELS / "transformer.onnx", "balanced", shapes, "cpu")
    assert info.value.code == "E051" and "Reshape" in info.value.what
