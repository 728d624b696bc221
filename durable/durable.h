/* durable.h - checkpoints (consistent cuts) and serving snapshots of the
 * running daemon, and recovery at start.
 *
 * A checkpoint is taken at a batch boundary: the store has nothing staged,
 * so a RocksDB checkpoint (hard links) plus a copy of the trainer's state in
 * memory is the whole cut; the files are then written by a worker thread,
 * so ingestion stops only for the link-and-copy.  A serving snapshot is
 * captured (a copy of the weights) on the main thread and written by the
 * same worker.  Intervals are wall clock (pacing only) or counted samples.
 *
 * Recovery (durable/checkpoint.h has the rule): the newest complete
 * checkpoint gives the trainer; its store replaces the live one unless the
 * live store's committed offsets are exactly the checkpoint's (clean stop).
 *
 * Thread: the main thread, except the worker inside. */
#ifndef MTLD_DURABLE_H
#define MTLD_DURABLE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/config.h"
#include "common/metricstext.h"
#include "features/store.h"
#include "features/watermark.h"
#include "common/status.h"
#include "trainer/train.h"

typedef struct mtld_durable mtld_durable_t;

/* Before the store is opened: finds the newest usable checkpoint under
 * cfg->checkpoint_dir and, if there is one, restores what must be restored.
 * *trainer gets its trainer (or NULL when there is no checkpoint or the
 * trainer is disabled); *found tells whether a checkpoint was used.
 * MTLD_OK, or an error (the daemon must not start on a half restore). */
mtld_status_t mtld_durable_recover(const mtld_config_t *cfg, mtld_trainer_t **trainer, int *found,
                                   char *err, size_t errlen);

/* Starts the worker.  The cut is made of store (committed state and
 * offsets), trainer (NULL when trainer.enabled is false: then there is
 * nothing to checkpoint or snapshot, the store alone is the state) and the
 * watermark's value; all three are borrowed and must outlive d, and so is
 * cfg (the daemon's): intervals and keep counts are read from it when due,
 * so a reload that changes them needs no call; the worker thread reads only
 * cfg's checkpoint and snapshot dirs, which a reload never changes.  The
 * caller commits its batch before asking for a checkpoint. */
mtld_status_t mtld_durable_new(mtld_durable_t **out, const mtld_config_t *cfg, mtld_store_t *store,
                               mtld_trainer_t *trainer, const mtld_watermark_t *wm, char *err,
                               size_t errlen);

/* The trainer may be fed by another thread (daemon/trainfeed.h): fn(ctx) is
 * called before every read of the trainer (the cut of a checkpoint, the
 * capture of a snapshot, the sample count of checkpoint_every_samples) and
 * must return only when the trainer holds every sample released so far.
 * NULL (the default): the trainer is the caller's thread's alone. */
void mtld_durable_set_quiesce(mtld_durable_t *d, void (*fn)(void *ctx), void *ctx);
/* Called after each committed batch: takes a checkpoint and/or a snapshot
 * when their interval (or sample count) is due.  Errors are logged. */
void mtld_durable_tick(mtld_durable_t *d);

/* Takes a checkpoint now (the batch must be committed).  wait: return only
 * when it is on disk (shutdown, first checkpoint).  MTLD_OK or an error. */
mtld_status_t mtld_durable_checkpoint(mtld_durable_t *d, int wait, char *err, size_t errlen);

/* Writes a serving snapshot now.  wait as above. */
mtld_status_t mtld_durable_snapshot(mtld_durable_t *d, int wait, char *err, size_t errlen);

/* Checkpoint and snapshot metrics (durations, stalls, ages, failures).
 * NULL: nothing (after shutdown). */
void mtld_durable_render_metrics(mtld_durable_t *d, mtld_metrics_buf_t *b);

/* Waits for the worker to finish what it has, then frees.  NULL: no-op. */
void mtld_durable_free(mtld_durable_t *d);

#endif
