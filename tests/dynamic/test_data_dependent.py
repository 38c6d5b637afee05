"""Issue #15, point 2: sizes that depend on input *values*, computed at run time. The node that
computes such a size writes it into the run-time dims (a computed dim, bounded by the input
values declared with `input_values` / `--input-values`, or by the op's semantics), the nodes
after it read it there, the arena is sized for the bound, and outputs come back at their actual
shapes. Checked against onnxruntime on values across the declared bounds, output buffers
poisoned with NaN (every element of the actual shape must be written)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import onnxruntime_outputs
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir.symbolic import parse_input_shapes
from tests.dynamic.checks import compile_driver, poison_outputs
from tests.helpers import init, make_model, write_model


def _range_model(tmp_path: Path) -> Path:
    """y = sin(float(Range(start, limit, 2)) * scale): an iota whose count the inputs decide."""
    nodes = [helper.make_node("Range", ["start", "limit", "two"], ["r"]),
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["rf", "scale"], ["s"]),
             helper.make_node("Sin", ["s"], ["y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("start", TensorProto.INT64, []),
                               helper.make_tensor_value_info("limit", TensorProto.INT64, []),
                               helper.make_tensor_value_info("scale", TensorProto.FLOAT, [])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
                       [init("two", np.array(2, np.int64))])
    return write_model(model, tmp_path)


def test_range_to_input_values_runs_at_every_count(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = _range_model(tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", input_values={"start": (-10, 10),
                                                                 "limit": (0, 64)})
    # the count's bound: ceil((64 - (-10)) / 2) = 37 elements
    assert result.graph.types["y"].shape[0].bounds() == (0, 37)
    poison_outputs(monkeypatch)
    rng = np.random.default_rng(0)
    with pyc_cli.load(tmp_path / "art") as model:
        for start, limit in [(0, 10), (-10, 64), (3, 3), (7, 1), (-3, 0), (1, 2), (9, 64)]:
            feeds = {"start": np.array(start, np.int64), "limit": np.array(limit, np.int64),
                     "scale": np.array(rng.uniform(0.1, 1.0), np.float32)}
            want = onnxruntime_outputs(path, feeds)["y"]
            got = model.run(feeds)["y"]
            assert got.shape == want.shape == (max(0, -(-(limit - start) // 2)),)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        # a count past the bound the arena was sized for is refused, nothing overflows
        with pytest.raises(PycError) as refused:
            model.run({"start": np.array(-20, np.int64), "limit": np.array(64, np.int64),
                       "scale": np.array(1.0, np.float32)})
        assert refused.value.code == "E041" and "--input-values" in (refused.value.hint or "")


def test_range_without_declared_values_asks_for_them(tmp_path: Path) -> None:
    with pytest.raises(PycError) as refused:
        pyc_cli.build(_range_model(tmp_path), tmp_path / "art")
    assert refused.value.code == "E008" and "--input-values" in (refused.value.hint or "")


def test_input_values_name_an_input(tmp_path: Path) -> None:
    with pytest.raises(PycError) as refused:
        pyc_cli.build(_range_model(tmp_path), tmp_path / "art", input_values={"nope": (0, 1)})
    assert refused.value.code == "E006" and "'nope'" in refused.value.what
    with pytest.raises(PycError) as malformed:
        pyc_cli.build(_range_model(tmp_path), tmp_path / "art", input_values={"limit": (5, 1)})
    assert malformed.value.code == "E006"


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
def test_pad_with_run_time_pads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Pads from an input (negative ones crop): every padded axis a computed dim."""
    inputs = ["x", "pads"] + (["value"] if mode == "constant" else [])
    model = make_model([helper.make_node("Pad", inputs, ["y"], mode=mode)],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6]),
                        helper.make_tensor_value_info("pads", TensorProto.INT64, [4])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
                       [init("value", np.array(2.5, np.float32))] if mode == "constant" else [])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", input_values={"pads": (-2, 3)})
    assert [d.bounds() for d in result.graph.types["y"].shape] == [(0, 10), (0, 12)]
    poison_outputs(monkeypatch)
    rng = np.random.default_rng(1)
    with pyc_cli.load(tmp_path / "art") as compiled:
        for pads in ([0, 0, 0, 0], [1, 2, 3, 0], [3, 3, 3, 3], [-2, 1, 0, -2], [2, -1, -1, 3]):
            feeds = {"x": rng.standard_normal((4, 6)).astype(np.float32),
                     "pads": np.array(pads, np.int64)}
            want = onnxruntime_outputs(path, feeds)["y"]
            got = compiled.run(feeds)["y"]
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want)  # copies: exact


def test_slice_with_run_time_starts_and_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """starts / ends from inputs over a symbolic batch and a static axis, steps 1 and -2:
    input dims first in the run-time dims, then the computed ones."""
    model = make_model([helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 7]),
                        helper.make_tensor_value_info("starts", TensorProto.INT64, [2]),
                        helper.make_tensor_value_info("ends", TensorProto.INT64, [2])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
                       [init("axes", np.array([0, 1], np.int64)),
                        init("steps", np.array([1, -2], np.int64))])
    path = write_model(model, tmp_path)
    pyc_cli.build(path, tmp_path / "art", input_shapes={"x": ("batch:1..6", 7)})
    poison_outputs(monkeypatch)
    rng = np.random.default_rng(2)
    with pyc_cli.load(tmp_path / "art") as compiled:
        for batch, starts, ends in [(6, [0, 6], [6, -8]), (3, [1, 5], [2, 0]), (1, [0, -1], [9, -9]),
                                    (5, [-2, 100], [-100, 2]), (4, [-9, 3], [2, 3]),
                                    (2, [2**62, -2**62], [2**62, 2**62])]:
            feeds = {"x": rng.standard_normal((batch, 7)).astype(np.float32),
                     "starts": np.array(starts, np.int64), "ends": np.array(ends, np.int64)}
            want = onnxruntime_outputs(path, feeds)["y"]
            got = compiled.run(feeds)["y"]
            assert got.shape == want.shape, (batch, starts, ends)
            np.testing.assert_array_equal(got, want)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # NaN-poisoned int64
def test_nonzero_and_its_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NonZero over a symbolic batch: its count is a computed dim in 0..numel; an elementwise
    loop and a transpose read it after it. Empty (all zero) and full inputs included."""
    nodes = [helper.make_node("NonZero", ["x"], ["idx"]),
             helper.make_node("Transpose", ["idx"], ["t"], perm=[1, 0]),
             helper.make_node("Cast", ["t"], ["tf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["tf", "scale"], ["y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2]),
                        helper.make_tensor_value_info("idx", TensorProto.INT64, [2, "n"])],
                       [init("scale", np.array([0.5, 3.0], np.float32))])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", input_shapes={"x": ("batch:1..9", 5)})
    assert result.graph.types["y"].shape[0].bounds() == (0, 45)
    poison_outputs(monkeypatch)
    rng = np.random.default_rng(3)
    with pyc_cli.load(tmp_path / "art") as compiled:
        for batch, share in [(1, 0.5), (9, 0.3), (4, 0.0), (7, 1.0), (2, 0.9)]:
            x = (rng.standard_normal((batch, 5)) * (rng.random((batch, 5)) < share)).astype(np.float32)
            want = onnxruntime_outputs(path, {"x": x})
            got = compiled.run({"x": x})
            for name in ("y", "idx"):
                assert got[name].shape == want[name].shape, (batch, name)
                np.testing.assert_array_equal(got[name], want[name])


def test_cli_declares_input_values(tmp_path: Path) -> None:
    """`pyc build --input-values`; `pyc run --random-inputs` draws within the declared values
    and compares with onnxruntime; `--per-node` says it cannot tap computed sizes yet."""
    from conftest import invoke

    path = _range_model(tmp_path)
    out = tmp_path / "art"
    code, text = invoke("build", str(path), "-o", str(out), "--no-cache", "--keep-source",
                        "--input-values", "start=-10..10", "--input-values", "limit=0..64")
    assert code == 0, text
    manifest = __import__("json").loads((out / "manifest.json").read_text())
    assert manifest["flags"]["input_values"] == {"limit": [0, 64], "start": [-10, 10]}
    # the count Range computes; limit's element, a value dim the entry point reads
    assert [d.get("computed") for d in manifest["dims"]] == ["Range_0", "input limit[0]"]
    code, text = invoke("run", str(out), "--random-inputs", "1", "--compare", "ort")
    assert code == 0 and "within tolerance" in text, text
    code, text = invoke("run", str(out), "--random-inputs", "1", "--compare", "ort", "--per-node")
    assert code != 0 and "PYC-E050" in text, text
    code, text = invoke("build", str(path), "-o", str(tmp_path / "bad"), "--input-values", "limit=0-64")
    assert code != 0 and "PYC-E006" in text, text


def test_the_c_abi_reads_computed_sizes(tmp_path: Path) -> None:
    """tests/c/shaped_driver.c on a model whose output size NonZero computes: the dims list the
    input dim then the computed one, and NAME_output_shape gives the run's actual count."""

    nodes = [helper.make_node("NonZero", ["x"], ["idx"]),
             helper.make_node("Cast", ["idx"], ["y"], to=TensorProto.FLOAT)]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, "n"])])
    path = write_model(model, tmp_path)
    art = tmp_path / "art"
    pyc_cli.build(path, art, input_shapes={"x": ("batch:1..4", 3)})
    exe = compile_driver(art, "shaped_driver.c", tmp_path / "driver")
    rng = np.random.default_rng(4)
    for batch in (1, 3, 4):
        x = (rng.standard_normal((batch, 3)) * (rng.random((batch, 3)) < 0.6)).astype(np.float32)
        x.tofile(tmp_path / "x.bin")
        ran = __import__("subprocess").run(
            [str(exe), str(art / "weights.bin"), str(tmp_path / "x.bin"), str(tmp_path / "y.bin"),
             str(batch), "3"], capture_output=True, text=True, check=False)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        count = int(np.count_nonzero(x))
        assert "dim batch 1..4" in ran.stdout and "dim rt_NonZero_0_1 0..12" in ran.stdout
        assert f"output 2 {count}" in ran.stdout
        y = np.fromfile(tmp_path / "y.bin", np.float32).reshape(2, count)
        np.testing.assert_array_equal(y, onnxruntime_outputs(path, {"x": x})["y"])


def test_value_dims_make_sizes_from_one_element_the_same_dim(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An int64 `size` input with declared values: ConstantOfShape(size) and Range(0, size[1])
    broadcast together (the same value dim), then a MatMul whose B is computed at run time;
    the entry point refuses a size outside the declared values."""
    nodes = [helper.make_node("ConstantOfShape", ["size"], ["zeros"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("Gather", ["size", "one"], ["w"], axis=0),
             helper.make_node("Range", ["zero", "w", "one"], ["iota"]),
             helper.make_node("Cast", ["iota"], ["iota_f"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["zeros", "iota_f"], ["grid"]),  # [h, w] + [w]
             helper.make_node("Transpose", ["grid"], ["grid_t"]),
             helper.make_node("MatMul", ["grid", "grid_t"], ["y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("size", TensorProto.INT64, [2])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["h", "h2"])],
                       [init("zero", np.array(0, np.int64)), init("one", np.array(1, np.int64))])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", input_values={"size": (0, 12)})
    assert str(result.graph.types["y"].shape[0]) == "val_size_0"
    poison_outputs(monkeypatch)
    with pyc_cli.load(tmp_path / "art") as compiled:
        for size in ([3, 5], [1, 1], [12, 12], [7, 0], [0, 4]):
            feeds = {"size": np.array(size, np.int64)}
            want = onnxruntime_outputs(path, feeds)["y"]
            got = compiled.run(feeds)["y"]
            assert got.shape == want.shape == (size[0], size[0])
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        with pytest.raises(PycError) as refused:
            compiled.run({"size": np.array([13, 2], np.int64)})
        assert refused.value.code == "E041"


def test_a_reshape_decides_a_value_dim_checked_at_entry(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The 3-D AffineGrid function's last step: data [2, h*w, 3] (2: a static batch) reshaped
    to [size[0], h, w, 3], valid only where size[0] is 2. The Reshape's rule takes the value dim
    the element count decides as that number (its output [2, h, w, 3]) and the entry point
    accepts no other value for it (status 6: PYC-E041), where onnxruntime fails the run."""
    nodes = [helper.make_node("ConstantOfShape", ["hw"], ["zeros"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
             helper.make_node("Reshape", ["zeros", "column"], ["flat"]),  # [1, h*w, 1]
             helper.make_node("Add", ["flat", "theta"], ["moved"]),  # [2, h*w, 3]
             helper.make_node("Slice", ["size", "zero", "one"], ["n"]),
             helper.make_node("Concat", ["n", "hw", "three"], ["grid_shape"], axis=0),
             helper.make_node("Reshape", ["moved", "grid_shape"], ["y"])]
    model = make_model(
        nodes, [helper.make_tensor_value_info("size", TensorProto.INT64, [1]),
                helper.make_tensor_value_info("hw", TensorProto.INT64, [2]),
                helper.make_tensor_value_info("theta", TensorProto.FLOAT, [2, 1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "h", "w", 3])],
        [init("column", np.array([1, -1, 1], np.int64)), init("three", np.array([3], np.int64)),
         init("zero", np.array([0], np.int64)), init("one", np.array([1], np.int64))])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", input_values={"size": (0, 8), "hw": (1, 9)})
    assert result.graph.types["y"].shape[0] == 2 and \
        [str(d) for d in result.graph.types["y"].shape[1:3]] == ["val_hw_0", "val_hw_1"]
    assert "value < 2 || value > 2" in (result.artifact / "src" / "model.c").read_text()
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(result.artifact) as compiled:
        for h, w in ((1, 1), (3, 5), (9, 9), (2, 7)):
            feeds = {"size": np.array([2], np.int64), "hw": np.array([h, w], np.int64),
                     "theta": rng.standard_normal((2, 1, 3)).astype(np.float32)}
            want = onnxruntime_outputs(path, feeds)["y"]
            got = compiled.run(feeds)["y"]
            assert got.shape == want.shape == (2, h, w, 3)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        for n in (1, 3):  # a size[0] the element count does not allow: refused, nothing run
            with pytest.raises(PycError) as refused:
                compiled.run({**feeds, "size": np.array([n], np.int64)})
            assert refused.value.code == "E041"


def test_declared_values_of_data_stay_data(tmp_path: Path) -> None:
    """Values declared for an input that decides no shape (OneHot's on/off values) are read from
    the tensor at run time, never taken as numbers (a decomposition once read the bound)."""
    model = make_model([helper.make_node("OneHot", ["indices", "depth", "values"], ["y"])],
                       [helper.make_tensor_value_info("indices", TensorProto.INT64, [3]),
                        helper.make_tensor_value_info("values", TensorProto.INT32, [2])],
                       [helper.make_tensor_value_info("y", TensorProto.INT32, [3, 6])],
                       [init("depth", np.array(6.0, np.float32))])
    path = write_model(model, tmp_path)
    pyc_cli.build(path, tmp_path / "art", input_values={"indices": (0, 64), "values": (0, 64)})
    with pyc_cli.load(tmp_path / "art") as compiled:
        for indices, values in (([0, 5, 2], [2, 5]), ([1, 1, 4], [0, 64]), ([3, 0, 5], [7, 7])):
            feeds = {"indices": np.array(indices, np.int64), "values": np.array(values, np.int32)}
            np.testing.assert_array_equal(compiled.run(feeds)["y"],
                                          onnxruntime_outputs(path, feeds)["y"])


def test_shape_buckets_are_refused_for_sizes_computed_at_run_time(tmp_path: Path) -> None:
    """A bucket is a box of the input dims, picked before any kernel runs: a model whose nodes
    compute sizes during the run (NonZero here) gets a clear E050, and nothing is written."""
    nodes = [helper.make_node("NonZero", ["x"], ["idx"])]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5])],
                       [helper.make_tensor_value_info("idx", TensorProto.INT64, [2, "n"])], [])
    path = write_model(model, tmp_path)
    sample = tmp_path / "sample.json"
    sample.write_text('[{"shapes": {"x": [2, 5]}, "count": 9}, {"shapes": {"x": [8, 5]}, "count": 1}]')
    with pytest.raises(PycError) as refused:
        pyc_cli.build(path, tmp_path / "art", input_shapes={"x": ("batch:1..9", 5)},
                      shape_sample=sample)
    assert refused.value.code == "E050" and "computed at run time" in refused.value.what
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("largest", [1, 0])
def test_topk_with_run_time_k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              largest: int) -> None:
    """K from a graph input: the output axis is a dim the kernel computes (0..the axis size),
    values and indices read by a later node; K past the axis is refused (E041)."""
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest),
             helper.make_node("Mul", ["v", "scale"], ["y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 10, 2]),
                               helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
                               helper.make_tensor_value_info("scale", TensorProto.FLOAT, [])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, "n", 2]),
                        helper.make_tensor_value_info("i", TensorProto.INT64, [3, "n", 2])])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art")
    assert [n.ann.kernel_name for n in result.graph.nodes if n.op == "TopK"] == ["topk_runtime"]
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(tmp_path / "art") as model_run:
        for k in (3, 0, 10, 1, 7):
            feeds = {"x": rng.standard_normal((3, 10, 2)).astype(np.float32),
                     "k": np.array([k], np.int64),
                     "scale": np.array(rng.uniform(0.5, 2.0), np.float32)}
            want = onnxruntime_outputs(path, feeds)
            got = model_run.run(feeds)
            assert got["y"].shape == want["y"].shape == (3, k, 2)
            np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6, atol=1e-6)
            np.testing.assert_array_equal(got["i"], want["i"])
        with pytest.raises(PycError) as refused:
            model_run.run({"x": np.zeros((3, 10, 2), np.float32), "k": np.array([11], np.int64),
                           "scale": np.array(1.0, np.float32)})
        assert refused.value.code == "E041"


def test_split_with_run_time_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Split sizes computed from an input (sizes = s + 1): each part's size is a dim the Split
    computes (0..the axis), its readers see it; sizes not summing to the axis are refused."""
    nodes = [helper.make_node("Add", ["s", "one"], ["sizes"]),
             helper.make_node("Split", ["x", "sizes"], ["a", "b", "c"], axis=1),
             helper.make_node("Relu", ["a"], ["ya"]),
             helper.make_node("Neg", ["c"], ["yc"])]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 9, 3]),
                               helper.make_tensor_value_info("s", TensorProto.INT64, [3])],
                       [helper.make_tensor_value_info("ya", TensorProto.FLOAT, [2, "p", 3]),
                        helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, "q", 3]),
                        helper.make_tensor_value_info("yc", TensorProto.FLOAT, [2, "r", 3])],
                       [init("one", np.array([1, 1, 1], np.int64))])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art")
    assert [n.ann.kernel_name for n in result.graph.nodes if n.op == "Split"] == ["split_runtime"]
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(tmp_path / "art") as compiled:
        for parts in ((2, 3, 4), (9, 0, 0), (0, 9, 0), (1, 1, 7), (3, 3, 3)):
            feeds = {"x": rng.standard_normal((2, 9, 3)).astype(np.float32),
                     "s": np.array(parts, np.int64) - 1}
            want = onnxruntime_outputs(path, feeds)
            got = compiled.run(feeds)
            for name in ("ya", "b", "yc"):
                assert got[name].shape == want[name].shape, name
                np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
        for bad in ((2, 2, 2), (10, 0, -1)):
            with pytest.raises(PycError) as refused:
                compiled.run({"x": np.zeros((2, 9, 3), np.float32),
                              "s": np.array(bad, np.int64) - 1})
            assert refused.value.code == "E041"


@pytest.mark.parametrize("k_input", [False, True])
def test_topk_over_a_symbolic_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    k_input: bool) -> None:
    """TopK over x[batch, 12] (batch:1..6): a constant K (topk_rows_dims) or K from an input
    (topk_runtime), the row count read at run time."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 12])]
    initializers = []
    if k_input:
        inputs.append(helper.make_tensor_value_info("k", TensorProto.INT64, [1]))
    else:
        initializers.append(init("k", np.array([5], np.int64)))
    model = make_model([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1)], inputs,
                       [helper.make_tensor_value_info("v", TensorProto.FLOAT, ["b", "n"]),
                        helper.make_tensor_value_info("i", TensorProto.INT64, ["b", "n"])],
                       initializers)
    path = write_model(model, tmp_path)
    shapes, _ = parse_input_shapes(["x=batch:1..6,12"] + (["k=1"] if k_input else []))
    result = pyc_cli.build(path, tmp_path / "art", input_shapes=shapes)
    assert [n.ann.kernel_name for n in result.graph.nodes if n.op == "TopK"] == \
        ["topk_runtime" if k_input else "topk_rows_dims"]
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(tmp_path / "art") as compiled:
        for batch, k in ((1, 5), (6, 12), (4, 0), (3, 7)):
            feeds = {"x": rng.standard_normal((batch, 12)).astype(np.float32)}
            if k_input:
                feeds["k"] = np.array([k], np.int64)
            want = onnxruntime_outputs(path, feeds)
            got = compiled.run(feeds)
            np.testing.assert_array_equal(got["i"], want["i"])
            np.testing.assert_allclose(got["v"], want["v"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("mode", "offset", "values"),
                         [("balanced", False, (0, 9)), ("latency_first", True, (0, 4)),
                          ("memory_first", False, (0, 5))])
def test_split_with_declared_value_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         mode: str, offset: bool,
                                         values: tuple[int, int]) -> None:
    """Split sizes from an input with declared values (`--input-values s=LO..HI`; it was
    E051: the value dims fail the cover check): read at run time by split_runtime, each part
    a dim computed there, bounded by the axis or by the declared values where smaller (sizes
    s, or s + 1 from the declared s). Sums other than the axis, and values outside the
    declared ones, refused (E041)."""
    nodes = [helper.make_node("Split", ["x", "sizes" if offset else "s"], ["a", "b", "c"],
                              axis=1),
             helper.make_node("Relu", ["a"], ["ya"]),
             helper.make_node("Neg", ["c"], ["yc"])]
    if offset:
        nodes.insert(0, helper.make_node("Add", ["s", "one"], ["sizes"]))
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 9, 3]),
                               helper.make_tensor_value_info("s", TensorProto.INT64, [3])],
                       [helper.make_tensor_value_info("ya", TensorProto.FLOAT, [2, "p", 3]),
                        helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, "q", 3]),
                        helper.make_tensor_value_info("yc", TensorProto.FLOAT, [2, "r", 3])],
                       [init("one", np.array([1, 1, 1], np.int64))] if offset else [])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"s": values})
    assert [n.ann.kernel_name for n in result.graph.nodes if n.op == "Split"] == ["split_runtime"]
    high = min(9, values[1] + offset)
    assert all(result.graph.types[v].shape[1].bounds() == (0, high) for v in ("a", "b", "c"))
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    partitions = [p for p in ((9, 0, 0), (0, 9, 0), (2, 3, 4), (3, 3, 3), (5, 4, 0), (1, 4, 4),
                              (0, 0, 9), (4, 1, 4))
                  if all(values[0] + offset <= v <= high for v in p)]
    assert len(partitions) >= 3
    with pyc_cli.load(tmp_path / "art") as compiled:
        for parts in partitions:
            feeds = {"x": rng.standard_normal((2, 9, 3)).astype(np.float32),
                     "s": np.array(parts, np.int64) - offset}
            want = onnxruntime_outputs(path, feeds)
            got = compiled.run(feeds)
            for name in ("ya", "b", "yc"):
                assert got[name].shape == want[name].shape, name
                np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
        bad = [(2, 2, 2), (high + 1, 9 - high - 1, 0)]  # the sum; a value past the declared
        for parts in bad:
            with pytest.raises(PycError) as refused:
                compiled.run({"x": np.zeros((2, 9, 3), np.float32),
                              "s": np.array(parts, np.int64) - offset})
            assert refused.value.code == "E041", parts


@pytest.mark.parametrize("op", ["Reshape", "Expand"])
def test_a_shape_operand_from_a_graph_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            op: str) -> None:
    """Reshape / Expand to a shape the caller passes: refused without declared values, with a hint
    that names --input-values; with them, each run's shape comes from the operand's values."""
    x_shape = [4, 6] if op == "Reshape" else [1, 6]
    model = make_model([helper.make_node(op, ["x", "s"], ["y"], name="shaped")],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape),
                        helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])])
    path = write_model(model, tmp_path)
    with pytest.raises(PycError) as refused:
        pyc_cli.build(path, tmp_path / "refused")
    assert refused.value.code == "E008" and "--input-values" in (refused.value.hint or "")
    assert "'shaped'" in str(refused.value.where)
    result = pyc_cli.build(path, tmp_path / "art", input_values={"s": (1, 24)})
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    shapes = [(3, 8), (24, 1), (1, 24), (2, 12)] if op == "Reshape" else [(5, 6), (1, 6), (24, 6)]
    with pyc_cli.load(result.artifact) as compiled:
        for shape in shapes:
            feeds = {"x": rng.standard_normal(x_shape).astype(np.float32),
                     "s": np.array(shape, np.int64)}
            want = onnxruntime_outputs(path, feeds)["y"]
            got = compiled.run(feeds)["y"]
            assert got.shape == want.shape == shape
            np.testing.assert_array_equal(got, want)


def test_an_empty_mean_over_a_computed_count_is_zero(tmp_path: Path) -> None:
    """ReduceMean over NonZero's count (0 for an all-zero input): 0 as onnxruntime gives (the
    empty sum), not 0 / 0; a non-empty mean divides by the run's count."""
    nodes = [helper.make_node("NonZero", ["x"], ["idx"]),
             helper.make_node("Cast", ["idx"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["m"], axes=[1], keepdims=0)]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 5])],
                       [helper.make_tensor_value_info("m", TensorProto.FLOAT, [2])])
    path = write_model(model, tmp_path)
    pyc_cli.build(path, tmp_path / "art")
    rng = np.random.default_rng()
    with pyc_cli.load(tmp_path / "art") as compiled:
        for x in (np.zeros((4, 5), np.float32),
                  (rng.standard_normal((4, 5)) * (rng.random((4, 5)) < 0.5)).astype(np.float32)):
            want = onnxruntime_outputs(path, {"x": x})["m"]
            np.testing.assert_allclose(compiled.run({"x": x})["m"], want, rtol=1e-6, atol=1e-6)
