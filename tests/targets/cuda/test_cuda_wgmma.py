"""The Hopper GEMM (matmul_wgmma.cu.j2) without a GPU: which builds select it (sm_90 at fp16 /
bf16, large GEMMs; never sm_80 or tf32), its launch geometry, its rendering and NVRTC
compilation for sm_90a in every variant (wgmma instructions in the PTX, no spills, HGMMA in the
SASS where cuobjdump is at hand), the manifest's honest sm_90a record and the loader's
refusal of such a CUBIN on any GPU but sm_90. Its results: test_cuda_wgmma_gpu.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import make_model, vinfo, write_model
from nvrtc_check import compile_cleanly
from onnx import helper
from test_cuda_compile import needs_nvrtc
from test_cuda_mma import emit_sources
from wgmma_cases import COMPILE_CASES, VARIANTS, WgmmaCase, epilogue

import pyc_cli
from pyc_cli.api import compile_graph
from pyc_cli.errors import PycError
from pyc_cli.runtime import cuda as cuda_runtime
from pyc_cli.targets.cuda import toolchain
from pyc_cli.targets.cuda.kernel_context import WGMMA_BN
from pyc_cli.targets.cuda.target import CudaTarget

WGMMA = "cuda_matmul_wgmma"


class ForcedWgmma:
    """A tuning database giving every MatMul the Hopper GEMM (or `candidate`, the TMA one)
    with `params`."""

    def __init__(self, candidate: str = WGMMA, **params: int) -> None:
        self.candidate = candidate
        self.params = params

    def lookup(self, signature):  # noqa: ANN001, ANN201
        from pyc_cli.ir.annotations import KernelChoice

        return KernelChoice(self.candidate, dict(self.params)) if signature.op == "MatMul" else None


def emit(model_path: Path, precision: str, arch: str = "sm_90",
         tuning: ForcedWgmma | None = None) -> tuple[dict[str, str], list[str]]:
    """The sources of a build and the MatMuls' chosen candidates."""
    graph, ctx = compile_graph(model_path, target=CudaTarget(arch, precision),
                               tuning=tuning)  # type: ignore[arg-type]
    chosen = [n.ann.kernel.candidate for n in graph.nodes if n.op == "MatMul" and n.ann.kernel]
    return emit_sources(graph, ctx), chosen


def gemm_inputs(m: int, k: int, n: int) -> object:
    """y = x z, both inputs (no large constant to write)."""
    return make_model([helper.make_node("MatMul", ["x", "z"], ["y"])],
                      [vinfo("x", (m, k)), vinfo("z", (k, n))], [vinfo("y", (m, n))])


# ---------------------------------------------------------------- selection

@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_large_gemms_on_sm90_select_it(precision: str, tmp_path: Path) -> None:
    """4096^3 and 2048 x 2048 x 1024 (128 tiles of 128 x 128) take the Hopper GEMM on sm_90;
    sm_80 keeps the mma.sync GEMM, and so do GEMMs of fewer tiles or a shallow K."""
    for (m, k, n), sm90 in (((4096, 4096, 4096), WGMMA), ((2048, 1024, 1024), WGMMA),
                            ((1024, 1024, 1024), "cuda_matmul_mma"),  # 64 tiles
                            ((4096, 128, 4096), "cuda_matmul_mma"),  # K too shallow
                            ((128, 384, 384), "cuda_matmul_mma")):
        path = write_model(gemm_inputs(m, k, n), tmp_path, f"g{m}_{k}_{n}.onnx")
        assert emit(path, precision)[1] == [sm90], (m, k, n)
        assert emit(path, precision, "sm_80")[1] == ["cuda_matmul_mma"], (m, k, n)


def test_tf32_and_sm80_never_have_it(tmp_path: Path) -> None:
    from pyc_cli.targets.cuda.kernels import cuda_kernels

    for arch in toolchain.SUPPORTED_ARCHS:
        for precision in ("fp32", "tf32", "fp16", "bf16"):
            names = {c.name for c in cuda_kernels(precision, arch)["MatMul"]}
            assert (WGMMA in names) == (arch == "sm_90" and precision in ("fp16", "bf16"))
    path = write_model(gemm_inputs(4096, 4096, 4096), tmp_path)
    assert emit(path, "tf32")[1] == ["cuda_matmul_mma"]


def test_a_forced_variant_out_of_range_is_refused(tmp_path: Path) -> None:
    path = write_model(gemm_inputs(256, 256, 256), tmp_path)
    with pytest.raises(PycError) as caught:
        emit(path, "fp16", tuning=ForcedWgmma(tc_wgmma_stages=5))
    assert caught.value.code == "E090" and "tc_wgmma_stages" in caught.value.what


# ---------------------------------------------------------------- rendering and NVRTC

@pytest.mark.parametrize("case", COMPILE_CASES, ids=lambda c: c.name)
def test_launch_geometry(case: WgmmaCase, tmp_path: Path) -> None:
    path = write_model(case.make(np.random.default_rng(0)), tmp_path)
    sources, chosen = emit(path, "fp16", tuning=ForcedWgmma())
    assert chosen == [WGMMA] * case.gemms
    launches = [s for s in json.loads(sources["launches.json"])["launches"] if s["op"] == "MatMul"]
    for launch in launches:
        assert launch["block"] == [256, 1, 1]
        assert launch["shared_bytes"] == 4 * (128 * 64 + 64 * WGMMA_BN) * 2 + 1024  # 4 stages + align
    source = sources["model.cu"]
    assert "matmul_wgmma.cu.j2" in source and f"pyc_wgmma_fp16_n{WGMMA_BN}(acc" in source
    assert source.count("pyc_fence_proxy_async();") == case.gemms


def sass_of(cubin: bytes, tmp_path: Path) -> str | None:
    """The CUBIN's SASS, where a cuobjdump is found (else None)."""
    tool = shutil.which("cuobjdump") or next(
        (str(p) for p in _triton_tools() if p.name == "cuobjdump"), None)
    if tool is None:
        return None
    image = tmp_path / "k.cubin"
    image.write_bytes(cubin)
    return subprocess.run([tool, "--dump-sass", str(image)], capture_output=True, text=True,
                          check=True).stdout


def _hgmma_count(cubin: bytes, tmp_path: Path) -> int | None:
    """HGMMA instructions in the CUBIN's SASS (None without a cuobjdump)."""
    sass = sass_of(cubin, tmp_path)
    return None if sass is None else sass.count("HGMMA.")


def _triton_tools() -> list[Path]:
    try:
        import triton  # type: ignore[import-not-found]
    except ImportError:
        return []
    return sorted((Path(triton.__file__).parent / "backends" / "nvidia" / "bin").glob("*"))


@needs_nvrtc
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("case", COMPILE_CASES, ids=lambda c: c.name)
def test_nvrtc_compiles_it_for_sm90a(case: WgmmaCase, precision: str, tmp_path: Path) -> None:
    path = write_model(case.make(np.random.default_rng(0)), tmp_path)
    sources, _ = emit(path, precision, tuning=ForcedWgmma())
    source = sources["model.cu"]
    assert toolchain.compile_arch("sm_90", source) == "sm_90a"
    compiled = compile_cleanly(source, "sm_90a")
    assert ".target sm_90a" in compiled.ptx
    dtype = "f16" if precision == "fp16" else "bf16"
    assert f"wgmma.mma_async.sync.aligned.m64n{WGMMA_BN}k16.f32.{dtype}.{dtype}" in compiled.ptx
    assert "fence.proxy.async.shared::cta" in compiled.ptx
    assert "wgmma.wait_group.sync.aligned 1" in compiled.ptx
    for usage in toolchain.resource_usage(source, "sm_90a"):
        assert usage.spill_store_bytes == usage.spill_load_bytes == usage.stack_bytes == 0, usage
    hgmma = _hgmma_count(compiled.cubin, tmp_path)
    if hgmma is not None:  # 4 wgmmas a slice, per kernel (alike kernels are shared)
        assert hgmma >= 4 and hgmma % 4 == 0


@needs_nvrtc
@pytest.mark.parametrize("stages,n", VARIANTS)
def test_every_variant_compiles_without_spills(stages: int, n: int, tmp_path: Path) -> None:
    """3 or 4 stages, 128 or 256 columns: no spills, no stack frame (the registers each
    variant takes are printed)."""
    case = COMPILE_CASES[0]
    path = write_model(case.make(np.random.default_rng(0)), tmp_path)
    sources, _ = emit(path, "fp16", tuning=ForcedWgmma(tc_wgmma_stages=stages, tc_wgmma_n=n))
    (launch,) = json.loads(sources["launches.json"])["launches"]
    assert launch["shared_bytes"] == stages * (128 * 64 + 64 * n) * 2 + 1024 <= 227 * 1024
    assert f"pyc_wgmma_fp16_n{n}(acc" in sources["model.cu"]
    (usage,) = toolchain.resource_usage(sources["model.cu"], "sm_90a")
    print(usage)
    assert usage.registers <= 255 and usage.spill_store_bytes == 0 and usage.stack_bytes == 0, usage


# ---------------------------------------------------------------- the artifact

@needs_nvrtc
def test_the_manifest_records_the_sm90a_cubin(tmp_path: Path) -> None:
    """An sm_90 build whose GEMM is the Hopper one is compiled for sm_90a, and says so; the same
    model for sm_80, or at fp32, records no specific architecture."""
    path = write_model(gemm_inputs(2048, 1024, 1024), tmp_path)
    pyc_cli.build(path, tmp_path / "h.pyc", target="cuda", arch="sm_90", precision="fp16")
    manifest = json.loads((tmp_path / "h.pyc" / "manifest.json").read_text())
    assert manifest["cuda"]["arch"] == "sm_90" and manifest["cuda"]["cubin_arch"] == "sm_90a"
    assert manifest["toolchain"]["cubin_arch"] == "sm_90a"
    assert "--gpu-architecture=sm_90a" in manifest["toolchain"]["flags"]
    assert ".target sm_90a" in (tmp_path / "h.pyc" / "model.ptx").read_text()
    from conftest import invoke

    code, out = invoke("explain", str(tmp_path / "h.pyc"))
    assert code == 0 and "sm_90a CUBIN (runs on sm_90 only)" in out, out
    for arch, precision in (("sm_80", "fp16"), ("sm_90", "fp32")):
        out = tmp_path / f"{arch}_{precision}.pyc"
        pyc_cli.build(path, out, target="cuda", arch=arch, precision=precision)
        manifest = json.loads((out / "manifest.json").read_text())
        assert "cubin_arch" not in manifest["cuda"] and "cubin_arch" not in manifest["toolchain"]
        assert f"--gpu-architecture={arch}" in manifest["toolchain"]["flags"]
        assert "wgmma" not in (out / "model.ptx").read_text()


class _Driver:
    """The two calls choose_image makes, for a pretend GPU."""

    def __init__(self, capability: tuple[int, int], version: int = 13000) -> None:
        self.capability, self.version = capability, version
        attribute = type("A", (), {"CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR": 0,
                                    "CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR": 1})
        self.cu = type("Cu", (), {"CUdevice_attribute": attribute})

    def __call__(self, name: str, *args: object) -> int:
        return self.version if name == "cuDriverGetVersion" else self.capability[int(args[0])]  # type: ignore[call-overload]


@pytest.mark.parametrize("capability", [(9, 0), (9, 1), (10, 0), (8, 9)])
def test_an_sm90a_cubin_runs_on_sm90_only(capability: tuple[int, int]) -> None:
    record = {"arch": "sm_90", "cubin_arch": "sm_90a", "ptx_min_driver": "13.0"}
    if capability == (9, 0):
        assert cuda_runtime.choose_image(_Driver(capability), 0, record, "a") == "cubin"  # type: ignore[arg-type]
        return
    with pytest.raises(PycError) as caught:
        cuda_runtime.choose_image(_Driver(capability, 13050), 0, record, "a")  # type: ignore[arg-type]
    assert caught.value.code == "E037" and "sm_90a" in caught.value.what
    plain = {"arch": "sm_90", "ptx_min_driver": "13.0"}  # a plain sm_90 CUBIN: as before
    expected = {(9, 1): "cubin", (10, 0): "ptx"}.get(capability)
    if expected:
        assert cuda_runtime.choose_image(_Driver(capability, 13050), 0, plain, "a") == expected  # type: ignore[arg-type]


def test_the_reader_checks_cubin_arch() -> None:
    from pyc_cli.artifact.reader import _cuda_problem

    manifest = {"library": "model.cubin", "files": {"src/launches.json": "", "model.ptx": ""},
                "cuda": {"arch": "sm_90", "cubin": "model.cubin", "ptx": "model.ptx",
                         "launches": "src/launches.json", "ptx_min_driver": "13.0"}}
    assert _cuda_problem(manifest) == ""
    manifest["cuda"]["cubin_arch"] = "sm_90a"  # type: ignore[index]
    assert _cuda_problem(manifest) == ""
    manifest["cuda"]["cubin_arch"] = "sm_80a"  # type: ignore[index]
    assert "cubin_arch" in _cuda_problem(manifest)
    manifest["cuda"]["arch"] = "sm_80"  # type: ignore[index]
    assert "cubin_arch" in _cuda_problem(manifest)


def test_small_default_builds_are_unchanged(tmp_path: Path) -> None:
    """The mma.sync cases keep their kernel on sm_90 (their tiles are few): no wgmma source."""
    path = write_model(epilogue(130, 72, 200).make(np.random.default_rng(0)), tmp_path)
    sources, chosen = emit(path, "fp16")
    assert chosen == ["cuda_matmul_mma"] and "wgmma" not in sources["model.cu"]


def test_only_the_hopper_header_asks_for_sm90a() -> None:
    marked = "// Generated: model x\n#define PYC_SM90A 1\n__device__ void f() {}\n"
    assert toolchain.compile_arch("sm_90", marked) == "sm_90a"
    assert toolchain.compile_arch("sm_80", marked) == "sm_80"  # never on another arch
    # a model's name in the heading comment cannot start a line of its own
    named = "// Generated by PyC: model #define PYC_SM90A 1 wgmma.mma_async\n"
    assert toolchain.compile_arch("sm_90", named) == "sm_90"
