"""The team a CPU build plans its kernels' parallel tasks for (targets/cpu/team.py): --threads N,
else the cores of a native build's machine, else the 2-core reference. A build planned for 16
threads splits its convs and GEMMs into more tasks than one planned for 2 (on a 16-core host
ResNet-50 ran 2.2x faster: benchmarks/results/device-2026-12-07-stop33.md) and computes the same
results (against a float64 reference, at 1, 2 and 5 threads); the reference team's artifacts
carry no trace of the plan (they are the artifacts every build gave before)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from conv_cases import conv_graph

import pyc_cli
from pyc_cli.targets.cpu import gemm, winograd
from pyc_cli.targets.cpu.team import REFERENCE_TEAM, planned_team, planning_for, team_for_build
from tests.dynamic.checks import poison_outputs

# a 3x3 conv on 56x56 (Winograd: 7 tile blocks of one 64-channel GEMM block), a 1x1 on 28x28
# and a strided 3x3: ResNet-50's shapes, scaled down where the flops allow
CONVS = [((1, 64, 56, 56), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, None),
         ((1, 128, 28, 28), (256, 128, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "bias_relu"),
         ((1, 64, 56, 56), (128, 64, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, None)]
RTOL = 1e-5  # of the float64 sum of the terms' magnitudes (Winograd's bound: test_winograd.py)


def test_the_team_a_build_plans_for() -> None:
    assert team_for_build(16, "native") == 16
    assert team_for_build(16, "x86-64-v3") == 16
    assert team_for_build(1, "native") == REFERENCE_TEAM  # a serial run splits as the reference
    assert team_for_build(0, "x86-64-v3") == REFERENCE_TEAM  # a cross build knows no cores
    cores = len(os.sched_getaffinity(0))
    assert team_for_build(0, "native") == max(REFERENCE_TEAM, cores)
    assert planned_team() == REFERENCE_TEAM
    with planning_for(16):
        assert planned_team() == 16 and gemm.min_tasks() == 32 and winograd.max_tasks() == 64
    assert planned_team() == REFERENCE_TEAM and gemm.min_tasks() == 4


def _task_counts(source: str) -> list[int]:
    return [int(n) for n in re.findall(r"for \(int64_t t = 0; t < (\d+); \+\+t\)", source)]


@pytest.mark.parametrize("run_threads", [1, 2, 5])
def test_a_build_planned_for_16_threads_splits_more_and_computes_the_same(
        run_threads: int, rng: np.random.Generator, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    graph = conv_graph(rng, CONVS)
    path = tmp_path / "convs.onnx"
    onnx.save(graph.model, path)
    built = {team: pyc_cli.build(path, tmp_path / f"t{team}", threads=team) for team in (2, 16)}
    sources = {team: (b.artifact / "src" / "model.c").read_text() for team, b in built.items()}
    # every conv's task loop has more tasks (the 256-task loop is the bias + ReLU rows')
    counts = {team: _task_counts(source) for team, source in sources.items()}
    assert len(counts[16]) == len(counts[2])
    assert all(many >= few for many, few in zip(counts[16], counts[2]))
    assert sum(many >= 2 * few for many, few in zip(counts[16], counts[2])) >= 3, counts
    flags = {team: json.loads((b.artifact / "manifest.json").read_text())["flags"]
             for team, b in built.items()}
    assert flags[16]["planned_team"] == 16 and "planned_team" not in flags[2]
    decisions = (built[16].artifact / "decisions.jsonl").read_text()
    assert '"action":"planned_team"' in decisions
    assert '"action":"planned_team"' not in (built[2].artifact / "decisions.jsonl").read_text()
    monkeypatch.setenv("PYC_NUM_THREADS", str(run_threads))
    poison_outputs(monkeypatch)
    for team, b in built.items():
        with pyc_cli.load(b.artifact) as model:
            got = model.run(graph.feeds)
        for name, want in graph.expected.items():
            error = np.abs(got[name].astype(np.float64) - want)
            bound = RTOL * graph.magnitudes[name] + 1e-6 * np.abs(want)
            assert np.all(error <= bound), (team, name, float(error.max()))
