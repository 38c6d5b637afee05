"""runtime/cuda.py's whole path without a GPU: a CUDA artifact built by NVRTC is loaded through
a stand-in for cuda-python's driver module (cuda_emulation.FakeDriver: host memory as device
memory, the artifact's kernels compiled for the CPU), so the loader's choices (CUBIN, PTX, or
PYC-E037), the arena, weights, staging and argument arrays, runs against onnxruntime (float32:
rtol 1e-4, atol 1e-4; the transformer rtol 1e-3), the status word (PYC-E048), driver errors
(PYC-E038), timing and closing are all exercised, with runs replayed as one CUDA graph (the
default) and launched call by call (PYC_CUDA_GRAPHS=0), whose outputs must be identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_MODELS, onnxruntime_outputs
from cuda_cases import CASES
from cuda_emulation import CXX, FakeDriver, compile_kernels
from helpers import write_model

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.targets.cuda import bindings

pytestmark = [
    pytest.mark.skipif(not bindings.available(),
                       reason='the NVRTC wheel is not installed (pip install ".[cuda]")'),
    pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")]


def fake_for(artifact: Path, tmp_path: Path, **options: object) -> FakeDriver:
    lib = compile_kernels((artifact / "src" / "model.cu").read_text(), tmp_path)
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    return FakeDriver(lib, {s["kernel"]: len(s["args"]) for s in plan["launches"]}, **options)  # type: ignore[arg-type]


def use(monkeypatch: pytest.MonkeyPatch, fake: FakeDriver) -> FakeDriver:
    monkeypatch.setattr(bindings, "driver", lambda: fake)
    return fake


def build(name: str, tmp_path: Path, arch: str = "sm_90") -> tuple[Path, Path, dict]:  # type: ignore[type-arg]
    model = REFERENCE_MODELS[name]
    out = tmp_path / f"{name}.pyc"
    pyc_cli.build(model.path, out, target="cuda", arch=arch, input_shapes=dict(model.shapes))
    return model.path, out, dict(model.shapes)


@pytest.mark.parametrize("name,rtol", [("mlp", 1e-4), ("transformer", 1e-3)])
def test_runs_match_onnxruntime(name: str, rtol: float, tmp_path: Path, rng: np.random.Generator,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    path, artifact, _ = build(name, tmp_path)
    fake = use(monkeypatch, fake_for(artifact, tmp_path))
    with pyc_cli.load(artifact) as model:
        assert model.device_name == "Emulated GPU" and fake.loaded == [b"\x7fELF"]  # the CUBIN
        for _ in range(2):
            feeds = REFERENCE_MODELS[name].random_feeds(rng)
            model.poison()
            ours = model.run(feeds)
            for key, value in onnxruntime_outputs(path, feeds).items():
                np.testing.assert_allclose(ours[key], value, rtol=rtol, atol=1e-4, err_msg=key)
        (first,) = model.run(None, feeds)
        np.testing.assert_array_equal(first, ours[model.outputs[0].name])
        assert len(model.time_runs(feeds, 3)) == 3
        assert model.time_kernels(feeds, 4) == [0.25] * 4
    assert fake.memory == {}  # every allocation freed at close
    with pytest.raises(PycError) as caught:
        model.run(feeds)
    assert caught.value.code == "E047"


def test_index_out_of_range_names_the_input(tmp_path: Path, rng: np.random.Generator,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    gather = next(c for c in CASES if c.name == "gather")
    path = write_model(gather.make(rng), tmp_path)
    pyc_cli.build(path, tmp_path / "g.pyc", target="cuda")
    use(monkeypatch, fake_for(tmp_path / "g.pyc", tmp_path))
    with pyc_cli.load(tmp_path / "g.pyc") as model:
        ids = rng.integers(0, 50, (2, 9), dtype=np.int64)
        ids[1, 2] = 77
        with pytest.raises(PycError) as caught:
            model.run({"ids": ids})
        assert caught.value.code == "E048" and "ids" in caught.value.what
        ids[1, 2] = -50  # in range again: the next run is right
        expected = onnxruntime_outputs(path, {"ids": ids})["y"]
        np.testing.assert_array_equal(model.run({"ids": ids})["y"], expected)


@pytest.mark.parametrize("arch,capability,driver,expected", [
    ("sm_80", (8, 6), "older", "cubin"),  # same major, newer minor: the CUBIN runs
    ("sm_80", (9, 0), "older", "E037"),   # newer GPU, and the driver cannot JIT this PTX
    ("sm_80", (9, 0), "as new", "ptx"),   # newer GPU and a new enough driver: the PTX
    ("sm_90", (8, 0), "as new", "E037"),  # an older GPU never runs it
])
def test_image_choice(arch: str, capability: tuple[int, int], driver: str, expected: str,
                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, artifact, _ = build("mlp", tmp_path, arch)
    # the driver version relative to what this NVRTC's PTX needs (the manifest records it):
    # one minor version older, or exactly that version (cuDriverGetVersion's 1000*major+10*minor)
    needs = json.loads((artifact / "manifest.json").read_text())["cuda"]["ptx_min_driver"]
    major, minor = (int(v) for v in needs.split("."))
    version = 1000 * major + 10 * minor - (10 if driver == "older" else 0)
    fake = use(monkeypatch, fake_for(artifact, tmp_path, capability=capability, version=version))
    if expected == "E037":
        with pytest.raises(PycError) as caught:
            pyc_cli.load(artifact)
        assert caught.value.code == "E037" and "--arch sm_" in caught.value.hint
        return
    with pyc_cli.load(artifact):
        assert fake.loaded == [b"\x7fELF" if expected == "cubin" else b"//\n/"]


@pytest.mark.parametrize("call", ["cuModuleLoadData", "cuMemAlloc", "cuLaunchKernel", "cuStreamSynchronize",
                                  "cuStreamBeginCapture", "cuStreamEndCapture", "cuGraphInstantiate",
                                  "cuGraphLaunch"])
def test_driver_errors_are_coded(call: str, tmp_path: Path, rng: np.random.Generator,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, artifact, _ = build("mlp", tmp_path)
    fake = use(monkeypatch, fake_for(artifact, tmp_path, fail=call))
    with pytest.raises(PycError) as caught, pyc_cli.load(artifact) as model:
        model.run(REFERENCE_MODELS["mlp"].random_feeds(rng))
    assert caught.value.code == "E038" and call in caught.value.what
    assert "CUDA_ERROR_UNKNOWN" in caught.value.what
    if call != "cuMemAlloc":  # a load that failed half-way freed what it had taken
        assert fake.memory == {} and fake.graphs == set() and fake.capturing == {}
    if "Graph" in call or "Capture" in call:
        assert "PYC_CUDA_GRAPHS=0" in caught.value.hint


def run_both_ways(artifact: Path, tmp_path: Path, feeds_list: list[dict], graphs: str,  # type: ignore[type-arg]
                  monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict], FakeDriver, dict]:  # type: ignore[type-arg]
    """Every feed run once (outputs poisoned first) with PYC_CUDA_GRAPHS=`graphs`; the outputs,
    the fake driver (its call counts) and the model's run statistics."""
    monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
    fake = use(monkeypatch, fake_for(artifact, tmp_path))
    results = []
    with pyc_cli.load(artifact) as model:
        for feeds in feeds_list:
            model.poison()
            results.append(model.run(feeds))
        assert model.time_kernels(feeds_list[0], 2) == [0.25] * 2
        model.time_kernels(feeds_list[0], 2)
        stats = model.stats.to_json()
    assert fake.memory == {} and fake.graphs == set()  # graphs destroyed with the model
    return results, fake, stats


@pytest.mark.parametrize("name,rtol", [("mlp", 1e-4)])  # the transformer runs graphed above
def test_graph_replay_matches_launches(name: str, rtol: float, tmp_path: Path,
                                       rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run replayed as a CUDA graph gives the outputs of the same kernels launched one by
    one (bitwise: same kernels, same order), and each replay reads the inputs staged for it."""
    path, artifact, _ = build(name, tmp_path)
    feeds_list = [REFERENCE_MODELS[name].random_feeds(rng) for _ in range(3)]
    graphed, fake, stats = run_both_ways(artifact, tmp_path, feeds_list, "1", monkeypatch)
    launches = len(json.loads((artifact / "src" / "launches.json").read_text())["launches"])
    # the run was captured once at load and the kernels once for time_kernels: every run
    # and every timing is a replay, with no per-kernel driver call
    assert fake.calls["cuStreamBeginCapture"] == 2 and fake.calls["cuLaunchKernel"] == 2 * launches
    # 3 runs; each time_kernels: one run, then 3 warm-up and 2 timed replays of the kernels
    replays = 3 + 2 * (1 + 3 + 2)
    assert fake.graph_launches == replays and fake.launches == launches * replays
    assert stats["execution"] == "cuda_graph" and stats["kernels_timed"] == "cuda_graph"
    assert fake.stream_flags == 1  # CU_STREAM_NON_BLOCKING, the weights synchronised before
    streamed, fake, stats = run_both_ways(artifact, tmp_path, feeds_list, "0", monkeypatch)
    assert fake.calls["cuStreamBeginCapture"] == 0 and fake.graph_launches == 0
    assert fake.calls["cuLaunchKernel"] + fake.calls["cuLaunchKernelEx"] == fake.launches \
        == launches * replays
    assert stats["execution"] == "cuda_stream" and stats["kernels_timed"] == "cuda_stream"
    for feeds, ours, theirs in zip(feeds_list, graphed, streamed):
        for key, value in onnxruntime_outputs(path, feeds).items():
            np.testing.assert_allclose(ours[key], value, rtol=rtol, atol=1e-4, err_msg=key)
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    first, second = graphed[0], graphed[1]  # new inputs, new outputs (no stale replay)
    assert all(not np.array_equal(first[k], second[k]) for k in first)


def test_not_enough_device_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, artifact, _ = build("mlp", tmp_path)
    use(monkeypatch, fake_for(artifact, tmp_path, free=1000))
    with pytest.raises(PycError) as caught:
        pyc_cli.load(artifact)
    assert caught.value.code == "E037" and "device memory" in caught.value.what


def test_driver_without_a_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, artifact, _ = build("mlp", tmp_path)
    fake = use(monkeypatch, fake_for(artifact, tmp_path))
    monkeypatch.setattr(fake, "_cuDeviceGetCount", lambda: (0, 0))
    with pytest.raises(PycError) as caught:
        pyc_cli.load(artifact)
    assert caught.value.code == "E037" and "no GPU" in caught.value.what


@pytest.mark.parametrize("precision", ["fp16", "bf16", "tf32"])
def test_reduced_precision_artifact_runs(precision: str, tmp_path: Path, rng: np.random.Generator,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A --precision build through the runtime as it is (weights.bin with 16-bit B matrices
    uploaded as bytes): the MLP at 33 rows (tensor-core GEMMs) against onnxruntime within
    WHOLE_MODEL_RTOL of max |output|."""
    from mma_precision import WHOLE_MODEL_RTOL, assert_close_to_max

    model = REFERENCE_MODELS["mlp"]
    artifact = tmp_path / "mlp.pyc"
    built = pyc_cli.build(model.path, artifact, target="cuda", input_shapes={"x": (33, 64)},
                          precision=precision)
    assert {n.ann.kernel.candidate for n in built.graph.nodes if n.ann.kernel} == {"cuda_matmul_mma"}
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert bool(manifest["weights"].get("converted")) == (precision != "tf32")
    use(monkeypatch, fake_for(artifact, tmp_path))
    with pyc_cli.load(artifact) as loaded:
        feeds = {"x": rng.standard_normal((33, 64)).astype(np.float32)}
        loaded.poison()
        ours = loaded.run(feeds)
        for key, value in onnxruntime_outputs(model.path, feeds).items():
            assert_close_to_max(ours[key], value, WHOLE_MODEL_RTOL[precision], key)


@pytest.mark.parametrize("arch,env,dependents", [("sm_90", "1", True), ("sm_90", "0", False),
                                                 ("sm_90", None, False), ("sm_80", "1", False)])
def test_programmatic_dependents_only_where_every_kernel_waits(
        arch: str, env: str | None, dependents: bool, tmp_path: Path, rng: np.random.Generator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """sm_90 builds start each kernel as a programmatic dependent of the one before: every
    kernel then waits for the previous grid first (griddepcontrol.wait before any memory
    access), the first one (after the input copies) launches plainly; sm_80 builds, which have
    no griddepcontrol, launch plainly; so does an sm_90 build unless PYC_CUDA_PROGRAMMATIC=1
    (off by default until measured on a GPU). Outputs stay those of onnxruntime."""
    path, artifact, _ = build("transformer", tmp_path, arch)
    source = (artifact / "src" / "model.cu").read_text()
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    kernels = source.count('extern "C" __global__')
    assert source.count("{\n  pyc_await_previous_grid();") == (kernels if arch == "sm_90" else 0)
    assert plan.get("programmatic", False) is (arch == "sm_90")
    if env is None:
        monkeypatch.delenv("PYC_CUDA_PROGRAMMATIC", raising=False)
    else:
        monkeypatch.setenv("PYC_CUDA_PROGRAMMATIC", env)
    monkeypatch.setenv("PYC_CUDA_GRAPHS", "0")
    feeds = REFERENCE_MODELS["transformer"].random_feeds(rng)
    fake = use(monkeypatch, fake_for(artifact, tmp_path, capability=(int(arch[3]), 0)))
    with pyc_cli.load(artifact) as model:
        model.poison()
        ours = model.run(feeds)
        assert model.stats.to_json()["programmatic_launch"] is dependents
    launches = len(plan["launches"])
    assert fake.dependent_launches == fake.calls["cuLaunchKernelEx"] == \
        (launches - 1 if dependents else 0)
    assert fake.calls["cuLaunchKernel"] == (1 if dependents else launches)
    for key, value in onnxruntime_outputs(path, feeds).items():
        np.testing.assert_allclose(ours[key], value, rtol=1e-3, atol=1e-4, err_msg=key)
