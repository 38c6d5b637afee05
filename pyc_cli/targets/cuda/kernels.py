"""The CUDA target's kernel candidates, per op (phase 1: float32 compute, see docs/cuda.md).

Each candidate names a template under codegen_templates/cuda/kernels/; `applies` keeps a
candidate to the element types and forms its template handles, so a node outside them has no
candidate and the build lists it with every other such node (PYC-E008). The launch geometry of
each call is computed in kernel_context.py from the same parameters."""

from __future__ import annotations

from ...ir.graph import Graph, Node
from ...ir.types import DType
from ..kernel import KernelCandidate, Tunable

# element types a CUDA kernel may read or write: float16/bfloat16 need their own headers and
# arithmetic (phase 2); everything else maps to a plain C++ type (model.cu.j2's prelude)
PLAIN_TYPES = frozenset({DType.F32, DType.F64, DType.I8, DType.I16, DType.I32, DType.I64,
                         DType.U8, DType.U16, DType.U32, DType.U64, DType.BOOL})


def plain_types(node: Node, graph: Graph) -> bool:
    """Every operand (fused ones included) has a plain C++ element type."""
    from ...ops import registry

    own, epilogue, prologue = registry.fused_inputs(node)
    values = [v for v in (*own, *epilogue, *prologue, *node.outputs) if v]
    return all(graph.types[v].dtype in PLAIN_TYPES for v in values)


def float32(node: Node, graph: Graph) -> bool:
    """The float32 kernels: input 0 and output 0 are float32, the rest plain."""
    return (graph.types[node.inputs[0]].dtype is DType.F32
            and graph.types[node.outputs[0]].dtype is DType.F32 and plain_types(node, graph))


def _gemm_applies(node: Node, graph: Graph) -> bool:
    # no prologue: fuse gives one only where a kernel of this target takes it
    return float32(node, graph) and not node.ann.prologue


SKINNY_ROWS = 8  # the most rows of C (per batch) the skinny GEMM keeps in registers


def _skinny_applies(node: Node, graph: Graph) -> bool:
    from ...ops import registry

    rows = int(registry.get("MatMul").kernel_params(node, graph)["M"])  # type: ignore[call-overload]
    return _gemm_applies(node, graph) and rows <= SKINNY_ROWS


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
                               takes_epilogue=True)
# preferred where it applies: a tiled GEMM of few rows idles most of its threads
MATMUL_SKINNY = KernelCandidate("cuda_matmul_skinny", "matmul_skinny.cu.j2", _skinny_applies,
                                cost_factor=0.5, stores_once=True, takes_epilogue=True)
ELEMENTWISE = KernelCandidate("cuda_elementwise", "elementwise.cu.j2", plain_types)
STRIDED_COPY = KernelCandidate("cuda_strided_copy", "strided_copy.cu.j2", plain_types)
SOFTMAX = KernelCandidate("cuda_softmax_block", "softmax.cu.j2", _softmax_applies)
REDUCE = KernelCandidate("cuda_reduce_block", "reduce.cu.j2", float32)


def _each(ops: tuple[str, ...], *candidates: KernelCandidate) -> dict[str, tuple[KernelCandidate, ...]]:
    return {op: candidates for op in ops}


CUDA_KERNELS: dict[str, tuple[KernelCandidate, ...]] = {
    "MatMul": (MATMUL_TILED, MATMUL_SKINNY),
    # no prologue: fuse gives one only where a kernel of the target takes it, and none here does
    "Conv": (KernelCandidate("cuda_conv_direct", "conv_direct.cu.j2", _gemm_applies,
                             takes_epilogue=True),),
    **_each(("MaxPool", "AveragePool"), KernelCandidate("cuda_pool", "pool.cu.j2", _pool_applies)),
    "pyc.Elementwise": (ELEMENTWISE,),
    **_each(("Transpose", "Slice"), STRIDED_COPY),
    **_each(("Softmax", "LogSoftmax"), SOFTMAX),
    "LayerNormalization": (KernelCandidate("cuda_layernorm_block", "layernorm.cu.j2", float32),),
    **_each(SINGLE_PASS_REDUCERS, REDUCE),
    "Gather": (KernelCandidate("cuda_gather", "gather.cu.j2", plain_types),),
    "Concat": (KernelCandidate("cuda_concat", "concat.cu.j2", plain_types),),
    "pyc.Copy": (KernelCandidate("cuda_copy", "copy.cu.j2", plain_types),),
}
