/* test_watermark.c - event-time watermark: min over partitions, lateness,
 * idleness (nothing seen, far behind), restore on assignment, revoke. */
#include "features/watermark.h"

#include <stdint.h>

#include "tests/unit/check.h"

static void test_empty_and_min(void) {
  mtld_watermark_t *wm;
  CHECK(mtld_watermark_create(&wm, 0, 0) == MTLD_OK);
  CHECK(mtld_watermark_get(wm) == INT64_MIN);
  CHECK(mtld_watermark_newest(wm) == INT64_MIN);
  CHECK(mtld_watermark_assign(wm, "t", 0, INT64_MIN) == MTLD_OK);
  CHECK(mtld_watermark_assign(wm, "t", 1, INT64_MIN) == MTLD_OK);
  CHECK(mtld_watermark_get(wm) == INT64_MIN); /* nothing seen anywhere */

  /* partition 1 has seen nothing and is not caught up: its first records
   * may be old, so it holds the watermark back */
  mtld_watermark_observe(wm, "t", 0, 1000);
  CHECK(mtld_watermark_get(wm) == INT64_MIN);
  /* ... until the consumer reached its end */
  mtld_watermark_set_caught_up(wm, "t", 1);
  CHECK(mtld_watermark_get(wm) == 1000);
  /* both caught up: everything was read, the newest time bounds it (not the
   * slower partition: the final watermark must not depend on the order in
   * which partitions finished) */
  {
    mtld_watermark_t *w2;
    CHECK(mtld_watermark_create(&w2, 10, 0) == MTLD_OK);
    mtld_watermark_observe(w2, "t", 0, 1000);
    mtld_watermark_observe(w2, "t", 1, 700);
    CHECK(mtld_watermark_get(w2) == 690);
    mtld_watermark_set_caught_up(w2, "t", 1); /* p1 done: p0 alone holds it */
    CHECK(mtld_watermark_get(w2) == 990);
    mtld_watermark_set_caught_up(w2, "t", 0);
    CHECK(mtld_watermark_get(w2) == 990);
    mtld_watermark_observe(w2, "t", 1, 800); /* p1 has news again */
    CHECK(mtld_watermark_get(w2) == 790);
    mtld_watermark_destroy(w2);
  }
  mtld_watermark_observe(wm, "t", 1, 400); /* a record clears the caught-up mark */
  mtld_watermark_observe(wm, "t", 0, 1000);
  CHECK(mtld_watermark_get(wm) == 400);
  /* max, not last: an older event does not move it back */
  mtld_watermark_observe(wm, "t", 1, 300);
  CHECK(mtld_watermark_get(wm) == 400);
  CHECK(mtld_watermark_max_time(wm, "t", 1) == 400);
  mtld_watermark_observe(wm, "t", 1, 2000);
  CHECK(mtld_watermark_get(wm) == 1000);
  CHECK(mtld_watermark_newest(wm) == 2000);
  /* same partition number, other topic: separate */
  CHECK(mtld_watermark_max_time(wm, "u", 1) == INT64_MIN);
  mtld_watermark_observe(wm, "u", 1, 500); /* observe assigns */
  CHECK(mtld_watermark_partitions(wm) == 3);
  CHECK(mtld_watermark_get(wm) == 500);
  mtld_watermark_revoke(wm, "u", 1);
  mtld_watermark_revoke(wm, "u", 7); /* not assigned: no-op */
  CHECK(mtld_watermark_partitions(wm) == 2);
  CHECK(mtld_watermark_get(wm) == 1000);
  mtld_watermark_revoke(wm, "t", 0);
  CHECK(mtld_watermark_get(wm) == 2000);
  mtld_watermark_revoke(wm, "t", 1);
  CHECK(mtld_watermark_get(wm) == INT64_MIN);
  mtld_watermark_destroy(wm);
}

static void test_lateness(void) {
  mtld_watermark_t *wm;
  CHECK(mtld_watermark_create(&wm, 5000, 0) == MTLD_OK);
  mtld_watermark_observe(wm, "t", 0, 100000);
  mtld_watermark_observe(wm, "t", 1, 60000);
  CHECK(mtld_watermark_get(wm) == 55000);
  /* no overflow near the bottom of the range */
  mtld_watermark_assign(wm, "t", 1, INT64_MIN + 10);
  mtld_watermark_assign(wm, "t", 0, INT64_MIN + 20);
  CHECK(mtld_watermark_get(wm) == INT64_MIN);
  CHECK(mtld_watermark_set_params(wm, -1, 0) == MTLD_ERR_INVALID);
  CHECK(mtld_watermark_set_params(wm, 0, 0) == MTLD_OK);
  CHECK(mtld_watermark_get(wm) == INT64_MIN + 10);
  mtld_watermark_destroy(wm);
  CHECK(mtld_watermark_create(&wm, -1, 0) == MTLD_ERR_INVALID);
  CHECK(wm == NULL);
}

static void test_idle(void) {
  mtld_watermark_t *wm;
  CHECK(mtld_watermark_create(&wm, 1000, 60000) == MTLD_OK);
  mtld_watermark_observe(wm, "t", 0, 100000);
  mtld_watermark_observe(wm, "t", 1, 50000);
  mtld_watermark_observe(wm, "t", 2, 90000);
  CHECK(mtld_watermark_get(wm) == 49000); /* 50 s behind: within idle_ms, holds back */
  CHECK(mtld_watermark_idle_partitions(wm) == 0);
  mtld_watermark_observe(wm, "t", 0, 110000); /* exactly 60 s ahead: not idle yet */
  CHECK(mtld_watermark_get(wm) == 49000);
  mtld_watermark_observe(wm, "t", 0, 110001); /* now 1 ms more: partition 1 is idle */
  CHECK(mtld_watermark_idle_partitions(wm) == 1);
  CHECK(mtld_watermark_get(wm) == 89000);
  /* it catches up: holds back again (the watermark may move back) */
  mtld_watermark_observe(wm, "t", 1, 80000);
  CHECK(mtld_watermark_get(wm) == 79000);
  mtld_watermark_destroy(wm);

  /* idle_ms 0: never idle, however far behind */
  CHECK(mtld_watermark_create(&wm, 0, 0) == MTLD_OK);
  mtld_watermark_observe(wm, "t", 0, INT64_MAX);
  mtld_watermark_observe(wm, "t", 1, -5);
  CHECK(mtld_watermark_get(wm) == -5);
  mtld_watermark_destroy(wm);

  /* extreme spread does not overflow the idleness test */
  CHECK(mtld_watermark_create(&wm, 0, 1) == MTLD_OK);
  mtld_watermark_observe(wm, "t", 0, INT64_MAX);
  mtld_watermark_observe(wm, "t", 1, INT64_MIN + 1);
  CHECK(mtld_watermark_get(wm) == INT64_MAX);
  mtld_watermark_destroy(wm);
}

static void test_restore(void) {
  mtld_watermark_t *wm;
  CHECK(mtld_watermark_create(&wm, 0, 0) == MTLD_OK);
  /* restored max times from the store's offset records */
  CHECK(mtld_watermark_assign(wm, "t", 0, 7000) == MTLD_OK);
  CHECK(mtld_watermark_assign(wm, "t", 1, 3000) == MTLD_OK);
  CHECK(mtld_watermark_get(wm) == 3000);
  CHECK(mtld_watermark_max_time(wm, "t", 0) == 7000);
  /* an older event after restore does not lower it */
  mtld_watermark_observe(wm, "t", 1, 2000);
  CHECK(mtld_watermark_max_time(wm, "t", 1) == 3000);
  /* re-assignment replaces (after a rollback the stored value is the truth) */
  mtld_watermark_observe(wm, "t", 0, 9000);
  CHECK(mtld_watermark_assign(wm, "t", 0, 7000) == MTLD_OK);
  CHECK(mtld_watermark_max_time(wm, "t", 0) == 7000);
  CHECK(mtld_watermark_partitions(wm) == 2);
  CHECK(mtld_watermark_newest(wm) == 7000);
  /* many partitions (array growth) */
  for (int p = 2; p < 300; p++) mtld_watermark_assign(wm, "t", p, 10000 + p);
  CHECK(mtld_watermark_partitions(wm) == 300);
  CHECK(mtld_watermark_get(wm) == 3000);
  CHECK(mtld_watermark_newest(wm) == 10299);
  CHECK(mtld_watermark_max_time(wm, "t", 150) == 10150);
  mtld_watermark_revoke(wm, "t", 150);
  CHECK(mtld_watermark_max_time(wm, "t", 150) == INT64_MIN);
  CHECK(mtld_watermark_max_time(wm, "t", 151) == 10151);
  mtld_watermark_destroy(wm);
}

/* Idle release (joiner.idle_release): only after idle_release_ms of the
 * caller's clock without a record, the release point jumps past the newest
 * time by the horizon; the validation watermark never moves. */
static void test_idle_release(void) {
  mtld_watermark_t *wm;
  CHECK(mtld_watermark_create(&wm, 60000, 0) == MTLD_OK);
  CHECK(mtld_watermark_set_idle_release(wm, -1, 0) == MTLD_ERR_INVALID);
  mtld_watermark_arrival(wm, 1000); /* start */
  /* off by default: a stalled stream's release point stays the watermark */
  mtld_watermark_observe(wm, "t", 0, 5000000);
  mtld_watermark_set_caught_up(wm, "t", 0);
  CHECK(mtld_watermark_release_point(wm, 1000000) == 5000000 - 60000);
  CHECK(!mtld_watermark_idle_released(wm, 1000000));

  CHECK(mtld_watermark_set_idle_release(wm, 30000, 86400000) == MTLD_OK);
  mtld_watermark_arrival(wm, 2000);
  CHECK(mtld_watermark_release_point(wm, 31999) == 5000000 - 60000); /* 29.999 s idle */
  CHECK(mtld_watermark_release_point(wm, 32000) == 5000000 + 86400000 + 1);
  CHECK(mtld_watermark_idle_released(wm, 32000));
  CHECK(mtld_watermark_get(wm) == 5000000 - 60000); /* validation unchanged */
  /* a record arrives: not idle any more */
  mtld_watermark_arrival(wm, 40000);
  mtld_watermark_observe(wm, "t", 0, 5001000);
  CHECK(mtld_watermark_release_point(wm, 50000) == 5001000 - 60000);
  CHECK(mtld_watermark_release_point(wm, 70000) == 5001000 + 86400000 + 1);
  mtld_watermark_destroy(wm);

  /* nothing seen: nothing to release, idle or not */
  CHECK(mtld_watermark_create(&wm, 0, 0) == MTLD_OK);
  CHECK(mtld_watermark_set_idle_release(wm, 10, 100) == MTLD_OK);
  mtld_watermark_arrival(wm, 0);
  CHECK(mtld_watermark_release_point(wm, 1000) == INT64_MIN);
  CHECK(!mtld_watermark_idle_released(wm, 1000));
  mtld_watermark_destroy(wm);
}

int main(void) {
  test_empty_and_min();
  test_lateness();
  test_idle();
  test_restore();
  test_idle_release();
  return CHECK_DONE();
}
