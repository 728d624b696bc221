/* syncframe.h - the frames of the model topic (scaleout.model_topic,
 * daemon/modelsync.h): their header, the reassembly of a message sent in
 * chunks, and the rule by which a starting instance replays the topic after
 * a base.  No Kafka here: modelsync.c feeds it what it consumes.
 *
 * Frame (little-endian, 64 bytes): "MTLDMSY2" | u64 sender | u64 sequence |
 * u32 chunk | u32 chunks | u64 shape | i64 consumed | u32 kind | u32 round |
 * i64 replay_from; then a chunk of the encoded delta or base
 * (trainer/delta.h).  consumed and replay_from are set on a base's frames
 * (-1 otherwise): consumed is the offset of the last topic message its
 * author had read when it made the base; replay_from the offset from which
 * a starting instance must read to see every delta the base lacks - the
 * first chunk of a message the author was still reassembling (its chunks
 * straddle the base), else consumed + 1.  round, on a DELTA's frames, is
 * the number of non-empty deltas its sender had published with it (the
 * sender's clock for scaleout.max_stale_rounds; an empty DELTA is an idle
 * marker: nothing learned since); 0 on a base and from writers that predate
 * it (written as 0 then: not tracked).  Version 1 frames ("MTLDMSY1", 56
 * bytes, no replay_from) are told apart and ignored.
 *
 * Thread: an assembler belongs to its caller (modelsync's main thread). */
#ifndef MTLD_SYNCFRAME_H
#define MTLD_SYNCFRAME_H

#include <stddef.h>
#include <stdint.h>

#define MTLD_SYNCFRAME_MAGIC "MTLDMSY2"
#define MTLD_SYNCFRAME_BYTES 64
#define MTLD_SYNCFRAME_SENDERS 64 /* senders reassembled at once */

typedef struct {
  uint64_t sender, seq;
  uint32_t chunk, n;
  uint64_t shape;
  int64_t consumed, replay_from; /* a base's marks (above), else -1 */
  int kind;                      /* mtld_delta_kind_t */
  uint32_t round;                /* a DELTA's round (above), else 0 */
} mtld_syncframe_t;

/* Writes h's header into p[MTLD_SYNCFRAME_BYTES]. */
void mtld_syncframe_put(uint8_t *p, const mtld_syncframe_t *h);

/* Reads the header of a message of len bytes into h.  Returns 0; -1 when it
 * is not a model frame; -2 when it is one of another version. */
int mtld_syncframe_get(const uint8_t *p, size_t len, mtld_syncframe_t *h);

typedef struct { /* one sender's message being reassembled */
  int used;
  uint64_t sender, seq;
  uint32_t got, n;
  int kind;
  uint32_t round;
  int64_t consumed, replay_from, first_offset;
  uint8_t *buf;
  size_t len, cap;
} mtld_syncframe_part_t;

typedef struct {
  mtld_syncframe_part_t parts[MTLD_SYNCFRAME_SENDERS];
  uint64_t evicted; /* slots taken from another sender (more senders than slots) */
} mtld_syncframe_asm_t;

/* A reassembled message: borrowed from the assembler, valid until the next
 * feed or reset. */
typedef struct {
  uint64_t sender;
  int kind;
  uint32_t round;                    /* a DELTA's round, else 0 */
  int64_t first_offset, last_offset; /* offsets of its first and last chunk */
  int64_t consumed, replay_from;     /* a base's marks, else -1 */
  const uint8_t *buf;
  size_t len;
} mtld_syncframe_msg_t;

/* Adds the chunk (header h, payload of plen bytes) read at offset.  Returns
 * 1 when it completed a message (*out filled), 0 when more chunks are due,
 * -1 when it was dropped (a chunk whose message's start this assembler did
 * not see), -2 out of memory (the message is dropped). */
int mtld_syncframe_feed(mtld_syncframe_asm_t *a, const mtld_syncframe_t *h, const uint8_t *payload,
                        size_t plen, int64_t offset, mtld_syncframe_msg_t *out);

/* Forgets every message in reassembly (keeps the buffers). */
void mtld_syncframe_reset(mtld_syncframe_asm_t *a);

/* Frees the buffers. */
void mtld_syncframe_free(mtld_syncframe_asm_t *a);

/* The replay_from mark of a base made now by an instance that had read up to
 * offset consumed: the first offset of the oldest message still in
 * reassembly, else consumed + 1. */
int64_t mtld_syncframe_replay_from(const mtld_syncframe_asm_t *a, int64_t consumed);

/* Whether a delta completed at offset last_offset by sender is already in
 * the base b (so a starting instance that loaded b must not apply it): the
 * base author's own deltas before the base's last chunk (base_last_offset),
 * and every other delta completed at or before the base's consumed mark. */
int mtld_syncframe_in_base(const mtld_syncframe_msg_t *base, int64_t base_last_offset,
                           uint64_t sender, int64_t last_offset);

#endif
