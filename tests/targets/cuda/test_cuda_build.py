"""`pyc build --target cuda` and loading a CUDA artifact, without a GPU: the artifact's files
and manifest, byte-identical rebuilds, every unsupported node listed at once, and the loader's
checks (hashes before the driver, the launch plan, no driver: PYC-E037)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REFERENCE_MODELS, invoke

import pyc_cli
from pyc_cli.artifact.manifest import dumps
from pyc_cli.errors import PycError
from pyc_cli.runtime import cuda as cuda_runtime
from pyc_cli.targets.cuda import bindings

pytestmark = pytest.mark.skipif(not bindings.available(),
                                reason='the NVRTC wheel is not installed (pip install ".[cuda]")')
MLP = REFERENCE_MODELS["mlp"]


def gpu_present() -> bool:
    try:
        cuda_runtime.init_driver("probe")
    except PycError:
        return False
    return True


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cuda") / "mlp.pyc"
    code, output = invoke("build", str(MLP.path), "-o", str(out), "--target", "cuda",
                          "--input-shape", "x=3,64")
    assert code == 0, output
    return out


def copy_of(artifact: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy.pyc"
    shutil.copytree(artifact, target)
    return target


def test_artifact_holds_sources_cubin_ptx_and_weights(artifact: Path) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["target"] == "cuda" and manifest["library"] == "model.cubin"
    for name in ("model.cubin", "model.ptx", "src/model.cu", "src/launches.json", "weights.bin"):
        assert name in manifest["files"], name
    assert (artifact / "model.cubin").read_bytes()[:4] == b"\x7fELF"
    toolchain = manifest["toolchain"]
    assert toolchain["compiler"] == "nvrtc" and toolchain["arch"] == "sm_90"
    assert "--gpu-architecture=sm_90" in toolchain["flags"]
    assert toolchain["nvrtc_version"].split(".")[0] == "13"
    assert toolchain["compiler_version"] == f"NVRTC {toolchain['nvrtc_version']}"
    assert manifest["cuda"]["arch"] == "sm_90" and manifest["cuda"]["ptx_isa"]
    assert "cpu" not in manifest
    launches = json.loads((artifact / "src/launches.json").read_text())["launches"]
    assert [launch["op"] for launch in launches] == ["MatMul"] * 3
    assert {launch["kernel"] for launch in launches} <= {"k0_matmul", "k1_matmul", "k2_matmul"}


def test_rebuild_is_byte_identical(artifact: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.pyc"
    pyc_cli.build(MLP.path, again, target="cuda", input_shapes={"x": (3, 64)}, name="mlp")
    assert (again / "manifest.json").read_text() == (artifact / "manifest.json").read_text()


def test_sm80_build(tmp_path: Path) -> None:
    out = tmp_path / "mlp80.pyc"
    pyc_cli.build(MLP.path, out, target="cuda", arch="sm_80", input_shapes={"x": (3, 64)})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cuda"]["arch"] == "sm_80" and manifest["flags"]["arch"] == "sm_80"
    assert ".target sm_80" in (out / "model.ptx").read_text()


def test_arch_needs_the_cuda_target(tmp_path: Path) -> None:
    code, output = invoke("build", str(MLP.path), "-o", str(tmp_path / "x.pyc"), "--arch", "sm_90",
                          "--input-shape", "x=3,64")
    assert code != 0 and "PYC-E050" in output


def test_unsupported_ops_are_listed_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes of an op without a CUDA kernel are named in one E008 (every op has one now: the
    table is patched here to lose NonZero's, which test_cuda_dims.py runs)."""
    from onnx import TensorProto, helper

    from pyc_cli.targets.cuda.kernels import CUDA_KERNELS

    monkeypatch.delitem(CUDA_KERNELS, "NonZero")
    nodes = [helper.make_node("NonZero", ["x"], ["a"]), helper.make_node("NonZero", ["z"], ["b"])]
    graph = helper.make_graph(nodes, "nz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                                            helper.make_tensor_value_info("z", TensorProto.INT32, [4])],
                              [helper.make_tensor_value_info("a", TensorProto.INT64, [2, "n"]),
                               helper.make_tensor_value_info("b", TensorProto.INT64, [1, "m"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    path = tmp_path / "nz.onnx"
    path.write_bytes(model.SerializeToString())
    code, output = invoke("build", str(path), "-o", str(tmp_path / "nz.pyc"), "--target", "cuda")
    assert code != 0 and "PYC-E008" in output
    assert "no cuda kernel for 2 node(s)" in output and output.count("NonZero (") == 2


def test_float16_model_builds(tmp_path: Path) -> None:
    """float16 model tensors (which had no CUDA kernel: the casts to and from the float32
    compute) build: Softmax and Hardmax in float32 between casts, TopK too, the casts on
    cuda_elementwise (test_cuda_f16.py runs such models)."""
    from onnx import TensorProto, helper

    from pyc_cli.api import compile_graph

    nodes = [helper.make_node("Softmax", ["x"], ["a"]), helper.make_node("Hardmax", ["a"], ["b"]),
             helper.make_node("TopK", ["b", "k"], ["v", "i"])]
    graph = helper.make_graph(nodes, "f16", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 3])],
                              [helper.make_tensor_value_info("v", TensorProto.FLOAT16, [2, 2]),
                               helper.make_tensor_value_info("i", TensorProto.INT64, [2, 2])],
                              [helper.make_tensor("k", TensorProto.INT64, [1], [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    path = tmp_path / "f16.onnx"
    path.write_bytes(model.SerializeToString())
    built, _ = compile_graph(path, target="cuda")
    casts = [n.ann.kernel_name for n in built.nodes if n.op == "pyc.Elementwise"]
    assert casts and set(casts) == {"cuda_elementwise"}


def test_unet_resizes_have_a_cuda_kernel(tmp_path: Path) -> None:
    """The U-Net's three Resize nodes, which had no CUDA kernel, build (cuda_resize)."""
    from pyc_cli.api import compile_graph

    graph, _ = compile_graph(MLP.path.parent / "unet.onnx", target="cuda")
    resizes = [n.ann.kernel_name for n in graph.nodes if n.op == "Resize"]
    assert resizes == ["cuda_resize"] * 3


@pytest.mark.skipif(gpu_present(), reason="a GPU and driver are present here")
def test_no_driver_is_a_clear_error(artifact: Path) -> None:
    code, output = invoke("run", str(artifact), "--random-inputs", "0")
    assert code != 0 and "PYC-E037" in output and "--target cpu" in output
    with pytest.raises(PycError) as caught:
        pyc_cli.load(artifact)
    assert caught.value.code == "E037"


def test_tampered_cubin_is_refused_before_the_driver(artifact: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    copy = copy_of(artifact, tmp_path)
    data = bytearray((copy / "model.cubin").read_bytes())
    data[100] ^= 1
    (copy / "model.cubin").write_bytes(bytes(data))
    monkeypatch.setattr(cuda_runtime, "init_driver", lambda where: pytest.fail("driver reached"))
    with pytest.raises(PycError) as caught:
        pyc_cli.load(copy)
    assert caught.value.code == "E031" and "model.cubin" in caught.value.what


def _edit_plan(copy: Path, edit) -> None:  # noqa: ANN001
    plan_path = copy / "src/launches.json"
    plan = json.loads(plan_path.read_text())
    edit(plan)
    plan_path.write_text(json.dumps(plan))
    manifest = json.loads((copy / "manifest.json").read_text())
    from pyc_cli.artifact.manifest import file_sha256

    manifest["files"]["src/launches.json"] = file_sha256(plan_path)  # a consistent forgery
    (copy / "manifest.json").write_text(dumps(manifest))


@pytest.mark.parametrize("edit", [
    lambda p: p["launches"][0]["args"].append(["arena", 1 << 40]),
    lambda p: p["launches"][0].update(block=[2048, 1, 1]),
    lambda p: p["launches"][0].update(kernel="k0; rm -rf"),
    lambda p: p["launches"][0]["args"].append(["host", 0]),
    lambda p: p.update(arena_bytes=1),
], ids=["offset", "block", "name", "space", "arena"])
def test_launch_plan_is_checked(artifact: Path, tmp_path: Path, edit,  # noqa: ANN001
                                monkeypatch: pytest.MonkeyPatch) -> None:
    copy = copy_of(artifact, tmp_path)
    _edit_plan(copy, edit)
    monkeypatch.setattr(cuda_runtime, "init_driver", lambda where: pytest.fail("driver reached"))
    with pytest.raises(PycError) as caught:
        pyc_cli.load(copy)
    assert caught.value.code == "E030" and "launch plan" in caught.value.what


def test_manifest_of_other_target_is_refused(artifact: Path, tmp_path: Path) -> None:
    copy = copy_of(artifact, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["cuda"]
    (copy / "manifest.json").write_text(dumps(manifest))
    with pytest.raises(PycError) as caught:
        pyc_cli.load(copy)
    assert caught.value.code == "E032"


def test_strip_keeps_what_running_needs(artifact: Path, tmp_path: Path) -> None:
    copy = copy_of(artifact, tmp_path)
    code, output = invoke("strip", str(copy))
    assert code == 0, output
    manifest = json.loads((copy / "manifest.json").read_text())
    assert {"model.cubin", "model.ptx", "src/launches.json", "weights.bin"} <= set(manifest["files"])
    assert not (copy / "src/model.cu").exists()
    if gpu_present():  # still an artifact the loader accepts
        pyc_cli.load(copy).close()
        return
    with pytest.raises(PycError) as caught:
        pyc_cli.load(copy)
    assert caught.value.code == "E037"  # no GPU here: the manifest was accepted first


def test_explain_reads_a_cuda_artifact(artifact: Path) -> None:
    code, output = invoke("explain", str(artifact), "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["target"] == "cuda" and report["cuda"]["arch"] == "sm_90"
    assert {k["kernel"] for k in report["kernels"]} == {"cuda_matmul_skinny"}  # 3 rows
    code, output = invoke("explain", str(artifact))
    assert code == 0 and "gpu: sm_90 CUBIN" in output and "NVRTC 13" in output


def _mutations(manifest: dict) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """Every field of the manifest's cuda record and top level, replaced by hostile values."""
    found = []
    for value in ([0], None, "x", -1, "../weights.bin", {"a": 1}):
        for key in manifest["cuda"]:
            changed = json.loads(json.dumps(manifest))
            changed["cuda"][key] = value
            found.append((f"cuda.{key}={value!r}", changed))
        for key in ("target", "library", "arena_bytes", "cuda", "toolchain"):
            changed = json.loads(json.dumps(manifest))
            changed[key] = value
            found.append((f"{key}={value!r}", changed))
    return found


def test_hostile_manifest_fields_give_pyc_errors(artifact: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A edited manifest never gets past the checks to the driver, and never raises anything
    but a PycError."""
    copy = copy_of(artifact, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    monkeypatch.setattr(cuda_runtime, "init_driver",
                        lambda where: (_ for _ in ()).throw(PycError("E037", "no driver (test)")))
    for label, changed in _mutations(manifest):
        (copy / "manifest.json").write_text(json.dumps(changed))
        with pytest.raises(PycError) as caught:
            pyc_cli.load(copy)
        assert caught.value.code in ("E030", "E031", "E032", "E037"), label


def test_cpu_only_tools_refuse_a_cuda_artifact(artifact: Path) -> None:
    """--per-node rebuilds the C sources and the JIT links them: a CUDA artifact has neither."""
    from pyc_cli.runtime.jit import jit_load

    with pytest.raises(PycError) as caught:
        jit_load(artifact)
    assert caught.value.code == "E032"
    code, output = invoke("run", str(artifact), "--random-inputs", "0", "--compare", "ort",
                          "--per-node", "--model", str(MLP.path))
    assert code != 0 and ("PYC-E050" in output or "PYC-E037" in output)
