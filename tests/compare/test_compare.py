"""`pyc run --compare ort [--per-node]`: the compiled model against onnxruntime on its source.

The reference models agree within the default tolerances, output by output and intermediate by
intermediate; a kernel broken on purpose (a test-only copy of the templates, one node computing
wrongly) is named as the first divergent node with its fused group and kernel; the exit status,
the JSON schema and the errors for a missing onnxruntime or source model are checked."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from conftest import REFERENCE_MODELS, ReferenceModel
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli import templating
from pyc_cli.artifact.manifest import hash_tree
from pyc_cli.artifact.reader import load_graph, read_manifest
from pyc_cli.cli.main import main
from pyc_cli.compare.metrics import compare_value
from pyc_cli.targets import base as target_base
from pyc_cli.templating import templates_dir

TRANSFORMER = REFERENCE_MODELS["transformer"]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def build(model: ReferenceModel, out: Path, *flags: str, keep_source: bool = True) -> Path:
    shapes = [f"--input-shape={name}={','.join(map(str, shape))}"
              for name, shape in model.shapes.items()]
    keep = ["--keep-source"] if keep_source else []
    code, stdout, stderr = invoke("build", str(model.path), "-o", str(out), *shapes, *keep, *flags)
    assert code == 0, stdout + stderr
    return out


def compare_json(artifact: Path, inputs: Path, *flags: str) -> tuple[int, dict, str]:
    code, stdout, stderr = invoke("run", str(artifact), "--inputs", str(inputs), "--compare",
                                  "ort", "--json", *flags)
    assert "Traceback" not in stdout + stderr
    return code, json.loads(stdout), stderr


def save_feeds(model: ReferenceModel, rng: np.random.Generator, path: Path) -> dict[str, np.ndarray]:
    feeds = model.random_feeds(rng)
    np.savez(path, **feeds)
    return feeds


def unoptimized_onnxruntime(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime as --compare runs it: graph optimizations off, each ONNX node as written."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reference models, without Winograd convs: every intermediate is held to the default
    tolerances, which Winograd's rounding exceeds on a few elements for some inputs (its
    accuracy is tests/targets/cpu/test_winograd.py's)."""
    root = tmp_path_factory.mktemp("compare")
    return {name: build(model, root / f"{name}.pyc", "--no-winograd")
            for name, model in REFERENCE_MODELS.items()}


# ---------------------------------------------------------------- healthy models


@pytest.mark.parametrize("name", sorted(REFERENCE_MODELS))
def test_reference_models_match_onnxruntime_output_by_output(
        name: str, artifacts: dict[str, Path], tmp_path: Path, rng: np.random.Generator) -> None:
    model = REFERENCE_MODELS[name]
    feeds = save_feeds(model, rng, tmp_path / "in.npz")
    code, summary, stderr = compare_json(artifacts[name], tmp_path / "in.npz")
    assert code == 0, stderr
    report = summary["compare"]
    assert report["passed"] and report["reference"].startswith("onnxruntime ")
    assert report["per_node"] is None
    # the reported errors are the real ones: recompute them from both runtimes' outputs
    with pyc_cli.load(artifacts[name]) as compiled:
        ours = compiled.run(feeds)
    expected = unoptimized_onnxruntime(model.path, feeds)
    assert [o["name"] for o in report["outputs"]] == list(ours)
    for row in report["outputs"]:
        error = np.abs(ours[row["name"]].astype(np.float64) - expected[row["name"]]).max()
        assert row["max_abs_error"] == pytest.approx(error, rel=1e-12, abs=0)
        assert row["passed"] and row["mismatches"] == 0
        assert (row["rtol"], row["atol"]) == (1e-4, 1e-5)  # float32 defaults


@pytest.mark.parametrize("name", sorted(REFERENCE_MODELS))
def test_every_intermediate_of_the_reference_models_matches(
        name: str, artifacts: dict[str, Path], tmp_path: Path, rng: np.random.Generator) -> None:
    save_feeds(REFERENCE_MODELS[name], rng, tmp_path / "in.npz")
    before = hash_tree(artifacts[name])
    code, summary, stderr = compare_json(artifacts[name], tmp_path / "in.npz", "--per-node")
    assert code == 0, stderr
    per_node = summary["compare"]["per_node"]
    assert per_node["first_divergent"] is None
    assert per_node["compared"] == len(per_node["values"]) > 0
    assert all(v["passed"] for v in per_node["values"])
    # the debug build is the artifact's code: the same outputs, bit for bit
    assert per_node["debug_build_output_max_abs_diff"] == 0
    # schedule order, and only values the compiled model really holds
    graph = load_graph(artifacts[name], read_manifest(artifacts[name]))
    defined = {o: step for step, node in enumerate(graph.nodes) for o in node.outputs}
    assert [v["step"] for v in per_node["values"]] == sorted(v["step"] for v in per_node["values"])
    assert all(defined[v["value"]] == v["step"] for v in per_node["values"])
    assert all(v["value"] not in defined for v in per_node["not_materialized"])
    assert hash_tree(artifacts[name]) == before  # the artifact is left as it was


def test_per_node_debug_build_of_an_artifact_built_with_threads(
        tmp_path: Path, rng: np.random.Generator) -> None:
    """The debug build regenerates model.c with the artifact's --threads (else PYC-E032)."""
    artifact = build(REFERENCE_MODELS["cnn"], tmp_path / "cnn.pyc", "--threads", "2")
    save_feeds(REFERENCE_MODELS["cnn"], rng, tmp_path / "in.npz")
    code, summary, stderr = compare_json(artifact, tmp_path / "in.npz", "--per-node")
    assert code == 0, stderr
    assert summary["compare"]["per_node"]["debug_build_output_max_abs_diff"] == 0


def test_fused_away_values_are_reported_with_the_node_they_live_in(
        artifacts: dict[str, Path], tmp_path: Path, rng: np.random.Generator) -> None:
    save_feeds(TRANSFORMER, rng, tmp_path / "in.npz")
    _, summary, _ = compare_json(artifacts["transformer"], tmp_path / "in.npz", "--per-node")
    per_node = summary["compare"]["per_node"]
    absent = {a["value"]: a for a in per_node["not_materialized"]}
    # the bias-less MatMul result of q_proj exists only inside the matmul's epilogue loop
    q_proj = absent["/layers.0/attn/q_proj/MatMul_output_0"]
    assert q_proj["fused_into"] == "/layers.0/attn/q_proj/MatMul"
    assert "never stored" in q_proj["reason"]
    # the hand-written LayerNorm's pieces live in the LayerNormalization kernel
    assert absent["/layers.0/norm1/Sub_output_0"]["fused_into"].startswith("/layers.0/norm1/")
    rows = {v["value"]: v for v in per_node["values"]}
    gelu = rows["/layers.0/Mul_1_output_0"]
    assert gelu["node"] == "/layers.0/ff_in/MatMul" and gelu["kernel"] == "matmul_packed_const"
    assert "/layers.0/Erf" in gelu["fused_from"]


def test_memory_first_channel_tiles_are_named(tmp_path: Path, rng: np.random.Generator) -> None:
    cnn = ReferenceModel("cnn", REFERENCE_MODELS["cnn"].path, {"image": (1, 3, 32, 32)})  # tiles need batch 1
    artifact = build(cnn, tmp_path / "cnn.pyc", "--mode", "memory_first")
    save_feeds(cnn, rng, tmp_path / "in.npz")
    code, summary, stderr = compare_json(artifact, tmp_path / "in.npz", "--per-node")
    assert code == 0, stderr
    per_node = summary["compare"]["per_node"]
    assert per_node["first_divergent"] is None
    absent = {a["value"]: a for a in per_node["not_materialized"]}
    graph = load_graph(artifact, read_manifest(artifact))
    tiled = {n.ann.tiled_from for n in graph.nodes if n.ann.tiled_from}
    assert {"block1_conv", "pool1"} <= tiled
    # the whole conv output never exists; the Concat joining the pooled slices answers for it
    assert "channel tiles" in absent["block1_relu.out"]["reason"]
    joined = next(v for v in per_node["values"] if v["value"] == "pool1.out")
    assert joined["op"] == "Concat"
    assert {"pool1", "block1_conv", "bn1_batchnorm", "block1_relu"} <= set(joined["fused_from"])


def test_json_schema(artifacts: dict[str, Path], tmp_path: Path, rng: np.random.Generator) -> None:
    save_feeds(REFERENCE_MODELS["cnn"], rng, tmp_path / "in.npz")
    _, summary, _ = compare_json(artifacts["cnn"], tmp_path / "in.npz", "--per-node")
    assert set(summary) == {"outputs", "latency_ms", "arena_bytes", "compare", "run_statistics"}
    report = summary["compare"]
    assert set(report) == {"reference", "model", "passed", "outputs", "per_node"}
    assert report["model"].endswith("source/cnn.onnx")
    metric_keys = {"dtype", "shape", "max_abs_error", "max_rel_error", "rtol", "atol",
                   "mismatches", "worst_index", "passed", "note"}
    for row in report["outputs"]:
        assert set(row) == metric_keys | {"name"}
        assert isinstance(row["max_abs_error"], float) and isinstance(row["passed"], bool)
    per_node = report["per_node"]
    assert set(per_node) == {"compared", "values", "not_materialized", "pyc_only_values",
                             "debug_build_output_max_abs_diff", "first_divergent"}
    step_keys = {"step", "node", "op", "kernel", "function", "fused_from", "value"}
    for row in per_node["values"]:
        assert set(row) == step_keys | metric_keys
        assert row["function"] is None if row["kernel"] == "view" else row["function"].startswith("k")
    for row in per_node["not_materialized"]:
        assert set(row) == {"value", "onnx_node", "reason", "fused_into"}
    # BatchNorm folded into the conv: its output is gone, and the conv's group names it
    assert {"block1_conv", "bn1_batchnorm", "block1_relu"} <= set(per_node["values"][0]["fused_from"])


def test_text_report(artifacts: dict[str, Path]) -> None:
    code, stdout, stderr = invoke("run", str(artifacts["mlp"]), "--random-inputs", "2",
                                  "--compare", "ort", "--per-node")
    assert code == 0, stderr
    for phrase in ("outputs vs onnxruntime", "max abs err", "intermediate values in schedule order",
                   "fused away", "every compared intermediate is within tolerance",
                   "within tolerance"):
        assert phrase in stdout


# ---------------------------------------------------------------- tolerances and exit status


def test_exceeding_the_tolerance_exits_non_zero_with_the_report(
        artifacts: dict[str, Path], tmp_path: Path, rng: np.random.Generator) -> None:
    save_feeds(TRANSFORMER, rng, tmp_path / "in.npz")
    code, summary, stderr = compare_json(artifacts["transformer"], tmp_path / "in.npz",
                                         "--rtol", "0", "--atol", "0")
    assert code == 2 and "PYC-E043:" in stderr and "last_hidden_state" in stderr
    (row,) = summary["compare"]["outputs"]
    assert not summary["compare"]["passed"] and not row["passed"]
    assert (row["rtol"], row["atol"]) == (0, 0) and row["mismatches"] > 0
    assert row["max_abs_error"] > 0 and len(row["worst_index"]) == 3


def test_metrics_follow_allclose_with_exact_integers_and_nan_positions(
        rng: np.random.Generator) -> None:
    reference = rng.standard_normal((4, 5)).astype(np.float32)
    close = reference + np.float32(1e-6) * rng.standard_normal((4, 5)).astype(np.float32)
    assert compare_value("x", close, reference).passed
    off = reference.copy()
    off[2, 3] += 1e-2 + abs(off[2, 3]) * 1e-3
    result = compare_value("x", off, reference)
    assert not result.passed and result.mismatches == 1 and result.worst_index == (2, 3)
    assert result.max_abs_error == pytest.approx(float(abs(off[2, 3] - reference[2, 3])))
    nan = reference.copy()
    nan[0, 0] = np.nan
    assert compare_value("x", nan, nan.copy()).passed  # NaN where the reference has NaN
    assert not compare_value("x", nan, reference).passed
    ints = rng.integers(0, 100, (6,))
    bumped = ints.copy()
    bumped[4] += 1
    assert compare_value("i", ints, ints.copy()).passed
    exact = compare_value("i", bumped, ints)
    assert not exact.passed and (exact.tolerance.rtol, exact.tolerance.atol) == (0, 0)


# ---------------------------------------------------------------- a deliberately broken kernel


@pytest.fixture
def broken_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable]:
    """Build with a test-only copy of the templates in which one edit breaks a kernel; the
    shipped templates are untouched."""
    root = tmp_path / "templates"
    shutil.copytree(templates_dir(), root)

    def patch(relative: str, old: str, new: str) -> None:
        path = root / relative
        text = path.read_text()
        assert old in text, f"{relative} no longer contains {old!r}"
        path.write_text(text.replace(old, new))
        monkeypatch.setattr(templating, "templates_dir", lambda: root)
        monkeypatch.setattr(target_base, "templates_dir", lambda: root)
        templating.template_env.cache_clear()

    yield patch
    templating.template_env.cache_clear()


def _kernel_index(artifact: Path, node_name: str) -> int:
    """The position of a node's kernel call in the generated run function."""
    graph = load_graph(artifact, read_manifest(artifact))
    with_code = [n.name for n in graph.nodes if n.ann.kernel_name not in ("view", "in_place")]
    return with_code.index(node_name)


def test_broken_attention_in_the_second_layer_is_pinpointed(
        artifacts: dict[str, Path], broken_templates: Callable, tmp_path: Path,
        rng: np.random.Generator) -> None:
    target = "/layers.1/attn/Softmax/attention"  # its scores, softmax and weighted sum, fused
    index = _kernel_index(artifacts["transformer"], target)
    # only this one attention (kernel call `index`) scales its probabilities by 1.25
    broken_templates("c/kernels/attention.c.j2", "const float inv = 1 / l[r];",
                     "const float inv = 1 / l[r]{% if k.index == " + str(index)
                     + " %} * 1.25f{% endif %};")
    artifact = build(TRANSFORMER, tmp_path / "broken.pyc")
    save_feeds(TRANSFORMER, rng, tmp_path / "in.npz")
    code, summary, stderr = compare_json(artifact, tmp_path / "in.npz", "--per-node")
    assert code == 2 and "PYC-E043:" in stderr
    first = summary["compare"]["per_node"]["first_divergent"]
    assert first["node"] == target and first["op"] == "pyc.Attention"
    assert first["kernel"] == "attention_rows" and first["function"] == f"k{index}_attention"
    assert {"/layers.1/attn/MatMul", "/layers.1/attn/Softmax", "/layers.1/attn/MatMul_1",
            "/layers.1/attn/Div", "/layers.1/attn/Add"} <= set(first["fused_from"])
    assert first["value"] == "/layers.1/attn/MatMul_1_output_0"
    # the scores and probabilities exist only inside the kernel: named, not compared
    assert "/layers.1/attn/Softmax_output_0" in first["fused_values"]
    assert first["mismatches"] > 0
    rows = summary["compare"]["per_node"]["values"]
    before = [r for r in rows if r["step"] < first["step"]]
    assert before and all(r["passed"] for r in before)
    assert any(r["node"] == "/layers.0/attn/Softmax/attention" and r["passed"] for r in before)


def test_a_broken_gelu_epilogue_names_its_matmul_and_fused_group(
        broken_templates: Callable, tmp_path: Path, rng: np.random.Generator) -> None:
    # erf is off by a factor; only the first layer's GELU (fused into ff_in's MatMul) uses it
    broken_templates("c/scalar_ops.j2", "{%- macro Erf(i) -%}{{ f(i, 'erf') }}({{ i.a[0] }})",
                     "{%- macro Erf(i) -%}(({{ i.ctype }})0.9 * {{ f(i, 'erf') }}({{ i.a[0] }}))")
    artifact = build(TRANSFORMER, tmp_path / "broken.pyc")
    save_feeds(TRANSFORMER, rng, tmp_path / "in.npz")
    code, summary, stderr = compare_json(artifact, tmp_path / "in.npz", "--per-node")
    assert code == 2 and "PYC-E043:" in stderr
    first = summary["compare"]["per_node"]["first_divergent"]
    assert first["node"] == "/layers.0/ff_in/MatMul" and first["kernel"] == "matmul_packed_const"
    assert first["value"] == "/layers.0/Mul_1_output_0"
    assert {"/layers.0/ff_in/Add", "/layers.0/Erf", "/layers.0/Mul_1"} <= set(first["fused_from"])
    # the GELU's pieces exist only inside the matmul's epilogue: named, not compared
    assert "/layers.0/Erf_output_0" in first["fused_values"]
    code, stdout, _ = invoke("run", str(artifact), "--inputs", str(tmp_path / "in.npz"),
                             "--compare", "ort", "--per-node")
    assert code == 2
    assert "first divergent node" in stdout and "/layers.0/ff_in/MatMul" in stdout
    assert "/layers.0/Erf" in stdout


def test_per_node_refuses_an_artifact_this_pyc_would_generate_differently(
        artifacts: dict[str, Path], broken_templates: Callable) -> None:
    broken_templates("c/kernels/attention.c.j2", "const float inv = 1 / l[r];",
                     "const float inv = 1 / l[r] * 1.25f;")
    code, stdout, stderr = invoke("run", str(artifacts["transformer"]), "--random-inputs", "0",
                                  "--compare", "ort", "--per-node")
    assert code == 2 and "PYC-E032:" in stderr and "src/model.c" in stderr
    assert "Traceback" not in stdout + stderr


# ---------------------------------------------------------------- the source model


def test_the_source_model_is_kept_and_hashed(artifacts: dict[str, Path]) -> None:
    manifest = read_manifest(artifacts["mlp"])
    kept = manifest["model"]["kept_copy"]
    assert kept == "source/mlp.onnx"
    assert (artifacts["mlp"] / kept).read_bytes() == REFERENCE_MODELS["mlp"].path.read_bytes()
    assert kept in manifest["files"]


def test_without_a_kept_source_model_points_at_it(tmp_path: Path, rng: np.random.Generator) -> None:
    mlp = REFERENCE_MODELS["mlp"]
    artifact = build(mlp, tmp_path / "mlp.pyc", keep_source=False)  # the default: no copy
    assert not (artifact / "source").exists()
    save_feeds(mlp, rng, tmp_path / "in.npz")
    run = ("run", str(artifact), "--inputs", str(tmp_path / "in.npz"), "--compare", "ort")
    code, stdout, stderr = invoke(*run)
    assert code == 2 and "PYC-E045:" in stderr and "--model" in stderr
    assert "Traceback" not in stdout + stderr
    code, stdout, stderr = invoke(*run, "--model", str(mlp.path))
    assert code == 0, stderr
    code, stdout, stderr = invoke(*run, "--model", str(REFERENCE_MODELS["cnn"].path))
    assert code == 2 and "PYC-E045:" in stderr and "sha256" in stderr
    shutil.copyfile(REFERENCE_MODELS["cnn"].path, tmp_path / "mlp.onnx")  # right name, wrong model
    code, stdout, stderr = invoke(*run)
    assert code == 2 and "PYC-E045:" in stderr
    shutil.copyfile(mlp.path, tmp_path / "mlp.onnx")  # found beside the artifact by its sha256
    code, stdout, stderr = invoke(*run)
    assert code == 0, stderr


def test_external_data_is_kept_beside_the_copy(tmp_path: Path, rng: np.random.Generator) -> None:
    weights = rng.standard_normal((3, 4)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                               helper.make_node("Relu", ["h"], ["y"], name="relu")],
                              "g", [x], [y], [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (tmp_path / "m" / "data").mkdir(parents=True)
    onnx.save(model, str(tmp_path / "m" / "net.onnx"), save_as_external_data=True,
              location="data/net.bin", size_threshold=0)
    pyc_cli.build(tmp_path / "m" / "net.onnx", tmp_path / "net.pyc", keep_source=True)
    manifest = read_manifest(tmp_path / "net.pyc")
    assert set(manifest["model"]["external_data"]) == {"data/net.bin"}
    assert "source/data/net.bin" in manifest["files"]
    np.savez(tmp_path / "in.npz", x=rng.standard_normal((2, 3)).astype(np.float32))
    shutil.rmtree(tmp_path / "m")  # the copy alone is enough
    code, summary, stderr = compare_json(tmp_path / "net.pyc", tmp_path / "in.npz", "--per-node")
    assert code == 0, stderr
    assert summary["compare"]["passed"]


def test_model_whose_external_data_changed_is_refused(tmp_path: Path,
                                                      rng: np.random.Generator) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    weights = rng.standard_normal((2, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"], name="add")], "g",
                              [x], [y], [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "net.onnx"), save_as_external_data=True, location="net.bin",
              size_threshold=0)
    pyc_cli.build(tmp_path / "net.onnx", tmp_path / "net.pyc", keep_source=False)
    (tmp_path / "net.bin").write_bytes((weights + 1).tobytes())
    np.savez(tmp_path / "in.npz", x=rng.standard_normal((2, 3)).astype(np.float32))
    code, stdout, stderr = invoke("run", str(tmp_path / "net.pyc"), "--inputs",
                                  str(tmp_path / "in.npz"), "--compare", "ort", "--model",
                                  str(tmp_path / "net.onnx"))
    assert code == 2 and "PYC-E045:" in stderr and "net.bin" in stderr


# ---------------------------------------------------------------- user mistakes


def test_missing_onnxruntime_says_how_to_install_it(artifacts: dict[str, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    code, stdout, stderr = invoke("run", str(artifacts["mlp"]), "--random-inputs", "0",
                                  "--compare", "ort")
    assert code == 2 and "PYC-E044:" in stderr and "pip install onnxruntime" in stderr
    assert "Traceback" not in stdout + stderr


@pytest.mark.parametrize("flags", [("--per-node",), ("--rtol", "1e-3"), ("--atol", "0"),
                                   ("--model", "x.onnx")])
def test_compare_options_without_compare_are_refused(artifacts: dict[str, Path],
                                                     flags: tuple[str, ...]) -> None:
    code, _, stderr = invoke("run", str(artifacts["mlp"]), "--random-inputs", "0", *flags)
    assert code == 2 and "PYC-E050:" in stderr and "--compare" in stderr
