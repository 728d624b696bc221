/* source.c - dispatch to the Kafka or file source. */
#include "daemon/source_int.h"

#include <stdio.h>
#include <time.h>

int mtld_source_poll(mtld_source_t *src, mtld_record_t *recs, int max, int timeout_ms, char *err,
                     size_t errlen) {
  if (src->paused && !src->ops->pause) {
    struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 0;
  }
  return src->ops->poll(src, recs, max, timeout_ms, err, errlen);
}

void mtld_source_pause(mtld_source_t *src, int paused) {
  if (!src || src->paused == (paused != 0)) return;
  src->paused = paused != 0;
  if (src->ops->pause) src->ops->pause(src, src->paused);
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

static void lag_cb(void *ctx, const char *topic, int32_t partition, int64_t lag) {
  mtld_metrics_buf_t *b = ctx;
  char part[16];
  snprintf(part, sizeof(part), "%d", (int)partition);
  mtld_metrics_label_t l[2] = {{"topic", topic}, {"partition", part}};
  mtld_metrics_sample_kv(b, "mtld_consumer_lag", l, 2, (double)lag);
}

void mtld_source_render_metrics(mtld_source_t *src, mtld_metrics_buf_t *b) {
  mtld_metrics_family(b, "mtld_consumer_lag", "gauge",
                      "Records behind the partition's high watermark.");
  mtld_source_foreach_lag(src, lag_cb, b);
  mtld_metrics_family(b, "mtld_source_connected", "gauge", "1 while brokers are reachable.");
  mtld_metrics_sample(b, "mtld_source_connected", NULL, mtld_source_connected(src));
}
