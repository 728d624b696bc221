/* mtld-inspect - read-only look into a feature store (features/store.h).
 *
 * Opens the store read-only with its stored feature definitions, so it may
 * run beside the daemon (it sees the state as of its open).  Prints one
 * user's or item's features (all fields, decayed values as of the entity's
 * last event and the rates derived from them), the committed source offsets,
 * or a canonical dump of every user and item: one line per entity, doubles
 * as %.17g, in key order, so dumps of two runs can be compared with cmp.
 * With features.item_view = partition the store also keeps each partition's
 * view of an item: --partitions prints them after an --item, and --dump ends
 * with them ("itempart" lines, in (partition, item) order).  A partition is
 * its partition id (features/partition.h): topic index << 16 | Kafka partition.
 *
 * Exit: 0 ok, 1 a requested user/item is not in the store, 2 usage or open
 * error. */
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/store.h"

#define MAX_LOOKUPS 64

static void usage(FILE *out) {
  fprintf(out, "usage: mtld-inspect --store DIR [--user ID | --user-key STR]... [--item ID |\n"
               "                    --item-key STR]... [--partitions] [--offsets] [--dump]\n"
               "                    [--def] [--json]\n"
               "\n"
               "Reads an mtld feature store read-only (safe while the daemon runs).\n"
               "  --store DIR       the store (store.path of the daemon's config)\n"
               "  --user ID         print a user's features (decimal id)\n"
               "  --user-key STR    same, for a string id (hashed as the daemon does)\n"
               "  --item ID         print an item's features\n"
               "  --item-key STR    same, for a string id\n"
               "  --partitions      with --item: also each partition's view of the item\n"
               "                    (features.item_view = partition)\n"
               "  --offsets         print \"topic partition next_offset max_time_ms\" lines\n"
               "  --dump            print every user and item, one canonical line each,\n"
               "                    then every partition's item views (\"itempart P ID ...\")\n"
               "  --def             print the stored feature definitions and their hash\n"
               "  --json            JSON output (one object per line)\n"
               "  --help            this text\n"
               "Exit: 0 ok, 1 a requested user or item was not found, 2 usage or open error.\n");
}

/* ---- canonical text ---- */

static void print_decayed(FILE *out, const double (*d)[MTLD_MAX_HALF_LIVES], int nh) {
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) {
    if (t) fputc(';', out);
    for (int h = 0; h < nh; h++) fprintf(out, "%s%.17g", h ? "," : "", d[t][h]);
  }
}

static void dump_user_line(FILE *out, uint64_t id, const mtld_user_features_t *f, int nh) {
  fprintf(out, "user %" PRIu64 " last_time_ms=%" PRId64 " n_events=%" PRIu64 " decayed=", id,
          f->last_time_ms, f->n_events);
  print_decayed(out, f->decayed, nh);
  fprintf(out, " n_reviews=%" PRIu32 " rating_sum=%.17g spend=%.17g scenarios=", f->n_reviews,
          f->rating_sum, f->spend);
  if (!f->n_scenarios) fputc('-', out);
  for (uint32_t s = 0; s < f->n_scenarios; s++) {
    fprintf(out, "%s%" PRIu64 ":", s ? ";" : "", f->scenarios[s].scenario_id);
    for (int h = 0; h < nh; h++) fprintf(out, "%s%.17g", h ? "," : "", f->scenarios[s].decayed[h]);
  }
  fputs(" seq=", out);
  if (!f->seq_len) fputc('-', out);
  for (uint32_t i = 0; i < f->seq_len; i++) {
    const mtld_seq_item_t *e = &f->seq[i];
    fprintf(out, "%s%" PRIu64 ":%" PRIu64 ":%" PRId64 ":%d:%" PRIu64, i ? ";" : "", e->item_id,
            e->category_id, e->time_ms, (int)e->type, e->event_id);
  }
  fputc('\n', out);
}

/* "item ID ..." or, for a partition's view (partition >= 0),
 * "itempart PARTITION ID ...". */
static void dump_item_line(FILE *out, int32_t partition, uint64_t id, const mtld_item_features_t *f,
                           int nh) {
  if (partition >= 0)
    fprintf(out, "itempart %" PRId32 " ", partition);
  else
    fputs("item ", out);
  fprintf(out, "%" PRIu64 " last_time_ms=%" PRId64 " n_events=%" PRIu64 " decayed=", id,
          f->last_time_ms, f->n_events);
  print_decayed(out, f->decayed, nh);
  fprintf(out,
          " n_reviews=%" PRIu32 " rating_sum=%.17g last_price=%.17g last_price_time_ms=%" PRId64
          " last_price_event_id=%" PRIu64 " category_id=%" PRIu64 "\n",
          f->n_reviews, f->rating_sum, f->last_price, f->last_price_time_ms, f->last_price_event_id,
          f->category_id);
}

/* ---- JSON ---- */

static json_object *json_doubles(const double *v, int n) {
  json_object *a = json_object_new_array();
  for (int i = 0; i < n; i++) json_object_array_add(a, json_object_new_double(v[i]));
  return a;
}

static json_object *json_decayed(const mtld_feature_def_t *def,
                                 const double (*d)[MTLD_MAX_HALF_LIVES]) {
  json_object *o = json_object_new_object();
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++)
    json_object_object_add(o, mtld_event_type_name(t + 1), json_doubles(d[t], def->n_half_lives));
  return o;
}

/* CTR, CVR, cart rate per half-life, as of the entity's last event. */
static json_object *json_rates(const mtld_feature_def_t *def,
                               const double (*d)[MTLD_MAX_HALF_LIVES]) {
  double ctr[MTLD_MAX_HALF_LIVES], cvr[MTLD_MAX_HALF_LIVES], cart[MTLD_MAX_HALF_LIVES];
  for (int h = 0; h < def->n_half_lives; h++) {
    double imp = d[MTLD_EV_IMPRESSION - 1][h], clk = d[MTLD_EV_CLICK - 1][h];
    ctr[h] = mtld_features_rate(clk, imp, def->ctr_prior, def->prior_strength);
    cvr[h] =
        mtld_features_rate(d[MTLD_EV_PURCHASE - 1][h], clk, def->cvr_prior, def->prior_strength);
    cart[h] = mtld_features_rate(d[MTLD_EV_ADD_TO_CART - 1][h], clk, def->cart_prior,
                                 def->prior_strength);
  }
  json_object *o = json_object_new_object();
  json_object_object_add(o, "ctr", json_doubles(ctr, def->n_half_lives));
  json_object_object_add(o, "cvr", json_doubles(cvr, def->n_half_lives));
  json_object_object_add(o, "cart_rate", json_doubles(cart, def->n_half_lives));
  return o;
}

static json_object *json_user(const mtld_feature_def_t *def, uint64_t id,
                              const mtld_user_features_t *f, int with_rates) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "kind", json_object_new_string("user"));
  json_object_object_add(o, "id", json_object_new_uint64(id));
  json_object_object_add(o, "last_time_ms", json_object_new_int64(f->last_time_ms));
  json_object_object_add(o, "n_events", json_object_new_uint64(f->n_events));
  json_object_object_add(o, "decayed", json_decayed(def, f->decayed));
  if (with_rates) json_object_object_add(o, "rates", json_rates(def, f->decayed));
  json_object_object_add(o, "n_reviews", json_object_new_int64(f->n_reviews));
  json_object_object_add(o, "rating_sum", json_object_new_double(f->rating_sum));
  if (with_rates)
    json_object_object_add(o, "mean_rating",
                           json_object_new_double(f->n_reviews ? f->rating_sum / f->n_reviews : 0));
  json_object_object_add(o, "spend", json_object_new_double(f->spend));
  json_object *sc = json_object_new_array();
  for (uint32_t s = 0; s < f->n_scenarios; s++) {
    json_object *e = json_object_new_object();
    json_object_object_add(e, "scenario_id", json_object_new_uint64(f->scenarios[s].scenario_id));
    json_object_object_add(e, "decayed", json_doubles(f->scenarios[s].decayed, def->n_half_lives));
    json_object_array_add(sc, e);
  }
  json_object_object_add(o, "scenarios", sc);
  json_object *seq = json_object_new_array();
  for (uint32_t i = 0; i < f->seq_len; i++) {
    const mtld_seq_item_t *s = &f->seq[i];
    json_object *e = json_object_new_object();
    const char *tn = mtld_event_type_name(s->type);
    json_object_object_add(e, "item_id", json_object_new_uint64(s->item_id));
    json_object_object_add(e, "category_id", json_object_new_uint64(s->category_id));
    json_object_object_add(e, "time_ms", json_object_new_int64(s->time_ms));
    json_object_object_add(e, "type", json_object_new_string(tn ? tn : "?"));
    json_object_object_add(e, "event_id", json_object_new_uint64(s->event_id));
    json_object_array_add(seq, e);
  }
  json_object_object_add(o, "seq", seq);
  return o;
}

/* An item's global view (partition < 0) or one partition's view of it. */
static json_object *json_item(const mtld_feature_def_t *def, int32_t partition, uint64_t id,
                              const mtld_item_features_t *f, int with_rates) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "kind", json_object_new_string(partition >= 0 ? "itempart" : "item"));
  if (partition >= 0) {
    json_object_object_add(o, "partition", json_object_new_int(partition));
    json_object_object_add(o, "topic_index",
                           json_object_new_int(mtld_partition_id_topic(partition)));
    json_object_object_add(o, "topic_partition",
                           json_object_new_int(mtld_partition_id_number(partition)));
  }
  json_object_object_add(o, "id", json_object_new_uint64(id));
  json_object_object_add(o, "last_time_ms", json_object_new_int64(f->last_time_ms));
  json_object_object_add(o, "n_events", json_object_new_uint64(f->n_events));
  json_object_object_add(o, "decayed", json_decayed(def, f->decayed));
  if (with_rates) json_object_object_add(o, "rates", json_rates(def, f->decayed));
  json_object_object_add(o, "n_reviews", json_object_new_int64(f->n_reviews));
  json_object_object_add(o, "rating_sum", json_object_new_double(f->rating_sum));
  if (with_rates)
    json_object_object_add(o, "mean_rating",
                           json_object_new_double(f->n_reviews ? f->rating_sum / f->n_reviews : 0));
  json_object_object_add(o, "last_price", json_object_new_double(f->last_price));
  json_object_object_add(o, "last_price_time_ms", json_object_new_int64(f->last_price_time_ms));
  json_object_object_add(o, "last_price_event_id", json_object_new_uint64(f->last_price_event_id));
  json_object_object_add(o, "category_id", json_object_new_uint64(f->category_id));
  return o;
}

static void print_json(json_object *o) {
  puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
  json_object_put(o);
}

/* ---- human text ---- */

static void print_counts_text(const mtld_feature_def_t *def,
                              const double (*d)[MTLD_MAX_HALF_LIVES]) {
  printf("  half_lives_s");
  for (int h = 0; h < def->n_half_lives; h++) printf(" %g", def->half_life_s[h]);
  printf("\n");
  for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) {
    printf("  %-12s", mtld_event_type_name(t + 1));
    for (int h = 0; h < def->n_half_lives; h++) printf(" %.17g", d[t][h]);
    printf("\n");
  }
  for (int h = 0; h < def->n_half_lives; h++) {
    double imp = d[MTLD_EV_IMPRESSION - 1][h], clk = d[MTLD_EV_CLICK - 1][h];
    printf("  rates@%gs ctr %.6g cvr %.6g cart_rate %.6g\n", def->half_life_s[h],
           mtld_features_rate(clk, imp, def->ctr_prior, def->prior_strength),
           mtld_features_rate(d[MTLD_EV_PURCHASE - 1][h], clk, def->cvr_prior, def->prior_strength),
           mtld_features_rate(d[MTLD_EV_ADD_TO_CART - 1][h], clk, def->cart_prior,
                              def->prior_strength));
  }
}

/* The entity's declared attributes of owner (categorical: the value id,
 * numeric: the number; "-" when none seen yet). */
static void print_attrs_text(const mtld_feature_def_t *def, int owner,
                             const mtld_attr_values_t *v) {
  for (int k = 0; k < def->n_attrs; k++) {
    const mtld_attr_def_t *a = &def->attrs[k];
    if (a->owner != owner) continue;
    printf("  attr %s", a->name);
    if (!(v->set >> k & 1)) {
      printf(" -\n");
      continue;
    }
    if (a->kind == MTLD_ATTR_NUMERIC) {
      double d;
      memcpy(&d, &v->v[k].bits, sizeof d);
      printf(" %.17g", d);
    } else {
      printf(" id %" PRIu64, v->v[k].bits);
    }
    printf(" (time_ms %" PRId64 ", event_id %" PRIu64 ")\n", v->v[k].time_ms, v->v[k].event_id);
  }
}

static void print_user_text(const mtld_feature_def_t *def, uint64_t id, const char *key,
                            const mtld_user_features_t *f) {
  printf("user %" PRIu64, id);
  if (key) printf(" (key \"%s\")", key);
  printf("\n  last_time_ms %" PRId64 "\n  n_events %" PRIu64 "\n", f->last_time_ms, f->n_events);
  print_counts_text(def, f->decayed);
  printf("  n_reviews %" PRIu32 " rating_sum %.17g mean_rating %.6g\n", f->n_reviews, f->rating_sum,
         f->n_reviews ? f->rating_sum / f->n_reviews : 0.0);
  printf("  spend %.17g\n", f->spend);
  printf("  scenarios %" PRIu32 "\n", f->n_scenarios);
  for (uint32_t s = 0; s < f->n_scenarios; s++) {
    printf("    %" PRIu64, f->scenarios[s].scenario_id);
    for (int h = 0; h < def->n_half_lives; h++) printf(" %.17g", f->scenarios[s].decayed[h]);
    printf("\n");
  }
  printf("  seq %" PRIu32 " (newest first: item category time_ms type event_id)\n", f->seq_len);
  for (uint32_t i = 0; i < f->seq_len; i++) {
    const mtld_seq_item_t *e = &f->seq[i];
    const char *tn = mtld_event_type_name(e->type);
    printf("    %" PRIu64 " %" PRIu64 " %" PRId64 " %s %" PRIu64 "\n", e->item_id, e->category_id,
           e->time_ms, tn ? tn : "?", e->event_id);
  }
  print_attrs_text(def, MTLD_ATTR_USER, &f->attrs);
}

static void print_item_text(const mtld_feature_def_t *def, int32_t partition, uint64_t id,
                            const char *key, const mtld_item_features_t *f) {
  printf("item %" PRIu64, id);
  if (key) printf(" (key \"%s\")", key);
  if (partition >= 0)
    printf(" as seen by partition %" PRId32 " (topic #%d, partition %d)", partition,
           mtld_partition_id_topic(partition), (int)mtld_partition_id_number(partition));
  printf("\n  last_time_ms %" PRId64 "\n  n_events %" PRIu64 "\n", f->last_time_ms, f->n_events);
  print_counts_text(def, f->decayed);
  printf("  n_reviews %" PRIu32 " rating_sum %.17g mean_rating %.6g\n", f->n_reviews, f->rating_sum,
         f->n_reviews ? f->rating_sum / f->n_reviews : 0.0);
  printf("  category_id %" PRIu64 "\n", f->category_id);
  printf("  last_price %.17g (time_ms %" PRId64 ", event_id %" PRIu64 ")\n", f->last_price,
         f->last_price_time_ms, f->last_price_event_id);
  print_attrs_text(def, MTLD_ATTR_ITEM, &f->attrs);
}

/* ---- walks ---- */

typedef struct {
  const mtld_feature_def_t *def;
  int json;
} walk_t;

static int dump_user_cb(void *ctx, uint64_t id, const mtld_user_features_t *f) {
  walk_t *w = ctx;
  if (w->json)
    print_json(json_user(w->def, id, f, 0));
  else
    dump_user_line(stdout, id, f, w->def->n_half_lives);
  return 0;
}

static int dump_item_cb(void *ctx, uint64_t id, const mtld_item_features_t *f) {
  walk_t *w = ctx;
  if (w->json)
    print_json(json_item(w->def, -1, id, f, 0));
  else
    dump_item_line(stdout, -1, id, f, w->def->n_half_lives);
  return 0;
}

static int dump_item_part_cb(void *ctx, int32_t partition, uint64_t id,
                             const mtld_item_features_t *f) {
  walk_t *w = ctx;
  if (w->json)
    print_json(json_item(w->def, partition, id, f, 0));
  else
    dump_item_line(stdout, partition, id, f, w->def->n_half_lives);
  return 0;
}

/* --item --partitions: one partition's view of the looked-up item. */
typedef struct {
  const mtld_feature_def_t *def;
  int json;
  const char *key;
  int n;
} part_look_t;

static int item_part_cb(void *ctx, int32_t partition, uint64_t id, const mtld_item_features_t *f) {
  part_look_t *pl = ctx;
  pl->n++;
  if (pl->json) {
    json_object *o = json_item(pl->def, partition, id, f, 1);
    if (pl->key) json_object_object_add(o, "key", json_object_new_string(pl->key));
    print_json(o);
  } else {
    print_item_text(pl->def, partition, id, pl->key, f);
  }
  return 0;
}

static int offset_cb(void *ctx, const char *topic, int32_t partition, int64_t next_offset,
                     int64_t max_time_ms) {
  walk_t *w = ctx;
  if (w->json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "topic", json_object_new_string(topic));
    json_object_object_add(o, "partition", json_object_new_int(partition));
    json_object_object_add(o, "next_offset", json_object_new_int64(next_offset));
    json_object_object_add(o, "max_time_ms", json_object_new_int64(max_time_ms));
    print_json(o);
  } else {
    printf("%s %d %" PRId64 " %" PRId64 "\n", topic, (int)partition, next_offset, max_time_ms);
  }
  return 0;
}

static const char *item_view_name(const mtld_feature_def_t *def) {
  return def->item_view == MTLD_ITEM_VIEW_GLOBAL ? "global" : "partition";
}

static void print_def(const mtld_feature_def_t *def, int json) {
  uint64_t hash = mtld_feature_def_hash(def);
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "schema_hash", json_object_new_uint64(hash));
    json_object_object_add(o, "half_lives_s", json_doubles(def->half_life_s, def->n_half_lives));
    json_object_object_add(o, "seq_len", json_object_new_int(def->seq_len));
    json_object_object_add(o, "prior_strength", json_object_new_double(def->prior_strength));
    json_object_object_add(o, "ctr_prior", json_object_new_double(def->ctr_prior));
    json_object_object_add(o, "cvr_prior", json_object_new_double(def->cvr_prior));
    json_object_object_add(o, "cart_prior", json_object_new_double(def->cart_prior));
    json_object_object_add(o, "item_view", json_object_new_string(item_view_name(def)));
    print_json(o);
    return;
  }
  printf("schema_hash %016" PRIx64 "\nhalf_lives_s", hash);
  for (int h = 0; h < def->n_half_lives; h++) printf(" %g", def->half_life_s[h]);
  printf("\nseq_len %d\nprior_strength %g\nctr_prior %g\ncvr_prior %g\ncart_prior %g\n"
         "item_view %s\n",
         def->seq_len, def->prior_strength, def->ctr_prior, def->cvr_prior, def->cart_prior,
         item_view_name(def));
}

typedef struct {
  int is_item;
  uint64_t id;
  const char *key; /* the string it was hashed from, or NULL */
} lookup_t;

static int parse_id(const char *s, uint64_t *out) {
  char *end;
  if (!*s || *s == '-') return -1;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"store", required_argument, 0, 's'},
                                       {"user", required_argument, 0, 'u'},
                                       {"user-key", required_argument, 0, 'U'},
                                       {"item", required_argument, 0, 'i'},
                                       {"item-key", required_argument, 0, 'I'},
                                       {"partitions", no_argument, 0, 'p'},
                                       {"offsets", no_argument, 0, 'o'},
                                       {"dump", no_argument, 0, 'd'},
                                       {"def", no_argument, 0, 'D'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *path = NULL;
  lookup_t look[MAX_LOOKUPS];
  int n_look = 0, offsets = 0, dump = 0, def_flag = 0, json = 0, partitions = 0, c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 's': path = optarg; break;
    case 'u':
    case 'i':
    case 'U':
    case 'I':
      if (n_look == MAX_LOOKUPS) {
        fprintf(stderr, "mtld-inspect: at most %d lookups\n", MAX_LOOKUPS);
        return 2;
      }
      look[n_look].is_item = c == 'i' || c == 'I';
      look[n_look].key = NULL;
      if (c == 'U' || c == 'I') {
        look[n_look].id = mtld_hash_id(optarg, strlen(optarg));
        look[n_look].key = optarg;
      } else if (parse_id(optarg, &look[n_look].id) != 0) {
        fprintf(stderr, "mtld-inspect: not a decimal id: %s\n", optarg);
        return 2;
      }
      n_look++;
      break;
    case 'p': partitions = 1; break;
    case 'o': offsets = 1; break;
    case 'd': dump = 1; break;
    case 'D': def_flag = 1; break;
    case 'j': json = 1; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "mtld-inspect: unexpected argument: %s\n", argv[optind]);
    return 2;
  }
  if (!path) {
    fprintf(stderr, "mtld-inspect: --store DIR is required\n");
    usage(stderr);
    return 2;
  }
  if (partitions && !n_look) {
    fprintf(stderr, "mtld-inspect: --partitions goes with --item or --item-key\n");
    return 2;
  }
  if (!n_look && !offsets && !dump && !def_flag) {
    fprintf(stderr, "mtld-inspect: nothing to do (give --user, --item, --offsets, --dump or "
                    "--def)\n");
    return 2;
  }

  char err[1024];
  mtld_store_t *st = NULL;
  if (mtld_store_open_secondary(&st, path, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "mtld-inspect: %s\n", err);
    return 2;
  }
  const mtld_feature_def_t *def = mtld_store_def(st);
  walk_t w = {def, json};
  int rc = 0;
  if (def_flag) print_def(def, json);
  mtld_user_features_t *u = malloc(sizeof *u);
  for (int k = 0; k < n_look && u; k++) {
    mtld_status_t s;
    mtld_item_features_t it;
    if (look[k].is_item)
      s = mtld_store_get_item(st, look[k].id, &it);
    else
      s = mtld_store_get_user(st, look[k].id, u);
    if (s == MTLD_ERR_NOTFOUND) {
      fprintf(stderr, "mtld-inspect: %s %" PRIu64 " not found\n", look[k].is_item ? "item" : "user",
              look[k].id);
      if (rc == 0) rc = 1;
      continue;
    }
    if (s != MTLD_OK) {
      fprintf(stderr, "mtld-inspect: %s\n", mtld_store_last_error(st));
      rc = 2;
      continue;
    }
    if (json) {
      json_object *o = look[k].is_item ? json_item(def, -1, look[k].id, &it, 1)
                                       : json_user(def, look[k].id, u, 1);
      if (look[k].key) json_object_object_add(o, "key", json_object_new_string(look[k].key));
      print_json(o);
    } else if (look[k].is_item) {
      print_item_text(def, -1, look[k].id, look[k].key, &it);
    } else {
      print_user_text(def, look[k].id, look[k].key, u);
    }
    if (look[k].is_item && partitions) {
      part_look_t pl = {def, json, look[k].key, 0};
      mtld_store_foreach_item_part_of(st, look[k].id, item_part_cb, &pl);
      if (!pl.n && !json)
        printf("  no partition views%s\n", def->item_view == MTLD_ITEM_VIEW_GLOBAL
                                               ? " (the store keeps none: features.item_view = "
                                                 "global)"
                                               : "");
    }
  }
  free(u);
  if (offsets) mtld_store_foreach_offset(st, offset_cb, &w);
  if (dump) {
    mtld_store_foreach_user(st, dump_user_cb, &w);
    mtld_store_foreach_item(st, dump_item_cb, &w);
    mtld_store_foreach_item_part(st, dump_item_part_cb, &w);
  }
  if ((offsets || dump || partitions) && mtld_store_last_error(st)[0]) {
    fprintf(stderr, "mtld-inspect: %s\n", mtld_store_last_error(st));
    rc = 2;
  }
  mtld_store_close(st);
  if (fflush(stdout) != 0) rc = 2;
  return rc;
}
