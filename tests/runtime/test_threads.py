"""One loaded model run from many threads at once, and the Python API's calling conventions:
`run(feeds)` -> dict, onnxruntime's `run(output_names_or_None, feeds)` -> list, `check_feeds`,
and clear errors for unknown outputs (PYC-E046) and runs after close (PYC-E047)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_MODELS, onnxruntime_outputs
from helpers import init, make_model, vinfo, write_model
from onnx import helper

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.runtime.jit import jit_load
from pyc_cli.runtime.native import CompiledModel

THREADS = 8
RUNS_PER_THREAD = 4
LSTM = REFERENCE_MODELS["mlp"].path.parent / "lstm.onnx"


def _random_feeds(model: CompiledModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh non-zero inputs for any of the reference models."""
    feeds = {}
    for spec in model.inputs:
        if spec.name == "input_ids":
            feeds[spec.name] = rng.integers(1, 1000, spec.shape, dtype=np.int64)
        elif spec.name == "attention_mask":
            feeds[spec.name] = (rng.random(spec.shape) < 0.8).astype(np.int64)
        else:
            feeds[spec.name] = rng.standard_normal(spec.shape).astype(spec.dtype)
    return feeds


def _hammer(model: CompiledModel, rng: np.random.Generator) -> None:
    """THREADS threads x RUNS_PER_THREAD runs, each on its own random inputs, all at once (a
    barrier starts them together); each result must equal, bitwise, the single-threaded result
    computed before for the same inputs."""
    jobs = [[_random_feeds(model, rng) for _ in range(RUNS_PER_THREAD)] for _ in range(THREADS)]
    alone = [[model.run(feeds) for feeds in job] for job in jobs]
    barrier = threading.Barrier(THREADS)

    def worker(index: int) -> list[dict[str, np.ndarray]]:
        barrier.wait()
        return [model.run(feeds) for feeds in jobs[index]]

    with ThreadPoolExecutor(THREADS) as pool:
        together = list(pool.map(worker, range(THREADS)))
    for job_alone, job_together in zip(alone, together):
        for expected, got in zip(job_alone, job_together):
            assert list(got) == list(expected)
            for name, value in expected.items():
                np.testing.assert_array_equal(got[name], value)


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer", "lstm"])
def test_threads_share_one_model_and_get_single_threaded_results(
        name: str, rng: np.random.Generator, tmp_path: Path) -> None:
    if name == "lstm":
        source, shapes = LSTM, None
    else:
        source, shapes = REFERENCE_MODELS[name].path, REFERENCE_MODELS[name].shapes
    pyc_cli.build(source, tmp_path / "art", input_shapes=shapes)
    with pyc_cli.load(tmp_path / "art") as model:
        _hammer(model, rng)
        # the single-threaded results are right, too
        feeds = _random_feeds(model, rng)
        expected = onnxruntime_outputs(source, feeds)
        for key, value in model.run(feeds).items():
            np.testing.assert_allclose(value, expected[key], rtol=1e-4, atol=1e-5)


def test_a_bigger_mlp_from_threads(rng: np.random.Generator, tmp_path: Path) -> None:
    """An MLP of real size (784 -> 1024 -> 1024 -> 10, batch 16: a 128 KiB+ arena, 4 MiB of
    weights), where a shared arena would be overwritten mid-run by the other threads."""
    sizes = [784, 1024, 1024, 10]
    nodes, inits = [], []
    value = "x"
    for layer, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        inits += [init(f"w{layer}", (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in))
                       .astype(np.float32)),
                  init(f"b{layer}", rng.standard_normal(n_out).astype(np.float32))]
        nodes += [helper.make_node("MatMul", [value, f"w{layer}"], [f"m{layer}"]),
                  helper.make_node("Add", [f"m{layer}", f"b{layer}"], [f"a{layer}"])]
        value = f"a{layer}"
        if layer < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [value], [f"r{layer}"]))
            value = f"r{layer}"
    nodes.append(helper.make_node("Identity", [value], ["y"]))
    path = write_model(make_model(nodes, [vinfo("x", (16, 784))], [vinfo("y", (16, 10))], inits),
                       tmp_path, "big_mlp.onnx")
    pyc_cli.build(path, tmp_path / "art")
    with pyc_cli.load(tmp_path / "art") as model:
        assert model.arena_bytes >= 16 * 1024 * 4
        _hammer(model, rng)
        # runs overlapped (the GIL is released in native code): the pool holds several contexts
        assert len(model._idle) >= 2, "the threads' runs never overlapped"


def test_the_jit_path_is_thread_safe_too(rng: np.random.Generator, tmp_path: Path) -> None:
    ref = REFERENCE_MODELS["cnn"]
    pyc_cli.build(ref.path, tmp_path / "art", input_shapes=ref.shapes)
    with jit_load(tmp_path / "art") as model:
        _hammer(model, rng)


# ---------------------------------------------------------------- calling conventions


@pytest.fixture
def transformer(tmp_path: Path) -> CompiledModel:
    ref = REFERENCE_MODELS["transformer"]
    pyc_cli.build(ref.path, tmp_path / "art", input_shapes=ref.shapes)
    model = pyc_cli.load(tmp_path / "art")
    yield model
    model.close()


def _two_output_model(tmp_path: Path) -> CompiledModel:
    nodes = [helper.make_node("Relu", ["x"], ["pos"]), helper.make_node("Neg", ["x"], ["neg"])]
    path = write_model(make_model(nodes, [vinfo("x", (2, 3))], [vinfo("pos", (2, 3)),
                                                                vinfo("neg", (2, 3))]), tmp_path)
    pyc_cli.build(path, tmp_path / "two")
    return pyc_cli.load(tmp_path / "two")


def test_onnxruntime_calling_convention(rng: np.random.Generator, tmp_path: Path) -> None:
    x = rng.standard_normal((2, 3)).astype(np.float32)
    with _two_output_model(tmp_path) as model:
        as_dict = model.run({"x": x})
        assert list(as_dict) == ["pos", "neg"]
        every = model.run(None, {"x": x})
        assert isinstance(every, list) and len(every) == 2
        np.testing.assert_array_equal(every[0], np.maximum(x, 0))
        np.testing.assert_array_equal(every[1], -x)
        neg, pos = model.run(["neg", "pos"], {"x": x})  # the asked order, not the model's
        np.testing.assert_array_equal(neg, -x)
        np.testing.assert_array_equal(pos, np.maximum(x, 0))
        (only,) = model.run(("neg",), feeds={"x": x})
        np.testing.assert_array_equal(only, -x)
        assert model.run([], {"x": x}) == []


def test_run_reads_inputs_in_any_layout(rng: np.random.Generator, tmp_path: Path) -> None:
    """The run path takes an input's address cheaply where ctypes can view its buffer and falls
    back for what it cannot (read-only); a strided view or a Fortran-ordered array is made
    contiguous first. Every form gives the same outputs."""
    x = rng.standard_normal((2, 3)).astype(np.float32)
    read_only = x.copy()
    read_only.flags.writeable = False
    wide = np.zeros((2, 6), np.float32)
    wide[:, ::2] = x
    forms = {"c": x, "read-only": read_only, "strided": wide[:, ::2],
             "fortran": np.asfortranarray(x)}
    with _two_output_model(tmp_path) as model:
        for form, value in forms.items():
            got = model.run({"x": value})
            np.testing.assert_array_equal(got["pos"], np.maximum(x, 0), err_msg=form)
            np.testing.assert_array_equal(got["neg"], -x, err_msg=form)
        for feeds in ({"y": x}, {"x": x, "y": x}):  # a wrong name; one too many
            with pytest.raises(PycError, match="inputs do not match") as info:
                model.run(feeds)
            assert info.value.code == "E041"


def test_same_call_as_onnxruntime_gives_the_same_list(transformer: CompiledModel,
                                                     rng: np.random.Generator) -> None:
    """`sess.run(None, feeds)` swapped for a PyC model: same structure, same values."""
    import onnxruntime as ort

    feeds = _random_feeds(transformer, rng)
    session = ort.InferenceSession(str(REFERENCE_MODELS["transformer"].path),
                                   providers=["CPUExecutionProvider"])
    for names in (None, ["last_hidden_state"]):
        ours, theirs = transformer.run(names, feeds), session.run(names, feeds)
        assert isinstance(ours, list) and len(ours) == len(theirs) == 1
        np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-4, atol=1e-5)


def test_unknown_output_name_lists_the_valid_ones(transformer: CompiledModel,
                                                  rng: np.random.Generator) -> None:
    feeds = _random_feeds(transformer, rng)
    with pytest.raises(PycError) as info:
        transformer.run(["last_hidden_state", "pooler_output"], feeds)
    assert info.value.code == "E046"
    assert "'pooler_output'" in info.value.what
    assert "['last_hidden_state']" in info.value.where


@pytest.mark.parametrize("call", [
    lambda m, f: m.run("last_hidden_state", f),  # a bare string, not a list of names
    lambda m, f: m.run(["last_hidden_state"]),  # names but no feeds
    lambda m, f: m.run(f, f),  # a dict where the names go
])
def test_malformed_calls_give_e046(call, transformer: CompiledModel,  # noqa: ANN001
                                   rng: np.random.Generator) -> None:
    with pytest.raises(PycError) as info:
        call(transformer, _random_feeds(transformer, rng))
    assert info.value.code == "E046"


def test_check_feeds_validates_and_orders(transformer: CompiledModel,
                                          rng: np.random.Generator) -> None:
    feeds = _random_feeds(transformer, rng)
    reordered = {"attention_mask": feeds["attention_mask"], "input_ids": feeds["input_ids"]}
    arrays = transformer.check_feeds(reordered)
    assert [a.dtype for a in arrays] == [np.int64, np.int64]
    np.testing.assert_array_equal(arrays[0], feeds["input_ids"])  # the model's input order
    assert all(a.flags.c_contiguous for a in arrays)
    with pytest.raises(PycError, match="missing \\['attention_mask'\\]") as info:
        transformer.check_feeds({"input_ids": feeds["input_ids"]})
    assert info.value.code == "E041"
    with pytest.raises(PycError, match="'input_ids' is int32") as info:
        transformer.check_feeds({**feeds, "input_ids": feeds["input_ids"].astype(np.int32)})
    assert info.value.code == "E041"
    with pytest.raises(PycError, match="not a dict") as info:
        transformer.check_feeds([feeds["input_ids"], feeds["attention_mask"]])
    assert info.value.code == "E041"


def test_run_after_close_says_the_model_is_closed(rng: np.random.Generator,
                                                  tmp_path: Path) -> None:
    with _two_output_model(tmp_path) as model:
        feeds = {"x": rng.standard_normal((2, 3)).astype(np.float32)}
        model.run(feeds)
    for call in (lambda: model.run(feeds), lambda: model.run(None, feeds),
                 lambda: model.time_runs(feeds, 2)):
        with pytest.raises(PycError) as info:
            call()
        assert info.value.code == "E047"
        assert "closed" in info.value.what and "pyc_cli.load" in info.value.hint
    model.close()  # closing twice is harmless


def test_close_while_threads_run(rng: np.random.Generator, tmp_path: Path) -> None:
    """Runs in flight when close() is called finish with right results; later ones get E047;
    nothing crashes (the model is freed only after the last run returns its context)."""
    ref = REFERENCE_MODELS["cnn"]
    pyc_cli.build(ref.path, tmp_path / "art", input_shapes=ref.shapes)
    model = pyc_cli.load(tmp_path / "art")
    feeds = ref.random_feeds(rng)
    expected = model.run(feeds)["probs"]
    started = threading.Barrier(THREADS + 1)

    def worker() -> list[str]:
        started.wait()
        outcomes = []
        for _ in range(50):
            try:
                np.testing.assert_array_equal(model.run(feeds)["probs"], expected)
                outcomes.append("ran")
            except PycError as exc:
                assert exc.code == "E047"
                outcomes.append("closed")
        return outcomes

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(worker) for _ in range(THREADS)]
        started.wait()
        model.close()
        outcomes = [o for f in futures for o in f.result()]
    assert "closed" in outcomes
    assert outcomes.count("ran") + outcomes.count("closed") == len(outcomes)
    assert model._handle is None and not model._idle


# A process forked after a model has run (multiprocessing's fork start method, a pre-forking
# server) runs models too: libgomp's thread pool is not copied by fork, so a child that opened
# a team of two waited forever (the runtime now runs a forked child on its thread); its
# results are bitwise the parent's (the same at every team size)
_FORKED_CHILD_RUNS = """
import os, sys
import numpy as np
import pyc_cli
art, x = sys.argv[1], np.load(sys.argv[2])
model = pyc_cli.load(art)
want = model.run({"x": x})
pid = os.fork()
if pid == 0:
    with pyc_cli.load(art) as child:
        got = child.run({"x": x})
    os._exit(0 if np.array_equal(got["y"], want["y"]) else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


def test_a_child_forked_after_a_parallel_run_runs_the_model(rng: np.random.Generator,
                                                             tmp_path: Path) -> None:
    import subprocess
    import sys

    # 64 x 512 -> 2048 -> 512: GEMMs large enough to split over the team
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    inits = [init("w1", rng.standard_normal((512, 2048)).astype(np.float32) * 0.05),
             init("w2", rng.standard_normal((2048, 512)).astype(np.float32) * 0.05)]
    path = write_model(make_model(nodes, [vinfo("x", [64, 512])], [vinfo("y", [64, 512])], inits),
                       tmp_path)
    pyc_cli.build(path, tmp_path / "art", threads=2)
    np.save(tmp_path / "x.npy", rng.standard_normal((64, 512)).astype(np.float32))
    done = subprocess.run([sys.executable, "-c", _FORKED_CHILD_RUNS, str(tmp_path / "art"),
                           str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["child", "0"], done.stderr[-2000:]


# The conformance runner's case: the parent ran a large model on a team, the forked child runs
# another, small model (another library, whose kernels have no loop for a team): the child
# opens no parallel region, so libgomp's missing pool threads are never waited for (with a
# region per run, the taskloop scheme of benchmarks/results/resnet-under-load-2026-12-07.md,
# every such child hung)
_FORKED_CHILD_RUNS_ANOTHER = """
import os, sys
import numpy as np
import pyc_cli
big, small = pyc_cli.load(sys.argv[1]), sys.argv[2]
big.run({"x": np.load(sys.argv[3])})
x = np.load(sys.argv[4])
pid = os.fork()
if pid == 0:  # the small model's library is loaded for the first time here
    with pyc_cli.load(small) as child:
        got = child.run({"x": x})
    os._exit(0 if np.allclose(got["y"], np.tanh(x.astype(np.float64)), rtol=1e-6, atol=1e-6) else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


def test_a_child_forked_after_a_parallel_run_runs_another_small_model(
        rng: np.random.Generator, tmp_path: Path) -> None:
    import subprocess
    import sys

    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    inits = [init("w1", rng.standard_normal((512, 2048)).astype(np.float32) * 0.05),
             init("w2", rng.standard_normal((2048, 512)).astype(np.float32) * 0.05)]
    big = write_model(make_model(nodes, [vinfo("x", [64, 512])], [vinfo("y", [64, 512])], inits),
                      tmp_path, "big.onnx")
    small = write_model(make_model([helper.make_node("Tanh", ["x"], ["y"])], [vinfo("x", [3, 5])],
                                   [vinfo("y", [3, 5])]), tmp_path, "small.onnx")
    pyc_cli.build(big, tmp_path / "big.pyc", threads=2)
    pyc_cli.build(small, tmp_path / "small.pyc", threads=2)
    np.save(tmp_path / "big.npy", rng.standard_normal((64, 512)).astype(np.float32))
    np.save(tmp_path / "small.npy", rng.standard_normal((3, 5)).astype(np.float32))
    done = subprocess.run([sys.executable, "-c", _FORKED_CHILD_RUNS_ANOTHER, str(tmp_path / "big.pyc"),
                           str(tmp_path / "small.pyc"), str(tmp_path / "big.npy"),
                           str(tmp_path / "small.npy")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["child", "0"], done.stderr[-2000:]
