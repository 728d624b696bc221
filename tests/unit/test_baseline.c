/* test_baseline.c - the rating task against its baselines: the progressive
 * baselines (each rating predicted from earlier ones only), their RMSE in
 * the metrics and the checkpoint, and the running-mean bias of a regression
 * head (without it, a head started at bias_init 4.0 stays far above labels
 * around 2 for the first batches). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "trainer/baseline.h"
#include "trainer/train.h"

static void test_predictors(void) {
  int reg[2] = {0, 1};
  float prior[2] = {0.0f, 4.0f};
  mtld_baseline_t *b = NULL;
  CHECK(mtld_baseline_create(&b, 2, reg, prior) == MTLD_OK);
  float p[MTLD_BASE_COUNT];
  mtld_baseline_predict(b, 1, 7, 100, p);
  for (int k = 0; k < MTLD_BASE_COUNT; k++) CHECK(p[k] == 4.0f); /* nothing seen: the prior */
  mtld_baseline_add(b, 1, 7, 100, 5.0f);
  mtld_baseline_add(b, 1, 8, 100, 5.0f);
  mtld_baseline_add(b, 1, 9, 200, 2.0f);
  mtld_baseline_predict(b, 1, 9, 100, p);
  CHECK_NEAR(p[MTLD_BASE_GLOBAL_MEAN], 4.0, 1e-6);
  CHECK_NEAR(p[MTLD_BASE_ITEM_MEAN], 5.0, 1e-6);
  CHECK_NEAR(p[MTLD_BASE_ITEM_SMOOTHED], (10.0 + MTLD_BASE_SHRINK * 4.0) / (2 + MTLD_BASE_SHRINK),
             1e-5);
  /* user 9 rated below what the mean and its item said: a negative user bias */
  float q[MTLD_BASE_COUNT];
  mtld_baseline_predict(b, 1, 1234, 100, q);
  CHECK(p[MTLD_BASE_BIASES] < q[MTLD_BASE_BIASES]);
  mtld_baseline_predict(b, 1, 1, 300, p); /* an unseen item: the global mean */
  CHECK_NEAR(p[MTLD_BASE_ITEM_MEAN], 4.0, 1e-6);
  CHECK(strcmp(mtld_baseline_name(MTLD_BASE_ITEM_SMOOTHED), "item_smoothed") == 0);
  mtld_baseline_destroy(b);
}

static void rating_sample(mtld_sample_t *s, int i, float rating) {
  memset(s, 0, sizeof(*s));
  s->sample_id = (uint64_t)i + 1;
  s->time_ms = 1000000 + i;
  s->kind = MTLD_SAMPLE_REVIEW;
  s->weight = 1.0f;
  s->n_fields = 5;
  s->fields[MTLD_FIELD_USER] = 1 + (uint64_t)(i % 13);
  s->fields[MTLD_FIELD_ITEM] = 1 + (uint64_t)(i % 5);
  s->fields[MTLD_FIELD_SCENARIO] = 1;
  s->scenario_id = 1;
  s->labels[MTLD_LABEL_RATING] = rating;
  s->label_mask = 1u << MTLD_LABEL_RATING;
}

static void small(mtld_model_config_t *c) {
  mtld_model_config_default(c);
  for (int f = 0; f < c->n_fields; f++) c->fields[f].rows = 64;
  c->n_dense = 0;
  c->batch_size = 16;
}

/* Mean prediction of the rating task over 64 samples rated 2 (after 64
 * others rated 2), with or without the running-mean bias. */
static double mean_pred_after(int bias_mean, mtld_trainer_t **keep) {
  mtld_model_config_t c;
  small(&c);
  c.tasks[2].bias_mean = bias_mean;
  c.tasks[2].bias_init = 4.0f;
  mtld_trainer_t *t = NULL;
  char err[256];
  CHECK(mtld_trainer_create(&t, &c, err, sizeof(err)) == MTLD_OK);
  mtld_sample_t s;
  for (int i = 0; i < 128; i++) {
    rating_sample(&s, i, 2.0f);
    mtld_trainer_observe(t, &s, NULL);
  }
  mtld_pv_summary_t sum;
  CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(t), 2, MTLD_PV_ALL, &sum) == MTLD_OK);
  CHECK(sum.n == 128);
  /* every baseline predicted 4.0 (the prior) first, then exactly 2.0 */
  CHECK_NEAR(sum.rmse_base[MTLD_BASE_GLOBAL_MEAN], sqrt(4.0 / 128.0), 1e-6);
  float pred[3];
  rating_sample(&s, 999, 2.0f);
  mtld_trainer_predict(t, &s, pred, NULL);
  if (keep)
    *keep = t;
  else
    mtld_trainer_destroy(t);
  return pred[2];
}

static void test_running_mean_bias(void) {
  double fixed = mean_pred_after(0, NULL);
  mtld_trainer_t *t = NULL;
  double mean = mean_pred_after(1, &t);
  CHECK(fabs(mean - 2.0) < 0.3);  /* the bias followed the labels' mean */
  CHECK(fabs(fixed - 2.0) > 1.0); /* Adam's steps alone have not got there */
  /* the label mean and the baselines survive a save/load */
  void *buf = NULL;
  size_t len = 0;
  char err[256];
  CHECK(mtld_trainer_save_mem(t, &buf, &len, err, sizeof(err)) == MTLD_OK);
  mtld_trainer_t *u = NULL;
  CHECK(mtld_trainer_load_mem(&u, buf, len, err, sizeof(err)) == MTLD_OK);
  mtld_pv_summary_t a, b;
  CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(t), 2, MTLD_PV_ALL, &a) == MTLD_OK);
  CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(u), 2, MTLD_PV_ALL, &b) == MTLD_OK);
  for (int k = 0; k < MTLD_BASE_COUNT; k++) CHECK(a.rmse_base[k] == b.rmse_base[k]);
  mtld_sample_t s;
  for (int i = 0; i < 32; i++) { /* the same continuation: bit-identical parameters */
    rating_sample(&s, 200 + i, 3.0f);
    mtld_trainer_observe(t, &s, NULL);
    mtld_trainer_observe(u, &s, NULL);
  }
  float *pa, *pb;
  size_t na, nb;
  mtld_trainer_params(t, &pa, &na);
  mtld_trainer_params(u, &pb, &nb);
  CHECK(na == nb && memcmp(pa, pb, na * sizeof(float)) == 0);
  free(buf);
  mtld_trainer_destroy(t);
  mtld_trainer_destroy(u);
}

int main(void) {
  test_predictors();
  test_running_mean_bias();
  return CHECK_DONE();
}
