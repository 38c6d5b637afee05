"""The blocked channel layout (NCHWc): the layout pass (passes/assign_layouts.py), the reorder
and the blocked direct conv (conv2d_blocked.c.j2) and pools. Kernels against numpy float64
on odd sizes (prime maps, 1x1, 3x3 stride 2, asymmetric padding, dilation, 16 / 32 / 48
channels, batches, fused bias + ReLU and residual epilogues) on AVX-512 (run where the CPU has
it), AVX2 and the portable vectors (blocks of 16, 8 and 4 channels); 1, 2 and 3 threads give
the same bits; the pass's regions and transforms; a ResNet-like model against onnxruntime;
byte-identical rebuilds. Tolerance: RTOL / ATOL plus the float32 summation bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conv_cases import assert_within_bounds, conv_graph, same_bits_at_every_team_size
from helpers import init, make_model, vinfo
from onnx import helper
from test_gemm import ATOL, BUILDS, RTOL

import pyc_cli
from pyc_cli.ops.layout import to_blocked, to_plain
from pyc_cli.planning import weights
from pyc_cli.targets import get_target

CANDIDATE = "conv2d_blocked"
# (x shape, w shape, strides, pads (begins..., ends...), dilations, group, epilogue); channel
# counts are multiples of 16 (every ISA's block)
CONVS = [
    ((1, 16, 13, 11), (32, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),
    ((1, 32, 7, 7), (48, 32, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "residual"),  # pointwise
    ((2, 48, 11, 13), (16, 48, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1, ""),  # downsample
    ((1, 16, 17, 19), (32, 16, 3, 3), (2, 2), (0, 1, 1, 0), (1, 1), 1, "residual"),  # asym.
    ((1, 32, 5, 29), (32, 32, 3, 3), (1, 1), (2, 1, 2, 1), (2, 1), 1, "bias_relu"),  # dilated
    ((1, 16, 3, 3), (16, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, ""),  # all border
    ((1, 16, 1, 1), (32, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),  # 1 pixel
    ((1, 32, 23, 31), (64, 32, 5, 5), (1, 2), (2, 2, 2, 2), (1, 1), 1, "residual"),  # wide row
]


def _blocked_kernels(result: pyc_cli.api.BuildResult) -> list[str]:
    return [n.ann.kernel.candidate for n in result.graph.nodes if n.op == "pyc.ConvBlocked"]


@pytest.mark.parametrize("isa", ["avx512", "avx2", "vector"])
def test_blocked_conv_matches_numpy(isa: str, tmp_path: Path, rng: np.random.Generator) -> None:
    graph = conv_graph(rng, CONVS, np.float32, name="blocked")
    onnx.save(graph.model, tmp_path / "m.onnx")
    build = BUILDS[isa]
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=build.cpu, layout="blocked")
    assert _blocked_kernels(result) == [CANDIDATE] * len(CONVS)
    lanes = {"avx512": 16, "avx2": 8, "vector": 4}[isa]
    stored = json.loads((result.artifact / "manifest.json").read_text())["weights"]["transformed"]
    assert all(t.startswith(f"{weights.CONV_BLOCKED}{lanes}x") for t in stored.values()), stored
    assert len(stored) == len(CONVS)
    if not build.runnable:
        return  # compiled for a CPU this one is not: compile-only
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run(graph.feeds)
    assert_within_bounds(got, graph.expected, graph.summation_bounds(np.float32), np.float32)


def test_the_blocked_weights_read_back_exactly(rng: np.random.Generator) -> None:
    """[OC, C, KH, KW] -> [OC/NR, C/BL, KH, KW, BL, NR] and back."""
    w = rng.standard_normal((64, 48, 3, 2)).astype(np.float32)
    for block, width in weights.CONV_BLOCKS:
        transform = weights.TRANSFORMS[weights.conv_blocked_name(block, width)]
        stored = transform.forward(w)
        assert stored.shape == transform.shape(w.shape)
        j, lane = width - 1, block - 1
        assert stored[1, 2, 1, 0, lane, j] == w[width + j, 2 * block + lane, 1, 0]
        np.testing.assert_array_equal(transform.inverse(stored.reshape(-1), w.shape), w)


def test_layout_helpers_round_trip(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 32, 5, 7))
    b = to_blocked(x, 16)
    assert b.shape == (2, 2, 5, 7, 16) and b[1, 1, 4, 6, 3] == x[1, 19, 4, 6]
    np.testing.assert_array_equal(to_plain(b), x)


@pytest.mark.skipif(not get_target("cpu").openmp(), reason="the C compiler has no OpenMP runtime")
def test_blocked_conv_is_the_same_for_every_team_size(
        tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    convs = [((1, 64, 14, 14), (128, 64, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),
             ((2, 128, 7, 7), (64, 128, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "residual"),
             # an input larger than the weights: every panel inside a row's task
             ((1, 64, 56, 56), (32, 64, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "residual")]
    graph = conv_graph(rng, convs, np.float32, name="blocked")
    onnx.save(graph.model, tmp_path / "m.onnx")
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", layout="blocked")
    assert _blocked_kernels(result) == [CANDIDATE] * 3
    source = (result.artifact / "src" / "model.c").read_text()
    assert source.count("PYC_PARALLEL_FOR") >= 3
    assert "every panel passes over the row's input" in source
    got = same_bits_at_every_team_size(tmp_path / "a", graph.feeds, monkeypatch)
    assert_within_bounds(got, graph.expected, graph.summation_bounds(np.float32), np.float32)


# ---------------------------------------------------------------- the pass


def resnet_like(rng: np.random.Generator, channels: int = 32, size: int = 15) -> onnx.ModelProto:
    """A stem (3 input channels: stays plain), a max pool, two residual blocks (1x1, 3x3, 1x1
    + add + relu; the second downsamples with a strided 1x1 shortcut), a global average pool
    and a Gemm: the shape of ResNet, small."""
    c = channels
    inits = []

    def weight(name: str, *shape: int) -> str:
        inits.append(init(name, (rng.standard_normal(shape) * (2.0 / np.prod(shape[1:])) ** 0.5)
                          .astype(np.float32)))
        return name

    def conv(x: str, out: str, w: str, relu: bool = True, **attrs: object) -> list:
        nodes = [helper.make_node("Conv", [x, w, weight(f"{w}_b", rng_shape(w))],
                                  [out + "_c" if relu else out], **attrs)]
        if relu:
            nodes.append(helper.make_node("Relu", [out + "_c"], [out]))
        return nodes

    shapes: dict[str, int] = {}

    def rng_shape(w: str) -> int:
        return shapes[w]

    def w(name: str, *shape: int) -> str:
        shapes[name] = shape[0]
        return weight(name, *shape)

    nodes = conv("x", "stem", w("w_stem", c, 3, 3, 3), pads=[1, 1, 1, 1])
    nodes.append(helper.make_node("MaxPool", ["stem"], ["pool"], kernel_shape=[3, 3],
                                  strides=[2, 2], pads=[1, 1, 1, 1]))
    nodes += conv("pool", "a1", w("w_a1", c, c, 1, 1))
    nodes += conv("a1", "a2", w("w_a2", c, c, 3, 3), pads=[1, 1, 1, 1])
    nodes += conv("a2", "a3", w("w_a3", c, c, 1, 1), relu=False)
    nodes += [helper.make_node("Add", ["a3", "pool"], ["a4"]),
              helper.make_node("Relu", ["a4"], ["a5"])]
    nodes += conv("a5", "b1", w("w_b1", c, c, 1, 1))
    nodes += conv("b1", "b2", w("w_b2", c, c, 3, 3), pads=[1, 1, 1, 1], strides=[2, 2])
    nodes += conv("b2", "b3", w("w_b3", 2 * c, c, 1, 1), relu=False)
    nodes += conv("a5", "bs", w("w_bs", 2 * c, c, 1, 1), relu=False, strides=[2, 2])
    nodes += [helper.make_node("Add", ["b3", "bs"], ["b4"]),
              helper.make_node("Relu", ["b4"], ["b5"]),
              helper.make_node("GlobalAveragePool", ["b5"], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("Gemm", ["flat", weight("fc", 10, 2 * c), weight("fc_b", 10)],
                               ["y"], transB=1)]
    return make_model(nodes, [vinfo("x", (1, 3, size, size))], [vinfo("y", (1, 10))], inits,
                      name="resnet_like")


def _ops(result: pyc_cli.api.BuildResult) -> list[str]:
    return [n.op for n in result.graph.nodes]


def test_the_pass_blocks_the_conv_region_with_transforms_at_its_edges(
        tmp_path: Path, rng: np.random.Generator) -> None:
    """--layout blocked: every conv past the stem is blocked; one reorder enters the region
    (the pool's output: the pool is the region's front) and one leaves it (to the global
    pool); no reorder reads a reorder; --layout nchw builds none."""
    onnx.save(resnet_like(rng), tmp_path / "m.onnx")
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", layout="blocked",
                           cpu=BUILDS["avx2"].cpu)
    ops = _ops(result)
    assert ops.count("pyc.ConvBlocked") == 7 and ops.count("Conv") == 1, ops
    reorders = [n for n in result.graph.nodes if n.op == "pyc.Reorder"]
    assert [n.attrs["to"] for n in reorders] == ["blocked", "plain"]
    made = {n.outputs[0]: n for n in reorders}
    assert not any(n.inputs[0] in made for n in reorders), "a reorder reads a reorder"
    # the shortcut and the main path read the one blocked copy of a5 (shared, not per reader)
    assert all(n.attrs["block"] == 8 for n in reorders)
    decisions = (tmp_path / "a" / "decisions.jsonl").read_text()
    assert '"action":"blocked_region"' in decisions
    plain = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "b", layout="nchw",
                          cpu=BUILDS["avx2"].cpu)
    assert not {"pyc.Reorder", "pyc.ConvBlocked"} & set(_ops(plain))
    assert '"action":"keep_nchw"' in (tmp_path / "b" / "decisions.jsonl").read_text()


def test_a_value_read_outside_leaves_through_one_shared_reorder(
        tmp_path: Path, rng: np.random.Generator) -> None:
    """A blocked conv's result read by two plain nodes (a Transpose and a graph output) and
    by a blocked conv: one reorder to plain serves both plain readers."""
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c0", "w1"], ["c1"]),
             helper.make_node("Transpose", ["c0"], ["t"], perm=[0, 2, 3, 1])]
    inits = [init("w0", rng.standard_normal((32, 16, 3, 3)).astype(np.float32)),
             init("w1", rng.standard_normal((16, 32, 1, 1)).astype(np.float32))]
    model = make_model(nodes, [vinfo("x", (1, 16, 9, 7))],
                       [vinfo("c0", (1, 32, 9, 7)), vinfo("c1", (1, 16, 9, 7)),
                        vinfo("t", (1, 9, 7, 32))], inits)
    onnx.save(model, tmp_path / "m.onnx")
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", layout="blocked",
                           cpu=BUILDS["avx2"].cpu)
    to_plain_nodes = [n for n in result.graph.nodes
                      if n.op == "pyc.Reorder" and n.attrs["to"] == "plain"]
    assert sorted(n.outputs[0] for n in to_plain_nodes) == ["c0", "c1"]
    if BUILDS["avx2"].runnable:
        x = rng.standard_normal((1, 16, 9, 7)).astype(np.float32)
        with pyc_cli.load(tmp_path / "a") as compiled:
            got = compiled.run({"x": x})
        want = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x})
        for value, expected in zip(("c0", "c1", "t"), want):
            np.testing.assert_allclose(got[value], expected, rtol=RTOL, atol=ATOL * 100)


@pytest.mark.parametrize("layout", ["blocked", "auto"])
def test_a_resnet_like_model_matches_onnxruntime(layout: str, tmp_path: Path,
                                                 rng: np.random.Generator) -> None:
    onnx.save(resnet_like(rng, channels=32, size=29), tmp_path / "m.onnx")
    pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", layout=layout)
    x = rng.standard_normal((1, 3, 29, 29)).astype(np.float32)
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run({"x": x})["y"]
    (want,) = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))


def test_blocked_builds_are_byte_identical(tmp_path: Path, rng: np.random.Generator) -> None:
    """Two builds (other hash seeds, other output paths) give the same bytes, library included."""
    onnx.save(resnet_like(rng), tmp_path / "m.onnx")
    trees = []
    for out, seed in (("a", "1"), ("b", "987")):
        subprocess.run([sys.executable, "-m", "pyc_cli.cli.main", "build", str(tmp_path / "m.onnx"),
                        "-o", str(tmp_path / out / "m.pyc"), "--layout", "blocked", "--no-cache",
                        "--cpu", BUILDS["avx2"].cpu], check=True, capture_output=True,
                       env=dict(os.environ, PYTHONHASHSEED=seed))
        root = tmp_path / out / "m.pyc"
        trees.append({p.relative_to(root).as_posix(): p.read_bytes()
                      for p in sorted(root.rglob("*")) if p.is_file()})
    assert sorted(trees[0]) == sorted(trees[1])
    assert [n for n in trees[0] if trees[0][n] != trees[1][n]] == []
    assert b"pyc.ConvBlocked" in trees[0]["model.ir"]


@pytest.mark.parametrize("isa", ["avx512", "avx2", "vector"])
def test_blocked_pools_match_onnxruntime(isa: str, tmp_path: Path,
                                         rng: np.random.Generator) -> None:
    """Pools between blocked convs run blocked: MaxPool 3x3 / 2 padded (onnxruntime's MLAS
    vector rule), AveragePool counting pads, MaxPool with dilations (first-strict rule), and
    AveragePool in ceil mode; on an odd map (17 x 13)."""
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c0"], ["p0"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["p0", "w1"], ["c1"]),
             helper.make_node("AveragePool", ["c1"], ["p1"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1], count_include_pad=1),
             helper.make_node("MaxPool", ["p1"], ["p2"], kernel_shape=[2, 2], dilations=[2, 2]),
             helper.make_node("AveragePool", ["p2"], ["p3"], kernel_shape=[3, 3],
                              strides=[2, 2], ceil_mode=1),
             helper.make_node("Conv", ["p3", "w2"], ["y"])]
    inits = [init("w0", rng.standard_normal((32, 16, 3, 3)).astype(np.float32)),
             init("w1", rng.standard_normal((32, 32, 1, 1)).astype(np.float32)),
             init("w2", rng.standard_normal((16, 32, 1, 1)).astype(np.float32))]
    model = make_model(nodes, [vinfo("x", (1, 16, 17, 13))], [vinfo("y", (1, 16, 3, 2))], inits)
    onnx.save(model, tmp_path / "m.onnx")
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", layout="blocked",
                           cpu=BUILDS[isa].cpu)
    ops = _ops(result)
    assert ops.count("pyc.PoolBlocked") == 4 and ops.count("pyc.Reorder") == 2, ops
    if not BUILDS[isa].runnable:
        return
    x = rng.standard_normal((1, 16, 17, 13)).astype(np.float32)
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run({"x": x})["y"]
    (want,) = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_per_node_compare_reads_blocked_values_in_the_onnx_layout(
        tmp_path: Path, rng: np.random.Generator) -> None:
    """`pyc run --compare ort --per-node` compares a blocked intermediate (X.blocked) with the
    reference's X, reordered: the blocked convs' own results are checked, not only the
    region's exits."""
    onnx.save(resnet_like(rng), tmp_path / "m.onnx")
    pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", layout="blocked", keep_source=True)
    run = subprocess.run([sys.executable, "-m", "pyc_cli.cli.main", "run", str(tmp_path / "a"),
                          "--random-inputs", "3", "--compare", "ort", "--per-node"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "pyc.ConvBlocked" in run.stdout and "a2.blocked" in run.stdout.replace("│", " ")
    assert "every compared intermediate is within tolerance" in run.stdout


def test_the_cli_flag_reaches_the_pass_and_the_manifest(tmp_path: Path,
                                                        rng: np.random.Generator) -> None:
    onnx.save(resnet_like(rng), tmp_path / "m.onnx")
    for layout in ("nchw", "blocked"):
        out = tmp_path / f"{layout}.pyc"
        subprocess.run([sys.executable, "-m", "pyc_cli.cli.main", "build", str(tmp_path / "m.onnx"),
                        "-o", str(out), "--layout", layout, "--no-cache", "-q"], check=True)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["flags"]["layout"] == layout
        assert ("pyc.Reorder" in (out / "model.ir").read_text()) == (layout == "blocked")
    wrong = subprocess.run([sys.executable, "-m", "pyc_cli.cli.main", "build",
                            str(tmp_path / "m.onnx"), "--layout", "nhwc"],
                           capture_output=True, text=True)
    assert wrong.returncode != 0 and "nhwc" in wrong.stderr
