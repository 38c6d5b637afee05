"""Issue #15, point 2, the ops whose shape operand comes from a graph input with declared values
(`--input-values`) that no other test covered or that refused before: Tile by run-time repeats
(the input itself and computed from it: value dims; cast from a float input: tile_runtime),
Range whose delta is an input (its count a dim the kernel computes, bounded by the smallest
step), Range of float bounds, and Slice whose starts and ends both come from inputs (whether
it clamps or is empty depends on both: computed at run time). Checked against onnxruntime on
fresh random inputs at values across the declared bounds (the extremes and 1), in the three
memory modes, output buffers poisoned with NaN; values outside the declared bounds are
refused with PYC-E041. Tolerance: exact (rtol 0, atol 0) for
the copies; Range of floats start + i * delta in double, stored as float32 (rtol 1e-6)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from conftest import onnxruntime_outputs
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.errors import PycError
from tests.dynamic.checks import poison_outputs
from tests.helpers import init, make_model, rand, write_model

MODES = ["latency_first", "balanced", "memory_first"]
I64, F32 = TensorProto.INT64, TensorProto.FLOAT


def _vi(name: str, shape: list[int | str], elem: int = F32):
    return helper.make_tensor_value_info(name, elem, shape)


def _check_runs(path: Path, artifact: Path, feeds: Iterable[dict[str, np.ndarray]],
                refused: Iterable[dict[str, np.ndarray]], monkeypatch: pytest.MonkeyPatch,
                rtol: float = 0.0) -> None:
    """Each of `feeds` (float inputs drawn fresh) matches onnxruntime; each of `refused` is
    refused by PyC with PYC-E041."""
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(artifact) as model:
        for given in feeds:
            given = {k: rand(rng, *v.shape) if k == "x" else v for k, v in given.items()}
            want = onnxruntime_outputs(path, given)
            got = model.run(given)
            for name, value in want.items():
                assert got[name].shape == value.shape, (name, given)
                np.testing.assert_allclose(got[name], value, rtol=rtol, atol=0,
                                           err_msg=f"{name} at {given}")
        for given in refused:
            with pytest.raises(PycError) as error:
                model.run(given)
            assert error.value.code == "E041", given


@pytest.mark.parametrize("mode", MODES)
def test_tile_by_repeats_from_an_input(tmp_path: Path, mode: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """y = tile(x[2, 3], r) and z = tile(x, r + 1) + 1, r declared 0..4."""
    nodes = [helper.make_node("Tile", ["x", "r"], ["y"], name="tile"),
             helper.make_node("Add", ["r", "one"], ["r1"], name="plus_one"),
             helper.make_node("Tile", ["x", "r1"], ["t"], name="tile_computed"),
             helper.make_node("Add", ["t", "onef"], ["z"], name="add")]
    model = make_model(nodes, [_vi("x", [2, 3]), _vi("r", [2], I64)],
                       [_vi("y", ["a", "b"]), _vi("z", ["c", "d"])],
                       [init("one", np.array([1, 1], np.int64)),
                        init("onef", np.array(1.0, np.float32))])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"r": (0, 4)})
    assert [int(d) for d in result.graph.types["z"].shape] == [10, 15]
    x = np.ones((2, 3), np.float32)
    feeds = [{"x": x, "r": np.array(r, np.int64)} for r in ([1, 1], [0, 0], [4, 4], [0, 3], [2, 1])]
    refused = [{"x": x, "r": np.array(r, np.int64)} for r in ([5, 1], [1, -1])]
    _check_runs(path, result.artifact, feeds, refused, monkeypatch)


@pytest.mark.parametrize("mode", MODES)
def test_tile_by_repeats_cast_from_float_values(tmp_path: Path, mode: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """y = tile(x[2, 3], concat([2], int64(f))), f a float declared 0..4: no value dims (a
    Cast), so the second axis is a dim tile_runtime computes (bound 3 * 4) and checks; the
    first, known to be 2 * 2, is checked too."""
    nodes = [helper.make_node("Cast", ["f"], ["fi"], name="to_int", to=I64),
             helper.make_node("Concat", ["two", "fi"], ["r"], name="repeats", axis=0),
             helper.make_node("Tile", ["x", "r"], ["y"], name="tile_cast")]
    model = make_model(nodes, [_vi("x", [2, 3]), _vi("f", [1])], [_vi("y", [4, "b"])],
                       [init("two", np.array([2], np.int64))])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"f": (0.0, 4.0)})
    shape = result.graph.types["y"].shape
    assert int(shape[0]) == 4 and str(shape[1]) == "rt_tile_cast_1" and int(shape[1]) == 12
    x = np.ones((2, 3), np.float32)
    feeds = [{"x": x, "f": np.array([f], np.float32)} for f in (1.0, 0.0, 4.0, 2.7, 3.0)]
    refused = [{"x": x, "f": np.array([f], np.float32)} for f in (5.0, -1.0)]
    _check_runs(path, result.artifact, feeds, refused, monkeypatch)


@pytest.mark.parametrize("mode", MODES)
def test_range_by_a_delta_from_an_input(tmp_path: Path, mode: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """y = float(range(0, 12, d)) * x[1], d declared 1..4: the count is at most 12."""
    nodes = [helper.make_node("Range", ["zero", "twelve", "d"], ["r"], name="range_d"),
             helper.make_node("Cast", ["r"], ["rf"], name="to_float", to=F32),
             helper.make_node("Mul", ["rf", "x"], ["y"], name="scale")]
    model = make_model(nodes, [_vi("x", [1]), _vi("d", [], I64)], [_vi("y", ["k"])],
                       [init("zero", np.array(0, np.int64)), init("twelve", np.array(12, np.int64))])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"d": (1, 4)})
    assert int(result.graph.types["y"].shape[0]) == 12
    x = np.ones(1, np.float32)
    feeds = [{"x": x, "d": np.array(d, np.int64)} for d in (1, 4, 3, 2, 1)]
    refused = [{"x": x, "d": np.array(d, np.int64)} for d in (0, 5)]
    _check_runs(path, result.artifact, feeds, refused, monkeypatch)


@pytest.mark.parametrize("mode", MODES)
def test_range_of_float_bounds_from_an_input(tmp_path: Path, mode: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """y = range(0.5, n, 0.75) + x[1], n a float declared 0..10: at most 13 elements."""
    nodes = [helper.make_node("Range", ["start", "n", "delta"], ["r"], name="range_f"),
             helper.make_node("Add", ["r", "x"], ["y"], name="shift")]
    model = make_model(nodes, [_vi("x", [1]), _vi("n", [])], [_vi("y", ["k"])],
                       [init("start", np.array(0.5, np.float32)),
                        init("delta", np.array(0.75, np.float32))])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"n": (0.0, 10.0)})
    assert int(result.graph.types["y"].shape[0]) == 13
    x = np.ones(1, np.float32)
    feeds = [{"x": x, "n": np.array(n, np.float32)} for n in (0.0, 1.0, 10.0, 7.7, 0.5, 1.26)]
    refused = [{"x": x, "n": np.array(20.0, np.float32)}]
    _check_runs(path, result.artifact, feeds, refused, monkeypatch, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_slice_with_starts_and_ends_from_inputs(tmp_path: Path, mode: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """y = x[8][st:en] * 2 with st and en both declared 0..8 (empty where en <= st)."""
    nodes = [helper.make_node("Slice", ["x", "st", "en"], ["s"], name="slice_both"),
             helper.make_node("Mul", ["s", "two"], ["y"], name="double")]
    model = make_model(nodes, [_vi("x", [8]), _vi("st", [1], I64), _vi("en", [1], I64)],
                       [_vi("y", ["k"])], [init("two", np.array(2.0, np.float32))])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode,
                           input_values={"st": (0, 8), "en": (0, 8)})
    assert int(result.graph.types["y"].shape[0]) == 8
    x = np.ones(8, np.float32)
    feeds = [{"x": x, "st": np.array([a], np.int64), "en": np.array([b], np.int64)}
             for a, b in ((0, 8), (3, 5), (5, 3), (8, 8), (0, 1), (7, 8), (0, 0))]
    refused = [{"x": x, "st": np.array([9], np.int64), "en": np.array([8], np.int64)}]
    _check_runs(path, result.artifact, feeds, refused, monkeypatch)
