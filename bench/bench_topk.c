/* bench_topk.c - top-K latency of libmtld-serving (include/mtld/serving.h):
 * ms per request to rank a catalog of N items (default 100,000) for one
 * user and return the best K (default 20), with the default model
 * (conf/mtld.conf's: MMoE, 4 experts [64, 32], towers [32], dim 16, three
 * tasks ctr / ctcvr / rating, attention over the user's sequence) trained
 * briefly so that the item rows are live.
 *
 * The snapshot is written by the daemon's writer with an item set of N
 * items, loaded through the public library, and each request (a different
 * user, its sequence of 20 recent items, 8 dense features) is timed end to
 * end: candidates built, scored in batches of 64 through the forward pass
 * (BLIS), the best K kept.  Reference in the same run: the same catalog
 * scored one candidate per call (mtld_serving_score n = 1).
 *   usage: bench_topk [N (100000)] [requests (20)] [K (20)] [DIR]
 * DIR: write the snapshot there and keep it (default: a temp dir, removed),
 * e.g. to time mtld_reader.py --top on the same file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"
#include "durable/snapshot.h"
#include "mtld/serving.h"
#include "trainer/train.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static uint64_t rs = 88172645463325252ULL;
static uint64_t rnd(void) {
  rs ^= rs << 13;
  rs ^= rs >> 7;
  rs ^= rs << 17;
  return rs;
}

int main(int argc, char **argv) {
  size_t n_items = argc > 1 ? (size_t)atol(argv[1]) : 100000;
  int reqs = argc > 2 ? atoi(argv[2]) : 20, k = argc > 3 ? atoi(argv[3]) : 20;
  if (n_items < 1 || reqs < 1 || k < 1) {
    fprintf(stderr, "usage: bench_topk [N] [requests] [K]\n");
    return 2;
  }
  char err[512], tmp[] = "/tmp/mtld-bench-topk.XXXXXX";
  const char *dir = argc > 4 ? argv[4] : mkdtemp(tmp);
  if (!dir) return 1;
  mtld_model_config_t cfg;
  mtld_model_config_default(&cfg);
  cfg.n_dense = 8;
  mtld_trainer_t *t;
  if (mtld_trainer_create(&t, &cfg, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "bench_topk: %s\n", err);
    return 1;
  }
  /* train on every item a few times (rows admitted and live) */
  const int64_t t0 = 1700000000000LL;
  mtld_sample_t s;
  memset(&s, 0, sizeof s);
  s.kind = MTLD_SAMPLE_IMPRESSION;
  s.weight = 1;
  s.n_fields = cfg.n_fields;
  s.n_dense = cfg.n_dense;
  s.label_mask = 1u << MTLD_LABEL_CLICK | 1u << MTLD_LABEL_CART | 1u << MTLD_LABEL_PURCHASE;
  size_t n_train = 3 * n_items;
  for (size_t i = 0; i < n_train; i++) {
    uint64_t item = 1 + i % n_items, user = 1 + rnd() % 50000;
    s.sample_id = i + 1;
    s.time_ms = t0 + (int64_t)i * 10;
    s.fields[MTLD_FIELD_USER] = user;
    s.fields[MTLD_FIELD_ITEM] = item;
    s.fields[MTLD_FIELD_CATEGORY] = 1 + item % 500;
    s.scenario_id = s.fields[MTLD_FIELD_SCENARIO] = 1 + rnd() % 3;
    s.fields[MTLD_FIELD_POSITION] = 1 + rnd() % 10;
    s.fields[MTLD_FIELD_HOUR] = mtld_sample_hour_id(s.time_ms);
    for (int d = 0; d < cfg.n_dense; d++) s.dense[d] = (float)(rnd() % 1000) / 100.0f;
    s.seq_len = 10;
    for (int j = 0; j < s.seq_len; j++) s.seq_items[j] = 1 + rnd() % n_items;
    s.labels[MTLD_LABEL_CLICK] = (float)((user + item) % 7 == 0);
    s.labels[MTLD_LABEL_PURCHASE] = (float)((user + item) % 21 == 0);
    mtld_trainer_observe(t, &s, NULL);
  }
  uint64_t *ids = malloc(sizeof(uint64_t) * n_items), *cats = malloc(sizeof(uint64_t) * n_items);
  for (size_t i = 0; i < n_items; i++) ids[i] = i + 1, cats[i] = 1 + (i + 1) % 500;
  mtld_snapshot_meta_t meta;
  memset(&meta, 0, sizeof meta);
  meta.n_dense = cfg.n_dense;
  meta.watermark_ms = s.time_ms;
  meta.n_items = n_items;
  meta.item_ids = ids;
  meta.item_cats = cats;
  char path[1024];
  if (mtld_snapshot_write(t, &meta, dir, 1, path, sizeof path, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "bench_topk: %s\n", err);
    return 1;
  }
  mtld_trainer_destroy(t);
  mtld_serving_t *sv;
  if (mtld_serving_open(&sv, dir, err, sizeof err) != 0) {
    fprintf(stderr, "bench_topk: %s\n", err);
    return 1;
  }
  printf("catalog %zu items, K %d, %d requests; model %s, %d tasks, batch 64\n", n_items, k, reqs,
         "mmoe 4 x [64, 32], towers [32], dim 16, attention seq 20", mtld_serving_n_tasks(sv));

  double *lat = malloc(sizeof(double) * (size_t)reqs), *cpu = malloc(sizeof(double) * (size_t)reqs);
  uint64_t *top = malloc(sizeof(uint64_t) * (size_t)k);
  float *sc = malloc(sizeof(float) * (size_t)k), dense[8];
  uint64_t seq[20];
  int n = 0, task = mtld_serving_task_index(sv, "ctcvr");
  if (task < 0) task = 0;
  for (int r = 0; r < reqs; r++) {
    for (int d = 0; d < 8; d++) dense[d] = (float)(rnd() % 1000) / 100.0f;
    for (int j = 0; j < 20; j++) seq[j] = 1 + rnd() % n_items;
    mtld_serving_request_t q = {.user = 1 + rnd() % 50000,
                                .scenario = "search",
                                .n_dense = 8,
                                .dense = dense,
                                .seq_len = 20,
                                .seq_items = seq};
    double a = now_s(), c = cpu_s();
    if (mtld_serving_top_k(sv, &q, task, k, top, sc, &n) != 0 || n != k) return 1;
    lat[r] = (now_s() - a) * 1e3;
    cpu[r] = (cpu_s() - c) * 1e3;
  }
  /* reference: one candidate per call, the same catalog (one request) */
  mtld_serving_request_t q = {.user = 12345,
                              .scenario = "search",
                              .n_dense = 8,
                              .dense = dense,
                              .seq_len = 20,
                              .seq_items = seq};
  float p[MTLD_SERVING_MAX_TASKS];
  double a = now_s(), c = cpu_s();
  for (size_t i = 0; i < n_items; i++) {
    q.item = ids[i];
    q.category = cats[i];
    mtld_serving_score(sv, &q, 1, p, NULL);
  }
  double single = (now_s() - a) * 1e3, single_cpu = (cpu_s() - c) * 1e3;
  qsort(lat, (size_t)reqs, sizeof(double), cmp_d);
  qsort(cpu, (size_t)reqs, sizeof(double), cmp_d);
  printf("top-%d of %zu by %s: median %.1f ms, p90 %.1f ms, min %.1f ms per request "
         "(%.2f us per candidate)\n",
         k, n_items, mtld_serving_task_name(sv, task), lat[reqs / 2], lat[(reqs * 9) / 10], lat[0],
         lat[reqs / 2] * 1e3 / (double)n_items);
  printf("  CPU time (this thread): median %.1f ms, min %.1f ms per request (%.2f us per "
         "candidate)\n",
         cpu[reqs / 2], cpu[0], cpu[reqs / 2] * 1e3 / (double)n_items);
  printf("reference: the same catalog one candidate per call: %.1f ms, CPU %.1f ms (%.2f us per "
         "candidate)\n",
         single, single_cpu, single_cpu * 1e3 / (double)n_items);
  printf("best item of the last request: %llu (%.6f)\n", (unsigned long long)top[0], sc[0]);
  mtld_serving_close(sv);
  if (argc <= 4) mtld_rmtree(dir);
  free(lat);
  free(cpu);
  free(top);
  free(sc);
  free(ids);
  free(cats);
  return 0;
}
