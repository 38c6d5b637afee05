"""The pixel-major convolution (conv2d_pixel.c.j2): the packed GEMM with vectors over output
channels (the weights packed at build time into panels of NR channels) and register rows over
output pixels, the columns the input itself (pointwise) or gathered into the scratch. Against a
float64 numpy convolution on odd sizes: 1x1 (pointwise in place, strided, padded), 3x3 with
pads 1 / asymmetric / larger than the kernel, stride 2 and (2, 1), dilation, a 7x7 stem,
output channels below, at and past NR (4, 5, 33, 70), pixel counts below MR (1, 3) and past
it with tails, batches, fused bias + ReLU, residual and per-row epilogues; AVX-512 (run where
the CPU has it) and AVX2, with derived and tuned register blocks (maps of at most 64 pixels
default to 14-row blocks on AVX-512) and tuned K blocks (run outside groups of panels); 1, 2
and 3 threads give the same bits. Tolerance: RTOL / ATOL plus the float32 summation bound of each element."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conv_cases import assert_within_bounds, conv_graph, same_bits_at_every_team_size
from helpers import assert_strict_c11, init, make_model, rand, vinfo
from onnx import helper
from test_gemm import BUILDS, Forced

import pyc_cli
from pyc_cli.planning import weights
from pyc_cli.targets import get_target
from pyc_cli.targets.cpu import kernels as cpu_kernels

CANDIDATE = "conv2d_pixel_gemm"
# (x shape, w shape, strides, pads (begins..., ends...), dilations, group, epilogue)
CONVS = [
    ((1, 37, 7, 7), (70, 37, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),  # ResNet's 7x7
    ((1, 33, 14, 14), (45, 33, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "residual"),  # pointwise
    ((2, 31, 9, 11), (17, 31, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1, ""),  # downsample, batch
    ((1, 9, 12, 9), (13, 9, 3, 3), (2, 2), (0, 1, 1, 0), (1, 1), 1, "residual"),  # asymmetric
    ((1, 8, 11, 7), (10, 8, 3, 3), (2, 1), (1, 1, 1, 1), (1, 1), 1, "per_row"),  # stride (2, 1)
    ((1, 6, 13, 12), (8, 6, 3, 3), (1, 1), (1, 2, 3, 2), (3, 2), 1, "bias_relu"),  # dilated
    ((1, 16, 3, 3), (33, 16, 3, 3), (2, 2), (0, 0, 0, 0), (1, 1), 1, "bias_relu"),  # 1 pixel
    ((1, 11, 1, 3), (5, 11, 1, 3), (1, 1), (0, 1, 0, 1), (1, 1), 1, "residual"),  # 3 pixels
    ((1, 11, 6, 7), (4, 11, 1, 1), (2, 2), (3, 3, 2, 2), (1, 1), 1, ""),  # pads > kernel, 4 ch
    ((1, 3, 23, 21), (16, 3, 7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1, "bias_relu"),  # a stem
    ((2, 64, 5, 5), (96, 64, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "residual"),  # 2 panels+
]


def pixel_graph(rng: np.random.Generator, convs: list):  # noqa: ANN201 (conv_cases.ConvGraph)
    return conv_graph(rng, convs, np.float32, name="pixel")


@pytest.mark.parametrize("isa,params", [
    ("avx512", {}), ("avx2", {}), ("avx512", {"mr": 4, "mc": 24, "nc": 64}),
    ("avx512", {"mr": 14}), ("avx2", {"mr": 5, "unroll": 2}),
    ("avx512", {"kc": 24}), ("avx512", {"kc": 64, "mr": 14, "nc": 64}),
    ("avx2", {"kc": 40, "mr": 5})],
    ids=["avx512", "avx2", "avx512-mr4-mc24-nc64", "avx512-mr14", "avx2-mr5-unroll2",
         "avx512-kc24", "avx512-kc64-mr14-nc64", "avx2-kc40-mr5"])
def test_pixel_conv_matches_numpy(isa: str, params: dict[str, int], tmp_path: Path,
                                  rng: np.random.Generator) -> None:
    graph = pixel_graph(rng, CONVS)
    onnx.save(graph.model, tmp_path / "m.onnx")
    build = BUILDS[isa]
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=build.cpu,
                           tuning=Forced("Conv", CANDIDATE, params))
    chosen = [n.ann.kernel.candidate for n in result.graph.nodes
              if n.op == "Conv" and n.ann.kernel is not None]
    assert chosen == [CANDIDATE] * len(CONVS), chosen
    # the weights file holds every conv's weight as panels of NR output channels
    manifest = json.loads((result.artifact / "manifest.json").read_text())
    stored = manifest["weights"]["transformed"]
    width = 32 if isa == "avx512" else 16
    assert stored == {f"w{n}": weights.conv_panels_name(width) for n in range(len(CONVS))}
    if not build.runnable:
        return  # compiled for a CPU this one is not: compile-only
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run(graph.feeds)
    assert_within_bounds(got, graph.expected, graph.summation_bounds(np.float32), np.float32)


def test_the_weight_panels_read_back_exactly(rng: np.random.Generator) -> None:
    """[OC, C, KH, KW] -> panels [ceil(OC/NR), C*KH*KW, NR], zero past OC, and back."""
    w = rng.standard_normal((45, 7, 3, 2)).astype(np.float32)
    for width in weights.CONV_PANEL_WIDTHS:
        transform = weights.TRANSFORMS[weights.conv_panels_name(width)]
        stored = transform.forward(w)
        panels = -(-45 // width)
        assert stored.shape == transform.shape(w.shape) == (panels, 42, width)
        matrix = w.reshape(45, 42).T
        for p in range(panels):
            cols = matrix[:, p * width:(p + 1) * width]
            np.testing.assert_array_equal(stored[p, :, :cols.shape[1]], cols)
            assert not stored[p, :, cols.shape[1]:].any()
        np.testing.assert_array_equal(transform.inverse(stored.reshape(-1), w.shape), w)


def test_the_cost_model_takes_it_on_small_maps(tmp_path: Path, rng: np.random.Generator) -> None:
    """ResNet-50's late layers (7x7 and 14x14 maps, whose pixel counts leave the channel-major
    kernels' last vectors part empty; reductions long enough to pay for the transposed stores)
    take it, with the reason logged; a 56x56 map (whole vectors of pixels) and a large gather
    keep the channel-major kernels; a short reduction and a few pixels (dot products) too;
    memory_first keeps the implicit GEMM where the gathered columns exceed its 32 KiB cap; the
    portable build never takes it (no intrinsics)."""
    convs = [((1, 64, 7, 7), (128, 64, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "bias_relu"),
             ((1, 64, 7, 7), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),
             ((1, 256, 14, 14), (64, 256, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "residual"),
             ((1, 32, 56, 56), (64, 32, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "bias_relu"),
             ((1, 64, 56, 56), (64, 64, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),
             ((1, 8, 7, 7), (64, 8, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, ""),
             ((1, 64, 4, 4), (64, 64, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, "")]
    graph = pixel_graph(rng, convs)
    onnx.save(graph.model, tmp_path / "m.onnx")
    others = ["conv2d_implicit_gemm", "conv2d_dots"]
    wanted = {"balanced": [CANDIDATE] * 3 + ["conv2d_implicit_gemm", "conv2d_strided_gemm"] + others,
              "memory_first": [CANDIDATE, "conv2d_implicit_gemm", CANDIDATE,
                               "conv2d_implicit_gemm", "conv2d_im2col_gemm"] + others}
    for isa in ("avx512", "avx2"):
        for mode, kernels in wanted.items():
            if isa == "avx2":  # 16-lane panels: the 14x14 map fills 196 of 208, enough
                kernels = kernels[:2] + ["conv2d_implicit_gemm"] + kernels[3:]
            out = tmp_path / f"{isa}-{mode}"
            result = pyc_cli.build(tmp_path / "m.onnx", out, cpu=BUILDS[isa].cpu, mode=mode,
                                   layout="nchw")  # plain kernels
            chosen = [n.ann.kernel.candidate for n in result.graph.nodes if n.op == "Conv"]
            assert chosen == kernels, (isa, mode, chosen)
            assert f'"after":"{CANDIDATE}"' in (out / "decisions.jsonl").read_text()
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "portable", cpu=BUILDS["vector"].cpu)
    assert CANDIDATE not in [n.ann.kernel.candidate for n in result.graph.nodes if n.op == "Conv"]


def test_it_does_not_apply_where_the_weights_cannot_be_repacked(tmp_path: Path,
                                                                rng: np.random.Generator) -> None:
    """Two convs sharing one weight (the file holds one image of it), a grouped conv and a 1-D
    conv keep the other kernels, even where a tuning database names this one; a lone 2-D conv
    beside them takes it."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y0"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w"], ["y1"], pads=[1, 1, 1, 1], dilations=[2, 2]),
             helper.make_node("Conv", ["x", "wg"], ["y2"], pads=[1, 1, 1, 1], group=2),
             helper.make_node("Conv", ["v", "w1"], ["y3"], pads=[1, 1]),
             helper.make_node("Conv", ["x", "w2"], ["y4"], pads=[1, 1, 1, 1])]
    inits = [init("w", rand(rng, 12, 8, 3, 3)), init("wg", rand(rng, 12, 4, 3, 3)),
             init("w1", rand(rng, 12, 8, 3)), init("w2", rand(rng, 12, 8, 3, 3))]
    outputs = [vinfo(f"y{n}", shape) for n, shape in
               enumerate([(1, 12, 7, 7), (1, 12, 5, 5), (1, 12, 7, 7), (1, 12, 9), (1, 12, 7, 7)])]
    model = make_model(nodes, [vinfo("x", (1, 8, 7, 7)), vinfo("v", (1, 8, 9))], outputs, inits)
    onnx.save(model, tmp_path / "m.onnx")
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=BUILDS["avx512"].cpu,
                           tuning=Forced("Conv", CANDIDATE, {}))
    chosen = [n.ann.kernel.candidate for n in result.graph.nodes if n.op == "Conv"]
    assert [c == CANDIDATE for c in chosen] == [False] * 4 + [True], chosen


@pytest.mark.parametrize("part_bytes,groups", [(4096, 1), (16384, 2)])
def test_k_blocks_outside_groups_of_panels(part_bytes: int, groups: int, tmp_path: Path,
                                           rng: np.random.Generator,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A tuned kc runs the K blocks outside groups of panels (gemm_packed.j2's kouter): with
    the partial sums capped at one or two panels, a task's 5 panels run as 5 groups of 1 or as
    2 + 2 + 1, each with a first, middle and last K block (a 333-long reduction in blocks of
    24, the last 21 long), 49 pixels in 14-row blocks and a 7-row tail; against numpy float64.
    A pointwise conv beside it (short K: one block) keeps the plain loop."""
    monkeypatch.setattr(cpu_kernels, "PIXEL_PART_BYTES", part_bytes)
    convs = [((1, 37, 7, 7), (150, 37, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),
             ((1, 19, 7, 7), (40, 19, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "residual")]
    graph = pixel_graph(rng, convs)
    onnx.save(graph.model, tmp_path / "m.onnx")
    build = BUILDS["avx512"]
    art = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=build.cpu,
                        tuning=Forced("Conv", CANDIDATE, {"kc": 24, "nc": 160})).artifact
    source = (art / "src" / "model.c").read_text()
    assert source.count("first K block") == 1
    assert f"float parts[{groups}][56][32];" in source
    if not build.runnable:
        return
    with pyc_cli.load(art) as compiled:
        got = compiled.run(graph.feeds)
    assert_within_bounds(got, graph.expected, graph.summation_bounds(np.float32), np.float32)


@pytest.mark.skipif(not get_target("cpu").openmp(), reason="the C compiler has no OpenMP runtime")
def test_pixel_conv_is_the_same_for_every_team_size(
        tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Layer-4-sized convs (a 3x3 on a 7x7 map, gathered by threads; a pointwise one): 1, 2
    and 3 threads give the same bits, within tolerance of numpy float64."""
    convs = [((1, 256, 7, 7), (256, 256, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),
             ((1, 512, 7, 7), (256, 512, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "residual")]
    graph = pixel_graph(rng, convs)
    onnx.save(graph.model, tmp_path / "m.onnx")
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", layout="nchw")  # plain kernels
    if {n.ann.kernel.candidate for n in result.graph.nodes if n.op == "Conv"} != {CANDIDATE}:
        pytest.skip("this CPU has no AVX2 / AVX-512")
    source = (result.artifact / "src" / "model.c").read_text()
    assert source.count("PYC_PARALLEL_FOR") >= 3  # the gather and both GEMMs
    got = same_bits_at_every_team_size(tmp_path / "a", graph.feeds, monkeypatch)
    assert_within_bounds(got, graph.expected, graph.summation_bounds(np.float32), np.float32)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_pixel_conv_is_strict_c11(isa: str, compiler: str, tmp_path: Path,
                                  rng: np.random.Generator) -> None:
    onnx.save(pixel_graph(rng, CONVS).model, tmp_path / "m.onnx")
    art = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=BUILDS[isa].cpu,
                        tuning=Forced("Conv", CANDIDATE, {})).artifact
    assert_strict_c11(compiler, art)
