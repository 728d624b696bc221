/* changelog.c - scale-out: state changelog and group record (changelog.h). */
#include "daemon/changelog.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/hash.h"
#include "daemon/log.h"
#include "features/joiner.h"
#include "features/partition.h"

#define GROUP_KEY "mtld-group"
#define GROUP_VERSION 1
#define TXN_TIMEOUT_MS                                                                             \
  10000                    /* transaction.timeout.ms too: a dead instance's open                   \
                             transaction blocks restores at most this long */
#define RESTORE_CHUNK 5000 /* records per direct write batch */
/* The restore shortcut's mark of a partition (changelog.h): meta key
 * "clmark/" partition id (4, big-endian); value: the writer's instance hash,
 * epoch and transaction number (8 bytes each, little-endian). */
#define MARK_PREFIX "clmark/"
#define MARK_KEY_LEN 11
#define MARK_VAL_LEN 24

struct mtld_changelog {
  rd_kafka_t *prod;      /* transactional */
  rd_kafka_topic_t *rkt; /* the changelog topic's handle in prod (no lookup per record) */
  rd_kafka_t *cons;      /* restores and the group record, no group membership */
  char topic[256], group_topic[256], source_topic[256];
  char txn_id[512];
  int restore_timeout_ms;
  int in_txn;
  int txn_ready; /* init_transactions done */
  int owned;
  /* metrics */
  uint64_t restores, restored_records, dropped_keys, txn_commits, txn_aborts, produced;
  uint64_t restores_skipped;
  /* the restore shortcut's marks (mark_key): this process's token, the
   * number of the next transaction */
  uint64_t inst_hash, epoch, txn_seq;
  double last_rate, last_seconds;
  uint64_t last_records;
  int64_t restore_lag;
  mtld_changelog_rows_t rows; /* user rows (publish NULL: none) */
};

_Static_assert(MTLD_CHANGELOG_KIND_USERROW >= MTLD_CF_COUNT,
               "the user-row key kind is not a column family");

/* ---- encodings ---------------------------------------------------------- */

void mtld_changelog_group_encode(const mtld_changelog_group_t *g,
                                 uint8_t out[MTLD_CHANGELOG_GROUP_LEN]) {
  out[0] = GROUP_VERSION;
  mtld_put_le64(out + 1, g->def_hash);
  mtld_put_le64(out + 9, g->model_hash);
  mtld_put_le32(out + 17, (uint32_t)g->partitions);
}

mtld_status_t mtld_changelog_group_decode(mtld_changelog_group_t *g, const void *buf, size_t len) {
  const uint8_t *b = buf;
  if (len != MTLD_CHANGELOG_GROUP_LEN || b[0] != GROUP_VERSION) return MTLD_ERR_CORRUPT;
  g->def_hash = mtld_get_le64(b + 1);
  g->model_hash = mtld_get_le64(b + 9);
  g->partitions = (int32_t)mtld_get_le32(b + 17);
  return MTLD_OK;
}

void *mtld_changelog_key_encode(mtld_cf_t cf, const void *key, size_t klen, size_t *outlen) {
  uint8_t *k = malloc(klen + 1);
  if (!k) return NULL;
  k[0] = (uint8_t)cf;
  if (klen) memcpy(k + 1, key, klen);
  *outlen = klen + 1;
  return k;
}

mtld_status_t mtld_changelog_key_decode(const void *rec_key, size_t len, mtld_cf_t *cf,
                                        const void **key, size_t *klen) {
  const uint8_t *k = rec_key;
  if (!k || len < 1 || k[0] >= MTLD_CF_COUNT) return MTLD_ERR_CORRUPT;
  *cf = (mtld_cf_t)k[0];
  *key = k + 1;
  *klen = len - 1;
  return MTLD_OK;
}

static void mark_key(uint8_t k[MARK_KEY_LEN], int32_t pid) {
  memcpy(k, MARK_PREFIX, 7);
  mtld_put_be32(k + 7, (uint32_t)pid);
}

static int is_mark_key(mtld_cf_t cf, const void *key, size_t klen) {
  return cf == MTLD_CF_META && klen == MARK_KEY_LEN && memcmp(key, MARK_PREFIX, 7) == 0;
}

int mtld_changelog_has_mark(mtld_store_t *st, int32_t pid) {
  uint8_t k[MARK_KEY_LEN];
  mark_key(k, pid);
  void *v = NULL;
  size_t vlen = 0;
  int has = mtld_store_get(st, MTLD_CF_META, k, sizeof k, &v, &vlen) == MTLD_OK && v &&
            vlen == MARK_VAL_LEN;
  free(v);
  return has;
}

uint64_t mtld_changelog_model_hash(const mtld_config_t *cfg) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return 0;
  mtld_config_print(cfg, f);
  fclose(f);
  /* the printout is libconfig groups: "name = {" ... "};" at column 0 */
  static const char *const groups[] = {"features", "model", "joiner", "validation"};
  uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a over the kept lines */
  int keep = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    if (line[0] != ' ' && line[0] != '}') {
      keep = 0;
      for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        size_t n = strlen(groups[i]);
        if (strncmp(line, groups[i], n) == 0 && strcmp(line + n, " = {") == 0) keep = 1;
      }
    } else if (line[0] == '}') {
      keep = 0;
    }
    /* per instance: wall-clock idleness rules and advice thresholds */
    if (!keep || strstr(line, "  idle_after =") == line ||
        strstr(line, "  idle_release =") == line ||
        strstr(line, "  warn_no_samples_after =") == line)
      continue;
    for (const char *c = line; *c; c++) h = (h ^ (uint8_t)*c) * UINT64_C(0x100000001b3);
    h = (h ^ '\n') * UINT64_C(0x100000001b3);
  }
  free(text);
  return h;
}

/* ---- clients ------------------------------------------------------------ */

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  (void)rk;
  mtld_log_rl(level < MTLD_LOG_ERR ? MTLD_LOG_ERR : level, "changelog-kafka-log",
              "changelog: kafka %s: %s", fac, buf);
}

static const char *kafka_get(const mtld_config_t *cfg, const char *name) {
  for (int i = 0; i < cfg->n_kafka; i++)
    if (strcmp(cfg->kafka[i].name, name) == 0) return cfg->kafka[i].value;
  return NULL;
}

/* A client configuration with cfg's bootstrap and security properties. */
static rd_kafka_conf_t *client_conf(const mtld_config_t *cfg, char *err, size_t errlen) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char e[512];
  for (int i = 0; i < cfg->n_kafka; i++) {
    const char *k = cfg->kafka[i].name;
    if (strcmp(k, "bootstrap.servers") != 0 && strncmp(k, "security.", 9) != 0 &&
        strncmp(k, "sasl.", 5) != 0 && strncmp(k, "ssl.", 4) != 0)
      continue;
    if (rd_kafka_conf_set(conf, k, cfg->kafka[i].value, e, sizeof e) != RD_KAFKA_CONF_OK) {
      snprintf(err, errlen, "changelog: kafka.%s: %s", k, e);
      rd_kafka_conf_destroy(conf);
      return NULL;
    }
  }
  rd_kafka_conf_set_log_cb(conf, log_cb);
  return conf;
}

static int set(rd_kafka_conf_t *c, const char *k, const char *v, char *err, size_t errlen) {
  char e[512];
  if (rd_kafka_conf_set(c, k, v, e, sizeof e) == RD_KAFKA_CONF_OK) return 0;
  snprintf(err, errlen, "changelog: %s: %s", k, e);
  return -1;
}

mtld_status_t mtld_changelog_new(mtld_changelog_t **out, const mtld_config_t *cfg, char *err,
                                 size_t errlen) {
  mtld_changelog_t *cl = calloc(1, sizeof *cl);
  if (!cl) return MTLD_ERR_NOMEM;
  snprintf(cl->topic, sizeof cl->topic, "%s", cfg->scaleout_changelog_topic);
  if (cfg->scaleout_group_topic[0])
    snprintf(cl->group_topic, sizeof cl->group_topic, "%s", cfg->scaleout_group_topic);
  else
    snprintf(cl->group_topic, sizeof cl->group_topic, "%.240s.group", cl->topic);
  snprintf(cl->source_topic, sizeof cl->source_topic, "%s", cfg->topics[0]);
  cl->restore_timeout_ms = cfg->scaleout_restore_timeout_ms;
  const char *group = kafka_get(cfg, "group.id"), *inst = kafka_get(cfg, "group.instance.id");
  snprintf(cl->txn_id, sizeof cl->txn_id, "mtld-changelog-%s-%s", group ? group : "mtld",
           inst ? inst : "");
  cl->inst_hash = UINT64_C(0xcbf29ce484222325);
  for (const char *c = cl->txn_id; *c; c++)
    cl->inst_hash = (cl->inst_hash ^ (uint8_t)*c) * UINT64_C(0x100000001b3);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  cl->epoch = mtld_mix64((uint64_t)now.tv_sec * UINT64_C(1000000000) + (uint64_t)now.tv_nsec) ^
              (uint64_t)getpid();
  char e[512];
  rd_kafka_conf_t *pc = client_conf(cfg, err, errlen);
  if (!pc || set(pc, "transactional.id", cl->txn_id, err, errlen) ||
      /* a batch's records are sent when the commit flushes them (flush
       * ignores linger.ms) or when a message set fills: fewer requests */
      set(pc, "linger.ms", "100", err, errlen) ||
      set(pc, "transaction.timeout.ms", "10000", err, errlen))
    goto fail_conf;
  if (!(cl->prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, e, sizeof e))) {
    snprintf(err, errlen, "changelog producer: %s", e);
    goto fail_conf;
  }
  pc = NULL;
  if (!(cl->rkt = rd_kafka_topic_new(cl->prod, cl->topic, NULL))) {
    snprintf(err, errlen, "changelog topic %s: %s", cl->topic,
             rd_kafka_err2str(rd_kafka_last_error()));
    mtld_changelog_free(cl);
    return MTLD_ERR_CONFIG;
  }
  char gid[600];
  snprintf(gid, sizeof gid, "%s-restore", cl->txn_id);
  rd_kafka_conf_t *cc = client_conf(cfg, err, errlen);
  if (!cc || set(cc, "group.id", gid, err, errlen) ||
      set(cc, "isolation.level", "read_committed", err, errlen) ||
      set(cc, "enable.partition.eof", "true", err, errlen) ||
      set(cc, "fetch.wait.max.ms", "20", err, errlen) ||
      set(cc, "enable.auto.commit", "false", err, errlen) ||
      set(cc, "auto.offset.reset", "earliest", err, errlen)) {
    if (cc) rd_kafka_conf_destroy(cc);
    mtld_changelog_free(cl);
    return MTLD_ERR_CONFIG;
  }
  if (!(cl->cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, e, sizeof e))) {
    snprintf(err, errlen, "changelog consumer: %s", e);
    rd_kafka_conf_destroy(cc);
    mtld_changelog_free(cl);
    return MTLD_ERR_CONFIG;
  }
  *out = cl;
  return MTLD_OK;
fail_conf:
  if (pc) rd_kafka_conf_destroy(pc);
  mtld_changelog_free(cl);
  return MTLD_ERR_CONFIG;
}

void mtld_changelog_free(mtld_changelog_t *cl) {
  if (!cl) return;
  if (cl->prod) {
    if (cl->in_txn && cl->txn_ready) {
      rd_kafka_error_t *e = rd_kafka_abort_transaction(cl->prod, 5000);
      if (e) rd_kafka_error_destroy(e);
    }
    if (cl->rkt) rd_kafka_topic_destroy(cl->rkt);
    rd_kafka_destroy(cl->prod);
  }
  if (cl->cons) {
    rd_kafka_consumer_close(cl->cons);
    rd_kafka_destroy(cl->cons);
  }
  free(cl);
}

/* Partition count of a topic; -1 when it does not exist, -2 no answer. */
static int topic_partitions(rd_kafka_t *rk, const char *topic, char *why, size_t whylen) {
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  int n = -2;
  for (int tries = 0; tries < 3 && n == -2; tries++) {
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
    if (e) {
      snprintf(why, whylen, "%s", rd_kafka_err2str(e));
      continue;
    }
    if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topics[0].partition_cnt > 0)
      n = md->topics[0].partition_cnt;
    else if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
      snprintf(why, whylen, "leader not available");
    else {
      n = -1;
      snprintf(why, whylen, "%s",
               md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "no metadata");
    }
    rd_kafka_metadata_destroy(md);
  }
  rd_kafka_topic_destroy(t);
  return n;
}

/* Reads partition `partition` of topic to its end (read_committed), from
 * the beginning (tail 0) or from `tail` offsets before the high watermark,
 * calling fn per record; stops early when fn returns non-zero.  *hi_out
 * (may be NULL) gets the high watermark read to.  MTLD_OK or
 * MTLD_ERR_RETRY (timeout) / MTLD_ERR_IO, with err set. */
static mtld_status_t read_partition(mtld_changelog_t *cl, const char *topic, int32_t partition,
                                    int64_t tail, int timeout_ms,
                                    int (*fn)(void *ctx, const rd_kafka_message_t *m), void *ctx,
                                    int64_t *hi_out, char *err, size_t errlen) {
  /* the end to reach: the high watermark now (asked of the leader, a few
   * tries on a loaded broker; without it the read cannot know its end) */
  int64_t lo = 0, hi = -1;
  rd_kafka_resp_err_t qe = RD_KAFKA_RESP_ERR_NO_ERROR;
  for (int tries = 0; tries < 5 && hi < 0; tries++) {
    qe = rd_kafka_query_watermark_offsets(cl->cons, topic, partition, &lo, &hi, 5000);
    if (qe) hi = -1;
  }
  if (hi < 0) {
    snprintf(err, errlen, "changelog: end of %s[%d] unknown: %s", topic, (int)partition,
             rd_kafka_err2str(qe));
    return MTLD_ERR_RETRY;
  }
  if (hi_out) *hi_out = hi;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic, partition)->offset =
      tail > 0 ? (hi - tail > lo ? hi - tail : lo) : RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_resp_err_t e = rd_kafka_assign(cl->cons, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    snprintf(err, errlen, "changelog: assign %s[%d]: %s", topic, (int)partition,
             rd_kafka_err2str(e));
    return MTLD_ERR_IO;
  }
  int64_t deadline = mtld_mono_ms() + timeout_ms;
  mtld_status_t rc = MTLD_ERR_RETRY;
  snprintf(err, errlen, "changelog: %s[%d] not read to its end within %d s", topic, (int)partition,
           timeout_ms / 1000);
  while (mtld_mono_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(cl->cons, 200);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      /* read_committed stops at the last stable offset: the end only once
       * it reached the high watermark seen at the start, i.e. every
       * transaction written before was decided (its commit markers land
       * after the producer's commit returned; a dead producer's open one
       * is aborted by its restart or transaction.timeout.ms) */
      int64_t at = m->offset;
      rd_kafka_message_destroy(m);
      mtld_log(MTLD_LOG_DEBUG, "changelog: %s[%d] end at %" PRId64 ", high watermark %" PRId64,
               topic, (int)partition, at, hi);
      if (at >= hi) {
        rc = MTLD_OK;
        break;
      }
      cl->restore_lag = hi - at;
      continue;
    }
    if (m->err) {
      mtld_log_rl(MTLD_LOG_WARNING, "changelog-read", "changelog: reading %s[%d]: %s", topic,
                  (int)partition, rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      continue;
    }
    cl->restore_lag = hi > m->offset ? hi - m->offset - 1 : 0;
    int stop = fn(ctx, m);
    rd_kafka_message_destroy(m);
    if (stop < 0) {
      rc = MTLD_ERR_IO;
      break;
    }
    if (stop) {
      rc = MTLD_OK;
      break;
    }
  }
  cl->restore_lag = 0;
  rd_kafka_assign(cl->cons, NULL);
  return rc;
}

typedef struct {
  mtld_changelog_group_t g;
  int found;
} group_read_t;

static int group_cb(void *ctx, const rd_kafka_message_t *m) {
  group_read_t *r = ctx;
  if (m->key_len == strlen(GROUP_KEY) && memcmp(m->key, GROUP_KEY, m->key_len) == 0 && m->payload &&
      mtld_changelog_group_decode(&r->g, m->payload, m->len) == MTLD_OK) {
    r->found = 1;
    return 1; /* the first record wins */
  }
  return 0;
}

static mtld_status_t txn_error(mtld_changelog_t *cl, rd_kafka_error_t *e, const char *what,
                               char *err, size_t errlen) {
  mtld_status_t rc = rd_kafka_error_is_fatal(e) ? MTLD_ERR_IO : MTLD_ERR_RETRY;
  snprintf(err, errlen, "changelog %s: %s%s", what, rd_kafka_error_string(e),
           rd_kafka_error_is_fatal(e) ? " (fatal: another instance with the same "
                                        "group.instance.id fenced this one?)"
                                      : "");
  int abort = cl->in_txn && !rd_kafka_error_is_fatal(e);
  rd_kafka_error_destroy(e);
  if (abort) {
    rd_kafka_error_t *a = rd_kafka_abort_transaction(cl->prod, TXN_TIMEOUT_MS);
    if (a) {
      mtld_log(MTLD_LOG_ERR, "changelog: abort: %s", rd_kafka_error_string(a));
      rd_kafka_error_destroy(a);
    } else {
      cl->in_txn = 0;
    }
    cl->txn_aborts++;
  }
  return rc;
}

mtld_status_t mtld_changelog_join(mtld_changelog_t *cl, const mtld_changelog_group_t *mine,
                                  char *err, size_t errlen) {
  char why[256] = "";
  int src = topic_partitions(cl->cons, cl->source_topic, why, sizeof why);
  if (src == -2) {
    snprintf(err, errlen, "source topic %s: no metadata: %s", cl->source_topic, why);
    return MTLD_ERR_RETRY;
  }
  if (src < 0) {
    snprintf(err, errlen, "source topic %s: %s", cl->source_topic, why);
    return MTLD_ERR_CONFIG;
  }
  int chl = topic_partitions(cl->cons, cl->topic, why, sizeof why);
  if (chl < 0) {
    snprintf(err, errlen,
             "scaleout.changelog_topic %s: %s (create it compacted with the source topic's %d "
             "partitions: README \"Scale-out\")",
             cl->topic, why, src);
    return chl == -2 ? MTLD_ERR_RETRY : MTLD_ERR_CONFIG;
  }
  if (chl != src) {
    snprintf(err, errlen,
             "partition count disagrees: changelog topic %s has %d partitions, source topic %s "
             "has %d",
             cl->topic, chl, cl->source_topic, src);
    return MTLD_ERR_CONFIG;
  }
  int grp = topic_partitions(cl->cons, cl->group_topic, why, sizeof why);
  if (grp < 0) {
    snprintf(err, errlen, "scaleout.group_topic %s: %s (create it compacted, 1 partition)",
             cl->group_topic, why);
    return grp == -2 ? MTLD_ERR_RETRY : MTLD_ERR_CONFIG;
  }
  mtld_changelog_group_t me = *mine;
  me.partitions = src;
  group_read_t r = {.found = 0};
  mtld_status_t rc =
      read_partition(cl, cl->group_topic, 0, 0, 30000, group_cb, &r, NULL, err, errlen);
  if (rc != MTLD_OK) return rc;
  rd_kafka_error_t *e;
  if (!r.found) {
    /* the first instance: write the group's record (one transaction) */
    if ((e = rd_kafka_init_transactions(cl->prod, TXN_TIMEOUT_MS)))
      return txn_error(cl, e, "init", err, errlen);
    cl->txn_ready = 1;
    uint8_t v[MTLD_CHANGELOG_GROUP_LEN];
    mtld_changelog_group_encode(&me, v);
    if ((e = rd_kafka_begin_transaction(cl->prod))) return txn_error(cl, e, "begin", err, errlen);
    cl->in_txn = 1;
    rd_kafka_resp_err_t pe = rd_kafka_producev(
        cl->prod, RD_KAFKA_V_TOPIC(cl->group_topic), RD_KAFKA_V_PARTITION(0),
        RD_KAFKA_V_KEY(GROUP_KEY, strlen(GROUP_KEY)), RD_KAFKA_V_VALUE(v, sizeof v),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (pe) {
      snprintf(err, errlen, "changelog: group record: %s", rd_kafka_err2str(pe));
      return MTLD_ERR_IO;
    }
    if ((e = rd_kafka_commit_transaction(cl->prod, TXN_TIMEOUT_MS)))
      return txn_error(cl, e, "group record", err, errlen);
    cl->in_txn = 0;
    /* two first instances at once: the record first in the log wins */
    for (int tries = 0; tries < 10 && !r.found; tries++) {
      rc = read_partition(cl, cl->group_topic, 0, 0, 30000, group_cb, &r, NULL, err, errlen);
      if (rc != MTLD_OK) return rc;
    }
    if (!r.found) {
      snprintf(err, errlen, "group topic %s: the record written is not there", cl->group_topic);
      return MTLD_ERR_IO;
    }
  }
  const char *which = r.g.def_hash != me.def_hash       ? "feature definitions (features.*)"
                      : r.g.model_hash != me.model_hash ? "model configuration (model.*, joiner.*, "
                                                          "validation.*)"
                      : r.g.partitions != me.partitions ? "partition count"
                                                        : NULL;
  if (which) {
    snprintf(err, errlen,
             "this instance disagrees with the group on its %s (group: definitions %016" PRIx64
             ", model %016" PRIx64 ", %d partitions; mine: %016" PRIx64 ", %016" PRIx64
             ", %d): refused (the group record is in %s)",
             which, r.g.def_hash, r.g.model_hash, (int)r.g.partitions, me.def_hash, me.model_hash,
             (int)me.partitions, cl->group_topic);
    return MTLD_ERR_CONFIG;
  }
  if (!cl->txn_ready) {
    if ((e = rd_kafka_init_transactions(cl->prod, TXN_TIMEOUT_MS)))
      return txn_error(cl, e, "init", err, errlen);
    cl->txn_ready = 1;
  }
  mtld_log(MTLD_LOG_NOTICE,
           "scale-out: joined the group's definition (%d partitions); changelog %s, "
           "transactional.id %s",
           (int)src, cl->topic, cl->txn_id);
  return MTLD_OK;
}

/* ---- the commit transaction ------------------------------------------- */

typedef struct {
  mtld_changelog_t *cl;
  char *err;
  size_t errlen;
  uint64_t n;
  /* the partitions the transaction writes to (each gets a mark last) */
  int32_t pids[MTLD_PARTITION_TABLE_CAP];
  int npids;
} produce_t;

static mtld_status_t produce_one(mtld_changelog_t *cl, int32_t partition, const void *rk,
                                 size_t rlen, const void *val, size_t vlen, int deleted, char *err,
                                 size_t errlen) {
  for (;;) {
    rd_kafka_resp_err_t e =
        rd_kafka_producev(cl->prod, RD_KAFKA_V_RKT(cl->rkt), RD_KAFKA_V_PARTITION(partition),
                          RD_KAFKA_V_KEY(rk, rlen),
                          RD_KAFKA_V_VALUE(deleted ? NULL : (void *)val, deleted ? 0 : vlen),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(cl->prod, 50);
      continue;
    }
    if (e) {
      snprintf(err, errlen, "changelog produce: %s", rd_kafka_err2str(e));
      return MTLD_ERR_RETRY;
    }
    return MTLD_OK;
  }
}

/* Adds a partition to those the transaction writes (each gets a mark). */
static int note_pid(produce_t *p, mtld_partition_id_t partition) {
  for (int i = p->npids - 1; i >= 0; i--)
    if (p->pids[i] == partition) return 0;
  if (p->npids == MTLD_PARTITION_TABLE_CAP) {
    snprintf(p->err, p->errlen, "changelog: more than %d partitions in one batch",
             MTLD_PARTITION_TABLE_CAP);
    return -1;
  }
  p->pids[p->npids++] = partition;
  return 0;
}

static mtld_status_t produce_cb(void *ctx, mtld_partition_id_t partition, mtld_cf_t cf,
                                const void *key, size_t klen, const void *val, size_t vlen,
                                int deleted) {
  produce_t *p = ctx;
  if (is_mark_key(cf, key, klen)) return MTLD_OK; /* staged untagged: never here */
  if (note_pid(p, partition) != 0) return MTLD_ERR_IO;
  /* the record key: cf then the store key (mtld_changelog_key_encode),
   * on the stack for the usual short keys */
  uint8_t buf[256], *rk = klen < sizeof buf ? buf : malloc(klen + 1);
  if (!rk) return MTLD_ERR_NOMEM;
  rk[0] = (uint8_t)cf;
  if (klen) memcpy(rk + 1, key, klen);
  mtld_status_t rc = produce_one(p->cl, mtld_partition_id_number(partition), rk, klen + 1, val,
                                 vlen, deleted, p->err, p->errlen);
  if (rk != buf) free(rk);
  if (rc == MTLD_OK) p->n++;
  return rc;
}

/* mtld_changelog_emit_fn for the extra records (user rows) */
static mtld_status_t emit_cb(void *ectx, int32_t partition, const void *key, size_t klen,
                             const void *val, size_t vlen) {
  produce_t *p = ectx;
  mtld_partition_id_t pid = mtld_partition_id(0, partition);
  if (pid < 0) {
    snprintf(p->err, p->errlen, "changelog: no partition id for partition %d", (int)partition);
    return MTLD_ERR_IO;
  }
  if (note_pid(p, pid) != 0) return MTLD_ERR_IO;
  mtld_status_t rc = produce_one(p->cl, partition, key, klen, val, vlen, 0, p->err, p->errlen);
  if (rc == MTLD_OK) p->n++;
  return rc;
}

void mtld_changelog_set_rows(mtld_changelog_t *cl, const mtld_changelog_rows_t *rows) {
  if (rows)
    cl->rows = *rows;
  else
    memset(&cl->rows, 0, sizeof cl->rows);
}

/* Each partition written gets this transaction's mark as its last record,
 * and the same mark is staged locally (untagged) in the RocksDB batch that
 * follows: the local store then holds exactly what the changelog holds up
 * to that record (the restore shortcut, changelog.h). */
static mtld_status_t produce_marks(produce_t *p, mtld_store_t *st) {
  mtld_changelog_t *cl = p->cl;
  uint8_t v[MARK_VAL_LEN];
  mtld_put_le64(v, cl->inst_hash);
  mtld_put_le64(v + 8, cl->epoch);
  mtld_put_le64(v + 16, ++cl->txn_seq);
  for (int i = 0; i < p->npids; i++) {
    uint8_t k[1 + MARK_KEY_LEN];
    k[0] = (uint8_t)MTLD_CF_META;
    mark_key(k + 1, p->pids[i]);
    mtld_status_t rc = produce_one(cl, mtld_partition_id_number(p->pids[i]), k, sizeof k, v,
                                   sizeof v, 0, p->err, p->errlen);
    if (rc != MTLD_OK) return rc;
    p->n++;
  }
  mtld_store_set_partition(st, -1);
  for (int i = 0; i < p->npids; i++) {
    uint8_t k[MARK_KEY_LEN];
    mark_key(k, p->pids[i]);
    mtld_status_t rc = mtld_store_put(st, MTLD_CF_META, k, sizeof k, v, sizeof v);
    if (rc != MTLD_OK) {
      snprintf(p->err, p->errlen, "changelog: staging the mark: %s", mtld_status_str(rc));
      return rc;
    }
  }
  return MTLD_OK;
}

mtld_status_t mtld_changelog_commit_hook(void *ctx, mtld_store_t *st, char *err, size_t errlen) {
  mtld_changelog_t *cl = ctx;
  rd_kafka_error_t *e;
  if (!cl->in_txn) {
    if ((e = rd_kafka_begin_transaction(cl->prod))) return txn_error(cl, e, "begin", err, errlen);
    cl->in_txn = 1;
  }
  produce_t *pp = calloc(1, sizeof *pp);
  if (!pp) return MTLD_ERR_NOMEM;
  *pp = (produce_t){.cl = cl, .err = err, .errlen = errlen};
  mtld_status_t rc = mtld_store_foreach_staged(st, produce_cb, pp);
  if (rc == MTLD_OK && cl->rows.publish) rc = cl->rows.publish(cl->rows.ctx, emit_cb, pp);
  if (rc == MTLD_OK) rc = produce_marks(pp, st);
  uint64_t produced = pp->n;
  free(pp);
  if (rc != MTLD_OK) {
    e = rd_kafka_abort_transaction(cl->prod, TXN_TIMEOUT_MS);
    if (e) {
      mtld_log(MTLD_LOG_ERR, "changelog: abort: %s", rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
    } else {
      cl->in_txn = 0;
    }
    cl->txn_aborts++;
    return rc;
  }
  if ((e = rd_kafka_commit_transaction(cl->prod, TXN_TIMEOUT_MS)))
    return txn_error(cl, e, "commit", err, errlen);
  cl->in_txn = 0;
  cl->txn_commits++;
  cl->produced += produced;
  return MTLD_OK;
}

/* ---- restore and drop --------------------------------------------------- */

typedef struct {
  mtld_changelog_t *cl;
  mtld_store_t *st;
  int32_t partition;
  mtld_store_write_t w[RESTORE_CHUNK];
  size_t n;
  uint64_t records, bad;
  /* the partition's mark, written after everything else (a restore cut
   * short must not leave a mark claiming the whole state) */
  uint8_t mark[MARK_VAL_LEN], mark_key[MARK_KEY_LEN];
  int has_mark;
  char *err;
  size_t errlen;
} restore_t;

static void restore_free(restore_t *r) {
  for (size_t i = 0; i < r->n; i++) {
    free((void *)r->w[i].key);
    free((void *)r->w[i].val);
  }
  r->n = 0;
}

static int restore_flush(restore_t *r) {
  mtld_status_t rc = mtld_store_write_direct(r->st, r->w, r->n, r->err, r->errlen);
  restore_free(r);
  return rc == MTLD_OK ? 0 : -1;
}

static int restore_cb(void *ctx, const rd_kafka_message_t *m) {
  restore_t *r = ctx;
  mtld_cf_t cf;
  const void *key;
  size_t klen;
  if (m->key && m->key_len >= 1 && ((const uint8_t *)m->key)[0] == MTLD_CHANGELOG_KIND_USERROW) {
    r->records++;
    if (r->cl->rows.restore_row && m->payload)
      r->cl->rows.restore_row(r->cl->rows.ctx, r->partition, m->key, m->key_len, m->payload,
                              m->len);
    return 0;
  }
  if (mtld_changelog_key_decode(m->key, m->key_len, &cf, &key, &klen) != MTLD_OK) {
    r->bad++;
    return 0;
  }
  if (is_mark_key(cf, key, klen)) {
    r->records++;
    r->has_mark = m->payload && m->len == MARK_VAL_LEN;
    if (r->has_mark) {
      memcpy(r->mark_key, key, MARK_KEY_LEN);
      memcpy(r->mark, m->payload, MARK_VAL_LEN);
    }
    return 0;
  }
  void *k = malloc(klen ? klen : 1), *v = NULL;
  if (k && m->payload) v = malloc(m->len ? m->len : 1);
  if (!k || (m->payload && !v)) {
    free(k);
    snprintf(r->err, r->errlen, "restore: out of memory");
    return -1;
  }
  memcpy(k, key, klen);
  if (v && m->len) memcpy(v, m->payload, m->len);
  r->w[r->n++] = (mtld_store_write_t){
      .cf = cf, .key = k, .klen = klen, .val = v, .vlen = m->len, .deleted = m->payload == NULL};
  r->records++;
  if (r->n == RESTORE_CHUNK && restore_flush(r) != 0) return -1;
  return 0;
}

mtld_status_t mtld_changelog_drop(mtld_changelog_t *cl, mtld_store_t *st, const char *topic,
                                  int32_t partition, int32_t pid, char *err, size_t errlen) {
  /* the mark first: a drop cut short leaves state without a mark, which
   * the next assignment restores */
  uint8_t k[MARK_KEY_LEN];
  mark_key(k, pid);
  mtld_store_write_t w = {.cf = MTLD_CF_META, .key = k, .klen = sizeof k, .deleted = 1};
  mtld_status_t rc = mtld_store_write_direct(st, &w, 1, err, errlen);
  if (rc != MTLD_OK) return rc;
  uint64_t n = 0;
  rc = mtld_store_drop_partition(st, pid, topic, partition, mtld_joiner_key_partition, NULL, &n,
                                 err, errlen);
  if (rc == MTLD_OK) cl->dropped_keys += n;
  return rc;
}

mtld_status_t mtld_changelog_restore(mtld_changelog_t *cl, mtld_store_t *st, const char *topic,
                                     int32_t partition, int32_t pid, mtld_changelog_restore_t *out,
                                     char *err, size_t errlen) {
  int64_t t0 = mtld_mono_ns();
  uint64_t before = cl->dropped_keys;
  mtld_status_t rc = mtld_changelog_drop(cl, st, topic, partition, pid, err, errlen);
  if (rc != MTLD_OK) return rc;
  restore_t *r = calloc(1, sizeof *r);
  if (!r) return MTLD_ERR_NOMEM;
  r->cl = cl;
  r->st = st;
  r->partition = partition;
  r->err = err;
  r->errlen = errlen;
  rc = read_partition(cl, cl->topic, partition, 0, cl->restore_timeout_ms, restore_cb, r, NULL, err,
                      errlen);
  if (rc == MTLD_OK && r->n && restore_flush(r) != 0) rc = MTLD_ERR_IO;
  restore_free(r);
  if (cl->rows.restore_end) cl->rows.restore_end(cl->rows.ctx, partition, rc == MTLD_OK);
  if (rc == MTLD_OK && r->has_mark) {
    mtld_store_write_t w = {.cf = MTLD_CF_META,
                            .key = r->mark_key,
                            .klen = MARK_KEY_LEN,
                            .val = r->mark,
                            .vlen = MARK_VAL_LEN};
    rc = mtld_store_write_direct(st, &w, 1, err, errlen);
  }
  double secs = (double)(mtld_mono_ns() - t0) / 1e9;
  if (rc == MTLD_OK) {
    cl->restores++;
    cl->restored_records += r->records;
    cl->last_records = r->records;
    cl->last_seconds = secs;
    cl->last_rate = secs > 0 ? (double)r->records / secs : 0;
    if (r->bad)
      mtld_log(MTLD_LOG_WARNING, "changelog %s[%d]: %" PRIu64 " records with a bad key skipped",
               cl->topic, (int)partition, r->bad);
    if (out)
      *out = (mtld_changelog_restore_t){
          .records = r->records, .dropped = cl->dropped_keys - before, .seconds = secs};
  }
  free(r);
  return rc;
}

typedef struct {
  uint8_t key[1 + MARK_KEY_LEN], want[MARK_VAL_LEN];
  int last_is_mine; /* the last committed record read is my mark */
  int64_t at;       /* its offset */
} tail_t;

static int tail_cb(void *ctx, const rd_kafka_message_t *m) {
  tail_t *t = ctx;
  t->last_is_mine = m->key_len == sizeof t->key && memcmp(m->key, t->key, sizeof t->key) == 0 &&
                    m->payload && m->len == MARK_VAL_LEN &&
                    memcmp(m->payload, t->want, MARK_VAL_LEN) == 0;
  t->at = m->offset;
  return 0;
}

mtld_status_t mtld_changelog_held(mtld_changelog_t *cl, mtld_store_t *st, int32_t partition,
                                  int32_t pid, int *held, char *why, size_t whylen) {
  *held = 0;
  tail_t t = {.last_is_mine = 0, .at = -1};
  t.key[0] = (uint8_t)MTLD_CF_META;
  mark_key(t.key + 1, pid);
  void *v = NULL;
  size_t vlen = 0;
  if (mtld_store_get(st, MTLD_CF_META, t.key + 1, MARK_KEY_LEN, &v, &vlen) != MTLD_OK || !v ||
      vlen != MARK_VAL_LEN) {
    free(v);
    snprintf(why, whylen, "no mark in the local store");
    return MTLD_OK;
  }
  memcpy(t.want, v, MARK_VAL_LEN);
  free(v);
  /* my mark is my transaction's last record to the partition, its commit
   * marker follows: both are the last two offsets unless something was
   * written after (a committed record read past it clears last_is_mine; an
   * aborted or open one leaves nothing read: restored, to be safe) */
  int64_t hi = -1;
  mtld_status_t rc = read_partition(cl, cl->topic, partition, 2, cl->restore_timeout_ms, tail_cb,
                                    &t, &hi, why, whylen);
  if (rc != MTLD_OK) return rc;
  if (t.last_is_mine && hi - t.at <= 2) {
    *held = 1;
    cl->restores_skipped++;
    snprintf(why, whylen,
             "the local store holds the changelog up to its end (mark at offset %" PRId64
             ", end %" PRId64 ")",
             t.at, hi);
  } else if (t.at < 0) {
    snprintf(why, whylen, "the changelog's end (%" PRId64 ") is not this store's mark", hi);
  } else {
    snprintf(why, whylen,
             "the changelog moved on (last record at offset %" PRId64 ", end %" PRId64
             ", not this store's mark)",
             t.at, hi);
  }
  return MTLD_OK;
}

/* ---- metrics ------------------------------------------------------------ */

int mtld_changelog_owned(const mtld_changelog_t *cl) {
  return cl ? cl->owned : 0;
}

void mtld_changelog_set_owned(mtld_changelog_t *cl, int owned) {
  cl->owned = owned;
}

void mtld_changelog_render_metrics(const mtld_changelog_t *cl, mtld_metrics_buf_t *b) {
  if (!cl) return;
  static const struct {
    const char *name, *type, *help;
  } fam[] = {
      {"mtld_scaleout_partitions_owned", "gauge", "Source partitions this instance holds."},
      {"mtld_scaleout_restores_total", "counter", "Partitions restored from the changelog."},
      {"mtld_scaleout_restores_skipped_total", "counter",
       "Partitions assigned whose local state was the changelog's end: not restored."},
      {"mtld_scaleout_restore_records_total", "counter", "Changelog records restored."},
      {"mtld_scaleout_dropped_keys_total", "counter",
       "Local keys dropped with revoked (or stale) partitions."},
      {"mtld_scaleout_restore_records_per_second", "gauge", "Rate of the last restore."},
      {"mtld_scaleout_restore_seconds", "gauge", "Duration of the last restore (drop included)."},
      {"mtld_scaleout_restore_lag", "gauge",
       "Changelog records left in the restore running now (0 between restores)."},
      {"mtld_scaleout_transactions_total", "counter", "Changelog transactions committed."},
      {"mtld_scaleout_transactions_aborted_total", "counter", "Changelog transactions aborted."},
      {"mtld_scaleout_changelog_records_total", "counter", "Records produced to the changelog."},
  };
  const double v[] = {cl->owned,
                      (double)cl->restores,
                      (double)cl->restores_skipped,
                      (double)cl->restored_records,
                      (double)cl->dropped_keys,
                      cl->last_rate,
                      cl->last_seconds,
                      (double)cl->restore_lag,
                      (double)cl->txn_commits,
                      (double)cl->txn_aborts,
                      (double)cl->produced};
  for (size_t i = 0; i < sizeof fam / sizeof fam[0]; i++) {
    mtld_metrics_family(b, fam[i].name, fam[i].type, fam[i].help);
    mtld_metrics_sample(b, fam[i].name, NULL, v[i]);
  }
}

void mtld_changelog_status(const mtld_changelog_t *cl, char *buf, size_t len) {
  if (!cl) {
    if (len) buf[0] = 0;
    return;
  }
  snprintf(buf, len,
           "%d partitions owned, last restore %" PRIu64 " rec in %.1f s, %" PRIu64
           " restores skipped",
           cl->owned, cl->last_records, cl->last_seconds, cl->restores_skipped);
}
