"""Bounded symbolic dims (issue #15): canonical forms, arithmetic checked against integers,
bounds, C text, and the --input-shape grammar's errors."""

from __future__ import annotations

import itertools
import pickle
import random

import numpy as np
import pytest

from pyc_cli.errors import PycError
from pyc_cli.ir.symbolic import (
    Dim,
    DimBounds,
    SymbolicError,
    ceil_div,
    check_within,
    exact_div,
    floor_div,
    less,
    numel,
    parse_dim,
    parse_input_shapes,
    sign_bounds,
    smax,
    smin,
)

BOUNDS = {"batch": DimBounds("batch", 1, 8), "seq": DimBounds("seq", 1, 40)}
B, S = Dim.var(BOUNDS["batch"]), Dim.var(BOUNDS["seq"])


def test_canonical_form_ignores_the_order_of_operations() -> None:
    assert B * S * 384 == 384 * (S * B)
    assert (B + S) * 2 == S + B + B + S
    assert hash((B + 1) * S) == hash(S + B * S)
    assert str(B * S * 12 + 3) == str(3 + 12 * S * B)
    assert (B + S) - S == B
    assert (B * S) - S * B == 0 and isinstance((B * S) - S * B, int)


def test_exact_division_by_constants_and_monomials() -> None:
    assert exact_div(B * S * 384, B * 12) == S * 32
    assert (B * S * 384) // (S * 32) == B * 12
    assert exact_div(B * 6 + 4, 2) == B * 3 + 2
    assert exact_div(B * 6 + 3, 2) is None
    assert exact_div(B * S, S * S) is None
    assert (B * S * 12 * 32) // (B * S * 12) == 32


def _expressions() -> list:
    h = S
    return [B * S, B * S * 384 + 7, floor_div(S + 2 * 1 - 3, 2) + 1, ceil_div(S, 16),
            ceil_div(B * S * 3, 4) * 4, floor_div(floor_div(S + 5, 3), 2), (h - 1) * B + 2,
            numel((B, S, 12, 32)), floor_div(S * 4 + 6, 4)]


@pytest.mark.parametrize("index", range(9))
def test_arithmetic_matches_integers_everywhere_in_the_bounds(index: int) -> None:
    """Each expression evaluated at every (batch, seq) in the box equals the same arithmetic
    on Python ints, and its bounds contain every value."""
    expr = _expressions()[index]
    lo, hi = expr.bounds() if isinstance(expr, Dim) else (expr, expr)
    ints = [
        lambda b, s: b * s, lambda b, s: b * s * 384 + 7, lambda b, s: (s - 1) // 2 + 1,
        lambda b, s: -(-s // 16), lambda b, s: -(-(b * s * 3) // 4) * 4,
        lambda b, s: ((s + 5) // 3) // 2, lambda b, s: (s - 1) * b + 2,
        lambda b, s: b * s * 384, lambda b, s: (s * 4 + 6) // 4,
    ][index]
    values = []
    for b, s in itertools.product(range(1, 9), range(1, 41)):
        got = expr.evaluate({"batch": b, "seq": s}) if isinstance(expr, Dim) else expr
        assert got == ints(b, s), (str(expr), b, s)
        values.append(got)
    assert lo <= min(values) and max(values) <= hi
    assert int(expr) == hi  # a Dim's int value is its upper bound
    if index in (0, 1, 7):  # sums of products of positive dims: the bounds are exact
        assert (lo, hi) == (min(values), max(values))


def test_c_text_evaluates_like_the_expression() -> None:
    """The C text, read as Python (`/` on non-negative ints is floor division there too),
    gives the same value."""
    rng = random.Random(0)
    for expr in _expressions():
        if not isinstance(expr, Dim):
            continue
        text = expr.to_c({"batch": "d_batch", "seq": "d_seq"})
        assert "seq" not in text.replace("d_seq", "")
        for _ in range(20):
            b, s = rng.randint(1, 8), rng.randint(1, 40)
            py = text.replace("(int64_t)", "").replace(" / ", " // ")
            assert eval(py, {"d_batch": b, "d_seq": s}) == expr.evaluate({"batch": b, "seq": s})


def test_input_shapes_share_named_dims() -> None:
    shapes, bounds = parse_input_shapes(["input_ids=batch:1..32,seq:1..512",
                                         "attention_mask=batch,seq", "scale=1"])
    assert shapes["input_ids"] == (Dim.var(bounds["batch"]), Dim.var(bounds["seq"]))
    assert shapes["attention_mask"] == shapes["input_ids"]
    assert shapes["scale"] == (1,)
    assert bounds == {"batch": DimBounds("batch", 1, 32), "seq": DimBounds("seq", 1, 512)}


@pytest.mark.parametrize("texts, words", [
    (["x=batch,4"], "has no bounds"),
    (["x=b:4..2"], "empty or start below 1"),
    (["x=b:0..2"], "empty or start below 1"),
    (["x=b:1..2", "y=b:1..3"], "bounded twice"),
    (["x=1,,2"], "is not NAME=d0"),
    (["x=1.5"], "is not NAME=d0"),
    (["x=0"], "is not NAME=d0"),
    (["x=b:1..2x"], "is not NAME=d0"),
    (["=1"], "is not NAME=d0"),
    (["x=1", "x=2"], "twice"),
])
def test_malformed_bounds_are_coded_errors(texts: list[str], words: str) -> None:
    with pytest.raises(PycError) as info:
        parse_input_shapes(texts)
    assert info.value.code == "E006" and words in str(info.value)


def test_actual_shapes_are_checked_against_the_bounds() -> None:
    shapes, bounds = parse_input_shapes(["ids=batch:1..4,seq:1..64", "mask=batch,seq"])
    env: dict[str, int] = {}
    check_within("ids", shapes["ids"], (2, 64), env)
    assert env == {"batch": 2, "seq": 64}
    with pytest.raises(PycError, match=r"dim 1 \(seq\) is 65, outside its bounds 1..64"):
        check_within("ids", shapes["ids"], (2, 65), {})
    with pytest.raises(PycError, match="another input gave seq = 64"):
        check_within("mask", shapes["mask"], (2, 32), env)
    with pytest.raises(PycError, match="rank 1"):
        check_within("ids", shapes["ids"], (2,), {})


def test_a_dim_is_an_int_whose_value_is_its_upper_bound() -> None:
    """Code that knows nothing of symbolic dims computes with upper bounds (an arena sized for
    the largest shape holds every shape); equality stays symbolic."""
    shape = (B, S, 12)
    assert int(numel(shape)) == 8 * 40 * 12 and numel(shape) == B * S * 12
    assert np.zeros(shape, np.float32).shape == (8, 40, 12)
    assert list(range(B)) == list(range(8))
    assert B != S and B != 8 and 8 != B and S != 40 and S > 39  # noqa: SIM300 (reflected ==)
    assert B + 0 == B and (B - B) == 0 and type(B - B) is int
    assert {B * S: 1}[S * B] == 1
    assert str(S * B * 2 + 1) == "2*batch*seq + 1" and repr(B) == "Dim(batch)"
    assert pickle.loads(pickle.dumps(B * S + 3)) == B * S + 3
    assert int(512 - S) == 511  # not monotone: the bound, not the value at seq's maximum
    with pytest.raises(SymbolicError):
        _ = 12 // S
    with pytest.raises(SymbolicError):
        _ = S / 2


def test_the_printed_form_parses_back_to_the_same_expression() -> None:
    """parse_dim is str's inverse (the IR text prints dims so), on every expression above
    and on powers and negative terms; unbounded names and other text are ValueErrors."""
    for expr in [*_expressions(), S * S * B, 3 - S, B - 1, -(B * S) + 2 * S]:
        assert parse_dim(str(expr), BOUNDS) == expr, str(expr)
    for bad in ["width", "seq +", "seq % 2", "(seq)//", "2 ** seq"]:
        with pytest.raises(ValueError):
            parse_dim(bad, BOUNDS)


def test_comparisons_the_bounds_decide() -> None:
    """less/smin/smax decide by the bounds, never by Python's `<` on upper bounds alone."""
    assert less(S - 41, 0) and not less(S, 1) and less(-S, 0)
    assert smin(S, 40) == S and smax(S, 0) == S and smin(B, 0) == 0
    with pytest.raises(SymbolicError):
        smin(S, 20)  # seq is 1..40: which one is smaller depends on seq's value
    assert less(3, 4) and smin(3, 4) == 3


def test_sign_bounds_see_a_floor_cancel_against_its_numerator() -> None:
    """Interval bounds treat seq and seq//2 as independent; sign_bounds eliminates the floor
    (seq//2 = (seq - r)/2, r in 0..1) and decides what interval bounds cannot, and it is
    sound: over the whole box the value's sign never contradicts the bounds."""
    assert less(S // 2, S + 1) and smin(S // 2, S) == S // 2
    assert (S + 1 - S // 2).bounds()[0] < 0 <= sign_bounds(S + 1 - S // 2)[0]
    for expr in [S + 1 - S // 2, S // 2 - S // 3, 3 * (S // 4) - S, (S + B) // 3 - B,
                 2 * (S // 2) - S, S - 2 * (S // 2), (S // 2) // 2 - S // 4, B * (S // 2) - S]:
        lo, hi = sign_bounds(expr)
        values = [expr.evaluate({"batch": b, "seq": s}) if isinstance(expr, Dim) else expr
                  for b, s in itertools.product(range(1, 9), range(1, 41))]
        assert (lo <= 0 or min(values) > 0) and (hi >= 0 or max(values) < 0), str(expr)
        assert (min(values) >= 0 or lo < 0) and (max(values) <= 0 or hi > 0), str(expr)


def test_model_dims_are_walked_once_while_code_is_generated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Code generation (CpuTarget.kernel_calls) asks for the model's dims per node; within
    run_dims.dims_fixed the graph's values are walked once (it was once per call: quadratic),
    the answers equal the uncached ones, callers get copies, the scope is per graph, and a graph
    whose dims change inside is an error on the way out."""
    from pyc_cli.ir import run_dims
    from pyc_cli.ir.graph import Graph
    from pyc_cli.ir.types import DType, TensorType

    def graph(dim: Dim) -> Graph:
        types = {"x": TensorType(DType.F32, (B, dim)), "y": TensorType(DType.F32, (B, dim))}
        return Graph("g", ["x"], ["y"], [], types, {}, 17)

    g, other = graph(S), graph(Dim.var(DimBounds("len", 2, 9)))
    expected_dims, expected_names = run_dims.model_dims(g), run_dims.dim_names(g)
    assert expected_names == {"batch": "dims[0]", "seq": "dims[1]"}
    walks = []
    walk = run_dims._model_dims
    monkeypatch.setattr(run_dims, "_model_dims", lambda graph: walks.append(graph) or walk(graph))
    with run_dims.dims_fixed(g):
        for _ in range(5):
            assert run_dims.model_dims(g) == expected_dims
            names = run_dims.dim_names(g)
            assert names == expected_names
            names["batch"] = "changed"  # a copy: the next caller is not affected
        assert [d.name for d in run_dims.model_dims(other)] == ["batch", "len"]  # not cached
    assert walks == [g, other, g]  # once on entry, the other graph, the check on the way out
    with pytest.raises(AssertionError), run_dims.dims_fixed(g):
        g.types["z"] = TensorType(DType.F32, (Dim.var(DimBounds("extra", 1, 3)),))
        g.inputs.append("z")
