/* test_features.c - the pure feature arithmetic: event-time decay against the
 * closed form, sequence order and truncation, scenario replacement, spend,
 * rates, the encodings (byte-exact round trips), the definitions' hash and
 * the dense vector on a hand-computed example. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "features/features.h"
#include "tests/unit/check.h"
#include "trainer/sample.h"

#define HOUR_MS 3600000LL
#define T0 1500000000000LL /* an event time in 2017 */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

static mtld_event_t make_event(uint64_t id, int type, int64_t t) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = id;
  ev.user_id = 7;
  ev.item_id = 100 + id % 13;
  ev.category_id = 5;
  ev.type = type;
  ev.time_ms = t;
  return ev;
}

static int rel_ok(double got, double want, double rel) {
  double scale = fabs(want) > 1e-300 ? fabs(want) : 1e-300;
  return fabs(got - want) <= rel * scale;
}

/* Applies n random events (in order, or shuffled) to a user and an item and
 * compares every decayed count with sum_i 2^(-(T - t_i) / h). */
static void test_decay_closed_form(int shuffled, int n) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  def.n_half_lives = 4;
  def.half_life_s[3] = 600; /* short one: values get small, not subnormal */
  mtld_event_t *evs = malloc(n * sizeof *evs);
  int64_t t = T0;
  for (int i = 0; i < n; i++) {
    t += (int64_t)(rng() % (2 * 60000)); /* 0..2 min apart; ties possible */
    if (rng() % 10 == 0) t += 0;         /* keep some equal times */
    evs[i] = make_event(i + 1, 1 + (int)(rng() % MTLD_N_EVENT_TYPES), t);
    evs[i].scenario_id = 1 + rng() % 5;
  }
  if (shuffled) {
    for (int i = n - 1; i > 0; i--) {
      int j = (int)(rng() % (uint64_t)(i + 1));
      mtld_event_t tmp = evs[i];
      evs[i] = evs[j];
      evs[j] = tmp;
    }
  }
  mtld_user_features_t *u = calloc(1, sizeof *u);
  mtld_item_features_t it;
  memset(&it, 0, sizeof it);
  int64_t tmax = INT64_MIN;
  for (int i = 0; i < n; i++) {
    mtld_features_user_apply(&def, u, &evs[i]);
    mtld_features_item_apply(&def, &it, &evs[i]);
    if (evs[i].time_ms > tmax) tmax = evs[i].time_ms;
  }
  CHECK(u->last_time_ms == tmax);
  CHECK(it.last_time_ms == tmax);
  CHECK(u->n_events == (uint64_t)n);
  CHECK(it.n_events == (uint64_t)n);
  int bad = 0, bad_sc = 0;
  for (int h = 0; h < def.n_half_lives; h++) {
    double want[MTLD_N_EVENT_TYPES] = {0}, want_sc[6] = {0};
    for (int i = 0; i < n; i++) {
      double c = exp2(-(double)(tmax - evs[i].time_ms) / (1000.0 * def.half_life_s[h]));
      want[evs[i].type - 1] += c;
      want_sc[evs[i].scenario_id] += c;
    }
    for (int ty = 0; ty < MTLD_N_EVENT_TYPES; ty++) {
      if (!rel_ok(u->decayed[ty][h], want[ty], 1e-12) ||
          !rel_ok(it.decayed[ty][h], want[ty], 1e-12)) {
        bad++;
        fprintf(stderr, "decay h=%d type=%d: user %.17g item %.17g want %.17g\n", h, ty + 1,
                u->decayed[ty][h], it.decayed[ty][h], want[ty]);
      }
    }
    int seen[6] = {0}, n_seen = 0;
    for (int i = 0; i < n; i++) n_seen += !seen[evs[i].scenario_id]++;
    CHECK(u->n_scenarios == (uint32_t)n_seen);
    for (uint32_t s = 0; s < u->n_scenarios; s++) {
      uint64_t id = u->scenarios[s].scenario_id;
      if (id < 1 || id > 5 || !rel_ok(u->scenarios[s].decayed[h], want_sc[id], 1e-12)) bad_sc++;
    }
  }
  CHECK(bad == 0);
  CHECK(bad_sc == 0);
  free(u);
  free(evs);
}

/* The item's features do not depend on the order its events arrive in. */
static void test_item_order_independent(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  enum { N = 300 };
  mtld_event_t evs[N];
  for (int i = 0; i < N; i++) {
    evs[i] = make_event(1000 + i, 1 + i % 5, T0 + (int64_t)(rng() % (3 * 24 * HOUR_MS)));
    evs[i].price = (rng() % 3 == 0) ? 0 : 1 + (double)(rng() % 1000) / 10;
    if (evs[i].type == MTLD_EV_REVIEW) evs[i].rating = 1 + (float)(rng() % 5);
  }
  evs[10].time_ms = evs[20].time_ms; /* a tie on time: larger event id wins the price */
  evs[10].price = 5;
  evs[20].price = 6;
  mtld_item_features_t a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  for (int i = 0; i < N; i++) mtld_features_item_apply(&def, &a, &evs[i]);
  for (int i = N - 1; i >= 0; i--) mtld_features_item_apply(&def, &b, &evs[i]);
  CHECK(a.last_time_ms == b.last_time_ms);
  CHECK(a.n_events == b.n_events);
  CHECK(a.n_reviews == b.n_reviews);
  CHECK(a.rating_sum == b.rating_sum);
  CHECK(a.last_price == b.last_price);
  CHECK(a.last_price_time_ms == b.last_price_time_ms);
  CHECK(a.last_price_event_id == b.last_price_event_id);
  int bad = 0;
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++)
    for (int h = 0; h < def.n_half_lives; h++)
      if (!rel_ok(a.decayed[t][h], b.decayed[t][h], 1e-12)) bad++;
  CHECK(bad == 0);
  /* last_price is the priced event with the greatest (time, id) */
  int best = -1;
  for (int i = 0; i < N; i++) {
    if (evs[i].price <= 0) continue;
    if (best < 0 || evs[i].time_ms > evs[best].time_ms ||
        (evs[i].time_ms == evs[best].time_ms && evs[i].event_id > evs[best].event_id))
      best = i;
  }
  CHECK(a.last_price == evs[best].price);
  CHECK(a.last_price_event_id == evs[best].event_id);
}

static int seq_cmp_desc(const void *x, const void *y) {
  const mtld_event_t *a = x, *b = y;
  if (a->time_ms != b->time_ms) return a->time_ms > b->time_ms ? -1 : 1;
  if (a->event_id != b->event_id) return a->event_id > b->event_id ? -1 : 1;
  return 0;
}

static void test_sequence(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  def.seq_len = 10;
  enum { N = 80 };
  mtld_event_t evs[N], kept[N];
  int n_kept = 0;
  mtld_user_features_t *u = calloc(1, sizeof *u);
  for (int i = 0; i < N; i++) {
    /* out of order, with ties on time (event id breaks them) */
    evs[i] = make_event(5000 - i * 7 % 101, 1 + i % 5, T0 + (int64_t)(rng() % 40) * 1000);
    evs[i].item_id = 200 + i;
    mtld_features_user_apply(&def, u, &evs[i]);
    if (evs[i].type != MTLD_EV_IMPRESSION) kept[n_kept++] = evs[i];
  }
  qsort(kept, n_kept, sizeof kept[0], seq_cmp_desc);
  CHECK(u->seq_len == 10);
  int bad = 0;
  for (int i = 0; i < 10; i++) {
    const mtld_seq_item_t *e = &u->seq[i];
    if (e->item_id != kept[i].item_id || e->time_ms != kept[i].time_ms ||
        e->event_id != kept[i].event_id || e->type != kept[i].type || e->category_id != 5)
      bad++;
  }
  CHECK(bad == 0);

  /* in order: newest first, truncated to seq_len, impressions never enter */
  memset(u, 0, sizeof *u);
  def.seq_len = 3;
  for (int i = 0; i < 5; i++) {
    mtld_event_t ev = make_event(i + 1, MTLD_EV_CLICK, T0 + i * 1000);
    ev.item_id = 900 + i;
    mtld_features_user_apply(&def, u, &ev);
  }
  mtld_event_t imp = make_event(99, MTLD_EV_IMPRESSION, T0 + 10000);
  mtld_features_user_apply(&def, u, &imp);
  CHECK(u->seq_len == 3);
  CHECK(u->seq[0].item_id == 904 && u->seq[1].item_id == 903 && u->seq[2].item_id == 902);
  /* an event older than everything kept in a full sequence is dropped */
  mtld_event_t old = make_event(50, MTLD_EV_PURCHASE, T0 - 1000);
  mtld_features_user_apply(&def, u, &old);
  CHECK(u->seq_len == 3 && u->seq[2].item_id == 902);
  /* a late one inside the window lands in place */
  mtld_event_t mid = make_event(51, MTLD_EV_ADD_TO_CART, T0 + 3500);
  mid.item_id = 777;
  mtld_features_user_apply(&def, u, &mid);
  CHECK(u->seq[0].item_id == 904 && u->seq[1].item_id == 777 && u->seq[2].item_id == 903);
  CHECK(u->seq[1].type == MTLD_EV_ADD_TO_CART);
  /* seq_len 0 keeps nothing */
  memset(u, 0, sizeof *u);
  def.seq_len = 0;
  mtld_features_user_apply(&def, u, &mid);
  CHECK(u->seq_len == 0);
  free(u);
}

static void test_scenarios(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  /* the longest half-life is NOT the last slot here */
  def.n_half_lives = 2;
  def.half_life_s[0] = 604800;
  def.half_life_s[1] = 60;
  mtld_user_features_t *u = calloc(1, sizeof *u);
  uint64_t id = 1;
  /* scenarios 10..17 get these counts, all at T0 */
  const int counts[MTLD_MAX_USER_SCENARIOS] = {3, 1, 2, 1, 3, 3, 3, 3};
  for (int s = 0; s < MTLD_MAX_USER_SCENARIOS; s++) {
    for (int k = 0; k < counts[s]; k++) {
      mtld_event_t ev = make_event(id++, MTLD_EV_IMPRESSION, T0);
      ev.scenario_id = 10 + s;
      mtld_features_user_apply(&def, u, &ev);
    }
  }
  CHECK(u->n_scenarios == MTLD_MAX_USER_SCENARIOS);
  CHECK(u->scenarios[1].scenario_id == 11 && u->scenarios[1].decayed[0] == 1.0);
  /* a 9th scenario replaces the smallest; 11 and 13 tie: the smaller id goes */
  mtld_event_t ev = make_event(id++, MTLD_EV_CLICK, T0);
  ev.scenario_id = 99;
  mtld_features_user_apply(&def, u, &ev);
  CHECK(u->n_scenarios == MTLD_MAX_USER_SCENARIOS);
  CHECK(u->scenarios[1].scenario_id == 99 && u->scenarios[1].decayed[0] == 1.0);
  CHECK(u->scenarios[3].scenario_id == 13);
  /* the next newcomer replaces 13 (count 1), not 99 (count 1, larger id) */
  ev.event_id = id++;
  ev.scenario_id = 98;
  mtld_features_user_apply(&def, u, &ev);
  CHECK(u->scenarios[3].scenario_id == 98);
  CHECK(u->scenarios[1].scenario_id == 99);

  /* the longest half-life decides, not the last slot: scenarios 1..7 have 5
   * old events each (large at 7 d, ~0 at 60 s), scenario 8 one recent event
   * (1 at both); a newcomer replaces 8 */
  memset(u, 0, sizeof *u);
  for (int s = 1; s <= 7; s++) {
    for (int k = 0; k < 5; k++) {
      ev = make_event(id++, MTLD_EV_IMPRESSION, T0);
      ev.scenario_id = s;
      mtld_features_user_apply(&def, u, &ev);
    }
  }
  ev = make_event(id++, MTLD_EV_CLICK, T0 + HOUR_MS);
  ev.scenario_id = 8;
  mtld_features_user_apply(&def, u, &ev);
  CHECK(u->scenarios[7].scenario_id == 8 && u->scenarios[7].decayed[1] == 1.0);
  CHECK(u->scenarios[0].decayed[1] < 1e-6 && u->scenarios[0].decayed[0] > 4);
  ev.event_id = id++;
  ev.scenario_id = 50;
  mtld_features_user_apply(&def, u, &ev);
  CHECK(u->scenarios[7].scenario_id == 50);
  CHECK(u->scenarios[0].scenario_id == 1);
  /* an out-of-order newcomer enters with its decayed contribution */
  ev = make_event(id++, MTLD_EV_CLICK, T0);
  ev.scenario_id = 60;
  mtld_features_user_apply(&def, u, &ev);
  CHECK(u->scenarios[7].scenario_id == 60);
  CHECK_NEAR(u->scenarios[7].decayed[0], exp2(-3600.0 / 604800), 1e-15);
  /* scenario 0 (none) is not tracked */
  memset(u, 0, sizeof *u);
  ev.scenario_id = 0;
  mtld_features_user_apply(&def, u, &ev);
  CHECK(u->n_scenarios == 0);
  free(u);
}

static void test_spend_reviews(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_user_features_t *u = calloc(1, sizeof *u);
  mtld_item_features_t it;
  memset(&it, 0, sizeof it);
  mtld_event_t ev = make_event(1, MTLD_EV_PURCHASE, T0);
  ev.price = 12.5;
  ev.quantity = 3;
  mtld_features_user_apply(&def, u, &ev);
  ev.event_id = 2;
  ev.quantity = 0; /* counts as 1 */
  ev.price = 4;
  mtld_features_user_apply(&def, u, &ev);
  ev.event_id = 3;
  ev.type = MTLD_EV_CLICK; /* a priced click is not spend */
  mtld_features_user_apply(&def, u, &ev);
  CHECK(u->spend == 12.5 * 3 + 4);
  ev.type = MTLD_EV_REVIEW;
  ev.price = 0;
  ev.rating = 4;
  ev.event_id = 4;
  mtld_features_user_apply(&def, u, &ev);
  mtld_features_item_apply(&def, &it, &ev);
  ev.rating = 1;
  ev.event_id = 5;
  mtld_features_user_apply(&def, u, &ev);
  mtld_features_item_apply(&def, &it, &ev);
  CHECK(u->n_reviews == 2 && u->rating_sum == 5);
  CHECK(it.n_reviews == 2 && it.rating_sum == 5);
  CHECK(it.category_id == 5);
  CHECK(it.last_price == 0); /* no priced event */
  free(u);
}

static void test_rate(void) {
  CHECK_NEAR(mtld_features_rate(3, 10, 0.05, 10), (3 + 0.5) / 20, 1e-15);
  CHECK_NEAR(mtld_features_rate(0, 0, 0.05, 10), 0.05, 1e-15);
  CHECK_NEAR(mtld_features_rate(0, 0, 0.02, 0), 0.02, 1e-15);
  CHECK_NEAR(mtld_features_rate(1, 4, 0.5, 0), 0.25, 1e-15);
}

static int user_equal(const mtld_user_features_t *a, const mtld_user_features_t *b, int nh) {
  if (a->last_time_ms != b->last_time_ms || a->n_events != b->n_events ||
      a->n_reviews != b->n_reviews || a->rating_sum != b->rating_sum || a->spend != b->spend ||
      a->n_scenarios != b->n_scenarios || a->seq_len != b->seq_len)
    return 0;
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++)
    for (int h = 0; h < nh; h++)
      if (a->decayed[t][h] != b->decayed[t][h]) return 0;
  for (uint32_t s = 0; s < a->n_scenarios; s++) {
    if (a->scenarios[s].scenario_id != b->scenarios[s].scenario_id) return 0;
    for (int h = 0; h < nh; h++)
      if (a->scenarios[s].decayed[h] != b->scenarios[s].decayed[h]) return 0;
  }
  for (uint32_t i = 0; i < a->seq_len; i++) {
    const mtld_seq_item_t *x = &a->seq[i], *y = &b->seq[i];
    if (x->item_id != y->item_id || x->category_id != y->category_id || x->time_ms != y->time_ms ||
        x->type != y->type || x->event_id != y->event_id)
      return 0;
  }
  return 1;
}

static void test_encoding(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  def.seq_len = 7;
  mtld_user_features_t *u = calloc(1, sizeof *u), *u2 = calloc(1, sizeof *u2);
  mtld_item_features_t it, it2;
  memset(&it, 0, sizeof it);
  for (int i = 0; i < 40; i++) {
    mtld_event_t ev = make_event(i + 1, 1 + i % 5, T0 + (int64_t)(rng() % 100000));
    ev.scenario_id = 1 + i % 3;
    ev.price = i % 4 ? 3.25 * i : 0;
    ev.quantity = i % 3;
    if (ev.type == MTLD_EV_REVIEW) ev.rating = 3;
    mtld_features_user_apply(&def, u, &ev);
    mtld_features_item_apply(&def, &it, &ev);
  }
  static uint8_t buf[MTLD_FEATURES_USER_ENC_MAX], buf2[MTLD_FEATURES_USER_ENC_MAX];
  size_t n = mtld_features_user_encode(&def, u, buf, sizeof buf);
  size_t want = 2 + 8 + 8 + 8 * 5 * 3 + 4 + 8 + 8 + 4 + 3 * (8 + 8 * 3) + 4 + 7 * 33;
  CHECK(n == want);
  CHECK(buf[0] == 1 && buf[1] == 3);
  /* little-endian last_time_ms at offset 2 */
  uint64_t lt = 0;
  for (int i = 7; i >= 0; i--) lt = (lt << 8) | buf[2 + i];
  CHECK((int64_t)lt == u->last_time_ms);
  CHECK(mtld_features_user_decode(&def, u2, buf, n) == MTLD_OK);
  CHECK(user_equal(u, u2, 3));
  size_t n2 = mtld_features_user_encode(&def, u2, buf2, sizeof buf2);
  CHECK(n2 == n && memcmp(buf, buf2, n) == 0);
  CHECK(mtld_features_user_encode(&def, u, buf, n - 1) == 0); /* too small */
  n = mtld_features_user_encode(&def, u, buf, sizeof buf);
  /* malformed: truncated, trailing byte, wrong version, other half-life count */
  CHECK(mtld_features_user_decode(&def, u2, buf, n - 1) == MTLD_ERR_CORRUPT);
  CHECK(mtld_features_user_decode(&def, u2, buf, n + 1) == MTLD_ERR_CORRUPT);
  buf[0] = 2;
  CHECK(mtld_features_user_decode(&def, u2, buf, n) == MTLD_ERR_CORRUPT);
  buf[0] = 1;
  mtld_feature_def_t def2 = def;
  def2.n_half_lives = 2;
  CHECK(mtld_features_user_decode(&def2, u2, buf, n) == MTLD_ERR_CORRUPT);

  uint8_t ib[MTLD_FEATURES_ITEM_ENC_MAX], ib2[MTLD_FEATURES_ITEM_ENC_MAX];
  n = mtld_features_item_encode(&def, &it, ib, sizeof ib);
  CHECK(n == 2 + 8 + 8 + 8 * 5 * 3 + 4 + 8 * 5);
  CHECK(mtld_features_item_decode(&def, &it2, ib, n) == MTLD_OK);
  CHECK(memcmp(&it, &it2, sizeof it) == 0); /* both zero-initialised: padding too */
  n2 = mtld_features_item_encode(&def, &it2, ib2, sizeof ib2);
  CHECK(n2 == n && memcmp(ib, ib2, n) == 0);
  CHECK(mtld_features_item_decode(&def, &it2, ib, n - 1) == MTLD_ERR_CORRUPT);
  /* 4 half-lives: the max size is enough */
  def.n_half_lives = 4;
  def.half_life_s[3] = 60;
  def.seq_len = MTLD_MAX_SEQ;
  memset(u, 0, sizeof *u);
  for (int i = 0; i < 400; i++) {
    mtld_event_t ev = make_event(i + 1, MTLD_EV_CLICK, T0 + i);
    ev.scenario_id = 1 + i % 20;
    mtld_features_user_apply(&def, u, &ev);
  }
  n = mtld_features_user_encode(&def, u, buf, sizeof buf);
  CHECK(n == MTLD_FEATURES_USER_ENC_MAX - MTLD_ATTR_VALUES_ENC_MAX); /* no attributes declared */
  CHECK(mtld_features_user_decode(&def, u2, buf, n) == MTLD_OK && user_equal(u, u2, 4));
  free(u);
  free(u2);
}

static void test_def(void) {
  mtld_feature_def_t def, d2;
  char err[256];
  mtld_feature_def_default(&def);
  CHECK(def.n_half_lives == 3 && def.half_life_s[2] == 604800 && def.seq_len == 50);
  CHECK(mtld_feature_def_check(&def, err, sizeof err) == MTLD_OK);
  uint64_t h = mtld_feature_def_hash(&def);
  CHECK(h == mtld_feature_def_hash(&def));
  int changed = 0, n_mut = 0;
#define MUTATE(stmt)                                                                               \
  do {                                                                                             \
    d2 = def;                                                                                      \
    stmt;                                                                                          \
    n_mut++;                                                                                       \
    changed += mtld_feature_def_hash(&d2) != h;                                                    \
  } while (0)
  MUTATE(d2.n_half_lives = 2);
  MUTATE(d2.half_life_s[0] = 3601);
  MUTATE(d2.half_life_s[1] = 86400.5);
  MUTATE(d2.half_life_s[2] = 1);
  MUTATE((d2.n_half_lives = 4, d2.half_life_s[3] = 60));
  MUTATE(d2.seq_len = 49);
  MUTATE(d2.prior_strength = 11);
  MUTATE(d2.ctr_prior = 0.051);
  MUTATE(d2.cvr_prior = 0.021);
  MUTATE(d2.cart_prior = 0.049);
  MUTATE(d2.item_view = MTLD_ITEM_VIEW_GLOBAL);
#undef MUTATE
  CHECK(changed == n_mut);
  d2 = def;
  d2.half_life_s[3] = 123; /* unused slot */
  CHECK(mtld_feature_def_hash(&d2) == h);

  uint8_t buf[MTLD_FEATURE_DEF_ENC_MAX];
  size_t n = mtld_feature_def_encode(&def, buf, sizeof buf);
  CHECK(n == 2 + 3 * 8 + 4 + 32 + 1 && buf[0] == MTLD_FEATURE_DEF_ENC_VERSION);
  CHECK(mtld_feature_def_decode(&d2, buf, n) == MTLD_OK);
  CHECK(mtld_feature_def_hash(&d2) == h && d2.seq_len == 50 && d2.cvr_prior == 0.02);
  CHECK(mtld_feature_def_decode(&d2, buf, n - 1) == MTLD_ERR_CORRUPT);

  d2 = def;
  d2.n_half_lives = 0;
  CHECK(mtld_feature_def_check(&d2, err, sizeof err) == MTLD_ERR_INVALID);
  d2 = def;
  d2.half_life_s[1] = -1;
  CHECK(mtld_feature_def_check(&d2, err, sizeof err) == MTLD_ERR_INVALID);
  d2 = def;
  d2.seq_len = MTLD_MAX_SEQ + 1;
  CHECK(mtld_feature_def_check(&d2, err, sizeof err) == MTLD_ERR_INVALID);
  CHECK(strstr(err, "seq_len") != NULL);
  d2 = def;
  d2.ctr_prior = NAN;
  CHECK(mtld_feature_def_check(&d2, err, sizeof err) == MTLD_ERR_INVALID);
  d2 = def;
  d2.item_view = 2;
  CHECK(mtld_feature_def_check(&d2, err, sizeof err) == MTLD_ERR_INVALID);
  CHECK(strstr(err, "item_view") != NULL);
  CHECK(def.item_view == MTLD_ITEM_VIEW_PARTITION);
  d2 = def;
  d2.item_view = MTLD_ITEM_VIEW_GLOBAL;
  n = mtld_feature_def_encode(&d2, buf, sizeof buf);
  CHECK(mtld_feature_def_decode(&d2, buf, n) == MTLD_OK && d2.item_view == MTLD_ITEM_VIEW_GLOBAL);
  buf[n - 1] = 7; /* unknown view */
  CHECK(mtld_feature_def_decode(&d2, buf, n) == MTLD_ERR_CORRUPT);
  buf[n - 1] = MTLD_ITEM_VIEW_GLOBAL;
  buf[0] = 1; /* the format before item_view */
  CHECK(mtld_feature_def_decode(&d2, buf, n - 1) == MTLD_ERR_CORRUPT);
}

/* Hand example: user and item see IMPRESSION at T0 (scenario A), CLICK at
 * T0+1h (scenario A), PURCHASE 10 x 2 at T0+1h (scenario B); now = T0+2h. */
static void test_dense(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  const uint64_t A = 111, B = 222;
  mtld_user_features_t *u = calloc(1, sizeof *u);
  mtld_item_features_t it;
  memset(&it, 0, sizeof it);
  mtld_event_t e1 = make_event(1, MTLD_EV_IMPRESSION, T0);
  e1.scenario_id = A;
  mtld_event_t e2 = make_event(2, MTLD_EV_CLICK, T0 + HOUR_MS);
  e2.scenario_id = A;
  mtld_event_t e3 = make_event(3, MTLD_EV_PURCHASE, T0 + HOUR_MS);
  e3.scenario_id = B;
  e3.price = 10;
  e3.quantity = 2;
  const mtld_event_t *evs[3] = {&e1, &e2, &e3};
  for (int i = 0; i < 3; i++) {
    mtld_features_user_apply(&def, u, evs[i]);
    mtld_features_item_apply(&def, &it, evs[i]);
  }
  float out[MTLD_MAX_DENSE];
  int n = mtld_features_dense(&def, u, &it, A, T0 + 2 * HOUR_MS, out, MTLD_MAX_DENSE);
  CHECK(n == 45 && n == mtld_features_dense_count(&def));
  {
    /* the item slots are exactly the positions that change when only the
     * item does (here: the item, or no item at all) */
    float no_item[MTLD_MAX_DENSE];
    mtld_features_dense(&def, u, NULL, A, T0 + 2 * HOUR_MS, no_item, MTLD_MAX_DENSE);
    int slots[MTLD_FEATURES_ITEM_DENSE_MAX], is_item[MTLD_MAX_DENSE] = {0};
    int ns = mtld_features_dense_item_slots(&def, slots);
    CHECK(ns == 5 * def.n_half_lives + 7 && ns <= MTLD_FEATURES_ITEM_DENSE_MAX);
    for (int k = 0; k < ns; k++) is_item[slots[k]] = 1;
    int wrong = 0;
    for (int k = 0; k < n; k++)
      if (!is_item[k] && out[k] != no_item[k]) wrong++; /* a user slot moved with the item */
    int moved = 0;
    for (int k = 0; k < ns; k++) moved += out[slots[k]] != no_item[slots[k]];
    CHECK(wrong == 0);
    CHECK(moved >= 3 * def.n_half_lives); /* impression, click, purchase counts at least */
  }
  CHECK(mtld_features_dense(&def, u, &it, A, T0, out, 44) == -1);
  n = mtld_features_dense(&def, u, &it, A, T0 + 2 * HOUR_MS, out, 45);
  CHECK(n == 45);
  /* half-life 1 h: impression 2 h old = 0.25, click and purchase 1 h old = 0.5 */
  const float tol = 1e-6f;
  CHECK_NEAR(out[0], log1p(0.25), tol);
  CHECK_NEAR(out[1], log1p(0.5), tol);
  CHECK_NEAR(out[2], 0, tol);
  CHECK_NEAR(out[3], log1p(0.5), tol);
  CHECK_NEAR(out[4], 0, tol);
  for (int k = 0; k < 5; k++) CHECK_NEAR(out[5 + k], out[k], tol); /* item saw the same */
  int bad = 0;
  for (int h = 0; h < 3; h++) {
    double hl = def.half_life_s[h];
    double imp = exp2(-7200 / hl), one = exp2(-3600 / hl);
    const double want[5] = {log1p(imp), log1p(one), 0, log1p(one), 0};
    for (int k = 0; k < 5; k++)
      if (fabs(out[10 * h + k] - want[k]) > tol || fabs(out[10 * h + 5 + k] - want[k]) > tol) bad++;
  }
  CHECK(bad == 0);
  /* rates at 7 d, decayed to now */
  double L = 604800, imp = exp2(-7200 / L), one = exp2(-3600 / L);
  double ctr = (one + 10 * 0.05) / (imp + 10), cvr = (one + 10 * 0.02) / (one + 10),
         cart = (0 + 10 * 0.05) / (one + 10);
  CHECK_NEAR(out[30], ctr, tol);
  CHECK_NEAR(out[31], cvr, tol);
  CHECK_NEAR(out[32], cart, tol);
  CHECK_NEAR(out[33], ctr, tol);
  CHECK_NEAR(out[34], cvr, tol);
  CHECK_NEAR(out[35], cart, tol);
  CHECK_NEAR(out[36], 0, tol); /* no reviews */
  CHECK_NEAR(out[37], 0, tol);
  CHECK_NEAR(out[38], 0, tol);
  CHECK_NEAR(out[39], 0, tol);
  CHECK_NEAR(out[40], log1p(20.0), tol);   /* spend 10 x 2 */
  CHECK_NEAR(out[41], log1p(3600.0), tol); /* 1 h since the user's last event */
  CHECK_NEAR(out[42], log1p(3600.0), tol);
  CHECK_NEAR(out[43], log1p(10.0), tol); /* last price */
  /* share of scenario A at 7 d, as of the last event: (2^-1/168 + 1) / (2^-1/168 + 2) */
  double a = exp2(-1.0 / 168);
  CHECK_NEAR(out[44], (a + 1) / (a + 2), tol);
  n = mtld_features_dense(&def, u, &it, B, T0 + 2 * HOUR_MS, out, 45);
  CHECK_NEAR(out[44], 1 / (a + 2), tol);
  n = mtld_features_dense(&def, u, &it, 333, T0 + 2 * HOUR_MS, out, 45);
  CHECK_NEAR(out[44], 0, tol);
  /* inputs are not modified */
  CHECK(u->last_time_ms == T0 + HOUR_MS && u->decayed[0][0] == 0.5);
  /* never-seen user and item: zeros and priors */
  n = mtld_features_dense(&def, NULL, NULL, A, T0, out, 45);
  CHECK(n == 45);
  int nonzero = 0;
  for (int k = 0; k < 30; k++) nonzero += out[k] != 0;
  CHECK(nonzero == 0);
  CHECK_NEAR(out[30], 0.05, tol);
  CHECK_NEAR(out[31], 0.02, tol);
  CHECK_NEAR(out[35], 0.05, tol);
  CHECK_NEAR(out[41], 0, tol);
  CHECK_NEAR(out[44], 0, tol);
  /* now before the last event: not decayed, recency 0 */
  n = mtld_features_dense(&def, u, &it, A, T0, out, 45);
  CHECK_NEAR(out[1], log1p(1.0), tol);
  CHECK_NEAR(out[41], 0, tol);
  /* 4 half-lives fit in MTLD_MAX_DENSE */
  def.n_half_lives = 4;
  def.half_life_s[3] = 60;
  CHECK(mtld_features_dense_count(&def) == 55 && 55 <= MTLD_MAX_DENSE);
  free(u);
}

static uint64_t H(const char *s) {
  return mtld_hash_id(s, strlen(s));
}

/* Declared attributes: definitions, hash, store values, inputs. */
static void test_attrs(void) {
  mtld_feature_def_t def, d2;
  char err[256];
  mtld_feature_def_default(&def);
  uint64_t h0 = mtld_feature_def_hash(&def);
  CHECK(mtld_attr_def_set(&def.attrs[0], "age_level", MTLD_ATTR_USER, MTLD_ATTR_CATEGORICAL, 100,
                          "", 0) == 0);
  CHECK(mtld_attr_def_set(&def.attrs[1], "brand", MTLD_ATTR_ITEM, MTLD_ATTR_CATEGORICAL, 1000,
                          "none", 0) == 0);
  CHECK(mtld_attr_def_set(&def.attrs[2], "discount", MTLD_ATTR_CONTEXT, MTLD_ATTR_NUMERIC, 0, NULL,
                          0.5) == 0);
  CHECK(mtld_attr_def_set(&def.attrs[3], "income", MTLD_ATTR_USER, MTLD_ATTR_NUMERIC, 0, NULL,
                          -1) == 0);
  def.n_attrs = 4;
  CHECK(mtld_feature_def_check(&def, err, sizeof err) == MTLD_OK);
  uint64_t h = mtld_feature_def_hash(&def);
  CHECK(h != h0);
  /* every declared property is in the hash */
  int changed = 0, n_mut = 0;
#define MUTATE(stmt)                                                                               \
  do {                                                                                             \
    d2 = def;                                                                                      \
    stmt;                                                                                          \
    n_mut++;                                                                                       \
    changed += mtld_feature_def_hash(&d2) != h;                                                    \
  } while (0)
  MUTATE(d2.n_attrs = 3);
  MUTATE(mtld_attr_def_set(&d2.attrs[0], "age", MTLD_ATTR_USER, MTLD_ATTR_CATEGORICAL, 100, "", 0));
  MUTATE(d2.attrs[0].owner = MTLD_ATTR_ITEM);
  MUTATE(d2.attrs[0].rows = 101);
  MUTATE(mtld_attr_def_set(&d2.attrs[1], "brand", MTLD_ATTR_ITEM, MTLD_ATTR_CATEGORICAL, 1000,
                           "other", 0));
  MUTATE(d2.attrs[2].default_num = 0.25);
  MUTATE(mtld_attr_def_set(&d2.attrs[2], "discount", MTLD_ATTR_CONTEXT, MTLD_ATTR_CATEGORICAL, 10,
                           "", 0));
#undef MUTATE
  CHECK(changed == n_mut);
  /* encoding round trip */
  uint8_t buf[MTLD_FEATURE_DEF_ENC_MAX];
  size_t n = mtld_feature_def_encode(&def, buf, sizeof buf);
  CHECK(n > 0 && mtld_feature_def_decode(&d2, buf, n) == MTLD_OK);
  CHECK(d2.n_attrs == 4 && mtld_feature_def_hash(&d2) == h &&
        strcmp(d2.attrs[1].default_str, "none") == 0 && d2.attrs[1].default_id == H("none") &&
        d2.attrs[1].name_id == H("brand") && d2.attrs[2].default_num == 0.5 &&
        d2.attrs[0].rows == 100 && d2.attrs[3].owner == MTLD_ATTR_USER);
  CHECK(mtld_feature_def_decode(&d2, buf, n - 1) == MTLD_ERR_CORRUPT);
  /* the largest declarations fit */
  d2 = def;
  char name[MTLD_ATTR_NAME_LEN + 1], val[MTLD_ATTR_VALUE_LEN + 1];
  memset(val, 'v', MTLD_ATTR_VALUE_LEN), val[MTLD_ATTR_VALUE_LEN] = 0;
  for (int k = 0; k < MTLD_ATTR_MAX; k++) {
    memset(name, 'a' + k, MTLD_ATTR_NAME_LEN), name[MTLD_ATTR_NAME_LEN] = 0;
    mtld_attr_def_set(&d2.attrs[k], name, MTLD_ATTR_ITEM, MTLD_ATTR_CATEGORICAL, 7, val, 0);
  }
  d2.n_attrs = MTLD_ATTR_MAX;
  d2.n_half_lives = 4, d2.half_life_s[3] = 60;
  CHECK(mtld_feature_def_check(&d2, err, sizeof err) == MTLD_OK);
  CHECK(mtld_feature_def_encode(&d2, buf, sizeof buf) == MTLD_FEATURE_DEF_ENC_MAX);
  /* checks */
  d2 = def;
  d2.attrs[1] = d2.attrs[0];
  CHECK(mtld_feature_def_check(&d2, err, sizeof err) == MTLD_ERR_INVALID &&
        strstr(err, "duplicate"));
  d2 = def;
  d2.attrs[0].rows = 0;
  CHECK(mtld_feature_def_check(&d2, err, sizeof err) == MTLD_ERR_INVALID && strstr(err, "rows"));
  d2 = def;
  d2.attrs[2].default_num = NAN;
  CHECK(mtld_feature_def_check(&d2, err, sizeof err) == MTLD_ERR_INVALID);
  d2 = def;
  d2.n_half_lives = 4, d2.half_life_s[3] = 60; /* 55 dense features: room for 9 numeric */
  for (int k = 0; k < MTLD_ATTR_MAX; k++) {
    snprintf(name, sizeof name, "n%d", k);
    mtld_attr_def_set(&d2.attrs[k], name, MTLD_ATTR_CONTEXT, MTLD_ATTR_NUMERIC, 0, NULL, 0);
  }
  d2.n_attrs = 9;
  CHECK(mtld_feature_def_check(&d2, err, sizeof err) == MTLD_OK);
  d2.n_attrs = 10;
  CHECK(mtld_feature_def_check(&d2, err, sizeof err) == MTLD_ERR_INVALID && strstr(err, "fit"));

  /* values: newest by (time, event id) whatever the order; point in time */
  mtld_user_features_t *u = calloc(1, sizeof *u), *u2 = calloc(1, sizeof *u2);
  mtld_item_features_t it, it2;
  memset(&it, 0, sizeof it);
  memset(&it2, 0, sizeof it2);
  mtld_event_t e1 = make_event(1, MTLD_EV_IMPRESSION, T0),
               e2 = make_event(2, MTLD_EV_CLICK, T0 + 5),
               e3 = make_event(3, MTLD_EV_IMPRESSION, T0 + 5);
  mtld_event_attr_set_str(&e1, H("age_level"), H("3"));
  mtld_event_attr_set_str(&e1, H("brand"), H("b-1"));
  mtld_event_attr_set_num(&e1, H("income"), 10);
  mtld_event_attr_set_str(&e2, H("age_level"), H("4"));
  mtld_event_attr_set_num(&e2, H("income"), 20);
  mtld_event_attr_set_str(&e3, H("brand"), H("b-3"));
  mtld_event_attr_set_num(&e3, H("discount"), 0.1);
  mtld_event_attr_set_num(&e3, H("age_level"), 9); /* wrong kind: ignored */
  uint64_t cat[MTLD_ATTR_MAX];
  float num[MTLD_ATTR_MAX];
  int nc, nn;
  /* never seen, no event: the defaults */
  mtld_features_attr_inputs(&def, NULL, NULL, NULL, cat, &nc, num, &nn);
  CHECK(nc == 2 && nn == 2 && cat[0] == 0 && cat[1] == H("none") && num[0] == 0.5f &&
        num[1] == -1.0f);
  mtld_features_user_apply(&def, u, &e1);
  mtld_features_item_apply(&def, &it, &e1);
  mtld_features_attr_inputs(&def, u, &it, &e3, cat, &nc, num, &nn);
  CHECK(cat[0] == H("3") && cat[1] == H("b-1") && num[0] == 0.1f && num[1] == 10.0f);
  mtld_event_t order[3] = {e3, e2, e1};
  for (int i = 0; i < 3; i++) {
    mtld_features_user_apply(&def, u2, &order[i]);
    mtld_features_item_apply(&def, &it2, &order[i]);
  }
  mtld_features_user_apply(&def, u, &e2);
  mtld_features_user_apply(&def, u, &e3);
  mtld_features_item_apply(&def, &it, &e2);
  mtld_features_item_apply(&def, &it, &e3);
  CHECK(memcmp(&u->attrs, &u2->attrs, sizeof u->attrs) == 0);
  CHECK(memcmp(&it.attrs, &it2.attrs, sizeof it.attrs) == 0);
  mtld_features_attr_inputs(&def, u, &it, NULL, cat, &nc, num, &nn);
  CHECK(cat[0] == H("4") && cat[1] == H("b-3") && num[0] == 0.5f && num[1] == 20.0f);
  CHECK(u->attrs.set == (1u << 0 | 1u << 3) && it.attrs.set == 1u << 1);
  /* store encodings carry them; attribute-free definitions do not */
  static uint8_t ub[MTLD_FEATURES_USER_ENC_MAX];
  uint8_t ib[MTLD_FEATURES_ITEM_ENC_MAX];
  n = mtld_features_user_encode(&def, u, ub, sizeof ub);
  CHECK(n > 0 && mtld_features_user_decode(&def, u2, ub, n) == MTLD_OK &&
        memcmp(&u->attrs, &u2->attrs, sizeof u->attrs) == 0);
  n = mtld_features_item_encode(&def, &it, ib, sizeof ib);
  CHECK(n > 0 && mtld_features_item_decode(&def, &it2, ib, n) == MTLD_OK &&
        memcmp(&it.attrs, &it2.attrs, sizeof it.attrs) == 0);
  mtld_feature_def_default(&d2);
  size_t n0 = mtld_features_item_encode(&d2, &it, ib, sizeof ib);
  CHECK(n0 == n - 4 - 24);
  CHECK(mtld_features_item_decode(&d2, &it2, ib, n0) == MTLD_OK && it2.attrs.set == 0);
  /* a mask naming a slot of another owner is corrupt */
  n = mtld_features_item_encode(&def, &it, ib, sizeof ib);
  ib[n0] |= 1; /* slot 0 is a user attribute */
  CHECK(mtld_features_item_decode(&def, &it2, ib, n) == MTLD_ERR_CORRUPT);
  free(u);
  free(u2);
}

int main(void) {
  test_decay_closed_form(0, 2000);
  test_decay_closed_form(1, 2000);
  test_decay_closed_form(1, 17);
  test_item_order_independent();
  test_sequence();
  test_scenarios();
  test_spend_reviews();
  test_rate();
  test_encoding();
  test_def();
  test_dense();
  test_attrs();
  return CHECK_DONE();
}
