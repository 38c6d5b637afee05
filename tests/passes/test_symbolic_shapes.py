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
    """Where no kernel reads run-time dims (a CumSum: its row kernel bakes the sizes in), the
    build stops at that node, naming it (never an artifact that is wrong for smaller shapes);
    the chain's Relu + Add, MatMul and Softmax have such kernels (tests/dynamic/)."""
    shapes, _ = parse_input_shapes(["x=batch:1..16,6"])
    api.compile_graph(_chain(tmp_path), "balanced", shapes, "cpu")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])
    model = make_model([helper.make_node("CumSum", ["x", "axis"], ["y"], name="cumsum")], [x],
                       [y], [init("axis", np.array(1, np.int64))])
    with pytest.raises(PycError) as info:
        api.compile_graph(write_model(model, tmp_path, "r.onnx"), "balanced", shapes, "cpu")
    assert info.value.code == "E051" and "reads symbolic dims (batch)" in info.value.what
    assert info.value.where == "node 'cumsum'"


def test_an_export_with_dynamic_axes_stays_symbolic_through_every_pass() -> None:
    """The toy encoder (exported with dynamic batch and seq) computes its Reshape targets and its
    position-embedding Slice from Shape: the values stay symbolic (object arrays of Dims, never
    folded into int64 constants), every type from the embedding to the fused attention keeps
    batch and seq (each checked against concrete instances)."""
    shapes, _ = parse_input_shapes(["input_ids=batch:1..4,seq:1..64", "attention_mask=batch,seq"])
    graph, _ = api.compile_graph(MODELS / "transformer.onnx", "balanced", shapes, "cpu",
                                 stop_after="analyze_liveness")
    texts = {node.op: str(graph.types[node.outputs[0]]) for node in graph.nodes}
    assert texts["pyc.Attention"] == "f32[batch,4,seq,16]"
    assert texts["LayerNormalization"] == "f32[batch,seq,64]"
    assert texts["Reshape"] == "f32[batch,seq,64]"
    assert not any(a.dtype == object for a in graph.constants.values())
    # (that it then builds and runs: tests/dynamic/test_dynamic_encoder.py)


def test_symbolic_shape_arithmetic_is_decided_or_left_unknown() -> None:
    """Equal on shape values is folded only where the bounds decide it (a dim is never 0 when
    its lowest value is 1); where the dims' values decide it, the value is unknown at compile
    time (None), never a guess."""
    from pyc_cli.ir.graph import Node
    from pyc_cli.ops.propagate import evaluate_node

    shapes, _ = parse_input_shapes(["x=seq:1..64,batch:2..8"])
    seq, batch = shapes["x"]
    equal = registry.get("Equal")
    node = Node("Equal", "eq", ["a", "b"], ["y"], {})
    out = [TensorType.of(np.zeros(2, bool))]
    decided = evaluate_node(equal, node, [None, None], [np.array([seq, batch], dtype=object),
                                                        np.array([0, 1])], out, None)
    assert decided is not None and decided[0].tolist() == [False, False]
    undecided = evaluate_node(equal, node, [None, None], [np.array([seq], dtype=object),
                                                          np.array([1])], out, None)
    assert undecided is None


def _one_node(tmp_path: Path, node: helper.NodeProto, out_shape: list,
              extra: list | None = None) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["A", "B", "C", "D"][:len(out_shape)])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    return write_model(make_model([node], [x], [y], extra or []), tmp_path)


def test_bounds_that_include_shapes_the_model_rejects_name_the_point(tmp_path: Path) -> None:
    """A 3x3 max pool over a height whose bounds start at 1: symbolically fine, but at h=1
    the window does not fit. The refusal says at which dims' values, and to narrow them."""
    pool = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3])
    path = _one_node(tmp_path, pool, [1, 1, "H", "W"])
    shapes, _ = parse_input_shapes(["x=1,1,h:1..32,w:3..32"])
    with pytest.raises(PycError) as info:
        import_model(path, shapes)
    assert info.value.code == "E009" and info.value.what.startswith("at h=1, w=3: ")
    assert "narrow them" in info.value.hint
    shapes, _ = parse_input_shapes(["x=1,1,h:3..32,w:3..32"])
    assert str(import_model(path, shapes).types["y"]) == "f32[1,1,h - 2,w - 2]"


def test_a_decomposition_that_cannot_take_symbolic_dims_names_its_node(tmp_path: Path) -> None:
    """Trilu is decomposed into a Where over a mask constant of the input's size, which
    symbolic dims do not have: PYC-E051 naming the Trilu, not an E009 of the Where it made."""
    trilu = helper.make_node("Trilu", ["x"], ["y"], name="upper")
    shapes, _ = parse_input_shapes(["x=rows:2..8,cols:2..8"])
    with pytest.raises(PycError) as info:
        api.compile_graph(_one_node(tmp_path, trilu, ["R", "C"]), "balanced", shapes, "cpu")
    assert info.value.code == "E051" and info.value.where == "node 'upper'"
    assert "decomposition" in info.value.what


def test_identity_of_a_shape_value_stays_symbolic(tmp_path: Path) -> None:
    """Identity on a Shape's value (its elementwise reference cast the Dims to int64 and
    crashed on the object array): the Reshape target it feeds stays symbolic."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Identity", ["s"], ["t"], name="same"),
             helper.make_node("Reshape", ["x", "t"], ["y"], name="reshape")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    shapes, _ = parse_input_shapes(["x=n:1..9,4"])
    graph = import_model(write_model(make_model(nodes, [x], [y]), tmp_path), shapes)
    assert str(graph.types["y"]) == "f32[n,4]"


def test_max_min_mod_and_comparisons_of_shape_values() -> None:
    """Max/Min/Mod/Less/... on shape values: decided by the bounds element by element
    (max(seq, 1) is seq when seq >= 1; seq % 8 is an expression), unknown (None) where
    the dims' values would decide one (max(seq, 16) for seq in 1..64)."""
    from pyc_cli.ir.graph import Node
    from pyc_cli.ops.propagate import evaluate_node

    shapes, _ = parse_input_shapes(["x=seq:1..64"])
    (seq,) = shapes["x"]
    out = [TensorType.of(np.zeros(1, np.int64))]

    def run(op: str, a: object, b: object) -> list | None:
        node = Node(op, op.lower(), ["a", "b"], ["y"], {})
        got = evaluate_node(registry.get(op), node, [None, None],
                            [np.array([a], dtype=object), np.array([b])], out, None)
        return None if got is None else got[0].tolist()

    assert run("Max", seq, 1) == [seq] and run("Min", seq, 64) == [seq]
    assert run("Max", seq, 16) is None
    assert [str(v) for v in run("Mod", seq, 8)] == ["seq - 8*(seq)//8"]
    assert run("Less", seq, 65) == [1] and run("GreaterOrEqual", seq, 1) == [1]
    assert run("Less", seq, 10) is None
