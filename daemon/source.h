/* source.h - where records come from: a Kafka consumer group or an event file.
 *
 * Both give the pipeline the same thing, records with (topic, partition,
 * offset), so a replay runs exactly the processing path of live consumption.
 * The pipeline owns the offsets: it tells the source, through hooks, where
 * each assigned partition resumes (the offsets stored in RocksDB with the
 * state they produced), and is told before partitions go away so it can make
 * its batch durable first.
 *
 * Thread: a source is used from the daemon's main thread only; hooks run on
 * that thread too (inside mtld_source_poll). */
#ifndef MTLD_SOURCE_H
#define MTLD_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/config.h"
#include "common/metricstext.h"
#include "common/status.h"

typedef struct {
  const void *payload;
  size_t len;
  const void *key;
  size_t key_len;
  const char *topic;
  int32_t partition;
  int64_t offset;
  /* 1: not a record but the news that the consumer reached the partition's
   * end (Kafka's partition EOF), delivered in order with the records so the
   * pipeline marks the partition caught up after its last record. */
  int eof;
} mtld_record_t;

/* The four hooks; any may be NULL.  Order for a Kafka rebalance: on an
 * assignment, resume for every partition (where to start), the assignment,
 * then resume again and assigned for every partition; on a revocation,
 * revoke_begin once, then revoke_partition for every partition, before the
 * partitions go (there is no end call).  After lost partitions the Kafka
 * source calls resume again for the partitions it still owns, to rewind
 * them.  A file source calls resume and assigned once, when it is created,
 * and never revokes. */
typedef struct {
  /* Where (topic, partition) resumes: MTLD_OK and *next (the offset of the
   * next record to read), or MTLD_ERR_NOTFOUND to start from Kafka's
   * committed offset (or auto.offset.reset).  *max_time_ms is the
   * partition's stored max event time (INT64_MIN if none). */
  mtld_status_t (*resume)(void *ctx, const char *topic, int32_t partition, int64_t *next,
                          int64_t *max_time_ms);
  /* A revocation starts: the partitions are about to be revoked (lost = 0:
   * make the batch durable now) or were lost (lost = 1: another member may
   * own them already, the staged batch must be dropped, not committed). */
  void (*revoke_begin)(void *ctx, int lost);
  /* One partition of the revocation that revoke_begin started. */
  void (*revoke_partition)(void *ctx, const char *topic, int32_t partition);
  /* An assignment of (topic, partition) took effect; max_time_ms as resume
   * gave it. */
  void (*assigned)(void *ctx, const char *topic, int32_t partition, int64_t max_time_ms);
  void *ctx;
} mtld_source_hooks_t;

typedef struct mtld_source mtld_source_t;

/* Creates a Kafka source: consumer in cfg's group, subscribed to cfg's topics,
 * every cfg->kafka property passed to librdkafka (enable.auto.commit and
 * enable.auto.offset.store are forced off: offsets live in the store).  The
 * hooks are copied. */
mtld_status_t mtld_source_kafka_new(mtld_source_t **out, const mtld_config_t *cfg,
                                    const mtld_source_hooks_t *hooks, char *err, size_t errlen);

/* Creates a file source over cfg->source_file (topic "file:<path>",
 * partition 0, offset = record index).  Resumes at the stored offset (through
 * the resume hook) when there is one. */
mtld_status_t mtld_source_file_new(mtld_source_t **out, const mtld_config_t *cfg,
                                   const mtld_source_hooks_t *hooks, char *err, size_t errlen);

/* The topic name a file source gives its records: "file:<source.file>". */
void mtld_source_file_topic(const mtld_config_t *cfg, char *out, size_t outlen);

/* Fills up to max records, waiting at most timeout_ms for the first.  Records
 * stay valid until the next call.  Returns the count (0 on timeout), or -1
 * when a file source reached its end (nothing more will come).  A framing
 * error in a file is reported through err and ends the file (-1). */
int mtld_source_poll(mtld_source_t *src, mtld_record_t *recs, int max, int timeout_ms, char *err,
                     size_t errlen);

/* Back-pressure: paused != 0 stops consumption (Kafka: every assigned
 * partition, and any assigned later, is paused with
 * rd_kafka_pause_partitions; the consumer keeps polling for group
 * membership, and resuming fetches again from the next record not handed
 * out), 0 resumes.  While paused, mtld_source_poll returns at most the few
 * records fetched before the pause (Kafka) or none (a file: it waits
 * timeout_ms and returns 0).  Main thread. */
void mtld_source_pause(mtld_source_t *src, int paused);

/* Tells Kafka the consumed offsets after a durable batch (for lag monitoring
 * only; never read back for state).  Asynchronous; failures are logged at
 * debug level (a commit during a rebalance fails on some brokers).  No-op for
 * files.  next_offsets: parallel arrays of n entries. */
void mtld_source_commit(mtld_source_t *src, const char *const *topics, const int32_t *partitions,
                        const int64_t *next_offsets, int n);

/* Consumer lag of each assigned partition (high watermark - position) for
 * metrics; calls fn per partition.  Kafka only. */
void mtld_source_foreach_lag(mtld_source_t *src,
                             void (*fn)(void *ctx, const char *topic, int32_t partition,
                                        int64_t lag),
                             void *ctx);

/* 1 when the source can go back to the stored offsets (Kafka), 0 when not
 * (files: they resume at the stored offset only when opened). */
int mtld_source_can_rewind(const mtld_source_t *src);

/* Seeks every assigned partition back to the offset its resume hook gives
 * (the stored offsets), so records of a dropped batch are read again.  Blocks
 * up to a few seconds.  No-op when the source cannot rewind. */
void mtld_source_rewind(mtld_source_t *src);

/* The first offset the partition's log still holds (Kafka's low watermark),
 * asked of the broker (blocks up to timeout_ms).  MTLD_OK and *low;
 * MTLD_ERR_NOTFOUND for a source without one (files); MTLD_ERR_RETRY when
 * the broker did not answer. */
mtld_status_t mtld_source_log_start(mtld_source_t *src, const char *topic, int32_t partition,
                                    int timeout_ms, int64_t *low);

/* 1 while the source can reach its brokers (Kafka: no "all brokers down"
 * since the last successful fetch), for STATUS and /healthz. */
int mtld_source_connected(const mtld_source_t *src);

/* Renders the source's families into b (Prometheus text): the consumer lag
 * per partition and whether the brokers are reachable. */
void mtld_source_render_metrics(mtld_source_t *src, mtld_metrics_buf_t *b);

/* Closes: Kafka leaves the group (rd_kafka_consumer_close, which runs the
 * revoke hook) and is destroyed.  NULL is a no-op. */
void mtld_source_close(mtld_source_t *src);

#endif
