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
from pyc_cli.errors import PycError
from pyc_cli.ir.run_dims import shape_argument
from pyc_cli.ir.symbolic import Dim, check_within, parse_input_shapes
from pyc_cli.targets.cpu import spatial_dims
from tests.dynamic.checks import runs_match_onnxruntime
from tests.helpers import assert_strict_c11, init, make_model, rand, write_model

MODELS = Path("/tmp/rapid/whl/rapidocr_onnxruntime/models")
PP_OCR_REC = MODELS / "ch_PP-OCRv4_rec_infer.onnx"
PP_OCR_CLS = MODELS / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
PP_OCR_DET = MODELS / "ch_PP-OCRv4_det_infer.onnx"
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
        # 3x3 stride 1 after a Relu (not fused: it would be computed once per tap)
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


@pytest.mark.parametrize("variant", ["plane", "direct_rowwise", "portable"])
def test_convs_pools_and_concat_over_symbolic_height_and_width(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str) -> None:
    """plane: depthwise convs read a zero-bordered plane, other convs run on flat chunks of
    pixels; direct_rowwise: the direct loop (a plane over the stack cap), and stride-1 convs
    of taps chunked row by row (interior chunks read the input in place); portable: the
    x86-64 baseline (16-byte vectors), whose im2col GEMM takes every conv's prologue, so the
    3x3 conv's Relu is fused and computed as its taps are gathered."""
    planes = variant != "direct_rowwise"
    cpu = "x86-64" if variant == "portable" else "native"
    if not planes:
        monkeypatch.setattr(spatial_dims, "PLANE_STACK_BYTES", 0)
        monkeypatch.setattr(spatial_dims, "ROWWISE_MIN_CHUNKS", 0)
    model_path = spatial_branches(tmp_path)
    shapes, _ = parse_input_shapes(["x=n:1..3,8,h:5..23,w:5..80"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes, cpu=cpu).artifact
    kernels = _kernels(art)
    assert {kernels[n] for n in ("stem", "dw", "pw", "dil", "c3", "pwg", "pw2", "dwp", "res")} \
        == {"conv2d_dims"}, kernels
    assert {kernels[n] for n in ("avg32", "avg_pad", "max")} == {"pool_dims"}
    assert kernels["concat"] == "concat_dims"
    source = (art / "src" / "model.c").read_text()
    # each conv path: chunks of pixels over taps (stem, dil, c3, pwg) and over input channels
    # (pw, pw2), the bordered plane or the direct loop (dw, dwp)
    assert "seg_oh[s]" in source and "ipix = p0 + j" in source
    assert ("plane[q] = 0" in source) == planes and ("ow_lo[kw] = lo;" in source) != planes
    assert ("if (interior)" in source) == (variant != "plane")
    # the prologues of pw and dwp are fused and read (c3's would be computed once per tap,
    # but the portable ISA's im2col takes it)
    model_ir = (art / "model.ir").read_text()
    assert model_ir.count("prologue=") == (3 if variant == "portable" else 2)
    assert_strict_c11("gcc", art)

    def feeds(rng: np.random.Generator, h: int, w: int) -> dict[str, np.ndarray]:
        n = 1 + (h + w) % 3
        return {"x": rng.standard_normal((n, 8, h, w)).astype(np.float32)}

    runs = [(5, 5), (5, 80), (23, 5), (23, 80), (6, 7), (11, 32), (17, 33), (8, 77), (9, 67)]
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


def test_step_dims_parse_bind_and_refuse() -> None:
    """`h:32..960/32` makes the axis 32*h with h in 1..30: shape arithmetic simplifies the
    strided halvings, a run binds h = size / 32, and sizes off the step are refused."""
    shapes, bounds = parse_input_shapes(["x=1,3,h:32..960/32,w:8..64/8", "m=1,h,w"])
    h, w = shapes["x"][2], shapes["x"][3]
    assert isinstance(h, Dim) and str(h) == "32*h" and (bounds["h"].lo, bounds["h"].hi) == (1, 30)
    assert shapes["m"][1:] == (h, w) and int(w) == 64
    assert str((h + 1) // 2) == "16*h"
    assert shape_argument(shapes["x"]) == [1, 3, "h:32..960/32", "w:8..64/8"]
    env: dict[str, int] = {}
    check_within("x", shapes["x"], (1, 3, 96, 24), env)
    assert env == {"h": 3, "w": 3}
    for bad, words in (((1, 3, 100, 24), "not a multiple of 32"),
                       ((1, 3, 992, 24), "outside its bounds 32..960")):
        with pytest.raises(PycError) as info:
            check_within("x", shapes["x"], bad, {})
        assert info.value.code == "E041" and words in info.value.what
    for text in ("x=h:30..960/32", "x=h:32..960/0"):
        with pytest.raises(PycError) as info:
            parse_input_shapes([text])
        assert info.value.code == "E006"
    with pytest.raises(PycError) as info:
        parse_input_shapes(["x=h:32..64/32", "y=h:32..64/16"])
    assert info.value.code == "E006"


def upsampling_head(tmp_path: Path, c: int = 6) -> Path:
    """x[1, 6, H, W] -> nearest Resize x2 (scales) -> + skip[1, 6, 2H, 2W] -> ConvTranspose
    2x2 stride 2 (6 -> 3, bias) -> y[1, 3, 4H, 4W]; and a strided conv of the skip back to
    x's size added to x (an FPN: equal only where H, W are even)."""
    rng = np.random.default_rng(9)
    inits = [init("roi", np.zeros(0, np.float32)), init("scales", np.array([1, 1, 2, 2], np.float32)),
             init("wt", rand(rng, c, 3, 2, 2, scale=0.4)), init("bt", rand(rng, 3)),
             init("wd", rand(rng, c, c, 3, 3, scale=0.2))]
    nodes = [
        helper.make_node("Resize", ["x", "roi", "scales"], ["up"], name="up", mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Add", ["up", "skip"], ["s"], name="merge"),
        helper.make_node("ConvTranspose", ["s", "wt", "bt"], ["y"], name="deconv",
                         kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["skip", "wd"], ["down"], name="down", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["down", "x"], ["z"], name="fpn_add"),
    ]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, "h", "w"]),
           helper.make_tensor_value_info("skip", TensorProto.FLOAT, [1, c, "h2", "w2"])]
    outs = [helper.make_tensor_value_info(v, TensorProto.FLOAT, [None] * 4) for v in ("y", "z")]
    return write_model(make_model(nodes, ins, outs, inits), tmp_path, "head.onnx")


def test_upsampling_head_over_step_dims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two inputs sharing dims, one of them with a step: skip is [1, 6, 2*h, 2*w] (what
    `skip=1,6,h2:2..40/2,...` would give, here sharing x's h and w). The nearest Resize, the
    ConvTranspose and the strided conv read the dims at run time; the C entry point binds h
    and w from x and checks skip's sizes are twice them (a multiple of 2, then equal)."""
    model_path = upsampling_head(tmp_path)
    shapes, _ = parse_input_shapes(["x=1,6,h:1..20,w:1..24", "skip=1,6,h,w"])
    shapes["skip"] = (1, 6, 2 * shapes["x"][2], 2 * shapes["x"][3])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes).artifact
    kernels = _kernels(art)
    assert (kernels["up"], kernels["deconv"], kernels["down"]) == (
        "resize_nearest_dims", "conv_transpose2d_dims", "conv2d_dims")
    assert "% 2 != 0" in (art / "src" / "model.c").read_text()  # skip's axes: 2*h, 2*w
    assert_strict_c11("gcc", art)
    def feeds(rng: np.random.Generator, h: int, w: int) -> dict[str, np.ndarray]:
        return {"x": rng.standard_normal((1, 6, h, w)).astype(np.float32),
                "skip": rng.standard_normal((1, 6, 2 * h, 2 * w)).astype(np.float32)}

    runs_match_onnxruntime(model_path, art, feeds, [(1, 1), (1, 24), (20, 1), (7, 13), (20, 24)],
           rtol=1e-5, atol=1e-5, monkeypatch=monkeypatch)
    with pyc_cli.load(art) as model:
        with pytest.raises(PycError) as info:
            model.run({"x": np.zeros((1, 6, 3, 4), np.float32),
                       "skip": np.zeros((1, 6, 7, 8), np.float32)})
        assert info.value.code == "E041" and "not a multiple of 2" in info.value.what


def _det_logits(tmp_path: Path) -> Path:
    """PP-OCRv4 det without its last Sigmoid: its probabilities are ~0 on random inputs, the
    logits (up to ~100) are what a comparison can see."""
    import onnx

    model = onnx.load(str(PP_OCR_DET))
    sigmoid = [n for n in model.graph.node if n.op_type == "Sigmoid"][-1]
    model.graph.node.remove(sigmoid)
    model.graph.output[0].name = sigmoid.input[0]
    path = tmp_path / "det_logits.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.skipif(not PP_OCR_DET.is_file(), reason=NOT_DOWNLOADED)
def test_pp_ocr_det_builds_once_for_every_multiple_of_32(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PP-OCRv4 det with `x=1,3,h:32..960/32,w:32..960/32` (rapidocr pads to multiples of 32):
    its FPN adds strided and upsampled maps, equal sizes only on that grid."""
    model_path = _det_logits(tmp_path)
    shapes, _ = parse_input_shapes(["x=1,3,h:32..960/32,w:32..960/32"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes).artifact

    def feeds(rng: np.random.Generator, h: int, w: int) -> dict[str, np.ndarray]:
        return {"x": rng.standard_normal((1, 3, h, w)).astype(np.float32)}

    runs = [(32, 32), (32, 960), (960, 32), (96, 160), (480, 640)]
    runs_match_onnxruntime(model_path, art, feeds, runs, rtol=1e-4, atol=1e-5,
                           monkeypatch=monkeypatch)
