"""The CUDA target without a GPU: every kernel template is generated for the cases of
cuda_cases.py and compiled by NVRTC for sm_90 and sm_80 (skipped, with the reason, only when the
NVRTC wheel is missing); the candidate table is consistent; build errors are PYC-coded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cuda_cases import CASES, Case
from helpers import write_model
from nvrtc_check import compile_cleanly

from pyc_cli.abi import io_infos
from pyc_cli.api import compile_graph
from pyc_cli.errors import PycError
from pyc_cli.ops import registry
from pyc_cli.planning.weights import layout_weights
from pyc_cli.targets import get_target
from pyc_cli.targets.base import ModelInfo
from pyc_cli.targets.cuda import bindings, toolchain
from pyc_cli.targets.cuda.kernels import CUDA_KERNELS, PRECISIONS, cuda_kernels
from pyc_cli.targets.cuda.target import CudaTarget, kernel_templates
from pyc_cli.templating import templates_dir

KERNELS_DIR = templates_dir() / "cuda" / "kernels"
needs_nvrtc = pytest.mark.skipif(not bindings.available(),
                                 reason='the NVRTC wheel is not installed (pip install ".[cuda]")')


def emit_case(case: Case, tmp_path: Path, seed: int = 0) -> tuple[str, set[str]]:
    """model.cu of the case's model and the templates its kernels came from."""
    sources, used = emit_sources(case, tmp_path, seed)
    return sources["model.cu"], used


def emit_sources(case: Case, tmp_path: Path, seed: int = 0) -> tuple[dict[str, str], set[str]]:
    path = write_model(case.make(np.random.default_rng(seed)), tmp_path)
    graph, ctx = compile_graph(path, target="cuda")
    target: CudaTarget = ctx.target  # type: ignore[assignment]
    plan = ctx.artifacts["memory_plan"]
    layout = layout_weights(graph)
    info = ModelInfo("test", io_infos(graph, graph.inputs),
                     io_infos(graph, graph.outputs, graph.public_outputs()), plan.arena_bytes,
                     layout.total_bytes, 0, "test")
    sources = target.emit(graph, plan, layout, info)
    return sources, {c.template for n in graph.nodes if (c := target.chosen(n))}


@pytest.mark.parametrize("name,grid", [
    ("matmul_big_tiles", [18, 17, 1]),     # 306 tiles of 64 x 64 fill a large GPU
    ("matmul_tiles_epilogue", [3, 3, 1]),  # 70 x 65 in 64-tiles is 4 blocks: 32 x 32 tiles
    ("matmul_batched", [3, 3, 6]),
    ("matmul_skinny_epilogue", [5, 1, 1]),  # 131 columns, 32 a block
])
def test_gemm_grids(name: str, grid: list[int], tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == name)
    sources, _ = emit_sources(case, tmp_path)
    (launch,) = json.loads(sources["launches.json"])["launches"]
    assert launch["grid"] == grid and launch["block"] == [256, 1, 1]


def test_every_candidate_template_exists_and_is_exercised() -> None:
    """Every template of every precision's table exists and is used: the float32 ones by the
    cases here, the tensor-core GEMM by test_cuda_mma.py's, the tensor-core attention by
    test_cuda_attention.py's, the tensor-core and depthwise convs by test_cuda_conv.py's (the
    float32 implicit-GEMM conv by the cases here too), the Hopper GEMMs (sm_90's table) by
    test_cuda_wgmma.py's and test_cuda_wgmma_tma.py's, a run-time If's select and trap by
    test_cuda_if.py's (if_cases.py), the generic kernel and the Pad, ArgMax / ArgMin,
    InstanceNormalization, Resize, TopK and recurrent kernels by test_cuda_generic.py's (generic_cases.py)."""
    templates = {c.template for p in PRECISIONS for arch in toolchain.SUPPORTED_ARCHS
                 for candidates in cuda_kernels(p, arch).values() for c in candidates}
    assert sorted(t for t in templates if not (KERNELS_DIR / t).is_file()) == []
    assert templates == {t for case in CASES for t in case.templates} | {
        "matmul_mma.cu.j2", "attention_mma.cu.j2", "conv_mma.cu.j2", "conv_depthwise.cu.j2",
        "matmul_wgmma.cu.j2", "matmul_wgmma_tma.cu.j2", "if_select.cu.j2", "unreachable.cu.j2",
        "generic.cu.j2", "pad.cu.j2", "argreduce.cu.j2", "instancenorm.cu.j2", "resize.cu.j2",
        "topk.cu.j2", "recurrent.cu.j2"}
    assert sorted(p.name for p in KERNELS_DIR.glob("*.cu.j2")) == sorted(templates)


def test_every_candidate_is_for_a_registered_kernel_op() -> None:
    """... or an op the CPU target has kernels for too (Range: shape-only where its operands
    are known, computed at run time where they are not)."""
    from pyc_cli.targets.cpu.kernels import STATIC_KERNELS

    for op, candidates in CUDA_KERNELS.items():
        assert registry.get(op).category == registry.KERNEL or op in STATIC_KERNELS, op
        assert len({c.name for c in candidates}) == len(candidates)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_uses_its_templates(case: Case, tmp_path: Path) -> None:
    _, used = emit_case(case, tmp_path)
    assert set(case.templates) <= used


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_nvrtc_compiles_every_kernel(case: Case, arch: str, tmp_path: Path) -> None:
    source, _ = emit_case(case, tmp_path)
    compile_cleanly(source, arch)


@needs_nvrtc
def test_nvrtc_failure_names_the_template() -> None:
    source = "\n".join(["typedef int int32_t;", "",
                        "// step 0: MatMul (cuda_matmul_tiled, matmul_tiled.cu.j2)",
                        'extern "C" __global__ void k0_matmul(float* Y) {',
                        "  Y[0] = undefined_name;", "}", ""])
    with pytest.raises(PycError) as caught:
        toolchain.compile_source(source, "sm_90", kernel_templates(source))
    assert caught.value.code == "E028"
    assert "matmul_tiled.cu.j2" in caught.value.what and "undefined_name" in caught.value.what


def test_unknown_arch_is_refused() -> None:
    with pytest.raises(PycError) as caught:
        get_target("cuda", arch="sm_75")
    assert caught.value.code == "E050" and "sm_90" in caught.value.hint


def test_ptx_driver_table() -> None:
    assert toolchain.ptx_min_driver("9.5") == "13.5"
    assert toolchain.ptx_min_driver("9.0") == "13.0"
    assert toolchain.ptx_min_driver("8.5") == "12.5"
    assert toolchain.ptx_min_driver("8.8") == "12.9"


def test_missing_cuda_python_is_a_coded_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU-only install: the import fails, and the error says how to install the extra."""
    import sys

    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings.nvrtc", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings.driver", None)
    for load in (bindings.nvrtc, bindings.driver):
        with pytest.raises(PycError) as caught:
            load()
        assert caught.value.code == "E027" and "[cuda]" in caught.value.hint
    assert not bindings.available()
