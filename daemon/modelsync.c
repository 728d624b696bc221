/* modelsync.c - the shared model's deltas and bases through a Kafka topic
 * (see modelsync.h). */
#include "daemon/modelsync.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/hash.h"
#include "daemon/deadletter.h"
#include "daemon/log.h"
#include "daemon/syncframe.h"
#include "trainer/delta.h"

#define FRAME_BYTES MTLD_SYNCFRAME_BYTES
#define CHUNK_BYTES (512u * 1024u)
#define CATCHUP_MS 60000
#define LOCAL_FIELDS (1ull << MTLD_FIELD_USER) /* user rows live with their partition */

enum { PASS_FIND_BASE = 0, PASS_REPLAY = 1, LIVE = 2 };

struct mtld_modelsync {
  char topic[256];
  int64_t sync_ms, base_ms, jitter_ms;
  mtld_trainer_t *t;
  mtld_trainfeed_t *feed;
  mtld_delta_t *delta;
  uint64_t shape, id, seq;
  unsigned delta_flags; /* mtld_delta_new flags (scaleout.sync_accumulators) */
  rd_kafka_t *prod, *cons;
  mtld_syncframe_asm_t asm_;
  uint8_t *frame;
  int64_t consumed; /* offset of the last message consumed, -1 */
  int64_t last_pub_mono, last_base_seen_mono;
  /* catch-up: the latest complete base */
  uint8_t *cu_base;
  size_t cu_len;
  mtld_syncframe_msg_t cu; /* its marks (cu.buf unused) */
  int64_t cu_last_offset;
  /* statistics */
  uint64_t rounds, bases, applied, ign_shape, ign_corrupt, ign_chunks, ign_version, sent_bytes,
      failed;
  uint64_t last_rows, delta_bytes;
  size_t last_bytes;
  double last_ms, last_div, apply_ms, round_ms;
  int64_t last_round_mono;
};

/* ---- applying --------------------------------------------------------------- */

static void apply(mtld_modelsync_t *ms, const uint8_t *buf, size_t len, uint64_t sender) {
  char err[256];
  int64_t t0 = mtld_mono_ms();
  mtld_trainfeed_lock(ms->feed);
  mtld_status_t st = mtld_delta_apply(ms->delta, buf, len, err, sizeof(err));
  mtld_trainfeed_unlock(ms->feed);
  ms->apply_ms += (double)(mtld_mono_ms() - t0);
  if (st == MTLD_OK) {
    ms->applied++;
  } else if (st == MTLD_ERR_SCHEMA && strstr(err, "version")) {
    ms->ign_version++;
    mtld_log_rl(MTLD_LOG_WARNING, "modelsync-version",
                "scaleout: ignoring instance %016" PRIx64 ": %s", sender, err);
  } else if (st == MTLD_ERR_SCHEMA) {
    ms->ign_shape++;
    mtld_log_rl(MTLD_LOG_WARNING, "modelsync-shape",
                "scaleout: ignoring instance %016" PRIx64 ": %s", sender, err);
  } else {
    ms->ign_corrupt++;
    mtld_log_rl(MTLD_LOG_WARNING, "modelsync-corrupt",
                "scaleout: ignoring a message of instance %016" PRIx64 ": %s", sender, err);
  }
}

static void complete(mtld_modelsync_t *ms, const mtld_syncframe_msg_t *msg, int mode) {
  if (mode == PASS_FIND_BASE) {
    if (msg->kind != MTLD_DELTA_BASE) return;
    free(ms->cu_base);
    ms->cu_base = malloc(msg->len);
    if (!ms->cu_base) return;
    memcpy(ms->cu_base, msg->buf, msg->len);
    ms->cu_len = msg->len;
    ms->cu = *msg;
    ms->cu.buf = NULL;
    ms->cu_last_offset = msg->last_offset;
    return;
  }
  if (msg->kind == MTLD_DELTA_BASE) {
    if (mode == LIVE) ms->last_base_seen_mono = mtld_mono_ms();
    return;
  }
  /* what the base's author had applied (or sent) before its base is in it */
  if (mode == PASS_REPLAY && ms->cu_base &&
      mtld_syncframe_in_base(&ms->cu, ms->cu_last_offset, msg->sender, msg->last_offset))
    return;
  apply(ms, msg->buf, msg->len, msg->sender);
}

static void on_message(mtld_modelsync_t *ms, const rd_kafka_message_t *m, int mode) {
  ms->consumed = m->offset;
  const uint8_t *v = m->payload;
  mtld_syncframe_t h;
  int r = v ? mtld_syncframe_get(v, m->len, &h) : -1;
  if (r == -2) {
    ms->ign_version++;
    mtld_log_rl(MTLD_LOG_WARNING, "modelsync-version",
                "scaleout: ignoring a model message of another format version (%.8s, ours %s)",
                (const char *)v, MTLD_SYNCFRAME_MAGIC);
    return;
  }
  if (r != 0) {
    ms->ign_corrupt++;
    return;
  }
  if (h.sender == ms->id) { /* our own: in our model already */
    if (h.kind == MTLD_DELTA_BASE && h.chunk + 1 == h.n) ms->last_base_seen_mono = mtld_mono_ms();
    return;
  }
  if (h.shape != ms->shape) {
    if (h.chunk == 0) {
      ms->ign_shape++;
      mtld_log_rl(MTLD_LOG_WARNING, "modelsync-shape",
                  "scaleout: ignoring instance %016" PRIx64
                  ": its model configuration or feature definitions differ from ours "
                  "(shape %016" PRIx64 ", ours %016" PRIx64 ")",
                  h.sender, h.shape, ms->shape);
    }
    return;
  }
  mtld_syncframe_msg_t msg;
  r = mtld_syncframe_feed(&ms->asm_, &h, v + FRAME_BYTES, m->len - FRAME_BYTES, m->offset, &msg);
  if (r == 1)
    complete(ms, &msg, mode);
  else if (r == -1)
    ms->ign_chunks++; /* a message whose start we did not see (before our first offset) */
  else if (r == -2)
    ms->failed++;
}

/* ---- publishing ------------------------------------------------------------- */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  mtld_modelsync_t *ms = opaque;
  if (m->err) {
    ms->failed++;
    mtld_log_rl(MTLD_LOG_WARNING, "modelsync-dr", "scaleout: model message not delivered: %s",
                rd_kafka_err2str(m->err));
  }
}

static void publish(mtld_modelsync_t *ms, int kind) {
  int64_t t0 = mtld_mono_ms();
  void *buf = NULL;
  size_t len = 0;
  mtld_delta_stats_t st;
  mtld_trainfeed_lock(ms->feed);
  mtld_status_t s = mtld_delta_extract(ms->delta, kind, &buf, &len, &st);
  mtld_trainfeed_unlock(ms->feed);
  if (s != MTLD_OK) {
    ms->failed++;
    mtld_log_rl(MTLD_LOG_ERR, "modelsync-nomem", "scaleout: out of memory encoding a delta");
    return;
  }
  if (kind == MTLD_DELTA_DELTA) {
    ms->last_div = st.divergence;
    ms->last_round_mono = t0;
    if (st.delta_l2 == 0) { /* nothing learned since the last round */
      free(buf);
      return;
    }
  }
  ms->seq++;
  uint32_t n = (uint32_t)((len + CHUNK_BYTES - 1) / CHUNK_BYTES);
  mtld_syncframe_t h = {.sender = ms->id,
                        .seq = ms->seq,
                        .n = n,
                        .shape = ms->shape,
                        .consumed = -1,
                        .replay_from = -1,
                        .kind = kind};
  if (kind == MTLD_DELTA_BASE) { /* a starting instance replays from replay_from */
    h.consumed = ms->consumed;
    h.replay_from = mtld_syncframe_replay_from(&ms->asm_, ms->consumed);
  }
  for (uint32_t c = 0; c < n; c++) {
    size_t at = (size_t)c * CHUNK_BYTES, piece = len - at < CHUNK_BYTES ? len - at : CHUNK_BYTES;
    h.chunk = c;
    mtld_syncframe_put(ms->frame, &h);
    memcpy(ms->frame + FRAME_BYTES, (uint8_t *)buf + at, piece);
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int tries = 0; tries < 50; tries++) {
      e = rd_kafka_producev(ms->prod, RD_KAFKA_V_TOPIC(ms->topic), RD_KAFKA_V_PARTITION(0),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_KEY(&ms->id, sizeof(ms->id)),
                            RD_KAFKA_V_VALUE(ms->frame, FRAME_BYTES + piece), RD_KAFKA_V_END);
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
      rd_kafka_poll(ms->prod, 100);
    }
    if (e) {
      ms->failed++;
      mtld_log_rl(MTLD_LOG_WARNING, "modelsync-produce", "scaleout: producing to %s: %s", ms->topic,
                  rd_kafka_err2str(e));
      break;
    }
  }
  free(buf);
  rd_kafka_poll(ms->prod, 0);
  ms->sent_bytes += len;
  if (kind == MTLD_DELTA_BASE) {
    ms->bases++;
    return;
  }
  ms->rounds++;
  ms->delta_bytes += len;
  ms->last_bytes = len;
  ms->last_rows = st.rows;
  ms->last_ms = (double)(mtld_mono_ms() - t0);
  ms->round_ms += ms->last_ms;
}

/* ---- setup ------------------------------------------------------------------ */

static rd_kafka_t *client(const mtld_config_t *cfg, rd_kafka_type_t type, mtld_modelsync_t *ms,
                          char *err, size_t errlen) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char e[512];
  for (int i = 0; i < cfg->n_kafka; i++) {
    const char *k = cfg->kafka[i].name;
    if (type == RD_KAFKA_PRODUCER
            ? mtld_deadletter_consumer_only(k)
            : !strcmp(k, "group.id") || !strcmp(k, "group.instance.id") ||
                  !strcmp(k, "enable.auto.commit") || !strcmp(k, "auto.offset.reset") ||
                  !strcmp(k, "enable.partition.eof"))
      continue;
    if (rd_kafka_conf_set(conf, k, cfg->kafka[i].value, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
      snprintf(err, errlen, "scaleout: kafka.%s: %s", k, e);
      rd_kafka_conf_destroy(conf);
      return NULL;
    }
  }
  if (type == RD_KAFKA_PRODUCER) {
    rd_kafka_conf_set(conf, "enable.idempotence", "true", e, sizeof(e)); /* chunks in order */
    rd_kafka_conf_set(conf, "linger.ms", "5", e, sizeof(e));
    rd_kafka_conf_set_opaque(conf, ms);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  } else {
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof(e));
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", e, sizeof(e));
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", e, sizeof(e));
    /* assign() wants a group; this one never subscribes nor commits */
    char group[64];
    snprintf(group, sizeof(group), "mtld-modelsync-%016" PRIx64, ms->id);
    rd_kafka_conf_set(conf, "group.id", group, e, sizeof(e));
  }
  rd_kafka_t *rk = rd_kafka_new(type, conf, e, sizeof(e));
  if (!rk) {
    snprintf(err, errlen, "scaleout: %s", e);
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  if (type == RD_KAFKA_CONSUMER) rd_kafka_poll_set_consumer(rk);
  return rk;
}

static int assign_at(mtld_modelsync_t *ms, int64_t offset, char *err, size_t errlen) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, ms->topic, 0)->offset = offset;
  rd_kafka_resp_err_t e = rd_kafka_assign(ms->cons, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) snprintf(err, errlen, "scaleout: cannot read %s: %s", ms->topic, rd_kafka_err2str(e));
  return e ? -1 : 0;
}

/* Reads from offset to the end of the partition in mode. */
static mtld_status_t pass(mtld_modelsync_t *ms, int64_t offset, int mode, char *err,
                          size_t errlen) {
  mtld_syncframe_reset(&ms->asm_);
  if (assign_at(ms, offset, err, errlen) != 0) return MTLD_ERR_IO;
  int64_t deadline = mtld_mono_ms() + CATCHUP_MS;
  while (mtld_mono_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(ms->cons, 500);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      rd_kafka_message_destroy(m);
      return MTLD_OK;
    }
    if (m->err) {
      mtld_log_rl(MTLD_LOG_WARNING, "modelsync-consume", "scaleout: reading %s: %s", ms->topic,
                  rd_kafka_message_errstr(m));
    } else {
      on_message(ms, m, mode);
    }
    rd_kafka_message_destroy(m);
  }
  snprintf(err, errlen, "scaleout: %s not read to its end within %d s", ms->topic,
           CATCHUP_MS / 1000);
  return MTLD_ERR_IO;
}

/* The shared part back to the initial weights (a restarted instance when the
 * topic holds no base: the deltas replayed next are counted from there). */
static mtld_status_t reset_to_initial(mtld_modelsync_t *ms, char *err, size_t errlen) {
  mtld_model_t *fresh = NULL;
  mtld_delta_t *fd = NULL;
  void *buf = NULL;
  size_t len;
  mtld_status_t st =
      mtld_model_create(&fresh, mtld_model_config(mtld_trainer_model(ms->t)), err, errlen);
  if (st == MTLD_OK) st = mtld_delta_new(&fd, fresh, LOCAL_FIELDS, ms->delta_flags, err, errlen);
  if (st == MTLD_OK) st = mtld_delta_extract(fd, MTLD_DELTA_BASE, &buf, &len, NULL);
  if (st == MTLD_OK) st = mtld_delta_apply(ms->delta, buf, len, err, errlen);
  free(buf);
  mtld_delta_free(fd);
  mtld_model_destroy(fresh);
  return st;
}

static mtld_status_t catch_up(mtld_modelsync_t *ms, char *err, size_t errlen) {
  int64_t lo = 0, hi = 0;
  rd_kafka_resp_err_t e =
      rd_kafka_query_watermark_offsets(ms->cons, ms->topic, 0, &lo, &hi, CATCHUP_MS / 2);
  if (e) {
    snprintf(err, errlen, "scaleout.model_topic %s: %s (create it: README \"Scale-out\")",
             ms->topic, rd_kafka_err2str(e));
    return MTLD_ERR_IO;
  }
  if (hi <= lo) {
    mtld_log(MTLD_LOG_NOTICE, "scaleout: %s is empty: this instance starts the shared model",
             ms->topic);
    return assign_at(ms, lo, err, errlen) == 0 ? MTLD_OK : MTLD_ERR_IO;
  }
  int64_t t0 = mtld_mono_ms();
  mtld_status_t st = pass(ms, lo, PASS_FIND_BASE, err, errlen);
  if (st != MTLD_OK) return st;
  int64_t from = lo;
  mtld_trainfeed_lock(ms->feed);
  if (ms->cu_base) {
    st = mtld_delta_apply(ms->delta, ms->cu_base, ms->cu_len, err, errlen);
    /* from the oldest message the base's author was still reassembling:
       a delta whose chunks straddle the base is not in it */
    int64_t replay = ms->cu.replay_from >= 0 ? ms->cu.replay_from : ms->cu.consumed + 1;
    from = replay > lo ? replay : lo;
  } else {
    st = reset_to_initial(ms, err, errlen);
  }
  mtld_trainfeed_unlock(ms->feed);
  if (st != MTLD_OK) {
    mtld_log(MTLD_LOG_WARNING,
             "scaleout: the base in %s cannot be used (%s): starting from the "
             "initial weights",
             ms->topic, err);
    free(ms->cu_base);
    ms->cu_base = NULL;
    mtld_trainfeed_lock(ms->feed);
    st = reset_to_initial(ms, err, errlen);
    mtld_trainfeed_unlock(ms->feed);
    if (st != MTLD_OK) return st;
    from = lo;
  }
  uint64_t before = ms->applied;
  st = pass(ms, from, PASS_REPLAY, err, errlen);
  if (st != MTLD_OK) return st;
  if (ms->cu_base)
    mtld_log(MTLD_LOG_NOTICE,
             "scaleout: started from the shared model: base of instance %016" PRIx64
             " at offset %" PRId64 " + %" PRIu64 " deltas (%.1f s)",
             ms->cu.sender, ms->cu_last_offset, ms->applied - before,
             (double)(mtld_mono_ms() - t0) / 1000.0);
  else
    mtld_log(MTLD_LOG_NOTICE,
             "scaleout: no base in %s: started from the initial weights + %" PRIu64
             " deltas (offsets %" PRId64 "..%" PRId64 ")",
             ms->topic, ms->applied - before, lo, hi - 1);
  free(ms->cu_base);
  ms->cu_base = NULL;
  return MTLD_OK;
}

mtld_status_t mtld_modelsync_new(mtld_modelsync_t **out, const mtld_config_t *cfg,
                                 mtld_trainer_t *t, mtld_trainfeed_t *feed, uint64_t extra_shape,
                                 char *err, size_t errlen) {
  *out = NULL;
  mtld_modelsync_t *ms = calloc(1, sizeof(*ms));
  if (!ms) return MTLD_ERR_NOMEM;
  snprintf(ms->topic, sizeof(ms->topic), "%s", cfg->scaleout_model_topic);
  ms->sync_ms = cfg->scaleout_sync_interval_ms;
  ms->base_ms = cfg->scaleout_base_interval_ms;
  ms->t = t;
  ms->feed = feed;
  ms->consumed = -1;
  ms->delta_flags = cfg->scaleout_sync_accumulators ? MTLD_DELTA_ACCUMULATORS : 0;
  if (getrandom(&ms->id, sizeof(ms->id), 0) != (ssize_t)sizeof(ms->id))
    ms->id = mtld_mix64((uint64_t)mtld_wall_ms() ^ (uint64_t)getpid() << 32);
  ms->jitter_ms = (int64_t)(ms->id % 1000) * ms->base_ms / 2000;
  ms->frame = malloc(FRAME_BYTES + CHUNK_BYTES);
  mtld_status_t st = ms->frame ? MTLD_OK : MTLD_ERR_NOMEM;
  if (st == MTLD_OK)
    st = mtld_delta_new(&ms->delta, mtld_trainer_model(t), LOCAL_FIELDS, ms->delta_flags, err,
                        errlen);
  if (st != MTLD_OK) goto fail;
  ms->shape = mtld_mix64(mtld_delta_shape(ms->delta) ^ extra_shape);
  ms->prod = client(cfg, RD_KAFKA_PRODUCER, ms, err, errlen);
  ms->cons = ms->prod ? client(cfg, RD_KAFKA_CONSUMER, ms, err, errlen) : NULL;
  if (!ms->cons) {
    st = MTLD_ERR_CONFIG;
    goto fail;
  }
  st = catch_up(ms, err, errlen);
  if (st != MTLD_OK) goto fail;
  ms->last_pub_mono = ms->last_base_seen_mono = ms->last_round_mono = mtld_mono_ms();
  mtld_log(MTLD_LOG_NOTICE,
           "scaleout: instance %016" PRIx64 " syncs the shared model through %s every %.1f s "
           "(shape %016" PRIx64 ")",
           ms->id, ms->topic, (double)ms->sync_ms / 1000.0, ms->shape);
  *out = ms;
  return MTLD_OK;
fail:
  mtld_modelsync_free(ms);
  return st;
}

void mtld_modelsync_tick(mtld_modelsync_t *ms) {
  if (!ms) return;
  rd_kafka_poll(ms->prod, 0);
  for (int i = 0; i < 256; i++) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(ms->cons, 0);
    if (!m) break;
    if (!m->err)
      on_message(ms, m, LIVE);
    else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
      mtld_log_rl(MTLD_LOG_WARNING, "modelsync-consume", "scaleout: reading %s: %s", ms->topic,
                  rd_kafka_message_errstr(m));
    rd_kafka_message_destroy(m);
  }
  int64_t now = mtld_mono_ms();
  if (now - ms->last_pub_mono >= ms->sync_ms) {
    ms->last_pub_mono = now;
    publish(ms, MTLD_DELTA_DELTA);
  }
  if (now - ms->last_base_seen_mono >= ms->base_ms + ms->jitter_ms) {
    ms->last_base_seen_mono = now;
    publish(ms, MTLD_DELTA_BASE);
  }
}

void mtld_modelsync_finish(mtld_modelsync_t *ms, int timeout_ms) {
  if (!ms) return;
  for (int i = 0; i < 256; i++) { /* what the others sent meanwhile, then our last round */
    rd_kafka_message_t *m = rd_kafka_consumer_poll(ms->cons, 0);
    if (!m) break;
    if (!m->err) on_message(ms, m, LIVE);
    rd_kafka_message_destroy(m);
  }
  publish(ms, MTLD_DELTA_DELTA);
  if (rd_kafka_flush(ms->prod, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
    mtld_log(MTLD_LOG_WARNING, "scaleout: the last model delta was not delivered within %d ms",
             timeout_ms);
  mtld_log(MTLD_LOG_NOTICE,
           "scaleout: %" PRIu64 " rounds published (%" PRIu64 " bytes with %" PRIu64
           " bases; %.0f bytes and %.1f ms per round), %" PRIu64 " deltas applied (%.1f ms "
           "each), %" PRIu64 " ignored",
           ms->rounds, ms->sent_bytes, ms->bases,
           ms->rounds ? (double)ms->delta_bytes / (double)ms->rounds : 0.0,
           ms->rounds ? ms->round_ms / (double)ms->rounds : 0.0, ms->applied,
           ms->applied ? ms->apply_ms / (double)ms->applied : 0.0,
           ms->ign_shape + ms->ign_corrupt + ms->ign_chunks + ms->ign_version);
}

void mtld_modelsync_render_metrics(mtld_modelsync_t *ms, mtld_metrics_buf_t *b) {
  if (!ms) return;
  double age = (double)(mtld_mono_ms() - ms->last_round_mono) / 1000.0;
  struct {
    const char *name, *type, *help;
    double v;
  } g[] = {
      {"mtld_modelsync_rounds_total", "counter", "Model deltas this instance published.",
       (double)ms->rounds},
      {"mtld_modelsync_bases_total", "counter", "Model bases this instance published.",
       (double)ms->bases},
      {"mtld_modelsync_age_seconds", "gauge", "Seconds since this instance's last sync round.",
       age},
      {"mtld_modelsync_round_bytes", "gauge", "Bytes of the last published delta.",
       (double)ms->last_bytes},
      {"mtld_modelsync_round_rows", "gauge", "Embedding rows in the last published delta.",
       (double)ms->last_rows},
      {"mtld_modelsync_round_seconds", "gauge",
       "Time of the last round (extract under the trainer lock + produce).", ms->last_ms / 1000.0},
      {"mtld_modelsync_sent_bytes_total", "counter", "Bytes of deltas and bases published.",
       (double)ms->sent_bytes},
      {"mtld_modelsync_applied_total", "counter", "Other instances' deltas applied.",
       (double)ms->applied},
      {"mtld_modelsync_apply_seconds_total", "counter",
       "Time spent applying other instances' deltas.", ms->apply_ms / 1000.0},
      {"mtld_modelsync_divergence", "gauge",
       "L2 norm of the local change published in the last round over the L2 norm of the shared "
       "weights: how far the local model had moved from the shared one.",
       ms->last_div},
      {"mtld_modelsync_failures_total", "counter", "Model messages not produced or delivered.",
       (double)ms->failed},
  };
  for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
    mtld_metrics_family(b, g[i].name, g[i].type, g[i].help);
    mtld_metrics_sample(b, g[i].name, NULL, g[i].v);
  }
  mtld_metrics_family(b, "mtld_modelsync_ignored_total", "counter",
                      "Model messages ignored, by reason (shape: another model configuration "
                      "or feature definitions; version: another format version; partial: a "
                      "chunk whose message's start was not read; corrupt).");
  mtld_metrics_sample(b, "mtld_modelsync_ignored_total", "reason=\"shape\"", (double)ms->ign_shape);
  mtld_metrics_sample(b, "mtld_modelsync_ignored_total", "reason=\"corrupt\"",
                      (double)ms->ign_corrupt);
  mtld_metrics_sample(b, "mtld_modelsync_ignored_total", "reason=\"partial\"",
                      (double)ms->ign_chunks);
  mtld_metrics_sample(b, "mtld_modelsync_ignored_total", "reason=\"version\"",
                      (double)ms->ign_version);
}

void mtld_modelsync_status(mtld_modelsync_t *ms, char *buf, size_t len) {
  if (!ms) {
    if (len) buf[0] = 0;
    return;
  }
  snprintf(buf, len,
           "sync round %" PRIu64 ", age %.1f s, %.0f KiB/round, %" PRIu64 " applied, %" PRIu64
           " ignored, divergence %.2g",
           ms->rounds, (double)(mtld_mono_ms() - ms->last_round_mono) / 1000.0,
           (double)ms->last_bytes / 1024.0, ms->applied,
           ms->ign_shape + ms->ign_corrupt + ms->ign_chunks + ms->ign_version, ms->last_div);
}

void mtld_modelsync_free(mtld_modelsync_t *ms) {
  if (!ms) return;
  if (ms->cons) {
    rd_kafka_consumer_close(ms->cons);
    rd_kafka_destroy(ms->cons);
  }
  if (ms->prod) {
    rd_kafka_flush(ms->prod, 1000);
    rd_kafka_destroy(ms->prod);
  }
  mtld_delta_free(ms->delta);
  mtld_syncframe_free(&ms->asm_);
  free(ms->cu_base);
  free(ms->frame);
  free(ms);
}
