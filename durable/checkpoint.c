/* checkpoint.c - checkpoint directories: begin, commit, find the newest valid
 * one, restore (see checkpoint.h).  This file knows the checkpoint's layout;
 * what is inside store/ is the store's business (features/store.h writes,
 * recognises and restores it). */
#define _GNU_SOURCE
#include "durable/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/fs.h"
#include "features/store.h"

#define PREFIX "checkpoint-"
#define TMP_SUFFIX ".tmp"
#define META_MAX ((size_t)16 << 20)
mtld_status_t mtld_checkpoint_write_file(const char *dir, const char *name, const void *buf,
                                         size_t len, char *err, size_t errlen) {
  MTLD_CHECK_DIR_LEN(dir);
  char path[PATH_MAX], tmp[PATH_MAX];
  mtld_pathf(path, sizeof path, "%s/%s", dir, name);
  mtld_pathf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    return MTLD_ERR_IO;
  }
  int bad = mtld_write_all(fd, buf, len) != 0 || fsync(fd) != 0;
  int e = errno;
  if (close(fd) != 0 && !bad) bad = 1, e = errno;
  if (!bad && rename(tmp, path) != 0) bad = 1, e = errno;
  if (!bad && mtld_fsync_dir(dir) != 0) bad = 1, e = errno;
  if (bad) {
    unlink(tmp);
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
    return MTLD_ERR_IO;
  }
  return MTLD_OK;
}

/* ---- meta ----------------------------------------------------------------- */

typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} sbuf_t;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf_t *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = 1;
      return;
    }
    if (b->p && b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap ? b->cap * 2 : 1024;
    while (cap <= b->len + (size_t)n) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
}

static int topic_ok(const char *t) {
  if (!t[0]) return 0;
  for (const char *c = t; *c; c++)
    if (*c <= ' ' || *c == 0x7f) return 0;
  return strnlen(t, MTLD_TOPIC_MAX) < MTLD_TOPIC_MAX;
}

mtld_status_t mtld_checkpoint_write_meta(const char *dir, const mtld_checkpoint_meta_t *m,
                                         char *err, size_t errlen) {
  sbuf_t b = {0};
  sb_printf(&b,
            "mtld-checkpoint %d\nid %" PRIu64 "\ncreated_ms %" PRId64 "\nwatermark_ms %" PRId64
            "\nsamples %" PRIu64 "\n",
            MTLD_CHECKPOINT_META_VERSION, m->id, m->created_ms, m->watermark_ms, m->samples);
  for (int i = 0; i < m->n_offsets; i++) {
    const mtld_source_offset_t *o = &m->offsets[i];
    if (!topic_ok(o->topic)) {
      free(b.p);
      snprintf(err, errlen, "checkpoint meta: bad topic name \"%.64s\"", o->topic);
      return MTLD_ERR_INVALID;
    }
    sb_printf(&b, "offset %s %" PRId32 " %" PRId64 " %" PRId64 "\n", o->topic, o->partition,
              o->next_offset, o->max_time_ms);
  }
  uint64_t h = b.oom ? 0 : XXH64(b.p, b.len, 0);
  sb_printf(&b, "xxh64 %016" PRIx64 "\n", h);
  if (b.oom) {
    free(b.p);
    snprintf(err, errlen, "checkpoint meta: out of memory");
    return MTLD_ERR_NOMEM;
  }
  mtld_status_t st = mtld_checkpoint_write_file(dir, "meta", b.p, b.len, err, errlen);
  free(b.p);
  return st;
}

void mtld_checkpoint_meta_free(mtld_checkpoint_meta_t *m) {
  free(m->offsets);
  memset(m, 0, sizeof(*m));
}

/* Reads a whole (small) file; MTLD_ERR_NOTFOUND when absent. */
static mtld_status_t slurp(const char *path, size_t max, char **out, size_t *len, char *err,
                           size_t errlen) {
  *out = NULL;
  *len = 0;
  FILE *f = fopen(path, "rbe");
  if (!f) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return errno == ENOENT ? MTLD_ERR_NOTFOUND : MTLD_ERR_IO;
  }
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || (size_t)sb.st_size > max) {
    fclose(f);
    snprintf(err, errlen, "%s: unreadable or too large", path);
    return MTLD_ERR_CORRUPT;
  }
  char *buf = malloc((size_t)sb.st_size + 1);
  if (!buf) {
    fclose(f);
    snprintf(err, errlen, "%s: out of memory", path);
    return MTLD_ERR_NOMEM;
  }
  size_t n = fread(buf, 1, (size_t)sb.st_size, f);
  int rerr = ferror(f);
  fclose(f);
  if (rerr || n != (size_t)sb.st_size) {
    free(buf);
    snprintf(err, errlen, "%s: read error", path);
    return MTLD_ERR_IO;
  }
  buf[n] = 0;
  *out = buf;
  *len = n;
  return MTLD_OK;
}

#define META_BAD(...)                                                                              \
  do {                                                                                             \
    snprintf(err, errlen, __VA_ARGS__);                                                            \
    st = MTLD_ERR_CORRUPT;                                                                         \
    goto out;                                                                                      \
  } while (0)

mtld_status_t mtld_checkpoint_read_meta(const char *ckpt_dir, mtld_checkpoint_meta_t *out,
                                        char *err, size_t errlen) {
  MTLD_CHECK_DIR_LEN(ckpt_dir);
  memset(out, 0, sizeof(*out));
  char path[PATH_MAX];
  mtld_pathf(path, sizeof path, "%s/meta", ckpt_dir);
  char *buf;
  size_t len;
  mtld_status_t st = slurp(path, META_MAX, &buf, &len, err, errlen);
  if (st != MTLD_OK) return st;
  mtld_checkpoint_meta_t m = {0};
  int cap = 0, version = 0, have = 0;
  /* the checksum line is the last one */
  char *last = len >= 2 ? memrchr(buf, '\n', len - 1) : NULL;
  last = last ? last + 1 : buf;
  uint64_t want = 0;
  if (len == 0 || buf[len - 1] != '\n' || memchr(buf, 0, len) ||
      sscanf(last, "xxh64 %16" SCNx64, &want) != 1)
    META_BAD("%s: no checksum line (truncated?)", path);
  if (XXH64(buf, (size_t)(last - buf), 0) != want) META_BAD("%s: checksum mismatch", path);
  *last = 0;
  char *save = NULL;
  for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char topic[MTLD_TOPIC_MAX + 1];
    mtld_source_offset_t o;
    if (sscanf(line, "mtld-checkpoint %d", &version) == 1) {
      have |= 1;
    } else if (sscanf(line, "id %" SCNu64, &m.id) == 1) {
      have |= 2;
    } else if (sscanf(line, "created_ms %" SCNd64, &m.created_ms) == 1) {
    } else if (sscanf(line, "watermark_ms %" SCNd64, &m.watermark_ms) == 1) {
    } else if (sscanf(line, "samples %" SCNu64, &m.samples) == 1) {
    } else if (sscanf(line, "offset %256s %" SCNd32 " %" SCNd64 " %" SCNd64, topic, &o.partition,
                      &o.next_offset, &o.max_time_ms) == 4 &&
               strlen(topic) < MTLD_TOPIC_MAX) {
      if (m.n_offsets == cap) {
        cap = cap ? cap * 2 : 16;
        mtld_source_offset_t *no = realloc(m.offsets, sizeof(*no) * (size_t)cap);
        if (!no) {
          snprintf(err, errlen, "%s: out of memory", path);
          st = MTLD_ERR_NOMEM;
          goto out;
        }
        m.offsets = no;
      }
      memcpy(o.topic, topic, strlen(topic) + 1);
      m.offsets[m.n_offsets++] = o;
    } else {
      META_BAD("%s: unknown line \"%.40s\"", path, line);
    }
  }
  if (have != 3) META_BAD("%s: missing version or id line", path);
  if (version != MTLD_CHECKPOINT_META_VERSION)
    META_BAD("%s: meta version %d, expected %d", path, version, MTLD_CHECKPOINT_META_VERSION);
out:
  free(buf);
  if (st != MTLD_OK) {
    free(m.offsets);
    return st;
  }
  *out = m;
  return MTLD_OK;
}

/* ---- directory listing ---------------------------------------------------- */

/* id of a name "checkpoint-<digits>" (+ ".tmp" when tmp); 0 if it is not one. */
static uint64_t parse_name(const char *name, int *is_tmp) {
  size_t pl = strlen(PREFIX);
  if (strncmp(name, PREFIX, pl) != 0) return 0;
  const char *p = name + pl;
  uint64_t id = 0;
  int nd = 0;
  for (; *p >= '0' && *p <= '9'; p++, nd++) {
    if (id > (UINT64_MAX - 9) / 10) return 0;
    id = id * 10 + (uint64_t)(*p - '0');
  }
  if (nd == 0) return 0;
  if (*p == 0) {
    *is_tmp = 0;
    return id;
  }
  if (!strcmp(p, TMP_SUFFIX)) {
    *is_tmp = 1;
    return id;
  }
  return 0;
}

typedef struct {
  uint64_t id;
  int is_tmp;
} entry_t;

static int cmp_desc(const void *a, const void *b) {
  const entry_t *x = a, *y = b;
  if (x->id != y->id) return x->id < y->id ? 1 : -1;
  return x->is_tmp - y->is_tmp;
}

/* Lists the checkpoint entries of root, newest first.  -1 on error. */
static int list_entries(const char *root, entry_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  DIR *d = opendir(root);
  if (!d) return -1;
  size_t cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    int is_tmp = 0;
    uint64_t id = parse_name(de->d_name, &is_tmp);
    if (!id) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      entry_t *ne = realloc(*out, sizeof(*ne) * cap);
      if (!ne) {
        closedir(d);
        free(*out);
        *out = NULL;
        *n = 0;
        errno = ENOMEM;
        return -1;
      }
      *out = ne;
    }
    (*out)[(*n)++] = (entry_t){id, is_tmp};
  }
  closedir(d);
  if (*n) qsort(*out, *n, sizeof(**out), cmp_desc);
  return 0;
}

static void entry_path(char *buf, size_t len, const char *root, uint64_t id, int is_tmp) {
  snprintf(buf, len, "%s/" PREFIX "%010" PRIu64 "%s", root, id, is_tmp ? TMP_SUFFIX : "");
}

uint64_t mtld_checkpoint_next_id(const char *root) {
  entry_t *e;
  size_t n;
  if (list_entries(root, &e, &n) != 0) return 1;
  if (n == 0) {
    free(e);
    return 1;
  }
  uint64_t id = e[0].id + 1;
  free(e);
  return id;
}

/* ---- begin / commit ------------------------------------------------------- */

mtld_status_t mtld_checkpoint_begin(const char *root, uint64_t id, char *tmp_path, size_t pathlen,
                                    char *err, size_t errlen) {
  MTLD_CHECK_DIR_LEN(root);
  char final[PATH_MAX], tmp[PATH_MAX];
  if (id == 0) {
    snprintf(err, errlen, "checkpoint: id must be > 0");
    return MTLD_ERR_INVALID;
  }
  if (mtld_mkdir_p(root) != 0) {
    snprintf(err, errlen, "cannot create checkpoint root %s: %s", root, strerror(errno));
    return MTLD_ERR_IO;
  }
  entry_path(final, sizeof final, root, id, 0);
  entry_path(tmp, sizeof tmp, root, id, 1);
  if (mtld_exists(final)) {
    snprintf(err, errlen, "checkpoint %s already exists (ids must grow)", final);
    return MTLD_ERR_INVALID;
  }
  if (mtld_rmtree(tmp) != 0 || mkdir(tmp, 0755) != 0) {
    snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    return MTLD_ERR_IO;
  }
  snprintf(tmp_path, pathlen, "%s", tmp);
  return MTLD_OK;
}

/* Deletes complete checkpoints beyond the newest `keep` and the temp dirs
 * of ids below `committed` (abandoned).  A temp dir of a higher id is a
 * checkpoint being written right now (the next cut is taken on the main
 * thread while the worker commits this one): it is left alone. */
static void prune(const char *root, int keep, uint64_t committed) {
  entry_t *e;
  size_t n;
  if (list_entries(root, &e, &n) != 0) return;
  int seen = 0;
  char path[PATH_MAX];
  for (size_t i = 0; i < n; i++) {
    if (e[i].is_tmp && e[i].id > committed) continue;
    if (!e[i].is_tmp && ++seen <= keep) continue;
    entry_path(path, sizeof path, root, e[i].id, e[i].is_tmp);
    mtld_rmtree(path);
  }
  free(e);
  mtld_fsync_dir(root);
}

mtld_status_t mtld_checkpoint_commit(const char *root, uint64_t id, int keep, char *path_out,
                                     size_t pathlen, char *err, size_t errlen) {
  MTLD_CHECK_DIR_LEN(root);
  char final[PATH_MAX], tmp[PATH_MAX], part[PATH_MAX];
  entry_path(final, sizeof final, root, id, 0);
  entry_path(tmp, sizeof tmp, root, id, 1);
  mtld_pathf(part, sizeof part, "%s/store", tmp);
  if (!mtld_store_dir_present(part)) {
    snprintf(err, errlen, "checkpoint commit: the store in %s is missing", part);
    return MTLD_ERR_INVALID;
  }
  static const char *const parts[2] = {"trainer.bin", "meta"};
  for (int i = 0; i < 2; i++) {
    mtld_pathf(part, sizeof part, "%s/%s", tmp, parts[i]);
    if (!mtld_exists(part)) {
      snprintf(err, errlen, "checkpoint commit: %s is missing", part);
      return MTLD_ERR_INVALID;
    }
  }
  if (mtld_exists(final)) {
    snprintf(err, errlen, "checkpoint %s already exists", final);
    return MTLD_ERR_INVALID;
  }
  if (mtld_fsync_tree(tmp) != 0) {
    snprintf(err, errlen, "checkpoint commit: fsync %s: %s", tmp, strerror(errno));
    return MTLD_ERR_IO;
  }
  char marker[64];
  int ml = snprintf(marker, sizeof marker, "mtld-checkpoint-complete %" PRIu64 "\n", id);
  mtld_status_t st = mtld_checkpoint_write_file(tmp, "COMPLETE", marker, (size_t)ml, err, errlen);
  if (st != MTLD_OK) return st;
  if (rename(tmp, final) != 0 || mtld_fsync_dir(root) != 0) {
    snprintf(err, errlen, "checkpoint commit: rename %s: %s", tmp, strerror(errno));
    return MTLD_ERR_IO;
  }
  if (path_out) snprintf(path_out, pathlen, "%s", final);
  prune(root, keep < 1 ? 1 : keep, id);
  return MTLD_OK;
}

/* ---- finding the newest valid one ----------------------------------------- */

/* Verifies trainer.bin's magic and XXH64 trailer without building a trainer. */
static int trainer_file_ok(const char *path, char *why, size_t whylen) {
  FILE *f = fopen(path, "rbe");
  if (!f) {
    snprintf(why, whylen, "trainer.bin: %s", strerror(errno));
    return 0;
  }
  struct stat sb;
  unsigned char magic[8];
  if (fstat(fileno(f), &sb) != 0 || sb.st_size < 24 || fread(magic, 1, 8, f) != 8 ||
      memcmp(magic, MTLD_TRAINER_MAGIC, 8) != 0) {
    fclose(f);
    snprintf(why, whylen, "trainer.bin: bad magic or too short");
    return 0;
  }
  XXH64_state_t *h = XXH64_createState();
  if (!h) {
    fclose(f);
    snprintf(why, whylen, "out of memory");
    return 0;
  }
  XXH64_reset(h, 0);
  XXH64_update(h, magic, 8);
  size_t left = (size_t)sb.st_size - 16, chunk = 1 << 20;
  unsigned char *buf = malloc(chunk);
  int ok = buf != NULL;
  while (ok && left) {
    size_t want = left < chunk ? left : chunk;
    if (fread(buf, 1, want, f) != want) ok = 0;
    XXH64_update(h, buf, want);
    left -= want;
  }
  uint64_t trailer = 0;
  if (ok && fread(&trailer, 1, 8, f) != 8) ok = 0;
  uint64_t got = XXH64_digest(h);
  XXH64_freeState(h);
  free(buf);
  fclose(f);
  if (!ok) {
    snprintf(why, whylen, "trainer.bin: read error");
    return 0;
  }
  if (got != trailer) {
    snprintf(why, whylen, "trainer.bin: checksum mismatch");
    return 0;
  }
  return 1;
}

static int checkpoint_ok(const char *dir, uint64_t id, char *why, size_t whylen) {
  char p[PATH_MAX];
  mtld_pathf(p, sizeof p, "%s/COMPLETE", dir);
  if (!mtld_exists(p)) {
    snprintf(why, whylen, "no COMPLETE marker (interrupted write)");
    return 0;
  }
  mtld_pathf(p, sizeof p, "%s/store", dir);
  if (!mtld_store_dir_present(p)) {
    snprintf(why, whylen, "the store in store/ is missing");
    return 0;
  }
  mtld_checkpoint_meta_t m;
  if (mtld_checkpoint_read_meta(dir, &m, why, whylen) != MTLD_OK) return 0;
  uint64_t mid = m.id;
  mtld_checkpoint_meta_free(&m);
  if (mid != id) {
    snprintf(why, whylen, "meta says id %" PRIu64 ", directory %" PRIu64, mid, id);
    return 0;
  }
  mtld_pathf(p, sizeof p, "%s/trainer.bin", dir);
  return trainer_file_ok(p, why, whylen);
}

mtld_status_t mtld_checkpoint_latest(const char *root, uint64_t *id, char *path, size_t pathlen,
                                     mtld_checkpoint_skip_fn skip, void *ctx, char *err,
                                     size_t errlen) {
  MTLD_CHECK_DIR_LEN(root);
  entry_t *e;
  size_t n;
  if (list_entries(root, &e, &n) != 0) {
    if (errno == ENOENT) {
      snprintf(err, errlen, "no checkpoint under %s (no such directory)", root);
      return MTLD_ERR_NOTFOUND;
    }
    snprintf(err, errlen, "cannot list %s: %s", root, strerror(errno));
    return MTLD_ERR_IO;
  }
  char dir[PATH_MAX], why[512];
  for (size_t i = 0; i < n; i++) {
    if (e[i].is_tmp) continue;
    entry_path(dir, sizeof dir, root, e[i].id, 0);
    if (checkpoint_ok(dir, e[i].id, why, sizeof why)) {
      *id = e[i].id;
      snprintf(path, pathlen, "%s", dir);
      free(e);
      return MTLD_OK;
    }
    if (skip) skip(ctx, dir, why);
  }
  free(e);
  snprintf(err, errlen, "no usable checkpoint under %s", root);
  return MTLD_ERR_NOTFOUND;
}

/* ---- restore -------------------------------------------------------------- */

mtld_status_t mtld_checkpoint_restore(const char *ckpt_dir, const char *store_path,
                                      mtld_trainer_t **trainer, mtld_checkpoint_meta_t *meta_out,
                                      char *err, size_t errlen) {
  *trainer = NULL;
  MTLD_CHECK_DIR_LEN(ckpt_dir);
  if (store_path) MTLD_CHECK_DIR_LEN(store_path);
  char p[PATH_MAX];
  mtld_pathf(p, sizeof p, "%s/trainer.bin", ckpt_dir);
  FILE *f = fopen(p, "rbe");
  if (!f) {
    snprintf(err, errlen, "cannot open %s: %s", p, strerror(errno));
    return errno == ENOENT ? MTLD_ERR_NOTFOUND : MTLD_ERR_IO;
  }
  mtld_trainer_t *t = NULL;
  mtld_status_t st = mtld_trainer_load(&t, f, err, errlen);
  fclose(f);
  if (st != MTLD_OK) return st;
  mtld_checkpoint_meta_t meta = {0};
  if (meta_out && (st = mtld_checkpoint_read_meta(ckpt_dir, &meta, err, errlen)) != MTLD_OK) {
    mtld_trainer_destroy(t);
    return st;
  }
  if (store_path) {
    char src[PATH_MAX], why[512];
    mtld_pathf(src, sizeof src, "%s/store", ckpt_dir);
    if ((st = mtld_store_restore_dir(src, store_path, why, sizeof why)) != MTLD_OK) {
      snprintf(err, errlen, "restore %s into %s: %s", ckpt_dir, store_path, why);
      mtld_trainer_destroy(t);
      mtld_checkpoint_meta_free(&meta);
      return st;
    }
  }
  *trainer = t;
  if (meta_out) *meta_out = meta;
  return MTLD_OK;
}
