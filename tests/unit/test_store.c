/* test_store.c - the RocksDB feature store: batches (read-your-writes,
 * point-in-time "before" values, rollback, commit), reopen, offsets, raw
 * staged access, the schema check, definitions read back from the DB,
 * read-only opens, and a crash (a child process exits without closing) that
 * keeps exactly the committed batches; a damaged table file found by
 * mtld_store_verify (naming the file) and a failed read that stops the
 * batch's commit (sticky).  Every store lives in a mkdtemp
 * directory under /tmp, removed at the end. */
#define _GNU_SOURCE
#include <dirent.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "features/store.h"
#include "tests/unit/check.h"

#define T0 1500000000000LL

static char root[64];
static char errbuf[1024];

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  return remove(path);
}

static void rm_rf(const char *path) {
  nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *db_path(const char *name) {
  static char buf[4][128];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", root, name);
  return buf[k];
}

static mtld_event_t random_event(uint64_t id, int n_users, int n_items, int64_t t) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = id;
  ev.user_id = 1 + rng() % n_users;
  ev.item_id = 1000 + rng() % n_items;
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

static int user_eq(const mtld_user_features_t *a, const mtld_user_features_t *b, int nh) {
  uint8_t x[MTLD_FEATURES_USER_ENC_MAX], y[MTLD_FEATURES_USER_ENC_MAX];
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  def.n_half_lives = nh;
  size_t nx = mtld_features_user_encode(&def, a, x, sizeof x);
  size_t ny = mtld_features_user_encode(&def, b, y, sizeof y);
  return nx == ny && memcmp(x, y, nx) == 0;
}

static int item_eq(const mtld_item_features_t *a, const mtld_item_features_t *b, int nh) {
  uint8_t x[MTLD_FEATURES_ITEM_ENC_MAX], y[MTLD_FEATURES_ITEM_ENC_MAX];
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  def.n_half_lives = nh;
  size_t nx = mtld_features_item_encode(&def, a, x, sizeof x);
  size_t ny = mtld_features_item_encode(&def, b, y, sizeof y);
  return nx == ny && memcmp(x, y, nx) == 0;
}

enum { N_USERS = 20, N_ITEMS = 30 };

/* Reference state kept with the pure functions. */
typedef struct {
  mtld_user_features_t users[N_USERS + 1];
  mtld_item_features_t items[N_ITEMS];
} ref_t;

/* Many events over several batches, mirrored in a reference; the store's
 * "before" values, staged reads and state after reopen all equal it. */
static void test_apply_commit_reopen(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  def.seq_len = 8;
  const char *path = db_path("main");
  mtld_store_t *st = NULL;
  CHECK(mtld_store_open(&st, path, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  ref_t *ref = calloc(1, sizeof *ref);
  mtld_user_features_t *ub = malloc(sizeof *ub), *got = malloc(sizeof *got);
  mtld_item_features_t ib, gi;
  int bad_before = 0, bad_staged = 0;
  uint64_t id = 1;
  for (int batch = 0; batch < 5; batch++) {
    for (int i = 0; i < 150; i++) {
      /* mostly in order, some late events */
      int64_t t = T0 + (int64_t)id * 30000 - (rng() % 5 == 0 ? (int64_t)(rng() % 3600000) : 0);
      mtld_event_t ev = random_event(id++, N_USERS, N_ITEMS, t);
      mtld_user_features_t *ru = &ref->users[ev.user_id];
      mtld_item_features_t *ri = &ref->items[ev.item_id - 1000];
      CHECK(mtld_store_apply(st, &ev, ub, &ib) == MTLD_OK);
      bad_before += !user_eq(ub, ru, 3) || !item_eq(&ib, ri, 3);
      mtld_features_user_apply(&def, ru, &ev);
      mtld_features_item_apply(&def, ri, &ev);
      /* read-your-writes: the batch's own state */
      CHECK(mtld_store_get_user(st, ev.user_id, got) == MTLD_OK);
      bad_staged += !user_eq(got, ru, 3);
    }
    CHECK(mtld_store_batch_events(st) == 150);
    CHECK(mtld_store_batch_bytes(st) > 0);
    mtld_store_set_offset(st, "events", 0, (int64_t)id, T0 + (int64_t)id * 30000);
    CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
    CHECK(mtld_store_batch_events(st) == 0);
  }
  CHECK(bad_before == 0);
  CHECK(bad_staged == 0);
  CHECK(mtld_store_size_bytes(st) > 0);
  mtld_store_close(st);

  st = NULL;
  CHECK(mtld_store_open(&st, path, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  int bad = 0, n_users = 0;
  for (uint64_t u = 1; u <= N_USERS; u++) {
    mtld_status_t rc = mtld_store_get_user(st, u, got);
    if (ref->users[u].n_events == 0) {
      bad += rc != MTLD_ERR_NOTFOUND;
    } else {
      n_users++;
      bad += rc != MTLD_OK || !user_eq(got, &ref->users[u], 3);
    }
  }
  for (int i = 0; i < N_ITEMS; i++) {
    mtld_status_t rc = mtld_store_get_item(st, 1000 + i, &gi);
    if (ref->items[i].n_events)
      bad += rc != MTLD_OK || !item_eq(&gi, &ref->items[i], 3);
    else
      bad += rc != MTLD_ERR_NOTFOUND;
  }
  CHECK(bad == 0);
  CHECK(n_users > 10);
  CHECK(mtld_store_get_user(st, 999999, got) == MTLD_ERR_NOTFOUND);
  int64_t next = 0, maxt = 0;
  CHECK(mtld_store_get_offset(st, "events", 0, &next, &maxt) == MTLD_OK);
  CHECK(next == (int64_t)id && maxt == T0 + (int64_t)id * 30000);
  mtld_store_close(st);
  free(ref);
  free(ub);
  free(got);
}

static int count_cb(void *ctx, uint64_t id, const mtld_user_features_t *f) {
  int *n = ctx;
  (*n)++;
  return 0;
}

/* Read-your-writes and "before" values in one batch; rollback; a
 * loaded-but-failed entity is not written. */
static void test_batch_semantics(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_store_t *st = NULL;
  CHECK(mtld_store_open(&st, db_path("batch"), &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  mtld_user_features_t *b = malloc(sizeof *b), *g = malloc(sizeof *g);
  mtld_item_features_t ib;
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = 1;
  ev.user_id = 42;
  ev.item_id = 7;
  ev.type = MTLD_EV_IMPRESSION;
  ev.time_ms = T0;
  CHECK(mtld_store_apply(st, &ev, b, &ib) == MTLD_OK);
  CHECK(b->n_events == 0 && ib.n_events == 0); /* before the first event: nothing */
  ev.event_id = 2;
  ev.type = MTLD_EV_CLICK;
  ev.time_ms = T0 + 1000;
  CHECK(mtld_store_apply(st, &ev, b, &ib) == MTLD_OK);
  /* the click sees the impression, not itself (no label leak) */
  CHECK(b->n_events == 1 && b->decayed[MTLD_EV_IMPRESSION - 1][0] == 1.0);
  CHECK(b->decayed[MTLD_EV_CLICK - 1][0] == 0 && b->seq_len == 0);
  CHECK(ib.n_events == 1 && ib.decayed[MTLD_EV_CLICK - 1][0] == 0);
  CHECK(mtld_store_get_user(st, 42, g) == MTLD_OK && g->n_events == 2 && g->seq_len == 1);
  CHECK(mtld_store_batch_events(st) == 2);
  /* an unknown type is refused and stages nothing */
  ev.type = 9;
  CHECK(mtld_store_apply(st, &ev, NULL, NULL) == MTLD_ERR_INVALID);
  CHECK(mtld_store_batch_events(st) == 2);
  /* raw get on the user cf sees the staged encoding */
  uint8_t key[8] = {0, 0, 0, 0, 0, 0, 0, 42};
  void *v = NULL;
  size_t vlen = 0;
  CHECK(mtld_store_get(st, MTLD_CF_USER, key, 8, &v, &vlen) == MTLD_OK);
  mtld_user_features_t *dec = malloc(sizeof *dec);
  CHECK(v && mtld_features_user_decode(&def, dec, v, vlen) == MTLD_OK && dec->n_events == 2);
  free(v);
  free(dec);

  mtld_store_rollback(st);
  CHECK(mtld_store_batch_events(st) == 0);
  CHECK(mtld_store_get_user(st, 42, g) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_store_get_item(st, 7, &ib) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK); /* empty */
  int n = 0;
  mtld_store_foreach_user(st, count_cb, &n);
  CHECK(n == 0);

  /* commit one event, stage another, roll back: the committed value stays */
  ev.type = MTLD_EV_CLICK;
  CHECK(mtld_store_apply(st, &ev, NULL, NULL) == MTLD_OK);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  ev.event_id = 3;
  ev.time_ms = T0 + 5000;
  CHECK(mtld_store_apply(st, &ev, b, NULL) == MTLD_OK);
  CHECK(b->n_events == 1); /* before = the committed state */
  mtld_store_rollback(st);
  CHECK(mtld_store_get_user(st, 42, g) == MTLD_OK && g->n_events == 1 &&
        g->last_time_ms == T0 + 1000);
  n = 0;
  mtld_store_foreach_user(st, count_cb, &n);
  CHECK(n == 1);
  mtld_store_close(st);
  free(b);
  free(g);
}

typedef struct {
  int n;
  char topics[8][32];
  int32_t parts[8];
  int64_t next[8], maxt[8];
} offsets_t;

static int offset_cb(void *ctx, const char *topic, int32_t partition, int64_t next_offset,
                     int64_t max_time_ms) {
  offsets_t *o = ctx;
  if (o->n < 8) {
    snprintf(o->topics[o->n], sizeof o->topics[0], "%s", topic);
    o->parts[o->n] = partition;
    o->next[o->n] = next_offset;
    o->maxt[o->n] = max_time_ms;
  }
  o->n++;
  return 0;
}

static void test_offsets(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_store_t *st = NULL;
  const char *path = db_path("offsets");
  CHECK(mtld_store_open(&st, path, &def, 1, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  int64_t next = -1, maxt = -1;
  CHECK(mtld_store_get_offset(st, "a.events", 3, &next, &maxt) == MTLD_ERR_NOTFOUND);
  mtld_store_set_offset(st, "a.events", 3, 100, T0);
  mtld_store_set_offset(st, "a.events", 12, 7, T0 + 1);
  mtld_store_set_offset(st, "b-events", 0, 5, -1);
  /* staged: not visible to get_offset (DB only) */
  CHECK(mtld_store_get_offset(st, "a.events", 3, &next, &maxt) == MTLD_ERR_NOTFOUND);
  mtld_store_set_offset(st, "a.events", 3, 150, T0 + 9); /* the last one wins */
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_get_offset(st, "a.events", 3, &next, &maxt) == MTLD_OK);
  CHECK(next == 150 && maxt == T0 + 9);
  CHECK(mtld_store_get_offset(st, "b-events", 0, &next, &maxt) == MTLD_OK);
  CHECK(next == 5 && maxt == -1);
  CHECK(mtld_store_get_offset(st, "a.events", 4, &next, &maxt) == MTLD_ERR_NOTFOUND);
  offsets_t o;
  memset(&o, 0, sizeof o);
  mtld_store_foreach_offset(st, offset_cb, &o);
  CHECK(o.n == 3);
  int found12 = 0;
  for (int i = 0; i < o.n && i < 8; i++)
    if (strcmp(o.topics[i], "a.events") == 0 && o.parts[i] == 12)
      found12 = o.next[i] == 7 && o.maxt[i] == T0 + 1;
  CHECK(found12);
  mtld_store_close(st);
  st = NULL;
  CHECK(mtld_store_open(&st, path, &def, 1, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  CHECK(mtld_store_get_offset(st, "a.events", 3, &next, &maxt) == MTLD_OK && next == 150);
  mtld_store_close(st);
}

static int raw_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  int *n = ctx;
  (*n)++;
  return 0;
}

static void test_raw(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_store_t *st = NULL;
  const char *path = db_path("raw");
  CHECK(mtld_store_open(&st, path, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  void *v = NULL;
  size_t vlen = 0;
  CHECK(mtld_store_get(st, MTLD_CF_PENDING, "p1", 2, &v, &vlen) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_store_put(st, MTLD_CF_PENDING, "p1", 2, "hello", 5) == MTLD_OK);
  CHECK(mtld_store_put(st, MTLD_CF_PENDING, "p2", 2, "", 0) == MTLD_OK);  /* empty value */
  CHECK(mtld_store_put(st, MTLD_CF_META, "p1", 2, "meta", 4) == MTLD_OK); /* other cf */
  CHECK(mtld_store_get(st, MTLD_CF_PENDING, "p1", 2, &v, &vlen) == MTLD_OK);
  CHECK(vlen == 5 && v && memcmp(v, "hello", 5) == 0);
  free(v);
  CHECK(mtld_store_put(st, MTLD_CF_PENDING, "p1", 2, "world!", 6) == MTLD_OK); /* overwrite */
  CHECK(mtld_store_get(st, MTLD_CF_PENDING, "p1", 2, &v, &vlen) == MTLD_OK);
  CHECK(vlen == 6 && memcmp(v, "world!", 6) == 0);
  free(v);
  /* raw writes to the feature column families are refused */
  CHECK(mtld_store_put(st, MTLD_CF_USER, "12345678", 8, "x", 1) == MTLD_ERR_INVALID);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_get(st, MTLD_CF_PENDING, "p2", 2, &v, &vlen) == MTLD_OK && vlen == 0);
  free(v);
  CHECK(mtld_store_get(st, MTLD_CF_META, "p1", 2, &v, &vlen) == MTLD_OK && vlen == 4);
  free(v);
  /* staged delete hides the committed value; rollback brings it back */
  CHECK(mtld_store_delete(st, MTLD_CF_PENDING, "p1", 2) == MTLD_OK);
  CHECK(mtld_store_get(st, MTLD_CF_PENDING, "p1", 2, &v, &vlen) == MTLD_ERR_NOTFOUND);
  mtld_store_rollback(st);
  CHECK(mtld_store_get(st, MTLD_CF_PENDING, "p1", 2, &v, &vlen) == MTLD_OK && vlen == 6);
  free(v);
  /* delete then put again in one batch: the put wins */
  CHECK(mtld_store_delete(st, MTLD_CF_PENDING, "p2", 2) == MTLD_OK);
  CHECK(mtld_store_put(st, MTLD_CF_PENDING, "p3", 2, "3", 1) == MTLD_OK);
  CHECK(mtld_store_delete(st, MTLD_CF_PENDING, "p3", 2) == MTLD_OK);
  CHECK(mtld_store_put(st, MTLD_CF_PENDING, "p3", 2, "33", 2) == MTLD_OK);
  CHECK(mtld_store_delete(st, MTLD_CF_PENDING, "p1", 2) == MTLD_OK);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  mtld_store_close(st);
  st = NULL;
  CHECK(mtld_store_open(&st, path, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  CHECK(mtld_store_get(st, MTLD_CF_PENDING, "p1", 2, &v, &vlen) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_store_get(st, MTLD_CF_PENDING, "p2", 2, &v, &vlen) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_store_get(st, MTLD_CF_PENDING, "p3", 2, &v, &vlen) == MTLD_OK && vlen == 2 &&
        memcmp(v, "33", 2) == 0);
  free(v);
  /* prefix iteration sees committed keys only */
  CHECK(mtld_store_put(st, MTLD_CF_PENDING, "p4", 2, "4", 1) == MTLD_OK);
  CHECK(mtld_store_put(st, MTLD_CF_PENDING, "q1", 2, "4", 1) == MTLD_OK);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_put(st, MTLD_CF_PENDING, "p5", 2, "5", 1) == MTLD_OK);
  int n = 0;
  mtld_store_foreach_raw(st, MTLD_CF_PENDING, "p", 1, raw_cb, &n);
  CHECK(n == 2); /* p3, p4 */
  n = 0;
  mtld_store_foreach_raw(st, MTLD_CF_PENDING, NULL, 0, raw_cb, &n);
  CHECK(n == 3);
  mtld_store_close(st); /* p5 is lost */
  st = NULL;
  CHECK(mtld_store_open(&st, path, NULL, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  CHECK(mtld_store_get(st, MTLD_CF_PENDING, "p5", 2, &v, &vlen) == MTLD_ERR_NOTFOUND);

  /* the seen column family: raw keys, and deletion of every key below one */
  CHECK(mtld_store_put(st, MTLD_CF_SEEN, "a1", 2, "", 0) == MTLD_OK);
  CHECK(mtld_store_put(st, MTLD_CF_SEEN, "b1", 2, "", 0) == MTLD_OK);
  CHECK(mtld_store_put(st, MTLD_CF_SEEN, "c1", 2, "", 0) == MTLD_OK);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_delete_below(st, MTLD_CF_PENDING, "b", 1) == MTLD_ERR_INVALID);
  CHECK(mtld_store_delete_below(st, MTLD_CF_SEEN, "b2", 2) == MTLD_OK);
  CHECK(mtld_store_put(st, MTLD_CF_SEEN, "d1", 2, "", 0) == MTLD_OK);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_get(st, MTLD_CF_SEEN, "a1", 2, &v, &vlen) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_store_get(st, MTLD_CF_SEEN, "b1", 2, &v, &vlen) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_store_get(st, MTLD_CF_SEEN, "c1", 2, &v, &vlen) == MTLD_OK);
  free(v);
  CHECK(mtld_store_get(st, MTLD_CF_SEEN, "d1", 2, &v, &vlen) == MTLD_OK);
  free(v);
  /* a rolled-back batch drops its staged range too */
  CHECK(mtld_store_delete_below(st, MTLD_CF_SEEN, "z", 1) == MTLD_OK);
  mtld_store_rollback(st);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_get(st, MTLD_CF_SEEN, "c1", 2, &v, &vlen) == MTLD_OK);
  free(v);
  mtld_store_close(st);
}

static void one_event(mtld_store_t *st, uint64_t id, uint64_t user, int64_t t) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = id;
  ev.user_id = user;
  ev.item_id = 5;
  ev.type = MTLD_EV_CLICK;
  ev.time_ms = t;
  CHECK(mtld_store_apply(st, &ev, NULL, NULL) == MTLD_OK);
}

static void test_schema(void) {
  mtld_feature_def_t def, other;
  mtld_feature_def_default(&def);
  def.seq_len = 20;
  const char *path = db_path("schema");
  mtld_store_t *st = NULL;
  CHECK(mtld_store_open(&st, path, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  one_event(st, 1, 9, T0);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  mtld_store_close(st);

  other = def;
  other.half_life_s[1] = 43200;
  st = NULL;
  errbuf[0] = 0;
  CHECK(mtld_store_open(&st, path, &other, 0, errbuf, sizeof errbuf) == MTLD_ERR_SCHEMA);
  CHECK(st == NULL);
  CHECK(strstr(errbuf, "other feature definitions") != NULL);
  CHECK(strstr(errbuf, "store.path") != NULL);
  other = def;
  other.ctr_prior = 0.1;
  CHECK(mtld_store_open(&st, path, &other, 0, errbuf, sizeof errbuf) == MTLD_ERR_SCHEMA);
  /* invalid definitions are refused before touching the DB */
  other = def;
  other.n_half_lives = 0;
  CHECK(mtld_store_open(&st, db_path("never"), &other, 0, errbuf, sizeof errbuf) ==
        MTLD_ERR_INVALID);
  struct stat sb;
  CHECK(stat(db_path("never"), &sb) != 0);

  /* def == NULL: the stored definitions */
  CHECK(mtld_store_open(&st, path, NULL, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  CHECK(mtld_feature_def_hash(mtld_store_def(st)) == mtld_feature_def_hash(&def));
  CHECK(mtld_store_def(st)->seq_len == 20);
  mtld_user_features_t *u = malloc(sizeof *u);
  CHECK(mtld_store_get_user(st, 9, u) == MTLD_OK && u->n_events == 1);
  mtld_store_close(st);
  /* def == NULL never creates a store */
  st = NULL;
  CHECK(mtld_store_open(&st, db_path("absent"), NULL, 0, errbuf, sizeof errbuf) ==
        MTLD_ERR_NOTFOUND);
  CHECK(st == NULL && stat(db_path("absent"), &sb) != 0);
  CHECK(mtld_store_open_readonly(&st, db_path("absent"), errbuf, sizeof errbuf) ==
        MTLD_ERR_NOTFOUND);
  free(u);
}

/* A read-only open beside a writer sees the state as of its open and
 * refuses writes. */
/* A new store whose parent directories do not exist yet: they are created
 * (store.path = "/srv/mtld/run1/store" needs no mkdir first). */
static void test_missing_parents(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_store_t *st = NULL;
  char path[160], current[192];
  snprintf(path, sizeof path, "%s/run1/data/store", root);
  snprintf(current, sizeof current, "%s/CURRENT", path);
  CHECK(mtld_store_open(&st, path, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  mtld_store_close(st);
  struct stat sb;
  CHECK(stat(current, &sb) == 0);
}

static void test_readonly(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  const char *path = db_path("ro");
  mtld_store_t *st = NULL, *ro = NULL;
  CHECK(mtld_store_open(&st, path, &def, 1, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  one_event(st, 1, 1, T0);
  mtld_store_set_offset(st, "t", 0, 1, T0);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_open_readonly(&ro, path, errbuf, sizeof errbuf) == MTLD_OK);
  if (!ro) {
    fprintf(stderr, "readonly open: %s\n", errbuf);
    mtld_store_close(st);
    return;
  }
  CHECK(mtld_feature_def_hash(mtld_store_def(ro)) == mtld_feature_def_hash(&def));
  one_event(st, 2, 2, T0 + 1);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  mtld_user_features_t *u = malloc(sizeof *u);
  CHECK(mtld_store_get_user(ro, 1, u) == MTLD_OK);
  CHECK(mtld_store_get_user(ro, 2, u) == MTLD_ERR_NOTFOUND); /* after its open */
  int64_t next, maxt;
  CHECK(mtld_store_get_offset(ro, "t", 0, &next, &maxt) == MTLD_OK && next == 1);
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.type = MTLD_EV_CLICK;
  CHECK(mtld_store_apply(ro, &ev, NULL, NULL) == MTLD_ERR_INVALID);
  CHECK(mtld_store_put(ro, MTLD_CF_META, "k", 1, "v", 1) == MTLD_ERR_INVALID);
  CHECK(mtld_store_commit(ro, errbuf, sizeof errbuf) == MTLD_ERR_INVALID);
  mtld_store_close(ro);
  /* the writer is unaffected */
  one_event(st, 3, 3, T0 + 2);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  mtld_store_close(st);
  ro = NULL;
  CHECK(mtld_store_open_readonly(&ro, path, errbuf, sizeof errbuf) == MTLD_OK);
  if (ro) {
    CHECK(mtld_store_get_user(ro, 2, u) == MTLD_OK && mtld_store_get_user(ro, 3, u) == MTLD_OK);
    mtld_store_close(ro);
  }
  free(u);
}

/* Crash: a child commits one batch (fsynced), stages another and exits
 * without closing; the parent finds exactly the first. */
static void test_crash(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  const char *path = db_path("crash");
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    mtld_store_t *st = NULL;
    if (mtld_store_open(&st, path, &def, 1, errbuf, sizeof errbuf) != MTLD_OK) _exit(3);
    mtld_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.item_id = 5;
    ev.type = MTLD_EV_CLICK;
    for (int i = 0; i < 10; i++) {
      ev.event_id = i + 1;
      ev.user_id = 1 + i % 3;
      ev.time_ms = T0 + i;
      if (mtld_store_apply(st, &ev, NULL, NULL) != MTLD_OK) _exit(4);
    }
    mtld_store_set_offset(st, "t", 0, 10, T0 + 9);
    if (mtld_store_commit(st, errbuf, sizeof errbuf) != MTLD_OK) _exit(5);
    for (int i = 10; i < 20; i++) {
      ev.event_id = i + 1;
      ev.user_id = 1 + i % 5;
      ev.time_ms = T0 + i;
      if (mtld_store_apply(st, &ev, NULL, NULL) != MTLD_OK) _exit(4);
    }
    mtld_store_set_offset(st, "t", 0, 20, T0 + 19);
    _exit(0); /* no close, no commit */
  }
  int status = -1;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  mtld_store_t *st = NULL;
  CHECK(mtld_store_open(&st, path, NULL, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  int64_t next = 0, maxt = 0;
  CHECK(mtld_store_get_offset(st, "t", 0, &next, &maxt) == MTLD_OK && next == 10);
  mtld_user_features_t *u = malloc(sizeof *u);
  CHECK(mtld_store_get_user(st, 1, u) == MTLD_OK && u->n_events == 4);
  CHECK(mtld_store_get_user(st, 4, u) == MTLD_ERR_NOTFOUND);
  mtld_item_features_t it;
  CHECK(mtld_store_get_item(st, 5, &it) == MTLD_OK && it.n_events == 10);
  mtld_store_close(st);
  free(u);
}

/* Two stores fed the same events in different batchings hold byte-equal
 * values (deterministic encoding, order-free commit). */
typedef struct {
  size_t n;
  uint64_t hash;
} digest_t;

static int digest_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  digest_t *d = ctx;
  const uint8_t *p = key;
  for (size_t i = 0; i < klen; i++) d->hash = (d->hash ^ p[i]) * 1099511628211ull;
  p = val;
  for (size_t i = 0; i < vlen; i++) d->hash = (d->hash ^ p[i]) * 1099511628211ull;
  d->n++;
  return 0;
}

static void test_deterministic(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_store_t *a = NULL, *b = NULL;
  CHECK(mtld_store_open(&a, db_path("det-a"), &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_open(&b, db_path("det-b"), &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!a || !b) return;
  for (int i = 0; i < 500; i++) {
    mtld_event_t ev = random_event(i + 1, 50, 80, T0 + i * 1000);
    CHECK(mtld_store_apply(a, &ev, NULL, NULL) == MTLD_OK);
    CHECK(mtld_store_apply(b, &ev, NULL, NULL) == MTLD_OK);
    if (i % 100 == 99) CHECK(mtld_store_commit(a, errbuf, sizeof errbuf) == MTLD_OK);
    if (i % 37 == 36) CHECK(mtld_store_commit(b, errbuf, sizeof errbuf) == MTLD_OK);
  }
  CHECK(mtld_store_commit(a, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(mtld_store_commit(b, errbuf, sizeof errbuf) == MTLD_OK);
  for (int cf = MTLD_CF_USER; cf <= MTLD_CF_ITEM; cf++) {
    digest_t da = {0, 14695981039346656037ull}, db = {0, 14695981039346656037ull};
    mtld_store_foreach_raw(a, (mtld_cf_t)cf, NULL, 0, digest_cb, &da);
    mtld_store_foreach_raw(b, (mtld_cf_t)cf, NULL, 0, digest_cb, &db);
    CHECK(da.n > 20 && da.n == db.n && da.hash == db.hash);
  }
  mtld_store_close(a);
  mtld_store_close(b);
}

/* Flips 16 bytes in the middle of the largest .sst of dir; its name into
 * name (basename).  0 on success. */
static int damage_largest_sst(const char *dir, char *name, size_t namelen) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *de;
  off_t best = 0;
  char path[512];
  name[0] = 0;
  while ((de = readdir(d))) {
    size_t n = strlen(de->d_name);
    if (n < 5 || strcmp(de->d_name + n - 4, ".sst") != 0) continue;
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    if (stat(path, &sb) == 0 && sb.st_size > best) {
      best = sb.st_size;
      snprintf(name, namelen, "%s", de->d_name);
    }
  }
  closedir(d);
  if (!name[0]) return -1;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "r+b");
  if (!f) return -1;
  unsigned char b[16];
  int rc = fseek(f, (long)(best / 2), SEEK_SET) != 0 || fread(b, 1, 16, f) != 16;
  for (int i = 0; i < 16; i++) b[i] ^= 0xFF;
  rc |= fseek(f, (long)(best / 2), SEEK_SET) != 0 || fwrite(b, 1, 16, f) != 16;
  return fclose(f) != 0 || rc ? -1 : 0;
}

/* A damaged table file: verify names it; a read that hits it is sticky, so
 * the batch is not committed and the stored offset does not move. */
static void test_corrupt(void) {
  enum { USERS = 3000 };
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  const char *path = db_path("corrupt");
  mtld_store_t *st = NULL;
  CHECK(mtld_store_open(&st, path, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  for (uint64_t u = 1; u <= USERS; u++) {
    mtld_event_t ev = random_event(u, 1, 50, T0 + (int64_t)u);
    ev.user_id = u;
    CHECK(mtld_store_apply(st, &ev, NULL, NULL) == MTLD_OK);
  }
  mtld_store_set_offset(st, "events", 0, USERS, T0 + USERS);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  uint64_t keys = 0;
  CHECK(mtld_store_verify(st, &keys, errbuf, sizeof errbuf) == MTLD_OK);
  CHECK(keys > USERS);
  /* a checkpoint flushes the memtables: the state is in .sst files */
  CHECK(mtld_store_checkpoint(st, db_path("corrupt.ckpt"), errbuf, sizeof errbuf) == MTLD_OK);
  mtld_store_close(st);
  char name[256];
  CHECK(damage_largest_sst(path, name, sizeof name) == 0);

  st = NULL;
  mtld_status_t rc = mtld_store_open(&st, path, &def, 0, errbuf, sizeof errbuf);
  if (rc == MTLD_OK) rc = mtld_store_verify(st, NULL, errbuf, sizeof errbuf);
  CHECK(rc == MTLD_ERR_CORRUPT || rc == MTLD_ERR_IO);
  CHECK(strstr(errbuf, "Corruption") != NULL);
  CHECK(strstr(errbuf, name) != NULL); /* the damaged file is named */
  if (!st) return;
  /* every user once more: the reads of the damaged block fail */
  int failed = 0;
  for (uint64_t u = 1; u <= USERS; u++) {
    mtld_event_t ev = random_event(USERS + u, 1, 50, T0 + USERS + (int64_t)u);
    ev.user_id = u;
    if (mtld_store_apply(st, &ev, NULL, NULL) != MTLD_OK) failed++;
  }
  CHECK(failed > 0);
  CHECK(strstr(mtld_store_last_error(st), name) != NULL);
  mtld_store_set_offset(st, "events", 0, 2 * USERS, T0 + 2 * USERS);
  errbuf[0] = 0;
  rc = mtld_store_commit(st, errbuf, sizeof errbuf);
  CHECK(rc == MTLD_ERR_CORRUPT);
  CHECK(strstr(errbuf, "batch not written") != NULL && strstr(errbuf, name) != NULL);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_ERR_CORRUPT); /* still */
  int64_t next = 0, mt;
  CHECK(mtld_store_get_offset(st, "events", 0, &next, &mt) == MTLD_OK);
  CHECK(next == USERS); /* nothing of the failed batch was written */
  mtld_store_rollback(st);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK); /* rollback clears it */
  mtld_store_close(st);
}

static uint64_t H(const char *s) {
  return mtld_hash_id(s, strlen(s));
}

/* Declared attributes: the store keeps the newest user and item values with
 * the features, the "before" values of an event are those before it (its own
 * attributes apply after), they survive commit and reopen, and a store built
 * without them refuses them (a feature-definition change). */
static void test_attrs(void) {
  mtld_feature_def_t def, plain;
  mtld_feature_def_default(&plain);
  def = plain;
  mtld_attr_def_set(&def.attrs[0], "age", MTLD_ATTR_USER, MTLD_ATTR_CATEGORICAL, 8, "", 0);
  mtld_attr_def_set(&def.attrs[1], "price_band", MTLD_ATTR_ITEM, MTLD_ATTR_NUMERIC, 0, NULL, -1);
  def.n_attrs = 2;
  const char *path = db_path("attrs");
  mtld_store_t *st = NULL;
  CHECK(mtld_store_open(&st, path, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  mtld_event_t e1, e2;
  memset(&e1, 0, sizeof e1);
  e1.event_id = 1, e1.user_id = 3, e1.item_id = 4, e1.type = MTLD_EV_IMPRESSION, e1.time_ms = T0;
  e2 = e1;
  e2.event_id = 2, e2.time_ms = T0 + 1000;
  mtld_event_attr_set_str(&e1, H("age"), H("a1"));
  mtld_event_attr_set_num(&e1, H("price_band"), 2.5);
  mtld_event_attr_set_str(&e2, H("age"), H("a2"));
  mtld_user_features_t u;
  mtld_item_features_t it;
  CHECK(mtld_store_apply(st, &e1, &u, &it) == MTLD_OK);
  CHECK(u.attrs.set == 0 && it.attrs.set == 0); /* before e1: nothing yet */
  CHECK(mtld_store_apply(st, &e2, &u, &it) == MTLD_OK);
  CHECK(u.attrs.set == 1 && u.attrs.v[0].bits == H("a1")); /* before e2: e1's */
  double d;
  memcpy(&d, &it.attrs.v[1].bits, sizeof d);
  CHECK(it.attrs.set == 2 && d == 2.5);
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  mtld_store_close(st);
  st = NULL;
  CHECK(mtld_store_open(&st, path, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  CHECK(mtld_store_get_user(st, 3, &u) == MTLD_OK && u.attrs.v[0].bits == H("a2"));
  CHECK(mtld_store_get_item(st, 4, &it) == MTLD_OK && it.attrs.set == 2);
  mtld_store_close(st);
  st = NULL;
  /* other declarations, or none, are other feature definitions */
  CHECK(mtld_store_open(&st, path, &plain, 0, errbuf, sizeof errbuf) == MTLD_ERR_SCHEMA);
  const char *path2 = db_path("attrs2");
  CHECK(mtld_store_open(&st, path2, &plain, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (st) mtld_store_close(st);
  st = NULL;
  CHECK(mtld_store_open(&st, path2, &def, 0, errbuf, sizeof errbuf) == MTLD_ERR_SCHEMA &&
        strstr(errbuf, "other feature definitions"));
}

/* mtld_store_get_many gives, key by key, what mtld_store_get gives: the
 * batch's staged values and deletes first, then committed values read from
 * the DB (one MultiGet), not-found for the rest; only raw column families. */
static void test_get_many(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_store_t *st = NULL;
  const char *path = db_path("get_many");
  CHECK(mtld_store_open(&st, path, &def, 0, errbuf, sizeof errbuf) == MTLD_OK);
  if (!st) return;
  enum { N = 300 }; /* committed k000..k299 with values "v<i>" of i % 50 + 1 bytes */
  char keys[N + 2][8], val[64];
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof keys[i], "k%03d", i);
    memset(val, 'a' + i % 26, sizeof val);
    CHECK(mtld_store_put(st, MTLD_CF_PENDING, keys[i], 4, val, (size_t)(i % 50 + 1)) == MTLD_OK);
  }
  CHECK(mtld_store_commit(st, errbuf, sizeof errbuf) == MTLD_OK);
  /* staged: k001 overwritten, k002 deleted, k300 new; k301 nowhere */
  snprintf(keys[N], sizeof keys[N], "k%03d", N);
  snprintf(keys[N + 1], sizeof keys[N + 1], "k%03d", N + 1);
  CHECK(mtld_store_put(st, MTLD_CF_PENDING, "k001", 4, "staged", 6) == MTLD_OK);
  CHECK(mtld_store_delete(st, MTLD_CF_PENDING, "k002", 4) == MTLD_OK);
  CHECK(mtld_store_put(st, MTLD_CF_PENDING, keys[N], 4, "new", 3) == MTLD_OK);
  const void *kp[N + 2];
  size_t kl[N + 2], vl[N + 2];
  void *vals[N + 2];
  mtld_status_t rcs[N + 2];
  for (int i = 0; i < N + 2; i++) { /* reversed: the API takes any order */
    kp[i] = keys[N + 1 - i];
    kl[i] = 4;
  }
  CHECK(mtld_store_get_many(st, MTLD_CF_PENDING, N + 2, kp, kl, vals, vl, rcs) == MTLD_OK);
  int same = 1;
  for (int i = 0; i < N + 2; i++) {
    void *v = NULL;
    size_t vlen = 0;
    mtld_status_t rc = mtld_store_get(st, MTLD_CF_PENDING, kp[i], 4, &v, &vlen);
    if (rc != rcs[i] || vlen != vl[i] || (rc == MTLD_OK && memcmp(v, vals[i], vlen) != 0) ||
        (rc != MTLD_OK && vals[i] != NULL))
      same = 0;
    free(v);
    free(vals[i]);
  }
  CHECK(same);
  CHECK(rcs[0] == MTLD_ERR_NOTFOUND && rcs[1] == MTLD_OK && vl[1] == 3);     /* k301, k300 */
  CHECK(rcs[N - 1] == MTLD_ERR_NOTFOUND && rcs[N] == MTLD_OK && vl[N] == 6); /* k002, k001 */
  /* the feature column families, and too many keys, are refused */
  CHECK(mtld_store_get_many(st, MTLD_CF_USER, 1, kp, kl, vals, vl, rcs) == MTLD_ERR_INVALID);
  CHECK(mtld_store_get_many(st, MTLD_CF_PENDING, MTLD_STORE_GET_MANY_MAX + 1, kp, kl, vals, vl,
                            rcs) == MTLD_ERR_INVALID);
  mtld_store_close(st);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/mtld-test-store-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  test_apply_commit_reopen();
  test_batch_semantics();
  test_offsets();
  test_raw();
  test_get_many();
  test_schema();
  test_readonly();
  test_missing_parents();
  test_crash();
  test_deterministic();
  test_corrupt();
  test_attrs();
  rm_rf(root);
  return CHECK_DONE();
}
