/* kafka_out.h - a small synchronous-looking Kafka producer for the tools
 * (mtld-gen --kafka, mtld-produce): send records keyed by user, then wait for
 * every delivery report and say whether all were delivered.
 *
 * Defaults: partitioner murmur2_random (the Java client's, so records keyed
 * by user land where other producers would put them), acks=all,
 * linger.ms=5.  Any --kafka-prop overrides them.  Thread: one thread. */
#ifndef MTLD_KAFKA_OUT_H
#define MTLD_KAFKA_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct mtld_kout mtld_kout_t;

/* Creates a producer for `topic`.  props: n "key=value" strings passed to
 * librdkafka after the defaults.  Returns MTLD_OK or MTLD_ERR_CONFIG (err). */
mtld_status_t mtld_kout_new(mtld_kout_t **out, const char *bootstrap, const char *topic,
                            const char *const *props, int n_props, char *err, size_t errlen);

/* Queues one record (key and payload are copied; keylen 0 = no key).  Polls
 * and retries while the local queue is full.  Returns MTLD_OK, or
 * MTLD_ERR_IO when librdkafka refuses the record (err). */
mtld_status_t mtld_kout_send(mtld_kout_t *k, const void *key, size_t keylen, const void *buf,
                             size_t len, char *err, size_t errlen);

/* Waits up to timeout_ms for every outstanding delivery report.  Returns
 * MTLD_OK when every record sent so far was delivered, MTLD_ERR_IO otherwise
 * (err names the first failure or the number still in flight). */
mtld_status_t mtld_kout_flush(mtld_kout_t *k, int timeout_ms, char *err, size_t errlen);

/* Delivered and failed counts so far (from delivery reports). */
int64_t mtld_kout_delivered(const mtld_kout_t *k);
int64_t mtld_kout_failed(const mtld_kout_t *k);

/* Destroys the producer without waiting (call mtld_kout_flush first). */
void mtld_kout_destroy(mtld_kout_t *k);

#endif
