/* joiner.h - the online label joiner: impressions wait, in event time, for
 * the clicks, carts and purchases that label them; reviews become rating
 * samples; released samples go to the trainer in a deterministic order.
 *
 * Pending samples live in the store's "pending" column family, staged in the
 * same batch as the features and offsets of the events that produced them,
 * so a commit makes features, joiner state and offsets durable together
 * (exactly once).  Only small in-memory indexes are kept (about 200 bytes
 * per pending sample: its key, ids, click time, index slots); they are
 * rebuilt from the committed store at create time and by
 * mtld_joiner_reload() after a rollback.
 *
 * Matching (all in event time; "most recent" = greatest (time, partition,
 * offset), so the choice does not depend on arrival order):
 *   CLICK     -> the pending impression whose event id == the click's
 *                request_id (same user), else one whose request_id == it
 *                (same user and item: a page request shows many items), else
 *                the most recent impression of the same user, item and
 *                scenario with t_imp <= t_click <= t_imp + click_window.
 *                Not-yet-clicked impressions are preferred; a click that
 *                finds only clicked ones counts as duplicate_click.
 *   CART/PURCH-> the clicked pending sample linked by request_id (as above),
 *                else the most recent clicked sample of the same user and item
 *                (same scenario preferred) with t_click <= t <= t_click +
 *                conversion_window.  purchase = click AND purchase (ESMM);
 *                a purchase without a clicked sample labels nothing.
 *   REVIEW    -> a rating sample at once (it waits for release like the rest).
 *                With a review window (review_window_ms > 0, the review
 *                label): also the most recent purchased pending sample of
 *                the same user and item (same scenario preferred) with
 *                t_purchase <= t <= t_purchase + review_window, where
 *                t_purchase is the first purchase that labelled it; review
 *                = click AND purchase AND review (the label of a task
 *                chained on the CTCVR task).  A review without such a
 *                purchase labels nothing (and is still a rating sample).
 *                Without a review window impressions carry no review label.
 * Events of one user are expected on one partition (Kafka key = user id);
 * then matching sees the same pending samples however partitions interleave.
 *
 * Release: a pending sample's deadline is
 *   impression: time + click_window + conversion_window + review_window
 *   review:     time
 * and it is released once deadline < watermark (the watermark says no event
 * older than it is still expected; an event AT the watermark may still come,
 * and it must still find its sample).  Samples are released in
 * (deadline, time, partition, offset, sub) order.  Because released deadlines
 * only grow with the watermark, the whole released sequence is sorted by
 * that key however the release calls split it, and so it does not depend on
 * how partitions interleave (for samples that are not late, i.e. created
 * with deadline >= the highest watermark released so far; late ones are
 * counted and go out with the next release).  With impressions only, that is
 * exactly (time, partition, offset) order.
 * Why an impression not clicked by time + click_window (which can take no
 * label any more) still waits for the full deadline: released then, the
 * negatives would reach the trainer a conversion window before the
 * positives of the same impression time, so at any moment the trainer would
 * see positives from a day ago next to negatives from half an hour ago, and
 * every feature that drifts with time (hour of day, counts that grow)
 * would tell the labels apart.  Tried (2026-12-05, the quality test's
 * stream): the progressive CTR AUC rose to 0.9995 against the oracle's
 * 0.787, a leak, not learning.  One deadline for every impression keeps the
 * label out of the release order.  (Memory: bench/RESULTS.md, "Memory".)
 *
 * Sampled negatives (MTLD_JOIN_SAMPLED_NEGATIVES, streams without
 * impressions): an unmatched CLICK (a page view) becomes a positive sample
 * (click = 1, sub 0).  Its K = negatives_per_positive negatives are drawn
 * when it is RELEASED, not when it arrives: each is the positive itself
 * (same user, user features, sequence, scenario, hour, time) with the "item
 * part" (item id, category id, and the item-only dense features,
 * mtld_features_dense_item_slots) of a DONOR: a positive released earlier,
 * drawn uniformly from the ring of the last popularity_size positives
 * released in the same scenario (one ring per scenario, global over
 * partitions), skipping donors of the positive's own item.  They are handed
 * out right after the positive (subs 1..K), then the positive joins the
 * ring.  Why this has no leak: a donor's item part is what its item looked
 * like at ITS click, taken by the same code at the same moment (just before
 * the click) as the positive's; so negative items come from the same
 * popularity distribution as positive items, and their features are
 * distributed the same way -- in particular a first-ever click of an item
 * (item features all zero) is as frequent among donors as among positives,
 * so "this item was never seen before" tells the classes apart no better
 * than chance.  (Drawing an item from recent clicks and reading its CURRENT
 * features, as earlier versions did, gave negatives only items already seen
 * while positives were often new: an "item seen before" rule alone scored
 * AUC 0.88-0.97 and the model learnt it.)  Release order is
 * (deadline, time, partition, offset, sub) whatever the partition count or
 * interleaving, so the rings, and the negatives, do not depend on either
 * (for samples that are not late).
 * The item part of a positive is not the store's item view read when the
 * click arrived (that depends on how far other partitions were consumed, or
 * with item_view = partition on the partition count) but the RELEASE VIEW,
 * read when the positive is released: an item aggregate of the joiner that
 * every event of the stream (all types, staged as an "item event" with the
 * deadline of a click at its time) updates when it leaves the release heap.
 * Item events and positives leave it in one (time, partition, offset)
 * order, an item event after the sample of the same event, so a positive
 * sees its item over exactly the events before its own click in that order
 * (point in time), whatever the partition count or interleaving; a file
 * replay and 8 partitions give positives (and so donors and negatives) the
 * same item features.  features.item_view does not apply to these samples.
 * (Late events are applied when they are released, out of that order.)
 * The draw uses a PRNG seeded by (seed, positive id), so a replay draws the
 * same negatives; the rings are staged in the same store batch as the
 * release, so a restart continues them.  A repeated view (same user, item
 * and scenario within the click window) matches the earlier positive like a
 * click matches an impression: it counts as duplicate_click and adds
 * nothing.  Position is left absent on all samples of this mode (negatives
 * have none, and a position present only on positives would leak the
 * label).  The first positives of a scenario find an empty ring and go
 * without negatives.
 * Weights: every sample keeps weight 1.  Negatives stand for unobserved
 * impressions whose true number is unknown, so no importance weight would be
 * right; the model learns p(click) in a mix of 1 positive : K negatives
 * (a ranking score, calibrated against that mix, not an absolute CTR).  K is
 * the recorded sampling rate: mtld_joiner_config_t.negatives_per_positive,
 * for the pipeline to export with the metrics and snapshots.  Negatives'
 * sample_id is mtld_joiner_negative_id(click event id, sub).
 *
 * Store layout (column family MTLD_CF_PENDING):
 *   'S' time(8) partition(4) offset(8) sub(4)  -> encoded sample + click time
 *       (integers big-endian with the sign bit flipped, so key order is
 *       (time, partition, offset, sub))
 *   "neg/" scenario(8) 'h'         -> donor ring header (total, capacity)
 *   "neg/" scenario(8) 's' slot(4) -> item id(8), category id(8), n(1), n
 *                                     item dense features (f32)
 *   'E' time(8) partition(4) offset(8) sub(4)  -> an item event waiting for
 *       release (sampled negatives; sub = UINT32_MAX): type(1), time,
 *       event id, item id, category id, rating, price
 *   "rit/" item(8) -> the item's release-view features
 *       (mtld_features_item_encode; sampled negatives)
 *   ("pop/" keys, the per-partition item rings of earlier versions, are
 *   deleted at load.)
 * The partition number in the sample key is the partition id of
 * features/partition.h, unique across topics.
 *
 * Thread: one thread owns a joiner and its store (the daemon's main loop). */
#ifndef MTLD_JOINER_H
#define MTLD_JOINER_H

#include <stddef.h>
#include <stdint.h>

#include "common/metricstext.h"
#include "features/event.h"
#include "features/features.h"
#include "features/partition.h"
#include "features/store.h"
#include "trainer/sample.h"
#include "common/status.h"

typedef enum {
  MTLD_JOIN_IMPRESSIONS = 0,      /* impressions open samples (default) */
  MTLD_JOIN_SAMPLED_NEGATIVES = 1 /* clicks are positives, negatives are sampled */
} mtld_join_mode_t;

typedef struct {
  int64_t click_window_ms;      /* default 30 min */
  int64_t conversion_window_ms; /* default 24 h */
  int mode;                     /* mtld_join_mode_t */
  int negatives_per_positive;   /* K, default 4 (0..MTLD_JOINER_MAX_NEGATIVES) */
  int popularity_size;          /* donor ring size M per scenario, default 10000 */
  uint64_t seed;                /* negative sampling seed, default 0 */
  int64_t review_window_ms;     /* review label window after a purchase; 0 (default) = off */
} mtld_joiner_config_t;

#define MTLD_JOINER_MAX_NEGATIVES 100
#define MTLD_JOINER_MAX_POPULARITY (1 << 24)

/* Fills the defaults above. */
void mtld_joiner_config_default(mtld_joiner_config_t *cfg);

/* Checks ranges (windows >= 0, K and M in range, mode known).  MTLD_OK or
 * MTLD_ERR_CONFIG with err naming the field. */
mtld_status_t mtld_joiner_config_check(const mtld_joiner_config_t *cfg, char *err, size_t errlen);

typedef struct {
  uint64_t opened;              /* pending samples created (impressions, positives) */
  uint64_t positives;           /* of opened: positives of unmatched clicks (sampled negatives) */
  uint64_t reviews;             /* review samples created */
  uint64_t negatives_sampled;   /* negative samples created */
  uint64_t clicked;             /* samples that got click = 1 */
  uint64_t duplicate_click;     /* clicks matched to an already clicked sample */
  uint64_t carted;              /* samples that got cart = 1 */
  uint64_t purchased;           /* samples that got purchase = 1 */
  uint64_t unmatched_click;     /* IMPRESSIONS mode: click without pending impression */
  uint64_t unmatched_cart;      /* cart without a clicked pending sample */
  uint64_t unmatched_purchase;  /* purchase without a clicked pending sample */
  uint64_t duplicate_sample[3]; /* impression [0], review [1], click opening a positive [2]
                                 * whose sample is pending already */
  uint64_t repeated_cart;       /* cart matched to a sample that had cart = 1 already */
  uint64_t repeated_purchase;   /* purchase matched to a sample that had purchase = 1 already */
  uint64_t late_click;          /* of unmatched_click: every sample it could label was released */
  uint64_t late_cart;           /* of unmatched_cart: the same (after the deadline) */
  uint64_t late_purchase;       /* of unmatched_purchase: the same */
  uint64_t late;                /* created with deadline < the highest release watermark */
  uint64_t released;            /* samples handed to the release callback */
  uint64_t corrupt;             /* undecodable pending records dropped */
  uint64_t reviewed;            /* review window: samples that got review = 1 */
} mtld_joiner_counters_t;

typedef struct mtld_joiner mtld_joiner_t;

/* Creates a joiner over `st` (borrowed: it must outlive the joiner) with the
 * feature definitions (copied) and config (copied), and rebuilds its indexes
 * and popularity rings from the COMMITTED pending state (call it before
 * staging anything, or after a commit).  MTLD_OK and *out; MTLD_ERR_CONFIG
 * for a bad config, MTLD_ERR_CORRUPT / MTLD_ERR_NOMEM with err set. */
mtld_status_t mtld_joiner_create(mtld_joiner_t **out, mtld_store_t *st,
                                 const mtld_feature_def_t *def, const mtld_joiner_config_t *cfg,
                                 char *err, size_t errlen);

/* Frees the in-memory state (the store keeps the pending samples).  NULL is
 * a no-op. */
void mtld_joiner_destroy(mtld_joiner_t *j);

/* Drops every in-memory index and ring and rebuilds them from the committed
 * store.  Call after mtld_store_rollback() (the staged pending writes are
 * gone, the indexes must follow).  Counters are kept.  MTLD_OK, or
 * MTLD_ERR_NOMEM / MTLD_ERR_CORRUPT with err set (the joiner is then empty
 * and must be destroyed). */
mtld_status_t mtld_joiner_reload(mtld_joiner_t *j, char *err, size_t errlen);

/* Scale-out: the partition id a key of the pending column family belongs
 * to (a pending sample's or a release-view item event's), or -1 for the
 * joiner's other keys (donor rings, release-view aggregates: not
 * partitioned).  ctx is unused (mtld_store_key_partition_fn). */
int32_t mtld_joiner_key_partition(void *ctx, const void *key, size_t klen);

/* Handles one accepted event, right after mtld_store_apply() filled
 * user_before / item_before (the features BEFORE the event; NULL = never
 * seen).  (partition, offset) is the record's position: it orders release.
 * Stages its pending writes in the store's batch.  MTLD_OK, or an error
 * from the store / MTLD_ERR_NOMEM (the batch should then be rolled back and
 * the joiner reloaded). */
mtld_status_t mtld_joiner_on_event(mtld_joiner_t *j, const mtld_event_t *ev,
                                   mtld_partition_id_t partition, int64_t offset,
                                   const mtld_user_features_t *user_before,
                                   const mtld_item_features_t *item_before);

typedef void (*mtld_joiner_release_fn)(void *ctx, const mtld_sample_t *s);

/* Releases every pending sample with deadline < watermark_ms, in (deadline,
 * time, partition, offset, sub) order: calls fn (the sample is valid during
 * the call only) and stages its deletion; item events of the release view
 * (sampled negatives) due by then are applied to it in the same order.
 * Returns the number of samples released.
 * A lower watermark than before releases nothing new.  A pending record
 * that cannot be read back is dropped and counted as corrupt. */
size_t mtld_joiner_release(mtld_joiner_t *j, int64_t watermark_ms, mtld_joiner_release_fn fn,
                           void *ctx);

/* Number of pending samples (in memory, including staged ones; item events
 * of the release view are not samples and not counted). */
size_t mtld_joiner_pending_count(const mtld_joiner_t *j);

/* Bytes allocated for the joiner's in-memory state: the entry slab, the
 * release heap, the three id maps and the donor rings, by capacity (what
 * the allocator holds, not what is in use).  About 200-330 bytes per
 * pending sample: it grows with the event rate x (click_window +
 * conversion_window), not with the stream's length.  Same thread as the
 * joiner. */
size_t mtld_joiner_memory_bytes(const mtld_joiner_t *j);

/* Renders the joiner's families into b (Prometheus text): samples pending,
 * bytes of its in-memory indexes (mtld_joiner_memory_bytes),
 * and its ledger as of the last mtld_joiner_counters_commit: events by type
 * and outcome (mtld_joiner_events_total), samples opened, released and
 * dropped (mtld_joiner_samples_total). */
void mtld_joiner_render_metrics(const mtld_joiner_t *j, mtld_metrics_buf_t *b);

/* Deadline of the next sample or item event to release (INT64_MAX when
 * none pending). */
int64_t mtld_joiner_next_deadline(const mtld_joiner_t *j);

/* Counters since create (not reset by reload).  Every event handed to
 * mtld_joiner_on_event (that returned MTLD_OK) is counted once:
 *   impressions = opened - positives + duplicate_sample[0]
 *   reviews     = reviews + duplicate_sample[1]
 *   clicks      = clicked + duplicate_click + unmatched_click (IMPRESSIONS
 *                 mode; late_click of them after the deadline), or, sampled
 *                 negatives: clicked (matched or opened) + duplicate_click +
 *                 duplicate_sample[2]
 *   carts       = carted + repeated_cart + unmatched_cart (late_cart of them)
 *   purchases   = purchased + repeated_purchase + unmatched_purchase
 * and every sample opened (opened + reviews + negatives_sampled) is released,
 * pending or corrupt. */
void mtld_joiner_counters(const mtld_joiner_t *j, mtld_joiner_counters_t *out);

/* The counters as of the last mtld_joiner_counters_commit (all zero before). */
void mtld_joiner_counters_committed(const mtld_joiner_t *j, mtld_joiner_counters_t *out);

/* The batch the counters describe was committed: they become the committed
 * ones (metrics).  Call after the store commit. */
void mtld_joiner_counters_commit(mtld_joiner_t *j);

/* The staged batch was dropped: the counters go back to the committed ones
 * (a dropped batch takes its counts with it).  Call with mtld_joiner_reload
 * after mtld_store_rollback. */
void mtld_joiner_counters_rollback(mtld_joiner_t *j);

/* Whether a stream with these event counts (n_by_type[type - 1], so far)
 * can give samples in this mode: 0 when it can (or when too little has been
 * seen to say), else 1 with a one-line advice naming the key to set in buf:
 *   impressions mode, no IMPRESSION, CLICK/CART/PURCHASE seen: click-only
 *     streams need joiner.mode = "sampled_negatives" (only REVIEWs, if any,
 *     give samples);
 *   sampled_negatives mode, IMPRESSIONs seen: impressions are real negatives,
 *     joiner.mode = "impressions" learns from them (this mode ignores them).
 * Pure; any thread. */
int mtld_joiner_shape_advice(const mtld_joiner_config_t *cfg,
                             const uint64_t n_by_type[MTLD_N_EVENT_TYPES], char *buf, size_t len);

/* The sample_id of the negative number sub (1..K) drawn for a click. */
uint64_t mtld_joiner_negative_id(uint64_t click_event_id, uint32_t sub);

/* Builds the sample the joiner opens for event ev (an IMPRESSION or REVIEW;
 * any other type is treated as an impression) from the features as they
 * were BEFORE it (u / it NULL = never seen), exactly as the joiner does:
 * the ONE definition of a sample's inputs, shared with the scorers
 * (tools/mtld-score), so serving sees what training saw.
 *   fields: user = ev->user_id, item = item_id, category = category_id,
 *           scenario = ev->scenario_id, position = ev->position when
 *           with_position and > 0 (else absent), hour = 1 + the UTC hour
 *           of ev->time_ms (mtld_sample_hour_id; so sampled negatives carry
 *           their click's hour); then one field per declared categorical
 *           attribute (mtld_features_attr_inputs: user and item ones from u
 *           and it, context ones from ev); n_fields = MTLD_FIELD_EXTRA + those
 *   dense:  mtld_features_dense(def, u, it, ev->scenario_id, ev->time_ms),
 *           then the declared numeric attributes likewise
 *   seq:    the user's newest items and categories (at most MTLD_MAX_SAMPLE_SEQ)
 *   labels: a REVIEW carries its rating; impressions start with click, cart
 *           and purchase valid and 0; weight 1; id, time from ev.
 * Pure; any thread.  def must produce at most MTLD_MAX_DENSE features. */
void mtld_sample_from_features(mtld_sample_t *s, const mtld_feature_def_t *def,
                               const mtld_event_t *ev, mtld_partition_id_t partition,
                               int64_t offset, const mtld_user_features_t *u,
                               const mtld_item_features_t *it, uint64_t item_id,
                               uint64_t category_id, int with_position);

#endif
