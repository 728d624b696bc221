/* source.c - dispatch to the Kafka or file source. */
#include "daemon/source_int.h"

int mtld_source_poll(mtld_source_t *src, mtld_record_t *recs, int max, int timeout_ms, char *err,
                     size_t errlen) {
  return src->ops->poll(src, recs, max, timeout_ms, err, errlen);
}

void mtld_source_commit(mtld_source_t *src, const char *const *topics, const int32_t *partitions,
                        const int64_t *next_offsets, int n) {
  if (src->ops->commit) src->ops->commit(src, topics, partitions, next_offsets, n);
}

void mtld_source_foreach_lag(mtld_source_t *src,
                             void (*fn)(void *ctx, const char *topic, int32_t partition,
                                        int64_t lag),
                             void *ctx) {
  if (src->ops->foreach_lag) src->ops->foreach_lag(src, fn, ctx);
}

int mtld_source_connected(const mtld_source_t *src) {
  return src->ops->connected ? src->ops->connected(src) : 1;
}

int mtld_source_can_rewind(const mtld_source_t *src) {
  return src->ops->rewind != NULL;
}

void mtld_source_rewind(mtld_source_t *src) {
  if (src->ops->rewind) src->ops->rewind(src);
}

mtld_status_t mtld_source_log_start(mtld_source_t *src, const char *topic, int32_t partition,
                                    int timeout_ms, int64_t *low) {
  if (!src->ops->log_start) return MTLD_ERR_NOTFOUND;
  return src->ops->log_start(src, topic, partition, timeout_ms, low);
}

void mtld_source_close(mtld_source_t *src) {
  if (src) src->ops->close(src);
}
