"""The TMA Hopper GEMM (matmul_wgmma_tma.cu.j2) without a GPU: a candidate on sm_90 fp16 / bf16
builds that default selection never takes (a tuning database forces it), its launch geometry
and tensor maps in the launch plan, NVRTC compilation for sm_90a of every case and variant
(TMA loads, mbarriers and setmaxnreg in the PTX; UTMALDG, HGMMA and the register moves in the
SASS where cuobjdump is at hand; no spills), the loader's checks of the tensor maps, their
encoding through the driver (a fake one), and the C entry point's. Its results on the GPU:
test_cuda_wgmma_tma_gpu.py."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import write_model
from nvrtc_check import compile_cleanly
from test_cuda_c_api import INCLUDE
from test_cuda_compile import needs_nvrtc
from test_cuda_wgmma import ForcedWgmma, emit, gemm_inputs, sass_of
from wgmma_cases import TMA_COMPILE_CASES, TMA_VARIANTS, WgmmaCase, epilogue

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.runtime import tensor_maps
from pyc_cli.runtime.cuda import _plan_problem
from pyc_cli.targets.cuda import toolchain
from pyc_cli.targets.cuda.kernel_context import (
    WGMMA_TMA_CTAS,
    WGMMA_TMA_REGS,
    wgmma_tma_default_stages,
    wgmma_tma_stage_bytes,
)

TMA = "cuda_matmul_wgmma_tma"


def forced(**params: int) -> ForcedWgmma:
    return ForcedWgmma(TMA, **params)


def _plan(sources: dict[str, str]) -> dict[str, Any]:
    return json.loads(sources["launches.json"])


# ---------------------------------------------------------------- selection

def test_a_candidate_on_sm90_half_only(tmp_path: Path) -> None:
    """Listed for sm_90 at fp16 / bf16 only; chosen by default where its 128 x 256 tiles
    give each of the 132 persistent blocks one (4096^3: 512 tiles), not below (2048 x 1024 x
    1024: 64 tiles keep the cp.async Hopper GEMM)."""
    from pyc_cli.targets.cuda.kernels import cuda_kernels

    for arch in toolchain.SUPPORTED_ARCHS:
        for precision in ("fp32", "tf32", "fp16", "bf16"):
            names = {c.name for c in cuda_kernels(precision, arch)["MatMul"]}
            assert (TMA in names) == (arch == "sm_90" and precision in ("fp16", "bf16"))
    path = write_model(epilogue(4096, 4096, 4096).make(np.random.default_rng(0)), tmp_path)
    assert emit(path, "fp16")[1] == [TMA]
    assert emit(path, "fp16", "sm_80")[1] == ["cuda_matmul_mma"]
    path = write_model(epilogue(2048, 1024, 1024).make(np.random.default_rng(0)), tmp_path, "mid.onnx")
    assert emit(path, "fp16")[1] == ["cuda_matmul_wgmma"]
    assert emit(path, "fp16", tuning=forced())[1] == [TMA]


def test_it_does_not_apply_where_tma_cannot_read(tmp_path: Path) -> None:
    """K off a multiple of 8 (rows not 16-byte strided), or B a model input (float32): the
    forced choice falls back to the default selection."""
    for name, model in (("k_tail", epilogue(257, 1031, 523).make(np.random.default_rng(0))),
                        ("b_input", gemm_inputs(256, 256, 256))):
        path = write_model(model, tmp_path, f"{name}.onnx")
        assert emit(path, "fp16", tuning=forced())[1] != [TMA], name


def test_out_of_range_parameters_are_refused(tmp_path: Path) -> None:
    path = write_model(epilogue(256, 256, 256).make(np.random.default_rng(0)), tmp_path)
    for params in ({"tc_tma_stages": 7}, {"tc_tma_stages": 4}, {"tc_wgmma_n": 64}):
        with pytest.raises(PycError) as caught:  # 4 x 64 KiB slices (float32 A) do not fit
            emit(path, "fp16", tuning=forced(**params))
        assert caught.value.code == "E090" and "tc_tma_stages" in caught.value.what, params


# ---------------------------------------------------------------- geometry and tensor maps

@pytest.mark.parametrize("case", TMA_COMPILE_CASES, ids=lambda c: c.name)
def test_launch_geometry_and_tensor_maps(case: WgmmaCase, tmp_path: Path) -> None:
    path = write_model(case.make(np.random.default_rng(0)), tmp_path)
    sources, chosen = emit(path, "fp16", tuning=forced())
    assert chosen == [TMA] * case.gemms
    plan = _plan(sources)
    maps = plan["tensor_maps"]
    assert len(maps) == 2 * case.gemms
    launches = [launch for launch in plan["launches"] if launch["op"] == "MatMul"]
    for index, launch in enumerate(launches):
        a_map, b_map = maps[2 * index], maps[2 * index + 1]
        a32 = a_map["dtype"] == "fp32"
        assert launch["block"] == [384, 1, 1] and 1 <= launch["grid"][0] <= WGMMA_TMA_CTAS
        stages = wgmma_tma_default_stages(256, a32)
        assert launch["shared_bytes"] == stages * wgmma_tma_stage_bytes(256, a32) + 16 * stages + 1024
        assert launch["args"][-2:] == [["tensormap", 2 * index], ["tensormap", 2 * index + 1]]
        assert a_map["address"] == launch["args"][0] and b_map["address"] == launch["args"][1]
        assert a_map["box"][:2] == ([32, 128] if a32 else [64, 128]) and b_map["box"][:2] == [64, 64]
        assert b_map["dtype"] == "fp16" and all(m["swizzle"] == 128 for m in (a_map, b_map))
        k, m = a_map["dims"][:2]
        n = b_map["dims"][0]
        assert b_map["dims"][1] == k and a_map["strides"][0] == k * (4 if a32 else 2)
        batch = max(math.prod(a_map["dims"][2:]), math.prod(b_map["dims"][2:]))  # these cases'
        tiles = math.ceil(m / 128) * math.ceil(n / 256) * batch
        assert launch["grid"][0] == min(tiles, WGMMA_TMA_CTAS)
    source = sources["model.cu"]
    assert "matmul_wgmma_tma.cu.j2" in source and "pyc_tma_load" in source


def test_batch_dims_of_the_maps(tmp_path: Path) -> None:
    """One constant B per batch index: 3-D maps for both; an A broadcast over two batch dims:
    a 2-D map for it, a 4-D one for B (batch dims innermost first, byte strides)."""
    cases = {c.name: c for c in TMA_COMPILE_CASES}
    path = write_model(cases["tma_batched_b"].make(np.random.default_rng(0)), tmp_path, "b.onnx")
    a_map, b_map = _plan(emit(path, "fp16", tuning=forced())[0])["tensor_maps"]
    assert a_map["dims"] == [64, 130, 3] and a_map["strides"] == [256, 130 * 64 * 4]
    assert b_map["dims"] == [72, 64, 3] and b_map["strides"] == [144, 64 * 72 * 2]
    path = write_model(cases["tma_broadcast_a"].make(np.random.default_rng(0)), tmp_path, "a.onnx")
    a_map, b_map = _plan(emit(path, "fp16", tuning=forced())[0])["tensor_maps"]
    assert a_map["dims"] == [40, 24] and a_map["box"] == [32, 128]
    assert b_map["dims"] == [72, 40, 3, 2] and b_map["box"] == [64, 64, 1, 1]
    assert b_map["strides"] == [144, 40 * 144, 3 * 40 * 144]


# ---------------------------------------------------------------- NVRTC and SASS

def compile_checked(sources: dict[str, str], tmp_path: Path, precision: str = "fp16") -> str | None:
    """NVRTC for sm_90a: the TMA, mbarrier and register-moving instructions in the PTX, no
    spills or stack, the launch's 168 registers (384 threads, one block a multiprocessor);
    returns the SASS (None without cuobjdump)."""
    source = sources["model.cu"]
    assert toolchain.compile_arch("sm_90", source) == "sm_90a"
    compiled = compile_cleanly(source, "sm_90a")
    ptx = compiled.ptx
    dtype = "f16" if precision == "fp16" else "bf16"
    for needed in ("cp.async.bulk.tensor.", "mbarrier::complete_tx::bytes",
                   "mbarrier.try_wait.parity.shared::cta.b64", "mbarrier.arrive.expect_tx",
                   f"setmaxnreg.dec.sync.aligned.u32 {WGMMA_TMA_REGS[0]}",
                   f"setmaxnreg.inc.sync.aligned.u32 {WGMMA_TMA_REGS[1]}",
                   "fence.proxy.tensormap::generic.acquire.gpu", f".f32.{dtype}.{dtype}"):
        assert needed in ptx, needed
    for usage in toolchain.resource_usage(source, "sm_90a"):
        print(usage)
        assert usage.spill_store_bytes == usage.spill_load_bytes == usage.stack_bytes == 0, usage
        assert usage.registers == 168, usage  # 65536 / 384, rounded to 8
    sass = sass_of(compiled.cubin, tmp_path)
    if sass is not None:
        assert "UTMALDG" in sass and "HGMMA.64x" in sass and "SYNCS" in sass
        assert "USETMAXREG.DEALLOC" in sass and "USETMAXREG.TRY_ALLOC" in sass
        assert "LDL" not in sass and "STL" not in sass
        assert " HMMA" not in sass  # no mma.sync fallback
        # the consumers may pass the launch's 168 after setmaxnreg.inc, never their 232
        highest = max(int(r) for r in re.findall(r"\bR(\d+)\b", sass))
        assert highest < WGMMA_TMA_REGS[1], highest
    return sass


@needs_nvrtc
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("case", TMA_COMPILE_CASES, ids=lambda c: c.name)
def test_nvrtc_compiles_every_case_for_sm90a(case: WgmmaCase, precision: str, tmp_path: Path) -> None:
    """Every case (each epilogue: bias + ReLU + residual, none, a 16-bit C; float32 and 16-bit
    A; batch maps) at fp16 and bf16."""
    path = write_model(case.make(np.random.default_rng(0)), tmp_path)
    sources, _ = emit(path, precision, tuning=forced())
    sass = compile_checked(sources, tmp_path, precision)
    if sass is not None:
        a32 = _plan(sources)["tensor_maps"][0]["dtype"] == "fp32"
        # a float32 A: wgmma with A from registers (R..), B by descriptor; else both descriptors
        register_a = [line for line in sass.splitlines() if "HGMMA" in line and "gdesc" in line
                      and ", R" in line.split("gdesc")[0]]
        assert bool(register_a) == a32 or case.gemms > 1, sass.count("HGMMA")


@needs_nvrtc
@pytest.mark.parametrize("params", TMA_VARIANTS,
                         ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
@pytest.mark.parametrize("a16", [False, True], ids=["a32", "a16"])
def test_every_variant_compiles_without_spills(params: dict[str, int], a16: bool,
                                               tmp_path: Path) -> None:
    """Each forced variant over a float32 A (epilogue case) and a 16-bit A (the chain)."""
    case = TMA_COMPILE_CASES[2] if a16 else TMA_COMPILE_CASES[1]
    path = write_model(case.make(np.random.default_rng(0)), tmp_path)
    sources, _ = emit(path, "fp16", tuning=forced(**params))
    for launch in _plan(sources)["launches"]:
        assert launch["shared_bytes"] <= 227 * 1024
        if "tc_tma_ctas" in params:
            assert launch["grid"] == [params["tc_tma_ctas"], 1, 1]
    n = params.get("tc_wgmma_n", 256)
    assert f"_n{n}(acc" in sources["model.cu"]
    compile_checked(sources, tmp_path)


# ---------------------------------------------------------------- the loader

def _manifest(weights: int = 1 << 20, arena: int = 1 << 20) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "dtype": "f32", "shape": [256, 256]}],
            "outputs": [{"name": "y", "dtype": "f32", "shape": [256, 256]}],
            "arena_bytes": arena, "weights": {"bytes": weights}}


def _map(**changes: Any) -> dict[str, Any]:
    entry = {"address": ["input", 0], "dtype": "fp32", "dims": [256, 256], "strides": [1024],
             "box": [32, 128], "swizzle": 128}
    return {**entry, **changes}


def _plan_with(maps: list[dict[str, Any]], args: list[list[Any]] | None = None) -> dict[str, Any]:
    launch = {"kernel": "k0_matmul", "grid": [1, 1, 1], "block": [384, 1, 1],
              "shared_bytes": 1024, "args": args or [["tensormap", 0]]}
    return {"format": 1, "arena_bytes": 1 << 20, "weights_bytes": 1 << 20, "launches": [launch],
            "tensor_maps": maps}


def test_the_loader_checks_tensor_maps() -> None:
    manifest = _manifest()
    assert _plan_problem(_plan_with([_map()]), manifest) == ""
    assert _plan_problem(_plan_with([_map(address=["weights", 4096], dtype="fp16",
                                          strides=[512], box=[64, 64])]), manifest) == ""
    bad = [_map(dtype="fp64"), _map(dims=[256]), _map(dims=[0, 256]), _map(strides=[1000]),
           _map(box=[64, 128]),  # 256 bytes inner: past the 128-byte swizzle
           _map(box=[32, 512]), _map(swizzle=64), _map(address=["status", 0]),
           _map(address=["input", 1]), _map(address=["arena", 8]),
           _map(dims=[256, 257]),  # one row past the input's 256 KiB
           _map(address=["arena", (1 << 20) - 4096], dtype="fp16", strides=[512], box=[64, 64])]
    for entry in bad:
        assert _plan_problem(_plan_with([entry]), manifest) != "", entry
    assert "outside" in _plan_problem(_plan_with([_map()], [["tensormap", 1]]), manifest)
    assert "tensor_maps" in _plan_problem({**_plan_with([]), "tensor_maps": {}}, manifest)


class _FakeDriver:
    """cuTensorMapEncodeTiled recorded; the map's words say which call made them."""

    def __init__(self) -> None:
        from cuda.bindings import driver as cu

        self.cu = cu
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, name: str, *args: Any) -> Any:
        assert name == "cuTensorMapEncodeTiled"
        self.calls.append(args)
        tensor_map = self.cu.CUtensorMap()
        return tensor_map


@pytest.mark.skipif(not toolchain.bindings.available(), reason="cuda-python is not installed")
def test_encoding_passes_the_plan_to_the_driver() -> None:
    driver = _FakeDriver()
    entry = _map(address=["weights", 4096], dtype="bf16", dims=[72, 40, 3, 2],
                 strides=[144, 5760, 17280], box=[64, 64, 1, 1])
    words = tensor_maps.encode(driver, entry, 0x7000_0000_1000)
    assert words.nbytes == tensor_maps.MAP_BYTES
    (args,) = driver.calls
    cu = driver.cu
    assert args[0] == cu.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
    assert args[1] == 4 and args[2] == 0x7000_0000_1000
    assert [int(d) for d in args[3]] == [72, 40, 3, 2] and [int(s) for s in args[4]] == [144, 5760, 17280]
    assert [int(b) for b in args[5]] == [64, 64, 1, 1] and [int(e) for e in args[6]] == [1] * 4
    assert args[8] == cu.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B
    assert args[10] == cu.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE  # zeros


# ---------------------------------------------------------------- the artifact and C entry point

@needs_nvrtc
def test_an_artifact_with_the_tma_gemm(tmp_path: Path) -> None:
    """pyc build with the TMA GEMM forced: an sm_90a CUBIN, a launch plan the loader accepts,
    and a C entry point that encodes the maps and compiles as strict C11 against cuda.h."""
    case = TMA_COMPILE_CASES[1]
    path = write_model(case.make(np.random.default_rng(0)), tmp_path)
    out = tmp_path / "t.pyc"
    pyc_cli.build(path, out, target="cuda", arch="sm_90", precision="fp16",
                  tuning=forced())  # type: ignore[arg-type]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cuda"]["cubin_arch"] == "sm_90a"
    plan = json.loads((out / "src" / "launches.json").read_text())
    assert _plan_problem(plan, manifest) == "" and len(plan["tensor_maps"]) == 2
    prefix = manifest["symbol_prefix"]
    source = (out / "src" / f"{prefix}_cuda.c").read_text()
    assert "cuTensorMapEncodeTiled" in source and "PLACE_TENSORMAP" in source
    assert "CU_TENSOR_MAP_DATA_TYPE_FLOAT32" in source  # the float32 A's map
    compiler = shutil.which("gcc")
    if compiler is None or INCLUDE is None:
        pytest.skip("no gcc or cuda.h here")
    result = subprocess.run(
        [compiler, "-std=c11", "-Wall", "-Wextra", "-pedantic", "-Werror", "-c",
         f"-DPYC_NAME={prefix}", f'-DPYC_HEADER="{prefix}_cuda.h"', "-I", str(out / "src"),
         "-isystem", str(INCLUDE), str(out / "src" / f"{prefix}_cuda.c"), "-o", str(tmp_path / "x.o")],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]


def test_builds_are_deterministic(tmp_path: Path) -> None:
    """The same model and forced kernel twice: byte-identical sources and launch plan."""
    case = TMA_COMPILE_CASES[3]
    first, second = (emit(write_model(case.make(np.random.default_rng(3)), tmp_path / d), "fp16",
                          tuning=forced())[0] for d in ("a", "b") if not (tmp_path / d).mkdir())
    assert first == second
