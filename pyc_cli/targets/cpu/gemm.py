"""Plans for the packed GEMM (codegen_templates/c/gemm_packed.j2): which vector instructions,
which register block (MR rows x NR columns), how the work splits into cache blocks and tasks,
and the packed layout of B.

The ISA comes from the build's target features (the compiler's predefined macros for the chosen
-march, features.py): AVX-512F, AVX2 + FMA, AArch64's Advanced SIMD (NEON intrinsics, 32
registers), or GCC/Clang vector extensions 16 bytes wide (any CPU; `--cpu portable` on x86-64).
A micro-kernel keeps MR x NR outputs in registers for the whole reduction, or with K blocks
(`kc`, tuned only: measured no faster on Zen 4, docs/architecture.md) for one block at a time
with the partial sums in a per-task tile, so each output is stored once, after its full sum
(epilogues and `stores_once` need that); the A block
a task re-reads for every panel is sized to stay in L2, and B is read in panels of NR columns
packed K x NR contiguous (weights once at build time, activations at run time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...ir.graph import Graph, Node
from ..kernel import Tunable
from .team import planned_team

Params = dict[str, object]

# the A block (MC rows x K) a task re-reads for every panel of B stays in L2 (1 MiB on Zen 4,
# 1-2 MiB on recent Intel): half of it leaves room for the panel and the output rows
L2_A_BYTES = 256 * 1024
# ... but a MatMul's row block keeps at least this many rows (or all of M): at large K the L2
# rule leaves MC at a few rows and every row block streams all of B again from L3 or memory.
# Measured on Zen 4 (one core, the machine shared: thread CPU time, interleaved), 64 rows
# against the L2 rule: 64x2048x2048 (MC 32) 1.16-1.18x (in the 512-2048-2048-512 MLP at batch
# 64: its K = 2048 layers 1.035-1.05x), 49x4608x512 (MC 8) 1.05x, 128x16384x256 (MC 8)
# 1.06-1.13x; 1024^3, 256x8192x256, 128x1536x384 within 2%. A past L2 costs little: each
# element it streams from L3 feeds 2 NR flops
MATMUL_MIN_ROWS = 64
# below ~40 us of work (at ~100 GFLOP/s) a task is not worth handing to a thread
TASK_FLOPS = 4_000_000
# a kernel splits its work over threads (PYC_PARALLEL_FOR) above this many flop-equivalents
# (~50 us on one core): below it, waking a team costs more than it saves
PARALLEL_MIN_FLOPS = 200_000
TASKS_PER_THREAD = 2  # a GEMM's split: 2 tasks a thread of the planned team (4 on 2 cores)
VECTORS_PER_ROW = 2  # NR = 2 vectors: one broadcast of A feeds 2 FMAs
NO_K_BLOCKS = 1 << 30  # a kc no reduction reaches: the whole of K in one block
PART_BYTES = 64 * 1024  # the most a task's partial sums of K blocks take (its row block's MC)


@dataclass(frozen=True)
class Isa:
    name: str
    vector_bytes: int
    registers: int  # vector registers the micro-kernel may fill with accumulators and B
    rows: tuple[int, ...]  # legal MR, the default first (its accumulators fill the registers)
    prefix: str  # intrinsic prefix ("" for vector extensions)


ISAS = {
    # 32 zmm: 8 x 32 keeps 16 accumulators (12 x 32 or 14 x 32 fill 24 / 28)
    "avx512": Isa("avx512", 64, 32, (8, 6, 12, 14, 4), "_mm512"),
    # 16 ymm: 6 x 16 keeps 12 accumulators + 2 B vectors + 1 broadcast
    "avx2": Isa("avx2", 32, 16, (6, 4, 5), "_mm256"),
    # 32 q registers (AArch64 Advanced SIMD): 8 x 8 keeps 16 accumulators
    "neon": Isa("neon", 16, 32, (8, 6, 4), "v"),
    "vector": Isa("vector", 16, 16, (6, 4), ""),
}
PORTABLE_ISA = "vector"


def isa_for(features: list[str] | tuple[str, ...] | set[str]) -> str:
    """The widest ISA the code may use, from the /proc/cpuinfo names features.py records."""
    if "avx512f" in features:
        return "avx512"
    if "avx2" in features and "fma" in features:
        return "avx2"
    if "asimd" in features:  # AArch64's Advanced SIMD (always there on arm64)
        return "neon"
    return PORTABLE_ISA


def lanes(isa: str, itemsize: int) -> int:
    return ISAS[isa].vector_bytes // itemsize


def panel_width(isa: str, itemsize: int) -> int:
    """NR: columns per packed panel of B (fixed per ISA and type: constants are packed once)."""
    return VECTORS_PER_ROW * lanes(isa, itemsize)


def tunables(isa: str, k_blocking: bool = False) -> tuple[Tunable, ...]:
    """What a tuner may set. Without a tuned value the plan derives mc from the L2 size and nc
    from the task split (the listed values are what a tuner tries), mr and unroll default to
    their first value; kc (templates that run `block`: `k_blocking`) keeps K in one block."""
    return (Tunable("mr", ISAS[isa].rows, "rows of the register block (micro-kernel)"),
            Tunable("mc", (48, 24, 96, 192, 384),
                    "rows per cache block (rounded down to a multiple of mr)"),
            Tunable("nc", (256, 64, 128, 512, 1024, 2048),
                    "columns per task block (rounded down to a multiple of the panel width)"),
            Tunable("unroll", (1, 2, 4), "unroll of the reduction loop"),
            *((Tunable("kc", (NO_K_BLOCKS, 128, 256, 512),
                       "reduction per K block (rounded down to a multiple of 8; one block "
                       "where not shorter than K)"),) if k_blocking else ()))


def splits(isa: str, rows: int, vectors: int = VECTORS_PER_ROW) -> int:
    """Independent accumulator sets over k for an R-row block of `vectors` vectors a row: a
    short block (M == 1: GEMV) would wait on FMA latency with one set."""
    spare = ISAS[isa].registers - vectors - 2
    cap = 8 if ISAS[isa].registers >= 32 else 4
    return max(1, min(cap, spare // (rows * vectors)))


def one_vector_panels(g: Params, isa: str) -> Params:
    """Plan `g` with panels one vector wide (NR = lanes): for a B of few columns, where
    2-vector panels would be mostly padding; more accumulator sets keep the FMAs busy."""
    lanes_ = int(g["lanes"])  # type: ignore[call-overload]
    return {**g, "vectors": 1, "NR": lanes_, "n_full": int(g["N"]) % lanes_ == 0,  # type: ignore[call-overload]
            "panels": -(-int(g["N"]) // lanes_),  # type: ignore[call-overload]
            "splits": {r: splits(isa, r, 1) for r in range(1, int(g["MR"]) + 1)}}  # type: ignore[call-overload]


def vector_ops(isa: str, ctype: str, itemsize: int) -> Params:
    spec = ISAS[isa]
    suffix = "ps" if itemsize == 4 else "pd"
    if isa == PORTABLE_ISA:
        vtype, btype = "pyc_gv", ctype
    elif isa == "neon":
        suffix = "f32" if itemsize == 4 else "f64"
        vtype = btype = "float32x4_t" if itemsize == 4 else "float64x2_t"
    else:
        bits = spec.vector_bytes * 8
        vtype = f"__m{bits}" if itemsize == 4 else f"__m{bits}d"
        btype = vtype
    return {"isa": isa, "ctype": ctype, "itemsize": itemsize, "vbytes": spec.vector_bytes,
            "pre": spec.prefix, "sfx": suffix, "vtype": vtype, "btype": btype,
            "lanes": lanes(isa, itemsize), "vectors": VECTORS_PER_ROW,
            "NR": panel_width(isa, itemsize)}


def min_tasks() -> int:
    """The fewest tasks a GEMM with the work for them splits into."""
    return TASKS_PER_THREAD * planned_team()


def _row_block(M: int, mr: int, mc: int, even: bool, floor: int = 0) -> int:
    """MC: at most `mc` rows, whole register blocks; `even`: the blocks of M as even as whole
    register blocks allow (258 rows in blocks of at most 256: 136 + 122, not 256 + 2, whose
    tasks would keep one thread busy alone)."""
    mc = max(mr, min(mc // mr * mr, -(-M // mr) * mr))
    if even:
        blocks = _ceil_div(M, mc)
        register_blocks = _ceil_div(M, mr)
        # more blocks, up to twice as many, where that makes them all the same size: 256 rows
        # at most 24 a block were 10 x 24 + 16, 11 tasks that 2 threads share as 6 and 5
        # (ResNet-50's 3x3/s2 convs on 28x28 and 56x56 ran 0.83-0.88x onnxruntime's speed)
        # (none below `floor` rows: a MatMul's MATMUL_MIN_ROWS)
        blocks = next((b for b in range(blocks, 2 * blocks + 1)
                       if register_blocks % b == 0 and register_blocks // b * mr >= floor),
                      blocks)
        mc = _ceil_div(_ceil_div(M, blocks), mr) * mr
    return mc


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def k_blocks(K: int, kc: int) -> dict[str, int]:
    """The reduction in KB blocks: KC long (at most `kc`, a multiple of 8, as even as that
    allows), the last one KL long; one block of K when `kc` is 0 or not shorter than K."""
    kc = max(8, kc // 8 * 8) if kc else K
    if kc >= K:
        return {"KC": K, "KB": 1, "KL": K}
    kb = _ceil_div(K, kc)
    block = _ceil_div(_ceil_div(K, kb), 8) * 8
    return {"KC": block, "KB": kb, "KL": K - (kb - 1) * block}


def plan(isa: str, ctype: str, itemsize: int, M: int, N: int, K: int, batch: int,
         tuned: dict[str, object], k_blocking: bool = False, min_rows: int = 0) -> Params:
    """The template's GEMM plan for C[M,N] = A[M,K] B[K,N] repeated `batch` times, from the
    tuned parameters where given, else from the cache sizes and the task split. `k_blocking`:
    the template runs `block` (K blocks where kc is tuned); `min_rows`: the least row block
    the L2 rule may give (MATMUL_MIN_ROWS)."""
    g = vector_ops(isa, ctype, itemsize)
    nr = int(g["NR"])  # type: ignore[call-overload]
    mr = int(tuned.get("mr") or ISAS[isa].rows[0])  # type: ignore[call-overload]
    panels = -(-N // nr)
    mc = int(tuned.get("mc") or 0)  # type: ignore[call-overload]
    floor = _ceil_div(min_rows, mr) * mr  # whole register blocks: at least min_rows rows
    mc = _row_block(M, mr, mc or max(floor, L2_A_BYTES // max(1, K * itemsize)), even=not mc,
                    floor=floor)
    blocks = k_blocks(K, int(tuned.get("kc") or 0) if k_blocking else 0)  # type: ignore[call-overload]
    if blocks["KB"] > 1:  # the partial tile (MC x NR) lives on the task's stack
        mc = min(mc, max(mr, PART_BYTES // (nr * itemsize) // mr * mr))
    mb = -(-M // mc)
    # a short M streams B from memory: its bytes, not its flops, take the time (about 3
    # flop-equivalents a byte at ~100 GFLOP/s and ~35 GB/s)
    streams = 3 * itemsize > 2 * M
    flops = max(2 * batch * M * N * K, 3 * batch * K * N * itemsize)
    nc = int(tuned.get("nc") or 0)  # type: ignore[call-overload]
    if nc:
        ncp = max(1, nc // nr)
    elif streams:
        # one panel a task, scheduled statically: each thread streams one contiguous, even
        # share of B whatever the team size (a task costs no hand-out); one task when serial
        ncp = 1 if flops >= TASK_FLOPS else panels
    else:
        wanted = min(min_tasks(), max(1, flops // TASK_FLOPS))
        nb = min(panels, max(1, -(-wanted // (batch * mb))))
        ncp = -(-panels // nb)
    nb = -(-panels // ncp)
    g.update(blocks)
    g.update({"M": M, "N": N, "K": K, "MR": mr, "MC": mc, "MB": mb, "NCP": ncp, "NB": nb,
              "panels": panels, "tail": M % mr, "n_full": N % nr == 0,
              "splits": {r: splits(isa, r) for r in range(1, mr + 1)},
              "unroll": int(tuned.get("unroll") or 1)})  # type: ignore[call-overload]
    tasks = batch * mb * nb
    g["tasks"] = tasks
    g["static"] = streams
    g["parallel"] = tasks >= 2 and (flops >= TASK_FLOPS if streams
                                    else flops // tasks >= TASK_FLOPS // 2)
    return g


def packs_constant(node: Node, graph: Graph) -> bool:
    """Whether `node`'s B is a constant the weights file may hold packed: float, and every
    reader of it reads it as a MatMul's B (so every reader reads the one packed image)."""
    if node.op != "MatMul" or len(node.inputs) < 2:
        return False
    b = node.inputs[1]
    if b not in graph.constants or b in graph.outputs or \
            graph.types[b].dtype.itemsize not in (4, 8) or not graph.types[b].dtype.is_float:
        return False
    readers = [n for n in graph.nodes if b in n.present_inputs()]
    return all(n.op == "MatMul" and n.inputs[1] == b and n.inputs[0] != b
               and b not in n.inputs[2:] for n in readers)


def sole_constant_reader(node: Node, graph: Graph, index: int) -> bool:
    """Whether input `index` of `node` is a constant no other node reads and no output is (a
    kernel may then read it through a build-time transform)."""
    value = node.inputs[index] if index < len(node.inputs) else ""
    return bool(value) and graph.is_private_constant(value)


def matrices(shape: tuple[int, ...], rows: int, cols: int) -> int:
    """How many rows x cols matrices a tensor of `shape` holds."""
    return math.prod(shape) // max(1, rows * cols)
