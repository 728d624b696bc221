/* snapshot.c - serving snapshots: capture, encode, atomic save with LATEST
 * and retention, and the verifying reader (see snapshot.h and
 * schemas/snapshot.proto for the format). */
#define _GNU_SOURCE
#include "durable/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/fs.h"
#include "schemas/snapshot.pb-c.h"
#include "trainer/serial.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the snapshot format stores raw little-endian arrays"
#endif

#define PREFIX_LEN 16
#define FILE_PREFIX "snapshot-"
#define FILE_SUFFIX ".mtlds"
#define TMP_PREFIX ".snapshot.tmp."
#define MAX_HEADER ((uint32_t)64 << 20)
#define MAX_TENSORS 4096
#define TENSOR_NAME_MAX 96

#ifndef MTLD_VERSION
#define MTLD_VERSION "dev"
#endif

struct mtld_snapshot {
  mtld_model_config_t cfg;
  mtld_snapshot_meta_t meta; /* offsets: own copy */
  mtld_trainer_stats_t stats;
  float *params;
  size_t n_params;
  mtld_tensor_t *tensors;
  int n_tensors;
  int64_t *last_used[MTLD_MAX_FIELDS];
  uint16_t *cms[MTLD_MAX_FIELDS];
  uint32_t cms_width[MTLD_MAX_FIELDS];
  uint64_t hash_seed[MTLD_MAX_FIELDS];
  uint64_t norm_n;
  double norm_mean[MTLD_MAX_DENSE], norm_m2[MTLD_MAX_DENSE];
  unsigned char *pv_state; /* mtld_pvmetrics_save image */
  size_t pv_len;
};

static size_t align_up(size_t n) {
  return (n + MTLD_SNAPSHOT_ALIGN - 1) & ~(size_t)(MTLD_SNAPSHOT_ALIGN - 1);
}

/* ---- capture -------------------------------------------------------------- */

typedef struct {
  uint64_t id, cat;
} item_pair_t;

static int cmp_pair(const void *a, const void *b) {
  uint64_t x = ((const item_pair_t *)a)->id, y = ((const item_pair_t *)b)->id;
  return x < y ? -1 : x > y;
}

/* dst's item set: a copy of src's, ascending without duplicates (sorted
 * when src's is not; of equal ids one is kept, with its category).  dst's
 * pointers are not owned yet.  -1 out of memory. */
static int copy_items(mtld_snapshot_meta_t *dst, const mtld_snapshot_meta_t *src) {
  dst->item_ids = dst->item_cats = NULL;
  dst->n_items = src->item_ids ? src->n_items : 0;
  if (!dst->n_items) return 0;
  size_t n = dst->n_items;
  dst->item_ids = malloc(sizeof(uint64_t) * n);
  dst->item_cats = malloc(sizeof(uint64_t) * n);
  if (!dst->item_ids || !dst->item_cats) return -1;
  int sorted = 1;
  for (size_t i = 0; i < n; i++) {
    dst->item_ids[i] = src->item_ids[i];
    dst->item_cats[i] = src->item_cats ? src->item_cats[i] : 0;
    if (i && src->item_ids[i] <= src->item_ids[i - 1]) sorted = 0;
  }
  if (sorted) return 0;
  item_pair_t *p = malloc(sizeof(*p) * n);
  if (!p) return -1;
  for (size_t i = 0; i < n; i++) p[i] = (item_pair_t){dst->item_ids[i], dst->item_cats[i]};
  qsort(p, n, sizeof(*p), cmp_pair); /* not stable: equal ids keep either category */
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (m && p[i].id == dst->item_ids[m - 1]) continue;
    dst->item_ids[m] = p[i].id;
    dst->item_cats[m++] = p[i].cat;
  }
  dst->n_items = m;
  free(p);
  return 0;
}

/* Frees the arrays a meta owns (offsets, item ids and categories); not the meta itself. */
static void meta_free(mtld_snapshot_meta_t *m) {
  free(m->offsets);
  free(m->item_ids);
  free(m->item_cats);
}

void mtld_snapshot_free(mtld_snapshot_t *s) {
  if (!s) return;
  meta_free(&s->meta);
  free(s->params);
  free(s->tensors);
  for (int f = 0; f < MTLD_MAX_FIELDS; f++) {
    free(s->last_used[f]);
    free(s->cms[f]);
  }
  free(s->pv_state);
  free(s);
}

/* A buffer of n bytes: the old one when it is already that size (its pages
 * are mapped: no page faults on the copy), else a new one. */
static void *reuse_buf(void *old, size_t old_n, size_t n) {
  if (old && old_n == n) return old;
  free(old);
  return malloc(n);
}

mtld_status_t mtld_snapshot_capture(mtld_snapshot_t **out, const mtld_trainer_t *tc,
                                    const mtld_snapshot_meta_t *meta, char *err, size_t errlen) {
  *out = NULL;
  return mtld_snapshot_recapture(out, tc, meta, err, errlen);
}

mtld_status_t mtld_snapshot_recapture(mtld_snapshot_t **snap, const mtld_trainer_t *tc,
                                      const mtld_snapshot_meta_t *meta, char *err, size_t errlen) {
  /* Nothing below changes the trainer; its accessors are not const. */
  mtld_trainer_t *t = (mtld_trainer_t *)tc;
  mtld_snapshot_t **out = snap;
  mtld_snapshot_t *s = *snap;
  *snap = NULL;
  /* keep the big buffers of the previous capture, drop the rest */
  float *old_params = NULL;
  size_t old_n_params = 0;
  int64_t *old_last[MTLD_MAX_FIELDS] = {0};
  uint32_t old_rows[MTLD_MAX_FIELDS] = {0};
  if (s) {
    old_params = s->params;
    old_n_params = s->n_params;
    for (int f = 0; f < MTLD_MAX_FIELDS; f++) {
      old_last[f] = s->last_used[f];
      old_rows[f] = f < s->cfg.n_fields ? s->cfg.fields[f].rows : 0;
      free(s->cms[f]);
    }
    meta_free(&s->meta);
    free(s->tensors);
    free(s->pv_state);
    memset(s, 0, sizeof(*s));
  } else {
    s = calloc(1, sizeof(*s));
    if (!s) goto nomem_early;
  }
  mtld_model_t *m = mtld_trainer_model(t);
  s->cfg = *mtld_model_config(m);
  s->meta = *meta;
  s->meta.offsets = NULL;
  s->meta.item_ids = s->meta.item_cats = NULL; /* borrowed until copy_items */
  s->meta.n_offsets = meta->n_offsets > 0 ? meta->n_offsets : 0;
  if (s->meta.n_offsets) {
    s->meta.offsets = malloc(sizeof(*s->meta.offsets) * (size_t)s->meta.n_offsets);
    if (!s->meta.offsets) goto nomem;
    memcpy(s->meta.offsets, meta->offsets, sizeof(*s->meta.offsets) * (size_t)s->meta.n_offsets);
  }
  if (copy_items(&s->meta, meta) != 0) goto nomem;
  mtld_trainer_stats(t, &s->stats);
  float *params;
  mtld_model_params(m, &params, &s->n_params);
  s->params = reuse_buf(old_params, old_n_params * sizeof(float), sizeof(float) * s->n_params);
  old_params = NULL;
  if (!s->params) goto nomem;
  memcpy(s->params, params, sizeof(float) * s->n_params);
  const mtld_tensor_t *tens = mtld_model_tensors(m, &s->n_tensors);
  s->tensors = malloc(sizeof(*tens) * (size_t)s->n_tensors);
  if (!s->tensors) goto nomem;
  memcpy(s->tensors, tens, sizeof(*tens) * (size_t)s->n_tensors);
  for (int f = 0; f < s->cfg.n_fields; f++) {
    const mtld_embed_t *e = mtld_model_embed(m, f);
    s->hash_seed[f] = e->seed;
    s->last_used[f] =
        reuse_buf(old_last[f], sizeof(int64_t) * old_rows[f], sizeof(int64_t) * e->rows);
    old_last[f] = NULL;
    if (!s->last_used[f]) goto nomem;
    memcpy(s->last_used[f], e->last_used, sizeof(int64_t) * e->rows);
    if (e->cms) {
      s->cms_width[f] = e->cms_width;
      s->cms[f] = malloc(sizeof(uint16_t) * 2 * (size_t)e->cms_width);
      if (!s->cms[f]) goto nomem;
      memcpy(s->cms[f], e->cms, sizeof(uint16_t) * 2 * (size_t)e->cms_width);
    }
  }
  mtld_model_normaliser(m, &s->norm_n, s->norm_mean, s->norm_m2);
  mtld_wr_t w;
  if (mtld_wr_open(&w, NULL) != MTLD_OK) goto nomem;
  mtld_pvmetrics_save(mtld_trainer_metrics(t), &w);
  mtld_status_t st = w.st;
  mtld_wr_close(&w);
  s->pv_state = w.buf;
  s->pv_len = w.len;
  if (st != MTLD_OK) goto nomem;
  for (int f = 0; f < MTLD_MAX_FIELDS; f++) free(old_last[f]); /* fields gone */
  *out = s;
  return MTLD_OK;
nomem:
  mtld_snapshot_free(s);
  free(old_params);
  for (int f = 0; f < MTLD_MAX_FIELDS; f++) free(old_last[f]);
nomem_early:
  snprintf(err, errlen, "snapshot capture: out of memory");
  return MTLD_ERR_NOMEM;
}

/* ---- encode --------------------------------------------------------------- */

typedef struct {
  char name[TENSOR_NAME_MAX];
  int dtype; /* Mtld__SnapshotDtype */
  uint32_t rows, cols;
  const void *data;
  size_t length, offset;
  uint64_t hash;
} out_tensor_t;

/* Everything the header points to, freed together. */
typedef struct {
  Mtld__SnapshotHeader h;
  Mtld__SnapshotModelConfig mc;
  Mtld__SnapshotEmbedding emb;
  Mtld__SnapshotFeatures feat;
  Mtld__SnapshotAttribute attrs[MTLD_ATTR_MAX], *attrp[MTLD_ATTR_MAX];
  Mtld__SnapshotNormalizer norm;
  Mtld__SnapshotField fields[MTLD_MAX_FIELDS], *fieldp[MTLD_MAX_FIELDS];
  Mtld__SnapshotTask tasks[MTLD_MAX_TASKS], *taskp[MTLD_MAX_TASKS];
  uint32_t experts[MTLD_MAX_TASKS][MTLD_MAX_EXPERTS];
  uint32_t expert_layers[MTLD_MAX_LAYERS], tower_layers[MTLD_MAX_LAYERS];
  Mtld__SnapshotOffset *offs, **offp;
  Mtld__SnapshotMetrics *mets, **metp;
  mtld_snapshot_metric_t *metv;
  Mtld__SnapshotTensor *tens, **tenp;
  out_tensor_t *ot;
  int n_ot;
  size_t payload;
} build_t;

static void build_free(build_t *b) {
  free(b->offs);
  free(b->offp);
  free(b->mets);
  free(b->metp);
  free(b->metv);
  free(b->tens);
  free(b->tenp);
  free(b->ot);
}

/* The metrics summaries, from a copy of the trainer's metrics state. */
static mtld_status_t summarise_metrics(const mtld_snapshot_t *s, mtld_snapshot_metric_t **out,
                                       int *n_out) {
  const mtld_model_config_t *c = &s->cfg;
  *out = NULL;
  *n_out = 0;
  mtld_trainer_pv_rows_t rows; /* the trainer's rows: tasks, then chained baselines */
  mtld_trainer_pv_rows(c, &rows);
  char e[128];
  mtld_pvmetrics_t *pv = NULL;
  mtld_status_t st = mtld_pvmetrics_create(&pv, rows.n, rows.is_reg, rows.name_ptrs, c->pv_window,
                                           c->pv_max_scenarios, e, sizeof e);
  if (st != MTLD_OK) return st;
  mtld_rd_t r;
  if ((st = mtld_rd_open(&r, NULL, s->pv_state, s->pv_len)) != MTLD_OK) {
    mtld_pvmetrics_destroy(pv);
    return st;
  }
  mtld_pvmetrics_load(pv, &r);
  st = r.st;
  mtld_rd_close(&r);
  int ns = mtld_pvmetrics_n_scenarios(pv);
  mtld_snapshot_metric_t *v = NULL;
  if (st == MTLD_OK) v = calloc((size_t)rows.n * (ns + 1), sizeof(*v));
  if (st == MTLD_OK && !v) st = MTLD_ERR_NOMEM;
  int n = 0;
  for (int k = 0; st == MTLD_OK && k < rows.n; k++) {
    for (int sc = MTLD_PV_ALL; st == MTLD_OK && sc < ns; sc++) {
      mtld_snapshot_metric_t *x = &v[n];
      st = mtld_pvmetrics_get(pv, k, sc, &x->s);
      if (st != MTLD_OK || x->s.n == 0) continue;
      snprintf(x->task, sizeof x->task, "%s", rows.names[k]);
      snprintf(x->scenario, sizeof x->scenario, "%s", mtld_pvmetrics_scenario_name(pv, sc));
      n++;
    }
  }
  mtld_pvmetrics_destroy(pv);
  if (st != MTLD_OK) {
    free(v);
    return st;
  }
  *out = v;
  *n_out = n;
  return MTLD_OK;
}

static void add_tensor(build_t *b, const char *name, int dtype, uint32_t rows, uint32_t cols,
                       const void *data, size_t elem) {
  out_tensor_t *t = &b->ot[b->n_ot++];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->dtype = dtype;
  t->rows = rows;
  t->cols = cols;
  t->data = data;
  t->length = (size_t)rows * cols * elem;
  t->offset = align_up(b->payload);
  t->hash = XXH64(data, t->length, 0);
  b->payload = t->offset + t->length;
}

static mtld_status_t build_header(const mtld_snapshot_t *s, build_t *b) {
  const mtld_model_config_t *c = &s->cfg;
  memset(b, 0, sizeof(*b));
  /* tensors: the parameters as laid out, then the row state per field */
  b->ot = calloc((size_t)s->n_tensors + 2 * MTLD_MAX_FIELDS + 2, sizeof(*b->ot));
  if (!b->ot) return MTLD_ERR_NOMEM;
  for (int i = 0; i < s->n_tensors; i++) {
    const mtld_tensor_t *t = &s->tensors[i];
    add_tensor(b, t->name, MTLD__SNAPSHOT_DTYPE__DTYPE_FLOAT32, t->rows, t->cols,
               s->params + t->offset, sizeof(float));
  }
  char name[TENSOR_NAME_MAX];
  for (int f = 0; f < c->n_fields; f++) {
    const char *fname = c->fields[f].name[0] ? c->fields[f].name : "field";
    snprintf(name, sizeof name, "emb.%s.last_used", fname);
    add_tensor(b, name, MTLD__SNAPSHOT_DTYPE__DTYPE_INT64, c->fields[f].rows, 1, s->last_used[f],
               sizeof(int64_t));
    if (s->cms[f]) {
      snprintf(name, sizeof name, "emb.%s.cms", fname);
      add_tensor(b, name, MTLD__SNAPSHOT_DTYPE__DTYPE_UINT16, 2, s->cms_width[f], s->cms[f],
                 sizeof(uint16_t));
    }
  }
  if (s->meta.n_items > UINT32_MAX) return MTLD_ERR_INVALID; /* rows are u32 */
  if (s->meta.n_items) {
    add_tensor(b, "items.id", MTLD__SNAPSHOT_DTYPE__DTYPE_INT64, (uint32_t)s->meta.n_items, 1,
               s->meta.item_ids, sizeof(uint64_t));
    add_tensor(b, "items.category", MTLD__SNAPSHOT_DTYPE__DTYPE_INT64, (uint32_t)s->meta.n_items, 1,
               s->meta.item_cats, sizeof(uint64_t));
  }
  b->payload = align_up(b->payload);
  b->tens = calloc((size_t)b->n_ot, sizeof(*b->tens));
  b->tenp = calloc((size_t)b->n_ot, sizeof(*b->tenp));
  if (!b->tens || !b->tenp) return MTLD_ERR_NOMEM;
  for (int i = 0; i < b->n_ot; i++) {
    Mtld__SnapshotTensor *t = &b->tens[i];
    mtld__snapshot_tensor__init(t);
    t->name = b->ot[i].name;
    t->dtype = b->ot[i].dtype;
    t->rows = b->ot[i].rows;
    t->cols = b->ot[i].cols;
    t->offset = b->ot[i].offset;
    t->length = b->ot[i].length;
    t->xxh64 = b->ot[i].hash;
    b->tenp[i] = t;
  }

  /* model config */
  Mtld__SnapshotModelConfig *mc = &b->mc;
  mtld__snapshot_model_config__init(mc);
  mc->arch = c->arch;
  mc->dim = (uint32_t)c->dim;
  for (int f = 0; f < c->n_fields; f++) {
    Mtld__SnapshotField *x = &b->fields[f];
    mtld__snapshot_field__init(x);
    x->name = (char *)c->fields[f].name;
    x->rows = c->fields[f].rows;
    x->hash_seed = s->hash_seed[f];
    x->cms_width = s->cms_width[f];
    b->fieldp[f] = x;
  }
  mc->n_fields = (size_t)c->n_fields;
  mc->fields = b->fieldp;
  mc->item_field = c->item_field;
  mc->category_field = c->category_field;
  mc->scenario_field = c->scenario_field;
  mc->seq_max = (uint32_t)c->seq_max;
  mc->interactions = c->interactions;
  mc->n_dense = (uint32_t)c->n_dense;
  mc->n_experts = (uint32_t)c->n_experts;
  mc->n_shared_experts = (uint32_t)c->n_shared_experts;
  mc->n_task_experts = (uint32_t)c->n_task_experts;
  for (int l = 0; l < c->n_expert_layers; l++) b->expert_layers[l] = (uint32_t)c->expert_layers[l];
  for (int l = 0; l < c->n_tower_layers; l++) b->tower_layers[l] = (uint32_t)c->tower_layers[l];
  mc->n_expert_layers = (size_t)c->n_expert_layers;
  mc->expert_layers = b->expert_layers;
  mc->n_tower_layers = (size_t)c->n_tower_layers;
  mc->tower_layers = b->tower_layers;
  for (int k = 0; k < c->n_tasks; k++) {
    Mtld__SnapshotTask *x = &b->tasks[k];
    const mtld_task_t *tk = &c->tasks[k];
    mtld__snapshot_task__init(x);
    x->name = (char *)tk->name;
    x->type = tk->type;
    x->label = tk->label;
    x->parent = tk->parent;
    x->loss_weight = tk->loss_weight;
    x->reg_loss = tk->reg_loss;
    x->huber_delta = tk->huber_delta;
    x->bias_init = tk->bias_init;
    int ex[MTLD_MAX_EXPERTS], ne = mtld_model_task_experts(c, k, ex);
    for (int e = 0; e < ne; e++) b->experts[k][e] = (uint32_t)ex[e];
    x->n_experts = (size_t)ne;
    x->experts = b->experts[k];
    b->taskp[k] = x;
  }
  mc->n_tasks = (size_t)c->n_tasks;
  mc->tasks = b->taskp;
  mc->uncertainty_weighting = c->uncertainty_weighting != 0;
  mc->optim = c->optim;
  mc->lr = c->lr;
  mc->beta1 = c->beta1;
  mc->beta2 = c->beta2;
  mc->eps = c->eps;
  Mtld__SnapshotEmbedding *em = &b->emb;
  mtld__snapshot_embedding__init(em);
  em->optim = c->emb.optim;
  em->lr = c->emb.lr;
  em->adagrad_init = c->emb.adagrad_init;
  em->beta1 = c->emb.beta1;
  em->beta2 = c->emb.beta2;
  em->eps = c->emb.eps;
  em->init_scale = c->emb.init_scale;
  em->admit_after = c->emb.admit_after;
  em->expire_ms = c->emb.expire_ms;
  mc->embedding = em;
  mc->batch_size = (uint32_t)c->batch_size;
  mc->seed = c->seed;
  mc->pv_window = c->pv_window;
  mc->pv_max_scenarios = c->pv_max_scenarios;

  /* features, normaliser */
  const mtld_feature_def_t *fd = &s->meta.features;
  Mtld__SnapshotFeatures *fe = &b->feat;
  mtld__snapshot_features__init(fe);
  int nh = fd->n_half_lives < 0                     ? 0
           : fd->n_half_lives > MTLD_MAX_HALF_LIVES ? MTLD_MAX_HALF_LIVES
                                                    : fd->n_half_lives;
  fe->n_half_life_s = (size_t)nh;
  fe->half_life_s = (double *)fd->half_life_s;
  fe->seq_len = (uint32_t)fd->seq_len;
  fe->prior_strength = fd->prior_strength;
  fe->ctr_prior = fd->ctr_prior;
  fe->cvr_prior = fd->cvr_prior;
  fe->cart_prior = fd->cart_prior;
  fe->schema_hash = s->meta.schema_hash;
  fe->n_dense = (uint32_t)s->meta.n_dense;
  fe->item_view = fd->item_view;
  int na = fd->n_attrs < 0 ? 0 : fd->n_attrs > MTLD_ATTR_MAX ? MTLD_ATTR_MAX : fd->n_attrs;
  for (int k = 0; k < na; k++) {
    const mtld_attr_def_t *a = &fd->attrs[k];
    Mtld__SnapshotAttribute *x = &b->attrs[k];
    mtld__snapshot_attribute__init(x);
    x->name = (char *)a->name;
    x->owner = a->owner;
    x->kind = a->kind;
    x->rows = a->rows;
    x->default_str = (char *)a->default_str;
    x->default_num = a->default_num;
    b->attrp[k] = x;
  }
  fe->n_attributes = (size_t)na;
  fe->attributes = b->attrp;
  Mtld__SnapshotNormalizer *no = &b->norm;
  mtld__snapshot_normalizer__init(no);
  no->count = s->norm_n;
  no->n_mean = no->n_m2 = (size_t)c->n_dense;
  no->mean = (double *)s->norm_mean;
  no->m2 = (double *)s->norm_m2;
  no->eps = MTLD_NORM_EPS;
  no->clip = MTLD_NORM_CLIP;

  /* offsets, metrics */
  int no_ = s->meta.n_offsets;
  b->offs = calloc((size_t)no_ + 1, sizeof(*b->offs));
  b->offp = calloc((size_t)no_ + 1, sizeof(*b->offp));
  if (!b->offs || !b->offp) return MTLD_ERR_NOMEM;
  for (int i = 0; i < no_; i++) {
    Mtld__SnapshotOffset *o = &b->offs[i];
    mtld__snapshot_offset__init(o);
    o->topic = s->meta.offsets[i].topic;
    o->partition = s->meta.offsets[i].partition;
    o->next_offset = s->meta.offsets[i].next_offset;
    o->max_time_ms = s->meta.offsets[i].max_time_ms;
    b->offp[i] = o;
  }
  int nm = 0;
  mtld_status_t st = summarise_metrics(s, &b->metv, &nm);
  if (st != MTLD_OK) return st;
  b->mets = calloc((size_t)nm + 1, sizeof(*b->mets));
  b->metp = calloc((size_t)nm + 1, sizeof(*b->metp));
  if (!b->mets || !b->metp) return MTLD_ERR_NOMEM;
  for (int i = 0; i < nm; i++) {
    Mtld__SnapshotMetrics *x = &b->mets[i];
    const mtld_snapshot_metric_t *v = &b->metv[i];
    mtld__snapshot_metrics__init(x);
    x->task = b->metv[i].task;
    x->scenario = b->metv[i].scenario;
    x->n = v->s.n;
    x->n_pos = v->s.n_pos;
    x->auc_window = v->s.auc_window;
    x->auc_cum = v->s.auc_cum;
    x->logloss = v->s.logloss;
    x->calibration = v->s.calibration;
    x->rmse = v->s.rmse;
    x->mean_pred = v->s.mean_pred;
    x->mean_label = v->s.mean_label;
    b->metp[i] = x;
  }

  Mtld__SnapshotHeader *h = &b->h;
  mtld__snapshot_header__init(h);
  h->format_version = MTLD_SNAPSHOT_VERSION;
  h->producer = (char *)"mtld " MTLD_VERSION;
  h->created_ms = s->meta.created_ms;
  h->watermark_ms = s->meta.watermark_ms;
  h->n_offsets = (size_t)no_;
  h->offsets = b->offp;
  h->model = mc;
  h->features = fe;
  h->normalizer = no;
  h->n_metrics = (size_t)nm;
  h->metrics = b->metp;
  h->n_tensors = (size_t)b->n_ot;
  h->tensors = b->tenp;
  h->samples_trained = s->stats.trained;
  h->batches = s->stats.batches;
  h->join_mode = s->meta.join_mode;
  h->negatives_per_positive = s->meta.negatives_per_positive;
  h->payload_length = b->payload;
  h->n_items = s->meta.n_items;
  return MTLD_OK;
}

/* A hashed byte sink: a FILE or a preallocated buffer. */
typedef struct {
  FILE *f;
  unsigned char *buf;
  size_t len;
  XXH64_state_t *h;
  int failed; /* sticky: a write failed; later puts only count bytes */
  int err;    /* errno of the first failed write */
} sink_t;

/* len advances even after a failure: the writer's padding loops run on
 * len, and the caller checks failed once at the end. */
static void sink_put(sink_t *k, const void *p, size_t n) {
  if (n == 0) return;
  if (!k->failed) {
    XXH64_update(k->h, p, n);
    if (k->f) {
      if (fwrite(p, 1, n, k->f) != n) k->failed = 1, k->err = errno;
    } else {
      memcpy(k->buf + k->len, p, n);
    }
  }
  k->len += n;
}

static void sink_pad(sink_t *k, size_t to) {
  static const unsigned char zero[MTLD_SNAPSHOT_ALIGN];
  while (k->len < to) {
    size_t n = to - k->len < sizeof zero ? to - k->len : sizeof zero;
    sink_put(k, zero, n);
  }
}

/* Writes the whole file image into k. */
static mtld_status_t emit(const mtld_snapshot_t *s, sink_t *k, size_t *total) {
  build_t b;
  mtld_status_t st = build_header(s, &b);
  uint8_t *hdr = NULL;
  size_t hlen = 0;
  if (st == MTLD_OK) {
    hlen = mtld__snapshot_header__get_packed_size(&b.h);
    hdr = malloc(hlen ? hlen : 1);
    if (!hdr || hlen > MAX_HEADER) st = MTLD_ERR_NOMEM;
  }
  if (st == MTLD_OK) mtld__snapshot_header__pack(&b.h, hdr);
  size_t start = align_up(PREFIX_LEN + hlen);
  if (total) *total = start + b.payload + 8;
  if (st == MTLD_OK && k->f == NULL && k->buf == NULL) { /* measuring only */
    free(hdr);
    build_free(&b);
    return MTLD_OK;
  }
  if (st == MTLD_OK) {
    k->h = XXH64_createState();
    if (!k->h) st = MTLD_ERR_NOMEM;
  }
  if (st == MTLD_OK) {
    XXH64_reset(k->h, 0);
    uint32_t version = MTLD_SNAPSHOT_VERSION, hl = (uint32_t)hlen;
    sink_put(k, MTLD_SNAPSHOT_MAGIC, 8);
    sink_put(k, &version, 4);
    sink_put(k, &hl, 4);
    sink_put(k, hdr, hlen);
    for (int i = 0; i < b.n_ot; i++) {
      sink_pad(k, start + b.ot[i].offset);
      sink_put(k, b.ot[i].data, b.ot[i].length);
    }
    sink_pad(k, start + b.payload);
    uint64_t sum = XXH64_digest(k->h);
    if (k->f) {
      if (!k->failed && fwrite(&sum, 1, 8, k->f) != 8) k->failed = 1, k->err = errno;
    } else {
      memcpy(k->buf + k->len, &sum, 8);
    }
    k->len += 8;
    XXH64_freeState(k->h);
    k->h = NULL;
    if (k->failed) st = MTLD_ERR_IO;
  }
  free(hdr);
  build_free(&b);
  return st;
}

mtld_status_t mtld_snapshot_encode(const mtld_snapshot_t *s, void **buf, size_t *len, char *err,
                                   size_t errlen) {
  *buf = NULL;
  *len = 0;
  sink_t k = {0};
  size_t total = 0;
  mtld_status_t st = emit(s, &k, &total);
  if (st == MTLD_OK) {
    k.buf = malloc(total);
    if (!k.buf) st = MTLD_ERR_NOMEM;
  }
  if (st == MTLD_OK) st = emit(s, &k, NULL);
  if (st != MTLD_OK) {
    free(k.buf);
    snprintf(err, errlen, "snapshot encode: %s", mtld_status_str(st));
    return st;
  }
  *buf = k.buf;
  *len = k.len;
  return MTLD_OK;
}

/* ---- save ----------------------------------------------------------------- */

/* seq of "snapshot-<digits>.mtlds", or 0. */
static uint64_t parse_seq(const char *name) {
  size_t pl = strlen(FILE_PREFIX), sl = strlen(FILE_SUFFIX), n = strlen(name);
  if (n <= pl + sl || strncmp(name, FILE_PREFIX, pl) || strcmp(name + n - sl, FILE_SUFFIX))
    return 0;
  uint64_t seq = 0;
  for (size_t i = pl; i < n - sl; i++) {
    if (name[i] < '0' || name[i] > '9' || seq > (UINT64_MAX - 9) / 10) return 0;
    seq = seq * 10 + (uint64_t)(name[i] - '0');
  }
  return seq;
}

static int cmp_u64_desc(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? 1 : (x > y ? -1 : 0);
}

/* Sequence numbers of the snapshot files of dir, newest first. */
static int list_seqs(const char *dir, uint64_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return -1;
  size_t cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    uint64_t seq = parse_seq(de->d_name);
    if (!seq) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      uint64_t *ns = realloc(*out, sizeof(*ns) * cap);
      if (!ns) {
        closedir(d);
        free(*out);
        *out = NULL;
        *n = 0;
        return -1;
      }
      *out = ns;
    }
    (*out)[(*n)++] = seq;
  }
  closedir(d);
  if (*n) qsort(*out, *n, sizeof(uint64_t), cmp_u64_desc);
  return 0;
}

static void prune(const char *dir, int keep, const char *own_tmp) {
  uint64_t *seqs;
  size_t n;
  char path[PATH_MAX];
  if (list_seqs(dir, &seqs, &n) == 0) {
    for (size_t i = (size_t)keep; i < n; i++) {
      mtld_pathf(path, sizeof path, "%s/" FILE_PREFIX "%010" PRIu64 FILE_SUFFIX, dir, seqs[i]);
      unlink(path);
    }
    free(seqs);
  }
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0) continue;
    mtld_pathf(path, sizeof path, "%s/%s", dir, de->d_name);
    if (!own_tmp || strcmp(path, own_tmp)) unlink(path);
  }
  closedir(d);
  mtld_fsync_dir(dir);
}

mtld_status_t mtld_snapshot_save(const mtld_snapshot_t *s, const char *dir, int keep,
                                 char *path_out, size_t pathlen, char *err, size_t errlen) {
  MTLD_CHECK_DIR_LEN(dir);
  char tmp[PATH_MAX], final[PATH_MAX], name[64], latest[PATH_MAX], latest_tmp[PATH_MAX];
  if (mtld_mkdir_p(dir) != 0) {
    snprintf(err, errlen, "cannot create snapshot directory %s: %s", dir, strerror(errno));
    return MTLD_ERR_IO;
  }
  uint64_t *seqs;
  size_t n;
  if (list_seqs(dir, &seqs, &n) != 0) {
    snprintf(err, errlen, "cannot list %s: %s", dir, strerror(errno));
    return MTLD_ERR_IO;
  }
  uint64_t seq = (n ? seqs[0] : 0) + 1;
  free(seqs);
  snprintf(name, sizeof name, FILE_PREFIX "%010" PRIu64 FILE_SUFFIX, seq);
  mtld_pathf(final, sizeof final, "%s/%s", dir, name);
  mtld_pathf(tmp, sizeof tmp, "%s/" TMP_PREFIX "XXXXXX", dir);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    snprintf(err, errlen, "cannot create a temp file in %s: %s", dir, strerror(errno));
    return MTLD_ERR_IO;
  }
  /* mkstemp creates 0600: serving readers may run as another user */
  FILE *f = fchmod(fd, 0644) == 0 ? fdopen(fd, "wb") : NULL;
  if (!f) {
    close(fd);
    unlink(tmp);
    snprintf(err, errlen, "cannot open %s: %s", tmp, strerror(errno));
    return MTLD_ERR_IO;
  }
  setvbuf(f, NULL, _IOFBF, 1 << 20);
  sink_t k = {.f = f};
  mtld_status_t st = emit(s, &k, NULL);
  int e = k.failed ? k.err : errno;
  if (st == MTLD_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0)) st = MTLD_ERR_IO, e = errno;
  if (fclose(f) != 0 && st == MTLD_OK) st = MTLD_ERR_IO, e = errno;
  if (st == MTLD_OK && (rename(tmp, final) != 0 || mtld_fsync_dir(dir) != 0))
    st = MTLD_ERR_IO, e = errno;
  if (st != MTLD_OK) {
    unlink(tmp);
    snprintf(err, errlen, "cannot write snapshot %s: %s", final,
             st == MTLD_ERR_IO ? strerror(e) : mtld_status_str(st));
    return st;
  }
  /* LATEST: the new name, replaced atomically */
  mtld_pathf(latest, sizeof latest, "%s/" MTLD_SNAPSHOT_LATEST, dir);
  mtld_pathf(latest_tmp, sizeof latest_tmp, "%s/" MTLD_SNAPSHOT_LATEST ".tmp", dir);
  char line[80];
  int ll = snprintf(line, sizeof line, "%s\n", name);
  int lfd = open(latest_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int bad = lfd < 0;
  if (!bad) {
    bad = write(lfd, line, (size_t)ll) != ll || fsync(lfd) != 0;
    if (close(lfd) != 0) bad = 1;
  }
  if (!bad) bad = rename(latest_tmp, latest) != 0 || mtld_fsync_dir(dir) != 0;
  if (bad) {
    e = errno;
    unlink(latest_tmp);
    snprintf(err, errlen, "snapshot %s written but LATEST not updated: %s", final, strerror(e));
    return MTLD_ERR_IO;
  }
  if (path_out) snprintf(path_out, pathlen, "%s", final);
  prune(dir, keep < 1 ? 1 : keep, NULL);
  return MTLD_OK;
}

mtld_status_t mtld_snapshot_write(const mtld_trainer_t *t, const mtld_snapshot_meta_t *meta,
                                  const char *dir, int keep, char *path_out, size_t pathlen,
                                  char *err, size_t errlen) {
  mtld_snapshot_t *s;
  mtld_status_t st = mtld_snapshot_capture(&s, t, meta, err, errlen);
  if (st != MTLD_OK) return st;
  st = mtld_snapshot_save(s, dir, keep, path_out, pathlen, err, errlen);
  mtld_snapshot_free(s);
  return st;
}

/* ---- reader --------------------------------------------------------------- */

mtld_status_t mtld_snapshot_resolve(const char *path, char *file, size_t filelen, char *err,
                                    size_t errlen) {
  MTLD_CHECK_DIR_LEN(path);
  struct stat sb;
  if (stat(path, &sb) != 0) {
    snprintf(err, errlen, "snapshot %s: %s", path, strerror(errno));
    return errno == ENOENT ? MTLD_ERR_NOTFOUND : MTLD_ERR_IO;
  }
  if (!S_ISDIR(sb.st_mode)) {
    snprintf(file, filelen, "%s", path);
    return MTLD_OK;
  }
  char lp[PATH_MAX], name[256];
  mtld_pathf(lp, sizeof lp, "%s/" MTLD_SNAPSHOT_LATEST, path);
  FILE *f = fopen(lp, "rbe");
  if (!f) {
    snprintf(err, errlen, "snapshot directory %s has no readable LATEST: %s", path,
             strerror(errno));
    return errno == ENOENT ? MTLD_ERR_NOTFOUND : MTLD_ERR_IO;
  }
  size_t n = fread(name, 1, sizeof name - 1, f);
  fclose(f);
  name[n] = 0;
  while (n && (name[n - 1] == '\n' || name[n - 1] == '\r')) name[--n] = 0;
  if (!parse_seq(name)) {
    snprintf(err, errlen, "%s does not name a snapshot file", lp);
    return MTLD_ERR_CORRUPT;
  }
  snprintf(file, filelen, "%s/%s", path, name);
  if (stat(file, &sb) != 0) {
    snprintf(err, errlen, "%s names %s, which does not exist", lp, name);
    return MTLD_ERR_NOTFOUND;
  }
  return MTLD_OK;
}

void mtld_snapshot_info_free(mtld_snapshot_info_t *info) {
  if (!info) return;
  meta_free(&info->meta);
  free(info->metrics);
  memset(info, 0, sizeof(*info));
}

#define BAD(...)                                                                                   \
  do {                                                                                             \
    snprintf(err, errlen, "snapshot: " __VA_ARGS__);                                               \
    st = MTLD_ERR_CORRUPT;                                                                         \
    goto out;                                                                                      \
  } while (0)

static size_t dtype_size(int dtype) {
  switch (dtype) {
  case MTLD__SNAPSHOT_DTYPE__DTYPE_FLOAT32: return 4;
  case MTLD__SNAPSHOT_DTYPE__DTYPE_INT64: return 8;
  case MTLD__SNAPSHOT_DTYPE__DTYPE_UINT16: return 2;
  default: return 0;
  }
}

static int copy_name(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap) return -1;
  memcpy(dst, src, n + 1);
  return 0;
}

/* Header model config -> mtld_model_config_t; -1 when it does not fit. */
static int config_from_pb(mtld_model_config_t *c, const Mtld__SnapshotModelConfig *p) {
  memset(c, 0, sizeof(*c));
  if (!p->embedding || p->n_fields > MTLD_MAX_FIELDS || p->n_tasks > MTLD_MAX_TASKS ||
      p->n_expert_layers > MTLD_MAX_LAYERS || p->n_tower_layers > MTLD_MAX_LAYERS ||
      p->dim > 4096 || p->seq_max > 4096 || p->n_dense > 4096 || p->n_experts > 4096 ||
      p->n_shared_experts > 4096 || p->n_task_experts > 4096 || p->batch_size > (1u << 30))
    return -1;
  c->arch = (int)p->arch;
  c->dim = (int)p->dim;
  c->n_fields = (int)p->n_fields;
  for (size_t f = 0; f < p->n_fields; f++) {
    if (copy_name(c->fields[f].name, MTLD_NAME_MAX, p->fields[f]->name)) return -1;
    c->fields[f].rows = p->fields[f]->rows;
  }
  c->item_field = p->item_field;
  c->category_field = p->category_field;
  c->scenario_field = p->scenario_field;
  c->seq_max = (int)p->seq_max;
  c->interactions = (int)p->interactions;
  c->n_dense = (int)p->n_dense;
  c->n_experts = (int)p->n_experts;
  c->n_shared_experts = (int)p->n_shared_experts;
  c->n_task_experts = (int)p->n_task_experts;
  c->n_expert_layers = (int)p->n_expert_layers;
  for (size_t l = 0; l < p->n_expert_layers; l++) {
    if (p->expert_layers[l] > 1u << 20) return -1;
    c->expert_layers[l] = (int)p->expert_layers[l];
  }
  c->n_tower_layers = (int)p->n_tower_layers;
  for (size_t l = 0; l < p->n_tower_layers; l++) {
    if (p->tower_layers[l] > 1u << 20) return -1;
    c->tower_layers[l] = (int)p->tower_layers[l];
  }
  c->n_tasks = (int)p->n_tasks;
  for (size_t k = 0; k < p->n_tasks; k++) {
    const Mtld__SnapshotTask *x = p->tasks[k];
    mtld_task_t *t = &c->tasks[k];
    if (copy_name(t->name, MTLD_NAME_MAX, x->name)) return -1;
    t->type = (int)x->type;
    t->label = (int)x->label;
    t->parent = x->parent;
    t->loss_weight = x->loss_weight;
    t->reg_loss = x->reg_loss;
    t->huber_delta = x->huber_delta;
    t->bias_init = x->bias_init;
  }
  c->uncertainty_weighting = p->uncertainty_weighting;
  c->optim = p->optim;
  c->lr = p->lr;
  c->beta1 = p->beta1;
  c->beta2 = p->beta2;
  c->eps = p->eps;
  const Mtld__SnapshotEmbedding *e = p->embedding;
  c->emb.optim = e->optim;
  c->emb.lr = e->lr;
  c->emb.adagrad_init = e->adagrad_init;
  c->emb.beta1 = e->beta1;
  c->emb.beta2 = e->beta2;
  c->emb.eps = e->eps;
  c->emb.init_scale = e->init_scale;
  c->emb.admit_after = e->admit_after;
  c->emb.expire_ms = e->expire_ms;
  c->batch_size = (int)p->batch_size;
  c->seed = p->seed;
  c->pv_window = p->pv_window;
  c->pv_max_scenarios = p->pv_max_scenarios;
  return 0;
}

static const Mtld__SnapshotTensor *find_tensor(const Mtld__SnapshotHeader *h, const char *name) {
  for (size_t i = 0; i < h->n_tensors; i++)
    if (!strcmp(h->tensors[i]->name, name)) return h->tensors[i];
  return NULL;
}

static void info_from_header(mtld_snapshot_info_t *info, const Mtld__SnapshotHeader *h,
                             const mtld_model_config_t *cfg, size_t len) {
  info->format_version = h->format_version;
  snprintf(info->producer, sizeof info->producer, "%s", h->producer);
  info->config = *cfg;
  info->samples_trained = h->samples_trained;
  info->batches = h->batches;
  info->file_bytes = len;
  mtld_snapshot_meta_t *m = &info->meta;
  m->created_ms = h->created_ms;
  m->watermark_ms = h->watermark_ms;
  m->join_mode = h->join_mode;
  m->negatives_per_positive = h->negatives_per_positive;
  const Mtld__SnapshotFeatures *fe = h->features;
  if (fe) {
    m->features.n_half_lives = (int)fe->n_half_life_s;
    for (size_t i = 0; i < fe->n_half_life_s && i < MTLD_MAX_HALF_LIVES; i++)
      m->features.half_life_s[i] = fe->half_life_s[i];
    m->features.seq_len = (int)fe->seq_len;
    m->features.prior_strength = fe->prior_strength;
    m->features.ctr_prior = fe->ctr_prior;
    m->features.cvr_prior = fe->cvr_prior;
    m->features.cart_prior = fe->cart_prior;
    m->schema_hash = fe->schema_hash;
    m->n_dense = (int)fe->n_dense;
    m->features.item_view = fe->item_view;
    /* checked by attrs_from_header before */
    for (size_t k = 0; k < fe->n_attributes && k < MTLD_ATTR_MAX; k++) {
      const Mtld__SnapshotAttribute *x = fe->attributes[k];
      mtld_attr_def_t *a = &m->features.attrs[k];
      memset(a, 0, sizeof *a);
      size_t n = strlen(x->name), dn = strlen(x->default_str);
      memcpy(a->name, x->name, n);
      a->name_id = mtld_hash_id(x->name, n);
      a->owner = x->owner;
      a->kind = x->kind;
      a->rows = x->rows;
      if (x->kind == MTLD_ATTR_CATEGORICAL) {
        memcpy(a->default_str, x->default_str, dn);
        a->default_id = dn ? mtld_hash_id(x->default_str, dn) : 0;
      } else {
        a->default_num = x->default_num;
      }
    }
    m->features.n_attrs = (int)fe->n_attributes;
  }
}

/* The header's attributes: well formed, and laid out in the model as the
 * daemon lays them out (one field per categorical attribute after the fixed
 * ones, one dense input per numeric one after the features').  NULL, or
 * what is wrong. */
static const char *attrs_check(const Mtld__SnapshotHeader *h, const mtld_model_config_t *c) {
  const Mtld__SnapshotFeatures *fe = h->features;
  if (fe->n_attributes > MTLD_ATTR_MAX) return "too many attributes";
  int n_cat = 0, n_num = 0;
  for (size_t k = 0; k < fe->n_attributes; k++) {
    const Mtld__SnapshotAttribute *x = fe->attributes[k];
    size_t n = strlen(x->name);
    if (n == 0 || n > MTLD_ATTR_NAME_LEN || strlen(x->default_str) > MTLD_ATTR_VALUE_LEN)
      return "an attribute name or default of a bad length";
    if (x->owner < MTLD_ATTR_USER || x->owner > MTLD_ATTR_CONTEXT) return "an attribute owner";
    if (x->kind == MTLD_ATTR_CATEGORICAL) {
      int f = MTLD_FIELD_EXTRA + n_cat++;
      if (f >= c->n_fields || c->fields[f].rows != x->rows)
        return "a categorical attribute's field";
    } else if (x->kind == MTLD_ATTR_NUMERIC) {
      n_num++;
      if (!isfinite(x->default_num)) return "a numeric attribute's default";
    } else {
      return "an attribute kind";
    }
    for (size_t j = 0; j < k; j++)
      if (!strcmp(fe->attributes[j]->name, x->name)) return "a duplicate attribute";
  }
  if (fe->n_attributes &&
      (c->n_fields != MTLD_FIELD_EXTRA + n_cat || c->n_dense != (int)fe->n_dense + n_num))
    return "attributes that do not match the model's fields and dense inputs";
  return NULL;
}

void mtld_snapshot_request_attrs(const mtld_snapshot_meta_t *m, const mtld_event_t *ev,
                                 int item_attrs, mtld_sample_t *s) {
  const mtld_feature_def_t *def = &m->features;
  if (def->n_attrs <= 0) return;
  int n_cat = 0, n_num = 0;
  if (s->n_fields < MTLD_FIELD_EXTRA) s->n_fields = MTLD_FIELD_EXTRA;
  for (int i = s->n_dense; i < m->n_dense && i < MTLD_MAX_DENSE; i++) s->dense[i] = 0.0f;
  if (s->n_dense < m->n_dense) s->n_dense = m->n_dense;
  for (int k = 0; k < def->n_attrs && k < MTLD_ATTR_MAX; k++) {
    const mtld_attr_def_t *a = &def->attrs[k];
    int num = a->kind == MTLD_ATTR_NUMERIC;
    int i = ev && (item_attrs || a->owner != MTLD_ATTR_ITEM) ? mtld_event_attr_find(ev, a->name_id)
                                                             : -1;
    if (i >= 0 && mtld_event_attr_is_num(ev, i) != num) i = -1;
    if (num) {
      int d = m->n_dense + n_num++;
      if (d >= MTLD_MAX_DENSE) continue;
      s->dense[d] = (float)(i >= 0 ? ev->attrs[i].v.num : a->default_num);
      if (s->n_dense <= d) s->n_dense = d + 1;
    } else {
      int f = MTLD_FIELD_EXTRA + n_cat++;
      if (f >= MTLD_MAX_FIELDS) continue;
      s->fields[f] = i >= 0 ? ev->attrs[i].v.value_id : a->default_id;
      if (s->n_fields <= f) s->n_fields = f + 1;
    }
  }
}

mtld_status_t mtld_snapshot_load_mem(const void *buf, size_t len, mtld_model_t **model,
                                     mtld_snapshot_info_t *info, char *err, size_t errlen) {
  const unsigned char *p = buf;
  mtld_status_t st = MTLD_OK;
  Mtld__SnapshotHeader *h = NULL;
  mtld_model_t *m = NULL;
  mtld_snapshot_info_t inf;
  memset(&inf, 0, sizeof inf);
  *model = NULL;
  if (info) memset(info, 0, sizeof(*info));

  /* prefix */
  if (len < PREFIX_LEN + 8) BAD("file too short (%zu bytes)", len);
  if (memcmp(p, MTLD_SNAPSHOT_MAGIC, 8) != 0) BAD("bad magic (not an mtld snapshot)");
  uint32_t version, hlen;
  memcpy(&version, p + 8, 4);
  memcpy(&hlen, p + 12, 4);
  if (version != MTLD_SNAPSHOT_VERSION)
    BAD("format version %" PRIu32 ", this reader reads version %u", version, MTLD_SNAPSHOT_VERSION);
  if (hlen > MAX_HEADER || (size_t)hlen > len - PREFIX_LEN - 8)
    BAD("header length %" PRIu32 " runs past the end of the file (truncated?)", hlen);
  h = mtld__snapshot_header__unpack(NULL, hlen, p + PREFIX_LEN);
  if (!h) BAD("header does not decode (damaged)");
  if (h->format_version != version)
    BAD("header says format version %" PRIu32 ", prefix %" PRIu32, h->format_version, version);

  /* sizes, then every tensor's checksum, then the whole file's */
  size_t start = align_up(PREFIX_LEN + (size_t)hlen);
  if (h->payload_length % MTLD_SNAPSHOT_ALIGN || start > len - 8 ||
      h->payload_length > len - 8 - start) {
    if (h->payload_length <= SIZE_MAX - start - 8 && start + h->payload_length + 8 > len)
      BAD("truncated: %zu bytes, the header describes %zu", len,
          (size_t)(start + h->payload_length + 8));
    BAD("bad payload length %" PRIu64, h->payload_length);
  }
  if (start + h->payload_length + 8 != len)
    BAD("%zu bytes after the trailer (appended to?)",
        len - (size_t)(start + h->payload_length + 8));
  if (h->n_tensors > MAX_TENSORS) BAD("%zu tensors (at most %d)", h->n_tensors, MAX_TENSORS);
  for (size_t i = 0; i < h->n_tensors; i++) {
    const Mtld__SnapshotTensor *t = h->tensors[i];
    size_t es = dtype_size(t->dtype);
    if (!es) BAD("tensor %.64s: unknown dtype %d", t->name, (int)t->dtype);
    uint64_t want = (uint64_t)t->rows * t->cols * es;
    if (t->length != want || t->offset % MTLD_SNAPSHOT_ALIGN || t->offset > h->payload_length ||
        t->length > h->payload_length - t->offset)
      BAD("tensor %.64s: bad shape, offset or length", t->name);
    if (XXH64(p + start + t->offset, t->length, 0) != t->xxh64)
      BAD("tensor %.64s: checksum mismatch (damaged data)", t->name);
  }
  uint64_t trailer;
  memcpy(&trailer, p + len - 8, 8);
  if (XXH64(p, len - 8, 0) != trailer) BAD("file checksum mismatch (damaged header or padding)");

  /* the model */
  if (!h->model || !h->normalizer || !h->features) BAD("header lacks the model description");
  mtld_model_config_t cfg;
  if (config_from_pb(&cfg, h->model) != 0) BAD("model config out of range");
  char cerr[200];
  if (mtld_model_config_validate(&cfg, cerr, sizeof cerr) != MTLD_OK)
    BAD("invalid model config: %s", cerr);
  if (h->model->n_fields != (size_t)cfg.n_fields || h->normalizer->n_mean != (size_t)cfg.n_dense ||
      h->normalizer->n_m2 != (size_t)cfg.n_dense)
    BAD("normaliser statistics do not match n_dense");
  const char *why = attrs_check(h, &cfg);
  if (why) BAD("bad attributes: %s", why);
  uint64_t np = mtld_model_param_count(&cfg);
  if (np > h->payload_length / sizeof(float))
    BAD("the tensors cannot hold the model's %" PRIu64 " parameters", np);
  mtld_model_config_t mcfg = cfg;
  if (mcfg.batch_size > MTLD_SNAPSHOT_MAX_BATCH) mcfg.batch_size = MTLD_SNAPSHOT_MAX_BATCH;
  st = mtld_model_create(&m, &mcfg, cerr, sizeof cerr);
  if (st != MTLD_OK) {
    snprintf(err, errlen, "snapshot: cannot build the model: %s", cerr);
    goto out;
  }
  float *params;
  size_t n_params;
  mtld_model_params(m, &params, &n_params);
  if (n_params != np)
    BAD("model layout differs from this reader's (%zu vs %" PRIu64 ")", n_params, np);
  int nt;
  const mtld_tensor_t *mt = mtld_model_tensors(m, &nt);
  for (int i = 0; i < nt; i++) {
    const Mtld__SnapshotTensor *t = find_tensor(h, mt[i].name);
    if (!t) BAD("tensor %s is missing", mt[i].name);
    if (t->dtype != MTLD__SNAPSHOT_DTYPE__DTYPE_FLOAT32 || t->rows != mt[i].rows ||
        t->cols != mt[i].cols)
      BAD("tensor %s: shape %ux%u, the model has %ux%u", mt[i].name, t->rows, t->cols, mt[i].rows,
          mt[i].cols);
    memcpy(params + mt[i].offset, p + start + t->offset, t->length);
  }
  for (int f = 0; f < cfg.n_fields; f++) {
    mtld_embed_t *e = mtld_model_embed(m, f);
    const Mtld__SnapshotField *pf = h->model->fields[f];
    if (pf->hash_seed != e->seed) BAD("field %s: hash seed differs from the model's", pf->name);
    char name[TENSOR_NAME_MAX];
    const char *fname = cfg.fields[f].name[0] ? cfg.fields[f].name : "field";
    snprintf(name, sizeof name, "emb.%s.last_used", fname);
    const Mtld__SnapshotTensor *t = find_tensor(h, name);
    if (!t || t->dtype != MTLD__SNAPSHOT_DTYPE__DTYPE_INT64 || t->rows != e->rows || t->cols != 1)
      BAD("tensor %s is missing or has the wrong shape", name);
    memcpy(e->last_used, p + start + t->offset, t->length);
    uint64_t live = 0;
    for (uint32_t r = 0; r < e->rows; r++) live += e->last_used[r] != INT64_MIN;
    e->stats.live_rows = live;
    if (e->cms) {
      snprintf(name, sizeof name, "emb.%s.cms", fname);
      t = find_tensor(h, name);
      if (!t || t->dtype != MTLD__SNAPSHOT_DTYPE__DTYPE_UINT16 || t->rows != 2 ||
          t->cols != e->cms_width)
        BAD("tensor %s is missing or has the wrong shape", name);
      memcpy(e->cms, p + start + t->offset, t->length);
    }
  }
  double mean[MTLD_MAX_DENSE] = {0}, m2[MTLD_MAX_DENSE] = {0};
  for (int i = 0; i < cfg.n_dense; i++) {
    mean[i] = h->normalizer->mean[i];
    m2[i] = h->normalizer->m2[i];
  }
  mtld_model_set_normaliser(m, h->normalizer->count, mean, m2);

  /* the item set (absent in files written before it existed) */
  const Mtld__SnapshotTensor *ti = NULL, *tc = NULL;
  if (h->n_items) {
    ti = find_tensor(h, "items.id");
    tc = find_tensor(h, "items.category");
    if (!ti || !tc || ti->dtype != MTLD__SNAPSHOT_DTYPE__DTYPE_INT64 ||
        tc->dtype != MTLD__SNAPSHOT_DTYPE__DTYPE_INT64 || ti->rows != h->n_items ||
        tc->rows != h->n_items || ti->cols != 1 || tc->cols != 1)
      BAD("the item set (%" PRIu64 " items) lacks tensors items.id / items.category of that shape",
          h->n_items);
    const unsigned char *ids = p + start + ti->offset;
    uint64_t prev = 0, cur;
    for (uint64_t i = 0; i < h->n_items; i++) {
      memcpy(&cur, ids + 8 * i, 8);
      if (i && cur <= prev) BAD("items.id is not ascending at row %" PRIu64, i);
      prev = cur;
    }
  }

  if (info) {
    info_from_header(&inf, h, &cfg, len);
    if (h->n_offsets) {
      inf.meta.offsets = calloc(h->n_offsets, sizeof(*inf.meta.offsets));
      if (!inf.meta.offsets) goto nomem;
      for (size_t i = 0; i < h->n_offsets; i++) {
        mtld_source_offset_t *o = &inf.meta.offsets[i];
        snprintf(o->topic, sizeof o->topic, "%s", h->offsets[i]->topic);
        o->partition = h->offsets[i]->partition;
        o->next_offset = h->offsets[i]->next_offset;
        o->max_time_ms = h->offsets[i]->max_time_ms;
      }
      inf.meta.n_offsets = (int)h->n_offsets;
    }
    if (h->n_metrics) {
      inf.metrics = calloc(h->n_metrics, sizeof(*inf.metrics));
      if (!inf.metrics) goto nomem;
      for (size_t i = 0; i < h->n_metrics; i++) {
        const Mtld__SnapshotMetrics *x = h->metrics[i];
        mtld_snapshot_metric_t *v = &inf.metrics[i];
        snprintf(v->task, sizeof v->task, "%s", x->task);
        snprintf(v->scenario, sizeof v->scenario, "%s", x->scenario);
        v->s.n = x->n;
        v->s.n_pos = x->n_pos;
        v->s.auc_window = x->auc_window;
        v->s.auc_cum = x->auc_cum;
        v->s.logloss = x->logloss;
        v->s.calibration = x->calibration;
        v->s.rmse = x->rmse;
        v->s.mean_pred = x->mean_pred;
        v->s.mean_label = x->mean_label;
      }
      inf.n_metrics = (int)h->n_metrics;
    }
    if (h->n_items) {
      inf.meta.item_ids = malloc(ti->length);
      inf.meta.item_cats = malloc(tc->length);
      if (!inf.meta.item_ids || !inf.meta.item_cats) goto nomem;
      memcpy(inf.meta.item_ids, p + start + ti->offset, ti->length);
      memcpy(inf.meta.item_cats, p + start + tc->offset, tc->length);
      inf.meta.n_items = (size_t)h->n_items;
    }
  }
out:
  if (h) mtld__snapshot_header__free_unpacked(h, NULL);
  if (st != MTLD_OK) {
    mtld_model_destroy(m);
    mtld_snapshot_info_free(&inf);
    return st;
  }
  *model = m;
  if (info) *info = inf;
  return MTLD_OK;
nomem:
  snprintf(err, errlen, "snapshot: out of memory");
  st = MTLD_ERR_NOMEM;
  goto out;
}

/* Reads a whole file. */
static mtld_status_t read_file(const char *path, unsigned char **out, size_t *len, char *err,
                               size_t errlen) {
  *out = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return errno == ENOENT ? MTLD_ERR_NOTFOUND : MTLD_ERR_IO;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    snprintf(err, errlen, "%s is not a regular file", path);
    return MTLD_ERR_IO;
  }
  size_t size = (size_t)sb.st_size;
  unsigned char *buf = malloc(size ? size : 1);
  if (!buf) {
    close(fd);
    snprintf(err, errlen, "%s: out of memory (%zu bytes)", path, size);
    return MTLD_ERR_NOMEM;
  }
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (got != size) {
    free(buf);
    snprintf(err, errlen, "%s: short read", path);
    return MTLD_ERR_IO;
  }
  *out = buf;
  *len = size;
  return MTLD_OK;
}

mtld_status_t mtld_snapshot_load(const char *path, mtld_model_t **model, mtld_snapshot_info_t *info,
                                 char *err, size_t errlen) {
  *model = NULL;
  char file[PATH_MAX];
  mtld_status_t st = MTLD_ERR_NOTFOUND;
  unsigned char *buf = NULL;
  size_t len = 0;
  /* a writer may replace LATEST and prune the file it named in between:
     resolve again then */
  for (int attempt = 0; attempt < 3; attempt++) {
    st = mtld_snapshot_resolve(path, file, sizeof file, err, errlen);
    if (st != MTLD_OK) return st;
    st = read_file(file, &buf, &len, err, errlen);
    if (st != MTLD_ERR_NOTFOUND || !strcmp(file, path)) break;
  }
  if (st != MTLD_OK) return st;
  st = mtld_snapshot_load_mem(buf, len, model, info, err, errlen);
  free(buf);
  if (st == MTLD_ERR_CORRUPT) {
    /* name the file in the message */
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", err);
    snprintf(err, errlen, "%s: %s", file, tmp);
  }
  if (st == MTLD_OK && info && mtld_pathf(info->path, sizeof info->path, "%s", file) != 0)
    info->path[0] = 0; /* longer than MTLD_SNAPSHOT_PATH_MAX: not recorded */
  return st;
}

mtld_status_t mtld_snapshot_score(mtld_model_t *m, const mtld_sample_t *s, int n, float *preds,
                                  float *cond) {
  int T = mtld_model_config(m)->n_tasks;
  if (n < 1 || n > mtld_model_config(m)->batch_size) return MTLD_ERR_INVALID;
  mtld_model_forward(m, s, n);
  memcpy(preds, mtld_model_preds(m), sizeof(float) * (size_t)n * T);
  if (cond) memcpy(cond, mtld_model_cond_preds(m), sizeof(float) * (size_t)n * T);
  return MTLD_OK;
}

/* ---- top-K ---------------------------------------------------------------- */

/* a ranks before b: higher score, then smaller item id */
static int ranks_before(const mtld_snapshot_ranked_t *a, const mtld_snapshot_ranked_t *b) {
  if (a->score != b->score) return a->score > b->score;
  return a->item < b->item;
}

/* heap[0] is the worst kept (the one any better candidate replaces) */
static void heap_down(mtld_snapshot_ranked_t *h, int n, int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, w = i;
    if (l < n && ranks_before(&h[w], &h[l])) w = l;
    if (r < n && ranks_before(&h[w], &h[r])) w = r;
    if (w == i) return;
    mtld_snapshot_ranked_t t = h[i];
    h[i] = h[w];
    h[w] = t;
    i = w;
  }
}

static void heap_up(mtld_snapshot_ranked_t *h, int i) {
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!ranks_before(&h[p], &h[i])) return;
    mtld_snapshot_ranked_t t = h[i];
    h[i] = h[p];
    h[p] = t;
    i = p;
  }
}

static int cmp_ranked(const void *a, const void *b) {
  const mtld_snapshot_ranked_t *x = a, *y = b;
  return ranks_before(x, y) ? -1 : (ranks_before(y, x) ? 1 : 0);
}

mtld_status_t mtld_snapshot_top_k(mtld_model_t *m, const mtld_sample_t *tmpl, const uint64_t *items,
                                  const uint64_t *cats, size_t n, int task, int k,
                                  mtld_snapshot_fill_fn fill, void *ctx,
                                  mtld_snapshot_ranked_t *out, int *n_out) {
  const mtld_model_config_t *c = mtld_model_config(m);
  *n_out = 0;
  if (task < 0 || task >= c->n_tasks || k < 1) return MTLD_ERR_INVALID;
  int bs = c->batch_size, T = c->n_tasks, kept = 0;
  mtld_sample_t *batch = malloc(sizeof(*batch) * (size_t)bs);
  if (!batch) return MTLD_ERR_NOMEM;
  for (size_t i0 = 0; i0 < n; i0 += (size_t)bs) {
    int nb = n - i0 < (size_t)bs ? (int)(n - i0) : bs;
    for (int j = 0; j < nb; j++) {
      mtld_sample_t *s = &batch[j];
      uint64_t cat = cats ? cats[i0 + j] : 0;
      *s = *tmpl;
      if (s->n_fields <= MTLD_FIELD_CATEGORY) s->n_fields = MTLD_FIELD_CATEGORY + 1;
      s->fields[MTLD_FIELD_ITEM] = items[i0 + j];
      s->fields[MTLD_FIELD_CATEGORY] = cat;
      if (fill) fill(ctx, s, items[i0 + j], cat);
    }
    mtld_model_forward(m, batch, nb);
    const float *p = mtld_model_preds(m);
    for (int j = 0; j < nb; j++) {
      mtld_snapshot_ranked_t r = {items[i0 + j], cats ? cats[i0 + j] : 0, p[(size_t)j * T + task]};
      if (kept < k) {
        out[kept] = r;
        heap_up(out, kept++);
      } else if (ranks_before(&r, &out[0])) {
        out[0] = r;
        heap_down(out, kept, 0);
      }
    }
  }
  free(batch);
  qsort(out, (size_t)kept, sizeof(*out), cmp_ranked);
  *n_out = kept;
  return MTLD_OK;
}
