/* hash.h - the 64-bit integer mixer every room uses to spread ids (embedding
 * rows, joiner hash maps, seeded random streams).  Pure: any thread. */
#ifndef MTLD_HASH_H
#define MTLD_HASH_H

#include <stdint.h>

/* splitmix64's finaliser: a bijection of uint64 with good avalanche.
 * Changing it changes every embedding row and every sampled negative. */
static inline uint64_t mtld_mix64(uint64_t x) {
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* The next value of the splitmix64 stream whose state is *state (advanced):
 * deterministic pseudo-random numbers (sampled negatives, generators). */
static inline uint64_t mtld_splitmix64(uint64_t *state) {
  uint64_t z = mtld_mix64(*state);
  *state += UINT64_C(0x9e3779b97f4a7c15);
  return z;
}

#endif
