/* test_storecache.c - the store's committed-entity cache
 * (mtld_store_set_cache) changes no result: two stores fed the same random
 * events in batches, one with a cache so small that entities keep evicting
 * each other (16 user slots) and one with none, give byte-identical
 * "before" values from apply, identical get_user / get_item / get_item_part
 * answers after every commit and rollback, and identical state after
 * reopening.  A read-only store refuses a cache. */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/bytes.h"
#include "features/store.h"
#include "tests/unit/check.h"

#define T0 1500000000000LL

static char root[64];
static char errbuf[1024];
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

enum { N_USERS = 60, N_ITEMS = 2000, N_PARTS = 3 };

static mtld_event_t random_event(uint64_t id, int64_t t) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = id;
  ev.user_id = 1 + rng() % N_USERS;
  ev.item_id = 1000 + rng() % N_ITEMS;
  ev.category_id = 1 + ev.item_id % 7;
  ev.type = 1 + (int)(rng() % MTLD_N_EVENT_TYPES);
  ev.time_ms = t;
  ev.scenario_id = 1 + rng() % 3;
  if (ev.type == MTLD_EV_PURCHASE) {
    ev.price = 1 + (double)(rng() % 5000) / 100;
    ev.quantity = (int)(rng() % 3);
  }
  if (ev.type == MTLD_EV_REVIEW) ev.rating = 1 + (float)(rng() % 5);
  return ev;
}

/* Every entity of both stores answers the same (status and bytes). */
static void check_same(mtld_store_t *a, mtld_store_t *b) {
  static mtld_user_features_t ua, ub;
  mtld_item_features_t ia, ib;
  for (uint64_t u = 1; u <= N_USERS; u++) {
    memset(&ua, 0, sizeof ua);
    memset(&ub, 0, sizeof ub);
    mtld_status_t ra = mtld_store_get_user(a, u, &ua), rb = mtld_store_get_user(b, u, &ub);
    CHECK(ra == rb);
    if (ra == MTLD_OK) CHECK(memcmp(&ua, &ub, sizeof ua) == 0);
  }
  for (uint64_t i = 1000; i < 1000 + N_ITEMS; i++) {
    memset(&ia, 0, sizeof ia);
    memset(&ib, 0, sizeof ib);
    mtld_status_t ra = mtld_store_get_item(a, i, &ia), rb = mtld_store_get_item(b, i, &ib);
    CHECK(ra == rb);
    if (ra == MTLD_OK) CHECK(memcmp(&ia, &ib, sizeof ia) == 0);
    int p = (int)(i % N_PARTS);
    memset(&ia, 0, sizeof ia);
    memset(&ib, 0, sizeof ib);
    ra = mtld_store_get_item_part(a, p, i, &ia);
    rb = mtld_store_get_item_part(b, p, i, &ib);
    CHECK(ra == rb);
    if (ra == MTLD_OK) CHECK(memcmp(&ia, &ib, sizeof ia) == 0);
  }
}

static void test_same_results(void) {
  char pa[128], pb[128];
  snprintf(pa, sizeof pa, "%s/cached", root);
  snprintf(pb, sizeof pb, "%s/plain", root);
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_store_t *a, *b;
  CHECK(mtld_store_open(&a, pa, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_open(&b, pb, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  /* 16 user slots: 60 users keep evicting each other */
  size_t small = 2 * 16 * (sizeof(mtld_user_features_t) + 13);
  CHECK(mtld_store_set_cache(a, small) == MTLD_OK);
  CHECK(mtld_store_set_cache(b, 0) == MTLD_OK);
  static mtld_user_features_t uba, ubb;
  mtld_item_features_t iba, ibb;
  uint64_t id = 1;
  int64_t t = T0;
  for (int batch = 0; batch < 40; batch++) {
    int n = 1 + (int)(rng() % 300);
    for (int k = 0; k < n; k++) {
      t += (int64_t)(rng() % 60000);
      mtld_event_t ev = random_event(id++, t);
      int p = (int)(ev.item_id % N_PARTS);
      memset(&uba, 0, sizeof uba);
      memset(&ubb, 0, sizeof ubb);
      CHECK(mtld_store_apply_part(a, &ev, p, &uba, &iba) == MTLD_OK);
      CHECK(mtld_store_apply_part(b, &ev, p, &ubb, &ibb) == MTLD_OK);
      CHECK(memcmp(&uba, &ubb, sizeof uba) == 0);
      CHECK(memcmp(&iba, &ibb, sizeof iba) == 0);
    }
    if (batch % 7 == 3) { /* a rolled-back batch leaves the cache true */
      mtld_store_rollback(a);
      mtld_store_rollback(b);
    } else {
      CHECK(mtld_store_commit(a, errbuf, sizeof errbuf) == MTLD_OK);
      CHECK(mtld_store_commit(b, errbuf, sizeof errbuf) == MTLD_OK);
    }
    if (batch % 5 == 0) check_same(a, b);
    if (batch == 20) { /* a direct write (a restore, a partition drop) past the cache */
      uint8_t k[3][8];
      mtld_store_write_t w[3];
      for (int u = 0; u < 3; u++) {
        mtld_put_be64(k[u], (uint64_t)(1 + u));
        w[u] = (mtld_store_write_t){.cf = MTLD_CF_USER, .key = k[u], .klen = 8, .deleted = 1};
      }
      mtld_event_t ev = random_event(id++, t);
      ev.user_id = 1; /* committed last: in a's cache now */
      CHECK(mtld_store_apply_part(a, &ev, 0, &uba, &iba) == MTLD_OK);
      CHECK(mtld_store_apply_part(b, &ev, 0, &ubb, &ibb) == MTLD_OK);
      CHECK(mtld_store_commit(a, errbuf, sizeof errbuf) == MTLD_OK);
      CHECK(mtld_store_commit(b, errbuf, sizeof errbuf) == MTLD_OK);
      mtld_user_features_t *f = &uba;
      CHECK(mtld_store_get_user(a, 1, f) == MTLD_OK);
      CHECK(mtld_store_write_direct(a, w, 3, errbuf, sizeof errbuf) == MTLD_OK);
      CHECK(mtld_store_write_direct(b, w, 3, errbuf, sizeof errbuf) == MTLD_OK);
      CHECK(mtld_store_get_user(a, 1, f) == MTLD_ERR_NOTFOUND);
      check_same(a, b);
    }
  }
  check_same(a, b);
  mtld_store_close(a);
  mtld_store_close(b);
  /* reopened (the default cache, empty): the same committed state */
  CHECK(mtld_store_open(&a, pa, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_open(&b, pb, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_set_cache(b, 0) == MTLD_OK);
  check_same(a, b);
  mtld_store_close(a);
  mtld_store_close(b);

  mtld_store_t *ro;
  CHECK(mtld_store_open_readonly(&ro, pa, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_set_cache(ro, 1 << 20) == MTLD_ERR_INVALID);
  CHECK(mtld_store_set_cache(ro, 0) == MTLD_OK);
  mtld_store_close(ro);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/mtld-test-storecache.XXXXXX");
  CHECK(mkdtemp(root) != NULL);
  test_same_results();
  nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  return CHECK_DONE();
}
