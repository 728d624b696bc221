/* model.h - the shared multi-task, multi-scenario network of mtld.
 *
 * Inputs: one hashed embedding table per categorical field (embed.h), target
 * attention of the candidate item over the user's recent items (the item
 * table embeds both), and dense features normalised online (Welford running
 * mean/variance updated after each minibatch, clipped to +-5).
 *   x = [emb(field_0) .. emb(field_F-1), attention-pooled seq, inter, dense]
 * inter (MTLD_INTER_DOT, as DLRM): with v_0 .. v_V-1 the field embeddings
 * then the pooled sequence (V = F, +1 with attention), the dot products
 * <v_i, v_j> for i < j in row-major pair order (0,1), (0,2) .. (V-2,V-1):
 * V(V-1)/2 scalars.  An MLP over concatenated embeddings learns a
 * user x item dot product poorly (Rendle et al. 2020); these hand it over.
 * Shared part (mtld_arch_t), all as "experts" (MLPs of x) mixed per task:
 *   SINGLE_TASK   one expert per task, no gate (the no-sharing baseline; the
 *                 embeddings are still shared),
 *   SHARED_BOTTOM one expert for all tasks, no gate,
 *   MMOE          E experts, a softmax gate per task,
 *   PLE           one level: shared experts + experts of each task, a gate per
 *                 task over the shared ones and its own.
 * Every gate reads [x, emb(scenario)]: the scenario embedding is in x and also
 * concatenated explicitly.  Each task has a tower MLP -> one logit.
 * Tasks (data, not code): BINARY (BCE on sigmoid), ESMM_CTCVR
 * (pCTCVR = pCTR(parent) * pCVR against the click&purchase label over all
 * impressions; pCVR exported as the conditional prediction; the parent may
 * itself be an earlier ESMM task, chaining: pReview = pCTCVR(parent) *
 * p(review | purchase) against the click&purchase&review label), REGRESSION
 * (MSE or Huber; a task of label MTLD_LABEL_DEMAND predicts the residual over
 * the moving average an item sample carries, sample.naive[MTLD_NAIVE_MA]:
 * its output is that average plus the tower's).  A task's loss is the importance-weighted mean over
 * the batch samples carrying its label; the total is the loss-weighted sum (or Kendall et al.
 * uncertainty weighting with a learned log-variance per task).
 *
 * Parameters: ONE contiguous float buffer with named views (mtld_model_tensors):
 * the dense parameters first, then the embedding tables.  Gradients and the
 * optimiser moments (Adam m, v / Adagrad accumulator) mirror the dense prefix;
 * embeddings have sparse per-row state in their tables.
 * Determinism: single-threaded, fixed-size minibatches, serial BLIS, fixed
 * iteration orders: the same sample sequence gives bit-identical parameters.
 * A model is used by one thread at a time. */
#ifndef MTLD_MODEL_H
#define MTLD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/embed.h"
#include "trainer/sample.h"
#include "trainer/serial.h"
#include "common/status.h"

#define MTLD_MAX_TASKS 8
#define MTLD_MAX_LAYERS 4
#define MTLD_MAX_EXPERTS 16
#define MTLD_NAME_MAX 32
#define MTLD_TENSOR_NAME_MAX 48

/* The dense-feature normaliser: x = clip((v - mean) / sqrt(var + EPS), +-CLIP). */
#define MTLD_NORM_EPS 1e-6
#define MTLD_NORM_CLIP 5.0f

typedef enum {
  MTLD_ARCH_SINGLE_TASK = 0,
  MTLD_ARCH_SHARED_BOTTOM = 1,
  MTLD_ARCH_MMOE = 2,
  MTLD_ARCH_PLE = 3
} mtld_arch_t;

typedef enum {
  MTLD_TASK_BINARY = 0,
  MTLD_TASK_ESMM_CTCVR = 1,
  MTLD_TASK_REGRESSION = 2
} mtld_task_type_t;

typedef enum { MTLD_REG_MSE = 0, MTLD_REG_HUBER = 1 } mtld_reg_loss_t;
typedef enum { MTLD_INTER_NONE = 0, MTLD_INTER_DOT = 1 } mtld_interactions_t;
typedef enum { MTLD_OPT_ADAM = 0, MTLD_OPT_ADAGRAD = 1 } mtld_optim_t;

typedef struct {
  char name[MTLD_NAME_MAX];
  int type;          /* mtld_task_type_t */
  int label;         /* mtld_label_t: the label the loss (and metrics) use */
  int parent;        /* ESMM_CTCVR: index of an earlier BINARY (CTR) or ESMM task; else -1 */
  float loss_weight; /* reloadable: mtld_model_set_loss_weight */
  int reg_loss;      /* REGRESSION: mtld_reg_loss_t */
  float huber_delta; /* REGRESSION with Huber */
  float bias_init;   /* initial bias of the output (e.g. the mean rating) */
  int bias_mean;     /* REGRESSION: the output bias follows the running mean of the labels
                        trained on (bias_init until the first label): after each batch the
                        bias moves by the change of that mean, so the network learns the
                        residual from the mean from its first batch on */
} mtld_task_t;

typedef struct {
  char name[MTLD_NAME_MAX];
  uint32_t rows; /* hashed table rows (> 0) */
} mtld_field_t;

typedef struct {
  int arch; /* mtld_arch_t */
  int dim;  /* embedding dimension D */
  int n_fields;
  mtld_field_t fields[MTLD_MAX_FIELDS]; /* field f reads sample.fields[f] */
  int item_field;     /* candidate item field: attention query, its table embeds seq items;
                         -1 = no attention */
  int category_field; /* >= 0: category embeddings added to query and keys (seq_cats) */
  int scenario_field; /* >= 0: concatenated to every gate input (0 ids fall back to
                         sample.scenario_id) */
  int seq_max;        /* sequence items used (<= MTLD_MAX_SAMPLE_SEQ) */
  int interactions;   /* mtld_interactions_t: pairwise dot products in x */
  int n_dense;        /* dense features used (<= MTLD_MAX_DENSE) */
  int n_dense_raw;    /* the LAST n_dense_raw of them are used as given: their normaliser
                         statistics stay at mean 0, variance 1 (so a reader normalising
                         every feature computes the same).  0 (default) for all but the item
                         demand features (features/demand.h), which only item samples carry
                         and which impressions' zeros would otherwise swamp */
  int n_experts;      /* MMOE */
  int n_shared_experts, n_task_experts; /* PLE */
  int n_expert_layers;
  int expert_layers[MTLD_MAX_LAYERS]; /* expert / bottom MLP widths, all ReLU */
  int n_tower_layers;
  int tower_layers[MTLD_MAX_LAYERS]; /* tower hidden widths (ReLU), then 1 output */
  int n_tasks;
  mtld_task_t tasks[MTLD_MAX_TASKS];
  int uncertainty_weighting;   /* Kendall et al.: learned log-variance per task */
  int optim;                   /* dense params: mtld_optim_t */
  float lr, beta1, beta2, eps; /* lr reloadable: mtld_model_set_lr */
  mtld_embed_config_t emb;     /* embedding optimiser, admission, expiry */
  int batch_size;              /* samples per minibatch */
  uint64_t seed;               /* parameter initialisation */
  uint32_t pv_window;          /* progressive validation: sliding AUC window */
  int pv_max_scenarios;        /* scenarios tracked separately */
} mtld_model_config_t;

typedef struct {
  char name[MTLD_TENSOR_NAME_MAX];
  size_t offset; /* in floats, into the parameter buffer */
  uint32_t rows, cols;
} mtld_tensor_t;

typedef struct mtld_model mtld_model_t;

/* Fills cfg with the defaults: MMoE (4 experts [64,32], towers [32]) over
 * user/item/category/scenario/position/hour fields (2^18, 2^18, 2^12, 64, 32,
 * 32 rows, D = 16), attention over 20 recent items, dot interactions, 16
 * dense features; tasks ctr (click), ctcvr (ESMM, parent ctr), rating
 * (MSE, reviews, bias from the running mean of the ratings); Adam 1e-3 for dense, row-wise Adagrad
 * 0.3 for embeddings, batch 64 (small batches: more updates per sample, which online learning of
 * the embeddings needs most). */
void mtld_model_config_default(mtld_model_config_t *cfg);

/* Checks every bound and cross-reference of cfg.  MTLD_OK or MTLD_ERR_CONFIG
 * with err filled. */
mtld_status_t mtld_model_config_validate(const mtld_model_config_t *cfg, char *err, size_t errlen);

/* Shape of a validated cfg, as mtld_model_create lays the model out (the
 * snapshot reader checks a file against them before allocating):
 * the number of experts; the experts task t mixes (out, their count
 * returned); the number of float parameters (dense, then the tables). */
int mtld_model_n_experts(const mtld_model_config_t *cfg);
int mtld_model_task_experts(const mtld_model_config_t *cfg, int t, int out[MTLD_MAX_EXPERTS]);
uint64_t mtld_model_param_count(const mtld_model_config_t *cfg);

/* Creates a model (copying cfg) with parameters initialised from cfg->seed.
 * MTLD_OK, MTLD_ERR_CONFIG or MTLD_ERR_NOMEM (err filled).  Free with
 * mtld_model_destroy(). */
mtld_status_t mtld_model_create(mtld_model_t **out, const mtld_model_config_t *cfg, char *err,
                                size_t errlen);
void mtld_model_destroy(mtld_model_t *m);

const mtld_model_config_t *mtld_model_config(const mtld_model_t *m);

/* Forward pass of n (1 <= n <= batch_size) samples with the current state;
 * changes no model state (scoring is side-effect free).  Returns the total
 * loss; predictions are then in mtld_model_preds(). */
double mtld_model_forward(mtld_model_t *m, const mtld_sample_t *s, int n);

/* After a forward: preds[n * n_tasks] (probability for BINARY, pCTCVR for
 * ESMM, value for REGRESSION) and cond[n * n_tasks] (pCVR for ESMM, else the
 * same as preds).  Valid until the next forward. */
const float *mtld_model_preds(const mtld_model_t *m);
const float *mtld_model_cond_preds(const mtld_model_t *m);

/* Gradients of the last forward's loss: the dense gradient buffer (zeroed
 * first) and the embedding tables' sparse gradients. */
void mtld_model_backward(mtld_model_t *m);

/* Optimiser step from the last backward, then the per-batch bookkeeping in
 * sample order: embedding admission/expiry/liveness, normaliser statistics. */
void mtld_model_update(mtld_model_t *m, const mtld_sample_t *s, int n);

/* forward + backward + update; returns the loss. */
double mtld_model_train_batch(mtld_model_t *m, const mtld_sample_t *s, int n);

/* Scores one sample: preds[n_tasks], cond[n_tasks] (may be NULL). */
void mtld_model_predict(mtld_model_t *m, const mtld_sample_t *s, float *preds, float *cond);

/* The parameter buffer (all floats, dense then embeddings) and its size. */
void mtld_model_params(mtld_model_t *m, float **params, size_t *n);
/* The dense gradient buffer, mirroring params[0 .. n_dense). */
void mtld_model_grads(mtld_model_t *m, float **grads, size_t *n_dense);
/* Named views of the parameter buffer. */
const mtld_tensor_t *mtld_model_tensors(const mtld_model_t *m, int *n);
/* The embedding table of field f (stats, tests). */
mtld_embed_t *mtld_model_embed(mtld_model_t *m, int field);

/* The dense-feature normaliser (Welford): count and, per dense feature, the
 * running mean and sum of squared deviations (arrays of MTLD_MAX_DENSE;
 * entries past n_dense are 0).  get copies them out; set replaces them (a
 * snapshot reader restoring what scoring depends on). */
void mtld_model_normaliser(const mtld_model_t *m, uint64_t *count, double *mean, double *m2);
void mtld_model_set_normaliser(mtld_model_t *m, uint64_t count, const double *mean,
                               const double *m2);

/* Tasks whose output bias follows the running mean of their labels
 * (mtld_task_t.bias_mean): label_mean returns 1 for such a task t and gives
 * the mean the bias follows (bias_init before any label), the running sum
 * and count, and the index of that bias in the parameter buffer; 0 for any
 * other task.  set_label_mean replaces the running sum and count (model
 * sync: a newcomer takes the shared model's, trainer/delta.h). */
int mtld_model_label_mean(const mtld_model_t *m, int t, double *mean, double *sum, uint64_t *n,
                          size_t *bias_index);
void mtld_model_set_label_mean(mtld_model_t *m, int t, double sum, uint64_t n);

/* Reloadable settings.  set_lr: dense and embedding learning rates (> 0);
 * set_loss_weight: task weight (>= 0).  MTLD_ERR_INVALID on bad values. */
mtld_status_t mtld_model_set_lr(mtld_model_t *m, float lr, float emb_lr);
mtld_status_t mtld_model_set_loss_weight(mtld_model_t *m, int task, float w);

/* Analytic FLOPs of one training sample through the dense layers
 * (forward + backward = 3x the forward multiply-adds x 2). */
double mtld_model_flops_per_sample(const mtld_model_t *m);
/* Bytes allocated by the model (parameters, optimiser, tables, buffers). */
size_t mtld_model_memory_bytes(const mtld_model_t *m);

/* Full state (parameters, optimiser, normaliser, tables) to/from a stream.
 * Load expects a model created with the same config. */
void mtld_model_save(const mtld_model_t *m, mtld_wr_t *w);
void mtld_model_load(mtld_model_t *m, mtld_rd_t *r);

#endif
