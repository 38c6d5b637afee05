"""A run-time If on a real GPU (skipped without an NVIDIA driver and GPU, as test_cuda_gpu.py):
the models of if_cases.py built for the device's architecture, run through runtime/cuda.py with
CUDA graphs on (a graph per segment between host decisions) and off, fp32 and fp16, against
onnxruntime on fresh random inputs for every outcome, device outputs and arena poisoned (NaN)
before each run (rtol/atol 1e-4 at fp32, 2e-2 at fp16); an unreachable branch stops the run
with PYC-E053; and the C entry point linked with libcuda gives the Python runtime's bytes, or
NAME_CUDA_ERROR_BRANCH_NOT_COMPILED (-4) on an unreachable branch."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import onnxruntime_outputs
from if_cases import IF_CASES, IfCase
from test_cuda_c_api import INCLUDE, libcuda
from test_cuda_gpu import ARCH
from test_cuda_if import build, c_driver, outcome_feeds, run_c_driver, run_outcomes

import pyc_cli
from pyc_cli.errors import PycError
from tests.dynamic.checks import poison_outputs

pytestmark = pytest.mark.skipif(ARCH is None, reason="no NVIDIA GPU and driver here (or the "
                                "CUDA wheels are missing): the GPU tests run on a GPU machine")


@pytest.mark.parametrize("graphs", ["1", "0"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", [c for c in IF_CASES if not c.refused], ids=lambda c: c.name)
def test_run_time_if_on_the_gpu(case: IfCase, precision: str, graphs: str, tmp_path: Path,
                                rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ARCH is not None
    poison_outputs(monkeypatch)
    monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
    path, artifact = build(case, tmp_path, rng, precision, ARCH)
    runs, _ = run_outcomes(case, path, artifact, outcome_feeds(case, rng, 3), precision)
    paths = {run.outcome: run.path for run in runs}
    assert len(set(paths.values())) == len(case.outcomes)  # each outcome its own kernels
    assert all(run.segments == 2 + run.outcome.count("/") for run in runs)


@pytest.mark.parametrize("graphs", ["1", "0"])
@pytest.mark.parametrize("case", [c for c in IF_CASES if c.refused], ids=lambda c: c.name)
def test_unreachable_branch_on_the_gpu(case: IfCase, graphs: str, tmp_path: Path,
                                       rng: np.random.Generator,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert ARCH is not None
    monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
    path, artifact = build(case, tmp_path, rng, "fp32", ARCH)
    with pyc_cli.load(artifact) as model:
        for _ in range(2):
            for outcome in (*case.refused, *case.outcomes):
                feeds = case.feeds(rng, outcome)
                model.poison()
                if outcome in case.refused:
                    with pytest.raises(PycError) as caught:
                        model.run(feeds)
                    assert caught.value.code == "E053", outcome
                    continue
                np.testing.assert_allclose(model.run(feeds)["y"],
                                           onnxruntime_outputs(path, feeds)["y"], rtol=1e-4,
                                           atol=1e-4, err_msg=outcome)


@pytest.mark.parametrize("case", IF_CASES, ids=lambda c: c.name)
def test_the_c_entry_point_runs_ifs_on_the_gpu(case: IfCase, tmp_path: Path,
                                               rng: np.random.Generator) -> None:
    assert ARCH is not None
    library = libcuda()
    if INCLUDE is None or library is None or shutil.which("gcc") is None:
        pytest.fail("a GPU machine needs gcc, cuda.h and libcuda.so.1 for this test")
    path, artifact = build(case, tmp_path, rng, "fp32", ARCH)
    exe, manifest = c_driver(artifact, tmp_path, library)
    with pyc_cli.load(artifact) as model:
        for outcome in (*case.outcomes, *case.refused):
            feeds = case.feeds(rng, outcome)
            result, outputs = run_c_driver(exe, artifact, manifest, feeds, tmp_path, 3)
            if outcome in case.refused:
                assert "status -4" in result.stdout, result.stdout + result.stderr
                continue
            assert result.returncode == 0 and "status 0" in result.stdout, result.stdout + result.stderr
            ours = model.run(feeds)
            for name, value in onnxruntime_outputs(path, feeds).items():
                assert np.array_equal(outputs[name], ours[name]), name  # the same kernels
                np.testing.assert_allclose(outputs[name], value, rtol=1e-4, atol=1e-4)
