"""The CUDA target's kernel candidates, per op (float32 compute, and at --precision tf32 / fp16 /
bf16 a tensor-core GEMM for MatMul, at fp16 / bf16 a tensor-core attention; see docs/cuda.md).

Each candidate names a template under codegen_templates/cuda/kernels/; `applies` keeps a
candidate to the element types and forms its template handles, so a node outside them has no
candidate and the build lists it with every other such node (PYC-E008). The launch geometry of
each call is computed in kernel_context.py from the same parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...ir.graph import Graph, Node
from ...ir.types import DType
from ..kernel import KernelCandidate, Tunable

# element types a CUDA kernel may read or write: these map to a plain C++ type (model.cu.j2's
# prelude); a model's own float16 / bfloat16 tensors (HALF_MODEL_TYPES) only the kernels of
# `half_types` take (cuda/half.cuh.j2's pyc_f16 / pyc_bf16: read as float, rounded when stored)
PLAIN_TYPES = frozenset({DType.F32, DType.F64, DType.I8, DType.I16, DType.I32, DType.I64,
                         DType.U8, DType.U16, DType.U32, DType.U64, DType.BOOL})
HALF_MODEL_TYPES = frozenset({DType.F16, DType.BF16})


def _computed(graph: Graph, value: str) -> DType:
    """A value's element type as kernels compute it (Graph.computed_type: float32 for an
    activation stored in 16 bits)."""
    return (graph.computed_type(value) or graph.types[value]).dtype


def plain_types(node: Node, graph: Graph) -> bool:
    """Every operand (fused ones included) has a plain C++ element type (or is a float32
    activation stored in 16 bits)."""
    from ...ops import registry

    own, epilogue, prologue = registry.fused_inputs(node)
    values = [v for v in (*own, *epilogue, *prologue, *node.outputs) if v]
    return all(_computed(graph, v) in PLAIN_TYPES for v in values)


def half_types(node: Node, graph: Graph) -> bool:
    """Every operand has a plain C++ element type or is a model's own float16 / bfloat16 tensor:
    the kernels that move elements (copies, strided copies, Concat, Gather, Pad) or compute
    them in float32 and round what they store (the elementwise programs: Cast both ways). The
    other ops compute float16 in float32 between casts (canonicalize: computes_f16_in_f32)."""
    from ...ops import registry

    own, epilogue, prologue = registry.fused_inputs(node)
    values = [v for v in (*own, *epilogue, *prologue, *node.outputs) if v]
    return all(_computed(graph, v) in PLAIN_TYPES | HALF_MODEL_TYPES for v in values)


def float32(node: Node, graph: Graph) -> bool:
    """The float32 kernels: input 0 and output 0 are float32, the rest plain or a model's own
    16-bit operand of a fused program (a float16 bias: the program loads it as a float and
    rounds its float16 results, program.j2); canonicalize casts every other float16 operand of
    these ops to float32."""
    return (_computed(graph, node.inputs[0]) is DType.F32
            and _computed(graph, node.outputs[0]) is DType.F32 and half_types(node, graph))


def _gemm_applies(node: Node, graph: Graph) -> bool:
    # no prologue: fuse gives one only where a kernel of this target takes it
    return float32(node, graph) and not node.ann.prologue


Params = dict[str, object]


def _matmul_coords(node: Node, graph: Graph, op: Params) -> Params:
    """The GEMM templates' output coordinates, which a fused epilogue indexes its operands by:
    batch dims b0.., then row i and column j (a 1-D operand drops its matrix dim)."""
    a_rank, b_rank = (graph.types[v].rank for v in node.inputs[:2])
    return {"out_coords": [f"b{d}" for d in range(len(op["batch"]))]  # type: ignore[arg-type]
            + (["i"] if a_rank > 1 else []) + (["j"] if b_rank > 1 else [])}


def _conv_coords(node: Node, graph: Graph, op: Params) -> Params:
    """conv_direct.cu.j2's output coordinates (n, oc, then the spatial ones the conv has)."""
    lift = 5 - graph.types[node.inputs[0]].rank
    return {"out_coords": ["n", "oc"] + ["od", "oh", "ow"][lift:]}


SKINNY_ROWS = 8  # the most rows of C (per batch) the skinny GEMM keeps in registers


def _skinny_applies(node: Node, graph: Graph) -> bool:
    from ...ops import registry

    rows = int(registry.get("MatMul").kernel_params(node, graph)["M"])  # type: ignore[call-overload]
    return _gemm_applies(node, graph) and rows <= SKINNY_ROWS


# compute precisions (--precision): fp32 is the model's own; the others run MatMul on tensor
# cores with inputs rounded to that type and float32 accumulation
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


def _mma_applies(node: Node, graph: Graph) -> bool:
    """Matrix by matrix (no 1-D operand) with more rows than the skinny GEMM takes, and every
    size within 32-bit indices (the tensor-core tile loaders index with int)."""
    from ...ops import registry

    if not _gemm_applies(node, graph) or min(graph.types[v].rank for v in node.inputs[:2]) < 2:
        return False
    params = registry.get("MatMul").kernel_params(node, graph)
    largest = max(graph.types[v].numel for v in (*node.inputs, *node.outputs) if v)
    return int(params["M"]) > SKINNY_ROWS and largest < 2**30  # type: ignore[call-overload]


def _mma_params(precision: str) -> Callable[[Node, Graph, Params], Params]:
    def params(node: Node, graph: Graph, op: Params) -> Params:
        return {**_matmul_coords(node, graph, op), "precision": precision}
    return params


MMA_TILES = (Tunable("tc_tile", (128, 64), "rows and columns of C per thread block of the "
                     "tensor-core GEMM (128 x 128 on 8 warps or 64 x 64 on 4; by default the "
                     "largest that gives enough blocks)"),
             Tunable("tc_min_blocks", (1, 2), "blocks of the tensor-core GEMM each "
                     "multiprocessor should hold at once (__launch_bounds__: 2 caps registers "
                     "so that two 128 x 128 blocks fit; by default 2 with 128-tiles, else 1)"),
             Tunable("tc_ksplit", (1, 2, 4, 8, 16), "blocks of the tensor-core GEMM along K, "
                     "their partial sums added by the last (by default enough for a block per "
                     "multiprocessor where the tiles are fewer and K is deep)"),
             Tunable("tc_stages", (3, 2), "slices of the 16-bit tensor-core GEMM in shared "
                     "memory where A and B are both stored in 16 bits (3: two in flight by "
                     "cp.async while one is multiplied; elsewhere 2)"))


def matmul_mma(precision: str) -> KernelCandidate:
    """The tensor-core GEMM at `precision` (mma.sync, cp.async double buffering): cheaper than
    the SIMT GEMMs wherever it applies."""
    def workspace(node: Node, graph: Graph) -> int:
        """The K split's partial sums (kernel_context.mma_gemm_geometry), within its cap."""
        from ...ops import registry
        from .kernel_context import conv_mma_workspace_cap, mma_gemm_geometry

        kernel = node.ann.kernel
        op = {**registry.get("MatMul").kernel_params(node, graph), "precision": precision,
              **(dict(kernel.params) if kernel is not None else {})}
        cap = conv_mma_workspace_cap(kernel.workspace_cap if kernel is not None else None)
        return mma_gemm_geometry(op, cap).workspace_bytes
    return KernelCandidate("cuda_matmul_mma", "matmul_mma.cu.j2", _mma_applies, cost_factor=0.25,
                           workspace=workspace, stores_once=True, tunables=MMA_TILES,
                           params=_mma_params(precision), takes_epilogue=True)


# the Hopper GEMM (wgmma, sm_90a) over mma.sync from this many 128 x 128 tiles of C (a
# 132-multiprocessor H100 / H200 holds one a multiprocessor: fewer leave it idle where the
# mma.sync GEMM's 64-tiles and K split fill it) and this depth. Measured on an H100 (7 Dec 2026,
# benchmarks/cuda_wgmma_check.sh): at 4096^3 / 8192^3 (1024 / 4096 such tiles) it runs 1.25-1.4x the
# mma.sync GEMM (1.13-1.8x on 16-bit activations); at 1024^3 (64 tiles) mma.sync is faster;
# sizes between are not measured yet
WGMMA_MIN_TILES = 128
WGMMA_MIN_K = 256
WGMMA_ARCHS = ("sm_90",)  # compiled for sm_90a (toolchain.compile_arch)
WGMMA_TUNABLES = (Tunable("tc_wgmma_stages", (4, 3), "shared-memory slices of the Hopper GEMM "
                          "(4: two copied ahead while one is multiplied and one still read by "
                          "the previous wgmmas, 129 KiB with 128-column tiles, one block a "
                          "multiprocessor; 3: one ahead, 97 KiB, two blocks where registers allow)"),
                  Tunable("tc_wgmma_n", (128, 256), "columns of C per block of the Hopper GEMM "
                          "(128 x 128 or 128 x 256 tiles: 64 or 128 accumulators a thread)"))


def _wgmma_scale(node: Node, graph: Graph) -> float:
    """Cheaper than the mma.sync GEMM where its tiles fill the GPU and K is deep; dearer below
    (a tuning database may still name it there)."""
    from ...ops import registry
    from .kernel_context import wgmma_tiles

    params = registry.get("MatMul").kernel_params(node, graph)
    big = wgmma_tiles(params, 128) >= WGMMA_MIN_TILES and int(params["K"]) >= WGMMA_MIN_K  # type: ignore[call-overload]
    return 0.5 if big else 4.0


def matmul_wgmma(precision: str) -> KernelCandidate:
    """The Hopper GEMM at fp16 / bf16 (wgmma from 128-byte swizzled shared memory, cp.async
    pipeline of 3-4 slices), on sm_90 builds only; the fused epilogues of the mma.sync GEMM."""
    return KernelCandidate("cuda_matmul_wgmma", "matmul_wgmma.cu.j2", _mma_applies,
                           cost_factor=0.25, cost_scale=_wgmma_scale, stores_once=True,
                           tunables=WGMMA_TUNABLES, params=_mma_params(precision),
                           takes_epilogue=True)


WGMMA_TMA_TUNABLES = (Tunable("tc_wgmma_n", (256, 128), "columns of C per tile of the TMA "
                              "Hopper GEMM (128 x 256 or 128 x 128 tiles)"),
                     Tunable("tc_tma_stages", (3, 4, 5, 6, 2), "shared-memory slices of the "
                             "TMA Hopper GEMM's mbarrier pipeline (unforced: as many as fit, at "
                             "most 4; 3, the tuner's start, fits every tile and A)"),
                     Tunable("tc_tma_ctas", (132, 114), "blocks of the TMA Hopper GEMM's "
                             "persistent grid (one a multiprocessor: an H100 SXM / H200 has 132, "
                             "an H100 PCIe 114)"))


def _wgmma_tma_applies(node: Node, graph: Graph) -> bool:
    """The Hopper GEMM's cases whose operands TMA can read: K a multiple of 8 (16-byte rows of
    A, in 16 bits or float32), B not a model input (a constant, stored in 16 bits with rows
    padded to 8, or an activation of N a multiple of 8: the build refuses one that stays
    float32, PYC-E090), at most 3 batch dims."""
    from ...ops import registry

    if not _mma_applies(node, graph) or node.inputs[1] in graph.inputs:
        return False
    params = registry.get("MatMul").kernel_params(node, graph)
    rows_16 = node.inputs[1] in graph.constants or int(params["N"]) % 8 == 0  # type: ignore[call-overload]
    return int(params["K"]) % 8 == 0 and rows_16 and len(list(params["batch"])) <= 3  # type: ignore[call-overload, arg-type]


def _wgmma_tma_scale(node: Node, graph: Graph) -> float:
    """Cheaper than the cp.async Hopper GEMM where its 128 x 256 tiles give every block of the
    persistent grid one at least (measured on an H100, 7 Dec 2026, cuda_wgmma_check.sh: 1.5x
    it at 4096^3, 1.56x at 8192^3, 95% / 72% of cuBLAS on 16-bit activations); dearer where
    fewer tiles leave multiprocessors idle (sizes between are not timed: the cp.async GEMM or
    mma.sync keeps them)."""
    from ...ops import registry
    from .kernel_context import WGMMA_TMA_CTAS, wgmma_tiles

    params = registry.get("MatMul").kernel_params(node, graph)
    fills = wgmma_tiles(params, 256) >= WGMMA_TMA_CTAS
    return (0.7 if fills else 8.0) * _wgmma_scale(node, graph)


def matmul_wgmma_tma(precision: str) -> KernelCandidate:
    """The Hopper GEMM with TMA loads, an mbarrier producer / consumer pipeline (warp
    specialised, setmaxnreg) and a persistent grid (matmul_wgmma_tma.cu.j2):
    the default where its tiles fill the GPU (_wgmma_tma_scale), else a tuning database or a
    forced kernel picks it."""
    return KernelCandidate("cuda_matmul_wgmma_tma", "matmul_wgmma_tma.cu.j2", _wgmma_tma_applies,
                           cost_factor=0.25, cost_scale=_wgmma_tma_scale,
                           stores_once=True, tunables=WGMMA_TMA_TUNABLES,
                           params=_mma_params(precision), takes_epilogue=True)


def _conv_params(node: Node, graph: Graph) -> dict[str, object]:
    from ...ops import registry

    return registry.get("Conv").kernel_params(node, graph)


def _conv_weight_readers_ok(node: Node, graph: Graph) -> bool:
    """The weight is a float32 constant that every reader reads as a Conv's weight (input 1),
    so it can be stored once, converted to 16 bits."""
    weight = node.inputs[1]
    if weight not in graph.constants or graph.types[weight].dtype is not DType.F32:
        return False
    return all(n.op == "Conv" and weight not in (*n.inputs[:1], *n.inputs[2:])
               for n in graph.nodes if weight in n.inputs)


def _conv_mma_applies(node: Node, graph: Graph) -> bool:
    """A float32 conv of one group with a constant weight only convs read (the tensor cores
    read it in 16 bits), every size within 32-bit indices."""
    if not _gemm_applies(node, graph) or not _conv_weight_readers_ok(node, graph):
        return False
    largest = max(graph.types[v].numel for v in (*node.inputs, *node.outputs) if v)
    return int(_conv_params(node, graph)["G"]) == 1 and largest < 2**30  # type: ignore[call-overload]


def _conv_tiled_applies(node: Node, graph: Graph) -> bool:
    """A float32 conv of one group, every size within 32-bit indices."""
    if not _gemm_applies(node, graph):
        return False
    largest = max(graph.types[v].numel for v in (*node.inputs, *node.outputs) if v)
    return int(_conv_params(node, graph)["G"]) == 1 and largest < 2**30  # type: ignore[call-overload]


DEPTHWISE_MAX_TAPS = 81  # the most window taps (9 x 9) the depthwise kernel keeps in registers


def _depthwise_applies(node: Node, graph: Graph) -> bool:
    """A float32 conv whose groups each read one input channel (depthwise, any channel
    multiplier), of at most DEPTHWISE_MAX_TAPS taps, every size within 32-bit indices."""
    if not _gemm_applies(node, graph):
        return False
    p = _conv_params(node, graph)
    taps = int(p["KD"]) * int(p["KH"]) * int(p["KW"])  # type: ignore[call-overload]
    largest = max(graph.types[v].numel for v in (*node.inputs, *node.outputs) if v)
    return int(p["CG"]) == 1 and taps <= DEPTHWISE_MAX_TAPS and largest < 2**30  # type: ignore[call-overload]


# preferred to the direct conv where it applies (weights in registers, planes per block)
CONV_DEPTHWISE = KernelCandidate("cuda_conv_depthwise", "conv_depthwise.cu.j2", _depthwise_applies,
                                 cost_factor=0.5, stores_once=True, params=_conv_coords,
                                 takes_epilogue=True)


CONV_MMA_TILES = (Tunable("conv_tile", (128, 64, 32), "output channels x pixels per block of "
                          "the tensor-core conv (128 x 128 on 8 warps, 64 x 64 or 64 x 32 on 4; "
                          "by default the largest that gives a block per multiprocessor)"),
                  Tunable("conv_split", (1, 2, 4), "groups of warps of a 64-row tensor-core conv "
                          "block that share each 64-deep slice (by default 2 for deep convs of "
                          "too few blocks to fill the GPU, else 1: 32-deep slices)"),
                  Tunable("conv_ksplit", (1, 2, 4, 8, 16), "blocks of the tensor-core conv "
                          "along K, their partial sums added by the last (by default enough for "
                          "a block per multiprocessor where the tiles are fewer and K is deep)"),
                  Tunable("conv_stages", (3, 4, 2), "slices of the fp16 / bf16 tensor-core conv "
                          "in shared memory where it gathers 4 columns a thread (not pointwise): "
                          "3 or 4, the im2col slice by cp.async (4-byte copies, zero-filled) with "
                          "the weight's, STAGES - 1 in flight while one is multiplied; 2, the "
                          "im2col slice gathered through registers (fewer where the shared "
                          "memory would pass 163 KiB)"))


def _conv_mma_op(node: Node, graph: Graph) -> Params:
    """The Conv's kernel_params with the parameters chosen for its kernel (tuned or default)."""
    kernel = node.ann.kernel
    return {**_conv_params(node, graph), **(dict(kernel.params) if kernel is not None else {})}


def conv_mma(precision: str) -> KernelCandidate:
    """The implicit-GEMM conv on tensor cores (the im2col gather on the fly): at fp16 / bf16
    weights stored in 16 bits, at tf32 read as stored (any float32 weight); cheaper than the
    float32 convs wherever it applies."""
    tf32 = precision == "tf32"

    def params(node: Node, graph: Graph, op: Params) -> Params:
        return {**_conv_coords(node, graph, op), "precision": precision}

    def workspace(node: Node, graph: Graph) -> int:
        """The K split's partial sums (kernel_context.conv_mma_geometry), within its cap."""
        from .kernel_context import conv_mma_geometry, conv_mma_workspace_cap

        kernel = node.ann.kernel
        cap = conv_mma_workspace_cap(kernel.workspace_cap if kernel is not None else None)
        return conv_mma_geometry(_conv_mma_op(node, graph), cap, tf32).workspace_bytes

    def why(node: Node, graph: Graph) -> str:
        """The decision log's word on how B is staged (kernel_context.conv_mma_pipeline)."""
        from .kernel_context import conv_mma_geometry, conv_mma_pipeline

        op = _conv_mma_op(node, graph)
        geo = conv_mma_geometry(op, None, tf32)
        pipe = conv_mma_pipeline(op, geo, tf32)
        if pipe.async_b:
            fewer = f" ({pipe.asked} asked: the shared memory)" if pipe.asked != pipe.stages else ""
            return (f"conv_stages {pipe.stages}{fewer}: the im2col slices by cp.async, "
                    f"{pipe.stages - 1} in flight ({pipe.shared_bytes} bytes of shared memory)")
        how = "tf32: both slices by cp.async" if tf32 else (
            "pointwise: 4 columns a row" if pipe.vec_b else "a column a thread")
        return f"conv_stages 2: double-buffered slices ({how})"
    return KernelCandidate("cuda_conv_mma", "conv_mma.cu.j2",
                           _conv_tiled_applies if tf32 else _conv_mma_applies, cost_factor=0.25,
                           workspace=workspace, stores_once=True, tunables=CONV_MMA_TILES,
                           params=params, takes_epilogue=True, why=why)


def _pool_applies(node: Node, graph: Graph) -> bool:
    """Max and average pools of float32 without MaxPool's Indices output."""
    return float32(node, graph) and not (len(node.outputs) > 1 and node.outputs[1])


def _softmax_applies(node: Node, graph: Graph) -> bool:
    return float32(node, graph) and node.op in ("Softmax", "LogSoftmax")


# reducers with a single accumulator (ReduceLogSumExp needs a second pass over a workspace)
SINGLE_PASS_REDUCERS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                        "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum")

GEMM_TILES = (Tunable("tile_m", (64, 32, 8), "rows of C per thread block (64 x 64, 32 x 32 or "
                      "8 x 128 tiles; by default the largest that gives enough blocks)"),)
MATMUL_TILED = KernelCandidate("cuda_matmul_tiled", "matmul_tiled.cu.j2", _gemm_applies,
                               cost_factor=1.0, stores_once=True, tunables=GEMM_TILES,
                               params=_matmul_coords, takes_epilogue=True)
# preferred where it applies: a tiled GEMM of few rows idles most of its threads
MATMUL_SKINNY = KernelCandidate("cuda_matmul_skinny", "matmul_skinny.cu.j2", _skinny_applies,
                                cost_factor=0.5, stores_once=True, params=_matmul_coords,
                                takes_epilogue=True)
ELEMENTWISE = KernelCandidate("cuda_elementwise", "elementwise.cu.j2", half_types)
STRIDED_COPY = KernelCandidate("cuda_strided_copy", "strided_copy.cu.j2", half_types)
# softmax and layernorm read a row whole (block reductions, behind barriers) before any thread
# writes it, and each thread then writes only the elements it reads: they may work in place
SOFTMAX = KernelCandidate("cuda_softmax_block", "softmax.cu.j2", _softmax_applies, inplace_input=0)
REDUCE = KernelCandidate("cuda_reduce_block", "reduce.cu.j2", float32)


ATTENTION_MAX_HEAD = 128  # the widest Q / K rows and V rows the attention kernel stages


def _attention_applies(node: Node, graph: Graph) -> bool:
    """float32 heads of at most ATTENTION_MAX_HEAD (Q's rows, the Kt / V tile and the tile's
    probabilities fit 48 KiB of shared memory), every size within 32-bit indices."""
    from ...ops import registry

    op = registry.get("pyc.Attention").kernel_params(node, graph)
    largest = max(graph.types[v].numel for v in (*node.inputs, *node.outputs) if v)
    return (float32(node, graph) and max(int(op["D"]), int(op["E"])) <= ATTENTION_MAX_HEAD  # type: ignore[call-overload]
            and largest < 2**30)


def _attention_coords(node: Node, graph: Graph, op: Params) -> Params:
    """The score program's coordinates (batch dims b0.., query row i, key j), over the scores'
    shape [..., S, T]."""
    batch = list(op["batch"])  # type: ignore[call-overload]
    return {"out_coords": [f"b{d}" for d in range(len(batch))] + ["i", "j"],
            "epilogue_shape": [*batch, op["S"], op["T"]]}


def _attention_dims_applies(node: Node, graph: Graph) -> bool:
    """pyc.Attention over sizes known at run time (batch dims, query rows S, keys T) whose
    heads D, E are static and fit as in a static build (their upper bounds within 32-bit
    indices)."""
    from ...ir.symbolic import Dim
    from ...ops import registry

    op = registry.get("pyc.Attention").kernel_params(node, graph)
    return (node_has_dims(node, graph) and not isinstance(op["D"], Dim)
            and not isinstance(op["E"], Dim) and _attention_applies(node, graph))


# a float32 attention block's query rows: a warp's share (BR / 4) is what it computes serially
# per key tile, so fewer rows a block give small problems more warps at once (a batch-1 MiniLM
# layer: 96 blocks of 16 rows, one a multiprocessor)
ATTENTION_ROWS = (Tunable("attn_rows", (32, 16, 8, 4), "query rows of a float32 attention "
                          "block of 4 warps (by default 32, or 16 where 32-row blocks would "
                          "number under 256)"),)
# flash-style: the score matrix stays in the block (registers and shared memory)
ATTENTION = KernelCandidate("cuda_attention_flash", "attention.cu.j2", _attention_applies,
                            tunables=ATTENTION_ROWS, params=_attention_coords)
# ... over sizes known at run time: blocks for the upper bounds, those past the run's exit
ATTENTION_DIMS = KernelCandidate("cuda_attention_flash_dims", "attention.cu.j2",
                                 _attention_dims_applies, params=_attention_coords,
                                 symbolic_dims=True)
ATTENTION_WARPS = (Tunable("attn_warps", (4, 2, 1), "warps of a tensor-core attention block, "
                           "16 query rows each (by default 4, fewer where 4-warp blocks would "
                           "number under 128)"),)


# below this many keys the tensor-core attention lost to the float32 one on an H100
# (benchmarks/results/cuda-attention-h100.json: MiniLM's 128 keys 0.021 vs 0.014 ms; BERT's 512
# and 2048 keys 2.4x and 2.3x faster than unfused, 3.0x and 3.5x the float32 kernel)
ATTENTION_MMA_MIN_KEYS = 256


def _attention_mma_scale(node: Node, graph: Graph) -> float:
    """The tensor-core attention's cost estimate is scaled past the float32 kernel's below
    ATTENTION_MMA_MIN_KEYS keys (it still applies: a tuning database may choose it)."""
    from ...ops import registry

    keys = int(registry.get("pyc.Attention").kernel_params(node, graph)["T"])  # type: ignore[call-overload]
    return 1.0 if keys >= ATTENTION_MMA_MIN_KEYS else 8.0


def attention_mma(precision: str, run_time_sizes: bool = False) -> KernelCandidate:
    """The tensor-core attention at fp16 / bf16 (mma.sync m16n8k16): preferred to the float32
    one wherever both apply (from ATTENTION_MMA_MIN_KEYS keys); with `run_time_sizes`, its
    variant over sizes known at run time (as ATTENTION_DIMS is the float32 one's)."""
    def params(node: Node, graph: Graph, op: Params) -> Params:
        return {**_attention_coords(node, graph, op), "precision": precision}
    if run_time_sizes:
        return KernelCandidate("cuda_attention_mma_dims", "attention_mma.cu.j2",
                               _attention_dims_applies, cost_factor=0.25,
                               cost_scale=_attention_mma_scale, params=params, symbolic_dims=True)
    return KernelCandidate("cuda_attention_mma", "attention_mma.cu.j2", _attention_applies,
                           cost_factor=0.25, cost_scale=_attention_mma_scale,
                           tunables=ATTENTION_WARPS, params=params)


# preferred to the direct conv where it applies: each input element a block stages serves BM
# output channels, each weight BN pixels (the direct conv reads both per product)
CONV_TILED = KernelCandidate("cuda_conv_tiled", "conv_tiled.cu.j2", _conv_tiled_applies,
                             cost_factor=0.5, stores_once=True, tunables=GEMM_TILES,
                             params=_conv_coords, takes_epilogue=True)


def _concat_skips(node: Node, graph: Graph, op: dict[str, object]) -> dict[str, object]:
    """Inputs the memory plan already placed in their slice of the output need no copy."""
    return {"skip": list(node.ann.inplace_inputs)}


def _if_select_applies(node: Node, graph: Graph) -> bool:
    """A run-time If whose branches give each output its type (the element count at least:
    a scalar against `[1]`); branches of different sizes (a dim the If computes) have no CUDA
    kernel."""
    from ...ops.control_flow import branch_outputs

    count = branch_outputs(node)
    sizes = [(graph.types[node.inputs[1 + i]].numel, graph.types[out].numel,
              graph.types[node.inputs[1 + count + i]].numel)
             for i, out in enumerate(node.outputs) if out]
    return all(isinstance(n, int) for trio in sizes for n in trio) and \
        all(len(set(trio)) == 1 for trio in sizes)


def _if_select_copies(node: Node, graph: Graph, op: dict[str, object]) -> dict[str, object]:
    """if_select.cu.j2's copies: (output index, its parameter, elements) of each output used."""
    used = [(i, out) for i, out in enumerate(node.outputs) if out]
    return {"copies": [(i, f"Y{k if k else ''}", graph.types[out].numel)
                       for k, (i, out) in enumerate(used)],
            "largest": max([graph.types[out].numel for _, out in used] + [1])}


def _pad_applies(node: Node, graph: Graph) -> bool:
    """Pads known at build time, rank 1 or more; edge / reflect / wrap of a non-empty input."""
    from ...ops import registry

    if not half_types(node, graph) or graph.types[node.inputs[0]].rank < 1:
        return False
    p = registry.get("Pad").kernel_params(node, graph)
    return p["begin"] is not None and (p["mode"] == "constant" or 0 not in list(p["in_dims"]))  # type: ignore[call-overload]


PAD = KernelCandidate("cuda_pad", "pad.cu.j2", _pad_applies)


def _instancenorm_applies(node: Node, graph: Graph) -> bool:
    """float32 (the block reductions sum floats), rows of some elements."""
    return float32(node, graph) and graph.types[node.inputs[0]].numel > 0


def _resize_applies(node: Node, graph: Graph) -> bool:
    """The CPU kernel's compile-time tables exist (static sizes, scales and sizes constants),
    plain element types, rank 1 or more."""
    from ...ops import registry

    return (plain_types(node, graph) and graph.types[node.outputs[0]].rank >= 1
            and bool(registry.get(node.op).static_tables(node, graph)))  # type: ignore[attr-defined]


# the longest row the TopK kernel sorts in a thread's own index array (16 KiB of local memory)
TOPK_MAX_ROW = 4096


def _topk_applies(node: Node, graph: Graph) -> bool:
    """Static sizes (K a constant), rows of 1 to TOPK_MAX_ROW elements, plain types."""
    from ...ir.symbolic import has_dims
    from ...ops import registry

    if not plain_types(node, graph) or any(has_dims(graph.types[v].shape)
                                           for v in (*node.inputs, *node.outputs) if v):
        return False
    p = registry.get("TopK").kernel_params(node, graph)
    return 0 < int(p["row"]) <= TOPK_MAX_ROW  # type: ignore[call-overload]


# the most bytes of state (h, c, aux, gate sums) a recurrent block keeps in static shared memory
RECURRENT_SHARED_BYTES = 48 * 1024


def _recurrent_applies(node: Node, graph: Graph) -> bool:
    """W and R transposed by canonicalize (as the CPU kernel reads them), plain types, the
    row's state within RECURRENT_SHARED_BYTES."""
    from ...ops import registry

    if not node.attrs.get("weights_transposed") or not plain_types(node, graph):
        return False
    p = registry.get(node.op).kernel_params(node, graph)
    itemsize = graph.types[node.outputs[0] or node.inputs[0]].dtype.itemsize
    return (3 + int(p["G"])) * int(p["H"]) * itemsize <= RECURRENT_SHARED_BYTES  # type: ignore[call-overload]


ARGREDUCE = KernelCandidate("cuda_argreduce", "argreduce.cu.j2", plain_types)
RECURRENT = KernelCandidate("cuda_recurrent_block", "recurrent.cu.j2", _recurrent_applies)
TOPK = KernelCandidate("cuda_topk_rows", "topk.cu.j2", _topk_applies)
RESIZE = KernelCandidate("cuda_resize", "resize.cu.j2", _resize_applies)
INSTANCENORM = KernelCandidate("cuda_instancenorm_block", "instancenorm.cu.j2", _instancenorm_applies)


# ---------------------------------------------------------------- the generic kernel

# The CPU target's kernel body (codegen_templates/c/kernels/) each op without a parallel CUDA
# kernel for every node runs through the generic kernel (cuda/kernels/generic.cu.j2): one CUDA
# thread runs the body as a __device__ function. Named CPU candidates, chosen for their
# portable C (no vector types or intrinsics, static shapes: no run-time dims, which the CUDA
# target does not have); their own applicability still holds, except where it is about the CPU
# only (GENERIC_ANY_NODE: the naive MatMul stands aside on the CPU for a B packed at build
# time; the CUDA target packs none). Where the op's CUDA kernels take a fused epilogue (MatMul,
# Conv), the CPU body named takes it too (fuse only fuses where every candidate does).
GENERIC_BODIES = {
    "MatMul": "matmul_naive", "Conv": "conv2d_direct",
    **{op: "argreduce_rows" for op in ("ArgMax", "ArgMin")},
    "ConvTranspose": "conv_transpose2d_direct",
    **{op: "cumulative_rows" for op in ("CumSum", "CumProd")},
    "GatherElements": "gather_elements", "GatherND": "gather_nd",
    "ScatterElements": "scatter_elements", "ScatterND": "scatter_nd",
    **{op: "softmax_rows" for op in ("Softmax", "LogSoftmax", "Hardmax")},
    "InstanceNormalization": "instancenorm_rows", "LRN": "lrn_channels",
    "Pad": "pad_gather", "TopK": "topk_insertion",
    **{op: "reduce_strided" for op in (*SINGLE_PASS_REDUCERS, "ReduceLogSumExp")},
    **{op: "resize_tables" for op in ("Resize", "Upsample")},
    **{op: "recurrent_rows" for op in ("LSTM", "GRU", "RNN")},
    **{op: "pool_direct" for op in ("MaxPool", "AveragePool")},
    "LayerNormalization": "layernorm_rows",
}
GENERIC_ANY_NODE = frozenset({"matmul_naive"})
# the CPU bodies that only move elements (assignments of a pyc_f16 / pyc_bf16 to another): the
# generic kernel runs them on a model's own float16 tensors too (the others' ops compute
# float16 in float32 between casts, canonicalize)
GENERIC_HALF_BODIES = frozenset({"gather_elements", "gather_nd", "scatter_elements",
                                 "scatter_nd", "pad_gather"})
GENERIC = "cuda_generic"
# the generic kernel's cost: above every CUDA kernel's for the same node (it runs on one
# thread), whatever the op's flop count (an empty one's is 0)
GENERIC_COST = 1e9


@dataclass(frozen=True)
class GenericCandidate(KernelCandidate):
    """The generic kernel over one CPU candidate (`cpu`): applies where it does, to plain
    element types, without a fused prologue, with a fused epilogue only where the CPU body takes
    one; costs more than any CUDA kernel."""

    cpu: KernelCandidate | None = None

    def cost(self, node: Node, graph: Graph) -> float:
        from ...ops import registry

        return GENERIC_COST * (1.0 + registry.get(node.op).flops(node, graph))


def cpu_body_params(cpu: KernelCandidate) -> Callable[[Node, Graph, Params], Params]:
    """The parameters of a generic kernel running `cpu`'s body: the CPU kernel's own, and which
    template and kernel that is."""
    def params(node: Node, graph: Graph, op_params: Params) -> Params:
        return {**cpu.template_params(node, graph, op_params), "cpu_template": cpu.template,
                "cpu_kernel": cpu.name, "restrict_pointers": cpu.restrict_pointers}
    return params


def generic(op: str) -> GenericCandidate:
    """The generic kernel of `op` (GENERIC_BODIES names the CPU candidate whose body it runs)."""
    from ..cpu.kernels import STATIC_KERNELS

    cpu = next(c for c in STATIC_KERNELS[op] if c.name == GENERIC_BODIES[op])

    types = half_types if cpu.name in GENERIC_HALF_BODIES else plain_types

    def applies(node: Node, graph: Graph) -> bool:
        return ((cpu.name in GENERIC_ANY_NODE or cpu.is_applicable(node, graph))
                and types(node, graph) and not node.ann.prologue
                and (cpu.takes_epilogue or not node.ann.epilogue))

    def why(node: Node, graph: Graph) -> str:
        return (f"no parallel CUDA kernel of {node.op} applies here: the generic kernel runs "
                f"the CPU target's {cpu.name} on one GPU thread")

    return GenericCandidate(GENERIC, "generic.cu.j2", applies, workspace=cpu.workspace,
                            takes_epilogue=cpu.takes_epilogue,
                            workspace_fixed=cpu.workspace_fixed, params=cpu_body_params(cpu), why=why,
                            cpu=cpu)


def _each(ops: tuple[str, ...], *candidates: KernelCandidate) -> dict[str, tuple[KernelCandidate, ...]]:
    return {op: candidates for op in ops}


# ---------------------------------------------------------------- run-time sizes (issue #14, #15)

# The CPU target's kernels that read the model's run-time dims (symbolic input dims, sizes a
# node computes during the run: NonZero's count, Range to an input's value, TopK with K from a
# tensor, ...), run by the generic kernel as it runs GENERIC_BODIES, with the dims array in
# device memory (the model's dims region: target.py, after the status words). Those that write
# a dim (writes_dims) store it there, and every later kernel reads it. Only CPU candidates of
# portable C are named (no packed weights, no vector intrinsics).
GENERIC_DIMS_BODIES = frozenset({
    "nonzero_count", "range_dims", "range_runtime", "slice_runtime", "strided_copy_dims",
    "pad_runtime", "tile_runtime", "split_runtime", "topk_rows_dims", "topk_runtime",
    "topk_axis_dims", "topk_axis_runtime", "concat_blocks_dims", "gather_rows_dims",
    "gather_elements_dims", "dim_values", "memcpy_dims", "elementwise_loop_dims",
    "reduce_strided_dims", "softmax_rows_dims", "layernorm_rows_dims", "argreduce_rows_dims",
    "matmul_naive_dims", "resize_runtime", "if_select_dims", "if_select_sizes"})
GENERIC_DIMS_PREFIX = "cuda_generic_"


def node_has_dims(node: Node, graph: Graph) -> bool:
    """A shape of the node's inputs or outputs holds a symbolic (or computed) dim."""
    from ...ir.symbolic import has_dims

    return any(has_dims(graph.types[v].shape) for v in (*node.inputs, *node.outputs)
               if v and v in graph.types)


def generic_dims(cpu: KernelCandidate, any_node: bool) -> GenericCandidate:
    """The generic kernel over `cpu`, a CPU kernel that reads (and, writes_dims, writes) the
    run-time dims: named cuda_generic_<cpu's name>. It applies where `cpu` does, to plain
    element types, and only to a node whose shapes hold a dim unless `any_node` (an op with no
    other CUDA kernel: pyc.DimValues), so static nodes keep their kernels."""
    def applies(node: Node, graph: Graph) -> bool:
        return ((any_node or node_has_dims(node, graph)) and cpu.is_applicable(node, graph)
                and plain_types(node, graph) and not node.ann.prologue
                and (cpu.takes_epilogue or not node.ann.epilogue))

    def why(node: Node, graph: Graph) -> str:
        verb = "computes and writes" if cpu.writes_dims else "reads"
        return (f"{verb} sizes known at run time only (the dims in device memory): the generic "
                f"kernel runs the CPU target's {cpu.name} on one GPU thread")

    return GenericCandidate(GENERIC_DIMS_PREFIX + cpu.name, "generic.cu.j2", applies,
                            workspace=cpu.workspace, takes_epilogue=cpu.takes_epilogue,
                            workspace_fixed=cpu.workspace_fixed, params=cpu_body_params(cpu), why=why,
                            symbolic_dims=True, writes_dims=cpu.writes_dims, cpu=cpu)


def graph_numel(node: Node, graph: Graph) -> int:
    """The most elements (upper bounds) of any of the node's values."""
    return max(int(graph.types[v].numel) for v in (*node.inputs, *node.outputs) if v)


def _elementwise_dims_applies(node: Node, graph: Graph) -> bool:
    """A fused elementwise program over run-time sizes, plain types or a model's own float16 /
    bfloat16 tensors (as the static kernel: Cast both ways), every size within 32-bit
    indices, and no size computed earlier in the run that the kernel must check against the
    output's (the CPU body's run_checks: the generic kernel takes those)."""
    from ...ir.symbolic import Dim, known_at_entry

    if not node_has_dims(node, graph) or not half_types(node, graph):
        return False
    out = graph.types[node.outputs[0]].shape
    late = any(isinstance(d, Dim) and d != o and not known_at_entry([d])
               for v in node.inputs for d, o in zip(reversed(graph.types[v].shape), reversed(out)))
    return not late and graph_numel(node, graph) < 2**30


def _strided_dims_applies(node: Node, graph: Graph) -> bool:
    """Transpose, or Slice with constant ranges, over run-time sizes (the CPU's
    strided_copy_dims applies), plain or 16-bit elements moved as they are."""
    from ..cpu import kernels as cpu

    return (node_has_dims(node, graph) and cpu.STRIDED_COPY_DIMS.is_applicable(node, graph)
            and half_types(node, graph) and graph_numel(node, graph) < 2**30)


def _strided_dims_params(node: Node, graph: Graph, op: Params) -> Params:
    """The CPU kernel's loop bounds, first element and input index over the dims (C)."""
    from ..cpu import kernels as cpu

    return cpu.STRIDED_COPY_DIMS.template_params(node, graph, op)


# one thread per element over a grid sized for the upper bounds: threads past the run's sizes
# exit at once (the loop bounds are read from the dims in device memory)
ELEMENTWISE_DIMS = KernelCandidate("cuda_elementwise_dims", "elementwise.cu.j2",
                                   _elementwise_dims_applies, symbolic_dims=True)
COPY_RUN_TIME = KernelCandidate("cuda_copy_dims", "copy.cu.j2",
                                lambda n, g: node_has_dims(n, g) and half_types(n, g)
                                and graph_numel(n, g) < 2**30, symbolic_dims=True)
STRIDED_COPY_RUN_TIME = KernelCandidate("cuda_strided_copy_dims", "strided_copy.cu.j2",
                                        _strided_dims_applies, params=_strided_dims_params,
                                        symbolic_dims=True)


def _rows_dims_applies(node: Node, graph: Graph) -> bool:
    """Softmax / LogSoftmax or LayerNormalization over sizes known at run time (the row count,
    the row's length, the elements after it), float32."""
    return (node_has_dims(node, graph) and float32(node, graph)
            and node.op in ("Softmax", "LogSoftmax", "LayerNormalization")
            and graph_numel(node, graph) < 2**30)


def _gemm_dims_applies(node: Node, graph: Graph) -> bool:
    """A float32 MatMul over sizes known at run time (batch extents, M, N, K, the batch strides
    and a batch dim broadcast at run time: any of them), every size within 32-bit indices: the
    tiled GEMM over a grid for the upper bounds, reading the sizes from the dims."""
    return (node_has_dims(node, graph) and _gemm_applies(node, graph)
            and graph_numel(node, graph) < 2**30)


def _mma_dims_applies(node: Node, graph: Graph) -> bool:
    """The tensor-core GEMM's forms (matrix by matrix) over sizes known at run time, any row
    count (the skinny GEMM has no run-time variant), every size within 32-bit indices."""
    return (_gemm_dims_applies(node, graph)
            and min(graph.types[v].rank for v in node.inputs[:2]) >= 2)


# the tensor-core GEMM over run-time sizes: no K split (its tile counters and workspace would
# be sized for the upper bounds; the grid already covers them)
MMA_DIMS_TILES = tuple(t for t in MMA_TILES if t.name != "tc_ksplit")


def matmul_mma_dims(precision: str) -> KernelCandidate:
    """matmul_mma.cu.j2 over sizes known at run time (cuda_matmul_mma_dims): its grid for the
    upper bounds, blocks past the run's rows, columns or batch exiting at once, every size
    that is a dim read from the dims; the static GEMM's fused epilogues, no K split and no
    fused LayerNormalization (fuse_norm takes cuda_matmul_mma only)."""
    return KernelCandidate("cuda_matmul_mma_dims", "matmul_mma.cu.j2", _mma_dims_applies,
                           cost_factor=0.25, stores_once=True, tunables=MMA_DIMS_TILES,
                           params=_mma_params(precision), takes_epilogue=True,
                           symbolic_dims=True)


def _reduce_dims_applies(node: Node, graph: Graph) -> bool:
    """A single-pass float32 reduction over sizes known at run time (within 32-bit indices)."""
    return (node_has_dims(node, graph) and float32(node, graph)
            and node.op in SINGLE_PASS_REDUCERS and graph_numel(node, graph) < 2**30)


def _gather_dims_applies(node: Node, graph: Graph) -> bool:
    """Gather over sizes known at run time whose rows (the data's elements after the axis) are
    static (the CPU's gather_rows_dims applies), any element type it moves."""
    from ..cpu import kernels as cpu

    return (node_has_dims(node, graph) and cpu._gather_dims(node, graph)
            and half_types(node, graph) and graph_numel(node, graph) < 2**30)


def _gather_dims_params(node: Node, graph: Graph, op: Params) -> Params:
    """The index count, outer count and axis size as C over the dims (the CPU's)."""
    from ..cpu import kernels as cpu

    return cpu._gather_count(node, graph, op)


def _concat_dims_applies(node: Node, graph: Graph) -> bool:
    """Concat over sizes known at run time (any of its dims), the element types it moves."""
    return (node_has_dims(node, graph) and half_types(node, graph)
            and graph_numel(node, graph) < 2**30)


CONCAT_DIMS = KernelCandidate("cuda_concat_dims", "concat.cu.j2", _concat_dims_applies,
                              params=_concat_skips, symbolic_dims=True)
GATHER_DIMS = KernelCandidate("cuda_gather_dims", "gather.cu.j2", _gather_dims_applies,
                              params=_gather_dims_params, symbolic_dims=True)
REDUCE_DIMS = KernelCandidate("cuda_reduce_block_dims", "reduce.cu.j2", _reduce_dims_applies,
                              symbolic_dims=True)
ROWS_DIMS_SOFTMAX = KernelCandidate("cuda_softmax_block_dims", "softmax.cu.j2", _rows_dims_applies,
                                    symbolic_dims=True)
ROWS_DIMS_LAYERNORM = KernelCandidate("cuda_layernorm_block_dims", "layernorm.cu.j2",
                                      _rows_dims_applies, symbolic_dims=True)
MATMUL_TILED_DIMS = KernelCandidate("cuda_matmul_tiled_dims", "matmul_tiled.cu.j2",
                                    _gemm_dims_applies, stores_once=True, tunables=GEMM_TILES,
                                    params=_matmul_coords, takes_epilogue=True,
                                    symbolic_dims=True)


def with_run_time_sizes(table: dict[str, tuple[KernelCandidate, ...]]
                        ) -> dict[str, tuple[KernelCandidate, ...]]:
    """`table` with the kernels that read run-time sizes: the parallel elementwise and strided
    copy, then the generic kernel over each CPU kernel of GENERIC_DIMS_BODIES. Where every CUDA
    kernel of an op takes a fused epilogue (MatMul, Conv), only such bodies are added, so that
    fusion (which asks whether every kernel takes one) decides as before."""
    from ..cpu.kernels import STATIC_KERNELS

    out = dict(table)
    out["pyc.Elementwise"] = (*out["pyc.Elementwise"], ELEMENTWISE_DIMS)
    out["pyc.Copy"] = (*out["pyc.Copy"], COPY_RUN_TIME)
    for op in ("Transpose", "Slice"):
        out[op] = (*out[op], STRIDED_COPY_RUN_TIME)
    for op in ("Softmax", "LogSoftmax"):
        out[op] = (*(c for c in out[op] if c.name != GENERIC), ROWS_DIMS_SOFTMAX,
                   *(c for c in out[op] if c.name == GENERIC))
    out["LayerNormalization"] = (*(c for c in out["LayerNormalization"] if c.name != GENERIC),
                                 ROWS_DIMS_LAYERNORM,
                                 *(c for c in out["LayerNormalization"] if c.name == GENERIC))
    out["Gather"] = (*out["Gather"], GATHER_DIMS)
    out["Concat"] = (*(c for c in out["Concat"] if c.name != GENERIC), CONCAT_DIMS,
                     *(c for c in out["Concat"] if c.name == GENERIC))
    out["pyc.Attention"] = (*out["pyc.Attention"], ATTENTION_DIMS)
    for op in SINGLE_PASS_REDUCERS:
        out[op] = (*(c for c in out[op] if c.name != GENERIC), REDUCE_DIMS,
                   *(c for c in out[op] if c.name == GENERIC))
    out["MatMul"] = (*(c for c in out["MatMul"] if c.name != GENERIC), MATMUL_TILED_DIMS,
                     *(c for c in out["MatMul"] if c.name == GENERIC))
    for op, candidates in sorted(STATIC_KERNELS.items()):
        found = out.get(op, ())
        epilogues = bool(found) and all(c.takes_epilogue for c in found)
        added = tuple(generic_dims(c, not found) for c in candidates
                      if c.symbolic_dims and c.name in GENERIC_DIMS_BODIES
                      and (c.takes_epilogue or not epilogues))
        if added:  # the generic kernel over the static body stays the last
            out[op] = (*(c for c in found if c.name != GENERIC), *added,
                       *(c for c in found if c.name == GENERIC))
    return out


CUDA_KERNELS: dict[str, tuple[KernelCandidate, ...]] = {
    "MatMul": (MATMUL_TILED, MATMUL_SKINNY),
    # no prologue: fuse gives one only where a kernel of the target takes it, and none here does
    "Conv": (KernelCandidate("cuda_conv_direct", "conv_direct.cu.j2", _gemm_applies,
                             params=_conv_coords, takes_epilogue=True), CONV_TILED, CONV_DEPTHWISE),
    **_each(("MaxPool", "AveragePool"), KernelCandidate("cuda_pool", "pool.cu.j2", _pool_applies)),
    "pyc.Elementwise": (ELEMENTWISE,),
    **_each(("Transpose", "Slice"), STRIDED_COPY),
    **_each(("Softmax", "LogSoftmax"), SOFTMAX),
    "LayerNormalization": (KernelCandidate("cuda_layernorm_block", "layernorm.cu.j2", float32,
                                           inplace_input=0),),
    **_each(SINGLE_PASS_REDUCERS, REDUCE),
    "Gather": (KernelCandidate("cuda_gather", "gather.cu.j2", half_types),),
    "Concat": (KernelCandidate("cuda_concat", "concat.cu.j2", half_types, params=_concat_skips),),
    "pyc.Copy": (KernelCandidate("cuda_copy", "copy.cu.j2", half_types),),
    "Pad": (PAD,),
    **_each(("ArgMax", "ArgMin"), ARGREDUCE),
    "InstanceNormalization": (INSTANCENORM,),
    **_each(("Resize", "Upsample"), RESIZE),
    "TopK": (TOPK,),
    **_each(("LSTM", "GRU", "RNN"), RECURRENT),
    "pyc.Attention": (ATTENTION,),
    # a run-time If (runtime/cuda.py decides on the host which branch's launches run): the
    # select copies the taken branch's operands on the device; the trap of a branch that
    # could not be compiled stops the run (PYC-E053)
    "pyc.If": (KernelCandidate("cuda_if_select", "if_select.cu.j2", _if_select_applies,
                               params=_if_select_copies),),
    "pyc.Unreachable": (KernelCandidate("cuda_unreachable", "unreachable.cu.j2"),),
}
# ... and the generic kernel last, for every op GENERIC_BODIES covers
CUDA_KERNELS.update({op: (*CUDA_KERNELS.get(op, ()), generic(op)) for op in GENERIC_BODIES})
# ... and, for nodes whose sizes are known at run time only, the kernels that read them
CUDA_KERNELS.update(with_run_time_sizes(CUDA_KERNELS))


# 16-bit activations (storage.py): the kernels that read a float32 activation operand (their
# own inputs, fused epilogue and prologue operands) stored in 16 bits, converting as they load
# (cuda/half.cuh.j2's pyc_f16 / pyc_bf16), and the outputs they can store so
HALF_READERS = frozenset({
    "cuda_elementwise", "cuda_strided_copy", "cuda_copy", "cuda_concat", "cuda_gather",
    "cuda_pool", "cuda_softmax_block", "cuda_layernorm_block", "cuda_reduce_block",
    "cuda_matmul_tiled", "cuda_matmul_skinny", "cuda_conv_direct", "cuda_conv_tiled",
    "cuda_conv_depthwise", "cuda_attention_flash", "cuda_attention_mma", "cuda_matmul_mma",
    "cuda_conv_mma", "cuda_matmul_wgmma", "cuda_matmul_wgmma_tma"})
# ... and write their output 0 in 16 bits (half_writes); other outputs (LayerNormalization's
# Mean and InvStdDev) stay float32 statistics
HALF_WRITERS = HALF_READERS


ATTENTION_KERNELS = ("cuda_attention_flash", "cuda_attention_mma")
DIMS_SUFFIX = "_dims"  # a parallel kernel's variant over sizes known at run time


def static_kernel(candidate: str) -> str:
    """The static kernel a variant over sizes known at run time renders (`cuda_X_dims`: the
    template of `cuda_X`, which reads and writes 16-bit activations as it does)."""
    return candidate.removesuffix(DIMS_SUFFIX)


def half_reads(candidate: str, node: Node, position: int) -> bool:
    """Whether `candidate` reads input `position` of `node` in 16 bits when it is stored so.
    Attention's score operands (an additive mask: -3.4e38 would become -inf in float16, and a
    row masked everywhere NaN) stay float32; they are small."""
    if static_kernel(candidate) in ATTENTION_KERNELS:
        return position < 3
    return static_kernel(candidate) in HALF_READERS


def half_writes(candidate: str) -> tuple[int, ...]:
    """The outputs `candidate` can store in 16 bits."""
    return (0,) if static_kernel(candidate) in HALF_WRITERS else ()


def cuda_kernels(precision: str, arch: str = "") -> dict[str, tuple[KernelCandidate, ...]]:
    """The candidate table of a build at `precision` for `arch`: fp32 is CUDA_KERNELS; a reduced
    precision adds the tensor-core GEMM (and its variant over run-time sizes, cheaper than the
    float32 cuda_matmul_tiled_dims as the static one is than the tiled GEMM) to MatMul and the
    tensor-core conv to Conv, fp16 / bf16
    the tensor-core attention to pyc.Attention (the other ops compute in float32 still), and
    on sm_90 the Hopper GEMM to MatMul too."""
    if precision == "fp32":
        return CUDA_KERNELS
    table = {**CUDA_KERNELS, "MatMul": (*CUDA_KERNELS["MatMul"], matmul_mma(precision),
                                        matmul_mma_dims(precision)),
             "Conv": (*CUDA_KERNELS["Conv"], conv_mma(precision))}
    if precision in ("fp16", "bf16"):  # and attention (tf32 keeps the float32 kernel)
        table["pyc.Attention"] = (ATTENTION, attention_mma(precision), ATTENTION_DIMS,
                                  attention_mma(precision, run_time_sizes=True))
        if arch in WGMMA_ARCHS:
            table["MatMul"] = (*table["MatMul"], matmul_wgmma(precision),
                               matmul_wgmma_tma(precision))
    # the generic kernel stays each op's last candidate
    return {op: (*(c for c in found if c.name != GENERIC), *(c for c in found if c.name == GENERIC))
            for op, found in table.items()}
