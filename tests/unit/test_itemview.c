/* test_itemview.c - the partition-local item view (features.item_view).
 *
 * Three partitions' event sequences (users keyed to partitions, items shared,
 * partitions advancing at different event-time speeds, some late events) are
 * fed to stores in three interleavings with different batch cuts, with
 * item_view = partition and = global.  Checked:
 *   - every (partition, item) view equals the closed form over that
 *     partition's events, and every "before" value handed out equals the
 *     closed form over the same partition's EARLIER events of the item;
 *   - the "before" values (item and user) are byte-equal across
 *     interleavings with item_view = partition, and differ with global;
 *   - the global item and user column families are byte-equal to those of a
 *     global-view store fed the same sequence, and equal the closed form;
 *   - read-your-writes, rollback, raw get, per-item lookup over partitions
 *     (topic index << 16), the schema check between views, an old
 *     definitions format and a store without the "item_part" column family;
 *   - the config key features.item_view (parse, print round trip, diff).
 * Stores live in a mkdtemp directory under /tmp, removed at the end. */
#define _GNU_SOURCE
#include <ftw.h>
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/config.h"
#include "features/store.h"
#include "tests/unit/check.h"

#define T0 1500000000000LL
#define N_PARTS 3
#define N_PER_PART 240
#define N_USERS 30
#define N_ITEMS 12
#define N_EVENTS (N_PARTS * N_PER_PART)

/* Partition numbers as the pipeline makes them: topic index << 16 | partition. */
static const int32_t part_no[N_PARTS] = {0, 1, (1 << 16) | 2};

static char root[64];
static char errbuf[1024];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static const char *db_path(const char *name) {
  static char buf[4][128];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", root, name);
  return buf[k];
}

static uint64_t rng_state;

static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* ev[p][k]: the k-th record of partition p (offset order). */
static mtld_event_t ev[N_PARTS][N_PER_PART];

static void make_events(void) {
  rng_state = 0x9e3779b97f4a7c15ull;
  uint64_t id = 1;
  for (int p = 0; p < N_PARTS; p++) {
    for (int k = 0; k < N_PER_PART; k++) {
      mtld_event_t *e = &ev[p][k];
      memset(e, 0, sizeof *e);
      e->event_id = id++;
      /* users keyed to partitions, as Kafka does with key = user id */
      e->user_id = 1 + (uint64_t)p + N_PARTS * (rng() % (N_USERS / N_PARTS));
      e->item_id = 1000 + rng() % N_ITEMS;
      e->category_id = 1 + e->item_id % 5;
      e->type = 1 + (int)(rng() % MTLD_N_EVENT_TYPES);
      /* partition p advances (p + 1) minutes per record; 1 in 8 is late */
      e->time_ms = T0 + (int64_t)k * 60000 * (p + 1);
      if (rng() % 8 == 0) e->time_ms -= (int64_t)(rng() % 3600000);
      e->scenario_id = 1 + rng() % 2;
      if (rng() % 3 == 0) e->price = 1 + (double)(rng() % 900) / 10;
      if (e->type == MTLD_EV_PURCHASE) e->quantity = (int)(rng() % 3);
      if (e->type == MTLD_EV_REVIEW) e->rating = 1 + (float)(rng() % 5);
    }
  }
}

/* An interleaving: the sequence of partitions to take the next record from. */
static void make_order(int kind, int order[N_EVENTS]) {
  int next[N_PARTS] = {0}, n = 0;
  rng_state = 0x2545f4914f6cdd1dull + (uint64_t)kind;
  while (n < N_EVENTS) {
    int p;
    if (kind == 0) { /* round robin */
      p = n % N_PARTS;
    } else if (kind == 1) { /* partition after partition, the furthest ahead first */
      p = N_PARTS - 1;
      while (next[p] == N_PER_PART) p--;
    } else { /* random */
      do p = (int)(rng() % N_PARTS);
      while (next[p] == N_PER_PART);
    }
    order[n++] = p;
    next[p]++;
  }
}

typedef struct {
  uint8_t item[MTLD_FEATURES_ITEM_ENC_MAX]; /* encoded */
  size_t item_len;
  uint64_t user; /* FNV-1a of the encoded user */
} before_t;

static uint64_t fnv(const uint8_t *p, size_t n) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/* befores[p][k]: what applying ev[p][k] handed out. */
typedef before_t befores_t[N_PARTS][N_PER_PART];

/* Feeds every event in interleaving `kind`, committing every `cut` records,
 * into a new store; fills *b.  Returns the store (open), NULL on failure. */
static mtld_store_t *run(const char *name, const mtld_feature_def_t *def, int kind, int cut,
                         befores_t *b) {
  mtld_store_t *st = NULL;
  CHECK(mtld_store_open(&st, db_path(name), def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return NULL;
  static int order[N_EVENTS];
  make_order(kind, order);
  int next[N_PARTS] = {0}, fails = 0;
  mtld_user_features_t *ub = malloc(sizeof *ub);
  uint8_t *ubuf = malloc(MTLD_FEATURES_USER_ENC_MAX);
  for (int n = 0; n < N_EVENTS; n++) {
    int p = order[n], k = next[p]++;
    mtld_item_features_t ib;
    fails += mtld_store_apply_part(st, &ev[p][k], part_no[p], ub, &ib) != MTLD_OK;
    before_t *o = &(*b)[p][k];
    o->item_len = mtld_features_item_encode(def, &ib, o->item, sizeof o->item);
    o->user = fnv(ubuf, mtld_features_user_encode(def, ub, ubuf, MTLD_FEATURES_USER_ENC_MAX));
    if (n % cut == cut - 1) fails += mtld_store_commit(st, errbuf, sizeof errbuf) != MTLD_OK;
  }
  fails += mtld_store_commit(st, errbuf, sizeof errbuf) != MTLD_OK;
  free(ub);
  free(ubuf);
  CHECK(fails == 0);
  return st;
}

/* ---- the closed form ---- */

static int close_enough(double a, double b) {
  return fabs(a - b) <= 1e-9 * fmax(1.0, fmax(fabs(a), fabs(b)));
}

/* Item features over the events ev[p][0..k_end) of `item` in partitions
 * from..to (inclusive), computed order-independently; compared with f.
 * Returns 1 when equal. */
static int item_matches(const mtld_feature_def_t *def, int from, int to, int k_end, uint64_t item,
                        const mtld_item_features_t *f) {
  int64_t T = INT64_MIN;
  uint64_t n = 0;
  uint32_t nrev = 0;
  double rsum = 0;
  const mtld_event_t *priced = NULL;
  for (int p = from; p <= to; p++)
    for (int k = 0; k < k_end; k++) {
      const mtld_event_t *e = &ev[p][k];
      if (e->item_id != item) continue;
      n++;
      if (e->time_ms > T) T = e->time_ms;
      if (e->type == MTLD_EV_REVIEW) nrev++, rsum += e->rating;
      if (e->price > 0 && (!priced || e->time_ms > priced->time_ms ||
                           (e->time_ms == priced->time_ms && e->event_id > priced->event_id)))
        priced = e;
    }
  if (f->n_events != n) return 0;
  if (n == 0) return 1;
  double d[MTLD_N_EVENT_TYPES][MTLD_MAX_HALF_LIVES] = {{0}};
  for (int p = from; p <= to; p++)
    for (int k = 0; k < k_end; k++) {
      const mtld_event_t *e = &ev[p][k];
      if (e->item_id != item) continue;
      for (int h = 0; h < def->n_half_lives; h++)
        d[e->type - 1][h] += exp2(-(double)(T - e->time_ms) / 1000.0 / def->half_life_s[h]);
    }
  int ok = f->last_time_ms == T && f->n_reviews == nrev && close_enough(f->rating_sum, rsum) &&
           f->last_price == (priced ? priced->price : 0.0) && f->category_id == 1 + item % 5;
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++)
    for (int h = 0; h < def->n_half_lives; h++) ok &= close_enough(f->decayed[t][h], d[t][h]);
  return ok;
}

/* ---- digests of a column family ---- */

typedef struct {
  size_t n;
  uint64_t hash;
} digest_t;

static int digest_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  digest_t *d = ctx;
  const uint8_t *q = key;
  for (size_t i = 0; i < klen; i++) d->hash = (d->hash ^ q[i]) * 1099511628211ull;
  q = val;
  for (size_t i = 0; i < vlen; i++) d->hash = (d->hash ^ q[i]) * 1099511628211ull;
  d->n++;
  return 0;
}

static digest_t digest(mtld_store_t *st, mtld_cf_t cf) {
  digest_t d = {0, 14695981039346656037ull};
  mtld_store_foreach_raw(st, cf, NULL, 0, digest_cb, &d);
  return d;
}

/* ---- the tests ---- */

typedef struct {
  const mtld_feature_def_t *def;
  int n, bad, out_of_order;
  int32_t last_part;
  uint64_t last_item;
} part_walk_t;

static int part_index(int32_t partition) {
  for (int p = 0; p < N_PARTS; p++)
    if (part_no[p] == partition) return p;
  return -1;
}

static int part_walk_cb(void *ctx, int32_t partition, uint64_t id, const mtld_item_features_t *f) {
  part_walk_t *w = ctx;
  int p = part_index(partition);
  w->bad += p < 0 || !item_matches(w->def, p, p, N_PER_PART, id, f);
  if (w->n && (partition < w->last_part || (partition == w->last_part && id <= w->last_item)))
    w->out_of_order++;
  w->last_part = partition;
  w->last_item = id;
  w->n++;
  return 0;
}

static int global_walk_cb(void *ctx, uint64_t id, const mtld_item_features_t *f) {
  part_walk_t *w = ctx;
  w->bad += !item_matches(w->def, 0, N_PARTS - 1, N_PER_PART, id, f);
  w->n++;
  return 0;
}

static befores_t bp[3], bg[3]; /* partition view, global view; per interleaving */

static void test_interleavings(void) {
  mtld_feature_def_t def, gdef;
  mtld_feature_def_default(&def);
  gdef = def;
  gdef.item_view = MTLD_ITEM_VIEW_GLOBAL;
  static const int cut[3] = {50, 73, 31};
  mtld_store_t *sp[3], *sg[3];
  for (int i = 0; i < 3; i++) {
    char name[32];
    snprintf(name, sizeof name, "part-%d", i);
    sp[i] = run(name, &def, i, cut[i], &bp[i]);
    snprintf(name, sizeof name, "global-%d", i);
    sg[i] = run(name, &gdef, i, cut[i], &bg[i]);
    if (!sp[i] || !sg[i]) return;
  }

  /* partition view: the same "before" values however partitions interleave */
  int diff_part = 0, diff_user = 0, diff_global = 0;
  for (int i = 1; i < 3; i++)
    for (int p = 0; p < N_PARTS; p++)
      for (int k = 0; k < N_PER_PART; k++) {
        const before_t *a = &bp[0][p][k], *b = &bp[i][p][k];
        diff_part += a->item_len != b->item_len || memcmp(a->item, b->item, a->item_len) != 0;
        diff_user += a->user != b->user;
        a = &bg[0][p][k];
        b = &bg[i][p][k];
        diff_global += a->item_len != b->item_len || memcmp(a->item, b->item, a->item_len) != 0;
        diff_user += a->user != b->user;
      }
  CHECK(diff_part == 0);
  CHECK(diff_user == 0);             /* users live on one partition: never depended on it */
  CHECK(diff_global > N_EVENTS / 4); /* the old behaviour does depend on it */
  printf("before values differing between interleavings: partition view %d, global view %d "
         "(of %d x 2)\n",
         diff_part, diff_global, N_EVENTS);

  /* point in time: each "before" is the closed form over the same partition's
   * earlier events of the item (nothing later, nothing from elsewhere) */
  int bad_before = 0, leaks_global = 0;
  for (int p = 0; p < N_PARTS; p++)
    for (int k = 0; k < N_PER_PART; k++) {
      mtld_item_features_t f;
      bad_before +=
          mtld_features_item_decode(&def, &f, bp[0][p][k].item, bp[0][p][k].item_len) != MTLD_OK ||
          !item_matches(&def, p, p, k, ev[p][k].item_id, &f);
      /* global view, partition after partition (the one furthest ahead in
       * event time first): the others' items see its whole, later, history */
      if (mtld_features_item_decode(&gdef, &f, bg[1][p][k].item, bg[1][p][k].item_len) == MTLD_OK &&
          f.last_time_ms > ev[p][k].time_ms + 3600000)
        leaks_global++;
    }
  CHECK(bad_before == 0);
  CHECK(leaks_global > 0);

  for (int i = 0; i < 3; i++) {
    /* every committed (partition, item) view: closed form, key order */
    part_walk_t w = {&def, 0, 0, 0, 0, 0};
    mtld_store_foreach_item_part(sp[i], part_walk_cb, &w);
    int pairs = 0;
    for (int p = 0; p < N_PARTS; p++)
      for (uint64_t it = 1000; it < 1000 + N_ITEMS; it++) {
        int seen = 0;
        for (int k = 0; k < N_PER_PART && !seen; k++) seen = ev[p][k].item_id == it;
        pairs += seen;
      }
    CHECK(w.n == pairs && w.bad == 0 && w.out_of_order == 0);
    CHECK(mtld_store_last_error(sp[i])[0] == 0);

    /* global view: closed form over all partitions, and byte-equal to the
     * store that keeps no partition views (users too) */
    part_walk_t g = {&def, 0, 0, 0, 0, 0};
    mtld_store_foreach_item(sp[i], global_walk_cb, &g);
    CHECK(g.n == N_ITEMS && g.bad == 0);
    digest_t a = digest(sp[i], MTLD_CF_ITEM), b = digest(sg[i], MTLD_CF_ITEM);
    CHECK(a.n == N_ITEMS && a.n == b.n && a.hash == b.hash);
    a = digest(sp[i], MTLD_CF_USER);
    b = digest(sg[i], MTLD_CF_USER);
    CHECK(a.n > 0 && a.n == b.n && a.hash == b.hash);
    CHECK(digest(sg[i], MTLD_CF_ITEM_PART).n == 0);
    /* and the partition views themselves: byte-equal across interleavings */
    a = digest(sp[0], MTLD_CF_ITEM_PART);
    b = digest(sp[i], MTLD_CF_ITEM_PART);
    CHECK(a.n == (size_t)pairs && a.hash == b.hash);
  }

  /* the views of one item, over partitions (one of them topic #1) */
  mtld_item_features_t f;
  for (uint64_t it = 1000; it < 1000 + N_ITEMS; it++) {
    part_walk_t w = {&def, 0, 0, 0, 0, 0};
    mtld_store_foreach_item_part_of(sp[0], it, part_walk_cb, &w);
    int expect = 0;
    for (int p = 0; p < N_PARTS; p++) {
      int seen = 0;
      for (int k = 0; k < N_PER_PART && !seen; k++) seen = ev[p][k].item_id == it;
      expect += seen;
      CHECK((mtld_store_get_item_part(sp[0], part_no[p], it, &f) == MTLD_OK) == seen);
      CHECK(mtld_store_get_item_part(sg[0], part_no[p], it, &f) == MTLD_ERR_NOTFOUND);
    }
    CHECK(w.n == expect && w.bad == 0 && w.out_of_order == 0);
    w.n = 0;
    mtld_store_foreach_item_part_of(sg[0], it, part_walk_cb, &w);
    CHECK(w.n == 0);
  }
  part_walk_t w = {&def, 0, 0, 0, 0, 0};
  mtld_store_foreach_item_part_of(sp[0], 999, part_walk_cb, &w); /* unknown item */
  CHECK(w.n == 0);
  CHECK(mtld_store_get_item_part(sp[0], 7, 1000, &f) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_store_get_item_part(sp[0], -1, 1000, &f) == MTLD_ERR_NOTFOUND);

  for (int i = 0; i < 3; i++) {
    mtld_store_close(sp[i]);
    mtld_store_close(sg[i]);
  }
}

/* Read-your-writes of the partition views inside a batch, rollback, raw
 * get, refused writes, a negative partition. */
static void test_batch(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_store_t *st = NULL;
  CHECK(mtld_store_open(&st, db_path("batch"), &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  mtld_event_t e;
  memset(&e, 0, sizeof e);
  e.user_id = 1;
  e.item_id = 77;
  e.type = MTLD_EV_IMPRESSION;
  mtld_item_features_t ib, f;
  for (int i = 0; i < 4; i++) { /* partition 5: 4 events, partition 6: 1 */
    e.event_id = (uint64_t)i + 1;
    e.time_ms = T0 + i * 1000;
    CHECK(mtld_store_apply_part(st, &e, 5, NULL, &ib) == MTLD_OK);
    CHECK(ib.n_events == (uint64_t)i);
  }
  e.event_id = 10;
  e.user_id = 2;
  CHECK(mtld_store_apply_part(st, &e, 6, NULL, &ib) == MTLD_OK);
  CHECK(ib.n_events == 0); /* partition 6 never saw item 77 */
  CHECK(mtld_store_get_item_part(st, 5, 77, &f) == MTLD_OK && f.n_events == 4);
  CHECK(mtld_store_get_item_part(st, 6, 77, &f) == MTLD_OK && f.n_events == 1);
  CHECK(mtld_store_get_item(st, 77, &f) == MTLD_OK && f.n_events == 5);

  uint8_t key[12] = {0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 77};
  void *v = NULL;
  size_t vlen = 0;
  CHECK(mtld_store_get(st, MTLD_CF_ITEM_PART, key, 12, &v, &vlen) == MTLD_OK);
  CHECK(v && mtld_features_item_decode(&def, &f, v, vlen) == MTLD_OK && f.n_events == 4);
  free(v);
  CHECK(mtld_store_put(st, MTLD_CF_ITEM_PART, key, 12, "x", 1) == MTLD_ERR_INVALID);
  CHECK(mtld_store_delete(st, MTLD_CF_ITEM_PART, key, 12) == MTLD_ERR_INVALID);
  CHECK(mtld_store_apply_part(st, &e, -3, NULL, NULL) == MTLD_ERR_INVALID);

  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  e.event_id = 11;
  CHECK(mtld_store_apply_part(st, &e, 6, NULL, &ib) == MTLD_OK && ib.n_events == 1);
  CHECK(mtld_store_get_item_part(st, 6, 77, &f) == MTLD_OK && f.n_events == 2);
  mtld_store_rollback(st);
  CHECK(mtld_store_get_item_part(st, 6, 77, &f) == MTLD_OK && f.n_events == 1);
  mtld_store_close(st);

  /* mtld_store_apply is partition 0 */
  st = NULL;
  CHECK(mtld_store_open(&st, db_path("batch"), &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  e.event_id = 12;
  CHECK(mtld_store_apply(st, &e, NULL, &ib) == MTLD_OK && ib.n_events == 0);
  CHECK(mtld_store_apply(st, &e, NULL, &ib) == MTLD_OK && ib.n_events == 1);
  CHECK(mtld_store_get_item_part(st, 0, 77, &f) == MTLD_OK && f.n_events == 2);
  mtld_store_close(st);
}

/* A store is refused with the other view, with an older definitions format,
 * and (read-only) without the item_part column family. */
static void test_schema(void) {
  mtld_feature_def_t def, gdef;
  mtld_feature_def_default(&def);
  gdef = def;
  gdef.item_view = MTLD_ITEM_VIEW_GLOBAL;
  CHECK(mtld_feature_def_hash(&def) != mtld_feature_def_hash(&gdef));
  mtld_store_t *st = NULL;
  CHECK(mtld_store_open(&st, db_path("schema"), &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  mtld_store_close(st);
  st = NULL;
  CHECK(mtld_store_open(&st, db_path("schema"), &gdef, 0, errbuf, sizeof errbuf) ==
        MTLD_ERR_SCHEMA);
  CHECK(st == NULL && strstr(errbuf, "item_view=partition") && strstr(errbuf, "item_view=global"));
  CHECK(mtld_store_open_readonly(&st, db_path("schema"), errbuf, sizeof errbuf) == MTLD_OK);
  if (st) CHECK(mtld_store_def(st)->item_view == MTLD_ITEM_VIEW_PARTITION);
  mtld_store_close(st);

  /* a version-1 definitions record (before item_view) */
  st = NULL;
  CHECK(mtld_store_open(&st, db_path("schema-old"), &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  uint8_t enc[MTLD_FEATURE_DEF_ENC_MAX];
  size_t n = mtld_feature_def_encode(&def, enc, sizeof enc);
  CHECK(n > 1 && enc[0] == MTLD_FEATURE_DEF_ENC_VERSION);
  enc[0] = 1;
  CHECK(mtld_store_put(st, MTLD_CF_META, "feature_def", 11, enc, n - 1) == MTLD_OK);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  mtld_store_close(st);
  st = NULL;
  CHECK(mtld_store_open(&st, db_path("schema-old"), &def, 0, errbuf, sizeof errbuf) ==
        MTLD_ERR_SCHEMA);
  CHECK(strstr(errbuf, "another mtld version") != NULL);

  /* a RocksDB without the item_part column family, as an older mtld made it */
  static const char *const old_cfs[] = {"default", "user", "item", "pending", "meta"};
  const rocksdb_options_t *cf_opts[5];
  rocksdb_column_family_handle_t *h[5];
  rocksdb_options_t *o = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(o, 1);
  rocksdb_options_set_create_missing_column_families(o, 1);
  for (int i = 0; i < 5; i++) cf_opts[i] = o;
  char *e = NULL;
  rocksdb_t *db =
      rocksdb_open_column_families(o, db_path("schema-nocf"), 5, old_cfs, cf_opts, h, &e);
  CHECK(db && !e);
  if (db) {
    for (int i = 0; i < 5; i++) rocksdb_column_family_handle_destroy(h[i]);
    rocksdb_close(db);
  }
  rocksdb_free(e);
  rocksdb_options_destroy(o);
  st = NULL;
  CHECK(mtld_store_open_readonly(&st, db_path("schema-nocf"), errbuf, sizeof errbuf) ==
        MTLD_ERR_SCHEMA);
  CHECK(st == NULL && strstr(errbuf, "item_part") != NULL);
}

static void count_key(void *ctx, const char *key, int reloadable) {
  if (strcmp(key, "features.item_view") == 0 && !reloadable) (*(int *)ctx)++;
}

static mtld_config_t cfg, cfg2; /* big: keep them off the stack */

#define MINIMAL                                                                                    \
  "source = { topics = [\"events\"]; };\n"                                                         \
  "kafka = { bootstrap_servers = \"127.0.0.1:9092\"; };\n"

static void test_config_key(void) {
  CHECK(mtld_config_load_string(&cfg, MINIMAL, "t.conf", errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(cfg.features.item_view == MTLD_ITEM_VIEW_PARTITION); /* the default */
  CHECK(mtld_config_load_string(&cfg2, MINIMAL "features = { item_view = \"global\"; };\n",
                                "t.conf", errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(cfg2.features.item_view == MTLD_ITEM_VIEW_GLOBAL);
  int n = 0;
  CHECK(mtld_config_diff(&cfg, &cfg2, count_key, &n) == 1 && n == 1); /* not reloadable */

  /* printed and loaded again: the same */
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return;
  mtld_config_print(&cfg2, f);
  fclose(f);
  CHECK(strstr(text, "item_view = \"global\"") != NULL);
  CHECK(mtld_config_load_string(&cfg, text, "printed", errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(cfg.features.item_view == MTLD_ITEM_VIEW_GLOBAL);
  free(text);

  CHECK(mtld_config_load_string(&cfg, MINIMAL "features = { item_view = \"both\"; };\n", "t.conf",
                                errbuf, sizeof errbuf) == MTLD_ERR_CONFIG);
  CHECK(strstr(errbuf, "t.conf:3: features.item_view: must be \"partition\" or \"global\"") !=
        NULL);
  CHECK(mtld_config_load_string(&cfg, MINIMAL "features = { item_view = 1; };\n", "t.conf", errbuf,
                                sizeof errbuf) == MTLD_ERR_CONFIG);
  CHECK(strstr(errbuf, "features.item_view: expected a string") != NULL);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/mtld-test-itemview-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  make_events();
  test_interleavings();
  test_batch();
  test_schema();
  test_config_key();
  nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  return CHECK_DONE();
}
