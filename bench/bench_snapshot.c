/* bench_snapshot.c - serving snapshot write time and the ingestion stall it
 * causes, for a model whose user table has 2^22 rows x 16 (the size),
 * and a checkpoint's trainer state copy (mtld_trainer_resave_mem, its buffer recycled
 * between checkpoints as the daemon does) for the same model.
 *
 * The daemon captures a snapshot on its main thread (a copy of weights and
 * row state: the stall) and writes it on a worker thread (checksums, header,
 * fsync, rename: the write time).  Reference in the same run: a plain
 * memcpy of the parameter buffer (the floor any capture must pay).
 *   usage: bench_snapshot [DIR (default: a temp dir)] [rows_log2 (22)] */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "durable/snapshot.h"
#include "trainer/train.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  char tmpl[] = "/tmp/mtld-bench-snap.XXXXXX";
  const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
  int lg = argc > 2 ? atoi(argv[2]) : 22;
  char err[512];
  mtld_model_config_t cfg;
  mtld_model_config_default(&cfg);
  cfg.dim = 16;
  cfg.fields[0].rows = 1u << lg; /* user */
  cfg.fields[1].rows = 1u << 20; /* item */
  mtld_trainer_t *t;
  if (mtld_trainer_create(&t, &cfg, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "bench_snapshot: %s\n", err);
    return 1;
  }
  /* touch some rows so the tables are not all zero pages */
  mtld_sample_t s;
  memset(&s, 0, sizeof(s));
  s.kind = MTLD_SAMPLE_IMPRESSION;
  s.weight = 1;
  s.n_fields = cfg.n_fields;
  s.n_dense = cfg.n_dense;
  s.label_mask = 1u << MTLD_LABEL_CLICK;
  for (int i = 0; i < 20000; i++) {
    s.sample_id = (uint64_t)i + 1;
    s.time_ms = 1700000000000LL + i;
    for (int f = 0; f < cfg.n_fields; f++) s.fields[f] = (uint64_t)(i * 7919 + f) % 5000000 + 1;
    s.labels[MTLD_LABEL_CLICK] = (float)(i % 9 == 0);
    mtld_trainer_observe(t, &s, NULL);
  }
  float *params;
  size_t n;
  mtld_trainer_params(t, &params, &n);
  double mb = (double)n * sizeof(float) / (1 << 20);
  printf("model: %zu parameters (%.0f MiB), user table 2^%d x %d\n", n, mb, lg, cfg.dim);

  enum { R = 5 };
  double copy[R], cap[R], save[R], ck[R];
  float *dst = malloc(n * sizeof(float));
  mtld_snapshot_meta_t meta;
  memset(&meta, 0, sizeof(meta));
  mtld_snapshot_t *snap = NULL; /* recycled between captures, as the daemon does */
  double first_cap = 0, first_ck = 0;
  void *ckbuf = NULL; /* the checkpoint's trainer state, recycled likewise */
  size_t ckcap = 0;
  for (int r = 0; r < R; r++) {
    double t0 = now_s();
    memcpy(dst, params, n * sizeof(float));
    copy[r] = now_s() - t0;
    t0 = now_s();
    if (mtld_snapshot_recapture(&snap, t, &meta, err, sizeof(err)) != MTLD_OK) {
      fprintf(stderr, "capture: %s\n", err);
      return 1;
    }
    cap[r] = now_s() - t0;
    if (r == 0) first_cap = cap[r];
    t0 = now_s();
    if (mtld_snapshot_save(snap, dir, 2, NULL, 0, err, sizeof(err)) != MTLD_OK) {
      fprintf(stderr, "save: %s\n", err);
      return 1;
    }
    save[r] = now_s() - t0;
    size_t len;
    t0 = now_s();
    if (mtld_trainer_resave_mem(t, &ckbuf, &len, &ckcap, err, sizeof(err)) != MTLD_OK) {
      fprintf(stderr, "save_mem: %s\n", err);
      return 1;
    }
    ck[r] = now_s() - t0;
    if (r == 0) first_ck = ck[r];
  }
  free(ckbuf);
  mtld_snapshot_free(snap);
  qsort(copy, R, sizeof(double), cmp_d);
  qsort(cap, R, sizeof(double), cmp_d);
  qsort(save, R, sizeof(double), cmp_d);
  qsort(ck, R, sizeof(double), cmp_d);
  printf("median of %d:\n", R);
  printf("  memcpy of the parameters (reference)   %8.1f ms\n", copy[R / 2] * 1e3);
  printf("  snapshot capture = ingestion stall     %8.1f ms  (%.2fx the memcpy)\n",
         cap[R / 2] * 1e3, cap[R / 2] / copy[R / 2]);
  printf("  first capture (buffers allocated)      %8.1f ms\n", first_cap * 1e3);
  printf("  snapshot write (worker thread, fsync)  %8.1f ms\n", save[R / 2] * 1e3);
  printf("  checkpoint trainer state copy (stall)  %8.1f ms  (%.2fx the memcpy; buffer recycled)\n",
         ck[R / 2] * 1e3, ck[R / 2] / copy[R / 2]);
  printf("  first checkpoint copy (buffer grown)   %8.1f ms\n", first_ck * 1e3);
  printf("goals: write <= 1000 ms: %s; stall <= 50 ms: %s\n", save[R / 2] <= 1.0 ? "met" : "MISSED",
         cap[R / 2] <= 0.050 ? "met" : "MISSED");
  free(dst);
  mtld_trainer_destroy(t);
  if (argc <= 1) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  }
  return 0;
}
