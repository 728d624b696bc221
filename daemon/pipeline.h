/* pipeline.h - one pass per record: decode, validate, update the feature
 * store (point-in-time read first), hand the event to the joiner, and at the
 * end of a batch release joined samples to the sample sink and commit
 * everything with the offsets that produced it.
 *
 * The pipeline owns the store, the watermark, the joiner and the dead-letter
 * producer; it gives the source the hooks through which partitions resume at
 * the stored offsets.  Main thread only. */
#ifndef MTLD_PIPELINE_H
#define MTLD_PIPELINE_H

#include <stdint.h>

#include "daemon/config.h"
#include "daemon/metrics.h"
#include "daemon/source.h"
#include "features/store.h"
#include "trainer/sample.h"
#include "common/status.h"

/* trainer.dump_samples file: "MTLDSMP1", u32 version, u32 sizeof(mtld_sample_t),
 * then raw mtld_sample_t records (host byte order, x86_64 layout) in release
 * order: the exact samples the trainer learns from, for references. */
#define MTLD_SAMPLE_DUMP_MAGIC "MTLDSMP1"
#define MTLD_SAMPLE_DUMP_VERSION 1u

typedef struct mtld_pipeline mtld_pipeline_t;

/* Where released samples go (the trainer, a dump file).  Called in release
 * order, inside mtld_pipeline_commit, before the batch is written. */
typedef void (*mtld_sample_sink_fn)(void *ctx, const mtld_sample_t *s);

/* Opens the store (refusing other feature definitions), creates the
 * watermark, the joiner and, when configured, the dead-letter producer.
 * cfg is borrowed, not copied: it must outlive the pipeline, and only a
 * reload (then mtld_pipeline_reloaded) may change it.
 * Returns MTLD_OK and *out; on error err says why. */
mtld_status_t mtld_pipeline_new(mtld_pipeline_t **out, const mtld_config_t *cfg, char *err,
                                size_t errlen);

/* The same with a trainer restored from a checkpoint: ownership of *trainer
 * passes to the pipeline (*trainer is set to NULL), also on failure.  NULL
 * or *trainer == NULL: a new trainer from cfg->model (when enabled). */
struct mtld_trainer;
mtld_status_t mtld_pipeline_new_with(mtld_pipeline_t **out, const mtld_config_t *cfg,
                                     struct mtld_trainer **trainer, char *err, size_t errlen);

/* Called after a batch was committed because partitions are being revoked
 * (the daemon checkpoints there).  NULL: nothing. */
void mtld_pipeline_set_revoke_hook(mtld_pipeline_t *p, void (*fn)(void *ctx), void *ctx);

/* The store (borrowed) and the current watermark, for checkpoints. */
mtld_store_t *mtld_pipeline_store(mtld_pipeline_t *p);
int64_t mtld_pipeline_watermark(const mtld_pipeline_t *p);

/* Hooks for mtld_source_*_new (resume at stored offsets, commit before a
 * revocation, drop the batch when partitions are lost). */
mtld_source_hooks_t mtld_pipeline_hooks(mtld_pipeline_t *p);

/* Tells the pipeline its source (for Kafka offset commits after each batch). */
void mtld_pipeline_set_source(mtld_pipeline_t *p, mtld_source_t *src);

/* Sets the sample sink (NULL: samples are counted and dropped). */
void mtld_pipeline_set_sink(mtld_pipeline_t *p, mtld_sample_sink_fn fn, void *ctx);

/* Processes one record: a good event updates features and the joiner; a bad
 * one is counted by reason, logged (rate-limited) and sent to the dead-letter
 * topic.  Either way the record's offset joins the batch. */
void mtld_pipeline_process(mtld_pipeline_t *p, const mtld_record_t *rec);

/* 1 when the batch should be committed now: batch_max_events staged, or the
 * oldest staged record is batch_max_ms old (monotonic clock: pacing only). */
int mtld_pipeline_batch_due(const mtld_pipeline_t *p);

/* Ends the batch: releases joined samples up to the watermark to the sink,
 * makes dead letters durable, writes features + joiner state + offsets in
 * one RocksDB write batch, then commits the offsets to Kafka (monitoring).
 * MTLD_OK, or an error (the batch is kept: retry later). */
mtld_status_t mtld_pipeline_commit(mtld_pipeline_t *p, char *err, size_t errlen);

/* After a reload changed the borrowed config (mtld_config_apply, at a batch
 * boundary, on the pipeline's thread): re-derives what the pipeline keeps
 * from it -- the trainer's learning rates and loss weights, the dead-letter
 * producer (on failure the old one stays, logged).  Everything else is read
 * from the config where it is used. */
void mtld_pipeline_reloaded(mtld_pipeline_t *p);

/* Renders every pipeline metric into b (Prometheus text). */
void mtld_pipeline_render_metrics(mtld_pipeline_t *p, mtld_metrics_buf_t *b);

/* The source ended (a replayed file): nothing more will arrive, so the next
 * commit releases every pending sample whatever the watermark says. */
void mtld_pipeline_end_of_stream(mtld_pipeline_t *p);

/* Logs the progressive-validation table, one line per task and scenario. */
void mtld_pipeline_report(mtld_pipeline_t *p);

/* Trains on the samples buffered in the trainer's partial minibatch and
 * flushes the sample dump (before a final checkpoint or at the end of a
 * replay). */
void mtld_pipeline_finish(mtld_pipeline_t *p);

/* The trainer (NULL when trainer.enabled is false); borrowed. */
struct mtld_trainer *mtld_pipeline_trainer(mtld_pipeline_t *p);

/* Totals for STATUS= lines and tests. */
typedef struct {
  uint64_t records, events, rejected, batches, samples_released;
  int64_t watermark_ms;
} mtld_pipeline_stats_t;
void mtld_pipeline_stats(const mtld_pipeline_t *p, mtld_pipeline_stats_t *out);

/* Commits nothing further; closes the dead-letter producer, joiner and store
 * (an uncommitted batch is dropped: call mtld_pipeline_commit first). */
void mtld_pipeline_free(mtld_pipeline_t *p);

#endif
