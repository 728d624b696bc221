/* changelog.c - scale-out: state changelog and group record (changelog.h). */
#include "daemon/changelog.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "common/bytes.h"
#include "common/clock.h"
#include "daemon/log.h"
#include "features/joiner.h"
#include "features/partition.h"

#define GROUP_KEY "mtld-group"
#define GROUP_VERSION 1
#define TXN_TIMEOUT_MS                                                                             \
  10000                    /* transaction.timeout.ms too: a dead instance's open                   \
                             transaction blocks restores at most this long */
#define RESTORE_CHUNK 5000 /* records per direct write batch */

struct mtld_changelog {
  rd_kafka_t *prod; /* transactional */
  rd_kafka_t *cons; /* restores and the group record, no group membership */
  char topic[256], group_topic[256], source_topic[256];
  char txn_id[512];
  int restore_timeout_ms;
  int in_txn;
  int txn_ready; /* init_transactions done */
  int owned;
  /* metrics */
  uint64_t restores, restored_records, dropped_keys, txn_commits, txn_aborts, produced;
  double last_rate, last_seconds;
  uint64_t last_records;
  int64_t restore_lag;
};

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
  char e[512];
  rd_kafka_conf_t *pc = client_conf(cfg, err, errlen);
  if (!pc || set(pc, "transactional.id", cl->txn_id, err, errlen) ||
      set(pc, "linger.ms", "5", err, errlen) ||
      set(pc, "transaction.timeout.ms", "10000", err, errlen))
    goto fail_conf;
  if (!(cl->prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, e, sizeof e))) {
    snprintf(err, errlen, "changelog producer: %s", e);
    goto fail_conf;
  }
  pc = NULL;
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

/* Reads partition `partition` of topic from the beginning to its end
 * (read_committed), calling fn per record; stops early when fn returns
 * non-zero.  *lag (may be NULL) follows the records left.  MTLD_OK or
 * MTLD_ERR_RETRY (timeout) / MTLD_ERR_IO, with err set. */
static mtld_status_t read_partition(mtld_changelog_t *cl, const char *topic, int32_t partition,
                                    int timeout_ms,
                                    int (*fn)(void *ctx, const rd_kafka_message_t *m), void *ctx,
                                    char *err, size_t errlen) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic, partition)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_resp_err_t e = rd_kafka_assign(cl->cons, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    snprintf(err, errlen, "changelog: assign %s[%d]: %s", topic, (int)partition,
             rd_kafka_err2str(e));
    return MTLD_ERR_IO;
  }
  /* the end to reach: the high watermark now (asked of the leader, a few
   * tries on a loaded broker; without it the read cannot know its end) */
  int64_t lo = 0, hi = -1;
  rd_kafka_resp_err_t qe = RD_KAFKA_RESP_ERR_NO_ERROR;
  for (int tries = 0; tries < 5 && hi < 0; tries++) {
    qe = rd_kafka_query_watermark_offsets(cl->cons, topic, partition, &lo, &hi, 5000);
    if (qe) hi = -1;
  }
  if (hi < 0) {
    rd_kafka_assign(cl->cons, NULL);
    snprintf(err, errlen, "changelog: end of %s[%d] unknown: %s", topic, (int)partition,
             rd_kafka_err2str(qe));
    return MTLD_ERR_RETRY;
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
  mtld_status_t rc = read_partition(cl, cl->group_topic, 0, 30000, group_cb, &r, err, errlen);
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
      rc = read_partition(cl, cl->group_topic, 0, 30000, group_cb, &r, err, errlen);
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
} produce_t;

static mtld_status_t produce_cb(void *ctx, mtld_partition_id_t partition, mtld_cf_t cf,
                                const void *key, size_t klen, const void *val, size_t vlen,
                                int deleted) {
  produce_t *p = ctx;
  size_t rlen;
  void *rk = mtld_changelog_key_encode(cf, key, klen, &rlen);
  if (!rk) return MTLD_ERR_NOMEM;
  for (;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->cl->prod, RD_KAFKA_V_TOPIC(p->cl->topic),
        RD_KAFKA_V_PARTITION(mtld_partition_id_number(partition)), RD_KAFKA_V_KEY(rk, rlen),
        RD_KAFKA_V_VALUE(deleted ? NULL : (void *)val, deleted ? 0 : vlen),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(p->cl->prod, 50);
      continue;
    }
    free(rk);
    if (e) {
      snprintf(p->err, p->errlen, "changelog produce: %s", rd_kafka_err2str(e));
      return MTLD_ERR_RETRY;
    }
    p->n++;
    return MTLD_OK;
  }
}

mtld_status_t mtld_changelog_commit_hook(void *ctx, mtld_store_t *st, char *err, size_t errlen) {
  mtld_changelog_t *cl = ctx;
  rd_kafka_error_t *e;
  if (!cl->in_txn) {
    if ((e = rd_kafka_begin_transaction(cl->prod))) return txn_error(cl, e, "begin", err, errlen);
    cl->in_txn = 1;
  }
  produce_t p = {cl, err, errlen, 0};
  mtld_status_t rc = mtld_store_foreach_staged(st, produce_cb, &p);
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
  cl->produced += p.n;
  return MTLD_OK;
}

/* ---- restore and drop --------------------------------------------------- */

typedef struct {
  mtld_changelog_t *cl;
  mtld_store_t *st;
  mtld_store_write_t w[RESTORE_CHUNK];
  size_t n;
  uint64_t records, bad;
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
  if (mtld_changelog_key_decode(m->key, m->key_len, &cf, &key, &klen) != MTLD_OK) {
    r->bad++;
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
  uint64_t n = 0;
  mtld_status_t rc = mtld_store_drop_partition(st, pid, topic, partition, mtld_joiner_key_partition,
                                               NULL, &n, err, errlen);
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
  r->err = err;
  r->errlen = errlen;
  rc = read_partition(cl, cl->topic, partition, cl->restore_timeout_ms, restore_cb, r, err, errlen);
  if (rc == MTLD_OK && r->n && restore_flush(r) != 0) rc = MTLD_ERR_IO;
  restore_free(r);
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
  snprintf(buf, len, "%d partitions owned, last restore %" PRIu64 " rec in %.1f s", cl->owned,
           cl->last_records, cl->last_seconds);
}
