"""The CUDA emulator itself (emulate_cuda.h): barriers order shared-memory traffic across a
block and blocks reuse the shared arrays, and a kernel that reads what another thread writes
without a barrier between is caught (its threads run in a fresh shuffled order every phase),
whichever direction the dependency runs, so the emulated tests can fail on a missing
__syncthreads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cuda_emulation import CXX, compile_kernels, launch

pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")

THREADS = 64
# each thread stores its input in shared memory, then reads a neighbour's slot (the one `shift`
# threads further on) after a barrier, or with BARRIER empty, without one; then a tree
# reduction of the block's values with a barrier at every level; blocks reuse `tile`
SOURCE = """
#define BARRIER {barrier}
extern "C" __global__ void neighbour(float* out, float* sums, const float* in, const int* shift) {{
  __shared__ float tile[64];
  const unsigned t = threadIdx.x, base = blockIdx.x * 64;
  tile[t] = in[base + t];
  BARRIER;
  out[base + t] = tile[(t + (unsigned)*shift) % 64];
  __syncthreads();
  for (unsigned half = 32; half > 0; half >>= 1) {{
    if (t < half) tile[t] += tile[t + half];
    __syncthreads();
  }}
  if (t == 0) sums[blockIdx.x] = tile[0];
}}
"""


def run(tmp_path: Path, barrier: bool, shift: int, blocks: int,
        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lib = compile_kernels(SOURCE.format(barrier="__syncthreads()" if barrier else ""), tmp_path)
    values = rng.standard_normal(blocks * THREADS).astype(np.float32) + 10  # never 0
    out = np.full(blocks * THREADS, np.nan, np.float32)
    sums = np.full(blocks, np.nan, np.float32)
    offset = np.array([shift], np.int32)
    launch(lib, "neighbour", [blocks, 1, 1], [THREADS, 1, 1],
           [out.ctypes.data, sums.ctypes.data, values.ctypes.data, offset.ctypes.data])
    return values, out, sums


@pytest.mark.parametrize("shift", [1, THREADS - 1])
def test_a_barrier_orders_shared_memory_across_the_block(shift: int, tmp_path: Path,
                                                        rng: np.random.Generator) -> None:
    values, out, sums = run(tmp_path, True, shift, 5, rng)
    blocks = values.reshape(5, THREADS)
    np.testing.assert_array_equal(out.reshape(5, THREADS), np.roll(blocks, -shift, axis=1))
    np.testing.assert_allclose(sums, blocks.astype(np.float64).sum(axis=1), rtol=1e-5)


@pytest.mark.parametrize("shift", [1, THREADS - 1])  # reading a later thread's slot, an earlier one's
def test_a_missing_barrier_is_caught(shift: int, tmp_path: Path, rng: np.random.Generator) -> None:
    values, out, _ = run(tmp_path, False, shift, 5, rng)
    expected = np.roll(values.reshape(5, THREADS), -shift, axis=1).reshape(-1)
    stale = int(np.sum(out != expected))
    # in a random order, about half the reads come before the neighbour's write
    assert stale > THREADS, f"only {stale} of {out.size} reads were stale"
