/* embed.c - hashed embedding tables: sparse row-wise Adagrad / lazy Adam,
 * count-min admission, event-time expiry (see embed.h for the protocol). */
#include "trainer/embed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEAD INT64_MIN

/* h % n, by a mask when n is a power of two (mask = n - 1; 0 otherwise) */
static inline uint32_t reduce(uint64_t h, uint32_t n, uint32_t mask) {
  return mask ? (uint32_t)(h & mask) : (uint32_t)(h % n);
}

static uint32_t pow2_mask(uint32_t n) {
  return n > 1 && (n & (n - 1)) == 0 ? n - 1 : 0;
}

static uint32_t row_of(const mtld_embed_t *e, uint64_t id) {
  return reduce(mtld_mix64(id ^ e->seed), e->rows, e->row_mask);
}

static void cms_index(const mtld_embed_t *e, uint64_t id, uint32_t *i0, uint32_t *i1) {
  uint64_t h = mtld_mix64(id ^ e->seed ^ 0x5bd1e9955bd1e995ULL);
  *i0 = reduce(h & 0xffffffffu, e->cms_width, e->cms_mask);
  *i1 = e->cms_width + reduce(h >> 32, e->cms_width, e->cms_mask);
}

static int admitted(const mtld_embed_t *e, uint64_t id) {
  if (!e->cms) return 1;
  uint32_t i0, i1;
  cms_index(e, id, &i0, &i1);
  uint32_t c = e->cms[i0] < e->cms[i1] ? e->cms[i0] : e->cms[i1];
  return c >= e->cfg.admit_after;
}

mtld_status_t mtld_embed_init(mtld_embed_t *e, float *w, uint32_t rows, int dim, uint64_t seed,
                              const mtld_embed_config_t *cfg, uint32_t max_touched, char *err,
                              size_t errlen) {
  memset(e, 0, sizeof(*e));
  if (rows == 0 || dim <= 0 || max_touched == 0) {
    snprintf(err, errlen, "embedding table needs rows > 0 and dim > 0");
    return MTLD_ERR_INVALID;
  }
  e->rows = rows;
  e->row_mask = pow2_mask(rows);
  e->dim = dim;
  e->seed = seed;
  e->cfg = *cfg;
  e->w = w;
  e->max_touched = max_touched;
  memset(w, 0, sizeof(float) * (size_t)rows * dim);
  e->acc = calloc(rows, sizeof(float));
  e->last_used = malloc(sizeof(int64_t) * rows);
  e->slot_of = malloc(sizeof(int32_t) * rows);
  e->touched = malloc(sizeof(int32_t) * max_touched);
  e->grad = malloc(sizeof(float) * (size_t)max_touched * dim);
  int ok = e->acc && e->last_used && e->slot_of && e->touched && e->grad;
  if (cfg->optim == MTLD_EMB_ADAM) {
    e->m = calloc((size_t)rows * dim, sizeof(float));
    e->v = calloc((size_t)rows * dim, sizeof(float));
    ok = ok && e->m && e->v;
  }
  if (cfg->admit_after > 1) {
    e->cms_width = rows < 1024 ? 1024 : rows;
    e->cms_mask = pow2_mask(e->cms_width);
    e->cms = calloc((size_t)e->cms_width * 2, sizeof(uint16_t));
    ok = ok && e->cms;
  }
  if (!ok) {
    mtld_embed_free(e);
    snprintf(err, errlen, "embedding table of %u rows: out of memory", rows);
    return MTLD_ERR_NOMEM;
  }
  for (uint32_t r = 0; r < rows; r++) {
    e->last_used[r] = DEAD;
    e->slot_of[r] = -1;
  }
  return MTLD_OK;
}

void mtld_embed_free(mtld_embed_t *e) {
  free(e->acc);
  free(e->m);
  free(e->v);
  free(e->last_used);
  free(e->cms);
  free(e->slot_of);
  free(e->touched);
  free(e->grad);
  memset(e, 0, sizeof(*e));
}

int32_t mtld_embed_find(mtld_embed_t *e, uint64_t id, int64_t now_ms) {
  if (id == 0) return -1;
  e->stats.lookups++;
  uint32_t r = row_of(e, id);
  int64_t last = e->last_used[r];
  if (last == DEAD || !admitted(e, id) ||
      (e->cfg.expire_ms > 0 && now_ms - last > e->cfg.expire_ms)) {
    e->stats.misses++;
    return -1;
  }
  return (int32_t)r;
}

void mtld_embed_grad_add(mtld_embed_t *e, int32_t row, const float *g) {
  int32_t s = e->slot_of[row];
  float *dst;
  if (s < 0) {
    if (e->n_touched == e->max_touched) return; /* bounded by construction; never hit */
    s = (int32_t)e->n_touched++;
    e->slot_of[row] = s;
    e->touched[s] = row;
    dst = e->grad + (size_t)s * e->dim;
    memcpy(dst, g, sizeof(float) * (size_t)e->dim);
    return;
  }
  dst = e->grad + (size_t)s * e->dim;
  for (int j = 0; j < e->dim; j++) dst[j] += g[j];
}

const float *mtld_embed_grad_of(const mtld_embed_t *e, int32_t row) {
  int32_t s = e->slot_of[row];
  return s < 0 ? NULL : e->grad + (size_t)s * e->dim;
}

void mtld_embed_apply(mtld_embed_t *e) {
  int D = e->dim;
  const mtld_embed_config_t *c = &e->cfg;
  if (e->n_touched && c->optim == MTLD_EMB_ADAM) e->adam_step++;
  float bc1 = 1.0f, bc2 = 1.0f;
  if (c->optim == MTLD_EMB_ADAM) {
    bc1 = 1.0f - powf(c->beta1, (float)e->adam_step);
    bc2 = 1.0f - powf(c->beta2, (float)e->adam_step);
  }
  for (uint32_t s = 0; s < e->n_touched; s++) {
    int32_t r = e->touched[s];
    const float *g = e->grad + (size_t)s * D;
    float *w = e->w + (size_t)r * D;
    if (c->optim == MTLD_EMB_ADAM) {
      float *m = e->m + (size_t)r * D, *v = e->v + (size_t)r * D;
      for (int j = 0; j < D; j++) {
        m[j] = c->beta1 * m[j] + (1.0f - c->beta1) * g[j];
        v[j] = c->beta2 * v[j] + (1.0f - c->beta2) * g[j] * g[j];
        w[j] -= c->lr * (m[j] / bc1) / (sqrtf(v[j] / bc2) + c->eps);
      }
    } else {
      float g2 = 0.0f;
      for (int j = 0; j < D; j++) g2 += g[j] * g[j];
      e->acc[r] += g2 / (float)D;
      float step = c->lr / (sqrtf(e->acc[r]) + c->eps);
      for (int j = 0; j < D; j++) w[j] -= step * g[j];
    }
    e->slot_of[r] = -1;
  }
  e->n_touched = 0;
}

static void kill_row(mtld_embed_t *e, uint32_t r) {
  e->last_used[r] = DEAD;
  memset(e->w + (size_t)r * e->dim, 0, sizeof(float) * (size_t)e->dim);
  e->stats.evictions++;
  e->stats.live_rows--;
}

static void init_row(mtld_embed_t *e, uint32_t r) {
  mtld_embed_row_init_values(e, r, e->w + (size_t)r * e->dim);
  e->acc[r] = e->cfg.adagrad_init;
  if (e->m) {
    memset(e->m + (size_t)r * e->dim, 0, sizeof(float) * (size_t)e->dim);
    memset(e->v + (size_t)r * e->dim, 0, sizeof(float) * (size_t)e->dim);
  }
  e->stats.admitted++;
  e->stats.live_rows++;
}

void mtld_embed_row_init_values(const mtld_embed_t *e, uint32_t r, float *out) {
  for (int j = 0; j < e->dim; j++) {
    uint64_t h = mtld_mix64(e->seed ^ ((uint64_t)r * (uint64_t)e->dim + (uint64_t)j + 1));
    float u = (float)(h >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
    out[j] = e->cfg.init_scale * (2.0f * u - 1.0f);
  }
}

void mtld_embed_revive(mtld_embed_t *e, uint32_t r, int64_t last_used) {
  if (r >= e->rows) return;
  if (e->last_used[r] == DEAD) init_row(e, r);
  if (e->last_used[r] == DEAD || last_used > e->last_used[r]) e->last_used[r] = last_used;
}

void mtld_embed_kill(mtld_embed_t *e, uint32_t r) {
  if (r < e->rows && e->last_used[r] != DEAD) kill_row(e, r);
}

void mtld_embed_touch(mtld_embed_t *e, uint64_t id, int64_t now_ms, int count) {
  if (id == 0) return;
  if (count && e->cms) {
    uint32_t i0, i1;
    cms_index(e, id, &i0, &i1);
    if (e->cms[i0] < UINT16_MAX) e->cms[i0]++;
    if (e->cms[i1] < UINT16_MAX) e->cms[i1]++;
  }
  uint32_t r = row_of(e, id);
  if (e->last_used[r] != DEAD && e->cfg.expire_ms > 0 &&
      now_ms - e->last_used[r] > e->cfg.expire_ms)
    kill_row(e, r);
  if (e->last_used[r] == DEAD) {
    if (!admitted(e, id)) return;
    init_row(e, r);
    e->last_used[r] = now_ms;
  }
  if (now_ms > e->last_used[r]) e->last_used[r] = now_ms;
}

void mtld_embed_sweep(mtld_embed_t *e, int64_t now_ms) {
  if (e->cfg.expire_ms > 0) {
    for (uint32_t r = 0; r < e->rows; r++)
      if (e->last_used[r] != DEAD && now_ms - e->last_used[r] > e->cfg.expire_ms) kill_row(e, r);
  }
  if (e->cms)
    for (uint32_t i = 0; i < 2 * e->cms_width; i++) e->cms[i] >>= 1;
}

int mtld_embed_row_export(const mtld_embed_t *e, uint64_t id, float *w, float *m, float *v,
                          float *acc, int64_t *last_used, uint32_t *count) {
  *count = 0;
  if (e->cms) {
    uint32_t i0, i1;
    cms_index(e, id, &i0, &i1);
    *count = e->cms[i0] < e->cms[i1] ? e->cms[i0] : e->cms[i1];
  }
  uint32_t r = row_of(e, id);
  *last_used = e->last_used[r];
  *acc = e->acc[r];
  size_t D = (size_t)e->dim;
  memcpy(w, e->w + (size_t)r * D, sizeof(float) * D);
  if (e->m) {
    memcpy(m, e->m + (size_t)r * D, sizeof(float) * D);
    memcpy(v, e->v + (size_t)r * D, sizeof(float) * D);
  }
  return e->last_used[r] != DEAD;
}

void mtld_embed_row_import(mtld_embed_t *e, uint64_t id, int live, const float *w, const float *m,
                           const float *v, float acc, int64_t last_used, uint32_t count) {
  if (id == 0) return;
  if (e->cms) {
    uint32_t i0, i1, c = count < UINT16_MAX ? count : UINT16_MAX;
    cms_index(e, id, &i0, &i1);
    if (e->cms[i0] < c) e->cms[i0] = (uint16_t)c;
    if (e->cms[i1] < c) e->cms[i1] = (uint16_t)c;
  }
  if (!live || last_used == DEAD) return;
  uint32_t r = row_of(e, id);
  if (e->last_used[r] == DEAD) {
    e->stats.admitted++;
    e->stats.live_rows++;
  }
  size_t D = (size_t)e->dim;
  memcpy(e->w + (size_t)r * D, w, sizeof(float) * D);
  if (e->m && m && v) {
    memcpy(e->m + (size_t)r * D, m, sizeof(float) * D);
    memcpy(e->v + (size_t)r * D, v, sizeof(float) * D);
  }
  e->acc[r] = acc;
  e->last_used[r] = last_used;
}

size_t mtld_embed_state_bytes(const mtld_embed_t *e) {
  size_t n = (size_t)e->rows * (sizeof(float) + sizeof(int64_t) + sizeof(int32_t));
  if (e->m) n += 2 * sizeof(float) * (size_t)e->rows * e->dim;
  if (e->cms) n += 2 * sizeof(uint16_t) * (size_t)e->cms_width;
  n += (size_t)e->max_touched * (sizeof(int32_t) + sizeof(float) * (size_t)e->dim);
  return n;
}
