"""A run-time If on the CUDA target (issues #14, #15), without a GPU: the models of if_cases.py
built with NVRTC (sm_90 and sm_80, fp32 and fp16) and run through runtime/cuda.py over the
emulated driver (cuda_emulation.FakeDriver: the artifact's kernels compiled for the CPU).

The runtime splits a run at each host decision: the launches before the first guarded one,
then the condition's byte copied to pinned host memory and waited for, then the taken branch's
launches and the rest (a nested If splits again); with CUDA graphs each segment is a graph of
its own, captured on first use. Checked: outputs against onnxruntime on fresh random inputs for
every outcome (rtol/atol 1e-4 at fp32, 2e-2 at fp16: activations stored in 16 bits), device
outputs and arena poisoned (NaN) before each run, graphs on and off (bitwise alike), only the
taken branch's kernels launched (the Gather of gather_or_scale would set the index status if
it ran on the other branch's inputs), an unreachable branch stopping the run with PYC-E053 as
on the CPU, a model without an If keeping exactly one graph, and the C entry point's tables
and strict C11 compilation."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import REFERENCE_MODELS, onnxruntime_outputs
from cuda_emulation import CXX, FakeDriver, compile_kernels
from if_cases import CASE, IF_CASES, IfCase
from test_cuda_c_api import INCLUDE

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.runtime import cuda as cuda_runtime
from pyc_cli.targets.cuda import bindings
from tests.dynamic.checks import poison_outputs
from tests.dynamic.test_if_outputs import _branches_of_different_widths
from tests.dynamic.test_unreachable_branch import SILERO

pytestmark = [
    pytest.mark.skipif(not bindings.available(),
                       reason='the NVRTC wheel is not installed (pip install ".[cuda]")'),
    pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")]

TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}  # rtol and atol


def build(case: IfCase, tmp_path: Path, rng: np.random.Generator, precision: str = "fp32",
          arch: str = "sm_90") -> tuple[Path, Path]:
    folder = tmp_path / f"{case.name}_{precision}_{arch}"
    folder.mkdir()
    path = case.make(folder, rng)
    artifact = folder / "art.pyc"
    pyc_cli.build(path, artifact, target="cuda", arch=arch, precision=precision,
                  input_shapes=case.shapes or None)
    return path, artifact


def emulate(artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDriver:
    lib = compile_kernels((artifact / "src" / "model.cu").read_text(), tmp_path)
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    fake = FakeDriver(lib, {s["kernel"]: len(s["args"]) for s in plan["launches"]})
    monkeypatch.setattr(bindings, "driver", lambda: fake)
    return fake


def launch_ops(artifact: Path, path: tuple[int, ...]) -> list[str]:
    launches = json.loads((artifact / "src" / "launches.json").read_text())["launches"]
    return [launches[i]["op"] for i in path]


class Run:
    """One run's outcome, outputs, the launches it took and how many segments it had."""

    def __init__(self, outcome: str, outputs: dict[str, np.ndarray], model: object) -> None:
        self.outcome, self.outputs = outcome, outputs
        self.path: tuple[int, ...] = model._path  # type: ignore[attr-defined]
        self.segments: int = model._run_segments  # type: ignore[attr-defined]


def run_outcomes(case: IfCase, path: Path, artifact: Path, rng: np.random.Generator,
                 precision: str, rounds: int = 2) -> tuple[list[Run], int]:
    """Each outcome `rounds` times, interleaved (outputs and arena poisoned first), checked
    against onnxruntime; the runs, and how many distinct segments they took."""
    tol = TOLERANCE[precision]
    runs = []
    with pyc_cli.load(artifact) as model:
        for _ in range(rounds):
            for outcome in case.outcomes:
                feeds = case.feeds(rng, outcome)
                model.poison()
                ours = model.run(feeds)
                for name, value in onnxruntime_outputs(path, feeds).items():
                    np.testing.assert_allclose(ours[name], value, rtol=tol, atol=tol,
                                               err_msg=f"{case.name} {outcome} {name}")
                runs.append(Run(outcome, ours, model))
        distinct = len(model._segments)
    return runs, distinct


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", [c for c in IF_CASES if not c.refused], ids=lambda c: c.name)
def test_runs_match_onnxruntime_graphs_on_and_off(case: IfCase, precision: str, tmp_path: Path,
                                                   rng: np.random.Generator,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    poison_outputs(monkeypatch)
    path, artifact = build(case, tmp_path, rng, precision)
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    assert plan["conditions"] and any("when" in launch for launch in plan["launches"])
    outputs = {}
    for graphs in ("1", "0"):
        monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
        fake = emulate(artifact, tmp_path, monkeypatch)
        runs, distinct = run_outcomes(case, path, artifact, rng, precision)
        assert fake.memory == {} and fake.graphs == set()  # every graph destroyed at close
        # each run launched only what its branches need: fewer kernels than the plan holds,
        # each outcome its own launches, one host decision per If on its way
        assert all(len(run.path) < len(plan["launches"]) for run in runs)
        assert fake.launches == sum(len(run.path) for run in runs)
        paths = {run.outcome: run.path for run in runs}
        assert len(set(paths.values())) == len(case.outcomes)
        for run in runs:
            assert run.segments == 1 + run.outcome.count("/") + 1
        for outcome, ops in case.ops.items():  # the other branch's own ops never launched
            others = {op for o, its in case.ops.items() if o != outcome for op in its} - set(ops)
            assert not others & set(launch_ops(artifact, paths[outcome])), outcome
        if graphs == "1":
            # a graph per segment, captured the first time a run takes it: every later run
            # replays graphs only, no kernel launched one by one
            assert fake.calls["cuStreamBeginCapture"] == distinct
            assert fake.graph_launches == sum(run.segments for run in runs)
            assert fake.calls["cuLaunchKernel"] < fake.launches
        else:
            assert fake.calls["cuStreamBeginCapture"] == 0 and fake.graph_launches == 0
            assert fake.calls["cuLaunchKernel"] == fake.launches
        outputs[graphs] = runs
    # replayed graphs and launches one by one: the same kernels in the same order
    for graphed, streamed in zip(outputs["1"], outputs["0"]):
        assert graphed.path == streamed.path
