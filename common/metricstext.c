/* metricstext.c - Prometheus text-format builder (see metricstext.h). */
#include "common/metricstext.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mtld_metrics_buf_init(mtld_metrics_buf_t *b) {
  memset(b, 0, sizeof(*b));
  b->status = MTLD_OK;
}

void mtld_metrics_buf_reset(mtld_metrics_buf_t *b) {
  for (size_t i = 0; i < b->n_families; i++) free(b->families[i]);
  b->n_families = 0;
  b->len = 0;
  if (b->text) b->text[0] = '\0';
  b->status = MTLD_OK;
}

void mtld_metrics_buf_free(mtld_metrics_buf_t *b) {
  mtld_metrics_buf_reset(b);
  free(b->families);
  free(b->text);
  mtld_metrics_buf_init(b);
}

const char *mtld_metrics_buf_text(const mtld_metrics_buf_t *b) {
  return b->text ? b->text : "";
}

mtld_status_t mtld_metrics_buf_status(const mtld_metrics_buf_t *b) {
  return b->status;
}

void mtld_metrics_buf_fail(mtld_metrics_buf_t *b, mtld_status_t st) {
  if (b->status == MTLD_OK) b->status = st;
}

/* Makes room for n more bytes plus the NUL. */
static int buf_reserve(mtld_metrics_buf_t *b, size_t n) {
  if (b->status != MTLD_OK) return 0;
  if (b->len + n + 1 <= b->cap) return 1;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + n + 1) cap *= 2;
  char *t = realloc(b->text, cap);
  if (!t) {
    mtld_metrics_buf_fail(b, MTLD_ERR_NOMEM);
    return 0;
  }
  b->text = t;
  b->cap = cap;
  return 1;
}

static void buf_append(mtld_metrics_buf_t *b, const char *s, size_t n) {
  if (!buf_reserve(b, n)) return;
  memcpy(b->text + b->len, s, n);
  b->len += n;
  b->text[b->len] = '\0';
}

static void buf_puts(mtld_metrics_buf_t *b, const char *s) {
  buf_append(b, s, strlen(s));
}

/* Appends s escaped: backslash and newline always, the double quote only in
 * label values (HELP text keeps quotes as they are). */
static void buf_escaped(mtld_metrics_buf_t *b, const char *s, int quote) {
  for (const char *p = s; *p; p++) {
    const char *run = p;
    while (*p && *p != '\\' && *p != '\n' && !(quote && *p == '"')) p++;
    buf_append(b, run, (size_t)(p - run));
    if (!*p) break;
    buf_append(b, *p == '\\' ? "\\\\" : *p == '\n' ? "\\n" : "\\\"", 2);
  }
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names: the same without ':'. */
static int valid_name(const char *s, int colon) {
  if (!s || !*s) return 0;
  for (const char *p = s; *p; p++) {
    int c = (unsigned char)*p;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
             (p != s && c >= '0' && c <= '9');
    if (!ok) return 0;
  }
  return 1;
}

void mtld_metrics_family(mtld_metrics_buf_t *b, const char *name, const char *type,
                         const char *help) {
  static const char *const types[] = {"counter", "gauge", "summary", "histogram", "untyped"};
  if (b->status != MTLD_OK) return;
  int type_ok = 0;
  for (size_t i = 0; type && i < sizeof(types) / sizeof(types[0]); i++)
    if (strcmp(type, types[i]) == 0) type_ok = 1;
  if (!valid_name(name, 1) || !type_ok) {
    mtld_metrics_buf_fail(b, MTLD_ERR_INVALID);
    return;
  }
  for (size_t i = 0; i < b->n_families; i++)
    if (strcmp(b->families[i], name) == 0) return;

  if (b->n_families == b->cap_families) {
    size_t cap = b->cap_families ? b->cap_families * 2 : 32;
    char **f = realloc(b->families, cap * sizeof(*f));
    if (!f) {
      mtld_metrics_buf_fail(b, MTLD_ERR_NOMEM);
      return;
    }
    b->families = f;
    b->cap_families = cap;
  }
  char *copy = strdup(name);
  if (!copy) {
    mtld_metrics_buf_fail(b, MTLD_ERR_NOMEM);
    return;
  }
  b->families[b->n_families++] = copy;

  buf_puts(b, "# HELP ");
  buf_puts(b, name);
  buf_puts(b, " ");
  buf_escaped(b, help ? help : "", 0);
  buf_puts(b, "\n# TYPE ");
  buf_puts(b, name);
  buf_puts(b, " ");
  buf_puts(b, type);
  buf_puts(b, "\n");
}

int mtld_metrics_format_value(char *out, size_t outlen, double v) {
  if (isnan(v)) return snprintf(out, outlen, "NaN");
  if (isinf(v)) return snprintf(out, outlen, v > 0 ? "+Inf" : "-Inf");
  /* Counters are integral: print them whole, never as 1.2345e+06.  Beyond
   * 1e17 every double is integral and %.0f would print a long digit string
   * of fake precision, so those go through %g. */
  if (v == floor(v) && fabs(v) < 1e17) return snprintf(out, outlen, "%.0f", v == 0 ? 0.0 : v);
  /* Shortest of 15 or 17 significant digits that reads back exactly. */
  char tmp[40];
  snprintf(tmp, sizeof(tmp), "%.15g", v);
  if (strtod(tmp, NULL) != v) snprintf(tmp, sizeof(tmp), "%.17g", v);
  return snprintf(out, outlen, "%s", tmp);
}

static void sample_begin(mtld_metrics_buf_t *b, const char *name) {
  if (b->status != MTLD_OK) return;
  if (!valid_name(name, 1)) {
    mtld_metrics_buf_fail(b, MTLD_ERR_INVALID);
    return;
  }
  buf_puts(b, name);
}

static void sample_end(mtld_metrics_buf_t *b, double value) {
  char num[48];
  int n = mtld_metrics_format_value(num, sizeof(num), value);
  buf_puts(b, " ");
  buf_append(b, num, (size_t)n);
  buf_puts(b, "\n");
}

void mtld_metrics_sample(mtld_metrics_buf_t *b, const char *name, const char *labels,
                         double value) {
  sample_begin(b, name);
  if (labels && *labels) {
    buf_puts(b, "{");
    buf_puts(b, labels);
    buf_puts(b, "}");
  }
  sample_end(b, value);
}

void mtld_metrics_sample_kv(mtld_metrics_buf_t *b, const char *name,
                            const mtld_metrics_label_t *labels, size_t n, double value) {
  for (size_t i = 0; i < n; i++) {
    if (!valid_name(labels[i].key, 0)) {
      mtld_metrics_buf_fail(b, MTLD_ERR_INVALID);
      return;
    }
  }
  sample_begin(b, name);
  for (size_t i = 0; i < n; i++) {
    buf_puts(b, i == 0 ? "{" : ",");
    buf_puts(b, labels[i].key);
    buf_puts(b, "=\"");
    buf_escaped(b, labels[i].value ? labels[i].value : "", 1);
    buf_puts(b, "\"");
  }
  if (n > 0) buf_puts(b, "}");
  sample_end(b, value);
}

size_t mtld_metrics_label_escape(char *out, size_t outlen, const char *value) {
  size_t need = 0;
  for (const char *p = value; *p; p++) {
    char esc[2] = {*p, 0};
    size_t k = 1;
    if (*p == '\\' || *p == '"' || *p == '\n') {
      esc[0] = '\\';
      esc[1] = *p == '\n' ? 'n' : *p;
      k = 2;
    }
    for (size_t i = 0; i < k; i++, need++)
      if (need + 1 < outlen) out[need] = esc[i];
  }
  if (outlen > 0) out[need < outlen ? need : outlen - 1] = '\0';
  return need;
}
