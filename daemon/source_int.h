/* source_int.h - what the Kafka and file sources share (private to daemon/source*.c). */
#ifndef MTLD_SOURCE_INT_H
#define MTLD_SOURCE_INT_H

#include "daemon/source.h"

typedef struct {
  int (*poll)(mtld_source_t *src, mtld_record_t *recs, int max, int timeout_ms, char *err,
              size_t errlen);
  void (*commit)(mtld_source_t *src, const char *const *topics, const int32_t *partitions,
                 const int64_t *next_offsets, int n);
  void (*foreach_lag)(mtld_source_t *src,
                      void (*fn)(void *ctx, const char *topic, int32_t partition, int64_t lag),
                      void *ctx);
  int (*connected)(const mtld_source_t *src);
  void (*rewind)(mtld_source_t *src);
  mtld_status_t (*log_start)(mtld_source_t *src, const char *topic, int32_t partition,
                             int timeout_ms, int64_t *low);
  void (*pause)(mtld_source_t *src, int paused); /* NULL: poll returns nothing while paused */
  void (*close)(mtld_source_t *src);
} mtld_source_ops_t;

struct mtld_source {
  const mtld_source_ops_t *ops;
  mtld_source_hooks_t hooks;
  int paused; /* mtld_source_pause */
};

#endif
