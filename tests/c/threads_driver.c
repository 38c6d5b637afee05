/* Test driver (tests/targets/cpu/test_c_abi.py): runs one compiled model from several pthreads at once,
 * built together with the model's generated C and the runtime, e.g. under -fsanitize=thread.
 *
 * Compile with -DPYC_NAME=<the model's symbol prefix> and -I <artifact>/src.
 * Usage: threads_driver WEIGHTS MODE THREADS RUNS
 *   MODE contexts: every thread runs in its own context (PYC_NAME_context_run), as documented;
 *   MODE shared:   every thread calls PYC_NAME_run on the one model, which the contract
 *                  forbids (they share its arena): the sanitizer must see that race.
 *   MODE omp:      as contexts, the threads being the caller's own OpenMP team (a run inside
 *                  another team stays on its thread; built with -fopenmp).
 * Each thread feeds its own pseudo-random inputs; every result must equal, byte for byte, the
 * result of the same inputs run alone first. Prints "mismatches N"; exit 0 iff N == 0. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "model.h"

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(suffix) CAT(PYC_NAME, suffix)

typedef FN(model) model_t;
typedef FN(context) context_t;

enum { MAX_THREADS = 64 };

typedef struct {
  model_t* model;
  int shared;
  int runs;
  void* inputs[CAT(PYC_NAME, NUM_INPUTS)];
  void* expected[CAT(PYC_NAME, NUM_OUTPUTS)];
  void* outputs[CAT(PYC_NAME, NUM_OUTPUTS)];
  int mismatches;
  int status;
} job_t;

/* Random bytes, made valid for the dtype: floats in [-1, 1), integers in [0, 2) (index and mask
 * inputs stay in range for any model), bools 0/1. */
static void* random_input(int index, uint32_t seed) {
  size_t bytes = (size_t)FN(io_bytes)(0, index);
  unsigned char* data = malloc(bytes ? bytes : 1);
  int dtype = FN(io_dtype)(0, index);
  for (size_t i = 0; data != NULL && i < bytes;) {
    seed = seed * 1664525u + 1013904223u;
    if (dtype == PYC_DTYPE_F32) {
      float value = (float)(seed >> 8) / (float)(1u << 23) - 1.0f;
      memcpy(data + i, &value, sizeof value);
      i += sizeof value;
    } else if (dtype == PYC_DTYPE_I64) {
      int64_t value = (int64_t)(seed >> 31);
      memcpy(data + i, &value, sizeof value);
      i += sizeof value;
    } else {
      data[i++] = (unsigned char)(seed >> 31);
    }
  }
  return data;
}

static int run_once(job_t* job, context_t* context, void* const* outputs) {
  return job->shared ? FN(run)(job->model, (const void* const*)job->inputs, outputs)
                     : FN(context_run)(context, (const void* const*)job->inputs, outputs);
}

static void* thread_main(void* arg) {
  job_t* job = arg;
  context_t* context = NULL;
  if (!job->shared && (job->status = FN(context_create)(job->model, &context)) != 0) return NULL;
  for (int r = 0; r < job->runs && job->status == 0; ++r) {
    job->status = run_once(job, context, job->outputs);
    for (int o = 0; o < CAT(PYC_NAME, NUM_OUTPUTS); ++o)
      if (memcmp(job->outputs[o], job->expected[o], (size_t)FN(io_bytes)(1, o)) != 0)
        job->mismatches++;
  }
  FN(context_destroy)(context);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s WEIGHTS contexts|shared THREADS RUNS\n", argv[0]);
    return 2;
  }
  int threads = atoi(argv[3]);
  if (threads < 1 || threads > MAX_THREADS) return 2;
  model_t* model = NULL;
  int status = FN(create)(argv[1], &model);
  if (status != 0) {
    fprintf(stderr, "create: %s\n", FN(status_string)(status));
    return 1;
  }
  static job_t jobs[MAX_THREADS];
  context_t* alone = NULL;
  if ((status = FN(context_create)(model, &alone)) != 0) return 1;
  for (int t = 0; t < threads; ++t) {
    job_t* job = &jobs[t];
    job->model = model;
    job->shared = strcmp(argv[2], "shared") == 0;
    job->runs = atoi(argv[4]);
    for (int i = 0; i < CAT(PYC_NAME, NUM_INPUTS); ++i) job->inputs[i] = random_input(i, 7u * t + i);
    for (int o = 0; o < CAT(PYC_NAME, NUM_OUTPUTS); ++o) {
      job->expected[o] = malloc((size_t)FN(io_bytes)(1, o) + 1);
      job->outputs[o] = malloc((size_t)FN(io_bytes)(1, o) + 1);
    }
    status = FN(context_run)(alone, (const void* const*)job->inputs, job->expected);
    if (status != 0) {
      fprintf(stderr, "run alone: %s\n", FN(status_string)(status));
      return 1;
    }
  }
  FN(context_destroy)(alone);
  if (strcmp(argv[2], "omp") == 0) {
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
    thread_main(&jobs[omp_get_thread_num()]);
#else
    fprintf(stderr, "mode omp needs a driver built with OpenMP\n");
    return 2;
#endif
  } else {
    pthread_t ids[MAX_THREADS];
    for (int t = 0; t < threads; ++t) pthread_create(&ids[t], NULL, thread_main, &jobs[t]);
    for (int t = 0; t < threads; ++t) pthread_join(ids[t], NULL);
  }
  int mismatches = 0;
  for (int t = 0; t < threads; ++t) {
    mismatches += jobs[t].mismatches;
    if (jobs[t].status != 0) {
      fprintf(stderr, "thread %d: %s\n", t, FN(status_string)(jobs[t].status));
      return 1;
    }
  }
  printf("mismatches %d\n", mismatches);
  FN(destroy)(model);
  return mismatches != 0;
}
