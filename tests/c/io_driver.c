/* Test driver (tests/targets/cpu/test_neon.py): runs one compiled model once on inputs read from
 * raw files and writes its outputs as raw files, so that a model built for another architecture
 * can run under an emulator (qemu-aarch64) and be checked on the build machine.
 *
 * Compile with -DPYC_NAME=<the model's symbol prefix> and -I <artifact>/src, linked with the
 * model's generated C and the runtime. Usage: io_driver WEIGHTS IN_0 ... IN_n OUT_0 ... OUT_m
 * (each file holds the tensor's bytes, row-major, as the model's io_bytes says). */
#include <stdio.h>
#include <stdlib.h>

#include "model.h"

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(suffix) CAT(PYC_NAME, suffix)

enum { INPUTS = CAT(PYC_NAME, NUM_INPUTS), OUTPUTS = CAT(PYC_NAME, NUM_OUTPUTS) };

static void* read_file(const char* path, size_t bytes) {
  unsigned char* data = malloc(bytes ? bytes : 1);
  FILE* file = fopen(path, "rb");
  if (data == NULL || file == NULL || fread(data, 1, bytes, file) != bytes) {
    fprintf(stderr, "cannot read %zu bytes from %s\n", bytes, path);
    exit(2);
  }
  fclose(file);
  return data;
}

int main(int argc, char** argv) {
  if (argc != 2 + INPUTS + OUTPUTS) {
    fprintf(stderr, "usage: %s WEIGHTS IN... OUT... (%d inputs, %d outputs)\n", argv[0], INPUTS,
            OUTPUTS);
    return 2;
  }
  FN(model)* model = NULL;
  int status = FN(create)(argv[1], &model);
  if (status != 0) {
    fprintf(stderr, "create: %s\n", FN(status_string)(status));
    return 1;
  }
  const void* inputs[INPUTS > 0 ? INPUTS : 1];
  void* outputs[OUTPUTS > 0 ? OUTPUTS : 1];
  for (int i = 0; i < INPUTS; ++i) inputs[i] = read_file(argv[2 + i], (size_t)FN(io_bytes)(0, i));
  for (int o = 0; o < OUTPUTS; ++o) outputs[o] = malloc((size_t)FN(io_bytes)(1, o) + 1);
  status = FN(run)(model, inputs, outputs);
  if (status != 0) {
    fprintf(stderr, "run: %s\n", FN(status_string)(status));
    return 1;
  }
  for (int o = 0; o < OUTPUTS; ++o) {
    FILE* file = fopen(argv[2 + INPUTS + o], "wb");
    size_t bytes = (size_t)FN(io_bytes)(1, o);
    if (file == NULL || fwrite(outputs[o], 1, bytes, file) != bytes) return 2;
    fclose(file);
  }
  FN(destroy)(model);
  return 0;
}
