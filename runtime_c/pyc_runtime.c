/* PyC runtime helpers: aligned allocation and verified weight loading. */
#include "pyc_runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PYC_ALIGNMENT 64

const char* pyc_status_text(int status) {
  switch (status) {
    case PYC_STATUS_OK: return "ok";
    case PYC_STATUS_INVALID_ARGUMENT: return "invalid argument";
    case PYC_STATUS_OUT_OF_MEMORY: return "out of memory";
    case PYC_STATUS_WEIGHTS_UNREADABLE: return "weights file missing or unreadable";
    case PYC_STATUS_WEIGHTS_MISMATCH: return "weights file has the wrong size or checksum";
    case PYC_STATUS_INDEX_OUT_OF_RANGE: return "an index input is out of range";
    default: return "unknown status";
  }
}

const char* pyc_status_string(int status) { return pyc_status_text(status); }

void* pyc_aligned_alloc(size_t bytes) {
  size_t rounded = (bytes + PYC_ALIGNMENT - 1) / PYC_ALIGNMENT * PYC_ALIGNMENT;
  return aligned_alloc(PYC_ALIGNMENT, rounded ? rounded : PYC_ALIGNMENT);
}

void pyc_aligned_free(void* ptr) { free(ptr); }

uint64_t pyc_weights_checksum(const unsigned char* data, size_t bytes) {
  /* position-weighted sum of little-endian u32 words, mod 2^64 (matches pyc_cli.codegen.weights) */
  uint64_t sum = 0;
  for (size_t i = 0; i + 4 <= bytes; i += 4) {
    uint32_t word = (uint32_t)data[i] | ((uint32_t)data[i + 1] << 8) |
                    ((uint32_t)data[i + 2] << 16) | ((uint32_t)data[i + 3] << 24);
    sum += (uint64_t)word * (uint64_t)(i / 4 + 1);
  }
  return sum;
}

int pyc_load_weights(const char* path, size_t expected, uint64_t checksum, unsigned char** out) {
  *out = NULL;
  if (path == NULL) return PYC_STATUS_INVALID_ARGUMENT;
  FILE* file = fopen(path, "rb");
  if (file == NULL) return PYC_STATUS_WEIGHTS_UNREADABLE;
  unsigned char* buffer = pyc_aligned_alloc(expected);
  if (buffer == NULL) { fclose(file); return PYC_STATUS_OUT_OF_MEMORY; }
  size_t got = expected ? fread(buffer, 1, expected, file) : 0;
  int extra = fgetc(file);
  fclose(file);
  if (got != expected || extra != EOF || pyc_weights_checksum(buffer, expected) != checksum) {
    pyc_aligned_free(buffer);
    return PYC_STATUS_WEIGHTS_MISMATCH;
  }
  *out = buffer;
  return PYC_STATUS_OK;
}
