"""Issue #15, point 2: Resize / Upsample whose sizes or scales are known only at run time (a
graph input with declared values, `--input-values`, or values computed from one), and Resize
over symbolic dims (`F.interpolate(x, size=y.shape[-2:])` as torch exports it). The output
sizes are dims (the sizes' value dims, or dims the kernel computes: floor(axis * scale) in
float32, bounded by the declared values) and resize_runtime.c.j2 computes the coordinates,
taps and weights at run time, for nearest (every nearest_mode), linear and cubic and every
coordinate_transformation_mode (tf_crop_and_resize with a constant roi); also over symbolic
input dims (`--input-shape`) by constant scales, where a length like floor(0.7 w) is computed
at run time. Checked against onnxruntime (align_corners by scales: the ONNX reference, from which
onnxruntime departs there) on fresh random inputs at sizes and scales
across the declared bounds (the extremes, 1, the input's own size), in the three memory modes, output
buffers poisoned with NaN first (every element of the actual shape must be written); a size
past its bound is refused with PYC-E041, never written.

Tolerance: rtol 1e-5, atol 1e-5 x max(1, max |expected|): the coordinates are onnxruntime's
float32 arithmetic, but the blend sums the taps in another order than onnxruntime's bilinear
and bicubic loops (a few float32 ulp)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from conftest import onnxruntime_outputs
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir.symbolic import Dim, parse_input_shapes
from pyc_cli.ops import registry
from tests.dynamic.checks import poison_outputs
from tests.helpers import init, make_model, rand, write_model

MODES = ["latency_first", "balanced", "memory_first"]
I64 = TensorProto.INT64
RTOL, ATOL = 1e-5, 1e-5
COORDS = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
          "tf_half_pixel_for_nn", "half_pixel_symmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
X_SHAPE = (1, 2, 5, 4)


def _vi(name: str, shape: list[int | str], elem: int = TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _resize_nodes(interp: str, size_inputs: list[str]) -> tuple[list, list[str]]:
    """One Resize of x per coordinate mode (nearest: also each other nearest_mode, with
    half_pixel and asymmetric coordinates), all reading the same scales or sizes."""
    variants = [(coords, "round_prefer_floor") for coords in COORDS]
    if interp == "nearest":
        variants += [(coords, nearest) for nearest in NEAREST[1:]
                     for coords in ("half_pixel", "asymmetric")]
    nodes, outputs = [], []
    for k, (coords, nearest) in enumerate(variants):
        extra = {"nearest_mode": nearest} if interp == "nearest" else {}
        if interp == "cubic" and k % 2:
            extra["exclude_outside"] = 1
        nodes.append(helper.make_node("Resize", ["x", *size_inputs], [f"y{k}"],
                                      name=f"resize_{k}", mode=interp,
                                      coordinate_transformation_mode=coords, **extra))
        outputs.append(f"y{k}")
    return nodes, outputs


# where onnxruntime departs from the ONNX reference: align_corners by scales reads the resized
# length as the rounded output size (the reference, and PyC's compile-time tables and run-time
# kernel alike: the input size x scale, unrounded); these outputs are checked against the
# reference (onnx.reference), the others against onnxruntime
SPEC_COORDS = ("align_corners",)


def spec_outputs(path: Path, feeds: dict[str, np.ndarray],
                 ort: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs of the Resizes in a SPEC_COORDS mode by scales, from the ONNX reference."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(str(path))
    names = [n.output[0] for n in model.graph.node if n.op_type == "Resize" and len(n.input) == 3
             and n.output[0] in ort
             and any(a.name == "coordinate_transformation_mode" and a.s.decode() in SPEC_COORDS
                     for a in n.attribute)]
    if not names:
        return {}
    # the reference knows not every mode (tf_half_pixel_for_nn): only these Resizes are kept
    kept = [n for n in model.graph.node if n.op_type != "Resize" or n.output[0] in names]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    outputs_kept = [o for o in model.graph.output if o.name in names]
    del model.graph.output[:]
    model.graph.output.extend(outputs_kept)
    outputs = ReferenceEvaluator(model).run(names, dict(feeds))
    return {name: np.asarray(value, ort[name].dtype) for name, value in zip(names, outputs)}


def _check_runs(path: Path, artifact: Path, feeds: Iterable[dict[str, np.ndarray]],
                refused: Iterable[dict[str, np.ndarray]], monkeypatch: pytest.MonkeyPatch
                ) -> None:
    """Each of `feeds` matches onnxruntime (shape and values, x drawn fresh); each of
    `refused` is refused by PyC with PYC-E041."""
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(artifact) as model:
        for given in feeds:
            given = {**given, "x": rand(rng, *given["x"].shape)} if "x" in given else given
            want = onnxruntime_outputs(path, given)
            want.update(spec_outputs(path, given, want))
            got = model.run(given)
            for name, value in want.items():
                assert got[name].shape == value.shape, (name, given)
                scale = max(1.0, float(np.max(np.abs(value)))) if value.size else 1.0
                np.testing.assert_allclose(got[name], value, rtol=RTOL, atol=ATOL * scale,
                                           err_msg=f"{name} at {given}")
        for given in refused:
            with pytest.raises(PycError) as error:
                model.run(given)
            assert error.value.code == "E041", given


def _x() -> np.ndarray:
    return np.ones(X_SHAPE, np.float32)  # replaced by fresh random values in _check_runs


# ---------------------------------------------------------------- sizes from a graph input


def _sizes_model(tmp_path: Path, interp: str) -> Path:
    """y_k = Resize(x[1, 2, 5, 4], sizes) for each coordinate mode: sizes an int64[4] input."""
    nodes, outputs = _resize_nodes(interp, ["", "", "sizes"])
    model = make_model(nodes, [_vi("x", list(X_SHAPE)), _vi("sizes", [4], I64)],
                       [_vi(y, ["n", "c", "h", "w"]) for y in outputs])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("interp", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("mode", MODES)
def test_resize_sizes_from_an_input_with_declared_values(
        tmp_path: Path, mode: str, interp: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _sizes_model(tmp_path, interp)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"sizes": (1, 12)})
    shape = result.graph.types["y0"].shape
    assert all(isinstance(d, Dim) and int(d) == 12 for d in shape), shape  # bounded by 12
    sizes = ([1, 2, 12, 12], [1, 2, 1, 1], [1, 2, 5, 4], [1, 2, 3, 9], [1, 2, 10, 8],
             [1, 2, 12, 1], [1, 2, 2, 3])
    if interp == "nearest":  # onnxruntime's linear and cubic resize H and W of a 4-D tensor
        sizes += ([1, 3, 7, 4], [2, 1, 6, 6])
    feeds = [{"x": _x(), "sizes": np.array(s, np.int64)} for s in sizes]
    refused = [{"x": _x(), "sizes": np.array(s, np.int64)}
               for s in ([1, 2, 13, 4], [1, 2, 4, 0], [1, 2, 100, 100])]
    _check_runs(path, result.artifact, feeds, refused, monkeypatch)


@pytest.mark.parametrize("mode", MODES)
def test_resize_sizes_computed_from_input_values(tmp_path: Path, mode: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """sizes = concat([1, 2], s * 2) (value dims of s: 2 val_s_0 and 2 val_s_1)."""
    nodes = [helper.make_node("Mul", ["s", "two"], ["hw"], name="hw"),
             helper.make_node("Concat", ["nc", "hw"], ["sizes"], name="sizes", axis=0),
             helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="upsample",
                              mode="linear")]
    model = make_model(nodes, [_vi("x", [1, 2, 4, 4]), _vi("s", [2], I64)],
                       [_vi("y", [1, 2, "h", "w"])],
                       [init("two", np.array([2, 2], np.int64)),
                        init("nc", np.array([1, 2], np.int64))])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"s": (1, 8)})
    assert [str(d) for d in result.graph.types["y"].shape[2:]] == ["2*val_s_0", "2*val_s_1"]
    feeds = [{"x": np.ones((1, 2, 4, 4), np.float32), "s": np.array(s, np.int64)}
             for s in ([1, 1], [8, 8], [2, 2], [1, 8], [3, 5])]
    refused = [{"x": np.ones((1, 2, 4, 4), np.float32), "s": np.array(s, np.int64)}
               for s in ([9, 1], [0, 2])]
    _check_runs(path, result.artifact, feeds, refused, monkeypatch)


@pytest.mark.parametrize("mode", MODES)
def test_resize_sizes_cast_from_float_values(tmp_path: Path, mode: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """sizes = concat([1, 2], int64(f * 3)) from a float input f declared 0.5..4: no value
    dims, the sizes' interval (ops/intervals.py) bounds dims the kernel computes and checks."""
    nodes = [helper.make_node("Mul", ["f", "three"], ["f3"], name="times_three"),
             helper.make_node("Cast", ["f3"], ["hw"], name="to_int", to=I64),
             helper.make_node("Concat", ["nc", "hw"], ["sizes"], name="sizes", axis=0),
             helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="resize_cast",
                              mode="cubic", coordinate_transformation_mode="half_pixel")]
    model = make_model(nodes, [_vi("x", list(X_SHAPE)), _vi("f", [2])],
                       [_vi("y", [1, 2, "h", "w"])],
                       [init("three", np.array(3.0, np.float32)),
                        init("nc", np.array([1, 2], np.int64))])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"f": (0.5, 4.0)})
    assert [int(d) for d in result.graph.types["y"].shape] == [1, 2, 12, 12]
    feeds = [{"x": _x(), "f": np.array(f, np.float32)}
             for f in ([0.5, 0.5], [4.0, 4.0], [1.0, 2.5], [0.34, 3.9], [5 / 3, 4 / 3])]
    refused = [{"x": _x(), "f": np.array(f, np.float32)} for f in ([4.5, 1.0], [1.0, 9.0])]
    _check_runs(path, result.artifact, feeds, refused, monkeypatch)


@pytest.mark.parametrize("interp", ["nearest", "linear", "cubic"])
def test_resize_float64_sizes_from_an_input(tmp_path: Path, interp: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Float64 values (onnxruntime has no float64 Resize): against the op's numpy reference
    (ops/resize.py, the compile-time tables' arithmetic); coordinates in double, so nearest and
    linear agree to 1e-12; cubic's coefficients are float32 arithmetic in both (1e-5)."""
    nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="resize64",
                              mode=interp)]
    model = make_model(nodes, [_vi("x", list(X_SHAPE), TensorProto.DOUBLE), _vi("sizes", [4], I64)],
                       [_vi("y", [1, 2, "h", "w"], TensorProto.DOUBLE)])
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", input_values={"sizes": (1, 12)})
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    opdef = registry.get("Resize")
    node = next(n for n in result.graph.nodes if n.op == "Resize")
    tolerance = 1e-5 if interp == "cubic" else 1e-12
    with pyc_cli.load(result.artifact) as compiled:
        for sizes in ([1, 2, 12, 12], [1, 2, 1, 1], [1, 2, 5, 4], [1, 2, 3, 9], [1, 2, 10, 7]):
            x, given = rng.standard_normal(X_SHAPE), np.array(sizes, np.int64)
            want = opdef.evaluate(node, [x, None, None, given])[0]
            got = compiled.run({"x": x, "sizes": given})["y"]
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


# ---------------------------------------------------------------- scales from a graph input


def _scales_model(tmp_path: Path, interp: str) -> Path:
    """y_k = Resize(x[1, 2, 5, 4], scales = concat([1, 1], s)) for each coordinate mode."""
    nodes, outputs = _resize_nodes(interp, ["", "scales"])
    nodes.insert(0, helper.make_node("Concat", ["ones", "s"], ["scales"], name="scales", axis=0))
    model = make_model(nodes, [_vi("x", list(X_SHAPE)), _vi("s", [2])],
                       [_vi(y, [1, 2, "h", "w"]) for y in outputs],
                       [init("ones", np.array([1.0, 1.0], np.float32))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("interp", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("mode", MODES)
def test_resize_scales_from_an_input_with_declared_values(
        tmp_path: Path, mode: str, interp: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _scales_model(tmp_path, interp)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"s": (0.25, 3.0)})
    shape = result.graph.types["y0"].shape
    # N and C keep their sizes (scale 1 is known); H and W: floor(5 * 3), floor(4 * 3)
    assert shape[:2] == (1, 2) and [int(d) for d in shape[2:]] == [15, 12], shape
    scales = ([3.0, 3.0], [0.25, 0.25], [1.0, 1.0], [1.7, 0.6], [2.0, 2.5], [0.3, 3.0],
              [1.0, 2.0], [0.5, 1.0], [2.9, 1.33])
    feeds = [{"x": _x(), "s": np.array(s, np.float32)} for s in scales]
    refused = [{"x": _x(), "s": np.array(s, np.float32)}
               for s in ([3.5, 1.0], [1.0, 4.0], [-1.0, 1.0], [np.nan, 1.0], [np.inf, 1.0])]
    _check_runs(path, result.artifact, feeds, refused, monkeypatch)


@pytest.mark.parametrize(("interp", "kind", "mode"),
                         [("nearest", "scales", "latency_first"), ("nearest", "sizes", "balanced"),
                          ("linear", "scales", "memory_first"), ("linear", "sizes", "latency_first"),
                          ("cubic", "scales", "balanced"), ("cubic", "sizes", "memory_first")])
def test_tf_crop_and_resize_by_run_time_scales_or_sizes(
        tmp_path: Path, interp: str, kind: str, mode: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """tf_crop_and_resize with a constant crop window (reaching past the input on W: those
    outputs take extrapolation_value -7) and scales or sizes from an input."""
    roi_value = np.array([0, 0, 0.2, 0.1, 1, 1, 0.9, 1.3], np.float32)
    roi = init("roi", roi_value)
    attrs = {"mode": interp, "coordinate_transformation_mode": "tf_crop_and_resize",
             "extrapolation_value": -7.0}
    if kind == "scales":
        nodes = [helper.make_node("Concat", ["ones", "s"], ["scales"], name="scales", axis=0),
                 helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="crop", **attrs)]
        inputs, inits = [_vi("x", list(X_SHAPE)), _vi("s", [2])], \
            [roi, init("ones", np.array([1.0, 1.0], np.float32))]
        declared = {"s": (0.25, 3.0)}
        values = [np.array(v, np.float32) for v in ([3, 3], [0.25, 0.25], [1.7, 0.6], [3, 0.5])]
        refused = [np.array([3.5, 1], np.float32)]
    else:
        nodes = [helper.make_node("Resize", ["x", "roi", "", "s"], ["y"], name="crop", **attrs)]
        inputs, inits = [_vi("x", list(X_SHAPE)), _vi("s", [4], I64)], [roi]
        declared = {"s": (1, 12)}
        values = [np.array(v, np.int64) for v in ([1, 2, 12, 12], [1, 2, 1, 1], [1, 2, 4, 5],
                                                   [1, 2, 3, 9])]
        refused = [np.array([1, 2, 13, 1], np.int64)]
    model = make_model(nodes, inputs, [_vi("y", [1, 2, "h", "w"])], inits)
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values=declared)
    _check_runs(path, result.artifact, [{"x": _x(), "s": v} for v in values],
                [{"x": _x(), "s": v} for v in refused], monkeypatch)
    # scale 1 under a crop window: onnxruntime reads the axis as it is, the ONNX reference
    # (and PyC, constant scales or not) crops it: against the op's numpy reference
    same = np.array([1, 1], np.float32) if kind == "scales" else np.array(X_SHAPE, np.int64)
    x = np.random.default_rng().standard_normal(X_SHAPE).astype(np.float32)
    node = next(n for n in result.graph.nodes if n.op == "Resize")
    operands = [x, roi_value, *([same] if kind == "scales" else [None, same])]
    if kind == "scales":
        operands[2] = np.concatenate([[1.0, 1.0], same]).astype(np.float32)
    want = registry.get("Resize").evaluate(node, operands)[0]
    with pyc_cli.load(result.artifact) as compiled:
        got = compiled.run({"x": x, "s": same})["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", MODES)
def test_upsample_scales_from_an_input(tmp_path: Path, mode: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Upsample-9 (asymmetric coordinates, nearest rounds down) with its scales an input."""
    nodes = [helper.make_node("Upsample", ["x", "scales"], ["y"], name="up", mode="nearest"),
             helper.make_node("Upsample", ["x", "scales"], ["z"], name="up_linear",
                              mode="linear")]
    model = make_model(nodes, [_vi("x", list(X_SHAPE)), _vi("scales", [4])],
                       [_vi("y", ["n", "c", "h", "w"]), _vi("z", ["n", "c", "h", "w"])],
                       opset=9)
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode,
                           input_values={"scales": (1.0, 2.5)})
    assert [int(d) for d in result.graph.types["y"].shape] == [2, 5, 12, 10]
    feeds = [{"x": _x(), "scales": np.array(s, np.float32)}
             for s in ([1, 1, 1, 1], [1, 1, 2.5, 2.5], [1, 1, 2, 2], [1, 1, 1.5, 2.2])]
    refused = [{"x": _x(), "scales": np.array([1, 1, 3, 1], np.float32)}]
    _check_runs(path, result.artifact, feeds, refused, monkeypatch)


# ---------------------------------------------------------------- symbolic input dims


@pytest.mark.parametrize("mode", MODES)
def test_resize_of_symbolic_dims_by_constant_scales(tmp_path: Path, mode: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """x[1, 2, h, w] (h, w: 1..20) resized by constant scales that resize_nearest_dims does
    not cover: linear x2 (2*h), nearest half_pixel x2, cubic x0.5 (h // 2), and linear by
    (0.7, 1.5), whose floor(h * 0.7) no expression gives: lengths computed at run time."""
    specs = [("linear", [2.0, 2.0]), ("nearest", [2.0, 2.0]), ("cubic", [0.5, 0.5]),
             ("linear", [0.7, 1.5])]
    nodes, inits = [], []
    for k, (interp, scales) in enumerate(specs):
        nodes.append(helper.make_node("Resize", ["x", "", f"scales{k}"], [f"y{k}"],
                                      name=f"resize_{k}", mode=interp))
        inits.append(init(f"scales{k}", np.array([1.0, 1.0, *scales], np.float32)))
    model = make_model(nodes, [_vi("x", [1, 2, "h", "w"])],
                       [_vi(f"y{k}", [1, 2, "a", "b"]) for k in range(len(specs))], inits)
    path = write_model(model, tmp_path)
    shapes, _ = parse_input_shapes(["x=1,2,h:1..20,w:1..20"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes)
    types = result.graph.types
    assert [str(d) for d in types["y0"].shape[2:]] == ["2*h", "2*w"]
    assert [int(d) for d in types["y3"].shape[2:]] == [14, 30]  # computed, bounded
    feeds = [{"x": np.ones((1, 2, h, w), np.float32)}
             for h, w in ((1, 1), (20, 20), (7, 13), (3, 1), (1, 20), (10, 9))]
    _check_runs(path, result.artifact, feeds, [], monkeypatch)


def _variant(name: str):  # noqa: ANN202 (model, declared values, input shapes, feeds)
    """Other schema versions and ranks on the run-time path."""
    vi, i64 = _vi, I64
    if name == "resize10":  # Resize-10: (X, scales), asymmetric, nearest rounds down
        nodes = [helper.make_node("Resize", ["x", "scales"], ["y"], name="r10", mode="nearest")]
        model = make_model(nodes, [vi("x", list(X_SHAPE)), vi("scales", [4])],
                           [vi("y", ["n", "c", "h", "w"])], opset=10)
        return model, {"scales": (0.5, 3.0)}, None, [
            {"x": _x(), "scales": np.array(v, np.float32)}
            for v in ([1, 1, 3, 3], [1, 1, 0.5, 0.5], [1, 1, 1.3, 2.2], [1, 1, 1, 1])]
    if name == "resize18_axes_sizes":  # sizes of the listed axes only, in their order
        nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="r18",
                                  mode="linear", axes=[3, 2])]
        model = make_model(nodes, [vi("x", list(X_SHAPE)), vi("sizes", [2], i64)],
                           [vi("y", [1, 2, "h", "w"])], opset=18)
        return model, {"sizes": (1, 10)}, None, [
            {"x": _x(), "sizes": np.array(v, np.int64)}
            for v in ([1, 1], [10, 10], [3, 7], [4, 5])]
    if name == "resize18_axes_scales":
        nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="r18s",
                                  mode="cubic", axes=[2, 3])]
        model = make_model(nodes, [vi("x", list(X_SHAPE)), vi("scales", [2])],
                           [vi("y", [1, 2, "h", "w"])], opset=18)
        return model, {"scales": (0.5, 2.0)}, None, [
            {"x": _x(), "scales": np.array(v, np.float32)} for v in ([1, 1], [2, 2], [0.5, 1.7])]
    if name == "linear_3d":  # [N, C, L]: onnxruntime's 1-D linear
        nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="r3",
                                  mode="linear")]
        model = make_model(nodes, [vi("x", [2, 3, 7]), vi("sizes", [3], i64)],
                           [vi("y", ["a", "b", "c"])], opset=13)
        return model, {"sizes": (1, 16)}, None, [
            {"x": np.ones((2, 3, 7), np.float32), "sizes": np.array(v, np.int64)}
            for v in ([2, 3, 16], [2, 3, 1], [2, 3, 7], [2, 3, 5])]
    # Upsample-7: scales an attribute, over symbolic dims (floor(1.5 w) computed at run time)
    nodes = [helper.make_node("Upsample", ["x"], ["y"], name="up7", mode="linear",
                              scales=[1.0, 1.0, 2.0, 1.5])]
    model = make_model(nodes, [vi("x", [1, 2, "h", "w"])], [vi("y", [1, 2, "a", "b"])], opset=7)
    shapes, _ = parse_input_shapes(["x=1,2,h:1..9,w:1..9"])
    return model, None, shapes, [{"x": np.ones((1, 2, h, w), np.float32)}
                                 for h, w in ((1, 1), (9, 9), (4, 7), (2, 1))]


@pytest.mark.parametrize("variant", ["resize10", "resize18_axes_sizes", "resize18_axes_scales",
                                     "linear_3d", "upsample7_symbolic"])
def test_resize_versions_and_ranks_at_run_time(tmp_path: Path, variant: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    model, declared, shapes, feeds = _variant(variant)
    path = write_model(model, tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", input_values=declared, input_shapes=shapes)
    assert {n.ann.kernel.candidate for n in result.graph.nodes
            if n.op in ("Resize", "Upsample") and n.ann.kernel} == {"resize_runtime"}
    _check_runs(path, result.artifact, feeds, [], monkeypatch)


# ---------------------------------------------------------------- models shaped like real ones


def _fpn_head(tmp_path: Path) -> Path:
    """A segmentation / text-detection head: x[1, 3, 16, 16] -> 3x3 conv -> relu -> bilinear
    Resize by scales concat([1, 1], s) (pytorch_half_pixel) -> 1x1 conv -> sigmoid."""
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Concat", ["ones", "s"], ["scales"], name="scales", axis=0),
             helper.make_node("Resize", ["r1", "", "scales"], ["up"], name="upsample",
                              mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
             helper.make_node("Conv", ["up", "w2", "b2"], ["c2"], name="conv2"),
             helper.make_node("Sigmoid", ["c2"], ["y"], name="prob")]
    inits = [init("w1", rand(rng, 8, 3, 3, 3, scale=0.3)), init("b1", rand(rng, 8, scale=0.1)),
             init("w2", rand(rng, 2, 8, 1, 1, scale=0.3)), init("b2", rand(rng, 2, scale=0.1)),
             init("ones", np.array([1.0, 1.0], np.float32))]
    model = make_model(nodes, [_vi("x", [1, 3, 16, 16]), _vi("s", [2])],
                       [_vi("y", [1, 2, "h", "w"])], inits)
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_conv_feature_map_upsampled_by_scales_from_an_input(
        tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _fpn_head(tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"s": (0.5, 4.0)})
    assert [int(d) for d in result.graph.types["y"].shape] == [1, 2, 64, 64]
    x = np.ones((1, 3, 16, 16), np.float32)
    feeds = [{"x": x, "s": np.array(s, np.float32)}
             for s in ([4.0, 4.0], [0.5, 0.5], [1.0, 1.0], [2.0, 4.0], [1.5, 0.75], [3.3, 2.7])]
    refused = [{"x": x, "s": np.array([4.5, 1.0], np.float32)}]
    _check_runs(path, result.artifact, feeds, refused, monkeypatch)


def _interpolate_to_shape_of(tmp_path: Path) -> Path:
    """`F.interpolate(relu(conv(x)), size=y.shape[-2:], mode="bilinear") + y` as torch exports
    it (Shape -> Gather -> Unsqueeze -> Concat -> Cast -> Concat -> Resize sizes)."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x, y):  # noqa: ANN001, ANN202 (traced by torch)
            features = torch.relu(self.conv(x))
            return functional.interpolate(features, size=y.shape[-2:], mode="bilinear",
                                          align_corners=False) + y

    torch.manual_seed(3)
    path = tmp_path / "interpolate.onnx"
    torch.onnx.export(Head().eval(), (torch.randn(1, 3, 8, 8), torch.randn(1, 4, 16, 16)),
                      str(path), input_names=["x", "y"], output_names=["out"], opset_version=17,
                      dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}}, dynamo=False)
    return path


@pytest.mark.parametrize("mode", MODES)
def test_torch_interpolate_to_the_shape_of_another_input(
        tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _interpolate_to_shape_of(tmp_path)
    shapes, _ = parse_input_shapes(["x=1,3,h:1..12,w:1..12", "y=1,4,H:1..24,W:1..24"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes)
    assert [str(d) for d in result.graph.types["out"].shape] == ["1", "4", "H", "W"]
    feeds = [{"x": np.ones((1, 3, h, w), np.float32), "y": np.ones((1, 4, hh, ww), np.float32)}
             for h, w, hh, ww in ((8, 8, 16, 16), (1, 1, 1, 1), (12, 12, 24, 24), (12, 1, 1, 24),
                                  (5, 7, 5, 7), (9, 4, 3, 20), (1, 12, 24, 1))]
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(result.artifact) as model:
        for given in feeds:
            given = {k: rand(rng, *v.shape) for k, v in given.items()}
            want = onnxruntime_outputs(path, given)["out"]
            got = model.run(given)["out"]
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=RTOL,
                                       atol=ATOL * max(1.0, float(np.max(np.abs(want)))))
        with pytest.raises(PycError) as error:  # y past its declared dims
            model.run({"x": rand(rng, 1, 3, 4, 4), "y": rand(rng, 1, 4, 25, 4)})
        assert error.value.code == "E041"


# ---------------------------------------------------------------- refusals


def test_resize_scales_without_declared_values_are_refused(tmp_path: Path) -> None:
    """Scales from an input nothing bounds: the output has no bound, refused naming the node
    and asking for declared values."""
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="unbounded")]
    model = make_model(nodes, [_vi("x", list(X_SHAPE)), _vi("scales", [4])],
                       [_vi("y", ["n", "c", "h", "w"])])
    path = write_model(model, tmp_path)
    with pytest.raises(PycError) as refused:
        pyc_cli.build(path, tmp_path / "art")
    assert refused.value.code == "E008" and "unbounded" in str(refused.value.where)
    assert "--input-values" in (refused.value.hint or "")
