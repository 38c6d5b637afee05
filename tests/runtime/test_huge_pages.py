"""Weights on huge pages (runtime_c/pyc_runtime.c, issue 13): pyc_weights_alloc places weights of
at least 4 MiB on 2 MiB boundaries with Linux's transparent-huge-page advice (a run streams every
weight byte once; with 4 KiB pages each 4 KiB costs a TLB miss), smaller ones stay 64-byte
aligned without it, as every pyc_aligned_alloc buffer (the arena) does. Checked through
tests/c/alloc_driver.c (compiled as strictly as the generated C: -std=c11 -pedantic -Werror),
sizes on both sides of the threshold and odd ones, every byte written and read back; and a model
whose weights pass the threshold matches onnxruntime and runs bitwise alike on one and two
threads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import compile_runtime_driver, init, make_model, vinfo, write_model
from onnx import helper

import pyc_cli

HUGE_BYTES, HUGE_PAGE = 4 << 20, 2 << 20  # pyc_runtime.c


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_runtime_driver("alloc_driver.c", tmp_path_factory.mktemp("alloc") / "alloc_driver")


SIZES = (0, 1, 63, 64, 4097, HUGE_BYTES - 1, HUGE_BYTES, HUGE_BYTES + 1, 9 * (1 << 20) + 13,
         3 * HUGE_PAGE + 7)


def allocations(driver: Path, kind: str) -> list[tuple[int, ...]]:
    done = subprocess.run([str(driver), kind, *map(str, SIZES)], capture_output=True, text=True,
                          check=True)
    rows = [tuple(int(v) for v in line.split()) for line in done.stdout.split("\n") if line]
    assert [r[0] for r in rows] == list(SIZES)
    assert all(r[2] == 1 for r in rows)  # every byte read back as written
    return rows


def test_plain_buffers_are_64_byte_aligned(driver: Path) -> None:
    for size, offset, _, _ in allocations(driver, "a"):
        assert offset % 64 == 0, (size, offset)


def test_weights_alignment_contents_and_advice(driver: Path) -> None:
    for size, offset, _, advice in allocations(driver, "w"):
        if size >= HUGE_BYTES and sys.platform.startswith("linux"):
            assert offset == 0, (size, offset)  # on a 2 MiB boundary
            assert advice == 1, size  # the mapping carries MADV_HUGEPAGE
        else:  # (a small buffer may land in heap pages an earlier large one advised)
            assert offset % 64 == 0, (size, offset)


def test_model_with_large_weights_matches_and_is_deterministic(tmp_path: Path,
                                                               rng: np.random.Generator,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1x1 conv and a MatMul whose weights (~5 MiB) pass the threshold: the artifact matches
    onnxruntime and runs bitwise alike on one and two threads."""
    c, oc, side, hidden = 37, 53, 11, 1153  # primes and odd sizes: tails of every vector width
    w = (rng.standard_normal((oc, c, 1, 1)) / np.sqrt(c)).astype(np.float32)
    m = (rng.standard_normal((oc * side * side, hidden)) / np.sqrt(oc * side * side)).astype(np.float32)
    assert w.nbytes + m.nbytes >= HUGE_BYTES
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"]),
         helper.make_node("Flatten", ["y"], ["f"]),
         helper.make_node("MatMul", ["f", "m"], ["out"])],
        [vinfo("x", [1, c, side, side])], [vinfo("out", [1, hidden])],
        [init("w", w), init("m", m)])
    path = write_model(model, tmp_path, "large.onnx")
    x = rng.standard_normal((1, c, side, side)).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    pyc_cli.build(path, tmp_path / "large.pyc")
    got = {}
    for threads in (1, 2):
        monkeypatch.setenv("PYC_NUM_THREADS", str(threads))
        with pyc_cli.load(tmp_path / "large.pyc") as compiled:
            got[threads] = compiled.run({"x": x})["out"]
    np.testing.assert_allclose(got[1], expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))
    assert np.array_equal(got[1], got[2])
