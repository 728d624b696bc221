/* pipeline.c - decode -> validate -> store -> joiner -> batch commit.
 *
 * Owns the joiner, the de-duplication check, the dead-letter producer and
 * the per-batch bookkeeping: which partitions moved to which offsets
 * (written into the same RocksDB batch as the state they produced), the
 * counters behind the metrics, and the dead letters that must be durable
 * before a batch moves offsets past them. */
#include "daemon/pipeline.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/changelog.h"
#include "daemon/deadletter.h"
#include "daemon/decode.h"
#include "daemon/log.h"
#include "features/dedup.h"
#include "features/demand.h"
#include "features/joiner.h"
#include "features/partition.h"
#include "features/store.h"
#include "features/watermark.h"
#include "common/bytes.h"
#include "common/clock.h"

#define MAX_SCENARIOS 64 /* distinct scenario labels in metrics; more -> "other" */
/* How long a commit waits for the dead-letter producer's acknowledgements
 * before it gives the main loop back (the batch stays staged and the commit
 * is retried: the loop never blocks for seconds on an unreachable broker). */
#define DLQ_FLUSH_MS 200

/* The partition ledger of released samples (scale-out): samples, then the
 * samples with each label positive (mtld_label_t order; rating: valid). */
#define PLG_N (1 + MTLD_N_LABELS)
#define PLG_VERSION 1
#define PLG_LEN (1 + 8 * PLG_N)

/* One partition's ledger: every offset it moved past is a record read
 * (applied or rejected by reason) or a record skipped (by cause). */
typedef struct {
  uint64_t read, applied, rejected[MTLD_REJECT_COUNT];
  uint64_t skipped_gap, gaps; /* records gone from Kafka at a resume; gaps seen */
  int64_t gap_from, gap_to;   /* the last gap: offsets [from, to) */
} part_ledger_t;

/* Per partition, by its slot in the partition table. */
typedef struct {
  int64_t next_offset; /* next record to read, as staged */
  int dirty;           /* moved in the current batch */
  int assigned;
  /* The stored offset the partition resumes at (-1: none to check): the
   * first record or end-of-partition after an assignment or a rewind must
   * come from it, or the records in between were skipped. */
  int64_t resume_at;
  int halted; /* a gap with source.on_gap = "stop": nothing more of it is staged */
  part_ledger_t lg, lg_committed;
  /* scale-out: the partition's state is held here (restored from the
   * changelog since its assignment, not revoked since) */
  int current;
  /* scale-out: its state is still in the store but the partition is not
   * assigned (revoked, or held at start): kept while it may come back with
   * its mark intact (mtld_changelog_held), dropped at the next commit when
   * an assignment went by without it (scaleout_settle) */
  int parked;
  /* scale-out: samples released from the partition and their positives per
   * label, kept with the partition's state (meta "plg/"): staged, committed */
  uint64_t plg[PLG_N], plg_c[PLG_N];
  int plg_dirty;
} part_t;

typedef struct {
  uint64_t id;
  char name[MTLD_SCENARIO_MAX];
} scen_t;

#define MAX_SCEN_SLOTS (MAX_SCENARIOS + 1) /* the last: every other scenario */

/* The counters behind the metrics.  Live ones count what is staged; at each
 * commit they are copied to the committed ones, which metrics, STATUS and the
 * stop line show; a dropped batch puts the live ones back (its counts go with
 * it). */
typedef struct {
  uint64_t records, events, rejected_total, samples_released, skipped;
  uint64_t rejected[MTLD_REJECT_COUNT];
  uint64_t events_by_type[MTLD_N_EVENT_TYPES];
  uint64_t scen_events[MAX_SCEN_SLOTS][MTLD_N_EVENT_TYPES];
  uint64_t samples_by_kind[4]; /* by mtld_sample_kind_t (1..3) */
} counts_t;

struct mtld_pipeline {
  const mtld_config_t *cfg; /* borrowed (the daemon's); see mtld_pipeline_reloaded */
  char dlq_topic[256];      /* the topic p->dlq writes to, "" = none */
  mtld_store_t *store;      /* borrowed */
  mtld_watermark_t *wm;     /* borrowed */
  mtld_joiner_t *joiner;
  mtld_demand_t *demand; /* item demand windows, NULL without a "demand" task */
  mtld_dedup_t *dedup;
  mtld_deadletter_t *dlq;
  mtld_source_t *src;
  mtld_sample_sink_fn sink;
  void *sink_ctx;
  void (*revoke_hook)(void *ctx);
  void *revoke_ctx;
  void (*handover_hook)(void *ctx);
  void *handover_ctx;
  mtld_changelog_t *cl; /* scale-out, borrowed; NULL = one instance */
  int settle_wait;      /* scale-out: parked partitions, none assigned (scaleout_settle) */
  int closing;          /* scale-out: the daemon stops, the revocation keeps the state */

  mtld_partition_table_t *ptab; /* (topic, partition) -> slot and partition id */
  part_t parts[MTLD_PARTITION_TABLE_CAP];
  mtld_status_t fatal; /* sticky: a partition the configuration cannot map */
  char fatal_msg[512];

  size_t batch_records;
  int64_t batch_start_mono_ms;
  int dlq_pending;     /* dead letters queued in this batch */
  int end_of_stream;   /* a replayed file ended: every label has arrived */
  int64_t released_wm; /* watermark of the last release */
  int read_failed;     /* a store read failed in this batch: it cannot be committed */
  char read_err[640];  /* where and why */

  /* counters */
  counts_t c, cc; /* live, committed */
  uint64_t batches;
  scen_t scen[MAX_SCENARIOS];
  int n_scen;
  uint64_t unmapped;   /* records of partitions the table refused */
  char gap_alert[256]; /* the last gap, for /healthz and STATUS ("" = none) */
};

/* The slot of (topic, partition), added when new.  A partition the
 * configuration cannot map (partition.h: unknown topic, number or count
 * beyond the limits) is a fatal error: logged once, kept for
 * mtld_pipeline_error, and -1 is returned so that nothing of it is staged. */
static int part_slot(mtld_pipeline_t *p, const char *topic, int32_t partition) {
  int slot;
  char err[sizeof(p->fatal_msg)];
  int n = mtld_partition_table_count(p->ptab);
  mtld_status_t st = mtld_partition_table_get(p->ptab, topic, partition, &slot, err, sizeof(err));
  if (st != MTLD_OK) {
    if (p->fatal == MTLD_OK) {
      p->fatal = st;
      snprintf(p->fatal_msg, sizeof(p->fatal_msg), "%s", err);
      mtld_log(MTLD_LOG_ERR, "partition refused: %s", err);
    }
    return -1;
  }
  if (slot == n) p->parts[slot] = (part_t){.next_offset = -1, .resume_at = -1};
  return slot;
}

/* ---- source hooks ------------------------------------------------------ */

static void reload_joiner(mtld_pipeline_t *p);
static mtld_status_t scaleout_acquire(mtld_pipeline_t *p, const char *topic, int32_t partition);

static mtld_status_t hook_resume(void *ctx, const char *topic, int32_t partition, int64_t *next,
                                 int64_t *max_time_ms) {
  mtld_pipeline_t *p = ctx;
  *max_time_ms = INT64_MIN;
  if (p->cl && scaleout_acquire(p, topic, partition) != MTLD_OK) {
    /* the partition cannot be restored: nothing of it may be consumed (the
     * daemon stops, mtld_pipeline_error); start it at its end meanwhile */
    *next = INT64_MAX;
    return MTLD_OK;
  }
  return mtld_store_get_offset(p->store, topic, partition, next, max_time_ms);
}

/* The offset stored for (topic, partition), -1 when none. */
static int64_t stored_offset(mtld_pipeline_t *p, const char *topic, int32_t partition,
                             int64_t *max_time) {
  int64_t next = -1;
  *max_time = INT64_MIN;
  if (mtld_store_get_offset(p->store, topic, partition, &next, max_time) != MTLD_OK) next = -1;
  return next;
}

static void hook_assigned(void *ctx, const char *topic, int32_t partition, int64_t max_time_ms) {
  mtld_pipeline_t *p = ctx;
  int slot = part_slot(p, topic, partition);
  if (slot < 0) return; /* refused: the daemon stops (mtld_pipeline_error) */
  int64_t max_time;
  p->parts[slot].assigned = 1;
  p->parts[slot].resume_at = stored_offset(p, topic, partition, &max_time); /* armed */
  mtld_watermark_assign(p->wm, topic, partition, max_time_ms);
}

static void reload_joiner(mtld_pipeline_t *p) {
  char err[512];
  if (mtld_joiner_reload(p->joiner, err, sizeof(err)) != MTLD_OK)
    mtld_log(MTLD_LOG_ERR, "joiner reload after rollback: %s", err);
  if (p->demand && mtld_demand_reload(p->demand, err, sizeof(err)) != MTLD_OK)
    mtld_log(MTLD_LOG_ERR, "demand reload after rollback: %s", err);
}

/* Drops the staged batch and puts every in-memory mirror of the state back
 * to what is committed: joiner indexes, partitions' max event times. */
static void drop_batch(mtld_pipeline_t *p) {
  mtld_store_rollback(p->store);
  reload_joiner(p);
  /* the counts of the dropped batch go with it */
  p->c = p->cc;
  mtld_joiner_counters_rollback(p->joiner);
  for (int i = 0; i < mtld_partition_table_count(p->ptab); i++) {
    part_t *pt = &p->parts[i];
    pt->dirty = 0;
    pt->lg = pt->lg_committed;
    memcpy(pt->plg, pt->plg_c, sizeof pt->plg);
    pt->plg_dirty = 0;
    if (!pt->assigned) continue;
    const char *topic = mtld_partition_table_topic(p->ptab, i);
    int32_t partition = mtld_partition_table_partition(p->ptab, i);
    int64_t max_time;
    pt->resume_at = stored_offset(p, topic, partition, &max_time); /* the source rewinds there */
    mtld_watermark_assign(p->wm, topic, partition, max_time);
  }
  p->batch_records = 0;
  p->dlq_pending = 0;
  p->read_failed = 0;
}

void mtld_pipeline_abandon(mtld_pipeline_t *p) {
  if (p->batch_records)
    mtld_log(MTLD_LOG_WARNING,
             "dropping the uncommitted batch (%zu records, replayed after a restart)",
             p->batch_records);
  drop_batch(p);
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
  if (p->handover_hook) p->handover_hook(p->handover_ctx);
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
  int slot;
  if (mtld_partition_table_find(p->ptab, topic, partition, &slot)) {
    p->parts[slot].assigned = 0;
    if (p->cl && p->parts[slot].current) {
      /* scale-out: its state is the next owner's now (README "Scale-out") */
      const uint64_t *g = p->parts[slot].plg_c;
      mtld_log(MTLD_LOG_NOTICE,
               "scale-out: handing over %s[%d] at offset %" PRId64 ": partition ledger: %" PRIu64
               " samples released; positives click %" PRIu64 ", cart %" PRIu64 ", purchase %" PRIu64
               ", review %" PRIu64 "; ratings %" PRIu64,
               topic, (int)partition, stored_offset(p, topic, partition, &(int64_t){0}), g[0],
               g[1 + MTLD_LABEL_CLICK], g[1 + MTLD_LABEL_CART], g[1 + MTLD_LABEL_PURCHASE],
               g[1 + MTLD_LABEL_REVIEW], g[1 + MTLD_LABEL_RATING]);
      /* kept (parked) while it may come back to this instance (an eager
       * rebalance revokes every partition, then assigns most back):
       * scaleout_acquire keeps it when its mark is still the changelog's
       * end, scaleout_settle drops it at the next commit otherwise;
       * stopping, it stays for the next start (mtld_pipeline_scaleout_reset) */
      part_t *pt = &p->parts[slot];
      pt->parked = 1;
      pt->current = 0;
      memset(pt->plg, 0, sizeof pt->plg);
      memset(pt->plg_c, 0, sizeof pt->plg_c);
      pt->plg_dirty = 0;
      mtld_changelog_set_owned(p->cl, mtld_changelog_owned(p->cl) - 1);
    }
  }
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

mtld_status_t mtld_pipeline_new(mtld_pipeline_t **out, const mtld_config_t *cfg,
                                mtld_store_t *store, mtld_watermark_t *wm, char *err,
                                size_t errlen) {
  mtld_pipeline_t *p = calloc(1, sizeof(*p));
  if (!p) return MTLD_ERR_NOMEM;
  p->cfg = cfg;
  p->store = store;
  p->wm = wm;
  /* The topics partition ids are made from: source.topics in order, or the
   * one topic a file source reads. */
  char file_topic[sizeof(cfg->source_file) + 8];
  const char *topics[MTLD_MAX_TOPICS];
  int n_topics = cfg->n_topics;
  for (int i = 0; i < n_topics; i++) topics[i] = cfg->topics[i];
  if (cfg->source_type == MTLD_SOURCE_FILE) {
    mtld_source_file_topic(cfg, file_topic, sizeof(file_topic));
    topics[0] = file_topic;
    n_topics = 1;
  }
  mtld_status_t st = mtld_partition_table_create(&p->ptab, topics, n_topics, err, errlen);
  if (st != MTLD_OK) goto fail;
  st = mtld_dedup_create(&p->dedup, p->store);
  if (st != MTLD_OK) goto fail;
  mtld_joiner_config_t jc = cfg->joiner;
  jc.review_window_ms = mtld_config_review_window_ms(cfg); /* 0 without a review task */
  st = mtld_joiner_create(&p->joiner, p->store, &cfg->features, &jc, err, errlen);
  if (st != MTLD_OK) goto fail;
  if (mtld_config_demand_on(cfg)) {
    st = mtld_demand_create(&p->demand, p->store, &cfg->features, &cfg->demand, err, errlen);
    if (st != MTLD_OK) goto fail;
  }
  if (cfg->dead_letter_topic[0]) {
    st = mtld_deadletter_new(&p->dlq, cfg, err, errlen);
    if (st != MTLD_OK) goto fail;
    snprintf(p->dlq_topic, sizeof(p->dlq_topic), "%s", cfg->dead_letter_topic);
  }
  p->batch_start_mono_ms = mtld_mono_ms();
  p->released_wm = INT64_MIN;
  mtld_watermark_arrival(p->wm, mtld_mono_ms()); /* idle release counts from the start */
  *out = p;
  return MTLD_OK;
fail:
  mtld_pipeline_free(p);
  return st;
}

void mtld_pipeline_set_handover_hook(mtld_pipeline_t *p, void (*fn)(void *ctx), void *ctx) {
  p->handover_hook = fn;
  p->handover_ctx = ctx;
}

void mtld_pipeline_set_revoke_hook(mtld_pipeline_t *p, void (*fn)(void *ctx), void *ctx) {
  p->revoke_hook = fn;
  p->revoke_ctx = ctx;
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
  mtld_joiner_destroy(p->joiner);
  mtld_demand_destroy(p->demand);
  mtld_dedup_destroy(p->dedup);
  mtld_partition_table_destroy(p->ptab);
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

static void reject(mtld_pipeline_t *p, part_t *pt, const mtld_record_t *rec, mtld_reject_t r,
                   const char *msg) {
  p->c.rejected[r]++;
  p->c.rejected_total++;
  pt->lg.rejected[r]++;
  mtld_log_rl(MTLD_LOG_WARNING, mtld_reject_name(r), "rejected %s[%d]@%" PRId64 ": %s: %s",
              rec->topic, (int)rec->partition, rec->offset, mtld_reject_name(r), msg);
  if (!p->dlq) return;
  /* local queue full: the send polled the producer for 100 ms; try again */
  while (mtld_deadletter_send(p->dlq, rec, mtld_reject_name(r), msg) == MTLD_ERR_RETRY) {
  }
  p->dlq_pending++;
}

/* The first record (or end of partition) after a partition resumed: if it
 * is past the stored offset and the broker's log no longer starts at or
 * before that offset, the records in between are gone (retention,
 * DeleteRecords; auto.offset.reset chose where to go on).  Offsets the log
 * still holds that the consumer stepped over are not records (transaction
 * markers, compaction) and are no gap.  Returns 1 when the record may be
 * processed, 0 when not (source.on_gap = "stop": the daemon stops, through
 * mtld_pipeline_error, with the stored offset before the gap). */
static int check_resume(mtld_pipeline_t *p, part_t *pt, const mtld_record_t *rec) {
  int64_t from = pt->resume_at, to = rec->offset;
  pt->resume_at = -1;
  if (from < 0 || to <= from) return 1;
  int64_t low = -1;
  mtld_status_t st = p->src ? mtld_source_log_start(p->src, rec->topic, rec->partition, 5000, &low)
                            : MTLD_ERR_NOTFOUND;
  if (st == MTLD_OK && low <= from) {
    mtld_log(MTLD_LOG_INFO,
             "%s[%d] resumed at offset %" PRId64 ", stored %" PRId64
             ": the offsets between hold no records (transaction markers or compaction)",
             rec->topic, (int)rec->partition, to, from);
    return 1;
  }
  uint64_t n = (uint64_t)(to - from);
  int stop = p->cfg->on_gap == MTLD_GAP_STOP;
  mtld_log(MTLD_LOG_ERR,
           "offset gap on %s[%d]: %" PRIu64 " records skipped (offsets %" PRId64 "..%" PRId64
           ") are gone from Kafka (log start %" PRId64 "%s); source.on_gap = %s: %s",
           rec->topic, (int)rec->partition, n, from, to - 1, low,
           st == MTLD_OK ? "" : ", not confirmed by the broker", stop ? "stop" : "continue",
           stop ? "stopping before anything after the gap is applied, stored offsets unchanged"
                : "counted, going on after the gap");
  snprintf(p->gap_alert, sizeof(p->gap_alert), "offset gap on %s[%d]: %" PRIu64 " records skipped",
           rec->topic, (int)rec->partition, n);
  if (stop) {
    if (p->fatal == MTLD_OK) {
      p->fatal = MTLD_ERR_INVALID;
      snprintf(p->fatal_msg, sizeof(p->fatal_msg), "%s (source.on_gap = \"stop\")", p->gap_alert);
    }
    pt->halted = 1;
    return 0;
  }
  pt->lg.skipped_gap += n;
  pt->lg.gaps++;
  pt->lg.gap_from = from;
  pt->lg.gap_to = to;
  p->c.skipped += n;
  return 1;
}

static void process(mtld_pipeline_t *p, const mtld_record_t *rec);

void mtld_pipeline_process(mtld_pipeline_t *p, const mtld_record_t *rec) {
  if (!p->cl) {
    process(p, rec);
    return;
  }
  /* scale-out: every write staged for the record belongs to its partition */
  int slot;
  if (mtld_partition_table_find(p->ptab, rec->topic, rec->partition, &slot))
    mtld_store_set_partition(p->store, mtld_partition_table_id(p->ptab, slot));
  process(p, rec);
  mtld_store_set_partition(p->store, -1);
}

static void process(mtld_pipeline_t *p, const mtld_record_t *rec) {
  char msg[256];
  mtld_event_t ev;
  /* after a failed read nothing more is staged: the batch is never written,
   * so these records are replayed once the store is repaired */
  if (p->read_failed) return;
  int slot = part_slot(p, rec->topic, rec->partition);
  if (slot < 0) { /* refused: nothing of it is staged, the daemon stops */
    if (!rec->eof) p->unmapped++;
    return;
  }
  part_t *pt = &p->parts[slot];
  if (pt->halted) return;
  if (pt->resume_at >= 0 && !check_resume(p, pt, rec)) return;
  if (rec->eof) {
    if (pt->lg.gap_to == rec->offset && pt->next_offset < rec->offset) {
      /* a gap up to the end (auto.offset.reset = latest with nothing new):
       * the stored offset moves past it so it is reported once */
      pt->next_offset = rec->offset;
      pt->dirty = 1;
      mtld_store_set_offset(p->store, rec->topic, rec->partition, rec->offset,
                            mtld_watermark_max_time(p->wm, rec->topic, rec->partition));
      if (p->batch_records == 0) p->batch_start_mono_ms = mtld_mono_ms();
      p->batch_records++;
    }
    mtld_watermark_set_caught_up(p->wm, rec->topic, rec->partition);
    return;
  }
  mtld_partition_id_t pid = mtld_partition_table_id(p->ptab, slot);
  if (p->batch_records == 0) p->batch_start_mono_ms = mtld_mono_ms();
  mtld_watermark_arrival(p->wm, mtld_mono_ms());
  p->c.records++;
  p->batch_records++;
  pt->lg.read++;
  mtld_reject_t r = mtld_decode_event(rec->payload, rec->len, p->cfg->format,
                                      p->cfg->limits.max_record_bytes, &ev, msg, sizeof(msg));
  if (r == MTLD_REJECT_NONE)
    r = mtld_validate_event(&ev, &p->cfg->limits, mtld_watermark_get(p->wm),
                            mtld_watermark_newest(p->wm), msg, sizeof(msg));
  mtld_status_t seen = MTLD_ERR_NOTFOUND;
  if (r == MTLD_REJECT_NONE && p->cfg->limits.dedup) {
    seen = mtld_dedup_seen(p->dedup, &ev);
    if (seen == MTLD_OK) {
      r = MTLD_REJECT_DUPLICATE;
      snprintf(msg, sizeof(msg), "event %" PRIu64 " at time_ms %" PRId64 " was applied already",
               ev.event_id, ev.time_ms);
    }
  }
  if (r != MTLD_REJECT_NONE) {
    reject(p, pt, rec, r, msg);
  } else {
    mtld_user_features_t ub;
    mtld_item_features_t ib;
    mtld_status_t st =
        seen == MTLD_ERR_NOTFOUND ? mtld_store_apply_part(p->store, &ev, pid, &ub, &ib) : seen;
    if (st == MTLD_OK && p->cfg->limits.dedup) st = mtld_dedup_mark(p->dedup, &ev);
    if (st != MTLD_OK) {
      /* The store could not read its own state: the event can be neither
       * applied nor skipped without breaking exactly-once.  The error is
       * sticky (the store refuses to commit the batch, the offset does not
       * move) and the daemon stops (main.c). */
      snprintf(p->read_err, sizeof(p->read_err), "store apply failed at %s[%d]@%" PRId64 ": %s: %s",
               rec->topic, (int)rec->partition, rec->offset, mtld_status_str(st),
               mtld_store_last_error(p->store));
      mtld_log(MTLD_LOG_ERR, "%s", p->read_err);
      p->read_failed = 1;
      return;
    } else {
      mtld_watermark_observe(p->wm, rec->topic, rec->partition, ev.time_ms);
      st = mtld_joiner_on_event(p->joiner, &ev, pid, rec->offset, &ub, &ib);
      if (st != MTLD_OK)
        mtld_log_rl(MTLD_LOG_ERR, "joiner", "joiner at %s[%d]@%" PRId64 ": %s", rec->topic,
                    (int)rec->partition, rec->offset, mtld_status_str(st));
      if (p->demand) {
        mtld_demand_counters_t before, after;
        mtld_demand_counters(p->demand, &before);
        if ((st = mtld_demand_on_event(p->demand, &ev)) != MTLD_OK)
          mtld_log_rl(MTLD_LOG_ERR, "demand", "demand at %s[%d]@%" PRId64 ": %s", rec->topic,
                      (int)rec->partition, rec->offset, mtld_status_str(st));
        mtld_demand_counters(p->demand, &after);
        if (st == MTLD_OK && after.late != before.late)
          mtld_log_rl(MTLD_LOG_WARNING, "demand_late",
                      "demand: %s[%d]@%" PRId64 " (time_ms %" PRId64
                      ") is in a demand window released already: applied to the features, not "
                      "counted in item demand (mtld_demand_late_events_total)",
                      rec->topic, (int)rec->partition, rec->offset, ev.time_ms);
      }
      p->c.events++;
      p->c.events_by_type[ev.type - 1]++;
      pt->lg.applied++;
      scen_t *s = scen_get(p, &ev);
      p->c.scen_events[s ? s - p->scen : MAX_SCENARIOS][ev.type - 1]++;
    }
  }
  pt->next_offset = rec->offset + 1;
  pt->dirty = 1;
  mtld_store_set_offset(p->store, rec->topic, rec->partition, rec->offset + 1,
                        mtld_watermark_max_time(p->wm, rec->topic, rec->partition));
}

int mtld_pipeline_read_failed(const mtld_pipeline_t *p) {
  return p->read_failed;
}

int mtld_pipeline_batch_due(const mtld_pipeline_t *p) {
  if (p->read_failed) return 1; /* let the commit report it */
  /* nothing consumed, but the watermark moved (a partition reached its
   * end): samples are due for release */
  if (p->batch_records == 0)
    return mtld_watermark_release_point(p->wm, mtld_mono_ms()) > p->released_wm;
  if ((int64_t)p->batch_records >= p->cfg->batch_max_events) return 1;
  return mtld_mono_ms() - p->batch_start_mono_ms >= p->cfg->batch_max_ms;
}

static void release_cb(void *ctx, const mtld_sample_t *s) {
  mtld_pipeline_t *p = ctx;
  int slot;
  if (p->cl && s->kind != MTLD_SAMPLE_ITEM && /* item samples belong to no partition */
      mtld_partition_table_find(p->ptab, p->cfg->topics[mtld_partition_id_topic(s->partition)],
                                mtld_partition_id_number(s->partition), &slot)) {
    part_t *pt = &p->parts[slot];
    pt->plg[0]++;
    for (int l = 0; l < MTLD_N_LABELS; l++)
      if ((s->label_mask >> l) & 1 && (l == MTLD_LABEL_RATING || s->labels[l] > 0.5f))
        pt->plg[1 + l]++;
    pt->plg_dirty = 1;
  }
  p->c.samples_released++;
  if (s->kind >= 1 && s->kind <= 3) p->c.samples_by_kind[s->kind]++;
  if (p->sink) p->sink(p->sink_ctx, s);
}

/* Releases what is due by wm: the joiner's samples and the demand
 * boundaries merged in deadline order (a joiner sample with the same
 * deadline as a boundary first), so the trainer gets the same sequence
 * whatever steps the watermark takes. */
static void release(mtld_pipeline_t *p, int64_t wm) {
  while (p->demand) {
    int64_t dd = mtld_demand_next_deadline(p->demand);
    if (dd >= wm) break;
    mtld_joiner_release(p->joiner, dd + 1, release_cb, p); /* deadlines <= dd */
    if (!mtld_demand_release_next(p->demand, wm, release_cb, p)) break;
  }
  mtld_joiner_release(p->joiner, wm, release_cb, p);
  if (p->demand && mtld_demand_stage(p->demand) != MTLD_OK)
    mtld_log_rl(MTLD_LOG_ERR, "demand", "demand: staging its state failed");
}

/* ---- scale-out (README "Scale-out", daemon/changelog.h) ---------------- */

/* Stages the partition ledgers that moved, tagged with their partition. */
static void stage_plg(mtld_pipeline_t *p) {
  for (int i = 0; i < mtld_partition_table_count(p->ptab); i++) {
    part_t *pt = &p->parts[i];
    if (!pt->plg_dirty) continue;
    mtld_partition_id_t pid = mtld_partition_table_id(p->ptab, i);
    uint8_t k[MTLD_STORE_PLG_KEY_LEN], v[PLG_LEN];
    mtld_store_plg_key(k, pid);
    v[0] = PLG_VERSION;
    for (int j = 0; j < PLG_N; j++) mtld_put_le64(v + 1 + 8 * j, pt->plg[j]);
    mtld_store_set_partition(p->store, pid);
    mtld_store_put(p->store, MTLD_CF_META, k, sizeof k, v, sizeof v);
    mtld_store_set_partition(p->store, -1);
  }
}

static void load_plg(mtld_pipeline_t *p, int slot) {
  part_t *pt = &p->parts[slot];
  uint8_t k[MTLD_STORE_PLG_KEY_LEN];
  mtld_store_plg_key(k, mtld_partition_table_id(p->ptab, slot));
  memset(pt->plg, 0, sizeof pt->plg);
  void *v = NULL;
  size_t vlen = 0;
  if (mtld_store_get(p->store, MTLD_CF_META, k, sizeof k, &v, &vlen) == MTLD_OK &&
      vlen == PLG_LEN && ((uint8_t *)v)[0] == PLG_VERSION)
    for (int j = 0; j < PLG_N; j++) pt->plg[j] = mtld_get_le64((uint8_t *)v + 1 + 8 * j);
  free(v);
  memcpy(pt->plg_c, pt->plg, sizeof pt->plg);
  pt->plg_dirty = 0;
}

/* A partition assigned: unless its state is held here already, what the
 * store holds of it is dropped and it is restored from the changelog. */
static mtld_status_t scaleout_acquire(mtld_pipeline_t *p, const char *topic, int32_t partition) {
  int slot = part_slot(p, topic, partition);
  if (slot < 0) return MTLD_ERR_CONFIG;
  part_t *pt = &p->parts[slot];
  if (pt->current) return MTLD_OK;
  char err[512];
  mtld_partition_id_t pid = mtld_partition_table_id(p->ptab, slot);
  if (pt->parked) {
    /* the restore shortcut (changelog.h): the state kept here is the
     * changelog's end, nothing to restore */
    int held = 0;
    int64_t t0 = mtld_mono_ns();
    mtld_status_t hs = mtld_changelog_held(p->cl, p->store, partition, pid, &held, err, sizeof err);
    double secs = (double)(mtld_mono_ns() - t0) / 1e9;
    pt->parked = 0;
    if (hs == MTLD_OK && held) {
      load_plg(p, slot);
      pt->current = 1;
      mtld_changelog_set_owned(p->cl, mtld_changelog_owned(p->cl) + 1);
      int64_t next = -1, max_time = INT64_MIN;
      mtld_store_get_offset(p->store, topic, partition, &next, &max_time);
      mtld_log(MTLD_LOG_NOTICE,
               "scale-out: %s[%d] kept without a restore: %s; checked in %.3f s; resuming at "
               "offset %" PRId64,
               topic, (int)partition, err, secs, next);
      return MTLD_OK;
    }
    mtld_log(MTLD_LOG_INFO, "scale-out: %s[%d] held locally but restored: %s", topic,
             (int)partition, err);
  }
  if (mtld_store_batch_events(p->store) || p->batch_records) {
    /* an incremental assignment while a batch is staged: the restore
     * reloads the joiner from the committed store, so commit first */
    mtld_status_t st = mtld_pipeline_commit(p, err, sizeof err);
    if (st != MTLD_OK) {
      snprintf(p->fatal_msg, sizeof p->fatal_msg,
               "scale-out: cannot commit before restoring %.40s[%d]: %.400s", topic, (int)partition,
               err);
      p->fatal = MTLD_ERR_IO;
      mtld_log(MTLD_LOG_ERR, "%s", p->fatal_msg);
      return st;
    }
  }
  mtld_changelog_restore_t r;
  mtld_log(MTLD_LOG_INFO, "scale-out: restoring %s[%d] from the changelog", topic, (int)partition);
  mtld_status_t st =
      mtld_changelog_restore(p->cl, p->store, topic, partition, pid, &r, err, sizeof err);
  if (st != MTLD_OK) {
    snprintf(p->fatal_msg, sizeof p->fatal_msg, "scale-out: restoring %.40s[%d]: %.400s", topic,
             (int)partition, err);
    p->fatal = st == MTLD_ERR_RETRY ? MTLD_ERR_IO : st;
    mtld_log(MTLD_LOG_ERR, "%s", p->fatal_msg);
    return st;
  }
  reload_joiner(p);
  load_plg(p, slot);
  pt->current = 1;
  mtld_changelog_set_owned(p->cl, mtld_changelog_owned(p->cl) + 1);
  int64_t next = -1, max_time = INT64_MIN;
  mtld_store_get_offset(p->store, topic, partition, &next, &max_time);
  mtld_log(MTLD_LOG_NOTICE,
           "scale-out: %s[%d] restored: %" PRIu64
           " changelog records in %.3f s (%.0f rec/s, %" PRIu64
           " local keys deleted first); resuming at offset %" PRId64 "%s",
           topic, (int)partition, r.records, r.seconds,
           r.seconds > 0 ? (double)r.records / r.seconds : 0.0, r.dropped, next,
           next < 0 ? " (the changelog does not know it: from the beginning)" : "");
  return MTLD_OK;
}

/* Parked partitions (part_t.parked) not assigned while others are: not
 * this instance's any more, dropped (their pending samples must not be
 * released here).  Their drop reloads the joiner from the committed store,
 * so it is done only with nothing staged (at the start of a commit with an
 * empty batch, else right after the store commit); until then
 * p->settle_wait holds every release back (also while nothing is assigned
 * at all: between an eager revocation and its assignment).  MTLD_OK or the
 * drop's error (err set). */
static mtld_status_t scaleout_settle(mtld_pipeline_t *p, char *err, size_t errlen) {
  int n = mtld_partition_table_count(p->ptab), parked = 0, assigned = 0, dropped = 0;
  for (int i = 0; i < n; i++) {
    parked += p->parts[i].parked && !p->parts[i].assigned;
    assigned += p->parts[i].assigned;
  }
  int staged = p->batch_records || mtld_store_batch_events(p->store);
  p->settle_wait = parked != 0;
  if (!parked || !assigned || staged) return MTLD_OK;
  p->settle_wait = 0;
  for (int i = 0; i < n; i++) {
    part_t *pt = &p->parts[i];
    if (!pt->parked || pt->assigned) continue;
    const char *topic = mtld_partition_table_topic(p->ptab, i);
    int32_t partition = mtld_partition_table_partition(p->ptab, i);
    mtld_status_t st = mtld_changelog_drop(p->cl, p->store, topic, partition,
                                           mtld_partition_table_id(p->ptab, i), err, errlen);
    if (st != MTLD_OK) {
      mtld_log(MTLD_LOG_ERR, "scale-out: dropping %s[%d] (not assigned here): %s", topic,
               (int)partition, err);
      return st;
    }
    pt->parked = 0;
    dropped++;
    mtld_log(MTLD_LOG_INFO, "scale-out: %s[%d] dropped: assigned elsewhere", topic, (int)partition);
  }
  if (dropped) reload_joiner(p);
  return MTLD_OK;
}

int mtld_pipeline_scaleout_holds(const mtld_pipeline_t *p, int32_t partition) {
  int n = mtld_partition_table_count(p->ptab);
  for (int i = 0; i < n; i++)
    if (mtld_partition_table_partition(p->ptab, i) == partition &&
        strcmp(mtld_partition_table_topic(p->ptab, i), p->cfg->topics[0]) == 0)
      return p->parts[i].current;
  return 0;
}

void mtld_pipeline_scaleout_closing(mtld_pipeline_t *p) {
  p->closing = 1;
}

void mtld_pipeline_set_changelog(mtld_pipeline_t *p, mtld_changelog_t *cl) {
  p->cl = cl;
  mtld_store_set_partition_index(p->store, cl != NULL);
}

typedef struct {
  int32_t parts[MTLD_PARTITION_TABLE_CAP];
  int n;
  const char *topic;
} held_t;

static int held_cb(void *ctx, const char *topic, int32_t partition, int64_t next_offset,
                   int64_t max_time_ms) {
  held_t *h = ctx;
  (void)next_offset;
  (void)max_time_ms;
  if (strcmp(topic, h->topic) == 0 && h->n < MTLD_PARTITION_TABLE_CAP) h->parts[h->n++] = partition;
  return 0;
}

static int any_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  (void)key;
  (void)klen;
  (void)val;
  (void)vlen;
  *(int *)ctx = 1;
  return 1;
}

mtld_status_t mtld_pipeline_scaleout_reset(mtld_pipeline_t *p, char *err, size_t errlen) {
  /* users without the partition index (a store built without scale-out)
   * could not be dropped with their partition: refused */
  int users = 0, indexed = 0;
  mtld_store_foreach_raw(p->store, MTLD_CF_USER, NULL, 0, any_cb, &users);
  mtld_store_foreach_raw(p->store, MTLD_CF_META, "upart/", 6, any_cb, &indexed);
  if (users && !indexed) {
    snprintf(err, errlen,
             "the store %s holds users but was built without scale-out (no partition index): "
             "start a scale-out instance with an empty store.path",
             p->cfg->store_path);
    return MTLD_ERR_SCHEMA;
  }
  /* every partition the local store holds is dropped: its next owner (this
   * instance too) restores it from the changelog, which is never behind the
   * store (changelog.h: the recovery rule), so nothing stale is kept */
  held_t *h = calloc(1, sizeof *h);
  if (!h) return MTLD_ERR_NOMEM;
  h->topic = p->cfg->topics[0];
  mtld_store_foreach_offset(p->store, held_cb, h);
  mtld_status_t st = MTLD_OK;
  int dropped = 0, parked = 0;
  for (int i = 0; i < h->n && st == MTLD_OK; i++) {
    mtld_partition_id_t pid = mtld_partition_id(0, h->parts[i]);
    if (pid < 0) continue;
    int slot = mtld_changelog_has_mark(p->store, pid) ? part_slot(p, h->topic, h->parts[i]) : -1;
    if (slot >= 0) {
      /* kept for the restore shortcut: restored or dropped once assigned
       * or not (scaleout_acquire, scaleout_settle) */
      p->parts[slot].parked = 1;
      parked++;
      continue;
    }
    st = mtld_changelog_drop(p->cl, p->store, h->topic, h->parts[i], pid, err, errlen);
    dropped++;
  }
  if (st == MTLD_OK && h->n) {
    mtld_log(MTLD_LOG_INFO,
             "scale-out: of %d partition(s) held at start, %d dropped (no mark), %d kept until "
             "the assignment says whether they are still this store's",
             h->n, dropped, parked);
    if (dropped) reload_joiner(p);
  }
  free(h);
  return st;
}

mtld_status_t mtld_pipeline_commit(mtld_pipeline_t *p, char *err, size_t errlen) {
  if (p->read_failed) { /* nothing released, nothing written */
    snprintf(err, errlen, "batch not written: %s", p->read_err);
    return MTLD_ERR_IO;
  }
  int64_t now = mtld_mono_ms();
  int64_t wm = p->end_of_stream ? INT64_MAX : mtld_watermark_release_point(p->wm, now);
  if (p->cl && scaleout_settle(p, err, errlen) != MTLD_OK) return MTLD_ERR_IO;
  if (p->cl && p->settle_wait) wm = p->released_wm; /* parked pending samples: not ours */
  if (p->batch_records == 0 && wm <= p->released_wm) return MTLD_OK;
  if (!p->end_of_stream && mtld_watermark_idle_released(p->wm, now) && wm > p->released_wm)
    mtld_log(MTLD_LOG_NOTICE,
             "idle release: no record for %" PRId64 " ms (joiner.idle_release): releasing the "
             "pending samples up to event time %" PRId64,
             p->cfg->idle_release_ms, wm);
  /* Dead letters first: the batch moves offsets past them. */
  if (p->dlq && p->dlq_pending) {
    mtld_status_t st = mtld_deadletter_flush(p->dlq, DLQ_FLUSH_MS);
    if (st == MTLD_ERR_RETRY) {
      snprintf(err, errlen, "dead letters not acknowledged by the broker yet (topic %s)",
               mtld_deadletter_topic(p->dlq));
      return MTLD_ERR_RETRY;
    }
    if (st != MTLD_OK && p->src && mtld_source_can_rewind(p->src)) {
      /* Some failed for good (message.timeout.ms): the records behind them
       * are read again from the stored offsets and rejected again. */
      mtld_log(MTLD_LOG_ERR,
               "dead-letter delivery to %s failed: dropping the batch (%zu records) and reading "
               "it again from the stored offsets",
               mtld_deadletter_topic(p->dlq), p->batch_records);
      drop_batch(p);
      mtld_source_rewind(p->src);
      snprintf(err, errlen, "dead-letter delivery failed (topic %s): batch read again",
               mtld_deadletter_topic(p->dlq));
      return MTLD_ERR_RETRY;
    }
    p->dlq_pending = 0;
  }
  release(p, wm);
  if (wm > p->released_wm) p->released_wm = wm;
  mtld_dedup_expire(p->dedup, mtld_watermark_get(p->wm), p->cfg->limits.max_lateness_ms);
  if (p->cl) stage_plg(p);
  int64_t t0 = mtld_mono_ms();
  mtld_status_t st = mtld_store_commit(p->store, err, errlen);
  if (st != MTLD_OK) return st;
  for (int i = 0; i < mtld_partition_table_count(p->ptab); i++) {
    memcpy(p->parts[i].plg_c, p->parts[i].plg, sizeof p->parts[i].plg);
    p->parts[i].plg_dirty = 0;
  }
  p->batches++;
  /* what was staged is durable: so are its counts */
  p->cc = p->c;
  mtld_joiner_counters_commit(p->joiner);
  if (p->demand) mtld_demand_counters_commit(p->demand);
  for (int i = 0; i < mtld_partition_table_count(p->ptab); i++)
    p->parts[i].lg_committed = p->parts[i].lg;
  mtld_log(MTLD_LOG_DEBUG, "batch %" PRIu64 " committed: %zu records, %" PRId64 " ms", p->batches,
           p->batch_records, mtld_mono_ms() - t0);
  p->batch_records = 0;
  /* nothing staged now: parked partitions not assigned can go (their
   * samples were held back by settle_wait in this commit) */
  if (p->cl && p->settle_wait && scaleout_settle(p, err, errlen) != MTLD_OK)
    mtld_log(MTLD_LOG_ERR, "scale-out: %s (retried at the next commit)", err);

  /* Durable: tell Kafka (for lag monitoring only). */
  const char *topics[MTLD_PARTITION_TABLE_CAP];
  int32_t parts[MTLD_PARTITION_TABLE_CAP];
  int64_t offs[MTLD_PARTITION_TABLE_CAP];
  int n = 0;
  for (int i = 0; i < mtld_partition_table_count(p->ptab); i++) {
    if (!p->parts[i].dirty) continue;
    p->parts[i].dirty = 0;
    topics[n] = mtld_partition_table_topic(p->ptab, i);
    parts[n] = mtld_partition_table_partition(p->ptab, i);
    offs[n] = p->parts[i].next_offset;
    n++;
  }
  if (p->src && n) mtld_source_commit(p->src, topics, parts, offs, n);
  return MTLD_OK;
}

void mtld_pipeline_reloaded(mtld_pipeline_t *p) {
  const mtld_config_t *cfg = p->cfg;
  if (strcmp(p->dlq_topic, cfg->dead_letter_topic) == 0) return;
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

mtld_status_t mtld_pipeline_error(const mtld_pipeline_t *p, char *err, size_t errlen) {
  if (p->fatal != MTLD_OK) snprintf(err, errlen, "%s", p->fatal_msg);
  return p->fatal;
}

void mtld_pipeline_stats(const mtld_pipeline_t *p, mtld_pipeline_stats_t *out) {
  out->records = p->cc.records;
  out->events = p->cc.events;
  out->rejected = p->cc.rejected_total;
  out->skipped = p->cc.skipped;
  out->batches = p->batches;
  out->samples_released = p->cc.samples_released;
  memcpy(out->events_by_type, p->cc.events_by_type, sizeof(out->events_by_type));
  out->pending = mtld_joiner_pending_count(p->joiner);
  out->watermark_ms = mtld_watermark_get(p->wm);
}

void mtld_pipeline_log_ledger(const mtld_pipeline_t *p) {
  for (int i = 0; i < mtld_partition_table_count(p->ptab); i++) {
    const part_ledger_t *lg = &p->parts[i].lg_committed;
    char why[512] = "";
    size_t n = 0;
    uint64_t rej = 0;
    for (int r = 1; r < MTLD_REJECT_COUNT; r++) {
      rej += lg->rejected[r];
      if (lg->rejected[r] && n < sizeof(why))
        n += (size_t)snprintf(why + n, sizeof(why) - n, "%s%s %" PRIu64, n ? ", " : ": ",
                              mtld_reject_name(r), lg->rejected[r]);
    }
    mtld_log(MTLD_LOG_NOTICE,
             "ledger %s[%d]: %" PRIu64 " read = %" PRIu64 " applied + %" PRIu64
             " rejected%s; %" PRIu64 " skipped (offset_gap, %" PRIu64 " gaps)",
             mtld_partition_table_topic(p->ptab, i),
             (int)mtld_partition_table_partition(p->ptab, i), lg->read, lg->applied, rej, why,
             lg->skipped_gap, lg->gaps);
  }
  mtld_joiner_counters_t j;
  mtld_joiner_counters_committed(p->joiner, &j);
  mtld_log(MTLD_LOG_NOTICE,
           "ledger joiner: impressions %" PRIu64 " opened + %" PRIu64
           " duplicate_sample; reviews %" PRIu64 " opened + %" PRIu64
           " duplicate_sample; clicks %" PRIu64 " attached + %" PRIu64 " opened_positive + %" PRIu64
           " duplicate_sample + %" PRIu64 " duplicate_click + %" PRIu64 " no_impression + %" PRIu64
           " after_deadline",
           j.opened - j.positives, j.duplicate_sample[0], j.reviews, j.duplicate_sample[1],
           j.clicked - j.positives, j.positives, j.duplicate_sample[2], j.duplicate_click,
           j.unmatched_click - j.late_click, j.late_click);
  mtld_log(MTLD_LOG_NOTICE,
           "ledger joiner: carts %" PRIu64 " attached + %" PRIu64 " repeated + %" PRIu64
           " no_clicked_sample + %" PRIu64 " after_deadline; purchases %" PRIu64
           " attached + %" PRIu64 " repeated + %" PRIu64 " no_clicked_sample + %" PRIu64
           " after_deadline",
           j.carted, j.repeated_cart, j.unmatched_cart - j.late_cart, j.late_cart, j.purchased,
           j.repeated_purchase, j.unmatched_purchase - j.late_purchase, j.late_purchase);
  mtld_log(MTLD_LOG_NOTICE,
           "ledger joiner: samples %" PRIu64 " opened (%" PRIu64 " negatives) = %" PRIu64
           " released + %zu pending + %" PRIu64 " dropped (corrupt)",
           j.opened + j.reviews + j.negatives_sampled, j.negatives_sampled, j.released,
           mtld_joiner_pending_count(p->joiner), j.corrupt);
  if (p->demand) {
    mtld_demand_counters_t dc;
    mtld_demand_counters_committed(p->demand, &dc);
    mtld_log(MTLD_LOG_NOTICE,
             "ledger demand: events %" PRIu64 " counted + %" PRIu64 " late; %" PRIu64
             " item samples released at %" PRIu64 " boundaries (%" PRIu64
             " orders in their labels); %zu (window, item) counters held",
             dc.events, dc.late, dc.samples, dc.boundaries, dc.orders,
             mtld_demand_cells(p->demand));
  }
}

const char *mtld_pipeline_alert(const mtld_pipeline_t *p) {
  return p->gap_alert[0] ? p->gap_alert : NULL;
}

void mtld_pipeline_clear_alert(mtld_pipeline_t *p) {
  p->gap_alert[0] = 0;
}

/* ---- metrics ------------------------------------------------------------- */

void mtld_pipeline_end_of_stream(mtld_pipeline_t *p) {
  p->end_of_stream = 1;
  p->batch_records++; /* make the next commit run even with nothing staged */
}

/* The source side of the ledger (committed counts): per partition, records
 * read = applied + rejected by reason, and records skipped by cause. */
static void render_ledger(mtld_pipeline_t *p, mtld_metrics_buf_t *b) {
  static const char *const fam[4] = {"mtld_source_records_total", "mtld_source_applied_total",
                                     "mtld_source_rejected_total",
                                     "mtld_source_skipped_records_total"};
  static const char *const help[4] = {
      "Records read from each source partition (= applied + rejected).",
      "Records of each source partition applied as events.",
      "Records of each source partition rejected, by reason.",
      "Records of each source partition skipped unread, by cause (offset_gap: gone from Kafka "
      "when the partition resumed)."};
  int n = mtld_partition_table_count(p->ptab);
  for (int k = 0; k < 4; k++) {
    mtld_metrics_family(b, fam[k], "counter", help[k]);
    for (int i = 0; i < n; i++) {
      const part_ledger_t *lg = &p->parts[i].lg_committed;
      char part[16];
      snprintf(part, sizeof(part), "%d", (int)mtld_partition_table_partition(p->ptab, i));
      mtld_metrics_label_t l[3] = {
          {"topic", mtld_partition_table_topic(p->ptab, i)}, {"partition", part}, {NULL, NULL}};
      if (k == 0) mtld_metrics_sample_kv(b, fam[k], l, 2, (double)lg->read);
      if (k == 1) mtld_metrics_sample_kv(b, fam[k], l, 2, (double)lg->applied);
      if (k == 2)
        for (int r = 1; r < MTLD_REJECT_COUNT; r++) {
          if (!lg->rejected[r]) continue;
          l[2] = (mtld_metrics_label_t){"reason", mtld_reject_name(r)};
          mtld_metrics_sample_kv(b, fam[k], l, 3, (double)lg->rejected[r]);
        }
      if (k == 3) {
        l[2] = (mtld_metrics_label_t){"cause", "offset_gap"};
        mtld_metrics_sample_kv(b, fam[k], l, 3, (double)lg->skipped_gap);
      }
    }
  }
  mtld_metrics_family(b, "mtld_source_gaps_total", "counter",
                      "Offset gaps found when a partition resumed (records gone from Kafka).");
  for (int i = 0; i < n; i++) {
    char part[16];
    snprintf(part, sizeof(part), "%d", (int)mtld_partition_table_partition(p->ptab, i));
    mtld_metrics_label_t l[2] = {{"topic", mtld_partition_table_topic(p->ptab, i)},
                                 {"partition", part}};
    mtld_metrics_sample_kv(b, "mtld_source_gaps_total", l, 2,
                           (double)p->parts[i].lg_committed.gaps);
  }
}

void mtld_pipeline_render_metrics(mtld_pipeline_t *p, mtld_metrics_buf_t *b) {
  mtld_metrics_family(b, "mtld_records_total", "counter", "Records consumed (good and bad).");
  mtld_metrics_sample(b, "mtld_records_total", NULL, (double)p->cc.records);

  mtld_metrics_family(b, "mtld_events_total", "counter",
                      "Events applied to the feature store, by type and scenario.");
  for (int i = 0; i < p->n_scen; i++)
    for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) {
      mtld_metrics_label_t l[2] = {{"type", mtld_event_type_name(t + 1)},
                                   {"scenario", p->scen[i].name}};
      mtld_metrics_sample_kv(b, "mtld_events_total", l, 2, (double)p->cc.scen_events[i][t]);
    }
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) {
    if (!p->cc.scen_events[MAX_SCENARIOS][t]) continue;
    mtld_metrics_label_t l[2] = {{"type", mtld_event_type_name(t + 1)}, {"scenario", "_other"}};
    mtld_metrics_sample_kv(b, "mtld_events_total", l, 2,
                           (double)p->cc.scen_events[MAX_SCENARIOS][t]);
  }

  mtld_metrics_family(b, "mtld_records_unmapped_total", "counter",
                      "Records of partitions the configuration cannot map (topic not in "
                      "source.topics, partition number or count beyond the limits): not "
                      "processed, mtld stops.");
  mtld_metrics_sample(b, "mtld_records_unmapped_total", NULL, (double)p->unmapped);

  mtld_metrics_family(b, "mtld_events_rejected_total", "counter",
                      "Records rejected, by reason (sent to the dead-letter topic if set).");
  for (int r = 1; r < MTLD_REJECT_COUNT; r++) {
    mtld_metrics_label_t l[1] = {{"reason", mtld_reject_name(r)}};
    mtld_metrics_sample_kv(b, "mtld_events_rejected_total", l, 1, (double)p->cc.rejected[r]);
  }
  render_ledger(p, b);
  if (p->dlq) mtld_deadletter_render_metrics(p->dlq, b);
  mtld_joiner_render_metrics(p->joiner, b);
  mtld_metrics_family(b, "mtld_samples_released_total", "counter",
                      "Joined samples handed to the trainer, by kind.");
  mtld_metrics_sample(b, "mtld_samples_released_total", "kind=\"impression\"",
                      (double)p->cc.samples_by_kind[1]);
  mtld_metrics_sample(b, "mtld_samples_released_total", "kind=\"review\"",
                      (double)p->cc.samples_by_kind[2]);
  if (p->demand) {
    mtld_metrics_sample(b, "mtld_samples_released_total", "kind=\"item\"",
                        (double)p->cc.samples_by_kind[3]);
    mtld_demand_render_metrics(p->demand, b);
  }
}
