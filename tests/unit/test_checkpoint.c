/* test_checkpoint.c - checkpoint directories: begin / commit / latest, the
 * retention of the newest K, a stale .tmp ignored and cleaned, a damaged
 * newest checkpoint (trainer checksum, missing COMPLETE, bad meta) passed
 * over for the previous one, meta round trip, and restore: the live store
 * replaced by the checkpoint's and the trainer loaded, so that replaying the
 * events after the cut ends bit-identical to the run that never stopped
 * (features, offsets, model).  Stores live under a mkdtemp directory. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "features/joiner.h"
#include "features/store.h"
#include "tests/unit/check.h"
#include "tests/unit/rng.h"
#include "durable/checkpoint.h"
#include "trainer/train.h"
#include "common/fs.h"

#define T0 1600000000000LL
#define ROUNDS 5
#define EVENTS_PER_ROUND 400

static char tmp[128], root[256], live[256];
static char err[1024];
static mtld_feature_def_t def;

/* Event k of the stream (a pure function of k, so rounds can be replayed). */
static mtld_event_t event_k(int k) {
  rng_t r = {0x9e3779b97f4a7c15ULL ^ (uint64_t)(k + 1) * 0x100000001b3ULL};
  for (int i = 0; i < 3; i++) rng_next(&r);
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = (uint64_t)k + 1;
  ev.user_id = 1 + rng_next(&r) % 60;
  ev.item_id = 1000 + rng_next(&r) % 40;
  ev.category_id = 1 + ev.item_id % 7;
  uint64_t x = rng_next(&r) % 10;
  ev.type = x < 6   ? MTLD_EV_IMPRESSION
            : x < 8 ? MTLD_EV_CLICK
            : x < 9 ? MTLD_EV_PURCHASE
                    : MTLD_EV_REVIEW;
  ev.time_ms = T0 + (int64_t)k * 1000;
  ev.scenario_id = 1 + rng_next(&r) % 3;
  snprintf(ev.scenario, sizeof ev.scenario, "s%" PRIu64, ev.scenario_id);
  ev.position = 1 + (int)(rng_next(&r) % 5);
  if (ev.type == MTLD_EV_PURCHASE) {
    ev.price = 1 + (double)(rng_next(&r) % 5000) / 100;
    ev.quantity = 1;
  }
  if (ev.type == MTLD_EV_REVIEW) ev.rating = (float)(1 + rng_next(&r) % 5);
  return ev;
}

/* One round: events [round*N, (round+1)*N) into the store (one batch) and
 * their impression/review samples into the trainer. */
static int run_round(mtld_store_t *st, mtld_trainer_t *t, int round) {
  int ok = 1;
  for (int k = round * EVENTS_PER_ROUND; k < (round + 1) * EVENTS_PER_ROUND; k++) {
    mtld_event_t ev = event_k(k);
    mtld_user_features_t u;
    mtld_item_features_t it;
    if (mtld_store_apply(st, &ev, &u, &it) != MTLD_OK) ok = 0;
    if (ev.type != MTLD_EV_IMPRESSION && ev.type != MTLD_EV_REVIEW) continue;
    mtld_sample_t s;
    mtld_sample_from_features(&s, &def, &ev, 0, k, u.n_events ? &u : NULL, it.n_events ? &it : NULL,
                              ev.item_id, ev.category_id, 1);
    if (ev.type == MTLD_EV_IMPRESSION)
      s.labels[MTLD_LABEL_CLICK] = (float)((ev.user_id + ev.item_id) % 4 == 0);
    mtld_trainer_observe(t, &s, NULL);
  }
  mtld_store_set_offset(st, "events", 0, (int64_t)(round + 1) * EVENTS_PER_ROUND,
                        T0 + (int64_t)((round + 1) * EVENTS_PER_ROUND - 1) * 1000);
  if (mtld_store_commit(st, err, sizeof err) != MTLD_OK) ok = 0;
  return ok;
}

static mtld_status_t write_checkpoint(mtld_store_t *st, mtld_trainer_t *t, uint64_t id, int keep) {
  char dir[512], sub[600];
  mtld_status_t rc = mtld_checkpoint_begin(root, id, dir, sizeof dir, err, sizeof err);
  if (rc != MTLD_OK) return rc;
  snprintf(sub, sizeof sub, "%s/store", dir);
  if ((rc = mtld_store_checkpoint(st, sub, err, sizeof err)) != MTLD_OK) return rc;
  void *buf;
  size_t len;
  if ((rc = mtld_trainer_save_mem(t, &buf, &len, err, sizeof err)) != MTLD_OK) return rc;
  rc = mtld_checkpoint_write_file(dir, "trainer.bin", buf, len, err, sizeof err);
  free(buf);
  if (rc != MTLD_OK) return rc;
  mtld_source_offset_t off;
  memset(&off, 0, sizeof off);
  snprintf(off.topic, sizeof off.topic, "events");
  int n_off = mtld_store_get_offset(st, "events", 0, &off.next_offset, &off.max_time_ms) == MTLD_OK;
  mtld_trainer_stats_t ts;
  mtld_trainer_stats(t, &ts);
  mtld_checkpoint_meta_t meta = {.id = id,
                                 .created_ms = 1700000000000LL + (int64_t)id,
                                 .watermark_ms = off.max_time_ms - 60000,
                                 .samples = ts.observed,
                                 .n_offsets = n_off,
                                 .offsets = &off};
  if ((rc = mtld_checkpoint_write_meta(dir, &meta, err, sizeof err)) != MTLD_OK) return rc;
  return mtld_checkpoint_commit(root, id, keep, NULL, 0, err, sizeof err);
}

static int exists(const char *fmt, uint64_t id) {
  char p[512], name[64];
  snprintf(name, sizeof name, fmt, id);
  snprintf(p, sizeof p, "%s/%s", root, name);
  struct stat sb;
  return stat(p, &sb) == 0;
}

static int params_equal(mtld_trainer_t *a, mtld_trainer_t *b) {
  float *pa, *pb;
  size_t na, nb;
  mtld_trainer_params(a, &pa, &na);
  mtld_trainer_params(b, &pb, &nb);
  return na == nb && !memcmp(pa, pb, sizeof(float) * na);
}

/* Canonical bytes of every user and item of a store. */
typedef struct {
  unsigned char *b;
  size_t n, cap;
} bytes_t;

static void put(bytes_t *x, const void *p, size_t n) {
  if (x->n + n > x->cap) {
    x->cap = (x->n + n) * 2;
    x->b = realloc(x->b, x->cap);
  }
  memcpy(x->b + x->n, p, n);
  x->n += n;
}

static int dump_user(void *ctx, uint64_t id, const mtld_user_features_t *f) {
  unsigned char enc[MTLD_FEATURES_USER_ENC_MAX];
  size_t n = mtld_features_user_encode(&def, f, enc, sizeof enc);
  put(ctx, &id, 8);
  put(ctx, enc, n);
  return 0;
}

static int dump_item(void *ctx, uint64_t id, const mtld_item_features_t *f) {
  unsigned char enc[MTLD_FEATURES_ITEM_ENC_MAX];
  size_t n = mtld_features_item_encode(&def, f, enc, sizeof enc);
  put(ctx, &id, 8);
  put(ctx, enc, n);
  return 0;
}

static bytes_t dump_store(mtld_store_t *st) {
  bytes_t x = {0};
  mtld_store_foreach_user(st, dump_user, &x);
  mtld_store_foreach_item(st, dump_item, &x);
  return x;
}

typedef struct {
  int n;
  char last_reason[256];
  char last_path[512];
} skips_t;

static void on_skip(void *ctx, const char *path, const char *reason) {
  skips_t *s = ctx;
  s->n++;
  snprintf(s->last_reason, sizeof s->last_reason, "%s", reason);
  snprintf(s->last_path, sizeof s->last_path, "%s", path);
}

static void flip_byte(const char *path, long pos) {
  FILE *f = fopen(path, "r+b");
  if (!f) return;
  fseek(f, pos, pos < 0 ? SEEK_END : SEEK_SET);
  int c = fgetc(f);
  fseek(f, -1, SEEK_CUR);
  fputc(c ^ 0x20, f);
  fclose(f);
}

int main(void) {
  snprintf(tmp, sizeof tmp, "/tmp/mtld-test-ckpt.XXXXXX");
  if (!mkdtemp(tmp)) return 2;
  snprintf(root, sizeof root, "%s/checkpoints", tmp);
  snprintf(live, sizeof live, "%s/store", tmp);
  mtld_feature_def_default(&def);
  mtld_model_config_t cfg;
  mtld_model_config_default(&cfg);
  uint32_t rows[5] = {128, 64, 16, 8, 8};
  for (int f = 0; f < 5; f++) cfg.fields[f].rows = rows[f];
  cfg.dim = 4;
  cfg.n_dense = mtld_features_dense_count(&def);
  cfg.seq_max = 5;
  cfg.expert_layers[0] = 8;
  cfg.expert_layers[1] = 4;
  cfg.tower_layers[0] = 4;
  cfg.batch_size = 16;
  cfg.pv_window = 500;

  CHECK(mtld_checkpoint_next_id(root) == 1); /* no root yet */
  mtld_store_t *st = NULL;
  mtld_trainer_t *t = NULL;
  CHECK(mtld_store_open(&st, live, &def, 0, err, sizeof err) == MTLD_OK);
  CHECK(mtld_trainer_create(&t, &cfg, err, sizeof err) == MTLD_OK);
  if (!st || !t) return CHECK_DONE();

  /* the empty cut first (recovery rule b), then one per round; keep 3 */
  CHECK(write_checkpoint(st, t, mtld_checkpoint_next_id(root), 3) == MTLD_OK);
  bytes_t at3 = {0};
  mtld_trainer_t *ref3 = NULL;
  for (int round = 0; round < ROUNDS; round++) {
    CHECK(run_round(st, t, round));
    uint64_t id = mtld_checkpoint_next_id(root);
    CHECK(id == (uint64_t)round + 2);
    mtld_status_t rc = write_checkpoint(st, t, id, 3);
    CHECK(rc == MTLD_OK);
    if (rc != MTLD_OK) fprintf(stderr, "checkpoint %" PRIu64 ": %s\n", id, err);
    if (id == 4) { /* remember the state of checkpoint 4 */
      at3 = dump_store(st);
      void *buf;
      size_t len;
      mtld_trainer_save_mem(t, &buf, &len, err, sizeof err);
      mtld_trainer_load_mem(&ref3, buf, len, err, sizeof err);
      free(buf);
    }
  }
  /* ids 1..6 written, the newest 3 kept */
  CHECK(!exists("checkpoint-%010" PRIu64, 1) && !exists("checkpoint-%010" PRIu64, 3));
  CHECK(exists("checkpoint-%010" PRIu64, 4) && exists("checkpoint-%010" PRIu64, 6));
  CHECK(exists("checkpoint-%010" PRIu64 "/COMPLETE", 6));
  char again[512];
  CHECK(mtld_checkpoint_begin(root, 6, again, sizeof again, err, sizeof err) == MTLD_ERR_INVALID);

  /* a checkpoint being written (a crash mid-way) is not a candidate */
  char dir7[512];
  CHECK(mtld_checkpoint_begin(root, 7, dir7, sizeof dir7, err, sizeof err) == MTLD_OK);
  CHECK(exists("checkpoint-%010" PRIu64 ".tmp", 7));
  void *tb;
  size_t tl;
  mtld_trainer_save_mem(t, &tb, &tl, err, sizeof err);
  CHECK(mtld_checkpoint_write_file(dir7, "trainer.bin", tb, tl, err, sizeof err) == MTLD_OK);
  free(tb);
  CHECK(mtld_checkpoint_commit(root, 7, 3, NULL, 0, err, sizeof err) == MTLD_ERR_INVALID);
  CHECK(strstr(err, "missing") != NULL);
  uint64_t id = 0;
  char path[512];
  skips_t sk = {0};
  CHECK(mtld_checkpoint_latest(root, &id, path, sizeof path, on_skip, &sk, err, sizeof err) ==
        MTLD_OK);
  CHECK(id == 6 && sk.n == 0);
  CHECK(mtld_checkpoint_next_id(root) == 8);

  /* meta round trip */
  mtld_checkpoint_meta_t meta;
  CHECK(mtld_checkpoint_read_meta(path, &meta, err, sizeof err) == MTLD_OK);
  CHECK(meta.id == 6 && meta.n_offsets == 1);
  if (meta.n_offsets == 1) {
    CHECK(!strcmp(meta.offsets[0].topic, "events") && meta.offsets[0].partition == 0);
    CHECK(meta.offsets[0].next_offset == ROUNDS * EVENTS_PER_ROUND);
    CHECK(meta.offsets[0].max_time_ms == T0 + (ROUNDS * EVENTS_PER_ROUND - 1) * 1000LL);
    CHECK(meta.watermark_ms == meta.offsets[0].max_time_ms - 60000);
  }
  CHECK(meta.created_ms == 1700000000006LL && meta.samples > 0);
  mtld_checkpoint_meta_free(&meta);

  /* damaged newest ones are passed over with a reason */
  char p6[600];
  snprintf(p6, sizeof p6, "%s/trainer.bin", path);
  flip_byte(p6, 100);
  CHECK(mtld_checkpoint_latest(root, &id, path, sizeof path, on_skip, &sk, err, sizeof err) ==
        MTLD_OK);
  CHECK(id == 5 && sk.n == 1 && strstr(sk.last_reason, "checksum") != NULL);
  CHECK(strstr(sk.last_path, "checkpoint-0000000006") != NULL);
  char p5[600];
  snprintf(p5, sizeof p5, "%s/COMPLETE", path);
  unlink(p5);
  sk.n = 0;
  CHECK(mtld_checkpoint_latest(root, &id, path, sizeof path, on_skip, &sk, err, sizeof err) ==
        MTLD_OK);
  CHECK(id == 4 && sk.n == 2 && strstr(sk.last_reason, "COMPLETE") != NULL);
  char pm[600];
  snprintf(pm, sizeof pm, "%s/meta", path);
  flip_byte(pm, 20);
  CHECK(mtld_checkpoint_read_meta(path, &meta, err, sizeof err) == MTLD_ERR_CORRUPT);
  CHECK(strstr(err, "checksum") != NULL);
  sk.n = 0;
  CHECK(mtld_checkpoint_latest(root, &id, path, sizeof path, on_skip, &sk, err, sizeof err) ==
        MTLD_ERR_NOTFOUND);
  CHECK(sk.n == 3);
  flip_byte(pm, 20); /* repaired */
  CHECK(mtld_checkpoint_latest(root, &id, path, sizeof path, NULL, NULL, err, sizeof err) ==
        MTLD_OK);
  CHECK(id == 4);

  /* crash: the live store is ahead of checkpoint 4; restore it */
  mtld_trainer_destroy(t);
  mtld_store_close(st);
  st = NULL;
  t = NULL;
  CHECK(mtld_checkpoint_restore(path, live, &t, &meta, err, sizeof err) == MTLD_OK);
  CHECK(t != NULL && meta.id == 4 && meta.n_offsets == 1);
  if (t && ref3) CHECK(params_equal(t, ref3));
  CHECK(mtld_store_open(&st, live, &def, 0, err, sizeof err) == MTLD_OK);
  if (st) {
    int64_t next = -1, maxt = -1;
    CHECK(mtld_store_get_offset(st, "events", 0, &next, &maxt) == MTLD_OK);
    CHECK(meta.n_offsets == 1 && next == meta.offsets[0].next_offset &&
          next == 3 * EVENTS_PER_ROUND);
    bytes_t now = dump_store(st);
    CHECK(now.n == at3.n && now.n > 0 && !memcmp(now.b, at3.b, now.n));
    free(now.b);
  }
  mtld_checkpoint_meta_free(&meta);
  /* no leftovers of the restore */
  char side[600];
  snprintf(side, sizeof side, "%s.old", live);
  struct stat sb;
  CHECK(stat(side, &sb) != 0);
  snprintf(side, sizeof side, "%s.restore.tmp", live);
  CHECK(stat(side, &sb) != 0);

  /* replay rounds 3..4 from the restored state: ends where the uninterrupted run ended */
  mtld_store_t *ref_st = NULL;
  mtld_trainer_t *ref_t = NULL;
  char ref_path[512];
  snprintf(ref_path, sizeof ref_path, "%s/reference", tmp);
  CHECK(mtld_store_open(&ref_st, ref_path, &def, 0, err, sizeof err) == MTLD_OK);
  CHECK(mtld_trainer_create(&ref_t, &cfg, err, sizeof err) == MTLD_OK);
  for (int round = 0; round < ROUNDS && ref_st && ref_t; round++) run_round(ref_st, ref_t, round);
  for (int round = 3; round < ROUNDS && st && t; round++) CHECK(run_round(st, t, round));
  if (st && t && ref_st && ref_t) {
    CHECK(params_equal(t, ref_t));
    bytes_t a = dump_store(st), b = dump_store(ref_st);
    CHECK(a.n == b.n && !memcmp(a.b, b.b, a.n));
    free(a.b);
    free(b.b);
  }

  /* a new commit deletes the stale .tmp and the damaged ones beyond keep */
  CHECK(write_checkpoint(st, t, mtld_checkpoint_next_id(root), 2) == MTLD_OK);
  CHECK(!exists("checkpoint-%010" PRIu64 ".tmp", 7));
  CHECK(exists("checkpoint-%010" PRIu64, 8) && exists("checkpoint-%010" PRIu64, 6));
  CHECK(!exists("checkpoint-%010" PRIu64, 5) && !exists("checkpoint-%010" PRIu64, 4));
  CHECK(mtld_checkpoint_latest(root, &id, path, sizeof path, NULL, NULL, err, sizeof err) ==
        MTLD_OK);
  CHECK(id == 8);
  /* the worker commits 9 while the next cut (10) is being written: 10's
   * temp dir is not stale and must survive 9's prune */
  char dir10[512];
  CHECK(mtld_checkpoint_begin(root, 10, dir10, sizeof dir10, err, sizeof err) == MTLD_OK);
  CHECK(write_checkpoint(st, t, 9, 2) == MTLD_OK);
  CHECK(exists("checkpoint-%010" PRIu64 ".tmp", 10));
  mtld_rmtree(dir10);

  /* restore with no live store at all */
  mtld_store_close(st);
  st = NULL;
  mtld_trainer_destroy(t);
  t = NULL;
  mtld_rmtree(live);
  CHECK(mtld_checkpoint_restore(path, live, &t, NULL, err, sizeof err) == MTLD_OK);
  CHECK(mtld_store_open(&st, live, &def, 0, err, sizeof err) == MTLD_OK);
  if (st && ref_st) {
    bytes_t a = dump_store(st), b = dump_store(ref_st);
    CHECK(a.n == b.n && !memcmp(a.b, b.b, a.n));
    free(a.b);
    free(b.b);
  }
  if (t && ref_t) CHECK(params_equal(t, ref_t));
  /* a restore that cannot load the trainer changes nothing */
  snprintf(p6, sizeof p6, "%s/trainer.bin", path);
  flip_byte(p6, -3);
  mtld_store_close(st);
  st = NULL;
  mtld_trainer_t *t2 = NULL;
  CHECK(mtld_checkpoint_restore(path, live, &t2, NULL, err, sizeof err) == MTLD_ERR_CORRUPT);
  CHECK(t2 == NULL);
  CHECK(mtld_store_open(&st, live, &def, 0, err, sizeof err) == MTLD_OK);

  mtld_store_close(st);
  mtld_store_close(ref_st);
  mtld_trainer_destroy(t);
  mtld_trainer_destroy(ref_t);
  mtld_trainer_destroy(ref3);
  free(at3.b);
  mtld_rmtree(tmp);
  return CHECK_DONE();
}
