/* Test driver (tests/dynamic/test_buckets.py): prints the sha256 (hex) of each file named on
 * the command line, hashed by runtime_c/pyc_sha256.h in chunks of the size given first (so
 * that blocks split across updates are exercised). Usage: sha256_driver CHUNK FILE... */
#include <stdio.h>
#include <stdlib.h>

#include "pyc_sha256.h"

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  size_t chunk = (size_t)atol(argv[1]);
  unsigned char* buffer = malloc(chunk ? chunk : 1);
  if (buffer == NULL || chunk == 0) return 2;
  for (int f = 2; f < argc; ++f) {
    FILE* file = fopen(argv[f], "rb");
    if (file == NULL) return 2;
    pyc_sha256 h;
    pyc_sha256_init(&h);
    size_t got;
    while ((got = fread(buffer, 1, chunk, file)) > 0) pyc_sha256_update(&h, buffer, got);
    fclose(file);
    unsigned char digest[32];
    pyc_sha256_final(&h, digest);
    for (int i = 0; i < 32; ++i) printf("%02x", digest[i]);
    printf("\n");
  }
  free(buffer);
  return 0;
}
