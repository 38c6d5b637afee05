/* Test driver (tests/dynamic/test_dynamic_mlp.py): runs a one-input model with symbolic dims at
 * an input shape given on the command line, through NAME_context_run_shaped, and writes output
 * 0 at its actual shape (NAME_output_shape).
 *
 * With -DPYC_TEST_BUCKETS (tests/dynamic/test_buckets.py, a model with shape buckets): runs
 * twice on one context (the second run reuses the bucket's context and must write the same
 * bytes) and prints the plan each run took (NAME_last_plan, NAME_bucket_id); with
 * PYC_TEST_DISPATCH_OFF=1 in the environment, dispatch is turned off first
 * (NAME_set_bucket_dispatch).
 *
 * Compile with -DPYC_NAME=<the model's symbol prefix> and -I <artifact>/src, linked with the
 * model's generated C and the runtime. Usage: shaped_driver WEIGHTS IN_FILE OUT_FILE d0 d1 ...
 * (IN_FILE holds the input's bytes at that shape, row-major). Prints the dims with their bounds,
 * the run's status and output 0's shape; exits 0 when the run succeeded, 3 when its shape was
 * refused, 1 on another status (with buckets: 7, a bucket library that fails its sha256). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(suffix) CAT(PYC_NAME, suffix)

enum { OUTPUTS = CAT(PYC_NAME, NUM_OUTPUTS), DIMS = CAT(PYC_NAME, NUM_DIMS) };

int main(int argc, char** argv) {
  if (argc < 5 || CAT(PYC_NAME, NUM_INPUTS) != 1) {
    fprintf(stderr, "usage: %s WEIGHTS IN OUT d0 d1 ... (a model of one input)\n", argv[0]);
    return 2;
  }
  const int rank = FN(io_rank)(0, 0);
  if (argc != 4 + rank) {
    fprintf(stderr, "the input has rank %d\n", rank);
    return 2;
  }
  for (int d = 0; d < DIMS; ++d)
    printf("dim %s %lld..%lld\n", FN(dim_name)(d), (long long)FN(dim_lo)(d),
           (long long)FN(dim_hi)(d));
  int64_t shape[8];
  size_t bytes = 4;  /* float32 */
  for (int a = 0; a < rank; ++a) {
    shape[a] = atoll(argv[4 + a]);
    bytes *= (size_t)shape[a];
    printf("axis %d takes dim %d\n", a, FN(input_dim)(0, a));
  }
  FN(model)* model = NULL;
  FN(context)* context = NULL;
  if (FN(create)(argv[1], &model) != 0) return 1;
#ifdef PYC_TEST_BUCKETS
  const char* off = getenv("PYC_TEST_DISPATCH_OFF");
  if (off != NULL && off[0] == '1') FN(set_bucket_dispatch)(model, 0);
#endif
  if (FN(context_create)(model, &context) != 0) return 1;
  void* input = malloc(bytes ? bytes : 1);
  FILE* file = fopen(argv[2], "rb");
  if (input == NULL || file == NULL || fread(input, 1, bytes, file) != bytes) return 2;
  fclose(file);
  /* every output at its upper bound (io_bytes), filled with NaN bytes beforehand */
  void* outputs[OUTPUTS];
  for (int o = 0; o < OUTPUTS; ++o) {
    outputs[o] = malloc((size_t)FN(io_bytes)(1, o));
    for (int64_t b = 0; b < FN(io_bytes)(1, o); ++b) ((unsigned char*)outputs[o])[b] = 0xff;
  }
  const int64_t* shapes[1] = { shape };
  const void* inputs[1] = { input };
  const int status = FN(context_run_shaped)(context, shapes, inputs, outputs);
  printf("status %d: %s\n", status, FN(status_string)(status));
  if (status != 0) return status == PYC_STATUS_SHAPE_OUT_OF_BOUNDS ? 3 : 1;
#ifdef PYC_TEST_BUCKETS
  const int plan = FN(last_plan)(context);
  printf("plan %d %s\n", plan, plan >= 0 ? FN(bucket_id)(plan) : "generic");
  /* again on the same context: the bucket's context is reused, the bytes must be the same */
  void* first = malloc((size_t)FN(io_bytes)(1, 0));
  if (first == NULL) return 2;
  memcpy(first, outputs[0], (size_t)FN(io_bytes)(1, 0));
  if (FN(context_run_shaped)(context, shapes, inputs, outputs) != 0 || FN(last_plan)(context) != plan)
    return 1;
  printf("again %s\n", memcmp(first, outputs[0], (size_t)FN(io_bytes)(1, 0)) == 0 ? "same" : "differs");
#endif
  int64_t out_shape[8];
  if (FN(output_shape)(context, 0, out_shape) != 0) return 1;
  size_t out_bytes = 4;
  printf("output");
  for (int a = 0; a < FN(io_rank)(1, 0); ++a) {
    printf(" %lld", (long long)out_shape[a]);
    out_bytes *= (size_t)out_shape[a];
  }
  printf("\n");
  file = fopen(argv[3], "wb");
  if (file == NULL || fwrite(outputs[0], 1, out_bytes, file) != out_bytes) return 2;
  fclose(file);
  FN(context_destroy)(context);
  FN(destroy)(model);
  return 0;
}
