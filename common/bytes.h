/* bytes.h - fixed-width integers in byte buffers, one copy for every file
 * format and key mtld writes: little-endian values (feature records, joiner
 * entries, meta values) and big-endian keys (RocksDB orders keys bytewise, so
 * a big-endian unsigned number sorts as the number), plus the base-128 varint
 * of protobuf's length prefixes.  Explicit byte order: the encodings do not
 * depend on the host.  Callers guarantee the room (4, 8 or MTLD_VARINT_MAX
 * bytes).  Pure functions: any thread. */
#ifndef MTLD_BYTES_H
#define MTLD_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MTLD_VARINT_MAX 10 /* bytes of the longest uint64 varint */

static inline void mtld_put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void mtld_put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t mtld_get_le32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static inline uint64_t mtld_get_le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* IEEE-754 bits of a float / double, little-endian. */
static inline void mtld_put_f32(uint8_t *p, float f) {
  uint32_t v;
  memcpy(&v, &f, 4);
  mtld_put_le32(p, v);
}
static inline float mtld_get_f32(const uint8_t *p) {
  uint32_t v = mtld_get_le32(p);
  float f;
  memcpy(&f, &v, 4);
  return f;
}
static inline void mtld_put_f64(uint8_t *p, double d) {
  uint64_t v;
  memcpy(&v, &d, 8);
  mtld_put_le64(p, v);
}
static inline double mtld_get_f64(const uint8_t *p) {
  uint64_t v = mtld_get_le64(p);
  double d;
  memcpy(&d, &v, 8);
  return d;
}

static inline void mtld_put_be32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static inline void mtld_put_be64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static inline uint32_t mtld_get_be32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v = v << 8 | p[i];
  return v;
}
static inline uint64_t mtld_get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

/* Writes v as a protobuf varint (7 bits a byte, low first, high bit = more)
 * into p (MTLD_VARINT_MAX bytes of room); returns the bytes written, 1..10. */
static inline size_t mtld_put_uvarint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  for (; v >= 0x80; v >>= 7) p[n++] = (uint8_t)((v & 0x7f) | 0x80);
  p[n++] = (uint8_t)v;
  return n;
}

/* Reads a varint from the len bytes at p into *v; returns the bytes read
 * (1..10), 0 when p ends inside it, -1 when it is longer than
 * MTLD_VARINT_MAX bytes (malformed). */
static inline int mtld_get_uvarint(const uint8_t *p, size_t len, uint64_t *v) {
  uint64_t x = 0;
  for (size_t i = 0; i < MTLD_VARINT_MAX; i++) {
    if (i == len) return 0;
    x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (!(p[i] & 0x80)) {
      *v = x;
      return (int)i + 1;
    }
  }
  return -1;
}

#endif
