"""Passes on small graphs written in the IR's text form: each test states the graph before and
the printed graph after (the form golden files diff), so a pass's effect reads at a glance."""

from __future__ import annotations

from pyc_cli.ir.text import parse_graph, print_graph
from pyc_cli.ir.verify import verify
from pyc_cli.ops import registry
from pyc_cli.passes.canonicalize import canonicalize
from pyc_cli.passes.context import BuildOptions, PassContext
from pyc_cli.passes.eliminate_dead_code import eliminate_dead_code
from pyc_cli.passes.fold_constants import fold_constants
from pyc_cli.passes.fuse import fuse
from pyc_cli.targets import get_target


def _run(pass_fn, text: str) -> tuple[str, PassContext]:  # noqa: ANN001
    graph = parse_graph(text)
    verify(graph, registry.lookup)
    ctx = PassContext(BuildOptions(), target=get_target("cpu"))
    graph = pass_fn(graph, ctx)
    verify(graph, registry.lookup, after=pass_fn.__name__)
    return print_graph(graph), ctx


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines()]


def test_dead_code_and_its_constant_go() -> None:
    after, ctx = _run(eliminate_dead_code, '''
        graph "g" opset=17
        input %"x" : f32[3]
        const %"c" : f32[3] = [1.0,2.0,3.0]
        %"used" : f32[3] = Relu(%"x") name="relu"
        %"unused" : f32[3] = Add(%"x", %"c") name="add"
        output %"used"
    ''')
    assert _lines(after) == _lines('''
        graph "g" opset=17
        input %"x" : f32[3]
        %"used" : f32[3] = Relu(%"x") name="relu"
        output %"used"
    ''')
    assert [d.action for d in ctx.decisions] == ["remove_node", "remove_constants"]


def test_constant_arithmetic_folds_into_a_constant() -> None:
    after, _ = _run(fold_constants, '''
        graph "g" opset=17
        input %"x" : f32[2]
        const %"a" : f32[2] = [1.0,2.0]
        const %"b" : f32[2] = [0.5,-4.0]
        %"s" : f32[2] = Add(%"a", %"b") name="fold_me"
        %"y" : f32[2] = Mul(%"x", %"s") name="keep_me"
        output %"y"
    ''')
    assert 'const %"s" : f32[2] = [1.5,-2.0]' in _lines(after)
    assert not any("fold_me" in line for line in _lines(after))


def test_identity_is_removed_by_canonicalize() -> None:
    after, _ = _run(canonicalize, '''
        graph "g" opset=17
        input %"x" : f32[4]
        %"i" : f32[4] = Identity(%"x") name="identity"
        %"y" : f32[4] = Relu(%"i") name="relu"
        output %"y"
    ''')
    assert _lines(after)[-2:] == ['%"y" : f32[4] = Relu(%"x") name="relu"', 'output %"y"']


def test_an_elementwise_chain_fuses_into_one_program() -> None:
    after, _ = _run(fuse, '''
        graph "g" opset=17
        input %"x" : f32[2,3]
        const %"b" : f32[3] = [1.0,2.0,3.0]
        %"s" : f32[2,3] = Add(%"x", %"b") name="add"
        %"r" : f32[2,3] = Relu(%"s") name="relu"
        %"y" : f32[2,3] = Sigmoid(%"r") name="sigmoid"
        output %"y"
    ''')
    nodes = [line for line in _lines(after) if line.startswith('%"y"')]
    assert len(nodes) == 1 and "pyc.Elementwise(" in nodes[0]
    assert 'fused_from=strings["add","relu","sigmoid"]' in nodes[0]
    assert not any(line.startswith(('%"s"', '%"r"')) for line in _lines(after))
