/* config.h - the daemon's configuration (libconfig file), parsed and validated
 * as a whole into one struct.  Errors name the key and the line.
 *
 * Reload (SIGHUP): mtld_config_reload() parses the new file into a new
 * struct and validates all of it; if that fails nothing changes, else it
 * copies into the running config every changed key whose row is reloadable
 * and keeps (and reports) every changed key that is not.  The daemon owns the
 * one running config; subsystems borrow it (const) and are told when a
 * reload changed it, to re-derive what they keep (a learning rate in the
 * model, a producer for the dead-letter topic).
 *
 * Every key is one row of a table in config.c (dotted path, type, range,
 * reloadable); parsing, printing, diffing and reloading walk that table, so a
 * new setting -- reloadable or not -- is a new field here plus a row there
 * (and its use), documented in conf/mtld.conf. */
#ifndef MTLD_CONFIG_H
#define MTLD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "daemon/decode.h"
#include "features/demand.h"
#include "features/joiner.h"
#include "features/store.h"
#include "trainer/model.h"
#include "common/status.h"

#define MTLD_MAX_TOPICS 16
#define MTLD_MAX_KAFKA_PROPS 64

typedef enum { MTLD_SOURCE_KAFKA = 0, MTLD_SOURCE_FILE } mtld_source_type_t;

/* What a partition that resumes past its stored offset (records gone from
 * Kafka: retention, DeleteRecords, a reset to "latest") does: stop the daemon
 * before anything after the gap is applied, or count it, report it and go on. */
typedef enum { MTLD_GAP_STOP = 0, MTLD_GAP_CONTINUE = 1 } mtld_on_gap_t;

typedef struct {
  char name[128]; /* librdkafka property, e.g. "bootstrap.servers" */
  char value[512];
} mtld_kv_t;

typedef struct {
  char path[1024]; /* the file this came from */

  /* source */
  mtld_source_type_t source_type; /* source.type = "kafka" | "file" */
  char topics[MTLD_MAX_TOPICS][256];
  int n_topics;
  char source_file[1024]; /* source.file (type "file") */
  mtld_format_t format;   /* source.format = "auto" | "protobuf" | "json" */
  int on_gap;             /* source.on_gap: mtld_on_gap_t */

  /* kafka: every key of group `kafka` passed to librdkafka; '_' in a libconfig
   * name becomes '.' (bootstrap_servers -> bootstrap.servers), values as text
   * (numbers and booleans converted).  group.id defaults to "mtld" (it is in
   * this list unless the file sets it). */
  mtld_kv_t kafka[MTLD_MAX_KAFKA_PROPS];
  int n_kafka;

  char dead_letter_topic[256]; /* dead_letter.topic; "" = none (reloadable) */

  /* scaleout (README "Scale-out"): several instances in one group.  "" =
   * off (one instance, nothing of it runs). */
  char scaleout_changelog_topic[256]; /* scaleout.changelog_topic: compacted, one partition
                                         per source partition */
  char scaleout_group_topic[256];     /* scaleout.group_topic: compacted, 1 partition, the
                                         group's definition record; default
                                         "<changelog_topic>.group" */
  int scaleout_restore_timeout_ms;    /* scaleout.restore_timeout: one partition's restore
                                         must end within it, default "4m" */

  /* store */
  char store_path[1024];     /* store.path, default "/var/lib/mtld/store" */
  int store_sync;            /* store.sync, default true */
  int store_block_cache_mb;  /* store.block_cache_mb: RocksDB block cache (data, index and
                                filter blocks), MiB, default 64 */
  int store_write_buffer_mb; /* store.write_buffer_mb: RocksDB memtables of all column
                                families together, MiB, default 128 */
  int batch_max_events;      /* store.batch_max_events, default 2000 (reloadable) */
  int batch_max_ms;          /* store.batch_max_ms (wall clock pacing), default 200 (reloadable) */
  int commit_retry_timeout_ms; /* store.commit_retry_timeout: failing commits are retried
                                  (consumption paused) this long, then exit 4; default "5m" */
  int store_verify_on_start;   /* store.verify_on_start: read every block of the store (and
                                  of a checkpoint's store restored) at start; default true */
  int store_cache_mb; /* store.cache_mb: the store's cache of committed users/items (decoded),
                         MiB; 0 = none; default 64 */

  mtld_feature_def_t features;   /* features.* */
  mtld_validate_limits_t limits; /* validation.* (reloadable) */

  /* joiner.* (features/joiner.h): windows, mode, negatives; the watermark's
   * allowed lateness and idleness (event time) */
  mtld_joiner_config_t joiner;
  int64_t allowed_lateness_ms;    /* joiner.allowed_lateness, default 60 s */
  int64_t idle_ms;                /* joiner.idle_after, default 0 = never idle */
  int64_t idle_release_ms;        /* joiner.idle_release (wall clock), default 0 = off */
  int64_t no_samples_warn_events; /* joiner.warn_no_samples_after, default 10000 (0 = off) */
  int64_t review_window_ms;       /* joiner.review_window, default 7 d: the review label's
                                     window after a purchase, used only when a model task
                                     learns label "review" (mtld_config_review_window_ms) */
  mtld_demand_config_t demand;    /* joiner.demand_horizon (default 1 h) and
                                     joiner.demand_windows (default 6): the item demand
                                     windows, used only when a model task learns label
                                     "demand" (mtld_config_demand_on) */

  /* model.* (trainer/model.h).  model.n_dense and model.n_fields are not
   * keys: they follow the feature definitions (mtld_features_dense_count
   * plus the numeric attributes; the fixed fields plus one per categorical
   * attribute, see features.attributes).  Reloadable:
   * model.lr, model.emb_lr, model.tasks[].weight. */
  mtld_model_config_t model;
  int trainer_enabled;        /* trainer.enabled, default true */
  int64_t report_interval_ms; /* trainer.report_interval, default 60 s (reloadable) */
  char dump_samples[1024];    /* trainer.dump_samples: file of released samples, "" = none */
  int rank_k;                 /* trainer.rank_k: HR@K / MRR@K of clicked items, 0 = off (20) */
  int rank_every;             /* trainer.rank_every: every N-th click is ranked (100) */
  int rank_candidates;        /* trainer.rank_candidates: catalog bound (500) */

  /* checkpoint.* and snapshot.* (consistent cuts; serving snapshots) */
  char checkpoint_dir[1024];        /* checkpoint.dir, default "/var/lib/mtld/checkpoints" */
  int64_t checkpoint_interval_ms;   /* checkpoint.interval, default 300 s; 0 = only at stop (R) */
  int64_t checkpoint_every_samples; /* checkpoint.every_samples, default 0 = off (R) */
  int checkpoint_keep;              /* checkpoint.keep, default 3 (R) */
  char snapshot_dir[1024];          /* snapshot.dir, default "/var/lib/mtld/snapshots" */
  int64_t snapshot_interval_ms;     /* snapshot.interval, default 60 s; 0 = off (R) */
  int snapshot_keep;                /* snapshot.keep, default 5 (R) */

  /* scaleout.*: one model over several instances (daemon/modelsync.h) */
  char scaleout_model_topic[256];    /* scaleout.model_topic: deltas and bases, "" = off */
  int64_t scaleout_sync_interval_ms; /* scaleout.sync_interval: delta publication, default 1 s */
  int64_t scaleout_base_interval_ms; /* scaleout.base_interval: base publication, default 60 s */
  int scaleout_sync_samples;         /* scaleout.sync_samples: also publish after this many
                                        samples trained since the last delta; 0 = by time only */
  int scaleout_sync_accumulators;    /* scaleout.sync_accumulators: the shared rows' Adagrad
                                        accumulators travel with them (trainer/delta.h), default
                                        true */
  int scaleout_max_stale_rounds;     /* scaleout.max_stale_rounds: an instance trains past its
                                        round r + S only once it applied every live peer's round
                                        r; -1 = no bound (asynchronous), default 0 */
  int64_t scaleout_peer_timeout_ms;  /* scaleout.peer_timeout: a peer silent this long is not
                                        waited for, default 5 s */

  /* operations */
  char log_level[16];      /* log.level = "debug"|"info"|"notice"|"warning"|"err" (reloadable) */
  int metrics_enabled;     /* metrics.enabled, default true */
  char metrics_listen[64]; /* metrics.listen, default "127.0.0.1" */
  int metrics_port;        /* metrics.port, default 9464; 0 = pick a free port */
  int shutdown_timeout_ms; /* shutdown_timeout (a duration), default "30s" (reloadable) */
  int status_interval_ms;  /* status_interval (a duration), default "5s" (reloadable) */
} mtld_config_t;

/* Fills every default.  The defaults alone are not a valid config: a Kafka
 * source needs source.topics and kafka.bootstrap_servers.  Any thread. */
void mtld_config_default(mtld_config_t *cfg);

/* Parses and validates a file into *cfg (defaults first).  On error returns
 * MTLD_ERR_CONFIG and err names the file, line and key, e.g.
 * "mtld.conf:12: store.batch_max_events: must be between 1 and 1000000";
 * *cfg is then left untouched (so a failed reload keeps the old config).
 * Unknown keys are errors (except inside `kafka`).  MTLD_ERR_NOMEM if the
 * work copy cannot be allocated.  `@include` paths are relative to the
 * file's directory.  Any thread (no global state). */
mtld_status_t mtld_config_load(mtld_config_t *cfg, const char *path, char *err, size_t errlen);

/* Same, from a string (tests); `name` is used in messages and in cfg->path. */
mtld_status_t mtld_config_load_string(mtld_config_t *cfg, const char *text, const char *name,
                                      char *err, size_t errlen);

/* Prints the effective config in libconfig syntax (for --check-config); the
 * output loads again into an equal config. */
void mtld_config_print(const mtld_config_t *cfg, FILE *out);

/* The review window the joiner labels with: joiner.review_window when a
 * model task learns label "review", else 0 (no review label: the joiner
 * behaves as without the key).  Pure; any thread. */
int64_t mtld_config_review_window_ms(const mtld_config_t *cfg);

/* Whether a model task learns label "demand": the pipeline then keeps the
 * item demand windows (features/demand.h) and releases item samples, and
 * model.n_dense counts their MTLD_DEMAND_DENSE raw features.  Pure. */
int mtld_config_demand_on(const mtld_config_t *cfg);

/* Compares old and new (cfg->path is not compared).  For every changed key
 * calls fn(ctx, key, reloadable) with its dotted name ("store.batch_max_ms",
 * "kafka.session_timeout_ms" as written in the file); fn may be NULL.
 * Tasks: a changed weight is "model.tasks.NAME.weight" (reloadable); any
 * other change of the task list is one "model.tasks" (not reloadable).
 * Returns the number of changed keys that are NOT reloadable. */
int mtld_config_diff(const mtld_config_t *old_cfg, const mtld_config_t *new_cfg,
                     void (*fn)(void *ctx, const char *key, int reloadable), void *ctx);

/* Applies a reload: for every key that differs between *running and *next
 * (a config that loaded and validated as a whole), copies the value into
 * *running when the key's row is reloadable, else keeps the running value.
 * Calls fn(ctx, key, reloadable) for each changed key, as mtld_config_diff
 * does (fn may be NULL).  Returns the number of changed keys refused (not
 * reloadable).  running->path is kept.  Thread: the owner of *running; other
 * threads may read only its non-reloadable keys meanwhile. */
int mtld_config_apply(mtld_config_t *running, const mtld_config_t *next,
                      void (*fn)(void *ctx, const char *key, int reloadable), void *ctx);

/* Reload from a file: mtld_config_load of `path` (may be running->path) into
 * a new struct, then mtld_config_apply.  On a load error returns it (err as
 * mtld_config_load) and *running is untouched; else MTLD_OK and *refused (if
 * not NULL) = the count of refused keys. */
mtld_status_t mtld_config_reload(mtld_config_t *running, const char *path, int *refused,
                                 void (*fn)(void *ctx, const char *key, int reloadable), void *ctx,
                                 char *err, size_t errlen);

/* The key table, for tests and tools: the dotted path of row i (NULL when
 * i >= mtld_config_key_count()) and, if reloadable is not NULL, whether
 * SIGHUP may change it.  Rows whose reloadable part is finer than the row
 * (model.tasks: each task's weight) read 0 here.  Any thread. */
size_t mtld_config_key_count(void);
const char *mtld_config_key(size_t i, int *reloadable);

/* Parses a duration: digits followed by a unit, one of ms, s, m, h, d
 * ("250ms", "90s", "5m", "1h", "7d").  Returns MTLD_OK and *ms, or
 * MTLD_ERR_INVALID (no digits, no or unknown unit, overflow).  Any thread. */
mtld_status_t mtld_config_parse_duration_ms(const char *s, int64_t *ms);

/* Writes ms (>= 0) with the largest unit that divides it exactly ("90s",
 * "1h", "250ms"; 0 -> "0s"); the inverse of the parser.  Any thread. */
void mtld_config_format_duration(int64_t ms, char *buf, size_t len);

#endif
