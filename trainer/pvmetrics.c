/* pvmetrics.c - progressive validation metrics (see pvmetrics.h). */
#include "trainer/pvmetrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/model.h" /* MTLD_NAME_MAX */

#define LOGIT_RANGE 16.0 /* histogram spans logits in [-16, 16] */

typedef struct {
  uint64_t n, n_pos;
  double sum_pred, sum_label, sum_ll, sum_se, sum_ae;
  uint64_t n_base;
  double sum_se_base[MTLD_BASE_COUNT];
  float *ring;     /* [cap] predictions, oldest at head once full */
  uint8_t *ring_y; /* [cap] binary labels */
  uint32_t cap, len, head;
  uint64_t *hist; /* [2 * MTLD_PV_BINS]: negatives then positives */
  /* The window AUC of the last _get, valid while n == auc_at_n: a scrape
   * renders several families from one (task, scenario), and a page rendered
   * while no sample arrived must not sort the window again. */
  uint64_t auc_at_n;
  double auc_window;
} pv_acc_t;

struct mtld_pvmetrics {
  int n_tasks;
  int *is_reg;
  char (*task_name)[MTLD_NAME_MAX];
  uint32_t window;
  int max_scen, n_scen, other_used;
  uint64_t *scen_id;
  char (*scen_name)[MTLD_SCENARIO_MAX];
  pv_acc_t *acc; /* [n_tasks][max_scen + 2]: all, scenarios..., other */
};

static pv_acc_t *acc_at(const mtld_pvmetrics_t *m, int task, int scen) {
  int slot = scen == MTLD_PV_ALL ? 0 : 1 + scen;
  return &m->acc[(size_t)task * (m->max_scen + 2) + slot];
}

mtld_status_t mtld_pvmetrics_create(mtld_pvmetrics_t **out, int n_tasks, const int *is_regression,
                                    const char *const *names, uint32_t window, int max_scenarios,
                                    char *err, size_t errlen) {
  *out = NULL;
  if (n_tasks <= 0 || window == 0 || max_scenarios < 0) {
    snprintf(err, errlen, "pvmetrics: need tasks > 0 and window > 0");
    return MTLD_ERR_INVALID;
  }
  mtld_pvmetrics_t *m = calloc(1, sizeof(*m));
  if (!m) goto nomem;
  m->n_tasks = n_tasks;
  m->window = window;
  m->max_scen = max_scenarios;
  m->is_reg = calloc((size_t)n_tasks, sizeof(int));
  m->task_name = calloc((size_t)n_tasks, sizeof(*m->task_name));
  m->scen_id = calloc((size_t)max_scenarios + 1, sizeof(uint64_t));
  m->scen_name = calloc((size_t)max_scenarios + 1, sizeof(*m->scen_name));
  m->acc = calloc((size_t)n_tasks * (max_scenarios + 2), sizeof(pv_acc_t));
  if (!m->is_reg || !m->task_name || !m->scen_id || !m->scen_name || !m->acc) goto nomem;
  for (int t = 0; t < n_tasks; t++) {
    m->is_reg[t] = is_regression[t] != 0;
    snprintf(m->task_name[t], MTLD_NAME_MAX, "%s", names[t]);
  }
  *out = m;
  return MTLD_OK;
nomem:
  mtld_pvmetrics_destroy(m);
  snprintf(err, errlen, "pvmetrics: out of memory");
  return MTLD_ERR_NOMEM;
}

void mtld_pvmetrics_destroy(mtld_pvmetrics_t *m) {
  if (!m) return;
  if (m->acc) {
    for (size_t i = 0; i < (size_t)m->n_tasks * (m->max_scen + 2); i++) {
      free(m->acc[i].ring);
      free(m->acc[i].ring_y);
      free(m->acc[i].hist);
    }
  }
  free(m->acc);
  free(m->is_reg);
  free(m->task_name);
  free(m->scen_id);
  free(m->scen_name);
  free(m);
}

int mtld_pvmetrics_scenario(mtld_pvmetrics_t *m, uint64_t scenario_id, const char *name) {
  for (int i = 0; i < m->n_scen; i++)
    if (m->scen_id[i] == scenario_id) return i;
  if (m->n_scen < m->max_scen) {
    m->scen_id[m->n_scen] = scenario_id;
    if (name && name[0])
      snprintf(m->scen_name[m->n_scen], MTLD_SCENARIO_MAX, "%s", name);
    else
      snprintf(m->scen_name[m->n_scen], MTLD_SCENARIO_MAX, "%llu", (unsigned long long)scenario_id);
    return m->n_scen++;
  }
  m->other_used = 1;
  return m->max_scen;
}

static int bin_of(float p) {
  double q = p < 1e-12f ? 1e-12 : (p > 1.0f - 1e-7f ? 1.0 - 1e-7 : (double)p);
  double z = log(q / (1.0 - q));
  int b = (int)((z + LOGIT_RANGE) / (2.0 * LOGIT_RANGE) * MTLD_PV_BINS);
  return b < 0 ? 0 : (b >= MTLD_PV_BINS ? MTLD_PV_BINS - 1 : b);
}

static void acc_add(pv_acc_t *a, uint32_t window, int is_reg, float pred, float label) {
  a->n++;
  a->sum_pred += pred;
  a->sum_label += label;
  a->sum_se += ((double)pred - label) * ((double)pred - label);
  a->sum_ae += fabs((double)pred - label);
  if (is_reg) return;
  int pos = label > 0.5f;
  a->n_pos += (uint64_t)pos;
  double p = pred < 1e-7f ? 1e-7 : (pred > 1.0f - 1e-7f ? 1.0 - 1e-7 : (double)pred);
  a->sum_ll -= pos ? log(p) : log(1.0 - p);
  if (!a->hist) {
    a->hist = calloc(2 * MTLD_PV_BINS, sizeof(uint64_t));
    if (!a->hist) return; /* metrics degrade (AUC stays NAN), training goes on */
  }
  a->hist[(size_t)pos * MTLD_PV_BINS + bin_of(pred)]++;
  if (a->len == a->cap && a->cap < window) {
    uint32_t cap = a->cap ? a->cap * 2 : 1024;
    if (cap > window) cap = window;
    float *r = realloc(a->ring, sizeof(float) * cap);
    if (r) a->ring = r;
    uint8_t *ry = realloc(a->ring_y, cap);
    if (ry) a->ring_y = ry;
    if (r && ry) a->cap = cap; /* ring is not yet wrapped: len == cap, head == 0 */
  }
  if (a->len < a->cap) {
    a->ring[a->len] = pred;
    a->ring_y[a->len] = (uint8_t)pos;
    a->len++;
  } else if (a->cap == window) {
    a->ring[a->head] = pred;
    a->ring_y[a->head] = (uint8_t)pos;
    a->head = (a->head + 1) % a->cap;
  }
}

void mtld_pvmetrics_add(mtld_pvmetrics_t *m, int task, int scen, float pred, float label) {
  int reg = m->is_reg[task];
  acc_add(acc_at(m, task, MTLD_PV_ALL), m->window, reg, pred, label);
  acc_add(acc_at(m, task, scen), m->window, reg, pred, label);
}

void mtld_pvmetrics_add_baselines(mtld_pvmetrics_t *m, int task, int scen, const float *base,
                                  float label) {
  pv_acc_t *acc[2] = {acc_at(m, task, MTLD_PV_ALL), acc_at(m, task, scen)};
  for (int a = 0; a < 2; a++) {
    acc[a]->n_base++;
    for (int k = 0; k < MTLD_BASE_COUNT; k++)
      acc[a]->sum_se_base[k] += ((double)base[k] - label) * ((double)base[k] - label);
  }
}

typedef struct {
  float p;
  uint8_t y;
} pv_pair_t;

/* Order-preserving map of a float to an unsigned key (negatives reversed). */
static uint32_t float_key(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Sorts v[0..n) by p ascending: LSD radix sort on the float's key in two
 * 16-bit passes (O(n), the window is re-sorted on every scrape), tmp has n
 * slots.  Equal p stay adjacent (-0 and +0 too), which is all auc_pairs
 * needs. */
static void sort_pairs(pv_pair_t *v, pv_pair_t *tmp, size_t n) {
  static const int BITS = 16;
  size_t *count = calloc((size_t)1 << BITS, sizeof(size_t));
  if (!count) return;
  pv_pair_t *src = v, *dst = tmp;
  for (int pass = 0; pass < 2; pass++) {
    int shift = pass * BITS;
    memset(count, 0, sizeof(size_t) << BITS);
    for (size_t i = 0; i < n; i++) count[(float_key(src[i].p) >> shift) & 0xffffu]++;
    size_t sum = 0;
    for (size_t b = 0; b < ((size_t)1 << BITS); b++) {
      size_t c = count[b];
      count[b] = sum;
      sum += c;
    }
    for (size_t i = 0; i < n; i++) dst[count[(float_key(src[i].p) >> shift) & 0xffffu]++] = src[i];
    pv_pair_t *t = src;
    src = dst;
    dst = t;
  }
  free(count); /* two passes: the result is back in v */
}

/* Exact rank AUC of v[0..n) (sorted in place; tmp: n scratch slots). */
static double auc_pairs(pv_pair_t *v, pv_pair_t *tmp, size_t n) {
  sort_pairs(v, tmp, n);
  double rank_pos = 0.0, npos = 0.0;
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    double pos_in_tie = 0.0;
    while (j < n && v[j].p == v[i].p) pos_in_tie += v[j++].y;
    rank_pos += pos_in_tie * (((double)i + 1.0 + (double)j) / 2.0); /* mid rank, 1-based */
    npos += pos_in_tie;
    i = j;
  }
  double nneg = (double)n - npos;
  if (npos == 0.0 || nneg == 0.0) return NAN;
  return (rank_pos - npos * (npos + 1.0) / 2.0) / (npos * nneg);
}

double mtld_auc_exact(const float *pred, const float *label, size_t n) {
  pv_pair_t *v = malloc(sizeof(*v) * 2 * (n ? n : 1));
  if (!v) return NAN;
  for (size_t i = 0; i < n; i++) {
    v[i].p = pred[i];
    v[i].y = label[i] > 0.5f;
  }
  double auc = auc_pairs(v, v + n, n);
  free(v);
  return auc;
}

static double auc_hist(const uint64_t *h) {
  const uint64_t *neg = h, *pos = h + MTLD_PV_BINS;
  double below = 0.0, num = 0.0, np = 0.0;
  for (int b = 0; b < MTLD_PV_BINS; b++) {
    num += (double)pos[b] * (below + 0.5 * (double)neg[b]);
    below += (double)neg[b];
    np += (double)pos[b];
  }
  if (np == 0.0 || below == 0.0) return NAN;
  return num / (np * below);
}

mtld_status_t mtld_pvmetrics_pooled_auc(const mtld_pvmetrics_t *const *ms, int n, int task,
                                        double *auc_cum, double *auc_window) {
  *auc_cum = *auc_window = NAN;
  size_t len = 0;
  for (int i = 0; i < n; i++) {
    if (task < 0 || task >= ms[i]->n_tasks || ms[i]->is_reg[task]) return MTLD_ERR_INVALID;
    len += acc_at(ms[i], task, MTLD_PV_ALL)->len;
  }
  uint64_t *h = calloc(2 * MTLD_PV_BINS, sizeof(uint64_t));
  pv_pair_t *v = malloc(sizeof(*v) * 2 * (len ? len : 1));
  if (!h || !v) {
    free(h);
    free(v);
    return MTLD_ERR_NOMEM;
  }
  size_t k = 0;
  for (int i = 0; i < n; i++) {
    const pv_acc_t *a = acc_at(ms[i], task, MTLD_PV_ALL);
    if (a->hist)
      for (int b = 0; b < 2 * MTLD_PV_BINS; b++) h[b] += a->hist[b];
    for (uint32_t j = 0; j < a->len; j++, k++) {
      v[k].p = a->ring[j];
      v[k].y = a->ring_y[j];
    }
  }
  *auc_cum = auc_hist(h);
  if (len) *auc_window = auc_pairs(v, v + len, len);
  free(h);
  free(v);
  return MTLD_OK;
}

mtld_status_t mtld_pvmetrics_get(const mtld_pvmetrics_t *m, int task, int scen,
                                 mtld_pv_summary_t *out) {
  if (task < 0 || task >= m->n_tasks || scen < MTLD_PV_ALL || scen > m->max_scen)
    return MTLD_ERR_INVALID;
  pv_acc_t *a = acc_at(m, task, scen); /* only its AUC cache changes */
  int reg = m->is_reg[task];
  double n = (double)a->n;
  memset(out, 0, sizeof(*out));
  out->n = a->n;
  out->n_pos = a->n_pos;
  out->mean_pred = n ? a->sum_pred / n : NAN;
  out->mean_label = n ? a->sum_label / n : NAN;
  out->calibration = a->sum_label != 0.0 ? a->sum_pred / a->sum_label : NAN;
  out->rmse = n ? sqrt(a->sum_se / n) : NAN;
  out->mae = n ? a->sum_ae / n : NAN;
  for (int k = 0; k < MTLD_BASE_COUNT; k++)
    out->rmse_base[k] = a->n_base ? sqrt(a->sum_se_base[k] / (double)a->n_base) : NAN;
  out->logloss = reg || !n ? NAN : a->sum_ll / n;
  out->auc_cum = reg || !a->hist ? NAN : auc_hist(a->hist);
  out->auc_window = NAN;
  if (!reg && a->len && a->auc_at_n == a->n) {
    out->auc_window = a->auc_window;
  } else if (!reg && a->len) {
    pv_pair_t *v = malloc(sizeof(*v) * 2 * a->len);
    if (!v) return MTLD_ERR_NOMEM;
    for (uint32_t i = 0; i < a->len; i++) {
      v[i].p = a->ring[i];
      v[i].y = a->ring_y[i];
    }
    out->auc_window = auc_pairs(v, v + a->len, a->len);
    free(v);
    a->auc_window = out->auc_window;
    a->auc_at_n = a->n;
  }
  return MTLD_OK;
}

int mtld_pvmetrics_n_scenarios(const mtld_pvmetrics_t *m) {
  return m->n_scen + (m->other_used ? 1 : 0);
}

const char *mtld_pvmetrics_scenario_name(const mtld_pvmetrics_t *m, int scen) {
  if (scen == MTLD_PV_ALL) return "all";
  if (scen >= 0 && scen < m->n_scen) return m->scen_name[scen];
  return "other";
}

static void print_line(const mtld_pvmetrics_t *m, FILE *f, int t, int scen) {
  mtld_pv_summary_t s;
  int idx = scen;
  if (scen >= m->n_scen && scen != MTLD_PV_ALL) idx = m->max_scen; /* "other" */
  if (mtld_pvmetrics_get(m, t, idx, &s) != MTLD_OK || s.n == 0) return;
  if (m->is_reg[t]) {
    fprintf(f,
            "task=%s scenario=%s n=%llu rmse=%.4f mae=%.4f mean_pred=%.4f mean_label=%.4f "
            "calib=%.4f",
            m->task_name[t], mtld_pvmetrics_scenario_name(m, idx), (unsigned long long)s.n, s.rmse,
            s.mae, s.mean_pred, s.mean_label, s.calibration);
    for (int k = 0; k < MTLD_BASE_COUNT; k++)
      if (!isnan(s.rmse_base[k]))
        fprintf(f, " rmse_%s=%.4f", mtld_baseline_name(k), s.rmse_base[k]);
    fputc('\n', f);
  } else
    fprintf(f,
            "task=%s scenario=%s n=%llu pos=%llu auc_window=%.4f auc_cum=%.4f logloss=%.4f "
            "calib=%.4f rmse=%.4f\n",
            m->task_name[t], mtld_pvmetrics_scenario_name(m, idx), (unsigned long long)s.n,
            (unsigned long long)s.n_pos, s.auc_window, s.auc_cum, s.logloss, s.calibration, s.rmse);
}

void mtld_pvmetrics_print(const mtld_pvmetrics_t *m, FILE *f, int per_scenario) {
  for (int t = 0; t < m->n_tasks; t++) print_line(m, f, t, MTLD_PV_ALL);
  if (!per_scenario) return;
  for (int t = 0; t < m->n_tasks; t++)
    for (int s = 0; s < mtld_pvmetrics_n_scenarios(m); s++) print_line(m, f, t, s);
}

/* Rings are saved in age order (oldest first) so a restored ring has head 0. */
void mtld_pvmetrics_save(const mtld_pvmetrics_t *m, mtld_wr_t *w) {
  MTLD_WR(w, m->n_scen);
  MTLD_WR(w, m->other_used);
  mtld_wr_bytes(w, m->scen_id, sizeof(uint64_t) * (size_t)m->n_scen);
  mtld_wr_bytes(w, m->scen_name, sizeof(*m->scen_name) * (size_t)m->n_scen);
  for (size_t i = 0; i < (size_t)m->n_tasks * (m->max_scen + 2); i++) {
    const pv_acc_t *a = &m->acc[i];
    MTLD_WR(w, a->n);
    MTLD_WR(w, a->n_pos);
    MTLD_WR(w, a->sum_pred);
    MTLD_WR(w, a->sum_label);
    MTLD_WR(w, a->sum_ll);
    MTLD_WR(w, a->sum_se);
    MTLD_WR(w, a->sum_ae);
    MTLD_WR(w, a->n_base);
    MTLD_WR(w, a->sum_se_base);
    MTLD_WR(w, a->len);
    for (uint32_t k = 0; k < a->len; k++) {
      uint32_t j = (a->head + k) % a->len;
      mtld_wr_bytes(w, &a->ring[j], sizeof(float));
      mtld_wr_bytes(w, &a->ring_y[j], 1);
    }
    uint8_t has_hist = a->hist != NULL;
    MTLD_WR(w, has_hist);
    if (has_hist) mtld_wr_bytes(w, a->hist, sizeof(uint64_t) * 2 * MTLD_PV_BINS);
  }
}

void mtld_pvmetrics_load(mtld_pvmetrics_t *m, mtld_rd_t *r) {
  MTLD_RD(r, m->n_scen);
  MTLD_RD(r, m->other_used);
  if (m->n_scen < 0 || m->n_scen > m->max_scen) {
    r->st = MTLD_ERR_CORRUPT;
    return;
  }
  mtld_rd_bytes(r, m->scen_id, sizeof(uint64_t) * (size_t)m->n_scen);
  mtld_rd_bytes(r, m->scen_name, sizeof(*m->scen_name) * (size_t)m->n_scen);
  for (int i = 0; i < m->n_scen; i++) m->scen_name[i][MTLD_SCENARIO_MAX - 1] = 0;
  for (size_t i = 0; i < (size_t)m->n_tasks * (m->max_scen + 2) && r->st == MTLD_OK; i++) {
    pv_acc_t *a = &m->acc[i];
    a->auc_at_n = UINT64_MAX; /* the cached window AUC is not the loaded window's */
    MTLD_RD(r, a->n);
    MTLD_RD(r, a->n_pos);
    MTLD_RD(r, a->sum_pred);
    MTLD_RD(r, a->sum_label);
    MTLD_RD(r, a->sum_ll);
    MTLD_RD(r, a->sum_se);
    MTLD_RD(r, a->sum_ae);
    MTLD_RD(r, a->n_base);
    MTLD_RD(r, a->sum_se_base);
    uint32_t len = 0;
    MTLD_RD(r, len);
    if (len > m->window) {
      r->st = MTLD_ERR_CORRUPT;
      return;
    }
    free(a->ring);
    free(a->ring_y);
    a->ring = NULL;
    a->ring_y = NULL;
    a->cap = a->len = a->head = 0;
    if (len) {
      a->ring = malloc(sizeof(float) * len);
      a->ring_y = malloc(len);
      if (!a->ring || !a->ring_y) {
        r->st = MTLD_ERR_NOMEM;
        return;
      }
      a->cap = a->len = len;
      for (uint32_t k = 0; k < len; k++) {
        mtld_rd_bytes(r, &a->ring[k], sizeof(float));
        mtld_rd_bytes(r, &a->ring_y[k], 1);
      }
    }
    uint8_t has_hist = 0;
    MTLD_RD(r, has_hist);
    if (has_hist) {
      if (!a->hist) a->hist = calloc(2 * MTLD_PV_BINS, sizeof(uint64_t));
      if (!a->hist) {
        r->st = MTLD_ERR_NOMEM;
        return;
      }
      mtld_rd_bytes(r, a->hist, sizeof(uint64_t) * 2 * MTLD_PV_BINS);
    }
  }
}

void mtld_pvmetrics_render(const mtld_pvmetrics_t *m, mtld_metrics_buf_t *b) {
  static const struct {
    const char *name, *help;
    int binary_only;
  } fam[7] = {{"mtld_pv_auc", "Progressive AUC over the sliding window, per task and scenario.", 1},
              {"mtld_pv_auc_cumulative", "Progressive AUC since start (histogram).", 1},
              {"mtld_pv_logloss", "Progressive mean log loss.", 1},
              {"mtld_pv_calibration", "Mean prediction / mean label (1 = calibrated).", 0},
              {"mtld_pv_rmse", "Progressive RMSE.", 0},
              {"mtld_pv_samples", "Samples scored, per task and scenario.", 0},
              {"mtld_pv_mae", "Progressive mean absolute error (regression tasks).", -1}};
  int ns = mtld_pvmetrics_n_scenarios(m), per_task = ns + 1;
  /* one summary per (task, scenario), computed once for the seven families */
  mtld_pv_summary_t *sum = calloc((size_t)m->n_tasks * (size_t)per_task, sizeof(*sum));
  int *ok = calloc((size_t)m->n_tasks * (size_t)per_task, sizeof(*ok));
  if (!sum || !ok) {
    free(sum);
    free(ok);
    mtld_metrics_buf_fail(b, MTLD_ERR_NOMEM);
    return;
  }
  for (int t = 0; t < m->n_tasks; t++)
    for (int sc = MTLD_PV_ALL; sc < ns; sc++) {
      size_t i = (size_t)t * per_task + (size_t)(sc + 1);
      ok[i] = mtld_pvmetrics_get(m, t, sc, &sum[i]) == MTLD_OK;
    }
  for (int k = 0; k < 7; k++) {
    mtld_metrics_family(b, fam[k].name, "gauge", fam[k].help);
    for (int t = 0; t < m->n_tasks; t++) {
      if (fam[k].binary_only > 0 && m->is_reg[t]) continue;
      if (fam[k].binary_only < 0 && !m->is_reg[t]) continue;
      for (int sc = MTLD_PV_ALL; sc < ns; sc++) {
        size_t i = (size_t)t * per_task + (size_t)(sc + 1);
        if (!ok[i]) continue;
        const mtld_pv_summary_t *s = &sum[i];
        double v = k == 0   ? s->auc_window
                   : k == 1 ? s->auc_cum
                   : k == 2 ? s->logloss
                   : k == 3 ? s->calibration
                   : k == 4 ? s->rmse
                   : k == 5 ? (double)s->n
                            : s->mae;
        mtld_metrics_label_t l[2] = {
            {"task", m->task_name[t]},
            {"scenario", sc == MTLD_PV_ALL ? "_all" : mtld_pvmetrics_scenario_name(m, sc)}};
        mtld_metrics_sample_kv(b, fam[k].name, l, 2, v);
      }
    }
  }
  /* the rating baselines' RMSE, beside the model's (mtld_pv_rmse) */
  mtld_metrics_family(b, "mtld_pv_baseline_rmse", "gauge",
                      "Progressive RMSE of the rating baselines (each rating predicted from "
                      "earlier ones), per regression task, scenario and baseline.");
  for (int t = 0; t < m->n_tasks; t++) {
    if (!m->is_reg[t]) continue;
    for (int sc = MTLD_PV_ALL; sc < ns; sc++) {
      size_t i = (size_t)t * per_task + (size_t)(sc + 1);
      if (!ok[i]) continue;
      for (int k = 0; k < MTLD_BASE_COUNT; k++) {
        mtld_metrics_label_t l[3] = {
            {"task", m->task_name[t]},
            {"scenario", sc == MTLD_PV_ALL ? "_all" : mtld_pvmetrics_scenario_name(m, sc)},
            {"baseline", mtld_baseline_name(k)}};
        mtld_metrics_sample_kv(b, "mtld_pv_baseline_rmse", l, 3, sum[i].rmse_base[k]);
      }
    }
  }
  free(sum);
  free(ok);
}
