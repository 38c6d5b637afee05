"""Sizes known at run time only on the CUDA target (issues #14, #15), without a GPU: the models of
dims_cases.py (NonZero feeding a Transpose, a fused elementwise program and a reduction; TopK
with K from an input; Tile with repeats and Range with a count computed from input values; Slice
with run-time starts and ends over a symbolic batch; NonZero over a symbolic batch; an MLP over
a symbolic batch; Range and a Reshape to an input's declared values, value dims read from the
input's data before the run, the Reshape's element count checked then) built with NVRTC and run
through runtime/cuda.py over the emulated driver (cuda_emulation.FakeDriver: the artifact's
kernels compiled for the CPU).

The run-time dims live in device memory (launches.json's `dims`, after the status words): the
runtime sets them before a run (input dims from the shapes, value dims from the inputs' data,
what the entry steps compute from them, the rest at their upper bounds), the kernels that
compute a size write it there, every later kernel reads its sizes there (grids sized for the
upper bounds), and the runtime reads them back to return each output at its actual shape.
Checked: shapes and values against onnxruntime on fresh random inputs (integers exactly, float32
rtol 1e-5 / atol 1e-6, the MLP rtol 1e-4 / atol 1e-5), sizes of 0 and at their bound among them,
device outputs and arena poisoned (NaN) before every run, host output buffers poisoned too, CUDA
graphs on and off (bitwise alike: one graph captured at load, replayed by every run), a size
past its bound refused with PYC-E041 as on the CPU target (and the model running on afterwards),
the kernel each op runs in the build's decision log, NVRTC for sm_90 and sm_80, the C entry
point (strict C11; run over fake_libcuda.c: outputs and their shapes from
NAME_cuda_output_shape), and static models unchanged (no dims region)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_MODELS, onnxruntime_outputs
from cuda_emulation import CXX, FakeDriver, compile_kernels
from dims_cases import CASES, DimsCase
from test_cuda_c_api import INCLUDE, strict_c11_errors
from test_cuda_runtime_emulated import fake_for, use

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.targets.cuda import bindings
from tests.dynamic.checks import poison_outputs

pytestmark = [
    pytest.mark.skipif(not bindings.available(),
                       reason='the NVRTC wheel is not installed (pip install ".[cuda]")'),
    pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")]


def build(case: DimsCase, tmp_path: Path, arch: str = "sm_90") -> tuple[Path, Path]:
    folder = tmp_path / f"{case.name}_{arch}"
    folder.mkdir()
    path = case.make(folder)
    artifact = folder / "art.pyc"
    pyc_cli.build(path, artifact, target="cuda", arch=arch, input_shapes=case.input_shapes,
                  input_values=case.input_values)
    return path, artifact


def emulate(artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDriver:
    return use(monkeypatch, fake_for(artifact, tmp_path))


def tolerance(case: DimsCase) -> tuple[float, float]:
    return (1e-4, 1e-5) if case.name.startswith(("mlp", "rows")) else (1e-5, 1e-6)


def check_outputs(case: DimsCase, ours: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                  what: str) -> None:
    rtol, atol = tolerance(case)
    for name, value in expected.items():
        assert ours[name].shape == value.shape, (what, name, ours[name].shape, value.shape)
        if value.dtype.kind in "iub":
            np.testing.assert_array_equal(ours[name], value, err_msg=f"{what} {name}")
        else:
            np.testing.assert_allclose(ours[name], value, rtol=rtol, atol=atol,
                                       err_msg=f"{what} {name}")


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # NaN-poisoned int64
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_runs_match_onnxruntime_graphs_on_and_off(case: DimsCase, tmp_path: Path,
                                                   rng: np.random.Generator,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    poison_outputs(monkeypatch)
    path, artifact = build(case, tmp_path)
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert plan["dims"]["count"] == len(manifest["dims"]) and plan["dims"]["at"] % 8 == 0
    # the decision log names each op's kernel, which reads (or computes) sizes at run time
    decisions = [json.loads(line) for line in
                 (artifact / "decisions.jsonl").read_text().splitlines()]
    chosen = {d["nodes"][0]: d for d in decisions if d["action"] == "select_kernel"}
    ir = (artifact / "model.ir").read_text()
    for op, kernel in case.kernels.items():
        picks = [d for d in chosen.values() if d["after"] == kernel]
        assert picks, (op, kernel, sorted({d["after"] for d in chosen.values()}))
        assert all("at run time" in d["reason"] for d in picks), picks[0]["reason"]
        assert f"{op}" in ir
    # fixed offsets in the default mode (balanced: run-time offsets on the CPU), the arena
    # sized for the upper bounds
    (sizes,) = [d for d in decisions if d["action"] == "symbolic_sizes"]
    assert sizes["reason"].startswith("fixed offsets"), sizes["reason"]
    assert "runtime_offsets" not in json.loads((artifact / "memory_plan.json").read_text())
    source = (artifact / "src" / "model.cu").read_text()
    assert "int64_t* __restrict__ dims" in source
    feeds_list = [feeds_for(rng) for feeds_for in case.runs]
    results: dict[str, list[dict[str, np.ndarray]]] = {}
    for graphs in ("1", "0"):
        monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
        fake = emulate(artifact, tmp_path, monkeypatch)
        results[graphs] = []
        with pyc_cli.load(artifact) as model:
            for index, feeds in enumerate(feeds_list):
                model.poison()
                ours = model.run(feeds)
                check_outputs(case, ours, onnxruntime_outputs(path, feeds), f"run {index}")
                results[graphs].append({k: v.copy() for k, v in ours.items()})
            for feeds_for in case.refused:  # a size past its bound: as on the CPU target
                with pytest.raises(PycError) as refused:
                    model.run(feeds_for(rng))
                assert refused.value.code == "E041", refused.value
                assert "refused" in refused.value.what
                model.poison()  # ... and the model runs on
                again = feeds_list[0]
                check_outputs(case, model.run(again), onnxruntime_outputs(path, again), "after")
        # every run replays the graph, but one refused on the host before it (a value dim
        # outside its declared values, an element count the entry checks)
        runs = len(feeds_list) + len(case.refused)
        if graphs == "1":  # one graph, captured at load, replayed by every run
            assert fake.calls["cuStreamBeginCapture"] == 1
            assert runs <= fake.graph_launches <= runs + len(case.refused)
        else:
            assert fake.calls["cuStreamBeginCapture"] == 0
        assert fake.memory == {} and fake.graphs == set()
    for graphed, streamed in zip(results["1"], results["0"]):
        for name, value in graphed.items():
            np.testing.assert_array_equal(value, streamed[name], err_msg=name)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_nvrtc_compiles_for_sm80(case: DimsCase, tmp_path: Path) -> None:
    """Every case's kernels (the generic kernel's CPU bodies over device dims, the parallel
    kernels over run-time sizes) compile for sm_80 too (sm_90: the test above)."""
    _, artifact = build(case, tmp_path, "sm_80")
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["cuda"]["arch"] == "sm_80" and (artifact / "model.cubin").stat().st_size > 0


def test_builds_are_deterministic(tmp_path: Path) -> None:
    """The same model and flags give byte-identical launch plans, sources, C entry points and
    manifests (the NonZero chain, the MLP over a symbolic batch)."""
    for case in (c for c in CASES if c.name in ("nonzero_chain", "mlp_batch")):
        files = []
        for run in range(2):
            folder = tmp_path / f"{case.name}{run}"
            folder.mkdir()
            _, artifact = build(case, folder)
            files.append({p.name: p.read_bytes() for p in
                          [*sorted((artifact / "src").iterdir()), artifact / "manifest.json"]})
        assert files[0] == files[1], case.name


def test_static_models_have_no_dims(tmp_path: Path) -> None:
    """A static model's plan and C entry point have no dims region nor output_shape."""
    case = REFERENCE_MODELS["mlp"]
    pyc_cli.build(case.path, tmp_path / "mlp.pyc", target="cuda", input_shapes=dict(case.shapes))
    plan = json.loads((tmp_path / "mlp.pyc" / "src" / "launches.json").read_text())
    assert "dims" not in plan
    header = next((tmp_path / "mlp.pyc" / "src").glob("*_cuda.h")).read_text()
    assert "output_shape" not in header and "SHAPE_OUT_OF_BOUNDS" not in header


FAKE_LIBCUDA = Path(__file__).resolve().parent / "fake_libcuda.c"
DRIVER = Path(__file__).resolve().parents[2] / "c" / "cuda_api_driver.c"


@pytest.mark.skipif(INCLUDE is None or shutil.which("gcc") is None,
                    reason="no gcc or cuda.h here (pip install '.[cuda]')")
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")
def test_the_c_entry_point_returns_the_computed_shapes(tmp_path: Path,
                                                       rng: np.random.Generator) -> None:
    """NAME_cuda.c of the NonZero chain, TopK with K from an input and Range to declared input
    values (a value dim the C entry point reads from the input), strict C11, run over
    fake_libcuda.c (the emulated kernels): each output dense at the shape NAME_cuda_output_shape
    gives, which matches onnxruntime's; a size past its bound (K past the axis, a count past
    its bound, a value outside its declared values, a Reshape's element count that differs)
    returns NAME_CUDA_ERROR_SHAPE_OUT_OF_BOUNDS."""
    for case in (c for c in CASES if c.name in ("nonzero_chain", "topk_k", "range_values",
                                                "reshape_values")):
        path, artifact = build(case, tmp_path)
        manifest = json.loads((artifact / "manifest.json").read_text())
        prefix = manifest["symbol_prefix"]
        header = (artifact / "src" / f"{prefix}_cuda.h").read_text()
        assert "_CUDA_ERROR_SHAPE_OUT_OF_BOUNDS = -5" in header and "_cuda_output_shape(" in header
        for compiler in ("gcc", "clang"):
            found = shutil.which(compiler)
            if found is None:
                continue
            errors = strict_c11_errors(found, artifact, prefix, tmp_path)
            assert errors is None, (compiler, errors)
        lib = compile_kernels((artifact / "src" / "model.cu").read_text(), tmp_path)
        plan = json.loads((artifact / "src" / "launches.json").read_text())
        exe = tmp_path / f"driver_{case.name}"
        ranks = ", ".join(str(len(spec["shape"])) for spec in manifest["outputs"])
        built = subprocess.run(
            ["gcc", "-std=c11", "-O1", f"-DPYC_NAME={prefix}", f'-DPYC_HEADER="{prefix}_cuda.h"',
             f"-DPYC_OUTPUT_RANKS={{{ranks}}}",
             "-I", str(artifact / "src"), "-isystem", str(INCLUDE),
             str(artifact / "src" / f"{prefix}_cuda.c"), str(DRIVER), str(FAKE_LIBCUDA), "-ldl",
             "-o", str(exe)], capture_output=True, text=True, check=False)
        assert built.returncode == 0, built.stderr[-3000:]
        env = {"PYC_EMU_KERNELS": lib._name,
               "PYC_EMU_ARGS": ",".join(f"{s['kernel']}={len(s['args'])}" for s in plan["launches"])}
        runs = [(f, False) for f in case.runs] + [(f, True) for f in case.refused]
        for feeds_for, refused in runs:
            feeds = feeds_for(rng)
            (tmp_path / "in.bin").write_bytes(b"".join(
                np.ascontiguousarray(feeds[s["name"]]).tobytes() for s in manifest["inputs"]))
            result = subprocess.run([str(exe), str(artifact), str(tmp_path / "in.bin"),
                                     str(tmp_path / "out.bin"), "2"], capture_output=True,
                                    text=True, check=False, env=env)
            if refused:
                assert result.returncode == 1 and "status -5" in result.stdout, result.stdout
                continue
            assert result.returncode == 0, result.stdout + result.stderr
            shapes = {int(line.split()[1]): tuple(int(n) for n in line.split()[2:])
                      for line in result.stdout.splitlines() if line.startswith("shape ")}
            raw, offset = (tmp_path / "out.bin").read_bytes(), 0
            for index, spec in enumerate(manifest["outputs"]):
                dtype = np.dtype({"f32": np.float32, "i64": np.int64}[spec["dtype"]])
                count = int(np.prod(spec["shape"], dtype=np.int64))
                whole = np.frombuffer(raw[offset:offset + count * dtype.itemsize], dtype)
                offset += count * dtype.itemsize
                shape = shapes[index]
                ours = whole[:int(np.prod(shape, dtype=np.int64))].reshape(shape)
                check_outputs(case, {spec["name"]: ours},
                              {spec["name"]: onnxruntime_outputs(path, feeds)[spec["name"]]},
                              "C entry point")
