"""3x3 stride-1 convolution as Winograd F(4x4, 3x3) (codegen_templates/c/kernels/conv2d_winograd.c.j2).

The implicit GEMM runs near the FMA peak, so only fewer multiplies make a 3x3 conv faster:
Winograd computes a 4x4 output tile from a 6x6 input tile with 36 multiplies per channel pair
instead of 144. The weights are transformed at build time (U = G g G^T, planning/winograd.py:
36 matrices [Cout, Cin], the GEMM's A read in place); at run time each task takes a block of
tiles: the input transform V = B^T d B of every channel (each lane's rows by masked loads,
transposed into lanes; the padding masked) into NR-wide packed panels of its scratch, then
for each block of OB output channels the 36 GEMMs M_p = U_p V_p on the packed GEMM's
micro-kernel and the output transform Y = A^T M A with the conv's bias and fused epilogue,
stored with the borders' partial tiles cut.

It is a few bits less accurate than the direct sum (the transforms' constants grow the rounding
error): `pyc build --no-winograd` keeps every conv off it.
"""

from __future__ import annotations

from ...ir.graph import Graph, Node
from ...ir.types import DType
from ...ops.conv import Conv
from ...planning import winograd as wg
from ..kernel import KernelCandidate, Tunable
from . import gemm
from .team import REFERENCE_TEAM, planned_team

Params = dict[str, object]

# the smallest channel counts and output side that pay for the transforms (measured on Zen 4,
# docs/architecture.md): fewer channels leave the GEMMs too short to amortize them, a smaller
# map wastes most of its padded tiles. The kernel applies to any size (a tuning database may
# pick it); below these the cost model never does
MIN_CHANNELS = 16
MIN_OUTPUT_SIDE = 8
NEVER = 1e9  # the cost scale of a conv it does not pay for
# output channels per GEMM block: the block's 36 transformed outputs (OB x tiles) stay in L2
BLOCK_ROWS = 64
# scratch holders: at most this many tasks a thread of the planned team (each with its own
# scratch; a task takes every max_tasks()-th unit of work): 8 on 2 cores, room for imbalance
HOLDERS_PER_THREAD = 4


def max_tasks() -> int:
    return HOLDERS_PER_THREAD * planned_team()


# a map of few tiles (ResNet's 14x14: one block) is split into groups of output channels until
# there are as many units of work as the planned team has threads: each group recomputes its
# block's input transform (on one thread 2 groups cost 256 -> 256 on 14x14 ~0.1 ms, 4 groups
# ~0.3 ms of ~1 ms)
def group_tasks() -> int:
    return planned_team()


# co-selection (passes/coselect.py) may give a conv fewer scratch holders where the arena has
# no room for max_tasks() of them: as few as the planned team's threads keep them busy
def fewer_holders() -> tuple[int, int]:
    return (2 * planned_team(), group_tasks())
# ... and, below those, "lean" holders (`lean` in the parameters): one-vector panels of tiles
# and a GEMM block of MR output channels, about a quarter of a holder's scratch (ResNet-50's
# 56x56 convs: 180 KB instead of 631 KB), so that a conv keeps Winograd's fewer multiplies
# where the arena has only a few hundred KB to spare (the narrow panels cost the micro-kernel
# some of its reuse; the V block is still read from L2 by every GEMM block)
LINE_FLOATS = 16  # a 64-byte cache line of floats
# the input transform's lane offsets are 32-bit
MAX_INPUT_ELEMENTS = 2**31 - 1


def _geometry(node: Node, graph: Graph) -> dict[str, int]:
    op = Conv().kernel_params(node, graph)
    return {k: int(op[k]) for k in ("N", "C", "OC", "H", "W", "OH", "OW", "KH", "KW", "SH", "SW",  # type: ignore[call-overload]
                                    "DH", "DW", "PH", "PW", "G")}


def _shape_fits(node: Node, graph: Graph) -> bool:
    """2-D float32, 3x3, stride 1, no dilation, one group, no prologue, a constant weight only
    this node reads (the weights file holds it transformed), 32-bit input offsets."""
    x, w = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
    if x.rank != 4 or w.rank != 4 or x.dtype is not DType.F32 or node.ann.prologue:
        return False
    if not gemm.sole_constant_reader(node, graph, 1):
        return False
    v = _geometry(node, graph)
    return (v["KH"], v["KW"], v["SH"], v["SW"], v["DH"], v["DW"], v["G"]) == (3, 3, 1, 1, 1, 1, 1) \
        and v["N"] * v["C"] * v["H"] * v["W"] <= MAX_INPUT_ELEMENTS


def applies(isa: str, enabled: bool):  # noqa: ANN201 (a closure per ISA and build option)
    def check(node: Node, graph: Graph) -> bool:
        return enabled and isa in ("avx512", "avx2") and _shape_fits(node, graph)
    return check


def _tiles(v: dict[str, int]) -> tuple[int, int]:
    """(tile rows, tile columns) of one image."""
    return -(-v["OH"] // wg.TILE), -(-v["OW"] // wg.TILE)


def plan(isa: str, node: Node, graph: Graph, tuned: dict[str, object]) -> Params:
    """The block of tiles (NCP panels of NR tiles), the GEMM block of OB output channels, the
    groups of output channels tasks split (when tile blocks are fewer than twice the planned team), the
    task count and each task's scratch (floats)."""
    v = _geometry(node, graph)
    th, tw = _tiles(v)
    tiles = v["N"] * th * tw
    g = gemm.plan(isa, "float", 4, v["OC"], 1, v["C"], 1, tuned)
    nr, mr, lanes = int(g["NR"]), int(g["MR"]), int(g["lanes"])  # type: ignore[call-overload]
    # a small map (ResNet's 14x14: 16 tiles) would fill half of a 2-vector panel with padding
    lean = bool(tuned.get("lean"))
    narrow = lean or -(-tiles // lanes) * lanes * 4 <= -(-tiles // nr) * nr * 3
    nr = lanes if narrow else nr
    ncp = 1  # one panel of tiles a block: its 36 x Cin x NR inputs stay in L2 up to Cin = 256
    tb = ncp * nr
    blocks = -(-tiles // tb)
    ob = mr if lean else min(-(-BLOCK_ROWS // mr) * mr, -(-v["OC"] // mr) * mr)
    row_blocks = -(-v["OC"] // ob)
    team = planned_team()
    if team > REFERENCE_TEAM and blocks * row_blocks < 2 * team:
        # a larger team than the splits were measured for: shorter GEMM blocks give the
        # groups below enough units (ResNet-50's 56x56 convs: 7 blocks of one 64-channel row)
        rows_wanted = -(-2 * team // blocks)
        rows_each = -(-v["OC"] // rows_wanted)
        ob = max(mr, -(-rows_each // mr) * mr)
        row_blocks = -(-v["OC"] // ob)
    # 2 or 3 blocks (ResNet's 28x28: 32 + 17 tiles) would leave 2 threads unequal shares: 2
    # groups of output channels, units group-major, give each thread's half one whole group
    group = group_tasks()
    groups = 1 if blocks >= 2 * group else min(row_blocks, max(group, -(-group // blocks)))
    group_rows = -(-row_blocks // groups) * ob
    groups = -(-v["OC"] // group_rows)
    units = blocks * groups
    # `tasks` in the chosen parameters: fewer scratch holders (co-selection's smaller scratch)
    tasks = min(units, max_tasks(), int(tuned.get("tasks") or max_tasks()))  # type: ignore[call-overload]
    g = gemm.plan(isa, "float", 4, v["OC"], tb, v["C"], 1, tuned)
    if narrow:
        g = gemm.one_vector_panels(g, isa)
    # a position's block of V and of M is a cache line longer than its size: the 36 positions
    # of a tile are accessed together, and power-of-two strides would share one L1 set
    v_stride, m_stride = v["C"] * tb + LINE_FLOATS, ob * tb + LINE_FLOATS
    per_task = wg.POINTS * (v_stride + m_stride)
    return {"gemm": g, "TH": th, "TW": tw, "tiles": tiles, "TB": tb, "NCP": ncp,
            "blocks": blocks, "OB": ob, "groups": groups, "group_rows": group_rows,
            "units": units, "tasks": tasks, "per_task": per_task, "v_stride": v_stride,
            "m_stride": m_stride}


def _tuned(node: Node) -> dict[str, object]:
    """The chosen kernel's tuned parameters (a tuning database's MR), or none."""
    return dict(node.ann.kernel.params) if node.ann.kernel is not None else {}


def params(isa: str):  # noqa: ANN201 (a closure per ISA)
    def template_params(node: Node, graph: Graph, op: Params) -> Params:
        p = plan(isa, node, graph, _tuned(node))
        flops = Conv().flops(node, graph)
        g = p["gemm"]
        return {**p, "parallel": int(p["tasks"]) >= 2 and flops >= gemm.TASK_FLOPS,  # type: ignore[call-overload]
                "prefetch_rows": _prefetches_rows(g, node, graph),  # type: ignore[arg-type]
                "out_coords": ["n", "oc", "oh", "ow"]}
    return template_params


# transformed weights (36 x Cout x Cin) of this many bytes or more stream from memory each run
# (ResNet-50's 14x14 layers: 9.4 MB each, every element feeding one multiply-add per tile, 16
# tiles: 8 flops a byte, about a core's bandwidth at its FMA peak): the micro-kernel
# prefetches the rows its next call reads
PREFETCH_WEIGHT_BYTES = 1024 * 1024


def _prefetches_rows(g: Params, node: Node, graph: Graph) -> bool:
    """Whether the GEMM prefetches the next block of weight rows (MR floats a reduction step:
    NR a multiple of MR)."""
    v = _geometry(node, graph)
    nr, mr = int(g["NR"]), int(g["MR"])  # type: ignore[call-overload]
    return nr % mr == 0 and wg.POINTS * v["OC"] * v["C"] * 4 >= PREFETCH_WEIGHT_BYTES


def workspace(isa: str):  # noqa: ANN201 (a closure per ISA)
    def size(node: Node, graph: Graph) -> int:
        """Every task's transformed inputs (36 x Cin x TB) and GEMM block (36 x OB x TB), as
        the chosen parameters (a tuned MR sets OB) lay them out."""
        p = plan(isa, node, graph, _tuned(node))
        return int(p["tasks"]) * int(p["per_task"]) * 4  # type: ignore[call-overload]
    return size


def smaller_scratch(isa: str):  # noqa: ANN201 (a closure per ISA)
    def options(node: Node, graph: Graph) -> list[dict[str, object]]:
        """Parameters giving the conv less scratch, most first: fewer holders (each a task's V
        and M), never fewer than group_tasks() (below the planned team's threads the threads
        would idle), then as many lean holders."""
        tasks = int(plan(isa, node, graph, _tuned(node))["tasks"])  # type: ignore[call-overload]
        fewer = [k for k in fewer_holders() if k < tasks]
        return [{"tasks": k} for k in fewer] + [{"tasks": k, "lean": 1} for k in fewer]
    return options


# flop-equivalents per tile and channel of the input transform (6 masked row loads, a transpose
# and 12 six-point transforms) and per tile and output channel of the output transform (10
# transforms and 16 scalar stores through the epilogue), relative to the GEMM's 2 per
# multiply-add: fitted to single-thread timings on Zen 4 (16..128 channels, 14x14..56x56 maps:
# together ~2000 with gathers; the loads and transposes made the input side cheaper, kept as is)
INPUT_TRANSFORM_COST = 1000.0
OUTPUT_TRANSFORM_COST = 1000.0


def cost_scale(isa: str):  # noqa: ANN201 (a closure per ISA)
    def scale(node: Node, graph: Graph) -> float:
        """Winograd's estimated work over the direct conv's flops: the 36 GEMMs over whole
        panels of tiles (a small map's padded tiles and panel count too), plus the transforms."""
        v = _geometry(node, graph)
        if min(v["C"], v["OC"]) < MIN_CHANNELS or min(v["OH"], v["OW"]) < MIN_OUTPUT_SIDE:
            return NEVER
        p = plan(isa, node, graph, {})
        tiles = int(p["blocks"]) * int(p["TB"])  # type: ignore[call-overload]
        gemm_flops = 2.0 * wg.POINTS * v["C"] * v["OC"] * tiles
        transforms = tiles * (v["C"] * INPUT_TRANSFORM_COST * int(p["groups"])  # type: ignore[call-overload]
                              + v["OC"] * OUTPUT_TRANSFORM_COST)
        return (gemm_flops + transforms) / max(1, Conv().flops(node, graph))
    return scale


def why(node: Node, graph: Graph) -> str:
    v = _geometry(node, graph)
    th, tw = _tiles(v)
    return (f"Winograd F(4x4,3x3): 36 instead of 144 multiplies per 4x4 tile and channel pair "
            f"({v['N'] * th * tw} tiles of {v['OH']}x{v['OW']} outputs, {v['C']}->{v['OC']} "
            f"channels; weights transformed at build time)")


def transform(node: Node, graph: Graph, index: int) -> str | None:
    """The weights (input 1) are stored as U = G g G^T."""
    return wg.NAME if index == 1 else None


def candidate(isa: str, enabled: bool) -> KernelCandidate:
    return KernelCandidate(
        "conv2d_winograd", "conv2d_winograd.c.j2", applies(isa, enabled), 0.25, workspace(isa),
        stores_once=True, params=params(isa), takes_epilogue=True,
        tunables=(Tunable("mr", gemm.ISAS[isa].rows, "rows of the register block (micro-kernel)"),),
        cost_scale=cost_scale(isa), constant_transform=transform, why=why,
        smaller_scratch=smaller_scratch(isa),
        # each task's transformed tiles: memory_first (32 KiB cap) keeps the implicit GEMM
        workspace_fixed=True)
