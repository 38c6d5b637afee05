/* This machine's ceilings for benchmarks/roofline.py: the float32 FMA throughput of one core and
 * of all cores (16 independent chains of 64-byte vectors: enough to cover the FMA latency on
 * AVX-512 and AVX2 cores alike), the STREAM-style triad bandwidth (a = b + s c over arrays far
 * larger than the caches), and the read bandwidth over a 24 MB buffer read again and again (a
 * model's weights of that size stay in a 32 MB last-level cache between runs).
 * Prints one JSON object. Build: cc -O3 -march=native -fopenmp. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

typedef float v16 __attribute__((vector_size(64)));
enum { CHAINS = 16, STEPS = 20000000 };

static double fma_gflops(int threads) {
  double best = 0.0;
  for (int trial = 0; trial < 3; ++trial) {
    float sink = 0.0f;
    const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      v16 acc[CHAINS];
      const v16 a = (v16){0} + 0.999999f, b = (v16){0} + 1e-7f;
      for (int c = 0; c < CHAINS; ++c) acc[c] = (v16){0} + (float)(c + omp_get_thread_num());
      for (long s = 0; s < STEPS / threads; ++s)
        for (int c = 0; c < CHAINS; ++c) acc[c] = acc[c] * a + b;
      for (int c = 0; c < CHAINS; ++c)
        for (int e = 0; e < 16; ++e) sink += acc[c][e];
    }
    const double seconds = omp_get_wtime() - t0;
    const double flops = 2.0 * 16 * CHAINS * (double)(STEPS / threads) * threads;
    if (sink == 12345.0f) puts("");  /* keep the sums */
    if (flops / seconds / 1e9 > best) best = flops / seconds / 1e9;
  }
  return best;
}

static double triad_gbs(int threads, long n) {
  float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
  if (!a || !b || !c) return 0.0;
#pragma omp parallel for num_threads(threads)
  for (long i = 0; i < n; ++i) { a[i] = 0.0f; b[i] = (float)i; c[i] = 1.0f; }
  double best = 0.0;
  for (int trial = 0; trial < 5; ++trial) {
    const double t0 = omp_get_wtime();
#pragma omp parallel for num_threads(threads)
    for (long i = 0; i < n; ++i) a[i] = b[i] + 0.5f * c[i];
    const double seconds = omp_get_wtime() - t0;
    const double gbs = 3.0 * (double)n * sizeof(float) / seconds / 1e9;
    if (gbs > best) best = gbs;
  }
  if (a[n / 2] == -1.0f) puts("");
  free(a); free(b); free(c);
  return best;
}

static double read_gbs(int threads, long n) {
  v16* a = aligned_alloc(64, n * sizeof *a);
  if (!a) return 0.0;
#pragma omp parallel for num_threads(threads)
  for (long i = 0; i < n; ++i) a[i] = (v16){0} + (float)(i & 7);
  double best = 0.0;
  float sink = 0.0f;
  for (int trial = 0; trial < 20; ++trial) {
    const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      v16 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
#pragma omp for
      for (long i = 0; i < n; i += 4) { s0 += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3]; }
      const v16 s = s0 + s1 + s2 + s3;
      for (int e = 0; e < 16; ++e) sink += s[e];
    }
    const double seconds = omp_get_wtime() - t0;
    const double gbs = (double)n * sizeof *a / seconds / 1e9;
    if (gbs > best) best = gbs;
  }
  if (sink == 12345.0f) puts("");
  free(a);
  return best;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : omp_get_max_threads();
  const long n = 32L * 1024 * 1024;
  const long cached = 24L * 1000 * 1000 / 64;  /* 64-byte vectors in 24 MB */
  printf("{\"threads\": %d, \"fma_gflops_1\": %.1f, \"fma_gflops_all\": %.1f, "
         "\"triad_gbs_1\": %.1f, \"triad_gbs_all\": %.1f, \"read24mb_gbs_1\": %.1f, "
         "\"read24mb_gbs_all\": %.1f}\n",
         threads, fma_gflops(1), fma_gflops(threads), triad_gbs(1, n), triad_gbs(threads, n),
         read_gbs(1, cached), read_gbs(threads, cached));
  return 0;
}
