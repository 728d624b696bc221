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

/* IEEE-754 bits of a float / double, little-endian (union punning is
 * defined in C). */
typedef union {
  float f;
  uint32_t u;
} mtld_f32_bits_t;
typedef union {
  double d;
  uint64_t u;
} mtld_f64_bits_t;
static inline void mtld_put_f32(uint8_t *p, float f) {
  mtld_put_le32(p, ((mtld_f32_bits_t){.f = f}).u);
}
static inline float mtld_get_f32(const uint8_t *p) {
  return ((mtld_f32_bits_t){.u = mtld_get_le32(p)}).f;
}
static inline void mtld_put_f64(uint8_t *p, double d) {
  mtld_put_le64(p, ((mtld_f64_bits_t){.d = d}).u);
}
static inline double mtld_get_f64(const uint8_t *p) {
  return ((mtld_f64_bits_t){.u = mtld_get_le64(p)}).d;
}

/* Big-endian: the little-endian bytes of the byte-swapped value. */
static inline void mtld_put_be32(uint8_t *p, uint32_t v) {
  mtld_put_le32(p, __builtin_bswap32(v));
}
static inline void mtld_put_be64(uint8_t *p, uint64_t v) {
  mtld_put_le64(p, __builtin_bswap64(v));
}
static inline uint32_t mtld_get_be32(const uint8_t *p) {
  return __builtin_bswap32(mtld_get_le32(p));
}
static inline uint64_t mtld_get_be64(const uint8_t *p) {
  return __builtin_bswap64(mtld_get_le64(p));
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
