"""Artifacts of several targets (`pyc build --target cuda,cpu`) and the guards that choose one
at load, without a GPU: the CUDA target's guards fail here (the driver is replaced by stand-ins
for each failure: no driver, no GPU, another architecture, too little memory, the CUDA packages
missing), the load falls back to the CPU target with warning PYC-W001 naming the reason, the
run statistics count it, and the CPU outputs match onnxruntime (float32: rtol 1e-4, atol 1e-5).
Every file of either target is hash-checked before any native code loads; the manifest and
`pyc explain` list both targets; two builds are byte-identical."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_MODELS, invoke, onnxruntime_outputs
from cuda_emulation import CXX, FakeDriver, compile_kernels

import pyc_cli
from pyc_cli import api
from pyc_cli.artifact.manifest import dumps, file_sha256
from pyc_cli.errors import PycError, PycWarning
from pyc_cli.targets.cuda import bindings

pytestmark = pytest.mark.skipif(not bindings.available(),
                                reason='the NVRTC wheel is not installed (pip install ".[cuda]")')
MLP = REFERENCE_MODELS["mlp"]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("multi") / "mlp.pyc"
    code, output = invoke("build", str(MLP.path), "-o", str(out), "--target", "cuda,cpu",
                          "--input-shape", "x=3,64")
    assert code == 0, output
    assert "fallback target cpu built into targets/cpu/" in output
    return out


def copy_of(artifact: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy.pyc"
    shutil.copytree(artifact, target)
    return target


class NoDriver(FakeDriver):
    """libcuda absent: cuInit raises, as cuda-pathfinder does when it cannot find it."""

    def _cuInit(self, flags: int) -> tuple:  # noqa: ANN001
        raise RuntimeError('"cuda" is an NVIDIA driver library and can only be found via system search')


def no_packages() -> FakeDriver:
    raise PycError("E027", "the CUDA target needs cuda-python's driver bindings (test)")


# each stand-in for the driver, and what the fallback reason must name
GUARDS = {
    "no driver": (lambda: NoDriver(None, {}), "E037", "no NVIDIA driver"),
    "no GPU": (lambda: _without_gpu(FakeDriver(None, {})), "E037", "sees no GPU"),
    "older GPU": (lambda: FakeDriver(None, {}, capability=(8, 0)), "E037", "this GPU is sm_80"),
    "too little memory": (lambda: FakeDriver(None, {}, free=1000), "E037", "device memory"),
    "no CUDA packages": (no_packages, "E027", "driver bindings"),
}


def _without_gpu(fake: FakeDriver) -> FakeDriver:
    fake._cuDeviceGetCount = lambda: (0, 0)  # type: ignore[method-assign]
    return fake


def load_with_warnings(artifact: Path) -> tuple[object, list[PycError]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model = pyc_cli.load(artifact)
    return model, [w.message.error for w in seen if isinstance(w.message, PycWarning)]


def emulated_gpu(artifact: Path, tmp_path: Path) -> FakeDriver:
    lib = compile_kernels((artifact / "src/model.cu").read_text(), tmp_path)
    plan = json.loads((artifact / "src/launches.json").read_text())["launches"]
    return FakeDriver(lib, {launch["kernel"]: len(launch["args"]) for launch in plan})


@pytest.mark.parametrize("guard", GUARDS, ids=list(GUARDS))
def test_falls_back_to_cpu_with_a_warning(guard: str, artifact: Path, rng: np.random.Generator,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    make, code, reason = GUARDS[guard]
    monkeypatch.setattr(bindings, "driver", make)
    model, seen = load_with_warnings(artifact)
    with model:  # type: ignore[attr-defined]
        assert [w.code for w in seen] == ["W001"]
        assert f"cuda target cannot run here (PYC-{code}" in seen[0].what and reason in seen[0].what
        stats = model.stats  # type: ignore[attr-defined]
        assert (stats.target, stats.targets, stats.execution) == ("cpu", ["cuda", "cpu"], "native")
        assert stats.fallback_count == 1 and stats.guard_miss_count == 1
        assert stats.last_fallback_reason.startswith(f"PYC-{code}: ") and reason in stats.last_fallback_reason
        for _ in range(2):
            feeds = MLP.random_feeds(rng)
            ours = model.run(feeds)  # type: ignore[attr-defined]
            for name, value in onnxruntime_outputs(MLP.path, feeds).items():
                np.testing.assert_allclose(ours[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
        # the input guard: other shapes than built are a guard miss, refused (no target has them)
        with pytest.raises(PycError) as caught:
            model.run({"x": np.ones((4, 64), np.float32)})  # type: ignore[attr-defined]
        assert caught.value.code == "E041"
        assert stats.guard_miss_count == 2 and stats.fallback_count == 1


@pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")
def test_no_fallback_when_cuda_runs(artifact: Path, tmp_path: Path, rng: np.random.Generator,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the CUDA guards pass (an emulated GPU), the CUDA target runs: no warning, no
    fallback counted."""
    fake = emulated_gpu(artifact, tmp_path)
    monkeypatch.setattr(bindings, "driver", lambda: fake)
    model, seen = load_with_warnings(artifact)
    with model:  # type: ignore[attr-defined]
        assert seen == []
        stats = model.stats.to_json()  # type: ignore[attr-defined]
        assert stats["target"] == "cuda" and stats["targets"] == ["cuda", "cpu"]
        assert stats["fallback_count"] == stats["guard_miss_count"] == 0
        assert stats["last_fallback_reason"] is None and stats["execution"] == "cuda_graph"
        feeds = MLP.random_feeds(rng)
        ours = model.run(feeds)  # type: ignore[attr-defined]
        for name, value in onnxruntime_outputs(MLP.path, feeds).items():
            np.testing.assert_allclose(ours[name], value, rtol=1e-4, atol=1e-4, err_msg=name)
    for graphs, execution in (("1", "cuda_graph"), ("0", "cuda_stream")):
        monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
        code, output = invoke("run", str(artifact), "--random-inputs", "0", "--json")
        assert code == 0 and "PYC-W001" not in output, output
        stats = json.loads(output)["run_statistics"]
        assert stats["target"] == "cuda" and stats["execution"] == execution
        code, output = invoke("run", str(artifact), "--random-inputs", "0")
        assert code == 0 and f"target cuda of cuda, cpu ({execution}); fallbacks 0" in output


@pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")
@pytest.mark.parametrize("failing", ["cuGraphLaunch", "cuStreamSynchronize"])
def test_a_run_failing_on_the_gpu_goes_to_the_cpu(failing: str, artifact: Path, tmp_path: Path,
                                                  rng: np.random.Generator,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA target loads and runs (an emulated GPU); then the device fails during a run
    (the graph cannot launch, the stream reports an error: PYC-E038). That run is answered by
    the CPU target with warning PYC-W002 naming the failure, the statistics count the fallback,
    and every later run goes to the CPU without touching the GPU; outputs match onnxruntime."""
    fake = emulated_gpu(artifact, tmp_path)
    monkeypatch.setattr(bindings, "driver", lambda: fake)
    model, seen = load_with_warnings(artifact)
    with model:  # type: ignore[attr-defined]
        assert seen == [] and model.stats.target == "cuda"  # type: ignore[attr-defined]
        model.run(MLP.random_feeds(rng))  # type: ignore[attr-defined]
        fake.fail = failing
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            feeds = MLP.random_feeds(rng)
            ours = model.run(feeds)  # type: ignore[attr-defined]
        errors = [w.message.error for w in caught if isinstance(w.message, PycWarning)]
        assert [e.code for e in errors] == ["W002"]
        assert f"cuda target failed (PYC-E038: the CUDA driver call {failing} failed" in errors[0].what
        assert "go to its cpu target" in errors[0].what
        stats = model.stats  # type: ignore[attr-defined]
        assert (stats.target, stats.execution, stats.fallback_count) == ("cpu", "native", 1)
        assert stats.guard_miss_count == 0 and stats.targets == ["cuda", "cpu"]
        assert stats.last_fallback_reason.startswith("PYC-E038: ")
        for name, value in onnxruntime_outputs(MLP.path, feeds).items():
            np.testing.assert_allclose(ours[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
        calls = sum(fake.calls.values())
        feeds = MLP.random_feeds(rng)
        again = model.run(None, feeds)  # type: ignore[attr-defined]
        assert len(model.time_runs(feeds, 2)) == 2  # type: ignore[attr-defined]
        assert sum(fake.calls.values()) == calls, "a later run reached the GPU"
        assert stats.fallback_count == 1
        want = list(onnxruntime_outputs(MLP.path, feeds).values())
        np.testing.assert_allclose(again[0], want[0], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")
def test_a_failing_run_without_a_fallback_target_raises(tmp_path: Path, rng: np.random.Generator,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA-only artifact has nowhere to go: the device failure is the run's PYC-E038."""
    out = tmp_path / "cuda_only.pyc"
    pyc_cli.build(MLP.path, out, target="cuda", input_shapes={"x": (3, 64)})
    fake = emulated_gpu(out, tmp_path)
    monkeypatch.setattr(bindings, "driver", lambda: fake)
    with pyc_cli.load(out) as model:
        fake.fail = "cuStreamSynchronize"
        with pytest.raises(PycError) as caught:
            model.run(MLP.random_feeds(rng))
    assert caught.value.code == "E038" and "cuStreamSynchronize" in caught.value.what


def test_cuda_only_artifact_still_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cuda_only.pyc"
    pyc_cli.build(MLP.path, out, target="cuda", input_shapes={"x": (3, 64)})
    monkeypatch.setattr(bindings, "driver", lambda: NoDriver(None, {}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: an error, and no fallback to speak of
        with pytest.raises(PycError) as caught:
            pyc_cli.load(out)
    assert caught.value.code == "E037" and "--target cpu" in caught.value.hint


@pytest.mark.parametrize("victim", ["model.cubin", "src/launches.json", "weights.bin",
                                    "targets/cpu/libmodel.so", "targets/cpu/weights.bin",
                                    "targets/cpu/manifest.json"])
def test_tampering_with_either_target_is_refused_first(victim: str, artifact: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A changed byte in any file of either target: PYC-E031 before the driver is asked
    anything and before the CPU library is mapped."""
    copy = copy_of(artifact, tmp_path)
    data = bytearray((copy / victim).read_bytes())
    data[len(data) // 2] ^= 1
    (copy / victim).write_bytes(bytes(data))
    monkeypatch.setattr(bindings, "driver", lambda: pytest.fail("the driver was reached"))
    monkeypatch.setattr(api, "_content_addressed_copy", lambda *a: pytest.fail("a library was loaded"))
    with pytest.raises(PycError) as caught:
        pyc_cli.load(copy)
    assert caught.value.code == "E031" and victim in caught.value.what


def test_a_fallback_file_rehashed_in_the_top_manifest_is_refused(
        artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forgery that updates the artifact's manifest for a changed CPU library still meets
    the fallback's own manifest (hashed by the artifact's): PYC-E031, nothing loaded."""
    copy = copy_of(artifact, tmp_path)
    library = copy / "targets/cpu/libmodel.so"
    data = bytearray(library.read_bytes())
    data[len(data) // 2] ^= 1
    library.write_bytes(bytes(data))
    top = json.loads((copy / "manifest.json").read_text())
    top["files"]["targets/cpu/libmodel.so"] = file_sha256(library)
    (copy / "manifest.json").write_text(dumps(top))
    monkeypatch.setattr(bindings, "driver", lambda: NoDriver(None, {}))
    monkeypatch.setattr(api, "_content_addressed_copy", lambda *a: pytest.fail("a library was loaded"))
    with pytest.raises(PycError) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyc_cli.load(copy)
    assert caught.value.code == "E031" and "targets/cpu/manifest.json" in caught.value.what


def test_a_missing_fallback_is_refused(artifact: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    copy = copy_of(artifact, tmp_path)
    shutil.rmtree(copy / "targets" / "cpu")
    monkeypatch.setattr(bindings, "driver", lambda: pytest.fail("the driver was reached"))
    with pytest.raises(PycError) as caught:
        pyc_cli.load(copy)
    assert caught.value.code == "E030" and "targets/cpu/manifest.json" in caught.value.what


@pytest.mark.parametrize("targets", [["cuda", "cuda"], ["cpu", "cuda"], ["cuda", "tpu"], [],
                                     ["cuda", "cpu", "x/../.."], "cuda,cpu", [1]])
def test_hostile_targets_lists_give_pyc_errors(targets: object, artifact: Path, tmp_path: Path) -> None:
    copy = copy_of(artifact, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["targets"] = targets
    (copy / "manifest.json").write_text(dumps(manifest))
    with pytest.raises(PycError) as caught:
        pyc_cli.load(copy)
    assert caught.value.code == "E030" and "targets" in caught.value.what


def test_a_fallback_of_other_inputs_is_refused(artifact: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A fallback built for other shapes, hashed consistently: the load-time guard that every
    target takes the inputs the artifact declares refuses it (never runs it)."""
    copy = copy_of(artifact, tmp_path)
    inner = copy / "targets/cpu/manifest.json"
    manifest = json.loads(inner.read_text())
    manifest["inputs"][0]["shape"] = [4, 64]
    inner.write_text(dumps(manifest))
    top = json.loads((copy / "manifest.json").read_text())
    top["files"]["targets/cpu/manifest.json"] = file_sha256(inner)
    (copy / "manifest.json").write_text(dumps(top))
    monkeypatch.setattr(bindings, "driver", lambda: NoDriver(None, {}))
    with pytest.raises(PycError) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyc_cli.load(copy)
    assert caught.value.code == "E030" and "inputs and outputs" in caught.value.what


def test_manifest_and_explain_show_both_targets(artifact: Path) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["target"] == "cuda" and manifest["targets"] == ["cuda", "cpu"]
    inner = json.loads((artifact / "targets/cpu/manifest.json").read_text())
    assert inner["target"] == "cpu" and "targets" not in inner and "cpu" in inner
    inner_hash = file_sha256(artifact / "targets/cpu/manifest.json")
    assert manifest["files"]["targets/cpu/manifest.json"] == inner_hash
    assert all(manifest["files"][f"targets/cpu/{name}"] == digest for name, digest in inner["files"].items())
    code, output = invoke("explain", str(artifact), "--json")
    assert code == 0, output
    assert json.loads(output)["targets"] == ["cuda", "cpu"]
    code, output = invoke("explain", str(artifact))
    assert code == 0 and "targets, tried in order when loaded: cuda (this report), then cpu" in output
    code, output = invoke("explain", str(artifact / "targets" / "cpu"), "--json")
    assert code == 0 and json.loads(output)["target"] == "cpu"


def test_rebuild_is_byte_identical(artifact: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.pyc"
    pyc_cli.build(MLP.path, again, target="cuda,cpu", input_shapes={"x": (3, 64)}, name="mlp")
    assert (again / "manifest.json").read_bytes() == (artifact / "manifest.json").read_bytes()
    for name in json.loads((artifact / "manifest.json").read_text())["files"]:
        assert (again / name).read_bytes() == (artifact / name).read_bytes(), name


def test_run_json_reports_the_fallback(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bindings, "driver", lambda: NoDriver(None, {}))
    code, output = invoke("run", str(artifact), "--random-inputs", "0", "--json")
    assert code == 0, output
    warning, _, summary = output.rpartition("\n{")  # the warning on stderr, then the JSON
    assert "warning: PYC-W001: the artifact's cuda target cannot run here (PYC-E037" in output
    stats = json.loads("{" + summary)["run_statistics"]
    assert stats["target"] == "cpu" and stats["fallback_count"] == stats["guard_miss_count"] == 1
    assert stats["last_fallback_reason"].startswith("PYC-E037: ")
    code, output = invoke("run", str(artifact), "--random-inputs", "0")
    assert code == 0 and "target cpu of cuda, cpu (native); fallbacks 1, guard misses 1" in output


def test_slim_and_strip_keep_every_target_runnable(artifact: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    slim = tmp_path / "slim.pyc"
    pyc_cli.build(MLP.path, slim, target="cuda,cpu", input_shapes={"x": (3, 64)}, name="mlp",
                  slim=True)
    stripped = copy_of(artifact, tmp_path)
    code, output = invoke("strip", str(stripped))
    assert code == 0, output
    files = {root: set(json.loads((root / "manifest.json").read_text())["files"])
             for root in (slim, stripped)}
    assert files[slim] == files[stripped] and "targets/cpu/libmodel.so" in files[slim]
    monkeypatch.setattr(bindings, "driver", lambda: NoDriver(None, {}))
    for root in (slim, stripped):
        assert not (root / "targets/cpu/model.ir").exists() and not (root / "src/model.cu").exists()
        model, seen = load_with_warnings(root)
        with model:  # type: ignore[attr-defined]
            assert [w.code for w in seen] == ["W001"] and model.stats.target == "cpu"  # type: ignore[attr-defined]


@pytest.mark.parametrize("target,what", [("cuda,cuda", "distinct"), ("gpu,cpu", "distinct"),
                                         ("cuda,", "distinct")])
def test_bad_target_lists_are_refused(target: str, what: str, tmp_path: Path) -> None:
    code, output = invoke("build", str(MLP.path), "-o", str(tmp_path / "x.pyc"), "--target", target,
                          "--input-shape", "x=3,64")
    assert code != 0 and "PYC-E050" in output and what in output
