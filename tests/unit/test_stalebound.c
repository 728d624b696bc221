/* test_stalebound.c - which peers the model sync waits for
 * (daemon/stalebound.h): S = 0 holds an instance a round ahead of a peer
 * until the peer's round arrives; a newcomer, an idle peer and a silent
 * peer do not hold it; two instances that first see each other across a
 * delivery lag do not hold each other. */
#include <stdint.h>

#include "daemon/stalebound.h"
#include "tests/unit/check.h"

enum { A = 0xA, B = 0xB };

static void test_round_bound(void) {
  mtld_stalebound_t s;
  mtld_stalebound_init(&s, 0, 5000);
  CHECK(!mtld_stalebound_behind(&s, 10, 0));   /* no peer */
  mtld_stalebound_seen(&s, A, 1, 3, 0, 10, 0); /* first sight: A's 3 = our 10, +1 credit */
  CHECK(!mtld_stalebound_behind(&s, 10, 1));
  CHECK(!mtld_stalebound_behind(&s, 11, 1)); /* the credit */
  CHECK(mtld_stalebound_behind(&s, 12, 1));  /* two rounds past A's last: wait */
  mtld_stalebound_seen(&s, A, 1, 4, 0, 12, 2);
  CHECK(!mtld_stalebound_behind(&s, 12, 3)); /* A's round arrived */
  CHECK(mtld_stalebound_behind(&s, 13, 3));
  /* S = 1 allows one more */
  s.max_stale = 1;
  CHECK(!mtld_stalebound_behind(&s, 13, 3));
  CHECK(mtld_stalebound_behind(&s, 14, 3));
  s.max_stale = 0;
  /* a base shows A alive, without a round: still waited for */
  mtld_stalebound_seen(&s, A, 0, 0, 0, 13, 4);
  CHECK(mtld_stalebound_behind(&s, 13, 4));
  /* an idle marker: A has nothing to wait for */
  mtld_stalebound_seen(&s, A, 1, 4, 1, 13, 5);
  CHECK(!mtld_stalebound_behind(&s, 20, 5));
  /* back from idle: aligned with our round again, no credit */
  mtld_stalebound_seen(&s, A, 1, 5, 0, 20, 6);
  CHECK(!mtld_stalebound_behind(&s, 20, 6));
  CHECK(mtld_stalebound_behind(&s, 21, 6));
  /* silent for longer than the timeout: dropped, counted; its next message adds it anew */
  CHECK(s.dropped == 0);
  CHECK(!mtld_stalebound_behind(&s, 21, 6 + 5001));
  CHECK(s.dropped == 1);
  mtld_stalebound_seen(&s, A, 1, 9, 0, 21, 7000);
  CHECK(!mtld_stalebound_behind(&s, 22, 7000)); /* first sight again: the credit */
  CHECK(mtld_stalebound_behind(&s, 23, 7000));
  /* no bound: never behind */
  s.max_stale = -1;
  CHECK(!mtld_stalebound_behind(&s, 1000, 7000));
}

/* Two instances A and B, one round every step each, messages delivered L
 * steps later: neither may hold the other for good (with S = 0 and a lag,
 * the credit of the first sight keeps the pair moving). */
static void test_pair_moves(void) {
  enum { L = 2, STEPS = 200 };
  mtld_stalebound_t sa, sb;
  mtld_stalebound_init(&sa, 0, 1000000);
  mtld_stalebound_init(&sb, 0, 1000000);
  uint32_t ra = 0, rb = 5; /* B started earlier */
  uint32_t sent_a[STEPS + L + 1] = {0}, sent_b[STEPS + L + 1] = {0};
  int stuck = 0;
  for (int t = 0; t < STEPS; t++) {
    if (t >= L && sent_b[t - L]) mtld_stalebound_seen(&sa, B, 1, sent_b[t - L], 0, ra, t);
    if (t >= L && sent_a[t - L]) mtld_stalebound_seen(&sb, A, 1, sent_a[t - L], 0, rb, t);
    int ha = mtld_stalebound_behind(&sa, ra, t), hb = mtld_stalebound_behind(&sb, rb, t);
    if (!ha) sent_a[t] = ++ra;
    if (!hb) sent_b[t] = ++rb;
    stuck = ha && hb ? stuck + 1 : 0;
    CHECK(stuck <= L + 1); /* both waiting only while messages are in flight */
  }
  CHECK(ra > STEPS / (L + 2) && rb > STEPS / (L + 2));
}

int main(void) {
  test_round_bound();
  test_pair_moves();
  return CHECK_DONE();
}
