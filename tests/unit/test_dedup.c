/* test_dedup.c - de-duplication by event id (features/dedup.h): key order,
 * seen within the batch and after commit, rollback forgets, and expiry
 * behind the watermark in steps of an hour.  The store lives in a mkdtemp
 * directory under /tmp, removed at the end. */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "features/dedup.h"
#include "tests/unit/check.h"

#define T0 1500000000000LL
#define HOUR 3600000LL

static char root[64];
static char errbuf[1024];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static mtld_event_t event(uint64_t id, int64_t t) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = id;
  ev.time_ms = t;
  return ev;
}

static void test_key_order(void) {
  uint8_t a[MTLD_DEDUP_KEY_LEN], b[MTLD_DEDUP_KEY_LEN], c[MTLD_DEDUP_KEY_LEN];
  mtld_dedup_key(a, -5, 9);
  mtld_dedup_key(b, 3, 1);
  mtld_dedup_key(c, 3, 2);
  CHECK(memcmp(a, b, sizeof a) < 0); /* signed time order is byte order */
  CHECK(memcmp(b, c, sizeof b) < 0); /* then the id */
}

static void test_seen_and_expire(void) {
  char path[128];
  snprintf(path, sizeof path, "%s/store", root);
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_store_t *st = NULL;
  mtld_dedup_t *d = NULL;
  CHECK(mtld_store_open(&st, path, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_dedup_create(&d, st) == MTLD_OK);
  mtld_event_t e1 = event(1, T0), e2 = event(2, T0), e3 = event(3, T0 + 10 * HOUR);
  CHECK(mtld_dedup_seen(d, &e1) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_dedup_mark(d, &e1) == MTLD_OK);
  CHECK(mtld_dedup_seen(d, &e1) == MTLD_OK); /* staged: seen within the batch */
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_dedup_seen(d, &e1) == MTLD_OK);
  CHECK(mtld_dedup_seen(d, &e2) == MTLD_ERR_NOTFOUND);
  mtld_event_t same_id_other_time = event(1, T0 + 1);
  CHECK(mtld_dedup_seen(d, &same_id_other_time) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_dedup_mark(d, &e2) == MTLD_OK);
  mtld_store_rollback(st);
  CHECK(mtld_dedup_seen(d, &e2) == MTLD_ERR_NOTFOUND); /* rolled back with the batch */

  /* expiry: nothing before a watermark; entries older than wm - (2 lateness + 1 h) go */
  CHECK(mtld_dedup_mark(d, &e3) == MTLD_OK);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  mtld_dedup_expire(d, INT64_MIN, HOUR);
  CHECK(mtld_dedup_expired_below(d) == INT64_MIN);
  mtld_dedup_expire(d, T0 + 3 * HOUR, HOUR); /* horizon T0: e1 (at T0) stays */
  CHECK(mtld_dedup_expired_below(d) == T0);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_dedup_seen(d, &e1) == MTLD_OK);
  mtld_dedup_expire(d, T0 + 3 * HOUR + HOUR - 1, HOUR); /* moved less than a step: nothing */
  CHECK(mtld_dedup_expired_below(d) == T0);
  mtld_dedup_expire(d, T0 + 4 * HOUR, HOUR);
  CHECK(mtld_dedup_expired_below(d) == T0 + HOUR);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_dedup_seen(d, &e1) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_dedup_seen(d, &e3) == MTLD_OK);
  mtld_dedup_destroy(d);
  mtld_store_close(st);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/mtld-test-dedup-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  test_key_order();
  test_seen_and_expire();
  nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  return CHECK_DONE();
}
