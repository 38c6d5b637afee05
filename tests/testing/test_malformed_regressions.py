"""One regression test per defect the malformed-input fuzzer found: each input used to end in a
traceback, PYC-E090, a click usage message or a segfault; now it is a reason-coded PYC error (or,
for hostile names and undecodable paths, a correct build)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto

import pyc_cli
from pyc_cli.artifact.reader import read_manifest
from pyc_cli.cli.main import main
from pyc_cli.errors import PycError
from pyc_cli.explain import explain_data
from pyc_cli.templating import c_string
from pyc_cli.testing import malformed_onnx as mo

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    """The CLI in-process, from `cwd` (stderr mixed into the output)."""
    old = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.output


def assert_pyc_error(code: int, output: str, error: str) -> None:
    assert code == 2, output
    assert output.startswith(f"PYC-{error}:"), output
    assert "Traceback" not in output and "E090" not in output


def cli_subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "pyc_cli.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def base_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("base")
    (root / "mlp.onnx").write_bytes(mo.mlp().SerializeToString())
    return pyc_cli.build(root / "mlp.onnx", root / "art").artifact


@pytest.fixture
def art(base_artifact: Path, tmp_path: Path) -> Path:
    """A private copy of the base artifact to mutate."""
    return Path(shutil.copytree(base_artifact, tmp_path / "art"))


def edit_manifest(art: Path, change: Any) -> None:
    path = art / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def assert_load_refused(art: Path, code: str, text: str = "") -> None:
    with pytest.raises(PycError) as info:
        pyc_cli.load(art)
    assert info.value.code == code and text in str(info.value), str(info.value)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- manifest as untrusted input


@pytest.mark.parametrize("text", [b"[" * 200000 + b"]" * 200000, b'{"a":' * 50000 + b"1" + b"}" * 50000,
                                  b'{"format": "\xff"}', b"\x00garbage", b""])
def test_manifest_that_is_not_json_is_e030(art: Path, text: bytes) -> None:
    """Deep nesting used to raise RecursionError (PYC-E090)."""
    (art / "manifest.json").write_bytes(text)
    assert_load_refused(art, "E030")


@pytest.mark.parametrize("key", ["files", "inputs", "outputs", "library", "weights", "toolchain",
                                 "target", "model", "arena_bytes"])
def test_manifest_missing_key_is_e030(art: Path, key: str) -> None:
    """Each missing key used to be a KeyError (PYC-E090) in load or explain."""
    edit_manifest(art, lambda m: m.pop(key))
    assert_load_refused(art, "E030", key)
    with pytest.raises(PycError):
        explain_data(art)


@pytest.mark.parametrize(("where", "value"), [
    (("files",), ["libmodel.so"]), (("inputs", 0, "shape"), [2.5, 4]), (("inputs", 0, "shape"), [True, 4]),
    (("outputs", 0, "shape"), [-1, 3]), (("inputs", 0, "dtype"), "f99"), (("arena_bytes",), float("nan")),
    (("weights", "layout"), {"w": "x"}), (("model", "source_ops"), []), (("files", "weights.bin"), 12),
    (("files", "weights.bin"), "ABC"), (("inputs", 0, "name"), "\udcff"),
])
def test_manifest_field_of_wrong_type_is_e030(art: Path, where: tuple, value: Any) -> None:
    """Wrong types used to surface as TypeError / ValueError / AttributeError (PYC-E090)."""
    def change(manifest: dict) -> None:
        target = manifest
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = value
    edit_manifest(art, change)
    assert_load_refused(art, "E030")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "inner_dotdot", "empty", "dot", "nul", "src"])
def test_library_outside_the_artifact_is_never_loaded(art: Path, kind: str) -> None:
    """`library` naming a copy outside the artifact with its right hash used to load it (or
    raise KeyError); now any path that leaves the artifact is refused before dlopen."""
    outside = art.parent / "x.so"
    shutil.copyfile(art / "libmodel.so", outside)
    library = {"dotdot": "../x.so", "absolute": str(outside), "inner_dotdot": "src/../../x.so",
               "empty": "", "dot": ".", "nul": "libmodel.so\x00x", "src": "src"}[kind]

    def change(manifest: dict) -> None:
        manifest["library"] = library
        manifest["files"][library] = sha(outside)
    edit_manifest(art, change)
    assert_load_refused(art, "E030")


def test_files_entries_leaving_the_artifact_are_e030(art: Path) -> None:
    (art.parent / "outside.txt").write_text("outside")
    edit_manifest(art, lambda m: m["files"].update({"../outside.txt": sha(art.parent / "outside.txt")}))
    assert_load_refused(art, "E030", "not a relative path inside the artifact")


def test_weights_symlinked_outside_the_artifact_is_e030(art: Path) -> None:
    outside = art.parent / "weights.bin"
    shutil.move(art / "weights.bin", outside)
    os.symlink(outside, art / "weights.bin")
    assert_load_refused(art, "E030", "links outside the artifact")


@pytest.mark.parametrize("victim", ["libmodel.so", "weights.bin", "model.ir"])
def test_unlisted_and_tampered_essential_file_is_refused(art: Path, victim: str) -> None:
    """Dropping the library's hash used to be a KeyError; dropping the weights' hash let
    tampered weights reach native code (caught only by its checksum). model.ir is not read
    by running (a slim artifact has none), but an unlisted one is never explained from."""
    edit_manifest(art, lambda m: m["files"].pop(victim))
    data = bytearray((art / victim).read_bytes())
    data[-1] ^= 0xFF
    (art / victim).write_bytes(bytes(data))
    if victim != "model.ir":
        assert_load_refused(art, "E030", "not among the hashed files")
        return
    pyc_cli.load(art).close()
    with pytest.raises(PycError) as info:
        explain_data(art)
    assert info.value.code == "E035" and "model.ir" in str(info.value), str(info.value)


@pytest.mark.parametrize("victim", ["libmodel.so", "weights.bin"])
def test_tampered_library_or_weights_is_e031(art: Path, victim: str) -> None:
    data = bytearray((art / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (art / victim).write_bytes(bytes(data))
    assert_load_refused(art, "E031")


@pytest.mark.parametrize(("side", "change"), [
    ("inputs", lambda e: e.update(shape=[d * 4 for d in e["shape"]])),
    ("inputs", lambda e: e.update(shape=e["shape"][:1])),
    ("inputs", lambda e: e.update(dtype="f64")),
    ("inputs", lambda e: e.update(name="renamed")),
    ("outputs", lambda e: e.update(shape=[d * 4 for d in e["shape"]])),
    ("outputs", lambda e: e.update(shape=[2])),
])
def test_manifest_io_that_disagrees_with_the_library_is_e031(art: Path, side: str, change: Any) -> None:
    """inputs/outputs are not hashed: an edited shape used to size the buffers native code
    reads and writes (out-of-bounds). The loader now compares them with the library's own
    metadata before anything runs."""
    edit_manifest(art, lambda m: change(m[side][0]))
    assert_load_refused(art, "E031", f"the {side} in manifest.json do not match")


def test_dropped_output_no_longer_segfaults(art: Path) -> None:
    """With its only output removed from the manifest, `pyc run` used to die of SIGSEGV."""
    edit_manifest(art, lambda m: m["outputs"].pop())
    result = cli_subprocess("run", str(art), "--random-inputs", "0", cwd=art.parent)
    assert result.returncode == 2, result
    assert result.stderr.startswith(b"PYC-E031:"), result.stderr


def test_explain_with_weights_layout_outside_the_file_is_e030(art: Path) -> None:
    edit_manifest(art, lambda m: m["weights"]["layout"].update({"w": 10**9}))
    with pytest.raises(PycError) as info:
        explain_data(art)
    assert info.value.code == "E030"


# ---------------------------------------------------------------- paths and the CLI wrapper


def test_model_path_too_long_is_e001(tmp_path: Path) -> None:
    code, output = invoke("build", "m" * 300 + ".onnx", "-o", "out", cwd=tmp_path)
    assert_pyc_error(code, output, "E001")


def test_artifact_path_too_long_is_e030(tmp_path: Path) -> None:
    code, output = invoke("run", "a" * 300, "--random-inputs", "0", cwd=tmp_path)
    assert_pyc_error(code, output, "E030")


def test_output_below_a_file_is_e022(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(mo.mlp().SerializeToString())
    (tmp_path / "afile").write_text("keep")
    code, output = invoke("build", "model.onnx", "-o", "afile/art", cwd=tmp_path)
    assert_pyc_error(code, output, "E022")
    assert (tmp_path / "afile").read_text() == "keep"


@pytest.mark.parametrize("args", [["build", "adir", "-o", "out"], ["build", "model.onnx", "-o", "afile"],
                                  ["build", "model.onnx", "--bogus"], ["run", "x", "--repeat", "0"]])
def test_click_usage_errors_are_pyc_e050(tmp_path: Path, args: list[str]) -> None:
    """click's own checks (a directory as MODEL, a file as -o) printed 'Usage: ... Error:'."""
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "model.onnx").write_bytes(mo.mlp().SerializeToString())
    code, output = invoke(*args, cwd=tmp_path)
    assert_pyc_error(code, output, "E050")


def test_undecodable_paths_build_and_print(tmp_path: Path) -> None:
    """A model path and an output path that are not UTF-8 used to end in UnicodeEncodeError
    (writing the timeline SVG, printing `built ...`)."""
    model = os.fsdecode(b"m\xff.onnx")
    (tmp_path / model).write_bytes(mo.mlp().SerializeToString())
    result = cli_subprocess("build", model, "-o", os.fsdecode(b"o\xfe"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / os.fsdecode(b"o\xfe")
    assert read_manifest(out)["model"]["file"] == "m\\xff.onnx"


# ---------------------------------------------------------------- the importer


def write(tmp_path: Path, model: onnx.ModelProto, **files: bytes) -> Path:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def external(model: onnx.ModelProto, **entries: str) -> onnx.ModelProto:
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in entries.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model


@pytest.mark.parametrize("entries", [
    {"location": "w.bin", "offset": "abc"}, {"location": "w.bin", "offset": "-5"},
    {"location": "w.bin", "offset": "1e3"}, {"location": "w.bin", "offset": str(2**64)},
    {"location": "w.bin", "offset": "100000"}, {"location": "w.bin", "length": "abc"},
    {"location": "w.bin", "length": "-1"}, {"location": "nul\x00.bin"}, {"location": "x" * 300},
    {"location": ""}, {"location": "dir"},
])
def test_bad_external_data_is_e004(tmp_path: Path, entries: dict[str, str]) -> None:
    """Each used to be ValueError / OSError / OverflowError (PYC-E090)."""
    raw = mo.mlp().graph.initializer[0].raw_data
    (tmp_path / "dir").mkdir()
    path = write(tmp_path, external(mo.mlp(), **entries), **{"w.bin": raw})
    with pytest.raises(PycError) as info:
        pyc_cli.compile_graph(path)
    assert info.value.code == "E004", str(info.value)


@pytest.mark.parametrize("dtype", [999, -1, 0])
def test_unknown_initializer_dtype_number_is_e008(tmp_path: Path, dtype: int) -> None:
    """Naming an unknown dtype number in the message used to raise ValueError itself."""
    model = mo.mlp()
    model.graph.initializer[0].data_type = dtype
    with pytest.raises(PycError) as info:
        pyc_cli.compile_graph(write(tmp_path, model))
    assert info.value.code in ("E003", "E008"), str(info.value)
    assert "E090" not in str(info.value)


@pytest.mark.parametrize("change", ["raw_long", "raw_short", "negative", "rank"])
def test_initializer_data_that_does_not_fit_its_dims_is_e002(tmp_path: Path, change: str) -> None:
    """raw_data of the wrong length used to be a numpy ValueError (PYC-E090)."""
    model = mo.mlp()
    tensor = model.graph.initializer[1]
    if change == "raw_long":
        tensor.raw_data += b"\x00\x00"
    elif change == "raw_short":
        tensor.raw_data = tensor.raw_data[:-4]
    elif change == "negative":
        tensor.dims[0] = -3
    else:
        tensor.dims.append(2)
    with pytest.raises(PycError) as info:
        pyc_cli.compile_graph(write(tmp_path, model))
    assert info.value.code in ("E002", "E003"), str(info.value)


def test_node_name_that_is_not_utf8_is_e002(tmp_path: Path) -> None:
    """protobuf returns invalid UTF-8 in a proto2 string as bytes: `prefix + name` raised
    TypeError (PYC-E090)."""
    data = mo.mlp().SerializeToString().replace(b"relu", b"r\xffl\xfe")
    (tmp_path / "model.onnx").write_bytes(data)
    with pytest.raises(PycError) as info:
        pyc_cli.compile_graph(tmp_path / "model.onnx")
    assert info.value.code == "E002" and "UTF-8" in str(info.value)


# ---------------------------------------------------------------- names in generated C

C_HOSTILE = ['a"b', "*/ int x; /*", "line\nbreak", "back\\slash", "??/", "??=define X",
             "#include <stdio.h>", "ünïcödé", "tail\\"]


@pytest.mark.parametrize("name", C_HOSTILE)
def test_hostile_io_names_compile_to_escaped_c_and_run(tmp_path: Path, name: str) -> None:
    """Input/output/node/graph names with quotes, comment ends, newlines, backslashes and
    trigraphs: the build succeeds, model.c holds them only as octal-escaped literals, model.h
    not at all, the library reports them back exactly, and the numbers are right."""
    model = mo.rename(mo.mlp(), "all", name, random.Random(0))
    path = write(tmp_path, model)
    art = pyc_cli.build(path, tmp_path / "art").artifact
    source = (art / "src" / "model.c").read_text()
    header = (art / "src" / "model.h").read_text()
    code = re.sub(r'"(?:[^"\\\n]|\\[0-7]{1,3}|\\.)*"', '""', source)  # string literals emptied
    assert name not in code and name not in header
    assert c_string(f"{name}0") in source  # the literal is the escaped name
    compiled = pyc_cli.load(art)  # compares the library's io names with the manifest's
    assert [s.name for s in compiled.inputs] == [f"{name}0"]
    x = mo.reference_inputs()
    (y,) = compiled.run({f"{name}0": x}).values()
    np.testing.assert_allclose(y, mo.mlp_reference(x), rtol=1e-5, atol=1e-5)


def test_io_name_with_nul_is_refused_or_round_trips(tmp_path: Path) -> None:
    """A NUL inside an input name cannot survive a C string; the build must say so (or the
    loaded model must report the name exactly)."""
    model = mo.rename(mo.mlp(), "input", "a\x00b", random.Random(0))
    path = write(tmp_path, model)
    try:
        art = pyc_cli.build(path, tmp_path / "art").artifact
    except PycError as exc:
        assert exc.code in ("E003", "E008"), str(exc)
        return
    assert [s.name for s in pyc_cli.load(art).inputs] == ["a\x00b"]


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_float_attribute_builds_to_valid_c(tmp_path: Path, alpha: float) -> None:
    """alpha was pasted into C as Python's `nan` / `inf`: PYC-E020 (generated C does not
    compile). Now NAN / INFINITY, and the kernel computes what numpy does."""
    index = next(i for i, entry in enumerate(mo.OP_ZOO) if entry[0] == "LeakyRelu")
    model = mo.zoo_model(index)
    model.graph.node[0].attribute[0].f = alpha
    art = pyc_cli.build(write(tmp_path, model), tmp_path / "art").artifact
    x = np.array([[-1.0, 0.5, 2.0], [-0.0, -3.0, 1.0]], np.float32)
    (y,) = pyc_cli.load(art).run({"x": x}).values()
    with np.errstate(all="ignore"):
        want = np.where(x >= 0, x, x * np.float32(alpha))
    np.testing.assert_array_equal(y, want)


def test_output_dir_with_deeply_nested_manifest_is_e021(tmp_path: Path) -> None:
    """Deciding whether -o is an old artifact parsed its manifest.json: RecursionError."""
    (tmp_path / "model.onnx").write_bytes(mo.mlp().SerializeToString())
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_bytes(b"[" * 100000 + b"]" * 100000)
    code, output = invoke("build", "model.onnx", "-o", "old", cwd=tmp_path)
    assert_pyc_error(code, output, "E021")
    assert (tmp_path / "old" / "manifest.json").stat().st_size == 200000


def test_inputs_fifo_is_e040_not_a_hang(base_artifact: Path, tmp_path: Path) -> None:
    """np.load on a FIFO blocked forever."""
    os.mkfifo(tmp_path / "x.npz")
    result = cli_subprocess("run", str(base_artifact), "--inputs", "x.npz", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(b"PYC-E040:"), result


def test_output_below_a_file_is_e022_and_output_path_is_exact(base_artifact: Path,
                                                              tmp_path: Path) -> None:
    """--output under a file was NotADirectoryError (PYC-E090); numpy appended .npz to a path
    without it (`--output /dev/full` created /dev/full.npz)."""
    (tmp_path / "afile").write_text("keep")
    code, output = invoke("run", str(base_artifact), "--random-inputs", "0", "--output", "afile/y",
                          cwd=tmp_path)
    assert_pyc_error(code, output, "E022")
    code, output = invoke("run", str(base_artifact), "--random-inputs", "0", "--output", "plain",
                          cwd=tmp_path)
    assert code == 0, output
    assert (tmp_path / "plain").is_file() and not (tmp_path / "plain.npz").exists()
    with np.load(tmp_path / "plain") as data:
        assert data.files == ["y"]


def test_jit_loader_checks_manifest_io_and_sources(art: Path) -> None:
    """The llvmlite path compiles src/ and runs it: the same I/O check as the shared library,
    and sources or system libraries the manifest does not vouch for are refused."""
    from pyc_cli.runtime.jit import jit_load

    edit_manifest(art, lambda m: m["outputs"][0].update(shape=[2]))
    with pytest.raises(PycError) as info:
        jit_load(art)
    assert info.value.code == "E031"
    edit_manifest(art, lambda m: m["toolchain"].update(libraries=["-lm", "-lcrypt"]))
    with pytest.raises(PycError) as info:
        jit_load(art)
    assert info.value.code == "E030" and "-lcrypt" in str(info.value)
