"""IR text round trip (print -> parse -> print) and the verifier's E090 checks."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from helpers import (
    REFERENCE_MODELS,
    arrays_identical,
    graph_differences,
    randomize_initializers,
    write_model,
)
from onnx import numpy_helper

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir.ewprogram import format_program, parse_program
from pyc_cli.ir.graph import Graph, Node
from pyc_cli.ir.text import INLINE_CONSTANT_LIMIT, blob_key, parse_graph, print_graph
from pyc_cli.ir.types import DType, TensorType
from pyc_cli.ir.verify import verify
from pyc_cli.ops import registry

F32 = DType.F32


def t(shape: tuple[int, ...], dtype: DType = F32) -> TensorType:
    return TensorType(dtype, shape)


def blobs_of(graph: Graph) -> dict[str, np.ndarray]:
    return {blob_key(a): a for a in graph.constants.values()}


def round_trip(graph: Graph) -> tuple[str, Graph, str]:
    text = print_graph(graph)
    parsed = parse_graph(text, blobs_of(graph))
    return text, parsed, print_graph(parsed)


def assert_round_trip(graph: Graph) -> Graph:
    text, parsed, again = round_trip(graph)
    assert again == text
    assert graph_differences(graph, parsed) == []
    return parsed


# ---------------------------------------------------------------- hand-built graphs

SPECIAL_F32 = np.array([0.1, 1e-30, np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -2.5,
                        np.finfo(np.float32).tiny, 1e-45, np.finfo(np.float32).max,
                        3.4028235e38, 1.0 / 3.0], dtype=np.float32)


def special_graph() -> Graph:
    """A small graph exercising inline floats, attributes of every kind and odd names."""
    x, y = "x", "y"
    types = {x: t((2, 14)), y: t((2, 14))}
    constants = {
        "c_special": SPECIAL_F32.reshape(1, 14),
        "c_f64": np.array([0.1, 1e-300, 5e-324, -0.0, np.nan, np.inf], dtype=np.float64),
        "c_f16": np.array([0.1, -0.0, 65504.0, 6e-8], dtype=np.float16),
        "c_i64": np.array([-1, 0, 2**62, -(2**63)], dtype=np.int64),
        "c_i32": np.array([[7, -7]], dtype=np.int32),
        "c_u8": np.array([0, 255], dtype=np.uint8),
        "c_bool": np.array([True, False, True], dtype=bool),
        "c_scalar": np.array(0.1, dtype=np.float32),
        "c_empty": np.zeros((0, 3), dtype=np.float32),
        "c_big": np.arange(INLINE_CONSTANT_LIMIT + 1, dtype=np.float32) * np.float32(0.1),
    }
    for name, array in constants.items():
        types[name] = TensorType.of(array)
    types["a"] = t((2, 14))
    types["b"] = t((2, 14))
    nodes = [
        Node("Add", "add", [x, "c_special"], ["a"]),
        Node("LeakyRelu", "leaky", ["a"], ["b"], {
            "alpha": 0.1, "tiny": 1e-30, "v_nan": math.nan, "v_inf": math.inf,
            "v_ninf": -math.inf, "negzero": -0.0, "big": 1e300, "one": 1.0,
            "count": -3, "zero": 0,
            "ints": [1, -2, 3], "floats": [0.1, -0.0, math.inf, 1e-30, 2.0],
            "strings": ["a\"b", "back\\slash", "new\nline", "*/", "ünï©ødé ✓"],
            "text": "multi\nline \"quoted\" */ \\ \u2603",
            "tensor": np.array([[0.1, -0.0], [np.nan, np.inf]], dtype=np.float32),
            "tensor_i64": np.array([3, -1], dtype=np.int64),
            "tensor_scalar": np.array(2.5, dtype=np.float64),
        }),
        Node("Relu", "relu", ["b"], [y]),
    ]
    return Graph("special", [x], [y], nodes, types, constants, 17)


def test_round_trip_special_values() -> None:
    graph = special_graph()
    verify(graph, registry.lookup)
    parsed = assert_round_trip(graph)
    # spot-check the hard bit patterns explicitly (arrays_identical already compares bytes)
    special = parsed.constants["c_special"].reshape(-1)
    assert special.dtype == np.float32
    assert np.isnan(special[2]) and special[3] == np.inf and special[4] == -np.inf
    assert np.signbit(special[5]) and not np.signbit(special[6])
    assert special[0] == np.float32(0.1) and special[1] == np.float32(1e-30)
    assert special[10] == np.float32(1e-45) and special[10] != 0  # subnormal kept
    attrs = parsed.nodes[1].attrs
    assert math.copysign(1.0, attrs["negzero"]) == -1.0
    assert math.isnan(attrs["v_nan"]) and attrs["v_inf"] == math.inf and attrs["v_ninf"] == -math.inf
    assert attrs["alpha"] == 0.1 and attrs["tiny"] == 1e-30 and isinstance(attrs["one"], float)
    assert attrs["count"] == -3 and isinstance(attrs["count"], int)
    assert attrs["strings"] == ["a\"b", "back\\slash", "new\nline", "*/", "ünï©ødé ✓"]
    assert attrs["text"] == "multi\nline \"quoted\" */ \\ \u2603"
    assert arrays_identical(parsed.constants["c_big"], graph.constants["c_big"])


def _nan_with_bits(bits: int) -> np.float32:
    return np.array([bits], dtype=np.uint32).view(np.float32)[0]


@pytest.mark.parametrize("bits", [0xFFC00000, 0x7FC00001], ids=["negative_nan", "nan_payload"])
def test_round_trip_nan_bits_exact(bits: int) -> None:
    """The text format promises exact bits. 0xFFC00000 is the NaN that x86 (and so numpy)
    produces for 0/0 or inf-inf, e.g. when fold_constants evaluates such a node."""
    array = np.array([1.0, _nan_with_bits(bits)], dtype=np.float32)
    types = {"c": TensorType.of(array)}
    graph = Graph("nan", [], [], [], types, {"c": array}, 17)
    parsed = parse_graph(print_graph(graph))
    assert parsed.constants["c"].view(np.uint32).tolist() == array.view(np.uint32).tolist()


def test_large_constants_are_blobs_small_ones_inline() -> None:
    graph = special_graph()
    lines = {line.split(" : ")[0]: line for line in print_graph(graph).splitlines()
             if line.startswith("const ")}
    assert lines['const %"c_big"'].endswith(f'= blob "{blob_key(graph.constants["c_big"])}"')
    for name in graph.constants:
        if name != "c_big":
            assert " blob " not in lines[f'const %"{name}"'], name
    assert lines['const %"c_scalar"'] == 'const %"c_scalar" : f32[] = [0.10000000149011612]'
    # one statement per line: no raw newline from names or strings leaks into the text
    text = print_graph(graph)
    assert len(text.splitlines()) == 1 + 1 + len(graph.constants) + len(graph.nodes) + 1


def test_blob_key_depends_on_dtype_shape_and_bytes() -> None:
    a = np.arange(20, dtype=np.float32)
    assert blob_key(a) == blob_key(a.copy())
    assert blob_key(a) != blob_key(a.reshape(4, 5))
    assert blob_key(a) != blob_key(a.astype(np.float64))
    b = a.copy()
    b[7] = np.nextafter(b[7], np.float32(100))
    assert blob_key(a) != blob_key(b)


def test_missing_blob_is_an_error() -> None:
    graph = special_graph()
    with pytest.raises(KeyError):
        parse_graph(print_graph(graph), {})


WEIRD_NAMES = [
    'quote"inside', "back\\slash", "new\nline", "close */ comment", "/* open",
    "ünïcødé-名前-✓", "tab\tchar", "%percent", "{brace}", "emoji 🙂", "trailing\\",
    "", "a,b", "x:f32[1]",
]


@pytest.mark.parametrize("weird", WEIRD_NAMES)
def test_round_trip_weird_names(weird: str) -> None:
    x, w, h, y = f"in {weird}", f"w {weird}", f"mid {weird}", f"out {weird}"
    types = {x: t((2, 3)), w: t((3,)), h: t((2, 3)), y: t((2, 3))}
    constants = {w: np.array([0.1, -0.0, np.inf], dtype=np.float32)}
    nodes = [Node("Add", f"node {weird}", [x, w], [h], {"note": weird}),
             Node("Relu", f"relu {weird}", [h], [y])]
    graph = Graph(f"graph {weird}", [x], [y], nodes, types, constants, 17)
    verify(graph, registry.lookup)
    parsed = assert_round_trip(graph)
    assert parsed.nodes[0].name == f"node {weird}" and parsed.nodes[0].attrs["note"] == weird
    assert parsed.name == f"graph {weird}"
    assert len(print_graph(graph).splitlines()) == 6


def test_round_trip_optional_inputs_and_multiple_outputs() -> None:
    types = {"x": t((4, 8)), "lo": t(()), "y": t((4, 8)), "z": t((4, 8))}
    constants = {"lo": np.array(0.0, dtype=np.float32)}
    nodes = [Node("Clip", "clip", ["x", "lo", ""], ["y"]),
             Node("Dropout", "drop", ["y"], ["z", ""])]
    graph = Graph("opt", ["x"], ["z"], nodes, types, constants, 17)
    verify(graph, registry.lookup)
    parsed = assert_round_trip(graph)
    assert parsed.nodes[0].inputs == ["x", "lo", ""]
    assert parsed.nodes[1].outputs == ["z", ""]


def test_round_trip_elementwise_program_attribute() -> None:
    program = ["t0:f32=Mul(in0,#f32:0.1)", "t1:f32=Add(t0,#f32:-0.0)",
               "t2:f32=LeakyRelu(t1;{\"alpha\":1e-30})"]
    types = {"x": t((3,)), "y": t((3,))}
    node = Node("pyc.Elementwise", "ew", ["x"], ["y"], {"shape": [3]})
    node.ann.program = parse_program(program)
    node.ann.fused_from = ["a", "b", "c"]
    graph = Graph("ew", ["x"], ["y"], [node], types, {}, 17)
    verify(graph, registry.lookup)
    parsed = assert_round_trip(graph)
    assert format_program(parsed.nodes[0].ann.program) == program
    assert parsed.nodes[0].ann == node.ann and parsed.nodes[0].attrs == {"shape": [3]}


# ---------------------------------------------------------------- reference models


@pytest.fixture(scope="module", params=sorted(REFERENCE_MODELS))
def compiled_reference(request: pytest.FixtureRequest) -> tuple[str, Graph]:
    path, shapes = REFERENCE_MODELS[request.param]
    graph, _ = pyc_cli.compile_graph(path, mode="balanced", input_shapes=shapes)
    return request.param, graph


def test_reference_models_round_trip_after_full_pipeline(compiled_reference) -> None:  # noqa: ANN001
    name, graph = compiled_reference
    assert graph.nodes, name
    text, parsed, again = round_trip(graph)
    assert again == text
    assert graph_differences(graph, parsed) == []
    verify(parsed, registry.lookup, after="parse")
    # every constant over the inline limit went through a blob, the rest inline
    blob_lines = [line for line in text.splitlines() if line.startswith("const ") and " blob " in line]
    big = [a for a in graph.constants.values() if a.size > INLINE_CONSTANT_LIMIT]
    assert len(blob_lines) == len(big)


def test_reference_models_round_trip_with_randomized_weights(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(1234)
    for name, (path, shapes) in REFERENCE_MODELS.items():
        model = randomize_initializers(onnx.load(str(path)), rng)
        graph, _ = pyc_cli.compile_graph(write_model(model, tmp_path, f"{name}.onnx"),
                                         mode="memory_first", input_shapes=shapes)
        text, parsed, again = round_trip(graph)
        assert again == text, name
        assert graph_differences(graph, parsed) == [], name


def test_round_trip_at_every_pipeline_stage() -> None:
    from pyc_cli.passes.pipeline import PASS_NAMES

    path, shapes = REFERENCE_MODELS["transformer"]
    for stop in PASS_NAMES:
        graph, _ = pyc_cli.compile_graph(path, mode="balanced", input_shapes=shapes,
                                         stop_after=stop)
        text, parsed, again = round_trip(graph)
        assert again == text, stop
        assert graph_differences(graph, parsed) == [], stop


# ---------------------------------------------------------------- randomize_initializers helper


def test_randomize_initializers_replaces_floats_only() -> None:
    from helpers import init, make_model, vinfo
    from onnx import helper

    ones = np.ones(3, dtype=np.float32)
    model = make_model(
        [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "var"], ["bn"]),
         helper.make_node("Reshape", ["bn", "shape"], ["r"]),
         helper.make_node("MatMul", ["r", "w"], ["y"])],
        [vinfo("x", (2, 3, 2, 2))], [vinfo("y", (8, 4))],
        [init("g", ones), init("b", ones), init("m", ones), init("var", ones),
         init("shape", np.array([8, -1], dtype=np.int64)),
         init("w", np.ones((3, 4), dtype=np.float64).astype(np.float32))])
    out = randomize_initializers(model, np.random.default_rng(0))
    before = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert [t.name for t in out.graph.initializer] == [t.name for t in model.graph.initializer]
    assert arrays_identical(before["shape"], after["shape"])
    for name in ("g", "b", "m", "var", "w"):
        assert after[name].shape == before[name].shape and after[name].dtype == np.float32
        assert not np.array_equal(after[name], before[name]), name
    assert (after["var"] > 0).all()
    onnx.checker.check_model(out)
    # the input model is not modified
    assert np.array_equal(numpy_helper.to_array(model.graph.initializer[-1]), np.ones((3, 4)))


# ---------------------------------------------------------------- verifier


def valid_graph() -> Graph:
    types = {"x": t((2, 4)), "w": t((4, 4)), "h": t((2, 4)), "y": t((2, 4))}
    constants = {"w": np.eye(4, dtype=np.float32)}
    nodes = [Node("MatMul", "mm", ["x", "w"], ["h"]), Node("Relu", "relu", ["h"], ["y"])]
    return Graph("v", ["x"], ["y"], nodes, types, constants, 17)


def assert_e090(graph: Graph) -> PycError:
    with pytest.raises(PycError) as info:
        verify(graph, registry.lookup, after="test")
    assert info.value.code == "E090"
    return info.value


def test_verifier_accepts_valid_graph() -> None:
    verify(valid_graph(), registry.lookup)


def test_verifier_use_before_definition() -> None:
    graph = valid_graph()
    graph.nodes.reverse()  # relu now reads h before mm defines it
    error = assert_e090(graph)
    assert "'h'" in error.what


def test_verifier_use_of_undefined_value() -> None:
    graph = valid_graph()
    graph.nodes[1].inputs = ["nowhere"]
    assert_e090(graph)


def test_verifier_double_definition_by_two_nodes() -> None:
    graph = valid_graph()
    graph.nodes.append(Node("Relu", "relu2", ["x"], ["h"]))
    error = assert_e090(graph)
    assert "twice" in error.what


def test_verifier_double_definition_input_and_node() -> None:
    graph = valid_graph()
    graph.nodes[0].outputs = ["x"]
    graph.nodes[1].inputs = ["x"]
    assert_e090(graph)


def test_verifier_double_definition_constant_and_input() -> None:
    graph = valid_graph()
    graph.constants["x"] = np.zeros((2, 4), dtype=np.float32)
    assert_e090(graph)


def test_verifier_duplicate_node_name() -> None:
    graph = valid_graph()
    graph.nodes[1].name = "mm"
    assert_e090(graph)


def test_verifier_dangling_graph_output() -> None:
    graph = valid_graph()
    graph.outputs.append("ghost")
    error = assert_e090(graph)
    assert "ghost" in error.what


def test_verifier_wrong_recorded_shape() -> None:
    graph = valid_graph()
    graph.types["h"] = t((2, 5))
    error = assert_e090(graph)
    assert "'h'" in error.what


def test_verifier_wrong_recorded_dtype() -> None:
    graph = valid_graph()
    graph.types["y"] = t((2, 4), DType.F64)
    assert_e090(graph)


def test_verifier_wrong_constant_type() -> None:
    graph = valid_graph()
    graph.types["w"] = t((4, 4), DType.I64)
    assert_e090(graph)


def test_verifier_missing_type() -> None:
    graph = valid_graph()
    del graph.types["h"]
    assert_e090(graph)


def test_verifier_unregistered_op() -> None:
    graph = valid_graph()
    graph.nodes[1].op = "NoSuchOp"
    assert_e090(graph)


def test_verifier_runs_in_pipeline_after_a_broken_pass(monkeypatch) -> None:  # noqa: ANN001
    """A pass that breaks SSA makes the pipeline raise E090 naming that pass."""
    from pyc_cli.passes import pipeline

    def breaking(graph: Graph, ctx: object) -> Graph:
        graph.outputs.append("dangling")
        return graph

    table = tuple((name, breaking if name == "fuse" else fn)
                  for name, fn in pipeline.FRONT)
    monkeypatch.setattr(pipeline, "FRONT", table)
    path, shapes = REFERENCE_MODELS["mlp"]
    with pytest.raises(PycError) as info:
        pyc_cli.compile_graph(path, input_shapes=shapes)
    assert info.value.code == "E090" and "after fuse" in info.value.what
