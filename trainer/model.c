/* model.c - the multi-task network: parameter layout, forward, backward,
 * optimiser step (see model.h).  Activation buffers are planned once at
 * create for batch_size rows; nothing is allocated per sample or batch. */
#include "trainer/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "trainer/layers.h"

#define MAX_TENSORS 256

typedef struct {
  int n_layers, in;
  int out[MTLD_MAX_LAYERS + 1];
  int relu_last;
  size_t w_off[MTLD_MAX_LAYERS + 1], b_off[MTLD_MAX_LAYERS + 1];
  float *act[MTLD_MAX_LAYERS + 1], *dact[MTLD_MAX_LAYERS + 1];
} mlp_t;

typedef struct {
  int n_experts;
  int experts[MTLD_MAX_EXPERTS];
  int gated;
  size_t gw_off, gb_off;
  float *prob, *dprob, *dlogit; /* [B, n_experts] */
  float *mix, *dmix;            /* [B, He]; alias of the expert's when not gated */
  mlp_t tower;
} task_net_t;

/* Bump allocator over one arena; a dry run (base == NULL) only measures. */
typedef struct {
  float *base;
  size_t used;
} arena_t;

static float *take(arena_t *a, size_t n) {
  float *p = a->base ? a->base + a->used : NULL;
  a->used += (n + 15) & ~(size_t)15; /* 64-byte aligned slices */
  return p;
}

struct mtld_model {
  mtld_model_config_t cfg;
  int B, D, F, L, ND, T;
  int in_dim;    /* width of x */
  int gate_in;   /* width of a gate's input */
  int he;        /* expert output width */
  int pool_off;  /* offset of the pooled sequence in x */
  int V;         /* vectors the interactions pair: fields (+ pooled sequence), 0 = none */
  int inter_off; /* offset of the V(V-1)/2 pairwise dot products in x */
  int dense_off;
  /* parameters */
  float *params, *grads, *m1, *m2;
  size_t n_params, n_dense;
  uint64_t step;
  mtld_tensor_t tensors[MAX_TENSORS];
  int n_tensors;
  size_t logvar_off; /* uncertainty weighting: [T] */
  mtld_embed_t tables[MTLD_MAX_FIELDS];
  /* network */
  int n_experts;
  mlp_t experts[MTLD_MAX_EXPERTS];
  task_net_t tasks[MTLD_MAX_TASKS];
  /* normaliser */
  uint64_t norm_n;
  double norm_mean[MTLD_MAX_DENSE], norm_m2[MTLD_MAX_DENSE];
  int64_t last_sweep_ms, max_time_ms;
  /* activations (forward arena) and their gradients (backward arena, zeroed per batch) */
  float *act_arena, *grad_arena;
  size_t act_size, grad_size;
  float *x, *dx, *gin, *dgin, *q, *dq, *k, *dk, *att, *pool, *dpool;
  float *preds, *cond, *logit, *dlogit; /* [B, T] */
  float *wt_scratch;                    /* the largest weight matrix, transposed in backward */
  int32_t *rows;                        /* [B, F] */
  int32_t *seq_rows, *seqc_rows;        /* [B, L] */
  int *seq_len;                         /* [B] */
  const mtld_sample_t *fwd_s;
  int fwd_n;
  double task_loss[MTLD_MAX_TASKS];
  int task_n[MTLD_MAX_TASKS];
  /* bias_mean tasks: labels trained on so far */
  double label_sum[MTLD_MAX_TASKS];
  uint64_t label_n[MTLD_MAX_TASKS];
};

/* ---- configuration -------------------------------------------------------- */

void mtld_model_config_default(mtld_model_config_t *c) {
  memset(c, 0, sizeof(*c));
  c->arch = MTLD_ARCH_MMOE;
  c->dim = 16;
  c->n_fields = 6;
  static const struct {
    const char *name;
    uint32_t rows;
  } f[6] = {{"user", 1u << 18}, {"item", 1u << 18}, {"category", 1u << 12},
            {"scenario", 64},   {"position", 32},   {"hour", 32}};
  for (int i = 0; i < 6; i++) {
    snprintf(c->fields[i].name, MTLD_NAME_MAX, "%s", f[i].name);
    c->fields[i].rows = f[i].rows;
  }
  c->item_field = MTLD_FIELD_ITEM;
  c->category_field = MTLD_FIELD_CATEGORY;
  c->scenario_field = MTLD_FIELD_SCENARIO;
  c->seq_max = 20;
  c->interactions = MTLD_INTER_DOT;
  c->n_dense = 16;
  c->n_experts = 4;
  c->n_shared_experts = 2;
  c->n_task_experts = 1;
  c->n_expert_layers = 2;
  c->expert_layers[0] = 64;
  c->expert_layers[1] = 32;
  c->n_tower_layers = 1;
  c->tower_layers[0] = 32;
  c->n_tasks = 3;
  mtld_task_t *t = c->tasks;
  snprintf(t[0].name, MTLD_NAME_MAX, "ctr");
  t[0].type = MTLD_TASK_BINARY;
  t[0].label = MTLD_LABEL_CLICK;
  t[0].parent = -1;
  t[0].loss_weight = 1.0f;
  snprintf(t[1].name, MTLD_NAME_MAX, "ctcvr");
  t[1].type = MTLD_TASK_ESMM_CTCVR;
  t[1].label = MTLD_LABEL_PURCHASE;
  t[1].parent = 0;
  t[1].loss_weight = 1.0f;
  snprintf(t[2].name, MTLD_NAME_MAX, "rating");
  t[2].type = MTLD_TASK_REGRESSION;
  t[2].label = MTLD_LABEL_RATING;
  t[2].parent = -1;
  t[2].loss_weight = 0.5f;
  t[2].reg_loss = MTLD_REG_MSE;
  t[2].bias_init = 4.0f;
  t[2].bias_mean = 1;
  c->optim = MTLD_OPT_ADAM;
  c->lr = 1e-3f;
  c->beta1 = 0.9f;
  c->beta2 = 0.999f;
  c->eps = 1e-8f;
  c->emb.optim = MTLD_EMB_ADAGRAD;
  c->emb.lr = 0.3f;
  c->emb.adagrad_init = 0.01f;
  c->emb.beta1 = 0.9f;
  c->emb.beta2 = 0.999f;
  c->emb.eps = 1e-8f;
  c->emb.init_scale = 0.05f;
  c->emb.admit_after = 2;
  c->emb.expire_ms = 30LL * 24 * 3600 * 1000;
  c->batch_size = 64;
  c->seed = 42;
  c->pv_window = 100000;
  c->pv_max_scenarios = 64;
}

/* ---- shape: experts and parameter count ---------------------------------- */

int mtld_model_n_experts(const mtld_model_config_t *c) {
  switch (c->arch) {
  case MTLD_ARCH_SINGLE_TASK: return c->n_tasks;
  case MTLD_ARCH_SHARED_BOTTOM: return 1;
  case MTLD_ARCH_MMOE: return c->n_experts;
  default: return c->n_shared_experts + c->n_tasks * c->n_task_experts;
  }
}

int mtld_model_task_experts(const mtld_model_config_t *c, int t, int out[MTLD_MAX_EXPERTS]) {
  int n = 0;
  switch (c->arch) {
  case MTLD_ARCH_SINGLE_TASK: out[n++] = t; break;
  case MTLD_ARCH_SHARED_BOTTOM: out[n++] = 0; break;
  case MTLD_ARCH_MMOE:
    for (int e = 0; e < c->n_experts; e++) out[n++] = e;
    break;
  default:
    for (int e = 0; e < c->n_shared_experts; e++) out[n++] = e;
    for (int e = 0; e < c->n_task_experts; e++)
      out[n++] = c->n_shared_experts + t * c->n_task_experts + e;
  }
  return n;
}

uint64_t mtld_model_param_count(const mtld_model_config_t *c) {
  uint64_t D = (uint64_t)c->dim, T = (uint64_t)c->n_tasks;
  uint64_t L = c->item_field >= 0 ? (uint64_t)c->seq_max : 0;
  uint64_t V = c->interactions == MTLD_INTER_DOT ? (uint64_t)c->n_fields + (L > 0 ? 1 : 0) : 0;
  uint64_t in =
      (uint64_t)c->n_fields * D + (L > 0 ? D : 0) + V * (V ? V - 1 : 0) / 2 + (uint64_t)c->n_dense;
  uint64_t gate_in = in + (c->scenario_field >= 0 ? D : 0);
  uint64_t ne = (uint64_t)mtld_model_n_experts(c);
  uint64_t n = 0, prev = in;
  for (int l = 0; l < c->n_expert_layers; l++) {
    n += ne * (prev * (uint64_t)c->expert_layers[l] + (uint64_t)c->expert_layers[l]);
    prev = (uint64_t)c->expert_layers[l];
  }
  uint64_t he = prev;
  int ex[MTLD_MAX_EXPERTS];
  for (int t = 0; t < c->n_tasks; t++) {
    uint64_t k = (uint64_t)mtld_model_task_experts(c, t, ex);
    if (k > 1) n += gate_in * k + k;
    prev = he;
    for (int l = 0; l < c->n_tower_layers; l++) {
      n += prev * (uint64_t)c->tower_layers[l] + (uint64_t)c->tower_layers[l];
      prev = (uint64_t)c->tower_layers[l];
    }
    n += prev + 1;
  }
  n += T;
  for (int f = 0; f < c->n_fields; f++) n += (uint64_t)c->fields[f].rows * D;
  return n;
}

#define CFG_FAIL(...)                                                                              \
  do {                                                                                             \
    snprintf(err, errlen, __VA_ARGS__);                                                            \
    return MTLD_ERR_CONFIG;                                                                        \
  } while (0)

mtld_status_t mtld_model_config_validate(const mtld_model_config_t *c, char *err, size_t errlen) {
  if (c->arch < MTLD_ARCH_SINGLE_TASK || c->arch > MTLD_ARCH_PLE) CFG_FAIL("model: bad arch");
  if (c->dim < 1 || c->dim > 256) CFG_FAIL("model: dim must be in 1..256");
  if (c->n_fields < 1 || c->n_fields > MTLD_MAX_FIELDS)
    CFG_FAIL("model: n_fields must be in 1..%d", MTLD_MAX_FIELDS);
  for (int f = 0; f < c->n_fields; f++)
    if (c->fields[f].rows < 1 || c->fields[f].rows > (1u << 26))
      CFG_FAIL("model: field %d rows must be in 1..2^26", f);
  if (c->item_field >= c->n_fields || c->category_field >= c->n_fields ||
      c->scenario_field >= c->n_fields)
    CFG_FAIL("model: item/category/scenario field index out of range");
  if (c->seq_max < 0 || c->seq_max > MTLD_MAX_SAMPLE_SEQ)
    CFG_FAIL("model: seq_max must be in 0..%d", MTLD_MAX_SAMPLE_SEQ);
  if (c->interactions != MTLD_INTER_NONE && c->interactions != MTLD_INTER_DOT)
    CFG_FAIL("model: bad interactions");
  if (c->n_dense < 0 || c->n_dense > MTLD_MAX_DENSE)
    CFG_FAIL("model: n_dense must be in 0..%d", MTLD_MAX_DENSE);
  if (c->n_dense_raw < 0 || c->n_dense_raw > c->n_dense)
    CFG_FAIL("model: n_dense_raw must be in 0..n_dense");
  if (c->n_tasks < 1 || c->n_tasks > MTLD_MAX_TASKS)
    CFG_FAIL("model: n_tasks must be in 1..%d", MTLD_MAX_TASKS);
  if (c->n_expert_layers < 1 || c->n_expert_layers > MTLD_MAX_LAYERS || c->n_tower_layers < 0 ||
      c->n_tower_layers > MTLD_MAX_LAYERS)
    CFG_FAIL("model: expert layers in 1..%d, tower layers in 0..%d", MTLD_MAX_LAYERS,
             MTLD_MAX_LAYERS);
  for (int l = 0; l < c->n_expert_layers; l++)
    if (c->expert_layers[l] < 1 || c->expert_layers[l] > 4096) CFG_FAIL("model: bad expert width");
  for (int l = 0; l < c->n_tower_layers; l++)
    if (c->tower_layers[l] < 1 || c->tower_layers[l] > 4096) CFG_FAIL("model: bad tower width");
  int ne = mtld_model_n_experts(c);
  if (c->arch == MTLD_ARCH_MMOE && c->n_experts < 1) CFG_FAIL("model: mmoe needs experts");
  if (c->arch == MTLD_ARCH_PLE && (c->n_shared_experts < 0 || c->n_task_experts < 0 ||
                                   c->n_shared_experts + c->n_task_experts < 1))
    CFG_FAIL("model: ple needs shared or task experts");
  if (ne > MTLD_MAX_EXPERTS) CFG_FAIL("model: at most %d experts", MTLD_MAX_EXPERTS);
  for (int t = 0; t < c->n_tasks; t++) {
    const mtld_task_t *k = &c->tasks[t];
    if (!k->name[0] || memchr(k->name, 0, MTLD_NAME_MAX) == NULL)
      CFG_FAIL("model: task %d needs a name", t);
    for (int u = 0; u < t; u++)
      if (!strcmp(c->tasks[u].name, k->name)) CFG_FAIL("model: duplicate task %s", k->name);
    if (k->type < MTLD_TASK_BINARY || k->type > MTLD_TASK_REGRESSION)
      CFG_FAIL("model: task %s: bad type", k->name);
    if (k->label < 0 || k->label >= MTLD_N_LABELS) CFG_FAIL("model: task %s: bad label", k->name);
    if (!(k->loss_weight >= 0.0f)) CFG_FAIL("model: task %s: loss weight < 0", k->name);
    if (k->type == MTLD_TASK_ESMM_CTCVR && (k->parent < 0 || k->parent >= t ||
                                            (c->tasks[k->parent].type != MTLD_TASK_BINARY &&
                                             c->tasks[k->parent].type != MTLD_TASK_ESMM_CTCVR)))
      CFG_FAIL("model: task %s: ESMM parent must be an earlier binary or ESMM task", k->name);
    if (k->type == MTLD_TASK_REGRESSION && k->reg_loss == MTLD_REG_HUBER && !(k->huber_delta > 0))
      CFG_FAIL("model: task %s: huber_delta must be > 0", k->name);
  }
  if (c->optim != MTLD_OPT_ADAM && c->optim != MTLD_OPT_ADAGRAD) CFG_FAIL("model: bad optimiser");
  if (!(c->lr > 0) || !(c->emb.lr > 0)) CFG_FAIL("model: learning rates must be > 0");
  if (c->emb.optim != MTLD_EMB_ADAGRAD && c->emb.optim != MTLD_EMB_ADAM)
    CFG_FAIL("model: bad embedding optimiser");
  if (c->batch_size < 1 || c->batch_size > 65536) CFG_FAIL("model: batch_size in 1..65536");
  if (c->pv_window < 1 || c->pv_window > 100000000) CFG_FAIL("model: bad pv_window");
  if (c->pv_max_scenarios < 0 || c->pv_max_scenarios > 4096) CFG_FAIL("model: bad pv scenarios");
  return MTLD_OK;
}

/* ---- layout --------------------------------------------------------------- */

static size_t add_tensor(mtld_model_t *m, size_t *off, const char *name, uint32_t rows,
                         uint32_t cols) {
  size_t at = *off;
  if (m->n_tensors < MAX_TENSORS) {
    mtld_tensor_t *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->offset = at;
    t->rows = rows;
    t->cols = cols;
  }
  *off += (size_t)rows * cols;
  return at;
}

static void mlp_layout(mtld_model_t *m, mlp_t *p, size_t *off, const char *prefix) {
  char name[MTLD_TENSOR_NAME_MAX];
  for (int l = 0; l < p->n_layers; l++) {
    int in = l ? p->out[l - 1] : p->in;
    snprintf(name, sizeof(name), "%s.l%d.w", prefix, l);
    p->w_off[l] = add_tensor(m, off, name, (uint32_t)in, (uint32_t)p->out[l]);
    snprintf(name, sizeof(name), "%s.l%d.b", prefix, l);
    p->b_off[l] = add_tensor(m, off, name, 1, (uint32_t)p->out[l]);
  }
}

static void mlp_buffers(mlp_t *p, arena_t *fa, arena_t *ga, int B) {
  for (int l = 0; l < p->n_layers; l++) {
    p->act[l] = take(fa, (size_t)B * p->out[l]);
    p->dact[l] = take(ga, (size_t)B * p->out[l]);
  }
}

/* Assigns every activation buffer; with NULL bases it only measures. */
static void plan_buffers(mtld_model_t *m, arena_t *fa, arena_t *ga) {
  int B = m->B, D = m->D, L = m->L > 0 ? m->L : 1, T = m->T;
  m->x = take(fa, (size_t)B * m->in_dim);
  m->dx = take(ga, (size_t)B * m->in_dim);
  m->gin = take(fa, (size_t)B * m->gate_in);
  m->dgin = take(ga, (size_t)B * m->gate_in);
  m->q = take(fa, (size_t)B * D);
  m->dq = take(ga, (size_t)B * D);
  m->k = take(fa, (size_t)B * L * D);
  m->dk = take(ga, (size_t)B * L * D);
  m->att = take(fa, (size_t)B * L);
  m->pool = take(fa, (size_t)B * D);
  m->dpool = take(ga, (size_t)B * D);
  m->preds = take(fa, (size_t)B * T);
  m->cond = take(fa, (size_t)B * T);
  m->logit = take(fa, (size_t)B * T);
  m->dlogit = take(ga, (size_t)B * T);
  for (int e = 0; e < m->n_experts; e++) mlp_buffers(&m->experts[e], fa, ga, B);
  for (int t = 0; t < T; t++) {
    task_net_t *tn = &m->tasks[t];
    if (tn->gated) {
      tn->prob = take(fa, (size_t)B * tn->n_experts);
      tn->dprob = take(ga, (size_t)B * tn->n_experts);
      tn->dlogit = take(ga, (size_t)B * tn->n_experts);
      tn->mix = take(fa, (size_t)B * m->he);
      tn->dmix = take(ga, (size_t)B * m->he);
    } else {
      mlp_t *e = &m->experts[tn->experts[0]];
      tn->mix = e->act[e->n_layers - 1];
      tn->dmix = e->dact[e->n_layers - 1];
    }
    mlp_buffers(&tn->tower, fa, ga, B);
  }
}

/* splitmix64 stream for the dense initialisation */
static float uniform_pm1(uint64_t *st) {
  uint64_t h = mtld_mix64(*st += 0x9e3779b97f4a7c15ULL);
  return (float)(h >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

static void init_params(mtld_model_t *m) {
  uint64_t st = m->cfg.seed;
  memset(m->params, 0, sizeof(float) * m->n_dense);
  for (int i = 0; i < m->n_tensors; i++) {
    const mtld_tensor_t *t = &m->tensors[i];
    if (t->offset >= m->n_dense || t->rows == 1 || strstr(t->name, "emb.") == t->name) continue;
    /* He-uniform for ReLU layers: limit = sqrt(6 / fan_in) */
    float lim = sqrtf(6.0f / (float)t->rows);
    if (strstr(t->name, "gate")) lim *= 0.1f; /* gates start near uniform mixing */
    for (size_t j = 0; j < (size_t)t->rows * t->cols; j++)
      m->params[t->offset + j] = lim * uniform_pm1(&st);
  }
  for (int t = 0; t < m->T; t++) {
    mlp_t *tw = &m->tasks[t].tower;
    m->params[tw->b_off[tw->n_layers - 1]] = m->cfg.tasks[t].bias_init;
  }
}

mtld_status_t mtld_model_create(mtld_model_t **out, const mtld_model_config_t *cfg, char *err,
                                size_t errlen) {
  *out = NULL;
  mtld_status_t st = mtld_model_config_validate(cfg, err, errlen);
  if (st != MTLD_OK) return st;
  mtld_model_t *m = calloc(1, sizeof(*m));
  if (!m) goto nomem;
  memcpy(&m->cfg, cfg, sizeof(*cfg));
  const mtld_model_config_t *c = &m->cfg;
  m->B = c->batch_size;
  m->D = c->dim;
  m->F = c->n_fields;
  m->L = c->item_field >= 0 ? c->seq_max : 0;
  m->ND = c->n_dense;
  m->T = c->n_tasks;
  m->pool_off = m->F * m->D;
  m->V = c->interactions == MTLD_INTER_DOT ? m->F + (m->L > 0 ? 1 : 0) : 0;
  m->inter_off = m->pool_off + (m->L > 0 ? m->D : 0);
  m->dense_off = m->inter_off + m->V * (m->V - 1) / 2;
  m->in_dim = m->dense_off + m->ND;
  m->gate_in = m->in_dim + (c->scenario_field >= 0 ? m->D : 0);
  m->he = c->expert_layers[c->n_expert_layers - 1];

  /* experts and the experts each task mixes */
  m->n_experts = mtld_model_n_experts(c);
  for (int t = 0; t < m->T; t++) {
    task_net_t *tn = &m->tasks[t];
    tn->n_experts = mtld_model_task_experts(c, t, tn->experts);
    tn->gated = tn->n_experts > 1;
  }

  /* parameter layout: dense first, then the tables */
  size_t off = 0;
  char name[MTLD_TENSOR_NAME_MAX];
  for (int e = 0; e < m->n_experts; e++) {
    mlp_t *p = &m->experts[e];
    p->n_layers = c->n_expert_layers;
    p->in = m->in_dim;
    for (int l = 0; l < p->n_layers; l++) p->out[l] = c->expert_layers[l];
    p->relu_last = 1;
    snprintf(name, sizeof(name), "expert%d", e);
    mlp_layout(m, p, &off, name);
  }
  for (int t = 0; t < m->T; t++) {
    task_net_t *tn = &m->tasks[t];
    if (tn->gated) {
      snprintf(name, sizeof(name), "gate.%s.w", c->tasks[t].name);
      tn->gw_off = add_tensor(m, &off, name, (uint32_t)m->gate_in, (uint32_t)tn->n_experts);
      snprintf(name, sizeof(name), "gate.%s.b", c->tasks[t].name);
      tn->gb_off = add_tensor(m, &off, name, 1, (uint32_t)tn->n_experts);
    }
    mlp_t *p = &tn->tower;
    p->n_layers = c->n_tower_layers + 1;
    p->in = m->he;
    for (int l = 0; l < c->n_tower_layers; l++) p->out[l] = c->tower_layers[l];
    p->out[c->n_tower_layers] = 1;
    p->relu_last = 0;
    snprintf(name, sizeof(name), "tower.%s", c->tasks[t].name);
    mlp_layout(m, p, &off, name);
  }
  m->logvar_off = add_tensor(m, &off, "task_log_var", 1, (uint32_t)m->T);
  m->n_dense = off;
  size_t emb_off[MTLD_MAX_FIELDS];
  for (int f = 0; f < m->F; f++) {
    snprintf(name, sizeof(name), "emb.%s", c->fields[f].name[0] ? c->fields[f].name : "field");
    emb_off[f] = add_tensor(m, &off, name, c->fields[f].rows, (uint32_t)m->D);
  }
  m->n_params = off;

  m->params = aligned_alloc(64, ((sizeof(float) * m->n_params) + 63) & ~(size_t)63);
  m->grads = calloc(m->n_dense, sizeof(float));
  m->m1 = calloc(m->n_dense, sizeof(float));
  m->m2 = calloc(m->n_dense, sizeof(float));
  if (!m->params || !m->grads || !m->m1 || !m->m2) goto nomem;

  for (int f = 0; f < m->F; f++) {
    /* distinct rows one batch may touch: one per sample, plus the sequence for item and
       category tables */
    uint32_t per = 1;
    if (f == c->item_field || f == c->category_field) per += (uint32_t)m->L;
    uint32_t max_touched = (uint32_t)m->B * per;
    if (max_touched > c->fields[f].rows) max_touched = c->fields[f].rows;
    st = mtld_embed_init(&m->tables[f], m->params + emb_off[f], c->fields[f].rows, m->D,
                         mtld_mix64(c->seed ^ (0x1000u + (uint64_t)f)), &c->emb, max_touched, err,
                         errlen);
    if (st != MTLD_OK) {
      mtld_model_destroy(m);
      return st;
    }
  }

  arena_t fa = {0}, ga = {0};
  plan_buffers(m, &fa, &ga);
  m->act_size = fa.used;
  m->grad_size = ga.used;
  m->act_arena = aligned_alloc(64, sizeof(float) * m->act_size);
  m->grad_arena = aligned_alloc(64, sizeof(float) * m->grad_size);
  m->rows = malloc(sizeof(int32_t) * (size_t)m->B * m->F);
  m->seq_rows = malloc(sizeof(int32_t) * (size_t)m->B * (m->L ? m->L : 1));
  m->seqc_rows = malloc(sizeof(int32_t) * (size_t)m->B * (m->L ? m->L : 1));
  m->seq_len = calloc((size_t)m->B, sizeof(int));
  size_t largest = 1; /* weight matrix, for mtld_linear_backward's transpose */
  for (int i = 0; i < m->n_tensors; i++)
    if (m->tensors[i].offset < m->n_dense &&
        (size_t)m->tensors[i].rows * m->tensors[i].cols > largest)
      largest = (size_t)m->tensors[i].rows * m->tensors[i].cols;
  m->wt_scratch = malloc(sizeof(float) * largest);
  if (!m->act_arena || !m->grad_arena || !m->rows || !m->seq_rows || !m->seqc_rows || !m->seq_len ||
      !m->wt_scratch)
    goto nomem;
  memset(m->act_arena, 0, sizeof(float) * m->act_size);
  memset(m->grad_arena, 0, sizeof(float) * m->grad_size);
  fa.base = m->act_arena;
  fa.used = 0;
  ga.base = m->grad_arena;
  ga.used = 0;
  plan_buffers(m, &fa, &ga);
  init_params(m);
  m->last_sweep_ms = INT64_MIN;
  m->max_time_ms = INT64_MIN;
  *out = m;
  return MTLD_OK;
nomem:
  mtld_model_destroy(m);
  snprintf(err, errlen, "model: out of memory");
  return MTLD_ERR_NOMEM;
}

void mtld_model_destroy(mtld_model_t *m) {
  if (!m) return;
  for (int f = 0; f < MTLD_MAX_FIELDS; f++)
    if (m->tables[f].rows) mtld_embed_free(&m->tables[f]);
  free(m->params);
  free(m->grads);
  free(m->m1);
  free(m->m2);
  free(m->act_arena);
  free(m->grad_arena);
  free(m->rows);
  free(m->seq_rows);
  free(m->seqc_rows);
  free(m->seq_len);
  free(m->wt_scratch);
  free(m);
}

const mtld_model_config_t *mtld_model_config(const mtld_model_t *m) {
  return &m->cfg;
}

/* ---- forward -------------------------------------------------------------- */

static uint64_t field_id(const mtld_model_t *m, const mtld_sample_t *s, int f) {
  uint64_t id = f < s->n_fields && f < MTLD_MAX_FIELDS ? s->fields[f] : 0;
  if (id == 0 && f == m->cfg.scenario_field) id = s->scenario_id;
  return id;
}

static void mlp_forward(const mtld_model_t *m, mlp_t *p, const float *in, int n) {
  for (int l = 0; l < p->n_layers; l++) {
    const float *x = l ? p->act[l - 1] : in;
    int din = l ? p->out[l - 1] : p->in;
    mtld_linear_forward(p->act[l], x, m->params + p->w_off[l], m->params + p->b_off[l], n, din,
                        p->out[l]);
    if (l < p->n_layers - 1 || p->relu_last) mtld_relu_forward(p->act[l], p->act[l], n * p->out[l]);
  }
}

/* <a, b> over n floats with 8 running partial sums (fixed order, so the
 * result is the same on every run): the compiler keeps them in vector
 * registers, where one running sum would be a chain of scalar adds. */
static float dot8(const float *a, const float *b, int n) {
  float s[8] = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
  float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < n; i++) t += a[i] * b[i];
  return t;
}

static void copy_row(float *dst, const mtld_embed_t *e, int32_t row, int D) {
  if (row < 0)
    memset(dst, 0, sizeof(float) * (size_t)D);
  else
    memcpy(dst, e->w + (size_t)row * D, sizeof(float) * (size_t)D);
}

static void add_row(float *dst, const mtld_embed_t *e, int32_t row, int D) {
  if (row < 0) return;
  const float *w = e->w + (size_t)row * D;
  for (int d = 0; d < D; d++) dst[d] += w[d];
}

/* The pairwise dot products: x[inter_off + p] = <v_i, v_j> for the p-th pair
 * i < j, v_i = x[i*D .. i*D+D) (the fields, then the pooled sequence, which
 * is contiguous with them at pool_off = F*D). */
static void interact_forward(mtld_model_t *m, int n) {
  int D = m->D, V = m->V, IN = m->in_dim;
  for (int b = 0; b < n; b++) {
    float *x = m->x + (size_t)b * IN, *out = x + m->inter_off;
    for (int i = 0, p = 0; i < V; i++)
      for (int j = i + 1; j < V; j++, p++) out[p] = dot8(x + i * D, x + j * D, D);
  }
}

/* dv_i += g_p v_j and dv_j += g_p v_i, g_p the gradient of the p-th dot
 * product: flows into the field and pooled slots of dx before those are
 * scattered to the tables and the attention. */
static void interact_backward(mtld_model_t *m, int n) {
  int D = m->D, V = m->V, IN = m->in_dim;
  for (int b = 0; b < n; b++) {
    const float *x = m->x + (size_t)b * IN;
    float *dx = m->dx + (size_t)b * IN;
    const float *g = dx + m->inter_off;
    for (int i = 0, p = 0; i < V; i++)
      for (int j = i + 1; j < V; j++, p++) {
        const float gp = g[p]; /* dx holds g too: read it once */
        if (gp == 0.0f) continue;
        float *restrict di = dx + i * D, *restrict dj = dx + j * D;
        const float *restrict xi = x + i * D, *restrict xj = x + j * D;
        for (int d = 0; d < D; d++) di[d] += gp * xj[d];
        for (int d = 0; d < D; d++) dj[d] += gp * xi[d];
      }
  }
}

/* Gathers x (and the gate input) for n samples. */
static void build_inputs(mtld_model_t *m, const mtld_sample_t *s, int n) {
  const mtld_model_config_t *c = &m->cfg;
  int D = m->D, F = m->F, L = m->L, IN = m->in_dim;
  double mean[MTLD_MAX_DENSE], sd[MTLD_MAX_DENSE]; /* the normaliser, fixed for the batch */
  for (int i = 0; i < m->ND; i++) {
    double var = m->norm_n > 1 ? m->norm_m2[i] / (double)(m->norm_n - 1) : 1.0;
    mean[i] = m->norm_n ? m->norm_mean[i] : 0.0;
    sd[i] = sqrt(var + MTLD_NORM_EPS);
  }
  for (int b = 0; b < n; b++) {
    const mtld_sample_t *sb = &s[b];
    float *x = m->x + (size_t)b * IN;
    for (int f = 0; f < F; f++) {
      int32_t r = mtld_embed_find(&m->tables[f], field_id(m, sb, f), sb->time_ms);
      m->rows[b * F + f] = r;
      copy_row(x + f * D, &m->tables[f], r, D);
    }
    if (L > 0) {
      mtld_embed_t *it = &m->tables[c->item_field];
      mtld_embed_t *ct = c->category_field >= 0 ? &m->tables[c->category_field] : NULL;
      float *q = m->q + (size_t)b * D;
      memcpy(q, x + c->item_field * D, sizeof(float) * (size_t)D);
      if (ct) add_row(q, ct, m->rows[b * F + c->category_field], D);
      int len = sb->seq_len < L ? sb->seq_len : L;
      if (len < 0) len = 0;
      m->seq_len[b] = len;
      for (int j = 0; j < len; j++) {
        float *kj = m->k + ((size_t)b * L + j) * D;
        int32_t r = mtld_embed_find(it, sb->seq_items[j], sb->time_ms);
        m->seq_rows[b * L + j] = r;
        copy_row(kj, it, r, D);
        int32_t rc = ct ? mtld_embed_find(ct, sb->seq_cats[j], sb->time_ms) : -1;
        m->seqc_rows[b * L + j] = rc;
        if (ct) add_row(kj, ct, rc, D);
      }
    }
    float *xd = x + m->dense_off;
    for (int i = 0; i < m->ND; i++) {
      float v = i < sb->n_dense ? sb->dense[i] : 0.0f;
      if (!isfinite(v)) v = 0.0f;
      float z = (float)((v - mean[i]) / sd[i]);
      xd[i] = z > MTLD_NORM_CLIP ? MTLD_NORM_CLIP : (z < -MTLD_NORM_CLIP ? -MTLD_NORM_CLIP : z);
    }
  }
  if (L > 0) {
    mtld_attention_forward(m->pool, m->att, m->q, m->k, m->seq_len, n, L, D);
    for (int b = 0; b < n; b++)
      memcpy(m->x + (size_t)b * IN + m->pool_off, m->pool + (size_t)b * D,
             sizeof(float) * (size_t)D);
  }
  if (m->V > 1) interact_forward(m, n);
  if (m->gate_in != IN) {
    int sf = c->scenario_field;
    for (int b = 0; b < n; b++) {
      float *g = m->gin + (size_t)b * m->gate_in;
      memcpy(g, m->x + (size_t)b * IN, sizeof(float) * (size_t)IN);
      memcpy(g + IN, m->x + (size_t)b * IN + sf * D, sizeof(float) * (size_t)D);
    }
  }
}

static int has_label(const mtld_sample_t *s, int label) {
  return (s->label_mask >> label) & 1;
}

/* A demand task predicts the residual over this base: the moving average of
 * the item's orders the sample carries (0 for samples without one), so its
 * head starts from the naive forecast and learns the correction. */
static float demand_base(const mtld_sample_t *s) {
  float v = s->naive[MTLD_NAIVE_MA];
  return isfinite(v) ? v : 0.0f;
}

/* Chained ESMM: the log-probability of the parent chain of an ESMM task
 * (log sigmoid of each ancestor's logit, nearest ancestor last, summed from
 * the root), so a task chained on a binary parent gets exactly
 * log_sigmoid(z_parent). */
static double chain_log_prob(const mtld_model_t *m, int b, int t) {
  const mtld_task_t *k = &m->cfg.tasks[t];
  double lz = mtld_log_sigmoid(m->logit[b * m->T + t]);
  return k->type == MTLD_TASK_ESMM_CTCVR ? chain_log_prob(m, b, k->parent) + lz : lz;
}

/* The probability of the parent chain as a double product (root first):
 * for a binary parent, sigmoid(z_parent). */
static double chain_prob(const mtld_model_t *m, int b, int t) {
  const mtld_task_t *k = &m->cfg.tasks[t];
  double a = mtld_sigmoidf(m->logit[b * m->T + t]);
  return k->type == MTLD_TASK_ESMM_CTCVR ? chain_prob(m, b, k->parent) * a : a;
}

double mtld_model_forward(mtld_model_t *m, const mtld_sample_t *s, int n) {
  const mtld_model_config_t *c = &m->cfg;
  int T = m->T, he = m->he;
  m->fwd_s = s;
  m->fwd_n = n;
  build_inputs(m, s, n);
  for (int e = 0; e < m->n_experts; e++) mlp_forward(m, &m->experts[e], m->x, n);
  const float *gin = m->gate_in != m->in_dim ? m->gin : m->x;
  for (int t = 0; t < T; t++) {
    task_net_t *tn = &m->tasks[t];
    if (tn->gated) {
      int ne = tn->n_experts;
      mtld_linear_forward(tn->prob, gin, m->params + tn->gw_off, m->params + tn->gb_off, n,
                          m->gate_in, ne);
      mtld_softmax_forward(tn->prob, tn->prob, n, ne);
      memset(tn->mix, 0, sizeof(float) * (size_t)n * he);
      for (int k = 0; k < ne; k++) {
        const mlp_t *ex = &m->experts[tn->experts[k]];
        const float *eo = ex->act[ex->n_layers - 1];
        for (int b = 0; b < n; b++) {
          float g = tn->prob[b * ne + k];
          for (int h = 0; h < he; h++) tn->mix[(size_t)b * he + h] += g * eo[(size_t)b * he + h];
        }
      }
    }
    mlp_forward(m, &tn->tower, tn->mix, n);
    const float *z = tn->tower.act[tn->tower.n_layers - 1];
    if (c->tasks[t].label == MTLD_LABEL_DEMAND) /* the residual over the moving average */
      for (int b = 0; b < n; b++) m->logit[b * T + t] = z[b] + demand_base(&s[b]);
    else
      for (int b = 0; b < n; b++) m->logit[b * T + t] = z[b];
  }
  /* predictions and losses */
  for (int b = 0; b < n; b++) {
    for (int t = 0; t < T; t++) {
      float z = m->logit[b * T + t];
      const mtld_task_t *k = &c->tasks[t];
      if (k->type == MTLD_TASK_REGRESSION) {
        m->preds[b * T + t] = m->cond[b * T + t] = z;
      } else if (k->type == MTLD_TASK_ESMM_CTCVR) {
        float cvr = mtld_sigmoidf(z);
        m->cond[b * T + t] = cvr;
        /* the parent's prediction: sigmoid(z) for a binary parent, its
         * chained product for an ESMM one (computed first: parent < t) */
        m->preds[b * T + t] = m->preds[b * T + k->parent] * cvr;
      } else {
        m->preds[b * T + t] = m->cond[b * T + t] = mtld_sigmoidf(z);
      }
    }
  }
  double total = 0.0;
  const float *logvar = m->params + m->logvar_off;
  for (int t = 0; t < T; t++) {
    const mtld_task_t *k = &c->tasks[t];
    double sum = 0.0;
    int cnt = 0;
    for (int b = 0; b < n; b++) {
      if (!has_label(&s[b], k->label)) continue;
      cnt++;
      double y = s[b].labels[k->label], z = m->logit[b * T + t], l;
      if (k->type == MTLD_TASK_BINARY) {
        l = -(y * mtld_log_sigmoid(z) + (1.0 - y) * mtld_log_sigmoid(-z));
      } else if (k->type == MTLD_TASK_ESMM_CTCVR) {
        double lp = chain_log_prob(m, b, k->parent) + mtld_log_sigmoid(z);
        double p = exp(lp);
        if (p > 1.0 - 1e-7) p = 1.0 - 1e-7;
        l = -(y * lp + (1.0 - y) * log1p(-p));
      } else {
        double r = z - y, a = fabs(r), d = k->huber_delta;
        l = k->reg_loss == MTLD_REG_HUBER && a > d ? d * (a - 0.5 * d) : 0.5 * r * r;
      }
      sum += s[b].weight * l;
    }
    m->task_n[t] = cnt;
    m->task_loss[t] = cnt ? sum / cnt : 0.0;
    if (!cnt) continue;
    if (c->uncertainty_weighting && k->loss_weight > 0.0f)
      total += k->loss_weight * exp(-(double)logvar[t]) * m->task_loss[t] + logvar[t];
    else
      total += k->loss_weight * m->task_loss[t];
  }
  return total;
}

const float *mtld_model_preds(const mtld_model_t *m) {
  return m->preds;
}

const float *mtld_model_cond_preds(const mtld_model_t *m) {
  return m->cond;
}

/* ---- backward ------------------------------------------------------------- */

static void mlp_backward(mtld_model_t *m, mlp_t *p, const float *in, float *din, int n) {
  for (int l = p->n_layers - 1; l >= 0; l--) {
    size_t cnt = (size_t)n * p->out[l];
    if (l < p->n_layers - 1 || p->relu_last) mtld_relu_mask(p->dact[l], p->act[l], (int)cnt);
    const float *x = l ? p->act[l - 1] : in;
    float *dx = l ? p->dact[l - 1] : din;
    int dim_in = l ? p->out[l - 1] : p->in;
    mtld_linear_backward(dx, m->grads + p->w_off[l], m->grads + p->b_off[l], p->dact[l], x,
                         m->params + p->w_off[l], m->wt_scratch, n, dim_in, p->out[l]);
  }
}

static void logit_grads(mtld_model_t *m) {
  const mtld_model_config_t *c = &m->cfg;
  const mtld_sample_t *s = m->fwd_s;
  int n = m->fwd_n, T = m->T;
  float *logvar = m->params + m->logvar_off, *dlogvar = m->grads + m->logvar_off;
  for (int t = 0; t < T; t++) {
    const mtld_task_t *k = &c->tasks[t];
    if (!m->task_n[t]) continue;
    double scale = k->loss_weight;
    if (c->uncertainty_weighting && k->loss_weight > 0.0f) {
      scale *= exp(-(double)logvar[t]);
      dlogvar[t] += (float)(1.0 - scale * m->task_loss[t]);
    }
    scale /= m->task_n[t];
    for (int b = 0; b < n; b++) {
      if (!has_label(&s[b], k->label)) continue;
      double y = s[b].labels[k->label], z = m->logit[b * T + t], w = scale * s[b].weight;
      if (k->type == MTLD_TASK_BINARY) {
        m->dlogit[b * T + t] += (float)(w * (mtld_sigmoidf((float)z) - y));
      } else if (k->type == MTLD_TASK_ESMM_CTCVR) {
        double a = chain_prob(m, b, k->parent), cv = mtld_sigmoidf((float)z);
        double p = a * cv;
        if (p > 1.0 - 1e-7) p = 1.0 - 1e-7;
        double g = w * (p - y) / (1.0 - p);
        /* d log p / d z_c = 1 - sigmoid(z_c) for every task c of the chain */
        for (int q = k->parent;; q = c->tasks[q].parent) {
          double aq = mtld_sigmoidf(m->logit[b * T + q]);
          m->dlogit[b * T + q] += (float)(g * (1.0 - aq));
          if (c->tasks[q].type != MTLD_TASK_ESMM_CTCVR) break;
        }
        m->dlogit[b * T + t] += (float)(g * (1.0 - cv));
      } else {
        double r = z - y, d = k->huber_delta;
        if (k->reg_loss == MTLD_REG_HUBER) r = r > d ? d : (r < -d ? -d : r);
        m->dlogit[b * T + t] += (float)(w * r);
      }
    }
  }
}

void mtld_model_backward(mtld_model_t *m) {
  const mtld_model_config_t *c = &m->cfg;
  int n = m->fwd_n, T = m->T, he = m->he, D = m->D, F = m->F, L = m->L, IN = m->in_dim;
  memset(m->grads, 0, sizeof(float) * m->n_dense);
  memset(m->grad_arena, 0, sizeof(float) * m->grad_size);
  logit_grads(m);
  const float *gin = m->gate_in != IN ? m->gin : m->x;
  float *dgin = m->gate_in != IN ? m->dgin : m->dx;
  /* towers and gates, tasks in reverse order */
  for (int t = T - 1; t >= 0; t--) {
    task_net_t *tn = &m->tasks[t];
    mlp_t *tw = &tn->tower;
    float *dz = tw->dact[tw->n_layers - 1];
    for (int b = 0; b < n; b++) dz[b] = m->dlogit[b * T + t];
    mlp_backward(m, tw, tn->mix, tn->dmix, n);
    if (!tn->gated) continue;
    int ne = tn->n_experts;
    for (int k = 0; k < ne; k++) {
      mlp_t *ex = &m->experts[tn->experts[k]];
      const float *eo = ex->act[ex->n_layers - 1];
      float *deo = ex->dact[ex->n_layers - 1];
      for (int b = 0; b < n; b++) {
        float g = tn->prob[b * ne + k];
        const float *dm = tn->dmix + (size_t)b * he;
        float *restrict de = deo + (size_t)b * he;
        for (int h = 0; h < he; h++) de[h] += g * dm[h];
        tn->dprob[b * ne + k] = dot8(dm, eo + (size_t)b * he, he);
      }
    }
    mtld_softmax_backward(tn->dlogit, tn->dprob, tn->prob, n, ne);
    mtld_linear_backward(dgin, m->grads + tn->gw_off, m->grads + tn->gb_off, tn->dlogit, gin,
                         m->params + tn->gw_off, m->wt_scratch, n, m->gate_in, ne);
  }
  for (int e = m->n_experts - 1; e >= 0; e--) mlp_backward(m, &m->experts[e], m->x, m->dx, n);
  /* the gate input's copy of x and of the scenario embedding flow back into x */
  if (m->gate_in != IN) {
    int sf = c->scenario_field;
    for (int b = 0; b < n; b++) {
      float *dx = m->dx + (size_t)b * IN;
      const float *dg = m->dgin + (size_t)b * m->gate_in;
      for (int i = 0; i < IN; i++) dx[i] += dg[i];
      for (int d = 0; d < D; d++) dx[sf * D + d] += dg[IN + d];
    }
  }
  /* interactions: their gradients join the field and pooled slots */
  if (m->V > 1) interact_backward(m, n);
  /* attention: pooled -> query (item (+ category) field) and keys */
  if (L > 0) {
    for (int b = 0; b < n; b++)
      memcpy(m->dpool + (size_t)b * D, m->dx + (size_t)b * IN + m->pool_off,
             sizeof(float) * (size_t)D);
    mtld_attention_backward(m->dq, m->dk, m->dpool, m->att, m->q, m->k, m->seq_len, n, L, D);
    mtld_embed_t *it = &m->tables[c->item_field];
    mtld_embed_t *ct = c->category_field >= 0 ? &m->tables[c->category_field] : NULL;
    for (int b = 0; b < n; b++) {
      const float *dq = m->dq + (size_t)b * D;
      float *dx = m->dx + (size_t)b * IN;
      for (int d = 0; d < D; d++) dx[c->item_field * D + d] += dq[d];
      if (ct)
        for (int d = 0; d < D; d++) dx[c->category_field * D + d] += dq[d];
      for (int j = 0; j < m->seq_len[b]; j++) {
        const float *dk = m->dk + ((size_t)b * L + j) * D;
        if (m->seq_rows[b * L + j] >= 0) mtld_embed_grad_add(it, m->seq_rows[b * L + j], dk);
        if (ct && m->seqc_rows[b * L + j] >= 0)
          mtld_embed_grad_add(ct, m->seqc_rows[b * L + j], dk);
      }
    }
  }
  /* fields, in sample order: deterministic first-touch order in the tables */
  for (int b = 0; b < n; b++)
    for (int f = 0; f < F; f++)
      if (m->rows[b * F + f] >= 0)
        mtld_embed_grad_add(&m->tables[f], m->rows[b * F + f], m->dx + (size_t)b * IN + f * D);
}

/* ---- update --------------------------------------------------------------- */

/* bias_mean tasks: moves the output bias by the change of the running label
 * mean over this batch (the mean before any label is bias_init); for a
 * demand task, the running mean of the label's residual over the base. */
static void follow_label_mean(mtld_model_t *m, const mtld_sample_t *s, int n) {
  const mtld_model_config_t *c = &m->cfg;
  for (int t = 0; t < m->T; t++) {
    const mtld_task_t *k = &c->tasks[t];
    /* a task weighted 0 learns nothing, its bias included */
    if (k->type != MTLD_TASK_REGRESSION || !k->bias_mean || !(k->loss_weight > 0.0f)) continue;
    double before = m->label_n[t] ? m->label_sum[t] / (double)m->label_n[t] : k->bias_init;
    for (int b = 0; b < n; b++) {
      if (!has_label(&s[b], k->label)) continue;
      m->label_sum[t] +=
          s[b].labels[k->label] - (k->label == MTLD_LABEL_DEMAND ? demand_base(&s[b]) : 0.0f);
      m->label_n[t]++;
    }
    if (!m->label_n[t]) continue;
    const mlp_t *tw = &m->tasks[t].tower;
    m->params[tw->b_off[tw->n_layers - 1]] +=
        (float)(m->label_sum[t] / (double)m->label_n[t] - before);
  }
}

int mtld_model_label_mean(const mtld_model_t *m, int t, double *mean, double *sum, uint64_t *n,
                          size_t *bias_index) {
  if (t < 0 || t >= m->T) return 0;
  const mtld_task_t *k = &m->cfg.tasks[t];
  if (k->type != MTLD_TASK_REGRESSION || !k->bias_mean) return 0;
  const mlp_t *tw = &m->tasks[t].tower;
  *sum = m->label_sum[t];
  *n = m->label_n[t];
  *mean = m->label_n[t] ? m->label_sum[t] / (double)m->label_n[t] : k->bias_init;
  *bias_index = tw->b_off[tw->n_layers - 1];
  return 1;
}

void mtld_model_set_label_mean(mtld_model_t *m, int t, double sum, uint64_t n) {
  if (t < 0 || t >= m->T) return;
  m->label_sum[t] = sum;
  m->label_n[t] = n;
}

void mtld_model_update(mtld_model_t *m, const mtld_sample_t *s, int n) {
  const mtld_model_config_t *c = &m->cfg;
  m->step++;
  float lr = c->lr, b1 = c->beta1, b2 = c->beta2, eps = c->eps;
  if (c->optim == MTLD_OPT_ADAM) {
    /* bias corrections folded into a step size and a multiplier: one division
     * and one square root per parameter */
    float bc1 = 1.0f - powf(b1, (float)m->step), bc2 = 1.0f - powf(b2, (float)m->step);
    float step = lr / bc1, ibc2 = 1.0f / bc2;
    for (size_t i = 0; i < m->n_dense; i++) {
      float g = m->grads[i];
      m->m1[i] = b1 * m->m1[i] + (1.0f - b1) * g;
      m->m2[i] = b2 * m->m2[i] + (1.0f - b2) * g * g;
      m->params[i] -= step * m->m1[i] / (sqrtf(m->m2[i] * ibc2) + eps);
    }
  } else {
    for (size_t i = 0; i < m->n_dense; i++) {
      float g = m->grads[i];
      m->m2[i] += g * g;
      m->params[i] -= lr * g / (sqrtf(m->m2[i]) + eps);
    }
  }
  for (int f = 0; f < m->F; f++) mtld_embed_apply(&m->tables[f]);
  follow_label_mean(m, s, n);
  /* bookkeeping in sample order */
  int L = m->L;
  for (int b = 0; b < n; b++) {
    const mtld_sample_t *sb = &s[b];
    for (int f = 0; f < m->F; f++)
      mtld_embed_touch(&m->tables[f], field_id(m, sb, f), sb->time_ms, 1);
    int len = sb->seq_len < L ? sb->seq_len : L;
    for (int j = 0; j < len; j++) {
      mtld_embed_touch(&m->tables[c->item_field], sb->seq_items[j], sb->time_ms, 0);
      if (c->category_field >= 0)
        mtld_embed_touch(&m->tables[c->category_field], sb->seq_cats[j], sb->time_ms, 0);
    }
    for (int i = 0; i < m->ND; i++) {
      double v = i < sb->n_dense ? sb->dense[i] : 0.0;
      if (!isfinite(v)) v = 0.0;
      double d = v - m->norm_mean[i];
      m->norm_mean[i] += d / (double)(m->norm_n + 1);
      m->norm_m2[i] += d * (v - m->norm_mean[i]);
    }
    m->norm_n++;
    /* raw features: mean 0, variance m2 / (n - 1) = 1 */
    for (int i = m->ND - c->n_dense_raw; i < m->ND; i++) {
      m->norm_mean[i] = 0.0;
      m->norm_m2[i] = (double)(m->norm_n - 1);
    }
    if (sb->time_ms > m->max_time_ms) m->max_time_ms = sb->time_ms;
  }
  /* periodic expiry sweep, paced by event time */
  if (c->emb.expire_ms > 0 && n > 0) {
    if (m->last_sweep_ms == INT64_MIN) m->last_sweep_ms = m->max_time_ms;
    if (m->max_time_ms - m->last_sweep_ms >= c->emb.expire_ms / 2) {
      for (int f = 0; f < m->F; f++) mtld_embed_sweep(&m->tables[f], m->max_time_ms);
      m->last_sweep_ms = m->max_time_ms;
    }
  }
}

double mtld_model_train_batch(mtld_model_t *m, const mtld_sample_t *s, int n) {
  double loss = mtld_model_forward(m, s, n);
  mtld_model_backward(m);
  mtld_model_update(m, s, n);
  return loss;
}

void mtld_model_predict(mtld_model_t *m, const mtld_sample_t *s, float *preds, float *cond) {
  mtld_model_forward(m, s, 1);
  memcpy(preds, m->preds, sizeof(float) * (size_t)m->T);
  if (cond) memcpy(cond, m->cond, sizeof(float) * (size_t)m->T);
}

/* ---- accessors ------------------------------------------------------------ */

void mtld_model_params(mtld_model_t *m, float **params, size_t *n) {
  *params = m->params;
  *n = m->n_params;
}

void mtld_model_grads(mtld_model_t *m, float **grads, size_t *n_dense) {
  *grads = m->grads;
  *n_dense = m->n_dense;
}

const mtld_tensor_t *mtld_model_tensors(const mtld_model_t *m, int *n) {
  *n = m->n_tensors;
  return m->tensors;
}

mtld_embed_t *mtld_model_embed(mtld_model_t *m, int field) {
  return field >= 0 && field < m->F ? &m->tables[field] : NULL;
}

void mtld_model_normaliser(const mtld_model_t *m, uint64_t *count, double *mean, double *m2) {
  *count = m->norm_n;
  memcpy(mean, m->norm_mean, sizeof(m->norm_mean));
  memcpy(m2, m->norm_m2, sizeof(m->norm_m2));
}

void mtld_model_set_normaliser(mtld_model_t *m, uint64_t count, const double *mean,
                               const double *m2) {
  m->norm_n = count;
  memcpy(m->norm_mean, mean, sizeof(m->norm_mean));
  memcpy(m->norm_m2, m2, sizeof(m->norm_m2));
}

mtld_status_t mtld_model_set_lr(mtld_model_t *m, float lr, float emb_lr) {
  if (!(lr > 0.0f) || !(emb_lr > 0.0f) || !isfinite(lr) || !isfinite(emb_lr))
    return MTLD_ERR_INVALID;
  m->cfg.lr = lr;
  m->cfg.emb.lr = emb_lr;
  for (int f = 0; f < m->F; f++) m->tables[f].cfg.lr = emb_lr;
  return MTLD_OK;
}

mtld_status_t mtld_model_set_loss_weight(mtld_model_t *m, int task, float w) {
  if (task < 0 || task >= m->T || !(w >= 0.0f) || !isfinite(w)) return MTLD_ERR_INVALID;
  m->cfg.tasks[task].loss_weight = w;
  return MTLD_OK;
}

double mtld_model_flops_per_sample(const mtld_model_t *m) {
  double mac = (double)m->V * (m->V - 1) / 2 * m->D; /* interactions */
  for (int e = 0; e < m->n_experts; e++) {
    const mlp_t *p = &m->experts[e];
    for (int l = 0; l < p->n_layers; l++) mac += (double)(l ? p->out[l - 1] : p->in) * p->out[l];
  }
  for (int t = 0; t < m->T; t++) {
    const task_net_t *tn = &m->tasks[t];
    if (tn->gated) mac += (double)m->gate_in * tn->n_experts;
    const mlp_t *p = &tn->tower;
    for (int l = 0; l < p->n_layers; l++) mac += (double)(l ? p->out[l - 1] : p->in) * p->out[l];
  }
  return 2.0 * 3.0 * mac; /* multiply-add = 2 flops; backward = 2x forward */
}

size_t mtld_model_memory_bytes(const mtld_model_t *m) {
  size_t n = sizeof(*m) + sizeof(float) * (m->n_params + 3 * m->n_dense) +
             sizeof(float) * (m->act_size + m->grad_size);
  for (int f = 0; f < m->F; f++) n += mtld_embed_state_bytes(&m->tables[f]);
  return n;
}

/* ---- state ---------------------------------------------------------------- */

static void table_io_save(const mtld_embed_t *e, mtld_wr_t *w) {
  mtld_wr_bytes(w, e->acc, sizeof(float) * e->rows);
  mtld_wr_bytes(w, e->last_used, sizeof(int64_t) * e->rows);
  if (e->m) {
    mtld_wr_bytes(w, e->m, sizeof(float) * (size_t)e->rows * e->dim);
    mtld_wr_bytes(w, e->v, sizeof(float) * (size_t)e->rows * e->dim);
  }
  if (e->cms) mtld_wr_bytes(w, e->cms, sizeof(uint16_t) * 2 * (size_t)e->cms_width);
  MTLD_WR(w, e->adam_step);
  MTLD_WR(w, e->stats);
}

static void table_io_load(mtld_embed_t *e, mtld_rd_t *r) {
  mtld_rd_bytes(r, e->acc, sizeof(float) * e->rows);
  mtld_rd_bytes(r, e->last_used, sizeof(int64_t) * e->rows);
  if (e->m) {
    mtld_rd_bytes(r, e->m, sizeof(float) * (size_t)e->rows * e->dim);
    mtld_rd_bytes(r, e->v, sizeof(float) * (size_t)e->rows * e->dim);
  }
  if (e->cms) mtld_rd_bytes(r, e->cms, sizeof(uint16_t) * 2 * (size_t)e->cms_width);
  MTLD_RD(r, e->adam_step);
  MTLD_RD(r, e->stats);
}

void mtld_model_save(const mtld_model_t *m, mtld_wr_t *w) {
  uint64_t np = m->n_params, nd = m->n_dense;
  MTLD_WR(w, np);
  MTLD_WR(w, nd);
  mtld_wr_bytes(w, m->params, sizeof(float) * m->n_params);
  mtld_wr_bytes(w, m->m1, sizeof(float) * m->n_dense);
  mtld_wr_bytes(w, m->m2, sizeof(float) * m->n_dense);
  MTLD_WR(w, m->step);
  MTLD_WR(w, m->norm_n);
  mtld_wr_bytes(w, m->norm_mean, sizeof(m->norm_mean));
  mtld_wr_bytes(w, m->norm_m2, sizeof(m->norm_m2));
  MTLD_WR(w, m->last_sweep_ms);
  MTLD_WR(w, m->max_time_ms);
  MTLD_WR(w, m->label_sum);
  MTLD_WR(w, m->label_n);
  for (int f = 0; f < m->F; f++) table_io_save(&m->tables[f], w);
}

void mtld_model_load(mtld_model_t *m, mtld_rd_t *r) {
  uint64_t np = 0, nd = 0;
  MTLD_RD(r, np);
  MTLD_RD(r, nd);
  if (r->st == MTLD_OK && (np != m->n_params || nd != m->n_dense)) {
    r->st = MTLD_ERR_SCHEMA;
    return;
  }
  mtld_rd_bytes(r, m->params, sizeof(float) * m->n_params);
  mtld_rd_bytes(r, m->m1, sizeof(float) * m->n_dense);
  mtld_rd_bytes(r, m->m2, sizeof(float) * m->n_dense);
  MTLD_RD(r, m->step);
  MTLD_RD(r, m->norm_n);
  mtld_rd_bytes(r, m->norm_mean, sizeof(m->norm_mean));
  mtld_rd_bytes(r, m->norm_m2, sizeof(m->norm_m2));
  MTLD_RD(r, m->last_sweep_ms);
  MTLD_RD(r, m->max_time_ms);
  MTLD_RD(r, m->label_sum);
  MTLD_RD(r, m->label_n);
  for (int f = 0; f < m->F; f++) table_io_load(&m->tables[f], r);
}
