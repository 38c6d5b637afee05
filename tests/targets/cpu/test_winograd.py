"""3x3 stride-1 convolution as Winograd F(4x4, 3x3) (conv2d_winograd.c.j2, targets/cpu/winograd.py).

Against a float64 numpy convolution with random inputs and weights: maps whose sides are not
multiples of 4 (partial border tiles: 5x5, 7x9, 13x13, a 1-row and a 1-column output), prime
channel counts (17, 31: tails past the register block and the vector width), tile counts past
one panel, same / valid / asymmetric padding, batches, fused bias + ReLU and residual
epilogues; AVX-512 (run where the CPU has it) and AVX2. Winograd F(4,3) rounds more than the
direct sum (its transforms scale the terms by up to ~100): each output must lie within
WINOGRAD_RTOL of the float64 sum of its terms' magnitudes (sum |x| |w|), plus RTOL of its value.
Also: the same bits for any thread count, --no-winograd falls back to the implicit GEMM, a
ResNet-like conv takes Winograd by default and the decision log says why, the weights file holds
U and reading the artifact back recovers the weights, the generated C is strict C11, and
prefetching the next weight rows (large U) changes no result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conv_cases import conv_graph
from helpers import assert_strict_c11
from onnx import numpy_helper
from test_gemm import BUILDS, RTOL, Forced

import pyc_cli
from pyc_cli.artifact.reader import load_graph
from pyc_cli.planning import winograd as wg
from pyc_cli.targets import get_target
from pyc_cli.targets.cpu import winograd as cpu_winograd

CANDIDATE = "conv2d_winograd"
# measured worst |error| / sum|x||w| over these cases and ResNet-50's 3x3 layers (random
# weights): 4.3e-6 (the implicit GEMM: 3.6e-7)
WINOGRAD_RTOL = 1e-5
# (x shape, w shape, pads (top, left, bottom, right), epilogue)
CONVS = [
    ((1, 16, 5, 5), (16, 16, 3, 3), (1, 1, 1, 1), ""),  # one partial tile per side
    ((1, 17, 7, 9), (31, 17, 3, 3), (1, 1, 1, 1), "bias_relu"),  # primes, 7x9
    ((2, 19, 13, 13), (23, 19, 3, 3), (1, 1, 1, 1), "residual"),  # batch, 13x13
    ((1, 8, 3, 11), (12, 8, 3, 3), (0, 0, 0, 0), ""),  # valid: a 1-row output
    ((1, 8, 9, 3), (5, 8, 3, 3), (0, 0, 0, 0), "bias_relu"),  # valid: a 1-column output
    ((1, 13, 10, 11), (20, 13, 3, 3), (2, 0, 1, 2), "residual"),  # asymmetric pads
    ((1, 24, 30, 37), (33, 24, 3, 3), (1, 1, 1, 1), "bias_relu"),  # 80 tiles: 3 panels
    ((1, 64, 14, 14), (64, 64, 3, 3), (1, 1, 1, 1), ""),  # ResNet-like, one-vector panels
]


def winograd_model(rng: np.random.Generator, convs: list[tuple] = CONVS) -> tuple[
        onnx.ModelProto, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """`convs` in one graph, their inputs, float64 references and magnitudes (sum |x| |w|)."""
    graph = conv_graph(rng, [(xs, ws, (1, 1), pads, (1, 1), 1, epilogue)
                             for xs, ws, pads, epilogue in convs])
    return graph.model, graph.feeds, graph.expected, graph.magnitudes


def check_outputs(got: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                  magnitudes: dict[str, np.ndarray]) -> None:
    for name, want in expected.items():
        assert got[name].shape == want.shape, name
        excess = np.abs(got[name] - want) - (RTOL * np.abs(want) + WINOGRAD_RTOL * magnitudes[name])
        assert np.all(excess <= 0), (name, float(excess.max()))


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_winograd_matches_numpy(isa: str, tmp_path: Path, rng: np.random.Generator) -> None:
    model, feeds, expected, magnitudes = winograd_model(rng)
    onnx.save(model, tmp_path / "convs.onnx")
    build = BUILDS[isa]
    result = pyc_cli.build(tmp_path / "convs.onnx", tmp_path / "a",
                           tuning=Forced("Conv", CANDIDATE, {}), cpu=build.cpu)
    chosen = [n.ann.kernel.candidate for n in result.graph.nodes
              if n.op == "Conv" and n.ann.kernel is not None]
    assert chosen == [CANDIDATE] * len(CONVS), chosen
    source = (tmp_path / "a" / "src" / "model.c").read_text()
    # each lane's rows are masked loads, transposed into lanes
    assert ("_mm512_permutex2var_ps" if isa == "avx512" else "_mm256_maskload_ps") in source
    if not build.runnable:
        return  # compiled for a CPU this one is not: compile-only
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run(feeds)
    check_outputs(got, expected, magnitudes)


@pytest.mark.parametrize("isa,mr", [("avx512", 8), ("avx512", 4), ("avx2", 4)])
def test_prefetching_the_next_weight_rows_computes_the_same(
        isa: str, mr: int, tmp_path: Path, rng: np.random.Generator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the weight threshold at 0 every conv's GEMM prefetches the rows of its next call
    (MR floats a step, NR a multiple of MR; the next position's first rows after a block's
    last), as ResNet-50's 14x14 and 28x28 layers do (their U is 2.4-9.4 MB): the same results
    within the Winograd tolerance of float64, prime channel counts (row tails: not
    prefetched) and narrow panels included."""
    monkeypatch.setattr(cpu_winograd, "PREFETCH_WEIGHT_BYTES", 0)
    model, feeds, expected, magnitudes = winograd_model(rng)
    onnx.save(model, tmp_path / "convs.onnx")
    build = BUILDS[isa]
    pyc_cli.build(tmp_path / "convs.onnx", tmp_path / "a", cpu=build.cpu,
                  tuning=Forced("Conv", CANDIDATE, {"mr": mr}))
    source = (tmp_path / "a" / "src" / "model.c").read_text()
    assert "the rows the next call reads" in source
    if build.runnable:
        with pyc_cli.load(tmp_path / "a") as compiled:
            check_outputs(compiled.run(feeds), expected, magnitudes)


@pytest.mark.parametrize("isa,mr", [("avx512", 4), ("avx512", 6), ("avx512", 14), ("avx2", 5)])
def test_register_block_rows_are_tunable(isa: str, mr: int, tmp_path: Path,
                                         rng: np.random.Generator) -> None:
    """A tuned MR other than the default (row tails of another length; a GEMM block of OB
    channels rounded to it) computes the same, in exactly the scratch the planner gives it."""
    convs = [CONVS[1], CONVS[6], ((1, 32, 9, 9), (32, 32, 3, 3), (1, 1, 1, 1), "")]
    model, feeds, expected, magnitudes = winograd_model(rng, convs)
    onnx.save(model, tmp_path / "m.onnx")
    build = BUILDS[isa]
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=build.cpu,
                           tuning=Forced("Conv", CANDIDATE, {"mr": mr}))
    target = get_target("cpu", build.cpu)
    for node in result.graph.nodes:
        if node.op == "Conv":
            p = target.chosen(node).template_params(node, result.graph, {})  # type: ignore[union-attr]
            assert p["gemm"]["MR"] == mr
            assert node.ann.kernel.workspace_bytes == p["tasks"] * p["per_task"] * 4
    if build.runnable:
        with pyc_cli.load(tmp_path / "a") as compiled:
            check_outputs(compiled.run(feeds), expected, magnitudes)


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_lean_holders_compute_the_same_in_less_scratch(isa: str, tmp_path: Path,
                                                      rng: np.random.Generator) -> None:
    """Co-selection's leanest Winograd (2 holders of one-vector panels and an MR-row GEMM
    block, `smaller_scratch`'s last option) computes every case as the default does, within
    the Winograd tolerance of float64, in under a third of the default's scratch per holder
    on a ResNet-50 56x56 conv."""
    model, feeds, expected, magnitudes = winograd_model(rng)
    onnx.save(model, tmp_path / "convs.onnx")
    build = BUILDS[isa]
    lean = {"tasks": 2, "lean": 1}
    result = pyc_cli.build(tmp_path / "convs.onnx", tmp_path / "a", cpu=build.cpu,
                           tuning=Forced("Conv", CANDIDATE, lean))
    target = get_target("cpu", build.cpu)
    for node in result.graph.nodes:
        if node.op == "Conv":
            p = target.chosen(node).template_params(node, result.graph, {})  # type: ignore[union-attr]
            assert p["OB"] == p["gemm"]["MR"] and p["gemm"]["NR"] == p["gemm"]["lanes"]
            assert node.ann.kernel.workspace_bytes == p["tasks"] * p["per_task"] * 4
    if build.runnable:
        with pyc_cli.load(tmp_path / "a") as compiled:
            check_outputs(compiled.run(feeds), expected, magnitudes)
    path, *_ = resnet_conv(rng, tmp_path)
    graph = pyc_cli.build(path, tmp_path / "r", cpu=build.cpu, layout="nchw").graph
    conv = next(n for n in graph.nodes if n.op == "Conv")
    options = cpu_winograd.smaller_scratch(isa)(conv, graph)
    assert options[-1] == lean
    default = cpu_winograd.plan(isa, conv, graph, {})["per_task"]
    assert cpu_winograd.plan(isa, conv, graph, lean)["per_task"] * 3 < default  # type: ignore[operator]


def resnet_conv(rng: np.random.Generator, tmp_path: Path, shape: tuple[int, int, int] = (64, 56, 56)
                ) -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One ResNet-50 layer1 3x3 conv (64 -> 64 channels on 56x56, pads 1) with bias + ReLU."""
    c, h, w = shape
    model, feeds, expected, magnitudes = winograd_model(
        rng, [((1, c, h, w), (c, c, 3, 3), (1, 1, 1, 1), "bias_relu")])
    onnx.save(model, tmp_path / "resnet_conv.onnx")
    return tmp_path / "resnet_conv.onnx", feeds, expected, magnitudes


def test_resnet_conv_is_winograd_by_default_and_no_winograd_falls_back(
        tmp_path: Path, rng: np.random.Generator) -> None:
    path, feeds, expected, magnitudes = resnet_conv(rng, tmp_path)
    kernels = {}
    for winograd in (True, False):
        out = tmp_path / f"w{int(winograd)}"
        result = pyc_cli.build(path, out, cpu=BUILDS["avx2"].cpu, winograd=winograd,
                               layout="nchw")  # plain kernels
        kernels[winograd] = [n.ann.kernel.candidate for n in result.graph.nodes if n.op == "Conv"]
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["flags"]["winograd"] is winograd
        decisions = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
        conv = next(d for d in decisions if d.get("after") in (CANDIDATE, "conv2d_implicit_gemm"))
        if winograd:
            # the weights file holds U, recorded in the manifest, and the log says why
            assert manifest["weights"]["transformed"] == {"w0": wg.NAME}
            assert "Winograd F(4x4,3x3)" in conv["reason"], conv
            w = numpy_helper.to_array(onnx.load(path).graph.initializer[0])
            stored = np.frombuffer((out / "weights.bin").read_bytes(), np.float32,
                                   36 * 64 * 64, manifest["weights"]["layout"]["w0"])
            np.testing.assert_array_equal(stored.reshape(36, 64, 64), wg.transform_weights(w))
            # reading the artifact back inverts the transform (up to U's rounding)
            graph = load_graph(out, manifest)
            np.testing.assert_allclose(graph.constants["w0"], w, rtol=0, atol=1e-5)
        else:
            assert "transformed" not in manifest["weights"]
            assert CANDIDATE not in conv["reason"]
        if BUILDS["avx2"].runnable:
            with pyc_cli.load(out) as compiled:
                check_outputs(compiled.run(feeds), expected, magnitudes)
    assert kernels == {True: [CANDIDATE], False: ["conv2d_implicit_gemm"]}


def test_small_maps_and_channels_keep_the_implicit_gemm(tmp_path: Path,
                                                        rng: np.random.Generator) -> None:
    """Below the measured thresholds (a 7x7 map, 8 channels) the cost model keeps the
    implicit GEMM; the portable build (no masked loads) never takes Winograd."""
    model, _, _, _ = winograd_model(rng, [((1, 64, 7, 7), (64, 64, 3, 3), (1, 1, 1, 1), ""),
                                          ((1, 8, 32, 32), (8, 8, 3, 3), (1, 1, 1, 1), "")])
    onnx.save(model, tmp_path / "m.onnx")
    for isa in ("avx512", "vector"):
        result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / isa, cpu=BUILDS[isa].cpu)
        assert CANDIDATE not in {n.ann.kernel.candidate for n in result.graph.nodes
                                 if n.ann.kernel is not None}


def run_with_threads(artifact: Path, feeds: Path, out: Path, threads: str) -> dict[str, np.ndarray]:
    env = {**os.environ, "PYC_NUM_THREADS": threads}
    subprocess.run([sys.executable, "-m", "pyc_cli", "run", str(artifact), "--inputs", str(feeds),
                    "--output", str(out)], check=True, env=env, capture_output=True)
    return dict(np.load(out))


@pytest.mark.skipif(not get_target("cpu").openmp(), reason="the C compiler has no OpenMP runtime")
def test_the_same_bits_for_every_thread_count(tmp_path: Path, rng: np.random.Generator) -> None:
    """Split over tasks (blocks of tiles and groups of output channels: the 14x14 map has one
    block, so its channels are split; the 27x25 map's 49 tiles are 2 blocks of unequal size,
    so its 131 channels are split too, units group-major), each output written by one task."""
    model, feeds, expected, magnitudes = winograd_model(
        rng, [((1, 64, 56, 56), (64, 64, 3, 3), (1, 1, 1, 1), "bias_relu"),
              ((1, 64, 14, 14), (128, 64, 3, 3), (1, 1, 1, 1), "residual"),
              ((1, 24, 27, 25), (131, 24, 3, 3), (1, 1, 1, 1), "bias_relu")])
    onnx.save(model, tmp_path / "m.onnx")
    isa = "avx512" if BUILDS["avx512"].runnable else "avx2"
    art = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=BUILDS[isa].cpu,
                        tuning=Forced("Conv", CANDIDATE, {})).artifact
    source = (art / "src" / "model.c").read_text()
    assert source.count("PYC_PARALLEL_FOR\n") == 3
    if isa == "avx512":  # 32-tile blocks (AVX2's 16-tile blocks are 4: one group)
        assert "in 2 blocks of 32 x 2 groups of 128 output channels = 4 units" in source
    np.savez(tmp_path / "x.npz", **feeds)
    runs = {t: run_with_threads(art, tmp_path / "x.npz", tmp_path / f"y{t}.npz", t)
            for t in ("1", "2", "3")}
    for threads, got in runs.items():
        for name in expected:
            np.testing.assert_array_equal(got[name], runs["1"][name],
                                          err_msg=f"PYC_NUM_THREADS={threads}")
    check_outputs(runs["2"], expected, magnitudes)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_winograd_is_strict_c11(isa: str, compiler: str, tmp_path: Path,
                                rng: np.random.Generator) -> None:
    model, _, _, _ = winograd_model(rng, CONVS[:3])
    onnx.save(model, tmp_path / "m.onnx")
    art = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=BUILDS[isa].cpu,
                        tuning=Forced("Conv", CANDIDATE, {})).artifact
    assert_strict_c11(compiler, art)


def test_the_weight_transform_is_winograds() -> None:
    """U = G g G^T, then Y = A^T [U . (B^T d B)] A is the 4x4 valid correlation of d with g."""
    rng = np.random.default_rng(7)
    g = rng.standard_normal((3, 2, 3, 3))
    d = rng.standard_normal((2, 6, 6))
    u = wg.transform_weights(g).reshape(6, 6, 3, 2)
    v = np.einsum("ia,cab,jb->ijc", wg.BT, d, wg.BT)
    y = np.einsum("ai,ijo,bj->oab", wg.AT, np.einsum("ijoc,ijc->ijo", u, v), wg.AT)
    want = np.array([[[np.sum(g[o] * d[:, a:a + 3, b:b + 3]) for b in range(4)]
                      for a in range(4)] for o in range(3)])
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wg.untransform_weights(wg.transform_weights(g), g.shape), g,
                               rtol=1e-10, atol=1e-12)


def test_two_builds_store_the_same_transformed_weights(tmp_path: Path,
                                                       rng: np.random.Generator) -> None:
    """The build-time transform is deterministic: the weights file and the C are the same bytes."""
    path, _, _, _ = resnet_conv(rng, tmp_path, (32, 20, 20))
    built = [pyc_cli.build(path, tmp_path / name, cpu=BUILDS["avx2"].cpu).artifact
             for name in ("one", "two")]
    for name in ("weights.bin", "src/model.c", "decisions.jsonl"):
        assert (built[0] / name).read_bytes() == (built[1] / name).read_bytes(), name
    assert "transformed" in json.loads((built[0] / "manifest.json").read_text())["weights"]
