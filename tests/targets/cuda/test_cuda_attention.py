"""The CUDA fused attention kernels without a GPU (their emulated runs are in
test_cuda_emulated.py, their GPU runs in test_cuda_gpu.py): which kernel each precision picks,
the patterns that keep MatMul -> Softmax -> MatMul (heads wider than 128, probabilities read
elsewhere), and NVRTC compilation for sm_80 / sm_90 of both kernels, the tensor-core one in
each `attn_warps` variant, the float32 one in smaller `attn_rows` blocks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from attention_cases import (
    HEAD_MMA_SHAPES,
    HEAD_SHAPES,
    MMA_SHAPES,
    SELF_SHAPES,
    SHAPES,
    flash_rows,
    head_attention_model,
    mma_warps,
)
from conftest import MODELS_DIR
from helpers import Forced, decisions, write_model
from nvrtc_check import compile_cleanly
from onnx import helper
from ops.test_references import attention_model

from pyc_cli.abi import io_infos
from pyc_cli.api import compile_graph
from pyc_cli.planning.weights import layout_weights
from pyc_cli.targets.base import ModelInfo
from pyc_cli.targets.cuda import bindings

needs_nvrtc = pytest.mark.skipif(not bindings.available(),
                                 reason='the NVRTC wheel is not installed (pip install ".[cuda]")')


def emit(model: onnx.ModelProto, precision: str, tmp_path: Path,
         tuning: Forced | None = None) -> tuple[str, list[dict]]:  # type: ignore[type-arg]
    graph, ctx = compile_graph(write_model(model, tmp_path), target="cuda", precision=precision,
                               tuning=tuning)  # type: ignore[arg-type]
    plan = ctx.artifacts["memory_plan"]
    layout = layout_weights(graph, {}, ctx.target.constant_conversions(graph))  # type: ignore[union-attr]
    info = ModelInfo("test", io_infos(graph, graph.inputs),
                     io_infos(graph, graph.outputs, graph.public_outputs()), plan.arena_bytes,
                     layout.total_bytes, 0, "test")
    sources = ctx.target.emit(graph, plan, layout, info)  # type: ignore[union-attr]
    return sources["model.cu"], json.loads(sources["launches.json"])["launches"]


@pytest.mark.parametrize("precision, seq, kernel", [
    ("fp32", 24, "cuda_attention_flash"), ("tf32", 24, "cuda_attention_flash"),
    ("fp16", 256, "cuda_attention_mma"), ("bf16", 256, "cuda_attention_mma"),
    ("fp16", 24, "cuda_attention_flash"), ("bf16", 255, "cuda_attention_flash")])
def test_each_precision_picks_its_attention_kernel(precision: str, seq: int, kernel: str,
                                                   tmp_path: Path) -> None:
    """The encoder's attention: tensor cores at fp16 / bf16 from ATTENTION_MMA_MIN_KEYS keys
    (below, the float32 kernel was faster on an H100), the float32 kernel at fp32 and tf32; the
    softmax is gone either way (the score matrix is never written)."""
    sys.path.insert(0, str(MODELS_DIR))
    from make_encoder import make_encoder

    path = write_model(make_encoder(batch=1, seq=seq, layers=1, vocab=50, hidden=64, heads=2,
                                    ffn=64), tmp_path)
    graph, _ = compile_graph(path, target="cuda", precision=precision)
    assert [n.ann.kernel_name for n in graph.nodes if n.op == "pyc.Attention"] == [kernel]
    assert "Softmax" not in [n.op for n in graph.nodes]


def test_heads_wider_than_the_kernel_keep_the_unfused_pattern(tmp_path: Path) -> None:
    """D = 160 > ATTENTION_MAX_HEAD: no CUDA attention kernel applies, the decision log says so,
    and the batched MatMuls and the softmax run as before."""
    path = write_model(attention_model((2,), 5, 160, 6, 8, 0.1, True), tmp_path)
    graph, ctx = compile_graph(path, target="cuda")
    assert [n.op for n in graph.nodes] == ["MatMul", "Softmax", "MatMul"]
    assert decisions(ctx, "skip_attention")


def test_probabilities_read_elsewhere_keep_the_unfused_pattern(tmp_path: Path) -> None:
    """The probabilities as a second graph output: nothing fuses (they must be written)."""
    model = attention_model((2,), 5, 16, 6, 8, None, False)
    model.graph.output.append(helper.make_tensor_value_info("p", onnx.TensorProto.FLOAT, [2, 5, 6]))
    graph, _ = compile_graph(write_model(model, tmp_path), target="cuda")
    assert "pyc.Attention" not in [n.op for n in graph.nodes]


@pytest.mark.parametrize("shape, grid, block", [
    (((1, 12), 128, 32, 128, 32, 0.18, True), [96], 128),  # 16-row blocks: 32-row ones are 48
    (((8, 12), 128, 32, 128, 32, 0.18, True), [384], 128),  # 32-row blocks fill the GPU
])
def test_float32_attention_launch(shape: tuple, grid: list[int], block: int,  # type: ignore[type-arg]
                                  tmp_path: Path) -> None:
    _, launches = emit(attention_model(*shape), "fp32", tmp_path)
    assert [(s["grid"][0], s["block"][0]) for s in launches] == [(grid[0], block)]


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("shape, rows", [
    (SHAPES[3], 16), (SHAPES[5], 16), (SHAPES[6], 16),
    (((16, 16), 33, 128, 100, 128, 0.1, True), 32),  # the largest shared tiles: 32 rows, D = E = 128
], ids=["d64", "e17", "d128", "d128_32rows"])
def test_nvrtc_compiles_the_float32_attention(shape: tuple, rows: int, arch: str,  # type: ignore[type-arg]
                                              tmp_path: Path) -> None:
    source, launches = emit(attention_model(*shape), "fp32", tmp_path)
    batch, s = np.prod(shape[0]), shape[1]
    assert [step["grid"][0] for step in launches] == [batch * -(-s // rows)]
    compile_cleanly(source, arch)


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("rows", [8, 4])
@pytest.mark.parametrize("shape", [SHAPES[3], SHAPES[6]], ids=["d64", "d128"])
def test_nvrtc_compiles_the_float32_attention_in_smaller_row_blocks(
        shape: tuple, rows: int, arch: str, tmp_path: Path) -> None:  # type: ignore[type-arg]
    source, launches = emit(attention_model(*shape), "fp32", tmp_path,
                            flash_rows(rows))
    assert [step["grid"][0] for step in launches] == [np.prod(shape[0]) * -(-shape[1] // rows)]
    compile_cleanly(source, arch)


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("warps", [4, 2, 1])
@pytest.mark.parametrize("shape", [MMA_SHAPES[3], MMA_SHAPES[5]], ids=["d24_e17", "d128_e128"])
def test_nvrtc_compiles_the_tensor_core_attention(shape: tuple, warps: int, precision: str,  # type: ignore[type-arg]
                                                  arch: str, tmp_path: Path) -> None:
    assert shape[2] in (24, 128)  # the ids: D 24 / E 17, D = E = 128
    source, launches = emit(attention_model(*shape), precision, tmp_path, mma_warps(warps))
    assert [step["block"] for step in launches] == [[32 * warps, 1, 1]]
    compiled = compile_cleanly(source, arch)
    assert "mma.sync.aligned.m16n8k16" in compiled.ptx and "ldmatrix" in compiled.ptx


# ---------------------------------------------------------------- the heads' Transposes folded
# fuse_attention folds the Reshape + Transpose of Q, K, V and the Transpose back into
# pyc.Attention (read and written through strides): an encoder launches no Transpose

@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_encoder_launches_no_transpose(precision: str, tmp_path: Path) -> None:
    """Two layers: 4 Transposes a layer folded (logged), none in the launch plan, one
    attention launch a layer, the Q, K, V projections one GEMM (4 a layer: QKV, the output
    projection, 2 feed-forward), the CPU target keeping them (its kernel reads rows)."""
    sys.path.insert(0, str(MODELS_DIR))
    from make_encoder import make_encoder

    path = write_model(make_encoder(batch=1, seq=40, layers=2, vocab=50, hidden=64, heads=2,
                                    ffn=64), tmp_path)
    graph, ctx = compile_graph(path, target="cuda", precision=precision)
    _, launches = emit(onnx.load(path), precision, tmp_path)
    ops = [step["op"] for step in launches]
    assert "Transpose" not in ops and ops.count("pyc.Attention") == 2 and ops.count("MatMul") == 8
    folds = decisions(ctx, "fold_head_transposes")
    assert len(folds) == 2 and all(len(d.nodes) == 4 for d in folds)
    assert len(decisions(ctx, "merge_qkv_projections")) == 2
    cpu, cpu_ctx = compile_graph(path, target="cpu")
    assert [n.op for n in cpu.nodes].count("Transpose") == 8
    assert [n.op for n in cpu.nodes].count("MatMul") == 12
    assert len(decisions(cpu_ctx, "keep_head_transposes")) == 2


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("shape", [HEAD_SHAPES[1], HEAD_SHAPES[2], (1, 2, 7, 33, 128, 128, 0.088)],
                         ids=["d24_e17", "minilm", "d128"])
@pytest.mark.parametrize("k_transposed", [True, False])
def test_nvrtc_compiles_the_float32_attention_over_folded_heads(
        shape: tuple, k_transposed: bool, arch: str, tmp_path: Path,  # type: ignore[type-arg]
        rng: np.random.Generator) -> None:
    source, launches = emit(head_attention_model(*shape, rng, k_transposed=k_transposed),
                            "fp32", tmp_path)
    assert "Transpose" not in [step["op"] for step in launches]
    # K [B, T, H, D] runs along d: its tiles staged d-fastest into padded rows (BC + 1)
    assert (f"const int d = e % {shape[4]}, c = e / {shape[4]};" in source) == k_transposed
    compile_cleanly(source, arch)


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("warps", [4, 1])
@pytest.mark.parametrize("project", [False, True])
@pytest.mark.parametrize("shape", [HEAD_MMA_SHAPES[0], (1, 2, 7, 70, 128, 128, 0.088)],
                         ids=["d24_e17", "d128"])
def test_nvrtc_compiles_the_tensor_core_attention_over_folded_heads(
        shape: tuple, project: bool, warps: int, precision: str, arch: str,  # type: ignore[type-arg]
        tmp_path: Path, rng: np.random.Generator) -> None:
    """Float32 operands (model inputs) and 16-bit ones (`project`: GEMM outputs)."""
    source, launches = emit(head_attention_model(*shape, rng, project=project), precision,
                            tmp_path, mma_warps(warps))
    attention = [step for step in launches if step["op"] == "pyc.Attention"]
    assert [step["block"] for step in attention] == [[32 * warps, 1, 1]]
    assert "Transpose" not in [step["op"] for step in launches]
    compiled = compile_cleanly(source, arch)
    assert "mma.sync.aligned.m16n8k16" in compiled.ptx and "ldmatrix" in compiled.ptx


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("precision, warps", [("fp32", 0), ("fp16", 0), ("fp16", 4), ("bf16", 1)])
def test_nvrtc_compiles_the_attention_over_one_projection(precision: str, warps: int, arch: str,
                                                          tmp_path: Path,
                                                          rng: np.random.Generator) -> None:
    """Q, K, V as the three parts of one GEMM's result (offsets into one buffer): the float32
    kernel, and (warps) the tensor-core one."""
    model = head_attention_model(*SELF_SHAPES[0], rng, self_attention=True)
    source, launches = emit(model, precision, tmp_path, mma_warps(warps) if warps else None)
    assert [step["op"] for step in launches] == ["MatMul", "pyc.Attention", "pyc.Copy"]
    compile_cleanly(source, arch)
