/* dlq_dump.c - reads a whole Kafka topic (every partition from the start to
 * its end) and prints one line per record: "<reason> <payload bytes>", the
 * reason taken from the mtld-reason header ("-" when absent).
 *
 * usage: dlq_dump BOOTSTRAP TOPIC [TIMEOUT_S]   exit 0 when the end was reached */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: dlq_dump BOOTSTRAP TOPIC [TIMEOUT_S]\n");
    return 2;
  }
  int timeout_s = argc > 3 ? atoi(argv[3]) : 30;
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof(err)) ||
      rd_kafka_conf_set(conf, "group.id", "dlq-dump", err, sizeof(err)) ||
      rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err)) ||
      rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err))) {
    fprintf(stderr, "dlq_dump: %s\n", err);
    return 2;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  if (!rk) {
    fprintf(stderr, "dlq_dump: %s\n", err);
    return 2;
  }
  const struct rd_kafka_metadata *md;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, argv[2], NULL);
  if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1 || md->topics[0].err) {
    fprintf(stderr, "dlq_dump: no metadata for %s\n", argv[2]);
    return 1;
  }
  int np = md->topics[0].partition_cnt;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
  for (int i = 0; i < np; i++)
    rd_kafka_topic_partition_list_add(l, argv[2], md->topics[0].partitions[i].id)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  int eofs = 0;
  long n = 0;
  time_t end = time(NULL) + timeout_s;
  while (eofs < np && time(NULL) < end) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      eofs++;
    } else if (!m->err) {
      rd_kafka_headers_t *h = NULL;
      const void *v = NULL;
      size_t vl = 0;
      char reason[64] = "-";
      if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
          rd_kafka_header_get_last(h, "mtld-reason", &v, &vl) == RD_KAFKA_RESP_ERR_NO_ERROR &&
          vl < sizeof(reason)) {
        memcpy(reason, v, vl);
        reason[vl] = 0;
      }
      printf("%s %zu\n", reason, m->len);
      n++;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  fprintf(stderr, "dlq_dump: %ld records, %d/%d partitions at end\n", n, eofs, np);
  return eofs == np ? 0 : 1;
}
