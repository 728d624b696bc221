/* bench_ingest.c - ingestion throughput of mtld against raw references,
 * measured in one run on one event stream (a file written by mtld-gen).
 *
 *   (a) the store path: decode + validate + mtld_store_apply +
 *       mtld_store_set_offset per record, mtld_store_commit every B records,
 *       into a fresh RocksDB store (store.sync off, then on);
 *   (b) its reference: a raw RocksDB loop (rocksdb/c.h) that puts, per event,
 *       the user key and the item key with values of the size mtld encodes for
 *       them after that event (plus the offset key once per batch), writing
 *       the WriteBatch every B events; same sync setting, same options and
 *       column families as the store;
 *   (c) Kafka: the records are produced, keyed by user id as mtld-gen does, to
 *       an 8-partition topic of a mock cluster started in this process; then a
 *       plain librdkafka consumer reads them all, against mtld's full path
 *       (Kafka source + pipeline: decode, validate, store, joiner, batch
 *       commits, Kafka offset commits; trainer off).
 *
 * Every measurement runs --reps times (default 3), interleaved, and the median
 * is reported with the min and max.  Store rates count from the first record
 * to the last commit (open and close excluded).  Kafka rates count from the
 * partitions' assignment (fetching starts) to the last record processed (and
 * committed, for mtld).  Both join a consumer group of their own (mtld as
 * the daemon does); the join, about 3 s on the mock cluster, is printed
 * apart, not timed.
 *
 *   usage: bench_ingest --events FILE [--reps N] [--batch B] [--dir DIR]
 *                       [--kafka-sync off|on|both] [--no-kafka] */
#define _GNU_SOURCE /* nftw */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/decode.h"
#include "daemon/eventfile.h"
#include "daemon/log.h"
#include "daemon/pipeline.h"
#include "daemon/source.h"
#include "features/features.h"
#include "features/store.h"
#include "features/watermark.h"

#define BI_TOPIC "bench"
#define BI_PARTITIONS 8
#define BI_MAX_REPS 25
#define BI_STALL_S 60.0 /* no progress for this long: give up */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void put_be64(uint8_t k[8], uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) k[i] = (uint8_t)v;
}

/* ---- the stream ---------------------------------------------------------- */

typedef struct {
  size_t n;
  unsigned char *data; /* payloads back to back */
  size_t *off, *len;
  uint64_t *user, *item;
  uint32_t *user_vlen, *item_vlen; /* mtld's encoded value sizes after each event */
  size_t bytes, n_users, n_items;
  uint8_t *user_fill, *item_fill; /* realistic value bytes for the raw loop */
} bi_stream_t;

/* id -> malloc'd features, open addressing (ids are never 0). */
typedef struct {
  uint64_t *ids;
  void **vals;
  size_t cap, n;
} bi_map_t;

static void *bi_map_get(bi_map_t *m, uint64_t id, size_t vsize) {
  if (2 * (m->n + 1) > m->cap) {
    size_t ncap = m->cap ? 2 * m->cap : 4096;
    uint64_t *ids = calloc(ncap, sizeof *ids);
    void **vals = calloc(ncap, sizeof *vals);
    if (!ids || !vals) {
      free(ids);
      free(vals);
      return NULL;
    }
    for (size_t i = 0; i < m->cap; i++) {
      if (!m->ids[i]) continue;
      size_t j = (m->ids[i] * 0x9e3779b97f4a7c15ULL) & (ncap - 1);
      while (ids[j]) j = (j + 1) & (ncap - 1);
      ids[j] = m->ids[i];
      vals[j] = m->vals[i];
    }
    free(m->ids);
    free(m->vals);
    m->ids = ids;
    m->vals = vals;
    m->cap = ncap;
  }
  size_t j = (id * 0x9e3779b97f4a7c15ULL) & (m->cap - 1);
  while (m->ids[j] && m->ids[j] != id) j = (j + 1) & (m->cap - 1);
  if (!m->ids[j]) {
    m->vals[j] = calloc(1, vsize);
    if (!m->vals[j]) return NULL;
    m->ids[j] = id;
    m->n++;
  }
  return m->vals[j];
}

static void bi_map_free(bi_map_t *m) {
  for (size_t i = 0; i < m->cap; i++) free(m->vals[i]);
  free(m->ids);
  free(m->vals);
}

static int bi_grow(void **p, size_t elem, size_t cap) {
  void *q = realloc(*p, elem * cap);
  if (!q) return -1;
  *p = q;
  return 0;
}

/* Reads every record of path into memory, decodes it once for its ids, and
 * replays the feature arithmetic (outside any timing) to learn the size of
 * the user and item values mtld writes after each event.  Returns 0, or -1
 * with err set (a record that does not decode is an error: the benchmark
 * wants a clean stream). */
static int bi_stream_load(bi_stream_t *s, const char *path, char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  mtld_eventfile_t *f;
  if (mtld_eventfile_open(&f, path, MTLD_FMT_AUTO, err, errlen) != MTLD_OK) return -1;
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  bi_map_t users = {0}, items = {0};
  size_t cap = 0, dcap = 0;
  int rc = -1;
  uint8_t *enc = malloc(MTLD_FEATURES_USER_ENC_MAX);
  s->user_fill = calloc(1, MTLD_FEATURES_USER_ENC_MAX);
  s->item_fill = calloc(1, MTLD_FEATURES_ITEM_ENC_MAX);
  if (!enc || !s->user_fill || !s->item_fill) goto oom;
  uint32_t max_user_len = 0, max_item_len = 0;
  for (;;) {
    const void *buf;
    size_t len;
    int64_t index;
    int got = mtld_eventfile_next(f, &buf, &len, &index, err, errlen);
    if (got < 0) goto out;
    if (got == 0) break;
    if (s->n == cap) {
      cap = cap ? 2 * cap : 65536;
      if (bi_grow((void **)&s->off, sizeof *s->off, cap) ||
          bi_grow((void **)&s->len, sizeof *s->len, cap) ||
          bi_grow((void **)&s->user, sizeof *s->user, cap) ||
          bi_grow((void **)&s->item, sizeof *s->item, cap) ||
          bi_grow((void **)&s->user_vlen, sizeof *s->user_vlen, cap) ||
          bi_grow((void **)&s->item_vlen, sizeof *s->item_vlen, cap))
        goto oom;
    }
    while (s->bytes + len > dcap) {
      dcap = dcap ? 2 * dcap : (size_t)8 << 20;
      if (bi_grow((void **)&s->data, 1, dcap)) goto oom;
    }
    memcpy(s->data + s->bytes, buf, len);
    s->off[s->n] = s->bytes;
    s->len[s->n] = len;
    s->bytes += len;

    mtld_event_t ev;
    char msg[256];
    mtld_reject_t r = mtld_decode_event(buf, len, MTLD_FMT_AUTO, 65536, &ev, msg, sizeof msg);
    if (r != MTLD_REJECT_NONE) {
      snprintf(err, errlen, "record %" PRId64 " does not decode (%s: %s); use a clean stream",
               index, mtld_reject_name(r), msg);
      goto out;
    }
    mtld_user_features_t *u = bi_map_get(&users, ev.user_id, sizeof *u);
    mtld_item_features_t *it = bi_map_get(&items, ev.item_id, sizeof *it);
    if (!u || !it) goto oom;
    mtld_features_user_apply(&def, u, &ev);
    mtld_features_item_apply(&def, it, &ev);
    size_t ul = mtld_features_user_encode(&def, u, enc, MTLD_FEATURES_USER_ENC_MAX);
    if (ul > max_user_len) {
      max_user_len = (uint32_t)ul;
      memcpy(s->user_fill, enc, ul);
    }
    size_t il = mtld_features_item_encode(&def, it, enc, MTLD_FEATURES_ITEM_ENC_MAX);
    if (il > max_item_len) {
      max_item_len = (uint32_t)il;
      memcpy(s->item_fill, enc, il);
    }
    s->user[s->n] = ev.user_id;
    s->item[s->n] = ev.item_id;
    s->user_vlen[s->n] = (uint32_t)ul;
    s->item_vlen[s->n] = (uint32_t)il;
    s->n++;
  }
  if (s->n == 0) {
    snprintf(err, errlen, "%s holds no records", path);
    goto out;
  }
  s->n_users = users.n;
  s->n_items = items.n;
  rc = 0;
  goto out;
oom:
  snprintf(err, errlen, "out of memory");
out:
  free(enc);
  bi_map_free(&users);
  bi_map_free(&items);
  mtld_eventfile_close(f);
  return rc;
}

static void bi_stream_free(bi_stream_t *s) {
  free(s->data);
  free(s->off);
  free(s->len);
  free(s->user);
  free(s->item);
  free(s->user_vlen);
  free(s->item_vlen);
  free(s->user_fill);
  free(s->item_fill);
}

/* ---- temp dirs ----------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

static void rm_tree(const char *path) {
  nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- (a) the store path -------------------------------------------------- */

/* Fills *secs with the time of the whole loop, *commit_s with the part of it
 * spent in mtld_store_commit (the writes; the rest is decoding, validation
 * and apply, which reads the store).  Returns 0, or -1 with err. */
static int bench_store(const bi_stream_t *s, const char *dir, int sync, size_t batch, double *secs,
                       double *commit_s, char *err, size_t errlen) {
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  mtld_validate_limits_t lim;
  mtld_validate_limits_default(&lim);
  mtld_store_t *st;
  if (mtld_store_open(&st, dir, &def, sync, err, errlen) != MTLD_OK) return -1;
  mtld_watermark_t *wm;
  if (mtld_watermark_create(&wm, 60000, 0) != MTLD_OK) {
    snprintf(err, errlen, "watermark: out of memory");
    mtld_store_close(st);
    return -1;
  }
  mtld_user_features_t *ub = malloc(sizeof *ub);
  mtld_item_features_t *ib = malloc(sizeof *ib);
  int rc = -1;
  if (!ub || !ib) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  size_t staged = 0, rejected = 0;
  char msg[256];
  double t0 = now_s(), in_commit = 0;
  for (size_t i = 0; i < s->n; i++) {
    mtld_event_t ev;
    mtld_reject_t r = mtld_decode_event(s->data + s->off[i], s->len[i], MTLD_FMT_AUTO,
                                        lim.max_record_bytes, &ev, msg, sizeof msg);
    if (r == MTLD_REJECT_NONE)
      r = mtld_validate_event(&ev, &lim, mtld_watermark_get(wm), mtld_watermark_newest(wm), msg,
                              sizeof msg);
    if (r != MTLD_REJECT_NONE) {
      rejected++;
    } else {
      if (mtld_store_apply(st, &ev, ub, ib) != MTLD_OK) {
        snprintf(err, errlen, "apply: %s", mtld_store_last_error(st));
        goto out;
      }
      mtld_watermark_observe(wm, BI_TOPIC, 0, ev.time_ms);
    }
    mtld_store_set_offset(st, BI_TOPIC, 0, (int64_t)i + 1,
                          mtld_watermark_max_time(wm, BI_TOPIC, 0));
    if (++staged == batch || i + 1 == s->n) {
      double tc = now_s();
      if (mtld_store_commit(st, err, errlen) != MTLD_OK) goto out;
      in_commit += now_s() - tc;
      staged = 0;
    }
  }
  *secs = now_s() - t0;
  *commit_s = in_commit;
  int64_t next = 0, max_time;
  if (rejected) {
    snprintf(err, errlen, "%zu records rejected (expected none)", rejected);
  } else if (mtld_store_get_offset(st, BI_TOPIC, 0, &next, &max_time) != MTLD_OK ||
             next != (int64_t)s->n) {
    snprintf(err, errlen, "stored offset %" PRId64 ", expected %zu", next, s->n);
  } else {
    rc = 0;
  }
out:
  free(ub);
  free(ib);
  mtld_watermark_destroy(wm);
  mtld_store_close(st);
  return rc;
}

/* ---- (b) the raw RocksDB reference ---------------------------------------- */

static int bench_rocksdb(const bi_stream_t *s, const char *dir, int sync, size_t batch,
                         double *secs, char *err, size_t errlen) {
  /* the store's options: defaults, a 64 MiB LRU block cache, 5 info logs,
   * the same five column families */
  static const char *const names[] = {"default", "user", "item", "pending", "meta"};
  enum { N = 5 };
  rocksdb_cache_t *cache = rocksdb_cache_create_lru((size_t)64 << 20);
  rocksdb_block_based_table_options_t *bbto = rocksdb_block_based_options_create();
  rocksdb_block_based_options_set_block_cache(bbto, cache);
  rocksdb_options_t *opts = rocksdb_options_create();
  rocksdb_options_set_block_based_table_factory(opts, bbto);
  rocksdb_options_set_create_if_missing(opts, 1);
  rocksdb_options_set_create_missing_column_families(opts, 1);
  rocksdb_options_set_keep_log_file_num(opts, 5);
  const rocksdb_options_t *cf_opts[N];
  for (int i = 0; i < N; i++) cf_opts[i] = opts;
  rocksdb_column_family_handle_t *cf[N] = {0};
  char *e = NULL;
  int rc = -1;
  rocksdb_t *db = rocksdb_open_column_families(opts, dir, N, names, cf_opts, cf, &e);
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(wo, sync ? 1 : 0);
  rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
  if (e) {
    snprintf(err, errlen, "rocksdb open %s: %s", dir, e);
    rocksdb_free(e);
    db = NULL;
    goto out;
  }
  char okey[64];
  int oklen = snprintf(okey, sizeof okey, "offset/%s/%d", BI_TOPIC, 0);
  uint8_t oval[17] = {1};
  size_t staged = 0;
  double t0 = now_s();
  for (size_t i = 0; i < s->n; i++) {
    uint8_t k[8];
    put_be64(k, s->user[i]);
    rocksdb_writebatch_put_cf(wb, cf[1], (const char *)k, 8, (const char *)s->user_fill,
                              s->user_vlen[i]);
    put_be64(k, s->item[i]);
    rocksdb_writebatch_put_cf(wb, cf[2], (const char *)k, 8, (const char *)s->item_fill,
                              s->item_vlen[i]);
    if (++staged == batch || i + 1 == s->n) {
      for (int b = 0; b < 8; b++) oval[1 + b] = (uint8_t)((uint64_t)(i + 1) >> (8 * b));
      rocksdb_writebatch_put_cf(wb, cf[4], okey, (size_t)oklen, (const char *)oval, sizeof oval);
      rocksdb_write(db, wo, wb, &e);
      if (e) {
        snprintf(err, errlen, "rocksdb write: %s", e);
        rocksdb_free(e);
        goto out;
      }
      rocksdb_writebatch_clear(wb);
      staged = 0;
    }
  }
  *secs = now_s() - t0;
  rc = 0;
out:
  rocksdb_writebatch_destroy(wb);
  rocksdb_writeoptions_destroy(wo);
  for (int i = 0; i < N; i++)
    if (cf[i]) rocksdb_column_family_handle_destroy(cf[i]);
  if (db) rocksdb_close(db);
  rocksdb_options_destroy(opts);
  rocksdb_block_based_options_destroy(bbto);
  rocksdb_cache_destroy(cache);
  return rc;
}

/* ---- (c) Kafka ------------------------------------------------------------ */

typedef struct {
  rd_kafka_t *host; /* hosts the mock cluster */
  rd_kafka_mock_cluster_t *mc;
  char bootstrap[512];
} bi_mock_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  if (m->err) (*(size_t *)opaque)++;
}

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen) {
  char e[512];
  if (rd_kafka_conf_set(conf, k, v, e, sizeof e) != RD_KAFKA_CONF_OK) {
    snprintf(err, errlen, "%s: %s", k, e);
    return -1;
  }
  return 0;
}

/* Starts a one-broker mock cluster with the topic, produces every record
 * (key: the user id in decimal, as mtld-gen --kafka does; murmur2_random
 * partitioner, acks=all, linger.ms=5: mtld-gen's settings), and checks that
 * the cluster kept them all. */
static int kafka_setup(bi_mock_t *m, const bi_stream_t *s, double *produce_s, char *err,
                       size_t errlen) {
  memset(m, 0, sizeof *m);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (conf_set(conf, "log_level", "3", err, errlen)) {
    rd_kafka_conf_destroy(conf);
    return -1;
  }
  char e[512];
  m->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
  if (!m->host) {
    snprintf(err, errlen, "rd_kafka_new: %s", e);
    rd_kafka_conf_destroy(conf);
    return -1;
  }
  m->mc = rd_kafka_mock_cluster_new(m->host, 1);
  if (!m->mc) {
    snprintf(err, errlen, "cannot create a mock cluster");
    return -1;
  }
  rd_kafka_resp_err_t re = rd_kafka_mock_topic_create(m->mc, BI_TOPIC, BI_PARTITIONS, 1);
  if (re) {
    snprintf(err, errlen, "topic %s: %s", BI_TOPIC, rd_kafka_err2str(re));
    return -1;
  }
  snprintf(m->bootstrap, sizeof m->bootstrap, "%s", rd_kafka_mock_cluster_bootstraps(m->mc));

  size_t failed = 0;
  conf = rd_kafka_conf_new();
  if (conf_set(conf, "bootstrap.servers", m->bootstrap, err, errlen) ||
      conf_set(conf, "partitioner", "murmur2_random", err, errlen) ||
      conf_set(conf, "acks", "all", err, errlen) || conf_set(conf, "linger.ms", "5", err, errlen)) {
    rd_kafka_conf_destroy(conf);
    return -1;
  }
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_opaque(conf, &failed);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
  if (!p) {
    snprintf(err, errlen, "producer: %s", e);
    rd_kafka_conf_destroy(conf);
    return -1;
  }
  int rc = -1;
  double t0 = now_s();
  for (size_t i = 0; i < s->n; i++) {
    char key[24];
    int kn = snprintf(key, sizeof key, "%" PRIu64, s->user[i]);
    for (;;) {
      re = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(BI_TOPIC), RD_KAFKA_V_MSGFLAGS(0),
                             RD_KAFKA_V_KEY(key, (size_t)kn),
                             RD_KAFKA_V_VALUE(s->data + s->off[i], s->len[i]), RD_KAFKA_V_END);
      if (re != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
      rd_kafka_poll(p, 100);
    }
    if (re) {
      snprintf(err, errlen, "produce: %s", rd_kafka_err2str(re));
      goto out;
    }
    rd_kafka_poll(p, 0);
  }
  if (rd_kafka_flush(p, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR || failed) {
    snprintf(err, errlen, "produce: %zu records not delivered", failed);
    goto out;
  }
  *produce_s = now_s() - t0;
  int64_t total = 0;
  for (int part = 0; part < BI_PARTITIONS; part++) {
    int64_t lo, hi;
    re = rd_kafka_query_watermark_offsets(p, BI_TOPIC, part, &lo, &hi, 10000);
    if (re) {
      snprintf(err, errlen, "watermarks of partition %d: %s", part, rd_kafka_err2str(re));
      goto out;
    }
    if (lo != 0) {
      snprintf(err, errlen,
               "the mock cluster dropped the head of partition %d (low watermark %" PRId64
               "): use a smaller stream",
               part, lo);
      goto out;
    }
    total += hi;
  }
  if (total != (int64_t)s->n) {
    snprintf(err, errlen, "topic holds %" PRId64 " records, produced %zu", total, s->n);
    goto out;
  }
  rc = 0;
out:
  rd_kafka_destroy(p);
  return rc;
}

static void kafka_teardown(bi_mock_t *m) {
  if (m->mc) rd_kafka_mock_cluster_destroy(m->mc);
  if (m->host) rd_kafka_destroy(m->host);
}

/* Consumer properties both Kafka paths share (the integration tests' ones). */
static const char *const bi_kafka_props[][2] = {{"auto.offset.reset", "earliest"},
                                                {"session.timeout.ms", "6000"},
                                                {"heartbeat.interval.ms", "500"}};
#define BI_N_KAFKA_PROPS (sizeof bi_kafka_props / sizeof bi_kafka_props[0])

/* Notes when the partitions were assigned, and assigns them (eager
 * protocol, librdkafka's default assignors, as for mtld's consumer). */
static void raw_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *parts, void *opaque) {
  double *t_assigned = opaque;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (*t_assigned == 0) *t_assigned = now_s();
    rd_kafka_assign(rk, parts);
  } else {
    rd_kafka_assign(rk, NULL);
  }
}

/* A plain consumer joins its own group, as mtld's does, and reads all n
 * records (each payload's bytes are summed, so they are touched).  *secs:
 * assignment to the last record; *join_s: creation to assignment. */
static int bench_consumer(const char *bootstrap, const char *group, size_t n, double *secs,
                          double *join_s, char *err, size_t errlen) {
  double t_assigned = 0;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (conf_set(conf, "bootstrap.servers", bootstrap, err, errlen) ||
      conf_set(conf, "group.id", group, err, errlen)) {
    rd_kafka_conf_destroy(conf);
    return -1;
  }
  for (size_t i = 0; i < BI_N_KAFKA_PROPS; i++)
    if (conf_set(conf, bi_kafka_props[i][0], bi_kafka_props[i][1], err, errlen)) {
      rd_kafka_conf_destroy(conf);
      return -1;
    }
  rd_kafka_conf_set_rebalance_cb(conf, raw_rebalance_cb);
  rd_kafka_conf_set_opaque(conf, &t_assigned);
  char e[512];
  double t_create = now_s();
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
  if (!rk) {
    snprintf(err, errlen, "consumer: %s", e);
    rd_kafka_conf_destroy(conf);
    return -1;
  }
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(tl, BI_TOPIC, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t re = rd_kafka_subscribe(rk, tl);
  rd_kafka_topic_partition_list_destroy(tl);
  int rc = -1;
  if (re) {
    snprintf(err, errlen, "subscribe: %s", rd_kafka_err2str(re));
    goto out;
  }
  size_t got = 0;
  uint64_t sum = 0;
  double t_progress = now_s();
  while (got < n) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (!m) {
      if (now_s() - t_progress > BI_STALL_S) {
        snprintf(err, errlen, "raw consumer stalled at %zu of %zu records", got, n);
        goto out;
      }
      continue;
    }
    if (!m->err) {
      const unsigned char *b = m->payload;
      for (size_t i = 0; i < m->len; i++) sum += b[i];
      got++;
      t_progress = now_s();
    }
    rd_kafka_message_destroy(m);
  }
  *secs = now_s() - t_assigned;
  *join_s = t_assigned - t_create;
  rc = sum ? 0 : -1;
  if (rc) snprintf(err, errlen, "empty payloads");
out:
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return rc;
}

/* The pipeline's source hooks, forwarded, noting when the first partition
 * was assigned (the group join is over: the timed part starts). */
typedef struct {
  mtld_source_hooks_t inner;
  double t_assigned;
} bi_hooks_t;

static mtld_status_t fw_resume(void *ctx, const char *topic, int32_t partition, int64_t *next,
                               int64_t *max_time_ms) {
  bi_hooks_t *h = ctx;
  return h->inner.resume(h->inner.ctx, topic, partition, next, max_time_ms);
}

static void fw_revoke_begin(void *ctx, int lost) {
  bi_hooks_t *h = ctx;
  h->inner.revoke_begin(h->inner.ctx, lost);
}

static void fw_revoke_partition(void *ctx, const char *topic, int32_t partition) {
  bi_hooks_t *h = ctx;
  h->inner.revoke_partition(h->inner.ctx, topic, partition);
}

static void fw_assigned(void *ctx, const char *topic, int32_t partition, int64_t max_time_ms) {
  bi_hooks_t *h = ctx;
  if (h->t_assigned == 0) h->t_assigned = now_s();
  h->inner.assigned(h->inner.ctx, topic, partition, max_time_ms);
}

static void kv_set(mtld_config_t *cfg, const char *name, const char *value) {
  int i = 0;
  while (i < cfg->n_kafka && strcmp(cfg->kafka[i].name, name) != 0) i++;
  if (i == cfg->n_kafka) {
    if (i == MTLD_MAX_KAFKA_PROPS) return;
    cfg->n_kafka++;
  }
  snprintf(cfg->kafka[i].name, sizeof cfg->kafka[i].name, "%s", name);
  snprintf(cfg->kafka[i].value, sizeof cfg->kafka[i].value, "%s", value);
}

/* mtld's full path, as the daemon's main loop runs it: poll up to 512
 * records, process each, commit when the batch is due; until all n records
 * are processed, then a last commit.  Checks the pipeline's counters. */
static int bench_mtld_kafka(const char *bootstrap, const char *group, const char *dir, int sync,
                            size_t n, double *secs, double *join_s, char *err, size_t errlen) {
  mtld_config_t *cfg = malloc(sizeof *cfg);
  mtld_record_t *recs = malloc(512 * sizeof *recs);
  if (!cfg || !recs) {
    free(cfg);
    free(recs);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  mtld_config_default(cfg);
  cfg->source_type = MTLD_SOURCE_KAFKA;
  snprintf(cfg->topics[0], sizeof cfg->topics[0], "%s", BI_TOPIC);
  cfg->n_topics = 1;
  kv_set(cfg, "bootstrap.servers", bootstrap);
  kv_set(cfg, "group.id", group);
  for (size_t i = 0; i < BI_N_KAFKA_PROPS; i++)
    kv_set(cfg, bi_kafka_props[i][0], bi_kafka_props[i][1]);
  snprintf(cfg->store_path, sizeof cfg->store_path, "%s", dir);
  cfg->store_sync = sync;
  cfg->trainer_enabled = 0;
  cfg->metrics_enabled = 0;
  cfg->dead_letter_topic[0] = 0;
  cfg->dump_samples[0] = 0;

  mtld_pipeline_t *p = NULL;
  mtld_store_t *store = NULL;
  mtld_watermark_t *wm = NULL;
  mtld_source_t *src = NULL;
  int rc = -1;
  double t_create = now_s();
  if (mtld_store_open(&store, cfg->store_path, &cfg->features, cfg->store_sync, err, errlen) !=
          MTLD_OK ||
      mtld_watermark_create(&wm, cfg->allowed_lateness_ms, cfg->idle_ms) != MTLD_OK ||
      mtld_pipeline_new(&p, cfg, store, wm, err, errlen) != MTLD_OK)
    goto out;
  bi_hooks_t fw = {.inner = mtld_pipeline_hooks(p)};
  mtld_source_hooks_t hooks = {.resume = fw_resume,
                               .revoke_begin = fw_revoke_begin,
                               .revoke_partition = fw_revoke_partition,
                               .assigned = fw_assigned,
                               .ctx = &fw};
  if (mtld_source_kafka_new(&src, cfg, &hooks, err, errlen) != MTLD_OK) goto out;
  mtld_pipeline_set_source(p, src);
  mtld_pipeline_stats_t stats = {0};
  double t_progress = now_s();
  while (stats.records < n) {
    int k = mtld_source_poll(src, recs, 512, 100, err, errlen);
    if (k < 0) goto out;
    if (k == 0 && now_s() - t_progress > BI_STALL_S) {
      snprintf(err, errlen, "mtld stalled at %" PRIu64 " of %zu records", stats.records, n);
      goto out;
    }
    if (k > 0) t_progress = now_s();
    for (int i = 0; i < k; i++) mtld_pipeline_process(p, &recs[i]);
    if (mtld_pipeline_batch_due(p) && mtld_pipeline_commit(p, err, errlen) != MTLD_OK) goto out;
    mtld_pipeline_stats(p, &stats);
  }
  if (mtld_pipeline_commit(p, err, errlen) != MTLD_OK) goto out;
  double t_last = now_s();
  *secs = t_last - fw.t_assigned;
  *join_s = fw.t_assigned - t_create;
  mtld_pipeline_stats(p, &stats);
  if (fw.t_assigned == 0)
    snprintf(err, errlen, "records consumed without an assignment");
  else if (stats.records != n || stats.events != n || stats.rejected != 0)
    snprintf(err, errlen,
             "pipeline counted %" PRIu64 " records, %" PRIu64 " events, %" PRIu64
             " rejected; expected %zu, %zu, 0",
             stats.records, stats.events, stats.rejected, n, n);
  else
    rc = 0;
out:
  mtld_source_close(src); /* leaves the group; the revoke hook commits nothing new */
  if (p) mtld_pipeline_set_source(p, NULL);
  mtld_pipeline_free(p);
  mtld_watermark_destroy(wm);
  mtld_store_close(store);
  free(recs);
  free(cfg);
  return rc;
}

/* ---- main ----------------------------------------------------------------- */

typedef struct {
  const char *name;
  double secs[BI_MAX_REPS];
  double aside[BI_MAX_REPS]; /* store: time in commit; Kafka: group join */
  int n;
} bi_result_t;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median time of the repetitions (the middle one; the mean of the two
 * middle ones for an even count). */
static double median(const double *v, int n) {
  double t[BI_MAX_REPS];
  memcpy(t, v, sizeof(double) * (size_t)n);
  qsort(t, (size_t)n, sizeof(double), cmp_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static double minmax(const double *v, int n, int want_max) {
  double r = v[0];
  for (int i = 1; i < n; i++)
    if (want_max ? v[i] > r : v[i] < r) r = v[i];
  return r;
}

static void print_row(const bi_result_t *r, size_t n_events) {
  if (r->n == 0) return;
  double med = median(r->secs, r->n);
  /* the fastest run is the highest rate */
  printf("%-38s %12.0f  %10.0f .. %-10.0f %8.3f s\n", r->name, (double)n_events / med,
         (double)n_events / minmax(r->secs, r->n, 1), (double)n_events / minmax(r->secs, r->n, 0),
         med);
}

static void print_ratio(const char *name, const bi_result_t *mtld, const bi_result_t *ref) {
  if (mtld->n == 0 || ref->n == 0) return;
  /* events/s ratio = reference time / mtld time */
  printf("%-38s %12.3f\n", name, median(ref->secs, ref->n) / median(mtld->secs, mtld->n));
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: bench_ingest --events FILE [--reps N] [--batch B] [--dir DIR]\n"
          "                    [--kafka-sync off|on|both] [--no-kafka]\n"
          "  --events FILE   event file (mtld-gen --out FILE); read into memory first\n"
          "  --reps N        repetitions of every measurement, median reported (default 3)\n"
          "  --batch B       records per commit (default 2000, the daemon's default)\n"
          "  --dir DIR       where the temporary stores go (default $TMPDIR or /tmp)\n"
          "  --kafka-sync S  store.sync of mtld's Kafka path (default on, the daemon's default)\n"
          "  --no-kafka      skip (c)\n");
}

int main(int argc, char **argv) {
  const char *events = NULL, *base = getenv("TMPDIR");
  int reps = 3, kafka = 1, ksync_off = 0, ksync_on = 1;
  long batch = 2000;
  if (!base || !*base) base = "/tmp";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(a, "--no-kafka") == 0) {
      kafka = 0;
      continue;
    }
    if (!v) {
      fprintf(stderr, "bench_ingest: %s needs a value (or is unknown)\n", a);
      usage(stderr);
      return 2;
    }
    i++;
    if (strcmp(a, "--events") == 0) {
      events = v;
    } else if (strcmp(a, "--reps") == 0) {
      reps = atoi(v);
      if (reps < 1 || reps > BI_MAX_REPS) {
        fprintf(stderr, "bench_ingest: --reps: 1..%d\n", BI_MAX_REPS);
        return 2;
      }
    } else if (strcmp(a, "--batch") == 0) {
      batch = atol(v);
      if (batch < 1) {
        fprintf(stderr, "bench_ingest: --batch: at least 1\n");
        return 2;
      }
    } else if (strcmp(a, "--dir") == 0) {
      base = v;
    } else if (strcmp(a, "--kafka-sync") == 0) {
      ksync_off = strcmp(v, "off") == 0 || strcmp(v, "both") == 0;
      ksync_on = strcmp(v, "on") == 0 || strcmp(v, "both") == 0;
      if (!ksync_off && !ksync_on) {
        fprintf(stderr, "bench_ingest: --kafka-sync: off, on or both\n");
        return 2;
      }
    } else {
      fprintf(stderr, "bench_ingest: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!events) {
    fprintf(stderr, "bench_ingest: --events FILE is required\n");
    usage(stderr);
    return 2;
  }
  mtld_log_init();
  mtld_log_set_level(MTLD_LOG_WARNING);

  char err[1024];
  bi_stream_t s;
  double t0 = now_s();
  if (bi_stream_load(&s, events, err, sizeof err) != 0) {
    fprintf(stderr, "bench_ingest: %s: %s\n", events, err);
    bi_stream_free(&s);
    return 1;
  }
  printf("bench_ingest: %zu events (%.1f MiB of records; %zu users, %zu items) from %s, "
         "loaded in %.2f s\n",
         s.n, (double)s.bytes / (1 << 20), s.n_users, s.n_items, events, now_s() - t0);
  double uv = 0, iv = 0;
  for (size_t i = 0; i < s.n; i++) {
    uv += s.user_vlen[i];
    iv += s.item_vlen[i];
  }
  printf("bench_ingest: encoded feature values after each event: user %.0f B, item %.0f B "
         "(means; the raw RocksDB loop puts these sizes per event)\n",
         uv / (double)s.n, iv / (double)s.n);
  printf("bench_ingest: batch %ld records, %d repetitions (median; range = slowest .. fastest)\n",
         batch, reps);
  fflush(stdout);

  char root[900], dir[1000];
  if (snprintf(root, sizeof root, "%s/bench_ingest.XXXXXX", base) >= (int)sizeof root) {
    fprintf(stderr, "bench_ingest: --dir: path too long\n");
    bi_stream_free(&s);
    return 2;
  }
  if (!mkdtemp(root)) {
    fprintf(stderr, "bench_ingest: mkdtemp %s: %s\n", root, strerror(errno));
    bi_stream_free(&s);
    return 1;
  }

  bi_result_t r_store[2] = {{"(a) mtld store path, sync=off"}, {"(a) mtld store path, sync=on"}};
  bi_result_t r_raw[2] = {{"(b) raw RocksDB batches, sync=off"},
                          {"(b) raw RocksDB batches, sync=on"}};
  bi_result_t r_cons = {"(c) raw librdkafka consumer"};
  bi_result_t r_kmtld[2] = {{"(c) mtld Kafka full path, sync=off"},
                            {"(c) mtld Kafka full path, sync=on"}};
  int rc = 1;
  int run = 0;

  /* (a) and (b), interleaved so that drift hits both alike */
  for (int rep = 0; rep < reps; rep++) {
    for (int sync = 0; sync <= 1; sync++) {
      double secs, commit_s;
      snprintf(dir, sizeof dir, "%s/run%d", root, run++);
      if (bench_store(&s, dir, sync, (size_t)batch, &secs, &commit_s, err, sizeof err) != 0) {
        fprintf(stderr, "bench_ingest: store path: %s\n", err);
        goto out;
      }
      rm_tree(dir);
      r_store[sync].aside[r_store[sync].n] = commit_s;
      r_store[sync].secs[r_store[sync].n++] = secs;
      snprintf(dir, sizeof dir, "%s/run%d", root, run++);
      if (bench_rocksdb(&s, dir, sync, (size_t)batch, &secs, err, sizeof err) != 0) {
        fprintf(stderr, "bench_ingest: raw rocksdb: %s\n", err);
        goto out;
      }
      rm_tree(dir);
      r_raw[sync].secs[r_raw[sync].n++] = secs;
    }
  }

  /* (c) */
  if (kafka) {
    bi_mock_t mock;
    double produce_s = 0;
    if (kafka_setup(&mock, &s, &produce_s, err, sizeof err) != 0) {
      fprintf(stderr, "bench_ingest: kafka: %s\n", err);
      kafka_teardown(&mock);
      goto out;
    }
    printf("bench_ingest: produced %zu records to %s (%d partitions, 1 mock broker) in %.2f s\n",
           s.n, BI_TOPIC, BI_PARTITIONS, produce_s);
    fflush(stdout);
    for (int rep = 0; rep < reps; rep++) {
      char group[64];
      double secs, join;
      snprintf(group, sizeof group, "bench-raw-%d", rep);
      if (bench_consumer(mock.bootstrap, group, s.n, &secs, &join, err, sizeof err) != 0) {
        fprintf(stderr, "bench_ingest: raw consumer: %s\n", err);
        kafka_teardown(&mock);
        goto out;
      }
      r_cons.aside[r_cons.n] = join;
      r_cons.secs[r_cons.n++] = secs;
      for (int sync = 0; sync <= 1; sync++) {
        if (!(sync ? ksync_on : ksync_off)) continue;
        snprintf(group, sizeof group, "bench-mtld-%d-%d", sync, rep);
        snprintf(dir, sizeof dir, "%s/run%d", root, run++);
        if (bench_mtld_kafka(mock.bootstrap, group, dir, sync, s.n, &secs, &join, err,
                             sizeof err) != 0) {
          fprintf(stderr, "bench_ingest: mtld kafka path: %s\n", err);
          kafka_teardown(&mock);
          goto out;
        }
        rm_tree(dir);
        r_kmtld[sync].aside[r_kmtld[sync].n] = join;
        r_kmtld[sync].secs[r_kmtld[sync].n++] = secs;
      }
    }
    kafka_teardown(&mock);
  }

  printf("\n%-38s %12s  %-24s %10s\n", "path", "events/s", "range events/s", "median t");
  for (int sync = 0; sync <= 1; sync++) {
    print_row(&r_store[sync], s.n);
    print_row(&r_raw[sync], s.n);
  }
  print_row(&r_cons, s.n);
  for (int sync = 0; sync <= 1; sync++) print_row(&r_kmtld[sync], s.n);
  printf("\n%-38s %12s\n", "ratio (events/s, medians)", "mtld/ref");
  print_ratio("store path / raw RocksDB, sync=off", &r_store[0], &r_raw[0]);
  print_ratio("store path / raw RocksDB, sync=on", &r_store[1], &r_raw[1]);
  print_ratio("Kafka full path sync=off / raw consumer", &r_kmtld[0], &r_cons);
  print_ratio("Kafka full path sync=on / raw consumer", &r_kmtld[1], &r_cons);
  printf("\n(a) of which in mtld_store_commit (median): sync=off %.3f s, sync=on %.3f s\n",
         median(r_store[0].aside, r_store[0].n), median(r_store[1].aside, r_store[1].n));
  if (r_cons.n) {
    printf("group join (not in the rates; median): raw consumer %.2f s",
           median(r_cons.aside, r_cons.n));
    for (int sync = 0; sync <= 1; sync++)
      if (r_kmtld[sync].n)
        printf(", mtld sync=%s %.2f s", sync ? "on" : "off",
               median(r_kmtld[sync].aside, r_kmtld[sync].n));
    printf("\n");
  }
  rc = 0;
out:
  rm_tree(root);
  bi_stream_free(&s);
  return rc;
}
