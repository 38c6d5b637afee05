"""Issue #15: broadcasting whose outcome depends on the run-time sizes. A symbolic dim (an
input's `n:1..8`, or one computed from input values declared with --input-values) that may be 1
at run time, against another side that is larger, broadcasts as onnxruntime does: the output
dim is the side that is never 1 where there is one, else an entry dim (`rt_NODE_AXIS`) the
entry point computes as the broadcast of the sides; every side the output does not take is
checked at entry to be 1 or the output's (PYC-E041 otherwise, where onnxruntime fails too),
and the elementwise loop reads it with a run-time stride (0 where it is 1). Where shape
inference proves the sides equal, the kernel is the one it was (no run-time stride).

Every run is compared with onnxruntime on fresh random inputs (standard normal, never zeros),
at sizes including 1 and the bounds, in the three memory modes, output buffers poisoned with
NaN first. Tolerances: rtol 1e-6, atol 1e-6 (one float32 add / mul / select per element, in
onnxruntime's order: in practice exact)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir.symbolic import Dim, entry_source, parse_input_shapes
from tests.dynamic.checks import runs_and_refusals_match_onnxruntime
from tests.helpers import init, make_model, rand, write_model

MODES = ["latency_first", "balanced", "memory_first"]
I64 = TensorProto.INT64
RTOL, ATOL = 1e-6, 1e-6
RUN_TIME_STRIDE = "== 1 ? 0 :"  # how a run-time stride reads in the kernel's C


def _vi(name: str, shape: list[int | str], elem: int = TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _model_c(artifact: Path) -> str:
    return (artifact / "src" / "model.c").read_text()


# ---------------------------------------------------------------- two symbolic input dims


def _add_rows(tmp_path: Path) -> Path:
    """y = relu(a[n, 3] + b[m, 3]) * 2: n and m independent, each 1..8."""
    nodes = [helper.make_node("Add", ["a", "b"], ["s"], name="add_rows"),
             helper.make_node("Relu", ["s"], ["r"], name="relu"),
             helper.make_node("Mul", ["r", "two"], ["y"], name="double")]
    model = make_model(nodes, [_vi("a", ["n", 3]), _vi("b", ["m", 3])], [_vi("y", ["o", 3])],
                       [init("two", np.array(2.0, np.float32))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_two_symbolic_input_dims_broadcast_either_way(tmp_path: Path, mode: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = _add_rows(tmp_path)
    shapes, _ = parse_input_shapes(["a=n:1..8,3", "b=m:1..8,3"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes)
    rows = result.graph.types["y"].shape[0]
    assert isinstance(rows, Dim)
    (bounds,) = rows.dims().values()
    assert entry_source(bounds) == "add_rows" and (bounds.lo, bounds.hi) == (1, 8)
    assert RUN_TIME_STRIDE in _model_c(result.artifact)
    decisions = (result.artifact / "decisions.jsonl").read_text()
    assert '"run_time_broadcast"' in decisions and "add_rows" in decisions
    rng = np.random.default_rng()
    sizes = [(1, 1), (1, 8), (8, 1), (8, 8), (5, 5), (1, 5), (3, 1)]
    feeds = [{"a": rand(rng, n, 3), "b": rand(rng, m, 3)} for n, m in sizes]
    refused = [{"a": rand(rng, n, 3), "b": rand(rng, m, 3)} for n, m in ((3, 4), (8, 2))]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, RTOL, ATOL)


def test_equal_dims_keep_the_plain_kernel(tmp_path: Path) -> None:
    """a[n, 3] + b[n, 3] (one dim): shape inference proves the sides equal, so the loop has no
    run-time stride and the entry point no broadcast check."""
    path = _add_rows(tmp_path)
    shapes, _ = parse_input_shapes(["a=n:1..8,3", "b=n,3"])
    result = pyc_cli.build(path, tmp_path / "art", input_shapes=shapes)
    assert str(result.graph.types["y"]) == "f32[n,3]"
    text = _model_c(result.artifact)
    assert RUN_TIME_STRIDE not in text and "broadcast" not in text.split("run_with_dims")[-1]


# ---------------------------------------------------------------- a symbolic dim against a number


def _scale_columns(tmp_path: Path) -> Path:
    """y = a[2, n] * b[2, 4] - b: n may be 1 (a broadcasts along the columns) or 4."""
    nodes = [helper.make_node("Mul", ["a", "b"], ["p"], name="scale_columns"),
             helper.make_node("Sub", ["p", "b"], ["y"], name="minus_b")]
    model = make_model(nodes, [_vi("a", [2, "n"]), _vi("b", [2, 4])], [_vi("y", [2, 4])])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_a_symbolic_dim_against_a_number_broadcasts_when_it_is_one(
        tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _scale_columns(tmp_path)
    shapes, _ = parse_input_shapes(["a=2,n:1..8"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes)
    assert str(result.graph.types["y"]) == "f32[2,4]"  # the number wins: a static output
    rng = np.random.default_rng()
    feeds = [{"a": rand(rng, 2, n), "b": rand(rng, 2, 4)} for n in (1, 4, 1)]
    refused = [{"a": rand(rng, 2, n), "b": rand(rng, 2, 4)} for n in (2, 3, 8)]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, RTOL, ATOL)
    with pyc_cli.load(result.artifact) as model, pytest.raises(PycError) as error:
        model.run({"a": rand(rng, 2, 3), "b": rand(rng, 2, 4)})
    assert "broadcast" in (error.value.hint or "")


def test_sizes_that_never_broadcast_are_refused_at_build(tmp_path: Path) -> None:
    """n:2..3 against 4 is never 1 nor 4: refused at build, naming the node (E051, the rule's
    E009 inside: the rule cannot take these symbolic dims)."""
    path = _scale_columns(tmp_path)
    shapes, _ = parse_input_shapes(["a=2,n:2..3"])
    with pytest.raises(PycError) as refused:
        pyc_cli.build(path, tmp_path / "art", input_shapes=shapes)
    assert refused.value.code == "E051" and "scale_columns" in str(refused.value.where)
    assert "n is never 1 nor 4" in refused.value.what


# ---------------------------------------------------------------- Where over three sides


def _select(tmp_path: Path) -> Path:
    """y = where(c[p] > 0, x[q], z[r]): three independent dims, each 1..6."""
    nodes = [helper.make_node("Greater", ["c", "zero"], ["mask"], name="positive"),
             helper.make_node("Where", ["mask", "x", "z"], ["y"], name="select")]
    model = make_model(nodes, [_vi("c", ["p"]), _vi("x", ["q"]), _vi("z", ["r"])],
                       [_vi("y", ["o"])], [init("zero", np.array(0.0, np.float32))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_where_over_three_symbolic_sides(tmp_path: Path, mode: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = _select(tmp_path)
    shapes, _ = parse_input_shapes(["c=p:1..6", "x=q:1..6", "z=r:1..6"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes)
    rng = np.random.default_rng()
    sizes = [(1, 1, 1), (6, 1, 1), (1, 6, 1), (1, 1, 6), (6, 6, 1), (1, 6, 6), (4, 4, 4),
             (6, 6, 6)]
    feeds = [{"c": rand(rng, p), "x": rand(rng, q), "z": rand(rng, r)} for p, q, r in sizes]
    refused = [{"c": rand(rng, p), "x": rand(rng, q), "z": rand(rng, r)}
               for p, q, r in ((2, 3, 1), (6, 6, 5), (1, 2, 3))]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, RTOL, ATOL)


# ---------------------------------------------------------------- the innermost axis


def _add_inner(tmp_path: Path) -> Path:
    """y = a[4, n] + b[4, m]: the run-time stride on the contiguous axis."""
    nodes = [helper.make_node("Add", ["a", "b"], ["y"], name="add_inner")]
    model = make_model(nodes, [_vi("a", [4, "n"]), _vi("b", [4, "m"])], [_vi("y", [4, "o"])])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_a_run_time_stride_on_the_innermost_axis(tmp_path: Path, mode: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = _add_inner(tmp_path)
    shapes, _ = parse_input_shapes(["a=4,n:1..300", "b=4,m:1..300"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes)
    rng = np.random.default_rng()
    sizes = [(1, 1), (1, 300), (300, 1), (300, 300), (17, 17), (1, 129)]
    feeds = [{"a": rand(rng, 4, n), "b": rand(rng, 4, m)} for n, m in sizes]
    refused = [{"a": rand(rng, 4, n), "b": rand(rng, 4, m)} for n, m in ((2, 300), (300, 299))]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, RTOL, ATOL)


# ---------------------------------------------------------------- dims from input values


def _filled_times_x(tmp_path: Path) -> Path:
    """y = constant_of_shape(s, 0.5) * x[B, 4] + 1: s[0] against B (both may be 1: an entry
    dim), s[1] against 4 (1 or 4)."""
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["half"], name="fill",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
             helper.make_node("Mul", ["half", "x"], ["p"], name="scale"),
             helper.make_node("Add", ["p", "one"], ["y"], name="plus_one")]
    model = make_model(nodes, [_vi("x", ["B", 4]), _vi("s", [2], I64)], [_vi("y", ["o", 4])],
                       [init("one", np.array(1.0, np.float32))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_a_value_dim_against_a_symbolic_input_dim(tmp_path: Path, mode: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = _filled_times_x(tmp_path)
    shapes, _ = parse_input_shapes(["x=B:1..5,4"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes,
                           input_values={"s": (0, 5)})
    rng = np.random.default_rng()
    runs = [(1, (1, 1)), (1, (5, 4)), (5, (1, 1)), (5, (5, 4)), (3, (3, 1)), (1, (3, 4)),
            (4, (1, 4)), (1, (0, 4)), (1, (0, 1))]  # s[0] = 0 against B = 1: 0 rows
    feeds = [{"x": rand(rng, b, 4), "s": np.array(s, np.int64)} for b, s in runs]
    refused = [{"x": rand(rng, b, 4), "s": np.array(s, np.int64)}
               for b, s in ((2, (3, 4)), (5, (5, 2)), (1, (1, 3)), (2, (0, 4)), (1, (2, 0)))]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, RTOL, ATOL)


def _expand_to_values(tmp_path: Path) -> Path:
    """y = expand(x[B, 4], s): B against s[0] (both may be 1), 4 against s[1]."""
    nodes = [helper.make_node("Expand", ["x", "s"], ["y"], name="expand_batch")]
    model = make_model(nodes, [_vi("x", ["B", 4]), _vi("s", [2], I64)], [_vi("y", ["n", 4])])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_expand_whose_broadcast_depends_on_the_sizes(tmp_path: Path, mode: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused with E051 before run-time broadcasting (the output side depended on the
    sizes); now the entry point decides it."""
    path = _expand_to_values(tmp_path)
    shapes, _ = parse_input_shapes(["x=B:1..4,4"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes,
                           input_values={"s": (1, 8)})
    rng = np.random.default_rng()
    runs = [(1, (1, 4)), (1, (8, 4)), (4, (1, 4)), (4, (4, 1)), (1, (1, 1)), (3, (3, 4))]
    feeds = [{"x": rand(rng, b, 4), "s": np.array(s, np.int64)} for b, s in runs]
    refused = [{"x": rand(rng, b, 4), "s": np.array(s, np.int64)}
               for b, s in ((2, (3, 4)), (4, (8, 4)), (1, (1, 2)))]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, RTOL, ATOL)


# ---------------------------------------------------------------- what stays refused


def _count_plus(tmp_path: Path, other: list[int | str]) -> Path:
    """y = float(nonzero(x[6])) + b: the count of nonzero elements of x, a size NonZero's kernel
    computes during the run (after the entry checks), broadcast against b's last dim."""
    nodes = [helper.make_node("NonZero", ["x"], ["idx"], name="nonzero"),
             helper.make_node("Cast", ["idx"], ["fidx"], name="to_float", to=TensorProto.FLOAT),
             helper.make_node("Add", ["fidx", "b"], ["y"], name="add_count")]
    model = make_model(nodes, [_vi("x", [6]), _vi("b", other)], [_vi("y", [1, "o"])])
    return write_model(model, tmp_path)


def _with_nonzeros(rng: np.random.Generator, count: int) -> np.ndarray:
    """x[6] of random values (never 0 by chance: at least 0.1 away) with exactly `count` of
    them nonzero, at random places (the zeros are the point: NonZero counts the others)."""
    x = (rng.uniform(0.1, 2.0, 6) * rng.choice([-1, 1], 6)).astype(np.float32)
    x[rng.permutation(6)[:6 - count]] = 0.0
    return x


@pytest.mark.parametrize("mode", MODES)
def test_a_size_a_kernel_computes_is_checked_by_the_kernel(
        tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """NonZero's count against b[1, 4]: the count must be 1 or 4, which only the Add's kernel
    can check (the entry point runs before NonZero's kernel); onnxruntime refuses the others."""
    path = _count_plus(tmp_path, [1, 4])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode)
    assert "a size computed during the run" in _model_c(result.artifact)
    rng = np.random.default_rng()
    feeds = [{"x": _with_nonzeros(rng, count), "b": rand(rng, 1, 4)} for count in (4, 1, 4, 1)]
    refused = [{"x": _with_nonzeros(rng, count), "b": rand(rng, 1, 4)} for count in (2, 3, 6)]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, RTOL, ATOL)


def test_a_size_a_kernel_computes_against_a_dim_that_may_be_one_is_refused(
        tmp_path: Path) -> None:
    """NonZero's count against b[1, m], m:1..6: which side the output takes depends on a size
    known only during the run, so no kernel could size the output: E051 naming the node."""
    path = _count_plus(tmp_path, [1, "m"])
    shapes, _ = parse_input_shapes(["b=1,m:1..6"])
    with pytest.raises(PycError) as refused:
        pyc_cli.build(path, tmp_path / "art", input_shapes=shapes)
    assert refused.value.code == "E051" and "add_count" in str(refused.value.where)


# ---------------------------------------------------------------- MatMul batch dims


def _batched_product(tmp_path: Path) -> Path:
    """y = a[n, 2, 3] @ b[m, 3, 5]: the batch dims broadcast as elementwise dims do."""
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"], name="batched")]
    model = make_model(nodes, [_vi("a", ["n", 2, 3]), _vi("b", ["m", 3, 5])],
                       [_vi("y", ["o", 2, 5])])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_matmul_batch_dims_broadcast_at_run_time(tmp_path: Path, mode: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Tolerance: rtol/atol 1e-5 (a 3-term float32 dot product in another order)."""
    path = _batched_product(tmp_path)
    shapes, _ = parse_input_shapes(["a=n:1..4,2,3", "b=m:1..4,3,5"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes)
    assert RUN_TIME_STRIDE in _model_c(result.artifact)
    rng = np.random.default_rng()
    sizes = [(1, 1), (1, 4), (4, 1), (4, 4), (3, 3), (2, 1)]
    feeds = [{"a": rand(rng, n, 2, 3), "b": rand(rng, m, 3, 5)} for n, m in sizes]
    refused = [{"a": rand(rng, n, 2, 3), "b": rand(rng, m, 3, 5)} for n, m in ((2, 3), (4, 2))]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch,
                                        1e-5, 1e-5)


def _projection_plus(tmp_path: Path, rng: np.random.Generator) -> Path:
    """y = x[n, 8] @ w[8, 4] + c[m, 4]: n (2..6) is never 1, so the output takes it and c must
    be 1 or n; the Add is not fused into the GEMM's epilogue (decision skip_epilogue)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["p"], name="project"),
             helper.make_node("Add", ["p", "c"], ["y"], name="plus_c")]
    model = make_model(nodes, [_vi("x", ["n", 8]), _vi("c", ["m", 4])], [_vi("y", ["n", 4])],
                       [init("w", rand(rng, 8, 4))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_an_operand_that_may_be_one_is_not_a_gemm_epilogue(
        tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tolerance: rtol/atol 1e-5 (an 8-term float32 dot product in another order)."""
    rng = np.random.default_rng()
    path = _projection_plus(tmp_path, rng)
    shapes, _ = parse_input_shapes(["x=n:2..6,8", "c=m:1..6,4"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes)
    assert str(result.graph.types["y"]) == "f32[n,4]"
    decisions = (result.artifact / "decisions.jsonl").read_text()
    assert "skip_epilogue" in decisions and "may be 1" in decisions
    sizes = [(2, 1), (2, 2), (6, 1), (6, 6), (4, 4), (3, 1)]
    feeds = [{"x": rand(rng, n, 8), "c": rand(rng, m, 4)} for n, m in sizes]
    refused = [{"x": rand(rng, n, 8), "c": rand(rng, m, 4)} for n, m in ((2, 3), (6, 5))]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch,
                                        1e-5, 1e-5)


def _sum_then_reshape(tmp_path: Path) -> Path:
    """y = reshape(a[n] + b[m], s) * 2: the Reshape's element count check reads the entry dim
    of the broadcast (computed before it at entry)."""
    nodes = [helper.make_node("Add", ["a", "b"], ["ab"], name="add_ab"),
             helper.make_node("Reshape", ["ab", "s"], ["r"], name="to_s"),
             helper.make_node("Mul", ["r", "two"], ["y"], name="double")]
    model = make_model(nodes, [_vi("a", ["n"]), _vi("b", ["m"]), _vi("s", [2], I64)],
                       [_vi("y", ["p", "q"])], [init("two", np.array(2.0, np.float32))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_an_entry_dim_of_a_broadcast_feeds_a_reshape_check(
        tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _sum_then_reshape(tmp_path)
    shapes, _ = parse_input_shapes(["a=n:1..12", "b=m:1..12"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes,
                           input_values={"s": (1, 12)})
    rng = np.random.default_rng()
    runs = [(1, 12, (3, 4)), (12, 1, (12, 1)), (12, 12, (2, 6)), (1, 1, (1, 1)), (6, 6, (6, 1)),
            (1, 8, (4, 2))]
    feeds = [{"a": rand(rng, n), "b": rand(rng, m), "s": np.array(s, np.int64)}
             for n, m, s in runs]
    refused = [{"a": rand(rng, n), "b": rand(rng, m), "s": np.array(s, np.int64)}
               for n, m, s in ((1, 12, (3, 3)), (4, 6, (4, 6)), (5, 5, (2, 2)))]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, RTOL, ATOL)
