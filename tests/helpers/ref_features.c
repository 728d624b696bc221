/* ref_features.c - an independent reference for the feature store.
 *
 * Reads an event file, keeps every valid event per user and per item in
 * memory, and computes the features in closed form, order-independently:
 *     decayed(T) = sum_i 2^(-(T - t_i) / half_life),  T = newest event time
 * (the store computes them incrementally, record by record).  Then compares
 * with a store opened read-only: every user and item, no extra ones.
 *
 * usage: ref_features EVENT_FILE STORE_DIR
 * exit 0 when equal (relative 1e-9 on decayed values, exact elsewhere). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/decode.h"
#include "daemon/eventfile.h"
#include "features/store.h"

typedef struct {
  uint64_t id;
  mtld_event_t *ev; /* events of this entity */
  size_t n, cap;
} ent_t;

typedef struct {
  ent_t *e;
  size_t n, cap; /* open addressing */
} map_t;

static ent_t *map_get(map_t *m, uint64_t id) {
  if (m->n * 2 >= m->cap) {
    size_t ncap = m->cap ? m->cap * 2 : 1024;
    ent_t *ne = calloc(ncap, sizeof(*ne));
    for (size_t i = 0; i < m->cap; i++) {
      if (!m->e[i].id) continue;
      size_t j = m->e[i].id % ncap;
      while (ne[j].id) j = (j + 1) % ncap;
      ne[j] = m->e[i];
    }
    free(m->e);
    m->e = ne;
    m->cap = ncap;
  }
  size_t j = id % m->cap;
  while (m->e[j].id && m->e[j].id != id) j = (j + 1) % m->cap;
  if (!m->e[j].id) {
    m->e[j].id = id;
    m->n++;
  }
  return &m->e[j];
}

static void push(ent_t *e, const mtld_event_t *ev) {
  if (e->n == e->cap) {
    e->cap = e->cap ? e->cap * 2 : 8;
    e->ev = realloc(e->ev, e->cap * sizeof(*e->ev));
  }
  e->ev[e->n++] = *ev;
}

static int failures;

static int close_enough(double a, double b) {
  return fabs(a - b) <= 1e-9 * fmax(1.0, fmax(fabs(a), fabs(b)));
}

#define EXPECT(cond, ...)                                                                          \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      if (failures++ < 20) {                                                                       \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
      }                                                                                            \
    }                                                                                              \
  } while (0)

static int seq_type(int t) {
  return t == MTLD_EV_CLICK || t == MTLD_EV_ADD_TO_CART || t == MTLD_EV_PURCHASE ||
         t == MTLD_EV_REVIEW;
}

static int cmp_desc(const void *a, const void *b) {
  const mtld_event_t *x = a, *y = b;
  if (x->time_ms != y->time_ms) return x->time_ms > y->time_ms ? -1 : 1;
  if (x->event_id != y->event_id) return x->event_id > y->event_id ? -1 : 1;
  return 0;
}

static void decayed(const mtld_feature_def_t *def, const ent_t *e, int64_t T,
                    double out[MTLD_N_EVENT_TYPES][MTLD_MAX_HALF_LIVES]) {
  memset(out, 0, sizeof(double) * MTLD_N_EVENT_TYPES * MTLD_MAX_HALF_LIVES);
  for (size_t i = 0; i < e->n; i++)
    for (int h = 0; h < def->n_half_lives; h++)
      out[e->ev[i].type - 1][h] +=
          exp2(-(double)(T - e->ev[i].time_ms) / 1000.0 / def->half_life_s[h]);
}

static void check_user(const mtld_feature_def_t *def, mtld_store_t *st, ent_t *e) {
  mtld_user_features_t f;
  if (mtld_store_get_user(st, e->id, &f) != MTLD_OK) {
    EXPECT(0, "user %llu missing from the store", (unsigned long long)e->id);
    return;
  }
  int64_t T = INT64_MIN;
  double spend = 0, rsum = 0;
  uint32_t nrev = 0;
  for (size_t i = 0; i < e->n; i++) {
    const mtld_event_t *ev = &e->ev[i];
    if (ev->time_ms > T) T = ev->time_ms;
    if (ev->type == MTLD_EV_PURCHASE) spend += ev->price * (ev->quantity > 1 ? ev->quantity : 1);
    if (ev->type == MTLD_EV_REVIEW) nrev++, rsum += ev->rating;
  }
  double d[MTLD_N_EVENT_TYPES][MTLD_MAX_HALF_LIVES];
  decayed(def, e, T, d);
  unsigned long long id = (unsigned long long)e->id;
  EXPECT(f.last_time_ms == T, "user %llu last_time %lld != %lld", id, (long long)f.last_time_ms,
         (long long)T);
  EXPECT(f.n_events == e->n, "user %llu n_events %llu != %zu", id, (unsigned long long)f.n_events,
         e->n);
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++)
    for (int h = 0; h < def->n_half_lives; h++)
      EXPECT(close_enough(f.decayed[t][h], d[t][h]), "user %llu decayed[%d][%d] %.17g != %.17g", id,
             t, h, f.decayed[t][h], d[t][h]);
  EXPECT(f.n_reviews == nrev, "user %llu n_reviews %u != %u", id, f.n_reviews, nrev);
  EXPECT(close_enough(f.rating_sum, rsum), "user %llu rating_sum", id);
  EXPECT(close_enough(f.spend, spend), "user %llu spend %.17g != %.17g", id, f.spend, spend);
  /* sequence: the newest seq_len non-impression events */
  qsort(e->ev, e->n, sizeof(*e->ev), cmp_desc);
  uint32_t k = 0;
  for (size_t i = 0; i < e->n && k < (uint32_t)def->seq_len; i++) {
    if (!seq_type(e->ev[i].type)) continue;
    EXPECT(k < f.seq_len && f.seq[k].item_id == e->ev[i].item_id &&
               f.seq[k].time_ms == e->ev[i].time_ms && f.seq[k].type == e->ev[i].type,
           "user %llu seq[%u] differs", id, k);
    k++;
  }
  EXPECT(f.seq_len == k, "user %llu seq_len %u != %u", id, f.seq_len, k);
}

static void check_item(const mtld_feature_def_t *def, mtld_store_t *st, ent_t *e) {
  mtld_item_features_t f;
  if (mtld_store_get_item(st, e->id, &f) != MTLD_OK) {
    EXPECT(0, "item %llu missing from the store", (unsigned long long)e->id);
    return;
  }
  int64_t T = INT64_MIN;
  double rsum = 0;
  uint32_t nrev = 0;
  const mtld_event_t *priced = NULL;
  for (size_t i = 0; i < e->n; i++) {
    const mtld_event_t *ev = &e->ev[i];
    if (ev->time_ms > T) T = ev->time_ms;
    if (ev->type == MTLD_EV_REVIEW) nrev++, rsum += ev->rating;
    if (ev->price > 0 && (!priced || ev->time_ms > priced->time_ms ||
                          (ev->time_ms == priced->time_ms && ev->event_id > priced->event_id)))
      priced = ev;
  }
  double d[MTLD_N_EVENT_TYPES][MTLD_MAX_HALF_LIVES];
  decayed(def, e, T, d);
  unsigned long long id = (unsigned long long)e->id;
  EXPECT(f.last_time_ms == T, "item %llu last_time", id);
  EXPECT(f.n_events == e->n, "item %llu n_events %llu != %zu", id, (unsigned long long)f.n_events,
         e->n);
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++)
    for (int h = 0; h < def->n_half_lives; h++)
      EXPECT(close_enough(f.decayed[t][h], d[t][h]), "item %llu decayed[%d][%d] %.17g != %.17g", id,
             t, h, f.decayed[t][h], d[t][h]);
  EXPECT(f.n_reviews == nrev && close_enough(f.rating_sum, rsum), "item %llu reviews", id);
  EXPECT(f.last_price == (priced ? priced->price : 0.0), "item %llu last_price %.17g", id,
         f.last_price);
}

static int count_user(void *ctx, uint64_t id, const mtld_user_features_t *f) {
  (void)id, (void)f;
  (*(size_t *)ctx)++;
  return 0;
}
static int count_item(void *ctx, uint64_t id, const mtld_item_features_t *f) {
  (void)id, (void)f;
  (*(size_t *)ctx)++;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: ref_features EVENT_FILE STORE_DIR\n");
    return 2;
  }
  char err[512];
  mtld_store_t *st;
  if (mtld_store_open_readonly(&st, argv[2], err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "ref_features: %s\n", err);
    return 2;
  }
  const mtld_feature_def_t *def = mtld_store_def(st);
  mtld_eventfile_t *f;
  if (mtld_eventfile_open(&f, argv[1], MTLD_FMT_AUTO, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "ref_features: %s\n", err);
    return 2;
  }
  mtld_validate_limits_t lim;
  mtld_validate_limits_default(&lim);
  map_t users = {0}, items = {0};
  const void *buf;
  size_t len;
  int64_t idx;
  size_t good = 0, bad = 0;
  while (mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof(err)) > 0) {
    mtld_event_t ev;
    if (mtld_decode_event(buf, len, MTLD_FMT_AUTO, lim.max_record_bytes, &ev, err, sizeof(err)) ||
        mtld_validate_event(&ev, &lim, INT64_MIN, INT64_MIN, err, sizeof(err))) {
      bad++;
      continue;
    }
    good++;
    push(map_get(&users, ev.user_id), &ev);
    push(map_get(&items, ev.item_id), &ev);
  }
  mtld_eventfile_close(f);
  for (size_t i = 0; i < users.cap; i++)
    if (users.e[i].id) check_user(def, st, &users.e[i]);
  for (size_t i = 0; i < items.cap; i++)
    if (items.e[i].id) check_item(def, st, &items.e[i]);
  size_t su = 0, si = 0;
  mtld_store_foreach_user(st, count_user, &su);
  mtld_store_foreach_item(st, count_item, &si);
  EXPECT(su == users.n, "store has %zu users, reference %zu", su, users.n);
  EXPECT(si == items.n, "store has %zu items, reference %zu", si, items.n);
  printf("ref_features: %zu good and %zu bad records; %zu users, %zu items compared: %s\n", good,
         bad, users.n, items.n, failures ? "MISMATCH" : "equal");
  for (size_t i = 0; i < users.cap; i++) free(users.e[i].ev);
  for (size_t i = 0; i < items.cap; i++) free(items.e[i].ev);
  free(users.e);
  free(items.e);
  mtld_store_close(st);
  return failures ? 1 : 0;
}
