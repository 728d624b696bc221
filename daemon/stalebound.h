/* stalebound.h - the bounded staleness of the model sync
 * (scaleout.max_stale_rounds, daemon/modelsync.h): which peers an instance
 * waits for, by the rounds they published.  No Kafka, no threads: modelsync
 * feeds it what it reads on the model topic, under its own lock.
 *
 * A peer is an instance read on the topic.  Its round (the number of
 * non-empty deltas it published, carried in its DELTA frames: syncframe.h)
 * is aligned with ours when first seen - with one round of credit, so two
 * instances that first see each other across a delivery lag do not each
 * count the other behind - and again when it comes back from idle.  A peer
 * whose last DELTA was empty (an idle marker: nothing learned since its
 * previous round) is not waited for until its next non-empty one.  A peer
 * read nothing from for longer than the timeout is dropped (counted, logged)
 * until its next message, which adds it anew.
 *
 * Thread: the caller's (modelsync holds its mutex). */
#ifndef MTLD_STALEBOUND_H
#define MTLD_STALEBOUND_H

#include <stdint.h>

#define MTLD_STALEBOUND_PEERS 64

typedef struct {
  int used;
  int idle;    /* its last DELTA was empty */
  int tracked; /* its round is known (a DELTA with a round since it was added) */
  uint64_t id;
  int64_t off; /* its round + off = our round for the same progress */
  uint32_t round;
  int64_t last_ms; /* when its last message was read */
} mtld_stalebound_peer_t;

typedef struct {
  int max_stale;      /* S; < 0: no bound (never behind) */
  int64_t timeout_ms; /* a peer silent this long is dropped */
  mtld_stalebound_peer_t peers[MTLD_STALEBOUND_PEERS];
  uint64_t dropped; /* peers dropped for silence */
} mtld_stalebound_t;

/* An empty bound: no peers yet. */
void mtld_stalebound_init(mtld_stalebound_t *b, int max_stale, int64_t timeout_ms);

/* Notes a message of sender read at now_ms while our round is own_round:
 * round > 0 with is_delta a DELTA of that round, an idle marker when idle;
 * anything else only shows the sender alive.  More peers than slots: the
 * extra ones are not waited for. */
void mtld_stalebound_seen(mtld_stalebound_t *b, uint64_t sender, int is_delta, uint32_t round,
                          int idle, uint32_t own_round, int64_t now_ms);

/* 1 when an instance at own_round must wait: a tracked, non-idle peer whose
 * aligned round is below own_round - max_stale.  First drops the peers
 * silent for longer than the timeout (each logged at NOTICE, counted in
 * dropped). */
int mtld_stalebound_behind(mtld_stalebound_t *b, uint32_t own_round, int64_t now_ms);

#endif
