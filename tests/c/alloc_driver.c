/* Test driver (tests/runtime/test_huge_pages.py): pyc_weights_alloc (the first argument "w") or
 * pyc_aligned_alloc ("a") of runtime_c/pyc_runtime.c on the sizes given as the other arguments.
 * For each it allocates, writes every byte (a pattern of the index), reads them back, and prints
 * one line "BYTES ADDRESS_MOD_2MIB OK HG": OK is 1 when every
 * byte read back as written, HG is 1 when the mapping holding the buffer carries Linux's
 * huge-page advice (the "hg" flag of its VmFlags in /proc/self/smaps), 0 when it does not, -1
 * where /proc/self/smaps cannot be read (not Linux). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyc_runtime.h"

static int huge_advice(uintptr_t address) {
  FILE* smaps = fopen("/proc/self/smaps", "r");
  if (smaps == NULL) return -1;
  char line[512];
  int inside = 0, found = 0;
  while (fgets(line, sizeof line, smaps) != NULL) {
    unsigned long lo = 0, hi = 0;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') == line + strcspn(line, "-")
        && strncmp(line, "VmFlags", 7) != 0) {
      inside = address >= (uintptr_t)lo && address < (uintptr_t)hi;
    } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
      found = strstr(line, " hg") != NULL;
      break;
    }
  }
  fclose(smaps);
  return found;
}

int main(int argc, char** argv) {
  if (argc < 2 || (strcmp(argv[1], "w") != 0 && strcmp(argv[1], "a") != 0)) return 3;
  const int weights = strcmp(argv[1], "w") == 0;
  for (int i = 2; i < argc; ++i) {
    size_t bytes = (size_t)strtoull(argv[i], NULL, 10);
    unsigned char* buffer = weights ? pyc_weights_alloc(bytes) : pyc_aligned_alloc(bytes);
    if (buffer == NULL) return 2;
    for (size_t j = 0; j < bytes; ++j) buffer[j] = (unsigned char)(j * 131u + 7u);
    int ok = 1;
    for (size_t j = 0; j < bytes; ++j) ok &= buffer[j] == (unsigned char)(j * 131u + 7u);
    uintptr_t address = (uintptr_t)buffer;
    printf("%zu %lu %d %d\n", bytes, (unsigned long)(address % ((uintptr_t)2 << 20)), ok,
           huge_advice(address));
    pyc_aligned_free(buffer);
  }
  return 0;
}
