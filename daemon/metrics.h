/* metrics.h - Prometheus metrics: a text-format builder and the loopback HTTP
 * endpoint that serves it.
 *
 * The daemon's main loop renders all its metrics into an mtld_metrics_buf_t
 * about once a second and publishes the text to the server; the server's HTTP
 * thread (libmicrohttpd) serves only that published text and the health flag,
 * so it never touches daemon state and a scrape never blocks the pipeline for
 * more than a copy under a mutex.
 *
 * Endpoints: GET /metrics (text format 0.0.4), GET /healthz (200 "ok" or 503
 * with the reason), 404 for other paths, 405 for methods other than GET/HEAD. */
#ifndef MTLD_METRICS_H
#define MTLD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* ---- text-format builder ---------------------------------------------- */

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

/* The resident set size of this process in bytes, from /proc/self/statm;
 * 0 if it cannot be read.  Any thread. */
uint64_t mtld_metrics_rss_bytes(void);

/* ---- HTTP endpoint ---------------------------------------------------- */

typedef struct mtld_metrics_server mtld_metrics_server_t;

/* Starts the HTTP server on listen_addr (a numeric IPv4 or IPv6 address, e.g.
 * "127.0.0.1", "::1", "0.0.0.0"; no DNS lookup) and port (0 = let the
 * kernel pick a free one: see mtld_metrics_server_port).  The server runs its
 * own thread.  It starts unhealthy ("starting") with no metrics published
 * (/metrics answers 200 with an empty body).  On success *out owns the server
 * (free it with mtld_metrics_server_stop); on failure returns MTLD_ERR_INVALID
 * (bad address or port) or MTLD_ERR_IO (bind failed) with err saying why.
 * Main thread. */
mtld_status_t mtld_metrics_server_start(mtld_metrics_server_t **out, const char *listen_addr,
                                        int port, char *err, size_t errlen);

/* The port actually bound.  Any thread. */
int mtld_metrics_server_port(const mtld_metrics_server_t *srv);

/* Publishes b's text as the new /metrics body.  The text is handed over by
 * swapping storage with the server (no copy): on return b is reset (empty,
 * holding the previously published memory) and ready for the next render.
 * If b's status is not MTLD_OK nothing is published, b is reset and that
 * status is returned (the previous text stays served).  Any thread; usually
 * the main loop. */
mtld_status_t mtld_metrics_publish(mtld_metrics_server_t *srv, mtld_metrics_buf_t *b);

/* Sets what /healthz answers: ok != 0 -> 200 "ok\n"; otherwise 503 with
 * "reason\n" (copied, truncated to 255 bytes; NULL = "unhealthy").  Any
 * thread. */
void mtld_metrics_set_health(mtld_metrics_server_t *srv, int ok, const char *reason);

/* Stops the HTTP thread (in-flight requests finish), closes the socket and
 * frees everything.  NULL is a no-op.  Main thread. */
void mtld_metrics_server_stop(mtld_metrics_server_t *srv);

#endif
