"""Planner policies (issue #16, point 4): the memory modes are Policy objects, plugins register
through the `pyc.policies` entry points, and a policy that is not deterministic is refused."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tomllib
from conftest import REFERENCE_MODELS, invoke, onnxruntime_outputs

import pyc_cli
from pyc_cli.api import compile_graph
from pyc_cli.errors import PycError
from pyc_cli.planning import policy as policies
from pyc_cli.planning.arena import Block, conflicts, place
from pyc_cli.planning.policy import BUILTIN, MODES, Policy, get_policy, register
from pyc_cli.testing.policy_determinism import Spec, differences
from tests.cli.test_cli_reports import SCHEMA_PATH, schema_errors
from tests.planning.test_planner import check_plan

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "smallest_first_policy"
MLP, CNN, TRANSFORMER = (REFERENCE_MODELS[n] for n in ("mlp", "cnn", "transformer"))


def _spec(model: object) -> Spec:
    return Spec(model.path, tuple(f"{k}={','.join(map(str, v))}"  # type: ignore[attr-defined]
                                  for k, v in model.shapes.items()))  # type: ignore[attr-defined]


def _dist_info(root: Path, package: str, entry: str, value: str) -> Path:
    """What `pip install` leaves for a package with one `pyc.policies` entry point: the
    importlib.metadata finder reads it from any sys.path entry, as for an installed package."""
    info = root / f"{package}-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(f"[pyc.policies]\n{entry} = {value}\n")
    return root


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    policies.registry.cache_clear()
    yield
    policies.registry.cache_clear()


@pytest.fixture
def example_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   fresh_registry: None) -> dict[str, str]:
    """The example package on sys.path with its entry point (no pip); the environment a
    subprocess needs to see it too."""
    root = _dist_info(tmp_path / "site", "pyc_policy_smallest_first", "smallest_first",
                      "pyc_policy_smallest_first:SMALLEST_FIRST")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(root))
    path = os.pathsep.join([str(REPO), str(EXAMPLE), str(root), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def test_the_modes_are_the_built_in_policies_and_entry_points() -> None:
    assert MODES == ("latency_first", "balanced", "memory_first")
    assert [p.name for p in BUILTIN] == list(MODES) == list(policies.registry())[:3]
    # pyproject.toml registers each as any plugin's policy is registered
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    for name, value in declared["pyc.policies"].items():
        module, attribute = value.split(":")
        assert getattr(importlib.import_module(module), attribute) is get_policy(name)
    latency, balanced, memory = BUILTIN
    assert not latency.inplace and latency.runtime_arena is None
    assert balanced.inplace and not balanced.slow_inplace and balanced.runtime_arena == "reserve"
    assert memory.schedule_orders and memory.tile_channels and memory.rematerialize
    assert memory.workspace_cap < balanced.workspace_cap == latency.workspace_cap


def test_an_unknown_policy_names_the_known_ones() -> None:
    with pytest.raises(PycError) as error:
        compile_graph(MLP.path, "fastest", MLP.shapes)
    assert error.value.code == "E060"
    assert all(name in error.value.hint for name in MODES), error.value.hint


@pytest.mark.parametrize("bad,what", [
    (Policy("odd", placement=("first_fit",)), "placement 'first_fit'"),
    (Policy("odd", schedule_orders=("random",)), "schedule order 'random'"),
    (Policy("odd", runtime_arena="pool"), "runtime_arena 'pool'"),
])
def test_a_policy_naming_unknown_rules_is_refused(bad: Policy, what: str,
                                                   fresh_registry: None) -> None:
    with pytest.raises(PycError, match=what) as error:
        register(bad)
    assert error.value.code == "E060"


def test_a_built_in_policy_cannot_be_replaced(fresh_registry: None) -> None:
    with pytest.raises(PycError, match="two different policies") as error:
        register(Policy("balanced", inplace=False))
    assert error.value.code == "E060"
    with pytest.raises(PycError, match="not a pyc_cli.planning.policy.Policy"):
        register("balanced", entry_name="balanced")  # type: ignore[arg-type]


def test_the_example_plugin_loads_through_its_entry_point_and_builds(
        example_plugin: dict[str, str], tmp_path: Path, rng: np.random.Generator) -> None:
    """examples/smallest_first_policy: found by the entry point loader, under 200 lines, and
    its build places the smallest blocks first, validly, matching onnxruntime."""
    source = EXAMPLE / "pyc_policy_smallest_first" / "__init__.py"
    assert len(source.read_text().splitlines()) < 200
    assert "smallest_first" in policies.registry()
    assert list(policies.registry())[:3] == list(MODES)  # plugins after the built-in ones
    built = pyc_cli.build(CNN.path, tmp_path / "cnn.pyc", mode="smallest_first",
                          input_shapes=CNN.shapes)
    assert built.plan.algorithm == "smallest_first"
    check_plan(built.graph, built.context, built.plan, "smallest_first")
    manifest = json.loads((tmp_path / "cnn.pyc" / "manifest.json").read_text())
    assert manifest["mode"] == "smallest_first"
    assert manifest["policy"] == {"name": "smallest_first", "version": "1.0.0"}
    log = [json.loads(line) for line in
           (tmp_path / "cnn.pyc" / "decisions.jsonl").read_text().splitlines()]
    assert log[0]["action"] == "policy" and log[0]["after"] == "smallest_first@1.0.0"
    checks = [d for d in log if d["action"] == "determinism_check"]
    assert [d["pass"] for d in checks] == ["select_kernels", "plan_memory"]
    assert {d["serves"] for d in checks} == {"policy:smallest_first/determinism"}
    code, output = invoke("explain", str(tmp_path / "cnn.pyc"), "--json")
    explained = json.loads(output)
    assert code == 0 and explained["policy"] == "smallest_first@1.0.0"
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema_errors(explained, schema, schema) == []
    feeds = CNN.random_feeds(rng)
    expected = onnxruntime_outputs(CNN.path, feeds)
    with pyc_cli.load(tmp_path / "cnn.pyc") as model:
        got = model.run(feeds)
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5)


def test_the_example_plugin_is_byte_deterministic_in_fresh_processes(
        example_plugin: dict[str, str], tmp_path: Path) -> None:
    """`pyc build --policy smallest_first` in two processes (other hash seeds, paths)."""
    assert differences(_spec(MLP), "smallest_first", tmp_path, example_plugin) == []


@dataclass(frozen=True)
class RandomPlacement(Policy):
    """A policy that is not deterministic: it places the blocks in a random order."""

    def place(self, blocks: list[Block]) -> tuple[str, int]:
        import random

        order = list(range(len(blocks)))
        random.shuffle(order)
        return "random", place(blocks, order, conflicts(blocks))


def test_a_policy_with_random_decisions_is_refused(fresh_registry: None) -> None:
    register(RandomPlacement("random_placement"))
    with pytest.raises(PycError) as error:
        compile_graph(TRANSFORMER.path, "random_placement", TRANSFORMER.shapes)
    assert error.value.code == "E061"
    assert "random_placement@1 is not deterministic: the offsets" in error.value.what


@dataclass(frozen=True)
class RandomKernels(Policy):
    """Not deterministic either: a coin picks each node's kernel among the applicable ones."""

    def choose_kernel(self, node, graph, candidates):  # noqa: ANN001, ANN201 (the base's types)
        import random

        return random.choice(list(candidates))


def test_a_policy_with_random_kernel_choices_is_refused(fresh_registry: None) -> None:
    """The cnn's three convs have five candidates each: two asks agree on all three by chance
    once in 125 builds, so three builds all pass the check once in about two million."""
    register(RandomKernels("random_kernels"))
    refused = []
    for _ in range(3):
        try:
            compile_graph(CNN.path, "random_kernels", CNN.shapes)
        except PycError as error:
            refused.append(error)
    assert refused
    assert all(e.code == "E061" and "the kernel of node 'block" in e.what for e in refused)


SET_ORDER_PLUGIN = '''
from dataclasses import dataclass
from pyc_cli.planning.arena import conflicts, place
from pyc_cli.planning.policy import Policy

@dataclass(frozen=True)
class SetOrder(Policy):
    def place(self, blocks):
        names = {b.name for b in blocks}  # a set of str: its order follows the hash seed
        index = {b.name: i for i, b in enumerate(blocks)}
        return "set_order", place(blocks, [index[n] for n in names], conflicts(blocks))

SET_ORDER = SetOrder("set_order")
'''


def test_a_policy_in_set_order_is_caught_by_fresh_processes(tmp_path: Path,
                                                            fresh_registry: None) -> None:
    """A set's order is the same within one process (the in-build replay cannot see it) and
    another with another hash seed: two builds in fresh processes differ, and the check says so."""
    root = _dist_info(tmp_path / "site", "pyc_policy_set_order", "set_order",
                      "pyc_policy_set_order:SET_ORDER")
    (root / "pyc_policy_set_order.py").write_text(SET_ORDER_PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(root)])}
    found = differences(_spec(TRANSFORMER), "set_order", tmp_path / "builds", env)
    assert found and "memory_plan.json" in found, found


@pytest.mark.parametrize("mode", MODES)
def test_each_bundled_policy_builds_byte_identical_artifacts(mode: str, tmp_path: Path) -> None:
    """The CI determinism guard (make check-determinism builds every reference model so)."""
    assert differences(_spec(CNN), mode, tmp_path) == []


@pytest.mark.parametrize("mode", MODES)
def test_every_decision_names_the_rule_it_serves(mode: str) -> None:
    """`serves`: a policy rule (policy:NAME/RULE), a rule every policy shares (pass:PASS/ACTION)
    or a measurement; the planner's own decisions name the build's policy."""
    _, ctx = compile_graph(TRANSFORMER.path, mode, TRANSFORMER.shapes)
    records = [d.to_json() for d in ctx.decisions]
    assert all(isinstance(r.get("serves"), str) for r in records)
    planner = [r for r in records if r["action"] in policies.RULE_OF_ACTION
               and r["pass"] in ("plan_memory", "select_kernels")]
    assert planner and all(r["serves"].startswith(f"policy:{mode}/") for r in planner)
    kernels = [r for r in records if r["action"] == "select_kernel"]
    assert kernels and {r["serves"] for r in kernels} <= {f"policy:{mode}/choose_kernel",
                                                         "tuning:measured"}
    assert records[0]["action"] == "policy" and records[0]["after"] == get_policy(mode).label
