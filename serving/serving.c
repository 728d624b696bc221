/* serving.c - libmtld-serving (include/mtld/serving.h): the snapshot reader
 * (durable/snapshot.h) behind a small stable interface for serving systems.
 * Requests become samples exactly as `mtld-score --sample-json` builds them
 * without a store (tools/mtld-score.c). */
#include "mtld/serving.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durable/snapshot.h"
#include "features/event.h"

_Static_assert(MTLD_SERVING_ERR_INVALID == MTLD_ERR_INVALID, "error codes");
_Static_assert(MTLD_SERVING_ERR_IO == MTLD_ERR_IO, "error codes");
_Static_assert(MTLD_SERVING_ERR_NOMEM == MTLD_ERR_NOMEM, "error codes");
_Static_assert(MTLD_SERVING_ERR_CORRUPT == MTLD_ERR_CORRUPT, "error codes");
_Static_assert(MTLD_SERVING_ERR_NOTFOUND == MTLD_ERR_NOTFOUND, "error codes");
_Static_assert(MTLD_SERVING_MAX_TASKS == MTLD_MAX_TASKS, "task limit");
_Static_assert(MTLD_SERVING_MAX_DENSE == MTLD_MAX_DENSE, "dense limit");
_Static_assert(MTLD_SERVING_MAX_SEQ == MTLD_MAX_SAMPLE_SEQ, "sequence limit");

#ifndef MTLD_VERSION
#define MTLD_VERSION "dev"
#endif

struct mtld_serving {
  mtld_model_t *model;
  mtld_snapshot_info_t info;
  mtld_sample_t batch[MTLD_SNAPSHOT_MAX_BATCH];
};

const char *mtld_serving_version(void) {
  return MTLD_VERSION;
}

uint64_t mtld_serving_key(const char *key) {
  return mtld_hash_id(key, strlen(key));
}

int mtld_serving_open(mtld_serving_t **out, const char *path, char *err, size_t errlen) {
  char e[1024];
  *out = NULL;
  mtld_serving_t *s = calloc(1, sizeof(*s));
  if (!s) {
    if (err) snprintf(err, errlen, "out of memory");
    return MTLD_SERVING_ERR_NOMEM;
  }
  mtld_status_t st = mtld_snapshot_load(path, &s->model, &s->info, e, sizeof e);
  if (st != MTLD_OK) {
    if (err) snprintf(err, errlen, "%s", e);
    free(s);
    return st;
  }
  *out = s;
  return 0;
}

void mtld_serving_close(mtld_serving_t *s) {
  if (!s) return;
  mtld_model_destroy(s->model);
  mtld_snapshot_info_free(&s->info);
  free(s);
}

const char *mtld_serving_path(const mtld_serving_t *s) {
  return s->info.path;
}

int64_t mtld_serving_watermark_ms(const mtld_serving_t *s) {
  return s->info.meta.watermark_ms;
}

int mtld_serving_n_tasks(const mtld_serving_t *s) {
  return s->info.config.n_tasks;
}

const char *mtld_serving_task_name(const mtld_serving_t *s, int task) {
  return task >= 0 && task < s->info.config.n_tasks ? s->info.config.tasks[task].name : NULL;
}

int mtld_serving_task_index(const mtld_serving_t *s, const char *name) {
  for (int k = 0; k < s->info.config.n_tasks; k++)
    if (!strcmp(s->info.config.tasks[k].name, name)) return k;
  return -1;
}

int mtld_serving_task_is_esmm(const mtld_serving_t *s, int task) {
  return task >= 0 && task < s->info.config.n_tasks &&
         s->info.config.tasks[task].type == MTLD_TASK_ESMM_CTCVR;
}

size_t mtld_serving_n_items(const mtld_serving_t *s) {
  return s->info.meta.n_items;
}

int mtld_serving_n_attrs(const mtld_serving_t *s) {
  return s->info.meta.features.n_attrs;
}

const char *mtld_serving_attr_name(const mtld_serving_t *s, int i) {
  return i >= 0 && i < s->info.meta.features.n_attrs ? s->info.meta.features.attrs[i].name : NULL;
}

int mtld_serving_attr_is_numeric(const mtld_serving_t *s, int i) {
  if (i < 0 || i >= s->info.meta.features.n_attrs) return -1;
  return s->info.meta.features.attrs[i].kind == MTLD_ATTR_NUMERIC;
}

/* A request's attributes, hashed as the daemon's decoder hashes an event's.
 * -1 when invalid. */
static int to_event_attrs(const mtld_serving_attrs_t *a, mtld_event_t *ev) {
  ev->n_attrs = 0;
  ev->attrs_num = 0;
  if (!a) return 0;
  if (a->n < 0 || a->n > MTLD_ATTR_MAX || (a->n && !a->attrs)) return -1;
  for (int i = 0; i < a->n; i++) {
    const mtld_serving_attr_t *x = &a->attrs[i];
    if (!x->name) return -1;
    size_t n = strlen(x->name);
    if (n == 0 || n > MTLD_ATTR_NAME_LEN) return -1;
    uint64_t id = mtld_hash_id(x->name, n);
    if (x->str) {
      size_t vn = strlen(x->str);
      if (vn > MTLD_ATTR_VALUE_LEN) return -1;
      if (vn) mtld_event_attr_set_str(ev, id, mtld_hash_id(x->str, vn));
    } else {
      if (!isfinite(x->num)) return -1;
      mtld_event_attr_set_num(ev, id, x->num);
    }
  }
  return 0;
}

/* Request -> sample (mtld-score's no-store JSON path).  -1 when invalid.
 * item_attrs: see mtld_snapshot_request_attrs. */
static int to_sample(const mtld_serving_t *sv, const mtld_serving_request_t *r,
                     const mtld_serving_attrs_t *attrs, int item_attrs, mtld_sample_t *s) {
  const char *scen = r->scenario ? r->scenario : "";
  size_t sl = strlen(scen);
  if (sl >= MTLD_SCENARIO_MAX || r->n_dense < 0 || r->n_dense > MTLD_MAX_DENSE ||
      (r->n_dense && !r->dense) || r->seq_len < 0 || r->seq_len > MTLD_MAX_SAMPLE_SEQ ||
      (r->seq_len && !r->seq_items))
    return -1;
  memset(s, 0, sizeof(*s));
  s->time_ms = r->time_ms ? r->time_ms : sv->info.meta.watermark_ms;
  s->kind = MTLD_SAMPLE_IMPRESSION;
  s->weight = 1.0f;
  s->n_fields = MTLD_FIELD_EXTRA;
  s->fields[MTLD_FIELD_USER] = r->user;
  s->fields[MTLD_FIELD_ITEM] = r->item;
  s->fields[MTLD_FIELD_CATEGORY] = r->category;
  s->scenario_id = sl ? mtld_hash_id(scen, sl) : 0;
  s->fields[MTLD_FIELD_SCENARIO] = s->scenario_id;
  s->fields[MTLD_FIELD_POSITION] = r->position > 0 ? (uint64_t)(uint32_t)r->position : 0;
  s->fields[MTLD_FIELD_HOUR] = mtld_sample_hour_id(s->time_ms);
  memcpy(s->scenario, scen, sl);
  s->n_dense = r->n_dense;
  if (r->n_dense) memcpy(s->dense, r->dense, sizeof(float) * (size_t)r->n_dense);
  s->seq_len = r->seq_len;
  for (int j = 0; j < r->seq_len; j++) {
    s->seq_items[j] = r->seq_items[j];
    s->seq_cats[j] = r->seq_cats ? r->seq_cats[j] : 0;
  }
  if (sv->info.meta.features.n_attrs > 0 || attrs) {
    mtld_event_t ev;
    if (to_event_attrs(attrs, &ev) != 0) return -1;
    mtld_snapshot_request_attrs(&sv->info.meta, &ev, item_attrs, s);
  }
  return 0;
}

int mtld_serving_score(mtld_serving_t *s, const mtld_serving_request_t *req, int n, float *preds,
                       float *pcvr) {
  return mtld_serving_score_attrs(s, req, NULL, n, preds, pcvr);
}

int mtld_serving_score_attrs(mtld_serving_t *s, const mtld_serving_request_t *req,
                             const mtld_serving_attrs_t *attrs, int n, float *preds, float *pcvr) {
  if (n < 1) return MTLD_SERVING_ERR_INVALID;
  int bs = mtld_model_config(s->model)->batch_size, T = s->info.config.n_tasks;
  for (int i0 = 0; i0 < n; i0 += bs) {
    int nb = n - i0 < bs ? n - i0 : bs;
    for (int j = 0; j < nb; j++)
      if (to_sample(s, &req[i0 + j], attrs ? &attrs[i0 + j] : NULL, 1, &s->batch[j]) != 0)
        return MTLD_SERVING_ERR_INVALID;
    mtld_status_t st = mtld_snapshot_score(s->model, s->batch, nb, preds + (size_t)i0 * T,
                                           pcvr ? pcvr + (size_t)i0 * T : NULL);
    if (st != MTLD_OK) return st;
  }
  return 0;
}

int mtld_serving_top_k(mtld_serving_t *s, const mtld_serving_request_t *req, int task, int k,
                       uint64_t *items, float *scores, int *n_out) {
  return mtld_serving_top_k_attrs(s, req, NULL, task, k, items, scores, n_out);
}

int mtld_serving_top_k_attrs(mtld_serving_t *s, const mtld_serving_request_t *req,
                             const mtld_serving_attrs_t *attrs, int task, int k, uint64_t *items,
                             float *scores, int *n_out) {
  *n_out = 0;
  if (!s->info.meta.n_items) return MTLD_SERVING_ERR_NOTFOUND;
  if (k < 1 || task < 0 || task >= s->info.config.n_tasks) return MTLD_SERVING_ERR_INVALID;
  mtld_sample_t tmpl;
  if (to_sample(s, req, attrs, 0, &tmpl) != 0) return MTLD_SERVING_ERR_INVALID;
  size_t n = s->info.meta.n_items;
  int kk = (size_t)k < n ? k : (int)n;
  mtld_snapshot_ranked_t *r = malloc(sizeof(*r) * (size_t)kk);
  if (!r) return MTLD_SERVING_ERR_NOMEM;
  mtld_status_t st = mtld_snapshot_top_k(s->model, &tmpl, s->info.meta.item_ids,
                                         s->info.meta.item_cats, n, task, kk, NULL, NULL, r, n_out);
  for (int i = 0; st == MTLD_OK && i < *n_out; i++) {
    items[i] = r[i].item;
    if (scores) scores[i] = r[i].score;
  }
  free(r);
  return st;
}
