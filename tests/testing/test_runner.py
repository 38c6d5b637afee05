"""The child-process runner: classes for a model PyC compiles right and one it refuses."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from pyc_cli.testing.fuzz.runner import MODES, Runner


def model_of(op: str) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "one",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def test_every_mode_and_feed_is_classified() -> None:
    with Runner() as runner:
        ok = runner.check(model_of("Sigmoid"), seed=1, special=True)
        refused = runner.check(model_of("Det"), seed=1, special=False)
    assert sorted((o.mode, o.feed) for o in ok.outcomes) == sorted(
        (m, f) for m in MODES for f in ("normal", "special"))
    assert {o.cls for o in ok.outcomes} == {"ok"}
    assert {(o.cls, o.code) for o in refused.outcomes} == {("refused", "E007")}
