/* trainer_fixture.h - what the trainer tests share: the head of a synthetic
 * sample, a small model configuration, a trainer made from it and a
 * parameter comparison.  The random stream each helper draws is part of
 * what the tests assert (fixed seeds): do not reorder the draws. */
#ifndef MTLD_TEST_TRAINER_FIXTURE_H
#define MTLD_TEST_TRAINER_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tests/unit/rng.h"
#include "trainer/train.h"

/* Zeroes *s and fills sample i's id, time, weight 1, the five fields (user
 * 1..200, item 1..100, its category, scenario 1..3, position 1..8), the
 * scenario name and 4 dense features, drawing from r; labels, kind and
 * sequence are the caller's. */
static inline void sample_head(rng_t *r, mtld_sample_t *s, int i) {
  memset(s, 0, sizeof(*s));
  s->sample_id = (uint64_t)i + 1;
  s->time_ms = 1000000 + (int64_t)i * 500;
  s->weight = 1.0f;
  s->n_fields = 5;
  uint64_t user = 1 + rng_next(r) % 200, item = 1 + rng_next(r) % 100;
  s->fields[MTLD_FIELD_USER] = user;
  s->fields[MTLD_FIELD_ITEM] = item;
  s->fields[MTLD_FIELD_CATEGORY] = 1 + item % 10;
  s->fields[MTLD_FIELD_SCENARIO] = 1 + rng_next(r) % 3;
  s->fields[MTLD_FIELD_POSITION] = 1 + rng_next(r) % 8;
  s->scenario_id = s->fields[MTLD_FIELD_SCENARIO];
  snprintf(s->scenario, sizeof(s->scenario), "scen%llu", (unsigned long long)s->scenario_id);
  s->n_dense = 4;
  for (int d = 0; d < 4; d++) s->dense[d] = (float)(rng_unif(r) * 5.0);
}

/* A small model for the samples above: 5 fields, dim 8, 4 dense. */
static inline void small_config(mtld_model_config_t *c) {
  mtld_model_config_default(c);
  uint32_t rows[5] = {512, 256, 32, 8, 16};
  for (int f = 0; f < 5; f++) c->fields[f].rows = rows[f];
  c->dim = 8;
  c->seq_max = 6;
  c->n_dense = 4;
  c->expert_layers[0] = 16;
  c->expert_layers[1] = 8;
  c->tower_layers[0] = 8;
  c->batch_size = 32;
  c->pv_window = 2000;
}

/* A new trainer on c, or NULL (the reason printed on stderr). */
static inline mtld_trainer_t *new_trainer(const mtld_model_config_t *c) {
  mtld_trainer_t *t = NULL;
  char err[256];
  if (mtld_trainer_create(&t, c, err, sizeof(err)) != MTLD_OK) fprintf(stderr, "%s\n", err);
  return t;
}

/* 1 when a and b hold memcmp-equal parameters. */
static inline int params_equal(mtld_trainer_t *a, mtld_trainer_t *b) {
  float *pa, *pb;
  size_t na, nb;
  mtld_trainer_params(a, &pa, &na);
  mtld_trainer_params(b, &pb, &nb);
  return na == nb && memcmp(pa, pb, na * sizeof(float)) == 0;
}

#endif
