"""Strided convolution as the implicit GEMM over a polyphase copy of the input
(conv2d_strided.c.j2): against a float64 numpy convolution on odd sizes: strides 2, 3 and
(2, 1), kernels 1x1, 2x2, 3x3, 7x7 and kernels smaller than the stride, pads 0 / 1 / 3 /
asymmetric, dilation, groups, 1-D convs, 1-pixel outputs, prime channel counts, tails past MR
output channels and past NR pixels, batches, fused bias + ReLU and residual epilogues; AVX-512
(run where the CPU has it) and AVX2, float32 and float64; 1, 2 and 3 threads give the same bits.
Tolerance: RTOL/ATOL plus the float32 (float64) summation bound of each element."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conv_cases import assert_within_bounds, conv_graph, conv_reference, same_bits_at_every_team_size
from helpers import assert_strict_c11, make_model
from onnx import TensorProto, helper, numpy_helper
from test_gemm import ATOL, BUILDS, RTOL, Forced

import pyc_cli
from pyc_cli.targets import get_target

CANDIDATE = "conv2d_strided_gemm"
# (x shape, w shape, strides, pads (begins..., ends...), dilations, group, epilogue)
CONVS = [
    ((1, 3, 23, 21), (16, 3, 7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1, "bias_relu"),  # a stem
    ((1, 17, 15, 13), (31, 17, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, "residual"),
    ((2, 31, 9, 11), (17, 31, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1, ""),  # downsample
    ((1, 8, 10, 10), (12, 8, 2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 1, "bias_relu"),  # patchify
    ((1, 9, 12, 9), (13, 9, 3, 3), (2, 2), (0, 1, 1, 0), (1, 1), 1, "residual"),  # asymmetric
    ((1, 5, 17, 16), (9, 5, 3, 3), (3, 3), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),  # stride 3
    ((1, 8, 11, 7), (10, 8, 3, 3), (2, 1), (1, 1, 1, 1), (1, 1), 1, ""),  # PP-OCR rec's
    ((1, 7, 9, 14), (6, 7, 3, 2), (1, 2), (1, 0, 1, 1), (1, 1), 1, "residual"),
    ((1, 6, 15, 15), (8, 6, 3, 3), (2, 2), (2, 2, 2, 2), (2, 2), 1, "bias_relu"),  # dilated
    ((1, 6, 13, 12), (8, 6, 3, 3), (2, 2), (1, 2, 3, 2), (3, 2), 1, ""),  # odd dilation
    ((1, 12, 9, 9), (10, 6, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2, "residual"),  # groups
    ((1, 16, 3, 3), (8, 16, 3, 3), (2, 2), (0, 0, 0, 0), (1, 1), 1, "bias_relu"),  # 1 pixel
    ((1, 11, 7, 8), (5, 11, 1, 1), (3, 3), (0, 0, 0, 0), (1, 1), 1, ""),  # kernel < stride
    ((1, 10, 9, 9), (7, 10, 2, 2), (3, 3), (1, 1, 0, 0), (1, 1), 1, "residual"),
    ((1, 32, 30, 30), (64, 32, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),  # big
    ((2, 16, 37), (24, 16, 5), (2,), (2, 2), (1,), 1, "residual"),  # 1-D
    ((1, 13, 50), (9, 13, 1), (3,), (0, 0), (1,), 1, "bias_relu"),  # 1-D pointwise
    ((1, 4, 41), (17, 4, 7), (4,), (3, 1), (2,), 1, ""),  # 1-D, dilated, asymmetric
    ((1, 11, 6, 7), (6, 11, 1, 1), (2, 2), (3, 3, 2, 2), (1, 1), 1, "bias_relu"),  # pads > kernel
    ((2, 9, 11, 10), (12, 3, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 3, "residual"),  # batch, groups
]


def strided_model(rng: np.random.Generator, convs: list, dtype: type = np.float32) -> tuple[
        onnx.ModelProto, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """`convs` in one graph, their inputs, float64 references and summation bounds."""
    graph = conv_graph(rng, convs, dtype, name="strided")
    return graph.model, graph.feeds, graph.expected, graph.summation_bounds(dtype)


@pytest.mark.parametrize("isa,params,dtype", [
    ("avx512", {}, np.float32), ("avx2", {}, np.float32),
    ("avx512", {"mr": 4, "mc": 24, "nc": 64}, np.float32), ("avx2", {"mr": 5, "unroll": 2}, np.float32),
    ("avx512", {}, np.float64), ("avx2", {}, np.float64)],
    ids=["avx512", "avx2", "avx512-mr4-mc24-nc64", "avx2-mr5-unroll2", "avx512-f64", "avx2-f64"])
def test_strided_conv_matches_numpy(isa: str, params: dict[str, int], dtype: type,
                                    tmp_path: Path, rng: np.random.Generator) -> None:
    model, feeds, expected, bounds = strided_model(rng, CONVS, dtype)
    onnx.save(model, tmp_path / "m.onnx")
    build = BUILDS[isa]
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", tuning=Forced("Conv", CANDIDATE, params),
                           cpu=build.cpu)
    chosen = [n.ann.kernel.candidate for n in result.graph.nodes
              if n.op == "Conv" and n.ann.kernel is not None]
    assert chosen == [CANDIDATE] * len(CONVS), chosen
    if not build.runnable:
        return  # compiled for a CPU this one is not: compile-only
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run(feeds)
    assert_within_bounds(got, expected, bounds, dtype)


def test_the_cost_model_prefers_it_over_im2col_where_it_applies(
        tmp_path: Path, rng: np.random.Generator) -> None:
    """Chosen by cost for every strided conv here on AVX-512 and AVX2 (but the 1-pixel conv,
    which conv2d_dots takes, and on AVX-512 the big one), logged with the alternatives; the
    portable build keeps im2col; the copy's scratch is the planes (the input's size, padded),
    not KH*KW/(SH*SW) times it."""
    model, _, _, _ = strided_model(rng, CONVS)
    onnx.save(model, tmp_path / "m.onnx")
    for isa in ("avx512", "avx2", "vector"):
        result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / isa, cpu=BUILDS[isa].cpu,
                               layout="nchw")  # plain kernels
        convs = [n for n in result.graph.nodes if n.op == "Conv"]
        kernels = [n.ann.kernel.candidate for n in convs]
        if isa == "vector":
            assert CANDIDATE not in kernels, kernels
            continue
        # the big conv's 15x15 output fills 225 of 256 lanes of its AVX-512 pixel panels: the
        # pixel-major GEMM takes it there (test_pixel_conv.py)
        big = "conv2d_pixel_gemm" if isa == "avx512" else CANDIDATE
        assert kernels == [CANDIDATE] * 11 + ["conv2d_dots"] + [CANDIDATE] * 2 + [big] \
            + [CANDIDATE] * 5, kernels
        decisions = (tmp_path / isa / "decisions.jsonl").read_text()
        assert f'"after":"{CANDIDATE}"' in decisions and "conv2d_im2col_gemm" in decisions
        # the stem's output is 12 x 11, its taps' offsets in a plane up to 3: 4 planes of 15 x 14
        assert convs[0].ann.kernel.workspace_bytes == 3 * 4 * 15 * 14 * 4


def test_a_prologue_is_computed_by_the_copy(tmp_path: Path, rng: np.random.Generator) -> None:
    """BN + ReLU before a strided conv (2-D and 1-D, per-channel scale and shift: the copy's
    (n, ci) coordinates) is fused as the conv's prologue and computed as the planes are copied,
    zero padding left zero; a strided 3-D conv keeps the im2col GEMM."""
    feeds, expected, inits, nodes, inputs, outputs = {}, {}, [], [], [], []
    for n, (xs, ws, strides, pads) in enumerate([((2, 6, 9, 11), (8, 6, 3, 3), [2, 2], [1] * 4),
                                                 ((1, 7, 47), (9, 7, 5), [3], [2, 1])]):
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        scale, shift = (rng.standard_normal((xs[1],) + (1,) * (len(xs) - 2)).astype(np.float32)
                        for _ in range(2))
        inits += [numpy_helper.from_array(w, f"w{n}"), numpy_helper.from_array(scale, f"s{n}"),
                  numpy_helper.from_array(shift, f"b{n}")]
        nodes += [helper.make_node("Mul", [f"x{n}", f"s{n}"], [f"m{n}"]),
                  helper.make_node("Add", [f"m{n}", f"b{n}"], [f"a{n}"]),
                  helper.make_node("Relu", [f"a{n}"], [f"r{n}"]),
                  helper.make_node("Conv", [f"r{n}", f"w{n}"], [f"y{n}"], strides=strides,
                                   pads=pads)]
        act = np.maximum(x.astype(np.float64) * scale + shift, 0)
        want = conv_reference(act, w.astype(np.float64), tuple(strides), tuple(pads),
                                 (1,) * len(strides), 1)
        feeds[f"x{n}"], expected[f"y{n}"] = x, want
        inputs.append(helper.make_tensor_value_info(f"x{n}", TensorProto.FLOAT, list(xs)))
        outputs.append(helper.make_tensor_value_info(f"y{n}", TensorProto.FLOAT, list(want.shape)))
    w3 = numpy_helper.from_array(rng.standard_normal((8, 6, 3, 3, 3)).astype(np.float32), "w3")
    nodes.append(helper.make_node("Conv", ["v", "w3"], ["z"], strides=[2, 2, 2]))
    inputs.append(helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 6, 7, 7, 7]))
    outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 3, 3, 3]))
    feeds["v"] = rng.standard_normal((1, 6, 7, 7, 7)).astype(np.float32)
    onnx.save(make_model(nodes, inputs, outputs, inits + [w3]), tmp_path / "m.onnx")
    build = BUILDS["avx512"]
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=build.cpu)
    convs = [n for n in result.graph.nodes if n.op == "Conv"]
    assert [n.ann.kernel.candidate for n in convs] == [CANDIDATE] * 2 + ["conv2d_im2col_gemm"]
    assert convs[0].ann.prologue and convs[1].ann.prologue
    assert len(result.graph.nodes) == 3  # the prologues' elementwise nodes are gone
    if not build.runnable:
        return
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run(feeds)
    for name, want in expected.items():
        # a sum of C*K products of unit scale in float32
        np.testing.assert_allclose(got[name], want, rtol=RTOL, atol=ATOL * 10, err_msg=name)


@pytest.mark.skipif(not get_target("cpu").openmp(), reason="the C compiler has no OpenMP runtime")
def test_strided_conv_is_the_same_for_every_team_size(
        tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stem and a 3x3/s2 conv big enough for threads (the copy's tasks and the GEMM's): 1, 2
    and 3 threads give the same bits, within tolerance of numpy float64."""
    convs = [((1, 3, 160, 160), (64, 3, 7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1, "bias_relu"),
             ((1, 64, 40, 40), (64, 64, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, "residual")]
    model, feeds, expected, bounds = strided_model(rng, convs)
    onnx.save(model, tmp_path / "m.onnx")
    # forced: the cost model may give the 20 x 20 map to the pixel-major GEMM
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", tuning=Forced("Conv", CANDIDATE, {}))
    if {n.ann.kernel.candidate for n in result.graph.nodes if n.op == "Conv"} != {CANDIDATE}:
        pytest.skip("this CPU has no masked vector loads (AVX2, AVX-512)")
    source = (result.artifact / "src" / "model.c").read_text()
    assert source.count("\n    PYC_PARALLEL_FOR\n") == 2  # the copies
    got = same_bits_at_every_team_size(tmp_path / "a", feeds, monkeypatch)
    assert_within_bounds(got, expected, bounds, np.float32)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_strided_conv_is_strict_c11(isa: str, compiler: str, tmp_path: Path,
                                    rng: np.random.Generator) -> None:
    model, _, _, _ = strided_model(rng, CONVS)
    onnx.save(model, tmp_path / "m.onnx")
    art = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=BUILDS[isa].cpu).artifact
    assert_strict_c11(compiler, art)


def test_memory_first_keeps_im2col_where_the_planes_exceed_its_cap(
        tmp_path: Path, rng: np.random.Generator) -> None:
    """The planes are a whole copy of the input, not tiles: memory_first (32 KiB of scratch)
    takes the im2col GEMM where they exceed its cap, and says so in the decision log; a conv
    whose planes fit, and every mode with a larger cap, keep the strided kernel."""
    # planes: 8 x 4 x 11 x 11 floats (15 KiB), 16 x 4 x 21 x 21 (110 KiB)
    convs = [((1, 8, 20, 20), (16, 8, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, ""),
             ((1, 16, 40, 40), (16, 16, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, "")]
    model, _, _, _ = strided_model(rng, convs)
    onnx.save(model, tmp_path / "m.onnx")
    for mode, wanted in (("balanced", [CANDIDATE] * 2), ("latency_first", [CANDIDATE] * 2),
                         ("memory_first", [CANDIDATE, "conv2d_im2col_gemm"])):
        result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / mode, mode=mode,
                               cpu=BUILDS["avx512"].cpu, layout="nchw")  # plain kernels
        convs_built = [n for n in result.graph.nodes if n.op == "Conv"]
        assert [n.ann.kernel.candidate for n in convs_built] == wanted, mode
        if mode == "memory_first":
            decisions = (tmp_path / mode / "decisions.jsonl").read_text()
            assert f"cheaper {CANDIDATE} would copy more scratch than the memory_first cap" \
                in decisions
