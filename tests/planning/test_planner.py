"""Memory-planner invariants, checked by brute force on every plan we can make.

Plans come from the three reference models in all three modes, from randomly generated
DAG-shaped graphs, and from small graphs built to make in-place writes illegal.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import onnxruntime_outputs
from helpers import MODES, REFERENCE_MODELS, init, make_model, rand, vinfo, write_model
from onnx import helper

import pyc_cli
from pyc_cli.api import BuildResult
from pyc_cli.ir import guards
from pyc_cli.ir.graph import Graph
from pyc_cli.ops import registry
from pyc_cli.passes.context import PassContext
from pyc_cli.planning.plan import MemoryPlan
from pyc_cli.targets import get_target

ALIGNMENT = 64
node = helper.make_node


def compile_plan(path, mode: str, shapes=None) -> tuple[Graph, PassContext, MemoryPlan]:  # noqa: ANN001
    graph, ctx = pyc_cli.compile_graph(path, mode=mode, input_shapes=shapes)
    return graph, ctx, ctx.artifacts["memory_plan"]


def aligned(nbytes: int) -> int:
    return max(ALIGNMENT, -(-nbytes // ALIGNMENT) * ALIGNMENT)


@dataclass
class Storage:
    size: int
    start: int
    end: int


# ---------------------------------------------------------------- independent recomputations


def independent_liveness(graph: Graph) -> dict[str, tuple[int, int]]:
    """[definition step, last read step] for every node output (graph outputs live to the end)."""
    defined, last = {}, {}
    for step, n in enumerate(graph.nodes):
        for name in n.inputs:
            if name:
                last[name] = step
        for name in n.outputs:
            if name:
                defined[name] = step
    end = len(graph.nodes) - 1
    return {v: (s, end if v in graph.outputs else max(s, last.get(v, s)))
            for v, s in defined.items()}


def view_roots(graph: Graph) -> dict[str, str]:
    """The value whose bytes each node output really is (views follow their source)."""
    roots: dict[str, str] = {}
    for n in graph.nodes:
        is_view = registry.get(n.op).category == registry.VIEW
        for out in n.outputs:
            if out:
                roots[out] = roots.get(n.inputs[0], n.inputs[0]) if is_view else out
    return roots


def expected_arena_values(graph: Graph) -> set[str]:
    roots = view_roots(graph)
    outside = set(graph.inputs) | set(graph.outputs) | set(graph.constants)
    return {v for n in graph.nodes for v in n.outputs
            if v and v not in graph.outputs and roots[v] not in outside}


def storages_of(plan: MemoryPlan) -> dict[str, Storage]:
    groups: dict[str, Storage] = {}
    for t in plan.tensors:
        key = t.alias_of or t.name
        group = groups.setdefault(key, Storage(0, t.start, t.end))
        group.size = max(group.size, aligned(t.bytes))
        group.start, group.end = min(group.start, t.start), max(group.end, t.end)
    return groups


def recomputed_lower_bound(plan: MemoryPlan, runs: list[set[str]] | None = None) -> int:
    """The most bytes of storages live at one step; with run-time Ifs, of storages one run
    writes (`runs`: the tensors each choice of conditions computes)."""
    groups = storages_of(plan)
    if not groups:
        return 0
    members: dict[str, set[str]] = {}
    for t in plan.tensors:
        members.setdefault(t.alias_of or t.name, set()).add(t.name)
    last = max(s.end for s in groups.values())
    best = 0
    choices: list[set[str] | None] = list(runs) if runs is not None else [None]
    for ran in choices:
        active = [s for key, s in groups.items() if ran is None or members[key] & ran]
        best = max(best, max(sum(s.size for s in active if s.start <= step <= s.end)
                             for step in range(last + 1)))
    return best


def runs_of(graph: Graph) -> list[set[str]] | None:
    """With run-time Ifs (pyc.If): for each choice of their conditions, the values (and
    NODE#workspace scratch) the generated code computes, by the guards it runs under; checked
    against what that run needs, found independently: backwards from the graph outputs,
    through the taken operands of each pyc.If only. None without run-time Ifs."""
    ifs = [n for n in graph.nodes if n.op == "pyc.If"]
    if not ifs:
        return None
    names = sorted({n.inputs[0] for n in ifs if n.inputs[0] not in graph.constants})
    fixed = {n.inputs[0]: bool(graph.constants[n.inputs[0]].reshape(-1)[0])
             for n in ifs if n.inputs[0] in graph.constants}
    conditions = guards.run_conditions(graph)
    runs = []
    for bits in itertools.product((False, True), repeat=len(names)):
        choice = {**dict(zip(names, bits)), **fixed}
        ran = {n.name for n in graph.nodes if guards.holds(conditions[n.name], choice)}
        needed = set(graph.outputs)
        for n in reversed(graph.nodes):
            if not any(o in needed for o in n.outputs if o):
                continue
            assert n.name in ran, (n.name, choice)  # a node the run needs is run
            inputs = n.inputs
            if n.op == "pyc.If":
                count = len(n.outputs)
                first = 1 if choice[n.inputs[0]] else 1 + count
                inputs = [n.inputs[0], *n.inputs[first:first + count]]
            needed.update(v for v in inputs if v)
        runs.append({o for n in graph.nodes if n.name in ran for o in n.outputs if o}
                    | {n.name + "#workspace" for n in graph.nodes if n.name in ran})
    return runs


# ---------------------------------------------------------------- the invariant checker


def check_plan(graph: Graph, ctx: PassContext, plan: MemoryPlan, mode: str) -> dict[str, int]:
    """Assert every planner invariant; return a few counts so callers can check coverage."""
    label = f"{graph.name}/{mode}"
    assert plan.mode == mode and plan.alignment == ALIGNMENT
    tensors = {t.name: t for t in plan.tensors}
    assert len(tensors) == len(plan.tensors), f"{label}: duplicate tensor entries"

    # which values are in the arena at all (plus kernel workspaces), their sizes and lifetimes
    workspaces = {n.name + "#workspace": (step, n.ann.kernel.workspace_bytes)
                  for step, n in enumerate(graph.nodes)
                  if n.ann.kernel is not None and n.ann.kernel.workspace_bytes}
    # branch values a run-time If's branches compute straight into a graph output's buffer
    # (plan.output_values) hold no arena bytes
    assert all(graph.outputs.count(o) == 1 for o in plan.output_values.values()), label
    assert set(tensors) == (expected_arena_values(graph) - set(plan.output_values)) | \
        set(workspaces), label
    live = independent_liveness(graph)
    for t in plan.tensors:
        if t.name in workspaces:  # scratch lives exactly while its node runs
            step, size = workspaces[t.name]
            assert (t.start, t.end, t.bytes, t.alias_of) == (step, step, size, None), (label, t.name)
            continue
        assert t.bytes == graph.types[t.name].nbytes, (label, t.name)
        assert (t.start, t.end) == live[t.name], (label, t.name, (t.start, t.end), live[t.name])

    # alignment and bounds: storages start aligned; a value inside another's storage (a concat
    # slice, a view) sits where its elements do, aligned to its element size
    for t in plan.tensors:
        itemsize = graph.types[t.name].dtype.itemsize if t.name in graph.types else 1
        assert t.offset >= 0 and t.offset % (ALIGNMENT if t.alias_of is None else itemsize) == 0, \
            (label, t.name, t.offset)
        assert t.offset + t.bytes <= plan.arena_bytes, (label, t.name)

    # alias chains: alias_of names a root tensor of the plan; members sit inside its storage
    # (views and in-place results at its start, concat inputs at their slice)
    roots = view_roots(graph)
    for t in plan.tensors:
        if t.alias_of is not None:
            root = tensors.get(t.alias_of)
            assert root is not None and root.alias_of is None, (label, t.name, t.alias_of)
            assert t.offset >= root.offset, (label, t.name)
            if roots[t.name] != t.name or "in place" in t.reason:
                assert root.offset == t.offset or "slice" in tensors[roots[t.name]].reason, \
                    (label, t.name)
        if t.name in workspaces:
            continue
        if roots[t.name] != t.name:  # a view always shares its source's storage
            assert (t.alias_of or t.name) == (tensors[roots[t.name]].alias_of or roots[t.name])

    # no two tensors of different storages that are live at the same step, and computed in
    # one run (run-time Ifs: the two branches of one If never are), share a byte
    items = plan.tensors
    runs = runs_of(graph)
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            if (a.alias_of or a.name) == (b.alias_of or b.name):
                continue
            if runs is not None and not any(a.name in ran and b.name in ran for ran in runs):
                continue
            if a.start <= b.end and b.start <= a.end:
                assert a.offset + a.bytes <= b.offset or b.offset + b.bytes <= a.offset, (
                    f"{label}: {a.name} [{a.start},{a.end}] @{a.offset}+{a.bytes} overlaps "
                    f"{b.name} [{b.start},{b.end}] @{b.offset}+{b.bytes}")

    # a branch of a run-time If written straight into the If's output: at its start, of one
    # type, and no other member of that storage alive beside it is computed in the same run
    # (but the If's output, which is the branch's own bytes)
    selects = {}  # branch value -> the If output selecting it
    for n in graph.nodes:
        if n.op == "pyc.If":
            count = len(n.outputs)
            for k, v in enumerate(n.inputs[1:]):
                selects[v] = n.outputs[k % count]
    for t in plan.tensors:
        if "branch output" not in t.reason:
            continue
        out = selects[t.name]
        assert t.offset == tensors[out].offset and graph.types[t.name] == graph.types[out]
        for other in plan.tensors:
            if other.name in (t.name, out) or (other.alias_of or other.name) != t.alias_of \
                    or selects.get(other.name) == t.name:
                continue
            if other.start <= t.end and t.start <= other.end and runs is not None:
                assert not any(t.name in ran and other.name in ran for ran in runs), \
                    (label, t.name, other.name)

    # sizes
    assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.no_reuse_bytes, label
    assert plan.lower_bound_bytes == recomputed_lower_bound(plan, runs), label
    # without reuse every storage gets its own bytes; at most every non-view tensor does
    own = sum(aligned(t.bytes) for t in plan.tensors
              if t.name in workspaces or roots[t.name] == t.name)
    assert sum(s.size for s in storages_of(plan).values()) <= plan.no_reuse_bytes <= own, label

    # in-place writes
    producers = {o: (step, n) for step, n in enumerate(graph.nodes) for o in n.outputs if o}
    inplace = [t for t in plan.tensors if t.alias_of is not None and roots[t.name] == t.name
               and "in place" in t.reason]
    marked = [n for n in graph.nodes if n.ann.inplace_operand is not None]
    logged = [d for d in ctx.decisions if d.pass_name == "plan_memory" and d.action == "inplace"]
    assert len(inplace) == len(marked) == len(logged) == plan.inplace_count, label
    if mode == "latency_first":
        assert not inplace, f"{label}: in-place writes in latency_first"
    for t in inplace:
        step, n = producers[t.name]
        victim = n.inputs[n.ann.inplace_operand]
        # only fused elementwise loops (any operand) and row-wise kernels that read a row
        # before writing it (the input their kernel candidate declares) may write in place
        # (or an epilogue operand of a kernel that stores each element once, after reading it)
        row_input = n.ann.kernel.inplace_input if n.ann.kernel is not None else None
        epilogue_operands = registry.fused_inputs(n)[1] if n.ann.stores_once else []
        assert n.op == "pyc.Elementwise" or victim in epilogue_operands or (
            row_input is not None and n.ann.inplace_operand == row_input), (label, t.name)
        storage = t.alias_of
        assert victim in tensors and (tensors[victim].alias_of or victim) == storage, (label, t.name)
        assert victim not in graph.outputs and victim not in graph.inputs
        # not broadcast: the operand is read at exactly the index being written
        assert graph.types[victim].shape == graph.types[t.name].shape, (label, t.name, victim)
        assert graph.types[victim].dtype.itemsize == graph.types[t.name].dtype.itemsize
        # nothing that lived in this storage before is read after this step
        for other in plan.tensors:
            if (other.alias_of or other.name) == storage and other.start < step:
                assert other.end <= step, (label, t.name, "overwrites", other.name)
        # no other operand of the loop reads the same bytes under another name
        for operand in n.inputs:
            if operand != victim and operand in tensors:
                assert (tensors[operand].alias_of or operand) != storage, (label, t.name, operand)
    return {"inplace": len(inplace), "reused": int(plan.arena_bytes < plan.no_reuse_bytes),
            "tensors": len(plan.tensors)}


# ---------------------------------------------------------------- reference models


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(REFERENCE_MODELS))
def test_reference_model_plans(name: str, mode: str) -> None:
    path, shapes = REFERENCE_MODELS[name]
    graph, ctx, plan = compile_plan(path, mode, shapes)
    counts = check_plan(graph, ctx, plan, mode)
    assert counts["tensors"] > 0
    if name != "mlp":  # mlp has only two intermediates, live at once
        assert counts["reused"], f"{name}/{mode}: no byte was ever reused"


def test_transformer_uses_inplace_in_balanced_and_memory_first() -> None:
    path, shapes = REFERENCE_MODELS["transformer"]
    for mode in ("balanced", "memory_first"):
        graph, ctx, plan = compile_plan(path, mode, shapes)
        assert check_plan(graph, ctx, plan, mode)["inplace"] > 0, mode


# ---------------------------------------------------------------- random DAGs


def random_dag_model(seed: int) -> onnx.ModelProto:
    """A random DAG of Relu/Sigmoid/Tanh/Add/Mul/MatMul/Softmax/Transpose/Reshape nodes.

    Operands are mostly recent values (chains), sometimes old ones (diamonds, long lifetimes).
    """
    rng = np.random.default_rng(seed)
    first = (int(rng.choice([3, 4, 5])), int(rng.choice([5, 7, 8, 16])))  # odd byte sizes too
    values: list[tuple[str, tuple[int, int]]] = [("x", first), ("x2", first)]
    inputs = [vinfo("x", first), vinfo("x2", first)]
    nodes, inits, counter = [], [], [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def constant(array: np.ndarray) -> str:
        name = fresh("c")
        inits.append(init(name, array))
        return name

    def pick() -> tuple[str, tuple[int, int]]:
        if rng.random() < 0.65:
            return values[-1 - int(rng.integers(0, min(3, len(values))))]
        return values[int(rng.integers(0, len(values)))]

    for _ in range(int(rng.integers(4, 18))):
        name, shape = pick()
        op = str(rng.choice(["Relu", "Sigmoid", "Tanh", "Add", "Mul", "MatMul", "MatMul",
                             "Softmax", "Transpose", "Reshape", "AddBias", "ViewChain",
                             "CastF64", "Concat", "Slice"]))
        out = fresh("v")
        if op in ("Relu", "Sigmoid", "Tanh", "Softmax"):
            nodes.append(node(op, [name], [out]))
        elif op in ("Add", "Mul"):
            same = [v for v in values if v[1] == shape]
            other = same[int(rng.integers(0, len(same)))][0]
            nodes.append(node(op, [name, other], [out]))
        elif op == "AddBias":
            bias = rand(rng, 1, shape[1]) if rng.random() < 0.5 else rand(rng, shape[0], 1)
            nodes.append(node("Add", [name, constant(bias)], [out]))
        elif op == "MatMul":
            n = int(rng.choice([3, 4, 8, 16]))
            nodes.append(node("MatMul", [name, constant(rand(rng, shape[1], n, scale=0.3))],
                              [out]))
            shape = (shape[0], n)
        elif op == "Transpose":
            nodes.append(node("Transpose", [name], [out], perm=[1, 0]))
            shape = (shape[1], shape[0])
        elif op == "Reshape":  # a view, creating alias chains
            total = shape[0] * shape[1]
            target = (1, total) if rng.random() < 0.5 else (shape[1], shape[0])
            nodes.append(node("Reshape", [name, constant(np.array(target, np.int64))], [out]))
            shape = target
        elif op == "ViewChain":  # view of a view of a view
            mid, flat = fresh("u"), fresh("f")
            nodes.append(node("Unsqueeze", [name, constant(np.array([0], np.int64))], [mid]))
            nodes.append(node("Squeeze", [mid, constant(np.array([0], np.int64))], [flat]))
            nodes.append(node("Flatten", [flat], [out], axis=1))
        elif op == "CastF64":  # a wider intermediate, then back to float32
            wide = fresh("d")
            nodes.append(node("Cast", [name], [wide], to=onnx.TensorProto.DOUBLE))
            nodes.append(node("Softmax", [wide], [fresh("k")]))
            nodes.append(node("Cast", [nodes[-1].output[0]], [out], to=onnx.TensorProto.FLOAT))
        elif op == "Concat":
            same = [v for v in values if v[1] == shape]
            other = same[int(rng.integers(0, len(same)))][0]
            nodes.append(node("Concat", [name, other], [out], axis=0))
            shape = (2 * shape[0], shape[1])
        else:  # Slice: the first half of the rows (at least one)
            rows = max(1, shape[0] // 2)
            nodes.append(node("Slice", [name, constant(np.array([0], np.int64)),
                                        constant(np.array([rows], np.int64)),
                                        constant(np.array([0], np.int64))], [out]))
            shape = (rows, shape[1])
        values.append((out, shape))
    produced = values[2:]
    chosen = {produced[-1][0]}
    for _ in range(int(rng.integers(0, 3))):
        chosen.add(produced[int(rng.integers(0, len(produced)))][0])
    outputs = [vinfo(v, s) for v, s in produced if v in chosen]
    return make_model(nodes, inputs, outputs, inits, name=f"random{seed}")


RANDOM_SEEDS = list(range(30))


@pytest.fixture(scope="module")
def random_plans(tmp_path_factory: pytest.TempPathFactory) -> list:
    """(seed, mode, graph, ctx, plan) for every random graph in every mode."""
    directory = tmp_path_factory.mktemp("random_dags")
    plans = []
    for seed in RANDOM_SEEDS:
        path = write_model(random_dag_model(seed), directory, f"random{seed}.onnx")
        for mode in MODES:
            plans.append((seed, mode, *compile_plan(path, mode)))
    return plans


def test_random_dag_plans(random_plans: list) -> None:
    failures = []
    totals = {mode: {"inplace": 0, "reused": 0, "tensors": 0} for mode in MODES}
    for seed, mode, graph, ctx, plan in random_plans:
        try:
            counts = check_plan(graph, ctx, plan, mode)
        except AssertionError as exc:
            failures.append(f"seed {seed} mode {mode}: {exc}")
            continue
        for key, value in counts.items():
            totals[mode][key] += value
    assert not failures, "\n".join(failures)
    # the generator really exercises the interesting paths
    assert len(random_plans) >= 20 * len(MODES)
    assert totals["balanced"]["inplace"] > 0 and totals["memory_first"]["inplace"] > 0
    assert totals["latency_first"]["inplace"] == 0
    assert all(t["reused"] > 0 for t in totals.values())


def test_random_dags_have_views_and_multiple_outputs(random_plans: list) -> None:
    views = sum(any(t.alias_of and t.reason.startswith("view") for t in plan.tensors)
                for *_, plan in random_plans)
    multi = sum(len(graph.outputs) > 1 for _, _, graph, _, _ in random_plans)
    assert views > 0 and multi > 0


def test_memory_first_peak_is_never_above_balanced(random_plans: list) -> None:
    """memory_first may only add work (other offset algorithms, a better schedule) on top of
    balanced's aliasing rules, so its liveness peak can never be higher."""
    by_seed = {(seed, mode): plan for seed, mode, _, _, plan in random_plans}
    for seed in RANDOM_SEEDS:
        assert by_seed[(seed, "memory_first")].lower_bound_bytes <= \
            by_seed[(seed, "balanced")].lower_bound_bytes, seed


# ---------------------------------------------------------------- in-place legality


def _inplace_case(case: str) -> onnx.ModelProto:
    x, y = vinfo("x", (4, 8)), vinfo("q", (4, 8))
    if case == "legal":
        # r = Relu(s) where s dies at r: writing r over s is the textbook in-place case
        return make_model([node("Softmax", ["x"], ["s"]), node("Relu", ["s"], ["r"]),
                           node("Softmax", ["r"], ["q"])], [x], [y])
    if case == "read_later":
        return make_model([node("Softmax", ["x"], ["s"]), node("Relu", ["s"], ["r"]),
                           node("Softmax", ["r"], ["q"]), node("Softmax", ["s"], ["t"])],
                          [x], [y, vinfo("t", (4, 8))])
    if case == "read_later_through_view":
        return make_model([node("Softmax", ["x"], ["s"]),
                           node("Reshape", ["s", "shape"], ["v"]),
                           node("Relu", ["s"], ["r"]), node("Softmax", ["r"], ["q"]),
                           node("Softmax", ["v"], ["t"])],
                          [x], [y, vinfo("t", (8, 4))],
                          [init("shape", np.array([8, 4], np.int64))])
    if case == "graph_output":
        return make_model([node("Softmax", ["x"], ["s"]), node("Relu", ["s"], ["r"]),
                           node("Softmax", ["r"], ["q"])], [x], [vinfo("s", (4, 8)), y])
    if case == "graph_input":
        return make_model([node("Relu", ["x"], ["r"]), node("Softmax", ["r"], ["q"])], [x], [y])
    if case == "broadcast":
        # s is (1,8) and is read for every row of r: writing row 0 of r over it breaks rows 1..3
        return make_model([node("Softmax", ["z"], ["s"]), node("Add", ["x", "s"], ["r"]),
                           node("Softmax", ["r"], ["q"])], [x, vinfo("z", (1, 8))], [y])
    if case == "broadcast_column":
        # s is (4,1) and each element is read for a whole row of r
        return make_model([node("Softmax", ["z"], ["s"]), node("Mul", ["s", "w"], ["r"]),
                           node("Softmax", ["r"], ["q"])],
                          [vinfo("z", (4, 1)), vinfo("w", (4, 8))], [y])
    raise ValueError(case)


ILLEGAL_CASES = ["read_later", "read_later_through_view", "graph_output", "graph_input",
                 "broadcast", "broadcast_column"]


@pytest.mark.parametrize("mode", MODES)
def test_inplace_happens_when_legal_only_outside_latency_first(mode: str, tmp_path) -> None:  # noqa: ANN001
    path = write_model(_inplace_case("legal"), tmp_path)
    graph, ctx, plan = compile_plan(path, mode)
    check_plan(graph, ctx, plan, mode)
    r = next(t for t in plan.tensors if t.name == "r")
    relu = graph.producers()["r"]
    assert relu.op == "pyc.Elementwise"
    if mode == "latency_first":
        assert r.alias_of is None and plan.inplace_count == 0
        assert relu.ann.inplace_operand is None
    else:
        assert r.alias_of == "s" and plan.inplace_count == 1
        assert relu.inputs[relu.ann.inplace_operand] == "s"
        assert r.offset == next(t.offset for t in plan.tensors if t.name == "s")


@pytest.mark.parametrize("mode", ["balanced", "memory_first"])
@pytest.mark.parametrize("case", ILLEGAL_CASES)
def test_no_inplace_when_illegal(case: str, mode: str, tmp_path) -> None:  # noqa: ANN001
    path = write_model(_inplace_case(case), tmp_path)
    graph, ctx, plan = compile_plan(path, mode)
    check_plan(graph, ctx, plan, mode)
    producer = graph.producers()["r"]
    assert producer.op == "pyc.Elementwise", ops_of(graph)
    assert producer.ann.inplace_operand is None, case
    assert not [d for d in ctx.decisions if d.action == "inplace"], case
    assert plan.inplace_count == 0
    r = next(t for t in plan.tensors if t.name == "r")
    assert r.alias_of is None, case
    s = next((t for t in plan.tensors if t.name == "s"), None)
    if s is not None:  # s lives in the arena: r must have bytes of its own while s is live
        assert r.offset + r.bytes <= s.offset or s.offset + s.bytes <= r.offset or \
            s.end < r.start, case


def ops_of(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]


def test_residual_that_is_also_the_conv_input_is_never_overwritten(tmp_path: Path) -> None:
    """Conv(x) + x: the residual dies at the conv, but the conv still reads x for later output
    tiles, so the output must not take x's bytes (found by a CNN whose tiles got small)."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Relu", ["inp"], ["x"], name="pre"),
             helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "x"], ["y"], name="residual"),
             helper.make_node("Relu", ["y"], ["out"], name="post")]
    model = make_model(nodes, [vinfo("inp", [1, 16, 12, 12])], [vinfo("out", [1, 16, 12, 12])],
                       [init("w", rand(rng, 16, 16, 3, 3))])
    path = write_model(model, tmp_path)
    plain = get_target("cpu", layout="nchw")  # the plain conv kernels' in-place rule
    for mode in MODES:
        graph, _ = pyc_cli.compile_graph(path, mode=mode, target=plain)
        conv = next(n for n in graph.nodes if n.op == "Conv")
        assert "x" in registry.fused_inputs(conv)[1]  # the residual is an epilogue operand
        assert conv.ann.inplace_operand is None, mode


@pytest.mark.parametrize("case", ["batch_of_two", "output_is_the_concat", "input_used_twice"])
def test_concat_inputs_stay_separate_where_slices_are_not_possible(case: str, tmp_path: Path) -> None:
    """Producers write into a concat's slices only when each slice is one contiguous range
    (leading dims of 1), the concat output lives in the arena, and an input appears once."""
    batch = 2 if case == "batch_of_two" else 1
    second = "a" if case == "input_used_twice" else "b"
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="left"),
             helper.make_node("Sigmoid", ["x"], ["b"], name="right"),
             helper.make_node("Concat", ["a", second], ["cat"], axis=1, name="cat")]
    outputs = [vinfo("cat", [batch, 8, 3])]
    if case != "output_is_the_concat":
        nodes.append(helper.make_node("Tanh", ["cat"], ["y"], name="after"))
        outputs = [vinfo("y", [batch, 8, 3])]
    model = make_model(nodes, [vinfo("x", [batch, 4, 3])], outputs)
    path = write_model(model, tmp_path)
    for mode in MODES:
        graph, ctx = pyc_cli.compile_graph(path, mode=mode)
        plan = ctx.artifacts["memory_plan"]
        assert plan.concat_slices.get("cat", []) == [], (case, mode)
        check_plan(graph, ctx, plan, mode)
    # control: batch 1, distinct inputs, concat read later -> both inputs written in place
    control = make_model(nodes[:2] + [helper.make_node("Concat", ["a", "b"], ["cat"], axis=1,
                                                       name="cat"),
                                      helper.make_node("Tanh", ["cat"], ["y"], name="after")],
                         [vinfo("x", [1, 4, 3])], [vinfo("y", [1, 8, 3])])
    graph, ctx = pyc_cli.compile_graph(write_model(control, tmp_path, "control.onnx"),
                                       mode="latency_first")
    assert ctx.artifacts["memory_plan"].concat_slices == {"cat": [0, 1]}


# ---------------------------------------------------------------- memory_first: LRN in place


def _matches_onnxruntime(path: Path, out_dir: Path, mode: str, feeds: dict[str, np.ndarray],
                         cpu: str = "native") -> BuildResult:
    """Build `path` in `mode` for `cpu`, run it on `feeds` and assert every output matches
    onnxruntime."""
    built = pyc_cli.build(path, out_dir, mode=mode, cpu=cpu)
    expected = onnxruntime_outputs(path, feeds)
    with pyc_cli.load(out_dir) as compiled:
        got = compiled.run(feeds)
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5, err_msg=f"{mode} {name}")
    return built


def _lrn_model(size: int, shape: list[int], read_later: bool) -> onnx.ModelProto:
    """Relu -> LRN -> Sigmoid; with `read_later` the Relu output is also read after the LRN."""
    nodes = [node("Relu", ["x"], ["a"], name="relu"),
             node("LRN", ["a"], ["b"], name="lrn", size=size, alpha=0.3, beta=0.75, bias=1.5),
             node("Sigmoid", ["b"], ["y"], name="sigmoid")]
    if read_later:
        nodes.append(node("Add", ["y", "a"], ["z"], name="add"))
    return make_model(nodes, [vinfo("x", shape)], [vinfo("z" if read_later else "y", shape)])


@pytest.mark.parametrize("size,shape", [(5, [1, 19, 7, 7]), (3, [2, 8, 20, 20]),
                                        (9, [1, 6, 11, 13]), (1, [1, 4, 3, 3])])
def test_lrn_writes_over_its_input_only_in_memory_first(size: int, shape: list[int],
                                                        tmp_path: Path,
                                                        rng: np.random.Generator) -> None:
    """An LRN output at one position reads only that position's inputs: memory_first writes it
    over its dying input (the kernel keeps the channels later windows still read), the other
    modes keep their out-of-place kernel. Every mode matches onnxruntime."""
    path = write_model(_lrn_model(size, shape, read_later=False), tmp_path)
    feeds = {"x": (3 * rng.standard_normal(shape)).astype(np.float32)}
    bounds = {}
    for mode in MODES:
        built = _matches_onnxruntime(path, tmp_path / mode, mode, feeds)
        check_plan(built.graph, built.context, built.plan, mode)
        lrn = next(n for n in built.graph.nodes if n.op == "LRN")
        assert (lrn.ann.inplace_operand is not None) == (mode == "memory_first"), mode
        bounds[mode] = built.plan.lower_bound_bytes
    b = next(t for t in built.plan.tensors if t.name == "b")
    assert b.alias_of == "a" and "in place over a" in b.reason
    # the LRN step holds one activation instead of two
    assert bounds["memory_first"] < bounds["balanced"] == bounds["latency_first"]


def test_lrn_stays_out_of_place_when_its_input_is_read_later(tmp_path: Path,
                                                            rng: np.random.Generator) -> None:
    path = write_model(_lrn_model(5, [1, 12, 6, 6], read_later=True), tmp_path)
    feeds = {"x": rng.standard_normal((1, 12, 6, 6)).astype(np.float32)}
    built = _matches_onnxruntime(path, tmp_path / "mf", "memory_first", feeds)
    check_plan(built.graph, built.context, built.plan, "memory_first")
    lrn = next(n for n in built.graph.nodes if n.op == "LRN")
    assert lrn.ann.inplace_operand is None


# ---------------------------------------------------------------- memory_first: channel tiling


def _conv_pool_model(rng: np.random.Generator, case: str, batch: int = 1) -> onnx.ModelProto:
    """Conv -> per-channel ops -> pool -> a 1x1 conv reading the pooled tensor (so the pool
    output lives in the arena). `case` picks the chain, or makes tiling illegal."""
    channels, groups = (48, 3) if case == "grouped" else (32, 1)
    inits = [init("w", rand(rng, channels, 3 // groups, 3, 3, scale=0.3)),
             init("b", rand(rng, channels, scale=0.1)),
             init("w2", rand(rng, 8, channels, 1, 1, scale=0.3))]
    inputs = [vinfo("x", [batch, 3, 30, 30])]
    nodes = []
    if case == "prologue":  # BN + ReLU before the conv: fused into its input gathering
        inits += [init("si", rand(rng, 1, 3, 1, 1)), init("ti", rand(rng, 3, 1, 1))]
        nodes += [node("Mul", ["x", "si"], ["xs"]), node("Add", ["xs", "ti"], ["xt"]),
                  node("Relu", ["xt"], ["xa"])]
    nodes.append(node("Conv", ["xa" if case == "prologue" else "x", "w", "b"], ["c"],
                      name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=groups))
    if case in ("avgpool_affine", "computed_scale"):
        if case == "computed_scale":  # a per-channel scale that is an input, not a constant
            inputs.append(vinfo("s", [1, channels, 1, 1]))
        else:
            inits.append(init("s", 1 + rand(rng, 1, channels, 1, 1, scale=0.1)))
        inits.append(init("t", rand(rng, channels, 1, 1, scale=0.1)))
        nodes += [node("Mul", ["c", "s"], ["cs"]), node("Add", ["cs", "t"], ["ct"]),
                  node("Relu", ["ct"], ["r"]),
                  node("AveragePool", ["r"], ["p"], name="pool", kernel_shape=[3, 3],
                       strides=[2, 2], pads=[1, 1, 1, 1])]
    else:  # a same-size pool keeps as many bytes as the conv output: slices go in place
        stride = 1 if case == "same_size_pool" else 2
        nodes += [node("Relu", ["c"], ["r"]),
                  node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[3, 3],
                       strides=[stride, stride], pads=[1, 1, 1, 1])]
    nodes.append(node("Conv", ["p", "w2"], ["y"], name="head", kernel_shape=[1, 1]))
    side = 30 if case == "same_size_pool" else 15
    return make_model(nodes, inputs, [vinfo("y", [batch, 8, side, side])], inits)


def _feeds(model: onnx.ModelProto, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]
                                        ).astype(np.float32) for i in model.graph.input}


def _tile_decisions(built: BuildResult) -> list:
    return [d for d in built.context.decisions
            if d.pass_name == "plan_memory" and d.action in ("tile_channels", "keep_whole")]


@pytest.mark.parametrize("case", ["maxpool", "avgpool_affine", "same_size_pool", "prologue"])
def test_memory_first_tiles_conv_pool_chains_by_output_channels(case: str, tmp_path: Path,
                                                                rng: np.random.Generator,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """memory_first runs Conv -> ReLU -> pool as slices of output channels joined by one
    Concat: the full conv output is never stored, so the peak drops. Where the pooled output is
    large, each slice is written straight into its part of the Concat output (where it is
    small, the planner may prefer the copy). The other modes keep the chain whole; all match
    onnxruntime. Built for any CPU: the im2col GEMM is the conv kernel that takes the prologue
    (AVX2/AVX-512 run a 3x3 stride-1 conv as an implicit GEMM without one)."""
    model = _conv_pool_model(rng, case)
    path = write_model(model, tmp_path)
    feeds = _feeds(model, rng)
    for mode in MODES:
        built = _matches_onnxruntime(path, tmp_path / mode, mode, feeds, cpu="portable")
        check_plan(built.graph, built.context, built.plan, mode)
        convs = [n for n in built.graph.nodes if n.op == "Conv"]
        tiled = [d for d in _tile_decisions(built) if d.action == "tile_channels"]
        if mode != "memory_first":
            assert len(convs) == 2 and not tiled, mode
            continue
        assert len(tiled) == 1 and tiled[0].nodes[0] == "conv" and tiled[0].nodes[-1] == "pool"
        groups = int(tiled[0].extra["groups"])
        assert groups > 1 and len(convs) == groups + 1
        assert tiled[0].after < tiled[0].before
        concat = next(n for n in built.graph.nodes if n.op == "Concat")
        assert concat.outputs == ["p"] and concat.attrs["axis"] == 1
        if case == "same_size_pool":
            assert concat.ann.kernel_name == "in_place"
            assert built.plan.concat_slices[concat.name] == list(range(groups))
            assert all(t.alias_of == "p" for t in built.plan.tensors if t.name.startswith("p_"))
        # no conv slice's output is the full conv output; each slice keeps the fused input
        assert all(built.graph.types[c.outputs[0]].shape[1] == 32 // groups for c in convs[:-1])
        assert all(bool(c.ann.prologue) == (case == "prologue") for c in convs[:-1])
        with_tiling = built.plan.arena_bytes
    # the same build without the rewrite has a larger arena
    monkeypatch.setattr("pyc_cli.passes.plan_memory.tile_channels", lambda *args: [])
    untiled = pyc_cli.build(path, tmp_path / "untiled", mode="memory_first", cpu="portable")
    assert not [n for n in untiled.graph.nodes if n.op == "Concat"]
    assert with_tiling < untiled.plan.arena_bytes


@pytest.mark.parametrize("case,reason", [("batch_of_two", "batch 2"),
                                         ("computed_scale", "not a compile-time constant"),
                                         ("grouped", "grouped conv")])
def test_channel_tiling_is_refused_where_illegal(case: str, reason: str, tmp_path: Path,
                                                  rng: np.random.Generator) -> None:
    """Batch > 1 (a channel slice is not contiguous), a per-channel operand computed at run
    time, a grouped conv: the chain stays whole, the log says why, outputs still match."""
    model = _conv_pool_model(rng, case, batch=2 if case == "batch_of_two" else 1)
    path = write_model(model, tmp_path)
    built = _matches_onnxruntime(path, tmp_path / "mf", "memory_first", _feeds(model, rng))
    check_plan(built.graph, built.context, built.plan, "memory_first")
    assert [n.op for n in built.graph.nodes].count("Conv") == 2
    assert not [n for n in built.graph.nodes if n.op == "Concat"]
    decisions = _tile_decisions(built)
    assert len(decisions) == 1 and decisions[0].action == "keep_whole"
    assert reason in decisions[0].reason, decisions[0].reason
