/* bench_sync_sim.c - the model sync of scale-out (trainer/delta.h) on the
 * samples the daemon released (trainer.dump_samples), without Kafka and
 * without timing: deterministic, so two sync designs can be compared on the
 * same samples in the same order (the bench_scaleout.sh runs vary with how
 * the partitions interleave).
 *
 * The samples are split over K instances as the consumer group would split
 * them: partition = mix64(user) % 8 (item-level samples by item), partitions
 * assigned in ranges (K=2: 4 + 4, K=3: 3 + 3 + 2).  Each sample goes, in dump
 * order, to its instance's trainer (mtld_trainer_observe, as the daemon
 * does); every --every samples (of all instances together) every instance
 * extracts its delta and, --lag rounds later, every other instance applies
 * it (lag 0: at once).  At the end the progressive AUC of all instances'
 * samples together (mtld_pvmetrics_pooled_auc, as mtld-snapshot-merge
 * --pooled-auc) is printed per binary task.  K=1 is the single instance.
 * --average: the shared change of a round is the mean of the instances'
 * deltas, not their sum (each delta, the instance's own included, times
 * 1/K).  --no-acc: the rows' Adagrad accumulators stay local.  --beta1,
 * --lr: the dense parameters' Adam momentum and learning rate.
 *   usage: bench_sync_sim -c CONFIG -d DUMP [-k K] [--every N] [--lag L]
 *          [--no-acc] [--average] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/hash.h"
#include "daemon/config.h"
#include "trainer/delta.h"
#include "trainer/sampledump.h"
#include "trainer/train.h"

#define MAX_K 8
#define MAX_LAG 16

typedef struct {
  void *buf;
  size_t len;
} msg_t;

/* A copy of an encoded DELTA (trainer/delta.h) with its dense values and row
 * values times alpha (the rows' accumulator increments kept: a sum either
 * way). */
static void *scaled(const void *buf, size_t len, float alpha, int dim) {
  uint8_t *p = malloc(len);
  if (!p) return NULL;
  memcpy(p, buf, len);
  uint32_t n_dense = mtld_get_le32(p + 20), n_tables = mtld_get_le32(p + 24);
  size_t at = 28;
  for (uint32_t i = 0; i < n_dense; i++, at += 4)
    mtld_put_f32(p + at, alpha * mtld_get_f32(p + at));
  for (uint32_t t = 0; t < n_tables; t++) {
    uint32_t cnt = mtld_get_le32(p + at + 4);
    at += 8;
    for (uint32_t r = 0; r < cnt; r++) {
      at += 12;
      for (int j = 0; j < dim; j++, at += 4) mtld_put_f32(p + at, alpha * mtld_get_f32(p + at));
      at += 4;
    }
  }
  return p;
}

static int instance_of(const mtld_sample_t *s, int k) {
  uint64_t key =
      s->fields[MTLD_FIELD_USER] ? s->fields[MTLD_FIELD_USER] : s->fields[MTLD_FIELD_ITEM];
  int p = (int)(mtld_mix64(key) % 8);
  /* range assignment of 8 partitions over k members: the first 8 % k get one more */
  int base = 8 / k, extra = 8 % k, at = 0;
  for (int i = 0; i < k; i++) {
    int n = base + (i < extra);
    if (p < at + n) return i;
    at += n;
  }
  return k - 1;
}

int main(int argc, char **argv) {
  const char *conf = NULL, *dump = NULL;
  int k = 1, lag = 0, acc = 1;
  float alpha = 1.0f;              /* --average: 1/k */
  float beta1 = -1.0f, lr = -1.0f; /* --beta1, --lr: the dense Adam's, else the config's */
  long every = 1000;
  static const struct option opts[] = {{"every", required_argument, NULL, 'e'},
                                       {"lag", required_argument, NULL, 'l'},
                                       {"no-acc", no_argument, NULL, 'a'},
                                       {"average", no_argument, NULL, 'v'},
                                       {"beta1", required_argument, NULL, 'b'},
                                       {"lr", required_argument, NULL, 'r'},
                                       {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "c:d:k:", opts, NULL)) != -1) {
    switch (c) {
    case 'c': conf = optarg; break;
    case 'd': dump = optarg; break;
    case 'k': k = atoi(optarg); break;
    case 'e': every = atol(optarg); break;
    case 'l': lag = atoi(optarg); break;
    case 'a': acc = 0; break;
    case 'v': alpha = -1.0f; break;
    case 'b': beta1 = (float)atof(optarg); break;
    case 'r': lr = (float)atof(optarg); break;
    default:
      fprintf(stderr, "usage: bench_sync_sim -c CONFIG -d DUMP [-k K] [--every N] [--lag L] "
                      "[--no-acc] [--average]\n");
      return 2;
    }
  }
  if (!conf || !dump || k < 1 || k > MAX_K || every < 1 || lag < 0 || lag >= MAX_LAG) {
    fprintf(stderr, "bench_sync_sim: -c CONFIG -d DUMP, 1 <= K <= %d, N >= 1, 0 <= L < %d\n", MAX_K,
            MAX_LAG);
    return 2;
  }
  if (alpha < 0) alpha = 1.0f / (float)k;
  static mtld_config_t cfg;
  char err[512];
  if (mtld_config_load(&cfg, conf, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "bench_sync_sim: %s\n", err);
    return 1;
  }
  if (beta1 >= 0) cfg.model.beta1 = beta1;
  if (lr > 0) cfg.model.lr = lr;
  size_t n = 0;
  char derr[512];
  mtld_sample_t *s = mtld_sampledump_load(dump, &n, derr, sizeof(derr));
  if (!s) {
    fprintf(stderr, "bench_sync_sim: %s\n", derr);
    return 1;
  }
  mtld_trainer_t *t[MAX_K];
  mtld_delta_t *d[MAX_K];
  msg_t q[MAX_LAG + 1][MAX_K];
  memset(q, 0, sizeof(q));
  for (int i = 0; i < k; i++) {
    if (mtld_trainer_create(&t[i], &cfg.model, err, sizeof(err)) != MTLD_OK ||
        mtld_delta_new(&d[i], mtld_trainer_model(t[i]), 1ull << MTLD_FIELD_USER,
                       acc ? MTLD_DELTA_ACCUMULATORS : 0, err, sizeof(err)) != MTLD_OK) {
      fprintf(stderr, "bench_sync_sim: %s\n", err);
      return 1;
    }
  }
  uint64_t rounds = 0, bytes = 0;
  for (size_t j = 0; j < n; j++) {
    mtld_trainer_observe(t[instance_of(&s[j], k)], &s[j], NULL);
    if (k == 1 || (j + 1) % (size_t)every != 0) continue;
    /* a round: everyone publishes; what was published lag rounds ago arrives */
    msg_t *now = q[rounds % (MAX_LAG + 1)];
    for (int i = 0; i < k; i++) {
      if (mtld_delta_extract(d[i], MTLD_DELTA_DELTA, &now[i].buf, &now[i].len, NULL) != MTLD_OK)
        return 1;
      bytes += now[i].len;
    }
    if (alpha != 1.0f) /* averaging: each instance's own change counts alpha too */
      for (int i = 0; i < k; i++) {
        void *own = scaled(now[i].buf, now[i].len, alpha - 1.0f, cfg.model.dim);
        if (!own || mtld_delta_apply(d[i], own, now[i].len, err, sizeof(err)) != MTLD_OK) return 1;
        free(own);
        void *sc = scaled(now[i].buf, now[i].len, alpha, cfg.model.dim);
        if (!sc) return 1;
        free(now[i].buf);
        now[i].buf = sc;
      }
    if (rounds >= (uint64_t)lag) {
      msg_t *due = q[(rounds - (uint64_t)lag) % (MAX_LAG + 1)];
      for (int i = 0; i < k; i++)
        for (int o = 0; o < k; o++)
          if (o != i &&
              mtld_delta_apply(d[i], due[o].buf, due[o].len, err, sizeof(err)) != MTLD_OK) {
            fprintf(stderr, "bench_sync_sim: %s\n", err);
            return 1;
          }
      for (int o = 0; o < k; o++) {
        free(due[o].buf);
        due[o].buf = NULL;
      }
    }
    rounds++;
  }
  const mtld_pvmetrics_t *m[MAX_K];
  for (int i = 0; i < k; i++) {
    mtld_trainer_flush(t[i]);
    m[i] = mtld_trainer_metrics(t[i]);
  }
  const mtld_model_config_t *mc = &cfg.model;
  printf("k=%d every=%ld lag=%d acc=%d alpha=%.3f beta1=%.2f lr=%g samples=%zu rounds=%llu "
         "bytes/round=%.0f",
         k, every, lag, acc, (double)alpha, (double)cfg.model.beta1, (double)cfg.model.lr, n,
         (unsigned long long)rounds, rounds ? (double)bytes / (double)rounds / k : 0.0);
  for (int task = 0; task < mc->n_tasks; task++) {
    if (mc->tasks[task].type == MTLD_TASK_REGRESSION) continue;
    double cum, win;
    if (mtld_pvmetrics_pooled_auc(m, k, task, &cum, &win) != MTLD_OK) continue;
    printf(" %s=%.4f", mc->tasks[task].name, cum);
  }
  printf("\n");
  for (int i = 0; i < k; i++) {
    mtld_delta_free(d[i]);
    mtld_trainer_destroy(t[i]);
  }
  for (int r = 0; r <= MAX_LAG; r++)
    for (int i = 0; i < MAX_K; i++) free(q[r][i].buf);
  free(s);
  return 0;
}
