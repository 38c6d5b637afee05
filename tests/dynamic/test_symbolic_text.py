"""The IR text of a graph with symbolic dims (issue #15) reads back: a `dim` line bounds each
named dim, and types and int attributes hold their expressions."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyc_cli import api
from pyc_cli.ir.symbolic import Dim, DimBounds, floor_div, parse_input_shapes
from pyc_cli.ir.text import blob_key, format_type, parse_graph, print_graph
from pyc_cli.ir.types import DType, TensorType
from tests.dynamic.models import encoder_block


def test_a_compiled_symbolic_graph_round_trips(tmp_path: Path) -> None:
    shapes, _ = parse_input_shapes(["x=batch:2..9,16,64"])
    graph, _ = api.compile_graph(encoder_block(tmp_path), "balanced", shapes, "cpu")
    text = print_graph(graph)
    assert text.splitlines()[1] == 'dim "batch" in [2,9]'
    again = parse_graph(text, {blob_key(a): a for a in graph.constants.values()})
    assert print_graph(again) == text
    batch = shapes["x"][0]
    assert again.types[again.outputs[0]].shape == (batch, 16, 64)
    assert again.nodes[0].attrs["shape"] == [batch, 16, 64]  # pyc.Elementwise's ints


@pytest.mark.parametrize("build", [
    lambda b, s: 2 * b * s + 1, lambda b, s: floor_div(s - 1, 2) + 1, lambda b, s: b ** 2,
    lambda b, s: s - 3, lambda b, s: -2 * b + 100, lambda b, s: b * floor_div(s + 3, 4)])
def test_expressions_read_back(build) -> None:  # noqa: ANN001 (a lambda)
    bounds = {"batch": DimBounds("batch", 1, 8), "seq": DimBounds("seq", 4, 512)}
    dim = build(Dim.var(bounds["batch"]), Dim.var(bounds["seq"]))
    lines = "".join(f"dim \"{b.name}\" in [{b.lo},{b.hi}]\n" for name, b in sorted(bounds.items())
                    if name in dim.dims())
    graph_text = (f"graph \"g\" opset=17\n{lines}"
                  f"input %\"x\" : {format_type(TensorType(DType.F32, (dim, 3)))}\noutput %\"x\"\n")
    graph = parse_graph(graph_text)
    assert graph.types["x"].shape == (dim, 3) and print_graph(graph) == graph_text


def test_an_unbounded_name_is_refused() -> None:
    with pytest.raises(ValueError, match="batch"):
        parse_graph("graph \"g\" opset=17\ninput %\"x\" : f32[\"batch\",3]\n")
