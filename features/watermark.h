/* watermark.h - the event-time watermark over the assigned partitions.
 *
 * Each assigned (topic, partition) keeps the greatest event time seen on it
 * (restored from the store's offset records on assignment).  The watermark is
 *     min over ACTIVE partitions of (max_time - allowed_lateness)
 * and means "events older than this are not expected any more".  A partition
 * does not hold the watermark back (is idle) when
 *   - it has seen nothing yet while another partition has, or
 *   - idle_ms > 0 and its max time is more than idle_ms behind the newest max
 *     time across the assigned partitions.
 * Idleness is measured in event time, never wall clock, so a replay computes
 * the same watermarks as live consumption.  The one exception is opt-in and
 * touches only the release point: idle release (mtld_watermark_release_point).
 *
 * The watermark is not clamped: it may move back when a partition is
 * assigned with an older max time or when an idle partition catches up.
 * Consumers that need monotone release (the joiner) tolerate that: releasing
 * at a lower watermark releases nothing new.
 *
 * Small and array-based (a few hundred partitions at most).  Thread: one
 * thread owns a watermark (the daemon's main loop). */
#ifndef MTLD_WATERMARK_H
#define MTLD_WATERMARK_H

#include <stdint.h>

#include "common/metricstext.h"
#include "common/status.h"

typedef struct mtld_watermark mtld_watermark_t;

/* Creates an empty watermark.  allowed_lateness_ms >= 0; idle_ms >= 0 (0 =
 * a partition is never idle for being behind).  MTLD_OK and *out,
 * MTLD_ERR_INVALID on negative arguments, MTLD_ERR_NOMEM. */
mtld_status_t mtld_watermark_create(mtld_watermark_t **out, int64_t allowed_lateness_ms,
                                    int64_t idle_ms);

/* Frees.  NULL is a no-op. */
void mtld_watermark_destroy(mtld_watermark_t *wm);

/* Changes the lateness and idleness (config reload); same ranges as create,
 * MTLD_ERR_INVALID leaves them unchanged. */
mtld_status_t mtld_watermark_set_params(mtld_watermark_t *wm, int64_t allowed_lateness_ms,
                                        int64_t idle_ms);

/* Assigns (topic, partition) with its restored max event time (INT64_MIN =
 * nothing seen).  Assigning an already assigned partition replaces its max
 * time (after a rollback the stored value is the truth).  The topic is
 * copied.  MTLD_OK or MTLD_ERR_NOMEM. */
mtld_status_t mtld_watermark_assign(mtld_watermark_t *wm, const char *topic, int32_t partition,
                                    int64_t max_time_ms);

/* Forgets (topic, partition); no-op when not assigned. */
void mtld_watermark_revoke(mtld_watermark_t *wm, const char *topic, int32_t partition);

/* Marks (topic, partition) as caught up: the consumer reached the end of
 * what it holds (Kafka's partition EOF).  A caught-up partition does not
 * hold the watermark back until it gets a record again (observe clears the
 * mark).  A partition that is neither caught up nor has seen a record holds
 * the watermark at INT64_MIN: its first records may be older than anything
 * seen, so releases must wait for them whatever order partitions are read
 * in.  No-op for unassigned partitions. */
void mtld_watermark_set_caught_up(mtld_watermark_t *wm, const char *topic, int32_t partition);

/* Records an event time seen on (topic, partition): its max time becomes
 * max(max, time_ms).  An unassigned partition is assigned first (a file
 * replay needs no assign call).  MTLD_OK or MTLD_ERR_NOMEM. */
mtld_status_t mtld_watermark_observe(mtld_watermark_t *wm, const char *topic, int32_t partition,
                                     int64_t time_ms);

/* The current watermark, or INT64_MIN when no assigned partition has seen
 * anything (or none is assigned). */
int64_t mtld_watermark_get(const mtld_watermark_t *wm);

/* The newest max time across the assigned partitions (INT64_MIN if none). */
int64_t mtld_watermark_newest(const mtld_watermark_t *wm);

/* Max event time of (topic, partition), to persist with its offset
 * (mtld_store_set_offset); INT64_MIN when not assigned or nothing seen. */
int64_t mtld_watermark_max_time(const mtld_watermark_t *wm, const char *topic, int32_t partition);

/* Idle release (joiner.idle_release) - the one wall-clock rule, for finite
 * topics: when no record at all has arrived for idle_release_ms of wall
 * time (the caller's monotonic clock), every partition counts as idle and
 * the RELEASE point jumps past the newest event time by horizon_ms + 1
 * (the joiner's click + conversion windows: every pending sample's
 * deadline), as Flink's source idleness lets a stalled stream's windows
 * fire.  The validation watermark (mtld_watermark_get) does not move: late
 * events are judged by event time as before.  Wall clock decides WHEN the
 * samples are released, never their content when the stream really ended;
 * records that arrive after an idle release can find their sample gone (see
 * conf/mtld.conf).  idle_release_ms = 0 (the default) turns it off.
 * MTLD_ERR_INVALID on negative arguments. */
mtld_status_t mtld_watermark_set_idle_release(mtld_watermark_t *wm, int64_t idle_release_ms,
                                              int64_t horizon_ms);

/* Notes that a record arrived at monotonic time now_ms (any record, bad
 * ones too: the stream is not idle).  The owner also calls it once at start
 * so the idle time counts from there. */
void mtld_watermark_arrival(mtld_watermark_t *wm, int64_t now_ms);

/* The watermark to release samples at: mtld_watermark_get(), or, when idle
 * release is on and no record arrived for idle_release_ms before now_ms,
 * the newest event time + horizon_ms + 1 (if greater).  INT64_MIN as
 * mtld_watermark_get. */
int64_t mtld_watermark_release_point(const mtld_watermark_t *wm, int64_t now_ms);

/* 1 when the release point is an idle release now (for logs and metrics). */
int mtld_watermark_idle_released(const mtld_watermark_t *wm, int64_t now_ms);

/* Renders the watermark into b (Prometheus text): mtld_watermark_seconds,
 * NaN before any event. */
void mtld_watermark_render_metrics(const mtld_watermark_t *wm, mtld_metrics_buf_t *b);

/* Number of assigned partitions, and how many of them are idle now. */
int mtld_watermark_partitions(const mtld_watermark_t *wm);
int mtld_watermark_idle_partitions(const mtld_watermark_t *wm);

#endif
