"""MatMuls over sizes known at run time only on the CUDA target, without a GPU: the models of
gemm_dims_cases.py (a Linear with bias, GELU and residual fused over a symbolic row count; odd
K and N over two row tiles; a 3-D Linear with batch and seq symbolic, bias and residual fused;
attention-shaped batched MatMuls with b and s symbolic, N or K a dim; a batch dim broadcast at
run time; rows NonZero counts during the run, 0 among them) built with NVRTC at fp32, tf32,
fp16 and bf16 and run through runtime/cuda.py over the emulated driver
(cuda_emulation.FakeDriver: the artifact's kernels compiled for the CPU, mma.sync with the PTX
fragment layouts and bit-exact conversions).

Checked: the MatMul runs the parallel GEMM over run-time sizes (cuda_matmul_tiled_dims at fp32,
the tensor-core cuda_matmul_mma_dims at a reduced precision, not the one-thread
cuda_generic_matmul_naive_dims), one grid sized for the upper bounds; each run (sizes of 1 and
at the upper bounds among them, fresh random inputs, fresh random weights per test, the device
outputs and arena and the host output buffers poisoned with NaN first) against onnxruntime:
fp32 rtol 1e-4 / atol 1e-4; tf32 / fp16 / bf16 as the tensor-core GEMM's own tests
(test_cuda_emulated.py): against the numpy rounding model of mma_precision.py within
model_rtol(K) of max |output| (1e-4), against the exact float64 result and onnxruntime within
EXACT_RTOL of max |output| (tf32 5e-3, fp16 2e-2, bf16 5e-2), and closer to the rounding model
than to exact math where rounding the inputs changes the result measurably (the inputs really
were rounded). NVRTC for sm_80 too (sm_90: the runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import onnxruntime_outputs
from cuda_emulation import CXX
from gemm_dims_cases import CASES, KERNELS, GemmDimsCase
from helpers import write_model
from mma_precision import EXACT_RTOL, assert_close_to_max, model_rtol
from onnx import numpy_helper
from test_cuda_runtime_emulated import fake_for, use

import pyc_cli
from pyc_cli.targets.cuda import bindings
from tests.dynamic.checks import poison_outputs

pytestmark = [
    pytest.mark.skipif(not bindings.available(),
                       reason='the NVRTC wheel is not installed (pip install ".[cuda]")'),
    pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")]

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


def build(case: GemmDimsCase, precision: str, rng: np.random.Generator, folder: Path,
          arch: str = "sm_90") -> tuple[Path, Path]:
    folder.mkdir()
    path = write_model(case.make(rng), folder)
    artifact = folder / "art.pyc"
    pyc_cli.build(path, artifact, target="cuda", arch=arch, precision=precision,
                  input_shapes=case.input_shapes)
    return path, artifact


def check_kernel(artifact: Path, precision: str) -> dict[str, object]:
    """The MatMul's kernel in the decision log and its launch record: the parallel GEMM over
    run-time sizes (not the generic kernel's one thread)."""
    decisions = [json.loads(line) for line in (artifact / "decisions.jsonl").read_text().splitlines()]
    picks = [d for d in decisions if d["action"] == "select_kernel"
             and d["after"].startswith(("cuda_matmul", "cuda_generic_matmul"))]
    assert [d["after"] for d in picks] == [KERNELS[precision]], [d["after"] for d in picks]
    assert "at run time" in picks[0]["reason"], picks[0]["reason"]
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    (launch,) = [s for s in plan["launches"] if s["op"] == "MatMul"]
    # a block of many threads (the generic kernel's is one thread on one block)
    assert launch["block"][0] >= 128, launch
    return launch  # type: ignore[no-any-return]


def initializers(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def check_run(case: GemmDimsCase, precision: str, ours: np.ndarray, feeds: dict[str, np.ndarray],
              weights: dict[str, np.ndarray], expected: np.ndarray, what: str) -> None:
    assert ours.shape == expected.shape, (what, ours.shape, expected.shape)
    if expected.size == 0:  # no rows this run
        return
    if precision == "fp32":
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4, err_msg=what)
        return
    model = case.forward(feeds, weights, precision)
    exact = case.forward(feeds, weights, "fp32")
    assert_close_to_max(ours, model, model_rtol(case.depth), f"{what} vs the rounding model")
    assert_close_to_max(ours, exact, EXACT_RTOL[precision], f"{what} vs float64")
    assert_close_to_max(ours, expected, EXACT_RTOL[precision], f"{what} vs onnxruntime")
    rounding = float(np.max(np.abs(model - exact)))
    if rounding > model_rtol(case.depth) * float(np.max(np.abs(model))):
        # the inputs really were rounded (where rounding them changes the result measurably:
        # not a row of zeros times W, nor inputs a 16-bit type holds exactly)
        assert np.max(np.abs(ours - model)) < np.max(np.abs(ours - exact)), what


def run_and_check(case: GemmDimsCase, precision: str, path: Path, artifact: Path,
                  rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Each of the case's runs (fresh inputs, outputs poisoned) checked by check_run; the
    output shapes."""
    weights = initializers(path)
    shapes = []
    with pyc_cli.load(artifact) as model:
        for sizes in case.runs:
            feeds = case.feeds(rng, sizes)
            model.poison()
            ours = model.run(feeds)["y"]
            expected = onnxruntime_outputs(path, feeds)["y"]
            check_run(case, precision, ours, feeds, weights, expected, f"{precision} {sizes}")
            shapes.append(expected.shape)
    return shapes


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_run_time_sizes_gemm_matches_onnxruntime(case: GemmDimsCase, precision: str,
                                                 tmp_path: Path, rng: np.random.Generator,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    poison_outputs(monkeypatch)
    path, artifact = build(case, precision, rng, tmp_path / "build")
    launch = check_kernel(artifact, precision)
    source = (artifact / "src" / "model.cu").read_text()
    assert "int64_t* __restrict__ dims" in source
    use(monkeypatch, fake_for(artifact, tmp_path))
    shapes = run_and_check(case, precision, path, artifact, rng)
    # one grid for every run, sized for the upper bounds: a block per batch index of the
    # largest run (the sizes at their bounds are among the runs), no K split
    grid = launch["grid"]
    assert isinstance(grid, list) and grid[2] == max(int(np.prod(s[:-2])) for s in shapes), grid


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_run_time_sizes_gemm_compiles_for_sm80(case: GemmDimsCase, precision: str,
                                               tmp_path: Path, rng: np.random.Generator) -> None:
    _, artifact = build(case, precision, rng, tmp_path / "build", "sm_80")
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["cuda"]["arch"] == "sm_80" and (artifact / "model.cubin").stat().st_size > 0
    check_kernel(artifact, precision)
