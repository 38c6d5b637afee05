/* Test driver (tests/targets/cuda/test_cuda_c_api.py): runs a CUDA artifact through its C entry
 * point (NAME_cuda.h), built with the artifact's src/NAME_cuda.c and linked with libcuda.
 *
 * Compile with -DPYC_NAME=<the model's symbol prefix>, -DPYC_HEADER='"<prefix>_cuda.h"',
 * -I <artifact>/src and cuda.h's folder.
 * Usage: cuda_api_driver ARTIFACT INPUTS OUTPUTS RUNS
 *   INPUTS: the inputs' bytes, concatenated in manifest order; OUTPUTS: written likewise.
 * Runs RUNS times (the outputs of every run must be the same bytes), prints "status N" of the
 * last run and exits 0 iff every call returned 0 and the runs agreed. A model with sizes known
 * at run time only, compiled with -DPYC_OUTPUT_RANKS='{r0, r1, ...}' (each output's rank),
 * also prints "shape O d0 d1 ..." of each output O after the last run (NAME_cuda_output_shape). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(suffix) CAT(PYC_NAME, suffix)
#include PYC_HEADER

enum { MAX_IO = 64 };

static unsigned char* slurp(const char* path, size_t* size) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long length = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char* data = malloc(length > 0 ? (size_t)length : 1);
  if (data && length > 0 && fread(data, 1, (size_t)length, f) != (size_t)length) {
    free(data);
    data = NULL;
  }
  fclose(f);
  *size = length > 0 ? (size_t)length : 0;
  return data;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s ARTIFACT INPUTS OUTPUTS RUNS\n", argv[0]);
    return 2;
  }
  size_t in_size = 0, in_total = 0;
  unsigned char* in = slurp(argv[2], &in_size);
  const void* inputs[MAX_IO];
  void* outputs[MAX_IO];
  void* first[MAX_IO];
  for (int i = 0; FN(cuda_input_bytes)(i) > 0 && i < MAX_IO; ++i) {
    inputs[i] = in + in_total;
    in_total += FN(cuda_input_bytes)(i);
  }
  if (!in || in_total != in_size) {
    fprintf(stderr, "inputs: %zu bytes, the model takes %zu\n", in_size, in_total);
    return 2;
  }
  int n_out = 0;
  for (; FN(cuda_output_bytes)(n_out) > 0 && n_out < MAX_IO; ++n_out) {
    outputs[n_out] = calloc(1, FN(cuda_output_bytes)(n_out));
    first[n_out] = calloc(1, FN(cuda_output_bytes)(n_out));
  }
  FN(cuda)* model;
  int status = FN(cuda_create)(argv[1], 0, &model);
  if (status != 0) {
    printf("status %d\n", status);
    return 1;
  }
  int runs = atoi(argv[4]), differ = 0;
  for (int r = 0; r < runs && status == 0; ++r) {
    status = FN(cuda_run)(model, inputs, outputs);
    for (int o = 0; o < n_out; ++o) {
      if (r == 0) memcpy(first[o], outputs[o], FN(cuda_output_bytes)(o));
      else differ |= memcmp(first[o], outputs[o], FN(cuda_output_bytes)(o)) != 0;
    }
  }
#ifdef PYC_OUTPUT_RANKS
  static const int ranks[] = PYC_OUTPUT_RANKS;
  for (int o = 0; status == 0 && o < n_out; ++o) {
    long long shape[16];
    if (FN(cuda_output_shape)(model, o, shape) != 0) return 1;
    printf("shape %d", o);
    for (int d = 0; d < ranks[o]; ++d) printf(" %lld", shape[d]);
    printf("\n");
  }
#endif
  FN(cuda_destroy)(model);
  printf("status %d\n", status);
  FILE* f = fopen(argv[3], "wb");
  for (int o = 0; f && o < n_out; ++o) fwrite(outputs[o], 1, FN(cuda_output_bytes)(o), f);
  if (f) fclose(f);
  return status == 0 && !differ && f ? 0 : 1;
}
