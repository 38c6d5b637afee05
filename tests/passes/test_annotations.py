"""Typed annotations: compiler facts kept apart from ONNX attributes, printed in the text IR as
`ann{...}`, parsed back, copied with the graph and checked by the verifier."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import REFERENCE_MODELS, graph_differences

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir.annotations import Annotations, KernelChoice
from pyc_cli.ir.ewprogram import parse_program
from pyc_cli.ir.graph import Graph, Node
from pyc_cli.ir.text import blob_key, parse_graph, print_graph
from pyc_cli.ir.types import DType, TensorType
from pyc_cli.ir.verify import verify
from pyc_cli.ops import registry
from pyc_cli.targets import get_target


def conv_with_everything() -> Graph:
    """A conv carrying every kind of annotation (values need not make numerical sense)."""
    f32 = lambda *s: TensorType(DType.F32, s)  # noqa: E731
    types = {"x": f32(1, 2, 4, 4), "w": f32(3, 2, 1, 1), "b": f32(3), "s": f32(1, 2, 4, 4),
             "y": f32(1, 3, 4, 4)}
    # own inputs x, w, b; the epilogue's operand s; the prologue's operand x
    node = Node("Conv", "conv", ["x", "w", "b", "s", "x"], ["y"], {"kernel_shape": [1, 1]})
    node.ann = Annotations(
        kernel=KernelChoice("conv2d_im2col_gemm", {"tile": 16, "order": "nchw"}, 32768, 128),
        epilogue=parse_program(["t0:f32=Add(acc,in0)", "t1:f32=LeakyRelu(t0;{\"alpha\":0.1})"]),
        epilogue_from=["add", "leaky"], epilogue_first_input=3,
        prologue=parse_program(["t0:f32=Mul(in0,#f32:0.5)"]), prologue_from=["half"],
        prologue_inputs=1, stores_once=True, inplace_operand=0, tiled_from="conv_whole")
    w = np.arange(6, dtype=np.float32).reshape(3, 2, 1, 1)
    b = np.ones(3, np.float32)
    return Graph("g", ["x", "s"], ["y"], [node], types, {"w": w, "b": b}, 17)


def test_annotations_print_apart_from_onnx_attributes_and_parse_back() -> None:
    graph = conv_with_everything()
    verify(graph, registry.lookup)
    text = print_graph(graph)
    line = next(li for li in text.splitlines() if 'name="conv"' in li)
    attrs, ann = line.split(" ann{")
    assert attrs.endswith("{kernel_shape=ints[1,1]}")  # ONNX attributes only
    assert ann == (
        'kernel="conv2d_im2col_gemm", kernel_params="{\\"order\\": \\"nchw\\", \\"tile\\": 16}", '
        'workspace_cap=32768, workspace_bytes=128, tiled_from="conv_whole", '
        'epilogue=strings["t0:f32=Add(acc,in0)","t1:f32=LeakyRelu(t0;{\\"alpha\\":0.1})"], '
        'epilogue_from=strings["add","leaky"], epilogue_first_input=3, '
        'prologue=strings["t0:f32=Mul(in0,#f32:0.5)"], prologue_from=strings["half"], '
        'prologue_inputs=1, stores_once=1, inplace_operand=0}')
    blobs = {blob_key(a): a for a in graph.constants.values()}
    parsed = parse_graph(text, blobs)
    assert graph_differences(graph, parsed) == []
    assert parsed.nodes[0].ann == graph.nodes[0].ann
    assert print_graph(parsed) == text


def test_a_node_without_annotations_prints_no_ann_block() -> None:
    graph = conv_with_everything()
    graph.nodes[0].ann = Annotations()
    graph.nodes[0].inputs = ["x", "w", "b"]
    assert "ann{" not in print_graph(graph)


def test_onnx_attribute_named_like_an_annotation_stays_an_attribute() -> None:
    """LSTM's ONNX `layout` (or any attribute called `kernel`) is the model's, not the compiler's."""
    graph = conv_with_everything()
    graph.nodes[0].attrs["layout"] = 1
    parsed = parse_graph(print_graph(graph), {blob_key(a): a for a in graph.constants.values()})
    assert parsed.nodes[0].attrs == {"kernel_shape": [1, 1], "layout": 1}
    assert parsed.nodes[0].ann == graph.nodes[0].ann


def test_clone_copies_annotations_deeply() -> None:
    graph = conv_with_everything()
    clone = graph.clone()
    assert clone.nodes[0].ann == graph.nodes[0].ann
    assert clone.nodes[0].ann is not graph.nodes[0].ann
    kernel = clone.nodes[0].ann.kernel
    assert kernel is not None
    kernel.params["tile"] = 32
    clone.nodes[0].ann.epilogue_from.append("more")
    original = graph.nodes[0].ann
    assert original.kernel is not None and original.kernel.params["tile"] == 16
    assert original.epilogue_from == ["add", "leaky"]


@pytest.mark.parametrize("breakage, message", [
    (lambda ann: setattr(ann, "kernel", KernelChoice("matmul_tiles")), "no Conv candidate"),
    (lambda ann: setattr(ann, "kernel", KernelChoice("view")), "no Conv candidate"),
    (lambda ann: setattr(ann, "inplace_operand", 7), "in-place operand 7"),
    (lambda ann: setattr(ann, "epilogue_first_input", 9), "epilogue operands start at 9"),
    (lambda ann: setattr(ann, "prologue_inputs", 6), "prologue operands"),
])
def test_verifier_rejects_insane_annotations(breakage, message: str) -> None:  # noqa: ANN001
    graph = conv_with_everything()
    breakage(graph.nodes[0].ann)
    with pytest.raises(PycError) as info:
        verify(graph, registry.lookup, kernels=get_target("cpu").candidate_names)
    assert info.value.code == "E090" and message in info.value.what


@pytest.mark.parametrize("name", sorted(REFERENCE_MODELS))
def test_compiled_reference_models_keep_compiler_facts_out_of_attrs(name: str) -> None:
    path, shapes = REFERENCE_MODELS[name]
    graph, _ = pyc_cli.compile_graph(path, input_shapes=shapes)
    facts = {"kernel", "program", "fused_from", "tiled_from", "epilogue", "epilogue_from",
             "epilogue_first_input", "prologue", "prologue_from", "prologue_inputs",
             "workspace_bytes", "workspace_cap", "stores_once", "inplace_inputs",
             "inplace_operand"}
    for node in graph.nodes:
        assert not facts & set(node.attrs), (node.name, sorted(node.attrs))
        assert node.ann.kernel is not None, node.name
