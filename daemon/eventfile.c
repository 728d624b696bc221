/* eventfile.c - reading and writing event files (replay, generator, producer).
 *
 * The reader keeps one growing buffer filled with read(2) (not stdio, so a
 * pipe yields a record as soon as its bytes have arrived) and hands out
 * records as pointers into it.  Framing problems (a truncated varint or body,
 * a length over MTLD_EVENTFILE_MAX_RECORD, an overlong JSON line) are errors
 * naming the record index and byte offset; they are sticky: the bytes after a
 * broken frame cannot be trusted. */
#include "daemon/eventfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bytes.h"

/* Sanity cap on one record: a larger length is taken for corruption. */
#define MTLD_EVENTFILE_MAX_RECORD ((size_t)64 << 20)
#define MTLD_EVENTFILE_CHUNK ((size_t)64 << 10)

struct mtld_eventfile {
  int fd;
  bool own_fd;
  bool eof;
  mtld_format_t fmt;
  uint8_t *buf;
  size_t cap;
  size_t start, end; /* unread bytes are buf[start..end) */
  size_t scan;       /* JSON: bytes after start already searched for '\n' */
  uint64_t buf_off;  /* file offset of buf[0] */
  int64_t next_index;
  char failed[256]; /* sticky framing/I/O error, "" when none */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Reads until at least `need` unread bytes are buffered or the file ends.
 * Returns 0, or -1 on a read error (errno set). */
static int fill(mtld_eventfile_t *f, size_t need) {
  const size_t room = MTLD_EVENTFILE_CHUNK / 2; /* least free space worth a read */
  while (f->end - f->start < need && !f->eof) {
    if (f->start > 0 && (f->cap - f->end < room || f->cap - f->start < need)) {
      memmove(f->buf, f->buf + f->start, f->end - f->start);
      f->buf_off += f->start;
      f->end -= f->start;
      f->start = 0;
    }
    if (f->cap < need || f->cap - f->end < room) {
      /* double, or exactly what a big record needs (no 2x overshoot at 64 MiB) */
      size_t ncap = f->cap ? f->cap * 2 : MTLD_EVENTFILE_CHUNK;
      if (ncap < need + room) ncap = need + room;
      uint8_t *nb = realloc(f->buf, ncap);
      if (!nb) {
        errno = ENOMEM;
        return -1;
      }
      f->buf = nb;
      f->cap = ncap;
    }
    ssize_t n = read(f->fd, f->buf + f->end, f->cap - f->end);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) f->eof = true;
    f->end += (size_t)n;
  }
  return 0;
}

static void reset(mtld_eventfile_t *f) {
  f->eof = false;
  f->start = f->end = f->scan = 0;
  f->buf_off = 0;
  f->next_index = 0;
  f->failed[0] = '\0';
}

mtld_status_t mtld_eventfile_open(mtld_eventfile_t **out, const char *path, mtld_format_t fmt,
                                  char *err, size_t errlen) {
  *out = NULL;
  if (fmt != MTLD_FMT_AUTO && fmt != MTLD_FMT_PROTOBUF && fmt != MTLD_FMT_JSON) {
    set_err(err, errlen, "%s: unknown format %d", path, (int)fmt);
    return MTLD_ERR_INVALID;
  }
  mtld_eventfile_t *f = calloc(1, sizeof *f);
  if (!f) {
    set_err(err, errlen, "%s: out of memory", path);
    return MTLD_ERR_NOMEM;
  }
  if (strcmp(path, "-") == 0) {
    f->fd = STDIN_FILENO;
  } else {
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
      set_err(err, errlen, "%s: %s", path, strerror(errno));
      free(f);
      return MTLD_ERR_IO;
    }
    f->own_fd = true;
  }
  reset(f);
  if (fill(f, 1) < 0) {
    set_err(err, errlen, "%s: %s", path, strerror(errno));
    mtld_eventfile_close(f);
    return MTLD_ERR_IO;
  }
  if (fmt == MTLD_FMT_AUTO) {
    uint8_t c = f->end > f->start ? f->buf[f->start] : 0;
    bool json = c == '{' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
    fmt = json ? MTLD_FMT_JSON : MTLD_FMT_PROTOBUF;
  }
  f->fmt = fmt;
  *out = f;
  return MTLD_OK;
}

mtld_format_t mtld_eventfile_format(const mtld_eventfile_t *f) {
  return f->fmt;
}

void mtld_eventfile_close(mtld_eventfile_t *f) {
  if (!f) return;
  if (f->own_fd) close(f->fd);
  free(f->buf);
  free(f);
}

/* Records a sticky error and returns -1. */
static int frame_error(mtld_eventfile_t *f, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int frame_error(mtld_eventfile_t *f, char *err, size_t errlen, const char *fmt, ...) {
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(f->failed, sizeof f->failed, "record %" PRId64 " at byte offset %" PRIu64 ": %s",
           f->next_index, f->buf_off + f->start, msg);
  set_err(err, errlen, "%s", f->failed);
  return -1;
}

static int next_pb(mtld_eventfile_t *f, const void **buf, size_t *len, char *err, size_t errlen) {
  if (fill(f, MTLD_VARINT_MAX) < 0) return frame_error(f, err, errlen, "%s", strerror(errno));
  size_t avail = f->end - f->start;
  if (avail == 0) return 0;
  const uint8_t *p = f->buf + f->start;
  uint64_t n = 0;
  size_t hdr = 0;
  for (;;) {
    if (hdr == avail) return frame_error(f, err, errlen, "truncated length (file ends)");
    if (hdr == MTLD_VARINT_MAX) return frame_error(f, err, errlen, "malformed length varint");
    uint8_t b = p[hdr];
    n |= (uint64_t)(b & 0x7f) << (7 * hdr);
    hdr++;
    if (!(b & 0x80)) break;
    if (n > MTLD_EVENTFILE_MAX_RECORD) break; /* checked below: no need to read on */
  }
  if (n > MTLD_EVENTFILE_MAX_RECORD)
    return frame_error(f, err, errlen, "record length %" PRIu64 "%s over the %zu-byte limit", n,
                       p[hdr - 1] & 0x80 ? "+" : "", MTLD_EVENTFILE_MAX_RECORD);
  if (fill(f, hdr + (size_t)n) < 0) return frame_error(f, err, errlen, "%s", strerror(errno));
  if (f->end - f->start < hdr + n)
    return frame_error(f, err, errlen, "truncated record: %zu of %" PRIu64 " bytes",
                       f->end - f->start - hdr, n);
  *buf = f->buf + f->start + hdr;
  *len = (size_t)n;
  f->start += hdr + (size_t)n;
  return 1;
}

static bool blank_line(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return false;
  return true;
}

static int next_json(mtld_eventfile_t *f, const void **buf, size_t *len, char *err, size_t errlen) {
  for (;;) {
    const uint8_t *nl = NULL;
    for (;;) {
      size_t avail = f->end - f->start;
      if (f->scan < avail) nl = memchr(f->buf + f->start + f->scan, '\n', avail - f->scan);
      if (nl || f->eof) break;
      f->scan = avail;
      if (avail > MTLD_EVENTFILE_MAX_RECORD)
        return frame_error(f, err, errlen, "line longer than %zu bytes", MTLD_EVENTFILE_MAX_RECORD);
      if (fill(f, avail + 1) < 0) return frame_error(f, err, errlen, "%s", strerror(errno));
    }
    const uint8_t *line = f->buf + f->start;
    size_t n = nl ? (size_t)(nl - line) : f->end - f->start;
    if (!nl && n == 0) return 0;
    if (n > MTLD_EVENTFILE_MAX_RECORD)
      return frame_error(f, err, errlen, "line longer than %zu bytes", MTLD_EVENTFILE_MAX_RECORD);
    f->start += n + (nl ? 1 : 0);
    f->scan = 0;
    if (blank_line(line, n)) continue; /* no index for blank lines */
    if (line[n - 1] == '\r') n--;
    *buf = line;
    *len = n;
    return 1;
  }
}

int mtld_eventfile_next(mtld_eventfile_t *f, const void **buf, size_t *len, int64_t *index,
                        char *err, size_t errlen) {
  if (f->failed[0]) {
    set_err(err, errlen, "%s", f->failed);
    return -1;
  }
  int r = f->fmt == MTLD_FMT_JSON ? next_json(f, buf, len, err, errlen)
                                  : next_pb(f, buf, len, err, errlen);
  if (r == 1) *index = f->next_index++;
  return r;
}

mtld_status_t mtld_eventfile_seek_index(mtld_eventfile_t *f, int64_t index, char *err,
                                        size_t errlen) {
  if (index < 0) {
    set_err(err, errlen, "negative record index %" PRId64, index);
    return MTLD_ERR_INVALID;
  }
  if (index < f->next_index) { /* rewind: only regular files can */
    struct stat st;
    if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode) || lseek(f->fd, 0, SEEK_SET) != 0) {
      set_err(err, errlen, "cannot go back to record %" PRId64 " (at %" PRId64 ") on this input",
              index, f->next_index);
      return MTLD_ERR_INVALID;
    }
    reset(f);
  }
  while (f->next_index < index) {
    const void *buf;
    size_t len;
    int64_t idx;
    char msg[256];
    int r = mtld_eventfile_next(f, &buf, &len, &idx, msg, sizeof msg);
    if (r == 0) {
      set_err(err, errlen, "cannot resume at record %" PRId64 ": the file has %" PRId64 " records",
              index, f->next_index);
      return MTLD_ERR_INVALID;
    }
    if (r < 0) {
      set_err(err, errlen, "cannot resume at record %" PRId64 ": %s", index, msg);
      return MTLD_ERR_INVALID;
    }
  }
  return MTLD_OK;
}

mtld_status_t mtld_eventfile_write(FILE *out, mtld_format_t fmt, const void *buf, size_t len) {
  if (fmt == MTLD_FMT_PROTOBUF) {
    if (len > MTLD_EVENTFILE_MAX_RECORD) return MTLD_ERR_INVALID; /* readers would refuse it */
    uint8_t hdr[MTLD_VARINT_MAX];
    size_t n = mtld_put_uvarint(hdr, len);
    if (fwrite(hdr, 1, n, out) != n) return MTLD_ERR_IO;
    if (len && fwrite(buf, 1, len, out) != len) return MTLD_ERR_IO;
    return MTLD_OK;
  }
  if (fmt == MTLD_FMT_JSON) {
    if (len > MTLD_EVENTFILE_MAX_RECORD || (len && memchr(buf, '\n', len))) return MTLD_ERR_INVALID;
    if (len && fwrite(buf, 1, len, out) != len) return MTLD_ERR_IO;
    if (fputc('\n', out) == EOF) return MTLD_ERR_IO;
    return MTLD_OK;
  }
  return MTLD_ERR_INVALID; /* AUTO is no format to write */
}
