"""The CUDA artifact's C entry point (src/NAME_cuda.h, NAME_cuda.c; codegen_templates/cuda/c_api.*):
the launch plan compiled into tables, strict C11 under gcc and clang against cuda.h (from the
nvidia-cuda-runtime wheel of the cuda extra, or a CUDA toolkit; skipped where neither is), and,
on a GPU, tests/c/cuda_api_driver.c linked with libcuda running the reference models: outputs
bitwise those of the Python runtime (same kernels, same order) and within tolerance of
onnxruntime, repeated runs alike, an out-of-range Gather index reported as the index status."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_MODELS, onnxruntime_outputs

import pyc_cli
from pyc_cli.targets.cuda import bindings

REPO = Path(__file__).resolve().parents[3]


def cuda_include() -> Path | None:
    """A folder holding cuda.h: the nvidia-cuda-runtime wheel's, else a toolkit's."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    folders = [Path(p) / "cu13" / "include" for p in (spec.submodule_search_locations or [])] \
        if spec else []
    folders += [Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"]
    return next((f for f in folders if (f / "cuda.h").is_file()), None)


def libcuda() -> str | None:
    """The driver library's path (libcuda.so.1), or None where no driver is installed."""
    found = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        listing = subprocess.run([found, "-p"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    paths = [line.split("=>")[-1].strip() for line in listing.splitlines()
             if line.strip().startswith("libcuda.so.1 ")]
    return paths[0] if paths else None


INCLUDE = cuda_include()


def strict_c11_errors(compiler: str, artifact: Path, prefix: str, out: Path,
                      source: Path | None = None) -> str | None:
    """`compiler`'s complaints about a CUDA artifact's C entry point (or `source`, compiled
    beside it) as strict C11 with every warning an error, cuda.h from INCLUDE; None if clean."""
    source = source or artifact / "src" / f"{prefix}_cuda.c"
    result = subprocess.run(
        [compiler, "-std=c11", "-Wall", "-Wextra", "-pedantic", "-Werror", "-c",
         f"-DPYC_NAME={prefix}", f'-DPYC_HEADER="{prefix}_cuda.h"', "-I", str(artifact / "src"),
         "-isystem", str(INCLUDE), str(source), "-o", str(out / "x.o")],
        capture_output=True, text=True, check=False)
    return None if result.returncode == 0 else result.stderr[-3000:]
needs_header = pytest.mark.skipif(INCLUDE is None, reason="no cuda.h here: pip install "
                                  "'.[cuda]' (nvidia-cuda-runtime) or a CUDA toolkit")
needs_nvrtc = pytest.mark.skipif(not bindings.available(), reason="the cuda extra (NVRTC) is "
                                 "not installed")


def build(name: str, out: Path, arch: str = "sm_90") -> Path:
    model = REFERENCE_MODELS[name]
    pyc_cli.build(model.path, out, target="cuda", arch=arch, input_shapes=model.shapes)
    return out


@needs_nvrtc
def test_the_launch_plan_is_compiled_into_tables(tmp_path: Path) -> None:
    art = build("transformer", tmp_path / "t.pyc")
    manifest = json.loads((art / "manifest.json").read_text())
    prefix = manifest["symbol_prefix"]
    plan = json.loads((art / "src" / "launches.json").read_text())
    source = (art / "src" / f"{prefix}_cuda.c").read_text()
    header = (art / "src" / f"{prefix}_cuda.h").read_text()
    assert f"#define {prefix.upper()}_CUDA_ARENA_BYTES {manifest['arena_bytes']}u" in header
    assert f"#define {prefix.upper()}_CUDA_WEIGHTS_BYTES {manifest['weights']['bytes']}u" in header
    assert f"N_LAUNCHES {len(plan['launches'])}" in source
    assert f"N_ARGS {sum(len(launch['args']) for launch in plan['launches'])}" in source
    for launch in plan["launches"]:
        grid, block = ", ".join(map(str, launch["grid"])), ", ".join(map(str, launch["block"]))
        assert f'{{ "{launch["kernel"]}", {{ {grid} }}, {{ {block} }}, {launch["shared_bytes"]}u' \
            in source
    # the files are the artifact's: hashed by the manifest like every source
    assert f"src/{prefix}_cuda.c" in manifest["files"] and f"src/{prefix}_cuda.h" in manifest["files"]


@needs_nvrtc
@needs_header
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_the_c_entry_point_is_strict_c11(compiler: str, tmp_path: Path) -> None:
    found = shutil.which(compiler)
    if found is None:
        pytest.skip(f"{compiler} is not installed here")
    for name in ("mlp", "transformer"):
        art = build(name, tmp_path / f"{name}.pyc")
        prefix = json.loads((art / "manifest.json").read_text())["symbol_prefix"]
        for source in (art / "src" / f"{prefix}_cuda.c", REPO / "tests" / "c" / "cuda_api_driver.c"):
            errors = strict_c11_errors(found, art, prefix, tmp_path, source)
            assert errors is None, (name, source.name, errors)


def _gpu_arch() -> str | None:
    from test_cuda_gpu import ARCH

    return ARCH


def _driver(art: Path, tmp_path: Path, prefix: str) -> Path:
    library = libcuda()
    if INCLUDE is None or library is None or shutil.which("gcc") is None:
        pytest.fail("a GPU machine needs gcc, cuda.h and libcuda.so.1 for this test")
    exe = tmp_path / f"driver_{prefix}"
    subprocess.run(["gcc", "-std=c11", "-O2", f"-DPYC_NAME={prefix}",
                    f'-DPYC_HEADER="{prefix}_cuda.h"', "-I", str(art / "src"),
                    "-isystem", str(INCLUDE), str(art / "src" / f"{prefix}_cuda.c"),
                    str(REPO / "tests" / "c" / "cuda_api_driver.c"), library, "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return exe


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_the_c_entry_point_runs_the_model_on_the_gpu(name: str, tmp_path: Path,
                                                     rng: np.random.Generator) -> None:
    arch = _gpu_arch()
    if arch is None:
        pytest.skip("no NVIDIA GPU and driver here: the GPU tests run on a GPU machine")
    art = build(name, tmp_path / f"{name}.pyc", arch)
    manifest = json.loads((art / "manifest.json").read_text())
    prefix = manifest["symbol_prefix"]
    exe = _driver(art, tmp_path, prefix)
    model = REFERENCE_MODELS[name]
    feeds = model.random_feeds(rng)
    (tmp_path / "in.bin").write_bytes(b"".join(
        np.ascontiguousarray(feeds[spec["name"]]).tobytes() for spec in manifest["inputs"]))
    result = subprocess.run([str(exe), str(art), str(tmp_path / "in.bin"), str(tmp_path / "out.bin"),
                             "3"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "status 0" in result.stdout, result.stdout + result.stderr
    raw = (tmp_path / "out.bin").read_bytes()
    with pyc_cli.load(art) as loaded:
        python_outputs = loaded.run(feeds)
    expected = onnxruntime_outputs(model.path, feeds)
    offset = 0
    for spec in manifest["outputs"]:
        ours = python_outputs[spec["name"]]
        got = np.frombuffer(raw[offset:offset + ours.nbytes], ours.dtype).reshape(ours.shape)
        offset += ours.nbytes
        assert np.array_equal(got, ours), spec["name"]  # the Python runtime's bytes
        np.testing.assert_allclose(got, expected[spec["name"]], rtol=1e-3, atol=1e-4)
    assert offset == len(raw)
    if name == "transformer":  # an index past the vocabulary: the index status, no crash
        bad = dict(feeds, input_ids=np.full_like(feeds["input_ids"], 10**6))
        (tmp_path / "bad.bin").write_bytes(b"".join(
            np.ascontiguousarray(bad[spec["name"]]).tobytes() for spec in manifest["inputs"]))
        result = subprocess.run([str(exe), str(art), str(tmp_path / "bad.bin"),
                                 str(tmp_path / "bad_out.bin"), "1"], capture_output=True, text=True,
                                check=False)
        assert "status -3" in result.stdout, result.stdout + result.stderr
