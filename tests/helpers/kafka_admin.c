/* kafka_admin.c - creates topics and reads partitions' end offsets on a
 * real broker with librdkafka's admin API, in one short process (Kafka's
 * own command-line tools start a JVM each: seconds per call on a loaded
 * machine).
 *
 * usage: kafka_admin BOOTSTRAP create NAME:PARTITIONS[:KEY=VALUE[,KEY=VALUE...]]...
 *            creates every topic in one request (replication factor 1);
 *            exit 0 when each was created
 *        kafka_admin BOOTSTRAP end TOPIC
 *            prints "TOPIC:PARTITION:END_OFFSET" per partition (the high
 *            watermark, as kafka.tools.GetOffsetShell --time -1 prints it)
 * Exit: 0 ok, 1 failure (said on stderr), 2 usage. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#define MAX_TOPICS 64
#define TIMEOUT_MS 30000

static int create(rd_kafka_t *rk, int n, char **specs) {
  rd_kafka_NewTopic_t *nt[MAX_TOPICS];
  char err[512];
  if (n > MAX_TOPICS) {
    fprintf(stderr, "kafka_admin: at most %d topics\n", MAX_TOPICS);
    return 2;
  }
  for (int i = 0; i < n; i++) {
    char *name = specs[i], *parts = strchr(name, ':');
    if (!parts) {
      fprintf(stderr, "kafka_admin: %s: want NAME:PARTITIONS[:K=V,...]\n", name);
      return 2;
    }
    *parts++ = 0;
    char *cfg = strchr(parts, ':');
    if (cfg) *cfg++ = 0;
    nt[i] = rd_kafka_NewTopic_new(name, atoi(parts), 1, err, sizeof err);
    if (!nt[i]) {
      fprintf(stderr, "kafka_admin: %s: %s\n", name, err);
      return 2;
    }
    for (char *kv = cfg ? strtok(cfg, ",") : NULL; kv; kv = strtok(NULL, ",")) {
      char *eq = strchr(kv, '=');
      if (!eq) {
        fprintf(stderr, "kafka_admin: %s: bad config %s\n", name, kv);
        return 2;
      }
      *eq = 0;
      rd_kafka_NewTopic_set_config(nt[i], kv, eq + 1);
    }
  }
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(opt, TIMEOUT_MS, err, sizeof err);
  rd_kafka_CreateTopics(rk, nt, (size_t)n, opt, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TIMEOUT_MS + 5000);
  int rc = 0;
  if (!ev) {
    fprintf(stderr, "kafka_admin: no answer to CreateTopics\n");
    rc = 1;
  } else if (rd_kafka_event_error(ev)) {
    fprintf(stderr, "kafka_admin: CreateTopics: %s\n", rd_kafka_event_error_string(ev));
    rc = 1;
  } else {
    size_t cnt;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
      if (rd_kafka_topic_result_error(res[i])) {
        fprintf(stderr, "kafka_admin: topic %s: %s\n", rd_kafka_topic_result_name(res[i]),
                rd_kafka_topic_result_error_string(res[i]));
        rc = 1;
      }
    }
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_AdminOptions_destroy(opt);
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy_array(nt, (size_t)n);
  return rc;
}

static int end_offsets(rd_kafka_t *rk, const char *topic) {
  const struct rd_kafka_metadata *md;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  if (rd_kafka_metadata(rk, 0, rkt, &md, TIMEOUT_MS) || md->topic_cnt != 1 || md->topics[0].err) {
    fprintf(stderr, "kafka_admin: no metadata for %s\n", topic);
    rd_kafka_topic_destroy(rkt);
    return 1;
  }
  int rc = 0;
  for (int i = 0; i < md->topics[0].partition_cnt && !rc; i++) {
    int32_t p = md->topics[0].partitions[i].id;
    int64_t lo, hi;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, TIMEOUT_MS);
    if (e) {
      fprintf(stderr, "kafka_admin: %s[%d]: %s\n", topic, (int)p, rd_kafka_err2str(e));
      rc = 1;
    } else {
      printf("%s:%d:%" PRId64 "\n", topic, (int)p, hi);
    }
  }
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 4 || (strcmp(argv[2], "create") && strcmp(argv[2], "end")) ||
      (!strcmp(argv[2], "end") && argc != 4)) {
    fprintf(stderr, "usage: kafka_admin BOOTSTRAP create NAME:PARTITIONS[:K=V,...]...\n"
                    "       kafka_admin BOOTSTRAP end TOPIC\n");
    return 2;
  }
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof err)) {
    fprintf(stderr, "kafka_admin: %s\n", err);
    return 2;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "kafka_admin: %s\n", err);
    return 1;
  }
  int rc =
      strcmp(argv[2], "create") == 0 ? create(rk, argc - 3, argv + 3) : end_offsets(rk, argv[3]);
  rd_kafka_destroy(rk);
  return rc;
}
