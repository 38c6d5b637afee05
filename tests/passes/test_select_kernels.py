"""select_kernels: one recorded kernel choice per node, the tuning database before the cost
model, and a memory planner that reads the recorded workspace instead of choosing again."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import decisions, new_ctx, run_passes

from pyc_cli.errors import PycError
from pyc_cli.ir.annotations import KernelChoice
from pyc_cli.ir.graph import Graph
from pyc_cli.ir.text import blob_key, parse_graph
from pyc_cli.ir.verify import verify
from pyc_cli.ops import registry
from pyc_cli.passes.select_kernels import WORKSPACE_CAPS
from pyc_cli.passes.tuning import InMemoryTuningDatabase, kernel_signature
from pyc_cli.targets import get_target
from pyc_cli.targets.cpu.gemm import panel_width

MATMUL_IR = """graph "mm" opset=17
input %"x" : f32[2,4]
input %"w" : f32[4,3]
%"y" : f32[2,3] = MatMul(%"x", %"w") name="mm"
%"r" : f32[2,3] = Reshape(%"y", %"shape") name="view"
const %"shape" : i64[2] = [2,3]
output %"r"
"""


def conv_graph(rng: np.random.Generator) -> Graph:
    """A 3x3 conv big enough for the im2col kernel (which takes scratch)."""
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    text = f"""graph "conv" opset=17
input %"x" : f32[1,4,16,16]
const %"w" : f32[8,4,3,3] = blob "{blob_key(w)}"
%"y" : f32[1,8,16,16] = Conv(%"x", %"w") name="conv" {{kernel_shape=ints[3,3], pads=ints[1,1,1,1]}}
output %"y"
"""
    return parse_graph(text, {blob_key(w): w})


def parsed(text: str) -> Graph:
    graph = parse_graph(text)
    graph.nodes.sort(key=lambda n: n.name != "mm")  # the text lists the shape constant late
    verify(graph, registry.lookup)
    return graph


def test_choice_recorded_on_the_node_not_in_attrs_with_reasons_logged() -> None:
    graph = parsed(MATMUL_IR)
    after, ctx = run_passes(graph, ["select_kernels"])
    mm, view = after.nodes
    # cost 0.3 * flops beats the tile loop's 1.0 and naive's 3.0 (a constant w would leave
    # only matmul_packed_const, which reads it packed at build time)
    assert mm.ann.kernel is not None and mm.ann.kernel.candidate == "matmul_packed"
    width = panel_width(get_target("cpu").isa(), 4)  # type: ignore[attr-defined]
    assert mm.ann.kernel.workspace_bytes == 4 * width * 4  # w packed at run time: K x one panel
    assert view.ann.kernel == KernelChoice("view")
    assert "kernel" not in mm.attrs and not view.attrs
    [chosen] = decisions(ctx, "select_kernel", "select_kernels")
    assert chosen.nodes == ["mm"] and chosen.after == "matmul_packed"
    assert "lowest estimated cost" in chosen.reason and "matmul_naive" in chosen.reason
    [alias] = decisions(ctx, "alias", "select_kernels")
    assert alias.nodes == ["view"]
    assert all(n.ann.kernel is None for n in graph.nodes)  # run_passes worked on a clone


def test_tuning_database_hit_overrides_the_cost_model() -> None:
    graph = parsed(MATMUL_IR)
    signature = kernel_signature(graph.nodes[0], graph, "cpu")
    ctx = new_ctx()
    ctx.tuning = InMemoryTuningDatabase({signature: KernelChoice("matmul_naive", {"unroll": 4})})
    after, ctx = run_passes(graph, ["select_kernels"], ctx)
    assert after.nodes[0].ann.kernel == KernelChoice("matmul_naive", {"unroll": 4})
    [chosen] = decisions(ctx, "select_kernel")
    assert chosen.after == "matmul_naive" and "tuning database" in chosen.reason
    assert chosen.extra == {"params": {"unroll": 4}, "serves": "tuning:measured"}


def test_tuning_database_miss_and_inapplicable_hit_fall_back_to_the_cost_model() -> None:
    graph = parsed(MATMUL_IR)
    ctx = new_ctx()
    other = kernel_signature(graph.nodes[0], graph, "cuda")  # another target's entry: a miss
    ctx.tuning = InMemoryTuningDatabase({other: KernelChoice("matmul_naive")})
    after, _ = run_passes(graph, ["select_kernels"], ctx)
    assert after.nodes[0].ann.kernel.candidate == "matmul_packed"
    signature = kernel_signature(graph.nodes[0], graph, "cpu")
    ctx = new_ctx()
    ctx.tuning = InMemoryTuningDatabase({signature: KernelChoice("conv2d_direct")})
    after, ctx = run_passes(graph, ["select_kernels"], ctx)
    assert after.nodes[0].ann.kernel.candidate == "matmul_packed"
    assert "conv2d_direct does not apply" in decisions(ctx, "select_kernel")[0].reason


def test_signature_ignores_names_but_not_shapes() -> None:
    graph = parsed(MATMUL_IR)
    renamed = parsed(MATMUL_IR.replace('"x"', '"input"').replace('name="mm"', 'name="other"'))
    wider = parsed(MATMUL_IR.replace("f32[2,4]", "f32[5,4]").replace("f32[2,3] = MatMul",
                                                                      "f32[5,3] = MatMul")
                   .replace('%"r" : f32[2,3]', '%"r" : f32[5,3]').replace("[2,3]\n", "[5,3]\n"))
    sign = lambda g: kernel_signature(g.nodes[0], g, "cpu")  # noqa: E731
    assert sign(graph) == sign(renamed)
    assert sign(graph) != sign(wider)


@pytest.mark.parametrize("mode", sorted(WORKSPACE_CAPS))
def test_workspace_recorded_with_the_choice_under_the_mode_cap(mode: str, rng) -> None:  # noqa: ANN001
    # the im2col GEMM, the conv kernel every ISA has (on AVX2 and AVX-512 an implicit GEMM
    # without workspace is cheaper)
    after, ctx = run_passes(conv_graph(rng), ["select_kernels"], new_ctx(mode, cpu="portable"))
    kernel = after.nodes[0].ann.kernel
    assert kernel is not None and kernel.candidate == "conv2d_im2col_gemm"
    assert kernel.workspace_cap == WORKSPACE_CAPS[mode]
    conv = after.nodes[0]
    candidate = ctx.kernels.chosen(conv)
    assert candidate is not None and kernel.workspace_bytes == candidate.workspace_bytes(conv, after)
    # im2col columns: a 36-row reduction times a tile of pixels, within the cap
    assert 0 < kernel.workspace_bytes <= WORKSPACE_CAPS[mode] and kernel.workspace_bytes % (36 * 4) == 0


def test_planner_reads_the_recorded_workspace_and_does_not_choose_again(rng, monkeypatch) -> None:  # noqa: ANN001
    after, ctx = run_passes(conv_graph(rng), ["select_kernels"], new_ctx(cpu="portable"))
    kernel = after.nodes[0].ann.kernel
    assert kernel is not None
    kernel.workspace_bytes = 4096 + 8  # a size only the recorded choice can give the planner

    def no_second_choice(*args: object) -> None:
        raise AssertionError("plan_memory chose a kernel again")

    monkeypatch.setattr(ctx.kernels, "candidates", no_second_choice)
    planned, ctx = run_passes(after, ["plan_memory"], ctx)
    plan = ctx.artifacts["memory_plan"]
    [scratch] = [t for t in plan.tensors if t.name == "conv#workspace"]
    assert scratch.bytes == 4096 + 8 and "conv" in plan.workspaces
    [logged] = decisions(ctx, "workspace", "plan_memory")
    assert logged.after == 4096 + 8


def test_no_kernel_for_a_node_is_reported_by_select_kernels(monkeypatch) -> None:  # noqa: ANN001
    graph = parsed(MATMUL_IR)
    ctx = new_ctx()
    monkeypatch.setattr(ctx.kernels, "candidates", lambda node, graph: [])  # the target has none
    with pytest.raises(PycError) as info:
        run_passes(graph, ["select_kernels"], ctx)
    assert info.value.code == "E008" and "'mm'" in info.value.what
