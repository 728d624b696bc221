/* modelsync.c - the shared model's deltas and bases through a Kafka topic
 * (see modelsync.h). */
#include "daemon/modelsync.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/hash.h"
#include "daemon/deadletter.h"
#include "daemon/log.h"
#include "daemon/stalebound.h"
#include "daemon/syncframe.h"
#include "trainer/delta.h"

#define FRAME_BYTES MTLD_SYNCFRAME_BYTES
#define CHUNK_BYTES (512u * 1024u)
#define CATCHUP_MS 60000
#define LOCAL_FIELDS (1ull << MTLD_FIELD_USER) /* user rows live with their partition */

enum { PASS_FIND_BASE = 0, PASS_REPLAY = 1, LIVE = 2 };

typedef struct note { /* a message between the threads: received (inbox) or to send (outbox) */
  struct note *next;
  uint64_t sender;
  int kind;
  int64_t consumed, replay_from; /* outbox BASE: its marks */
  uint64_t rows;                 /* outbox DELTA: rows in it */
  uint32_t round;                /* outbox DELTA: this instance's round (syncframe.h) */
  double extract_ms;             /* outbox: time of the extract */
  int64_t produced_ms;           /* inbox: Kafka timestamp of its last chunk (wall), 0 unknown */
  uint8_t *buf;
  size_t len;
} note_t;

typedef struct {
  note_t *head, *tail;
  size_t n;
} notes_t;

struct mtld_modelsync {
  char topic[256];
  int64_t sync_ms, base_ms, jitter_ms;
  int64_t sync_samples, since; /* scaleout.sync_samples; samples trained since the last extract */
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
  /* threads (modelsync.h): mu guards everything below it, the assembler,
     consumed and last_base_seen_mono once the sync thread runs; lock order:
     the trainer lock, then mu (never the other way) */
  pthread_mutex_t mu;
  pthread_t io;
  int io_running, io_stop;
  notes_t inbox, outbox;
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
  double lag_ms;  /* sum over applied live deltas: applied - produced (wall clock) */
  uint64_t lag_n; /* ... how many */
  int64_t cur_ts; /* consume(): the Kafka timestamp of the message in hand */
  int64_t last_round_mono;
  /* bounded staleness (scaleout.max_stale_rounds; guarded by mu) */
  int max_stale;           /* S, -1 = off */
  uint32_t round;          /* non-empty deltas published (extracted): our clock */
  mtld_stalebound_t bound; /* the peers (daemon/stalebound.h) */
  pthread_cond_t cond;     /* a peer's message read; a wait ended */
  int waiting, closing;    /* the trainer thread waits in hold(); unhook() asked it to end */
  uint64_t waits, interrupted;
  double wait_ms;
};

/* ---- peers and bounded staleness ---------------------------------------------- */

/* Whether this instance must wait before it trains on (mu held). */
static int behind(mtld_modelsync_t *ms, int64_t now) {
  return mtld_stalebound_behind(&ms->bound, ms->round, now);
}

/* ---- applying --------------------------------------------------------------- */

static void push(notes_t *q, note_t *n) {
  n->next = NULL;
  if (q->tail)
    q->tail->next = n;
  else
    q->head = n;
  q->tail = n;
  __atomic_store_n(&q->n, q->n + 1, __ATOMIC_RELAXED); /* read without mu by on_sample */
}

static note_t *take_all(notes_t *q) {
  note_t *h = q->head;
  q->head = q->tail = NULL;
  __atomic_store_n(&q->n, 0, __ATOMIC_RELAXED);
  return h;
}

static void free_notes(note_t *n) {
  while (n) {
    note_t *next = n->next;
    free(n->buf);
    free(n);
    n = next;
  }
}

/* Applies a remote delta; the caller holds the trainer lock (not mu). */
static void apply(mtld_modelsync_t *ms, const uint8_t *buf, size_t len, uint64_t sender) {
  char err[256];
  int64_t t0 = mtld_mono_ms();
  mtld_status_t st = mtld_delta_apply(ms->delta, buf, len, err, sizeof(err));
  pthread_mutex_lock(&ms->mu);
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
  pthread_mutex_unlock(&ms->mu);
}

/* Applies every received delta; the caller holds the trainer lock. */
static void apply_inbox(mtld_modelsync_t *ms) {
  pthread_mutex_lock(&ms->mu);
  note_t *n = take_all(&ms->inbox);
  pthread_mutex_unlock(&ms->mu);
  int64_t now = mtld_wall_ms();
  double lag = 0;
  uint64_t lag_n = 0;
  for (note_t *x = n; x; x = x->next) {
    apply(ms, x->buf, x->len, x->sender);
    if (x->produced_ms > 0 && now >= x->produced_ms) lag += (double)(now - x->produced_ms), lag_n++;
  }
  free_notes(n);
  if (lag_n) {
    pthread_mutex_lock(&ms->mu);
    ms->lag_ms += lag;
    ms->lag_n += lag_n;
    pthread_mutex_unlock(&ms->mu);
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
  if (mode == LIVE) {
    mtld_stalebound_seen(&ms->bound, msg->sender, msg->kind == MTLD_DELTA_DELTA, msg->round,
                         msg->len == 0, ms->round, mtld_mono_ms());
    pthread_cond_broadcast(&ms->cond);
  }
  if (msg->kind == MTLD_DELTA_BASE) {
    if (mode == LIVE) ms->last_base_seen_mono = mtld_mono_ms();
    return;
  }
  if (msg->len == 0) return; /* an idle marker: nothing to apply */
  /* what the base's author had applied (or sent) before its base is in it */
  if (mode == PASS_REPLAY && ms->cu_base &&
      mtld_syncframe_in_base(&ms->cu, ms->cu_last_offset, msg->sender, msg->last_offset))
    return;
  if (mode == PASS_REPLAY) { /* catching up: no sample is trained yet */
    mtld_trainfeed_lock(ms->feed);
    apply(ms, msg->buf, msg->len, msg->sender);
    mtld_trainfeed_unlock(ms->feed);
    return;
  }
  /* live (mu held): the trainer thread applies it between two samples */
  note_t *n = calloc(1, sizeof(*n));
  uint8_t *b = n ? malloc(msg->len ? msg->len : 1) : NULL;
  if (!b) {
    free(n);
    ms->failed++;
    return;
  }
  memcpy(b, msg->buf, msg->len);
  n->buf = b;
  n->len = msg->len;
  n->sender = msg->sender;
  n->kind = msg->kind;
  n->produced_ms = ms->cur_ts;
  push(&ms->inbox, n);
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
    pthread_mutex_lock(&ms->mu);
    ms->failed++;
    pthread_mutex_unlock(&ms->mu);
    mtld_log_rl(MTLD_LOG_WARNING, "modelsync-dr", "scaleout: model message not delivered: %s",
                rd_kafka_err2str(m->err));
  }
}

/* Extracts this instance's DELTA or BASE into the outbox; the caller holds
 * the trainer lock (not mu).  A BASE first applies what was received, and
 * takes its marks (the last offset read, where a starting instance replays
 * from) with the inbox it applied, so the base holds exactly the deltas up to
 * its marks. */
static void extract(mtld_modelsync_t *ms, int kind) {
  int64_t t0 = mtld_mono_ms();
  note_t *n = calloc(1, sizeof(*n));
  if (!n) goto nomem;
  n->kind = kind;
  n->consumed = n->replay_from = -1;
  if (kind == MTLD_DELTA_BASE) {
    pthread_mutex_lock(&ms->mu);
    note_t *in = take_all(&ms->inbox);
    n->consumed = ms->consumed;
    n->replay_from = mtld_syncframe_replay_from(&ms->asm_, ms->consumed);
    pthread_mutex_unlock(&ms->mu);
    for (note_t *x = in; x; x = x->next) apply(ms, x->buf, x->len, x->sender);
    free_notes(in);
  }
  void *buf = NULL;
  mtld_delta_stats_t st;
  if (mtld_delta_extract(ms->delta, kind, &buf, &n->len, &st) != MTLD_OK) goto nomem;
  n->buf = buf;
  n->rows = st.rows;
  n->extract_ms = (double)(mtld_mono_ms() - t0);
  pthread_mutex_lock(&ms->mu);
  if (kind == MTLD_DELTA_DELTA) {
    ms->last_div = st.divergence;
    ms->last_round_mono = t0;
  }
  if (kind == MTLD_DELTA_DELTA && st.delta_l2 == 0) { /* nothing learned since the last round */
    if (ms->max_stale >= 0) { /* an idle marker, so the others do not wait for us */
      free(n->buf);
      n->buf = NULL;
      n->len = 0;
      n->round = ms->round;
      push(&ms->outbox, n);
    } else {
      free_notes(n);
    }
  } else {
    if (kind == MTLD_DELTA_DELTA) n->round = ++ms->round;
    push(&ms->outbox, n);
  }
  pthread_mutex_unlock(&ms->mu);
  return;
nomem:
  free(n);
  pthread_mutex_lock(&ms->mu);
  ms->failed++;
  pthread_mutex_unlock(&ms->mu);
  mtld_log_rl(MTLD_LOG_ERR, "modelsync-nomem", "scaleout: out of memory encoding a delta");
}

/* Produces an outbox message in chunks (the thread that owns the producer:
 * the sync thread, or the main thread once it stopped). */
static void send_note(mtld_modelsync_t *ms, const note_t *x) {
  int64_t t0 = mtld_mono_ms();
  ms->seq++;
  uint32_t n = (uint32_t)((x->len + CHUNK_BYTES - 1) / CHUNK_BYTES);
  mtld_syncframe_t h = {.sender = ms->id,
                        .seq = ms->seq,
                        .n = n ? n : 1,
                        .shape = ms->shape,
                        .consumed = x->consumed,
                        .replay_from = x->replay_from,
                        .kind = x->kind,
                        .round = x->kind == MTLD_DELTA_DELTA ? x->round : 0};
  uint64_t failed = 0;
  for (uint32_t c = 0; c < h.n; c++) {
    size_t at = (size_t)c * CHUNK_BYTES,
           piece = x->len - at < CHUNK_BYTES ? x->len - at : CHUNK_BYTES;
    h.chunk = c;
    mtld_syncframe_put(ms->frame, &h);
    if (piece) memcpy(ms->frame + FRAME_BYTES, x->buf + at, piece);
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
      failed++;
      mtld_log_rl(MTLD_LOG_WARNING, "modelsync-produce", "scaleout: producing to %s: %s", ms->topic,
                  rd_kafka_err2str(e));
      break;
    }
  }
  rd_kafka_poll(ms->prod, 0);
  pthread_mutex_lock(&ms->mu);
  ms->failed += failed;
  ms->sent_bytes += x->len;
  if (x->kind == MTLD_DELTA_BASE) {
    ms->bases++;
  } else if (x->len) {
    ms->rounds++;
    ms->delta_bytes += x->len;
    ms->last_bytes = x->len;
    ms->last_rows = x->rows;
    ms->last_ms = x->extract_ms + (double)(mtld_mono_ms() - t0);
    ms->round_ms += ms->last_ms;
  }
  pthread_mutex_unlock(&ms->mu);
}

static void send_outbox(mtld_modelsync_t *ms) {
  pthread_mutex_lock(&ms->mu);
  note_t *n = take_all(&ms->outbox);
  pthread_mutex_unlock(&ms->mu);
  for (note_t *x = n; x; x = x->next) send_note(ms, x);
  free_notes(n);
}

/* Holding the trainer lock: applies what arrived, extracts this instance's
 * delta every sync_interval or sync_samples trained samples, a base when
 * due. */
static int step(mtld_modelsync_t *ms, int trained) {
  if (__atomic_load_n(&ms->inbox.n, __ATOMIC_RELAXED)) apply_inbox(ms);
  ms->since += trained;
  int64_t now = mtld_mono_ms();
  int published = 0;
  if (now - ms->last_pub_mono >= ms->sync_ms ||
      (ms->sync_samples > 0 && ms->since >= ms->sync_samples)) {
    ms->last_pub_mono = now;
    ms->since = 0;
    extract(ms, MTLD_DELTA_DELTA);
    published = 1;
  }
  pthread_mutex_lock(&ms->mu);
  int base_due = now - ms->last_base_seen_mono >= ms->base_ms + ms->jitter_ms;
  if (base_due) ms->last_base_seen_mono = now;
  pthread_mutex_unlock(&ms->mu);
  if (base_due) extract(ms, MTLD_DELTA_BASE);
  return published;
}

/* On the trainer thread, holding the trainer lock, after this instance's
 * round: waits (the trainer lock released, so the main thread's tick and
 * metrics go on) until every live peer's round is within max_stale of ours,
 * then applies what came.  Ends early when the feed drains or stops, or
 * unhook() asks; peers silent for peer_timeout are dropped (behind()).
 * While waiting, an idle marker every sync_interval (step: nothing trained),
 * so two instances never wait for each other for longer than that. */
static void hold(mtld_modelsync_t *ms) {
  pthread_mutex_lock(&ms->mu);
  int64_t t0 = mtld_mono_ms();
  if (ms->closing || !behind(ms, t0)) {
    pthread_mutex_unlock(&ms->mu);
    return;
  }
  ms->waiting = 1;
  ms->waits++;
  pthread_mutex_unlock(&ms->mu);
  mtld_trainfeed_unlock(ms->feed);
  int interrupted = 0;
  int64_t last_step = t0;
  pthread_mutex_lock(&ms->mu);
  for (;;) {
    int64_t now = mtld_mono_ms();
    if (ms->closing || mtld_trainfeed_draining(ms->feed)) {
      interrupted = 1;
      break;
    }
    if (!behind(ms, now)) break;
    if (now - last_step >= ms->sync_ms) { /* lock order: the trainer, then mu */
      last_step = now;
      pthread_mutex_unlock(&ms->mu);
      mtld_trainfeed_lock(ms->feed);
      step(ms, 0);
      mtld_trainfeed_unlock(ms->feed);
      pthread_mutex_lock(&ms->mu);
      continue;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 5 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_cond_timedwait(&ms->cond, &ms->mu, &ts);
  }
  ms->wait_ms += (double)(mtld_mono_ms() - t0);
  ms->interrupted += (uint64_t)interrupted;
  pthread_mutex_unlock(&ms->mu);
  mtld_trainfeed_lock(ms->feed);
  pthread_mutex_lock(&ms->mu);
  ms->waiting = 0; /* the trainer lock is ours again: unhook() can wait for it */
  pthread_cond_broadcast(&ms->cond);
  pthread_mutex_unlock(&ms->mu);
  apply_inbox(ms);
}

/* The trainer thread's hook (mtld_trainfeed_set_hook): after each sample. */
static void on_sample(void *ctx) {
  mtld_modelsync_t *ms = ctx;
  if (step(ms, 1) && ms->max_stale >= 0) hold(ms);
}

/* Removes the hook: ends a wait in hold() first (the hook holds the trainer
 * lock again when waiting drops to 0; set_hook then takes it after the hook
 * returned). */
static void unhook(mtld_modelsync_t *ms) {
  pthread_mutex_lock(&ms->mu);
  ms->closing = 1;
  pthread_cond_broadcast(&ms->cond);
  while (ms->waiting) pthread_cond_wait(&ms->cond, &ms->mu);
  pthread_mutex_unlock(&ms->mu);
  mtld_trainfeed_set_hook(ms->feed, NULL, NULL);
}

/* Reads what the consumer has (waiting up to wait_ms for the first). */
static void consume(mtld_modelsync_t *ms, int wait_ms) {
  for (int i = 0; i < 256; i++) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(ms->cons, i ? 0 : wait_ms);
    if (!m) break;
    if (!m->err) {
      rd_kafka_timestamp_type_t tt;
      int64_t ts = rd_kafka_message_timestamp(m, &tt);
      pthread_mutex_lock(&ms->mu);
      ms->cur_ts = tt == RD_KAFKA_TIMESTAMP_CREATE_TIME ? ts : 0;
      on_message(ms, m, LIVE);
      pthread_mutex_unlock(&ms->mu);
    } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      mtld_log_rl(MTLD_LOG_WARNING, "modelsync-consume", "scaleout: reading %s: %s", ms->topic,
                  rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
  }
}

/* The sync thread: the topic's I/O (the model work is the trainer thread's). */
static void *io_main(void *arg) {
  mtld_modelsync_t *ms = arg;
  while (!__atomic_load_n(&ms->io_stop, __ATOMIC_ACQUIRE)) {
    consume(ms, 5); /* short: an extracted delta waits at most this long to be sent */
    send_outbox(ms);
    rd_kafka_poll(ms->prod, 0);
  }
  return NULL;
}

static void io_join(mtld_modelsync_t *ms) {
  if (!ms->io_running) return;
  __atomic_store_n(&ms->io_stop, 1, __ATOMIC_RELEASE);
  pthread_join(ms->io, NULL);
  ms->io_running = 0;
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
    rd_kafka_conf_set(conf, "linger.ms", "0", e, sizeof(e)); /* staleness is what costs */
    rd_kafka_conf_set_opaque(conf, ms);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  } else {
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof(e));
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", e, sizeof(e));
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", e, sizeof(e));
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", e, sizeof(e));
    /* assign() wants a group; this one never subscribes nor commits */
    char group[64];
    snprintf(group, sizeof(group), "mtld-modelsync-%016" PRIx64, ms->id);
    rd_kafka_conf_set(conf, "group.id", group, e, sizeof(e));
  }
  rd_kafka_conf_set(conf, "socket.nagle.disable", "true", e, sizeof(e));
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
  pthread_mutex_init(&ms->mu, NULL);
  pthread_cond_init(&ms->cond, NULL);
  ms->max_stale = cfg->scaleout_max_stale_rounds;
  mtld_stalebound_init(&ms->bound, ms->max_stale, cfg->scaleout_peer_timeout_ms);
  snprintf(ms->topic, sizeof(ms->topic), "%s", cfg->scaleout_model_topic);
  ms->sync_ms = cfg->scaleout_sync_interval_ms;
  ms->sync_samples = cfg->scaleout_sync_samples;
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
  if (pthread_create(&ms->io, NULL, io_main, ms) != 0) {
    snprintf(err, errlen, "scaleout: cannot start the model sync thread");
    st = MTLD_ERR_IO;
    goto fail;
  }
  ms->io_running = 1;
  mtld_trainfeed_set_hook(feed, on_sample, ms);
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
  mtld_trainfeed_lock(ms->feed); /* also while no sample comes (the hook then does not run) */
  step(ms, 0);
  mtld_trainfeed_unlock(ms->feed);
}

void mtld_modelsync_finish(mtld_modelsync_t *ms, int timeout_ms) {
  if (!ms) return;
  unhook(ms);
  io_join(ms);    /* the producer and consumer are this thread's now */
  consume(ms, 0); /* what the others sent meanwhile, then our last round */
  mtld_trainfeed_lock(ms->feed);
  apply_inbox(ms);
  extract(ms, MTLD_DELTA_DELTA);
  if (ms->max_stale >= 0) extract(ms, MTLD_DELTA_DELTA); /* empty: the idle marker of a leaver */
  mtld_trainfeed_unlock(ms->feed);
  send_outbox(ms);
  if (rd_kafka_flush(ms->prod, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
    mtld_log(MTLD_LOG_WARNING, "scaleout: the last model delta was not delivered within %d ms",
             timeout_ms);
  pthread_mutex_lock(&ms->mu);
  mtld_log(MTLD_LOG_NOTICE,
           "scaleout: %" PRIu64 " rounds published (%" PRIu64 " bytes with %" PRIu64
           " bases; %.0f bytes and %.1f ms per round), %" PRIu64 " deltas applied (%.1f ms "
           "each, %.0f ms after they were produced), %" PRIu64 " ignored; %" PRIu64
           " waits for peers (%.1f s, %" PRIu64 " interrupted), %" PRIu64 " peers dropped",
           ms->rounds, ms->sent_bytes, ms->bases,
           ms->rounds ? (double)ms->delta_bytes / (double)ms->rounds : 0.0,
           ms->rounds ? ms->round_ms / (double)ms->rounds : 0.0, ms->applied,
           ms->applied ? ms->apply_ms / (double)ms->applied : 0.0,
           ms->lag_n ? ms->lag_ms / (double)ms->lag_n : 0.0,
           ms->ign_shape + ms->ign_corrupt + ms->ign_chunks + ms->ign_version, ms->waits,
           ms->wait_ms / 1000.0, ms->interrupted, ms->bound.dropped);
  pthread_mutex_unlock(&ms->mu);
}

void mtld_modelsync_render_metrics(mtld_modelsync_t *ms, mtld_metrics_buf_t *b) {
  if (!ms) return;
  pthread_mutex_lock(&ms->mu);
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
      {"mtld_modelsync_stale_waits_total", "counter",
       "Times the trainer waited for a peer's round (scaleout.max_stale_rounds).",
       (double)ms->waits},
      {"mtld_modelsync_stale_wait_seconds_total", "counter",
       "Time the trainer spent waiting for peers' rounds.", ms->wait_ms / 1000.0},
      {"mtld_modelsync_stale_waits_interrupted_total", "counter",
       "Waits for peers ended early by a drain of the trainer's queue or shutdown.",
       (double)ms->interrupted},
      {"mtld_modelsync_peers_dropped_total", "counter",
       "Peers no longer waited for after scaleout.peer_timeout of silence.",
       (double)ms->bound.dropped},
      {"mtld_modelsync_round", "gauge", "This instance's round (non-empty deltas published).",
       (double)ms->round},
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
  pthread_mutex_unlock(&ms->mu);
}

void mtld_modelsync_status(mtld_modelsync_t *ms, char *buf, size_t len) {
  if (!ms) {
    if (len) buf[0] = 0;
    return;
  }
  pthread_mutex_lock(&ms->mu);
  snprintf(buf, len,
           "sync round %" PRIu64 ", age %.1f s, %.0f KiB/round, %" PRIu64 " applied, %" PRIu64
           " ignored, divergence %.2g",
           ms->rounds, (double)(mtld_mono_ms() - ms->last_round_mono) / 1000.0,
           (double)ms->last_bytes / 1024.0, ms->applied,
           ms->ign_shape + ms->ign_corrupt + ms->ign_chunks + ms->ign_version, ms->last_div);
  pthread_mutex_unlock(&ms->mu);
}

void mtld_modelsync_free(mtld_modelsync_t *ms) {
  if (!ms) return;
  if (ms->feed) unhook(ms);
  io_join(ms);
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
  free_notes(take_all(&ms->inbox));
  free_notes(take_all(&ms->outbox));
  pthread_cond_destroy(&ms->cond);
  pthread_mutex_destroy(&ms->mu);
  free(ms->cu_base);
  free(ms->frame);
  free(ms);
}
