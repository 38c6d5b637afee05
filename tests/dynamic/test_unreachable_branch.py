"""A run-time If whose branch cannot be compiled for the model's input shapes (issue #15;
frontend/branch_traps.py): the branch is compiled as pyc.Unreachable, the model builds, runs that
take the other branch match onnxruntime, and a run that takes it fails with PYC-E053 naming the
If, the branch and the reason, as onnxruntime fails there too. The official Silero VAD file
(its `sr` input picks a 16 kHz or an 8 kHz network; at a 512-sample chunk the 8 kHz one's LSTM
gets a rank-5 input) is the real case. Fresh random inputs and weights; outputs poisoned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.errors import PycError
from tests.dynamic.checks import poison_outputs
from tests.helpers import init, make_model, vinfo, write_model

RTOL, ATOL = 1e-5, 1e-5
F, B = TensorProto.FLOAT, TensorProto.BOOL
MODES = ("latency_first", "balanced", "memory_first")
SHAPES = {"x": (1, 6)}


def _branch(name: str, nodes: list[onnx.NodeProto], out: str, shape: list[int]) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, [], [vinfo(out, shape)])


def _projection(out: str, data: str, weight: str, tag: str) -> list[onnx.NodeProto]:
    return [helper.make_node("MatMul", [data, weight], [f"{tag}_m"]),
            helper.make_node("Tanh", [f"{tag}_m"], [out])]


def _rows_of_three(data: str, out: str, tag: str) -> list[onnx.NodeProto]:
    """`data` [1, 6] reshaped to [6 / 3, 3], the shape computed from Shape(data): PyC types it
    at build (x built as [1, 6]); onnxruntime, whose x has a named dim, fails at run time."""
    return [helper.make_node("Shape", [data], [f"{tag}_s"]),
            helper.make_node("Gather", [f"{tag}_s", "one"], [f"{tag}_n"], axis=0),
            helper.make_node("Div", [f"{tag}_n", "three"], [f"{tag}_r"]),
            helper.make_node("Unsqueeze", [f"{tag}_r", "axis0"], [f"{tag}_r1"]),
            helper.make_node("Concat", [f"{tag}_r1", "three1"], [f"{tag}_shape"], axis=0),
            helper.make_node("Reshape", [data, f"{tag}_shape"], [out])]


def _model(tmp_path: Path, rng: np.random.Generator, nested: bool = False,
           both_bad: bool = False) -> Path:
    """y = tanh(x @ w1) where `flag`, else tanh(reshape(x, [2, 3]) @ w2): w2 has 4 rows, so the
    else branch's MatMul refuses x's [1, 6] (its 3 columns against 4 rows). `nested`: the then
    branch holds a second run-time If (on `inner`) whose else branch is the bad one.
    `both_bad`: the then branch's MatMul is refused too."""
    w1 = rng.standard_normal((6 if not both_bad else 5, 4)).astype(np.float32)
    w2 = rng.standard_normal((4, 4)).astype(np.float32)
    bad = [*_rows_of_three("x", "x23", "e"), *_projection("e_out", "x23", "w2", "e")]
    good = _projection("t_out", "x", "w1", "t")
    if nested:
        inner = helper.make_node("If", ["inner"], ["t_out"],
                                 then_branch=_branch("inner_then", _projection("it_out", "x", "w1", "it"),
                                                     "it_out", [1, 4]),
                                 else_branch=_branch("inner_else", [
                                     *_rows_of_three("x", "ix23", "ie"),
                                     *_projection("ie_out", "ix23", "w2", "ie")], "ie_out", [2, 4]))
        good = [inner]
    node = helper.make_node("If", ["flag"], ["r"], then_branch=_branch("then", good, "t_out", [1, 4]),
                            else_branch=_branch("else", bad, "e_out", [2, 4]))
    # x's rows are a named dim (built as 1): onnxruntime cannot fold Shape(x) at load
    inputs = [vinfo("x", ["rows", 6]), vinfo("flag", [], B)] + \
        ([vinfo("inner", [], B)] if nested else [])
    model = make_model([node, helper.make_node("Relu", ["r"], ["y"])], inputs, [vinfo("y", ["rows", 4])],
                       [init("w1", w1), init("w2", w2), init("one", np.array(1, np.int64)),
                        init("three", np.array(3, np.int64)), init("three1", np.array([3], np.int64)),
                        init("axis0", np.array([0], np.int64))])
    return write_model(model, tmp_path)


def _feeds(rng: np.random.Generator, flag: bool, inner: bool | None = None) -> dict[str, np.ndarray]:
    feeds = {"x": rng.standard_normal((1, 6)).astype(np.float32), "flag": np.array(flag)}
    if inner is not None:
        feeds["inner"] = np.array(inner)
    return feeds


@pytest.mark.parametrize("mode", MODES)
def test_the_branch_that_compiles_runs_and_the_other_is_refused(
        mode: str, tmp_path: Path, rng: np.random.Generator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    poison_outputs(monkeypatch)
    path = _model(tmp_path, rng)
    built = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=SHAPES)
    traps = [n for n in built.graph.nodes if n.op == "pyc.Unreachable"]
    assert [(n.attrs["if"], n.attrs["branch"]) for n in traps] == [(_if_name(built), "else")]
    session = ort.InferenceSession(str(path))
    with pyc_cli.load(built.artifact) as model:
        for _ in range(2):
            feeds = _feeds(rng, True)
            (expected,) = session.run(None, feeds)
            np.testing.assert_allclose(model.run(feeds)["y"], expected, rtol=RTOL, atol=ATOL)
        with pytest.raises(PycError) as caught:
            model.run(_feeds(rng, False))
        assert caught.value.code == "E053" and "else branch" in caught.value.what
        assert "MatMul" in caught.value.what  # the reason typing the branch gave
        with pytest.raises(ort.capi.onnxruntime_pybind11_state.Fail):  # onnxruntime refuses them too
            session.run(None, _feeds(rng, False))
        feeds = _feeds(rng, True)  # and the model runs on after the refused run
        np.testing.assert_allclose(model.run(feeds)["y"], session.run(None, feeds)[0],
                                   rtol=RTOL, atol=ATOL)


def _if_name(built: pyc_cli.BuildResult) -> str:
    return next(n.name for n in built.graph.nodes if n.op == "pyc.If")


def test_the_innermost_branch_is_the_one_made_unreachable(tmp_path: Path,
                                                         rng: np.random.Generator) -> None:
    """The bad branch is inside the then branch of the outer If: only it is replaced; the outer
    else branch is the same bad one and is replaced too (each independently)."""
    path = _model(tmp_path, rng, nested=True)
    built = pyc_cli.build(path, tmp_path / "art", input_shapes=SHAPES)
    branches = sorted(str(n.attrs["branch"]) + ":" + str(n.attrs["if"])
                      for n in built.graph.nodes if n.op == "pyc.Unreachable")
    assert len(branches) == 2 and all(b.startswith("else:") for b in branches)
    assert any("/then/" in b for b in branches)  # the inner If, inside the outer then branch
    session = ort.InferenceSession(str(path))
    with pyc_cli.load(built.artifact) as model:
        feeds = _feeds(rng, True, True)
        np.testing.assert_allclose(model.run(feeds)["y"], session.run(None, feeds)[0],
                                   rtol=RTOL, atol=ATOL)
        for flag, inner in ((True, False), (False, True)):
            with pytest.raises(PycError) as caught:
                model.run(_feeds(rng, flag, inner))
            assert caught.value.code == "E053"


def test_an_if_whose_branches_both_fail_stays_an_error(tmp_path: Path,
                                                       rng: np.random.Generator) -> None:
    path = _model(tmp_path, rng, both_bad=True)
    with pytest.raises(PycError) as caught:
        pyc_cli.build(path, tmp_path / "art", input_shapes=SHAPES)
    assert caught.value.code == "E009" and "MatMul inner dims differ" in caught.value.what
    assert "/then/" in str(caught.value) and "/else/" in str(caught.value)  # both named


def test_the_jit_loader_names_the_branch_too(tmp_path: Path, rng: np.random.Generator) -> None:
    """Every loader reads what a failed run is explained with (CompiledModel.read_run_facts):
    the llvmlite JIT's model refuses the bad branch with PYC-E053 as the shared library's does."""
    from pyc_cli.runtime.jit import jit_load

    built = pyc_cli.build(_model(tmp_path, rng), tmp_path / "art", input_shapes=SHAPES)
    with jit_load(built.artifact) as model, pytest.raises(PycError) as caught:
        model.run(_feeds(rng, False))
    assert caught.value.code == "E053" and "else branch" in caught.value.what


def test_the_decision_is_logged_and_the_header_names_the_branch(tmp_path: Path,
                                                                rng: np.random.Generator) -> None:
    built = pyc_cli.build(_model(tmp_path, rng), tmp_path / "art", input_shapes=SHAPES)
    decisions = (built.artifact / "decisions.jsonl").read_text()
    assert '"action":"unreachable_branch"' in decisions
    header = (built.artifact / "src" / "model.h").read_text()
    assert "PYC_STATUS_BRANCH_NOT_COMPILED 8" in header and "else branch" in header


def _silero_file() -> Path | None:
    try:
        import silero_vad

        data = Path(silero_vad.__file__).parent / "data"
    except ImportError:
        data = Path("/tmp/silero/whl/silero_vad/data")  # the wheel .ci/run unpacks
    found = data / "silero_vad.onnx"
    return found if found.is_file() else None


SILERO = _silero_file()


@pytest.mark.skipif(SILERO is None, reason="the silero-vad wheel (silero_vad.onnx) is not here")
@pytest.mark.parametrize("chunk,refused", [(512, 8000), (256, None)])
def test_the_official_silero_vad_file(chunk: int, refused: int | None, tmp_path: Path,
                                      rng: np.random.Generator,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """At 512 samples (16 kHz chunks) the 8 kHz branch cannot be compiled: 16 kHz runs match
    onnxruntime, 8 kHz runs are PYC-E053 (onnxruntime fails on them too). At 256 samples both
    branches compile and both rates match."""
    assert SILERO is not None
    poison_outputs(monkeypatch)
    built = pyc_cli.build(SILERO, tmp_path / "art", input_shapes={"input": (1, chunk),
                                                                 "state": (2, 1, 128)})
    session = ort.InferenceSession(str(SILERO))
    with pyc_cli.load(built.artifact) as model:
        for sr in (16000, 8000):
            feeds = {"input": (0.3 * rng.standard_normal((1, chunk))).astype(np.float32),
                     "state": (0.3 * rng.standard_normal((2, 1, 128))).astype(np.float32),
                     "sr": np.array(sr, np.int64)}
            if sr == refused:
                with pytest.raises(PycError) as caught:
                    model.run(feeds)
                assert caught.value.code == "E053" and "LSTM" in caught.value.what
                continue
            got = model.run(feeds)
            for (name, value), expected in zip(got.items(), session.run(None, feeds)):
                np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-5, err_msg=f"{name} {sr}")
