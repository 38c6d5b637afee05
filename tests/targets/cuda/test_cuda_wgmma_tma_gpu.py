"""The TMA Hopper GEMM (matmul_wgmma_tma.cu.j2) on the GPU: skipped without an sm_90 GPU (its
CUBIN is sm_90a). Forced by a tuning database (default selection never takes it yet): every case
of wgmma_cases.TMA_GPU_CASES (4096^3 and 1000^3 over a float32 A rounded in registers, tails in
M, N and K, a chain over 16-bit activations (A by TMA in 16 bits, C stored in 16 bits), one
constant B per batch index, an A broadcast over two batch dims) at fp16 and bf16, each forced
variant of TMA_VARIANTS (128-column tiles, 2 to 4 stages, a persistent grid of 3 blocks that
carries the pipeline's phases over many tiles), and run-to-run bitwise equality (a missing
mbarrier wait or wgmma wait would show as a race). Fresh random inputs and weights, outputs
poisoned (NaN) before every run, against the exact float64 product by relative Frobenius error
(wgmma_cases.REL_TOL: fp16 2e-3, bf16 1e-2; the chain 4e-3 / 2e-2) and element by element
against the rounding model (mma_precision.model_rtol(K) of max |y|; the chain EXACT_RTOL of
max |y| against float64): test_cuda_wgmma_gpu.check, shared with the cp.async kernel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_cuda_gpu import ARCH
from test_cuda_wgmma import ForcedWgmma
from test_cuda_wgmma_gpu import assert_reruns_bitwise, check
from wgmma_cases import TMA_GPU_CASES, TMA_VARIANTS, WgmmaCase, chain, epilogue

pytestmark = pytest.mark.skipif(ARCH != "sm_90", reason="the Hopper GEMM runs on an sm_90 GPU "
                                "only (H100 / H200); none here")

TMA = "cuda_matmul_wgmma_tma"


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("case", TMA_GPU_CASES, ids=lambda c: c.name)
def test_matches_float64(case: WgmmaCase, precision: str, tmp_path: Path,
                         rng: np.random.Generator) -> None:
    check(case, precision, tmp_path, rng, ForcedWgmma(TMA))


@pytest.mark.parametrize("params", TMA_VARIANTS,
                         ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
@pytest.mark.parametrize("case", [epilogue(257, 1032, 523), epilogue(1000, 1000, 1000),
                                  chain(520, 264)], ids=lambda c: c.name)
def test_every_variant_matches_float64(case: WgmmaCase, params: dict[str, int], tmp_path: Path,
                                       rng: np.random.Generator) -> None:
    check(case, "fp16", tmp_path, rng, ForcedWgmma(TMA, **params))


@pytest.mark.parametrize("params", [{}, {"tc_tma_ctas": 5}], ids=["default", "ctas=5"])
def test_the_same_inputs_give_the_same_outputs(params: dict[str, int], tmp_path: Path,
                                               rng: np.random.Generator) -> None:
    """Run to run, bitwise, over a float32 A and over the chain's 16-bit activations."""
    for case in (epilogue(1000, 1000, 1000), chain(1024, 512)):
        assert_reruns_bitwise(case, tmp_path, rng, ForcedWgmma(TMA, **params))
