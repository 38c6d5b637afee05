"""The float64 reference of the max_rel_err contract clause (compare/reference64.py): the float64
copy computes what numpy computes in float64, on fresh random weights and inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pyc_cli.compare import reference64
from pyc_cli.compare.reference64 import run_float64, to_float64
from pyc_cli.errors import PycError


def _save(tmp_path: Path, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
          outputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto], opset: int) -> Path:
    graph = helper.make_graph(nodes, "m", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


def _info(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_an_opset_12_batch_norm_is_inference_and_float64(rng: np.random.Generator,
                                                         tmp_path: Path) -> None:
    """A single-output BatchNormalization of opset 12 normalises by its running statistics (the
    evaluator's own version would use the batch's: it reads the schema's default momentum as
    training mode). Computed in float64: within 1e-13 of numpy."""
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    stats = {"s": rng.standard_normal(4), "b": rng.standard_normal(4),
             "m": rng.standard_normal(4), "v": rng.uniform(0.5, 2, 4)}
    stats = {k: v.astype(np.float32) for k, v in stats.items()}
    path = _save(tmp_path, [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"],
                                             ["y"], epsilon=1e-3, momentum=0.9)],
                 [_info("x", list(x.shape))], [_info("y", list(x.shape))],
                 [numpy_helper.from_array(v, k) for k, v in stats.items()], 12)
    got, by = run_float64(path, {"x": x})
    f = {k: v.astype(np.float64).reshape(1, 4, 1, 1) for k, v in stats.items()}
    # the attribute epsilon is a float32: 1e-3 as float32
    want = f["s"] * (x.astype(np.float64) - f["m"]) / np.sqrt(f["v"] + np.float64(np.float32(1e-3))) + f["b"]
    assert by == "onnx reference evaluator (float64)" and got["y"].dtype == np.float64
    np.testing.assert_allclose(got["y"], want, rtol=1e-13, atol=1e-13)


def test_constants_casts_and_float_only_inputs_survive_the_copy(
        rng: np.random.Generator, tmp_path: Path) -> None:
    """value_float Constants, a Cast to float, ConstantOfShape and Resize's float-only `scales`
    (cast back to float32 around that node): the copy is a valid model computing in float64."""
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    scale = float(rng.uniform(0.5, 2))
    nodes = [helper.make_node("Constant", [], ["k"], value_float=scale),
             helper.make_node("Mul", ["x", "k"], ["xk"]),
             helper.make_node("Cast", ["xk"], ["c"], to=TensorProto.FLOAT),
             helper.make_node("Shape", ["c"], ["shape"]),
             helper.make_node("ConstantOfShape", ["shape"], ["one"],
                              value=numpy_helper.from_array(np.array([1.5], np.float32))),
             helper.make_node("Add", ["c", "one"], ["a"]),
             helper.make_node("Resize", ["a", "", "scales"], ["y"], mode="nearest")]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    path = _save(tmp_path, nodes, [_info("x", [1, 2, 3, 3])], [_info("y", [1, 2, 6, 6])],
                 [scales], 13)
    wide = to_float64(onnx.load(path))
    onnx.checker.check_model(wide, full_check=True)
    got, _ = run_float64(path, {"x": x})
    want = (x.astype(np.float64) * np.float64(np.float32(scale)) + 1.5)
    want = want.repeat(2, axis=2).repeat(2, axis=3)
    assert got["y"].dtype == np.float64
    np.testing.assert_allclose(got["y"], want, rtol=1e-15, atol=0)


def test_onnxruntime_serves_what_the_evaluator_cannot_run(
        rng: np.random.Generator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = rng.standard_normal((3, 8)).astype(np.float32)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"])],
                 [_info("x", [3, 8])], [_info("y", [3, 4])], [numpy_helper.from_array(w, "w")],
                 17)

    def refuse(*_: object) -> None:
        raise RuntimeError("not implemented")

    monkeypatch.setattr(reference64, "_evaluator", refuse)
    got, by = run_float64(path, {"x": x})
    assert by == "onnxruntime on a float64 copy" and got["y"].dtype == np.float64
    np.testing.assert_allclose(got["y"], x.astype(np.float64) @ w.astype(np.float64),
                               rtol=1e-13, atol=1e-13)
    monkeypatch.setattr(reference64, "_onnxruntime", refuse)
    with pytest.raises(PycError) as caught:
        run_float64(path, {"x": x})
    assert caught.value.code == "E044" and "not implemented" in caught.value.hint
