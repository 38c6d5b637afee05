/* Three PyC models linked into one C program: the example of README.md, "Deploying from C",
 * which gives the commands that build the models and compile this file.
 *
 * Every symbol of a model starts with the name given to `pyc build --name`, so mlp_run, cnn_run
 * and lstm_run live side by side; each library's SONAME is libNAME.so. For each model the
 * program fills the input with fixed pseudo-random floats, runs the model, and writes
 * DIR/NAME.input.bin and DIR/NAME.output.bin (raw float32) so the results can be checked.
 *
 * Usage: three_models DIR   (DIR holds mlp.pyc, cnn.pyc and lstm.pyc)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cnn.pyc/src/model.h"
#include "lstm.pyc/src/model.h"
#include "mlp.pyc/src/model.h"

/* Uniform floats in [-1, 1) from a fixed linear congruential generator. */
static float* random_floats(size_t count, uint32_t seed) {
  float* values = malloc(count * sizeof(float));
  for (size_t i = 0; values != NULL && i < count; ++i) {
    seed = seed * 1664525u + 1013904223u;
    values[i] = (float)(seed >> 8) / (float)(1u << 23) - 1.0f;
  }
  return values;
}

static int write_file(const char* dir, const char* name, const char* kind, const void* data,
                      size_t bytes) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.%s.bin", dir, name, kind);
  FILE* file = fopen(path, "wb");
  if (file == NULL) return 1;
  size_t written = fwrite(data, 1, bytes, file);
  return (fclose(file) != 0 || written != bytes) ? 1 : 0;
}

/* run_NAME(dir, seed): create the model NAME, run it once, write its input and output, destroy
 * it. Written once for the three models; these are single-input, single-output float models. */
#define DEFINE_RUN(NAME)                                                                        \
  _Static_assert(NAME##_NUM_INPUTS == 1 && NAME##_NUM_OUTPUTS == 1, #NAME ": one in, one out"); \
  static int run_##NAME(const char* dir, uint32_t seed) {                                      \
    char weights[4096];                                                                        \
    snprintf(weights, sizeof weights, "%s/" #NAME ".pyc/weights.bin", dir);                    \
    NAME##_model* model = NULL;                                                                \
    int status = NAME##_create(weights, &model);                                               \
    if (status != PYC_STATUS_OK) {                                                             \
      fprintf(stderr, #NAME ": create: %s\n", NAME##_status_string(status));                   \
      return 1;                                                                                \
    }                                                                                          \
    size_t in_bytes = (size_t)NAME##_io_bytes(0, 0), out_bytes = (size_t)NAME##_io_bytes(1, 0); \
    float* input = random_floats(in_bytes / sizeof(float), seed);                              \
    float* output = malloc(out_bytes);                                                         \
    const void* inputs[1] = {input};                                                           \
    void* outputs[1] = {output};                                                               \
    status = (input && output) ? NAME##_run(model, inputs, outputs) : PYC_STATUS_OUT_OF_MEMORY; \
    if (status == PYC_STATUS_OK) {                                                             \
      printf(#NAME ": %s -> %s, %d dims, first value %g\n", NAME##_io_name(0, 0),              \
             NAME##_io_name(1, 0), NAME##_io_rank(1, 0), (double)output[0]);                   \
      status = write_file(dir, #NAME, "input", input, in_bytes) |                              \
               write_file(dir, #NAME, "output", output, out_bytes);                            \
      if (status) fprintf(stderr, #NAME ": cannot write the results into %s\n", dir);          \
    } else {                                                                                   \
      fprintf(stderr, #NAME ": run: %s\n", NAME##_status_string(status));                      \
    }                                                                                          \
    free(input);                                                                               \
    free(output);                                                                              \
    NAME##_destroy(model);                                                                     \
    return status != PYC_STATUS_OK;                                                            \
  }

DEFINE_RUN(mlp)
DEFINE_RUN(cnn)
DEFINE_RUN(lstm)

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR (the directory holding mlp.pyc, cnn.pyc and lstm.pyc)\n",
            argv[0]);
    return 2;
  }
  int failed = run_mlp(argv[1], 1u) | run_cnn(argv[1], 2u) | run_lstm(argv[1], 3u);
  return failed ? 1 : 0;
}
