"""Shape subgraphs die (issue #15, point 1): symbolic shape operands become attributes of their
consumers (passes/bind_shapes.py), a symbolic value read as data comes from one pyc.DimValues
node, and dead-code elimination removes the Shape -> Gather -> Unsqueeze -> Concat chains; a
real export with dynamic batch and sequence axes goes through every pass up to kernel
selection with every type symbolic and checked against concrete instances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from pyc_cli import api
from pyc_cli.errors import PycError
from pyc_cli.ir.graph import Graph
from pyc_cli.ir.symbolic import parse_input_shapes
from pyc_cli.ir.text import blob_key, parse_graph, print_graph
from pyc_cli.ops.propagate import check_symbolic, propagate_types
from tests.helpers import init, make_model, rand, write_model

MODELS = Path(__file__).resolve().parents[1] / "models"
BERT_SHAPES = ["input_ids=batch:1..8,seq:1..512", "attention_mask=batch,seq",
               "token_type_ids=batch,seq"]


def _front(model: Path, specs: list[str]) -> Graph:
    shapes, _ = parse_input_shapes(specs)
    graph, _ = api.compile_graph(model, "balanced", shapes, "cpu", stop_after="analyze_liveness")
    return graph


def _shape_arithmetic(graph: Graph) -> list[str]:
    """Nodes that compute on shapes: Shape/Size, and Gather/Concat/Unsqueeze/Cast/... whose
    inputs are all int64 vectors of at most 8 elements (a shape or an element of one)."""
    found = []
    for node in graph.nodes:
        if node.op in ("Shape", "Size"):
            found.append(node.name)
            continue
        ins = [graph.types[i] for i in node.present_inputs()]
        outs = [graph.types[o] for o in node.outputs if o]
        small = all(t.dtype.value == "i64" and t.rank <= 1 and int(t.numel) <= 8
                    for t in ins + outs)
        if node.op in ("Gather", "Concat", "Unsqueeze", "Squeeze", "Cast", "Mul", "Add", "Div",
                       "Equal", "Where", "Slice", "Reshape") and ins and small:
            found.append(node.name)
    return found


def test_a_bert_export_with_dynamic_axes_loses_its_shape_subgraphs(tmp_path: Path) -> None:
    """Tiny BERT (2 layers, hidden 32) exported by torch with dynamic batch and seq: after the
    front passes no shape arithmetic is left, every Reshape reads only its data, the output is
    [batch, seq, 32], and the symbolic types agree with concrete instances of the dims."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.models.make_dynamic_bert import export_dynamic_bert

    model = export_dynamic_bert(tmp_path / "bert.onnx")
    graph = _front(model, BERT_SHAPES)
    assert str(graph.types[graph.outputs[0]]) == "f32[batch,seq,32]"
    assert _shape_arithmetic(graph) == []
    reshapes = [n for n in graph.nodes if n.op == "Reshape"
                and str(graph.types[n.outputs[0]]).startswith("f32")]
    assert reshapes and all(len(n.inputs) == 1 for n in reshapes)
    assert {str(graph.types[n.outputs[0]]) for n in reshapes} == {"f32[batch,seq,2,16]",
                                                                  "f32[batch,seq,32]"}
    assert [str(graph.types[n.outputs[0]]) for n in graph.nodes if n.op == "pyc.Attention"] \
        == ["f32[batch,2,seq,16]"] * 2
    assert not any(a.dtype == object for a in graph.constants.values())
    check_symbolic(graph, propagate_types(graph))  # the instance check passes on the result
    text = print_graph(graph)
    assert 'shape=dims["batch","seq",-1,16]' in text and text == print_graph(graph)
    _assert_round_trip(graph)


def _assert_round_trip(graph: Graph) -> None:
    """The IR text of a symbolic graph parses back to the same types and prints the same."""
    text = print_graph(graph)
    back = parse_graph(text, {blob_key(a): a for a in graph.constants.values()})
    assert back.types == graph.types and print_graph(back) == text


def _reshape_by_shape_chain(tmp_path: Path) -> Path:
    """x[N, 6] -> Reshape to [Shape(x)[0], 2, 3] -> Mul by a weight; also y = x * N (the
    batch size read as data)."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsqueeze"),
             helper.make_node("Concat", ["n1", "tail"], ["target"], name="concat", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["r"], name="reshape"),
             helper.make_node("Mul", ["r", "w"], ["y"], name="mul"),
             helper.make_node("Cast", ["n"], ["nf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "nf"], ["z"], name="scale")]
    model = make_model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 6])],
        [init("zero", np.array(0, np.int64)), init("axes", np.array([0], np.int64)),
         init("tail", np.array([2, 3], np.int64)), init("w", rand(rng, 2, 3))])
    return write_model(model, tmp_path)


def test_a_reshape_target_from_shape_becomes_an_attribute(tmp_path: Path) -> None:
    graph = _front(_reshape_by_shape_chain(tmp_path), ["x=batch:1..16,6"])
    (reshape,) = [n for n in graph.nodes if n.op == "Reshape"]
    assert reshape.inputs == ["x"] and str(graph.types["r"]) == "f32[batch,2,3]"
    assert [str(d) for d in reshape.attrs["shape"]] == ["batch", "2", "3"]
    assert not [n for n in graph.nodes if n.op in ("Shape", "Gather", "Concat", "Unsqueeze")]
    # the batch size read as data (Cast to float, then Mul) comes from the run-time dims
    (dims,) = [n for n in graph.nodes if n.op == "pyc.DimValues"]
    assert [str(v) for v in dims.attrs["values"]] == ["batch"]
    assert str(graph.types[dims.outputs[0]]) == "i64[]"
    assert 'pyc.DimValues() name="n_dims" {dtype="i64", shape=ints[], values=dims["batch"]}' \
        in print_graph(graph)
    check_symbolic(graph, propagate_types(graph))


def test_a_static_build_binds_nothing(tmp_path: Path) -> None:
    """With numbers for the dims, the chain folds into a constant as before: no attribute,
    no decision of bind_shapes."""
    shapes, _ = parse_input_shapes(["x=4,6"])
    graph, ctx = api.compile_graph(_reshape_by_shape_chain(tmp_path), "balanced", shapes, "cpu",
                                   stop_after="analyze_liveness")
    (reshape,) = [n for n in graph.nodes if n.op == "Reshape"]
    assert "shape" not in reshape.attrs and len(reshape.inputs) == 2
    assert not [d for d in ctx.decisions if d.pass_name == "bind_shapes"]


def test_a_slice_clamp_the_bounds_do_not_decide_is_refused(tmp_path: Path) -> None:
    """Slice ends at seq of a 128-row table: at seq > 128 ONNX clamps to 128, so the output
    is min(seq, 128), not an expression PyC has: PYC-E051 names the node (before this rule
    decided comparisons by the bounds, the dim's upper bound chose the clamp silently)."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Slice", ["s", "one", "two"], ["seq"], name="seq_of"),
             helper.make_node("Slice", ["table", "zero", "seq"], ["y"], name="rows")]
    model = make_model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "S"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["S", 4])],
        [init("one", np.array([1], np.int64)), init("two", np.array([2], np.int64)),
         init("zero", np.array([0], np.int64)),
         init("table", rand(np.random.default_rng(0), 128, 4))])
    path = write_model(model, tmp_path)
    assert str(_front(path, ["x=1,seq:1..128"]).types["y"]) == "f32[seq,4]"
    with pytest.raises(PycError) as info:
        _front(path, ["x=1,seq:1..512"])
    assert info.value.code == "E051" and info.value.where == "node 'rows'"
    assert "depends on the dims' values" in info.value.what


def _package_model(package: str, relative: str) -> Path:
    """A model file shipped inside an installed package, or skip."""
    module = pytest.importorskip(package)
    path = Path(module.__file__).parent / relative
    if not path.exists():
        pytest.skip(f"{path} is not in the installed {package}")
    return path


def test_pp_ocr_rec_with_a_symbolic_width_keeps_only_compute_ops() -> None:
    """PP-OCRv4 rec (rapidocr-onnxruntime's model): the width flows through 38 convs (strided:
    floor divisions) into a transformer whose Reshapes read Shape chains; none is left."""
    model = _package_model("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx")
    graph = _front(model, ["x=1,3,48,width:16..1024"])
    steps = "(((width + 1)//2 + 1)//2)//2"
    assert str(graph.types[graph.outputs[0]]) == f"f32[1,{steps},6625]"
    assert _shape_arithmetic(graph) == []
    assert not [n for n in graph.nodes if n.op == "pyc.DimValues"]
    check_symbolic(graph, propagate_types(graph))
    assert f'f32[1,"{steps}",6625]' in print_graph(graph)
    _assert_round_trip(graph)


def test_silero_vad_with_a_symbolic_frame_count() -> None:
    """Silero VAD (the silero-vad package's sequence model: an STFT conv, an encoder and an
    LSTM over a symbolic number of 576-sample frames)."""
    model = _package_model("silero_vad", "data/silero_vad_16k_sequence.onnx")
    graph = _front(model, ["input=frames:1..64,576", "h=1,1,128", "c=1,1,128"])
    assert str(graph.types[graph.outputs[0]]) == "f32[frames]"
    assert _shape_arithmetic(graph) == []
    check_symbolic(graph, propagate_types(graph))


def test_constant_of_shape_expand_and_range_take_their_shapes_as_attributes(
        tmp_path: Path) -> None:
    """ones = ConstantOfShape(Shape(x)) becomes Expand(1.0) {shape}; Expand(b, Shape(x)) reads
    its shape from an attribute; positions = Range(0, Shape(x)[1], 1) takes its bounds as
    attributes (its values are computed at run time); no Shape is left and the instance check
    agrees at every sampled point."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("ConstantOfShape", ["s"], ["ones"], name="ones",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("Expand", ["b", "s"], ["wide"], name="expand"),
             helper.make_node("Add", ["ones", "wide"], ["sum"], name="add"),
             helper.make_node("Mul", ["sum", "x"], ["y"], name="mul"),
             helper.make_node("Gather", ["s", "one"], ["n"], name="seq_len", axis=0),
             helper.make_node("Range", ["zero", "n", "one"], ["pos"], name="positions")]
    model = make_model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "S"]),
         helper.make_tensor_value_info("pos", TensorProto.INT64, ["S"])],
        [init("b", rand(np.random.default_rng(1), 1)), init("one", np.array(1, np.int64)),
         init("zero", np.array(0, np.int64))])
    graph = _front(write_model(model, tmp_path), ["x=batch:1..4,seq:2..64"])
    ops = {n.name: n for n in graph.nodes}
    assert "Shape" not in {n.op for n in graph.nodes}
    assert str(graph.types["y"]) == "f32[batch,seq]" and str(graph.types["pos"]) == "i64[seq]"
    ranges = [n for n in graph.nodes if n.op == "Range"]
    assert len(ranges) == 1 and ranges[0].inputs == []
    assert (str(ranges[0].attrs["limit"]), ranges[0].attrs["start"], ranges[0].attrs["delta"],
            ranges[0].attrs["dtype"]) == ("seq", 0, 1, "i64")
    text = print_graph(graph)
    assert 'Range() name="positions" {delta=1, dtype="i64", limit=dim"seq", start=0}' in text
    assert 'shape=dims["batch","seq"]' in text
    assert "ones" not in ops or ops["ones"].op == "Expand"
    check_symbolic(graph, propagate_types(graph))
    _assert_round_trip(graph)


def test_pad_to_a_fixed_size_takes_symbolic_pads(tmp_path: Path) -> None:
    """Pad the rows of y[1, 3, h, w] up to 8: pads = [0,0,0,0, 0,0,8 - h,0] computed from Shape.
    The pads become an attribute (Pad-2's form, the constant value stays an input), the row
    count is exactly 8 for every h, and the instance check agrees."""
    nodes = [helper.make_node("Shape", ["y"], ["s"], name="shape"),
             helper.make_node("Slice", ["s", "two", "three"], ["h"], name="rows"),
             helper.make_node("Sub", ["eight", "h"], ["missing"], name="missing"),
             helper.make_node("Concat", ["zeros6", "missing", "zero1"], ["pads"], name="pads",
                              axis=0),
             helper.make_node("Pad", ["y", "pads", "fill"], ["z"], name="pad")]
    model = make_model(
        nodes, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 8, "W"])],
        [init("two", np.array([2], np.int64)), init("three", np.array([3], np.int64)),
         init("eight", np.array([8], np.int64)), init("zeros6", np.zeros(6, np.int64)),
         init("zero1", np.zeros(1, np.int64)), init("fill", np.array(-1.5, np.float32))])
    graph = _front(write_model(model, tmp_path), ["y=1,3,h:2..8,w:1..64"])
    (pad,) = [n for n in graph.nodes if n.op == "Pad"]
    assert str(graph.types["z"]) == "f32[1,3,8,w]"
    assert pad.inputs == ["y", "", "fill"] and str(pad.attrs["pads"][6]) == "-h + 8"
    assert not [n for n in graph.nodes if n.op in ("Shape", "Slice", "Sub", "Concat")]
    check_symbolic(graph, propagate_types(graph))
    _assert_round_trip(graph)


def test_tile_by_the_batch_and_topk_of_half_the_sequence(tmp_path: Path) -> None:
    """A class token tiled to the batch (Tile repeats [batch, 1] from Shape: decomposed into a
    Reshape/Expand/Reshape whose targets are attributes) joined to x[batch, seq], then TopK with
    K = seq // 2 (integer Div: a floor division of a non-negative dim): K becomes TopK-1's
    `k` attribute and both outputs are [batch, (seq)//2]. A slice ending at seq % 3 is
    seq - 3*(seq//3) rows; one ending at int(float(seq)) (a float value: not shape arithmetic)
    gets a computed dim instead, which concrete instances (where it is known) must fall within."""
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Slice", ["s", "zero", "one"], ["b"], name="batch_of"),
             helper.make_node("Concat", ["b", "one"], ["reps"], name="reps", axis=0),
             helper.make_node("Tile", ["cls", "reps"], ["t"], name="tile"),
             helper.make_node("Concat", ["t", "x"], ["y"], name="join", axis=1),
             helper.make_node("Slice", ["s", "one", "two"], ["n"], name="seq_of"),
             helper.make_node("Div", ["n", "two"], ["half"], name="half"),
             helper.make_node("TopK", ["y", "half"], ["v", "i"], name="top", axis=1),
             helper.make_node("Mod", ["n", "three"], ["rest"], name="rest"),
             helper.make_node("Slice", ["x", "zero", "rest", "one"], ["tail"], name="tail"),
             helper.make_node("Cast", ["n"], ["nf"], name="to_float", to=f32),
             helper.make_node("Cast", ["nf"], ["ni"], name="to_int", to=i64),
             helper.make_node("Slice", ["x", "zero", "ni", "one"], ["cut"], name="cut")]
    model = make_model(
        nodes, [helper.make_tensor_value_info("x", f32, ["B", "S"])],
        [helper.make_tensor_value_info("v", f32, ["B", "K"]),
         helper.make_tensor_value_info("i", i64, ["B", "K"]),
         helper.make_tensor_value_info("tail", f32, ["B", "R"]),
         helper.make_tensor_value_info("cut", f32, ["B", "C"])],
        [init("zero", np.array([0], np.int64)), init("one", np.array([1], np.int64)),
         init("two", np.array([2], np.int64)), init("three", np.array([3], np.int64)),
         init("cls", np.ones((1, 1), np.float32))])
    graph = _front(write_model(model, tmp_path), ["x=batch:1..8,seq:4..64"])
    assert str(graph.types["y"]) == "f32[batch,seq + 1]"
    assert str(graph.types["v"]) == str(graph.types["i"]).replace("i64", "f32") \
        == "f32[batch,(seq)//2]"
    (top,) = [n for n in graph.nodes if n.op == "TopK"]
    assert len(top.inputs) == 1 and str(top.attrs["k"]) == "(seq)//2"
    assert str(graph.types["tail"]) == "f32[batch,seq - 3*(seq)//3]"
    cut = graph.types["cut"].shape[1]
    assert str(cut) == "rt_cut_1" and cut.bounds() == (0, 64)
    assert not [n for n in graph.nodes if n.op in ("Shape", "Tile")]
    check_symbolic(graph, propagate_types(graph))
    _assert_round_trip(graph)


def test_resize_by_constant_scales_keeps_symbolic_sizes(tmp_path: Path) -> None:
    """Upsampling by 2 and downsampling by 0.5 (float32 scales) of a pooled symbolic image:
    2 * (h//2) and back to h//2 (exact in float32); a scale like 1/3, whose float32 rounding
    differs with the length, gives a length computed at run time (resize_runtime), bounded by
    floor(64 * float32(1/3))."""
    def model(third: bool) -> Path:
        nodes = [helper.make_node("MaxPool", ["y"], ["x"], name="pool", kernel_shape=[2, 2],
                                  strides=[2, 2]),
                 helper.make_node("Resize", ["x", "", "up"], ["big"], name="upsample",
                                  mode="nearest"),
                 helper.make_node("Resize", ["big", "", "down"], ["z"], name="downsample",
                                  mode="linear")]
        down = np.array([1, 1, 1 / 3 if third else 0.5, 0.5], np.float32)
        out = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, "A", "B"])
        (tmp_path / ("third" if third else "half")).mkdir()
        return write_model(make_model(
            nodes, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "H", "W"])],
            [out], [init("up", np.array([1, 1, 2, 2], np.float32)), init("down", down)]),
            tmp_path / ("third" if third else "half"))

    graph = _front(model(False), ["y=1,3,h:2..64,w:2..640"])
    assert str(graph.types["big"]) == "f32[1,3,2*(h)//2,2*(w)//2]"
    assert str(graph.types["z"]) == "f32[1,3,(h)//2,(w)//2]"
    check_symbolic(graph, propagate_types(graph))
    third = _front(model(True), ["y=1,3,h:2..64,w:2..640"]).types["z"].shape
    assert str(third[2]) == "rt_downsample_2" and third[2].bounds() == (0, 21)
    assert str(third[3]) == "(w)//2"
