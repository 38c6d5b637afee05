"""Kernel + allocator co-selection (issue #16, point 2; passes/coselect.py).

The hand-made model: four 3x3 convs of 32 channels, two on a 48x48 map, a 2x2 max-pool, two on
24x24. Winograd is the fastest kernel of each but takes a whole copy of transformed tiles as
scratch (1.5 MB at 48x48, 456 KB at 24x24). latency_first and balanced need 2087424 bytes;
memory_first, choosing kernels first by its 32 KiB scratch cap, runs every conv as the implicit
GEMM and tiles the 48x48 conv -> pool chain (423936 bytes). Under a 700 KB budget the answer
is known: no tiling is needed; Winograd fits beside the live activations at the two 24x24 convs
(with its 8 scratch holders) and at the first conv (whose input is the graph's, outside the
arena) with 4 lean holders (one-vector panels, MR-row GEMM blocks: 294912 + 4 x 96768 = 681984
bytes, the peak; 2 full holders would need 893952); at the second conv its input and output
(589824 bytes) leave no room even for 2 lean holders (783360).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import invoke, onnxruntime_outputs
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli.api import compile_graph, compile_within_budget
from pyc_cli.errors import PycError
from pyc_cli.passes.coselect import total_cost, variants
from pyc_cli.planning.policy import MEMORY_FIRST
from pyc_cli.testing.policy_determinism import tree

BUDGET = 700_000
CHANNELS = 32
CONVS = ("Conv_0", "Conv_1", "Conv_3", "Conv_4")  # Conv_0, Conv_1 at 48x48; Conv_3, Conv_4 at 24x24


def _toy(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def conv(x: str, y: str, i: int) -> None:
        weight = rng.standard_normal((CHANNELS, CHANNELS, 3, 3)) * np.sqrt(2 / (9 * CHANNELS))
        inits.append(numpy_helper.from_array(weight.astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [y], pads=[1, 1, 1, 1]))

    conv("x", "a", 0)
    conv("a", "b", 1)
    nodes.append(helper.make_node("MaxPool", ["b"], ["p"], kernel_shape=[2, 2], strides=[2, 2]))
    conv("p", "c", 2)
    conv("c", "y", 3)
    graph = helper.make_graph(
        nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, 48, 48])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, CHANNELS, 24, 24])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return _toy(tmp_path / "toy.onnx", int.from_bytes(os.urandom(2), "little"))


def _kernels(graph: object) -> dict[str, str]:
    return {n.name: n.ann.kernel.candidate for n in graph.nodes}  # type: ignore[attr-defined]


def test_coselection_takes_winograd_where_its_scratch_fits_the_budget(toy: Path) -> None:
    seq_graph, seq_ctx = compile_within_budget(toy, BUDGET, kernel_selection="sequential")
    co_graph, co_ctx = compile_within_budget(toy, BUDGET)
    seq_plan, co_plan = seq_ctx.artifacts["memory_plan"], co_ctx.artifacts["memory_plan"]
    assert seq_plan.mode == co_plan.mode == "memory_first"  # latency_first needs 2087424 bytes
    assert seq_plan.arena_bytes == 423936 and co_plan.arena_bytes == 681984 <= BUDGET
    sequential, coselected = _kernels(seq_graph), _kernels(co_graph)
    # sequential: the cap forbids Winograd everywhere, and the 48x48 chain is tiled
    assert "Conv_1_tile0" in sequential and "conv2d_winograd" not in sequential.values()
    assert {k: coselected[k] for k in CONVS} == {
        "Conv_0": "conv2d_winograd", "Conv_1": "conv2d_implicit_gemm",
        "Conv_3": "conv2d_winograd", "Conv_4": "conv2d_winograd"}
    params = {n.name: n.ann.kernel.params for n in co_graph.nodes}
    # Conv_0: 4 lean holders (4 x 96768 B of scratch beside its 294912 B of input and output)
    assert params["Conv_0"] == {"tasks": 4, "lean": 1} and params["Conv_3"] == {}
    assert total_cost(co_graph, co_ctx) < total_cost(seq_graph, seq_ctx)


def test_every_choice_is_logged_with_its_reason(toy: Path) -> None:
    _, ctx = compile_within_budget(toy, BUDGET)
    by_action: dict[str, list] = {}
    for decision in ctx.decisions:
        by_action.setdefault(decision.action, []).append(decision)
    (search,) = by_action["coselect"]
    assert search.extra["target"] == BUDGET and search.after < search.before
    assert search.extra["variants"]["no rewrites, given order"]["upgrades"] == 3
    assert search.extra["sequential"]["cost"] > search.after
    upgraded = {d.nodes[0]: d for d in by_action["coselect_kernel"]}
    kept = {d.nodes[0]: d for d in by_action["coselect_keep"]}
    assert sorted(upgraded) == ["Conv_0", "Conv_3", "Conv_4"] and sorted(kept) == ["Conv_1"]
    assert upgraded["Conv_3"].after == "conv2d_winograd" and "within 700000" in \
        upgraded["Conv_3"].reason
    assert upgraded["Conv_0"].extra["params"] == {"tasks": 4, "lean": 1}
    assert "conv2d_winograd(lean=1, tasks=4) instead of" in upgraded["Conv_0"].reason
    assert "over 700000" in kept["Conv_1"].reason and kept["Conv_1"].extra["extra_bytes"] > 0
    assert "with its least scratch, (lean=1, tasks=2), still over" in kept["Conv_1"].reason
    for decision in [search, *upgraded.values(), *kept.values()]:
        assert decision.extra["serves"] == "policy:memory_first/coselect"


def test_without_a_budget_memory_first_keeps_its_smallest_arena(toy: Path) -> None:
    for selection in ("sequential", "coselect"):
        _, ctx = compile_graph(toy, "memory_first", kernel_selection=selection)
        assert ctx.artifacts["memory_plan"].arena_bytes == 423936, selection
        assert any(d.action == "coselect" for d in ctx.decisions) == (selection == "coselect")


def test_variants_go_from_no_rewrites_to_all_in_each_order() -> None:
    found = variants(MEMORY_FIRST)
    assert [v.label for v in found[:3]] == ["no rewrites, given order",
                                            "no rewrites, depth_first order",
                                            "no rewrites, greedy_memory order"]
    assert [v.label for v in found[3::3]] == ["tile_channels, given order",
                                              "rematerialize, given order",
                                              "tile_channels+rematerialize, given order"]
    assert not found[0].policy.tile_channels and found[-1].policy.rematerialize


def test_an_unknown_kernel_selection_is_refused(toy: Path) -> None:
    with pytest.raises(PycError) as error:
        compile_graph(toy, "memory_first", kernel_selection="fastest")
    assert error.value.code == "E050"


def test_coselected_build_matches_onnxruntime(toy: Path, tmp_path: Path) -> None:
    feeds = {"x": np.random.default_rng(int.from_bytes(os.urandom(2), "little"))
             .standard_normal((1, CHANNELS, 48, 48)).astype(np.float32)}
    expected = onnxruntime_outputs(toy, feeds)["y"].astype(np.float64)
    for selection in ("sequential", "coselect"):
        result = pyc_cli.build(toy, tmp_path / f"{selection}.pyc", memory_budget=BUDGET,
                               kernel_selection=selection)
        assert result.plan.arena_bytes <= BUDGET
        with pyc_cli.load(result.artifact) as model:
            got = model.run(feeds)["y"].astype(np.float64)
        # Winograd F(4x4,3x3) loses a few bits: error relative to the output's largest value
        scale = float(np.max(np.abs(expected)))
        assert np.max(np.abs(got - expected)) <= 1e-4 * scale, selection


def test_coselected_build_is_byte_identical_across_processes(toy: Path, tmp_path: Path) -> None:
    outs = [tmp_path / "a" / "toy.pyc", tmp_path / "b" / "deeper" / "toy.pyc"]
    for seed, out in zip(("1", "4242"), outs):
        out.parent.mkdir(parents=True)
        subprocess.run([sys.executable, "-m", "pyc_cli.cli.main", "build", str(toy), "-o",
                        str(out), "--memory-budget", str(BUDGET), "--no-cache", "-q"],
                       env={**os.environ, "PYTHONHASHSEED": seed}, cwd=out.parent, check=True)
    first, second = tree(outs[0]), tree(outs[1])
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    assert b"coselect_kernel" in first["decisions.jsonl"]


def test_the_replay_check_repeats_the_search(toy: Path) -> None:
    """A contract's `deterministic` replays the planning: co-selection's search included."""
    _, ctx = compile_graph(toy, "memory_first", memory_budget=BUDGET, check_determinism=True)
    assert [d.action for d in ctx.decisions].count("determinism_check") == 2


def test_the_command_line_keeps_the_sequential_baseline(toy: Path) -> None:
    for selection, winograd in (("sequential", False), ("coselect", True)):
        code, out = invoke("build", str(toy), "--mode", "memory_first", "--memory-budget",
                           str(BUDGET), "--kernel-selection", selection,
                           "--dump-ir-after", "plan_memory")
        assert code == 0, out
        assert ("conv2d_winograd" in out) == winograd, selection
