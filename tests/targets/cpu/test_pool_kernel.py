"""The max pool's interior path (windows inside the input, run without bounds checks) against
onnxruntime bit for bit, NaN and infinities included: the interior must keep MLAS's comparison
order (each window column top-down, then the columns left to right, NaN losing or winning as
MLAS's maxps does; on AVX-512 16 windows a vector, strides 1 and 2), and the border pixels
around it keep the checked loop. Shapes: ResNet's
3x3/s2/p1 stem pool, odd widths (the last W % 4 columns compare with ge), 2x2/s2, 5x5/s1/p2,
asymmetric pads, and widths where no window is interior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.artifact.reader import load_graph, read_manifest

CASES = [  # N, C, H, W, kernel, strides, pads (t, l, b, r)
    (1, 3, 17, 19, (3, 3), (2, 2), (1, 1, 1, 1)),
    (1, 2, 16, 16, (2, 2), (2, 2), (0, 0, 0, 0)),
    (2, 2, 13, 23, (5, 5), (1, 1), (2, 2, 2, 2)),
    (1, 1, 9, 11, (3, 2), (1, 2), (0, 1, 2, 0)),
    (1, 2, 6, 5, (3, 3), (1, 1), (1, 1, 1, 1)),
    (1, 1, 4, 3, (3, 3), (1, 1), (0, 0, 0, 0)),
    # wide enough for 16-window AVX-512 blocks (then the scalar rest of the row)
    (1, 3, 9, 75, (3, 3), (2, 2), (1, 1, 1, 1)),
    (1, 2, 7, 53, (3, 3), (1, 1), (1, 1, 1, 1)),
    (1, 1, 6, 70, (2, 3), (1, 2), (0, 1, 0, 0)),
    (1, 1, 5, 40, (3, 3), (2, 2), (1, 1, 1, 1)),
]


def pool_model(n: int, c: int, h: int, w: int, kernel: tuple[int, int],
               strides: tuple[int, int], pads: tuple[int, ...]) -> onnx.ModelProto:
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=list(kernel),
                            strides=list(strides), pads=list(pads))
    graph = helper.make_graph([node], "pool",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("case", CASES, ids=[f"{c[2]}x{c[3]}k{c[4][0]}{c[4][1]}s{c[5][0]}{c[5][1]}"
                                               for c in CASES])
def test_max_pool_matches_onnxruntime_bit_for_bit(case: tuple, tmp_path: Path,
                                                  rng: np.random.Generator) -> None:
    n, c, h, w, kernel, strides, pads = case
    path = tmp_path / "pool.onnx"
    onnx.save(pool_model(n, c, h, w, kernel, strides, pads), path)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    special = rng.random(x.shape)
    x[special < 0.05] = np.nan
    x[(special >= 0.05) & (special < 0.08)] = np.inf
    x[(special >= 0.08) & (special < 0.11)] = -np.inf
    artifact = pyc_cli.build(path, tmp_path / "pool.pyc").artifact
    graph = load_graph(artifact, read_manifest(artifact))
    assert [node.ann.kernel_name for node in graph.nodes] == ["pool_direct"]
    with pyc_cli.load(artifact) as model:
        got = model.run({"x": x})["y"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, expected)


def test_the_stem_pool_has_an_interior(tmp_path: Path) -> None:
    """ResNet's pool runs its interior unchecked (the generated C holds the interior loop)."""
    path = tmp_path / "pool.onnx"
    onnx.save(pool_model(1, 2, 112, 112, (3, 3), (2, 2), (1, 1, 1, 1)), path)
    artifact = pyc_cli.build(path, tmp_path / "pool.pyc").artifact
    source = (artifact / "src" / "model.c").read_text()
    assert "inner_lo" in source
    assert "_mm512_permutex2var_ps" in source  # 16 windows at a time where AVX-512 compiles


@pytest.mark.parametrize("shape,kernel", [((1, 37, 7, 7), (7, 7)), ((2, 5, 3, 11), (3, 11)),
                                          ((1, 3, 1, 1), (1, 1))],
                         ids=["7x7", "3x11-batch2", "1x1"])
def test_a_whole_window_average_pool_sums_in_order(shape: tuple[int, ...], kernel: tuple[int, int],
                                                    tmp_path: Path,
                                                    rng: np.random.Generator) -> None:
    """An AveragePool whose window is its whole input (ResNet-50's 7x7 one) runs a plain sum
    (no bounds checks), in the window loops' order: bit for bit the sequential float32 sum
    divided by the count; within float32 rounding of onnxruntime. A padded pool of the same
    size keeps the checked loops."""
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=list(kernel))
    graph = helper.make_graph([node], "avg",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    path = tmp_path / "avg.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = rng.standard_normal(shape).astype(np.float32) * 3 + 1
    artifact = pyc_cli.build(path, tmp_path / "avg.pyc").artifact
    assert "one window, the whole input" in (artifact / "src" / "model.c").read_text()
    with pyc_cli.load(artifact) as model:
        got = model.run({"x": x})["y"]
    flat = x.reshape(shape[0], shape[1], -1)
    sequential = np.cumsum(flat, axis=-1, dtype=np.float32)[..., -1] / np.float32(flat.shape[-1])
    np.testing.assert_array_equal(got.reshape(sequential.shape), sequential)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    padded = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=list(kernel),
                              pads=[1, 1, 1, 1])
    graph.node[0].CopyFrom(padded)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    artifact = pyc_cli.build(path, tmp_path / "padded.pyc").artifact
    assert "one window, the whole input" not in (artifact / "src" / "model.c").read_text()
