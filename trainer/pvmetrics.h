/* pvmetrics.h - progressive validation metrics: every sample is scored before
 * the model learns from it, and the score is recorded here, per task and per
 * scenario (plus "all" and an overflow bucket "other").
 *
 * Per (task, scenario): exact rank AUC over a sliding window of the last W
 * samples (computed on demand), cumulative AUC from a fixed 10000-bin
 * histogram over the logit of the score (deterministic, O(1) per sample),
 * log loss, calibration (sum prediction / sum label), RMSE, MAE and counts.
 * Samples are counted unweighted.  Regression tasks have no AUC or log loss;
 * they get the RMSE of the rating baselines (baseline.h) the trainer scores
 * next to the model on the same samples.
 * Single-threaded: owned by its trainer, used on the trainer's thread. */
#ifndef MTLD_PVMETRICS_H
#define MTLD_PVMETRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/limits.h" /* MTLD_SCENARIO_MAX */
#include "common/metricstext.h"
#include "trainer/baseline.h" /* MTLD_BASE_COUNT */
#include "trainer/serial.h"
#include "common/status.h"

#define MTLD_PV_BINS 10000
#define MTLD_PV_ALL (-1) /* scenario index meaning "every scenario" */

typedef struct mtld_pvmetrics mtld_pvmetrics_t;

typedef struct {
  uint64_t n;         /* samples scored */
  uint64_t n_pos;     /* binary: label > 0.5 */
  double auc_window;  /* binary: exact AUC of the last W samples; NAN if a class is missing */
  double auc_cum;     /* binary: histogram AUC since start; NAN if a class is missing */
  double logloss;     /* binary: mean log loss; NAN for regression */
  double calibration; /* sum pred / sum label; NAN when sum label == 0 */
  double rmse;        /* sqrt(mean squared error) */
  double mae;         /* mean absolute error */
  double mean_pred, mean_label;
  /* regression: RMSE of each baseline (mtld_baseline_name) over the samples
   * given to mtld_pvmetrics_add_baselines; NAN when none */
  double rmse_base[MTLD_BASE_COUNT];
} mtld_pv_summary_t;

/* Creates metrics for n_tasks tasks; is_regression[t] != 0 marks regression
 * tasks; names[t] are copied for printing.  window: W of the sliding AUC;
 * max_scenarios: distinct scenarios tracked (later ones go to "other").
 * Returns MTLD_OK, or an error with err filled.  Free with _destroy. */
mtld_status_t mtld_pvmetrics_create(mtld_pvmetrics_t **out, int n_tasks, const int *is_regression,
                                    const char *const *names, uint32_t window, int max_scenarios,
                                    char *err, size_t errlen);
void mtld_pvmetrics_destroy(mtld_pvmetrics_t *m);

/* Index of the scenario with this id (registering it with `name` on first
 * sight), or the overflow index when max_scenarios are taken. */
int mtld_pvmetrics_scenario(mtld_pvmetrics_t *m, uint64_t scenario_id, const char *name);

/* Records one scored sample of `task` in scenario index `scen` (from
 * mtld_pvmetrics_scenario) and in "all".  pred is a probability for binary
 * tasks, a value for regression. */
void mtld_pvmetrics_add(mtld_pvmetrics_t *m, int task, int scen, float pred, float label);

/* Records the baseline predictions base[MTLD_BASE_COUNT] of the regression
 * sample just given to mtld_pvmetrics_add (same task and scenario). */
void mtld_pvmetrics_add_baselines(mtld_pvmetrics_t *m, int task, int scen, const float *base,
                                  float label);

/* Fills *out for (task, scen); scen = MTLD_PV_ALL for all scenarios.
 * Allocates a scratch of the window size to compute the window AUC.
 * Returns MTLD_ERR_INVALID for a bad index, MTLD_ERR_NOMEM. */
mtld_status_t mtld_pvmetrics_get(const mtld_pvmetrics_t *m, int task, int scen,
                                 mtld_pv_summary_t *out);

/* The AUCs of task `task` (binary) over the samples of n metrics together,
 * e.g. of instances that each scored part of one stream: the cumulative AUC
 * from their summed histograms, and the exact AUC of the union of their
 * windows (each one's last W samples).  MTLD_ERR_INVALID (a regression or
 * missing task), MTLD_ERR_NOMEM.  Thread: the metrics must not change
 * meanwhile. */
mtld_status_t mtld_pvmetrics_pooled_auc(const mtld_pvmetrics_t *const *ms, int n, int task,
                                        double *auc_cum, double *auc_window);

/* Number of scenario indexes in use (including "other" once used) and the
 * name of one ("other" for the overflow bucket). */
int mtld_pvmetrics_n_scenarios(const mtld_pvmetrics_t *m);
const char *mtld_pvmetrics_scenario_name(const mtld_pvmetrics_t *m, int scen);

/* Prints one line per task for "all", then one per (task, scenario) when
 * per_scenario is non-zero. */
void mtld_pvmetrics_print(const mtld_pvmetrics_t *m, FILE *f, int per_scenario);

/* Renders the progressive-validation families into b (Prometheus text), one
 * sample per task and scenario ("_all" for every scenario together):
 * mtld_pv_auc, mtld_pv_auc_cumulative, mtld_pv_logloss (binary tasks only),
 * mtld_pv_calibration, mtld_pv_rmse, mtld_pv_samples, mtld_pv_mae
 * (regression tasks only).  An allocation
 * failure sets b's sticky status. */
void mtld_pvmetrics_render(const mtld_pvmetrics_t *m, mtld_metrics_buf_t *b);

/* Exact rank AUC (ties get mid ranks) of n (pred, label > 0.5) pairs; NAN if
 * a class is missing or on allocation failure.  Exposed for tests. */
double mtld_auc_exact(const float *pred, const float *label, size_t n);

/* State save/restore (the checkpoint).  Load expects metrics created with the
 * same tasks, window and max_scenarios. */
void mtld_pvmetrics_save(const mtld_pvmetrics_t *m, mtld_wr_t *w);
void mtld_pvmetrics_load(mtld_pvmetrics_t *m, mtld_rd_t *r);

#endif
