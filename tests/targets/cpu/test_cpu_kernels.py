"""The CPU target's kernel candidates (pyc_cli/targets/cpu/kernels.py), derived from the
registries: every candidate names a template that exists and is declared consistently, every
registered kernel op that neither decomposes nor is handled at import has a CPU candidate, and
the target answers select_kernels' questions from its own table."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import new_ctx, run_passes

from pyc_cli.ir.text import blob_key, parse_graph
from pyc_cli.ops import registry
from pyc_cli.ops.registry import OpDef
from pyc_cli.passes import canonicalize
from pyc_cli.targets import TARGET_NAMES, get_target
from pyc_cli.targets.cpu.kernels import CPU_KERNELS, cpu_kernels
from pyc_cli.targets.cpu.target import CpuTarget
from pyc_cli.targets.kernel import KernelCandidate
from pyc_cli.templating import templates_dir

KERNELS_DIR = templates_dir() / "c" / "kernels"


def all_candidates() -> list[KernelCandidate]:
    return [c for candidates in CPU_KERNELS.values() for c in candidates]


def test_every_candidate_template_exists() -> None:
    missing = sorted({c.template for c in all_candidates() if not (KERNELS_DIR / c.template).is_file()})
    assert missing == []
    cpu = get_target("cpu")
    assert all(cpu.has_template(c.template) for c in all_candidates())


def test_every_candidate_is_for_a_registered_kernel_op() -> None:
    for op, candidates in CPU_KERNELS.items():
        # a shape-only op (Range) folds at compile time, unless its sizes are symbolic (#15):
        # then only kernels that read the run-time dims compute it
        category = registry.get(op).category
        assert category == registry.KERNEL or (
            category == registry.SHAPE_ONLY and all(c.symbolic_dims for c in candidates)), op
        names = [c.name for c in candidates]
        assert candidates and len(set(names)) == len(names), op


def test_every_kernel_op_has_a_cpu_candidate() -> None:
    """A kernel op is computed by a CPU candidate unless it decomposes into simpler ops, is
    rewritten into others by canonicalize (Gemm into MatMul, ...), or says how else it is
    compiled (`lowering`, e.g. If is inlined at import)."""
    without = [name for name, opdef in registry.all_ops().items()
               if opdef.category == registry.KERNEL and name not in CPU_KERNELS
               and type(opdef).decompose is OpDef.decompose and not opdef.lowering
               and name not in canonicalize._RULES]
    assert without == []
    assert {"Gemm", "BatchNormalization"} <= set(canonicalize._RULES) - set(CPU_KERNELS)


def test_one_name_one_kernel() -> None:
    """A candidate name denotes one template and one scratch rule everywhere it appears
    (decision logs and the tuning database name candidates, not ops)."""
    by_name: dict[str, set[str]] = {}
    for c in all_candidates():
        by_name.setdefault(c.name, set()).add(c.template)
    assert {n: t for n, t in by_name.items() if len(t) > 1} == {}


def test_tunables_declare_legal_values() -> None:
    tunables = [t for c in all_candidates() for t in c.tunables]
    assert tunables, "the GEMM candidates declare their tiles"
    for tunable in tunables:
        assert tunable.values and all(isinstance(v, int) and v > 0 for v in tunable.values)
    im2col = next(c for c in CPU_KERNELS["Conv"] if c.name == "conv2d_im2col_gemm")
    assert {t.name for t in im2col.tunables} >= {"workspace_cap", "mr", "mc", "nc", "unroll"}


def test_the_cpu_target_is_registered() -> None:
    cpu = get_target("cpu")
    assert "cpu" in TARGET_NAMES and isinstance(cpu, CpuTarget)
    # the table of the ISA the target's features allow: only the GEMM-based candidates (and the
    # blocked conv and the attention, whose vectors are the ISA's) differ
    assert cpu.kernels is cpu_kernels(cpu.isa())
    gemm_ops = ("MatMul", "Conv", "ConvTranspose", "pyc.ConvBlocked", "pyc.Attention")
    assert {op: c for op, c in cpu.kernels.items() if op not in gemm_ops} == \
        {op: c for op, c in CPU_KERNELS.items() if op not in gemm_ops}


def depthwise_and_dense_convs(rng: np.random.Generator) -> str:
    dense = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    depthwise = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    text = f"""graph "convs" opset=17
input %"x" : f32[1,4,9,7]
const %"wd" : f32[8,4,3,3] = blob "{blob_key(dense)}"
const %"ww" : f32[4,1,3,3] = blob "{blob_key(depthwise)}"
%"y" : f32[1,8,9,7] = Conv(%"x", %"wd") name="dense" {{kernel_shape=ints[3,3], pads=ints[1,1,1,1]}}
%"z" : f32[1,4,9,7] = Conv(%"x", %"ww") name="depthwise" \
{{group=4, kernel_shape=ints[3,3], pads=ints[1,1,1,1]}}
output %"y"
output %"z"
"""
    return parse_graph(text, {blob_key(dense): dense, blob_key(depthwise): depthwise})


def test_candidates_apply_by_their_predicates(rng: np.random.Generator) -> None:
    """The dense 3x3 conv may run as Winograd, an implicit or a pixel-major GEMM where masked
    vector loads exist (AVX2, AVX-512; Winograd costs more on this small map, the pixel-major
    GEMM's transposed stores more than its 36-long reduction saves), as im2col GEMM or directly;
    the depthwise one (one channel per group) by the depthwise kernel or directly; the chosen
    candidate is looked up by its name. The candidates are those of the ISA the build targets,
    not this machine's."""
    graph = depthwise_and_dense_convs(rng)
    dense, depthwise = graph.nodes
    avx512, cpu = get_target("cpu", "skylake-avx512"), get_target("cpu", "portable")
    assert [c.name for c in avx512.candidates(dense, graph)] == [
        "conv2d_winograd", "conv2d_implicit_gemm", "conv2d_pixel_gemm", "conv2d_im2col_gemm",
        "conv2d_direct"]
    assert [c.name for c in cpu.candidates(dense, graph)] == ["conv2d_im2col_gemm", "conv2d_direct"]
    assert [c.name for c in cpu.candidates(depthwise, graph)] == ["conv2d_depthwise", "conv2d_direct"]
    after, _ = run_passes(graph, ["select_kernels"], new_ctx(cpu="portable"))
    chosen = {n.name: cpu.chosen(n) for n in after.nodes}
    assert chosen["dense"] is not None and chosen["dense"].name == "conv2d_im2col_gemm"
    assert chosen["depthwise"] is not None and chosen["depthwise"].name == "conv2d_depthwise"
    # the im2col tile is the candidate's own template parameter: all 63 pixels' columns
    # (36 floats each, packed in panels of 8 pixels: 64) fit the recorded cap, and the
    # workspace holds exactly them
    conv = after.nodes[0]
    assert conv.ann.kernel is not None and conv.ann.kernel.workspace_cap is not None
    assert chosen["dense"].template_params(conv, after, {})["tile"] == 64
    assert conv.ann.kernel.workspace_bytes == 64 * 36 * 4 <= conv.ann.kernel.workspace_cap
    on_avx512, _ = run_passes(graph, ["select_kernels"], new_ctx(cpu="skylake-avx512"))
    kernel = on_avx512.nodes[0].ann.kernel
    assert kernel is not None and kernel.candidate == "conv2d_implicit_gemm"
    assert not kernel.workspace_bytes  # it reads the input in place


@pytest.mark.parametrize("mode, softmax_input, lrn_input", [
    ("latency_first", None, None), ("balanced", 0, None), ("memory_first", 0, 0)])
def test_kernel_choices_carry_their_candidates_in_place_input(
        mode: str, softmax_input: int | None, lrn_input: int | None) -> None:
    """Whether a kernel may write over its input is its candidate's fact, recorded with the
    choice for the build's mode: row kernels may in balanced and memory_first, LRN (whose
    in-place path is slower) only in memory_first, and nothing in latency_first."""
    graph = parse_graph("""
input %"x" : f32[2,6,5]
%"s" : f32[2,6,5] = Softmax(%"x") name="softmax" {axis=-1}
%"l" : f32[2,6,5] = LRN(%"s") name="lrn" {size=3}
output %"l"
""")
    after, _ = run_passes(graph, ["select_kernels"], new_ctx(mode))
    softmax, lrn = after.nodes
    assert softmax.ann.kernel is not None and lrn.ann.kernel is not None
    assert (softmax.ann.kernel.inplace_input, lrn.ann.kernel.inplace_input) == (softmax_input,
                                                                                 lrn_input)


def test_fusion_facts_are_the_targets() -> None:
    """Which ops' kernels take a fused epilogue, and which take a prologue, is asked of the target."""
    cpu = get_target("cpu")
    assert [op for op in sorted(CPU_KERNELS) if cpu.takes_epilogue(op)] == \
        ["Conv", "MatMul", "pyc.ConvBlocked"]
    assert not cpu.takes_epilogue("Relu")  # no kernel of its own: fused into loops
