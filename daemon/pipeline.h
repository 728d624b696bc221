/* pipeline.h - one pass per record: decode, validate, update the feature
 * store (point-in-time read first), hand the event to the joiner, and at the
 * end of a batch release joined samples to the sample sink and commit
 * everything with the offsets that produced it.
 *
 * The daemon (main) owns the store, the watermark and the trainer; the
 * pipeline writes the store and moves the watermark, and hands released
 * samples to its sink (main attaches the trainer and the sample dump there).
 * The pipeline owns the joiner, the de-duplication check and the dead-letter
 * producer; it gives the source the hooks through which partitions resume at
 * the stored offsets.  Main thread only. */
#ifndef MTLD_PIPELINE_H
#define MTLD_PIPELINE_H

#include <stdint.h>

#include "daemon/config.h"
#include "common/metricstext.h"
#include "daemon/source.h"
#include "features/store.h"
#include "features/watermark.h"
#include "trainer/sample.h"
#include "daemon/changelog.h"
#include "common/status.h"

typedef struct mtld_pipeline mtld_pipeline_t;

/* Where released samples go (the trainer, a dump file).  Called in release
 * order, inside mtld_pipeline_commit, before the batch is written. */
typedef void (*mtld_sample_sink_fn)(void *ctx, const mtld_sample_t *s);

/* Creates the pipeline over an open store and a watermark (both borrowed:
 * they must outlive the pipeline): the de-duplication check, the joiner
 * (rebuilt from the store) and, when configured, the dead-letter producer.
 * cfg is borrowed too, not copied: it must outlive the pipeline, and only a
 * reload (then mtld_pipeline_reloaded) may change it.
 * Returns MTLD_OK and *out; on error err says why. */
mtld_status_t mtld_pipeline_new(mtld_pipeline_t **out, const mtld_config_t *cfg,
                                mtld_store_t *store, mtld_watermark_t *wm, char *err,
                                size_t errlen);

/* Called after a batch was committed because partitions are being revoked
 * (the daemon checkpoints there).  NULL: nothing. */
void mtld_pipeline_set_revoke_hook(mtld_pipeline_t *p, void (*fn)(void *ctx), void *ctx);

/* Called before the commit that precedes a revocation (not a lost one):
 * scale-out drains the trainer there, so that commit's changelog
 * transaction carries the user rows of every sample released so far
 * (daemon/userrows.h).  NULL: nothing.  Main thread. */
void mtld_pipeline_set_handover_hook(mtld_pipeline_t *p, void (*fn)(void *ctx), void *ctx);

/* Hooks for mtld_source_*_new (resume at stored offsets, commit before a
 * revocation, drop the batch when partitions are lost). */
mtld_source_hooks_t mtld_pipeline_hooks(mtld_pipeline_t *p);

/* Tells the pipeline its source (for Kafka offset commits after each batch). */
void mtld_pipeline_set_source(mtld_pipeline_t *p, mtld_source_t *src);

/* Scale-out (daemon/changelog.h): with cl (borrowed, NULL = one instance)
 * every write staged for a record is tagged with its partition, users get
 * their partition index, a partition's released samples are counted in its
 * ledger (meta "plg/", logged by mtld_pipeline_log_ledger), an assigned
 * partition is restored from the changelog before it is consumed (a
 * failure is fatal: mtld_pipeline_error) unless its local state is the
 * changelog's end (mtld_changelog_held: kept), and a revoked one is kept
 * aside until the next commit, dropped then unless assigned back (nothing
 * is released while kept-aside partitions wait for an assignment).  Set
 * before the source is created.  Main thread. */
void mtld_pipeline_set_changelog(mtld_pipeline_t *p, mtld_changelog_t *cl);

/* Scale-out, at start (after mtld_pipeline_set_changelog): drops the local
 * state of every partition the store holds an offset for but no restore
 * mark (they are restored when assigned); those with a mark are kept aside
 * like revoked ones (kept if assigned and still the changelog's end, else
 * dropped or restored).  MTLD_OK; MTLD_ERR_SCHEMA when the store holds
 * users but no partition index (built without scale-out: they could not be
 * dropped with their partitions); or the store's error; err set. */
mtld_status_t mtld_pipeline_scaleout_reset(mtld_pipeline_t *p, char *err, size_t errlen);

/* Scale-out: 1 when source partition `partition` (of the first topic) is
 * held here now (restored or kept since its assignment, not revoked), else
 * 0.  Main thread (the changelog's commit hook). */
int mtld_pipeline_scaleout_holds(const mtld_pipeline_t *p, int32_t partition);

/* Scale-out: the daemon stops; the revocation that leaving the group brings
 * logs each partition's ledger but keeps its state in the local store (for
 * inspection and the restore shortcut at the next start,
 * mtld_pipeline_scaleout_reset). */
void mtld_pipeline_scaleout_closing(mtld_pipeline_t *p);

/* Sets the sample sink (NULL: samples are counted and dropped). */
void mtld_pipeline_set_sink(mtld_pipeline_t *p, mtld_sample_sink_fn fn, void *ctx);

/* Processes one record: a good event updates features and the joiner; a bad
 * one is counted by reason, logged (rate-limited) and sent to the dead-letter
 * topic.  Either way the record's offset joins the batch.  A record of a
 * partition the configuration cannot map is not processed (counted; see
 * mtld_pipeline_error).  The first record (or end of partition) after a
 * partition resumed at its stored offset is checked for an offset gap
 * (records gone from Kafka): counted and reported, and with source.on_gap =
 * "stop" nothing of that partition is staged and mtld_pipeline_error says
 * why. */
void mtld_pipeline_process(mtld_pipeline_t *p, const mtld_record_t *rec);

/* 1 when a read of the store failed in this batch (RocksDB's error, e.g.
 * a damaged .sst): the batch cannot be committed (mtld_pipeline_commit
 * fails with the store's text), later records are ignored, and the daemon
 * must stop without advancing any offset.  0 otherwise. */
int mtld_pipeline_read_failed(const mtld_pipeline_t *p);

/* 1 when the batch should be committed now: batch_max_events staged, or the
 * oldest staged record is batch_max_ms old (monotonic clock: pacing only). */
int mtld_pipeline_batch_due(const mtld_pipeline_t *p);

/* Ends the batch: releases joined samples up to the watermark to the sink,
 * makes dead letters durable, writes features + joiner state + offsets in
 * one RocksDB write batch, then commits the offsets to Kafka (monitoring).
 * MTLD_OK, or an error (the batch is kept: retry later). */
mtld_status_t mtld_pipeline_commit(mtld_pipeline_t *p, char *err, size_t errlen);

/* Gives up the staged batch (the daemon stops on a store failure): nothing
 * of it is written, the in-memory state goes back to the last commit, and
 * the records are replayed from the stored offsets after a restart.  A
 * later commit then has nothing to write. */
void mtld_pipeline_abandon(mtld_pipeline_t *p);

/* After a reload changed the borrowed config (mtld_config_apply, at a batch
 * boundary, on the pipeline's thread): re-derives what the pipeline keeps
 * from it, the dead-letter producer (on failure the old one stays, logged).
 * Everything else (batch sizes, validation limits) is read from the config
 * where it is used. */
void mtld_pipeline_reloaded(mtld_pipeline_t *p);

/* Renders the pipeline's counters into b (Prometheus text) and the families
 * of what it owns (joiner, dead letters); the store, the watermark and the
 * source render their own (their owner calls them). */
void mtld_pipeline_render_metrics(mtld_pipeline_t *p, mtld_metrics_buf_t *b);

/* The source ended (a replayed file): nothing more will arrive, so the next
 * commit releases every pending sample whatever the watermark says. */
void mtld_pipeline_end_of_stream(mtld_pipeline_t *p);

/* MTLD_OK, or the fatal error that stops the daemon (err says why): a
 * partition was assigned, or a record arrived from one, that the
 * configuration cannot map to a partition id (features/partition.h: topic
 * not in source.topics, partition number above 65535, more partitions than
 * one mtld holds), or an offset gap with source.on_gap = "stop".  Nothing
 * of such a partition is staged. */
mtld_status_t mtld_pipeline_error(const mtld_pipeline_t *p, char *err, size_t errlen);

/* Totals for STATUS= lines and tests: what was committed (a dropped batch's
 * counts are gone with it).  skipped: records gone from Kafka at a resume
 * (offset gaps). */
typedef struct {
  uint64_t records, events, rejected, skipped, batches, samples_released;
  int64_t watermark_ms;
  uint64_t events_by_type[MTLD_N_EVENT_TYPES]; /* applied events, [type - 1] */
  uint64_t pending;                            /* the joiner's pending samples */
} mtld_pipeline_stats_t;
void mtld_pipeline_stats(const mtld_pipeline_t *p, mtld_pipeline_stats_t *out);

/* The last offset gap, e.g. "offset gap on events[2]: 1000 records
 * skipped", for /healthz (degraded) and STATUS until cleared; NULL when
 * none.  Valid until the next call on p. */
const char *mtld_pipeline_alert(const mtld_pipeline_t *p);

/* Clears the alert (the operator acknowledged it: SIGHUP). */
void mtld_pipeline_clear_alert(mtld_pipeline_t *p);

/* Logs the ledger of what was committed: per source partition, records read
 * = applied + rejected (by reason), and skipped; the joiner's events by
 * outcome and samples opened = released + pending + dropped.  At the end of a
 * run (metrics vanish with the process). */
void mtld_pipeline_log_ledger(const mtld_pipeline_t *p);

/* Commits nothing further; closes the dead-letter producer and the joiner
 * (an uncommitted batch stays staged in the store: call mtld_pipeline_commit
 * first, or close the store to drop it).  NULL is a no-op. */
void mtld_pipeline_free(mtld_pipeline_t *p);

#endif
