"""ir/guards.py: the run conditions derived from a graph with run-time Ifs (pyc.If)."""

from __future__ import annotations

from pyc_cli.ir import guards
from pyc_cli.ir.graph import Graph, Node


def _graph(nodes: list[Node], outputs: list[str]) -> Graph:
    return Graph("g", ["x", "flag"], outputs, nodes, {}, {}, 17)


def test_branch_nodes_need_their_branch_and_shared_nodes_run_always() -> None:
    nodes = [Node("Relu", "shared", ["x"], ["s"]),          # read by both branches
             Node("Greater", "cond", ["s", "x"], ["c"]),
             Node("Neg", "then_a", ["s"], ["ta"]),
             Node("Exp", "then_b", ["ta"], ["tb"]),
             Node("Abs", "else_a", ["s"], ["ea"]),
             Node("pyc.If", "pick", ["c", "tb", "ea"], ["y"])]
    found = guards.run_conditions(_graph(nodes, ["y"]))
    then, other = frozenset({frozenset({("c", True)})}), frozenset({frozenset({("c", False)})})
    assert found == {"shared": guards.ALWAYS, "cond": guards.ALWAYS, "then_a": then,
                     "then_b": then, "else_a": other, "pick": guards.ALWAYS}


def test_nested_conditions_and_merging() -> None:
    nodes = [Node("Not", "inner_cond", ["flag"], ["c2"]),
             Node("Neg", "deep", ["x"], ["d"]),          # outer else, inner then
             Node("Abs", "mid", ["x"], ["m"]),           # outer else, inner else
             Node("pyc.If", "inner", ["c2", "d", "m"], ["i"]),
             Node("Exp", "both", ["x"], ["b"]),           # read by the outer then and inner's else
             Node("Add", "mix", ["i", "b"], ["e"]),
             Node("pyc.If", "outer", ["flag", "b", "e"], ["y"])]
    found = guards.run_conditions(_graph(nodes, ["y"]))
    assert found["deep"] == frozenset({frozenset({("flag", False), ("c2", True)})})
    assert found["mid"] == frozenset({frozenset({("flag", False), ("c2", False)})})
    assert found["inner"] == found["mix"] == frozenset({frozenset({("flag", False)})})
    # needed under flag and under !flag: x&c | x&!c merges to always
    assert found["both"] is guards.ALWAYS
    # the inner condition is needed where the inner If is: !flag
    assert found["inner_cond"] == frozenset({frozenset({("flag", False)})})


def test_a_node_scheduled_before_its_condition_runs_always() -> None:
    nodes = [Node("Neg", "early", ["x"], ["t"]),           # before the condition is computed
             Node("Greater", "cond", ["x", "x"], ["c"]),
             Node("Abs", "late", ["x"], ["e"]),
             Node("pyc.If", "pick", ["c", "t", "e"], ["y"])]
    found = guards.run_conditions(_graph(nodes, ["y"]))
    assert found["early"] is guards.ALWAYS
    assert found["late"] == frozenset({frozenset({("c", False)})})
