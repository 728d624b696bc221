/* test_delta.c - model deltas and bases between data-parallel trainers
 * (trainer/delta.h): two trainers exchanging deltas hold the summed
 * updates; a base reproduces the shared model; other shapes and malformed
 * messages are refused without a change. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "tests/unit/trainer_fixture.h"
#include "trainer/delta.h"

#define USER_ONLY (1ull << MTLD_FIELD_USER)
#define ACC MTLD_DELTA_ACCUMULATORS

static int with_reviews; /* every 7th sample a review (rating label) */

static void sample(rng_t *r, mtld_sample_t *s, int i) {
  sample_head(r, s, i);
  uint64_t user = s->fields[MTLD_FIELD_USER], item = s->fields[MTLD_FIELD_ITEM];
  s->seq_len = (int)(rng_next(r) % 6);
  for (int j = 0; j < s->seq_len; j++) {
    s->seq_items[j] = 1 + rng_next(r) % 100;
    s->seq_cats[j] = 1 + s->seq_items[j] % 10;
  }
  double affinity = ((user * 7 + item * 3) % 11) / 10.0;
  if (with_reviews && i % 7 == 6) {
    s->kind = MTLD_SAMPLE_REVIEW;
    s->labels[MTLD_LABEL_RATING] = (float)(1 + (int)(affinity * 4.0));
    s->label_mask = 1u << MTLD_LABEL_RATING;
    return;
  }
  s->kind = MTLD_SAMPLE_IMPRESSION;
  int click = rng_unif(r) < 0.1 + 0.5 * affinity, buy = click && rng_unif(r) < 0.3;
  s->labels[MTLD_LABEL_CLICK] = (float)click;
  s->labels[MTLD_LABEL_PURCHASE] = (float)buy;
  s->label_mask = (1u << MTLD_LABEL_CLICK) | (1u << MTLD_LABEL_PURCHASE);
}

static void train(mtld_trainer_t *t, uint64_t seed, int from, int n) {
  rng_t r = {seed * 0x9e3779b97f4a7c15ULL + 1};
  mtld_sample_t s;
  for (int i = 0; i < n; i++) {
    sample(&r, &s, from + i);
    mtld_trainer_observe(t, &s, NULL);
  }
  mtld_trainer_flush(t);
}

static float *copy_params(mtld_trainer_t *t, size_t *n) {
  float *p;
  mtld_trainer_params(t, &p, n);
  float *c = malloc(sizeof(float) * *n);
  memcpy(c, p, sizeof(float) * *n);
  return c;
}

/* the float range [lo, hi) of field f's table in the parameter buffer */
static void table_range(mtld_trainer_t *t, int f, size_t *lo, size_t *hi) {
  float *p;
  size_t n;
  mtld_trainer_params(t, &p, &n);
  mtld_embed_t *e = mtld_model_embed(mtld_trainer_model(t), f);
  *lo = (size_t)(e->w - p);
  *hi = *lo + (size_t)e->rows * e->dim;
}

/* a copy of field f's row accumulators (0 for dead rows) */
static float *copy_acc(mtld_trainer_t *t, int f) {
  mtld_embed_t *e = mtld_model_embed(mtld_trainer_model(t), f);
  float *c = malloc(sizeof(float) * e->rows);
  for (uint32_t r = 0; r < e->rows; r++) c[r] = e->last_used[r] == INT64_MIN ? 0 : e->acc[r];
  return c;
}

static size_t dense_count(mtld_trainer_t *t) {
  float *g;
  size_t n;
  mtld_model_grads(mtld_trainer_model(t), &g, &n);
  return n;
}

static void test_exchange_sums_updates(void) {
  mtld_model_config_t c;
  small_config(&c);
  mtld_trainer_t *a = new_trainer(&c), *b = new_trainer(&c);
  CHECK(a && b);
  char err[256];
  mtld_delta_t *da, *db;
  CHECK(mtld_delta_new(&da, mtld_trainer_model(a), USER_ONLY, ACC, err, sizeof(err)) == MTLD_OK);
  CHECK(mtld_delta_new(&db, mtld_trainer_model(b), USER_ONLY, ACC, err, sizeof(err)) == MTLD_OK);
  CHECK(mtld_delta_shape(da) == mtld_delta_shape(db));
  size_t n;
  float *w0 = copy_params(a, &n);
  float *acc0 = copy_acc(a, MTLD_FIELD_ITEM);
  train(a, 1, 0, 640);
  train(b, 2, 10000, 640);
  float *wa = copy_params(a, &n), *wb = copy_params(b, &n);
  float *acca = copy_acc(a, MTLD_FIELD_ITEM), *accb = copy_acc(b, MTLD_FIELD_ITEM);
  void *ma, *mb;
  size_t la, lb;
  mtld_delta_stats_t sa, sb;
  CHECK(mtld_delta_extract(da, MTLD_DELTA_DELTA, &ma, &la, &sa) == MTLD_OK);
  CHECK(mtld_delta_extract(db, MTLD_DELTA_DELTA, &mb, &lb, &sb) == MTLD_OK);
  CHECK(sa.rows > 0 && sa.bytes == la && sa.divergence > 0 && sa.divergence < 10);
  CHECK(mtld_delta_peek(ma, la, NULL) == MTLD_DELTA_DELTA);
  CHECK(mtld_delta_apply(da, mb, lb, err, sizeof(err)) == MTLD_OK);
  CHECK(mtld_delta_apply(db, ma, la, err, sizeof(err)) == MTLD_OK);
  float *pa, *pb;
  mtld_trainer_params(a, &pa, &n);
  mtld_trainer_params(b, &pb, &n);
  /* dense: w0 + (wa - w0) + (wb - w0) on both */
  size_t nd = dense_count(a);
  int bad = 0;
  for (size_t i = 0; i < nd; i++) {
    float want = wa[i] + (wb[i] - w0[i]);
    if (fabsf(pa[i] - want) > 1e-5f || fabsf(pb[i] - want) > 1e-5f) bad++;
  }
  CHECK(bad == 0);
  /* shared tables: equal on both instances; the user table is each one's own */
  for (int f = 0; f < c.n_fields; f++) {
    size_t lo, hi;
    table_range(a, f, &lo, &hi);
    int diff = 0, moved = 0;
    for (size_t i = lo; i < hi; i++) {
      if (fabsf(pa[i] - pb[i]) > 1e-5f) diff++;
      if (pa[i] != wa[i]) moved++;
    }
    if (f == MTLD_FIELD_USER) {
      CHECK(diff > 0 && moved == 0);
    } else {
      CHECK(diff == 0);
      if (f == MTLD_FIELD_ITEM) CHECK(moved > 0); /* b's updates arrived */
    }
  }
  /* a row alive only remotely came to life here */
  mtld_embed_t *ea = mtld_model_embed(mtld_trainer_model(a), MTLD_FIELD_ITEM);
  mtld_embed_t *eb = mtld_model_embed(mtld_trainer_model(b), MTLD_FIELD_ITEM);
  int live_mismatch = 0;
  for (uint32_t r = 0; r < ea->rows; r++)
    live_mismatch += (ea->last_used[r] == INT64_MIN) != (eb->last_used[r] == INT64_MIN);
  CHECK(live_mismatch == 0);
  /* the item rows' Adagrad accumulators hold both instances' squared
     gradients: initial + a's increment + b's, on both */
  int acc_bad = 0, acc_summed = 0;
  for (uint32_t r = 0; r < ea->rows; r++) {
    if (ea->last_used[r] == INT64_MIN) continue;
    float from = acc0[r] ? acc0[r] : ea->cfg.adagrad_init; /* 0: the row was dead */
    float inc_a = acca[r] ? acca[r] - from : 0, inc_b = accb[r] ? accb[r] - from : 0;
    float want = from + inc_a + inc_b;
    if (fabsf(ea->acc[r] - want) > 1e-4f * want || fabsf(eb->acc[r] - want) > 1e-4f * want)
      acc_bad++;
    if (inc_a > 0 && inc_b > 0) acc_summed++;
  }
  CHECK(acc_bad == 0);
  CHECK(acc_summed > 0);
  free(acc0);
  free(acca);
  free(accb);
  free(ma);
  free(mb);
  /* nothing trained since: an empty delta (no rows, zero dense) */
  CHECK(mtld_delta_extract(da, MTLD_DELTA_DELTA, &ma, &la, &sa) == MTLD_OK);
  CHECK(sa.rows == 0 && sa.delta_l2 == 0);
  free(ma);

  /* a second round keeps them together */
  train(a, 3, 20000, 320);
  train(b, 4, 30000, 320);
  CHECK(mtld_delta_extract(da, MTLD_DELTA_DELTA, &ma, &la, NULL) == MTLD_OK);
  CHECK(mtld_delta_extract(db, MTLD_DELTA_DELTA, &mb, &lb, NULL) == MTLD_OK);
  CHECK(mtld_delta_apply(da, mb, lb, err, sizeof(err)) == MTLD_OK);
  CHECK(mtld_delta_apply(db, ma, la, err, sizeof(err)) == MTLD_OK);
  free(ma);
  free(mb);
  size_t lo, hi;
  table_range(a, MTLD_FIELD_ITEM, &lo, &hi);
  double worst = 0;
  for (size_t i = 0; i < nd; i++) worst = fmax(worst, fabs(pa[i] - pb[i]));
  for (size_t i = lo; i < hi; i++) worst = fmax(worst, fabs(pa[i] - pb[i]));
  CHECK(worst < 1e-4);

  /* a newcomer starts from a's base: the shared part equal bit for bit */
  void *base;
  size_t lbase;
  CHECK(mtld_delta_extract(da, MTLD_DELTA_BASE, &base, &lbase, NULL) == MTLD_OK);
  CHECK(mtld_delta_peek(base, lbase, NULL) == MTLD_DELTA_BASE);
  mtld_trainer_t *cnew = new_trainer(&c);
  train(cnew, 9, 50000, 64); /* a restarted instance with its own stale state */
  float *pc;
  mtld_trainer_params(cnew, &pc, &n);
  size_t ulo, uhi;
  table_range(cnew, MTLD_FIELD_USER, &ulo, &uhi);
  float *user_before = malloc(sizeof(float) * (uhi - ulo));
  memcpy(user_before, pc + ulo, sizeof(float) * (uhi - ulo));
  mtld_delta_t *dc;
  CHECK(mtld_delta_new(&dc, mtld_trainer_model(cnew), USER_ONLY, ACC, err, sizeof(err)) == MTLD_OK);
  CHECK(mtld_delta_apply(dc, base, lbase, err, sizeof(err)) == MTLD_OK);
  CHECK(memcmp(pc, pa, sizeof(float) * nd) == 0);
  for (int f = 0; f < c.n_fields; f++) {
    if (f == MTLD_FIELD_USER) continue;
    table_range(a, f, &lo, &hi);
    CHECK(memcmp(pc + lo, pa + lo, sizeof(float) * (hi - lo)) == 0);
  }
  CHECK(memcmp(pc + ulo, user_before, sizeof(float) * (uhi - ulo)) == 0);
  { /* the shared rows' accumulators came with the base */
    mtld_embed_t *xa = mtld_model_embed(mtld_trainer_model(a), MTLD_FIELD_ITEM);
    mtld_embed_t *xc = mtld_model_embed(mtld_trainer_model(cnew), MTLD_FIELD_ITEM);
    int acc_diff = 0;
    for (uint32_t r = 0; r < xa->rows; r++)
      if (xa->last_used[r] != INT64_MIN && xa->acc[r] != xc->acc[r]) acc_diff++;
    CHECK(acc_diff == 0);
  }
  /* and after it, nothing unpublished */
  CHECK(mtld_delta_extract(dc, MTLD_DELTA_DELTA, &ma, &la, &sa) == MTLD_OK);
  CHECK(sa.rows == 0 && sa.delta_l2 == 0);
  free(ma);

  /* refusals: another shape, malformed bytes; nothing changes */
  mtld_model_config_t c2 = c;
  c2.fields[MTLD_FIELD_ITEM].rows = 128;
  mtld_trainer_t *other = new_trainer(&c2);
  mtld_delta_t *dother;
  CHECK(mtld_delta_new(&dother, mtld_trainer_model(other), USER_ONLY, ACC, err, sizeof(err)) ==
        MTLD_OK);
  CHECK(mtld_delta_shape(dother) != mtld_delta_shape(da));
  train(other, 5, 0, 64);
  CHECK(mtld_delta_extract(dother, MTLD_DELTA_DELTA, &mb, &lb, NULL) == MTLD_OK);
  float *before = copy_params(a, &n);
  CHECK(mtld_delta_apply(da, mb, lb, err, sizeof(err)) == MTLD_ERR_SCHEMA);
  CHECK(mtld_delta_apply(da, base, lbase - 3, err, sizeof(err)) == MTLD_ERR_CORRUPT);
  CHECK(mtld_delta_apply(da, "garbage", 7, err, sizeof(err)) == MTLD_ERR_CORRUPT);
  CHECK(memcmp(before, pa, sizeof(float) * n) == 0);
  mtld_delta_t *dlocal;
  CHECK(mtld_delta_new(&dlocal, mtld_trainer_model(a), USER_ONLY | 2, 0, err, sizeof(err)) ==
        MTLD_OK);
  CHECK(mtld_delta_shape(dlocal) != mtld_delta_shape(da)); /* another local set */
  mtld_delta_free(dlocal);
  CHECK(mtld_delta_new(&dlocal, mtld_trainer_model(a), USER_ONLY, 0, err, sizeof(err)) == MTLD_OK);
  CHECK(mtld_delta_shape(dlocal) != mtld_delta_shape(da)); /* accumulators not exchanged */
  mtld_delta_free(dlocal);
  /* a message of another format version: refused, nothing changed */
  ((char *)base)[7] = '1';
  CHECK(mtld_delta_peek(base, lbase, NULL) == -2);
  CHECK(mtld_delta_apply(da, base, lbase, err, sizeof(err)) == MTLD_ERR_SCHEMA);
  CHECK(strstr(err, "version") != NULL);
  ((char *)base)[7] = MTLD_DELTA_MAGIC[7];

  free(mb);
  free(base);
  free(before);
  free(user_before);
  free(w0);
  free(wa);
  free(wb);
  mtld_delta_free(da);
  mtld_delta_free(db);
  mtld_delta_free(dc);
  mtld_delta_free(dother);
  mtld_trainer_destroy(a);
  mtld_trainer_destroy(b);
  mtld_trainer_destroy(cnew);
  mtld_trainer_destroy(other);
}

/* The output bias that follows the running rating mean moves once in the
 * shared model, not once per instance; a newcomer takes the mean with the
 * base. */
static void test_label_mean_bias(void) {
  with_reviews = 1;
  mtld_model_config_t c;
  small_config(&c);
  int rt = -1;
  for (int t = 0; t < c.n_tasks; t++)
    if (c.tasks[t].type == MTLD_TASK_REGRESSION && c.tasks[t].bias_mean) rt = t;
  CHECK(rt >= 0);
  mtld_trainer_t *a = new_trainer(&c), *b = new_trainer(&c);
  char err[256];
  mtld_delta_t *da, *db;
  CHECK(mtld_delta_new(&da, mtld_trainer_model(a), USER_ONLY, ACC, err, sizeof(err)) == MTLD_OK);
  CHECK(mtld_delta_new(&db, mtld_trainer_model(b), USER_ONLY, ACC, err, sizeof(err)) == MTLD_OK);
  size_t n;
  float *w0 = copy_params(a, &n);
  train(a, 11, 0, 700);
  train(b, 12, 10000, 700);
  float *wa = copy_params(a, &n), *wb = copy_params(b, &n);
  double mean_b, sum, mean_a;
  uint64_t cnt;
  size_t bi;
  CHECK(mtld_model_label_mean(mtld_trainer_model(b), rt, &mean_b, &sum, &cnt, &bi) == 1);
  CHECK(cnt > 0);
  CHECK(mtld_model_label_mean(mtld_trainer_model(a), rt, &mean_a, &sum, &cnt, &bi) == 1);
  void *mb;
  size_t lb;
  CHECK(mtld_delta_extract(db, MTLD_DELTA_DELTA, &mb, &lb, NULL) == MTLD_OK);
  CHECK(mtld_delta_apply(da, mb, lb, err, sizeof(err)) == MTLD_OK);
  free(mb);
  float *pa;
  mtld_trainer_params(a, &pa, &n);
  double want = (double)wa[bi] + ((double)wb[bi] - w0[bi]) - (mean_b - c.tasks[rt].bias_init);
  CHECK_NEAR(pa[bi], want, 1e-4);
  /* a newcomer from a's base (after a published all it had): a's bias and
   * a's running mean */
  CHECK(mtld_delta_extract(da, MTLD_DELTA_DELTA, &mb, &lb, NULL) == MTLD_OK);
  free(mb);
  void *base;
  size_t lbase;
  CHECK(mtld_delta_extract(da, MTLD_DELTA_BASE, &base, &lbase, NULL) == MTLD_OK);
  mtld_trainer_t *cn = new_trainer(&c);
  mtld_delta_t *dc;
  CHECK(mtld_delta_new(&dc, mtld_trainer_model(cn), USER_ONLY, ACC, err, sizeof(err)) == MTLD_OK);
  CHECK(mtld_delta_apply(dc, base, lbase, err, sizeof(err)) == MTLD_OK);
  double mean_c;
  CHECK(mtld_model_label_mean(mtld_trainer_model(cn), rt, &mean_c, &sum, &cnt, &bi) == 1);
  CHECK(mean_c == mean_a);
  float *pc;
  mtld_trainer_params(cn, &pc, &n);
  CHECK(pc[bi] == pa[bi]);
  free(base);
  free(w0);
  free(wa);
  free(wb);
  mtld_delta_free(da);
  mtld_delta_free(db);
  mtld_delta_free(dc);
  mtld_trainer_destroy(a);
  mtld_trainer_destroy(b);
  mtld_trainer_destroy(cn);
  with_reviews = 0;
}

/* The shared tables' admission sketches travel: a base gives a newcomer the
 * group's counts (an item seen once elsewhere is admitted at its first
 * sighting here, as on one instance with admit_after 2), a delta the
 * increments, added up saturating at 65535. */
static void test_sketch_travels(void) {
  mtld_model_config_t c;
  small_config(&c);
  CHECK(c.emb.admit_after == 2);
  mtld_trainer_t *a = new_trainer(&c), *b = new_trainer(&c);
  CHECK(a && b);
  char err[256];
  mtld_delta_t *da, *db;
  CHECK(mtld_delta_new(&da, mtld_trainer_model(a), USER_ONLY, ACC, err, sizeof(err)) == MTLD_OK);
  CHECK(mtld_delta_new(&db, mtld_trainer_model(b), USER_ONLY, ACC, err, sizeof(err)) == MTLD_OK);
  mtld_embed_t *ea = mtld_model_embed(mtld_trainer_model(a), MTLD_FIELD_ITEM);
  mtld_embed_t *eb = mtld_model_embed(mtld_trainer_model(b), MTLD_FIELD_ITEM);
  CHECK(ea->cms && eb->cms);
  const uint64_t x = 4242, y = 4343, z = 4444;
  mtld_embed_touch(ea, x, 1000, 1); /* once on a: not admitted there */
  CHECK(mtld_embed_find(ea, x, 1000) < 0);
  void *m;
  size_t len;
  /* a publishes its delta (the count is in a's shadow then), later a base */
  CHECK(mtld_delta_extract(da, MTLD_DELTA_DELTA, &m, &len, NULL) == MTLD_OK);
  free(m);
  CHECK(mtld_delta_extract(da, MTLD_DELTA_BASE, &m, &len, NULL) == MTLD_OK);
  CHECK(mtld_delta_apply(db, m, len, err, sizeof(err)) == MTLD_OK);
  free(m);
  mtld_embed_touch(eb, x, 1000, 1); /* the second sighting in the group */
  CHECK(mtld_embed_find(eb, x, 1000) >= 0);
  mtld_embed_touch(ea, y, 2000, 1);
  CHECK(mtld_delta_extract(da, MTLD_DELTA_DELTA, &m, &len, NULL) == MTLD_OK);
  CHECK(mtld_delta_apply(db, m, len, err, sizeof(err)) == MTLD_OK);
  free(m);
  mtld_embed_touch(eb, y, 2000, 1);
  CHECK(mtld_embed_find(eb, y, 2000) >= 0);
  uint32_t cells = 2 * eb->cms_width;
  for (uint32_t i = 0; i < cells; i++) eb->cms[i] = 65500;
  for (int i = 0; i < 100; i++) mtld_embed_touch(ea, z, 3000, 1);
  CHECK(mtld_delta_extract(da, MTLD_DELTA_DELTA, &m, &len, NULL) == MTLD_OK);
  CHECK(mtld_delta_apply(db, m, len, err, sizeof(err)) == MTLD_OK);
  free(m);
  uint32_t full = 0, low = 0;
  for (uint32_t i = 0; i < cells; i++) full += eb->cms[i] == UINT16_MAX, low += eb->cms[i] < 65500;
  CHECK(full == 2 && low == 0); /* z's two cells saturated, none wrapped */
  mtld_delta_free(da);
  mtld_delta_free(db);
  mtld_trainer_destroy(a);
  mtld_trainer_destroy(b);
}

int main(void) {
  test_exchange_sums_updates();
  test_sketch_travels();
  test_label_mean_bias();
  return CHECK_DONE();
}
