"""Issue #15: run-time Ifs whose results are graph outputs, and whose branches give outputs of
different shapes (ONNX allows it: the If's output then has a dim the taken branch decides at
run time, a computed dim bounded by the larger branch). Checked against onnxruntime with both
condition values, at several batch sizes including the bounds' extremes and 1, in the three
memory modes, output buffers poisoned with NaN (every element of the actual shape written).
Where the If's result is a graph output and both branches agree on its type, each branch
computes it straight into the caller's output buffer (MemoryPlan.output_values): no arena
bytes for the branch values and nothing for the select to copy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import onnxruntime_outputs
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.ir.symbolic import computed_dims, parse_input_shapes
from tests.dynamic.checks import poison_outputs
from tests.helpers import init, make_model, rand, vinfo, write_model

MODES = ["latency_first", "balanced", "memory_first"]
RTOL, ATOL = 1e-5, 1e-5  # float32 exp / tanh in another implementation than onnxruntime's


def _branch(name: str, nodes: list[onnx.NodeProto], outputs: list[onnx.ValueInfoProto]
            ) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, [], outputs)


def _runs_match(path: Path, artifact: Path, runs: list[tuple[int, bool]], width: int,
                monkeypatch: pytest.MonkeyPatch) -> set[bool]:
    """Every output at each (batch, flag) of `runs` has onnxruntime's shape and values; the
    flags seen."""
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(artifact) as model:
        for batch, flag in runs:
            feeds = {"x": rand(rng, batch, width), "flag": np.array(flag)}
            want = onnxruntime_outputs(path, feeds)
            got = model.run(feeds)
            for name, value in want.items():
                assert got[name].shape == value.shape, (name, batch, flag)
                np.testing.assert_allclose(got[name], value, rtol=RTOL, atol=ATOL,
                                           err_msg=f"{name} at batch {batch}, flag {flag}")
    return {flag for _, flag in runs}


RUNS = [(1, True), (1, False), (16, True), (16, False), (7, False), (9, True)]


def _if_as_graph_output(tmp_path: Path) -> Path:
    """y = If(flag, relu(x @ w), exp(x) * x) a graph output itself, z = tanh(y) another."""
    rng = np.random.default_rng(5)
    then = _branch("then", [helper.make_node("MatMul", ["x", "w"], ["xw"]),
                            helper.make_node("Relu", ["xw"], ["a"])], [vinfo("a", ["b", 8])])
    other = _branch("else", [helper.make_node("Exp", ["x"], ["e"]),
                             helper.make_node("Mul", ["e", "x"], ["ex"])], [vinfo("ex", ["b", 8])])
    model = make_model([helper.make_node("If", ["flag"], ["y"], then_branch=then,
                                         else_branch=other),
                        helper.make_node("Tanh", ["y"], ["z"])],
                       [vinfo("x", ["b", 8]), vinfo("flag", [], TensorProto.BOOL)],
                       [vinfo("y", ["b", 8]), vinfo("z", ["b", 8])],
                       [init("w", rand(rng, 8, 8, scale=0.3))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_run_time_if_result_is_a_graph_output(tmp_path: Path, mode: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = _if_as_graph_output(tmp_path)
    shapes, _ = parse_input_shapes(["x=batch:1..16,8"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes)
    assert any(n.op == "pyc.If" for n in result.graph.nodes)
    # each branch computes y straight into the caller's buffer: no arena bytes, no copy
    plan = json.loads((result.artifact / "memory_plan.json").read_text())
    written = plan["output_values"]
    assert sorted(written.values()) == ["y", "y"] and \
        {k.split("/")[1] for k in written} == {"then", "else"}
    assert not any(t["name"] in written for t in plan["tensors"])
    assert _runs_match(path, result.artifact, RUNS, 8, monkeypatch) == {True, False}


def _branches_of_different_widths(tmp_path: Path, symbolic: bool) -> Path:
    """r = If(flag, relu(x)[b, 8], x[:, :3][b, 3]): y = r a graph output, z = sigmoid(r)."""
    batch = "b" if symbolic else 4
    then = _branch("then", [helper.make_node("Relu", ["x"], ["a"])], [vinfo("a", [batch, 8])])
    other = _branch("else", [helper.make_node("Slice", ["x", "zero", "three", "one"], ["head"]),
                             helper.make_node("Neg", ["head"], ["n"])], [vinfo("n", [batch, 3])])
    model = make_model([helper.make_node("If", ["flag"], ["y"], then_branch=then,
                                         else_branch=other),
                        helper.make_node("Sigmoid", ["y"], ["z"])],
                       [vinfo("x", [batch, 8]), vinfo("flag", [], TensorProto.BOOL)],
                       [vinfo("y", [batch, "w"]), vinfo("z", [batch, "w"])],
                       [init("zero", np.array([0], np.int64)), init("three", np.array([3], np.int64)),
                        init("one", np.array([1], np.int64))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_branches_of_different_shapes_static(tmp_path: Path, mode: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = _branches_of_different_widths(tmp_path, symbolic=False)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode)
    width = result.graph.types["y"].shape[1]
    (bounds,) = computed_dims([(width,)]).values()
    assert (bounds.lo, bounds.hi) == (0, 8)  # the taken branch's width, at most 8
    assert _runs_match(path, result.artifact, [(4, True), (4, False), (4, False), (4, True)], 8,
                       monkeypatch) == {True, False}


@pytest.mark.parametrize("mode", MODES)
def test_branches_of_different_shapes_over_a_symbolic_batch(
        tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _branches_of_different_widths(tmp_path, symbolic=True)
    shapes, _ = parse_input_shapes(["x=batch:1..16,8"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes)
    assert str(result.graph.types["y"].shape[0]) == "batch"
    assert _runs_match(path, result.artifact, RUNS, 8, monkeypatch) == {True, False}
