/* rng.h - the tests' deterministic random numbers: xorshift64 (13, 7, 17)
 * on a caller-held state, and uniform doubles from its top 53 bits.  The
 * state must not be 0.  Streams are part of what some tests assert (fixed
 * seeds, replayed rounds): do not change the generator. */
#ifndef MTLD_TEST_RNG_H
#define MTLD_TEST_RNG_H

#include <stdint.h>

typedef struct {
  uint64_t s;
} rng_t;

static inline uint64_t rng_next(rng_t *r) {
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}

/* Uniform in [0, 1). */
static inline double rng_unif(rng_t *r) {
  return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
