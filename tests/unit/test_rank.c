/* test_rank.c - the ranking evaluation of clicks: popularity ranks on a
 * stream with known counts, a click on an item outside the catalog is a
 * miss, the catalog stays bounded, and ranking (extra forward passes before
 * each batch) leaves the trained parameters bit-identical. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "trainer/rank.h"
#include "trainer/train.h"

static void click(mtld_sample_t *s, int i, uint64_t item) {
  memset(s, 0, sizeof(*s));
  s->sample_id = (uint64_t)i + 1;
  s->time_ms = 1000000 + i;
  s->kind = MTLD_SAMPLE_IMPRESSION;
  s->weight = 1.0f;
  s->n_fields = 6;
  s->fields[MTLD_FIELD_USER] = 1 + (uint64_t)(i % 7);
  s->fields[MTLD_FIELD_ITEM] = item;
  s->fields[MTLD_FIELD_CATEGORY] = 1 + item % 3;
  s->fields[MTLD_FIELD_SCENARIO] = 1;
  s->scenario_id = 1;
  s->n_dense = 4;
  s->dense[1] = (float)item; /* the "item part" */
  s->dense[2] = 1.0f;
  s->labels[MTLD_LABEL_CLICK] = 1.0f;
  s->label_mask = 1u << MTLD_LABEL_CLICK | 1u << MTLD_LABEL_PURCHASE;
}

static void small(mtld_model_config_t *c) {
  mtld_model_config_default(c);
  for (int f = 0; f < c->n_fields; f++) c->fields[f].rows = 64;
  c->n_dense = 4;
  c->batch_size = 8;
}

static mtld_rank_config_t rank_cfg(int k, int every, int candidates) {
  mtld_rank_config_t r;
  memset(&r, 0, sizeof(r));
  r.k = k;
  r.every = every;
  r.candidates = candidates;
  r.task = 0;
  r.n_item_dense = 1;
  r.item_dense[0] = 1;
  return r;
}

static void test_popularity(void) {
  mtld_model_config_t c;
  small(&c);
  char err[256];
  mtld_model_t *m = NULL;
  CHECK(mtld_model_create(&m, &c, err, sizeof(err)) == MTLD_OK);
  mtld_rank_config_t rc = rank_cfg(1, 1, 10);
  mtld_rank_t *r = NULL;
  CHECK(mtld_rank_create(&r, &rc, err, sizeof(err)) == MTLD_OK);
  /* item 1 clicked 3 times, item 2 twice, item 3 once; then a click on 1
   * (popularity rank 1: a hit), one on 3 (rank 3: a miss at K = 1) and one
   * on the never-seen item 9 (a miss, not in the catalog) */
  uint64_t items[] = {1, 2, 1, 3, 2, 1, 1, 3, 9};
  mtld_sample_t s;
  for (int i = 0; i < 9; i++) {
    click(&s, i, items[i]);
    mtld_rank_observe(r, m, &s, 1);
  }
  mtld_rank_summary_t sum;
  mtld_rank_get(r, &sum);
  CHECK(sum.clicks == 9 && sum.evaluated == 9 && sum.catalog == 4);
  CHECK(sum.in_catalog == 5); /* the first clicks of 1, 2, 3 and 9 were new */
  /* popularity at K = 1: the 2nd click of 1 ties with 2 (1 click each:
   * rank 1.5, a miss), the 2nd of 2 ranks 2.5, the 3rd of 1 ties with 2
   * again; only the 4th click of 1 (3 clicks against 2 and 1) ranks 1 */
  CHECK_NEAR(sum.pop_hr, 1.0 / 9.0, 1e-12);
  CHECK_NEAR(sum.pop_mrr, 1.0 / 9.0, 1e-12);
  CHECK(sum.hr >= 0.0 && sum.hr <= 1.0 && sum.mrr <= sum.hr + 1e-12);
  /* bad settings are refused */
  rc.k = 0;
  mtld_rank_t *bad = NULL;
  CHECK(mtld_rank_create(&bad, &rc, err, sizeof(err)) == MTLD_ERR_CONFIG && !bad);
  mtld_rank_destroy(r);

  /* a bounded catalog: only the 3 most recently clicked items */
  rc = rank_cfg(20, 1, 3);
  CHECK(mtld_rank_create(&r, &rc, err, sizeof(err)) == MTLD_OK);
  for (int i = 0; i < 10; i++) {
    click(&s, i, 100 + (uint64_t)i);
    mtld_rank_observe(r, m, &s, 1);
  }
  click(&s, 10, 100); /* evicted long ago: a miss */
  mtld_rank_observe(r, m, &s, 1);
  click(&s, 11, 108); /* still there, among 3: a hit at K = 20 */
  mtld_rank_observe(r, m, &s, 1);
  mtld_rank_get(r, &sum);
  CHECK(sum.catalog == 3 && sum.in_catalog == 1);
  CHECK_NEAR(sum.hr, 1.0 / 12.0, 1e-12);
  CHECK_NEAR(sum.pop_hr, 1.0 / 12.0, 1e-12);
  mtld_rank_destroy(r);
  mtld_model_destroy(m);
}

/* Trains the same clicks (and unclicked samples) with and without the
 * ranking evaluation: the same parameters, bit for bit. */
static void test_weights_unchanged(void) {
  mtld_model_config_t c;
  small(&c);
  char err[256];
  mtld_trainer_t *a = NULL, *b = NULL;
  CHECK(mtld_trainer_create(&a, &c, err, sizeof(err)) == MTLD_OK);
  CHECK(mtld_trainer_create(&b, &c, err, sizeof(err)) == MTLD_OK);
  mtld_rank_config_t rc = rank_cfg(5, 2, 32); /* all 23 items fit */
  CHECK(mtld_trainer_set_ranking(b, &rc, err, sizeof(err)) == MTLD_OK);
  CHECK(mtld_trainer_ranking(a) == NULL && mtld_trainer_ranking(b) != NULL);
  mtld_sample_t s;
  for (int i = 0; i < 400; i++) {
    click(&s, i, 1 + (uint64_t)((i * 7) % 23));
    if (i % 3) s.labels[MTLD_LABEL_CLICK] = 0.0f;
    mtld_trainer_observe(a, &s, NULL);
    mtld_trainer_observe(b, &s, NULL);
  }
  mtld_trainer_flush(a);
  mtld_trainer_flush(b);
  float *pa, *pb;
  size_t na, nb;
  mtld_trainer_params(a, &pa, &na);
  mtld_trainer_params(b, &pb, &nb);
  CHECK(na == nb && memcmp(pa, pb, na * sizeof(float)) == 0);
  mtld_rank_summary_t sum;
  mtld_rank_get(mtld_trainer_ranking(b), &sum);
  CHECK(sum.clicks == 134 && sum.evaluated == 67);
  CHECK(sum.in_catalog > 40 && !isnan(sum.hr));
  mtld_trainer_destroy(a);
  mtld_trainer_destroy(b);
}

int main(void) {
  test_popularity();
  test_weights_unchanged();
  return CHECK_DONE();
}
