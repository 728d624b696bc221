/* config.c - the libconfig file -> mtld_config_t, validated as a whole.
 *
 * Every key the daemon knows is one row of `keys[]` below: its dotted path,
 * its kind, where it lives in mtld_config_t, its range and whether SIGHUP may
 * change it.  Parsing, printing (--check-config) and diffing (reload) all walk
 * that one table, so adding a setting (the trainer's groups, say) is adding
 * rows, plus a custom kind for what is more than a scalar.  Rows of one group
 * must be adjacent (the printer opens and closes groups as the path changes).
 *
 * Cross-key rules (a Kafka source needs topics and brokers, ...) live in
 * validate(), after the walk.  Every error reads "FILE:LINE: key.path: what". */
#include "daemon/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"

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
  K_U64,      /* uint64_t, integer >= 0 (libconfig: up to INT64_MAX with an L suffix) */
  K_BOOL,     /* int, true/false */
  K_DOUBLE,   /* double, finite number in [min, max] (or (min, max] with excl_min) */
  K_STRING,   /* char[size] */
  K_DURATION, /* int or int64_t (by size) milliseconds in [min, max] */
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
  /* Optional, instead of equal: reports finer keys itself, returns how many. */
  int (*diff)(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b, diff_fn_t fn,
              void *ctx);
} custom_ops_t;

struct key_def {
  const char *path; /* dotted, e.g. "store.batch_max_events" */
  kind_t kind;
  size_t offset, size; /* of the field in mtld_config_t */
  double min, max;     /* numbers; durations in ms */
  int excl_min;        /* K_DOUBLE: value must be > min */
  int64_t unit_ms;     /* K_DURATION: what a plain integer counts */
  int reloadable;      /* SIGHUP may change it */
  const custom_ops_t *ops;
};

#define DAY_MS 86400000.0
#define FIELD(f) .offset = offsetof(mtld_config_t, f), .size = sizeof(((mtld_config_t *)0)->f)

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

static void print_duration(FILE *out, int64_t ms) {
  char buf[32];
  mtld_config_format_duration(ms, buf, sizeof(buf));
  fprintf(out, "\"%s\"", buf);
}

/* ------------------------------------------------------- custom kinds */

static const char *const source_type_names[] = {"kafka", "file"};
static const char *const format_names[] = {"auto", "protobuf", "json"};

static mtld_status_t parse_source_type(const key_def_t *k, const config_setting_t *s,
                                       mtld_config_t *cfg, perr_t *pe) {
  const char *v = config_setting_get_string(s);
  if (!v) return fail(pe, s, k->path, "expected a string (\"kafka\" or \"file\")");
  if (strcmp(v, "kafka") == 0)
    cfg->source_type = MTLD_SOURCE_KAFKA;
  else if (strcmp(v, "file") == 0)
    cfg->source_type = MTLD_SOURCE_FILE;
  else
    return fail(pe, s, k->path, "must be \"kafka\" or \"file\", not \"%s\"", v);
  return MTLD_OK;
}
static void print_source_type(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int ind) {
  print_string(out, source_type_names[cfg->source_type]);
}
static int equal_source_type(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b) {
  return a->source_type == b->source_type;
}
static const custom_ops_t source_type_ops = {parse_source_type, print_source_type,
                                             equal_source_type, NULL};

static mtld_status_t parse_format(const key_def_t *k, const config_setting_t *s, mtld_config_t *cfg,
                                  perr_t *pe) {
  const char *v = config_setting_get_string(s);
  if (!v) return fail(pe, s, k->path, "expected a string (\"auto\", \"protobuf\" or \"json\")");
  int f = mtld_format_parse(v);
  if (f < 0)
    return fail(pe, s, k->path, "must be \"auto\", \"protobuf\" or \"json\", not \"%s\"", v);
  cfg->format = (mtld_format_t)f;
  return MTLD_OK;
}
static void print_format(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int ind) {
  print_string(out, format_names[cfg->format]);
}
static int equal_format(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b) {
  return a->format == b->format;
}
static const custom_ops_t format_ops = {parse_format, print_format, equal_format, NULL};

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
  return changed;
}
static const custom_ops_t kafka_ops = {parse_kafka, print_kafka, NULL, diff_kafka};

/* joiner.mode */
static const char *const join_mode_names[] = {"impressions", "sampled_negatives"};

static mtld_status_t parse_join_mode(const key_def_t *k, const config_setting_t *s,
                                     mtld_config_t *cfg, perr_t *pe) {
  const char *v = config_setting_get_string(s);
  if (!v)
    return fail(pe, s, k->path, "expected a string (\"impressions\" or \"sampled_negatives\")");
  if (strcmp(v, "impressions") == 0)
    cfg->joiner.mode = MTLD_JOIN_IMPRESSIONS;
  else if (strcmp(v, "sampled_negatives") == 0)
    cfg->joiner.mode = MTLD_JOIN_SAMPLED_NEGATIVES;
  else
    return fail(pe, s, k->path, "must be \"impressions\" or \"sampled_negatives\", not \"%s\"", v);
  return MTLD_OK;
}
static void print_join_mode(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int ind) {
  print_string(out, join_mode_names[cfg->joiner.mode == MTLD_JOIN_SAMPLED_NEGATIVES]);
}
static int equal_join_mode(const key_def_t *k, const mtld_config_t *a, const mtld_config_t *b) {
  return a->joiner.mode == b->joiner.mode;
}
static const custom_ops_t join_mode_ops = {parse_join_mode, print_join_mode, equal_join_mode, NULL};

/* The table.  Keep a group's rows together; conf/mtld.conf documents each
 * row.  R = reloadable on SIGHUP.  Durations: min/max in ms; unit_ms is what
 * a plain integer counts (1 for *_ms keys, 1000 = seconds otherwise). */
#define R .reloadable = 1
// clang-format off
static const key_def_t keys[] = {
  {.path = "source.type",   .kind = K_CUSTOM, FIELD(source_type), .ops = &source_type_ops},
  {.path = "source.topics", .kind = K_CUSTOM, FIELD(topics),      .ops = &topics_ops},
  {.path = "source.file",   .kind = K_STRING, FIELD(source_file)},
  {.path = "source.format", .kind = K_CUSTOM, FIELD(format),      .ops = &format_ops},

  {.path = "kafka", .kind = K_CUSTOM, FIELD(kafka), .ops = &kafka_ops},

  {.path = "dead_letter.topic", .kind = K_STRING, FIELD(dead_letter_topic), R},

  {.path = "store.path",             .kind = K_STRING,   FIELD(store_path)},
  {.path = "store.sync",             .kind = K_BOOL,     FIELD(store_sync)},
  {.path = "store.batch_max_events", .kind = K_INT,      FIELD(batch_max_events),
   .min = 1, .max = 1000000, R},
  {.path = "store.batch_max_ms",     .kind = K_DURATION, FIELD(batch_max_ms),
   .min = 1, .max = 60000, .unit_ms = 1, R},

  {.path = "features.half_lives",      .kind = K_CUSTOM, FIELD(features.half_life_s),
   .ops = &half_lives_ops},
  {.path = "features.sequence_length", .kind = K_INT,    FIELD(features.seq_len),
   .min = 1, .max = MTLD_MAX_SEQ},
  {.path = "features.prior_strength",  .kind = K_DOUBLE, FIELD(features.prior_strength),
   .min = 0, .excl_min = 1, .max = 1e9},
  {.path = "features.ctr_prior",  .kind = K_DOUBLE, FIELD(features.ctr_prior),  .min = 0, .max = 1},
  {.path = "features.cvr_prior",  .kind = K_DOUBLE, FIELD(features.cvr_prior),  .min = 0, .max = 1},
  {.path = "features.cart_prior", .kind = K_DOUBLE, FIELD(features.cart_prior), .min = 0, .max = 1},

  {.path = "validation.max_record_bytes", .kind = K_SIZE,     FIELD(limits.max_record_bytes),
   .min = 64, .max = 256 << 20, R},
  {.path = "validation.max_lateness",     .kind = K_DURATION, FIELD(limits.max_lateness_ms),
   .min = 0, .max = 365 * DAY_MS, .unit_ms = 1000, R},
  {.path = "validation.max_ahead",        .kind = K_DURATION, FIELD(limits.max_ahead_ms),
   .min = 0, .max = 365 * DAY_MS, .unit_ms = 1000, R},

  /* The joiner's windows and the watermark shape the training stream: a
   * change needs a restart. */
  {.path = "joiner.mode",                   .kind = K_CUSTOM,   FIELD(joiner.mode),
   .ops = &join_mode_ops},
  {.path = "joiner.click_window",           .kind = K_DURATION, FIELD(joiner.click_window_ms),
   .min = 0, .max = 30 * DAY_MS, .unit_ms = 1000},
  {.path = "joiner.conversion_window",      .kind = K_DURATION, FIELD(joiner.conversion_window_ms),
   .min = 0, .max = 90 * DAY_MS, .unit_ms = 1000},
  {.path = "joiner.negatives_per_positive", .kind = K_INT,      FIELD(joiner.negatives_per_positive),
   .min = 0, .max = MTLD_JOINER_MAX_NEGATIVES},
  {.path = "joiner.popularity_size",        .kind = K_INT,      FIELD(joiner.popularity_size),
   .min = 1, .max = MTLD_JOINER_MAX_POPULARITY},
  {.path = "joiner.seed",                   .kind = K_U64,      FIELD(joiner.seed)},
  {.path = "joiner.allowed_lateness",       .kind = K_DURATION, FIELD(allowed_lateness_ms),
   .min = 0, .max = 30 * DAY_MS, .unit_ms = 1000},
  {.path = "joiner.idle_after",             .kind = K_DURATION, FIELD(idle_ms),
   .min = 0, .max = 365 * DAY_MS, .unit_ms = 1000},

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

void mtld_config_default(mtld_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->source_type = MTLD_SOURCE_KAFKA;
  cfg->format = MTLD_FMT_AUTO;
  snprintf(cfg->kafka[0].name, sizeof(cfg->kafka[0].name), "group.id");
  snprintf(cfg->kafka[0].value, sizeof(cfg->kafka[0].value), "mtld");
  cfg->n_kafka = 1;
  snprintf(cfg->store_path, sizeof(cfg->store_path), "/var/lib/mtld/store");
  cfg->store_sync = 1;
  cfg->batch_max_events = 2000;
  cfg->batch_max_ms = 200;
  mtld_feature_def_default(&cfg->features);
  mtld_validate_limits_default(&cfg->limits);
  mtld_joiner_config_default(&cfg->joiner);
  cfg->allowed_lateness_ms = 60000;
  cfg->idle_ms = 0;
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
  if (k->kind == K_DURATION) {
    char lo[32], hi[32];
    mtld_config_format_duration((int64_t)k->min, lo, sizeof(lo));
    mtld_config_format_duration((int64_t)k->max, hi, sizeof(hi));
    return fail(pe, s, k->path, "must be between %s and %s", lo, hi);
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
  case K_SIZE: {
    if (!is_int) return fail(pe, s, k->path, "expected an integer");
    long long v = config_setting_get_int64(s);
    if ((st = check_range(k, s, (double)v, pe)) != MTLD_OK) return st;
    if (k->kind == K_INT)
      *(int *)field(cfg, k) = (int)v;
    else
      *(size_t *)field(cfg, k) = (size_t)v;
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
  case K_DOUBLE: {
    if (!is_int && t != CONFIG_TYPE_FLOAT) return fail(pe, s, k->path, "expected a number");
    double v =
        t == CONFIG_TYPE_FLOAT ? config_setting_get_float(s) : (double)config_setting_get_int64(s);
    if (!isfinite(v)) return fail(pe, s, k->path, "must be finite");
    if ((st = check_range(k, s, v, pe)) != MTLD_OK) return st;
    *(double *)field(cfg, k) = v;
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
  if (!cfg->store_path[0]) return fail_at_path(pe, lc, "store.path", "must not be empty");
  char jerr[256];
  if (mtld_joiner_config_check(&cfg->joiner, jerr, sizeof(jerr)) != MTLD_OK)
    return fail_at_path(pe, lc, "joiner", "%s", jerr);
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

mtld_status_t mtld_config_load(mtld_config_t *cfg, const char *path, char *err, size_t errlen) {
  char dir[1024];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash)
    slash[slash == dir ? 1 : 0] = '\0';
  else
    snprintf(dir, sizeof(dir), ".");
  perr_t pe = {path, dir, err, errlen};
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return MTLD_ERR_CONFIG;
  }
  fclose(f);
  config_t lc;
  config_init(&lc);
  config_set_include_dir(&lc, dir);
  mtld_status_t st;
  if (!config_read_file(&lc, path)) {
    if (config_error_type(&lc) == CONFIG_ERR_FILE_IO) {
      snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
      st = MTLD_ERR_CONFIG;
    } else {
      st = syntax_error(&lc, &pe);
    }
  } else {
    st = load_tree(cfg, &lc, path, &pe);
  }
  config_destroy(&lc);
  return st;
}

mtld_status_t mtld_config_load_string(mtld_config_t *cfg, const char *text, const char *name,
                                      char *err, size_t errlen) {
  perr_t pe = {name, NULL, err, errlen};
  config_t lc;
  config_init(&lc);
  mtld_status_t st =
      config_read_string(&lc, text) ? load_tree(cfg, &lc, name, &pe) : syntax_error(&lc, &pe);
  config_destroy(&lc);
  return st;
}

/* -------------------------------------------------------- print and diff */

static void print_value(const key_def_t *k, const mtld_config_t *cfg, FILE *out, int indent) {
  const void *p = cfield(cfg, k);
  switch (k->kind) {
  case K_INT: fprintf(out, "%d", *(const int *)p); break;
  case K_SIZE: fprintf(out, "%zu", *(const size_t *)p); break;
  case K_U64: fprintf(out, "%lluL", (unsigned long long)*(const uint64_t *)p); break;
  case K_BOOL: fputs(*(const int *)p ? "true" : "false", out); break;
  case K_DOUBLE: print_double(out, *(const double *)p); break;
  case K_STRING: print_string(out, (const char *)p); break;
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
  case K_CUSTOM: return k->ops->equal(k, a, b);
  default: return memcmp(cfield(a, k), cfield(b, k), k->size) == 0;
  }
}

int mtld_config_diff(const mtld_config_t *old_cfg, const mtld_config_t *new_cfg,
                     void (*fn)(void *ctx, const char *key, int reloadable), void *ctx) {
  int refused = 0;
  for (size_t i = 0; i < N_KEYS; i++) {
    const key_def_t *k = &keys[i];
    int changed;
    if (k->kind == K_CUSTOM && k->ops->diff) {
      changed = k->ops->diff(k, old_cfg, new_cfg, fn, ctx);
    } else {
      changed = !values_equal(k, old_cfg, new_cfg);
      if (changed && fn) fn(ctx, k->path, k->reloadable);
    }
    if (!k->reloadable) refused += changed;
  }
  return refused;
}
