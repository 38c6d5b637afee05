"""Issue #15, run-time dims end to end: the MLP 512-2048-2048-512 built once with
`--input-shape x=batch:1..64,512` runs at any batch within the bounds, through the Python API,
the CLI and the C ABI, against onnxruntime on fresh random inputs; shapes outside the bounds
are refused with PYC-E041; static models keep their artifacts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke, onnxruntime_outputs

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir.symbolic import parse_input_shapes
from tests.dynamic.checks import compile_driver, poison_outputs
from tests.dynamic.models import mlp
from tests.helpers import assert_strict_c11

REPO = Path(__file__).resolve().parents[2]
RTOL, ATOL = 1e-4, 1e-5  # float32 GEMMs of K = 2048 in another summation order than ORT's
BATCHES = (1, 2, 17, 63, 64)
SHAPE = "x=batch:1..64,512"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model, artifact): the MLP (first layer a Gemm) built once, balanced."""
    root = tmp_path_factory.mktemp("mlp")
    model = mlp(root, gemm=True)
    shapes, _ = parse_input_shapes([SHAPE])
    return model, pyc_cli.build(model, root / "art", input_shapes=shapes).artifact


def test_one_build_runs_every_batch_in_its_bounds(built: tuple[Path, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    model_path, art = built
    poison_outputs(monkeypatch)
    rng = np.random.default_rng(15)
    with pyc_cli.load(art) as model:
        assert model.inputs[0].shape == (64, 512) and model.inputs[0].dims == ("batch", 512)
        for batch in BATCHES:
            x = rng.standard_normal((batch, 512)).astype(np.float32)
            y = model.run({"x": x})["y"]
            assert y.shape == (batch, 512)
            expected = onnxruntime_outputs(model_path, {"x": x})["y"]
            np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)
        # onnxruntime's session.run convention, and the timing path, take any shape too
        x = rng.standard_normal((5, 512)).astype(np.float32)
        assert model.run(None, {"x": x})[0].shape == (5, 512)
        assert len(model.time_runs({"x": x}, 2)) == 2


@pytest.mark.parametrize(("shape", "words"), [
    ((65, 512), "dim 0 (batch) is 65, outside its bounds 1..64"),
    ((0, 512), "dim 0 (batch) is 0, outside its bounds 1..64"),
    ((3, 511), "dim 1 is 511; the model was built for 512"),
    ((3, 512, 1), "has rank 3, the model takes rank 2"),
])
def test_shapes_outside_the_bounds_are_refused(built: tuple[Path, Path], shape: tuple[int, ...],
                                               words: str) -> None:
    with pyc_cli.load(built[1]) as model, pytest.raises(PycError) as info:
        model.run({"x": np.ones(shape, np.float32)})
    assert info.value.code == "E041" and words in info.value.what
    assert info.value.where == "input 'x'"


def test_the_artifact_records_the_dims(built: tuple[Path, Path]) -> None:
    art = built[1]
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["dims"] == [{"name": "batch", "lo": 1, "hi": 64}]
    assert manifest["inputs"] == [{"name": "x", "dtype": "f32", "shape": [64, 512],
                                   "dims": ["batch", 512]}]
    assert manifest["outputs"][0]["dims"] == ["batch", 512]
    assert manifest["flags"]["input_shapes"] == {"x": ["batch:1..64", 512]}
    header = (art / "src" / "model.h").read_text()
    assert "#define mlp_dynamic_NUM_DIMS 1" in header and "context_run_shaped" in header
    decisions = [json.loads(line) for line in (art / "decisions.jsonl").read_text().splitlines()]
    kernels = [d for d in decisions if d["action"] == "select_kernel"]
    assert len(kernels) == 3 and all(d["after"] == "matmul_packed_const_rows" for d in kernels)
    assert all("reads the symbolic dims (batch) at run time" in d["reason"] for d in kernels)
    sizes = [d["reason"] for d in decisions if d["action"] == "symbolic_sizes"]
    # balanced: run-time offsets in an arena allocated once for the upper bounds
    assert sizes and "batch 1..64" in sizes[0] and "offsets computed at run time" in sizes[0]
    assert "allocated once for the upper bounds" in sizes[0]


def test_two_builds_are_byte_identical(built: tuple[Path, Path], tmp_path: Path) -> None:
    model_path, art = built
    shapes, _ = parse_input_shapes([SHAPE])
    again = pyc_cli.build(model_path, tmp_path / "again", input_shapes=shapes).artifact
    first = json.loads((art / "manifest.json").read_text())["files"]
    assert json.loads((again / "manifest.json").read_text())["files"] == first


def test_latency_first_and_memory_first_plans_hold_every_shape(tmp_path: Path) -> None:
    """The other modes' plans (latency_first: fixed offsets; memory_first: run-time offsets in
    an arena grown on demand) on a smaller MLP."""
    model_path = mlp(tmp_path, sizes=(32, 96, 48, 16), seed=4)
    shapes, _ = parse_input_shapes(["x=batch:1..40,32"])
    rng = np.random.default_rng(4)
    for mode in ("latency_first", "memory_first"):
        art = pyc_cli.build(model_path, tmp_path / mode, mode=mode, input_shapes=shapes).artifact
        with pyc_cli.load(art) as model:
            for batch in (1, 7, 40):
                x = rng.standard_normal((batch, 32)).astype(np.float32)
                np.testing.assert_allclose(model.run({"x": x})["y"],
                                           onnxruntime_outputs(model_path, {"x": x})["y"],
                                           rtol=RTOL, atol=ATOL)


def test_the_command_line_builds_and_runs_any_batch(tmp_path: Path) -> None:
    model_path = mlp(tmp_path, sizes=(512, 256, 512), seed=2)
    art = tmp_path / "cli.pyc"
    code, output = invoke("build", str(model_path), "-o", str(art), "--input-shape", SHAPE)
    assert code == 0, output
    rng = np.random.default_rng(2)
    for batch in (1, 64, 33):
        x = rng.standard_normal((batch, 512)).astype(np.float32)
        np.savez(tmp_path / "in.npz", x=x)
        code, output = invoke("run", str(art), "--inputs", str(tmp_path / "in.npz"),
                              "--compare", "ort", "--output", str(tmp_path / "out.npz"))
        assert code == 0, output
        assert f"y: float32[{batch}, 512]" in output and "within tolerance" in output
        y = np.load(tmp_path / "out.npz")["y"]
        np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"],
                                   rtol=RTOL, atol=ATOL)
    np.savez(tmp_path / "bad.npz", x=np.ones((65, 512), np.float32))
    code, output = invoke("run", str(art), "--inputs", str(tmp_path / "bad.npz"))
    assert code != 0 and "PYC-E041" in output and "outside its bounds 1..64" in output
    assert "Traceback" not in output



def test_the_c_abi_runs_shaped_inputs(built: tuple[Path, Path], tmp_path: Path) -> None:
    """tests/c/shaped_driver.c, compiled with the artifact's C as the build compiled it, runs
    NAME_context_run_shaped at several batches (outputs poisoned first) and refuses 65."""
    model_path, art = built
    exe = compile_driver(art, "shaped_driver.c", tmp_path / "driver")
    rng = np.random.default_rng(3)
    weights = str(art / "weights.bin")
    for batch in (1, 17, 64):
        x = rng.standard_normal((batch, 512)).astype(np.float32)
        x.tofile(tmp_path / "x.bin")
        ran = subprocess.run([str(exe), weights, str(tmp_path / "x.bin"), str(tmp_path / "y.bin"),
                              str(batch), "512"], capture_output=True, text=True, check=False)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "dim batch 1..64" in ran.stdout and "axis 0 takes dim 0" in ran.stdout
        assert "axis 1 takes dim -1" in ran.stdout and f"output {batch} 512" in ran.stdout
        y = np.fromfile(tmp_path / "y.bin", np.float32).reshape(batch, 512)
        np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"],
                                   rtol=RTOL, atol=ATOL)
    np.ones((65, 512), np.float32).tofile(tmp_path / "x.bin")
    ran = subprocess.run([str(exe), weights, str(tmp_path / "x.bin"), str(tmp_path / "y.bin"),
                          "65", "512"], capture_output=True, text=True, check=False)
    assert ran.returncode == 3 and "status 6: an input shape is outside" in ran.stdout


def test_explain_shows_the_dims_and_bounds(built: tuple[Path, Path]) -> None:
    code, output = invoke("explain", str(built[1]))
    assert code == 0, output
    assert "inputs: x f32[batch, 512]" in output and "outputs: y f32[batch, 512]" in output
    assert "symbolic dims: batch 1..64" in output
    code, output = invoke("explain", str(built[1]), "--json")
    assert code == 0 and json.loads(output)["dims"] == [{"name": "batch", "lo": 1, "hi": 64}]


def test_a_cached_build_of_a_symbolic_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """The build cache reads the model.ir of a hit back (its `dim` lines bound the names)."""
    from pyc_cli import build_cache

    monkeypatch.setenv(build_cache.ENV, str(tmp_path / "cache"))
    model_path = mlp(tmp_path, sizes=(16, 8), seed=5)
    shapes, _ = parse_input_shapes(["x=batch:1..4,16"])
    first = pyc_cli.build(model_path, tmp_path / "a", input_shapes=shapes, cache=True)
    second = pyc_cli.build(model_path, tmp_path / "b", input_shapes=shapes, cache=True)
    assert not first.cached and second.cached
    assert [n.name for n in second.graph.nodes] == [n.name for n in first.graph.nodes]
    x = np.random.default_rng(5).standard_normal((3, 16)).astype(np.float32)
    with pyc_cli.load(second.artifact) as model:
        np.testing.assert_allclose(model.run({"x": x})["y"],
                                   onnxruntime_outputs(model_path, {"x": x})["y"],
                                   rtol=RTOL, atol=ATOL)


def test_a_wrong_dtype_names_the_dims(built: tuple[Path, Path]) -> None:
    with pyc_cli.load(built[1]) as model, pytest.raises(PycError) as info:
        model.run({"x": np.ones((3, 512), np.float64)})
    assert info.value.code == "E041" and "the model needs float32['batch', 512]" in info.value.what


def test_profile_and_per_node_run_at_the_upper_bounds(tmp_path: Path) -> None:
    """Their debug builds' run functions take no shapes: at the upper bounds they work, at
    another shape they refuse (PYC-E050) instead of reading past the caller's buffers."""
    model_path = mlp(tmp_path, sizes=(32, 48, 16), seed=6)
    art = tmp_path / "small.pyc"
    assert invoke("build", str(model_path), "-o", str(art), "--input-shape",
                  "x=batch:1..8,32")[0] == 0
    code, output = invoke("run", str(art), "--random-inputs", "3", "--compare", "ort",
                          "--per-node")
    assert code == 0 and "every compared intermediate is within tolerance" in output, output
    code, output = invoke("run", str(art), "--random-inputs", "3", "--profile", "--repeat", "2")
    assert code == 0 and "matmul_packed_const_rows" in output, output
    np.savez(tmp_path / "in.npz", x=np.ones((3, 32), np.float32))
    code, output = invoke("run", str(art), "--inputs", str(tmp_path / "in.npz"), "--profile")
    assert code != 0 and "PYC-E050" in output and "upper bounds only" in output


def test_the_python_api_takes_bounded_dims_as_text(tmp_path: Path) -> None:
    """`input_shapes={"x": ("batch:1..8", 32)}` is `--input-shape x=batch:1..8,32`."""
    model_path = mlp(tmp_path, sizes=(32, 24), seed=7)
    art = pyc_cli.build(model_path, tmp_path / "art",
                        input_shapes={"x": ("batch:1..8", 32)}).artifact
    assert json.loads((art / "manifest.json").read_text())["dims"] == [
        {"name": "batch", "lo": 1, "hi": 8}]
    x = np.random.default_rng(7).standard_normal((6, 32)).astype(np.float32)
    with pyc_cli.load(art) as model:
        np.testing.assert_allclose(model.run({"x": x})["y"],
                                   onnxruntime_outputs(model_path, {"x": x})["y"],
                                   rtol=RTOL, atol=ATOL)
    with pytest.raises(PycError) as info:
        pyc_cli.build(model_path, tmp_path / "bad", input_shapes={"x": ("batch", 32)})
    assert info.value.code == "E006" and "no bounds" in info.value.what


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_the_generated_c_is_strict_c11(built: tuple[Path, Path], compiler: str) -> None:
    assert_strict_c11(compiler, built[1])


def test_the_unshaped_entry_point_runs_at_the_upper_bounds(built: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    """tests/c/io_driver.c, written for static models (NAME_run, io_bytes-sized buffers), runs
    a symbolic model at its upper bounds."""
    model_path, art = built
    exe = compile_driver(art, "io_driver.c", tmp_path / "io_driver")
    x = np.random.default_rng(9).standard_normal((64, 512)).astype(np.float32)
    x.tofile(tmp_path / "x.bin")
    subprocess.run([str(exe), str(art / "weights.bin"), str(tmp_path / "x.bin"),
                    str(tmp_path / "y.bin")], check=True)
    y = np.fromfile(tmp_path / "y.bin", np.float32).reshape(64, 512)
    np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"],
                               rtol=RTOL, atol=ATOL)
