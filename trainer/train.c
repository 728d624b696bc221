/* train.c - the online trainer: progressive validation, fixed-size
 * minibatches, checkpoint state (see train.h). */
#include "trainer/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "trainer/serial.h"

struct mtld_trainer {
  mtld_model_config_t cfg;
  mtld_model_t *model;
  mtld_pvmetrics_t *metrics;
  mtld_trainer_pv_rows_t rows; /* metric rows: tasks, then chained-task baselines */
  uint64_t chain_pos[MTLD_TRAINER_PV_MAX_ROWS];        /* baseline rows: label positives */
  uint64_t chain_parent_pos[MTLD_TRAINER_PV_MAX_ROWS]; /* and parent label positives */
  mtld_baseline_t *base; /* rating baselines, scored next to the model */
  mtld_rank_t *rank;     /* ranking evaluation of clicks, or NULL */
  mtld_sample_t *batch;  /* [batch_size] */
  int n_batch;
  mtld_trainer_stats_t stats;
};

mtld_status_t mtld_trainer_create(mtld_trainer_t **out, const mtld_model_config_t *cfg, char *err,
                                  size_t errlen) {
  *out = NULL;
  mtld_trainer_t *t = calloc(1, sizeof(*t));
  if (!t) {
    snprintf(err, errlen, "trainer: out of memory");
    return MTLD_ERR_NOMEM;
  }
  memcpy(&t->cfg, cfg, sizeof(*cfg));
  mtld_status_t st = mtld_model_create(&t->model, cfg, err, errlen);
  if (st != MTLD_OK) {
    mtld_trainer_destroy(t);
    return st;
  }
  int is_reg[MTLD_MAX_TASKS];
  for (int k = 0; k < cfg->n_tasks; k++) is_reg[k] = cfg->tasks[k].type == MTLD_TASK_REGRESSION;
  mtld_trainer_pv_rows(cfg, &t->rows);
  st = mtld_pvmetrics_create(&t->metrics, t->rows.n, t->rows.is_reg, t->rows.name_ptrs,
                             cfg->pv_window, cfg->pv_max_scenarios, err, errlen);
  if (st != MTLD_OK) {
    mtld_trainer_destroy(t);
    return st;
  }
  float prior[MTLD_MAX_TASKS];
  for (int k = 0; k < cfg->n_tasks; k++) prior[k] = cfg->tasks[k].bias_init;
  if (mtld_baseline_create(&t->base, cfg->n_tasks, is_reg, prior) != MTLD_OK) {
    mtld_trainer_destroy(t);
    snprintf(err, errlen, "trainer: out of memory");
    return MTLD_ERR_NOMEM;
  }
  t->batch = calloc((size_t)cfg->batch_size, sizeof(mtld_sample_t));
  if (!t->batch) {
    mtld_trainer_destroy(t);
    snprintf(err, errlen, "trainer: out of memory");
    return MTLD_ERR_NOMEM;
  }
  *out = t;
  return MTLD_OK;
}

void mtld_trainer_destroy(mtld_trainer_t *t) {
  if (!t) return;
  mtld_model_destroy(t->model);
  mtld_pvmetrics_destroy(t->metrics);
  mtld_baseline_destroy(t->base);
  mtld_rank_destroy(t->rank);
  free(t->batch);
  free(t);
}

/* Scores the buffered batch into the metrics (forward = the model before this
 * batch's update), then learns from it. */
static void train_buffered(mtld_trainer_t *t) {
  int n = t->n_batch;
  if (n == 0) return;
  const mtld_model_config_t *c = &t->cfg;
  /* ranking first: its forward passes must not come between the batch's
   * forward and backward; the model is the same (before this batch) */
  if (t->rank) mtld_rank_observe(t->rank, t->model, t->batch, n);
  double loss = mtld_model_forward(t->model, t->batch, n);
  const float *preds = mtld_model_preds(t->model);
  for (int b = 0; b < n; b++) {
    const mtld_sample_t *s = &t->batch[b];
    uint64_t sid = s->scenario_id;
    if (sid == 0 && c->scenario_field >= 0 && c->scenario_field < s->n_fields)
      sid = s->fields[c->scenario_field];
    char name[MTLD_SCENARIO_MAX];
    memcpy(name, s->scenario, sizeof(name));
    name[sizeof(name) - 1] = 0;
    int scen = mtld_pvmetrics_scenario(t->metrics, sid, name);
    for (int k = 0; k < c->n_tasks; k++) {
      int label = c->tasks[k].label;
      if (!((s->label_mask >> label) & 1)) continue;
      mtld_pvmetrics_add(t->metrics, k, scen, preds[b * c->n_tasks + k], s->labels[label]);
      if (c->tasks[k].type != MTLD_TASK_REGRESSION) continue;
      /* the baselines, also from past labels only, sample by sample */
      uint64_t user = s->n_fields > MTLD_FIELD_USER ? s->fields[MTLD_FIELD_USER] : 0;
      uint64_t item = s->n_fields > MTLD_FIELD_ITEM ? s->fields[MTLD_FIELD_ITEM] : 0;
      float base[MTLD_BASE_COUNT];
      mtld_baseline_predict(t->base, k, user, item, base);
      mtld_pvmetrics_add_baselines(t->metrics, k, scen, base, s->labels[label]);
      mtld_baseline_add(t->base, k, user, item, s->labels[label]);
    }
    /* chained tasks' baselines: parent prediction * running rate */
    for (int r = c->n_tasks; r < t->rows.n; r++) {
      int k = t->rows.task[r], label = c->tasks[k].label;
      if (!((s->label_mask >> label) & 1)) continue;
      if (t->rows.naive[r] >= 0) { /* demand: the sample's naive forecast */
        mtld_pvmetrics_add(t->metrics, r, scen, s->naive[t->rows.naive[r]], s->labels[label]);
        continue;
      }
      int plabel = c->tasks[c->tasks[k].parent].label;
      double rate = (t->chain_pos[r] + 1.0) / (t->chain_parent_pos[r] + 2.0);
      float base = (float)(preds[b * c->n_tasks + c->tasks[k].parent] * rate);
      mtld_pvmetrics_add(t->metrics, r, scen, base, s->labels[label]);
      t->chain_pos[r] += s->labels[label] > 0.5f;
      t->chain_parent_pos[r] += ((s->label_mask >> plabel) & 1) && s->labels[plabel] > 0.5f;
    }
  }
  mtld_model_backward(t->model);
  mtld_model_update(t->model, t->batch, n);
  t->stats.trained += (uint64_t)n;
  t->stats.batches++;
  t->stats.last_loss = loss;
  t->n_batch = 0;
}

mtld_status_t mtld_trainer_observe(mtld_trainer_t *t, const mtld_sample_t *s, float *pred_out) {
  int ok = isfinite(s->weight) && s->weight >= 0.0f;
  for (int l = 0; l < MTLD_N_LABELS; l++)
    if (((s->label_mask >> l) & 1) && !isfinite(s->labels[l])) ok = 0;
  if (!ok) {
    t->stats.rejected++;
    return MTLD_ERR_INVALID;
  }
  if (pred_out) mtld_model_predict(t->model, s, pred_out, NULL);
  t->batch[t->n_batch++] = *s;
  t->stats.observed++;
  if (t->n_batch == t->cfg.batch_size) train_buffered(t);
  return MTLD_OK;
}

void mtld_trainer_flush(mtld_trainer_t *t) {
  train_buffered(t);
}

void mtld_trainer_predict(mtld_trainer_t *t, const mtld_sample_t *s, float *preds, float *cond) {
  mtld_model_predict(t->model, s, preds, cond);
}

mtld_status_t mtld_trainer_set_ranking(mtld_trainer_t *t, const mtld_rank_config_t *cfg, char *err,
                                       size_t errlen) {
  mtld_rank_t *r = NULL;
  mtld_status_t st = mtld_rank_create(&r, cfg, err, errlen);
  if (st != MTLD_OK) return st;
  mtld_rank_destroy(t->rank);
  t->rank = r;
  return MTLD_OK;
}

mtld_rank_t *mtld_trainer_ranking(mtld_trainer_t *t) {
  return t->rank;
}

mtld_status_t mtld_trainer_set_lr(mtld_trainer_t *t, float lr, float emb_lr) {
  mtld_status_t st = mtld_model_set_lr(t->model, lr, emb_lr);
  if (st == MTLD_OK) {
    t->cfg.lr = lr;
    t->cfg.emb.lr = emb_lr;
  }
  return st;
}

mtld_status_t mtld_trainer_set_loss_weight(mtld_trainer_t *t, int task, float w) {
  mtld_status_t st = mtld_model_set_loss_weight(t->model, task, w);
  if (st == MTLD_OK) t->cfg.tasks[task].loss_weight = w;
  return st;
}

void mtld_trainer_apply_reloadable(mtld_trainer_t *t, const mtld_model_config_t *mc) {
  if (mc->lr != t->cfg.lr || mc->emb.lr != t->cfg.emb.lr)
    mtld_trainer_set_lr(t, mc->lr, mc->emb.lr);
  for (int k = 0; k < mc->n_tasks; k++) {
    int i = mtld_trainer_task_index(t, mc->tasks[k].name);
    if (i >= 0 && mc->tasks[k].loss_weight != t->cfg.tasks[i].loss_weight)
      mtld_trainer_set_loss_weight(t, i, mc->tasks[k].loss_weight);
  }
}

int mtld_trainer_task_index(const mtld_trainer_t *t, const char *name) {
  for (int k = 0; k < t->cfg.n_tasks; k++)
    if (!strcmp(t->cfg.tasks[k].name, name)) return k;
  return -1;
}

void mtld_trainer_params(mtld_trainer_t *t, float **params, size_t *n) {
  mtld_model_params(t->model, params, n);
}

mtld_model_t *mtld_trainer_model(mtld_trainer_t *t) {
  return t->model;
}

mtld_pvmetrics_t *mtld_trainer_metrics(mtld_trainer_t *t) {
  return t->metrics;
}

void mtld_trainer_stats(const mtld_trainer_t *t, mtld_trainer_stats_t *out) {
  *out = t->stats;
}

int mtld_trainer_pending(const mtld_trainer_t *t) {
  return t->n_batch;
}

size_t mtld_trainer_memory_bytes(const mtld_trainer_t *t) {
  return sizeof(*t) + sizeof(mtld_sample_t) * (size_t)t->cfg.batch_size +
         mtld_model_memory_bytes(t->model) + mtld_baseline_memory_bytes(t->base) +
         (t->rank ? mtld_rank_memory_bytes(t->rank) : 0);
}

/* ---- state ---------------------------------------------------------------- */

static void save_to(const mtld_trainer_t *t, mtld_wr_t *w) {
  uint32_t version = MTLD_TRAINER_VERSION, reserved = 0;
  mtld_wr_bytes(w, MTLD_TRAINER_MAGIC, 8);
  MTLD_WR(w, version);
  MTLD_WR(w, reserved);
  MTLD_WR(w, t->cfg);
  MTLD_WR(w, t->stats);
  MTLD_WR(w, t->n_batch);
  mtld_wr_bytes(w, t->batch, sizeof(mtld_sample_t) * (size_t)t->n_batch);
  mtld_model_save(t->model, w);
  mtld_pvmetrics_save(t->metrics, w);
  mtld_baseline_save(t->base, w);
  for (int r = t->cfg.n_tasks; r < t->rows.n; r++) { /* nothing without chained tasks */
    MTLD_WR(w, t->chain_pos[r]);
    MTLD_WR(w, t->chain_parent_pos[r]);
  }
  mtld_wr_checksum(w);
}

mtld_status_t mtld_trainer_save(const mtld_trainer_t *t, FILE *f, char *err, size_t errlen) {
  mtld_wr_t w;
  mtld_status_t st = mtld_wr_open(&w, f);
  if (st == MTLD_OK) save_to(t, &w);
  st = w.st;
  mtld_wr_close(&w);
  if (st != MTLD_OK) snprintf(err, errlen, "trainer save: %s", mtld_status_str(st));
  return st;
}

mtld_status_t mtld_trainer_save_mem(const mtld_trainer_t *t, void **buf, size_t *len, char *err,
                                    size_t errlen) {
  size_t cap = 0;
  *buf = NULL;
  return mtld_trainer_resave_mem(t, buf, len, &cap, err, errlen);
}

mtld_status_t mtld_trainer_resave_mem(const mtld_trainer_t *t, void **buf, size_t *len, size_t *cap,
                                      char *err, size_t errlen) {
  mtld_wr_t w;
  *len = 0;
  mtld_status_t st = mtld_wr_open_mem(&w, *buf, *cap);
  if (st == MTLD_OK) save_to(t, &w);
  st = w.st;
  mtld_wr_close(&w);
  if (st != MTLD_OK) {
    free(w.buf);
    *buf = NULL;
    *cap = 0;
    snprintf(err, errlen, "trainer save: %s", mtld_status_str(st));
    return st;
  }
  *buf = w.buf;
  *len = w.len;
  *cap = w.cap;
  return MTLD_OK;
}

mtld_status_t mtld_trainer_load_mem(mtld_trainer_t **out, const void *buf, size_t len, char *err,
                                    size_t errlen) {
  *out = NULL;
  const unsigned char *p = buf;
  uint64_t trailer;
  if (len < 16 + sizeof(trailer) || memcmp(p, MTLD_TRAINER_MAGIC, 8) != 0) {
    snprintf(err, errlen, "trainer load: not a trainer state (bad magic)");
    return MTLD_ERR_CORRUPT;
  }
  memcpy(&trailer, p + len - sizeof(trailer), sizeof(trailer));
  if (XXH64(p, len - sizeof(trailer), 0) != trailer) {
    snprintf(err, errlen, "trainer load: checksum mismatch");
    return MTLD_ERR_CORRUPT;
  }
  mtld_rd_t r;
  mtld_status_t st = mtld_rd_open(&r, NULL, buf, len);
  if (st != MTLD_OK) {
    snprintf(err, errlen, "trainer load: out of memory");
    return st;
  }
  char magic[8];
  uint32_t version = 0, reserved = 0;
  mtld_model_config_t cfg;
  mtld_rd_bytes(&r, magic, 8);
  MTLD_RD(&r, version);
  MTLD_RD(&r, reserved);
  if (version != MTLD_TRAINER_VERSION) {
    mtld_rd_close(&r);
    snprintf(err, errlen, "trainer load: version %u, expected %u", version, MTLD_TRAINER_VERSION);
    return MTLD_ERR_SCHEMA;
  }
  MTLD_RD(&r, cfg);
  mtld_trainer_t *t = NULL;
  st = r.st != MTLD_OK ? r.st : mtld_trainer_create(&t, &cfg, err, errlen);
  if (st != MTLD_OK) {
    mtld_rd_close(&r);
    return st;
  }
  MTLD_RD(&r, t->stats);
  MTLD_RD(&r, t->n_batch);
  if (r.st == MTLD_OK && (t->n_batch < 0 || t->n_batch >= cfg.batch_size)) r.st = MTLD_ERR_CORRUPT;
  if (r.st == MTLD_OK) mtld_rd_bytes(&r, t->batch, sizeof(mtld_sample_t) * (size_t)t->n_batch);
  mtld_model_load(t->model, &r);
  mtld_pvmetrics_load(t->metrics, &r);
  mtld_baseline_load(t->base, &r);
  for (int k = t->cfg.n_tasks; k < t->rows.n; k++) {
    MTLD_RD(&r, t->chain_pos[k]);
    MTLD_RD(&r, t->chain_parent_pos[k]);
  }
  mtld_rd_checksum(&r);
  if (r.st == MTLD_OK && r.pos != len) r.st = MTLD_ERR_CORRUPT;
  st = r.st;
  mtld_rd_close(&r);
  if (st != MTLD_OK) {
    mtld_trainer_destroy(t);
    snprintf(err, errlen, "trainer load: %s", mtld_status_str(st));
    return st;
  }
  *out = t;
  return MTLD_OK;
}

mtld_status_t mtld_trainer_load(mtld_trainer_t **out, FILE *f, char *err, size_t errlen) {
  *out = NULL;
  size_t cap = 1 << 20, len = 0;
  unsigned char *buf = malloc(cap);
  for (;;) {
    if (!buf) {
      snprintf(err, errlen, "trainer load: out of memory");
      return MTLD_ERR_NOMEM;
    }
    len += fread(buf + len, 1, cap - len, f);
    if (len < cap) break;
    unsigned char *nb = realloc(buf, cap * 2);
    if (!nb) free(buf);
    buf = nb;
    cap *= 2;
  }
  if (ferror(f)) {
    free(buf);
    snprintf(err, errlen, "trainer load: read error");
    return MTLD_ERR_IO;
  }
  mtld_status_t st = mtld_trainer_load_mem(out, buf, len, err, errlen);
  free(buf);
  return st;
}

/* The ranking evaluation of clicks: the model and the popularity baseline. */
static void render_rank(const mtld_rank_t *r, mtld_metrics_buf_t *b) {
  mtld_rank_summary_t s;
  mtld_rank_get(r, &s);
  char k[16];
  snprintf(k, sizeof(k), "%d", s.k);
  mtld_metrics_family(b, "mtld_rank_hit_rate", "gauge",
                      "Progressive HR@K of clicked items among recently clicked ones, for the "
                      "model and the popularity baseline.");
  mtld_metrics_label_t lm[2] = {{"k", k}, {"ranker", "model"}};
  mtld_metrics_label_t lp[2] = {{"k", k}, {"ranker", "popularity"}};
  mtld_metrics_sample_kv(b, "mtld_rank_hit_rate", lm, 2, s.hr);
  mtld_metrics_sample_kv(b, "mtld_rank_hit_rate", lp, 2, s.pop_hr);
  mtld_metrics_family(b, "mtld_rank_mrr", "gauge", "Progressive MRR@K of clicked items.");
  mtld_metrics_sample_kv(b, "mtld_rank_mrr", lm, 2, s.mrr);
  mtld_metrics_sample_kv(b, "mtld_rank_mrr", lp, 2, s.pop_mrr);
  mtld_metrics_family(b, "mtld_rank_evaluated_total", "counter", "Clicks ranked.");
  mtld_metrics_sample(b, "mtld_rank_evaluated_total", NULL, (double)s.evaluated);
}

void mtld_trainer_render_metrics(mtld_trainer_t *t, mtld_metrics_buf_t *b) {
  mtld_trainer_stats_t ts;
  mtld_trainer_stats(t, &ts);
  mtld_metrics_family(b, "mtld_samples_trained_total", "counter",
                      "Samples the model has learned from (after scoring them).");
  mtld_metrics_sample(b, "mtld_samples_trained_total", NULL, (double)ts.trained);
  mtld_metrics_family(b, "mtld_train_batches_total", "counter", "Optimiser steps.");
  mtld_metrics_sample(b, "mtld_train_batches_total", NULL, (double)ts.batches);
  mtld_metrics_family(b, "mtld_train_loss", "gauge", "Loss of the last minibatch.");
  mtld_metrics_sample(b, "mtld_train_loss", NULL, ts.last_loss);
  mtld_metrics_family(b, "mtld_trainer_memory_bytes", "gauge",
                      "Memory of the model, optimiser state and metrics.");
  mtld_metrics_sample(b, "mtld_trainer_memory_bytes", NULL, (double)mtld_trainer_memory_bytes(t));
  mtld_pvmetrics_render(mtld_trainer_metrics(t), b);
  if (t->rank) render_rank(t->rank, b);
  mtld_model_t *m = mtld_trainer_model(t);
  const mtld_model_config_t *mc = mtld_model_config(m);
  static const char *const fam[3] = {"mtld_embedding_rows", "mtld_embedding_admitted_total",
                                     "mtld_embedding_evictions_total"};
  static const char *const help[3] = {"Live rows of each embedding table (occupancy).",
                                      "Rows admitted after their occurrence threshold.",
                                      "Rows expired after going unused (event time)."};
  static const char *const type[3] = {"gauge", "counter", "counter"};
  for (int k = 0; k < 3; k++) {
    mtld_metrics_family(b, fam[k], type[k], help[k]);
    for (int f = 0; f < mc->n_fields; f++) {
      const mtld_embed_t *e = mtld_model_embed(m, f);
      if (!e) continue;
      double v = k == 0   ? (double)e->stats.live_rows
                 : k == 1 ? (double)e->stats.admitted
                          : (double)e->stats.evictions;
      mtld_metrics_label_t l[1] = {{"field", mc->fields[f].name}};
      mtld_metrics_sample_kv(b, fam[k], l, 1, v);
    }
  }
  mtld_metrics_family(b, "mtld_embedding_table_rows", "gauge", "Rows of each embedding table.");
  for (int f = 0; f < mc->n_fields; f++) {
    mtld_metrics_label_t l[1] = {{"field", mc->fields[f].name}};
    mtld_metrics_sample_kv(b, "mtld_embedding_table_rows", l, 1, (double)mc->fields[f].rows);
  }
}

void mtld_trainer_pv_rows(const mtld_model_config_t *c, mtld_trainer_pv_rows_t *out) {
  memset(out, 0, sizeof(*out));
  for (int r = 0; r < MTLD_TRAINER_PV_MAX_ROWS; r++) out->naive[r] = -1;
  for (int k = 0; k < c->n_tasks && k < MTLD_MAX_TASKS; k++) {
    out->is_reg[out->n] = c->tasks[k].type == MTLD_TASK_REGRESSION;
    out->task[out->n] = k;
    snprintf(out->names[out->n], MTLD_NAME_MAX, "%s", c->tasks[k].name);
    out->n++;
  }
  for (int k = 0; k < c->n_tasks && k < MTLD_MAX_TASKS; k++) {
    const mtld_task_t *x = &c->tasks[k];
    if (x->type != MTLD_TASK_ESMM_CTCVR || x->parent < 0 || x->parent >= c->n_tasks ||
        c->tasks[x->parent].type != MTLD_TASK_ESMM_CTCVR)
      continue;
    out->task[out->n] = k;
    snprintf(out->names[out->n], MTLD_NAME_MAX, "%.26s_base", x->name);
    out->n++;
  }
  for (int k = 0; k < c->n_tasks && k < MTLD_MAX_TASKS; k++) {
    if (c->tasks[k].label != MTLD_LABEL_DEMAND) continue;
    static const char *const suffix[MTLD_N_NAIVE] = {"last", "ma"};
    for (int v = 0; v < MTLD_N_NAIVE; v++) {
      out->is_reg[out->n] = 1;
      out->task[out->n] = k;
      out->naive[out->n] = v;
      snprintf(out->names[out->n], MTLD_NAME_MAX, "%.26s_%s", c->tasks[k].name, suffix[v]);
      out->n++;
    }
  }
  for (int r = 0; r < out->n; r++) out->name_ptrs[r] = out->names[r];
}
