/* syncframe.c - model topic frames and their reassembly (see syncframe.h). */
#include "daemon/syncframe.h"

#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"

void mtld_syncframe_put(uint8_t *p, const mtld_syncframe_t *h) {
  memcpy(p, MTLD_SYNCFRAME_MAGIC, 8);
  mtld_put_le64(p + 8, h->sender);
  mtld_put_le64(p + 16, h->seq);
  mtld_put_le32(p + 24, h->chunk);
  mtld_put_le32(p + 28, h->n);
  mtld_put_le64(p + 32, h->shape);
  mtld_put_le64(p + 40, (uint64_t)h->consumed);
  mtld_put_le32(p + 48, (uint32_t)h->kind);
  mtld_put_le32(p + 52, h->round);
  mtld_put_le64(p + 56, (uint64_t)h->replay_from);
}

int mtld_syncframe_get(const uint8_t *p, size_t len, mtld_syncframe_t *h) {
  if (len < 8 || memcmp(p, MTLD_SYNCFRAME_MAGIC, 7) != 0) return -1;
  if (p[7] != (uint8_t)MTLD_SYNCFRAME_MAGIC[7]) return -2;
  if (len < MTLD_SYNCFRAME_BYTES) return -1;
  h->sender = mtld_get_le64(p + 8);
  h->seq = mtld_get_le64(p + 16);
  h->chunk = mtld_get_le32(p + 24);
  h->n = mtld_get_le32(p + 28);
  h->shape = mtld_get_le64(p + 32);
  h->consumed = (int64_t)mtld_get_le64(p + 40);
  h->kind = (int)mtld_get_le32(p + 48);
  h->round = mtld_get_le32(p + 52);
  h->replay_from = (int64_t)mtld_get_le64(p + 56);
  return h->n == 0 || h->chunk >= h->n ? -1 : 0;
}

static mtld_syncframe_part_t *slot_of(mtld_syncframe_asm_t *a, uint64_t sender) {
  mtld_syncframe_part_t *free_slot = NULL;
  for (int i = 0; i < MTLD_SYNCFRAME_SENDERS; i++) {
    if (a->parts[i].used && a->parts[i].sender == sender) return &a->parts[i];
    if (!a->parts[i].used && !free_slot) free_slot = &a->parts[i];
  }
  if (!free_slot) { /* more senders than slots: take one in turn */
    free_slot = &a->parts[a->evicted % MTLD_SYNCFRAME_SENDERS];
    a->evicted++;
  }
  free_slot->used = 1;
  free_slot->sender = sender;
  free_slot->got = free_slot->n = 0;
  return free_slot;
}

int mtld_syncframe_feed(mtld_syncframe_asm_t *a, const mtld_syncframe_t *h, const uint8_t *payload,
                        size_t plen, int64_t offset, mtld_syncframe_msg_t *out) {
  mtld_syncframe_part_t *p = slot_of(a, h->sender);
  if (h->chunk == 0) {
    p->seq = h->seq;
    p->n = h->n;
    p->got = 0;
    p->len = 0;
    p->kind = h->kind;
    p->round = h->round;
    p->consumed = h->consumed;
    p->replay_from = h->replay_from;
    p->first_offset = offset;
  } else if (p->got == 0 || p->seq != h->seq || p->got != h->chunk || p->n != h->n) {
    p->used = 0; /* a message whose start we did not see (before our first offset) */
    return -1;
  }
  if (p->len + plen > p->cap) {
    size_t cap = p->cap ? p->cap : 4096;
    while (cap < p->len + plen) cap *= 2;
    uint8_t *b = realloc(p->buf, cap);
    if (!b) {
      p->used = 0;
      return -2;
    }
    p->buf = b;
    p->cap = cap;
  }
  if (plen) memcpy(p->buf + p->len, payload, plen);
  p->len += plen;
  if (++p->got < p->n) return 0;
  p->used = 0; /* complete: the slot is free again, its buffer reused */
  out->sender = p->sender;
  out->kind = p->kind;
  out->round = p->round;
  out->first_offset = p->first_offset;
  out->last_offset = offset;
  out->consumed = p->consumed;
  out->replay_from = p->replay_from;
  out->buf = p->buf;
  out->len = p->len;
  return 1;
}

void mtld_syncframe_reset(mtld_syncframe_asm_t *a) {
  for (int i = 0; i < MTLD_SYNCFRAME_SENDERS; i++) a->parts[i].used = 0;
}

void mtld_syncframe_free(mtld_syncframe_asm_t *a) {
  for (int i = 0; i < MTLD_SYNCFRAME_SENDERS; i++) {
    free(a->parts[i].buf);
    a->parts[i].buf = NULL;
    a->parts[i].cap = 0;
    a->parts[i].used = 0;
  }
}

int64_t mtld_syncframe_replay_from(const mtld_syncframe_asm_t *a, int64_t consumed) {
  int64_t from = consumed + 1;
  for (int i = 0; i < MTLD_SYNCFRAME_SENDERS; i++) {
    const mtld_syncframe_part_t *p = &a->parts[i];
    if (p->used && p->got > 0 && p->first_offset < from) from = p->first_offset;
  }
  return from;
}

int mtld_syncframe_in_base(const mtld_syncframe_msg_t *base, int64_t base_last_offset,
                           uint64_t sender, int64_t last_offset) {
  if (sender == base->sender) return last_offset <= base_last_offset;
  return last_offset <= base->consumed;
}
