/* decode.c - record bytes -> mtld_event_t, validation, and the encoders the
 * tools use.
 *
 * Protobuf goes through protobuf-c (schemas/event.proto), JSON through json-c
 * with an explicit length (records from Kafka are not NUL-terminated).  Both
 * fill the same mtld_event_t: string ids are hashed with mtld_hash_id(), an
 * absent id (or an integer id of 0, or an empty string id) is 0 and is
 * rejected as missing_id by mtld_validate_event(). */
#include "daemon/decode.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "schemas/event.pb-c.h"

/* 2100-01-01T00:00:00Z: later event times are taken for garbage (e.g. us or ns). */
#define MTLD_TIME_MAX_MS INT64_C(4102444800000)

static const char *const reject_names[MTLD_REJECT_COUNT] = {
    [MTLD_REJECT_NONE] = "none",
    [MTLD_REJECT_UNDECODABLE] = "undecodable",
    [MTLD_REJECT_MISSING_ID] = "missing_id",
    [MTLD_REJECT_UNKNOWN_TYPE] = "unknown_type",
    [MTLD_REJECT_NOT_FINITE] = "not_finite",
    [MTLD_REJECT_BAD_RATING] = "bad_rating",
    [MTLD_REJECT_NEGATIVE] = "negative_value",
    [MTLD_REJECT_TOO_LARGE] = "too_large",
    [MTLD_REJECT_BAD_TIME] = "bad_time",
    [MTLD_REJECT_TOO_LATE] = "too_late",
    [MTLD_REJECT_DUPLICATE] = "duplicate",
    [MTLD_REJECT_BAD_ATTR] = "bad_attr",
};

const char *mtld_reject_name(mtld_reject_t r) {
  if ((int)r < 0 || r >= MTLD_REJECT_COUNT) return "unknown";
  return reject_names[r];
}

int mtld_format_parse(const char *s) {
  if (strcasecmp(s, "auto") == 0) return MTLD_FMT_AUTO;
  if (strcasecmp(s, "protobuf") == 0) return MTLD_FMT_PROTOBUF;
  if (strcasecmp(s, "json") == 0) return MTLD_FMT_JSON;
  return -1;
}

/* Writes a message into err (when there is room) and returns r. */
static mtld_reject_t fail(mtld_reject_t r, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static mtld_reject_t fail(mtld_reject_t r, char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return r;
}

static mtld_reject_t set_scenario(mtld_event_t *ev, const char *s, size_t n, char *err,
                                  size_t errlen) {
  if (n >= MTLD_SCENARIO_MAX)
    return fail(MTLD_REJECT_TOO_LARGE, err, errlen, "scenario of %zu bytes (at most %d)", n,
                MTLD_SCENARIO_MAX - 1);
  memcpy(ev->scenario, s, n);
  ev->scenario[n] = '\0';
  ev->scenario_id = n ? mtld_hash_id(s, n) : 0;
  return MTLD_REJECT_NONE;
}

/* ---- attributes (both formats) ---- */

/* One attribute as read from a record: the name as text (name != NULL) or
 * already hashed; the value as text (str != NULL), a hash (vid), a number
 * (is_num) or absent. */
typedef struct {
  const char *name;
  size_t name_len;
  uint64_t name_id;
  const char *str;
  size_t str_len;
  uint64_t vid;
  double num;
  bool is_num;
} attr_in_t;

/* Checks one attribute and adds it to ev (absent values are dropped after
 * the name checks).  n_seen: attributes of the record so far, this one
 * included. */
static mtld_reject_t add_attr(mtld_event_t *ev, const attr_in_t *a, size_t n_seen, char *err,
                              size_t errlen) {
  if (n_seen > MTLD_ATTR_MAX)
    return fail(MTLD_REJECT_BAD_ATTR, err, errlen, "more than %d attributes", MTLD_ATTR_MAX);
  uint64_t name_id = a->name_id;
  if (a->name) {
    if (a->name_len == 0)
      return fail(MTLD_REJECT_BAD_ATTR, err, errlen, "attribute with an empty name");
    if (a->name_len > MTLD_ATTR_NAME_LEN)
      return fail(MTLD_REJECT_BAD_ATTR, err, errlen, "attribute name of %zu bytes (at most %d)",
                  a->name_len, MTLD_ATTR_NAME_LEN);
    name_id = mtld_hash_id(a->name, a->name_len);
  } else if (!name_id) {
    return fail(MTLD_REJECT_BAD_ATTR, err, errlen, "attribute without a name");
  }
  if (mtld_event_attr_find(ev, name_id) >= 0)
    return fail(MTLD_REJECT_BAD_ATTR, err, errlen, "attribute \"%.*s\" given twice",
                a->name ? (int)a->name_len : 0, a->name ? a->name : "");
  if (a->is_num) return mtld_event_attr_set_num(ev, name_id, a->num), MTLD_REJECT_NONE;
  uint64_t vid = a->vid;
  if (a->str) {
    if (a->str_len > MTLD_ATTR_VALUE_LEN)
      return fail(
          MTLD_REJECT_BAD_ATTR, err, errlen, "attribute \"%.*s\": value of %zu bytes (at most %d)",
          a->name ? (int)a->name_len : 0, a->name ? a->name : "", a->str_len, MTLD_ATTR_VALUE_LEN);
    vid = a->str_len ? mtld_hash_id(a->str, a->str_len) : 0;
  }
  if (vid) mtld_event_attr_set_str(ev, name_id, vid);
  return MTLD_REJECT_NONE;
}

/* ---- protobuf ---- */

static mtld_reject_t pb_attrs(const Mtld__Event *m, mtld_event_t *ev, char *err, size_t errlen) {
  for (size_t i = 0; i < m->n_attrs; i++) {
    const Mtld__Attr *pa = m->attrs[i];
    attr_in_t a = {0};
    if (pa->key_case == MTLD__ATTR__KEY_NAME) a.name = pa->name, a.name_len = strlen(pa->name);
    if (pa->key_case == MTLD__ATTR__KEY_NAME_ID) a.name_id = pa->name_id;
    if (pa->value_case == MTLD__ATTR__VALUE_STR) a.str = pa->str, a.str_len = strlen(pa->str);
    if (pa->value_case == MTLD__ATTR__VALUE_NUM) a.num = pa->num, a.is_num = true;
    if (pa->value_case == MTLD__ATTR__VALUE_ID) a.vid = pa->id;
    mtld_reject_t r = add_attr(ev, &a, i + 1, err, errlen);
    if (r) return r;
  }
  return MTLD_REJECT_NONE;
}

/* A string id: its hash, or 0 (missing) when empty.  protobuf-c hands strings
 * over NUL-terminated, so bytes after an embedded NUL are not hashed. */
static uint64_t key_id(const char *key) {
  size_t n = strlen(key);
  return n ? mtld_hash_id(key, n) : 0;
}

static mtld_reject_t decode_pb(const uint8_t *buf, size_t len, mtld_event_t *ev, char *err,
                               size_t errlen) {
  Mtld__Event *m = mtld__event__unpack(NULL, len, buf);
  if (!m)
    return fail(MTLD_REJECT_UNDECODABLE, err, errlen, "not a protobuf mtld.Event (%zu bytes)", len);

  if (m->event_case == MTLD__EVENT__EVENT_EVENT_ID) ev->event_id = m->event_id;
  if (m->event_case == MTLD__EVENT__EVENT_EVENT_KEY) ev->event_id = key_id(m->event_key);
  if (m->user_case == MTLD__EVENT__USER_USER_ID) ev->user_id = m->user_id;
  if (m->user_case == MTLD__EVENT__USER_USER_KEY) ev->user_id = key_id(m->user_key);
  if (m->item_case == MTLD__EVENT__ITEM_ITEM_ID) ev->item_id = m->item_id;
  if (m->item_case == MTLD__EVENT__ITEM_ITEM_KEY) ev->item_id = key_id(m->item_key);
  if (m->category_case == MTLD__EVENT__CATEGORY_CATEGORY_ID) ev->category_id = m->category_id;
  if (m->category_case == MTLD__EVENT__CATEGORY_CATEGORY_KEY)
    ev->category_id = key_id(m->category_key);
  if (m->request_case == MTLD__EVENT__REQUEST_REQUEST_ID) ev->request_id = m->request_id;
  if (m->request_case == MTLD__EVENT__REQUEST_REQUEST_KEY) ev->request_id = key_id(m->request_key);
  ev->type = (int32_t)m->type; /* proto3 enums are open: checked by validation */
  ev->time_ms = m->time_ms;
  ev->position = m->position;
  ev->quantity = m->quantity;
  ev->price = m->price;
  ev->rating = m->rating;
  mtld_reject_t r = set_scenario(ev, m->scenario, strlen(m->scenario), err, errlen);
  if (!r) r = pb_attrs(m, ev, err, errlen);
  mtld__event__free_unpacked(m, NULL);
  return r;
}

/* ---- JSON ---- */

typedef struct {
  const char *buf; /* the record, for the overflow scan */
  size_t len;
  int overflow; /* -1 not scanned yet, else 0/1 */
  char *err;
  size_t errlen;
} json_ctx_t;

/* Whether the decimal digits d[0..n) (leading zeros allowed) are a number
 * above `limit`, itself given as digits. */
static bool digits_exceed(const char *d, size_t n, const char *limit) {
  while (n > 1 && *d == '0') d++, n--;
  size_t ln = strlen(limit);
  if (n != ln) return n > ln;
  return memcmp(d, limit, n) > 0;
}

/* json-c clamps integers outside [INT64_MIN, UINT64_MAX] to the bounds
 * without telling.  When a value at a bound is read, this scan of the raw
 * text tells whether some integer literal of the record overflowed, so that a
 * clamped value is rejected instead of silently taken. */
static bool record_has_overflow(json_ctx_t *c) {
  if (c->overflow >= 0) return c->overflow;
  const char *b = c->buf;
  size_t i = 0, n = c->len;
  c->overflow = 0;
  while (i < n) {
    char ch = b[i];
    if (ch == '"' || ch == '\'') { /* skip strings (json-c also takes '...') */
      for (i++; i < n && b[i] != ch; i++)
        if (b[i] == '\\') i++;
      i++;
      continue;
    }
    if (ch == '-' || (ch >= '0' && ch <= '9')) {
      bool neg = ch == '-';
      size_t d = neg ? i + 1 : i, q = d;
      while (q < n && b[q] >= '0' && b[q] <= '9') q++;
      bool is_int = !(q < n && (b[q] == '.' || b[q] == 'e' || b[q] == 'E'));
      if (is_int && q > d &&
          digits_exceed(b + d, q - d, neg ? "9223372036854775808" : "18446744073709551615")) {
        c->overflow = 1;
        return true;
      }
      i = q > i ? q : i + 1;
      continue;
    }
    i++;
  }
  return false;
}

static mtld_reject_t wrong_type(json_ctx_t *c, const char *field, json_object *v,
                                const char *want) {
  return fail(MTLD_REJECT_UNDECODABLE, c->err, c->errlen, "%s: expected %s, got %s", field, want,
              json_type_to_name(json_object_get_type(v)));
}

static mtld_reject_t out_of_range(json_ctx_t *c, const char *field) {
  return fail(MTLD_REJECT_UNDECODABLE, c->err, c->errlen, "%s: integer out of range", field);
}

/* The JSON string of v without embedded NULs (which no id or name has, and
 * which C strings could not carry). */
static mtld_reject_t get_string(json_ctx_t *c, const char *field, json_object *v, const char **s,
                                size_t *n) {
  *s = json_object_get_string(v);
  *n = (size_t)json_object_get_string_len(v);
  if (memchr(*s, '\0', *n))
    return fail(MTLD_REJECT_UNDECODABLE, c->err, c->errlen, "%s: string contains a NUL byte",
                field);
  return MTLD_REJECT_NONE;
}

/* An integer value as int64 (neg = 1) or uint64 (neg = 0). */
static mtld_reject_t get_int(json_ctx_t *c, const char *field, json_object *v, int *neg, int64_t *i,
                             uint64_t *u) {
  *i = json_object_get_int64(v);
  *neg = *i < 0;
  *u = *neg ? 0 : json_object_get_uint64(v);
  if ((*neg && *i == INT64_MIN) || (!*neg && *u == UINT64_MAX))
    if (record_has_overflow(c)) return out_of_range(c, field);
  return MTLD_REJECT_NONE;
}

/* An id: a positive integer (0 = missing) or a string, hashed. */
static mtld_reject_t json_id(json_ctx_t *c, json_object *o, const char *field, uint64_t *out) {
  json_object *v;
  *out = 0;
  if (!json_object_object_get_ex(o, field, &v) || !v) return MTLD_REJECT_NONE;
  mtld_reject_t r;
  if (json_object_is_type(v, json_type_string)) {
    const char *s;
    size_t n;
    if ((r = get_string(c, field, v, &s, &n))) return r;
    *out = n ? mtld_hash_id(s, n) : 0;
    return MTLD_REJECT_NONE;
  }
  if (!json_object_is_type(v, json_type_int))
    return wrong_type(c, field, v, "an integer or a string");
  int neg;
  int64_t i;
  if ((r = get_int(c, field, v, &neg, &i, out))) return r;
  if (neg)
    return fail(MTLD_REJECT_UNDECODABLE, c->err, c->errlen, "%s: negative id %" PRId64, field, i);
  return MTLD_REJECT_NONE;
}

/* An integer field within [lo, hi]; absent or null = 0. */
static mtld_reject_t json_i64(json_ctx_t *c, json_object *o, const char *field, int64_t lo,
                              int64_t hi, int64_t *out) {
  json_object *v;
  *out = 0;
  if (!json_object_object_get_ex(o, field, &v) || !v) return MTLD_REJECT_NONE;
  if (!json_object_is_type(v, json_type_int)) return wrong_type(c, field, v, "an integer");
  int neg;
  int64_t i;
  uint64_t u;
  mtld_reject_t r = get_int(c, field, v, &neg, &i, &u);
  if (r) return r;
  if (!neg && u > (uint64_t)INT64_MAX) return out_of_range(c, field);
  if (i < lo || i > hi) return out_of_range(c, field);
  *out = i;
  return MTLD_REJECT_NONE;
}

/* A number (integer or not).  NaN and Infinity, which json-c accepts, come
 * through and are rejected by validation. */
static mtld_reject_t json_num_value(json_ctx_t *c, const char *field, json_object *v, double *out) {
  if (json_object_is_type(v, json_type_double)) {
    *out = json_object_get_double(v);
    return MTLD_REJECT_NONE;
  }
  if (!json_object_is_type(v, json_type_int)) return wrong_type(c, field, v, "a number");
  int neg;
  int64_t i;
  uint64_t u;
  mtld_reject_t r = get_int(c, field, v, &neg, &i, &u);
  if (r) return r;
  *out = neg ? (double)i : (double)u;
  return MTLD_REJECT_NONE;
}

/* A number field; absent or null = 0. */
static mtld_reject_t json_num(json_ctx_t *c, json_object *o, const char *field, double *out) {
  json_object *v;
  *out = 0;
  if (!json_object_object_get_ex(o, field, &v) || !v) return MTLD_REJECT_NONE;
  return json_num_value(c, field, v, out);
}

/* type: a name (case-insensitive) or a number.  An unknown name is rejected
 * here (as unknown_type) since it has no number to carry to validation. */
static mtld_reject_t json_event_type(json_ctx_t *c, json_object *o, int32_t *out) {
  json_object *v;
  *out = 0;
  if (!json_object_object_get_ex(o, "type", &v) || !v) return MTLD_REJECT_NONE;
  mtld_reject_t r;
  if (json_object_is_type(v, json_type_string)) {
    const char *s;
    size_t n;
    if ((r = get_string(c, "type", v, &s, &n))) return r;
    *out = mtld_event_type_parse(s);
    if (!*out)
      return fail(MTLD_REJECT_UNKNOWN_TYPE, c->err, c->errlen, "type \"%.40s\" unknown", s);
    return MTLD_REJECT_NONE;
  }
  if (!json_object_is_type(v, json_type_int))
    return wrong_type(c, "type", v, "a type name or an integer");
  int neg;
  int64_t i;
  uint64_t u;
  if ((r = get_int(c, "type", v, &neg, &i, &u))) return r;
  if (i < INT32_MIN || i > INT32_MAX || (!neg && u > INT32_MAX))
    return fail(MTLD_REJECT_UNKNOWN_TYPE, c->err, c->errlen, "type %s unknown",
                json_object_to_json_string(v));
  *out = (int32_t)i;
  return MTLD_REJECT_NONE;
}

/* scenario: a string, or an integer taken as its decimal text. */
static mtld_reject_t json_scenario(json_ctx_t *c, json_object *o, mtld_event_t *ev) {
  json_object *v;
  if (!json_object_object_get_ex(o, "scenario", &v) || !v) return MTLD_REJECT_NONE;
  const char *s;
  size_t n;
  char num[24];
  mtld_reject_t r;
  if (json_object_is_type(v, json_type_string)) {
    if ((r = get_string(c, "scenario", v, &s, &n))) return r;
  } else if (json_object_is_type(v, json_type_int)) {
    int neg;
    int64_t i;
    uint64_t u;
    if ((r = get_int(c, "scenario", v, &neg, &i, &u))) return r;
    n = neg ? (size_t)snprintf(num, sizeof num, "%" PRId64, i)
            : (size_t)snprintf(num, sizeof num, "%" PRIu64, u);
    s = num;
  } else {
    return wrong_type(c, "scenario", v, "a string or an integer");
  }
  return set_scenario(ev, s, n, c->err, c->errlen);
}

/* One JSON attribute value: a string (categorical), a number (numeric) or
 * null (absent). */
static mtld_reject_t json_attr_value(json_ctx_t *c, const char *field, json_object *v,
                                     attr_in_t *a) {
  if (!v) return MTLD_REJECT_NONE;
  if (json_object_is_type(v, json_type_string))
    return get_string(c, field, v, &a->str, &a->str_len);
  if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
    return wrong_type(c, field, v, "a string, a number or null");
  a->is_num = true;
  return json_num_value(c, field, v, &a->num);
}

/* One element of the array form: {"name"|"name_id", "str"|"num"|"id"}. */
static mtld_reject_t json_attr_elem(json_ctx_t *c, json_object *e, attr_in_t *a) {
  if (!json_object_is_type(e, json_type_object)) return wrong_type(c, "attrs[]", e, "an object");
  json_object *v;
  mtld_reject_t r;
  if (json_object_object_get_ex(e, "name", &v) && v) {
    if (!json_object_is_type(v, json_type_string))
      return wrong_type(c, "attrs[].name", v, "a string");
    if ((r = get_string(c, "attrs[].name", v, &a->name, &a->name_len))) return r;
  } else if ((r = json_id(c, e, "name_id", &a->name_id))) {
    return r;
  }
  if (json_object_object_get_ex(e, "str", &v) && v) {
    if (!json_object_is_type(v, json_type_string))
      return wrong_type(c, "attrs[].str", v, "a string");
    return get_string(c, "attrs[].str", v, &a->str, &a->str_len);
  }
  if (json_object_object_get_ex(e, "num", &v) && v) {
    a->is_num = true;
    return json_num(c, e, "num", &a->num);
  }
  return json_id(c, e, "id", &a->vid);
}

static mtld_reject_t json_attrs(json_ctx_t *c, json_object *o, mtld_event_t *ev) {
  json_object *v;
  if (!json_object_object_get_ex(o, "attrs", &v) || !v) return MTLD_REJECT_NONE;
  mtld_reject_t r;
  size_t n = 0;
  if (json_object_is_type(v, json_type_array)) {
    size_t len = json_object_array_length(v);
    for (size_t i = 0; i < len; i++) {
      attr_in_t a = {0};
      if ((r = json_attr_elem(c, json_object_array_get_idx(v, i), &a))) return r;
      if ((r = add_attr(ev, &a, ++n, c->err, c->errlen))) return r;
    }
    return MTLD_REJECT_NONE;
  }
  if (!json_object_is_type(v, json_type_object))
    return wrong_type(c, "attrs", v, "an object or an array");
  json_object_object_foreach(v, key, val) {
    attr_in_t a = {.name = key, .name_len = strlen(key)};
    if ((r = json_attr_value(c, "attrs value", val, &a))) return r;
    if ((r = add_attr(ev, &a, ++n, c->err, c->errlen))) return r;
  }
  return MTLD_REJECT_NONE;
}

static mtld_reject_t decode_fields(json_ctx_t *c, json_object *o, mtld_event_t *ev) {
  mtld_reject_t r;
  int64_t t;
  double d;
  if ((r = json_id(c, o, "event_id", &ev->event_id))) return r;
  if ((r = json_event_type(c, o, &ev->type))) return r;
  if ((r = json_id(c, o, "user_id", &ev->user_id))) return r;
  if ((r = json_id(c, o, "item_id", &ev->item_id))) return r;
  if ((r = json_id(c, o, "category_id", &ev->category_id))) return r;
  if ((r = json_scenario(c, o, ev))) return r;
  if ((r = json_i64(c, o, "time_ms", INT64_MIN, INT64_MAX, &ev->time_ms))) return r;
  if ((r = json_id(c, o, "request_id", &ev->request_id))) return r;
  if ((r = json_i64(c, o, "position", INT32_MIN, INT32_MAX, &t))) return r;
  ev->position = (int32_t)t;
  if ((r = json_num(c, o, "price", &ev->price))) return r;
  if ((r = json_i64(c, o, "quantity", INT32_MIN, INT32_MAX, &t))) return r;
  ev->quantity = (int32_t)t;
  if ((r = json_num(c, o, "rating", &d))) return r;
  /* IEEE (Annex F): beyond float range rounds to FLT_MAX or becomes inf */
  ev->rating = (float)d;
  return json_attrs(c, o, ev);
}

static bool is_blank(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static mtld_reject_t decode_json(const char *buf, size_t len, mtld_event_t *ev, char *err,
                                 size_t errlen) {
  if (len > INT_MAX)
    return fail(MTLD_REJECT_TOO_LARGE, err, errlen, "JSON record of %zu bytes", len);
  json_tokener *tok = json_tokener_new();
  if (!tok) return fail(MTLD_REJECT_UNDECODABLE, err, errlen, "out of memory");
  json_object *o = json_tokener_parse_ex(tok, buf, (int)len);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);
  mtld_reject_t r = MTLD_REJECT_NONE;
  if (!o) {
    if (jerr == json_tokener_continue)
      r = fail(MTLD_REJECT_UNDECODABLE, err, errlen, "JSON truncated after %zu bytes", len);
    else
      r = fail(MTLD_REJECT_UNDECODABLE, err, errlen, "JSON error at byte %zu: %s", end,
               json_tokener_error_desc(jerr));
    return r;
  }
  while (end < len && is_blank(buf[end])) end++;
  if (end < len) {
    r = fail(MTLD_REJECT_UNDECODABLE, err, errlen,
             "trailing bytes after the JSON value at byte %zu", end);
  } else if (!json_object_is_type(o, json_type_object)) {
    r = fail(MTLD_REJECT_UNDECODABLE, err, errlen, "JSON %s, not an object",
             json_type_to_name(json_object_get_type(o)));
  } else {
    json_ctx_t c = {buf, len, -1, err, errlen};
    r = decode_fields(&c, o, ev);
  }
  json_object_put(o);
  return r;
}

mtld_reject_t mtld_decode_event(const void *buf, size_t len, mtld_format_t fmt, size_t max_bytes,
                                mtld_event_t *ev, char *err, size_t errlen) {
  memset(ev, 0, sizeof *ev);
  if (len > max_bytes)
    return fail(MTLD_REJECT_TOO_LARGE, err, errlen, "record of %zu bytes (at most %zu)", len,
                max_bytes);
  if (len == 0) return fail(MTLD_REJECT_UNDECODABLE, err, errlen, "empty record");
  const char *s = buf;
  if (fmt == MTLD_FMT_AUTO) {
    size_t i = 0;
    while (i < len && is_blank(s[i])) i++;
    fmt = i < len && s[i] == '{' ? MTLD_FMT_JSON : MTLD_FMT_PROTOBUF;
  }
  mtld_reject_t r = fmt == MTLD_FMT_JSON ? decode_json(s, len, ev, err, errlen)
                                         : decode_pb(buf, len, ev, err, errlen);
  if (r) memset(ev, 0, sizeof *ev);
  return r;
}

/* ---- validation ---- */

void mtld_validate_limits_default(mtld_validate_limits_t *lim) {
  lim->max_record_bytes = 65536;
  lim->max_lateness_ms = 86400000;
  lim->dedup = 1;
  lim->max_ahead_ms = 0; /* off: replays have legitimate gaps */
}

/* a - b > lim, without overflow. */
static bool diff_exceeds(int64_t a, int64_t b, int64_t lim) {
  int64_t d;
  if (__builtin_sub_overflow(a, b, &d)) return a > b;
  return d > lim;
}

mtld_reject_t mtld_validate_event(const mtld_event_t *ev, const mtld_validate_limits_t *lim,
                                  int64_t watermark_ms, int64_t newest_ms, char *err,
                                  size_t errlen) {
  if (!ev->event_id) return fail(MTLD_REJECT_MISSING_ID, err, errlen, "event_id missing");
  if (!ev->user_id) return fail(MTLD_REJECT_MISSING_ID, err, errlen, "user_id missing");
  if (!ev->item_id) return fail(MTLD_REJECT_MISSING_ID, err, errlen, "item_id missing");
  const char *tname = mtld_event_type_name(ev->type);
  if (!tname) return fail(MTLD_REJECT_UNKNOWN_TYPE, err, errlen, "type %d unknown", (int)ev->type);
  if (!isfinite(ev->price))
    return fail(MTLD_REJECT_NOT_FINITE, err, errlen, "price %g not finite", ev->price);
  if (!isfinite(ev->rating))
    return fail(MTLD_REJECT_NOT_FINITE, err, errlen, "rating %g not finite", (double)ev->rating);
  for (int i = 0; i < ev->n_attrs; i++)
    if (mtld_event_attr_is_num(ev, i) && !isfinite(ev->attrs[i].v.num))
      return fail(MTLD_REJECT_NOT_FINITE, err, errlen, "attribute %d: %g not finite", i,
                  ev->attrs[i].v.num);
  if (ev->price < 0) return fail(MTLD_REJECT_NEGATIVE, err, errlen, "price %g negative", ev->price);
  if (ev->quantity < 0)
    return fail(MTLD_REJECT_NEGATIVE, err, errlen, "quantity %d negative", (int)ev->quantity);
  if (ev->position < 0)
    return fail(MTLD_REJECT_NEGATIVE, err, errlen, "position %d negative", (int)ev->position);
  if (ev->type == MTLD_EV_REVIEW) {
    if (!(ev->rating >= 1 && ev->rating <= 5))
      return fail(MTLD_REJECT_BAD_RATING, err, errlen, "rating %g of a REVIEW outside 1..5",
                  (double)ev->rating);
  } else if (ev->rating != 0) {
    return fail(MTLD_REJECT_BAD_RATING, err, errlen, "rating %g on a %s event (REVIEW only)",
                (double)ev->rating, tname);
  }
  if (ev->time_ms <= 0)
    return fail(MTLD_REJECT_BAD_TIME, err, errlen, "time_ms %" PRId64 " missing or not positive",
                ev->time_ms);
  if (ev->time_ms > MTLD_TIME_MAX_MS)
    return fail(MTLD_REJECT_BAD_TIME, err, errlen, "time_ms %" PRId64 " after the year 2100",
                ev->time_ms);
  if (lim->max_ahead_ms > 0 && newest_ms != INT64_MIN &&
      diff_exceeds(ev->time_ms, newest_ms, lim->max_ahead_ms))
    return fail(MTLD_REJECT_BAD_TIME, err, errlen,
                "time_ms %" PRId64 " more than %" PRId64
                " ms ahead of the newest event time %" PRId64,
                ev->time_ms, lim->max_ahead_ms, newest_ms);
  if (watermark_ms != INT64_MIN && diff_exceeds(watermark_ms, ev->time_ms, lim->max_lateness_ms))
    return fail(MTLD_REJECT_TOO_LATE, err, errlen,
                "time_ms %" PRId64 " more than %" PRId64 " ms behind the watermark %" PRId64,
                ev->time_ms, lim->max_lateness_ms, watermark_ms);
  return MTLD_REJECT_NONE;
}

/* ---- encoders ---- */

size_t mtld_encode_event_pb(const mtld_event_t *ev, void *buf, size_t cap) {
  Mtld__Event m = MTLD__EVENT__INIT;
  char scenario[MTLD_SCENARIO_MAX];
  size_t n = strnlen(ev->scenario, MTLD_SCENARIO_MAX - 1);
  memcpy(scenario, ev->scenario, n);
  scenario[n] = '\0';
  if (ev->event_id) m.event_case = MTLD__EVENT__EVENT_EVENT_ID, m.event_id = ev->event_id;
  if (ev->user_id) m.user_case = MTLD__EVENT__USER_USER_ID, m.user_id = ev->user_id;
  if (ev->item_id) m.item_case = MTLD__EVENT__ITEM_ITEM_ID, m.item_id = ev->item_id;
  if (ev->category_id)
    m.category_case = MTLD__EVENT__CATEGORY_CATEGORY_ID, m.category_id = ev->category_id;
  if (ev->request_id)
    m.request_case = MTLD__EVENT__REQUEST_REQUEST_ID, m.request_id = ev->request_id;
  m.type = (Mtld__EventType)ev->type;
  m.scenario = scenario;
  m.time_ms = ev->time_ms;
  m.position = ev->position;
  m.price = ev->price;
  m.quantity = ev->quantity;
  m.rating = ev->rating;
  Mtld__Attr attrs[MTLD_ATTR_MAX], *attr_ptrs[MTLD_ATTR_MAX];
  size_t na = ev->n_attrs <= MTLD_ATTR_MAX ? ev->n_attrs : MTLD_ATTR_MAX;
  for (size_t i = 0; i < na; i++) {
    Mtld__Attr a = MTLD__ATTR__INIT;
    a.key_case = MTLD__ATTR__KEY_NAME_ID, a.name_id = ev->attrs[i].name_id;
    if (mtld_event_attr_is_num(ev, (int)i))
      a.value_case = MTLD__ATTR__VALUE_NUM, a.num = ev->attrs[i].v.num;
    else
      a.value_case = MTLD__ATTR__VALUE_ID, a.id = ev->attrs[i].v.value_id;
    attrs[i] = a;
    attr_ptrs[i] = &attrs[i];
  }
  m.n_attrs = na;
  m.attrs = attr_ptrs;
  size_t need = mtld__event__get_packed_size(&m);
  if (need > cap) return 0;
  return mtld__event__pack(&m, buf);
}

typedef struct {
  char *buf;
  size_t cap, len;
  bool full;
} jw_t;

static void jw_printf(jw_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jw_printf(jw_t *w, const char *fmt, ...) {
  if (w->full) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(w->buf + w->len, w->cap - w->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= w->cap - w->len) {
    w->full = true;
    return;
  }
  w->len += (size_t)n;
}

/* Shortest of a few precisions that reads back to the same value; JSON-ish
 * names for NaN and infinities (json-c reads them back). */
static void fmt_double(char *out, size_t cap, double v, bool single) {
  if (isnan(v)) {
    snprintf(out, cap, "NaN");
    return;
  }
  if (isinf(v)) {
    snprintf(out, cap, v > 0 ? "Infinity" : "-Infinity");
    return;
  }
  int lo = single ? 6 : 15, hi = single ? 9 : 17;
  for (int p = lo; p <= hi; p++) {
    snprintf(out, cap, "%.*g", p, v);
    if (single ? strtof(out, NULL) == (float)v : strtod(out, NULL) == v) return;
  }
}

size_t mtld_encode_event_json(const mtld_event_t *ev, char *buf, size_t cap) {
  if (cap == 0) return 0;
  jw_t w = {buf, cap, 0, false};
  char num[40];
  jw_printf(&w, "{\"event_id\":%" PRIu64, ev->event_id);
  const char *tname = mtld_event_type_name(ev->type);
  if (tname)
    jw_printf(&w, ",\"type\":\"%s\"", tname);
  else
    jw_printf(&w, ",\"type\":%d", (int)ev->type);
  jw_printf(&w, ",\"user_id\":%" PRIu64 ",\"item_id\":%" PRIu64, ev->user_id, ev->item_id);
  if (ev->category_id) jw_printf(&w, ",\"category_id\":%" PRIu64, ev->category_id);
  size_t sn = strnlen(ev->scenario, MTLD_SCENARIO_MAX - 1);
  if (sn) {
    jw_printf(&w, ",\"scenario\":\"");
    for (size_t i = 0; i < sn; i++) {
      unsigned char ch = (unsigned char)ev->scenario[i];
      if (ch == '"' || ch == '\\')
        jw_printf(&w, "\\%c", ch);
      else if (ch < 0x20)
        jw_printf(&w, "\\u%04x", ch);
      else
        jw_printf(&w, "%c", ch);
    }
    jw_printf(&w, "\"");
  }
  jw_printf(&w, ",\"time_ms\":%" PRId64, ev->time_ms);
  if (ev->request_id) jw_printf(&w, ",\"request_id\":%" PRIu64, ev->request_id);
  if (ev->position) jw_printf(&w, ",\"position\":%d", (int)ev->position);
  if (ev->price != 0 || isnan(ev->price)) {
    fmt_double(num, sizeof num, ev->price, false);
    jw_printf(&w, ",\"price\":%s", num);
  }
  if (ev->quantity) jw_printf(&w, ",\"quantity\":%d", (int)ev->quantity);
  if (ev->rating != 0 || isnan(ev->rating)) {
    fmt_double(num, sizeof num, ev->rating, true);
    jw_printf(&w, ",\"rating\":%s", num);
  }
  int na = ev->n_attrs <= MTLD_ATTR_MAX ? ev->n_attrs : MTLD_ATTR_MAX;
  for (int i = 0; i < na; i++) {
    jw_printf(&w, "%s{\"name_id\":%" PRIu64, i ? "," : ",\"attrs\":[", ev->attrs[i].name_id);
    if (mtld_event_attr_is_num(ev, i)) {
      fmt_double(num, sizeof num, ev->attrs[i].v.num, false);
      jw_printf(&w, ",\"num\":%s}", num);
    } else {
      jw_printf(&w, ",\"id\":%" PRIu64 "}", ev->attrs[i].v.value_id);
    }
  }
  if (na) jw_printf(&w, "]");
  jw_printf(&w, "}");
  if (w.full) {
    buf[0] = '\0';
    return 0;
  }
  return w.len;
}
