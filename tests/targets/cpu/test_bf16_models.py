"""Models whose own tensors are bfloat16 (issue #14) on the CPU target: every case of
tests/bf16_cases.py built and run against onnxruntime (where its CPU provider has the bfloat16
kernel) or numpy float64 rounded to bfloat16 per op, on fresh random inputs with the output
buffers poisoned (tolerances in bf16_cases.py: Casts and data movement bit for bit, NaN bits
included); the reference MLP and transformer converted to bfloat16 end to end against the
float32 model of the same weights; the artifact's ABI (bfloat16 in and out, a float32 input
refused)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from bf16_cases import (
    BF,
    BF16_MODEL_RTOL,
    CASES,
    Bf16Case,
    bf,
    compare,
    expected_outputs,
    float32_twin,
    mlp,
    to_bfloat16,
)
from conftest import REFERENCE_MODELS
from helpers import randomize_initializers, write_model

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.runtime.native import CompiledModel


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every output buffer starts as 0xFF bytes (NaN in a float, -1 in an int)."""
    def buffers(self: CompiledModel) -> list[np.ndarray]:
        arrays = [np.empty(spec.shape, spec.dtype) for spec in self.outputs]
        for array in arrays:
            array.view(np.uint8).reshape(-1)[:] = 0xFF
        return arrays
    monkeypatch.setattr(CompiledModel, "_output_buffers", buffers)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bf16_case_on_the_cpu(case: Bf16Case, tmp_path: Path, rng: np.random.Generator,
                              poisoned: None) -> None:
    path = write_model(case.make(rng), tmp_path)
    artifact = tmp_path / "a.pyc"
    pyc_cli.build(path, artifact)
    with pyc_cli.load(artifact) as model:
        for _ in range(2):  # fresh inputs each run
            feeds = case.feeds(rng)
            ours = model.run(feeds)
            of_max = case.name == "mlp"
            compare(ours, expected_outputs(case, path, feeds), case.rtol, case.atol, of_max=of_max)


def test_bf16_elementwise_rounds_each_op(tmp_path: Path, rng: np.random.Generator) -> None:
    """Add / Mul / Relu on bfloat16 compute in float32 between casts (the decision log says so),
    and the model's rounding of each result is kept: (x * y) rounded before + z, so the output
    differs from float32's x * y + z rounded once where that rounding matters."""
    from bf16_cases import BF16, graph, rounded
    from onnx import helper
    model = graph([helper.make_node("Mul", ["x", "y"], ["m"]), helper.make_node("Add", ["m", "z"], ["a"]),
                   helper.make_node("Relu", ["a"], ["r"])],
                  [("x", (64, 64), BF16), ("y", (64, 64), BF16), ("z", (64, 64), BF16)], ["r"])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "a.pyc")
    actions = {d.action for d in result.context.decisions}
    assert "compute_bf16_in_f32" in actions, actions
    with pyc_cli.load(tmp_path / "a.pyc") as compiled:
        feeds = {k: bf(rng, 64, 64) for k in "xyz"}
        ours = compiled.run(feeds)["r"].astype(np.float64)
    x, y, z = (feeds[k].astype(np.float64) for k in "xyz")
    per_op = np.maximum(rounded(rounded(x * y) + z), 0)
    once = np.maximum(rounded(x * y + z), 0)
    np.testing.assert_array_equal(ours, per_op)
    assert np.any(per_op != once)  # the test can tell the two apart


@pytest.mark.parametrize("name", ["mlp", "transformer"])  # the CNN's Conv takes bfloat16 from opset 22
def test_reference_model_converted_to_bf16(name: str, tmp_path: Path, rng: np.random.Generator,
                                           poisoned: None) -> None:
    """The reference models with fresh weights converted to bfloat16 end to end (to_bfloat16)
    against onnxruntime's float32 model of the same (bfloat16) weights on the same inputs:
    within BF16_MODEL_RTOL of max |output|."""
    ref = REFERENCE_MODELS[name]
    model = to_bfloat16(randomize_initializers(onnx.load(str(ref.path)), rng))
    path = write_model(model, tmp_path)
    twin = float32_twin(model)
    pyc_cli.build(path, tmp_path / "a.pyc", input_shapes=dict(ref.shapes))
    session = ort.InferenceSession(twin.SerializeToString(), providers=["CPUExecutionProvider"])
    with pyc_cli.load(tmp_path / "a.pyc") as compiled:
        for _ in range(2):
            feeds = ref.random_feeds(rng)
            ours = compiled.run({k: v.astype(BF) if v.dtype == np.float32 else v for k, v in feeds.items()})
            exact = {k: v.astype(BF).astype(np.float32) if v.dtype == np.float32 else v
                     for k, v in feeds.items()}
            names = [o.name for o in session.get_outputs()]
            for key, value in zip(names, session.run(names, exact)):
                assert ours[key].dtype == BF
                scale = float(np.abs(value).max())
                error = float(np.abs(ours[key].astype(np.float32) - value).max())
                assert error <= BF16_MODEL_RTOL * scale, (name, key, error, scale)


def test_bf16_abi(tmp_path: Path, rng: np.random.Generator) -> None:
    """The manifest says bf16, the loaded model takes and returns ml_dtypes.bfloat16 arrays, a
    float32 input is refused (PYC-E041)."""
    path = write_model(mlp(rng), tmp_path)
    pyc_cli.build(path, tmp_path / "a.pyc")
    import json
    manifest = json.loads((tmp_path / "a.pyc" / "manifest.json").read_text())
    assert [e["dtype"] for e in manifest["inputs"]] == ["bf16"]
    with pyc_cli.load(tmp_path / "a.pyc") as model:
        assert [s.dtype for s in (*model.inputs, *model.outputs)] == [np.dtype(BF)] * 3
        x = bf(rng, 16, 48)
        assert model.run({"x": x})["y"].dtype == BF
        with pytest.raises(PycError) as caught:
            model.run({"x": x.astype(np.float32)})
        assert caught.value.code == "E041"


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_bf16_source_is_strict_c11(compiler: str, tmp_path: Path, rng: np.random.Generator) -> None:
    """The bfloat16 struct, its conversions and literals are strict C11 under gcc and clang (no
    warning under -Wall -Wextra -pedantic), for the MLP and the data-movement / Pad model."""
    from bf16_cases import CASES as cases
    from helpers import assert_strict_c11

    for index, make in enumerate([mlp] + [c.make for c in cases if c.name == "gather_pad_scatter"]):
        path = write_model(make(rng), tmp_path, f"m{index}.onnx")
        pyc_cli.build(path, tmp_path / f"a{index}.pyc")
        assert "pyc_bf16_from_float" in (tmp_path / f"a{index}.pyc" / "src" / "model.c").read_text()
        assert_strict_c11(compiler, tmp_path / f"a{index}.pyc")


# not UINT32: out of its range the float32 path itself differs from onnxruntime (C leaves it
# undefined; AVX-512's vcvttps2udq gives 0xffffffff), bfloat16 converts as float32 does
@pytest.mark.parametrize("to", ["INT32", "INT64", "UINT8", "INT8"])
def test_bf16_special_values_to_integers(to: str, tmp_path: Path, rng: np.random.Generator) -> None:
    """bfloat16 NaN, infinities and values past the integer type's range cast as onnxruntime
    casts them on this CPU (through float32, then as its float32 -> integer conversion: x86's
    INT_MIN, a narrow type wrapping), bit for bit."""
    from bf16_cases import BF16, graph, onnxruntime_bf16, special_bf16
    from onnx import TensorProto, helper

    model = graph([helper.make_node("Cast", ["x"], ["y"], to=getattr(TensorProto, to))],
                  [("x", (5, 67), BF16)], ["y"])
    path = write_model(model, tmp_path)
    pyc_cli.build(path, tmp_path / "a.pyc")
    with pyc_cli.load(tmp_path / "a.pyc") as compiled:
        for _ in range(2):
            x = special_bf16(rng, 5, 67)
            x.reshape(-1)[:6] = np.array([np.nan, np.inf, -np.inf, 3e9, -1e20, 300.0], np.float32).astype(BF)
            feeds = {"x": x}
            compare(compiled.run(feeds), onnxruntime_bf16(path, feeds), 0.0, 0.0)


def test_compare_ort_on_bf16_outputs(tmp_path: Path, rng: np.random.Generator) -> None:
    """`pyc run --compare ort` runs onnxruntime on bfloat16 inputs and outputs (IO binding):
    LayerNormalization on bfloat16 within the bfloat16 default tolerance; the reference's
    bfloat16 arrays are onnxruntime's bits (those bf16_cases reads on its own)."""
    from bf16_cases import CASES as cases
    from bf16_cases import onnxruntime_bf16
    from conftest import invoke

    from pyc_cli.compare.reference import run_reference

    (layernorm,) = [c for c in cases if c.name == "layernorm"]
    path = write_model(layernorm.make(rng), tmp_path)
    pyc_cli.build(path, tmp_path / "a.pyc")
    code, output = invoke("run", str(tmp_path / "a.pyc"), "--random-inputs", "1", "--compare", "ort",
                          "--model", str(path))
    assert code == 0 and "rtol 0.016, atol 0.008" in output and "within tolerance" in output, output
    feeds = layernorm.feeds(rng)
    ours, theirs = run_reference(path, feeds)["y"], onnxruntime_bf16(path, feeds)["y"]
    assert ours.dtype == BF and np.array_equal(ours.view(np.uint16), theirs.view(np.uint16))
