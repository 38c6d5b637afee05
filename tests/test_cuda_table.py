"""benchmarks/cuda_table.py without a GPU: the models it builds (torch runs them through
benchmarks/onnx_torch.py, checked here on the CPU against onnxruntime), that PyC builds each of
its cases for --target cuda at the case's precision (NVRTC, no GPU), the output checks and
their tolerances, the markdown tables, the budget, and the torch subprocess's time limit.
The GPU run itself: `python benchmarks/cuda_table.py` on the GPU machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cuda_table  # noqa: E402
from cuda_table import Case  # noqa: E402

torch = pytest.importorskip("torch")


def torch_outputs(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnx
    from onnx_torch import OnnxTorch

    module = OnnxTorch(onnx.load(str(path))).eval()
    with torch.inference_mode():
        return [t.numpy() for t in module(*[torch.from_numpy(feeds[n]) for n in module.inputs])]


# the table's models, at the batch each is built at (ResNet-50 at 2: the batch rewrite, cheaply)
MODEL_CASES = [Case("encoder", 1, "fp32"), Case("encoder", 2, "fp32"), Case("mlp", 1, "fp32"),
               Case("resnet50", 2, "fp32"), Case("layernorm", 64, "fp32"), Case("softmax", 64, "fp32")]


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda c: c.name)
def test_torch_runs_the_same_model_as_onnxruntime(case: Case, tmp_path: Path) -> None:
    """Same weights, same graph: torch (CPU, float32) within the fp32 tolerance of onnxruntime."""
    path, feeds = cuda_table.make_model(case, tmp_path)
    expected = cuda_table.reference(path, feeds)
    assert all(np.abs(f).max() > 0 for f in feeds.values() if f.dtype == np.float32)
    for (name, want), got in zip(expected.items(), torch_outputs(path, feeds)):
        verdict = cuda_table.check(got, want, "fp32", "torch")
        assert verdict["ok"], (name, verdict)
        assert np.abs(want).max() > 0


@pytest.mark.parametrize("case", [Case("encoder", 1, "fp32"), Case("mlp", 1, "fp32"),
                                  Case("resnet50", 1, "fp32"), Case("layernorm", 64, "fp32")],
                         ids=lambda c: c.name)
def test_torch_compile_traces_each_model_whole(case: Case, tmp_path: Path) -> None:
    """Dynamo takes the interpreter's forward as one graph (fullgraph: no break, static shapes),
    as both torch.compile modes on the GPU will; the compiled module computes the same."""
    import onnx
    from onnx_torch import OnnxTorch

    path, feeds = cuda_table.make_model(case, tmp_path)
    module = OnnxTorch(onnx.load(str(path))).eval()
    inputs = [torch.from_numpy(feeds[n]) for n in module.inputs]
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    with torch.inference_mode():
        assert torch.equal(compiled(*inputs)[0], module(*inputs)[0])


@pytest.mark.parametrize("case", [Case("encoder", 1, "fp16"), Case("resnet50", 1, "fp16")],
                         ids=lambda c: c.name)
def test_torch_half_is_within_its_tolerance(case: Case, tmp_path: Path) -> None:
    """torch's float16 model (CPU here) against onnxruntime's float32: TORCH_HALF_RTOL holds with
    room (measured 2.2e-3 and 9e-4 of the largest |output|), so a GPU miss means a real fault."""
    import onnx
    from onnx_torch import OnnxTorch

    path, feeds = cuda_table.make_model(case, tmp_path)
    (want,) = cuda_table.reference(path, feeds).values()
    module = OnnxTorch(onnx.load(str(path))).to(torch.float16).eval()
    inputs = [torch.from_numpy(feeds[n]) for n in module.inputs]
    with torch.inference_mode():
        got = module(*[x.half() if x.is_floating_point() else x for x in inputs])[0].float().numpy()
    verdict = cuda_table.check(got, want, "fp16", "torch")
    assert verdict["ok"] and verdict["max_abs_error"] < 0.5 * cuda_table.TORCH_HALF_RTOL * np.abs(want).max()


def test_resnet50_takes_the_batch(tmp_path: Path) -> None:
    import onnx

    path, feeds = cuda_table.make_model(Case("resnet50", 3, "fp16"), tmp_path)
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
    assert feeds["gpu_0/data_0"].shape == (3, 3, 224, 224)
    assert model.graph.node[-1].op_type == "Gemm"  # logits out
    (out,) = cuda_table.reference(path, feeds).values()
    assert out.shape == (3, 1000)
    # finite in float16 with room to spare, and each image its own logits
    assert 0.1 < np.abs(out).max() < 1000
    assert np.abs(out[0] - out[1]).max() > 1e-3 * np.abs(out).max()


def test_the_default_table_is_the_issues() -> None:
    names = [c.name for c in cuda_table.default_cases()]
    for wanted in ("encoder_b1_fp16", "encoder_b8_fp16", "encoder_b1_fp32", "encoder_b8_fp32",
                   "mlp_b1_fp32", "mlp_b1_fp16", "resnet50_b1_fp16", "resnet50_b32_fp16",
                   "layernorm_b8192_fp32", "softmax_b8192_fp32"):
        assert wanted in names
    assert names[0] == "encoder_b1_fp16"  # the issue's headline row runs first
    assert names.index("resnet50_b32_fp16") < names.index("mlp_b1_fp32")  # targets before extras


# every case's PyC build (NVRTC compiles; nothing runs): the encoder and ResNet-50 at both
# batches and precisions the table asks for
BUILD_CASES = [c for c in cuda_table.default_cases((8192,)) if c.batch < 32] + [Case("resnet50", 32, "fp16")]


@pytest.mark.parametrize("case", BUILD_CASES, ids=lambda c: c.name)
def test_pyc_builds_every_case_for_cuda(case: Case, tmp_path: Path) -> None:
    from pyc_cli.targets.cuda import bindings

    if not bindings.available():
        pytest.skip('the NVRTC wheel is not installed (pip install ".[cuda]")')
    import pyc_cli

    path, _ = cuda_table.make_model(case, tmp_path)
    built = pyc_cli.build(path, tmp_path / "m.pyc", target="cuda", arch="sm_90",
                          precision=case.precision, force=True)
    kernels = {n.ann.kernel.candidate for n in built.graph.nodes if n.ann.kernel is not None}
    if case.model in ("encoder", "mlp"):
        # fp16 puts the encoder's GEMMs on tensor cores; at batch 1 the MLP's are skinny
        assert ("cuda_matmul_mma" in kernels) == (case.precision == "fp16" and case.model == "encoder")
    assert built.artifact.exists() and any("conv" in k for k in kernels) == (case.model == "resnet50")


# ---------------------------------------------------------------- checks

def test_check_tolerances_per_precision_and_engine() -> None:
    rng = np.random.default_rng(3)
    want = rng.standard_normal((4, 50)).astype(np.float32)
    scale = float(np.abs(want).max())
    off = want.copy()
    off[0, 0] += 7e-3 * scale  # 0.7% of the largest |output|
    assert not cuda_table.check(off, want, "fp16", "pyc")["ok"]  # PyC fp16: 5e-3
    assert cuda_table.check(off, want, "fp16", "torch")["ok"]  # torch fp16: 1e-2
    further = want.copy()
    further[0, 0] += 2e-2 * scale
    assert not cuda_table.check(further, want, "fp16", "torch")["ok"]
    assert not cuda_table.check(off, want, "fp32", "torch")["ok"]
    assert cuda_table.check(want + 1e-5, want, "fp32", "pyc")["ok"]
    nan = want.copy()
    nan[1, 1] = np.nan
    assert not cuda_table.check(nan, want, "fp16", "torch")["ok"]
    assert not cuda_table.check(want[:2], want, "fp32", "pyc")["ok"]
    assert cuda_table.check(off, want, "fp16", "pyc")["tolerance"] == {"of_max_abs_output": 5e-3}


def test_run_count_and_bandwidth() -> None:
    assert cuda_table.run_count(0.05, 200, 1.0) == 200
    assert cuda_table.run_count(50.0, 200, 1.0) == 20
    assert cuda_table.run_count(500.0, 200, 1.0) == 10
    band = cuda_table.bandwidth(Case("layernorm", 8192, "fp32"), device_ms=0.04, copy_ms=0.032)
    assert band["bytes_moved"] == 2 * 8192 * 1024 * 4
    assert band["gb_per_s"] == pytest.approx(2 * 8192 * 1024 * 4 / 0.04e-3 / 1e9)
    assert band["fraction_of_copy"] == pytest.approx(0.8)
    assert band["copy_gb_per_s"] == pytest.approx(band["gb_per_s"] / 0.8)


# ---------------------------------------------------------------- the tables

def stats(p50: float) -> dict[str, float]:
    return {"p50": p50, "p95": p50 * 1.1, "min": p50 * 0.9, "runs": 100}


def fake_rows() -> list[dict]:
    encoder = {"case": {"model": "encoder", "batch": 1, "precision": "fp16"}, "name": "encoder_b1_fp16",
               "pyc": {"ok": True, "device_ms": stats(0.5), "wall_ms": stats(0.6)},
               "torch": {"eager": {"ok": True, "device_ms": stats(2.4), "wall_ms": stats(2.5)},
                         "reduce-overhead": {"ok": True, "device_ms": stats(0.66), "wall_ms": stats(0.7)},
                         "max-autotune": {"ok": False, "device_ms": stats(0.1), "wall_ms": stats(0.1)}}}
    mlp = {"case": {"model": "mlp", "batch": 1, "precision": "fp32"}, "name": "mlp_b1_fp32",
           "pyc": {"ok": True, "device_ms": stats(0.05), "wall_ms": stats(0.06)},
           "torch": {"eager": {"ok": True, "device_ms": stats(0.08), "wall_ms": stats(0.09)},
                     "reduce-overhead": {"mode": "reduce-overhead", "error": "boom"},
                     "max-autotune": {"mode": "max-autotune", "skipped": "--budget-s 480 spent"}}}
    kernel = {"case": {"model": "layernorm", "batch": 8192, "precision": "fp32"},
              "name": "layernorm_b8192_fp32",
              "pyc": {"ok": True, "device_ms": stats(0.04), "wall_ms": stats(5.0)},
              "torch": {"eager": {"ok": True, "device_ms": stats(0.05)}},
              "bandwidth": cuda_table.bandwidth(Case("layernorm", 8192, "fp32"), 0.04, 0.032)}
    return [encoder, mlp, kernel]


def test_model_table_cells_and_ratio() -> None:
    table = cuda_table.model_table(fake_rows(), "device_ms")
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, two models (the row kernel has its own table)
    encoder, mlp = lines[2], lines[3]
    # max-autotune's output was wrong: shown so, and never the "best" compile mode
    assert "| wrong |" in encoder and "0.76 (vs reduce-overhead)" in encoder
    assert "0.500 (0.550)" in encoder and "2.400 (2.640)" in encoder
    assert "| failed |" in mlp and "| skipped |" in mlp and mlp.endswith("| - |")


def test_kernel_table_reports_bandwidth() -> None:
    (line,) = cuda_table.kernel_table(fake_rows()).splitlines()[2:]
    assert "[8192, 1024]" in line and "80%" in line and "0.0400" in line
    assert f"{2 * 8192 * 1024 * 4 / 0.04e-3 / 1e9:.0f}" in line


def test_markdown_and_passed() -> None:
    rows = fake_rows()
    text = cuda_table.markdown({"rows": rows, "machine": {"device": "GPU X", "torch": "2.11"}})
    assert "GPU X" in text and text.count("| model |") == 2 and "| op |" in text
    assert cuda_table.passed(rows)  # a wrong torch fp16 result is shown, not a failure
    rows[1]["torch"]["eager"]["ok"] = False  # torch fp32 wrong: the model was not the same
    assert not cuda_table.passed(rows)
    rows = fake_rows()
    rows[0]["pyc"]["ok"] = False
    assert not cuda_table.passed(rows)


# ---------------------------------------------------------------- scheduling

def test_case_modes_and_budget() -> None:
    args = cuda_table.parse_args(["--early-autotune", "encoder_b1_fp16"])
    assert cuda_table.case_modes(Case("encoder", 1, "fp16"), args) == (cuda_table.MODES, ())
    assert cuda_table.case_modes(Case("encoder", 8, "fp16"), args) == (
        ("eager", "reduce-overhead"), ("max-autotune",))
    assert cuda_table.case_modes(Case("softmax", 8192, "fp32"), args) == (("eager",), ())
    budget = cuda_table.Budget(100.0)
    assert budget.limit(150.0) <= 100.0 and budget.limit(10.0) == 10.0
    with pytest.raises(SystemExit):
        cuda_table.parse_args(["--modes", "eager,fast"])


def test_a_torch_job_past_its_limit_keeps_what_it_printed(tmp_path: Path) -> None:
    """The worker prints a line per finished mode; the one it hangs in is recorded as killed."""
    spec = {"modes": ["eager", "reduce-overhead"], "outputs": str(tmp_path / "job")}
    script = ("import json, time; print(json.dumps({'mode': 'eager', 'device_ms': 1}), flush=True);"
              " time.sleep(60)")
    records = cuda_table.run_torch(spec, 3.0, [sys.executable, "-c", script])
    assert records["eager"]["device_ms"] == 1
    assert "killed" in records["reduce-overhead"]["error"]
    assert records["eager"]["worker_seconds"] < 30


def test_a_failing_torch_job_is_recorded(tmp_path: Path) -> None:
    spec = {"modes": ["eager"], "outputs": str(tmp_path / "job"), "copy_nbytes": 4096}
    records = cuda_table.run_torch(spec, 30.0, [sys.executable, "-c", "raise SystemExit('no GPU')"])
    assert "no GPU" in records["eager"]["error"] and "no GPU" in records["copy"]["error"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_torch_worker_checks_and_times(precision: str, tmp_path: Path) -> None:
    """The real worker subprocess (on the CPU here: no CUDA events, wall time only): the MLP's
    output saved, checked against onnxruntime, timed; a wrong reference shows as not ok."""
    from dataclasses import asdict

    args = cuda_table.parse_args(["--torch-device", "cpu", "--modes", "eager", "--seconds", "0.2",
                                  "--repeat", "20"])
    case = Case("mlp", 1, precision)
    data = cuda_table.prepare_case(case, tmp_path)
    row: dict = {"case": asdict(case), "name": case.name, "torch": {}}
    cuda_table.run_modes(row, case, ("eager",), data, args, tmp_path, cuda_table.Budget(120.0))
    eager = row["torch"]["eager"]
    assert eager.get("ok"), eager
    assert eager["dtype"] == ("torch.float16" if precision == "fp16" else "torch.float32")
    assert 10 <= eager["wall_ms"]["runs"] <= 20 and eager["wall_ms"]["p50"] > 0
    assert "device_ms" not in eager
    wrong = {k: v + 0.05 * np.abs(v).max() for k, v in data["expected"].items()}
    cuda_table.check_torch(eager, case, wrong)
    assert eager["ok"] is False


def test_main_writes_the_json_and_the_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The whole run with PyC and the torch subprocess faked (no GPU): every case and mode in
    the JSON, the copy turned into the kernel's bandwidth, the tables printed, exit status 0."""
    def fake_pyc(case: Case, *rest: object) -> dict:
        return {"ok": True, "device_ms": stats(0.5), "wall_ms": stats(0.6)}

    def fake_torch(spec: dict, limit_s: float, command: object = None) -> dict:
        records = {m: {"mode": m, "ok": True, "device_ms": stats(1.0), "wall_ms": stats(1.1)}
                   for m in spec["modes"]}
        if spec["copy_nbytes"]:
            records["copy"] = {"mode": "copy", "device_ms": stats(0.4)}
        return records

    monkeypatch.setattr(cuda_table, "run_pyc", fake_pyc)
    monkeypatch.setattr(cuda_table, "run_torch", fake_torch)
    out = tmp_path / "table.json"
    assert cuda_table.main(["--models", "mlp,softmax", "--kernel-rows", "64", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["complete"] and result["passed"] and "--models mlp,softmax" in result["command"]
    names = [row["name"] for row in result["rows"]]
    assert names == ["softmax_b64_fp32", "mlp_b1_fp16", "mlp_b1_fp32"]
    assert set(result["rows"][1]["torch"]) == set(cuda_table.MODES)
    assert set(result["rows"][0]["torch"]) == {"eager"}
    assert result["rows"][0]["bandwidth"]["fraction_of_copy"] == pytest.approx(0.8)
    printed = capsys.readouterr().out
    assert "0.50 (vs reduce-overhead)" in printed and "80%" in printed
