/* metrics.c - the libmicrohttpd server that serves the last published
 * Prometheus text (see metrics.h), and the process's resident size.
 *
 * The server owns a copy of nothing but the published text and the health
 * flag, both under one mutex; requests copy the text out while holding it. */
#include "daemon/metrics.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "daemon/log.h"

uint64_t mtld_metrics_rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "re");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  int n = fscanf(f, "%llu %llu", &size, &resident);
  fclose(f);
  long page = sysconf(_SC_PAGESIZE);
  if (n != 2 || page <= 0) return 0;
  return (uint64_t)resident * (uint64_t)page;
}

/* ---- HTTP server ------------------------------------------------------ */

/* Connection slots (file descriptors: keep well under the usual 1024 soft
 * limit with the store's files open), idle timeout, per-connection pool (a
 * scrape's request headers and the response's). */
#define METRICS_MAX_CONNECTIONS 512
#define METRICS_IDLE_S 3
#define METRICS_CONN_MEMORY (16 * 1024)

#define MTLD_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct mtld_metrics_server {
  struct MHD_Daemon *mhd;
  struct sockaddr_storage addr;
  int port;
  atomic_int started;  /* 0 while MHD_start_daemon runs: the logger captures */
  char start_err[256]; /* last MHD message during start */

  pthread_mutex_t lock; /* guards everything below */
  char *text;           /* published /metrics body (owned; may be NULL) */
  size_t len, cap;
  int healthy;
  char reason[256];
};

/* MHD's messages: during start they explain a failure to the caller; after
 * that they go to the log, rate-limited (a scraper storm must not flood it). */
static void mhd_logger(void *cls, const char *fmt, va_list ap) {
  mtld_metrics_server_t *srv = cls;
  char msg[256];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
  if (!atomic_load(&srv->started)) {
    snprintf(srv->start_err, sizeof(srv->start_err), "%s", msg);
    return;
  }
  mtld_log_rl(MTLD_LOG_WARNING, "metrics-http", "metrics: http: %s", msg);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int code, const char *ctype,
                             const char *body, size_t len, int allow_hdr) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (allow_hdr) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned int code, const char *body,
                                  int allow_hdr) {
  return reply(c, code, "text/plain; charset=utf-8", body, strlen(body), allow_hdr);
}

/* Runs on MHD's thread: reads only the published text and the health flag. */
static enum MHD_Result handle_request(void *cls, struct MHD_Connection *c, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls) {
  mtld_metrics_server_t *srv = cls;
  /* The first call only announces the request (headers read): answering
   * then makes MHD close the connection, answering on the next call (the
   * request complete) keeps it alive for the next scrape. */
  static int started_marker;
  if (*con_cls == NULL) {
    *con_cls = &started_marker;
    return MHD_YES;
  }
  if (*upload_data_size != 0) { /* a body nobody asked for: read and ignore it */
    *upload_data_size = 0;
    return MHD_YES;
  }
  int is_metrics = strcmp(url, "/metrics") == 0;
  int is_health = strcmp(url, "/healthz") == 0;
  if (!is_metrics && !is_health) return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n", 0);
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", 1);

  enum MHD_Result ret;
  pthread_mutex_lock(&srv->lock);
  if (is_metrics) {
    ret = reply(c, MHD_HTTP_OK, MTLD_METRICS_CONTENT_TYPE, srv->text ? srv->text : "", srv->len, 0);
  } else if (srv->healthy) {
    ret = reply_text(c, MHD_HTTP_OK, "ok\n", 0);
  } else {
    char body[sizeof(srv->reason) + 2];
    snprintf(body, sizeof(body), "%s\n", srv->reason);
    ret = reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, body, 0);
  }
  pthread_mutex_unlock(&srv->lock);
  return ret;
}

/* Resolves listen_addr into srv->addr with the port set. */
static mtld_status_t resolve(mtld_metrics_server_t *srv, const char *listen_addr, int port,
                             char *err, size_t errlen) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST; /* no DNS at start-up, no guessing v4 or v6 */
  int rc = getaddrinfo(listen_addr, NULL, &hints, &res);
  if (rc != 0 || !res) {
    snprintf(err, errlen, "metrics listen address \"%s\": %s (want a numeric IPv4 or IPv6 address)",
             listen_addr, rc ? gai_strerror(rc) : "no address");
    return MTLD_ERR_INVALID;
  }
  memcpy(&srv->addr, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (srv->addr.ss_family == AF_INET6)
    ((struct sockaddr_in6 *)&srv->addr)->sin6_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in *)&srv->addr)->sin_port = htons((uint16_t)port);
  return MTLD_OK;
}

mtld_status_t mtld_metrics_server_start(mtld_metrics_server_t **out, const char *listen_addr,
                                        int port, char *err, size_t errlen) {
  *out = NULL;
  if (!listen_addr || !*listen_addr) {
    snprintf(err, errlen, "metrics listen address is empty");
    return MTLD_ERR_INVALID;
  }
  if (port < 0 || port > 65535) {
    snprintf(err, errlen, "metrics port %d: must be between 0 and 65535", port);
    return MTLD_ERR_INVALID;
  }
  mtld_metrics_server_t *srv = calloc(1, sizeof(*srv));
  if (!srv) {
    snprintf(err, errlen, "metrics server: out of memory");
    return MTLD_ERR_NOMEM;
  }
  mtld_status_t st = resolve(srv, listen_addr, port, err, errlen);
  if (st != MTLD_OK) {
    free(srv);
    return st;
  }
  pthread_mutex_init(&srv->lock, NULL);
  snprintf(srv->reason, sizeof(srv->reason), "starting");

  /* One event-driven thread (epoll): a slow client costs a slot and a
   * small memory pool, never the thread, so a scrape is answered as soon as
   * it is accepted.  Slots are many (a few hundred idle or dribbling clients
   * do not fill them) and a connection silent for METRICS_IDLE_S is closed
   * (keep-alive between scrapes is cheaper than that). */
  unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
  if (srv->addr.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  srv->mhd =
      MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle_request, srv, MHD_OPTION_SOCK_ADDR,
                       (struct sockaddr *)&srv->addr, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, srv,
                       MHD_OPTION_CONNECTION_LIMIT, (unsigned int)METRICS_MAX_CONNECTIONS,
                       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)METRICS_IDLE_S,
                       MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)METRICS_CONN_MEMORY,
                       MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024, MHD_OPTION_END);
  if (!srv->mhd) {
    snprintf(err, errlen, "metrics server on %s port %d: %s", listen_addr, port,
             srv->start_err[0] ? srv->start_err : "cannot start");
    pthread_mutex_destroy(&srv->lock);
    free(srv);
    return MTLD_ERR_IO;
  }
  /* The MHD thread only logs on connections, which cannot exist before the
   * daemon returned; from here on messages go to the log. */
  atomic_store(&srv->started, 1);
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
  srv->port = info && info->port ? info->port : port;
  *out = srv;
  return MTLD_OK;
}

int mtld_metrics_server_port(const mtld_metrics_server_t *srv) {
  return srv->port;
}

mtld_status_t mtld_metrics_publish(mtld_metrics_server_t *srv, mtld_metrics_buf_t *b) {
  mtld_status_t st = b->status;
  if (st == MTLD_OK) {
    pthread_mutex_lock(&srv->lock);
    char *t = srv->text;
    size_t len = srv->len, cap = srv->cap;
    srv->text = b->text;
    srv->len = b->len;
    srv->cap = b->cap;
    pthread_mutex_unlock(&srv->lock);
    b->text = t;
    b->len = len;
    b->cap = cap;
  }
  mtld_metrics_buf_reset(b);
  return st;
}

void mtld_metrics_set_health(mtld_metrics_server_t *srv, int ok, const char *reason) {
  pthread_mutex_lock(&srv->lock);
  srv->healthy = ok != 0;
  snprintf(srv->reason, sizeof(srv->reason), "%s", reason ? reason : "unhealthy");
  pthread_mutex_unlock(&srv->lock);
}

void mtld_metrics_server_stop(mtld_metrics_server_t *srv) {
  if (!srv) return;
  MHD_stop_daemon(srv->mhd);
  pthread_mutex_destroy(&srv->lock);
  free(srv->text);
  free(srv);
}
