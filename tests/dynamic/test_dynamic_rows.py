"""Issue #15: row kernels (Softmax, LayerNormalization) over a symbolic row count and
elementwise loops broadcasting over symbolic leading dims, in a small encoder-like block with a
dynamic batch, against onnxruntime at many batches (the large ones split into tasks whose count
is computed at run time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import onnxruntime_outputs

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir.symbolic import parse_input_shapes
from pyc_cli.targets import get_target
from tests.dynamic.models import encoder_block
from tests.helpers import assert_strict_c11

RTOL, ATOL = 1e-4, 1e-5


def test_encoder_block_runs_every_batch(tmp_path: Path) -> None:
    model_path = encoder_block(tmp_path)
    shapes, _ = parse_input_shapes(["x=batch:1..512,16,64"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes).artifact
    kernels = {json.loads(line)["after"] for line in (art / "decisions.jsonl").read_text()
               .splitlines() if json.loads(line)["action"] == "select_kernel"}
    assert kernels == {"elementwise_loop_dims", "matmul_packed_const_rows", "softmax_rows_dims",
                       "layernorm_rows_dims"}
    source = (art / "src" / "model.c").read_text()
    assert "task < (((1024*dims[0]) + 16383) / 16384)" in source  # run-time task counts
    rng = np.random.default_rng(21)
    with pyc_cli.load(art) as model:
        for batch in (1, 3, 200, 511, 512):
            x = rng.standard_normal((batch, 16, 64)).astype(np.float32)
            y = model.run({"x": x})["y"]
            assert y.shape == (batch, 16, 64)
            np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"],
                                       rtol=RTOL, atol=ATOL)


def test_attention_layer_runs_every_batch_and_sequence_length(tmp_path: Path) -> None:
    """Two symbolic dims shared by two inputs: the embedding Gather, the projections, the
    Transposes into heads, the fused attention (mask included) and the LayerNorm all read
    batch and seq at run time; inputs disagreeing on seq are refused."""
    from tests.dynamic.models import attention_encoder

    model_path = attention_encoder(tmp_path)
    shapes, _ = parse_input_shapes(["ids=batch:1..4,seq:1..48", "mask=batch,seq"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes).artifact
    kernels = {json.loads(line)["after"] for line in (art / "decisions.jsonl").read_text()
               .splitlines() if json.loads(line)["action"] == "select_kernel"}
    assert {"gather_rows_dims", "strided_copy_dims", "attention_rows_dims"} <= kernels
    for compiler in ("gcc", "clang"):
        assert_strict_c11(compiler, art)
    rng = np.random.default_rng(8)
    with pyc_cli.load(art) as model:
        for batch, seq in ((1, 1), (2, 7), (3, 33), (1, 48), (4, 48)):
            ids = rng.integers(0, 50, (batch, seq)).astype(np.int64)
            mask = (rng.random((batch, seq)) > 0.3).astype(np.int64)
            mask[:, 0] = 1
            feeds = {"ids": ids, "mask": mask}
            y = model.run(feeds)["y"]
            assert y.shape == (batch, seq, 64)
            np.testing.assert_allclose(y, onnxruntime_outputs(model_path, feeds)["y"],
                                       rtol=RTOL, atol=ATOL)
        with pytest.raises(PycError) as info:
            model.run({"ids": np.zeros((2, 5), np.int64), "mask": np.ones((2, 6), np.int64)})
        assert info.value.code == "E041" and "another input gave seq = 5" in info.value.what


def test_concat_and_copy_over_a_symbolic_batch(tmp_path: Path) -> None:
    from tests.dynamic.models import concat_copy

    model_path = concat_copy(tmp_path)
    shapes, _ = parse_input_shapes(["x=batch:1..300,8"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes).artifact
    kernels = {json.loads(line)["after"] for line in (art / "decisions.jsonl").read_text()
               .splitlines() if json.loads(line)["action"] == "select_kernel"}
    assert {"concat_blocks_dims", "memcpy_dims"} <= kernels
    rng = np.random.default_rng(30)
    with pyc_cli.load(art) as model:
        for batch in (1, 150, 300):
            x = rng.standard_normal((batch, 8)).astype(np.float32)
            got, want = model.run({"x": x}), onnxruntime_outputs(model_path, {"x": x})
            for name in ("y", "z"):
                assert got[name].shape == want[name].shape
                np.testing.assert_allclose(got[name], want[name], rtol=RTOL, atol=ATOL)


def test_results_are_the_same_for_every_team_size(tmp_path: Path) -> None:
    """The run-time task splits cover disjoint outputs: bitwise the same result on 1, 2 and 3
    threads, at a batch that splits every kernel and at one that leaves some a single task."""
    if not get_target("cpu").openmp():
        pytest.skip("the C compiler has no OpenMP runtime")
    model_path = encoder_block(tmp_path, seed=3)
    shapes, _ = parse_input_shapes(["x=batch:1..512,16,64"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes, threads=2).artifact
    rng = np.random.default_rng(31)
    for batch in (5, 400):
        np.savez(tmp_path / "x.npz", x=rng.standard_normal((batch, 16, 64)).astype(np.float32))
        results = []
        for threads in ("1", "2", "3"):
            env = {**os.environ, "PYC_NUM_THREADS": threads}
            subprocess.run([sys.executable, "-m", "pyc_cli", "run", str(art), "--inputs",
                            str(tmp_path / "x.npz"), "--output", str(tmp_path / "y.npz")],
                           check=True, env=env, capture_output=True)
            results.append(np.load(tmp_path / "y.npz")["y"])
        assert results[0].shape == (batch, 16, 64)
        for y in results[1:]:
            np.testing.assert_array_equal(y, results[0])


def test_reductions_over_and_beside_symbolic_dims(tmp_path: Path) -> None:
    """A mean over the symbolic seq (its divisor read at run time), a max beside it, a sum over
    the symbolic batch itself."""
    from tests.dynamic.models import pooling

    model_path = pooling(tmp_path)
    shapes, _ = parse_input_shapes(["x=batch:1..6,seq:1..40,24"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes).artifact
    kernels = {json.loads(line)["after"] for line in (art / "decisions.jsonl").read_text()
               .splitlines() if json.loads(line)["action"] == "select_kernel"}
    assert kernels == {"reduce_strided_dims", "argreduce_rows_dims"}
    for compiler in ("gcc", "clang"):
        assert_strict_c11(compiler, art)
    rng = np.random.default_rng(40)
    with pyc_cli.load(art) as model:
        for batch, seq in ((1, 1), (6, 40), (3, 17)):
            x = rng.standard_normal((batch, seq, 24)).astype(np.float32)
            got, want = model.run({"x": x}), onnxruntime_outputs(model_path, {"x": x})
            for name in ("mean", "max", "sum", "best"):
                assert got[name].shape == want[name].shape, name
                np.testing.assert_allclose(got[name], want[name], rtol=RTOL, atol=ATOL)


def test_a_cnn_over_a_symbolic_batch_loops_its_static_kernels(tmp_path: Path) -> None:
    """Convs and the pool run their static kernel once per image (the conv's fused bias, Relu
    and residual included); the global pool, the head's GEMM read the batch themselves."""
    from tests.dynamic.models import small_cnn

    model_path = small_cnn(tmp_path)
    shapes, _ = parse_input_shapes(["x=batch:1..9,3,16,16"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes).artifact
    chosen = [json.loads(line) for line in (art / "decisions.jsonl").read_text().splitlines()
              if json.loads(line)["action"] == "select_kernel"]
    kernels = {d["after"] for d in chosen}
    assert {"conv_batch_loop", "maxpool_batch_loop"} <= kernels
    assert any("one image at a time through conv2d_" in d["reason"] for d in chosen)
    for compiler in ("gcc", "clang"):
        assert_strict_c11(compiler, art)
    rng = np.random.default_rng(50)
    with pyc_cli.load(art) as model:
        for batch in (1, 4, 9):
            x = rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)
            y = model.run({"x": x})["y"]
            assert y.shape == (batch, 10)
            np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"],
                                       rtol=RTOL, atol=ATOL)


def test_slices_whose_ranges_depend_on_a_symbolic_dim(tmp_path: Path) -> None:
    """x[:, 1:] (seq - 1 rows) and x[:, -3:] (its first element at (seq - 3) * D, read at run
    time)."""
    from tests.dynamic.models import slices

    model_path = slices(tmp_path)
    shapes, _ = parse_input_shapes(["x=batch:1..3,seq:3..20,16"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes).artifact
    assert 'f32["batch","seq - 1",16] = Slice' in (art / "model.ir").read_text()
    for compiler in ("gcc", "clang"):
        assert_strict_c11(compiler, art)
    rng = np.random.default_rng(60)
    with pyc_cli.load(art) as model:
        for batch, seq in ((1, 3), (2, 4), (3, 20), (2, 11)):
            x = rng.standard_normal((batch, seq, 16)).astype(np.float32)
            got, want = model.run({"x": x}), onnxruntime_outputs(model_path, {"x": x})
            for name in ("y", "tail"):
                np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("mode", ["latency_first", "memory_first"])
def test_every_mode_plans_for_every_shape(mode: str, tmp_path: Path) -> None:
    """memory_first's scratch caps, schedule and in-place choices, and latency_first's plan,
    on the CNN (batch loops) and the attention layer (two dims)."""
    from tests.dynamic.models import attention_encoder, small_cnn

    rng = np.random.default_rng(70)
    cnn, attention = small_cnn(tmp_path), attention_encoder(tmp_path)
    cases = [(cnn, ["x=batch:1..9,3,16,16"],
              [{"x": rng.standard_normal((b, 3, 16, 16)).astype(np.float32)} for b in (1, 7)]),
             (attention, ["ids=batch:1..4,seq:1..48", "mask=batch,seq"],
              [{"ids": rng.integers(0, 50, (b, s)).astype(np.int64),
                "mask": np.ones((b, s), np.int64)} for b, s in ((1, 48), (3, 5))])]
    for model_path, texts, feeds in cases:
        shapes, _ = parse_input_shapes(texts)
        art = pyc_cli.build(model_path, tmp_path / f"{model_path.stem}_{mode}", mode=mode,
                            input_shapes=shapes).artifact
        with pyc_cli.load(art) as model:
            for feed in feeds:
                got, want = model.run(feed), onnxruntime_outputs(model_path, feed)
                for name, value in want.items():
                    np.testing.assert_allclose(got[name], value, rtol=RTOL, atol=ATOL)
