/* test_syncframe.c - the model topic's frames (daemon/syncframe.h): header
 * round trip and version refusal, reassembly of chunked messages, and the
 * replay of a starting instance after a base when a delta's chunks straddle
 * the base (the delta must be applied once, whole; what the base holds must
 * not be applied again). */
#include <stdint.h>
#include <string.h>

#include "daemon/syncframe.h"
#include "tests/unit/check.h"
#include "trainer/delta.h"

enum { A = 0xA, B = 0xB, C = 0xC, D_SELF = 0xD };

typedef struct { /* one topic message */
  mtld_syncframe_t h;
  uint8_t payload[8]; /* payload[0] names the message; chunks carry (name, chunk) */
} rec_t;

static rec_t topic[32];
static int n_topic;

static void send(uint64_t sender, uint64_t seq, uint32_t chunk, uint32_t n, int kind,
                 uint8_t name) {
  rec_t *r = &topic[n_topic++];
  memset(r, 0, sizeof(*r));
  r->h = (mtld_syncframe_t){.sender = sender,
                            .seq = seq,
                            .chunk = chunk,
                            .n = n,
                            .shape = 77,
                            .consumed = -1,
                            .replay_from = -1,
                            .kind = kind};
  r->payload[0] = name;
  r->payload[1] = (uint8_t)chunk;
}

/* Feeds topic[from, to) through a, frames of sender `self` skipped (as
 * modelsync skips its own), via a real encode/decode of each header.
 * Completed deltas' names go to names[] unless in the base `base`. */
static int feed(mtld_syncframe_asm_t *a, int from, int to, uint64_t self,
                const mtld_syncframe_msg_t *base, int64_t base_last, uint8_t *names,
                mtld_syncframe_msg_t *base_out, int64_t *base_last_out) {
  int got = 0;
  for (int i = from; i < to; i++) {
    uint8_t frame[MTLD_SYNCFRAME_BYTES + 2];
    mtld_syncframe_put(frame, &topic[i].h);
    memcpy(frame + MTLD_SYNCFRAME_BYTES, topic[i].payload, 2);
    mtld_syncframe_t h;
    CHECK(mtld_syncframe_get(frame, sizeof(frame), &h) == 0);
    if (h.sender == self) continue;
    mtld_syncframe_msg_t m;
    if (mtld_syncframe_feed(a, &h, frame + MTLD_SYNCFRAME_BYTES, 2, i, &m) != 1) continue;
    if (m.kind == MTLD_DELTA_BASE) {
      if (base_out) {
        *base_out = m;
        *base_last_out = m.last_offset;
      }
      continue;
    }
    if (base && mtld_syncframe_in_base(base, base_last, m.sender, m.last_offset)) continue;
    /* the payload is the chunks concatenated: (name, 0, name, 1, ...) */
    CHECK(m.len % 2 == 0);
    for (size_t k = 0; k < m.len; k += 2) CHECK(m.buf[k] == m.buf[0] && m.buf[k + 1] == k / 2);
    names[got++] = m.buf[0];
  }
  return got;
}

static void test_header(void) {
  mtld_syncframe_t h = {.sender = 1,
                        .seq = 2,
                        .chunk = 3,
                        .n = 4,
                        .shape = 5,
                        .consumed = 6,
                        .replay_from = -1,
                        .kind = MTLD_DELTA_BASE},
                   g;
  uint8_t p[MTLD_SYNCFRAME_BYTES];
  mtld_syncframe_put(p, &h);
  CHECK(mtld_syncframe_get(p, sizeof(p), &g) == 0);
  CHECK(g.sender == 1 && g.seq == 2 && g.chunk == 3 && g.n == 4 && g.shape == 5 &&
        g.consumed == 6 && g.replay_from == -1 && g.kind == MTLD_DELTA_BASE);
  CHECK(mtld_syncframe_get(p, sizeof(p) - 1, &g) == -1); /* truncated */
  p[7] = '1';                                            /* a version 1 frame */
  CHECK(mtld_syncframe_get(p, 56, &g) == -2);
  memcpy(p, "XXXXXXXX", 8);
  CHECK(mtld_syncframe_get(p, sizeof(p), &g) == -1);
}

static void test_reassembly(void) {
  mtld_syncframe_asm_t a;
  memset(&a, 0, sizeof(a));
  n_topic = 0;
  send(A, 1, 0, 3, MTLD_DELTA_DELTA, 'a');
  send(C, 1, 0, 2, MTLD_DELTA_DELTA, 'c'); /* interleaved senders */
  send(A, 1, 1, 3, MTLD_DELTA_DELTA, 'a');
  send(C, 1, 1, 2, MTLD_DELTA_DELTA, 'c');
  send(A, 1, 2, 3, MTLD_DELTA_DELTA, 'a');
  send(A, 2, 1, 2, MTLD_DELTA_DELTA, 'x'); /* a chunk without its start: dropped */
  uint8_t names[8];
  CHECK(feed(&a, 0, n_topic, 0, NULL, -1, names, NULL, NULL) == 2);
  CHECK(names[0] == 'c' && names[1] == 'a');
  mtld_syncframe_t h = topic[5].h;
  mtld_syncframe_msg_t m;
  CHECK(mtld_syncframe_feed(&a, &h, (const uint8_t *)"x", 1, 9, &m) == -1);
  mtld_syncframe_free(&a);
}

/* A, B, C train together; B writes a base while C's two-chunk delta is half
 * read; a newcomer D starts from that base. */
static void test_delta_straddling_base(void) {
  n_topic = 0;
  send(A, 1, 0, 1, MTLD_DELTA_DELTA, '1'); /* 0: in the base (B applied it) */
  send(C, 1, 0, 2, MTLD_DELTA_DELTA, '2'); /* 1: C's delta, first chunk ... */
  send(A, 2, 0, 1, MTLD_DELTA_DELTA, '3'); /* 2: in the base */
  send(B, 1, 0, 1, MTLD_DELTA_DELTA, '4'); /* 3: B's own, in the base */
  int base_at = n_topic;
  /* B has read offsets 0..3 and makes its base: C's delta is not in it */
  mtld_syncframe_asm_t ab;
  memset(&ab, 0, sizeof(ab));
  uint8_t names[16];
  CHECK(feed(&ab, 0, base_at, B, NULL, -1, names, NULL, NULL) == 2); /* '1', '3' */
  int64_t consumed = base_at - 1;
  int64_t replay_from = mtld_syncframe_replay_from(&ab, consumed);
  CHECK(replay_from == 1);                /* C's first chunk */
  send(B, 2, 0, 2, MTLD_DELTA_BASE, 'B'); /* 4, 5: the base, in two chunks */
  topic[n_topic - 1].h.consumed = consumed;
  topic[n_topic - 1].h.replay_from = replay_from;
  send(C, 1, 1, 2, MTLD_DELTA_DELTA, '2'); /* 5: ... C's second chunk */
  send(B, 2, 1, 2, MTLD_DELTA_BASE, 'B');  /* 6: the base's last chunk */
  topic[n_topic - 1].h.consumed = consumed;
  topic[n_topic - 1].h.replay_from = replay_from;
  send(B, 3, 0, 1, MTLD_DELTA_DELTA, '5'); /* 7: after the base */
  send(A, 3, 0, 1, MTLD_DELTA_DELTA, '6'); /* 8: after the base */

  /* D: pass 1 finds the latest base; pass 2 replays from its replay_from */
  mtld_syncframe_asm_t ad;
  memset(&ad, 0, sizeof(ad));
  mtld_syncframe_msg_t base;
  int64_t base_last = -1;
  memset(&base, 0, sizeof(base));
  feed(&ad, 0, n_topic, D_SELF, NULL, -1, names, &base, &base_last);
  CHECK(base.kind == MTLD_DELTA_BASE && base.sender == B && base_last == 6);
  CHECK(base.consumed == consumed && base.replay_from == replay_from);
  mtld_syncframe_reset(&ad);
  int from = (int)(base.replay_from >= 0 ? base.replay_from : base.consumed + 1);
  int got = feed(&ad, from, n_topic, D_SELF, &base, base_last, names, NULL, NULL);
  /* C's straddling delta whole, then B's and A's later ones; nothing of the
     base's content twice */
  CHECK(got == 3);
  CHECK(got == 3 && names[0] == '2' && names[1] == '5' && names[2] == '6');
  mtld_syncframe_free(&ab);
  mtld_syncframe_free(&ad);
}

int main(void) {
  test_header();
  test_reassembly();
  test_delta_straddling_base();
  return CHECK_DONE();
}
