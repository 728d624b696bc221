/* embed.h - bounded hashed embedding tables with sparse per-row optimiser
 * state, frequency admission and event-time expiry.
 *
 * A table has `rows` rows of `dim` floats.  The weights live in the model's
 * one parameter buffer (the table holds a view, it does not own them); the
 * table owns its row state: optimiser accumulators, last-use time, and the
 * count-min sketch that admits an id only after it was seen `admit_after`
 * times.  An id maps to row mix64(id ^ seed) % rows; id 0 means "absent".
 *
 * The minibatch protocol keeps scoring side-effect free:
 *   1. mtld_embed_find()       lookups during forward (no state change),
 *   2. mtld_embed_grad_add()   sparse gradients of the rows found,
 *   3. mtld_embed_apply()      one optimiser step on the touched rows,
 *   4. mtld_embed_touch()      per occurrence, in sample order: admission
 *                              counting, expiry, (re)initialisation, last use.
 * Rows come alive (initialised deterministically from their index) when an
 * admitted id touches them, and die (evicted) when unused for `expire_ms` of
 * EVENT time.  Dead rows read as zero vectors and get no updates.
 * Single-threaded: a table belongs to its model and is used by the thread
 * that uses the model. */
#ifndef MTLD_EMBED_H
#define MTLD_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include "common/hash.h" /* mtld_mix64: the row of an id */
#include "common/status.h"

typedef enum { MTLD_EMB_ADAGRAD = 0, MTLD_EMB_ADAM = 1 } mtld_emb_optim_t;

typedef struct {
  int optim;            /* mtld_emb_optim_t: row-wise Adagrad or lazy Adam */
  float lr;             /* learning rate (reloadable: set the field) */
  float adagrad_init;   /* initial row accumulator */
  float beta1, beta2;   /* Adam */
  float eps;            /* Adagrad and Adam */
  float init_scale;     /* rows start uniform in [-init_scale, init_scale] */
  uint32_t admit_after; /* occurrences before an id gets a row (<= 1: at once) */
  int64_t expire_ms;    /* rows unused this long (event time) die; <= 0: never */
} mtld_embed_config_t;

typedef struct {
  uint64_t live_rows; /* occupancy */
  uint64_t admitted;  /* rows brought to life */
  uint64_t evictions; /* rows expired */
  uint64_t lookups;   /* mtld_embed_find calls with id != 0 */
  uint64_t misses;    /* ... that returned -1 (not admitted or dead) */
} mtld_embed_stats_t;

typedef struct {
  /* configuration and view */
  uint32_t rows;
  int dim;
  uint64_t seed;
  mtld_embed_config_t cfg;
  float *w; /* [rows, dim], view into the model's parameter buffer */
  /* row state (owned) */
  float *acc;         /* [rows] Adagrad accumulator (Adagrad) */
  float *m, *v;       /* [rows, dim] Adam moments (Adam only, else NULL) */
  int64_t *last_used; /* [rows] event time of last use; INT64_MIN = dead row */
  uint16_t *cms;      /* [2, cms_width] count-min sketch (NULL when admit_after <= 1) */
  uint32_t cms_width;
  uint32_t row_mask, cms_mask; /* n - 1 when rows / cms_width n is a power of two (a mask
                                  then gives the same index as % n, without a division) */
  uint64_t adam_step;
  mtld_embed_stats_t stats;
  /* per-minibatch sparse gradient (owned) */
  int32_t *slot_of; /* [rows] slot of a touched row, -1 otherwise */
  int32_t *touched; /* [max_touched] rows in first-touch order */
  float *grad;      /* [max_touched, dim] */
  uint32_t n_touched, max_touched;
} mtld_embed_t;

/* Initialises e over the caller's weight view w[rows*dim] (zeroed here: all
 * rows start dead), allocating the row state.  max_touched bounds the distinct
 * rows one minibatch may touch.  Returns MTLD_OK or MTLD_ERR_NOMEM /
 * MTLD_ERR_INVALID with err filled.  Pair with mtld_embed_free(). */
mtld_status_t mtld_embed_init(mtld_embed_t *e, float *w, uint32_t rows, int dim, uint64_t seed,
                              const mtld_embed_config_t *cfg, uint32_t max_touched, char *err,
                              size_t errlen);
void mtld_embed_free(mtld_embed_t *e);

/* Row of id usable at event time now_ms, or -1 (id 0, not admitted, dead or
 * expired).  No side effect except the lookup counters. */
int32_t mtld_embed_find(mtld_embed_t *e, uint64_t id, int64_t now_ms);

/* Adds g[dim] to the minibatch gradient of live row `row` (>= 0). */
void mtld_embed_grad_add(mtld_embed_t *e, int32_t row, const float *g);

/* Gradient of `row` accumulated since the last apply, or NULL (for tests). */
const float *mtld_embed_grad_of(const mtld_embed_t *e, int32_t row);

/* One optimiser step on every row touched since the last apply, in
 * first-touch order; clears the sparse gradient. */
void mtld_embed_apply(mtld_embed_t *e);

/* Bookkeeping for one occurrence of id at event time now_ms: counts it
 * (when count is non-zero) towards admission, expires the row if unused for
 * expire_ms, brings it to life if the id is admitted, and marks it used. */
void mtld_embed_touch(mtld_embed_t *e, uint64_t id, int64_t now_ms, int count);

/* Kills every live row unused for expire_ms at now_ms and halves the
 * admission counts (so rare ids must keep coming to be admitted). */
void mtld_embed_sweep(mtld_embed_t *e, int64_t now_ms);

/* For model synchronisation (trainer/delta.h).  row_init_values: the
 * values row r takes when it comes to life (out[dim]; a pure function of
 * the table's seed and r, so equal on every instance with the same config).
 * revive: brings dead row r to life as a touch would (initial values, fresh
 * optimiser state) and sets its last use to last_used, or for a live row
 * moves its last use forward to last_used.  kill: row r dies now (weights
 * zeroed, counted as an eviction); a dead row is left alone. */
void mtld_embed_row_init_values(const mtld_embed_t *e, uint32_t r, float *out);
void mtld_embed_revive(mtld_embed_t *e, uint32_t r, int64_t last_used);
void mtld_embed_kill(mtld_embed_t *e, uint32_t r);

/* For moving a user's row with its partition (daemon/userrows.h).
 * row_export: the row of id (w[dim]; m[dim], v[dim] too when the table
 * uses Adam, else untouched; they may be NULL then), its Adagrad
 * accumulator, last use and id's admission count (the count-min estimate,
 * 0 without a sketch); returns 1 when the row is live, 0 when dead (only
 * *count is then meaningful).  No side effect.
 * row_import: raises id's admission counters to at least count and, when
 * live, makes id's row live with exactly the given weights, optimiser
 * state and last use (a row held by another id is overwritten: rows are
 * hashed).  A dead import leaves the row alone. */
int mtld_embed_row_export(const mtld_embed_t *e, uint64_t id, float *w, float *m, float *v,
                          float *acc, int64_t *last_used, uint32_t *count);
void mtld_embed_row_import(mtld_embed_t *e, uint64_t id, int live, const float *w, const float *m,
                           const float *v, float acc, int64_t last_used, uint32_t count);

/* Bytes of row state owned by e (weights excluded: they are the model's). */
size_t mtld_embed_state_bytes(const mtld_embed_t *e);

#endif
