/* serial.c - hashed byte streams for trainer checkpoints (see serial.h). */
#include "trainer/serial.h"

#include <stdlib.h>
#include <string.h>

mtld_status_t mtld_wr_open(mtld_wr_t *w, FILE *f) {
  memset(w, 0, sizeof(*w));
  w->f = f;
  w->h = XXH64_createState();
  if (!w->h) return w->st = MTLD_ERR_NOMEM;
  XXH64_reset(w->h, 0);
  return MTLD_OK;
}

mtld_status_t mtld_wr_open_mem(mtld_wr_t *w, void *buf, size_t cap) {
  mtld_status_t st = mtld_wr_open(w, NULL);
  w->buf = buf; /* the caller's either way: close leaves it in w->buf */
  w->cap = buf ? cap : 0;
  return st;
}

static void wr_raw(mtld_wr_t *w, const void *p, size_t n) {
  if (w->st != MTLD_OK || n == 0) return;
  if (w->f) {
    if (fwrite(p, 1, n, w->f) != n) w->st = MTLD_ERR_IO;
    return;
  }
  if (w->len + n > w->cap) {
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + n) cap *= 2;
    unsigned char *nb = realloc(w->buf, cap);
    if (!nb) {
      w->st = MTLD_ERR_NOMEM;
      return;
    }
    w->buf = nb;
    w->cap = cap;
  }
  memcpy(w->buf + w->len, p, n);
  w->len += n;
}

void mtld_wr_bytes(mtld_wr_t *w, const void *p, size_t n) {
  if (w->st != MTLD_OK) return;
  XXH64_update(w->h, p, n);
  wr_raw(w, p, n);
}

void mtld_wr_checksum(mtld_wr_t *w) {
  if (w->st != MTLD_OK) return;
  uint64_t sum = XXH64_digest(w->h);
  wr_raw(w, &sum, sizeof(sum));
}

void mtld_wr_close(mtld_wr_t *w) {
  if (w->h) XXH64_freeState(w->h);
  w->h = NULL;
}

mtld_status_t mtld_rd_open(mtld_rd_t *r, FILE *f, const void *buf, size_t len) {
  memset(r, 0, sizeof(*r));
  r->f = f;
  r->buf = buf;
  r->len = len;
  r->h = XXH64_createState();
  if (!r->h) return r->st = MTLD_ERR_NOMEM;
  XXH64_reset(r->h, 0);
  return MTLD_OK;
}

static void rd_raw(mtld_rd_t *r, void *p, size_t n) {
  if (r->st != MTLD_OK) {
    memset(p, 0, n);
    return;
  }
  if (r->f) {
    if (fread(p, 1, n, r->f) != n) {
      memset(p, 0, n);
      r->st = ferror(r->f) ? MTLD_ERR_IO : MTLD_ERR_CORRUPT;
    }
    return;
  }
  if (r->len - r->pos < n) {
    memset(p, 0, n);
    r->st = MTLD_ERR_CORRUPT;
    return;
  }
  memcpy(p, r->buf + r->pos, n);
  r->pos += n;
}

void mtld_rd_bytes(mtld_rd_t *r, void *p, size_t n) {
  rd_raw(r, p, n);
  if (r->st == MTLD_OK) XXH64_update(r->h, p, n);
}

void mtld_rd_checksum(mtld_rd_t *r) {
  if (r->st != MTLD_OK) return;
  uint64_t want = XXH64_digest(r->h), got = 0;
  rd_raw(r, &got, sizeof(got));
  if (r->st == MTLD_OK && got != want) r->st = MTLD_ERR_CORRUPT;
}

void mtld_rd_close(mtld_rd_t *r) {
  if (r->h) XXH64_freeState(r->h);
  r->h = NULL;
}
