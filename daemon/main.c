/* main.c - the mtld daemon: command line, signals, the main loop.
 *
 * Runs in the foreground (systemd Type=notify; never daemonizes).  Main owns
 * the daemon's state - the feature store, the watermark and the trainer -
 * and lends it out: the pipeline writes the store and the watermark and
 * hands released samples to main's sample sink (the trainer, the sample
 * dump); durable/ cuts checkpoints and snapshots from the same three.  The
 * main loop polls the source, processes records through the pipeline,
 * commits a batch when it is due, publishes metrics and STATUS, and pets the
 * watchdog.  Signal handlers only set flags; the loop does the work.
 *
 * Exit codes (documented in --help and README.md):
 *   0  clean stop (signal, or end of a replayed file)
 *   1  configuration invalid (--check-config, start-up, or bad command line)
 *   2  state refused (store built with other feature definitions, cannot open,
 *      damaged: a checksum or read error at start or while running)
 *   3  source failed (Kafka client or event file could not be set up/read,
 *      or a partition was assigned that the configuration cannot map)
 *   4  runtime failure (store commits failing for store.commit_retry_timeout,
 *      shutdown bound exceeded) */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/changelog.h"
#include "daemon/config.h"
#include "durable/durable.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/modelsync.h"
#include "daemon/notify.h"
#include "daemon/pipeline.h"
#include "daemon/source.h"
#include "daemon/trainfeed.h"
#include "daemon/userrows.h"
#include "features/joiner.h"
#include "common/clock.h"
#include "features/store.h"
#include "features/watermark.h"
#include "trainer/sampledump.h"
#include "trainer/train.h"

/* Released samples queued for the trainer's thread (about 1.2 KB each): a
 * few batches' worth, so the main thread rarely waits for it. */
#define TRAINFEED_SAMPLES 4096

enum { EXIT_OK = 0, EXIT_CONFIG = 1, EXIT_STATE = 2, EXIT_SOURCE = 3, EXIT_RUNTIME = 4 };

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reload_requested;

/* shutdown_timeout in whole seconds (rounded up), read by on_stop. */
static volatile sig_atomic_t shutdown_bound_s = 30;

static void on_stop(int sig) {
  if (stop_requested) _exit(128 + sig); /* second signal: exit at once */
  stop_requested = sig;
  /* The bound covers everything from here (a poll or a flush in progress,
   * the drain, leaving the group): when it passes, on_alarm ends the
   * process.  alarm() is async-signal-safe. */
  alarm((unsigned)shutdown_bound_s);
}

static void on_alarm(int sig) {
  static const char msg[] = "mtld: shutdown_timeout exceeded: exiting now "
                            "(uncommitted records will be replayed)\n";
  (void)sig;
  ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
  (void)w;
  _exit(EXIT_RUNTIME);
}

static void set_shutdown_bound(int timeout_ms) {
  shutdown_bound_s = (timeout_ms + 999) / 1000;
}

static void on_hup(int sig) {
  (void)sig;
  reload_requested = 1;
}

static void install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_hup;
  sigaction(SIGHUP, &sa, NULL);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
}

static void usage(FILE *out) {
  fprintf(out, "usage: mtld -c FILE [--check-config]\n"
               "       mtld --version | --help\n"
               "\n"
               "Online multi-scenario, multi-task learning daemon: consumes e-commerce events\n"
               "from Kafka (or replays an event file), keeps per-user and per-item features in\n"
               "RocksDB exactly once, joins delayed labels and trains a shared model online.\n"
               "Runs in the foreground (systemd Type=notify).  SIGHUP reloads the config,\n"
               "SIGTERM/SIGINT drain, commit and exit (a second one exits at once).\n"
               "\n"
               "  -c, --config FILE   configuration file (libconfig syntax)\n"
               "      --check-config  parse and validate FILE, print the effective config\n"
               "  -V, --version       print the version\n"
               "  -h, --help          this text\n"
               "\n"
               "exit codes: 0 clean stop, 1 configuration invalid, 2 state refused (store),\n"
               "            3 source failed, 4 runtime failure\n");
}

typedef struct {
  mtld_config_t cfg;
  mtld_store_t *store;
  mtld_watermark_t *wm;
  mtld_trainer_t *trainer; /* NULL when trainer.enabled = false */
  mtld_trainfeed_t *feed;  /* the trainer's thread; NULL with no trainer */
  mtld_modelsync_t *sync;  /* scaleout.model_topic: the shared model; NULL when off */
  FILE *dump;              /* trainer.dump_samples, or NULL */
  mtld_pipeline_t *pipe;
  mtld_durable_t *durable;
  mtld_source_t *src;
  mtld_changelog_t *cl;  /* scale-out (scaleout.changelog_topic), else NULL */
  mtld_userrows_t *rows; /* scale-out with a trainer: user rows with their partition */
  mtld_metrics_server_t *metrics;
  mtld_metrics_buf_t mbuf;
  int64_t started_mono_ms;
  uint64_t last_status_records;
  int64_t last_status_ms;
  int shape_checked; /* the joiner mode was checked against the stream's event types */
  int no_samples;    /* no sample after joiner.warn_no_samples_after events (in STATUS) */
} daemon_t;

/* Events seen before the joiner mode is checked against the stream's shape
 * (a few batches: enough to tell a click-only stream). */
#define MTLD_SHAPE_CHECK_EVENTS 1000

/* Says when the config cannot learn from the stream (README, "Your own
 * data"): once, a warning when the joiner mode does not fit the event types
 * seen (after MTLD_SHAPE_CHECK_EVENTS events, or at the end); and a warning,
 * kept in STATUS until samples come, when no sample was released after
 * joiner.warn_no_samples_after events. */
static void advise(daemon_t *d, int at_end) {
  mtld_pipeline_stats_t s;
  mtld_pipeline_stats(d->pipe, &s);
  char msg[512];
  if (!d->shape_checked && (s.events >= MTLD_SHAPE_CHECK_EVENTS || (at_end && s.events > 0))) {
    d->shape_checked = 1;
    if (mtld_joiner_shape_advice(&d->cfg.joiner, s.events_by_type, msg, sizeof(msg)))
      mtld_log(MTLD_LOG_WARNING, "this config cannot learn from this stream: %s", msg);
  }
  if (s.samples_released > 0) {
    d->no_samples = 0;
  } else if (!d->no_samples && s.events > 0 && d->cfg.no_samples_warn_events > 0 &&
             (at_end || s.events >= (uint64_t)d->cfg.no_samples_warn_events)) {
    d->no_samples = 1;
    if (s.pending > 0)
      mtld_log(MTLD_LOG_WARNING,
               "no samples released after %" PRIu64 " events: %" PRIu64
               " pending wait for the watermark to pass joiner.click_window + conversion_window "
               "after them (expected for that long at the start of a live stream; a "
               "finite "
               "topic never gets there: set joiner.idle_release)",
               s.events, s.pending);
    else
      mtld_log(MTLD_LOG_WARNING,
               "no samples released after %" PRIu64 " events and none pending: joiner.mode = "
               "\"%s\" opens samples from %s; %s",
               s.events,
               d->cfg.joiner.mode == MTLD_JOIN_SAMPLED_NEGATIVES ? "sampled_negatives"
                                                                 : "impressions",
               d->cfg.joiner.mode == MTLD_JOIN_SAMPLED_NEGATIVES ? "clicks and reviews"
                                                                 : "impressions and reviews",
               d->cfg.joiner.mode == MTLD_JOIN_SAMPLED_NEGATIVES
                   ? "does the stream have CLICK or REVIEW events?"
                   : "a click-only stream needs joiner.mode = \"sampled_negatives\"");
  }
}

static void log_key(void *ctx, const char *key, int reloadable) {
  (void)ctx;
  if (reloadable)
    mtld_log(MTLD_LOG_INFO, "reload: %s changed: applied", key);
  else
    mtld_log(MTLD_LOG_WARNING, "reload: %s changed but is not reloadable: refused (restart mtld)",
             key);
}

static void start_metrics(daemon_t *d) {
  char err[512];
  if (!d->cfg.metrics_enabled) return;
  if (mtld_metrics_server_start(&d->metrics, d->cfg.metrics_listen, d->cfg.metrics_port, err,
                                sizeof(err)) != MTLD_OK) {
    /* Metrics are for watching, not for the data: run without them. */
    mtld_log(MTLD_LOG_ERR, "metrics: %s (running without the metrics endpoint)", err);
    d->metrics = NULL;
    return;
  }
  mtld_log(MTLD_LOG_INFO, "metrics on http://%s:%d/metrics", d->cfg.metrics_listen,
           mtld_metrics_server_port(d->metrics));
}

/* SIGHUP: the one place a reload is applied.  mtld_config_reload copies the
 * table's reloadable keys into d->cfg (or nothing, if the file does not load);
 * then each part that derives something from them is told once. */
static void do_reload(daemon_t *d) {
  char err[1024];
  mtld_notify_reloading();
  mtld_log(MTLD_LOG_NOTICE, "SIGHUP: reloading %s", d->cfg.path);
  /* what the metrics server was started with */
  int metrics_enabled = d->cfg.metrics_enabled, metrics_port = d->cfg.metrics_port;
  char metrics_listen[sizeof(d->cfg.metrics_listen)];
  memcpy(metrics_listen, d->cfg.metrics_listen, sizeof(metrics_listen));
  int refused = 0;
  if (mtld_config_reload(&d->cfg, d->cfg.path, &refused, log_key, NULL, err, sizeof(err)) !=
      MTLD_OK) {
    mtld_log(MTLD_LOG_ERR, "reload refused, old configuration stays in force: %s", err);
    mtld_notify_ready();
    return;
  }
  /* at a batch boundary (the caller committed): every change together */
  mtld_log_set_level(mtld_log_level_parse(d->cfg.log_level));
  set_shutdown_bound(d->cfg.shutdown_timeout_ms);
  mtld_pipeline_reloaded(d->pipe);
  if (mtld_pipeline_alert(d->pipe)) {
    mtld_log(MTLD_LOG_NOTICE, "reload: alert acknowledged: %s", mtld_pipeline_alert(d->pipe));
    mtld_pipeline_clear_alert(d->pipe);
  }
  if (d->trainer) {
    mtld_trainfeed_drain(d->feed); /* released before the reload: the old rates */
    mtld_trainer_apply_reloadable(d->trainer, &d->cfg.model);
  }
  if (d->cfg.metrics_enabled != metrics_enabled || d->cfg.metrics_port != metrics_port ||
      strcmp(d->cfg.metrics_listen, metrics_listen) != 0) {
    mtld_metrics_server_stop(d->metrics);
    d->metrics = NULL;
    start_metrics(d);
  }
  mtld_log(MTLD_LOG_NOTICE, "reload done%s", refused ? " (some keys refused, see above)" : "");
  mtld_notify_ready();
}

/* durable/'s quiesce hook: the trainer catches up with the released samples. */
static void quiesce_trainer(void *ctx) {
  mtld_trainfeed_drain(ctx);
}

/* After the batch was committed on partition revocation: a checkpoint, so
 * the partitions' next owner and our own state agree on a cut. */
static void on_revoked(void *ctx) {
  char err[512];
  if (mtld_durable_checkpoint(ctx, 0, err, sizeof(err)) != MTLD_OK)
    mtld_log(MTLD_LOG_WARNING, "checkpoint on revocation: %s", err);
}

/* The pipeline's sample sink: the trainer (on its own thread, in release
 * order) scores then learns from each released sample; the dump keeps the
 * same samples for references. */
static void on_sample(void *ctx, const mtld_sample_t *s) {
  daemon_t *d = ctx;
  if (d->feed) mtld_trainfeed_push(d->feed, s);
  if (d->dump && mtld_sampledump_write(d->dump, s) != MTLD_OK)
    mtld_log_rl(MTLD_LOG_ERR, "dump", "trainer.dump_samples: write failed: %s", strerror(errno));
}

/* Trains on the samples buffered in the trainer's partial minibatch and
 * flushes the sample dump (after the final checkpoint, before the final
 * snapshot). */
static void finish_training(daemon_t *d) {
  mtld_trainfeed_drain(d->feed);
  if (d->trainer) mtld_trainer_flush(d->trainer);
  if (d->dump) fflush(d->dump);
}

/* Logs the progressive-validation table, one line per task and scenario. */
static void report(daemon_t *d) {
  if (!d->trainer) return;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return;
  mtld_trainfeed_lock(d->feed);
  mtld_pvmetrics_print(mtld_trainer_metrics(d->trainer), f, 1);
  if (mtld_trainer_ranking(d->trainer)) mtld_rank_print(mtld_trainer_ranking(d->trainer), f);
  mtld_trainfeed_unlock(d->feed);
  fclose(f);
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
    mtld_log(MTLD_LOG_INFO, "pv %s", line);
  free(text);
}

/* The ranking evaluation of clicks (trainer.rank_k > 0; trainer/rank.h), not
 * part of the checkpoint: on the first binary task of the click label, the
 * item part of a sample being the item's dense features, as the sampled
 * negatives swap them. */
static mtld_status_t start_ranking(daemon_t *d, char *err, size_t errlen) {
  const mtld_model_config_t *mc = mtld_model_config(mtld_trainer_model(d->trainer));
  mtld_rank_config_t rc;
  memset(&rc, 0, sizeof(rc));
  rc.k = d->cfg.rank_k;
  rc.every = d->cfg.rank_every;
  rc.candidates = d->cfg.rank_candidates;
  rc.task = -1;
  for (int t = 0; t < mc->n_tasks && rc.task < 0; t++)
    if (mc->tasks[t].type == MTLD_TASK_BINARY && mc->tasks[t].label == MTLD_LABEL_CLICK)
      rc.task = t;
  if (rc.k == 0 || rc.task < 0) return MTLD_OK;
  int slots[MTLD_FEATURES_ITEM_DENSE_MAX];
  int n = mtld_features_dense_item_slots(&d->cfg.features, slots);
  for (int i = 0; i < n && rc.n_item_dense < MTLD_RANK_MAX_ITEM_DENSE; i++)
    if (slots[i] < mc->n_dense) rc.item_dense[rc.n_item_dense++] = slots[i];
  /* the item attributes are part of the item too (config.c lays them out) */
  const mtld_feature_def_t *fd = &d->cfg.features;
  int n_cat = 0, n_num = 0, base = mtld_features_dense_count(fd);
  for (int k = 0; k < fd->n_attrs; k++) {
    int item = fd->attrs[k].owner == MTLD_ATTR_ITEM;
    if (fd->attrs[k].kind == MTLD_ATTR_NUMERIC) {
      int pos = base + n_num++;
      if (item && pos < mc->n_dense && rc.n_item_dense < MTLD_RANK_MAX_ITEM_DENSE)
        rc.item_dense[rc.n_item_dense++] = pos;
    } else {
      int f = MTLD_FIELD_EXTRA + n_cat++;
      if (item && f < mc->n_fields) rc.item_fields[rc.n_item_fields++] = f;
    }
  }
  return mtld_trainer_set_ranking(d->trainer, &rc, err, errlen);
}

/* Frees what open_state and main built, in reverse order; NULLs are fine. */
static void free_state(daemon_t *d) {
  mtld_durable_free(d->durable);
  d->durable = NULL;
  mtld_modelsync_free(d->sync);
  d->sync = NULL;
  mtld_pipeline_free(d->pipe);
  d->pipe = NULL;
  if (d->dump) fclose(d->dump);
  d->dump = NULL;
  mtld_trainfeed_stop(d->feed); /* observes what is queued, then joins */
  d->feed = NULL;
  mtld_trainer_destroy(d->trainer);
  d->trainer = NULL;
  mtld_watermark_destroy(d->wm);
  d->wm = NULL;
  mtld_store_close(d->store);
  d->store = NULL;
}

/* After recovery: the trainer (restored: *restored, ownership taken, or new
 * from cfg.model when enabled), the sample dump, the store, the watermark
 * and the pipeline with main's sample sink attached.  MTLD_OK or an error
 * with err set (the caller frees with free_state). */
static mtld_status_t open_state(daemon_t *d, mtld_trainer_t **restored, char *err, size_t errlen) {
  const mtld_config_t *cfg = &d->cfg;
  d->trainer = *restored;
  *restored = NULL;
  mtld_store_memory_t mem = {(size_t)cfg->store_block_cache_mb << 20,
                             (size_t)cfg->store_write_buffer_mb << 20};
  mtld_status_t st = mtld_store_open_mem(&d->store, cfg->store_path, &cfg->features,
                                         cfg->store_sync, &mem, err, errlen);
  if (st == MTLD_OK &&
      (st = mtld_store_set_cache(d->store, (size_t)cfg->store_cache_mb << 20)) != MTLD_OK)
    snprintf(err, errlen, "store.cache_mb = %d: %s", cfg->store_cache_mb, mtld_status_str(st));
  if (st != MTLD_OK) return st;
  st = mtld_watermark_create(&d->wm, cfg->allowed_lateness_ms, cfg->idle_ms);
  if (st == MTLD_OK)
    st = mtld_watermark_set_idle_release(d->wm, cfg->idle_release_ms,
                                         cfg->joiner.click_window_ms +
                                             cfg->joiner.conversion_window_ms +
                                             mtld_config_review_window_ms(cfg));
  if (st != MTLD_OK) {
    snprintf(err, errlen, "watermark: %s", mtld_status_str(st));
    return st;
  }
  st = mtld_pipeline_new(&d->pipe, cfg, d->store, d->wm, err, errlen);
  if (st != MTLD_OK) return st;
  if (cfg->trainer_enabled && !d->trainer) {
    st = mtld_trainer_create(&d->trainer, &cfg->model, err, errlen);
    if (st != MTLD_OK) return st;
  }
  if (d->trainer) {
    st = start_ranking(d, err, errlen);
    if (st != MTLD_OK) return st;
    st = mtld_trainfeed_start(&d->feed, d->trainer, TRAINFEED_SAMPLES, err, errlen);
    if (st != MTLD_OK) return st;
  }
  if (cfg->dump_samples[0]) {
    d->dump = fopen(cfg->dump_samples, "wb");
    if (!d->dump || mtld_sampledump_write_header(d->dump) != MTLD_OK) {
      snprintf(err, errlen, "trainer.dump_samples: %.768s: %s", cfg->dump_samples, strerror(errno));
      return MTLD_ERR_IO;
    }
  }
  mtld_pipeline_set_sink(d->pipe, on_sample, d);
  return MTLD_OK;
}

static void publish(daemon_t *d, int healthy, const char *why) {
  if (!d->metrics) return;
  mtld_pipeline_render_metrics(d->pipe, &d->mbuf);
  mtld_store_render_metrics(d->store, &d->mbuf);
  mtld_watermark_render_metrics(d->wm, &d->mbuf);
  if (d->trainer) {
    mtld_trainfeed_lock(d->feed);
    mtld_trainer_render_metrics(d->trainer, &d->mbuf);
    mtld_trainfeed_unlock(d->feed);
    mtld_metrics_family(&d->mbuf, "mtld_trainer_queue", "gauge",
                        "Released samples queued for the trainer's thread.");
    mtld_metrics_sample(&d->mbuf, "mtld_trainer_queue", NULL,
                        (double)mtld_trainfeed_depth(d->feed));
    mtld_modelsync_render_metrics(d->sync, &d->mbuf);
  }
  if (d->src) mtld_source_render_metrics(d->src, &d->mbuf);
  mtld_changelog_render_metrics(d->cl, &d->mbuf);
  mtld_userrows_render_metrics(d->rows, &d->mbuf);
  mtld_durable_render_metrics(d->durable, &d->mbuf);
  mtld_metrics_family(&d->mbuf, "mtld_resident_memory_bytes", "gauge", "Resident set size.");
  mtld_metrics_sample(&d->mbuf, "mtld_resident_memory_bytes", NULL,
                      (double)mtld_metrics_rss_bytes());
  mtld_metrics_family(&d->mbuf, "mtld_uptime_seconds", "gauge", "Seconds since start.");
  mtld_metrics_sample(&d->mbuf, "mtld_uptime_seconds", NULL,
                      (double)(mtld_mono_ms() - d->started_mono_ms) / 1000.0);
  mtld_metrics_publish(d->metrics, &d->mbuf);
  mtld_metrics_set_health(d->metrics, healthy, why);
}

static void status(daemon_t *d) {
  mtld_pipeline_stats_t s;
  mtld_pipeline_stats(d->pipe, &s);
  int64_t now = mtld_mono_ms();
  double secs = (double)(now - d->last_status_ms) / 1000.0;
  double rate = secs > 0 ? (double)(s.records - d->last_status_records) / secs : 0;
  d->last_status_ms = now;
  d->last_status_records = s.records;
  int connected = mtld_source_connected(d->src);
  advise(d, 0);
  const char *alert = mtld_pipeline_alert(d->pipe);
  char line[640], warn[160] = "", skipped[48] = "";
  if (d->no_samples)
    snprintf(warn, sizeof(warn),
             "NO SAMPLES after %" PRIu64 " events (%" PRIu64 " pending; joiner.mode = \"%s\"); ",
             s.events, s.pending,
             d->cfg.joiner.mode == MTLD_JOIN_SAMPLED_NEGATIVES ? "sampled_negatives"
                                                               : "impressions");
  if (s.skipped) snprintf(skipped, sizeof(skipped), ", %" PRIu64 " skipped", s.skipped);
  char sync[160] = "";
  if (d->sync) {
    memcpy(sync, "; ", 3);
    mtld_modelsync_status(d->sync, sync + 2, sizeof(sync) - 2);
  }
  char so[128] = "";
  if (d->cl) {
    so[0] = ';';
    so[1] = ' ';
    mtld_changelog_status(d->cl, so + 2, sizeof(so) - 2);
  }
  snprintf(line, sizeof(line),
           "%s%s%s%s%.0f rec/s, %" PRIu64 " events, %" PRIu64 " rejected%s, %" PRIu64
           " samples%s%s",
           connected ? "" : "brokers unreachable; ", alert ? alert : "", alert ? "; " : "", warn,
           rate, s.events, s.rejected, skipped, s.samples_released, so, sync);
  mtld_notify_status("%s", line);
  /* conf/mtld.conf documents status_interval as "logged at info and sent to STATUS=" */
  mtld_log(MTLD_LOG_INFO, "status: %s", line);
}

/* Back-pressure while batch commits fail (disk full, I/O errors): the
 * source is paused, the commit retried after a pause doubling from 0.1 s to
 * 5 s, consumption resumed when it succeeds; after store.commit_retry_timeout
 * the daemon gives up (exit 4).  A batch waiting for its dead letters to be
 * acknowledged pauses the source too, retried every second at most, with no
 * time bound (the brokers come back). */
typedef struct {
  int64_t since_ms;      /* 0: commits succeed */
  int64_t next_retry_ms; /* no commit attempt before this */
  int backoff_ms;
  int dlq;       /* the failure is dead letters not acknowledged, not the store */
  char why[768]; /* healthz text */
} commit_state_t;

/* Commits when due; returns EXIT_OK to go on, or the exit code to stop with. */
static int commit_step(daemon_t *d, commit_state_t *cs, int force) {
  char err[1024];
  int64_t now = mtld_mono_ms();
  if (cs->since_ms ? now < cs->next_retry_ms : !(force || mtld_pipeline_batch_due(d->pipe)))
    return EXIT_OK;
  mtld_status_t st = mtld_pipeline_commit(d->pipe, err, sizeof(err));
  if (st == MTLD_OK) {
    if (cs->since_ms) {
      mtld_log(MTLD_LOG_NOTICE, "batch commit succeeded after %.1f s of failures: resuming",
               (double)(now - cs->since_ms) / 1000.0);
      mtld_source_pause(d->src, 0);
      cs->since_ms = 0;
      cs->dlq = 0;
    }
    mtld_durable_tick(d->durable);
    if (!d->shape_checked) advise(d, 0);
    return EXIT_OK;
  }
  if (mtld_pipeline_read_failed(d->pipe)) {
    /* the store cannot read its own state: stop before anything is skipped */
    mtld_log(MTLD_LOG_ERR,
             "%s; exiting without committing (the batch's records are replayed after the "
             "store is repaired or restored: README \"Failures and what mtld does\")",
             err);
    return EXIT_STATE;
  }
  if (st == MTLD_ERR_RETRY) {
    /* Dead letters not acknowledged yet (the brokers unreachable, the topic
     * not writable): the batch stays staged and is retried, consumption
     * paused meanwhile; not a store failure, no time bound. */
    if (!cs->since_ms) {
      cs->since_ms = now;
      cs->backoff_ms = 100;
      mtld_source_pause(d->src, 1);
      mtld_log(MTLD_LOG_WARNING, "batch not committed: %s; consumption paused, retrying", err);
    } else {
      mtld_log_rl(MTLD_LOG_WARNING, "commit-dlq", "batch still not committed after %.0f s: %s",
                  (double)(now - cs->since_ms) / 1000.0, err);
    }
    cs->dlq = 1;
    snprintf(cs->why, sizeof(cs->why), "batch not committed for %.0f s: %.600s",
             (double)(now - cs->since_ms) / 1000.0, err);
    cs->next_retry_ms = now + cs->backoff_ms;
    cs->backoff_ms = cs->backoff_ms * 2 > 1000 ? 1000 : cs->backoff_ms * 2;
    return EXIT_OK;
  }
  if (!cs->since_ms || cs->dlq) { /* the store's failures are timed from their first */
    cs->since_ms = now;
    cs->dlq = 0;
    cs->backoff_ms = 100;
    mtld_source_pause(d->src, 1);
    mtld_log(MTLD_LOG_ERR,
             "batch commit failed: %s; consumption paused, retrying for up to %d s "
             "(store.commit_retry_timeout)",
             err, d->cfg.commit_retry_timeout_ms / 1000);
  } else {
    mtld_log_rl(MTLD_LOG_ERR, "commit", "batch commit still failing after %.0f s: %s",
                (double)(now - cs->since_ms) / 1000.0, err);
  }
  snprintf(cs->why, sizeof(cs->why), "store writes failing for %.0f s, consumption paused: %.600s",
           (double)(now - cs->since_ms) / 1000.0, err);
  if (now - cs->since_ms >= d->cfg.commit_retry_timeout_ms) {
    mtld_log(MTLD_LOG_ERR,
             "batch commits failed for %.0f s (store.commit_retry_timeout): exiting; the "
             "uncommitted records are replayed after a restart: %s",
             (double)(now - cs->since_ms) / 1000.0, err);
    return EXIT_RUNTIME;
  }
  cs->next_retry_ms = now + cs->backoff_ms;
  if (cs->next_retry_ms > cs->since_ms + d->cfg.commit_retry_timeout_ms)
    cs->next_retry_ms =
        cs->since_ms + d->cfg.commit_retry_timeout_ms; /* the last try at the bound */
  cs->backoff_ms = cs->backoff_ms * 2 > 5000 ? 5000 : cs->backoff_ms * 2;
  return EXIT_OK;
}

/* What /healthz says: 1 and "ok", or 0 and the one reason, the cause first:
 * the store failing, then the brokers (dead letters cannot be acknowledged
 * without them), then dead letters unacknowledged, then an offset gap. */
static int health(daemon_t *d, const commit_state_t *cs, char *why, size_t len) {
  const char *alert = mtld_pipeline_alert(d->pipe);
  if (cs->since_ms && !cs->dlq)
    snprintf(why, len, "%s", cs->why);
  else if (!mtld_source_connected(d->src))
    snprintf(why, len, "brokers unreachable");
  else if (cs->since_ms)
    snprintf(why, len, "%s", cs->why);
  else if (alert)
    snprintf(why, len, "degraded: %s", alert);
  else {
    snprintf(why, len, "ok");
    return 1;
  }
  return 0;
}

static int run(daemon_t *d) {
  char err[1024];
  mtld_record_t recs[512];
  int rc = EXIT_OK;
  int64_t last_publish = 0, last_report = mtld_mono_ms();
  int file_ended = 0;
  commit_state_t cs = {0};
  mtld_notify_ready();
  mtld_log(MTLD_LOG_NOTICE, "mtld %s running", MTLD_VERSION);
  while (!stop_requested) {
    if (reload_requested) {
      reload_requested = 0;
      char e[512];
      if (!cs.since_ms && mtld_pipeline_commit(d->pipe, e, sizeof(e)) != MTLD_OK)
        mtld_log(MTLD_LOG_WARNING, "commit before reload: %s", e);
      do_reload(d);
    }
    int n = mtld_source_poll(d->src, recs, 512, 100, err, sizeof(err));
    if (n < 0) {
      if (err[0]) {
        mtld_log(MTLD_LOG_ERR, "source: %s", err);
        rc = EXIT_SOURCE;
      }
      file_ended = 1;
      mtld_pipeline_end_of_stream(d->pipe);
    }
    err[0] = 0;
    for (int i = 0; i < n; i++) mtld_pipeline_process(d->pipe, &recs[i]);
    if (mtld_pipeline_error(d->pipe, err, sizeof(err)) != MTLD_OK) {
      /* a partition the configuration cannot map: stop, commit what is good */
      mtld_log(MTLD_LOG_ERR, "source: %s: stopping", err);
      rc = EXIT_SOURCE;
      break;
    }
    int step = commit_step(d, &cs, file_ended);
    if (step != EXIT_OK) {
      rc = step;
      break;
    }
    if (file_ended && cs.since_ms) file_ended = 0; /* the end waits for the commit */
    mtld_modelsync_tick(d->sync);
    int64_t now = mtld_mono_ms();
    if (now - last_publish >= 1000) {
      last_publish = now;
      char why[800];
      int ok = health(d, &cs, why, sizeof(why));
      publish(d, ok, why);
      mtld_notify_watchdog();
    }
    if (now - d->last_status_ms >= d->cfg.status_interval_ms) status(d);
    if (d->cfg.report_interval_ms > 0 && now - last_report >= d->cfg.report_interval_ms) {
      last_report = now;
      report(d);
    }
    if (file_ended) break;
  }
  return rc;
}

/* Scale-out (README "Scale-out", daemon/changelog.h): the changelog's
 * clients, the group check (a disagreement: exit 1, nothing written), the
 * store's commit hook, the local partitions dropped.  Returns EXIT_OK or
 * the exit code. */
/* The pipeline's handover hook (scale-out with user rows): the trainer
 * observes every released sample before the commit ahead of a revocation,
 * so its transaction carries their users' rows.  Changes no weight. */
static void drain_feed(void *ctx) {
  mtld_trainfeed_drain(ctx);
}

/* mtld_userrows_owns_fn over the pipeline */
static int holds_partition(void *ctx, int32_t partition) {
  return mtld_pipeline_scaleout_holds(ctx, partition);
}

static int start_scaleout(daemon_t *d) {
  char err[1024];
  if (!d->cfg.scaleout_changelog_topic[0]) return EXIT_OK;
  if (mtld_changelog_new(&d->cl, &d->cfg, err, sizeof(err)) != MTLD_OK) {
    mtld_log(MTLD_LOG_ERR, "scale-out: %s", err);
    return EXIT_CONFIG;
  }
  mtld_changelog_group_t me = {.def_hash = mtld_feature_def_hash(&d->cfg.features),
                               .model_hash = mtld_changelog_model_hash(&d->cfg)};
  mtld_status_t st = mtld_changelog_join(d->cl, &me, err, sizeof(err));
  if (st != MTLD_OK) {
    mtld_log(MTLD_LOG_ERR, "scale-out: %s", err);
    return st == MTLD_ERR_CONFIG ? EXIT_CONFIG : EXIT_SOURCE;
  }
  mtld_store_set_commit_hook(d->store, mtld_changelog_commit_hook, d->cl);
  mtld_pipeline_set_changelog(d->pipe, d->cl);
  if (d->trainer && mtld_userrows_new(&d->rows, d->trainer, d->feed, d->cl, holds_partition,
                                      d->pipe, err, sizeof(err)) != MTLD_OK) {
    mtld_log(MTLD_LOG_ERR, "%s", err);
    return EXIT_CONFIG;
  }
  if (d->rows) mtld_pipeline_set_handover_hook(d->pipe, drain_feed, d->feed);
  if (mtld_pipeline_scaleout_reset(d->pipe, err, sizeof(err)) != MTLD_OK) {
    mtld_log(MTLD_LOG_ERR, "scale-out: dropping the local partitions: %s", err);
    return EXIT_STATE;
  }
  return EXIT_OK;
}

static void stop_scaleout(daemon_t *d) {
  if (!d->cl) return;
  mtld_pipeline_set_handover_hook(d->pipe, NULL, NULL);
  mtld_userrows_free(d->rows, d->feed, d->cl);
  d->rows = NULL;
  mtld_store_set_commit_hook(d->store, NULL, NULL);
  mtld_pipeline_set_changelog(d->pipe, NULL);
  mtld_changelog_free(d->cl);
  d->cl = NULL;
}

static int shutdown_daemon(daemon_t *d, int rc) {
  char err[512];
  mtld_notify_stopping();
  mtld_log(MTLD_LOG_NOTICE, "stopping: draining and committing");
  int64_t deadline = mtld_mono_ms() + d->cfg.shutdown_timeout_ms;
  /* after a failed read or the commit retry bound: no further attempt (nor
   * at the revocation when the source closes) */
  if (rc == EXIT_STATE || rc == EXIT_RUNTIME) mtld_pipeline_abandon(d->pipe);
  /* scale-out: the final commit carries the rows of every user released so
   * far (daemon/userrows.h); draining changes no weight */
  if (d->rows) mtld_trainfeed_drain(d->feed);
  while ((rc == EXIT_OK || rc == EXIT_SOURCE) &&
         mtld_pipeline_commit(d->pipe, err, sizeof(err)) != MTLD_OK) {
    mtld_log(MTLD_LOG_ERR, "final commit failed: %s", err);
    if (mtld_mono_ms() > deadline) {
      mtld_log(MTLD_LOG_ERR, "shutdown bound exceeded; uncommitted records will be replayed");
      rc = EXIT_RUNTIME;
      break;
    }
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  /* The final cut: checkpoint (so a restart replays nothing) and snapshot. */
  mtld_pipeline_set_revoke_hook(d->pipe, NULL, NULL);
  if (rc == EXIT_OK || rc == EXIT_SOURCE) {
    /* The checkpoint keeps the trainer's partial minibatch (a restart trains
     * with the same batch boundaries as a run that never stopped); the
     * snapshot for serving comes after that batch was learned too. */
    if (mtld_durable_checkpoint(d->durable, 1, err, sizeof(err)) != MTLD_OK)
      mtld_log(MTLD_LOG_ERR, "final checkpoint: %s", err);
    finish_training(d);
    mtld_modelsync_finish(d->sync, 5000);
    if (mtld_durable_snapshot(d->durable, 1, err, sizeof(err)) != MTLD_OK)
      mtld_log(MTLD_LOG_ERR, "final snapshot: %s", err);
  }
  mtld_durable_free(d->durable);
  d->durable = NULL; /* the last render below must not read it */
  if (d->cl) mtld_pipeline_scaleout_closing(d->pipe);
  mtld_source_close(d->src); /* leaves the group; revoke hook commits (nothing left) */
  d->src = NULL;
  stop_scaleout(d);
  mtld_pipeline_set_source(d->pipe, NULL); /* the last render must not read the freed source */
  publish(d, 0, "stopping");
  mtld_metrics_server_stop(d->metrics);
  mtld_metrics_buf_free(&d->mbuf);
  report(d);
  advise(d, 1);
  mtld_pipeline_stats_t s;
  mtld_pipeline_stats(d->pipe, &s);
  mtld_pipeline_log_ledger(d->pipe);
  mtld_log_rl_flush();
  char wm[32] = "none";
  if (s.watermark_ms != INT64_MIN) snprintf(wm, sizeof(wm), "%" PRId64, s.watermark_ms);
  mtld_log(MTLD_LOG_NOTICE,
           "stopped: %" PRIu64 " records, %" PRIu64 " events, %" PRIu64 " rejected, %" PRIu64
           " skipped, %" PRIu64 " batches, %" PRIu64 " samples, watermark %s%s",
           s.records, s.events, s.rejected, s.skipped, s.batches, s.samples_released, wm,
           d->no_samples ? " (no samples: see the warning above)" : "");
  free_state(d);
  return rc;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"check-config", no_argument, NULL, 'k'},
                                       {"version", no_argument, NULL, 'V'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *path = NULL;
  int check = 0, c;
  while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
    switch (c) {
    case 'c': path = optarg; break;
    case 'k': check = 1; break;
    case 'V': printf("mtld %s\n", MTLD_VERSION); return EXIT_OK;
    case 'h': usage(stdout); return EXIT_OK;
    default: usage(stderr); return EXIT_CONFIG;
    }
  }
  if (!path || optind != argc) {
    usage(stderr);
    return EXIT_CONFIG;
  }
  mtld_log_init();
  mtld_notify_init();
  static daemon_t d; /* large: keep it off the stack */
  char err[1024];
  if (mtld_config_load(&d.cfg, path, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "mtld: %s\n", err);
    return EXIT_CONFIG;
  }
  if (check) {
    mtld_config_print(&d.cfg, stdout);
    return EXIT_OK;
  }
  mtld_log_set_level(mtld_log_level_parse(d.cfg.log_level));
  set_shutdown_bound(d.cfg.shutdown_timeout_ms);
  install_signals();
  d.started_mono_ms = d.last_status_ms = mtld_mono_ms();
  mtld_metrics_buf_init(&d.mbuf);

  mtld_trainer_t *restored = NULL;
  int have_checkpoint = 0;
  if (mtld_durable_recover(&d.cfg, &restored, &have_checkpoint, err, sizeof(err)) != MTLD_OK) {
    mtld_log(MTLD_LOG_ERR, "recovery: %s", err);
    return EXIT_STATE;
  }
  if (open_state(&d, &restored, err, sizeof(err)) != MTLD_OK) {
    mtld_log(MTLD_LOG_ERR, "%s", err);
    free_state(&d);
    return EXIT_STATE;
  }
  if (mtld_durable_new(&d.durable, &d.cfg, d.store, d.trainer, d.wm, err, sizeof(err)) != MTLD_OK) {
    mtld_log(MTLD_LOG_ERR, "%s", err);
    free_state(&d);
    return EXIT_RUNTIME;
  }
  mtld_durable_set_quiesce(d.durable, quiesce_trainer, d.feed);
  /* A new model: the empty cut first, so recovery always has a checkpoint
   * whose offsets the store can be compared with. */
  if (!have_checkpoint && mtld_durable_checkpoint(d.durable, 1, err, sizeof(err)) != MTLD_OK) {
    mtld_log(MTLD_LOG_ERR, "first checkpoint: %s", err);
    free_state(&d);
    return EXIT_STATE;
  }
  if (d.cfg.scaleout_model_topic[0] && d.trainer &&
      mtld_modelsync_new(&d.sync, &d.cfg, d.trainer, d.feed, mtld_feature_def_hash(&d.cfg.features),
                         err, sizeof(err)) != MTLD_OK) {
    mtld_log(MTLD_LOG_ERR, "%s", err);
    free_state(&d);
    return EXIT_SOURCE;
  }
  mtld_pipeline_set_revoke_hook(d.pipe, on_revoked, d.durable);
  int so = start_scaleout(&d);
  if (so != EXIT_OK) {
    stop_scaleout(&d);
    free_state(&d);
    return so;
  }
  mtld_source_hooks_t hooks = mtld_pipeline_hooks(d.pipe);
  mtld_status_t st = d.cfg.source_type == MTLD_SOURCE_KAFKA
                         ? mtld_source_kafka_new(&d.src, &d.cfg, &hooks, err, sizeof(err))
                         : mtld_source_file_new(&d.src, &d.cfg, &hooks, err, sizeof(err));
  if (st != MTLD_OK) {
    mtld_log(MTLD_LOG_ERR, "source: %s", err);
    stop_scaleout(&d);
    free_state(&d);
    return EXIT_SOURCE;
  }
  mtld_pipeline_set_source(d.pipe, d.src);
  start_metrics(&d);
  int rc = run(&d);
  return shutdown_daemon(&d, rc);
}
