/* baseline.c - progressive rating baselines (see baseline.h). */
#include "trainer/baseline.h"

#include <stdlib.h>
#include <string.h>

#include "common/hash.h"

typedef struct {
  double sum;     /* labels (items) or residuals after mean + item bias (users) */
  double sum_res; /* items: residuals after the global mean */
  uint32_t n;
} row_t;

typedef struct {
  double sum;
  uint64_t n;
  float prior;
  row_t *items, *users; /* [MTLD_BASE_ROWS] each; NULL for non-regression tasks */
} task_base_t;

struct mtld_baseline {
  int n_tasks;
  task_base_t *t;
};

static const char *const NAMES[MTLD_BASE_COUNT] = {"global_mean", "item_mean", "item_smoothed",
                                                   "biases"};

const char *mtld_baseline_name(int k) {
  return k >= 0 && k < MTLD_BASE_COUNT ? NAMES[k] : "?";
}

mtld_status_t mtld_baseline_create(mtld_baseline_t **out, int n_tasks, const int *is_regression,
                                   const float *prior) {
  *out = NULL;
  mtld_baseline_t *b = calloc(1, sizeof(*b));
  if (!b) return MTLD_ERR_NOMEM;
  b->n_tasks = n_tasks;
  b->t = calloc((size_t)n_tasks, sizeof(*b->t));
  if (!b->t) goto nomem;
  for (int k = 0; k < n_tasks; k++) {
    b->t[k].prior = prior[k];
    if (!is_regression[k]) continue;
    b->t[k].items = calloc(MTLD_BASE_ROWS, sizeof(row_t));
    b->t[k].users = calloc(MTLD_BASE_ROWS, sizeof(row_t));
    if (!b->t[k].items || !b->t[k].users) goto nomem;
  }
  *out = b;
  return MTLD_OK;
nomem:
  mtld_baseline_destroy(b);
  return MTLD_ERR_NOMEM;
}

void mtld_baseline_destroy(mtld_baseline_t *b) {
  if (!b) return;
  for (int k = 0; b->t && k < b->n_tasks; k++) {
    free(b->t[k].items);
    free(b->t[k].users);
  }
  free(b->t);
  free(b);
}

static size_t row_of(uint64_t id) {
  return (size_t)(mtld_mix64(id) & (MTLD_BASE_ROWS - 1));
}

/* The three terms every predictor is made of, from past labels. */
static void terms(const task_base_t *t, uint64_t user, uint64_t item, double *mu, double *bi,
                  double *bu) {
  *mu = t->n ? t->sum / (double)t->n : t->prior;
  const row_t *ri = &t->items[row_of(item)], *ru = &t->users[row_of(user)];
  *bi = ri->sum_res / (ri->n + MTLD_BASE_SHRINK);
  *bu = ru->sum / (ru->n + MTLD_BASE_SHRINK);
}

void mtld_baseline_predict(const mtld_baseline_t *b, int task, uint64_t user, uint64_t item,
                           float *pred) {
  const task_base_t *t = &b->t[task];
  if (!t->items) {
    for (int k = 0; k < MTLD_BASE_COUNT; k++) pred[k] = t->prior;
    return;
  }
  double mu, bi, bu;
  terms(t, user, item, &mu, &bi, &bu);
  const row_t *ri = &t->items[row_of(item)];
  pred[MTLD_BASE_GLOBAL_MEAN] = (float)mu;
  pred[MTLD_BASE_ITEM_MEAN] = ri->n ? (float)(ri->sum / ri->n) : (float)mu;
  pred[MTLD_BASE_ITEM_SMOOTHED] =
      (float)((ri->sum + MTLD_BASE_SHRINK * mu) / (ri->n + MTLD_BASE_SHRINK));
  pred[MTLD_BASE_BIASES] = (float)(mu + bi + bu);
}

void mtld_baseline_add(mtld_baseline_t *b, int task, uint64_t user, uint64_t item, float label) {
  task_base_t *t = &b->t[task];
  if (!t->items) return;
  double mu, bi, bu;
  terms(t, user, item, &mu, &bi, &bu);
  row_t *ri = &t->items[row_of(item)], *ru = &t->users[row_of(user)];
  ri->sum += label;
  ri->sum_res += label - mu;
  ri->n++;
  ru->sum += label - mu - bi;
  ru->n++;
  t->sum += label;
  t->n++;
}

size_t mtld_baseline_memory_bytes(const mtld_baseline_t *b) {
  size_t n = sizeof(*b) + sizeof(*b->t) * (size_t)b->n_tasks;
  for (int k = 0; k < b->n_tasks; k++)
    if (b->t[k].items) n += 2 * sizeof(row_t) * MTLD_BASE_ROWS;
  return n;
}

/* A table as (count, then (row, value) for rows with data). */
static void save_rows(const row_t *rows, mtld_wr_t *w) {
  uint32_t used = 0;
  for (uint32_t i = 0; i < MTLD_BASE_ROWS; i++) used += rows[i].n != 0;
  MTLD_WR(w, used);
  for (uint32_t i = 0; i < MTLD_BASE_ROWS; i++) {
    if (!rows[i].n) continue;
    MTLD_WR(w, i);
    MTLD_WR(w, rows[i].sum);
    MTLD_WR(w, rows[i].sum_res);
    MTLD_WR(w, rows[i].n);
  }
}

static void load_rows(row_t *rows, mtld_rd_t *r) {
  uint32_t used = 0;
  MTLD_RD(r, used);
  if (used > MTLD_BASE_ROWS) r->st = MTLD_ERR_CORRUPT;
  memset(rows, 0, sizeof(row_t) * MTLD_BASE_ROWS);
  for (uint32_t k = 0; k < used && r->st == MTLD_OK; k++) {
    uint32_t i = 0;
    MTLD_RD(r, i);
    if (i >= MTLD_BASE_ROWS) {
      r->st = MTLD_ERR_CORRUPT;
      return;
    }
    MTLD_RD(r, rows[i].sum);
    MTLD_RD(r, rows[i].sum_res);
    MTLD_RD(r, rows[i].n);
  }
}

void mtld_baseline_save(const mtld_baseline_t *b, mtld_wr_t *w) {
  for (int k = 0; k < b->n_tasks; k++) {
    const task_base_t *t = &b->t[k];
    MTLD_WR(w, t->sum);
    MTLD_WR(w, t->n);
    if (!t->items) continue;
    save_rows(t->items, w);
    save_rows(t->users, w);
  }
}

void mtld_baseline_load(mtld_baseline_t *b, mtld_rd_t *r) {
  for (int k = 0; k < b->n_tasks && r->st == MTLD_OK; k++) {
    task_base_t *t = &b->t[k];
    MTLD_RD(r, t->sum);
    MTLD_RD(r, t->n);
    if (!t->items) continue;
    load_rows(t->items, r);
    load_rows(t->users, r);
  }
}
