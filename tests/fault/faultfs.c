/* faultfs.c - an LD_PRELOAD shim that makes file I/O fail, for the
 * fault-injection tests (tests/integration/test_faults_*.sh).
 *
 * Files whose path contains $MTLD_FAULT_PATH are tracked from open() (and
 * open64, openat, creat, mkstemp, fopen) to close().  On a tracked file,
 * the calls named in $MTLD_FAULT_OPS (a comma list of write, pwrite, fsync,
 * fdatasync, fwrite, pread, read, fallocate; default "write,pwrite,fsync,
 * fdatasync,fwrite,fallocate") fail with $MTLD_FAULT_ERRNO (ENOSPC, EIO or
 * EDQUOT; default ENOSPC) once $MTLD_FAULT_AFTER such calls have succeeded
 * (default 0), and only while the file $MTLD_FAULT_TRIGGER exists when that
 * is set (a test creates it to start the fault and removes it to clear it).
 * "open" in the list also makes opening a new matching file for writing fail.
 *
 * Calls made inside glibc (stdio's own write) do not pass through here;
 * that is why fwrite is wrapped as a whole.  Test code only: not installed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FD 65536

static atomic_uchar tracked[MAX_FD];
static atomic_long calls;
static const char *pattern, *trigger;
static char ops[256] = ",write,pwrite,fsync,fdatasync,fwrite,fallocate,";
static int fault_errno = ENOSPC;
static long after;

__attribute__((constructor)) static void init(void) {
  pattern = getenv("MTLD_FAULT_PATH");
  if (pattern && !*pattern) pattern = NULL;
  trigger = getenv("MTLD_FAULT_TRIGGER");
  if (trigger && !*trigger) trigger = NULL;
  const char *o = getenv("MTLD_FAULT_OPS");
  if (o && *o) snprintf(ops, sizeof ops, ",%s,", o);
  const char *e = getenv("MTLD_FAULT_ERRNO");
  if (e && strcmp(e, "EIO") == 0) fault_errno = EIO;
  if (e && strcmp(e, "EDQUOT") == 0) fault_errno = EDQUOT;
  const char *a = getenv("MTLD_FAULT_AFTER");
  if (a) after = atol(a);
}

static int op_on(const char *op) {
  char k[32];
  snprintf(k, sizeof k, ",%s,", op);
  return strstr(ops, k) != NULL;
}

static int matches(const char *path) {
  return pattern && path && strstr(path, pattern) != NULL;
}

static int active(void) {
  if (trigger && access(trigger, F_OK) != 0) return 0;
  return 1;
}

/* 1 when this call on fd must fail (errno is set). */
static int inject(int fd, const char *op) {
  if (fd < 0 || fd >= MAX_FD || !atomic_load(&tracked[fd]) || !op_on(op) || !active()) return 0;
  if (atomic_fetch_add(&calls, 1) < after) return 0;
  errno = fault_errno;
  return 1;
}

static void track(int fd, const char *path) {
  if (fd >= 0 && fd < MAX_FD) atomic_store(&tracked[fd], (unsigned char)matches(path));
}

#define REAL(name, type) ((type)dlsym(RTLD_NEXT, name))

static int open_fails(const char *path, int flags) {
  return matches(path) && (flags & (O_WRONLY | O_RDWR | O_CREAT)) && op_on("open") && active() &&
         atomic_fetch_add(&calls, 1) >= after;
}

static int do_open(const char *name, const char *path, int flags, mode_t mode) {
  if (open_fails(path, flags)) {
    errno = fault_errno;
    return -1;
  }
  int fd = REAL(name, int (*)(const char *, int, ...))(path, flags, mode);
  track(fd, path);
  return fd;
}

/* Reads the optional mode argument of an open-like call whose last named
 * parameter is flags (only present when the flags create a file). */
#define MODE_ARG(mode, flags)                                                                      \
  do {                                                                                             \
    if ((flags) & (O_CREAT | O_TMPFILE)) {                                                         \
      va_list ap;                                                                                  \
      va_start(ap, flags);                                                                         \
      (mode) = va_arg(ap, mode_t);                                                                 \
      va_end(ap);                                                                                  \
    }                                                                                              \
  } while (0)

int open(const char *path, int flags, ...) {
  mode_t mode = 0;
  MODE_ARG(mode, flags);
  return do_open("open", path, flags, mode);
}

int open64(const char *path, int flags, ...) {
  mode_t mode = 0;
  MODE_ARG(mode, flags);
  return do_open("open64", path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
  mode_t mode = 0;
  MODE_ARG(mode, flags);
  if (open_fails(path, flags)) {
    errno = fault_errno;
    return -1;
  }
  int fd = REAL("openat", int (*)(int, const char *, int, ...))(dirfd, path, flags, mode);
  track(fd, path);
  return fd;
}

int creat(const char *path, mode_t mode) {
  return do_open("open", path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}

int mkstemp(char *tmpl) {
  if (open_fails(tmpl, O_CREAT)) {
    errno = fault_errno;
    return -1;
  }
  int fd = REAL("mkstemp", int (*)(char *))(tmpl);
  track(fd, tmpl);
  return fd;
}

FILE *fopen(const char *path, const char *mode) {
  if (strpbrk(mode, "wa+") && open_fails(path, O_CREAT)) {
    errno = fault_errno;
    return NULL;
  }
  FILE *f = REAL("fopen", FILE * (*)(const char *, const char *))(path, mode);
  if (f) track(fileno(f), path);
  return f;
}

int close(int fd) {
  if (fd >= 0 && fd < MAX_FD) atomic_store(&tracked[fd], 0);
  return REAL("close", int (*)(int))(fd);
}

int fclose(FILE *f) {
  int fd = fileno(f);
  if (fd >= 0 && fd < MAX_FD) atomic_store(&tracked[fd], 0);
  return REAL("fclose", int (*)(FILE *))(f);
}

ssize_t write(int fd, const void *buf, size_t n) {
  if (inject(fd, "write")) return -1;
  return REAL("write", ssize_t(*)(int, const void *, size_t))(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  if (inject(fd, "pwrite")) return -1;
  return REAL("pwrite", ssize_t(*)(int, const void *, size_t, off_t))(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  if (inject(fd, "pwrite")) return -1;
  return REAL("pwrite64", ssize_t(*)(int, const void *, size_t, off_t))(fd, buf, n, off);
}

ssize_t read(int fd, void *buf, size_t n) {
  if (inject(fd, "read")) return -1;
  return REAL("read", ssize_t(*)(int, void *, size_t))(fd, buf, n);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off) {
  if (inject(fd, "pread")) return -1;
  return REAL("pread", ssize_t(*)(int, void *, size_t, off_t))(fd, buf, n, off);
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off) {
  if (inject(fd, "pread")) return -1;
  return REAL("pread64", ssize_t(*)(int, void *, size_t, off_t))(fd, buf, n, off);
}

int fsync(int fd) {
  if (inject(fd, "fsync")) return -1;
  return REAL("fsync", int (*)(int))(fd);
}

int fdatasync(int fd) {
  if (inject(fd, "fdatasync")) return -1;
  return REAL("fdatasync", int (*)(int))(fd);
}

int fallocate(int fd, int mode, off_t off, off_t len) {
  if (inject(fd, "fallocate")) return -1;
  return REAL("fallocate", int (*)(int, int, off_t, off_t))(fd, mode, off, len);
}

size_t fwrite(const void *p, size_t size, size_t n, FILE *f) {
  if (inject(fileno(f), "fwrite")) return 0;
  return REAL("fwrite", size_t(*)(const void *, size_t, size_t, FILE *))(p, size, n, f);
}
