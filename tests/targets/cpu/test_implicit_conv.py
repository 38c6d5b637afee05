"""Stride-1 convolution as an implicit GEMM (conv2d_implicit.c.j2): the micro-kernel loads the
input in place through per-tap lane masks, with no gathered columns and no workspace. Against a
float64 numpy convolution on odd sizes: same and valid padding, asymmetric pads, dilation,
groups, a 1-D conv, a non-square kernel, tails past MR output channels and past NR pixels,
batches, fused bias + ReLU and residual epilogues (the output and residual rows
prefetched ahead); AVX-512 (run where the CPU has it) and AVX2,
float32 and float64. Tolerance: RTOL/ATOL plus the float32 summation bound of each element."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conv_cases import assert_within_bounds, conv_graph
from helpers import assert_strict_c11, make_model, vinfo
from onnx import TensorProto, helper, numpy_helper
from test_gemm import ATOL, BUILDS, RTOL, Forced

import pyc_cli

CANDIDATE = "conv2d_implicit_gemm"
# (x shape, w shape, pads (begins..., ends...), dilations, group, epilogue)
RESNET_LIKE = ((1, 32, 14, 14), (64, 32, 3, 3), (1, 1, 1, 1), (1, 1), 1, "")  # a ResNet-like block
CONVS = [
    ((1, 5, 11, 7), (8, 5, 3, 3), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),  # same, tails
    ((2, 9, 9, 13), (17, 9, 1, 1), (0, 0, 0, 0), (1, 1), 1, ""),  # pointwise, batch 2
    ((1, 16, 7, 7), (35, 16, 1, 1), (0, 0, 0, 0), (1, 1), 1, "residual"),  # 49 pixels
    # prefetches the output and the residual rows ahead (short K, 3+ register blocks of
    # channels), in the second image too
    ((2, 13, 9, 13), (41, 13, 1, 1), (0, 0, 0, 0), (1, 1), 1, "residual"),
    ((1, 8, 9, 11), (16, 8, 3, 3), (0, 0, 0, 0), (1, 1), 1, "residual"),  # valid: OW < W
    ((1, 8, 9, 11), (13, 8, 3, 5), (2, 1, 0, 3), (1, 1), 1, "bias_relu"),  # asymmetric
    ((1, 6, 10, 12), (12, 3, 3, 3), (1, 1, 1, 1), (1, 1), 2, ""),  # groups
    ((1, 8, 13, 13), (16, 8, 3, 3), (2, 2, 2, 2), (2, 2), 1, "bias_relu"),  # dilated
    ((2, 16, 20), (24, 16, 5), (2, 2), (1,), 1, "residual"),  # 1-D
    RESNET_LIKE,
    # an operand broadcast along the output width: not indexed by the flat pixel
    ((1, 12, 6, 10), (9, 12, 3, 3), (1, 1, 1, 1), (1, 1), 1, "per_row"),
]


def conv_model(rng: np.random.Generator, dtype: type = np.float32) -> tuple[
        onnx.ModelProto, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The CONVS (stride 1) in one graph, their inputs, float64 references and summation
    bounds."""
    graph = conv_graph(rng, [(xs, ws, (1,) * (len(xs) - 2), pads, dilations, group, epilogue)
                             for xs, ws, pads, dilations, group, epilogue in CONVS], dtype)
    return graph.model, graph.feeds, graph.expected, graph.summation_bounds(dtype)


def _build_and_check(tmp_path: Path, isa: str, dtype: type, params: dict[str, int],
                     rng: np.random.Generator) -> None:
    model, feeds, expected, bounds = conv_model(rng, dtype)
    onnx.save(model, tmp_path / "convs.onnx")
    build = BUILDS[isa]
    forced = Forced("Conv", CANDIDATE, params)
    result = pyc_cli.build(tmp_path / "convs.onnx", tmp_path / "a", tuning=forced, cpu=build.cpu)
    chosen = [n.ann.kernel.candidate for n in result.graph.nodes
              if n.op == "Conv" and n.ann.kernel is not None]
    assert chosen == [CANDIDATE] * len(CONVS), chosen
    source = (tmp_path / "a" / "src" / "model.c").read_text()
    assert ("_mm512_maskz_loadu_" if isa == "avx512" else "_mm256_maskload_") in source
    assert "__builtin_prefetch(E0 + (y - Y)" in source  # the residual's rows ahead
    if not build.runnable:
        return  # compiled for a CPU this one is not: compile-only
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run(feeds)
    assert_within_bounds(got, expected, bounds, dtype)


@pytest.mark.parametrize("isa,params", [("avx512", {}), ("avx2", {}),
                                        ("avx512", {"mr": 4, "mc": 24, "nc": 64}),
                                        ("avx2", {"mr": 5, "unroll": 2})],
                         ids=["avx512", "avx2", "avx512-mr4-mc24-nc64", "avx2-mr5-unroll2"])
def test_implicit_conv_matches_numpy(isa: str, params: dict[str, int], tmp_path: Path,
                                     rng: np.random.Generator) -> None:
    _build_and_check(tmp_path, isa, np.float32, params, rng)


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_implicit_conv_float64_matches_numpy(isa: str, tmp_path: Path,
                                             rng: np.random.Generator) -> None:
    _build_and_check(tmp_path, isa, np.float64, {}, rng)


def test_the_cost_model_prefers_it_and_falls_back_where_it_cannot(
        tmp_path: Path, rng: np.random.Generator) -> None:
    """Chosen for every stride-1 conv here on AVX-512 (without Winograd, which takes the
    ResNet-like 3x3 conv: test_winograd.py; but the pixel-major GEMM takes that one on its small
    map: test_pixel_conv.py); a strided conv takes the phase-split variant
    (test_strided_conv.py), and the portable build (no masked loads) keeps the im2col GEMM
    for both."""
    model, _, _, _ = conv_model(rng)
    strided = helper.make_node("Conv", ["x0", "w0"], ["s"], "strided", pads=[1] * 4,
                               strides=[2, 2])
    model.graph.node.append(strided)
    model.graph.output.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 8, 6, 4]))
    onnx.save(model, tmp_path / "m.onnx")
    for isa, wanted in (("avx512", CANDIDATE), ("vector", "conv2d_im2col_gemm")):
        result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / isa, cpu=BUILDS[isa].cpu,
                               winograd=False, layout="nchw")  # plain kernels
        convs = [n for n in result.graph.nodes if n.op == "Conv" and n.ann.kernel is not None]
        kernels = {n.name: n.ann.kernel.candidate for n in convs}
        strided_kernel = kernels.pop(strided.name)
        # the ResNet-like block's 14x14 map fills 196 of 224 lanes of a pixel panel: its
        # 288-long reduction pays for the pixel-major GEMM's transposed stores
        resnet_like = convs[CONVS.index(RESNET_LIKE)].name
        assert kernels.pop(resnet_like) == ("conv2d_pixel_gemm" if isa == "avx512" else wanted)
        assert set(kernels.values()) == {wanted}, (isa, kernels)
        assert strided_kernel == ("conv2d_strided_gemm" if isa == "avx512" else "conv2d_im2col_gemm")
        # the implicit convs take no scratch
        assert all(not n.ann.kernel.workspace_bytes for n in result.graph.nodes
                   if n.ann.kernel is not None and n.ann.kernel.candidate == CANDIDATE)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_implicit_conv_is_strict_c11(isa: str, compiler: str, tmp_path: Path,
                                     rng: np.random.Generator) -> None:
    model, _, _, _ = conv_model(rng)
    onnx.save(model, tmp_path / "m.onnx")
    art = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=BUILDS[isa].cpu).artifact
    assert_strict_c11(compiler, art)


# (x shape, w shape [C, OC, KH, KW] with strides = kernel, bias)
TRANSPOSES = [((1, 24, 7, 9), (24, 5, 2, 2), True), ((2, 3, 5, 4), (3, 17, 3, 3), False),
              ((1, 8, 6, 6), (8, 1, 2, 2), True), ((1, 19, 5, 7), (19, 6, 2, 3), False)]


def _transpose_model(rng: np.random.Generator) -> tuple[
        onnx.ModelProto, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """ConvTransposes whose kernel tiles the output (stride = kernel), float64 references:
    y[n, o, ih*SH + kh, iw*SW + kw] = sum_c x[n, c, ih, iw] w[c, o, kh, kw] (+ b[o])."""
    nodes, inputs, outputs, inits = [], [], [], []
    feeds: dict[str, np.ndarray] = {}
    expected: dict[str, np.ndarray] = {}
    for n, (xs, ws, with_bias) in enumerate(TRANSPOSES):
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        feeds[f"x{n}"] = x
        inputs.append(helper.make_tensor_value_info(f"x{n}", TensorProto.FLOAT, list(xs)))
        inits.append(numpy_helper.from_array(w, f"w{n}"))
        taps = np.einsum("nchw,cokl->nohkwl", x.astype(np.float64), w.astype(np.float64))
        want = taps.reshape(xs[0], ws[1], xs[2] * ws[2], xs[3] * ws[3])
        args = [f"x{n}", f"w{n}"]
        if with_bias:
            bias = rng.standard_normal(ws[1]).astype(np.float32)
            inits.append(numpy_helper.from_array(bias, f"b{n}"))
            args.append(f"b{n}")
            want = want + bias.astype(np.float64)[:, None, None]
        nodes.append(helper.make_node("ConvTranspose", args, [f"y{n}"], strides=list(ws[2:])))
        outputs.append(helper.make_tensor_value_info(f"y{n}", TensorProto.FLOAT, list(want.shape)))
        expected[f"y{n}"] = want
    return make_model(nodes, inputs, outputs, inits, name="transposes"), feeds, expected


@pytest.mark.parametrize("isa", ["avx512", "avx2", "vector"])
def test_tiling_conv_transpose_is_one_gemm(isa: str, tmp_path: Path,
                                           rng: np.random.Generator) -> None:
    """Kernel = stride: one GEMM on the implicit conv's micro-kernel (AVX2, AVX-512), the
    direct scatter loop on the portable build; both against numpy float64 (a sum of C
    products: |err| <= (C + 2) u sum |terms| + RTOL |want| + ATOL)."""
    model, feeds, expected = _transpose_model(rng)
    onnx.save(model, tmp_path / "m.onnx")
    build = BUILDS[isa]
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=build.cpu)
    wanted = "conv_transpose2d_direct" if isa == "vector" else "conv_transpose2d_gemm"
    assert {n.ann.kernel.candidate for n in result.graph.nodes if n.ann.kernel is not None} \
        == {wanted}
    if not build.runnable:
        return
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run(feeds)
    for (name, want), (_, ws, _) in zip(expected.items(), TRANSPOSES, strict=True):
        bound = (ws[0] + 2) * 2.0 ** -24 * np.abs(want).max()
        np.testing.assert_allclose(got[name], want, rtol=RTOL, atol=ATOL + bound, err_msg=name)


def test_an_overlapping_conv_transpose_keeps_the_direct_loop(tmp_path: Path,
                                                             rng: np.random.Generator) -> None:
    """Kernel 3 at stride 2 (outputs take several taps), padding, groups: the direct loop."""
    w = numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="overlap", strides=[2, 2]),
             helper.make_node("ConvTranspose", ["x", "w"], ["z"], name="padded", strides=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("ConvTranspose", ["x", "w"], ["v"], name="grouped", strides=[3, 3],
                              group=2)]
    model = make_model(nodes, [vinfo("x", [1, 4, 5, 5])], [
        vinfo("y", [1, 2, 11, 11]), vinfo("z", [1, 2, 13, 13]), vinfo("v", [1, 4, 15, 15])], [w])
    onnx.save(model, tmp_path / "m.onnx")
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=BUILDS["avx512"].cpu)
    assert {n.ann.kernel.candidate for n in result.graph.nodes} == {"conv_transpose2d_direct"}


def test_channels_in_whole_blocks_of_12_take_12_rows() -> None:
    """On AVX-512 a conv whose channels are whole blocks of 12 (PP-OCR rec's 240, 480) runs
    12-row register blocks; ResNet's 64 .. 512 and other ISAs keep their default rows (the
    numerics of a 12-row plan: the 1-D conv of 24 channels in CONVS, avx512)."""
    from pyc_cli.targets.cpu import kernels

    assert kernels._implicit_rows("avx512", 240) == {"mr": 12}
    assert kernels._implicit_rows("avx512", 24) == {"mr": 12}
    assert any(ws[0] % 12 == 0 and group == 1 for _, ws, _, _, group, _ in CONVS)
    for ocg in (64, 128, 256, 512, 35):
        assert kernels._implicit_rows("avx512", ocg) == {}
    assert kernels._implicit_rows("avx2", 240) == {}
