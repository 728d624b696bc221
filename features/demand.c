/* demand.c - item-level demand windows and their samples (see demand.h). */
#include "features/demand.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/hash.h"

#define DEM_PREFIX "dem/"
#define KEY_W_LEN 21 /* "dem/" 'w' window(8) item(8) */
#define KEY_M_LEN 5  /* "dem/" 'm' */
#define VAL_VERSION 1
#define VAL_LEN (1 + 8 + 8 + 4 * MTLD_N_EVENT_TYPES + 4)
#define META_LEN (1 + 8 + 8)
#define SCENARIO_NAME "_items" /* the scenario of item samples (metrics, gates) */

typedef struct {
  uint64_t item, category;
  int64_t cat_time; /* time of the event the category is from */
  uint32_t n[MTLD_N_EVENT_TYPES];
  float orders;
} cell_t;

typedef struct {
  int64_t k;
  uint32_t n, cap;
  cell_t *cells;
  uint32_t *idx; /* open addressing on item: cell index + 1, 0 = empty */
  uint32_t idx_cap;
} window_t;

struct mtld_demand {
  mtld_store_t *st;
  mtld_feature_def_t def;
  mtld_demand_config_t cfg;
  int n_def_dense;
  window_t *win; /* sorted by k */
  int n_win, cap_win;
  int64_t released; /* last released boundary k, INT64_MIN = none */
  int64_t max_time; /* highest event time counted, INT64_MIN = none */
  int meta_dirty;
  mtld_demand_counters_t c, cc;
  mtld_status_t load_rc;
};

static uint64_t ord64(int64_t v) {
  return (uint64_t)v ^ 0x8000000000000000ull;
}

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

void mtld_demand_config_default(mtld_demand_config_t *cfg) {
  cfg->horizon_ms = 3600 * 1000;
  cfg->windows = 6;
}

mtld_status_t mtld_demand_config_check(const mtld_demand_config_t *cfg, char *err, size_t errlen) {
  if (cfg->horizon_ms <= 0) {
    snprintf(err, errlen, "demand: horizon must be > 0");
    return MTLD_ERR_CONFIG;
  }
  if (cfg->windows < 1 || cfg->windows > MTLD_DEMAND_MAX_WINDOWS) {
    snprintf(err, errlen, "demand: windows must be 1..%d", MTLD_DEMAND_MAX_WINDOWS);
    return MTLD_ERR_CONFIG;
  }
  return MTLD_OK;
}

/* ---- windows in memory ---- */

static void window_free(window_t *w) {
  free(w->cells);
  free(w->idx);
  memset(w, 0, sizeof(*w));
}

static void clear_memory(mtld_demand_t *d) {
  for (int i = 0; i < d->n_win; i++) window_free(&d->win[i]);
  d->n_win = 0;
}

static int32_t window_index(const mtld_demand_t *d, int64_t k) {
  for (int i = 0; i < d->n_win; i++)
    if (d->win[i].k == k) return i;
  return -1;
}

static window_t *window_get(mtld_demand_t *d, int64_t k) {
  int32_t i = window_index(d, k);
  if (i >= 0) return &d->win[i];
  if (d->n_win == d->cap_win) {
    int cap = d->cap_win ? 2 * d->cap_win : 16;
    window_t *nw = realloc(d->win, sizeof(*nw) * (size_t)cap);
    if (!nw) return NULL;
    d->win = nw;
    d->cap_win = cap;
  }
  int pos = d->n_win;
  while (pos > 0 && d->win[pos - 1].k > k) pos--;
  memmove(&d->win[pos + 1], &d->win[pos], sizeof(window_t) * (size_t)(d->n_win - pos));
  memset(&d->win[pos], 0, sizeof(window_t));
  d->win[pos].k = k;
  d->n_win++;
  return &d->win[pos];
}

static uint32_t slot_of(uint64_t item, uint32_t cap) {
  return (uint32_t)(mtld_mix64(item) & (cap - 1));
}

static cell_t *cell_find(const window_t *w, uint64_t item) {
  if (!w->idx_cap) return NULL;
  for (uint32_t s = slot_of(item, w->idx_cap);; s = (s + 1) & (w->idx_cap - 1)) {
    uint32_t v = w->idx[s];
    if (!v) return NULL;
    if (w->cells[v - 1].item == item) return &w->cells[v - 1];
  }
}

static int index_rebuild(window_t *w, uint32_t cap) {
  uint32_t *idx = calloc(cap, sizeof(uint32_t));
  if (!idx) return -1;
  free(w->idx);
  w->idx = idx;
  w->idx_cap = cap;
  for (uint32_t i = 0; i < w->n; i++) {
    uint32_t s = slot_of(w->cells[i].item, cap);
    while (idx[s]) s = (s + 1) & (cap - 1);
    idx[s] = i + 1;
  }
  return 0;
}

static cell_t *cell_get(window_t *w, uint64_t item) {
  cell_t *c = cell_find(w, item);
  if (c) return c;
  if (w->n == w->cap) {
    uint32_t cap = w->cap ? 2 * w->cap : 64;
    cell_t *nc = realloc(w->cells, sizeof(cell_t) * cap);
    if (!nc) return NULL;
    w->cells = nc;
    w->cap = cap;
  }
  if (2 * (w->n + 1) > w->idx_cap && index_rebuild(w, w->idx_cap ? 2 * w->idx_cap : 128) != 0)
    return NULL;
  c = &w->cells[w->n];
  memset(c, 0, sizeof(*c));
  c->item = item;
  c->cat_time = INT64_MIN;
  uint32_t s = slot_of(item, w->idx_cap);
  while (w->idx[s]) s = (s + 1) & (w->idx_cap - 1);
  w->idx[s] = ++w->n;
  return c;
}

/* ---- store ---- */

static void key_w(uint8_t *k, int64_t win, uint64_t item) {
  memcpy(k, DEM_PREFIX, 4);
  k[4] = 'w';
  mtld_put_be64(k + 5, ord64(win));
  mtld_put_be64(k + 13, item);
}

static void key_m(uint8_t *k) {
  memcpy(k, DEM_PREFIX, 4);
  k[4] = 'm';
}

static mtld_status_t cell_put(mtld_demand_t *d, int64_t win, const cell_t *c) {
  uint8_t k[KEY_W_LEN], v[VAL_LEN];
  key_w(k, win, c->item);
  v[0] = VAL_VERSION;
  mtld_put_le64(v + 1, c->category);
  mtld_put_le64(v + 9, (uint64_t)c->cat_time);
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) mtld_put_le32(v + 17 + 4 * t, c->n[t]);
  mtld_put_f32(v + 17 + 4 * MTLD_N_EVENT_TYPES, c->orders);
  return mtld_store_put(d->st, MTLD_CF_PENDING, k, sizeof k, v, sizeof v);
}

static int load_cell(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  mtld_demand_t *d = ctx;
  const uint8_t *k = key, *v = val;
  if (klen != KEY_W_LEN || vlen != VAL_LEN || v[0] != VAL_VERSION) {
    d->load_rc = MTLD_ERR_CORRUPT;
    return 1;
  }
  int64_t win = (int64_t)(mtld_get_be64(k + 5) ^ 0x8000000000000000ull);
  window_t *w = window_get(d, win);
  cell_t *c = w ? cell_get(w, mtld_get_be64(k + 13)) : NULL;
  if (!c) {
    d->load_rc = MTLD_ERR_NOMEM;
    return 1;
  }
  c->category = mtld_get_le64(v + 1);
  c->cat_time = (int64_t)mtld_get_le64(v + 9);
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) c->n[t] = mtld_get_le32(v + 17 + 4 * t);
  c->orders = mtld_get_f32(v + 17 + 4 * MTLD_N_EVENT_TYPES);
  return 0;
}

static int load_meta(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  mtld_demand_t *d = ctx;
  const uint8_t *v = val;
  (void)key;
  if (klen != KEY_M_LEN || vlen != META_LEN || v[0] != VAL_VERSION) {
    d->load_rc = MTLD_ERR_CORRUPT;
    return 1;
  }
  d->released = (int64_t)mtld_get_le64(v + 1);
  d->max_time = (int64_t)mtld_get_le64(v + 9);
  return 0;
}

static mtld_status_t load(mtld_demand_t *d, char *err, size_t errlen) {
  clear_memory(d);
  d->released = INT64_MIN;
  d->max_time = INT64_MIN;
  d->meta_dirty = 0;
  d->load_rc = MTLD_OK;
  uint8_t k[KEY_W_LEN];
  key_m(k);
  mtld_store_foreach_raw(d->st, MTLD_CF_PENDING, k, KEY_M_LEN, load_meta, d);
  k[4] = 'w';
  if (d->load_rc == MTLD_OK) mtld_store_foreach_raw(d->st, MTLD_CF_PENDING, k, 5, load_cell, d);
  if (d->load_rc != MTLD_OK) {
    snprintf(err, errlen, "demand: loading the windows: %s", mtld_status_str(d->load_rc));
    clear_memory(d);
    return d->load_rc;
  }
  return MTLD_OK;
}

mtld_status_t mtld_demand_create(mtld_demand_t **out, mtld_store_t *st,
                                 const mtld_feature_def_t *def, const mtld_demand_config_t *cfg,
                                 char *err, size_t errlen) {
  *out = NULL;
  mtld_status_t rc = mtld_demand_config_check(cfg, err, errlen);
  if (rc != MTLD_OK) return rc;
  int n_cat, n_num;
  mtld_features_attr_counts(def, &n_cat, &n_num);
  int nd = mtld_features_dense_count(def) + n_num;
  if (nd + MTLD_DEMAND_DENSE > MTLD_MAX_DENSE || MTLD_FIELD_EXTRA + n_cat > MTLD_MAX_FIELDS) {
    snprintf(err, errlen, "demand: more dense features than MTLD_MAX_DENSE");
    return MTLD_ERR_CONFIG;
  }
  mtld_demand_t *d = calloc(1, sizeof(*d));
  if (!d) return MTLD_ERR_NOMEM;
  d->st = st;
  d->def = *def;
  d->cfg = *cfg;
  d->n_def_dense = nd;
  rc = load(d, err, errlen);
  if (rc != MTLD_OK) {
    mtld_demand_destroy(d);
    return rc;
  }
  *out = d;
  return MTLD_OK;
}

void mtld_demand_destroy(mtld_demand_t *d) {
  if (!d) return;
  clear_memory(d);
  free(d->win);
  free(d);
}

mtld_status_t mtld_demand_reload(mtld_demand_t *d, char *err, size_t errlen) {
  d->c = d->cc;
  return load(d, err, errlen);
}

/* ---- events ---- */

mtld_status_t mtld_demand_on_event(mtld_demand_t *d, const mtld_event_t *ev) {
  if (ev->type < 1 || ev->type > MTLD_N_EVENT_TYPES) return MTLD_ERR_INVALID;
  int64_t k = floor_div(ev->time_ms, d->cfg.horizon_ms);
  if (d->released != INT64_MIN && k <= d->released) {
    d->c.late++;
    return MTLD_OK;
  }
  window_t *w = window_get(d, k);
  cell_t *c = w ? cell_get(w, ev->item_id) : NULL;
  if (!c) return MTLD_ERR_NOMEM;
  c->n[ev->type - 1]++;
  if (ev->type == MTLD_EV_PURCHASE) c->orders += (float)(ev->quantity > 0 ? ev->quantity : 1);
  /* the category of the latest event (ties: the larger id), whatever the order */
  if (ev->time_ms > c->cat_time || (ev->time_ms == c->cat_time && ev->category_id > c->category)) {
    c->cat_time = ev->time_ms;
    c->category = ev->category_id;
  }
  if (ev->time_ms > d->max_time) {
    d->max_time = ev->time_ms;
    d->meta_dirty = 1;
  }
  d->c.events++;
  return cell_put(d, k, c);
}

/* The first window whose boundary (k + 1) is not released yet, or -1. */
static int next_window(const mtld_demand_t *d) {
  for (int i = 0; i < d->n_win; i++)
    if (d->released == INT64_MIN || d->win[i].k + 1 > d->released) return i;
  return -1;
}

int64_t mtld_demand_next_deadline(const mtld_demand_t *d) {
  int i = next_window(d);
  if (i < 0) return INT64_MAX;
  return (d->win[i].k + 2) * d->cfg.horizon_ms - 1; /* end of label window k + 1 */
}

void mtld_demand_dense(float out[MTLD_DEMAND_DENSE], const float orders[3], float ma,
                       const uint32_t events[4]) {
  for (int i = 0; i < 3; i++) out[i] = log1pf(orders[i]);
  out[3] = log1pf(ma);
  for (int i = 0; i < 4; i++) out[4 + i] = log1pf((float)events[i]);
}

static int cmp_item(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static float orders_in(const mtld_demand_t *d, int64_t k, uint64_t item) {
  int32_t i = window_index(d, k);
  const cell_t *c = i >= 0 ? cell_find(&d->win[i], item) : NULL;
  return c ? c->orders : 0.0f;
}

int mtld_demand_release_next(mtld_demand_t *d, int64_t watermark_ms,
                             void (*fn)(void *ctx, const mtld_sample_t *s), void *ctx) {
  int i = next_window(d);
  if (i < 0) return 0;
  int64_t h = d->cfg.horizon_ms, prev = d->win[i].k, k = prev + 1;
  int64_t deadline = (k + 1) * h - 1;
  if (!(deadline < watermark_ms) || d->max_time == INT64_MIN || deadline > d->max_time) return 0;
  window_t *w = &d->win[i];
  /* item id order */
  uint64_t *items = malloc(sizeof(uint64_t) * (w->n ? w->n : 1));
  if (!items) return 0; /* released by a later call */
  for (uint32_t c = 0; c < w->n; c++) items[c] = w->cells[c].item;
  qsort(items, w->n, sizeof(uint64_t), cmp_item);
  uint64_t scen = mtld_hash_id(SCENARIO_NAME, strlen(SCENARIO_NAME));
  for (uint32_t c = 0; c < w->n; c++) {
    const cell_t *x = cell_find(w, items[c]);
    mtld_sample_t s;
    memset(&s, 0, sizeof(s));
    s.sample_id = mtld_mix64(x->item ^ mtld_mix64((uint64_t)k));
    s.time_ms = k * h;
    s.partition = 0;
    s.offset = (int64_t)c;
    s.kind = MTLD_SAMPLE_ITEM;
    s.weight = 1.0f;
    s.n_fields = MTLD_FIELD_EXTRA;
    s.fields[MTLD_FIELD_ITEM] = x->item;
    s.fields[MTLD_FIELD_CATEGORY] = x->category;
    s.fields[MTLD_FIELD_HOUR] = mtld_sample_hour_id(k * h);
    s.scenario_id = scen;
    snprintf(s.scenario, sizeof(s.scenario), "%s", SCENARIO_NAME);
    s.n_dense = mtld_features_dense(&d->def, NULL, NULL, 0, k * h, s.dense, MTLD_MAX_DENSE);
    if (d->def.n_attrs > 0) { /* declared attributes: their defaults (no user, no item read) */
      int n_cat, n_num;
      mtld_features_attr_inputs(&d->def, NULL, NULL, NULL, s.fields + MTLD_FIELD_EXTRA, &n_cat,
                                s.dense + s.n_dense, &n_num);
      s.n_fields += n_cat;
      s.n_dense += n_num;
    }
    float orders[3] = {x->orders, orders_in(d, prev - 1, x->item), orders_in(d, prev - 2, x->item)};
    double sum = 0;
    for (int m = 0; m < d->cfg.windows; m++)
      sum += m == 0 ? x->orders : orders_in(d, prev - m, x->item);
    float ma = (float)(sum / d->cfg.windows);
    uint32_t ev[4] = {x->n[MTLD_EV_IMPRESSION - 1], x->n[MTLD_EV_CLICK - 1],
                      x->n[MTLD_EV_ADD_TO_CART - 1], x->n[MTLD_EV_PURCHASE - 1]};
    mtld_demand_dense(s.dense + s.n_dense, orders, ma, ev);
    s.n_dense += MTLD_DEMAND_DENSE;
    float label = orders_in(d, k, x->item);
    s.labels[MTLD_LABEL_DEMAND] = label;
    s.label_mask = 1u << MTLD_LABEL_DEMAND;
    s.naive[MTLD_NAIVE_LAST] = x->orders;
    s.naive[MTLD_NAIVE_MA] = ma;
    fn(ctx, &s);
    d->c.samples++;
    d->c.orders += (uint64_t)lrintf(label);
  }
  free(items);
  d->c.boundaries++;
  d->released = k;
  d->meta_dirty = 1;
  /* the next boundary (k + 1) reads windows k + 1 - M .. k + 1: drop older ones */
  int64_t keep = k + 1 - d->cfg.windows;
  int drop = 0;
  while (drop < d->n_win && d->win[drop].k < keep) {
    window_t *o = &d->win[drop];
    for (uint32_t c = 0; c < o->n; c++) {
      uint8_t key[KEY_W_LEN];
      key_w(key, o->k, o->cells[c].item);
      mtld_store_delete(d->st, MTLD_CF_PENDING, key, sizeof key);
    }
    window_free(o);
    drop++;
  }
  if (drop) {
    memmove(&d->win[0], &d->win[drop], sizeof(window_t) * (size_t)(d->n_win - drop));
    d->n_win -= drop;
  }
  return 1;
}

mtld_status_t mtld_demand_stage(mtld_demand_t *d) {
  if (!d->meta_dirty) return MTLD_OK;
  uint8_t k[KEY_M_LEN], v[META_LEN];
  key_m(k);
  v[0] = VAL_VERSION;
  mtld_put_le64(v + 1, (uint64_t)d->released);
  mtld_put_le64(v + 9, (uint64_t)d->max_time);
  d->meta_dirty = 0;
  return mtld_store_put(d->st, MTLD_CF_PENDING, k, sizeof k, v, sizeof v);
}

void mtld_demand_counters(const mtld_demand_t *d, mtld_demand_counters_t *out) {
  *out = d->c;
}

void mtld_demand_counters_committed(const mtld_demand_t *d, mtld_demand_counters_t *out) {
  *out = d->cc;
}

void mtld_demand_counters_commit(mtld_demand_t *d) {
  d->cc = d->c;
}

size_t mtld_demand_cells(const mtld_demand_t *d) {
  size_t n = 0;
  for (int i = 0; i < d->n_win; i++) n += d->win[i].n;
  return n;
}

void mtld_demand_render_metrics(const mtld_demand_t *d, mtld_metrics_buf_t *b) {
  static const struct {
    const char *name, *help;
  } fam[] = {
      {"mtld_demand_events_total", "Events counted into the item demand windows."},
      {"mtld_demand_late_events_total",
       "Events dropped by the demand windows: their boundary was released already."},
      {"mtld_demand_samples_total", "Item demand samples released."},
      {"mtld_demand_boundaries_total", "Demand boundaries (horizon ends) released."},
      {"mtld_demand_orders_total", "Orders in the labels of the released demand samples."},
  };
  const uint64_t v[] = {d->cc.events, d->cc.late, d->cc.samples, d->cc.boundaries, d->cc.orders};
  for (size_t i = 0; i < sizeof(fam) / sizeof(fam[0]); i++) {
    mtld_metrics_family(b, fam[i].name, "counter", fam[i].help);
    mtld_metrics_sample(b, fam[i].name, NULL, (double)v[i]);
  }
  mtld_metrics_family(b, "mtld_demand_cells", "gauge",
                      "(window, item) counters held by the demand windows.");
  mtld_metrics_sample(b, "mtld_demand_cells", NULL, (double)mtld_demand_cells(d));
  mtld_metrics_family(b, "mtld_demand_released_boundary_ms", "gauge",
                      "Event time of the last released demand boundary.");
  mtld_metrics_sample(b, "mtld_demand_released_boundary_ms", NULL,
                      d->released == INT64_MIN ? NAN
                                               : (double)d->released * (double)d->cfg.horizon_ms);
}
