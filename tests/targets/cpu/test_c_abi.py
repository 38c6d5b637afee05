"""The C ABI of artifacts: symbols prefixed by the model's name (`pyc build --name`), a SONAME per
model, several models linked into one C program (the README's example, run line by line), and
one model run from many pthreads under ThreadSanitizer."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_MODELS, onnxruntime_outputs

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.targets.abi_name import default_name
from pyc_cli.targets.cpu.target import OPENMP_FLAG, OPENMP_RUNTIMES

REPO = Path(__file__).resolve().parents[3]
RTOL, ATOL = 1e-4, 1e-5
LSTM = REPO / "tests" / "models" / "lstm.onnx"


def _readme_c_example() -> list[str]:
    """The shell lines of README.md between the c-example markers."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- c-example:begin -->\n```sh\n(.*?)```\n<!-- c-example:end -->",
                      readme, re.S)
    assert block, "README.md has no c-example block"
    return block.group(1).strip().splitlines()


def _pyc_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose `pyc` runs this checkout's CLI (as an installed `pyc` would)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pyc"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pyc_cli.cli.main "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def test_readme_c_example_links_three_models(tmp_path: Path) -> None:
    """The README's commands, verbatim, from a directory that looks like the repository root:
    three artifacts, each library installed under its SONAME, one program linking all three.
    Each model's output must equal the Python runner's (bitwise) and onnxruntime's."""
    work = tmp_path / "root"
    work.mkdir()
    for part in ("tests", "examples"):
        (work / part).symlink_to(REPO / part)
    env = _pyc_on_path(tmp_path)
    for line in _readme_c_example():
        result = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True,
                                text=True, check=False)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
    build = work / "build"
    assert result.stdout.splitlines()[0].startswith("mlp: x -> logits, 2 dims")
    needed = subprocess.run(["readelf", "-d", str(build / "three_models")], capture_output=True,
                            text=True, check=True).stdout
    for name in ("mlp", "cnn", "lstm"):
        assert f"[lib{name}.so]" in needed
    sources = {"mlp": REFERENCE_MODELS["mlp"].path, "cnn": REFERENCE_MODELS["cnn"].path,
               "lstm": LSTM}
    for name, source in sources.items():
        with pyc_cli.load(build / f"{name}.pyc") as model:
            (spec,), (out,) = model.inputs, model.outputs
            feeds = {spec.name: np.fromfile(build / f"{name}.input.bin",
                                            spec.dtype).reshape(spec.shape)}
            assert np.abs(feeds[spec.name]).max() > 0.5  # fresh non-zero values were fed
            from_c = np.fromfile(build / f"{name}.output.bin", out.dtype).reshape(out.shape)
            np.testing.assert_array_equal(from_c, model.run(feeds)[out.name])
        expected = onnxruntime_outputs(source, feeds)[out.name]
        np.testing.assert_allclose(from_c, expected, rtol=RTOL, atol=ATOL)


def test_symbols_are_prefixed_and_the_soname_names_the_model(tmp_path: Path) -> None:
    ref = REFERENCE_MODELS["mlp"]
    art = pyc_cli.build(ref.path, tmp_path / "art", input_shapes=ref.shapes,
                        name="ocr_det").artifact
    manifest = json.loads((art / "manifest.json").read_text())
    assert (manifest["symbol_prefix"], manifest["soname"]) == ("ocr_det", "libocr_det.so")
    assert manifest["flags"]["name"] == "ocr_det"
    dynamic = subprocess.run(["readelf", "-d", "--dyn-syms", "-W", str(art / "libmodel.so")],
                             capture_output=True, text=True, check=True).stdout
    assert "Library soname: [libocr_det.so]" in dynamic
    exported = {line.split()[-1] for line in dynamic.splitlines()
                if " FUNC " in line and " GLOBAL " in line and " UND " not in line}
    assert exported == {f"ocr_det_{s}" for s in (
        "create", "run", "destroy", "context_create", "context_run", "context_destroy",
        "status_string", "io_name", "io_dtype", "io_rank", "io_shape", "io_bytes")
    } | {"pyc_status_string"}
    header = (art / "src" / "model.h").read_text()
    assert "#ifndef ocr_det_MODEL_H" in header and "#define ocr_det_NUM_INPUTS 1" in header
    with pyc_cli.load(art) as model:  # the loader binds the recorded prefix
        x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
        np.testing.assert_allclose(model.run({"x": x})["logits"],
                                   onnxruntime_outputs(ref.path, {"x": x})["logits"],
                                   rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("file_name", "expected"), [
    ("mlp.onnx", "mlp"), ("ocr-det.v2.onnx", "ocr_det_v2"), ("3d_unet.onnx", "m_3d_unet"),
    ("_x.onnx", "m__x"), ("pyc.onnx", "m_pyc"), ("pyc_tool.onnx", "m_pyc_tool"),
    ("modèle.onnx", "mod_le"), ("x" * 80 + ".onnx", "x" * 62),
])
def test_default_name_is_a_valid_identifier_from_the_file_name(file_name: str,
                                                              expected: str) -> None:
    assert default_name(Path("dir") / file_name) == expected


@pytest.mark.parametrize("bad", ["9lives", "ocr-det", "a b", "", "_hidden", "pyc", "pyc_x",
                                 "x" * 65, "naïve", "a;b"])
def test_bad_name_is_refused_with_e013_before_compiling(bad: str, tmp_path: Path) -> None:
    with pytest.raises(PycError) as info:
        pyc_cli.build(REFERENCE_MODELS["mlp"].path, tmp_path / "art",
                      input_shapes=REFERENCE_MODELS["mlp"].shapes, name=bad)
    assert info.value.code == "E013" and "--name" in info.value.hint
    assert not (tmp_path / "art").exists()


def test_bad_name_on_the_command_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pyc_cli.cli.main", "build",
                             str(REFERENCE_MODELS["mlp"].path), "--input-shape", "x=1,64",
                             "--name", "ocr-det", "-o", str(tmp_path / "art")],
                            capture_output=True, text=True, check=False, env=_pyc_on_path(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("PYC-E013: --name 'ocr-det'")
    assert "what to do: use e.g. --name ocr_det" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_compile_cache_keys_on_the_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """Two names of one model: different symbols and SONAME, so no shared cache entry."""
    monkeypatch.setenv("PYC_COMPILE_CACHE", str(tmp_path / "cache"))
    ref = REFERENCE_MODELS["mlp"]
    for name in ("first", "second"):
        pyc_cli.build(ref.path, tmp_path / name, input_shapes=ref.shapes, name=name)
    assert len(list((tmp_path / "cache").iterdir())) == 2
    for name in ("first", "second"):
        soname = subprocess.run(["readelf", "-d", str(tmp_path / name / "libmodel.so")],
                                capture_output=True, text=True, check=True).stdout
        assert f"[lib{name}.so]" in soname


# ---------------------------------------------------------------- ThreadSanitizer


def _tsan_works(compiler: str, tmp_path: Path) -> str:
    """'' if `compiler` builds and runs a -fsanitize=thread program here, else why not."""
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    built = subprocess.run([compiler, "-fsanitize=thread", "-o", str(tmp_path / "probe"),
                            str(probe)], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        return f"{compiler} cannot build with -fsanitize=thread: {built.stderr.strip()[:200]}"
    ran = subprocess.run([str(tmp_path / "probe")], capture_output=True, text=True, check=False)
    return "" if ran.returncode == 0 else f"TSan programs do not run here: {ran.stderr[:200]}"


def _tsan_driver(art: Path, tmp_path: Path) -> Path:
    """tests/c/threads_driver.c linked with the artifact's C sources, built as the artifact was
    (its recorded flags) plus -fsanitize=thread."""
    manifest = json.loads((art / "manifest.json").read_text())
    compiler = shutil.which("gcc") or shutil.which("cc")
    assert compiler
    reason = _tsan_works(compiler, tmp_path)
    if reason:
        pytest.skip(reason)
    exe = tmp_path / f"driver_{manifest['symbol_prefix']}"
    # without OpenMP: libgomp is not built for TSan, so its own barriers read as races; what
    # is checked here is that contexts share nothing, whatever a run does inside (threads
    # inside a run: tests/targets/cpu/test_intra_op_threads.py)
    flags = [f for f in manifest["toolchain"]["flags"] if f != OPENMP_FLAG]
    libraries = [lib for lib in manifest["toolchain"]["libraries"]
                 if lib not in OPENMP_RUNTIMES.values()]
    subprocess.run([compiler, *flags, "-g", "-fsanitize=thread",
                    f"-DPYC_NAME={manifest['symbol_prefix']}", "-I", str(art / "src"),
                    str(art / "src" / "model.c"), str(art / "src" / "pyc_runtime.c"),
                    str(REPO / "tests" / "c" / "threads_driver.c"), "-o", str(exe),
                    *libraries, "-pthread"], check=True)
    return exe


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_contexts_run_concurrently_without_races_under_tsan(name: str, tmp_path: Path) -> None:
    """Six pthreads, each with its own context of one model and its own inputs: TSan reports
    nothing and every result equals the single-threaded one byte for byte. The same driver
    calling the shared NAME_run from every thread (what the contract forbids) is reported, so
    the sanitizer does see the arena."""
    ref = REFERENCE_MODELS[name]
    art = pyc_cli.build(ref.path, tmp_path / "art", input_shapes=ref.shapes).artifact
    exe = _tsan_driver(art, tmp_path)
    weights = str(art / "weights.bin")
    # every report is shown for the clean run; the racy run stops at its first report (it
    # would otherwise report every racing load and store of every kernel, for minutes)
    clean = subprocess.run([str(exe), weights, "contexts", "6", "3"], capture_output=True,
                           text=True, check=False,
                           env={**os.environ, "TSAN_OPTIONS": "halt_on_error=0 exitcode=66"})
    assert "ThreadSanitizer" not in clean.stderr, clean.stderr[:3000]
    assert clean.returncode == 0 and clean.stdout.strip() == "mismatches 0", clean.stderr
    shared = subprocess.run([str(exe), weights, "shared", "6", "3"], capture_output=True,
                            text=True, check=False,
                            env={**os.environ, "TSAN_OPTIONS": "halt_on_error=1 exitcode=66"})
    assert shared.returncode == 66
    assert "WARNING: ThreadSanitizer: data race" in shared.stderr


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_runs_inside_the_callers_openmp_team(name: str, tmp_path: Path) -> None:
    """Four threads of the caller's own OpenMP team, each running its own context of a model
    built for 2 threads: each run stays on its thread (no team inside a team), ends (a run's
    loops wait for their own tasks only), and gives byte for byte what one run alone gives."""
    ref = REFERENCE_MODELS[name]
    art = pyc_cli.build(ref.path, tmp_path / "art", input_shapes=ref.shapes, threads=2).artifact
    manifest = json.loads((art / "manifest.json").read_text())
    if OPENMP_FLAG not in manifest["toolchain"]["flags"]:
        pytest.skip("the toolchain has no OpenMP")
    compiler = shutil.which("gcc") or shutil.which("cc")
    assert compiler
    exe = tmp_path / "driver"
    subprocess.run([compiler, *manifest["toolchain"]["flags"],
                    f"-DPYC_NAME={manifest['symbol_prefix']}", "-I", str(art / "src"),
                    str(art / "src" / "model.c"), str(art / "src" / "pyc_runtime.c"),
                    str(REPO / "tests" / "c" / "threads_driver.c"), "-o", str(exe),
                    *manifest["toolchain"]["libraries"], "-pthread"], check=True)
    done = subprocess.run([str(exe), str(art / "weights.bin"), "omp", "4", "5"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "mismatches 0", done.stderr


@pytest.mark.parametrize(("prefix", "code"), [("x; rm -rf", "E030"), ("pyc", "E030"),
                                              ("other_model", "E031")])
def test_the_loader_binds_only_the_recorded_valid_prefix(prefix: str, code: str,
                                                         tmp_path: Path) -> None:
    """An edited symbol_prefix (not hashed) is checked before the library loads, and a valid
    one the library does not export is refused, not bound to something else."""
    ref = REFERENCE_MODELS["mlp"]
    art = pyc_cli.build(ref.path, tmp_path / "art", input_shapes=ref.shapes).artifact
    manifest_path = art / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["symbol_prefix"] = prefix
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(PycError) as info:
        pyc_cli.load(art)
    assert info.value.code == code
    assert ("symbol_prefix" in info.value.what if prefix != "other_model"
            else "other_model_create" in info.value.what)


def test_artifacts_of_the_previous_format_are_refused(tmp_path: Path) -> None:
    """Format 1 exported unprefixed pyc_model_* symbols; format 2's model.ir kept kernel
    choices among the ONNX attributes (explain would read no kernel); format 3 knew no
    transformed weights: rebuild, do not guess."""
    ref = REFERENCE_MODELS["mlp"]
    art = pyc_cli.build(ref.path, tmp_path / "art", input_shapes=ref.shapes).artifact
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["format_version"] == 4
    for old in (1, 2, 3):
        manifest["format_version"] = old
        (art / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(PycError) as info:
            pyc_cli.load(art)
        assert info.value.code == "E032" and "rebuild" in info.value.hint
