/* fs.h - filesystem helpers for the files mtld keeps on disk (checkpoints,
 * snapshots, the store's directory): paths, directory trees, fsync, whole
 * writes and copies.  POSIX only; no knowledge of what the files hold.
 * Functions returning int give 0, or -1 with errno set.  Any thread (on
 * distinct paths). */
#ifndef MTLD_FS_H
#define MTLD_FS_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Longest directory name the path builders accept: room is left for the
 * names they append (PATH_MAX - 128). */
#define MTLD_DIR_MAX (PATH_MAX - 128)

/* In a function with `char *err, size_t errlen` that returns mtld_status_t:
 * returns MTLD_ERR_INVALID with err set when directory d is longer than
 * MTLD_DIR_MAX, so that paths built from it with mtld_pathf() fit. */
#define MTLD_CHECK_DIR_LEN(d)                                                                      \
  do {                                                                                             \
    if (strlen(d) > MTLD_DIR_MAX) {                                                                \
      snprintf(err, errlen, "path too long: %.64s...", (d));                                       \
      return MTLD_ERR_INVALID;                                                                     \
    }                                                                                              \
  } while (0)

/* snprintf for paths into buf (len bytes): 0, or -1 when it was truncated
 * (callers check their directory with MTLD_CHECK_DIR_LEN first, so it cannot
 * be; a truncation is reported anyway). */
__attribute__((format(printf, 3, 4))) int mtld_pathf(char *buf, size_t len, const char *fmt, ...);

/* 1 when path exists (stat succeeds), else 0. */
int mtld_exists(const char *path);

/* Creates a directory and its missing parents (mode 0755).  An existing one
 * is fine. */
int mtld_mkdir_p(const char *path);

/* Removes a file or a directory tree; an absent path is fine. */
int mtld_rmtree(const char *path);

/* fsyncs a directory (after a rename or create in it). */
int mtld_fsync_dir(const char *path);

/* fsyncs every regular file and directory under path (directories after
 * their contents). */
int mtld_fsync_tree(const char *path);

/* Writes all len bytes of buf to fd (retrying short writes and EINTR). */
int mtld_write_all(int fd, const void *buf, size_t len);

/* Copies the regular file src to dst (created or truncated, mode 0644) and
 * fsyncs dst. */
int mtld_copy_file(const char *src, const char *dst);

#endif
