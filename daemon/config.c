/* config.c - the libconfig file -> mtld_config_t, validated as a whole.
 *
 * Every key the daemon knows is one row of `keys[]` below: its dotted path,
 * its kind, where it lives in mtld_config_t, its range and whether SIGHUP may
 * change it.  Parsing, printing (--check-config) and diffing (reload) all walk
 * that one table, so adding a setting is adding a row, plus a custom kind
 * for what is more than a scalar (model.tasks, a list of groups).  Rows of
 * one group must be adjacent (the printer opens and closes groups as the
 * path changes).
 *
 * Cross-key rules (a Kafka source needs topics and brokers, the model's
 * bounds, ...) live in validate(), after the walk; model.n_dense is not a
 * key but follows the feature definitions.  Every error reads
 * "FILE:LINE: key.path: what". */
#include "daemon/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/log.h"
#include "features/features.h"

/* ---------------------------------------------------------------- errors */

typedef struct {
  const char *name;        /* file name for settings that carry none (string input) */
  const char *include_dir; /* where relative @include names are, or NULL */
  char *err;
  size_t errlen;
} perr_t;

static mtld_status_t fail_v(perr_t *pe, const char *file, int line, const char *key,
                            const char *fmt, va_list ap) {
  char msg[512], where[1280];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  if (!file) file = pe->name;
  /* libconfig names an included file as the @include line wrote it */
  if (pe->include_dir && file[0] != '/' && strcmp(file, pe->name) != 0)
    snprintf(where, sizeof(where), "%s/%s", pe->include_dir, file);
  else
    snprintf(where, sizeof(where), "%s", file);
  if (line > 0)
    snprintf(pe->err, pe->errlen, "%s:%d: %s: %s", where, line, key, msg);
  else
    snprintf(pe->err, pe->errlen, "%s: %s: %s", where, key, msg);
  return MTLD_ERR_CONFIG;
}

/* Fails at setting s (its file and line) about `key`. */
static mtld_status_t fail(perr_t *pe, const config_setting_t *s, const char *key, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
static mtld_status_t fail(perr_t *pe, const config_setting_t *s, const char *key, const char *fmt,
                          ...) {
  va_list ap;
  va_start(ap, fmt);
  mtld_status_t st =
      fail_v(pe, config_setting_source_file(s), (int)config_setting_source_line(s), key, fmt, ap);
  va_end(ap);
  return st;
}

/* The setting at `path`, or its nearest ancestor present in the file (the
 * place to add a missing key).  The root has line 0: no line is printed. */
static const config_setting_t *nearest_setting(const config_t *lc, const char *path) {
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", path);
  for (;;) {
    const config_setting_t *s = config_lookup(lc, buf);
    if (s) return s;
    char *dot = strrchr(buf, '.');
    if (!dot) return config_root_setting(lc);
    *dot = '\0';
  }
}

/* ------------------------------------------------------------- durations */

mtld_status_t mtld_config_parse_duration_ms(const char *s, int64_t *ms) {
  static const struct {
    const char *unit;
    int64_t ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
  const char *p = s;
  if (!isdigit((unsigned char)*p)) return MTLD_ERR_INVALID;
  int64_t v = 0;
  for (; isdigit((unsigned char)*p); p++) {
    int d = *p - '0';
    if (v > (INT64_MAX - d) / 10) return MTLD_ERR_INVALID;
    v = v * 10 + d;
  }
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    if (strcmp(p, units[i].unit) != 0) continue;
    if (v > INT64_MAX / units[i].ms) return MTLD_ERR_INVALID;
    *ms = v * units[i].ms;
    return MTLD_OK;
  }
  return MTLD_ERR_INVALID;
}

void mtld_config_format_duration(int64_t ms, char *buf, size_t len) {
  static const struct {
    const char *unit;
    int64_t ms;
  } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
  if (ms == 0) {
    snprintf(buf, len, "0s");
    return;
  }
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    if (ms % units[i].ms == 0) {
      snprintf(buf, len, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
      return;
    }
  }
  snprintf(buf, len, "%lldms", (long long)ms);
}

/* A duration setting: a string with a unit, or a plain integer counted in
 * unit_ms (1 for *_ms keys, 1000 for seconds). */
static mtld_status_t get_duration(const config_setting_t *s, const char *key, int64_t unit_ms,
                                  int64_t *ms, perr_t *pe) {
  int t = config_setting_type(s);
  if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
    long long v = config_setting_get_int64(s);
    if (v < 0 || v > INT64_MAX / unit_ms) return fail(pe, s, key, "must be >= 0");
    *ms = (int64_t)v * unit_ms;
    return MTLD_OK;
  }
  if (t != CONFIG_TYPE_STRING)
    return fail(pe, s, key, "expected a duration (\"250ms\", \"90s\", \"5m\", \"1h\", \"1d\")");
  const char *str = config_setting_get_string(s);
  if (mtld_config_parse_duration_ms(str, ms) != MTLD_OK)
    return fail(pe, s, key,
                "bad duration \"%s\" (expected digits and a unit: ms, s, m, h or d, e.g. \"90s\")",
                str);
  return MTLD_OK;
}

/* ------------------------------------------------------- the key table */

typedef enum {
  K_INT,      /* int, integer in [min, max] */
  K_SIZE,     /* size_t, integer in [min, max] */
  K_U32,      /* uint32_t, integer in [min, max] */
  K_I64,      /* int64_t, integer in [min, max] */
  K_U64,      /* uint64_t, integer >= 0 (libconfig: up to INT64_MAX with an L suffix) */
  K_BOOL,     /* int, true/false */
  K_DOUBLE,   /* double, finite number in [min, max] (or (min, max] with excl_min) */
  K_FLOAT,    /* float, the same */
  K_STRING,   /* char[size] */
  K_DURATION, /* int or int64_t (by size) milliseconds in [min, max] (or 0 with zero_ok) */
  K_ENUM,     /* int, one of names[] (the value is the index) */
  K_INT_LIST, /* int[size / sizeof(int)], count (an int) at count_offset; min_len..max_len
                 entries, each in [min, max] */
  K_CUSTOM    /* everything else: ops */
} kind_t;

typedef void (*diff_fn_t)(void *ctx, const char *key, int reloadable);
typedef struct key_def key_def_t;

typedef struct {
  /* s is the setting of the row's path (any type: check it). */
  mtld_status_t (*parse)(const key_def_t *k, const config_setting_t *s, mtld_config_t *cfg,
                         perr_t *pe);
  /* Prints the value only (after "name = "); nested lines at indent+2. */
  void (*print)(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int indent);
  int (*equal)(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b);
  /* Optional, instead of equal: reports finer keys itself (each with its own
   * reloadable flag) and returns how many of them are NOT reloadable. */
  int (*diff)(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b, diff_fn_t fn,
              void *ctx);
  /* Optional, with diff: copies from `from` into `to` the finer keys diff
   * reports as reloadable (a reload).  Without it, a reloadable row's field
   * (offset, size) is copied whole. */
  void (*apply)(const key_def_t *k, mtld_config_t *to, const mtld_config_t *from);
} custom_ops_t;

struct key_def {
  const char *path; /* dotted, e.g. "store.batch_max_events" */
  kind_t kind;
  size_t offset, size;      /* of the field in mtld_config_t */
  double min, max;          /* numbers; durations in ms */
  int excl_min;             /* K_DOUBLE, K_FLOAT: value must be > min */
  int64_t unit_ms;          /* K_DURATION: what a plain integer counts */
  int zero_ok;              /* K_DURATION: 0 (off) is allowed besides [min, max] */
  const char *const *names; /* K_ENUM: NULL-terminated, indexed by value */
  size_t count_offset;      /* K_INT_LIST: the int holding the number of entries */
  int min_len, max_len;     /* K_INT_LIST */
  int reloadable;           /* SIGHUP may change it */
  const custom_ops_t *ops;
};

#define DAY_MS 86400000.0
#define FIELD(f) .offset = offsetof(mtld_config_t, f), .size = sizeof(((mtld_config_t *)0)->f)
#define COUNT(f) .count_offset = offsetof(mtld_config_t, f)

static void *field(mtld_config_t *cfg, const key_def_t *k) {
  return (char *)cfg + k->offset;
}
static const void *cfield(const mtld_config_t *cfg, const key_def_t *k) {
  return (const char *)cfg + k->offset;
}

/* ------------------------------------------------------------- printing */

static void print_string(FILE *out, const char *s) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"': fputs("\\\"", out); break;
    case '\\': fputs("\\\\", out); break;
    case '\n': fputs("\\n", out); break;
    case '\r': fputs("\\r", out); break;
    case '\t': fputs("\\t", out); break;
    case '\f': fputs("\\f", out); break;
    default:
      if (*p < 0x20 || *p == 0x7f)
        fprintf(out, "\\x%02x", *p);
      else
        fputc(*p, out);
    }
  }
  fputc('"', out);
}

/* Shortest text that reads back as the same double ("10", not "1e+01"). */
static void format_double(double v, char *buf, size_t len) {
  if (v == floor(v) && fabs(v) < 1e15) {
    snprintf(buf, len, "%.0f", v);
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
}

static void print_double(FILE *out, double v) {
  char buf[64];
  format_double(v, buf, sizeof(buf));
  /* libconfig reads "10" as an integer: keep it a float */
  fprintf(out, "%s%s", buf, strpbrk(buf, ".eE") ? "" : ".0");
}

/* The same for a float: the shortest text that reads back as the same float
 * ("0.001", not the double nearest to 0.001f). */
static void print_float(FILE *out, float v) {
  char buf[64];
  if (v == floorf(v) && fabsf(v) < 1e7f) {
    snprintf(buf, sizeof(buf), "%.0f", (double)v);
  } else {
    for (int prec = 1; prec <= 9; prec++) {
      snprintf(buf, sizeof(buf), "%.*g", prec, (double)v);
      if ((float)strtod(buf, NULL) == v) break;
    }
  }
  fprintf(out, "%s%s", buf, strpbrk(buf, ".eE") ? "" : ".0");
}

/* Integers beyond 32 bits need libconfig's L suffix. */
static void print_int64(FILE *out, long long v) {
  fprintf(out, "%lld%s", v, v > INT32_MAX || v < INT32_MIN ? "L" : "");
}

static void print_duration(FILE *out, int64_t ms) {
  char buf[32];
  mtld_config_format_duration(ms, buf, sizeof(buf));
  fprintf(out, "\"%s\"", buf);
}

/* ------------------------------------------------------- custom kinds */

/* Enumerations stored as int-sized enums: the index of a name is the value. */
static const char *const source_type_names[] = {"kafka", "file", NULL};
static const char *const format_names[] = {"auto", "protobuf", "json", NULL};
static const char *const item_view_names[] = {"partition", "global", NULL};
static const char *const join_mode_names[] = {"impressions", "sampled_negatives", NULL};
_Static_assert(MTLD_SOURCE_KAFKA == 0 && MTLD_SOURCE_FILE == 1 &&
                   sizeof(mtld_source_type_t) == sizeof(int),
               "source_type_names");
_Static_assert(MTLD_FMT_AUTO == 0 && MTLD_FMT_PROTOBUF == 1 && MTLD_FMT_JSON == 2 &&
                   sizeof(mtld_format_t) == sizeof(int),
               "format_names");
_Static_assert(MTLD_ITEM_VIEW_PARTITION == 0 && MTLD_ITEM_VIEW_GLOBAL == 1 &&
                   sizeof(mtld_item_view_t) == sizeof(int),
               "item_view_names");
_Static_assert(MTLD_JOIN_IMPRESSIONS == 0 && MTLD_JOIN_SAMPLED_NEGATIVES == 1 &&
                   sizeof(((mtld_joiner_config_t *)0)->mode) == sizeof(int),
               "join_mode_names");

/* log.level: stored under its canonical name so "warn" and "warning" are equal. */
static const char *log_level_canonical(int level) {
  switch (level) {
  case MTLD_LOG_ERR: return "err";
  case MTLD_LOG_WARNING: return "warning";
  case MTLD_LOG_NOTICE: return "notice";
  case MTLD_LOG_INFO: return "info";
  default: return "debug";
  }
}
static mtld_status_t parse_log_level(const key_def_t *k, const config_setting_t *s,
                                     mtld_config_t *cfg, perr_t *pe) {
  const char *v = config_setting_get_string(s);
  if (!v) return fail(pe, s, k->path, "expected a string (\"info\", \"debug\", ...)");
  int level = mtld_log_level_parse(v);
  if (level < 0)
    return fail(pe, s, k->path,
                "must be \"err\", \"warning\", \"notice\", \"info\" or \"debug\", not \"%s\"", v);
  snprintf(cfg->log_level, sizeof(cfg->log_level), "%s", log_level_canonical(level));
  return MTLD_OK;
}
static void print_log_level(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int ind) {
  print_string(out, cfg->log_level);
}
static int equal_log_level(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b) {
  return strcmp(a->log_level, b->log_level) == 0;
}
static const custom_ops_t log_level_ops = {parse_log_level, print_log_level, equal_log_level, NULL};

/* source.topics: a list of topic names. */
static mtld_status_t parse_topics(const key_def_t *k, const config_setting_t *s, mtld_config_t *cfg,
                                  perr_t *pe) {
  if (!config_setting_is_array(s) && !config_setting_is_list(s))
    return fail(pe, s, k->path, "expected a list of topic names, e.g. [\"events\"]");
  int n = config_setting_length(s);
  if (n > MTLD_MAX_TOPICS) return fail(pe, s, k->path, "at most %d topics", MTLD_MAX_TOPICS);
  for (int i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
    char key[64];
    snprintf(key, sizeof(key), "%s[%d]", k->path, i);
    const char *v = config_setting_get_string(e);
    if (!v) return fail(pe, e, key, "expected a string");
    if (!*v) return fail(pe, e, key, "must not be empty");
    if (strlen(v) >= sizeof(cfg->topics[0]))
      return fail(pe, e, key, "too long (at most %zu bytes)", sizeof(cfg->topics[0]) - 1);
    snprintf(cfg->topics[i], sizeof(cfg->topics[i]), "%s", v);
  }
  cfg->n_topics = n;
  return MTLD_OK;
}
static void print_topics(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int ind) {
  fputc('[', out);
  for (int i = 0; i < cfg->n_topics; i++) {
    if (i) fputs(", ", out);
    print_string(out, cfg->topics[i]);
  }
  fputc(']', out);
}
static int equal_topics(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b) {
  if (a->n_topics != b->n_topics) return 0;
  for (int i = 0; i < a->n_topics; i++)
    if (strcmp(a->topics[i], b->topics[i]) != 0) return 0;
  return 1;
}
static const custom_ops_t topics_ops = {parse_topics, print_topics, equal_topics, NULL};

/* features.half_lives: 1..MTLD_MAX_HALF_LIVES durations (plain integers are seconds). */
static mtld_status_t parse_half_lives(const key_def_t *k, const config_setting_t *s,
                                      mtld_config_t *cfg, perr_t *pe) {
  if (!config_setting_is_array(s) && !config_setting_is_list(s))
    return fail(pe, s, k->path, "expected a list of durations, e.g. [\"1h\", \"1d\", \"7d\"]");
  int n = config_setting_length(s);
  if (n < 1 || n > MTLD_MAX_HALF_LIVES)
    return fail(pe, s, k->path, "must have 1 to %d entries, not %d", MTLD_MAX_HALF_LIVES, n);
  for (int i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
    char key[64];
    snprintf(key, sizeof(key), "%s[%d]", k->path, i);
    int64_t ms;
    mtld_status_t st = get_duration(e, key, 1000, &ms, pe);
    if (st != MTLD_OK) return st;
    if (ms <= 0) return fail(pe, e, key, "must be > 0");
    cfg->features.half_life_s[i] = (double)ms / 1000.0;
  }
  cfg->features.n_half_lives = n;
  return MTLD_OK;
}
static void print_half_lives(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int ind) {
  fputc('[', out);
  for (int i = 0; i < cfg->features.n_half_lives; i++) {
    if (i) fputs(", ", out);
    print_duration(out, llround(cfg->features.half_life_s[i] * 1000.0));
  }
  fputc(']', out);
}
static int equal_half_lives(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b) {
  if (a->features.n_half_lives != b->features.n_half_lives) return 0;
  for (int i = 0; i < a->features.n_half_lives; i++)
    if (a->features.half_life_s[i] != b->features.half_life_s[i]) return 0;
  return 1;
}
static const custom_ops_t half_lives_ops = {parse_half_lives, print_half_lives, equal_half_lives,
                                            NULL};

/* kafka: a free group passed to librdkafka.  libconfig names cannot hold
 * '.', so they are written with '_' (no librdkafka property has one). */
static void kafka_name_to_file(const char *name, char *out, size_t len) {
  snprintf(out, len, "%s", name);
  for (char *p = out; *p; p++)
    if (*p == '.') *p = '_';
}

static const char *kafka_get(const mtld_config_t *cfg, const char *name) {
  for (int i = 0; i < cfg->n_kafka; i++)
    if (strcmp(cfg->kafka[i].name, name) == 0) return cfg->kafka[i].value;
  return NULL;
}

static mtld_status_t parse_kafka(const key_def_t *k, const config_setting_t *s, mtld_config_t *cfg,
                                 perr_t *pe) {
  if (!config_setting_is_group(s))
    return fail(pe, s, k->path, "expected a group: kafka = { bootstrap_servers = \"...\"; };");
  int n = config_setting_length(s);
  cfg->n_kafka = 0;
  for (int i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
    char key[256];
    snprintf(key, sizeof(key), "kafka.%s", config_setting_name(e));
    if (cfg->n_kafka == MTLD_MAX_KAFKA_PROPS)
      return fail(pe, e, key, "too many kafka properties (at most %d)", MTLD_MAX_KAFKA_PROPS);
    mtld_kv_t *kv = &cfg->kafka[cfg->n_kafka];
    if (strlen(config_setting_name(e)) >= sizeof(kv->name))
      return fail(pe, e, key, "name too long (at most %zu bytes)", sizeof(kv->name) - 1);
    snprintf(kv->name, sizeof(kv->name), "%s", config_setting_name(e));
    for (char *p = kv->name; *p; p++)
      if (*p == '_') *p = '.';
    char num[64];
    const char *v = num;
    switch (config_setting_type(e)) {
    case CONFIG_TYPE_STRING: v = config_setting_get_string(e); break;
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: snprintf(num, sizeof(num), "%lld", config_setting_get_int64(e)); break;
    case CONFIG_TYPE_BOOL: v = config_setting_get_bool(e) ? "true" : "false"; break;
    case CONFIG_TYPE_FLOAT: format_double(config_setting_get_float(e), num, sizeof(num)); break;
    default: return fail(pe, e, key, "expected a string, a number or a boolean");
    }
    if (strlen(v) >= sizeof(kv->value))
      return fail(pe, e, key, "value too long (at most %zu bytes)", sizeof(kv->value) - 1);
    snprintf(kv->value, sizeof(kv->value), "%s", v);
    cfg->n_kafka++;
  }
  if (!kafka_get(cfg, "group.id")) {
    if (cfg->n_kafka == MTLD_MAX_KAFKA_PROPS)
      return fail(pe, s, k->path, "too many kafka properties (at most %d with group_id)",
                  MTLD_MAX_KAFKA_PROPS);
    snprintf(cfg->kafka[cfg->n_kafka].name, sizeof(cfg->kafka[0].name), "group.id");
    snprintf(cfg->kafka[cfg->n_kafka].value, sizeof(cfg->kafka[0].value), "mtld");
    cfg->n_kafka++;
  }
  return MTLD_OK;
}
static void print_kafka(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int ind) {
  fputs("{\n", out);
  for (int i = 0; i < cfg->n_kafka; i++) {
    char name[128];
    kafka_name_to_file(cfg->kafka[i].name, name, sizeof(name));
    fprintf(out, "%*s%s = ", ind + 2, "", name);
    print_string(out, cfg->kafka[i].value);
    fputs(";\n", out);
  }
  fprintf(out, "%*s}", ind, "");
}
/* One key per property added, removed or changed. */
static int diff_kafka(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b,
                      diff_fn_t fn, void *ctx) {
  int changed = 0;
  for (int pass = 0; pass < 2; pass++) {
    const mtld_config_t *x = pass ? b : a, *y = pass ? a : b;
    for (int i = 0; i < x->n_kafka; i++) {
      const char *other = kafka_get(y, x->kafka[i].name);
      /* pass 1 only reports what pass 0 could not see: properties new in b */
      if (pass ? other != NULL : (other && strcmp(other, x->kafka[i].value) == 0)) continue;
      char name[128], key[160];
      kafka_name_to_file(x->kafka[i].name, name, sizeof(name));
      snprintf(key, sizeof(key), "kafka.%s", name);
      if (fn) fn(ctx, key, k->reloadable);
      changed++;
    }
  }
  return k->reloadable ? 0 : changed;
}
static const custom_ops_t kafka_ops = {parse_kafka, print_kafka, NULL, diff_kafka};

/* ------------------------------------------------------------- model.* */

static size_t edit_distance(const char *a, const char *b);

/* Enumerations: the index of a name is the value (the enums of model.h). */
static const char *const on_gap_names[] = {"stop", "continue", NULL};
static const char *const arch_names[] = {"single_task", "shared_bottom", "mmoe", "ple", NULL};
static const char *const optim_names[] = {"adam", "adagrad", NULL};
static const char *const emb_optim_names[] = {"adagrad", "adam", NULL};
static const char *const task_type_names[] = {"binary", "esmm", "regression", NULL};
static const char *const label_names[] = {"click",  "cart",   "purchase", "rating",
                                          "review", "demand", NULL};
static const char *const reg_loss_names[] = {"mse", "huber", NULL};
static const char *const interactions_names[] = {"none", "dot", NULL};
_Static_assert(MTLD_ARCH_MMOE == 2 && MTLD_ARCH_PLE == 3, "arch_names");
_Static_assert(MTLD_OPT_ADAGRAD == 1 && MTLD_EMB_ADAM == 1, "optim_names");
_Static_assert(MTLD_TASK_ESMM_CTCVR == 1 && MTLD_TASK_REGRESSION == 2, "task_type_names");
_Static_assert(MTLD_LABEL_PURCHASE == 2 && MTLD_LABEL_RATING == 3 && MTLD_LABEL_REVIEW == 4 &&
                   MTLD_LABEL_DEMAND == 5 && MTLD_N_LABELS == 6,
               "label_names");
_Static_assert(MTLD_REG_HUBER == 1, "reg_loss_names");
_Static_assert(MTLD_INTER_NONE == 0 && MTLD_INTER_DOT == 1, "interactions_names");

/* Index of v in the NULL-terminated names, or -1. */
static int name_index(const char *const *names, const char *v) {
  for (int i = 0; names[i]; i++)
    if (strcmp(names[i], v) == 0) return i;
  return -1;
}

/* "\"a\", \"b\" or \"c\"" */
static void names_text(const char *const *names, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; names[i] && used < len; i++) {
    const char *sep = i == 0 ? "" : names[i + 1] ? ", " : " or ";
    used += (size_t)snprintf(buf + used, len - used, "%s\"%s\"", sep, names[i]);
  }
}

/* Reads an enumeration setting into *out. */
static mtld_status_t get_enum(const config_setting_t *s, const char *key, const char *const *names,
                              int *out, perr_t *pe) {
  char list[256];
  names_text(names, list, sizeof(list));
  const char *v = config_setting_get_string(s);
  if (!v) return fail(pe, s, key, "expected a string (%s)", list);
  int i = name_index(names, v);
  if (i < 0) return fail(pe, s, key, "must be %s, not \"%s\"", list, v);
  *out = i;
  return MTLD_OK;
}

/* A finite number (integer or float) in [lo, hi] (or (lo, hi] with excl_lo). */
static mtld_status_t get_number(const config_setting_t *s, const char *key, double lo, int excl_lo,
                                double hi, double *v, perr_t *pe) {
  int t = config_setting_type(s);
  if (t == CONFIG_TYPE_FLOAT)
    *v = config_setting_get_float(s);
  else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
    *v = (double)config_setting_get_int64(s);
  else
    return fail(pe, s, key, "expected a number");
  if (!isfinite(*v)) return fail(pe, s, key, "must be finite");
  if (excl_lo ? *v > lo && *v <= hi : *v >= lo && *v <= hi) return MTLD_OK;
  if (excl_lo) return fail(pe, s, key, "must be > %g and <= %g", lo, hi);
  return fail(pe, s, key, "must be between %g and %g", lo, hi);
}

/* features.attributes: a list of groups, one per declared attribute:
 * { name = "age_level"; owner = "user"; kind = "categorical"; rows = 1000;
 *   default = ""; }.  Part of the feature definitions (not reloadable). */
static const char *const attr_owner_names[] = {"user", "item", "context", NULL};
static const char *const attr_kind_names[] = {"categorical", "numeric", NULL};
_Static_assert(MTLD_ATTR_USER == 0 && MTLD_ATTR_ITEM == 1 && MTLD_ATTR_CONTEXT == 2,
               "attr_owner_names");
_Static_assert(MTLD_ATTR_CATEGORICAL == 0 && MTLD_ATTR_NUMERIC == 1, "attr_kind_names");

static mtld_status_t parse_attribute(const key_def_t *k, const config_setting_t *g, int i,
                                     mtld_feature_def_t *def, perr_t *pe) {
  char prefix[64], key[128];
  snprintf(prefix, sizeof(prefix), "%s[%d]", k->path, i);
  if (!config_setting_is_group(g))
    return fail(pe, g, prefix,
                "expected a group: { name = \"age_level\"; owner = \"user\"; kind = "
                "\"categorical\"; rows = 1000; }");
  const char *name = NULL, *dstr = "";
  int owner = -1, kind = -1;
  double rows = 0, dnum = 0;
  const config_setting_t *name_s = NULL, *rows_s = NULL, *default_s = NULL;
  static const char *const attr_keys[] = {"name", "owner", "kind", "rows", "default", NULL};
  int n = config_setting_length(g);
  for (int j = 0; j < n; j++) {
    const config_setting_t *m = config_setting_get_elem(g, (unsigned)j);
    const char *mn = config_setting_name(m);
    snprintf(key, sizeof(key), "%s.%s", prefix, mn);
    mtld_status_t st = MTLD_OK;
    if (strcmp(mn, "name") == 0) {
      name = config_setting_get_string(m);
      if (!name) return fail(pe, m, key, "expected a string");
      name_s = m;
    } else if (strcmp(mn, "owner") == 0) {
      st = get_enum(m, key, attr_owner_names, &owner, pe);
    } else if (strcmp(mn, "kind") == 0) {
      st = get_enum(m, key, attr_kind_names, &kind, pe);
    } else if (strcmp(mn, "rows") == 0) {
      st = get_number(m, key, 1, 0, 1 << 26, &rows, pe);
      if (st == MTLD_OK && rows != floor(rows)) return fail(pe, m, key, "expected an integer");
      rows_s = m;
    } else if (strcmp(mn, "default") == 0) {
      default_s = m;
    } else {
      size_t best = 3;
      const char *hint = NULL;
      for (int u = 0; attr_keys[u]; u++) {
        size_t d = edit_distance(mn, attr_keys[u]);
        if (d < best) best = d, hint = attr_keys[u];
      }
      if (hint) return fail(pe, m, key, "unknown key (did you mean %s.%s?)", prefix, hint);
      return fail(pe, m, key, "unknown key (an attribute has name, owner, kind, rows, default)");
    }
    if (st != MTLD_OK) return st;
  }
  snprintf(key, sizeof(key), "%s.name", prefix);
  if (!name_s) return fail(pe, g, key, "required");
  if (!*name || strlen(name) > MTLD_ATTR_NAME_LEN)
    return fail(pe, name_s, key, "must have 1 to %d bytes", MTLD_ATTR_NAME_LEN);
  for (int u = 0; u < i; u++)
    if (strcmp(def->attrs[u].name, name) == 0)
      return fail(pe, name_s, key, "duplicate attribute name \"%s\" (also %s[%d])", name, k->path,
                  u);
  snprintf(key, sizeof(key), "%s.owner", prefix);
  if (owner < 0) return fail(pe, g, key, "required (\"user\", \"item\" or \"context\")");
  snprintf(key, sizeof(key), "%s.kind", prefix);
  if (kind < 0) return fail(pe, g, key, "required (\"categorical\" or \"numeric\")");
  snprintf(key, sizeof(key), "%s.rows", prefix);
  if (kind == MTLD_ATTR_NUMERIC && rows_s)
    return fail(pe, rows_s, key, "only for kind \"categorical\"");
  if (kind == MTLD_ATTR_CATEGORICAL && !rows_s)
    return fail(pe, g, key, "required for kind \"categorical\" (embedding rows, e.g. 1000)");
  if (default_s) {
    snprintf(key, sizeof(key), "%s.default", prefix);
    if (kind == MTLD_ATTR_CATEGORICAL) {
      dstr = config_setting_get_string(default_s);
      if (!dstr) return fail(pe, default_s, key, "expected a string (a categorical value)");
      if (strlen(dstr) > MTLD_ATTR_VALUE_LEN)
        return fail(pe, default_s, key, "too long (at most %d bytes)", MTLD_ATTR_VALUE_LEN);
    } else {
      mtld_status_t st = get_number(default_s, key, -1e300, 0, 1e300, &dnum, pe);
      if (st != MTLD_OK) return st;
    }
  }
  mtld_attr_def_set(&def->attrs[i], name, owner, kind, (uint32_t)rows, dstr, dnum);
  return MTLD_OK;
}

static mtld_status_t parse_attributes(const key_def_t *k, const config_setting_t *s,
                                      mtld_config_t *cfg, perr_t *pe) {
  if (!config_setting_is_list(s))
    return fail(pe, s, k->path,
                "expected a list of groups: attributes = ( { name = \"age_level\"; owner = "
                "\"user\"; kind = \"categorical\"; rows = 1000; } );");
  int n = config_setting_length(s);
  if (n > MTLD_ATTR_MAX)
    return fail(pe, s, k->path, "at most %d attributes, not %d", MTLD_ATTR_MAX, n);
  mtld_feature_def_t *def = &cfg->features;
  def->n_attrs = 0;
  for (int i = 0; i < n; i++) {
    mtld_status_t st = parse_attribute(k, config_setting_get_elem(s, (unsigned)i), i, def, pe);
    if (st != MTLD_OK) return st;
  }
  def->n_attrs = n;
  return MTLD_OK;
}

static void print_attributes(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int ind) {
  const mtld_feature_def_t *def = &cfg->features;
  fputs("(", out);
  for (int i = 0; i < def->n_attrs; i++) {
    const mtld_attr_def_t *a = &def->attrs[i];
    fprintf(out, "%s%*s{ name = ", i ? ",\n" : "\n", ind + 2, "");
    print_string(out, a->name);
    fprintf(out, "; owner = \"%s\"; kind = \"%s\";", attr_owner_names[a->owner],
            attr_kind_names[a->kind]);
    if (a->kind == MTLD_ATTR_CATEGORICAL) {
      fprintf(out, " rows = %u; default = ", a->rows);
      print_string(out, a->default_str);
    } else {
      fputs(" default = ", out);
      print_double(out, a->default_num);
    }
    fputs("; }", out);
  }
  if (def->n_attrs) fprintf(out, "\n%*s", ind, "");
  fputc(')', out);
}

static int equal_attributes(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b) {
  const mtld_feature_def_t *x = &a->features, *y = &b->features;
  if (x->n_attrs != y->n_attrs) return 0;
  for (int i = 0; i < x->n_attrs; i++) {
    const mtld_attr_def_t *p = &x->attrs[i], *q = &y->attrs[i];
    if (strcmp(p->name, q->name) != 0 || p->owner != q->owner || p->kind != q->kind ||
        p->rows != q->rows || strcmp(p->default_str, q->default_str) != 0 ||
        p->default_num != q->default_num)
      return 0;
  }
  return 1;
}
static const custom_ops_t attributes_ops = {parse_attributes, print_attributes, equal_attributes,
                                            NULL};

/* model.sequence: recent items the candidate item attends over; 0 turns
 * target attention off (no item field as query). */
static int sequence_of(const mtld_model_config_t *m) {
  return m->item_field >= 0 ? m->seq_max : 0;
}
static mtld_status_t parse_sequence(const key_def_t *k, const config_setting_t *s,
                                    mtld_config_t *cfg, perr_t *pe) {
  int t = config_setting_type(s);
  if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
    return fail(pe, s, k->path, "expected an integer");
  long long v = config_setting_get_int64(s);
  if (v < 0 || v > MTLD_MAX_SAMPLE_SEQ)
    return fail(pe, s, k->path, "must be between 0 and %d", MTLD_MAX_SAMPLE_SEQ);
  cfg->model.seq_max = (int)v;
  cfg->model.item_field = v > 0 ? MTLD_FIELD_ITEM : -1;
  cfg->model.category_field = MTLD_FIELD_CATEGORY;
  return MTLD_OK;
}
static void print_sequence(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int ind) {
  fprintf(out, "%d", sequence_of(&cfg->model));
}
static int equal_sequence(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b) {
  return sequence_of(&a->model) == sequence_of(&b->model);
}
static const custom_ops_t sequence_ops = {parse_sequence, print_sequence, equal_sequence, NULL};

/* model.tasks: a list of groups, one per task, in output order.  A parent
 * (ESMM) is named and must be an earlier binary task, or an earlier ESMM
 * task (a chain: ctr -> ctcvr -> review). */
static const char *const task_keys[] = {"name", "type",        "label",     "parent", "weight",
                                        "loss", "huber_delta", "bias_init", "bias",   NULL};
/* task.bias (regression): "mean" = mtld_task_t.bias_mean 1 (the default) */
static const char *const bias_names[] = {"fixed", "mean", NULL};

static int task_name_ok(const char *v) {
  if (!isalpha((unsigned char)v[0])) return 0;
  for (const char *p = v; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '_') return 0;
  return 1;
}

/* Parses group g into tasks[i] (tasks[0..i) are done: duplicates, parent). */
static mtld_status_t parse_task(const key_def_t *k, const config_setting_t *g, int i,
                                mtld_task_t *tasks, perr_t *pe) {
  char prefix[64], key[128];
  snprintf(prefix, sizeof(prefix), "%s[%d]", k->path, i);
  if (!config_setting_is_group(g))
    return fail(pe, g, prefix,
                "expected a group: { name = \"ctr\"; type = \"binary\"; label = \"click\"; }");
  mtld_task_t *t = &tasks[i];
  memset(t, 0, sizeof(*t));
  t->type = MTLD_TASK_BINARY;
  t->label = -1;
  t->parent = -1;
  t->loss_weight = 1.0f;
  t->reg_loss = MTLD_REG_MSE;
  t->bias_mean = 1;
  const config_setting_t *name_s = NULL, *label_s = NULL, *parent_s = NULL, *loss_s = NULL,
                         *delta_s = NULL, *bias_s = NULL;
  int n = config_setting_length(g);
  for (int j = 0; j < n; j++) {
    const config_setting_t *m = config_setting_get_elem(g, (unsigned)j);
    const char *name = config_setting_name(m);
    snprintf(key, sizeof(key), "%s.%s", prefix, name);
    mtld_status_t st = MTLD_OK;
    double v;
    if (strcmp(name, "name") == 0) {
      const char *s = config_setting_get_string(m);
      if (!s) return fail(pe, m, key, "expected a string");
      if (strlen(s) >= MTLD_NAME_MAX)
        return fail(pe, m, key, "too long (at most %d bytes)", MTLD_NAME_MAX - 1);
      if (!task_name_ok(s))
        return fail(pe, m, key,
                    "\"%s\": must start with a letter and hold only letters, "
                    "digits and '_'",
                    s);
      for (int u = 0; u < i; u++)
        if (strcmp(tasks[u].name, s) == 0)
          return fail(pe, m, key, "duplicate task name \"%s\" (also %s[%d])", s, k->path, u);
      snprintf(t->name, sizeof(t->name), "%s", s);
      name_s = m;
    } else if (strcmp(name, "type") == 0) {
      st = get_enum(m, key, task_type_names, &t->type, pe);
    } else if (strcmp(name, "label") == 0) {
      st = get_enum(m, key, label_names, &t->label, pe);
      label_s = m;
    } else if (strcmp(name, "parent") == 0) {
      if (!config_setting_get_string(m)) return fail(pe, m, key, "expected a task name");
      parent_s = m;
    } else if (strcmp(name, "weight") == 0) {
      if ((st = get_number(m, key, 0, 0, 1e6, &v, pe)) == MTLD_OK) t->loss_weight = (float)v;
    } else if (strcmp(name, "loss") == 0) {
      st = get_enum(m, key, reg_loss_names, &t->reg_loss, pe);
      loss_s = m;
    } else if (strcmp(name, "huber_delta") == 0) {
      if ((st = get_number(m, key, 0, 1, 1e6, &v, pe)) == MTLD_OK) t->huber_delta = (float)v;
      delta_s = m;
    } else if (strcmp(name, "bias_init") == 0) {
      if ((st = get_number(m, key, -1e6, 0, 1e6, &v, pe)) == MTLD_OK) t->bias_init = (float)v;
    } else if (strcmp(name, "bias") == 0) {
      st = get_enum(m, key, bias_names, &t->bias_mean, pe);
      bias_s = m;
    } else {
      size_t best = 3;
      const char *hint = NULL;
      for (int u = 0; task_keys[u]; u++) {
        size_t d = edit_distance(name, task_keys[u]);
        if (d < best) best = d, hint = task_keys[u];
      }
      if (hint) return fail(pe, m, key, "unknown key (did you mean %s.%s?)", prefix, hint);
      return fail(pe, m, key, "unknown key (a task has %s)",
                  "name, type, label, parent, weight, loss, huber_delta, bias_init, bias");
    }
    if (st != MTLD_OK) return st;
  }

  snprintf(key, sizeof(key), "%s.name", prefix);
  if (!name_s) return fail(pe, g, key, "required");
  snprintf(key, sizeof(key), "%s.label", prefix);
  if (!label_s)
    return fail(pe, g, key,
                "required (\"click\", \"cart\", \"purchase\", \"rating\", \"review\" or "
                "\"demand\")");
  if (t->label == MTLD_LABEL_RATING && t->type != MTLD_TASK_REGRESSION)
    return fail(pe, label_s, key, "\"rating\" (1 to 5 stars) needs type \"regression\"");
  if (t->label == MTLD_LABEL_DEMAND && t->type != MTLD_TASK_REGRESSION)
    return fail(pe, label_s, key,
                "\"demand\" (orders of an item in the next joiner.demand_horizon) needs type "
                "\"regression\"");
  if (t->label == MTLD_LABEL_REVIEW && t->type == MTLD_TASK_REGRESSION)
    return fail(pe, label_s, key,
                "\"review\" (click, purchase and review: 0/1) needs type \"esmm\" or \"binary\"");
  snprintf(key, sizeof(key), "%s.loss", prefix);
  if (loss_s && t->type != MTLD_TASK_REGRESSION)
    return fail(pe, loss_s, key, "only for type \"regression\"");
  snprintf(key, sizeof(key), "%s.huber_delta", prefix);
  if (delta_s && !(t->type == MTLD_TASK_REGRESSION && t->reg_loss == MTLD_REG_HUBER))
    return fail(pe, delta_s, key, "only with type \"regression\" and loss \"huber\"");
  if (t->type == MTLD_TASK_REGRESSION && t->reg_loss == MTLD_REG_HUBER && !delta_s)
    t->huber_delta = 1.0f;
  snprintf(key, sizeof(key), "%s.bias", prefix);
  if (bias_s && t->type != MTLD_TASK_REGRESSION)
    return fail(pe, bias_s, key, "only for type \"regression\"");
  if (t->type != MTLD_TASK_REGRESSION) t->bias_mean = 0;

  snprintf(key, sizeof(key), "%s.parent", prefix);
  if (t->type == MTLD_TASK_ESMM_CTCVR && !parent_s)
    return fail(pe, g, key, "required for type \"esmm\" (the binary click task it multiplies)");
  if (parent_s) {
    const char *p = config_setting_get_string(parent_s);
    if (t->type != MTLD_TASK_ESMM_CTCVR) return fail(pe, parent_s, key, "only for type \"esmm\"");
    for (int u = 0; u < i && t->parent < 0; u++)
      if (strcmp(tasks[u].name, p) == 0) t->parent = u;
    if (t->parent < 0)
      return fail(pe, parent_s, key, "no earlier task named \"%s\" (list the parent first)", p);
    if (tasks[t->parent].type == MTLD_TASK_REGRESSION)
      return fail(pe, parent_s, key, "\"%s\" must be a binary or esmm task, not %s", p,
                  task_type_names[tasks[t->parent].type]);
  }
  return MTLD_OK;
}

static mtld_status_t parse_tasks(const key_def_t *k, const config_setting_t *s, mtld_config_t *cfg,
                                 perr_t *pe) {
  if (!config_setting_is_list(s))
    return fail(pe, s, k->path,
                "expected a list of groups: tasks = ( { name = \"ctr\"; label = \"click\"; } );");
  int n = config_setting_length(s);
  if (n < 1) return fail(pe, s, k->path, "at least one task is required");
  if (n > MTLD_MAX_TASKS)
    return fail(pe, s, k->path, "at most %d tasks, not %d", MTLD_MAX_TASKS, n);
  mtld_task_t tasks[MTLD_MAX_TASKS];
  memset(tasks, 0, sizeof(tasks));
  for (int i = 0; i < n; i++) {
    mtld_status_t st = parse_task(k, config_setting_get_elem(s, (unsigned)i), i, tasks, pe);
    if (st != MTLD_OK) return st;
  }
  memcpy(cfg->model.tasks, tasks, sizeof(tasks));
  cfg->model.n_tasks = n;
  return MTLD_OK;
}

static void print_tasks(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int ind) {
  const mtld_model_config_t *m = &cfg->model;
  fputs("(\n", out);
  for (int i = 0; i < m->n_tasks; i++) {
    const mtld_task_t *t = &m->tasks[i];
    fprintf(out, "%*s{ name = ", ind + 2, "");
    print_string(out, t->name);
    fprintf(out, "; type = \"%s\"; label = \"%s\";", task_type_names[t->type],
            label_names[t->label]);
    if (t->parent >= 0) {
      fputs(" parent = ", out);
      print_string(out, m->tasks[t->parent].name);
      fputc(';', out);
    }
    fputs(" weight = ", out);
    print_float(out, t->loss_weight);
    fputc(';', out);
    if (t->type == MTLD_TASK_REGRESSION) {
      fprintf(out, " loss = \"%s\";", reg_loss_names[t->reg_loss]);
      if (t->reg_loss == MTLD_REG_HUBER) {
        fputs(" huber_delta = ", out);
        print_float(out, t->huber_delta);
        fputc(';', out);
      }
      if (!t->bias_mean) fputs(" bias = \"fixed\";", out);
    }
    if (t->bias_init != 0.0f) {
      fputs(" bias_init = ", out);
      print_float(out, t->bias_init);
      fputc(';', out);
    }
    fprintf(out, " }%s\n", i + 1 < m->n_tasks ? "," : "");
  }
  fprintf(out, "%*s)", ind, "");
}

/* Equal but for the (reloadable) loss weight. */
static int task_same_shape(const mtld_task_t *a, const mtld_task_t *b) {
  if (strcmp(a->name, b->name) != 0 || a->type != b->type || a->label != b->label ||
      a->parent != b->parent || a->bias_init != b->bias_init || a->bias_mean != b->bias_mean)
    return 0;
  if (a->type != MTLD_TASK_REGRESSION) return 1;
  return a->reg_loss == b->reg_loss &&
         (a->reg_loss != MTLD_REG_HUBER || a->huber_delta == b->huber_delta);
}

/* A changed weight is "model.tasks.NAME.weight" (reloadable); any other
 * change (a task added, removed, renamed, retyped, ...) is "model.tasks"
 * (restart: the network's outputs change). */
static int diff_tasks(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b,
                      diff_fn_t fn, void *ctx) {
  const mtld_model_config_t *x = &a->model, *y = &b->model;
  int same = x->n_tasks == y->n_tasks;
  for (int i = 0; same && i < x->n_tasks; i++) same = task_same_shape(&x->tasks[i], &y->tasks[i]);
  if (!same) {
    if (fn) fn(ctx, k->path, 0);
    return 1;
  }
  for (int i = 0; i < x->n_tasks; i++) {
    if (x->tasks[i].loss_weight == y->tasks[i].loss_weight) continue;
    char key[128];
    snprintf(key, sizeof(key), "%s.%s.weight", k->path, x->tasks[i].name);
    if (fn) fn(ctx, key, 1);
  }
  return 0;
}
/* The reloadable part of diff_tasks: the weights, when the tasks are the same. */
static void apply_tasks(const key_def_t *k, mtld_config_t *to, const mtld_config_t *from) {
  mtld_model_config_t *x = &to->model;
  const mtld_model_config_t *y = &from->model;
  if (x->n_tasks != y->n_tasks) return;
  for (int i = 0; i < x->n_tasks; i++)
    if (!task_same_shape(&x->tasks[i], &y->tasks[i])) return;
  for (int i = 0; i < x->n_tasks; i++) x->tasks[i].loss_weight = y->tasks[i].loss_weight;
}
static const custom_ops_t tasks_ops = {parse_tasks, print_tasks, NULL, diff_tasks, apply_tasks};

/* The table.  Keep a group's rows together; conf/mtld.conf documents each
 * row.  R = reloadable on SIGHUP.  Durations: min/max in ms; unit_ms is what
 * a plain integer counts (1 for *_ms keys, 1000 = seconds otherwise). */
#define R .reloadable = 1
// clang-format off
static const key_def_t keys[] = {
  {.path = "source.type",   .kind = K_ENUM,   FIELD(source_type), .names = source_type_names},
  {.path = "source.topics", .kind = K_CUSTOM, FIELD(topics),      .ops = &topics_ops},
  {.path = "source.file",   .kind = K_STRING, FIELD(source_file)},
  {.path = "source.format", .kind = K_ENUM,   FIELD(format),      .names = format_names},
  {.path = "source.on_gap", .kind = K_ENUM,   FIELD(on_gap),      .names = on_gap_names},

  {.path = "kafka", .kind = K_CUSTOM, FIELD(kafka), .ops = &kafka_ops},

  {.path = "dead_letter.topic", .kind = K_STRING, FIELD(dead_letter_topic), R},
  {.path = "scaleout.changelog_topic", .kind = K_STRING, FIELD(scaleout_changelog_topic)},
  {.path = "scaleout.group_topic",     .kind = K_STRING, FIELD(scaleout_group_topic)},
  {.path = "scaleout.restore_timeout", .kind = K_DURATION, FIELD(scaleout_restore_timeout_ms),
   .min = 1000, .max = 86400000, .unit_ms = 1000},
  {.path = "scaleout.model_topic",    .kind = K_STRING,   FIELD(scaleout_model_topic)},
  {.path = "scaleout.sync_interval",  .kind = K_DURATION, FIELD(scaleout_sync_interval_ms),
   .min = 10, .max = 3600000, .unit_ms = 1000},
  {.path = "scaleout.base_interval",  .kind = K_DURATION, FIELD(scaleout_base_interval_ms),
   .min = 1000, .max = 86400000, .unit_ms = 1000},
  {.path = "scaleout.sync_accumulators", .kind = K_BOOL, FIELD(scaleout_sync_accumulators)},
  {.path = "scaleout.sync_samples",   .kind = K_INT,      FIELD(scaleout_sync_samples),
   .min = 0, .max = 1000000000},
  {.path = "scaleout.max_stale_rounds", .kind = K_INT,    FIELD(scaleout_max_stale_rounds),
   .min = -1, .max = 1000},
  {.path = "scaleout.peer_timeout",   .kind = K_DURATION, FIELD(scaleout_peer_timeout_ms),
   .min = 100, .max = 3600000, .unit_ms = 1000},

  {.path = "store.path",             .kind = K_STRING,   FIELD(store_path)},
  {.path = "store.sync",             .kind = K_BOOL,     FIELD(store_sync)},
  {.path = "store.block_cache_mb",   .kind = K_INT,      FIELD(store_block_cache_mb),
   .min = 1, .max = 1 << 20},
  {.path = "store.write_buffer_mb",  .kind = K_INT,      FIELD(store_write_buffer_mb),
   .min = 4, .max = 1 << 20},
  {.path = "store.batch_max_events", .kind = K_INT,      FIELD(batch_max_events),
   .min = 1, .max = 1000000, R},
  {.path = "store.batch_max_ms",     .kind = K_DURATION, FIELD(batch_max_ms),
   .min = 1, .max = 60000, .unit_ms = 1, R},
  {.path = "store.commit_retry_timeout", .kind = K_DURATION, FIELD(commit_retry_timeout_ms),
   .min = 1000, .max = 86400000, .unit_ms = 1000},
  {.path = "store.verify_on_start",  .kind = K_BOOL,     FIELD(store_verify_on_start)},
  {.path = "store.cache_mb",         .kind = K_INT,      FIELD(store_cache_mb),
   .min = 0, .max = 1048576},

  {.path = "features.half_lives",      .kind = K_CUSTOM, FIELD(features.half_life_s),
   .ops = &half_lives_ops},
  {.path = "features.sequence_length", .kind = K_INT,    FIELD(features.seq_len),
   .min = 1, .max = MTLD_MAX_SEQ},
  {.path = "features.prior_strength",  .kind = K_DOUBLE, FIELD(features.prior_strength),
   .min = 0, .excl_min = 1, .max = 1e9},
  {.path = "features.ctr_prior",  .kind = K_DOUBLE, FIELD(features.ctr_prior),  .min = 0, .max = 1},
  {.path = "features.cvr_prior",  .kind = K_DOUBLE, FIELD(features.cvr_prior),  .min = 0, .max = 1},
  {.path = "features.cart_prior", .kind = K_DOUBLE, FIELD(features.cart_prior), .min = 0, .max = 1},
  {.path = "features.item_view",  .kind = K_ENUM,   FIELD(features.item_view),
   .names = item_view_names},
  {.path = "features.attributes", .kind = K_CUSTOM, FIELD(features.attrs),
   .ops = &attributes_ops},

  {.path = "validation.max_record_bytes", .kind = K_SIZE,     FIELD(limits.max_record_bytes),
   .min = 64, .max = 256 << 20, R},
  {.path = "validation.max_lateness",     .kind = K_DURATION, FIELD(limits.max_lateness_ms),
   .min = 0, .max = 365 * DAY_MS, .unit_ms = 1000, R},
  {.path = "validation.max_ahead",        .kind = K_DURATION, FIELD(limits.max_ahead_ms),
   .min = 0, .max = 365 * DAY_MS, .unit_ms = 1000, R},
  {.path = "validation.dedup",            .kind = K_BOOL,     FIELD(limits.dedup), R},

  /* The joiner's windows and the watermark shape the training stream: a
   * change needs a restart. */
  {.path = "joiner.mode",                   .kind = K_ENUM,     FIELD(joiner.mode),
   .names = join_mode_names},
  {.path = "joiner.click_window",           .kind = K_DURATION, FIELD(joiner.click_window_ms),
   .min = 0, .max = 30 * DAY_MS, .unit_ms = 1000},
  {.path = "joiner.conversion_window",      .kind = K_DURATION, FIELD(joiner.conversion_window_ms),
   .min = 0, .max = 90 * DAY_MS, .unit_ms = 1000},
  {.path = "joiner.review_window",          .kind = K_DURATION, FIELD(review_window_ms),
   .min = 0, .max = 90 * DAY_MS, .unit_ms = 1000},
  {.path = "joiner.demand_horizon",         .kind = K_DURATION, FIELD(demand.horizon_ms),
   .min = 1000, .max = 30 * DAY_MS, .unit_ms = 1000},
  {.path = "joiner.demand_windows",         .kind = K_INT,      FIELD(demand.windows),
   .min = 1, .max = MTLD_DEMAND_MAX_WINDOWS},
  {.path = "joiner.negatives_per_positive", .kind = K_INT,      FIELD(joiner.negatives_per_positive),
   .min = 0, .max = MTLD_JOINER_MAX_NEGATIVES},
  {.path = "joiner.popularity_size",        .kind = K_INT,      FIELD(joiner.popularity_size),
   .min = 1, .max = MTLD_JOINER_MAX_POPULARITY},
  {.path = "joiner.seed",                   .kind = K_U64,      FIELD(joiner.seed)},
  {.path = "joiner.allowed_lateness",       .kind = K_DURATION, FIELD(allowed_lateness_ms),
   .min = 0, .max = 30 * DAY_MS, .unit_ms = 1000},
  {.path = "joiner.idle_after",             .kind = K_DURATION, FIELD(idle_ms),
   .min = 0, .max = 365 * DAY_MS, .unit_ms = 1000},
  {.path = "joiner.idle_release",           .kind = K_DURATION, FIELD(idle_release_ms),
   .min = 0, .max = 7 * DAY_MS, .unit_ms = 1000},
  {.path = "joiner.warn_no_samples_after",  .kind = K_I64,      FIELD(no_samples_warn_events),
   .min = 0, .max = 1e12},

  /* The network's shape changes its parameters: a restart (from a
   * checkpoint of the same shape) is needed.  Only the learning rates and
   * the task weights are reloadable. */
  {.path = "model.arch",            .kind = K_ENUM,   FIELD(model.arch), .names = arch_names},
  {.path = "model.dim",             .kind = K_INT,    FIELD(model.dim), .min = 1, .max = 256},
  {.path = "model.rows.user",       .kind = K_U32,    FIELD(model.fields[MTLD_FIELD_USER].rows),
   .min = 1, .max = 1 << 26},
  {.path = "model.rows.item",       .kind = K_U32,    FIELD(model.fields[MTLD_FIELD_ITEM].rows),
   .min = 1, .max = 1 << 26},
  {.path = "model.rows.category",   .kind = K_U32,
   FIELD(model.fields[MTLD_FIELD_CATEGORY].rows), .min = 1, .max = 1 << 26},
  {.path = "model.rows.scenario",   .kind = K_U32,
   FIELD(model.fields[MTLD_FIELD_SCENARIO].rows), .min = 1, .max = 1 << 26},
  {.path = "model.rows.position",   .kind = K_U32,
   FIELD(model.fields[MTLD_FIELD_POSITION].rows), .min = 1, .max = 1 << 26},
  {.path = "model.rows.hour",       .kind = K_U32,
   FIELD(model.fields[MTLD_FIELD_HOUR].rows), .min = 1, .max = 1 << 26},
  {.path = "model.sequence",        .kind = K_CUSTOM, FIELD(model.seq_max), .ops = &sequence_ops},
  {.path = "model.interactions",    .kind = K_ENUM,   FIELD(model.interactions),
   .names = interactions_names},
  {.path = "model.experts",         .kind = K_INT,    FIELD(model.n_experts),
   .min = 1, .max = MTLD_MAX_EXPERTS},
  {.path = "model.shared_experts",  .kind = K_INT,    FIELD(model.n_shared_experts),
   .min = 0, .max = MTLD_MAX_EXPERTS},
  {.path = "model.task_experts",    .kind = K_INT,    FIELD(model.n_task_experts),
   .min = 0, .max = MTLD_MAX_EXPERTS},
  {.path = "model.expert_layers",   .kind = K_INT_LIST, FIELD(model.expert_layers),
   COUNT(model.n_expert_layers), .min_len = 1, .max_len = MTLD_MAX_LAYERS, .min = 1, .max = 4096},
  {.path = "model.tower_layers",    .kind = K_INT_LIST, FIELD(model.tower_layers),
   COUNT(model.n_tower_layers), .min_len = 0, .max_len = MTLD_MAX_LAYERS, .min = 1, .max = 4096},
  {.path = "model.tasks",           .kind = K_CUSTOM, FIELD(model.tasks), .ops = &tasks_ops},
  {.path = "model.uncertainty_weighting", .kind = K_BOOL, FIELD(model.uncertainty_weighting)},
  {.path = "model.optimizer",       .kind = K_ENUM,   FIELD(model.optim), .names = optim_names},
  {.path = "model.lr",              .kind = K_FLOAT,  FIELD(model.lr),
   .min = 0, .excl_min = 1, .max = 10, R},
  {.path = "model.emb_optimizer",   .kind = K_ENUM,   FIELD(model.emb.optim),
   .names = emb_optim_names},
  {.path = "model.emb_lr",          .kind = K_FLOAT,  FIELD(model.emb.lr),
   .min = 0, .excl_min = 1, .max = 10, R},
  {.path = "model.admit_after",     .kind = K_U32,    FIELD(model.emb.admit_after),
   .min = 0, .max = 65535},
  {.path = "model.expire_after",    .kind = K_DURATION, FIELD(model.emb.expire_ms),
   .min = 0, .max = 3650 * DAY_MS, .unit_ms = 1000},
  {.path = "model.batch_size",      .kind = K_INT,    FIELD(model.batch_size), .min = 1, .max = 65536},
  {.path = "model.seed",            .kind = K_U64,    FIELD(model.seed)},
  {.path = "model.pv_window",       .kind = K_U32,    FIELD(model.pv_window),
   .min = 1, .max = 100000000},
  {.path = "model.pv_scenarios",    .kind = K_INT,    FIELD(model.pv_max_scenarios),
   .min = 0, .max = 4096},

  {.path = "trainer.enabled",         .kind = K_BOOL,     FIELD(trainer_enabled)},
  {.path = "trainer.report_interval", .kind = K_DURATION, FIELD(report_interval_ms),
   .min = 1000, .max = 7 * DAY_MS, .zero_ok = 1, .unit_ms = 1000, R},
  {.path = "trainer.dump_samples",    .kind = K_STRING,   FIELD(dump_samples)},
  {.path = "trainer.rank_k",          .kind = K_INT,      FIELD(rank_k), .min = 0, .max = 1000},
  {.path = "trainer.rank_every",      .kind = K_INT,      FIELD(rank_every),
   .min = 1, .max = 1000000},
  {.path = "trainer.rank_candidates", .kind = K_INT,      FIELD(rank_candidates),
   .min = 1, .max = 100000},

  {.path = "checkpoint.dir",           .kind = K_STRING,   FIELD(checkpoint_dir)},
  {.path = "checkpoint.interval",      .kind = K_DURATION, FIELD(checkpoint_interval_ms),
   .min = 1000, .max = 7 * DAY_MS, .zero_ok = 1, .unit_ms = 1000, R},
  {.path = "checkpoint.every_samples", .kind = K_I64,      FIELD(checkpoint_every_samples),
   .min = 0, .max = 1e15, R},
  {.path = "checkpoint.keep",          .kind = K_INT,      FIELD(checkpoint_keep),
   .min = 1, .max = 1000, R},

  {.path = "snapshot.dir",      .kind = K_STRING,   FIELD(snapshot_dir)},
  {.path = "snapshot.interval", .kind = K_DURATION, FIELD(snapshot_interval_ms),
   .min = 1000, .max = 7 * DAY_MS, .zero_ok = 1, .unit_ms = 1000, R},
  {.path = "snapshot.keep",     .kind = K_INT,      FIELD(snapshot_keep), .min = 1, .max = 1000, R},

  {.path = "log.level", .kind = K_CUSTOM, FIELD(log_level), .ops = &log_level_ops, R},

  {.path = "metrics.enabled", .kind = K_BOOL,   FIELD(metrics_enabled), R},
  {.path = "metrics.listen",  .kind = K_STRING, FIELD(metrics_listen),  R},
  {.path = "metrics.port",    .kind = K_INT,    FIELD(metrics_port), .min = 0, .max = 65535, R},

  {.path = "shutdown_timeout", .kind = K_DURATION, FIELD(shutdown_timeout_ms),
   .min = 1, .max = 3600000, .unit_ms = 1000, R},
  {.path = "status_interval",  .kind = K_DURATION, FIELD(status_interval_ms),
   .min = 100, .max = 3600000, .unit_ms = 1000, R},
};
// clang-format on
#undef R
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* ------------------------------------------------------------- defaults */

/* The model's inputs follow the feature definitions: every dense feature,
 * then the numeric attributes (dense inputs after them), and one embedding
 * field per categorical attribute (fields MTLD_FIELD_EXTRA.., in declaration
 * order, named after the attribute, with its rows).  Without attributes the
 * model is the one it was before attributes. */
static void model_inputs_from_features(mtld_config_t *cfg) {
  const mtld_feature_def_t *def = &cfg->features;
  mtld_model_config_t *m = &cfg->model;
  int n_cat, n_num;
  mtld_features_attr_counts(def, &n_cat, &n_num);
  m->n_dense = mtld_features_dense_count(def) + n_num;
  m->n_fields = MTLD_FIELD_EXTRA;
  for (int k = 0; k < def->n_attrs && m->n_fields < MTLD_MAX_FIELDS; k++) {
    const mtld_attr_def_t *a = &def->attrs[k];
    if (a->kind != MTLD_ATTR_CATEGORICAL) continue;
    mtld_field_t *f = &m->fields[m->n_fields++];
    snprintf(f->name, sizeof(f->name), "%.*s", (int)sizeof(f->name) - 1, a->name);
    f->rows = a->rows;
  }
}

void mtld_config_default(mtld_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->source_type = MTLD_SOURCE_KAFKA;
  cfg->format = MTLD_FMT_AUTO;
  snprintf(cfg->kafka[0].name, sizeof(cfg->kafka[0].name), "group.id");
  snprintf(cfg->kafka[0].value, sizeof(cfg->kafka[0].value), "mtld");
  cfg->n_kafka = 1;
  snprintf(cfg->store_path, sizeof(cfg->store_path), "/var/lib/mtld/store");
  cfg->store_sync = 1;
  cfg->store_block_cache_mb = 64;
  cfg->store_write_buffer_mb = 128;
  cfg->batch_max_events = 2000;
  cfg->batch_max_ms = 200;
  cfg->commit_retry_timeout_ms = 300000;
  cfg->scaleout_restore_timeout_ms = 240000;
  cfg->store_verify_on_start = 1;
  cfg->store_cache_mb = 64;
  mtld_feature_def_default(&cfg->features);
  mtld_validate_limits_default(&cfg->limits);
  mtld_joiner_config_default(&cfg->joiner);
  cfg->allowed_lateness_ms = 60000;
  cfg->idle_ms = 0;
  cfg->idle_release_ms = 0;
  cfg->no_samples_warn_events = 10000;
  cfg->review_window_ms = 7 * 24 * 3600 * (int64_t)1000;
  mtld_model_config_default(&cfg->model);
  model_inputs_from_features(cfg);
  mtld_demand_config_default(&cfg->demand);
  cfg->trainer_enabled = 1;
  cfg->report_interval_ms = 60000;
  cfg->rank_k = 20;
  cfg->rank_every = 100;
  cfg->rank_candidates = 500;
  snprintf(cfg->checkpoint_dir, sizeof(cfg->checkpoint_dir), "/var/lib/mtld/checkpoints");
  cfg->checkpoint_interval_ms = 300000;
  cfg->checkpoint_every_samples = 0;
  cfg->checkpoint_keep = 3;
  snprintf(cfg->snapshot_dir, sizeof(cfg->snapshot_dir), "/var/lib/mtld/snapshots");
  cfg->snapshot_interval_ms = 60000;
  cfg->snapshot_keep = 5;
  cfg->scaleout_sync_interval_ms = 1000;
  cfg->scaleout_base_interval_ms = 60000;
  cfg->scaleout_sync_accumulators = 1;
  cfg->scaleout_max_stale_rounds = 0;
  cfg->scaleout_peer_timeout_ms = 5000;
  snprintf(cfg->log_level, sizeof(cfg->log_level), "info");
  cfg->metrics_enabled = 1;
  snprintf(cfg->metrics_listen, sizeof(cfg->metrics_listen), "127.0.0.1");
  cfg->metrics_port = 9464;
  cfg->shutdown_timeout_ms = 30000;
  cfg->status_interval_ms = 5000;
}

/* --------------------------------------------------------------- parsing */

static const key_def_t *find_key(const char *path) {
  for (size_t i = 0; i < N_KEYS; i++)
    if (strcmp(keys[i].path, path) == 0) return &keys[i];
  return NULL;
}

/* True when some row lives under group `path`. */
static int is_group_path(const char *path) {
  size_t n = strlen(path);
  for (size_t i = 0; i < N_KEYS; i++)
    if (strncmp(keys[i].path, path, n) == 0 && keys[i].path[n] == '.') return 1;
  return 0;
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return 64;
  size_t row[64];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* The known key (or group) of the same group nearest to `path`, for typos. */
static void suggest(const char *path, char *out, size_t len) {
  const char *dot = strrchr(path, '.');
  size_t plen = dot ? (size_t)(dot - path) + 1 : 0; /* prefix incl. '.' */
  const char *leaf = path + plen;
  size_t best = 3;
  out[0] = '\0';
  for (size_t i = 0; i < N_KEYS; i++) {
    if (strncmp(keys[i].path, path, plen) != 0) continue;
    const char *cand = keys[i].path + plen;
    char name[64];
    size_t n = strcspn(cand, ".");
    if (n >= sizeof(name)) continue;
    memcpy(name, cand, n);
    name[n] = '\0';
    size_t d = edit_distance(leaf, name);
    if (d < best) {
      best = d;
      snprintf(out, len, "%.*s%s", (int)plen, path, name);
    }
  }
}

static mtld_status_t check_range(const key_def_t *k, const config_setting_t *s, double v,
                                 perr_t *pe) {
  if (k->excl_min ? v > k->min && v <= k->max : v >= k->min && v <= k->max) return MTLD_OK;
  if (k->zero_ok && v == 0) return MTLD_OK;
  if (k->kind == K_DURATION) {
    char lo[32], hi[32];
    mtld_config_format_duration((int64_t)k->min, lo, sizeof(lo));
    mtld_config_format_duration((int64_t)k->max, hi, sizeof(hi));
    return fail(pe, s, k->path, "must be %sbetween %s and %s", k->zero_ok ? "0 (off) or " : "", lo,
                hi);
  }
  if (k->excl_min) return fail(pe, s, k->path, "must be > %g and <= %g", k->min, k->max);
  return fail(pe, s, k->path, "must be between %.15g and %.15g", k->min, k->max);
}

static mtld_status_t parse_key(const key_def_t *k, const config_setting_t *s, mtld_config_t *cfg,
                               perr_t *pe) {
  int t = config_setting_type(s);
  int is_int = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
  mtld_status_t st;
  switch (k->kind) {
  case K_INT:
  case K_SIZE:
  case K_U32:
  case K_I64: {
    if (!is_int) return fail(pe, s, k->path, "expected an integer");
    long long v = config_setting_get_int64(s);
    if ((st = check_range(k, s, (double)v, pe)) != MTLD_OK) return st;
    if (k->kind == K_INT)
      *(int *)field(cfg, k) = (int)v;
    else if (k->kind == K_SIZE)
      *(size_t *)field(cfg, k) = (size_t)v;
    else if (k->kind == K_U32)
      *(uint32_t *)field(cfg, k) = (uint32_t)v;
    else
      *(int64_t *)field(cfg, k) = (int64_t)v;
    return MTLD_OK;
  }
  case K_U64: {
    if (!is_int) return fail(pe, s, k->path, "expected an integer");
    long long v = config_setting_get_int64(s);
    if (v < 0) return fail(pe, s, k->path, "must be >= 0");
    *(uint64_t *)field(cfg, k) = (uint64_t)v;
    return MTLD_OK;
  }
  case K_BOOL:
    if (t != CONFIG_TYPE_BOOL) return fail(pe, s, k->path, "expected true or false");
    *(int *)field(cfg, k) = config_setting_get_bool(s);
    return MTLD_OK;
  case K_DOUBLE:
  case K_FLOAT: {
    if (!is_int && t != CONFIG_TYPE_FLOAT) return fail(pe, s, k->path, "expected a number");
    double v =
        t == CONFIG_TYPE_FLOAT ? config_setting_get_float(s) : (double)config_setting_get_int64(s);
    if (!isfinite(v)) return fail(pe, s, k->path, "must be finite");
    if ((st = check_range(k, s, v, pe)) != MTLD_OK) return st;
    if (k->kind == K_DOUBLE)
      *(double *)field(cfg, k) = v;
    else
      *(float *)field(cfg, k) = (float)v;
    return MTLD_OK;
  }
  case K_ENUM: return get_enum(s, k->path, k->names, (int *)field(cfg, k), pe);
  case K_INT_LIST: {
    if (!config_setting_is_array(s) && !config_setting_is_list(s))
      return fail(pe, s, k->path, "expected a list of integers, e.g. [64, 32]");
    int n = config_setting_length(s), cap = (int)(k->size / sizeof(int));
    if (n < k->min_len || n > k->max_len)
      return fail(pe, s, k->path, "must have %d to %d entries, not %d", k->min_len, k->max_len, n);
    int *v = field(cfg, k);
    for (int i = 0; i < cap; i++) {
      if (i >= n) {
        v[i] = 0;
        continue;
      }
      const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
      char key[128];
      snprintf(key, sizeof(key), "%s[%d]", k->path, i);
      int et = config_setting_type(e);
      if (et != CONFIG_TYPE_INT && et != CONFIG_TYPE_INT64)
        return fail(pe, e, key, "expected an integer");
      long long x = config_setting_get_int64(e);
      if (x < k->min || x > k->max)
        return fail(pe, e, key, "must be between %.15g and %.15g", k->min, k->max);
      v[i] = (int)x;
    }
    *(int *)((char *)cfg + k->count_offset) = n;
    return MTLD_OK;
  }
  case K_STRING: {
    const char *v = config_setting_get_string(s);
    if (!v) return fail(pe, s, k->path, "expected a string");
    if (strlen(v) >= k->size)
      return fail(pe, s, k->path, "too long (at most %zu bytes)", k->size - 1);
    memcpy(field(cfg, k), v, strlen(v) + 1);
    return MTLD_OK;
  }
  case K_DURATION: {
    int64_t ms;
    if ((st = get_duration(s, k->path, k->unit_ms, &ms, pe)) != MTLD_OK) return st;
    if ((st = check_range(k, s, (double)ms, pe)) != MTLD_OK) return st;
    if (k->size == sizeof(int64_t))
      *(int64_t *)field(cfg, k) = ms;
    else
      *(int *)field(cfg, k) = (int)ms;
    return MTLD_OK;
  }
  case K_CUSTOM: return k->ops->parse(k, s, cfg, pe);
  }
  return MTLD_ERR_INVALID;
}

/* Walks group g (dotted path `prefix`, "" for the root): every member must be
 * a row of the table or a group that holds rows. */
static mtld_status_t parse_group(const config_setting_t *g, const char *prefix, mtld_config_t *cfg,
                                 perr_t *pe) {
  int n = config_setting_length(g);
  for (int i = 0; i < n; i++) {
    const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
    char path[256];
    snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", config_setting_name(m));
    const key_def_t *k = find_key(path);
    mtld_status_t st;
    if (k) {
      st = parse_key(k, m, cfg, pe);
    } else if (is_group_path(path)) {
      if (!config_setting_is_group(m))
        return fail(pe, m, path, "expected a group: %s = { ... };", config_setting_name(m));
      st = parse_group(m, path, cfg, pe);
    } else {
      char hint[256];
      suggest(path, hint, sizeof(hint));
      if (hint[0]) return fail(pe, m, path, "unknown key (did you mean %s?)", hint);
      return fail(pe, m, path, "unknown key");
    }
    if (st != MTLD_OK) return st;
  }
  return MTLD_OK;
}

static mtld_status_t fail_at_path(perr_t *pe, const config_t *lc, const char *key, const char *fmt,
                                  ...) __attribute__((format(printf, 4, 5)));
static mtld_status_t fail_at_path(perr_t *pe, const config_t *lc, const char *key, const char *fmt,
                                  ...) {
  const config_setting_t *s = nearest_setting(lc, key);
  va_list ap;
  va_start(ap, fmt);
  mtld_status_t st =
      fail_v(pe, config_setting_source_file(s), (int)config_setting_source_line(s), key, fmt, ap);
  va_end(ap);
  return st;
}

/* Rules between keys, after every key parsed. */
static mtld_status_t validate(const mtld_config_t *cfg, const config_t *lc, perr_t *pe) {
  if (cfg->source_type == MTLD_SOURCE_KAFKA) {
    if (cfg->n_topics == 0)
      return fail_at_path(pe, lc, "source.topics",
                          "at least one topic is required when source.type is \"kafka\"");
    if (!kafka_get(cfg, "bootstrap.servers"))
      return fail_at_path(pe, lc, "kafka.bootstrap_servers",
                          "required when source.type is \"kafka\"");
  } else if (!cfg->source_file[0]) {
    return fail_at_path(pe, lc, "source.file", "required when source.type is \"file\"");
  }
  if (cfg->dead_letter_topic[0] && !kafka_get(cfg, "bootstrap.servers"))
    return fail_at_path(pe, lc, "kafka.bootstrap_servers",
                        "required when dead_letter.topic is set (the dead letters go to Kafka)");
  if (cfg->scaleout_changelog_topic[0]) {
    /* what scale-out cannot work with (README "Scale-out") */
    if (cfg->source_type != MTLD_SOURCE_KAFKA)
      return fail_at_path(pe, lc, "scaleout.changelog_topic", "needs source.type = \"kafka\"");
    if (cfg->n_topics != 1)
      return fail_at_path(pe, lc, "scaleout.changelog_topic",
                          "needs exactly one source topic (changelog partition = source "
                          "partition)");
    if (cfg->features.item_view != MTLD_ITEM_VIEW_PARTITION)
      return fail_at_path(pe, lc, "features.item_view",
                          "must be \"partition\" with scale-out (a global item view is not "
                          "any one partition's state)");
    if (cfg->joiner.mode != MTLD_JOIN_IMPRESSIONS)
      return fail_at_path(pe, lc, "joiner.mode",
                          "must be \"impressions\" with scale-out (sampled negatives draw from "
                          "rings global over partitions)");
    if (mtld_config_demand_on(cfg))
      return fail_at_path(pe, lc, "model.tasks",
                          "a \"demand\" task cannot run with scale-out (an item's orders come "
                          "from every partition: its demand windows are no one partition's "
                          "state)");
    if (!kafka_get(cfg, "group.instance.id"))
      return fail_at_path(pe, lc, "kafka.group_instance_id",
                          "required with scale-out (static membership; it also names the "
                          "instance's changelog transactions)");
  }
  if (!cfg->store_path[0]) return fail_at_path(pe, lc, "store.path", "must not be empty");
  char ferr[256];
  if (mtld_feature_def_check(&cfg->features, ferr, sizeof(ferr)) != MTLD_OK) {
    const char *why = strncmp(ferr, "features.attributes", 19) == 0 ? ferr + 19 : NULL;
    if (why)
      return fail_at_path(pe, lc, "features.attributes", "%s", why[0] == ':' ? why + 2 : why + 1);
    return fail_at_path(pe, lc, "features", "%s", ferr);
  }
  /* a sampled negative takes another item's id, category and item dense
   * features from a donor ring that does not carry item attributes */
  for (int k = 0; k < cfg->features.n_attrs; k++)
    if (cfg->features.attrs[k].owner == MTLD_ATTR_ITEM &&
        cfg->joiner.mode == MTLD_JOIN_SAMPLED_NEGATIVES)
      return fail_at_path(pe, lc, "features.attributes",
                          "item attribute \"%s\": not supported with joiner.mode = "
                          "\"sampled_negatives\" (user and context attributes are)",
                          cfg->features.attrs[k].name);
  char jerr[256];
  if (mtld_joiner_config_check(&cfg->joiner, jerr, sizeof(jerr)) != MTLD_OK)
    return fail_at_path(pe, lc, "joiner", "%s", jerr);
  char merr[256];
  if (mtld_model_config_validate(&cfg->model, merr, sizeof(merr)) != MTLD_OK) {
    const char *why = strncmp(merr, "model: ", 7) == 0 ? merr + 7 : merr;
    return fail_at_path(pe, lc, "model", "%s", why);
  }
  /* a checkpoint is a RocksDB checkpoint (hard links) plus the model: it
   * must not land inside the live store, nor among the serving snapshots */
  static const struct {
    const char *key;
    size_t offset;
  } dirs[] = {{"store.path", offsetof(mtld_config_t, store_path)},
              {"checkpoint.dir", offsetof(mtld_config_t, checkpoint_dir)},
              {"snapshot.dir", offsetof(mtld_config_t, snapshot_dir)}};
  for (size_t i = 1; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
    const char *d = (const char *)cfg + dirs[i].offset;
    if (!d[0]) return fail_at_path(pe, lc, dirs[i].key, "must not be empty");
    for (size_t j = 0; j < i; j++)
      if (strcmp(d, (const char *)cfg + dirs[j].offset) == 0)
        return fail_at_path(pe, lc, dirs[i].key, "must differ from %s (\"%s\")", dirs[j].key, d);
  }
  unsigned char addr[16];
  if (inet_pton(AF_INET, cfg->metrics_listen, addr) != 1 &&
      inet_pton(AF_INET6, cfg->metrics_listen, addr) != 1)
    return fail_at_path(pe, lc, "metrics.listen",
                        "must be an IPv4 or IPv6 address (e.g. \"127.0.0.1\"), not \"%s\"",
                        cfg->metrics_listen);
  return MTLD_OK;
}

/* Parses a read libconfig tree into a copy of the defaults, then *cfg. */
static mtld_status_t load_tree(mtld_config_t *cfg, const config_t *lc, const char *name,
                               perr_t *pe) {
  mtld_config_t *tmp = malloc(sizeof(*tmp));
  if (!tmp) {
    snprintf(pe->err, pe->errlen, "%s: out of memory", name);
    return MTLD_ERR_NOMEM;
  }
  mtld_config_default(tmp);
  snprintf(tmp->path, sizeof(tmp->path), "%s", name);
  mtld_status_t st = parse_group(config_root_setting(lc), "", tmp, pe);
  /* the model reads every dense feature and attribute the definitions produce */
  if (st == MTLD_OK) model_inputs_from_features(tmp);
  /* a demand task: item samples append their own (raw) dense features, last */
  if (st == MTLD_OK && mtld_config_demand_on(tmp)) {
    tmp->model.n_dense += MTLD_DEMAND_DENSE;
    tmp->model.n_dense_raw = MTLD_DEMAND_DENSE;
  }
  /* checkpoint.dir and snapshot.dir not given: beside the store (the
   * defaults /var/lib/mtld/{store,checkpoints,snapshots} agree), so a config
   * that moves its store never shares checkpoints with another daemon */
  if (st == MTLD_OK) {
    /* the store's parent directory: "/a/b/store" -> "/a/b", "store" -> "." */
    char parent[sizeof(tmp->store_path)];
    const char *slash = strrchr(tmp->store_path, '/');
    size_t plen = slash ? (size_t)(slash - tmp->store_path) : 0;
    memcpy(parent, tmp->store_path, plen);
    parent[plen] = 0;
    if (!slash) strcpy(parent, ".");
    size_t room = sizeof(tmp->checkpoint_dir) - sizeof("/checkpoints");
    if (strlen(parent) <= room) {
      if (!config_lookup(lc, "checkpoint.dir"))
        strcat(strcpy(tmp->checkpoint_dir, parent), "/checkpoints");
      if (!config_lookup(lc, "snapshot.dir"))
        strcat(strcpy(tmp->snapshot_dir, parent), "/snapshots");
    }
  }
  if (st == MTLD_OK) st = validate(tmp, lc, pe);
  if (st == MTLD_OK) *cfg = *tmp;
  free(tmp);
  return st;
}

static mtld_status_t syntax_error(const config_t *lc, perr_t *pe) {
  const char *file = config_error_file(lc) ? config_error_file(lc) : pe->name;
  char where[1280];
  if (pe->include_dir && file[0] != '/' && strcmp(file, pe->name) != 0)
    snprintf(where, sizeof(where), "%s/%s", pe->include_dir, file);
  else
    snprintf(where, sizeof(where), "%s", file);
  snprintf(pe->err, pe->errlen, "%s:%d: %s", where, config_error_line(lc),
           config_error_text(lc) ? config_error_text(lc) : "syntax error");
  return MTLD_ERR_CONFIG;
}

/* ------------------------------------------------------ @include guard
 *
 * libconfig 1.5 (Debian 12 ships 1.5-0.4) opens an @include with fopen and
 * hands the stream to its flex scanner.  When reading it then fails -- a
 * directory, which is also what "", "." or a name cut short by a NUL byte
 * resolve to, or a file that cannot be read -- flex prints "input in flex
 * scanner failed" and calls exit(2): a SIGHUP or --check-config would end the
 * daemon with nothing drained or committed.
 *
 * Choice: check every include before libconfig sees the file.
 * config_set_include_func, which would let us open includes ourselves,
 * exists only from libconfig 1.7; parsing in a forked child survives the
 * exit but cannot say which include was bad, and forking a daemon that runs
 * librdkafka and RocksDB threads to run a parser trades one hazard for
 * another (and would make a fuzzer crawl).  include_guard() scans a file as
 * libconfig's scanner does (# and // comments to the end of the line, block
 * comments, strings with their escapes) and checks each @include it would
 * open, recursively: the path it opens (include_dir + "/" + name, joined as
 * libconfig joins them, even for a name that starts with '/'; the name alone
 * when there is no include dir) must be a regular file that reads whole,
 * of at most GUARD_MAX_BYTES; the name must hold no NUL byte and no
 * backslash but the \" and \\ escapes; nesting stops at libconfig's own
 * depth of 10 and the count of includes at GUARD_MAX_INCLUDES (a file that
 * includes itself twice is exponential).  The first failure is a config
 * error "FILE:LINE: @include \"NAME\": PATH: why".  An "@include" the scan
 * takes that libconfig would not (not at the start of a line) is a syntax
 * error for libconfig anyway, so checking it too refuses nothing valid.
 * The top file itself is read here and given to libconfig as a string (a
 * directory given to -c would hit the same exit).  Left open: an included
 * file replaced by a directory between this check and libconfig's open (the
 * config directory is the operator's own). */

#define GUARD_MAX_DEPTH 10 /* libconfig 1.5's MAX_INCLUDE_DEPTH */
#define GUARD_MAX_INCLUDES 1000
#define GUARD_MAX_BYTES (16 << 20)

typedef struct {
  const char *include_dir; /* NULL: names are used as they are (string input) */
  int includes;            /* checked so far */
  perr_t *pe;
} guard_t;

/* Reads a regular file whole into a NUL-terminated buffer (*len bytes
 * before the NUL).  NULL and *why (static text, or errno's) on failure. */
static char *read_regular(const char *path, size_t *len, const char **why) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    *why = strerror(errno);
    return NULL;
  }
  if (S_ISDIR(sb.st_mode)) {
    *why = "is a directory, not a file";
    return NULL;
  }
  if (!S_ISREG(sb.st_mode)) {
    *why = "not a regular file";
    return NULL;
  }
  FILE *f = fopen(path, "r");
  if (!f) {
    *why = strerror(errno);
    return NULL;
  }
  size_t cap = (size_t)sb.st_size + 1, n = 0;
  char *buf = NULL;
  for (;;) {
    if (cap > GUARD_MAX_BYTES + 1) cap = GUARD_MAX_BYTES + 1;
    char *nb = realloc(buf, cap + 1);
    if (!nb) {
      *why = "out of memory";
      break;
    }
    buf = nb;
    n += fread(buf + n, 1, cap - n, f);
    if (ferror(f)) {
      *why = strerror(errno ? errno : EIO);
      break;
    }
    if (n > GUARD_MAX_BYTES) {
      *why = "larger than 16 MiB";
      break;
    }
    if (feof(f)) {
      fclose(f);
      buf[n] = '\0';
      *len = n;
      return buf;
    }
    cap *= 2;
  }
  fclose(f);
  free(buf);
  return NULL;
}

/* The include name as text for a message: non-printable bytes as \xNN. */
static void printable(const char *s, size_t n, char *out, size_t len) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 5 < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
      out[o++] = (char)c;
    else
      o += (size_t)snprintf(out + o, len - o, "\\x%02x", c);
  }
  out[o] = '\0';
}

static mtld_status_t guard_text(guard_t *g, const char *text, size_t len, const char *file,
                                int depth);

/* Checks the include `name` (n bytes, as written between the quotes, escapes
 * not yet undone) met at file:line, then what it includes. */
static mtld_status_t guard_include(guard_t *g, const char *file, int line, const char *raw,
                                   size_t n, int depth) {
  char shown[512], name[1024], path[2048];
  printable(raw, n, shown, sizeof(shown));
  const char *why = NULL;
  size_t o = 0;
  for (size_t i = 0; i < n && !why; i++) {
    char c = raw[i];
    if (c == '\0') {
      why = "the name holds a NUL byte";
    } else if (c == '\\') {
      if (i + 1 < n && (raw[i + 1] == '"' || raw[i + 1] == '\\'))
        c = raw[++i];
      else
        why = "a backslash other than \\\" or \\\\ in the name";
    }
    if (o + 1 >= sizeof(name)) why = "the name is too long";
    if (!why) name[o++] = c;
  }
  name[o] = '\0';
  if (!why && !name[0]) why = "empty name";
  if (!why && ++g->includes > GUARD_MAX_INCLUDES) why = "more than 1000 includes in all";
  if (!why && depth >= GUARD_MAX_DEPTH) why = "includes nested more than 10 deep (a cycle?)";
  if (g->include_dir)
    snprintf(path, sizeof(path), "%s/%s", g->include_dir, name);
  else
    snprintf(path, sizeof(path), "%s", name);
  char *text = NULL;
  size_t tlen = 0;
  if (!why) text = read_regular(path, &tlen, &why);
  if (!text) {
    snprintf(g->pe->err, g->pe->errlen, "%s:%d: @include \"%s\": %s: %s", file, line, shown, path,
             why);
    return MTLD_ERR_CONFIG;
  }
  mtld_status_t st = guard_text(g, text, tlen, path, depth + 1);
  free(text);
  return st;
}

/* Scans text (file's contents) for the includes libconfig's scanner would
 * open and checks each. */
static mtld_status_t guard_text(guard_t *g, const char *text, size_t len, const char *file,
                                int depth) {
  static const char kw[] = "@include";
  int line = 1;
  size_t i = 0;
  while (i < len) {
    char c = text[i];
    if (c == '\n') {
      line++, i++;
    } else if (c == '#' || (c == '/' && i + 1 < len && text[i + 1] == '/')) {
      while (i < len && text[i] != '\n') i++; /* to the end of the line */
    } else if (c == '/' && i + 1 < len && text[i + 1] == '*') {
      for (i += 2; i < len && !(text[i] == '*' && i + 1 < len && text[i + 1] == '/'); i++)
        line += text[i] == '\n';
      i += 2;
    } else if (c == '"') {
      for (i++; i < len && text[i] != '"'; i++) {
        if (text[i] == '\\' && i + 1 < len) i++;
        line += text[i] == '\n';
      }
      i++;
    } else if (c == '@' && len - i >= sizeof(kw) - 1 && memcmp(text + i, kw, sizeof(kw) - 1) == 0) {
      int at = line;
      i += sizeof(kw) - 1;
      while (i < len && (text[i] == ' ' || text[i] == '\t')) i++;
      if (i >= len || text[i] != '"') continue; /* not an include: a syntax error */
      size_t start = ++i;
      for (; i < len && text[i] != '"'; i++) {
        if (text[i] == '\\' && i + 1 < len) i++;
        line += text[i] == '\n';
      }
      if (i >= len) break; /* unterminated: libconfig opens nothing */
      mtld_status_t st = guard_include(g, file, at, text + start, i - start, depth);
      if (st != MTLD_OK) return st;
      i++;
    } else {
      i++;
    }
  }
  return MTLD_OK;
}

mtld_status_t mtld_config_load(mtld_config_t *cfg, const char *path, char *err, size_t errlen) {
  char dir[1024];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash)
    slash[slash == dir ? 1 : 0] = '\0';
  else
    snprintf(dir, sizeof(dir), ".");
  perr_t pe = {path, dir, err, errlen};
  const char *why = NULL;
  size_t len = 0;
  char *text = read_regular(path, &len, &why);
  if (!text) {
    snprintf(err, errlen, "%s: cannot open: %s", path, why);
    return MTLD_ERR_CONFIG;
  }
  guard_t g = {dir, 0, &pe};
  mtld_status_t st = guard_text(&g, text, len, path, 0);
  if (st == MTLD_OK) {
    config_t lc;
    config_init(&lc);
    config_set_include_dir(&lc, dir);
    st = config_read_string(&lc, text) ? load_tree(cfg, &lc, path, &pe) : syntax_error(&lc, &pe);
    config_destroy(&lc);
  }
  free(text);
  return st;
}

mtld_status_t mtld_config_load_string(mtld_config_t *cfg, const char *text, const char *name,
                                      char *err, size_t errlen) {
  perr_t pe = {name, NULL, err, errlen};
  guard_t g = {NULL, 0, &pe};
  mtld_status_t st = guard_text(&g, text, strlen(text), name, 0);
  if (st != MTLD_OK) return st;
  config_t lc;
  config_init(&lc);
  st = config_read_string(&lc, text) ? load_tree(cfg, &lc, name, &pe) : syntax_error(&lc, &pe);
  config_destroy(&lc);
  return st;
}

/* -------------------------------------------------------- print and diff */

static void print_value(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int indent) {
  const void *p = cfield(cfg, k);
  switch (k->kind) {
  case K_INT: fprintf(out, "%d", *(const int *)p); break;
  case K_SIZE: fprintf(out, "%zu", *(const size_t *)p); break;
  case K_U32: print_int64(out, *(const uint32_t *)p); break;
  case K_I64: print_int64(out, *(const int64_t *)p); break;
  case K_U64: {
    unsigned long long v = *(const uint64_t *)p;
    fprintf(out, "%llu%s", v, v > INT32_MAX ? "L" : "");
    break;
  }
  case K_BOOL: fputs(*(const int *)p ? "true" : "false", out); break;
  case K_DOUBLE: print_double(out, *(const double *)p); break;
  case K_FLOAT: print_float(out, *(const float *)p); break;
  case K_STRING: print_string(out, (const char *)p); break;
  case K_ENUM: print_string(out, k->names[*(const int *)p]); break;
  case K_INT_LIST: {
    const int *v = p;
    int n = *(const int *)((const char *)cfg + k->count_offset);
    fputc('[', out);
    for (int i = 0; i < n; i++) fprintf(out, "%s%d", i ? ", " : "", v[i]);
    fputc(']', out);
    break;
  }
  case K_DURATION:
    print_duration(out, k->size == sizeof(int64_t) ? *(const int64_t *)p : *(const int *)p);
    break;
  case K_CUSTOM: k->ops->print(k, cfg, out, indent); break;
  }
}

/* Length of the group part of a path ("store.path" -> 5, "kafka" -> 0). */
static size_t group_len(const char *path) {
  const char *dot = strrchr(path, '.');
  return dot ? (size_t)(dot - path) : 0;
}

void mtld_config_print(const mtld_config_t *cfg, FILE *out) {
  fprintf(out, "# mtld effective configuration%s%s\n", cfg->path[0] ? " of " : "", cfg->path);
  char open[256] = ""; /* dotted path of the open groups */
  int depth = 0;
  for (size_t i = 0; i < N_KEYS; i++) {
    const char *path = keys[i].path;
    size_t glen = group_len(path);
    /* close open groups that do not contain this key */
    for (;;) {
      size_t olen = strlen(open);
      if (olen == 0 ||
          (glen >= olen && strncmp(path, open, olen) == 0 && (glen == olen || path[olen] == '.')))
        break;
      char *dot = strrchr(open, '.');
      if (dot)
        *dot = '\0';
      else
        open[0] = '\0';
      depth--;
      fprintf(out, "%*s};\n", depth * 2, "");
    }
    /* open the missing ones */
    while (strlen(open) < glen) {
      size_t olen = strlen(open);
      const char *start = path + olen + (olen ? 1 : 0);
      size_t n = strcspn(start, ".");
      if (depth == 0) fputc('\n', out);
      fprintf(out, "%*s%.*s = {\n", depth * 2, "", (int)n, start);
      snprintf(open, sizeof(open), "%.*s", (int)(start + n - path), path);
      depth++;
    }
    if (depth == 0) fputc('\n', out);
    fprintf(out, "%*s%s = ", depth * 2, "", path + glen + (glen ? 1 : 0));
    print_value(&keys[i], cfg, out, depth * 2);
    fputs(";\n", out);
  }
  for (; depth > 0; depth--) fprintf(out, "%*s};\n", (depth - 1) * 2, "");
}

static int values_equal(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b) {
  switch (k->kind) {
  case K_STRING: return strcmp(cfield(a, k), cfield(b, k)) == 0;
  case K_DOUBLE: return *(const double *)cfield(a, k) == *(const double *)cfield(b, k);
  case K_FLOAT: return *(const float *)cfield(a, k) == *(const float *)cfield(b, k);
  case K_INT_LIST: {
    int na = *(const int *)((const char *)a + k->count_offset);
    int nb = *(const int *)((const char *)b + k->count_offset);
    return na == nb && memcmp(cfield(a, k), cfield(b, k), sizeof(int) * (size_t)na) == 0;
  }
  case K_CUSTOM: return k->ops->equal(k, a, b);
  default: return memcmp(cfield(a, k), cfield(b, k), k->size) == 0;
  }
}

/* Compares every row; with `apply`, copies the reloadable ones that changed
 * from new_cfg into *apply (== old_cfg).  The one walk behind diff and reload. */
static int walk_changes(const mtld_config_t *old_cfg, const mtld_config_t *new_cfg,
                        mtld_config_t *apply, diff_fn_t fn, void *ctx) {
  int refused = 0;
  for (size_t i = 0; i < N_KEYS; i++) {
    const key_def_t *k = &keys[i];
    if (k->kind == K_CUSTOM && k->ops->diff) {
      refused += k->ops->diff(k, old_cfg, new_cfg, fn, ctx);
      if (apply && k->ops->apply) k->ops->apply(k, apply, new_cfg);
      continue;
    }
    if (values_equal(k, old_cfg, new_cfg)) continue;
    if (fn) fn(ctx, k->path, k->reloadable);
    if (!k->reloadable) {
      refused++;
    } else if (apply) {
      /* the row says where the value lives: its field, and a list's count */
      memcpy(field(apply, k), cfield(new_cfg, k), k->size);
      if (k->kind == K_INT_LIST)
        memcpy((char *)apply + k->count_offset, (const char *)new_cfg + k->count_offset,
               sizeof(int));
    }
  }
  return refused;
}

int mtld_config_diff(const mtld_config_t *old_cfg, const mtld_config_t *new_cfg,
                     void (*fn)(void *ctx, const char *key, int reloadable), void *ctx) {
  return walk_changes(old_cfg, new_cfg, NULL, fn, ctx);
}

int mtld_config_apply(mtld_config_t *running, const mtld_config_t *next,
                      void (*fn)(void *ctx, const char *key, int reloadable), void *ctx) {
  return walk_changes(running, next, running, fn, ctx);
}

mtld_status_t mtld_config_reload(mtld_config_t *running, const char *path, int *refused,
                                 void (*fn)(void *ctx, const char *key, int reloadable), void *ctx,
                                 char *err, size_t errlen) {
  mtld_config_t *next = malloc(sizeof(*next));
  if (!next) {
    snprintf(err, errlen, "%s: out of memory", path);
    return MTLD_ERR_NOMEM;
  }
  mtld_status_t st = mtld_config_load(next, path, err, errlen);
  if (st == MTLD_OK) {
    int n = mtld_config_apply(running, next, fn, ctx);
    if (refused) *refused = n;
  }
  free(next);
  return st;
}

size_t mtld_config_key_count(void) {
  return N_KEYS;
}

const char *mtld_config_key(size_t i, int *reloadable) {
  if (i >= N_KEYS) return NULL;
  if (reloadable) *reloadable = keys[i].reloadable;
  return keys[i].path;
}

int mtld_config_demand_on(const mtld_config_t *cfg) {
  for (int t = 0; t < cfg->model.n_tasks; t++)
    if (cfg->model.tasks[t].label == MTLD_LABEL_DEMAND) return 1;
  return 0;
}

int64_t mtld_config_review_window_ms(const mtld_config_t *cfg) {
  for (int t = 0; t < cfg->model.n_tasks; t++)
    if (cfg->model.tasks[t].label == MTLD_LABEL_REVIEW) return cfg->review_window_ms;
  return 0;
}
