"""`pyc run --profile`: every kernel call of a CPU artifact timed in a rebuilt copy.

The profile's calls are the artifact's kernel calls in schedule order (named by their nodes and
kernels as model.ir records them); throughput is the op's flop count over the call's median
time; the outputs a profiled run prints are the artifact's own; a CUDA artifact and a slim one
are refused with PYC codes. Times are not asserted (machines differ), only that they were
measured (positive) and add up to the reported total."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REFERENCE_MODELS

from pyc_cli.artifact.reader import load_graph, read_manifest
from pyc_cli.cli.main import main
from pyc_cli.ir.annotations import ALIAS_KERNELS
from pyc_cli.ops import registry

CNN = REFERENCE_MODELS["cnn"]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def build(out: Path, *flags: str) -> Path:
    shapes = [f"--input-shape={name}={','.join(map(str, shape))}"
              for name, shape in CNN.shapes.items()]
    code, stdout, stderr = invoke("build", str(CNN.path), "-o", str(out), "-q", *shapes, *flags)
    assert code == 0, stdout + stderr
    return out


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("profile") / "cnn.pyc")


def profiled(artifact: Path, tmp_path: Path, *flags: str) -> tuple[dict, np.ndarray]:
    out = tmp_path / "out.npz"
    code, stdout, stderr = invoke("run", str(artifact), "--random-inputs", "3", "--profile",
                                  "--repeat", "5", "--json", "--output", str(out), *flags)
    assert code == 0, stdout + stderr
    return json.loads(stdout), np.load(out)


def test_profile_names_every_kernel_call_in_schedule_order(artifact: Path, tmp_path: Path) -> None:
    summary, _ = profiled(artifact, tmp_path)
    graph = load_graph(artifact, read_manifest(artifact))
    called = [n for n in graph.nodes if n.ann.kernel_name not in ALIAS_KERNELS]
    profile = summary["profile"]
    assert profile["runs"] == 5
    assert [(c["call"], c["node"], c["op"], c["kernel"]) for c in profile["calls"]] == \
        [(i, n.name, n.op, n.ann.kernel_name) for i, n in enumerate(called)]
    assert all(c["median_ms"] > 0 for c in profile["calls"])
    # the total is the median of each run's sum: at least the sum of the smallest call medians
    assert profile["total_ms"] >= max(c["median_ms"] for c in profile["calls"])
    assert math.isclose(profile["total_ms"], sum(c["median_ms"] for c in profile["calls"]),
                        rel_tol=0.5)


def test_profile_throughput_is_the_ops_flops_over_the_median(artifact: Path,
                                                             tmp_path: Path) -> None:
    summary, _ = profiled(artifact, tmp_path)
    graph = load_graph(artifact, read_manifest(artifact))
    nodes = {n.name: n for n in graph.nodes}
    convs = [c for c in summary["profile"]["calls"] if c["op"] == "Conv"]
    assert convs
    for call in convs:
        flops = registry.get("Conv").flops(nodes[call["node"]], graph)
        assert call["gflops"] == pytest.approx(flops / call["median_ms"] / 1e6)
    assert all(c["gflops"] is None for c in summary["profile"]["calls"]
               if c["op"] in ("MaxPool", "Softmax"))


def test_profiling_leaves_the_outputs_a_plain_run_gives(artifact: Path, tmp_path: Path) -> None:
    _, with_profile = profiled(artifact, tmp_path)
    out = tmp_path / "plain.npz"
    code, stdout, stderr = invoke("run", str(artifact), "--random-inputs", "3", "--output",
                                  str(out))
    assert code == 0, stdout + stderr
    plain = np.load(out)
    for name in plain.files:
        np.testing.assert_array_equal(with_profile[name], plain[name])


def test_profile_table(artifact: Path) -> None:
    code, stdout, stderr = invoke("run", str(artifact), "--random-inputs", "1", "--profile",
                                  "--repeat", "3")
    assert code == 0, stdout + stderr
    assert "slowest" in stdout and "time per kernel" in stdout
    assert "conv2d" in stdout and "GFLOP/s" in stdout


def test_profile_refuses_a_slim_artifact(tmp_path: Path) -> None:
    slim = build(tmp_path / "slim.pyc", "--slim")
    code, stdout, stderr = invoke("run", str(slim), "--random-inputs", "1", "--profile")
    assert code != 0
    assert "PYC-E035" in stdout + stderr and "--profile" in stdout + stderr
    assert "Traceback" not in stdout + stderr
