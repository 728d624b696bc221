/* bench_trainer_dump.c - mtld's trainer on the samples the daemon released
 * (trainer.dump_samples), with the model config of a daemon config file: the
 * C side of bench/reference (the PyTorch comparison).
 *
 * 1. quality: the trainer path (mtld_trainer_observe, then flush, as the
 *    daemon does) over every sample; prints the progressive-validation table
 *    (the same lines the daemon logs as "pv ...").
 * 2. speed on these samples, one thread: samples/s of the whole trainer path
 *    (metrics + training) and of the training step alone (forward + backward
 *    + update at the configured batch size), median of --repeat passes, each
 *    from a fresh model, in CPU time of the process (the machines are shared;
 *    wall clock printed too); the dense GFLOP/s this achieves against a BLIS
 *    sgemm of the first expert layer's shape (batch x width x input)
 *    measured right after each step pass (the ratio is the median of the
 *    pass-by-pass ratios).
 * Options write the model config as JSON (--model-json, read by
 * mtld_torch.py) and the progressive prediction of every sample
 * (--preds: "MTLDPRD1", u32 n_tasks, u32 n_samples, then float32
 * [n_samples][n_tasks] in dump order, NaN for samples the trainer refuses).
 *   usage: bench_trainer_dump -c CONFIG -d DUMP [--model-json FILE]
 *          [--preds FILE] [--repeat N] [--no-speed] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/config.h"
#include "trainer/sampledump.h"
#include "trainer/train.h"

/* Wall-clock and CPU time of this process: the machines running benchmarks
 * are shared, and CPU time is what the trainer thread itself consumed. */
typedef struct {
  double wall, cpu;
} clk_t;

static clk_t clk_now(void) {
  struct timespec w, c;
  clock_gettime(CLOCK_MONOTONIC, &w);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
  return (clk_t){(double)w.tv_sec + w.tv_nsec * 1e-9, (double)c.tv_sec + c.tv_nsec * 1e-9};
}

static clk_t clk_since(clk_t t0) {
  clk_t t = clk_now();
  return (clk_t){t.wall - t0.wall, t.cpu - t0.cpu};
}

/* The model config and the dense tensor layout of the model it creates (the
 * replica checks its own layout against it, so a change of model.c cannot
 * go unnoticed). */
static void json_model(FILE *f, const mtld_model_config_t *c, mtld_model_t *m) {
  fprintf(f, "{\n \"arch\": %d, \"dim\": %d, \"fields\": [", c->arch, c->dim);
  for (int i = 0; i < c->n_fields; i++)
    fprintf(f, "%s{\"name\": \"%s\", \"rows\": %u}", i ? ", " : "", c->fields[i].name,
            c->fields[i].rows);
  fprintf(f, "],\n \"item_field\": %d, \"category_field\": %d, \"scenario_field\": %d,\n",
          c->item_field, c->category_field, c->scenario_field);
  fprintf(f, " \"seq_max\": %d, \"interactions\": %d, \"n_dense\": %d, \"n_experts\": %d,\n",
          c->seq_max, c->interactions, c->n_dense, c->n_experts);
  fprintf(f, " \"n_shared_experts\": %d,", c->n_shared_experts);
  fprintf(f, " \"n_task_experts\": %d, \"expert_layers\": [", c->n_task_experts);
  for (int i = 0; i < c->n_expert_layers; i++)
    fprintf(f, "%s%d", i ? ", " : "", c->expert_layers[i]);
  fprintf(f, "], \"tower_layers\": [");
  for (int i = 0; i < c->n_tower_layers; i++) fprintf(f, "%s%d", i ? ", " : "", c->tower_layers[i]);
  fprintf(f, "],\n \"tasks\": [");
  for (int t = 0; t < c->n_tasks; t++) {
    const mtld_task_t *k = &c->tasks[t];
    fprintf(f,
            "%s\n  {\"name\": \"%s\", \"type\": %d, \"label\": %d, \"parent\": %d, "
            "\"loss_weight\": %.9g, \"reg_loss\": %d, \"huber_delta\": %.9g, \"bias_init\": %.9g}",
            t ? "," : "", k->name, k->type, k->label, k->parent, k->loss_weight, k->reg_loss,
            k->huber_delta, k->bias_init);
  }
  fprintf(f, "],\n \"uncertainty_weighting\": %d, \"optim\": %d, \"lr\": %.9g, \"beta1\": %.9g,",
          c->uncertainty_weighting, c->optim, c->lr, c->beta1);
  fprintf(f, " \"beta2\": %.9g, \"eps\": %.9g,\n", c->beta2, c->eps);
  const mtld_embed_config_t *e = &c->emb;
  fprintf(f,
          " \"emb\": {\"optim\": %d, \"lr\": %.9g, \"adagrad_init\": %.9g, \"beta1\": %.9g, "
          "\"beta2\": %.9g, \"eps\": %.9g, \"init_scale\": %.9g, \"admit_after\": %u, "
          "\"expire_ms\": %lld},\n",
          e->optim, e->lr, e->adagrad_init, e->beta1, e->beta2, e->eps, e->init_scale,
          e->admit_after, (long long)e->expire_ms);
  fprintf(f, " \"batch_size\": %d, \"seed\": %llu, \"pv_window\": %u, \"pv_max_scenarios\": %d,\n",
          c->batch_size, (unsigned long long)c->seed, c->pv_window, c->pv_max_scenarios);
  float *g;
  size_t n_dense;
  int nt;
  mtld_model_grads(m, &g, &n_dense);
  const mtld_tensor_t *t = mtld_model_tensors(m, &nt);
  fprintf(f, " \"n_dense_params\": %zu, \"tensors\": [", n_dense);
  for (int i = 0, k = 0; i < nt; i++)
    if (t[i].offset < n_dense)
      fprintf(f, "%s\n  {\"name\": \"%s\", \"rows\": %u, \"cols\": %u}", k++ ? "," : "", t[i].name,
              t[i].rows, t[i].cols);
  fprintf(f, "]\n}\n");
}

/* the acceptance test of mtld_trainer_observe */
static int accepted(const mtld_sample_t *s) {
  if (!isfinite(s->weight) || s->weight < 0.0f) return 0;
  for (int l = 0; l < MTLD_N_LABELS; l++)
    if (((s->label_mask >> l) & 1) && !isfinite(s->labels[l])) return 0;
  return 1;
}

/* Whole trainer path over the dump; returns its time.  Prints the pv table
 * when out is non-NULL. */
static clk_t pass_observe(const mtld_model_config_t *cfg, const mtld_sample_t *s, size_t n,
                          FILE *out) {
  char err[256];
  mtld_trainer_t *t;
  if (mtld_trainer_create(&t, cfg, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "bench_trainer_dump: %s\n", err);
    exit(1);
  }
  clk_t t0 = clk_now();
  for (size_t i = 0; i < n; i++) mtld_trainer_observe(t, &s[i], NULL);
  mtld_trainer_flush(t);
  clk_t secs = clk_since(t0);
  if (out) mtld_pvmetrics_print(mtld_trainer_metrics(t), out, 0);
  mtld_trainer_destroy(t);
  return secs;
}

/* Training step alone (forward, backward, update per batch of accepted
 * samples); copies the batch forward's predictions into preds[n][T] when
 * non-NULL.  Returns its time; *flops gets the dense FLOPs per sample. */
static clk_t pass_step(const mtld_model_config_t *cfg, const mtld_sample_t *s, size_t n,
                       float *preds, double *flops) {
  char err[256];
  mtld_model_t *m;
  if (mtld_model_create(&m, cfg, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "bench_trainer_dump: %s\n", err);
    exit(1);
  }
  int B = cfg->batch_size, T = cfg->n_tasks;
  mtld_sample_t *batch = malloc(sizeof(*batch) * (size_t)B);
  size_t *where = malloc(sizeof(size_t) * (size_t)B);
  if (!batch || !where) exit(1);
  clk_t t0 = clk_now();
  int nb = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && accepted(&s[i])) {
      batch[nb] = s[i];
      where[nb++] = i;
    }
    if (nb == B || (i == n && nb > 0)) {
      mtld_model_forward(m, batch, nb);
      if (preds) {
        const float *p = mtld_model_preds(m);
        for (int b = 0; b < nb; b++) memcpy(preds + where[b] * T, p + b * T, sizeof(float) * T);
      }
      mtld_model_backward(m);
      mtld_model_update(m, batch, nb);
      nb = 0;
    }
  }
  clk_t secs = clk_since(t0);
  *flops = mtld_model_flops_per_sample(m);
  free(batch);
  free(where);
  mtld_model_destroy(m);
  return secs;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *conf = NULL, *dump = NULL, *json = NULL, *preds_path = NULL;
  int repeat = 3, speed = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-c") && i + 1 < argc)
      conf = argv[++i];
    else if (!strcmp(argv[i], "-d") && i + 1 < argc)
      dump = argv[++i];
    else if (!strcmp(argv[i], "--model-json") && i + 1 < argc)
      json = argv[++i];
    else if (!strcmp(argv[i], "--preds") && i + 1 < argc)
      preds_path = argv[++i];
    else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
      repeat = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--no-speed"))
      speed = 0;
    else {
      fprintf(stderr, "usage: bench_trainer_dump -c CONFIG -d DUMP [--model-json FILE] "
                      "[--preds FILE] [--repeat N] [--no-speed]\n");
      return 2;
    }
  }
  if (!conf || !dump) {
    fprintf(stderr, "bench_trainer_dump: -c CONFIG and -d DUMP are required\n");
    return 2;
  }
  if (repeat < 1) repeat = 1;
  static mtld_config_t cfg;
  char err[512];
  if (mtld_config_load(&cfg, conf, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "bench_trainer_dump: %s\n", err);
    return 1;
  }
  const mtld_model_config_t *mc = &cfg.model;
  /* a model of this config: its layout for --model-json, the shape of its
     first expert layer (input width x width) for the sgemm reference */
  mtld_model_t *probe;
  if (mtld_model_create(&probe, mc, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "bench_trainer_dump: %s\n", err);
    return 1;
  }
  int K = 0, N = 0, nt;
  const mtld_tensor_t *tens = mtld_model_tensors(probe, &nt);
  for (int i = 0; i < nt && !K; i++)
    if (!strcmp(tens[i].name, "expert0.l0.w")) K = (int)tens[i].rows, N = (int)tens[i].cols;
  if (json) {
    FILE *f = fopen(json, "w");
    if (!f) {
      perror(json);
      return 1;
    }
    json_model(f, mc, probe);
    fclose(f);
  }
  mtld_model_destroy(probe);
  if (!K) {
    fprintf(stderr, "bench_trainer_dump: no tensor expert0.l0.w in the model\n");
    return 1;
  }
  size_t n = 0;
  char derr[512];
  mtld_sample_t *s = mtld_sampledump_load(dump, &n, derr, sizeof(derr));
  if (!s) {
    fprintf(stderr, "bench_trainer_dump: %s\n", derr);
    return 1;
  }
  size_t n_ok = 0;
  for (size_t i = 0; i < n; i++) n_ok += (size_t)accepted(&s[i]);
  printf("bench_trainer_dump: %zu samples (%zu accepted) from %s, batch %d, tasks %d\n", n, n_ok,
         dump, mc->batch_size, mc->n_tasks);

  /* 1. quality: the trainer path, as in the daemon */
  pass_observe(mc, s, n, stdout);

  /* progressive predictions of every sample (training step path) */
  float *preds = NULL;
  double flops = 0.0;
  if (preds_path) {
    preds = malloc(sizeof(float) * n * (size_t)mc->n_tasks);
    if (!preds) return 1;
    for (size_t i = 0; i < n * (size_t)mc->n_tasks; i++) preds[i] = NAN;
  }
  pass_step(mc, s, n, preds, &flops);
  if (preds) {
    FILE *f = fopen(preds_path, "wb");
    uint32_t hdr[2] = {(uint32_t)mc->n_tasks, (uint32_t)n};
    if (!f || fwrite("MTLDPRD1", 1, 8, f) != 8 || fwrite(hdr, sizeof(hdr), 1, f) != 1 ||
        fwrite(preds, sizeof(float) * (size_t)mc->n_tasks, n, f) != n) {
      perror(preds_path);
      return 1;
    }
    fclose(f);
    free(preds);
  }
  if (!speed) {
    free(s);
    return 0;
  }

  /* 2. speed: median of `repeat` passes each (the passes above are warm-up);
   * each step pass is followed by half a second of sgemm on the first expert
   * layer's shape ([B, in] x [in, width]), and the ratio is taken pass by
   * pass: this machine's speed drifts by 10-20% between seconds, and a ratio
   * of two measurements made far apart moves with it. */
  int M = mc->batch_size;
  float *a = malloc(sizeof(float) * (size_t)M * K), *b = malloc(sizeof(float) * (size_t)K * N),
        *c = malloc(sizeof(float) * (size_t)M * N);
  double *ow = malloc(sizeof(double) * (size_t)repeat), *oc = malloc(sizeof(double) * repeat);
  double *sw = malloc(sizeof(double) * (size_t)repeat), *sc = malloc(sizeof(double) * repeat);
  double *gc = malloc(sizeof(double) * (size_t)repeat), *gw = malloc(sizeof(double) * repeat);
  double *ratio = malloc(sizeof(double) * (size_t)repeat);
  if (!a || !b || !c || !ow || !oc || !sw || !sc || !gc || !gw || !ratio) return 1;
  for (long i = 0; i < (long)M * K; i++) a[i] = (float)(i % 97) / 97.0f;
  for (long i = 0; i < (long)K * N; i++) b[i] = (float)(i % 89) / 89.0f;
  for (int r = 0; r < repeat; r++) {
    clk_t o = pass_observe(mc, s, n, NULL), p = pass_step(mc, s, n, NULL, &flops);
    ow[r] = o.wall;
    oc[r] = o.cpu;
    sw[r] = p.wall;
    sc[r] = p.cpu;
    long reps = 0;
    clk_t t0 = clk_now(), el;
    do {
      for (int k = 0; k < 100; k++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c,
                    N);
      reps += 100;
      el = clk_since(t0);
    } while (el.wall < 0.5);
    gc[r] = 2.0 * M * N * K * (double)reps / el.cpu / 1e9;
    gw[r] = 2.0 * M * N * K * (double)reps / el.wall / 1e9;
    ratio[r] = flops * (double)n_ok / sc[r] / 1e9 / gc[r];
  }
  double *all[7] = {ow, oc, sw, sc, gc, gw, ratio};
  for (int k = 0; k < 7; k++) qsort(all[k], (size_t)repeat, sizeof(double), cmp_d);
  double obs_cpu = (double)n_ok / oc[repeat / 2], obs_wall = (double)n_ok / ow[repeat / 2];
  double step_cpu = (double)n_ok / sc[repeat / 2], step_wall = (double)n_ok / sw[repeat / 2];
  double model_gflops = flops * step_cpu / 1e9;
  printf("speed: CPU time of this process (wall clock in brackets), median of %d passes\n", repeat);
  printf("trainer_observe   %10.0f samples/s  [wall %.0f]  whole trainer path\n", obs_cpu,
         obs_wall);
  printf("train_step        %10.0f samples/s  [wall %.0f]  forward+backward+update\n", step_cpu,
         step_wall);
  printf("model dense flops %10.0f per sample -> %.2f GFLOP/s\n", flops, model_gflops);
  printf("sgemm %dx%dx%d %10.2f GFLOP/s  [wall %.2f]  (0.5 s after each step pass)\n", M, N, K,
         gc[repeat / 2], gw[repeat / 2]);
  printf("ratio model/sgemm %10.3f  (median of the %d pass-by-pass ratios; range %.3f .. %.3f)\n",
         ratio[repeat / 2], repeat, ratio[0], ratio[repeat - 1]);
  free(a);
  free(b);
  free(c);
  free(gc);
  free(gw);
  free(ratio);
  free(ow);
  free(oc);
  free(sw);
  free(sc);
  free(s);
  return 0;
}
