"""A run-time If on the CUDA target (issues #14, #15), without a GPU: the models of if_cases.py
built with NVRTC (sm_90 and sm_80, fp32 and fp16) and run through runtime/cuda.py over the
emulated driver (cuda_emulation.FakeDriver: the artifact's kernels compiled for the CPU).

The runtime splits a run at each host decision: the launches before the first guarded one,
then the condition's byte copied to pinned host memory and waited for, then the taken branch's
launches and the rest (a nested If splits again); with CUDA graphs each segment is a graph of
its own, captured on first use. Checked: outputs against onnxruntime on fresh random inputs for
every outcome (rtol/atol 1e-4 at fp32; 2e-2 at fp16, where gather_or_scale and nested store
activations in 16 bits), device outputs and arena poisoned (NaN) before each run, graphs on
and off (bitwise alike), only the taken branch's kernels launched (the Gather of
gather_or_scale would set the index status if it ran on the other branch's inputs), an
unreachable branch stopping the run with PYC-E053 as on the CPU, a model without an If keeping
exactly one graph, and the C entry point's tables, strict C11 compilation, and runs in
emulation over fake_libcuda.c."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import REFERENCE_MODELS, onnxruntime_outputs
from cuda_emulation import CXX, FakeDriver, compile_kernels
from if_cases import CASE, IF_CASES, Feeds, IfCase
from test_cuda_c_api import INCLUDE, strict_c11_errors
from test_cuda_runtime_emulated import fake_for, use

import pyc_cli
from pyc_cli.errors import PycError, PycWarning
from pyc_cli.runtime import cuda as cuda_runtime
from pyc_cli.targets.cuda import bindings
from tests.dynamic.checks import poison_outputs
from tests.dynamic.test_if_outputs import _branches_of_different_widths
from tests.dynamic.test_unreachable_branch import SILERO

pytestmark = [
    pytest.mark.skipif(not bindings.available(),
                       reason='the NVRTC wheel is not installed (pip install ".[cuda]")'),
    pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")]

ORT_ERRORS = ort.capi.onnxruntime_pybind11_state
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}  # rtol and atol


def build(case: IfCase, tmp_path: Path, rng: np.random.Generator, precision: str = "fp32",
          arch: str = "sm_90") -> tuple[Path, Path]:
    folder = tmp_path / f"{case.name}_{precision}_{arch}"
    folder.mkdir()
    path = case.make(folder, rng)
    artifact = folder / "art.pyc"
    pyc_cli.build(path, artifact, target="cuda", arch=arch, precision=precision,
                  input_shapes=case.shapes or None)
    return path, artifact


def emulate(artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDriver:
    return use(monkeypatch, fake_for(artifact, tmp_path))


def launch_ops(artifact: Path, path: tuple[int, ...]) -> list[str]:
    launches = json.loads((artifact / "src" / "launches.json").read_text())["launches"]
    return [launches[i]["op"] for i in path]


class Run:
    """One run's outcome, outputs, the launches it took and how many segments it had."""

    def __init__(self, outcome: str, outputs: dict[str, np.ndarray], model: object) -> None:
        self.outcome, self.outputs = outcome, outputs
        self.path: tuple[int, ...] = model._path  # type: ignore[attr-defined]
        self.segments: int = model._run_segments  # type: ignore[attr-defined]


def outcome_feeds(case: IfCase, rng: np.random.Generator, rounds: int = 2) -> list[tuple[str, Feeds]]:
    """Fresh random feeds for each outcome, `rounds` times, interleaved."""
    return [(outcome, case.feeds(rng, outcome)) for _ in range(rounds) for outcome in case.outcomes]


def run_outcomes(case: IfCase, path: Path, artifact: Path, feeds_list: list[tuple[str, Feeds]],
                 precision: str) -> tuple[list[Run], int]:
    """Each (outcome, feeds) run (outputs and arena poisoned first), checked against
    onnxruntime; the runs, and how many distinct segments they took."""
    tol = TOLERANCE[precision]
    runs = []
    with pyc_cli.load(artifact) as model:
        for outcome, feeds in feeds_list:
            model.poison()
            ours = model.run(feeds)
            for name, value in onnxruntime_outputs(path, feeds).items():
                np.testing.assert_allclose(ours[name], value, rtol=tol, atol=tol,
                                           err_msg=f"{case.name} {outcome} {name}")
            runs.append(Run(outcome, ours, model))
        distinct = len(model._segments)
    return runs, distinct


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", [c for c in IF_CASES if not c.refused], ids=lambda c: c.name)
def test_runs_match_onnxruntime_graphs_on_and_off(case: IfCase, precision: str, tmp_path: Path,
                                                   rng: np.random.Generator,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    poison_outputs(monkeypatch)
    path, artifact = build(case, tmp_path, rng, precision)
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    assert plan["conditions"] and any("when" in launch for launch in plan["launches"])
    outputs = {}
    feeds_list = outcome_feeds(case, rng)
    for graphs in ("1", "0"):
        monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
        fake = emulate(artifact, tmp_path, monkeypatch)
        runs, distinct = run_outcomes(case, path, artifact, feeds_list, precision)
        assert fake.memory == {} and fake.graphs == set()  # every graph destroyed at close
        # each run launched only what its branches need: fewer kernels than the plan holds,
        # each outcome its own launches, one host decision per If on its way
        assert all(len(run.path) < len(plan["launches"]) for run in runs)
        assert fake.launches == sum(len(run.path) for run in runs)
        paths = {run.outcome: run.path for run in runs}
        assert len(set(paths.values())) == len(case.outcomes)
        for run in runs:
            assert run.segments == 1 + run.outcome.count("/") + 1
        for outcome, ops in case.ops.items():  # the other branch's own ops never launched
            others = {op for o, its in case.ops.items() if o != outcome for op in its} - set(ops)
            assert not others & set(launch_ops(artifact, paths[outcome])), outcome
        if graphs == "1":
            # a graph per segment, captured the first time a run takes it: every later run
            # replays graphs only, no kernel launched one by one
            assert fake.calls["cuStreamBeginCapture"] == distinct
            assert fake.graph_launches == sum(run.segments for run in runs)
            assert fake.calls["cuLaunchKernel"] < fake.launches
        else:
            assert fake.calls["cuStreamBeginCapture"] == 0 and fake.graph_launches == 0
            assert fake.calls["cuLaunchKernel"] == fake.launches
        outputs[graphs] = runs
    # replayed graphs and launches one by one: the same kernels in the same order, the same
    # bytes out
    for graphed, streamed in zip(outputs["1"], outputs["0"]):
        assert graphed.path == streamed.path
        for name, value in graphed.outputs.items():
            np.testing.assert_array_equal(value, streamed.outputs[name], err_msg=name)


@pytest.mark.parametrize("graphs", ["1", "0"])
@pytest.mark.parametrize("case", [c for c in IF_CASES if c.refused], ids=lambda c: c.name)
def test_an_unreachable_branch_stops_the_run_with_e053(case: IfCase, graphs: str, tmp_path: Path,
                                                       rng: np.random.Generator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Taking a branch that could not be compiled: PYC-E053 naming the If, the branch and the
    reason (the manifest's unreachable_branches, as on the CPU target); no kernel after the
    trap runs; onnxruntime fails on those inputs too; the model runs on afterwards."""
    poison_outputs(monkeypatch)
    monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
    path, artifact = build(case, tmp_path, rng)
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    traps = [i for i, launch in enumerate(plan["launches"]) if launch.get("stops")]
    assert len(traps) == len(case.refused)
    assert all(plan["launches"][i]["op"] == "pyc.Unreachable" for i in traps)
    manifest = json.loads((artifact / "manifest.json").read_text())
    branches = manifest["unreachable_branches"]
    session = ort.InferenceSession(str(path))
    fake = emulate(artifact, tmp_path, monkeypatch)
    with pyc_cli.load(artifact) as model:
        for _ in range(2):
            for outcome in (*case.refused, *case.outcomes):
                feeds = case.feeds(rng, outcome)
                model.poison()
                if outcome in case.outcomes:
                    expected = session.run(None, feeds)[0]
                    np.testing.assert_allclose(model.run(feeds)["y"], expected, rtol=1e-4,
                                               atol=1e-4, err_msg=outcome)
                    assert not set(traps) & set(model._path)
                    continue
                before = fake.launches
                with pytest.raises(PycError) as caught:
                    model.run(feeds)
                assert caught.value.code == "E053" and "MatMul" in caught.value.what
                for branch in branches:
                    assert f"If {branch['if']!r}, its {branch['branch']} branch" in caught.value.what
                assert model._path[-1] in traps  # the run ended at the trap
                assert fake.launches - before == len(model._path)
                with pytest.raises((ORT_ERRORS.Fail, ORT_ERRORS.InvalidArgument)):
                    session.run(None, feeds)


def test_a_model_without_an_if_keeps_one_graph(tmp_path: Path, rng: np.random.Generator,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """No run-time If: no conditions nor guards in the plan, one segment, one graph captured at
    load and replayed once per run, as before."""
    model_case = REFERENCE_MODELS["mlp"]
    artifact = tmp_path / "mlp.pyc"
    pyc_cli.build(model_case.path, artifact, target="cuda", input_shapes=dict(model_case.shapes))
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    assert "conditions" not in plan and not any("when" in s or "stops" in s for s in plan["launches"])
    fake = emulate(artifact, tmp_path, monkeypatch)
    with pyc_cli.load(artifact) as model:
        assert fake.calls["cuStreamBeginCapture"] == 1 and list(model._graphs) == ["run"]
        for _ in range(3):
            feeds = model_case.random_feeds(rng)
            ours = model.run(feeds)
            for key, value in onnxruntime_outputs(model_case.path, feeds).items():
                np.testing.assert_allclose(ours[key], value, rtol=1e-4, atol=1e-4, err_msg=key)
            assert model._run_segments == 1
        assert fake.calls["cuStreamBeginCapture"] == 1 and fake.graph_launches == 3
        assert fake.calls["cuLaunchKernel"] == len(plan["launches"])  # captured once
        assert fake.calls["cuStreamSynchronize"] == 3  # one a run: no host decision


@pytest.mark.parametrize("graphs", ["1", "0"])
def test_kernel_timing_times_the_branch_the_run_took(graphs: str, tmp_path: Path,
                                                     rng: np.random.Generator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASE["gather_or_scale"]
    monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
    _, artifact = build(case, tmp_path, rng)
    fake = emulate(artifact, tmp_path, monkeypatch)
    with pyc_cli.load(artifact) as model:
        for outcome in case.outcomes:
            before = fake.launches
            assert model.time_kernels(case.feeds(rng, outcome), 2, warmup=1) == [0.25] * 2
            taken = model._path
            # one run (its segments), then the taken launches 3 times
            assert fake.launches - before == 4 * len(taken)
            assert ("Gather" in launch_ops(artifact, taken)) == (outcome == "then")
        assert len(model.time_runs(case.feeds(rng, "else"), 2)) == 2


@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_nvrtc_compiles_every_case(arch: str, precision: str, tmp_path: Path,
                                   rng: np.random.Generator) -> None:
    """Each case builds (NVRTC compiles its model.cu to a CUBIN) for both architectures, with
    the select and trap kernels in it."""
    for case in IF_CASES:
        _, artifact = build(case, tmp_path, rng, precision, arch)
        source = (artifact / "src" / "model.cu").read_text()
        assert (artifact / "model.cubin").stat().st_size > 0
        manifest = json.loads((artifact / "manifest.json").read_text())
        assert manifest["cuda"]["arch"] == arch
        assert "_if(" in source
        assert ("*STATUS = 8;" in source) == bool(case.refused)


def test_launch_guards_are_checked_at_load(tmp_path: Path, rng: np.random.Generator) -> None:
    """A guard naming a condition the plan lacks, a condition outside the model's buffers, or
    a non-boolean trap flag is a malformed launch plan (PYC-E030)."""
    _, artifact = build(CASE["nested"], tmp_path, rng)
    manifest = json.loads((artifact / "manifest.json").read_text())
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    assert cuda_runtime._plan_problem(plan, manifest) == ""
    guarded = next(i for i, launch in enumerate(plan["launches"]) if "when" in launch)
    for change in ({"when": [[[len(plan["conditions"]), True]]]}, {"when": [[]]},
                   {"when": [[[0, 1]]]}, {"stops": 1}):
        bad = json.loads(json.dumps(plan))
        bad["launches"][guarded].update(change)
        assert f"launch {guarded} has an invalid guard" in cuda_runtime._plan_problem(bad, manifest)
    bad = json.loads(json.dumps(plan))
    bad["conditions"][0]["at"] = ["arena", manifest["arena_bytes"]]
    assert "condition lies outside" in cuda_runtime._plan_problem(bad, manifest)
    bad["conditions"][0]["at"] = ["status", 0]
    assert "condition lies outside" in cuda_runtime._plan_problem(bad, manifest)


def test_guard_decisions() -> None:
    """Three-valued guards: decided where the conditions read so far decide them."""
    holds, unread = cuda_runtime.guard_holds, cuda_runtime.unread
    when = [[[0, True], [1, False]], [[2, True]]]
    assert holds(None, {}) is True and holds([], {}) is False
    assert holds(when, {}) is None and unread(when, {}) == [0, 1, 2]
    assert holds(when, {0: False}) is None and unread(when, {0: False}) == [2]
    assert holds(when, {0: False, 2: False}) is False
    assert holds(when, {0: True, 1: False}) is True
    assert holds(when, {2: True}) is True


@pytest.mark.parametrize("symbolic", [False, True])
def test_branches_of_different_sizes(symbolic: bool, tmp_path: Path, rng: np.random.Generator,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A dim the If computes at run time (branches of different widths, 8 or 3; over a batch
    of 4 or a symbolic one, b:1..6): the pyc.If runs the CPU's if_select_sizes on the generic
    kernel, which writes the taken branch's width into the device dims; the Sigmoid after it
    reads it; y and z come back at the taken width, against onnxruntime for both outcomes."""
    poison_outputs(monkeypatch)
    path = _branches_of_different_widths(tmp_path, symbolic=symbolic)
    result = pyc_cli.build(path, tmp_path / "w.pyc", target="cuda",
                           input_shapes={"x": ("b:1..6", 8)} if symbolic else None)
    chosen = {n.op: n.ann.kernel_name for n in result.graph.nodes}
    assert chosen["pyc.If"] == "cuda_generic_if_select_sizes", chosen
    emulate(result.artifact, tmp_path, monkeypatch)
    with pyc_cli.load(result.artifact) as model:
        for batch, flag in [(4, True), (4, False), (2 if symbolic else 4, False), (4, True),
                            (6 if symbolic else 4, True)]:
            feeds = {"x": rng.standard_normal((batch, 8)).astype(np.float32),
                     "flag": np.array(flag)}
            model.poison()
            ours = model.run(feeds)
            for name, value in onnxruntime_outputs(path, feeds).items():
                assert ours[name].shape == value.shape == (batch, 8 if flag else 3), name
                np.testing.assert_allclose(ours[name], value, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.skipif(SILERO is None, reason="the silero-vad wheel (silero_vad.onnx) is not here")
def test_silero_vad_builds_with_its_if(tmp_path: Path) -> None:
    """The official Silero VAD file's run-time If (16 / 8 kHz) builds for CUDA: its Pad runs the
    Pad kernel, its LSTMs the recurrent kernel (test_cuda_generic.py runs it against
    onnxruntime)."""
    assert SILERO is not None
    built = pyc_cli.build(SILERO, tmp_path / "s.pyc", target="cuda",
                          input_shapes={"input": (1, 512), "state": (2, 1, 128)})
    source = (built.artifact / "src" / "model.cu").read_text()
    assert "LSTM (cuda_recurrent_block, recurrent.cu.j2)" in source and "(cuda_pad, pad.cu.j2)" in source
    assert "(cuda_if_select, if_select.cu.j2)" in source


@pytest.mark.parametrize("case", IF_CASES, ids=lambda c: c.name)
def test_the_c_entry_point_holds_the_guards(case: IfCase, tmp_path: Path,
                                            rng: np.random.Generator) -> None:
    """The launch plan's conditions, guards and traps compiled into the C tables, strict C11
    under gcc and clang against cuda.h (where it is here)."""
    _, artifact = build(case, tmp_path, rng)
    prefix = json.loads((artifact / "manifest.json").read_text())["symbol_prefix"]
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    source = (artifact / "src" / f"{prefix}_cuda.c").read_text()
    assert f"#define N_CONDITIONS {len(plan['conditions'])}" in source
    terms = sum(len(launch.get("when", [])) for launch in plan["launches"])
    assert f"TERMS[{max(terms, 1)}]" in source
    for launch in plan["launches"]:
        row = [line for line in source.splitlines() if f'"{launch["kernel"]}"' in line
               and f"/* step {launch['step']} */" in line]
        assert len(row) == 1 and row[0].rstrip().endswith(f"{int(launch.get('stops', False))} }},"
                                                          f"  /* step {launch['step']} */")
    header = (artifact / "src" / f"{prefix}_cuda.h").read_text()
    assert "_CUDA_ERROR_BRANCH_NOT_COMPILED = -4" in header
    if INCLUDE is None:
        return
    for compiler in ("gcc", "clang"):
        found = shutil.which(compiler)
        if found is None:
            continue
        errors = strict_c11_errors(found, artifact, prefix, tmp_path)
        assert errors is None, (compiler, errors)


FAKE_LIBCUDA = Path(__file__).resolve().parent / "fake_libcuda.c"
DRIVER = Path(__file__).resolve().parents[2] / "c" / "cuda_api_driver.c"


def c_driver(artifact: Path, tmp_path: Path, library: str) -> tuple[Path, dict]:  # type: ignore[type-arg]
    """tests/c/cuda_api_driver.c built with the artifact's C entry point and `library` (a
    libcuda: the real one, or fake_libcuda.c compiled in); the manifest."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    prefix = manifest["symbol_prefix"]
    exe = tmp_path / f"driver_{prefix}_{artifact.parent.name}"
    built = subprocess.run(
        ["gcc", "-std=c11", "-O1", f"-DPYC_NAME={prefix}", f'-DPYC_HEADER="{prefix}_cuda.h"',
         "-I", str(artifact / "src"), "-isystem", str(INCLUDE),
         str(artifact / "src" / f"{prefix}_cuda.c"), str(DRIVER), library, "-ldl", "-o", str(exe)],
        capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    return exe, manifest


def run_c_driver(exe: Path, artifact: Path, manifest: dict, feeds: dict[str, np.ndarray],  # type: ignore[type-arg]
                 tmp_path: Path, runs: int = 2,
                 env: dict[str, str] | None = None
                 ) -> tuple[subprocess.CompletedProcess[str], dict[str, np.ndarray]]:
    """The driver's run of `feeds` (`runs` times; it checks they agree) and its outputs."""
    (tmp_path / "in.bin").write_bytes(b"".join(
        np.ascontiguousarray(feeds[spec["name"]]).tobytes() for spec in manifest["inputs"]))
    result = subprocess.run([str(exe), str(artifact), str(tmp_path / "in.bin"),
                             str(tmp_path / "out.bin"), str(runs)], capture_output=True,
                            text=True, check=False, env=env)
    raw = (tmp_path / "out.bin").read_bytes() if (tmp_path / "out.bin").exists() else b""
    outputs, offset = {}, 0
    for spec in manifest["outputs"]:
        dtype = np.dtype({"f32": np.float32, "i64": np.int64, "bool": np.bool_}[spec["dtype"]])
        count = int(np.prod(spec["shape"], dtype=np.int64))
        outputs[spec["name"]] = np.frombuffer(raw[offset:offset + count * dtype.itemsize],
                                              dtype).reshape(spec["shape"])
        offset += count * dtype.itemsize
    return result, outputs


@pytest.mark.skipif(INCLUDE is None or shutil.which("gcc") is None,
                    reason="no gcc or cuda.h here (pip install '.[cuda]')")
@pytest.mark.parametrize("case", IF_CASES, ids=lambda c: c.name)
def test_the_c_entry_point_runs_in_emulation(case: IfCase, tmp_path: Path,
                                             rng: np.random.Generator) -> None:
    """NAME_cuda.c run over fake_libcuda.c (the emulated kernels): each outcome's outputs
    match onnxruntime, only the taken branches' kernels launch (fewer than the plan holds), one
    condition read a host decision, and an unreachable branch returns
    NAME_CUDA_ERROR_BRANCH_NOT_COMPILED (-4)."""
    path, artifact = build(case, tmp_path, rng)
    lib = compile_kernels((artifact / "src" / "model.cu").read_text(), tmp_path)
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    exe, manifest = c_driver(artifact, tmp_path, str(FAKE_LIBCUDA))
    env = {"PYC_EMU_KERNELS": lib._name,
           "PYC_EMU_ARGS": ",".join(f"{s['kernel']}={len(s['args'])}" for s in plan["launches"])}
    for outcome in (*case.outcomes, *case.refused):
        feeds = case.feeds(rng, outcome)
        result, outputs = run_c_driver(exe, artifact, manifest, feeds, tmp_path, 2, env)
        launches, reads = (int(n) for n in result.stderr.split("fake: launches ")[1].split(" reads "))
        if outcome in case.refused:
            assert result.returncode == 1 and "status -4" in result.stdout, result.stdout
            continue
        assert result.returncode == 0 and "status 0" in result.stdout, result.stdout + result.stderr
        assert 0 < launches < 2 * len(plan["launches"]) and reads == 2 * (1 + outcome.count("/"))
        for name, value in onnxruntime_outputs(path, feeds).items():
            np.testing.assert_allclose(outputs[name], value, rtol=1e-4, atol=1e-4,
                                       err_msg=f"{case.name} {outcome} {name}")


def test_builds_are_deterministic(tmp_path: Path) -> None:
    """The same model and flags give byte-identical launch plans, sources and C entry points."""
    case = CASE["nested_unreachable"]
    files = []
    for run in range(2):
        folder = tmp_path / str(run)
        folder.mkdir()
        _, artifact = build(case, folder, np.random.default_rng(7))
        files.append({p.name: p.read_bytes() for p in sorted((artifact / "src").iterdir())})
    assert files[0] == files[1] and any(name.endswith("_cuda.c") for name in files[0])


@pytest.mark.parametrize("gpu", [True, False], ids=["emulated GPU", "no driver"])
def test_a_cuda_cpu_artifact_with_ifs(gpu: bool, tmp_path: Path, rng: np.random.Generator,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`--target cuda,cpu`: where the GPU runs, the If runs on CUDA, and an unreachable branch
    is PYC-E053 there, not a device failure (no fallback counted; the next run stays on
    CUDA); without a driver the CPU target runs the same outcomes, E053 alike."""
    case = CASE["unreachable"]
    folder = tmp_path / "multi"
    folder.mkdir()
    path = case.make(folder, rng)
    artifact = folder / "multi.pyc"
    pyc_cli.build(path, artifact, target="cuda,cpu", input_shapes=case.shapes)
    if gpu:
        lib = compile_kernels((artifact / "src" / "model.cu").read_text(), tmp_path)
        plan = json.loads((artifact / "src" / "launches.json").read_text())
        fake = FakeDriver(lib, {s["kernel"]: len(s["args"]) for s in plan["launches"]})
    else:
        fake = FakeDriver(None, {})
        fake._cuInit = _no_driver  # type: ignore[method-assign]
    monkeypatch.setattr(bindings, "driver", lambda: fake)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model = pyc_cli.load(artifact)
    codes = [w.message.error.code for w in seen if isinstance(w.message, PycWarning)]
    assert codes == ([] if gpu else ["W001"])
    with model:
        target = "cuda" if gpu else "cpu"
        assert model.stats.target == target
        for _ in range(2):
            with pytest.raises(PycError) as caught:
                model.run(case.feeds(rng, "else"))
            assert caught.value.code == "E053"
            feeds = case.feeds(rng, "then")
            np.testing.assert_allclose(model.run(feeds)["y"], onnxruntime_outputs(path, feeds)["y"],
                                       rtol=1e-4, atol=1e-4)
        assert model.stats.target == target and model.stats.fallback_count == (0 if gpu else 1)


def _no_driver(flags: int) -> tuple:  # type: ignore[type-arg]
    raise RuntimeError("libcuda.so.1 is not here")  # as cuda-pathfinder raises without a driver
