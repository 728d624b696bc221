/* source_file.c - replay an event file through the same path as Kafka.
 *
 * The file is one partition (0) of the topic "file:<path>"; a record's
 * offset is its index in the file, so the store's offsets make a replay
 * resumable and exactly once like a Kafka partition. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/eventfile.h"
#include "daemon/source_int.h"

typedef struct {
  mtld_source_t base;
  mtld_eventfile_t *file;
  char topic[1100];
  int ended;
  /* copies of the records handed out by the last poll (the file reader's
   * buffer is reused on every read) */
  char *buf;
  size_t buf_cap;
} file_source_t;

static int file_poll(mtld_source_t *src, mtld_record_t *recs, int max, int timeout_ms, char *err,
                     size_t errlen) {
  file_source_t *fs = (file_source_t *)src;
  if (fs->ended) return -1;
  size_t used = 0;
  size_t lens[max];
  int64_t idx[max];
  int n = 0;
  while (n < max) {
    const void *buf;
    size_t len;
    int r = mtld_eventfile_next(fs->file, &buf, &len, &idx[n], err, errlen);
    if (r <= 0) {
      fs->ended = 1;
      if (n == 0) return -1;
      break;
    }
    if (used + len + 1 > fs->buf_cap) {
      size_t cap = fs->buf_cap ? fs->buf_cap : 1 << 16;
      while (cap < used + len + 1) cap *= 2;
      char *nb = realloc(fs->buf, cap);
      if (!nb) {
        snprintf(err, errlen, "out of memory reading %s", fs->topic);
        fs->ended = 1;
        return -1;
      }
      fs->buf = nb;
      fs->buf_cap = cap;
    }
    memcpy(fs->buf + used, buf, len);
    lens[n] = len;
    used += len;
    n++;
  }
  /* pointers are taken after the buffer stopped moving */
  size_t pos = 0;
  for (int i = 0; i < n; i++) {
    recs[i] = (mtld_record_t){.payload = fs->buf + pos,
                              .len = lens[i],
                              .key = NULL,
                              .key_len = 0,
                              .topic = fs->topic,
                              .partition = 0,
                              .offset = idx[i]};
    pos += lens[i];
  }
  return n;
}

static void file_close(mtld_source_t *src) {
  file_source_t *fs = (file_source_t *)src;
  mtld_eventfile_close(fs->file);
  free(fs->buf);
  free(fs);
}

static const mtld_source_ops_t file_ops = {.poll = file_poll, .close = file_close};

mtld_status_t mtld_source_file_new(mtld_source_t **out, const mtld_config_t *cfg,
                                   const mtld_source_hooks_t *hooks, char *err, size_t errlen) {
  file_source_t *fs = calloc(1, sizeof(*fs));
  if (!fs) return MTLD_ERR_NOMEM;
  fs->base.ops = &file_ops;
  fs->base.hooks = *hooks;
  mtld_source_file_topic(cfg, fs->topic, sizeof(fs->topic));
  mtld_status_t st = mtld_eventfile_open(&fs->file, cfg->source_file, cfg->format, err, errlen);
  if (st != MTLD_OK) {
    free(fs);
    return st;
  }
  int64_t next = 0, max_time = INT64_MIN;
  if (hooks->resume && hooks->resume(hooks->ctx, fs->topic, 0, &next, &max_time) == MTLD_OK &&
      next > 0) {
    st = mtld_eventfile_seek_index(fs->file, next, err, errlen);
    if (st != MTLD_OK) {
      mtld_eventfile_close(fs->file);
      free(fs);
      return st;
    }
  }
  if (hooks->assigned) hooks->assigned(hooks->ctx, fs->topic, 0, max_time);
  *out = &fs->base;
  return MTLD_OK;
}

void mtld_source_file_topic(const mtld_config_t *cfg, char *out, size_t outlen) {
  snprintf(out, outlen, "file:%s", cfg->source_file);
}
