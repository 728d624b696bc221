/* metrics.h - Prometheus metrics: the loopback HTTP endpoint that serves the
 * text built with common/metricstext.h.
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

#include "common/metricstext.h"
#include "common/status.h"

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
