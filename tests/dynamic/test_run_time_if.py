"""Issue #15: an ONNX `If` whose condition is known only at run time. Both branches are compiled
(inlined, planned into the arena), a pyc.If node selects their outputs, and each kernel call
runs only where a branch this run takes needs it (ir/guards.py). Checked against onnxruntime
with both condition values on fresh random inputs and weights (rtol/atol below: float32 GEMMs
in another summation order), output buffers poisoned with NaN."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import onnxruntime_outputs
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir import guards
from pyc_cli.ir.symbolic import parse_input_shapes
from tests.dynamic.checks import poison_outputs, runs_and_refusals_match_onnxruntime
from tests.helpers import init, make_model, vinfo, write_model

RTOL, ATOL = 1e-5, 1e-5
F = TensorProto.FLOAT


def _branch(name: str, nodes: list[onnx.NodeProto], outputs: list[onnx.ValueInfoProto],
            initializers: list[onnx.TensorProto] | None = None) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, [], outputs, initializer=initializers or [])


def _gather_or_scale(tmp_path: Path, rng: np.random.Generator) -> Path:
    """y = x[idx] @ w + b where every index is in range (max(idx) < 6), else x[:3] * 2 @ w.
    The then branch's Gather returns an error status on an index out of range, so a run whose
    else branch is taken fails if the then branch runs too."""
    w = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    then = _branch("then", [
        helper.make_node("Gather", ["x", "idx"], ["g"], axis=0),
        helper.make_node("MatMul", ["g", "w"], ["gw"]),
        helper.make_node("Add", ["gw", "b"], ["t"]),
        helper.make_node("Relu", ["t"], ["t_out"])], [vinfo("t_out", [3, 5])])
    other = _branch("else", [
        helper.make_node("Slice", ["x", "zero", "three"], ["head"]),
        helper.make_node("Mul", ["head", "two"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w"], ["e_out"])], [vinfo("e_out", [3, 5])])
    nodes = [helper.make_node("Cast", ["idx"], ["idxf"], to=F),
             helper.make_node("ReduceMax", ["idxf"], ["m"], keepdims=0),
             helper.make_node("Less", ["m", "six"], ["cond"]),
             helper.make_node("If", ["cond"], ["r"], then_branch=then, else_branch=other),
             helper.make_node("Tanh", ["r"], ["y"])]
    model = make_model(nodes, [vinfo("x", [6, 4]), vinfo("idx", [3], TensorProto.INT64)],
                       [vinfo("y", [3, 5])],
                       [init("w", w), init("b", b), init("six", np.array(6, np.float32)),
                        init("two", np.array(2, np.float32)),
                        init("zero", np.array([0], np.int64)), init("three", np.array([3], np.int64))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", ["latency_first", "balanced", "memory_first"])
def test_only_the_taken_branch_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    mode: str) -> None:
    rng = np.random.default_rng()
    path = _gather_or_scale(tmp_path, rng)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode)
    assert any(n.op == "pyc.If" for n in result.graph.nodes)
    conditions = guards.run_conditions(result.graph)
    gathers = [n for n in result.graph.nodes if n.op == "Gather"]
    assert gathers and all(conditions[n.name] is not guards.ALWAYS for n in gathers)
    decisions = [json.loads(line) for line in
                 (tmp_path / "art" / "decisions.jsonl").read_text().splitlines()]
    assert any(d["action"] == "run_time_if" for d in decisions)
    poison_outputs(monkeypatch)
    with pyc_cli.load(tmp_path / "art") as model:
        for in_range in (True, False, True, False, False, True):
            idx = rng.integers(0, 6, size=3) if in_range else rng.integers(0, 12, size=3)
            if not in_range:
                idx[rng.integers(0, 3)] = rng.integers(6, 12)  # the Gather would refuse it
            feeds = {"x": rng.standard_normal((6, 4)).astype(np.float32), "idx": idx.astype(np.int64)}
            want = onnxruntime_outputs(path, feeds)["y"]
            got = model.run(feeds)["y"]
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _nested(tmp_path: Path, rng: np.random.Generator) -> Path:
    """Three outcomes from two run-time conditions on a graph-input flag and a value: an If in
    the else branch of another, both reading outer values, one branch output an outer value
    (through an Identity)."""
    w = rng.standard_normal((8, 8)).astype(np.float32)
    inner = helper.make_node("If", ["c2"], ["inner"], then_branch=_branch(
        "inner_then", [helper.make_node("Sigmoid", ["xw"], ["s"])], [vinfo("s", [2, 8])]),
        else_branch=_branch("inner_else", [helper.make_node("Identity", ["x"], ["xi"])],
                            [vinfo("xi", [2, 8])]))
    outer = helper.make_node("If", ["flag"], ["r"], then_branch=_branch(
        "outer_then", [helper.make_node("Neg", ["xw"], ["n"])], [vinfo("n", [2, 8])]),
        else_branch=_branch("outer_else", [
            helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
            helper.make_node("Greater", ["total", "zero"], ["c2"]),
            inner,
            helper.make_node("Mul", ["inner", "x"], ["e"])], [vinfo("e", [2, 8])]))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), outer,
             helper.make_node("Add", ["r", "xw"], ["y"])]
    model = make_model(nodes, [vinfo("x", [2, 8]), vinfo("flag", [], TensorProto.BOOL)],
                       [vinfo("y", [2, 8])],
                       [init("w", w), init("zero", np.array(0, np.float32))])
    return write_model(model, tmp_path)


def test_nested_run_time_ifs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng()
    path = _nested(tmp_path, rng)
    pyc_cli.build(path, tmp_path / "art")
    source = (tmp_path / "art" / "src" / "model.c").read_text()
    assert "needed only where this run takes its branch" in source
    poison_outputs(monkeypatch)
    seen = set()
    with pyc_cli.load(tmp_path / "art") as model:
        for flag in (True, False):
            for sign in (1.0, -1.0):
                x = np.abs(rng.standard_normal((2, 8))).astype(np.float32) * sign
                feeds = {"x": x, "flag": np.array(flag)}
                want = onnxruntime_outputs(path, feeds)["y"]
                np.testing.assert_allclose(model.run(feeds)["y"], want, rtol=RTOL, atol=ATOL)
                seen.add((flag, sign > 0 if not flag else None))
    assert len(seen) == 3


def test_symbolic_batch_through_a_run_time_if(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Branches over a symbolic batch: the select copies a run-time number of bytes."""
    rng = np.random.default_rng()
    then = _branch("then", [helper.make_node("Relu", ["x"], ["a"])], [vinfo("a", ["b", 8])])
    other = _branch("else", [helper.make_node("Exp", ["x"], ["e"])], [vinfo("e", ["b", 8])])
    model = make_model([helper.make_node("If", ["flag"], ["r"], then_branch=then, else_branch=other),
                        helper.make_node("Mul", ["r", "x"], ["y"])],
                       [vinfo("x", ["b", 8]), vinfo("flag", [], TensorProto.BOOL)],
                       [vinfo("y", ["b", 8])])
    path = write_model(model, tmp_path)
    shapes, _ = parse_input_shapes(["x=batch:1..16,8"])
    pyc_cli.build(path, tmp_path / "art", input_shapes=shapes)
    poison_outputs(monkeypatch)
    with pyc_cli.load(tmp_path / "art") as model:
        for batch, flag in ((1, True), (16, False), (7, False), (9, True)):
            feeds = {"x": rng.standard_normal((batch, 8)).astype(np.float32),
                     "flag": np.array(flag)}
            want = onnxruntime_outputs(path, feeds)["y"]
            got = model.run(feeds)["y"]
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _scalar_or_vector(tmp_path: Path, output_is_if: bool) -> Path:
    """then gives a scalar, else a [1]: the If output is typed [1] where no reader can tell."""
    then = _branch("then", [helper.make_node("Identity", ["half"], ["t"])], [vinfo("t", [])])
    other = _branch("else", [helper.make_node("ReduceSum", ["x", "axes"], ["s0"], keepdims=0),
                             helper.make_node("Unsqueeze", ["s0", "axis0"], ["s"])],
                    [vinfo("s", [1])])
    nodes = [helper.make_node("If", ["flag"], ["r"], then_branch=then, else_branch=other)]
    outputs = [vinfo("r", [1])]
    if not output_is_if:
        nodes.append(helper.make_node("Mul", ["x", "r"], ["y"]))
        outputs = [vinfo("y", [3, 4])]
    model = make_model(nodes, [vinfo("x", [3, 4]), vinfo("flag", [], TensorProto.BOOL)], outputs,
                       [init("half", np.array(0.5, np.float32)),
                        init("axes", np.array([0, 1], np.int64)),
                        init("axis0", np.array([0], np.int64))])
    return write_model(model, tmp_path)


def test_branches_differing_in_leading_ones(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng()
    path = _scalar_or_vector(tmp_path, output_is_if=False)
    pyc_cli.build(path, tmp_path / "art")
    poison_outputs(monkeypatch)
    with pyc_cli.load(tmp_path / "art") as model:
        for flag in (True, False):
            feeds = {"x": rng.standard_normal((3, 4)).astype(np.float32), "flag": np.array(flag)}
            want = onnxruntime_outputs(path, feeds)["y"]
            np.testing.assert_allclose(model.run(feeds)["y"], want, rtol=RTOL, atol=ATOL)
    # as a graph output the caller would see [1] where onnxruntime gives []: refused
    (tmp_path / "out").mkdir()
    with pytest.raises(PycError) as refused:
        pyc_cli.build(_scalar_or_vector(tmp_path / "out", output_is_if=True), tmp_path / "art2")
    assert refused.value.code == "E008" and "'If_0'" in refused.value.where


def test_branches_of_different_sizes_give_a_computed_dim(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """then [2, 3], else [3, 2]: each axis of the output is a dim the pyc.If computes (the
    taken branch's size, bounded by the larger), read by the nodes after it and the output."""
    rng = np.random.default_rng()
    then = _branch("then", [helper.make_node("Relu", ["x"], ["a"])], [vinfo("a", [2, 3])])
    other = _branch("else", [helper.make_node("Transpose", ["x"], ["t"])], [vinfo("t", [3, 2])])
    model = make_model([helper.make_node("If", ["flag"], ["r"], name="pick",
                                         then_branch=then, else_branch=other),
                        helper.make_node("Sigmoid", ["r"], ["y"])],
                       [vinfo("x", [2, 3]), vinfo("flag", [], TensorProto.BOOL)],
                       [vinfo("y", ["a", "b"])])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art")
    shape = result.graph.types["y"].shape
    assert [dim.bounds() for dim in shape] == [(0, 3), (0, 3)]
    assert [n.ann.kernel_name for n in result.graph.nodes if n.op == "pyc.If"] == ["if_select_sizes"]
    poison_outputs(monkeypatch)
    with pyc_cli.load(tmp_path / "art") as compiled:
        for flag in (True, False, False, True):
            feeds = {"x": rng.standard_normal((2, 3)).astype(np.float32), "flag": np.array(flag)}
            want = onnxruntime_outputs(path, feeds)["y"]
            got = compiled.run(feeds)["y"]
            assert got.shape == want.shape == ((2, 3) if flag else (3, 2))
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_branches_of_different_ranks_are_refused_naming_the_if(tmp_path: Path) -> None:
    then = _branch("then", [helper.make_node("Relu", ["x"], ["a"])], [vinfo("a", [2, 3])])
    other = _branch("else", [helper.make_node("Reshape", ["x", "six"], ["t"])], [vinfo("t", [6])],
                    [init("six", np.array([6], np.int64))])
    model = make_model([helper.make_node("If", ["flag"], ["y"], name="pick",
                                         then_branch=then, else_branch=other)],
                       [vinfo("x", [2, 3]), vinfo("flag", [], TensorProto.BOOL)],
                       [vinfo("y", ["a", "b"])])
    with pytest.raises(PycError) as refused:
        pyc_cli.build(write_model(model, tmp_path), tmp_path / "art")
    assert refused.value.code == "E008" and "'pick'" in refused.value.where
    assert "f32[2,3]" in refused.value.what and "f32[6]" in refused.value.what


def test_run_time_if_builds_are_deterministic(tmp_path: Path) -> None:
    path = _nested(tmp_path, np.random.default_rng(1))
    for name in ("a", "b"):
        pyc_cli.build(path, tmp_path / name)
    for file in ("src/model.c", "model.ir", "memory_plan.json", "decisions.jsonl", "weights.bin"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file


def test_two_outputs_of_different_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An If with a float and an int64 output: each copied from the taken branch."""
    rng = np.random.default_rng()
    then = _branch("then", [helper.make_node("Relu", ["x"], ["a"]),
                            helper.make_node("ArgMax", ["x"], ["ai"], axis=1)],
                   [vinfo("a", [3, 5]), vinfo("ai", [3, 1], TensorProto.INT64)])
    other = _branch("else", [helper.make_node("Neg", ["x"], ["n"]),
                             helper.make_node("ArgMin", ["x"], ["ni"], axis=1)],
                    [vinfo("n", [3, 5]), vinfo("ni", [3, 1], TensorProto.INT64)])
    model = make_model([helper.make_node("If", ["flag"], ["y", "i"], then_branch=then,
                                         else_branch=other)],
                       [vinfo("x", [3, 5]), vinfo("flag", [], TensorProto.BOOL)],
                       [vinfo("y", [3, 5]), vinfo("i", [3, 1], TensorProto.INT64)])
    path = write_model(model, tmp_path)
    pyc_cli.build(path, tmp_path / "art")
    poison_outputs(monkeypatch)
    with pyc_cli.load(tmp_path / "art") as compiled:
        for flag in (False, True, True, False):
            feeds = {"x": rng.standard_normal((3, 5)).astype(np.float32), "flag": np.array(flag)}
            want = onnxruntime_outputs(path, feeds)
            got = compiled.run(feeds)
            np.testing.assert_allclose(got["y"], want["y"], rtol=RTOL, atol=ATOL)
            np.testing.assert_array_equal(got["i"], want["i"])


def test_affine_grid_3d_align_corners_both_ways(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The ONNX node test's function (test_affine_grid_3d_align_corners_expanded): an If on
    D == 1 (D = size[2], a value dim) inside the inlined align_corners branch, run with D = 1
    (then) and D > 1 (else) on fresh random thetas, against onnxruntime."""
    from tests.conformance import collect_cases  # onnx's cases, collected as the harness does

    case = next(c for c in collect_cases(["Range"]) if c.name ==
                "test_affine_grid_3d_align_corners_expanded")
    path = tmp_path / "model.onnx"
    path.write_bytes(case.model)
    result = pyc_cli.build(path, tmp_path / "art", input_values={"size": (0, 8)})
    assert sum(n.op == "pyc.If" for n in result.graph.nodes) == 1
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(tmp_path / "art") as compiled:
        for depth, height, width in ((1, 3, 4), (4, 3, 2), (1, 1, 1), (5, 2, 7)):
            feeds = {"theta": rng.standard_normal((2, 3, 4)).astype(np.float32),
                     "size": np.array([2, 3, depth, height, width], np.int64)}
            want = onnxruntime_outputs(path, feeds)["grid"]
            got = compiled.run(feeds)["grid"]
            assert got.shape == want.shape == (2, depth, height, width, 3)
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("low", [1, 2])
def test_condition_on_a_symbolic_dim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     low: int) -> None:
    """The exporters' pattern Shape -> Gather -> Equal(1) -> If over a dim `batch:LOW..8`:
    where the bounds decide it (batch >= 2: never 1) the importer inlines the else branch;
    where they do not (batch:1..8) it is a run-time If, right at batch 1 and above."""
    then = _branch("then", [helper.make_node("Relu", ["x"], ["a"])], [vinfo("a", ["b", 4])])
    other = _branch("else", [helper.make_node("Neg", ["x"], ["n"])], [vinfo("n", ["b", 4])])
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["b0"], axis=0),
             helper.make_node("Equal", ["b0", "one"], ["c"]),
             helper.make_node("If", ["c"], ["y"], name="pick", then_branch=then, else_branch=other)]
    model = make_model(nodes, [vinfo("x", ["b", 4])], [vinfo("y", ["b", 4])],
                       [init("zero", np.array(0, np.int64)), init("one", np.array(1, np.int64))])
    path = write_model(model, tmp_path)
    shapes, _ = parse_input_shapes([f"x=batch:{low}..8,4"])
    result = pyc_cli.build(path, tmp_path / "art", input_shapes=shapes)
    run_time = [n.name for n in result.graph.nodes if n.op == "pyc.If"]
    assert run_time == (["pick"] if low == 1 else [])
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(tmp_path / "art") as compiled:
        for batch in range(low, 9, 3):
            feeds = {"x": rng.standard_normal((batch, 4)).astype(np.float32)}
            want = onnxruntime_outputs(path, feeds)["y"]
            np.testing.assert_allclose(compiled.run(feeds)["y"], want, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- entry checks inside a branch

BRANCH_CHECK = "checked where the run takes its branch"


def _reshape_in_a_branch(tmp_path: Path) -> Path:
    """y = tanh(flag sums above 0 ? reshape(sigmoid(reshape(x * 2, s)), [24]) : x + 1), s
    declared 1..24: the then branch's Reshapes need s[0] * s[1] == 24, which the else branch
    does not (onnxruntime runs it whatever s is)."""
    then = _branch("then", [
        helper.make_node("Mul", ["x", "two"], ["x2"]),
        helper.make_node("Reshape", ["x2", "s"], ["r"], name="to_s"),
        helper.make_node("Sigmoid", ["r"], ["rs"]),
        helper.make_node("Reshape", ["rs", "flat"], ["t_out"], name="to_flat")],
        [vinfo("t_out", [24])])
    other = _branch("else", [helper.make_node("Add", ["x", "one"], ["e_out"])],
                    [vinfo("e_out", [24])])
    nodes = [helper.make_node("ReduceSum", ["flag"], ["total"], keepdims=0),
             helper.make_node("Greater", ["total", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["r"], name="pick", then_branch=then,
                              else_branch=other),
             helper.make_node("Tanh", ["r"], ["y"])]
    model = make_model(nodes, [vinfo("x", [24]), vinfo("s", [2], TensorProto.INT64),
                               vinfo("flag", [2])], [vinfo("y", [24])],
                       [init("two", np.array(2, np.float32)), init("one", np.array(1, np.float32)),
                        init("zero", np.array(0, np.float32)),
                        init("flat", np.array([24], np.int64))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", ["latency_first", "balanced", "memory_first"])
def test_an_untaken_branch_does_not_check_its_reshape(tmp_path: Path, mode: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The then branch's element-count checks run where the run takes it (they refused every
    run whose s[0] * s[1] != 24 at entry before, the else branch's too)."""
    path = _reshape_in_a_branch(tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"s": (1, 24)})
    text = (result.artifact / "src" / "model.c").read_text()
    assert text.count(BRANCH_CHECK) == 2 and "sizes equal */" not in text
    rng = np.random.default_rng()

    def feed(s: tuple[int, int], taken: bool) -> dict[str, np.ndarray]:
        flag = rng.uniform(0.5, 2.0, 2).astype(np.float32) * (1 if taken else -1)
        return {"x": rng.standard_normal(24).astype(np.float32),
                "s": np.array(s, np.int64), "flag": flag}

    feeds = [feed(s, taken) for s, taken in (
        ((4, 6), True), ((1, 24), True), ((24, 1), True), ((4, 6), False),
        ((5, 5), False), ((1, 1), False), ((24, 24), False), ((7, 3), False))]
    refused = [feed(s, True) for s in ((5, 5), (1, 1), (24, 24))]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, 1e-6, 1e-6)


def _sizes_in_a_branch(tmp_path: Path) -> Path:
    """y = c ? sum(reshape(x[B, 12], [2 k, -1])) + sum(a[n] + b[m]) : sum(a): the then branch
    has an entry dim of a Reshape's -1 (B * 12 / 2k) and one of a broadcast (of n and m)."""
    then = _branch("then", [
        helper.make_node("Mul", ["k", "two_i"], ["rows"]),
        helper.make_node("Concat", ["rows", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["r"], name="to_rows"),
        helper.make_node("ReduceSum", ["r"], ["rsum"], keepdims=0),
        helper.make_node("Add", ["a", "b"], ["ab"], name="add_ab"),
        helper.make_node("ReduceSum", ["ab"], ["absum"], keepdims=0),
        helper.make_node("Add", ["rsum", "absum"], ["t_out"])], [vinfo("t_out", [])])
    other = _branch("else", [helper.make_node("ReduceSum", ["a"], ["e_out"], keepdims=0)],
                    [vinfo("e_out", [])])
    nodes = [helper.make_node("If", ["c"], ["y"], name="pick", then_branch=then,
                              else_branch=other)]
    model = make_model(nodes, [vinfo("c", [], TensorProto.BOOL), vinfo("x", ["B", 12]),
                               vinfo("k", [1], TensorProto.INT64), vinfo("a", ["n"]),
                               vinfo("b", ["m"])], [vinfo("y", [])],
                       [init("two_i", np.array([2], np.int64)),
                        init("minus_one", np.array([-1], np.int64))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", ["latency_first", "balanced", "memory_first"])
def test_entry_dims_of_an_untaken_branch(tmp_path: Path, mode: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A Reshape's -1 that does not divide and a broadcast whose sides do not match, both in
    the then branch: runs taking the else branch go on (onnxruntime runs them), runs taking the
    then branch are refused where it does."""
    path = _sizes_in_a_branch(tmp_path)
    shapes, _ = parse_input_shapes(["x=B:1..4,12", "a=n:1..8", "b=m:1..8"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes,
                           input_values={"k": (1, 6)})
    assert BRANCH_CHECK in (result.artifact / "src" / "model.c").read_text()
    rng = np.random.default_rng()

    def feed(taken: bool, batch: int, k: int, n: int, m: int) -> dict[str, np.ndarray]:
        return {"c": np.array(taken), "x": rng.standard_normal((batch, 12)).astype(np.float32),
                "k": np.array([k], np.int64), "a": rng.standard_normal(n).astype(np.float32),
                "b": rng.standard_normal(m).astype(np.float32)}

    feeds = [feed(*args) for args in (
        (True, 1, 1, 1, 1), (True, 4, 6, 8, 1), (True, 4, 2, 1, 8), (True, 2, 3, 5, 5),
        (False, 1, 5, 3, 4), (False, 3, 4, 8, 2), (False, 4, 6, 1, 1), (False, 1, 1, 2, 3))]
    refused = [feed(*args) for args in ((True, 1, 5, 2, 2), (True, 4, 2, 3, 4),
                                        (True, 3, 4, 1, 1))]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, 1e-5, 1e-5)


def _reshape_in_a_nested_branch(tmp_path: Path) -> Path:
    """y = c1 ? (c2 ? reshape(reshape(x, s) * 3, [24]) : x * 2) : x + 1: the Reshapes' checks
    hold only where both conditions do."""
    inner_then = _branch("inner_then", [
        helper.make_node("Reshape", ["x", "s"], ["r"], name="to_s"),
        helper.make_node("Mul", ["r", "three"], ["r3"]),
        helper.make_node("Reshape", ["r3", "flat"], ["it_out"], name="to_flat")],
        [vinfo("it_out", [24])])
    inner_else = _branch("inner_else", [helper.make_node("Mul", ["x", "two"], ["ie_out"])],
                         [vinfo("ie_out", [24])])
    outer_then = _branch("outer_then", [
        helper.make_node("If", ["c2"], ["ot_out"], name="inner", then_branch=inner_then,
                         else_branch=inner_else)], [vinfo("ot_out", [24])])
    outer_else = _branch("outer_else", [helper.make_node("Add", ["x", "one"], ["oe_out"])],
                         [vinfo("oe_out", [24])])
    nodes = [helper.make_node("If", ["c1"], ["y"], name="outer", then_branch=outer_then,
                              else_branch=outer_else)]
    model = make_model(nodes, [vinfo("x", [24]), vinfo("s", [2], TensorProto.INT64),
                               vinfo("c1", [], TensorProto.BOOL), vinfo("c2", [], TensorProto.BOOL)],
                       [vinfo("y", [24])],
                       [init("two", np.array(2, np.float32)), init("one", np.array(1, np.float32)),
                        init("three", np.array(3, np.float32)),
                        init("flat", np.array([24], np.int64))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", ["latency_first", "memory_first"])
def test_checks_of_a_nested_branch_hold_where_both_are_taken(
        tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _reshape_in_a_nested_branch(tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"s": (1, 24)})
    assert (result.artifact / "src" / "model.c").read_text().count(BRANCH_CHECK) == 2
    rng = np.random.default_rng()

    def feed(s: tuple[int, int], c1: bool, c2: bool) -> dict[str, np.ndarray]:
        return {"x": rng.standard_normal(24).astype(np.float32), "s": np.array(s, np.int64),
                "c1": np.array(c1), "c2": np.array(c2)}

    feeds = [feed(s, c1, c2) for s, c1, c2 in (
        ((4, 6), True, True), ((24, 1), True, True), ((5, 5), True, False),
        ((5, 5), False, True), ((7, 7), False, False), ((2, 12), False, True))]
    refused = [feed(s, True, True) for s in ((5, 5), (24, 24))]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, 1e-6, 1e-6)
