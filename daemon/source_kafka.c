/* source_kafka.c - the Kafka source: a high-level consumer in a group.
 *
 * Offsets live in the store, not in Kafka: on every assignment the rebalance
 * callback asks the pipeline (resume hook) where each partition resumes and
 * starts it there.  Kafka's committed offsets are written after each durable
 * batch for lag monitoring only.  Handles the eager and the cooperative
 * rebalance protocols, and lost partitions (the staged batch is dropped and
 * the remaining partitions are rewound to their stored offsets). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <librdkafka/rdkafka.h>

#include "daemon/log.h"
#include "daemon/source_int.h"

typedef struct {
  mtld_source_t base;
  rd_kafka_t *rk;
  rd_kafka_message_t **held; /* messages handed out by the last poll; held[i] backs
                                poll_recs[i] while kafka_poll collects */
  int n_held, cap_held;
  /* kafka_poll's collection in progress: a rebalance callback served by one
   * of its rd_kafka_consumer_poll calls must not free the messages collected
   * so far (they are not handed out yet), only drop those of partitions
   * taken away, and end the collection */
  int in_poll, rebalanced;
  mtld_record_t *poll_recs;
  int connected;
  int64_t fresh_offset; /* where a partition the store never saw starts */
} kafka_source_t;

static void release_held(kafka_source_t *ks) {
  for (int i = 0; i < ks->n_held; i++) rd_kafka_message_destroy(ks->held[i]);
  ks->n_held = 0;
}

/* During kafka_poll's collection: destroys the collected messages of the
 * partitions in parts (all of them when parts is NULL) and closes the gap in
 * held[] and poll_recs[].  Their offsets were never applied, so whoever owns
 * the partitions next reads them again from the stored offsets. */
static void drop_collected(kafka_source_t *ks, const rd_kafka_topic_partition_list_t *parts) {
  int kept = 0, dropped = 0;
  for (int i = 0; i < ks->n_held; i++) {
    rd_kafka_message_t *m = ks->held[i];
    int drop = parts == NULL;
    for (int j = 0; !drop && j < parts->cnt; j++)
      drop = parts->elems[j].partition == m->partition && m->rkt &&
             strcmp(parts->elems[j].topic, rd_kafka_topic_name(m->rkt)) == 0;
    if (drop) {
      rd_kafka_message_destroy(m);
      dropped++;
      continue;
    }
    ks->held[kept] = m;
    ks->poll_recs[kept] = ks->poll_recs[i];
    kept++;
  }
  ks->n_held = kept;
  if (dropped)
    mtld_log(MTLD_LOG_INFO,
             "rebalance during a poll: %d fetched record(s) of partitions taken away are not "
             "processed here (their offsets were not applied: the next owner reads them)",
             dropped);
}

/* Sets each partition's start offset from the store (where it resumes). */
static void set_resume_offsets(kafka_source_t *ks, rd_kafka_topic_partition_list_t *parts) {
  const mtld_source_hooks_t *h = &ks->base.hooks;
  for (int i = 0; i < parts->cnt; i++) {
    rd_kafka_topic_partition_t *p = &parts->elems[i];
    int64_t next, max_time;
    if (h->resume && h->resume(h->ctx, p->topic, p->partition, &next, &max_time) == MTLD_OK) {
      p->offset = next;
      mtld_log(MTLD_LOG_INFO, "assigned %s[%d]: resuming at stored offset %lld", p->topic,
               (int)p->partition, (long long)next);
    } else {
      /* Never the group's committed offset: those are written for lag
       * monitoring and can be ahead of a restored store. */
      p->offset = ks->fresh_offset;
      mtld_log(MTLD_LOG_INFO, "assigned %s[%d]: not in the store, starting at the %s", p->topic,
               (int)p->partition,
               ks->fresh_offset == RD_KAFKA_OFFSET_END ? "end (auto_offset_reset)" : "beginning");
    }
  }
}

static void notify_assigned(kafka_source_t *ks, rd_kafka_topic_partition_list_t *parts) {
  const mtld_source_hooks_t *h = &ks->base.hooks;
  for (int i = 0; i < parts->cnt; i++) {
    int64_t next, max_time = INT64_MIN;
    if (h->resume)
      h->resume(h->ctx, parts->elems[i].topic, parts->elems[i].partition, &next, &max_time);
    if (h->assigned)
      h->assigned(h->ctx, parts->elems[i].topic, parts->elems[i].partition, max_time);
  }
}

static void notify_revoked(kafka_source_t *ks, rd_kafka_topic_partition_list_t *parts, int lost) {
  const mtld_source_hooks_t *h = &ks->base.hooks;
  if (h->revoke_begin) h->revoke_begin(h->ctx, lost);
  for (int i = 0; i < parts->cnt; i++)
    if (h->revoke_partition)
      h->revoke_partition(h->ctx, parts->elems[i].topic, parts->elems[i].partition);
}

/* After a lost assignment the staged batch was dropped: rewind what we still
 * own to the stored offsets so nothing staged-and-dropped is skipped. */
static void rewind_remaining(kafka_source_t *ks) {
  rd_kafka_topic_partition_list_t *cur = NULL;
  if (rd_kafka_assignment(ks->rk, &cur) || !cur) return;
  if (cur->cnt > 0) {
    set_resume_offsets(ks, cur);
    rd_kafka_error_t *e = rd_kafka_seek_partitions(ks->rk, cur, 5000);
    if (e) {
      mtld_log(MTLD_LOG_WARNING, "rewind after lost partitions: %s", rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
    }
  }
  rd_kafka_topic_partition_list_destroy(cur);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  kafka_source_t *ks = opaque;
  int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  if (ks->in_poll) {
    /* served by kafka_poll's collection: what it collected is not handed out
     * yet; the records of partitions taken away are dropped before the
     * pipeline hears of the revoke, the rest stay, and the collection ends */
    ks->rebalanced = 1;
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && cooperative && !rd_kafka_assignment_lost(rk))
      drop_collected(ks, parts); /* the others go on from where they were fetched */
    else if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
      drop_collected(ks, NULL); /* all revoked, or lost: what stays is rewound */
  } else {
    /* Messages of the previous poll were processed already; drop them before
     * the assignment changes. */
    release_held(ks);
  }
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    set_resume_offsets(ks, parts);
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t re = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (cooperative)
      e = rd_kafka_incremental_assign(rk, parts);
    else
      re = rd_kafka_assign(rk, parts);
    if (e) {
      mtld_log(MTLD_LOG_ERR, "incremental assign failed: %s", rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
    } else if (re) {
      mtld_log(MTLD_LOG_ERR, "assign failed: %s", rd_kafka_err2str(re));
    }
    notify_assigned(ks, parts);
    /* back-pressure holds for partitions assigned meanwhile; without it a
     * partition paused before it was lost must not come back paused
     * (librdkafka keeps the pause on the partition object across assignments) */
    rd_kafka_resp_err_t pe = ks->base.paused ? rd_kafka_pause_partitions(rk, parts)
                                             : rd_kafka_resume_partitions(rk, parts);
    if (pe)
      mtld_log(MTLD_LOG_ERR, "%s new partitions failed: %s",
               ks->base.paused ? "pausing" : "resuming", rd_kafka_err2str(pe));
  } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
    int lost = rd_kafka_assignment_lost(rk);
    mtld_log(MTLD_LOG_INFO, "%s %d partition(s)%s", lost ? "lost" : "revoking", parts->cnt,
             cooperative ? " (cooperative)" : "");
    notify_revoked(ks, parts, lost);
    if (cooperative) {
      rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
      if (e) {
        mtld_log(MTLD_LOG_ERR, "incremental unassign failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
      }
      if (lost) rewind_remaining(ks);
    } else {
      rd_kafka_assign(rk, NULL);
    }
  } else {
    mtld_log(MTLD_LOG_ERR, "rebalance error: %s", rd_kafka_err2str(err));
    rd_kafka_assign(rk, NULL);
  }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  kafka_source_t *ks = opaque;
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    if (ks->connected) mtld_log(MTLD_LOG_WARNING, "kafka: no broker reachable");
    ks->connected = 0;
  }
  mtld_log_rl(err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ? MTLD_LOG_WARNING : MTLD_LOG_NOTICE,
              "kafka-error", "kafka: %s: %s", rd_kafka_err2name(err), reason);
}

/* librdkafka's statistics (statistics.interval.ms, 1 s unless configured):
 * connected while at least one real broker (nodeid >= 0) is UP.  Together
 * with the "all brokers down" error this notices an outage, and the end of
 * one on an idle topic, within about a second. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
  kafka_source_t *ks = opaque;
  (void)rk;
  struct json_tokener *tok = json_tokener_new();
  struct json_object *root = tok ? json_tokener_parse_ex(tok, json, (int)len) : NULL;
  struct json_object *brokers;
  if (root && json_object_object_get_ex(root, "brokers", &brokers) &&
      json_object_is_type(brokers, json_type_object)) {
    int known = 0, up = 0;
    json_object_object_foreach(brokers, name, b) {
      (void)name;
      struct json_object *id, *state;
      if (!json_object_object_get_ex(b, "nodeid", &id) || json_object_get_int(id) < 0) continue;
      known++;
      if (json_object_object_get_ex(b, "state", &state) &&
          strcmp(json_object_get_string(state), "UP") == 0)
        up++;
    }
    if (known > 0) {
      if (ks->connected && !up) mtld_log(MTLD_LOG_WARNING, "kafka: no broker reachable");
      if (!ks->connected && up) mtld_log(MTLD_LOG_NOTICE, "kafka: brokers reachable again");
      ks->connected = up > 0;
    }
  }
  json_object_put(root);
  if (tok) json_tokener_free(tok);
  return 0; /* librdkafka frees json */
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  mtld_log_rl(level < MTLD_LOG_ERR ? MTLD_LOG_ERR : level, "kafka-log", "kafka %s: %s", fac, buf);
}

static int kafka_poll(mtld_source_t *src, mtld_record_t *recs, int max, int timeout_ms, char *err,
                      size_t errlen) {
  kafka_source_t *ks = (kafka_source_t *)src;
  release_held(ks);
  /* Errors and statistics come through the main queue, served here apart
   * from the messages: behind a backlog of prefetched messages they would
   * tell of a dead broker only after the backlog was processed. */
  rd_kafka_poll(ks->rk, 0);
  if (ks->cap_held < max) {
    rd_kafka_message_t **nh = realloc(ks->held, sizeof(*nh) * max);
    if (!nh) return 0;
    ks->held = nh;
    ks->cap_held = max;
  }
  int n = 0;
  ks->in_poll = 1;
  ks->rebalanced = 0;
  ks->poll_recs = recs;
  int last = 0; /* a rebalance ran: take what this call returned, then stop */
  while (n < max && !last) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(ks->rk, n == 0 ? timeout_ms : 0);
    if (ks->rebalanced) {
      /* the callback may have dropped collected records: held[] and recs[]
       * stay aligned, n follows them; a message returned by this same call
       * is of the new assignment */
      n = ks->n_held;
      ks->rebalanced = 0;
      last = 1;
    }
    if (!m) break;
    if (m->err) {
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && m->rkt) {
        ks->held[ks->n_held++] = m; /* keeps the topic name alive */
        recs[n++] = (mtld_record_t){.topic = rd_kafka_topic_name(m->rkt),
                                    .partition = m->partition,
                                    .offset = m->offset,
                                    .eof = 1};
        continue;
      } else {
        mtld_log_rl(MTLD_LOG_WARNING, "consume-error", "consume: %s", rd_kafka_message_errstr(m));
      }
      rd_kafka_message_destroy(m);
      continue;
    }
    ks->held[ks->n_held++] = m;
    recs[n] = (mtld_record_t){.payload = m->payload,
                              .len = m->len,
                              .key = m->key,
                              .key_len = m->key_len,
                              .topic = rd_kafka_topic_name(m->rkt),
                              .partition = m->partition,
                              .offset = m->offset};
    n++;
  }
  ks->in_poll = 0;
  ks->rebalanced = 0;
  ks->poll_recs = NULL;
  return n;
}

static void kafka_commit(mtld_source_t *src, const char *const *topics, const int32_t *partitions,
                         const int64_t *next_offsets, int n) {
  kafka_source_t *ks = (kafka_source_t *)src;
  if (n == 0) return;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
  for (int i = 0; i < n; i++)
    rd_kafka_topic_partition_list_add(l, topics[i], partitions[i])->offset = next_offsets[i];
  rd_kafka_resp_err_t e = rd_kafka_commit(ks->rk, l, 1);
  if (e) mtld_log(MTLD_LOG_DEBUG, "offset commit (lag monitoring only): %s", rd_kafka_err2str(e));
  rd_kafka_topic_partition_list_destroy(l);
}

static void kafka_foreach_lag(mtld_source_t *src,
                              void (*fn)(void *ctx, const char *topic, int32_t partition,
                                         int64_t lag),
                              void *ctx) {
  kafka_source_t *ks = (kafka_source_t *)src;
  rd_kafka_topic_partition_list_t *cur = NULL;
  if (rd_kafka_assignment(ks->rk, &cur) || !cur) return;
  if (rd_kafka_position(ks->rk, cur) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < cur->cnt; i++) {
      int64_t lo, hi;
      if (rd_kafka_get_watermark_offsets(ks->rk, cur->elems[i].topic, cur->elems[i].partition, &lo,
                                         &hi) != RD_KAFKA_RESP_ERR_NO_ERROR)
        continue;
      int64_t pos = cur->elems[i].offset;
      if (pos < 0) pos = lo;
      fn(ctx, cur->elems[i].topic, cur->elems[i].partition, hi > pos ? hi - pos : 0);
    }
  }
  rd_kafka_topic_partition_list_destroy(cur);
}

static void kafka_pause(mtld_source_t *src, int paused) {
  kafka_source_t *ks = (kafka_source_t *)src;
  rd_kafka_topic_partition_list_t *cur = NULL;
  if (rd_kafka_assignment(ks->rk, &cur) || !cur) return;
  rd_kafka_resp_err_t e =
      paused ? rd_kafka_pause_partitions(ks->rk, cur) : rd_kafka_resume_partitions(ks->rk, cur);
  if (e)
    mtld_log(MTLD_LOG_ERR, "%s partitions failed: %s", paused ? "pausing" : "resuming",
             rd_kafka_err2str(e));
  else
    mtld_log(MTLD_LOG_INFO, "%s %d partition(s)", paused ? "paused" : "resumed", cur->cnt);
  rd_kafka_topic_partition_list_destroy(cur);
}

static int kafka_connected(const mtld_source_t *src) {
  return ((const kafka_source_t *)src)->connected;
}

static void kafka_rewind(mtld_source_t *src) {
  kafka_source_t *ks = (kafka_source_t *)src;
  release_held(ks);
  rewind_remaining(ks);
}

static mtld_status_t kafka_log_start(mtld_source_t *src, const char *topic, int32_t partition,
                                     int timeout_ms, int64_t *low) {
  kafka_source_t *ks = (kafka_source_t *)src;
  int64_t lo = -1, hi = -1;
  rd_kafka_resp_err_t e =
      rd_kafka_query_watermark_offsets(ks->rk, topic, partition, &lo, &hi, timeout_ms);
  if (e) {
    mtld_log(MTLD_LOG_WARNING, "log start of %s[%d]: %s", topic, (int)partition,
             rd_kafka_err2str(e));
    return MTLD_ERR_RETRY;
  }
  *low = lo;
  return MTLD_OK;
}

static void kafka_close(mtld_source_t *src) {
  kafka_source_t *ks = (kafka_source_t *)src;
  release_held(ks);
  rd_kafka_consumer_close(ks->rk); /* runs the revoke hook: the pipeline commits first */
  rd_kafka_destroy(ks->rk);
  free(ks->held);
  free(ks);
}

static const mtld_source_ops_t kafka_ops = {.poll = kafka_poll,
                                            .commit = kafka_commit,
                                            .foreach_lag = kafka_foreach_lag,
                                            .connected = kafka_connected,
                                            .rewind = kafka_rewind,
                                            .log_start = kafka_log_start,
                                            .pause = kafka_pause,
                                            .close = kafka_close};

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen) {
  char e[512];
  if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
    snprintf(err, errlen, "kafka.%s: %s", k, e);
    return -1;
  }
  return 0;
}

mtld_status_t mtld_source_kafka_new(mtld_source_t **out, const mtld_config_t *cfg,
                                    const mtld_source_hooks_t *hooks, char *err, size_t errlen) {
  kafka_source_t *ks = calloc(1, sizeof(*ks));
  if (!ks) return MTLD_ERR_NOMEM;
  ks->base.ops = &kafka_ops;
  ks->base.hooks = *hooks;
  ks->connected = 1;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  int has_group = 0, has_stats = 0;
  ks->fresh_offset = RD_KAFKA_OFFSET_BEGINNING;
  for (int i = 0; i < cfg->n_kafka; i++) {
    if (strcmp(cfg->kafka[i].name, "group.id") == 0) has_group = 1;
    if (strcmp(cfg->kafka[i].name, "statistics.interval.ms") == 0) has_stats = 1;
    if (strcmp(cfg->kafka[i].name, "auto.offset.reset") == 0) {
      const char *v = cfg->kafka[i].value;
      if (!strcmp(v, "latest") || !strcmp(v, "largest") || !strcmp(v, "end"))
        ks->fresh_offset = RD_KAFKA_OFFSET_END;
    }
    if (conf_set(conf, cfg->kafka[i].name, cfg->kafka[i].value, err, errlen)) goto fail;
  }
  if (!has_group && conf_set(conf, "group.id", "mtld", err, errlen)) goto fail;
  if (!has_stats && conf_set(conf, "statistics.interval.ms", "1000", err, errlen)) goto fail;
  /* State offsets are ours: Kafka's are written only after durable batches. */
  if (conf_set(conf, "enable.auto.commit", "false", err, errlen) ||
      conf_set(conf, "enable.auto.offset.store", "false", err, errlen) ||
      /* partition EOF marks a partition caught up for the watermark */
      conf_set(conf, "enable.partition.eof", "true", err, errlen))
    goto fail;
  rd_kafka_conf_set_opaque(conf, ks);
  rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  rd_kafka_conf_set_stats_cb(conf, stats_cb);
  rd_kafka_conf_set_log_cb(conf, log_cb);
  char e[512];
  ks->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
  if (!ks->rk) {
    snprintf(err, errlen, "kafka consumer: %s", e);
    goto fail; /* conf still ours on failure */
  }
  conf = NULL; /* owned by rk now */
  /* not rd_kafka_poll_set_consumer: the main queue is served on its own by
   * kafka_poll (see there); rebalances come through the consumer queue */
  rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(cfg->n_topics);
  for (int i = 0; i < cfg->n_topics; i++)
    rd_kafka_topic_partition_list_add(topics, cfg->topics[i], RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t re = rd_kafka_subscribe(ks->rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (re) {
    snprintf(err, errlen, "subscribe: %s", rd_kafka_err2str(re));
    rd_kafka_destroy(ks->rk);
    free(ks);
    return MTLD_ERR_CONFIG;
  }
  *out = &ks->base;
  return MTLD_OK;
fail:
  if (conf) rd_kafka_conf_destroy(conf);
  free(ks);
  return MTLD_ERR_CONFIG;
}
