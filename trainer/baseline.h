/* baseline.h - progressive baselines of the regression (rating) tasks: what a
 * model must beat.  Each sample is predicted from the labels seen BEFORE it
 * (like the model's progressive validation), then its label is added.
 *
 * Per regression task, four predictors (MTLD_BASE_*):
 *   GLOBAL_MEAN    mean of all past labels,
 *   ITEM_MEAN      mean of the item's past labels (the global mean for an
 *                  item never rated),
 *   ITEM_SMOOTHED  (item sum + S * global mean) / (item count + S), S =
 *                  MTLD_BASE_SHRINK: the item mean shrunk to the global one,
 *   BIASES         global mean + item bias + user bias, each bias the shrunk
 *                  mean of the residuals left by the terms before it
 *                  (Koren's baseline predictor, learnt in one pass).
 * Items and users are hashed into MTLD_BASE_ROWS rows per table (like the
 * embeddings; collisions share a row).  No predictor sees the model.
 * Deterministic; single-threaded: owned by its trainer. */
#ifndef MTLD_BASELINE_H
#define MTLD_BASELINE_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/serial.h"
#include "common/status.h"

enum {
  MTLD_BASE_GLOBAL_MEAN = 0,
  MTLD_BASE_ITEM_MEAN = 1,
  MTLD_BASE_ITEM_SMOOTHED = 2,
  MTLD_BASE_BIASES = 3,
  MTLD_BASE_COUNT = 4
};

#define MTLD_BASE_ROWS (1u << 18)
#define MTLD_BASE_SHRINK 5.0

typedef struct mtld_baseline mtld_baseline_t;

/* Creates baselines for n_tasks tasks; only tasks with is_regression[t] set
 * get tables (about 6 MiB each).  prior[t]: the prediction before any
 * label (the task's bias_init).  MTLD_OK or MTLD_ERR_NOMEM. */
mtld_status_t mtld_baseline_create(mtld_baseline_t **out, int n_tasks, const int *is_regression,
                                   const float *prior);
void mtld_baseline_destroy(mtld_baseline_t *b);

/* Name of predictor k ("global_mean", "item_mean", "item_smoothed",
 * "biases"): the metric label and the report's key. */
const char *mtld_baseline_name(int k);

/* Fills pred[MTLD_BASE_COUNT] for (task, user, item) from past labels only. */
void mtld_baseline_predict(const mtld_baseline_t *b, int task, uint64_t user, uint64_t item,
                           float *pred);

/* Adds a label of (task, user, item); call after predict. */
void mtld_baseline_add(mtld_baseline_t *b, int task, uint64_t user, uint64_t item, float label);

/* Bytes allocated. */
size_t mtld_baseline_memory_bytes(const mtld_baseline_t *b);

/* State (the checkpoint): rows with data only.  Load expects baselines
 * created with the same tasks. */
void mtld_baseline_save(const mtld_baseline_t *b, mtld_wr_t *w);
void mtld_baseline_load(mtld_baseline_t *b, mtld_rd_t *r);

#endif
