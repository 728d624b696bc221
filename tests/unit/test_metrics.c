/* test_metrics.c - the Prometheus text builder (format, escaping, values)
 * and the HTTP endpoint, fetched with a plain socket client: /metrics,
 * /healthz, 404, 405, HEAD, publishing new text, bind errors.  When promtool
 * is on PATH the rendered text must pass `promtool check metrics`. */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/metrics.h"
#include "tests/unit/check.h"

/* ---- a minimal HTTP/1.1 client --------------------------------------- */

typedef struct {
  int status;      /* status code, -1 if the exchange failed */
  char head[2048]; /* status line and headers */
  char *body;      /* malloc'd, NUL-terminated */
  size_t body_len;
} http_reply_t;

static void http_free(http_reply_t *r) {
  free(r->body);
  r->body = NULL;
}

/* Sends `method path` to 127.0.0.1:port with Connection: close and reads the
 * whole reply. */
static http_reply_t http_req(int port, const char *method, const char *path, const char *body) {
  http_reply_t r = {.status = -1};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return r;
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return r;
  }
  char req[512];
  int n = snprintf(req, sizeof(req),
                   "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   method, path, body ? strlen(body) : 0, body ? body : "");
  if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
    close(fd);
    return r;
  }
  size_t cap = 4096, len = 0;
  char *all = malloc(cap);
  for (;;) {
    if (len + 1024 > cap) all = realloc(all, cap *= 2);
    ssize_t k = recv(fd, all + len, cap - len - 1, 0);
    if (k <= 0) break;
    len += (size_t)k;
  }
  close(fd);
  all[len] = '\0';
  char *sep = strstr(all, "\r\n\r\n");
  if (sep && sscanf(all, "HTTP/1.%*d %d", &r.status) == 1) {
    size_t hl = (size_t)(sep - all);
    if (hl >= sizeof(r.head)) hl = sizeof(r.head) - 1;
    memcpy(r.head, all, hl);
    r.head[hl] = '\0';
    r.body_len = len - (size_t)(sep + 4 - all);
    r.body = malloc(r.body_len + 1);
    memcpy(r.body, sep + 4, r.body_len + 1);
  }
  free(all);
  return r;
}

/* ---- promtool --------------------------------------------------------- */

static int have_promtool(void) {
  return system("command -v promtool >/dev/null 2>&1") == 0;
}

/* Pipes text into `promtool check metrics`; returns its exit status. */
static int promtool_check(const char *text) {
  FILE *p = popen("promtool check metrics", "w");
  if (!p) return -1;
  fputs(text, p);
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- builder ---------------------------------------------------------- */

static void value_is(double v, const char *want) {
  char out[64];
  mtld_metrics_format_value(out, sizeof(out), v);
  if (strcmp(out, want) != 0) fprintf(stderr, "value %.17g -> \"%s\", want \"%s\"\n", v, out, want);
  CHECK(strcmp(out, want) == 0);
}

static void test_values(void) {
  value_is(0, "0");
  value_is(-0.0, "0");
  value_is(42, "42");
  value_is(-7, "-7");
  value_is(1234567, "1234567");
  value_is(9007199254740993.0, "9007199254740992"); /* 2^53 + 1 rounds to 2^53 */
  value_is(1e20, "1e+20");
  value_is(0.1, "0.1");
  value_is(0.25, "0.25");
  value_is(1.0 / 3.0, "0.33333333333333331");
  value_is(NAN, "NaN");
  value_is(INFINITY, "+Inf");
  value_is(-INFINITY, "-Inf");
  char small[4];
  CHECK(mtld_metrics_format_value(small, sizeof(small), 123456) == 6);
  CHECK(strcmp(small, "123") == 0);
}

static void test_escape(void) {
  char out[64];
  CHECK(mtld_metrics_label_escape(out, sizeof(out), "plain") == 5);
  CHECK(strcmp(out, "plain") == 0);
  CHECK(mtld_metrics_label_escape(out, sizeof(out), "a\"b\\c\nd") == 10);
  CHECK(strcmp(out, "a\\\"b\\\\c\\nd") == 0);
  /* Truncation: snprintf semantics, always NUL-terminated. */
  CHECK(mtld_metrics_label_escape(out, 4, "a\"bc") == 5);
  CHECK(strcmp(out, "a\\\"") == 0);
  CHECK(mtld_metrics_label_escape(out, 0, "abc") == 3);
}

static const char *expected_render =
    "# HELP mtld_events_total Events consumed, by type and scenario.\n"
    "# TYPE mtld_events_total counter\n"
    "mtld_events_total{type=\"CLICK\",scenario=\"search\"} 12\n"
    "mtld_events_total{type=\"PURCHASE\",scenario=\"we\\\"ird\\\\na\\nme\"} 3\n"
    "# HELP mtld_auc Sliding-window AUC; \"NaN\" before both classes \\\\ were seen\\nsecond "
    "line.\n"
    "# TYPE mtld_auc gauge\n"
    "mtld_auc{task=\"ctr\"} 0.75\n"
    "mtld_auc{task=\"cvr\"} NaN\n"
    "# HELP mtld_batch_seconds Time to write one store batch.\n"
    "# TYPE mtld_batch_seconds summary\n"
    "mtld_batch_seconds{quantile=\"0.5\"} 0.002\n"
    "mtld_batch_seconds{quantile=\"0.99\"} 0.015\n"
    "mtld_batch_seconds_sum 1.5\n"
    "mtld_batch_seconds_count 600\n"
    "# HELP mtld_up Whether the daemon runs.\n"
    "# TYPE mtld_up gauge\n"
    "mtld_up 1\n";

static void render_sample(mtld_metrics_buf_t *b) {
  mtld_metrics_family(b, "mtld_events_total", "counter", "Events consumed, by type and scenario.");
  mtld_metrics_sample(b, "mtld_events_total", "type=\"CLICK\",scenario=\"search\"", 12);
  /* Declaring the family again (a loop over scenarios) writes nothing. */
  mtld_metrics_family(b, "mtld_events_total", "counter", "Events consumed, by type and scenario.");
  mtld_metrics_label_t l[] = {{"type", "PURCHASE"}, {"scenario", "we\"ird\\na\nme"}};
  mtld_metrics_sample_kv(b, "mtld_events_total", l, 2, 3);
  mtld_metrics_family(b, "mtld_auc", "gauge",
                      "Sliding-window AUC; \"NaN\" before both classes \\ were seen\nsecond line.");
  mtld_metrics_sample_kv(b, "mtld_auc", (mtld_metrics_label_t[]){{"task", "ctr"}}, 1, 0.75);
  mtld_metrics_sample_kv(b, "mtld_auc", (mtld_metrics_label_t[]){{"task", "cvr"}}, 1, NAN);
  mtld_metrics_family(b, "mtld_batch_seconds", "summary", "Time to write one store batch.");
  mtld_metrics_sample(b, "mtld_batch_seconds", "quantile=\"0.5\"", 0.002);
  mtld_metrics_sample(b, "mtld_batch_seconds", "quantile=\"0.99\"", 0.015);
  mtld_metrics_sample(b, "mtld_batch_seconds_sum", NULL, 1.5);
  mtld_metrics_sample(b, "mtld_batch_seconds_count", "", 600);
  mtld_metrics_family(b, "mtld_up", "gauge", "Whether the daemon runs.");
  mtld_metrics_sample_kv(b, "mtld_up", NULL, 0, 1);
}

static void test_builder(void) {
  mtld_metrics_buf_t b;
  mtld_metrics_buf_init(&b);
  CHECK(strcmp(mtld_metrics_buf_text(&b), "") == 0);
  render_sample(&b);
  CHECK(mtld_metrics_buf_status(&b) == MTLD_OK);
  if (strcmp(mtld_metrics_buf_text(&b), expected_render) != 0)
    fprintf(stderr, "render:\n%s---\nwant:\n%s---\n", mtld_metrics_buf_text(&b), expected_render);
  CHECK(strcmp(mtld_metrics_buf_text(&b), expected_render) == 0);

  /* Reset forgets the declared families: the next render declares again. */
  mtld_metrics_buf_reset(&b);
  CHECK(strcmp(mtld_metrics_buf_text(&b), "") == 0);
  render_sample(&b);
  CHECK(strcmp(mtld_metrics_buf_text(&b), expected_render) == 0);

  if (have_promtool()) {
    CHECK(promtool_check(mtld_metrics_buf_text(&b)) == 0);
  } else {
    printf("promtool not on PATH: `promtool check metrics` skipped\n");
  }

  /* Growth well past the first allocation. */
  mtld_metrics_buf_reset(&b);
  mtld_metrics_family(&b, "mtld_many", "gauge", "Many samples.");
  char lab[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(lab, sizeof(lab), "i=\"%d\"", i);
    mtld_metrics_sample(&b, "mtld_many", lab, i);
  }
  CHECK(mtld_metrics_buf_status(&b) == MTLD_OK);
  CHECK(strstr(mtld_metrics_buf_text(&b), "mtld_many{i=\"4999\"} 4999\n") != NULL);
  CHECK(b.len == strlen(mtld_metrics_buf_text(&b)));

  /* Errors are sticky: a bad name or type or label key stops the render. */
  const char *bad_cases[] = {"bad type", "bad name", "digit first", "bad label key"};
  for (int k = 0; k < 4; k++) {
    mtld_metrics_buf_reset(&b);
    mtld_metrics_family(&b, "mtld_ok", "gauge", "ok");
    if (k == 0) mtld_metrics_family(&b, "mtld_x", "gaugeish", "x");
    if (k == 1) mtld_metrics_sample(&b, "mtld-x", NULL, 1);
    if (k == 2) mtld_metrics_family(&b, "0mtld", "gauge", "x");
    if (k == 3) mtld_metrics_sample_kv(&b, "mtld_ok", (mtld_metrics_label_t[]){{"a-b", "v"}}, 1, 1);
    size_t len = b.len;
    mtld_metrics_sample(&b, "mtld_ok", NULL, 1);
    if (mtld_metrics_buf_status(&b) != MTLD_ERR_INVALID) fprintf(stderr, "%s\n", bad_cases[k]);
    CHECK(mtld_metrics_buf_status(&b) == MTLD_ERR_INVALID);
    CHECK(b.len == len);
  }
  mtld_metrics_buf_free(&b);
  mtld_metrics_buf_free(&b); /* idempotent */
}

/* ---- server ----------------------------------------------------------- */

static int header_has(const http_reply_t *r, const char *line) {
  return strcasestr(r->head, line) != NULL;
}

static void test_server(void) {
  char err[256] = "";
  mtld_metrics_server_t *srv = NULL;
  CHECK(mtld_metrics_server_start(&srv, "127.0.0.1", 0, err, sizeof(err)) == MTLD_OK);
  if (!srv) {
    fprintf(stderr, "start: %s\n", err);
    return;
  }
  int port = mtld_metrics_server_port(srv);
  CHECK(port > 0 && port <= 65535);

  /* Before the first publish: empty metrics, unhealthy "starting". */
  http_reply_t r = http_req(port, "GET", "/metrics", NULL);
  CHECK(r.status == 200);
  CHECK(r.body_len == 0);
  CHECK(header_has(&r, "Content-Type: text/plain; version=0.0.4"));
  http_free(&r);
  r = http_req(port, "GET", "/healthz", NULL);
  CHECK(r.status == 503);
  CHECK(r.body && strcmp(r.body, "starting\n") == 0);
  http_free(&r);

  mtld_metrics_buf_t b;
  mtld_metrics_buf_init(&b);
  render_sample(&b);
  CHECK(mtld_metrics_publish(srv, &b) == MTLD_OK);
  CHECK(b.len == 0 && strcmp(mtld_metrics_buf_text(&b), "") == 0); /* handed over */
  r = http_req(port, "GET", "/metrics", NULL);
  CHECK(r.status == 200);
  CHECK(r.body && strcmp(r.body, expected_render) == 0);
  CHECK(header_has(&r, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
  if (have_promtool() && r.body) CHECK(promtool_check(r.body) == 0);
  http_free(&r);

  /* HEAD: same status and headers, no body. */
  r = http_req(port, "HEAD", "/metrics", NULL);
  CHECK(r.status == 200);
  CHECK(r.body_len == 0);
  http_free(&r);

  mtld_metrics_set_health(srv, 1, NULL);
  r = http_req(port, "GET", "/healthz", NULL);
  CHECK(r.status == 200);
  CHECK(r.body && strcmp(r.body, "ok\n") == 0);
  http_free(&r);
  mtld_metrics_set_health(srv, 0, "kafka: all brokers down");
  r = http_req(port, "GET", "/healthz", NULL);
  CHECK(r.status == 503);
  CHECK(r.body && strcmp(r.body, "kafka: all brokers down\n") == 0);
  http_free(&r);

  r = http_req(port, "GET", "/nope", NULL);
  CHECK(r.status == 404);
  http_free(&r);
  r = http_req(port, "GET", "/metrics/extra", NULL);
  CHECK(r.status == 404);
  http_free(&r);
  r = http_req(port, "POST", "/metrics", "a=b");
  CHECK(r.status == 405);
  CHECK(header_has(&r, "Allow: GET, HEAD"));
  http_free(&r);
  r = http_req(port, "DELETE", "/healthz", NULL);
  CHECK(r.status == 405);
  http_free(&r);
  /* The query string is not part of the path. */
  r = http_req(port, "GET", "/metrics?name[]=x", NULL);
  CHECK(r.status == 200);
  http_free(&r);

  /* A new render replaces the served text; the buffer reuses the old memory. */
  mtld_metrics_family(&b, "mtld_up", "gauge", "Whether the daemon runs.");
  mtld_metrics_sample(&b, "mtld_up", NULL, 0);
  CHECK(mtld_metrics_publish(srv, &b) == MTLD_OK);
  r = http_req(port, "GET", "/metrics", NULL);
  CHECK(r.status == 200);
  CHECK(r.body &&
        strcmp(r.body,
               "# HELP mtld_up Whether the daemon runs.\n# TYPE mtld_up gauge\nmtld_up 0\n") == 0);
  http_free(&r);

  /* A failed render is not published: the previous text stays. */
  mtld_metrics_family(&b, "mtld_up", "gauge", "Whether the daemon runs.");
  mtld_metrics_sample(&b, "bad name", NULL, 5);
  CHECK(mtld_metrics_publish(srv, &b) == MTLD_ERR_INVALID);
  CHECK(mtld_metrics_buf_status(&b) == MTLD_OK); /* reset for the next render */
  r = http_req(port, "GET", "/metrics", NULL);
  CHECK(r.body && strstr(r.body, "mtld_up 0\n") != NULL);
  http_free(&r);

  /* The same port twice: a bind error that says why. */
  mtld_metrics_server_t *second = NULL;
  CHECK(mtld_metrics_server_start(&second, "127.0.0.1", port, err, sizeof(err)) == MTLD_ERR_IO);
  CHECK(second == NULL);
  CHECK(strstr(err, "in use") != NULL);
  printf("second bind: %s\n", err);

  CHECK(mtld_metrics_server_start(&second, "127.0.0.1", 70000, err, sizeof(err)) ==
        MTLD_ERR_INVALID);
  CHECK(mtld_metrics_server_start(&second, "", 0, err, sizeof(err)) == MTLD_ERR_INVALID);
  CHECK(mtld_metrics_server_start(&second, "localhost", 0, err, sizeof(err)) == MTLD_ERR_INVALID);
  CHECK(strstr(err, "numeric") != NULL);

  mtld_metrics_buf_free(&b);
  mtld_metrics_server_stop(srv);
  mtld_metrics_server_stop(NULL);

  /* After stop nothing listens on the port. */
  r = http_req(port, "GET", "/metrics", NULL);
  CHECK(r.status == -1);
  http_free(&r);

  /* IPv6 loopback, where the machine has it. */
  if (mtld_metrics_server_start(&srv, "::1", 0, err, sizeof(err)) == MTLD_OK) {
    CHECK(mtld_metrics_server_port(srv) > 0);
    mtld_metrics_server_stop(srv);
  } else {
    printf("no IPv6 loopback here: %s\n", err);
  }
}

int main(void) {
  test_values();
  test_escape();
  test_builder();
  CHECK(mtld_metrics_rss_bytes() > 1024 * 1024);
  test_server();
  return CHECK_DONE();
}
