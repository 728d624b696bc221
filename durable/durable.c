/* durable.c - checkpoints, serving snapshots and recovery (see durable.h). */
#include "durable/durable.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "daemon/log.h"
#include "features/features.h"
#include "features/store.h"
#include "durable/checkpoint.h"
#include "durable/snapshot.h"
#include "common/fs.h"
#include "common/clock.h"

enum { JOB_CHECKPOINT = 1, JOB_SNAPSHOT = 2 };
#define QUEUE 4

typedef struct {
  int kind;
  /* checkpoint */
  uint64_t id;
  char tmp[PATH_MAX];
  void *trainer_buf;
  size_t trainer_len, trainer_cap;
  mtld_checkpoint_meta_t meta;
  /* snapshot */
  mtld_snapshot_t *snap;
  int keep; /* copied at submit: reload may change the config meanwhile */
  int64_t started_mono_ms;
} job_t;

typedef struct {
  uint64_t done, failed;
  double last_seconds, max_stall_seconds, last_stall_seconds;
  int64_t last_done_wall_ms; /* 0 = never */
} kind_stats_t;

struct mtld_durable {
  const mtld_config_t *cfg; /* borrowed (the daemon's): the worker reads only the dirs */
  mtld_store_t *store;      /* borrowed */
  mtld_trainer_t *trainer;  /* borrowed; NULL when trainer.enabled = false */
  const mtld_watermark_t *wm;
  uint64_t next_id;
  int64_t last_ckpt_mono, last_snap_mono;
  uint64_t last_ckpt_samples;
  void (*quiesce)(void *ctx); /* see mtld_durable_set_quiesce; NULL: none */
  void *quiesce_ctx;

  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job_t q[QUEUE];
  int head, count, busy, stop;
  mtld_status_t last_status; /* of the last job finished */
  char last_err[512];
  kind_stats_t stats[3];  /* by kind */
  mtld_snapshot_t *spare; /* a written snapshot, recycled by the next capture */
  void *spare_buf;        /* a written checkpoint's trainer state, recycled likewise */
  size_t spare_cap;
};

/* ---- offsets of the cut ------------------------------------------------- */

typedef struct {
  mtld_source_offset_t *v;
  int n, cap;
} offsets_t;

static int add_offset(void *ctx, const char *topic, int32_t partition, int64_t next,
                      int64_t max_time) {
  offsets_t *o = ctx;
  if (o->n == o->cap) {
    int cap = o->cap ? o->cap * 2 : 16;
    mtld_source_offset_t *nv = realloc(o->v, sizeof(*nv) * (size_t)cap);
    if (!nv) return 1;
    o->v = nv;
    o->cap = cap;
  }
  mtld_source_offset_t *e = &o->v[o->n++];
  snprintf(e->topic, sizeof(e->topic), "%s", topic);
  e->partition = partition;
  e->next_offset = next;
  e->max_time_ms = max_time;
  return 0;
}

/* The item set of a snapshot: the store's committed items and their
 * categories (capture sorts them if the store's order is not the ids'). */
typedef struct {
  uint64_t *ids, *cats;
  size_t n, cap;
  int failed; /* out of memory */
} items_t;

static int add_item(void *ctx, uint64_t id, const mtld_item_features_t *f) {
  items_t *it = ctx;
  if (it->n == it->cap) {
    size_t cap = it->cap ? it->cap * 2 : 1024;
    uint64_t *ni = realloc(it->ids, sizeof(*ni) * cap);
    if (ni) it->ids = ni;
    uint64_t *nc = ni ? realloc(it->cats, sizeof(*nc) * cap) : NULL;
    if (nc) it->cats = nc;
    if (!ni || !nc) return it->failed = 1;
    it->cap = cap;
  }
  it->ids[it->n] = id;
  it->cats[it->n++] = f->category_id;
  return 0;
}

/* ---- the worker --------------------------------------------------------- */

static mtld_status_t run_job(mtld_durable_t *d, job_t *j, char *err, size_t errlen) {
  mtld_status_t st = MTLD_OK;
  if (j->kind == JOB_CHECKPOINT) {
    st = mtld_checkpoint_write_file(j->tmp, "trainer.bin", j->trainer_buf, j->trainer_len, err,
                                    errlen);
    if (st == MTLD_OK) st = mtld_checkpoint_write_meta(j->tmp, &j->meta, err, errlen);
    if (st == MTLD_OK)
      st = mtld_checkpoint_commit(d->cfg->checkpoint_dir, j->id, j->keep, NULL, 0, err, errlen);
    /* a failed cut leaves nothing behind: the next interval starts anew */
    if (st != MTLD_OK) mtld_rmtree(j->tmp);
    /* keep the buffer for the next checkpoint: its pages are mapped already */
    pthread_mutex_lock(&d->mu);
    if (!d->spare_buf) {
      d->spare_buf = j->trainer_buf, d->spare_cap = j->trainer_cap;
      j->trainer_buf = NULL;
    }
    pthread_mutex_unlock(&d->mu);
    free(j->trainer_buf);
    free(j->meta.offsets);
  } else {
    char path[PATH_MAX];
    st =
        mtld_snapshot_save(j->snap, d->cfg->snapshot_dir, j->keep, path, sizeof(path), err, errlen);
    /* keep it for the next capture: its buffers are mapped already */
    pthread_mutex_lock(&d->mu);
    if (!d->spare) d->spare = j->snap, j->snap = NULL;
    pthread_mutex_unlock(&d->mu);
    mtld_snapshot_free(j->snap);
    if (st == MTLD_OK) mtld_log(MTLD_LOG_DEBUG, "snapshot %s written", path);
  }
  return st;
}

static void finish_job(mtld_durable_t *d, const job_t *j, mtld_status_t st, const char *err) {
  kind_stats_t *ks = &d->stats[j->kind];
  double secs = (double)(mtld_mono_ms() - j->started_mono_ms) / 1000.0;
  if (st == MTLD_OK) {
    ks->done++;
    ks->last_seconds = secs;
    ks->last_done_wall_ms = mtld_wall_ms();
    if (j->kind == JOB_CHECKPOINT)
      mtld_log(MTLD_LOG_INFO, "checkpoint %" PRIu64 " complete (%.3f s)", j->id, secs);
  } else {
    ks->failed++;
    mtld_log(MTLD_LOG_ERR, "%s failed (retried at the next interval): %s",
             j->kind == JOB_CHECKPOINT ? "checkpoint" : "snapshot", err);
  }
  d->last_status = st;
  snprintf(d->last_err, sizeof(d->last_err), "%s", err);
}

static void *worker(void *arg) {
  mtld_durable_t *d = arg;
  pthread_mutex_lock(&d->mu);
  for (;;) {
    while (!d->count && !d->stop) pthread_cond_wait(&d->cv, &d->mu);
    if (!d->count && d->stop) break;
    job_t j = d->q[d->head];
    d->head = (d->head + 1) % QUEUE;
    d->count--;
    d->busy = 1;
    pthread_mutex_unlock(&d->mu);
    char err[512] = "";
    mtld_status_t st = run_job(d, &j, err, sizeof(err));
    pthread_mutex_lock(&d->mu);
    finish_job(d, &j, st, err);
    d->busy = 0;
    pthread_cond_broadcast(&d->cv);
  }
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

/* Queues a job; with wait, returns its outcome once done.  A full queue
 * (the disk is slower than the intervals) drops the job: the next one is
 * due soon and supersedes it. */
static mtld_status_t submit(mtld_durable_t *d, job_t *j, int wait, char *err, size_t errlen) {
  pthread_mutex_lock(&d->mu);
  if (d->count == QUEUE) {
    pthread_mutex_unlock(&d->mu);
    snprintf(err, errlen, "writer busy: %s skipped",
             j->kind == JOB_CHECKPOINT ? "checkpoint" : "snapshot");
    return MTLD_ERR_RETRY;
  }
  d->q[(d->head + d->count) % QUEUE] = *j;
  d->count++;
  pthread_cond_broadcast(&d->cv);
  mtld_status_t st = MTLD_OK;
  if (wait) {
    while (d->count || d->busy) pthread_cond_wait(&d->cv, &d->mu);
    st = d->last_status;
    if (st != MTLD_OK) snprintf(err, errlen, "%s", d->last_err);
  }
  pthread_mutex_unlock(&d->mu);
  return st;
}

static int queued(mtld_durable_t *d, int kind) {
  int n = 0;
  pthread_mutex_lock(&d->mu);
  for (int i = 0; i < d->count; i++) n += d->q[(d->head + i) % QUEUE].kind == kind;
  pthread_mutex_unlock(&d->mu);
  return n;
}

/* ---- public ------------------------------------------------------------- */

static void skip_cb(void *ctx, const char *path, const char *reason) {
  (void)ctx;
  mtld_log(MTLD_LOG_WARNING, "checkpoint %s passed over: %s", path, reason);
}

static int store_exists(const char *path) {
  char f[PATH_MAX];
  struct stat sb;
  snprintf(f, sizeof(f), "%s/CURRENT", path);
  return stat(f, &sb) == 0;
}

/* 1 when the live store's committed offsets are exactly the checkpoint's. */
static int live_matches(const char *store_path, const mtld_checkpoint_meta_t *meta) {
  if (!store_exists(store_path)) return 0;
  char err[512];
  mtld_store_t *st;
  if (mtld_store_open_readonly(&st, store_path, err, sizeof(err)) != MTLD_OK) return 0;
  offsets_t o = {0};
  mtld_store_foreach_offset(st, add_offset, &o);
  mtld_store_close(st);
  int same = o.n == meta->n_offsets;
  for (int i = 0; same && i < o.n; i++) {
    int hit = 0;
    for (int k = 0; k < meta->n_offsets; k++) {
      const mtld_source_offset_t *m = &meta->offsets[k];
      if (m->partition == o.v[i].partition && strcmp(m->topic, o.v[i].topic) == 0)
        hit = m->next_offset == o.v[i].next_offset;
    }
    same = hit;
  }
  free(o.v);
  return same;
}

/* With store.verify_on_start: opens the store at path read-only and reads
 * every block with checksums verified.  MTLD_OK (also when off or absent),
 * or MTLD_ERR_CORRUPT / MTLD_ERR_IO with err naming the damaged file. */
static mtld_status_t verify_store(const mtld_config_t *cfg, const char *path, const char *what,
                                  char *err, size_t errlen) {
  if (!cfg->store_verify_on_start || !store_exists(path)) return MTLD_OK;
  int64_t t0 = mtld_mono_ms();
  char e[768];
  mtld_store_t *st;
  mtld_status_t rc = mtld_store_open_readonly(&st, path, e, sizeof(e));
  uint64_t keys = 0;
  if (rc == MTLD_OK) {
    rc = mtld_store_verify(st, &keys, e, sizeof(e));
    mtld_store_close(st);
  }
  if (rc != MTLD_OK) {
    if (rc != MTLD_ERR_IO) rc = MTLD_ERR_CORRUPT;
    snprintf(err, errlen, "%s %s is damaged, refusing to start: %s", what, path, e);
    return rc;
  }
  mtld_log(MTLD_LOG_INFO, "%s %s verified: %" PRIu64 " keys, checksums good (%.2f s)", what, path,
           keys, (double)(mtld_mono_ms() - t0) / 1000.0);
  return MTLD_OK;
}

mtld_status_t mtld_durable_recover(const mtld_config_t *cfg, mtld_trainer_t **trainer, int *found,
                                   char *err, size_t errlen) {
  *trainer = NULL;
  *found = 0;
  /* A damaged live store is refused, never silently replaced: its .sst
   * files are hard-linked into the checkpoints, which may share the damage
   * (README "Failures and what mtld does"). */
  mtld_status_t st = verify_store(cfg, cfg->store_path, "store", err, errlen);
  if (st != MTLD_OK) return st;
  if (!cfg->trainer_enabled) return MTLD_OK; /* the store alone is exactly once */
  uint64_t id;
  char path[PATH_MAX];
  st = mtld_checkpoint_latest(cfg->checkpoint_dir, &id, path, sizeof(path), skip_cb, NULL, err,
                              errlen);
  if (st == MTLD_ERR_NOTFOUND) {
    if (store_exists(cfg->store_path))
      mtld_log(MTLD_LOG_WARNING,
               "store %s exists but %s holds no checkpoint: the model starts new on the "
               "existing features",
               cfg->store_path, cfg->checkpoint_dir);
    return MTLD_OK;
  }
  if (st != MTLD_OK) return st;
  mtld_checkpoint_meta_t meta;
  st = mtld_checkpoint_read_meta(path, &meta, err, errlen);
  if (st != MTLD_OK) return st;
  int same = live_matches(cfg->store_path, &meta);
  mtld_checkpoint_meta_free(&meta);
  if (!same) { /* its store replaces the live one: check it first */
    char cstore[PATH_MAX];
    if (snprintf(cstore, sizeof(cstore), "%.*s/store", PATH_MAX - 16, path) >= (int)sizeof(cstore))
      cstore[0] = 0;
    st = verify_store(cfg, cstore, "checkpoint store", err, errlen);
    if (st != MTLD_OK) return st;
  }
  st = mtld_checkpoint_restore(path, same ? NULL : cfg->store_path, trainer, NULL, err, errlen);
  if (st != MTLD_OK) return st;
  *found = 1;
  /* the checkpoint's architecture is kept; reloadable settings follow the file */
  mtld_trainer_apply_reloadable(*trainer, &cfg->model);
  mtld_log(MTLD_LOG_NOTICE, "restored checkpoint %" PRIu64 " (%s): %s", id, path,
           same ? "the store matches it, nothing to replay"
                : "the store was replaced by the checkpoint's; replaying from its offsets");
  return MTLD_OK;
}

mtld_status_t mtld_durable_new(mtld_durable_t **out, const mtld_config_t *cfg, mtld_store_t *store,
                               mtld_trainer_t *trainer, const mtld_watermark_t *wm, char *err,
                               size_t errlen) {
  mtld_durable_t *d = calloc(1, sizeof(*d));
  if (!d) return MTLD_ERR_NOMEM;
  d->cfg = cfg;
  d->store = store;
  d->trainer = trainer;
  d->wm = wm;
  d->next_id = mtld_checkpoint_next_id(cfg->checkpoint_dir);
  d->last_ckpt_mono = d->last_snap_mono = mtld_mono_ms();
  pthread_mutex_init(&d->mu, NULL);
  pthread_cond_init(&d->cv, NULL);
  if (pthread_create(&d->thread, NULL, worker, d) != 0) {
    snprintf(err, errlen, "cannot start the checkpoint writer thread");
    free(d);
    return MTLD_ERR_NOMEM;
  }
  *out = d;
  return MTLD_OK;
}

void mtld_durable_set_quiesce(mtld_durable_t *d, void (*fn)(void *ctx), void *ctx) {
  d->quiesce = fn;
  d->quiesce_ctx = ctx;
}

static void quiesce(mtld_durable_t *d) {
  if (d->quiesce) d->quiesce(d->quiesce_ctx);
}

static uint64_t samples_seen(mtld_durable_t *d) {
  mtld_trainer_t *t = d->trainer;
  if (!t) return 0;
  quiesce(d);
  mtld_trainer_stats_t s;
  mtld_trainer_stats(t, &s);
  return s.observed;
}

/* A capture on the main thread failed (the store's hard links, the temp
 * directory): counted like a failed write, and the next attempt waits for
 * the next interval instead of stalling every batch. */
static void capture_failed(mtld_durable_t *d, int kind) {
  pthread_mutex_lock(&d->mu);
  d->stats[kind].failed++;
  pthread_mutex_unlock(&d->mu);
  if (kind == JOB_CHECKPOINT) {
    d->last_ckpt_mono = mtld_mono_ms();
    d->last_ckpt_samples = samples_seen(d);
  } else {
    d->last_snap_mono = mtld_mono_ms();
  }
}

mtld_status_t mtld_durable_checkpoint(mtld_durable_t *d, int wait, char *err, size_t errlen) {
  mtld_trainer_t *t = d->trainer;
  if (!t) return MTLD_OK; /* no model: the store alone is the state */
  int64_t t0 = mtld_mono_ms();
  quiesce(d); /* the cut: the trainer state that matches the store's offsets */
  job_t j = {.kind = JOB_CHECKPOINT,
             .id = d->next_id++,
             .keep = d->cfg->checkpoint_keep,
             .started_mono_ms = t0};
  mtld_status_t st =
      mtld_checkpoint_begin(d->cfg->checkpoint_dir, j.id, j.tmp, sizeof(j.tmp), err, errlen);
  if (st != MTLD_OK) {
    capture_failed(d, JOB_CHECKPOINT);
    return st;
  }
  char sdir[PATH_MAX + 8];
  snprintf(sdir, sizeof(sdir), "%s/store", j.tmp);
  mtld_store_t *store = d->store;
  st = mtld_store_checkpoint(store, sdir, err, errlen);
  if (st == MTLD_OK) {
    pthread_mutex_lock(&d->mu);
    j.trainer_buf = d->spare_buf, j.trainer_cap = d->spare_cap;
    d->spare_buf = NULL;
    pthread_mutex_unlock(&d->mu);
    st = mtld_trainer_resave_mem(t, &j.trainer_buf, &j.trainer_len, &j.trainer_cap, err, errlen);
  }
  offsets_t o = {0};
  if (st == MTLD_OK) mtld_store_foreach_offset(store, add_offset, &o);
  if (st != MTLD_OK) {
    free(o.v);
    mtld_rmtree(j.tmp);
    capture_failed(d, JOB_CHECKPOINT);
    return st;
  }
  j.meta = (mtld_checkpoint_meta_t){.id = j.id,
                                    .created_ms = mtld_wall_ms(),
                                    .watermark_ms = mtld_watermark_get(d->wm),
                                    .samples = samples_seen(d),
                                    .n_offsets = o.n,
                                    .offsets = o.v};
  double stall = (double)(mtld_mono_ms() - t0) / 1000.0;
  d->stats[JOB_CHECKPOINT].last_stall_seconds = stall;
  if (stall > d->stats[JOB_CHECKPOINT].max_stall_seconds)
    d->stats[JOB_CHECKPOINT].max_stall_seconds = stall;
  d->last_ckpt_mono = mtld_mono_ms();
  d->last_ckpt_samples = j.meta.samples;
  st = submit(d, &j, wait, err, errlen);
  if (st == MTLD_ERR_RETRY) { /* not queued: ours to free */
    free(j.trainer_buf);
    free(j.meta.offsets);
    mtld_rmtree(j.tmp);
  }
  return st;
}

mtld_status_t mtld_durable_snapshot(mtld_durable_t *d, int wait, char *err, size_t errlen) {
  mtld_trainer_t *t = d->trainer;
  if (!t) return MTLD_OK;
  int64_t t0 = mtld_mono_ms();
  quiesce(d);
  const mtld_feature_def_t *fd = &d->cfg->features;
  mtld_snapshot_meta_t meta = {0};
  meta.features = *fd;
  meta.schema_hash = mtld_feature_def_hash(fd);
  meta.n_dense = mtld_features_dense_count(fd);
  meta.created_ms = mtld_wall_ms();
  meta.watermark_ms = mtld_watermark_get(d->wm);
  meta.join_mode = d->cfg->joiner.mode;
  meta.negatives_per_positive = d->cfg->joiner.negatives_per_positive;
  offsets_t o = {0};
  mtld_store_foreach_offset(d->store, add_offset, &o);
  meta.n_offsets = o.n;
  meta.offsets = o.v;
  items_t items = {0};
  mtld_store_foreach_item(d->store, add_item, &items);
  if (items.failed) {
    mtld_log_rl(MTLD_LOG_WARNING, "snapshot-items",
                "snapshot: item set not recorded (out of memory)");
    items.n = 0;
  }
  meta.n_items = items.n;
  meta.item_ids = items.ids;
  meta.item_cats = items.cats;
  job_t j = {.kind = JOB_SNAPSHOT, .keep = d->cfg->snapshot_keep, .started_mono_ms = t0};
  pthread_mutex_lock(&d->mu);
  j.snap = d->spare;
  d->spare = NULL;
  pthread_mutex_unlock(&d->mu);
  mtld_status_t st = mtld_snapshot_recapture(&j.snap, t, &meta, err, errlen);
  free(o.v);
  free(items.ids);
  free(items.cats);
  if (st != MTLD_OK) {
    capture_failed(d, JOB_SNAPSHOT);
    return st;
  }
  double stall = (double)(mtld_mono_ms() - t0) / 1000.0;
  d->stats[JOB_SNAPSHOT].last_stall_seconds = stall;
  if (stall > d->stats[JOB_SNAPSHOT].max_stall_seconds)
    d->stats[JOB_SNAPSHOT].max_stall_seconds = stall;
  d->last_snap_mono = mtld_mono_ms();
  st = submit(d, &j, wait, err, errlen);
  if (st == MTLD_ERR_RETRY) mtld_snapshot_free(j.snap);
  return st;
}

void mtld_durable_tick(mtld_durable_t *d) {
  char err[512];
  int64_t now = mtld_mono_ms();
  const mtld_config_t *c = d->cfg;
  int ckpt_due =
      (c->checkpoint_interval_ms > 0 && now - d->last_ckpt_mono >= c->checkpoint_interval_ms) ||
      (c->checkpoint_every_samples > 0 &&
       samples_seen(d) - d->last_ckpt_samples >= (uint64_t)c->checkpoint_every_samples);
  if (ckpt_due && !queued(d, JOB_CHECKPOINT) &&
      mtld_durable_checkpoint(d, 0, err, sizeof(err)) != MTLD_OK)
    mtld_log_rl(MTLD_LOG_ERR, "checkpoint", "checkpoint failed (retried at the next interval): %s",
                err);
  if (c->snapshot_interval_ms > 0 && now - d->last_snap_mono >= c->snapshot_interval_ms &&
      !queued(d, JOB_SNAPSHOT) && mtld_durable_snapshot(d, 0, err, sizeof(err)) != MTLD_OK)
    mtld_log_rl(MTLD_LOG_ERR, "snapshot", "snapshot failed (retried at the next interval): %s",
                err);
}

void mtld_durable_render_metrics(mtld_durable_t *d, mtld_metrics_buf_t *b) {
  static const char *const names[3] = {NULL, "checkpoint", "snapshot"};
  if (!d) return;
  pthread_mutex_lock(&d->mu);
  kind_stats_t s[3];
  memcpy(s, d->stats, sizeof(s));
  pthread_mutex_unlock(&d->mu);
  int64_t now = mtld_wall_ms();
  struct {
    const char *name, *type, *help;
  } fam[] = {
      {"mtld_durable_writes_total", "counter", "Checkpoints / snapshots written, by kind."},
      {"mtld_durable_failures_total", "counter", "Checkpoints / snapshots that failed."},
      {"mtld_durable_write_seconds", "gauge", "Duration of the last write (worker thread)."},
      {"mtld_durable_stall_seconds", "gauge",
       "Ingestion stall of the last capture (store hard links + state copy)."},
      {"mtld_durable_stall_seconds_max", "gauge", "Longest ingestion stall so far."},
      {"mtld_durable_age_seconds", "gauge", "Seconds since the last one was written (NaN: never)."},
  };
  for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
    mtld_metrics_family(b, fam[f].name, fam[f].type, fam[f].help);
    for (int k = 1; k <= 2; k++) {
      double v = f == 0                   ? (double)s[k].done
                 : f == 1                 ? (double)s[k].failed
                 : f == 2                 ? s[k].last_seconds
                 : f == 3                 ? s[k].last_stall_seconds
                 : f == 4                 ? s[k].max_stall_seconds
                 : s[k].last_done_wall_ms ? (double)(now - s[k].last_done_wall_ms) / 1000.0
                                          : NAN;
      mtld_metrics_label_t l[1] = {{"kind", names[k]}};
      mtld_metrics_sample_kv(b, fam[f].name, l, 1, v);
    }
  }
}

void mtld_durable_free(mtld_durable_t *d) {
  if (!d) return;
  pthread_mutex_lock(&d->mu);
  d->stop = 1;
  pthread_cond_broadcast(&d->cv);
  pthread_mutex_unlock(&d->mu);
  pthread_join(d->thread, NULL);
  mtld_snapshot_free(d->spare);
  free(d->spare_buf);
  pthread_mutex_destroy(&d->mu);
  pthread_cond_destroy(&d->cv);
  free(d);
}
