/* delta.h - the shared part of a model as exchanged between instances that
 * train one model data-parallel (README "Scale-out"): model deltas and
 * bases, encoded as bytes.  Knows nothing of Kafka or of the daemon.
 *
 * The shared part is the dense parameters (the prefix of the parameter
 * buffer: experts, gates, towers, task weights) and the rows of every
 * embedding table not named local (items, categories, scenarios, positions,
 * attribute tables, ...).  Local tables (the user table: a user's row lives
 * with the user's partition) and the dense parameters' Adam moments are never
 * exchanged.  With MTLD_DELTA_ACCUMULATORS the row-wise Adagrad accumulator
 * of every shared row travels with the row (a delta carries its increment,
 * a base its value): the accumulator is a sum of squared gradients, so the
 * instances' increments add up to what one instance seeing every sample
 * would hold, and each instance's step on a shared row is the size one
 * instance's would be.  Without it each instance's accumulator holds only
 * its own gradients (k instances: about 1/k of the sum) and its steps on
 * shared rows are about sqrt(k) times too large.
 *
 * A tracker keeps a shadow of the shared part: the shared model as this
 * instance knows it (its own published deltas plus every remote delta it
 * applied).  Then:
 *   extract(DELTA)  the local change since the last extract, w - shadow,
 *                   over the dense part and the shared rows whose values
 *                   moved (a row born locally counts from its initial
 *                   values, which every instance computes alike); the
 *                   shadow becomes w;
 *   apply(DELTA)    a remote delta is added to w and to the shadow (a row
 *                   dead here is brought to life at its initial values plus
 *                   the delta, its last use the sender's);
 *   extract(BASE)   the shadow in full (dense values, normaliser, live
 *                   shared rows with their last use): what a newcomer
 *                   starts from;
 *   apply(BASE)     w and shadow := the base over the shared part (shared
 *                   rows absent from it die); local tables are kept.
 * The output bias of a task that follows its running label mean
 * (mtld_task_t.bias_mean) moves on each instance by its own mean's change:
 * that shift is left out of the deltas (else the shared bias would move once
 * per instance); a base carries the running mean, which a newcomer adopts.
 * Summing every instance's deltas gives the shared model the sum of all
 * instances' optimiser steps: the same number of steps per sample as one
 * instance (asynchronous data-parallel SGD).
 *
 * The count-min admission sketch of every shared table that has one
 * (admit_after > 1) travels too: a delta carries the cells' increments since
 * the last extract, a base the counts; applied, increments add up
 * (saturating at 65535), so an id the group has seen is admitted on every
 * instance as on one, and a newcomer starting from a base knows the ids the
 * others counted (a decrease by the local sweep's halving is not
 * published: each instance halves its own).
 *
 * Encoding (little-endian): "MTLDDLT3" | u32 kind | u64 shape | u32 n_dense
 * | u32 n_tables | (BASE: u64 norm count, f64 mean[MTLD_MAX_DENSE], f64
 * m2[MTLD_MAX_DENSE], per task f64 label sum and u64 label count) | f32 dense[n_dense] | per table:
 * u32 field, u32 rows present, then per row: u32 row, i64 last use, f32 values[dim], f32
 * accumulator (DELTA: its increment; 0 for tables whose accumulators are not
 * exchanged) | u32 n_sketches, per sketch: u32 field, u32 cells (2 x
 * cms_width), u32 entries, per entry: u32 cell, u16 value (BASE: the count;
 * DELTA: its increment; cells at 0 left out).  Version 2 ("MTLDDLT2") had
 * no sketches, version 1 ("MTLDDLT1") no accumulator either; a message of
 * another version is refused (MTLD_ERR_SCHEMA).
 *
 * Thread: a tracker belongs to the thread that owns its model (or whoever
 * holds the trainer's lock). */
#ifndef MTLD_DELTA_H
#define MTLD_DELTA_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "trainer/model.h"

#define MTLD_DELTA_MAGIC "MTLDDLT3"

/* mtld_delta_new flags */
#define MTLD_DELTA_ACCUMULATORS 1u /* exchange the shared rows' Adagrad accumulators */

typedef enum { MTLD_DELTA_DELTA = 0, MTLD_DELTA_BASE = 1 } mtld_delta_kind_t;

typedef struct mtld_delta mtld_delta_t;

typedef struct {
  uint64_t rows;     /* embedding rows in the message */
  size_t bytes;      /* encoded size */
  double delta_l2;   /* DELTA: L2 norm of the change published (dense + rows) */
  double weight_l2;  /* DELTA: L2 norm of the shared weights after it */
  double divergence; /* delta_l2 / weight_l2 (0 when the weights are 0) */
} mtld_delta_stats_t;

/* Creates a tracker of model m's shared part; local_fields: bit f set =
 * field f's table is local (not exchanged); flags: MTLD_DELTA_ACCUMULATORS
 * or 0 (joins the shape: instances must agree).  The shadow starts as m's
 * current shared part (nothing unpublished).  MTLD_OK, MTLD_ERR_NOMEM or
 * MTLD_ERR_INVALID (a mask bit past the model's fields) with err filled.
 * m must outlive the tracker.  Free with mtld_delta_free. */
mtld_status_t mtld_delta_new(mtld_delta_t **out, mtld_model_t *m, uint64_t local_fields,
                             unsigned flags, char *err, size_t errlen);
void mtld_delta_free(mtld_delta_t *d);

/* The shape of what this tracker exchanges: a hash of the parameter layout
 * (dense size, tables' rows, dimension and hash seeds, the local mask).  Two
 * instances may exchange deltas only when their shapes are equal. */
uint64_t mtld_delta_shape(const mtld_delta_t *d);

/* Encodes a DELTA (and moves the shadow to w) or a BASE (the shadow; no
 * change) into *buf (malloc'ed, caller frees), *len bytes; st (may be NULL)
 * gets its statistics.  MTLD_OK or MTLD_ERR_NOMEM. */
mtld_status_t mtld_delta_extract(mtld_delta_t *d, int kind, void **buf, size_t *len,
                                 mtld_delta_stats_t *st);

/* The kind of an encoded message (mtld_delta_kind_t) and its shape; -1 when
 * buf is not one, -2 when it is one of another format version. */
int mtld_delta_peek(const void *buf, size_t len, uint64_t *shape);

/* Applies an encoded DELTA or BASE (above) to the model and the shadow.
 * Returns MTLD_OK; MTLD_ERR_SCHEMA when its shape or format version is not
 * this tracker's (nothing changed); MTLD_ERR_CORRUPT for a malformed message (checked in
 * full before anything changes).  err filled on error. */
mtld_status_t mtld_delta_apply(mtld_delta_t *d, const void *buf, size_t len, char *err,
                               size_t errlen);

#endif
