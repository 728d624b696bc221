/* test_scaleout.c - the pieces of scale-out's state changelog
 * (daemon/changelog.h): the changelog's key and group-record encodings; the
 * store's partition tags (every staged write that belongs to a source
 * partition is seen by mtld_store_foreach_staged with it, the global item
 * view never), a restore of one partition into another store from those
 * writes (mtld_store_write_direct), mtld_store_drop_partition (that
 * partition's users, item views, pending keys, offset and ledger go, the
 * others stay), and a failing commit hook that keeps the batch. */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/bytes.h"
#include "daemon/changelog.h"
#include "features/joiner.h"
#include "features/store.h"
#include "tests/unit/check.h"

static char root[64];
static char err[1024];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void test_encodings(void) {
  uint8_t key[5] = {1, 2, 3, 4, 5};
  size_t n;
  uint8_t *k = mtld_changelog_key_encode(MTLD_CF_PENDING, key, sizeof key, &n);
  CHECK(k && n == 6 && k[0] == MTLD_CF_PENDING && memcmp(k + 1, key, 5) == 0);
  mtld_cf_t cf;
  const void *sk;
  size_t sl;
  CHECK(mtld_changelog_key_decode(k, n, &cf, &sk, &sl) == MTLD_OK && cf == MTLD_CF_PENDING &&
        sl == 5 && memcmp(sk, key, 5) == 0);
  k[0] = MTLD_CF_COUNT;
  CHECK(mtld_changelog_key_decode(k, n, &cf, &sk, &sl) == MTLD_ERR_CORRUPT);
  CHECK(mtld_changelog_key_decode(k, 0, &cf, &sk, &sl) == MTLD_ERR_CORRUPT);
  free(k);

  mtld_changelog_group_t g = {.def_hash = 0x1122334455667788ull, .model_hash = 42, .partitions = 8},
                         h;
  uint8_t b[MTLD_CHANGELOG_GROUP_LEN];
  mtld_changelog_group_encode(&g, b);
  CHECK(mtld_changelog_group_decode(&h, b, sizeof b) == MTLD_OK && h.def_hash == g.def_hash &&
        h.model_hash == 42 && h.partitions == 8);
  CHECK(mtld_changelog_group_decode(&h, b, sizeof b - 1) == MTLD_ERR_CORRUPT);
  b[0] = 99;
  CHECK(mtld_changelog_group_decode(&h, b, sizeof b) == MTLD_ERR_CORRUPT);
}

/* A pending key as the joiner makes it: tag, time, partition (sign bit
 * flipped), offset, sub. */
static void pending_key(uint8_t k[25], int32_t partition, int64_t offset) {
  memset(k, 0, 25);
  k[0] = 'S';
  mtld_put_be32(k + 9, (uint32_t)partition ^ 0x80000000u);
  mtld_put_be64(k + 13, (uint64_t)offset ^ (1ull << 63));
}

typedef struct {
  int n, users[8], items, item_parts[8], pending[8], meta[8], other;
  mtld_store_write_t w[256];
  int nw;
  int32_t only; /* copy the writes of this partition into w */
} seen_t;

static mtld_status_t staged_cb(void *ctx, mtld_partition_id_t p, mtld_cf_t cf, const void *key,
                               size_t klen, const void *val, size_t vlen, int deleted) {
  seen_t *s = ctx;
  s->n++;
  if (p < 0 || p >= 8) {
    s->other++;
    return MTLD_OK;
  }
  if (cf == MTLD_CF_USER) s->users[p]++;
  if (cf == MTLD_CF_ITEM) s->items++;
  if (cf == MTLD_CF_ITEM_PART) s->item_parts[p]++;
  if (cf == MTLD_CF_PENDING) s->pending[p]++;
  if (cf == MTLD_CF_META) s->meta[p]++;
  if (p == s->only && s->nw < 256) {
    void *k = malloc(klen), *v = deleted ? NULL : malloc(vlen ? vlen : 1);
    memcpy(k, key, klen);
    if (v) memcpy(v, val, vlen);
    s->w[s->nw++] = (mtld_store_write_t){cf, k, klen, v, vlen, deleted};
  }
  return MTLD_OK;
}

static mtld_event_t event(uint64_t id, uint64_t user, uint64_t item) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = id;
  ev.user_id = user;
  ev.item_id = item;
  ev.category_id = 3;
  ev.type = MTLD_EV_IMPRESSION;
  ev.time_ms = 1500000000000LL + (int64_t)id;
  ev.scenario_id = 1;
  return ev;
}

static int fail_hook_calls;
static mtld_status_t failing_hook(void *ctx, mtld_store_t *st, char *e, size_t elen) {
  (void)ctx;
  (void)st;
  fail_hook_calls++;
  snprintf(e, elen, "changelog unreachable");
  return MTLD_ERR_RETRY;
}

static void test_tags_restore_drop(void) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  def.item_view = MTLD_ITEM_VIEW_PARTITION;
  char a[128], b[128];
  snprintf(a, sizeof a, "%s/a", root);
  snprintf(b, sizeof b, "%s/b", root);
  mtld_store_t *st, *st2;
  CHECK(mtld_store_open(&st, a, &def, 0, err, sizeof err) == MTLD_OK);
  CHECK(mtld_store_open(&st2, b, &def, 0, err, sizeof err) == MTLD_OK);
  mtld_store_set_partition_index(st, 1);
  /* users 1..3 on partition 3, users 4..5 on partition 5, items shared */
  for (uint64_t i = 0; i < 10; i++) {
    uint64_t user = 1 + i % 5;
    int32_t part = user <= 3 ? 3 : 5;
    mtld_event_t ev = event(i + 1, user, 100 + i % 2);
    mtld_store_set_partition(st, part);
    CHECK(mtld_store_apply_part(st, &ev, part, NULL, NULL) == MTLD_OK);
    uint8_t pk[25];
    pending_key(pk, part, (int64_t)i);
    CHECK(mtld_store_put(st, MTLD_CF_PENDING, pk, sizeof pk, "x", 1) == MTLD_OK);
    CHECK(mtld_joiner_key_partition(NULL, pk, sizeof pk) == part);
    mtld_store_set_offset(st, "events", part, (int64_t)i + 1, ev.time_ms);
    mtld_store_set_partition(st, -1);
  }
  CHECK(mtld_store_put(st, MTLD_CF_META, "local", 5, "y", 1) == MTLD_OK); /* untagged */
  seen_t s;
  memset(&s, 0, sizeof s);
  s.only = 3;
  CHECK(mtld_store_foreach_staged(st, staged_cb, &s) == MTLD_OK);
  CHECK(s.users[3] == 3 && s.users[5] == 2);
  CHECK(s.items == 0); /* the global item view stays local */
  CHECK(s.item_parts[3] == 2 && s.item_parts[5] == 2);
  CHECK(s.pending[3] == 6 && s.pending[5] == 4);
  /* meta: the offset and the user index entries */
  CHECK(s.meta[3] == 1 + 3 && s.meta[5] == 1 + 2);
  CHECK(s.other == 0);
  CHECK(mtld_store_commit(st, err, sizeof err) == MTLD_OK);

  /* restore partition 3 into the other store */
  CHECK(mtld_store_write_direct(st2, s.w, (size_t)s.nw, err, sizeof err) == MTLD_OK);
  mtld_user_features_t u;
  CHECK(mtld_store_get_user(st2, 1, &u) == MTLD_OK && u.n_events == 2);
  CHECK(mtld_store_get_user(st2, 4, &u) == MTLD_ERR_NOTFOUND);
  int64_t next, mt;
  CHECK(mtld_store_get_offset(st2, "events", 3, &next, &mt) == MTLD_OK && next == 8);
  CHECK(mtld_store_get_offset(st2, "events", 5, &next, &mt) == MTLD_ERR_NOTFOUND);
  for (int i = 0; i < s.nw; i++) {
    free((void *)s.w[i].key);
    free((void *)s.w[i].val);
  }

  /* drop partition 3 from the first store */
  uint64_t dropped = 0;
  CHECK(mtld_store_drop_partition(st, 3, "events", 3, mtld_joiner_key_partition, NULL, &dropped,
                                  err, sizeof err) == MTLD_OK);
  CHECK(dropped >= 3 + 3 + 2 + 6 + 1);
  CHECK(mtld_store_get_user(st, 1, &u) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_store_get_user(st, 4, &u) == MTLD_OK && u.n_events == 2);
  mtld_item_features_t it;
  CHECK(mtld_store_get_item_part(st, 3, 100, &it) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_store_get_item_part(st, 5, 100, &it) == MTLD_OK);
  CHECK(mtld_store_get_item(st, 100, &it) == MTLD_OK); /* global view kept */
  CHECK(mtld_store_get_offset(st, "events", 3, &next, &mt) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_store_get_offset(st, "events", 5, &next, &mt) == MTLD_OK && next == 10);
  uint8_t pk[25];
  void *v = NULL;
  size_t vl;
  pending_key(pk, 3, 0);
  CHECK(mtld_store_get(st, MTLD_CF_PENDING, pk, sizeof pk, &v, &vl) == MTLD_ERR_NOTFOUND);
  pending_key(pk, 5, 3);
  CHECK(mtld_store_get(st, MTLD_CF_PENDING, pk, sizeof pk, &v, &vl) == MTLD_OK);
  free(v);
  v = NULL;
  CHECK(mtld_store_get(st, MTLD_CF_META, "local", 5, &v, &vl) == MTLD_OK);
  free(v);

  /* a failing hook fails the commit and keeps the batch */
  mtld_store_set_commit_hook(st, failing_hook, NULL);
  mtld_event_t ev = event(99, 7, 100);
  mtld_store_set_partition(st, 5);
  CHECK(mtld_store_apply_part(st, &ev, 5, NULL, NULL) == MTLD_OK);
  mtld_store_set_partition(st, -1);
  CHECK(mtld_store_commit(st, err, sizeof err) == MTLD_ERR_RETRY && fail_hook_calls == 1);
  CHECK(strstr(err, "unreachable") != NULL);
  mtld_store_set_commit_hook(st, NULL, NULL);
  CHECK(mtld_store_commit(st, err, sizeof err) == MTLD_OK);
  CHECK(mtld_store_get_user(st, 7, &u) == MTLD_OK && u.n_events == 1);
  mtld_store_close(st);
  mtld_store_close(st2);
}

/* The model hash: what the group must agree on, and what stays per
 * instance. */
static uint64_t hash_of(const char *extra) {
  char path[128];
  snprintf(path, sizeof path, "%s/h.conf", root);
  FILE *f = fopen(path, "w");
  fprintf(f,
          "source = { type = \"kafka\"; topics = [\"events\"]; };\n"
          "kafka = { bootstrap_servers = \"127.0.0.1:9\"; group_instance_id = \"a\"; };\n"
          "store = { path = \"%s/st\"; };\n"
          "scaleout = { changelog_topic = \"cl\"; };\n%s\n",
          root, extra);
  fclose(f);
  static mtld_config_t cfg;
  if (mtld_config_load(&cfg, path, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "config: %s\n", err);
    return 0;
  }
  return mtld_changelog_model_hash(&cfg);
}

static void test_model_hash(void) {
  uint64_t base = hash_of("");
  CHECK(base != 0);
  CHECK(hash_of("") == base);
  CHECK(hash_of("model = { lr = 0.0123; };") != base);
  CHECK(hash_of("joiner = { click_window = \"10m\"; };") != base);
  CHECK(hash_of("features = { sequence_length = 7; };") != base);
  CHECK(hash_of("validation = { max_lateness = \"2d\"; };") != base);
  /* per instance */
  CHECK(hash_of("joiner = { idle_release = \"2s\"; };") == base);
  CHECK(hash_of("trainer = { enabled = false; };") == base);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/mtld-test-scaleout-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  test_encodings();
  test_tags_restore_drop();
  test_model_hash();
  nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  return CHECK_DONE();
}
