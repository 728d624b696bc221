/* serial.h - the byte stream under trainer checkpoints: a writer and a reader
 * over either a FILE* or a memory buffer, both hashing every byte with XXH64
 * so the trailer checksum covers the whole state.  Errors stick: after the
 * first failure every call is a no-op and `st` tells what went wrong (checked
 * once at the end, SQLite style).  Private to trainer/. */
#ifndef MTLD_SERIAL_H
#define MTLD_SERIAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <xxhash.h>

#include "common/status.h"

typedef struct {
  FILE *f;            /* file sink, or NULL for memory */
  unsigned char *buf; /* memory sink (grown with realloc; caller frees) */
  size_t len, cap;
  XXH64_state_t *h;
  mtld_status_t st;
} mtld_wr_t;

typedef struct {
  FILE *f;                  /* file source, or NULL for memory */
  const unsigned char *buf; /* memory source */
  size_t len, pos;
  XXH64_state_t *h;
  mtld_status_t st;
} mtld_rd_t;

/* Opens a writer on f (f != NULL) or on a fresh memory buffer (f == NULL). */
mtld_status_t mtld_wr_open(mtld_wr_t *w, FILE *f);
/* Opens a memory writer on buf (cap bytes, malloc'ed; may be NULL with cap
 * 0): written from its start, grown with realloc when too small.  Reusing
 * the buffer of an earlier state spares the page faults of a fresh one. */
mtld_status_t mtld_wr_open_mem(mtld_wr_t *w, void *buf, size_t cap);
void mtld_wr_bytes(mtld_wr_t *w, const void *p, size_t n);
/* Appends the XXH64 of everything written so far (not hashed itself). */
void mtld_wr_checksum(mtld_wr_t *w);
/* Frees the hash state; a memory buffer stays with the caller (w->buf). */
void mtld_wr_close(mtld_wr_t *w);

mtld_status_t mtld_rd_open(mtld_rd_t *r, FILE *f, const void *buf, size_t len);
void mtld_rd_bytes(mtld_rd_t *r, void *p, size_t n);
/* Reads the trailer and compares it with the hash of what was read; sets
 * st = MTLD_ERR_CORRUPT on mismatch. */
void mtld_rd_checksum(mtld_rd_t *r);
void mtld_rd_close(mtld_rd_t *r);

#define MTLD_WR(w, x) mtld_wr_bytes((w), &(x), sizeof(x))
#define MTLD_RD(r, x) mtld_rd_bytes((r), &(x), sizeof(x))

#endif
