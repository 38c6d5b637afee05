"""Threads inside a run: kernels with enough work split it over an OpenMP team (PYC_PARALLEL_FOR),
`pyc build --threads` sets a run's default team size and PYC_NUM_THREADS overrides it; results
are bitwise the same for every team size (every split is over disjoint outputs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import init, make_model, vinfo, write_model
from onnx import helper

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.targets import get_target


def depthwise_model(rng: np.random.Generator, tmp_path: Path) -> Path:
    """A depthwise 3x3 conv big enough to be split (2.4 Mflop) and a small one that is not."""
    big = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    small = rng.standard_normal((32, 1, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "wb"], ["a"], group=32, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Conv", ["p", "ws"], ["y"], group=32)]
    model = make_model(nodes, [vinfo("x", (1, 32, 64, 64))], [vinfo("y", (1, 32, 8, 8))],
                       [init("wb", big), init("ws", small)])
    return write_model(model, tmp_path)


def run_with_threads(artifact: Path, feeds: Path, out: Path, threads: str | None) -> np.ndarray:
    env = {k: v for k, v in os.environ.items() if k != "PYC_NUM_THREADS"}
    if threads is not None:
        env["PYC_NUM_THREADS"] = threads
    subprocess.run([sys.executable, "-m", "pyc_cli", "run", str(artifact), "--inputs", str(feeds),
                    "--output", str(out)], check=True, env=env, capture_output=True)
    return np.load(out)["y"]


@pytest.mark.skipif(not get_target("cpu").openmp(), reason="the C compiler has no OpenMP runtime")
def test_results_are_the_same_for_every_team_size(rng: np.random.Generator,
                                                  tmp_path: Path) -> None:
    path = depthwise_model(rng, tmp_path)
    artifact = pyc_cli.build(path, tmp_path / "art", threads=2).artifact
    source = (artifact / "src" / "model.c").read_text()
    # the big conv is split over threads; the small conv and the pool (too little work) are not
    assert source.count("PYC_PARALLEL_FOR\n") == 1
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["flags"]["threads"] == 2 and "-fopenmp" in manifest["toolchain"]["flags"]
    x = rng.standard_normal((1, 32, 64, 64)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    results = {t: run_with_threads(artifact, tmp_path / "x.npz", tmp_path / f"y{t}.npz", t)
               for t in (None, "1", "2", "3", "not-a-number")}
    for threads, y in results.items():
        np.testing.assert_array_equal(y, results["1"], err_msg=f"PYC_NUM_THREADS={threads}")
    expected = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    np.testing.assert_allclose(results["2"], expected, rtol=1e-5, atol=1e-5)


def test_thread_count_out_of_range_is_a_user_error(rng: np.random.Generator,
                                                   tmp_path: Path) -> None:
    path = depthwise_model(rng, tmp_path)
    with pytest.raises(PycError) as info:
        pyc_cli.build(path, tmp_path / "art", threads=-1)
    assert info.value.code == "E050"
    result = subprocess.run([sys.executable, "-m", "pyc_cli", "build", str(path), "-o",
                             str(tmp_path / "cli"), "--threads", "-2"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--threads" in result.stderr and not (tmp_path / "cli").exists()
