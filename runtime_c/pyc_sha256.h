/* PyC runtime: SHA-256 (FIPS 180-4), plain C11, header only. Copied into the sources of a
 * generic plan with shape buckets (codegen_templates/c/buckets.c.j2 includes it), which checks
 * each bucket's library against the sha256 the build baked in before loading it. Every function
 * is static: no symbol is exported, and artifacts without buckets do not carry this file. */
#ifndef PYC_SHA256_H
#define PYC_SHA256_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
  uint32_t state[8];
  uint64_t bytes;  /* hashed so far */
  unsigned char block[64];
  size_t used;  /* bytes of `block` filled */
} pyc_sha256;

static const uint32_t pyc_sha256_k[64] = {
  0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
  0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
  0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
  0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
  0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
  0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
  0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
  0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u
};

static uint32_t pyc_sha256_rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void pyc_sha256_block(pyc_sha256* h, const unsigned char* p) {
  uint32_t w[64];
  for (int i = 0; i < 16; ++i)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
           (uint32_t)p[4 * i + 3];
  for (int i = 16; i < 64; ++i) {
    uint32_t s0 = pyc_sha256_rotr(w[i - 15], 7) ^ pyc_sha256_rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = pyc_sha256_rotr(w[i - 2], 17) ^ pyc_sha256_rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h->state[0], b = h->state[1], c = h->state[2], d = h->state[3];
  uint32_t e = h->state[4], f = h->state[5], g = h->state[6], k = h->state[7];
  for (int i = 0; i < 64; ++i) {
    uint32_t t1 = k + (pyc_sha256_rotr(e, 6) ^ pyc_sha256_rotr(e, 11) ^ pyc_sha256_rotr(e, 25)) +
                  ((e & f) ^ (~e & g)) + pyc_sha256_k[i] + w[i];
    uint32_t t2 = (pyc_sha256_rotr(a, 2) ^ pyc_sha256_rotr(a, 13) ^ pyc_sha256_rotr(a, 22)) +
                  ((a & b) ^ (a & c) ^ (b & c));
    k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
  }
  h->state[0] += a; h->state[1] += b; h->state[2] += c; h->state[3] += d;
  h->state[4] += e; h->state[5] += f; h->state[6] += g; h->state[7] += k;
}

static void pyc_sha256_init(pyc_sha256* h) {
  static const uint32_t initial[8] = { 0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                       0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u };
  memcpy(h->state, initial, sizeof initial);
  h->bytes = 0;
  h->used = 0;
}

static void pyc_sha256_update(pyc_sha256* h, const unsigned char* data, size_t size) {
  h->bytes += size;
  while (size > 0) {
    size_t take = 64 - h->used < size ? 64 - h->used : size;
    memcpy(h->block + h->used, data, take);
    h->used += take;
    data += take;
    size -= take;
    if (h->used == 64) {
      pyc_sha256_block(h, h->block);
      h->used = 0;
    }
  }
}

static void pyc_sha256_final(pyc_sha256* h, unsigned char digest[32]) {
  uint64_t bits = h->bytes * 8u;
  static const unsigned char pad[64] = { 0x80 };
  size_t fill = h->used < 56 ? 56 - h->used : 120 - h->used;
  pyc_sha256_update(h, pad, fill);
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = (unsigned char)(bits >> (56 - 8 * i));
  pyc_sha256_update(h, length, 8);
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 4; ++j) digest[4 * i + j] = (unsigned char)(h->state[i] >> (24 - 8 * j));
}

#endif
