/* convert.c - CSV rows -> mtld events: one generic column mapping, the
 * dataset layouts as presets of it, and per-reason accounting of the rows
 * that cannot be converted.  See convert.h for the mapping language. */
#include "tools/convert.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
  F_ID,
  F_USER,
  F_ITEM,
  F_CATEGORY,
  F_TYPE,
  F_TIME,
  F_SCENARIO,
  F_RATING,
  F_PRICE,
  F_QUANTITY,
  F_POSITION,
  F_REQUEST,
  F_CLICK,
  F_PURCHASE,
  F_TIME_OFFSET,
  F_COUNT
};

static const char *const field_names[F_COUNT] = {
    "id",    "user",     "item",     "category", "type",  "time",     "scenario",   "rating",
    "price", "quantity", "position", "request",  "click", "purchase", "time_offset"};

#define CONV_MAX_COMBO 16 /* columns combined into one id */
#define CONV_MAX_EXAMPLES 5

typedef enum { TU_S, TU_MS, TU_US, TU_ISO, TU_DATE } conv_time_unit_t;

#define CONV_MAX_RECORD (1u << 20) /* a quoted field may span lines up to this */
#define CONV_MAX_NULLS 16

/* Values read as "no value" unless the map says null=... (an id "NA" would
 * otherwise become one user holding every anonymous row). */
static const char *const default_nulls[] = {"NA",   "N/A", "NULL", "null",
                                            "None", "\\N", "nan",  "NaN"};
typedef enum { IDS_AUTO, IDS_HASH } conv_ids_t;

typedef struct {
  int set;
  char *konst; /* const:VALUE */
  int ncols;
  char *names[CONV_MAX_COMBO];
  int idx[CONV_MAX_COMBO]; /* 0-based once resolved, -1 before */
} conv_field_t;

typedef struct {
  char *value;
  int type; /* 0 = skip */
} conv_typemap_t;

typedef struct {
  char *value;
  int64_t count;
} conv_skip_t;

typedef struct {
  int64_t line_no;
  int file_no;
  mtld_conv_bad_t reason;
  char text[128];
} conv_example_t;

/* attr.NAME=COLUMN (categorical) or attr.NAME=num:COLUMN (numeric). */
typedef struct {
  char name[MTLD_ATTR_NAME_LEN + 1];
  uint64_t name_id;
  int numeric;
  conv_field_t f;
} conv_attr_t;

struct mtld_conv {
  char layout[16];
  conv_field_t f[F_COUNT];
  conv_attr_t attrs[MTLD_ATTR_MAX];
  int n_attrs;
  int header;
  char sep;
  conv_time_unit_t time_unit;
  conv_time_unit_t offset_unit; /* of time_offset: TU_S | TU_MS | TU_US */
  int64_t tz_ms;                /* added to ISO/date times that carry no offset: -(zone offset) */
  conv_ids_t ids;
  char *nulls[CONV_MAX_NULLS]; /* the null set ("" is always null) */
  int n_nulls;
  char scenario_prefix[32];
  int64_t base_ms;
  int64_t time_from_ms, time_to_ms;

  conv_typemap_t *tmap; /* user entries first, then the layout's */
  int n_tmap;

  int resolved;      /* columns resolved (header read, or no header) */
  int file_no;       /* 0-based index of the current input (mtld_conv_next_file) */
  int64_t line_no;   /* records seen in this input, 1-based number of the current one */
  int64_t data_rows; /* data rows seen (the synthetic-time index) */

  /* scratch: a copy of the line split in place */
  char *buf;
  size_t buf_cap;
  char **fields;
  size_t *field_len;
  unsigned char *field_null; /* the field's text was in the null set */
  int fields_cap;
  char *hbuf; /* hash input */
  size_t hbuf_cap;

  mtld_conv_stats_t st;
  conv_skip_t *skips;
  int n_skips;
  conv_example_t ex[CONV_MAX_EXAMPLES];
  int n_ex;
};

static const char *const bad_names[MTLD_CONV_BAD_COUNT] = {
    "bad_csv",           "too_few_columns",   "missing_id",
    "bad_time",          "unknown_type",      "bad_rating",
    "bad_number",        "bad_label",         "purchase_without_click",
    "scenario_too_long", "time_out_of_range", "null_id"};

const char *mtld_conv_bad_name(mtld_conv_bad_t r) {
  return (unsigned)r < MTLD_CONV_BAD_COUNT ? bad_names[r] : "unknown";
}

static void conv_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conv_seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static void field_clear(conv_field_t *f) {
  free(f->konst);
  for (int i = 0; i < f->ncols; i++) free(f->names[i]);
  memset(f, 0, sizeof *f);
}

/* Parses the value of a column key: const:X, or COL[+COL...]. */
static mtld_status_t field_parse(conv_field_t *f, const char *key, const char *v, size_t vlen,
                                 char *err, size_t errlen) {
  field_clear(f);
  if (vlen == 0) {
    conv_seterr(err, errlen, "map: %s: empty column", key);
    return MTLD_ERR_INVALID;
  }
  f->set = 1;
  if (vlen >= 6 && strncmp(v, "const:", 6) == 0) {
    f->konst = strndup(v + 6, vlen - 6);
    return f->konst ? MTLD_OK : MTLD_ERR_NOMEM;
  }
  size_t i = 0;
  while (i <= vlen) {
    size_t j = i;
    while (j < vlen && v[j] != '+') j++;
    if (j == i) {
      conv_seterr(err, errlen, "map: %s: empty column in '%.*s'", key, (int)vlen, v);
      return MTLD_ERR_INVALID;
    }
    if (f->ncols == CONV_MAX_COMBO) {
      conv_seterr(err, errlen, "map: %s: more than %d columns", key, CONV_MAX_COMBO);
      return MTLD_ERR_INVALID;
    }
    f->names[f->ncols] = strndup(v + i, j - i);
    if (!f->names[f->ncols]) return MTLD_ERR_NOMEM;
    f->idx[f->ncols] = -1;
    f->ncols++;
    i = j + 1;
  }
  return MTLD_OK;
}

static int parse_sep(const char *v, size_t n, char *out) {
  static const struct {
    const char *name;
    char c;
  } names[] = {{"comma", ','},     {"tab", '\t'}, {"\\t", '\t'},
               {"semicolon", ';'}, {"pipe", '|'}, {"space", ' '}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strlen(names[i].name) == n && strncasecmp(v, names[i].name, n) == 0) {
      *out = names[i].c;
      return 0;
    }
  if (n == 1 && v[0] != '"') {
    *out = v[0];
    return 0;
  }
  return -1;
}

static void conv_clear_nulls(mtld_conv_t *c) {
  for (int i = 0; i < c->n_nulls; i++) free(c->nulls[i]);
  c->n_nulls = 0;
}

/* null=A|B|...: replaces the null set ("null=" leaves only the empty text). */
static mtld_status_t conv_set_nulls(mtld_conv_t *c, const char *v, size_t vlen, char *err,
                                    size_t errlen) {
  conv_clear_nulls(c);
  size_t i = 0;
  while (i < vlen) {
    size_t j = i;
    while (j < vlen && v[j] != '|') j++;
    if (j > i) {
      if (c->n_nulls == CONV_MAX_NULLS) {
        conv_seterr(err, errlen, "map: null: more than %d values", CONV_MAX_NULLS);
        return MTLD_ERR_INVALID;
      }
      c->nulls[c->n_nulls] = strndup(v + i, j - i);
      if (!c->nulls[c->n_nulls]) return MTLD_ERR_NOMEM;
      c->n_nulls++;
    }
    i = j + 1;
  }
  return MTLD_OK;
}

/* "Z" | "UTC" | "+hh:mm" | "-hh:mm" | "+hh" | "+hhmm" -> ms to add to a
 * local time to get UTC.  0 ok, -1 malformed. */
static int conv_parse_tz(const char *v, size_t n, int64_t *add_ms) {
  if ((n == 1 && v[0] == 'Z') || (n == 3 && strncasecmp(v, "UTC", 3) == 0)) {
    *add_ms = 0;
    return 0;
  }
  if (n < 3 || (v[0] != '+' && v[0] != '-')) return -1;
  int sign = v[0] == '-' ? -1 : 1, hh = 0, mm = 0;
  size_t i = 1;
  for (int k = 0; k < 2; k++, i++) {
    if (!isdigit((unsigned char)v[i])) return -1;
    hh = hh * 10 + (v[i] - '0');
  }
  if (i < n && v[i] == ':') i++;
  if (i < n) {
    if (n - i != 2 || !isdigit((unsigned char)v[i]) || !isdigit((unsigned char)v[i + 1])) return -1;
    mm = (v[i] - '0') * 10 + (v[i + 1] - '0');
  }
  if (hh > 14 || mm > 59) return -1;
  *add_ms = -(int64_t)sign * (hh * 60 + mm) * 60000;
  return 0;
}

/* attr.NAME=[num:]COLUMN: a named attribute from a column (categorical: the
 * text, hashed; num: a number).  A later mapping of NAME replaces it. */
static mtld_status_t conv_attr_parse(mtld_conv_t *c, const char *key, const char *v, size_t vlen,
                                     char *err, size_t errlen) {
  const char *name = key + 5;
  size_t n = strlen(name);
  if (n > MTLD_ATTR_NAME_LEN) {
    conv_seterr(err, errlen, "map: %s: attribute name over %d bytes", key, MTLD_ATTR_NAME_LEN);
    return MTLD_ERR_INVALID;
  }
  int numeric = vlen >= 4 && strncmp(v, "num:", 4) == 0;
  if (numeric) v += 4, vlen -= 4;
  uint64_t id = mtld_hash_id(name, n);
  int i = 0;
  while (i < c->n_attrs && c->attrs[i].name_id != id) i++;
  if (i == c->n_attrs) {
    if (c->n_attrs == MTLD_ATTR_MAX) {
      conv_seterr(err, errlen, "map: more than %d attributes", MTLD_ATTR_MAX);
      return MTLD_ERR_INVALID;
    }
    c->n_attrs++;
  }
  conv_attr_t *a = &c->attrs[i];
  memcpy(a->name, name, n + 1);
  a->name_id = id;
  a->numeric = numeric;
  mtld_status_t st = field_parse(&a->f, key, v, vlen, err, errlen);
  if (st == MTLD_OK && (a->f.konst || a->f.ncols != 1)) {
    conv_seterr(err, errlen, "map: %s: one column (no const:, no COL+COL)", key);
    st = MTLD_ERR_INVALID;
  }
  return st;
}

/* Applies a map text (comma-separated k=v) over the current mapping. */
static mtld_status_t conv_apply_map(mtld_conv_t *c, const char *map, char *err, size_t errlen) {
  const char *p = map;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    const char *next = end ? end + 1 : p + n;
    if (n == 0) {
      p = next;
      continue;
    }
    const char *eq = memchr(p, '=', n);
    if (!eq) {
      conv_seterr(err, errlen, "map: '%.*s' is not key=value", (int)n, p);
      return MTLD_ERR_INVALID;
    }
    size_t klen = (size_t)(eq - p);
    const char *v = eq + 1;
    size_t vlen = n - klen - 1;
    char key[8 + MTLD_ATTR_NAME_LEN];
    if (klen == 0 || klen >= sizeof key) {
      conv_seterr(err, errlen, "map: bad key in '%.*s'", (int)n, p);
      return MTLD_ERR_INVALID;
    }
    memcpy(key, p, klen);
    key[klen] = 0;
    mtld_status_t st = MTLD_OK;
    int fi = -1;
    for (int i = 0; i < F_COUNT; i++)
      if (strcmp(key, field_names[i]) == 0) fi = i;
    if (fi >= 0) {
      st = field_parse(&c->f[fi], key, v, vlen, err, errlen);
    } else if (klen > 5 && strncmp(key, "attr.", 5) == 0) {
      st = conv_attr_parse(c, key, v, vlen, err, errlen);
    } else if (strcmp(key, "sep") == 0) {
      if (vlen == 0) { /* "sep=," : the comma ended the token */
        c->sep = ',';
      } else if (parse_sep(v, vlen, &c->sep) != 0) {
        conv_seterr(err, errlen, "map: sep: '%.*s' is not one character or a name", (int)vlen, v);
        return MTLD_ERR_INVALID;
      }
    } else if (strcmp(key, "header") == 0) {
      if (vlen == 1 && (v[0] == '0' || v[0] == '1')) {
        c->header = v[0] == '1';
      } else {
        conv_seterr(err, errlen, "map: header: must be 0 or 1");
        return MTLD_ERR_INVALID;
      }
    } else if (strcmp(key, "time_unit") == 0) {
      static const struct {
        const char *name;
        conv_time_unit_t u;
      } units[] = {{"s", TU_S}, {"ms", TU_MS}, {"us", TU_US}, {"iso", TU_ISO}, {"date", TU_DATE}};
      int found = 0;
      for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strlen(units[i].name) == vlen && strncmp(v, units[i].name, vlen) == 0) {
          c->time_unit = units[i].u;
          found = 1;
        }
      if (!found) {
        conv_seterr(err, errlen, "map: time_unit: '%.*s' is not s|ms|us|iso|date", (int)vlen, v);
        return MTLD_ERR_INVALID;
      }
    } else if (strcmp(key, "ids") == 0) {
      if (vlen == 4 && strncmp(v, "auto", 4) == 0) {
        c->ids = IDS_AUTO;
      } else if (vlen == 4 && strncmp(v, "hash", 4) == 0) {
        c->ids = IDS_HASH;
      } else {
        conv_seterr(err, errlen, "map: ids: must be auto or hash");
        return MTLD_ERR_INVALID;
      }
    } else if (strcmp(key, "time_offset_unit") == 0) {
      if (vlen == 1 && v[0] == 's') {
        c->offset_unit = TU_S;
      } else if (vlen == 2 && strncmp(v, "ms", 2) == 0) {
        c->offset_unit = TU_MS;
      } else if (vlen == 2 && strncmp(v, "us", 2) == 0) {
        c->offset_unit = TU_US;
      } else {
        conv_seterr(err, errlen, "map: time_offset_unit: '%.*s' is not s|ms|us", (int)vlen, v);
        return MTLD_ERR_INVALID;
      }
    } else if (strcmp(key, "tz") == 0) {
      if (conv_parse_tz(v, vlen, &c->tz_ms) != 0) {
        conv_seterr(err, errlen, "map: tz: '%.*s' is not Z, UTC or +hh:mm / -hh:mm", (int)vlen, v);
        return MTLD_ERR_INVALID;
      }
    } else if (strcmp(key, "null") == 0) {
      st = conv_set_nulls(c, v, vlen, err, errlen);
    } else if (strcmp(key, "scenario_prefix") == 0) {
      if (vlen >= sizeof c->scenario_prefix) {
        conv_seterr(err, errlen, "map: scenario_prefix: too long");
        return MTLD_ERR_INVALID;
      }
      memcpy(c->scenario_prefix, v, vlen);
      c->scenario_prefix[vlen] = 0;
    } else {
      conv_seterr(err, errlen, "map: unknown key '%s'", key);
      return MTLD_ERR_INVALID;
    }
    if (st != MTLD_OK) return st;
    /* "sep=," splits into "sep=" and an empty token, which the empty-token
     * skip above consumes. */
    p = next;
  }
  return MTLD_OK;
}

/* Appends type mappings "value=TYPE|skip,...". */
static mtld_status_t conv_apply_typemap(mtld_conv_t *c, const char *tm, char *err, size_t errlen) {
  const char *p = tm;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    const char *next = end ? end + 1 : p + n;
    if (n == 0) {
      p = next;
      continue;
    }
    const char *eq = memchr(p, '=', n);
    if (!eq || eq == p || (size_t)(eq - p) == n - 1) {
      conv_seterr(err, errlen, "type map: '%.*s' is not value=TYPE", (int)n, p);
      return MTLD_ERR_INVALID;
    }
    char tname[32];
    size_t tlen = n - (size_t)(eq - p) - 1;
    if (tlen >= sizeof tname) tlen = sizeof tname - 1;
    memcpy(tname, eq + 1, tlen);
    tname[tlen] = 0;
    int type = 0;
    if (strcasecmp(tname, "skip") != 0) {
      type = mtld_event_type_parse(tname);
      if (!type) {
        conv_seterr(err, errlen, "type map: '%s' is not an event type or skip", tname);
        return MTLD_ERR_INVALID;
      }
    }
    conv_typemap_t *nt = realloc(c->tmap, (size_t)(c->n_tmap + 1) * sizeof *nt);
    if (!nt) return MTLD_ERR_NOMEM;
    c->tmap = nt;
    c->tmap[c->n_tmap].value = strndup(p, (size_t)(eq - p));
    if (!c->tmap[c->n_tmap].value) return MTLD_ERR_NOMEM;
    c->tmap[c->n_tmap].type = type;
    c->n_tmap++;
    p = next;
  }
  return MTLD_OK;
}

mtld_status_t mtld_conv_new(mtld_conv_t **out, const mtld_conv_opts_t *opts, char *err,
                            size_t errlen) {
  *out = NULL;
  const char *layout = opts->layout ? opts->layout : "generic";
  const char *preset = NULL, *preset_types = NULL;
  if (strcmp(layout, "taobao") == 0) {
    preset = "header=0,user=1,item=2,category=3,type=4,time=5,time_unit=s,"
             "scenario=const:taobao";
    preset_types = "pv=CLICK,cart=ADD_TO_CART,buy=PURCHASE,fav=skip";
  } else if (strcmp(layout, "amazon") == 0) {
    preset = "header=1,user=UserId,item=ProductId,rating=Rating,time=Timestamp,time_unit=s,"
             "type=const:REVIEW,scenario=const:amazon,ids=hash";
  } else if (strcmp(layout, "aliccp") == 0) {
    preset = "header=1,user=101,item=205,category=206,scenario=301,scenario_prefix=aliccp_,"
             "click=click,purchase=purchase,ids=hash";
  } else if (strcmp(layout, "aliexpress") == 0) {
    preset = "header=1,user=search_id,item=categorical_10+categorical_11+categorical_12+"
             "categorical_13+categorical_14+categorical_15+categorical_16,"
             "scenario=const:aliexpress,click=click,purchase=conversion,ids=hash";
  } else if (strcmp(layout, "generic") != 0) {
    conv_seterr(err, errlen, "unknown layout '%s' (taobao, amazon, aliccp, aliexpress, generic)",
                layout);
    return MTLD_ERR_INVALID;
  } else if (!opts->map || !*opts->map) {
    conv_seterr(err, errlen, "layout generic needs a map (--map 'user=...,item=...')");
    return MTLD_ERR_INVALID;
  }

  mtld_conv_t *c = calloc(1, sizeof *c);
  if (!c) return MTLD_ERR_NOMEM;
  snprintf(c->layout, sizeof c->layout, "%s", layout);
  c->sep = ',';
  c->offset_unit = TU_MS;
  for (size_t i = 0; i < sizeof default_nulls / sizeof default_nulls[0]; i++) {
    c->nulls[c->n_nulls] = strdup(default_nulls[i]);
    if (!c->nulls[c->n_nulls]) {
      mtld_conv_free(c);
      return MTLD_ERR_NOMEM;
    }
    c->n_nulls++;
  }
  c->base_ms = opts->base_ms ? opts->base_ms : MTLD_CONV_DEFAULT_BASE_MS;
  c->time_from_ms = opts->time_from_ms;
  c->time_to_ms = opts->time_to_ms;
  mtld_status_t st = MTLD_OK;
  if (preset) st = conv_apply_map(c, preset, err, errlen);
  if (st == MTLD_OK && opts->map) st = conv_apply_map(c, opts->map, err, errlen);
  if (st == MTLD_OK && opts->type_map) st = conv_apply_typemap(c, opts->type_map, err, errlen);
  if (st == MTLD_OK && preset_types) st = conv_apply_typemap(c, preset_types, err, errlen);
  if (st == MTLD_OK && opts->scenario) {
    if (strlen(opts->scenario) >= MTLD_SCENARIO_MAX) {
      conv_seterr(err, errlen, "scenario '%s' is over %d bytes", opts->scenario,
                  MTLD_SCENARIO_MAX - 1);
      st = MTLD_ERR_INVALID;
    } else {
      char v[MTLD_SCENARIO_MAX + 8];
      snprintf(v, sizeof v, "const:%s", opts->scenario);
      st = field_parse(&c->f[F_SCENARIO], "scenario", v, strlen(v), err, errlen);
      c->scenario_prefix[0] = 0;
    }
  }
  if (st == MTLD_OK) {
    int labels = c->f[F_CLICK].set || c->f[F_PURCHASE].set;
    if (!c->f[F_USER].set || !c->f[F_ITEM].set) {
      conv_seterr(err, errlen, "map: user and item must be mapped");
      st = MTLD_ERR_INVALID;
    } else if (labels && c->f[F_TYPE].set) {
      conv_seterr(err, errlen, "map: type and click/purchase labels exclude each other");
      st = MTLD_ERR_INVALID;
    } else if (c->f[F_PURCHASE].set && !c->f[F_CLICK].set) {
      conv_seterr(err, errlen, "map: purchase label needs a click label");
      st = MTLD_ERR_INVALID;
    } else if (!labels && !c->f[F_TYPE].set) {
      conv_seterr(err, errlen, "map: map type (a column or const:TYPE) or click labels");
      st = MTLD_ERR_INVALID;
    } else if (c->f[F_TIME_OFFSET].set && !c->f[F_TIME].set) {
      conv_seterr(err, errlen, "map: time_offset needs a time column");
      st = MTLD_ERR_INVALID;
    } else if (c->f[F_TYPE].konst && !mtld_event_type_parse(c->f[F_TYPE].konst)) {
      conv_seterr(err, errlen, "map: type: '%s' is not an event type", c->f[F_TYPE].konst);
      st = MTLD_ERR_INVALID;
    } else if (c->f[F_SCENARIO].konst &&
               strlen(c->scenario_prefix) + strlen(c->f[F_SCENARIO].konst) >= MTLD_SCENARIO_MAX) {
      conv_seterr(err, errlen, "map: scenario constant over %d bytes", MTLD_SCENARIO_MAX - 1);
      st = MTLD_ERR_INVALID;
    }
    for (int i = 0; st == MTLD_OK && i < F_COUNT; i++) {
      if (c->f[i].konst && i != F_TYPE && i != F_SCENARIO && i != F_CATEGORY) {
        conv_seterr(err, errlen, "map: %s: const: only for type, scenario, category",
                    field_names[i]);
        st = MTLD_ERR_INVALID;
      }
      if (c->f[i].ncols > 1 && i != F_USER && i != F_ITEM && i != F_CATEGORY && i != F_ID &&
          i != F_REQUEST) {
        conv_seterr(err, errlen, "map: %s: only id fields combine columns", field_names[i]);
        st = MTLD_ERR_INVALID;
      }
    }
  }
  if (st != MTLD_OK) {
    mtld_conv_free(c);
    return st;
  }
  *out = c;
  return MTLD_OK;
}

void mtld_conv_free(mtld_conv_t *c) {
  if (!c) return;
  for (int i = 0; i < F_COUNT; i++) field_clear(&c->f[i]);
  for (int i = 0; i < c->n_attrs; i++) field_clear(&c->attrs[i].f);
  conv_clear_nulls(c);
  free(c->field_null);
  for (int i = 0; i < c->n_tmap; i++) free(c->tmap[i].value);
  free(c->tmap);
  for (int i = 0; i < c->n_skips; i++) free(c->skips[i].value);
  free(c->skips);
  free(c->buf);
  free(c->fields);
  free(c->field_len);
  free(c->hbuf);
  free(c);
}

/* Splits c->buf (a copy of the line) in place into fields; quoted fields are
 * unquoted ("" -> ").  Returns the number of fields, or -1 on an unterminated
 * quote, -2 on allocation failure. */
static int conv_split(mtld_conv_t *c, size_t len) {
  int n = 0;
  size_t i = 0;
  char *b = c->buf;
  for (;;) {
    if (n == c->fields_cap) {
      int cap = c->fields_cap ? c->fields_cap * 2 : 32;
      char **nf = realloc(c->fields, (size_t)cap * sizeof *nf);
      if (!nf) return -2;
      c->fields = nf;
      size_t *nl = realloc(c->field_len, (size_t)cap * sizeof *nl);
      if (!nl) return -2;
      c->field_len = nl;
      unsigned char *nn = realloc(c->field_null, (size_t)cap);
      if (!nn) return -2;
      c->field_null = nn;
      c->fields_cap = cap;
    }
    size_t start = i, w = i;
    if (i < len && b[i] == '"') {
      i++;
      for (;;) {
        if (i >= len) return -1;
        if (b[i] == '"') {
          if (i + 1 < len && b[i + 1] == '"') {
            b[w++] = '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        b[w++] = b[i++];
      }
      while (i < len && b[i] != c->sep) i++; /* junk after the closing quote is dropped */
    } else {
      while (i < len && b[i] != c->sep) i++;
      w = i;
    }
    /* trim ASCII blanks (not the separator itself) */
    size_t s = start;
    while (s < w && (b[s] == ' ' || b[s] == '\t') && c->sep != b[s]) s++;
    size_t e = w;
    while (e > s && (b[e - 1] == ' ' || b[e - 1] == '\t') && c->sep != b[e - 1]) e--;
    c->fields[n] = b + s;
    c->field_len[n] = e - s;
    n++;
    if (i >= len) break;
    b[i] = 0; /* separator */
    i++;
  }
  for (int k = 0; k < n; k++) {
    c->fields[k][c->field_len[k]] = 0;
    c->field_null[k] = 0;
  }
  return n;
}

/* Empties the fields whose text is in the null set (data rows only: a
 * header may name a column "NA"). */
static void conv_nullify(mtld_conv_t *c, int nf) {
  for (int k = 0; k < nf; k++) {
    size_t n = c->field_len[k];
    if (n == 0) continue;
    for (int i = 0; i < c->n_nulls; i++)
      if (strcmp(c->fields[k], c->nulls[i]) == 0) {
        c->field_len[k] = 0;
        c->fields[k][0] = 0;
        c->field_null[k] = 1;
        break;
      }
  }
}

/* 1 when the single-column field fi was a null marker in this row. */
static int conv_is_null(const mtld_conv_t *c, int fi, int nf) {
  const conv_field_t *f = &c->f[fi];
  if (!f->set || f->konst) return 0;
  for (int k = 0; k < f->ncols; k++)
    if (f->idx[k] < nf && c->field_null[f->idx[k]]) return 1;
  return 0;
}

static int all_digits(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isdigit((unsigned char)s[i])) return 0;
  return 1;
}

/* Resolves column names against the header fields (or, without a header,
 * as 1-based indices). */
static mtld_status_t conv_resolve(mtld_conv_t *c, int nf, char *err, size_t errlen) {
  for (int fi = 0; fi < F_COUNT + c->n_attrs; fi++) {
    conv_field_t *f = fi < F_COUNT ? &c->f[fi] : &c->attrs[fi - F_COUNT].f;
    for (int k = 0; k < f->ncols; k++) {
      const char *name = f->names[k];
      int idx = -1;
      if (c->header) {
        for (int i = 0; i < nf && idx < 0; i++)
          if (strcmp(c->fields[i], name) == 0) idx = i;
        for (int i = 0; i < nf && idx < 0; i++)
          if (strcasecmp(c->fields[i], name) == 0) idx = i;
      }
      if (idx < 0 && all_digits(name, strlen(name))) {
        long v = strtol(name, NULL, 10);
        if (v >= 1 && v <= 100000) idx = (int)v - 1;
      }
      if (idx < 0) {
        conv_seterr(err, errlen, "map: %s%s: column '%s' is %s", fi < F_COUNT ? "" : "attr.",
                    fi < F_COUNT ? field_names[fi] : c->attrs[fi - F_COUNT].name, name,
                    c->header ? "not in the header" : "not a 1-based index (no header)");
        return MTLD_ERR_INVALID;
      }
      f->idx[k] = idx;
    }
  }
  c->resolved = 1;
  return MTLD_OK;
}

static void conv_bad(mtld_conv_t *c, mtld_conv_bad_t r, const char *line, size_t len) {
  c->st.bad++;
  c->st.bad_by_reason[r]++;
  if (c->n_ex < CONV_MAX_EXAMPLES) {
    conv_example_t *e = &c->ex[c->n_ex++];
    e->line_no = c->line_no;
    e->file_no = c->file_no;
    e->reason = r;
    size_t n = len < sizeof e->text - 1 ? len : sizeof e->text - 1;
    for (size_t i = 0; i < n; i++) e->text[i] = line[i] == '\n' || line[i] == '\r' ? ' ' : line[i];
    e->text[n] = 0;
  }
}

static void conv_skip(mtld_conv_t *c, const char *value) {
  c->st.skipped++;
  for (int i = 0; i < c->n_skips; i++)
    if (strcmp(c->skips[i].value, value) == 0) {
      c->skips[i].count++;
      return;
    }
  conv_skip_t *ns = realloc(c->skips, (size_t)(c->n_skips + 1) * sizeof *ns);
  if (!ns) return; /* the total still counts it */
  c->skips = ns;
  c->skips[c->n_skips].value = strdup(value);
  if (!c->skips[c->n_skips].value) return;
  c->skips[c->n_skips].count = 1;
  c->n_skips++;
}

int64_t mtld_conv_skipped_count(const mtld_conv_t *c, const char *value) {
  for (int i = 0; i < c->n_skips; i++)
    if (strcmp(c->skips[i].value, value) == 0) return c->skips[i].count;
  return 0;
}

/* The text of a single-column field, or NULL when unmapped / out of range
 * (*missing set when out of range). */
static const char *conv_fcol(const mtld_conv_t *c, const conv_field_t *f, int nf, int *missing,
                             size_t *len) {
  if (!f->set) return NULL;
  if (f->konst) {
    *len = strlen(f->konst);
    return f->konst;
  }
  int idx = f->idx[0];
  if (idx >= nf) {
    *missing = 1;
    return NULL;
  }
  *len = c->field_len[idx];
  return c->fields[idx];
}

static const char *conv_col(const mtld_conv_t *c, int fi, int nf, int *missing, size_t *len) {
  return conv_fcol(c, &c->f[fi], nf, missing, len);
}

static int parse_double(const char *s, size_t n, double *out);

/* The row's mapped attributes into ev (an empty or null value: absent).
 * 0, or -1 for a numeric attribute that is not a finite number, or a value
 * over MTLD_ATTR_VALUE_LEN bytes. */
static int conv_attrs(const mtld_conv_t *c, int nf, int *missing, mtld_event_t *ev) {
  for (int i = 0; i < c->n_attrs; i++) {
    const conv_attr_t *a = &c->attrs[i];
    size_t n = 0;
    const char *v = conv_fcol(c, &a->f, nf, missing, &n);
    if (!v || n == 0) continue;
    if (a->numeric) {
      double d;
      if (parse_double(v, n, &d) != 0 || !isfinite(d)) return -1;
      mtld_event_attr_set_num(ev, a->name_id, d);
    } else {
      if (n > MTLD_ATTR_VALUE_LEN) return -1;
      mtld_event_attr_set_str(ev, a->name_id, mtld_hash_id(v, n));
    }
  }
  return 0;
}

static int hbuf_reserve(mtld_conv_t *c, size_t need) {
  if (need <= c->hbuf_cap) return 0;
  size_t cap = c->hbuf_cap ? c->hbuf_cap : 256;
  while (cap < need) cap *= 2;
  char *nb = realloc(c->hbuf, cap);
  if (!nb) return -1;
  c->hbuf = nb;
  c->hbuf_cap = cap;
  return 0;
}

/* An id field: 0 when empty/unmapped.  Combined columns are joined with 0x1f
 * and hashed.  *missing when a column is beyond the row. */
static uint64_t conv_id(mtld_conv_t *c, int fi, int nf, int *missing) {
  const conv_field_t *f = &c->f[fi];
  if (!f->set) return 0;
  if (f->konst)
    return all_digits(f->konst, strlen(f->konst)) && c->ids == IDS_AUTO
               ? strtoull(f->konst, NULL, 10)
               : mtld_hash_id(f->konst, strlen(f->konst));
  if (f->ncols == 1) {
    int idx = f->idx[0];
    if (idx >= nf) {
      *missing = 1;
      return 0;
    }
    const char *s = c->fields[idx];
    size_t n = c->field_len[idx];
    if (n == 0) return 0;
    if (c->ids == IDS_AUTO && all_digits(s, n) && n <= 20) {
      errno = 0;
      unsigned long long v = strtoull(s, NULL, 10);
      if (errno == 0 && v != 0) return (uint64_t)v;
    }
    return mtld_hash_id(s, n);
  }
  size_t total = 0;
  int any = 0;
  for (int k = 0; k < f->ncols; k++) {
    if (f->idx[k] >= nf) {
      *missing = 1;
      return 0;
    }
    total += c->field_len[f->idx[k]] + 1;
    if (c->field_len[f->idx[k]]) any = 1;
  }
  if (!any || hbuf_reserve(c, total) != 0) return 0;
  size_t w = 0;
  for (int k = 0; k < f->ncols; k++) {
    if (k) c->hbuf[w++] = 0x1f;
    memcpy(c->hbuf + w, c->fields[f->idx[k]], c->field_len[f->idx[k]]);
    w += c->field_len[f->idx[k]];
  }
  return mtld_hash_id(c->hbuf, w);
}

static int parse_double(const char *s, size_t n, double *out) {
  if (n == 0) return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end != s + n || errno == ERANGE) return -1;
  *out = v;
  return 0;
}

static int parse_int32(const char *s, size_t n, int32_t *out) {
  double v;
  if (parse_double(s, n, &v) != 0 || v != floor(v) || v < INT32_MIN || v > INT32_MAX) return -1;
  *out = (int32_t)v;
  return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's method). */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int take_num(const char *s, size_t len, size_t *i, int ndig, int *out) {
  int v = 0;
  for (int k = 0; k < ndig; k++) {
    if (*i >= len || !isdigit((unsigned char)s[*i])) return -1;
    v = v * 10 + (s[(*i)++] - '0');
  }
  *out = v;
  return 0;
}

/* The ISO parser; *zoned = 1 when the text carries Z or an offset. */
static int iso_parse(const char *s, size_t len, int64_t *ms, int *zoned) {
  size_t i = 0;
  *zoned = 0;
  int y, mo, d, h = 0, mi = 0, sec = 0, frac_ms = 0;
  if (take_num(s, len, &i, 4, &y) || i >= len || s[i++] != '-' || take_num(s, len, &i, 2, &mo) ||
      i >= len || s[i++] != '-' || take_num(s, len, &i, 2, &d))
    return -1;
  if (mo < 1 || mo > 12 || d < 1 || d > 31) return -1;
  int64_t off_min = 0;
  if (i < len && (s[i] == 'T' || s[i] == ' ')) {
    i++;
    if (take_num(s, len, &i, 2, &h) || i >= len || s[i++] != ':' || take_num(s, len, &i, 2, &mi))
      return -1;
    if (i < len && s[i] == ':') {
      i++;
      if (take_num(s, len, &i, 2, &sec)) return -1;
      if (i < len && (s[i] == '.' || s[i] == ',')) {
        i++;
        int scale = 100, nd = 0;
        while (i < len && isdigit((unsigned char)s[i])) {
          if (nd < 3) frac_ms += (s[i] - '0') * scale;
          scale /= 10;
          nd++;
          i++;
        }
        if (nd == 0) return -1;
      }
    }
    if (h > 23 || mi > 59 || sec > 60) return -1;
    if (i < len && s[i] == 'Z') {
      i++;
      *zoned = 1;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
      *zoned = 1;
      int sign = s[i++] == '-' ? -1 : 1, oh, om = 0;
      if (take_num(s, len, &i, 2, &oh)) return -1;
      if (i < len && s[i] == ':') i++;
      if (i < len && take_num(s, len, &i, 2, &om)) return -1;
      off_min = sign * (oh * 60 + om);
    }
  }
  if (i != len) return -1;
  int64_t days = days_from_civil(y, mo, d);
  *ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - off_min * 60) * 1000 + frac_ms;
  return 0;
}

int mtld_conv_parse_iso_ms(const char *s, size_t len, int64_t *ms) {
  int zoned;
  return iso_parse(s, len, ms, &zoned);
}

/* A number of s/ms/us -> ms.  0 ok, -1 malformed. */
static int conv_num_ms(conv_time_unit_t u, const char *s, size_t n, int64_t *ms) {
  double v;
  if (parse_double(s, n, &v) != 0 || !isfinite(v)) return -1;
  v = u == TU_S ? v * 1000.0 : u == TU_US ? v / 1000.0 : v;
  if (v > 9.2e18 || v < -9.2e18) return -1;
  *ms = (int64_t)llround(v);
  return 0;
}

static int conv_time(const mtld_conv_t *c, const char *s, size_t n, int64_t *ms) {
  int zoned;
  switch (c->time_unit) {
  case TU_ISO:
  case TU_DATE:
    if (iso_parse(s, n, ms, &zoned) != 0) return -1;
    if (!zoned) *ms += c->tz_ms;
    break;
  case TU_S:
  case TU_MS:
  case TU_US:
    if (conv_num_ms(c->time_unit, s, n, ms) != 0) return -1;
    break;
  }
  return *ms > 0 ? 0 : -1;
}

/* Looks a raw type value up: 1..5, 0 = skip, -1 = unknown. */
static int conv_type(const mtld_conv_t *c, const char *v) {
  for (int i = 0; i < c->n_tmap; i++)
    if (strcmp(c->tmap[i].value, v) == 0) return c->tmap[i].type;
  for (int i = 0; i < c->n_tmap; i++)
    if (strcasecmp(c->tmap[i].value, v) == 0) return c->tmap[i].type;
  int t = mtld_event_type_parse(v);
  return t ? t : -1;
}

static uint64_t conv_event_id(mtld_conv_t *c, const char *line, size_t len, int k) {
  char head[64];
  /* the first input keeps the ids of a single-file conversion */
  int hn = c->file_no ? snprintf(head, sizeof head, "%d:%" PRId64 "#%d#", c->file_no, c->line_no, k)
                      : snprintf(head, sizeof head, "%" PRId64 "#%d#", c->line_no, k);
  if (hbuf_reserve(c, (size_t)hn + len) != 0) return 0;
  memcpy(c->hbuf, head, (size_t)hn);
  memcpy(c->hbuf + hn, line, len);
  return mtld_hash_id(c->hbuf, (size_t)hn + len);
}

mtld_status_t mtld_conv_line(mtld_conv_t *c, const char *line, size_t len, mtld_conv_emit_fn emit,
                             void *ctx, char *err, size_t errlen) {
  c->line_no++;
  while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n')) len--;
  c->st.lines++;
  for (size_t i = 0; i < len; i++) c->st.lines += line[i] == '\n';
  if (c->line_no == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) { /* UTF-8 BOM */
    line += 3;
    len -= 3;
  }
  size_t blank = 0;
  while (blank < len && isspace((unsigned char)line[blank])) blank++;
  if (blank == len) return MTLD_OK;

  if (len + 1 > c->buf_cap) {
    size_t cap = c->buf_cap ? c->buf_cap : 1024;
    while (cap < len + 1) cap *= 2;
    char *nb = realloc(c->buf, cap);
    if (!nb) return MTLD_ERR_NOMEM;
    c->buf = nb;
    c->buf_cap = cap;
  }
  memcpy(c->buf, line, len);
  c->buf[len] = 0;
  int nf = conv_split(c, len);
  if (nf == -2) return MTLD_ERR_NOMEM;

  if (!c->resolved) {
    if (c->header) {
      if (nf < 0) {
        conv_seterr(err, errlen, "line %" PRId64 ": header has an unterminated quote", c->line_no);
        return MTLD_ERR_INVALID;
      }
      return conv_resolve(c, nf, err, errlen);
    }
    mtld_status_t st = conv_resolve(c, 0, err, errlen);
    if (st != MTLD_OK) return st;
  }

  int64_t row_index = c->data_rows++;
  c->st.rows++;
  if (nf < 0) {
    conv_bad(c, MTLD_CONV_BAD_CSV, line, len);
    return MTLD_OK;
  }

  conv_nullify(c, nf);
  int missing = 0;
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.user_id = conv_id(c, F_USER, nf, &missing);
  ev.item_id = conv_id(c, F_ITEM, nf, &missing);
  ev.category_id = conv_id(c, F_CATEGORY, nf, &missing);
  ev.request_id = conv_id(c, F_REQUEST, nf, &missing);
  uint64_t given_id = conv_id(c, F_ID, nf, &missing);
  size_t n = 0;
  const char *type_s = conv_col(c, F_TYPE, nf, &missing, &n);
  const char *time_s = NULL, *scen_s = NULL, *rating_s = NULL, *price_s = NULL, *qty_s = NULL,
             *pos_s = NULL, *click_s = NULL, *purch_s = NULL;
  size_t time_n = 0, scen_n = 0, rating_n = 0, price_n = 0, qty_n = 0, pos_n = 0, click_n = 0,
         purch_n = 0;
  time_s = conv_col(c, F_TIME, nf, &missing, &time_n);
  size_t toff_n = 0;
  const char *toff_s = conv_col(c, F_TIME_OFFSET, nf, &missing, &toff_n);
  scen_s = conv_col(c, F_SCENARIO, nf, &missing, &scen_n);
  rating_s = conv_col(c, F_RATING, nf, &missing, &rating_n);
  price_s = conv_col(c, F_PRICE, nf, &missing, &price_n);
  qty_s = conv_col(c, F_QUANTITY, nf, &missing, &qty_n);
  pos_s = conv_col(c, F_POSITION, nf, &missing, &pos_n);
  click_s = conv_col(c, F_CLICK, nf, &missing, &click_n);
  purch_s = conv_col(c, F_PURCHASE, nf, &missing, &purch_n);
  int bad_attr = conv_attrs(c, nf, &missing, &ev);
  if (missing) {
    conv_bad(c, MTLD_CONV_BAD_COLUMNS, line, len);
    return MTLD_OK;
  }
  if (!ev.user_id || !ev.item_id) {
    int null = (!ev.user_id && conv_is_null(c, F_USER, nf)) ||
               (!ev.item_id && conv_is_null(c, F_ITEM, nf));
    conv_bad(c, null ? MTLD_CONV_BAD_NULL_ID : MTLD_CONV_BAD_MISSING_ID, line, len);
    return MTLD_OK;
  }

  int labels = c->f[F_CLICK].set;
  int click = 0, purchase = 0;
  if (labels) {
    double v;
    if (parse_double(click_s, click_n, &v) != 0 || (v != 0 && v != 1)) {
      conv_bad(c, MTLD_CONV_BAD_LABEL, line, len);
      return MTLD_OK;
    }
    click = v == 1;
    if (purch_s) {
      if (parse_double(purch_s, purch_n, &v) != 0 || (v != 0 && v != 1)) {
        conv_bad(c, MTLD_CONV_BAD_LABEL, line, len);
        return MTLD_OK;
      }
      purchase = v == 1;
    }
    if (purchase && !click) {
      conv_bad(c, MTLD_CONV_BAD_PURCHASE_NOCLICK, line, len);
      return MTLD_OK;
    }
    ev.type = MTLD_EV_IMPRESSION;
  } else {
    int t = conv_type(c, type_s);
    if (t < 0) {
      conv_bad(c, MTLD_CONV_BAD_TYPE, line, len);
      return MTLD_OK;
    }
    if (t == 0) {
      conv_skip(c, type_s);
      return MTLD_OK;
    }
    ev.type = t;
  }

  if (time_s) {
    int64_t off = 0;
    if (conv_time(c, time_s, time_n, &ev.time_ms) != 0 ||
        (toff_s && conv_num_ms(c->offset_unit, toff_s, toff_n, &off) != 0) ||
        __builtin_add_overflow(ev.time_ms, off, &ev.time_ms) || ev.time_ms <= 0) {
      conv_bad(c, MTLD_CONV_BAD_TIME, line, len);
      return MTLD_OK;
    }
  } else {
    ev.time_ms = c->base_ms + row_index * 1000;
  }
  if ((c->time_from_ms && ev.time_ms < c->time_from_ms) ||
      (c->time_to_ms && ev.time_ms >= c->time_to_ms)) {
    conv_bad(c, MTLD_CONV_BAD_TIME_RANGE, line, len);
    return MTLD_OK;
  }

  if (scen_s && scen_n > 0) {
    size_t pn = strlen(c->scenario_prefix);
    if (pn + scen_n >= MTLD_SCENARIO_MAX) {
      conv_bad(c, MTLD_CONV_BAD_SCENARIO, line, len);
      return MTLD_OK;
    }
    memcpy(ev.scenario, c->scenario_prefix, pn);
    memcpy(ev.scenario + pn, scen_s, scen_n);
    ev.scenario[pn + scen_n] = 0;
    ev.scenario_id = mtld_hash_id(ev.scenario, pn + scen_n);
  }

  double dv;
  if (rating_s && rating_n > 0) {
    if (parse_double(rating_s, rating_n, &dv) != 0) {
      conv_bad(c, MTLD_CONV_BAD_NUMBER, line, len);
      return MTLD_OK;
    }
    ev.rating = (float)dv;
  } else if (ev.type == MTLD_EV_REVIEW) {
    conv_bad(c, MTLD_CONV_BAD_RATING, line, len);
    return MTLD_OK;
  }
  if (price_s && price_n > 0) {
    if (parse_double(price_s, price_n, &dv) != 0) {
      conv_bad(c, MTLD_CONV_BAD_NUMBER, line, len);
      return MTLD_OK;
    }
    ev.price = dv;
  }
  if ((qty_s && qty_n > 0 && parse_int32(qty_s, qty_n, &ev.quantity) != 0) ||
      (pos_s && pos_n > 0 && parse_int32(pos_s, pos_n, &ev.position) != 0) || bad_attr) {
    conv_bad(c, MTLD_CONV_BAD_NUMBER, line, len);
    return MTLD_OK;
  }

  ev.event_id = given_id ? given_id : conv_event_id(c, line, len, 0);
  if (!ev.event_id) return MTLD_ERR_NOMEM;
  c->st.converted++;
  if (!labels) {
    c->st.events++;
    emit(ctx, &ev);
    return MTLD_OK;
  }

  ev.request_id = ev.event_id;
  c->st.events++;
  emit(ctx, &ev);
  if (click) {
    mtld_event_t ce = ev;
    ce.type = MTLD_EV_CLICK;
    ce.event_id = conv_event_id(c, line, len, 1);
    ce.time_ms = ev.time_ms + 100;
    c->st.events++;
    emit(ctx, &ce);
  }
  if (purchase) {
    mtld_event_t pe = ev;
    pe.type = MTLD_EV_PURCHASE;
    pe.event_id = conv_event_id(c, line, len, 2);
    pe.time_ms = ev.time_ms + 200;
    if (!pe.quantity) pe.quantity = 1;
    c->st.events++;
    emit(ctx, &pe);
  }
  return MTLD_OK;
}

typedef struct {
  mtld_event_t *ev;
  size_t n, cap;
  int oom;
} conv_vec_t;

static void conv_vec_push(void *ctx, const mtld_event_t *ev) {
  conv_vec_t *v = ctx;
  if (v->oom) return;
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 1024;
    mtld_event_t *nv = realloc(v->ev, cap * sizeof *nv);
    if (!nv) {
      v->oom = 1;
      return;
    }
    v->ev = nv;
    v->cap = cap;
  }
  v->ev[v->n++] = *ev;
}

ssize_t mtld_conv_read_record(const mtld_conv_t *c, FILE *in, char **buf, size_t *cap) {
  char *chunk = NULL;
  size_t ccap = 0, len = 0;
  ssize_t got;
  int in_q = 0, at_start = 1;
  while ((got = getline(&chunk, &ccap, in)) > 0) {
    if (len + (size_t)got + 1 > *cap) {
      size_t ncap = *cap ? *cap : 1024;
      while (ncap < len + (size_t)got + 1) ncap *= 2;
      char *nb = realloc(*buf, ncap);
      if (!nb) {
        free(chunk);
        return -2;
      }
      *buf = nb;
      *cap = ncap;
    }
    memcpy(*buf + len, chunk, (size_t)got);
    /* quote state over the new text: a field that starts with '"' runs to
     * the lone '"' that closes it ("" is a quote inside), newlines included */
    for (size_t i = len; i < len + (size_t)got; i++) {
      char ch = (*buf)[i];
      if (in_q) {
        if (ch == '"') {
          if (i + 1 < len + (size_t)got && (*buf)[i + 1] == '"')
            i++;
          else
            in_q = 0;
        }
      } else if (ch == '"' && at_start) {
        in_q = 1;
      } else {
        at_start = ch == c->sep;
        continue;
      }
      at_start = 0;
    }
    len += (size_t)got;
    (*buf)[len] = 0;
    /* an unterminated quote ends the record at the end of the input or
     * once it reaches CONV_MAX_RECORD; the row is then counted as bad_csv */
    if (!in_q || len >= CONV_MAX_RECORD) break;
  }
  free(chunk);
  if (len == 0) return got == -1 && !feof(in) ? -1 : 0;
  return (ssize_t)len;
}

void mtld_conv_next_file(mtld_conv_t *c) {
  c->file_no++;
  c->line_no = 0;
  if (c->header) c->resolved = 0;
}

mtld_status_t mtld_conv_read_all(mtld_conv_t *c, FILE *in, int sort, mtld_event_t **events,
                                 size_t *n, char *err, size_t errlen) {
  conv_vec_t v = {0};
  char *line = NULL;
  size_t cap = 0;
  ssize_t got;
  mtld_status_t st = MTLD_OK;
  *events = NULL;
  *n = 0;
  while (st == MTLD_OK && (got = mtld_conv_read_record(c, in, &line, &cap)) > 0) {
    st = mtld_conv_line(c, line, (size_t)got, conv_vec_push, &v, err, errlen);
    if (v.oom) st = MTLD_ERR_NOMEM;
  }
  if (st == MTLD_OK && got == -2) st = MTLD_ERR_NOMEM;
  free(line);
  if (st == MTLD_OK && ferror(in)) {
    conv_seterr(err, errlen, "read error: %s", strerror(errno));
    st = MTLD_ERR_IO;
  }
  if (st == MTLD_OK && sort) st = mtld_conv_sort_events(v.ev, v.n);
  if (st == MTLD_ERR_NOMEM) conv_seterr(err, errlen, "out of memory");
  if (st != MTLD_OK) {
    free(v.ev);
    return st;
  }
  *events = v.ev;
  *n = v.n;
  return MTLD_OK;
}

mtld_status_t mtld_conv_sort_events(mtld_event_t *ev, size_t n) {
  if (n < 2) return MTLD_OK;
  mtld_event_t *tmp = malloc(n * sizeof *tmp);
  if (!tmp) return MTLD_ERR_NOMEM;
  /* bottom-up merge sort: stable */
  mtld_event_t *src = ev, *dst = tmp;
  for (size_t width = 1; width < n; width *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * width) {
      size_t mid = lo + width < n ? lo + width : n;
      size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
      size_t a = lo, b = mid, k = lo;
      while (a < mid && b < hi) dst[k++] = src[b].time_ms < src[a].time_ms ? src[b++] : src[a++];
      while (a < mid) dst[k++] = src[a++];
      while (b < hi) dst[k++] = src[b++];
    }
    mtld_event_t *t = src;
    src = dst;
    dst = t;
  }
  if (src != ev) memcpy(ev, src, n * sizeof *ev);
  free(tmp);
  return MTLD_OK;
}

void mtld_conv_stats(const mtld_conv_t *c, mtld_conv_stats_t *st) {
  *st = c->st;
}

void mtld_conv_report(const mtld_conv_t *c, FILE *out) {
  fprintf(out,
          "convert (%s): %d input%s, %" PRId64 " lines, %" PRId64 " rows, %" PRId64
          " converted, %" PRId64 " skipped, %" PRId64 " bad; %" PRId64 " events\n",
          c->layout, c->file_no + 1, c->file_no ? "s" : "", c->st.lines, c->st.rows,
          c->st.converted, c->st.skipped, c->st.bad, c->st.events);
  for (int i = 0; i < c->n_skips; i++)
    fprintf(out, "convert: skipped type '%s': %" PRId64 " rows\n", c->skips[i].value,
            c->skips[i].count);
  for (int r = 0; r < MTLD_CONV_BAD_COUNT; r++)
    if (c->st.bad_by_reason[r])
      fprintf(out, "convert: bad rows %s: %" PRId64 "\n", bad_names[r], c->st.bad_by_reason[r]);
  for (int i = 0; i < c->n_ex; i++) {
    if (c->file_no)
      fprintf(out, "convert: input %d record %" PRId64 ": %s: %s\n", c->ex[i].file_no + 1,
              c->ex[i].line_no, bad_names[c->ex[i].reason], c->ex[i].text);
    else
      fprintf(out, "convert: record %" PRId64 ": %s: %s\n", c->ex[i].line_no,
              bad_names[c->ex[i].reason], c->ex[i].text);
  }
}
