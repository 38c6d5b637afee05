"""A LayerNormalization fused into the tensor-core GEMM before it (targets/cuda/fuse_norm.py,
matmul_mma.cu.j2's `normalize`), without a GPU: GEMM (+ bias + residual) + LayerNormalization
models built by NVRTC and run through runtime/cuda.py on the emulated driver
(cuda_emulation.FakeDriver: CUDA-graph replay, outputs and arena poisoned with NaN before every
run, fresh random inputs each run), against

- onnxruntime (float32) within EXACT_RTOL[precision] of max |output| (mma_precision.py: tf32
  5e-3, fp16 2e-2, bf16 5e-2, one GEMM's rounding; normalizing does not grow it beyond that
  here: rows of unit scale); and
- the same model built without the fusion (two kernels), within 1e-5 of max |output|: both
  round the pre-normalization sum to the same stored type, only the reductions' order differs.

Two runs in a row check that the row-block counters are reset for the next replay (a counter
left at its count would normalize nothing, or too early, and leave the poison). The encoder
(tests/models/make_encoder.py) at fp16: a small one run on the emulation against onnxruntime
within WHOLE_MODEL_RTOL, and MiniLM-L6's shape (batch 1, sequence 128) built only, its launch
count asserted 12 lower (two LayerNormalizations a layer, six layers)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import MODELS_DIR, onnxruntime_outputs
from cuda_emulation import CXX, FakeDriver, compile_kernels
from helpers import write_model
from mma_precision import EXACT_RTOL, WHOLE_MODEL_RTOL, assert_close_to_max
from nvrtc_check import compile_cleanly
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli.api import compile_graph
from pyc_cli.ir.text import blob_key, parse_graph, print_graph
from pyc_cli.targets.cuda import bindings, fuse_norm, toolchain
from pyc_cli.targets.cuda.target import kernel_templates

needs_nvrtc = pytest.mark.skipif(not bindings.available(),
                                 reason='the NVRTC wheel is not installed (pip install ".[cuda]")')
needs_cxx = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")


@pytest.fixture(autouse=True)
def fusion_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fusion is off by default (slower on an H100: fuse_norm.GEMM_KERNELS); these tests
    check it where it is on."""
    monkeypatch.setattr(fuse_norm, "GEMM_KERNELS", fuse_norm.FUSABLE_GEMMS)


def norm_model(m: int, k: int, n: int, rng: np.random.Generator, *, bias: bool = True,
               residual: bool = True, batch: tuple[int, ...] = (), norm_bias: bool = True,
               scalar_scale: bool = False, tail: bool = False) -> onnx.ModelProto:
    """y = LayerNormalization(x @ w (+ b) (+ r)) over the last axis (n), random weights;
    `tail`: then times 2 (the normalized tensor an intermediate: stored in 16 bits at fp16 /
    bf16, as the encoder's are)."""
    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    inits: list[onnx.TensorProto] = []
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [*batch, m, k])]
    nodes = [helper.make_node("MatMul", ["x", const("w", rng.standard_normal((k, n)) * k ** -0.5)],
                              ["mm"])]
    value = "mm"
    if bias:
        nodes.append(helper.make_node("Add", [value, const("b", 0.5 * rng.standard_normal(n))], ["mb"]))
        value = "mb"
    if residual:
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [*batch, m, n]))
        nodes.append(helper.make_node("Add", [value, "r"], ["res"]))
        value = "res"
    scale = const("g", 1 + 0.1 * rng.standard_normal(1 if scalar_scale else n))
    operands = [value, scale] + ([const("beta", 0.1 * rng.standard_normal(n))] if norm_bias else [])
    nodes.append(helper.make_node("LayerNormalization", operands, ["ln" if tail else "y"], axis=-1,
                                  epsilon=1e-5))
    if tail:
        nodes.append(helper.make_node("Mul", ["ln", const("two", np.array(2.0))], ["y"]))
    graph = helper.make_graph(nodes, "gemm_norm", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*batch, m, n])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def feeds_for(model: onnx.ModelProto, rng: np.random.Generator) -> dict[str, np.ndarray]:
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def build(path: Path, out: Path, precision: str, arch: str = "sm_90") -> dict:  # type: ignore[type-arg]
    """The launch plan of a build."""
    pyc_cli.build(path, out, target="cuda", arch=arch, precision=precision)
    return json.loads((out / "src" / "launches.json").read_text())  # type: ignore[no-any-return]


def runs(artifact: Path, plan: dict, feeds: list[dict[str, np.ndarray]], tmp_path: Path,  # type: ignore[type-arg]
         monkeypatch: pytest.MonkeyPatch) -> list[dict[str, np.ndarray]]:
    """Each feed's outputs, one run after another through the emulated driver (one CUDA graph
    replayed), outputs and arena poisoned before each."""
    lib = compile_kernels((artifact / "src" / "model.cu").read_text(), tmp_path)
    fake = FakeDriver(lib, {s["kernel"]: len(s["args"]) for s in plan["launches"]})
    monkeypatch.setattr(bindings, "driver", lambda: fake)
    results = []
    with pyc_cli.load(artifact) as model:
        for feed in feeds:
            model.poison()
            results.append(model.run(feed))
    return results


def launched_ops(plan: dict) -> list[str]:  # type: ignore[type-arg]
    return [s["op"] for s in plan["launches"]]


def unfused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds after this keep every LayerNormalization its own kernel."""
    monkeypatch.setattr(fuse_norm, "GEMM_KERNELS", ())


# (m, k, n, batch, bias, residual, norm bias, tail): N 384 (the encoder's) and 200 (no multiple
# of a tile or a warp), M from 9 (the fewest rows the tensor-core GEMM takes) to 300 (three
# row-blocks of 128 / five of 64, the last partial); K from 48 (no K split) to 512 (split); N
# 64: one tile spans the rows, the block normalizes them uncounted
SHAPES = [(128, 384, 384, (), True, True, True, True),
          (128, 384, 384, (), True, True, True, False),
          (9, 64, 200, (), True, True, True, False),
          (300, 256, 384, (), True, False, True, True),
          (70, 512, 200, (), False, True, False, True),
          (40, 48, 96, (2,), True, True, True, False),
          (33, 96, 64, (), True, True, True, True)]
# |fused - two kernels| <= this x max |output|: tf32 stores the pre-normalization sum in float32
# either way (only the reductions' order differs); at fp16 / bf16 two kernels round it to 16
# bits in between, and where the normalized tensor is the model's (float32) output the fused
# kernel does not: the difference is that rounding (2^-11 / 2^-8 of |sum|) over the row's
# standard deviation (max |sum| / std ~ 4 here), and an output stored in 16 bits may round
# the other way (an ulp)
VS_TWO_KERNELS = {"tf32": 1e-5, "fp16": 2.0 ** -9, "bf16": 2.0 ** -6}


@needs_nvrtc
@needs_cxx
@pytest.mark.parametrize("m,k,n,batch,bias,residual,norm_bias,tail", SHAPES)
@pytest.mark.parametrize("precision", ["fp16", "bf16", "tf32"])
def test_fused_gemm_layernorm_matches_onnxruntime(m: int, k: int, n: int, batch: tuple[int, ...],
                                                  bias: bool, residual: bool, norm_bias: bool,
                                                  tail: bool, precision: str, tmp_path: Path,
                                                  rng: np.random.Generator,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    model = norm_model(m, k, n, rng, bias=bias, residual=residual, batch=batch,
                       norm_bias=norm_bias, tail=tail)
    path = write_model(model, tmp_path)
    plan = build(path, tmp_path / "fused.pyc", precision)
    # the LayerNormalization runs in the GEMM's kernel
    assert launched_ops(plan)[0] == "MatMul" and "LayerNormalization" not in launched_ops(plan)
    decisions = (tmp_path / "fused.pyc" / "decisions.jsonl").read_text()
    assert '"action":"fuse_layernorm"' in decisions
    feeds = [feeds_for(model, rng) for _ in range(2)]
    ours = runs(tmp_path / "fused.pyc", plan, feeds, tmp_path, monkeypatch)
    unfused(monkeypatch)
    plain = build(path, tmp_path / "plain.pyc", precision)
    assert launched_ops(plain)[:2] == ["MatMul", "LayerNormalization"]
    assert len(plain["launches"]) == len(plan["launches"]) + 1
    theirs = runs(tmp_path / "plain.pyc", plain, feeds, tmp_path, monkeypatch)
    for feed, got, two_kernels in zip(feeds, ours, theirs):
        expected = onnxruntime_outputs(path, feed)["y"]
        assert_close_to_max(got["y"], expected, EXACT_RTOL[precision], f"{precision} vs onnxruntime")
        assert_close_to_max(got["y"], two_kernels["y"], VS_TWO_KERNELS[precision],
                            f"{precision} vs two kernels")


@needs_nvrtc
@needs_cxx
@pytest.mark.parametrize("ksplit", [1, 4])
@pytest.mark.parametrize("tile", [64, 128])
def test_k_split_and_tiles_compose(ksplit: int, tile: int, tmp_path: Path, rng: np.random.Generator,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A forced K split (the last block of a tile's split stores, then counts its row-block)
    and both tiles (64 x 64 on 4 warps, 128 x 128 on 8), at fp16, rows past a tile's end."""
    from pyc_cli.targets.cuda import kernel_context

    monkeypatch.setattr(kernel_context, "FILL_BLOCKS", 1 if tile == 128 else 10**9)
    monkeypatch.setattr(kernel_context, "split_blocks", lambda tiles, slices: ksplit)
    monkeypatch.setattr(kernel_context, "MMA_SPLIT_MIN_K", 0)
    model = norm_model(150, 256, 264, rng)
    path = write_model(model, tmp_path)
    plan = build(path, tmp_path / "fused.pyc", "fp16")
    (launch,) = plan["launches"]
    assert launch["block"] == [32 * (8 if tile == 128 else 4), 1, 1]
    assert launch["grid"][2] == ksplit
    feeds = [feeds_for(model, rng) for _ in range(3)]
    for feed, got in zip(feeds, runs(tmp_path / "fused.pyc", plan, feeds, tmp_path, monkeypatch)):
        assert_close_to_max(got["y"], onnxruntime_outputs(path, feed)["y"], EXACT_RTOL["fp16"],
                            f"tile {tile} ksplit {ksplit}")


@needs_nvrtc
@needs_cxx
def test_long_rows_are_read_again(tmp_path: Path, rng: np.random.Generator,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows past 1344 columns are not kept in registers (kernel_context.NORM_REGISTERS):
    each pass reads them again (and a scale of one element, broadcast, without a LayerNormalization bias)."""
    model = norm_model(20, 32, 1600, rng, norm_bias=False, scalar_scale=True)
    path = write_model(model, tmp_path)
    plan = build(path, tmp_path / "fused.pyc", "fp16")
    assert launched_ops(plan) == ["MatMul"]
    source = (tmp_path / "fused.pyc" / "src" / "model.cu").read_text()
    assert "n_v[" not in source  # the uncached path
    feeds = [feeds_for(model, rng) for _ in range(2)]
    for feed, got in zip(feeds, runs(tmp_path / "fused.pyc", plan, feeds, tmp_path, monkeypatch)):
        assert_close_to_max(got["y"], onnxruntime_outputs(path, feed)["y"], EXACT_RTOL["fp16"], "N 1600")


def test_where_it_does_not_fuse(tmp_path: Path, rng: np.random.Generator) -> None:
    """fp32 (no tensor-core GEMM), a GEMM of at most 8 rows (the skinny one), a pre-norm value
    that is also a model output, and the CPU target keep the LayerNormalization's own kernel."""
    def fused(model: onnx.ModelProto, **options: object) -> bool:
        graph, ctx = compile_graph(write_model(model, tmp_path), **options)  # type: ignore[arg-type]
        return any(n.ann.norm_from for n in graph.nodes) and \
            not any(n.op == "LayerNormalization" for n in graph.nodes)

    assert fused(norm_model(64, 64, 96, rng), target="cuda", precision="fp16")
    assert not fused(norm_model(64, 64, 96, rng), target="cuda", precision="fp32")
    assert not fused(norm_model(8, 64, 96, rng), target="cuda", precision="fp16")
    assert not fused(norm_model(64, 64, 96, rng), target="cpu")
    both = norm_model(64, 64, 96, rng)
    both.graph.output.append(helper.make_tensor_value_info("res", TensorProto.FLOAT, [64, 96]))
    graph, ctx = compile_graph(write_model(both, tmp_path), target="cuda", precision="fp16")
    assert any(n.op == "LayerNormalization" for n in graph.nodes)
    (skip,) = [d for d in ctx.decisions if d.action == "skip_fuse_layernorm"]
    assert "model output" in skip.reason


def test_the_ir_keeps_the_fused_normalization(tmp_path: Path, rng: np.random.Generator) -> None:
    graph, _ = compile_graph(write_model(norm_model(64, 64, 96, rng), tmp_path), target="cuda",
                             precision="fp16")
    (gemm,) = [n for n in graph.nodes if n.op == "MatMul"]
    assert gemm.ann.norm_from and gemm.ann.norm_epsilon == pytest.approx(1e-5)
    assert [gemm.inputs[i] for i in gemm.ann.norm_inputs] == ["g", "beta"]
    again = parse_graph(print_graph(graph), {blob_key(a): a for a in graph.constants.values()})
    (parsed,) = [n for n in again.nodes if n.op == "MatMul"]
    assert (parsed.ann.norm_from, parsed.ann.norm_inputs, parsed.ann.norm_epsilon) == \
        (gemm.ann.norm_from, gemm.ann.norm_inputs, gemm.ann.norm_epsilon)
    assert print_graph(again) == print_graph(graph)


@needs_nvrtc
@pytest.mark.parametrize("precision", ["fp16", "bf16", "tf32"])
@pytest.mark.parametrize("n", [384, 200, 1600, 64])
def test_nvrtc_compiles_the_fused_kernel(precision: str, n: int, tmp_path: Path,
                                         rng: np.random.Generator) -> None:
    """The fused kernel (register rows and reread rows, a K split and none, counted row-blocks
    and a tile spanning N) compiles for sm_90 and sm_80 without warnings, and with its rows
    in registers without spills (kernel_context.NORM_REGISTERS; 157-202 registers a thread
    where the 64-tile GEMM alone takes 96)."""
    path = write_model(norm_model(128, 384 if n != 1600 else 32, n, rng), tmp_path)
    pyc_cli.build(path, tmp_path / "a.pyc", target="cuda", arch="sm_80", precision=precision)
    source = (tmp_path / "a.pyc" / "src" / "model.cu").read_text()
    assert "n_mean" in source
    for arch in ("sm_90", "sm_80"):
        compile_cleanly(source, arch)
        if n != 1600:  # rows in registers: they fit without spilling (1600 rereads its rows)
            (usage,) = toolchain.resource_usage(source, arch)
            assert usage.spill_store_bytes == usage.stack_bytes == 0, usage


def encoder(tmp_path: Path, **shape: int) -> Path:
    sys.path.insert(0, str(MODELS_DIR))
    from make_encoder import make_encoder

    return write_model(make_encoder(**shape), tmp_path, f"encoder{len(shape)}.onnx")


@needs_nvrtc
def test_minilm_encoder_launches_twelve_kernels_fewer(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """MiniLM-L6's shape at batch 1, sequence 128, fp16 (what issue #14 times): each layer's two
    LayerNormalizations run in the GEMMs before them (the embeddings' stays its own kernel)."""
    path = encoder(tmp_path, batch=1, seq=128)
    fused = build(path, tmp_path / "fused.pyc", "fp16")
    unfused(monkeypatch)
    plain = build(path, tmp_path / "plain.pyc", "fp16")
    assert len(plain["launches"]) - len(fused["launches"]) == 12
    assert launched_ops(fused).count("LayerNormalization") == 1
    assert launched_ops(plain).count("LayerNormalization") == 13


@needs_nvrtc
@needs_cxx
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_emulated_encoder_with_fused_layernorms(precision: str, tmp_path: Path,
                                                rng: np.random.Generator,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-layer encoder (hidden 96, batch 2, sequence 40) with its four post-attention and
    post-FFN LayerNormalizations fused, twice in a row, against onnxruntime (float32) within
    WHOLE_MODEL_RTOL of max |output|."""
    sys.path.insert(0, str(MODELS_DIR))
    from make_encoder import encoder_feeds

    path = encoder(tmp_path, batch=2, seq=40, layers=2, vocab=500, hidden=96, heads=4, ffn=192,
                   seed=int(rng.integers(1 << 30)))
    plan = build(path, tmp_path / "enc.pyc", precision)
    assert launched_ops(plan).count("LayerNormalization") == 1  # the embeddings'
    feeds = [encoder_feeds(rng, 2, 40, 500) for _ in range(2)]
    for feed, got in zip(feeds, runs(tmp_path / "enc.pyc", plan, feeds, tmp_path, monkeypatch)):
        for name, value in onnxruntime_outputs(path, feed).items():
            assert_close_to_max(got[name], value, WHOLE_MODEL_RTOL[precision], f"{name} {precision}")


@needs_nvrtc
@needs_cxx
@pytest.mark.parametrize("columns", [128, 256])
def test_the_hopper_gemm_normalizes_too(columns: int, tmp_path: Path, rng: np.random.Generator,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """cuda_matmul_wgmma (forced, as a tuning database would: 128 x 128 or 128 x 256 tiles in
    its grouped order) ends in the same store and normalization: rows of two row-blocks (the
    second partial) over two or one column tiles, at fp16, twice in a row."""
    from test_cuda_wgmma import WGMMA, ForcedWgmma

    model = norm_model(130, 64, 200, rng, tail=True)
    path = write_model(model, tmp_path)
    pyc_cli.build(path, tmp_path / "w.pyc", target="cuda", arch="sm_90", precision="fp16",
                  tuning=ForcedWgmma(tc_wgmma_n=columns))  # type: ignore[arg-type]
    plan = json.loads((tmp_path / "w.pyc" / "src" / "launches.json").read_text())
    assert launched_ops(plan) == ["MatMul", "pyc.Elementwise"]
    source = (tmp_path / "w.pyc" / "src" / "model.cu").read_text()
    assert "matmul_wgmma.cu.j2" in source and "n_mean" in source
    compiled = toolchain.compile_source(source, toolchain.compile_arch("sm_90", source),
                                        kernel_templates(source))
    assert "warning" not in compiled.log.lower(), compiled.log
    assert WGMMA in (tmp_path / "w.pyc" / "decisions.jsonl").read_text()
    feeds = [feeds_for(model, rng) for _ in range(2)]
    for feed, got in zip(feeds, runs(tmp_path / "w.pyc", plan, feeds, tmp_path, monkeypatch)):
        assert_close_to_max(got["y"], onnxruntime_outputs(path, feed)["y"], EXACT_RTOL["fp16"],
                            f"wgmma {columns} columns")


def test_tuning_sees_the_gemm_as_selection_did(tmp_path: Path, rng: np.random.Generator) -> None:
    """`--tune` measures a fused GEMM's variants under the signature kernel selection looks up
    (before the fusion: without the normalization's operands), so its measurements serve the
    next build."""
    from pyc_cli.passes.tuning import kernel_signature
    from pyc_cli.targets.cuda.target import CudaTarget
    from pyc_cli.tune import tuning_tasks

    path = write_model(norm_model(64, 64, 96, rng), tmp_path)
    graph, ctx = compile_graph(path, target=CudaTarget("sm_90", "tf32"))
    (gemm,) = [n for n in graph.nodes if n.op == "MatMul"]
    assert gemm.ann.norm_from
    selected, _ = compile_graph(path, target=CudaTarget("sm_90", "tf32"), stop_after="select_kernels")
    (before,) = [n for n in selected.nodes if n.op == "MatMul"]
    (task,) = [t for t in tuning_tasks(graph, ctx.target) if t.node.op == "MatMul"]  # type: ignore[arg-type]
    assert task.signature == kernel_signature(before, selected, "cuda")
    assert len(task.node.inputs) == len(gemm.inputs) - 2 and not task.node.ann.norm_from


@needs_nvrtc
@pytest.mark.parametrize("bias", [True, False])
def test_explain_lists_the_fusion(bias: bool, tmp_path: Path, rng: np.random.Generator) -> None:
    """`pyc explain` reports the LayerNormalization within the GEMM's fusion (with its epilogue
    or alone), with the decision's reason."""
    from pyc_cli.explain import explain_data

    path = write_model(norm_model(64, 64, 96, rng, bias=bias, residual=bias), tmp_path)
    pyc_cli.build(path, tmp_path / "a.pyc", target="cuda", precision="fp16")
    (fusion,) = [f for f in explain_data(tmp_path / "a.pyc")["fusions"]
                 if "LayerNormalization" in f["ops"]]
    assert fusion["ops"][0] == "MatMul" and fusion["ops"][-1] == "LayerNormalization"
    assert len(fusion["nodes"]) == (4 if bias else 2) and "row-block" in fusion["reason"]
