"""Issue #15: the two branches of a run-time If share arena space. Only one branch runs, so
values computed only in the then-branch and values computed only in the else-branch may share
bytes although their lifetimes overlap in the schedule (planning/arena.conflicts, by the run
conditions of ir/guards.py); and the taken branch computes the If's output straight into its
bytes (plan.branch_outputs: the select copies nothing). Arena sizes computed by hand below;
every build checked with the planner's invariant checker and against onnxruntime with each
choice of conditions, on fresh random inputs and weights, output buffers poisoned with NaN.
Tolerances: float32 GEMM chains in another summation order, rtol = atol = 1e-4."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import onnxruntime_outputs
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.api import BuildResult
from pyc_cli.ir.graph import Graph
from pyc_cli.ir.symbolic import parse_input_shapes
from pyc_cli.planning.arena import lower_bound
from pyc_cli.planning.liveness import compute_liveness
from pyc_cli.planning.plan import analyze_storage, storage_blocks
from pyc_cli.planning.policy import get_policy
from pyc_cli.planning.runtime_offsets import RuntimeOffsets
from tests.dynamic.checks import poison_outputs
from tests.helpers import init, make_model, vinfo, write_model
from tests.planning.test_planner import check_plan

RTOL, ATOL = 1e-4, 1e-4
MODES = ("latency_first", "balanced", "memory_first")
K = 64 * 64 * 4  # every value below is a [64, 64] float32: 16384 bytes, a multiple of 64
node = helper.make_node


def _branch(name: str, nodes: list[onnx.NodeProto], out: str,
            batch: str | int = 64) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, [], [vinfo(out, [batch, 64])])


def _weights(rng: np.random.Generator, names: list[str]) -> list[onnx.TensorProto]:
    return [init(n, (rng.standard_normal((64, 64)) / 8).astype(np.float32)) for n in names]


def _two_matmuls(tmp_path: Path, rng: np.random.Generator, output_in_arena: bool,
                 batch: str | int = 64) -> Path:
    """then: x @ wt1 @ wt2; else: x @ we1 @ we2; the If's output r is the graph output, or
    (output_in_arena) read by y = r @ wy. Schedule (import order): t1, t_out, e1, e_out, If
    [, y]; the then-output t_out lives from step 1 to the If, across the else-branch."""
    then = _branch("then", [node("MatMul", ["x", "wt1"], ["t1"]),
                            node("MatMul", ["t1", "wt2"], ["t_out"])], "t_out", batch)
    other = _branch("else", [node("MatMul", ["x", "we1"], ["e1"]),
                             node("MatMul", ["e1", "we2"], ["e_out"])], "e_out", batch)
    nodes = [node("If", ["flag"], ["r"], then_branch=then, else_branch=other)]
    outputs = [vinfo("r", [batch, 64])]
    if output_in_arena:
        nodes.append(node("MatMul", ["r", "wy"], ["y"]))
        outputs = [vinfo("y", [batch, 64])]
    model = make_model(nodes, [vinfo("x", [batch, 64]), vinfo("flag", [], TensorProto.BOOL)],
                       outputs, _weights(rng, ["wt1", "wt2", "we1", "we2", "wy"]))
    return write_model(model, tmp_path)


def _nested(tmp_path: Path, rng: np.random.Generator) -> Path:
    """An If on `flag2` inside the else-branch of an If on `flag`, every branch two MatMuls;
    s = x @ ws is read by the outer then-branch and the inner else-branch (needed where flag
    or (not flag and not flag2): shared, not private to one branch)."""
    inner = node("If", ["flag2"], ["inner"], then_branch=_branch(
        "inner_then", [node("MatMul", ["x", "wc"], ["i1"]),
                       node("MatMul", ["i1", "wd"], ["i_out"])], "i_out"),
        else_branch=_branch("inner_else", [node("MatMul", ["s", "we"], ["j1"]),
                                           node("MatMul", ["j1", "wf"], ["j_out"])], "j_out"))
    outer = node("If", ["flag"], ["r"], then_branch=_branch(
        "outer_then", [node("MatMul", ["s", "wa"], ["t1"]),
                       node("MatMul", ["t1", "wb"], ["t_out"])], "t_out"),
        else_branch=_branch("outer_else", [inner], "inner"))
    nodes = [node("MatMul", ["x", "ws"], ["s"]), outer, node("MatMul", ["r", "wy"], ["y"])]
    model = make_model(nodes, [vinfo("x", [64, 64]), vinfo("flag", [], TensorProto.BOOL),
                               vinfo("flag2", [], TensorProto.BOOL)], [vinfo("y", [64, 64])],
                       _weights(rng, ["ws", "wa", "wb", "wc", "wd", "we", "wf", "wy"]))
    return write_model(model, tmp_path)


def _unaware_lower_bound(graph: Graph, mode: str) -> int:
    """The liveness lower bound as the planner computed it before it knew of run-time Ifs:
    every storage conflicting with every other alive beside it, no branch written into the
    If's output (the arena is at least this)."""
    liveness = compute_liveness(graph)
    storage = analyze_storage(graph, liveness, get_policy(mode), branch_outputs=False)
    blocks = [dataclasses.replace(b, when=None)
              for b in storage_blocks(graph, storage, liveness, 64)]
    return lower_bound(blocks)


def _build(path: Path, out: Path, mode: str, **kwargs: object) -> BuildResult:
    result = pyc_cli.build(path, out, mode=mode, **kwargs)  # type: ignore[arg-type]
    check_plan(result.graph, result.context, result.plan, mode)
    return result


def _runs_match(path: Path, artifact: Path, feeds_list: list[dict[str, np.ndarray]]) -> None:
    with pyc_cli.load(artifact) as model:
        for feeds in feeds_list:
            want = onnxruntime_outputs(path, feeds)
            got = model.run(feeds)
            for name, value in want.items():
                assert got[name].shape == value.shape
                np.testing.assert_allclose(got[name], value, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("output_in_arena", [True, False])
def test_branch_values_share_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str,
                                   output_in_arena: bool) -> None:
    """By hand (K = 16 KiB; lifetimes t1 [0,1], t_out [1,4], e1 [2,3], e_out [3,4], r [4,5]):
    before, step 3 holds t_out + e1 + e_out = 3K. Now t_out (then) and e1, e_out (else) are
    exclusive: at step 3 a run holds e1 + e_out (else) or t_out (then): 2K. With r in the
    arena the branches write r directly: one storage {t_out, e_out, r} over [1,5] plus t1
    (step 0-1) and e1 (steps 2-3), exclusive with nothing alive beside them: 2K. With r a graph
    output the branches write the caller's buffer directly: only t1 and e1 stay: K."""
    rng = np.random.default_rng()
    path = _two_matmuls(tmp_path, rng, output_in_arena)
    result = _build(path, tmp_path / "art", mode)
    plan = result.plan
    assert _unaware_lower_bound(result.graph, mode) == 3 * K
    assert plan.arena_bytes == plan.lower_bound_bytes == (2 if output_in_arena else 1) * K
    offsets = {t.name: t.offset for t in plan.tensors}
    if output_in_arena:
        assert plan.branch_outputs == {"If_0": [0]}
        assert offsets["If_0/then/t_out"] == offsets["If_0/else/e_out"] == offsets["r"]
        assert "branch_outputs" in (tmp_path / "art" / "memory_plan.json").read_text()
        assert [d.nodes for d in result.context.decisions
                if d.action == "branch_outputs"] == [["If_0"]]
    else:  # the If's output is the caller's buffer: the branches compute into it
        assert plan.branch_outputs == {"If_0": [0]}
        assert plan.output_values == {"If_0/then/t_out": "r", "If_0/else/e_out": "r"}
        assert "If_0/then/t_out" not in offsets and "If_0/else/e_out" not in offsets
        assert offsets["If_0/then/t1"] == offsets["If_0/else/e1"]  # exclusive branches
        source = (tmp_path / "art" / "src" / "model.c").read_text()
        assert "(const float*)outputs[0], (const float*)outputs[0], (float*)outputs[0]" in source
    poison_outputs(monkeypatch)
    _runs_match(path, tmp_path / "art", [
        {"x": rng.standard_normal((64, 64)).astype(np.float32), "flag": np.array(flag)}
        for flag in (True, False, False, True)])


@pytest.mark.parametrize("mode", MODES)
def test_nested_branches_share_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     mode: str) -> None:
    """By hand (K = 16 KiB): schedule s, t1, t_out, i1, i_out, j1, j_out, inner If, If, y.
    Before: steps 4-7 hold four values each (e.g. step 5: s, t_out, i_out, j1): 4K. Now:
    i_out and j_out are written into `inner`, and that storage and t_out into r: one storage
    R over [2, 9]; s (where flag or not flag2) is exclusive with i1 (not flag and flag2)
    only; the peak is s + t1 + R (flag, step 2) = s + j1 + R (not flag, not flag2, step 5) =
    3K."""
    rng = np.random.default_rng()
    path = _nested(tmp_path, rng)
    result = _build(path, tmp_path / "art", mode)
    plan = result.plan
    assert _unaware_lower_bound(result.graph, mode) == 4 * K
    if mode == "latency_first":  # the import order (the others may schedule otherwise)
        assert plan.arena_bytes == plan.lower_bound_bytes == 3 * K
        roots = {t.name: t.alias_of or t.name for t in plan.tensors}
        assert {v for v, root in roots.items() if root == "r"} == {
            "r", "If_1/then/t_out", "If_1/else/inner", "If_1/else/If_0/then/i_out",
            "If_1/else/If_0/else/j_out"}
    assert plan.arena_bytes <= 3 * K
    poison_outputs(monkeypatch)
    _runs_match(path, tmp_path / "art", [
        {"x": rng.standard_normal((64, 64)).astype(np.float32), "flag": np.array(flag),
         "flag2": np.array(flag2)}
        for flag, flag2 in ((True, False), (False, True), (False, False), (True, True),
                            (False, False), (False, True))])


@pytest.mark.parametrize("mode", MODES)
def test_symbolic_batch_branches_share_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             mode: str) -> None:
    """Over `batch:1..64` (balanced and memory_first compute offsets at run time): at the
    upper bounds the arena is the static model's 2K; the run-time plan orders no pair of
    exclusive blocks. Runs at batch 1, 64 and between, both branches."""
    rng = np.random.default_rng()
    path = _two_matmuls(tmp_path, rng, output_in_arena=True, batch="b")
    shapes, _ = parse_input_shapes(["x=batch:1..64,64"])
    result = _build(path, tmp_path / "art", mode, input_shapes=shapes)
    assert result.plan.arena_bytes == 2 * K
    runtime = result.plan.runtime
    if runtime is not None:
        at_one = runtime.extent_at({"batch": 1})
        assert at_one == 2 * 256  # t1 (or e1) and the storage of r: 256 B each, aligned
        # the per-run lower bound (pyc explain's, the order's score): never above the arena
        for env in runtime.corners():
            assert runtime.lower_bound_at(env) == runtime.extent_at(env), env
        again = RuntimeOffsets.from_json(runtime.to_json())  # the conditions travel
        assert [b.when for b in again.blocks] == [b.when for b in runtime.blocks]
        assert any(b.when is not None for b in again.blocks)
    poison_outputs(monkeypatch)
    _runs_match(path, tmp_path / "art", [
        {"x": rng.standard_normal((batch, 64)).astype(np.float32), "flag": np.array(flag)}
        for batch, flag in ((1, True), (1, False), (64, False), (64, True), (23, True),
                            (40, False))])


def test_shared_arena_builds_are_byte_identical(tmp_path: Path) -> None:
    path = _nested(tmp_path, np.random.default_rng(7))
    for name in ("a", "b"):
        pyc_cli.build(path, tmp_path / name, mode="memory_first")
    for file in ("src/model.c", "model.ir", "memory_plan.json", "decisions.jsonl", "weights.bin"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
