"""Issue #15: run-time arena offsets (planning/runtime_offsets.py). A model with symbolic dims
built in memory_first (or balanced) computes its arena offsets at each run from the dims. The
plan must be valid at every shape within the bounds: no two values alive at once share a byte,
checked here from the offsets the generated C computes (NAME_arena_offsets) and the values'
sizes evaluated from their symbolic types, over a sweep of shapes with the extremes and 1; the
arena a small shape uses must be far below the upper-bound plan's; runs must match
onnxruntime at shapes that grow and shrink the arena, through the Python API and the C ABI;
latency_first and static builds keep fixed offsets."""

from __future__ import annotations

import ctypes
import itertools
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke, onnxruntime_outputs

import pyc_cli
from pyc_cli.api import BuildResult
from pyc_cli.errors import PycError
from pyc_cli.ir.symbolic import Dim, DimBounds, DimLike, parse_input_shapes
from pyc_cli.planning.arena import Block, assign_offsets
from pyc_cli.planning.liveness import Interval
from pyc_cli.planning.plan import symbolic_nbytes
from pyc_cli.planning.policy import OFFSET_ALGORITHMS
from pyc_cli.planning.runtime_offsets import (
    RuntimeOffsets,
    choose_runtime_offsets,
    runtime_offsets,
)
from pyc_cli.runtime.native import CompiledModel
from tests.dynamic.checks import compile_driver, poison_outputs
from tests.dynamic.models import attention_encoder, mlp
from tests.helpers import assert_strict_c11

RTOL, ATOL = 1e-4, 1e-5
SHAPES = ["ids=batch:1..4,seq:1..48", "mask=batch,seq"]
# every corner, 1, inner values; the order grows and shrinks the arena of a reused context
SWEEP = [(1, 1), (4, 48), (1, 48), (4, 1), (2, 7), (3, 33), (1, 2), (4, 47), (2, 48), (3, 1)]


def _encoder_feeds(rng: np.random.Generator, batch: int, seq: int) -> dict[str, np.ndarray]:
    mask = np.ones((batch, seq), np.int64)
    mask[:, seq - seq // 3:] = 0  # a padded tail
    mask[:, 0] = 1
    return {"ids": rng.integers(0, 50, (batch, seq)).astype(np.int64), "mask": mask}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildResult]:
    root = tmp_path_factory.mktemp("encoder")
    model_path = attention_encoder(root)
    shapes, _ = parse_input_shapes(SHAPES)
    return model_path, pyc_cli.build(model_path, root / "art", mode="memory_first",
                                     input_shapes=shapes)


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _check_disjoint(ranges: dict[str, tuple[int, int]], lives: dict[str, Interval],
                    blocks: dict[str, int], where: str) -> None:
    """Values in different blocks whose lifetimes overlap have disjoint byte ranges."""
    for a, b in itertools.combinations(sorted(ranges), 2):
        if blocks[a] == blocks[b] or not lives[a].overlaps(lives[b]):
            continue
        assert not _overlaps(ranges[a], ranges[b]), f"{a} {ranges[a]} and {b} {ranges[b]} {where}"


# ---------------------------------------------------------------------- the algorithm alone


@pytest.mark.parametrize("seed", range(40))
def test_random_plans_hold_every_shape(seed: int) -> None:
    """Random lifetimes and sizes (constants, multiples of batch, of batch*seq, floor-divisions),
    placed at the upper bounds by the planner's algorithms: at every point of a grid over the
    box, blocks alive together are disjoint, and the arena never exceeds the upper bound's."""
    rng = random.Random(seed)
    batch = Dim.var(DimBounds("batch", 1, rng.choice([1, 3, 8])))
    seq = Dim.var(DimBounds("seq", rng.choice([1, 2]), rng.choice([5, 64])))
    kinds = [lambda: rng.randrange(1, 5000), lambda: rng.randrange(1, 300) * batch,
             lambda: rng.randrange(1, 300) * batch * seq, lambda: 4 * ((seq + 1) // 2) + 12,
             lambda: rng.randrange(1, 9) * seq * seq * batch + rng.randrange(0, 99)]
    steps = rng.randrange(3, 30)
    sizes: dict[str, list[DimLike]] = {}
    blocks = []
    for k in range(rng.randrange(1, 40)):
        start = rng.randrange(steps)
        life = Interval(start, min(steps - 1, start + rng.choice([0, 1, 2, 5, steps])))
        size = rng.choice(kinds)()
        name = f"v{k}"
        sizes[name] = [size]
        blocks.append(Block(name, -(-int(size) // 64) * 64, life))
    _, fixed = assign_offsets(blocks, OFFSET_ALGORITHMS)
    args = (blocks, sizes, {b.name: (b.name, 0) for b in blocks},
            [batch.dims()["batch"], seq.dims()["seq"]], "grow", 64, fixed)
    # the upper bounds' order, and the order chosen among placements at several points
    for plan in (runtime_offsets(*args), choose_runtime_offsets(
            *args, lambda trial: assign_offsets(trial, OFFSET_ALGORITHMS))):
        plan = RuntimeOffsets.from_json(json.loads(json.dumps(plan.to_json())))  # as stored
        _check_plan(plan, sizes, {b.name: b.life for b in blocks}, fixed, batch, seq)


def _check_plan(plan: RuntimeOffsets, sizes: dict[str, list[DimLike]],
                lives: dict[str, Interval], fixed: int, batch: Dim, seq: Dim) -> None:
    upper = plan.upper_extent()
    assert upper <= fixed
    index = {b.name: k for k, b in enumerate(plan.blocks)}
    b_lo, b_hi = batch.dims()["batch"].lo, batch.dims()["batch"].hi
    s_lo, s_hi = seq.dims()["seq"].lo, seq.dims()["seq"].hi
    for b, s in itertools.product(sorted({b_lo, b_hi, (b_lo + b_hi) // 2}),
                                  sorted({s_lo, s_hi, (s_lo + s_hi) // 2, s_lo + 1})):
        env = {"batch": b, "seq": min(s, s_hi)}
        offsets, extent = plan.evaluate(env)
        ranges = {}
        for name, (k, _) in plan.values.items():
            size = sizes[name][0]
            nbytes = size.evaluate(env) if isinstance(size, Dim) else int(size)
            ranges[name] = (offsets[k], offsets[k] + nbytes)
            assert offsets[k] + nbytes <= extent
        _check_disjoint(ranges, lives, index, f"at {env} (order placed at {plan.placed_at})")
        assert plan.lower_bound_at(env) <= extent <= upper


# ---------------------------------------------------------------------- the emitted C


def test_the_emitted_offsets_never_overlap(encoder: tuple[Path, BuildResult]) -> None:
    """NAME_arena_offsets of the library, at every shape of a sweep: each value lies at its
    block's offset (plus its place in the block) with its size at that shape; values alive at
    once in different blocks never share a byte; the C and Python evaluations agree; the
    extent stays within the manifest's arena; a small shape uses far less than the fixed plan."""
    _, result = encoder
    art, graph, plan = result.artifact, result.graph, result.plan
    runtime = plan.runtime
    assert runtime is not None and runtime.arena == "grow"
    manifest = json.loads((art / "manifest.json").read_text())
    library = ctypes.CDLL(str(art / manifest["library"]))
    offsets_fn = getattr(library, f"{manifest['symbol_prefix']}_arena_offsets")
    offsets_fn.restype = ctypes.c_int64
    offsets_fn.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64)]
    lives = {t.name: Interval(t.start, t.end) for t in plan.tensors}
    workspace = {t.name: t.bytes for t in plan.tensors if t.name.endswith("#workspace")}
    names = [d.name for d in runtime.dims]
    assert names == ["batch", "seq"]
    grid = sorted(set(SWEEP) | {(b, s) for b in (1, 2, 4) for s in (1, 2, 24, 47, 48)})
    for batch, seq in grid:
        env = {"batch": batch, "seq": seq}
        dims = (ctypes.c_int64 * 2)(batch, seq)
        out = (ctypes.c_int64 * len(runtime.blocks))()
        extent = offsets_fn(dims, out)
        assert (list(out), extent) == runtime.evaluate(env)
        ranges = {}
        for value, (k, sub) in runtime.values.items():
            size = workspace[value] if value in workspace else symbolic_nbytes(graph, value)
            nbytes = size.evaluate(env) if isinstance(size, Dim) else int(size)
            ranges[value] = (out[k] + sub, out[k] + sub + nbytes)
            assert ranges[value][1] <= extent, (value, env)
        _check_disjoint(ranges, lives, {v: k for v, (k, _) in runtime.values.items()},
                        f"at batch {batch}, seq {seq}")
        assert extent <= manifest["arena_bytes"] <= runtime.fixed_arena_bytes
        if (batch, seq) == (4, 48):  # the plan's tensors are the run at the upper bounds
            assert {t.name: t.offset for t in plan.tensors} == \
                {v: start for v, (start, _) in ranges.items()}
    small = runtime.extent_at({"batch": 1, "seq": 1})
    assert small * 20 < manifest["arena_bytes"], (small, manifest["arena_bytes"])
    # on this model the kept order is as tight as any placement: the liveness lower bound
    for batch, seq in grid:
        env = {"batch": batch, "seq": seq}
        assert runtime.extent_at(env) == runtime.lower_bound_at(env), env


def test_memory_first_runs_match_onnxruntime(encoder: tuple[Path, BuildResult],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """One context grows and shrinks its arena over the sweep (the pool reuses it); outputs
    poisoned first; each run against onnxruntime."""
    model_path, result = encoder
    runtime = result.plan.runtime
    assert runtime is not None
    poison_outputs(monkeypatch)
    rng = np.random.default_rng(15)
    with pyc_cli.load(result.artifact) as model:
        for batch, seq in SWEEP:
            feeds = _encoder_feeds(rng, batch, seq)
            expected = onnxruntime_outputs(model_path, feeds)["y"]
            got = model.run(feeds)["y"]
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=RTOL,
                                       atol=ATOL * max(1.0, float(np.abs(expected).max())),
                                       err_msg=f"batch {batch}, seq {seq}")
            # the run's arena, as its context reports it, is the plan's for its shape
            assert model.stats.last_arena_bytes == runtime.extent_at({"batch": batch, "seq": seq})
        assert "last_arena_bytes" in model.stats.to_json()


def test_trim_frees_the_grown_arena_and_runs_stay_correct(
        encoder: tuple[Path, BuildResult], monkeypatch: pytest.MonkeyPatch) -> None:
    """model.trim() (NAME_context_trim on each idle context) releases what the runs grew, the
    largest run's arena so far; a second trim releases nothing; the next run grows the arena
    again to its own need only, and every run matches onnxruntime (outputs poisoned)."""
    model_path, result = encoder
    runtime = result.plan.runtime
    assert runtime is not None
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()

    def run(model: CompiledModel, batch: int, seq: int) -> None:
        feeds = _encoder_feeds(rng, batch, seq)
        expected = onnxruntime_outputs(model_path, feeds)["y"]
        np.testing.assert_allclose(model.run(feeds)["y"], expected, rtol=RTOL,
                                   atol=ATOL * max(1.0, float(np.abs(expected).max())),
                                   err_msg=f"batch {batch}, seq {seq}")
        assert model.stats.last_arena_bytes == runtime.extent_at({"batch": batch, "seq": seq})

    with pyc_cli.load(result.artifact) as model:
        assert model.trim() == 0  # no context yet
        run(model, 4, 48)
        run(model, 1, 2)  # the arena stays at the largest run's
        assert model.trim() == runtime.extent_at({"batch": 4, "seq": 48}) == \
            result.plan.arena_bytes
        assert model.trim() == 0
        run(model, 2, 7)  # regrown: to this run's need, not the largest's
        assert model.trim() == runtime.extent_at({"batch": 2, "seq": 7}) < result.plan.arena_bytes
        run(model, 4, 48)
        run(model, 3, 33)
    with pytest.raises(PycError) as info:
        model.trim()
    assert info.value.code == "E047"


# run in a fresh process: the resident memory of a memory_first MLP's context before and after
# trim (glibc would keep a freed heap block resident; NAME_context_trim calls malloc_trim)
_TRIM_RSS = """
import os, sys
import numpy as np
import pyc_cli

def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

with pyc_cli.load(sys.argv[1]) as model:
    x = np.random.default_rng().standard_normal((4096, 256)).astype(np.float32)
    y = model.run({"x": x})["y"]
    before = rss()
    released = model.trim()
    after = rss()
    small = model.run({"x": x[:3]})["y"]
    print(released, before - after, model.stats.last_arena_bytes, float(abs(y).max()), small.shape)
"""


def test_trim_returns_the_memory_to_the_system(tmp_path: Path) -> None:
    """An MLP whose memory_first arena reaches tens of MiB at batch 4096: after a run there,
    trim releases the whole arena, and the process's resident memory drops by at least 90% of
    it (on Linux); a balanced build of it holds no grown arena (no trim entry point: 0)."""
    model_path = mlp(tmp_path, sizes=(256, 2048, 2048, 256))
    shapes, _ = parse_input_shapes(["x=batch:1..4096,256"])
    art = pyc_cli.build(model_path, tmp_path / "mf", mode="memory_first", input_shapes=shapes)
    assert "_context_trim(" in (art.artifact / "src" / "model.h").read_text()
    if not Path("/proc/self/statm").exists():
        pytest.skip("resident memory is read from /proc")
    ran = subprocess.run([sys.executable, "-c", _TRIM_RSS, str(art.artifact)],
                         capture_output=True, text=True, check=True)
    released, dropped, used_after, _, _ = ran.stdout.split(maxsplit=4)
    assert int(released) == art.plan.arena_bytes > 32 << 20
    assert int(dropped) >= 0.9 * int(released), ran.stdout
    assert int(used_after) == art.plan.runtime.extent_at({"batch": 3})
    balanced = pyc_cli.build(model_path, tmp_path / "bal", mode="balanced", input_shapes=shapes)
    assert "_context_trim" not in (balanced.artifact / "src" / "model.c").read_text()
    with pyc_cli.load(balanced.artifact) as model:
        model.run({"x": np.ones((5, 256), np.float32)})
        assert model.trim() == 0


def test_the_c_abi_runs_memory_first(tmp_path: Path) -> None:
    """tests/c/shaped_driver.c on an MLP built memory_first: its arena grows from nothing on
    the first run; batches 1, 17, 64 match onnxruntime."""
    model_path = mlp(tmp_path, sizes=(64, 256, 128, 64), seed=6)
    shapes, _ = parse_input_shapes(["x=batch:1..64,64"])
    art = pyc_cli.build(model_path, tmp_path / "art", mode="memory_first",
                        input_shapes=shapes).artifact
    source = (art / "src" / "model.c").read_text()
    assert "prepare_arena" in source and "context->arena = NULL" in source
    for compiler in ("gcc", "clang"):  # no warning under the strict flags
        assert_strict_c11(compiler, art)
    exe = compile_driver(art, "shaped_driver.c", tmp_path / "driver")
    rng = np.random.default_rng(6)
    for batch in (1, 17, 64):
        x = rng.standard_normal((batch, 64)).astype(np.float32)
        x.tofile(tmp_path / "x.bin")
        ran = subprocess.run([str(exe), str(art / "weights.bin"), str(tmp_path / "x.bin"),
                              str(tmp_path / "y.bin"), str(batch), "64"],
                             capture_output=True, text=True, check=False)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        y = np.fromfile(tmp_path / "y.bin", np.float32).reshape(batch, 64)
        np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"],
                                   rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------- modes, logs, explain


def test_each_mode_says_how_it_places(tmp_path: Path) -> None:
    """latency_first: fixed offsets (no runtime_offsets, no offset code); balanced: run-time
    offsets in an arena reserved for the upper bounds; memory_first: grown on demand. The
    decision log and `pyc explain` say which, with the arena at the bounds."""
    model_path = mlp(tmp_path, sizes=(32, 96, 48, 16), seed=4)
    shapes, _ = parse_input_shapes(["x=batch:1..40,32"])
    expect = {"latency_first": (None, "fixed offsets"), "balanced": ("reserve", "allocated once"),
              "memory_first": ("grow", "grown on demand")}
    for mode, (policy, words) in expect.items():
        art = pyc_cli.build(model_path, tmp_path / mode, mode=mode, input_shapes=shapes).artifact
        plan = json.loads((art / "memory_plan.json").read_text())
        assert plan.get("runtime_offsets", {}).get("arena") == policy
        decisions = [json.loads(line) for line in (art / "decisions.jsonl").read_text().splitlines()]
        (sizes,) = [d for d in decisions if d["action"] == "symbolic_sizes"]
        assert words in sizes["reason"] and "batch 1..40" in sizes["reason"]
        assert ("plan_offsets" in (art / "src" / "model.c").read_text()) == (policy is not None)
        code, output = invoke("explain", str(art))
        assert code == 0, output
        output = " ".join(output.split())  # the console wraps long lines
        assert "Arena over the dims" in output and words in output
        if policy is not None:
            assert "batch=1" in output and "batch=40" in output
        code, output = invoke("explain", str(art), "--json")
        arena = json.loads(output)["memory"]["symbolic_arena"]
        assert arena["offsets"] == ("run time" if policy else "fixed")


def test_memory_first_builds_are_byte_identical(encoder: tuple[Path, BuildResult],
                                                tmp_path: Path) -> None:
    model_path, result = encoder
    shapes, _ = parse_input_shapes(SHAPES)
    again = pyc_cli.build(model_path, tmp_path / "again", mode="memory_first",
                          input_shapes=shapes).artifact
    first = json.loads((result.artifact / "manifest.json").read_text())["files"]
    assert json.loads((again / "manifest.json").read_text())["files"] == first


def test_per_node_and_profile_builds_grow_the_arena(tmp_path: Path) -> None:
    """`pyc run --per-node` and `--profile` build debug copies whose own entry points compute
    the offsets at the upper bounds and grow the memory_first arena before the first step."""
    model_path = mlp(tmp_path, sizes=(32, 48, 16), seed=6)
    art = tmp_path / "small.pyc"
    assert invoke("build", str(model_path), "-o", str(art), "--mode", "memory_first",
                  "--input-shape", "x=batch:1..8,32")[0] == 0
    code, output = invoke("run", str(art), "--random-inputs", "3", "--compare", "ort",
                          "--per-node")
    assert code == 0 and "every compared intermediate is within tolerance" in output, output
    code, output = invoke("run", str(art), "--random-inputs", "3", "--profile", "--repeat", "2")
    assert code == 0 and "matmul_packed_const_rows" in output, output
