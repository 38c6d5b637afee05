"""Issue #15: convs, pools and concats over symbolic spatial dims (targets/cpu/spatial_dims.py):
one model of many branches (strided, padded, dilated, grouped, depthwise and pointwise convs,
with fused epilogues and prologues; average and max pools; a concat along channels), built once
with symbolic batch, height and width, against onnxruntime at odd sizes with poisoned outputs;
and PP-OCR's rec and cls models, whose crops come in many widths, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.ir.symbolic import parse_input_shapes
from tests.dynamic.checks import runs_match_onnxruntime
from tests.helpers import assert_strict_c11, init, make_model, rand, write_model

MODELS = Path("/tmp/rapid/whl/rapidocr_onnxruntime/models")
PP_OCR_REC = MODELS / "ch_PP-OCRv4_rec_infer.onnx"
PP_OCR_CLS = MODELS / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
NOT_DOWNLOADED = ("PP-OCR is not downloaded (pip download rapidocr-onnxruntime --no-deps -d "
                  "/tmp/rapid; unzip the wheel)")


def _kernels(art: Path) -> dict[str, str]:
    """node -> the kernel select_kernels chose."""
    found = {}
    for line in (art / "decisions.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["action"] == "select_kernel":
            found[entry["nodes"][0]] = entry["after"]
    return found


def spatial_branches(tmp_path: Path, c: int = 8) -> Path:
    """x[n, 8, h, w] -> thirteen branches, each a graph output."""
    rng = np.random.default_rng(5)

    def conv(name: str, src: str, out: str, oc: int, k: tuple[int, int], bias: bool = True,
             **attrs: object) -> list:
        group = int(attrs.get("group", 1))  # type: ignore[call-overload]
        inits.append(init(f"{name}_w", rand(rng, oc, c // group, *k, scale=0.3)))
        ins = [src, f"{name}_w"]
        if bias:
            inits.append(init(f"{name}_b", rand(rng, oc)))
            ins.append(f"{name}_b")
        return [helper.make_node("Conv", ins, [out], name=name, kernel_shape=list(k), **attrs)]

    inits: list = [init("scale", rand(rng, 1, c, 1, 1)), init("shift", rand(rng, 1, 13, 1, 1))]
    nodes = [
        # strided 3x3 stem + Relu epilogue
        *conv("stem", "x", "s1", 6, (3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s1"], ["y1"], name="relu1"),
        # depthwise 5x5, stride (2, 1), HardSigmoid epilogue
        *conv("dw", "x", "d2", c, (5, 5), group=c, strides=[2, 1], pads=[2, 2, 2, 2]),
        helper.make_node("HardSigmoid", ["d2"], ["y2"], name="hsig2"),
        # pointwise 8 -> 13 (a tail block of output channels), a Mul prologue, an Add epilogue
        helper.make_node("Mul", ["x", "scale"], ["xs"], name="scale_x"),
        *conv("pw", "xs", "p3", 13, (1, 1)),
        helper.make_node("Add", ["p3", "shift"], ["y3"], name="shift3"),
        # dilated 3x3, asymmetric pads, two groups, no bias
        *conv("dil", "x", "y4", 4, (3, 3), bias=False, group=2, dilations=[2, 2],
              pads=[1, 0, 2, 1]),
        # 3x3 stride 1 with a Relu prologue (applied as the chunk's columns are gathered)
        helper.make_node("Relu", ["x"], ["xr"], name="relu_x"),
        *conv("c3", "xr", "y5", 5, (3, 3), pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["x"], ["y6"], name="avg32", kernel_shape=[3, 2],
                         strides=[3, 2]),
        helper.make_node("AveragePool", ["x"], ["y7"], name="avg_pad", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
        helper.make_node("MaxPool", ["x"], ["y8"], name="max", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["x"], ["xsig"], name="sig"),
        helper.make_node("Concat", ["x", "xsig"], ["y9"], name="concat", axis=1),
        # pointwise of two groups (3 output channels each: one block)
        *conv("pwg", "x", "y10", 6, (1, 3), group=2, pads=[0, 1, 0, 1]),
        *conv("pw2", "x", "y11", 6, (1, 1), group=2),
        # depthwise with a Tanh prologue (the direct loop applies it)
        helper.make_node("Tanh", ["x"], ["xt"], name="tanh_x"),
        *conv("dwp", "xt", "y12", c, (3, 3), group=c, pads=[1, 1, 1, 1]),
        # no bias, a residual epilogue of the input's (symbolic) shape
        *conv("res", "x", "r13", c, (3, 3), bias=False, pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["r13", "x"], ["y13"], name="residual"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", c, "h", "w"])
    outs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [None] * 4) for i in range(1, 14)]
    return write_model(make_model(nodes, [x], outs, inits), tmp_path, "spatial.onnx")


def test_convs_pools_and_concat_over_symbolic_height_and_width(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_path = spatial_branches(tmp_path)
    shapes, _ = parse_input_shapes(["x=n:1..3,8,h:5..23,w:5..41"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes).artifact
    kernels = _kernels(art)
    assert {kernels[n] for n in ("stem", "dw", "pw", "dil", "c3", "pwg", "pw2", "dwp", "res")} \
        == {"conv2d_dims"}, kernels
    assert {kernels[n] for n in ("avg32", "avg_pad", "max")} == {"pool_dims"}
    assert kernels["concat"] == "concat_dims"
    source = (art / "src" / "model.c").read_text()
    # each conv path: chunks of pixels over taps (stem, dil, c3, pwg) and over input channels
    # (pw, pw2), the direct loop (dw, dwp)
    assert "ih0[j] + kh" in source and "ipix = p0 + j" in source and "ow_lo[kw] = lo;" in source
    assert source.count("P0[") >= 3  # the prologues of pw, c3 and dwp are fused and read
    assert_strict_c11("gcc", art)

    def feeds(rng: np.random.Generator, h: int, w: int) -> dict[str, np.ndarray]:
        n = 1 + (h + w) % 3
        return {"x": rng.standard_normal((n, 8, h, w)).astype(np.float32)}

    runs = [(5, 5), (5, 41), (23, 5), (23, 41), (6, 7), (11, 32), (17, 33), (8, 13)]
    runs_match_onnxruntime(model_path, art, feeds, runs, rtol=1e-5, atol=1e-5,
                           monkeypatch=monkeypatch)


def test_static_builds_never_take_the_spatial_kernels(tmp_path: Path) -> None:
    """The candidates apply only to symbolic nodes: a static build chooses as before."""
    model_path = spatial_branches(tmp_path)
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes={"x": (2, 8, 13, 21)}).artifact
    chosen = set(_kernels(art).values())
    assert not chosen & {"conv2d_dims", "pool_dims", "concat_dims"}, chosen


@pytest.mark.skipif(not PP_OCR_REC.is_file(), reason=NOT_DOWNLOADED)
def test_pp_ocr_rec_builds_once_for_every_width(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """PP-OCRv4 rec with `x=1,3,48,w:16..960`: 38 convs (strided, depthwise 3x3 / 5x5,
    pointwise with the SE blocks' scale as a prologue, 1x3 in the neck), an average pool over
    the width, a concat along channels, the SVTR neck over (w+1)//2//2//2 steps."""
    shapes, _ = parse_input_shapes(["x=1,3,48,w:16..960"])
    art = pyc_cli.build(PP_OCR_REC, tmp_path / "art", input_shapes=shapes).artifact

    def feeds(rng: np.random.Generator, _: int, w: int) -> dict[str, np.ndarray]:
        return {"x": rng.standard_normal((1, 3, 48, w)).astype(np.float32)}

    runs = [(1, w) for w in (16, 17, 31, 100, 320, 321, 959, 960)]
    runs_match_onnxruntime(PP_OCR_REC, art, feeds, runs, rtol=1e-4, atol=2e-5,
                           monkeypatch=monkeypatch)


@pytest.mark.skipif(not PP_OCR_CLS.is_file(), reason=NOT_DOWNLOADED)
def test_pp_ocr_cls_builds_once_for_every_batch_and_width(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shapes, _ = parse_input_shapes(["x=b:1..8,3,48,w:16..960"])
    art = pyc_cli.build(PP_OCR_CLS, tmp_path / "art", input_shapes=shapes).artifact

    def feeds(rng: np.random.Generator, b: int, w: int) -> dict[str, np.ndarray]:
        return {"x": rng.standard_normal((b, 3, 48, w)).astype(np.float32)}

    runs = [(1, 16), (3, 17), (1, 192), (2, 333), (8, 960)]
    runs_match_onnxruntime(PP_OCR_CLS, art, feeds, runs, rtol=1e-4, atol=1e-5,
                           monkeypatch=monkeypatch)
