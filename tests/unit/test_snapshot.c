/* test_snapshot.c - serving snapshots: a snapshot of a trained trainer loads
 * into a model that scores bit for bit like the trainer (every architecture,
 * both embedding optimisers, with and without admission), the header carries
 * what was given, capture is a copy (training on afterwards changes nothing),
 * LATEST and retention, and every kind of damage is refused with
 * MTLD_ERR_CORRUPT and a message naming it.  Also the sample dump format,
 * the item set (round trip, sorted at capture, absent in older files) and
 * top-K (mtld_snapshot_top_k against scoring every item; libmtld-serving's
 * interface over the same file). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "tests/unit/rng.h"
#include "durable/checkpoint.h"
#include "trainer/sampledump.h"
#include "durable/snapshot.h"
#include "common/fs.h"
#include "mtld/serving.h"

/* Impressions and reviews over a few hundred users and items, three
 * scenarios, sequences and dense features; time advances 500 ms a sample. */
static void synth(rng_t *r, mtld_sample_t *s, int i) {
  memset(s, 0, sizeof(*s));
  s->sample_id = (uint64_t)i + 1;
  s->time_ms = 1000000 + (int64_t)i * 500;
  s->weight = 1.0f;
  s->n_fields = 5;
  uint64_t user = 1 + rng_next(r) % 300, item = 1 + rng_next(r) % 150;
  s->fields[MTLD_FIELD_USER] = user;
  s->fields[MTLD_FIELD_ITEM] = item;
  s->fields[MTLD_FIELD_CATEGORY] = 1 + item % 12;
  s->fields[MTLD_FIELD_SCENARIO] = 1 + rng_next(r) % 3;
  s->fields[MTLD_FIELD_POSITION] = 1 + rng_next(r) % 8;
  s->scenario_id = s->fields[MTLD_FIELD_SCENARIO];
  snprintf(s->scenario, sizeof s->scenario, "scen%llu", (unsigned long long)s->scenario_id);
  s->n_dense = 5;
  for (int d = 0; d < 5; d++) s->dense[d] = (float)(rng_unif(r) * (d + 1));
  s->seq_len = (int)(rng_next(r) % 9);
  for (int j = 0; j < s->seq_len; j++) {
    s->seq_items[j] = 1 + rng_next(r) % 150;
    s->seq_cats[j] = 1 + s->seq_items[j] % 12;
  }
  double aff = (double)((user * 7 + item * 3) % 11) / 10.0;
  if (i % 9 == 8) {
    s->kind = MTLD_SAMPLE_REVIEW;
    s->labels[MTLD_LABEL_RATING] = (float)(1 + (int)(aff * 4.0));
    s->label_mask = 1u << MTLD_LABEL_RATING;
  } else {
    s->kind = MTLD_SAMPLE_IMPRESSION;
    int click = rng_unif(r) < 0.1 + 0.5 * aff, buy = click && rng_unif(r) < 0.3;
    s->labels[MTLD_LABEL_CLICK] = (float)click;
    s->labels[MTLD_LABEL_PURCHASE] = (float)buy;
    s->label_mask = 1u << MTLD_LABEL_CLICK | 1u << MTLD_LABEL_PURCHASE;
  }
}

static void small_config(mtld_model_config_t *c) {
  mtld_model_config_default(c);
  uint32_t rows[5] = {512, 256, 32, 8, 16};
  for (int f = 0; f < 5; f++) c->fields[f].rows = rows[f];
  c->dim = 8;
  c->seq_max = 6;
  c->n_dense = 5;
  c->expert_layers[0] = 16;
  c->expert_layers[1] = 8;
  c->tower_layers[0] = 8;
  c->batch_size = 32;
  c->emb.expire_ms = 300000; /* rows of ids unseen for 5 min (event time) expire */
  c->pv_window = 1000;
}

static mtld_trainer_t *trained(const mtld_model_config_t *c, int n, uint64_t seed) {
  mtld_trainer_t *t = NULL;
  char err[256];
  if (mtld_trainer_create(&t, c, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "trainer: %s\n", err);
    return NULL;
  }
  rng_t r = {seed};
  mtld_sample_t s;
  for (int i = 0; i < n; i++) {
    synth(&r, &s, i);
    mtld_trainer_observe(t, &s, NULL);
  }
  return t;
}

static void fill_meta(mtld_snapshot_meta_t *m, mtld_source_offset_t *offs) {
  memset(m, 0, sizeof(*m));
  m->features.n_half_lives = 3;
  m->features.half_life_s[0] = 3600;
  m->features.half_life_s[1] = 86400;
  m->features.half_life_s[2] = 604800;
  m->features.seq_len = 50;
  m->features.prior_strength = 10;
  m->features.ctr_prior = 0.05;
  m->features.cvr_prior = 0.02;
  m->features.cart_prior = 0.05;
  m->schema_hash = 0x1234567890abcdefULL;
  m->n_dense = 45;
  m->features.item_view = 1;
  m->created_ms = 1700000000123;
  m->watermark_ms = 1999999;
  m->join_mode = 1;
  m->negatives_per_positive = 4;
  snprintf(offs[0].topic, sizeof offs[0].topic, "events");
  offs[0].partition = 0;
  offs[0].next_offset = 1234;
  offs[0].max_time_ms = 2000000;
  snprintf(offs[1].topic, sizeof offs[1].topic, "events");
  offs[1].partition = 3;
  offs[1].next_offset = 99;
  offs[1].max_time_ms = 1999000;
  m->n_offsets = 2;
  m->offsets = offs;
}

/* Probe samples: the training stream's ids and new ones (unadmitted), at the
 * training times and later (some rows expired by then). */
static void probe(rng_t *r, mtld_sample_t *s, int i) {
  synth(r, s, i);
  if (i % 5 == 0) s->fields[MTLD_FIELD_USER] = 100000 + (uint64_t)i; /* never seen */
  if (i % 7 == 0) s->time_ms += 400000;                              /* past expiry */
  if (i % 11 == 0) s->fields[MTLD_FIELD_SCENARIO] = 0;               /* falls back to id */
}

/* Scores n probes with both and counts bit-identical results. */
static int same_scores(mtld_trainer_t *t, mtld_model_t *m, int n, uint64_t seed) {
  rng_t r = {seed};
  int T = mtld_model_config(m)->n_tasks, same = 0;
  float p1[MTLD_MAX_TASKS], c1[MTLD_MAX_TASKS], p2[MTLD_MAX_TASKS], c2[MTLD_MAX_TASKS];
  mtld_sample_t s;
  for (int i = 0; i < n; i++) {
    probe(&r, &s, i * 3);
    mtld_trainer_predict(t, &s, p1, c1);
    mtld_snapshot_score(m, &s, 1, p2, c2);
    same +=
        !memcmp(p1, p2, sizeof(float) * (size_t)T) && !memcmp(c1, c2, sizeof(float) * (size_t)T);
  }
  return same;
}

static char tmpdir[256];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mtld-test-snapshot.XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    exit(2);
  }
}

static void test_roundtrip_archs(void) {
  static const int archs[4] = {MTLD_ARCH_MMOE, MTLD_ARCH_PLE, MTLD_ARCH_SHARED_BOTTOM,
                               MTLD_ARCH_SINGLE_TASK};
  char err[512], dir[512], path[1024];
  for (int v = 0; v < 6; v++) {
    mtld_model_config_t c;
    small_config(&c);
    c.arch = archs[v % 4];
    if (v == 4) { /* Adam embeddings, no admission sketch, no category in attention */
      c.emb.optim = MTLD_EMB_ADAM;
      c.emb.admit_after = 1;
      c.category_field = -1;
    }
    if (v == 5) { /* no attention, scenario gate input, tower hidden layer, interactions */
      c.item_field = -1;
      c.scenario_field = -1;
      c.n_tower_layers = 0;
      c.uncertainty_weighting = 1;
      c.interactions = MTLD_INTER_NONE;
    }
    mtld_trainer_t *t = trained(&c, 1500 + 7 * v, 11 + (uint64_t)v);
    CHECK(t != NULL);
    if (!t) continue;
    mtld_source_offset_t offs[2];
    mtld_snapshot_meta_t meta;
    fill_meta(&meta, offs);
    snprintf(dir, sizeof dir, "%s/arch%d", tmpdir, v);
    mtld_status_t st = mtld_snapshot_write(t, &meta, dir, 3, path, sizeof path, err, sizeof err);
    CHECK(st == MTLD_OK);
    if (st != MTLD_OK) fprintf(stderr, "write: %s\n", err);
    mtld_model_t *m = NULL;
    mtld_snapshot_info_t info;
    st = mtld_snapshot_load(dir, &m, &info, err, sizeof err);
    CHECK(st == MTLD_OK);
    if (st != MTLD_OK) {
      fprintf(stderr, "load: %s\n", err);
      mtld_trainer_destroy(t);
      continue;
    }
    int same = same_scores(t, m, 400, 77 + (uint64_t)v);
    CHECK(same == 400);
    if (same != 400) fprintf(stderr, "variant %d: %d/400 bit-identical\n", v, same);
    CHECK(!strcmp(info.path, path));
    CHECK(info.config.arch == c.arch && info.config.batch_size == c.batch_size);
    CHECK(info.config.emb.optim == c.emb.optim && info.config.item_field == c.item_field);
    CHECK(mtld_model_config(m)->batch_size <= MTLD_SNAPSHOT_MAX_BATCH);
    mtld_snapshot_info_free(&info);
    mtld_model_destroy(m);
    mtld_trainer_destroy(t);
  }
}

static void test_header_and_capture(void) {
  char err[512], dir[512], path[1024];
  mtld_model_config_t c;
  small_config(&c);
  mtld_trainer_t *t = trained(&c, 2000, 5);
  CHECK(t != NULL);
  if (!t) return;
  mtld_source_offset_t offs[2];
  mtld_snapshot_meta_t meta;
  fill_meta(&meta, offs);
  snprintf(dir, sizeof dir, "%s/capture", tmpdir);

  /* capture, then keep training: the snapshot is what it was at capture */
  mtld_snapshot_t *snap = NULL;
  CHECK(mtld_snapshot_capture(&snap, t, &meta, err, sizeof err) == MTLD_OK);
  offs[0].next_offset = -5; /* the capture copied the offsets */
  rng_t r = {99};
  mtld_sample_t s;
  enum { NP = 50 };
  float before[NP][MTLD_MAX_TASKS], after[MTLD_MAX_TASKS];
  for (int i = 0; i < NP; i++) {
    probe(&r, &s, i);
    mtld_trainer_predict(t, &s, before[i], NULL);
  }
  mtld_trainer_stats_t stats;
  mtld_trainer_stats(t, &stats);
  mtld_pv_summary_t pv_at_capture;
  CHECK(mtld_pvmetrics_get(mtld_trainer_metrics(t), 0, MTLD_PV_ALL, &pv_at_capture) == MTLD_OK);
  rng_t r2 = {1234};
  for (int i = 0; i < 300; i++) {
    synth(&r2, &s, 5000 + i);
    mtld_trainer_observe(t, &s, NULL);
  }
  CHECK(mtld_snapshot_save(snap, dir, 2, path, sizeof path, err, sizeof err) == MTLD_OK);
  mtld_snapshot_free(snap);
  mtld_model_t *m = NULL;
  mtld_snapshot_info_t info;
  mtld_status_t st = mtld_snapshot_load(path, &m, &info, err, sizeof err);
  CHECK(st == MTLD_OK);
  if (st != MTLD_OK) {
    fprintf(stderr, "load: %s\n", err);
    mtld_trainer_destroy(t);
    return;
  }
  r.s = 99;
  int same = 0, moved = 0;
  for (int i = 0; i < NP; i++) {
    probe(&r, &s, i);
    float p[MTLD_MAX_TASKS];
    mtld_snapshot_score(m, &s, 1, p, NULL);
    mtld_trainer_predict(t, &s, after, NULL);
    same += !memcmp(p, before[i], sizeof(float) * (size_t)c.n_tasks);
    moved += memcmp(after, before[i], sizeof(float) * (size_t)c.n_tasks) != 0;
  }
  CHECK(same == NP);
  CHECK(moved > 0); /* the trainer did change afterwards */

  /* the header carries what was given */
  CHECK(info.format_version == MTLD_SNAPSHOT_VERSION);
  CHECK(!strncmp(info.producer, "mtld ", 5));
  CHECK(info.meta.created_ms == 1700000000123 && info.meta.watermark_ms == 1999999);
  CHECK(info.meta.join_mode == 1 && info.meta.negatives_per_positive == 4);
  CHECK(info.meta.n_offsets == 2);
  if (info.meta.n_offsets == 2) {
    CHECK(!strcmp(info.meta.offsets[0].topic, "events") &&
          info.meta.offsets[0].next_offset == 1234);
    CHECK(info.meta.offsets[1].partition == 3 && info.meta.offsets[1].max_time_ms == 1999000);
  }
  CHECK(info.meta.features.n_half_lives == 3 && info.meta.features.half_life_s[2] == 604800);
  CHECK(info.meta.schema_hash == 0x1234567890abcdefULL);
  CHECK(info.meta.n_dense == 45 && info.meta.features.ctr_prior == 0.05);
  CHECK(info.meta.features.item_view == 1);
  CHECK(info.samples_trained == stats.trained && info.batches == stats.batches);
  CHECK(info.config.n_tasks == 3 && !strcmp(info.config.tasks[1].name, "ctcvr"));
  CHECK(info.config.tasks[1].parent == 0 && info.config.tasks[2].reg_loss == MTLD_REG_MSE);
  CHECK(info.config.fields[0].rows == 512 && info.config.seed == c.seed);
  /* metrics: "all" and the three scenarios for each task, counts adding up */
  int found_all = 0;
  uint64_t scen_sum = 0, all_n = 0;
  for (int i = 0; i < info.n_metrics; i++) {
    if (strcmp(info.metrics[i].task, "ctr")) continue;
    if (!strcmp(info.metrics[i].scenario, "all")) {
      found_all = 1;
      all_n = info.metrics[i].s.n;
      CHECK(info.metrics[i].s.n == pv_at_capture.n);
      CHECK(info.metrics[i].s.auc_window == pv_at_capture.auc_window);
      CHECK(info.metrics[i].s.logloss == pv_at_capture.logloss);
      CHECK(info.metrics[i].s.auc_cum == pv_at_capture.auc_cum);
    } else {
      scen_sum += info.metrics[i].s.n;
    }
  }
  CHECK(found_all && all_n > 0 && scen_sum == all_n);
  CHECK(info.n_metrics == 3 * 4);
  mtld_snapshot_info_free(&info);

  /* batches of samples score like one at a time (within float noise) */
  mtld_sample_t batch[8];
  r.s = 7;
  for (int i = 0; i < 8; i++) probe(&r, &batch[i], i);
  float pb[8 * MTLD_MAX_TASKS], p1[MTLD_MAX_TASKS];
  CHECK(mtld_snapshot_score(m, batch, 8, pb, NULL) == MTLD_OK);
  double maxdiff = 0;
  for (int i = 0; i < 8; i++) {
    mtld_snapshot_score(m, &batch[i], 1, p1, NULL);
    for (int k = 0; k < 3; k++) {
      double d = fabs((double)p1[k] - pb[i * 3 + k]);
      if (d > maxdiff) maxdiff = d;
    }
  }
  CHECK(maxdiff < 1e-5);
  CHECK(mtld_snapshot_score(m, batch, 0, pb, NULL) == MTLD_ERR_INVALID);
  CHECK(mtld_snapshot_score(m, batch, MTLD_SNAPSHOT_MAX_BATCH + 1, pb, NULL) == MTLD_ERR_INVALID);
  mtld_model_destroy(m);
  mtld_trainer_destroy(t);

  /* an untrained trainer's snapshot loads too (no metrics, empty normaliser) */
  mtld_trainer_t *t0 = trained(&c, 0, 1);
  snprintf(dir, sizeof dir, "%s/fresh", tmpdir);
  CHECK(mtld_snapshot_write(t0, &meta, dir, 1, NULL, 0, err, sizeof err) == MTLD_OK);
  CHECK(mtld_snapshot_load(dir, &m, &info, err, sizeof err) == MTLD_OK);
  if (m) {
    CHECK(info.n_metrics == 0 && info.samples_trained == 0);
    CHECK(same_scores(t0, m, 50, 3) == 50);
    mtld_snapshot_info_free(&info);
    mtld_model_destroy(m);
  }
  mtld_trainer_destroy(t0);
}

static int file_exists(const char *dir, const char *name) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  struct stat sb;
  return stat(p, &sb) == 0;
}

static void read_latest(const char *dir, char *out, size_t len) {
  char p[1024];
  snprintf(p, sizeof p, "%s/LATEST", dir);
  FILE *f = fopen(p, "r");
  out[0] = 0;
  if (!f) return;
  if (!fgets(out, (int)len, f)) out[0] = 0;
  fclose(f);
}

static void test_latest_and_keep(void) {
  char err[512], dir[512], path[1024], latest[128];
  mtld_model_config_t c;
  small_config(&c);
  mtld_trainer_t *t = trained(&c, 200, 8);
  mtld_source_offset_t offs[2];
  mtld_snapshot_meta_t meta;
  fill_meta(&meta, offs);
  snprintf(dir, sizeof dir, "%s/keep", tmpdir);
  /* a stale temp file of a crashed writer is cleaned up by the next save */
  mkdir(dir, 0755);
  char stale[1024];
  snprintf(stale, sizeof stale, "%s/.snapshot.tmp.abc123", dir);
  FILE *sf = fopen(stale, "w");
  if (sf) fclose(sf);
  for (int i = 1; i <= 5; i++) {
    meta.watermark_ms = 1000 * i;
    CHECK(mtld_snapshot_write(t, &meta, dir, 3, path, sizeof path, err, sizeof err) == MTLD_OK);
    char want[64];
    snprintf(want, sizeof want, "snapshot-%010d.mtlds", i);
    CHECK(strstr(path, want) != NULL);
    read_latest(dir, latest, sizeof latest);
    char wantl[80];
    snprintf(wantl, sizeof wantl, "%s\n", want);
    CHECK(!strcmp(latest, wantl));
  }
  CHECK(!file_exists(dir, "snapshot-0000000001.mtlds"));
  CHECK(!file_exists(dir, "snapshot-0000000002.mtlds"));
  CHECK(file_exists(dir, "snapshot-0000000003.mtlds"));
  CHECK(file_exists(dir, "snapshot-0000000005.mtlds"));
  CHECK(!file_exists(dir, ".snapshot.tmp.abc123"));
  CHECK(!file_exists(dir, "LATEST.tmp"));
  mtld_model_t *m = NULL;
  mtld_snapshot_info_t info;
  CHECK(mtld_snapshot_load(dir, &m, &info, err, sizeof err) == MTLD_OK);
  CHECK(m && info.meta.watermark_ms == 5000);
  if (m) {
    mtld_snapshot_info_free(&info);
    mtld_model_destroy(m);
  }
  /* resolve: a file is itself; the dir follows LATEST */
  char file[1024];
  CHECK(mtld_snapshot_resolve(path, file, sizeof file, err, sizeof err) == MTLD_OK);
  CHECK(!strcmp(file, path));
  CHECK(mtld_snapshot_resolve(dir, file, sizeof file, err, sizeof err) == MTLD_OK);
  CHECK(!strcmp(file, path));

  /* LATEST naming a missing file */
  char lp[1024];
  snprintf(lp, sizeof lp, "%s/LATEST", dir);
  FILE *f = fopen(lp, "w");
  fputs("snapshot-0000000009.mtlds\n", f);
  fclose(f);
  m = NULL;
  err[0] = 0;
  CHECK(mtld_snapshot_load(dir, &m, NULL, err, sizeof err) == MTLD_ERR_NOTFOUND);
  CHECK(m == NULL && strstr(err, "does not exist") != NULL);
  /* LATEST holding garbage */
  f = fopen(lp, "w");
  fputs("../../etc/passwd\n", f);
  fclose(f);
  CHECK(mtld_snapshot_load(dir, &m, NULL, err, sizeof err) == MTLD_ERR_CORRUPT);
  /* no LATEST, no directory */
  unlink(lp);
  CHECK(mtld_snapshot_load(dir, &m, NULL, err, sizeof err) == MTLD_ERR_NOTFOUND);
  CHECK(strstr(err, "LATEST") != NULL);
  snprintf(lp, sizeof lp, "%s/nonexistent", tmpdir);
  CHECK(mtld_snapshot_load(lp, &m, NULL, err, sizeof err) == MTLD_ERR_NOTFOUND);
  mtld_trainer_destroy(t);
}

/* Loads a damaged image: expects MTLD_ERR_CORRUPT with `what` in the message. */
static void expect_corrupt(const unsigned char *buf, size_t len, const char *what) {
  char err[512] = "";
  mtld_model_t *m = NULL;
  mtld_snapshot_info_t info;
  mtld_status_t st = mtld_snapshot_load_mem(buf, len, &m, &info, err, sizeof err);
  CHECK(st == MTLD_ERR_CORRUPT);
  CHECK(m == NULL);
  CHECK(strstr(err, what) != NULL);
  if (st != MTLD_ERR_CORRUPT || !strstr(err, what))
    fprintf(stderr, "expected \"%s\", got %d: %s\n", what, (int)st, err);
  if (m) {
    mtld_snapshot_info_free(&info);
    mtld_model_destroy(m);
  }
}

static void test_corruption(void) {
  char err[512];
  mtld_model_config_t c;
  small_config(&c);
  mtld_trainer_t *t = trained(&c, 300, 4);
  mtld_source_offset_t offs[2];
  mtld_snapshot_meta_t meta;
  fill_meta(&meta, offs);
  mtld_snapshot_t *snap = NULL;
  CHECK(mtld_snapshot_capture(&snap, t, &meta, err, sizeof err) == MTLD_OK);
  void *img = NULL;
  size_t len = 0;
  CHECK(mtld_snapshot_encode(snap, &img, &len, err, sizeof err) == MTLD_OK);
  mtld_snapshot_free(snap);
  unsigned char *b = img, *d = malloc(len + 1);
  if (!b || !d) {
    CHECK(0);
    free(img);
    free(d);
    mtld_trainer_destroy(t);
    return;
  }
  /* the intact image loads */
  mtld_model_t *m = NULL;
  CHECK(mtld_snapshot_load_mem(b, len, &m, NULL, err, sizeof err) == MTLD_OK);
  mtld_model_destroy(m);
  CHECK(len % 64 == 8);
  uint32_t hlen;
  memcpy(&hlen, b + 12, 4);
  size_t start = (16 + hlen + 63) & ~(size_t)63;

  memcpy(d, b, len);
  expect_corrupt(d, len - 1000, "truncated");
  expect_corrupt(d, 20, "too short");
  memcpy(d, b, len);
  d[len] = 0;
  expect_corrupt(d, len + 1, "after the trailer");
  memcpy(d, b, len);
  d[start + 5] ^= 0x40; /* in the first tensor */
  expect_corrupt(d, len, "checksum mismatch");
  expect_corrupt(d, len, "tensor expert0.l0.w");
  memcpy(d, b, len);
  d[len - 9] ^= 1; /* last payload byte: inside a tensor or its padding */
  expect_corrupt(d, len, "checksum mismatch");
  memcpy(d, b, len);
  d[len - 3] ^= 1; /* the trailer itself */
  expect_corrupt(d, len, "file checksum mismatch");
  memcpy(d, b, len);
  d[16 + hlen / 2] ^= 0x01; /* a header byte */
  expect_corrupt(d, len, "snapshot: ");
  memcpy(d, b, len);
  d[0] = 'X';
  expect_corrupt(d, len, "bad magic");
  memcpy(d, b, len);
  uint32_t v2 = 2;
  memcpy(d + 8, &v2, 4);
  expect_corrupt(d, len, "format version 2");
  memcpy(d, b, len);
  uint32_t huge = 0x7fffffff;
  memcpy(d + 12, &huge, 4);
  expect_corrupt(d, len, "header length");
  /* every single-byte flip across the whole image is caught (sampled) */
  int caught = 0, tries = 0;
  for (size_t pos = 0; pos < len; pos += len / 97 + 1, tries++) {
    memcpy(d, b, len);
    d[pos] ^= 0x10;
    m = NULL;
    mtld_status_t st = mtld_snapshot_load_mem(d, len, &m, NULL, err, sizeof err);
    caught += st == MTLD_ERR_CORRUPT;
    mtld_model_destroy(m);
  }
  CHECK(caught == tries);

  /* the file reader names the file */
  char path[1024];
  snprintf(path, sizeof path, "%s/damaged.mtlds", tmpdir);
  FILE *f = fopen(path, "wb");
  memcpy(d, b, len);
  d[start + 5] ^= 0x40;
  fwrite(d, 1, len, f);
  fclose(f);
  CHECK(mtld_snapshot_load(path, &m, NULL, err, sizeof err) == MTLD_ERR_CORRUPT);
  CHECK(strstr(err, "damaged.mtlds") != NULL);
  free(d);
  free(img);
  mtld_trainer_destroy(t);
}

static void test_sampledump(void) {
  char path[1024], err[256];
  snprintf(path, sizeof path, "%s/samples.bin", tmpdir);
  FILE *f = fopen(path, "wb");
  CHECK(mtld_sampledump_write_header(f) == MTLD_OK);
  rng_t r = {3};
  mtld_sample_t s[3], x;
  for (int i = 0; i < 3; i++) {
    synth(&r, &s[i], i);
    CHECK(mtld_sampledump_write(f, &s[i]) == MTLD_OK);
  }
  fwrite("partial", 1, 7, f); /* a record cut short by a crash */
  fclose(f);
  f = fopen(path, "rb");
  CHECK(mtld_sampledump_read_header(f, err, sizeof err) == MTLD_OK);
  int n = 0;
  while (mtld_sampledump_read(f, &x) == 1) n += !memcmp(&x, &s[n < 3 ? n : 2], sizeof x);
  CHECK(n == 3);
  fclose(f);
  size_t nl = 0;
  mtld_sample_t *all = mtld_sampledump_load(path, &nl, err, sizeof err);
  CHECK(all != NULL && nl == 3 && !memcmp(all, s, sizeof s));
  free(all);
  f = fopen(path, "r+b");
  fseek(f, 12, SEEK_SET);
  uint32_t bad = 12;
  fwrite(&bad, 4, 1, f);
  rewind(f);
  CHECK(mtld_sampledump_read_header(f, err, sizeof err) == MTLD_ERR_CORRUPT);
  CHECK(strstr(err, "12-byte") != NULL);
  fclose(f);
  CHECK(mtld_sampledump_load(path, &nl, err, sizeof err) == NULL && nl == 0);
  CHECK(strstr(err, "samples.bin") != NULL && strstr(err, "12-byte") != NULL);
}

static int cmp_rank(const void *a, const void *b) {
  const mtld_snapshot_ranked_t *x = a, *y = b;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  return x->item < y->item ? -1 : x->item > y->item;
}

static void test_items_and_top_k(void) {
  mtld_model_config_t c;
  small_config(&c);
  mtld_trainer_t *t = trained(&c, 3000, 21);
  CHECK(t != NULL);
  if (!t) return;
  char err[512], dir[512], path[1024];
  mtld_source_offset_t offs[2];
  mtld_snapshot_meta_t meta;
  fill_meta(&meta, offs);
  /* the item set given out of order with a duplicate: capture sorts it */
  enum { N = 150 };
  uint64_t ids[N + 1], cats[N + 1];
  for (int i = 0; i < N; i++) ids[i] = (uint64_t)(N - i), cats[i] = 1 + (uint64_t)(N - i) % 12;
  ids[N] = 7, cats[N] = 1 + 7 % 12;
  meta.n_items = N + 1;
  meta.item_ids = ids;
  meta.item_cats = cats;
  snprintf(dir, sizeof dir, "%s/items", tmpdir);
  CHECK(mtld_snapshot_write(t, &meta, dir, 1, path, sizeof path, err, sizeof err) == MTLD_OK);
  mtld_model_t *m = NULL;
  mtld_snapshot_info_t info;
  CHECK(mtld_snapshot_load(dir, &m, &info, err, sizeof err) == MTLD_OK);
  if (!m) return;
  CHECK(info.meta.n_items == N);
  int asc = 1;
  for (int i = 0; i < N && info.meta.item_ids; i++)
    asc &= info.meta.item_ids[i] == (uint64_t)i + 1 &&
           info.meta.item_cats[i] == 1 + ((uint64_t)i + 1) % 12;
  CHECK(asc && info.meta.item_ids);

  /* top-K = every item scored in the same batches, sorted */
  rng_t r = {5};
  mtld_sample_t tmpl, batch[32];
  probe(&r, &tmpl, 3);
  mtld_snapshot_ranked_t top[N + 5], all[N];
  int n = 0, bs = mtld_model_config(m)->batch_size;
  CHECK(bs == 32);
  for (int task = 0; task < 3; task++) {
    CHECK(mtld_snapshot_top_k(m, &tmpl, info.meta.item_ids, info.meta.item_cats, N, task, 10, NULL,
                              NULL, top, &n) == MTLD_OK);
    CHECK(n == 10);
    for (int i0 = 0; i0 < N; i0 += bs) {
      int nb = N - i0 < bs ? N - i0 : bs;
      float p[32 * MTLD_MAX_TASKS];
      for (int j = 0; j < nb; j++) {
        batch[j] = tmpl;
        batch[j].fields[MTLD_FIELD_ITEM] = info.meta.item_ids[i0 + j];
        batch[j].fields[MTLD_FIELD_CATEGORY] = info.meta.item_cats[i0 + j];
      }
      CHECK(mtld_snapshot_score(m, batch, nb, p, NULL) == MTLD_OK);
      for (int j = 0; j < nb; j++)
        all[i0 + j] = (mtld_snapshot_ranked_t){info.meta.item_ids[i0 + j],
                                               info.meta.item_cats[i0 + j], p[j * 3 + task]};
    }
    qsort(all, N, sizeof all[0], cmp_rank);
    int same = 0;
    for (int i = 0; i < n; i++)
      same += top[i].item == all[i].item && top[i].score == all[i].score &&
              top[i].category == all[i].category;
    CHECK(same == 10);
  }
  /* k beyond the catalog: all of it; bad k or task refused */
  CHECK(mtld_snapshot_top_k(m, &tmpl, info.meta.item_ids, NULL, N, 0, N + 5, NULL, NULL, top, &n) ==
        MTLD_OK);
  CHECK(n == N && top[0].score >= top[N - 1].score && top[0].category == 0);
  CHECK(mtld_snapshot_top_k(m, &tmpl, info.meta.item_ids, NULL, N, 0, 0, NULL, NULL, top, &n) ==
        MTLD_ERR_INVALID);
  CHECK(mtld_snapshot_top_k(m, &tmpl, info.meta.item_ids, NULL, N, 3, 5, NULL, NULL, top, &n) ==
        MTLD_ERR_INVALID);
  mtld_model_destroy(m);
  mtld_snapshot_info_free(&info);
  CHECK(info.meta.item_ids == NULL);

  /* libmtld-serving over the same file */
  mtld_serving_t *sv = NULL;
  CHECK(mtld_serving_open(&sv, dir, err, sizeof err) == 0);
  if (sv) {
    CHECK(mtld_serving_n_items(sv) == N && mtld_serving_n_tasks(sv) == 3);
    CHECK(mtld_serving_task_index(sv, "ctcvr") == 1 && mtld_serving_task_is_esmm(sv, 1));
    CHECK(mtld_serving_task_name(sv, 3) == NULL && mtld_serving_task_index(sv, "x") == -1);
    CHECK(!strcmp(mtld_serving_path(sv), path));
    CHECK(mtld_serving_watermark_ms(sv) == meta.watermark_ms);
    mtld_serving_request_t q = {.user = 17, .scenario = "scen2"};
    uint64_t it[200];
    float sc[200];
    CHECK(mtld_serving_top_k(sv, &q, 1, 200, it, sc, &n) == 0 && n == N);
    /* the best item scored on its own: equal up to float rounding */
    mtld_serving_request_t one = q;
    one.item = it[0];
    one.category = 1 + it[0] % 12;
    float p[MTLD_SERVING_MAX_TASKS], pc[MTLD_SERVING_MAX_TASKS];
    CHECK(mtld_serving_score(sv, &one, 1, p, pc) == 0);
    CHECK(p[1] > sc[0] - 1e-6f && p[1] < sc[0] + 1e-6f);
    /* more candidates than a batch: scored in batches */
    mtld_serving_request_t many[100];
    float pm[100 * MTLD_SERVING_MAX_TASKS];
    for (int i = 0; i < 100; i++) many[i] = q, many[i].item = (uint64_t)i + 1;
    CHECK(mtld_serving_score(sv, many, 100, pm, NULL) == 0);
    CHECK(pm[0] > 0 && pm[0] < 1);
    mtld_serving_request_t bad = q;
    bad.scenario = "a scenario name longer than thirty-one bytes";
    CHECK(mtld_serving_score(sv, &bad, 1, p, NULL) == MTLD_SERVING_ERR_INVALID);
    CHECK(mtld_serving_top_k(sv, &q, 0, 0, it, sc, &n) == MTLD_SERVING_ERR_INVALID);
    CHECK(mtld_serving_key("a") == mtld_serving_key("a") && mtld_serving_key("") != 0);
    mtld_serving_close(sv);
  }
  CHECK(mtld_serving_open(&sv, "/nonexistent/mtld", err, sizeof err) == MTLD_SERVING_ERR_NOTFOUND);
  CHECK(sv == NULL);

  /* no item set (as files written before it existed): loads, none */
  meta.n_items = 0;
  meta.item_ids = meta.item_cats = NULL;
  CHECK(mtld_snapshot_write(t, &meta, dir, 1, NULL, 0, err, sizeof err) == MTLD_OK);
  CHECK(mtld_serving_open(&sv, dir, err, sizeof err) == 0);
  if (sv) {
    mtld_serving_request_t q = {.user = 17};
    uint64_t it[5];
    CHECK(mtld_serving_n_items(sv) == 0);
    CHECK(mtld_serving_top_k(sv, &q, 0, 5, it, NULL, &n) == MTLD_SERVING_ERR_NOTFOUND && n == 0);
    mtld_serving_close(sv);
  }
  mtld_trainer_destroy(t);
}

/* Declared attributes: the header lists them, the load checks them against
 * the model, and libmtld-serving scores requests' attributes exactly as a
 * sample laid out by hand (categorical -> field 6, numeric -> dense after
 * the features), defaults included. */
static void test_serving_attrs(void) {
  char dir[320], err[512];
  snprintf(dir, sizeof dir, "%s/attrs", tmpdir);
  mtld_model_config_t c;
  small_config(&c);
  c.n_fields = MTLD_FIELD_EXTRA + 1;
  snprintf(c.fields[6].name, MTLD_NAME_MAX, "brand");
  c.fields[6].rows = 16;
  c.n_dense = 6;
  mtld_trainer_t *t = NULL;
  CHECK(mtld_trainer_create(&t, &c, err, sizeof err) == MTLD_OK);
  if (!t) return;
  rng_t r = {77};
  mtld_sample_t smp;
  char b[8];
  for (int i = 0; i < 3000; i++) {
    synth(&r, &smp, i);
    snprintf(b, sizeof b, "b%d", (int)(smp.fields[MTLD_FIELD_ITEM] % 5));
    smp.n_fields = 7;
    smp.fields[6] = mtld_hash_id(b, strlen(b));
    smp.n_dense = 6;
    smp.dense[5] = (float)rng_unif(&r);
    mtld_trainer_observe(t, &smp, NULL);
  }
  mtld_source_offset_t offs[2];
  mtld_snapshot_meta_t meta;
  fill_meta(&meta, offs);
  meta.n_dense = 5;
  mtld_attr_def_set(&meta.features.attrs[0], "discount", MTLD_ATTR_CONTEXT, MTLD_ATTR_NUMERIC, 0,
                    NULL, 0.25);
  mtld_attr_def_set(&meta.features.attrs[1], "brand", MTLD_ATTR_ITEM, MTLD_ATTR_CATEGORICAL, 16,
                    "none", 0);
  meta.features.n_attrs = 2;
  uint64_t items[20], cats[20];
  for (int i = 0; i < 20; i++) items[i] = (uint64_t)i + 1, cats[i] = 1 + items[i] % 12;
  meta.n_items = 20;
  meta.item_ids = items;
  meta.item_cats = cats;
  CHECK(mtld_snapshot_write(t, &meta, dir, 1, NULL, 0, err, sizeof err) == MTLD_OK);
  mtld_serving_t *sv = NULL;
  CHECK(mtld_serving_open(&sv, dir, err, sizeof err) == 0);
  if (sv) {
    CHECK(mtld_serving_n_attrs(sv) == 2 && !strcmp(mtld_serving_attr_name(sv, 1), "brand") &&
          mtld_serving_attr_is_numeric(sv, 0) == 1 && mtld_serving_attr_is_numeric(sv, 1) == 0 &&
          mtld_serving_attr_name(sv, 2) == NULL && mtld_serving_attr_is_numeric(sv, -1) == -1);
    mtld_model_t *m = NULL;
    mtld_snapshot_info_t info;
    CHECK(mtld_snapshot_load(dir, &m, &info, err, sizeof err) == MTLD_OK);
    mtld_serving_request_t q = {.user = 17, .item = 3, .category = 4, .scenario = "scen2"};
    mtld_serving_attr_t av[2] = {{.name = "brand", .str = "b3"}, {.name = "discount", .num = 0.7}};
    mtld_serving_attrs_t a = {2, av}, none = {0, NULL};
    float p[MTLD_SERVING_MAX_TASKS], want[MTLD_SERVING_MAX_TASKS];
    /* by hand */
    mtld_sample_t x;
    memset(&x, 0, sizeof x);
    x.time_ms = meta.watermark_ms;
    x.kind = MTLD_SAMPLE_IMPRESSION;
    x.weight = 1;
    x.n_fields = 7;
    x.fields[MTLD_FIELD_USER] = 17;
    x.fields[MTLD_FIELD_ITEM] = 3;
    x.fields[MTLD_FIELD_CATEGORY] = 4;
    x.scenario_id = mtld_hash_id("scen2", 5);
    x.fields[MTLD_FIELD_SCENARIO] = x.scenario_id;
    x.fields[MTLD_FIELD_HOUR] = mtld_sample_hour_id(x.time_ms);
    strcpy(x.scenario, "scen2");
    x.n_dense = 6;
    x.fields[6] = mtld_hash_id("b3", 2);
    x.dense[5] = 0.7f;
    CHECK(m && mtld_snapshot_score(m, &x, 1, want, NULL) == MTLD_OK);
    CHECK(mtld_serving_score_attrs(sv, &q, &a, 1, p, NULL) == 0);
    CHECK(memcmp(p, want, sizeof(float) * 3) == 0);
    /* absent: the defaults */
    x.fields[6] = mtld_hash_id("none", 4);
    x.dense[5] = 0.25f;
    CHECK(mtld_snapshot_score(m, &x, 1, want, NULL) == MTLD_OK);
    CHECK(mtld_serving_score_attrs(sv, &q, &none, 1, p, NULL) == 0 &&
          memcmp(p, want, sizeof(float) * 3) == 0);
    CHECK(mtld_serving_score(sv, &q, 1, p, NULL) == 0 && memcmp(p, want, sizeof(float) * 3) == 0);
    /* the wrong kind is ignored (default), undeclared names too */
    mtld_serving_attr_t wrong[2] = {{.name = "brand", .num = 3}, {.name = "colour", .str = "red"}};
    mtld_serving_attrs_t w = {2, wrong};
    CHECK(mtld_serving_score_attrs(sv, &q, &w, 1, p, NULL) == 0 &&
          memcmp(p, want, sizeof(float) * 3) == 0);
    /* invalid */
    mtld_serving_attr_t nan_attr = {.name = "discount", .num = NAN};
    mtld_serving_attrs_t bad = {1, &nan_attr};
    CHECK(mtld_serving_score_attrs(sv, &q, &bad, 1, p, NULL) == MTLD_SERVING_ERR_INVALID);
    bad.n = 17;
    CHECK(mtld_serving_score_attrs(sv, &q, &bad, 1, p, NULL) == MTLD_SERVING_ERR_INVALID);
    /* top-K: the request's item attributes do not follow the candidates */
    uint64_t it1[5], it2[5];
    float s1[5], s2[5];
    int n1 = 0, n2 = 0;
    mtld_serving_attr_t disc = {.name = "discount", .num = 0.7};
    mtld_serving_attrs_t only_disc = {1, &disc};
    CHECK(mtld_serving_top_k_attrs(sv, &q, &a, 0, 5, it1, s1, &n1) == 0 && n1 == 5);
    CHECK(mtld_serving_top_k_attrs(sv, &q, &only_disc, 0, 5, it2, s2, &n2) == 0 && n2 == 5);
    CHECK(memcmp(it1, it2, sizeof it1) == 0 && memcmp(s1, s2, sizeof s1) == 0);
    mtld_model_destroy(m);
    mtld_snapshot_info_free(&info);
    mtld_serving_close(sv);
  }
  /* attributes that do not match the model are refused on load */
  mtld_attr_def_set(&meta.features.attrs[1], "brand", MTLD_ATTR_ITEM, MTLD_ATTR_CATEGORICAL, 17,
                    "none", 0);
  CHECK(mtld_snapshot_write(t, &meta, dir, 1, NULL, 0, err, sizeof err) == MTLD_OK);
  mtld_model_t *m2 = NULL;
  CHECK(mtld_snapshot_load(dir, &m2, NULL, err, sizeof err) != MTLD_OK &&
        strstr(err, "bad attributes"));
  mtld_trainer_destroy(t);
}

int main(void) {
  make_tmpdir();
  test_roundtrip_archs();
  test_header_and_capture();
  test_latest_and_keep();
  test_corruption();
  test_sampledump();
  test_items_and_top_k();
  test_serving_attrs();
  mtld_rmtree(tmpdir);
  return CHECK_DONE();
}
