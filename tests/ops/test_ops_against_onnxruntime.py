"""End to end: ConvTranspose and Einsum built by PyC match onnxruntime on fresh random inputs
and weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import onnxruntime_outputs
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli.errors import PycError

RTOL, ATOL = 1e-4, 1e-5


def _save(tmp_path: Path, node: onnx.NodeProto, inputs: dict[str, tuple[int, ...]],
          out_shape: tuple[int, ...] | None, initializers: list[onnx.TensorProto]) -> Path:
    model = helper.make_model(
        helper.make_graph(
            [node], "g",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
            initializers),
        opset_imports=[helper.make_opsetid("", 17)])
    if out_shape is not None:
        onnx.checker.check_model(model)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return path


def _compare(tmp_path: Path, path: Path, feeds: dict[str, np.ndarray]) -> None:
    expected = onnxruntime_outputs(path, feeds)["y"]
    pyc_cli.build(path, tmp_path / "artifact")
    with pyc_cli.load(tmp_path / "artifact") as compiled:
        got = compiled.run(feeds)["y"]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def _compare_probed(tmp_path: Path, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
                    x: np.ndarray, opset: int) -> None:
    """Compare a graph from input `x` to output `y` with onnxruntime; the declared output shape
    comes from onnxruntime's own run of the model without one."""
    model = helper.make_model(
        helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits),
        opset_imports=[helper.make_opsetid("", opset)])
    probe = tmp_path / "probe.onnx"
    onnx.save(model, probe)
    out_shape = onnxruntime_outputs(probe, {"x": x})["y"].shape
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape))
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    _compare(tmp_path, path, {"x": x})


CONV_TRANSPOSE_CASES = {
    "2d_groups_strides_pads_bias": ((2, 4, 5, 6), (4, 3, 3, 2), True,
                                    {"group": 2, "strides": [2, 3], "pads": [1, 0, 2, 1],
                                     "dilations": [1, 2], "output_padding": [1, 2]}),
    "2d_plain": ((1, 3, 7, 7), (3, 5, 3, 3), False, {}),
    "2d_same_upper_even_padding": ((1, 2, 4, 5), (2, 3, 4, 4), True,
                                   {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "2d_output_shape": ((2, 2, 3, 3), (2, 2, 3, 3), False,
                        {"strides": [3, 2], "output_shape": [10, 8]}),
    "1d_stride_dilation": ((2, 3, 9), (3, 4, 3), True,
                           {"strides": [2], "dilations": [2], "pads": [1, 2]}),
    "2d_valid_depthwise": ((1, 4, 6, 5), (4, 1, 2, 3), True,
                           {"group": 4, "auto_pad": "VALID", "strides": [1, 2]}),
    "3d_strides_pads_groups": ((1, 4, 3, 4, 5), (4, 3, 3, 2, 3), True,
                               {"group": 2, "strides": [2, 1, 2], "pads": [1, 0, 1, 0, 1, 1],
                                "output_padding": [1, 0, 1]}),
    "3d_dilations": ((2, 2, 3, 3, 3), (2, 3, 2, 2, 2), False, {"dilations": [2, 1, 2]}),
}


@pytest.mark.parametrize("case", sorted(CONV_TRANSPOSE_CASES))
def test_conv_transpose_matches_onnxruntime(case: str, tmp_path: Path,
                                            rng: np.random.Generator) -> None:
    x_shape, w_shape, bias, attrs = CONV_TRANSPOSE_CASES[case]
    w = rng.standard_normal(w_shape).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    names = ["x", "w"]
    if bias:
        channels = w_shape[1] * attrs.get("group", 1)
        inits.append(numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "b"))
        names.append("b")
    node = helper.make_node("ConvTranspose", names, ["y"], **attrs)
    x = rng.standard_normal(x_shape).astype(np.float32)
    # the output shape comes from onnxruntime's own run of a shape-less model
    probe = _save(tmp_path, node, {"x": x_shape}, None, inits)
    out_shape = onnxruntime_outputs(probe, {"x": x})["y"].shape
    path = _save(tmp_path, node, {"x": x_shape}, out_shape, inits)
    _compare(tmp_path, path, {"x": x})


EINSUM_CASES = {
    "bij,bjk->bik": [(3, 4, 5), (3, 5, 6)],
    "ij,jk->ik": [(4, 5), (5, 3)],
    "bhid,bhjd->bhij": [(2, 3, 4, 8), (2, 3, 5, 8)],
    "i,i->": [(7,), (7,)],
    "ij->ji": [(4, 6)],
    "ii->i": [(5, 5)],
    "...ij,...jk->...ik": [(2, 3, 4, 5), (1, 3, 5, 2)],
    "bij->b": [(3, 4, 5)],
    "ij,jk,kl->il": [(2, 3), (3, 4), (4, 5)],
    "bn,anm,bm->ba": [(2, 3), (4, 3, 5), (2, 5)],
    "i,j->ij": [(3,), (4,)],
    "...ij,...ij->...ij": [(2, 3, 4), (1, 3, 4)],
}


@pytest.mark.parametrize("equation", sorted(EINSUM_CASES))
def test_einsum_matches_onnxruntime(equation: str, tmp_path: Path,
                                    rng: np.random.Generator) -> None:
    shapes = EINSUM_CASES[equation]
    feeds = {f"x{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
    out_shape = np.einsum(equation, *feeds.values()).shape
    node = helper.make_node("Einsum", list(feeds), ["y"], equation=equation)
    path = _save(tmp_path, node, {n: a.shape for n, a in feeds.items()}, out_shape, [])
    _compare(tmp_path, path, feeds)


def test_unsupported_variants_are_rejected_with_e008(tmp_path: Path) -> None:
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"])
    w = numpy_helper.from_array(np.ones((2, 2, 2, 2, 2, 2), np.float32), "w")
    path = _save(tmp_path, node, {"x": (1, 2, 3, 3, 3, 3)}, (1, 2, 4, 4, 4, 4), [w])
    with pytest.raises(PycError, match="E008.*ConvTranspose of rank 6"):
        pyc_cli.build(path, tmp_path / "artifact")


RESIZE_CASES = {
    # name: (input shape, attributes, scales or None, sizes or None, roi or None)
    "cubic_upsample_half_pixel": ((1, 2, 5, 6), {"mode": "cubic"}, [1, 1, 1.6, 2.5], None, None),
    "cubic_downsample_align_corners_a05_exclude": (
        (2, 3, 10, 8), {"mode": "cubic", "coordinate_transformation_mode": "align_corners",
                       "cubic_coeff_a": -0.5, "exclude_outside": 1}, [1, 1, 0.6, 0.5], None, None),
    "cubic_sizes_asymmetric": ((1, 1, 7, 4), {"mode": "cubic",
                                              "coordinate_transformation_mode": "asymmetric"},
                               None, [1, 1, 10, 9], None),
    "linear_antialias_downsample": ((1, 2, 12, 10), {"mode": "linear", "antialias": 1},
                                    [1, 1, 0.4, 0.7], None, None),
    "cubic_antialias_sizes": ((1, 3, 11, 13), {"mode": "cubic", "antialias": 1}, None,
                              [1, 3, 4, 6], None),
    "trilinear": ((1, 2, 4, 5, 6), {"mode": "linear"}, [1, 1, 1.5, 2, 0.5], None, None),
    "crop_and_resize_extrapolate": (
        (1, 2, 6, 7), {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
                       "extrapolation_value": 3.5}, None, [1, 2, 5, 4],
        [0, 0, -0.2, 0.3, 1, 1, 0.9, 1.3]),
    "nearest_not_larger": ((1, 1, 6, 9), {"mode": "nearest", "axes": [2, 3],
                                          "keep_aspect_ratio_policy": "not_larger"},
                           None, [4, 4], None),
    "linear_not_smaller": ((1, 2, 6, 9), {"mode": "linear", "axes": [3, 2],
                                          "keep_aspect_ratio_policy": "not_smaller"},
                           None, [5, 5], None),
}


@pytest.mark.parametrize("case", sorted(RESIZE_CASES))
def test_resize_matches_onnxruntime(case: str, tmp_path: Path, rng: np.random.Generator) -> None:
    """Cubic, antialiased, cropped and aspect-preserving Resize (opset 18) on random inputs.
    (align_corners cases use integral resized lengths: for fractional ones PyC follows the ONNX
    reference, which divides by the fractional length, where onnxruntime uses the integer one.)"""
    shape, attrs, scales, sizes, roi = RESIZE_CASES[case]
    inits = [numpy_helper.from_array(np.array(roi or [], np.float32), "roi")]
    names = ["x", "roi"]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        names.append("scales")
    else:
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        names += ["", "sizes"]
    node = helper.make_node("Resize", names, ["y"], **attrs)
    _compare_probed(tmp_path, [node], inits, rng.standard_normal(shape).astype(np.float32), 18)


def test_float16_model_computes_kernels_in_float32(tmp_path: Path, rng: np.random.Generator) -> None:
    """A float16 model (Conv, Relu, MaxPool, MatMul, Softmax): kernels without a float16 path run
    between casts, elementwise ops stay float16; outputs are float16 and match onnxruntime within
    float16 precision (rtol 4e-3, atol 1e-3: a few float16 ulps)."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "m"], ["mm"]),
             helper.make_node("Softmax", ["mm"], ["y"], axis=-1)]
    inits = [numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float16), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float16), "b"),
             numpy_helper.from_array((rng.standard_normal((64, 5)) * 0.2).astype(np.float16), "m")]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, (1, 3, 8, 8))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT16, (1, 5))], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "half.onnx"
    onnx.save(model, path)
    result = pyc_cli.build(path, tmp_path / "artifact")
    promoted = sorted(d.nodes[0] for d in result.context.decisions if d.action == "compute_f16_in_f32")
    assert promoted == ["Conv_0", "MatMul_4", "MaxPool_2", "Softmax_5"]
    with pyc_cli.load(tmp_path / "artifact") as compiled:
        for _ in range(3):
            feeds = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float16)}
            got = compiled.run(feeds)["y"]
            want = onnxruntime_outputs(path, feeds)["y"]
            assert got.dtype == np.float16
            np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=4e-3, atol=1e-3)


CONV3D_CASES = {
    # name: (x shape, w shape, bias, attributes) -- im2col GEMM unless depthwise/tiny
    "im2col_pads_strides": ((1, 3, 6, 7, 8), (8, 3, 3, 3, 3), True,
                            {"pads": [1, 0, 1, 2, 1, 0], "strides": [2, 1, 2]}),
    "im2col_dilations_batch": ((2, 4, 7, 6, 6), (6, 4, 2, 3, 2), False,
                               {"dilations": [2, 1, 2], "pads": [1, 0, 0, 0, 1, 1]}),
    "im2col_same_upper": ((1, 2, 5, 6, 5), (4, 2, 2, 3, 2), True, {"auto_pad": "SAME_UPPER"}),
    "direct_depthwise": ((1, 4, 5, 6, 7), (4, 1, 3, 2, 3), True,
                         {"group": 4, "pads": [1, 1, 1, 1, 0, 1]}),
    "pointwise": ((1, 8, 3, 4, 5), (5, 8, 1, 1, 1), True, {}),
}


@pytest.mark.parametrize("case", sorted(CONV3D_CASES))
def test_conv3d_matches_onnxruntime(case: str, tmp_path: Path, rng: np.random.Generator) -> None:
    """3-D convolutions followed by Relu (an epilogue) and a 3-D MaxPool, on random inputs and
    weights."""
    x_shape, w_shape, bias, attrs = CONV3D_CASES[case]
    inits = [numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), "w")]
    names = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(w_shape[0]).astype(np.float32), "b"))
        names.append("b")
    nodes = [helper.make_node("Conv", names, ["c"], **attrs), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[1, 2, 2], strides=[1, 2, 2])]
    _compare_probed(tmp_path, nodes, inits, rng.standard_normal(x_shape).astype(np.float32), 17)
