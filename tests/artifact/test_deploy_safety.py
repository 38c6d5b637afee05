"""Safe to deploy (issue 11): an untrusted manifest never reaches native code (every field
mutated, run in a child process so a crash is a failure); the target CPU is recorded at build
and checked before loading; interrupted and concurrent builds; umask and slim artifacts."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REFERENCE_MODELS, onnxruntime_outputs

import pyc_cli
from pyc_cli.artifact.manifest import file_sha256
from pyc_cli.artifact.reader import read_manifest, verify_files
from pyc_cli.artifact.slim import strip_artifact
from pyc_cli.artifact.writer import exchange, output_lock
from pyc_cli.errors import PycError
from pyc_cli.explain import explain_data
from pyc_cli.runtime.jit import jit_load  # imported here: llvmlite opens its own library
from pyc_cli.targets.cpu import features as cpu_features
from pyc_cli.targets.cpu import toolchain

ROOT = Path(__file__).resolve().parents[2]
MLP = REFERENCE_MODELS["mlp"]
RTOL, ATOL = 1e-4, 1e-5


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def pyc(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real CLI in a child process."""
    return subprocess.run([sys.executable, "-m", "pyc_cli.cli.main", *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def shape_args(shapes: dict[str, tuple[int, ...]]) -> list[str]:
    return [arg for k, v in shapes.items() for arg in ("--input-shape", f"{k}={','.join(map(str, v))}")]


@pytest.fixture(scope="module")
def mlp_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mlp") / "mlp.pyc"
    pyc_cli.build(MLP.path, out, input_shapes=MLP.shapes)
    return out


@pytest.fixture
def no_native_load(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every library the loader would dlopen (and refuses to open it)."""
    loaded: list[str] = []

    def refuse(name: Any, *args: Any, **kwargs: Any) -> None:
        loaded.append(str(name))
        raise AssertionError(f"native code loaded: {name}")

    monkeypatch.setattr("pyc_cli.api.ctypes.CDLL", refuse)
    return loaded


# ---------------------------------------------------------------- point 4: untrusted manifest

FUZZ_CHILD = r"""
import ctypes, json, sys
from pathlib import Path
import numpy as np

loaded = []
_CDLL = ctypes.CDLL

class RecordingCDLL(_CDLL):
    def __init__(self, name, *args, **kwargs):
        if name is not None:
            loaded.append(str(name))
        super().__init__(name, *args, **kwargs)

ctypes.CDLL = RecordingCDLL
import pyc_cli
from pyc_cli.errors import PycError

art, cases_path, expected_path = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
cases = json.loads(Path(cases_path).read_text())
with np.load(expected_path) as data:
    feeds, expected = {"x": data["x"]}, data["logits"]
for index, (name, text) in enumerate(cases):
    print(f"start {index}", file=sys.stderr, flush=True)
    (art / "manifest.json").write_text(text)
    before = len(loaded)
    message = ""
    try:
        with pyc_cli.load(art) as model:
            out = model.run(feeds)
        same = list(out) == ["logits"] and np.array_equal(out["logits"], expected)
        outcome = "ok" if same else "wrong result"
    except PycError as exc:
        outcome, message = exc.code, str(exc)
    print(json.dumps({"case": name, "outcome": outcome, "message": message,
                      "loaded": loaded[before:]}), flush=True)
"""

FUZZ_VALUES: list[Any] = [None, True, False, 0, 1, -1, 2**70, 1.5, "", "x", "../../x.so",
                          "/lib/x86_64-linux-gnu/libc.so.6", [], [0], [1, 1], {}, {"a": 1}]
LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")


def key_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of the manifest: dict keys and list indexes, at any depth."""
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key in sorted(value):
            paths += key_paths(value[key], prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += key_paths(item, prefix + (index,))
    return paths


def _set(manifest: dict[str, Any], path: tuple, value: Any, delete: bool = False) -> dict[str, Any]:
    mutated = copy.deepcopy(manifest)
    parent = mutated
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return mutated


def manifest_mutations(manifest: dict[str, Any], outside_sha: str) -> dict[str, dict[str, Any]]:
    """Every field replaced by every value of FUZZ_VALUES, or deleted; plus the hostile edits
    of issue 11 (paths out of the artifact with their right hashes, versions, targets, shapes)."""
    cases = {}
    for path in key_paths(manifest):
        label = ".".join(map(str, path))
        cases[f"{label} deleted"] = _set(manifest, path, None, delete=True)
        for value in FUZZ_VALUES:
            cases[f"{label}={json.dumps(value)}"] = _set(manifest, path, value)
    library = manifest["library"]
    for name, sha in (("../../x.so", outside_sha), (str(LIBC), file_sha256(LIBC) if LIBC.exists()
                                                      else "0" * 64), ("src/../../x.so", outside_sha)):
        hostile = copy.deepcopy(manifest)
        hostile["library"] = name
        hostile["files"][name] = sha
        cases[f"library={name} hashed"] = hostile
        swapped = copy.deepcopy(hostile)
        del swapped["files"][library]
        cases[f"library={name} hashed, own entry dropped"] = swapped
    for side in ("inputs", "outputs"):
        for shape in ([0], [1], [1, 1], [3, 64, 1], [2**40, 2**40], []):
            cases[f"{side}[0].shape={shape}"] = _set(manifest, (side, 0, "shape"), shape)
        cases[f"{side}=[] "] = _set(manifest, (side,), [])
        twice = copy.deepcopy(manifest)
        twice[side].append(copy.deepcopy(twice[side][0]))
        cases[f"{side} entry twice"] = twice
    for name in ("model.ir", "src/model.c", "libmodel.so"):
        cases[f"weights.file={name}"] = _set(manifest, ("weights", "file"), name)
    cases["format_version=true"] = _set(manifest, ("format_version",), True)
    cases["format_version=1.0"] = _set(manifest, ("format_version",), 1.0)
    cases["target=cuda"] = _set(manifest, ("target",), "cuda")
    cases["cpu.features+fake"] = _set(manifest, ("cpu", "features"),
                                      [*manifest["cpu"]["features"], "avx512_fake_feature"])
    cases["cpu.arch=aarch64"] = _set(manifest, ("cpu", "arch"), "aarch64")
    cases["toolchain.flags+plugin"] = _set(manifest, ("toolchain", "flags"),
                                           [*manifest["toolchain"]["flags"], "-fplugin=/tmp/x.so"])
    cases["model.kept_copy=../../x.so"] = _set(manifest, ("model", "kept_copy"), "../../x.so")
    return cases


# the one place a mutation may reach the (verified) library: its I/O cross-check
IO_CROSS_CHECK = "do not match the compiled library"
EXPECTED_CODES = {
    "format_version=true": "E032", "format_version=1.0": "E032", "target=cuda": "E032",
    "library=../../x.so hashed": "E030", f"library={LIBC} hashed": "E030",
    "library=src/../../x.so hashed": "E030", "inputs[0].shape=[0]": "E031",
    "inputs[0].shape=[1]": "E031", "outputs[0].shape=[1, 1]": "E031", "inputs=[] ": "E031",
    "outputs=[] ": "E031", "weights.file=model.ir": "E031", "cpu.features+fake": "E033",
    "cpu.arch=aarch64": "E033", "toolchain.flags+plugin": "E030",
    "model.kept_copy=../../x.so": "E030", "inputs[0].shape=[1099511627776, 1099511627776]": "E030",
}


def test_every_manifest_field_mutated_gives_a_pyc_error_or_the_right_result(
        mlp_artifact: Path, tmp_path: Path) -> None:
    """Each mutation is loaded and run in one child process (a segfault or an abort fails the
    test, naming the mutation); each gives the unchanged outputs or a PYC error, and no error
    but the library's own I/O cross-check comes after the library was opened."""
    art = Path(shutil.copytree(mlp_artifact, tmp_path / "a" / "b" / "art"))
    shutil.copyfile(art / "libmodel.so", tmp_path / "a" / "x.so")  # art/../../x.so
    manifest = json.loads((art / "manifest.json").read_text())
    cases = manifest_mutations(manifest, file_sha256(tmp_path / "a" / "x.so"))
    rng = np.random.default_rng(7)
    feeds = {"x": rng.standard_normal(MLP.shapes["x"]).astype(np.float32)}
    with pyc_cli.load(mlp_artifact) as model:
        np.savez(tmp_path / "expected.npz", x=feeds["x"], logits=model.run(feeds)["logits"])
    names = sorted(cases)
    (tmp_path / "cases.json").write_text(json.dumps([[n, json.dumps(cases[n])] for n in names]))
    child = subprocess.run([sys.executable, "-c", FUZZ_CHILD, str(art), str(tmp_path / "cases.json"),
                            str(tmp_path / "expected.npz")], env=env(), capture_output=True,
                           text=True, timeout=900, check=False)
    started = [line for line in child.stderr.splitlines() if line.startswith("start ")]
    last = names[int(started[-1].split()[1])] if started else None
    assert child.returncode == 0, f"child died ({child.returncode}) on {last!r}: {child.stderr[-2000:]}"
    results = [json.loads(line) for line in child.stdout.splitlines()]
    assert [r["case"] for r in results] == names
    problems = []
    for result in results:
        outcome, loaded = result["outcome"], result["loaded"]
        if outcome != "ok" and not (outcome.startswith("E") and outcome != "E090"):
            problems.append(f"{result['case']}: {outcome}")
        elif outcome != "ok" and IO_CROSS_CHECK not in result["message"] and loaded:
            problems.append(f"{result['case']}: {outcome} after loading {loaded}")
        elif any("pyc-libs-" not in path for path in loaded):
            problems.append(f"{result['case']}: loaded {loaded}, not the verified copy")
    assert not problems, "\n".join(problems[:40])
    by_case = {r["case"]: r for r in results}
    for case, code in EXPECTED_CODES.items():
        assert by_case[case]["outcome"] == code, by_case[case]
        if code != "E031" or IO_CROSS_CHECK not in by_case[case]["message"]:
            assert not by_case[case]["loaded"], by_case[case]
    counts: dict[str, int] = {}
    for result in results:
        counts[result["outcome"]] = counts.get(result["outcome"], 0) + 1
    print(f"{len(results)} manifest mutations: {dict(sorted(counts.items()))}")
    assert len(results) > 1000 and counts.get("ok", 0) > 20


def test_manifest_values_that_only_describe_still_run(mlp_artifact: Path, tmp_path: Path) -> None:
    """A strict schema, not a brittle one: the fields running does not use may change."""
    art = Path(shutil.copytree(mlp_artifact, tmp_path / "art"))
    path = art / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(pyc_version="9.9", arena_bytes=1, slim=True)
    manifest["model"]["graph_name"] = "renamed"
    path.write_text(json.dumps(manifest))
    with pyc_cli.load(art) as model:
        assert model.run({"x": np.ones(MLP.shapes["x"], np.float32)})["logits"].shape == (3, 10)


# ---------------------------------------------------------------- point 2: CPU features

def _foreign_march() -> tuple[str, list[str]]:
    """A -march whose code needs an extension this CPU lacks (the foreign machine)."""
    have = cpu_features.host_features()
    assert have is not None, "these tests need Linux /proc/cpuinfo"
    for march in ("sapphirerapids", "graniterapids", "znver4", "icelake-server", "skylake-avx512",
                  "cascadelake", "knl", "haswell", "x86-64-v4", "x86-64-v3"):
        try:
            record = cpu_features.probe_target(toolchain.find_compiler(), march, [])
        except PycError:
            continue
        missing = sorted(set(record["features"]) - have)
        if missing:
            return march, missing
    pytest.skip("this CPU has every extension of every candidate -march")


def test_foreign_cpu_artifact_is_refused_before_any_native_code(tmp_path: Path,
                                                                 no_native_load: list[str]) -> None:
    march, missing = _foreign_march()
    out = tmp_path / "foreign.pyc"
    pyc_cli.build(MLP.path, out, input_shapes=MLP.shapes, cpu=march)
    cpu = read_manifest(out)["cpu"]
    assert cpu["march"] == march and set(missing) <= set(cpu["features"])
    assert f"-march={march}" in read_manifest(out)["toolchain"]["flags"]
    with pytest.raises(PycError) as info:
        pyc_cli.load(out)
    assert info.value.code == "E033"
    assert all(name in str(info.value) for name in missing) and "--cpu portable" in str(info.value)
    assert no_native_load == []
    with pytest.raises(PycError) as info:
        jit_load(out)
    assert info.value.code == "E033"
    result = pyc("run", str(out), "--random-inputs", "0")
    assert result.returncode == 2 and result.stderr.startswith("PYC-E033:"), result.stderr
    assert "Illegal instruction" not in result.stderr


def test_forged_feature_in_manifest_is_refused(mlp_artifact: Path, tmp_path: Path,
                                               no_native_load: list[str]) -> None:
    """The manifest itself is not hashed: a feature added to it is checked as any other."""
    art = Path(shutil.copytree(mlp_artifact, tmp_path / "art"))
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["cpu"]["features"].append("avx512_notreal")
    (art / "manifest.json").write_text(json.dumps(manifest))
    verify_files(art, read_manifest(art))  # the artifact is otherwise consistent
    with pytest.raises(PycError) as info:
        pyc_cli.load(art)
    assert info.value.code == "E033" and "avx512_notreal" in str(info.value)
    assert no_native_load == []


def test_portable_build_runs_correctly_and_needs_only_the_baseline(tmp_path: Path,
                                                                   rng: np.random.Generator) -> None:
    ref = REFERENCE_MODELS["cnn"]
    out = tmp_path / "cnn.pyc"
    result = pyc("build", str(ref.path), "-o", str(out), "--cpu", "portable", *shape_args(ref.shapes))
    assert result.returncode == 0, result.stderr
    cpu = read_manifest(out)["cpu"]
    assert cpu["march"] == "x86-64-v2" and cpu["arch"] == "x86_64"
    assert set(cpu["features"]) <= {"mmx", "sse", "sse2", "pni", "ssse3", "sse4_1", "sse4_2",
                                    "popcnt"}
    assert "avx" not in cpu["features"] and "-march=x86-64-v2" in read_manifest(out)["toolchain"]["flags"]
    feeds = ref.random_feeds(rng)
    expected = onnxruntime_outputs(ref.path, feeds)
    with pyc_cli.load(out) as model:
        ours = model.run(feeds)
    for name, value in expected.items():
        np.testing.assert_allclose(ours[name], value, rtol=RTOL, atol=ATOL)


def test_cpu_features_are_added_removed_and_validated(tmp_path: Path, rng: np.random.Generator) -> None:
    out = tmp_path / "noavx.pyc"
    pyc_cli.build(MLP.path, out, input_shapes=MLP.shapes, cpu="x86-64-v3",
                  cpu_features="-avx2,-fma")
    manifest = read_manifest(out)
    assert manifest["cpu"]["requested_features"] == ["-avx2", "-fma"]
    assert "avx2" not in manifest["cpu"]["features"] and "fma" not in manifest["cpu"]["features"]
    assert "avx" in manifest["cpu"]["features"]
    assert {"-mno-avx2", "-mno-fma"} <= set(manifest["toolchain"]["flags"])
    feeds = MLP.random_feeds(rng)
    with pyc_cli.load(out) as model:
        np.testing.assert_allclose(model.run(feeds)["logits"],
                                   onnxruntime_outputs(MLP.path, feeds)["logits"], rtol=RTOL, atol=ATOL)
    for args, code in ((["--cpu", "notacpu"], "E036"), (["--cpu-features", "+avx9"], "E036"),
                       (["--cpu-features", "+a;b"], "E050"), (["--cpu", "-march=x"], "E050")):
        result = pyc("build", str(MLP.path), "-o", str(tmp_path / "bad"), *shape_args(MLP.shapes), *args)
        assert result.returncode == 2 and result.stderr.startswith(f"PYC-{code}:"), (args, result.stderr)
        assert not (tmp_path / "bad").exists()


def test_cpu_check_without_cpuinfo_and_on_another_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    record = {"arch": cpu_features.host_arch(), "march": "x", "resolved_march": "x",
              "requested_features": [], "features": ["sse", "sse2"]}
    monkeypatch.setattr(cpu_features, "host_features", lambda: None)
    cpu_features.check_cpu(record, "art")  # the baseline needs no /proc/cpuinfo
    with pytest.raises(PycError) as info:
        cpu_features.check_cpu(dict(record, features=["avx2"]), "art")
    assert info.value.code == "E033" and cpu_features.SKIP_ENV in str(info.value)
    with pytest.raises(PycError) as info:
        cpu_features.check_cpu(dict(record, arch="riscv64"), "art")
    assert info.value.code == "E033" and "riscv64" in str(info.value)


# ---------------------------------------------------------------- point 5: interrupted builds

KILL_CHILD = r"""
import os, shutil, sys
from pathlib import Path
import pyc_cli
from pyc_cli.artifact import writer

model, out, shape, mode, point = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
if mode == "renames":
    writer.exchange = lambda first, second: False
real_rename, real_exchange, real_rmtree = os.rename, writer.exchange, shutil.rmtree
calls = {"rename": 0}

def rename(src, dst):
    calls["rename"] += 1
    if point == f"before_rename{calls['rename']}":
        os._exit(9)
    real_rename(src, dst)
    if point == f"after_rename{calls['rename']}":
        os._exit(9)

def exchange(first, second):
    done = real_exchange(first, second)
    if point == "after_exchange":
        os._exit(9)
    return done

def rmtree(path, *args, **kwargs):
    if point == "during_rmtree" and Path(path).exists():
        victim = next(p for p in sorted(Path(path).rglob("*")) if p.is_file())
        victim.unlink()  # a partial removal, then the kill
        os._exit(9)
    real_rmtree(path, *args, **kwargs)

def compile_library(self, *args, **kwargs):
    os._exit(9)

os.rename, writer.exchange, writer.shutil.rmtree = rename, exchange, rmtree
if point == "while_compiling":
    from pyc_cli.targets.cpu.target import CpuTarget
    CpuTarget.compile_library = compile_library
pyc_cli.build(model, out, input_shapes={"x": tuple(int(d) for d in shape.split(","))})
"""

KILL_POINTS = [("renames", "while_compiling"), ("renames", "before_rename1"),
               ("renames", "after_rename1"), ("renames", "after_rename2"),
               ("renames", "during_rmtree"), ("exchange", "after_exchange"),
               ("exchange", "during_rmtree")]


def _run_shape(artifact: Path) -> list[int]:
    """Which build is at `artifact` (old: x is 3x64, new: 5x64), after it ran correctly."""
    result = pyc("run", str(artifact), "--random-inputs", "0", "--json")
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(artifact)
    verify_files(artifact, manifest)
    return manifest["inputs"][0]["shape"]


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(("mode", "point"), KILL_POINTS)
def test_a_kill_at_every_step_of_the_replacement_is_recovered(tmp_path: Path, mode: str,
                                                              point: str) -> None:
    if mode == "exchange":
        (tmp_path / "p").mkdir(), (tmp_path / "q").mkdir()
        if not exchange(tmp_path / "p", tmp_path / "q"):
            pytest.skip("this file system has no renameat2(RENAME_EXCHANGE)")
    out = tmp_path / "art"
    pyc_cli.build(MLP.path, out, input_shapes={"x": (3, 64)})
    (tmp_path / ".art.user").mkdir()  # a look-alike that is not ours: never removed
    child = subprocess.run([sys.executable, "-c", KILL_CHILD, str(MLP.path), str(out), "5,64", mode,
                            point], env=env(), capture_output=True, text=True, timeout=300, check=False)
    assert child.returncode == 9, child.stderr  # killed where intended
    # the next run finds a complete artifact: the old one or the new one
    assert _run_shape(out) in ([3, 64], [5, 64])
    # the next build cleans what the killed one left, and nothing else
    pyc_cli.build(MLP.path, out, input_shapes={"x": (4, 64)})
    assert _run_shape(out) == [4, 64]
    assert _leftovers(tmp_path) == [".art.user"]


def test_run_restores_the_old_artifact_after_a_kill_between_renames(tmp_path: Path) -> None:
    out = tmp_path / "art"
    pyc_cli.build(MLP.path, out, input_shapes={"x": (3, 64)})
    child = subprocess.run([sys.executable, "-c", KILL_CHILD, str(MLP.path), str(out), "5,64",
                            "renames", "after_rename1"], env=env(), capture_output=True, text=True,
                           timeout=300, check=False)
    assert child.returncode == 9 and not out.exists() and (tmp_path / ".art.old").is_dir()
    assert _run_shape(out) == [3, 64]  # `pyc run` put it back
    assert not (tmp_path / ".art.old").exists()


HOLD_LOCK = r"""
import sys, time
from pathlib import Path
from pyc_cli.artifact.writer import exchange, output_lock
with output_lock(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(120)
"""


def test_a_second_build_into_the_same_output_is_refused_naming_the_first(tmp_path: Path) -> None:
    out = tmp_path / "art"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], env=env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        result = pyc("build", str(MLP.path), "-o", str(out), *shape_args(MLP.shapes))
        assert result.returncode == 2 and result.stderr.startswith("PYC-E034:"), result.stderr
        assert f"process {holder.pid}" in result.stderr
        assert not out.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # a killed holder's lock is released by the kernel: the next build goes ahead
    result = pyc("build", str(MLP.path), "-o", str(out), *shape_args(MLP.shapes))
    assert result.returncode == 0, result.stderr
    assert _leftovers(tmp_path) == []


def test_two_concurrent_builds_do_not_both_succeed_silently(tmp_path: Path) -> None:
    """Started together: either both succeed one after the other (each holding the lock for
    its whole build), or exactly one is refused with E034; the artifact is always complete."""
    out = tmp_path / "art"
    args = [sys.executable, "-m", "pyc_cli.cli.main", "build", str(MLP.path), "-o", str(out)]
    procs = [subprocess.Popen([*args, "--input-shape", f"x={n},64"], env=env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in (3, 5)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    refused = [err for code, err in results if code == 2 and err.startswith("PYC-E034:")]
    assert all(code == 0 for code, err in results if err not in refused), results
    assert len(refused) <= 1
    assert _run_shape(out) in ([3, 64], [5, 64])
    with output_lock(out):  # same process, other open file: flock still excludes
        with pytest.raises(PycError) as info:
            pyc_cli.build(MLP.path, out, input_shapes=MLP.shapes)
        assert info.value.code == "E034" and f"process {os.getpid()}" in str(info.value)


# ---------------------------------------------------------------- point 8: umask, slim


UMASK_CHILD = r"""
import os, sys
import pyc_cli
os.umask(int(sys.argv[3], 8))
pyc_cli.build(sys.argv[1], sys.argv[2], input_shapes={"x": (3, 64)})
"""


@pytest.mark.parametrize(("umask", "directory", "file"), [("022", 0o755, 0o644),
                                                          ("077", 0o700, 0o600)])
def test_artifact_modes_follow_the_umask(tmp_path: Path, umask: str, directory: int, file: int) -> None:
    out = tmp_path / "art"
    subprocess.run([sys.executable, "-c", UMASK_CHILD, str(MLP.path), str(out), umask], env=env(),
                   check=True, timeout=300)
    assert stat.S_IMODE(out.stat().st_mode) == directory
    assert stat.S_IMODE((out / "src").stat().st_mode) == directory
    for name in ("manifest.json", "weights.bin", "model.ir", "src/model.h"):
        assert stat.S_IMODE((out / name).stat().st_mode) == file, name
    assert stat.S_IMODE((out / "libmodel.so").stat().st_mode) & file == file


SLIM_FILES = ["input_ranges.json", "libmodel.so", "manifest.json", "src/model.h", "src/pyc_runtime.h",
              "weights.bin"]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_slim_build_runs_equals_strip_and_explain_says_what_is_missing(
        mlp_artifact: Path, tmp_path: Path, rng: np.random.Generator) -> None:
    slim = tmp_path / "slim.pyc"
    result = pyc("build", str(MLP.path), "-o", str(slim), "--slim", *shape_args(MLP.shapes))
    assert result.returncode == 0, result.stderr
    assert sorted(_tree(slim)) == SLIM_FILES
    manifest = read_manifest(slim)
    assert manifest["slim"] is True
    assert sorted(manifest["files"]) == sorted(set(SLIM_FILES) - {"manifest.json"})
    stripped = Path(shutil.copytree(mlp_artifact, tmp_path / "stripped.pyc"))
    result = pyc("strip", str(stripped))
    assert result.returncode == 0 and "removed 6 file(s)" in result.stdout, result
    assert _tree(stripped) == _tree(slim)  # one definition of slim, byte for byte
    assert pyc("strip", str(stripped)).stdout.strip().endswith("is already slim")
    feeds = MLP.random_feeds(rng)
    with pyc_cli.load(slim) as model, pyc_cli.load(mlp_artifact) as full:
        ours = model.run(feeds)["logits"]
        np.testing.assert_array_equal(ours, full.run(feeds)["logits"])
    np.testing.assert_allclose(ours, onnxruntime_outputs(MLP.path, feeds)["logits"], rtol=RTOL, atol=ATOL)
    result = pyc("explain", str(slim))
    assert result.returncode == 2 and result.stderr.startswith("PYC-E035:"), result.stderr
    assert "model.ir" in result.stderr and "slim" in result.stderr
    result = pyc("run", str(slim), "--random-inputs", "0", "--compare", "ort", "--per-node",
                 "--model", str(MLP.path))
    assert result.returncode == 2 and result.stderr.startswith("PYC-E035:"), result.stderr


def test_explain_files_deleted_by_hand_run_but_tampered_ones_are_refused(mlp_artifact: Path,
                                                                       tmp_path: Path) -> None:
    art = Path(shutil.copytree(mlp_artifact, tmp_path / "art"))
    for name in ("model.ir", "decisions.jsonl", "src/model.c", "src/pyc_runtime.c"):
        (art / name).unlink()
    result = pyc("run", str(art), "--random-inputs", "0")
    assert result.returncode == 0, result.stderr
    with pytest.raises(PycError) as info:
        explain_data(art)
    assert info.value.code == "E035" and "model.ir" in str(info.value) and "deleted" in str(info.value)
    (art / "memory_plan.json").write_text("{}")  # present and tampered: refused by run too
    result = pyc("run", str(art), "--random-inputs", "0")
    assert result.returncode == 2 and result.stderr.startswith("PYC-E031:"), result.stderr
    with pytest.raises(PycError) as info:
        strip_artifact(art)
    assert info.value.code == "E031"


def test_strip_removes_the_kept_source_and_keeps_the_manifest_consistent(tmp_path: Path) -> None:
    out = tmp_path / "kept.pyc"
    pyc_cli.build(MLP.path, out, input_shapes=MLP.shapes, keep_source=True)
    assert read_manifest(out)["model"]["kept_copy"] == "source/mlp.onnx"
    removed = strip_artifact(out)
    assert "source/mlp.onnx" in removed and not (out / "source").exists()
    manifest = read_manifest(out)
    assert manifest["model"]["kept_copy"] is None and "source/mlp.onnx" not in manifest["files"]
    verify_files(out, manifest)
    assert sorted(_tree(out)) == SLIM_FILES
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in _tree(out).items()}
    assert all(hashes[name] == digest for name, digest in manifest["files"].items())


def test_cpu_flags_are_read_from_x86_and_arm64_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 avx2 fma\n\nprocessor\t: 1\nflags\t: sse\n")
    assert cpu_features.host_features(x86) == {"fpu", "sse", "sse2", "avx2", "fma"}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve asimddp\n")
    assert cpu_features.host_features(arm) == {"fp", "asimd", "sve", "asimddp"}
    assert cpu_features.host_features(tmp_path / "absent") is None
    assert cpu_features.parse_features("+avx2, -avx512f fma") == ["+avx2", "-avx512f", "+fma"]
    assert cpu_features.feature_flags(["+avx2", "-avx512f"]) == ["-mavx2", "-mno-avx512f"]
