/* Just enough of CUDA's execution model to run PyC's generated kernels on the CPU, so their
 * indexing, bounds and reductions are tested where there is no GPU (test_cuda_emulated.py).
 *
 * A launch runs the blocks one after another on blockDim.x * blockDim.y * blockDim.z CUDA
 * threads, each a fiber of one OS thread (its own stack; switched by a few instructions on
 * x86-64, by ucontext elsewhere: no OS thread, no system call per barrier), which share the
 * kernel's __shared__ arrays (function statics: one block at a time uses them). A fiber runs until it reaches a barrier
 * (__syncthreads, or the end of its block); when every thread of the block has arrived, the
 * next phase starts. Within a phase the threads run one after another in an order shuffled
 * anew for every phase (deterministically, from the launch and phase numbers), so a kernel that
 * reads what another thread writes without a barrier between gets stale data in some phase
 * and fails, whichever direction the dependency runs. A thread that leaves the kernel while
 * others wait at a barrier aborts the run (a GPU would hang or be undefined). A warp shuffle
 * is an exchange through a per-block slot array between two barriers: every thread of the
 * block takes part in the same shuffles in PyC's kernels (their reductions are called by all
 * threads). Force-included before model.cu, whose prelude then defines the fixed-width types
 * under other names (the C++ library's own int64_t is `long`, the prelude's `long long`).
 *
 * The tensor-core GEMM's primitives (codegen_templates/cuda/mma.cuh.j2, inline PTX there) are
 * defined here instead (PYC_EMULATED_MMA): cp.async as a plain copy (each wait is followed by
 * a barrier in the kernel), the conversions bit-exact (float16 / bfloat16 round to nearest
 * even, TF32 to nearest with ties away from zero), and mma.sync as a warp exchange through
 * per-thread fragment slots between two barriers (every thread of the block issues the same
 * mma calls), each thread then summing its four outputs in float32 from the warp's fragments
 * with the PTX ISA's fragment layouts: a wrong lane or register in the kernel shows here.
 * ldmatrix likewise: the warp's row addresses exchanged, each thread reading its elements.
 * Hopper's wgmma, TMA and mbarriers (wgmma.cuh.j2, tma.cuh.j2): see their section below. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
/* no C++ library headers: they were most of the compile time of every emulated model */

struct dim3 { unsigned x = 1, y = 1, z = 1; };
/* the running thread's: the scheduler sets them before it resumes a fiber */
static dim3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static float* pyc_emu_slots;
static unsigned* pyc_emu_frags;  /* 6 words a thread: mma fragments a0..a3, b0, b1 */
static const unsigned short** pyc_emu_rows;  /* a row address a thread (ldmatrix) */

/* ---- fibers: pyc_emu_to(save, load) keeps this fiber's place in `save` and continues the one
 * in `load` (the scheduler, or a CUDA thread where it stopped or at its start) */
static void pyc_emu_thread();
#if defined(__x86_64__) && !defined(PYC_EMU_UCONTEXT)
/* save the callee-saved registers on this stack, store its pointer in *save, continue on `load`
 * (the floating-point control words are never changed by the kernels) */
extern "C" void pyc_emu_switch(void** save, void* load);
__asm__(".text\n.globl pyc_emu_switch\n.hidden pyc_emu_switch\n.type pyc_emu_switch, @function\n"
        "pyc_emu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n.size pyc_emu_switch, .-pyc_emu_switch\n");
struct pyc_emu_context { void* sp; };
static pyc_emu_context pyc_emu_scheduler;
static void pyc_emu_entry();
static void pyc_emu_start(pyc_emu_context* c, char* stack, size_t size) {
  /* as pyc_emu_switch leaves a stack: six registers, then the address `ret` goes to; the
   * entry sees a 16-byte aligned stack less a return address, as after a call */
  void** top = (void**)(((unsigned long)(stack + size)) & ~15ul);
  top[-1] = nullptr;
  top[-2] = (void*)pyc_emu_entry;
  for (int i = 3; i <= 8; ++i) top[-i] = nullptr;
  c->sp = top - 8;
}
static inline void pyc_emu_to(pyc_emu_context* save, pyc_emu_context* load) {
  pyc_emu_switch(&save->sp, load->sp);
}
#else
struct pyc_emu_context { ucontext_t uc; };
static pyc_emu_context pyc_emu_scheduler;
static void pyc_emu_entry();
static void pyc_emu_start(pyc_emu_context* c, char* stack, size_t size) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack;
  c->uc.uc_stack.ss_size = size;
  c->uc.uc_link = nullptr;
  makecontext(&c->uc, pyc_emu_entry, 0);
}
static inline void pyc_emu_to(pyc_emu_context* save, pyc_emu_context* load) {
  swapcontext(&save->uc, &load->uc);
}
#endif

/* cp.async as the hardware may do it at its latest: a copy lands only when a wait_group
 * retires its group, and its destination holds all-ones bits (NaN as float32, fp16 and bf16)
 * until then, so a kernel that reads a slice before waiting for it computes NaN here too */
enum { PYC_EMU_ASYNC = 192 };
struct pyc_emu_async {
  void* dst;
  unsigned group;
  int size;
  alignas(16) unsigned char bytes[16];
};
/* a wgmma issued and not yet retired by a wgmma.wait_group: it computes when it retires (its
 * operands read then, so a slot refilled before the wait shows as a wrong result) */
enum { PYC_EMU_WGMMA = 16 };
struct pyc_emu_wgmma {
  float* d;
  int n, bf16, rs;
  unsigned long long a, b;  /* descriptors (a: rs false) */
  float a_rows[2][16];  /* rs: this thread's rows g and g + 8 of A, gathered at issue */
  unsigned group;
};
struct pyc_emu_fiber {
  pyc_emu_context context;
  dim3 thread, block;
  bool done;
  bool at_barrier;  /* waits in __syncthreads (not at a yield: an mbarrier or warpgroup wait) */
  unsigned commits, pending;  /* groups committed so far; copies not landed yet */
  pyc_emu_async copies[PYC_EMU_ASYNC];
  unsigned wgmma_commits, wgmmas;
  pyc_emu_wgmma wgmma[PYC_EMU_WGMMA];
};
/* events that change what a waiting thread sees (an arrival, a landed copy, a barrier): a
 * sweep of the runnable threads without one, and no copy in flight, is a deadlock */
static unsigned long long pyc_emu_progress = 0;
static pyc_emu_fiber* pyc_emu_fibers;
static pyc_emu_fiber* pyc_emu_running = nullptr;

static void pyc_emu_entry() {  /* a fiber's first frame: it never returns */
  pyc_emu_fiber* me = pyc_emu_running;
  pyc_emu_thread();
  me->done = true;
  pyc_emu_to(&me->context, &pyc_emu_scheduler);
  __builtin_trap();  /* a finished fiber is never resumed */
}

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __trap() __builtin_trap()
#define PYC_EMULATED_MMA 1
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

/* CUDA's min / max (like std::min / std::max: both operands of one type) */
template <class T> static inline T max(T a, T b) { return a < b ? b : a; }
template <class T> static inline T min(T a, T b) { return b < a ? b : a; }

/* back to the scheduler, which resumes this thread when the whole block has arrived */
static inline void __syncthreads() {
  pyc_emu_running->at_barrier = true;
  pyc_emu_to(&pyc_emu_running->context, &pyc_emu_scheduler);
  __asm__ __volatile__("" ::: "memory");  /* the other threads wrote shared and global memory */
}
/* the K-split conv's tile counters and partial sums (blocks run one after another here) */
static inline int atomicAdd(int* address, int value) {
  return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST);
}
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline float __ldcg(const float* address) { return *address; }
static inline unsigned short __ldcg(const unsigned short* address) { return *address; }

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

/* ---- the tensor-core primitives (mma.cuh.j2's inline PTX) */
static inline unsigned pyc_emu_bits(float f) { unsigned u; __builtin_memcpy(&u, &f, 4); return u; }
static inline float pyc_emu_float(unsigned u) { float f; __builtin_memcpy(&f, &u, 4); return f; }

static inline unsigned pyc_emu_f2h(float f) {  /* float -> float16 bits, nearest even */
  const unsigned x = pyc_emu_bits(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u);
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  /* 65520 and above round to infinity */
  if (ax < 0x38800000u)  /* below 2^-14: a subnormal half, exactly a multiple of 2^-24 */
    return sign | (unsigned)nearbyintf(pyc_emu_float(ax) * 16777216.0f);
  const unsigned mant = ax & 0x7fffffu, rest = mant & 0x1fffu;
  unsigned h = (((ax >> 23) - 112u) << 10) | (mant >> 13);
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  /* a carry moves the exponent */
  return sign | h;
}
static inline float pyc_emu_h2f(unsigned h) {
  const unsigned sign = (h & 0x8000u) << 16, e = (h >> 10) & 31u, m = h & 1023u;
  if (e == 0) return (sign ? -1.0f : 1.0f) * (float)m * 5.9604644775390625e-8f;
  if (e == 31) return pyc_emu_float(sign | 0x7f800000u | (m << 13));
  return pyc_emu_float(sign | ((e + 112u) << 23) | (m << 13));
}
static inline unsigned pyc_emu_f2bf(float f) {
  const unsigned x = pyc_emu_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
  return (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
}
/* 16-bit activations (cuda/half.cuh.j2): the same conversions, one value at a time */
static inline float pyc_f16_to_float(unsigned short h) { return pyc_emu_h2f(h); }
static inline unsigned short pyc_float_to_f16(float f) { return (unsigned short)pyc_emu_f2h(f); }
static inline float pyc_bf16_to_float(unsigned short h) { return pyc_emu_float((unsigned)h << 16); }
static inline unsigned short pyc_float_to_bf16(float f) { return (unsigned short)pyc_emu_f2bf(f); }
static inline unsigned pyc_pack_fp16(float lo, float hi) { return pyc_emu_f2h(lo) | (pyc_emu_f2h(hi) << 16); }
static inline unsigned pyc_pack_bf16(float lo, float hi) { return pyc_emu_f2bf(lo) | (pyc_emu_f2bf(hi) << 16); }
static inline unsigned pyc_tf32(float x) {
  const unsigned u = pyc_emu_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return u;
  return (u + 0x1000u) & 0xffffe000u;
}
static inline float pyc_emu_half(unsigned word, int high, int bf16) {
  const unsigned h = high ? word >> 16 : word & 0xffffu;
  return bf16 ? pyc_emu_float(h << 16) : pyc_emu_h2f(h);
}
/* A(row, k) and B(k, col) of the warp's m16n8 tile from the lanes' fragments (PTX ISA layouts) */
static inline float pyc_emu_a(const unsigned* warp, int row, int k, int kind) {
  if (kind == 2) {  /* tf32, m16n8k8: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4) */
    const int lane = (row % 8) * 4 + k % 4, reg = (row >= 8) + 2 * (k >= 4);
    return pyc_emu_float(warp[lane * 6 + reg]);
  }  /* 16-bit, m16n8k16: a0 (g, 2t..2t+1), a1 (g+8, ..), a2 (g, 2t+8..), a3 (g+8, 2t+8..) */
  const int lane = (row % 8) * 4 + (k % 8) / 2, reg = (row >= 8) + 2 * (k >= 8);
  return pyc_emu_half(warp[lane * 6 + reg], k & 1, kind);
}
static inline float pyc_emu_b(const unsigned* warp, int k, int col, int kind) {
  if (kind == 2) {  /* b0 (t, g), b1 (t+4, g) */
    return pyc_emu_float(warp[(col * 4 + k % 4) * 6 + 4 + (k >= 4)]);
  }  /* b0 (2t..2t+1, g), b1 (2t+8.., g) */
  return pyc_emu_half(warp[(col * 4 + (k % 8) / 2) * 6 + 4 + (k >= 8)], k & 1, kind);
}
/* kind: 0 float16, 1 bfloat16, 2 tf32 */
static inline void pyc_emu_mma(float* d, const unsigned* a, const unsigned* b, int kind) {
  const unsigned me = pyc_emu_linear_thread(), lane = me & 31u;
  unsigned* mine = &pyc_emu_frags[me * 6];
  for (int r = 0; r < 4; ++r) mine[r] = a[r];
  mine[4] = b[0];
  mine[5] = b[1];
  __syncthreads();
  const unsigned* warp = &pyc_emu_frags[(me & ~31u) * 6];
  const int g = (int)lane >> 2, t = (int)lane & 3, depth = kind == 2 ? 8 : 16;
  for (int r = 0; r < 4; ++r) {  /* d[r]: row g (+8 for r >= 2), column 2t + r % 2 */
    const int row = g + (r >> 1) * 8, col = 2 * t + (r & 1);
    float sum = d[r];
    for (int k = 0; k < depth; ++k) sum += pyc_emu_a(warp, row, k, kind) * pyc_emu_b(warp, k, col, kind);
    d[r] = sum;
  }
  __syncthreads();
}
static inline void pyc_mma_fp16(float* d, const unsigned* a, const unsigned* b) { pyc_emu_mma(d, a, b, 0); }
static inline void pyc_mma_bf16(float* d, const unsigned* a, const unsigned* b) { pyc_emu_mma(d, a, b, 1); }
static inline void pyc_mma_tf32(float* d, const unsigned* a, const unsigned* b) { pyc_emu_mma(d, a, b, 2); }
/* ldmatrix .x4: lane l gives the address of row l % 8 of matrix l / 8 (8 16-bit values);
 * register i of lane l gets matrix i's elements (l / 4, 2 (l % 4) + j), or with .trans its
 * elements (2 (l % 4) + j, l / 4), j = 0 in the low half */
static inline void pyc_emu_ldmatrix(unsigned* r, const void* row, bool trans) {
  const unsigned me = pyc_emu_linear_thread(), lane = me & 31u, base = me & ~31u;
  pyc_emu_rows[me] = (const unsigned short*)row;
  __syncthreads();
  for (unsigned i = 0; i < 4; ++i) {
    unsigned word = 0;
    for (unsigned j = 0; j < 2; ++j) {
      const unsigned short value = trans
          ? pyc_emu_rows[base + i * 8 + 2 * (lane % 4) + j][lane / 4]
          : pyc_emu_rows[base + i * 8 + lane / 4][2 * (lane % 4) + j];
      word |= (unsigned)value << (16 * j);
    }
    r[i] = word;
  }
  __syncthreads();
}
static inline void pyc_ldmatrix_x4(unsigned* r, const void* row) { pyc_emu_ldmatrix(r, row, false); }
static inline void pyc_ldmatrix_x4_trans(unsigned* r, const void* row) { pyc_emu_ldmatrix(r, row, true); }
struct float4 { float x, y, z, w; };
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct float2 { float x, y; };
struct uint4 { unsigned x, y, z, w; };
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline void pyc_emu_copy(void* dst, const void* src, int size, int src_bytes) {
  pyc_emu_fiber* me = pyc_emu_running;
  if (me->pending == PYC_EMU_ASYNC) {
    fprintf(stderr, "emulate_cuda.h: more than %d cp.async in flight in one thread\n", PYC_EMU_ASYNC);
    abort();
  }
  pyc_emu_async& copy = me->copies[me->pending++];
  copy.dst = dst;
  copy.group = me->commits;  /* the group the next commit closes */
  copy.size = size;
  __builtin_memset(copy.bytes, 0, sizeof copy.bytes);
  __builtin_memcpy(copy.bytes, src, (size_t)src_bytes);  /* inputs do not change in a kernel */
  __builtin_memset(dst, 0xFF, (size_t)size);
}
/* wait_group n: every copy of a committed group but the n latest lands; uncommitted ones wait */
static inline void pyc_emu_wait(unsigned n) {
  pyc_emu_fiber* me = pyc_emu_running;
  unsigned kept = 0;
  for (unsigned i = 0; i < me->pending; ++i) {
    pyc_emu_async& copy = me->copies[i];
    if (copy.group + n < me->commits)
      __builtin_memcpy(copy.dst, copy.bytes, (size_t)copy.size);
    else
      me->copies[kept++] = copy;
  }
  me->pending = kept;
}
static inline void pyc_cp_async4(void* dst, const void* src, int src_bytes) { pyc_emu_copy(dst, src, 4, src_bytes); }
static inline void pyc_cp_async8(void* dst, const void* src, int src_bytes) { pyc_emu_copy(dst, src, 8, src_bytes); }
static inline void pyc_cp_async16(void* dst, const void* src, int src_bytes) { pyc_emu_copy(dst, src, 16, src_bytes); }
static inline void pyc_cp_async_commit() { ++pyc_emu_running->commits; }
static inline void pyc_cp_async_wait0() { pyc_emu_wait(0); }
static inline void pyc_cp_async_wait1() { pyc_emu_wait(1); }
static inline void pyc_cp_async_wait2() { pyc_emu_wait(2); }
/* dynamic shared memory: one array as large as a block may have (one block at a time), whose
 * shared-space address is its offset in pyc_emu_shared; it starts 16 bytes past a 1024-byte
 * boundary, so a kernel that needs 1024-byte alignment has to align it as on a GPU */
alignas(1024) static unsigned char pyc_emu_shared[(227 << 10) + 1024];
#define PYC_DYNAMIC_SHARED(name) unsigned char* const name = pyc_emu_shared + 16
static inline unsigned long __cvta_generic_to_shared(const void* p) {
  return (unsigned long)((const unsigned char*)p - pyc_emu_shared);
}
static inline unsigned char* pyc_emu_smem(unsigned address, unsigned bytes) {
  if (address + bytes > sizeof pyc_emu_shared) {
    fprintf(stderr, "emulate_cuda.h: shared address %u past the block's shared memory\n", address);
    abort();
  }
  return pyc_emu_shared + address;
}

/* ---- Hopper (wgmma.cuh.j2, tma.cuh.j2): mbarriers, TMA, wgmma, warp specialisation.
 * A thread that waits (an mbarrier phase, its warpgroup) yields: the scheduler runs the other
 * threads and resumes it in the next sweep, while a thread in __syncthreads waits for the
 * block. TMA loads land at the start of the next sweep (after every runnable thread has run
 * on), 128-byte swizzled as the hardware writes them (16-byte chunk bits 4-6 of the shared
 * address XOR bits 7-9), zeros outside the tensor, then complete their bytes on the mbarrier.
 * The tensor maps are FakeDriver's (cuda_emulation.py): 16 words, [0] the address, [1] the
 * rank and the element size (bits 8..), [2..6] dims, [7..10] byte strides, [11..13] the box
 * (two 32-bit values a word). A wgmma computes when a wait_group retires it, each thread its
 * own accumulators (the m16n8 order of mma.sync, warp w % 4 of the warpgroup rows 16 w..),
 * reading A and B through their descriptors as the kernels lay them out (128-byte swizzle; A
 * K-major: row m at (m / 8) SBO + (m % 8) 128 bytes; B N-major (imm-trans-b): column n's
 * 64-column block at (n / 64) LBO, row k at (k / 8) SBO + (k % 8) 128), or A from the
 * warpgroup's registers (the A fragments of mma.sync m16n8k16, gathered when it is issued). */
static inline void pyc_emu_yield() {
  pyc_emu_running->at_barrier = false;
  pyc_emu_to(&pyc_emu_running->context, &pyc_emu_scheduler);
  __asm__ __volatile__("" ::: "memory");
}
static inline unsigned pyc_emu_swizzle(unsigned address) {
  return address ^ (((address >> 7) & 7u) << 4);
}
struct pyc_emu_mbar { int expected, pending; long long tx; unsigned phase, live; };
static pyc_emu_mbar pyc_emu_mbars[sizeof pyc_emu_shared / 8];
static inline pyc_emu_mbar& pyc_emu_bar(unsigned address, bool init = false) {
  pyc_emu_smem(address, 8);
  pyc_emu_mbar& bar = pyc_emu_mbars[address / 8];
  if (address % 8 || (!init && !bar.live)) {
    fprintf(stderr, "emulate_cuda.h: no mbarrier at shared address %u\n", address);
    abort();
  }
  return bar;
}
static inline void pyc_emu_bar_step(pyc_emu_mbar& bar) {
  ++pyc_emu_progress;
  if (bar.pending < 0) {
    fprintf(stderr, "emulate_cuda.h: more arrivals on an mbarrier than its count\n");
    abort();
  }
  if (bar.pending == 0 && bar.tx == 0) {  /* the phase completes; the next one starts */
    bar.phase ^= 1u;
    bar.pending = bar.expected;
  }
}
static inline void pyc_mbar_init(unsigned address, unsigned count) {
  pyc_emu_mbar& bar = pyc_emu_bar(address, true);
  bar = {(int)count, (int)count, 0, 0, 1};
  ++pyc_emu_progress;
}
static inline void pyc_mbar_init_fence() {}
static inline void pyc_mbar_arrive_tx(unsigned address, unsigned bytes) {
  pyc_emu_mbar& bar = pyc_emu_bar(address);
  bar.tx += bytes;
  --bar.pending;
  pyc_emu_bar_step(bar);
}
static inline void pyc_mbar_arrive(unsigned address) {
  pyc_emu_mbar& bar = pyc_emu_bar(address);
  --bar.pending;
  pyc_emu_bar_step(bar);
}
static inline void pyc_mbar_wait(unsigned address, unsigned parity) {
  bool waited = false;
  while (pyc_emu_bar(address).phase == (parity & 1u)) {  /* that phase has not completed */
    pyc_emu_yield();
    waited = true;
  }
  if (waited) ++pyc_emu_progress;
}
static inline void pyc_tmap_acquire(const void* map) {
  if (map == nullptr) abort();
}
struct pyc_emu_bulk { unsigned dst, bar; const unsigned long long* map; int coords[5]; };
enum { PYC_EMU_BULKS = 4096 };
static pyc_emu_bulk pyc_emu_bulks[PYC_EMU_BULKS];
static unsigned pyc_emu_nbulk = 0;
static inline void pyc_emu_tma(unsigned dst, const void* map, unsigned bar, int rank, const int* c) {
  const unsigned long long* words = (const unsigned long long*)map;
  if ((int)(words[1] & 255u) != rank || dst % 128 || pyc_emu_nbulk == PYC_EMU_BULKS) {
    fprintf(stderr, "emulate_cuda.h: a TMA load of rank %d into %u does not fit its map\n", rank, dst);
    abort();
  }
  pyc_emu_bar(bar);
  pyc_emu_bulk& bulk = pyc_emu_bulks[pyc_emu_nbulk++];
  bulk = {dst, bar, words, {0, 0, 0, 0, 0}};
  for (int d = 0; d < rank; ++d) bulk.coords[d] = c[d];
}
/* the loads issued in the last sweep land (the scheduler calls this between sweeps) */
static void pyc_emu_land_bulk() {
  for (unsigned q = 0; q < pyc_emu_nbulk; ++q) {
    const pyc_emu_bulk& bulk = pyc_emu_bulks[q];
    const unsigned long long* w = bulk.map;
    const int rank = (int)(w[1] & 255u), size = (int)(w[1] >> 8 & 255u);
    long long dims[5] = {1, 1, 1, 1, 1}, strides[5] = {0, 0, 0, 0, 0};
    int box[5] = {1, 1, 1, 1, 1};
    for (int d = 0; d < rank; ++d) {
      dims[d] = (long long)w[2 + d];
      strides[d] = d == 0 ? size : (long long)w[7 + d - 1];
      box[d] = (int)(w[11 + d / 2] >> (32 * (d % 2)) & 0xffffffffu);
    }
    const long long elements = (long long)box[0] * box[1] * box[2] * box[3] * box[4];
    unsigned char* base = pyc_emu_smem(bulk.dst, (unsigned)(elements * size));
    for (long long e = 0; e < elements; ++e) {
      long long rest = e, offset = 0;
      bool inside = true;
      for (int d = 0; d < 5; ++d) {
        const long long at = bulk.coords[d] + rest % box[d];
        rest /= box[d];
        inside = inside && at >= 0 && at < dims[d];
        offset += at * strides[d];
      }
      unsigned char* to = base + (pyc_emu_swizzle(bulk.dst + (unsigned)(e * size)) - bulk.dst);
      if (inside) __builtin_memcpy(to, (const unsigned char*)w[0] + offset, (size_t)size);
      else __builtin_memset(to, 0, (size_t)size);
    }
    pyc_emu_mbar& bar = pyc_emu_bar(bulk.bar);
    bar.tx -= elements * size;  /* complete_tx: the whole box, zeros included */
    pyc_emu_bar_step(bar);
  }
  pyc_emu_nbulk = 0;
}
static inline void pyc_tma_load2(unsigned dst, const void* map, unsigned bar, int c0, int c1) {
  const int c[] = {c0, c1};
  pyc_emu_tma(dst, map, bar, 2, c);
}
static inline void pyc_tma_load3(unsigned dst, const void* map, unsigned bar, int c0, int c1, int c2) {
  const int c[] = {c0, c1, c2};
  pyc_emu_tma(dst, map, bar, 3, c);
}
static inline void pyc_tma_load4(unsigned dst, const void* map, unsigned bar, int c0, int c1, int c2, int c3) {
  const int c[] = {c0, c1, c2, c3};
  pyc_emu_tma(dst, map, bar, 4, c);
}
static inline void pyc_tma_load5(unsigned dst, const void* map, unsigned bar, int c0, int c1, int c2, int c3, int c4) {
  const int c[] = {c0, c1, c2, c3, c4};
  pyc_emu_tma(dst, map, bar, 5, c);
}
template <int N> static inline void pyc_setmaxnreg_dec() {}
template <int N> static inline void pyc_setmaxnreg_inc() {}
static inline void pyc_wgmma_fence() {}
static inline void pyc_fence_proxy_async() {}
static inline void pyc_wgmma_fence_operand(float&) {}
static inline void pyc_wgmma_fence_operand_u(unsigned&) {}
/* the threads of this thread's warpgroup meet (the register-A wgmma's exchange) */
static unsigned pyc_emu_wg_count[8], pyc_emu_wg_generation[8];
static inline void pyc_emu_warpgroup_sync() {
  const unsigned wg = pyc_emu_linear_thread() / 128u, generation = pyc_emu_wg_generation[wg];
  ++pyc_emu_progress;
  if (++pyc_emu_wg_count[wg] == 128u) {
    pyc_emu_wg_count[wg] = 0;
    ++pyc_emu_wg_generation[wg];
    return;
  }
  while (pyc_emu_wg_generation[wg] == generation) pyc_emu_yield();
}
static inline float pyc_emu_smem16(unsigned address, int bf16) {
  unsigned short h;
  __builtin_memcpy(&h, pyc_emu_smem(pyc_emu_swizzle(address), 2), 2);
  return bf16 ? pyc_emu_float((unsigned)h << 16) : pyc_emu_h2f(h);
}
static inline void pyc_emu_desc(unsigned long long desc, unsigned* start, unsigned* lbo, unsigned* sbo) {
  if ((desc >> 62) != 1u) {
    fprintf(stderr, "emulate_cuda.h: a wgmma descriptor without the 128-byte swizzle\n");
    abort();
  }
  *start = (unsigned)(desc & 0x3FFFu) << 4;
  *lbo = (unsigned)(desc >> 16 & 0x3FFFu) << 4;
  *sbo = (unsigned)(desc >> 32 & 0x3FFFu) << 4;
}
static void pyc_emu_wgmma_run(const pyc_emu_wgmma& op) {
  const unsigned me = pyc_emu_linear_thread(), lane = me & 31u, warp = (me >> 5) & 3u;
  const int g = (int)lane >> 2, t = (int)lane & 3;
  unsigned a0 = 0, a_lbo = 0, a_sbo = 0, b0, b_lbo, b_sbo;
  if (!op.rs) pyc_emu_desc(op.a, &a0, &a_lbo, &a_sbo);
  pyc_emu_desc(op.b, &b0, &b_lbo, &b_sbo);
  for (int r = 0; r < op.n / 2; ++r) {  /* d[r]: row 16 warp + g (+ 8), column 8 (r / 4) + 2t + r % 2 */
    const int half = (r >> 1) & 1, row = 16 * (int)warp + g + 8 * half;
    const int col = 8 * (r >> 2) + 2 * t + (r & 1);
    float sum = op.d[r];
    for (int k = 0; k < 16; ++k) {
      const float a = op.rs ? op.a_rows[half][k]
                            : pyc_emu_smem16(a0 + (unsigned)(row / 8) * a_sbo + (unsigned)(row % 8) * 128u + 2u * k, op.bf16);
      const float b = pyc_emu_smem16(b0 + (unsigned)(col / 64) * b_lbo + (unsigned)(k / 8) * b_sbo
                                     + (unsigned)(k % 8) * 128u + 2u * (col % 64), op.bf16);
      sum += a * b;
    }
    op.d[r] = sum;
  }
}
static inline pyc_emu_wgmma& pyc_emu_wgmma_issue(float* d, int n, int bf16) {
  pyc_emu_fiber* me = pyc_emu_running;
  if (me->wgmmas == PYC_EMU_WGMMA) {
    fprintf(stderr, "emulate_cuda.h: more than %d wgmma in flight\n", PYC_EMU_WGMMA);
    abort();
  }
  pyc_emu_wgmma& op = me->wgmma[me->wgmmas++];
  op.d = d;
  op.n = n;
  op.bf16 = bf16;
  op.group = me->wgmma_commits;
  return op;
}
static inline void pyc_emu_wgmma_ss(float* d, unsigned long long a, unsigned long long b, int n, int bf16) {
  pyc_emu_wgmma& op = pyc_emu_wgmma_issue(d, n, bf16);
  op.rs = 0;
  op.a = a;
  op.b = b;
}
static inline void pyc_emu_wgmma_rs(float* d, const unsigned* a, unsigned long long b, int n, int bf16) {
  const unsigned me = pyc_emu_linear_thread(), lane = me & 31u;
  for (int r = 0; r < 4; ++r) pyc_emu_frags[me * 6 + r] = a[r];
  pyc_emu_warpgroup_sync();
  pyc_emu_wgmma& op = pyc_emu_wgmma_issue(d, n, bf16);
  op.rs = 1;
  op.b = b;
  const unsigned* warp = &pyc_emu_frags[(me & ~31u) * 6];
  for (int half = 0; half < 2; ++half)
    for (int k = 0; k < 16; ++k)
      op.a_rows[half][k] = pyc_emu_a(warp, (int)(lane >> 2) + 8 * half, k, bf16);
  pyc_emu_warpgroup_sync();  /* everyone has read the exchange before it is written again */
}
static inline void pyc_wgmma_commit() { ++pyc_emu_running->wgmma_commits; }
template <int N> static inline void pyc_wgmma_wait() {
  pyc_emu_fiber* me = pyc_emu_running;
  unsigned kept = 0;
  for (unsigned i = 0; i < me->wgmmas; ++i) {
    if (me->wgmma[i].group + N < me->wgmma_commits) pyc_emu_wgmma_run(me->wgmma[i]);
    else me->wgmma[kept++] = me->wgmma[i];
  }
  me->wgmmas = kept;
}
#define PYC_EMU_WGMMA_SHAPES(n) \
  static inline void pyc_wgmma_fp16_n##n(float* d, unsigned long long a, unsigned long long b) { pyc_emu_wgmma_ss(d, a, b, n, 0); } \
  static inline void pyc_wgmma_bf16_n##n(float* d, unsigned long long a, unsigned long long b) { pyc_emu_wgmma_ss(d, a, b, n, 1); } \
  static inline void pyc_wgmma_rs_fp16_n##n(float* d, const unsigned* a, unsigned long long b) { pyc_emu_wgmma_rs(d, a, b, n, 0); } \
  static inline void pyc_wgmma_rs_bf16_n##n(float* d, const unsigned* a, unsigned long long b) { pyc_emu_wgmma_rs(d, a, b, n, 1); }
PYC_EMU_WGMMA_SHAPES(128)
PYC_EMU_WGMMA_SHAPES(256)
static inline float2 pyc_lds_float2(unsigned address) {
  float2 v;
  __builtin_memcpy(&v, pyc_emu_smem(address, 8), 8);
  return v;
}

/* ---- the launch */
static void* pyc_emu_fn;
static int pyc_emu_nargs;
static void** pyc_emu_args;

static void pyc_emu_call() {
  void* fn = pyc_emu_fn;
  void** a = pyc_emu_args;
  /* pointers all: the same calling convention as void*; up to 16 (the generic kernel of an
   * LSTM with every input takes 12) */
  switch (pyc_emu_nargs) {
    case 1: ((void (*)(void*))fn)(a[0]); break;
    case 2: ((void (*)(void*, void*))fn)(a[0], a[1]); break;
    case 3: ((void (*)(void*, void*, void*))fn)(a[0], a[1], a[2]); break;
    case 4: ((void (*)(void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3]); break;
    case 5: ((void (*)(void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4]); break;
    case 6: ((void (*)(void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5]); break;
    case 7: ((void (*)(void*, void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6]); break;
    case 8: ((void (*)(void*, void*, void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]); break;
    case 9: ((void (*)(void*, void*, void*, void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]); break;
    case 10: ((void (*)(void*, void*, void*, void*, void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]); break;
    case 11: ((void (*)(void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]); break;
    case 12: ((void (*)(void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]); break;
    case 13: ((void (*)(void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12]); break;
    case 14: ((void (*)(void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13]); break;
    case 15: ((void (*)(void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14]); break;
    case 16: ((void (*)(void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]); break;
    default: __builtin_trap();
  }
}

/* one CUDA thread: every block in turn, a barrier after each (the next block reuses the
 * shared arrays) */
static void pyc_emu_thread() {
  pyc_emu_fiber* me = pyc_emu_running;
  for (unsigned z = 0; z < gridDim.z; ++z)
    for (unsigned y = 0; y < gridDim.y; ++y)
      for (unsigned x = 0; x < gridDim.x; ++x) {
        me->block = blockIdx = {x, y, z};
        me->commits = me->pending = 0;  /* a block's copies never land in the next one's */
        me->wgmma_commits = me->wgmmas = 0;
        pyc_emu_call();
        __syncthreads();
      }
}

enum { PYC_EMU_STACK = 256 << 10 };
static unsigned long long pyc_emu_launches = 0;
static unsigned pyc_emu_capacity = 0;  /* threads the per-thread arrays below have room for */
static char** pyc_emu_stacks;  /* one a thread, kept across launches */
static unsigned* pyc_emu_order;

static void* pyc_emu_grow(void* old, size_t bytes) {
  void* grown = realloc(old, bytes);
  if (grown == nullptr) abort();
  return grown;
}

static void pyc_emu_reserve(unsigned threads) {
  if (threads <= pyc_emu_capacity) return;
  pyc_emu_slots = (float*)pyc_emu_grow(pyc_emu_slots, threads * sizeof(float));
  pyc_emu_frags = (unsigned*)pyc_emu_grow(pyc_emu_frags, threads * 6 * sizeof(unsigned));
  pyc_emu_rows = (const unsigned short**)pyc_emu_grow(pyc_emu_rows, threads * sizeof(void*));
  pyc_emu_fibers = (pyc_emu_fiber*)pyc_emu_grow(pyc_emu_fibers, threads * sizeof(pyc_emu_fiber));
  pyc_emu_order = (unsigned*)pyc_emu_grow(pyc_emu_order, threads * sizeof(unsigned));
  pyc_emu_stacks = (char**)pyc_emu_grow(pyc_emu_stacks, threads * sizeof(char*));
  for (unsigned t = pyc_emu_capacity; t < threads; ++t)
    pyc_emu_stacks[t] = (char*)pyc_emu_grow(nullptr, PYC_EMU_STACK);
  pyc_emu_capacity = threads;
}

/* Run `fn` (every parameter a pointer) over the grid: args holds the pointer values. */
extern "C" void pyc_emu_launch(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, int nargs, void** a) {
  gridDim = {gx, gy, gz};
  blockDim = {bx, by, bz};
  pyc_emu_fn = fn;
  pyc_emu_nargs = nargs;
  pyc_emu_args = a;
  const unsigned threads = bx * by * bz;
  pyc_emu_reserve(threads);
  memset(pyc_emu_slots, 0, threads * sizeof(float));
  memset(pyc_emu_frags, 0, threads * 6 * sizeof(unsigned));
  memset(pyc_emu_rows, 0, threads * sizeof(void*));
  unsigned* order = pyc_emu_order;
  for (unsigned t = 0; t < threads; ++t) {
    pyc_emu_fiber& f = pyc_emu_fibers[t];
    f.done = f.at_barrier = false;  /* (not f = {}: the copies array need not be zeroed) */
    f.commits = f.pending = 0;
    f.wgmma_commits = f.wgmmas = 0;
    f.thread = {t % bx, t / bx % by, t / (bx * by)};
    pyc_emu_start(&f.context, pyc_emu_stacks[t], PYC_EMU_STACK);
    order[t] = t;
  }
  memset(pyc_emu_mbars, 0, sizeof pyc_emu_mbars);
  memset(pyc_emu_wg_count, 0, sizeof pyc_emu_wg_count);
  pyc_emu_nbulk = 0;
  /* each sweep: every runnable thread runs to its next barrier, yield or end, in a fresh
   * order; when none is runnable, the threads at the barrier go on (all of the block is) */
  unsigned long long state = 0x9E3779B97F4A7C15ull * ++pyc_emu_launches;
  unsigned stalled = 0;
  for (;;) {
    const bool landing = pyc_emu_nbulk != 0;
    pyc_emu_land_bulk();
    unsigned runnable = 0, at_barrier = 0, done = 0;
    for (unsigned t = 0; t < threads; ++t) {
      const pyc_emu_fiber& f = pyc_emu_fibers[t];
      if (f.done) ++done; else if (f.at_barrier) ++at_barrier; else ++runnable;
    }
    if (runnable == 0) {
      if (at_barrier == 0) break;
      if (done != 0) {
        fprintf(stderr, "emulate_cuda.h: %u threads left the kernel while %u wait at a barrier\n",
                done, at_barrier);
        abort();
      }
      for (unsigned t = 0; t < threads; ++t) pyc_emu_fibers[t].at_barrier = false;
      ++pyc_emu_progress;
    }
    const unsigned long long before = pyc_emu_progress;
    for (unsigned i = threads; i > 1; --i) {  /* Fisher-Yates from a xorshift64 generator */
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      const unsigned j = (unsigned)(state % i), kept = order[i - 1];
      order[i - 1] = order[j];
      order[j] = kept;
    }
    for (unsigned i = 0; i < threads; ++i) {
      const unsigned t = order[i];
      pyc_emu_fiber& f = pyc_emu_fibers[t];
      if (f.done || f.at_barrier) continue;
      threadIdx = f.thread;
      blockIdx = f.block;
      pyc_emu_running = &f;
      pyc_emu_to(&pyc_emu_scheduler, &f.context);
      if (f.done || f.at_barrier) ++pyc_emu_progress;
    }
    /* nothing changed and nothing in flight: the yielding threads wait for each other */
    stalled = pyc_emu_progress == before && !landing && pyc_emu_nbulk == 0 ? stalled + 1 : 0;
    if (stalled > 2) {
      fprintf(stderr, "emulate_cuda.h: deadlock: threads wait on mbarriers or their warpgroup "
              "and nothing can complete them\n");
      abort();
    }
  }
  pyc_emu_running = nullptr;
}
