/* bench_trainer.c - training throughput of the default multi-task model at
 * batch 256 on a synthetic stream, against the raw BLIS sgemm rate of a
 * 256x64x160 product (the first expert layer's shape) measured in the same run.
 *
 * Prints samples/s of the model's training step (forward + backward + update)
 * and of the whole trainer path (observe: metrics + training), the model's
 * achieved dense GFLOP/s (analytic FLOPs of its linear layers), the sgemm
 * GFLOP/s, and their ratio.
 *   usage: bench_trainer [seconds_per_phase (default 2)] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trainer/train.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t next_u64(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void make_sample(mtld_sample_t *s, int i) {
  memset(s, 0, sizeof(*s));
  s->sample_id = (uint64_t)i + 1;
  s->time_ms = 1500000000000LL + (int64_t)i * 20;
  s->weight = 1.0f;
  s->n_fields = 5;
  s->fields[MTLD_FIELD_USER] = 1 + next_u64() % 100000;
  s->fields[MTLD_FIELD_ITEM] = 1 + next_u64() % 50000;
  s->fields[MTLD_FIELD_CATEGORY] = 1 + s->fields[MTLD_FIELD_ITEM] % 1000;
  s->fields[MTLD_FIELD_SCENARIO] = 1 + next_u64() % 8;
  s->fields[MTLD_FIELD_POSITION] = 1 + next_u64() % 20;
  s->scenario_id = s->fields[MTLD_FIELD_SCENARIO];
  s->n_dense = MTLD_MAX_DENSE;
  for (int d = 0; d < MTLD_MAX_DENSE; d++) s->dense[d] = (float)(next_u64() % 1000) / 100.0f;
  s->seq_len = 20;
  for (int j = 0; j < s->seq_len; j++) {
    s->seq_items[j] = 1 + next_u64() % 50000;
    s->seq_cats[j] = 1 + s->seq_items[j] % 1000;
  }
  s->kind = MTLD_SAMPLE_IMPRESSION;
  int click = next_u64() % 10 == 0, buy = click && next_u64() % 5 == 0;
  s->labels[MTLD_LABEL_CLICK] = (float)click;
  s->labels[MTLD_LABEL_PURCHASE] = (float)buy;
  s->label_mask = (1u << MTLD_LABEL_CLICK) | (1u << MTLD_LABEL_PURCHASE);
  if (i % 20 == 19) {
    s->kind = MTLD_SAMPLE_REVIEW;
    s->labels[MTLD_LABEL_RATING] = (float)(1 + next_u64() % 5);
    s->label_mask = 1u << MTLD_LABEL_RATING;
  }
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 2.0;
  if (secs <= 0) secs = 2.0;
  mtld_model_config_t cfg;
  mtld_model_config_default(&cfg);
  cfg.n_dense = MTLD_MAX_DENSE; /* x = 5*16 + 16 + 64 = 160 wide */
  cfg.emb.admit_after = 1;
  cfg.batch_size = 256; /* the shape this benchmark measures (the default is 64) */
  enum { NS = 64 * 256 };
  mtld_sample_t *s = malloc(sizeof(*s) * NS);
  if (!s) return 1;
  for (int i = 0; i < NS; i++) make_sample(&s[i], i);
  char err[256];

  /* 1. raw sgemm 256x64x160 */
  enum { M = 256, N = 64, K = 160 };
  float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N),
        *c = malloc(sizeof(float) * M * N);
  for (int i = 0; i < M * K; i++) a[i] = (float)(next_u64() % 100) / 100.0f;
  for (int i = 0; i < K * N; i++) b[i] = (float)(next_u64() % 100) / 100.0f;
  long reps = 0;
  double t0 = now_s(), t1;
  do {
    for (int r = 0; r < 100; r++)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
    reps += 100;
    t1 = now_s();
  } while (t1 - t0 < secs);
  double sgemm_gflops = 2.0 * M * N * K * (double)reps / (t1 - t0) / 1e9;

  /* 2. the model's training step at batch 256 */
  mtld_model_t *m;
  if (mtld_model_create(&m, &cfg, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "bench_trainer: %s\n", err);
    return 1;
  }
  for (int w = 0; w < 4; w++) mtld_model_train_batch(m, s + w * 256, 256); /* warm-up */
  long batches = 0;
  t0 = now_s();
  do {
    int at = (int)(batches % (NS / 256)) * 256;
    mtld_model_train_batch(m, s + at, 256);
    batches++;
    t1 = now_s();
  } while (t1 - t0 < secs);
  double step_sps = 256.0 * (double)batches / (t1 - t0);
  double flops = mtld_model_flops_per_sample(m);
  double model_gflops = flops * step_sps / 1e9;
  size_t mem = mtld_model_memory_bytes(m);
  mtld_model_destroy(m);

  /* 3. the whole trainer path (progressive metrics + training) */
  mtld_trainer_t *t;
  if (mtld_trainer_create(&t, &cfg, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "bench_trainer: %s\n", err);
    return 1;
  }
  long n = 0;
  t0 = now_s();
  do {
    for (int i = 0; i < 256; i++, n++) mtld_trainer_observe(t, &s[n % NS], NULL);
    t1 = now_s();
  } while (t1 - t0 < secs);
  double observe_sps = (double)n / (t1 - t0);
  mtld_trainer_destroy(t);

  printf("bench_trainer: model mmoe E=4 experts [64,32] towers [32] tasks 3, x=160, D=16, "
         "seq 20, batch 256, memory %.1f MiB\n",
         (double)mem / (1024.0 * 1024.0));
  printf("train_step        %10.0f samples/s  (%.3f ms/batch)\n", step_sps, 256e3 / step_sps);
  printf("trainer_observe   %10.0f samples/s\n", observe_sps);
  printf("model dense flops %10.0f per sample -> %.2f GFLOP/s\n", flops, model_gflops);
  printf("sgemm 256x64x160  %10.2f GFLOP/s\n", sgemm_gflops);
  printf("ratio model/sgemm %10.3f\n", model_gflops / sgemm_gflops);
  free(a);
  free(b);
  free(c);
  free(s);
  return 0;
}
