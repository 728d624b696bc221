/* kafka_out.c - the tools' Kafka producer: produce, count delivery reports,
 * flush.  See kafka_out.h. */
#include "tools/kafka_out.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mtld_kout {
  rd_kafka_t *rk;
  char topic[256];
  int64_t sent, delivered, failed;
  char first_error[256];
};

static void kout_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  mtld_kout_t *k = opaque;
  if (m->err) {
    if (!k->failed)
      snprintf(k->first_error, sizeof k->first_error, "delivery failed: %s",
               rd_kafka_err2str(m->err));
    k->failed++;
  } else {
    k->delivered++;
  }
}

mtld_status_t mtld_kout_new(mtld_kout_t **out, const char *bootstrap, const char *topic,
                            const char *const *props, int n_props, char *err, size_t errlen) {
  *out = NULL;
  if (strlen(topic) >= sizeof((mtld_kout_t *)0)->topic) {
    snprintf(err, errlen, "topic name too long");
    return MTLD_ERR_CONFIG;
  }
  mtld_kout_t *k = calloc(1, sizeof *k);
  if (!k) return MTLD_ERR_NOMEM;
  snprintf(k->topic, sizeof k->topic, "%s", topic);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  const char *defaults[][2] = {{"bootstrap.servers", bootstrap},
                               {"partitioner", "murmur2_random"},
                               {"acks", "all"},
                               {"linger.ms", "5"}};
  for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
    if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], err, errlen) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      free(k);
      return MTLD_ERR_CONFIG;
    }
  }
  for (int i = 0; i < n_props; i++) {
    const char *eq = strchr(props[i], '=');
    char name[256];
    if (!eq || eq == props[i] || (size_t)(eq - props[i]) >= sizeof name) {
      snprintf(err, errlen, "kafka property '%s' is not key=value", props[i]);
      rd_kafka_conf_destroy(conf);
      free(k);
      return MTLD_ERR_CONFIG;
    }
    memcpy(name, props[i], (size_t)(eq - props[i]));
    name[eq - props[i]] = 0;
    if (rd_kafka_conf_set(conf, name, eq + 1, err, errlen) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      free(k);
      return MTLD_ERR_CONFIG;
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, kout_dr);
  rd_kafka_conf_set_opaque(conf, k);
  k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
  if (!k->rk) { /* conf is still ours on failure */
    rd_kafka_conf_destroy(conf);
    free(k);
    return MTLD_ERR_CONFIG;
  }
  *out = k;
  return MTLD_OK;
}

mtld_status_t mtld_kout_send(mtld_kout_t *k, const void *key, size_t keylen, const void *buf,
                             size_t len, char *err, size_t errlen) {
  for (;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(k->rk, RD_KAFKA_V_TOPIC(k->topic),
                                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                              RD_KAFKA_V_KEY(keylen ? key : NULL, keylen),
                                              RD_KAFKA_V_VALUE((void *)buf, len), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
      k->sent++;
      rd_kafka_poll(k->rk, 0);
      return MTLD_OK;
    }
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      snprintf(err, errlen, "produce to %s: %s", k->topic, rd_kafka_err2str(e));
      return MTLD_ERR_IO;
    }
    rd_kafka_poll(k->rk, 100); /* serve delivery reports, making room */
  }
}

mtld_status_t mtld_kout_flush(mtld_kout_t *k, int timeout_ms, char *err, size_t errlen) {
  rd_kafka_flush(k->rk, timeout_ms);
  rd_kafka_poll(k->rk, 0);
  int64_t pending = k->sent - k->delivered - k->failed;
  if (k->failed) {
    snprintf(err, errlen, "%" PRId64 " of %" PRId64 " records failed; first: %s", k->failed,
             k->sent, k->first_error);
    return MTLD_ERR_IO;
  }
  if (pending > 0) {
    snprintf(err, errlen, "%" PRId64 " of %" PRId64 " records not delivered after %d ms", pending,
             k->sent, timeout_ms);
    return MTLD_ERR_IO;
  }
  return MTLD_OK;
}

int64_t mtld_kout_delivered(const mtld_kout_t *k) {
  return k->delivered;
}

int64_t mtld_kout_failed(const mtld_kout_t *k) {
  return k->failed;
}

void mtld_kout_destroy(mtld_kout_t *k) {
  if (!k) return;
  /* records still queued (a failed flush) are dropped, not waited for */
  rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(k->rk, 0);
  rd_kafka_destroy(k->rk);
  free(k);
}
