/* metricstext.h - a Prometheus text-format (0.0.4) builder.
 *
 * In common/ so that every room renders its own families beside the numbers
 * they describe (the trainer its progressive validation, the store and the
 * joiner theirs); daemon/metrics.h serves the text over HTTP.
 *
 * A render declares each family once (mtld_metrics_family) and writes its
 * samples right after the declaration (the format wants families
 * contiguous). */
#ifndef MTLD_METRICSTEXT_H
#define MTLD_METRICSTEXT_H

#include <stddef.h>

#include "common/status.h"

/* A growable text buffer plus the names of the families already declared.
 * Errors are sticky (SQLite style): after the first one every call is a
 * no-op and mtld_metrics_buf_status() reports it.  Not thread-safe: one
 * thread builds a buffer. */
typedef struct {
  char *text; /* NUL-terminated, owned */
  size_t len, cap;
  char **families; /* names declared by mtld_metrics_family, owned */
  size_t n_families, cap_families;
  mtld_status_t status; /* first error: MTLD_ERR_NOMEM or MTLD_ERR_INVALID */
} mtld_metrics_buf_t;

/* One label of a sample; the value is escaped when written. */
typedef struct {
  const char *key;   /* [a-zA-Z_][a-zA-Z0-9_]* */
  const char *value; /* any UTF-8 text */
} mtld_metrics_label_t;

/* Initialises an empty buffer (no allocation). */
void mtld_metrics_buf_init(mtld_metrics_buf_t *b);

/* Empties the buffer for the next render: text, declared families and the
 * sticky status; keeps the memory. */
void mtld_metrics_buf_reset(mtld_metrics_buf_t *b);

/* Frees the buffer's memory; it is left as after init. */
void mtld_metrics_buf_free(mtld_metrics_buf_t *b);

/* The text built so far ("" when empty; valid until the next call on b). */
const char *mtld_metrics_buf_text(const mtld_metrics_buf_t *b);

/* MTLD_OK, or the first error of any call since init/reset. */
mtld_status_t mtld_metrics_buf_status(const mtld_metrics_buf_t *b);

/* Records st (MTLD_ERR_NOMEM, ...) as the buffer's sticky error, unless one
 * is recorded already: a renderer that could not gather its numbers. */
void mtld_metrics_buf_fail(mtld_metrics_buf_t *b, mtld_status_t st);

/* Declares a family: writes "# HELP name help" and "# TYPE name type" the
 * first time `name` is seen in this render, nothing after that.  `type` is
 * "counter", "gauge", "summary", "histogram" or "untyped"; the help text is
 * escaped (backslash, newline).  A bad name or type sets MTLD_ERR_INVALID.
 * Samples of one family must follow its declaration together (the format
 * requires families to be contiguous). */
void mtld_metrics_family(mtld_metrics_buf_t *b, const char *name, const char *type,
                         const char *help);

/* Writes one sample line "name{labels} value".  `labels` is the already
 * formatted text between the braces, e.g. "type=\"CLICK\",scenario=\"search\""
 * (values must already be escaped: see mtld_metrics_label_escape), or NULL or
 * "" for none.  Integral values print without exponent ("12345"), NaN and
 * infinities as "NaN", "+Inf", "-Inf", others with round-trip precision. */
void mtld_metrics_sample(mtld_metrics_buf_t *b, const char *name, const char *labels, double value);

/* Same, with n labels given as key/value pairs; the values are escaped here,
 * so any text (a scenario name from the stream) is safe.  A bad key sets
 * MTLD_ERR_INVALID. */
void mtld_metrics_sample_kv(mtld_metrics_buf_t *b, const char *name,
                            const mtld_metrics_label_t *labels, size_t n, double value);

/* Escapes a label value for the text format (\ -> \\, " -> \", newline ->
 * \n) into out (always NUL-terminated when outlen > 0).  Returns the length
 * the escaped text needs (without the NUL), as snprintf: the result was
 * truncated when it is >= outlen.  Any thread. */
size_t mtld_metrics_label_escape(char *out, size_t outlen, const char *value);

/* Formats a sample value as the text format wants it (see
 * mtld_metrics_sample) into out; returns the length as snprintf.  Any thread. */
int mtld_metrics_format_value(char *out, size_t outlen, double value);

#endif
