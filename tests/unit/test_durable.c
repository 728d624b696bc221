/* test_durable.c - the daemon's checkpoint/snapshot worker (durable/durable.h)
 * over a store, a trainer and a watermark it is given (no pipeline): a
 * checkpoint holds the store's committed offsets and the watermark, a
 * snapshot is written and loads, recovery restores the newest checkpoint's
 * trainer and replaces a store that moved on after it, and without a trainer
 * nothing is written.  Everything lives in a mkdtemp directory. */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "durable/checkpoint.h"
#include "durable/durable.h"
#include "durable/snapshot.h"
#include "tests/unit/check.h"

#define T0 1700000000000LL

static char root[64];
static char err[1024];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static void config(mtld_config_t *cfg, const char *name) {
  mtld_config_default(cfg);
  snprintf(cfg->store_path, sizeof cfg->store_path, "%s/%s/store", root, name);
  snprintf(cfg->checkpoint_dir, sizeof cfg->checkpoint_dir, "%s/%s/ckpt", root, name);
  snprintf(cfg->snapshot_dir, sizeof cfg->snapshot_dir, "%s/%s/snap", root, name);
  cfg->checkpoint_interval_ms = 0; /* only when asked */
  cfg->checkpoint_every_samples = 0;
  cfg->snapshot_interval_ms = 0;
  char dir[1100];
  snprintf(dir, sizeof dir, "%s/%s", root, name);
  mkdir(dir, 0755);
}

/* Applies one event and commits it with topic "events"[0] at next_offset. */
static void commit_event(mtld_store_t *st, mtld_watermark_t *wm, uint64_t id, int64_t t,
                         int64_t next_offset) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = id;
  ev.type = MTLD_EV_CLICK;
  ev.user_id = 1;
  ev.item_id = 2;
  ev.time_ms = t;
  CHECK(mtld_store_apply(st, &ev, NULL, NULL) == MTLD_OK);
  mtld_watermark_observe(wm, "events", 0, t);
  mtld_store_set_offset(st, "events", 0, next_offset, t);
  CHECK(mtld_store_commit(st, err, sizeof err) == MTLD_OK);
}

static void test_checkpoint_snapshot_recover(void) {
  mtld_config_t cfg;
  config(&cfg, "cut");
  mtld_store_t *st = NULL;
  mtld_watermark_t *wm = NULL;
  mtld_trainer_t *tr = NULL;
  mtld_durable_t *d = NULL;
  CHECK(mtld_store_open(&st, cfg.store_path, &cfg.features, 0, err, sizeof err) == MTLD_OK);
  CHECK(mtld_watermark_create(&wm, 1000, 0) == MTLD_OK);
  CHECK(mtld_trainer_create(&tr, &cfg.model, err, sizeof err) == MTLD_OK);
  CHECK(mtld_durable_new(&d, &cfg, st, tr, wm, err, sizeof err) == MTLD_OK);
  commit_event(st, wm, 1, T0, 5);
  CHECK(mtld_watermark_get(wm) == T0 - 1000);

  CHECK(mtld_durable_checkpoint(d, 1, err, sizeof err) == MTLD_OK);
  uint64_t id = 0;
  char path[4096];
  CHECK(mtld_checkpoint_latest(cfg.checkpoint_dir, &id, path, sizeof path, NULL, NULL, err,
                               sizeof err) == MTLD_OK);
  mtld_checkpoint_meta_t meta;
  CHECK(mtld_checkpoint_read_meta(path, &meta, err, sizeof err) == MTLD_OK);
  CHECK(meta.id == id && meta.watermark_ms == T0 - 1000);
  CHECK(meta.n_offsets == 1 && strcmp(meta.offsets[0].topic, "events") == 0 &&
        meta.offsets[0].partition == 0 && meta.offsets[0].next_offset == 5);
  mtld_checkpoint_meta_free(&meta);

  CHECK(mtld_durable_snapshot(d, 1, err, sizeof err) == MTLD_OK);
  mtld_model_t *m = NULL;
  mtld_snapshot_info_t info;
  CHECK(mtld_snapshot_load(cfg.snapshot_dir, &m, &info, err, sizeof err) == MTLD_OK);
  if (m) {
    CHECK(info.meta.watermark_ms == T0 - 1000 && info.meta.n_offsets == 1);
    mtld_snapshot_info_free(&info);
    mtld_model_destroy(m);
  }

  /* the store moves on after the cut, then the process "crashes" */
  commit_event(st, wm, 2, T0 + 10, 9);
  mtld_durable_free(d);
  mtld_trainer_destroy(tr);
  mtld_watermark_destroy(wm);
  mtld_store_close(st);

  mtld_trainer_t *restored = NULL;
  int found = 0;
  CHECK(mtld_durable_recover(&cfg, &restored, &found, err, sizeof err) == MTLD_OK);
  CHECK(found == 1 && restored != NULL);
  mtld_trainer_destroy(restored);
  /* the live store did not match the checkpoint's offsets: replaced by it */
  CHECK(mtld_store_open(&st, cfg.store_path, &cfg.features, 0, err, sizeof err) == MTLD_OK);
  int64_t next = -1, max_time;
  CHECK(mtld_store_get_offset(st, "events", 0, &next, &max_time) == MTLD_OK && next == 5);
  mtld_store_close(st);
}

static void test_no_trainer(void) {
  mtld_config_t cfg;
  config(&cfg, "notrainer");
  cfg.trainer_enabled = 0;
  mtld_store_t *st = NULL;
  mtld_watermark_t *wm = NULL;
  mtld_durable_t *d = NULL;
  CHECK(mtld_store_open(&st, cfg.store_path, &cfg.features, 0, err, sizeof err) == MTLD_OK);
  CHECK(mtld_watermark_create(&wm, 0, 0) == MTLD_OK);
  CHECK(mtld_durable_new(&d, &cfg, st, NULL, wm, err, sizeof err) == MTLD_OK);
  CHECK(mtld_durable_checkpoint(d, 1, err, sizeof err) == MTLD_OK);
  CHECK(mtld_durable_snapshot(d, 1, err, sizeof err) == MTLD_OK);
  uint64_t id;
  char path[4096];
  CHECK(mtld_checkpoint_latest(cfg.checkpoint_dir, &id, path, sizeof path, NULL, NULL, err,
                               sizeof err) == MTLD_ERR_NOTFOUND);
  mtld_durable_free(d);
  mtld_watermark_destroy(wm);
  mtld_store_close(st);
  mtld_trainer_t *restored = NULL;
  int found = 1;
  CHECK(mtld_durable_recover(&cfg, &restored, &found, err, sizeof err) == MTLD_OK);
  CHECK(found == 0 && restored == NULL);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/mtld-test-durable-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  test_checkpoint_snapshot_recover();
  test_no_trainer();
  nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  return CHECK_DONE();
}
