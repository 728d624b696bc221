/* deadletter.c - the dead-letter producer (see deadletter.h). */
#include "daemon/deadletter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "daemon/log.h"

struct mtld_deadletter {
  rd_kafka_t *rk;
  char topic[256];
  uint64_t delivered, failed;
  int pending_failures; /* deliveries that failed since the last flush */
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  mtld_deadletter_t *dl = opaque;
  if (m->err) {
    dl->failed++;
    dl->pending_failures++;
    mtld_log_rl(MTLD_LOG_ERR, "dlq-delivery", "dead-letter delivery to %s failed: %s", dl->topic,
                rd_kafka_err2str(m->err));
  } else {
    dl->delivered++;
  }
}

/* librdkafka's own log lines go through mtld's logger (from librdkafka's
 * threads: mtld_log is thread-safe), never raw to stderr. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  (void)rk;
  mtld_log_rl(level < MTLD_LOG_ERR ? MTLD_LOG_ERR : level, "dlq-kafka-log",
              "dead-letter producer: kafka %s: %s", fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  (void)rk;
  (void)opaque;
  mtld_log_rl(MTLD_LOG_WARNING, "dlq-kafka-error", "dead-letter producer: kafka: %s: %s",
              rd_kafka_err2name(err), reason);
}

/* Consumer-only properties a producer would warn about. */
int mtld_deadletter_consumer_only(const char *k) {
  static const char *const names[] = {"group.id",
                                      "group.instance.id",
                                      "session.timeout.ms",
                                      "heartbeat.interval.ms",
                                      "max.poll.interval.ms",
                                      "auto.offset.reset",
                                      "enable.auto.commit",
                                      "auto.commit.interval.ms",
                                      "enable.auto.offset.store",
                                      "partition.assignment.strategy",
                                      "fetch.wait.max.ms",
                                      "fetch.min.bytes",
                                      "fetch.max.bytes",
                                      "isolation.level",
                                      "enable.partition.eof",
                                      "group.protocol.type",
                                      NULL};
  for (int i = 0; names[i]; i++)
    if (strcmp(k, names[i]) == 0) return 1;
  return 0;
}

mtld_status_t mtld_deadletter_new(mtld_deadletter_t **out, const mtld_config_t *cfg, char *err,
                                  size_t errlen) {
  mtld_deadletter_t *dl = calloc(1, sizeof(*dl));
  if (!dl) return MTLD_ERR_NOMEM;
  snprintf(dl->topic, sizeof(dl->topic), "%s", cfg->dead_letter_topic);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char e[512];
  for (int i = 0; i < cfg->n_kafka; i++) {
    if (mtld_deadletter_consumer_only(cfg->kafka[i].name)) continue;
    if (rd_kafka_conf_set(conf, cfg->kafka[i].name, cfg->kafka[i].value, e, sizeof(e)) !=
        RD_KAFKA_CONF_OK) {
      snprintf(err, errlen, "dead_letter: kafka.%s: %s", cfg->kafka[i].name, e);
      rd_kafka_conf_destroy(conf);
      free(dl);
      return MTLD_ERR_CONFIG;
    }
  }
  rd_kafka_conf_set(conf, "enable.idempotence", "true", e, sizeof(e));
  rd_kafka_conf_set_opaque(conf, dl);
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_log_cb(conf, log_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  dl->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
  if (!dl->rk) {
    snprintf(err, errlen, "dead_letter producer: %s", e);
    rd_kafka_conf_destroy(conf);
    free(dl);
    return MTLD_ERR_CONFIG;
  }
  *out = dl;
  return MTLD_OK;
}

mtld_status_t mtld_deadletter_send(mtld_deadletter_t *dl, const mtld_record_t *rec,
                                   const char *reason, const char *error) {
  rd_kafka_headers_t *h = rd_kafka_headers_new(5);
  char part[16], off[24];
  snprintf(part, sizeof(part), "%d", (int)rec->partition);
  snprintf(off, sizeof(off), "%" PRId64, rec->offset);
  rd_kafka_header_add(h, "mtld-reason", -1, reason, -1);
  rd_kafka_header_add(h, "mtld-error", -1, error ? error : "", -1);
  rd_kafka_header_add(h, "mtld-source-topic", -1, rec->topic ? rec->topic : "", -1);
  rd_kafka_header_add(h, "mtld-source-partition", -1, part, -1);
  rd_kafka_header_add(h, "mtld-source-offset", -1, off, -1);
  rd_kafka_resp_err_t e = rd_kafka_producev(
      dl->rk, RD_KAFKA_V_TOPIC(dl->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_VALUE((void *)rec->payload, rec->len),
      RD_KAFKA_V_KEY((void *)rec->key, rec->key_len), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
  if (e) {
    rd_kafka_headers_destroy(h); /* not taken over on failure */
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(dl->rk, 100);
      return MTLD_ERR_RETRY;
    }
    mtld_log_rl(MTLD_LOG_ERR, "dlq-produce", "dead-letter produce: %s", rd_kafka_err2str(e));
    return MTLD_ERR_IO;
  }
  rd_kafka_poll(dl->rk, 0);
  return MTLD_OK;
}

mtld_status_t mtld_deadletter_flush(mtld_deadletter_t *dl, int timeout_ms) {
  rd_kafka_resp_err_t e = rd_kafka_flush(dl->rk, timeout_ms);
  if (dl->pending_failures) {
    dl->pending_failures = 0;
    return MTLD_ERR_IO;
  }
  return e == RD_KAFKA_RESP_ERR__TIMED_OUT ? MTLD_ERR_RETRY : MTLD_OK;
}

uint64_t mtld_deadletter_delivered(const mtld_deadletter_t *dl) {
  return dl->delivered;
}
uint64_t mtld_deadletter_failed(const mtld_deadletter_t *dl) {
  return dl->failed;
}
const char *mtld_deadletter_topic(const mtld_deadletter_t *dl) {
  return dl->topic;
}

void mtld_deadletter_close(mtld_deadletter_t *dl, int timeout_ms) {
  if (!dl) return;
  rd_kafka_flush(dl->rk, timeout_ms);
  rd_kafka_destroy(dl->rk);
  free(dl);
}

void mtld_deadletter_render_metrics(const mtld_deadletter_t *dl, mtld_metrics_buf_t *b) {
  mtld_metrics_family(b, "mtld_dead_letters_total", "counter",
                      "Dead letters acknowledged by the broker, by outcome.");
  mtld_metrics_sample(b, "mtld_dead_letters_total", "outcome=\"delivered\"",
                      (double)mtld_deadletter_delivered(dl));
  mtld_metrics_sample(b, "mtld_dead_letters_total", "outcome=\"failed\"",
                      (double)mtld_deadletter_failed(dl));
}
