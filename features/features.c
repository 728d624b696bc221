/* features.c - feature definitions, event-time decay, applying events, the
 * binary encodings and the dense vector (see features.h).  Pure code: no
 * RocksDB, no clock, no globals. */
#include "features/features.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "common/bytes.h"
#include "trainer/sample.h"

#define FEATURES_ENC_VERSION 1

/* ---- little-endian fixed-width writer / reader ---- */

typedef struct {
  uint8_t *p;
  size_t len, cap;
  int overflow;
} wbuf_t;

static void put_bytes(wbuf_t *w, const void *src, size_t n) {
  if (w->overflow || w->cap - w->len < n) {
    w->overflow = 1;
    return;
  }
  memcpy(w->p + w->len, src, n);
  w->len += n;
}

static void put_u8(wbuf_t *w, uint8_t v) {
  put_bytes(w, &v, 1);
}

static void put_u32(wbuf_t *w, uint32_t v) {
  uint8_t b[4];
  mtld_put_le32(b, v);
  put_bytes(w, b, 4);
}

static void put_u64(wbuf_t *w, uint64_t v) {
  uint8_t b[8];
  mtld_put_le64(b, v);
  put_bytes(w, b, 8);
}

static void put_f64(wbuf_t *w, double v) {
  uint8_t b[8];
  mtld_put_f64(b, v);
  put_bytes(w, b, 8);
}

typedef struct {
  const uint8_t *p;
  size_t len, pos;
  int bad;
} rbuf_t;

static const uint8_t *get_bytes(rbuf_t *r, size_t n) {
  if (r->bad || r->len - r->pos < n) {
    r->bad = 1;
    return NULL;
  }
  const uint8_t *q = r->p + r->pos;
  r->pos += n;
  return q;
}

static uint8_t get_u8(rbuf_t *r) {
  const uint8_t *q = get_bytes(r, 1);
  return q ? q[0] : 0;
}

static uint32_t get_u32(rbuf_t *r) {
  const uint8_t *q = get_bytes(r, 4);
  return q ? mtld_get_le32(q) : 0;
}

static uint64_t get_u64(rbuf_t *r) {
  const uint8_t *q = get_bytes(r, 8);
  return q ? mtld_get_le64(q) : 0;
}

static double get_f64(rbuf_t *r) {
  const uint8_t *q = get_bytes(r, 8);
  return q ? mtld_get_f64(q) : 0;
}

/* ---- definitions ---- */

void mtld_feature_def_default(mtld_feature_def_t *def) {
  memset(def, 0, sizeof *def);
  def->n_half_lives = 3;
  def->half_life_s[0] = 3600;
  def->half_life_s[1] = 86400;
  def->half_life_s[2] = 604800;
  def->seq_len = 50;
  def->prior_strength = 10;
  def->ctr_prior = 0.05;
  def->cvr_prior = 0.02;
  def->cart_prior = 0.05;
  def->item_view = MTLD_ITEM_VIEW_PARTITION;
}

int mtld_attr_def_set(mtld_attr_def_t *a, const char *name, int owner, int kind, uint32_t rows,
                      const char *default_str, double default_num) {
  memset(a, 0, sizeof *a);
  size_t n = strlen(name), dn = default_str ? strlen(default_str) : 0;
  if (n > MTLD_ATTR_NAME_LEN || dn > MTLD_ATTR_VALUE_LEN) return -1;
  memcpy(a->name, name, n);
  a->name_id = n ? mtld_hash_id(name, n) : 0;
  a->owner = owner;
  a->kind = kind;
  a->rows = kind == MTLD_ATTR_CATEGORICAL ? rows : 0;
  if (kind == MTLD_ATTR_CATEGORICAL) {
    if (dn) memcpy(a->default_str, default_str, dn);
    a->default_id = dn ? mtld_hash_id(default_str, dn) : 0;
  } else {
    a->default_num = default_num;
  }
  return 0;
}

static mtld_status_t attrs_check(const mtld_feature_def_t *def, char *err, size_t errlen) {
  if (def->n_attrs < 0 || def->n_attrs > MTLD_ATTR_MAX) {
    snprintf(err, errlen, "features.attributes: at most %d attributes, not %d", MTLD_ATTR_MAX,
             def->n_attrs);
    return MTLD_ERR_INVALID;
  }
  int n_num = 0;
  for (int k = 0; k < def->n_attrs; k++) {
    const mtld_attr_def_t *a = &def->attrs[k];
    size_t n = strnlen(a->name, sizeof a->name);
    const char *why = NULL;
    if (n == 0 || n > MTLD_ATTR_NAME_LEN)
      why = "name must have 1 to 63 bytes";
    else if (a->name_id != mtld_hash_id(a->name, n))
      why = "name_id is not the hash of the name";
    else if (a->owner < MTLD_ATTR_USER || a->owner > MTLD_ATTR_CONTEXT)
      why = "unknown owner";
    else if (a->kind != MTLD_ATTR_CATEGORICAL && a->kind != MTLD_ATTR_NUMERIC)
      why = "unknown kind";
    else if (a->kind == MTLD_ATTR_CATEGORICAL && a->rows == 0)
      why = "rows must be > 0";
    else if (a->kind == MTLD_ATTR_NUMERIC && (a->rows != 0 || !isfinite(a->default_num)))
      why = "a numeric attribute has no rows and a finite default";
    else if (strnlen(a->default_str, sizeof a->default_str) > MTLD_ATTR_VALUE_LEN)
      why = "default too long";
    else if (a->kind == MTLD_ATTR_CATEGORICAL &&
             a->default_id !=
                 (a->default_str[0] ? mtld_hash_id(a->default_str, strlen(a->default_str)) : 0))
      why = "default_id is not the hash of the default";
    else if (a->kind == MTLD_ATTR_NUMERIC && (a->default_str[0] || a->default_id))
      why = "a numeric attribute has a numeric default";
    for (int j = 0; !why && j < k; j++)
      if (def->attrs[j].name_id == a->name_id) why = "duplicate name";
    if (why) {
      snprintf(err, errlen, "features.attributes[%d] (\"%.63s\"): %s", k, a->name, why);
      return MTLD_ERR_INVALID;
    }
    n_num += a->kind == MTLD_ATTR_NUMERIC;
  }
  int room = MTLD_MAX_DENSE - mtld_features_dense_count(def);
  if (n_num > room) {
    snprintf(err, errlen,
             "features.attributes: %d numeric attributes, but only %d fit beside the %d dense "
             "features of %d half-lives",
             n_num, room < 0 ? 0 : room, mtld_features_dense_count(def), def->n_half_lives);
    return MTLD_ERR_INVALID;
  }
  return MTLD_OK;
}

mtld_status_t mtld_feature_def_check(const mtld_feature_def_t *def, char *err, size_t errlen) {
  if (def->n_half_lives < 1 || def->n_half_lives > MTLD_MAX_HALF_LIVES) {
    snprintf(err, errlen, "features.half_lives: need 1 to %d half-lives, got %d",
             MTLD_MAX_HALF_LIVES, def->n_half_lives);
    return MTLD_ERR_INVALID;
  }
  for (int h = 0; h < def->n_half_lives; h++) {
    if (!isfinite(def->half_life_s[h]) || def->half_life_s[h] <= 0) {
      snprintf(err, errlen, "features.half_lives[%d]: must be a positive number of seconds", h);
      return MTLD_ERR_INVALID;
    }
  }
  if (def->seq_len < 0 || def->seq_len > MTLD_MAX_SEQ) {
    snprintf(err, errlen, "features.seq_len: must be between 0 and %d, got %d", MTLD_MAX_SEQ,
             def->seq_len);
    return MTLD_ERR_INVALID;
  }
  if (!isfinite(def->prior_strength) || def->prior_strength < 0) {
    snprintf(err, errlen, "features.prior_strength: must be >= 0");
    return MTLD_ERR_INVALID;
  }
  const double priors[3] = {def->ctr_prior, def->cvr_prior, def->cart_prior};
  const char *names[3] = {"ctr_prior", "cvr_prior", "cart_prior"};
  for (int i = 0; i < 3; i++) {
    if (!(priors[i] >= 0 && priors[i] <= 1)) {
      snprintf(err, errlen, "features.%s: must be between 0 and 1", names[i]);
      return MTLD_ERR_INVALID;
    }
  }
  if (def->item_view != MTLD_ITEM_VIEW_PARTITION && def->item_view != MTLD_ITEM_VIEW_GLOBAL) {
    snprintf(err, errlen, "features.item_view: unknown view %d", def->item_view);
    return MTLD_ERR_INVALID;
  }
  return attrs_check(def, err, errlen);
}

size_t mtld_feature_def_encode(const mtld_feature_def_t *def, void *buf, size_t cap) {
  wbuf_t w = {buf, 0, cap, 0};
  int nh = def->n_half_lives;
  if (nh < 0) nh = 0;
  if (nh > MTLD_MAX_HALF_LIVES) nh = MTLD_MAX_HALF_LIVES;
  put_u8(&w, MTLD_FEATURE_DEF_ENC_VERSION);
  put_u8(&w, (uint8_t)nh);
  for (int h = 0; h < nh; h++) put_f64(&w, def->half_life_s[h]);
  put_u32(&w, (uint32_t)def->seq_len);
  put_f64(&w, def->prior_strength);
  put_f64(&w, def->ctr_prior);
  put_f64(&w, def->cvr_prior);
  put_f64(&w, def->cart_prior);
  put_u8(&w, (uint8_t)def->item_view);
  if (def->n_attrs > 0) { /* nothing without attributes: the old encoding and hash */
    int na = def->n_attrs > MTLD_ATTR_MAX ? MTLD_ATTR_MAX : def->n_attrs;
    put_u8(&w, (uint8_t)na);
    for (int k = 0; k < na; k++) {
      const mtld_attr_def_t *a = &def->attrs[k];
      size_t n = strnlen(a->name, MTLD_ATTR_NAME_LEN),
             dn = strnlen(a->default_str, MTLD_ATTR_VALUE_LEN);
      put_u8(&w, (uint8_t)n);
      put_bytes(&w, a->name, n);
      put_u8(&w, (uint8_t)a->owner);
      put_u8(&w, (uint8_t)a->kind);
      put_u32(&w, a->rows);
      put_u8(&w, (uint8_t)(dn & 0xff));
      put_u8(&w, (uint8_t)(dn >> 8));
      put_bytes(&w, a->default_str, dn);
      put_f64(&w, a->default_num);
    }
  }
  return w.overflow ? 0 : w.len;
}

mtld_status_t mtld_feature_def_decode(mtld_feature_def_t *def, const void *buf, size_t len) {
  rbuf_t r = {buf, len, 0, 0};
  memset(def, 0, sizeof *def);
  if (get_u8(&r) != MTLD_FEATURE_DEF_ENC_VERSION) return MTLD_ERR_CORRUPT;
  int nh = get_u8(&r);
  if (nh < 1 || nh > MTLD_MAX_HALF_LIVES) return MTLD_ERR_CORRUPT;
  def->n_half_lives = nh;
  for (int h = 0; h < nh; h++) def->half_life_s[h] = get_f64(&r);
  def->seq_len = (int)get_u32(&r);
  def->prior_strength = get_f64(&r);
  def->ctr_prior = get_f64(&r);
  def->cvr_prior = get_f64(&r);
  def->cart_prior = get_f64(&r);
  def->item_view = get_u8(&r);
  if (!r.bad && r.pos < len) {
    def->n_attrs = get_u8(&r);
    if (def->n_attrs < 1 || def->n_attrs > MTLD_ATTR_MAX) return MTLD_ERR_CORRUPT;
    for (int k = 0; k < def->n_attrs && !r.bad; k++) {
      char name[MTLD_ATTR_NAME_LEN + 1], dflt[MTLD_ATTR_VALUE_LEN + 1];
      size_t n = get_u8(&r);
      const uint8_t *q = get_bytes(&r, n);
      if (!q || n > MTLD_ATTR_NAME_LEN) return MTLD_ERR_CORRUPT;
      memcpy(name, q, n);
      name[n] = '\0';
      int owner = get_u8(&r), kind = get_u8(&r);
      uint32_t rows = get_u32(&r);
      size_t dn = get_u8(&r);
      dn |= (size_t)get_u8(&r) << 8;
      q = get_bytes(&r, dn);
      if (!q || dn > MTLD_ATTR_VALUE_LEN || memchr(name, 0, n) || memchr(q, 0, dn))
        return MTLD_ERR_CORRUPT;
      memcpy(dflt, q, dn);
      dflt[dn] = '\0';
      double num = get_f64(&r);
      mtld_attr_def_set(&def->attrs[k], name, owner, kind, rows, dflt, num);
      if (kind != MTLD_ATTR_CATEGORICAL) { /* what was written must come back */
        if (dn || rows) return MTLD_ERR_CORRUPT;
      } else if (num != 0) {
        return MTLD_ERR_CORRUPT;
      }
    }
  }
  if (r.bad || r.pos != len) return MTLD_ERR_CORRUPT;
  char err[128];
  if (mtld_feature_def_check(def, err, sizeof err) != MTLD_OK) return MTLD_ERR_CORRUPT;
  return MTLD_OK;
}

uint64_t mtld_feature_def_hash(const mtld_feature_def_t *def) {
  uint8_t buf[MTLD_FEATURE_DEF_ENC_MAX];
  size_t n = mtld_feature_def_encode(def, buf, sizeof buf);
  return XXH64(buf, n, 0);
}

/* ---- decay arithmetic ---- */

double mtld_features_rate(double num, double den, double prior, double strength) {
  double d = den + strength;
  if (d <= 0) return prior;
  return (num + strength * prior) / d;
}

/* 2^(-dt_ms / (1000 * half_life_s)) for dt_ms >= 0. */
static double decay_factor(int64_t dt_ms, double half_life_s) {
  return exp2(-(double)dt_ms / (1000.0 * half_life_s));
}

/* Index of the longest half-life (the first one on ties). */
static int longest_hl(const mtld_feature_def_t *def) {
  int best = 0;
  for (int h = 1; h < def->n_half_lives; h++)
    if (def->half_life_s[h] > def->half_life_s[best]) best = h;
  return best;
}

/* Moves the clock of the decayed values `vals` (n_rows rows of
 * MTLD_MAX_HALF_LIVES) from *last to t when t is newer, and fills add[h]
 * with what one event at t contributes as of the (new) clock. */
static void advance(const mtld_feature_def_t *def, int64_t *last, uint64_t n_events, int64_t t,
                    double add[MTLD_MAX_HALF_LIVES], double (*vals)[MTLD_MAX_HALF_LIVES],
                    int n_rows, mtld_scenario_activity_t *sc, int n_sc) {
  int nh = def->n_half_lives;
  if (n_events == 0) {
    /* never seen: everything is 0, the clock starts at t */
    *last = t;
    for (int h = 0; h < nh; h++) add[h] = 1.0;
    return;
  }
  if (t >= *last) {
    int64_t dt = t - *last;
    if (dt > 0) {
      for (int h = 0; h < nh; h++) {
        double k = decay_factor(dt, def->half_life_s[h]);
        for (int r = 0; r < n_rows; r++) vals[r][h] *= k;
        for (int s = 0; s < n_sc; s++) sc[s].decayed[h] *= k;
      }
    }
    *last = t;
    for (int h = 0; h < nh; h++) add[h] = 1.0;
  } else {
    for (int h = 0; h < nh; h++) add[h] = decay_factor(*last - t, def->half_life_s[h]);
  }
}

/* (time, id) strictly greater than (time2, id2) */
static int key_gt(int64_t t, uint64_t id, int64_t t2, uint64_t id2) {
  return t > t2 || (t == t2 && id > id2);
}

static void user_scenario_add(const mtld_feature_def_t *def, mtld_user_features_t *f,
                              uint64_t scenario_id, const double add[MTLD_MAX_HALF_LIVES]) {
  int nh = def->n_half_lives;
  mtld_scenario_activity_t *slot = NULL;
  for (uint32_t s = 0; s < f->n_scenarios; s++) {
    if (f->scenarios[s].scenario_id == scenario_id) {
      slot = &f->scenarios[s];
      break;
    }
  }
  if (!slot) {
    if (f->n_scenarios < MTLD_MAX_USER_SCENARIOS) {
      slot = &f->scenarios[f->n_scenarios++];
    } else {
      int L = longest_hl(def);
      slot = &f->scenarios[0];
      for (uint32_t s = 1; s < f->n_scenarios; s++) {
        mtld_scenario_activity_t *c = &f->scenarios[s];
        if (c->decayed[L] < slot->decayed[L] ||
            (c->decayed[L] == slot->decayed[L] && c->scenario_id < slot->scenario_id))
          slot = c;
      }
    }
    memset(slot, 0, sizeof *slot);
    slot->scenario_id = scenario_id;
  }
  for (int h = 0; h < nh; h++) slot->decayed[h] += add[h];
}

static void user_seq_insert(const mtld_feature_def_t *def, mtld_user_features_t *f,
                            const mtld_event_t *ev) {
  uint32_t cap = def->seq_len < 0 ? 0 : (uint32_t)def->seq_len;
  if (cap > MTLD_MAX_SEQ) cap = MTLD_MAX_SEQ;
  if (f->seq_len > cap) f->seq_len = cap;
  /* first entry strictly older than the event: it goes just before it */
  uint32_t pos = 0;
  while (pos < f->seq_len &&
         !key_gt(ev->time_ms, ev->event_id, f->seq[pos].time_ms, f->seq[pos].event_id))
    pos++;
  if (pos >= cap) return; /* older than everything kept in a full sequence */
  uint32_t n_move = f->seq_len - pos;
  if (f->seq_len == cap) n_move--; /* the oldest falls off */
  memmove(&f->seq[pos + 1], &f->seq[pos], n_move * sizeof f->seq[0]);
  mtld_seq_item_t *e = &f->seq[pos];
  memset(e, 0, sizeof *e);
  e->item_id = ev->item_id;
  e->category_id = ev->category_id;
  e->time_ms = ev->time_ms;
  e->type = ev->type;
  e->event_id = ev->event_id;
  if (f->seq_len < cap) f->seq_len++;
}

/* Keeps the newest value of each declared attribute of `owner` ev carries. */
static void attrs_apply(const mtld_feature_def_t *def, int owner, mtld_attr_values_t *v,
                        const mtld_event_t *ev) {
  if (ev->n_attrs == 0) return;
  for (int k = 0; k < def->n_attrs; k++) {
    const mtld_attr_def_t *a = &def->attrs[k];
    if (a->owner != owner) continue;
    int i = mtld_event_attr_find(ev, a->name_id);
    if (i < 0 || mtld_event_attr_is_num(ev, i) != (a->kind == MTLD_ATTR_NUMERIC)) continue;
    if ((v->set >> k & 1) && !key_gt(ev->time_ms, ev->event_id, v->v[k].time_ms, v->v[k].event_id))
      continue;
    v->set |= 1u << k;
    if (a->kind == MTLD_ATTR_NUMERIC)
      memcpy(&v->v[k].bits, &ev->attrs[i].v.num, 8);
    else
      v->v[k].bits = ev->attrs[i].v.value_id;
    v->v[k].time_ms = ev->time_ms;
    v->v[k].event_id = ev->event_id;
  }
}

void mtld_features_user_apply(const mtld_feature_def_t *def, mtld_user_features_t *f,
                              const mtld_event_t *ev) {
  if (ev->type < 1 || ev->type > MTLD_N_EVENT_TYPES) return;
  double add[MTLD_MAX_HALF_LIVES];
  advance(def, &f->last_time_ms, f->n_events, ev->time_ms, add, f->decayed, MTLD_N_EVENT_TYPES,
          f->scenarios, (int)f->n_scenarios);
  for (int h = 0; h < def->n_half_lives; h++) f->decayed[ev->type - 1][h] += add[h];
  f->n_events++;

  if (ev->type == MTLD_EV_REVIEW) {
    f->n_reviews++;
    f->rating_sum += ev->rating;
  } else if (ev->type == MTLD_EV_PURCHASE) {
    f->spend += ev->price * (ev->quantity > 1 ? ev->quantity : 1);
  }
  if (ev->scenario_id != 0) user_scenario_add(def, f, ev->scenario_id, add);
  if (ev->type != MTLD_EV_IMPRESSION) user_seq_insert(def, f, ev);
  attrs_apply(def, MTLD_ATTR_USER, &f->attrs, ev);
}

void mtld_features_item_apply(const mtld_feature_def_t *def, mtld_item_features_t *f,
                              const mtld_event_t *ev) {
  if (ev->type < 1 || ev->type > MTLD_N_EVENT_TYPES) return;
  double add[MTLD_MAX_HALF_LIVES];
  advance(def, &f->last_time_ms, f->n_events, ev->time_ms, add, f->decayed, MTLD_N_EVENT_TYPES,
          NULL, 0);
  for (int h = 0; h < def->n_half_lives; h++) f->decayed[ev->type - 1][h] += add[h];
  f->n_events++;

  if (ev->type == MTLD_EV_REVIEW) {
    f->n_reviews++;
    f->rating_sum += ev->rating;
  }
  if (ev->category_id != 0) f->category_id = ev->category_id;
  if (ev->price > 0 &&
      (f->last_price <= 0 ||
       key_gt(ev->time_ms, ev->event_id, f->last_price_time_ms, f->last_price_event_id))) {
    f->last_price = ev->price;
    f->last_price_time_ms = ev->time_ms;
    f->last_price_event_id = ev->event_id;
  }
  attrs_apply(def, MTLD_ATTR_ITEM, &f->attrs, ev);
}

/* ---- encodings ---- */

static void put_decayed(wbuf_t *w, int nh, const double (*d)[MTLD_MAX_HALF_LIVES]) {
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++)
    for (int h = 0; h < nh; h++) put_f64(w, d[t][h]);
}

static void get_decayed(rbuf_t *r, int nh, double (*d)[MTLD_MAX_HALF_LIVES]) {
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++)
    for (int h = 0; h < nh; h++) d[t][h] = get_f64(r);
}

/* The head users and items share: format version, half-life count, newest
 * event time, events, decayed counts, reviews and their rating sum. */
static void put_head(wbuf_t *w, int nh, int64_t last_time_ms, uint64_t n_events,
                     const double (*decayed)[MTLD_MAX_HALF_LIVES], uint32_t n_reviews,
                     double rating_sum) {
  put_u8(w, FEATURES_ENC_VERSION);
  put_u8(w, (uint8_t)nh);
  put_u64(w, (uint64_t)last_time_ms);
  put_u64(w, n_events);
  put_decayed(w, nh, decayed);
  put_u32(w, n_reviews);
  put_f64(w, rating_sum);
}

/* Reads the head; 0, or -1 for another format version or half-life count. */
static int get_head(rbuf_t *r, int nh, int64_t *last_time_ms, uint64_t *n_events,
                    double (*decayed)[MTLD_MAX_HALF_LIVES], uint32_t *n_reviews,
                    double *rating_sum) {
  if (get_u8(r) != FEATURES_ENC_VERSION || get_u8(r) != nh) return -1;
  *last_time_ms = (int64_t)get_u64(r);
  *n_events = get_u64(r);
  get_decayed(r, nh, decayed);
  *n_reviews = get_u32(r);
  *rating_sum = get_f64(r);
  return 0;
}

/* Whether def declares an attribute of owner. */
static int has_owner(const mtld_feature_def_t *def, int owner) {
  for (int k = 0; k < def->n_attrs; k++)
    if (def->attrs[k].owner == owner) return 1;
  return 0;
}

static void put_attrs(wbuf_t *w, const mtld_feature_def_t *def, int owner,
                      const mtld_attr_values_t *v) {
  if (!has_owner(def, owner)) return;
  uint32_t set = v->set & ((def->n_attrs >= 32 ? 0 : 1u << def->n_attrs) - 1);
  put_u32(w, set);
  for (int k = 0; k < def->n_attrs; k++) {
    if (!(set >> k & 1)) continue;
    put_u64(w, v->v[k].bits);
    put_u64(w, (uint64_t)v->v[k].time_ms);
    put_u64(w, v->v[k].event_id);
  }
}

/* 0, or -1 when the mask names a slot that is not an attribute of owner. */
static int get_attrs(rbuf_t *r, const mtld_feature_def_t *def, int owner, mtld_attr_values_t *v) {
  if (!has_owner(def, owner)) return 0;
  v->set = get_u32(r);
  for (int k = 0; k < MTLD_ATTR_MAX + 16; k++) {
    if (!(v->set >> k & 1)) continue;
    if (k >= def->n_attrs || def->attrs[k].owner != owner) return -1;
    v->v[k].bits = get_u64(r);
    v->v[k].time_ms = (int64_t)get_u64(r);
    v->v[k].event_id = get_u64(r);
  }
  return 0;
}

/* The head of f, a user or an item (their first fields have the same names). */
#define PUT_HEAD(w, nh, f)                                                                         \
  put_head(w, nh, (f)->last_time_ms, (f)->n_events, (f)->decayed, (f)->n_reviews, (f)->rating_sum)
#define GET_HEAD(r, nh, f)                                                                         \
  get_head(r, nh, &(f)->last_time_ms, &(f)->n_events, (f)->decayed, &(f)->n_reviews,               \
           &(f)->rating_sum)

size_t mtld_features_user_encode(const mtld_feature_def_t *def, const mtld_user_features_t *f,
                                 void *buf, size_t cap) {
  wbuf_t w = {buf, 0, cap, 0};
  int nh = def->n_half_lives;
  uint32_t n_sc =
      f->n_scenarios > MTLD_MAX_USER_SCENARIOS ? MTLD_MAX_USER_SCENARIOS : f->n_scenarios;
  uint32_t n_seq = f->seq_len > MTLD_MAX_SEQ ? MTLD_MAX_SEQ : f->seq_len;
  PUT_HEAD(&w, nh, f);
  put_f64(&w, f->spend);
  put_u32(&w, n_sc);
  for (uint32_t s = 0; s < n_sc; s++) {
    put_u64(&w, f->scenarios[s].scenario_id);
    for (int h = 0; h < nh; h++) put_f64(&w, f->scenarios[s].decayed[h]);
  }
  put_u32(&w, n_seq);
  for (uint32_t i = 0; i < n_seq; i++) {
    const mtld_seq_item_t *e = &f->seq[i];
    put_u64(&w, e->item_id);
    put_u64(&w, e->category_id);
    put_u64(&w, (uint64_t)e->time_ms);
    put_u8(&w, (uint8_t)e->type);
    put_u64(&w, e->event_id);
  }
  put_attrs(&w, def, MTLD_ATTR_USER, &f->attrs);
  return w.overflow ? 0 : w.len;
}

mtld_status_t mtld_features_user_decode(const mtld_feature_def_t *def, mtld_user_features_t *f,
                                        const void *buf, size_t len) {
  rbuf_t r = {buf, len, 0, 0};
  memset(f, 0, sizeof *f);
  int nh = def->n_half_lives;
  if (GET_HEAD(&r, nh, f) != 0) return MTLD_ERR_CORRUPT;
  f->spend = get_f64(&r);
  f->n_scenarios = get_u32(&r);
  if (f->n_scenarios > MTLD_MAX_USER_SCENARIOS) return MTLD_ERR_CORRUPT;
  for (uint32_t s = 0; s < f->n_scenarios; s++) {
    f->scenarios[s].scenario_id = get_u64(&r);
    for (int h = 0; h < nh; h++) f->scenarios[s].decayed[h] = get_f64(&r);
  }
  f->seq_len = get_u32(&r);
  if (f->seq_len > MTLD_MAX_SEQ) return MTLD_ERR_CORRUPT;
  for (uint32_t i = 0; i < f->seq_len; i++) {
    mtld_seq_item_t *e = &f->seq[i];
    e->item_id = get_u64(&r);
    e->category_id = get_u64(&r);
    e->time_ms = (int64_t)get_u64(&r);
    e->type = get_u8(&r);
    e->event_id = get_u64(&r);
    if (!r.bad && (e->type < 1 || e->type > MTLD_N_EVENT_TYPES)) return MTLD_ERR_CORRUPT;
  }
  if (get_attrs(&r, def, MTLD_ATTR_USER, &f->attrs) != 0) return MTLD_ERR_CORRUPT;
  if (r.bad || r.pos != len) return MTLD_ERR_CORRUPT;
  return MTLD_OK;
}

size_t mtld_features_item_encode(const mtld_feature_def_t *def, const mtld_item_features_t *f,
                                 void *buf, size_t cap) {
  wbuf_t w = {buf, 0, cap, 0};
  int nh = def->n_half_lives;
  PUT_HEAD(&w, nh, f);
  put_f64(&w, f->last_price);
  put_u64(&w, (uint64_t)f->last_price_time_ms);
  put_u64(&w, f->last_price_event_id);
  put_u64(&w, f->category_id);
  put_attrs(&w, def, MTLD_ATTR_ITEM, &f->attrs);
  return w.overflow ? 0 : w.len;
}

mtld_status_t mtld_features_item_decode(const mtld_feature_def_t *def, mtld_item_features_t *f,
                                        const void *buf, size_t len) {
  rbuf_t r = {buf, len, 0, 0};
  memset(f, 0, sizeof *f);
  int nh = def->n_half_lives;
  if (GET_HEAD(&r, nh, f) != 0) return MTLD_ERR_CORRUPT;
  f->last_price = get_f64(&r);
  f->last_price_time_ms = (int64_t)get_u64(&r);
  f->last_price_event_id = get_u64(&r);
  f->category_id = get_u64(&r);
  if (get_attrs(&r, def, MTLD_ATTR_ITEM, &f->attrs) != 0) return MTLD_ERR_CORRUPT;
  if (r.bad || r.pos != len) return MTLD_ERR_CORRUPT;
  return MTLD_OK;
}

/* ---- dense vector ---- */

int mtld_features_dense_count(const mtld_feature_def_t *def) {
  return 10 * def->n_half_lives + 15;
}

int mtld_features_dense_item_slots(const mtld_feature_def_t *def, int *idx) {
  int n = 0, H = def->n_half_lives, base = 10 * H;
  for (int h = 0; h < H; h++)
    for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) idx[n++] = 10 * h + MTLD_N_EVENT_TYPES + t;
  static const int after[] = {3, 4, 5, 8, 9, 12, 13}; /* item rates, reviews, since, price */
  for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++) idx[n++] = base + after[i];
  return n;
}

/* Decay factor from an entity's clock to now (1 when now is not later). */
static double to_now(int64_t last_ms, int64_t now_ms, double half_life_s) {
  return now_ms > last_ms ? decay_factor(now_ms - last_ms, half_life_s) : 1.0;
}

static double since_s(int64_t last_ms, uint64_t n_events, int64_t now_ms) {
  if (n_events == 0 || now_ms <= last_ms) return 0;
  return (double)(now_ms - last_ms) / 1000.0;
}

int mtld_features_dense(const mtld_feature_def_t *def, const mtld_user_features_t *u,
                        const mtld_item_features_t *it, uint64_t scenario_id, int64_t now_ms,
                        float *out, int cap) {
  static const mtld_user_features_t no_user;
  static const mtld_item_features_t no_item;
  int n_out = mtld_features_dense_count(def);
  if (n_out > cap || n_out > MTLD_MAX_DENSE) return -1;
  if (!u) u = &no_user;
  if (!it) it = &no_item;
  const int I = MTLD_EV_IMPRESSION - 1, C = MTLD_EV_CLICK - 1, A = MTLD_EV_ADD_TO_CART - 1,
            P = MTLD_EV_PURCHASE - 1;
  int k = 0;
  for (int h = 0; h < def->n_half_lives; h++) {
    double ku = to_now(u->last_time_ms, now_ms, def->half_life_s[h]);
    double ki = to_now(it->last_time_ms, now_ms, def->half_life_s[h]);
    for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) out[k++] = (float)log1p(u->decayed[t][h] * ku);
    for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) out[k++] = (float)log1p(it->decayed[t][h] * ki);
  }
  int L = longest_hl(def);
  double s = def->prior_strength;
  /* rates are ratios of counts with the same clock: decaying both to now
   * changes them only through the prior, so they are taken as of now too */
  double ku = to_now(u->last_time_ms, now_ms, def->half_life_s[L]);
  double ki = to_now(it->last_time_ms, now_ms, def->half_life_s[L]);
  out[k++] =
      (float)mtld_features_rate(u->decayed[C][L] * ku, u->decayed[I][L] * ku, def->ctr_prior, s);
  out[k++] =
      (float)mtld_features_rate(u->decayed[P][L] * ku, u->decayed[C][L] * ku, def->cvr_prior, s);
  out[k++] =
      (float)mtld_features_rate(u->decayed[A][L] * ku, u->decayed[C][L] * ku, def->cart_prior, s);
  out[k++] =
      (float)mtld_features_rate(it->decayed[C][L] * ki, it->decayed[I][L] * ki, def->ctr_prior, s);
  out[k++] =
      (float)mtld_features_rate(it->decayed[P][L] * ki, it->decayed[C][L] * ki, def->cvr_prior, s);
  out[k++] =
      (float)mtld_features_rate(it->decayed[A][L] * ki, it->decayed[C][L] * ki, def->cart_prior, s);
  out[k++] = u->n_reviews ? (float)(u->rating_sum / u->n_reviews) : 0.0f;
  out[k++] = (float)log1p((double)u->n_reviews);
  out[k++] = it->n_reviews ? (float)(it->rating_sum / it->n_reviews) : 0.0f;
  out[k++] = (float)log1p((double)it->n_reviews);
  out[k++] = (float)log1p(u->spend > 0 ? u->spend : 0);
  out[k++] = (float)log1p(since_s(u->last_time_ms, u->n_events, now_ms));
  out[k++] = (float)log1p(since_s(it->last_time_ms, it->n_events, now_ms));
  out[k++] = (float)log1p(it->last_price > 0 ? it->last_price : 0);
  double share = 0;
  if (scenario_id != 0) {
    double total = 0;
    for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) total += u->decayed[t][L];
    for (uint32_t i = 0; i < u->n_scenarios && i < MTLD_MAX_USER_SCENARIOS; i++)
      if (u->scenarios[i].scenario_id == scenario_id && total > 0)
        share = u->scenarios[i].decayed[L] / total;
  }
  out[k++] = (float)share;
  return k;
}

/* ---- attribute inputs ---- */

void mtld_features_attr_counts(const mtld_feature_def_t *def, int *n_cat, int *n_num) {
  *n_cat = *n_num = 0;
  for (int k = 0; k < def->n_attrs; k++) {
    if (def->attrs[k].kind == MTLD_ATTR_NUMERIC)
      ++*n_num;
    else
      ++*n_cat;
  }
}

void mtld_features_attr_inputs(const mtld_feature_def_t *def, const mtld_user_features_t *u,
                               const mtld_item_features_t *it, const mtld_event_t *ev,
                               uint64_t *cat, int *n_cat, float *num, int *n_num) {
  *n_cat = *n_num = 0;
  for (int k = 0; k < def->n_attrs; k++) {
    const mtld_attr_def_t *a = &def->attrs[k];
    const mtld_attr_values_t *v = a->owner == MTLD_ATTR_USER   ? (u ? &u->attrs : NULL)
                                  : a->owner == MTLD_ATTR_ITEM ? (it ? &it->attrs : NULL)
                                                               : NULL;
    int have = 0;
    uint64_t bits = 0;
    if (v && (v->set >> k & 1)) {
      have = 1;
      bits = v->v[k].bits;
    } else if (a->owner == MTLD_ATTR_CONTEXT && ev) {
      int i = mtld_event_attr_find(ev, a->name_id);
      if (i >= 0 && mtld_event_attr_is_num(ev, i) == (a->kind == MTLD_ATTR_NUMERIC)) {
        have = 1;
        if (a->kind == MTLD_ATTR_NUMERIC)
          memcpy(&bits, &ev->attrs[i].v.num, 8);
        else
          bits = ev->attrs[i].v.value_id;
      }
    }
    if (a->kind == MTLD_ATTR_NUMERIC) {
      double d = a->default_num;
      if (have) memcpy(&d, &bits, 8);
      num[(*n_num)++] = (float)d;
    } else {
      cat[(*n_cat)++] = have ? bits : a->default_id;
    }
  }
}
