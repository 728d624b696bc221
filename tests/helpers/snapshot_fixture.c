/* snapshot_fixture.c - test data for the snapshot readers
 * (tests/integration/test_readers.sh): trains a small trainer on a synthetic
 * stream, writes a serving snapshot, a sample dump of probe samples (edge
 * cases included: unseen and expired ids, missing fields, NaN dense values,
 * sequences longer than the model reads), and the trainer's own predictions
 * for them in mtld-score's output format.
 *
 * usage: snapshot_fixture OUTDIR VARIANT
 *   VARIANT 0 mmoe, 1 ple, 2 shared_bottom, 3 single_task, 4 mmoe with Adam
 *   embeddings and no admission sketch, 5 without attention, scenario gate and
 *   interactions,
 *   (variants 0-4 record the item set 1..200 the synthetic stream draws
 *   from, variant 5 none, as files written before the item set existed)
 *   6 "store": events go through a feature store (OUTDIR/store) and samples
 *   are built from its features with mtld_sample_from_features, as the
 *   joiner builds them; the snapshot records the store's feature definitions.
 *   7 mmoe with a fourth task, review, an ESMM task chained on ctcvr (the
 *   samples carry the review label).
 *   8 "store" with declared attributes (features.attributes): user, item and
 *   context ones, categorical and numeric, on the events; candidates.jsonl
 *   lines carry the context attribute ("attrs").
 * writes OUTDIR/snapshots/ (LATEST + file), OUTDIR/samples.bin,
 * OUTDIR/expected.txt; variants 6 and 8 also OUTDIR/snapshots-otherdef (the same
 * model recording other feature definitions), OUTDIR/candidates.jsonl (one candidate
 * per line) and OUTDIR/expected_store.txt (the trainer's predictions for them
 * from the store's current features, as mtld-score --store prints them).
 * Exit 0 on success. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/joiner.h"
#include "features/store.h"
#include "trainer/sampledump.h"
#include "durable/snapshot.h"

static uint64_t rs = 0x2545f4914f6cdd1dULL;

static uint64_t rnd(void) {
  rs ^= rs << 13;
  rs ^= rs >> 7;
  rs ^= rs << 17;
  return rs;
}

static double unif(void) {
  return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0);
}

#define MAX_ITEMS 4096

typedef struct {
  uint64_t ids[MAX_ITEMS], cats[MAX_ITEMS];
  size_t n;
} item_set_t;

static int add_item(void *ctx, uint64_t id, const mtld_item_features_t *f) {
  item_set_t *s = ctx;
  if (s->n == MAX_ITEMS) return 1;
  s->ids[s->n] = id;
  s->cats[s->n++] = f->category_id;
  return 0;
}

static int with_review; /* variant 7: impressions carry the review label */

static void synth(mtld_sample_t *s, int i) {
  memset(s, 0, sizeof(*s));
  s->sample_id = 1000 + (uint64_t)i;
  s->time_ms = 1700000000000LL + (int64_t)i * 700;
  s->weight = 1.0f;
  s->n_fields = 5;
  uint64_t user = 1 + rnd() % 400, item = 1 + rnd() % 200;
  s->fields[0] = user * 0x9e3779b97f4a7c15ULL; /* spread like hashed ids */
  s->fields[1] = item;
  s->fields[2] = 1 + item % 15;
  s->scenario_id = 11 + rnd() % 3;
  s->fields[3] = s->scenario_id;
  s->fields[4] = 1 + rnd() % 6;
  snprintf(s->scenario, sizeof s->scenario, "sc%" PRIu64, s->scenario_id);
  s->n_dense = 6;
  for (int d = 0; d < 6; d++) s->dense[d] = (float)(unif() * 3.0 * (d + 1) + (double)(item % 5));
  s->seq_len = (int)(rnd() % 10);
  for (int j = 0; j < s->seq_len; j++) {
    s->seq_items[j] = 1 + rnd() % 200;
    s->seq_cats[j] = 1 + s->seq_items[j] % 15;
  }
  double aff = (double)((user * 5 + item * 3) % 13) / 12.0;
  if (i % 8 == 7) {
    s->kind = MTLD_SAMPLE_REVIEW;
    s->labels[MTLD_LABEL_RATING] = (float)(1 + (int)(aff * 4.0));
    s->label_mask = 1u << MTLD_LABEL_RATING;
  } else {
    s->kind = MTLD_SAMPLE_IMPRESSION;
    int click = unif() < 0.05 + 0.6 * aff, buy = click && unif() < 0.4 * aff;
    s->labels[MTLD_LABEL_CLICK] = (float)click;
    s->labels[MTLD_LABEL_PURCHASE] = (float)buy;
    s->label_mask = 1u << MTLD_LABEL_CLICK | 1u << MTLD_LABEL_PURCHASE;
    if (with_review) { /* no extra draws */
      s->labels[MTLD_LABEL_REVIEW] = (float)(buy && i % 3 == 0);
      s->label_mask |= 1u << MTLD_LABEL_REVIEW;
    }
  }
}

/* Probes: like training samples, plus the edge cases a reader must get right. */
static void probe(mtld_sample_t *s, int i, int64_t t_end) {
  synth(s, 100000 + i);
  s->time_ms = t_end - (int64_t)(rnd() % 600000);
  switch (i % 12) {
  case 1: s->fields[0] = 0xdeadbeef00000000ULL + (uint64_t)i; break; /* never seen */
  case 2: s->time_ms = t_end + 3600000; break;                       /* rows expired */
  case 3: s->fields[3] = 0; break;                                   /* scenario from id */
  case 4: s->n_fields = 2; break;                                    /* fields missing */
  case 5:
    s->dense[1] = NAN;
    s->dense[2] = INFINITY;
    s->n_dense = 4; /* and fewer than the model reads */
    break;
  case 6:
    s->seq_len = MTLD_MAX_SAMPLE_SEQ; /* longer than seq_max */
    for (int j = 0; j < s->seq_len; j++) {
      s->seq_items[j] = 1 + (uint64_t)j * 3;
      s->seq_cats[j] = 1 + (uint64_t)j % 15;
    }
    break;
  case 7: s->seq_len = 0; break;
  case 8: s->dense[0] = 1e30f; break; /* clipped by the normaliser */
  default: break;
  }
}

static void print_header(FILE *f, const mtld_model_config_t *c) {
  fprintf(f, "# id");
  for (int k = 0; k < c->n_tasks; k++) fprintf(f, " %s", c->tasks[k].name);
  for (int k = 0; k < c->n_tasks; k++)
    if (c->tasks[k].type == MTLD_TASK_ESMM_CTCVR) fprintf(f, " %s.pcvr", c->tasks[k].name);
  fprintf(f, "\n");
}

static void print_preds(FILE *f, mtld_trainer_t *t, const mtld_model_config_t *c, uint64_t id,
                        const mtld_sample_t *s) {
  float p[MTLD_MAX_TASKS], cond[MTLD_MAX_TASKS];
  mtld_trainer_predict(t, s, p, cond);
  fprintf(f, "%" PRIu64, id);
  for (int k = 0; k < c->n_tasks; k++) fprintf(f, " %.9g", p[k]);
  for (int k = 0; k < c->n_tasks; k++)
    if (c->tasks[k].type == MTLD_TASK_ESMM_CTCVR) fprintf(f, " %.9g", cond[k]);
  fprintf(f, "\n");
}

static int with_attrs; /* variant 8: declared attributes on the events */

static uint64_t H(const char *s) {
  return mtld_hash_id(s, strlen(s));
}

/* Variant 8's declarations: a user and an item categorical attribute, a
 * context and a user numeric one. */
static void attrs_declare(mtld_feature_def_t *def, mtld_model_config_t *c) {
  mtld_attr_def_set(&def->attrs[0], "age", MTLD_ATTR_USER, MTLD_ATTR_CATEGORICAL, 16, "", 0);
  mtld_attr_def_set(&def->attrs[1], "discount", MTLD_ATTR_CONTEXT, MTLD_ATTR_NUMERIC, 0, NULL, 0);
  mtld_attr_def_set(&def->attrs[2], "brand", MTLD_ATTR_ITEM, MTLD_ATTR_CATEGORICAL, 32, "none", 0);
  mtld_attr_def_set(&def->attrs[3], "income", MTLD_ATTR_USER, MTLD_ATTR_NUMERIC, 0, NULL, 1.5);
  def->n_attrs = 4;
  c->n_fields = MTLD_FIELD_EXTRA + 2;
  snprintf(c->fields[6].name, MTLD_NAME_MAX, "age");
  c->fields[6].rows = 16;
  snprintf(c->fields[7].name, MTLD_NAME_MAX, "brand");
  c->fields[7].rows = 32;
}

/* Variant 8: some events carry the user's attributes, impressions the
 * item's brand and a discount. */
static void attrs_add(mtld_event_t *ev) {
  char v[16];
  if (rnd() % 3 == 0) {
    snprintf(v, sizeof v, "a%d", (int)((ev->user_id + ev->event_id / 3000) % 5));
    mtld_event_attr_set_str(ev, H("age"), H(v));
  }
  if (rnd() % 4 == 0) mtld_event_attr_set_num(ev, H("income"), (double)(ev->user_id % 7) * 1000);
  if (ev->type == MTLD_EV_IMPRESSION) {
    snprintf(v, sizeof v, "b%d", (int)(ev->item_id % 6));
    if (rnd() % 5) mtld_event_attr_set_str(ev, H("brand"), H(v));
    mtld_event_attr_set_num(ev, H("discount"), (double)(rnd() % 50) / 100);
  }
}

/* Event i of the store variant's stream. */
static mtld_event_t store_event(int i) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = 1 + (uint64_t)i;
  ev.user_id = 1 + rnd() % 150;
  ev.item_id = 500 + rnd() % 80;
  ev.category_id = 1 + ev.item_id % 9;
  uint64_t x = rnd() % 20;
  ev.type = x < 12   ? MTLD_EV_IMPRESSION
            : x < 16 ? MTLD_EV_CLICK
            : x < 17 ? MTLD_EV_ADD_TO_CART
            : x < 19 ? MTLD_EV_PURCHASE
                     : MTLD_EV_REVIEW;
  ev.time_ms = 1700000000000LL + (int64_t)i * 2000;
  static const char *const scen[3] = {"home", "search", "cart"};
  snprintf(ev.scenario, sizeof ev.scenario, "%s", scen[rnd() % 3]);
  ev.scenario_id = mtld_hash_id(ev.scenario, strlen(ev.scenario));
  ev.position = 1 + (int)(rnd() % 6);
  if (ev.type == MTLD_EV_PURCHASE) {
    ev.price = 5 + (double)(rnd() % 9000) / 100;
    ev.quantity = 1;
  }
  if (ev.type == MTLD_EV_REVIEW) ev.rating = (float)(1 + rnd() % 5);
  if (with_attrs) attrs_add(&ev);
  return ev;
}

static int store_variant(const char *out) {
  char err[512], path[1024];
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_model_config_t c;
  mtld_model_config_default(&c);
  uint32_t rows[5] = {512, 256, 32, 8, 16};
  for (int f = 0; f < 5; f++) c.fields[f].rows = rows[f];
  c.dim = 8;
  c.seq_max = 10;
  c.n_dense = mtld_features_dense_count(&def);
  if (with_attrs) {
    attrs_declare(&def, &c);
    c.n_dense += 2;
  }
  c.expert_layers[0] = 32;
  c.expert_layers[1] = 16;
  c.tower_layers[0] = 8;
  c.batch_size = 32;
  c.pv_window = 2000;
  mtld_trainer_t *t = NULL;
  mtld_store_t *st = NULL;
  snprintf(path, sizeof path, "%s/store", out);
  if (mtld_trainer_create(&t, &c, err, sizeof err) != MTLD_OK ||
      mtld_store_open(&st, path, &def, 0, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "snapshot_fixture: %s\n", err);
    return 1;
  }
  snprintf(path, sizeof path, "%s/samples.bin", out);
  FILE *dump = fopen(path, "wb");
  snprintf(path, sizeof path, "%s/expected.txt", out);
  FILE *exp = fopen(path, "w");
  if (!dump || !exp || mtld_sampledump_write_header(dump) != MTLD_OK) return 1;
  print_header(exp, &c);
  int n_events = 8000;
  int64_t t_end = 0;
  for (int i = 0; i < n_events; i++) {
    mtld_event_t ev = store_event(i);
    mtld_user_features_t u;
    mtld_item_features_t it;
    if (mtld_store_apply(st, &ev, &u, &it) != MTLD_OK) return 1;
    t_end = ev.time_ms;
    if (i % 500 == 499) {
      mtld_store_set_offset(st, "events", 0, i + 1, ev.time_ms);
      if (mtld_store_commit(st, err, sizeof err) != MTLD_OK) return 1;
    }
    if (ev.type != MTLD_EV_IMPRESSION && ev.type != MTLD_EV_REVIEW) continue;
    mtld_sample_t s;
    mtld_sample_from_features(&s, &def, &ev, 0, i, u.n_events ? &u : NULL, it.n_events ? &it : NULL,
                              ev.item_id, ev.category_id, 1);
    if (ev.type == MTLD_EV_IMPRESSION) {
      int click = (ev.user_id * 3 + ev.item_id) % 5 == 0;
      if (with_attrs) /* the brand and the discount matter too */
        click = (ev.user_id * 3 + ev.item_id) % 5 == 0 || (ev.item_id % 6 == 2 && rnd() % 3 == 0);
      s.labels[MTLD_LABEL_CLICK] = (float)click;
      s.labels[MTLD_LABEL_PURCHASE] = (float)(click && ev.item_id % 3 == 0);
    }
    if (i >= n_events - 600) { /* the last ones are the probes: scored, not learned */
      mtld_sampledump_write(dump, &s);
      print_preds(exp, t, &c, s.sample_id, &s);
    } else {
      mtld_trainer_observe(t, &s, NULL);
    }
  }
  mtld_store_set_offset(st, "events", 0, n_events, t_end);
  if (mtld_store_commit(st, err, sizeof err) != MTLD_OK) return 1;
  int bad = fclose(dump) != 0;
  bad |= fclose(exp) != 0;

  mtld_source_offset_t off = {.partition = 0, .next_offset = n_events, .max_time_ms = t_end};
  snprintf(off.topic, sizeof off.topic, "events");
  mtld_snapshot_meta_t meta;
  memset(&meta, 0, sizeof meta);
  meta.features = def;
  meta.schema_hash = mtld_feature_def_hash(&def);
  meta.n_dense = mtld_features_dense_count(&def);
  meta.watermark_ms = t_end - 60000;
  meta.n_offsets = 1;
  meta.offsets = &off;
  item_set_t items = {0}; /* the store's items, as the daemon records them */
  mtld_store_foreach_item(st, add_item, &items);
  if (items.n == 0 || items.n > MAX_ITEMS) return 1;
  meta.n_items = items.n;
  meta.item_ids = items.ids;
  meta.item_cats = items.cats;
  snprintf(path, sizeof path, "%s/snapshots", out);
  if (mtld_snapshot_write(t, &meta, path, 2, NULL, 0, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "snapshot_fixture: %s\n", err);
    return 1;
  }
  /* the same model claiming other feature definitions (readers must refuse the store) */
  meta.schema_hash ^= 1;
  snprintf(path, sizeof path, "%s/snapshots-otherdef", out);
  if (mtld_snapshot_write(t, &meta, path, 1, NULL, 0, err, sizeof err) != MTLD_OK) return 1;

  /* candidates scored from the store's current features (global item view) */
  snprintf(path, sizeof path, "%s/candidates.jsonl", out);
  FILE *cj = fopen(path, "w");
  snprintf(path, sizeof path, "%s/expected_store.txt", out);
  FILE *es = fopen(path, "w");
  if (!cj || !es) return 1;
  print_header(es, &c);
  static const char *const scen[4] = {"home", "search", "cart", "unseen"};
  for (int i = 0; i < 200; i++) {
    mtld_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.event_id = 900000 + (uint64_t)i;
    ev.type = MTLD_EV_IMPRESSION;
    ev.user_id = 1 + rnd() % 170; /* some unknown */
    ev.item_id = 500 + rnd() % 90;
    ev.time_ms = t_end + (int64_t)(rnd() % 3600000);
    ev.position = i % 3 == 0 ? 0 : 1 + (int)(rnd() % 6);
    snprintf(ev.scenario, sizeof ev.scenario, "%s", scen[rnd() % 4]);
    ev.scenario_id = mtld_hash_id(ev.scenario, strlen(ev.scenario));
    double discount = (double)(rnd() % 50) / 100;
    if (with_attrs && i % 4) mtld_event_attr_set_num(&ev, H("discount"), discount);
    mtld_user_features_t u;
    mtld_item_features_t it;
    int hu = mtld_store_get_user(st, ev.user_id, &u) == MTLD_OK;
    int hi = mtld_store_get_item(st, ev.item_id, &it) == MTLD_OK;
    ev.category_id = hi ? it.category_id : 0;
    mtld_sample_t s;
    mtld_sample_from_features(&s, &def, &ev, 0, 0, hu ? &u : NULL, hi ? &it : NULL, ev.item_id,
                              ev.category_id, 1);
    char attrs[64] = "";
    if (with_attrs && i % 4)
      snprintf(attrs, sizeof attrs, ", \"attrs\": {\"discount\": %.2f}", discount);
    fprintf(cj,
            "{\"id\": %" PRIu64 ", \"user\": %" PRIu64 ", \"item\": %" PRIu64
            ", \"scenario\": \"%s\", \"position\": %d, \"time_ms\": %" PRId64 "%s}\n",
            ev.event_id, ev.user_id, ev.item_id, ev.scenario, (int)ev.position, ev.time_ms, attrs);
    print_preds(es, t, &c, ev.event_id, &s);
  }
  bad |= fclose(cj) != 0;
  bad |= fclose(es) != 0;
  mtld_store_close(st);
  mtld_trainer_destroy(t);
  return bad;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: snapshot_fixture OUTDIR VARIANT\n");
    return 2;
  }
  const char *out = argv[1];
  int variant = atoi(argv[2]);
  rs ^= (uint64_t)variant * 0x100000001b3ULL;
  if (variant == 6) return store_variant(out);
  if (variant == 8) {
    with_attrs = 1;
    return store_variant(out);
  }
  mtld_model_config_t c;
  mtld_model_config_default(&c);
  uint32_t rows[5] = {1024, 512, 64, 16, 16};
  for (int f = 0; f < 5; f++) c.fields[f].rows = rows[f];
  c.dim = 8;
  c.seq_max = 8;
  c.n_dense = 7; /* one more than the samples carry */
  c.expert_layers[0] = 24;
  c.expert_layers[1] = 12;
  c.tower_layers[0] = 8;
  c.batch_size = 64;
  c.lr = 3e-3f;
  c.emb.expire_ms = 1800000;
  c.pv_window = 2000;
  static const int archs[4] = {MTLD_ARCH_MMOE, MTLD_ARCH_PLE, MTLD_ARCH_SHARED_BOTTOM,
                               MTLD_ARCH_SINGLE_TASK};
  c.arch = archs[variant % 4];
  if (variant == 4) {
    c.emb.optim = MTLD_EMB_ADAM;
    c.emb.admit_after = 1;
    c.category_field = -1;
  }
  if (variant == 5) {
    c.item_field = -1;
    c.scenario_field = -1;
    c.n_tower_layers = 2;
    c.tower_layers[1] = 4;
    c.n_expert_layers = 1;
    c.interactions = MTLD_INTER_NONE;
  }
  if (variant == 7) { /* a review task chained on ctcvr: ctr -> ctcvr -> review */
    c.arch = MTLD_ARCH_MMOE;
    with_review = 1;
    c.n_tasks = 4;
    mtld_task_t *k = &c.tasks[3];
    memset(k, 0, sizeof(*k));
    snprintf(k->name, MTLD_NAME_MAX, "review");
    k->type = MTLD_TASK_ESMM_CTCVR;
    k->label = MTLD_LABEL_REVIEW;
    k->parent = 1;
    k->loss_weight = 1.0f;
  }
  char err[512], path[1024];
  mtld_trainer_t *t = NULL;
  if (mtld_trainer_create(&t, &c, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "snapshot_fixture: %s\n", err);
    return 1;
  }
  mtld_sample_t s;
  int n_train = 6000 + 13 * variant;
  for (int i = 0; i < n_train; i++) {
    synth(&s, i);
    mtld_trainer_observe(t, &s, NULL);
  }
  int64_t t_end = s.time_ms;
  mtld_source_offset_t off = {.partition = 0, .next_offset = n_train, .max_time_ms = t_end};
  snprintf(off.topic, sizeof off.topic, "events");
  mtld_snapshot_meta_t meta;
  memset(&meta, 0, sizeof meta);
  meta.features.n_half_lives = 1;
  meta.features.half_life_s[0] = 3600;
  meta.n_dense = 6;
  meta.created_ms = 1;
  meta.watermark_ms = t_end - 60000;
  meta.n_offsets = 1;
  meta.offsets = &off;
  /* the item set synth() draws from (variant 5: none, as files written
     before the item set existed) */
  item_set_t items = {0};
  for (uint64_t item = 1; variant != 5 && item <= 200; item++) {
    items.ids[items.n] = item;
    items.cats[items.n++] = 1 + item % 15;
  }
  meta.n_items = items.n;
  meta.item_ids = items.n ? items.ids : NULL;
  meta.item_cats = items.n ? items.cats : NULL;
  snprintf(path, sizeof path, "%s/snapshots", out);
  if (mtld_snapshot_write(t, &meta, path, 2, NULL, 0, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "snapshot_fixture: %s\n", err);
    return 1;
  }
  snprintf(path, sizeof path, "%s/samples.bin", out);
  FILE *dump = fopen(path, "wb");
  snprintf(path, sizeof path, "%s/expected.txt", out);
  FILE *exp = fopen(path, "w");
  if (!dump || !exp || mtld_sampledump_write_header(dump) != MTLD_OK) {
    fprintf(stderr, "snapshot_fixture: cannot write into %s\n", out);
    return 1;
  }
  print_header(exp, &c);
  for (int i = 0; i < 600; i++) {
    probe(&s, i, t_end);
    mtld_sampledump_write(dump, &s);
    print_preds(exp, t, &c, s.sample_id, &s);
  }
  int bad = fclose(dump) != 0;
  bad |= fclose(exp) != 0;
  mtld_trainer_destroy(t);
  return bad;
}
