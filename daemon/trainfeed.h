/* trainfeed.h - the trainer's own thread, fed the released samples in
 * release order through a bounded queue.
 *
 * Determinism is about order, not threads: one consumer takes the samples in
 * the order they were pushed, so the trainer sees exactly the sequence it
 * would see if the main thread called mtld_trainer_observe itself, and its
 * weights are bit-identical.  The main thread meanwhile goes on with the
 * next records (decode, store, joiner) on the other core.
 *
 * Whoever reads or copies the trainer's state must first either drain the
 * queue (a consistent cut: checkpoints and snapshots, reload, shutdown -
 * the trainer then holds every sample pushed so far, as it would without the
 * thread) or hold the trainer lock (a glance: metrics, the pv report).
 *
 * Thread: every function from the thread that created the feed (the main
 * thread), except that the worker inside runs mtld_trainer_observe and the
 * hook (mtld_trainfeed_set_hook). */
#ifndef MTLD_TRAINFEED_H
#define MTLD_TRAINFEED_H

#include <stddef.h>

#include "common/status.h"
#include "trainer/sample.h"
#include "trainer/train.h"

typedef struct mtld_trainfeed mtld_trainfeed_t;

/* Starts the worker for trainer t (borrowed: it must outlive the feed) with
 * a queue of capacity samples (>= 1).  MTLD_OK, or MTLD_ERR_NOMEM /
 * MTLD_ERR_IO (the thread could not start) with err filled. */
mtld_status_t mtld_trainfeed_start(mtld_trainfeed_t **out, mtld_trainer_t *t, size_t capacity,
                                   char *err, size_t errlen);

/* Queues a copy of s for the trainer; blocks while the queue is full. */
void mtld_trainfeed_push(mtld_trainfeed_t *f, const mtld_sample_t *s);

/* Returns once the worker has observed every sample pushed so far (the
 * queue is empty and the worker idle): the trainer may then be read or
 * changed by the caller until the next push.  NULL: no-op. */
void mtld_trainfeed_drain(mtld_trainfeed_t *f);

/* The trainer lock: held by the worker while it observes one sample.  Hold
 * it to read the trainer (metrics) without waiting for the queue to drain.
 * NULL: no-op. */
void mtld_trainfeed_lock(mtld_trainfeed_t *f);
void mtld_trainfeed_unlock(mtld_trainfeed_t *f);

/* After each sample the trainer accepted, the worker calls fn(ctx, s)
 * while it still holds the trainer lock (scale-out: daemon/userrows.h
 * notes the users trained).  Drains first, so no sample already pushed is
 * seen by fn; fn NULL: none.  fn must not take the trainer lock. */
typedef void (*mtld_trainfeed_observer_fn)(void *ctx, const mtld_sample_t *s);
void mtld_trainfeed_set_observer(mtld_trainfeed_t *f, mtld_trainfeed_observer_fn fn, void *ctx);

/* Has the worker call fn(ctx) after every sample it observes, holding the
 * trainer lock (NULL fn: none; the default).  fn runs on the worker thread,
 * only while there are samples to observe: after a drain it is not running,
 * so the drainer's read of the trainer stays a consistent cut (scale-out's
 * model sync: daemon/modelsync.h).  fn may release the trainer lock
 * (mtld_trainfeed_unlock) to wait, and must take it back before it returns.
 * Setting the hook takes the trainer lock: a hook that waits must let its
 * waits end first (modelsync does). */
void mtld_trainfeed_set_hook(mtld_trainfeed_t *f, void (*fn)(void *ctx), void *ctx);

/* Whether a drain or the stop is under way: a hook that waits (above) ends
 * its wait, so the drain is not held.  Any thread, no lock. */
int mtld_trainfeed_draining(mtld_trainfeed_t *f);

/* Samples queued and not yet observed (a gauge for the metrics). */
size_t mtld_trainfeed_depth(mtld_trainfeed_t *f);

/* Drains, stops and joins the worker, frees.  The trainer stays the
 * caller's.  NULL: no-op. */
void mtld_trainfeed_stop(mtld_trainfeed_t *f);

#endif
