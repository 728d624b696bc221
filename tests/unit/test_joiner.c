/* test_joiner.c - the label joiner over a real store in a temp dir: matching
 * by request id and by (user, item, scenario) in the click window, carts and
 * purchases after clicks, reviews, release order and deadlines, the
 * point-in-time features, persistence across a restart, rollback + reload,
 * sampled negatives, and the same released bytes however two partitions
 * interleave. */
#define _XOPEN_SOURCE 700
#include "features/joiner.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "features/store.h"
#include "features/watermark.h"
#include "tests/unit/check.h"

#define MIN_MS (60 * 1000LL)
#define HOUR_MS (3600 * 1000LL)
#define T0 (1500000000000LL) /* 2017: replay-like event times */

static char base_dir[64];
static int n_dirs;

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

/* A fresh store directory under the test's temp dir. */
static void new_dir(char *out, size_t len) {
  snprintf(out, len, "%s/s%d", base_dir, n_dirs++);
}

typedef struct {
  mtld_store_t *st;
  mtld_joiner_t *j;
  mtld_feature_def_t def;
  mtld_joiner_config_t cfg;
  char path[128];
} env_t;

static int env_open(env_t *e, const mtld_joiner_config_t *cfg, const char *path) {
  char err[256] = "";
  mtld_feature_def_default(&e->def);
  if (cfg)
    e->cfg = *cfg;
  else
    mtld_joiner_config_default(&e->cfg);
  if (path != e->path) {
    if (path)
      snprintf(e->path, sizeof e->path, "%s", path);
    else
      new_dir(e->path, sizeof e->path);
  }
  if (mtld_store_open(&e->st, e->path, &e->def, 0, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "store open: %s\n", err);
    return -1;
  }
  if (mtld_joiner_create(&e->j, e->st, &e->def, &e->cfg, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "joiner create: %s\n", err);
    mtld_store_close(e->st);
    return -1;
  }
  return 0;
}

static void env_close(env_t *e) {
  mtld_joiner_destroy(e->j);
  mtld_store_close(e->st);
  e->j = NULL;
  e->st = NULL;
}

static int env_commit(env_t *e) {
  char err[256] = "";
  mtld_status_t rc = mtld_store_commit(e->st, err, sizeof err);
  if (rc != MTLD_OK) fprintf(stderr, "commit: %s\n", err);
  return rc == MTLD_OK;
}

static mtld_event_t mk(int type, uint64_t id, uint64_t user, uint64_t item, const char *scen,
                       int64_t t, uint64_t request_id) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = id;
  ev.type = type;
  ev.user_id = user;
  ev.item_id = item;
  ev.category_id = 1000 + item % 7;
  ev.request_id = request_id;
  ev.time_ms = t;
  snprintf(ev.scenario, sizeof ev.scenario, "%s", scen);
  ev.scenario_id = scen[0] ? mtld_hash_id(scen, strlen(scen)) : 0;
  ev.position = (int32_t)(item % 5) + 1;
  if (type == MTLD_EV_REVIEW) ev.rating = (float)(1 + item % 5);
  if (type == MTLD_EV_PURCHASE) {
    ev.price = 9.5;
    ev.quantity = 1;
  }
  return ev;
}

/* The pipeline's order: point-in-time read + update, then the joiner. */
static int feed(env_t *e, const mtld_event_t *ev, int32_t partition, int64_t offset) {
  mtld_user_features_t u;
  mtld_item_features_t it;
  if (mtld_store_apply(e->st, ev, &u, &it) != MTLD_OK) return 0;
  return mtld_joiner_on_event(e->j, ev, partition, offset, &u, &it) == MTLD_OK;
}

typedef struct {
  mtld_sample_t *s;
  size_t n, cap;
} samples_t;

static void collect(void *ctx, const mtld_sample_t *s) {
  samples_t *c = ctx;
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 64;
    c->s = realloc(c->s, c->cap * sizeof *c->s);
    if (!c->s) abort();
  }
  c->s[c->n++] = *s;
}

static const mtld_sample_t *find_sample(const samples_t *c, uint64_t id) {
  for (size_t i = 0; i < c->n; i++)
    if (c->s[i].sample_id == id) return &c->s[i];
  return NULL;
}

static int same_samples(const samples_t *a, const samples_t *b) {
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n; i++)
    if (memcmp(&a->s[i], &b->s[i], sizeof a->s[i]) != 0) return 0;
  return 1;
}

#define LAB(s, l) ((s)->labels[MTLD_LABEL_##l])
#define ALL_RELEASED INT64_MAX

/* ---- matching ---- */

static void test_click_by_request_id(void) {
  env_t e = {0};
  if (env_open(&e, NULL, NULL) != 0) {
    CHECK(0);
    return;
  }
  samples_t out = {0};
  mtld_event_t ev;
  /* linked by the impression's event id, even from another scenario and
   * after the click window (an explicit link needs no heuristics) */
  ev = mk(MTLD_EV_IMPRESSION, 100, 1, 10, "home", T0, 0);
  CHECK(feed(&e, &ev, 0, 0));
  ev = mk(MTLD_EV_CLICK, 101, 1, 10, "search", T0 + 45 * MIN_MS, 100);
  CHECK(feed(&e, &ev, 0, 1));
  /* two impressions of one page request (shared request id): the click on
   * item 21 labels that one only */
  ev = mk(MTLD_EV_IMPRESSION, 200, 2, 20, "home", T0 + 1, 555);
  CHECK(feed(&e, &ev, 0, 2));
  ev = mk(MTLD_EV_IMPRESSION, 201, 2, 21, "home", T0 + 1, 555);
  CHECK(feed(&e, &ev, 0, 3));
  ev = mk(MTLD_EV_CLICK, 202, 2, 21, "other", T0 + 2 * HOUR_MS, 555);
  CHECK(feed(&e, &ev, 0, 4));
  /* a request id that links nothing and no window match: unmatched */
  ev = mk(MTLD_EV_CLICK, 203, 3, 30, "home", T0 + 5, 999);
  CHECK(feed(&e, &ev, 0, 5));

  CHECK(mtld_joiner_pending_count(e.j) == 3);
  /* the in-memory indexes: at least an entry and three map slots a sample */
  CHECK(mtld_joiner_memory_bytes(e.j) >= 3 * (64 + 3 * 16));
  CHECK(mtld_joiner_release(e.j, ALL_RELEASED, collect, &out) == 3);
  CHECK(mtld_joiner_pending_count(e.j) == 0);
  const mtld_sample_t *a = find_sample(&out, 100), *b = find_sample(&out, 200),
                      *c = find_sample(&out, 201);
  CHECK(a && b && c);
  if (a && b && c) {
    CHECK(LAB(a, CLICK) == 1 && LAB(a, CART) == 0 && LAB(a, PURCHASE) == 0);
    CHECK(LAB(b, CLICK) == 0);
    CHECK(LAB(c, CLICK) == 1);
    CHECK(a->kind == MTLD_SAMPLE_IMPRESSION && a->weight == 1.0f);
    CHECK(a->label_mask ==
          (1u << MTLD_LABEL_CLICK | 1u << MTLD_LABEL_CART | 1u << MTLD_LABEL_PURCHASE));
    CHECK(a->fields[MTLD_FIELD_USER] == 1 && a->fields[MTLD_FIELD_ITEM] == 10);
    CHECK(a->fields[MTLD_FIELD_CATEGORY] == 1000 + 10 % 7);
    CHECK(a->fields[MTLD_FIELD_SCENARIO] == mtld_hash_id("home", 4));
    CHECK(a->fields[MTLD_FIELD_POSITION] == 10 % 5 + 1);
    CHECK(a->n_fields == MTLD_FIELD_EXTRA);
    CHECK(a->fields[MTLD_FIELD_HOUR] == 3); /* T0 = 2017-07-14T02:40Z: 1 + hour 2 */
    CHECK(strcmp(a->scenario, "home") == 0 && a->scenario_id == mtld_hash_id("home", 4));
    CHECK(a->time_ms == T0 && a->partition == 0 && a->offset == 0);
    CHECK(a->n_dense == mtld_features_dense_count(&e.def));
  }
  mtld_joiner_counters_t k;
  mtld_joiner_counters(e.j, &k);
  CHECK(k.opened == 3 && k.clicked == 2 && k.unmatched_click == 1 && k.released == 3);
  free(out.s);
  env_close(&e);
}

static void test_click_window(void) {
  env_t e = {0};
  if (env_open(&e, NULL, NULL) != 0) {
    CHECK(0);
    return;
  }
  samples_t out = {0};
  mtld_event_t ev;
  int64_t off = 0;
  /* within the 30 min window */
  ev = mk(MTLD_EV_IMPRESSION, 1, 1, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 2, 1, 10, "home", T0 + 30 * MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  /* outside it (31 min) */
  ev = mk(MTLD_EV_IMPRESSION, 3, 2, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 4, 2, 10, "home", T0 + 31 * MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  /* other scenario, other item, before the impression: no match */
  ev = mk(MTLD_EV_IMPRESSION, 5, 3, 10, "home", T0 + 10 * MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 6, 3, 10, "search", T0 + 11 * MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 7, 3, 11, "home", T0 + 11 * MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 8, 3, 10, "home", T0 + 9 * MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  /* two impressions of the same item: the most recent unclicked one wins,
   * a second click goes to the other one */
  ev = mk(MTLD_EV_IMPRESSION, 9, 4, 40, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_IMPRESSION, 10, 4, 40, "home", T0 + MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 11, 4, 40, "home", T0 + 2 * MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  mtld_joiner_release(e.j, ALL_RELEASED, collect, &out);
  CHECK(out.n == 5);
  const mtld_sample_t *s;
  CHECK((s = find_sample(&out, 1)) && LAB(s, CLICK) == 1);
  CHECK((s = find_sample(&out, 3)) && LAB(s, CLICK) == 0);
  CHECK((s = find_sample(&out, 5)) && LAB(s, CLICK) == 0);
  CHECK((s = find_sample(&out, 9)) && LAB(s, CLICK) == 0);
  CHECK((s = find_sample(&out, 10)) && LAB(s, CLICK) == 1);
  mtld_joiner_counters_t k;
  mtld_joiner_counters(e.j, &k);
  CHECK(k.unmatched_click == 4 && k.clicked == 2);

  /* a second click: goes to the older, still unclicked impression */
  out.n = 0;
  ev = mk(MTLD_EV_IMPRESSION, 20, 5, 50, "home", T0 + 3 * HOUR_MS, 0);
  feed(&e, &ev, 1, 0);
  ev = mk(MTLD_EV_IMPRESSION, 21, 5, 50, "home", T0 + 3 * HOUR_MS + 1000, 0);
  feed(&e, &ev, 1, 1);
  ev = mk(MTLD_EV_CLICK, 22, 5, 50, "home", T0 + 3 * HOUR_MS + 2000, 0);
  feed(&e, &ev, 1, 2);
  ev = mk(MTLD_EV_CLICK, 23, 5, 50, "home", T0 + 3 * HOUR_MS + 3000, 0);
  feed(&e, &ev, 1, 3);
  ev = mk(MTLD_EV_CLICK, 24, 5, 50, "home", T0 + 3 * HOUR_MS + 4000, 0); /* third: duplicate */
  feed(&e, &ev, 1, 4);
  mtld_joiner_release(e.j, ALL_RELEASED, collect, &out);
  CHECK(out.n == 2 && LAB(&out.s[0], CLICK) == 1 && LAB(&out.s[1], CLICK) == 1);
  mtld_joiner_counters(e.j, &k);
  CHECK(k.duplicate_click == 1);
  free(out.s);
  env_close(&e);
}

static void test_conversions(void) {
  env_t e = {0};
  if (env_open(&e, NULL, NULL) != 0) {
    CHECK(0);
    return;
  }
  samples_t out = {0};
  mtld_event_t ev;
  int64_t off = 0;
  /* impression, click, cart, purchase in the conversion window */
  ev = mk(MTLD_EV_IMPRESSION, 1, 1, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 2, 1, 10, "home", T0 + MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_ADD_TO_CART, 3, 1, 10, "cart", T0 + HOUR_MS, 0); /* any scenario */
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_PURCHASE, 4, 1, 10, "checkout", T0 + 2 * HOUR_MS, 0);
  feed(&e, &ev, 0, off++);
  /* purchase after the conversion window: no label */
  ev = mk(MTLD_EV_IMPRESSION, 5, 2, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 6, 2, 10, "home", T0 + MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_PURCHASE, 7, 2, 10, "checkout", T0 + MIN_MS + 24 * HOUR_MS + 1, 0);
  feed(&e, &ev, 0, off++);
  /* purchase without a click: no label (no leak), counted */
  ev = mk(MTLD_EV_IMPRESSION, 8, 3, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_PURCHASE, 9, 3, 10, "checkout", T0 + HOUR_MS, 8); /* even linked by id */
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_ADD_TO_CART, 10, 3, 10, "checkout", T0 + HOUR_MS, 0);
  feed(&e, &ev, 0, off++);
  /* purchase linked by request id to a clicked impression, other item key */
  ev = mk(MTLD_EV_IMPRESSION, 11, 4, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 12, 4, 10, "home", T0 + 1, 11);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_PURCHASE, 13, 4, 10, "checkout", T0 + 3 * HOUR_MS, 11);
  feed(&e, &ev, 0, off++);
  /* same scenario preferred among clicked samples of the user and item */
  ev = mk(MTLD_EV_IMPRESSION, 14, 5, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_IMPRESSION, 15, 5, 10, "search", T0 + 10, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 16, 5, 10, "home", T0 + 20, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 17, 5, 10, "search", T0 + 30, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_PURCHASE, 18, 5, 10, "home", T0 + 40, 0);
  feed(&e, &ev, 0, off++);

  mtld_joiner_release(e.j, ALL_RELEASED, collect, &out);
  CHECK(out.n == 6);
  const mtld_sample_t *s;
  CHECK((s = find_sample(&out, 1)) && LAB(s, CLICK) == 1 && LAB(s, CART) == 1 &&
        LAB(s, PURCHASE) == 1);
  CHECK((s = find_sample(&out, 5)) && LAB(s, CLICK) == 1 && LAB(s, PURCHASE) == 0);
  CHECK((s = find_sample(&out, 8)) && LAB(s, CLICK) == 0 && LAB(s, PURCHASE) == 0 &&
        LAB(s, CART) == 0);
  CHECK((s = find_sample(&out, 11)) && LAB(s, CLICK) == 1 && LAB(s, PURCHASE) == 1);
  CHECK((s = find_sample(&out, 14)) && LAB(s, PURCHASE) == 1);
  CHECK((s = find_sample(&out, 15)) && LAB(s, CLICK) == 1 && LAB(s, PURCHASE) == 0);
  /* ESMM: purchase implies click on every sample */
  for (size_t i = 0; i < out.n; i++)
    CHECK(LAB(&out.s[i], PURCHASE) == 0 || LAB(&out.s[i], CLICK) == 1);
  mtld_joiner_counters_t k;
  mtld_joiner_counters(e.j, &k);
  CHECK(k.carted == 1 && k.purchased == 3 && k.unmatched_purchase == 2 && k.unmatched_cart == 1);
  free(out.s);
  env_close(&e);
}

/* Every event handed to the joiner ends in exactly one counter (the ledger
 * of joiner.h), labels after every sample they could label was released are
 * "late", and restoring the counters undoes what a dropped batch counted. */
static void test_ledger(void) {
  env_t e = {0};
  if (env_open(&e, NULL, NULL) != 0) {
    CHECK(0);
    return;
  }
  samples_t out = {0};
  mtld_event_t ev;
  ev = mk(MTLD_EV_IMPRESSION, 1, 1, 10, "home", T0, 0);
  CHECK(feed(&e, &ev, 0, 0));
  CHECK(feed(&e, &ev, 0, 0)); /* the same record again: its sample is pending */
  ev = mk(MTLD_EV_CLICK, 2, 1, 10, "home", T0 + MIN_MS, 0);
  CHECK(feed(&e, &ev, 0, 1));
  ev = mk(MTLD_EV_CLICK, 3, 1, 10, "home", T0 + 2 * MIN_MS, 0);
  CHECK(feed(&e, &ev, 0, 2)); /* duplicate_click */
  ev = mk(MTLD_EV_ADD_TO_CART, 4, 1, 10, "home", T0 + HOUR_MS, 0);
  CHECK(feed(&e, &ev, 0, 3));
  ev = mk(MTLD_EV_ADD_TO_CART, 5, 1, 10, "home", T0 + HOUR_MS + 1, 0);
  CHECK(feed(&e, &ev, 0, 4)); /* repeated */
  ev = mk(MTLD_EV_CLICK, 6, 2, 11, "home", T0 + MIN_MS, 0);
  CHECK(feed(&e, &ev, 0, 5)); /* no impression */
  ev = mk(MTLD_EV_PURCHASE, 7, 2, 11, "home", T0 + MIN_MS, 0);
  CHECK(feed(&e, &ev, 0, 6)); /* no clicked sample */
  mtld_joiner_counters_t k0;
  mtld_joiner_counters(e.j, &k0);
  mtld_joiner_counters_commit(e.j);
  CHECK(k0.opened == 1 && k0.duplicate_sample[0] == 1);
  CHECK(k0.clicked == 1 && k0.duplicate_click == 1 && k0.unmatched_click == 1 &&
        k0.late_click == 0);
  CHECK(k0.carted == 1 && k0.repeated_cart == 1 && k0.unmatched_purchase == 1 &&
        k0.late_purchase == 0);
  mtld_joiner_release(e.j, ALL_RELEASED, collect, &out);
  CHECK(out.n == 1);
  /* after the release: a click and a cart for the released impression */
  ev = mk(MTLD_EV_CLICK, 8, 1, 10, "home", T0 + 3 * MIN_MS, 0);
  CHECK(feed(&e, &ev, 0, 7));
  ev = mk(MTLD_EV_ADD_TO_CART, 9, 1, 10, "home", T0 + 2 * HOUR_MS, 0);
  CHECK(feed(&e, &ev, 0, 8));
  mtld_joiner_counters_t k;
  mtld_joiner_counters(e.j, &k);
  CHECK(k.unmatched_click == 2 && k.late_click == 1);
  CHECK(k.unmatched_cart == 1 && k.late_cart == 1);
  CHECK(k.opened + k.reviews + k.negatives_sampled ==
        k.released + mtld_joiner_pending_count(e.j) + k.corrupt);
  /* clicks: 4 given = attached 1 + duplicate 1 + unmatched 2 */
  CHECK(k.clicked + k.duplicate_click + k.unmatched_click == 4);
  mtld_joiner_counters_t kc;
  mtld_joiner_counters_committed(e.j, &kc);
  CHECK(memcmp(&kc, &k0, sizeof k) == 0);
  mtld_joiner_counters_rollback(e.j); /* back to the counts committed with k0 */
  mtld_joiner_counters(e.j, &k);
  CHECK(memcmp(&k, &k0, sizeof k) == 0);
  free(out.s);
  env_close(&e);
}

static void test_review(void) {
  env_t e = {0};
  if (env_open(&e, NULL, NULL) != 0) {
    CHECK(0);
    return;
  }
  samples_t out = {0};
  mtld_event_t ev = mk(MTLD_EV_REVIEW, 77, 1, 12, "pdp", T0, 0);
  ev.rating = 4;
  CHECK(feed(&e, &ev, 0, 0));
  /* released once the watermark is past its time (strictly) */
  CHECK(mtld_joiner_release(e.j, T0, collect, &out) == 0);
  CHECK(mtld_joiner_release(e.j, T0 + 1, collect, &out) == 1);
  CHECK(out.n == 1);
  if (out.n == 1) {
    const mtld_sample_t *s = &out.s[0];
    CHECK(s->kind == MTLD_SAMPLE_REVIEW && s->sample_id == 77);
    CHECK(s->label_mask == 1u << MTLD_LABEL_RATING);
    CHECK(LAB(s, RATING) == 4.0f && LAB(s, CLICK) == 0);
    CHECK(s->fields[MTLD_FIELD_ITEM] == 12);
    /* the review's own rating is not in its features: user mean rating and
     * review count before it are 0 (dense layout: see features.h) */
    int nh = e.def.n_half_lives, base = 10 * nh + 6;
    CHECK(s->dense[base] == 0.0f && s->dense[base + 1] == 0.0f);
  }
  /* a click does not match a review */
  ev = mk(MTLD_EV_REVIEW, 78, 1, 12, "pdp", T0 + 10, 0);
  feed(&e, &ev, 0, 1);
  ev = mk(MTLD_EV_CLICK, 79, 1, 12, "pdp", T0 + 11, 78);
  feed(&e, &ev, 0, 2);
  mtld_joiner_counters_t k;
  mtld_joiner_counters(e.j, &k);
  CHECK(k.reviews == 2 && k.unmatched_click == 1);
  free(out.s);
  env_close(&e);
}

/* The review label (review window 2 days): click AND purchase AND a review
 * of the same user and item within the window after the purchase; the
 * purchase time survives a reopen (it is in the pending record). */
static void test_review_label(void) {
  mtld_joiner_config_t cfg;
  mtld_joiner_config_default(&cfg);
  cfg.review_window_ms = 48 * HOUR_MS;
  env_t e = {0};
  if (env_open(&e, &cfg, NULL) != 0) {
    CHECK(0);
    return;
  }
  samples_t out = {0};
  mtld_event_t ev;
  int64_t off = 0;
  /* user 1: bought, reviewed a day after (after a reopen): review = 1 */
  ev = mk(MTLD_EV_IMPRESSION, 1, 1, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 2, 1, 10, "home", T0 + MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_PURCHASE, 3, 1, 10, "checkout", T0 + HOUR_MS, 0);
  feed(&e, &ev, 0, off++);
  /* user 2: bought, reviewed after the window: review = 0 */
  ev = mk(MTLD_EV_IMPRESSION, 4, 2, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 5, 2, 10, "home", T0 + MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_PURCHASE, 6, 2, 10, "checkout", T0 + HOUR_MS, 0);
  feed(&e, &ev, 0, off++);
  /* user 3: clicked, not bought, reviewed: review = 0 (no purchase) */
  ev = mk(MTLD_EV_IMPRESSION, 7, 3, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 8, 3, 10, "home", T0 + MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  /* user 4: bought item 10, reviewed item 11: review = 0 */
  ev = mk(MTLD_EV_IMPRESSION, 9, 4, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 10, 4, 10, "home", T0 + MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_PURCHASE, 11, 4, 10, "checkout", T0 + HOUR_MS, 0);
  feed(&e, &ev, 0, off++);
  /* user 5: reviewed BEFORE the purchase: review = 0 */
  ev = mk(MTLD_EV_IMPRESSION, 12, 5, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 13, 5, 10, "home", T0 + MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_REVIEW, 14, 5, 10, "pdp", T0 + 30 * MIN_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_PURCHASE, 15, 5, 10, "checkout", T0 + HOUR_MS, 0);
  feed(&e, &ev, 0, off++);
  CHECK(env_commit(&e));
  env_close(&e);
  CHECK(env_open(&e, &cfg, e.path) == 0);
  ev = mk(MTLD_EV_REVIEW, 16, 1, 10, "pdp", T0 + 25 * HOUR_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_REVIEW, 17, 2, 10, "pdp", T0 + HOUR_MS + 48 * HOUR_MS + 1, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_REVIEW, 18, 3, 10, "pdp", T0 + 2 * HOUR_MS, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_REVIEW, 19, 4, 11, "pdp", T0 + 2 * HOUR_MS, 0);
  feed(&e, &ev, 0, off++);
  /* the impressions wait for the review window as well */
  int64_t deadline = T0 + 30 * MIN_MS + 24 * HOUR_MS + 48 * HOUR_MS;
  mtld_joiner_release(e.j, deadline, collect, &out);
  for (size_t i = 0; i < out.n; i++) CHECK(out.s[i].kind == MTLD_SAMPLE_REVIEW);
  mtld_joiner_release(e.j, ALL_RELEASED, collect, &out);
  CHECK(out.n == 5 + 5);
  const mtld_sample_t *s;
  uint32_t imp_mask = 1u << MTLD_LABEL_CLICK | 1u << MTLD_LABEL_CART | 1u << MTLD_LABEL_PURCHASE |
                      1u << MTLD_LABEL_REVIEW;
  CHECK((s = find_sample(&out, 1)) && s->label_mask == imp_mask && LAB(s, PURCHASE) == 1 &&
        LAB(s, REVIEW) == 1);
  CHECK((s = find_sample(&out, 4)) && LAB(s, PURCHASE) == 1 && LAB(s, REVIEW) == 0);
  CHECK((s = find_sample(&out, 7)) && LAB(s, CLICK) == 1 && LAB(s, REVIEW) == 0);
  CHECK((s = find_sample(&out, 9)) && LAB(s, PURCHASE) == 1 && LAB(s, REVIEW) == 0);
  CHECK((s = find_sample(&out, 12)) && LAB(s, PURCHASE) == 1 && LAB(s, REVIEW) == 0);
  /* reviews stay rating samples without the review label */
  CHECK((s = find_sample(&out, 16)) && s->label_mask == 1u << MTLD_LABEL_RATING);
  mtld_joiner_counters_t k;
  mtld_joiner_counters(e.j, &k);
  CHECK(k.reviewed == 1 && k.reviews == 4); /* counters since the reopen */
  free(out.s);
  env_close(&e);

  /* without a review window: no review label, deadline as before */
  env_t d = {0};
  if (env_open(&d, NULL, NULL) != 0) {
    CHECK(0);
    return;
  }
  samples_t o2 = {0};
  off = 0;
  ev = mk(MTLD_EV_IMPRESSION, 1, 1, 10, "home", T0, 0);
  feed(&d, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 2, 1, 10, "home", T0 + MIN_MS, 0);
  feed(&d, &ev, 0, off++);
  ev = mk(MTLD_EV_PURCHASE, 3, 1, 10, "checkout", T0 + HOUR_MS, 0);
  feed(&d, &ev, 0, off++);
  ev = mk(MTLD_EV_REVIEW, 4, 1, 10, "pdp", T0 + 2 * HOUR_MS, 0);
  feed(&d, &ev, 0, off++);
  mtld_joiner_release(d.j, T0 + 30 * MIN_MS + 24 * HOUR_MS + 1, collect, &o2);
  CHECK(o2.n == 2);
  CHECK((s = find_sample(&o2, 1)) && !((s->label_mask >> MTLD_LABEL_REVIEW) & 1) &&
        LAB(s, REVIEW) == 0);
  free(o2.s);
  env_close(&d);
}

/* ---- release ---- */

static void test_release_order(void) {
  env_t e = {0};
  mtld_joiner_config_t cfg;
  mtld_joiner_config_default(&cfg);
  cfg.click_window_ms = 10 * MIN_MS;
  cfg.conversion_window_ms = HOUR_MS;
  const int64_t D = 70 * MIN_MS;
  if (env_open(&e, &cfg, NULL) != 0) {
    CHECK(0);
    return;
  }
  samples_t out = {0};
  mtld_event_t ev;
  /* impressions out of order across partitions, ties on time broken by
   * partition then offset */
  ev = mk(MTLD_EV_IMPRESSION, 1, 1, 10, "home", T0 + 500, 0);
  feed(&e, &ev, 1, 7);
  ev = mk(MTLD_EV_IMPRESSION, 2, 2, 10, "home", T0 + 100, 0);
  feed(&e, &ev, 2, 3);
  ev = mk(MTLD_EV_IMPRESSION, 3, 3, 10, "home", T0 + 100, 0);
  feed(&e, &ev, 1, 9);
  ev = mk(MTLD_EV_IMPRESSION, 4, 4, 10, "home", T0 + 100, 0);
  feed(&e, &ev, 1, 8);
  ev = mk(MTLD_EV_IMPRESSION, 5, 5, 10, "home", T0 + 300, 0);
  feed(&e, &ev, 0, 1);
  /* a review at T0 + D + 200: deadline = its time, between the impressions' */
  ev = mk(MTLD_EV_REVIEW, 6, 6, 10, "home", T0 + D + 200, 0);
  feed(&e, &ev, 0, 2);
  CHECK(mtld_joiner_next_deadline(e.j) == T0 + 100 + D);

  /* deadline == watermark: not yet (an event at the watermark may come) */
  CHECK(mtld_joiner_release(e.j, T0 + 100 + D, collect, &out) == 0);
  CHECK(mtld_joiner_release(e.j, T0 + 101 + D, collect, &out) == 3);
  CHECK(out.n == 3 && out.s[0].sample_id == 4 && out.s[1].sample_id == 3 &&
        out.s[2].sample_id == 2);
  /* a lower watermark releases nothing */
  CHECK(mtld_joiner_release(e.j, T0, collect, &out) == 0);
  CHECK(mtld_joiner_release(e.j, T0 + D + 400, collect, &out) == 2);
  CHECK(out.n == 5 && out.s[3].sample_id == 6 && out.s[4].sample_id == 5);
  CHECK(mtld_joiner_pending_count(e.j) == 1);
  CHECK(mtld_joiner_release(e.j, ALL_RELEASED, collect, &out) == 1);
  CHECK(out.n == 6 && out.s[5].sample_id == 1);
  CHECK(mtld_joiner_next_deadline(e.j) == INT64_MAX);

  /* a sample created behind the released watermark is late */
  ev = mk(MTLD_EV_IMPRESSION, 7, 7, 10, "home", T0, 0);
  feed(&e, &ev, 0, 3);
  mtld_joiner_counters_t k;
  mtld_joiner_counters(e.j, &k);
  CHECK(k.late == 1);
  /* released deletes are staged: after a commit, a new joiner sees only the
   * late one */
  CHECK(env_commit(&e));
  mtld_joiner_destroy(e.j);
  char err[128];
  CHECK(mtld_joiner_create(&e.j, e.st, &e.def, &e.cfg, err, sizeof err) == MTLD_OK);
  CHECK(mtld_joiner_pending_count(e.j) == 1);
  free(out.s);
  env_close(&e);
}

/* ---- point in time ---- */

static void test_point_in_time(void) {
  env_t e = {0};
  if (env_open(&e, NULL, NULL) != 0) {
    CHECK(0);
    return;
  }
  samples_t out = {0};
  mtld_event_t ev;
  int64_t off = 0;
  /* history: two impressions and a click of user 1 / item 10 */
  ev = mk(MTLD_EV_IMPRESSION, 1, 1, 10, "home", T0, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_CLICK, 2, 1, 10, "home", T0 + 1000, 0);
  feed(&e, &ev, 0, off++);
  ev = mk(MTLD_EV_IMPRESSION, 3, 1, 11, "home", T0 + 2000, 0);
  feed(&e, &ev, 0, off++);
  CHECK(env_commit(&e));
  /* the state BEFORE the next impression, and its dense vector */
  mtld_user_features_t u;
  mtld_item_features_t it;
  CHECK(mtld_store_get_user(e.st, 1, &u) == MTLD_OK);
  CHECK(mtld_store_get_item(e.st, 10, &it) == MTLD_OK);
  float want[MTLD_MAX_DENSE];
  int64_t t = T0 + 10 * MIN_MS;
  int n = mtld_features_dense(&e.def, &u, &it, mtld_hash_id("home", 4), t, want, MTLD_MAX_DENSE);
  ev = mk(MTLD_EV_IMPRESSION, 4, 1, 10, "home", t, 0);
  feed(&e, &ev, 0, off++);
  /* and the state after it, which must NOT be what the sample carries */
  mtld_user_features_t u2;
  mtld_item_features_t it2;
  float after[MTLD_MAX_DENSE];
  CHECK(mtld_store_get_user(e.st, 1, &u2) == MTLD_OK);
  CHECK(mtld_store_get_item(e.st, 10, &it2) == MTLD_OK);
  mtld_features_dense(&e.def, &u2, &it2, mtld_hash_id("home", 4), t, after, MTLD_MAX_DENSE);
  mtld_joiner_release(e.j, ALL_RELEASED, collect, &out);
  const mtld_sample_t *s = find_sample(&out, 4);
  CHECK(s != NULL);
  if (s) {
    CHECK(s->n_dense == n);
    CHECK(memcmp(s->dense, want, (size_t)n * sizeof(float)) == 0);
    CHECK(memcmp(s->dense, after, (size_t)n * sizeof(float)) != 0);
    /* the user's impression count at half-life 0 (1 h) decayed to t: the
     * two earlier impressions, not this one */
    double hl = e.def.half_life_s[0] * 1000.0;
    double two = pow(2, -(double)(t - T0) / hl) + pow(2, -(double)(t - T0 - 2000) / hl);
    CHECK_NEAR(expm1(s->dense[0]), two, 1e-4);
    /* the sequence: the user's recent items before, newest first (the
     * click on item 10; impressions are not in the sequence) */
    CHECK(s->seq_len == (int)(u.seq_len < MTLD_MAX_SAMPLE_SEQ ? u.seq_len : MTLD_MAX_SAMPLE_SEQ));
    CHECK(s->seq_len >= 1 && s->seq_items[0] == u.seq[0].item_id &&
          s->seq_cats[0] == u.seq[0].category_id);
  }
  free(out.s);
  env_close(&e);
}

/* ---- persistence, rollback ---- */

/* A small labelled stream: impressions, clicks, carts, purchases, reviews
 * across two partitions.  Events [0, half) and [half, n). */
static size_t make_stream(mtld_event_t *evs, int32_t *parts, size_t max) {
  size_t n = 0;
  for (int i = 0; i < 60 && n + 4 <= max; i++) {
    uint64_t user = 1 + (uint64_t)(i % 9), item = 100 + (uint64_t)(i % 13);
    int32_t p = (int32_t)(user % 2);
    int64_t t = T0 + i * 5 * MIN_MS;
    evs[n] = mk(MTLD_EV_IMPRESSION, 1000 + (uint64_t)i * 10, user, item, i % 3 ? "home" : "search",
                t, i % 4 == 0 ? 5000 + (uint64_t)i : 0);
    parts[n++] = p;
    if (i % 2 == 0) {
      evs[n] = mk(MTLD_EV_CLICK, 1000 + (uint64_t)i * 10 + 1, user, item, i % 3 ? "home" : "search",
                  t + 20 * MIN_MS, 0);
      parts[n++] = p;
    }
    if (i % 6 == 0) {
      evs[n] = mk(MTLD_EV_PURCHASE, 1000 + (uint64_t)i * 10 + 2, user, item, "checkout",
                  t + 40 * MIN_MS, 0);
      parts[n++] = p;
    }
    if (i % 5 == 0) {
      evs[n] =
          mk(MTLD_EV_REVIEW, 1000 + (uint64_t)i * 10 + 3, user, item, "pdp", t + 50 * MIN_MS, 0);
      parts[n++] = p;
    }
  }
  return n;
}

static void feed_range(env_t *e, const mtld_event_t *evs, const int32_t *parts, size_t from,
                       size_t to, int *ok) {
  for (size_t i = from; i < to; i++)
    if (!feed(e, &evs[i], parts[i], (int64_t)i)) *ok = 0;
}

static void test_persistence_and_rollback(void) {
  static mtld_event_t evs[400];
  static int32_t parts[400];
  size_t n = make_stream(evs, parts, 400), half = n / 2;
  int ok = 1;

  /* reference: one joiner, one commit in the middle */
  env_t a = {0};
  samples_t ref = {0};
  if (env_open(&a, NULL, NULL) != 0) {
    CHECK(0);
    return;
  }
  feed_range(&a, evs, parts, 0, half, &ok);
  CHECK(env_commit(&a));
  feed_range(&a, evs, parts, half, n, &ok);
  mtld_joiner_release(a.j, ALL_RELEASED, collect, &ref);
  env_close(&a);
  CHECK(ref.n > 50);

  /* restart after the commit: store closed and reopened, joiner rebuilt
   * from the committed pending state; the second half's clicks and
   * purchases still find the first half's impressions */
  env_t b = {0};
  samples_t got = {0};
  if (env_open(&b, NULL, NULL) != 0) {
    CHECK(0);
    return;
  }
  feed_range(&b, evs, parts, 0, half, &ok);
  size_t pending = mtld_joiner_pending_count(b.j);
  CHECK(env_commit(&b));
  env_close(&b);
  CHECK(env_open(&b, NULL, b.path) == 0);
  CHECK(b.j && mtld_joiner_pending_count(b.j) == pending);
  if (b.j) {
    feed_range(&b, evs, parts, half, n, &ok);
    mtld_joiner_release(b.j, ALL_RELEASED, collect, &got);
    CHECK(same_samples(&ref, &got));
    env_close(&b);
  }

  /* rollback: the second half staged, dropped, the joiner reloaded, then
   * the second half again gives the same samples */
  env_t c = {0};
  samples_t got2 = {0};
  if (env_open(&c, NULL, NULL) != 0) {
    CHECK(0);
    return;
  }
  feed_range(&c, evs, parts, 0, half, &ok);
  pending = mtld_joiner_pending_count(c.j);
  CHECK(env_commit(&c));
  feed_range(&c, evs, parts, half, n, &ok);
  mtld_joiner_release(c.j, T0 + 2 * HOUR_MS, collect, &got2); /* releases roll back too */
  CHECK(mtld_joiner_pending_count(c.j) != pending);
  mtld_store_rollback(c.st);
  char err[128];
  CHECK(mtld_joiner_reload(c.j, err, sizeof err) == MTLD_OK);
  CHECK(mtld_joiner_pending_count(c.j) == pending);
  got2.n = 0;
  feed_range(&c, evs, parts, half, n, &ok);
  mtld_joiner_release(c.j, ALL_RELEASED, collect, &got2);
  CHECK(same_samples(&ref, &got2));
  /* and the pending state in the store is gone once released + committed */
  CHECK(env_commit(&c));
  CHECK(mtld_joiner_reload(c.j, err, sizeof err) == MTLD_OK);
  CHECK(mtld_joiner_pending_count(c.j) == 0);
  env_close(&c);
  CHECK(ok);
  free(ref.s);
  free(got.s);
  free(got2.s);
}

/* ---- sampled negatives ---- */

/* Views of 60 items, each viewed once by its own user, then 40 views of
 * items seen before: run once releasing at the end, once releasing half,
 * committing, restarting and releasing the rest. */
static int run_donors(samples_t *out, int restart) {
  mtld_joiner_config_t cfg;
  mtld_joiner_config_default(&cfg);
  cfg.mode = MTLD_JOIN_SAMPLED_NEGATIVES;
  cfg.negatives_per_positive = 2;
  cfg.popularity_size = 32;
  env_t e = {0};
  if (env_open(&e, &cfg, NULL) != 0) return 0;
  int ok = 1;
  for (int i = 0; i < 100; i++) {
    uint64_t item = i < 60 ? 500 + (uint64_t)i : 500 + (uint64_t)((i * 7) % 60);
    mtld_event_t ev = mk(MTLD_EV_CLICK, 7000 + (uint64_t)i, 100 + (uint64_t)i, item, "feed",
                         T0 + i * 10 * MIN_MS, 0);
    ok &= feed(&e, &ev, i % 2, i);
    if (restart && i == 70) {
      /* released up to the 30th view, committed, restarted */
      mtld_joiner_release(e.j, T0 + 30 * 10 * MIN_MS + 25 * HOUR_MS, collect, out);
      ok &= env_commit(&e);
      env_close(&e);
      if (env_open(&e, &cfg, e.path) != 0) return 0;
    }
  }
  mtld_joiner_release(e.j, ALL_RELEASED, collect, out);
  env_close(&e);
  return ok;
}

/* Negatives take the item part of an earlier released positive as it was
 * at that positive's click: a first view's item features are all zero, and
 * so are those of negatives whose donor was a first view (with items drawn
 * from already-clicked ones and read as they are now, every negative had a
 * click counted, which told them from the new items of positives). */
static void test_negatives_from_donors(void) {
  samples_t a = {0}, b = {0};
  CHECK(run_donors(&a, 0));
  CHECK(run_donors(&b, 1));
  CHECK(a.n > 100 && same_samples(&a, &b)); /* the donor rings survive a restart */
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  int slots[MTLD_FEATURES_ITEM_DENSE_MAX];
  int ns = mtld_features_dense_item_slots(&def, slots);
  CHECK(ns == 5 * def.n_half_lives + 7);
  size_t neg = 0, neg_new = 0;
  for (size_t i = 0; i < a.n; i++) {
    const mtld_sample_t *s = &a.s[i];
    if (LAB(s, CLICK) == 1) continue;
    neg++;
    /* the donor: an earlier released positive of the negative's item with
     * the same item part */
    int found = 0;
    for (size_t j = 0; j < i && !found; j++) {
      const mtld_sample_t *p = &a.s[j];
      if (LAB(p, CLICK) != 1 || p->fields[MTLD_FIELD_ITEM] != s->fields[MTLD_FIELD_ITEM]) continue;
      int same = p->fields[MTLD_FIELD_CATEGORY] == s->fields[MTLD_FIELD_CATEGORY];
      for (int k = 0; k < ns; k++) same &= p->dense[slots[k]] == s->dense[slots[k]];
      found = same;
    }
    CHECK(found);
    int zero = 1;
    for (int k = 0; k < 5 * def.n_half_lives; k++) zero &= s->dense[slots[k]] == 0.0f;
    neg_new += (size_t)zero;
  }
  CHECK(neg > 100);
  /* most donors were first views: their counts were zero at their click */
  CHECK(neg_new > neg / 3);
  free(a.s);
  free(b.s);
}

/* Page views of 3 users over 20 items (popular ones more often). */
static size_t make_views(mtld_event_t *evs, size_t max) {
  size_t n = 0;
  for (int i = 0; i < 120 && n < max; i++) {
    uint64_t item = 200 + (uint64_t)((i * i) % 20 < 8 ? i % 3 : i % 20);
    evs[n++] = mk(MTLD_EV_CLICK, 9000 + (uint64_t)i, 1 + (uint64_t)(i % 3), item, "feed",
                  T0 + i * 7 * MIN_MS, 0);
  }
  /* a purchase of a viewed item after the view: labels the positive */
  evs[n++] = mk(MTLD_EV_PURCHASE, 9999, 1 + (uint64_t)(119 % 3), evs[119].item_id, "feed",
                T0 + 119 * 7 * MIN_MS + HOUR_MS, 0);
  return n;
}

static int run_sampled(samples_t *out, uint64_t seed, int restart_at, int popularity_size,
                       mtld_joiner_counters_t *k) {
  static mtld_event_t evs[200];
  size_t n = make_views(evs, 200);
  mtld_joiner_config_t cfg;
  mtld_joiner_config_default(&cfg);
  cfg.mode = MTLD_JOIN_SAMPLED_NEGATIVES;
  cfg.negatives_per_positive = 3;
  cfg.popularity_size = 16;
  cfg.seed = seed;
  env_t e = {0};
  if (env_open(&e, &cfg, NULL) != 0) return 0;
  int ok = 1;
  for (size_t i = 0; i < n; i++) {
    if ((int)i == restart_at) {
      ok &= env_commit(&e);
      env_close(&e);
      cfg.popularity_size = popularity_size;
      if (env_open(&e, &cfg, e.path) != 0) return 0;
    }
    ok &= feed(&e, &evs[i], 0, (int64_t)i);
  }
  mtld_joiner_release(e.j, ALL_RELEASED, collect, out);
  mtld_joiner_counters(e.j, k);
  env_close(&e);
  return ok;
}

static void test_sampled_negatives(void) {
  samples_t a = {0}, b = {0}, c = {0}, d = {0}, f = {0};
  mtld_joiner_counters_t k;
  CHECK(run_sampled(&a, 42, -1, 16, &k));
  CHECK(k.opened > 0 && k.negatives_sampled > 0);
  CHECK(k.negatives_sampled <= 3 * k.opened);
  CHECK(k.unmatched_click == 0 && k.purchased == 1);
  size_t pos = 0, neg = 0;
  for (size_t i = 0; i < a.n; i++) {
    const mtld_sample_t *s = &a.s[i];
    CHECK(s->weight == 1.0f && s->fields[MTLD_FIELD_POSITION] == 0);
    if (LAB(s, CLICK) == 1) {
      pos++;
      /* its negatives follow it (same time, partition, offset; subs 1..K) */
      for (size_t j = i + 1; j < a.n && a.s[j].offset == s->offset; j++) {
        CHECK(LAB(&a.s[j], CLICK) == 0 && LAB(&a.s[j], PURCHASE) == 0);
        CHECK(a.s[j].fields[MTLD_FIELD_ITEM] != s->fields[MTLD_FIELD_ITEM]);
        CHECK(a.s[j].fields[MTLD_FIELD_USER] == s->fields[MTLD_FIELD_USER]);
        CHECK(a.s[j].fields[MTLD_FIELD_HOUR] == s->fields[MTLD_FIELD_HOUR]);
        CHECK(a.s[j].sample_id == mtld_joiner_negative_id(s->sample_id, (uint32_t)(j - i)));
        CHECK(a.s[j].fields[MTLD_FIELD_ITEM] >= 200 && a.s[j].fields[MTLD_FIELD_ITEM] < 220);
        neg++;
      }
    }
  }
  CHECK(pos == k.opened && neg == k.negatives_sampled && a.n == pos + neg);
  /* repeated views of one item within the click window became one positive */
  CHECK(k.opened + k.duplicate_click == 120);
  /* same seed: same bytes; other seed: other negatives */
  CHECK(run_sampled(&b, 42, -1, 16, &k));
  CHECK(same_samples(&a, &b));
  CHECK(run_sampled(&c, 43, -1, 16, &k));
  CHECK(!same_samples(&a, &c));
  /* a restart in the middle samples the same negatives (rings persisted) */
  CHECK(run_sampled(&d, 42, 60, 16, &k));
  CHECK(same_samples(&a, &d));
  /* a restart with a larger ring keeps the recent items: still valid */
  CHECK(run_sampled(&f, 42, 60, 64, &k));
  CHECK(f.n > 0 && k.negatives_sampled > 0);
  free(a.s);
  free(b.s);
  free(c.s);
  free(d.s);
  free(f.s);
}

/* ---- interleaving determinism ---- */

typedef struct {
  mtld_event_t ev;
  int32_t partition;
  int64_t offset;
} rec_t;

static uint64_t lcg(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return *s >> 33;
}

static int rec_time_cmp(const void *x, const void *y) {
  const rec_t *a = x, *b = y;
  if (a->ev.time_ms != b->ev.time_ms) return a->ev.time_ms < b->ev.time_ms ? -1 : 1;
  return a->ev.event_id < b->ev.event_id ? -1 : a->ev.event_id > b->ev.event_id;
}

/* Per-partition streams: users and items belong to one partition (events
 * are keyed by user; items are kept apart so that the store's item
 * features, shared across partitions, do not depend on the interleaving).
 * Impressions with follow-ups (clicks, carts, purchases) and reviews, in
 * time order except for some neighbours swapped (less than the lateness).
 * views: no impressions (the sampled-negatives mode's streams). */
static size_t make_partition(rec_t *out, size_t max, int32_t p, uint64_t seed, int views) {
  uint64_t s = seed;
  size_t n = 0;
  int64_t t = T0;
  uint64_t id = (uint64_t)p * 1000000;
  while (n + 4 <= max) {
    t += (int64_t)(lcg(&s) % (3 * MIN_MS));
    uint64_t user = (uint64_t)p * 100 + lcg(&s) % 10;
    uint64_t item = (uint64_t)p * 100 + lcg(&s) % 15;
    const char *scen = lcg(&s) % 2 ? "a" : "b";
    uint64_t imp_id = ++id;
    uint64_t rid = lcg(&s) % 3 == 0 ? imp_id + 77 : 0;
    if (!views) out[n++] = (rec_t){mk(MTLD_EV_IMPRESSION, imp_id, user, item, scen, t, rid), p, 0};
    uint64_t r = lcg(&s) % 10;
    if (views ? r != 9 : r < 4) {
      int64_t tc = t + (int64_t)(lcg(&s) % (20 * MIN_MS));
      out[n++] = (rec_t){mk(MTLD_EV_CLICK, ++id, user, item, scen, tc, rid), p, 0};
      if (r < 2) {
        int64_t tb = tc + (int64_t)(lcg(&s) % HOUR_MS);
        out[n++] = (rec_t){
            mk(r ? MTLD_EV_PURCHASE : MTLD_EV_ADD_TO_CART, ++id, user, item, "x", tb, 0), p, 0};
      }
    } else if (r == 9) {
      out[n++] = (rec_t){mk(MTLD_EV_REVIEW, ++id, user, item, "pdp", t + 1, 0), p, 0};
    }
  }
  qsort(out, n, sizeof *out, rec_time_cmp);
  for (size_t i = 0; i + 1 < n; i++)
    if (lcg(&s) % 5 == 0 && out[i + 1].ev.time_ms - out[i].ev.time_ms < 30000) {
      rec_t tmp = out[i];
      out[i] = out[i + 1];
      out[i + 1] = tmp;
      i++;
    }
  /* a partition is read in offset order */
  for (size_t i = 0; i < n; i++) out[i].offset = (int64_t)i;
  return n;
}

/* Feeds the merged stream; after every `every` records, releases at the
 * watermark (min over both partitions, lateness covers the jitter). */
static int run_interleaved(const rec_t *const *order, size_t n, int every,
                           const mtld_joiner_config_t *cfg, samples_t *out,
                           mtld_joiner_counters_t *k) {
  env_t e = {0};
  mtld_watermark_t *wm;
  if (env_open(&e, cfg, NULL) != 0) return 0;
  mtld_watermark_create(&wm, 60000, 0);
  mtld_watermark_assign(wm, "t", 0, INT64_MIN);
  mtld_watermark_assign(wm, "t", 1, INT64_MIN);
  int ok = 1;
  int64_t last_wm = INT64_MIN;
  for (size_t i = 0; i < n; i++) {
    const rec_t *r = order[i];
    mtld_watermark_observe(wm, "t", r->partition, r->ev.time_ms);
    ok &= feed(&e, &r->ev, r->partition, r->offset);
    if (i >= 10 && (i + 1) % (size_t)every == 0) { /* both partitions seen */
      int64_t w = mtld_watermark_get(wm);
      if (w < last_wm) ok = 0; /* the test's streams keep it monotone */
      last_wm = w;
      mtld_joiner_release(e.j, w, collect, out);
      if ((i + 1) % (size_t)(every * 7) == 0) ok &= env_commit(&e);
    }
  }
  mtld_joiner_release(e.j, ALL_RELEASED, collect, out);
  mtld_joiner_counters(e.j, k);
  ok &= k->late == 0;
  mtld_watermark_destroy(wm);
  env_close(&e);
  return ok;
}

static void test_interleaving(int mode) {
  enum { PER = 600 };
  static rec_t p0[PER], p1[PER];
  static const rec_t *ord_a[2 * PER], *ord_b[2 * PER];
  int views = mode == MTLD_JOIN_SAMPLED_NEGATIVES;
  size_t n0 = make_partition(p0, PER, 0, 7, views), n1 = make_partition(p1, PER, 1, 11, views);
  /* A: strict alternation.  B: bursts of uneven sizes (both partitions
   * start early so neither is "empty" while the other runs ahead) */
  size_t na = 0, i0 = 0, i1 = 0;
  while (i0 < n0 || i1 < n1) {
    if (i0 < n0) ord_a[na++] = &p0[i0++];
    if (i1 < n1) ord_a[na++] = &p1[i1++];
  }
  size_t nb = 0;
  i0 = i1 = 0;
  uint64_t s = 99;
  while (i0 < n0 || i1 < n1) {
    size_t b0 = 1 + lcg(&s) % 9, b1 = 1 + lcg(&s) % 4;
    while (b0-- && i0 < n0) ord_b[nb++] = &p0[i0++];
    while (b1-- && i1 < n1) ord_b[nb++] = &p1[i1++];
  }
  CHECK(na == n0 + n1 && nb == na);

  mtld_joiner_config_t cfg;
  mtld_joiner_config_default(&cfg);
  cfg.click_window_ms = 20 * MIN_MS;
  cfg.conversion_window_ms = HOUR_MS;
  cfg.mode = mode;
  cfg.popularity_size = 32;
  samples_t a = {0}, b = {0}, c = {0};
  mtld_joiner_counters_t k;
  CHECK(run_interleaved(ord_a, na, 5, &cfg, &a, &k));
  CHECK(run_interleaved(ord_b, nb, 13, &cfg, &b, &k));
  CHECK(run_interleaved(ord_a, na, 1, &cfg, &c, &k)); /* release after every record */
  CHECK(k.clicked > 20 && k.purchased > 5);
  CHECK(mode == MTLD_JOIN_IMPRESSIONS || k.negatives_sampled > 100);
  CHECK(a.n > 100);
  CHECK(same_samples(&a, &b));
  CHECK(same_samples(&a, &c));
  /* labels did happen, and the sequence is sorted by release key */
  size_t clicks = 0, reviews = 0;
  for (size_t i = 0; i < a.n; i++) {
    clicks += LAB(&a.s[i], CLICK) == 1;
    reviews += a.s[i].kind == MTLD_SAMPLE_REVIEW;
  }
  CHECK(clicks > 20 && reviews > 5);
  free(a.s);
  free(b.s);
  free(c.s);
}

/* Sampled negatives with items SHARED by two partitions (users are not):
 * the store's item features at an event depend on how the partitions
 * interleave, but a released positive's item features come from the
 * release view, so the released samples are the same bytes for every
 * interleaving, and each positive's item features equal those of its item
 * over exactly the events before it in (time, partition, offset) order. */
static size_t make_shared(rec_t *out, size_t max, int32_t p, uint64_t seed) {
  uint64_t s = seed;
  size_t n = 0;
  int64_t t = T0;
  uint64_t id = (uint64_t)p * 1000000;
  while (n + 2 <= max) {
    t += (int64_t)(lcg(&s) % (2 * MIN_MS));
    uint64_t user = (uint64_t)p * 100 + lcg(&s) % 10, item = 1 + lcg(&s) % 12;
    out[n++] = (rec_t){mk(MTLD_EV_CLICK, ++id, user, item, "a", t, 0), p, 0};
    if (lcg(&s) % 4 == 0) {
      int type = lcg(&s) % 2 ? MTLD_EV_PURCHASE : MTLD_EV_ADD_TO_CART;
      out[n++] = (rec_t){mk(type, ++id, user, item, "a", t + (int64_t)(lcg(&s) % MIN_MS), 0), p, 0};
    }
  }
  qsort(out, n, sizeof *out, rec_time_cmp);
  for (size_t i = 0; i < n; i++) out[i].offset = (int64_t)i;
  return n;
}

static int rec_key_cmp(const void *x, const void *y) { /* (time, partition, offset) */
  const rec_t *a = *(const rec_t *const *)x, *b = *(const rec_t *const *)y;
  if (a->ev.time_ms != b->ev.time_ms) return a->ev.time_ms < b->ev.time_ms ? -1 : 1;
  if (a->partition != b->partition) return a->partition < b->partition ? -1 : 1;
  return a->offset < b->offset ? -1 : a->offset > b->offset;
}

static void test_release_view(void) {
  enum { PER = 400 };
  static rec_t p0[PER], p1[PER];
  static const rec_t *ord_a[2 * PER], *ord_b[2 * PER], *ord_k[2 * PER];
  size_t n0 = make_shared(p0, PER, 0, 5), n1 = make_shared(p1, PER, 1, 6);
  size_t na = 0, nb = 0, i0 = 0, i1 = 0;
  while (i0 < n0 || i1 < n1) { /* A: alternation */
    if (i0 < n0) ord_a[na++] = &p0[i0++];
    if (i1 < n1) ord_a[na++] = &p1[i1++];
  }
  uint64_t s = 3;
  i0 = i1 = 0;
  while (i0 < n0 || i1 < n1) { /* B: bursts */
    size_t b0 = 1 + lcg(&s) % 3, b1 = 1 + lcg(&s) % 11;
    while (b0-- && i0 < n0) ord_b[nb++] = &p0[i0++];
    while (b1-- && i1 < n1) ord_b[nb++] = &p1[i1++];
  }
  mtld_joiner_config_t cfg;
  mtld_joiner_config_default(&cfg);
  cfg.click_window_ms = 20 * MIN_MS;
  cfg.conversion_window_ms = HOUR_MS;
  cfg.mode = MTLD_JOIN_SAMPLED_NEGATIVES;
  cfg.popularity_size = 32;
  samples_t a = {0}, b = {0};
  mtld_joiner_counters_t k;
  CHECK(run_interleaved(ord_a, na, 7, &cfg, &a, &k));
  CHECK(run_interleaved(ord_b, nb, 3, &cfg, &b, &k));
  CHECK(a.n > 300 && k.negatives_sampled > 100);
  CHECK(same_samples(&a, &b));

  /* the reference: each item's features over the events before the
   * positive, applied in (time, partition, offset) order */
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  int slots[MTLD_FEATURES_ITEM_DENSE_MAX];
  int n_slots = mtld_features_dense_item_slots(&def, slots);
  for (size_t i = 0; i < na; i++) ord_k[i] = ord_a[i];
  qsort(ord_k, na, sizeof *ord_k, rec_key_cmp);
  size_t checked = 0, nonzero = 0, bad = 0;
  for (size_t i = 0; i < a.n; i++) {
    const mtld_sample_t *x = &a.s[i];
    if (LAB(x, CLICK) != 1.0f) continue;
    mtld_item_features_t f;
    memset(&f, 0, sizeof f);
    for (size_t r = 0; r < na; r++) {
      const rec_t *e = ord_k[r];
      if (e->ev.time_ms > x->time_ms ||
          (e->ev.time_ms == x->time_ms &&
           (e->partition > x->partition ||
            (e->partition == x->partition && e->offset >= x->offset))))
        break;
      if (e->ev.item_id == x->fields[MTLD_FIELD_ITEM]) mtld_features_item_apply(&def, &f, &e->ev);
    }
    float d[MTLD_MAX_DENSE];
    int nd = mtld_features_dense(&def, NULL, &f, x->scenario_id, x->time_ms, d, MTLD_MAX_DENSE);
    for (int q = 0; q < n_slots; q++) {
      if (slots[q] >= nd || x->dense[slots[q]] != d[slots[q]]) bad++;
      nonzero += x->dense[slots[q]] != 0.0f;
    }
    checked++;
  }
  CHECK(checked > 100 && nonzero > 100);
  CHECK(bad == 0);
  free(a.s);
  free(b.s);
}

static void test_config(void) {
  mtld_joiner_config_t cfg;
  char err[128] = "";
  mtld_joiner_config_default(&cfg);
  CHECK(cfg.click_window_ms == 30 * MIN_MS && cfg.conversion_window_ms == 24 * HOUR_MS);
  CHECK(cfg.mode == MTLD_JOIN_IMPRESSIONS && cfg.negatives_per_positive == 4);
  CHECK(cfg.popularity_size == 10000);
  CHECK(mtld_joiner_config_check(&cfg, err, sizeof err) == MTLD_OK);
  cfg.popularity_size = 0;
  CHECK(mtld_joiner_config_check(&cfg, err, sizeof err) == MTLD_ERR_CONFIG);
  CHECK(strstr(err, "popularity_size") != NULL);
  mtld_joiner_config_default(&cfg);
  cfg.click_window_ms = -1;
  CHECK(mtld_joiner_config_check(&cfg, err, sizeof err) == MTLD_ERR_CONFIG);
  CHECK(mtld_joiner_negative_id(5, 1) != mtld_joiner_negative_id(5, 2));
}

/* The stream-shape advice (daemon warnings, README "Your own data"). */
static void test_shape_advice(void) {
  mtld_joiner_config_t cfg;
  mtld_joiner_config_default(&cfg);
  char msg[512] = "";
  uint64_t clicks_only[MTLD_N_EVENT_TYPES] = {0, 31117, 0, 0, 0};
  uint64_t with_imp[MTLD_N_EVENT_TYPES] = {100, 5, 1, 1, 0};
  uint64_t reviews_only[MTLD_N_EVENT_TYPES] = {0, 0, 0, 0, 50};
  uint64_t none[MTLD_N_EVENT_TYPES] = {0};
  CHECK(mtld_joiner_shape_advice(&cfg, clicks_only, msg, sizeof msg) == 1);
  CHECK(strstr(msg, "joiner.mode = \"sampled_negatives\"") != NULL);
  CHECK(mtld_joiner_shape_advice(&cfg, with_imp, msg, sizeof msg) == 0);
  CHECK(mtld_joiner_shape_advice(&cfg, reviews_only, msg, sizeof msg) == 0);
  CHECK(mtld_joiner_shape_advice(&cfg, none, msg, sizeof msg) == 0);
  cfg.mode = MTLD_JOIN_SAMPLED_NEGATIVES;
  CHECK(mtld_joiner_shape_advice(&cfg, clicks_only, msg, sizeof msg) == 0);
  CHECK(mtld_joiner_shape_advice(&cfg, with_imp, msg, sizeof msg) == 1);
  CHECK(strstr(msg, "joiner.mode = \"impressions\"") != NULL);
}

/* A sample's attribute inputs: categorical attributes in declaration order
 * as fields 6.., numeric ones after the dense features; user and item ones
 * from the "before" features, context ones from the event, defaults for
 * the missing; no attributes: the fields and dense of before. */
static void test_sample_attrs(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = 1, ev.user_id = 2, ev.item_id = 3, ev.type = MTLD_EV_IMPRESSION;
  ev.time_ms = 1700000000000LL;
  mtld_event_attr_set_num(&ev, mtld_hash_id("discount", 8), 0.5);
  mtld_event_attr_set_str(&ev, mtld_hash_id("device", 6), mtld_hash_id("ios", 3));
  mtld_sample_t s;
  mtld_sample_from_features(&s, &def, &ev, 0, 0, NULL, NULL, 3, 0, 1);
  CHECK(s.n_fields == MTLD_FIELD_EXTRA && s.n_dense == 45);
  mtld_attr_def_set(&def.attrs[0], "discount", MTLD_ATTR_CONTEXT, MTLD_ATTR_NUMERIC, 0, NULL, 0);
  mtld_attr_def_set(&def.attrs[1], "age", MTLD_ATTR_USER, MTLD_ATTR_CATEGORICAL, 8, "unknown", 0);
  mtld_attr_def_set(&def.attrs[2], "device", MTLD_ATTR_CONTEXT, MTLD_ATTR_CATEGORICAL, 8, "", 0);
  mtld_attr_def_set(&def.attrs[3], "stock", MTLD_ATTR_ITEM, MTLD_ATTR_NUMERIC, 0, NULL, 7);
  def.n_attrs = 4;
  mtld_user_features_t *u = calloc(1, sizeof *u);
  mtld_event_t prev = ev;
  prev.n_attrs = 0, prev.attrs_num = 0;
  mtld_event_attr_set_str(&prev, mtld_hash_id("age", 3), mtld_hash_id("30s", 3));
  mtld_features_user_apply(&def, u, &prev);
  mtld_sample_from_features(&s, &def, &ev, 0, 0, u, NULL, 3, 0, 1);
  CHECK(s.n_fields == MTLD_FIELD_EXTRA + 2 && s.n_dense == 45 + 2);
  CHECK(s.fields[6] == mtld_hash_id("30s", 3) && s.fields[7] == mtld_hash_id("ios", 3));
  CHECK(s.dense[45] == 0.5f && s.dense[46] == 7.0f);
  mtld_sample_from_features(&s, &def, &prev, 0, 0, NULL, NULL, 3, 0, 1);
  CHECK(s.fields[6] == mtld_hash_id("unknown", 7) && s.fields[7] == 0 && s.dense[45] == 0.0f);
  free(u);
}

int main(void) {
  snprintf(base_dir, sizeof base_dir, "/tmp/mtld-test-joiner-XXXXXX");
  if (!mkdtemp(base_dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_config();
  test_shape_advice();
  test_click_by_request_id();
  test_click_window();
  test_conversions();
  test_review();
  test_review_label();
  test_ledger();
  test_release_order();
  test_point_in_time();
  test_persistence_and_rollback();
  test_sampled_negatives();
  test_negatives_from_donors();
  test_interleaving(MTLD_JOIN_IMPRESSIONS);
  test_interleaving(MTLD_JOIN_SAMPLED_NEGATIVES);
  test_release_view();
  nftw(base_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  test_sample_attrs();
  return CHECK_DONE();
}
