"""Issue #15: TopK along a symbolic axis (a sequence `n:LO..HI`): the row length, a row's
stride and the order array's bound are read at run time (topk_axis_dims), with K a constant
or read from an input (topk_axis_runtime: K is a dim the kernel computes, 0..HI, refused at
run time past the row with status 6 / PYC-E041, where onnxruntime fails the run too).
Checked against onnxruntime on fresh random inputs (values bit for bit: TopK copies them;
indices exactly), output buffers poisoned with NaN, at the lowest size, the bound and
between."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import onnxruntime_outputs
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir.symbolic import parse_input_shapes
from tests.dynamic.checks import poison_outputs
from tests.helpers import init, make_model, write_model

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(tmp_path: Path, rank: int, k: int | None, largest: int) -> Path:
    """TopK of x ([b, n] along -1, or [2, n, 3] along 1) by K (a constant, or the input k);
    the values scaled by a following Mul (a reader of the output's dims)."""
    shape = ["b", "n"] if rank == 2 else [2, "n", 3]
    out = ["b", "m"] if rank == 2 else [2, "m", 3]
    inputs = [helper.make_tensor_value_info("x", F, shape)]
    initializers = [init("scale", np.array(1.5, np.float32))]
    if k is None:
        inputs.append(helper.make_tensor_value_info("k", I64, [1]))
    else:
        initializers.append(init("k", np.array([k], np.int64)))
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1 if rank == 2 else 1,
                              largest=largest),
             helper.make_node("Mul", ["v", "scale"], ["y"])]
    model = make_model(nodes, inputs, [helper.make_tensor_value_info("y", F, out),
                                       helper.make_tensor_value_info("i", I64, out)],
                       initializers)
    return write_model(model, tmp_path)


def _x(rng: np.random.Generator, rank: int, batch: int, n: int) -> np.ndarray:
    shape = (batch, n) if rank == 2 else (2, n, 3)
    return rng.standard_normal(shape).astype(np.float32)


def _check(model: pyc_cli.runtime.native.CompiledModel, path: Path,
           feeds: dict[str, np.ndarray]) -> None:
    want = onnxruntime_outputs(path, feeds)
    got = model.run(feeds)
    assert got["y"].shape == want["y"].shape and got["i"].shape == want["i"].shape
    np.testing.assert_array_equal(got["i"], want["i"])
    np.testing.assert_array_equal(got["y"], want["y"])


def _build_dims_kernel(tmp_path: Path, rank: int, lowest: int, largest: int = 1) -> Path:
    """The model with K = 5 along n:LOWEST..40, built: its TopK on topk_axis_dims."""
    path = _model(tmp_path, rank, 5, largest)
    bounds = f"n:{lowest}..40"
    spec = f"x=batch:1..4,{bounds}" if rank == 2 else f"x=2,{bounds},3"
    shapes, _ = parse_input_shapes([spec])
    result = pyc_cli.build(path, tmp_path / "art", input_shapes=shapes)
    assert [n.ann.kernel_name for n in result.graph.nodes if n.op == "TopK"] == ["topk_axis_dims"]
    return path


@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("largest", [1, 0])
def test_constant_k_along_a_symbolic_axis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          rank: int, largest: int) -> None:
    """K = 5 along n:5..40 (every row holds K): static outputs of K along the axis."""
    path = _build_dims_kernel(tmp_path, rank, 5, largest)
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(tmp_path / "art") as model:
        for batch, n in ((1, 5), (4, 40), (3, 17), (2, 6), (1, 40)):
            _check(model, path, {"x": _x(rng, rank, batch, n)})


@pytest.mark.parametrize("rank", [2, 3])
def test_run_time_k_along_a_symbolic_axis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          rank: int) -> None:
    """K from an input along n:1..40: the output axis is a dim in 0..40 the kernel computes;
    K from 0 to the row (1 and the bound included); K past the row or negative: E041."""
    path = _model(tmp_path, rank, None, 1)
    spec = "x=batch:1..4,n:1..40" if rank == 2 else "x=2,n:1..40,3"
    shapes, _ = parse_input_shapes([spec, "k=1"])
    result = pyc_cli.build(path, tmp_path / "art", input_shapes=shapes)
    assert [n.ann.kernel_name for n in result.graph.nodes if n.op == "TopK"] == \
        ["topk_axis_runtime"]
    axis = 1
    assert result.graph.types["v"].shape[axis].bounds() == (0, 40)  # bounded by the axis
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(tmp_path / "art") as model:
        for batch, n, k in ((1, 1, 1), (1, 1, 0), (4, 40, 40), (2, 40, 1), (3, 13, 7),
                            (1, 9, 9), (4, 27, 0), (2, int(rng.integers(2, 40)), 2)):
            _check(model, path, {"x": _x(rng, rank, batch, n), "k": np.array([k], np.int64)})
        for n, k in ((7, 8), (1, 2), (40, 41), (5, -1)):
            with pytest.raises(PycError) as refused:
                model.run({"x": _x(rng, rank, 1, n), "k": np.array([k], np.int64)})
            assert refused.value.code == "E041"


@pytest.mark.parametrize("rank", [2, 3])
def test_constant_k_past_the_shortest_row_is_refused_at_run_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rank: int) -> None:
    """K = 5 along n:1..40: rows shorter than K are inside the bounds. The build accepts them
    (the corner check skips n < 5: errors.RunTimeCheckedError) and the kernel refuses such a
    run (status 6, E041), as onnxruntime fails it; rows of K and more run."""
    path = _build_dims_kernel(tmp_path, rank, 1)
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(tmp_path / "art") as model:
        for batch, n in ((1, 5), (4, 40), (2, 11)):
            _check(model, path, {"x": _x(rng, rank, batch, n)})
        for batch, n in ((1, 1), (4, 4), (2, 3)):
            with pytest.raises(PycError) as refused:
                model.run({"x": _x(rng, rank, batch, n)})
            assert refused.value.code == "E041"


def test_constant_k_past_every_row_is_refused_at_build(tmp_path: Path) -> None:
    """K = 5 along n:1..4 (no row in the bounds holds K: E051, the rule's E009 inside, as
    every rule refusing symbolic dims), and along a static axis of 4 (E009), naming the node."""
    path = _model(tmp_path, 2, 5, 1)
    for spec, code in (("x=batch:1..4,n:1..4", "E051"), ("x=3,4", "E009")):
        shapes, _ = parse_input_shapes([spec])
        with pytest.raises(PycError) as refused:
            pyc_cli.build(path, tmp_path / "art", input_shapes=shapes)
        assert refused.value.code == code and "TopK_0" in refused.value.where, spec
        assert "TopK K=5 exceeds the axis size" in refused.value.what


def test_topk_along_a_symbolic_axis_is_deterministic(tmp_path: Path) -> None:
    path = _model(tmp_path, 3, None, 0)
    shapes, _ = parse_input_shapes(["x=2,n:1..40,3", "k=1"])
    for name in ("a", "b"):
        pyc_cli.build(path, tmp_path / name, input_shapes=shapes)
    for file in ("src/model.c", "model.ir", "memory_plan.json", "decisions.jsonl"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file


def test_ties_along_a_symbolic_axis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """int32 data from 0..3 (many equal values: the lower index first, as onnxruntime), K from
    an input, n:1..64."""
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1, largest=1)]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.INT32, [3, "n"]),
                               helper.make_tensor_value_info("k", I64, [1])],
                       [helper.make_tensor_value_info("v", TensorProto.INT32, [3, "m"]),
                        helper.make_tensor_value_info("i", I64, [3, "m"])])
    path = write_model(model, tmp_path)
    shapes, _ = parse_input_shapes(["x=3,n:1..64", "k=1"])
    pyc_cli.build(path, tmp_path / "art", input_shapes=shapes)
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(tmp_path / "art") as model_run:
        for n, k in ((1, 1), (64, 64), (64, 10), (30, 29), (7, 3)):
            feeds = {"x": rng.integers(0, 4, (3, n)).astype(np.int32),
                     "k": np.array([k], np.int64)}
            want = onnxruntime_outputs(path, feeds)
            got = model_run.run(feeds)
            np.testing.assert_array_equal(got["i"], want["i"])
            np.testing.assert_array_equal(got["v"], want["v"])
