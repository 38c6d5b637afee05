/* PyC runtime: the few helpers generated models share. Plain C11, no dependencies but libc/libm. */
#ifndef PYC_RUNTIME_H
#define PYC_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define PYC_EXPORT __declspec(dllexport)
#else
#define PYC_EXPORT __attribute__((visibility("default")))
#endif

/* Status codes returned by every entry point (0 = success). */
enum pyc_status {
  PYC_STATUS_OK = 0,
  PYC_STATUS_INVALID_ARGUMENT = 1,
  PYC_STATUS_OUT_OF_MEMORY = 2,
  PYC_STATUS_WEIGHTS_UNREADABLE = 3,
  PYC_STATUS_WEIGHTS_MISMATCH = 4,
  PYC_STATUS_INDEX_OUT_OF_RANGE = 5
};

/* Element type codes used by the model metadata functions. */
enum pyc_dtype {
  PYC_DTYPE_F32 = 1, PYC_DTYPE_F64 = 2, PYC_DTYPE_F16 = 3, PYC_DTYPE_I8 = 4, PYC_DTYPE_I16 = 5,
  PYC_DTYPE_I32 = 6, PYC_DTYPE_I64 = 7, PYC_DTYPE_U8 = 8, PYC_DTYPE_BOOL = 9, PYC_DTYPE_U16 = 10,
  PYC_DTYPE_U32 = 11, PYC_DTYPE_U64 = 12
};

/* The text of a status code. Exported from every model library (the codes are the same for
 * all of them); each model also exports its own NAME_status_string. Everything else here is
 * hidden (-fvisibility=hidden): every library keeps a private copy, so models linked into one
 * program never clash on the runtime. */
PYC_EXPORT const char* pyc_status_string(int status);
const char* pyc_status_text(int status); /* the hidden implementation the models call */
void* pyc_aligned_alloc(size_t bytes);
void pyc_aligned_free(void* ptr);
/* Reads exactly `expected` bytes from `path` into a new aligned buffer and checks the checksum. */
int pyc_load_weights(const char* path, size_t expected, uint64_t checksum, unsigned char** out);
uint64_t pyc_weights_checksum(const unsigned char* data, size_t bytes);

/* Threads. A kernel loop whose iterations write disjoint outputs is marked PYC_PARALLEL_FOR;
 * built with OpenMP, its iterations are handed out to the run's team in shrinking chunks
 * (guided: few hand-outs for thousands of small iterations, and a thread the OS preempts
 * delays only its last chunk), and results are the same for every thread count (no
 * iteration's sum depends on who runs it); built without,
 * the mark is empty and the library runs serially. A run's team size is fixed when it starts
 * (`pyc_run_begin`) as the calling thread's OpenMP thread count, and the caller's own setting
 * is restored when it ends (no state of ours lives in thread-local storage, which the JIT
 * loader cannot link). */
#if defined(_OPENMP)
#define PYC_PARALLEL_FOR _Pragma("omp parallel for schedule(guided)")
#else
#define PYC_PARALLEL_FOR
#endif
/* The same contract for a loop of equal tasks that streams memory (a GEMV reading its weights
 * once): each thread takes one contiguous range of them, its share of the bytes. Guided
 * hand-outs let the thread that starts first take what a thread still waking up would have
 * read (measured: a 2-thread GEMV then often ran on one thread). */
#if defined(_OPENMP)
#define PYC_PARALLEL_FOR_STATIC _Pragma("omp parallel for schedule(static)")
#else
#define PYC_PARALLEL_FOR_STATIC
#endif
/* The threads a run may use: PYC_NUM_THREADS when set to a positive integer, else the build's
 * default (`pyc build --threads`; 0 = every core this process may use). */
int pyc_threads_wanted(int build_default);
/* Starts a run of `wanted` threads: the cores are shared among the runs of this library in
 * flight at once (callers' own threads do not oversubscribe the machine), and a run inside
 * another OpenMP team stays on its thread. Returns what pyc_run_end restores. */
int pyc_run_begin(int wanted);
void pyc_run_end(int saved);

#endif
