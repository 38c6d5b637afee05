"""16-bit activations at --precision fp16 / bf16 (targets/cuda/storage.py) without a GPU: which
tensors the decision retypes (intermediates whose producer and consumers all take 16 bits; the
model's inputs and outputs stay float32; a tensor a kernel cannot read or write in 16 bits stays
float32, logged), the IR's storage type through the verifier and the text form, the kernels on
the CPU emulation against onnxruntime, NVRTC compilation for sm_80 / sm_90, and deterministic
sources. The GPU run: test_cuda_gpu.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS_DIR, onnxruntime_outputs
from cuda_emulation import CXX
from helpers import init, make_model, rand, vinfo, write_model
from mma_precision import WHOLE_MODEL_RTOL, assert_close_to_max
from nvrtc_check import compile_cleanly
from onnx import TensorProto, helper, numpy_helper
from test_cuda_compile import needs_nvrtc

from pyc_cli.abi import io_infos
from pyc_cli.api import compile_graph
from pyc_cli.ir.graph import Graph
from pyc_cli.ir.text import parse_graph, print_graph
from pyc_cli.ir.types import DType
from pyc_cli.ir.verify import verify
from pyc_cli.ops import registry
from pyc_cli.planning.weights import layout_weights
from pyc_cli.targets.base import ModelInfo
from pyc_cli.targets.cuda import kernels as cuda_kernels

STORAGE = {"fp16": DType.F16, "bf16": DType.BF16}


def chain_model(rng: np.random.Generator, rows: int = 37, width: int = 83) -> object:
    """x -> Add(bias) -> LayerNormalization -> Transpose -> Softmax -> Mul -> y: elementwise,
    row reductions and a strided copy, every intermediate an activation."""
    nodes = [helper.make_node("Add", ["x", "b"], ["h"]),
             helper.make_node("LayerNormalization", ["h", "s", "c"], ["n"], axis=-1),
             helper.make_node("Transpose", ["n"], ["t"], perm=[1, 0]),
             helper.make_node("Softmax", ["t"], ["p"], axis=-1),
             helper.make_node("Mul", ["p", "t"], ["y"])]
    return make_model(nodes, [vinfo("x", (rows, width))], [vinfo("y", (width, rows))],
                      [init("b", rand(rng, width)), init("s", rand(rng, width)),
                       init("c", rand(rng, width))])


def stored(graph: Graph) -> set[str]:
    return {v for v, t in graph.types.items() if t.dtype in (DType.F16, DType.BF16)}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_activations_are_stored_in_16_bits(precision: str, tmp_path: Path) -> None:
    path = write_model(chain_model(np.random.default_rng(0)), tmp_path)  # type: ignore[arg-type]
    graph, ctx = compile_graph(path, target="cuda", precision=precision)
    half = stored(graph)
    assert half and graph.activation_storage is STORAGE[precision]
    assert all(graph.types[v].dtype is STORAGE[precision] for v in half)
    for edge in (*graph.inputs, *graph.outputs, *graph.constants):  # float32 at the ABI
        assert edge not in half and graph.types[edge].dtype is DType.F32
    assert half == set(graph.intermediates())
    # the planner sizes them at 2 bytes
    plan = ctx.artifacts["memory_plan"]
    sizes = {t.name: t.bytes for t in plan.tensors}
    for value in half & set(sizes):
        assert sizes[value] == 2 * graph.types[value].numel
    (summary,) = [d for d in ctx.decisions if d.pass_name == "store_16bit" and d.action == "summary"]
    assert summary.extra["values"] == len(half)


def test_fp32_and_tf32_keep_float32(tmp_path: Path) -> None:
    path = write_model(chain_model(np.random.default_rng(0)), tmp_path)  # type: ignore[arg-type]
    for precision in ("fp32", "tf32"):
        graph, _ = compile_graph(path, target="cuda", precision=precision)
        assert not stored(graph) and graph.activation_storage is None
    graph, _ = compile_graph(path, target="cpu")
    assert not stored(graph)


def test_a_consumer_without_16_bit_reads_keeps_float32(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Softmax's kernel made a float32-only reader: its input (and the views sharing it) stay
    float32, with the reason in the decision log; the rest is stored in 16 bits still."""
    monkeypatch.setattr(cuda_kernels, "HALF_READERS",
                        cuda_kernels.HALF_READERS - {"cuda_softmax_block"})
    path = write_model(chain_model(np.random.default_rng(0)), tmp_path)  # type: ignore[arg-type]
    graph, ctx = compile_graph(path, target="cuda", precision="fp16")
    softmax = next(n for n in graph.nodes if n.op == "Softmax")
    assert graph.types[softmax.inputs[0]].dtype is DType.F32
    assert stored(graph)  # the LayerNormalization's output, read by the Transpose
    kept = [d for d in ctx.decisions if d.action == "keep_float32"]
    assert any("reads" in d.reason and "float32 only" in d.reason and softmax.inputs[0] in d.after
               for d in kept)


def test_layernorm_statistics_stay_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Relu", ["x"], ["h"]),
             helper.make_node("LayerNormalization", ["h", "s", "c"], ["n", "mean", "inv"], axis=-1),
             helper.make_node("Relu", ["n"], ["y"]),
             helper.make_node("Neg", ["mean"], ["m"]), helper.make_node("Neg", ["inv"], ["i"])]
    model = make_model(nodes, [vinfo("x", (20, 64))],
                       [vinfo("y", (20, 64)), vinfo("m", (20, 1)), vinfo("i", (20, 1))],
                       [init("s", rand(rng, 64)), init("c", rand(rng, 64))])
    graph, ctx = compile_graph(write_model(model, tmp_path), target="cuda", precision="fp16")
    assert graph.types["h"].dtype is DType.F16 and graph.types["n"].dtype is DType.F16
    assert graph.types["mean"].dtype is DType.F32 and graph.types["inv"].dtype is DType.F32
    assert any(d.action == "keep_float32" and "writes" in d.reason for d in ctx.decisions)


def test_the_ir_keeps_its_storage_type(tmp_path: Path) -> None:
    """The text form prints and parses the storage type; the verifier reads a 16-bit value as
    float32 in the op rules, and refuses it where the graph declares no storage type."""
    path = write_model(chain_model(np.random.default_rng(0)), tmp_path)  # type: ignore[arg-type]
    graph, _ = compile_graph(path, target="cuda", precision="bf16")
    text = print_graph(graph)
    assert text.splitlines()[0].endswith("storage=bf16") and ": bf16[" in text
    blobs = {}
    from pyc_cli.ir.text import blob_key
    for array in graph.constants.values():
        blobs[blob_key(array)] = array
    again = parse_graph(text, blobs)
    assert again.activation_storage is DType.BF16 and print_graph(again) == text
    verify(again, registry.lookup)
    again.activation_storage = None
    with pytest.raises(Exception, match="typed bf16"):
        verify(again, registry.lookup)


# ---------------------------------------------------------------- emulated against onnxruntime

needs_cxx = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")


@needs_cxx
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_emulated_chain_matches_onnxruntime(precision: str, tmp_path: Path,
                                            rng: np.random.Generator) -> None:
    """Every kernel of the chain reading and writing 16 bits, against onnxruntime in float32:
    each 16-bit store rounds once (float16 2^-11, bfloat16 2^-8 relative), so the whole chain
    is within WHOLE_MODEL_RTOL of max |output|."""
    from test_cuda_emulated import Emulated

    path = write_model(chain_model(np.random.default_rng(int(rng.integers(1 << 30)))), tmp_path)  # type: ignore[arg-type]
    emulated = Emulated(path, tmp_path, precision=precision)
    assert stored(emulated.graph)
    feeds = {"x": rand(rng, 37, 83)}
    expected = onnxruntime_outputs(path, feeds)["y"]
    got = emulated.run(feeds)["y"]
    assert got.dtype == np.float32
    assert_close_to_max(got, expected, WHOLE_MODEL_RTOL[precision], precision)


@needs_cxx
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_emulated_gather_pool_and_concat(precision: str, tmp_path: Path,
                                         rng: np.random.Generator) -> None:
    """Gather from a float32 table into 16 bits, a pool, a Concat and a reduction over 16-bit
    activations, against onnxruntime."""
    from test_cuda_emulated import Emulated

    nodes = [helper.make_node("Gather", ["table", "ids"], ["g"], axis=0),   # [2, 6, 5, 5]
             helper.make_node("Relu", ["g"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["mp"], kernel_shape=[2, 2], strides=[1, 1]),
             helper.make_node("AveragePool", ["r"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["ap"], ["as"]),
             helper.make_node("Slice", ["as", "st", "en"], ["sl"]),
             helper.make_node("Concat", ["mp", "sl"], ["cat"], axis=1),
             helper.make_node("ReduceMean", ["cat"], ["y"], axes=[2, 3], keepdims=1)]
    table = rand(rng, 9, 6, 5, 5)
    model = make_model(nodes, [vinfo("ids", (2,), TensorProto.INT64)], [vinfo("y", (2, 12, 1, 1))],
                       [init("table", table), init("st", np.array([0, 0, 1, 1], np.int64)),
                        init("en", np.array([2, 6, 5, 5], np.int64))])
    path = write_model(model, tmp_path)
    emulated = Emulated(path, tmp_path, precision=precision)
    assert {"g", "r", "cat"} <= stored(emulated.graph)
    feeds = {"ids": np.array([4, 7], np.int64)}
    expected = onnxruntime_outputs(path, feeds)["y"]
    assert_close_to_max(emulated.run(feeds)["y"], expected, WHOLE_MODEL_RTOL[precision], precision)


# ---------------------------------------------------------------- NVRTC and determinism

SHAPES = {"cnn.onnx": {"image": [2, 3, 32, 32]}, "mobilenet.onnx": {"image": [1, 3, 64, 64]}}


def emit(path: Path, precision: str) -> dict[str, str]:
    shapes = SHAPES.get(path.name)
    graph, ctx = compile_graph(path, input_shapes=shapes, target="cuda", precision=precision)
    plan = ctx.artifacts["memory_plan"]
    layout = layout_weights(graph, {}, ctx.target.constant_conversions(graph))  # type: ignore[union-attr]
    info = ModelInfo("half", io_infos(graph, graph.inputs),
                     io_infos(graph, graph.outputs, graph.public_outputs()), plan.arena_bytes,
                     layout.total_bytes, 0, "half")
    return ctx.target.emit(graph, plan, layout, info)  # type: ignore[union-attr]


def encoder_path(tmp_path: Path) -> Path:
    import sys

    sys.path.insert(0, str(MODELS_DIR))
    from make_encoder import make_encoder

    return write_model(make_encoder(batch=2, seq=40, layers=1, vocab=500, hidden=96, heads=4,
                                    ffn=192, seed=1), tmp_path, "encoder.onnx")


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("tile", [64, 128])
@pytest.mark.parametrize("stages", [3, 2])
def test_16_bit_gemm_variants_compile_with_nvrtc(stages: int, tile: int, arch: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Each tile pipelined or double-buffered, on aligned and unaligned rows."""
    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context.MMA_STAGES_16BIT", stages)
    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context.FILL_BLOCKS", 1 if tile == 128 else 10**9)
    rng = np.random.default_rng(0)
    for i, (a, b, act) in enumerate(GEMM_SHAPES):
        path = write_model(gemm_model(a, b, act, rng), tmp_path, f"gemm{i}.onnx")  # type: ignore[arg-type]
        source = emit(path, "fp16")["model.cu"]
        assert ("PYC_DYNAMIC_SHARED(pyc_smem)" in source) == (stages == 3)
        compiled = compile_cleanly(source, arch)
        assert "cp.async.cg.shared.global" in compiled.ptx


@needs_nvrtc
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
def test_16_bit_kernels_compile_with_nvrtc(precision: str, arch: str, tmp_path: Path) -> None:
    """The chain, the encoder, the CNN and the GEMMs of GEMM_SHAPES with 16-bit activations
    compile for sm_80 and sm_90; the PTX converts to the storage type, and the GEMMs copy
    their 16-bit operands by cp.async."""
    rng = np.random.default_rng(0)
    models = [write_model(chain_model(rng), tmp_path, "chain.onnx"),  # type: ignore[arg-type]
              encoder_path(tmp_path), MODELS_DIR / "cnn.onnx"]
    models += [write_model(gemm_model(a, b, act, rng), tmp_path, f"gemm{i}.onnx")  # type: ignore[arg-type]
               for i, (a, b, act) in enumerate(GEMM_SHAPES)]
    models += [write_model(conv_model(*shape, rng), tmp_path, f"conv{i}.onnx")  # type: ignore[arg-type]
               for i, shape in enumerate(CONV_SHAPES)]
    models.append(MODELS_DIR / "mobilenet.onnx")
    for path in models:
        source = emit(path, precision)["model.cu"]
        assert "struct __align__(2) pyc_f16" in source
        compiled = compile_cleanly(source, arch)
        assert ("cvt.rn.f16.f32" if precision == "fp16" else "cvt.rn.bf16.f32") in compiled.ptx
        if path.name.startswith("gemm"):
            assert "cp.async.cg.shared.global" in compiled.ptx
        if path.name == "conv0.onnx":  # the pointwise conv's 8-byte copies of its 16-bit input
            assert "cp.async.ca.shared.global" in compiled.ptx


def test_16_bit_sources_are_deterministic(tmp_path: Path) -> None:
    path = encoder_path(tmp_path)
    first, second = emit(path, "fp16"), emit(path, "fp16")
    assert first == second and "pyc_f16" in first["model.cu"]
    assert "pyc_f16" not in emit(path, "fp32")["model.cu"]


# ---------------------------------------------------------------- the tensor-core GEMM on 16 bits

# (A's shape, B's shape, B an activation): K % 8 == 0 takes A by cp.async, odd K the register
# way; a batched product of two activations takes B by cp.async (N % 8 == 0) or registers
GEMM_SHAPES = [((37, 40), (40, 70), False), ((37, 41), (41, 70), False),
               ((2, 33, 48), (2, 48, 72), True), ((2, 33, 48), (2, 48, 50), True),
               ((130, 264), (264, 136), False)]
ULP = {"fp16": 2.0**-11, "bf16": 2.0**-8}


def gemm_model(a_shape: tuple[int, ...], b_shape: tuple[int, ...], b_activation: bool,
               rng: np.random.Generator) -> object:
    """y = Transpose(Relu(a) @ B): the Relu's result and the product are activations (stored in
    16 bits), a and y the model's float32 edges; B a weight or Relu(b)."""
    nodes = [helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("MatMul", ["ra", "rb" if b_activation else "w"], ["p"]),
             helper.make_node("Transpose", ["p"], ["y"],
                              perm=list(range(len(a_shape) - 2)) + [len(a_shape) - 1, len(a_shape) - 2])]
    inputs, inits = [vinfo("a", a_shape)], []
    if b_activation:
        nodes.insert(1, helper.make_node("Relu", ["b"], ["rb"]))
        inputs.append(vinfo("b", b_shape))
    else:
        inits.append(init("w", rand(rng, *b_shape)))
    out = (*a_shape[:-2], b_shape[-1], a_shape[-2])
    return make_model(nodes, inputs, [vinfo("y", out)], inits)


@needs_cxx
@pytest.mark.parametrize("stages", [3, 2])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("a_shape,b_shape,b_activation", GEMM_SHAPES)
def test_emulated_gemm_on_16_bit_activations(a_shape: tuple[int, ...], b_shape: tuple[int, ...],
                                             b_activation: bool, precision: str, stages: int,
                                             tmp_path: Path, rng: np.random.Generator,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The tensor-core GEMM reading its 16-bit A (and B) from the arena and storing C in 16
    bits, pipelined (3 slices in shared memory, the default where A and B are both 16-bit) or
    double-buffered (2): against a numpy model of its roundings (operands rounded, exact sums,
    the product rounded as stored) within 2 ulps of the storage type, and float64 within
    EXACT_RTOL."""
    from mma_precision import EXACT_RTOL, round_to
    from test_cuda_emulated import Emulated

    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context.MMA_STAGES_16BIT", stages)

    model = gemm_model(a_shape, b_shape, b_activation, np.random.default_rng(int(rng.integers(1 << 30))))
    path = write_model(model, tmp_path)  # type: ignore[arg-type]
    emulated = Emulated(path, tmp_path, precision=precision)
    matmul = next(n for n in emulated.graph.nodes if n.op == "MatMul")
    assert matmul.ann.kernel is not None and matmul.ann.kernel.candidate == "cuda_matmul_mma"
    assert graph_types(emulated.graph, matmul) == ([STORAGE[precision]] * 2 if b_activation else
                                                   [STORAGE[precision], DType.F32], STORAGE[precision])
    (launch,) = [s for s in emulated.plan["launches"] if s["op"] == "MatMul"]
    assert (launch["shared_bytes"] > 0) == (stages == 3)  # the pipelined path's dynamic slices
    feeds = {"a": rand(rng, *a_shape)}
    if b_activation:
        feeds["b"] = rand(rng, *b_shape)
    b = np.maximum(feeds["b"], 0) if b_activation else \
        next(np.asarray(v) for k, v in emulated.graph.constants.items() if v.shape == b_shape)
    exact = np.matmul(np.maximum(feeds["a"], 0).astype(np.float64), b.astype(np.float64))
    rounded = round_to(np.matmul(round_to(np.maximum(feeds["a"], 0), precision),
                                 round_to(b, precision)).astype(np.float32), precision)
    got = np.swapaxes(emulated.run(feeds)["y"], -1, -2)
    assert_close_to_max(got, rounded, 2 * ULP[precision], f"{precision} vs the rounding model")
    assert_close_to_max(got, exact, EXACT_RTOL[precision], f"{precision} vs float64")


def graph_types(graph: Graph, node: object) -> tuple[list[DType], DType]:
    return ([graph.types[v].dtype for v in node.inputs[:2]],  # type: ignore[attr-defined]
            graph.types[node.outputs[0]].dtype)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the tensor-core conv on 16 bits

# (input shape, first conv's output channels, kernel, stride, pad): a pointwise conv of a pixel
# count divisible by 4 (its slice by 8-byte cp.async), 3 x 3 convs (4 columns a thread), odd
# sizes and strides (a column a thread), a deep one (K split)
CONV_SHAPES = [((2, 16, 8, 8), 24, 1, 1, 0), ((2, 8, 9, 9), 20, 3, 1, 1),
               ((1, 5, 11, 7), 9, 3, 2, 1), ((1, 64, 7, 7), 40, 3, 1, 1)]


def conv_model(shape: tuple[int, ...], channels: int, kernel: int, stride: int, pad: int,
               rng: np.random.Generator) -> object:
    """y = Conv2(Conv1(Relu(x)) + bias): Conv1 reads and writes 16-bit activations, Conv2 reads
    one and writes the float32 output."""
    c = shape[1]
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Conv", ["r", "w1", "b1"], ["h"], kernel_shape=[kernel, kernel],
                              strides=[stride, stride], pads=[pad] * 4),
             helper.make_node("Conv", ["h", "w2"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    oh = (shape[2] + 2 * pad - kernel) // stride + 1
    ow = (shape[3] + 2 * pad - kernel) // stride + 1
    return make_model(nodes, [vinfo("x", shape)], [vinfo("y", (shape[0], 6, oh, ow))],
                      [init("w1", rand(rng, channels, c, kernel, kernel, scale=0.3)),
                       init("b1", rand(rng, channels)),
                       init("w2", rand(rng, 6, channels, 3, 3, scale=0.3))])


@needs_cxx
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("shape,channels,kernel,stride,pad", CONV_SHAPES)
def test_emulated_conv_on_16_bit_activations(shape: tuple[int, ...], channels: int, kernel: int,
                                             stride: int, pad: int, precision: str,
                                             tmp_path: Path, rng: np.random.Generator) -> None:
    """The tensor-core conv gathering its im2col slices from a 16-bit input and storing in 16
    bits, against onnxruntime in float32 within WHOLE_MODEL_RTOL of max |output|."""
    from test_cuda_emulated import Emulated

    model = conv_model(shape, channels, kernel, stride, pad,
                       np.random.default_rng(int(rng.integers(1 << 30))))
    path = write_model(model, tmp_path)  # type: ignore[arg-type]
    emulated = Emulated(path, tmp_path, precision=precision)
    convs = [n for n in emulated.graph.nodes if n.op == "Conv"]
    assert all(n.ann.kernel is not None and n.ann.kernel.candidate == "cuda_conv_mma" for n in convs)
    assert emulated.graph.types[convs[0].inputs[0]].dtype is STORAGE[precision]
    assert emulated.graph.types[convs[0].outputs[0]].dtype is STORAGE[precision]
    feeds = {"x": rand(rng, *shape)}
    expected = onnxruntime_outputs(path, feeds)["y"]
    assert_close_to_max(emulated.run(feeds)["y"], expected, WHOLE_MODEL_RTOL[precision], precision)


# ---------------------------------------------------------------- the tensor-core attention on 16 bits

@needs_cxx
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("shape", [0, 3, 4], ids=lambda i: f"mma_shape{i}")
def test_emulated_attention_on_16_bit_activations(shape: int, precision: str, tmp_path: Path,
                                                  rng: np.random.Generator,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Q, Kt and V computed by a kernel (Neg) and stored in 16 bits, their bits staged as they
    are by the tensor-core attention: against float64 within EXACT_RTOL and, where the keys fit
    one tile, the rounding model (inputs rounded once) within ROUNDED_RTOL."""
    from attention_cases import MMA_SHAPES, MMA_TILE_KEYS, ROUNDED_RTOL, float64_attention, rounded_attention
    from mma_precision import EXACT_RTOL
    from ops.test_references import attention_feeds
    from test_cuda_emulated import Emulated

    monkeypatch.setattr("pyc_cli.targets.cuda.kernels.ATTENTION_MMA_MIN_KEYS", 1)
    batch, s, d, t, e, scale, mask = MMA_SHAPES[shape]
    model = negated_attention(MMA_SHAPES[shape])
    emulated = Emulated(write_model(model, tmp_path), tmp_path, precision=precision)
    attention = next(n for n in emulated.graph.nodes if n.op == "pyc.Attention")
    assert attention.ann.kernel is not None and attention.ann.kernel.candidate == "cuda_attention_mma"
    assert [emulated.graph.types[v].dtype for v in attention.inputs[:3]] == [STORAGE[precision]] * 3
    feeds = attention_feeds(model, rng)
    got = emulated.run(feeds)["y"]
    negated = {("q", "kt", "v")[i]: -feeds[f"{n}_in"] for i, n in enumerate(("q", "kt", "v"))}
    if mask:
        negated["mask"] = feeds["mask"]
    assert_close_to_max(got, float64_attention(negated, scale), EXACT_RTOL[precision], "float64")
    if t <= MMA_TILE_KEYS:
        assert_close_to_max(got, rounded_attention(negated, scale, precision), ROUNDED_RTOL,
                            "the rounding model")


def negated_attention(shape: tuple) -> object:  # type: ignore[type-arg]
    """attention_model's pattern over Neg(q), Neg(kt), Neg(v): kernel results, 16-bit."""
    from ops.test_references import attention_model

    model = attention_model(*shape)
    for value in model.graph.input:
        if value.name in ("q", "kt", "v"):
            value.name = f"{value.name}_in"
    for name in ("v", "kt", "q"):
        model.graph.node.insert(0, helper.make_node("Neg", [f"{name}_in"], [name]))
    return model


@needs_nvrtc
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_16_bit_attention_compiles_with_nvrtc(precision: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from attention_cases import MMA_SHAPES

    monkeypatch.setattr("pyc_cli.targets.cuda.kernels.ATTENTION_MMA_MIN_KEYS", 1)
    path = write_model(negated_attention(MMA_SHAPES[3]), tmp_path)  # type: ignore[arg-type]
    source = emit(path, precision)["model.cu"]
    assert "attention_mma.cu.j2" in source and "pyc_f16" in source
    for arch in ("sm_90", "sm_80"):
        compile_cleanly(source, arch)


@needs_cxx
@needs_nvrtc
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_pipelined_gemm_past_48_kib_through_the_runtime(precision: str, tmp_path: Path,
                                                        rng: np.random.Generator,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """128 x 128 tiles pipelined over 3 slices take 56 KiB of dynamic shared memory: the
    runtime opts the kernel in (cuFuncSetAttribute) before it runs; outputs against float64
    and the rounding model, through runtime/cuda.py on the emulated driver."""
    import json

    from cuda_emulation import FakeDriver, compile_kernels
    from mma_precision import EXACT_RTOL, round_to

    import pyc_cli
    from pyc_cli.targets.cuda import bindings

    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context.FILL_BLOCKS", 1)  # 128-tiles
    model = gemm_model((200, 264), (264, 136), False, rng)
    path = write_model(model, tmp_path)  # type: ignore[arg-type]
    built = pyc_cli.build(path, tmp_path / "g.pyc", target="cuda", precision=precision)
    plan = json.loads((built.artifact / "src" / "launches.json").read_text())
    (launch,) = [s for s in plan["launches"] if s["op"] == "MatMul"]
    assert launch["block"] == [256, 1, 1] and launch["shared_bytes"] == 3 * (128 * 40 + 32 * 136) * 2
    lib = compile_kernels((built.artifact / "src" / "model.cu").read_text(), tmp_path)
    fake = FakeDriver(lib, {s["kernel"]: len(s["args"]) for s in plan["launches"]})
    monkeypatch.setattr(bindings, "driver", lambda: fake)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}  # type: ignore[attr-defined]
    with pyc_cli.load(built.artifact) as compiled:
        feeds = {"a": rand(rng, 200, 264)}
        compiled.poison()
        got = compiled.run(feeds)["y"].T
    assert fake.function_attributes == {(launch["kernel"], "max_dynamic_shared"): launch["shared_bytes"]}
    a = np.maximum(feeds["a"], 0)
    product = np.matmul(round_to(a, precision), round_to(weights["w"], precision))
    rounded = round_to(product.astype(np.float32), precision)
    assert_close_to_max(got, rounded, 2 * ULP[precision], "the rounding model")
    assert_close_to_max(got, a.astype(np.float64) @ weights["w"], EXACT_RTOL[precision], "float64")
