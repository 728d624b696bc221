/* delta.c - model deltas and bases between data-parallel instances (see
 * delta.h). */
#include "trainer/delta.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/hash.h"

#define DEAD INT64_MIN
#define HEADER_BYTES (8 + 4 + 8 + 4 + 4)
#define NORM_BYTES (8 + 16 * MTLD_MAX_DENSE + 16 * MTLD_MAX_TASKS)

struct mtld_delta {
  mtld_model_t *m;
  uint64_t local;
  uint64_t shape;
  size_t n_dense;
  float *dense;                    /* shadow of params[0 .. n_dense) */
  float *rows[MTLD_MAX_FIELDS];    /* shadow of shared tables' weights, NULL for local */
  float *acc[MTLD_MAX_FIELDS];     /* shadow of their Adagrad accumulators (exchanged tables) */
  uint8_t *alive[MTLD_MAX_FIELDS]; /* the shadow row exists */
  uint16_t *cms[MTLD_MAX_FIELDS];  /* shadow of shared tables' admission sketches (NULL: none) */
  int n_fields;
  int dim;
  int with_acc;                   /* MTLD_DELTA_ACCUMULATORS */
  double mean_at[MTLD_MAX_TASKS]; /* bias_mean tasks: the label mean at the last extract */
};

/* The bias shifts of bias_mean tasks are each instance's own (every instance
 * follows its running label mean): never published, so the shared bias
 * carries one shift, not one per instance. */
static void note_means(mtld_delta_t *d) {
  for (int t = 0; t < MTLD_MAX_TASKS; t++) {
    double sum;
    uint64_t n;
    size_t at;
    if (!mtld_model_label_mean(d->m, t, &d->mean_at[t], &sum, &n, &at)) d->mean_at[t] = 0;
  }
}

static int shared(const mtld_delta_t *d, int f) {
  return !(d->local >> f & 1u);
}

/* Field f's row accumulators travel with its rows (a row-wise Adagrad table
 * with MTLD_DELTA_ACCUMULATORS); else the rows carry 0. */
static int acc_of(const mtld_delta_t *d, int f) {
  return d->acc[f] != NULL;
}

void mtld_delta_free(mtld_delta_t *d) {
  if (!d) return;
  free(d->dense);
  for (int f = 0; f < MTLD_MAX_FIELDS; f++) {
    free(d->rows[f]);
    free(d->alive[f]);
    free(d->acc[f]);
    free(d->cms[f]);
  }
  free(d);
}

mtld_status_t mtld_delta_new(mtld_delta_t **out, mtld_model_t *m, uint64_t local_fields,
                             unsigned flags, char *err, size_t errlen) {
  *out = NULL;
  const mtld_model_config_t *c = mtld_model_config(m);
  if (c->n_fields < 64 && (local_fields >> c->n_fields) != 0) {
    snprintf(err, errlen, "local field mask names a field the model does not have");
    return MTLD_ERR_INVALID;
  }
  mtld_delta_t *d = calloc(1, sizeof(*d));
  if (!d) goto nomem;
  d->m = m;
  d->local = local_fields;
  d->n_fields = c->n_fields;
  d->dim = c->dim;
  d->with_acc = (flags & MTLD_DELTA_ACCUMULATORS) != 0;
  float *params, *grads;
  size_t n;
  mtld_model_params(m, &params, &n);
  mtld_model_grads(m, &grads, &d->n_dense);
  d->dense = malloc(sizeof(float) * (d->n_dense ? d->n_dense : 1));
  if (!d->dense) goto nomem;
  memcpy(d->dense, params, sizeof(float) * d->n_dense);
  uint64_t h = mtld_mix64(0x6d746c6464656c74ULL ^ d->n_dense);
  h = mtld_mix64(h ^ (uint64_t)c->dim);
  h = mtld_mix64(h ^ local_fields);
  h = mtld_mix64(h ^ mtld_model_param_count(c));
  h = mtld_mix64(h ^ (uint64_t)d->with_acc);
  for (int f = 0; f < c->n_fields; f++) {
    mtld_embed_t *e = mtld_model_embed(m, f);
    h = mtld_mix64(h ^ e->rows);
    h = mtld_mix64(h ^ e->seed);
    if (!shared(d, f)) continue;
    size_t cells = (size_t)e->rows * e->dim;
    d->rows[f] = malloc(sizeof(float) * cells);
    d->alive[f] = malloc(e->rows);
    if (!d->rows[f] || !d->alive[f]) goto nomem;
    memcpy(d->rows[f], e->w, sizeof(float) * cells);
    for (uint32_t r = 0; r < e->rows; r++) d->alive[f][r] = e->last_used[r] != DEAD;
    if (e->cms) {
      size_t cells = 2 * (size_t)e->cms_width;
      h = mtld_mix64(h ^ (0x636d7300ULL + cells));
      d->cms[f] = malloc(sizeof(uint16_t) * cells);
      if (!d->cms[f]) goto nomem;
      memcpy(d->cms[f], e->cms, sizeof(uint16_t) * cells);
    }
    if (d->with_acc) h = mtld_mix64(h ^ (uint64_t)e->cfg.optim);
    if (d->with_acc && e->cfg.optim == MTLD_EMB_ADAGRAD) {
      d->acc[f] = malloc(sizeof(float) * (e->rows ? e->rows : 1));
      if (!d->acc[f]) goto nomem;
      memcpy(d->acc[f], e->acc, sizeof(float) * e->rows);
    }
  }
  d->shape = h;
  note_means(d);
  *out = d;
  return MTLD_OK;
nomem:
  mtld_delta_free(d);
  snprintf(err, errlen, "model sync: out of memory for the shadow of the shared model");
  return MTLD_ERR_NOMEM;
}

uint64_t mtld_delta_shape(const mtld_delta_t *d) {
  return d->shape;
}

/* ---- encoding buffer ------------------------------------------------------- */

typedef struct {
  uint8_t *p;
  size_t len, cap;
  int failed;
} buf_t;

static uint8_t *reserve(buf_t *b, size_t n) {
  if (b->failed) return NULL;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
      b->failed = 1;
      return NULL;
    }
    b->p = p;
    b->cap = cap;
  }
  uint8_t *at = b->p + b->len;
  b->len += n;
  return at;
}

static void put32(buf_t *b, uint32_t v) {
  uint8_t *p = reserve(b, 4);
  if (p) mtld_put_le32(p, v);
}
static void put64(buf_t *b, uint64_t v) {
  uint8_t *p = reserve(b, 8);
  if (p) mtld_put_le64(p, v);
}
static void putf(buf_t *b, float v) {
  uint8_t *p = reserve(b, 4);
  if (p) mtld_put_f32(p, v);
}
static void putd(buf_t *b, double v) {
  uint8_t *p = reserve(b, 8);
  if (p) mtld_put_f64(p, v);
}

static uint32_t get16(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static int n_sketches(const mtld_delta_t *d) {
  int n = 0;
  for (int f = 0; f < d->n_fields; f++) n += d->cms[f] != NULL;
  return n;
}

/* The sketches part (delta.h): per shared table with a sketch, its cells
 * that a BASE holds non-zero (their counts) or a DELTA saw grow (the
 * increments); the shadow becomes the sketch.  A count that went down here
 * (the sweep halves it) publishes nothing. */
static void put_sketches(mtld_delta_t *d, buf_t *b, int kind) {
  put32(b, (uint32_t)n_sketches(d));
  for (int f = 0; f < d->n_fields && !b->failed; f++) {
    if (!d->cms[f]) continue;
    mtld_embed_t *e = mtld_model_embed(d->m, f);
    uint32_t cells = 2 * e->cms_width;
    put32(b, (uint32_t)f);
    put32(b, cells);
    size_t count_at = b->len;
    put32(b, 0);
    uint32_t count = 0;
    for (uint32_t i = 0; i < cells && !b->failed; i++) {
      uint16_t cur = e->cms[i], *sh = &d->cms[f][i];
      uint16_t v = kind == MTLD_DELTA_BASE ? *sh : (cur > *sh ? (uint16_t)(cur - *sh) : 0);
      if (kind == MTLD_DELTA_DELTA) *sh = cur;
      if (!v) continue;
      put32(b, i);
      uint8_t *p = reserve(b, 2);
      if (p) p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
      count++;
    }
    if (!b->failed) mtld_put_le32(b->p + count_at, count);
  }
}

mtld_status_t mtld_delta_extract(mtld_delta_t *d, int kind, void **buf, size_t *len,
                                 mtld_delta_stats_t *st) {
  *buf = NULL;
  *len = 0;
  buf_t b = {0};
  float *params;
  size_t n;
  mtld_model_params(d->m, &params, &n);
  double dl2 = 0, wl2 = 0;
  uint64_t nrows = 0;
  int D = d->dim;
  int n_tables = 0;
  for (int f = 0; f < d->n_fields; f++) n_tables += shared(d, f);
  uint8_t *magic = reserve(&b, 8);
  if (magic) memcpy(magic, MTLD_DELTA_MAGIC, 8);
  put32(&b, (uint32_t)kind);
  put64(&b, d->shape);
  put32(&b, (uint32_t)d->n_dense);
  put32(&b, (uint32_t)n_tables);
  if (kind == MTLD_DELTA_BASE) {
    uint64_t cnt;
    double mean[MTLD_MAX_DENSE], m2[MTLD_MAX_DENSE];
    mtld_model_normaliser(d->m, &cnt, mean, m2);
    put64(&b, cnt);
    for (int i = 0; i < MTLD_MAX_DENSE; i++) putd(&b, mean[i]);
    for (int i = 0; i < MTLD_MAX_DENSE; i++) putd(&b, m2[i]);
    for (int t = 0; t < MTLD_MAX_TASKS; t++) {
      double mean = 0, sum = 0;
      uint64_t n = 0;
      size_t at;
      mtld_model_label_mean(d->m, t, &mean, &sum, &n, &at);
      putd(&b, sum);
      put64(&b, n);
    }
  }
  float shift[MTLD_MAX_TASKS];
  size_t shift_at[MTLD_MAX_TASKS];
  int n_shift = 0;
  if (kind == MTLD_DELTA_DELTA) {
    for (int t = 0; t < MTLD_MAX_TASKS; t++) {
      double mean, sum;
      uint64_t n;
      size_t at;
      if (!mtld_model_label_mean(d->m, t, &mean, &sum, &n, &at)) continue;
      shift[n_shift] = (float)(mean - d->mean_at[t]);
      shift_at[n_shift++] = at;
      d->mean_at[t] = mean;
    }
  }
  for (size_t i = 0; i < d->n_dense; i++) {
    if (kind == MTLD_DELTA_BASE) {
      putf(&b, d->dense[i]);
      continue;
    }
    float x = params[i] - d->dense[i];
    for (int k = 0; k < n_shift; k++)
      if (shift_at[k] == i) x -= shift[k];
    putf(&b, x);
    dl2 += (double)x * x;
    wl2 += (double)params[i] * params[i];
    d->dense[i] = params[i];
  }
  float *init = malloc(sizeof(float) * (size_t)D);
  if (!init) b.failed = 1;
  for (int f = 0; f < d->n_fields && !b.failed; f++) {
    if (!shared(d, f)) continue;
    mtld_embed_t *e = mtld_model_embed(d->m, f);
    put32(&b, (uint32_t)f);
    size_t count_at = b.len;
    put32(&b, 0);
    uint32_t count = 0;
    for (uint32_t r = 0; r < e->rows && !b.failed; r++) {
      float *w = e->w + (size_t)r * D, *s = d->rows[f] + (size_t)r * D;
      int live = e->last_used[r] != DEAD;
      float *sacc = acc_of(d, f) ? &d->acc[f][r] : NULL;
      if (kind == MTLD_DELTA_BASE) {
        if (!live || !d->alive[f][r]) continue;
        put32(&b, r);
        put64(&b, (uint64_t)e->last_used[r]);
        for (int j = 0; j < D; j++) putf(&b, s[j]);
        putf(&b, sacc ? *sacc : 0.0f);
        count++;
        continue;
      }
      if (!live) { /* died here (or never lived): nothing to publish */
        if (d->alive[f][r]) {
          memset(s, 0, sizeof(float) * (size_t)D);
          if (sacc) *sacc = 0;
          d->alive[f][r] = 0;
        }
        continue;
      }
      const float *from = s;
      float from_acc = sacc ? *sacc : 0.0f;
      if (!d->alive[f][r]) { /* born here since the last extract: from its initial values */
        mtld_embed_row_init_values(e, r, init);
        from = init;
        from_acc = e->cfg.adagrad_init;
      }
      int moved = !d->alive[f][r] || (sacc && e->acc[r] != from_acc);
      for (int j = 0; j < D && !moved; j++) moved = w[j] != from[j];
      for (int j = 0; j < D; j++) wl2 += (double)w[j] * w[j];
      if (!moved) continue;
      put32(&b, r);
      put64(&b, (uint64_t)e->last_used[r]);
      for (int j = 0; j < D; j++) {
        float x = w[j] - from[j];
        putf(&b, x);
        dl2 += (double)x * x;
      }
      putf(&b, sacc ? e->acc[r] - from_acc : 0.0f);
      memcpy(s, w, sizeof(float) * (size_t)D);
      if (sacc) *sacc = e->acc[r];
      d->alive[f][r] = 1;
      count++;
    }
    if (!b.failed) mtld_put_le32(b.p + count_at + 0, count);
    nrows += count;
  }
  free(init);
  put_sketches(d, &b, kind);
  if (b.failed) {
    free(b.p);
    return MTLD_ERR_NOMEM;
  }
  *buf = b.p;
  *len = b.len;
  if (st) {
    st->rows = nrows;
    st->bytes = b.len;
    st->delta_l2 = sqrt(dl2);
    st->weight_l2 = sqrt(wl2);
    st->divergence = wl2 > 0 ? sqrt(dl2) / sqrt(wl2) : 0;
  }
  return MTLD_OK;
}

int mtld_delta_peek(const void *buf, size_t len, uint64_t *shape) {
  const uint8_t *p = buf;
  if (len < HEADER_BYTES || memcmp(p, MTLD_DELTA_MAGIC, 7) != 0) return -1;
  if (p[7] != (uint8_t)MTLD_DELTA_MAGIC[7]) return -2;
  uint32_t kind = mtld_get_le32(p + 8);
  if (kind != MTLD_DELTA_DELTA && kind != MTLD_DELTA_BASE) return -1;
  if (shape) *shape = mtld_get_le64(p + 12);
  return (int)kind;
}

/* Walks the tables part of a message: checks it (apply = 0) or applies it. */
static int walk(mtld_delta_t *d, const uint8_t *p, size_t len, size_t at, int kind, int apply,
                uint8_t **seen, char *err, size_t errlen) {
  int D = d->dim;
  size_t row_bytes = 4 + 8 + 4 * (size_t)D + 4;
  float init[256];
  uint32_t n_tables = mtld_get_le32(p + 24);
  int tables = 0;
  for (int f = 0; f < d->n_fields; f++) tables += shared(d, f);
  if (n_tables != (uint32_t)tables) {
    snprintf(err, errlen, "model message: %u tables, expected %d", n_tables, tables);
    return -1;
  }
  for (uint32_t t = 0; t < n_tables; t++) {
    if (len - at < 8) {
      snprintf(err, errlen, "model message: truncated table header");
      return -1;
    }
    uint32_t f = mtld_get_le32(p + at), cnt = mtld_get_le32(p + at + 4);
    at += 8;
    if (f >= (uint32_t)d->n_fields || !shared(d, (int)f)) {
      snprintf(err, errlen, "model message: table %u is not shared here", f);
      return -1;
    }
    if ((len - at) / row_bytes < cnt) {
      snprintf(err, errlen, "model message: truncated rows of table %u", f);
      return -1;
    }
    mtld_embed_t *e = mtld_model_embed(d->m, (int)f);
    for (uint32_t i = 0; i < cnt; i++, at += row_bytes) {
      uint32_t r = mtld_get_le32(p + at);
      int64_t lu = (int64_t)mtld_get_le64(p + at + 4);
      if (r >= e->rows || lu == DEAD) {
        snprintf(err, errlen, "model message: bad row %u of table %u", r, f);
        return -1;
      }
      if (!apply) continue;
      const uint8_t *v = p + at + 12;
      float *w = e->w + (size_t)r * D, *s = d->rows[f] + (size_t)r * D;
      float a = mtld_get_f32(v + 4 * (size_t)D); /* accumulator (BASE) or its increment */
      float *sacc = acc_of(d, (int)f) ? &d->acc[f][r] : NULL;
      if (kind == MTLD_DELTA_BASE) {
        mtld_embed_revive(e, r, lu);
        for (int j = 0; j < D; j++) w[j] = s[j] = mtld_get_f32(v + 4 * j);
        if (sacc) e->acc[r] = *sacc = a;
        d->alive[f][r] = 1;
        seen[f][r] = 1;
        continue;
      }
      mtld_embed_revive(e, r, lu); /* a dead row comes to life at its initial values */
      if (!d->alive[f][r]) {       /* the shadow's baseline is the initial values too */
        mtld_embed_row_init_values(e, r, init);
        memcpy(s, init, sizeof(float) * (size_t)D);
        if (sacc) *sacc = e->cfg.adagrad_init;
        d->alive[f][r] = 1;
      }
      for (int j = 0; j < D; j++) {
        float x = mtld_get_f32(v + 4 * j);
        w[j] += x;
        s[j] += x;
      }
      if (sacc) {
        e->acc[r] += a;
        *sacc += a;
      }
    }
  }
  /* the sketches */
  if (len - at < 4 || mtld_get_le32(p + at) != (uint32_t)n_sketches(d)) {
    snprintf(err, errlen, "model message: admission sketches missing or not ours");
    return -1;
  }
  at += 4;
  for (int f = 0; f < d->n_fields; f++) {
    if (!d->cms[f]) continue;
    mtld_embed_t *e = mtld_model_embed(d->m, f);
    uint32_t cells = 2 * e->cms_width;
    if (len - at < 12 || mtld_get_le32(p + at) != (uint32_t)f ||
        mtld_get_le32(p + at + 4) != cells || (len - at - 12) / 6 < mtld_get_le32(p + at + 8)) {
      snprintf(err, errlen, "model message: bad admission sketch of table %d", f);
      return -1;
    }
    uint32_t cnt = mtld_get_le32(p + at + 8);
    at += 12;
    if (apply && kind == MTLD_DELTA_BASE) {
      memset(e->cms, 0, sizeof(uint16_t) * cells);
      memset(d->cms[f], 0, sizeof(uint16_t) * cells);
    }
    for (uint32_t i = 0; i < cnt; i++, at += 6) {
      uint32_t c = mtld_get_le32(p + at);
      if (c >= cells) {
        snprintf(err, errlen, "model message: bad admission sketch cell of table %d", f);
        return -1;
      }
      if (!apply) continue;
      uint32_t v = get16(p + at + 4);
      if (kind == MTLD_DELTA_DELTA) v += e->cms[c]; /* increments add up, saturating */
      e->cms[c] = (uint16_t)(v < UINT16_MAX ? v : UINT16_MAX);
      if (kind == MTLD_DELTA_BASE) {
        d->cms[f][c] = e->cms[c];
      } else {
        uint32_t sv = (uint32_t)d->cms[f][c] + get16(p + at + 4);
        d->cms[f][c] = (uint16_t)(sv < UINT16_MAX ? sv : UINT16_MAX);
      }
    }
  }
  if (at != len) {
    snprintf(err, errlen, "model message: %zu trailing bytes", len - at);
    return -1;
  }
  return 0;
}

mtld_status_t mtld_delta_apply(mtld_delta_t *d, const void *buf, size_t len, char *err,
                               size_t errlen) {
  const uint8_t *p = buf;
  uint64_t shape = 0;
  int kind = mtld_delta_peek(buf, len, &shape);
  if (kind == -2) {
    snprintf(err, errlen, "model message of another format version (%.8s, ours %s)",
             (const char *)p, MTLD_DELTA_MAGIC);
    return MTLD_ERR_SCHEMA;
  }
  if (kind < 0) {
    snprintf(err, errlen, "model message: not a model delta or base");
    return MTLD_ERR_CORRUPT;
  }
  if (shape != d->shape) {
    snprintf(err, errlen,
             "model message of another model configuration (shape %016llx, ours %016llx)",
             (unsigned long long)shape, (unsigned long long)d->shape);
    return MTLD_ERR_SCHEMA;
  }
  if (d->dim > 256) {
    snprintf(err, errlen, "model sync supports dim <= 256");
    return MTLD_ERR_INVALID;
  }
  uint32_t n_dense = mtld_get_le32(p + 20);
  size_t at = HEADER_BYTES;
  size_t need = (kind == MTLD_DELTA_BASE ? NORM_BYTES : 0) + 4 * (size_t)n_dense;
  if (n_dense != d->n_dense || len - at < need) {
    snprintf(err, errlen, "model message: dense part of %u floats, expected %zu", n_dense,
             d->n_dense);
    return MTLD_ERR_CORRUPT;
  }
  size_t tables_at = at + need;
  if (walk(d, p, len, tables_at, kind, 0, NULL, err, errlen) != 0) return MTLD_ERR_CORRUPT;
  uint8_t *seen[MTLD_MAX_FIELDS] = {0};
  if (kind == MTLD_DELTA_BASE) {
    for (int f = 0; f < d->n_fields; f++) {
      if (!shared(d, f)) continue;
      seen[f] = calloc(mtld_model_embed(d->m, f)->rows, 1);
      if (!seen[f]) {
        for (int g = 0; g < f; g++) free(seen[g]);
        snprintf(err, errlen, "model base: out of memory");
        return MTLD_ERR_NOMEM;
      }
    }
  }
  float *params;
  size_t n;
  mtld_model_params(d->m, &params, &n);
  if (kind == MTLD_DELTA_BASE) {
    uint64_t cnt = mtld_get_le64(p + at);
    double mean[MTLD_MAX_DENSE], m2[MTLD_MAX_DENSE];
    for (int i = 0; i < MTLD_MAX_DENSE; i++) mean[i] = mtld_get_f64(p + at + 8 + 8 * i);
    for (int i = 0; i < MTLD_MAX_DENSE; i++)
      m2[i] = mtld_get_f64(p + at + 8 + 8 * MTLD_MAX_DENSE + 8 * i);
    mtld_model_set_normaliser(d->m, cnt, mean, m2);
    const uint8_t *lm = p + at + 8 + 16 * MTLD_MAX_DENSE;
    for (int t = 0; t < MTLD_MAX_TASKS; t++) {
      double lmean, lsum;
      uint64_t ln;
      size_t li;
      if (mtld_model_label_mean(d->m, t, &lmean, &lsum, &ln, &li))
        mtld_model_set_label_mean(d->m, t, mtld_get_f64(lm + 16 * t),
                                  mtld_get_le64(lm + 16 * t + 8));
    }
    at += NORM_BYTES;
  }
  for (size_t i = 0; i < d->n_dense; i++) {
    float x = mtld_get_f32(p + at + 4 * i);
    if (kind == MTLD_DELTA_BASE) {
      params[i] = d->dense[i] = x;
    } else {
      params[i] += x;
      d->dense[i] += x;
    }
  }
  walk(d, p, len, tables_at, kind, 1, seen, err, errlen);
  if (kind == MTLD_DELTA_BASE) note_means(d); /* our shifts count from the shared mean */
  if (kind == MTLD_DELTA_BASE) {              /* shared rows the base does not have die */
    for (int f = 0; f < d->n_fields; f++) {
      if (!seen[f]) continue;
      mtld_embed_t *e = mtld_model_embed(d->m, f);
      for (uint32_t r = 0; r < e->rows; r++) {
        if (seen[f][r]) continue;
        mtld_embed_kill(e, r);
        memset(d->rows[f] + (size_t)r * d->dim, 0, sizeof(float) * (size_t)d->dim);
        if (acc_of(d, f)) d->acc[f][r] = 0;
        d->alive[f][r] = 0;
      }
      free(seen[f]);
    }
  }
  return MTLD_OK;
}
