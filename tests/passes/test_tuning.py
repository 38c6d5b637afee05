"""Autotuning (pyc_cli/tune.py) and the tuning database file (passes/tuning_db.py): the tuner
measures and records every tunable signature, a later build without --tune reads the entries
and writes the same artifact, a variant that computes wrong is rejected, a corrupt file is a
warning, entries of another CPU do not apply, and the budget bounds the work.
Timings are shrunk (few repetitions) to keep this fast on two cores."""

from __future__ import annotations

import hashlib
import json
import platform
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import pyc_cli
from pyc_cli.api import compile_graph
from pyc_cli.errors import PycWarning
from pyc_cli.ir.annotations import KernelChoice
from pyc_cli.passes.tuning import Measurement, kernel_signature, signature_key
from pyc_cli.passes.tuning_db import FileTuningDatabase, TuningEntry, machine_key
from pyc_cli.targets.cpu.kernels import CPU_KERNELS, _matmul_coords
from pyc_cli.targets.cpu.target import CpuTarget
from pyc_cli.targets.kernel import KernelCandidate
from pyc_cli.tune import (
    TuneOptions,
    kernels_digest,
    outputs_match,
    tune_graph,
    tuning_database,
    tuning_tasks,
)

MODELS = Path(__file__).resolve().parents[1] / "models"
MLP = (MODELS / "mlp.onnx", {"x": (2, 64)})
CNN = (MODELS / "cnn.onnx", {"image": (1, 3, 32, 32)})
FAST = TuneOptions(budget_s=60, warmup=1, repeat=3, min_time_s=0.0, confirm_rounds=1)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def open_db(path: Path, target: CpuTarget | None = None) -> FileTuningDatabase:
    """The section a build for `target` (default: this CPU) reads."""
    return tuning_database(target or CpuTarget(), path)


def test_tune_records_every_tunable_signature_and_a_later_build_reproduces_it(
        tmp_path: Path) -> None:
    db_path = tmp_path / "tuning.json"
    model, shapes = MLP
    tuned = pyc_cli.build(model, tmp_path / "tuned.pyc", input_shapes=shapes, tune=True,
                          tuning_db=db_path, tune_options=FAST)
    graph, _ = compile_graph(model, "balanced", shapes)
    tasks = tuning_tasks(graph, CpuTarget())
    assert [t.node.op for t in tasks] == ["MatMul"] * 3  # the three Gemm layers, distinct shapes
    db = open_db(db_path)
    for task in tasks:
        entry = db.entries[signature_key(task.signature)]
        labels = {m.label() for m in entry.measured}
        # constant weights: only the packed GEMM applies, its tunables make the variants
        assert {m.candidate for m in entry.measured} == {"matmul_packed_const"}
        assert len(labels) > 1 and entry.default.label() in labels
        assert entry.default.candidate == "matmul_packed_const" and not entry.default.params
        assert all(m.status == "ok" and m.median_ms > 0 for m in entry.measured)
        fastest = min(m.median_ms for m in entry.measured)
        assert entry.winner.median_ms is not None and entry.winner.median_ms >= fastest
    # the file is deterministic JSON: sorted keys, rewritten identically from what it holds
    text = db_path.read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=1) + "\n"
    # every tuned choice is in the decision log with its measured variants
    decisions = [json.loads(line) for line in (tuned.artifact / "decisions.jsonl").read_text()
                 .splitlines()]
    chosen = [d for d in decisions if d["action"] == "select_kernel"]
    assert len(chosen) == 3 and all("tuning database" in d["reason"] and d["measured"]
                                    for d in chosen)
    # a build without --tune reads the same database: the same artifact, byte for byte
    again = pyc_cli.build(model, tmp_path / "again.pyc", input_shapes=shapes, tuning_db=db_path)
    assert tree_digest(again.artifact) == tree_digest(tuned.artifact)
    # ... and it still computes the model (whatever won)
    with pyc_cli.load(again.artifact) as compiled:
        x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
        with pyc_cli.load(pyc_cli.build(model, tmp_path / "plain.pyc", input_shapes=shapes)
                          .artifact) as plain:
            np.testing.assert_allclose(compiled.run({"x": x})["logits"],
                                       plain.run({"x": x})["logits"], rtol=1e-4, atol=1e-5)
    # a second --tune finds every signature in the database and measures nothing
    report_lines = pyc_cli.build(model, tmp_path / "third.pyc", input_shapes=shapes, tune=True,
                                 tuning_db=db_path, tune_options=FAST).notes
    assert "0 variants; 3 already in the database" in report_lines[-1]


UNROLLED = Measurement("matmul_packed_const", (("unroll", 2),), 0.5)
DEFAULT = Measurement("matmul_packed_const", (), 1.0)


def test_the_database_choice_reaches_the_artifact(tmp_path: Path) -> None:
    """An entry naming non-default tunable values is what the build compiles (and explains)."""
    model, shapes = MLP
    graph, _ = compile_graph(model, "balanced", shapes)
    db = open_db(tmp_path / "db.json")
    for task in tuning_tasks(graph, CpuTarget()):
        db.record(task.signature, TuningEntry("MatMul", UNROLLED, DEFAULT, (UNROLLED, DEFAULT)))
    db.save()
    result = pyc_cli.build(model, tmp_path / "m.pyc", input_shapes=shapes,
                           tuning_db=tmp_path / "db.json")
    matmuls = [n.ann.kernel for n in result.graph.nodes if n.op == "MatMul"]
    assert all(k is not None and (k.candidate, k.params) == ("matmul_packed_const", {"unroll": 2})
               for k in matmuls)
    from pyc_cli.explain import explain_data

    tuning = explain_data(result.artifact)["tuning"]
    assert len(tuning) == 3
    assert all(t["winner"]["params"] == {"unroll": 2} and t["speedup"] == 2.0
               and t["runner_up"]["params"] == {} for t in tuning)


WRONG = KernelCandidate(
    "matmul_wrong", "matmul_naive.c.j2", cost_factor=9.0, takes_epilogue=True,
    # one product short in every dot product: compiles, runs, computes the wrong thing
    params=lambda node, graph, op: {**_matmul_coords(node, graph, op), "K": int(op["K"]) - 1})


class PlantedTarget(CpuTarget):
    kernels = {**CPU_KERNELS, "MatMul": (*CPU_KERNELS["MatMul"], WRONG)}


def test_a_variant_that_computes_wrong_is_rejected_and_logged(tmp_path: Path) -> None:
    model, shapes = MLP
    graph, ctx = compile_graph(model, "balanced", shapes)
    target = PlantedTarget()
    db = open_db(tmp_path / "db.json", target)
    # room for every variant: the packed GEMM's tunable values, then the planted candidate
    report = tune_graph(graph, ctx, target, db, replace(FAST, max_variants=64))
    assert len(report.tuned) == 3
    assert sorted(label for _, label in report.rejected) == ["matmul_wrong"] * 3
    for _, entry in report.tuned:
        statuses = {m.candidate: m.status for m in entry.measured}
        assert statuses["matmul_wrong"] == "wrong" and statuses["matmul_packed_const"] == "ok"
        assert entry.winner.candidate != "matmul_wrong"
        wrong = next(m for m in entry.measured if m.candidate == "matmul_wrong")
        assert wrong.median_ms is None  # never timed, never a winner


def test_outputs_match_is_strict_where_it_must_be() -> None:
    want = {"y": np.array([1.0, 2.0, np.nan, np.inf], np.float32)}
    assert outputs_match({"y": want["y"].copy()}, want, 1e-3)
    assert not outputs_match({"y": np.array([1.0, 2.1, np.nan, np.inf], np.float32)}, want, 1e-3)
    assert not outputs_match({"y": np.array([1.0, 2.0, 0.0, np.inf], np.float32)}, want, 1e-3)
    assert not outputs_match({"y": np.array([1.0, 2.0, np.nan, -np.inf], np.float32)}, want, 1e-3)
    ints = {"i": np.array([1, 2], np.int64)}
    assert not outputs_match({"i": np.array([1, 3], np.int64)}, ints, 1e-3)


@pytest.mark.parametrize("content", [b"{not json", b'{"format": "something-else", "version": 1}',
                                     b'{"format": "pyc-tuning-db", "version": 99, "machines": {}}',
                                     b"\xff\xfe\x00garbage", b"[1, 2, 3]"])
def test_a_corrupt_or_foreign_database_is_a_warning_and_ignored(tmp_path: Path,
                                                                 content: bytes) -> None:
    path = tmp_path / "tuning.json"
    path.write_bytes(content)
    with pytest.warns(PycWarning, match="PYC-E039"):
        db = open_db(path)
    assert db.entries == {}


def test_malformed_entries_are_a_warning(tmp_path: Path) -> None:
    key = open_db(tmp_path / "absent.json").machine
    path = tmp_path / "tuning.json"
    path.write_text(json.dumps({"format": "pyc-tuning-db", "version": 1, "machines": {
        key: {"entries": {"x": {"op": "MatMul"}}}}}))
    with pytest.warns(PycWarning, match="malformed"):
        assert open_db(path).entries == {}


def test_a_corrupt_database_does_not_change_the_build(tmp_path: Path) -> None:
    model, shapes = MLP
    path = tmp_path / "tuning.json"
    path.write_text("{ truncated")
    with pytest.warns(PycWarning):
        with_db = pyc_cli.build(model, tmp_path / "a.pyc", input_shapes=shapes, tuning_db=path)
    plain = pyc_cli.build(model, tmp_path / "b.pyc", input_shapes=shapes)
    assert tree_digest(with_db.artifact) == tree_digest(plain.artifact)


def test_saving_keeps_other_machines_and_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tuning.json"
    other = FileTuningDatabase.open(path, "cpu:x86_64:other:0")
    entry = TuningEntry("MatMul", Measurement("matmul_naive", (), 1.0),
                        Measurement("matmul_tiles", (), 2.0), ())
    graph, _ = compile_graph(MLP[0], "balanced", MLP[1])
    signature = kernel_signature(graph.nodes[0], graph, "cpu")
    other.record(signature, entry)
    other.save()
    mine = open_db(path)
    assert mine.lookup(signature) is None  # another machine's entry
    mine.record(signature, TuningEntry("MatMul", Measurement("matmul_tiles", (), 1.0),
                                       Measurement("matmul_tiles", (), 1.0), ()))
    mine.save()
    assert FileTuningDatabase.open(path, "cpu:x86_64:other:0").lookup(signature) == \
        KernelChoice("matmul_naive")
    assert open_db(path).lookup(signature) == KernelChoice("matmul_tiles")
    assert sorted(p.name for p in path.parent.iterdir()) == ["tuning.json"]  # no temp left
    # two runs of one machine, opened before either saved: both runs' entries are kept
    first, second = open_db(path), open_db(path)
    other_signature = kernel_signature(graph.nodes[1], graph, "cpu")
    second.record(other_signature, entry)
    first.save()
    second.save()
    assert open_db(path).lookup(signature) == KernelChoice("matmul_tiles")
    assert open_db(path).lookup(other_signature) == KernelChoice("matmul_naive")


def test_the_cpu_key_keeps_entries_from_another_machine_out(tmp_path: Path) -> None:
    base = {"arch": "x86_64", "march": "native", "resolved_march": "skylake",
            "features": ["avx", "avx2", "fma"]}
    assert machine_key("cpu", base) != machine_key("cpu", {**base, "features": ["avx", "avx2"]})
    assert machine_key("cpu", base) != machine_key("cpu", {**base, "resolved_march": "znver3"})
    assert machine_key("cpu", base) != machine_key("cuda", base)
    assert machine_key("cpu", base) == machine_key("cpu", {**base, "features": ["fma", "avx2",
                                                                                 "avx"]})
    # other kernel code (a new candidate, another tunable value, a changed template): apart
    assert kernels_digest(PlantedTarget()) != kernels_digest(CpuTarget())
    assert open_db(tmp_path / "x.json", PlantedTarget()).machine != open_db(tmp_path / "x.json").machine
    # end to end: entries for this CPU apply to a native build, not to a baseline-CPU build
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the baseline CPU below is an x86-64 -march")
    native, baseline = CpuTarget(), CpuTarget("x86-64")
    if open_db(tmp_path / "x.json", native).machine == open_db(tmp_path / "x.json", baseline).machine:
        pytest.skip("this CPU has no features beyond the x86-64 baseline")
    model, shapes = MLP
    graph, _ = compile_graph(model, "balanced", shapes)
    db = open_db(tmp_path / "db.json")
    for task in tuning_tasks(graph, native):
        db.record(task.signature, TuningEntry("MatMul", UNROLLED, UNROLLED, (UNROLLED,)))
    db.save()
    here = pyc_cli.build(model, tmp_path / "here.pyc", input_shapes=shapes,
                         tuning_db=tmp_path / "db.json")
    other = pyc_cli.build(model, tmp_path / "other.pyc", input_shapes=shapes, cpu="x86-64",
                          tuning_db=tmp_path / "db.json")
    def params(result: pyc_cli.BuildResult) -> list[dict]:
        return [n.ann.kernel.params for n in result.graph.nodes
                if n.op == "MatMul" and n.ann.kernel is not None]

    assert params(here) == [{"unroll": 2}] * 3 and params(other) == [{}] * 3


def test_the_budget_is_honoured(tmp_path: Path) -> None:
    model, shapes = CNN
    target = CpuTarget(layout="nchw")  # the plain convs' variants (a blocked conv has one)
    graph, ctx = compile_graph(model, "balanced", shapes, target)
    db = open_db(tmp_path / "db.json")
    assert len(tuning_tasks(graph, target)) == 4
    spent = tune_graph(graph, ctx, target, db, TuneOptions(budget_s=0.0))
    assert spent.tuned == [] and spent.budget_spent and len(spent.skipped) == 4
    assert spent.variants_timed == 0 and db.entries == {}
    # a budget shorter than one signature's search: at most the first signature's default
    # kernel is timed (if it started in time), then the search stops; an unfinished search
    # is not recorded
    start = time.perf_counter()
    short = tune_graph(graph, ctx, target, db, replace(FAST, budget_s=0.001))
    elapsed = time.perf_counter() - start
    assert short.budget_spent and short.tuned == [] and db.entries == {}
    assert short.variants_timed <= 1 and len(short.skipped) == 4
    assert elapsed < 10  # one compile and a few runs, not the model's 4 x 4 variants
    # the per-signature cap holds too: the default and one more variant
    capped = tune_graph(graph, ctx, target, db, replace(FAST, max_variants=2))
    assert len(capped.tuned) == 4
    assert all(len(entry.measured) == 2 for _, entry in capped.tuned)


def test_warnings_do_not_fire_for_a_missing_database(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_db(tmp_path / "absent.json").entries == {}


def test_descent_varies_one_tunable_at_a_time_from_the_best_point() -> None:
    """Coordinate descent over declared tunables (whatever they are): the defaults first, then
    each other value of one tunable with the others at the best point found so far."""
    from pyc_cli.targets.kernel import Tunable
    from pyc_cli.tune import descent

    candidate = KernelCandidate("gemm_x", "matmul.c.j2", tunables=(
        Tunable("MR", (4, 8, 16)), Tunable("KC", (256, 128)), Tunable("fixed", (1,))))
    best = [(("KC", 256), ("MR", 4), ("fixed", 1))]
    drawn = []
    for variant in descent(candidate, lambda: best[0]):
        drawn.append(dict(variant.params))
        if variant.params == (("KC", 256), ("MR", 8), ("fixed", 1)):
            best[0] = variant.params  # MR=8 measured fastest: KC is varied around it
    assert drawn == [{"KC": 256, "MR": 4, "fixed": 1}, {"KC": 256, "MR": 4, "fixed": 1},
                     {"KC": 256, "MR": 8, "fixed": 1}, {"KC": 256, "MR": 16, "fixed": 1},
                     {"KC": 256, "MR": 8, "fixed": 1}, {"KC": 128, "MR": 8, "fixed": 1}]
