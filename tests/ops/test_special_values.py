"""NaN, ±Inf, -0.0, denormals and huge values propagate as onnxruntime propagates them: the cases
of tests/special_values_cases.py side by side in one model per variant (run-time inputs, and
folded constants for the numpy references), NaN positions exactly, values within rtol 1e-5 /
atol 1e-6; and PyC's own rules where onnxruntime has none."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REFERENCE_MODELS, onnxruntime_outputs
from onnx import helper, numpy_helper
from special_values_cases import (
    ALL_CASES,
    ATOL,
    MODES,
    RTOL,
    Assembled,
    Case,
    F,
    assemble,
    sprinkled,
    with_output_shapes,
)

import pyc_cli

# ---------------------------------------------------------------- known differences

# onnxruntime differs for reasons outside NaN propagation rules; each is a visible xfail
KNOWN = {
}


# ---------------------------------------------------------------- builds shared by the module


@dataclass
class Variant:
    assembled: Assembled
    expected: dict[str, np.ndarray]
    path: Path
    got: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # mode -> outputs


class Builds:
    """One model per variant (run time inputs / folded constants), built lazily per mode."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root, self.seed = root, seed
        self.variants: dict[str, Variant] = {}

    def variant(self, name: str) -> Variant:
        if name not in self.variants:
            folded = name == "folded"
            cases = [c for c in ALL_CASES if c.foldable or not folded]
            rng = np.random.default_rng(self.seed + folded)
            assembled = assemble(cases, rng, folded)
            path = self.root / f"{name}.onnx"
            onnx.save(assembled.model, path)
            expected = onnxruntime_outputs(path, assembled.feeds)
            with_output_shapes(assembled.model, expected)
            onnx.save(assembled.model, path)
            self.variants[name] = Variant(assembled, expected, path)
        return self.variants[name]

    def outputs(self, name: str, mode: str) -> tuple[Variant, dict[str, np.ndarray]]:
        variant = self.variant(name)
        if mode not in variant.got:
            artifact = self.root / f"{name}_{mode}"
            pyc_cli.build(variant.path, artifact, mode=mode)
            with pyc_cli.load(artifact) as compiled:
                variant.got[mode] = compiled.run(variant.assembled.feeds)
        return variant, variant.got[mode]


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    seed = int(np.random.SeedSequence().entropy % (2**32))  # type: ignore[operator]
    print(f"special values seed: {seed}")
    return Builds(tmp_path_factory.mktemp("special"), seed)


def _params(folded: bool) -> list:
    params = []
    for case in ALL_CASES:
        if folded and not case.foldable:
            continue
        marks = [pytest.mark.xfail(reason=KNOWN[case.name], strict=False)] if case.name in KNOWN else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


def _check(builds: Builds, variant_name: str, case: Case) -> None:
    for mode in MODES:
        variant, got = builds.outputs(variant_name, mode)
        for name in variant.assembled.outputs[case.name]:
            expected = variant.expected[name]
            assert got[name].shape == expected.shape, (mode, name)
            np.testing.assert_allclose(got[name], expected, rtol=RTOL, atol=ATOL, equal_nan=True,
                                       err_msg=f"{case.name} ({mode}, {name})")


@pytest.mark.parametrize("case", _params(folded=False))
def test_special_values_match_onnxruntime(builds: Builds, case: Case) -> None:
    _check(builds, "runtime", case)


@pytest.mark.parametrize("case", _params(folded=True))
def test_folded_special_values_match_onnxruntime(builds: Builds, case: Case) -> None:
    """The same ops on constant inputs: constant folding's numpy references agree too."""
    _check(builds, "folded", case)


# ---------------------------------------------------------------- PyC's rule where onnxruntime has none


def test_nan_propagates_through_max_reductions(tmp_path: Path, rng: np.random.Generator) -> None:
    """ReduceMax/Min give NaN for a row holding a NaN, wherever it sits (numpy and the ONNX
    reference do; onnxruntime's answer depends on where the NaN falls in Eigen's SIMD lanes)."""
    x = sprinkled(rng, (2, 3, 6, 6), density=0.05)
    nodes = [helper.make_node("ReduceMax", ["x", "axes"], ["rmax"], keepdims=0),
             helper.make_node("ReduceMin", ["x", "axes"], ["rmin"], keepdims=0)]
    outputs = {"rmax": x.max(axis=3), "rmin": x.min(axis=3)}
    graph = helper.make_graph(
        nodes, "max_nan", [helper.make_tensor_value_info("x", F, list(x.shape))],
        [helper.make_tensor_value_info(k, F, list(v.shape)) for k, v in outputs.items()],
        [numpy_helper.from_array(np.array([3], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "max_nan.onnx")
    for mode in MODES:
        pyc_cli.build(tmp_path / "max_nan.onnx", tmp_path / mode, mode=mode)
        with pyc_cli.load(tmp_path / mode) as compiled:
            got = compiled.run({"x": x})
        for name, expected in outputs.items():
            np.testing.assert_array_equal(got[name], expected, err_msg=f"{name} ({mode})")


def test_layernorm_overflowing_rows_are_exact(tmp_path: Path, rng: np.random.Generator) -> None:
    """Rows of finite values whose float squares overflow (3e38, -3e38 beside ordinary values):
    PyC redoes their statistics in double, so the result is the exact one (numpy in float64),
    not the NaN or zeros that float statistics give (onnxruntime's own answer there depends on
    the row length). Rows holding NaN or inf stay NaN throughout."""
    x = rng.standard_normal((6, 9)).astype(np.float32)
    x[0, 2], x[1, [1, 5]], x[2, [0, 8]], x[3, 4] = 3e38, 3e38, (3e38, -3e38), -3e38
    x[4, 3], x[5, [2, 6]] = np.nan, (np.inf, 3e38)
    scale, bias = rng.standard_normal(9).astype(np.float32), rng.standard_normal(9).astype(np.float32)
    wide = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        mean = wide.mean(axis=1, keepdims=True)
        expected = ((wide - mean) / np.sqrt(((wide - mean) ** 2).mean(axis=1, keepdims=True)
                                            + 1e-5) * scale + bias).astype(np.float32)
    assert np.isnan(expected[4:]).all() and np.isfinite(expected[:4]).all()
    for folded in (False, True):
        inits = [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(bias, "bias")]
        inputs = [] if folded else [helper.make_tensor_value_info("x", F, list(x.shape))]
        if folded:
            inits.append(numpy_helper.from_array(x, "x"))
        graph = helper.make_graph(
            [helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=-1)],
            "ln_huge", inputs, [helper.make_tensor_value_info("y", F, list(x.shape))], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = tmp_path / f"ln_{folded}.onnx"
        onnx.save(model, path)
        for mode in MODES:
            pyc_cli.build(path, tmp_path / f"{folded}_{mode}", mode=mode)
            with pyc_cli.load(tmp_path / f"{folded}_{mode}") as compiled:
                got = compiled.run({} if folded else {"x": x})["y"]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True,
                                       err_msg=f"folded={folded} ({mode})")


# ---------------------------------------------------------------- the shipped MLP


@pytest.fixture(scope="module")
def mlp_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shipped MLP built once per mode."""
    model, root = REFERENCE_MODELS["mlp"], tmp_path_factory.mktemp("mlp")
    for mode in MODES:
        pyc_cli.build(model.path, root / mode, mode=mode, input_shapes=model.shapes)
    return {mode: root / mode for mode in MODES}


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 3e38], ids=["nan", "inf", "-inf", "3e38"])
def test_mlp_special_input_gives_onnxruntime_nan_logits(mlp_artifacts: dict[str, Path],
                                                        rng: np.random.Generator,
                                                        value: float) -> None:
    """One special value in the MLP's input: as many NaN logits (at the same places) as
    onnxruntime, in every mode."""
    model = REFERENCE_MODELS["mlp"]
    x = rng.standard_normal(model.shapes["x"]).astype(np.float32)
    x[int(rng.integers(0, x.shape[0])), int(rng.integers(0, x.shape[1]))] = value
    expected = onnxruntime_outputs(model.path, {"x": x})
    for mode, artifact in mlp_artifacts.items():
        with pyc_cli.load(artifact) as compiled:
            got = compiled.run({"x": x})
        for name, want in expected.items():
            assert np.isnan(got[name]).sum() == np.isnan(want).sum(), (mode, name)
            # the finite logits' rounding scales with their row's largest (a float32 dot of
            # the same terms summed in another order: 1.6e-6 on a logit of 0.04 beside 2.6)
            finite = np.where(np.isfinite(want), np.abs(want), 0.0)
            scale = np.maximum(1.0, finite.max(axis=-1, keepdims=True))
            np.testing.assert_allclose(got[name] / scale, want / scale, rtol=RTOL, atol=ATOL,
                                       equal_nan=True, err_msg=mode)
