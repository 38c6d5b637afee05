"""User mistakes on the command line each get their own reason code (never PYC-E090, never a
traceback, exit 2 as click exits on usage errors); nothing is replaced or chosen silently; the CLI
follows the usual conventions (python -m, --debug anywhere, choices in --help, completion)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REFERENCE_MODELS, onnxruntime_outputs
from helpers import init, make_model, vinfo, write_model
from onnx import TensorProto, helper

import pyc_cli.api
from pyc_cli.cli.main import main
from pyc_cli.passes.pipeline import PASS_NAMES
from pyc_cli.targets import TARGET_NAMES

MLP = REFERENCE_MODELS["mlp"]
CNN = REFERENCE_MODELS["cnn"]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _external_model(directory: Path, **entries: str) -> Path:
    """y = x + w with w (2x3 float32) in external data described by `entries`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "w.bin").write_bytes(np.arange(6, dtype=np.float32).tobytes())
    weight = init("w", np.zeros((2, 3), np.float32))
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in entries.items():
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"], name="add")], "g",
                              [vinfo("x", (2, 3))], [vinfo("y", (2, 3))], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = directory / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An MLP artifact, a two-input artifact, input files and models with bad external data."""
    root = tmp_path_factory.mktemp("mistakes")
    paths = {"root": root, "art": root / "mlp.pyc", "art2": root / "add2.pyc"}
    code, output = invoke("build", str(MLP.path), "-o", str(paths["art"]), "--input-shape",
                          "x=3,64")
    assert code == 0, output
    two = make_model([helper.make_node("Add", ["a", "b"], ["c"], name="add")],
                     [vinfo("a", (2, 3)), vinfo("b", (2, 3))], [vinfo("c", (2, 3))])
    code, output = invoke("build", str(write_model(two, root, "add2.onnx")), "-o",
                          str(paths["art2"]))
    assert code == 0, output
    rng = np.random.default_rng(7)
    np.save(root / "x.npy", rng.standard_normal((3, 64)).astype(np.float32))
    np.save(root / "a.npy", rng.standard_normal((2, 3)).astype(np.float32))
    np.savez(root / "empty.npz")
    np.savez(root / "pair.npz", p=np.zeros(2), q=np.ones(2))
    (root / "afile").write_text("not a directory")
    for label, entries in {
        "negative_offset": {"location": "w.bin", "offset": "-8"},
        "text_offset": {"location": "w.bin", "offset": "eight"},
        "huge_length": {"location": "w.bin", "offset": "0", "length": str(2**70)},
        "nul_location": {"location": "w\x00.bin"},
    }.items():
        paths[label] = _external_model(root / label, **entries)
    return paths


# (arguments with {placeholders} for the `work` paths) -> expected reason code
MISTAKES = {
    "npy_for_a_two_input_model": ("run {art2} --inputs {root}/a.npy", "E040"),
    "empty_npz": ("run {art} --inputs {root}/empty.npz", "E040"),
    "npz_of_two_arrays_for_one_name": ("run {art} --inputs x={root}/pair.npz", "E040"),
    "missing_inputs_file": ("run {art} --inputs {root}/nothing.npz", "E040"),
    "named_input_unknown": ("run {art} --inputs y={root}/x.npy", "E041"),
    "named_input_twice": ("run {art} --inputs x={root}/x.npy --inputs x={root}/x.npy", "E041"),
    "output_in_missing_directory": ("run {art} --random-inputs 0 --output "
                                    "{root}/nowhere/dir/o.npz", "E022"),
    "negative_seed": ("run {art} --random-inputs -5", "E050"),
    "html_in_missing_directory": ("explain {art} --html {root}/nowhere/r.html", "E022"),
    "artifact_in_proc": ("build {mlp} -o /proc/pycout --input-shape x=3,64", "E022"),
    "huge_input_shape_dim": ("build {mlp} -o {root}/o1 --input-shape x=99999999999999999999999",
                             "E006"),
    "huge_input_shape": ("build {mlp} -o {root}/o2 --input-shape x=99999999999999999999999,64",
                         "E012"),
    "external_negative_offset": ("build {negative_offset} -o {root}/o3", "E004"),
    "external_text_offset": ("build {text_offset} -o {root}/o4", "E004"),
    "external_huge_length": ("build {huge_length} -o {root}/o5", "E004"),
    "external_nul_in_location": ("build {nul_location} -o {root}/o6", "E004"),
    "repeat_zero": ("run {art} --random-inputs 0 --repeat 0", "E050"),
    "unknown_mode": ("build {mlp} --mode fast", "E050"),
    "unknown_policy": ("build {mlp} --policy fast", "E060"),
    "mode_and_policy_differ": ("build {mlp} --mode balanced --policy memory_first", "E050"),
    "unknown_target": ("build {mlp} --target gpu", "E050"),
    "directory_as_model": ("build {root}", "E050"),
    "output_directory_is_a_file": ("build {mlp} -o {root}/afile --input-shape x=3,64", "E050"),
    "unknown_option": ("run {art} --fast", "E050"),
    "inputs_and_seed": ("run {art} --inputs {root}/x.npy --random-inputs 0", "E050"),
    "another_models_artifact": ("build {cnn} -o {art} --input-shape image=1,3,32,32", "E025"),
    "mode_over_budget": ("build {mlp} -o {root}/o7 --input-shape x=3,64 --mode memory_first "
                         "--memory-budget 100", "E011"),
}


@pytest.mark.parametrize("label", sorted(MISTAKES))
def test_each_user_mistake_has_its_own_code(work: dict[str, Path], label: str) -> None:
    template, expected = MISTAKES[label]
    names = {**{k: str(v) for k, v in work.items()}, "mlp": str(MLP.path), "cnn": str(CNN.path)}
    code, output = invoke(*[part.format(**names) for part in template.split(" ")])
    assert code == 2, output
    assert output.startswith(f"PYC-{expected}:"), output
    assert "what to do:" in output, output
    for internal in ("Traceback", "E090", "internal"):
        assert internal not in output, output


def test_the_artifact_of_another_model_is_left_alone(work: dict[str, Path]) -> None:
    before = (work["art"] / "manifest.json").read_bytes()
    invoke("build", str(CNN.path), "-o", str(work["art"]), "--input-shape", "image=1,3,32,32")
    assert (work["art"] / "manifest.json").read_bytes() == before


def test_npy_inputs_for_a_single_input_model(work: dict[str, Path], tmp_path: Path) -> None:
    x = np.load(work["root"] / "x.npy")
    expected = onnxruntime_outputs(MLP.path, {"x": x})["logits"]
    for spec in (str(work["root"] / "x.npy"), f"x={work['root'] / 'x.npy'}"):
        out = tmp_path / "out.npz"
        code, output = invoke("run", str(work["art"]), "--inputs", spec, "--output", str(out))
        assert code == 0, output
        with np.load(out) as ours:
            np.testing.assert_allclose(ours["logits"], expected, rtol=1e-4, atol=1e-5)


def test_named_npy_inputs_for_each_input(work: dict[str, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    a, b = (rng.standard_normal((2, 3)).astype(np.float32) for _ in range(2))
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", only=b)  # an archive of one array works with NAME= too
    code, output = invoke("run", str(work["art2"]), "--inputs", f"a={tmp_path / 'a.npy'}",
                          "--inputs", f"b={tmp_path / 'b.npz'}", "--output", str(tmp_path / "o"))
    assert code == 0, output
    with np.load(tmp_path / "o") as ours:
        np.testing.assert_allclose(ours["c"], a + b, rtol=1e-6)


def test_output_path_written_is_named(work: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "vad_result"
    code, output = invoke("run", str(work["art"]), "--random-inputs", "1", "--output", str(target))
    assert code == 0, output
    assert f"outputs written to {target}" in output and "no .npz suffix added" in output
    assert target.is_file() and not (tmp_path / "vad_result.npz").exists()
    code, output = invoke("run", str(work["art"]), "--random-inputs", "1", "--json", "--output",
                          str(tmp_path / "o.npz"))
    assert code == 0 and json.loads(output)["output_file"] == str(tmp_path / "o.npz"), output


def test_replacing_artifacts_is_never_silent(tmp_path: Path) -> None:
    out = tmp_path / "art.pyc"
    code, output = invoke("build", str(MLP.path), "-o", str(out), "--input-shape", "x=3,64")
    assert code == 0 and "replacing the" not in output, output
    code, output = invoke("build", str(MLP.path), "-o", str(out), "--input-shape", "x=5,64")
    assert code == 0 and f"replacing the earlier artifact of mlp.onnx in {out}" in output, output
    code, output = invoke("build", str(CNN.path), "-o", str(out), "--input-shape",
                          "image=1,3,32,32")
    assert code == 2 and "PYC-E025:" in output and "--force" in output, output
    assert json.loads((out / "manifest.json").read_text())["model"]["file"] == "mlp.onnx"
    code, output = invoke("build", str(CNN.path), "-o", str(out), "--input-shape",
                          "image=1,3,32,32", "--force")
    assert code == 0 and "replacing the artifact of another model (mlp.onnx" in output, output
    assert json.loads((out / "manifest.json").read_text())["model"]["file"] == "cnn.onnx"


def _budget_decision(artifact: Path) -> dict:
    records = [json.loads(line) for line in (artifact / "decisions.jsonl").read_text().splitlines()]
    return next(r for r in records if r["action"] == "memory_budget")


def test_a_memory_budget_says_which_mode_it_built_and_why(tmp_path: Path) -> None:
    shape = ("--input-shape", "x=3,64", "--memory-budget", "64MiB")
    code, output = invoke("build", str(MLP.path), "-o", str(tmp_path / "auto"), *shape)
    assert code == 0, output
    assert "mode latency_first chosen by the memory budget" in output, output
    assert "chosen by the memory budget" in _budget_decision(tmp_path / "auto")["reason"]
    code, output = invoke("build", str(MLP.path), "-o", str(tmp_path / "asked"), *shape,
                          "--mode", "memory_first")
    assert code == 0 and "mode memory_first as asked" in output, output
    manifest = json.loads((tmp_path / "asked" / "manifest.json").read_text())
    assert manifest["mode"] == "memory_first"  # the mode asked for, not silently the fastest
    assert "as asked" in _budget_decision(tmp_path / "asked")["reason"]


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    version = subprocess.run([sys.executable, "-m", "pyc_cli", "--version"], capture_output=True,
                             text=True, check=False)
    assert version.returncode == 0 and "pyc, version" in version.stdout, version.stderr
    missing = subprocess.run([sys.executable, "-m", "pyc_cli", "build", str(tmp_path / "no.onnx")],
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and missing.stderr.startswith("PYC-E001:"), missing.stderr


def test_debug_is_accepted_after_the_subcommand(work: dict[str, Path]) -> None:
    args = ("run", str(work["art"]), "--inputs", str(work["root"] / "empty.npz"))
    code, output = invoke(*args)
    assert code == 2 and "Traceback" not in output
    for debug_args in (("--debug", *args), (*args, "--debug")):
        code, output = invoke(*debug_args)
        assert code == 2 and "PYC-E040:" in output and "Traceback" in output, output


def test_help_lists_targets_and_passes() -> None:
    code, output = invoke("build", "--help")
    assert code == 0
    flat = " ".join(output.split())
    assert f"--target [{'|'.join(TARGET_NAMES)}]" in flat
    assert all(name in flat for name in PASS_NAMES)


def test_shell_completion_works_as_the_readme_says() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "_PYC_COMPLETE=bash_source pyc" in readme
    program = "from pyc_cli.cli.main import main; main(prog_name='pyc')"
    env = {**os.environ, "_PYC_COMPLETE": "bash_source"}
    script = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                            text=True, check=False)
    assert script.returncode == 0 and "_pyc_completion" in script.stdout, script.stderr
    env = {**os.environ, "_PYC_COMPLETE": "bash_complete", "COMP_WORDS": "pyc bu",
           "COMP_CWORD": "1"}
    words = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                           text=True, check=False)
    assert "plain,build" in words.stdout.splitlines(), words.stdout


@pytest.mark.parametrize(("raised", "code", "exit_status"), [
    (MemoryError(), "E049", 2),
    (OSError(errno.ENOSPC, "No space left on device", "weights.bin"), "E022", 2),
    (RuntimeError("a real defect"), "E090", 3),  # only a bug is an internal error
])
def test_machine_limits_are_not_internal_errors(work: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch,
                                                raised: BaseException, code: str,
                                                exit_status: int) -> None:
    def failing_load(_artifact: object) -> None:
        raise raised

    monkeypatch.setattr(pyc_cli.api, "load", failing_load)
    status, output = invoke("run", str(work["art"]), "--random-inputs", "0")
    assert status == exit_status and output.startswith(f"PYC-{code}:"), output
    assert "Traceback" not in output


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_standard_output_is_e022(work: dict[str, Path]) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "pyc_cli", "explain", str(work["art"])],
                                stdout=full, stderr=subprocess.PIPE, text=True, check=False)
    assert result.returncode == 2 and result.stderr.startswith("PYC-E022:"), result.stderr
