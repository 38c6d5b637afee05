"""`pyc build --target cuda --tune`: kernel variants timed on the GPU (CUDA events around the
kernels), checked against the default variant, the winners kept in the tuning database under
the GPU's model, the driver's version and the precision; a build without --tune on that machine
reads them back into a byte-identical artifact that matches onnxruntime. Without a GPU, --tune
is refused (PYC-E037) and a plain build with a database uses the cost model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_MODELS, invoke, onnxruntime_outputs
from test_cuda_gpu import ARCH

import pyc_cli
from pyc_cli.api import compile_graph
from pyc_cli.runtime import cuda as cuda_runtime
from pyc_cli.targets import get_target
from pyc_cli.tune import Bench, TuneOptions, Variant, cuda_tuning_record, tuning_tasks

MLP = REFERENCE_MODELS["mlp"]
gpu_only = pytest.mark.skipif(ARCH is None, reason="no NVIDIA GPU and driver here: --tune "
                              "for CUDA times kernels on a GPU")


def build_args(out: Path, db: Path, *flags: str) -> list[str]:
    return ["build", str(MLP.path), "-o", str(out), "--input-shape", "x=64,64", "--target",
            "cuda", "--precision", "fp16", "--tuning-db", str(db), *flags]


@pytest.mark.skipif(ARCH is not None, reason="checks the refusal on a machine without a GPU")
def test_tune_without_a_gpu_is_refused_and_a_plain_build_uses_the_cost_model(
        tmp_path: Path) -> None:
    db = tmp_path / "tuning.json"
    code, output = invoke(*build_args(tmp_path / "a.pyc", db, "--tune"))
    assert code != 0 and "PYC-E037" in output and "--tune" in output
    assert "Traceback" not in output and not (tmp_path / "a.pyc").exists()
    code, output = invoke(*build_args(tmp_path / "b.pyc", db))
    assert code == 0, output
    assert not db.exists()


def test_the_database_key_names_the_gpu_driver_and_precision() -> None:
    target = get_target("cuda", arch="sm_90", precision="fp16")
    identity = {"gpu": "NVIDIA H200", "sm": "sm_90", "driver": "13.0"}
    record = cuda_tuning_record(identity, target)
    other_driver = cuda_tuning_record({**identity, "driver": "12.8"}, target)
    other_gpu = cuda_tuning_record({**identity, "gpu": "NVIDIA H100 80GB HBM3"}, target)
    bf16 = cuda_tuning_record(identity, get_target("cuda", arch="sm_90", precision="bf16"))
    keys = {pyc_cli.passes.tuning_db.machine_key("cuda", r)
            for r in (record, other_driver, other_gpu, bf16)}
    assert len(keys) == 4
    assert "NVIDIA H200" in pyc_cli.passes.tuning_db.machine_key("cuda", record)


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_every_tunable_signature_renders_alone_with_its_default_kernel(
        tmp_path: Path, precision: str) -> None:
    """The tuner times each signature in a one-node graph; with 16-bit activations that graph
    must still compute them in float32, or no tensor-core GEMM applies and --tune on the GPU
    silently tunes nothing (a regression the GPU run of 7 Dec caught: 'tuned 0 signatures')."""
    target = get_target("cuda", arch="sm_90", precision=precision)
    graph, _ = compile_graph(MLP.path, input_shapes={"x": (64, 64)}, target=target)
    tasks = tuning_tasks(graph, target)
    assert len(tasks) == 3
    for task in tasks:
        bench = Bench(graph, "balanced", target, tmp_path, TuneOptions())
        rendered = bench.render(task, Variant(task.default.name))
        [kernel] = [n.ann.kernel for n in rendered.graph.nodes if n.op == task.node.op]
        assert kernel is not None and kernel.candidate == task.default.name
        assert "model.cu" in rendered.sources


@gpu_only
def test_tune_on_the_gpu_then_build_from_the_database(tmp_path: Path,
                                                     rng: np.random.Generator) -> None:
    db = tmp_path / "tuning.json"
    code, output = invoke(*build_args(tmp_path / "a.pyc", db, "--tune", "--tune-budget", "120"))
    assert code == 0, output
    assert "tuned" in output and str(db) in output
    identity = cuda_runtime.gpu_identity("tests")
    sections = json.loads(db.read_text())["machines"]
    [(key, section)] = sections.items()
    assert identity["gpu"] in key and section["entries"]
    for entry in section["entries"].values():
        assert entry["winner"]["median_ms"] > 0 and len(entry["measured"]) >= 2
    code, output = invoke(*build_args(tmp_path / "b.pyc", db))
    assert code == 0, output
    assert (tmp_path / "a.pyc" / "src" / "model.cu").read_bytes() == \
        (tmp_path / "b.pyc" / "src" / "model.cu").read_bytes()
    code, output = invoke("explain", str(tmp_path / "b.pyc"))
    assert code == 0 and "chosen by measurement" in output
    x = rng.standard_normal((64, 64)).astype(np.float32)
    with pyc_cli.load(tmp_path / "b.pyc") as model:
        model.poison()
        got = model.run({"x": x})
    for name, want in onnxruntime_outputs(MLP.path, {"x": x}).items():
        scale = float(np.max(np.abs(want)))
        np.testing.assert_allclose(got[name], want, rtol=0, atol=2e-2 * scale, err_msg=name)
