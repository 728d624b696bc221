/* test_model.c - the multi-task network: finite-difference checks of the
 * whole model's loss (every architecture, ESMM, uncertainty weighting,
 * pairwise dot interactions, embedding rows through fields, interactions and
 * attention), embedding tables (admission, expiry, sweep), config
 * validation, reloadable settings. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "trainer/model.h"

static uint64_t rng = 987654321;
static uint64_t next_u64(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static float frand01(void) {
  return (float)(next_u64() >> 40) * (1.0f / 16777216.0f);
}

static void small_config(mtld_model_config_t *c, int arch) {
  mtld_model_config_default(c);
  c->arch = arch;
  c->dim = 4;
  uint32_t rows[6] = {97, 101, 13, 5, 7, 24};
  for (int f = 0; f < 6; f++) c->fields[f].rows = rows[f];
  c->seq_max = 5;
  c->n_dense = 3;
  c->n_experts = 3;
  c->n_shared_experts = 2;
  c->n_task_experts = 1;
  c->n_expert_layers = 2;
  c->expert_layers[0] = 8;
  c->expert_layers[1] = 6;
  c->n_tower_layers = 1;
  c->tower_layers[0] = 5;
  c->batch_size = 16;
  c->emb.admit_after = 1;
  c->emb.init_scale = 0.5f; /* large rows: visible gradients through attention */
  c->tasks[2].reg_loss = MTLD_REG_MSE;
}

static int with_review; /* make_sample: impressions carry the review label too */

static void make_sample(mtld_sample_t *s, int i) {
  memset(s, 0, sizeof(*s));
  s->sample_id = (uint64_t)i + 1;
  s->time_ms = 1000 + i;
  s->weight = 0.5f + frand01();
  s->n_fields = 6;
  s->fields[0] = 1 + next_u64() % 30;
  s->fields[1] = 1 + next_u64() % 20;
  s->fields[2] = 1 + next_u64() % 6;
  s->fields[3] = 1 + next_u64() % 3;
  s->fields[4] = 1 + next_u64() % 5;
  s->fields[5] = mtld_sample_hour_id(s->time_ms + (int64_t)(i % 24) * 3600000);
  s->scenario_id = s->fields[3];
  s->n_dense = 3;
  for (int d = 0; d < 3; d++) s->dense[d] = 3.0f * frand01() + (float)d;
  s->seq_len = (int)(next_u64() % 7); /* may exceed seq_max */
  for (int j = 0; j < s->seq_len; j++) {
    s->seq_items[j] = 1 + next_u64() % 20;
    s->seq_cats[j] = 1 + next_u64() % 6;
  }
  if (i % 5 == 4) {
    s->kind = MTLD_SAMPLE_REVIEW;
    s->labels[MTLD_LABEL_RATING] = (float)(1 + next_u64() % 5);
    s->label_mask = 1u << MTLD_LABEL_RATING;
  } else {
    s->kind = MTLD_SAMPLE_IMPRESSION;
    int click = frand01() < 0.4f, buy = click && frand01() < 0.5f;
    s->labels[MTLD_LABEL_CLICK] = (float)click;
    s->labels[MTLD_LABEL_PURCHASE] = (float)buy;
    s->label_mask = (1u << MTLD_LABEL_CLICK) | (1u << MTLD_LABEL_PURCHASE);
    if (with_review) { /* no extra draws: the other samples stay the same */
      s->labels[MTLD_LABEL_REVIEW] = (float)(buy && i % 2 == 0);
      s->label_mask |= 1u << MTLD_LABEL_REVIEW;
    }
  }
}

/* small_config plus a fourth task: review, ESMM chained on ctcvr. */
static void review_config(mtld_model_config_t *c, int arch) {
  small_config(c, arch);
  c->n_tasks = 4;
  mtld_task_t *k = &c->tasks[3];
  memset(k, 0, sizeof(*k));
  snprintf(k->name, MTLD_NAME_MAX, "review");
  k->type = MTLD_TASK_ESMM_CTCVR;
  k->label = MTLD_LABEL_REVIEW;
  k->parent = 1;
  k->loss_weight = 1.0f;
}

static int grad_ok(double num, double ana) {
  return fabs(num - ana) <= 3e-3 + 3e-2 * fabs(ana);
}

#define EPS 1e-3f

/* Central difference of the batch loss wrt *p.  *kink is set when the two
 * one-sided differences disagree: a ReLU of some sample switches within
 * +-EPS, the central difference is then off by half their gap whatever the
 * backward, so such a check proves nothing (the loss is smooth elsewhere:
 * the gap is ~EPS * curvature, far below the threshold). */
static double numeric(mtld_model_t *m, const mtld_sample_t *s, int n, float *p, int *kink) {
  float save = *p;
  double l0 = mtld_model_forward(m, s, n);
  *p = save + EPS;
  double lp = mtld_model_forward(m, s, n);
  *p = save - EPS;
  double lm = mtld_model_forward(m, s, n);
  *p = save;
  double c = (lp - lm) / (2.0 * EPS), right = (lp - l0) / EPS, left = (l0 - lm) / EPS;
  *kink = fabs(right - left) > 1e-3 + 1e-2 * fabs(c);
  return c;
}

/* Checks a few entries of every dense tensor, then live embedding rows.
 * Checks that straddle a ReLU kink are skipped (counted: they must stay
 * rare); every other one must hold. */
static void fd_model(const mtld_model_config_t *cfg, const char *label) {
  mtld_model_t *m;
  char err[256];
  CHECK(mtld_model_create(&m, cfg, err, sizeof(err)) == MTLD_OK);
  enum { N = 16 };
  mtld_sample_t s[N];
  for (int i = 0; i < N; i++) make_sample(&s[i], i);
  /* two warm-up steps: rows come alive, normaliser and logvars move */
  mtld_model_train_batch(m, s, N);
  mtld_model_train_batch(m, s, N);
  float *p, *g;
  size_t np, nd;
  mtld_model_params(m, &p, &np);
  mtld_model_grads(m, &g, &nd);
  mtld_model_forward(m, s, N);
  mtld_model_backward(m);
  int nt, checks = 0, bad = 0, nonzero = 0, kinks = 0, kink;
  const mtld_tensor_t *ts = mtld_model_tensors(m, &nt);
  for (int t = 0; t < nt; t++) {
    if (ts[t].offset >= nd) continue;
    size_t size = (size_t)ts[t].rows * ts[t].cols;
    for (int k = 0; k < 3; k++) {
      size_t i = ts[t].offset + (size_t)(next_u64() % size);
      double ana = g[i], num = numeric(m, s, N, &p[i], &kink);
      checks++;
      nonzero += ana != 0.0;
      kinks += kink;
      if (!kink && !grad_ok(num, ana)) {
        bad++;
        fprintf(stderr, "%s fd: %s[%zu] num %.6g ana %.6g\n", label, ts[t].name, i - ts[t].offset,
                num, ana);
      }
    }
  }
  /* embeddings: rows of the first samples' ids, via fields and attention */
  int emb_checks = 0;
  for (int f = 0; f < cfg->n_fields; f++) {
    mtld_embed_t *e = mtld_model_embed(m, f);
    for (int b = 0; b < 4; b++) {
      uint64_t id = s[b].fields[f];
      if (f == 1 && s[b].seq_len > 0) id = s[b].seq_items[0]; /* a key of the attention */
      int32_t r = mtld_embed_find(e, id, s[b].time_ms);
      const float *eg = r >= 0 ? mtld_embed_grad_of(e, r) : NULL;
      if (!eg) continue;
      int d = (int)(next_u64() % (uint64_t)cfg->dim);
      double ana = eg[d], num = numeric(m, s, N, &e->w[(size_t)r * cfg->dim + d], &kink);
      checks++;
      emb_checks++;
      kinks += kink;
      if (!kink && !grad_ok(num, ana)) {
        bad++;
        fprintf(stderr, "%s fd: emb field %d row %d[%d] num %.6g ana %.6g\n", label, f, r, d, num,
                ana);
      }
    }
  }
  printf("%s: %d gradient checks, %d off, %d on a kink (skipped), %d non-zero dense\n", label,
         checks, bad, kinks, nonzero);
  CHECK(kinks <= checks / 20);
  CHECK(emb_checks >= 10);
  CHECK(nonzero > checks / 3);
  CHECK(bad == 0);
  mtld_model_destroy(m);
}

static void test_fd(void) {
  mtld_model_config_t c;
  /* the default: dot interactions over 6 fields + the pooled sequence */
  small_config(&c, MTLD_ARCH_MMOE);
  fd_model(&c, "mmoe");
  small_config(&c, MTLD_ARCH_MMOE);
  c.interactions = MTLD_INTER_NONE;
  fd_model(&c, "mmoe-no-interactions");
  small_config(&c, MTLD_ARCH_MMOE);
  c.seq_max = 0; /* interactions of the fields only */
  c.item_field = -1;
  fd_model(&c, "mmoe-no-attention");
  small_config(&c, MTLD_ARCH_PLE);
  c.uncertainty_weighting = 1;
  fd_model(&c, "ple+uncertainty");
  small_config(&c, MTLD_ARCH_SHARED_BOTTOM);
  c.tasks[2].reg_loss = MTLD_REG_HUBER;
  c.tasks[2].huber_delta = 0.7f;
  fd_model(&c, "shared_bottom+huber");
  small_config(&c, MTLD_ARCH_SINGLE_TASK);
  c.emb.optim = MTLD_EMB_ADAM;
  c.optim = MTLD_OPT_ADAGRAD;
  fd_model(&c, "single_task");
  /* ESMM alone: the CTR tower learns only through pCTCVR */
  small_config(&c, MTLD_ARCH_MMOE);
  c.tasks[0].loss_weight = 0.0f;
  c.tasks[2].loss_weight = 0.0f;
  fd_model(&c, "esmm-only");
}

/* The chain ctr -> ctcvr -> review: pReview = pCTCVR * p(review | purchase),
 * its gradient reaches the ctr and ctcvr towers (only review weighted), it
 * matches the finite difference, and a chain must point backwards. */
static void test_review_chain(void) {
  uint64_t rng_saved = rng; /* the tests after this one draw as before it existed */
  mtld_model_config_t c;
  char err[256];
  review_config(&c, MTLD_ARCH_MMOE);
  CHECK(mtld_model_config_validate(&c, err, sizeof(err)) == MTLD_OK);
  c.tasks[1].parent = 3; /* a later parent */
  CHECK(mtld_model_config_validate(&c, err, sizeof(err)) == MTLD_ERR_CONFIG);
  review_config(&c, MTLD_ARCH_MMOE);
  c.tasks[3].parent = 2; /* a regression parent */
  CHECK(mtld_model_config_validate(&c, err, sizeof(err)) == MTLD_ERR_CONFIG);

  review_config(&c, MTLD_ARCH_MMOE);
  for (int t = 0; t < 3; t++) c.tasks[t].loss_weight = 0.0f;
  with_review = 1;
  mtld_model_t *m;
  CHECK(mtld_model_create(&m, &c, err, sizeof(err)) == MTLD_OK);
  enum { N = 8, T = 4 };
  mtld_sample_t s[N];
  for (int i = 0; i < N; i++) make_sample(&s[i], i);
  double loss = mtld_model_forward(m, s, N);
  mtld_model_backward(m);
  const float *preds = mtld_model_preds(m), *cond = mtld_model_cond_preds(m);
  for (int b = 0; b < N; b++) {
    CHECK(preds[b * T + 3] > 0.0f && preds[b * T + 3] < preds[b * T + 1]);
    CHECK(preds[b * T + 3] == preds[b * T + 1] * cond[b * T + 3]);
    CHECK_NEAR(preds[b * T + 3], preds[b * T + 0] * cond[b * T + 1] * cond[b * T + 3], 1e-6);
  }
  /* the loss is the log loss of the chained probability on the review label */
  double want = 0.0;
  int cnt = 0;
  for (int b = 0; b < N; b++) {
    if (!((s[b].label_mask >> MTLD_LABEL_REVIEW) & 1)) continue;
    double p = preds[b * T + 3], y = s[b].labels[MTLD_LABEL_REVIEW];
    want += s[b].weight * -(y * log(p) + (1.0 - y) * log(1.0 - p));
    cnt++;
  }
  CHECK(cnt > 0);
  CHECK_NEAR(loss, want / cnt, 1e-4);
  int nt;
  const mtld_tensor_t *ts = mtld_model_tensors(m, &nt);
  float *g;
  size_t nd;
  mtld_model_grads(m, &g, &nd);
  double ctr = 0.0, ctcvr = 0.0, rating = 0.0;
  for (int t = 0; t < nt; t++) {
    size_t size = (size_t)ts[t].rows * ts[t].cols;
    for (size_t i = 0; i < size && ts[t].offset < nd; i++) {
      if (strstr(ts[t].name, "tower.ctr.")) ctr += fabs(g[ts[t].offset + i]);
      if (strstr(ts[t].name, "tower.ctcvr.")) ctcvr += fabs(g[ts[t].offset + i]);
      if (strstr(ts[t].name, "tower.rating.")) rating += fabs(g[ts[t].offset + i]);
    }
  }
  CHECK(ctr > 0.0 && ctcvr > 0.0 && rating == 0.0);
  mtld_model_destroy(m);
  fd_model(&c, "review-chain-only");
  review_config(&c, MTLD_ARCH_PLE);
  fd_model(&c, "ple+review-chain");
  with_review = 0;
  rng = rng_saved;
}

/* With only the ESMM task weighted, the CTR tower still gets gradient (from
 * pCTCVR); with ESMM weighted 0 too, nothing does. */
static void test_esmm_parent_gradient(void) {
  mtld_model_config_t c;
  small_config(&c, MTLD_ARCH_MMOE);
  c.tasks[0].loss_weight = 0.0f;
  c.tasks[2].loss_weight = 0.0f;
  mtld_model_t *m;
  char err[256];
  CHECK(mtld_model_create(&m, &c, err, sizeof(err)) == MTLD_OK);
  mtld_sample_t s[8];
  for (int i = 0; i < 8; i++) make_sample(&s[i], i);
  mtld_model_forward(m, s, 8);
  mtld_model_backward(m);
  const float *preds = mtld_model_preds(m), *cond = mtld_model_cond_preds(m);
  CHECK(preds[1] > 0.0f && preds[1] < cond[1] && preds[1] < preds[0]);
  CHECK_NEAR(preds[1], preds[0] * cond[1], 1e-6);
  int nt;
  const mtld_tensor_t *ts = mtld_model_tensors(m, &nt);
  float *g;
  size_t nd;
  mtld_model_grads(m, &g, &nd);
  double ctr = 0.0, rating = 0.0;
  for (int t = 0; t < nt; t++) {
    size_t size = (size_t)ts[t].rows * ts[t].cols;
    for (size_t i = 0; i < size && ts[t].offset < nd; i++) {
      if (strstr(ts[t].name, "tower.ctr.")) ctr += fabs(g[ts[t].offset + i]);
      if (strstr(ts[t].name, "tower.rating.")) rating += fabs(g[ts[t].offset + i]);
    }
  }
  CHECK(ctr > 0.0);
  CHECK(rating == 0.0);
  CHECK(mtld_model_set_loss_weight(m, 1, 0.0f) == MTLD_OK);
  CHECK(mtld_model_forward(m, s, 8) == 0.0);
  CHECK(mtld_model_set_loss_weight(m, 7, 1.0f) == MTLD_ERR_INVALID);
  CHECK(mtld_model_set_loss_weight(m, 0, -1.0f) == MTLD_ERR_INVALID);
  CHECK(mtld_model_set_lr(m, 0.0f, 0.1f) == MTLD_ERR_INVALID);
  CHECK(mtld_model_set_lr(m, 0.01f, 0.1f) == MTLD_OK && mtld_model_config(m)->lr == 0.01f);
  mtld_model_destroy(m);
}

/* x's width: F*D fields, D pooled, V(V-1)/2 dot products, dense.  With only
 * the interaction path left (every expert input weight but the interaction
 * rows zeroed), every field embedding still gets its gradient, sum_j g_ij
 * e_j, and it matches the finite difference. */
static void test_interactions(void) {
  mtld_model_config_t c;
  small_config(&c, MTLD_ARCH_SHARED_BOTTOM);
  mtld_model_t *m;
  char err[256];
  int F = c.n_fields, D = c.dim, V = F + 1, P = V * (V - 1) / 2;
  CHECK(mtld_model_create(&m, &c, err, sizeof(err)) == MTLD_OK);
  int nt;
  const mtld_tensor_t *ts = mtld_model_tensors(m, &nt);
  CHECK(strcmp(ts[0].name, "expert0.l0.w") == 0);
  CHECK(ts[0].rows == (uint32_t)(F * D + D + P + c.n_dense));
  mtld_model_destroy(m);
  c.interactions = MTLD_INTER_NONE;
  CHECK(mtld_model_create(&m, &c, err, sizeof(err)) == MTLD_OK);
  ts = mtld_model_tensors(m, &nt);
  CHECK(ts[0].rows == (uint32_t)(F * D + D + c.n_dense));
  mtld_model_destroy(m);
  c.interactions = 2;
  CHECK(mtld_model_config_validate(&c, err, sizeof(err)) == MTLD_ERR_CONFIG);

  /* one sample, no attention, interactions only */
  c.interactions = MTLD_INTER_DOT;
  c.seq_max = 0;
  c.item_field = -1;
  c.batch_size = 1;
  V = F;
  P = V * (V - 1) / 2;
  CHECK(mtld_model_create(&m, &c, err, sizeof(err)) == MTLD_OK);
  mtld_sample_t s;
  make_sample(&s, 0);
  for (int k = 0; k < 2; k++) mtld_model_train_batch(m, &s, 1); /* admit the rows */
  ts = mtld_model_tensors(m, &nt);
  float *p;
  size_t np;
  mtld_model_params(m, &p, &np);
  const mtld_tensor_t *w0 = &ts[0];
  for (uint32_t r = 0; r < w0->rows; r++)
    if (r < (uint32_t)(F * D) || r >= (uint32_t)(F * D + P))
      for (uint32_t k = 0; k < w0->cols; k++) p[w0->offset + r * w0->cols + k] = 0.0f;
  mtld_model_forward(m, &s, 1);
  mtld_model_backward(m);
  /* every field's row: its only path to the loss is through the dot products */
  int ok = 0, kink;
  for (int f = 0; f < F; f++) {
    mtld_embed_t *t = mtld_model_embed(m, f);
    int32_t r = mtld_embed_find(t, s.fields[f], s.time_ms);
    const float *eg = r >= 0 ? mtld_embed_grad_of(t, r) : NULL;
    for (int d = 0; d < D && eg; d++) {
      double num = numeric(m, &s, 1, &t->w[(size_t)r * D + d], &kink);
      ok += kink || (grad_ok(num, eg[d]) && fabs(num) > 1e-6);
    }
  }
  CHECK(ok == F * D);
  mtld_model_destroy(m);
}

/* The hour field's id: 1 + the UTC hour, floored for times before 1970. */
static void test_hour_id(void) {
  CHECK(mtld_sample_hour_id(0) == 1 && mtld_sample_hour_id(3599999) == 1);
  CHECK(mtld_sample_hour_id(3600000) == 2 && mtld_sample_hour_id(86399999) == 24);
  CHECK(mtld_sample_hour_id(86400000) == 1 && mtld_sample_hour_id(-1) == 24);
  CHECK(mtld_sample_hour_id(1500000000000LL) == 3); /* 2017-07-14T02:40Z */
}

static void test_embed(void) {
  mtld_embed_config_t ec = {.optim = MTLD_EMB_ADAGRAD,
                            .lr = 0.1f,
                            .adagrad_init = 0.01f,
                            .eps = 1e-8f,
                            .init_scale = 0.1f,
                            .admit_after = 3,
                            .expire_ms = 1000};
  enum { ROWS = 64, D = 4 };
  float w[ROWS * D];
  mtld_embed_t e;
  char err[128];
  CHECK(mtld_embed_init(&e, w, ROWS, D, 7, &ec, 16, err, sizeof(err)) == MTLD_OK);
  CHECK(mtld_embed_find(&e, 0, 0) == -1);
  mtld_embed_touch(&e, 42, 0, 1);
  mtld_embed_touch(&e, 42, 10, 1);
  CHECK(mtld_embed_find(&e, 42, 10) == -1); /* seen twice: not admitted */
  CHECK(e.stats.live_rows == 0);
  mtld_embed_touch(&e, 42, 20, 1);
  int32_t r = mtld_embed_find(&e, 42, 20);
  CHECK(r >= 0 && e.stats.live_rows == 1 && e.stats.admitted == 1);
  int nonzero = 0;
  for (int d = 0; d < D; d++) nonzero += w[r * D + d] != 0.0f;
  CHECK(nonzero == D);
  /* sparse Adagrad: only the touched row moves, summed over occurrences */
  float before[ROWS * D];
  memcpy(before, w, sizeof(w));
  float g[D] = {1.0f, -1.0f, 0.5f, 0.0f};
  mtld_embed_grad_add(&e, r, g);
  mtld_embed_grad_add(&e, r, g);
  CHECK(mtld_embed_grad_of(&e, r) && mtld_embed_grad_of(&e, r)[0] == 2.0f);
  mtld_embed_apply(&e);
  CHECK(mtld_embed_grad_of(&e, r) == NULL);
  CHECK(w[r * D + 0] < before[r * D + 0] && w[r * D + 1] > before[r * D + 1]);
  CHECK(w[r * D + 3] == before[r * D + 3]);
  int others = 0;
  for (int i = 0; i < ROWS * D; i++)
    if (i / D != r) others += w[i] != before[i];
  CHECK(others == 0);
  /* expiry by event time: unusable after 1000 ms idle, reset on next touch */
  CHECK(mtld_embed_find(&e, 42, 1020) == r);
  CHECK(mtld_embed_find(&e, 42, 1021) == -1);
  mtld_embed_touch(&e, 42, 1021, 1);
  CHECK(e.stats.evictions == 1 && e.stats.live_rows == 1);
  CHECK(mtld_embed_find(&e, 42, 1021) == r);
  /* sweep kills idle rows and halves the counts (42 must be seen again) */
  mtld_embed_sweep(&e, 5000);
  CHECK(e.stats.live_rows == 0 && e.stats.evictions == 2);
  mtld_embed_touch(&e, 42, 5001, 1); /* counts 4 -> 2, +1 = 3: admitted again */
  CHECK(mtld_embed_find(&e, 42, 5001) == r);
  mtld_embed_free(&e);

  /* Adam embeddings and admit-at-once */
  ec.optim = MTLD_EMB_ADAM;
  ec.admit_after = 0;
  ec.beta1 = 0.9f;
  ec.beta2 = 0.999f;
  CHECK(mtld_embed_init(&e, w, ROWS, D, 7, &ec, 16, err, sizeof(err)) == MTLD_OK);
  mtld_embed_touch(&e, 5, 0, 1);
  r = mtld_embed_find(&e, 5, 0);
  CHECK(r >= 0);
  float w0 = w[r * D];
  mtld_embed_grad_add(&e, r, g);
  mtld_embed_apply(&e);
  CHECK_NEAR(w[r * D], w0 - 0.1f, 1e-4); /* first Adam step moves by lr */
  mtld_embed_free(&e);

  /* the row of an id is mix64(id ^ seed) % rows (readers and the PyTorch
   * replica rely on it), with a power of two of rows (indexed by a mask) and
   * without one */
  static float w2[100 * D];
  const uint32_t sizes[2] = {64, 100};
  for (int k = 0; k < 2; k++) {
    CHECK(mtld_embed_init(&e, w2, sizes[k], D, 7, &ec, 16, err, sizeof(err)) == MTLD_OK);
    int same = 0;
    for (uint64_t id = 1; id <= 200; id++) {
      mtld_embed_touch(&e, id, 0, 1);
      same += mtld_embed_find(&e, id, 0) == (int32_t)(mtld_mix64(id ^ 7) % sizes[k]);
    }
    CHECK(same == 200);
    mtld_embed_free(&e);
  }
}

static void test_config(void) {
  mtld_model_config_t c;
  char err[256];
  mtld_model_config_default(&c);
  CHECK(mtld_model_config_validate(&c, err, sizeof(err)) == MTLD_OK);
  c.tasks[1].parent = 2; /* a regression parent */
  CHECK(mtld_model_config_validate(&c, err, sizeof(err)) == MTLD_ERR_CONFIG);
  CHECK(strstr(err, "ctcvr") != NULL);
  mtld_model_config_default(&c);
  c.n_experts = MTLD_MAX_EXPERTS + 1;
  CHECK(mtld_model_config_validate(&c, err, sizeof(err)) == MTLD_ERR_CONFIG);
  mtld_model_config_default(&c);
  c.seq_max = MTLD_MAX_SAMPLE_SEQ + 1;
  CHECK(mtld_model_config_validate(&c, err, sizeof(err)) == MTLD_ERR_CONFIG);
  mtld_model_config_default(&c);
  snprintf(c.tasks[2].name, MTLD_NAME_MAX, "ctr");
  CHECK(mtld_model_config_validate(&c, err, sizeof(err)) == MTLD_ERR_CONFIG);
  /* a fourth task is data: a binary cart task */
  mtld_model_config_default(&c);
  c.fields[0].rows = c.fields[1].rows = 1024;
  c.n_tasks = 4;
  snprintf(c.tasks[3].name, MTLD_NAME_MAX, "cart");
  c.tasks[3].type = MTLD_TASK_BINARY;
  c.tasks[3].label = MTLD_LABEL_CART;
  c.tasks[3].parent = -1;
  c.tasks[3].loss_weight = 1.0f;
  mtld_model_t *m;
  CHECK(mtld_model_create(&m, &c, err, sizeof(err)) == MTLD_OK);
  int nt, found = 0;
  const mtld_tensor_t *ts = mtld_model_tensors(m, &nt);
  for (int t = 0; t < nt; t++) found += strstr(ts[t].name, "tower.cart.") != NULL;
  CHECK(found == 4);
  float *p;
  size_t np;
  mtld_model_params(m, &p, &np);
  CHECK(ts[nt - 1].offset + (size_t)ts[nt - 1].rows * ts[nt - 1].cols == np);
  CHECK(mtld_model_flops_per_sample(m) > 0.0 && mtld_model_memory_bytes(m) > np * 4);
  mtld_model_destroy(m);
}

int main(void) {
  test_embed();
  test_config();
  test_esmm_parent_gradient();
  test_review_chain();
  test_interactions();
  test_hour_id();
  test_fd();
  return CHECK_DONE();
}
