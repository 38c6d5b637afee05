"""`If` whose condition folds at compile time: the importer inlines the chosen branch (outer
values, branch initializers and Constant nodes, nested Ifs), the build matches onnxruntime, and
the decision is logged; a data-dependent condition compiles both branches and picks one at run
time (tests/dynamic/test_run_time_if.py has more)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import onnxruntime_outputs
from helpers import init, make_model, vinfo, write_model
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli.check import check_model
from pyc_cli.errors import PycError
from pyc_cli.explain import explain_data
from pyc_cli.frontend.onnx_import import import_model

RTOL, ATOL = 1e-5, 1e-6


def _branch(nodes: list[onnx.NodeProto], outputs: list[str], name: str,
            initializers: list[TensorProto] | None = None) -> onnx.GraphProto:
    """A branch body: no inputs; outputs typed float (shapes left to inference)."""
    return helper.make_graph(nodes, name, [], [vinfo(o, None) for o in outputs],
                             initializer=initializers or [])


def _build_and_compare(path: Path, tmp_path: Path, feeds: dict[str, np.ndarray],
                       shapes: dict[str, tuple[int, ...]] | None = None) -> pyc_cli.api.BuildResult:
    """Build `path`, run it on `feeds`, and compare every output with onnxruntime."""
    expected = onnxruntime_outputs(path, feeds)
    result = pyc_cli.build(path, tmp_path / "artifact", input_shapes=shapes)
    with pyc_cli.load(tmp_path / "artifact") as compiled:
        got = compiled.run(feeds)
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        assert got[name].shape == want.shape, name
        np.testing.assert_allclose(got[name], want, rtol=RTOL, atol=ATOL, err_msg=name)
    return result


def _constant_cond_model(cond: bool, rng: np.random.Generator) -> onnx.ModelProto:
    """y, s = If(c): then (relu(x + bt), x + bt), else (x * w - k; the constant k)."""
    then_branch = _branch(
        [helper.make_node("Add", ["x", "bt"], ["t_sum"], name="add"),
         helper.make_node("Relu", ["t_sum"], ["t_out"], name="relu")],
        ["t_out", "t_sum"], "then", [init("bt", rng.standard_normal((2, 3)).astype(np.float32))])
    else_branch = _branch(
        [helper.make_node("Constant", [], ["k"], name="k",
                          value=numpy_helper.from_array(rng.standard_normal((2, 3)).astype(np.float32))),
         helper.make_node("Mul", ["x", "w"], ["e_prod"], name="mul"),
         helper.make_node("Sub", ["e_prod", "k"], ["e_out"], name="sub")],
        ["e_out", "k"], "else")
    nodes = [helper.make_node("If", ["c"], ["r", "s"], name="choose",
                              then_branch=then_branch, else_branch=else_branch),
             helper.make_node("Mul", ["r", "w"], ["y"], name="scale")]
    return make_model(nodes, [vinfo("x", [2, 3])], [vinfo("y", [2, 3]), vinfo("s", [2, 3])],
                      [init("c", np.array(cond)), init("w", rng.standard_normal((2, 3)).astype(np.float32))])


@pytest.mark.parametrize("cond", [True, False])
def test_constant_condition_inlines_the_chosen_branch(cond: bool, tmp_path: Path,
                                                      rng: np.random.Generator) -> None:
    path = write_model(_constant_cond_model(cond, rng), tmp_path)
    graph = import_model(path)
    assert "If" not in {n.op for n in graph.nodes}
    prefixed = [n.name for n in graph.nodes if n.name != "scale"]
    assert prefixed and all(name.startswith("choose/") for name in prefixed)
    if cond:  # the branch initializer is imported under a fresh name
        assert "choose/bt" in graph.constants
    else:  # the branch's Constant node defines the If output it is returned as
        assert "s" in graph.constants
    _build_and_compare(path, tmp_path, {"x": rng.standard_normal((2, 3)).astype(np.float32)})


def test_repeated_branch_output_gets_a_copy(tmp_path: Path, rng: np.random.Generator) -> None:
    """A branch value returned twice defines the first If output; the second one copies it
    (onnx.checker refuses branch outputs that are outer values, so a repeat is the case left)."""
    branch = _branch([helper.make_node("Sigmoid", ["x"], ["a"], name="sig")], ["a", "a"], "t")
    other = _branch([helper.make_node("Neg", ["x"], ["a"]), helper.make_node("Abs", ["x"], ["b"])],
                    ["a", "b"], "e")
    nodes = [helper.make_node("If", ["c"], ["y", "z"], name="twice", then_branch=branch,
                              else_branch=other)]
    model = make_model(nodes, [vinfo("x", [3])], [vinfo("y", [3]), vinfo("z", [3])],
                       [init("c", np.array(True))])
    path = write_model(model, tmp_path)
    graph = import_model(path)
    assert [(n.op, n.name, n.inputs, n.outputs) for n in graph.nodes] == [
        ("Sigmoid", "twice/sig", ["x"], ["y"]), ("Identity", "twice/output_0", ["y"], ["z"])]
    x = rng.standard_normal(3).astype(np.float32)
    pyc_cli.build(path, tmp_path / "artifact")
    with pyc_cli.load(tmp_path / "artifact") as compiled:
        got = compiled.run({"x": x})
    expected = 1 / (1 + np.exp(-x.astype(np.float64)))
    for name in ("y", "z"):
        np.testing.assert_allclose(got[name], expected, rtol=RTOL, atol=ATOL)


def _shape_cond_model() -> onnx.ModelProto:
    """The PyTorch pattern: `if x.size(0) == 1` as Shape -> Gather -> Equal -> If."""
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="shape"),
             helper.make_node("Gather", ["shape", "zero"], ["batch"], name="gather", axis=0),
             helper.make_node("Equal", ["batch", "one"], ["is_single"], name="equal"),
             helper.make_node("If", ["is_single"], ["h"], name="/model/If",
                              then_branch=_branch([helper.make_node("Mul", ["x", "w"], ["a"])],
                                                  ["a"], "then"),
                              else_branch=_branch([helper.make_node("Add", ["x", "w"], ["a"])],
                                                  ["a"], "else")),
             helper.make_node("Tanh", ["h"], ["y"], name="tanh")]
    return make_model(nodes, [vinfo("x", ["batch", 4])], [vinfo("y", ["batch", 4])],
                      [init("zero", np.array(0, np.int64)), init("one", np.array(1, np.int64)),
                       init("w", np.linspace(-1, 1, 4, dtype=np.float32))])


@pytest.mark.parametrize("batch", [1, 3])
def test_condition_computed_from_a_static_shape(batch: int, tmp_path: Path,
                                                rng: np.random.Generator) -> None:
    path = write_model(_shape_cond_model(), tmp_path)
    x = rng.standard_normal((batch, 4)).astype(np.float32)
    result = _build_and_compare(path, tmp_path, {"x": x}, {"x": (batch, 4)})
    inlined = [d for d in result.context.decisions if d.action == "inline_if"]
    branch = "then_branch" if batch == 1 else "else_branch"
    assert [d.nodes for d in inlined] == [["/model/If"]]
    assert inlined[0].reason == (f"If '/model/If': condition is constant {batch == 1}, "
                                 f"inlined {branch} (1 node)")


def _nested_model() -> onnx.ModelProto:
    """outer: if x.size(1) == 4 (always here); inside: if x.size(0) == 2, on a branch-local
    value `t`. The main graph also has a value named like the outer branch's prefixed `t`."""
    inner = helper.make_node(
        "If", ["is_two"], ["inner_out"], name="inner",
        then_branch=_branch([helper.make_node("Add", ["t", "w"], ["u"], name="add")], ["u"], "it"),
        else_branch=_branch([helper.make_node("Sub", ["t", "w"], ["u"], name="sub")], ["u"], "ie"))
    outer_then = _branch(
        [helper.make_node("Mul", ["x", "w"], ["t"], name="mul"),
         helper.make_node("Gather", ["shape", "zero"], ["rows"], name="rows", axis=0),
         helper.make_node("Equal", ["rows", "two"], ["is_two"], name="eq"),
         inner], ["inner_out"], "outer_then")
    outer_else = _branch([helper.make_node("Neg", ["x"], ["n"])], ["n"], "outer_else")
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="shape"),
             helper.make_node("Gather", ["shape", "one"], ["cols"], name="cols", axis=0),
             helper.make_node("Equal", ["cols", "four"], ["is_four"], name="is_four"),
             helper.make_node("If", ["is_four"], ["o"], name="outer",
                              then_branch=outer_then, else_branch=outer_else),
             helper.make_node("Relu", ["x"], ["outer/t"], name="collide"),
             helper.make_node("Add", ["o", "outer/t"], ["y"], name="final")]
    ints = {"zero": 0, "one": 1, "two": 2, "four": 4}
    return make_model(nodes, [vinfo("x", ["n", 4])], [vinfo("y", ["n", 4])],
                      [init(k, np.array(v, np.int64)) for k, v in ints.items()]
                      + [init("w", np.linspace(0.5, 2, 4, dtype=np.float32))])


@pytest.mark.parametrize("rows", [2, 3])
def test_nested_if_inlines_by_recursion(rows: int, tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_model(_nested_model(), tmp_path)
    x = rng.standard_normal((rows, 4)).astype(np.float32)
    result = _build_and_compare(path, tmp_path, {"x": x}, {"x": (rows, 4)})
    inlined = {d.nodes[0]: d.extra["branch"] for d in result.context.decisions
               if d.action == "inline_if"}
    assert inlined == {"outer": "then_branch",
                       "outer/inner": "then_branch" if rows == 2 else "else_branch"}
    graph = import_model(path, {"x": (rows, 4)})
    assert {"outer/inner/add" if rows == 2 else "outer/inner/sub", "outer/mul"} <= \
        {n.name for n in graph.nodes}


def _data_dependent_model(extra_problem: bool) -> onnx.ModelProto:
    nodes = [helper.make_node("ReduceSum", ["x"], ["total"], name="total", keepdims=0),
             helper.make_node("Greater", ["total", "zero"], ["positive"], name="positive"),
             helper.make_node("If", ["positive"], ["y"], name="sign_branch",
                              then_branch=_branch([helper.make_node("Relu", ["x"], ["a"])], ["a"], "t"),
                              else_branch=_branch([helper.make_node("Neg", ["x"], ["a"])], ["a"], "e"))]
    outputs = [vinfo("y", [2, 3])]
    if extra_problem:
        nodes.append(helper.make_node("Unique", ["x"], ["nz"], name="unique"))
        outputs.append(vinfo("nz", [2, "k"], TensorProto.INT64))
    return make_model(nodes, [vinfo("x", [2, 3])], outputs, [init("zero", np.array(0, np.float32))])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_data_dependent_condition_compiles_both_branches(sign: float, tmp_path: Path,
                                                         rng: np.random.Generator) -> None:
    """A condition computed from input data (issue #15): both branches compiled, a pyc.If
    selects, the run takes the branch onnxruntime takes (tests/dynamic/test_run_time_if.py
    checks that only that branch runs)."""
    path = write_model(_data_dependent_model(extra_problem=False), tmp_path)
    x = (np.abs(rng.standard_normal((2, 3))) * sign).astype(np.float32)
    result = _build_and_compare(path, tmp_path, {"x": x})
    assert [n.name for n in result.graph.nodes if n.op == "pyc.If"] == ["sign_branch"]
    logged = [d for d in result.context.decisions if d.action == "run_time_if"]
    assert [d.nodes for d in logged] == [["sign_branch"]]


def test_check_lists_other_problems_beside_a_data_dependent_if(tmp_path: Path) -> None:
    path = write_model(_data_dependent_model(extra_problem=True), tmp_path)
    report = check_model(path)
    problems = {reason: [p.node for p in group] for reason, group in report.problems.items()}
    assert problems == {"unknown op": ["unique"]}
    with pytest.raises(PycError) as info:
        pyc_cli.build(path, tmp_path / "out")
    assert info.value.code == "E007" and "'unique'" in str(info.value)


def test_unsupported_op_in_the_chosen_branch_is_named(tmp_path: Path) -> None:
    branch = _branch([helper.make_node("Unique", ["x"], ["nz"], name="nz")], ["nz"], "t")
    other = _branch([helper.make_node("Shape", ["x"], ["nz"], name="sh")], ["nz"], "e")
    nodes = [helper.make_node("If", ["c"], ["y"], name="pick", then_branch=branch, else_branch=other)]
    model = make_model(nodes, [vinfo("x", [2])], [vinfo("y", ["k"], TensorProto.INT64)],
                       [init("c", np.array(True))])
    path = write_model(model, tmp_path)
    with pytest.raises(PycError) as info:
        import_model(path)
    assert info.value.code == "E007" and "unknown op Unique: 'pick/nz'" in info.value.what
    assert [p.node for p in check_model(path).problems["unknown op"]] == ["pick/nz"]


def test_loop_keeps_its_rejection_and_check_lists_it(tmp_path: Path) -> None:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "v_in"], ["v_out"])], "body",
        [vinfo("i", [], TensorProto.INT64), vinfo("cond_in", [], TensorProto.BOOL), vinfo("v_in", [2])],
        [vinfo("cond_out", [], TensorProto.BOOL), vinfo("v_out", [2])])
    nodes = [helper.make_node("Loop", ["trip", "", "x"], ["y"], name="loop", body=body)]
    path = write_model(make_model(nodes, [vinfo("x", [2])], [vinfo("y", [2])],
                                  [init("trip", np.array(3, np.int64))]), tmp_path)
    with pytest.raises(PycError) as info:
        import_model(path)
    assert info.value.code == "E007" and "unknown op Loop" in info.value.what
    assert [p.node for p in check_model(path).problems["unknown op"]] == ["loop"]


def test_inlining_is_logged_in_decisions_and_explain(tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_model(_constant_cond_model(True, rng), tmp_path)
    pyc_cli.build(path, tmp_path / "artifact")
    records = [json.loads(line) for line in
               (tmp_path / "artifact" / "decisions.jsonl").read_text().splitlines()]
    inlined = [r for r in records if r["action"] == "inline_if"]
    assert inlined == [{"pass": "import", "nodes": ["choose"], "action": "inline_if",
                        "reason": "If 'choose': condition is constant True, inlined then_branch "
                                  "(2 nodes)", "after": 2, "branch": "then_branch",
                        "serves": "pass:import/inline_if"}]
    rows = explain_data(tmp_path / "artifact")["passes"]
    assert rows[0]["name"] == "import" and rows[0]["changes"] == {"inline_if": 1}
    assert (rows[0]["nodes_before"], rows[0]["nodes_after"]) == (2, 3)


def test_branch_external_data_stays_confined(tmp_path: Path) -> None:
    tensor = numpy_helper.from_array(np.zeros(2, np.float32), "bt")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../outside.bin")
    branch = _branch([helper.make_node("Add", ["x", "bt"], ["a"])], ["a"], "t", [tensor])
    other = _branch([helper.make_node("Neg", ["x"], ["a"])], ["a"], "e")
    graph = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=branch,
                                                else_branch=other)],
                              "g", [vinfo("x", [2])], [vinfo("y", [2])], [init("c", np.array(True))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (tmp_path / "m").mkdir()
    path = tmp_path / "m" / "model.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(PycError) as info:
        import_model(path)
    assert info.value.code == "E004"
