"""The portable C toolchain: the compiler comes from CC, else cc / gcc / clang on PATH (PYC-E026
when there is none) and the manifest records it; the generated C and the runtime compile with
gcc and clang under -std=c11 -Wall -Wextra -pedantic -Werror (the build's own flags plus those);
models built with clang match onnxruntime, and float16 conversions are exact under both
compilers, with and without the CPU's half-precision conversion instructions.

A compiler that is not installed is skipped with the reason (CI installs clang: .ci/run).
Every conformance case can be held to the same flags with tests/c/strict_cc.sh as CC (all 1361
passed with gcc 12 and clang 14 when this was written).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import special_values_cases as special
from conftest import REFERENCE_MODELS, invoke, onnxruntime_outputs
from helpers import assert_strict_c11
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.targets.cpu import toolchain

COMPILERS = ("gcc", "clang")
RTOL, ATOL = 1e-4, 1e-5  # float32 against onnxruntime, as tests/test_e2e.py
F16, F32, F64 = TensorProto.FLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE


def _installed(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed here (CI installs gcc and clang: .ci/run)")
    return found


# ---------------------------------------------------------------- the sample of generated C


def _special_values_model(root: Path) -> Path:
    """Every case of tests/ops/test_special_values.py side by side: about 110 ops in one model,
    which covers nearly every kernel template."""
    assembled = special.assemble(list(special.ALL_CASES), np.random.default_rng(0), False)
    path = root / "special.onnx"
    onnx.save(assembled.model, path)
    special.with_output_shapes(assembled.model, onnxruntime_outputs(path, assembled.feeds))
    onnx.save(assembled.model, path)
    return path


def _float16_model(root: Path) -> Path:
    """float16 through the kernels with a float16 path and those computed in float32."""
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((16, 8)).astype(np.float16), "w")
    nodes = [
        helper.make_node("Cast", ["d"], ["x"], to=F16),
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("Tanh", ["sq"], ["t"]),
        helper.make_node("MatMul", ["t", "w"], ["m"]),
        helper.make_node("Softmax", ["m"], ["s"], axis=-1),
        helper.make_node("Transpose", ["s"], ["st"], perm=[1, 0]),
        helper.make_node("ReduceMean", ["st", "axes"], ["r"], keepdims=1),
        helper.make_node("Concat", ["st", "r"], ["y"], axis=0),
        helper.make_node("Cast", ["y"], ["y32"], to=F32),
    ]
    graph = helper.make_graph(nodes, "float16", [helper.make_tensor_value_info("d", F64, (4, 16))],
                              [helper.make_tensor_value_info("y32", F32, (9, 4))],
                              [w, numpy_helper.from_array(np.array([0], np.int64), "axes")])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]),
                 root / "float16.onnx")


def _integers_model(root: Path) -> Path:
    """BitShift on unsigned values (no `< 0` test may be emitted for them) and max / min
    reductions of integers (no NaN test `v != v`)."""
    u32, i32 = TensorProto.UINT32, TensorProto.INT32
    nodes = [helper.make_node("BitShift", ["x", "n"], ["left"], direction="LEFT"),
             helper.make_node("BitShift", ["x", "n"], ["right"], direction="RIGHT"),
             helper.make_node("ReduceMax", ["i", "axes"], ["max"], keepdims=0),
             helper.make_node("ReduceMin", ["i", "axes"], ["min"], keepdims=0)]
    graph = helper.make_graph(
        nodes, "integers",
        [*(helper.make_tensor_value_info(v, u32, (8,)) for v in ("x", "n")),
         helper.make_tensor_value_info("i", i32, (3, 8))],
        [*(helper.make_tensor_value_info(v, u32, (8,)) for v in ("left", "right")),
         *(helper.make_tensor_value_info(v, i32, (3,)) for v in ("max", "min"))],
        [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]),
                 root / "integers.onnx")


def _no_inputs_model(root: Path) -> Path:
    """Outputs that are constants: the model reads no input (empty I/O tables, unused args)."""
    nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["y"])]
    scalars = [numpy_helper.from_array(np.array(v, np.float32), n)
               for n, v in (("start", 1.0), ("limit", 7.0), ("delta", 1.5))]
    graph = helper.make_graph(nodes, "constants", [],
                              [helper.make_tensor_value_info("y", F32, (4,))], scalars)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]),
                 root / "constants.onnx")


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 9
    onnx.save(model, path)
    return path


def _build_reference(name: str) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        ref = REFERENCE_MODELS[name]
        return pyc_cli.build(ref.path, root / name, input_shapes=ref.shapes).artifact
    return build


def _build_model(make: Callable[[Path], Path], mode: str) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        return pyc_cli.build(make(root), root / f"{make.__name__}_{mode}", mode=mode).artifact
    return build


SAMPLES: dict[str, Callable[[Path], Path]] = {
    **{name: _build_reference(name) for name in REFERENCE_MODELS},
    "special_latency_first": _build_model(_special_values_model, "latency_first"),
    "special_memory_first": _build_model(_special_values_model, "memory_first"),
    "float16": _build_model(_float16_model, "balanced"),
    "integers": _build_model(_integers_model, "balanced"),
    "no_inputs": _build_model(_no_inputs_model, "balanced"),
}


class Samples:
    """Artifacts built once per module with the default compiler, on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: dict[str, Path] = {}

    def get(self, name: str) -> Path:
        if name not in self.built:
            self.built[name] = SAMPLES[name](self.root)
        return self.built[name]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    return Samples(tmp_path_factory.mktemp("toolchain"))


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_generated_c_and_runtime_are_strict_c11(sample: str, compiler: str,
                                               samples: Samples) -> None:
    _installed(compiler)
    art = samples.get(sample)
    assert "-std=c11" in json.loads((art / "manifest.json").read_text())["toolchain"]["flags"]
    assert_strict_c11(compiler, art, ("model.c", "pyc_runtime.c"))


# ---------------------------------------------------------------- building with clang


@pytest.mark.parametrize("name", sorted(REFERENCE_MODELS))
def test_reference_models_built_with_clang_match_onnxruntime(
        name: str, rng: np.random.Generator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", _installed("clang"))
    ref = REFERENCE_MODELS[name]
    art = pyc_cli.build(ref.path, tmp_path / "art", input_shapes=ref.shapes).artifact
    record = json.loads((art / "manifest.json").read_text())["toolchain"]
    assert (record["compiler"], record["compiler_family"]) == ("clang", "clang")
    with pyc_cli.load(art) as model:
        feeds = ref.random_feeds(rng)
        ours = model.run(feeds)
    expected = onnxruntime_outputs(ref.path, feeds)
    assert list(ours) == list(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(ours[key], value, rtol=RTOL, atol=ATOL)


def _conversion_model(path: Path) -> None:
    nodes = [helper.make_node("Cast", ["a"], ["a16"], to=F16),
             helper.make_node("Cast", ["h"], ["h32"], to=F32),
             helper.make_node("Cast", ["d"], ["d16"], to=F16)]
    n = 65536
    graph = helper.make_graph(
        nodes, "conversions",
        [helper.make_tensor_value_info("a", F32, (n,)), helper.make_tensor_value_info("h", F16, (n,)),
         helper.make_tensor_value_info("d", F64, (n,))],
        [helper.make_tensor_value_info("a16", F16, (n,)), helper.make_tensor_value_info("h32", F32, (n,)),
         helper.make_tensor_value_info("d16", F16, (n,))])
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), path)


def _near_float16_ties(rng: np.random.Generator, n: int) -> np.ndarray:
    """float64 values at, just above and just below the midpoints between neighbouring finite
    float16 values (where rounding twice, through float32, goes wrong), and random ones."""
    finite = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    mid = (finite[:-1] + finite[1:]) / 2
    step = finite[1:] - finite[:-1]
    picks = rng.integers(0, mid.size, n // 4)
    near = [mid[picks], mid[picks] + step[picks] * 1e-9, mid[picks] - step[picks] * 1e-9]
    wide = rng.standard_normal(n - 3 * (n // 4)) * 10.0 ** rng.integers(-9, 6, n - 3 * (n // 4))
    values = np.concatenate([*near, wide])
    return values * rng.choice([-1.0, 1.0], values.size)


@pytest.mark.parametrize("cpu", ["native", "portable"])
@pytest.mark.parametrize("compiler", COMPILERS)
def test_float16_conversions_are_exact(compiler: str, cpu: str, rng: np.random.Generator,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every float16 value to float32, and float32 / float64 values around every rounding
    tie to float16, equal numpy's conversions bit for bit (NaN where numpy has NaN). The
    portable build has no F16C instructions, so the conversions are the compiler's (or, for
    clang 14, the runtime's) software ones."""
    monkeypatch.setenv("CC", _installed(compiler))
    _conversion_model(tmp_path / "conversions.onnx")
    halves = np.arange(65536, dtype=np.uint16).view(np.float16)
    doubles = _near_float16_ties(rng, 65536)
    floats = np.where(np.abs(doubles) < 3e38, doubles, 1.0).astype(np.float32)
    floats[:8] = [np.inf, -np.inf, np.nan, 65520.0, 65519.996, 2.0**-25, -(2.0**-25), 6e-8]
    doubles[:4] = [np.inf, np.nan, 1e300, -1e-300]
    art = pyc_cli.build(tmp_path / "conversions.onnx", tmp_path / "art", cpu=cpu).artifact
    with pyc_cli.load(art) as model:
        got = model.run({"a": floats, "h": halves, "d": doubles})
    with np.errstate(over="ignore"):  # to inf, as C does
        wanted = {"a16": floats.astype(np.float16), "h32": halves.astype(np.float32),
                  "d16": doubles.astype(np.float16)}
    for name, want in wanted.items():
        np.testing.assert_array_equal(got[name], want, err_msg=f"{compiler} {cpu}: {name}")


# ---------------------------------------------------------------- finding the compiler


def _fake_compilers(tmp_path: Path, names: tuple[str, ...]) -> str:
    """A PATH directory holding only `names`, each a script that runs the real compiler."""
    real = toolchain.find_compiler()
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in names:
        script = directory / name
        script.write_text(f'#!/bin/sh\nexec "{real}" "$@"\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(directory)


@pytest.mark.parametrize(("present", "found"), [(("cc", "gcc", "clang"), "cc"),
                                                (("gcc", "clang"), "gcc"), (("clang",), "clang"),
                                                (("gcc",), "gcc")])
def test_without_cc_the_first_of_cc_gcc_clang_is_used(present: tuple[str, ...], found: str,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = _fake_compilers(tmp_path, present)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", path)
    assert toolchain.find_compiler() == str(Path(path) / found)
    monkeypatch.setenv("CC", "clang")  # CC wins, looked up on PATH
    if "clang" in present:
        assert toolchain.find_compiler() == str(Path(path) / "clang")
    else:
        with pytest.raises(PycError, match="CC='clang' is not an executable C compiler"):
            toolchain.find_compiler()


def test_no_compiler_is_pyc_e026(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PycError) as raised:
        toolchain.find_compiler()
    assert raised.value.code == "E026" and "cc, gcc, clang" in raised.value.what


def test_cc_naming_no_compiler_fails_the_build_with_pyc_e026(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    ref = REFERENCE_MODELS["mlp"]
    code, output = invoke("build", str(ref.path), "-o", str(tmp_path / "art"), "--input-shape",
                          "x=3,64")
    assert code != 0 and "PYC-E026" in output and "no-such-cc" in output, output
    assert not (tmp_path / "art").exists()


def test_toolchain_record_names_the_compiler_without_paths(samples: Samples) -> None:
    art = samples.get("mlp")
    record = json.loads((art / "manifest.json").read_text())["toolchain"]
    used = toolchain.current()
    assert record["compiler"] == Path(used.path).name
    assert record["compiler_family"] in ("gcc", "clang") and record["compiler_version"]
    assert str(Path(used.path).parent) + os.sep not in json.dumps(record)
    assert sys.prefix not in json.dumps(record)
