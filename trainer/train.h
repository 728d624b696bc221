/* train.h - the online trainer: takes samples one by one in release order,
 * scores each with the model as it stands (progressive validation: before
 * the model learns from it), buffers it into a fixed-size minibatch, and
 * trains when the batch is full.
 *
 * The model only changes at batch boundaries, so the scores recorded in the
 * metrics (computed by the batch's forward pass, before its update) are the
 * scores every sample got from the model that had not yet seen it.
 * Everything is deterministic: the same sample sequence (and the same flush
 * points) gives bit-identical parameters.  Single-threaded: one thread owns a
 * trainer (in the daemon, the main loop's thread, which feeds it the
 * released samples and copies it for checkpoints and snapshots); nothing
 * here locks. */
#ifndef MTLD_TRAIN_H
#define MTLD_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/metricstext.h"
#include "trainer/model.h"
#include "trainer/pvmetrics.h"
#include "trainer/rank.h"
#include "trainer/sample.h"
#include "common/status.h"

#define MTLD_TRAINER_MAGIC "MTLDTRN\0"
#define MTLD_TRAINER_VERSION                                                                       \
  6u /* 2: mtld_model_config_t gained interactions; 3: rating                                      \
       baselines, running-mean bias; 4: samples carry a fifth label (review);                      \
       5: MTLD_MAX_FIELDS 8 -> 22 (categorical attributes); 6: a sixth label (demand), naive       \
       forecasts, MAE in the metrics */

typedef struct mtld_trainer mtld_trainer_t;

/* The rows of the trainer's progressive metrics: one per task, in task
 * order, then one baseline row per chained ESMM task (an ESMM task whose
 * parent is an ESMM task, e.g. review on ctcvr), named "<task>_base": the
 * parent's prediction times the running rate of the task's label among
 * the parent's positives so far (P(review | purchase) from past samples:
 * (positives + 1) / (parent positives + 2)), scored on the same samples as
 * the task; then two regression rows per task of label "demand", the naive
 * forecasts item samples carry (sample.h naive[]): "<task>_last" (orders
 * in the window before, "same as the last hour") and "<task>_ma" (moving
 * average).  Configs without a chained or demand task have exactly one row
 * per task. */
#define MTLD_TRAINER_PV_MAX_ROWS (3 * MTLD_MAX_TASKS)
typedef struct {
  int n;                                /* rows */
  int is_reg[MTLD_TRAINER_PV_MAX_ROWS]; /* regression rows */
  int task[MTLD_TRAINER_PV_MAX_ROWS];   /* the task a row scores */
  int naive[MTLD_TRAINER_PV_MAX_ROWS];  /* demand baseline rows: MTLD_NAIVE_*; else -1 */
  char names[MTLD_TRAINER_PV_MAX_ROWS][MTLD_NAME_MAX];
  const char *name_ptrs[MTLD_TRAINER_PV_MAX_ROWS]; /* names[i], for mtld_pvmetrics_create */
} mtld_trainer_pv_rows_t;

/* Fills out with the metric rows of config c (above).  Pure; any thread. */
void mtld_trainer_pv_rows(const mtld_model_config_t *c, mtld_trainer_pv_rows_t *out);

typedef struct {
  uint64_t observed; /* samples accepted */
  uint64_t rejected; /* samples refused by observe (bad weight or labels) */
  uint64_t trained;  /* samples the model has learned from */
  uint64_t batches;  /* optimiser steps */
  double last_loss;  /* loss of the last batch */
} mtld_trainer_stats_t;

/* Creates a trainer (model + metrics) from cfg (copied).  MTLD_OK or
 * MTLD_ERR_CONFIG / MTLD_ERR_NOMEM with err filled. */
mtld_status_t mtld_trainer_create(mtld_trainer_t **out, const mtld_model_config_t *cfg, char *err,
                                  size_t errlen);
/* Frees everything, including buffered samples not yet trained on (flush first
 * to learn from them).  NULL is a no-op. */
void mtld_trainer_destroy(mtld_trainer_t *t);

/* Takes one sample (copied).  When pred_out is non-NULL it receives the
 * sample's per-task predictions (mtld_model_preds semantics) from the current
 * model.  When the minibatch is full it is scored into the metrics and
 * trained.  Returns MTLD_OK, or MTLD_ERR_INVALID for a sample with a negative
 * or non-finite weight or a non-finite label (counted, not buffered). */
mtld_status_t mtld_trainer_observe(mtld_trainer_t *t, const mtld_sample_t *s, float *pred_out);

/* Scores and trains on the buffered samples now (a partial batch), e.g. before
 * a final checkpoint at shutdown.  No-op when nothing is buffered. */
void mtld_trainer_flush(mtld_trainer_t *t);

/* Scores one sample without learning: preds[n_tasks]; cond[n_tasks] (may be
 * NULL) gets pCVR for ESMM tasks. */
void mtld_trainer_predict(mtld_trainer_t *t, const mtld_sample_t *s, float *preds, float *cond);

/* Turns on the ranking evaluation of clicks (rank.h) with cfg (copied),
 * replacing an earlier one.  Not saved with the state: call it again after
 * a load.  MTLD_OK, MTLD_ERR_CONFIG / MTLD_ERR_NOMEM with err filled. */
mtld_status_t mtld_trainer_set_ranking(mtld_trainer_t *t, const mtld_rank_config_t *cfg, char *err,
                                       size_t errlen);
/* The ranking evaluation (borrowed), or NULL when off. */
mtld_rank_t *mtld_trainer_ranking(mtld_trainer_t *t);

/* Reloadable settings (SIGHUP): see mtld_model_set_lr / _set_loss_weight.
 * task_index: the index of the named task, or -1. */
mtld_status_t mtld_trainer_set_lr(mtld_trainer_t *t, float lr, float emb_lr);
mtld_status_t mtld_trainer_set_loss_weight(mtld_trainer_t *t, int task, float w);
int mtld_trainer_task_index(const mtld_trainer_t *t, const char *name);

/* Applies the reloadable settings of mc: the learning rates and, matched by
 * task name, the loss weights (tasks t does not have are ignored; the
 * architecture is t's own).  Values equal to t's are left alone. */
void mtld_trainer_apply_reloadable(mtld_trainer_t *t, const mtld_model_config_t *mc);

/* The contiguous parameter buffer (dense then embeddings): borrowed, valid
 * until the next observe/flush/destroy. */
void mtld_trainer_params(mtld_trainer_t *t, float **params, size_t *n);

/* Borrowed views of the parts. */
mtld_model_t *mtld_trainer_model(mtld_trainer_t *t);
mtld_pvmetrics_t *mtld_trainer_metrics(mtld_trainer_t *t);
void mtld_trainer_stats(const mtld_trainer_t *t, mtld_trainer_stats_t *out);
/* Samples buffered and not yet trained on. */
int mtld_trainer_pending(const mtld_trainer_t *t);
size_t mtld_trainer_memory_bytes(const mtld_trainer_t *t);

/* Renders the trainer's families into b (Prometheus text): samples trained,
 * optimiser steps, last loss, memory, the progressive-validation families
 * (mtld_pvmetrics_render), the ranking evaluation when on (mtld_rank_*) and
 * the embedding tables' occupancy, admissions and evictions per field.  Thread: the trainer's
 * owner. */
void mtld_trainer_render_metrics(mtld_trainer_t *t, mtld_metrics_buf_t *b);

/* Full state: magic, version, config, counters, buffered samples, model
 * (parameters, optimiser, normaliser, tables), metrics, rating baselines,
 * XXH64 trailer.  The
 * file variant writes at the current position of f and does not fsync
 * (the checkpoint writer owns temp file, fsync and rename).  The memory
 * variant returns a malloc'ed buffer the caller frees.  MTLD_OK or
 * MTLD_ERR_IO / MTLD_ERR_NOMEM with err filled. */
mtld_status_t mtld_trainer_save(const mtld_trainer_t *t, FILE *f, char *err, size_t errlen);
mtld_status_t mtld_trainer_save_mem(const mtld_trainer_t *t, void **buf, size_t *len, char *err,
                                    size_t errlen);
/* The memory variant recycling a buffer: on entry *buf (capacity *cap) is
 * the buffer of an earlier save the caller no longer needs, or NULL; on
 * return it holds this state (*len bytes, capacity *cap), grown if needed.
 * A checkpoint taken this way stalls for a copy of the state instead of a
 * copy plus the page faults of fresh memory.  On error *buf is freed and
 * NULL. */
mtld_status_t mtld_trainer_resave_mem(const mtld_trainer_t *t, void **buf, size_t *len, size_t *cap,
                                      char *err, size_t errlen);

/* Creates a trainer from saved state (its saved config; apply reloadable
 * settings afterwards).  The checksum is verified before anything is used.
 * MTLD_OK, MTLD_ERR_IO, MTLD_ERR_CORRUPT (bad magic, checksum or layout),
 * MTLD_ERR_SCHEMA (other version), MTLD_ERR_CONFIG, MTLD_ERR_NOMEM. */
mtld_status_t mtld_trainer_load(mtld_trainer_t **out, FILE *f, char *err, size_t errlen);
mtld_status_t mtld_trainer_load_mem(mtld_trainer_t **out, const void *buf, size_t len, char *err,
                                    size_t errlen);

#endif
