"""The `pyc` command line: happy paths, machine-readable contracts, and every user mistake
getting a reason-coded error (PYC-Exxx), a non-zero exit, no traceback and no half-written files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REFERENCE_MODELS, invoke, onnxruntime_outputs
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli.errors import ERROR_CODES, errors_markdown

MLP = REFERENCE_MODELS["mlp"]


def assert_user_error(code: int, output: str, error: str) -> None:
    assert code == 2, output
    assert f"PYC-{error}:" in output, output
    assert "Traceback" not in output


def test_help_on_every_command() -> None:
    for command in ([], ["build"], ["run"], ["explain"]):
        code, output = invoke(*command, "--help")
        assert code == 0 and "Usage:" in output


def test_build_default_output_is_beside_the_model(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    model.write_bytes(MLP.path.read_bytes())
    code, output = invoke("build", str(model), "--input-shape", "x=1,64")
    assert code == 0, output
    assert (tmp_path / "net.pyc" / "manifest.json").is_file()


def test_run_writes_outputs_matching_onnxruntime(mlp_artifact: Path, tmp_path: Path,
                                                 rng: np.random.Generator) -> None:
    feeds = MLP.random_feeds(rng)
    np.savez(tmp_path / "in.npz", **feeds)
    code, output = invoke("run", str(mlp_artifact), "--inputs", str(tmp_path / "in.npz"),
                          "--output", str(tmp_path / "out.npz"))
    assert code == 0, output
    with np.load(tmp_path / "out.npz") as ours:
        expected = onnxruntime_outputs(MLP.path, feeds)
        np.testing.assert_allclose(ours["logits"], expected["logits"], rtol=1e-4, atol=1e-5)


def test_run_json_contract(mlp_artifact: Path) -> None:
    code, output = invoke("run", str(mlp_artifact), "--random-inputs", "3", "--repeat", "20",
                          "--json")
    assert code == 0, output
    summary = json.loads(output)
    assert summary["outputs"] == {"logits": {"shape": [3, 10], "dtype": "float32"}}
    assert summary["latency_ms"]["runs"] == 20
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p95"]
    assert summary["arena_bytes"] == json.loads((mlp_artifact / "manifest.json").read_text())[
        "arena_bytes"]


def test_explain_json_contract(mlp_artifact: Path) -> None:
    code, output = invoke("explain", str(mlp_artifact), "--json")
    assert code == 0, output
    data = json.loads(output)
    for key in ("model", "target", "mode", "passes", "fusions", "kernels", "memory"):
        assert key in data
    assert [p["name"] for p in data["passes"]][0] == "canonicalize"
    assert set(data["memory"]) >= {"arena_bytes", "no_reuse_bytes", "lower_bound_bytes",
                                   "reuse_count"}
    assert all(kernel["kernel"] for kernel in data["kernels"])
    # Gemm + Add + Relu became one matmul with an epilogue: the fusion names the merged nodes
    assert any(f["kind"] == "epilogue" and len(f["nodes"]) >= 2 for f in data["fusions"])


def test_explain_text_tells_the_story(mlp_artifact: Path) -> None:
    code, output = invoke("explain", str(mlp_artifact))
    assert code == 0, output
    for phrase in ("Passes, in order", "Fusions", "Kernels", "Memory plan", "lower bound"):
        assert phrase in output


def test_real_entry_point_reports_errors_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    result = subprocess.run([sys.executable, "-m", "pyc_cli.cli.main", "build", str(missing)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("PYC-E001:") and "Traceback" not in result.stderr


# ---------------------------------------------------------------- bad models


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_text("this is not a protobuf at all \x00\xff")
    code, output = invoke("build", str(bad), "-o", str(tmp_path / "out"))
    assert_user_error(code, output, "E002")
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)


def test_truncated_file(tmp_path: Path) -> None:
    data = MLP.path.read_bytes()
    bad = tmp_path / "model.onnx"
    bad.write_bytes(data[: len(data) // 3])
    code, output = invoke("build", str(bad), "-o", str(tmp_path / "out"), "--input-shape",
                          "x=1,64")
    assert code == 2 and ("PYC-E002:" in output or "PYC-E003:" in output), output
    assert "Traceback" not in output and not (tmp_path / "out").exists()


def _model(nodes: list, inputs: list, outputs: list, initializers: list | None = None,
           opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers or [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_unknown_ops_are_all_listed_with_node_names(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok_relu"),
             helper.make_node("FancyOp", ["a"], ["b"], name="first_bad", domain="com.vendor"),
             helper.make_node("OtherOp", ["b"], ["c"], name="second_bad", domain="com.vendor"),
             helper.make_node("FancyOp", ["c"], ["y"], name="third_bad", domain="com.vendor")]
    path = tmp_path / "m.onnx"
    model = _model(nodes, [x], [y])
    model.opset_import.append(helper.make_opsetid("com.vendor", 1))
    onnx.save(model, str(path))
    code, output = invoke("build", str(path), "-o", str(tmp_path / "out"))
    assert_user_error(code, output, "E007")
    for name in ("first_bad", "second_bad", "third_bad"):
        assert name in output
    assert "3 node(s)" in output and "ok_relu" not in output
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)


def test_symbolic_input_without_shape_names_input_and_dims() -> None:
    code, output = invoke("build", str(MLP.path), "-o", "/nonexistent/never")
    assert_user_error(code, output, "E005")
    assert "'x'" in output and "batch" in output and "--input-shape x=" in output


@pytest.mark.parametrize("spec", ["y=1,64", "x=1,65", "x=", "x=a,b", "x1,64", "x=0,64"])
def test_bad_input_shape_arguments(spec: str) -> None:
    code, output = invoke("build", str(MLP.path), "--input-shape", spec, "-o", "/nonexistent/x")
    assert_user_error(code, output, "E006")


def test_external_data_escaping_the_model_directory_is_refused(tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(6, np.float32).tobytes())
    weight = numpy_helper.from_array(np.zeros((2, 3), np.float32), "w")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "24")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    weight.ClearField("raw_data")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    model = _model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [x], [y], [weight])
    path = model_dir / "m.onnx"
    path.write_bytes(model.SerializeToString())
    code, output = invoke("build", str(path), "-o", str(tmp_path / "out"))
    assert_user_error(code, output, "E004")
    assert "outside the model directory" in output


def test_external_data_inside_the_directory_loads(tmp_path: Path, rng: np.random.Generator) -> None:
    weights = rng.standard_normal((2, 3)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    model = _model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [x], [y],
                   [numpy_helper.from_array(weights, "w")])
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    pyc_cli.build(tmp_path / "m.onnx", tmp_path / "out")
    feeds = {"x": rng.standard_normal((2, 3)).astype(np.float32)}
    with pyc_cli.load(tmp_path / "out") as compiled:
        np.testing.assert_allclose(compiled.run(feeds)["y"], feeds["x"] + weights, rtol=1e-6)


def test_hostile_names_never_reach_generated_code_unescaped(tmp_path: Path,
                                                            rng: np.random.Generator) -> None:
    evil_in = 'in*/ "quote" \\ #define X\nnewline'
    evil_out = 'out/* */"; system("rm -rf /"); //'
    x = helper.make_tensor_value_info(evil_in, TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info(evil_out, TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Relu", [evil_in], ["mid*/"], name='*/ int evil = 1; /*'),
             helper.make_node("Neg", ["mid*/"], [evil_out], name='"\\" #include <x>')]
    path = tmp_path / "m.onnx"
    onnx.save(_model(nodes, [x], [y]), str(path))
    pyc_cli.build(path, tmp_path / "out")
    source = (tmp_path / "out" / "src" / "model.c").read_text()
    for fragment in ("*/ int evil", "#include <x>", "system(", "#define X", "mid*/"):
        assert fragment not in source
    feeds = {evil_in: rng.standard_normal((2, 3)).astype(np.float32)}
    with pyc_cli.load(tmp_path / "out") as compiled:
        assert [s.name for s in compiled.outputs] == [evil_out]
        np.testing.assert_array_equal(compiled.run(feeds)[evil_out], -np.maximum(feeds[evil_in], 0))
    # the C metadata returns the exact original names
    import ctypes

    library = ctypes.CDLL(str(tmp_path / "out" / "libmodel.so"))
    library.m_io_name.restype = ctypes.c_char_p  # the symbol prefix comes from m.onnx
    assert library.m_io_name(0, 0).decode() == evil_in
    assert library.m_io_name(1, 0).decode() == evil_out


def test_output_directory_that_is_not_an_artifact_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, output = invoke("build", str(MLP.path), "--input-shape", "x=1,64", "-o", str(out))
    assert_user_error(code, output, "E021")
    assert (out / "notes.txt").read_text() == "keep me"


def test_rebuilding_over_an_artifact_replaces_it(mlp_artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "again.pyc"
    for shape in ("x=1,64", "x=5,64"):
        code, output = invoke("build", str(MLP.path), "--input-shape", shape, "-o", str(out))
        assert code == 0, output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["shape"] == [5, 64]
    assert not _leftovers(tmp_path)


# ---------------------------------------------------------------- bad runs


def test_wrong_input_name_dtype_shape_and_missing_inputs(mlp_artifact: Path, tmp_path: Path) -> None:
    good = np.zeros((3, 64), np.float32) + 0.5
    cases = {
        "wrong_name": {"y": good},  # (an empty .npz is PYC-E040: test_cli_mistakes.py)
        "extra": {"x": good, "z": good},
        "wrong_dtype": {"x": good.astype(np.float64)},
        "wrong_shape": {"x": np.ones((4, 64), np.float32)},
    }
    for label, feeds in cases.items():
        path = tmp_path / f"{label}.npz"
        np.savez(path, **feeds)
        code, output = invoke("run", str(mlp_artifact), "--inputs", str(path))
        assert_user_error(code, output, "E041")


def test_inputs_file_that_is_not_npz(mlp_artifact: Path, tmp_path: Path) -> None:
    bad = tmp_path / "in.npz"
    bad.write_text("nope")
    code, output = invoke("run", str(mlp_artifact), "--inputs", str(bad))
    assert_user_error(code, output, "E040")


@pytest.mark.parametrize("victim", ["weights.bin", "libmodel.so", "src/model.c"])
def test_tampered_artifact_is_refused_before_loading(mlp_artifact: Path, tmp_path: Path,
                                                     victim: str) -> None:
    import shutil

    copy = tmp_path / "copy.pyc"
    shutil.copytree(mlp_artifact, copy)
    target = copy / victim
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    code, output = invoke("run", str(copy), "--random-inputs", "0")
    assert_user_error(code, output, "E031")
    assert victim in output


def test_not_an_artifact(tmp_path: Path) -> None:
    code, output = invoke("run", str(tmp_path), "--random-inputs", "0")
    assert_user_error(code, output, "E030")
    code, output = invoke("explain", str(tmp_path))
    assert_user_error(code, output, "E030")


def test_error_codes_document_is_current() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
    assert docs.read_text() == errors_markdown(), "run `make docs`"
    assert all(code[0] in "EW" and code[1:].isdigit() and len(code) == 4 for code in ERROR_CODES)


def test_memory_budget_picks_the_fastest_mode_that_fits(tmp_path: Path) -> None:
    # the CNN built for any CPU (its convs gather im2col columns into a workspace that
    # memory_first caps; AVX2/AVX-512 convs read their input in place, leaving every mode the
    # same arena, as the transformer's fused attention does)
    model = REFERENCE_MODELS["cnn"]
    shapes = ["--cpu", "portable"] + [arg for name, dims in model.shapes.items()
                                      for arg in ("--input-shape", f"{name}={','.join(map(str, dims))}")]
    arenas = {}
    for mode in ("latency_first", "memory_first"):
        result = pyc_cli.build(model.path, tmp_path / mode, mode=mode, input_shapes=model.shapes,
                               cpu="portable")
        arenas[mode] = result.plan.arena_bytes
    assert arenas["memory_first"] < arenas["latency_first"]
    code, output = invoke("build", str(model.path), *shapes, "-o", str(tmp_path / "big"),
                          "--memory-budget", str(arenas["latency_first"]))
    assert code == 0 and "mode latency_first" in output, output
    code, output = invoke("build", str(model.path), *shapes, "-o", str(tmp_path / "tight"),
                          "--memory-budget", f"{arenas['memory_first'] / 1024}KiB")
    assert code == 0 and "mode memory_first" in output, output
    manifest = json.loads((tmp_path / "tight" / "manifest.json").read_text())
    assert manifest["mode"] == "memory_first"
    assert manifest["flags"]["memory_budget"] == arenas["memory_first"]
    code, output = invoke("build", str(model.path), *shapes, "-o", str(tmp_path / "none"),
                          "--memory-budget", "1KiB")
    assert_user_error(code, output, "E011")
    assert f"smallest achievable arena is {arenas['memory_first']} bytes" in output
    assert not (tmp_path / "none").exists()
    code, output = invoke("build", str(model.path), *shapes, "--memory-budget", "lots")
    assert_user_error(code, output, "E050")


def test_artifact_has_a_memory_timeline_picture(mlp_artifact: Path) -> None:
    svg = (mlp_artifact / "memory_timeline.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<rect") >= 3
    plan = json.loads((mlp_artifact / "memory_plan.json").read_text())
    assert set(plan["what_if"]) == {"latency_first", "balanced", "memory_first"}


def test_explain_html_report_inlines_the_timeline(mlp_artifact: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    code, output = invoke("explain", str(mlp_artifact), "--html", str(report))
    assert code == 0, output
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "Fusions" in html
    plan = json.loads((mlp_artifact / "memory_plan.json").read_text())
    assert str(plan["arena_bytes"]) in html


def test_explain_refuses_a_tampered_artifact(mlp_artifact: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy.pyc"
    shutil.copytree(mlp_artifact, copy)
    (copy / "memory_timeline.svg").write_text("<svg><script>alert(1)</script></svg>")
    code, output = invoke("explain", str(copy), "--html", str(tmp_path / "r.html"))
    assert_user_error(code, output, "E031")
    assert not (tmp_path / "r.html").exists()


def _model_with_several_problems(tmp_path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])
    shape = helper.make_tensor_value_info("target", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="fine_relu"),
             helper.make_node("FancyOp", ["a"], ["b"], name="custom", domain="com.vendor"),
             helper.make_node("Unique", ["x"], ["nz"], name="unique"),
             helper.make_node("Cast", ["x"], ["h"], to=TensorProto.INT8, name="to_int8"),
             helper.make_node("MatMul", ["h", "wh"], ["hm"], name="int8_matmul"),
             helper.make_node("Reshape", ["x", "target"], ["r"], name="runtime_reshape"),
             helper.make_node("Resize", ["a", "", "sc"], ["rz"], name="odd_rounding",
                              nearest_mode="round_half_even"),
             helper.make_node("Add", ["a", "a"], ["y"], name="fine_add")]
    inits = [numpy_helper.from_array(np.ones((8, 4), np.int8), "wh"),
             numpy_helper.from_array(np.ones(2, np.float32), "sc")]
    graph = helper.make_graph(nodes, "g", [x, shape], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.vendor", 1)])
    path = tmp_path / "several.onnx"
    onnx.save(model, str(path))
    return path


def test_check_reports_every_problem_grouped_by_reason(tmp_path: Path) -> None:
    path = _model_with_several_problems(tmp_path)
    code, output = invoke("check", str(path), "--json")
    assert code == 1
    report = json.loads(output)
    problems = {reason: sorted(p["node"] for p in group) for reason, group in report["problems"].items()}
    assert problems == {"unknown op": ["custom", "unique"], "dtype": ["int8_matmul"],
                        "attribute value": ["odd_rounding"],
                        "data-dependent shape": ["runtime_reshape"]}
    assert report["nodes"] == 8 and report["supported_nodes"] == 3
    assert report["node_share"] == pytest.approx(3 / 8) and 0 < report["flop_share"] < 1
    assert report["assumed_dims"] == ["x"]
    code, text = invoke("check", str(path))
    assert code == 1 and "3/8 nodes" in text and "data-dependent shape (1):" in text
    assert invoke("check", str(MLP.path), "--input-shape", "x=2,64")[0] == 0


def test_build_failure_lists_every_problem(tmp_path: Path) -> None:
    path = _model_with_several_problems(tmp_path)
    code, output = invoke("build", str(path), "--input-shape", "x=2,8", "-o", str(tmp_path / "out"))
    assert_user_error(code, output, "E007")
    for node in ("custom", "unique", "int8_matmul", "odd_rounding", "runtime_reshape"):
        assert node in output
    assert not (tmp_path / "out").exists()


def test_dump_ir_after_shows_the_kernels_of_the_cpu_built_for(tmp_path: Path) -> None:
    """--dump-ir-after prints the IR the build would compile: kernel choices of the ISA that
    --cpu names (the CNN's stride-1 convs: Winograd or an implicit GEMM on AVX-512, the im2col
    GEMM on the portable build), and writes no artifact."""
    model = REFERENCE_MODELS["cnn"]
    shapes = [arg for name, dims in model.shapes.items()
              for arg in ("--input-shape", f"{name}={','.join(map(str, dims))}")]
    kernels = {}
    for cpu in ("portable", "skylake-avx512"):
        code, output = invoke("build", str(model.path), *shapes, "--cpu", cpu, "-o",
                              str(tmp_path / cpu), "--dump-ir-after", "select_kernels")
        assert code == 0, output
        kernels[cpu] = {line.split('kernel="')[1].split('"')[0] for line in output.splitlines()
                        if "= Conv(" in line}
        assert not (tmp_path / cpu).exists()
    assert kernels == {"portable": {"conv2d_im2col_gemm"},
                       "skylake-avx512": {"conv2d_implicit_gemm", "conv2d_winograd"}}
