"""The CUDA kernels' template contexts: the CPU target's prepared call (operands, parameters,
epilogue program: target-neutral, from targets/cpu/kernel_context.py) plus what a GPU launch
needs: the grid, the block, the shared memory, the index type and the numbers each CUDA
template indexes by. Templates only loop over what is computed here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...errors import PycError
from ...ir.graph import Graph, Node
from ...ir.run_dims import c_size, dim_names
from ...ir.symbolic import Dim, RunTimeStride
from ...ops.attention import operand_offsets, operand_strides
from ...ops.movement import contiguous_strides
from ...planning.weights import Conversion
from ..cpu.kernel_context import KernelCall, ScalarInstr, coalesce, kernel_call
from ..kernel import KernelCandidate

THREADS = 256  # threads per block of the one-thread-per-element kernels
MAX_GRID_X = 2**31 - 1
MAX_GRID_YZ = 65535
# 32-bit indices while every size stays under 2^30: a grid-stride step (t + threads in the
# grid, up to twice the size) must not overflow an int either
INT32_LIMIT = 2**30
# GEMM tiles: (rows BM, columns BN, depth BK, rows TM and columns TN per thread)
GEMM_CONFIGS = {64: (64, 64, 16, 4, 4), 32: (32, 32, 16, 2, 2), 8: (8, 128, 16, 1, 4)}
# a grid of fewer 64x64 tiles than this leaves a large GPU's multiprocessors idle (an H100 has
# 132): such a GEMM takes 32x32 tiles, four times as many blocks
FILL_BLOCKS = 256


@dataclass
class CudaCall(KernelCall):
    grid: tuple[int, int, int] = (1, 1, 1)
    block: tuple[int, int, int] = (THREADS, 1, 1)
    shared_bytes: int = 0  # dynamic shared memory (static arrays are declared in the kernel)
    index_type: str = "int"  # the index arithmetic's type: int unless a size needs 64 bits
    uses_status: bool = False  # takes the run's status word (Gather's index check)
    min_blocks: int = 0  # __launch_bounds__' blocks per multiprocessor (0: the compiler's choice)
    # words past the status word the kernel counts in (reset to zero by the kernel itself)
    counters: int = 0
    workspace: bool = False  # takes the planner's workspace (WS, in the arena) last
    # constants the weights file holds in a 16-bit type (planning/weights.py's Conversion)
    converted: dict[str, Conversion] = field(default_factory=dict)
    # TMA tensor maps the kernel takes last (const void* parameters), encoded at load
    tensor_maps: list[TensorMap] = field(default_factory=list)

    @property
    def ct(self) -> dict[str, str]:
        """Each operand's element type in C (X0 -> "float", or "pyc_f16" / "pyc_bf16" for an
        activation stored in 16 bits): templates declare their local pointers with it."""
        return {o.param: o.ctype for o in self.operands}

    def half(self, param: str) -> bool:
        """Whether operand `param` is an activation stored in 16 bits."""
        return self.ct.get(param) in HALF_CTYPES


# the C types of activations stored in 16 bits (cuda/half.cuh.j2): structs that read as float
# and round a float assigned to them (to nearest even)
HALF_CTYPES = ("pyc_f16", "pyc_bf16")


def _loads_as_float(program: list[ScalarInstr]) -> None:
    """A fused program reads a 16-bit operand into a float local (it computes in float32). A
    model's own float16 / bfloat16 results are float locals too, their dtype kept ("f16" /
    "bf16") so that program.j2 rounds each to its type as the model's op stores it
    (pyc_round_f16 / pyc_round_bf16); a load of either is exact (dtype "f32")."""
    for instr in program:
        instr.a_ctypes = ["float" if c in HALF_CTYPES else c for c in instr.a_ctypes]
        if instr.ctype in HALF_CTYPES:
            instr.ctype = "float"
            if instr.op == "Load":
                instr.dtype = "f32"


def cuda_call(graph: Graph, node: Node, index: int, candidate: KernelCandidate,
              converted: dict[str, Conversion] | None = None) -> CudaCall:
    base = kernel_call(graph, node, index, candidate)
    call = CudaCall(**vars(base), converted=dict(converted or {}))
    call.params = dict(call.params)
    _loads_as_float(call.epilogue)
    _loads_as_float(call.prologue)
    if node.ann.kernel is not None:  # a tuning database's measured parameters (tile_m ...)
        call.params.update(dict(node.ann.kernel.params))
    if node.ann.epilogue and not call.epilogue:  # a template without coordinates would drop it
        raise PycError("E090", f"{node.op} has a fused epilogue that {candidate.name} does not "
                       "render (no out_coords)", where=node.name, hint="report this")
    largest = max([graph.types[v].numel for v in (*node.inputs, *node.outputs) if v] + [1])
    call.index_type = "int" if largest <= INT32_LIMIT else "long long"
    LAUNCHES[candidate.template](call, graph, node)
    if call.grid[0] > MAX_GRID_X or max(call.grid[1:]) > MAX_GRID_YZ:
        raise PycError("E012", f"{node.op} needs a launch grid of {call.grid}, beyond CUDA's limits",
                       where=node.name, hint="split the model's batch")
    return call


def _blocks(n: int, threads: int = THREADS) -> int:
    return max(1, math.ceil(n / threads))


def _reduction_threads(length: int) -> int:
    """Threads of a block that reduces rows of `length`: whole warps, at most 256."""
    return max(32, min(256, math.ceil(length / 32) * 32))


def _per_element(call: CudaCall, graph: Graph, node: Node) -> None:
    if call.dims:  # pyc.Copy over run-time sizes (cuda_copy_dims)
        _run_time_sizes(call, graph, node)
        return
    call.grid = (_blocks(call.out_numel), 1, 1)


def _run_time_sizes(call: CudaCall, graph: Graph, node: Node) -> None:
    """A one-thread-per-element kernel over sizes read at run time (the model's dims in device
    memory): its grid sized for the output's upper bound (threads past the run's element count
    leave the loop at once), its loop bound and coordinates' extents C expressions over the
    dims; it takes the status word and does nothing once an earlier kernel refused the run."""
    call.grid = (_blocks(int(graph.types[node.outputs[0]].numel)), 1, 1)
    call.out_numel = f"({call.out_numel})"  # type: ignore[assignment]
    if "dims" in call.params:
        call.params["dims"] = [f"({d})" for d in call.params["dims"]]  # type: ignore[attr-defined]
    call.uses_status = True


def _concat(call: CudaCall, graph: Graph, node: Node) -> None:
    """Concat: each chunk's end and whether it may hold elements (a chunk statically 0 holds
    none); over sizes known at run time (cuda_concat_dims) the row, chunks, offsets and ends
    as C over the dims."""
    p = call.params
    chunks, offsets = list(p["chunks"]), list(p["offsets"])  # type: ignore[call-overload]
    p.update(ends=[o + c for o, c in zip(offsets, chunks)],
             present=[isinstance(c, Dim) or c > 0 for c in chunks])
    if not call.dims:
        _per_element(call, graph, node)
        return
    _over_dims(call, graph, ("row",), ("chunks", "offsets", "ends"))
    _run_time_sizes(call, graph, node)


def _strided(call: CudaCall, graph: Graph, node: Node) -> None:
    """Transpose / Slice: the coalesced output dims, each with its input stride."""
    if call.dims:  # the CPU kernel's loops over the run-time dims (in_index, base)
        _run_time_sizes(call, graph, node)
        return
    call.grid = (_blocks(call.out_numel), 1, 1)
    out_shape = graph.types[node.outputs[0]].shape
    dims, sets = coalesce(out_shape, [contiguous_strides(out_shape), list(call.params["in_strides"])])  # type: ignore[arg-type, call-overload]
    call.params.update(dims=dims, dim_strides=sets[1])


def _elementwise(call: CudaCall, graph: Graph, node: Node) -> None:
    if call.dims:
        _run_time_sizes(call, graph, node)
        return
    call.grid = (_blocks(call.out_numel), 1, 1)


def _gemm(call: CudaCall, graph: Graph, node: Node) -> None:
    p = call.params
    dims = list(p["batch"])  # type: ignore[call-overload]
    batch = math.prod(int(d) for d in dims)  # upper bounds where sizes are known at run time
    m, n = int(p["M"]), int(p["N"])  # type: ignore[call-overload]
    big_tiles = math.ceil(m / 64) * math.ceil(n / 64) * max(1, batch)
    tile = int(p.get("tile_m", 8 if m <= 8 else 64 if big_tiles >= FILL_BLOCKS else 32))  # type: ignore[call-overload]
    bm, bn, bk, tm, tn = GEMM_CONFIGS[tile]
    call.block = ((bn // tn) * (bm // tm), 1, 1)
    call.grid = (math.ceil(n / bn), math.ceil(m / bm), max(1, batch))
    # each batch dim's extent and the product of those after it (blockIdx.z -> b0, b1, ...)
    p.update(BM=bm, BN=bn, BK=bk, TM=tm, TN=tn, threads=call.block[0],
             batch_steps=[math.prod(dims[d + 1:]) for d in range(len(dims))])
    if call.dims:  # sizes known at run time only: the grid above is for their upper bounds
        _run_time_gemm(call, graph)


def run_time_size(value: object, names: dict[str, str], index_type: str) -> object:
    """A size as a kernel template writes it: a number as it is, a dim (or a stride that is
    0 where a dim is 1 at run time) as C over the dims, cast to the kernel's index type."""
    if isinstance(value, (Dim, RunTimeStride)):
        return f"(({index_type})({c_size(value, names)}))"
    return value


def _over_dims(call: CudaCall, graph: Graph, sizes: tuple[str, ...],
               lists: tuple[str, ...] = ()) -> None:
    """A kernel over sizes known at run time: its parameters `sizes` (each a size) and `lists`
    (each a list of them) as run_time_size writes them; it takes the status word (once an
    earlier kernel refused the run, its dims may not hold)."""
    names = dim_names(graph)
    for key in sizes:
        call.params[key] = run_time_size(call.params[key], names, call.index_type)
    for key in lists:
        call.params[key] = [run_time_size(v, names, call.index_type) for v in call.params[key]]  # type: ignore[attr-defined]
    call.uses_status = True


def _run_time_gemm(call: CudaCall, graph: Graph) -> None:
    """A GEMM over sizes known at run time (cuda_matmul_tiled_dims, cuda_matmul_mma_dims), its
    grid sized for the upper bounds: each size that is a dim (M, N, K, the batch extents, their
    steps, the operands' batch strides, a batch dim broadcast at run time among them) becomes a
    C expression over the dims, cast to the index type, and `MN` (C's matrix) and `BATCH` (the
    batch's product) are added, so that blocks past the run's rows, columns or batch exit at
    once. Static sizes stay numbers (the templates' alignment choices read them)."""
    p = call.params
    p.update(MN=p["M"] * p["N"], BATCH=math.prod(p["batch"]))  # type: ignore[operator, call-overload]
    _over_dims(call, graph, ("M", "N", "K", "MN", "BATCH"),
               ("batch", "batch_steps", "a_batch_strides", "b_batch_strides"))


# tensor-core GEMM tiles by tc_tile: (rows BM, columns BN, depth BK, warps along M, along N);
# a warp computes (BM / warps_m) x (BN / warps_n) of C in m16 x n8 mma tiles
MMA_CONFIGS = {128: (128, 128, 16, 2, 4), 64: (64, 64, 16, 2, 2)}
MMA_PAD_A = 4  # floats past each shared row of A: conflict-free fragment reads, 16-byte rows
MMA_PAD_B = 8  # elements past each shared row of B, likewise
MMA_BK_16BIT = 32  # the 16-bit path's slice depth (its shared tiles are half the size)
# slices of the 16-bit GEMM in shared memory when A and B are both stored in 16 bits (both
# come by cp.async, so STAGES - 1 can be in flight; dynamic shared memory, 56 KiB with
# 128-tiles); 2 otherwise (the register way stages one slice while one is multiplied)
MMA_STAGES_16BIT = 3


# the GEMM's K split (as the conv's, split_blocks): where its tiles are fewer than the
# multiprocessors (a batch-1 encoder's 128-row GEMMs: 12 blocks of 64 x 64 on a
# 132-multiprocessor H100, 6% of its warps busy under Nsight Compute,
# benchmarks/results/cuda-ncu-h100.json), from this depth
MMA_SPLIT_MIN_K = 256


@dataclass(frozen=True)
class MmaGemmGeometry:
    """The tensor-core GEMM's blocking: tile BM x BN, BK-deep slices, `tiles` blocks of C
    (columns, rows, batch), KSPLIT blocks along K each `slices_per` slices deep."""

    bm: int
    bn: int
    bk: int
    warps_m: int
    warps_n: int
    tiles: int
    slices: int
    ksplit: int
    slices_per: int

    @property
    def workspace_bytes(self) -> int:
        """The K split's partial sums: a BM x BN float tile per block."""
        return 4 * self.bm * self.bn * self.tiles * self.ksplit if self.ksplit > 1 else 0


def mma_gemm_geometry(p: dict[str, object], cap: int | None = None) -> MmaGemmGeometry:
    """From the MatMul's kernel_params, its precision and tuned tc_tile / tc_ksplit; the K
    split halves until its workspace fits `cap` bytes (None: no workspace, no split)."""
    batch = max(1, math.prod(list(p["batch"])))  # type: ignore[call-overload]
    m, n, k = int(p["M"]), int(p["N"]), int(p["K"])  # type: ignore[call-overload]
    big_tiles = math.ceil(m / 128) * math.ceil(n / 128) * batch
    tile = int(p.get("tc_tile", 128 if big_tiles >= FILL_BLOCKS else 64))  # type: ignore[call-overload]
    bm, bn, bk, warps_m, warps_n = MMA_CONFIGS[tile]
    if p["precision"] in ("fp16", "bf16"):  # the 16-bit path's deeper slices
        bk = MMA_BK_16BIT
    tiles = math.ceil(m / bm) * math.ceil(n / bn) * batch
    slices = math.ceil(k / bk)
    default = split_blocks(tiles, slices) if k >= MMA_SPLIT_MIN_K else 1
    wanted = int(p.get("tc_ksplit", default)) if cap is not None else 1  # type: ignore[call-overload]
    ksplit, per = fit_split(min(slices, wanted), slices, 4 * bm * bn * tiles, cap)
    return MmaGemmGeometry(bm, bn, bk, warps_m, warps_n, tiles, slices, ksplit, per)


def _mma_gemm(call: CudaCall, graph: Graph, node: Node) -> None:
    """The tensor-core GEMM: its tile, warp layout, and how B is stored (`b_half`: a converted
    constant, 16-bit values in rows of `ldb` = its padded columns). fp16 / bf16 take the 16-bit
    path (`h16`: operands rounded as they are staged, ldmatrix, BK 32); tf32 float32 tiles. A
    K split between blocks adds their partial sums through the workspace, the last block of a
    tile (counted in `counters` words past the status word) adding them in split order."""
    p = call.params
    dims = list(p["batch"])  # type: ignore[call-overload]
    batch = max(1, math.prod(int(d) for d in dims))  # upper bounds where known at run time
    m, n, k = int(p["M"]), int(p["N"]), int(p["K"])  # type: ignore[call-overload]
    # sizes known at run time (cuda_matmul_mma_dims): the geometry of the upper bounds, no K
    # split; each alignment the kernel relies on needs the size static
    static_k, static_n = not isinstance(p["K"], Dim), not isinstance(p["N"], Dim)
    kernel = node.ann.kernel
    bounds = {**p, "M": m, "N": n, "K": k, "batch": [int(d) for d in dims]}
    geo = mma_gemm_geometry(bounds, conv_mma_workspace_cap(kernel.workspace_cap if kernel else None))
    if call.dims or kernel is None or geo.workspace_bytes > kernel.workspace_bytes:  # as sized at selection
        geo = mma_gemm_geometry({**bounds, "tc_ksplit": 1})
    tile = 128 if geo.bm == 128 else 64
    bm, bn, bk, warps_m, warps_n = geo.bm, geo.bn, geo.bk, geo.warps_m, geo.warps_n
    conversion = call.converted.get(node.inputs[1])
    h16 = p["precision"] in ("fp16", "bf16")
    ldb = conversion.columns if conversion else p["N"]
    # a converted B (a constant: static sizes) has rows of ldb; an activation's strides stand
    b_strides = ([int(s) // (k * n) * (k * int(ldb)) for s in p["b_batch_strides"]]  # type: ignore[union-attr, attr-defined, call-overload]
                 if conversion else list(p["b_batch_strides"]))  # type: ignore[call-overload]
    if conversion:
        next(o for o in call.operands if o.param == "X1").ctype = "unsigned short"
    a_half, b_act_half = h16 and call.half("X0"), h16 and call.half("X1")
    pipelined = a_half and (conversion is not None or b_act_half)
    stages = int(p.get("tc_stages", MMA_STAGES_16BIT)) if pipelined else 2  # type: ignore[call-overload]
    sa, sb = bk + 8, bn + MMA_PAD_B  # shared rows of A and B, 16-bit values
    call.block = (32 * warps_m * warps_n, 1, 1)
    call.grid = (math.ceil(n / bn), math.ceil(m / bm), batch * geo.ksplit)
    _take_split(call, geo.ksplit, geo.tiles)
    threads = call.block[0]
    # 128-tiles ask for two blocks per multiprocessor: on the H100 that was faster at every size
    # and precision measured (benchmarks/results/cuda-gemm-h100.json: fp16 4096^3 0.549 vs
    # 0.573 ms, 8192^3 4.20 vs 4.76 ms; tf32 4096^3 1.35 vs 1.89 ms, 8192^3 10.3 vs 14.4 ms);
    # 64-tiles (the 1024^3 choice, fastest there) keep 1, the only one measured for them
    call.min_blocks = int(p.get("tc_min_blocks", 2 if tile == 128 else 1))  # type: ignore[call-overload]
    if stages > 2:  # the pipelined path's slices live in dynamic shared memory
        call.shared_bytes = stages * (bm * sa + bk * sb) * 2
    p.update(BM=bm, BN=bn, BK=bk, WARPS_N=warps_n, MI=bm // warps_m // 16, NI=bn // warps_n // 8,
             KSPLIT=geo.ksplit, SLICES_PER=geo.slices_per, SLICES=geo.slices, TILES=geo.tiles,
             threads=threads, pad_a=MMA_PAD_A, pad_b=MMA_PAD_B, ldb=ldb,
             h16=h16, b_half=conversion is not None, b_batch_strides=b_strides,
             # float4 / 16-byte chunks of the 16-bit path's A and B slices, per thread
             a_chunks=bm * bk // 4 // threads, b_chunks=bk * bn // 8 // threads,
             b_chunks4=bk * bn // 4 // threads, a_chunks8=bm * bk // 8 // threads,
             # activations stored in 16 bits come by cp.async where rows are 16-byte aligned
             # (K / N % 8 == 0; the base is checked in the kernel), else through registers
             stages=stages, SA=sa, SB=sb,
             a_half=a_half, b_act_half=b_act_half, a_async=a_half and static_k and k % 8 == 0,
             b_async=b_act_half and static_n and n % 8 == 0,
             async_copies=conversion is not None or a_half or b_act_half,
             a_vec=static_k and k % 4 == 0 and not a_half,
             b_vec=static_n and n % 4 == 0 and not b_act_half,
             # a 16-bit C's column pairs go out as one word where N is even
             n_even=static_n and n % 2 == 0,
             batch_steps=[math.prod(dims[d + 1:]) for d in range(len(dims))])
    if call.dims:  # the sizes that are dims, and the slice count, as C over the dims
        _run_time_gemm(call, graph)
        if not static_k:
            p["SLICES"] = f"(({p['K']} + {bk - 1}) / {bk})"
        if not static_n and conversion is None:
            p["ldb"] = p["N"]
    if node.ann.norm_from:
        _take_norm(call, graph, node, batch)


# a fused LayerNormalization's rows (_take_norm): the values each lane of a warp keeps in
# registers: its columns of the scale and bias, and of the rows it normalizes at once (more
# rows, fewer rounds: each an L2 round trip and two warp reductions); where even one row does
# not fit with the scale and bias (N > 1344), each pass reads the rows from memory again. A
# kernel capped at 128 registers a thread (tc_min_blocks 2) keeps half as many, or it spills
NORM_REGISTERS = 128
NORM_REGISTERS_CAPPED = 64


def _take_norm(call: CudaCall, graph: Graph, node: Node, batch: int) -> None:
    """A LayerNormalization fused into the tensor-core GEMM or the cp.async Hopper one
    (targets/cuda/fuse_norm.py; both end in matmul_mma.cu.j2's store): a counter per row-block
    of C (ceil(M / BM) per batch) past the K split's tile counters; the last of its
    ceil(N / BN) blocks normalizes its BM rows, a warp a row, NORM_ROWS rows of a warp at once
    (their values in registers, with the scale's and bias's, where a lane's share of them,
    ceil(N / 32) each, fits NORM_REGISTERS, NORM_REGISTERS_CAPPED under a register cap); the
    scale and bias are epilogue operands."""
    p = call.params
    m, n, bm, bn = int(p["M"]), int(p["N"]), int(p["BM"]), int(p["BN"])  # type: ignore[call-overload]
    first = node.ann.epilogue_first_input or 0
    scale, *bias = [f"E{position - first}" for position in node.ann.norm_inputs]
    scale_n, *bias_n = [graph.types[node.inputs[position]].numel for position in node.ann.norm_inputs]
    warps = int(p["threads"]) // 32  # type: ignore[call-overload]
    per_lane = math.ceil(n / 32)
    room = NORM_REGISTERS if call.min_blocks <= 1 else NORM_REGISTERS_CAPPED
    cached = 3 * per_lane <= room  # a row, the scale and the bias
    rows = next(r for r in (8, 4, 2, 1)
                if (bm // warps) % r == 0 and (r == 1 or (r + 2) * per_lane <= room))
    tiles_n = math.ceil(n / bn)
    base = call.counters  # the K split's tile counters come first
    if tiles_n > 1:  # a block whose tile spans N normalizes its own rows, uncounted
        call.uses_status = True
        call.counters = base + math.ceil(m / bm) * batch
    p.update(NORM=True, NORM_SCALE=scale, NORM_BIAS=bias[0] if bias else "",
             NORM_SCALE_STRIDE=int(scale_n == n), NORM_BIAS_STRIDE=int(bias_n == [n]),
             NORM_EPSILON=node.ann.norm_epsilon, NORM_BASE=base, NORM_TILES_N=tiles_n,
             NORM_TILES_M=math.ceil(m / bm),
             NORM_WARPS=warps, NORM_ROWS=rows, NORM_LANE=per_lane, NORM_CACHE=cached)


# the Hopper GEMM (matmul_wgmma.cu.j2, sm_90a): 128 x 256 tiles of C on 2 warpgroups (128 x
# 128 where tuned so), 64-deep slices (one 128-byte swizzled row of 16-bit values), LOOKAHEAD
# slices copied ahead, so LOOKAHEAD + 2 buffers (one multiplied, one still read by the previous
# slice's wgmmas). 256 columns by default: on an H100 (7 Dec 2026, cuda_wgmma_check.sh) they
# ran 1.45x (4096^3) and 1.55x (8192^3) the 128-column tiles' rate
WGMMA_BM, WGMMA_BN, WGMMA_BK = 128, 256, 64
WGMMA_NS = (128, 256)  # the tile's columns (tc_wgmma_n): the wgmma's N, the kernel's BN
WGMMA_THREADS = 256
WGMMA_STAGES = 4
WGMMA_STAGE_RANGE = (3, 4)
WGMMA_ALIGN = 1024  # the swizzle pattern's blocks are 1024-byte aligned: slack to align to
# rows of tiles a group of blocks takes column by column (L2 reuse: at 8192^3 a wave of 132
# blocks in row order would read all of B, 128 MiB at fp16, for every two rows of tiles)
WGMMA_GROUP_M = 8


def wgmma_tiles(p: dict[str, object], bn: int = WGMMA_BN) -> int:
    """Blocks of the Hopper GEMM for a MatMul's kernel_params (its 128 x `bn` tiles)."""
    batch = max(1, math.prod(list(p["batch"])))  # type: ignore[call-overload]
    m, n = int(p["M"]), int(p["N"])  # type: ignore[call-overload]
    return math.ceil(m / WGMMA_BM) * math.ceil(n / bn) * batch


def _wgmma_gemm(call: CudaCall, graph: Graph, node: Node) -> None:
    """The Hopper GEMM (fp16 / bf16 only): the tile is fixed, `tc_wgmma_stages` (3 or 4) sets
    the buffers; no K split. Operands as in _mma_gemm: `b_half` a converted constant (rows of
    `ldb`), `a_half` / `b_act_half` activations stored in 16 bits (by cp.async where rows are
    16-byte aligned), float32 operands rounded as they are staged."""
    p = call.params
    dims = list(p["batch"])  # type: ignore[call-overload]
    batch = max(1, math.prod(dims))
    m, n, k = int(p["M"]), int(p["N"]), int(p["K"])  # type: ignore[call-overload]
    if p["precision"] not in ("fp16", "bf16"):
        raise PycError("E090", f"cuda_matmul_wgmma computes in fp16 or bf16, not {p['precision']}",
                       where=node.name, hint="report this")
    conversion = call.converted.get(node.inputs[1])
    ldb = conversion.columns if conversion else n
    b_strides = [int(s) // (k * n) * (k * ldb) for s in p["b_batch_strides"]]  # type: ignore[union-attr, attr-defined]
    if conversion:
        next(o for o in call.operands if o.param == "X1").ctype = "unsigned short"
    a_half, b_act_half = call.half("X0"), call.half("X1")
    stages = int(p.get("tc_wgmma_stages", WGMMA_STAGES))  # type: ignore[call-overload]
    bn = int(p.get("tc_wgmma_n", WGMMA_BN))  # type: ignore[call-overload]
    if stages not in WGMMA_STAGE_RANGE or bn not in WGMMA_NS:
        raise PycError("E090", f"cuda_matmul_wgmma takes tc_wgmma_stages in {WGMMA_STAGE_RANGE} "
                       f"and tc_wgmma_n in {WGMMA_NS}, not {stages} and {bn}", where=node.name,
                       hint="fix the tuning database entry")
    bm, bk, threads = WGMMA_BM, WGMMA_BK, WGMMA_THREADS
    a_bytes, b_bytes = bm * bk * 2, bk * bn * 2
    slices = math.ceil(k / bk)
    call.block = (threads, 1, 1)
    call.grid = (math.ceil(n / bn), math.ceil(m / bm), batch)
    # no register cap asked for: __launch_bounds__(256, 2) made the 3-stage 128 x 128 kernel
    # spill (a float32 A's staging); at <= 128 registers two of its blocks (97 KiB) fit anyway
    call.min_blocks = 1
    call.shared_bytes = stages * (a_bytes + b_bytes) + WGMMA_ALIGN
    p.update(BM=bm, BN=bn, BK=bk, WARPS_N=1, MI=1, NI=bn // 8, KSPLIT=1, SLICES_PER=slices,
             SLICES=slices, TILES=wgmma_tiles(p, bn), threads=threads, ldb=ldb,
             STAGES=stages, LOOKAHEAD=stages - 2, A_BYTES=a_bytes, STAGE_BYTES=a_bytes + b_bytes,
             GROUP_M=WGMMA_GROUP_M,
             b_half=conversion is not None, b_16=conversion is not None or b_act_half,
             b_batch_strides=b_strides, a_chunks8=bm * bk // 8 // threads,
             b_chunks=bk * bn // 8 // threads, a_half=a_half, b_act_half=b_act_half,
             a_async=a_half and k % 8 == 0, b_async=b_act_half and n % 8 == 0,
             a_vec=k % 4 == 0 and not a_half, b_vec=n % 4 == 0 and not b_act_half,
             batch_steps=[math.prod(dims[d + 1:]) for d in range(len(dims))])
    if node.ann.norm_from:  # matmul_mma.cu.j2's store, which it shares, normalizes
        _take_norm(call, graph, node, batch)


@dataclass(frozen=True)
class TensorMap:
    """A TMA tensor map over one of a call's operands (kernel parameter `param`, over
    argument `operand` of the launch: 0 = A, 1 = B), encoded by the runtime at load with
    cuTensorMapEncodeTiled: `dims` innermost first (elements), `strides` in bytes of dims
    1.., `box` the tile one load copies, 128-byte swizzle, zeros outside."""

    param: str
    operand: int
    dtype: str  # "fp16" / "bf16" / "fp32"
    dims: tuple[int, ...]
    strides: tuple[int, ...]
    box: tuple[int, ...]

    def to_json(self, address: Argument) -> dict[str, object]:
        return {"address": address.to_json(), "dtype": self.dtype, "dims": list(self.dims),
                "strides": list(self.strides), "box": list(self.box), "swizzle": 128}


TMA_ELEMENT_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
TMA_MAX_RANK = 5
TMA_ALIGN = 16  # a tensor map's base address and strides, in bytes


def tma_batch_dims(batch: list[int], strides: list[int]) -> list[int]:
    """The batch dims a tensor map over an operand needs (those it is not broadcast along),
    innermost first: the map's dims after the matrix's two."""
    return [d for d in reversed(range(len(batch))) if strides[d] != 0 and batch[d] > 1]


# the TMA Hopper GEMM (matmul_wgmma_tma.cu.j2): 3 warpgroups (a producer, 2 consumers), a
# persistent grid of one block a multiprocessor (an H100 SXM / H200 has 132; a GPU with fewer
# runs the rest in a second wave: correct, slower), registers moved from the producer to the
# consumers: 128 x 40 + 256 x 232 = 64512 of the 65536
WGMMA_TMA_THREADS = 384
WGMMA_TMA_CONSUMERS = 2
WGMMA_TMA_CTAS = 132
WGMMA_TMA_REGS = (40, 232)  # setmaxnreg: producer, consumers
WGMMA_TMA_SHARED_LIMIT = 227 * 1024
WGMMA_TMA_STAGE_RANGE = (2, 3, 4, 5, 6)


def wgmma_tma_stage_bytes(bn: int, a32: bool) -> int:
    """A slice of A (BM x 64, float32 when a32) and of B (64 x bn, 16-bit)."""
    return WGMMA_BM * WGMMA_BK * (4 if a32 else 2) + WGMMA_BK * bn * 2


def wgmma_tma_default_stages(bn: int, a32: bool) -> int:
    """As many slices as fit (at most 4: 3 with 256 columns and a float32 A)."""
    fit = (WGMMA_TMA_SHARED_LIMIT - WGMMA_ALIGN - 256) // wgmma_tma_stage_bytes(bn, a32)
    return min(4, fit)


def _tma_operand_map(param: str, operand: int, dtype: str, inner: int, rows: int, row_stride: int,
                     batch: list[int], batch_strides: list[int], box: tuple[int, int]) -> TensorMap:
    """A map over a [batch..][rows][inner] operand, row_stride and batch strides in elements."""
    size = TMA_ELEMENT_BYTES[dtype]
    dims = tma_batch_dims(batch, batch_strides)
    return TensorMap(param, operand, dtype, (inner, rows, *(batch[d] for d in dims)),
                     (row_stride * size, *(batch_strides[d] * size for d in dims)),
                     (*box, *(1 for _ in dims)))


def _wgmma_tma_gemm(call: CudaCall, graph: Graph, node: Node) -> None:
    """The TMA Hopper GEMM (fp16 / bf16): A by TMA in 16 bits (an activation stored so) or in
    float32 (rounded in registers), B by TMA in 16 bits (a converted constant or a 16-bit
    activation); `tc_wgmma_n` 128 / 256 columns, `tc_tma_stages` slices (by default as many
    as fit, at most 4), `tc_tma_ctas` persistent blocks."""
    p = call.params
    where = node.name
    if p["precision"] not in ("fp16", "bf16"):
        raise PycError("E090", f"cuda_matmul_wgmma_tma computes in fp16 or bf16, not "
                       f"{p['precision']}", where=where, hint="report this")
    dims = list(p["batch"])  # type: ignore[call-overload]
    batch = max(1, math.prod(dims))
    m, n, k = int(p["M"]), int(p["N"]), int(p["K"])  # type: ignore[call-overload]
    conversion = call.converted.get(node.inputs[1])
    if conversion:
        next(o for o in call.operands if o.param == "X1").ctype = "unsigned short"
    elif not call.half("X1"):
        raise PycError("E090", "cuda_matmul_wgmma_tma reads B by TMA in 16 bits: a constant "
                       "stored in 16 bits or an activation stored so, not a float32 B",
                       where=where, hint="choose cuda_matmul_wgmma for this MatMul")
    ldb = conversion.columns if conversion else n
    b_strides = [int(s) // (k * n) * (k * ldb) for s in p["b_batch_strides"]]  # type: ignore[union-attr, attr-defined]
    a_strides = [int(s) for s in p["a_batch_strides"]]  # type: ignore[union-attr, attr-defined]
    a32 = not call.half("X0")
    deepest = max(len(tma_batch_dims(dims, a_strides)), len(tma_batch_dims(dims, b_strides)))
    if k % 8 or ldb % 8 or deepest > TMA_MAX_RANK - 2:
        raise PycError("E090", "cuda_matmul_wgmma_tma needs K and B's rows in multiples of 8 "
                       "and at most 3 batch dims", where=where, hint="choose cuda_matmul_wgmma")
    bn = int(p.get("tc_wgmma_n", WGMMA_BN))  # type: ignore[call-overload]
    stages = int(p.get("tc_tma_stages", wgmma_tma_default_stages(bn, a32)))  # type: ignore[call-overload]
    stage_bytes = wgmma_tma_stage_bytes(bn, a32) if bn in WGMMA_NS else 0
    shared = stages * stage_bytes + 16 * stages + WGMMA_ALIGN
    if bn not in WGMMA_NS or stages not in WGMMA_TMA_STAGE_RANGE or shared > WGMMA_TMA_SHARED_LIMIT:
        raise PycError("E090", f"cuda_matmul_wgmma_tma takes tc_wgmma_n in {WGMMA_NS} and "
                       f"tc_tma_stages in {WGMMA_TMA_STAGE_RANGE} within "
                       f"{WGMMA_TMA_SHARED_LIMIT} bytes of shared memory, not {bn} and {stages}",
                       where=where, hint="fix the tuning database entry")
    bm, bk = WGMMA_BM, WGMMA_BK
    precision = str(p["precision"])
    a_map = _tma_operand_map("TMAP_A", 0, "fp32" if a32 else precision, k, m, k, dims, a_strides,
                             (32 if a32 else 64, bm))
    b_map = _tma_operand_map("TMAP_B", 1, precision, n, k, ldb, dims, b_strides, (64, bk))
    call.tensor_maps = [a_map, b_map]
    tiles_m, tiles_n = math.ceil(m / bm), math.ceil(n / bn)
    tiles = tiles_m * tiles_n * batch
    ctas = int(p.get("tc_tma_ctas", WGMMA_TMA_CTAS))  # type: ignore[call-overload]
    call.block = (WGMMA_TMA_THREADS, 1, 1)
    call.grid = (max(1, min(tiles, ctas)), 1, 1)
    call.min_blocks = 1
    call.shared_bytes = shared
    a_bytes = bm * bk * (4 if a32 else 2)
    p.update(BM=bm, BN=bn, BK=bk, WARPS_N=1, MI=1, NI=bn // 8, KSPLIT=1, SLICES=math.ceil(k / bk),
             TILES_M=tiles_m, TILES_N=tiles_n, TILES=tiles, STAGES=stages, GROUP_M=WGMMA_GROUP_M,
             A_BYTES=a_bytes, STAGE_BYTES=stage_bytes, a32=a32, CONSUMERS=WGMMA_TMA_CONSUMERS,
             PRODUCER_REGS=WGMMA_TMA_REGS[0], CONSUMER_REGS=WGMMA_TMA_REGS[1],
             a_rank=len(a_map.dims), b_rank=len(b_map.dims),
             a_map_batch=tma_batch_dims(dims, a_strides), b_map_batch=tma_batch_dims(dims, b_strides),
             threads=WGMMA_TMA_THREADS, ldb=ldb, b_half=conversion is not None,
             batch_steps=[math.prod(dims[d + 1:]) for d in range(len(dims))])


# tensor-core conv tiles by conv_tile: (rows BM = output channels, columns BN = output pixels,
# warps along M, along N); 32 is the narrow tile of few-pixel maps (ResNet's 7 x 7)
CONV_MMA_CONFIGS = {128: (128, 128, 2, 4), 64: (64, 64, 2, 2), 32: (64, 32, 2, 2)}
# a multiprocessor count: below this many blocks a smaller tile is taken (an H100 has 132)
CONV_MMA_FILL = 132
CONV_MMA_SPLIT_MIN_K = 512  # a split pays for its final reduction only over this depth
CONV_MMA_MIN_SLICES = 4  # 32-deep slices each block of a K split takes at least
CONV_MMA_MAX_KSPLIT = 16
# the K split's partial sums may take this much of the arena (device memory is plentiful next
# to a CPU's caches, the CPU kernels' 512 KiB cap); memory_first keeps its own, smaller cap
CONV_MMA_WORKSPACE_CAP = 4 << 20
MEMORY_FIRST_CAP = 32 * 1024


# conv_stages: slices of A and B in shared memory where the im2col slice comes by cp.async
# (conv_mma_pipeline); 2 keeps the register gather, the default until 3 / 4 are timed on a GPU
# (benchmarks/cuda_conv_bench.py times each depth; `--tune` on the GPU may pick them already)
CONV_MMA_STAGES = 2
# the most dynamic shared memory a block may opt in to on every supported arch (sm_80: 163 KiB;
# sm_90: 227 KiB): a pipeline deeper than fits takes fewer stages
CONV_MMA_SHARED_LIMIT = 163 * 1024


def conv_mma_workspace_cap(mode_cap: int | None) -> int:
    """The K split's workspace cap under a memory mode's cap (None: no workspace)."""
    if mode_cap is None:
        return 0
    return mode_cap if mode_cap <= MEMORY_FIRST_CAP else CONV_MMA_WORKSPACE_CAP


def _conv_mma_tile(m: int, n: int, k: int) -> int:
    """The largest tile that still gives CONV_MMA_FILL blocks (128 only past 64 channels and
    from K = 256: on an H100 shallower convs with 128-tiles stored at under half the rate of
    64-tiles, benchmarks/cuda_conv_bench.py at batch 32)."""
    if m > 64 and k >= 256 and _conv_mma_blocks(128, m, n) >= 2 * CONV_MMA_FILL:
        return 128
    return 64 if _conv_mma_blocks(64, m, n) >= CONV_MMA_FILL else 32


def _conv_mma_blocks(tile: int, m: int, n: int) -> int:
    bm, bn = CONV_MMA_CONFIGS[tile][:2]
    return math.ceil(m / bm) * math.ceil(n / bn)


def _take_split(call: CudaCall, ksplit: int, tiles: int) -> None:
    """A K split's kernel takes the workspace (the partial sums) and a counter per tile past the
    run's status word (cuda/ksplit.j2)."""
    if ksplit > 1:
        call.uses_status = True
        call.counters = tiles
        call.workspace = True


def split_blocks(tiles: int, slices: int) -> int:
    """Blocks along K for a kernel of `tiles` tiles and `slices` slices of K: enough for a block
    per multiprocessor where the tiles are fewer, each at least CONV_MMA_MIN_SLICES deep."""
    if tiles >= CONV_MMA_FILL:
        return 1
    return max(1, min(CONV_MMA_MAX_KSPLIT, math.ceil(CONV_MMA_FILL / tiles),
                      slices // CONV_MMA_MIN_SLICES))


def fit_split(ksplit: int, slices: int, tile_bytes: int, cap: int | None) -> tuple[int, int]:
    """(blocks along K, slices per block): `ksplit` halved until its partial tiles
    (`tile_bytes` a block) fit `cap` bytes (None: as asked), then evened so that every block
    has a slice."""
    while cap is not None and ksplit > 1 and tile_bytes * ksplit > cap:
        ksplit //= 2
    per = math.ceil(slices / max(1, ksplit))
    return math.ceil(slices / per), per


def _conv_mma_ksplit(tile: int, m: int, n: int, k: int) -> int:
    """A deep conv with too few tiles to fill the GPU (batch 1's 14 x 14 and 7 x 7 maps) splits
    K between blocks (split_blocks, over 32-deep slices)."""
    if k < CONV_MMA_SPLIT_MIN_K:
        return 1
    return split_blocks(_conv_mma_blocks(tile, m, n), math.ceil(k / 32))


def _conv_mma_split(tile: int, m: int, n: int, k: int) -> int:
    """Groups of warps in a block sharing each (64-deep) slice: 2 where a block still has many
    slices after the K split, or where a deep conv has fewer than 3 blocks a multiprocessor
    (batch 32's 14 x 14 and 7 x 7 maps: 4-warp blocks there ran the 3 x 3 convs 3-6x slower
    than cuDNN on an H100), for more loads in flight and half the slices; else 1."""
    if tile == 128 or k < CONV_MMA_SPLIT_MIN_K:
        return 1
    blocks = _conv_mma_blocks(tile, m, n)
    if blocks >= CONV_MMA_FILL:
        return 2 if blocks < 3 * CONV_MMA_FILL else 1
    slices = math.ceil(k / 32) / _conv_mma_ksplit(tile, m, n, k)
    return 2 if slices >= 16 else 1


@dataclass(frozen=True)
class ConvMmaGeometry:
    """The tensor-core conv's blocking: tile BM x BN, BK-deep slices, SPLIT groups of warps a
    block, KSPLIT blocks along K (each `slices_per` slices), grid (columns, rows, KSPLIT)."""

    m: int
    ncols: int
    k: int
    bm: int
    bn: int
    bk: int
    warps_m: int
    warps_n: int
    split: int
    ksplit: int
    slices_per: int

    @property
    def tiles(self) -> int:
        return math.ceil(self.ncols / self.bn) * math.ceil(self.m / self.bm)

    @property
    def workspace_bytes(self) -> int:
        """The K split's partial sums: a BM x BN float tile per block."""
        return 4 * self.bm * self.bn * self.tiles * self.ksplit if self.ksplit > 1 else 0


def conv_mma_geometry(p: dict[str, object], cap: int | None = None, tf32: bool = False) -> ConvMmaGeometry:
    """From the Conv's kernel_params and tuned conv_tile / conv_split / conv_ksplit; the K split
    halves until its workspace fits `cap` bytes. Slices are 32 deep (64 when split between
    groups of warps), tf32's half that (float32 shared rows)."""
    m = int(p["OC"])  # type: ignore[call-overload]
    ncols = int(p["N"]) * int(p["OD"]) * int(p["OH"]) * int(p["OW"])  # type: ignore[call-overload]
    k = int(p["C"]) * int(p["KD"]) * int(p["KH"]) * int(p["KW"])  # type: ignore[call-overload]
    tile = int(p.get("conv_tile", _conv_mma_tile(m, ncols, k)))  # type: ignore[call-overload]
    split = 1 if tile == 128 else int(p.get("conv_split", _conv_mma_split(tile, m, ncols, k)))  # type: ignore[call-overload]
    bm, bn, warps_m, warps_n = CONV_MMA_CONFIGS[tile]
    bk = (32 if split == 1 else 64) // (2 if tf32 else 1)
    slices = math.ceil(k / bk)
    ksplit = min(slices, int(p.get("conv_ksplit", _conv_mma_ksplit(tile, m, ncols, k))))  # type: ignore[call-overload]
    tiles = math.ceil(ncols / bn) * math.ceil(m / bm)
    ksplit, per = fit_split(ksplit, slices, 4 * bm * bn * tiles, cap)
    return ConvMmaGeometry(m, ncols, k, bm, bn, bk, warps_m, warps_n, split, ksplit, per)


@dataclass(frozen=True)
class ConvMmaPipeline:
    """How the tensor-core conv stages B: `vec_b` (a pointwise conv of a pixel count divisible by
    4: a row of 4 columns a thread, float4 / 8-byte cp.async), `quad_b` (any other conv at fp16 /
    bf16: 4 neighbouring columns a thread), and `stages` slices in shared memory: 2 (A by
    cp.async, B gathered through registers; tf32: both by cp.async) or, where quad_b, 3-4 (A and
    B by cp.async, conv_stages) within CONV_MMA_SHARED_LIMIT; `shared_bytes` the pipelined
    path's dynamic shared memory (0: static arrays)."""

    vec_b: bool
    quad_b: bool
    stages: int
    shared_bytes: int
    asked: int  # the stages asked for (conv_stages or the default), before the limit

    @property
    def async_b(self) -> bool:
        return self.stages > 2


def conv_staged_row(bn: int) -> int:
    """Words a row of the pipelined conv's staged B slice (BN columns, a warp's lanes BN / 4 to
    a row): BN / 4 modulo 32, so that the rows a warp copies into or reads lie on distinct
    banks (BN = 128: 32 lanes a row, unpadded)."""
    return bn + (bn // 4) % 32


def conv_async_bytes(geo: ConvMmaGeometry, stages: int) -> int:
    """The pipelined path's shared memory: `stages` slices of A (16-bit rows padded by 8) and of
    B's staged 32-bit words, two 16-bit B slices (rows padded by 8), a word a thread a stage
    (which halves a 16-bit input's words hold); at least the split groups' float sums."""
    threads = 32 * geo.warps_m * geo.warps_n * geo.split
    ring = stages * (geo.bm * (geo.bk + 8) * 2 + geo.bk * conv_staged_row(geo.bn) * 4)
    total = ring + 2 * geo.bk * (geo.bn + 8) * 2 + stages * threads * 4
    return max(total, 4 * geo.bm * geo.bn if geo.split > 1 else 0)


def conv_mma_pipeline(p: dict[str, object], geo: ConvMmaGeometry, tf32: bool) -> ConvMmaPipeline:
    """The gather and pipeline depth of a tensor-core conv (kernel_context._conv_mma and the
    decision log's reason): conv_stages (default CONV_MMA_STAGES) where quad_b, lowered until
    its shared memory fits CONV_MMA_SHARED_LIMIT; 2 elsewhere."""
    threads = 32 * geo.warps_m * geo.warps_n * geo.split
    opix = int(p["OD"]) * int(p["OH"]) * int(p["OW"])  # type: ignore[call-overload]
    quads = geo.bk * geo.bn // 4 % threads == 0 and geo.bk * geo.bn // 4 >= threads
    vec_b = bool(p["pointwise"]) and opix % 4 == 0 and quads
    quad_b = not tf32 and not vec_b and quads
    asked = int(p.get("conv_stages", CONV_MMA_STAGES)) if quad_b else 2  # type: ignore[call-overload]
    stages = max(2, asked)
    while stages > 2 and conv_async_bytes(geo, stages) > CONV_MMA_SHARED_LIMIT:
        stages -= 1
    return ConvMmaPipeline(vec_b, quad_b, stages, conv_async_bytes(geo, stages) if stages > 2 else 0,
                           asked)


def _conv_mma(call: CudaCall, graph: Graph, node: Node) -> None:
    """The implicit-GEMM conv: M = output channels, N = batch x output pixels (NCOLS), K =
    C x KD x KH x KW; the weight a converted constant ([OC, K] rows of `lda` 16-bit values).
    BK = 32, or 64 when split between groups of warps (each 2 or 1 k16 steps of it). A K split
    between blocks adds their partial sums through the workspace, the last block of a tile
    (counted in `counters` words past the status word) adding them in split order."""
    p = call.params
    tf32 = p["precision"] == "tf32"  # the weight as stored, float32
    conversion = call.converted.get(node.inputs[1])
    if not tf32 and (conversion is None or not conversion.flat):
        raise PycError("E090", f"{node.op}'s weight is not stored in 16 bits for cuda_conv_mma "
                       "(another kernel reads it in float32)", where=node.name,
                       hint="report this; a tuning database giving its readers one kernel avoids it")
    if not tf32:
        next(o for o in call.operands if o.param == "X1").ctype = "unsigned short"
    kernel = node.ann.kernel
    geo = conv_mma_geometry(p, conv_mma_workspace_cap(kernel.workspace_cap if kernel else None), tf32)
    if kernel is None or geo.workspace_bytes > kernel.workspace_bytes:  # as sized at selection
        geo = conv_mma_geometry({**p, "conv_ksplit": 1}, None, tf32)
    threads = 32 * geo.warps_m * geo.warps_n * geo.split
    call.block = (threads, 1, 1)
    call.grid = (geo.tiles, 1, geo.ksplit)  # channel tiles fastest (MT of them), then pixels
    _take_split(call, geo.ksplit, geo.tiles)
    bm, bn, bk = geo.bm, geo.bn, geo.bk
    # A's and B's two slices (16-bit rows padded by 8, or float rows by 4 and 8), or the split
    # groups' float sums
    slices = 2 * 4 * (bm * (bk + 4) + bk * (bn + 8)) if tf32 else 2 * 2 * (bm * (bk + 8) + bk * (bn + 8))
    opix = int(p["OD"]) * int(p["OH"]) * int(p["OW"])  # type: ignore[call-overload]
    # a pointwise conv of a pixel count divisible by 4 gathers B 4 columns at a time (where the
    # slice has a row of 4 columns for every thread); any other conv (16-bit path): 4
    # neighbouring columns a thread all the same, their window arithmetic shared, and (conv_stages
    # > 2) the slice by cp.async, STAGES slices in flight
    pipe = conv_mma_pipeline(p, geo, tf32)
    vec_b, quad_b = pipe.vec_b, pipe.quad_b
    columns = bn // 4 if vec_b or quad_b else bn  # threads along a row of B
    b_rows = bk * columns // threads
    if pipe.async_b:
        call.shared_bytes = pipe.shared_bytes
        # a block minimum in __launch_bounds__: without one ptxas held some variants to 64
        # registers and spilled (the stem's 64 x 64 tile, 2 groups of warps, sm_80); 2 blocks of
        # 256 threads still allow 128 registers. None with a K split (its tail: 2 spilled
        # there, none ran at 75-80 registers) or 512 threads (128 registers already)
        call.min_blocks = 2 if threads <= 256 and geo.ksplit == 1 else 0
        assert 4 * b_rows <= 32, "a thread's halves fit one word a stage"
    p.update(M=geo.m, K=geo.k, KK=int(p["KD"]) * int(p["KH"]) * int(p["KW"]),  # type: ignore[call-overload]
             lda=geo.k if tf32 else conversion.columns, OPIX=opix, NCOLS=geo.ncols,  # type: ignore[union-attr]
             BM=bm, BN=bn, BK=bk, WARPS_M=geo.warps_m, WARPS_N=geo.warps_n, SPLIT=geo.split,
             KSPLIT=geo.ksplit, SLICES_PER=geo.slices_per, TILES=geo.tiles, tf32=tf32,
             MT=math.ceil(geo.m / bm),
             KSTEPS=bk // (8 if tf32 else 16) // geo.split, MI=bm // geo.warps_m // 16,
             NI=bn // geo.warps_n // 8, threads=threads,
             a_chunks=bm * bk // (4 if tf32 else 8) // threads, vec_b=vec_b, quad_b=quad_b,
             # an input / output stored in 16 bits (its bits gathered as they are; pairs stored
             # as one 32-bit word)
             x_half=not tf32 and call.half("X0"), y_half=not tf32 and call.half("Y"),
             b_rows=b_rows, row_step=threads // columns,
             smem_bytes=max(slices, 4 * bm * bn if geo.split > 1 else 0),
             stages=pipe.stages, async_b=pipe.async_b, RS=conv_staged_row(bn),
             raw_type="unsigned" if call.half("X0") else "float")


def _conv_tiled_tile(m: int, n: int) -> int:
    """8 x 128 tiles for at most 8 channels, else 64 x 64 where they number FILL_BLOCKS, else 32."""
    return 8 if m <= 8 else 64 if math.ceil(m / 64) * math.ceil(n / 64) >= FILL_BLOCKS else 32


def _conv_tiled(call: CudaCall, graph: Graph, node: Node) -> None:
    """The float32 implicit-GEMM conv on matmul_tiled's tiles (GEMM_CONFIGS by tile_m: 64 x 64,
    or 32 x 32 where 64-tiles number under FILL_BLOCKS, 8 x 128 for at most 8 channels)."""
    p = call.params
    m = int(p["OC"])  # type: ignore[call-overload]
    opix = int(p["OD"]) * int(p["OH"]) * int(p["OW"])  # type: ignore[call-overload]
    ncols = int(p["N"]) * opix  # type: ignore[call-overload]
    taps = int(p["KD"]) * int(p["KH"]) * int(p["KW"])  # type: ignore[call-overload]
    tile = int(p.get("tile_m", _conv_tiled_tile(m, ncols)))  # type: ignore[call-overload]
    bm, bn, bk, tm, tn = GEMM_CONFIGS[tile]
    threads = (bn // tn) * (bm // tm)
    call.block = (threads, 1, 1)
    call.grid = (math.ceil(ncols / bn), math.ceil(m / bm), 1)
    p.update(M=m, K=int(p["C"]) * taps, KK=taps, OPIX=opix, NCOLS=ncols, BM=bm, BN=bn, BK=bk,  # type: ignore[call-overload]
             TM=tm, TN=tn, threads=threads, b_rows=bk * bn // threads, row_step=threads // bn)


def _conv_depthwise(call: CudaCall, graph: Graph, node: Node) -> None:
    """A block per `tiles`-th of an (n, oc) output plane: whole warps, at most THREADS, so a
    7 x 7 plane takes 64 threads rather than 256 (most of them idle)."""
    p = call.params
    opix = int(p["OD"]) * int(p["OH"]) * int(p["OW"])  # type: ignore[call-overload]
    threads = min(THREADS, math.ceil(opix / 32) * 32)
    tiles = math.ceil(opix / threads)
    call.block = (threads, 1, 1)
    call.grid = (int(p["N"]) * int(p["OC"]) * tiles, 1, 1)  # type: ignore[call-overload]
    p.update(OPIX=opix, threads=threads, tiles=tiles,
             KK=int(p["KD"]) * int(p["KH"]) * int(p["KW"]))  # type: ignore[call-overload]


SKINNY_WARPS = 8  # warps of a skinny-GEMM block, each a slice of K


def _skinny_gemm(call: CudaCall, graph: Graph, node: Node) -> None:
    """A block per 32 columns of C (and batch index); its warps split K."""
    p = call.params
    dims = list(p["batch"])  # type: ignore[call-overload]
    call.block = (32 * SKINNY_WARPS, 1, 1)
    call.grid = (math.ceil(int(p["N"]) / 32), 1, max(1, math.prod(dims)))  # type: ignore[call-overload]
    p.update(warps=SKINNY_WARPS, k_slice=max(1, math.ceil(int(p["K"]) / SKINNY_WARPS)),  # type: ignore[call-overload]
             batch_steps=[math.prod(dims[d + 1:]) for d in range(len(dims))])


ROW_CACHE_CHUNKS = 8  # the most chunks of a row one thread keeps in registers


def _row_block(call: CudaCall, row: int, contiguous: bool) -> None:
    """A row reduction's block and register cache: chunks of 4 elements where the row is
    contiguous and a multiple of 4 long (16-byte loads), else of 1; the row kept in registers
    (`cache` chunks a thread) where it fits in ROW_CACHE_CHUNKS, else read from memory on each
    pass (`cache` 0). 16-bit rows (--precision fp16 / bf16) go element by element. A row
    whose length is known at run time only is sized here by its upper bound, element by
    element (its rows' starts need not be 16-byte aligned)."""
    floats = call.ct.get("X0") == "float" and call.ct.get("Y") == "float"
    static = not isinstance(row, Dim)
    vec = 4 if contiguous and floats and static and row % 4 == 0 else 1
    row = int(row)
    threads = _reduction_threads(math.ceil(row / vec))
    chunks = math.ceil(row / (vec * threads))
    call.block = (threads, 1, 1)
    call.params.update(vec=vec, cache=chunks if contiguous and chunks <= ROW_CACHE_CHUNKS else 0)


def _rows(call: CudaCall, graph: Graph, node: Node) -> None:
    """Softmax: one block per (outer, inner) row of `row` elements `inner` apart (a row count
    known at run time only: blocks for its upper bound, those past the run's exit)."""
    p = call.params
    _row_block(call, p["row"], not isinstance(p["inner"], Dim) and p["inner"] == 1)  # type: ignore[arg-type]
    call.grid = (max(1, int(p["outer"]) * int(p["inner"])), 1, 1)  # type: ignore[call-overload]
    p["row_span"] = p["row"] * p["inner"]  # type: ignore[operator]
    if call.dims:
        p["rows_c"] = f"({c_size(p['outer'] * p['inner'], dim_names(graph))})"  # type: ignore[operator]
        _over_dims(call, graph, ("row", "inner", "row_span"))


def _layernorm(call: CudaCall, graph: Graph, node: Node) -> None:
    p = call.params
    _row_block(call, p["row"], True)  # type: ignore[arg-type]
    call.grid = (max(1, int(p["outer"])), 1, 1)  # type: ignore[call-overload]
    if call.dims:  # rows known at run time only, as _rows
        p["rows_c"] = f"({c_size(p['outer'], dim_names(graph))})"  # type: ignore[arg-type]
        _over_dims(call, graph, ("row",))


def _reduce(call: CudaCall, graph: Graph, node: Node) -> None:
    """One block per output element; its threads walk the reduced dims (coordinates from a
    linear index over them) at the output's kept coordinates."""
    p = call.params
    shape = list(p["in_shape"])  # type: ignore[call-overload]
    strides = contiguous_strides(tuple(shape))
    reduced = [d for d, s in enumerate(p["out_strides"]) if s == 0 and shape[d] != 1]  # type: ignore[arg-type, var-annotated]
    kept = [d for d in range(len(shape)) if d not in reduced]
    p.update(kept_dims=[shape[d] for d in kept], kept_strides=[strides[d] for d in kept],
             red_dims=[shape[d] for d in reduced], red_strides=[strides[d] for d in reduced])
    call.block = (_reduction_threads(int(p["count"])), 1, 1)  # type: ignore[call-overload]
    if call.dims:  # blocks for the upper bounds; every size as C over the run-time dims
        names = dim_names(graph)
        for key in ("kept_dims", "kept_strides", "red_dims", "red_strides"):
            p[key] = [f"({c_size(d, names)})" for d in p[key]]  # type: ignore[attr-defined]
        p["count"] = f"({c_size(p['count'], names)})"  # type: ignore[arg-type]
        p["outputs_c"] = f"({c_size(graph.types[node.outputs[0]].numel, names)})"
        call.grid = (max(1, int(graph.types[node.outputs[0]].numel)), 1, 1)
        call.uses_status = True
        return
    call.grid = (max(1, call.out_numel), 1, 1)


def _gather(call: CudaCall, graph: Graph, node: Node) -> None:
    if call.dims:  # the CPU's gather_count: count, outer, axis_dim as C over the dims
        p = call.params
        _run_time_sizes(call, graph, node)
        p.update(count=f"({p['count']})", axis_dim=f"({p['axis_dim']})",
                 inner_count=f"({p['inner']} * ({p['count']}))")
        return
    call.grid = (_blocks(call.out_numel), 1, 1)
    call.uses_status = True


def _instancenorm(call: CudaCall, graph: Graph, node: Node) -> None:
    """One block per (n, c) row (whole warps, at most 256 threads)."""
    call.block = (_reduction_threads(int(call.params["row"])), 1, 1)  # type: ignore[call-overload]
    call.grid = (max(1, int(call.params["rows"])), 1, 1)  # type: ignore[call-overload]


def _topk(call: CudaCall, graph: Graph, node: Node) -> None:
    """One thread per row (outer x inner of them)."""
    call.grid = (_blocks(int(call.params["outer"]) * int(call.params["inner"])), 1, 1)  # type: ignore[call-overload]


def _recurrent(call: CudaCall, graph: Graph, node: Node) -> None:
    """One block per (direction, batch row); whole warps over the gate rows, at most 256."""
    p = call.params
    call.block = (_reduction_threads(int(p["G"]) * int(p["H"])), 1, 1)  # type: ignore[call-overload]
    call.grid = (max(1, int(p["D"]) * int(p["B"])), 1, 1)  # type: ignore[call-overload]


def _generic(call: CudaCall, graph: Graph, node: Node) -> None:
    """The generic kernel: one thread runs the CPU target's body (cuda/kernels/generic.cu.j2),
    reporting a status it returns; the workspace where the body takes one (of some bytes)."""
    call.grid, call.block = (1, 1, 1), (1, 1, 1)
    call.uses_status = True
    kernel = node.ann.kernel
    call.workspace = kernel is not None and kernel.workspace_bytes > 0
    if not call.params.get("restrict_pointers", True):
        for operand in call.operands:
            operand.restrict = False


def _if_select(call: CudaCall, graph: Graph, node: Node) -> None:
    """A run-time If's select: one thread per element of its largest output."""
    call.grid = (_blocks(int(call.params["largest"])), 1, 1)  # type: ignore[call-overload]


def _unreachable(call: CudaCall, graph: Graph, node: Node) -> None:
    """The trap of a branch that could not be compiled: one warp sets the status word."""
    call.grid, call.block = (1, 1, 1), (32, 1, 1)
    call.uses_status = True


ATTENTION_WARPS = 4  # warps of an attention block, each owning BR / 4 of its query rows
STATIC_SHARED_BYTES = 48 * 1024
# the tensor-core attention takes fewer warps a block (16 query rows each) until it has this
# many blocks: about one per multiprocessor of a large GPU (an H100 has 132)
ATTENTION_MMA_FILL = 128  # a kernel's static __shared__ arrays may take at most this


def _attention(call: CudaCall, graph: Graph, node: Node) -> None:
    """Flash-style attention: a block per (batch index, BR query rows), flattened on grid x.
    BR = 32 rows (8 a warp), or 16 where 32-row blocks would not fill a large GPU, or a tuning
    database's `attn_rows` (down to 4: a row a warp); key tiles of
    BC = 64, or 32 where T <= 32 or where Q's rows, the Kt / V tile and the probabilities would
    pass 48 KiB."""
    p = call.params
    dims = list(p["batch"])  # type: ignore[call-overload]
    batch = max(1, math.prod(dims))
    s, d, e = int(p["S"]), int(p["D"]), int(p["E"])  # type: ignore[call-overload]
    br = int(p.get("attn_rows", 32 if batch * math.ceil(s / 32) >= FILL_BLOCKS else 16))  # type: ignore[call-overload]
    bc = 64 if int(p["T"]) > 32 else 32  # type: ignore[call-overload]
    # Kt running along d in memory: its tile staged d-fastest (a warp's loads contiguous) into
    # shared rows of BC + 1 (the stores free of bank conflicts)
    pad = int(_attention_layout(p, node, graph))
    if 4 * (br * d + max(d * (bc + pad), bc * e) + br * bc) > STATIC_SHARED_BYTES:
        bc = 32
    q_blocks = math.ceil(s / br)
    call.block = (32 * ATTENTION_WARPS, 1, 1)
    call.grid = (batch * q_blocks, 1, 1)
    p.update(KS=bc + pad, KT_BY_D=bool(pad), kv_floats=max(d * (bc + pad), bc * e))
    p.update(BR=br, BC=bc, WARPS=ATTENTION_WARPS, MR=br // ATTENTION_WARPS, NC=bc // 32,
             NE=math.ceil(e / 32), q_blocks=q_blocks,
             threads=call.block[0], batch_steps=[math.prod(dims[k + 1:]) for k in range(len(dims))])
    _attention_sizes(call, graph)


def _attention_layout(p: dict[str, object], node: Node, graph: Graph) -> bool:
    """Each operand's element strides (ops/attention.operand_strides: batch dims, then the two
    matrix dims of Q [S, D], Kt [D, T], V [T, E], Y [S, E]) and first elements (`offsets`: a
    part of a stored tensor, ops/attention.operand_offsets), as the kernels index them; True
    where Kt runs along d in memory (a folded Transpose of K [B, T, H, D]): its tiles are then
    staged d-fastest, so that a warp's loads are contiguous."""
    q, kt, v, y = operand_strides(node, graph)
    p.update(q_strides=q, kt_strides=kt, v_strides=v, y_strides=y,
             offsets=[*operand_offsets(node, graph), 0])
    return kt[-2] == 1 and kt[-1] != 1


ATTENTION_MMA_PAD = 8  # 16-bit values past each shared row: 16-byte rows, conflict-free ldmatrix


def _attention_mma(call: CudaCall, graph: Graph, node: Node) -> None:
    """Tensor-core attention: a block per (batch index, 16 x WARPS query rows), 64-key tiles
    (T rounded up to 16 where it is less);
    WARPS (attn_warps) 4, or fewer where 4-warp blocks would not fill a large GPU. D and E are
    padded to multiples of 16 (zeros): DP, EP; shared rows SQ, SK, SV in 16-bit values."""
    p = call.params
    dims = list(p["batch"])  # type: ignore[call-overload]
    batch = max(1, math.prod(dims))
    s, d, e = int(p["S"]), int(p["D"]), int(p["E"])  # type: ignore[call-overload]
    default = next((w for w in (4, 2) if batch * math.ceil(s / (16 * w)) >= ATTENTION_MMA_FILL), 1)
    warps = int(p.get("attn_warps", default))  # type: ignore[call-overload]
    br, bc = 16 * warps, min(64, -(-int(p["T"]) // 16) * 16)  # type: ignore[call-overload]
    dp, ep = -(-d // 16) * 16, -(-e // 16) * 16
    sq, sk, sv = dp + ATTENTION_MMA_PAD, bc + ATTENTION_MMA_PAD, ep + ATTENTION_MMA_PAD
    p.update(KT_BY_D=_attention_layout(p, node, graph))
    q_blocks = math.ceil(s / br)
    call.block = (32 * warps, 1, 1)
    call.grid = (batch * q_blocks, 1, 1)
    p.update(BR=br, BC=bc, WARPS=warps, DP=dp, EP=ep, SQ=sq, SK=sk, SV=sv, DK=dp // 16,
             NC8=bc // 8, NE8=ep // 8, qk_halves=max(br * sq, dp * sk), q_blocks=q_blocks,
             threads=call.block[0], batch_steps=[math.prod(dims[k + 1:]) for k in range(len(dims))])
    _attention_sizes(call, graph)


def _attention_sizes(call: CudaCall, graph: Graph) -> None:
    """The sizes the attention templates write into C: numbers in a static build. Over sizes
    known at run time (cuda_attention_*_dims) the grid above is for the upper bounds (batch
    extents, S); the batch extents, S, T, the strides and offsets become C over the dims, and
    a block past the run's batch or rows exits at once (`batch_c`)."""
    p = call.params
    batch = list(p["batch"])  # type: ignore[call-overload]
    p["batch"] = [int(b) for b in batch]  # the grid's extents: blockIdx.x -> b0, b1, ...
    p["batch_c"] = []
    if not call.dims:
        return
    names = dim_names(graph)
    p["batch_c"] = [(k, run_time_size(b, names, call.index_type))
                    for k, b in enumerate(batch) if isinstance(b, Dim)]
    _over_dims(call, graph, ("S", "T"),
               ("q_strides", "kt_strides", "v_strides", "y_strides", "offsets"))


LAUNCHES = {
    "elementwise.cu.j2": _elementwise, "copy.cu.j2": _per_element, "concat.cu.j2": _concat,
    "strided_copy.cu.j2": _strided, "matmul_tiled.cu.j2": _gemm, "matmul_mma.cu.j2": _mma_gemm,
    "matmul_wgmma.cu.j2": _wgmma_gemm, "matmul_wgmma_tma.cu.j2": _wgmma_tma_gemm,
    "matmul_skinny.cu.j2": _skinny_gemm, "softmax.cu.j2": _rows, "layernorm.cu.j2": _layernorm,
    "conv_direct.cu.j2": _per_element, "conv_mma.cu.j2": _conv_mma,
    "conv_depthwise.cu.j2": _conv_depthwise, "conv_tiled.cu.j2": _conv_tiled,
    "pool.cu.j2": _per_element, "reduce.cu.j2": _reduce,
    "gather.cu.j2": _gather, "attention.cu.j2": _attention,
    "attention_mma.cu.j2": _attention_mma,
    "if_select.cu.j2": _if_select, "unreachable.cu.j2": _unreachable,
    "generic.cu.j2": _generic, "pad.cu.j2": _per_element, "argreduce.cu.j2": _per_element,
    "instancenorm.cu.j2": _instancenorm, "resize.cu.j2": _per_element, "topk.cu.j2": _topk,
    "recurrent.cu.j2": _recurrent,
}


# where a kernel argument may point (launches.json's spaces; the C entry point's place codes
# are their positions here)
# ("tensormap": the launch plan's tensor_maps, by index, encoded into device memory at load)
SPACES = ("input", "output", "weights", "arena", "status", "tensormap")


@dataclass
class Argument:
    """Where a kernel argument points (`space`, one of SPACES): a model input or output (by
    position), the weights or the arena (by byte offset), or the run's status word. The runtime
    turns it into a device address once, at load."""

    space: str
    value: int = 0

    def to_json(self) -> list[object]:
        return [self.space, self.value]


@dataclass
class Launch:
    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int
    args: list[Argument] = field(default_factory=list)
    step: int = 0
    op: str = ""
    # a run-time If's guard (ir/guards.py) over the plan's conditions, by index: None always,
    # else a disjunction of conjunctions of (condition, polarity); [] never
    when: list[list[tuple[int, bool]]] | None = None
    stops: bool = False  # the trap of an unreachable branch: the run ends after it (PYC-E053)

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = {
            "kernel": self.kernel, "grid": list(self.grid), "block": list(self.block),
            "shared_bytes": self.shared_bytes, "args": [a.to_json() for a in self.args],
            "step": self.step, "op": self.op}
        if self.when is not None:
            record["when"] = [[[index, polarity] for index, polarity in term] for term in self.when]
        if self.stops:
            record["stops"] = True
        return record
