/* Just enough of CUDA's execution model to run PyC's generated kernels on the CPU, so their
 * indexing, bounds and reductions are tested where there is no GPU (test_cuda_emulated.py).
 *
 * A launch runs the blocks one after another on blockDim.x * blockDim.y * blockDim.z threads
 * (std::thread), which share the kernel's __shared__ arrays (function statics: one block at a
 * time uses them) and a barrier (__syncthreads). A warp shuffle is an exchange through a
 * per-block slot array between two barriers: every thread of the block takes part in the same
 * shuffles in PyC's kernels (their reductions are called by all threads). Force-included
 * before model.cu, whose prelude then defines the fixed-width types under other names (the
 * C++ library's own int64_t is `long`, the prelude's `long long`). */
#include <algorithm>
#include <barrier>
#include <math.h>
#include <thread>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
static thread_local dim3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static std::barrier<>* pyc_emu_barrier = nullptr;
static std::vector<float> pyc_emu_slots;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define int8_t pyc_emu_i8
#define int16_t pyc_emu_i16
#define int32_t pyc_emu_i32
#define int64_t pyc_emu_i64
#define uint8_t pyc_emu_u8
#define uint16_t pyc_emu_u16
#define uint32_t pyc_emu_u32
#define uint64_t pyc_emu_u64
#undef INT64_C
#undef UINT64_C

using std::max;  /* CUDA's integer min / max */
using std::min;

static inline void __syncthreads() { pyc_emu_barrier->arrive_and_wait(); }

static inline unsigned pyc_emu_linear_thread() {
  return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

static inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
  const unsigned me = pyc_emu_linear_thread();
  pyc_emu_slots[me] = v;
  __syncthreads();
  const float other = pyc_emu_slots[(me & ~31u) | ((me & 31u) ^ (unsigned)lane_mask)];
  __syncthreads();
  return other;
}

static inline float __int_as_float(int bits) {
  float value;
  __builtin_memcpy(&value, &bits, sizeof value);
  return value;
}

/* Run `fn` (every parameter a pointer) over the grid: args holds the pointer values. */
extern "C" void pyc_emu_launch(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, int nargs, void** a) {
  gridDim = {gx, gy, gz};
  blockDim = {bx, by, bz};
  const unsigned threads = bx * by * bz;
  std::barrier<> barrier((std::ptrdiff_t)threads);
  pyc_emu_barrier = &barrier;
  pyc_emu_slots.assign(threads, 0.0f);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([=, &barrier]() {
      threadIdx = {t % bx, t / bx % by, t / (bx * by)};
      for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
          for (unsigned x = 0; x < gx; ++x) {
            blockIdx = {x, y, z};
            switch (nargs) {  /* pointers all: the same calling convention as void* */
              case 1: ((void (*)(void*))fn)(a[0]); break;
              case 2: ((void (*)(void*, void*))fn)(a[0], a[1]); break;
              case 3: ((void (*)(void*, void*, void*))fn)(a[0], a[1], a[2]); break;
              case 4: ((void (*)(void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3]); break;
              case 5: ((void (*)(void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4]); break;
              case 6: ((void (*)(void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5]); break;
              case 7: ((void (*)(void*, void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6]); break;
              case 8: ((void (*)(void*, void*, void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]); break;
              default: __builtin_trap();
            }
            barrier.arrive_and_wait();  /* the next block reuses the shared arrays */
          }
    });
  }
  for (auto& thread : pool) thread.join();
  pyc_emu_barrier = nullptr;
}
