/* dedup.h - de-duplication of events by their id, exactly once with the
 * features.
 *
 * The event id is the idempotency key (DESIGN).  Every event applied leaves
 * (event time, event id) in the store's "seen" column family, staged in the
 * batch that applies it, so the check commits (or rolls back) together with
 * the features; an event found there was applied already (a producer's
 * retry, an upstream replay).  Keys sort by event time, so the entries older
 * than the watermark minus twice validation.max_lateness and an hour are
 * deleted with one range deletion as the watermark moves: validation rejects
 * such events as too_late before they are checked here.
 *
 * Key: event time (8 bytes big-endian, sign bit flipped so that signed order
 * is byte order) | event id (8 bytes big-endian); the value is empty.
 *
 * Thread: the store's owner (the daemon's main loop). */
#ifndef MTLD_DEDUP_H
#define MTLD_DEDUP_H

#include <stdint.h>

#include "common/status.h"
#include "features/event.h"
#include "features/store.h"

#define MTLD_DEDUP_KEY_LEN 16
#define MTLD_DEDUP_EXPIRE_STEP_MS 3600000 /* range deletions move by an hour of event time */

typedef struct mtld_dedup mtld_dedup_t;

/* Creates the check over `store` (borrowed: it must outlive the dedup).
 * MTLD_OK and *out, or MTLD_ERR_NOMEM. */
mtld_status_t mtld_dedup_create(mtld_dedup_t **out, mtld_store_t *store);

/* Frees.  NULL is a no-op. */
void mtld_dedup_destroy(mtld_dedup_t *d);

/* The key of (time_ms, event_id) into k. */
void mtld_dedup_key(uint8_t k[MTLD_DEDUP_KEY_LEN], int64_t time_ms, uint64_t event_id);

/* Whether ev was applied already (committed or staged in the current batch):
 * MTLD_OK = seen (a duplicate), MTLD_ERR_NOTFOUND = new, or the store's read
 * error (mtld_store_last_error() says why). */
mtld_status_t mtld_dedup_seen(mtld_dedup_t *d, const mtld_event_t *ev);

/* Stages ev as applied, in the current batch.  MTLD_OK or the store's error. */
mtld_status_t mtld_dedup_mark(mtld_dedup_t *d, const mtld_event_t *ev);

/* Stages the deletion of the entries older than watermark_ms - (2 *
 * max_lateness_ms + 1 h) when that horizon moved by at least
 * MTLD_DEDUP_EXPIRE_STEP_MS since the last deletion (none before any
 * watermark).  Call before each commit.  Errors leave the entries for the
 * next call. */
void mtld_dedup_expire(mtld_dedup_t *d, int64_t watermark_ms, int64_t max_lateness_ms);

/* Event time below which entries were deleted (INT64_MIN: none yet). */
int64_t mtld_dedup_expired_below(const mtld_dedup_t *d);

#endif
