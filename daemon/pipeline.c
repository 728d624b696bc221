/* pipeline.c - decode -> validate -> store -> joiner -> batch commit.
 *
 * Owns the per-batch bookkeeping: which partitions moved to which offsets
 * (written into the same RocksDB batch as the state they produced), the
 * counters behind the metrics, and the dead letters that must be durable
 * before a batch moves offsets past them. */
#include "daemon/pipeline.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/deadletter.h"
#include "daemon/decode.h"
#include "daemon/log.h"
#include "features/joiner.h"
#include "features/store.h"
#include "features/watermark.h"
#include "trainer/train.h"
#include "common/bytes.h"
#include "common/clock.h"

#define MAX_PARTS 1024
#define MAX_SCENARIOS 64 /* distinct scenario labels in metrics; more -> "other" */

typedef struct {
  char *topic; /* owned */
  int32_t partition;
  int64_t next_offset; /* next record to read, as staged */
  int dirty;           /* moved in the current batch */
  int assigned;
} part_t;

typedef struct {
  uint64_t id;
  char name[MTLD_SCENARIO_MAX];
  uint64_t events[MTLD_N_EVENT_TYPES];
} scen_t;

struct mtld_pipeline {
  const mtld_config_t *cfg; /* borrowed (the daemon's); see mtld_pipeline_reloaded */
  char dlq_topic[256];      /* the topic p->dlq writes to, "" = none */
  mtld_store_t *store;
  mtld_watermark_t *wm;
  mtld_joiner_t *joiner;
  mtld_deadletter_t *dlq;
  mtld_source_t *src;
  mtld_trainer_t *trainer; /* NULL when trainer.enabled = false */
  FILE *dump;              /* trainer.dump_samples */
  mtld_sample_sink_fn sink;
  void *sink_ctx;
  void (*revoke_hook)(void *ctx);
  void *revoke_ctx;

  part_t parts[MAX_PARTS];
  int n_parts;
  int last_part; /* lookup cache */

  size_t batch_records;
  int64_t batch_start_mono_ms;
  int dlq_pending;      /* dead letters queued in this batch */
  int end_of_stream;    /* a replayed file ended: every label has arrived */
  int64_t released_wm;  /* watermark of the last release */
  int64_t seen_expired; /* event time below which the seen keys were deleted */

  /* counters */
  uint64_t records, events, rejected_total, batches, samples_released, commit_failures;
  uint64_t rejected[MTLD_REJECT_COUNT];
  uint64_t events_by_type[MTLD_N_EVENT_TYPES];
  scen_t scen[MAX_SCENARIOS];
  int n_scen;
  uint64_t other_scen_events[MTLD_N_EVENT_TYPES];
  double commit_seconds_sum, commit_seconds_max;
  uint64_t commit_count;
  uint64_t samples_by_kind[3];
};

static part_t *part_get(mtld_pipeline_t *p, const char *topic, int32_t partition, int create) {
  if (p->last_part < p->n_parts) {
    part_t *c = &p->parts[p->last_part];
    if (c->partition == partition && strcmp(c->topic, topic) == 0) return c;
  }
  for (int i = 0; i < p->n_parts; i++) {
    if (p->parts[i].partition == partition && strcmp(p->parts[i].topic, topic) == 0) {
      p->last_part = i;
      return &p->parts[i];
    }
  }
  if (!create || p->n_parts == MAX_PARTS) return NULL;
  part_t *n = &p->parts[p->n_parts];
  memset(n, 0, sizeof(*n));
  n->topic = strdup(topic);
  if (!n->topic) return NULL;
  n->partition = partition;
  n->next_offset = -1;
  p->last_part = p->n_parts++;
  return n;
}

/* ---- source hooks ------------------------------------------------------ */

static mtld_status_t hook_resume(void *ctx, const char *topic, int32_t partition, int64_t *next,
                                 int64_t *max_time_ms) {
  mtld_pipeline_t *p = ctx;
  *max_time_ms = INT64_MIN;
  return mtld_store_get_offset(p->store, topic, partition, next, max_time_ms);
}

static void hook_assigned(void *ctx, const char *topic, int32_t partition, int64_t max_time_ms) {
  mtld_pipeline_t *p = ctx;
  part_t *pt = part_get(p, topic, partition, 1);
  if (pt) pt->assigned = 1;
  mtld_watermark_assign(p->wm, topic, partition, max_time_ms);
}

static void reload_joiner(mtld_pipeline_t *p) {
  char err[512];
  if (mtld_joiner_reload(p->joiner, err, sizeof(err)) != MTLD_OK)
    mtld_log(MTLD_LOG_ERR, "joiner reload after rollback: %s", err);
}

/* Drops the staged batch and puts every in-memory mirror of the state back
 * to what is committed: joiner indexes, partitions' max event times. */
static void drop_batch(mtld_pipeline_t *p) {
  mtld_store_rollback(p->store);
  reload_joiner(p);
  for (int i = 0; i < p->n_parts; i++) {
    part_t *pt = &p->parts[i];
    pt->dirty = 0;
    if (!pt->assigned) continue;
    int64_t next, max_time = INT64_MIN;
    mtld_store_get_offset(p->store, pt->topic, pt->partition, &next, &max_time);
    mtld_watermark_assign(p->wm, pt->topic, pt->partition, max_time);
  }
  p->batch_records = 0;
  p->dlq_pending = 0;
}

static void hook_revoke_begin(void *ctx, int lost) {
  mtld_pipeline_t *p = ctx;
  char err[512];
  if (lost) {
    /* Another member may own these partitions already: what we staged from
     * them must not be written.  Drop the whole batch; what we still own is
     * rewound to the stored offsets by the source. */
    mtld_log(MTLD_LOG_WARNING, "partitions lost: dropping the uncommitted batch (%zu records)",
             p->batch_records);
    drop_batch(p);
    return;
  }
  /* Make everything consumed so far durable before the partitions go. */
  for (int tries = 0; tries < 50; tries++) {
    if (mtld_pipeline_commit(p, err, sizeof(err)) == MTLD_OK) {
      if (p->revoke_hook) p->revoke_hook(p->revoke_ctx);
      return;
    }
    mtld_log(MTLD_LOG_ERR, "commit before revocation failed (try %d): %s", tries + 1, err);
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  /* Still failing: drop it; the stored offsets make the next owner (or us)
   * replay these records, so nothing is lost. */
  drop_batch(p);
}

static void hook_revoke_partition(void *ctx, const char *topic, int32_t partition) {
  mtld_pipeline_t *p = ctx;
  part_t *pt = part_get(p, topic, partition, 0);
  if (pt) pt->assigned = 0;
  mtld_watermark_revoke(p->wm, topic, partition);
}

mtld_source_hooks_t mtld_pipeline_hooks(mtld_pipeline_t *p) {
  return (mtld_source_hooks_t){.resume = hook_resume,
                               .revoke_begin = hook_revoke_begin,
                               .revoke_partition = hook_revoke_partition,
                               .assigned = hook_assigned,
                               .ctx = p};
}

/* ---- life cycle --------------------------------------------------------- */

mtld_status_t mtld_pipeline_new(mtld_pipeline_t **out, const mtld_config_t *cfg, char *err,
                                size_t errlen) {
  return mtld_pipeline_new_with(out, cfg, NULL, err, errlen);
}

mtld_status_t mtld_pipeline_new_with(mtld_pipeline_t **out, const mtld_config_t *cfg,
                                     mtld_trainer_t **trainer, char *err, size_t errlen) {
  mtld_pipeline_t *p = calloc(1, sizeof(*p));
  if (!p) {
    if (trainer) mtld_trainer_destroy(*trainer), *trainer = NULL;
    return MTLD_ERR_NOMEM;
  }
  if (trainer) {
    p->trainer = *trainer; /* ours now, freed with the pipeline even on failure */
    *trainer = NULL;
  }
  p->cfg = cfg;
  mtld_status_t st =
      mtld_store_open(&p->store, cfg->store_path, &cfg->features, cfg->store_sync, err, errlen);
  if (st != MTLD_OK) goto fail;
  st = mtld_watermark_create(&p->wm, cfg->allowed_lateness_ms, cfg->idle_ms);
  if (st != MTLD_OK) {
    snprintf(err, errlen, "watermark: %s", mtld_status_str(st));
    goto fail;
  }
  st = mtld_joiner_create(&p->joiner, p->store, &cfg->features, &cfg->joiner, err, errlen);
  if (st != MTLD_OK) goto fail;
  if (cfg->dead_letter_topic[0]) {
    st = mtld_deadletter_new(&p->dlq, cfg, err, errlen);
    if (st != MTLD_OK) goto fail;
    snprintf(p->dlq_topic, sizeof(p->dlq_topic), "%s", cfg->dead_letter_topic);
  }
  if (cfg->trainer_enabled && !p->trainer) {
    st = mtld_trainer_create(&p->trainer, &cfg->model, err, errlen);
    if (st != MTLD_OK) goto fail;
  }
  if (cfg->dump_samples[0]) {
    p->dump = fopen(cfg->dump_samples, "wb");
    if (!p->dump) {
      snprintf(err, errlen, "trainer.dump_samples: %s: %s", cfg->dump_samples, strerror(errno));
      st = MTLD_ERR_IO;
      goto fail;
    }
    uint32_t hdr[2] = {MTLD_SAMPLE_DUMP_VERSION, (uint32_t)sizeof(mtld_sample_t)};
    fwrite(MTLD_SAMPLE_DUMP_MAGIC, 1, 8, p->dump);
    fwrite(hdr, sizeof(hdr), 1, p->dump);
  }
  p->batch_start_mono_ms = mtld_mono_ms();
  p->released_wm = INT64_MIN;
  p->seen_expired = INT64_MIN;
  *out = p;
  return MTLD_OK;
fail:
  mtld_pipeline_free(p);
  return st;
}

void mtld_pipeline_set_revoke_hook(mtld_pipeline_t *p, void (*fn)(void *ctx), void *ctx) {
  p->revoke_hook = fn;
  p->revoke_ctx = ctx;
}

mtld_store_t *mtld_pipeline_store(mtld_pipeline_t *p) {
  return p->store;
}

int64_t mtld_pipeline_watermark(const mtld_pipeline_t *p) {
  return mtld_watermark_get(p->wm);
}

void mtld_pipeline_set_source(mtld_pipeline_t *p, mtld_source_t *src) {
  p->src = src;
}

void mtld_pipeline_set_sink(mtld_pipeline_t *p, mtld_sample_sink_fn fn, void *ctx) {
  p->sink = fn;
  p->sink_ctx = ctx;
}

void mtld_pipeline_free(mtld_pipeline_t *p) {
  if (!p) return;
  mtld_deadletter_close(p->dlq, 5000);
  if (p->dump) fclose(p->dump);
  mtld_trainer_destroy(p->trainer);
  mtld_joiner_destroy(p->joiner);
  mtld_watermark_destroy(p->wm);
  mtld_store_close(p->store);
  for (int i = 0; i < p->n_parts; i++) free(p->parts[i].topic);
  free(p);
}

/* ---- per record ------------------------------------------------------- */

static scen_t *scen_get(mtld_pipeline_t *p, const mtld_event_t *ev) {
  for (int i = 0; i < p->n_scen; i++)
    if (p->scen[i].id == ev->scenario_id) return &p->scen[i];
  if (p->n_scen == MAX_SCENARIOS) return NULL;
  scen_t *s = &p->scen[p->n_scen++];
  s->id = ev->scenario_id;
  snprintf(s->name, sizeof(s->name), "%s", ev->scenario);
  return s;
}

static void reject(mtld_pipeline_t *p, const mtld_record_t *rec, mtld_reject_t r, const char *msg) {
  p->rejected[r]++;
  p->rejected_total++;
  mtld_log_rl(MTLD_LOG_WARNING, mtld_reject_name(r), "rejected %s[%d]@%" PRId64 ": %s: %s",
              rec->topic, (int)rec->partition, rec->offset, mtld_reject_name(r), msg);
  if (!p->dlq) return;
  for (;;) {
    mtld_status_t st = mtld_deadletter_send(p->dlq, rec, mtld_reject_name(r), msg);
    if (st != MTLD_ERR_RETRY) break;
    mtld_deadletter_flush(p->dlq, 100); /* local queue full: drain and retry */
  }
  p->dlq_pending++;
}

/* The joiner orders samples by (time, partition, offset): with several
 * topics the partition it sees is (topic index << 16 | partition), the
 * topic index being the topic's place in source.topics (stable across
 * restarts as long as the list is). */
static int32_t joiner_partition(const mtld_pipeline_t *p, const mtld_record_t *rec) {
  int32_t t = 0;
  for (int i = 0; i < p->cfg->n_topics; i++)
    if (strcmp(p->cfg->topics[i], rec->topic) == 0) t = i;
  return (t << 16) | (rec->partition & 0xffff);
}

/* De-duplication: the event id is the idempotency key (DESIGN).  Every event
 * applied leaves (event time, event id) in the "seen" column family, in the
 * batch that applies it, so the check is exactly-once with the features; an
 * event found there is rejected as "duplicate" (a producer's retry, an
 * upstream replay).  Keys sort by event time (the sign bit flipped: signed
 * order as bytes); those older than the watermark minus twice
 * validation.max_lateness and an hour are deleted as the watermark moves:
 * validation rejects such events as too_late before they get here. */
#define SEEN_KEY_LEN 16
#define SEEN_EXPIRE_STEP_MS 3600000 /* delete in steps of an hour of event time */

static void seen_key(uint8_t k[SEEN_KEY_LEN], int64_t time_ms, uint64_t event_id) {
  mtld_put_be64(k, (uint64_t)time_ms ^ (UINT64_C(1) << 63));
  mtld_put_be64(k + 8, event_id);
}

static void seen_expire(mtld_pipeline_t *p) {
  int64_t w = mtld_watermark_get(p->wm), keep = 2 * p->cfg->limits.max_lateness_ms + 3600000;
  if (w == INT64_MIN || w < INT64_MIN + keep) return;
  int64_t horizon = w - keep;
  if (p->seen_expired != INT64_MIN && horizon < p->seen_expired + SEEN_EXPIRE_STEP_MS) return;
  uint8_t k[SEEN_KEY_LEN];
  seen_key(k, horizon, 0);
  if (mtld_store_delete_below(p->store, MTLD_CF_SEEN, k, sizeof k) == MTLD_OK)
    p->seen_expired = horizon;
}

void mtld_pipeline_process(mtld_pipeline_t *p, const mtld_record_t *rec) {
  char msg[256];
  mtld_event_t ev;
  if (rec->eof) {
    mtld_watermark_set_caught_up(p->wm, rec->topic, rec->partition);
    return;
  }
  if (p->batch_records == 0) p->batch_start_mono_ms = mtld_mono_ms();
  p->records++;
  p->batch_records++;
  part_t *pt = part_get(p, rec->topic, rec->partition, 1);
  mtld_reject_t r = mtld_decode_event(rec->payload, rec->len, p->cfg->format,
                                      p->cfg->limits.max_record_bytes, &ev, msg, sizeof(msg));
  if (r == MTLD_REJECT_NONE)
    r = mtld_validate_event(&ev, &p->cfg->limits, mtld_watermark_get(p->wm),
                            mtld_watermark_newest(p->wm), msg, sizeof(msg));
  uint8_t sk[SEEN_KEY_LEN];
  mtld_status_t seen = MTLD_ERR_NOTFOUND;
  if (r == MTLD_REJECT_NONE && p->cfg->limits.dedup) {
    void *v = NULL;
    size_t vlen;
    seen_key(sk, ev.time_ms, ev.event_id);
    seen = mtld_store_get(p->store, MTLD_CF_SEEN, sk, sizeof sk, &v, &vlen);
    free(v);
    if (seen == MTLD_OK) {
      r = MTLD_REJECT_DUPLICATE;
      snprintf(msg, sizeof(msg), "event %" PRIu64 " at time_ms %" PRId64 " was applied already",
               ev.event_id, ev.time_ms);
    }
  }
  if (r != MTLD_REJECT_NONE) {
    reject(p, rec, r, msg);
  } else {
    mtld_user_features_t ub;
    mtld_item_features_t ib;
    mtld_status_t st =
        seen == MTLD_ERR_NOTFOUND
            ? mtld_store_apply_part(p->store, &ev, joiner_partition(p, rec), &ub, &ib)
            : seen;
    if (st == MTLD_OK && p->cfg->limits.dedup)
      st = mtld_store_put(p->store, MTLD_CF_SEEN, sk, sizeof sk, "", 0);
    if (st != MTLD_OK) {
      /* The store could not read its own state: nothing sensible can be done
       * with this event without breaking exactly-once; log loudly.  The
       * batch commit will fail the same way and stop the daemon. */
      mtld_log(MTLD_LOG_ERR, "store apply failed at %s[%d]@%" PRId64 ": %s", rec->topic,
               (int)rec->partition, rec->offset, mtld_status_str(st));
    } else {
      mtld_watermark_observe(p->wm, rec->topic, rec->partition, ev.time_ms);
      st = mtld_joiner_on_event(p->joiner, &ev, joiner_partition(p, rec), rec->offset, &ub, &ib);
      if (st != MTLD_OK)
        mtld_log_rl(MTLD_LOG_ERR, "joiner", "joiner at %s[%d]@%" PRId64 ": %s", rec->topic,
                    (int)rec->partition, rec->offset, mtld_status_str(st));
      p->events++;
      p->events_by_type[ev.type - 1]++;
      scen_t *s = scen_get(p, &ev);
      if (s)
        s->events[ev.type - 1]++;
      else
        p->other_scen_events[ev.type - 1]++;
    }
  }
  if (pt) {
    pt->next_offset = rec->offset + 1;
    pt->dirty = 1;
  }
  mtld_store_set_offset(p->store, rec->topic, rec->partition, rec->offset + 1,
                        mtld_watermark_max_time(p->wm, rec->topic, rec->partition));
}

int mtld_pipeline_batch_due(const mtld_pipeline_t *p) {
  /* nothing consumed, but the watermark moved (a partition reached its
   * end): samples are due for release */
  if (p->batch_records == 0) return mtld_watermark_get(p->wm) > p->released_wm;
  if ((int64_t)p->batch_records >= p->cfg->batch_max_events) return 1;
  return mtld_mono_ms() - p->batch_start_mono_ms >= p->cfg->batch_max_ms;
}

static void release_cb(void *ctx, const mtld_sample_t *s) {
  mtld_pipeline_t *p = ctx;
  p->samples_released++;
  if (s->kind >= 1 && s->kind <= 2) p->samples_by_kind[s->kind]++;
  if (p->trainer && mtld_trainer_observe(p->trainer, s, NULL) != MTLD_OK)
    mtld_log_rl(MTLD_LOG_WARNING, "sample", "sample %" PRIu64 " refused by the trainer",
                s->sample_id);
  if (p->dump && fwrite(s, sizeof(*s), 1, p->dump) != 1)
    mtld_log_rl(MTLD_LOG_ERR, "dump", "trainer.dump_samples: write failed: %s", strerror(errno));
  if (p->sink) p->sink(p->sink_ctx, s);
}

mtld_status_t mtld_pipeline_commit(mtld_pipeline_t *p, char *err, size_t errlen) {
  int64_t wm = p->end_of_stream ? INT64_MAX : mtld_watermark_get(p->wm);
  if (p->batch_records == 0 && wm <= p->released_wm) return MTLD_OK;
  /* Dead letters first: the batch moves offsets past them. */
  if (p->dlq && p->dlq_pending) {
    mtld_status_t st = mtld_deadletter_flush(p->dlq, 10000);
    if (st == MTLD_ERR_RETRY) {
      snprintf(err, errlen, "dead-letter topic %s not acknowledged yet",
               mtld_deadletter_topic(p->dlq));
      return MTLD_ERR_RETRY;
    }
    p->dlq_pending = 0;
  }
  mtld_joiner_release(p->joiner, wm, release_cb, p);
  if (wm > p->released_wm) p->released_wm = wm;
  seen_expire(p);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  mtld_status_t st = mtld_store_commit(p->store, err, errlen);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (st != MTLD_OK) {
    p->commit_failures++;
    return st;
  }
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  p->commit_seconds_sum += secs;
  if (secs > p->commit_seconds_max) p->commit_seconds_max = secs;
  p->commit_count++;
  p->batches++;
  mtld_log(MTLD_LOG_DEBUG, "batch %" PRIu64 " committed: %zu records, %.2f ms", p->batches,
           p->batch_records, secs * 1000.0);
  p->batch_records = 0;

  /* Durable: tell Kafka (for lag monitoring only). */
  const char *topics[MAX_PARTS];
  int32_t parts[MAX_PARTS];
  int64_t offs[MAX_PARTS];
  int n = 0;
  for (int i = 0; i < p->n_parts; i++) {
    if (!p->parts[i].dirty) continue;
    p->parts[i].dirty = 0;
    topics[n] = p->parts[i].topic;
    parts[n] = p->parts[i].partition;
    offs[n] = p->parts[i].next_offset;
    n++;
  }
  if (p->src && n) mtld_source_commit(p->src, topics, parts, offs, n);
  return MTLD_OK;
}

void mtld_pipeline_reloaded(mtld_pipeline_t *p) {
  const mtld_config_t *cfg = p->cfg;
  if (p->trainer && mtld_trainer_set_reloadable(p->trainer, &cfg->model) != MTLD_OK)
    mtld_log(MTLD_LOG_ERR, "reload: the trainer refused a learning rate or loss weight");
  if (strcmp(p->dlq_topic, cfg->dead_letter_topic) != 0) {
    char err[512];
    mtld_deadletter_t *dl = NULL;
    if (cfg->dead_letter_topic[0] && mtld_deadletter_new(&dl, cfg, err, sizeof(err)) != MTLD_OK) {
      mtld_log(MTLD_LOG_ERR, "reload: dead_letter.topic: %s (keeping %s)", err,
               p->dlq_topic[0] ? p->dlq_topic : "none");
      return;
    }
    if (p->dlq) mtld_deadletter_flush(p->dlq, 10000);
    mtld_deadletter_close(p->dlq, 5000);
    p->dlq = dl;
    p->dlq_pending = 0;
    snprintf(p->dlq_topic, sizeof(p->dlq_topic), "%s", cfg->dead_letter_topic);
  }
}

void mtld_pipeline_stats(const mtld_pipeline_t *p, mtld_pipeline_stats_t *out) {
  out->records = p->records;
  out->events = p->events;
  out->rejected = p->rejected_total;
  out->batches = p->batches;
  out->samples_released = p->samples_released;
  out->watermark_ms = mtld_watermark_get(p->wm);
}

/* ---- metrics ------------------------------------------------------------- */

static void lag_cb(void *ctx, const char *topic, int32_t partition, int64_t lag) {
  mtld_metrics_buf_t *b = ctx;
  char part[16];
  snprintf(part, sizeof(part), "%d", (int)partition);
  mtld_metrics_label_t l[2] = {{"topic", topic}, {"partition", part}};
  mtld_metrics_sample_kv(b, "mtld_consumer_lag", l, 2, (double)lag);
}

/* One family per progressive-validation statistic, labelled by task and
 * scenario ("_all" for every scenario together). */
static void render_pv(mtld_pipeline_t *p, mtld_metrics_buf_t *b, const char *name, const char *help,
                      int which) {
  const mtld_model_config_t *mc = &p->cfg->model;
  mtld_pvmetrics_t *m = mtld_trainer_metrics(p->trainer);
  int ns = mtld_pvmetrics_n_scenarios(m);
  mtld_metrics_family(b, name, "gauge", help);
  for (int t = 0; t < mc->n_tasks; t++) {
    for (int sc = MTLD_PV_ALL; sc < ns; sc++) {
      mtld_pv_summary_t sum;
      if (mtld_pvmetrics_get(m, t, sc, &sum) != MTLD_OK) continue;
      double v = which == 0   ? sum.auc_window
                 : which == 1 ? sum.auc_cum
                 : which == 2 ? sum.logloss
                 : which == 3 ? sum.calibration
                 : which == 4 ? sum.rmse
                              : (double)sum.n;
      if (which < 3 && mc->tasks[t].type == MTLD_TASK_REGRESSION) continue;
      mtld_metrics_label_t l[2] = {
          {"task", mc->tasks[t].name},
          {"scenario", sc == MTLD_PV_ALL ? "_all" : mtld_pvmetrics_scenario_name(m, sc)}};
      mtld_metrics_sample_kv(b, name, l, 2, v);
    }
  }
}

static void render_trainer_metrics(mtld_pipeline_t *p, mtld_metrics_buf_t *b) {
  if (!p->trainer) return;
  mtld_trainer_stats_t ts;
  mtld_trainer_stats(p->trainer, &ts);
  mtld_metrics_family(b, "mtld_samples_trained_total", "counter",
                      "Samples the model has learned from (after scoring them).");
  mtld_metrics_sample(b, "mtld_samples_trained_total", NULL, (double)ts.trained);
  mtld_metrics_family(b, "mtld_train_batches_total", "counter", "Optimiser steps.");
  mtld_metrics_sample(b, "mtld_train_batches_total", NULL, (double)ts.batches);
  mtld_metrics_family(b, "mtld_train_loss", "gauge", "Loss of the last minibatch.");
  mtld_metrics_sample(b, "mtld_train_loss", NULL, ts.last_loss);
  mtld_metrics_family(b, "mtld_trainer_memory_bytes", "gauge",
                      "Memory of the model, optimiser state and metrics.");
  mtld_metrics_sample(b, "mtld_trainer_memory_bytes", NULL,
                      (double)mtld_trainer_memory_bytes(p->trainer));
  render_pv(p, b, "mtld_pv_auc", "Progressive AUC over the sliding window, per task and scenario.",
            0);
  render_pv(p, b, "mtld_pv_auc_cumulative", "Progressive AUC since start (histogram).", 1);
  render_pv(p, b, "mtld_pv_logloss", "Progressive mean log loss.", 2);
  render_pv(p, b, "mtld_pv_calibration", "Mean prediction / mean label (1 = calibrated).", 3);
  render_pv(p, b, "mtld_pv_rmse", "Progressive RMSE.", 4);
  render_pv(p, b, "mtld_pv_samples", "Samples scored, per task and scenario.", 5);
  mtld_model_t *m = mtld_trainer_model(p->trainer);
  const mtld_model_config_t *mc = mtld_model_config(m);
  static const char *const fam[3] = {"mtld_embedding_rows", "mtld_embedding_admitted_total",
                                     "mtld_embedding_evictions_total"};
  static const char *const help[3] = {"Live rows of each embedding table (occupancy).",
                                      "Rows admitted after their occurrence threshold.",
                                      "Rows expired after going unused (event time)."};
  static const char *const type[3] = {"gauge", "counter", "counter"};
  for (int k = 0; k < 3; k++) {
    mtld_metrics_family(b, fam[k], type[k], help[k]);
    for (int f = 0; f < mc->n_fields; f++) {
      const mtld_embed_t *e = mtld_model_embed(m, f);
      if (!e) continue;
      double v = k == 0   ? (double)e->stats.live_rows
                 : k == 1 ? (double)e->stats.admitted
                          : (double)e->stats.evictions;
      mtld_metrics_label_t l[1] = {{"field", mc->fields[f].name}};
      mtld_metrics_sample_kv(b, fam[k], l, 1, v);
    }
  }
  mtld_metrics_family(b, "mtld_embedding_table_rows", "gauge", "Rows of each embedding table.");
  for (int f = 0; f < mc->n_fields; f++) {
    mtld_metrics_label_t l[1] = {{"field", mc->fields[f].name}};
    mtld_metrics_sample_kv(b, "mtld_embedding_table_rows", l, 1, (double)mc->fields[f].rows);
  }
}

void mtld_pipeline_report(mtld_pipeline_t *p) {
  if (!p->trainer) return;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return;
  mtld_pvmetrics_print(mtld_trainer_metrics(p->trainer), f, 1);
  fclose(f);
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
    mtld_log(MTLD_LOG_INFO, "pv %s", line);
  free(text);
}

void mtld_pipeline_end_of_stream(mtld_pipeline_t *p) {
  p->end_of_stream = 1;
  p->batch_records++; /* make the next commit run even with nothing staged */
}

void mtld_pipeline_finish(mtld_pipeline_t *p) {
  if (p->trainer) mtld_trainer_flush(p->trainer);
  if (p->dump) fflush(p->dump);
}

mtld_trainer_t *mtld_pipeline_trainer(mtld_pipeline_t *p) {
  return p->trainer;
}

void mtld_pipeline_render_metrics(mtld_pipeline_t *p, mtld_metrics_buf_t *b) {
  mtld_metrics_family(b, "mtld_records_total", "counter", "Records consumed (good and bad).");
  mtld_metrics_sample(b, "mtld_records_total", NULL, (double)p->records);

  mtld_metrics_family(b, "mtld_events_total", "counter",
                      "Events applied to the feature store, by type and scenario.");
  for (int i = 0; i < p->n_scen; i++)
    for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) {
      mtld_metrics_label_t l[2] = {{"type", mtld_event_type_name(t + 1)},
                                   {"scenario", p->scen[i].name}};
      mtld_metrics_sample_kv(b, "mtld_events_total", l, 2, (double)p->scen[i].events[t]);
    }
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) {
    if (!p->other_scen_events[t]) continue;
    mtld_metrics_label_t l[2] = {{"type", mtld_event_type_name(t + 1)}, {"scenario", "_other"}};
    mtld_metrics_sample_kv(b, "mtld_events_total", l, 2, (double)p->other_scen_events[t]);
  }

  mtld_metrics_family(b, "mtld_events_rejected_total", "counter",
                      "Records rejected, by reason (sent to the dead-letter topic if set).");
  for (int r = 1; r < MTLD_REJECT_COUNT; r++) {
    mtld_metrics_label_t l[1] = {{"reason", mtld_reject_name(r)}};
    mtld_metrics_sample_kv(b, "mtld_events_rejected_total", l, 1, (double)p->rejected[r]);
  }
  if (p->dlq) {
    mtld_metrics_family(b, "mtld_dead_letters_total", "counter",
                        "Dead letters acknowledged by the broker, by outcome.");
    mtld_metrics_sample(b, "mtld_dead_letters_total", "outcome=\"delivered\"",
                        (double)mtld_deadletter_delivered(p->dlq));
    mtld_metrics_sample(b, "mtld_dead_letters_total", "outcome=\"failed\"",
                        (double)mtld_deadletter_failed(p->dlq));
  }

  mtld_metrics_family(b, "mtld_store_batches_total", "counter", "Store write batches committed.");
  mtld_metrics_sample(b, "mtld_store_batches_total", NULL, (double)p->batches);
  mtld_metrics_family(b, "mtld_store_commit_failures_total", "counter",
                      "Store write batches that failed (kept and retried).");
  mtld_metrics_sample(b, "mtld_store_commit_failures_total", NULL, (double)p->commit_failures);
  mtld_metrics_family(b, "mtld_store_write_seconds", "summary",
                      "Time to write one batch to RocksDB (fsync included when store.sync).");
  mtld_metrics_sample(b, "mtld_store_write_seconds_sum", NULL, p->commit_seconds_sum);
  mtld_metrics_sample(b, "mtld_store_write_seconds_count", NULL, (double)p->commit_count);
  mtld_metrics_family(b, "mtld_store_write_seconds_max", "gauge",
                      "Longest batch write so far, in seconds.");
  mtld_metrics_sample(b, "mtld_store_write_seconds_max", NULL, p->commit_seconds_max);
  mtld_metrics_family(b, "mtld_store_size_bytes", "gauge", "RocksDB SST files plus memtables.");
  mtld_metrics_sample(b, "mtld_store_size_bytes", NULL, (double)mtld_store_size_bytes(p->store));

  int64_t wm = mtld_watermark_get(p->wm);
  mtld_metrics_family(b, "mtld_watermark_seconds", "gauge",
                      "Event-time watermark (Unix seconds; NaN before any event).");
  mtld_metrics_sample(b, "mtld_watermark_seconds", NULL, wm == INT64_MIN ? NAN : wm / 1000.0);

  mtld_metrics_family(b, "mtld_joiner_pending", "gauge", "Samples waiting for their labels.");
  mtld_metrics_sample(b, "mtld_joiner_pending", NULL, (double)mtld_joiner_pending_count(p->joiner));
  mtld_metrics_family(b, "mtld_samples_released_total", "counter",
                      "Joined samples handed to the trainer, by kind.");
  mtld_metrics_sample(b, "mtld_samples_released_total", "kind=\"impression\"",
                      (double)p->samples_by_kind[1]);
  mtld_metrics_sample(b, "mtld_samples_released_total", "kind=\"review\"",
                      (double)p->samples_by_kind[2]);

  render_trainer_metrics(p, b);

  if (p->src) {
    mtld_metrics_family(b, "mtld_consumer_lag", "gauge",
                        "Records behind the partition's high watermark.");
    mtld_source_foreach_lag(p->src, lag_cb, b);
    mtld_metrics_family(b, "mtld_source_connected", "gauge", "1 while brokers are reachable.");
    mtld_metrics_sample(b, "mtld_source_connected", NULL, mtld_source_connected(p->src));
  }
}
