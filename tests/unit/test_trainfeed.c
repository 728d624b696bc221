/* test_trainfeed.c - the trainer's thread: samples pushed through the
 * bounded queue (smaller than the stream, so the producer waits) leave the
 * trainer bit-identical to observing them on the caller's thread; drain
 * returns only when every pushed sample was observed; the trainer lock
 * lets the caller read while the worker runs; stop observes what is left;
 * the hook runs once after each sample, until it is removed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/trainfeed.h"
#include "tests/unit/check.h"
#include "tests/unit/rng.h"
#include "tests/unit/trainer_fixture.h"
#include "trainer/train.h"

static void sample(rng_t *r, mtld_sample_t *s, int i) {
  sample_head(r, s, i);
  uint64_t user = s->fields[MTLD_FIELD_USER], item = s->fields[MTLD_FIELD_ITEM];
  s->kind = MTLD_SAMPLE_IMPRESSION;
  int click = rng_unif(r) < 0.1 + 0.05 * (double)((user + item) % 10);
  s->labels[MTLD_LABEL_CLICK] = (float)click;
  s->labels[MTLD_LABEL_PURCHASE] = (float)(click && rng_unif(r) < 0.3);
  s->label_mask = (1u << MTLD_LABEL_CLICK) | (1u << MTLD_LABEL_PURCHASE);
  if (i % 97 == 5) s->weight = -1.0f; /* refused by the trainer, on either thread */
}

/* the hook: runs on the worker after each sample, with the trainer lock */
typedef struct {
  mtld_trainer_t *t;
  int calls, consistent;
} hook_t;

static void hook(void *ctx) {
  hook_t *h = ctx;
  mtld_trainer_stats_t st;
  mtld_trainer_stats(h->t, &st);
  h->calls++;
  h->consistent += st.observed + st.rejected == (uint64_t)h->calls;
}

static mtld_trainer_t *feed_trainer(void) {
  mtld_model_config_t c;
  small_config(&c);
  return new_trainer(&c);
}

int main(void) {
  enum { N = 3000 };
  mtld_trainer_t *ref = feed_trainer(), *t = feed_trainer();
  CHECK(ref && t);
  if (!ref || !t) return CHECK_DONE();
  mtld_trainfeed_t *f = NULL;
  char err[256];
  CHECK(mtld_trainfeed_start(&f, t, 7, err, sizeof(err)) == MTLD_OK);
  hook_t hk = {t, 0, 0};
  mtld_trainfeed_set_hook(f, hook, &hk);
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
      CHECK(params_equal(ref, t));
      CHECK(hk.calls == i + 1 && hk.consistent == hk.calls); /* once per sample, in order */
      mtld_trainfeed_set_hook(f, NULL, NULL);
    }
  }
  CHECK(hk.calls == N / 2 + 1); /* none after it was removed */
  mtld_trainfeed_stop(f);       /* observes what is still queued */
  mtld_trainer_flush(ref);
  mtld_trainer_flush(t);
  mtld_trainer_stats_t a, b;
  mtld_trainer_stats(ref, &a);
  mtld_trainer_stats(t, &b);
  CHECK(a.observed + a.rejected == N && b.observed == a.observed && b.rejected == a.rejected);
  CHECK(a.rejected > 0);
  CHECK(params_equal(ref, t));
  mtld_trainfeed_drain(NULL); /* NULL: no-op */
  mtld_trainfeed_stop(NULL);
  mtld_trainer_destroy(ref);
  mtld_trainer_destroy(t);
  return CHECK_DONE();
}
