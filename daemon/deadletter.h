/* deadletter.h - rejected records go to a dead-letter Kafka topic: the
 * original bytes and key, with the reason in headers (mtld-reason,
 * mtld-error, mtld-source-topic, mtld-source-partition, mtld-source-offset).
 *
 * Delivery is at least once: the pipeline calls mtld_deadletter_flush()
 * before it commits the batch that moves the offsets past a rejected record,
 * and does not commit when the flush fails.  Main thread only. */
#ifndef MTLD_DEADLETTER_H
#define MTLD_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/config.h"
#include "daemon/source.h"
#include "common/metricstext.h"
#include "common/status.h"

typedef struct mtld_deadletter mtld_deadletter_t;

/* Creates a producer for cfg->dead_letter_topic with cfg's kafka properties
 * (consumer-only ones are skipped).  Returns MTLD_OK and *out. */
/* 1 when librdkafka property k is for consumers only (a producer built from
 * the `kafka` group skips it: the dead-letter and model-sync producers).
 * Pure; any thread. */
int mtld_deadletter_consumer_only(const char *k);

mtld_status_t mtld_deadletter_new(mtld_deadletter_t **out, const mtld_config_t *cfg, char *err,
                                  size_t errlen);

/* Queues one rejected record.  Returns MTLD_OK, or MTLD_ERR_RETRY when the
 * local queue is full (the caller flushes and retries). */
mtld_status_t mtld_deadletter_send(mtld_deadletter_t *dl, const mtld_record_t *rec,
                                   const char *reason, const char *error);

/* Waits up to timeout_ms for every queued record to be acknowledged.
 * Returns MTLD_OK when all were delivered, MTLD_ERR_RETRY when some are still
 * in flight, MTLD_ERR_IO when a delivery failed for good since the last
 * flush (after librdkafka's own retries for message.timeout.ms; counted in
 * mtld_deadletter_failed and logged: the record stays in the rejection
 * metrics and the log, the batch goes on). */
mtld_status_t mtld_deadletter_flush(mtld_deadletter_t *dl, int timeout_ms);

/* Records delivered / failed so far (metrics). */
uint64_t mtld_deadletter_delivered(const mtld_deadletter_t *dl);
uint64_t mtld_deadletter_failed(const mtld_deadletter_t *dl);

/* Renders mtld_dead_letters_total{outcome="delivered"|"failed"} into b. */
void mtld_deadletter_render_metrics(const mtld_deadletter_t *dl, mtld_metrics_buf_t *b);

/* The topic written to. */
const char *mtld_deadletter_topic(const mtld_deadletter_t *dl);

/* Flushes (bounded by timeout_ms) and destroys.  NULL is a no-op. */
void mtld_deadletter_close(mtld_deadletter_t *dl, int timeout_ms);

#endif
