/* test_trainfeed.c - the trainer's thread: samples pushed through the
 * bounded queue (smaller than the stream, so the producer waits) leave the
 * trainer bit-identical to observing them on the caller's thread; drain
 * returns only when every pushed sample was observed; the trainer lock
 * lets the caller read while the worker runs; stop observes what is left. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/trainfeed.h"
#include "tests/unit/check.h"
#include "tests/unit/rng.h"
#include "trainer/train.h"

static void sample(rng_t *r, mtld_sample_t *s, int i) {
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
  s->kind = MTLD_SAMPLE_IMPRESSION;
  int click = rng_unif(r) < 0.1 + 0.05 * (double)((user + item) % 10);
  s->labels[MTLD_LABEL_CLICK] = (float)click;
  s->labels[MTLD_LABEL_PURCHASE] = (float)(click && rng_unif(r) < 0.3);
  s->label_mask = (1u << MTLD_LABEL_CLICK) | (1u << MTLD_LABEL_PURCHASE);
  if (i % 97 == 5) s->weight = -1.0f; /* refused by the trainer, on either thread */
}

static mtld_trainer_t *new_trainer(void) {
  mtld_model_config_t c;
  mtld_model_config_default(&c);
  uint32_t rows[5] = {512, 256, 32, 8, 16};
  for (int f = 0; f < 5; f++) c.fields[f].rows = rows[f];
  c.dim = 8;
  c.seq_max = 6;
  c.n_dense = 4;
  c.expert_layers[0] = 16;
  c.expert_layers[1] = 8;
  c.tower_layers[0] = 8;
  c.batch_size = 32;
  c.pv_window = 2000;
  mtld_trainer_t *t = NULL;
  char err[256];
  if (mtld_trainer_create(&t, &c, err, sizeof(err)) != MTLD_OK) fprintf(stderr, "%s\n", err);
  return t;
}

static int same_params(mtld_trainer_t *a, mtld_trainer_t *b) {
  float *pa, *pb;
  size_t na, nb;
  mtld_trainer_params(a, &pa, &na);
  mtld_trainer_params(b, &pb, &nb);
  return na == nb && memcmp(pa, pb, na * sizeof(float)) == 0;
}

int main(void) {
  enum { N = 3000 };
  mtld_trainer_t *ref = new_trainer(), *t = new_trainer();
  CHECK(ref && t);
  if (!ref || !t) return CHECK_DONE();
  mtld_trainfeed_t *f = NULL;
  char err[256];
  CHECK(mtld_trainfeed_start(&f, t, 7, err, sizeof(err)) == MTLD_OK);
  rng_t r1 = {42}, r2 = {42};
  mtld_sample_t s;
  for (int i = 0; i < N; i++) {
    sample(&r1, &s, i);
    mtld_trainer_observe(ref, &s, NULL);
    sample(&r2, &s, i);
    mtld_trainfeed_push(f, &s);
    if (i % 500 == 250) { /* a glance under the lock while the worker runs */
      mtld_trainfeed_lock(f);
      mtld_trainer_stats_t st;
      mtld_trainer_stats(t, &st);
      CHECK(st.observed + st.rejected <= (uint64_t)i + 1);
      mtld_trainfeed_unlock(f);
    }
    if (i == N / 2) { /* a cut: everything pushed is in the trainer */
      mtld_trainfeed_drain(f);
      CHECK(mtld_trainfeed_depth(f) == 0);
      mtld_trainer_stats_t a, b;
      mtld_trainer_stats(ref, &a);
      mtld_trainer_stats(t, &b);
      CHECK(a.observed == b.observed && a.rejected == b.rejected && a.trained == b.trained);
      CHECK(same_params(ref, t));
    }
  }
  mtld_trainfeed_stop(f); /* observes what is still queued */
  mtld_trainer_flush(ref);
  mtld_trainer_flush(t);
  mtld_trainer_stats_t a, b;
  mtld_trainer_stats(ref, &a);
  mtld_trainer_stats(t, &b);
  CHECK(a.observed + a.rejected == N && b.observed == a.observed && b.rejected == a.rejected);
  CHECK(a.rejected > 0);
  CHECK(same_params(ref, t));
  mtld_trainfeed_drain(NULL); /* NULL: no-op */
  mtld_trainfeed_stop(NULL);
  mtld_trainer_destroy(ref);
  mtld_trainer_destroy(t);
  return CHECK_DONE();
}
