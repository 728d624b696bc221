/* mtld-score - score with a serving snapshot (durable/snapshot.h), the way a
 * serving system would, and show what a snapshot holds.
 *
 * Inputs, one of:
 *   --samples FILE        a sample dump (trainer/sampledump.h, the daemon's
 *                         trainer.dump_samples): every sample as trained on
 *   --store DIR --user ID --item ID [--scenario NAME ...]
 *                         one candidate whose features come from the feature
 *                         store (opened read-only, safe beside the daemon)
 *   --sample-json FILE|-  JSON lines, one candidate each:
 *                         {"id": 7, "user": 12, "item": "sku-9", "category": 3,
 *                          "scenario": "search", "position": 2, "time_ms": T,
 *                          "dense": [...], "seq_items": [...], "seq_cats": [...],
 *                          "attrs": {"age_level": "3", "discount": 0.2}}
 *                         ids are numbers or strings (hashed as the daemon
 *                         hashes them); with --store the features (dense,
 *                         sequence, category) come from the store, otherwise
 *                         from the line (absent = zeros / empty); declared
 *                         attributes come from "attrs" (with --store: the
 *                         context ones; user and item ones from the store),
 *                         a missing one is its declared default
 *   --info                the header: versions, time, offsets, metrics, config
 *   --top K (--user ID|--user-key S) [--scenario NAME] [--rank-by TASK]
 *         [--store DIR]   top-K: the K items of the snapshot's item set the
 *                         model ranks highest for the user (task TASK, the
 *                         first task by default); with --store each
 *                         candidate's features come from the store, without
 *                         it candidates carry ids only (dense zeros, no
 *                         sequence), as libmtld-serving's top-K does
 * Output: "# id <task>... <esmm task>.pcvr..." then one line per sample with
 * every task's prediction (probability; pCTCVR for ESMM; value for
 * regression) and pCVR for ESMM tasks, %.9g.  --top: "# rank item
 * category <task>" then K lines, best first (ties: smaller item id).  Scoring a sample uses its
 * time_ms as "now" (embedding expiry); candidates default to the snapshot's
 * watermark (--time-ms to change), so the output is deterministic.
 *
 * Exit: 0 ok, 1 bad input (a JSON line, a sample dump), 2 usage, or a
 * snapshot or store that cannot be loaded. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/joiner.h"
#include "features/store.h"
#include "trainer/sampledump.h"
#include "durable/snapshot.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: mtld-score --snapshot FILE|DIR [--info] [--samples FILE]\n"
          "                  [--store DIR (--user ID|--user-key S) (--item ID|--item-key S)\n"
          "                   [--scenario NAME] [--category ID] [--position N]]\n"
          "                  [--sample-json FILE|-] [--time-ms T]\n"
          "                  [--top K (--user ID|--user-key S) [--scenario NAME] [--rank-by TASK]\n"
          "                   [--store DIR]] [--attrs JSON]\n"
          "\n"
          "Scores with an mtld serving snapshot (a DIR is followed through LATEST).\n"
          "  --info             print the snapshot's header\n"
          "  --samples FILE     score a sample dump (trainer.dump_samples), one line each\n"
          "  --store DIR        feature store to read candidates' features from (read-only)\n"
          "  --user ID, --item ID, --user-key S, --item-key S   one candidate (with --store)\n"
          "  --scenario NAME    its scenario (\"\" = none); --category ID overrides the item's\n"
          "  --position N       its position (> 0), absent by default\n"
          "  --sample-json F    JSON lines of candidates (\"-\" = stdin)\n"
          "  --time-ms T        event time to score candidates at (default: the watermark)\n"
          "  --top K            the K items of the snapshot's item set ranked highest for\n"
          "                     the user (features from --store when given, else ids only)\n"
          "  --rank-by TASK     the task to rank by (default: the first)\n"
          "  --attrs JSON       the request's attributes for --top and --user/--item\n"
          "                     ({\"discount\": 0.2}; with --store: the context ones)\n"
          "Output: \"# id <task>... <task>.pcvr...\" then one line per sample, %%.9g.\n"
          "Exit: 0 ok, 1 bad input, 2 usage or load error.\n");
}

typedef struct {
  mtld_model_t *model;
  mtld_snapshot_info_t info;
  mtld_store_t *store;
  int64_t time_ms;
} scorer_t;

static void print_header_line(const mtld_model_config_t *c) {
  printf("# id");
  for (int k = 0; k < c->n_tasks; k++) printf(" %s", c->tasks[k].name);
  for (int k = 0; k < c->n_tasks; k++)
    if (c->tasks[k].type == MTLD_TASK_ESMM_CTCVR) printf(" %s.pcvr", c->tasks[k].name);
  printf("\n");
}

static void score_print(scorer_t *sc, uint64_t id, const mtld_sample_t *s) {
  const mtld_model_config_t *c = mtld_model_config(sc->model);
  float p[MTLD_MAX_TASKS], cond[MTLD_MAX_TASKS];
  mtld_snapshot_score(sc->model, s, 1, p, cond);
  printf("%" PRIu64, id);
  for (int k = 0; k < c->n_tasks; k++) printf(" %.9g", p[k]);
  for (int k = 0; k < c->n_tasks; k++)
    if (c->tasks[k].type == MTLD_TASK_ESMM_CTCVR) printf(" %.9g", cond[k]);
  printf("\n");
}

/* ---- --info ---- */

static const char *arch_name(int a) {
  static const char *const n[4] = {"single_task", "shared_bottom", "mmoe", "ple"};
  return a >= 0 && a < 4 ? n[a] : "?";
}

static void print_info(const scorer_t *sc) {
  const mtld_snapshot_info_t *in = &sc->info;
  const mtld_model_config_t *c = &in->config;
  printf("file %s\nbytes %zu\nformat_version %" PRIu32 "\nproducer %s\n", in->path, in->file_bytes,
         in->format_version, in->producer);
  printf("created_ms %" PRId64 "\nwatermark_ms %" PRId64 "\n", in->meta.created_ms,
         in->meta.watermark_ms);
  printf("samples_trained %" PRIu64 "\nbatches %" PRIu64 "\n", in->samples_trained, in->batches);
  for (int i = 0; i < in->meta.n_offsets; i++)
    printf("offset %s %" PRId32 " %" PRId64 " %" PRId64 "\n", in->meta.offsets[i].topic,
           in->meta.offsets[i].partition, in->meta.offsets[i].next_offset,
           in->meta.offsets[i].max_time_ms);
  const mtld_feature_def_t *f = &in->meta.features;
  printf("features schema_hash %016" PRIx64 " n_dense %d seq_len %d item_view %s half_lives_s",
         in->meta.schema_hash, in->meta.n_dense, f->seq_len, f->item_view ? "global" : "partition");
  for (int h = 0; h < f->n_half_lives && h < MTLD_MAX_HALF_LIVES; h++)
    printf(" %g", f->half_life_s[h]);
  printf("\n");
  static const char *const owners[3] = {"user", "item", "context"};
  for (int k = 0; k < f->n_attrs && k < MTLD_ATTR_MAX; k++) {
    const mtld_attr_def_t *a = &f->attrs[k];
    if (a->kind == MTLD_ATTR_NUMERIC)
      printf("attribute %d %s owner %s numeric default %g\n", k, a->name, owners[a->owner],
             a->default_num);
    else
      printf("attribute %d %s owner %s categorical rows %" PRIu32 " default \"%s\"\n", k, a->name,
             owners[a->owner], a->rows, a->default_str);
  }
  printf("join_mode %d negatives_per_positive %d\n", in->meta.join_mode,
         in->meta.negatives_per_positive);
  printf("items %zu\n", in->meta.n_items);
  printf("model arch %s dim %d seq_max %d n_dense %d experts", arch_name(c->arch), c->dim,
         c->seq_max, c->n_dense);
  for (int l = 0; l < c->n_expert_layers; l++) printf("%s%d", l ? "," : " ", c->expert_layers[l]);
  printf(" towers");
  for (int l = 0; l < c->n_tower_layers; l++) printf("%s%d", l ? "," : " ", c->tower_layers[l]);
  printf("\n");
  for (int i = 0; i < c->n_fields; i++)
    printf("field %d %s rows %" PRIu32 "\n", i, c->fields[i].name, c->fields[i].rows);
  for (int k = 0; k < c->n_tasks; k++)
    printf("task %d %s type %d label %d parent %d weight %g\n", k, c->tasks[k].name,
           c->tasks[k].type, c->tasks[k].label, c->tasks[k].parent, c->tasks[k].loss_weight);
  for (int i = 0; i < in->n_metrics; i++) {
    const mtld_snapshot_metric_t *m = &in->metrics[i];
    printf("metrics task=%s scenario=%s n=%" PRIu64 " pos=%" PRIu64
           " auc_window=%.6g auc_cum=%.6g logloss=%.6g calib=%.6g rmse=%.6g\n",
           m->task, m->scenario, m->s.n, m->s.n_pos, m->s.auc_window, m->s.auc_cum, m->s.logloss,
           m->s.calibration, m->s.rmse);
  }
}

/* ---- --samples ---- */

static int score_dump(scorer_t *sc, const char *path) {
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if (!f) {
    fprintf(stderr, "mtld-score: cannot open %s: %s\n", path, strerror(errno));
    return 1;
  }
  char err[256];
  if (mtld_sampledump_read_header(f, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "mtld-score: %s: %s\n", path, err);
    if (f != stdin) fclose(f);
    return 1;
  }
  mtld_sample_t s;
  int rc;
  while ((rc = mtld_sampledump_read(f, &s)) == 1) score_print(sc, s.sample_id, &s);
  if (f != stdin) fclose(f);
  if (rc < 0) {
    fprintf(stderr, "mtld-score: %s: read error\n", path);
    return 1;
  }
  return 0;
}

/* ---- candidates ---- */

typedef struct {
  uint64_t id, user, item, category;
  int have_category;
  char scenario[MTLD_SCENARIO_MAX];
  int32_t position;
  int64_t time_ms;
  mtld_event_t attrs; /* the line's "attrs" (n_attrs, attrs_num, attrs only) */
} cand_t;

/* Candidate -> sample, features from the store (as the joiner builds them). */
static void sample_from_store(scorer_t *sc, const cand_t *c, mtld_sample_t *s) {
  mtld_user_features_t u;
  mtld_item_features_t it;
  int have_u = mtld_store_get_user(sc->store, c->user, &u) == MTLD_OK;
  int have_i = mtld_store_get_item(sc->store, c->item, &it) == MTLD_OK;
  if (!have_u) fprintf(stderr, "mtld-score: user %" PRIu64 " not in the store (cold)\n", c->user);
  if (!have_i) fprintf(stderr, "mtld-score: item %" PRIu64 " not in the store (cold)\n", c->item);
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = c->id;
  ev.type = MTLD_EV_IMPRESSION;
  ev.user_id = c->user;
  ev.item_id = c->item;
  ev.category_id = c->have_category ? c->category : (have_i ? it.category_id : 0);
  ev.time_ms = c->time_ms;
  ev.position = c->position;
  snprintf(ev.scenario, sizeof ev.scenario, "%s", c->scenario);
  ev.scenario_id = c->scenario[0] ? mtld_hash_id(c->scenario, strlen(c->scenario)) : 0;
  ev.n_attrs = c->attrs.n_attrs; /* context attributes (user and item ones: the store's) */
  ev.attrs_num = c->attrs.attrs_num;
  memcpy(ev.attrs, c->attrs.attrs, sizeof ev.attrs);
  mtld_sample_from_features(s, mtld_store_def(sc->store), &ev, 0, 0, have_u ? &u : NULL,
                            have_i ? &it : NULL, ev.item_id, ev.category_id, 1);
}

static int json_id(json_object *o, uint64_t *out) {
  if (!o) return 0;
  if (json_object_is_type(o, json_type_string)) {
    const char *s = json_object_get_string(o);
    *out = mtld_hash_id(s, strlen(s));
    return 1;
  }
  if (json_object_is_type(o, json_type_int)) {
    *out = json_object_get_uint64(o);
    return 1;
  }
  return -1;
}

/* "attrs": {"name": "categorical value" | number | null, ...}, as in an
 * event (README "Event schema").  0 ok, -1 bad. */
static int json_attrs(json_object *o, mtld_event_t *ev) {
  if (!json_object_is_type(o, json_type_object)) return -1;
  json_object_object_foreach(o, name, v) {
    size_t n = strlen(name);
    if (n == 0 || n > MTLD_ATTR_NAME_LEN) return -1;
    uint64_t id = mtld_hash_id(name, n);
    int r = 0;
    if (!v) continue;
    if (json_object_is_type(v, json_type_string)) {
      const char *str = json_object_get_string(v);
      size_t vn = strlen(str);
      if (vn > MTLD_ATTR_VALUE_LEN) return -1;
      if (vn) r = mtld_event_attr_set_str(ev, id, mtld_hash_id(str, vn));
    } else if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
      double d = json_object_get_double(v);
      if (!isfinite(d)) return -1;
      r = mtld_event_attr_set_num(ev, id, d);
    } else {
      return -1;
    }
    if (r != 0) return -1;
  }
  return 0;
}

/* One JSON line -> sample.  0 ok, -1 bad line (msg set). */
static int sample_from_json(scorer_t *sc, json_object *o, uint64_t line_no, mtld_sample_t *s,
                            uint64_t *id_out, const char **msg) {
  cand_t c;
  memset(&c, 0, sizeof c);
  c.time_ms = sc->time_ms;
  c.id = line_no;
  json_object *v;
  if (!json_object_is_type(o, json_type_object)) return *msg = "not a JSON object", -1;
  if (json_object_object_get_ex(o, "id", &v) && json_id(v, &c.id) < 0) return *msg = "bad id", -1;
  if (!json_object_object_get_ex(o, "user", &v) || json_id(v, &c.user) != 1)
    return *msg = "needs \"user\" (number or string)", -1;
  if (!json_object_object_get_ex(o, "item", &v) || json_id(v, &c.item) != 1)
    return *msg = "needs \"item\" (number or string)", -1;
  if (json_object_object_get_ex(o, "category", &v)) {
    if (json_id(v, &c.category) != 1) return *msg = "bad category", -1;
    c.have_category = 1;
  }
  if (json_object_object_get_ex(o, "scenario", &v)) {
    const char *sn = json_object_get_string(v);
    if (!json_object_is_type(v, json_type_string) || strlen(sn) >= sizeof c.scenario)
      return *msg = "scenario must be a string of at most 31 bytes", -1;
    snprintf(c.scenario, sizeof c.scenario, "%s", sn);
  }
  if (json_object_object_get_ex(o, "position", &v)) c.position = json_object_get_int(v);
  if (json_object_object_get_ex(o, "time_ms", &v)) c.time_ms = json_object_get_int64(v);
  if (json_object_object_get_ex(o, "attrs", &v) && v && json_attrs(v, &c.attrs) != 0)
    return *msg = "attrs must be an object of at most 16 names -> string or finite number", -1;
  *id_out = c.id;
  if (sc->store) {
    sample_from_store(sc, &c, s);
    return 0;
  }
  /* no store: the line carries the features */
  memset(s, 0, sizeof(*s));
  s->sample_id = c.id;
  s->time_ms = c.time_ms;
  s->kind = MTLD_SAMPLE_IMPRESSION;
  s->weight = 1.0f;
  s->n_fields = MTLD_FIELD_EXTRA;
  s->fields[MTLD_FIELD_USER] = c.user;
  s->fields[MTLD_FIELD_ITEM] = c.item;
  s->fields[MTLD_FIELD_CATEGORY] = c.category;
  s->scenario_id = c.scenario[0] ? mtld_hash_id(c.scenario, strlen(c.scenario)) : 0;
  s->fields[MTLD_FIELD_SCENARIO] = s->scenario_id;
  s->fields[MTLD_FIELD_POSITION] = c.position > 0 ? (uint64_t)(uint32_t)c.position : 0;
  s->fields[MTLD_FIELD_HOUR] = mtld_sample_hour_id(c.time_ms);
  snprintf(s->scenario, sizeof s->scenario, "%s", c.scenario);
  if (json_object_object_get_ex(o, "dense", &v)) {
    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) > MTLD_MAX_DENSE)
      return *msg = "dense must be an array of at most 64 numbers", -1;
    s->n_dense = (int)json_object_array_length(v);
    for (int i = 0; i < s->n_dense; i++)
      s->dense[i] = (float)json_object_get_double(json_object_array_get_idx(v, (size_t)i));
  }
  json_object *si = NULL, *scat = NULL;
  json_object_object_get_ex(o, "seq_items", &si);
  json_object_object_get_ex(o, "seq_cats", &scat);
  if (si) {
    if (!json_object_is_type(si, json_type_array) ||
        json_object_array_length(si) > MTLD_MAX_SAMPLE_SEQ ||
        (scat && (!json_object_is_type(scat, json_type_array) ||
                  json_object_array_length(scat) != json_object_array_length(si))))
      return *msg = "seq_items (and seq_cats, as long) must be arrays of at most 50 ids", -1;
    s->seq_len = (int)json_object_array_length(si);
    for (int j = 0; j < s->seq_len; j++) {
      if (json_id(json_object_array_get_idx(si, (size_t)j), &s->seq_items[j]) != 1 ||
          (scat && json_id(json_object_array_get_idx(scat, (size_t)j), &s->seq_cats[j]) != 1))
        return *msg = "bad id in seq_items / seq_cats", -1;
    }
  }
  /* declared attributes from the line (missing: their defaults) */
  mtld_snapshot_request_attrs(&sc->info.meta, &c.attrs, 1, s);
  return 0;
}

static int score_json(scorer_t *sc, const char *path) {
  FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
  if (!f) {
    fprintf(stderr, "mtld-score: cannot open %s: %s\n", path, strerror(errno));
    return 1;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  uint64_t no = 0;
  int bad = 0;
  while ((n = getline(&line, &cap, f)) >= 0) {
    no++;
    if (n == 0 || line[strspn(line, " \t\r\n")] == 0) continue;
    json_object *o = json_tokener_parse(line);
    mtld_sample_t s;
    uint64_t id = 0;
    const char *msg = "not valid JSON";
    if (!o || sample_from_json(sc, o, no, &s, &id, &msg) != 0) {
      fprintf(stderr, "mtld-score: %s:%" PRIu64 ": %s\n", path, no, msg);
      bad = 1;
    } else {
      score_print(sc, id, &s);
    }
    json_object_put(o);
  }
  free(line);
  if (f != stdin) fclose(f);
  return bad;
}

/* ---- --top ---- */

typedef struct {
  scorer_t *sc;
  const cand_t *c;
  mtld_user_features_t u;
  int have_u;
} topk_ctx_t;

/* A candidate's features from the store (the user's read once). */
static void fill_from_store(void *ctx, mtld_sample_t *s, uint64_t item, uint64_t cat) {
  topk_ctx_t *x = ctx;
  mtld_item_features_t it;
  int have_i = mtld_store_get_item(x->sc->store, item, &it) == MTLD_OK;
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.type = MTLD_EV_IMPRESSION;
  ev.user_id = x->c->user;
  ev.item_id = item;
  ev.category_id = have_i ? it.category_id : cat;
  ev.time_ms = x->c->time_ms;
  ev.position = x->c->position;
  snprintf(ev.scenario, sizeof ev.scenario, "%s", x->c->scenario);
  ev.scenario_id = x->c->scenario[0] ? mtld_hash_id(x->c->scenario, strlen(x->c->scenario)) : 0;
  ev.n_attrs = x->c->attrs.n_attrs; /* context attributes (user and item ones: the store's) */
  ev.attrs_num = x->c->attrs.attrs_num;
  memcpy(ev.attrs, x->c->attrs.attrs, sizeof ev.attrs);
  mtld_sample_from_features(s, mtld_store_def(x->sc->store), &ev, 0, 0, x->have_u ? &x->u : NULL,
                            have_i ? &it : NULL, ev.item_id, ev.category_id, 1);
}

static int score_top(scorer_t *sc, const cand_t *c, int k, const char *rank_by) {
  const mtld_model_config_t *mc = mtld_model_config(sc->model);
  const mtld_snapshot_meta_t *m = &sc->info.meta;
  int task = 0;
  if (rank_by) {
    for (task = 0; task < mc->n_tasks && strcmp(mc->tasks[task].name, rank_by); task++) {
    }
    if (task == mc->n_tasks) {
      fprintf(stderr, "mtld-score: --rank-by %s: no such task\n", rank_by);
      return 2;
    }
  }
  if (!m->n_items) {
    fprintf(stderr, "mtld-score: the snapshot has no item set (written before mtld recorded it, "
                    "or from an empty store)\n");
    return 2;
  }
  /* the request: ids only (mtld-score --sample-json without a store) */
  mtld_sample_t tmpl;
  memset(&tmpl, 0, sizeof tmpl);
  tmpl.time_ms = c->time_ms;
  tmpl.kind = MTLD_SAMPLE_IMPRESSION;
  tmpl.weight = 1.0f;
  tmpl.n_fields = MTLD_FIELD_EXTRA;
  tmpl.fields[MTLD_FIELD_USER] = c->user;
  tmpl.scenario_id = c->scenario[0] ? mtld_hash_id(c->scenario, strlen(c->scenario)) : 0;
  tmpl.fields[MTLD_FIELD_SCENARIO] = tmpl.scenario_id;
  tmpl.fields[MTLD_FIELD_POSITION] = c->position > 0 ? (uint64_t)(uint32_t)c->position : 0;
  tmpl.fields[MTLD_FIELD_HOUR] = mtld_sample_hour_id(c->time_ms);
  snprintf(tmpl.scenario, sizeof tmpl.scenario, "%s", c->scenario);
  /* declared attributes: the request's, item ones (each candidate is
   * another item) and missing ones their defaults */
  mtld_snapshot_request_attrs(m, &c->attrs, 0, &tmpl);
  topk_ctx_t x = {.sc = sc, .c = c};
  if (sc->store) {
    x.have_u = mtld_store_get_user(sc->store, c->user, &x.u) == MTLD_OK;
    if (!x.have_u)
      fprintf(stderr, "mtld-score: user %" PRIu64 " not in the store (cold)\n", c->user);
  }
  int kk = (size_t)k < m->n_items ? k : (int)m->n_items, n = 0;
  mtld_snapshot_ranked_t *r = malloc(sizeof(*r) * (size_t)kk);
  if (!r) {
    fprintf(stderr, "mtld-score: out of memory\n");
    return 2;
  }
  mtld_status_t st = mtld_snapshot_top_k(sc->model, &tmpl, m->item_ids, m->item_cats, m->n_items,
                                         task, kk, sc->store ? fill_from_store : NULL, &x, r, &n);
  if (st != MTLD_OK) {
    fprintf(stderr, "mtld-score: top-K: %s\n", mtld_status_str(st));
    free(r);
    return 2;
  }
  printf("# rank item category %s\n", mc->tasks[task].name);
  for (int i = 0; i < n; i++)
    printf("%d %" PRIu64 " %" PRIu64 " %.9g\n", i + 1, r[i].item, r[i].category, r[i].score);
  free(r);
  return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-') return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  enum {
    O_SNAP = 1,
    O_INFO,
    O_SAMPLES,
    O_STORE,
    O_USER,
    O_USERKEY,
    O_ITEM,
    O_ITEMKEY,
    O_SCEN,
    O_CAT,
    O_POS,
    O_JSON,
    O_TIME,
    O_TOP,
    O_RANKBY,
    O_ATTRS,
    O_HELP
  };
  static const struct option opts[] = {{"snapshot", required_argument, 0, O_SNAP},
                                       {"info", no_argument, 0, O_INFO},
                                       {"samples", required_argument, 0, O_SAMPLES},
                                       {"store", required_argument, 0, O_STORE},
                                       {"user", required_argument, 0, O_USER},
                                       {"user-key", required_argument, 0, O_USERKEY},
                                       {"item", required_argument, 0, O_ITEM},
                                       {"item-key", required_argument, 0, O_ITEMKEY},
                                       {"scenario", required_argument, 0, O_SCEN},
                                       {"category", required_argument, 0, O_CAT},
                                       {"position", required_argument, 0, O_POS},
                                       {"sample-json", required_argument, 0, O_JSON},
                                       {"time-ms", required_argument, 0, O_TIME},
                                       {"top", required_argument, 0, O_TOP},
                                       {"rank-by", required_argument, 0, O_RANKBY},
                                       {"attrs", required_argument, 0, O_ATTRS},
                                       {"help", no_argument, 0, O_HELP},
                                       {0, 0, 0, 0}};
  const char *snap = NULL, *samples = NULL, *store = NULL, *json = NULL, *rank_by = NULL;
  int top = 0;
  int info = 0, have_user = 0, have_item = 0, have_time = 0;
  cand_t cand;
  memset(&cand, 0, sizeof cand);
  int64_t time_ms = 0;
  int o;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
    case O_SNAP: snap = optarg; break;
    case O_INFO: info = 1; break;
    case O_SAMPLES: samples = optarg; break;
    case O_STORE: store = optarg; break;
    case O_USER:
      if (parse_u64(optarg, &cand.user)) goto bad_usage;
      have_user = 1;
      break;
    case O_USERKEY:
      cand.user = mtld_hash_id(optarg, strlen(optarg));
      have_user = 1;
      break;
    case O_ITEM:
      if (parse_u64(optarg, &cand.item)) goto bad_usage;
      have_item = 1;
      break;
    case O_ITEMKEY:
      cand.item = mtld_hash_id(optarg, strlen(optarg));
      have_item = 1;
      break;
    case O_SCEN:
      if (strlen(optarg) >= sizeof cand.scenario) goto bad_usage;
      snprintf(cand.scenario, sizeof cand.scenario, "%s", optarg);
      break;
    case O_CAT:
      if (parse_u64(optarg, &cand.category)) goto bad_usage;
      cand.have_category = 1;
      break;
    case O_POS: cand.position = atoi(optarg); break;
    case O_JSON: json = optarg; break;
    case O_TIME:
      time_ms = strtoll(optarg, NULL, 10);
      have_time = 1;
      break;
    case O_TOP:
      top = atoi(optarg);
      if (top < 1) goto bad_usage;
      break;
    case O_RANKBY: rank_by = optarg; break;
    case O_ATTRS: {
      json_object *a = json_tokener_parse(optarg);
      int bad = !a || json_attrs(a, &cand.attrs) != 0;
      json_object_put(a);
      if (bad) goto bad_usage;
      break;
    }
    case O_HELP: usage(stdout); return 0;
    default: goto bad_usage;
    }
  }
  if (!snap || optind != argc || (top && (!have_user || have_item || samples || json)) ||
      (!top && ((have_user != have_item) || (have_user && !store))) || (rank_by && !top) ||
      (!info && !samples && !json && !have_user))
    goto bad_usage;

  scorer_t sc;
  memset(&sc, 0, sizeof sc);
  char err[1024];
  if (mtld_snapshot_load(snap, &sc.model, &sc.info, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "mtld-score: %s\n", err);
    return 2;
  }
  sc.time_ms = have_time ? time_ms : sc.info.meta.watermark_ms;
  int rc = 0;
  if (store) {
    if (mtld_store_open_secondary(&sc.store, store, err, sizeof err) != MTLD_OK) {
      fprintf(stderr, "mtld-score: %s\n", err);
      rc = 2;
      goto out;
    }
    uint64_t want = sc.info.meta.schema_hash;
    uint64_t got = mtld_feature_def_hash(mtld_store_def(sc.store));
    if (want && want != got) {
      fprintf(stderr,
              "mtld-score: the store's feature definitions (hash %016" PRIx64
              ") are not the snapshot's (%016" PRIx64 ")\n",
              got, want);
      rc = 2;
      goto out;
    }
    if (!want) fprintf(stderr, "mtld-score: warning: the snapshot records no feature hash\n");
  }
  if (info) print_info(&sc);
  if (top) {
    cand.time_ms = sc.time_ms;
    rc = score_top(&sc, &cand, top, rank_by);
    goto out;
  }
  if (samples || json || have_user) print_header_line(mtld_model_config(sc.model));
  if (samples) rc |= score_dump(&sc, samples);
  if (json) rc |= score_json(&sc, json);
  if (have_user) {
    mtld_sample_t s;
    cand.time_ms = sc.time_ms;
    sample_from_store(&sc, &cand, &s);
    score_print(&sc, 0, &s);
  }
out:
  mtld_store_close(sc.store);
  mtld_snapshot_info_free(&sc.info);
  mtld_model_destroy(sc.model);
  return rc;
bad_usage:
  usage(stderr);
  return 2;
}
