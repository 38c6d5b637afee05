"""The Hopper GEMMs run on the CPU (emulate_cuda.h's wgmma, TMA, mbarriers and warp
specialisation, FakeDriver's tensor maps), through the runtime as on a GPU (runtime/cuda.py:
tensor maps encoded at load, the launch plan, CUDA graph capture): the TMA candidate
(matmul_wgmma_tma.cu.j2) in each case and forced variant, against float64 and the rounding
model as test_cuda_wgmma_tma_gpu.py holds it on the GPU; and the cp.async Hopper GEMM
(matmul_wgmma.cu.j2), which passed on an H100 (7 Dec 2026), as the emulator's own check: its
descriptors, swizzle and fragment order are the hardware's there. What the emulation cannot
show: the hardware's timing, its TMA unit's reading of a real CUtensorMap, and the registers
ptxas allocates (test_cuda_wgmma_tma.py checks those in the SASS)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cuda_emulation import CXX
from helpers import write_model
from mma_precision import EXACT_RTOL, assert_close_to_max, model_rtol
from onnx import numpy_helper
from test_cuda_runtime_emulated import fake_for, use
from test_cuda_wgmma import WGMMA, ForcedWgmma
from wgmma_cases import (
    CHAIN_REL_TOL,
    REL_TOL,
    TMA_COMPILE_CASES,
    WgmmaCase,
    chain,
    constant_b,
    epilogue,
    relative_error,
)

import pyc_cli
from pyc_cli.targets.cuda import bindings

pytestmark = [
    pytest.mark.skipif(not bindings.available(), reason='the NVRTC wheel is not installed'),
    pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")]

TMA = "cuda_matmul_wgmma_tma"


def run_emulated(case: WgmmaCase, precision: str, tuning: ForcedWgmma, tmp_path: Path,
                 rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Build `case` with `tuning`, run it twice on the emulator (outputs poisoned, fresh
    inputs), and hold it to float64 and the rounding model."""
    import onnx

    path = write_model(case.make(rng), tmp_path)
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    artifact = tmp_path / "e.pyc"
    built = pyc_cli.build(path, artifact, target="cuda", arch="sm_90", precision=precision,
                          tuning=tuning)  # type: ignore[arg-type]
    chosen = [n.ann.kernel.candidate for n in built.graph.nodes if n.op == "MatMul" and n.ann.kernel]
    assert chosen == [tuning.candidate] * case.gemms, chosen
    fake = use(monkeypatch, fake_for(artifact, tmp_path))
    tolerance = (CHAIN_REL_TOL if case.gemms > 1 else REL_TOL)[precision]
    with pyc_cli.load(artifact) as model:
        for _ in range(2):
            feeds = case.feeds(rng)
            model.poison()
            ours = model.run(feeds)["y"]
            exact = case.forward(feeds, weights, "fp32")
            error = relative_error(ours, exact)
            assert error <= tolerance, f"{case.name} {precision}: relative error {error:.3g}"
            if case.gemms > 1:
                assert_close_to_max(ours, exact, EXACT_RTOL[precision], f"{case.name} vs float64")
            else:
                assert_close_to_max(ours, case.forward(feeds, weights, precision),
                                    model_rtol(case.k), f"{case.name} vs the rounding model")
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    assert len(fake.tensor_maps) == len(plan.get("tensor_maps", []))


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("case", TMA_COMPILE_CASES, ids=lambda c: c.name)
def test_the_tma_gemm(case: WgmmaCase, precision: str, tmp_path: Path, rng: np.random.Generator,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    run_emulated(case, precision, ForcedWgmma(TMA), tmp_path, rng, monkeypatch)


@pytest.mark.parametrize("params", [{"tc_wgmma_n": 128}, {"tc_tma_stages": 2},
                                    {"tc_tma_ctas": 2}, {"tc_wgmma_n": 128, "tc_tma_ctas": 3}],
                         ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
@pytest.mark.parametrize("case", [epilogue(300, 200, 600), chain(264, 136),
                                  constant_b("tma_batched_b3", (3, 130, 64), (3, 64, 300))],
                         ids=lambda c: c.name)
def test_the_tma_gemm_variants(case: WgmmaCase, params: dict[str, int], tmp_path: Path,
                               rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several tiles a block (a 2- or 3-block persistent grid: the pipeline's stage and phase
    carried across tiles, the producer a tile ahead), 2 stages, 128-column tiles."""
    run_emulated(case, "fp16", ForcedWgmma(TMA, **params), tmp_path, rng, monkeypatch)


@pytest.mark.parametrize("case", [epilogue(130, 72, 200), chain(136, 264)], ids=lambda c: c.name)
def test_the_cp_async_hopper_gemm_checks_the_emulator(case: WgmmaCase, tmp_path: Path,
                                                      rng: np.random.Generator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The GEMM that passed on the H100 passes here: the emulated descriptors, swizzle and
    accumulator order are the hardware's."""
    run_emulated(case, "fp16", ForcedWgmma(WGMMA), tmp_path, rng, monkeypatch)
