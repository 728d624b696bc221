/* test_demand.c - the item demand windows over a real store in a temp dir:
 * which items get a sample at a boundary, the label (orders in the next
 * window), the naive forecasts and dense values, the deadline and the cap
 * at the highest event time, late events, the same samples whatever the
 * event order and release steps, persistence across a restart and rollback
 * + reload, and the pruning of old windows. */
#define _XOPEN_SOURCE 700
#include "features/demand.h"

#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/check.h"

#define H (3600 * 1000LL)
#define T0 (1500000000000LL / H * H) /* a boundary in 2017 */

static char base_dir[64];
static int n_dirs;

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

typedef struct {
  mtld_store_t *st;
  mtld_demand_t *d;
  mtld_feature_def_t def;
  mtld_demand_config_t cfg;
  char path[128];
} env_t;

static int env_open(env_t *e, int windows, int reuse) {
  char err[256] = "";
  mtld_feature_def_default(&e->def);
  mtld_demand_config_default(&e->cfg);
  e->cfg.windows = windows;
  if (!reuse) snprintf(e->path, sizeof e->path, "%s/s%d", base_dir, n_dirs++);
  if (mtld_store_open(&e->st, e->path, &e->def, 0, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "store open: %s\n", err);
    return -1;
  }
  if (mtld_demand_create(&e->d, e->st, &e->def, &e->cfg, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "demand create: %s\n", err);
    mtld_store_close(e->st);
    return -1;
  }
  return 0;
}

static void env_close(env_t *e) {
  mtld_demand_destroy(e->d);
  mtld_store_close(e->st);
}

static int env_commit(env_t *e) {
  char err[256] = "";
  if (mtld_demand_stage(e->d) != MTLD_OK) return -1;
  if (mtld_store_commit(e->st, err, sizeof err) != MTLD_OK) return -1;
  mtld_demand_counters_commit(e->d);
  return 0;
}

static void ev_at(env_t *e, int type, uint64_t item, int64_t t, int qty) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = (uint64_t)t ^ item;
  ev.user_id = 7;
  ev.item_id = item;
  ev.category_id = item % 5 + 1;
  ev.type = type;
  ev.time_ms = t;
  ev.quantity = qty;
  CHECK(mtld_demand_on_event(e->d, &ev) == MTLD_OK);
}

#define MAX_OUT 256
typedef struct {
  int n;
  mtld_sample_t s[MAX_OUT];
} out_t;

static void collect(void *ctx, const mtld_sample_t *s) {
  out_t *o = ctx;
  if (o->n < MAX_OUT) o->s[o->n++] = *s;
}

static int release_all(env_t *e, int64_t wm, out_t *o) {
  int n = 0;
  while (mtld_demand_next_deadline(e->d) < wm && mtld_demand_release_next(e->d, wm, collect, o))
    n++;
  return n;
}

static const mtld_sample_t *find(const out_t *o, int64_t time_ms, uint64_t item) {
  for (int i = 0; i < o->n; i++)
    if (o->s[i].time_ms == time_ms && o->s[i].fields[MTLD_FIELD_ITEM] == item) return &o->s[i];
  return NULL;
}

static void test_config(void) {
  mtld_demand_config_t c;
  char err[128];
  mtld_demand_config_default(&c);
  CHECK(c.horizon_ms == H && c.windows == 6);
  CHECK(mtld_demand_config_check(&c, err, sizeof err) == MTLD_OK);
  c.windows = 0;
  CHECK(mtld_demand_config_check(&c, err, sizeof err) == MTLD_ERR_CONFIG);
  c.windows = 3;
  c.horizon_ms = 0;
  CHECK(mtld_demand_config_check(&c, err, sizeof err) == MTLD_ERR_CONFIG);
}

/* Items 1 and 2 active in hour 0; item 1 buys 2 + 1 (quantities) in hour 1,
 * item 3 only appears in hour 1; item 1 buys once (quantity 0 = 1) in
 * hour 2.  Boundary 1 (T0 + H): samples for items 1 and 2 only, labels 3
 * and 0, released once the watermark passes T0 + 2H - 1 and not before. */
static void test_windows_and_labels(void) {
  env_t e;
  CHECK(env_open(&e, 2, 0) == 0);
  ev_at(&e, MTLD_EV_IMPRESSION, 1, T0 + 10, 0);
  ev_at(&e, MTLD_EV_CLICK, 1, T0 + 20, 0);
  ev_at(&e, MTLD_EV_PURCHASE, 1, T0 + 30, 4); /* hour 0: 4 orders of item 1 */
  ev_at(&e, MTLD_EV_IMPRESSION, 2, T0 + H - 1, 0);
  ev_at(&e, MTLD_EV_PURCHASE, 1, T0 + H, 2);
  ev_at(&e, MTLD_EV_PURCHASE, 1, T0 + H + 5, 1);
  ev_at(&e, MTLD_EV_IMPRESSION, 3, T0 + 2 * H - 1, 0);
  ev_at(&e, MTLD_EV_PURCHASE, 1, T0 + 2 * H + 1, 0);
  ev_at(&e, MTLD_EV_IMPRESSION, 9, T0 + 5 * H, 0); /* the stream goes on */
  CHECK(mtld_demand_next_deadline(e.d) == T0 + 2 * H - 1);
  out_t o = {0};
  CHECK(release_all(&e, T0 + 2 * H - 1, &o) == 0); /* deadline not < watermark */
  CHECK(o.n == 0);
  CHECK(release_all(&e, T0 + 2 * H, &o) == 1);
  CHECK(o.n == 2);
  CHECK(o.s[0].fields[MTLD_FIELD_ITEM] == 1 && o.s[1].fields[MTLD_FIELD_ITEM] == 2); /* id order */
  const mtld_sample_t *s = find(&o, T0 + H, 1);
  CHECK(s && s->kind == MTLD_SAMPLE_ITEM && s->label_mask == (1u << MTLD_LABEL_DEMAND));
  CHECK(s && s->labels[MTLD_LABEL_DEMAND] == 3.0f);
  CHECK(s && s->naive[MTLD_NAIVE_LAST] == 4.0f && s->naive[MTLD_NAIVE_MA] == 2.0f); /* (4+0)/2 */
  CHECK(s && s->fields[MTLD_FIELD_USER] == 0 && s->seq_len == 0 && s->weight == 1.0f);
  CHECK(s && s->fields[MTLD_FIELD_CATEGORY] == 2 &&
        s->fields[MTLD_FIELD_HOUR] == mtld_sample_hour_id(T0 + H));
  int nd = mtld_features_dense_count(&e.def);
  CHECK(s && s->n_dense == nd + MTLD_DEMAND_DENSE);
  if (s) {
    const float *x = s->dense + nd;
    CHECK_NEAR(x[0], log1pf(4.0f), 1e-6); /* orders hour 0 */
    CHECK_NEAR(x[1], 0.0, 1e-9);          /* hour -1 */
    CHECK_NEAR(x[3], log1pf(2.0f), 1e-6); /* moving average */
    CHECK_NEAR(x[4], log1pf(1.0f), 1e-6); /* one impression */
    CHECK_NEAR(x[5], log1pf(1.0f), 1e-6); /* one click */
    CHECK_NEAR(x[7], log1pf(1.0f), 1e-6); /* one purchase event */
  }
  s = find(&o, T0 + H, 2);
  CHECK(s && s->labels[MTLD_LABEL_DEMAND] == 0.0f && s->naive[MTLD_NAIVE_LAST] == 0.0f);
  /* boundary 2: items 1 and 3 (active in hour 1); item 1's moving average
   * over hours 1 and 0 = (3 + 4) / 2, label 1 (quantity 0 counts 1) */
  o.n = 0;
  CHECK(release_all(&e, T0 + 3 * H, &o) == 1);
  CHECK(o.n == 2 && find(&o, T0 + 2 * H, 3) && !find(&o, T0 + 2 * H, 2));
  s = find(&o, T0 + 2 * H, 1);
  CHECK(s && s->labels[MTLD_LABEL_DEMAND] == 1.0f && s->naive[MTLD_NAIVE_LAST] == 3.0f &&
        s->naive[MTLD_NAIVE_MA] == 3.5f);
  /* boundary 3: item 1 (hour 2); the next active window is hour 5, whose
   * label window (hour 6) is past the highest event time: held back */
  o.n = 0;
  CHECK(release_all(&e, INT64_MAX, &o) == 1);
  CHECK(o.n == 1 && o.s[0].time_ms == T0 + 3 * H && o.s[0].naive[MTLD_NAIVE_MA] == 2.0f);
  CHECK(mtld_demand_next_deadline(e.d) == T0 + 7 * H - 1);
  /* late: an event in a window whose boundary was released is dropped */
  mtld_demand_counters_t c;
  mtld_demand_counters(e.d, &c);
  uint64_t late = c.late;
  ev_at(&e, MTLD_EV_PURCHASE, 1, T0 + 3 * H - 1, 1);
  mtld_demand_counters(e.d, &c);
  CHECK(c.late == late + 1 && c.samples == 5 && c.boundaries == 3);
  /* windows older than the history are gone: hours 0 and 1 (M = 2) */
  CHECK(mtld_demand_cells(e.d) == 2); /* hour 2: item 1; hour 5: item 9 */
  env_close(&e);
}

/* The same events in another order, released in other steps, give the
 * same samples (bytes). */
static void test_order_independent(void) {
  env_t a, b;
  CHECK(env_open(&a, 3, 0) == 0 && env_open(&b, 3, 0) == 0);
  enum { N = 400 };
  static int64_t t[N];
  static int ty[N], q[N];
  static uint64_t it[N];
  uint64_t r = 12345;
  for (int i = 0; i < N; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    t[i] = T0 + (int64_t)((r >> 33) % (uint64_t)(8 * H));
    it[i] = 1 + (r >> 20) % 17;
    ty[i] = 1 + (int)((r >> 8) % 5);
    q[i] = (int)((r >> 4) % 3);
  }
  for (int i = 0; i < N; i++) ev_at(&a, ty[i], it[i], t[i], q[i]);
  for (int i = N - 1; i >= 0; i--) ev_at(&b, ty[i], it[i], t[i], q[i]);
  static out_t oa, ob;
  oa.n = ob.n = 0;
  release_all(&a, INT64_MAX, &oa);
  for (int64_t w = T0; w < T0 + 10 * H; w += H / 3) release_all(&b, w, &ob);
  release_all(&b, INT64_MAX, &ob);
  CHECK(oa.n > 50 && oa.n == ob.n);
  CHECK(memcmp(oa.s, ob.s, sizeof(mtld_sample_t) * (size_t)oa.n) == 0);
  env_close(&a);
  env_close(&b);
}

/* State survives a restart (committed) and a rollback drops the staged. */
static void test_persistence_and_rollback(void) {
  env_t e;
  char err[256];
  CHECK(env_open(&e, 2, 0) == 0);
  ev_at(&e, MTLD_EV_IMPRESSION, 1, T0 + 10, 0);
  ev_at(&e, MTLD_EV_PURCHASE, 1, T0 + H + 10, 2);
  ev_at(&e, MTLD_EV_IMPRESSION, 2, T0 + 3 * H, 0);
  out_t o = {0};
  CHECK(release_all(&e, T0 + 2 * H, &o) == 1 && o.n == 1);
  CHECK(env_commit(&e) == 0);
  /* staged, then rolled back: the purchase in hour 1 never happened */
  ev_at(&e, MTLD_EV_PURCHASE, 1, T0 + 2 * H + 1, 5);
  mtld_store_rollback(e.st);
  CHECK(mtld_demand_reload(e.d, err, sizeof err) == MTLD_OK);
  env_close(&e);
  CHECK(env_open(&e, 2, 1) == 0); /* restart on the same store */
  o.n = 0;
  CHECK(release_all(&e, INT64_MAX, &o) == 1); /* boundary 2 (item 1, hour 1) */
  CHECK(o.n == 1 && o.s[0].time_ms == T0 + 2 * H && o.s[0].labels[MTLD_LABEL_DEMAND] == 0.0f &&
        o.s[0].naive[MTLD_NAIVE_LAST] == 2.0f && o.s[0].naive[MTLD_NAIVE_MA] == 1.0f);
  /* the released boundary stays released: hour 0 is late */
  mtld_demand_counters_t c;
  ev_at(&e, MTLD_EV_IMPRESSION, 4, T0 + 5, 0);
  mtld_demand_counters(e.d, &c);
  CHECK(c.late == 1);
  env_close(&e);
}

static void test_dense(void) {
  float out[MTLD_DEMAND_DENSE], orders[3] = {0, 1, 3};
  uint32_t ev[4] = {10, 2, 1, 0};
  mtld_demand_dense(out, orders, 1.5f, ev);
  CHECK(out[0] == 0.0f && out[1] == log1pf(1.0f) && out[2] == log1pf(3.0f));
  CHECK(out[3] == log1pf(1.5f) && out[4] == log1pf(10.0f) && out[7] == 0.0f);
}

int main(void) {
  snprintf(base_dir, sizeof base_dir, "/tmp/mtld-test-demand-XXXXXX");
  if (!mkdtemp(base_dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_config();
  test_dense();
  test_windows_and_labels();
  test_order_independent();
  test_persistence_and_rollback();
  nftw(base_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  return CHECK_DONE();
}
