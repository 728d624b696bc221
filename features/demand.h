/* demand.h - item-level demand samples: orders per item over the next
 * horizon, for a regression task (label "demand") next to the per-impression
 * tasks.
 *
 * Event time is cut into windows of `horizon_ms` (window k = [k*h, (k+1)*h),
 * floor division, so the cut is the same for every stream).  Every accepted
 * event adds to its item's counters in its window: events per type and
 * orders (the purchased quantity, at least 1 per PURCHASE).  At each
 * boundary b = k*h one sample is made per item ACTIVE (any event) in the
 * window before it (k - 1):
 *   features  as of the boundary, from the item's own windows only: the
 *             item and category ids (the category of the item's latest event
 *             in window k - 1), no user (id 0, no sequence: see README,
 *             "Item demand"), the hour field of b, and MTLD_DEMAND_DENSE
 *             dense values appended after the feature definition's
 *             (mtld_demand_dense below) after the definition's dense
 *             features and numeric attributes, which (with the categorical
 *             attribute fields) are those of a sample without user and item
 *             features: the store is not read, so the sample does not depend
 *             on how far other partitions were consumed,
 *   label     orders of the item in window k (0 when it had none),
 *   naive     orders in window k - 1 ("same as the last hour") and the mean
 *             of the orders in windows k - 1 .. k - M (M = windows, a moving
 *             average counting windows without orders as 0).
 * The samples of boundary b are released once the watermark passes the end
 * of its label window: deadline (k + 1) * h - 1 < watermark, in item id
 * order; boundaries in increasing order.  The caller merges them with the
 * joiner's release by deadline (mtld_demand_next_deadline), so the trainer
 * sees one sequence whatever the watermark's steps.  A window is only
 * released up to the highest event time seen (a replayed file that ends does
 * not release label windows it never reached).  Events of a window whose
 * boundary was released already (window <= the last released boundary) are
 * late: counted and dropped, so every sample is the same however the
 * partitions interleave.
 *
 * Store (column family MTLD_CF_PENDING, staged in the same batch as the
 * offsets, so a crash or restore resumes exactly):
 *   "dem/w" window(8, order-preserving) item(8) -> counters (below)
 *   "dem/m"                                     -> last released boundary,
 *                                                  highest event time
 * Windows older than the history needs (k - M for the next boundary) are
 * deleted when released.
 * Thread: one thread owns it (the pipeline's, with the joiner and store). */
#ifndef MTLD_DEMAND_H
#define MTLD_DEMAND_H

#include <stddef.h>
#include <stdint.h>

#include "common/metricstext.h"
#include "common/status.h"
#include "features/event.h"
#include "features/features.h"
#include "features/store.h"
#include "trainer/sample.h"

/* Dense values of an item sample, appended after the feature definition's
 * (all log1p of counts in the item's windows before the boundary):
 *   0..2  orders in windows k-1, k-2, k-3
 *   3     mean orders of windows k-1 .. k-M
 *   4..7  impressions, clicks, carts, purchases (events) in window k-1 */
#define MTLD_DEMAND_DENSE 8
#define MTLD_DEMAND_MAX_WINDOWS 168 /* M at most: a week of hours */

typedef struct {
  int64_t horizon_ms; /* window and label horizon, default 1 h (> 0) */
  int windows;        /* M: moving-average (and history) windows, default 6 (1..168) */
} mtld_demand_config_t;

void mtld_demand_config_default(mtld_demand_config_t *cfg);
/* MTLD_OK or MTLD_ERR_CONFIG with err naming the field. */
mtld_status_t mtld_demand_config_check(const mtld_demand_config_t *cfg, char *err, size_t errlen);

typedef struct {
  uint64_t events;     /* events counted into a window */
  uint64_t late;       /* events dropped: their window's boundary was released */
  uint64_t samples;    /* item samples released */
  uint64_t boundaries; /* boundaries released (sample sets, possibly empty of orders) */
  uint64_t orders;     /* orders counted (sum of the labels released, rounded) */
} mtld_demand_counters_t;

typedef struct mtld_demand mtld_demand_t;

/* Creates the demand windows over `st` (borrowed, outlives it) with the
 * feature definitions (copied: the dense layout) and config (copied), and
 * loads the COMMITTED window state.  MTLD_OK, MTLD_ERR_CONFIG,
 * MTLD_ERR_NOMEM or MTLD_ERR_CORRUPT with err set. */
mtld_status_t mtld_demand_create(mtld_demand_t **out, mtld_store_t *st,
                                 const mtld_feature_def_t *def, const mtld_demand_config_t *cfg,
                                 char *err, size_t errlen);
/* NULL is a no-op. */
void mtld_demand_destroy(mtld_demand_t *d);

/* Drops the in-memory windows and loads them from the committed store
 * (after mtld_store_rollback); the counters go back to the committed ones.
 * MTLD_OK or an error with err set. */
mtld_status_t mtld_demand_reload(mtld_demand_t *d, char *err, size_t errlen);

/* Counts one accepted event into its item's window and stages the write.
 * MTLD_OK (also for a late event, counted and dropped), or an error of the
 * store / MTLD_ERR_NOMEM (roll the batch back and reload). */
mtld_status_t mtld_demand_on_event(mtld_demand_t *d, const mtld_event_t *ev);

/* Deadline of the next boundary to release ((k + 1) * h - 1), INT64_MAX
 * when none is pending. */
int64_t mtld_demand_next_deadline(const mtld_demand_t *d);

/* Releases the NEXT boundary if its deadline < watermark_ms and its label
 * window does not end after the highest event time seen: calls fn for each
 * of its samples in item id order (valid during the call only), stages the
 * deletion of windows no longer needed.  Returns 1 when a boundary was
 * released, 0 otherwise. */
int mtld_demand_release_next(mtld_demand_t *d, int64_t watermark_ms,
                             void (*fn)(void *ctx, const mtld_sample_t *s), void *ctx);

/* Stages the meta record (last released boundary, highest time) when it
 * changed; call once before each store commit. */
mtld_status_t mtld_demand_stage(mtld_demand_t *d);

/* The dense values of an item sample (MTLD_DEMAND_DENSE): orders[i] in
 * window k-1-i (i < 3), the moving average, then events[t] per type of
 * window k-1 (impression, click, cart, purchase).  Pure. */
void mtld_demand_dense(float out[MTLD_DEMAND_DENSE], const float orders[3], float ma,
                       const uint32_t events[4]);

/* Counters: live, as of the last commit, and the commit of the batch they
 * describe (as the joiner's; mtld_demand_reload rolls them back). */
void mtld_demand_counters(const mtld_demand_t *d, mtld_demand_counters_t *out);
void mtld_demand_counters_committed(const mtld_demand_t *d, mtld_demand_counters_t *out);
void mtld_demand_counters_commit(mtld_demand_t *d);

/* Windows and (window, item) cells in memory. */
size_t mtld_demand_cells(const mtld_demand_t *d);

/* Renders mtld_demand_* families (committed counters, cells, horizon). */
void mtld_demand_render_metrics(const mtld_demand_t *d, mtld_metrics_buf_t *b);

#endif
