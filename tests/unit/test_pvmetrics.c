/* test_pvmetrics.c - progressive validation metrics: exact AUC against a
 * brute-force pair count (ties), the sliding window, the histogram AUC,
 * log loss / calibration / RMSE, scenarios and overflow, save/load. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "trainer/pvmetrics.h"
#include "trainer/serial.h"

static uint64_t rng = 4242;
static float frand01(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)(rng >> 40) * (1.0f / 16777216.0f);
}

static double auc_brute(const float *p, const float *y, size_t n) {
  double num = 0.0, pairs = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (y[i] <= 0.5f) continue;
    for (size_t j = 0; j < n; j++) {
      if (y[j] > 0.5f) continue;
      pairs += 1.0;
      num += p[i] > p[j] ? 1.0 : (p[i] == p[j] ? 0.5 : 0.0);
    }
  }
  return pairs ? num / pairs : NAN;
}

static void test_auc_exact(void) {
  float p[6] = {0.1f, 0.4f, 0.35f, 0.8f, 0.4f, 0.4f};
  float y[6] = {0, 0, 1, 1, 1, 0};
  CHECK_NEAR(mtld_auc_exact(p, y, 6), auc_brute(p, y, 6), 1e-12);
  float one[2] = {0.3f, 0.7f}, ally[2] = {1, 1};
  CHECK(isnan(mtld_auc_exact(one, ally, 2)));
  enum { N = 3000 };
  static float pp[N], yy[N];
  for (int i = 0; i < N; i++) {
    yy[i] = frand01() < 0.3f;
    pp[i] = floorf((frand01() * 0.5f + 0.4f * yy[i]) * 50.0f) / 50.0f; /* many ties */
  }
  CHECK_NEAR(mtld_auc_exact(pp, yy, N), auc_brute(pp, yy, N), 1e-9);
  /* the sort handles the whole float line: negatives, -0 and +0 tied, large */
  float q[8] = {-3.0f, 0.0f, -0.0f, 2.5f, -1e-30f, 1e30f, 0.0f, -3.0f};
  float qy[8] = {0, 1, 0, 1, 0, 1, 1, 1};
  CHECK_NEAR(mtld_auc_exact(q, qy, 8), auc_brute(q, qy, 8), 1e-12);
}

/* A second _get with no sample in between reuses the window AUC; one sample
 * more changes it. */
static void test_window_cache(void) {
  mtld_pvmetrics_t *m;
  char err[128];
  int is_reg[1] = {0};
  const char *names[1] = {"ctr"};
  enum { W = 100 };
  CHECK(mtld_pvmetrics_create(&m, 1, is_reg, names, W, 2, err, sizeof(err)) == MTLD_OK);
  static float p[W + 1], y[W + 1];
  int s = mtld_pvmetrics_scenario(m, 1, "home");
  for (int i = 0; i < W; i++) {
    y[i] = (float)(i % 3 == 0);
    p[i] = 0.1f + 0.5f * frand01() + 0.2f * y[i];
    mtld_pvmetrics_add(m, 0, s, p[i], y[i]);
  }
  mtld_pv_summary_t a, b, c;
  CHECK(mtld_pvmetrics_get(m, 0, MTLD_PV_ALL, &a) == MTLD_OK);
  CHECK(mtld_pvmetrics_get(m, 0, MTLD_PV_ALL, &b) == MTLD_OK);
  CHECK(a.auc_window == b.auc_window);
  CHECK_NEAR(a.auc_window, auc_brute(p, y, W), 1e-9);
  p[W] = 0.99f, y[W] = 0.0f; /* a confident negative pushes the first out */
  mtld_pvmetrics_add(m, 0, s, p[W], y[W]);
  CHECK(mtld_pvmetrics_get(m, 0, MTLD_PV_ALL, &c) == MTLD_OK);
  CHECK_NEAR(c.auc_window, auc_brute(p + 1, y + 1, W), 1e-9);
  CHECK(c.auc_window != a.auc_window);
  mtld_pvmetrics_destroy(m);
}

static void test_metrics(void) {
  mtld_pvmetrics_t *m;
  char err[128];
  int is_reg[2] = {0, 1};
  const char *names[2] = {"ctr", "rating"};
  enum { W = 1000, N = 5000 };
  CHECK(mtld_pvmetrics_create(&m, 2, is_reg, names, W, 2, err, sizeof(err)) == MTLD_OK);
  static float p[N], y[N];
  double ll = 0.0, sp = 0.0, sy = 0.0, se = 0.0, se_reg = 0.0;
  int scen_a_n = 0;
  for (int i = 0; i < N; i++) {
    y[i] = frand01() < 0.2f;
    p[i] = 0.05f + 0.6f * frand01() * (0.5f + y[i]);
    ll -= y[i] > 0.5f ? log(p[i]) : log(1.0 - p[i]);
    sp += p[i];
    sy += y[i];
    se += (p[i] - y[i]) * (p[i] - y[i]);
    se_reg += (3.0 + p[i] - 4.0) * (3.0 + p[i] - 4.0);
    uint64_t sid = 1 + (uint64_t)(i % 3); /* three scenarios, two tracked */
    int s = mtld_pvmetrics_scenario(m, sid, sid == 1 ? "home" : NULL);
    if (s == 0) scen_a_n++;
    mtld_pvmetrics_add(m, 0, s, p[i], y[i]);
    mtld_pvmetrics_add(m, 1, s, 3.0f + p[i], 4.0f);
  }
  mtld_pv_summary_t s;
  CHECK(mtld_pvmetrics_get(m, 0, MTLD_PV_ALL, &s) == MTLD_OK);
  CHECK(s.n == N);
  CHECK(s.n_pos == (uint64_t)sy);
  CHECK_NEAR(s.logloss, ll / N, 1e-9);
  CHECK_NEAR(s.calibration, sp / sy, 1e-9);
  CHECK_NEAR(s.rmse, sqrt(se / N), 1e-9);
  CHECK_NEAR(s.auc_window, auc_brute(p + N - W, y + N - W, W), 1e-9); /* last W only */
  CHECK(fabs(s.auc_window - auc_brute(p, y, N)) > 1e-6);              /* ...not all */
  CHECK_NEAR(s.auc_cum, auc_brute(p, y, N), 2e-3);                    /* 10000 bins */
  CHECK(s.auc_cum > 0.6);
  /* regression: no AUC, RMSE and calibration */
  CHECK(mtld_pvmetrics_get(m, 1, MTLD_PV_ALL, &s) == MTLD_OK);
  CHECK(isnan(s.auc_window) && isnan(s.auc_cum) && isnan(s.logloss));
  CHECK_NEAR(s.mean_label, 4.0, 1e-12);
  CHECK_NEAR(s.rmse, sqrt(se_reg / N), 1e-6);
  /* scenarios: two named, the third in "other" */
  CHECK(mtld_pvmetrics_n_scenarios(m) == 3);
  CHECK(!strcmp(mtld_pvmetrics_scenario_name(m, 0), "home"));
  CHECK(!strcmp(mtld_pvmetrics_scenario_name(m, 1), "2"));
  CHECK(!strcmp(mtld_pvmetrics_scenario_name(m, 2), "other"));
  CHECK(mtld_pvmetrics_get(m, 0, 0, &s) == MTLD_OK && s.n == (uint64_t)scen_a_n);
  mtld_pv_summary_t o;
  CHECK(mtld_pvmetrics_get(m, 0, 2, &o) == MTLD_OK && o.n == N / 3);
  CHECK(mtld_pvmetrics_get(m, 0, 3, &o) == MTLD_ERR_INVALID);
  CHECK(mtld_pvmetrics_get(m, 2, 0, &o) == MTLD_ERR_INVALID);

  /* printer: one line per task, then per scenario */
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  mtld_pvmetrics_print(m, f, 1);
  fclose(f);
  int lines = 0;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  CHECK(lines == 2 + 2 * 3);
  CHECK(strstr(text, "task=ctr scenario=all n=5000") != NULL);
  CHECK(strstr(text, "task=rating scenario=other") != NULL);
  free(text);

  /* save/load: same summaries, and the window keeps sliding the same way */
  mtld_wr_t w;
  CHECK(mtld_wr_open(&w, NULL) == MTLD_OK);
  mtld_pvmetrics_save(m, &w);
  mtld_wr_checksum(&w);
  CHECK(w.st == MTLD_OK);
  mtld_wr_close(&w);
  mtld_pvmetrics_t *m2;
  CHECK(mtld_pvmetrics_create(&m2, 2, is_reg, names, W, 2, err, sizeof(err)) == MTLD_OK);
  mtld_rd_t r;
  CHECK(mtld_rd_open(&r, NULL, w.buf, w.len) == MTLD_OK);
  mtld_pvmetrics_load(m2, &r);
  mtld_rd_checksum(&r);
  CHECK(r.st == MTLD_OK && r.pos == w.len);
  mtld_rd_close(&r);
  for (int i = 0; i < 300; i++) {
    float pi = frand01(), yi = frand01() < 0.3f;
    mtld_pvmetrics_add(m, 0, 1, pi, yi);
    mtld_pvmetrics_add(m2, 0, 1, pi, yi);
  }
  mtld_pv_summary_t a, b;
  for (int sc = MTLD_PV_ALL; sc < 3; sc++) {
    CHECK(mtld_pvmetrics_get(m, 0, sc, &a) == MTLD_OK);
    CHECK(mtld_pvmetrics_get(m2, 0, sc, &b) == MTLD_OK);
    CHECK(a.n == b.n && a.auc_window == b.auc_window && a.auc_cum == b.auc_cum &&
          a.logloss == b.logloss);
  }
  CHECK(!strcmp(mtld_pvmetrics_scenario_name(m2, 0), "home"));
  /* a flipped byte is caught by the checksum */
  w.buf[w.len / 2] ^= 1;
  CHECK(mtld_rd_open(&r, NULL, w.buf, w.len) == MTLD_OK);
  mtld_pvmetrics_load(m2, &r);
  mtld_rd_checksum(&r);
  CHECK(r.st != MTLD_OK);
  mtld_rd_close(&r);
  free(w.buf);
  mtld_pvmetrics_destroy(m2);
  mtld_pvmetrics_destroy(m);
}

/* The Prometheus families: one sample per task and scenario ("_all" too);
 * AUC and log loss only for binary tasks. */
static void test_render(void) {
  char err[256];
  int is_reg[2] = {0, 1};
  const char *names[2] = {"ctr", "rating"};
  mtld_pvmetrics_t *m = NULL;
  CHECK(mtld_pvmetrics_create(&m, 2, is_reg, names, 16, 2, err, sizeof(err)) == MTLD_OK);
  int sc = mtld_pvmetrics_scenario(m, 7, "home");
  mtld_pvmetrics_add(m, 0, sc, 0.9f, 1.0f);
  mtld_pvmetrics_add(m, 0, sc, 0.2f, 0.0f);
  mtld_pvmetrics_add(m, 1, sc, 4.0f, 5.0f);
  mtld_metrics_buf_t b;
  mtld_metrics_buf_init(&b);
  mtld_pvmetrics_render(m, &b);
  const char *t = mtld_metrics_buf_text(&b);
  CHECK(mtld_metrics_buf_status(&b) == MTLD_OK);
  CHECK(strstr(t, "# TYPE mtld_pv_auc gauge\n") != NULL);
  CHECK(strstr(t, "mtld_pv_auc{task=\"ctr\",scenario=\"home\"} 1\n") != NULL);
  CHECK(strstr(t, "mtld_pv_samples{task=\"ctr\",scenario=\"_all\"} 2\n") != NULL);
  CHECK(strstr(t, "mtld_pv_rmse{task=\"rating\",scenario=\"home\"} 1\n") != NULL);
  CHECK(strstr(t, "mtld_pv_auc{task=\"rating\"") == NULL);
  CHECK(strstr(t, "mtld_pv_logloss{task=\"rating\"") == NULL);
  CHECK(strstr(t, "mtld_pv_mae{task=\"rating\",scenario=\"home\"} 1\n") != NULL);
  CHECK(strstr(t, "mtld_pv_mae{task=\"ctr\"") == NULL); /* regression tasks only */
  mtld_pv_summary_t sum;
  mtld_pvmetrics_add(m, 1, sc, 1.0f, 4.0f); /* errors 1 and 3: MAE 2, RMSE sqrt(5) */
  CHECK(mtld_pvmetrics_get(m, 1, MTLD_PV_ALL, &sum) == MTLD_OK);
  CHECK_NEAR(sum.mae, 2.0, 1e-12);
  CHECK_NEAR(sum.rmse, sqrt(5.0), 1e-12);
  mtld_metrics_buf_free(&b);
  mtld_pvmetrics_destroy(m);
}

int main(void) {
  test_auc_exact();
  test_render();
  test_window_cache();
  test_metrics();
  return CHECK_DONE();
}
