"""The packed GEMM (targets/cpu/gemm.py, codegen_templates/c/gemm_packed.j2) against numpy
float64: every micro-kernel ISA (AVX-512 where the compiler builds it, run only where the CPU
has it; AVX2 + FMA; portable vector extensions), every value of every tunable, odd sizes
(1, primes, tails past MR / NR / the vector width), with and without fused epilogues (bias +
relu, residual add), batched MatMul with broadcasting, constant (packed at build time) and
run-time B, and convolutions on the same GEMM.

Many GEMMs share one model, so one build compiles them all. Tolerance: float32 sums of K
standard-normal products in another order than float64: |got - want| <= 1e-5 + 1e-4 |want|.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import Forced, assert_strict_c11
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli.artifact.reader import load_graph
from pyc_cli.planning.weights import pack_panels, packed_numel, unpack_panels
from pyc_cli.targets.cpu import gemm
from pyc_cli.targets.cpu.features import host_features

RTOL, ATOL = 1e-4, 1e-5
SIZES = (1, 2, 3, 5, 7, 13, 17, 31, 33, 64, 100)
# each size in each position, with the other two odd; plus square and GEMV shapes
SHAPES = sorted({(v, 17, 33) for v in SIZES} | {(13, v, 31) for v in SIZES}
                | {(7, 33, v) for v in SIZES} | {(100, 64, 100), (1, 100, 64), (64, 64, 64)})


@dataclass(frozen=True)
class Build:
    """How to build: --cpu / --cpu-features, and whether this CPU can run the result."""

    isa: str
    cpu: str
    features: str

    @property
    def runnable(self) -> bool:
        have = host_features() or set()
        return self.isa != "avx512" or "avx512f" in have


BUILDS = {
    "avx512": Build("avx512", "skylake-avx512", ""),
    "avx2": Build("avx2", "haswell", ""),
    "vector": Build("vector", "portable", ""),
}


def _configs() -> list[tuple[str, dict[str, int]]]:
    """Every micro-kernel (ISA x mr) with the other tunables derived, then every value of
    mc, nc and unroll (cycled together, on AVX2: the loops around the micro-kernel are the
    same code on every ISA)."""
    configs = [(isa, {"mr": mr}) for isa in BUILDS for mr in gemm.ISAS[isa].rows]
    tunables = {t.name: t.values for t in gemm.tunables("avx2")}
    rounds = max(len(tunables[name]) for name in ("mc", "nc", "unroll"))
    return configs + [("avx2", {name: tunables[name][i % len(tunables[name])]
                                for name in ("mc", "nc", "unroll")}) for i in range(rounds)]


# the reduction in K blocks (kc far below the test shapes' K: 1 to 100, so most blocks end in
# a shorter last one; K <= kc stays one block): every ISA, the GEMV's accumulator sets, MR's
# tail rows, tuned row / column blocks and unroll
K_BLOCKED = [("avx512", {"kc": 16}), ("avx2", {"kc": 8}), ("vector", {"kc": 24}),
             ("avx2", {"kc": 16, "mr": 4, "mc": 24, "nc": 64, "unroll": 2})]
CONFIGS = _configs() + K_BLOCKED


class MatMulGraph:
    """MatMuls with random float32 operands (A and residuals inputs, B an input or, with
    `constant`, an initializer) in one graph, and their float64 expectations."""

    def __init__(self, rng: np.random.Generator, constant: bool) -> None:
        self.rng, self.constant = rng, constant
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.feeds: dict[str, np.ndarray] = {}
        self.expected: dict[str, np.ndarray] = {}
        self.magnitude: dict[str, np.ndarray] = {}  # |A| |B|: the size of each sum's terms

    def tensor(self, name: str, shape: tuple[int, ...], as_constant: bool) -> np.ndarray:
        value = self.rng.standard_normal(shape).astype(np.float32)
        if as_constant:
            self.inits.append(numpy_helper.from_array(value, name))
        else:
            self.feeds[name] = value
            self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return value.astype(np.float64)

    def matmul(self, tag: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...],
               epilogue: str = "") -> None:
        """y{tag} = a{tag} @ b{tag}, then "bias_relu" or a "residual" add (r{tag})."""
        a = self.tensor(f"a{tag}", a_shape, False)
        b = self.tensor(f"b{tag}", b_shape, self.constant)
        want = np.matmul(a, b)
        out = f"y{tag}"
        self.nodes.append(helper.make_node("MatMul", [f"a{tag}", f"b{tag}"],
                                           [out if not epilogue else f"t{tag}"]))
        if epilogue == "bias_relu":
            bias = self.tensor(f"bias{tag}", (want.shape[-1],), True)
            self.nodes.extend([helper.make_node("Add", [f"t{tag}", f"bias{tag}"], [f"u{tag}"]),
                               helper.make_node("Relu", [f"u{tag}"], [out])])
            want = np.maximum(want + bias, 0)
        elif epilogue == "residual":
            residual = self.tensor(f"r{tag}", want.shape, False)
            self.nodes.append(helper.make_node("Add", [f"t{tag}", f"r{tag}"], [out]))
            want = want + residual
        self.outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, list(want.shape)))
        self.expected[out] = want
        self.magnitude[out] = np.matmul(np.abs(a), np.abs(b))

    def model(self, name: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, self.inputs, self.outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return model


def _matmul_model(rng: np.random.Generator, constant: bool
                  ) -> tuple[onnx.ModelProto, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Many MatMuls in one graph; returns the model, the feeds and the float64 expectations."""
    g = MatMulGraph(rng, constant)
    for n, (m, k, cols) in enumerate(SHAPES):
        g.matmul(str(n), (m, k), (k, cols), ("", "bias_relu", "residual")[n % 3])
    # batched, broadcasting either way; numpy's 1-D operands
    g.matmul("b0", (2, 3, 5, 13), (3, 13, 17), "residual")
    g.matmul("b1", (2, 1, 7, 31), (1, 4, 31, 33), "bias_relu")
    g.matmul("b2", (3, 33, 17), (17, 7))
    g.matmul("v0", (13,), (13, 33))
    g.matmul("v1", (7, 13), (13,))
    return g.model("gemms"), g.feeds, g.expected


def _check(path: Path, out: Path, build: Build, tuning: Forced, feeds: dict[str, np.ndarray],
           expected: dict[str, np.ndarray], op: str,
           sum_bounds: dict[str, np.ndarray] | None = None) -> None:
    """Every output against its float64 reference within RTOL/ATOL, plus, where `sum_bounds`
    gives one, the float32 summation bound of each element (a sum that cancels to near zero
    keeps the rounding of its large terms)."""
    result = pyc_cli.build(path, out, tuning=tuning, cpu=build.cpu,
                           cpu_features=build.features)
    chosen = {n.ann.kernel.candidate for n in result.graph.nodes
              if n.op == op and n.ann.kernel is not None}
    assert chosen == {tuning.candidate}, "the forced candidate is the one that runs"
    assert any(n.ann.epilogue for n in result.graph.nodes if n.op == op), "epilogues fused"
    source = (out / "src" / "model.c").read_text()
    marker = {"avx512": "_mm512_fmadd_ps", "avx2": "_mm256_fmadd_ps", "vector": "pyc_gv"}
    assert marker[build.isa] in source, f"the {build.isa} micro-kernel is generated"
    if not build.runnable:
        return  # compiled for a CPU this one is not: compile-only
    with pyc_cli.load(out) as compiled:
        got = compiled.run(feeds)
    for name, want in expected.items():
        assert got[name].shape == want.shape, name
        bound = 0 if sum_bounds is None else sum_bounds[name]
        excess = np.abs(got[name] - want) - (RTOL * np.abs(want) + ATOL + bound)
        assert np.all(excess <= 0), (name, float(excess.max()))


@pytest.mark.parametrize("constant", [True, False], ids=["const_b", "runtime_b"])
@pytest.mark.parametrize("isa,params", CONFIGS,
                         ids=[f"{isa}-" + "-".join(f"{k}{v}" for k, v in p.items())
                              for isa, p in CONFIGS])
def test_packed_matmul_matches_numpy(isa: str, params: dict[str, int], constant: bool,
                                     tmp_path: Path, rng: np.random.Generator) -> None:
    model, feeds, expected = _matmul_model(rng, constant)
    path = tmp_path / "gemms.onnx"
    onnx.save(model, path)
    candidate = "matmul_packed_const" if constant else "matmul_packed"
    _check(path, tmp_path / "a", BUILDS[isa], Forced("MatMul", candidate, params), feeds,
           expected, "MatMul")
    source = (tmp_path / "a" / "src" / "model.c").read_text()
    assert ("part[" in source) == ("kc" in params), "K blocks exactly where kc < K"


def _conv_reference(x: np.ndarray, w: np.ndarray, stride: int, pad: int, group: int
                    ) -> np.ndarray:
    """Direct float64 convolution (NCHW, square stride and padding)."""
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, oc, oh, ow))
    ocg = oc // group
    for o in range(oc):
        g = o // ocg
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i:i + stride * oh:stride, j:j + stride * ow:stride]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
    return out


CONVS = [  # (x shape, w shape, stride, pad, group, epilogue)
    ((1, 5, 11, 7), (8, 5, 3, 3), 1, 1, 1, "bias_relu"),
    ((2, 9, 9, 13), (17, 9, 1, 1), 1, 0, 1, ""),
    ((1, 16, 17, 17), (33, 16, 1, 1), 1, 0, 1, "residual"),
    ((1, 3, 23, 19), (13, 3, 7, 7), 2, 3, 1, "bias_relu"),
    ((1, 8, 10, 10), (12, 4, 3, 3), 2, 1, 2, ""),
    ((1, 32, 8, 8), (64, 32, 3, 3), 1, 1, 1, "residual"),
]


def _conv_model(rng: np.random.Generator) -> tuple[
        onnx.ModelProto, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Convs of odd sizes, their inputs, float64 references, and per-element float32
    summation bounds."""
    nodes, inputs, outputs, inits = [], [], [], []
    feeds: dict[str, np.ndarray] = {}
    expected: dict[str, np.ndarray] = {}
    bounds: dict[str, np.ndarray] = {}
    for n, (xs, ws, stride, pad, group, epilogue) in enumerate(CONVS):
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        feeds[f"x{n}"] = x
        inputs.append(helper.make_tensor_value_info(f"x{n}", TensorProto.FLOAT, list(xs)))
        inits.append(numpy_helper.from_array(w, f"w{n}"))
        want = _conv_reference(x.astype(np.float64), w.astype(np.float64), stride, pad, group)
        # |error| of a float32 sum of K products <= K u sum|terms| (u = 2^-24), plus the
        # epilogue's one rounding
        terms = int(np.prod(ws[1:]))
        magnitude = _conv_reference(np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64)),
                                    stride, pad, group)
        out = f"y{n}"
        bounds[out] = (terms + 2) * 2.0 ** -24 * (magnitude + np.abs(want))
        nodes.append(helper.make_node("Conv", [f"x{n}", f"w{n}"], [out if not epilogue else f"t{n}"],
                                      strides=[stride, stride], pads=[pad] * 4, group=group,
                                      kernel_shape=list(ws[2:])))
        if epilogue == "bias_relu":
            bias = rng.standard_normal((ws[0], 1, 1)).astype(np.float32)
            inits.append(numpy_helper.from_array(bias, f"bias{n}"))
            nodes += [helper.make_node("Add", [f"t{n}", f"bias{n}"], [f"u{n}"]),
                      helper.make_node("Relu", [f"u{n}"], [out])]
            want = np.maximum(want + bias.astype(np.float64), 0)
        elif epilogue == "residual":
            residual = rng.standard_normal(want.shape).astype(np.float32)
            feeds[f"r{n}"] = residual
            inputs.append(helper.make_tensor_value_info(f"r{n}", TensorProto.FLOAT,
                                                        list(want.shape)))
            nodes.append(helper.make_node("Add", [f"t{n}", f"r{n}"], [out]))
            want = want + residual
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, list(want.shape)))
        expected[out] = want
    graph = helper.make_graph(nodes, "convs", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, feeds, expected, bounds


CONV_CONFIGS = [(isa, {"mr": gemm.ISAS[isa].rows[-1]}) for isa in BUILDS] \
    + [("avx2", {"mc": 24, "nc": 64, "unroll": 2}), ("vector", {"workspace_cap": 32 * 1024}),
       ("avx2", {"kc": 16}), ("avx512", {"kc": 40, "workspace_cap": 32 * 1024})]


@pytest.mark.parametrize("isa,params", CONV_CONFIGS,
                         ids=[f"{isa}-" + "-".join(f"{k}{v}" for k, v in p.items())
                              for isa, p in CONV_CONFIGS])
def test_conv_on_the_packed_gemm_matches_numpy(isa: str, params: dict[str, int], tmp_path: Path,
                                               rng: np.random.Generator) -> None:
    model, feeds, expected, bounds = _conv_model(rng)
    path = tmp_path / "convs.onnx"
    onnx.save(model, path)
    _check(path, tmp_path / "a", BUILDS[isa], Forced("Conv", "conv2d_im2col_gemm", params),
           feeds, expected, "Conv", bounds)


def test_constant_b_is_packed_once_into_the_weights(tmp_path: Path,
                                                    rng: np.random.Generator) -> None:
    """A weight read only by MatMuls is stored as panels (K x NR, zero-padded past N); one
    also read by another op stays as it is, and its MatMul packs it at run time."""
    w = rng.standard_normal((13, 21)).astype(np.float32)
    v = rng.standard_normal((13, 21)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]),
             helper.make_node("MatMul", ["x2", "w"], ["y2"]),
             helper.make_node("MatMul", ["x", "v"], ["z"]),
             helper.make_node("Add", ["v", "x3"], ["v2"])]
    graph = helper.make_graph(
        nodes, "shared",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3, 13]) for n in ("x", "x2")]
        + [helper.make_tensor_value_info("x3", TensorProto.FLOAT, [13, 21])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3, 21]) for n in ("y", "y2")]
        + [helper.make_tensor_value_info("z", TensorProto.FLOAT, [3, 21]),
           helper.make_tensor_value_info("v2", TensorProto.FLOAT, [13, 21])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(v, "v")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    build = BUILDS["avx2"]
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=build.cpu)
    kernels = {n.outputs[0]: n.ann.kernel.candidate for n in result.graph.nodes
               if n.op == "MatMul" and n.ann.kernel is not None}
    assert kernels == {"y": "matmul_packed_const", "y2": "matmul_packed_const",
                       "z": "matmul_packed"}
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["weights"]["packed"] == {"w": gemm.panel_width("avx2", 4)}
    # the IR read back from the artifact (pyc run --per-node, --compare) has the weights as is
    graph = load_graph(tmp_path / "a", manifest)
    np.testing.assert_array_equal(graph.constants["w"], w)
    blob = (tmp_path / "a" / "weights.bin").read_bytes()
    offset = manifest["weights"]["layout"]["w"]
    nr = gemm.panel_width("avx2", 4)
    panels = -(-21 // nr)
    stored = np.frombuffer(blob, np.float32, panels * 13 * nr, offset).reshape(panels, 13, nr)
    padded = np.zeros((13, panels * nr), np.float32)
    padded[:, :21] = w
    np.testing.assert_array_equal(stored, padded.reshape(13, panels, nr).swapaxes(0, 1))
    offset_v = manifest["weights"]["layout"]["v"]
    np.testing.assert_array_equal(np.frombuffer(blob, np.float32, v.size, offset_v).reshape(v.shape), v)
    feeds = {"x": rng.standard_normal((3, 13)).astype(np.float32),
             "x2": rng.standard_normal((3, 13)).astype(np.float32),
             "x3": rng.standard_normal((13, 21)).astype(np.float32)}
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run(feeds)
    np.testing.assert_allclose(got["y"], feeds["x"].astype(np.float64) @ w, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got["y2"], feeds["x2"].astype(np.float64) @ w, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got["z"], feeds["x"].astype(np.float64) @ v, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("isa", sorted(gemm.ISAS))
def test_plans_block_by_whole_register_tiles(isa: str) -> None:
    """MC is a multiple of MR, the blocks and tasks cover M and the panels exactly, short
    blocks (M == 1: the GEMV) get independent accumulator sets, and M's blocks are as even as
    whole register blocks allow (258 rows: 136 + 122, not 256 + 2)."""
    for m, k, n in [(1, 2048, 2048), (7, 33, 5), (1024, 1024, 1024), (128, 1536, 384),
                    (258, 256, 3), (1543, 1024, 64)]:
        for tuned in ({}, {"mr": gemm.ISAS[isa].rows[-1], "mc": 96, "nc": 64, "unroll": 2}):
            g = gemm.plan(isa, "float", 4, m, n, k, 1, tuned)
            mr, mc, nr = g["MR"], g["MC"], g["NR"]
            assert mc % mr == 0 and mc >= mr and g["MB"] == -(-m // mc)
            if not tuned:
                assert mc <= max(mr, gemm.L2_A_BYTES // (4 * k))
                assert m - (g["MB"] - 1) * mc > mc - g["MB"] * mr  # the last block
            assert g["panels"] == -(-n // nr) and g["NB"] == -(-g["panels"] // g["NCP"])
            assert g["NCP"] * (g["NB"] - 1) < g["panels"] <= g["NCP"] * g["NB"]
            assert g["tasks"] == g["MB"] * g["NB"] and g["tail"] == m % mr
            if tuned:
                assert mr == tuned["mr"] and g["unroll"] == 2
    assert gemm.splits(isa, 1) > 1 and gemm.splits(isa, gemm.ISAS[isa].rows[0]) == 1


def test_row_blocks_are_equal_where_a_few_more_make_them_so() -> None:
    """The L2 rule's row blocks grow in number (up to twice) until they are all the same size:
    ResNet-50's 256 -> 256 3x3/s2 conv (K 2304: at most 24 rows a block) was 10 x 24 + 16, 11
    tasks for 2 threads; 16 blocks of 16 now. Where no count up to twice divides the register
    blocks, the old split stays."""
    g = gemm.plan("avx512", "float", 4, 256, 200, 2304, 1, {})
    assert (g["MC"], g["MB"]) == (16, 16)
    g = gemm.plan("avx512", "float", 4, 128, 811, 1152, 1, {})
    assert (g["MC"], g["MB"]) == (32, 4) and g["tasks"] % 2 == 0
    g = gemm.plan("avx512", "float", 4, 1543, 64, 1024, 1, {})  # 193 register blocks: prime
    assert g["MB"] == -(-1543 // g["MC"]) and g["MC"] <= gemm.L2_A_BYTES // (4 * 1024)


def test_k_blocks_cover_the_reduction() -> None:
    """KC is a multiple of 8 no longer than the asked kc, the KB - 1 full blocks and the last
    one (1 to KC long) sum to K; without kc, or where the template does not block K, or where
    kc is not shorter than K, the reduction stays one block (today's code)."""
    for k in (1, 7, 8, 9, 17, 100, 384, 1000, 1536, 4608):
        for kc in (1, 8, 13, 64, 128, 250, 256, 512):
            g = gemm.plan("avx512", "float", 4, 64, 256, k, 1, {"kc": kc}, k_blocking=True)
            assert (g["KB"] - 1) * g["KC"] + g["KL"] == k and 1 <= g["KL"] <= g["KC"]
            if g["KB"] > 1:
                assert g["KC"] % 8 == 0 and g["KC"] <= max(8, kc // 8 * 8) < k
            else:
                assert g["KC"] == g["KL"] == k and max(8, kc // 8 * 8) >= k
        for tuned, blocking in (({}, True), ({"kc": 8}, False)):
            g = gemm.plan("avx2", "float", 4, 64, 256, k, 1, tuned, k_blocking=blocking)
            assert (g["KB"], g["KC"], g["KL"]) == (1, k, k)
    # the partial tile stays small where the L2 rule alone would give thousands of rows
    g = gemm.plan("avx512", "float", 4, 8192, 256, 16, 1, {"kc": 8}, k_blocking=True)
    assert g["KB"] == 2 and g["MC"] * g["NR"] * 4 <= gemm.PART_BYTES and g["MB"] * g["MC"] >= 8192
    names = {t.name for t in gemm.tunables("avx2", k_blocking=True)}
    assert "kc" in names and "kc" not in {t.name for t in gemm.tunables("avx2")}


@pytest.mark.parametrize("isa", sorted(gemm.ISAS))
def test_matmul_row_blocks_keep_64_rows_at_large_k(isa: str) -> None:
    """A MatMul's row block keeps MATMUL_MIN_ROWS rows (as even as whole register blocks allow)
    where the L2 rule would leave fewer; a tuned mc still rules, other plans keep the L2 rule."""
    for m, k in [(64, 2048), (49, 4608), (128, 16384), (300, 8192), (1024, 1024), (100, 384),
                 (1, 2048)]:
        g = gemm.plan(isa, "float", 4, m, 512, k, 1, {}, k_blocking=True,
                      min_rows=gemm.MATMUL_MIN_ROWS)
        plain = gemm.plan(isa, "float", 4, m, 512, k, 1, {})
        assert g["MC"] >= plain["MC"] and g["MB"] <= -(-m // gemm.MATMUL_MIN_ROWS)
        assert g["MC"] % g["MR"] == 0 and (g["MB"] - 1) * g["MC"] < m <= g["MB"] * g["MC"]
        assert gemm.plan(isa, "float", 4, m, 512, k, 1, {"mc": 8}, k_blocking=True,
                         min_rows=gemm.MATMUL_MIN_ROWS)["MC"] == plain["MR"]
    assert gemm.plan(isa, "float", 4, 64, 512, 2048, 1, {})["MB"] > 1  # the L2 rule alone


@pytest.mark.parametrize("kc", [0, 512])
def test_large_k_matmul_matches_numpy(kc: int, tmp_path: Path, rng: np.random.Generator) -> None:
    """K = 2100 (whole-K row blocks of 64 rows, or 5 K blocks of 416 and a last of 436): bias +
    relu, residual, a batched MatMul and a GEMV (its next panel prefetched) against float64,
    each element within the
    float32 summation bound (K + 2) u sum |a b| (u = 2^-24; a K block lost or added twice, or
    an epilogue run twice, is off by far more)."""
    g = MatMulGraph(rng, True)
    g.matmul("0", (70, 2100), (2100, 40), "bias_relu")
    g.matmul("1", (9, 2100), (2100, 33), "residual")
    g.matmul("2", (2, 3, 2100), (2, 2100, 17))
    g.matmul("3", (1, 2100), (2100, 50), "bias_relu")
    path = tmp_path / "bigk.onnx"
    onnx.save(g.model("bigk"), path)
    tuning = Forced("MatMul", "matmul_packed_const", {"kc": kc} if kc else {})
    pyc_cli.build(path, tmp_path / "a", tuning=tuning)
    source = (tmp_path / "a" / "src" / "model.c").read_text()
    assert ("part[" in source) == bool(kc)
    # the GEMV (a streaming plan) prefetches each thread's next panel while it reads this one
    assert ("the next panel, into L2" in source) == (not kc)
    # 70 rows: 2 even blocks (of 40 rows at MR = 8, 36 at MR = 6), not the L2 rule's 3
    assert re.search(r"1 batch x 2 blocks of (40|36) rows", source)
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run(g.feeds)
    for name, want in g.expected.items():
        bound = (2100 + 2) * 2.0 ** -24 * (g.magnitude[name] + np.abs(want))
        excess = np.abs(got[name] - want) - bound
        assert np.all(excess <= 0), (name, float(excess.max()))


@pytest.mark.parametrize("isa", sorted(gemm.ISAS))
def test_gemv_streams_b_in_one_panel_tasks_statically(isa: str) -> None:
    """A short M (B's bytes take the time) gets one task per panel, scheduled statically (each
    thread one contiguous, even share of B); a GEMM's M keeps the guided blocks."""
    for m in (1, 2, 5):
        g = gemm.plan(isa, "float", 4, m, 2047, 2048, 1, {})
        assert g["static"] and g["NCP"] == 1 and g["tasks"] == g["panels"] and g["parallel"]
    small = gemm.plan(isa, "float", 4, 1, 512, 128, 1, {})  # 256 KiB: not worth threads
    assert small["static"] and not small["parallel"] and small["tasks"] == 1
    for m in (6, 64):
        assert not gemm.plan(isa, "float", 4, m, 2048, 2048, 1, {})["static"]
    assert not gemm.plan(isa, "double", 8, 12, 2048, 2048, 1, {})["static"]
    assert gemm.plan(isa, "double", 8, 11, 2048, 2048, 1, {})["static"]


def test_isa_follows_the_target_features() -> None:
    assert gemm.isa_for(["sse2", "avx", "avx2", "fma", "avx512f"]) == "avx512"
    assert gemm.isa_for(["sse2", "avx", "avx2", "fma"]) == "avx2"
    assert gemm.isa_for(["sse2", "avx", "avx2"]) == "vector"  # AVX2 without FMA
    assert gemm.isa_for(["asimd"]) == "neon"  # arm64's Advanced SIMD: test_neon.py
    assert gemm.isa_for(["sse2"]) == "vector"


def test_panels_are_k_by_nr_zero_padded(rng: np.random.Generator) -> None:
    b = rng.standard_normal((2, 5, 11)).astype(np.float32)
    packed = pack_panels(b, 4)
    assert packed.shape == (2, 3, 5, 4)
    for j in range(11):
        np.testing.assert_array_equal(packed[:, j // 4, :, j % 4], b[:, :, j])
    assert not packed[:, 2, :, 3].any()
    assert pack_panels(b[0, :, 0], 4).shape == (1, 5, 4)  # numpy's 1-D B: one column
    for shape in [(2, 5, 11), (5, 8), (5,)]:
        array = rng.standard_normal(shape).astype(np.float32)
        flat = pack_panels(array, 4).ravel()
        assert flat.size == packed_numel(shape, 4)
        np.testing.assert_array_equal(unpack_panels(flat, shape, 4), array)


@pytest.mark.parametrize("isa", sorted(BUILDS))
def test_float64_gemm_matches_numpy(isa: str, tmp_path: Path, rng: np.random.Generator) -> None:
    """Double precision runs the same kernels with _pd intrinsics (half the lanes); constant
    and run-time B, tails, an epilogue (tolerance 1e-10 relative: float64 sums)."""
    nodes, inputs, outputs, inits = [], [], [], []
    feeds, expected = {}, {}
    for n, (m, k, cols) in enumerate([(1, 17, 33), (7, 31, 5), (13, 64, 17), (33, 3, 100)]):
        a = rng.standard_normal((m, k))
        b = rng.standard_normal((k, cols))
        feeds[f"a{n}"] = a
        inputs.append(helper.make_tensor_value_info(f"a{n}", TensorProto.DOUBLE, [m, k]))
        if n % 2:
            feeds[f"b{n}"] = b
            inputs.append(helper.make_tensor_value_info(f"b{n}", TensorProto.DOUBLE, [k, cols]))
        else:
            inits.append(numpy_helper.from_array(b, f"b{n}"))
        nodes += [helper.make_node("MatMul", [f"a{n}", f"b{n}"], [f"t{n}"]),
                  helper.make_node("Relu", [f"t{n}"], [f"y{n}"])]
        outputs.append(helper.make_tensor_value_info(f"y{n}", TensorProto.DOUBLE, [m, cols]))
        expected[f"y{n}"] = np.maximum(a @ b, 0)
    graph = helper.make_graph(nodes, "f64", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    build = BUILDS[isa]
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=build.cpu)
    assert {n.ann.kernel.candidate for n in result.graph.nodes if n.op == "MatMul"
            and n.ann.kernel is not None} == {"matmul_packed", "matmul_packed_const"}
    marker = {"avx512": "_mm512_fmadd_pd", "avx2": "_mm256_fmadd_pd", "vector": "pyc_gv"}
    assert marker[isa] in (tmp_path / "a" / "src" / "model.c").read_text()
    if not build.runnable:
        return
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run(feeds)
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, rtol=1e-10, atol=1e-12, err_msg=name)


def _prologue_conv_model(path: Path, rng: np.random.Generator) -> None:
    """BN + ReLU of a shared tensor computed inside the conv as it gathers columns, and a
    MatMul with K = 0 (no reduction: zeros)."""
    c = 6
    inits = [numpy_helper.from_array(v.astype(np.float32), n) for n, v in (
        ("g", rng.standard_normal(c)), ("b", rng.standard_normal(c)),
        ("m", rng.standard_normal(c)), ("v", rng.random(c) + 0.5),
        ("w", rng.standard_normal((8, c, 3, 3))), ("e", np.zeros((0, 5))))]
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]),
             helper.make_node("BatchNormalization", ["s", "g", "b", "m", "v"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["act"]),
             helper.make_node("Conv", ["act", "w"], ["conv"], kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Concat", ["s", "conv"], ["y"], axis=1),
             helper.make_node("MatMul", ["z", "e"], ["k0"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 7, 9]),
                     helper.make_tensor_value_info("z", TensorProto.FLOAT, [3, 0])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c + 8, 7, 9]),
         helper.make_tensor_value_info("k0", TensorProto.FLOAT, [3, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("isa", sorted(BUILDS))
def test_gemm_kernels_are_strict_c11(isa: str, compiler: str, tmp_path: Path,
                                     rng: np.random.Generator) -> None:
    """The GEMM kernels of every ISA compile under -Wall -Wextra -pedantic -Werror with gcc
    and clang (as test_toolchain.py holds the rest of the generated C), including a conv
    prologue and an empty reduction."""
    model, _, _ = _matmul_model(rng, True)
    onnx.save(model, tmp_path / "mm.onnx")
    _prologue_conv_model(tmp_path / "pc.onnx", rng)
    build = BUILDS[isa]
    for name in ("mm", "pc"):
        art = pyc_cli.build(tmp_path / f"{name}.onnx", tmp_path / name, cpu=build.cpu).artifact
        assert_strict_c11(compiler, art)
    blocked = pyc_cli.build(tmp_path / "mm.onnx", tmp_path / "kb", cpu=build.cpu,
                            tuning=Forced("MatMul", "matmul_packed_const", {"kc": 8})).artifact
    assert "part[" in (tmp_path / "kb" / "src" / "model.c").read_text()
    assert_strict_c11(compiler, blocked)
    if compiler != "gcc" or not build.runnable:
        return
    import onnxruntime as ort

    feeds = {"x": rng.standard_normal((1, 6, 7, 9)).astype(np.float32),
             "z": np.zeros((3, 0), np.float32)}
    want = ort.InferenceSession(str(tmp_path / "pc.onnx"), providers=["CPUExecutionProvider"]
                                ).run(None, feeds)
    with pyc_cli.load(tmp_path / "pc") as compiled:
        got = compiled.run(feeds)
    np.testing.assert_allclose(got["y"], want[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(got["k0"], np.zeros((3, 5), np.float32))
