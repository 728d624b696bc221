/* mtld-snapshot-merge - one serving snapshot covering every user from the
 * snapshots of several instances that train one model (README
 * "Scale-out").
 *
 *   mtld-snapshot-merge [--keep N] OUTDIR IN...
 *       IN: a snapshot file or directory (its LATEST).  The shared part
 *       (dense parameters, every table but the user table, the normaliser,
 *       the feature definitions) comes from the newest input (creation
 *       time); each user-table row from the input that used it last (rows
 *       live with their user's partition, so one instance has each user);
 *       the admission sketches (admit_after > 1): the inputs' summed;
 *       source offsets: the furthest per (topic, partition); watermark: the
 *       furthest; item set: the union.  Written to OUTDIR as the next
 *       snapshot-<seq>.mtlds with LATEST, as the daemon writes them; the
 *       readers (libmtld-serving, mtld-score, mtld_reader.py) load it as
 *       any snapshot.  The progressive-validation metrics and training
 *       counters are not merged (the output carries none).
 *   mtld-snapshot-merge --pooled-auc CHECKPOINT_DIR...
 *       the progressive AUCs of the instances' samples together, from
 *       each directory's newest complete checkpoint (trainer.bin): per
 *       binary task "task=ctr n=N auc_cum=X auc_window=Y" (cumulative from
 *       the summed histograms; window: the union of each one's window).
 *   mtld-snapshot-merge --diff A B
 *       prints how far the shared parts of two snapshots are apart:
 *       "max_abs X rel_l2 Y mean_bias_max_abs Z" (L2 norm of the
 *       difference over the L2 norm of A's shared weights; Z: the largest
 *       difference of the regression tasks' output biases, left out of X
 *       and Y: with task.bias "mean", the default, each instance moves that
 *       bias by its own running label mean, trainer/delta.h, so it differs
 *       between instances by design; the snapshot does not say which
 *       regression tasks have a fixed bias).
 *
 * Exit: 0 ok, 1 inputs that cannot be merged (other model configurations
 * or feature definitions) or an I/O error, 2 usage. */
#include <dirent.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durable/snapshot.h"
#include "trainer/train.h"

#define MAX_IN 256

typedef struct {
  mtld_model_t *m;
  mtld_snapshot_info_t info;
} in_t;

static void usage(FILE *out) {
  fprintf(out, "usage: mtld-snapshot-merge [--keep N] OUTDIR IN...\n"
               "       mtld-snapshot-merge --diff A B\n"
               "       mtld-snapshot-merge --pooled-auc CHECKPOINT_DIR...\n"
               "Merges the serving snapshots of instances that train one model (shared part\n"
               "from the newest, each user row from the instance that used it last), or\n"
               "prints the distance of two snapshots' shared parts.\n");
}

static int load(const char *path, in_t *in) {
  char err[512];
  if (mtld_snapshot_load(path, &in->m, &in->info, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "mtld-snapshot-merge: %s: %s\n", path, err);
    return -1;
  }
  return 0;
}

static int same_shape(const in_t *a, const in_t *b, const char *pb) {
  float *pa, *pbb;
  size_t na, nb;
  mtld_model_params(a->m, &pa, &na);
  mtld_model_params(b->m, &pbb, &nb);
  const mtld_model_config_t *ca = mtld_model_config(a->m), *cb = mtld_model_config(b->m);
  int ok = na == nb && ca->n_fields == cb->n_fields && ca->dim == cb->dim &&
           a->info.meta.schema_hash == b->info.meta.schema_hash;
  for (int f = 0; ok && f < ca->n_fields; f++)
    ok = ca->fields[f].rows == cb->fields[f].rows &&
         mtld_model_embed(a->m, f)->seed == mtld_model_embed(b->m, f)->seed;
  if (!ok)
    fprintf(stderr, "mtld-snapshot-merge: %s: another model configuration or feature definitions\n",
            pb);
  return ok;
}

/* The float range of field f's table in the parameter buffer. */
static void table_range(mtld_model_t *m, int f, size_t *lo, size_t *hi) {
  float *p;
  size_t n;
  mtld_model_params(m, &p, &n);
  mtld_embed_t *e = mtld_model_embed(m, f);
  *lo = (size_t)(e->w - p);
  *hi = *lo + (size_t)e->rows * e->dim;
}

/* The parameter indices of the output biases of m's regression tasks (the
 * snapshot does not say which follow their running label mean, task.bias
 * "mean", the default): their count; -1 (said on stderr) when the model
 * to ask cannot be built. */
static int mean_biases(const mtld_model_t *m, size_t idx[MTLD_MAX_TASKS]) {
  mtld_model_config_t c = *mtld_model_config(m);
  for (int t = 0; t < c.n_tasks; t++)
    c.tasks[t].bias_mean = c.tasks[t].type == MTLD_TASK_REGRESSION;
  mtld_model_t *probe = NULL; /* the same layout, asked where those biases are */
  char err[256];
  if (mtld_model_create(&probe, &c, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "mtld-snapshot-merge: %s\n", err);
    return -1;
  }
  int n = 0;
  for (int t = 0; t < c.n_tasks; t++) {
    double mean, sum;
    uint64_t cnt;
    if (mtld_model_label_mean(probe, t, &mean, &sum, &cnt, &idx[n])) n++;
  }
  mtld_model_destroy(probe);
  return n;
}

static int diff(const char *a, const char *b) {
  in_t x = {0}, y = {0};
  if (load(a, &x) || load(b, &y)) return 1;
  if (!same_shape(&x, &y, b)) return 1;
  float *px, *py;
  size_t n;
  mtld_model_params(x.m, &px, &n);
  mtld_model_params(y.m, &py, &n);
  size_t ulo, uhi;
  table_range(x.m, MTLD_FIELD_USER, &ulo, &uhi);
  size_t own[MTLD_MAX_TASKS];
  int n_own = mean_biases(x.m, own);
  if (n_own < 0) {
    mtld_model_destroy(x.m);
    mtld_model_destroy(y.m);
    mtld_snapshot_info_free(&x.info);
    mtld_snapshot_info_free(&y.info);
    return 1;
  }
  double d2 = 0, w2 = 0, mx = 0, bmx = 0;
  for (size_t i = 0; i < n; i++) {
    if (i >= ulo && i < uhi) continue; /* user rows are each instance's own */
    double d = (double)px[i] - py[i];
    int is_own = 0;
    for (int k = 0; k < n_own; k++) is_own |= own[k] == i;
    if (is_own) { /* and so are the biases that follow a running label mean */
      if (fabs(d) > bmx) bmx = fabs(d);
      continue;
    }
    d2 += d * d;
    w2 += (double)px[i] * px[i];
    if (fabs(d) > mx) mx = fabs(d);
  }
  printf("max_abs %.6g rel_l2 %.6g mean_bias_max_abs %.6g\n", mx, w2 > 0 ? sqrt(d2 / w2) : 0.0,
         bmx);
  mtld_model_destroy(x.m);
  mtld_model_destroy(y.m);
  mtld_snapshot_info_free(&x.info);
  mtld_snapshot_info_free(&y.info);
  return 0;
}

/* The newest complete checkpoint's trainer of dir, or NULL. */
static mtld_trainer_t *newest_trainer(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "mtld-snapshot-merge: %s: cannot open\n", dir);
    return NULL;
  }
  char best[256] = "", path[2048];
  struct dirent *de;
  while ((de = readdir(d))) {
    if (strncmp(de->d_name, "checkpoint-", 11) != 0 || strlen(de->d_name) >= sizeof(best)) continue;
    snprintf(path, sizeof(path), "%s/%s/COMPLETE", dir, de->d_name);
    FILE *c = fopen(path, "rb");
    if (!c) continue;
    fclose(c);
    if (strcmp(de->d_name, best) > 0) snprintf(best, sizeof(best), "%s", de->d_name);
  }
  closedir(d);
  if (!best[0]) {
    fprintf(stderr, "mtld-snapshot-merge: %s: no complete checkpoint\n", dir);
    return NULL;
  }
  snprintf(path, sizeof(path), "%s/%s/trainer.bin", dir, best);
  FILE *f = fopen(path, "rb");
  mtld_trainer_t *t = NULL;
  char err[512] = "cannot open";
  if (!f || mtld_trainer_load(&t, f, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "mtld-snapshot-merge: %s: %s\n", path, err);
    t = NULL;
  }
  if (f) fclose(f);
  return t;
}

static int pooled(char **dirs, int n) {
  mtld_trainer_t *t[MAX_IN];
  const mtld_pvmetrics_t *m[MAX_IN];
  for (int i = 0; i < n; i++) {
    t[i] = newest_trainer(dirs[i]);
    if (!t[i]) return 1;
    m[i] = mtld_trainer_metrics(t[i]);
  }
  const mtld_model_config_t *c = mtld_model_config(mtld_trainer_model(t[0]));
  for (int k = 0; k < c->n_tasks; k++) {
    if (c->tasks[k].type == MTLD_TASK_REGRESSION) continue;
    uint64_t ns = 0;
    for (int i = 0; i < n; i++) {
      mtld_pv_summary_t s;
      if (mtld_pvmetrics_get(m[i], k, MTLD_PV_ALL, &s) == MTLD_OK) ns += s.n;
    }
    double cum, win;
    if (mtld_pvmetrics_pooled_auc(m, n, k, &cum, &win) != MTLD_OK) return 1;
    printf("task=%s n=%" PRIu64 " auc_cum=%.4f auc_window=%.4f\n", c->tasks[k].name, ns, cum, win);
  }
  for (int i = 0; i < n; i++) mtld_trainer_destroy(t[i]);
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"keep", required_argument, NULL, 'k'},
                                       {"diff", no_argument, NULL, 'd'},
                                       {"pooled-auc", no_argument, NULL, 'p'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int keep = 5, want_diff = 0, want_pooled = 0, c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'k': keep = atoi(optarg); break;
    case 'd': want_diff = 1; break;
    case 'p': want_pooled = 1; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (want_pooled) {
    if (argc - optind < 1 || argc - optind > MAX_IN) {
      usage(stderr);
      return 2;
    }
    return pooled(argv + optind, argc - optind);
  }
  if (want_diff) {
    if (argc - optind != 2) {
      usage(stderr);
      return 2;
    }
    return diff(argv[optind], argv[optind + 1]);
  }
  int n_in = argc - optind - 1;
  if (n_in < 1 || n_in > MAX_IN || keep < 1) {
    usage(stderr);
    return 2;
  }
  const char *outdir = argv[optind];
  static in_t in[MAX_IN];
  int newest = 0;
  for (int i = 0; i < n_in; i++) {
    if (load(argv[optind + 1 + i], &in[i])) return 1;
    if (i && !same_shape(&in[0], &in[i], argv[optind + 1 + i])) return 1;
    if (in[i].info.meta.created_ms > in[newest].info.meta.created_ms) newest = i;
  }
  char err[512];
  const mtld_model_config_t *cfg = mtld_model_config(in[newest].m);
  mtld_trainer_t *t = NULL;
  if (mtld_trainer_create(&t, cfg, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "mtld-snapshot-merge: %s\n", err);
    return 1;
  }
  mtld_model_t *out = mtld_trainer_model(t);
  /* the shared part: the newest input's parameters, row state, normaliser */
  float *po, *pn;
  size_t n;
  mtld_model_params(out, &po, &n);
  mtld_model_params(in[newest].m, &pn, &n);
  memcpy(po, pn, sizeof(float) * n);
  for (int f = 0; f < cfg->n_fields; f++) {
    mtld_embed_t *eo = mtld_model_embed(out, f), *en = mtld_model_embed(in[newest].m, f);
    memcpy(eo->last_used, en->last_used, sizeof(int64_t) * eo->rows);
    /* admission (count-min sketch, admit_after > 1): every instance counts
     * the ids it saw; sketches add, so the sum (saturated) is what one
     * instance seeing all of them would hold.  Left at zero, no id would
     * be admitted and every lookup of the merged snapshot would miss. */
    if (eo->cms) {
      size_t nc = 2 * (size_t)eo->cms_width;
      for (size_t j = 0; j < nc; j++) {
        uint32_t sum = 0;
        for (int i = 0; i < n_in; i++) {
          const mtld_embed_t *ei = mtld_model_embed(in[i].m, f);
          sum += ei->cms ? ei->cms[j] : 0;
        }
        eo->cms[j] = sum > UINT16_MAX ? UINT16_MAX : (uint16_t)sum;
      }
    }
  }
  uint64_t cnt;
  double mean[MTLD_MAX_DENSE], m2[MTLD_MAX_DENSE];
  mtld_model_normaliser(in[newest].m, &cnt, mean, m2);
  mtld_model_set_normaliser(out, cnt, mean, m2);
  /* user rows: from the input that used each last */
  mtld_embed_t *eu = mtld_model_embed(out, MTLD_FIELD_USER);
  uint64_t users = 0, from_others = 0;
  if (eu) {
    int D = eu->dim;
    for (uint32_t r = 0; r < eu->rows; r++) {
      int best = -1;
      int64_t best_lu = INT64_MIN;
      for (int i = 0; i < n_in; i++) {
        int64_t lu = mtld_model_embed(in[i].m, MTLD_FIELD_USER)->last_used[r];
        if (lu != INT64_MIN && (best < 0 || lu > best_lu)) {
          best = i;
          best_lu = lu;
        }
      }
      if (best < 0) {
        eu->last_used[r] = INT64_MIN;
        memset(eu->w + (size_t)r * D, 0, sizeof(float) * (size_t)D);
        continue;
      }
      users++;
      from_others += best != newest;
      memcpy(eu->w + (size_t)r * D,
             mtld_model_embed(in[best].m, MTLD_FIELD_USER)->w + (size_t)r * D,
             sizeof(float) * (size_t)D);
      eu->last_used[r] = best_lu;
    }
  }
  /* meta: the newest's, offsets and watermark furthest, item set united */
  mtld_snapshot_meta_t meta = in[newest].info.meta;
  size_t n_off = 0, n_items = 0;
  for (int i = 0; i < n_in; i++) {
    n_off += (size_t)in[i].info.meta.n_offsets;
    n_items += in[i].info.meta.n_items;
  }
  mtld_source_offset_t *offs = calloc(n_off ? n_off : 1, sizeof(*offs));
  uint64_t *pairs = calloc(n_items ? 2 * n_items : 2, sizeof(uint64_t));
  uint64_t *ids = calloc(n_items ? n_items : 1, sizeof(uint64_t));
  uint64_t *cats = calloc(n_items ? n_items : 1, sizeof(uint64_t));
  if (!offs || !pairs || !ids || !cats) {
    fprintf(stderr, "mtld-snapshot-merge: out of memory\n");
    return 1;
  }
  int k = 0;
  size_t ni = 0;
  for (int i = 0; i < n_in; i++) {
    const mtld_snapshot_meta_t *mi = &in[i].info.meta;
    if (mi->watermark_ms > meta.watermark_ms) meta.watermark_ms = mi->watermark_ms;
    for (int j = 0; j < mi->n_offsets; j++) {
      int at = -1;
      for (int q = 0; q < k && at < 0; q++)
        if (offs[q].partition == mi->offsets[j].partition &&
            strcmp(offs[q].topic, mi->offsets[j].topic) == 0)
          at = q;
      if (at < 0) {
        offs[k++] = mi->offsets[j];
      } else {
        if (mi->offsets[j].next_offset > offs[at].next_offset)
          offs[at].next_offset = mi->offsets[j].next_offset;
        if (mi->offsets[j].max_time_ms > offs[at].max_time_ms)
          offs[at].max_time_ms = mi->offsets[j].max_time_ms;
      }
    }
    for (size_t j = 0; j < mi->n_items; j++, ni++) {
      pairs[2 * ni] = mi->item_ids[j];
      pairs[2 * ni + 1] = mi->item_cats ? mi->item_cats[j] : 0;
    }
  }
  qsort(pairs, ni, 2 * sizeof(uint64_t), cmp_u64); /* by id (the first of each pair) */
  size_t nu = 0;
  for (size_t j = 0; j < ni; j++) {
    if (nu && ids[nu - 1] == pairs[2 * j]) {
      if (!cats[nu - 1]) cats[nu - 1] = pairs[2 * j + 1];
      continue;
    }
    ids[nu] = pairs[2 * j];
    cats[nu++] = pairs[2 * j + 1];
  }
  meta.n_offsets = k;
  meta.offsets = offs;
  meta.n_items = nu;
  meta.item_ids = ids;
  meta.item_cats = cats;
  char path[MTLD_SNAPSHOT_PATH_MAX];
  mtld_status_t st =
      mtld_snapshot_write(t, &meta, outdir, keep, path, sizeof(path), err, sizeof(err));
  if (st != MTLD_OK) {
    fprintf(stderr, "mtld-snapshot-merge: %s\n", err);
    return 1;
  }
  printf("%s: shared part from %s, %" PRIu64 " user rows (%" PRIu64
         " from the other inputs), %d partitions, %zu items\n",
         path, in[newest].info.path, users, from_others, k, nu);
  free(offs);
  free(pairs);
  free(ids);
  free(cats);
  mtld_trainer_destroy(t);
  for (int i = 0; i < n_in; i++) {
    mtld_model_destroy(in[i].m);
    mtld_snapshot_info_free(&in[i].info);
  }
  return 0;
}
