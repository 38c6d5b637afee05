"""The Hopper GEMM (matmul_wgmma.cu.j2) on the GPU: skipped without an NVIDIA GPU and driver,
and on any GPU but sm_90 (its CUBIN is sm_90a). Every case of wgmma_cases.GPU_CASES (4096^3,
1000^3, 128 x 384 x 384, 9 x 40 x 70, tails in M, N and K, K and N off multiples of 8, a chain
over 16-bit activations, batched products of two float32 inputs) with the kernel forced by a
tuning database, each variant of stages and tile columns on the smaller ones, at fp16 and bf16,
and mma_cases.py's GEMMs (batched, broadcast, a constant B per batch) forced onto it: fresh random
inputs and weights, outputs poisoned (NaN) before every run, against the exact float64 product
by relative Frobenius error (wgmma_cases.REL_TOL: fp16 2e-3, bf16 1e-2; the chain of three GEMMs
over 16-bit activations 4e-3 / 2e-2) and element by element against the rounding model
(mma_precision.model_rtol(K) of max |y|; the chain EXACT_RTOL of max |y| against float64)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import write_model
from mma_cases import MMA_CASES, MmaCase
from mma_precision import EXACT_RTOL, assert_close_to_max, model_rtol
from onnx import numpy_helper
from test_cuda_gpu import ARCH
from test_cuda_wgmma import WGMMA, ForcedWgmma
from wgmma_cases import (
    CHAIN_REL_TOL,
    GPU_CASES,
    REL_TOL,
    VARIANTS,
    WgmmaCase,
    epilogue,
    error_map,
    relative_error,
)

import pyc_cli
from pyc_cli.targets.cuda.kernel_context import WGMMA_BN

pytestmark = pytest.mark.skipif(ARCH != "sm_90", reason="the Hopper GEMM runs on an sm_90 GPU "
                                "only (H100 / H200); none here")


def _weights(path: Path) -> dict[str, np.ndarray]:
    import onnx

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def check(case: WgmmaCase, precision: str, tmp_path: Path, rng: np.random.Generator,
          tuning: ForcedWgmma | None, rounds: int = 2) -> list[float]:
    """Build `case` (the Hopper GEMM forced by `tuning`, or by default selection), run it
    `rounds` times on fresh inputs, and return each round's relative error."""
    path = write_model(case.make(rng), tmp_path)
    weights = _weights(path)
    built = pyc_cli.build(path, tmp_path / "w.pyc", target="cuda", arch="sm_90",
                          precision=precision, tuning=tuning)  # type: ignore[arg-type]
    chosen = [n.ann.kernel.candidate for n in built.graph.nodes if n.op == "MatMul" and n.ann.kernel]
    assert chosen == [tuning.candidate if tuning else WGMMA] * case.gemms, chosen
    tolerance = (CHAIN_REL_TOL if case.gemms > 1 else REL_TOL)[precision]
    tile = int(tuning.params.get("tc_wgmma_n", WGMMA_BN)) if tuning else WGMMA_BN
    errors = []
    with pyc_cli.load(built.artifact) as model:
        for _ in range(rounds):
            feeds = case.feeds(rng)
            model.poison()
            ours = model.run(feeds)["y"]
            exact = case.forward(feeds, weights, "fp32")
            error = relative_error(ours, exact)
            print(f"{case.name} {precision} {tuning.params if tuning else 'default'}: "
                  f"relative error {error:.3g}")
            if not error <= tolerance:
                print(error_map(ours, exact, 10 * tolerance, tile))
            assert error <= tolerance, f"{case.name} at {precision}: relative error {error:.3g} > {tolerance}"
            if case.gemms > 1:  # 16-bit activations between: each element against float64
                expected, rtol = exact, EXACT_RTOL[precision]
            else:
                expected, rtol = case.forward(feeds, weights, precision), model_rtol(case.k)
            if not np.all(np.abs(ours - expected) <= rtol * np.max(np.abs(expected))):
                print(f"{case.name} {precision}: " + error_map(ours, expected, rtol, tile))
            assert_close_to_max(ours, expected, rtol, f"{case.name} {precision} vs "
                                f"{'float64' if case.gemms > 1 else 'the rounding model'}")
            errors.append(error)
    return errors


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: c.name)
def test_matches_float64(case: WgmmaCase, precision: str, tmp_path: Path,
                         rng: np.random.Generator) -> None:
    check(case, precision, tmp_path, rng, ForcedWgmma())


@pytest.mark.parametrize("stages,n", VARIANTS)
@pytest.mark.parametrize("case", [epilogue(257, 1031, 523), epilogue(1000, 1000, 1000)],
                         ids=lambda c: c.name)
def test_every_variant_matches_float64(case: WgmmaCase, stages: int, n: int, tmp_path: Path,
                                       rng: np.random.Generator) -> None:
    check(case, "fp16", tmp_path, rng, ForcedWgmma(tc_wgmma_stages=stages, tc_wgmma_n=n))


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("case", MMA_CASES, ids=lambda c: c.name)
def test_the_mma_cases_match(case: MmaCase, precision: str, tmp_path: Path,
                             rng: np.random.Generator) -> None:
    """mma_cases.py's GEMMs (tails, batched and broadcast, a constant B per batch, an activation
    B, fused epilogues) on the Hopper GEMM, as test_cuda_gpu.py checks the mma.sync one."""
    path = write_model(case.make(rng), tmp_path)
    weights = _weights(path)
    built = pyc_cli.build(path, tmp_path / "m.pyc", target="cuda", arch="sm_90",
                          precision=precision, tuning=ForcedWgmma())  # type: ignore[arg-type]
    assert all(n.ann.kernel.candidate == WGMMA for n in built.graph.nodes
               if n.op == "MatMul" and n.ann.kernel is not None)
    with pyc_cli.load(built.artifact) as model:
        for _ in range(2):
            feeds = case.feeds(rng)
            model.poison()
            ours = model.run(feeds)["y"]
            assert_close_to_max(ours, case.forward(feeds, weights, precision),
                                model_rtol(512), f"{case.name} {precision} vs the model")  # K <= 384
            assert_close_to_max(ours, case.forward(feeds, weights, "fp32"), EXACT_RTOL[precision],
                                f"{case.name} {precision} vs float64")


def test_selected_by_default_below_the_tma_size(tmp_path: Path, rng: np.random.Generator) -> None:
    """Without a tuning database the sm_90 build picks it at 2048 x 1024 x 1024 (128 tiles of
    128 x 128; too few 128 x 256 tiles for the TMA GEMM, the default from 4096^3 on) and runs
    it right."""
    check(epilogue(2048, 1024, 1024), "fp16", tmp_path, rng, None, rounds=1)


def assert_reruns_bitwise(case: WgmmaCase, tmp_path: Path, rng: np.random.Generator,
                          tuning: ForcedWgmma) -> None:
    """`case` built at fp16 with `tuning`'s GEMM forced, run 5 times on the same inputs
    (outputs poisoned before each): bitwise the same every time."""
    path = write_model(case.make(rng), tmp_path, f"{case.name}.onnx")
    built = pyc_cli.build(path, tmp_path / f"{case.name}.pyc", target="cuda", arch="sm_90",
                          precision="fp16", tuning=tuning)  # type: ignore[arg-type]
    feeds = case.feeds(rng)
    with pyc_cli.load(built.artifact) as model:
        outputs = []
        for _ in range(5):
            model.poison()
            outputs.append(model.run(feeds)["y"].copy())
    for other in outputs[1:]:
        np.testing.assert_array_equal(other, outputs[0])


def test_the_same_inputs_give_the_same_outputs(tmp_path: Path, rng: np.random.Generator) -> None:
    """Run to run, bitwise: a race (a missing barrier or fence, a wrong mbarrier or wgmma wait)
    would move the result between runs."""
    assert_reruns_bitwise(epilogue(1000, 1000, 1000), tmp_path, rng, ForcedWgmma())
