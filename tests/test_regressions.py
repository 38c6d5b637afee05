"""Regression tests for defects found by differential fuzzing against onnxruntime.

One test per defect, named after it; each builds a small model with onnx.helper and, where
values matter, compares PyC with onnxruntime on fresh random inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import init, make_model, vinfo, write_model
from onnx import helper

import pyc_cli
from pyc_cli.errors import PycError


def ort_outputs(model_path: Path, feeds: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """onnxruntime's outputs as (name, value) in graph order (a name may repeat)."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return list(zip(names, session.run(None, feeds)))


def build_and_run(path: Path, tmp_path: Path, feeds: dict[str, np.ndarray],
                  **build_args: object) -> tuple[Path, dict[str, np.ndarray]]:
    artifact = pyc_cli.build(path, tmp_path / "artifact", **build_args).artifact  # type: ignore[arg-type]
    with pyc_cli.load(artifact) as model:
        return artifact, model.run(feeds)


def assert_matches_ort(path: Path, tmp_path: Path, feeds: dict[str, np.ndarray],
                       rtol: float = 1e-5, atol: float = 1e-6, **build_args: object) -> Path:
    """Build, run and compare every output (names, order, shapes, dtypes, values) with ORT."""
    artifact, got = build_and_run(path, tmp_path, feeds, **build_args)
    expected = ort_outputs(path, feeds)
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert [o["name"] for o in manifest["outputs"]] == [name for name, _ in expected]
    for name, want in expected:
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
        np.testing.assert_allclose(got[name], want, rtol=rtol, atol=atol, err_msg=name)
    return artifact


# ---------------------------------------------------------------- 1: output names


def test_outputs_keep_onnx_names_and_order(tmp_path: Path, rng: np.random.Generator) -> None:
    """An input returned as an output came back as `copy_<input>_out`; also an initializer
    returned as an output, one value returned twice, and an output another node consumes."""
    weight = rng.standard_normal((2, 3)).astype(np.float32)
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Add", ["y", "w"], ["z"])]
    outputs = [vinfo(n, (2, 3)) for n in ("x", "y", "w", "y", "z")]
    model = make_model(nodes, [vinfo("x", (2, 3))], outputs, [init("w", weight)])
    path = write_model(model, tmp_path)
    feeds = {"x": rng.standard_normal((2, 3)).astype(np.float32)}
    artifact = assert_matches_ort(path, tmp_path, feeds, rtol=0, atol=0)
    names = ("x", "y", "w", "y", "z")
    header_names = (artifact / "src" / "model.c").read_text()
    assert "copy_" not in header_names.split("io_names")[1].split(";")[0]
    for name in names:
        assert f'"{name}"' in header_names


# ---------------------------------------------------------------- 7: dim_value -1


def test_negative_dim_value_is_symbolic(tmp_path: Path, rng: np.random.Generator) -> None:
    """PaddlePaddle exports declare dynamic dims as dim_value -1 (input, output, value_info);
    --input-shape x=1,3,4,6 was refused as not fitting [-1,3,?,?]."""
    weight = rng.standard_normal((5, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(nodes, [vinfo("x", (-1, 3, None, None))], [vinfo("y", (-1, 5, -1, -1))],
                       [init("w", weight)])
    model.graph.value_info.append(vinfo("c", (-1, 5, -1, -1)))
    path = write_model(model, tmp_path)
    feeds = {"x": rng.standard_normal((1, 3, 4, 6)).astype(np.float32)}
    assert_matches_ort(path, tmp_path, feeds, input_shapes={"x": (1, 3, 4, 6)})
    with pytest.raises(PycError) as shape_error:
        pyc_cli.build(path, tmp_path / "wrong", input_shapes={"x": (1, 4, 4, 6)})
    assert shape_error.value.code == "E006" and "[?,3,?,?]" in shape_error.value.what
    with pytest.raises(PycError) as missing:
        pyc_cli.build(path, tmp_path / "unfixed")
    assert missing.value.code == "E005" and "dim0" in missing.value.what


PP_OCR_CLS = Path("/tmp/rapid/whl/rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")


@pytest.mark.skipif(not PP_OCR_CLS.is_file(), reason="the PP-OCR classifier is not downloaded "
                    "(pip download rapidocr-onnxruntime --no-deps -d /tmp/rapid; unzip the wheel)")
def test_negative_dim_value_pp_ocr_classifier(tmp_path: Path, rng: np.random.Generator) -> None:
    feeds = {"x": rng.standard_normal((1, 3, 48, 192)).astype(np.float32)}
    assert_matches_ort(PP_OCR_CLS, tmp_path, feeds, rtol=1e-4, atol=1e-5,
                       input_shapes={"x": (1, 3, 48, 192)})
