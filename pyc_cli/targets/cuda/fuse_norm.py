"""LayerNormalization into the tensor-core GEMM before it (the CUDA target's pass between kernel
selection and the 16-bit activations): where a MatMul run by cuda_matmul_mma or by the cp.async
Hopper GEMM cuda_matmul_wgmma (with its fused epilogue: bias, residual add...) is the only
producer and the LayerNormalization the only reader of a tensor, and the LayerNormalization
normalizes over that tensor's last axis (the GEMM's N) with constant scale and bias, the GEMM's
blocks still compute and store their tiles, and the last block of each row-block (an atomic
counter per row-block past the run's status word, as the K split counts tiles: cuda/ksplit.j2)
normalizes those rows in place (matmul_mma.cu.j2's `normalize`). One launch less per
LayerNormalization; at batch 1 every kernel is latency-bound, so each saves its launch and its
gap (docs/cuda.md, Fused LayerNormalization).

The pre-normalization tensor is never stored apart: it must have no other reader and not be a
model output (in a post-LN encoder it is the residual sum, read only by the LayerNormalization);
the LayerNormalization's Mean and InvStdDev outputs must be absent. The CPU target keeps its
separate kernel. Each fusion, and each near miss of a cuda_matmul_mma GEMM, is logged."""

from __future__ import annotations

from ...ir.graph import Graph, Node
from ...ir.types import DType
from ...ops import registry
from ...passes.context import PassContext

NAME = "fuse_layernorm"
# the GEMMs whose template renders `normalize` (matmul_mma.cu.j2's store: the mma.sync GEMM and
# the cp.async Hopper GEMM; not the TMA one, whose persistent blocks take several tiles each)
FUSABLE_GEMMS = ("cuda_matmul_mma", "cuda_matmul_wgmma")
# Off: measured on an H100 (7 Dec 2026, benchmarks/cuda_layernorm_fusion.py) the fused fp16
# encoder at batch 1 took 0.409 ms against 0.335 unfused (34 launches against 46: the last
# block's normalization on the critical path and the fused GEMMs' registers cost more than the
# launches saved). Tests and the benchmark set it to FUSABLE_GEMMS.
GEMM_KERNELS: tuple[str, ...] = ()
NORM_KERNEL = "cuda_layernorm_block"


def fuse_layernorm(graph: Graph, ctx: PassContext) -> Graph:
    for node in list(graph.nodes):
        if node.op == "MatMul" and node.ann.kernel_name in GEMM_KERNELS and not node.ann.norm_from:
            _absorb_norm(graph, node, ctx)
    return graph


def _why_not(graph: Graph, gemm: Node, norm: Node) -> str:
    """Why `norm` cannot be fused into `gemm` ("" when it can)."""
    out = gemm.outputs[0]
    if norm.inputs[0] != out or out in norm.inputs[1:]:
        return f"{out!r} is not only the LayerNormalization's input X"
    if any(norm.outputs[1:]):
        return "the LayerNormalization's Mean / InvStdDev outputs are used"
    if norm.ann.kernel_name != NORM_KERNEL:
        return f"the LayerNormalization runs {norm.ann.kernel_name or 'no kernel'}"
    rank = graph.types[out].rank
    axis = norm.int_attr("axis", -1)
    if (axis + rank if axis < 0 else axis) != rank - 1:
        return f"it normalizes over axis {axis}, not the GEMM's columns (the last axis)"
    operands = [v for v in norm.inputs[1:3] if v]
    late = [v for v in operands if v not in graph.constants]
    if late:
        return f"its scale / bias {late[0]!r} is not a constant"
    if graph.types[norm.outputs[0]].dtype is not DType.F32 or \
            graph.types[norm.outputs[0]].shape != graph.types[out].shape:
        return "its output is not the GEMM's float32 shape"
    return ""


def _absorb_norm(graph: Graph, gemm: Node, ctx: PassContext) -> None:
    out = gemm.outputs[0]
    users = graph.consumers().get(out, [])
    if len({u.name for u in users}) != 1 or users[0].op != "LayerNormalization":
        return
    norm = users[0]
    if out in graph.outputs:
        why = f"{out!r} is a model output (the pre-normalization values must be kept)"
    else:
        why = _why_not(graph, gemm, norm)
    if why:
        ctx.log(NAME, [gemm.name, norm.name], "skip_fuse_layernorm", why)
        return
    params = registry.get("LayerNormalization").kernel_params(norm, graph)
    own, extra, prologue = registry.fused_inputs(gemm)
    first = len(own)
    positions = []
    for value in [v for v in norm.inputs[1:3] if v]:
        positions.append(first + len(extra))
        extra.append(value)
    gemm.inputs = own + extra + prologue
    gemm.ann.epilogue_first_input = first
    gemm.ann.norm_from = norm.name
    gemm.ann.norm_inputs = positions
    gemm.ann.norm_epsilon = float(params["epsilon"])  # type: ignore[arg-type]
    gemm.outputs = [norm.outputs[0]]
    graph.nodes.remove(norm)
    graph.types.pop(out)
    ctx.log(NAME, [gemm.name, *gemm.ann.epilogue_from, norm.name], "fuse_layernorm",
            f"{gemm.name!r} ({gemm.ann.kernel_name}) stores its tiles, then the last block of "
            f"each row-block normalizes those rows over the {params['row']} columns: "
            "the pre-normalization tensor has no other reader, one launch less",
            before=2, after=1)
