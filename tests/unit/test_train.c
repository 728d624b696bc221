/* test_train.c - the online trainer: progressive validation scores before
 * learning, determinism (memcmp-equal parameters), save/load continuing
 * bit-identically, corruption detection, reloadable settings, and a quality
 * sanity check against the oracle AUC of a synthetic stream. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/unit/check.h"
#include "tests/unit/rng.h"
#include "tests/unit/trainer_fixture.h"
#include "trainer/train.h"

static double gauss(rng_t *r) {
  double u = rng_unif(r) + 1e-12, v = rng_unif(r);
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* A mixed stream: impressions (click, purchase) and reviews, with sequences,
 * dense features and three scenarios. */
static void mixed_sample(rng_t *r, mtld_sample_t *s, int i) {
  sample_head(r, s, i);
  uint64_t user = s->fields[MTLD_FIELD_USER], item = s->fields[MTLD_FIELD_ITEM];
  s->seq_len = (int)(rng_next(r) % 8);
  for (int j = 0; j < s->seq_len; j++) {
    s->seq_items[j] = 1 + rng_next(r) % 100;
    s->seq_cats[j] = 1 + s->seq_items[j] % 10;
  }
  double affinity = ((user * 7 + item * 3) % 11) / 10.0;
  if (i % 7 == 6) {
    s->kind = MTLD_SAMPLE_REVIEW;
    s->labels[MTLD_LABEL_RATING] = (float)(1 + (int)(affinity * 4.0));
    s->label_mask = 1u << MTLD_LABEL_RATING;
  } else {
    s->kind = MTLD_SAMPLE_IMPRESSION;
    int click = rng_unif(r) < 0.1 + 0.5 * affinity, buy = click && rng_unif(r) < 0.3;
    s->labels[MTLD_LABEL_CLICK] = (float)click;
    s->labels[MTLD_LABEL_PURCHASE] = (float)buy;
    s->label_mask = (1u << MTLD_LABEL_CLICK) | (1u << MTLD_LABEL_PURCHASE);
  }
}

/* The shared small model, with some rows that expire and get swept. */
static void train_config(mtld_model_config_t *c) {
  small_config(c);
  c->emb.expire_ms = 200000;
}

static void test_determinism_and_state(void) {
  mtld_model_config_t c;
  train_config(&c);
  enum { N = 3000, CUT = 1234 };
  mtld_sample_t *s = malloc(sizeof(*s) * N);
  rng_t r = {77};
  for (int i = 0; i < N; i++) mixed_sample(&r, &s[i], i);

  mtld_trainer_t *a = new_trainer(&c), *b = new_trainer(&c), *fresh = new_trainer(&c);
  CHECK(a && b && fresh);
  CHECK(params_equal(a, fresh));
  for (int i = 0; i < CUT; i++) {
    CHECK(mtld_trainer_observe(a, &s[i], NULL) == MTLD_OK);
    mtld_trainer_observe(b, &s[i], NULL);
  }
  CHECK(mtld_trainer_pending(a) == CUT % c.batch_size);
  /* checkpoint mid-batch, in memory and to a file: same bytes */
  void *buf;
  size_t len;
  char err[256];
  CHECK(mtld_trainer_save_mem(a, &buf, &len, err, sizeof(err)) == MTLD_OK);
  /* recycled buffers: the same bytes, grown when too small, reused when big enough */
  void *rb = malloc(16);
  size_t rlen, rcap = 16;
  CHECK(rb && mtld_trainer_resave_mem(a, &rb, &rlen, &rcap, err, sizeof(err)) == MTLD_OK);
  CHECK(rlen == len && rcap >= len && memcmp(rb, buf, len) == 0);
  void *kept = rb;
  memset(rb, 0xab, rlen);
  CHECK(mtld_trainer_resave_mem(a, &rb, &rlen, &rcap, err, sizeof(err)) == MTLD_OK);
  CHECK(rb == kept && rlen == len && memcmp(rb, buf, len) == 0);
  free(rb);
  FILE *f = tmpfile();
  CHECK(f && mtld_trainer_save(a, f, err, sizeof(err)) == MTLD_OK);
  CHECK(f && (size_t)ftell(f) == len);
  rewind(f);
  unsigned char *fbuf = malloc(len);
  CHECK(fread(fbuf, 1, len, f) == len && memcmp(fbuf, buf, len) == 0);
  free(fbuf);
  rewind(f);
  mtld_trainer_t *c1 = NULL, *c2 = NULL;
  CHECK(mtld_trainer_load(&c1, f, err, sizeof(err)) == MTLD_OK);
  fclose(f);
  CHECK(mtld_trainer_load_mem(&c2, buf, len, err, sizeof(err)) == MTLD_OK);
  CHECK(c1 && c2 && mtld_trainer_pending(c2) == CUT % c.batch_size);
  for (int i = CUT; i < N; i++) {
    mtld_trainer_observe(a, &s[i], NULL);
    mtld_trainer_observe(b, &s[i], NULL);
    mtld_trainer_observe(c1, &s[i], NULL);
    mtld_trainer_observe(c2, &s[i], NULL);
  }
  mtld_trainer_flush(a);
  mtld_trainer_flush(b);
  mtld_trainer_flush(c1);
  mtld_trainer_flush(c2);
  CHECK(params_equal(a, b));  /* determinism */
  CHECK(params_equal(a, c1)); /* restored from a file, continued */
  CHECK(params_equal(a, c2)); /* restored from memory, continued */
  CHECK(!params_equal(a, fresh));
  mtld_pv_summary_t sa, sc;
  mtld_pvmetrics_get(mtld_trainer_metrics(a), 0, MTLD_PV_ALL, &sa);
  mtld_pvmetrics_get(mtld_trainer_metrics(c2), 0, MTLD_PV_ALL, &sc);
  CHECK(sa.n == sc.n && sa.auc_window == sc.auc_window && sa.logloss == sc.logloss);
  mtld_trainer_stats_t st;
  mtld_trainer_stats(a, &st);
  CHECK(st.observed == N && st.trained == N && st.rejected == 0);
  CHECK(st.batches == (uint64_t)(N + c.batch_size - 1) / c.batch_size);
  mtld_embed_t *users = mtld_model_embed(mtld_trainer_model(a), MTLD_FIELD_USER);
  CHECK(users->stats.live_rows > 50 && users->stats.admitted >= users->stats.live_rows);
  CHECK(users->stats.evictions > 0); /* 200 s expiry over a 1500 s stream */

  /* a different stream gives different weights */
  mtld_trainer_t *d = new_trainer(&c);
  for (int i = 0; i < N; i++) {
    mtld_sample_t x = s[i];
    if (i == 100) x.labels[MTLD_LABEL_CLICK] = 1.0f - x.labels[MTLD_LABEL_CLICK];
    mtld_trainer_observe(d, &x, NULL);
  }
  mtld_trainer_flush(d);
  CHECK(!params_equal(a, d));

  /* corruption: flipped byte, truncation, bad magic */
  mtld_trainer_t *bad = NULL;
  unsigned char *cb = buf;
  cb[len / 3] ^= 0x10;
  CHECK(mtld_trainer_load_mem(&bad, buf, len, err, sizeof(err)) == MTLD_ERR_CORRUPT && !bad);
  cb[len / 3] ^= 0x10;
  CHECK(mtld_trainer_load_mem(&bad, buf, len - 1, err, sizeof(err)) == MTLD_ERR_CORRUPT);
  cb[0] = 'X';
  CHECK(mtld_trainer_load_mem(&bad, buf, len, err, sizeof(err)) == MTLD_ERR_CORRUPT);
  CHECK(strstr(err, "magic") != NULL);
  free(buf);

  mtld_trainer_destroy(a);
  mtld_trainer_destroy(b);
  mtld_trainer_destroy(c1);
  mtld_trainer_destroy(c2);
  mtld_trainer_destroy(d);
  mtld_trainer_destroy(fresh);
  free(s);
}

/* Scores are taken before learning: the metrics' mean prediction equals the
 * mean of what observe() returned; the first sample gets the fresh model's
 * score. */
static void test_progressive(void) {
  mtld_model_config_t c;
  train_config(&c);
  mtld_trainer_t *t = new_trainer(&c);
  rng_t r = {5};
  mtld_sample_t s;
  float pred[MTLD_MAX_TASKS], before[MTLD_MAX_TASKS], cond[MTLD_MAX_TASKS];
  double sum = 0.0;
  int n = 0;
  for (int i = 0; i < 1000; i++) {
    mixed_sample(&r, &s, i);
    if (i == 0) mtld_trainer_predict(t, &s, before, cond);
    CHECK(mtld_trainer_observe(t, &s, pred) == MTLD_OK);
    if (i == 0) CHECK(memcmp(before, pred, sizeof(float) * (size_t)c.n_tasks) == 0);
    if (i == 0) CHECK(cond[1] >= pred[1] && pred[1] <= pred[0]);
    if (s.label_mask & (1u << MTLD_LABEL_CLICK)) {
      sum += pred[0];
      n++;
    }
  }
  mtld_trainer_flush(t);
  mtld_pv_summary_t m;
  CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(t), 0, MTLD_PV_ALL, &m) == MTLD_OK);
  CHECK(m.n == (uint64_t)n);
  CHECK_NEAR(m.mean_pred, sum / n, 1e-5);
  CHECK(mtld_pvmetrics_n_scenarios(mtld_trainer_metrics(t)) == 3);
  /* bad samples are refused and counted */
  s.weight = NAN;
  CHECK(mtld_trainer_observe(t, &s, NULL) == MTLD_ERR_INVALID);
  s.weight = 1.0f;
  s.labels[MTLD_LABEL_CLICK] = INFINITY;
  s.label_mask = 1u << MTLD_LABEL_CLICK;
  CHECK(mtld_trainer_observe(t, &s, NULL) == MTLD_ERR_INVALID);
  mtld_trainer_stats_t st;
  mtld_trainer_stats(t, &st);
  CHECK(st.rejected == 2 && st.observed == 1000);
  mtld_trainer_destroy(t);
}

/* Loss weight 0 freezes a task's tower; the learning rate setter applies. */
static void test_settings(void) {
  mtld_model_config_t c;
  train_config(&c);
  mtld_trainer_t *t = new_trainer(&c);
  int rating = mtld_trainer_task_index(t, "rating");
  CHECK(rating == 2 && mtld_trainer_task_index(t, "nope") == -1);
  CHECK(mtld_trainer_set_loss_weight(t, rating, 0.0f) == MTLD_OK);
  CHECK(mtld_trainer_set_loss_weight(t, rating, NAN) == MTLD_ERR_INVALID);
  CHECK(mtld_trainer_set_lr(t, 2e-3f, 0.1f) == MTLD_OK);
  CHECK(mtld_trainer_set_lr(t, -1.0f, 0.1f) == MTLD_ERR_INVALID);
  CHECK(mtld_model_config(mtld_trainer_model(t))->lr == 2e-3f);
  float *p;
  size_t np;
  mtld_trainer_params(t, &p, &np);
  int nt;
  const mtld_tensor_t *ts = mtld_model_tensors(mtld_trainer_model(t), &nt);
  size_t lo = 0, hi = 0;
  for (int k = 0; k < nt; k++) {
    if (strstr(ts[k].name, "tower.rating.") != ts[k].name) continue;
    if (!hi) lo = ts[k].offset;
    hi = ts[k].offset + (size_t)ts[k].rows * ts[k].cols;
  }
  CHECK(hi > lo);
  float *frozen = malloc(sizeof(float) * (hi - lo));
  memcpy(frozen, p + lo, sizeof(float) * (hi - lo));
  rng_t r = {9};
  mtld_sample_t s;
  for (int i = 0; i < 500; i++) {
    mixed_sample(&r, &s, i);
    mtld_trainer_observe(t, &s, NULL);
  }
  mtld_trainer_flush(t);
  mtld_trainer_params(t, &p, &np);
  CHECK(memcmp(frozen, p + lo, sizeof(float) * (hi - lo)) == 0);
  free(frozen);
  mtld_trainer_destroy(t);
}

/* click = Bernoulli(sigmoid(<u_true, i_true> - 1)): the progressive window
 * AUC must rise well above 0.5 and come within 0.03 of the oracle's. */
static void test_quality(void) {
  enum { U = 50, I = 40, K = 4, N = 150000, W = 10000 };
  static double ut[U][K], it[I][K];
  rng_t r = {2024};
  for (int u = 0; u < U; u++)
    for (int k = 0; k < K; k++) ut[u][k] = gauss(&r) * 0.9;
  for (int i = 0; i < I; i++)
    for (int k = 0; k < K; k++) it[i][k] = gauss(&r) * 0.9;
  mtld_model_config_t c;
  mtld_model_config_default(&c);
  c.n_fields = 2;
  c.fields[0].rows = 1024;
  c.fields[1].rows = 1024;
  c.dim = 8;
  c.item_field = c.category_field = c.scenario_field = -1;
  c.n_dense = 0;
  c.n_experts = 2;
  c.n_expert_layers = 1;
  c.tower_layers[0] = 8;
  c.n_tasks = 1;
  c.expert_layers[0] = 32;
  c.lr = 3e-3f;
  c.emb.lr = 0.1f;
  c.batch_size = 32;
  c.emb.admit_after = 1;
  c.emb.expire_ms = 0;
  c.pv_window = W;
  mtld_trainer_t *t = new_trainer(&c);
  static float oracle_p[W], oracle_y[W];
  mtld_sample_t s;
  memset(&s, 0, sizeof(s));
  s.n_fields = 2;
  s.weight = 1.0f;
  s.kind = MTLD_SAMPLE_IMPRESSION;
  s.label_mask = 1u << MTLD_LABEL_CLICK;
  double early_auc = 0.0;
  clock_t t0 = clock();
  for (int n = 0; n < N; n++) {
    int u = (int)(rng_next(&r) % U), i = (int)(rng_next(&r) % I);
    double z = -1.0;
    for (int k = 0; k < K; k++) z += ut[u][k] * it[i][k];
    double p = 1.0 / (1.0 + exp(-z));
    float y = rng_unif(&r) < p;
    s.time_ms = (int64_t)n * 1000;
    s.fields[0] = 1000 + (uint64_t)u;
    s.fields[1] = 5000 + (uint64_t)i;
    s.labels[MTLD_LABEL_CLICK] = y;
    mtld_trainer_observe(t, &s, NULL);
    if (n >= N - W) {
      oracle_p[n - (N - W)] = (float)p;
      oracle_y[n - (N - W)] = y;
    }
    if (n == W - 1) {
      mtld_trainer_flush(t);
      mtld_pv_summary_t m;
      mtld_pvmetrics_get(mtld_trainer_metrics(t), 0, MTLD_PV_ALL, &m);
      early_auc = m.auc_window;
    }
  }
  mtld_trainer_flush(t);
  mtld_pv_summary_t m;
  CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(t), 0, MTLD_PV_ALL, &m) == MTLD_OK);
  double oracle = mtld_auc_exact(oracle_p, oracle_y, W);
  printf("quality: first %d window AUC %.4f, last %d window AUC %.4f, oracle %.4f, cum %.4f, "
         "logloss %.4f, calib %.3f (%.2f s)\n",
         W, early_auc, W, m.auc_window, oracle, m.auc_cum, m.logloss, m.calibration,
         (double)(clock() - t0) / CLOCKS_PER_SEC);
  mtld_pvmetrics_print(mtld_trainer_metrics(t), stdout, 0);
  CHECK(m.n == N);
  CHECK(m.auc_window > 0.7);
  CHECK(m.auc_window > oracle - 0.03);
  CHECK(m.auc_window > early_auc);
  CHECK(fabs(m.calibration - 1.0) < 0.1);
  mtld_trainer_destroy(t);
}

/* A review task chained on ctcvr gets a baseline metric row "review_base"
 * (pCTCVR * the running review rate among purchases), scored on the same
 * samples; its counters survive save/load (same metrics after a reload). */
static void test_review_baseline(void) {
  mtld_model_config_t c;
  small_config(&c);
  c.n_tasks = 4;
  mtld_task_t *k = &c.tasks[3];
  memset(k, 0, sizeof(*k));
  snprintf(k->name, MTLD_NAME_MAX, "review");
  k->type = MTLD_TASK_ESMM_CTCVR;
  k->label = MTLD_LABEL_REVIEW;
  k->parent = 1;
  k->loss_weight = 1.0f;
  mtld_trainer_pv_rows_t rows;
  mtld_trainer_pv_rows(&c, &rows);
  CHECK(rows.n == 5 && strcmp(rows.names[4], "review_base") == 0 && rows.task[4] == 3);
  mtld_model_config_t d;
  small_config(&d);
  mtld_trainer_pv_rows(&d, &rows);
  CHECK(rows.n == d.n_tasks); /* no chained task: one row per task */
  mtld_trainer_t *t = new_trainer(&c), *u = NULL;
  CHECK(t != NULL);
  if (!t) return;
  rng_t r = {9};
  mtld_sample_t s;
  int reviews = 0;
  for (int i = 0; i < 1500; i++) {
    mixed_sample(&r, &s, i);
    if (s.kind == MTLD_SAMPLE_IMPRESSION) {
      s.labels[MTLD_LABEL_REVIEW] = (float)(s.labels[MTLD_LABEL_PURCHASE] > 0.5f && i % 3 == 0);
      s.label_mask |= 1u << MTLD_LABEL_REVIEW;
      reviews += s.labels[MTLD_LABEL_REVIEW] > 0.5f;
    }
    CHECK(mtld_trainer_observe(t, &s, NULL) == MTLD_OK);
    if (i == 700) {
      void *buf = NULL;
      size_t len = 0;
      char err[256];
      CHECK(mtld_trainer_save_mem(t, &buf, &len, err, sizeof(err)) == MTLD_OK);
      CHECK(mtld_trainer_load_mem(&u, buf, len, err, sizeof(err)) == MTLD_OK);
      free(buf);
    }
    if (i > 700 && u) CHECK(mtld_trainer_observe(u, &s, NULL) == MTLD_OK);
  }
  CHECK(reviews > 0);
  mtld_trainer_flush(t);
  mtld_pv_summary_t a, b, base, base2;
  CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(t), 3, MTLD_PV_ALL, &a) == MTLD_OK);
  CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(t), 4, MTLD_PV_ALL, &base) == MTLD_OK);
  CHECK(a.n == base.n && a.n > 1000 && base.mean_pred > 0.0 && base.mean_pred < a.mean_pred * 10);
  if (u) {
    mtld_trainer_flush(u);
    CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(u), 3, MTLD_PV_ALL, &b) == MTLD_OK);
    CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(u), 4, MTLD_PV_ALL, &base2) == MTLD_OK);
    CHECK(b.n == a.n && b.logloss == a.logloss && base2.logloss == base.logloss);
    CHECK(params_equal(t, u));
  }
  mtld_trainer_destroy(t);
  mtld_trainer_destroy(u);
}

/* A demand task: rows "demand_last" and "demand_ma" score the naive
 * forecasts item samples carry, next to the model, on the item samples only;
 * the head predicts the residual over the moving average (naive MA shifts
 * the prediction by exactly itself); the raw dense features keep mean 0,
 * variance 1 in the normaliser; MAE is reported. */
static void test_demand_task(void) {
  mtld_model_config_t c;
  small_config(&c);
  c.n_dense = 6;
  c.n_dense_raw = 2;
  c.n_tasks = 4;
  mtld_task_t *k = &c.tasks[3];
  memset(k, 0, sizeof(*k));
  snprintf(k->name, MTLD_NAME_MAX, "demand");
  k->type = MTLD_TASK_REGRESSION;
  k->label = MTLD_LABEL_DEMAND;
  k->parent = -1;
  k->loss_weight = 1.0f;
  k->bias_mean = 1;
  mtld_trainer_pv_rows_t rows;
  mtld_trainer_pv_rows(&c, &rows);
  CHECK(rows.n == 6 && strcmp(rows.names[4], "demand_last") == 0 &&
        strcmp(rows.names[5], "demand_ma") == 0 && rows.is_reg[4] && rows.is_reg[5] &&
        rows.naive[4] == MTLD_NAIVE_LAST && rows.naive[5] == MTLD_NAIVE_MA && rows.naive[3] == -1);
  mtld_trainer_t *t = new_trainer(&c);
  CHECK(t != NULL);
  if (!t) return;
  rng_t r = {21};
  mtld_sample_t s;
  int items = 0;
  for (int i = 0; i < 1200; i++) {
    mixed_sample(&r, &s, i);
    if (i % 4 == 0) { /* an item sample: no user, demand label, naive forecasts */
      s.kind = MTLD_SAMPLE_ITEM;
      s.fields[MTLD_FIELD_USER] = 0;
      s.seq_len = 0;
      float mean = (float)(s.fields[MTLD_FIELD_ITEM] % 7);
      s.naive[MTLD_NAIVE_LAST] = mean + (float)(i % 3);
      s.naive[MTLD_NAIVE_MA] = mean;
      s.n_dense = 6;
      s.dense[4] = log1pf(s.naive[MTLD_NAIVE_LAST]);
      s.dense[5] = log1pf(mean);
      s.labels[MTLD_LABEL_DEMAND] = mean + (float)((i / 4) % 2);
      s.label_mask = 1u << MTLD_LABEL_DEMAND;
      items++;
    }
    CHECK(mtld_trainer_observe(t, &s, NULL) == MTLD_OK);
  }
  mtld_trainer_flush(t);
  mtld_pv_summary_t m, last, ma;
  CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(t), 3, MTLD_PV_ALL, &m) == MTLD_OK);
  CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(t), 4, MTLD_PV_ALL, &last) == MTLD_OK);
  CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(t), 5, MTLD_PV_ALL, &ma) == MTLD_OK);
  CHECK(m.n == (uint64_t)items && last.n == m.n && ma.n == m.n);
  CHECK(isfinite(m.rmse) && isfinite(m.mae) && m.mae <= m.rmse);
  CHECK_NEAR(ma.mae, 0.5, 1e-9);         /* label - MA is 0 or 1, alternately */
  CHECK_NEAR(last.mae, 5.0 / 6.0, 1e-9); /* |j % 3 - j % 2| over j = i / 4: 5 in 6 */
  float p0[MTLD_MAX_TASKS], p1[MTLD_MAX_TASKS];
  s.naive[MTLD_NAIVE_MA] = 0.0f;
  mtld_trainer_predict(t, &s, p0, NULL);
  s.naive[MTLD_NAIVE_MA] = 5.0f;
  mtld_trainer_predict(t, &s, p1, NULL);
  CHECK_NEAR(p1[3] - p0[3], 5.0, 1e-4);
  CHECK_NEAR(p1[0], p0[0], 0.0); /* the other heads do not see it */
  uint64_t cnt;
  double mean[MTLD_MAX_DENSE], m2[MTLD_MAX_DENSE];
  mtld_model_normaliser(mtld_trainer_model(t), &cnt, mean, m2);
  CHECK(cnt == 1200 && mean[4] == 0.0 && mean[5] == 0.0 && m2[5] == 1199.0 && mean[0] != 0.0);
  mtld_trainer_destroy(t);
}

int main(void) {
  test_progressive();
  test_settings();
  test_determinism_and_state();
  test_quality();
  test_review_baseline();
  test_demand_task();
  return CHECK_DONE();
}
